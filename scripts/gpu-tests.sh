#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU (sm_80 or later) and its driver; no
# CUDA toolkit is needed (cudarc loads libcuda and libcublas at run time).
#
#   scripts/gpu-tests.sh          # GPU tests, then the COBA benchmark (1000 steps)
#   STEPS=5000 scripts/gpu-tests.sh
#
# 1. runtime/tests/cuda.rs: CPU and GPU runs give the same spikes (COBA and CUBA in f64
#    for 1000 steps, a network with every projection kind; COBA in f32: exact for 100
#    steps, rates within 5%).
# 2. runtime/benches/cuda_coba.rs: COBA at 4000 neurons (GPU and CPU JIT) and scaled to
#    400 000 neurons at in-degree 80, f32 and f64: time per step, real-time factor, rates.
set -euo pipefail
cd "$(dirname "$0")/.."

# The only ignored tests of snnc-runtime are the GPU ones; one at a time (one GPU).
cargo test --release --features cuda -p snnc-runtime -- --ignored --nocapture --test-threads 1
cargo bench -p snnc-runtime --features cuda --bench cuda_coba -- "${STEPS:-1000}"
