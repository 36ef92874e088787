//! Properties of the learning rules beyond the golden files.
use crate::common::{program, trainable_param_text};
use snnc_compiler::SourceMap;
use snnc_compiler::sema::{self, LoadOptions};
use snnc_runtime::learn::{Method, gradient_of};
use snnc_runtime::train::tasks::RandomSpikes;
use snnc_runtime::kernels::{InterpFactory, JitFactory};
use snnc_runtime::network::{Network, Options};

fn net(file: &str, batch: usize) -> Network<f64> {
    let mut sources = SourceMap::new();
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(file);
    let (p, d) = sema::check_path(&path, &LoadOptions::default(), &mut sources);
    assert!(d.is_empty());
    Network::<f64>::build(&p, &p.networks[0], &Options { batch, seed: 5, learning: true, ..Options::default() }, &JitFactory).unwrap()
}

const TRAIN: [&str; 3] = ["W_in", "W_rec", "W_out"];

#[test]
fn online_memory_is_flat_in_sequence_length_and_bptt_grows() {
    let train: Vec<String> = TRAIN.map(String::from).to_vec();
    let mut bytes = Vec::new();
    for method in [Method::EsDRtrl { decay: 0.9 }, Method::DRtrl, Method::Bptt] {
        let mut row = Vec::new();
        for steps in [100, 1000] {
            let mut n = net("tests/data/golden_lif.snn", 2);
            let g = gradient_of(&mut n, &train, &mut RandomSpikes::new(steps, 2, 8, 3, 0.3, 1), method, false).unwrap();
            row.push(g.state_bytes);
        }
        bytes.push(row);
    }
    eprintln!("state bytes (T = 100, 1000): ES-D-RTRL {:?}, D-RTRL {:?}, BPTT {:?}", bytes[0], bytes[1], bytes[2]);
    // ES-D-RTRL: B*I per projection and B*O*K per (population, input) — W_in and W_rec
    // both drive `rec.I` and share one output trace; D-RTRL: B*I*O*K; neither grows with T.
    assert_eq!(bytes[0][0], bytes[0][1]);
    assert_eq!(bytes[0][0], 8 * 2 * ((8 + 16) + 16));
    assert_eq!(bytes[1][0], bytes[1][1]);
    assert_eq!(bytes[1][0], 8 * 2 * (8 * 16 + 16 * 16));
    // BPTT keeps every step: ten times the steps, about ten times the tape (what is the
    // same every step is kept once, and spikes as their non-zero entries, whose number
    // varies).
    let ratio = bytes[2][1] as f64 / bytes[2][0] as f64;
    assert!((8.0..=11.0).contains(&ratio), "BPTT tape grew {ratio}x for 10x the steps");
}

#[test]
fn d_rtrl_equals_bptt_for_a_feed_forward_layer() {
    // Exact for a single feed-forward layer read directly by the loss (ALGORITHMS.md),
    // on a longer random sequence than the golden file's.
    let train: Vec<String> = ["W_in", "W_out"].map(String::from).to_vec();
    let mut a = net("tests/data/golden_ff_lif.snn", 3);
    let mut b = net("tests/data/golden_ff_lif.snn", 3);
    let gd = gradient_of(&mut a, &train, &mut RandomSpikes::new(300, 3, 8, 3, 0.3, 2), Method::DRtrl, false).unwrap();
    let gb = gradient_of(&mut b, &train, &mut RandomSpikes::new(300, 3, 8, 3, 0.3, 2), Method::Bptt, false).unwrap();
    for name in ["W_in", "W_out"] {
        let (x, y) = (gd.get(name).unwrap(), gb.get(name).unwrap());
        let err = (x - y).iter().map(|v| v * v).sum::<f64>().sqrt() / y.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(err < 1e-12, "{name}: D-RTRL vs BPTT relative error {err:e}");
        assert!(y.iter().any(|v| *v != 0.0), "{name}: the gradient is not trivially zero");
    }
}

/// For every stdlib neuron: BPTT equals finite differences of the whole-sequence loss
/// when the spike is smooth in the forward pass too (sigmoid instead of Heaviside):
/// this checks every derivative path (leak, coupling, resets, the recurrent spikes).
/// Every stdlib neuron model: (file, model, port unit, weight scale, dt, alpha for z).
const STDLIB_NEURONS: [(&str, &str, &str, &str, &str, f64); 9] = [
    ("lif.snn", "LIF", "", "3", "1 ms", 3.0),
    ("lif.snn", "LIFHard", "", "3", "1 ms", 3.0),
    ("alif.snn", "ALIF", "", "3", "1 ms", 3.0),
    ("adlif.snn", "AdLIF", "", "3", "1 ms", 3.0),
    ("gif.snn", "GIF", " pA", "2000", "0.5 ms", 3.0),
    // Driven harder (30 mV/ms) the quadratic Izhikevich dynamics run away within the
    // 60 steps and finite differences of the loss stop being meaningful.
    ("izhikevich.snn", "Izhikevich", " mV / ms", "10", "0.5 ms", 3.0),
    ("coba.snn", "COBALIF", " pA", "800", "0.5 ms", 3.0),
    ("coba.snn", "CUBALIF", " mV", "40", "0.5 ms", 3.0),
    ("hh.snn", "HH", " pA", "2000", "0.1 ms", 300.0),
];

/// A network of one layer of stdlib `model` (input `x: 3`, readout `Linear[2]`), with a
/// recurrent `W_rec` when `recurrent`.
fn one_layer_text((file, model, unit, scale, dt, _): (&str, &str, &str, &str, &str, f64), recurrent: bool) -> String {
    let rec = if recurrent { format!("\n    connect L -> L.I dense trainable init normal(0{unit}, {scale}{unit}) no_self as W_rec") } else { String::new() };
    format!(
        r#"import "stdlib/{file}"
network n {{
    dt = {dt}
    input x: 3
    layer L = {model}[4]
    readout out = Linear[2]
    connect x -> L.I dense trainable init normal(0{unit}, {scale}{unit}) as W_in{rec}
    connect L -> out dense trainable init normal(0, 1) as W_out
}}"#
    )
}

