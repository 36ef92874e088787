#!/usr/bin/env bash
# 1 process against 2 MPI ranks (docs/scaling.md), interleaved, 3 runs each. Needs a build
# with `--features mpi` and mpirun.
#  - training: the DMS example, ES-D-RTRL, batch 32, 3 batches of a 1 s trial (500 ms
#    delay), f32; wall time per batch of the whole command, no held-out evaluation;
#  - simulation (partitioned, `snnc bench sim`): COBA scaled to N neurons as
#    bench/compare.py scales it (p = 80/N, weights x 4000/N), DURATION of biological time;
#    the run's wall time (`run_s`, build excluded) of 1 process on 1 and on 2 threads, and
#    of 2 ranks of 1 thread each, which yield the core while they wait in a collective
#    (`mpi_yield_when_idle`: on this machine, shared with other builds, a rank spinning
#    in a collective takes the core its peer needs; 2.7x slower without it).
# Usage: bench/mpi_scaling.sh [path/to/snnc] [train|sim|both] [N] [DURATION]
#        (defaults: target/release/snnc both 400000 100ms)
set -euo pipefail
cd "$(dirname "$0")/.."
SNNC=${1:-target/release/snnc}
WHAT=${2:-both}
N=${3:-400000}
DURATION=${4:-100ms}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ "$WHAT" != sim ]; then
    ARGS=(train examples/dms.snn --epochs 1 --batches 3 --batch 32 --delay 500ms --test-batches 0)
    secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); echo "($t1 - $t0) / 3" | bc -l; }
    for run in 1 2 3; do
        one=$(secs "$SNNC" "${ARGS[@]}")
        two=$(secs mpirun --oversubscribe -np 2 "$SNNC" "${ARGS[@]}")
        printf 'train run %d: 1 process %.2f s per batch, 2 ranks %.2f s per batch\n' "$run" "$one" "$two"
    done
fi
if [ "$WHAT" != train ]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    FILE=$(python3 - "$PWD" "$N" "$WORK" <<'PY'
import sys
sys.path.insert(0, sys.argv[1] + "/bench")
import compare
print(compare.scaled_network("coba", int(sys.argv[2]), sys.argv[3]))
PY
)
    # The run's seconds and its spike count from the JSON line (rank 0 prints it).
    field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d["run_s"], d["build_s"], d["spikes"])'; }
    for run in 1 2 3; do
        one=$("$SNNC" bench sim "$FILE" --duration "$DURATION" --threads 1 | field)
        thr=$("$SNNC" bench sim "$FILE" --duration "$DURATION" --threads 2 | field)
        two=$(mpirun --oversubscribe --mca mpi_yield_when_idle 1 -np 2 "$SNNC" bench sim "$FILE" --duration "$DURATION" --threads 1 | field)
        printf 'sim COBA %s, %s, run %d (run s, build s, spikes): 1 process 1 thread %s | 1 process 2 threads %s | 2 ranks %s\n' "$N" "$DURATION" "$run" "$one" "$thr" "$two"
    done
fi
