#!/usr/bin/env bash
# snnc's two-thread speed-up beside a reference loop's, round by round: each round runs
# bench/ceiling.c once (one thread, then two with a barrier a step, then two with none:
# work with nothing of snnc in it, two updates a neuron and step, about as long as a
# COBA step of snnc's at 40k, and a cache line's round trip between two threads) and
# snnc's `bench sim` on one thread and on two,
# so that each round's figures share the same phase of a shared guest. Prints each
# round's speed-ups and the medians. docs/benchmarks.md (issue 18):
#   bash bench/ceiling.sh coba 40000 1s 10 target/release/snnc
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 5 ] || { echo "usage: bash bench/ceiling.sh coba|cuba N DURATION ROUNDS SNNC" >&2; exit 2; }
net=$1 n=$2 dur=$3 rounds=$4 snnc=$5
source bench/sim_lib.sh
gcc -O3 -march=native -pthread bench/ceiling.c -o "$work/ceiling" -lm
# As many steps as the simulation (the scaled networks' dt, 0.1 ms; DURATION in s or ms).
steps=$(python3 -c "s='$dur'; print(round(float(s[:-2]) / 1e3 / 1e-4 if s.endswith('ms') else float(s.rstrip('s')) / 1e-4))")
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $net N=$n, $dur ($steps steps), $rounds rounds"
for i in $(seq "$rounds"); do
    c=$("$work/ceiling" "$n" "$steps" 2 1 | grep '^round' | sed 's/.*1 \([0-9.]*\) s (.*2b \([0-9.]*\) s, 2f \([0-9.]*\) s.*rt \([0-9.]*\) ns.*/\1 \2 \3 \4/')
    one=$(run_s "$snnc" 1)
    two=$(run_s "$snnc" 2)
    echo "$c $one $two"
done | python3 -c '
import sys, statistics as st
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
print("round | ceiling 1 thread (s) | 2, barrier | 2, none | speed-up barrier | none | line round trip (ns) | snnc 1 thread (s) | 2 threads | speed-up")
for k, (c1, cb, cf, rt, s1, s2) in enumerate(rows):
    print(f"{k:5d} | {c1:.4f} | {cb:.4f} | {cf:.4f} | {c1 / cb:.3f} | {c1 / cf:.3f} | {rt:.0f} | {s1:.4f} | {s2:.4f} | {s1 / s2:.3f}")
col = list(zip(*rows))
m = [st.median(c) for c in col]
print(f"medians: ceiling {m[0]:.4f} / {m[1]:.4f} / {m[2]:.4f} s, speed-up barrier {m[0] / m[1]:.3f}, none {m[0] / m[2]:.3f}; line round trip {m[3]:.0f} ns; snnc {m[4]:.4f} / {m[5]:.4f} s, speed-up {m[4] / m[5]:.3f}")
print("median of rounds: ceiling barrier %.3f, none %.3f; snnc %.3f; snnc / ceiling (none) %.3f" % (
    st.median(r[0] / r[1] for r in rows), st.median(r[0] / r[2] for r in rows), st.median(r[4] / r[5] for r in rows),
    st.median((r[4] / r[5]) / (r[0] / r[2]) for r in rows)))
'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
