//! Saturating NMDA gating per presynaptic neuron (issue 19 item 2, nonlinear: "per step
//! where the equations are not linear"): `x` and `s` of Wang (2002) kept once per source
//! neuron, `x += 1` at the source's spikes, `ds/dt = -s / tau_d + alpha x (1 - s)` every
//! step, and the projection delivering `sum_j w_j s_j` every step (a gated stage).
//! Against a fine-step Euler reference, the interpreter (JIT bit for bit) and the
//! refusals (GPU, learning).

use crate::common::program;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::gpu::{EmuDevice, GpuNetwork};
use snnc_runtime::kernels::{InterpFactory, JitFactory};
use snnc_runtime::network::{Network, Options};

const TAU_R: f64 = 0.002;
const TAU_D: f64 = 0.1;
const ALPHA: f64 = 500.0;
const W: f64 = 0.5;

/// `n_in` inputs into one probe neuron integrating its input (`dv/dt = I / 1 s`, so
/// each step's increment is `dt` times the delivered `w s`), through NMDA gating.
fn nmda_text(n_in: usize, dt_ms: f64, extra: &str) -> String {
    format!(
        "neuron Probe {{
    state v = 0.0
    input I
    dv/dt = I / (1 s)
}}
neuron LIF {{
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
    spike when v > 1 surrogate relu_grad(alpha = 0.3, width = 1.0)
    on spike {{ v -= 1 }}
}}
synapse NMDA {{
    param tau_r: ms = {} ms
    param tau_d: ms = {} ms
    param alpha: kHz = {} kHz
    state x = 0
    state s = 0
    dx/dt = -x / tau_r
    ds/dt = -s / tau_d + alpha * x * (1 - s)
    on pre {{ x += 1 }}
    output I = w * s
}}
network n {{
    dt = {dt_ms} ms
    input pre: {n_in}
    layer probe = Probe[1]
    connect pre -> probe.I via NMDA dense weight {W} as syn
    {extra}
}}",
        TAU_R * 1e3,
        TAU_D * 1e3,
        ALPHA * 1e-3
    )
}

/// The stage's (x, s) of source 0 and the probe's v after each step of `spikes`.
fn run(net: &mut Network<f64>, spikes: &[bool]) -> Vec<(f64, f64, f64)> {
    let stage_state = |net: &Network<f64>, name: &str| {
        let st = net.presynaptic_state(0).expect("a presynaptic stage");
        st.states[st.state_names.iter().position(|s| s == name).unwrap()][0]
    };
    spikes
        .iter()
        .map(|&s| {
            let x = vec![if s { 1.0 } else { 0.0 }; net.inputs[0].1];
            net.step(&[&x]).unwrap();
            (stage_state(net, "x"), stage_state(net, "s"), net.pops[0].states[0][0])
        })
        .collect()
}

/// The largest difference of s from an Euler reference with steps of dt / 1000 (a spike
/// of step t adds 1 to x at its start), over a burst and isolated spikes, and checks
/// that the probe receives `w s` of the step every step.
fn error_against_fine_euler(dt: f64) -> f64 {
    let steps = (0.3 / dt).round() as usize;
    let at = |ms: f64| (ms * 1e-3 / dt).round() as usize;
    let times: Vec<usize> = [10.0, 12.0, 14.0, 16.0, 18.0, 60.0, 61.0, 150.0].iter().map(|&ms| at(ms)).collect();
    let spikes: Vec<bool> = (0..steps).map(|t| times.contains(&t)).collect();
    let p = program(&nmda_text(1, dt * 1e3, ""));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    let trace = run(&mut net, &spikes);
    let (mut x, mut s, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    let mut x_exact = 0.0f64;
    let sub = 1000;
    let h = dt / sub as f64;
    let mut v_before = 0.0;
    for (t, &spike) in spikes.iter().enumerate() {
        if spike {
            x += 1.0;
            x_exact += 1.0;
        }
        x_exact *= (-dt / TAU_R).exp();
        for _ in 0..sub {
            let ds = -s / TAU_D + ALPHA * x * (1.0 - s);
            x -= h * x / TAU_R;
            s += h * ds;
        }
        let (sx, ss, v) = trace[t];
        // x decays exactly (linear): its closed form, to rounding.
        assert!((sx - x_exact).abs() < 1e-12, "step {t}: x {sx} vs {x_exact}");
        worst = worst.max((ss - s).abs());
        // Delivered every step, spike or not: the probe's increment is dt w s^t.
        assert!(((v - v_before) / dt - W * ss).abs() < 1e-9, "step {t}: delivered {} vs w s = {}", (v - v_before) / dt, W * ss);
        v_before = v;
    }
    // The burst saturates s well above one spike's share, and it decays with tau_d.
    let peak = trace.iter().map(|r| r.1).fold(0.0, f64::max);
    assert!(peak > 0.8 && trace[steps - 1].1 < 0.5 * peak, "peak {peak}, end {}", trace[steps - 1].1);
    worst
}

#[test]
fn saturating_gating_follows_a_fine_step_reference() {
    // The stage's integrator (chosen per model: exponential Euler, x frozen over a step)
    // is first order: the error falls with dt.
    let coarse = error_against_fine_euler(1e-4);
    let fine = error_against_fine_euler(1e-5);
    eprintln!("max |s - s_ref|: {coarse:.2e} at dt = 0.1 ms, {fine:.2e} at dt = 0.01 ms");
    assert!(coarse < 2e-2, "dt = 0.1 ms: |s - s_ref| up to {coarse}");
    assert!(fine < 2e-3, "dt = 0.01 ms: |s - s_ref| up to {fine}");
    assert!(fine < coarse / 5.0, "first order: {coarse} at 0.1 ms, {fine} at 0.01 ms");
}

#[test]
fn without_presynaptic_spikes_nothing_is_delivered() {
    let p = program(&nmda_text(1, 0.1, ""));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    assert!(run(&mut net, &[false; 100]).into_iter().all(|(x, s, v)| x == 0.0 && s == 0.0 && v == 0.0));
}

#[test]
fn jit_equals_interpreter_with_nmda_gating() {
    // A spiking recurrent layer with saturating gating: dense, sparse and delayed.
    let extra = "layer rec = LIF[30]
    connect pre -> rec.I via NMDA sparse p = 0.5 weight 0.4 as in_rec
    connect rec -> rec.I via NMDA { tau_d = 50 ms } sparse p = 0.2 weight 0.3 delay 2 ms as rec_rec
    connect rec -> probe.I via NMDA dense weight 0.1 as rec_probe";
    let p = program(&nmda_text(20, 1.0, extra));
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
        for pr in 0..4 {
            assert_eq!(a.presynaptic_state(pr).map(|s| &s.states), b.presynaptic_state(pr).map(|s| &s.states), "step {t}");
        }
    }
    assert!(fired > 50.0, "the recurrent layer fires ({fired})");
    // The recurrent gating is on: some s of the recurrent stage well above 0.
    let st = a.presynaptic_state(2).unwrap();
    let si = st.state_names.iter().position(|s| s == "s").unwrap();
    assert!(st.states[si].iter().any(|&s| s > 0.1));
    a.reset();
    assert!(a.presynaptic_state(2).unwrap().states[si].iter().all(|&s| s == 0.0));
}

#[test]
fn learning_refuses_nmda_gating_and_the_gpu_runs_it() {
    let p = program(&nmda_text(1, 0.1, ""));
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
