#!/usr/bin/env bash
# How much a second core gives on this machine, whatever snnc does: the same
# compute-bound work (openssl's SHA-256 over 16 KB blocks, all in L1/L2) in one process,
# then in two at once. Two real cores give 2x the aggregate; two hyperthreads of one core,
# or a host that time-slices the guest's vCPUs, give less. The ceiling against which
# `snnc run --threads 2` (docs/benchmarks.md, issue 18) is read. Usage:
#   bash bench/machine_scaling.sh [SECONDS]   (default 5 s per measurement, 3 rounds)
set -euo pipefail
secs=${1:-5}
rate() { # aggregate 16 KB-block SHA-256 throughput (kB/s) of $1 processes
    openssl speed -seconds "$secs" -bytes 16384 -multi "$1" sha256 2>/dev/null | awk '/^sha256/ { print $NF }' | tr -d k
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2 3; do
    one=$(rate 1); two=$(rate 2)
    awk -v a="$one" -v b="$two" -v r="$round" 'BEGIN { printf "round %d: 1 process %.0f kB/s, 2 processes %.0f kB/s, ratio %.2f\n", r, a, b, b / a }'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
