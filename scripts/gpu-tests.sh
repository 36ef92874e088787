#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU (sm_80 or later) and its driver; no
# CUDA toolkit is needed (cudarc loads libcuda and libcublas at run time).
#
#   scripts/gpu-tests.sh          # GPU tests, then the benchmarks
#   STEPS=5000 scripts/gpu-tests.sh
#
# 1. runtime/tests/all/cuda.rs: CPU and GPU runs give the same spikes (COBA and CUBA in f64
#    for 1000 steps, a network with every projection kind; COBA in f32: exact for 100
#    steps, rates within 5%); ES-D-RTRL, D-RTRL and BPTT gradients equal the CPU's (f64 to 1e-8, f32 to
#    1e-2 in norm); examples/dms.snn trained 10 batches on GPU and CPU gives the same
#    weights, and the trained network the same spikes for 1000 steps.
# 2. runtime/benches/cuda_coba.rs: COBA at 4000 neurons (GPU and CPU JIT) and scaled to
#    400 000 neurons at in-degree 80, f32 and f64: time per step, real-time factor, rates.
# 3. `snnc bench train --backend cuda`: training throughput at batch 256 (the
#    BENCHMARKS.md workload; ES-D-RTRL also at 4096 neurons; BPTT and D-RTRL), with the
#    CPU's on this machine beside it.
# Everything printed is also written to bench/results/gpu-$(date +%F)/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="bench/results/gpu-$(date +%F)"
mkdir -p "$OUT"

# The only ignored tests of snnc-runtime are the GPU ones; one at a time (one GPU).
cargo test --release --features cuda -p snnc-runtime -- --ignored --nocapture --test-threads 1 2>&1 | tee "$OUT/tests.txt"
cargo bench -p snnc-runtime --features cuda --bench cuda_coba -- "${STEPS:-1000}" 2>&1 | tee "$OUT/coba.txt"
cargo build --release --features cuda
SNNC=target/release/snnc
for prec in f32 f64; do
    $SNNC bench train --backend cuda --method es-d-rtrl --batch 256 --steps 1000 --precision $prec --reps 3
done | tee "$OUT/train-gpu.jsonl"
$SNNC bench train --backend cuda --method es-d-rtrl --batch 256 --steps 1000 --neurons 4096 --inputs 512 --reps 2 | tee -a "$OUT/train-gpu.jsonl"
for m in bptt d-rtrl; do
    $SNNC bench train --backend cuda --method $m --batch 256 --steps 1000 --reps 2
done | tee -a "$OUT/train-gpu.jsonl"
$SNNC bench train --method es-d-rtrl --batch 256 --steps 1000 --reps 2 | tee "$OUT/train-cpu.jsonl"
