//! Presynaptic synapse state (issue 19 item 2): Tsodyks–Markram `u` and `x` kept once per
//! source neuron, run at the source's spikes and decayed exactly between them, and the
//! projection delivering `w * u * x`. Against the closed-form steady state under a
//! periodic train, a fine-step reference, the interpreter (JIT bit for bit), and
//! the refusals (GPU, learning).

use crate::common::program;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::gpu::{EmuDevice, GpuNetwork};
use snnc_runtime::kernels::{InterpFactory, JitFactory};
use snnc_runtime::network::{Network, Options};

const U: f64 = 0.2;
const TAU_F: f64 = 0.3;
const TAU_D: f64 = 0.2;
const TAU_G: f64 = 0.005;
const W: f64 = 0.5;

/// One input neuron (or `n`) into one probe neuron through a facilitating and depressing
/// synapse (`on pre`: u first, the release `w * u * x`, then x), dt = 1 ms.
fn stp_text(n_in: usize, extra: &str) -> String {
    format!(
        "neuron Probe {{
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
}}
neuron LIF {{
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
    spike when v > 1 surrogate relu_grad(alpha = 0.3, width = 1.0)
    on spike {{ v -= 1 }}
}}
synapse TM {{
    param U = {U}
    param tau_f: ms = {} ms
    param tau_d: ms = {} ms
    state u = {U}
    state x = 1.0
    state g = 0 * w
    du/dt = (U - u) / tau_f
    dx/dt = (1 - x) / tau_d
    dg/dt = -g / ({} ms)
    on pre {{
        u += U * (1 - u)
        g += w * u * x
        x -= u * x
    }}
    output I = g
}}
network n {{
    dt = 1 ms
    input s: {n_in}
    layer probe = Probe[1]
    connect s -> probe.I via TM dense weight {W} as syn
    {extra}
}}",
        TAU_F * 1e3,
        TAU_D * 1e3,
        TAU_G * 1e3
    )
}

/// The stage's (u, x, efficacy) of source 0 and the probe's g, after each step of `spikes`.
fn run(net: &mut Network<f64>, spikes: &[bool]) -> Vec<(f64, f64, f64, f64)> {
    let stage_state = |net: &Network<f64>, name: &str| {
        let st = net.presynaptic_state(0).expect("a presynaptic stage");
        st.states[st.state_names.iter().position(|s| s == name).unwrap()][0]
    };
    let g_index = net.pops[0].state_names.iter().position(|s| s == "syn.g").expect("g merged in the probe");
    spikes
        .iter()
        .map(|&s| {
            let x = vec![if s { 1.0 } else { 0.0 }; net.inputs[0].1];
            net.step(&[&x]).unwrap();
            (stage_state(net, "u"), stage_state(net, "x"), stage_state(net, "_efficacy"), net.pops[0].states[g_index][0])
        })
        .collect()
}

#[test]
fn without_presynaptic_spikes_nothing_changes() {
    // Issue 19's silent wrong result: u went 0.20 -> 0.36 -> ... -> 0.997 in 50 ms with
    // no presynaptic spike, as the `on pre` statement ran on every step.
    let p = program(&stp_text(1, ""));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    for (t, (u, x, _, g)) in run(&mut net, &[false; 50]).into_iter().enumerate() {
        // u = U is the fixed point of its exact propagator (to rounding).
        assert!((u - U).abs() < 1e-15 && x == 1.0 && g == 0.0, "step {t}: u {u}, x {x}, g {g}");
    }
}

