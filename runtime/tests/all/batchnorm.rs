//! `batch_norm` on a connection (docs/language.md §9.5): the delivered current
//! z = x W normalised per target neuron over the batch of each step while training
//! (running statistics otherwise), then gamma zhat + beta. The forward against the
//! formula, the running statistics against torch's update, BPTT's gradients of W, gamma,
//! beta and an upstream weight against central finite differences, training on one
//! network with the state carried, and the refusals (online methods, a split batch, MPI
//! ranks, the CUDA backend).
use crate::common::program;
use ndarray::Array2;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::batchnorm::{EPS, MOMENTUM};
use snnc_runtime::engine::Trainer;
use snnc_runtime::gpu::{EmuDevice, GpuNetwork};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::learn::{CpuGradient, Method, gradient_of, gradient_split};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::tasks::RandomSpikes;
use snnc_runtime::train::{CpuTrainer, Optimizer, OptimizerKind, evaluate, train_batch, weights_of};

fn build(text: &str, opts: &Options) -> Network<f64> {
    let p = program(text);
    Network::<f64>::build(&p, &p.networks[0], opts, &InterpFactory).unwrap()
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

const LINEAR: &str = r#"network n {
    input x: 5
    readout out = Linear[3]
    connect x -> out dense init normal(0, 1) batch_norm as W
}"#;

/// Input of step `t`, batch element `b`, value `i`: arbitrary, of both signs.
fn input(t: usize, batch: usize) -> Vec<f64> {
    (0..batch * 5).map(|k| ((k * 7 + t * 13) % 11) as f64 / 5.0 - 1.0 + 0.1 * t as f64).collect()
}

/// Training: the output is gamma (z - mean_b z) / sqrt(var_b z + eps) + beta with the
/// batch's statistics of the step; the running estimates move as torch's
/// (momentum 0.1, unbiased variance); evaluation normalises with them.
#[test]
fn batch_norm_forward_and_running_statistics_follow_the_formulas() {
    let batch = 4;
    let mut net = build(LINEAR, &Options { batch, seed: 2, ..Options::default() });
    let gamma = Array2::from_shape_vec((1, 3), vec![1.5, -0.5, 2.0]).unwrap();
    let beta = Array2::from_shape_vec((1, 3), vec![0.25, 1.0, -3.0]).unwrap();
    net.set_trainable("W.gamma", gamma.clone()).unwrap();
    net.set_trainable("W.beta", beta.clone()).unwrap();
    let w = net.trainable("W").unwrap();
    let z_of = |x: &[f64]| -> Vec<f64> { (0..batch * 3).map(|k| (0..5).map(|i| x[(k / 3) * 5 + i] * w[[i, k % 3]]).sum()).collect() };
    let (mut rm, mut rv) = (vec![0.0; 3], vec![1.0; 3]);
    net.dropout_pass = Some(0);
    for t in 0..3 {
        let x = input(t, batch);
        net.step(&[x.as_slice()]).unwrap();
        let z = z_of(&x);
        for j in 0..3 {
            let col: Vec<f64> = (0..batch).map(|b| z[b * 3 + j]).collect();
            let mean = col.iter().sum::<f64>() / batch as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / batch as f64;
            assert!(var > 1e-3, "a constant column shows nothing");
            for (b, zb) in col.iter().enumerate() {
                let want = gamma[[0, j]] * (zb - mean) / (var + EPS).sqrt() + beta[[0, j]];
                let got = net.pops[0].output[b * 3 + j];
                assert!((got - want).abs() < 1e-12, "step {t}, element {b}, neuron {j}: {got} vs {want}");
            }
            rm[j] = (1.0 - MOMENTUM) * rm[j] + MOMENTUM * mean;
            rv[j] = (1.0 - MOMENTUM) * rv[j] + MOMENTUM * var * batch as f64 / (batch - 1) as f64;
        }
    }
    let (got_m, got_v) = (net.trainable("state/W.running_mean").unwrap(), net.trainable("state/W.running_var").unwrap());
    for j in 0..3 {
        assert!((got_m[[0, j]] - rm[j]).abs() < 1e-12 && (got_v[[0, j]] - rv[j]).abs() < 1e-12, "running estimates {got_m} {got_v} vs {rm:?} {rv:?}");
    }
    assert!(rm.iter().any(|m| m.abs() > 1e-3) && rv.iter().any(|v| (v - 1.0).abs() > 1e-3), "the running estimates barely moved");
    // Evaluation: the running estimates, unchanged by the step.
    net.dropout_pass = None;
    let x = input(5, batch);
    net.step(&[x.as_slice()]).unwrap();
    let z = z_of(&x);
    for (k, zk) in z.iter().enumerate() {
        let j = k % 3;
        let want = gamma[[0, j]] * (zk - rm[j]) / (rv[j] + EPS).sqrt() + beta[[0, j]];
        assert!((net.pops[0].output[k] - want).abs() < 1e-12, "evaluation at {k}: {} vs {want}", net.pops[0].output[k]);
    }
    assert_eq!(net.trainable("state/W.running_mean").unwrap(), got_m, "evaluation moved the running mean");
    // One element cannot be normalised over while training; a variance is not negative.
    let mut one = build(LINEAR, &Options { batch: 1, ..Options::default() });
    one.dropout_pass = Some(0);
    let err = one.step(&[input(0, 1).as_slice()]).unwrap_err().to_string();
    assert!(err.contains("`W` has `batch_norm`") && err.contains("at least 2"), "{err}");
    let err = net.set_trainable("state/W.running_var", Array2::from_elem((1, 3), -1.0)).unwrap_err().to_string();
    assert!(err.contains("cannot be negative"), "{err}");
    let err = net.set_trainable("W.gamma", Array2::from_elem((1, 4), 1.0)).unwrap_err().to_string();
    assert!(err.contains("must be 1x3"), "{err}");
}

