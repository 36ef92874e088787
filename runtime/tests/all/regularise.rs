//! Regularisers of training: `trainable bounds (lo, hi)` (every optimiser step projected
//! back, a start outside refused), `weight_decay` (decoupled, AdamW as optax.adamw; L2 for
//! SGD) and `dropout P` (a per-step mask of the presynaptic values from the seeded Philox
//! streams, scaled by 1 / (1 - P), only while training): its masks, and the gradients
//! through it against finite differences (BPTT, the mask fixed), D-RTRL = BPTT on a
//! feed-forward layer, ES-D-RTRL's direction; the GPU learner refuses it by name.
use crate::common::program;
use ndarray::Array2;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::gpu::{EmuDevice, GpuGradient, GpuNetwork};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::learn::{Method, gradient_of};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::tasks::RandomSpikes;
use snnc_runtime::train::{CpuTrainer, Optimizer, OptimizerKind, check_bounds, train_batch, weights_of};

fn build(text: &str, opts: &Options) -> Network<f64> {
    let p = program(text);
    Network::<f64>::build(&p, &p.networks[0], opts, &InterpFactory).unwrap()
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

// ---------------------------------------------------------------- dropout

const MASK: &str = r#"network n {
    input x: 400
    readout out = Linear[1]
    connect x -> out dense weight 1 dropout 0.25 as W
}"#;

/// The readout's output over three steps of all-ones input, per batch element.
fn outputs(net: &mut Network<f64>) -> Vec<f64> {
    net.reset();
    let x = vec![1.0; 400 * net.batch];
    let mut out = Vec::new();
    for _ in 0..3 {
        net.step(&[x.as_slice()]).unwrap();
        out.extend_from_slice(&net.pops[0].output);
    }
    out
}

/// Without a training pass nothing is dropped; with one, each value is kept with
/// probability 1 - P and scaled by 1 / (1 - P); a mask differs by step, batch element and
/// pass, and is the same again for the same ones.
#[test]
fn dropout_masks_are_drawn_per_step_and_element_and_only_while_training() {
    let opts = Options { batch: 2, seed: 5, ..Options::default() };
    let mut net = build(MASK, &opts);
    assert_eq!(outputs(&mut net), vec![400.0; 6], "evaluation drops nothing");
    net.dropout_pass = Some(0);
    let first = outputs(&mut net);
    for y in &first {
        let kept = y * 0.75;
        assert!((kept - kept.round()).abs() < 1e-9, "{y} is not a count of kept values / (1 - P)");
        assert!((260.0..340.0).contains(&kept), "{kept} of 400 kept at P = 0.25");
    }
    let mean = first.iter().sum::<f64>() / first.len() as f64;
    assert!((mean - 400.0).abs() < 20.0, "the scaling keeps the mean: {mean}");
    let distinct: std::collections::BTreeSet<u64> = first.iter().map(|v| v.to_bits()).collect();
    assert!(distinct.len() >= 5, "masks repeat across steps or elements: {first:?}");
    assert_eq!(outputs(&mut net), first, "the same pass draws the same masks");
    net.dropout_pass = Some(1);
    assert_ne!(outputs(&mut net), first, "another pass draws other masks");
    let mut other = build(MASK, &opts);
    other.dropout_pass = Some(0);
    assert_eq!(outputs(&mut other), first, "a mask depends on the seed, pass, step and element only");
}

fn dropout_net(recurrent: bool) -> String {
    let rec = if recurrent { "\n    connect H -> H.I dense trainable init normal(0, 0.5) no_self dropout 0.2 as W_rec" } else { "" };
    format!(
        r#"import "stdlib/lif.snn"
network n {{
    dt = 1 ms
    input x: 6
    layer H = LIF[5]
    readout out = Linear[2]
    connect x -> H.I dense trainable init normal(0, 2) dropout 0.3 as W_in{rec}
    connect H -> out dense trainable init normal(0, 1) dropout 0.4 as W_out
}}"#
    )
}

fn learning(smooth: Option<f64>) -> Options {
    Options { batch: 2, seed: 3, smooth_spikes: smooth, learning: true, ..Options::default() }
}

