//! The GPU runtime without a GPU: networks stepped through [`GpuNetwork`] on the
//! [`EmuDevice`], which records every device call and executes it (the step kernels'
//! emitted instruction streams in their emulator, the propagation kernels' PTX text in
//! an interpreter with bounds-checked memory, GEMM in cuBLAS's column-major
//! convention), compared with the CPU runtime; and the schedule of one step, call by call.
use crate::common::{cpu_and_replayed, emulated, program};
use snnc_compiler::SourceMap;
use snnc_compiler::backend::ptx::Target;
use snnc_compiler::sema::{self, Init};
use snnc_runtime::connectivity::fixed_probability;
use snnc_runtime::gpu::{Call, EmuDevice, GpuNetwork, KArg};
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::network::{Network, Options};
use snnc_runtime::propagate::{self, SparseRows};
use snnc_runtime::rng::Rng;

const SMALL_COBA: &str = include_str!("../data/coba_small_varied_g.snn");

/// Every kind of projection and source: dense from an input, sparse from an input (its
/// own spike list), one-to-one with a delay, recurrent sparse with a delay from a later
/// population, a Linear readout, a drive, a per-neuron param and noise (Philox draws in
/// the step kernel).
const MIXED: &str = include_str!("../data/mixed_small.snn");

/// Bernoulli input spikes (deterministic).
fn input(step: usize, n: usize) -> Vec<f64> {
    let r = Rng::new(5);
    (0..n).map(|j| if r.uniform(1, (step * n + j) as u64, 0) < 0.3 { 1.0 } else { 0.0 }).collect()
}

/// Steps the CPU network and the emulated GPU one side by side: identical spikes every
/// step, states (and readout outputs) within `tol` of their scale.
fn compare(text: &str, steps: usize, tol: f64, with_input: bool) -> f64 {
    let p = program(text);
    let o = Options { seed: 3, ..Options::default() };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = emulated::<f64>(&p, &o);
    let mut spikes = 0.0;
    for t in 0..steps {
        let x = input(t, 20);
        let ext: Vec<&[f64]> = if with_input { vec![&x] } else { vec![] };
        cpu.step(&ext).unwrap();
        gpu.step(&ext).unwrap();
        gpu.fetch(true).unwrap();
        for (a, b) in cpu.pops.iter().zip(&gpu.host.pops) {
            assert_eq!(a.spikes(), b.spikes(), "spikes of {} at step {t}", a.name);
            assert_eq!(a.active(), b.active(), "active lists of {} at step {t}", a.name);
            assert_eq!(a.spike_count, b.spike_count, "spike count of {} at step {t}", a.name);
            for (k, (sa, sb)) in a.states.iter().zip(&b.states).enumerate() {
                let scale = sa.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
                for (i, (va, vb)) in sa.iter().zip(sb).enumerate() {
                    assert!((va - vb).abs() <= tol * scale, "{}.{} [{i}] at step {t}: cpu {va} gpu {vb}", a.name, a.state_names[k]);
                }
            }
            spikes += a.spikes().iter().sum::<f64>();
        }
    }
    spikes
}

#[test]
fn emulated_gpu_coba_matches_cpu_f64() {
    let spikes = compare(SMALL_COBA, 300, 1e-10, false);
    assert!(spikes > 50.0, "the network fires ({spikes} spikes)");
}

#[test]
fn emulated_gpu_mixed_network_matches_cpu_f64() {
    let spikes = compare(MIXED, 120, 1e-10, true);
    assert!(spikes > 50.0, "the network fires ({spikes} spikes)");
}

#[test]
fn emulated_gpu_readout_matches_cpu() {
    // The Linear readout's output after a dense GEMM (cuBLAS convention) equals ndarray's.
    let p = program(MIXED);
    let o = Options { seed: 3, ..Options::default() };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = emulated::<f64>(&p, &o);
    let out = cpu.pops.iter().position(|p| p.name == "out").unwrap();
    let mut nonzero = 0;
    for t in 0..60 {
        let x = input(t, 20);
        cpu.step(&[&x]).unwrap();
        gpu.step(&[&x]).unwrap();
        let got = download_output(&mut gpu, out);
        for (a, b) in cpu.pops[out].output.iter().zip(&got) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "readout at step {t}: cpu {a} gpu {b}");
        }
        nonzero += got.iter().filter(|v| **v != 0.0).count();
    }
    assert!(nonzero > 10, "the readout sees spikes");
}

/// The readout output buffer, found by its label in the emulator.
fn download_output(gpu: &mut GpuNetwork<f64, EmuDevice>, pop: usize) -> Vec<f64> {
    let name = format!("{}.output", gpu.host.pops[pop].name);
    let buf = gpu
        .dev
        .log
        .iter()
        .find_map(|c| match c {
            Call::Alloc { buf, label, .. } if *label == name => Some(*buf),
            _ => None,
        })
        .expect("an output buffer");
    let mut v = vec![0.0; gpu.dev.len(buf)];
    snnc_runtime::gpu::Device::download(&mut gpu.dev, buf, snnc_runtime::gpu::HostMut::F64(&mut v)).unwrap();
    v
}

#[test]
fn emulated_gpu_coba_f32_tracks_cpu() {
    // f32 kernels (`.ftz`, f32 arithmetic) against the CPU runtime in f32 with the
    // interpreter (f64 arithmetic, rounded on store): close, not bit-identical, so the
    // first steps agree and the rates stay close.
    let p = program(SMALL_COBA);
    let o = Options { seed: 3, ..Options::default() };
    let mut cpu = Network::<f32>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = emulated::<f32>(&p, &o);
    for t in 0..300 {
        cpu.step(&[]).unwrap();
        gpu.step(&[]).unwrap();
        if t < 50 {
            gpu.fetch(true).unwrap();
            for (a, b) in cpu.pops.iter().zip(&gpu.host.pops) {
                assert_eq!(a.spikes(), b.spikes(), "spikes of {} at step {t}", a.name);
                let (va, vb) = (&a.states[0], &b.states[0]);
                for (x, y) in va.iter().zip(vb) {
                    assert!((x - y).abs() <= 1e-4 * x.abs().max(1e-3), "{}.v at step {t}: {x} vs {y}", a.name);
                }
            }
        }
    }
    // The spike counters are current after the window's read-back.
    gpu.flush().unwrap();
    for (a, b) in cpu.pops.iter().zip(&gpu.host.pops) {
        let (ca, cb) = (a.spike_count as f64, b.spike_count as f64);
        assert!(ca >= 10.0 && (ca - cb).abs() <= 0.1 * ca, "{}: {ca} CPU spikes, {cb} GPU", a.name);
    }
}

