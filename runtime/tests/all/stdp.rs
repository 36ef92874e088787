//! Plastic synapses (issue 19 items 3 and 5): pair-based and triplet STDP written in
//! `on pre` / `on post`, against closed forms (the STDP window for isolated pairs, the
//! minimal triplet rule of Pfister & Gerstner 2006), a fine-step Euler reference, the
//! interpreter (JIT bit for bit in f64), threads, bounds, delays and the refusals.

use crate::common::program;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::gpu::{EmuDevice, GpuNetwork};
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


/// Triplet STDP, the minimal all-to-all model of Pfister & Gerstner 2006 with every term
/// (A2+, A3+, A2-, A3-), written as in their eqs. (3)-(4): at a presynaptic spike
/// `w -= o1 (A2- + A3- r2)` before r1, r2 jump; at a postsynaptic one
/// `w += r1 (A2+ + A3+ o2)` before o1, o2 jump.
const TRIPLET: [f64; 8] = [0.0168, 0.101, 0.0337, 0.125, 5e-3, 6.2e-3, 7e-3, 2.3e-4];

fn triplet_text(pre: &[f64], post: &[f64]) -> String {
    let [tp, tx, tm, ty, a2p, a3p, a2m, a3m] = TRIPLET;
    format!(
        "{}{}synapse Triplet {{
    param tau_plus: ms = {} ms
    param tau_x: ms = {} ms
    param tau_minus: ms = {} ms
    param tau_y: ms = {} ms
    param A2p = {a2p}
    param A3p = {a3p}
    param A2m = {a2m}
    param A3m = {a3m}
    state r1 = 0
    state r2 = 0
    state o1 = 0
    state o2 = 0
    state g = 0 * w
    dr1/dt = -r1 / tau_plus
    dr2/dt = -r2 / tau_x
    do1/dt = -o1 / tau_minus
    do2/dt = -o2 / tau_y
    dg/dt = -g / (5 ms)
    on pre {{
        g += w
        w = clip(w - o1 * (A2m + A3m * r2), 0, 1)
        r1 += 1
        r2 += 1
    }}
    on post {{
        w = clip(w + r1 * (A2p + A3p * o2), 0, 1)
        o1 += 1
        o2 += 1
    }}
    output I = g
}}
network n {{
    dt = {} ms
    layer a = Pre[1]
    layer b = Post[1]
    connect a -> b.I via Triplet dense weight {W0} as ab
}}",
        timed("Pre", pre),
        timed("Post", post),
        tp * 1e3,
        tx * 1e3,
        tm * 1e3,
        ty * 1e3,
        DT * 1e3
    )
}

/// The triplet rule's formula: every detector a sum of exponentials of the spikes
/// before (strictly, for the one read at its own spike), a presynaptic spike first
/// at equal times.
fn triplet_formula(pre: &[f64], post: &[f64]) -> f64 {
    let [tp, tx, tm, ty, a2p, a3p, a2m, a3m] = TRIPLET;
    let sum = |times: &[f64], t: f64, tau: f64, strict: bool| -> f64 { times.iter().filter(|&&s| if strict { s < t } else { s <= t }).map(|s| (-(t - s) / tau).exp()).sum() };
    let mut events: Vec<(f64, bool)> = pre.iter().map(|&t| (t, true)).chain(post.iter().map(|&t| (t, false))).collect();
    events.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(b.1.cmp(&a.1)));
    let mut w = W0;
    for (t, is_pre) in events {
        if is_pre {
            w -= sum(post, t, tm, true) * (a2m + a3m * sum(pre, t, tx, true));
        } else {
            // The presynaptic spikes of this very step came first (`<=`).
            w += sum(pre, t, tp, false) * (a2p + a3p * sum(post, t, ty, true));
        }
    }
    w
}

#[test]
fn triplet_rule_is_its_formula() {
    // Pairs at +-5 ms, then post-pre-post and pre-post-pre triplets and a burst.
    let pre = [0.010, 0.060, 0.105, 0.115, 0.200, 0.2052, 0.2101];
    let post = [0.015, 0.055, 0.100, 0.110, 0.120, 0.2025, 0.2076];
    let p = program(&triplet_text(&pre, &post));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    run_steps(&mut net, 3000);
    let (w, want) = (dense_w(&net), triplet_formula(&pre, &post));
    assert!((w - want).abs() < 1e-14, "w {w}, formula {want}");
    // The triplet terms matter here: without them the result differs.
    assert!((want - W0).abs() > 1e-3, "{want}");
}

