//! The Cranelift backend against the reference interpreter kernel: every stdlib model,
//! the composed populations of the COBA and CUBA examples and two synthetic models that
//! use every op (one with calls, scalar loop; one without, vector loop), 1000 steps on
//! 64 neurons (67 for the synthetic ones, to exercise the remainder loops).
//!
//! f64: spikes identical every step, states equal to 1e-12 relative (in practice bit for
//! bit: same operations in the same order).
//! f32: the kernel computes in f32 while the reference is f64, so each step adds about
//! one f32 rounding (6e-8 relative) per operation, and a leaky state integrates those
//! errors over its memory of tau/dt ~ 100-200 steps: a few 1e-6 relative, which is why
//! states are checked to `F32_REL` = 1e-4 of the state's scale (the largest magnitude the
//! reference has reached), with margin for the non-linear models. A spike can move by
//! one step when the membrane crosses the threshold within that error; from then on the
//! neuron's trajectories differ by a whole reset, so a neuron is compared only until its
//! first spike mismatch, spikes must be identical for the first `horizon` steps, and at
//! most 10% of the neurons may shift a spike within 1000 steps (horizon 100 steps: a
//! shift needs a threshold crossing within the f32 error, ~1e-2 per spike here).
//! Izhikevich and HH are excitable: during an upstroke a tiny timing difference is a
//! large voltage difference before the spike is even detected, so their f32 states are
//! compared only over the 100-step horizon, and up to 25% may shift a spike.

use crate::common::{Lcg, const_overrides, example_populations, input_scale, load, param_values, stdlib_models};
use snnc_compiler::SourceMap;
use snnc_compiler::backend::cranelift::{JitError, JitKernel, JitOptions};
use snnc_compiler::backend::interp::InterpKernel;
use snnc_compiler::backend::x86::{self, Isa};
use snnc_compiler::backend::{ParamSpec, Precision, RandomCtx, StepArgs, StepKernel};
use snnc_compiler::discretise::{Step, discretise};
use snnc_compiler::sema::{self, Init, Model, SymId};
use snnc_compiler::units::{self, Dim};

const DT: f64 = 1e-4;
const STEPS: usize = 1000;
const F32_REL: f64 = 1e-4;

/// How much the initial states are spread around their declared value.
fn spread(dim: Dim) -> f64 {
    match dim {
        d if d == units::VOLT => 0.005,
        d if d == Dim::ONE => 0.3,
        _ => 0.0,
    }
}

struct Case {
    name: String,
    step: Step,
    params: Vec<f64>,
    /// Initial state distribution per state.
    init: Vec<Init>,
    /// Spikes must agree between f32 and f64 for this many steps.
    horizon: usize,
    /// At most this fraction of the neurons may shift a spike in f32 within STEPS.
    max_shifted: f64,
    /// Excitable model: f32 states are compared only within the horizon (see below).
    excitable: bool,
}

fn case(name: String, step: Step, overrides: &[(SymId, f64)], settings: &[(SymId, Init)]) -> Case {
    let params = param_values(&step, overrides, DT);
    let init = step
        .layout
        .states
        .iter()
        .map(|&s| {
            if let Some((_, i)) = settings.iter().find(|(id, _)| *id == s) {
                return *i;
            }
            let sym = &step.model.symbols[s];
            let v = sym.value.as_ref().and_then(|v| v.const_value()).unwrap_or(0.0);
            let sp = spread(sym.dim);
            if sym.dim == units::VOLT { Init::Uniform { low: v - sp, high: v + sp } } else { Init::Uniform { low: v, high: v + sp } }
        })
        .collect();
    let (horizon, max_shifted, excitable) = match step.model.name.as_str() {
        "HH" | "Izhikevich" => (100, 0.25, true),
        _ => (100, 0.1, false),
    };
    Case { name, step, params, init, horizon, max_shifted, excitable }
}

fn stdlib_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (rel, m) in stdlib_models() {
        let step = discretise(&m).unwrap_or_else(|d| panic!("{}: {}", m.name, d.message)).at_dt(DT);
        out.push(case(format!("{rel}:{}", m.name), step, &[], &[]));
    }
    out
}

fn network_cases() -> Vec<Case> {
    let nets = [("examples/coba.snn", "coba"), ("examples/cuba.snn", "cuba")];
    let mut out = Vec::new();
    for (name, g) in example_populations(&nets) {
        let step = discretise(&g.model).unwrap_or_else(|d| panic!("{name}: {}", d.message)).at_dt(DT);
        out.push(case(name, step, &const_overrides(&g.settings), &g.settings));
    }
    out
}

fn source_case(name: &str, text: &str) -> Case {
    let mut sources = SourceMap::new();
    let (p, d) = sema::check_source("ops.snn", text, &mut sources);
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&d, &sources));
    let step = discretise(&p.models[0]).unwrap_or_else(|d| panic!("{name}: {}", d.message)).at_dt(DT);
    case(name.into(), step, &[], &[])
}

/// Every op that needs a call (transcendentals, random draws), plus the rest.
const CALL_OPS: &str = include_str!("../data/every_op_calls.snn");

/// Every op the vector loop supports (no calls: Euler, no transcendentals).
const VECTOR_OPS: &str = include_str!("../data/every_op_vector.snn");

struct Pop<T> {
    states: Vec<Vec<T>>,
    spikes: Vec<T>,
}

impl<T: Copy + Into<f64>> Pop<T> {
    fn step(&mut self, k: &dyn StepKernel<T>, inputs: &[Vec<T>], params: &[Vec<T>], t: usize) {
        self.step_ordered(k, inputs, params, t, false);
    }

