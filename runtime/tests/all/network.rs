//! Whole networks through the runtime with the reference (interpreter) kernels.
use crate::common::program;
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::network::{Network, Options};
use snnc_runtime::record::Recorder;

const SMALL_COBA: &str = include_str!("../data/coba_small.snn");

fn spikes_of(seed: u64, steps: usize) -> Vec<Vec<f64>> {
    let p = program(SMALL_COBA);
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options { seed, ..Options::default() }, &InterpFactory).unwrap();
    let mut out = Vec::new();
    for _ in 0..steps {
        net.step(&[]).unwrap();
        out.push(net.pops[0].spikes().to_vec());
    }
    out
}

#[test]
fn runs_are_deterministic_for_a_seed() {
    let a = spikes_of(7, 300);
    let b = spikes_of(7, 300);
    let c = spikes_of(8, 300);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let total: f64 = a.iter().flatten().sum();
    assert!(total > 10.0, "the driven network fires ({total} spikes)");
}

/// The recorder keeps each step's lists as they are and gives them back spike by spike,
/// Brian2's way: time, then index `b * n + i` (batch rows in order, indices ascending).
#[test]
fn recorded_spikes_are_each_steps_lists_spike_by_spike() {
    let p = program(SMALL_COBA);
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options { seed: 5, batch: 3, ..Options::default() }, &InterpFactory).unwrap();
    let mut rec = Recorder::new(&net, true, &[]).unwrap();
    let pops = net.pops.len();
    let mut want = vec![(Vec::new(), Vec::new()); pops];
    for _ in 0..300 {
        net.step(&[]).unwrap();
        rec.sample(&net).unwrap();
        for (pop, (ts, is)) in net.pops.iter().zip(&mut want) {
            for (k, _) in pop.spikes().iter().enumerate().filter(|(_, s)| **s != 0.0) {
                ts.push(net.time());
                is.push(k as i64);
            }
        }
    }
    let got = rec.spikes();
    assert_eq!(got.len(), pops);
    for (p, ts, is) in got {
        assert_eq!((&ts, &is), (&want[p].0, &want[p].1), "{}", net.pops[p].name);
        assert_eq!(rec.spike_count(p), ts.len());
    }
    let n = net.pops[0].n as i64;
    let rows: std::collections::BTreeSet<i64> = want[0].1.iter().map(|i| i / n).collect();
    assert_eq!(rows.len(), 3, "every batch row fires");
}

/// A recorder attached to its network (which logs each population's spikes as its
/// threads join them) records what one sampling after every step records, on any
/// threads and chunks.
#[test]
fn an_attached_recorder_records_what_sampling_does_on_any_threads() {
    let p = program(SMALL_COBA);
    let build = || Network::<f64>::build(&p, &p.networks[0], &Options { seed: 5, batch: 2, ..Options::default() }, &InterpFactory).unwrap();
    let mut net = build();
    let mut want = Recorder::new(&net, true, &[]).unwrap();
    for _ in 0..300 {
        net.step(&[]).unwrap();
        want.sample(&net).unwrap();
    }
    let want = want.spikes();
    assert!(want.iter().all(|(_, ts, _)| ts.len() > 10), "both populations fire");
    for (threads, chunk) in [(1, None), (2, None), (3, Some(48))] {
        let mut net = build();
        net.set_threads(threads).unwrap();
        if let Some(c) = chunk {
            net.set_chunk(c);
        }
        let mut rec = Recorder::new(&net, true, &[]).unwrap();
        rec.attach(&mut net).unwrap();
        for k in 0..300 {
            net.step(&[]).unwrap();
            rec.sample(&net).unwrap();
            // Taken back and handed over again partway: nothing lost or doubled.
            if k == 100 {
                rec.detach(&mut net).unwrap();
                rec.attach(&mut net).unwrap();
            }
        }
        rec.detach(&mut net).unwrap();
        assert_eq!(rec.spikes(), want, "{threads} threads, chunks {chunk:?}");
    }
}