/// Two layers, each input current batch-normalised, read by a `Linear` readout.
const TWO_LAYERS: &str = r#"import "stdlib/lif.snn"
network n {
    dt = 1 ms
    input x: 6
    layer H1 = LIF[5]
    layer H2 = LIF[4]
    readout out = Linear[2]
    connect x -> H1.I dense trainable init normal(0, 1) batch_norm as W1
    connect H1 -> H1.I dense trainable init normal(0, 0.3) no_self as W_rec
    connect H1 -> H2.I dense trainable init normal(0, 1) batch_norm dropout 0.2 as W2
    connect H2 -> out dense trainable init normal(0, 1) as W_out
}"#;

fn learning(batch: usize) -> Options {
    Options { batch, seed: 3, smooth_spikes: Some(3.0), learning: true, ..Options::default() }
}

fn data(batch: usize) -> RandomSpikes {
    RandomSpikes::new(30, batch, 6, 2, 0.4, 8)
}

fn names() -> Vec<String> {
    ["W1", "W_rec", "W2", "W_out", "W1.gamma", "W1.beta", "W2.gamma", "W2.beta"].map(String::from).to_vec()
}

/// BPTT through two batch norms (the batch's statistics of every step, a recurrent layer
/// between them, dropout before the second): the gradients of the weights into and out
/// of them, gamma and beta, equal central finite differences of the loss; in evaluation
/// (running statistics) too.
#[test]
fn bptt_through_batch_norm_matches_finite_differences() {
    let batch = 3;
    let opts = learning(batch);
    for pass in [Some(7), None] {
        // Running estimates away from (0, 1), so that evaluation tests them.
        let prepare = |n: &mut Network<f64>| {
            n.dropout_pass = pass;
            for (name, v) in [("W1.gamma", 1.3), ("W2.beta", 0.2), ("state/W1.running_mean", 0.3), ("state/W1.running_var", 2.0), ("state/W2.running_var", 0.5)] {
                let cols = n.trainable(name).unwrap().ncols();
                n.set_trainable(name, Array2::from_shape_fn((1, cols), |(_, j)| v + 0.1 * j as f64)).unwrap();
            }
        };
        let mut net = build(TWO_LAYERS, &opts);
        prepare(&mut net);
        let g = gradient_of(&mut net, &names(), &mut data(batch), Method::Bptt, false).unwrap();
        let loss_with = |name: &str, i: usize, j: usize, delta: f64| {
            let mut n = build(TWO_LAYERS, &opts);
            prepare(&mut n);
            let mut w = n.trainable(name).unwrap();
            w[[i, j]] += delta;
            n.set_trainable(name, w).unwrap();
            gradient_of(&mut n, &[], &mut data(batch), Method::Bptt, false).unwrap().loss
        };
        let mut worst = 0.0f64;
        for name in names() {
            let grad = g.get(&name).unwrap_or_else(|| panic!("no gradient of {name}"));
            let scale = max_abs(grad);
            assert!(scale > 0.0, "{name}: zero gradient");
            let (rows, cols) = grad.dim();
            for (i, j) in [(0, 0), (1, 1), (2, 1), (0, 2), (4, 0), (3, 3)] {
                let (i, j) = (i % rows, j % cols);
                if name == "W_rec" && i == j {
                    continue;
                }
                let h = 1e-5;
                let fd = (loss_with(&name, i, j, h) - loss_with(&name, i, j, -h)) / (2.0 * h);
                let err = (fd - grad[[i, j]]).abs() / scale;
                worst = worst.max(err);
                assert!(err <= 1e-6, "pass {pass:?}, {name}[{i},{j}]: BPTT {:e} vs finite differences {fd:e}", grad[[i, j]]);
            }
        }
        eprintln!("pass {pass:?}: BPTT vs central differences, worst error relative to the tensor's largest gradient: {worst:.2e}");
    }
}