#[test]
fn non_finite_state_is_reported_as_on_the_cpu() {
    let text = r#"
neuron Grow {
    param tau: ms = 1 ms
    state v = 1.0
    dv/dt = v / tau
}
network blowup { dt = 1 ms
    layer G = Grow[3] }"#;
    let p = program(text);
    let o = Options::default();
    let mut cpu = Network::<f32>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = emulated::<f32>(&p, &o);
    let run = |step: &mut dyn FnMut() -> Result<(), RuntimeError>| (0..1000).find_map(|_| step().err());
    let e_cpu = run(&mut || cpu.step(&[])).expect("the CPU run overflows");
    let e_gpu = run(&mut || gpu.step(&[])).expect("the GPU run overflows");
    assert!(matches!(e_cpu, RuntimeError::NonFinite { .. }), "{e_cpu}");
    assert_eq!(e_gpu, e_cpu);
}

#[test]
fn schedule_of_one_step() {
    let text = r#"
import "stdlib/lif.snn"
network tiny {
    dt = 1 ms
    input x: 3
    layer A = LIF[4]
    layer B = LIF[2]
    drive A.I = 0.1
    connect x -> A.I dense init normal(0, 0.5) as in_a
    connect A -> B.I sparse p = 0.5 weight 0.3 delay 2 ms as a_b
}"#;
    let p = program(text);
    let o = Options { batch: 2, seed: 1, ..Options::default() };
    let mut gpu = emulated::<f32>(&p, &o);
    gpu.dev.log.clear();
    gpu.step(&[&[1.0; 6]]).unwrap();
    let got: Vec<String> = gpu.dev.log.iter().map(|c| gpu.dev.render(c)).collect();
    let seed_a = 1 ^ u64::from(snnc_runtime::rng::stream_id("A"));
    let seed_b = 1 ^ u64::from(snnc_runtime::rng::stream_id("B"));
    let want = [
        "upload input x".to_string(),
        // The first step of a window clears its spike totals and non-finite flags.
        "zero status".into(),
        // Population A: the drive is its input's first write (a copy: no clearing),
        // then x W by cuBLAS adds (row-major y (2 x 4) += x (2 x 3) W (3 x 4),
        // column-major m = 4, n = batch, k = 3).
        "snnc_copy 1x1x256 (A.drive0[8], A.I[8], 8)".into(),
        "gemm m=4 n=2 k=3 A=in_a.w lda=4 B=input x ldb=3 C=A.I ldc=4 alpha=1 beta=1".into(),
        // The step checks the states it writes: its flag of step 0 follows the spike
        // totals (two slots x batch 2) in the status buffer. (LIF draws no random numbers
        // and reads no time: no clock.) It lists A's spikes: rows of 4 per batch element,
        // counted at slot 0 (even steps; slot 2 on odd ones, which it clears), and added
        // to the window's totals (slot 0).
        format!("snnc_step 1x1x256 (A.v[8], A.I[8], A.spikes[8], 8, 0, {seed_a}, 0, 0, status[516], 4, A.spike_list[8], lens[8], status[516], 0, 4, 0, 4)"),
        // Population B: A's spikes into the ring slot of step 0 + 2 (of 3), then slot 0
        // arrives, added to B.I (zero since the network was built: not cleared).
        "snnc_sparse_events 1x2x256 (a_b.row_ptr[5], a_b.col[COL], a_b.w[COL], A.spike_list[8], lens[8], 0, A.spikes[8], a_b.delay2[4], 4, 2)".into(),
        "snnc_add_clear 1x1x256 (a_b.delay0[4], B.I[4], 4)".into(),
        format!("snnc_step 1x1x256 (B.v[4], B.I[4], B.spikes[4], 4, 0, {seed_b}, 0, 0, status[516], 5, B.spike_list[4], lens[8], status[516], 2, 6, 2, 2)"),
        // Nothing comes back: the status is read once per window (256 steps).
    ];
    let nnz = gpu.host.n_synapses() - 12;
    let want: Vec<String> = want.iter().map(|s| s.replace("COL", &nnz.to_string())).collect();
    assert_eq!(got, want, "got:\n{}", got.join("\n"));
    // The second step emits into slot (1 + 2) mod 3 = 0 and takes slot 1.
    gpu.dev.log.clear();
    gpu.step(&[&[0.0; 6]]).unwrap();
    let got: Vec<String> = gpu.dev.log.iter().map(|c| gpu.dev.render(c)).collect();
    assert!(got.iter().any(|l| l.starts_with("snnc_sparse_events") && l.contains("a_b.delay0[4]")), "{got:?}");
    assert!(got.iter().any(|l| l.starts_with("snnc_add_clear") && l.contains("a_b.delay1[4]")), "{got:?}");
    // B's step 0 cleared B.I once it had read it: the atomic adds of step 1 need no
    // clearing call.
    assert!(!got.iter().any(|l| l.starts_with("zero")), "{got:?}");
    assert_eq!(gpu.host.step_index, 2);
    // The second step of the window writes its flags after the first step's; it
    // appends A's spikes at the odd steps' count (slot 2) and clears slot 0, and the
    // projection from A reads slot 2.
    assert!(got.iter().any(|l| l.starts_with("snnc_step 1x1x256 (A.v[8]") && l.ends_with("status[516], 6, A.spike_list[8], lens[8], status[516], 4, 0, 0, 4)")), "{got:?}");
    assert!(got.iter().any(|l| l.starts_with("snnc_sparse_events") && l.contains("lens[8], 2, A.spikes[8]")), "{got:?}");
    // A window of 3 steps: the third step ends it with the one read-back.
    gpu.set_window(3).unwrap();
    for s in 0..4 {
        gpu.dev.log.clear();
        gpu.step(&[&[0.0; 6]]).unwrap();
        let got: Vec<String> = gpu.dev.log.iter().map(|c| gpu.dev.render(c)).collect();
        let transfers: Vec<&String> = got.iter().filter(|l| l.starts_with("upload") || l.starts_with("download")).collect();
        let want: &[&str] = if s == 2 { &["upload input x", "download status"] } else { &["upload input x"] };
        assert_eq!(transfers, want, "step {s} of a window of 3");
    }
}

