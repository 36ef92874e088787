"""Song, Miller & Abbott 2000 in Brian2: its own STDP example (examples/synapses/STDP.py),
the model of snnc's examples/song2000.snn, in C++ standalone mode on one thread.

One conductance-based LIF neuron, 1000 Poisson inputs at 15 Hz, additive STDP with hard
bounds [0, gmax] (event-driven traces), 100 s. Writes the final weights (in units of
gmax) to OUT.npy and prints one JSON line: the simulation-loop time the binary measures,
and the code generation + compilation time apart.
"""

import argparse
import json
import os
import shutil
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=100.0, help="seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default="target/brian2_stdp")
    ap.add_argument("--out", required=True, help="final weights / gmax, .npy")
    args = ap.parse_args()

    import brian2 as b2
    from brian2 import Hz, ms, mV, second

    if os.path.exists(args.dir):
        shutil.rmtree(args.dir)
    b2.set_device("cpp_standalone", directory=args.dir, build_on_run=False)
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    b2.defaultclock.dt = 0.1 * ms
    b2.seed(args.seed)

    N = 1000
    taum, taupre, taupost, taue = 10 * ms, 20 * ms, 20 * ms, 5 * ms
    Ee, vt, vr, El = 0 * mV, -54 * mV, -60 * mV, -74 * mV
    F = 15 * Hz
    gmax = 0.01
    dApre = 0.01
    dApost = -dApre * taupre / taupost * 1.05
    dApost *= gmax
    dApre *= gmax

    eqs = """
    dv/dt = (ge * (Ee-v) + El - v) / taum : volt
    dge/dt = -ge / taue : 1
    """
    inputs = b2.PoissonGroup(N, rates=F)
    neurons = b2.NeuronGroup(1, eqs, threshold="v>vt", reset="v = vr", method="euler")
    neurons.v = vr
    S = b2.Synapses(
        inputs,
        neurons,
        """w : 1
           dApre/dt = -Apre / taupre : 1 (event-driven)
           dApost/dt = -Apost / taupost : 1 (event-driven)""",
        on_pre="""ge += w
                  Apre += dApre
                  w = clip(w + Apost, 0, gmax)""",
        on_post="""Apost += dApost
                   w = clip(w + Apre, 0, gmax)""",
    )
    S.connect()
    S.w = "rand() * gmax"
    spikes = b2.SpikeMonitor(neurons)
    b2.run(args.duration * second, report=None)
    t0 = time.perf_counter()
    b2.device.build(directory=args.dir, compile=True, run=False)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    b2.device.run(directory=args.dir)
    run_s = time.perf_counter() - t1
    np.save(args.out, np.asarray(S.w[:]) / gmax)
    loop_s = None
    prof = os.path.join(args.dir, "results", "last_run_info.txt")
    if os.path.exists(prof):
        loop_s = float(open(prof).read().split()[0])
    print(json.dumps({"peer": "brian2", "mode": "cpp_standalone", "duration_s": args.duration, "build_s": round(build_s, 2),
                      "run_s": round(run_s, 2), "loop_s": loop_s, "post_spikes": int(spikes.num_spikes),
                      "mean_w": float(np.mean(S.w[:]) / gmax)}))


if __name__ == "__main__":
    main()
