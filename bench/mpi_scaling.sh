#!/usr/bin/env bash
# Training on 1 process against 2 MPI ranks (docs/scaling.md): the DMS example, ES-D-RTRL,
# batch 32, 3 batches of a 1 s trial (500 ms delay), f32; wall time per batch of each,
# no held-out evaluation; interleaved, 3 runs each. Needs a build with `--features mpi` and mpirun.
# Usage: bench/mpi_scaling.sh [path/to/snnc] (default: target/release/snnc)
set -euo pipefail
cd "$(dirname "$0")/.."
SNNC=${1:-target/release/snnc}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ARGS=(train examples/dms.snn --epochs 1 --batches 3 --batch 32 --delay 500ms --test-batches 0)
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "($t1 - $t0) / 3" | bc -l; }
for run in 1 2 3; do
    one=$(secs "$SNNC" "${ARGS[@]}")
    two=$(secs mpirun --oversubscribe -np 2 "$SNNC" "${ARGS[@]}")
    printf 'run %d: 1 process %.2f s per batch, 2 ranks %.2f s per batch\n' "$run" "$one" "$two"
done