/// A whole window of a simulation (COBA, 200 neurons, a window of 3 steps), call by call:
/// per step and population the drive, the sparse deliveries, the step (with its
/// non-finite check) and the spike list; nothing crosses to or from the host until the
/// window's one status read-back.
#[test]
fn schedule_of_a_simulation_window() {
    let p = program(SMALL_COBA);
    let mut gpu = emulated::<f32>(&p, &Options { seed: 3, ..Options::default() });
    gpu.set_window(3).unwrap();
    let before = gpu.counts();
    gpu.dev.log.clear();
    for _ in 0..3 {
        gpu.step(&[]).unwrap();
    }
    let got: Vec<String> = gpu.dev.log.iter().map(|c| gpu.dev.render(c)).collect();
    let transfers: Vec<&String> = got.iter().filter(|l| l.starts_with("upload") || l.starts_with("download")).collect();
    assert_eq!(transfers, ["download status"], "one read-back per window");
    assert_eq!(got.last().map(String::as_str), Some("download status"));
    let per_step = gpu.counts().since(&before);
    assert_eq!(per_step.downloads, 1);
    assert_eq!(per_step.uploads, 0);
    insta::assert_snapshot!(got.join("\n"));
}

/// No external input; noise in a step (Philox, keyed by the step the clock gives), a
/// time-dependent drive, a delayed recurrent projection (a ring of 3: three phases), a
/// dense one and one-to-one.
const FREE_RUNNING: &str = r#"
import "stdlib/lif.snn"
neuron Noisy {
    param tau: ms = 5 ms
    state v = 0.0
    input I
    dv/dt = (-v + I + 3.0 * randn() + 0.5 * sin(t / tau)) / tau
    spike when v > 1.0
    reset v = 0.0
    method euler
}
network free {
    dt = 1 ms
    layer A = Noisy[30]
    layer B = LIF[20] { tau = 10 ms }
    drive A.I = 0.6
    connect A -> B.I sparse p = 0.3 weight 0.9
    connect B -> A.I sparse p = 0.3 weight 0.5 delay 2 ms
    connect A -> A.I dense init normal(0, 0.2)
    connect B -> B.I one_to_one weight 0.1
}"#;

/// `GpuNetwork::run` records a status window as a graph and replays it at later steps
/// (the steps read the device's clock): the CPU's spikes, its states to 1e-10 (the GEMM
/// and `sin` round apart), and bit for bit what the same steps made call by call give;
/// one host call and one read-back per replayed window.
#[test]
fn a_free_running_simulation_replays_recorded_windows() {
    let p = program(FREE_RUNNING);
    let o = Options { seed: 5, batch: 2, ..Options::default() };
    let steps = 8 * 12 + 5;
    let (cpu, mut gpu, c) = cpu_and_replayed(&p, &o, 8, steps);
    // Twelve windows: the first starts from cleared buffers, then three phases of the
    // ring are recorded once each and replayed; five single steps at the end.
    assert_eq!(c.replays, 12, "{c:?}");
    assert_eq!(c.uploads, 0, "{c:?}");
    assert_eq!(c.downloads, 12, "one read-back per window, the last 5 steps pending: {c:?}");
    gpu.fetch(true).unwrap();
    assert_eq!(gpu.host.step_index, steps as u64);
    for (a, b) in cpu.pops.iter().zip(&gpu.host.pops) {
        assert!(a.spike_count > 20, "{} fires ({})", a.name, a.spike_count);
        assert_eq!(a.spike_count, b.spike_count, "spike count of {}", a.name);
        assert_eq!(a.spikes(), b.spikes(), "spikes of {}", a.name);
        for (k, (sa, sb)) in a.states.iter().zip(&b.states).enumerate() {
            let scale = sa.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
            assert!(sa.iter().zip(sb).all(|(x, y)| (x - y).abs() <= 1e-10 * scale), "{}.{}", a.name, a.state_names[k]);
        }
    }
    let replayed: Vec<(u64, Vec<Vec<f64>>)> = gpu.host.pops.iter().map(|p| (p.spike_count, p.states.clone())).collect();
    // As many single steps from a reset: the same, bit for bit.
    gpu.reset().unwrap();
    for _ in 0..steps {
        gpu.step(&[]).unwrap();
    }
    gpu.fetch(true).unwrap();
    let single: Vec<(u64, Vec<Vec<f64>>)> = gpu.host.pops.iter().map(|p| (p.spike_count, p.states.clone())).collect();
    assert!(replayed == single, "replayed windows and single steps differ");
}