/// A step that stops on a non-finite state after an earlier population of it was
/// logged leaves none of its spikes in an attached recorder: a recording holds whole
/// steps, as one sampled after each step that succeeded.
#[test]
fn an_attached_recorder_keeps_no_spikes_of_a_failed_step() {
    let p = program(
        r#"
import "stdlib/lif.snn"
neuron Boom { param tau: ms = 1 ms; state v = 1; dv/dt = v * v / tau; method euler }
network n { dt = 0.1 ms; layer A = LIF[40]; layer B = Boom[3]; drive A.I = 500 }"#,
    );
    for threads in [1, 2] {
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
        net.set_threads(threads).unwrap();
        let (mut sampled, mut attached) = (Recorder::new(&net, true, &[]).unwrap(), Recorder::new(&net, true, &[]).unwrap());
        attached.attach(&mut net).unwrap();
        let mut failed = false;
        for _ in 0..100_000 {
            if net.step(&[]).is_err() {
                failed = true;
                break;
            }
            sampled.sample(&net).unwrap();
            attached.sample(&net).unwrap();
        }
        assert!(failed, "B overflows");
        // A fires at every step: its spikes of the failed step were joined and logged.
        assert!(net.pops[0].spikes().iter().all(|&s| s != 0.0));
        attached.detach(&mut net).unwrap();
        assert_eq!(attached.spikes(), sampled.spikes(), "{threads} threads");
        assert!(sampled.spike_count(0) > 0);
    }
}

/// A recorder records the network it was made for: attaching it to, sampling or
/// detaching it from another is an error that changes nothing (a detach from another
/// network once left the spikes logged in the first and the recorder empty). Several
/// recorders attached to one network each log every spike, and an attached recorder's
/// spikes can be read at any time.
#[test]
fn a_recorder_records_its_own_network_and_several_may_attach() {
    let p = program(SMALL_COBA);
    let build = |threads| {
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options { seed: 5, ..Options::default() }, &InterpFactory).unwrap();
        net.set_threads(threads).unwrap();
        net
    };
    let (mut net, mut same, mut other) = (build(2), build(1), build(1));
    let mut want = Recorder::new(&same, true, &[]).unwrap();
    let (mut one, mut two) = (Recorder::new(&net, true, &[]).unwrap(), Recorder::new(&net, true, &[]).unwrap());
    one.attach(&mut net).unwrap();
    two.attach(&mut net).unwrap();
    // (Twice is once: no spike logged twice.)
    two.attach(&mut net).unwrap();
    let dir = std::env::temp_dir().join(format!("snnc-rec-other-{}", std::process::id()));
    for e in [one.attach(&mut other).unwrap_err(), one.detach(&mut other).unwrap_err(), one.sample(&other).unwrap_err(), one.write(&other, &dir).unwrap_err()] {
        assert!(e.to_string().contains("the recorder was made for another network"), "{e}");
    }
    assert!(!dir.exists(), "nothing written for another network");
    for k in 0..400 {
        net.step(&[]).unwrap();
        same.step(&[]).unwrap();
        other.step(&[]).unwrap();
        want.sample(&same).unwrap();
        one.sample(&net).unwrap();
        two.sample(&net).unwrap();
        if k == 150 {
            assert_eq!(one.spikes(), want.spikes(), "read while attached");
        }
        // One goes back to sampling, the other stays attached.
        if k == 250 {
            one.detach(&mut net).unwrap();
        }
    }
    let want = want.spikes();
    assert!(want.iter().all(|(_, ts, _)| ts.len() > 10), "both populations fire");
    assert_eq!(one.spikes(), want);
    assert_eq!(two.spikes(), want);
}

#[test]
fn refractory_neurons_do_not_fire_within_t_ref() {
    let a = spikes_of(3, 600);
    // t_ref = 5 ms = 50 steps: no neuron spikes twice within 50 steps.
    for i in 0..160 {
        let times: Vec<usize> = (0..a.len()).filter(|&t| a[t][i] != 0.0).collect();
        assert!(times.windows(2).all(|w| w[1] - w[0] > 50), "neuron {i}: {times:?}");
    }
}