#[test]
fn event_driven_updates_equal_a_fine_step_reference() {
    // Irregular trains; the reference integrates the traces with Euler steps of 1 us
    // and runs each event's statements in order (pre before post in one step).
    let pre: Vec<f64> = (0..12).map(|k| 0.004 + k as f64 * 0.0173 + if k % 3 == 0 { 0.0021 } else { 0.0 }).collect();
    let post: Vec<f64> = (0..9).map(|k| 0.009 + k as f64 * 0.0231).collect();
    let mut net = build(&pair_text(&pre, &post, "dense weight 0.5"), &JitFactory);
    run_steps(&mut net, 2500);
    let sub = 100;
    let h = DT / sub as f64;
    let at = |times: &[f64], step: usize| times.iter().any(|t| (t / DT).round() as usize == step);
    let (mut apre, mut apost, mut w) = (0.0, 0.0, W0);
    for step in 0..2500 {
        if at(&pre, step) {
            apre += A_PRE;
            w = (w + apost).clamp(0.0, 1.0);
        }
        if at(&post, step) {
            apost += A_POST;
            w = (w + apre).clamp(0.0, 1.0);
        }
        for _ in 0..sub {
            apre -= h * apre / TAU_PRE;
            apost -= h * apost / TAU_POST;
        }
    }
    let got = dense_w(&net);
    assert!((got - w).abs() < 1e-6 && (got - W0).abs() > 1e-3, "event-driven {got}, fine-step {w}");
}

/// A LIF layer driven by `n_in` inputs through STDP (`topology`), dimensionless.
fn lif_text(n_in: usize, n_out: usize, topology: &str) -> String {
    format!(
        "neuron LIF {{
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
    spike when v > 1
    on spike {{ v -= 1 }}
}}
{}network n {{
    dt = 0.1 ms
    input x: {n_in}
    layer out = LIF[{n_out}]
    connect x -> out.I via STDP {topology} as xo
}}",
        pair_synapse()
    )
}

/// Steps `net` with deterministic irregular input spikes; the output spike count.
fn drive(net: &mut Network<f64>, n_in: usize, steps: usize) -> f64 {
    let mut fired = 0.0;
    let mut state = 12345u64;
    for _ in 0..steps {
        let x: Vec<f64> = (0..n_in)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if (state >> 33) % 100 < 3 { 1.0 } else { 0.0 }
            })
            .collect();
        net.step(&[&x]).unwrap();
        fired += net.pops[0].spikes().iter().sum::<f64>();
    }
    fired
}

/// [`drive`] on the emulated GPU.
fn gpu_drive(net: &mut GpuNetwork<f64, EmuDevice>, n_in: usize, steps: usize) -> f64 {
    let mut fired = 0.0;
    let mut state = 12345u64;
    for _ in 0..steps {
        let x: Vec<f64> = (0..n_in)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if (state >> 33) % 100 < 3 { 1.0 } else { 0.0 }
            })
            .collect();
        net.step(&[&x]).unwrap();
        net.fetch(false).unwrap();
        fired += net.host.pops[0].spikes().iter().sum::<f64>();
    }
    fired
}

fn all_weights(net: &Network<f64>) -> Vec<f64> {
    match net.dense_weights(0) {
        Some(w) => w.iter().copied().collect(),
        None => net.sparse_weights(0).unwrap().2.to_vec(),
    }
}