#[test]
fn periodic_train_reaches_the_tsodyks_markram_steady_state() {
    // Spikes every k steps (T = k dt): between spikes u relaxes to U and x to 1 exactly
    // (exp(-T / tau)); at a spike u+ = u- + U (1 - u-), the release is u+ x-, and
    // x+ = x- (1 - u+). Fixed point: u- = U / (1 - (1 - U) E_f),
    // x- = (1 - E_d) / (1 - (1 - u+) E_d).
    for k in [10usize, 25, 80] {
        let p = program(&stp_text(1, ""));
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
        let spikes: Vec<bool> = (0..k * 150).map(|t| t % k == 0).collect();
        let trace = run(&mut net, &spikes);
        let period = k as f64 * 1e-3;
        let (ef, ed) = ((-period / TAU_F).exp(), (-period / TAU_D).exp());
        let u_minus = U / (1.0 - (1.0 - U) * ef);
        let u_plus = u_minus + U * (1.0 - u_minus);
        let x_minus = (1.0 - ed) / (1.0 - (1.0 - u_plus) * ed);
        let last = k * 149;
        let (u, x, eff, g) = trace[last];
        let (_, _, _, g_before) = trace[last - 1];
        // The state is read after the step's decay over dt.
        let (sf, sd) = ((-1e-3 / TAU_F).exp(), (-1e-3 / TAU_D).exp());
        assert!((eff - u_plus * x_minus).abs() < 1e-9, "k = {k}: efficacy {eff}, closed form {}", u_plus * x_minus);
        assert!((u - (U + (u_plus - U) * sf)).abs() < 1e-9, "k = {k}: u {u}");
        assert!((x - (1.0 + (x_minus * (1.0 - u_plus) - 1.0) * sd)).abs() < 1e-9, "k = {k}: x {x}");
        // The probe's g jumped by w u+ x- at the spike, then decayed over the step.
        let jump = g / (-1e-3 / TAU_G).exp() - g_before;
        assert!((jump - W * u_plus * x_minus).abs() < 1e-9, "k = {k}: delivered {jump}, want {}", W * u_plus * x_minus);
    }
}

#[test]
fn event_driven_updates_equal_a_fine_step_reference() {
    // An irregular train; the reference integrates u and x with Euler steps of 1 us
    // and applies each spike's statements in order.
    let spikes: Vec<bool> = (0..400).map(|t| matches!(t % 37, 0 | 3 | 4 | 20) || t % 101 == 50).collect();
    let p = program(&stp_text(1, ""));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    let trace = run(&mut net, &spikes);
    let (mut u, mut x) = (U, 1.0);
    let sub = 1000;
    let h = 1e-3 / sub as f64;
    for (t, &s) in spikes.iter().enumerate() {
        let mut release = None;
        if s {
            u += U * (1.0 - u);
            release = Some(u * x);
            x -= u * x;
        }
        for _ in 0..sub {
            u += h * (U - u) / TAU_F;
            x += h * (1.0 - x) / TAU_D;
        }
        let (su, sx, eff, _) = trace[t];
        assert!((su - u).abs() < 1e-5 && (sx - x).abs() < 1e-5, "step {t}: ({su}, {sx}) vs ({u}, {x})");
        if let Some(r) = release {
            assert!((eff - r).abs() < 1e-5, "step {t}: efficacy {eff} vs {r}");
        }
    }
}

#[test]
fn jit_equals_interpreter_with_presynaptic_state() {
    // A spiking recurrent layer with depressing synapses, delayed and sparse.
    let extra = "layer rec = LIF[30]
    connect s -> rec.I via TM sparse p = 0.5 weight 3.0 as in_rec
    connect rec -> rec.I via TM { U = 0.5 } sparse p = 0.2 weight 0.4 delay 2 ms as rec_rec";
    let p = program(&stp_text(20, extra));
    let o = Options { seed: 3, batch: 2, ..Options::default() };
    let mut a = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let mut b = Network::<f64>::build(&p, &p.networks[0], &o, &JitFactory).unwrap();
    let mut fired = 0.0;
    for t in 0..300 {
        let x: Vec<f64> = (0..40).map(|j| if (t * 7 + j * 13) % 19 == 0 { 1.0 } else { 0.0 }).collect();
        a.step(&[&x]).unwrap();
        b.step(&[&x]).unwrap();
        for (pa, pb) in a.pops.iter().zip(&b.pops) {
            assert_eq!(pa.states, pb.states, "step {t}");
            fired += pa.spikes().iter().sum::<f64>();
        }
        for pr in 0..3 {
            assert_eq!(a.presynaptic_state(pr).map(|s| &s.states), b.presynaptic_state(pr).map(|s| &s.states), "step {t}");
        }
    }
    assert!(fired > 50.0, "the recurrent layer fires ({fired})");
    // The recurrent stage depressed: some x well below 1.
    let st = a.presynaptic_state(2).unwrap();
    let xi = st.state_names.iter().position(|s| s == "x").unwrap();
    assert!(st.states[xi].iter().any(|&x| x < 0.9));
    // Reset: back to the start, the stage too.
    a.reset();
    assert!(a.presynaptic_state(2).unwrap().states[xi].iter().all(|&x| x == 1.0));
}

