#!/usr/bin/env python3
"""examples/digits_conv.snn in snnTorch (CPU torch), trained with BPTT on the same data.

The same network: 64 rate-coded inputs (Bernoulli per step, probability = intensity,
20 steps of 1 ms) -> Conv2d(1, 8, 3, padding 1) into LIF (tau 10 ms, threshold 1, reset
by subtraction) -> AvgPool2d(2) x 5 into LIF -> Linear(128, 10) into a leaky readout
(r = exp(-dt/tau) r + I); cross-entropy at every step, the prediction the readout summed
over the steps; Adam lr 3e-3 x 0.93 per epoch, batch 32, 45 batches per epoch; the last
fifth of runtime/data/digits.npz (file order) held out and evaluated after every epoch.
snnc's LIF integrates dv/dt = (-v + I)/tau exactly: v' = beta v + (1 - beta) I, so the
inputs into snn.Leaky are scaled by (1 - beta). The surrogate is snnTorch's default
(atan); snnc's LIF uses relu_grad, so accuracies differ a little, the work does not.

usage: digits_snntorch.py [--epochs N] [--threads T]
prints one JSON line: wall seconds of the training batches (`train_s`, and training
samples per second from it), of training and the per-epoch evaluations together
(`total_s`), and the held-out accuracy per epoch.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import snntorch as snn
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))


def load():
    d = np.load(os.path.join(HERE, "..", "runtime", "data", "digits.npz"))
    x = d["images"].reshape(-1, 1, 8, 8).astype(np.float32) / 16.0
    y = d["labels"].astype(np.int64)
    held = len(x) // 5
    return (torch.from_numpy(x[:-held]), torch.from_numpy(y[:-held])), (torch.from_numpy(x[-held:]), torch.from_numpy(y[-held:]))


class Net(nn.Module):
    def __init__(self, dt=1e-3, tau=10e-3):
        super().__init__()
        self.beta = math.exp(-dt / tau)
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        nn.init.normal_(self.conv.weight, 0.0, 10.0 / 3.0)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(128, 10, bias=False)
        nn.init.normal_(self.fc.weight, 0.0, 1.0 / math.sqrt(128))
        self.lif1 = snn.Leaky(beta=self.beta, threshold=1.0, reset_mechanism="subtract")
        self.lif2 = snn.Leaky(beta=self.beta, threshold=1.0, reset_mechanism="subtract")

    def forward(self, x, steps):
        """x: (B, 1, 8, 8) intensities; returns the readout per step (T, B, 10)."""
        m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        r = torch.zeros(x.shape[0], 10)
        out = []
        g = 1.0 - self.beta
        for _ in range(steps):
            s_in = (torch.rand_like(x) < x).float()
            s1, m1 = self.lif1(g * self.conv(s_in), m1)
            s2, m2 = self.lif2(g * 5.0 * 4.0 * self.pool(s1), m2)  # pool: weight 5 on each of 4 taps
            r = self.beta * r + self.fc(s2.flatten(1))  # (c, y, x): snnc's layout
            out.append(r)
        return torch.stack(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(3)
    (xtr, ytr), (xte, yte) = load()
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.93)
    ce = nn.CrossEntropyLoss(reduction="sum")
    batch, batches = 32, 45
    train_s, accs = 0.0, []
    start = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.randperm(len(xtr))
        t0 = time.perf_counter()
        for b in range(batches):
            idx = perm[(b * batch) % len(xtr):][:batch]
            out = net(xtr[idx], a.steps)
            loss = sum(ce(o, ytr[idx]) for o in out)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        train_s += time.perf_counter() - t0
        with torch.no_grad():
            pred = net(xte, a.steps).sum(0).argmax(1)
            accs.append(round(100.0 * (pred == yte).float().mean().item(), 1))
    total_s = time.perf_counter() - start
    samples = a.epochs * batches * batch
    print(json.dumps({"peer": "snntorch", "version": snn.__version__, "torch": torch.__version__, "threads": a.threads, "epochs": a.epochs,
                      "train_s": round(train_s, 2), "total_s": round(total_s, 2), "train_samples_per_s": round(samples / train_s, 1),
                      "test_accuracy": accs}))


if __name__ == "__main__":
    main()