    /// [`Pop::step`], from the last element to the first when `descending` (where the
    /// kernel can: `StepKernel::step_checked_descending`). The kernel's word on the new
    /// states is checked too: the runtime skips its search for a non-finite state when
    /// a kernel says that all are finite, so one that said so wrongly would let a NaN
    /// run on in silence.
    fn step_ordered(&mut self, k: &dyn StepKernel<T>, inputs: &[Vec<T>], params: &[Vec<T>], t: usize, descending: bool) {
        let mut states: Vec<&mut [T]> = self.states.iter_mut().map(|s| s.as_mut_slice()).collect();
        let inputs: Vec<&[T]> = inputs.iter().map(|s| s.as_slice()).collect();
        let params: Vec<&[T]> = params.iter().map(|s| s.as_slice()).collect();
        let args = StepArgs {
            states: &mut states,
            inputs: &inputs,
            params: &params,
            spikes: &mut self.spikes,
            t: t as f64 * DT,
            random: RandomCtx { seed: 0x1234_5678_9abc, step: t as u64, offset: 0 },
        };
        let checked = if descending { k.step_checked_descending(args) } else { k.step_checked(args) };
        if checked == Some(true) {
            assert!(self.states.iter().flatten().all(|x| (*x).into().is_finite()), "{} at step {t}: a non-finite state, said to be finite", k.generator());
        }
    }
}

/// States and spikes equal to the bit (NaNs equal whatever their payload).
fn same_bits<T: Copy + Into<f64>>(a: &Pop<T>, b: &Pop<T>) -> bool {
    let eq = |x: &T, y: &T| {
        let (x, y): (f64, f64) = ((*x).into(), (*y).into());
        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
    };
    a.spikes.iter().zip(&b.spikes).all(|(x, y)| eq(x, y)) && a.states.iter().zip(&b.states).all(|(u, v)| u.iter().zip(v).all(|(x, y)| eq(x, y)))
}

fn to32(v: &[Vec<f64>]) -> Vec<Vec<f32>> {
    v.iter().map(|s| s.iter().map(|&x| x as f32).collect()).collect()
}

/// A case's test data for `n` neurons: param specs (one per-neuron param, the first
/// or the last usable one), that param's values, the initial states, each input's scale
/// and base level, and the random stream the inputs are drawn from afterwards.
struct Data {
    specs: Vec<ParamSpec>,
    params: Vec<Vec<f64>>,
    states: Vec<Vec<f64>>,
    in_scale: Vec<f64>,
    base: Vec<Vec<f64>>,
    rng: Lcg,
}