#[test]
fn jit_equals_interpreter_threads_and_bounds() {
    for topology in ["dense weight U(0.2, 0.8)", "sparse p = 0.5 weight U(0.2, 0.8) delay 1.5 ms"] {
        let p = program(&lif_text(60, 12, topology));
        let o = Options { seed: 5, ..Options::default() };
        let mut a = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
        let mut b = Network::<f64>::build(&p, &p.networks[0], &o, &JitFactory).unwrap();
        let mut c = Network::<f64>::build(&p, &p.networks[0], &o, &JitFactory).unwrap();
        c.set_threads(2).unwrap();
        c.set_chunk(5);
        let w0 = all_weights(&a);
        let fired = drive(&mut a, 60, 3000);
        drive(&mut b, 60, 3000);
        drive(&mut c, 60, 3000);
        let (wa, wb, wc) = (all_weights(&a), all_weights(&b), all_weights(&c));
        assert!(fired > 20.0, "{topology}: the layer fires ({fired})");
        assert_eq!(wa, wb, "{topology}: JIT = interpreter, bit for bit");
        assert_eq!(wb, wc, "{topology}: 2 threads = 1 thread, bit for bit");
        let moved = wa.iter().zip(&w0).filter(|(x, y)| x != y).count();
        assert!(moved > wa.len() / 2, "{topology}: {moved} of {} weights changed", wa.len());
        assert!(wa.iter().all(|w| (0.0..=1.0).contains(w)), "{topology}: weights stay in [0, w_max]");
        assert_eq!(a.pops[0].states, b.pops[0].states, "{topology}: states");
    }
}

#[test]
fn bounds_hold_under_strong_potentiation() {
    // Every pair potentiates by 0.3: the weights pile up at w_max = 1 and stay there.
    let text = lif_text(30, 4, "dense weight 0.9").replace(&format!("param Apre = {A_PRE}"), "param Apre = 0.3").replace(&format!("param Apost = {A_POST}"), "param Apost = 0.0");
    let p = program(&text);
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    drive(&mut net, 30, 3000);
    let w = all_weights(&net);
    assert!(w.iter().all(|w| (0.0..=1.0).contains(w)), "{w:?}");
    assert!(w.iter().filter(|&&w| w == 1.0).count() > w.len() / 2, "{w:?}");
}

#[test]
fn a_delayed_pre_event_arrives_after_the_delay() {
    // As Brian2's delayed `on_pre`: the whole block (delivery, trace, weight) runs when
    // the spike arrives, so the window is that of t_post - (t_pre + delay).
    let d = 2e-3;
    for k in [-30i64, 10, 25] {
        let (t_pre, t_post) = (0.05, 0.05 + k as f64 * DT);
        let mut net = build(&pair_text(&[t_pre], &[t_post], &format!("dense weight {W0} delay 2 ms")), &JitFactory);
        run_steps(&mut net, 1000);
        let want = window(t_post - (t_pre + d));
        let dw = dense_w(&net) - W0;
        assert!((dw - want).abs() < 1e-12 * want.abs(), "k = {k}: dw {dw}, want {want}");
    }
}

#[test]
fn dense_and_sparse_p1_learn_the_same_weights() {
    let run = |topology: &str| {
        let p = program(&lif_text(40, 6, topology));
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
        drive(&mut net, 40, 2000);
        all_weights(&net)
    };
    let (dense, sparse) = (run("dense weight 0.4"), run("sparse p = 1 weight 0.4"));
    assert_eq!(dense, sparse);
    assert!(dense.iter().any(|&w| w != 0.4));
}

#[test]
fn learning_batch_and_procedural_are_refused_and_the_gpu_runs_it() {
    let p = program(&lif_text(10, 3, "dense weight 0.5"));
    // The GPU backend runs it (tests/all/gpu_plastic.rs compares whole networks).
    let host = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let (a, b) = (drive(&mut cpu, 10, 1500), gpu_drive(&mut gpu, 10, 1500));
    gpu.fetch(true).unwrap();
    assert_eq!(a, b, "output spikes");
    assert!(a > 0.0);
    let (wa, wb) = (all_weights(&cpu), all_weights(&gpu.host));
    assert!(wa.iter().zip(&wb).all(|(x, y)| (x - y).abs() <= 1e-12), "{wa:?} {wb:?}");
    assert!(wa.iter().any(|&w| w != 0.5));
    let learning = Options { learning: true, ..Options::default() };
    let err = Network::<f64>::build(&p, &p.networks[0], &learning, &InterpFactory).err().expect("refused").to_string();
    assert!(err.contains("training through a plastic synapse"), "{err}");
    let batch = Options { batch: 2, ..Options::default() };
    let err = Network::<f64>::build(&p, &p.networks[0], &batch, &InterpFactory).err().expect("refused").to_string();
    assert!(err.contains("plastic projection `xo`") && err.contains("batch 1"), "{err}");
    let p = program(&lif_text(10, 3, "procedural p = 0.5 weight 0.5"));
    let err = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).err().expect("refused").to_string();
    assert!(err.contains("`procedural` weights are never stored"), "{err}");
    let p = program(&lif_text(10, 3, "sparse p = 0.5 weight 0.5 delay U(1 ms, 3 ms)"));
    let err = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).err().expect("refused").to_string();
    assert!(err.contains("a delay per synapse is not supported"), "{err}");
}

