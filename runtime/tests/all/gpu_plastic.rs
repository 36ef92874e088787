//! Presynaptic synapse state (STP, gated NMDA) and plastic synapses (STDP) on the GPU
//! backend, through the [`EmuDevice`] (the generated stage and rule kernels in the step
//! emulator, the gather / scatter kernels' PTX text interpreted with bounds-checked
//! memory), against the CPU runtime step by step: identical spikes, states, stage
//! states, traces and weights; what the device flags (a source that does not send 0 or
//! 1, a weight made non-finite) reported as the CPU reports it; what is still refused;
//! and a snapshot of a generated rule kernel.

use crate::common::{cpu_and_replayed, emulated, program};
use snnc_compiler::backend::ptx::{Precision, Target, emit_step};
use snnc_compiler::sema::Program;
use snnc_runtime::gpu::{EmuDevice, GpuNetwork};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::network::{Network, Options, Population};
use snnc_runtime::rng::Rng;
use snnc_runtime::scalar::Float;

const LIF: &str = "neuron LIF {
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
    spike when v > 1
    on spike { v -= 1 }
}
";

/// Tsodyks–Markram (facilitating and depressing) and saturating NMDA gating (nonlinear
/// per-source state, sent every step).
const STP_SYNAPSES: &str = "synapse TM {
    param U = 0.2
    param tau_f: ms = 300 ms
    param tau_d: ms = 200 ms
    state u = 0.2
    state x = 1.0
    state g = 0 * w
    du/dt = (U - u) / tau_f
    dx/dt = (1 - x) / tau_d
    dg/dt = -g / (5 ms)
    on pre {
        u += U * (1 - u)
        g += w * u * x
        x -= u * x
    }
    output I = g
}
synapse NMDA {
    param tau_r: ms = 2 ms
    param tau_d: ms = 100 ms
    param alpha: kHz = 0.5 kHz
    state x = 0
    state s = 0
    dx/dt = -x / tau_r
    ds/dt = -s / tau_d + alpha * x * (1 - s)
    on pre { x += 1 }
    output I = w * s
}
";

/// Brian2's pair STDP and the minimal triplet rule (Pfister & Gerstner 2006).
const STDP_SYNAPSES: &str = "synapse STDP {
    param taupre: ms = 20 ms
    param taupost: ms = 30 ms
    param Apre = 0.01
    param Apost = -0.012
    param w_max = 1
    state apre = 0
    state apost = 0
    state g = 0 * w
    dapre/dt = -apre / taupre
    dapost/dt = -apost / taupost
    dg/dt = -g / (5 ms)
    on pre {
        g += w
        apre += Apre
        w = clip(w + apost, 0, w_max)
    }
    on post {
        apost += Apost
        w = clip(w + apre, 0, w_max)
    }
    output I = g
}
synapse Triplet {
    param tau_plus: ms = 16.8 ms
    param tau_x: ms = 101 ms
    param tau_minus: ms = 33.7 ms
    param tau_y: ms = 125 ms
    param A2p = 0.005
    param A3p = 0.0062
    param A2m = 0.007
    param A3m = 0.00023
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
    on pre {
        g += w
        w = clip(w - o1 * (A2m + A3m * r2), 0, 1)
        r1 += 1
        r2 += 1
    }
    on post {
        w = clip(w + r1 * (A2p + A3p * o2), 0, 1)
        o1 += 1
        o2 += 1
    }
    output I = g
}
";

/// Every form of presynaptic state a GPU network now runs: STP from an input (sparse,
/// its own list of what it delivers), recurrent STP from a later population with a
/// delay (the source's spikes of the previous step), STP into a dense projection,
/// NMDA gating (dense and sparse: every source every step).
fn stp_network() -> String {
    format!(
        "{LIF}{STP_SYNAPSES}network n {{
    dt = 0.5 ms
    input s: 30
    layer a = LIF[40]
    layer b = LIF[12]
    connect s -> a.I via TM sparse p = 0.5 weight 4.0 as s_a
    connect b -> a.I via TM {{ U = 0.5 }} sparse p = 0.5 weight 1.5 delay 2 ms as b_a
    connect a -> b.I via TM dense weight U(0.5, 2.0) as a_b
    connect s -> b.I via NMDA dense weight 0.3 as s_b
    connect a -> a.I via NMDA sparse p = 0.3 weight 0.2 as a_a
}}"
    )
}

