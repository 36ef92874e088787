#!/usr/bin/env python3
"""Where a simulation step's time goes, per thread: runs a `step-timers` build of snnc
(`cargo build --release -p snnc --features step-timers`) on COBA or CUBA scaled as
bench/compare.py scales them and prints, per thread, microseconds per step of each span
(runtime/src/timers.rs) in the repetition whose run loop took the median time (so that
the spans of one run add up), and the range of each over all repetitions.

    python3 bench/step_timers.py SNNC coba 40000 --duration 0.5s --threads 2 --reps 5

The serial part of a step is `step - phase` on thread 0 (the caller's work outside the
chunks); `idle` is the caller's wait for the others' chunks and a worker's wait for the
next phase (which includes the caller's serial part); `stage_wait` a thread's wait
between two stages of a phase (for the other's last chunk of the earlier population);
`chunk` the chunks of a phase's first stage, `chunk_later` those of its later ones;
`epilogue` a stage's epilogue (its population's spikes joined) on the thread that
finished its last chunk, which the other thread waits through.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("snnc")
    ap.add_argument("network", choices=["coba", "cuba"])
    ap.add_argument("neurons", type=int)
    ap.add_argument("--duration", default="0.5s")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = compare.scaled_network(a.network, a.neurons, work)
        rows = []
        for _ in range(a.reps):
            out = subprocess.run([a.snnc, "bench", "sim", path, "--method", "euler", "--duration", a.duration, "--threads", str(a.threads)],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    if "timers" not in rows[0]:
        sys.exit("no \"timers\" in the output: build snnc with --features step-timers")
    steps = rows[0]["steps"]
    # Per (thread, span), per run: a span missing from a run is missing from its column.
    per = {}
    for run, r in enumerate(rows):
        got = {(t["thread"], t["span"]): t["s"] for t in r["timers"]}
        if (0, "phase") in got:
            got[(0, "serial")] = got[(0, "step")] - got[(0, "phase")]
        got[(0, "loop")] = r["run_s"]
        for k, v in got.items():
            per.setdefault(k, {})[run] = v / steps * 1e6
    print(f"{a.network} {a.neurons}, {a.duration}, {a.threads} thread(s), {a.reps} runs: run_s {sorted(r['run_s'] for r in rows)}")
    spans = ["loop", "step", "phase", "serial", "chunk", "gather", "kernel_head", "kernel_rest", "restart", "scan", "idle", "stage_wait", "start", "chunk_later", "record", "rebalance", "move", "epilogue"]
    threads = sorted({t for t, _ in per})
    mid = sorted(range(len(rows)), key=lambda k: rows[k]["run_s"])[len(rows) // 2]
    print("us per step, median run (min-max of all) | " + " | ".join(f"thread {t}" for t in threads))
    for s in spans:
        cells = [f"{per[(t, s)].get(mid, float('nan')):.2f} ({min(per[(t, s)].values()):.2f}-{max(per[(t, s)].values()):.2f})" if (t, s) in per else "" for t in threads]
        if any(cells):
            print(f"{s:41} | " + " | ".join(cells))
    # The balancer's moves in the median run (the `move` span's calls) and their cost.
    moves = [t for t in rows[mid]["timers"] if t["thread"] == 0 and t["span"] == "move"]
    if moves and moves[0]["calls"]:
        m = moves[0]
        print(f"moves of the chunks' bounds, median run: {m['calls']}, {m['s'] / m['calls'] * 1e3:.3f} ms each")


if __name__ == "__main__":
    main()
