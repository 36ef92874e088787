//! ES-D-RTRL on the GPU engine without a GPU: [`GpuGradient`] runs its whole schedule
//! on the [`EmuDevice`] (the generated trace kernels in the step emulator, the training
//! kernels' PTX text in the interpreter, the GEMMs in cuBLAS's convention with
//! transposes), and its gradients are compared with the CPU's `gradient_of`.
use crate::common::program;
use snnc_compiler::SourceMap;
use snnc_compiler::backend::ptx::Target;
use snnc_compiler::sema::{self, LoadOptions, Program};
use snnc_runtime::gpu::{EmuDevice, GpuGradient, GpuNetwork};
use snnc_runtime::scalar::Float;
use snnc_runtime::learn::{Gradients, Method, gradient_of};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::tasks::RandomSpikes;
use std::path::Path;

/// A LIF layer feeding a recurrent ALIF layer (K = 2), read by `readout` from `source`.
fn stacked(source: &str, readout: &str) -> String {
    format!(
        r#"import "stdlib/lif.snn"
import "stdlib/alif.snn"
import "stdlib/readout.snn"
network n {{
    dt = 1 ms
    input x: 5
    layer L1 = LIF[6] {{ tau = 5 ms }}
    layer L2 = ALIF[4]
    readout out = {readout}
    connect x -> L1.I dense trainable init normal(0, 3) as W_in
    connect L1 -> L2.I dense trainable init normal(0.5, 4) as W_mid
    connect L2 -> L2.I dense trainable init normal(0, 3) no_self as W_rec
    connect {source} -> out dense trainable init normal(0, 1) as W_out
}}"#
    )
}

/// Trainable time constants in a recurrent adaptive layer, a leaky readout.
fn params_net() -> String {
    crate::common::trainable_param_text("LeakyReadout[2] { tau = 20 ms }", true)
}

fn trainable_of(net: &Network<f64>, p: &Program) -> Vec<String> {
    let mut names: Vec<String> = p.networks[0].projections.iter().filter(|pr| pr.trainable).map(|pr| pr.name.clone()).collect();
    names.extend(net.trainable_params());
    names
}

/// The CPU's and the emulated GPU's ES-D-RTRL gradients of the same batch.
fn both<T: Float>(p: &Program, steps: usize, batch: usize, decay: f64) -> (Gradients, Gradients) {
    both_by::<T>(p, steps, batch, Method::EsDRtrl { decay })
}