fn data(c: &Case, n: usize, last_param: bool) -> Data {
    let step = &c.step;
    let mut rng = Lcg(c.name.bytes().fold(0x5eed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    // One heterogeneous param (the first with a non-zero value), the rest uniform.
    let usable = |v: &f64| v.is_finite() && *v != 0.0;
    let hetero = if last_param { c.params.iter().rposition(usable) } else { c.params.iter().position(usable) };
    let specs: Vec<ParamSpec> =
        c.params.iter().enumerate().map(|(k, &v)| if Some(k) == hetero { ParamSpec::PerNeuron } else { ParamSpec::Uniform(v) }).collect();
    let params: Vec<Vec<f64>> = hetero.iter().map(|&k| (0..n).map(|_| c.params[k] * (1.0 + 0.2 * rng.sym())).collect()).collect();
    let states: Vec<Vec<f64>> = c
        .init
        .iter()
        .map(|i| {
            (0..n)
                .map(|_| match *i {
                    Init::Const(v) => v,
                    Init::Uniform { low, high } => low + (high - low) * rng.next(),
                    Init::Normal { mean, std } => mean + std * rng.sym(),
                    Init::Data(_) => unreachable!("the stdlib's models read no files"),
                })
                .collect()
        })
        .collect();
    let in_scale: Vec<f64> = step.layout.inputs.iter().map(|&s| input_scale(&step.model.name, step.model.symbols[s].dim)).collect();
    let base: Vec<Vec<f64>> = in_scale.iter().map(|s| (0..n).map(|_| s * (0.3 + 1.2 * rng.next())).collect()).collect();

    Data { specs, params, states, in_scale, base, rng }
}

/// Runs the interpreter (f64) and the JIT (f64 and f32) side by side; panics on a
/// mismatch. Returns the number of spikes of the reference. One param is per-neuron:
/// the first non-zero one (usually a time constant, so `exp(-dt/tau)` stays a call
/// and the loop is scalar) or the last (usually a threshold: the loop is vectorised).
fn check(c: &Case, n: usize, last_param: bool) -> usize {
    let step = &c.step;
    let Data { specs, params, states, in_scale, base, mut rng } = data(c, n, last_param);
    let interp = InterpKernel::new(step, &specs).unwrap();
    let jit64 = JitKernel::compile(step, &specs, Precision::F64).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let jit32 = JitKernel::compile(step, &specs, Precision::F32).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    // Cranelift's kernels beside the default ones (AVX-512 or AVX2 where the machine
    // has it).
    let cranelift = JitOptions { x86: None, ..JitOptions::default() };
    let cl64 = JitKernel::compile_with(step, &specs, Precision::F64, cranelift.clone()).unwrap();
    let cl32 = JitKernel::compile_with(step, &specs, Precision::F32, cranelift).unwrap();
    assert_eq!(cl32.generator(), "cranelift");
    if let Some(isa) = x86::host() {
        for k in [&jit32, &jit64].into_iter().filter(|k| k.is_vectorised()) {
            assert_eq!(k.generator(), isa.name(), "{}: {:?}", c.name, k.why_not_x86());
        }
    }
    let spiking = step.spike.is_some();
    let ns = if spiking { n } else { 0 };
    let mut reference = Pop { states: states.clone(), spikes: vec![0.0; ns] };
    let mut j64 = Pop { states: states.clone(), spikes: vec![0.0; ns] };
    let mut j32 = Pop { states: to32(&states), spikes: vec![0.0f32; ns] };
    let mut c64 = Pop { states: states.clone(), spikes: vec![0.0; ns] };
    let mut c32 = Pop { states: to32(&states), spikes: vec![0.0f32; ns] };
    // The default kernels run from the last element to the first.
    let mut d64 = Pop { states: states.clone(), spikes: vec![0.0; ns] };
    let mut d32 = Pop { states: to32(&states), spikes: vec![0.0f32; ns] };
    let params32 = to32(&params);
    let mut shifted = vec![false; n];
    let mut scale = vec![0.0f64; states.len()];
    let (mut worst64, mut worst32) = (0.0f64, 0.0f64);
    let mut total = 0;
    let mut first_shift = STEPS;
    for t in 0..STEPS {
        // Each neuron's own level plus noise, drawn afresh every step.
        let inputs: Vec<Vec<f64>> = base.iter().zip(&in_scale).map(|(b, s)| b.iter().map(|x| x + 0.5 * s * rng.sym()).collect()).collect();
        reference.step(&interp, &inputs, &params, t);
        j64.step(&jit64, &inputs, &params, t);
        j32.step(&jit32, &to32(&inputs), &params32, t);
        c64.step(&cl64, &inputs, &params, t);
        c32.step(&cl32, &to32(&inputs), &params32, t);
        d64.step_ordered(&jit64, &inputs, &params, t, true);
        d32.step_ordered(&jit32, &to32(&inputs), &params32, t, true);
        assert!(same_bits(&j64, &d64), "{}: f64 {} kernel differs run backwards at step {t}", c.name, jit64.generator());
        assert!(same_bits(&j32, &d32), "{}: f32 {} kernel differs run backwards at step {t}", c.name, jit32.generator());
        // The two generators compute the same values to the bit, in both precisions.
        assert!(same_bits(&j64, &c64), "{}: f64 {} and cranelift kernels differ at step {t}", c.name, jit64.generator());
        assert!(same_bits(&j32, &c32), "{}: f32 {} and cranelift kernels differ at step {t}", c.name, jit32.generator());
        assert_eq!(reference.spikes, j64.spikes, "{}: f64 spikes differ at step {t}", c.name);
        total += reference.spikes.iter().filter(|s| **s != 0.0).count();
        for (k, (r, j)) in reference.states.iter().zip(&j64.states).enumerate() {
            for i in 0..n {
                let err = (r[i] - j[i]).abs();
                let rel = if err == 0.0 { 0.0 } else { err / r[i].abs().max(j[i].abs()) };
                worst64 = worst64.max(rel);
                assert!(rel <= 1e-12, "{}: f64 state {} of neuron {i} at step {t}: {} vs {}", c.name, step.state_name(k), r[i], j[i]);
            }
        }
        for (i, sh) in shifted.iter_mut().enumerate().take(ns) {
            if !*sh && reference.spikes[i] != f64::from(j32.spikes[i]) {
                assert!(t >= c.horizon, "{}: f32 spike of neuron {i} differs at step {t} (< {})", c.name, c.horizon);
                first_shift = first_shift.min(t);
                *sh = true;
            }
        }
        for (k, (r, j)) in reference.states.iter().zip(&j32.states).enumerate() {
            if c.excitable && t >= c.horizon {
                break;
            }
            scale[k] = r.iter().fold(scale[k], |m, x| m.max(x.abs()));
            for i in (0..n).filter(|&i| !shifted[i]) {
                let err = (r[i] - f64::from(j[i])).abs() / scale[k].max(f64::MIN_POSITIVE);
                worst32 = worst32.max(err);
                assert!(err <= F32_REL, "{}: f32 state {} of neuron {i} at step {t}: {} vs {} (scale {})", c.name, step.state_name(k), r[i], j[i], scale[k]);
            }
        }
    }
    let n_shifted = shifted.iter().filter(|s| **s).count();
    eprintln!(
        "{:32} vec={} spikes={total:6} f64 worst rel {worst64:.1e}, f32 worst {worst32:.1e}, shifted {n_shifted}/{n}, first at {first_shift}",
        c.name,
        jit32.is_vectorised()
    );
    assert!(n_shifted as f64 <= c.max_shifted * n as f64, "{}: {n_shifted} of {n} neurons shifted a spike in f32", c.name);
    total
}

fn check_stdlib(last_param: bool) {
    let cases = stdlib_cases();
    assert!(cases.len() >= 13, "{}", cases.len());
    for c in &cases {
        let spikes = check(c, 64, last_param);
        if c.step.spike.is_some() {
            assert!(spikes > 0, "{}: the test input never made it spike", c.name);
        }
    }
}

#[test]
fn stdlib_models_match_interpreter() {
    check_stdlib(false);
}

#[test]
fn stdlib_models_match_interpreter_vectorised() {
    check_stdlib(true);
}

/// The x86 kernels (AVX-512 and AVX2, each where the machine runs it) and Cranelift's
/// of every stdlib model, the examples' populations and the synthetic vector ops, at
/// lengths with and without a tail (AVX-512: 16 f32 or 8 f64 lanes; AVX2 8 or 4;
/// Cranelift 4 or 2 and a scalar loop): the same states and spikes to the bit for 100
/// steps. Where the machine runs neither, the listing test (`x86_listing_of_lif`) still
/// checks the generated code.
#[test]
fn x86_and_cranelift_kernels_agree_to_the_bit() {
    let mut cases = stdlib_cases();
    cases.extend(network_cases());
    cases.push(source_case("VectorOps", VECTOR_OPS));
    let isas: Vec<Isa> = generators().into_iter().flatten().collect();
    let mut native = 0;
    for c in &cases {
        for n in [1, 5, 8, 16, 21, 24, 69] {
            let d = data(c, n, true);
            for precision in [Precision::F32, Precision::F64] {
                let cranelift = JitKernel::compile_with(&c.step, &d.specs, precision, JitOptions { x86: None, ..JitOptions::default() }).unwrap();
                for &isa in &isas {
                    let a = JitKernel::compile_with(&c.step, &d.specs, precision, JitOptions { x86: Some(isa), ..JitOptions::default() }).unwrap();
                    // Every step Cranelift vectorises is the x86 generator's in `isa`.
                    if cranelift.is_vectorised() {
                        assert_eq!(a.generator(), isa.name(), "{} n={n} {precision:?}: {:?}", c.name, a.why_not_x86());
                        native += 1;
                    }
                    let mut rng = d.rng.clone();
                    let mut rng_b = rng.clone();
                    let (x, y) = (run_for_bits(c, n, &d, &a, precision, &mut rng), run_for_bits(c, n, &d, &cranelift, precision, &mut rng_b));
                    let first = x.iter().zip(&y).position(|(p, q)| p != q);
                    assert_eq!(first, None, "{} n={n} {precision:?}: {} and cranelift differ (value {first:?})", c.name, a.generator());
                }
            }
        }
    }
    assert!(native >= isas.len() * cases.len() * 7, "only {native} x86 kernels");
}

/// The states and spikes (their bits; NaN as 1) of 100 steps of `k` from `d`'s start,
/// with inputs drawn from `rng` (`n` elements).
fn run_for_bits(c: &Case, n: usize, d: &Data, k: &JitKernel, precision: Precision, rng: &mut Lcg) -> Vec<u64> {
    let ns = if c.step.spike.is_some() { n } else { 0 };
    let mut out = Vec::new();
    if precision == Precision::F64 {
        let mut pop = Pop { states: d.states.clone(), spikes: vec![0.0; ns] };
        for t in 0..100 {
            let inputs: Vec<Vec<f64>> = d.base.iter().zip(&d.in_scale).map(|(b, s)| b.iter().map(|x| x + 0.5 * s * rng.sym()).collect()).collect();
            pop.step(k, &inputs, &d.params, t);
            out.extend(pop.states.iter().flatten().chain(&pop.spikes).map(|x| if x.is_nan() { 1 } else { x.to_bits() }));
        }
    } else {
        let mut pop = Pop { states: to32(&d.states), spikes: vec![0.0f32; ns] };
        for t in 0..100 {
            let inputs: Vec<Vec<f64>> = d.base.iter().zip(&d.in_scale).map(|(b, s)| b.iter().map(|x| x + 0.5 * s * rng.sym()).collect()).collect();
            pop.step(k, &to32(&inputs), &to32(&d.params), t);
            out.extend(pop.states.iter().flatten().chain(&pop.spikes).map(|x| if x.is_nan() { 1 } else { u64::from(x.to_bits()) }));
        }
    }
    out
}

#[test]
fn network_populations_match_interpreter() {
    let cases = network_cases();
    assert_eq!(cases.len(), 4);
    for c in &cases {
        assert!(check(c, 64, false) > 0, "{}: no spikes", c.name);
        assert!(check(c, 64, true) > 0, "{}: no spikes", c.name);
    }
}

#[test]
fn every_op_matches_interpreter() {
    let calls = source_case("CallOps", CALL_OPS);
    let vector = source_case("VectorOps", VECTOR_OPS);
    assert!(calls.step.random_slots >= 2);
    // 67 = 16 * 4 + 3: the unrolled, single-vector and scalar loops all run.
    assert!(check(&calls, 67, false) > 0);
    assert!(check(&vector, 67, false) > 0);
    let specs: Vec<ParamSpec> = vector.params.iter().map(|&v| ParamSpec::Uniform(v)).collect();
    assert!(JitKernel::compile(&vector.step, &specs, Precision::F32).unwrap().is_vectorised());
    let specs: Vec<ParamSpec> = calls.params.iter().map(|&v| ParamSpec::Uniform(v)).collect();
    assert!(!JitKernel::compile(&calls.step, &specs, Precision::F64).unwrap().is_vectorised());
}

fn lif() -> (Step, Vec<ParamSpec>) {
    let program = load("stdlib/lif.snn");
    let m: &Model = program.models.iter().find(|m| m.name == "LIFHard").unwrap();
    let step = discretise(m).unwrap().at_dt(DT);
    let mut specs: Vec<ParamSpec> = param_values(&step, &[], DT).into_iter().map(ParamSpec::Uniform).collect();
    specs[0] = ParamSpec::PerNeuron;
    (step, specs)
}

#[test]
fn bad_arguments_are_refused() {
    let (step, specs) = lif();
    // Compile-time errors.
    let e = JitKernel::compile(&step, &specs[1..], Precision::F32).err().expect("too few specs");
    assert!(e.0.contains("param specs"), "{e}");
    // dt is the step's: a step without one (symbolic) or with a bad one is refused.
    let e = JitKernel::compile(&Step { dt: None, ..step.clone() }, &specs, Precision::F32).err().expect("no dt");
    assert!(e.0.contains("no time step"), "{e}");
    assert!(JitKernel::compile(&step.clone().at_dt(0.0), &specs, Precision::F32).is_err());
    assert!(JitKernel::compile(&step.clone().at_dt(f64::NAN), &specs, Precision::F32).is_err());

    let k = JitKernel::compile(&step, &specs, Precision::F32).unwrap();
    let n = 8;
    let mut v = vec![0.5f32; n];
    let mut r = vec![0.0f32; n];
    let input = vec![1.0f32; n];
    let tau = vec![0.01f32; n];
    let mut spikes = vec![0.0f32; n];
    let short = vec![1.0f32; n - 1];
    let mut short_spikes = vec![0.0f32; n - 1];
    let random = RandomCtx::default();
    let attempt = |v: &mut [f32], r: &mut [f32], inputs: &[&[f32]], params: &[&[f32]], spikes: &mut [f32]| {
        let mut st: Vec<&mut [f32]> = vec![v, r];
        k.try_step(StepArgs { states: &mut st, inputs, params, spikes, t: 0.0, random })
    };
    let msg = |r: Result<(), JitError>| r.unwrap_err().0;
    assert!(msg(attempt(&mut v, &mut r, &[&short], &[&tau], &mut spikes)).contains("lengths"));
    assert!(msg(attempt(&mut v, &mut r, &[&input], &[&short], &mut spikes)).contains("lengths"));
    assert!(msg(attempt(&mut v, &mut r, &[&input], &[&tau], &mut short_spikes)).contains("lengths"));
    assert!(msg(attempt(&mut v, &mut r[..0], &[&input], &[&tau], &mut spikes)).contains("lengths"));
    assert!(msg(attempt(&mut v, &mut r, &[], &[&tau], &mut spikes)).contains("input slices"));
    assert!(msg(attempt(&mut v, &mut r, &[&input], &[], &mut spikes)).contains("param slices"));
    {
        let mut st: Vec<&mut [f32]> = vec![&mut v];
        let e = k.try_step(StepArgs { states: &mut st, inputs: &[&input], params: &[&tau], spikes: &mut spikes, t: 0.0, random });
        assert!(msg(e).contains("state slices"));
    }
    // Nothing was written by the refused calls.
    assert!(v.iter().all(|x| *x == 0.5) && spikes.iter().all(|x| *x == 0.0));
    attempt(&mut v, &mut r, &[&input], &[&tau], &mut spikes).unwrap();
    assert!(v.iter().all(|x| *x != 0.5));

    // Wrong precision: an f32 kernel with f64 data.
    let mut v64 = vec![0.0f64; n];
    let mut r64 = vec![0.0f64; n];
    let (i64_, t64) = (vec![1.0f64; n], vec![0.01f64; n]);
    let mut s64 = vec![0.0f64; n];
    let mut st: Vec<&mut [f64]> = vec![&mut v64, &mut r64];
    let e = k.try_step(StepArgs { states: &mut st, inputs: &[&i64_], params: &[&t64], spikes: &mut s64, t: 0.0, random });
    assert!(e.unwrap_err().0.contains("F32"));

    // Through the trait, a refusal is a panic with the reason (before any data is touched).
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut v = vec![0.0f32; n];
        let mut r = vec![0.0f32; n];
        let mut st: Vec<&mut [f32]> = vec![&mut v, &mut r];
        let mut s = vec![0.0f32; n];
        StepKernel::<f32>::step(&k, StepArgs { states: &mut st, inputs: &[&short], params: &[&tau], spikes: &mut s, t: 0.0, random });
    }));
    assert!(caught.is_err());

    // Empty populations are fine.
    let mut st: Vec<&mut [f32]> = vec![&mut [], &mut []];
    k.try_step(StepArgs { states: &mut st, inputs: &[&[]], params: &[&[]], spikes: &mut [], t: 0.0, random }).unwrap();
}

