#!/usr/bin/env bash
# One two-thread `snnc bench sim` run of a step-timers build with the caller's thread
# pinned to vCPU MAIN and the worker to vCPU WORKER (`taskset -p` once the run has
# started), printing each thread's microseconds per step of every span: whether a
# thread is slower because of its share or because of its vCPU (docs/benchmarks.md,
# tenth round):
#   bash bench/sim_pinned.sh /tmp/tt/release/snnc coba 40000 3s 0 1
#   bash bench/sim_pinned.sh /tmp/tt/release/snnc coba 40000 3s 1 0
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 6 ] || { echo "usage: bash bench/sim_pinned.sh SNNC coba|cuba N DURATION MAIN WORKER" >&2; exit 2; }
snnc=$1 net=$2 n=$3 dur=$4 main=$5 worker=$6
source bench/sim_lib.sh
"$snnc" bench sim "$file" --method euler --duration "$dur" --threads 2 > "$work/out.json" &
pid=$!
# The worker exists once the network is built (well before the run ends).
tid=""
for _ in $(seq 200); do
    for t in /proc/$pid/task/*; do
        [ "$(cat "$t/comm" 2>/dev/null)" = snnc-sim-1 ] && tid=${t##*/}
    done
    [ -n "$tid" ] && break
    sleep 0.01
done
[ -n "$tid" ] || { echo "no worker thread found" >&2; wait $pid; exit 1; }
taskset -p -c "$main" "$pid" > /dev/null
taskset -p -c "$worker" "$tid" > /dev/null
wait $pid
python3 - "$work/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if "timers" not in r:
    sys.exit("not a step-timers build (cargo build --release -p snnc --features step-timers)")
per = {(s["thread"], s["span"]): s["s"] / r["steps"] * 1e6 for s in r["timers"]}
print(f"run_s {r['run_s']:.3f}")
for span in ["step", "phase", "chunk", "gather", "kernel_head", "kernel_rest", "restart", "scan", "idle", "start"]:
    print(f"{span:12s} thread 0 {per.get((0, span), 0):7.2f}  thread 1 {per.get((1, span), 0):7.2f}")
PY