/// Spikes recorded on the device (`Simulation::advance_recorded`): every step's active
/// lists and time as the CPU's, read back a window at a time (the status and one record
/// per population per window, no transfer per step), with replayed windows.
#[test]
fn recorded_spikes_arrive_a_window_at_a_time_as_the_cpus() {
    use snnc_runtime::engine::Simulation;
    let p = program(FREE_RUNNING);
    let o = Options { seed: 5, batch: 2, ..Options::default() };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = emulated::<f64>(&p, &o);
    gpu.set_window(8).unwrap();
    let steps = 8 * 6 + 3;
    let mut want = Vec::new();
    for _ in 0..steps {
        cpu.step(&[]).unwrap();
        want.push((cpu.time(), cpu.pops.iter().map(|p| p.active().to_vec()).collect::<Vec<_>>()));
    }
    let before = gpu.counts();
    let mut got = Vec::new();
    gpu.advance_recorded(steps as u64, &[], &mut |net| {
        got.push((net.time(), net.pops.iter().map(|p| p.active().to_vec()).collect::<Vec<_>>()));
        Ok(())
    })
    .unwrap();
    let c = gpu.counts().since(&before);
    assert_eq!(got.len(), steps);
    assert!(got == want, "the recorded spikes differ from the CPU's");
    assert!(want.iter().map(|(_, a)| a.iter().flatten().map(Vec::len).sum::<usize>()).sum::<usize>() > 50, "the network fires");
    // Seven read-backs (six windows and the last three steps), each the status and two
    // records; the windows after the first replayed.
    assert_eq!((c.downloads, c.uploads), (21, 0), "{c:?}");
    assert!(c.replays >= 5, "{c:?}");
    assert_eq!(gpu.host.step_index, steps as u64);
    // Steps made one by one in between (and read by the caller) are not shown again.
    for _ in 0..3 {
        gpu.advance(&[]).unwrap();
        gpu.sync(false).unwrap();
    }
    let mut shown = Vec::new();
    gpu.advance_recorded(8, &[], &mut |net| {
        shown.push(net.step_index);
        Ok(())
    })
    .unwrap();
    let first = steps as u64 + 4;
    assert_eq!(shown, (first..first + 8).collect::<Vec<_>>());
    // An error of the recorder stops the run there.
    let mut seen = 0;
    let e = gpu.advance_recorded(20, &[], &mut |_| {
        seen += 1;
        if seen == 3 { Err(snnc_runtime::error::RuntimeError::Input("disk full".into())) } else { Ok(()) }
    });
    assert!(matches!(e, Err(snnc_runtime::error::RuntimeError::Input(_))), "{e:?}");
    assert_eq!(seen, 3);
}

/// States recorded on the device (`Simulation::advance_recorded` with states): every
/// step's `v` of both populations as the same device read step by step (`sync(true)`
/// after every step, bit for bit) and, with the spikes, as the CPU's (the spikes exactly,
/// the states to 1e-12: the device's `randn` and `sin` are not the CPU's to the bit), read
/// back a window at a time (the status, two spike records and two state records per
/// window: no transfer per step), the windows after the first replayed; then without
/// states, only the status and the spike records.
#[test]
fn recorded_states_arrive_a_window_at_a_time_as_step_by_step() {
    use snnc_runtime::engine::Simulation;
    let p = program(FREE_RUNNING);
    let o = Options { seed: 7, batch: 2, ..Options::default() };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut stepped = emulated::<f64>(&p, &o);
    let mut gpu = emulated::<f64>(&p, &o);
    gpu.set_window(8).unwrap();
    let v = |net: &Network<f64>, p: usize| net.pops[p].state_names.iter().position(|s| s == "v").unwrap();
    let which = [(0, v(&cpu, 0)), (1, v(&cpu, 1))];
    type Seen = (u64, Vec<Vec<Vec<u32>>>, [Vec<f64>; 2]);
    let seen = |net: &Network<f64>| -> Seen { (net.step_index, net.pops.iter().map(|p| p.active().to_vec()).collect(), which.map(|(p, k)| net.pops[p].states[k].clone())) };
    let steps = 8 * 5 + 5;
    let (mut want, mut on_cpu) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        cpu.step(&[]).unwrap();
        on_cpu.push(seen(&cpu));
        stepped.advance(&[]).unwrap();
        stepped.sync(true).unwrap();
        want.push(seen(&stepped.host));
    }
    let before = gpu.counts();
    let mut got = Vec::new();
    gpu.advance_recorded(steps as u64, &which, &mut |net| {
        got.push(seen(net));
        Ok(())
    })
    .unwrap();
    let c = gpu.counts().since(&before);
    assert_eq!(got.len(), steps);
    assert!(got == want, "the recorded states differ from those read step by step");
    for (s, (g, w)) in got.iter().zip(&on_cpu).enumerate() {
        assert_eq!((g.0, &g.1), (w.0, &w.1), "step {s}: the spikes differ from the CPU's");
        for (a, b) in g.2.iter().zip(&w.2) {
            assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs().max(1.0)), "step {s}: the states differ from the CPU's");
        }
    }
    assert!(got.iter().any(|(_, _, st)| st[0].iter().any(|&x| x != 0.0)), "the states move");
    // Six read-backs (five windows and the last five steps), each the status, two spike
    // records and two state records.
    assert_eq!((c.downloads, c.uploads), (30, 0), "{c:?}");
    assert!(c.replays >= 4, "{c:?}");
    // Without states: the status and the spike records of one window.
    let at = gpu.counts();
    gpu.advance_recorded(8, &[], &mut |_| Ok(())).unwrap();
    assert_eq!(gpu.counts().since(&at).downloads, 3);
    // A state that is not there is an error; records past 512 MiB a window are not
    // made, and the states are then read after every step, the same values.
    assert!(gpu.record_states(&[(0, 9)]).is_err());
    let mut big = emulated::<f64>(&p, &o);
    big.set_window(1 << 21).unwrap();
    assert!(!big.record_states(&which).unwrap());
    let mut read = Vec::new();
    big.advance_recorded(5, &which, &mut |net| {
        read.push(seen(net));
        Ok(())
    })
    .unwrap();
    assert!(read[..] == want[..5], "the states read step by step differ");
}

