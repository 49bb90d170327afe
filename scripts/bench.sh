#!/usr/bin/env bash
# Throughput of pkg/ae against the PyTorch peer, measured in one run on this
# machine: the Go benchmarks in the portable and the GOEXPERIMENT=simd build
# (median of COUNT runs each), then bench/peer_torch.py when Debian's
# python3-torch and python3-sklearn are installed, then the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== go test -bench (portable kernels), $COUNT runs"
go test -run '^$' -bench . -benchmem -count "$COUNT" ./pkg/ae/ | tee "$out/portable.txt" | grep -E '^Bench'
echo "== GOEXPERIMENT=simd go test -bench, $COUNT runs"
GOEXPERIMENT=simd go test -run '^$' -bench . -benchmem -count "$COUNT" -v ./pkg/ae/ | tee "$out/simd.txt" | grep -E '^Bench|kernels:' | sort -u

peer=""
if /usr/bin/python3 -c 'import torch, sklearn' 2>/dev/null; then
	echo "== PyTorch peer (bench/peer_torch.py)"
	/usr/bin/python3 bench/peer_torch.py | tee "$out/peer.txt"
	peer="$out/peer.txt"
else
	echo "== PyTorch peer skipped: apt-get install -y python3-torch python3-sklearn, then rerun"
fi

# median FILE BENCH UNIT: the median of the custom metric UNIT of BENCH.
median() {
	awk -v b="$2" -v u="$3" '$1 ~ "^"b"-" { for (i = 2; i < NF; i++) if ($(i+1) == u) print $i }' "$1" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}
torch() { # torch FIELD THREADS: train or score figure of the peer at THREADS threads
	[ -n "$peer" ] || { echo 0; return; }
	awk -v f="$1" -v t="threads=$2:" '$2 == t { for (i = 1; i < NF; i++) { if ($i == "train" && f == "train") v = $(i+1); if ($i == "batch256" && f == "score") v = $(i+1) } gsub(",", "", v); print v }' "$peer"
}
pt=$(median "$out/portable.txt" BenchmarkTrain samples/s)
ps=$(median "$out/portable.txt" BenchmarkScore rows/s)
st=$(median "$out/simd.txt" BenchmarkTrain samples/s)
ss=$(median "$out/simd.txt" BenchmarkScore rows/s)
t1t=$(torch train 1); t1s=$(torch score 1); t2t=$(torch train 2); t2s=$(torch score 2)
echo
echo "== summary (30-16-4-16-30 ReLU, linear output, batch 256, Adam; Go: one goroutine, float64)"
awk -v pt="$pt" -v ps="$ps" -v st="$st" -v ss="$ss" -v t1t="$t1t" -v t1s="$t1s" -v t2t="$t2t" -v t2s="$t2s" 'BEGIN {
	printf "%-28s %14s %14s\n", "", "train samples/s", "score rows/s"
	printf "%-28s %14.0f %14.0f\n", "recon portable (median)", pt, ps
	printf "%-28s %14.0f %14.0f\n", "recon simd (median)", st, ss
	if (t1t > 0) {
		printf "%-28s %14.0f %14.0f\n", "torch 1 thread", t1t, t1s
		printf "%-28s %14.0f %14.0f\n", "torch 2 threads", t2t, t2s
		bt = (t1t > t2t) ? t1t : t2t; bs = (t1s > t2s) ? t1s : t2s
		printf "ratios to the better torch figure: portable %.2fx train, %.2fx score; simd %.2fx train, %.2fx score\n", pt/bt, ps/bs, st/bt, ss/bs
		printf "targets: train >= 2x, score >= 1.5x\n"
	}
}'