/// Pair STDP from an input (dense, sparse with a delay), recurrent pair STDP without
/// the diagonal, triplet STDP between populations (sparse, later into earlier).
fn stdp_network() -> String {
    format!(
        "{LIF}{STDP_SYNAPSES}network n {{
    dt = 0.1 ms
    input x: 50
    layer a = LIF[16]
    layer b = LIF[8]
    connect x -> a.I via STDP dense weight U(0.2, 0.8) as x_a
    connect x -> b.I via STDP sparse p = 0.5 weight U(0.2, 0.8) delay 1.5 ms as x_b
    connect a -> a.I via STDP dense weight 0.1 no_self as a_a
    connect b -> a.I via Triplet sparse p = 0.6 weight 0.5 as b_a
    connect a -> b.I via Triplet dense weight 0.4 delay 0.5 ms as a_b
}}"
    )
}

/// A source that spikes without external input: Philox noise (its step read from the
/// device's clock on the GPU).
const NOISY_SOURCE: &str = "neuron Noisy {
    state v = 0.0
    input I
    dv/dt = (-v + I + 4.0 * randn()) / (2 ms)
    spike when v > 1.0
    reset v = 0.0
    method euler
}
";

/// Bernoulli input spikes with probability `p` (deterministic).
fn input(step: usize, n: usize, p: f64) -> Vec<f64> {
    let r = Rng::new(11);
    (0..n).map(|j| if r.uniform(1, (step * n + j) as u64, 0) < p { 1.0 } else { 0.0 }).collect()
}

fn weights<T: Float>(net: &Network<T>, pi: usize) -> Vec<f64> {
    match net.dense_weights(pi) {
        Some(w) => w.iter().map(|v| v.to_f64()).collect(),
        None => net.sparse_weights(pi).expect("dense or sparse").2.iter().map(|v| v.to_f64()).collect(),
    }
}

/// `a` and `b` within `tol` of `a`'s scale (at least 1).
fn close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what} [{i}]: cpu {x} gpu {y}");
    }
}

fn states<T: Float>(pop: &Population<T>) -> Vec<f64> {
    pop.states.iter().flatten().map(|v| v.to_f64()).collect()
}

/// The CPU network and the emulated GPU one side by side for `steps` steps: identical
/// spikes every step; states, stage states, traces and weights within `tol`. Returns
/// (spikes, weights that changed).
fn compare<T: Float>(p: &Program, steps: usize, rate: f64, tol: f64) -> (f64, usize) {
    compare_batch::<T>(p, 1, steps, rate, tol)
}