#[test]
fn a_third_factor_gates_the_rule() {
    // Reward-modulated STDP: the rule reads the target population's `m` (here pulled
    // to the drive R); with R = 0 nothing changes, with R = 1 it is the pair rule.
    let reward_post = timed("Post", &[0.06]).replace("    input I\n", "    state m = 0\n    input I\n    input R\n    dm/dt = (R - m) / (1 ms)\n");
    let synapse = pair_synapse()
        .replace("    state apre = 0\n", "    input m_post: 1\n    state apre = 0\n")
        .replace("w = clip(w + apost, 0, w_max)", "w = clip(w + m_post * apost, 0, w_max)")
        .replace("w = clip(w + apre, 0, w_max)", "w = clip(w + m_post * apre, 0, w_max)");
    for r in [0.0, 1.0] {
        let text = format!(
            "{}{reward_post}{synapse}network n {{
    dt = {} ms
    layer a = Pre[1]
    layer b = Post[1]
    drive b.R = {r}
    connect a -> b.I via STDP dense weight {W0} as ab
}}",
            timed("Pre", &[0.05, 0.07]),
            DT * 1e3
        );
        let mut net = build(&text, &JitFactory);
        run_steps(&mut net, 1000);
        let want = r * (window(0.01) + window(-0.01));
        let dw = dense_w(&net) - W0;
        assert!((dw - want).abs() < 1e-12, "R = {r}: dw {dw}, want {want}");
    }
}

#[test]
fn a_file_defined_projection_learns_as_the_same_one_written_inline() {
    let inline = lif_text(40, 6, "sparse p = 0.5 weight U(0.2, 0.8) delay 1 ms");
    let p = program(&inline);
    let mut a = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    let (rp, col, w) = a.sparse_weights(0).unwrap();
    let path = std::env::temp_dir().join(format!("snnc-stdp-{}.npz", std::process::id()));
    let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(&path).unwrap());
    npz.add_array("indptr", &ndarray::Array1::from(rp.iter().map(|&r| r as u64).collect::<Vec<_>>())).unwrap();
    npz.add_array("indices", &ndarray::Array1::from(col.to_vec())).unwrap();
    npz.add_array("weight", &ndarray::Array1::from(w.to_vec())).unwrap();
    npz.finish().unwrap();
    let p = program(&lif_text(40, 6, &format!("from \"{}\" delay 1 ms", path.display())));
    let mut b = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    let w0 = all_weights(&a);
    assert_eq!(w0, all_weights(&b));
    drive(&mut a, 40, 2000);
    drive(&mut b, 40, 2000);
    assert_eq!(all_weights(&a), all_weights(&b));
    assert_ne!(all_weights(&a), w0);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_memory_estimate_counts_the_plasticity_and_reset_keeps_the_weights() {
    let p = program(&lif_text(50, 4, "sparse p = 0.5 weight 0.5 delay 2 ms"));
    let e = snnc_runtime::memory::estimate(&p, &p.networks[0], &Options::default(), 8);
    let part = e.parts.iter().find(|x| x.what.starts_with("plasticity of `xo`")).unwrap_or_else(|| panic!("{:?}", e.parts));
    // 22 steps of 50 source spikes in flight, and 16 bytes a synapse by target.
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    let nnz = net.sparse_weights(0).unwrap().2.len() as u64;
    assert!(part.bytes >= 22 * 50 * 8 + 16 * nnz, "{} bytes for {nnz} synapses", part.bytes);
    // A reset clears what is in flight and the traces, and keeps what was learned.
    drive(&mut net, 50, 1500);
    let learned = all_weights(&net);
    assert!(learned.iter().any(|&w| w != 0.5));
    net.reset();
    assert_eq!(all_weights(&net), learned);
    assert!(net.plastic_traces(0).unwrap().states[0].iter().all(|&a| a == 0.0));
}
