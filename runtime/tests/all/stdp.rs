//! Plastic synapses (issue 19 items 3 and 5): pair-based and triplet STDP written in
//! `on pre` / `on post`, against closed forms (the STDP window for isolated pairs, the
//! minimal triplet rule of Pfister & Gerstner 2006), a fine-step Euler reference, the
//! interpreter (JIT bit for bit in f64), threads, bounds, delays and the refusals.

use crate::common::program;
use snnc_runtime::kernels::{InterpFactory, JitFactory, KernelFactory};
use snnc_runtime::network::{Network, Options};

const TAU_PRE: f64 = 0.020;
const TAU_POST: f64 = 0.030;
const A_PRE: f64 = 0.01;
const A_POST: f64 = -0.012;
const W0: f64 = 0.5;
const DT: f64 = 1e-4;

/// A neuron that spikes exactly at the steps of `times` (seconds): its clock `c` holds
/// the time of the step (a spike condition on a state, as any neuron's).
fn timed(name: &str, times: &[f64]) -> String {
    let cond: Vec<String> = times.iter().map(|t| format!("(c > {} ms and c < {} ms)", (t - DT / 2.0) * 1e3, (t + DT / 2.0) * 1e3)).collect();
    let cond = if cond.is_empty() { "c < 0 ms".to_string() } else { cond.join(" or ") };
    format!(
        "neuron {name} {{
    state c: ms = 0 ms
    state z = 0
    input I
    dc/dt = 1
    dz/dt = (I - z) / (1 ms)
    spike when (if {cond} then 1 else 0) > 0.5
}}
"
    )
}

/// Brian2's STDP synapse (its `examples/synapses/STDP.py`), bounded in [0, 1].
fn pair_synapse() -> String {
    format!(
        "synapse STDP {{
    param taupre: ms = {} ms
    param taupost: ms = {} ms
    param Apre = {A_PRE}
    param Apost = {A_POST}
    param w_max = 1
    state apre = 0
    state apost = 0
    state g = 0 * w
    dapre/dt = -apre / taupre
    dapost/dt = -apost / taupost
    dg/dt = -g / (5 ms)
    on pre {{
        g += w
        apre += Apre
        w = clip(w + apost, 0, w_max)
    }}
    on post {{
        apost += Apost
        w = clip(w + apre, 0, w_max)
    }}
    output I = g
}}
",
        TAU_PRE * 1e3,
        TAU_POST * 1e3
    )
}

fn pair_text(pre: &[f64], post: &[f64], connect: &str) -> String {
    format!(
        "{}{}{}network n {{
    dt = {} ms
    layer a = Pre[1]
    layer b = Post[1]
    connect a -> b.I via STDP {connect} as ab
}}",
        timed("Pre", pre),
        timed("Post", post),
        pair_synapse(),
        DT * 1e3
    )
}

fn build(text: &str, factory: &'static dyn KernelFactory<f64>) -> Network<f64> {
    let p = program(text);
    Network::build(&p, &p.networks[0], &Options::default(), factory).unwrap()
}

fn run_steps(net: &mut Network<f64>, steps: usize) {
    for _ in 0..steps {
        net.step(&[]).unwrap();
    }
}

fn dense_w(net: &Network<f64>) -> f64 {
    net.dense_weights(0).unwrap()[[0, 0]]
}

/// Brian2's window for an isolated pair, dt = t_post - t_pre (both at step times):
/// potentiation A_pre exp(-dt / tau_pre) for dt >= 0 (at dt = 0 `on pre` runs first),
/// depression A_post exp(dt / tau_post) for dt < 0.
fn window(dt: f64) -> f64 {
    if dt >= 0.0 { A_PRE * (-dt / TAU_PRE).exp() } else { A_POST * (dt / TAU_POST).exp() }
}

#[test]
fn pair_window_is_the_closed_form() {
    for k in [-400i64, -150, -37, -1, 0, 1, 25, 150, 400] {
        let t_pre = 0.05;
        let t_post = t_pre + k as f64 * DT;
        let mut net = build(&pair_text(&[t_pre], &[t_post], &format!("dense weight {W0}")), &JitFactory);
        run_steps(&mut net, 1000);
        let dw = dense_w(&net) - W0;
        let want = window(k as f64 * DT);
        assert!((dw - want).abs() < 1e-12 * want.abs(), "dt = {k} steps: dw {dw}, closed form {want}");
        assert!(if k >= 0 { dw > 0.0 } else { dw < 0.0 }, "sign of dw at {k} steps: {dw}");
    }
}