/// The CPU's and the emulated GPU's gradients of the same batch by `method`.
fn both_by<T: Float>(p: &Program, steps: usize, batch: usize, method: Method) -> (Gradients, Gradients) {
    let opts = Options { batch, seed: 4, learning: true, ..Options::default() };
    let mut cpu = Network::<f64>::build(p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let trainable = trainable_of(&cpu, p);
    let (inputs, outputs) = (cpu.inputs[0].1, cpu.pops.iter().find(|q| q.kind == sema::PopKind::Readout).unwrap().n);
    let data = || RandomSpikes::new(steps, batch, inputs, outputs, 0.3, 6);
    let want = gradient_of(&mut cpu, &trainable, &mut data(), method, false).unwrap();
    let host = Network::<T>::build(p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let mut grad = GpuGradient::new(&mut gpu, &trainable, method).unwrap();
    let got = grad.run(&mut gpu, &mut data()).unwrap();
    (want, got)
}

/// Largest difference of each gradient relative to its largest entry.
fn assert_close(want: &Gradients, got: &Gradients, tol: f64) {
    assert_eq!(want.total.len(), got.total.len());
    assert!((want.loss - got.loss).abs() <= tol * want.loss.abs().max(1e-12), "loss {} vs {}", want.loss, got.loss);
    for ((n1, a), (n2, b)) in want.total.iter().zip(&got.total) {
        assert_eq!(n1, n2);
        assert_eq!(a.dim(), b.dim(), "{n1}");
        let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{n1}: the CPU gradient is zero, the test shows nothing");
        let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= tol * scale, "{n1}: max difference {diff:e} of scale {scale:e}");
    }
    for (e1, e2) in want.evidence.iter().zip(&got.evidence) {
        assert!((e1 - e2).abs() <= tol * e1.abs().max(1.0), "evidence {e1} vs {e2}");
    }
}

#[test]
fn gpu_es_d_rtrl_matches_cpu_on_a_stack_with_a_linear_readout() {
    let p = program(&stacked("L2", "Linear[3]"));
    let (want, got) = both::<f64>(&p, 40, 3, 0.9);
    assert_close(&want, &got, 1e-9);
    assert_eq!(got.total.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["W_in", "W_mid", "W_rec", "W_out"]);
    // The CPU's traces, plus the GPU's contraction window: u and the scaled eps_x of up to
    // 256 steps (batch 3), one GEMM per projection per window instead of one per step;
    // and the readout's error (3) and its plain weight's input (L2, 4) of each step.
    let window = 256 * 3 * 8 * ((6 + 5) + (4 + 6 + 4) + (3 + 4));
    assert_eq!(got.state_bytes, want.state_bytes + window);
}

#[test]
fn gpu_es_d_rtrl_matches_cpu_with_a_leaky_readout_of_a_state() {
    // The readout reads L2.v (a state, not spikes) and has dynamics: its weights get
    // their exact trace; the signal reaches L2 through dL/dv.
    let p = program(&stacked("L2.v", "LeakyReadout[2] { tau = 10 ms }"));
    let (want, got) = both::<f64>(&p, 40, 2, 0.95);
    assert_close(&want, &got, 1e-9);
}

#[test]
fn gpu_es_d_rtrl_matches_cpu_with_trainable_time_constants() {
    let p = program(&params_net());
    let (want, got) = both::<f64>(&p, 40, 3, 0.9);
    assert_close(&want, &got, 1e-9);
    assert!(got.total.iter().any(|(n, _)| n == "L.tau_a"));
}

#[test]
fn gpu_es_d_rtrl_in_f32_tracks_cpu_f64() {
    let p = program(&stacked("L2", "Linear[3]"));
    let (want, got) = both::<f32>(&p, 40, 3, 0.9);
    assert_close(&want, &got, 2e-3);
    let p = program(&stacked("L2.v", "LeakyReadout[2] { tau = 10 ms }"));
    let (want, got) = both::<f32>(&p, 40, 2, 0.95);
    assert_close(&want, &got, 2e-3);
}

#[test]
fn gpu_es_d_rtrl_matches_cpu_on_the_dms_example() {
    let mut sources = SourceMap::new();
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dms.snn"));
    let (p, d) = sema::check_path(path, &LoadOptions::default(), &mut sources);
    assert!(d.iter().all(|d| !d.is_error()));
    let (want, got) = both::<f64>(&p, 12, 2, 0.99);
    assert_close(&want, &got, 1e-9);
}

/// BPTT and D-RTRL on the device, against the CPU's, on every network above.
#[test]
fn gpu_bptt_and_d_rtrl_match_cpu() {
    let nets = [
        ("stack, Linear readout", stacked("L2", "Linear[3]")),
        ("stack, leaky readout of L2.v", stacked("L2.v", "LeakyReadout[2] { tau = 10 ms }")),
        ("trainable time constants", params_net()),
    ];
    for (what, text) in &nets {
        let p = program(text);
        for method in [Method::Bptt, Method::DRtrl] {
            let (want, got) = both_by::<f64>(&p, 30, 2, method);
            eprintln!("{what}, {method:?}: loss {}", got.loss);
            assert_close(&want, &got, 1e-9);
        }
    }
    let p = program(&stacked("L2", "Linear[3]"));
    let (want, got) = both_by::<f32>(&p, 30, 2, Method::Bptt);
    assert_close(&want, &got, 2e-3);
}

#[test]
fn gpu_gradient_checks_its_data() {
    let p = program(&stacked("L2", "Linear[3]"));
    let opts = Options { batch: 2, learning: true, ..Options::default() };
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let names = ["W_in".to_string()];
    let mut grad = GpuGradient::new(&mut gpu, &names, Method::EsDRtrl { decay: 0.9 }).unwrap();
    let e = grad.run(&mut gpu, &mut RandomSpikes::new(5, 3, 5, 3, 0.3, 1)).err().expect("wrong batch").to_string();
    assert!(e.contains("batch 3"), "{e}");
    let e = grad.run(&mut gpu, &mut RandomSpikes::new(5, 2, 4, 3, 0.3, 1)).err().expect("wrong input size").to_string();
    assert!(e.contains("sizes [4]"), "{e}");
    let e = GpuGradient::new(&mut gpu, &["nope".to_string()], Method::Bptt).err().expect("no such name").to_string();
    assert!(e.contains("`nope`"), "{e}");
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut other = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let e = grad.run(&mut other, &mut RandomSpikes::new(5, 2, 5, 3, 0.3, 1)).err().expect("another network").to_string();
    assert!(e.contains("made for another network"), "{e}");
    let mut bptt = GpuGradient::new(&mut gpu, &names, Method::Bptt).unwrap();
    let mut never = |_: &[(String, ndarray::Array2<f64>)]| -> Result<Vec<(String, ndarray::Array2<f64>)>, snnc_runtime::error::RuntimeError> { unreachable!() };
    let online = Some(snnc_runtime::learn::Online { every: 2, update: &mut never });
    let e = bptt.run_online(&mut gpu, &mut RandomSpikes::new(5, 2, 5, 3, 0.3, 1), online).err().expect("BPTT online").to_string();
    assert!(e.contains("need an online method"), "{e}");
}

/// Training batch after batch on the (emulated) GPU — reset, weights uploaded, gradient,
/// Adam step with the constraints — gives the CPU's weights, losses and rates; also with
/// updates every 10 steps within the sequences.
#[test]
fn training_on_the_gpu_follows_the_cpu() {
    for (method, every) in [(Method::EsDRtrl { decay: 0.9 }, None), (Method::EsDRtrl { decay: 0.9 }, Some(10)), (Method::DRtrl, Some(7)), (Method::Bptt, None)] {
        train_both(method, every);
    }
}

fn train_both(method: Method, every: Option<usize>) {
    use snnc_runtime::engine::Engine;
    use snnc_runtime::train::{CpuTrainer, Optimizer, OptimizerKind, evaluate, train_batch, weights_of};
    let p = program(&params_net());
    let batch = 3;
    let opts = Options { batch, seed: 4, learning: true, ..Options::default() };
    let cpu0 = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let trainable = trainable_of(&cpu0, &p);
    let (mut w_cpu, mut w_gpu) = (weights_of(&cpu0, &trainable), weights_of(&cpu0, &trainable));
    let (mut opt_cpu, mut opt_gpu) = (Optimizer::new(OptimizerKind::Adam, 0.05, None), Optimizer::new(OptimizerKind::Adam, 0.05, None));
    let make = |b: usize| Network::<f64>::build(&p, &p.networks[0], &Options { batch: b, ..opts }, &InterpFactory);
    let mut cpu = CpuTrainer::new(&make, &trainable, method);
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut net = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let learner = GpuGradient::new(&mut net, &trainable, method).unwrap();
    let mut gpu = Engine { net, learner };
    let labels = [0, 1, 0];
    for b in 0..3 {
        let data = || RandomSpikes::new(25, batch, 3, 2, 0.3, 10 + b);
        let rc = train_batch(&mut cpu, &mut w_cpu, &mut data(), &labels, &mut opt_cpu, every).unwrap();
        let rg = train_batch(&mut gpu, &mut w_gpu, &mut data(), &labels, &mut opt_gpu, every).unwrap();
        assert!((rc.loss - rg.loss).abs() <= 1e-9 * rc.loss.abs(), "{method:?} every {every:?}, batch {b}: loss {} vs {}", rc.loss, rg.loss);
        assert_eq!(rc.accuracy, rg.accuracy);
        for ((n, a), (_, c)) in rc.rates.iter().zip(&rg.rates) {
            assert!((a - c).abs() <= 1e-9 * a.abs().max(1.0), "{n}: {a} vs {c}");
        }
    }
    for ((n, a), (_, b)) in w_cpu.iter().zip(&w_gpu) {
        let moved = a.iter().zip(weights_of(&cpu0, &trainable).iter().find(|(m, _)| m == n).unwrap().1.iter()).any(|(x, y)| x != y);
        assert!(moved, "{n} did not change: the test shows nothing");
        let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-8, "{method:?} every {every:?}, {n}: weights differ by {diff:e}");
    }
    // Held-out evaluation with the trained weights, on the training network.
    let test = || RandomSpikes::new(25, batch, 3, 2, 0.3, 99);
    let mut plain = Network::<f64>::build(&p, &p.networks[0], &Options { learning: false, ..opts }, &InterpFactory).unwrap();
    let ec = evaluate(&mut plain, &w_cpu, &mut test(), &labels).unwrap();
    let eg = evaluate(&mut gpu.net, &w_gpu, &mut test(), &labels).unwrap();
    assert!(ec.loss > 0.0 && (ec.loss - eg.loss).abs() <= 1e-9 * ec.loss, "held-out loss {} vs {}", ec.loss, eg.loss);
    assert_eq!(ec.accuracy, eg.accuracy);
}