/// The kernel's own non-finite check (a sum of each element's new states, tested once):
/// a NaN or infinite input at any element, in a vector lane or in the scalar remainder,
/// makes it report; finite steps never do.
#[test]
fn the_kernel_reports_a_non_finite_state_at_any_element() {
    fn run<T: snnc_compiler::backend::Real>(k: &JitKernel, n: usize, bad: Option<(usize, f64)>, descending: bool) -> bool {
        let (mut v, mut r) = (vec![T::from_f64(0.5); n], vec![T::from_f64(0.0); n]);
        let mut input = vec![T::from_f64(1.0); n];
        if let Some((at, x)) = bad {
            input[at] = T::from_f64(x);
        }
        let tau = vec![T::from_f64(0.01); n];
        let mut spikes = vec![T::from_f64(0.0); n];
        let mut st: Vec<&mut [T]> = vec![&mut v, &mut r];
        k.try_step_ordered(StepArgs { states: &mut st, inputs: &[&input], params: &[&tau], spikes: &mut spikes, t: 0.0, random: RandomCtx::default() }, descending).unwrap()
    }
    let (step, specs) = lif();
    // 11: two f32x4 groups and three scalar elements (f64: five f64x2 and one); in
    // AVX-512 only a masked tail (f64: one vector and a tail), in AVX2 one vector and a
    // tail of 3. 37: two 16-lane vectors and a tail of 5 (AVX2: four and 5). Cranelift's
    // kernels, then each x86 instruction set this machine runs.
    for x86 in generators() {
        for n in [11, 37] {
            for precision in [Precision::F32, Precision::F64] {
                let k = JitKernel::compile_with(&step, &specs, precision, JitOptions { x86, ..JitOptions::default() }).unwrap();
                let g = k.generator();
                // Forwards, and backwards (the x86 kernels' other loop).
                for down in [false, true] {
                    let checked = |bad| if precision == Precision::F32 { run::<f32>(&k, n, bad, down) } else { run::<f64>(&k, n, bad, down) };
                    assert!(checked(None), "{g} {precision:?}: finite states reported");
                    for at in 0..n {
                        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                            assert!(!checked(Some((at, x))), "{g} {precision:?} n={n} descending {down}: input {x} at element {at} not reported");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn kernels_are_send_and_sync_and_run_in_threads() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let (step, specs) = lif();
    let k = JitKernel::compile(&step, &specs, Precision::F64).unwrap();
    assert_send_sync(&k);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut p: Pop<f64> = Pop { states: vec![vec![0.0; 100], vec![0.0; 100]], spikes: vec![0.0; 100] };
                for t in 0..100 {
                    p.step(&k, &[vec![2.0; 100]], &[vec![0.01; 100]], t);
                }
                assert!(p.states[0].iter().all(|x| x.is_finite()));
            });
        }
    });
}

