"""The cost of calling snnc from Python: `net.run(1)` (and `net.step()`) called many
times, against the Rust stepping of the same network in one `net.run(N)` call (which
pays the Python call once). The difference per step is what Python adds per call.

    pip install ./python            # a release build
    python bench/python_overhead.py [--calls 20000] [--reps 5]

Prints a JSON line per network with medians over interleaved repetitions.
"""

import argparse
import json
import time
from pathlib import Path

import snnc

REPO = Path(__file__).resolve().parents[1]
NETWORKS = {
    "golden_alif (8 inputs, 16 ALIF, 3 readouts)": REPO / "tests/data/golden_alif.snn",
    "cuba (4000 CUBA LIF)": REPO / "examples/cuba.snn",
}


def per_step(f, n):
    t0 = time.perf_counter()
    f(n)
    return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    for label, path in NETWORKS.items():
        net = snnc.load(path).network()
        net.run(100, record=[])  # warm up
        rust, run1, step1 = [], [], []

        def many_run1(n):
            for _ in range(n):
                net.run(1, record=[])

        def many_step(n):
            for _ in range(n):
                net.step()

        calls = a.calls if "golden" in label else max(a.calls // 20, 200)
        for _ in range(a.reps):
            rust.append(per_step(lambda n: net.run(n, record=[]), calls))
            run1.append(per_step(many_run1, calls))
            step1.append(per_step(many_step, calls))
        med = lambda xs: sorted(xs)[len(xs) // 2] * 1e6
        print(json.dumps({
            "network": label,
            "calls": calls,
            "rust_step_us": round(med(rust), 3),
            "py_run1_us": round(med(run1), 3),
            "py_step_us": round(med(step1), 3),
            "run1_overhead_us": round(med(run1) - med(rust), 3),
            "step_overhead_us": round(med(step1) - med(rust), 3),
        }))


if __name__ == "__main__":
    main()