/// A network with an external input, fed a window at a time
/// (`Simulation::advance_fed`): the inputs of up to a status window filled on the host
/// and uploaded in one copy, the steps made reading their slot, the spikes and a
/// recorded state shown step by step as the CPU's (the CPU fed step by step): one
/// upload (a partial window: one a step) and one read-back (status, a spike record, a
/// state record) per window; and without a recorder, the same steps and no records.
#[test]
fn inputs_fed_a_window_at_a_time_give_the_cpus_spikes() {
    use snnc_runtime::engine::Simulation;
    let p = program(
        r#"
import "stdlib/lif.snn"
network fed {
    dt = 1 ms
    input x: 7
    layer L = LIF[12] { tau = 5 ms }
    connect x -> L.I dense init normal(0.8, 0.5)
    connect L -> L.I sparse p = 0.3 weight 0.2
}"#,
    );
    let o = Options { seed: 3, batch: 2, ..Options::default() };
    // A spike train that depends on the step alone (what a window filled ahead needs).
    let train = |step: u64, x: &mut [Vec<f64>]| -> Result<(), snnc_runtime::error::RuntimeError> {
        for (j, v) in x[0].iter_mut().enumerate() {
            let h = (step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)) >> 40;
            *v = if h % 3 == 0 { 1.0 } else { 0.0 };
        }
        Ok(())
    };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let v = cpu.pops[0].state_names.iter().position(|s| s == "v").unwrap();
    let steps = 8 * 3 + 5;
    let mut want = Vec::new();
    cpu.advance_fed(steps, &mut |s, x| train(s, x), &[(0, v)], Some(&mut |net| {
        want.push((net.step_index, net.pops[0].active().to_vec(), net.pops[0].states[v].clone()));
        Ok(())
    }))
    .unwrap();
    assert!(want.iter().map(|w| w.1.iter().map(Vec::len).sum::<usize>()).sum::<usize>() > 10, "the layer fires");
    let mut gpu = emulated::<f64>(&p, &o);
    gpu.set_window(8).unwrap();
    let before = gpu.counts();
    let mut got = Vec::new();
    gpu.advance_fed(steps, &mut |s, x| train(s, x), &[(0, v)], Some(&mut |net| {
        got.push((net.step_index, net.pops[0].active().to_vec(), net.pops[0].states[v].clone()));
        Ok(())
    }))
    .unwrap();
    let c = gpu.counts().since(&before);
    assert_eq!(got.len(), want.len());
    for (s, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!((g.0, &g.1), (w.0, &w.1), "step {s}: the spikes differ from the CPU's");
        assert!(g.2.iter().zip(&w.2).all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0)), "step {s}: v differs from the CPU's");
    }
    // Four windows (three of 8 steps, one of 5): three downloads each, one upload per
    // whole window and one per step of the last (a slot each: nothing stale is copied);
    // the whole windows after the first replayed.
    assert_eq!((c.uploads, c.downloads), (3 + 5, 12), "{c:?}");
    assert!(c.replays >= 2, "{c:?}");
    // No recorder: the same steps, one upload a window and the status of each full one
    // (the last, partial window is read by the next read-back: `fetch` below).
    let mut plain = emulated::<f64>(&p, &o);
    plain.set_window(8).unwrap();
    let at = plain.counts();
    plain.advance_fed(steps, &mut |s, x| train(s, x), &[], None).unwrap();
    let c = plain.counts().since(&at);
    assert_eq!((c.uploads, c.downloads), (3 + 5, 3), "{c:?}");
    plain.fetch(true).unwrap();
    assert_eq!(plain.host.pops[0].spike_count, cpu.pops[0].spike_count);
}

/// The propagation kernels' PTX text, run by the emulated device, against the CPU
/// kernels of `runtime/src/propagate.rs`: spike lists, sparse events with grids from one
/// warp (striding over every spike) to more warps than spikes, one-to-one.
#[test]
fn propagation_kernels_match_the_cpu_kernels() {
    use snnc_compiler::backend::ptx::Precision;
    use snnc_compiler::backend::ptx::propagate::{NONZERO_LIST, ONE_TO_ONE, SPARSE_EVENTS};
    use snnc_runtime::gpu::{Device, Elem, Host, HostMut, Module};
    let rng = Rng::new(4);
    let (n_pre, n_post, batch) = (300, 170, 3);
    let csr = fixed_probability(n_pre, n_post, 0.08, false, &Init::Normal { mean: 0.0, std: 1.0 }, &rng, 2);
    let rows = SparseRows::from_csr(&csr, |w| w);
    let x: Vec<f64> = (0..batch * n_pre).map(|e| if rng.uniform(9, e as u64, 0) < 0.1 { 1.0 } else { 0.0 }).collect();
    let mut dev = EmuDevice::new(Target::Sm90);
    let m = dev.load(&Module::Propagate(Precision::F64, Target::Sm90)).unwrap();
    let up = |dev: &mut EmuDevice, elem: Elem, h: Host<'_>, label: &str| {
        let b = dev.alloc(elem, h.len(), label).unwrap();
        dev.upload(b, h).unwrap();
        b
    };
    let row_ptr: Vec<u32> = rows.row_ptr.iter().map(|&r| r as u32).collect();
    let (rp, col, w) = (
        up(&mut dev, Elem::U32, Host::U32(&row_ptr), "row_ptr"),
        up(&mut dev, Elem::U32, Host::U32(&rows.col), "col"),
        up(&mut dev, Elem::F64, Host::F64(rows.weight()), "w"),
    );
    let xb = up(&mut dev, Elem::F64, Host::F64(&x), "x");
    let list = dev.alloc(Elem::U32, batch * n_pre, "list").unwrap();
    // Slot 1 of two: the kernels index counts[slot * batch + b].
    let counts = dev.alloc(Elem::U32, 2 * batch, "counts").unwrap();
    // The window's totals already hold 5 spikes per batch element: the kernel adds.
    let totals = up(&mut dev, Elem::U32, Host::U32(&vec![5; 2 * batch]), "totals");
    let a = [KArg::Buf(xb), KArg::Buf(list), KArg::Buf(counts), KArg::Buf(totals), KArg::U64(1), KArg::U64(n_pre as u64)];
    dev.launch(m, NONZERO_LIST, (2, batch as u32), 256, &a).unwrap();
    let mut c = vec![0u32; 2 * batch];
    dev.download(counts, HostMut::U32(&mut c)).unwrap();
    let mut tot = vec![0u32; 2 * batch];
    dev.download(totals, HostMut::U32(&mut tot)).unwrap();
    let mut l = vec![0u32; batch * n_pre];
    dev.download(list, HostMut::U32(&mut l)).unwrap();
    let active: Vec<Vec<u32>> = (0..batch).map(|b| (0..n_pre).filter(|&i| x[b * n_pre + i] != 0.0).map(|i| i as u32).collect()).collect();
    for b in 0..batch {
        assert_eq!(c[b], 0, "slot 0 untouched");
        assert_eq!((tot[b], tot[batch + b]), (5, 5 + c[batch + b]), "totals of batch {b}");
        let mut got = l[b * n_pre..b * n_pre + c[batch + b] as usize].to_vec();
        got.sort();
        assert_eq!(got, active[b], "spike list of batch {b}");
    }
    for blocks in [1, 3, 1024] {
        for block in [32, 256] {
            let y = up(&mut dev, Elem::F64, Host::F64(&vec![0.25; batch * n_post]), "y");
            let a = [
                KArg::Buf(rp),
                KArg::Buf(col),
                KArg::Buf(w),
                KArg::Buf(list),
                KArg::Buf(counts),
                KArg::U64(1),
                KArg::Buf(xb),
                KArg::Buf(y),
                KArg::U64(n_pre as u64),
                KArg::U64(n_post as u64),
            ];
            dev.launch(m, SPARSE_EVENTS, (blocks, batch as u32), block, &a).unwrap();
            let mut got = vec![0.0; batch * n_post];
            dev.download(y, HostMut::F64(&mut got)).unwrap();
            for b in 0..batch {
                let mut want = vec![0.25; n_post];
                propagate::sparse_events(&rows, &active[b], &mut want);
                for (j, (g, v)) in got[b * n_post..(b + 1) * n_post].iter().zip(&want).enumerate() {
                    assert!((g - v).abs() < 1e-12, "batch {b} post {j}, {blocks} x {block}: {g} vs {v}");
                }
            }
        }
    }
    // One-to-one.
    let w1: Vec<f64> = (0..n_pre).map(|i| rng.normal(3, i as u64, 0)).collect();
    let xs: Vec<f64> = (0..batch * n_pre).map(|e| rng.normal(4, e as u64, 0)).collect();
    let (wb, xsb) = (up(&mut dev, Elem::F64, Host::F64(&w1), "w1"), up(&mut dev, Elem::F64, Host::F64(&xs), "xs"));
    let y = up(&mut dev, Elem::F64, Host::F64(&vec![1.0; batch * n_pre]), "y1");
    dev.launch(m, ONE_TO_ONE, (2, batch as u32), 256, &[KArg::Buf(wb), KArg::Buf(xsb), KArg::Buf(y), KArg::U64(n_pre as u64)]).unwrap();
    let mut got = vec![0.0; batch * n_pre];
    dev.download(y, HostMut::F64(&mut got)).unwrap();
    for b in 0..batch {
        let mut want = vec![1.0; n_pre];
        propagate::one_to_one(&w1, &xs[b * n_pre..(b + 1) * n_pre], &mut want);
        assert_eq!(&got[b * n_pre..(b + 1) * n_pre], want.as_slice());
    }
    // A launch that claims more elements than its buffers hold is caught, not run.
    let e = dev.launch(m, ONE_TO_ONE, (2, batch as u32), 256, &[KArg::Buf(wb), KArg::Buf(xsb), KArg::Buf(y), KArg::U64(n_pre as u64 + 1)]).unwrap_err();
    assert!(e.0.contains("element 300 of `w1`"), "{e}");
}