/// [`compare`] with `batch` independent batch elements (each its own inputs).
fn compare_batch<T: Float>(p: &Program, batch: usize, steps: usize, rate: f64, tol: f64) -> (f64, usize) {
    let o = Options { seed: 7, batch, ..Options::default() };
    let mut cpu = Network::<T>::build(p, &p.networks[0], &o, &InterpFactory).unwrap();
    let host = Network::<T>::build(p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let n_in = cpu.inputs.first().map_or(0, |i| i.1);
    let w0: Vec<Vec<f64>> = (0..cpu.n_projections()).map(|pi| weights(&cpu, pi)).collect();
    let mut spikes = 0.0;
    for t in 0..steps {
        let x: Vec<T> = input(t, n_in * batch, rate).into_iter().map(T::from_f64).collect();
        let ext: Vec<&[T]> = if n_in > 0 { vec![&x] } else { vec![] };
        cpu.step(&ext).unwrap();
        gpu.step(&ext).unwrap();
        gpu.fetch(true).unwrap();
        for (a, b) in cpu.pops.iter().zip(&gpu.host.pops) {
            assert!(a.spikes() == b.spikes(), "spikes of {} at step {t}", a.name);
            close(&format!("states of {} at step {t}", a.name), &states(a), &states(b), tol);
            spikes += a.spikes().iter().map(|s| s.to_f64()).sum::<f64>();
        }
        for pi in 0..cpu.n_projections() {
            if let Some(s) = cpu.presynaptic_state(pi) {
                close(&format!("stage {} at step {t}", s.name), &states(s), &states(gpu.host.presynaptic_state(pi).unwrap()), tol);
            }
            if let Some(s) = cpu.plastic_traces(pi) {
                close(&format!("traces {} at step {t}", s.name), &states(s), &states(gpu.host.plastic_traces(pi).unwrap()), tol);
            }
            close(&format!("weights of projection {pi} at step {t}"), &weights(&cpu, pi), &weights(&gpu.host, pi), tol);
        }
    }
    let moved = (0..cpu.n_projections()).map(|pi| weights(&cpu, pi).iter().zip(&w0[pi]).filter(|(a, b)| a != b).count()).sum();
    (spikes, moved)
}

#[test]
fn emulated_gpu_runs_short_term_plasticity_and_nmda_gating_as_the_cpu_f64() {
    let p = program(&stp_network());
    let (spikes, _) = compare::<f64>(&p, 300, 0.1, 1e-12);
    assert!(spikes > 300.0, "the network fires ({spikes} spikes)");
    // The stages did move: u facilitated, x depressed somewhere.
    let o = Options { seed: 7, ..Options::default() };
    let host = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    for t in 0..100 {
        gpu.step(&[&input(t, 30, 0.1)]).unwrap();
    }
    gpu.fetch(true).unwrap();
    let st = gpu.host.presynaptic_state(0).unwrap();
    let x = st.state_names.iter().position(|s| s == "x").unwrap();
    assert!(st.states[x].iter().any(|&v| v < 0.95), "x depressed");
    // A reset puts the stages back.
    gpu.reset().unwrap();
    gpu.fetch(true).unwrap();
    assert!(gpu.host.presynaptic_state(0).unwrap().states[x].iter().all(|&v| v == 1.0));
}

#[test]
fn emulated_gpu_runs_short_term_plasticity_over_a_batch_as_the_cpu() {
    let p = program(&stp_network());
    let (spikes, _) = compare_batch::<f64>(&p, 3, 150, 0.1, 1e-12);
    assert!(spikes > 300.0, "the network fires ({spikes} spikes)");
}

#[test]
fn emulated_gpu_runs_short_term_plasticity_as_the_cpu_f32() {
    let p = program(&stp_network());
    let (spikes, _) = compare::<f32>(&p, 200, 0.1, 1e-5);
    assert!(spikes > 200.0, "the network fires ({spikes} spikes)");
}

fn example(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")).join(rel)).unwrap()
}

/// examples/mongillo.snn (Tsodyks–Markram STP on every E -> E projection, sparse and
/// delayed, Philox noise, a cue drive) with its populations 40 times smaller.
#[test]
fn emulated_gpu_runs_the_mongillo_example_scaled_down_as_the_cpu() {
    let text = example("mongillo.snn").replace("[800]", "[20]").replace("[5600]", "[140]").replace("[2000]", "[50]");
    let p = program(&text);
    let (spikes, _) = compare::<f64>(&p, 300, 0.0, 1e-12);
    assert!(spikes > 100.0, "the network fires ({spikes} spikes)");
}

/// examples/song2000.snn (pair STDP from 1000 inputs into one conductance-based neuron)
/// as written, for 400 steps with Bernoulli inputs at 150 Hz (ten times its command's
/// 15 Hz, so that the neuron fires within these steps).
#[test]
fn emulated_gpu_runs_the_song2000_example_as_the_cpu() {
    let p = program(&example("song2000.snn"));
    let (spikes, moved) = compare::<f64>(&p, 400, 15.0 * 1e-4 * 10.0, 1e-12);
    assert!(spikes > 0.0, "the neuron fires ({spikes} spikes)");
    assert!(moved > 100, "{moved} weights changed");
}

/// No external input: a noisy source (Philox, the step from the device's clock) into
/// pair STDP with a delay (a ring of spikes in flight of 4 slots) and Tsodyks–Markram
/// synapses, run as recorded and replayed windows (`GpuNetwork::run`): the CPU's spikes
/// and weights, and exactly what the same steps made one by one give.
#[test]
fn a_free_running_plastic_network_replays_recorded_windows() {
    let text = format!(
        "{LIF}{STP_SYNAPSES}{STDP_SYNAPSES}{NOISY_SOURCE}network n {{
    dt = 0.5 ms
    layer s = Noisy[30]
    layer a = LIF[12]
    drive s.I = 0.8
    connect s -> a.I via STDP sparse p = 0.5 weight U(0.2, 0.8) delay 1.5 ms as s_a
    connect s -> a.I via TM sparse p = 0.4 weight 1.0 as s_tm
}}"
    );
    let p = program(&text);
    let o = Options { seed: 2, ..Options::default() };
    let steps = 6 * 10 + 3;
    let (cpu, mut gpu, c) = cpu_and_replayed(&p, &o, 6, steps);
    assert_eq!(c.replays, 10, "{c:?}");
    gpu.fetch(true).unwrap();
    for (a, b) in cpu.pops.iter().zip(&gpu.host.pops) {
        assert!(a.spike_count > 10, "{} fires ({})", a.name, a.spike_count);
        assert_eq!(a.spike_count, b.spike_count, "spike count of {}", a.name);
        close(&a.name, &states(a), &states(b), 1e-12);
    }
    let w_cpu = weights(&cpu, 0);
    let moved = w_cpu.iter().zip(&weights(&Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap(), 0)).filter(|(x, y)| x != y).count();
    assert!(moved > 20, "{moved} weights changed");
    close("s_a weights", &w_cpu, &weights(&gpu.host, 0), 1e-12);
    let replayed: Vec<f64> = weights(&gpu.host, 0).into_iter().chain(gpu.host.pops.iter().flat_map(|p| states(p))).collect();
    // The same steps one by one, from a network built alike: the same, bit for bit.
    let mut single = emulated::<f64>(&p, &o);
    single.set_window(6).unwrap();
    for _ in 0..steps {
        single.step(&[]).unwrap();
    }
    single.fetch(true).unwrap();
    let one_by_one: Vec<f64> = weights(&single.host, 0).into_iter().chain(single.host.pops.iter().flat_map(|p| states(p))).collect();
    assert!(replayed.iter().zip(&one_by_one).all(|(x, y)| x.to_bits() == y.to_bits()), "replayed windows and single steps differ");
}

