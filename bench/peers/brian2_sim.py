"""COBA / CUBA (Brette et al. 2007, benchmarks 1 and 2) in Brian2's C++ standalone mode.

`build`: generate the C++ project for one (network, N, duration) and compile it with g++,
timing code generation and compilation apart. `run`: execute the compiled binary once
(connectivity, simulation, writing the results) and read the simulation-loop time that
the binary measures itself. One JSON line on stdout per call.

Parameters follow ../shared/BENCHMARKS.md and snnc's examples/coba.snn, cuba.snn:
forward Euler, dt 0.1 ms, one thread (`--threads N` > 1: Brian2's OpenMP threads,
`prefs.devices.cpp_standalone.openmp_threads = N`, beside snnc's N threads); above 4000
neurons the connection probability is 80/N and the weights are scaled by 4000/N, so every
neuron keeps 80 inputs on average.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time


def build(args):
    import brian2 as b2
    from brian2 import ms, mV, nS, pF, pA, second

    if os.path.exists(args.dir):
        shutil.rmtree(args.dir)
    b2.set_device("cpp_standalone", directory=args.dir, build_on_run=False)
    # One thread: no OpenMP at all (0), as snnc's one thread; else OpenMP's N threads.
    b2.prefs.devices.cpp_standalone.openmp_threads = 0 if args.threads == 1 else args.threads
    b2.defaultclock.dt = 0.1 * ms
    n = args.neurons
    n_e = n * 4 // 5
    p = 0.02 if n <= 4000 else 80.0 / n
    scale = 4000.0 / n if n > 4000 else 1.0
    b2.seed(args.seed)

    if args.network == "coba":
        eqs = """
        dv/dt = (g_L*(E_L - v) + g_e*(E_e - v) + g_i*(E_i - v) + I_drive) / C : volt (unless refractory)
        dg_e/dt = -g_e / tau_e : siemens
        dg_i/dt = -g_i / tau_i : siemens
        """
        ns = dict(C=200 * pF, g_L=10 * nS, E_L=-60 * mV, E_e=0 * mV, E_i=-80 * mV, tau_e=5 * ms, tau_i=10 * ms, I_drive=200 * pA)
        group = b2.NeuronGroup(n, eqs, threshold="v > -50*mV", reset="v = -60*mV", refractory=5 * ms, method="euler", namespace=ns)
        group.v = "-55*mV + 5*mV*randn()"
        group.g_e = "40*nS + 15*nS*randn()"
        group.g_i = "200*nS + 120*nS*randn()"
        w_e, w_i = 6 * nS * scale, 67 * nS * scale
        on_e, on_i = "g_e += w_e", "g_i += w_i"
    else:
        eqs = """
        dv/dt = (-(v - E_L) + g_e + g_i) / tau_m : volt (unless refractory)
        dg_e/dt = -g_e / tau_e : volt
        dg_i/dt = -g_i / tau_i : volt
        """
        ns = dict(E_L=-49 * mV, tau_m=20 * ms, tau_e=5 * ms, tau_i=10 * ms)
        group = b2.NeuronGroup(n, eqs, threshold="v > -50*mV", reset="v = -60*mV", refractory=5 * ms, method="euler", namespace=ns)
        group.v = "-60*mV + 10*mV*rand()"
        w_e, w_i = 1.62 * mV * scale, -9 * mV * scale
        on_e, on_i = "g_e += w_e", "g_i += w_i"
    exc, inh = group[:n_e], group[n_e:]
    s_e = b2.Synapses(exc, group, on_pre=on_e, namespace=dict(w_e=w_e))
    s_e.connect(p=p)
    s_i = b2.Synapses(inh, group, on_pre=on_i, namespace=dict(w_i=w_i))
    s_i.connect(p=p)
    spikes = b2.SpikeMonitor(group)  # snnc records spikes in memory too
    b2.run(args.duration * second)

    # device.build(compile=False) generates the project; make compiles it.
    t0 = time.perf_counter()
    b2.device.build(directory=args.dir, compile=False, run=False)
    codegen = time.perf_counter() - t0
    t1 = time.perf_counter()
    b2.device.compile_source(args.dir, compiler="gcc", debug=False, clean=True)
    compile_s = time.perf_counter() - t1
    print(json.dumps({"bench": "sim-build", "tool": "brian2", "version": b2.__version__, "network": args.network, "neurons": n,
                      "threads": args.threads, "codegen_s": codegen, "compile_s": compile_s, "build_s": codegen + compile_s}))


def run(args):
    exe = os.path.join(args.dir, "main")
    t0 = time.perf_counter()
    subprocess.run([exe], cwd=args.dir, check=True, stdout=subprocess.DEVNULL)
    total = time.perf_counter() - t0
    info = open(os.path.join(args.dir, "results", "last_run_info.txt")).read().split()
    run_s = float(info[0])
    # Spike count from the monitor's result file (int32 indices, one per spike).
    res = os.path.join(args.dir, "results")
    spikes = None
    for f in os.listdir(res):
        if "spikemonitor_i_" in f:
            spikes = os.path.getsize(os.path.join(res, f)) // 4
    out = {"bench": "sim", "tool": "brian2", "network": args.network, "neurons": args.neurons, "duration_s": args.duration,
           "threads": args.threads, "run_s": run_s, "process_s": total}
    if spikes is not None:
        out["spikes"] = spikes
        out["mean_rate_hz"] = spikes / args.neurons / args.duration
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["build", "run"])
    ap.add_argument("--network", choices=["coba", "cuba"], required=True)
    ap.add_argument("--neurons", type=int, default=4000)
    ap.add_argument("--duration", type=float, default=1.0, help="biological time, s")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="1: no OpenMP; N > 1: OpenMP's N threads (build and run alike)")
    args = ap.parse_args()
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    build(args) if args.action == "build" else run(args)


if __name__ == "__main__":
    sys.exit(main())
