#!/usr/bin/env bash
# The CUDA backend's checks on a machine with an NVIDIA GPU (sm_80 or later) and its
# driver, run from the binaries scripts/gpu-build.sh made on a machine with Rust (the GPU
# machine has none): build here, carry `.gpu/`, run there.
#
#   scripts/gpu-build.sh                       # here
#   scripts/gpu-tests.sh OUTDIR                # there; everything printed goes to OUTDIR
#   PARTS="tests train" STEPS=500 scripts/gpu-tests.sh OUTDIR
#
# PARTS (default: all of them):
#   tests  runtime/tests/all/cuda.rs (ignored without a GPU): CPU and GPU give the same
#          spikes (COBA, CUBA, a network with every projection kind), the same gradients
#          (ES-D-RTRL, D-RTRL, BPTT; f64 to 1e-8, f32 to 1e-2 in norm), and examples/dms.snn
#          trained 10 batches on both gives the same weights and spikes; and `snnc run
#          --record spikes` of COBA writes the same files on both (f64, 1000 steps).
#   coba   runtime/benches/cuda_coba.rs: COBA at 4000 and 400 000 neurons (in-degree 80),
#          f32 and f64: time per step, real-time factor, device calls per step; and
#          `snnc bench sim --backend cuda` (forward Euler, as the peers) on the same two
#          networks, beside the CPU's JIT on all cores, with device calls per step.
#   train  `snnc bench train --backend cuda` on the BENCHMARKS.md workload (512 LIF, 128 in,
#          10 out, T 1000): ES-D-RTRL at batch 64 and 256 (and 4096 neurons), BPTT, D-RTRL;
#          with device calls per step in each JSON line.
#   peers  braintrace 0.2.8 on the same GPU and workloads, beside snnc, in the same run
#          (bench/peers/braintrace_train.py), and BrainPy 2.9's COBA (bench/peers/brainpy_coba.py),
#          from the wheels in .gpu/whl.
# Each command has its own timeout; a failure is recorded (OUTDIR/status.txt) and the
# script goes on. Exit status: the number of failed commands (0: all passed).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results/gpu-$(date +%F)}"
PARTS="${PARTS:-tests coba train peers}"
STEPS="${STEPS:-1000}"
BIN=.gpu/bin
mkdir -p "$OUT"
failed=0

if [ ! -x "$BIN/snnc" ]; then
    echo "no $BIN/snnc: run scripts/gpu-build.sh on a machine with Rust first" >&2
    exit 1
fi
# The tests find examples/ through the path they were built at.
build_dir=$(cat .gpu/build_dir)
if [ "$(cd "$build_dir" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
    mkdir -p "$(dirname "$build_dir")" && ln -sfn "$PWD" "$build_dir"
fi

# run NAME SECONDS CMD...: CMD's output to OUTDIR/NAME.txt (and here), its status to status.txt.
run() {
    local name=$1 secs=$2
    shift 2
    local t0=$SECONDS
    timeout "$secs" "$@" 2>&1 | tee -a "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "$name rc=$rc ${secs}s-limit $((SECONDS - t0))s: $*" >> "$OUT/status.txt"
    [ "$rc" = 0 ] || failed=$((failed + 1))
}

has() { [[ " $PARTS " == *" $1 "* ]]; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
if has tests; then
    run tests 300 "$BIN/runtime-tests" cuda:: --ignored --nocapture --test-threads 1
    # End to end: `snnc run` recording spikes on the device (replayed windows) writes the
    # CPU's files, f64, 1000 steps of COBA.
    for be in cuda jit; do
        run tests 120 "$BIN/snnc" run examples/coba.snn --backend $be --precision f64 --duration 0.1s --record spikes --out "$OUT/coba-$be"
    done
    for f in E.spikes.t.npy E.spikes.i.npy I.spikes.t.npy I.spikes.i.npy; do
        run tests 10 cmp "$OUT/coba-cuda/$f" "$OUT/coba-jit/$f"
    done
fi
if has coba; then
    run coba 240 "$BIN/cuda_coba" "$STEPS"
    big=$(python3 -c "import sys; sys.path.insert(0, 'bench'); import compare; print(compare.scaled_network('coba', 400000, '$OUT'))")
    for f in examples/coba.snn "$big"; do
        for be in cuda jit; do
            run coba 240 "$BIN/snnc" bench sim "$f" --backend $be --method euler --duration 1s --reps 2
        done
    done
fi
if has train; then
    for b in 64 256; do
        run train 120 "$BIN/snnc" bench train --backend cuda --method es-d-rtrl --batch $b --steps "$STEPS" --reps 2
    done
    run train 120 "$BIN/snnc" bench train --backend cuda --method es-d-rtrl --batch 256 --steps "$STEPS" --neurons 4096 --inputs 512 --reps 2
    for m in bptt d-rtrl; do
        run train 120 "$BIN/snnc" bench train --backend cuda --method $m --batch 64 --steps "$STEPS" --reps 2
    done
    run train 120 "$BIN/snnc" bench train --backend cuda --method bptt --batch 256 --steps "$STEPS" --reps 2
    run train 120 "$BIN/snnc" bench train --backend cuda --method es-d-rtrl --batch 256 --steps "$STEPS" --precision f64 --reps 2
fi
if has peers; then
    if [ -d .gpu/whl ]; then
        site=$(mktemp -d)
        python3 -m pip install -q --no-index --no-deps --target "$site" .gpu/whl/*.whl
        export PYTHONPATH="$site" XLA_PYTHON_CLIENT_PREALLOCATE=false
        for b in 64 256; do
            run peers 180 python3 bench/peers/braintrace_train.py --method es-d-rtrl --batch $b --steps "$STEPS"
        done
        run peers 180 python3 bench/peers/braintrace_train.py --method bptt --batch 64 --steps "$STEPS"
        run peers 180 python3 bench/peers/braintrace_train.py --method d-rtrl --batch 64 --steps "$STEPS"
        run peers 150 python3 bench/peers/brainpy_coba.py --steps "$STEPS" --sizes 4000
        run peers 150 python3 bench/peers/brainpy_coba.py --steps "$STEPS" --sizes 400000 --procedural
    else
        echo "peers: no .gpu/whl (scripts/gpu-build.sh could not download the wheels)" | tee -a "$OUT/status.txt"
    fi
fi
echo "$failed failed" | tee -a "$OUT/status.txt"
exit "$failed"
