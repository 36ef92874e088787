#!/usr/bin/env bash
# Training throughput of examples/digits_conv.snn side by side with snnTorch (CPU torch)
# on the same network and data (bench/digits_snntorch.py): E epochs of 45 batches of 32
# digits (20 steps each), the held-out last fifth evaluated after every epoch.
#   bash bench/digits_conv.sh [EPOCHS] [PYTHON]
# PYTHON: an interpreter with torch (CPU) and snntorch (default: python3).
# snnc: wall time of the whole `snnc train` (compilation and evaluations included) and
# its training batches from the log's timestamps are not separated: the figure is the
# process's wall time. snnTorch: the same loop's wall time, and the batches alone.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-5}
PY=${2:-python3}
SNNC=./target/release/snnc
[ -x "$SNNC" ] || cargo build --release -p snnc
threads=$(nproc)
for method in es-d-rtrl bptt; do
    start=$(date +%s.%N)
    "$SNNC" train examples/digits_conv.snn --batches 45 --epochs "$EPOCHS" --method "$method" > /tmp/snnc_digits_$$.log 2>&1
    end=$(date +%s.%N)
    acc=$(grep -o 'test accuracy [0-9.]*' /tmp/snnc_digits_$$.log | awk '{print $3}' | paste -sd, -)
    wall=$(echo "$end - $start" | bc)
    echo "{\"peer\": \"snnc\", \"method\": \"$method\", \"threads\": $threads, \"epochs\": $EPOCHS, \"total_s\": $wall, \"samples_per_s\": $(echo "scale=1; $EPOCHS * 45 * 32 / $wall" | bc), \"test_accuracy\": [$acc]}"
done
rm -f /tmp/snnc_digits_$$.log
# torch's intra-op threads: one, and one per core (on a loaded machine more threads can
# be much slower for a network this small).
for t in $(printf '%s\n' 1 "$threads" | sort -u); do
    "$PY" bench/digits_snntorch.py --epochs "$EPOCHS" --threads "$t"
done
