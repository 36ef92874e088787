"""The training-throughput workload of ../shared/BENCHMARKS.md in braintrace (JAX, CPU, f32).

A recurrent LIF layer (tau 10 ms, dt 1 ms, soft reset v -= v_th, ReluGrad(0.3, 1)
surrogate), Bernoulli(p) inputs, linear readouts, MSE summed over every step; one pass
is the gradient of one batch with respect to W_in, W_rec and W_out.

  bptt       brainstate's reverse-mode grad through a for_loop over the sequence
  d-rtrl     braintrace.D_RTRL (ParamDimVjpAlgorithm): B x I x O traces per weight
  es-d-rtrl  braintrace.pp_prop (IODimVjpAlgorithm), decay_or_rank = decay

The pass is compiled ahead of time (tracing, lowering and XLA compilation: `compile_s`)
and then run once (`seconds`). One JSON line on stdout.
"""

import argparse
import json
import math
import resource
import time

import brainstate
import braintools
import braintrace
import jax
import jax.numpy as jnp


class RecurrentLIF(brainstate.nn.Module):
    """The snnc network `bench` of `snnc bench train`, written with braintrace's ETP ops."""

    def __init__(self, n_in, n_rec, n_out, key, tau=10.0, dt=1.0, v_th=1.0):
        super().__init__()
        k_in, k_rec, k_out = jax.random.split(key, 3)
        self.n_rec = n_rec
        self.w_in = brainstate.ParamState(jax.random.normal(k_in, (n_in, n_rec), jnp.float32) * (1.5 / math.sqrt(n_in)))
        self.w_rec = brainstate.ParamState(jax.random.normal(k_rec, (n_rec, n_rec), jnp.float32) * (0.5 / math.sqrt(n_rec)))
        self.w_out = brainstate.ParamState(jax.random.normal(k_out, (n_rec, n_out), jnp.float32) * (1.0 / math.sqrt(n_rec)))
        # Exact propagator of dv/dt = (-v + I) / tau, as snnc discretises it.
        self.a = math.exp(-dt / tau)
        self.v_th = v_th
        self.spike = braintools.surrogate.ReluGrad(alpha=0.3, width=1.0)

    def init_state(self, batch_size=None, **kwargs):
        self.v = brainstate.HiddenState(jnp.zeros((batch_size, self.n_rec), jnp.float32))

    def reset_state(self, batch_size=None, **kwargs):
        self.v.value = jnp.zeros((batch_size, self.n_rec), jnp.float32)

    def update(self, x):
        # v is stored before its reset (as brainstate's LIF does): the spike of the last
        # step is recomputed from it, soft-reset, and fed back through W_rec.
        v = self.v.value
        z_prev = self.spike(v - self.v_th)
        v = v - self.v_th * z_prev
        i = braintrace.matmul(x, self.w_in.value) + braintrace.matmul(z_prev, self.w_rec.value)
        v = self.a * v + (1.0 - self.a) * i
        self.v.value = v
        z = self.spike(v - self.v_th)
        # The readout has no hidden state: a plain product, differentiated directly.
        return z @ self.w_out.value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["bptt", "d-rtrl", "es-d-rtrl"], required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--neurons", type=int, default=512)
    ap.add_argument("--inputs", type=int, default=128)
    ap.add_argument("--outputs", type=int, default=10)
    ap.add_argument("--etrace-decay", type=float, default=0.9)
    ap.add_argument("--input-p", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    key = jax.random.PRNGKey(a.seed)
    k_model, k_x, k_y = jax.random.split(key, 3)
    xs = (jax.random.uniform(k_x, (a.steps, a.batch, a.inputs)) < a.input_p).astype(jnp.float32)
    ys = jax.random.uniform(k_y, (a.steps, a.batch, a.outputs), jnp.float32) - 0.5
    model = RecurrentLIF(a.inputs, a.neurons, a.outputs, k_model)
    params = model.states(brainstate.ParamState)

    def step_loss(x, y):
        return jnp.sum((model(x) - y) ** 2)

    if a.method == "bptt":
        brainstate.nn.init_all_states(model, batch_size=a.batch)

        def seq_loss(xs, ys):
            brainstate.nn.reset_all_states(model, batch_size=a.batch)
            return brainstate.transform.for_loop(step_loss, xs, ys).sum()

        grad = brainstate.transform.grad(seq_loss, params, return_value=True)
        f = brainstate.transform.jit(grad)
    else:
        if a.method == "d-rtrl":
            learner = braintrace.compile(model, braintrace.D_RTRL, xs[0], batch_size=a.batch)
        else:
            learner = braintrace.compile(model, braintrace.pp_prop, xs[0], batch_size=a.batch, decay_or_rank=a.etrace_decay)

        def learner_loss(x, y):
            return jnp.sum((learner(x) - y) ** 2)

        def online(xs, ys):
            brainstate.nn.reset_all_states(model, batch_size=a.batch)
            return learner.etrace_grad(xs, ys, step_fn=learner_loss, reduction="sum", loss_output="scalar", return_value=True)

        f = brainstate.transform.jit(online)

    # Ahead of time: trace the stateful function, lower and compile it (the compile time),
    # then run the executable once (the pass), so that the process does one pass only.
    t0 = time.perf_counter()
    trace = f.stateful_fun.get_state_trace(xs, ys, compile_if_miss=True)
    state_vals = trace.get_state_values()
    compiled = f.jitted_fun.lower(state_vals, xs, ys).compile()
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    _, (g, loss) = compiled(state_vals, xs, ys)
    jax.block_until_ready((g, loss))
    secs = time.perf_counter() - t1
    leaves = jax.tree_util.tree_leaves(g)
    grad_norm = float(jnp.sqrt(sum(jnp.sum(jnp.square(l)) for l in leaves)))
    print(json.dumps({
        "bench": "train", "tool": "braintrace", "version": braintrace.__version__, "jax": jax.__version__,
        "method": a.method, "T": a.steps, "batch": a.batch, "neurons": a.neurons, "precision": "f32",
        "seconds": secs, "compile_s": compile_s,
        "sample_steps_per_s": a.batch * a.steps / secs, "loss": float(jnp.sum(loss)), "grad_norm": grad_norm,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
