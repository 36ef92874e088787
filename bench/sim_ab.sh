#!/usr/bin/env bash
# Interleaved A/B timing of snnc builds on COBA or CUBA scaled as bench/compare.py scales
# them (p = 80/N, weights x 4000/N), one and two threads, medians of REPS runs; and with
# PAIR=1, what a second core gives this workload: the first build on one thread alone,
# then two such runs at once (each one's time), REPS times. docs/benchmarks.md
# ("Simulation, 2026-12-06") took its before/after and side-by-side figures with it:
#   bash bench/sim_ab.sh coba 400000 0.1s 3 /tmp/snnc-before target/release/snnc
#   PAIR=1 bash bench/sim_ab.sh coba 40000 0.5s 2 target/release/snnc
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 5 ] || { echo "usage: bash bench/sim_ab.sh coba|cuba N DURATION REPS SNNC..." >&2; exit 2; }
net=$1 n=$2 dur=$3 reps=$4
shift 4
source bench/sim_lib.sh
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $net N=$n, $dur, $reps reps"
if [ "${PAIR:-0}" = 1 ]; then
    for r in $(seq "$reps"); do
        alone=$(run_s "$1" 1)
        pair=$( (run_s "$1" 1 & run_s "$1" 1; wait) | tr '\n' ' ')
        echo "round $r: alone $alone s, two at once $pair s"
    done
else
    declare -A res
    for r in $(seq "$reps"); do
        for b in "$@"; do
            for t in 1 2; do res[$b,$t]+="$(run_s "$b" "$t") "; done
        done
    done
    for b in "$@"; do
        for t in 1 2; do echo "$b, $t thread(s): median $(median <<<"${res[$b,$t]}") s of ${res[$b,$t]}"; done
    done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