fn data() -> RandomSpikes {
    RandomSpikes::new(40, 2, 6, 2, 0.4, 8)
}

/// The gradient of `net` (a fresh network, so its steps and masks start at 0) while
/// training pass 7.
fn gradient(text: &str, opts: &Options, names: &[String], method: Method) -> snnc_runtime::learn::Gradients {
    gradient_in_pass(text, opts, names, method, Some(7))
}

fn gradient_in_pass(text: &str, opts: &Options, names: &[String], method: Method, pass: Option<u64>) -> snnc_runtime::learn::Gradients {
    let mut net = build(text, opts);
    net.dropout_pass = pass;
    gradient_of(&mut net, names, &mut data(), method, false).unwrap()
}

fn cosine(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a * b).sum() / (a.iter().map(|v| v * v).sum::<f64>().sqrt() * b.iter().map(|v| v * v).sum::<f64>().sqrt())
}

/// BPTT through dropout (on the input, the recurrent and the readout weights) equals
/// central finite differences of the loss with the same masks.
#[test]
fn bptt_through_dropout_matches_finite_differences() {
    let text = dropout_net(true);
    let opts = learning(Some(3.0));
    let names: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    let g = gradient(&text, &opts, &names, Method::Bptt);
    let without = {
        let mut net = build(&text, &opts);
        gradient_of(&mut net, &names, &mut data(), Method::Bptt, false).unwrap()
    };
    let loss_with = |name: &str, i: usize, j: usize, delta: f64| {
        let mut n = build(&text, &opts);
        n.dropout_pass = Some(7);
        let mut w = n.trainable(name).unwrap();
        w[[i, j]] += delta;
        n.set_trainable(name, w).unwrap();
        gradient_of(&mut n, &[], &mut data(), Method::Bptt, false).unwrap().loss
    };
    for name in &names {
        let grad = g.get(name).unwrap();
        let scale = max_abs(grad);
        assert!(scale > 0.0, "{name}: zero gradient");
        assert!(max_abs(&(grad - without.get(name).unwrap())) > 1e-3 * scale, "{name}: dropout changed nothing: the test shows nothing");
        for (i, j) in [(0, 0), (1, 1), (2, 1), (0, 1), (4, 0)] {
            if name == "W_rec" && i == j {
                continue;
            }
            let h = 1e-5;
            let fd = (loss_with(name, i, j, h) - loss_with(name, i, j, -h)) / (2.0 * h);
            assert!((fd - grad[[i, j]]).abs() <= 1e-5 * scale, "{name}[{i},{j}]: BPTT {:e} vs finite differences {fd:e}", grad[[i, j]]);
        }
    }
}

/// On a feed-forward layer read by a `Linear` readout, D-RTRL is exact (ALGORITHMS.md),
/// dropout on both of its projections included, and so is every method's gradient of
/// the weights into the readout. ES-D-RTRL's input weights are its rank-one
/// approximation: through dropout it points the way BPTT does as closely as on the same
/// network without dropout (cosine 0.955 there with the spikes as they run; 0.967 with
/// dropout).
#[test]
fn online_methods_through_dropout_against_bptt() {
    let text = dropout_net(false);
    let names: Vec<String> = ["W_in", "W_out"].map(String::from).to_vec();
    let es = Method::EsDRtrl { decay: (-0.1f64).exp() };
    for smooth in [None, Some(3.0)] {
        let opts = learning(smooth);
        let (b, d, e) = (gradient(&text, &opts, &names, Method::Bptt), gradient(&text, &opts, &names, Method::DRtrl), gradient(&text, &opts, &names, es));
        for name in &names {
            let (b, d, e) = (b.get(name).unwrap(), d.get(name).unwrap(), e.get(name).unwrap());
            let scale = max_abs(b);
            assert!(scale > 0.0, "{name}: zero gradient");
            let err = max_abs(&(d - b)) / scale;
            assert!(err < 1e-10, "smooth {smooth:?} {name}: D-RTRL vs BPTT {err:e}");
            if name == "W_out" {
                let err = max_abs(&(e - b)) / scale;
                assert!(err < 1e-10, "smooth {smooth:?} W_out: ES-D-RTRL vs BPTT {err:e}");
            }
        }
        let (bw, ew) = (b.get("W_in").unwrap(), e.get("W_in").unwrap());
        let plain = |m| gradient_in_pass(&text, &opts, &names, m, None).get("W_in").unwrap().clone();
        let (with, without) = (cosine(ew, bw), cosine(&plain(es), &plain(Method::Bptt)));
        eprintln!("smooth {smooth:?} W_in: ES-D-RTRL vs BPTT cosine {with:.4} with dropout, {without:.4} without");
        assert!(with > 0.95 && with > without - 0.02, "smooth {smooth:?} W_in: ES-D-RTRL vs BPTT cosine {with} with dropout, {without} without");
    }
}