/// The device calls of one ES-D-RTRL and one BPTT training step of a small recurrent
/// network, call by call (an insta snapshot, reviewed like code): what runs per step
/// and in which order, with grids, argument buffers and GEMM shapes.
#[test]
fn schedule_of_one_training_step() {
    let text = r#"import "stdlib/lif.snn"
network tiny {
    dt = 1 ms
    input x: 3
    layer rec = LIF[4]
    readout out = Linear[2]
    connect x -> rec.I dense trainable init normal(0, 2) as W_in
    connect rec -> rec.I dense trainable init normal(0, 1) as W_rec
    connect rec -> out dense trainable init normal(0, 1) as W_out
}"#;
    let p = program(text);
    let opts = Options { batch: 2, seed: 1, learning: true, ..Options::default() };
    let trainable: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    let mut out = String::new();
    let data = || RandomSpikes::new(3, 2, 3, 2, 0.5, 3);
    for method in [Method::EsDRtrl { decay: 0.9 }, Method::Bptt] {
        let host = Network::<f32>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
        let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
        gpu.set_window(3).unwrap();
        let mut grad = GpuGradient::new(&mut gpu, &trainable, method).unwrap();
        // Call by call (BPTT's windows always run so: its tape grows on the host).
        grad.set_graphs(false);
        gpu.dev.log.clear();
        grad.run(&mut gpu, &mut data()).unwrap();
        out.push_str(&format!("# {method:?}, one window of 3 steps (T = 3, batch 2, squared error), call by call\n"));
        let lines: Vec<String> = gpu.dev.log.iter().map(|c| gpu.dev.render(c)).collect();
        for l in &lines {
            out.push_str(l);
            out.push('\n');
        }
        // The sequence stays on the device: between the window's inputs, targets and masks
        // (drawn there) and its read-backs (status, loss, gradients) nothing is copied.
        let first_step = lines.iter().position(|l| l.starts_with("snnc_step")).unwrap();
        let last_step = lines.iter().rposition(|l| l.starts_with("snnc_step") || l.starts_with("gemm")).unwrap();
        let inside: Vec<&String> = lines[first_step..first_step.max(lines.iter().position(|l| l.starts_with("download")).unwrap())]
            .iter()
            .filter(|l| l.starts_with("upload") || l.starts_with("download"))
            .collect();
        assert!(inside.is_empty(), "{method:?}: transfers inside the window: {inside:?}");
        // RandomSpikes: drawn on the device, a launch per window and nothing uploaded.
        assert!(lines[..first_step].iter().filter(|l| l.starts_with("snnc_random_spikes")).count() == 1, "{method:?}: x, target and mask drawn once");
        assert!(!lines.iter().any(|l| l.starts_with("upload")), "{method:?}: nothing uploaded");
        assert!(lines[last_step..].iter().all(|l| !l.starts_with("upload")), "{method:?}: nothing uploaded after the last step");
        if method == Method::Bptt {
            continue;
        }
        // The same window recorded as a graph, then, for the next batch, replayed: the
        // recording holds exactly the calls made one by one above.
        let window_calls = lines[..lines.iter().position(|l| l == "download status").unwrap()]
            .iter()
            .skip_while(|l| !l.starts_with("snnc_random_spikes"))
            .skip(1)
            .count();
        grad.set_graphs(true);
        for batch in 0..2 {
            gpu.reset().unwrap();
            gpu.dev.log.clear();
            grad.run(&mut gpu, &mut data()).unwrap();
            out.push_str(&format!("# {method:?}, the same window as a graph, batch {batch}\n"));
            for c in &gpu.dev.log {
                out.push_str(&gpu.dev.render(c));
                out.push('\n');
            }
        }
        assert!(out.contains(&format!("capture graph 0 ({window_calls} calls)")), "{out}");
    }
    insta::assert_snapshot!(out);
}