/// The online methods, a batch split across networks, the CUDA backend and a batch norm
/// into a `Linear` readout (for gradients) are refused by name.
#[test]
fn what_batch_norm_cannot_do_is_refused() {
    let opts = learning(4);
    let net = build(TWO_LAYERS, &opts);
    for m in [Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
        let err = CpuGradient::new(&net, &names(), m).err().expect("refused").to_string();
        assert!(err.contains("`W1` has `batch_norm`") && err.contains("train it with bptt"), "{m}: {err}");
    }
    let mut parts = vec![build(TWO_LAYERS, &learning(2)), build(TWO_LAYERS, &learning(2))];
    let err = gradient_split(&mut parts, &names(), &mut data(4), Method::Bptt).unwrap_err().to_string();
    assert!(err.contains("`W1` has `batch_norm`") && err.contains("cannot be split across 2 networks"), "{err}");
    let p = program(TWO_LAYERS);
    let host = Network::<f64>::without_kernels(&p, &p.networks[0], &Options { batch: 2, ..Options::default() }).unwrap();
    let err = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
    assert!(err.contains("`W1` has `batch_norm`") && err.contains("CUDA backend"), "{err}");
    let lin = build(LINEAR, &learning(2));
    let err = CpuGradient::new(&lin, &[], Method::Bptt).err().expect("refused").to_string();
    assert!(err.contains("`W` has `batch_norm` into the `Linear` readout"), "{err}");
}

/// `train_batch` on the CPU trainer: the whole batch on one network, the running
/// estimates carried in the tensors it trains (`state/...`, moved by the pass, not by the
/// optimiser), and a held-out evaluation that normalises with them.
#[test]
fn training_carries_the_running_statistics_and_evaluation_uses_them() {
    let p = program(TWO_LAYERS);
    let mut names = names();
    let state = build(TWO_LAYERS, &learning(1)).batch_norm_state();
    assert_eq!(state, ["state/W1.running_mean", "state/W1.running_var", "state/W2.running_mean", "state/W2.running_var"]);
    names.extend(state.iter().cloned());
    let make = |b: usize| Network::<f64>::build(&p, &p.networks[0], &learning(b), &InterpFactory);
    let mut trainer = CpuTrainer::new(&make, &names, Method::Bptt);
    let initial = weights_of(&make(1).unwrap(), &names);
    let mut w = initial.clone();
    let mut opt = Optimizer::new(OptimizerKind::Adam, 1e-2, None);
    for _ in 0..2 {
        train_batch(&mut trainer, &mut w, &mut data(4), &[0, 1, 0, 1], &mut opt, None).unwrap();
    }
    assert_eq!(trainer.networks().len(), 1, "a batch norm's batch was split");
    let get = |w: &[(String, Array2<f64>)], n: &str| w.iter().find(|(m, _)| m == n).unwrap().1.clone();
    for n in &state {
        let (a, b) = (get(&initial, n), get(&w, n));
        assert!(max_abs(&(&a - &b)) > 1e-6, "{n} did not move: {b}");
        // What the network holds after the pass (the optimiser has no gradient of it).
        assert_eq!(trainer.networks()[0].trainable(n).unwrap(), b, "{n}");
    }
    assert!(max_abs(&(get(&initial, "W1.gamma") - get(&w, "W1.gamma"))) > 1e-6, "gamma not trained");
    // Held-out: normalised with the carried estimates; other estimates, another loss.
    let eval = |w: &[(String, Array2<f64>)]| {
        let mut net = make(4).unwrap();
        evaluate(&mut net, w, &mut data(4), &[0, 1, 0, 1]).unwrap().loss
    };
    let with = eval(&w);
    let mut reset = w.clone();
    for (n, a) in reset.iter_mut().filter(|(n, _)| n.starts_with("state/")) {
        *a = get(&initial, n);
    }
    assert!((with - eval(&reset)).abs() > 1e-9, "evaluation ignores the running estimates");
    // And equals a network given them by hand, stepped in evaluation.
    let mut by_hand = make(4).unwrap();
    for (n, a) in &w {
        by_hand.set_trainable(n, a.clone()).unwrap();
    }
    assert!(by_hand.dropout_pass.is_none());
    let g = gradient_of(&mut by_hand, &[], &mut data(4), Method::Bptt, false).unwrap();
    assert!((g.loss / 4.0 - with).abs() < 1e-12, "{} vs {with}", g.loss / 4.0);
}