/// `train_batch` drops while it trains, with masks new for every batch (the optimiser's
/// step count keys them), and leaves the networks evaluating (nothing dropped) after.
#[test]
fn training_batches_draw_new_masks_and_evaluation_drops_nothing() {
    let p = program(&dropout_net(false));
    let opts = learning(None);
    let names: Vec<String> = ["W_in", "W_out"].map(String::from).to_vec();
    let make = |b: usize| Network::<f64>::build(&p, &p.networks[0], &Options { batch: b, ..opts }, &InterpFactory);
    let mut trainer = CpuTrainer::new(&make, &names, Method::Bptt);
    let mut w = weights_of(&make(1).unwrap(), &names);
    // A zero learning rate: the weights stay, only the masks change the loss.
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.0, None);
    let losses: Vec<f64> = (0..3).map(|_| train_batch(&mut trainer, &mut w, &mut data(), &[0, 1], &mut opt, None).unwrap().loss).collect();
    assert!(losses[0] != losses[1] && losses[1] != losses[2], "the same masks every batch: {losses:?}");
    use snnc_runtime::engine::Trainer;
    assert!(trainer.networks().iter().all(|n| n.dropout_pass.is_none()), "a network left dropping after training");
    let plain = gradient_in_pass(&dropout_net(false), &opts, &[], Method::Bptt, None).loss;
    assert!(losses.iter().all(|l| (l * 2.0 - plain).abs() > 1e-9), "{losses:?} vs {plain}: no dropout while training");
}

/// The device steps without masks: its learner refuses a network with a dropout, naming
/// the projection (evaluating and running it there is fine: nothing is dropped then).
#[test]
fn the_gpu_learner_refuses_dropout_by_name() {
    let p = program(&dropout_net(false));
    let opts = Options { batch: 2, learning: true, ..Options::default() };
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let e = GpuGradient::new(&mut gpu, &["W_in".to_string()], Method::Bptt).err().expect("refused").to_string();
    assert!(e.contains("`W_in` has `dropout`") && e.contains("CPU only"), "{e}");
}

// ---------------------------------------------------------------- bounds and weight decay

const BOUNDED: &str = r#"neuron B {
    param tau: ms = 20 ms trainable bounds (15 ms, 22 ms)
    state v = 0
    input I
    dv/dt = (-v + I) / tau
    spike when v > 1 surrogate relu_grad(alpha = 0.3, width = 1.0)
    on spike { v -= 1 }
}
network n {
    dt = 1 ms
    input x: 4
    layer H = B[6]
    readout out = Linear[2]
    connect x -> H.I dense init U(-0.5, 0.5) trainable bounds (-0.6, 0.6) as W_in
    connect H -> out dense trainable init normal(0, 1)  as W_out
}"#;