#[test]
fn an_analog_source_is_refused_at_run_time() {
    let p = program(&stp_text(1, ""));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    net.step(&[&[1.0]]).unwrap();
    let err = net.step(&[&[0.5]]).unwrap_err().to_string();
    assert!(err.contains("`syn.pre`: the presynaptic state of a synapse needs spikes (0 or 1)") && err.contains("0.5"), "{err}");
}

#[test]
fn learning_refuses_presynaptic_state_and_the_gpu_runs_it() {
    let p = program(&stp_text(1, ""));
    // The GPU backend runs it (tests/all/gpu_plastic.rs compares whole networks).
    let host = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    for t in 0..60 {
        let x = [if t % 7 == 0 { 1.0 } else { 0.0 }];
        cpu.step(&[&x]).unwrap();
        gpu.step(&[&x]).unwrap();
    }
    gpu.fetch(true).unwrap();
    let (a, b) = (&cpu.pops[0].states, &gpu.host.pops[0].states);
    assert!(a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(1.0)), "{a:?} {b:?}");
    assert!(a.iter().flatten().any(|&v| v != 0.0));
    let o = Options { learning: true, ..Options::default() };
    let err = Network::<f64>::build(&p, &p.networks[0], &o, &InterpFactory).err().expect("refused").to_string();
    assert!(err.contains("training through presynaptic synapse state"), "{err}");
}

/// A step split across threads (chunks of 8 neurons) equals one thread with everything
/// that runs once per step before the chunks deliver, or per chunk: presynaptic stages,
/// a delay per synapse, procedural connectivity and an adapter.
#[test]
fn a_split_step_equals_one_thread_with_stages_per_synapse_delays_procedural_and_adapters() {
    let extra = "layer rec = LIF[30]
    connect s -> rec.I via TM sparse p = 0.5 weight 3.0 as in_rec
    connect rec -> rec.I via TM { U = 0.5 } sparse p = 0.2 weight 0.4 delay 2 ms as rec_rec
    connect s -> rec.I procedural p = 0.3 weight 0.5 as proc
    connect rec -> rec.I sparse p = 0.2 weight 0.3 delay U(1 ms, 4 ms) as syn_delayed
    connect s -> rec.I dense weight 0.1 adapter rank 2 as adapted";
    let p = program(&stp_text(20, extra));
    let o = Options { seed: 3, batch: 2, ..Options::default() };
    let run = |threads: usize| {
        let mut net = Network::<f64>::build(&p, &p.networks[0], &o, &JitFactory).unwrap();
        net.set_threads(threads).unwrap();
        net.set_chunk(8);
        let v = ndarray::Array2::from_shape_fn((2, 30), |(k, j)| 0.3 * ((k * 30 + j) as f64).sin());
        net.set_trainable("adapted.V", v).unwrap();
        let mut out = Vec::new();
        for t in 0..200 {
            let x: Vec<f64> = (0..40).map(|j| if (t * 7 + j * 13) % 19 == 0 { 1.0 } else { 0.0 }).collect();
            net.step(&[&x]).unwrap();
            out.push(net.pops.iter().flat_map(|p| p.states.iter().flatten().copied()).collect::<Vec<f64>>());
        }
        out
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(run(threads) == one, "{threads} threads differ from one");
    }
}
