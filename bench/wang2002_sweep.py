#!/usr/bin/env python3
"""Wang 2002 decision network (examples/wang2002.snn): reaction time and accuracy
against coherence, every trial a `snnc run` of the example with its stimulus rates
set for the coherence and its own seed.

    python3 bench/wang2002_sweep.py [--trials 8] [--coherences 0,3.2,6.4,12.8,25.6,51.2]
                                    [--snnc target/release/snnc] [--jobs 2]

Needs numpy and matplotlib (target/venv-brian2/bin/python has both) and a release
build (cargo build --release -p snnc). Writes target/wang2002/results.json and
docs/img/wang2002.png: the pool rates of two trials, the reaction time (threshold
crossing of a pool's rate after the stimulus onset) and the accuracy (the fraction of
decided trials that pool A, the favoured one, wins) per coherence.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "wang2002.snn")
MU0 = 40.0  # Hz
T_ON = 0.3  # s, the stimulus onset of the example (`t_on`)


def with_coherence(text, c):
    """The example with the stimulus rates mu0 (1 +- c / 100) of pools A and B."""
    for pool, sign in (("A", 1.0), ("B", -1.0)):
        rate = MU0 * (1.0 + sign * c / 100.0)
        pattern = rf"(layer {pool} = WangLIF\[\d+\] \{{[^}}]*nu_stim = )[0-9.]+ Hz"
        text, n = re.subn(pattern, rf"\g<1>{rate:.4f} Hz", text)
        assert n == 1, f"no stimulus setting for pool {pool} in {EXAMPLE}"
    return text


def pool_size(text, pool):
    return int(re.search(rf"layer {pool} = WangLIF\[(\d+)\]", text).group(1))


def rates(times, n, duration, window, step):
    """A pool's rate (Hz per neuron) in windows of `window` s every `step` s: (centres, rates)."""
    centres = np.arange(window / 2, duration - window / 2 + 1e-12, step)
    times = np.sort(times)
    counts = np.searchsorted(times, centres + window / 2) - np.searchsorted(times, centres - window / 2)
    return centres, counts / (n * window)