/// The device calls of one ES-D-RTRL and one BPTT training step of the same network with
/// a sparse recurrent projection (an insta snapshot, reviewed like code): its gradient
/// products are `snnc_sparse_outer` over its synapses (a GEMM for the dense ones), the
/// signal goes back through it with `snnc_sparse_back`, its gradient is 1 x nnz.
#[test]
fn schedule_of_one_sparse_training_step() {
    let text = r#"import "stdlib/lif.snn"
network tiny {
    dt = 1 ms
    input x: 3
    layer rec = LIF[4]
    readout out = Linear[2]
    connect x -> rec.I dense trainable init normal(0, 2) as W_in
    connect rec -> rec.I sparse p = 0.5 trainable init normal(0, 1) as W_rec
    connect rec -> out dense trainable init normal(0, 1) as W_out
}"#;
    let p = program(text);
    let opts = Options { batch: 2, seed: 1, learning: true, ..Options::default() };
    let trainable: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    let mut out = String::new();
    for method in [Method::EsDRtrl { decay: 0.9 }, Method::Bptt] {
        let host = Network::<f32>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
        let nnz = host.trainable("W_rec").unwrap().len();
        let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
        gpu.set_window(2).unwrap();
        let mut grad = GpuGradient::new(&mut gpu, &trainable, method).unwrap();
        grad.set_graphs(false);
        gpu.dev.log.clear();
        let g = grad.run(&mut gpu, &mut RandomSpikes::new(2, 2, 3, 2, 0.5, 3)).unwrap();
        assert_eq!(g.get("W_rec").unwrap().dim(), (1, nnz), "{method:?}");
        out.push_str(&format!("# {method:?}, one window of 2 steps (T = 2, batch 2, squared error), W_rec sparse ({nnz} synapses), call by call\n"));
        let lines: Vec<String> = gpu.dev.log.iter().map(|c| gpu.dev.render(c)).collect();
        assert!(lines.iter().any(|l| l.starts_with("snnc_sparse_outer ")), "{method:?}");
        for l in &lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    insta::assert_snapshot!(out);
}

/// Three batches of `method` (T = 10, windows of 4 steps) on a fresh emulated network:
/// per batch the loss, gradients and spike counts; and the graph replays. With
/// `set_window_at`, the network's window is set again (to 4) before that batch.
#[allow(clippy::type_complexity)]
fn three_batches(method: Method, graphs: bool, refuse: bool, set_window_at: Option<u64>) -> (Vec<(f64, Vec<(String, ndarray::Array2<f64>)>, Vec<u64>)>, u64) {
    let p = program(&stacked("L2.v", "LeakyReadout[2] { tau = 10 ms }"));
    let opts = Options { batch: 2, seed: 3, learning: true, ..Options::default() };
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let trainable = trainable_of(&host, &p);
    let mut dev = EmuDevice::new(Target::Sm80);
    dev.refuse_graphs = refuse;
    let mut gpu = GpuNetwork::new(host, dev).unwrap();
    gpu.set_window(4).unwrap();
    let mut grad = GpuGradient::new(&mut gpu, &trainable, method).unwrap();
    grad.set_graphs(graphs);
    let mut out = Vec::new();
    for b in 0..3 {
        if set_window_at == Some(b) {
            gpu.set_window(4).unwrap();
        }
        gpu.reset().unwrap();
        let g = grad.run(&mut gpu, &mut RandomSpikes::new(10, 2, 5, 2, 0.4, 20 + b)).unwrap();
        let spikes: Vec<u64> = gpu.host.pops.iter().map(|p| p.spike_count).collect();
        out.push((g.loss, g.total, spikes));
    }
    assert_eq!(grad.graphs_off().is_some(), refuse);
    (out, gpu.counts().replays)
}

/// Windows replayed as recorded graphs give the calls' results: gradients, loss and
/// spike counts equal (bit for bit) those of the same batches run call by call, in
/// ES-D-RTRL and D-RTRL (whose exact traces swap buffers every step), over windows of
/// 4 steps with a short last one (T = 10) and three batches (the later ones replay).
#[test]
fn recorded_windows_replay_as_the_calls_run() {
    for method in [Method::EsDRtrl { decay: 0.8 }, Method::DRtrl] {
        // Call by call; recorded and replayed; and on a device that refuses to record
        // (the gradient puts its view back and runs the window call by call).
        let (calls, no_replays) = three_batches(method, false, false, None);
        let (replayed, replays) = three_batches(method, true, false, None);
        let (refused, refused_replays) = three_batches(method, true, true, None);
        assert_eq!((no_replays, replays, refused_replays), (0, 9, 0), "{method:?}: 3 windows x 3 batches");
        assert_eq!(calls, replayed, "{method:?}");
        assert_eq!(calls, refused, "{method:?}");
        assert!(calls.iter().all(|(l, ..)| *l > 0.0));
    }
}

/// A recorded window holds the network's status buffer: after `set_window` (a new one,
/// even of the same length) the gradient records its windows again instead of replaying
/// stale ones, and gives what the calls give (spike counts included).
#[test]
fn recorded_windows_are_not_replayed_after_the_window_changes() {
    let method = Method::EsDRtrl { decay: 0.8 };
    let (calls, _) = three_batches(method, false, false, Some(2));
    let (replayed, replays) = three_batches(method, true, false, Some(2));
    // Batches 0 and 2 record (3 windows each, replayed once as recorded), batch 1 replays.
    assert_eq!(replays, 9);
    assert_eq!(calls, replayed);
    assert!(calls.iter().all(|(_, _, s)| s.iter().sum::<u64>() > 0), "the network fires");
}

/// The workloads of the hardware tests `cuda::gradients_gpu_equal_cpu` and
/// `cuda::sparse_gradients_gpu_equal_cpu` must give the CPU reference a non-zero
/// gradient for every weight (a silent layer made it compare zeros).
#[test]
fn the_gpu_gradient_workload_fires_and_gives_every_weight_a_gradient() {
    use crate::common::{gpu_grad_data, gpu_grad_program, gpu_grad_sparse_program};
    use snnc_runtime::kernels::JitFactory;
    for (what, p) in [("dense", gpu_grad_program()), ("sparse", gpu_grad_sparse_program())] {
        let (_, batch, ..) = crate::common::GPU_GRAD_DATA;
        let o = Options { batch, seed: 3, learning: true, ..Options::default() };
        let mut cpu = Network::<f32>::build(&p, &p.networks[0], &o, &JitFactory).unwrap();
        let trainable: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
        let outputs = cpu.pops[1].n;
        let g = gradient_of(&mut cpu, &trainable, &mut gpu_grad_data(outputs), Method::EsDRtrl { decay: 0.9 }, false).unwrap();
        let spikes = cpu.pops[0].spike_count;
        eprintln!("{what}: rec spikes {spikes}");
        assert!(spikes > 1000, "{what}: the recurrent layer fires: {spikes} spikes");
        for (n, w) in &g.total {
            let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!(norm > 0.0, "{what} {n}: zero gradient");
        }
        if what == "sparse" {
            assert_eq!(g.get("W_rec").unwrap().nrows(), 1, "W_rec is sparse: 1 x nnz");
        }
    }
}

/// A recurrent layer with white noise (its draws follow each element's index in the
/// whole batch), a leaky readout.
const NOISY: &str = include_str!("../data/noisy_ranks.snn");

/// The weights after each of 3 Adam steps (batch 5) and the batches' reports, of `size`
/// ranks (threads here, MPI's under `mpirun`) each training its share of every batch on
/// an emulated device of its own through [`RankTrainer`]; `size` 0: one device network
/// for the whole batch, without ranks. One (weights, reports) per rank.
type RankRun = (Vec<(String, ndarray::Array2<f64>)>, Vec<snnc_runtime::train::BatchReport>);

fn train_on_gpu_ranks(p: &Program, method: Method, every: Option<usize>, size: usize) -> Vec<RankRun> {
    use crate::common::Threads;
    use snnc_runtime::engine::{Engine, Trainer};
    use snnc_runtime::train::ranks::{RankTrainer, share_of};
    use snnc_runtime::train::{Optimizer, OptimizerKind, train_batch, weights_of};
    let batch = 5;
    let opts = |b: usize| Options { batch: b, seed: 4, learning: true, ..Options::default() };
    let trainable = ["W_in", "W_rec", "W_out"].map(String::from);
    let labels = [0, 1, 0, 1, 1];
    let run = |trainer: &mut dyn Trainer<f64>, start: &Network<f64>| -> RankRun {
        let mut w = weights_of(start, &trainable);
        let mut opt = Optimizer::new(OptimizerKind::Adam, 0.05, None);
        let reports = (0..3).map(|b| train_batch(trainer, &mut w, &mut RandomSpikes::new(25, batch, 3, 2, 0.3, 10 + b), &labels, &mut opt, every).unwrap()).collect();
        (w, reports)
    };
    let engine = |b: usize| {
        let host = Network::<f64>::build(p, &p.networks[0], &opts(b), &InterpFactory).unwrap();
        let mut net = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
        let learner = GpuGradient::new(&mut net, &trainable, method).unwrap();
        Engine { net, learner }
    };
    if size == 0 {
        let mut one = engine(batch);
        let start = Network::<f64>::build(p, &p.networks[0], &opts(batch), &InterpFactory).unwrap();
        return vec![run(&mut one, &start)];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = Threads::world(size)
            .into_iter()
            .map(|ex| {
                let (engine, run) = (&engine, &run);
                s.spawn(move || {
                    let (_, share) = share_of(batch, ex.rank, size).unwrap();
                    let start = Network::<f64>::build(p, &p.networks[0], &opts(share), &InterpFactory).unwrap();
                    let mut ranks = RankTrainer::new(engine(share), &ex);
                    run(&mut ranks, &start)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Data-parallel training of the GPU engine (emulated): 2 and 3 ranks, each with its
/// share of every batch (5 = 3 + 2 = 2 + 2 + 1) on a device of its own, the gradients
/// summed over the ranks, take the Adam steps of one device training the whole batch
/// (f64, to 1e-12), with the same losses, accuracies and rates; every rank holds the
/// same weights, bit for bit. The layer's noise makes a rank's share draw what the whole
/// batch draws for those elements; also with updates within the sequence and with BPTT.
#[test]
fn gpu_ranks_train_as_one_device() {
    let p = program(NOISY);
    for (method, every) in [(Method::EsDRtrl { decay: 0.9 }, None), (Method::EsDRtrl { decay: 0.9 }, Some(10)), (Method::Bptt, None)] {
        let one = train_on_gpu_ranks(&p, method, every, 0).remove(0);
        let start = Network::<f64>::build(&p, &p.networks[0], &Options { batch: 1, seed: 4, learning: true, ..Options::default() }, &InterpFactory).unwrap();
        for (n, w) in &one.0 {
            let w0 = start.trainable(n).unwrap();
            assert!(w.iter().zip(w0.iter()).any(|(a, b)| a != b), "{n} did not move: the test shows nothing");
        }
        for size in [2, 3] {
            let ranks = train_on_gpu_ranks(&p, method, every, size);
            for (r, (w, reports)) in ranks.iter().enumerate() {
                let what = format!("{method:?} every {every:?}, {size} ranks, rank {r}");
                for ((n, a), (_, b)) in one.0.iter().zip(w) {
                    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    let diff = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
                    assert!(diff <= 1e-12 * scale, "{what}, {n}: weights differ by {diff:e} of {scale:e}");
                    assert!(b.iter().zip(ranks[0].0.iter().find(|(m, _)| m == n).unwrap().1.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "{what}, {n}: not rank 0's weights");
                }
                for (b, (x, y)) in one.1.iter().zip(reports).enumerate() {
                    assert!((x.loss - y.loss).abs() <= 1e-12 * x.loss.abs(), "{what}, batch {b}: loss {} vs {}", x.loss, y.loss);
                    assert_eq!(x.accuracy, y.accuracy, "{what}, batch {b}");
                    assert_eq!(x.rates.len(), y.rates.len());
                    for ((n, a), (_, c)) in x.rates.iter().zip(&y.rates) {
                        assert!((a - c).abs() <= 1e-12 * a.abs().max(1.0), "{what}, batch {b}, {n}: rate {a} vs {c}");
                    }
                }
            }
        }
    }
}

/// A device trainer runs the batch its network was made for, and says so otherwise.
#[test]
fn a_device_trainer_refuses_another_batch() {
    use snnc_runtime::engine::{Engine, Trainer};
    let p = program(NOISY);
    let trainable = ["W_in", "W_rec", "W_out"].map(String::from);
    let host = Network::<f64>::build(&p, &p.networks[0], &Options { batch: 2, seed: 4, learning: true, ..Options::default() }, &InterpFactory).unwrap();
    let w = snnc_runtime::train::weights_of(&host, &trainable);
    let mut net = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let learner = GpuGradient::new(&mut net, &trainable, Method::Bptt).unwrap();
    let mut e = Engine { net, learner };
    let err = Trainer::<f64>::start(&mut e, 3, false, &w).unwrap_err();
    assert!(err.to_string().contains("a batch of 3 on a network made for a batch of 2"), "{err}");
    Trainer::<f64>::start(&mut e, 2, false, &w).unwrap();
}

/// A sequence as it is, filled on the host (it names no draws the device could make).
struct OnHost<S>(S);

impl<S: snnc_runtime::learn::Sequence> snnc_runtime::learn::Sequence for OnHost<S> {
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
        self.0.fill(t, x, target)
    }
    fn loss(&self) -> snnc_runtime::learn::Loss {
        self.0.loss()
    }
    fn mask(&self, t: usize, mask: &mut [f64]) {
        self.0.mask(t, mask)
    }
}

/// `RandomSpikes` drawn on the device (`snnc_random_spikes`: Philox4x32-10 in PTX, run
/// by the PTX interpreter) is the host's, bit for bit: the same gradients, loss and
/// evidence as the same windows filled on the host and uploaded, in f32 and f64, with
/// five inputs (blocks of four split across batch rows) and a short last window; and
/// the device's windows upload nothing.
#[test]
fn random_spikes_drawn_on_the_device_are_the_hosts() {
    use snnc_runtime::learn::Sequence;
    fn run<T: Float>(p: &Program) {
        let opts = Options { batch: 3, seed: 4, learning: true, ..Options::default() };
        let trainable = trainable_of(&Network::<f64>::build(p, &p.networks[0], &opts, &InterpFactory).unwrap(), p);
        let host = Network::<T>::build(p, &p.networks[0], &opts, &InterpFactory).unwrap();
        let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
        gpu.set_window(8).unwrap();
        let mut grad = GpuGradient::new(&mut gpu, &trainable, Method::EsDRtrl { decay: 0.9 }).unwrap();
        let data = || RandomSpikes::new(43, 3, 5, 3, 0.3, 6);
        assert!(data().device_draws().is_some() && OnHost(data()).device_draws().is_none());
        let before = gpu.counts();
        let drawn = grad.run(&mut gpu, &mut data()).unwrap();
        let uploads = gpu.counts().since(&before).uploads;
        gpu.reset().unwrap();
        let filled = grad.run(&mut gpu, &mut OnHost(data())).unwrap();
        assert_eq!(drawn.loss.to_bits(), filled.loss.to_bits());
        assert!(drawn.total == filled.total, "the gradients differ");
        assert!(drawn.evidence == filled.evidence);
        let zero: Vec<&str> = drawn.total.iter().filter(|(_, g)| g.iter().all(|&v| v == 0.0)).map(|(n, _)| n.as_str()).collect();
        assert!(zero.is_empty(), "zero gradients: {zero:?}");
        assert_eq!(uploads, 0, "drawn on the device: nothing uploaded");
    }
    let p = program(&stacked("L2", "Linear[3]"));
    run::<f32>(&p);
    run::<f64>(&p);
}

/// A delayed match-to-sample batch drawn on the device (`snnc_dms`: the trials' rates
/// and labels uploaded once per batch, the Poisson inputs, one-hot targets and answer
/// masks drawn there) is the host's, bit for bit: the same cross-entropy gradients, loss
/// and evidence as the windows filled on the host, for two batches (new trials, the
/// tables uploaded again) and a short last window; nothing else uploaded.
#[test]
fn dms_drawn_on_the_device_is_the_hosts() {
    use snnc_runtime::learn::Sequence;
    use snnc_runtime::train::tasks::{Dms, Task};
    let p = program(
        r#"import "stdlib/lif.snn"
network dms {
    dt = 20 ms
    input x: 100
    layer rec = LIF[8] { tau = 100 ms }
    readout out = Linear[2]
    connect x -> rec.I dense trainable init normal(0, 0.8) as W_in
    connect rec -> rec.I dense trainable init normal(0, 0.3) as W_rec
    connect rec -> out dense trainable init normal(0, 1) as W_out
}"#,
    );
    let opts = Options { batch: 3, seed: 1, learning: true, ..Options::default() };
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let trainable: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    gpu.set_window(16).unwrap();
    let mut grad = GpuGradient::new(&mut gpu, &trainable, Method::EsDRtrl { decay: 0.9 }).unwrap();
    // 0.1 s fixation, 0.5 s sample, 0.2 s delay, 0.5 s test at 20 ms: 65 steps.
    let mut task = Dms::new(0.02, 0.2, 3, 7);
    assert_eq!(task.steps(), 65);
    for batch in 0..2 {
        assert!(task.device_draws().is_some() && OnHost(task.clone()).device_draws().is_none());
        gpu.reset().unwrap();
        let before = gpu.counts();
        let drawn = grad.run(&mut gpu, &mut task.clone()).unwrap();
        let uploads = gpu.counts().since(&before).uploads;
        gpu.reset().unwrap();
        let filled = grad.run(&mut gpu, &mut OnHost(task.clone())).unwrap();
        assert_eq!(drawn.loss.to_bits(), filled.loss.to_bits(), "batch {batch}");
        assert!(drawn.total == filled.total, "batch {batch}: the gradients differ");
        assert!(drawn.evidence == filled.evidence, "batch {batch}");
        assert!(drawn.loss > 0.0 && drawn.total.iter().all(|(_, g)| g.iter().any(|&v| v != 0.0)), "batch {batch}");
        // The first batch uploads its tables (rates, labels); the second its own.
        assert_eq!(uploads, 2, "batch {batch}: the trial tables only");
        task.next_batch();
    }
}