/// A spike condition `(v - V_th) / (V_th - V_reset) >= 0` with uniform params is
/// compiled as `v >= V_th` (`codegen.rs` `threshold`): the same decision at the
/// threshold itself, one ulp either side, and for NaN and infinities - f64 bit for bit
/// with the interpreter, f32 against the f32 threshold - in vector lanes and the
/// scalar remainder.
#[test]
fn a_folded_threshold_decides_as_the_normalised_one() {
    let program = load("stdlib/coba.snn");
    let m: &Model = program.models.iter().find(|m| m.name == "CUBALIF").unwrap();
    let step = discretise(m).unwrap().at_dt(DT);
    let values = param_values(&step, &[], DT);
    let specs: Vec<ParamSpec> = values.iter().map(|&v| ParamSpec::Uniform(v)).collect();
    let k = |name: &str| (0..step.layout.params.len()).find(|&k| step.param_name(k) == name).unwrap();
    let (v_th, v_reset) = (values[k("V_th")], values[k("V_reset")]);
    assert!(v_th - v_reset > 0.0 && v_th - v_reset <= 1.0, "the case this test is about: a divisor in (0, 1]");
    let below = v_th - 0.5 * (v_th - v_reset);
    let vs = |th: f64, up: f64, down: f64| vec![th, up, down, below, th, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, th, up, down];
    let n = 11;
    let reset = |v_new: f64| (v_new - v_reset).abs() < 0.2 * (v_th - v_reset);
    // f64: the interpreter's decision, bit for bit.
    let run64 = |kernel: &dyn StepKernel<f64>| {
        let mut p = Pop { states: vec![vs(v_th, v_th.next_up(), v_th.next_down()), vec![-DT; n]], spikes: vec![0.0; n] };
        p.step(kernel, &[vec![0.0; n]], &[], 0);
        p.states[0].iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    };
    let interp = InterpKernel::new(&step, &specs).unwrap();
    let jit64 = JitKernel::compile(&step, &specs, Precision::F64).unwrap();
    let (jit, reference) = (run64(&jit64), run64(&interp));
    // An infinite v is where the two are known to differ: the interpreter's surrogate
    // term `0 * (V_reset - v)` is NaN, and a kernel does not compute it (`values_only`).
    for i in (0..n).filter(|&i| i != 6 && i != 7) {
        assert_eq!(jit[i], reference[i], "f64 element {i}");
    }
    let got: Vec<bool> = jit.into_iter().map(|b| reset(f64::from_bits(b))).collect();
    assert_eq!(&got[..3], &[true, true, false], "at, above and below the threshold");
    assert_eq!(&got[6..8], &[true, false], "+inf resets, -inf does not");
    // f32: the kernel's threshold is V_th rounded to f32.
    let th32 = v_th as f32;
    let jit32 = JitKernel::compile(&step, &specs, Precision::F32).unwrap();
    assert!(jit32.is_vectorised());
    let start: Vec<f32> = vs(f64::from(th32), f64::from(th32.next_up()), f64::from(th32.next_down())).iter().map(|&x| x as f32).collect();
    let mut p = Pop { states: vec![start.clone(), vec![-DT as f32; n]], spikes: vec![0.0f32; n] };
    p.step(&jit32, &[vec![0.0f32; n]], &[], 0);
    for i in 0..n {
        let (v0, v1) = (start[i], p.states[0][i]);
        // +inf is above the threshold (reset); NaN and -inf are not, and stay not finite.
        if v0.is_finite() || v0 == f32::INFINITY {
            assert_eq!(reset(f64::from(v1)), v0 >= th32, "f32 element {i}: {v0} -> {v1}");
        } else {
            assert!(!v1.is_finite(), "f32 element {i}: {v0} -> {v1}");
        }
    }
}

