#!/bin/bash
# Model history after a long run (issue 13 acceptance 2): given the
# directory of a finished demo run and the model version its first alert
# named, reads that version back with `scorer score --version`, rolls a
# coordinator on the run's store back to it, checks it is pinned, and counts
# the log lines of the coordinator and of a scorer.
#   bin/demo --seconds 1830 --features 6 --rate 300 --dir /tmp/demo30 --min-quality 0
#   scripts/history.sh /tmp/demo30 N   # N from the summary's "first alert after" line
set -euo pipefail
dir=$1; v=$2
B=${BIN:-$PWD/bin}
echo "== the checkpoint named by the first alert, version $v, scores records:"
printf 'f0,f1,f2,f3,f4,f5\n0,0,0,0,0,0\n1,-1,2,0.5,3,-2\n' | $B/scorer score --model $dir/coordinator.db --version $v
port=$((20000 + RANDOM % 20000)); addr=127.0.0.1:$port
$B/coordinator --features 6 --output linear --store $dir/coordinator.db --listen $addr --metrics-listen "" > $dir/coordinator-history.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
echo "== coordinator rollback --version $v:"
$B/coordinator rollback --coordinator $addr --version $v
echo "== coordinator checkpoints (version $v must be pinned):"
$B/coordinator checkpoints --coordinator $addr | tee $dir/checkpoints.txt | awk -v v=$v 'NR==1 || $1==v || NR<=4' 
n=$(grep -c . $dir/checkpoints.txt); echo "   ($((n-1)) checkpoints stored)"
grep -qE "^ +$v .*pinned" $dir/checkpoints.txt && echo "version $v pinned: ok" || { echo "version $v NOT pinned"; exit 1; }
kill $pid; wait $pid 2>/dev/null || true; trap - EXIT
echo "== log lines over the run: coordinator $(grep -c . $dir/coordinator.log) (want < 100), scorer-1 $(grep -c . $dir/scorer-1.log) (want < 50), scorer-2 $(grep -c . $dir/scorer-2.log)"