/// The training kernels of sparse projections' PTX text, run by the emulated device,
/// against their definitions (same order of operations, so equal bit for bit), on CSR
/// rows of which some are empty: the signal back through the synapses (overwriting and
/// accumulating), the gradient products at the synapses over several rows, and the
/// exact trace per synapse with K = 2 states.
#[test]
fn sparse_training_kernels_match_their_definitions() {
    use snnc_compiler::backend::ptx::Precision;
    use snnc_compiler::backend::ptx::propagate::{SPARSE_BACK, SPARSE_EXACT_TRACE, SPARSE_OUTER};
    use snnc_runtime::gpu::{Device, Elem, Host, HostMut, Module};
    let rng = Rng::new(7);
    let (n_pre, n_post, batch) = (120, 50, 3);
    let csr = fixed_probability(n_pre, n_post, 0.04, false, &Init::Normal { mean: 0.0, std: 1.0 }, &rng, 2);
    let rows = SparseRows::from_csr(&csr, |w| w);
    let nnz = rows.col.len();
    let row_of: Vec<u32> = (0..n_pre).flat_map(|i| std::iter::repeat_n(i as u32, rows.row_ptr[i + 1] - rows.row_ptr[i])).collect();
    assert!((0..n_pre).any(|i| rows.row_ptr[i] == rows.row_ptr[i + 1]), "some rows are empty");
    let vals = |stream: u32, n: usize| -> Vec<f64> { (0..n).map(|e| rng.normal(stream, e as u64, 0)).collect() };
    let mut dev = EmuDevice::new(Target::Sm80);
    let m = dev.load(&Module::Propagate(Precision::F64, Target::Sm80)).unwrap();
    let up = |dev: &mut EmuDevice, elem: Elem, h: Host<'_>, label: &str| {
        let b = dev.alloc(elem, h.len(), label).unwrap();
        dev.upload(b, h).unwrap();
        b
    };
    let get = |dev: &mut EmuDevice, b, n: usize| {
        let mut v = vec![0.0; n];
        dev.download(b, HostMut::F64(&mut v)).unwrap();
        v
    };
    let row_ptr: Vec<u32> = rows.row_ptr.iter().map(|&r| r as u32).collect();
    let (rp, col, w, row) = (
        up(&mut dev, Elem::U32, Host::U32(&row_ptr), "row_ptr"),
        up(&mut dev, Elem::U32, Host::U32(&rows.col), "col"),
        up(&mut dev, Elem::F64, Host::F64(rows.weight()), "w"),
        up(&mut dev, Elem::U32, Host::U32(&row_of), "row"),
    );
    // out = mu W^T (acc 0), then out += mu W^T (acc 1).
    let mu = vals(1, batch * n_post);
    let mub = up(&mut dev, Elem::F64, Host::F64(&mu), "mu");
    let back = |b: usize, i: usize| (rows.row_ptr[i]..rows.row_ptr[i + 1]).fold(0.0, |s, j| s + rows.weight()[j] * mu[b * n_post + rows.col[j] as usize]);
    for acc in [0u64, 1] {
        let out = up(&mut dev, Elem::F64, Host::F64(&vec![0.5; batch * n_pre]), "out");
        let a = [KArg::Buf(rp), KArg::Buf(col), KArg::Buf(w), KArg::Buf(mub), KArg::Buf(out), KArg::U64(n_pre as u64), KArg::U64(n_post as u64), KArg::U64(acc)];
        dev.launch(m, SPARSE_BACK, (1, batch as u32), 256, &a).unwrap();
        let got = get(&mut dev, out, batch * n_pre);
        for b in 0..batch {
            for i in 0..n_pre {
                let want = if acc == 0 { back(b, i) } else { 0.5 + back(b, i) };
                assert_eq!(got[b * n_pre + i], want, "back, acc {acc}, batch {b}, row {i}");
            }
        }
    }
    // g[e] += sum over 5 rows of x[r, row(e)] c[r, col(e)] (x with zeros, as spikes).
    let r = 5;
    let x: Vec<f64> = vals(2, r * n_pre).into_iter().map(|v| if v > 0.3 { v } else { 0.0 }).collect();
    let c = vals(3, r * n_post);
    let g0 = vals(4, nnz);
    let (xb, cb, gb) = (up(&mut dev, Elem::F64, Host::F64(&x), "x"), up(&mut dev, Elem::F64, Host::F64(&c), "c"), up(&mut dev, Elem::F64, Host::F64(&g0), "g"));
    let a = [KArg::Buf(row), KArg::Buf(col), KArg::Buf(xb), KArg::Buf(cb), KArg::Buf(gb), KArg::U64(nnz as u64), KArg::U64(r as u64), KArg::U64(n_pre as u64), KArg::U64(n_post as u64)];
    dev.launch(m, SPARSE_OUTER, (nnz.div_ceil(64) as u32, 1), 64, &a).unwrap();
    let got = get(&mut dev, gb, nnz);
    for e in 0..nnz {
        let (i, o) = (row_of[e] as usize, rows.col[e] as usize);
        let want = (0..r).fold(g0[e], |s, b| s + x[b * n_pre + i] * c[b * n_post + o]);
        assert_eq!(got[e], want, "outer, synapse {e}");
    }
    // The exact trace per synapse, K = 2: planes of P = batch * n_post.
    let (k, plane) = (2usize, batch * n_post);
    let (d, f, l) = (vals(5, k * k * plane), vals(6, k * plane), vals(7, k * plane));
    let (x1, tr_in, g1) = (vals(8, batch * n_pre), vals(9, batch * nnz * k), vals(10, nnz));
    let bufs: Vec<_> = [(&d, "d"), (&f, "f"), (&x1, "x1"), (&l, "l"), (&tr_in, "tr_in"), (&g1, "g1")].iter().map(|(v, n)| up(&mut dev, Elem::F64, Host::F64(v), n)).collect();
    let tr_out = dev.alloc(Elem::F64, batch * nnz * k, "tr_out").unwrap();
    let a = [
        KArg::Buf(bufs[4]),
        KArg::Buf(tr_out),
        KArg::Buf(bufs[0]),
        KArg::Buf(bufs[1]),
        KArg::Buf(bufs[2]),
        KArg::Buf(bufs[3]),
        KArg::Buf(bufs[5]),
        KArg::U64(batch as u64),
        KArg::U64(n_pre as u64),
        KArg::U64(n_post as u64),
        KArg::U64(k as u64),
        KArg::Buf(row),
        KArg::Buf(col),
        KArg::U64(nnz as u64),
    ];
    dev.launch(m, SPARSE_EXACT_TRACE, (nnz.div_ceil(256) as u32, 1), 256, &a).unwrap();
    let (got_tr, got_g) = (get(&mut dev, tr_out, batch * nnz * k), get(&mut dev, bufs[5], nnz));
    for e in 0..nnz {
        let (i, o) = (row_of[e] as usize, rows.col[e] as usize);
        let mut acc = 0.0;
        for b in 0..batch {
            let bo = b * n_post + o;
            for aa in 0..k {
                let mut s = (0..k).fold(0.0, |s, cc| s + d[(aa * k + cc) * plane + bo] * tr_in[(b * nnz + e) * k + cc]);
                s += x1[b * n_pre + i] * f[aa * plane + bo];
                assert_eq!(got_tr[(b * nnz + e) * k + aa], s, "trace of synapse {e}, batch {b}, state {aa}");
                acc += l[aa * plane + bo] * s;
            }
        }
        assert_eq!(got_g[e], g1[e] + acc, "exact-trace gradient of synapse {e}");
    }
}

