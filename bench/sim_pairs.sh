#!/usr/bin/env bash
# Paired A/B timing of two snnc builds on COBA or CUBA scaled as bench/compare.py scales
# them: PAIRS pairs of runs on THREADS threads, the two builds one right after the other
# (the order alternating), so that each pair falls in the same phase of this shared
# guest's speed; prints each build's median and fastest run and the median of the
# pairs' ratios B/A (under 1: B faster). docs/benchmarks.md (eleventh round):
#   bash bench/sim_pairs.sh coba 40000 0.5s 2 16 /tmp/snnc-before target/release/snnc
# THREADS as TA:TB runs A on TA threads and B on TB (one binary on one and two threads:
#   bash bench/sim_pairs.sh coba 40000 1s 1:2 10 target/release/snnc target/release/snnc
# B/A is then the two-thread run's share of the one-thread run's time).
# Code generators: bash bench/sim_pairs.sh coba 40000 1s 1 8 "SNNC_X86=off target/release/snnc" target/release/snnc
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 7 ] || { echo "usage: bash bench/sim_pairs.sh coba|cuba N DURATION THREADS PAIRS SNNC_A SNNC_B" >&2; exit 2; }
net=$1 n=$2 dur=$3 pairs=$5 a=$6 b=$7
threads_a=${4%%:*} threads_b=${4#*:}
source bench/sim_lib.sh
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $net N=$n, $dur, threads $threads_a (A) / $threads_b (B), $pairs pairs"
for i in $(seq "$pairs"); do
    if (( i % 2 )); then x=$(run_s "$a" "$threads_a"); y=$(run_s "$b" "$threads_b"); else y=$(run_s "$b" "$threads_b"); x=$(run_s "$a" "$threads_a"); fi
    echo "$x $y"
done | python3 -c '
import sys, statistics as st
p = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
a, b = [x for x, _ in p], [y for _, y in p]
r = sorted(y / x for x, y in p)
print(f"A: median {st.median(a):.4f} s, fastest {min(a):.4f} s")
print(f"B: median {st.median(b):.4f} s, fastest {min(b):.4f} s")
print("B/A per pair: median %.3f (%s)" % (st.median(r), " ".join(f"{x:.2f}" for x in r)))
'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