def trial(args, text, c, seed):
    d = os.path.join(args.out, f"c{c:g}_s{seed}")
    os.makedirs(d, exist_ok=True)
    snn = os.path.join(d, "wang2002.snn")
    with open(snn, "w") as f:
        f.write(with_coherence(text, c))
    t0 = time.time()
    done = os.path.exists(os.path.join(d, "B.spikes.t.npy"))
    cmd = [args.snnc, "run", snn, "--duration", f"{args.duration}s", "--seed", str(seed), "--threads", "1", "--out", d]
    r = subprocess.run(["true"] if args.reuse and done else cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    wall = time.time() - t0
    out = {"c": c, "seed": seed, "wall_s": wall}
    for pool in ("A", "B"):
        t = np.load(os.path.join(d, f"{pool}.spikes.t.npy"))
        centres, r_pool = rates(t, pool_size(text, pool), args.duration, args.window, args.step)
        out[pool] = r_pool.tolist()
    out["t"] = centres.tolist()
    # The decision: the first window after the onset where a pool's rate crosses the threshold.
    ra, rb, tc = np.array(out["A"]), np.array(out["B"]), centres
    after = tc > T_ON
    cross = np.nonzero(after & ((ra >= args.threshold) | (rb >= args.threshold)))[0]
    if len(cross):
        k = cross[0]
        out["rt"] = float(tc[k] - T_ON)
        out["choice"] = "A" if ra[k] >= rb[k] else "B"
    else:
        out["rt"], out["choice"] = None, None
    # The winner at the end of the stimulus (mean rate over its last 200 ms).
    last = (tc > args.duration - 0.2)
    out["final"] = {"A": float(ra[last].mean()), "B": float(rb[last].mean())}
    print(f"c = {c:5.1f} %  seed {seed}: choice {out['choice']}, RT {out['rt']}, final A {out['final']['A']:.1f} Hz, B {out['final']['B']:.1f} Hz ({wall:.0f} s)", flush=True)
    return out


def figure(results, coherences, path, threshold):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    # Two example trials: a high and a zero coherence.
    for c, style in ((max(coherences), "-"), (min(coherences), "--")):
        r = next((r for r in results if r["c"] == c and r["choice"]), None)
        if r:
            t = np.array(r["t"]) - T_ON
            ax[0].plot(t, r["A"], "C3" + style, label=f"A, c = {c:g} %")
            ax[0].plot(t, r["B"], "C0" + style, label=f"B, c = {c:g} %")
    ax[0].axhline(threshold, color="k", lw=0.5)
    ax[0].set(xlabel="time from stimulus onset (s)", ylabel="pool rate (Hz)", title="winner takes all")
    ax[0].legend(fontsize=8)
    cs, rt_mean, rt_sem, acc = [], [], [], []
    for c in coherences:
        rs = [r for r in results if r["c"] == c]
        decided = [r for r in rs if r["choice"]]
        rts = np.array([r["rt"] for r in decided])
        cs.append(max(c, 1.0))  # c = 0 drawn at 1 % on the log axis
        rt_mean.append(rts.mean() * 1e3 if len(rts) else np.nan)
        rt_sem.append(rts.std(ddof=1) / np.sqrt(len(rts)) * 1e3 if len(rts) > 1 else 0.0)
        acc.append(np.mean([r["choice"] == "A" for r in decided]) * 100 if decided else np.nan)
    ax[1].errorbar(cs, rt_mean, yerr=rt_sem, fmt="o-", color="k")
    ax[1].set(xscale="log", xlabel="coherence (%) (0 drawn at 1)", ylabel="reaction time (ms)", title="RT (mean +- s.e.m.)")
    ax[2].plot(cs, acc, "o-", color="k")
    ax[2].set(xscale="log", xlabel="coherence (%) (0 drawn at 1)", ylabel="% choices of A", ylim=(0, 105), title="accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snnc", default=os.path.join(ROOT, "target", "release", "snnc"))
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--coherences", default="0,3.2,6.4,12.8,25.6,51.2")
    p.add_argument("--duration", type=float, default=2.3, help="s; the stimulus runs from 0.3 s to 2.3 s")
    p.add_argument("--threshold", type=float, default=15.0, help="Hz")
    p.add_argument("--window", type=float, default=0.05, help="s, rate window")
    p.add_argument("--step", type=float, default=0.005, help="s, rate sampling")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--reuse", action="store_true", help="analyse the trials already run under --out again")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "wang2002"))
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "img", "wang2002.png"))
    args = p.parse_args()
    coherences = [float(c) for c in args.coherences.split(",")]
    text = open(EXAMPLE).read()
    jobs = [(c, seed) for seed in range(args.trials) for c in coherences]
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as ex:
        results = list(ex.map(lambda j: trial(args, text, *j), jobs))
    wall = time.time() - t0
    print(f"\n{len(jobs)} trials of {args.duration} s in {wall:.0f} s ({args.jobs} at a time); threshold {args.threshold} Hz")
    print("| coherence (%) | trials | decided | RT (ms, mean +- s.e.m.) | A chosen (%) |")
    print("|---|---|---|---|---|")
    for c in coherences:
        rs = [r for r in results if r["c"] == c]
        decided = [r for r in rs if r["choice"]]
        rts = np.array([r["rt"] for r in decided]) * 1e3
        sem = rts.std(ddof=1) / np.sqrt(len(rts)) if len(rts) > 1 else 0.0
        acc = 100 * np.mean([r["choice"] == "A" for r in decided]) if decided else float("nan")
        print(f"| {c:g} | {len(rs)} | {len(decided)} | {rts.mean() if len(rts) else float('nan'):.0f} +- {sem:.0f} | {acc:.0f} |")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "wall_s": wall, "trials": results}, f)
    figure(results, coherences, args.png, args.threshold)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