/// examples/coba.snn for 1000 steps on the emulated GPU against the CPU, f64: what the
/// GPU test `coba_gpu_spikes_equal_cpu_f64` will see, up to the order of the atomic
/// additions (the emulator runs threads in order). Slow in debug builds:
/// `cargo test --release -p snnc-runtime --test all -- gpu_emu:: --ignored`.
#[test]
#[ignore = "minutes in a debug build; run with --release"]
fn emulated_gpu_full_coba_1000_steps_f64() {
    let mut sources = SourceMap::new();
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/coba.snn"));
    let (p, d) = sema::check_path(path, &sema::LoadOptions::default(), &mut sources);
    assert!(d.iter().all(|d| !d.is_error()));
    let o = Options { seed: 11, ..Options::default() };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &snnc_runtime::kernels::JitFactory).unwrap();
    let mut gpu = emulated::<f64>(&p, &o);
    for t in 0..1000 {
        cpu.step(&[]).unwrap();
        gpu.step(&[]).unwrap();
        gpu.fetch(false).unwrap();
        for (a, b) in cpu.pops.iter().zip(&gpu.host.pops) {
            assert_eq!(a.spikes(), b.spikes(), "spikes of {} at step {t}", a.name);
        }
    }
    let counts: Vec<u64> = cpu.pops.iter().map(|p| p.spike_count).collect();
    eprintln!("spikes per population over 1000 steps: {counts:?}");
    assert!(counts.iter().all(|c| *c > 100));
}

/// A GPU network reset after a run runs the next one as a freshly built one: the same
/// spikes and states step by step (delay rings, spike lists of later populations, noise
/// and time back to the start).
#[test]
fn a_reset_gpu_network_runs_like_a_new_one() {
    let p = program(MIXED);
    let o = Options { seed: 3, ..Options::default() };
    let run = |gpu: &mut GpuNetwork<f64, EmuDevice>| -> Vec<Vec<f64>> {
        let mut seen = Vec::new();
        for t in 0..25 {
            let x = input(t, 20);
            gpu.step(&[&x]).unwrap();
            gpu.fetch(true).unwrap();
            seen.extend(gpu.host.pops.iter().map(|q| q.spikes().to_vec()));
            seen.extend(gpu.host.pops.iter().flat_map(|q| q.states.clone()));
        }
        seen
    };
    let want = run(&mut emulated::<f64>(&p, &o));
    assert!(want.iter().flatten().any(|v| *v == 1.0), "the network fires");
    let mut gpu = emulated::<f64>(&p, &o);
    run(&mut gpu);
    gpu.reset().unwrap();
    assert_eq!(run(&mut gpu), want);
    assert_eq!(gpu.host.step_index, 25);
}

