//! Gradients through sparse and delayed projections: a sparse projection's gradient
//! (1 x nnz, CSR order) equals the dense gradient of the same weights read at its
//! synapses, for every method; BPTT through sparse delayed projections equals finite
//! differences; D-RTRL stays exact (= BPTT) for a feed-forward layer behind a delay.
use crate::common::program;
use ndarray::Array2;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::gpu::{EmuDevice, GpuGradient, GpuNetwork};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::learn::{Gradients, Method, gradient_of};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::tasks::RandomSpikes;

/// A LIF layer feeding a recurrent ALIF layer (K = 2), read by a leaky readout; the
/// three projections into the layers are `topo` (`dense` or `sparse p = P`), with the
/// given delays (`""` or `delay 2 ms`).
fn stack(topo: &str, mid_delay: &str, rec_delay: &str) -> String {
    format!(
        r#"import "stdlib/lif.snn"
import "stdlib/alif.snn"
import "stdlib/readout.snn"
network n {{
    dt = 1 ms
    input x: 5
    layer L1 = LIF[6]
    layer L2 = ALIF[5]
    readout out = LeakyReadout[2] {{ tau = 20 ms }}
    connect x -> L1.I {topo} trainable init normal(0, 5) as W_in
    connect L1 -> L2.I {topo} trainable init normal(0, 5) {mid_delay} as W_mid
    connect L2 -> L2.I {topo} trainable init normal(0, 4) no_self {rec_delay} as W_rec
    connect L2 -> out dense trainable init normal(0, 1) as W_out
}}"#
    )
}

const NAMES: [&str; 4] = ["W_in", "W_mid", "W_rec", "W_out"];

fn names() -> Vec<String> {
    NAMES.map(String::from).to_vec()
}

fn build(text: &str, opts: &Options) -> Network<f64> {
    let p = program(text);
    Network::<f64>::build(&p, &p.networks[0], opts, &InterpFactory).unwrap()
}

/// The sparse projection `name` of `sparse` as dense weights: its synapses' weights in
/// place, zeros elsewhere; and its (row, column) per synapse.
fn densified(sparse: &Network<f64>, name: &str) -> (Array2<f64>, Vec<(usize, usize)>) {
    let (pi, _, to, _) = sparse.projection(name).unwrap();
    let (row_ptr, col, w) = sparse.sparse_weights(pi).expect("sparse");
    let n_post = sparse.pops[to].n;
    let mut d = Array2::zeros((row_ptr.len() - 1, n_post));
    let mut at = Vec::new();
    for i in 0..row_ptr.len() - 1 {
        for s in row_ptr[i]..row_ptr[i + 1] {
            d[[i, col[s] as usize]] = w[s];
            at.push((i, col[s] as usize));
        }
    }
    (d, at)
}