/// Spikes recorded on the device stop where the CPU's run stops: a rule that makes a
/// weight infinite (reported with the window's status, as an input error, not a
/// non-finite state) ends what the recorder is shown at the step before it, as on the
/// CPU, whose run fails at that step.
#[test]
fn recorded_spikes_end_before_a_failing_rule_as_on_the_cpu() {
    use snnc_runtime::engine::Simulation;
    let text = format!(
        "{LIF}{STDP_SYNAPSES}{NOISY_SOURCE}network n {{
    dt = 0.5 ms
    layer s = Noisy[20]
    layer a = LIF[10]
    drive s.I = 0.8
    drive a.I = 3.0
    connect s -> a.I via STDP sparse p = 0.5 weight 0.3 as s_a
}}"
    )
    // `on post` divides by a trace that is 0 until the first presynaptic spike.
    .replace("w = clip(w + apre, 0, w_max)", "w = w + Apre / apre");
    let p = program(&text);
    let o = Options { seed: 4, ..Options::default() };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut shown_cpu = 0;
    let cpu_err = (0..200).find_map(|_| match cpu.step(&[]) {
        Ok(()) => {
            shown_cpu += 1;
            None
        }
        Err(e) => Some(e.to_string()),
    });
    let cpu_err = cpu_err.expect("the CPU refuses");
    assert!(cpu_err.contains("became inf"), "{cpu_err}");
    let host = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    gpu.set_window(16).unwrap();
    let mut shown_gpu = 0;
    let gpu_err = gpu.advance_recorded(200, &[], &mut |_| {
        shown_gpu += 1;
        Ok(())
    });
    let gpu_err = gpu_err.expect_err("the GPU refuses").to_string();
    assert!(gpu_err.starts_with(cpu_err.as_str()), "cpu: {cpu_err}\ngpu: {gpu_err}");
    assert!(shown_cpu > 0 && shown_cpu % 16 != 0, "the failure falls inside a window ({shown_cpu})");
    assert_eq!(shown_gpu, shown_cpu, "steps shown before the failure");
}

#[test]
fn emulated_gpu_learns_the_cpus_weights_f64() {
    let p = program(&stdp_network());
    let (spikes, moved) = compare::<f64>(&p, 400, 0.04, 1e-12);
    assert!(spikes > 100.0, "the network fires ({spikes} spikes)");
    assert!(moved > 500, "{moved} weights changed");
}

#[test]
fn emulated_gpu_learns_the_cpus_weights_f32() {
    let p = program(&stdp_network());
    let (_, moved) = compare::<f32>(&p, 250, 0.04, 1e-5);
    assert!(moved > 300, "{moved} weights changed");
}