/// `Step::with_constant_inputs` (what the runtime does with an input that is the same
/// everywhere, e.g. a uniform drive): the folded kernel, JIT f64 and interpreter, steps
/// as the original one loading that value, for every stdlib model and the composed COBA
/// and CUBA populations - spikes identical, states to 1e-12 relative (in practice bit for
/// bit).
#[test]
fn a_constant_input_folded_steps_as_the_input_loaded() {
    let n = 9;
    let mut folded_any = 0;
    for c in stdlib_cases().iter().chain(&network_cases()) {
        let step = &c.step;
        if step.layout.inputs.is_empty() {
            continue;
        }
        let specs: Vec<ParamSpec> = c.params.iter().map(|&v| if v.is_finite() { ParamSpec::Uniform(v) } else { ParamSpec::PerNeuron }).collect();
        let per_neuron: Vec<Vec<f64>> = c.params.iter().filter(|v| !v.is_finite()).map(|_| vec![1.0; n]).collect();
        let values: Vec<f64> = step.layout.inputs.iter().map(|&s| 0.9 * input_scale(&step.model.name, step.model.symbols[s].dim)).collect();
        let consts: Vec<Option<f64>> = values.iter().map(|&v| Some(v)).collect();
        let folded = step.with_constant_inputs(&consts);
        let Ok(reference) = InterpKernel::new(step, &specs) else { continue };
        let interp = InterpKernel::new(&folded, &specs).unwrap();
        let jit = JitKernel::compile(&folded, &specs, Precision::F64).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let inputs: Vec<Vec<f64>> = values.iter().map(|&v| vec![v; n]).collect();
        // The folded kernels are handed other values: they must not read them.
        let ignored: Vec<Vec<f64>> = values.iter().map(|_| vec![f64::NAN; n]).collect();
        let start: Vec<Vec<f64>> = c.init.iter().map(|i| vec![if let Init::Const(v) = i { *v } else { 0.0 }; n]).collect();
        let mut pops = [0, 1, 2].map(|_| Pop { states: start.clone(), spikes: vec![0.0; if step.spike.is_some() { n } else { 0 }] });
        for t in 0..300 {
            pops[0].step(&reference, &inputs, &per_neuron, t);
            pops[1].step(&interp, &ignored, &per_neuron, t);
            pops[2].step(&jit, &ignored, &per_neuron, t);
            for p in &pops[1..] {
                assert_eq!(p.spikes, pops[0].spikes, "{}: spikes at step {t}", c.name);
                for (a, b) in p.states.iter().flatten().zip(pops[0].states.iter().flatten()) {
                    let rel = if a == b || (a.is_nan() && b.is_nan()) { 0.0 } else { (a - b).abs() / a.abs().max(b.abs()) };
                    assert!(rel <= 1e-12, "{}: state at step {t}: {a} vs {b}", c.name);
                }
            }
        }
        folded_any += 1;
    }
    assert!(folded_any >= 10, "{folded_any} models with inputs checked");
}