/// D-RTRL is exact for a single feed-forward layer read directly by the loss
/// (ALGORITHMS.md): for every stdlib neuron model it equals BPTT, with the spikes of the
/// forward pass (Heaviside, surrogate gradient) and with smooth ones.
#[test]
fn d_rtrl_equals_bptt_on_a_feed_forward_layer_of_every_stdlib_neuron() {
    for case in STDLIB_NEURONS {
        let (model, alpha) = (case.1, case.5);
        let text = one_layer_text(case, false);
        let mut sources = SourceMap::new();
        let (p, d) = sema::check_source("t.snn", &text, &mut sources);
        assert!(d.iter().all(|d| !d.is_error()), "{model}: {}", snnc_compiler::diag::render_all(&d, &sources));
        let train: Vec<String> = ["W_in", "W_out"].map(String::from).to_vec();
        for smooth in [None, Some(alpha)] {
            let opts = Options { batch: 2, seed: 12, smooth_spikes: smooth, learning: true, ..Options::default() };
            let grad = |method: Method| {
                let mut n = Network::<f64>::build(&p, &p.networks[0], &opts, &JitFactory).unwrap();
                gradient_of(&mut n, &train, &mut RandomSpikes::new(120, 2, 3, 2, 0.4, 4), method, false).unwrap()
            };
            let (gd, gb) = (grad(Method::DRtrl), grad(Method::Bptt));
            for name in ["W_in", "W_out"] {
                let (x, y) = (gd.get(name).unwrap(), gb.get(name).unwrap());
                if smooth.is_some() {
                    assert!(y.iter().any(|v| *v != 0.0), "{model} {name}: zero gradient");
                }
                let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let err = (x - y).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(err <= 1e-10 * scale.max(1e-300) || (scale == 0.0 && err == 0.0), "{model} {name} (smooth {smooth:?}): D-RTRL vs BPTT max error {err:e} of {scale:e}");
            }
        }
    }
}

#[test]
fn bptt_matches_finite_differences_with_smooth_spikes() {
    for case in STDLIB_NEURONS {
        let (model, alpha) = (case.1, case.5);
        let text = one_layer_text(case, true);
        let mut sources = SourceMap::new();
        let (p, d) = sema::check_source("t.snn", &text, &mut sources);
        assert!(d.iter().all(|d| !d.is_error()), "{model}: {}", snnc_compiler::diag::render_all(&d, &sources));
        let opts = Options { batch: 2, seed: 11, smooth_spikes: Some(alpha), learning: true, ..Options::default() };
        let build = || Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
        let train: Vec<String> = TRAIN.map(String::from).to_vec();
        let steps = 60;
        let loss_with = |name: &str, i: usize, j: usize, delta: f64| -> f64 {
            let mut n = build();
            let (pi, ..) = n.projection(name).unwrap();
            let mut w = n.dense_weights(pi).unwrap().clone();
            w[[i, j]] += delta;
            n.set_projection_weights(pi, w).unwrap();
            gradient_of(&mut n, &[], &mut RandomSpikes::new(steps, 2, 3, 2, 0.4, 3), Method::DRtrl, false).unwrap().loss
        };
        let mut n = build();
        let g = gradient_of(&mut n, &train, &mut RandomSpikes::new(steps, 2, 3, 2, 0.4, 3), Method::Bptt, false).unwrap();
        let mut checked = 0;
        for name in TRAIN {
            let grad = g.get(name).unwrap();
            let (pi, ..) = n.projection(name).unwrap();
            let w = n.dense_weights(pi).unwrap().clone();
            for (i, j) in [(0, 0), (1, 1), (2, 1), (0, 1)] {
                if i >= grad.nrows() || j >= grad.ncols() || (name == "W_rec" && i == j) {
                    continue;
                }
                let h = 1e-5 * w[[i, j]].abs().max(w.iter().fold(0.0f64, |m, v| m.max(v.abs())) * 1e-2);
                let fd = (loss_with(name, i, j, h) - loss_with(name, i, j, -h)) / (2.0 * h);
                let bp = grad[[i, j]];
                let scale = grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!((fd - bp).abs() <= 1e-4 * scale.max(1e-300), "{model} {name}[{i},{j}]: BPTT {bp:e} vs finite differences {fd:e} (largest entry {scale:e})");
                checked += 1;
            }
            assert!(grad.iter().any(|v| *v != 0.0), "{model} {name}: zero gradient");
        }
        assert!(checked >= 10, "{model}");
    }
}

/// A stack of two spiking layers (LIF, then recurrent ALIF) read by a `LeakyReadout`.
fn stacked_text(readout: &str) -> String {
    stacked_text_from("L2", readout)
}

/// The same, with the readout reading `source`: L2's spikes, or one of its states
/// (`L2.v`, `L2.a`: a membrane-potential readout).
fn stacked_text_from(source: &str, readout: &str) -> String {
    format!(
        r#"import "stdlib/lif.snn"
import "stdlib/alif.snn"
import "stdlib/readout.snn"
network n {{
    dt = 1 ms
    input x: 3
    layer L1 = LIF[4]
    layer L2 = ALIF[3]
    readout out = {readout}
    connect x -> L1.I dense trainable init normal(0, 3) as W_in
    connect L1 -> L2.I dense trainable init normal(0, 3) as W_mid
    connect L2 -> L2.I dense trainable init normal(0, 3) no_self as W_rec
    connect {source} -> out dense trainable init normal(0, 1) as W_out
}}"#
    )
}