fn largest(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

#[test]
fn sparse_gradients_equal_the_dense_ones_at_the_synapses() {
    let opts = Options { batch: 3, seed: 21, learning: true, ..Options::default() };
    let data = || RandomSpikes::new(90, 3, 5, 2, 0.35, 8);
    for (mid, rec) in [("", ""), ("delay 2 ms", "delay 1 ms")] {
        let mut sparse = build(&stack("sparse p = 0.6", mid, rec), &opts);
        let mut dense = build(&stack("dense", mid, rec), &opts);
        let mut synapses = Vec::new();
        for name in ["W_in", "W_mid", "W_rec"] {
            let (w, at) = densified(&sparse, name);
            assert!(at.len() < w.len(), "{name}: the mask keeps every pair");
            dense.set_trainable(name, w).unwrap();
            synapses.push((name, at));
        }
        dense.set_trainable("W_out", sparse.trainable("W_out").unwrap()).unwrap();
        for method in [Method::Bptt, Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
            sparse.reset();
            dense.reset();
            // Behind W_mid's delay, L1 reaches the loss only a step late: the online
            // methods refuse to train W_in there (its gradient would be zero).
            let mut trained = names();
            if !mid.is_empty() && method != Method::Bptt {
                let e = gradient_of(&mut sparse, &trained, &mut data(), method, false).err().expect("refused").to_string();
                assert!(e.contains("`W_in`: the online methods carry the learning signal back within a step only") && e.contains("`W_mid`"), "{e}");
                trained.retain(|n| n != "W_in");
                sparse.reset();
            }
            let gs = gradient_of(&mut sparse, &trained, &mut data(), method, false).unwrap();
            let gd = gradient_of(&mut dense, &trained, &mut data(), method, false).unwrap();
            assert_eq!(gs.loss, gd.loss, "{method} ({mid}/{rec}): the forward passes differ");
            for (name, at) in synapses.iter().filter(|(n, _)| trained.iter().any(|t| t == n)) {
                let (s, d) = (gs.get(name).unwrap(), gd.get(name).unwrap());
                assert_eq!(s.dim(), (1, at.len()), "{name}: one gradient per synapse");
                let scale = largest(d);
                assert!(scale > 0.0, "{method} {name} ({mid}/{rec}): zero gradient");
                let err = at.iter().enumerate().fold(0.0f64, |m, (k, &(i, j))| m.max((s[[0, k]] - d[[i, j]]).abs()));
                assert!(err <= 1e-10 * scale, "{method} {name} ({mid}/{rec}): sparse vs dense max error {err:e} of {scale:e}");
            }
            let (s, d) = (gs.get("W_out").unwrap(), gd.get("W_out").unwrap());
            assert!(largest(&(s - d)) <= 1e-10 * largest(d), "{method} W_out");
        }
    }
}

/// The loss of `text`'s network with synapse `k` of `name` moved by `delta`.
fn loss_with(text: &str, opts: &Options, name: &str, k: usize, delta: f64) -> f64 {
    let mut n = build(text, opts);
    let mut w = n.trainable(name).unwrap();
    w.as_slice_mut().unwrap()[k] += delta;
    n.set_trainable(name, w).unwrap();
    gradient_of(&mut n, &[], &mut RandomSpikes::new(50, 2, 5, 2, 0.4, 9), Method::Bptt, false).unwrap().loss
}

#[test]
fn bptt_through_sparse_delayed_projections_matches_finite_differences() {
    let text = stack("sparse p = 0.6", "delay 2 ms", "delay 3 ms");
    let opts = Options { batch: 2, seed: 3, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let mut n = build(&text, &opts);
    let g = gradient_of(&mut n, &names(), &mut RandomSpikes::new(50, 2, 5, 2, 0.4, 9), Method::Bptt, false).unwrap();
    for name in NAMES {
        let grad = g.get(name).unwrap();
        let scale = largest(grad);
        assert!(scale > 0.0, "{name}: zero gradient");
        let flat = grad.as_slice().unwrap();
        for k in [0, 1, flat.len() / 2, flat.len() - 1] {
            let h = 1e-5;
            let fd = (loss_with(&text, &opts, name, k, h) - loss_with(&text, &opts, name, k, -h)) / (2.0 * h);
            assert!((fd - flat[k]).abs() <= 1e-4 * scale, "{name}[{k}]: BPTT {:e} vs finite differences {fd:e} (largest {scale:e})", flat[k]);
        }
    }
}

/// One LIF layer fed through a delayed projection, read by the loss: D-RTRL is exact
/// there (ALGORITHMS.md), so it equals BPTT only if both pair each step with the input
/// that arrives in it.
#[test]
fn d_rtrl_equals_bptt_behind_a_delay() {
    for topo in ["dense", "sparse p = 0.7"] {
        let text = format!(
            r#"import "stdlib/lif.snn"
network n {{
    dt = 1 ms
    input x: 4
    layer L = LIF[5]
    readout out = Linear[2]
    connect x -> L.I {topo} trainable init normal(0, 4) delay 3 ms as W_in
    connect L -> out dense trainable init normal(0, 1) as W_out
}}"#
        );
        for smooth in [None, Some(3.0)] {
            let opts = Options { batch: 2, seed: 5, smooth_spikes: smooth, learning: true, ..Options::default() };
            let grad = |method| {
                let mut n = build(&text, &opts);
                gradient_of(&mut n, &["W_in".into(), "W_out".into()], &mut RandomSpikes::new(80, 2, 4, 2, 0.4, 2), method, false).unwrap()
            };
            let (d, b): (Gradients, Gradients) = (grad(Method::DRtrl), grad(Method::Bptt));
            for name in ["W_in", "W_out"] {
                let (x, y) = (d.get(name).unwrap(), b.get(name).unwrap());
                let scale = largest(y);
                assert!(scale > 0.0, "{topo} {name} (smooth {smooth:?}): zero gradient");
                assert!(largest(&(x - y)) <= 1e-10 * scale, "{topo} {name} (smooth {smooth:?}): D-RTRL vs BPTT");
            }
        }
    }
}

/// Delayed projections, dense or sparse, on the (emulated) device: its learners read
/// what arrives in each step (what was read d steps before), and BPTT carries the signal
/// back d steps (d + 1 through the recurrent one), as the CPU: trained delayed W_mid and
/// W_rec by every method (the online methods without W_in, which they refuse behind
/// W_mid's delay, on both backends), a fixed delayed sparse W_mid carrying the signal, a
/// delayed readout projection (BPTT), and a delayed input projection into a layer read
/// by a `Linear` readout. The device's gradients equal the CPU's (f64, 1e-10).
#[test]
fn gpu_gradients_through_delays_equal_the_cpus() {
    let opts = Options { batch: 3, seed: 21, learning: true, ..Options::default() };
    let data = || RandomSpikes::new(90, 3, 5, 2, 0.35, 8);
    let without_in: Vec<String> = names().into_iter().filter(|n| n != "W_in").collect();
    let all = [Method::Bptt, Method::DRtrl, Method::EsDRtrl { decay: 0.9 }];
    let sparse = stack("sparse p = 0.6", "delay 2 ms", "delay 1 ms");
    let dense = stack("dense", "delay 2 ms", "delay 1 ms");
    let fixed_mid = sparse.replace("connect L1 -> L2.I sparse p = 0.6 trainable", "connect L1 -> L2.I sparse p = 0.6");
    let late_out = stack("sparse p = 0.6", "", "").replace("connect L2 -> out dense trainable init normal(0, 1)", "connect L2 -> out dense trainable init normal(0, 1) delay 2 ms");
    assert!(fixed_mid != sparse && late_out.contains("delay 2 ms as W_out"));
    let input_delay = r#"import "stdlib/lif.snn"
network n {
    dt = 1 ms
    input x: 5
    layer L = LIF[6]
    readout out = Linear[2]
    connect x -> L.I sparse p = 0.7 trainable init normal(0, 4) delay 3 ms as W_in
    connect L -> out dense trainable init normal(0, 1) as W_out
}"#;
    let cases: [(&str, &str, Vec<String>, &[Method]); 5] = [
        ("sparse, delayed W_mid and W_rec", &sparse, names(), &[Method::Bptt]),
        ("sparse, delayed W_mid and W_rec, online", &sparse, without_in.clone(), &all[1..]),
        ("dense, delayed W_mid and W_rec", &dense, names(), &[Method::Bptt]),
        ("fixed delayed sparse W_mid", &fixed_mid, names().into_iter().filter(|n| n != "W_mid").collect(), &[Method::Bptt]),
        ("delayed readout projection", &late_out, names(), &[Method::Bptt]),
    ];
    for (what, text, trained, methods) in &cases {
        for &method in *methods {
            let (want, got, calls) = cpu_and_gpu::<f64>(text, trained, method, &opts, &data);
            assert_same(&format!("{what}, {method}"), &want, &got, 1e-10);
            assert!(calls.iter().any(|c| c.contains(".pre_delay")) || *what == "fixed delayed sparse W_mid", "{what}: no ring of presynaptic values");
        }
    }
    // The online methods refuse W_in behind W_mid's delay on the device as on the CPU.
    let p = program(&sparse);
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let e = GpuGradient::new(&mut gpu, &names(), Method::EsDRtrl { decay: 0.9 }).err().expect("refused").to_string();
    assert!(e.contains("`W_in`: the online methods carry the learning signal back within a step only") && e.contains("`W_mid`"), "{e}");
    for method in all {
        let (want, got, _) = cpu_and_gpu::<f64>(input_delay, &["W_in".into(), "W_out".into()], method, &Options { batch: 2, seed: 5, learning: true, ..Options::default() }, &|| RandomSpikes::new(80, 2, 5, 2, 0.4, 2));
        assert_same(&format!("delayed input projection, {method}"), &want, &got, 1e-10);
    }
}

/// What the device's gradient pass still refuses, by name: a delay per synapse (the
/// device does not run it), an adapter with D-RTRL (as the CPU, with its message),
/// dropout (it would train another network).
#[test]
fn the_gpu_refuses_what_it_does_not_train() {
    let opts = Options { batch: 2, seed: 3, learning: true, ..Options::default() };
    let p = program(&stack("sparse p = 0.6", "delay U(1 ms, 4 ms)", ""));
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let e = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
    assert!(e.contains("a delay per synapse is not supported on the GPU"), "{e}");
    let p = program(&adapted("sparse p = 0.5"));
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let e = GpuGradient::new(&mut gpu, &ADAPTED.map(String::from), Method::DRtrl).err().expect("refused").to_string();
    assert!(e.contains("the adapter of `W_mid` cannot be trained here: D-RTRL"), "{e}");
    let dropped = stack("sparse p = 0.6", "", "").replace("connect L1 -> L2.I sparse p = 0.6 trainable", "connect L1 -> L2.I sparse p = 0.6 trainable dropout 0.2");
    let p = program(&dropped);
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    for method in [Method::Bptt, Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
        let e = GpuGradient::new(&mut gpu, &names(), method).err().expect("refused").to_string();
        assert!(e.contains("`W_mid` has `dropout`: training with dropout runs on the CPU only"), "{method}: {e}");
    }
}

/// The CPU's and the emulated device's gradients of `text`'s network for `trained`, by
/// `method`, in precision `T` on the device; with the device's calls (made one by one).
fn cpu_and_gpu<T: snnc_runtime::scalar::Float>(text: &str, trained: &[String], method: Method, opts: &Options, data: &dyn Fn() -> RandomSpikes) -> (Gradients, Gradients, Vec<String>) {
    let mut cpu = build(text, opts);
    let want = gradient_of(&mut cpu, trained, &mut data(), method, false).unwrap();
    let p = program(text);
    let host = Network::<T>::build(&p, &p.networks[0], opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let mut grad = GpuGradient::new(&mut gpu, trained, method).unwrap();
    // Windows recorded as graphs (the default), then call by call (logged one by one):
    // the same gradients, bit for bit.
    let graphs = grad.run(&mut gpu, &mut data()).unwrap();
    gpu.reset().unwrap();
    grad.set_graphs(false);
    gpu.dev.log.clear();
    let got = grad.run(&mut gpu, &mut data()).unwrap();
    assert_eq!((graphs.loss, &graphs.total), (got.loss, &got.total), "{method}: recorded windows vs call by call");
    let calls = gpu.dev.log.iter().map(|c| gpu.dev.render(c)).collect();
    (want, got, calls)
}

/// Every gradient of `got` equals `want`'s (same shape, largest difference at most `tol`
/// of its largest entry, which is not zero), and so do the losses.
fn assert_same(what: &str, want: &Gradients, got: &Gradients, tol: f64) {
    assert!((want.loss - got.loss).abs() <= tol * want.loss.abs(), "{what}: loss {} vs {}", want.loss, got.loss);
    assert_eq!(want.total.len(), got.total.len(), "{what}");
    for ((n1, a), (n2, b)) in want.total.iter().zip(&got.total) {
        assert_eq!(n1, n2, "{what}");
        assert_eq!(a.dim(), b.dim(), "{what} {n1}");
        let scale = largest(a);
        assert!(scale > 0.0, "{what} {n1}: the CPU's gradient is zero, the test shows nothing");
        let diff = largest(&(a - b));
        eprintln!("{what} {n1} {:?}: device vs CPU {:.1e} of the largest", a.dim(), diff / scale);
        assert!(diff <= tol * scale, "{what} {n1}: device vs CPU max difference {diff:e} of {scale:e}");
    }
}

/// Sparse projections trained on the (emulated) device, by every method: a recurrent
/// stack whose input, feed-forward and recurrent projections are sparse and trained
/// (1 x nnz gradients), the same with the readout's weights sparse (exact traces per
/// synapse in every online method), and with a fixed sparse W_mid that only carries the
/// learning signal back to L1. The device's gradients equal the CPU's (f64, 1e-10), and
/// its sparse kernels ran (the products per synapse, the signal back through the
/// synapses, the exact traces per synapse).
#[test]
fn gpu_sparse_gradients_equal_the_cpus() {
    let opts = Options { batch: 3, seed: 21, learning: true, ..Options::default() };
    let data = || RandomSpikes::new(90, 3, 5, 2, 0.35, 8);
    let all = stack("sparse p = 0.6", "", "");
    let sparse_out = all.replace("connect L2 -> out dense trainable", "connect L2 -> out sparse p = 0.8 trainable");
    let fixed_mid = all.replace("connect L1 -> L2.I sparse p = 0.6 trainable", "connect L1 -> L2.I sparse p = 0.6");
    assert!(sparse_out != all && fixed_mid != all);
    let without_mid: Vec<String> = names().into_iter().filter(|n| n != "W_mid").collect();
    for (what, text, trained) in [("all sparse", &all, names()), ("sparse readout weights", &sparse_out, names()), ("fixed sparse W_mid", &fixed_mid, without_mid)] {
        for method in [Method::Bptt, Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
            let (want, got, calls) = cpu_and_gpu::<f64>(text, &trained, method, &opts, &data);
            let what = format!("{what}, {method}");
            assert_same(&what, &want, &got, 1e-10);
            let n = build(text, &opts);
            for name in trained.iter().filter(|n| n.as_str() != "W_out" || what.starts_with("sparse readout")) {
                let nnz = n.trainable(name).unwrap().len();
                assert_eq!(got.get(name).unwrap().dim(), (1, nnz), "{what} {name}: one gradient per synapse");
            }
            let ran = |entry: &str| calls.iter().any(|c| c.starts_with(&format!("{entry} ")));
            // The signal goes back through W_mid (a layer below, every method) and, in
            // BPTT, through W_rec to the step before.
            assert!(ran("snnc_sparse_back"), "{what}: no signal through the sparse synapses");
            match method {
                Method::DRtrl => assert!(ran("snnc_sparse_exact_trace") && !ran("snnc_sparse_outer"), "{what}"),
                _ => assert!(ran("snnc_sparse_outer"), "{what}"),
            }
            if what.starts_with("sparse readout") && method != Method::Bptt {
                assert!(ran("snnc_sparse_exact_trace"), "{what}: the readout's synapses have exact traces");
            }
        }
    }
    // In f32 the device tracks the CPU's f64.
    let (want, got, _) = cpu_and_gpu::<f32>(&all, &names(), Method::EsDRtrl { decay: 0.9 }, &opts, &data);
    assert_same("all sparse, ES-D-RTRL, f32", &want, &got, 2e-3);
}

/// Updates within a sequence (D-RTRL and ES-D-RTRL, every 40 steps of 90) set the sparse
/// projections' new weights (1 x nnz) on the device as on the CPU: the sequences go on
/// with them, and the gradients after the last update agree.
#[test]
fn gpu_online_updates_set_sparse_weights() {
    use snnc_runtime::learn::{Online, gradient_online};
    let opts = Options { batch: 3, seed: 21, learning: true, ..Options::default() };
    let text = stack("sparse p = 0.6", "", "");
    let data = || RandomSpikes::new(90, 3, 5, 2, 0.35, 8);
    for method in [Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
        let mut cpu = build(&text, &opts);
        let start: Vec<(String, Array2<f64>)> = names().into_iter().map(|n| (n.clone(), cpu.trainable(&n).unwrap())).collect();
        // Plain gradient descent: w -= 0.05 g, from the same start on both.
        let descend = |w: &mut Vec<(String, Array2<f64>)>, g: &[(String, Array2<f64>)]| -> Result<Vec<(String, Array2<f64>)>, snnc_runtime::error::RuntimeError> {
            for ((n, w), (m, g)) in w.iter_mut().zip(g) {
                assert_eq!(n, m);
                *w = &*w - &(g * 0.05);
            }
            Ok(w.clone())
        };
        let (mut w_cpu, mut w_gpu) = (start.clone(), start.clone());
        let mut up_cpu = |g: &[(String, Array2<f64>)]| descend(&mut w_cpu, g);
        let want = gradient_online(&mut cpu, &names(), &mut data(), method, false, Some(Online { every: 40, update: &mut up_cpu })).unwrap();
        let p = program(&text);
        let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
        let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
        let mut grad = GpuGradient::new(&mut gpu, &names(), method).unwrap();
        let mut up_gpu = |g: &[(String, Array2<f64>)]| descend(&mut w_gpu, g);
        let got = grad.run_online(&mut gpu, &mut data(), Some(Online { every: 40, update: &mut up_gpu })).unwrap();
        assert_same(&format!("{method}, updates every 40 steps"), &want, &got, 1e-10);
        for ((n, a), (_, b)) in w_cpu.iter().zip(&w_gpu) {
            let moved = largest(&(a - &start.iter().find(|(m, _)| m == n).unwrap().1));
            assert!(moved > 0.0, "{method} {n}: not updated");
            assert!(largest(&(a - b)) <= 1e-10 * largest(a), "{method} {n}: weights differ");
            let w = gpu.host.trainable(n).unwrap();
            assert!(largest(&(&w - b)) == 0.0, "{method} {n}: the device's host view holds the last update");
        }
    }
    // A tensor of the wrong shape is refused, and changes neither side.
    let p = program(&text);
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let before = gpu.host.trainable("W_rec").unwrap();
    let e = gpu.set_trainable("W_rec", Array2::zeros((5, 5))).err().expect("refused").to_string();
    assert!(e.contains("must be 1x") && e.contains("one per synapse"), "{e}");
    assert_eq!(gpu.host.trainable("W_rec").unwrap(), before);
}

/// The stack with a fixed sparse W_mid carrying a rank-2 adapter (`W_mid.U`, `W_mid.V`
/// trained), and its twin with the dense W_mid + U V as plain trainable weights.
fn adapted(topo: &str) -> String {
    stack("dense", "", "").replace("connect L1 -> L2.I dense trainable init normal(0, 5)  as W_mid", &format!("connect L1 -> L2.I {topo} init normal(0, 5) adapter rank 2 as W_mid"))
}

const ADAPTED: [&str; 5] = ["W_in", "W_mid.U", "W_mid.V", "W_rec", "W_out"];

/// A network of `adapted(topo)` whose adapter's V is drawn (it starts at zero, where
/// dL/dU is zero too).
fn adapted_net(topo: &str, opts: &Options) -> Network<f64> {
    let mut n = build(&adapted(topo), opts);
    let v = Array2::from_shape_fn((2, 5), |(k, o)| 0.7 * ((k * 5 + o) as f64 * 1.3).sin());
    n.set_trainable("W_mid.V", v).unwrap();
    n
}

/// W + U V of `n`'s W_mid, dense.
fn effective(n: &Network<f64>) -> Array2<f64> {
    let (pi, ..) = n.projection("W_mid").unwrap();
    let w = match n.dense_weights(pi) {
        Some(w) => w.clone(),
        None => densified(n, "W_mid").0,
    };
    w + n.trainable("W_mid.U").unwrap().dot(&n.trainable("W_mid.V").unwrap())
}

#[test]
fn adapter_gradients_are_the_dense_gradient_pulled_back() {
    assert!(adapted("sparse p = 0.5").contains("adapter rank 2"));
    let opts = Options { batch: 2, seed: 7, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let data = || RandomSpikes::new(70, 2, 5, 2, 0.4, 3);
    let names: Vec<String> = ADAPTED.map(String::from).to_vec();
    for topo in ["sparse p = 0.5", "dense"] {
        let mut a = adapted_net(topo, &opts);
        let (u, v, w_eff) = (a.trainable("W_mid.U").unwrap(), a.trainable("W_mid.V").unwrap(), effective(&a));
        let mut d = build(&stack("dense", "", ""), &opts);
        d.set_trainable("W_mid", w_eff).unwrap();
        for n in ["W_in", "W_rec", "W_out"] {
            d.set_trainable(n, a.trainable(n).unwrap()).unwrap();
        }
        for method in [Method::Bptt, Method::EsDRtrl { decay: 0.9 }] {
            a.reset();
            d.reset();
            let ga = gradient_of(&mut a, &names, &mut data(), method, false).unwrap();
            let gd = gradient_of(&mut d, &NAMES.map(String::from), &mut data(), method, false).unwrap();
            assert!((ga.loss - gd.loss).abs() <= 1e-12 * gd.loss.abs(), "{topo} {method}: the forward passes differ: {} vs {}", ga.loss, gd.loss);
            let g = gd.get("W_mid").unwrap();
            for (name, want) in [("W_mid.U", g.dot(&v.t())), ("W_mid.V", u.t().dot(g))] {
                let got = ga.get(name).unwrap();
                let scale = largest(&want);
                assert!(scale > 0.0, "{topo} {method} {name}: zero gradient");
                assert!(largest(&(got - &want)) <= 1e-9 * scale, "{topo} {method} {name}: {got:?} vs pulled back {want:?}");
            }
            for name in ["W_in", "W_rec", "W_out"] {
                let (x, y) = (ga.get(name).unwrap(), gd.get(name).unwrap());
                assert!(largest(&(x - y)) <= 1e-9 * largest(y), "{topo} {method} {name}");
            }
        }
    }
}

#[test]
fn adapter_gradients_match_finite_differences() {
    let opts = Options { batch: 2, seed: 7, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let names: Vec<String> = ADAPTED.map(String::from).to_vec();
    let data = || RandomSpikes::new(50, 2, 5, 2, 0.4, 9);
    let g = gradient_of(&mut adapted_net("sparse p = 0.5", &opts), &names, &mut data(), Method::Bptt, false).unwrap();
    for name in ["W_mid.U", "W_mid.V"] {
        let grad = g.get(name).unwrap();
        let scale = largest(grad);
        for k in [0, 3, grad.len() - 1] {
            let loss = |delta: f64| {
                let mut n = adapted_net("sparse p = 0.5", &opts);
                let mut w = n.trainable(name).unwrap();
                w.as_slice_mut().unwrap()[k] += delta;
                n.set_trainable(name, w).unwrap();
                gradient_of(&mut n, &[], &mut data(), Method::Bptt, false).unwrap().loss
            };
            let h = 1e-5;
            let fd = (loss(h) - loss(-h)) / (2.0 * h);
            let bp = grad.as_slice().unwrap()[k];
            assert!((fd - bp).abs() <= 1e-4 * scale, "{name}[{k}]: BPTT {bp:e} vs finite differences {fd:e} (largest {scale:e})");
        }
    }
}

/// What an adapter cannot be trained with is refused, naming it: D-RTRL (a trace per
/// weight of W + U V), one factor without the other, the GPU backend.
#[test]
fn adapter_refusals_name_the_projection() {
    let opts = Options { batch: 2, seed: 7, learning: true, ..Options::default() };
    let mut n = adapted_net("sparse p = 0.5", &opts);
    let names: Vec<String> = ADAPTED.map(String::from).to_vec();
    let e = gradient_of(&mut n, &names, &mut RandomSpikes::new(5, 2, 5, 2, 0.4, 1), Method::DRtrl, false).err().expect("refused").to_string();
    assert!(e.contains("the adapter of `W_mid` cannot be trained here: D-RTRL"), "{e}");
    let e = gradient_of(&mut n, &["W_mid.U".into()], &mut RandomSpikes::new(5, 2, 5, 2, 0.4, 1), Method::Bptt, false).err().expect("refused").to_string();
    assert!(e.contains("`W_mid.U` and `W_mid.V` (the adapter of `W_mid`) are trained together"), "{e}");
}

/// Adapters trained on the (emulated) device: the sparse stack with a fixed W_mid
/// carrying a rank-2 adapter (V drawn), and the whole-brain fit's case, an adapter on a
/// delayed sparse recurrent projection, by BPTT and ES-D-RTRL: the device's dL/dU and
/// dL/dV (and the other gradients) equal the CPU's (f64, 1e-10); then with new U and V
/// set on both (uploaded to the device).
#[test]
fn gpu_adapter_gradients_equal_the_cpus() {
    let opts = Options { batch: 2, seed: 7, learning: true, ..Options::default() };
    let data = || RandomSpikes::new(70, 2, 5, 2, 0.4, 3);
    let rec = stack("dense", "", "").replace(
        "connect L2 -> L2.I dense trainable init normal(0, 4) no_self  as W_rec",
        "connect L2 -> L2.I sparse p = 0.6 init normal(0, 4) no_self delay 2 ms adapter rank 2 as W_rec",
    );
    assert!(rec.contains("adapter rank 2 as W_rec"));
    let cases = [
        ("adapter on a fixed sparse W_mid", adapted("sparse p = 0.5"), "W_mid", ADAPTED.map(String::from).to_vec()),
        ("adapter on a delayed sparse recurrent W_rec", rec, "W_rec", ["W_in", "W_mid", "W_rec.U", "W_rec.V", "W_out"].map(String::from).to_vec()),
    ];
    for (what, text, proj, trained) in &cases {
        let v = Array2::from_shape_fn((2, 5), |(k, o)| 0.6 * ((k * 5 + o) as f64 * 1.1).sin());
        for method in [Method::Bptt, Method::EsDRtrl { decay: 0.9 }] {
            let mut cpu = build(text, &opts);
            cpu.set_trainable(&format!("{proj}.V"), v.clone()).unwrap();
            let p = program(text);
            let mut host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
            host.set_trainable(&format!("{proj}.V"), v.clone()).unwrap();
            let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
            let mut grad = GpuGradient::new(&mut gpu, trained, method).unwrap();
            for round in 0..2 {
                if round == 1 {
                    // New factors, set on both: the device's copies follow.
                    for (name, w) in [(format!("{proj}.U"), cpu.trainable(&format!("{proj}.U")).unwrap().mapv(|x| 0.5 * x + 0.1)), (format!("{proj}.V"), v.mapv(|x| -x))] {
                        cpu.set_trainable(&name, w.clone()).unwrap();
                        gpu.set_trainable(&name, w).unwrap();
                    }
                    cpu.reset();
                    gpu.reset().unwrap();
                }
                let want = gradient_of(&mut cpu, trained, &mut data(), method, false).unwrap();
                let got = grad.run(&mut gpu, &mut data()).unwrap();
                assert_same(&format!("{what}, {method}, round {round}"), &want, &got, 1e-10);
                assert!(got.get(&format!("{proj}.U")).is_some() && got.get(&format!("{proj}.V")).is_some(), "{what}: U and V by name");
            }
        }
    }
}

/// A delay per synapse (`delay U(1 ms, 4 ms)`) is not one the gradient pass can pair
/// with its target's steps: refused by name, never trained as if it were the longest.
#[test]
fn per_synapse_delays_are_refused_by_the_gradient() {
    let opts = Options { batch: 2, seed: 3, learning: true, ..Options::default() };
    let mut n = build(&stack("sparse p = 0.6", "delay U(1 ms, 4 ms)", ""), &opts);
    let e = gradient_of(&mut n, &names(), &mut RandomSpikes::new(5, 2, 5, 2, 0.4, 1), Method::Bptt, false).err().expect("refused").to_string();
    assert!(e.contains("`W_mid` has a delay per synapse"), "{e}");
}

/// Procedural connectivity is not regenerated on the device: the CUDA backend refuses
/// it by name rather than running something else.
#[test]
fn the_gpu_refuses_procedural_connectivity() {
    let p = program(&stack("dense", "", "").replace("connect L1 -> L2.I dense trainable", "connect L1 -> L2.I procedural p = 0.5"));
    let host = Network::<f64>::build(&p, &p.networks[0], &Options { batch: 1, ..Options::default() }, &InterpFactory).unwrap();
    let e = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
    assert!(e.contains("`W_mid` is procedural"), "{e}");
}

/// An adapter on a delayed, sparse, recurrent projection (the whole-brain fit's case):
/// its gradients equal the dense gradient of W + U V (with the same delay) pulled back,
/// with BPTT and ES-D-RTRL.
#[test]
fn adapter_gradients_through_a_delayed_recurrent_projection() {
    let rec = |topo: &str, extra: &str| {
        stack("dense", "", "").replace(
            "connect L2 -> L2.I dense trainable init normal(0, 4) no_self  as W_rec",
            &format!("connect L2 -> L2.I {topo} init normal(0, 4) no_self delay 2 ms {extra} as W_rec"),
        )
    };
    let opts = Options { batch: 2, seed: 7, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let data = || RandomSpikes::new(70, 2, 5, 2, 0.4, 3);
    let mut a = build(&rec("sparse p = 0.6", "adapter rank 2"), &opts);
    assert!(a.adapter(a.projection("W_rec").unwrap().0).is_some(), "the text has the adapter");
    a.set_trainable("W_rec.V", Array2::from_shape_fn((2, 5), |(k, o)| 0.5 * ((k * 5 + o) as f64 * 0.7).cos())).unwrap();
    let (u, v) = (a.trainable("W_rec.U").unwrap(), a.trainable("W_rec.V").unwrap());
    let w_eff = densified(&a, "W_rec").0 + u.dot(&v);
    let mut d = build(&rec("dense trainable", ""), &opts);
    d.set_trainable("W_rec", w_eff).unwrap();
    for n in ["W_in", "W_mid", "W_out"] {
        d.set_trainable(n, a.trainable(n).unwrap()).unwrap();
    }
    let names_a: Vec<String> = ["W_in", "W_mid", "W_rec.U", "W_rec.V", "W_out"].map(String::from).to_vec();
    for method in [Method::Bptt, Method::EsDRtrl { decay: 0.9 }] {
        a.reset();
        d.reset();
        let ga = gradient_of(&mut a, &names_a, &mut data(), method, false).unwrap();
        let gd = gradient_of(&mut d, &names(), &mut data(), method, false).unwrap();
        assert!((ga.loss - gd.loss).abs() <= 1e-12 * gd.loss.abs(), "{method}: forward passes differ");
        let g = gd.get("W_rec").unwrap();
        for (name, want) in [("W_rec.U", g.dot(&v.t())), ("W_rec.V", u.t().dot(g))] {
            let got = ga.get(name).unwrap();
            let scale = largest(&want);
            assert!(scale > 0.0, "{method} {name}: zero gradient");
            assert!(largest(&(got - &want)) <= 1e-9 * scale, "{method} {name}: {got:?} vs pulled back {want:?}");
        }
    }
}