/// A large learning rate pushes the weights and the time constants past their bounds:
/// every step leaves them inside, some at the bound; the unbounded tensor moves freely.
#[test]
fn parameters_pushed_past_their_bounds_stay_at_them() {
    let p = program(BOUNDED);
    let opts = Options { batch: 2, seed: 1, learning: true, ..Options::default() };
    let net0 = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let names: Vec<String> = ["W_in", "W_out", "H.tau"].map(String::from).to_vec();
    let close = |a: Option<(f64, f64)>, b: (f64, f64)| a.is_some_and(|a| (a.0 - b.0).abs() < 1e-15 && (a.1 - b.1).abs() < 1e-15);
    assert!(close(net0.declared_bounds("H.tau"), (0.015, 0.022)), "{:?}", net0.declared_bounds("H.tau"));
    assert!(close(net0.declared_bounds("W_in"), (-0.6, 0.6)));
    assert_eq!(net0.declared_bounds("W_out"), None);
    let mut w = weights_of(&net0, &names);
    check_bounds(&net0, &w).unwrap();
    let make = |b: usize| Network::<f64>::build(&p, &p.networks[0], &Options { batch: b, ..opts }, &InterpFactory);
    let mut trainer = CpuTrainer::new(&make, &names, Method::Bptt);
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 1e4, None);
    for b in 0..3 {
        train_batch(&mut trainer, &mut w, &mut RandomSpikes::new(30, 2, 4, 2, 0.5, 20 + b), &[0, 1], &mut opt, None).unwrap();
    }
    let get = |n: &str| &w.iter().find(|(m, _)| m == n).unwrap().1;
    for name in ["W_in", "H.tau"] {
        let (lo, hi) = net0.declared_bounds(name).unwrap();
        let t = get(name);
        assert!(t.iter().all(|v| (lo..=hi).contains(v)), "{name} left its bounds: {t:?}");
        assert!(t.iter().any(|v| *v == lo || *v == hi), "{name} never reached a bound: the test shows nothing: {t:?}");
    }
    assert!(max_abs(get("W_out")) > 1.0, "the unbounded readout should move far: {:?}", get("W_out"));
    // A start outside the bounds (a checkpoint's, a drawn one's) is refused by name.
    let mut outside = weights_of(&net0, &names);
    outside[0].1[[1, 2]] = 0.7;
    let e = check_bounds(&net0, &outside).unwrap_err().to_string();
    assert!(e.contains("`W_in` starts outside its bounds") && e.contains("[1, 2] is 0.7"), "{e}");
}

/// Weight decay: with a zero gradient, AdamW (optax.adamw) and SGD's L2 shrink each
/// weight by (1 - lr wd) per step and leave the exempt tensors alone; with a gradient it
/// is optax.adamw's update, `w -= lr (m_hat / (sqrt(v_hat) + eps) + wd w)`.
#[test]
fn weight_decay_is_decoupled_as_in_adamw() {
    let (lr, wd) = (0.1, 0.5);
    for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
        let mut opt = Optimizer::new(kind, lr, None).with_weight_decay(wd, &["H.tau".to_string()]);
        let mut w = vec![("W".to_string(), Array2::from_elem((2, 2), 2.0)), ("H.tau".to_string(), Array2::from_elem((1, 2), 0.02))];
        let zero = vec![("W".to_string(), Array2::zeros((2, 2))), ("H.tau".to_string(), Array2::zeros((1, 2)))];
        for _ in 0..3 {
            opt.update(&mut w, &zero);
        }
        let want = 2.0 * (1.0 - lr * wd).powi(3);
        assert!(w[0].1.iter().all(|v| (v - want).abs() < 1e-12), "{kind:?}: {:?} vs {want}", w[0].1);
        assert!(w[1].1.iter().all(|v| *v == 0.02), "{kind:?}: an exempt tensor decayed");
    }
    // AdamW against the formula, several steps with a gradient.
    let grad = |w: f64| 2.0 * (w - 1.0);
    let mut opt = Optimizer::new(OptimizerKind::Adam, lr, None).with_weight_decay(wd, &[]);
    let mut w = vec![("W".to_string(), Array2::from_elem((1, 1), 3.0))];
    let (mut x, mut m, mut v) = (3.0f64, 0.0f64, 0.0f64);
    for t in 1..=5 {
        let g = grad(x);
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        let (mh, vh) = (m / (1.0 - 0.9f64.powi(t)), v / (1.0 - 0.999f64.powi(t)));
        x -= lr * (mh / (vh.sqrt() + 1e-8) + wd * x);
        let gw = vec![("W".to_string(), Array2::from_elem((1, 1), grad(w[0].1[[0, 0]])))];
        opt.update(&mut w, &gw);
        assert!((w[0].1[[0, 0]] - x).abs() < 1e-12, "step {t}: {} vs optax.adamw {x}", w[0].1[[0, 0]]);
    }
}