fn build_text(text: &str, opts: &Options) -> Network<f64> {
    let p = program(text);
    Network::<f64>::build(&p, &p.networks[0], opts, &InterpFactory).unwrap()
}

const STACK: [&str; 4] = ["W_in", "W_mid", "W_rec", "W_out"];

fn rel_err(x: &ndarray::Array2<f64>, y: &ndarray::Array2<f64>) -> f64 {
    (x - y).iter().map(|v| v * v).sum::<f64>().sqrt() / y.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// BPTT through a layer stack and a readout with dynamics equals finite differences of
/// the sequence loss (smooth spikes), for every weight.
#[test]
fn bptt_through_a_stack_and_a_leaky_readout_matches_finite_differences() {
    for source in ["L2", "L2.v", "L2.a"] {
        bptt_matches_finite_differences_on(&stacked_text_from(source, "LeakyReadout[2] { tau = 20 ms }"), source);
    }
    // A stateless readout of the membrane potential.
    bptt_matches_finite_differences_on(&stacked_text_from("L2.v", "Linear[2]"), "L2.v, Linear");
}

fn bptt_matches_finite_differences_on(text: &str, what: &str) {
    let text = text.to_string();
    let opts = Options { batch: 2, seed: 3, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let steps = 50;
    let data = || RandomSpikes::new(steps, 2, 3, 2, 0.4, 9);
    let train: Vec<String> = STACK.map(String::from).to_vec();
    let mut n = build_text(&text, &opts);
    let g = gradient_of(&mut n, &train, &mut data(), Method::Bptt, false).unwrap();
    let loss_with = |name: &str, i: usize, j: usize, delta: f64| -> f64 {
        let mut n = build_text(&text, &opts);
        let (pi, ..) = n.projection(name).unwrap();
        let mut w = n.dense_weights(pi).unwrap().clone();
        w[[i, j]] += delta;
        n.set_projection_weights(pi, w).unwrap();
        gradient_of(&mut n, &[], &mut data(), Method::Bptt, false).unwrap().loss
    };
    for name in STACK {
        let grad = g.get(name).unwrap();
        let scale = grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{what} {name}: zero gradient");
        for (i, j) in [(0, 0), (1, 1), (2, 1), (0, 1)] {
            if i >= grad.nrows() || j >= grad.ncols() || (name == "W_rec" && i == j) {
                continue;
            }
            let h = 1e-5;
            let fd = (loss_with(name, i, j, h) - loss_with(name, i, j, -h)) / (2.0 * h);
            assert!((fd - grad[[i, j]]).abs() <= 1e-4 * scale, "{what} {name}[{i},{j}]: BPTT {:e} vs finite differences {fd:e}", grad[[i, j]]);
        }
    }
}

/// The learning signal of the online methods goes down through the layers above and
/// the readout within the step. With one step there is no path through time, so
/// D-RTRL and ES-D-RTRL must equal BPTT exactly for every weight of the stack; and the
/// readout's own weights are exact for both on any length (its D is diagonal and only
/// the loss reads it, so their trace is the exact one).
#[test]
fn online_learning_signals_cross_the_stack_within_a_step() {
    let train: Vec<String> = STACK.map(String::from).to_vec();
    for (source, readout) in [("L2", "Linear[2]"), ("L2", "LeakyReadout[2] { tau = 20 ms }"), ("L2.v", "Linear[2]"), ("L2.v", "LeakyReadout[2] { tau = 20 ms }")] {
        let text = stacked_text_from(source, readout);
        let opts = Options { batch: 2, seed: 4, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
        let grad = |method: Method, steps: usize| {
            let mut n = build_text(&text, &opts);
            gradient_of(&mut n, &train, &mut RandomSpikes::new(steps, 2, 3, 2, 0.6, 5), method, false).unwrap()
        };
        let bptt = grad(Method::Bptt, 1);
        for method in [Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
            let g = grad(method, 1);
            for name in STACK {
                let (x, y) = (g.get(name).unwrap(), bptt.get(name).unwrap());
                // W_rec reads s^{t-1}, all zero at the first step.
                assert!(name == "W_rec" || y.iter().any(|v| *v != 0.0), "{readout} {name}: zero gradient");
                let e = if y.iter().all(|v| *v == 0.0) { x.iter().fold(0.0f64, |m, v| m.max(v.abs())) } else { rel_err(x, y) };
                assert!(e < 1e-12, "{readout} {method:?} {name}: {e:e} relative to BPTT");
            }
        }
        let b = grad(Method::Bptt, 40);
        for method in [Method::DRtrl, Method::EsDRtrl { decay: 0.99 }] {
            let e = rel_err(grad(method, 40).get("W_out").unwrap(), b.get("W_out").unwrap());
            assert!(e < 1e-12, "{readout}: W_out {method:?} vs BPTT over 40 steps: {e:e}");
        }
    }
}

/// Dale's law: `excitatory` / `inhibitory` weights start on their sign and keep it
/// through training (an update that would cross zero stops at zero), while they learn.
#[test]
fn sign_constrained_weights_keep_their_sign_through_training() {
    use snnc_runtime::train::{CpuTrainer, Optimizer, OptimizerKind, train_batch, weights_of};
    let text = r#"import "stdlib/lif.snn"
network n {
    dt = 1 ms
    input x: 6
    layer rec = LIF[10]
    readout out = Linear[3]
    connect x -> rec.I dense init normal(0, 2) trainable excitatory as W_in
    connect rec -> rec.I dense init normal(0, 0.5) trainable no_self inhibitory as W_rec
    connect rec -> out dense init normal(0, 0.5) trainable as W_out
}"#;
    let opts = Options { batch: 2, seed: 1, learning: true, ..Options::default() };
    let make = |b: usize| Ok(build_text(text, &Options { batch: b, ..opts }));
    let net = build_text(text, &opts);
    let train: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    let mut w = weights_of(&net, &train);
    let initial = w.clone();
    let check = |w: &[(String, ndarray::Array2<f64>)]| {
        assert!(w[0].1.iter().all(|v| *v >= 0.0), "W_in excitatory");
        assert!(w[1].1.iter().all(|v| *v <= 0.0), "W_rec inhibitory");
    };
    check(&w);
    assert!(w[2].1.iter().any(|v| *v < 0.0) && w[2].1.iter().any(|v| *v > 0.0), "unconstrained weights keep both signs");
    // A large learning rate pushes many weights against their bound.
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 5.0, None);
    let mut cpu = CpuTrainer::new(&make, &train, Method::EsDRtrl { decay: 0.9 });
    for k in 0..5 {
        let mut data = RandomSpikes::new(30, 2, 6, 3, 0.3, k);
        train_batch(&mut cpu, &mut w, &mut data, &[0, 0], &mut opt, None).unwrap();
        check(&w);
    }
    for i in 0..2 {
        assert!(w[i].1 != initial[i].1, "{} did not learn", w[i].0);
    }
    assert!(w[0].1.iter().any(|v| *v == 0.0), "no input weight reached its bound");
}

/// The held-out evaluation runs the same forward pass as training: on the same trials
/// and weights, `evaluate` (no derivatives) and the gradient pass report the same loss.
#[test]
fn evaluation_and_training_see_the_same_forward_pass() {
    use snnc_runtime::train::tasks::{Evidence, Task};
    use snnc_runtime::train::{evaluate, weights_of};
    let text = stacked_text("LeakyReadout[2] { tau = 20 ms }").replace("input x: 3", "input x: 40");
    let learn = Options { batch: 4, seed: 2, learning: true, ..Options::default() };
    let plain = Options { batch: 4, seed: 2, ..Options::default() };
    let mut net = build_text(&text, &learn);
    let train: Vec<String> = STACK.map(String::from).to_vec();
    let weights = weights_of(&net, &train);
    let mut task = Evidence::new(1e-3, 0.2, 4, 7);
    let g = gradient_of(&mut net, &train, &mut task, Method::EsDRtrl { decay: 0.99 }, false).unwrap();
    let mut task = Evidence::new(1e-3, 0.2, 4, 7);
    let labels = task.labels().to_vec();
    let r = evaluate(&mut build_text(&text, &plain), &weights, &mut task, &labels).unwrap();
    let per_trial = g.loss / 4.0;
    assert!((r.loss - per_trial).abs() <= 1e-9 * per_trial.abs(), "evaluate {} vs training {per_trial}", r.loss);
}

/// Truly online updates: the pieces of gradient handed to the optimiser every N steps,
/// plus the remainder, add up to the whole sequence's gradient when the weights do not
/// change (the lazy ES-D-RTRL windows are flushed exactly at each update), and the
/// updates come at the right steps. BPTT cannot update within a sequence.
#[test]
fn online_updates_split_the_sequence_gradient_exactly() {
    use snnc_runtime::learn::{Online, gradient_online};
    let text = stacked_text("LeakyReadout[2] { tau = 20 ms }");
    // Smooth spikes keep every layer active, so no gradient is trivially zero.
    let opts = Options { batch: 2, seed: 6, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let train: Vec<String> = STACK.map(String::from).to_vec();
    for method in [Method::EsDRtrl { decay: 0.95 }, Method::DRtrl] {
        let whole = gradient_of(&mut build_text(&text, &opts), &train, &mut RandomSpikes::new(100, 2, 3, 2, 0.5, 8), method, false).unwrap();
        let mut net = build_text(&text, &opts);
        let unchanged = weights_of_net(&net, &train);
        let mut pieces: Vec<Vec<(String, ndarray::Array2<f64>)>> = Vec::new();
        let mut update = |g: &[(String, ndarray::Array2<f64>)]| {
            pieces.push(g.to_vec());
            Ok(unchanged.clone())
        };
        let rest = gradient_online(&mut net, &train, &mut RandomSpikes::new(100, 2, 3, 2, 0.5, 8), method, false, Some(Online { every: 30, update: &mut update })).unwrap();
        assert_eq!(pieces.len(), 3, "updates after steps 30, 60 and 90");
        let mut checked = 0;
        for name in STACK {
            let mut sum = rest.get(name).unwrap().clone();
            for p in &pieces {
                sum += &p.iter().find(|(n, _)| n == name).unwrap().1;
            }
            let w = whole.get(name).unwrap();
            let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let e = (&sum - w).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(e <= 1e-12 * scale, "{method:?} {name}: pieces vs whole differ by {e:e} (largest entry {scale:e})");
            checked += usize::from(scale > 0.0);
        }
        assert!(checked >= 3, "{method:?}: most gradients are not trivially zero");
        // The first piece is exactly the gradient of the first 30 steps (RandomSpikes
        // draws step t the same whatever the length): nothing pending is left out.
        let first = gradient_of(&mut build_text(&text, &opts), &train, &mut RandomSpikes::new(30, 2, 3, 2, 0.5, 8), method, false).unwrap();
        for name in STACK {
            let (a, b) = (&pieces[0].iter().find(|(n, _)| n == name).unwrap().1, first.get(name).unwrap());
            let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!((a - b).iter().all(|v| v.abs() <= 1e-12 * scale), "{method:?} {name}: the first update is not the first 30 steps' gradient");
        }
    }
    let mut never = |_: &[(String, ndarray::Array2<f64>)]| -> Result<Vec<(String, ndarray::Array2<f64>)>, snnc_runtime::error::RuntimeError> { unreachable!() };
    let r = gradient_online(&mut build_text(&text, &opts), &train, &mut RandomSpikes::new(10, 2, 3, 2, 0.5, 8), Method::Bptt, false, Some(Online { every: 5, update: &mut never }));
    assert!(r.err().unwrap().to_string().contains("need an online method"));
}

fn weights_of_net(net: &Network<f64>, names: &[String]) -> Vec<(String, ndarray::Array2<f64>)> {
    snnc_runtime::train::weights_of(net, names)
}

/// BPTT's gradient with respect to trainable time constants equals finite differences
/// of the sequence loss (smooth spikes), per neuron.
#[test]
fn trainable_time_constants_match_finite_differences() {
    let text = trainable_param_text("LeakyReadout[2] { tau = 20 ms }", true);
    let opts = Options { batch: 2, seed: 3, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let data = || RandomSpikes::new(60, 2, 3, 2, 0.4, 9);
    let mut n = build_text(&text, &opts);
    let mut train: Vec<String> = vec!["W_in".into(), "W_rec".into(), "W_out".into()];
    assert_eq!(n.trainable_params(), ["L.tau", "L.tau_a"]);
    train.extend(n.trainable_params());
    let g = gradient_of(&mut n, &train, &mut data(), Method::Bptt, false).unwrap();
    for name in ["L.tau", "L.tau_a"] {
        let grad = g.get(name).unwrap();
        assert_eq!(grad.dim(), (1, 4));
        let scale = grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: zero gradient");
        for j in 0..4 {
            let loss_with = |delta: f64| {
                let mut n = build_text(&text, &opts);
                let mut p = n.trainable(name).unwrap();
                p[[0, j]] += delta;
                n.set_trainable(name, p).unwrap();
                gradient_of(&mut n, &[], &mut data(), Method::Bptt, false).unwrap().loss
            };
            let h = 1e-7; // seconds
            let fd = (loss_with(h) - loss_with(-h)) / (2.0 * h);
            assert!((fd - grad[[0, j]]).abs() <= 1e-4 * scale, "{name}[{j}]: BPTT {:e} vs finite differences {fd:e}", grad[[0, j]]);
        }
    }
}

/// A param's trace (dh/dtheta through the neuron's own dynamics) is exact when nothing
/// but the loss reads the layer in the same step: on a feed-forward layer with a linear
/// readout, D-RTRL and ES-D-RTRL equal BPTT for the params over a whole sequence.
#[test]
fn param_traces_equal_bptt_on_a_feed_forward_layer() {
    let text = trainable_param_text("Linear[2]", false);
    let opts = Options { batch: 2, seed: 4, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let train: Vec<String> = ["W_in", "W_out", "L.tau", "L.tau_a"].map(String::from).to_vec();
    let grad = |method: Method| {
        let mut n = build_text(&text, &opts);
        gradient_of(&mut n, &train, &mut RandomSpikes::new(80, 2, 3, 2, 0.5, 5), method, false).unwrap()
    };
    let bptt = grad(Method::Bptt);
    for method in [Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
        let g = grad(method);
        for name in ["L.tau", "L.tau_a"] {
            let e = rel_err(g.get(name).unwrap(), bptt.get(name).unwrap());
            assert!(e < 1e-10, "{method:?} {name}: {e:e} relative to BPTT");
        }
    }
    // An unknown name is an error, not a silent zero.
    let mut n = build_text(&text, &opts);
    let e = gradient_of(&mut n, &["L.nope".to_string()], &mut RandomSpikes::new(3, 2, 3, 2, 0.5, 5), Method::Bptt, false).unwrap_err();
    assert!(e.to_string().contains("neither a projection nor a trainable param"), "{e}");
}

/// A trainable threshold acts on the spike directly (ds/dtheta), which the runtime does
/// not take yet: building for learning says so instead of training it wrongly.
#[test]
fn a_trainable_threshold_is_refused_when_learning() {
    let text = trainable_param_text("Linear[2]", false).replace("param beta = 0.3", "param beta = 0.3 trainable");
    let mut sources = SourceMap::new();
    let (p, d) = sema::check_source("t.snn", &text, &mut sources);
    assert!(d.iter().all(|d| !d.is_error()));
    let opts = Options { batch: 1, learning: true, ..Options::default() };
    let e = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).err().expect("refused");
    assert!(e.to_string().contains("trainable param `beta` of `TALIF` is read by the spike condition"), "{e}");
    // Simulation alone is fine.
    Network::<f64>::build(&p, &p.networks[0], &Options { batch: 1, ..Options::default() }, &InterpFactory).unwrap();
}

/// One recurrent layer of `model` (3 inputs, 6 neurons) read by `readout`.
fn recurrent_text(model: &str, readout: &str) -> String {
    format!(
        r#"import "stdlib/lif.snn"
import "stdlib/alif.snn"
import "stdlib/readout.snn"
network n {{
    dt = 1 ms
    input x: 3
    layer L = {model}[6]
    readout out = {readout}
    connect x -> L.I dense trainable init normal(0, 3) as W_in
    connect L -> L.I dense trainable init normal(0, 2) no_self as W_rec
    connect L -> out dense trainable init normal(0, 1) as W_out
}}"#
    )
}

/// Analog inputs (every value non-zero), normal(0.5, 1), and random targets.
struct Analog(snnc_runtime::train::tasks::RandomSpikes, u64);

impl snnc_runtime::learn::Sequence for Analog {
    fn steps(&self) -> usize {
        self.0.steps()
    }
    fn batch(&self) -> usize {
        self.0.batch()
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        self.0.shape()
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        self.0.fill(t, x, target);
        for (j, v) in x.iter_mut().flatten().enumerate() {
            // A fixed hash of (seed, t, j) mapped to (-1.5, 2.5): never exactly zero.
            let mut h = (self.1 ^ (t as u64) << 32 ^ j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
            h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 32;
            *v = -1.5 + 4.0 * ((h >> 11) as f64 / (1u64 << 53) as f64) + 1e-9;
        }
    }
}

/// The exact traces (D-RTRL, and the weights of a readout with dynamics in ES-D-RTRL)
/// are reduced lazily over windows of steps; `record_per_step` takes one step at a
/// time. Both give the same gradient, up to rounding, for sequences that are not a
/// whole number of windows, K = 1 (LIF) and K = 2 (ALIF), sparse (spikes) and dense
/// (analog) presynaptic values.
#[test]
fn windowed_exact_traces_equal_the_per_step_ones() {
    let train: Vec<String> = TRAIN.map(String::from).to_vec();
    let mut checked = 0;
    for model in ["LIF", "ALIF"] {
        for readout in ["Linear[2]", "LeakyReadout[2] { tau = 20 ms }"] {
            let text = recurrent_text(model, readout);
            for smooth in [None, Some(3.0)] {
                let opts = Options { batch: 3, seed: 7, smooth_spikes: smooth, learning: true, ..Options::default() };
                for analog in [false, true] {
                    for method in [Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
                        let steps = 77;
                        let run = |per_step: bool| {
                            let spikes = RandomSpikes::new(steps, 3, 3, 2, 0.3, 4);
                            let mut n = build_text(&text, &opts);
                            if analog {
                                gradient_of(&mut n, &train, &mut Analog(spikes, 11), method, per_step).unwrap()
                            } else {
                                let mut spikes = spikes;
                                gradient_of(&mut n, &train, &mut spikes, method, per_step).unwrap()
                            }
                        };
                        let (lazy, step) = (run(false), run(true));
                        assert_eq!(step.per_step.len(), steps);
                        for name in TRAIN {
                            let exact = method == Method::DRtrl || (name == "W_out" && readout != "Linear[2]");
                            if !exact {
                                continue;
                            }
                            let (x, y) = (lazy.get(name).unwrap(), step.get(name).unwrap());
                            assert!(y.iter().any(|v| *v != 0.0), "{model} {readout} {smooth:?} analog {analog} {name}: zero gradient");
                            let e = rel_err(x, y);
                            assert!(e < 1e-12, "{model} {readout} {smooth:?} analog {analog} {method:?} {name}: windowed vs per step {e:e}");
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 2 * 2 * (3 + 1) + 2 * 2 * 2 * 3);
}

/// Truly online D-RTRL with updates that change the weights, every 45 steps (not a
/// multiple of the window): the windows are flushed at every update, and the steps
/// after it are taped with the new weights, so the windowed pass hands the optimiser
/// the same gradients, and ends on the same weights, as the per-step one.
#[test]
fn windowed_exact_traces_are_exact_across_online_updates() {
    use snnc_runtime::learn::{Online, gradient_online};
    let train: Vec<String> = TRAIN.map(String::from).to_vec();
    for (model, readout) in [("LIF", "Linear[2]"), ("ALIF", "LeakyReadout[2] { tau = 20 ms }")] {
        let text = recurrent_text(model, readout);
        let opts = Options { batch: 2, seed: 9, learning: true, ..Options::default() };
        for method in [Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
            let run = |per_step: bool| {
                let mut net = build_text(&text, &opts);
                let mut w = weights_of_net(&net, &train);
                let mut pieces: Vec<Vec<(String, ndarray::Array2<f64>)>> = Vec::new();
                let mut update = |g: &[(String, ndarray::Array2<f64>)]| {
                    pieces.push(g.to_vec());
                    for ((_, w), (_, g)) in w.iter_mut().zip(g) {
                        w.scaled_add(-0.05, g);
                    }
                    Ok(w.clone())
                };
                let rest = gradient_online(&mut net, &train, &mut RandomSpikes::new(140, 2, 3, 2, 0.4, 6), method, per_step, Some(Online { every: 45, update: &mut update })).unwrap();
                pieces.push(rest.total);
                pieces
            };
            let (lazy, step) = (run(false), run(true));
            assert_eq!(lazy.len(), 4, "updates after steps 45, 90 and 135, then the rest");
            let mut checked = 0;
            for (k, (a, b)) in lazy.iter().zip(&step).enumerate() {
                for ((name, x), (_, y)) in a.iter().zip(b) {
                    let exact = method == Method::DRtrl || (name == "W_out" && readout != "Linear[2]");
                    let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    let e = (x - y).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    if exact {
                        assert!(e <= 1e-12 * scale, "{model} {method:?} piece {k} {name}: windowed vs per step {e:e} (largest {scale:e})");
                        checked += usize::from(scale > 0.0);
                    } else {
                        // ES-D-RTRL's own lazy windows, against their per-step sum.
                        assert!(e <= 1e-10 * scale.max(1e-300), "{model} {method:?} piece {k} {name}: {e:e}");
                    }
                }
            }
            let want = if method == Method::DRtrl { 10 } else if readout == "Linear[2]" { 0 } else { 3 };
            assert!(checked >= want, "{model} {method:?}: most exact gradients are not trivially zero ({checked})");
        }
    }
}

/// The batch split across threads (`gradient_split`) gives the unsplit pass's loss,
/// gradients and evidence, for every method: with a generator that writes its own rows
/// (RandomSpikes) and with one that only produces whole steps in order (InMemory, dealt
/// out by a producer thread); with noise in the model, whose draws follow the element's
/// index in the whole batch (`batch_offset`).
#[test]
fn a_batch_split_across_threads_gives_the_whole_batch_gradient() {
    use snnc_runtime::learn::{InMemory, gradient_split, split_sizes};
    // L1 gets white noise: its draws must be those of the whole batch.
    let text = stacked_text("LeakyReadout[2] { tau = 20 ms }")
        .replace("layer L1 = LIF[4]", "layer L1 = NoisyLIF[4]")
        .replace("import \"stdlib/readout.snn\"", "import \"stdlib/readout.snn\"\nneuron NoisyLIF {\n    param tau: ms = 10 ms\n    state v = 0.0\n    input I\n    dv/dt = (-v + I) / tau + 0.3 * xi / sqrt(tau)\n    spike when v > 1.0 surrogate sigmoid(alpha = 4)\n    on spike { v -= 1.0 }\n}");
    let train: Vec<String> = STACK.map(String::from).to_vec();
    let opts = |b: usize| Options { batch: b, seed: 9, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let (batch, steps) = (5, 70);
    let x = ndarray::Array3::from_shape_fn((steps, batch, 3), |(t, b, i)| f64::from((t * 7 + b * 3 + i) % 5 == 0));
    let target = ndarray::Array3::from_shape_fn((steps, batch, 2), |(t, b, j)| ((t + b + j) % 3) as f64 - 1.0);
    for method in [Method::Bptt, Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
        let whole = gradient_of(&mut build_text(&text, &opts(batch)), &train, &mut RandomSpikes::new(steps, batch, 3, 2, 0.4, 3), method, false).unwrap();
        let whole_mem = gradient_of(&mut build_text(&text, &opts(batch)), &train, &mut InMemory { x: std::slice::from_ref(&x), target: &target }, method, false).unwrap();
        for (label, reference, data) in [("own rows", &whole, 0), ("producer", &whole_mem, 1)] {
            let mut nets: Vec<Network<f64>> = split_sizes(batch, 2).into_iter().map(|b| build_text(&text, &opts(b))).collect();
            let g = if data == 0 {
                gradient_split(&mut nets, &train, &mut RandomSpikes::new(steps, batch, 3, 2, 0.4, 3), method).unwrap()
            } else {
                gradient_split(&mut nets, &train, &mut InMemory { x: std::slice::from_ref(&x), target: &target }, method).unwrap()
            };
            assert!((g.loss - reference.loss).abs() <= 1e-12 * reference.loss.abs(), "{method:?} {label}: loss {} vs {}", g.loss, reference.loss);
            assert_eq!(g.evidence.dim(), reference.evidence.dim());
            assert!((&g.evidence - &reference.evidence).iter().all(|d| d.abs() <= 1e-12), "{method:?} {label}: evidence");
            for name in STACK {
                let (a, b) = (g.get(name).unwrap(), reference.get(name).unwrap());
                assert!(b.iter().any(|v| *v != 0.0), "{method:?} {name}: zero gradient");
                let e = rel_err(a, b);
                assert!(e < 1e-12, "{method:?} {label} {name}: split vs whole {e:e}");
            }
        }
    }
    assert_eq!(split_sizes(5, 2), vec![3, 2]);
    assert_eq!(split_sizes(3, 8), vec![1, 1, 1]);
}

/// A network reset after a sequence runs the next one as a freshly built one would:
/// same loss and gradients, with noise and a readout with dynamics; and, simulated, the
/// same states and gradients with a delayed projection.
#[test]
fn a_reset_network_runs_like_a_new_one() {
    let delayed = stacked_text("LeakyReadout[2] { tau = 20 ms }").replace("connect L1 -> L2.I dense trainable", "connect L1 -> L2.I dense delay 2 ms trainable");
    let plain = Options { batch: 3, seed: 2, smooth_spikes: Some(3.0), ..Options::default() };
    let run = |n: &mut Network<f64>| -> Vec<Vec<f64>> {
        for t in 0..40 {
            let x: Vec<f64> = (0..9).map(|i| f64::from((t * 5 + i) % 4 == 0)).collect();
            n.step(&[&x]).unwrap();
        }
        n.pops.iter().flat_map(|p| p.states.clone()).collect()
    };
    let want = run(&mut build_text(&delayed, &plain));
    let mut n = build_text(&delayed, &plain);
    run(&mut n);
    n.reset();
    assert_eq!(run(&mut n), want, "states after reset, with a delay");
    // Gradients through the delay after a reset: a fresh network's (nothing in flight).
    let lopts = Options { learning: true, ..plain };
    let grad = |n: &mut Network<f64>, seed| gradient_of(n, &STACK.map(String::from), &mut RandomSpikes::new(30, 3, 3, 2, 0.4, seed), Method::Bptt, false).unwrap();
    let fresh = grad(&mut build_text(&delayed, &lopts), 1);
    let mut n = build_text(&delayed, &lopts);
    grad(&mut n, 4);
    n.reset();
    assert_eq!(grad(&mut n, 1).total, fresh.total, "gradients after reset, with a delay");
    // A Linear readout's output fed back into the network: refused, not ignored.
    let feedback = format!("{}\n", stacked_text("Linear[2]").trim_end().trim_end_matches('}')) + "    connect out -> L1.I dense init normal(0, 1) as W_fb\n}";
    let e = gradient_of(&mut build_text(&feedback, &Options { learning: true, ..plain }), &STACK.map(String::from), &mut RandomSpikes::new(5, 3, 3, 2, 0.4, 1), Method::Bptt, false).unwrap_err();
    assert!(e.to_string().contains("reads the output of the readout `out`"), "{e}");
    let text = stacked_text("LeakyReadout[2] { tau = 20 ms }")
        .replace("layer L1 = LIF[4]", "layer L1 = NoisyLIF[4]")
        .replace("import \"stdlib/readout.snn\"", "import \"stdlib/readout.snn\"\nneuron NoisyLIF {\n    param tau: ms = 10 ms\n    state v = 0.0\n    input I\n    dv/dt = (-v + I) / tau + 0.3 * xi / sqrt(tau)\n    spike when v > 1.0 surrogate sigmoid(alpha = 4)\n    on spike { v -= 1.0 }\n}");
    let train: Vec<String> = STACK.map(String::from).to_vec();
    let opts = Options { batch: 3, seed: 2, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    for method in [Method::Bptt, Method::EsDRtrl { decay: 0.9 }] {
        let fresh = gradient_of(&mut build_text(&text, &opts), &train, &mut RandomSpikes::new(60, 3, 3, 2, 0.4, 7), method, false).unwrap();
        let mut net = build_text(&text, &opts);
        gradient_of(&mut net, &train, &mut RandomSpikes::new(45, 3, 3, 2, 0.5, 9), method, false).unwrap();
        net.reset();
        let again = gradient_of(&mut net, &train, &mut RandomSpikes::new(60, 3, 3, 2, 0.4, 7), method, false).unwrap();
        assert_eq!(again.loss, fresh.loss, "{method:?}: loss after reset");
        for name in STACK {
            assert_eq!(again.get(name), fresh.get(name), "{method:?} {name} after reset");
        }
    }
}

/// Trainable params in two populations of different sizes (a 7-neuron layer feeding a
/// 3-neuron one): each param's trace and gradient are its own population's — the top
/// layer's equals BPTT exactly, and does not change when the lower one is trained too —
/// and the JIT and the interpreter agree.
#[test]
fn params_of_populations_of_different_sizes_keep_their_own_traces() {
    let text = trainable_param_text("Linear[2]", false)
        .replace("layer L = TALIF[4] { tau = U(10 ms, 30 ms) }", "layer L1 = TALIF[7] { tau = U(10 ms, 30 ms) }\n    layer L = TALIF[3] { tau = U(10 ms, 30 ms) }")
        .replace("connect x -> L.I dense trainable init normal(0, 3) as W_in", "connect x -> L1.I dense trainable init normal(0, 3) as W_in\n    connect L1 -> L.I dense trainable init normal(0, 3) as W_mid");
    let opts = Options { batch: 2, seed: 4, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let data = || RandomSpikes::new(60, 2, 3, 2, 0.5, 5);
    let build = |jit: bool| -> Network<f64> {
        let p = program(&text);
        if jit { Network::<f64>::build(&p, &p.networks[0], &opts, &JitFactory).unwrap() } else { Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap() }
    };
    let both: Vec<String> = ["L1.tau", "L.tau"].map(String::from).to_vec();
    let top: Vec<String> = ["L.tau"].map(String::from).to_vec();
    let bptt = gradient_of(&mut build(true), &top, &mut data(), Method::Bptt, false).unwrap();
    for jit in [true, false] {
        let g_both = gradient_of(&mut build(jit), &both, &mut data(), Method::DRtrl, false).unwrap();
        let g_top = gradient_of(&mut build(jit), &top, &mut data(), Method::DRtrl, false).unwrap();
        assert_eq!(g_both.get("L.tau"), g_top.get("L.tau"), "jit {jit}: L.tau's gradient depends on whether L1.tau is trained");
        let e = rel_err(g_top.get("L.tau").unwrap(), bptt.get("L.tau").unwrap());
        assert!(e < 1e-10, "jit {jit}: L.tau D-RTRL vs BPTT {e:e}");
        assert_eq!(g_both.get("L1.tau").unwrap().dim(), (1, 7));
    }
}

/// The memory `snnc train` checks a batch against before allocating it covers what each
/// method's state measures, and is per batch element (the same from any batch size).
#[test]
fn memory_estimate_covers_the_measured_state() {
    use snnc_runtime::learn::bytes_per_element;
    let train: Vec<String> = TRAIN.map(String::from).to_vec();
    for method in [Method::EsDRtrl { decay: 0.9 }, Method::DRtrl, Method::Bptt] {
        for steps in [100, 400] {
            let mut n = net("tests/data/golden_lif.snn", 2);
            let est = bytes_per_element(&n, &train, method, steps).unwrap();
            assert_eq!(est, bytes_per_element(&net("tests/data/golden_lif.snn", 5), &train, method, steps).unwrap());
            let g = gradient_of(&mut n, &train, &mut RandomSpikes::new(steps, 2, 8, 3, 0.3, 1), method, false).unwrap();
            assert!(2 * est >= g.state_bytes, "{method}, T = {steps}: estimate {} < measured {}", 2 * est, g.state_bytes);
        }
    }
}

/// A derivative output of the learning step that becomes non-finite is named by what it
/// is, never by its internal state name (`_deriv0`).
#[test]
fn non_finite_derivatives_are_named_for_users() {
    use snnc_runtime::error::RuntimeError;
    use snnc_runtime::learn::describe_non_finite;
    let n = net("tests/data/golden_lif.snn", 1);
    let p = n.pops.iter().position(|p| p.deriv.is_some()).unwrap();
    let (pop, layout) = (&n.pops[p], n.pops[p].deriv.unwrap());
    let first = pop.state_names[0].clone();
    let e = |state: &str| RuntimeError::NonFinite { population: pop.name.clone(), state: state.into(), neuron: 3, batch: 0, step: 7, value: f64::NEG_INFINITY };
    let msg = describe_non_finite(&n, e(&pop.state_names[layout.d])).to_string();
    assert!(msg.starts_with(&format!("the derivative d{first}/d{first} over one step of neuron 3")), "{msg}");
    assert!(msg.contains("became -inf at step 7") && !msg.contains("_deriv"), "{msg}");
    let msg = describe_non_finite(&n, e(&pop.state_names[layout.ds])).to_string();
    assert!(msg.starts_with(&format!("the surrogate derivative of the spike by {first}")), "{msg}");
    // A state of the model itself keeps the usual message.
    assert_eq!(describe_non_finite(&n, e(&first)), e(&first));
}