/// The x86 code of a LIF step in AVX-512 and in AVX2, assembled on any machine:
/// registers, the unmasked loop, the masked tail, constants by broadcast (AVX-512) or
/// as vectors (AVX2). f32 with a per-neuron tau (`exp` inline); f64 with uniform params
/// (f64 `exp` is a call, which has no vector form).
#[test]
fn x86_listing_of_lif() {
    let (step, specs) = lif();
    let uniform: Vec<ParamSpec> = param_values(&step, &[], DT).into_iter().map(ParamSpec::Uniform).collect();
    for (isa, name) in [(Isa::Avx512, "x86"), (Isa::Avx2, "avx2")] {
        let text = x86::listing(&step, &specs, Precision::F32, isa).unwrap();
        insta::assert_snapshot!(format!("{name}_lif_f32"), text);
        let text = x86::listing(&step, &uniform, Precision::F64, isa).unwrap();
        insta::assert_snapshot!(format!("{name}_lif_f64"), text);
        // A step with a call per element is left to Cranelift, with the reason.
        let e = x86::listing(&step, &specs, Precision::F64, isa).unwrap_err();
        assert!(e.0.contains("`exp` needs a call"), "{e:?}");
    }
}

/// A kernel compiled to clear inputs steps as the one that does not, to the bit, and
/// leaves those inputs at 0 and the others as they were: every model with inputs, both
/// generators, both precisions, both directions, vectors and a tail (37 elements). A
/// clearing kernel is refused read-only inputs.
#[test]
fn a_kernel_that_clears_its_inputs_steps_as_one_that_does_not() {
    fn run<T: snnc_compiler::backend::Real + Default>(c: &Case, opts: JitOptions, precision: Precision, down: bool) -> usize {
        let n = 37;
        let step = &c.step;
        let specs: Vec<ParamSpec> = c.params.iter().map(|&v| if v.is_finite() { ParamSpec::Uniform(v) } else { ParamSpec::PerNeuron }).collect();
        let Ok(plain) = JitKernel::compile_with(step, &specs, precision, opts.clone()) else { return 0 };
        let clear: Vec<usize> = (0..step.layout.inputs.len()).step_by(2).collect();
        let clearing = JitKernel::compile_with(step, &specs, precision, JitOptions { clear: clear.clone(), ..opts }).unwrap();
        assert_eq!(StepKernel::<T>::cleared_inputs(&clearing), &clear[..]);
        let params: Vec<Vec<T>> = c.params.iter().filter(|v| !v.is_finite()).map(|_| vec![T::from_f64(1.0); n]).collect();
        let params: Vec<&[T]> = params.iter().map(|v| v.as_slice()).collect();
        let inputs: Vec<Vec<T>> = step.layout.inputs.iter().enumerate().map(|(k, &s)| (0..n).map(|i| T::from_f64(input_scale(&step.model.name, step.model.symbols[s].dim) * (0.5 + 0.02 * (i + k) as f64))).collect()).collect();
        let start: Vec<Vec<T>> = c.init.iter().map(|i| vec![T::from_f64(if let Init::Const(v) = i { *v } else { 0.0 }); n]).collect();
        let spiking = step.spike.is_some();
        // The plain kernel, read-only inputs.
        let (mut want, mut want_spikes) = (start.clone(), vec![T::from_f64(0.0); if spiking { n } else { 0 }]);
        {
            let mut st: Vec<&mut [T]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
            let ins: Vec<&[T]> = inputs.iter().map(|v| v.as_slice()).collect();
            plain.try_step_ordered(StepArgs { states: &mut st, inputs: &ins, params: &params, spikes: &mut want_spikes, t: 0.0, random: RandomCtx::default() }, down).unwrap();
        }
        // The clearing kernel.
        let (mut got, mut got_spikes, mut got_inputs) = (start.clone(), vec![T::from_f64(0.0); if spiking { n } else { 0 }], inputs.clone());
        {
            let mut st: Vec<&mut [T]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
            let ins: Vec<&[T]> = inputs.iter().map(|v| v.as_slice()).collect();
            let refused = clearing.try_step_ordered(StepArgs { states: &mut st, inputs: &ins, params: &params, spikes: &mut got_spikes, t: 0.0, random: RandomCtx::default() }, down);
            assert!(refused.is_err(), "{}: a clearing kernel stepped with read-only inputs", c.name);
        }
        // (One word more than the kernel writes, to see that it writes no more.)
        let mut words = vec![0xa5a5u16; n.div_ceil(16) + 1];
        {
            let mut st: Vec<&mut [T]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
            let mut ins: Vec<&mut [T]> = got_inputs.iter_mut().map(|v| v.as_mut_slice()).collect();
            let args = snnc_compiler::backend::ClearingArgs { states: &mut st, inputs: &mut ins, params: &params, spikes: &mut got_spikes, t: 0.0, random: RandomCtx::default(), spike_bits: Some(&mut words) };
            clearing.step_clearing(args, down);
        }
        if StepKernel::<T>::spike_bits(&clearing) {
            assert_eq!(words, spike_words(&want_spikes, 0xa5a5), "{} {precision:?} down {down}: spike bits", c.name);
        } else {
            assert!(words.iter().all(|&w| w == 0xa5a5), "{}: spike bits written by a kernel that does not say so", c.name);
        }
        let bits = |v: &[Vec<T>]| -> Vec<u64> { v.iter().flatten().map(|x| x.to_f64().to_bits()).collect() };
        let g = clearing.generator();
        assert_eq!(bits(&got), bits(&want), "{} {g} {precision:?} down {down}: states", c.name);
        assert_eq!(bits(&[got_spikes]), bits(&[want_spikes]), "{} {g} {precision:?} down {down}: spikes", c.name);
        for (k, (after, before)) in got_inputs.iter().zip(&inputs).enumerate() {
            let expected: Vec<u64> = if clear.contains(&k) { vec![0f64.to_bits(); n] } else { bits(std::slice::from_ref(before)) };
            assert_eq!(bits(std::slice::from_ref(after)), expected, "{} {g} {precision:?} down {down}: input {k}", c.name);
        }
        1
    }
    let mut checked = 0;
    for c in stdlib_cases().iter().chain(&network_cases()).filter(|c| !c.step.layout.inputs.is_empty()) {
        for x86 in generators() {
            let opts = JitOptions { x86, ..JitOptions::default() };
            for down in [false, true] {
                checked += run::<f32>(c, opts.clone(), Precision::F32, down);
                checked += run::<f64>(c, opts.clone(), Precision::F64, down);
            }
        }
    }
    assert!(checked >= 40, "{checked} kernels checked");
}

