//! Rate and graded populations as sources (issue 20 item 1): a neuron's `output` is what
//! its projections carry - a rate every step, or a graded event `value * spike` sent
//! only where it is non-zero. Forward against hand-written references (dense, sparse,
//! readout feedback), JIT against the interpreter, and gradients through them: BPTT
//! against finite differences, D-RTRL and ES-D-RTRL against BPTT, all in f64.

use crate::common::program;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::gpu::{EmuDevice, GpuNetwork};
use snnc_runtime::kernels::{InterpFactory, JitFactory};
use snnc_runtime::learn::{Method, gradient_of};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::tasks::RandomSpikes;

const TAU: f64 = 0.01;
const DT: f64 = 1e-3;
const THETA: f64 = 0.5;

/// `Rate` sends tanh(x) every step; `Graded` (an EGRU-like cell) sends c where it
/// crosses theta, then subtracts theta; `Probe` integrates what it receives.
const MODELS: &str = "
neuron Rate {
    param tau = 10 ms
    state x = 0.0
    input I
    dx/dt = (-x + I) / tau
    output r = tanh(x)
}
neuron Graded {
    param tau = 10 ms
    param theta = 0.5
    state c = 0.0
    input I
    dc/dt = (-c + I) / tau
    spike when c > theta surrogate sigmoid(alpha = 4.0)
    on spike { c -= theta }
    output y = c
}
neuron Spiking {
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
    spike when v > 1
    on spike { v -= 1 }
}
neuron Probe {
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
}
";

fn text(network: &str) -> String {
    format!("{MODELS}\nnetwork n {{\n    dt = 1 ms\n{network}\n}}")
}

/// The exact step of `dx/dt = (-x + I) / tau` with I held over the step.
fn leak(x: f64, i: f64, tau: f64) -> f64 {
    let a = (-DT / tau).exp();
    a * x + (1.0 - a) * i
}

fn input(t: usize, b: usize, n: usize) -> Vec<f64> {
    (0..b * n).map(|k| ((t * 7 + k * 3) as f64 * 0.37).sin().abs() * 1.5).collect()
}

/// `x W` for row-major `w` (n_pre x n_post).
fn times(x: &[f64], w: &ndarray::Array2<f64>) -> Vec<f64> {
    (0..w.ncols()).map(|j| (0..w.nrows()).map(|i| x[i] * w[[i, j]]).sum()).collect()
}

const RESERVOIR: &str = "    input u: 2
    layer rec = Rate[12] { x = U(-1, 1) }
    readout out = Linear[1]
    connect u -> rec dense weight normal(0, 1) as w_in
    connect rec -> rec dense weight normal(0, 0.5) as w_rec
    connect rec -> out dense weight normal(0, 0.3) as w_out
    connect out -> rec dense weight U(-1, 1) as w_fb";

/// A rate reservoir with readout feedback: x^t = leak(x^{t-1}, u^t W_in + r^{t-1} W_rec
/// + z^{t-1} W_fb), r^t = tanh(x^t), z^t = r^t W_out - written out by hand.
#[test]
fn a_rate_reservoir_with_readout_feedback_equals_a_hand_written_reference() {
    let p = program(&text(RESERVOIR));
    for jit in [false, true] {
        let opts = Options { seed: 4, ..Options::default() };
        let mut net = if jit { Network::<f64>::build(&p, &p.networks[0], &opts, &JitFactory) } else { Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory) }.unwrap();
        let w = |name: &str| net.dense_weights(net.projection(name).unwrap().0).unwrap().clone();
        let (w_in, w_rec, w_out, w_fb) = (w("w_in"), w("w_rec"), w("w_out"), w("w_fb"));
        let mut x = net.pops[0].states[0].clone();
        let mut r: Vec<f64> = x.iter().map(|v| v.tanh()).collect();
        // Before the first step nothing has been sent yet.
        r.fill(0.0);
        let mut z = vec![0.0];
        for t in 0..60 {
            let u = input(t, 1, 2);
            net.step(&[&u]).unwrap();
            let drive: Vec<f64> = times(&u, &w_in).iter().zip(times(&r, &w_rec)).zip(times(&z, &w_fb)).map(|((a, b), c)| a + b + c).collect();
            x = x.iter().zip(&drive).map(|(x, i)| leak(*x, *i, TAU)).collect();
            r = x.iter().map(|v| v.tanh()).collect();
            z = times(&r, &w_out);
            let got = &net.pops[0];
            for i in 0..12 {
                assert!((got.states[0][i] - x[i]).abs() < 1e-12, "jit {jit}, step {t}: x[{i}] {} vs {}", got.states[0][i], x[i]);
                assert!((got.spikes()[i] - r[i]).abs() < 1e-12, "jit {jit}, step {t}: sent r[{i}] {} vs {}", got.spikes()[i], r[i]);
            }
            assert!((net.pops[1].output[0] - z[0]).abs() < 1e-12, "jit {jit}, step {t}: z {} vs {}", net.pops[1].output[0], z[0]);
        }
        assert!(z[0].abs() > 1e-3, "the feedback carries something");
    }
}

