#!/usr/bin/env bash
# The whole-brain fit (docs/fly.md) end to end, timed: generate the connectome, the
# teacher and its targets; train the student with its train block (ES-D-RTRL, adapter and
# input map); score the teacher (the floor), the untrained student and the best epoch.
#   bash bench/fly.sh [OUT_DIR] [make_fly options, e.g. --neurons 139255 --regions 78]
#   METHOD=bptt bash bench/fly.sh runs/fly-bptt     # the same fit with exact gradients
# Default: runs/fly at the reduced scale (4,000 neurons, 80 regions, 400 trials).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/runs/fly}"; shift || true
cd "$root"
cargo build --release --quiet -p snnc -p snnc-runtime --example make_fly --bin snnc
bin="$root/target/release"
timed() { /usr/bin/time -f "$1: %e s wall, %U s user, peak %M KB" "${@:2}"; }
timed generate "$bin/examples/make_fly" "$out" "$@"
timed train "$bin/snnc" train "$out/fly.snn" --out "$out/train" --overwrite ${METHOD:+--method "$METHOD"}
for what in teacher init "$out/train/best.safetensors" "$out/train/checkpoint.safetensors"; do
    timed score "$bin/examples/make_fly" "$out" "$@" --score "$what"
done
