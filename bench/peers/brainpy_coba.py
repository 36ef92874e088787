"""COBA in BrainPy 2.9 on the GPU, beside `cuda_coba` (runtime/benches/cuda_coba.rs).

The network of examples/coba.snn scaled as snnc's benchmark scales it: N neurons (80%
excitatory), LIF with refractoriness (BrainPy's LifRefLTC: tau 20 ms, V_th -50 mV, reset
-60 mV, t_ref 5 ms, V ~ N(-55 mV, 2 mV)), exponential conductances (E: 5 ms, 0 mV, 0.6;
I: 10 ms, -80 mV, 6.7), constant input 20, random connectivity of expected in-degree 80
(p = 80 / N), dt 0.1 ms. Projections: `bp.dnn.EventCSRLinear` (a CSR matrix built on the
host) or, with --procedural, `bp.dnn.EventJitFPHomoLinear` (connectivity regenerated
on the fly: no matrix in memory). The step loop is `bm.for_loop`, compiled once
(`compile_s`, a first call) and then timed on a second call (`seconds`). One JSON line
per size on stdout.
"""

import argparse
import json
import time

try:  # BrainPy 3 keeps the 2.x API under brainpy.version2
    import brainpy.version2 as bp
    import brainpy.version2.math as bm
except ImportError:
    import brainpy as bp
    import brainpy.math as bm

NEURON = dict(V_rest=-60.0, V_th=-50.0, V_reset=-60.0, tau=20.0, tau_ref=5.0)


class Coba(bp.DynamicalSystem):
    def __init__(self, n, procedural, seed):
        super().__init__()
        ne, ni = n * 4 // 5, n // 5
        p = 80.0 / n
        init = bp.init.Normal(-55.0, 2.0)
        self.E = bp.dyn.LifRefLTC(ne, V_initializer=init, **NEURON)
        self.I = bp.dyn.LifRefLTC(ni, V_initializer=init, **NEURON)

        def comm(n_pre, n_post, w, k):
            if procedural:
                return bp.dnn.EventJitFPHomoLinear(n_pre, n_post, prob=p, weight=w, seed=seed + k)
            return bp.dnn.EventCSRLinear(bp.conn.FixedProb(p, pre=n_pre, post=n_post, seed=seed + k), w)

        def proj(pre, post, w, tau, e_rev, k):
            return bp.dyn.ProjAlignPostMg2(
                pre=pre,
                delay=None,
                comm=comm(pre.num, post.num, w, k),
                syn=bp.dyn.Expon.desc(post.varshape, tau=tau),
                out=bp.dyn.COBA.desc(E=e_rev),
                post=post,
            )

        self.E2E = proj(self.E, self.E, 0.6, 5.0, 0.0, 1)
        self.E2I = proj(self.E, self.I, 0.6, 5.0, 0.0, 2)
        self.I2E = proj(self.I, self.E, 6.7, 10.0, -80.0, 3)
        self.I2I = proj(self.I, self.I, 6.7, 10.0, -80.0, 4)

    def update(self, inp):
        self.E2E()
        self.E2I()
        self.I2E()
        self.I2I()
        self.E(inp)
        self.I(inp)
        return self.E.spike.sum() + self.I.spike.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--sizes", default="4000,400000")
    ap.add_argument("--procedural", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    bm.set_dt(0.1)
    for n in [int(s) for s in a.sizes.split(",")]:
        for procedural in ([True] if a.procedural else [False, True]):
            t0 = time.perf_counter()
            try:
                net = Coba(n, procedural, a.seed)
                run = lambda i: net.step_run(i, 20.0)
                counts = bm.for_loop(run, bm.arange(a.steps))
                counts.block_until_ready()
                compile_s = time.perf_counter() - t0
                t1 = time.perf_counter()
                counts = bm.for_loop(run, bm.arange(a.steps, 2 * a.steps))
                counts.block_until_ready()
                secs = time.perf_counter() - t1
            except Exception as e:  # a size that does not build is reported, not fatal
                print(json.dumps({"bench": "sim", "tool": "brainpy", "neurons": n, "procedural": procedural, "error": repr(e)[:300]}), flush=True)
                continue
            spikes = float(counts.sum())
            sim_s = a.steps * 0.1e-3
            print(json.dumps({
                "bench": "sim", "tool": "brainpy", "version": bp.__version__, "network": "coba", "neurons": n,
                "projections": "EventJitFPHomoLinear" if procedural else "EventCSRLinear", "steps": a.steps,
                "compile_s": round(compile_s, 3), "seconds": round(secs, 6), "us_per_step": round(secs / a.steps * 1e6, 2),
                "real_time_factor": round(sim_s / secs, 3), "mean_rate_hz": round(spikes / n / sim_s, 2),
                "device": str(bm.get_platform()),
            }), flush=True)


if __name__ == "__main__":
    main()