const GRADED: &str = "    input u: 3
    layer g = Graded[10]
    readout p = Probe[4]
    readout q = Probe[4]
    connect u -> g dense weight U(0, 2) as w_in
    connect g -> p sparse p = 0.5 weight normal(0, 1) as to_p
    connect g -> q dense weight normal(0, 1) as to_q";

/// Graded events: c^t = leak(c^{t-1} - theta s^{t-1}, u^t W), sent y^t = c^t H(c^t - theta),
/// delivered only where non-zero, through a sparse and a dense projection.
#[test]
fn graded_events_equal_a_hand_written_reference_dense_and_sparse() {
    for jit in [false, true] {
        graded_reference(jit);
    }
}

/// The graded reference with the JIT's kernels or the interpreter's.
fn graded_reference(jit: bool) {
    let p = program(&text(GRADED));
    let opts = Options { seed: 2, batch: 2, ..Options::default() };
    let mut net = if jit { Network::<f64>::build(&p, &p.networks[0], &opts, &JitFactory) } else { Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory) }.unwrap();
    let w = |name: &str| net.dense_weights(net.projection(name).unwrap().0).cloned();
    let (w_in, w_q) = (w("w_in").unwrap(), w("to_q").unwrap());
    // The sparse projection's synapses as a dense matrix.
    let (row_ptr, col, val) = net.sparse_weights(net.projection("to_p").unwrap().0).map(|(r, c, v)| (r.to_vec(), c.to_vec(), v.to_vec())).unwrap();
    let mut w_p = ndarray::Array2::<f64>::zeros((10, 4));
    for i in 0..10 {
        for k in row_ptr[i]..row_ptr[i + 1] {
            w_p[[i, col[k] as usize]] = val[k];
        }
    }
    let (b, n) = (2, 10);
    let mut c = vec![0.0; b * n];
    let mut y = vec![0.0; b * n];
    let (mut vp, mut vq) = (vec![0.0; b * 4], vec![0.0; b * 4]);
    let (mut events, mut silent) = (0, 0);
    for t in 0..80 {
        let u = input(t, b, 3);
        net.step(&[&u]).unwrap();
        for e in 0..b {
            let drive = times(&u[e * 3..e * 3 + 3], &w_in);
            for i in 0..n {
                let k = e * n + i;
                let s = if c[k] > THETA { 1.0 } else { 0.0 };
                c[k] = leak(c[k] - THETA * s, drive[i], TAU);
                y[k] = if c[k] > THETA { c[k] } else { 0.0 };
            }
            let (ip, iq) = (times(&y[e * n..(e + 1) * n], &w_p), times(&y[e * n..(e + 1) * n], &w_q));
            for j in 0..4 {
                vp[e * 4 + j] = leak(vp[e * 4 + j], ip[j], TAU);
                vq[e * 4 + j] = leak(vq[e * 4 + j], iq[j], TAU);
            }
            // Only the non-zero entries are listed for delivery.
            let want: Vec<u32> = (0..n as u32).filter(|&i| y[e * n + i as usize] != 0.0).collect();
            assert_eq!(net.pops[0].active()[e], want, "jit {jit}, step {t}, batch {e}");
            events += want.len();
            silent += n - want.len();
        }
        for k in 0..b * n {
            assert!((net.pops[0].spikes()[k] - y[k]).abs() < 1e-12, "step {t}: sent y[{k}] {} vs {}", net.pops[0].spikes()[k], y[k]);
        }
        for k in 0..b * 4 {
            assert!((net.pops[1].states[0][k] - vp[k]).abs() < 1e-12, "step {t}: sparse delivery p[{k}] {} vs {}", net.pops[1].states[0][k], vp[k]);
            assert!((net.pops[2].states[0][k] - vq[k]).abs() < 1e-12, "step {t}: dense delivery q[{k}] {} vs {}", net.pops[2].states[0][k], vq[k]);
        }
    }
    assert!(events > 50 && silent > 50, "events {events}, silent {silent}: both cases occur");
    assert!(y.iter().all(|v| *v == 0.0 || *v > THETA));
}

