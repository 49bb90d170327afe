#!/bin/bash
# Training cost at 300 records/s (issue 13): devkafka, a coordinator, two
# Kafka trainers, a scorer and loadgen (json-object, 6 features); prints each
# process's share of a core over DUR seconds (default 300) after the first
# threshold, from /proc/PID/stat. Build first: go build -o bin/ ./cmd/... ./tools/...
# usage: scripts/budget-cpu.sh NAME PORTBASE [coordinator flags...]
#   e.g. scripts/budget-cpu.sh budget 21000 --presentations-maintain 2
name=$1; base=$2; shift 2
B=${BIN:-$PWD/bin}; D=${TMPDIR:-/tmp}/recon-cpu-$name; rm -rf $D; mkdir -p $D; cd $D
K=127.0.0.1:$base; G=127.0.0.1:$((base+1)); CM=127.0.0.1:$((base+2))
F=f0,f1,f2,f3,f4,f5
$B/devkafka --listen $K --data-dir $D/kd > devkafka.log 2>&1 & DK=$!
sleep 2
$B/coordinator --features $F --listen $G --metrics-listen $CM --store $D/c.db "$@" > coord.log 2>&1 & CO=$!
sleep 1
$B/trainer run --source kafka --brokers $K --format json-object --features $F --coordinator $G --id t1 --metrics-listen 127.0.0.1:$((base+3)) > t1.log 2>&1 & T1=$!
$B/trainer run --source kafka --brokers $K --format json-object --features $F --coordinator $G --id t2 --metrics-listen 127.0.0.1:$((base+4)) > t2.log 2>&1 & T2=$!
$B/scorer run --brokers $K --format json-object --coordinator $G --cache $D/s.db --metrics-listen 127.0.0.1:$((base+5)) > scorer.log 2>&1 & SC=$!
$B/loadgen --brokers $K --format json-object --features 6 --rate 300 > loadgen.log 2>&1 & LG=$!
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
# wait for the first threshold
for i in $(seq 1 300); do curl -s $CM/metrics | grep -q '^recon_coordinator_threshold [1-9]' && break; sleep 1; done
echo "$name: threshold after ${i}s"
c0=$(cpu $CO); a0=$(cpu $T1); b0=$(cpu $T2); s0=$(cpu $SC); t0=$(date +%s)
sleep ${DUR:-300}
c1=$(cpu $CO); a1=$(cpu $T1); b1=$(cpu $T2); s1=$(cpu $SC); t1=$(date +%s)
hz=$(getconf CLK_TCK); el=$((t1-t0))
pct() { echo "scale=1; 100*($2-$1)/$hz/$el" | bc; }
echo "$name over ${el}s after the threshold: coordinator $(pct $c0 $c1)% trainer-1 $(pct $a0 $a1)% trainer-2 $(pct $b0 $b1)% scorer $(pct $s0 $s1)% of a core"
curl -s $CM/metrics | grep -E '^recon_coordinator_(round|training_state|presentations_per_record|checkpoint_version) ' 
curl -s $CM/metrics | grep -E '^recon_coordinator_training_state'
kill $LG $SC $T1 $T2 $CO; sleep 2; kill $DK; wait 2>/dev/null
grep -c . coord.log | sed "s/^/$name coordinator log lines: /"