#[test]
fn non_finite_state_stops_with_a_clear_error_and_keeps_recordings() {
    let p = program(
        r#"
neuron Boom { param tau: ms = 1 ms; state v = 1; dv/dt = v * v / tau; method euler }
network n { dt = 0.1 ms; layer B = Boom[3] }"#,
    );
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let mut rec = Recorder::new(&net, true, &["v".to_string()]).unwrap();
    let mut err = None;
    for _ in 0..100_000 {
        match net.step(&[]) {
            Ok(()) => rec.sample(&net).unwrap(),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let Some(RuntimeError::NonFinite { population, state, neuron, step, .. }) = err else { panic!("expected a non-finite error, got {err:?}") };
    assert_eq!((population.as_str(), state.as_str(), neuron), ("B", "v", 0));
    assert!(step > 5 && step < 100_000);
    let dir = std::env::temp_dir().join(format!("snnc-nan-{}", std::process::id()));
    let files = rec.write(&net, &dir).unwrap();
    let v: ndarray::Array2<f32> = ndarray_npy::read_npy(&files[0]).unwrap();
    assert_eq!(v.shape(), &[step as usize, 3]);
    assert!(v.iter().all(|x| x.is_finite() || x.is_infinite()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_external_input_is_an_error_not_a_panic() {
    let p = program(
        r#"
import "stdlib/lif.snn"
network n { dt = 1 ms; input x: 4; layer L = LIF[3]; connect x -> L.I dense weight 0.5 }"#,
    );
    let mut net = Network::<f32>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    assert!(matches!(net.step(&[]), Err(RuntimeError::Input(_))));
    assert!(matches!(net.step(&[&[1.0; 3]]), Err(RuntimeError::Input(_))));
    // Strong input makes every neuron fire.
    for _ in 0..30 {
        net.step(&[&[1.0; 4]]).unwrap();
    }
    assert!(net.pops[0].spike_count > 0);
}

#[test]
fn delays_shift_the_input_by_whole_steps() {
    // One input pulse at step 0 arrives 3 steps later through `delay 3 ms`.
    let p = program(
        r#"
import "stdlib/lif.snn"
network n { dt = 1 ms; input x: 1; layer L = LIFHard[1] { tau = 1 ms }
            connect x -> L.I one_to_one weight 100 delay 3 ms }"#,
    );
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let mut fired = Vec::new();
    for t in 0..8 {
        let x = if t == 0 { [1.0] } else { [0.0] };
        net.step(&[&x]).unwrap();
        fired.push(net.pops[0].spikes()[0]);
    }
    assert_eq!(fired, vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn jit_network_equals_interpreter_network() {
    // f64 JIT kernels are bit-exact with the interpreter: whole networks agree.
    let p = program(SMALL_COBA);
    let o = Options { seed: 9, ..Options::default() };
    let mut a = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut b = Network::<f64>::build(&p, &p.networks[0], &o, &snnc_runtime::kernels::JitFactory).unwrap();
    let mut spikes = 0.0;
    for t in 0..300 {
        a.step(&[]).unwrap();
        b.step(&[]).unwrap();
        for (pa, pb) in a.pops.iter().zip(&b.pops) {
            assert_eq!(pa.spikes(), pb.spikes(), "step {t}");
            assert_eq!(pa.states, pb.states, "step {t}");
            spikes += pa.spikes().iter().sum::<f64>();
        }
    }
    assert!(spikes > 10.0);
    // f32 JIT: the same spikes for the first steps, states within f32 tolerance.
    let mut c = Network::<f32>::build(&p, &p.networks[0], &o, &snnc_runtime::kernels::JitFactory).unwrap();
    let mut d = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    for t in 0..50 {
        c.step(&[]).unwrap();
        d.step(&[]).unwrap();
        let sc: Vec<f64> = c.pops[0].spikes().iter().map(|x| f64::from(*x)).collect();
        assert_eq!(sc, d.pops[0].spikes(), "f32 spikes at step {t}");
        for (x, y) in c.pops[0].states[0].iter().zip(&d.pops[0].states[0]) {
            assert!((f64::from(*x) - y).abs() < 1e-5, "v differs by more than 10 uV at step {t}");
        }
    }
}

/// A host view (`Network::without_kernels`, what a GPU network keeps) has the built
/// network's buffers and values, but stepping it on the CPU is one clear error, never a
/// silent step that skips every population; attaching kernels makes it the built network.
#[test]
fn a_network_without_kernels_refuses_to_step_until_kernels_are_attached() {
    let p = program(SMALL_COBA);
    let o = Options { seed: 5, ..Options::default() };
    let mut bare = Network::<f64>::without_kernels(&p, &p.networks[0], &o).unwrap();
    let mut built = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    assert_eq!(bare.pops[0].states, built.pops[0].states);
    let e = bare.step(&[]).unwrap_err().to_string();
    assert!(e.contains("without kernels"), "{e}");
    bare.reset();
    bare.attach_kernels(&InterpFactory).unwrap();
    for _ in 0..50 {
        bare.step(&[]).unwrap();
        built.step(&[]).unwrap();
    }
    assert_eq!(bare.pops[0].states, built.pops[0].states);
}

/// `procedural p = P` regenerates the synapses and weights of the stored `sparse p = P`
/// projection with the same seed at every spike: the same spikes, step for step, in f64
/// and f32, with drawn weights, a sign, a delay and `no_self`; and it stores nothing.
#[test]
fn procedural_connectivity_equals_the_stored_one() {
    let variant = |topo: &str| {
        SMALL_COBA
            .replace("sparse p = 0.4 weight 6 nS", &format!("{topo} init normal(6 nS, 3 nS) excitatory"))
            .replace("E -> E.I via ExpCond { tau = 5 ms, E = 0 mV } ", "E -> E.I via ExpCond { tau = 5 ms, E = 0 mV } no_self delay 0.3 ms ")
            .replace("sparse p = 0.4 weight 67 nS", &format!("{topo} init normal(67 nS, 20 nS)"))
    };
    fn run<T: snnc_runtime::scalar::Float>(text: &str) -> (Vec<Vec<T>>, usize) {
        let p = program(text);
        let mut net = Network::<T>::build(&p, &p.networks[0], &Options { seed: 5, ..Options::default() }, &snnc_runtime::kernels::JitFactory).unwrap();
        let mut out = Vec::new();
        for _ in 0..400 {
            net.step(&[]).unwrap();
            out.push(net.pops.iter().flat_map(|p| p.spikes().to_vec()).collect());
        }
        (out, net.n_synapses())
    }
    let (stored, procedural) = (variant("sparse p = 0.4"), variant("procedural p = 0.4"));
    assert!(procedural.contains("procedural p = 0.4 init normal(6 nS, 3 nS) excitatory") && procedural.contains("no_self delay"), "{procedural}");
    let (a, n_stored) = run::<f64>(&stored);
    let (b, n_expected) = run::<f64>(&procedural);
    assert!(a.iter().flatten().sum::<f64>() > 10.0, "the network fires");
    assert_eq!(a, b, "f64 spikes");
    // The expected count, which the stored draw is near.
    assert!((n_stored as f64 - n_expected as f64).abs() < 0.05 * n_expected as f64, "{n_stored} vs {n_expected}");
    assert_eq!(run::<f32>(&stored).0, run::<f32>(&procedural).0, "f32 spikes");
}

/// Steps `net` for `steps` steps with zero or Poisson-like inputs; returns every step's
/// spike lists and the final states.
fn run_split<T: snnc_runtime::scalar::Float>(mut net: Network<T>, steps: usize) -> (Vec<Vec<Vec<Vec<u32>>>>, Vec<Vec<Vec<T>>>) {
    let inputs: Vec<Vec<T>> = net.inputs.iter().map(|(_, n)| vec![T::default(); n * net.batch]).collect();
    let mut spikes = Vec::new();
    for t in 0..steps {
        // Inputs that change from step to step: element j is 1 at steps where (t + j) % 3 == 0.
        let xs: Vec<Vec<T>> = inputs.iter().map(|x| (0..x.len()).map(|j| T::from_f64(f64::from(u8::from((t + j) % 3 == 0)))).collect()).collect();
        let ext: Vec<&[T]> = xs.iter().map(|v| v.as_slice()).collect();
        net.step(&ext).unwrap();
        spikes.push(net.pops.iter().map(|p| p.active().to_vec()).collect());
    }
    (spikes, net.pops.iter().map(|p| p.states.clone()).collect())
}

#[test]
fn a_step_split_across_threads_equals_one_thread() {
    // The COBA benchmark network as published (4000 neurons, self- and cross-projections),
    // JIT f32, 1000 steps: the same spikes at every step and the same final states, bit
    // for bit, on 1 to 4 threads (more threads than cores included), with the default
    // chunks (one per population here) and with chunks of 1000 and 256 neurons.
    let p = program(include_str!("../../../examples/coba.snn"));
    let o = Options { seed: 3, method: Some(snnc_compiler::sema::Method::Euler), ..Options::default() };
    let build = |threads: usize, chunk: Option<usize>| {
        let mut net = Network::<f32>::build(&p, &p.networks[0], &o, &snnc_runtime::kernels::JitFactory).unwrap();
        net.set_threads(threads).unwrap();
        if let Some(c) = chunk {
            net.set_chunk(c);
        }
        assert_eq!(net.threads(), threads);
        net
    };
    let (one, one_states) = run_split(build(1, None), 1000);
    let total: usize = one.iter().flatten().flatten().map(Vec::len).sum();
    assert!(total > 5000, "the network fires ({total} spikes)");
    for (threads, chunk) in [(1, Some(256)), (2, None), (2, Some(1000)), (3, Some(256)), (4, Some(256))] {
        let (many, many_states) = run_split(build(threads, chunk), 1000);
        for (t, (a, b)) in one.iter().zip(&many).enumerate() {
            assert_eq!(a, b, "{threads} threads, chunks {chunk:?}: spikes at step {t}");
        }
        assert!(one_states == many_states, "{threads} threads, chunks {chunk:?}: final states differ");
    }
}

#[test]
fn a_split_step_equals_one_thread_with_delays_noise_inputs_readouts_and_batches() {
    // Delays, per-element noise (drawn by global element index), external inputs, dense,
    // one-to-one and sparse projections, a readout, and a batch of 3, in f64 through the
    // interpreter and the JIT.
    let p = program(include_str!("../data/mixed_small.snn"));
    let o = Options { seed: 5, batch: 3, ..Options::default() };
    for factory in [&InterpFactory as &'static dyn snnc_runtime::kernels::KernelFactory<f64>, &snnc_runtime::kernels::JitFactory] {
        let build = |threads: usize, chunk: usize| {
            let mut net = Network::<f64>::build(&p, &p.networks[0], &o, factory).unwrap();
            net.set_threads(threads).unwrap();
            net.set_chunk(chunk);
            net
        };
        let (one, one_states) = run_split(build(1, 4096), 200);
        assert!(one.iter().flatten().flatten().map(Vec::len).sum::<usize>() > 100);
        // Chunks of 16 neurons split every population (20 to 30 neurons).
        for threads in [1, 2, 3] {
            let (many, many_states) = run_split(build(threads, 16), 200);
            assert_eq!(one, many, "{} on {threads} threads", factory.name());
            assert!(one_states == many_states, "{} on {threads} threads: states differ", factory.name());
        }
    }
}

#[test]
fn noisy_chunks_of_hundreds_of_neurons_step_as_one_thread_up_and_down() {
    // Chunks longer than the step timers' head (512 neurons: a `step-timers` build calls
    // the kernel on a chunk's first 512 and then on the rest, which CI runs), stepped up
    // and, in every share but the last thread's, away from its top (its last 1024
    // neurons down, then the rest up: 1300-neuron chunks); noise drawn by element index; a
    // batch of 2, f64 through the JIT: the spikes and states of one thread.
    let p = program(
        r#"
neuron Noisy { param tau: ms = 5 ms; state v = 0.0; input I; dv/dt = (-v + I + 3.0 * randn()) / tau; spike when v > 1.0; reset v = 0.0; method euler }
network n { dt = 1 ms; layer B = Noisy[1300]; drive B.I = 0.5; connect B -> B.I sparse p = 0.01 weight 0.3 }"#,
    );
    let o = Options { seed: 11, batch: 2, ..Options::default() };
    let build = |threads: usize, chunk: usize| {
        let mut net = Network::<f64>::build(&p, &p.networks[0], &o, &snnc_runtime::kernels::JitFactory).unwrap();
        net.set_threads(threads).unwrap();
        net.set_chunk(chunk);
        net
    };
    let (one, one_states) = run_split(build(1, 4096), 300);
    assert!(one.iter().flatten().flatten().map(Vec::len).sum::<usize>() > 1000, "the network fires");
    for (threads, chunk) in [(2, 650), (2, 1300), (3, 600)] {
        let (many, many_states) = run_split(build(threads, chunk), 300);
        assert_eq!(one, many, "{threads} threads, chunks of {chunk}");
        assert!(one_states == many_states, "{threads} threads, chunks of {chunk}: states differ");
    }
}

#[test]
fn a_population_that_fails_stops_the_later_stages_of_its_phase_as_one_thread_stops() {
    // A diverges (w) while it spikes into B: on several threads the two are the stages
    // of one phase (`Network::stage_group`). The step that finds A non-finite must not
    // step B, as one thread does not: the same error, at the same step, and B's states
    // and spikes those of one thread.
    let p = program(
        r#"
neuron Boom { param tau: ms = 1 ms; param g = 1.0; state v = 0; state w = 1; dv/dt = g / tau; dw/dt = w * w / tau; spike when v > 0.5; reset v = 0; method euler }
neuron Leaky { param tau: ms = 10 ms; state u = 0; input I; du/dt = (-u + I) / tau; spike when u > 0.2; reset u = 0; method euler }
network n { dt = 0.1 ms; layer A = Boom[100] { g = U(0.5, 1.5) }; layer B = Leaky[100]; connect A -> B.I sparse p = 0.2 weight 0.3 }"#,
    );
    let run = |threads: usize| {
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &snnc_runtime::kernels::JitFactory).unwrap();
        net.set_threads(threads).unwrap();
        net.set_chunk(16);
        let mut b_spikes = 0usize;
        for step in 0.. {
            match net.step(&[]) {
                Ok(()) => b_spikes += net.pops[1].active().iter().map(Vec::len).sum::<usize>(),
                Err(e) => return (step, e.to_string(), b_spikes, net.pops[1].states.clone()),
            }
        }
        unreachable!()
    };
    let one = run(1);
    assert!(one.1.contains("state `w`") && one.1.contains("`A`"), "{}", one.1);
    assert!(one.0 > 5 && one.2 > 0, "A fails after some steps ({}) in which B spikes ({})", one.0, one.2);
    for threads in [2, 3] {
        let many = run(threads);
        assert_eq!((many.0, &many.1, many.2), (one.0, &one.1, one.2), "{threads} threads");
        assert!(many.3 == one.3, "{threads} threads: B's states differ");
    }
}

#[test]
fn a_split_step_reports_the_non_finite_state_one_thread_would() {
    let p = program(
        r#"
neuron Boom { param tau: ms = 1 ms; param g = 1.0; state v = 1; state w = 1; dv/dt = g * v * v / tau; dw/dt = w * w / tau; method euler }
network n { dt = 0.1 ms; layer B = Boom[100] { g = U(0.5, 1.5) } }"#,
    );
    let first_error = |threads: usize| {
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &snnc_runtime::kernels::JitFactory).unwrap();
        net.set_threads(threads).unwrap();
        net.set_chunk(16);
        loop {
            if let Err(e) = net.step(&[]) {
                return e.to_string();
            }
        }
    };
    let one = first_error(1);
    assert!(one.contains("state `v`") && one.contains("became"), "{one}");
    for threads in [2, 3, 4] {
        assert_eq!(first_error(threads), one, "{threads} threads");
    }
}
