"""Compares the final weight distributions of Song, Miller & Abbott 2000 run by snnc
(examples/song2000.snn) and by Brian2 (bench/peers/brian2_stdp.py): the fraction of
weights near 0 (< 0.1 g_max) and near g_max (> 0.9 g_max), the mean, and the
two-sample Kolmogorov-Smirnov distance between the two sets of 1000 weights; draws
both histograms (docs/img/song2000_weights.png).

    python bench/stdp_compare.py SNNC_W.npy BRIAN2_W.npy [--gmax 0.01] [--png OUT.png]

SNNC_W.npy is `snnc run --out DIR`'s DIR/S.w.npy (in siemens-free units of the leak
conductance, as written); BRIAN2_W.npy is already in units of g_max.
"""

import argparse
import json

import numpy as np


def ks_distance(a, b):
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def summary(w):
    return {"n": int(w.size), "mean": round(float(w.mean()), 4), "near_0": round(float(np.mean(w < 0.1)), 3), "near_gmax": round(float(np.mean(w > 0.9)), 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("snnc")
    ap.add_argument("brian2")
    ap.add_argument("--gmax", type=float, default=0.01)
    ap.add_argument("--png")
    args = ap.parse_args()
    s = np.load(args.snnc).ravel() / args.gmax
    b = np.load(args.brian2).ravel()
    out = {"snnc": summary(s), "brian2": summary(b), "ks_distance": round(ks_distance(s, b), 4)}
    # The KS distance two independent samples of 1000 from one distribution stay below
    # with probability 0.95: 1.36 sqrt(2 / 1000).
    out["ks_95_same_distribution"] = round(1.36 * np.sqrt(2 / 1000), 4)
    print(json.dumps(out))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
        bins = np.linspace(0, 1, 21)
        for a, (w, name) in zip(ax, [(s, "snnc"), (b, "Brian2")]):
            a.hist(w, bins=bins, color="#4477aa" if name == "snnc" else "#cc6677")
            a.set_title(f"{name}: near 0 {np.mean(w < 0.1):.0%}, near g_max {np.mean(w > 0.9):.0%}")
            a.set_xlabel("final weight / g_max")
        ax[0].set_ylabel("synapses (of 1000)")
        fig.suptitle(f"Song, Miller & Abbott 2000: 1000 Poisson inputs at 15 Hz, STDP, 100 s (KS distance {out['ks_distance']:.3f})", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