/// A layer of `model` (recurrent when `recurrent`) read by a `Linear` readout.
fn learning_text(model: &str, recurrent: bool) -> String {
    let rec = if recurrent { "\n    connect L -> L.I dense trainable init normal(0, 0.5) no_self as W_rec" } else { "" };
    text(&format!(
        "    input x: 3
    layer L = {model}[5]
    readout out = Linear[2]
    connect x -> L.I dense trainable init normal(0, 2) as W_in{rec}
    connect L -> out dense trainable init normal(0, 1) as W_out"
    ))
}

fn names(recurrent: bool) -> Vec<String> {
    let mut v = vec!["W_in".to_string(), "W_out".to_string()];
    if recurrent {
        v.push("W_rec".into());
    }
    v
}

fn data() -> RandomSpikes {
    RandomSpikes::new(50, 2, 3, 2, 0.4, 7)
}

fn build(text: &str, smooth: Option<f64>) -> Network<f64> {
    let p = program(text);
    let opts = Options { batch: 2, seed: 9, smooth_spikes: smooth, learning: true, ..Options::default() };
    Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap()
}

fn max_abs(a: &ndarray::Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// BPTT equals central finite differences of the sequence loss through a recurrent rate
/// layer (smooth as it is) and a recurrent graded layer (its spike a sigmoid, `smooth`).
#[test]
fn bptt_through_rate_and_graded_layers_matches_finite_differences() {
    for (model, smooth) in [("Rate", None), ("Graded", Some(4.0))] {
        let t = learning_text(model, true);
        let train = names(true);
        let g = gradient_of(&mut build(&t, smooth), &train, &mut data(), Method::Bptt, false).unwrap();
        let loss_with = |name: &str, i: usize, j: usize, delta: f64| {
            let mut n = build(&t, smooth);
            let (pi, ..) = n.projection(name).unwrap();
            let mut w = n.dense_weights(pi).unwrap().clone();
            w[[i, j]] += delta;
            n.set_projection_weights(pi, w).unwrap();
            gradient_of(&mut n, &[], &mut data(), Method::Bptt, false).unwrap().loss
        };
        for name in &train {
            let grad = g.get(name).unwrap();
            let scale = max_abs(grad);
            assert!(scale > 0.0, "{model} {name}: zero gradient");
            for (i, j) in [(0, 0), (1, 1), (2, 1), (0, 1)] {
                if name == "W_rec" && i == j {
                    continue;
                }
                let h = 1e-5;
                let fd = (loss_with(name, i, j, h) - loss_with(name, i, j, -h)) / (2.0 * h);
                assert!((fd - grad[[i, j]]).abs() <= 1e-5 * scale, "{model} {name}[{i},{j}]: BPTT {:e} vs finite differences {fd:e}", grad[[i, j]]);
            }
        }
    }
}

/// On a feed-forward layer read by the loss, D-RTRL is exact (ALGORITHMS.md): it equals
/// BPTT through rate and graded sources, with graded spikes as they run (Heaviside
/// forward, surrogate backward) and smooth. ES-D-RTRL is its documented rank-one
/// approximation (both traces smoothed by the decay): it must point the way BPTT does.
#[test]
fn online_methods_through_rate_and_graded_sources_against_bptt() {
    let train = names(false);
    let decay = (-DT / TAU).exp();
    for (model, smooth) in [("Rate", None), ("Graded", None), ("Graded", Some(4.0))] {
        let t = learning_text(model, false);
        let grad = |m: Method| gradient_of(&mut build(&t, smooth), &train, &mut data(), m, false).unwrap();
        let (gb, gd, ge) = (grad(Method::Bptt), grad(Method::DRtrl), grad(Method::EsDRtrl { decay }));
        for name in &train {
            let (b, d, e) = (gb.get(name).unwrap(), gd.get(name).unwrap(), ge.get(name).unwrap());
            let scale = max_abs(b);
            assert!(scale > 0.0, "{model} {name}: zero gradient");
            let err = max_abs(&(d - b)) / scale;
            assert!(err < 1e-10, "{model} (smooth {smooth:?}) {name}: D-RTRL vs BPTT {err:e}");
            let cos = (e * b).sum() / (e.iter().map(|v| v * v).sum::<f64>().sqrt() * b.iter().map(|v| v * v).sum::<f64>().sqrt());
            eprintln!("{model} (smooth {smooth:?}) {name}: ES-D-RTRL vs BPTT cosine {cos:.4}");
            assert!(cos > 0.99, "{model} (smooth {smooth:?}) {name}: ES-D-RTRL vs BPTT cosine {cos}");
        }
    }
}

/// The CUDA backend does not carry sent values yet: it refuses them by name.
#[test]
fn the_gpu_backend_refuses_rate_sources_and_readout_feedback() {
    for (network, what) in [(learning_text("Rate", true), "`L` sends its `output r`"), (text(RESERVOIR), "`rec` sends its `output r`")] {
        let p = program(&network);
        let host = Network::<f64>::without_kernels(&p, &p.networks[0], &Options::default()).unwrap();
        let err = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
        assert!(err.contains(what) && err.contains("--backend cpu"), "{err}");
    }
    // Feedback from a readout alone (spiking reservoir).
    let p = program(&text(&RESERVOIR.replace("Rate[12] { x = U(-1, 1) }", "Spiking[12]")));
    let host = Network::<f64>::without_kernels(&p, &p.networks[0], &Options::default()).unwrap();
    let err = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
    assert!(err.contains("`w_fb` reads the readout `out`") && err.contains("--backend cpu"), "{err}");
}

/// Gradients through readout feedback are refused by name rather than computed wrong.
#[test]
fn gradients_through_readout_feedback_are_refused() {
    let p = program(&text(&RESERVOIR.replace("dense weight normal(0, 0.3) as w_out", "dense trainable weight normal(0, 0.3) as w_out")));
    let opts = Options { learning: true, ..Options::default() };
    let mut net = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let err = gradient_of(&mut net, &["w_out".to_string()], &mut RandomSpikes::new(5, 1, 2, 1, 0.4, 1), Method::Bptt, false).unwrap_err().to_string();
    assert!(err.contains("`w_fb` reads the output of the readout `out`"), "{err}");
}

/// `examples/wong_wang.snn`: two pools sending their NMDA gating S to each other. The
/// pool with the stronger stimulus wins (Wong & Wang 2006: S near 0.6-0.7 against a
/// silent loser), and keeps its activity for a second after the stimulus ends (working
/// memory); swapping the stimuli swaps the winner.
#[test]
fn the_wong_wang_example_decides_and_remembers() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wong_wang.snn"));
    let mut sources = snnc_compiler::SourceMap::new();
    let (p, d) = snnc_compiler::sema::check_path(path, &snnc_compiler::sema::LoadOptions::default(), &mut sources);
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&d, &sources));
    for (mu_a, mu_b) in [(40.0, 20.0), (20.0, 40.0)] {
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options { seed: 3, ..Options::default() }, &JitFactory).unwrap();
        let s = |net: &Network<f64>, pop: usize| net.pops[pop].states[0][0];
        // 1 s of stimulus, then 1 s of delay (dt = 0.5 ms).
        for t in 0..4000 {
            let (a, b) = if t < 2000 { (mu_a, mu_b) } else { (0.0, 0.0) };
            net.step(&[&[a], &[b]]).unwrap();
            if t == 1999 {
                let (win, lose) = if mu_a > mu_b { (s(&net, 0), s(&net, 1)) } else { (s(&net, 1), s(&net, 0)) };
                assert!(win > 0.5 && lose < 0.1, "stimulus ({mu_a}, {mu_b}) Hz: winner S {win}, loser S {lose}");
            }
        }
        let (win, lose) = if mu_a > mu_b { (s(&net, 0), s(&net, 1)) } else { (s(&net, 1), s(&net, 0)) };
        assert!(win > 0.4 && lose < 0.1, "after the delay: winner S {win}, loser S {lose}");
    }
}