/// A non-finite state found at a window's read-back is reported as the CPU reports it at
/// its step: the step, the second of two states, the neuron whose time constant makes it
/// overflow first (per-neuron params), the batch element, the value.
#[test]
fn non_finite_state_inside_a_window_is_reported_exactly() {
    let text = r#"
neuron Grow2 {
    param tau: ms = 1 ms
    state a = 0.5
    state v = 1.0
    da/dt = -a / (10 ms)
    dv/dt = v / tau
}
network blowup { dt = 1 ms
    layer G = Grow2[5] { tau = uniform(0.5 ms, 2 ms) } }"#;
    let p = program(text);
    let o = Options { batch: 2, seed: 7, ..Options::default() };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = emulated::<f64>(&p, &o);
    gpu.set_window(7).unwrap();
    let e_cpu = (0..3000).find_map(|_| cpu.step(&[]).err()).expect("the CPU run overflows");
    let e_gpu = (0..3000).find_map(|_| gpu.step(&[]).err()).expect("the GPU run overflows");
    let RuntimeError::NonFinite { step, ref state, .. } = e_cpu else { panic!("{e_cpu}") };
    assert_eq!(state, "v");
    assert!(step % 7 != 6, "the overflow is inside a window, not at its last step (step {step})");
    assert_eq!(e_gpu, e_cpu);
}

/// The loss kernels against the CPU's `step_loss` (f64 routines within an ulp or two of
/// libm's): masked and unmasked rows, outputs of either sign up to +-600 (the softmax's
/// max subtraction keeps exp in range), one-hot and soft targets.
#[test]
fn loss_kernels_match_the_cpu_loss() {
    use snnc_compiler::backend::ptx::Precision;
    use snnc_compiler::backend::ptx::propagate::{LOSS_CE, LOSS_MSE};
    use snnc_runtime::gpu::{Device, Elem, Host, HostMut, KArg, Module};
    use snnc_runtime::learn::{Loss, step_loss};
    let (batch, o) = (5, 7);
    let rng = Rng::new(11);
    let scale = [1.0, 30.0, 600.0, 0.01, 5.0];
    let y: Vec<f64> = (0..batch * o).map(|e| scale[e / o] * rng.normal(1, e as u64, 0)).collect();
    let target: Vec<f64> = (0..batch * o).map(|e| if e / o == 4 { rng.uniform(2, e as u64, 0) / o as f64 } else { f64::from(e % o == e / o) }).collect();
    let mask = [1.0, 0.0, 1.0, 0.5, 1.0];
    for (kind, entry) in [(Loss::Mse, LOSS_MSE), (Loss::CrossEntropy, LOSS_CE)] {
        let mut dev = EmuDevice::new(Target::Sm90);
        let m = dev.load(&Module::Propagate(Precision::F64, Target::Sm90)).unwrap();
        let up = |dev: &mut EmuDevice, v: &[f64], label: &str| {
            let b = dev.alloc(Elem::F64, v.len(), label).unwrap();
            dev.upload(b, Host::F64(v)).unwrap();
            b
        };
        let (yb, tb, mb) = (up(&mut dev, &y, "y"), up(&mut dev, &target, "target"), up(&mut dev, &mask, "mask"));
        let err = up(&mut dev, &vec![7.0; batch * o], "err");
        let (loss, ev) = (up(&mut dev, &[0.5; 5], "loss"), up(&mut dev, &vec![0.25; batch * o], "evidence"));
        let a = [yb, tb, mb, err, loss, ev].map(KArg::Buf);
        let mut args = a.to_vec();
        args.extend([KArg::U64(batch as u64), KArg::U64(o as u64)]);
        dev.launch(m, entry, (1, 1), 256, &args).unwrap();
        let get = |dev: &mut EmuDevice, b, n| {
            let mut v = vec![0.0; n];
            dev.download(b, HostMut::F64(&mut v)).unwrap();
            v
        };
        let (got_err, got_loss, got_ev) = (get(&mut dev, err, batch * o), get(&mut dev, loss, batch), get(&mut dev, ev, batch * o));
        for b in 0..batch {
            let rows = b * o..(b + 1) * o;
            let mut g = vec![0.0; o];
            let l = step_loss(kind, &y[rows.clone()], &target[rows.clone()], Some(&mut g));
            let m = mask[b];
            let want_loss = if m == 0.0 { 0.5 } else { 0.5 + m * l };
            assert!((got_loss[b] - want_loss).abs() <= 1e-14 * want_loss.abs().max(1.0), "{kind:?} row {b}: loss {} vs {want_loss}", got_loss[b]);
            for j in 0..o {
                let (want_err, want_ev) = if m == 0.0 { (0.0, 0.25) } else { (m * g[j], 0.25 + m * y[b * o + j]) };
                assert!((got_err[b * o + j] - want_err).abs() <= 1e-15 * want_err.abs().max(1.0), "{kind:?} err[{b},{j}]: {} vs {want_err}", got_err[b * o + j]);
                assert_eq!(got_ev[b * o + j], want_ev, "{kind:?} evidence[{b},{j}]");
            }
        }
    }
}

#[test]
fn a_delay_per_synapse_is_refused_on_the_gpu_not_run_as_one_delay() {
    let p = program("import \"stdlib/lif.snn\"\nnetwork n { layer A = LIF[20]; connect A -> A.I sparse p = 0.3 weight 0.1 delay U(1 ms, 3 ms) as D }");
    let host = Network::<f64>::without_kernels(&p, &p.networks[0], &Options::default()).unwrap();
    let e = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
    assert!(e.contains("`D`") && e.contains("a delay per synapse is not supported on the GPU"), "{e}");
}