/// The words of spike bits that `spikes` make (bit i % 16 of word i / 16: spike i is not
/// 0), and one more word `after`.
fn spike_words<T: snnc_compiler::backend::Real>(spikes: &[T], after: u16) -> Vec<u16> {
    let mut words = vec![0u16; spikes.len().div_ceil(16)];
    for (i, s) in spikes.iter().enumerate() {
        if s.to_f64() != 0.0 {
            words[i / 16] |= 1 << (i % 16);
        }
    }
    words.push(after);
    words
}

/// The x86 kernel (AVX-512 and AVX2, each where the machine runs it) of a spiking model
/// in f32 stores its spikes as bits too when given somewhere to: each the spike's (1
/// where it is 1), whole vectors and a tail (AVX2's tails start at a word's low or high
/// byte), both directions, the tail's word cleared of earlier bits, and nothing past
/// the last element's word. The same step without bits gives the same states and
/// spikes. (f64 kernels write none.)
#[test]
fn the_x86_kernels_store_their_spikes_as_bits() {
    fn run<T: snnc_compiler::backend::Real + Default>(isa: Isa, n: usize, precision: Precision, down: bool) -> (usize, usize) {
        // (Uniform params: a per-neuron tau needs a call to `exp`, left to Cranelift.)
        let (step, _) = lif();
        let specs: Vec<ParamSpec> = param_values(&step, &[], DT).into_iter().map(ParamSpec::Uniform).collect();
        let opts = JitOptions { clear: vec![0], x86: Some(isa), ..JitOptions::default() };
        let kernel = JitKernel::compile_with(&step, &specs, precision, opts).unwrap();
        assert_eq!(kernel.generator(), isa.name());
        // (f32 only: an f64 vector's lanes are a byte of a word or less.)
        assert_eq!(StepKernel::<T>::spike_bits(&kernel), precision == Precision::F32, "LIF's spikes are a threshold's mask");
        if precision == Precision::F64 {
            return (0, 0);
        }
        let step_with = |bits: Option<&mut [u16]>| {
            // A third of the neurons driven far past the threshold.
            let mut input: Vec<T> = (0..n).map(|i| T::from_f64(if i % 3 == 1 { 1e4 } else { 0.1 })).collect();
            let mut states = vec![vec![T::from_f64(0.5); n], vec![T::from_f64(0.0); n]];
            let mut spikes = vec![T::from_f64(0.0); n];
            let mut st: Vec<&mut [T]> = states.iter_mut().map(|v| v.as_mut_slice()).collect();
            let args = snnc_compiler::backend::ClearingArgs { states: &mut st, inputs: &mut [&mut input], params: &[], spikes: &mut spikes, t: 0.0, random: RandomCtx::default(), spike_bits: bits };
            kernel.step_clearing(args, down);
            (states, spikes)
        };
        let mut words = vec![0xffffu16; n.div_ceil(16) + 1];
        let (states, spikes) = step_with(Some(&mut words));
        let fired = spikes.iter().filter(|s| s.to_f64() != 0.0).count();
        assert_eq!(words, spike_words(&spikes, 0xffff), "{isa:?} n {n} {precision:?} down {down}");
        let (plain_states, plain_spikes) = step_with(None);
        let bits = |v: &[T]| -> Vec<u64> { v.iter().map(|x| x.to_f64().to_bits()).collect() };
        assert_eq!(bits(&spikes), bits(&plain_spikes));
        assert_eq!(states.iter().map(|s| bits(s)).collect::<Vec<_>>(), plain_states.iter().map(|s| bits(s)).collect::<Vec<_>>());
        (fired, n - fired)
    }
    for isa in generators().into_iter().flatten() {
        for n in [1, 5, 8, 16, 37, 45, 64, 100] {
            for down in [false, true] {
                let (fired, quiet) = run::<f32>(isa, n, Precision::F32, down);
                assert!(n < 3 || (fired > 0 && quiet > 0), "n {n}: {fired} spiked, {quiet} did not");
                run::<f64>(isa, n, Precision::F64, down);
            }
        }
    }
}

/// The generators to test kernels of: Cranelift's (`None`), then each x86 instruction
/// set this machine runs.
fn generators() -> Vec<Option<Isa>> {
    let x86 = [Isa::Avx512, Isa::Avx2].into_iter().filter(|&i| x86::host().is_some_and(|h| h >= i));
    std::iter::once(None).chain(x86.map(Some)).collect()
}

/// The interpreter built to clear inputs leaves them at 0 after `step_clearing`, its
/// states and spikes those of its plain step.
#[test]
fn the_interpreter_clears_the_inputs_it_is_asked_to() {
    let (step, specs) = lif();
    let n = 5;
    let plain = InterpKernel::new(&step, &specs).unwrap();
    let clearing = InterpKernel::new(&step, &specs).unwrap().clearing(&[0]);
    let tau = vec![0.01; n];
    let input: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let (mut a, mut b) = (vec![vec![0.5; n], vec![0.0; n]], vec![vec![0.5; n], vec![0.0; n]]);
    let (mut sa, mut sb) = (vec![0.0; n], vec![0.0; n]);
    {
        let mut st: Vec<&mut [f64]> = a.iter_mut().map(|v| v.as_mut_slice()).collect();
        plain.step(StepArgs { states: &mut st, inputs: &[&input], params: &[&tau], spikes: &mut sa, t: 0.0, random: RandomCtx::default() });
    }
    let mut cleared = input.clone();
    {
        let mut st: Vec<&mut [f64]> = b.iter_mut().map(|v| v.as_mut_slice()).collect();
        let args = snnc_compiler::backend::ClearingArgs { states: &mut st, inputs: &mut [&mut cleared], params: &[&tau], spikes: &mut sb, t: 0.0, random: RandomCtx::default(), spike_bits: None };
        clearing.step_clearing(args, false);
    }
    assert_eq!((a, sa), (b, sb));
    assert_eq!(cleared, vec![0.0; n]);
    assert_eq!(StepKernel::<f64>::cleared_inputs(&plain), &[] as &[usize]);
}