/// Over MPI ranks (here threads exchanging as ranks do) each rank holds a share of the
/// batch: every rank refuses a network with a batch norm, naming it, before a gradient.
#[test]
fn batch_norm_is_refused_over_ranks() {
    use crate::common::Threads;
    use snnc_runtime::train::ranks::RankTrainer;
    let p = program(TWO_LAYERS);
    let names = names();
    let make = |b: usize| Network::<f64>::build(&p, &p.networks[0], &learning(b), &InterpFactory);
    let w = weights_of(&make(1).unwrap(), &names);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::world(2)
            .into_iter()
            .map(|ex| {
                let (make, names, w) = (&make, &names, &w);
                s.spawn(move || {
                    let mut ranks = RankTrainer::new(CpuTrainer::new(make, names, Method::Bptt), &ex);
                    ranks.start(4, false, w).unwrap_err().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for err in errors {
        assert!(err.contains("`W1` has `batch_norm`") && err.contains("2 MPI ranks"), "{err}");
    }
}

/// A batch norm into a readout with dynamics (`LeakyReadout`): BPTT's gradients of the
/// weights into it, of the layer's input weights behind it, and of gamma and beta equal
/// central finite differences.
#[test]
fn bptt_through_batch_norm_into_a_leaky_readout_matches_finite_differences() {
    let text = r#"import "stdlib/lif.snn"
import "stdlib/readout.snn"
network n {
    dt = 1 ms
    input x: 6
    layer H = LIF[5]
    readout out = LeakyReadout[2] { tau = 5 ms }
    connect x -> H.I dense trainable init normal(0, 2) as W_in
    connect H -> out.I dense trainable init normal(0, 1) batch_norm as W_out
}"#;
    let (batch, opts) = (4, learning(4));
    let names: Vec<String> = ["W_in", "W_out", "W_out.gamma", "W_out.beta"].map(String::from).to_vec();
    let fresh = || {
        let mut n = build(text, &opts);
        n.dropout_pass = Some(1);
        n.set_trainable("W_out.gamma", Array2::from_shape_fn((1, 2), |(_, j)| 0.7 + 0.5 * j as f64)).unwrap();
        n
    };
    let g = gradient_of(&mut fresh(), &names, &mut data(batch), Method::Bptt, false).unwrap();
    let mut worst = 0.0f64;
    for name in &names {
        let grad = g.get(name).unwrap();
        let scale = max_abs(grad);
        assert!(scale > 0.0, "{name}: zero gradient");
        let (rows, cols) = grad.dim();
        for (i, j) in [(0, 0), (1, 1), (3, 0), (4, 1)] {
            let (i, j) = (i % rows, j % cols);
            let loss = |delta: f64| {
                let mut n = fresh();
                let mut w = n.trainable(name).unwrap();
                w[[i, j]] += delta;
                n.set_trainable(name, w).unwrap();
                gradient_of(&mut n, &[], &mut data(batch), Method::Bptt, false).unwrap().loss
            };
            let h = 1e-5;
            let fd = (loss(h) - loss(-h)) / (2.0 * h);
            let err = (fd - grad[[i, j]]).abs() / scale;
            worst = worst.max(err);
            assert!(err <= 1e-6, "{name}[{i},{j}]: BPTT {:e} vs finite differences {fd:e}", grad[[i, j]]);
        }
    }
    eprintln!("into a leaky readout: worst error relative to the tensor's largest gradient: {worst:.2e}");
}