#[test]
fn reset_keeps_the_learned_weights_and_clears_what_is_in_flight() {
    let p = program(&stdp_network());
    let o = Options { seed: 7, ..Options::default() };
    let run = |gpu: &mut GpuNetwork<f64, EmuDevice>| {
        for t in 0..150 {
            gpu.step(&[&input(t, 50, 0.04)]).unwrap();
        }
        gpu.fetch(true).unwrap();
    };
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let host = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    run(&mut gpu);
    let learned = weights(&gpu.host, 0);
    gpu.reset().unwrap();
    gpu.fetch(true).unwrap();
    assert_eq!(weights(&gpu.host, 0), learned);
    assert!(gpu.host.plastic_traces(0).unwrap().states[0].iter().all(|&a| a == 0.0));
    // A second sequence from the learned weights, as the CPU's.
    for t in 0..150 {
        cpu.step(&[&input(t, 50, 0.04)]).unwrap();
    }
    cpu.reset();
    for t in 0..150 {
        cpu.step(&[&input(t, 50, 0.04)]).unwrap();
    }
    run(&mut gpu);
    for pi in 0..cpu.n_projections() {
        close(&format!("weights of projection {pi}"), &weights(&cpu, pi), &weights(&gpu.host, pi), 1e-12);
    }
}

#[test]
fn a_source_that_does_not_spike_is_reported_as_on_the_cpu() {
    for text in [stp_network(), stdp_network()] {
        let p = program(&text);
        let o = Options::default();
        let host = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
        let n_in = host.inputs[0].1;
        let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
        let mut cpu = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
        let mut x = vec![0.0; n_in];
        x[3] = 0.5;
        gpu.step(&[&vec![1.0; n_in]]).unwrap();
        gpu.step(&[&x]).unwrap();
        let err = gpu.fetch(false).unwrap_err().to_string();
        cpu.step(&[&vec![1.0; n_in]]).unwrap();
        let cpu_err = cpu.step(&[&x]).unwrap_err().to_string();
        assert!(err.contains("needs spikes (0 or 1) from its source") && err.contains("source neuron 3") && err.contains("step 1"), "{err}");
        // The same projection and refusal; the CPU names the value, the device (which
        // reads a flag) the neuron and step.
        assert_eq!(err.split(", got").next(), cpu_err.split(", got").next(), "cpu: {cpu_err}\ngpu: {err}");
    }
}

#[test]
fn a_weight_made_infinite_is_reported_with_its_synapse() {
    // `on post` divides by a trace that is 0 until the first presynaptic spike.
    let text = stdp_network().replace("w = clip(w + apre, 0, w_max)", "w = w + Apre / apre");
    let p = program(&text);
    let host = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    // Strong drive: the targets spike before every source has.
    let cpu_err = (0..400).find_map(|t| cpu.step(&[&input(t, 50, 0.3)]).err()).expect("the CPU refuses").to_string();
    let gpu_err = (0..400).find_map(|t| gpu.step(&[&input(t, 50, 0.3)]).and_then(|_| gpu.fetch(false)).err()).expect("the GPU refuses").to_string();
    assert!(cpu_err.contains("plastic projection `") && cpu_err.contains("became inf"), "{cpu_err}");
    // The same projection, synapse and time (the GPU names the rule too).
    assert!(gpu_err.starts_with(cpu_err.as_str()), "cpu: {cpu_err}\ngpu: {gpu_err}");
}

#[test]
fn still_refused_forms_say_so() {
    // A weight rule drawing random numbers (the CPU keys its draws by event order).
    let text = stdp_network().replace("w = clip(w + apre, 0, w_max)", "w = clip(w + apre * rand(), 0, w_max)");
    let p = program(&text);
    let host = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let err = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
    assert!(err.contains("plastic projection `x_a`") && err.contains("draws random numbers") && err.contains("GPU backend"), "{err}");
    // A delay per synapse (with or without presynaptic state).
    let text = stp_network().replace("sparse p = 0.5 weight 1.5 delay 2 ms", "sparse p = 0.5 weight 1.5 delay U(1 ms, 3 ms)");
    let p = program(&text);
    let host = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let err = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).err().expect("refused").to_string();
    assert!(err.contains("projection `b_a`: a delay per synapse is not supported on the GPU"), "{err}");
}

/// The `on post` rule of pair STDP as the GPU runs it: one thread per synapse, `w` and
/// the traces gathered, `w = clip(w + apre, 0, w_max)` after the presynaptic trace's
/// increment where the source spiked in the same step.
#[test]
fn snapshot_gpu_stdp_on_post_rule_f32_sm80() {
    let p = program(&format!(
        "{LIF}{STDP_SYNAPSES}network n {{
    dt = 0.1 ms
    input x: 4
    layer a = LIF[2]
    connect x -> a.I via STDP dense weight 0.5 as x_a
}}"
    ));
    let net = Network::<f32>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let rule = net.plastic_rule(0, true).expect("an on post rule");
    let text = emit_step(rule.step.as_ref().unwrap(), &rule.specs, Precision::F32, Target::Sm80).unwrap();
    insta::assert_snapshot!(text);
}
