//! Folding uniform params and dt into a kernel must never hide a non-finite value: a
//! constant that is NaN or infinite is refused the same way by every backend (the
//! interpreter, the JIT, PTX) and by the pipeline, naming the population and the param.

use snnc_compiler::SourceMap;
use snnc_compiler::backend::cranelift::JitKernel;
use snnc_compiler::backend::interp::InterpKernel;
use snnc_compiler::backend::ptx::{self, Target};
use snnc_compiler::backend::{ParamSpec, Precision, SpecialiseError};
use snnc_compiler::discretise::{Step, discretise};
use snnc_compiler::pipeline::{CompileOptions, PipelineError, compile_network};
use snnc_compiler::sema::check_source;

const LIF: &str = "
neuron LIF {
    param tau: ms = 10 ms
    param v_th = 1.0
    param v_reset = 0.0
    state v = 0.0
    input I
    dv/dt = (-v + I) / tau
    spike when v > v_th surrogate relu_grad(alpha = 0.3, width = 1.0)
    on spike { v -= v_th - v_reset }
}
";

/// The model `name` of `text`, discretised at dt = 1 ms.
fn step_of(text: &str, name: &str) -> Step {
    let mut sources = SourceMap::new();
    let (program, diags) = check_source("t.snn", text, &mut sources);
    assert!(diags.iter().all(|d| !d.is_error()), "{:?}", diags);
    let m = program.models.iter().find(|m| m.name == name).unwrap();
    discretise(m).unwrap().at_dt(1e-3)
}

/// The network `n` of `text`, compiled.
fn compile(text: &str) -> Result<(), PipelineError> {
    let mut sources = SourceMap::new();
    let (program, diags) = check_source("t.snn", text, &mut sources);
    assert!(diags.iter().all(|d| !d.is_error()), "{:?}", diags);
    compile_network(&program, program.network("n").unwrap(), &CompileOptions::default()).map(|_| ())
}

/// Every backend's verdict on `step` with `specs`: the interpreter's error, and the
/// JIT's and PTX's messages (they carry the same error as text).
fn verdicts(step: &Step, specs: &[ParamSpec]) -> (Result<(), SpecialiseError>, Result<(), String>, Result<(), String>) {
    let interp = InterpKernel::new(step, specs).map(|_| ());
    let jit = JitKernel::compile(step, specs, Precision::F32).map(|_| ()).map_err(|e| e.0);
    let ptx = ptx::compile_step(step, specs, Precision::F32, Target::Sm80).map(|_| ()).map_err(|e| e.0);
    (interp, jit, ptx)
}

#[test]
fn a_zero_uniform_time_constant_is_refused_by_every_backend() {
    // Issue 15, item 1: the JIT folded `exp(-dt / tau)` with tau = 0 and its
    // simplifier's `x * 0 -> 0` made v silently 0, where the interpreter gave NaN.
    let step = step_of(LIF, "LIF");
    let specs = [ParamSpec::Uniform(0.0), ParamSpec::Uniform(1.0), ParamSpec::Uniform(0.0)];
    let (interp, jit, ptx) = verdicts(&step, &specs);
    let e = interp.unwrap_err();
    match &e {
        SpecialiseError::NonFinite { model, params, value, .. } => {
            assert_eq!(model, "LIF");
            assert_eq!(params, &[("tau".to_string(), 0.0)]);
            assert!(!value.is_finite());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(jit.unwrap_err(), e.to_string());
    assert_eq!(ptx.unwrap_err(), e.to_string());
    // A negative time constant that overflows exp(dt / |tau|) likewise.
    let specs = [ParamSpec::Uniform(-1e-6), ParamSpec::Uniform(1.0), ParamSpec::Uniform(0.0)];
    let (interp, jit, ptx) = verdicts(&step, &specs);
    assert!(matches!(interp, Err(SpecialiseError::NonFinite { .. })) && jit.is_err() && ptx.is_err());
}

#[test]
fn a_non_finite_uniform_param_is_refused() {
    let step = step_of(LIF, "LIF");
    let specs = [ParamSpec::Uniform(0.01), ParamSpec::Uniform(f64::INFINITY), ParamSpec::Uniform(0.0)];
    let (interp, jit, ptx) = verdicts(&step, &specs);
    let e = interp.unwrap_err();
    assert!(matches!(&e, SpecialiseError::NonFinite { params, .. } if params == &[("v_th".to_string(), f64::INFINITY)]), "{e:?}");
    assert!(jit.is_err() && ptx.is_err());
}

#[test]
fn finite_and_per_neuron_params_are_accepted() {
    let step = step_of(LIF, "LIF");
    let (interp, jit, ptx) = verdicts(&step, &[ParamSpec::Uniform(0.01), ParamSpec::Uniform(1.0), ParamSpec::Uniform(0.0)]);
    assert!(interp.is_ok() && jit.is_ok() && ptx.is_ok());
    // A per-neuron tau is not folded: a zero among its values is the run's to catch
    // (as NaN at the first step, on every backend).
    let (interp, jit, ptx) = verdicts(&step, &[ParamSpec::PerNeuron, ParamSpec::Uniform(1.0), ParamSpec::Uniform(0.0)]);
    assert!(interp.is_ok() && jit.is_ok() && ptx.is_ok());
}

#[test]
fn a_branch_not_taken_may_be_non_finite() {
    // `1 / k` is infinite for k = 0, but the constant condition never takes that branch:
    // folding drops it, so it is no reason to refuse.
    let text = "neuron M {\n param k = 0.0\n state v = 1.0\n dv/dt = (if k > 0 then -v * (1 / k) else -v) / (10 ms)\n}\n";
    let step = step_of(text, "M");
    let (interp, jit, ptx) = verdicts(&step, &[ParamSpec::Uniform(0.0)]);
    assert!(interp.is_ok() && jit.is_ok() && ptx.is_ok(), "{interp:?} {jit:?} {ptx:?}");
    let (interp, ..) = verdicts(&step, &[ParamSpec::Uniform(-0.0)]);
    assert!(interp.is_ok());
}

#[test]
fn the_pipeline_names_the_population() {
    // A zero time constant is refused by `check` itself (E0210); what only folding dt
    // in shows is left to the pipeline: a growth at rate 1/tau whose exact propagator
    // exp(dt / tau) overflows for tau = 1 us at dt = 1 ms.
    let grow = "neuron Grow {\n    param tau: ms = 10 ms\n    state v = 1.0\n    dv/dt = v / tau\n}\n";
    let text = format!("{grow}network n {{\n    dt = 1 ms\n    layer a = Grow[10] {{ tau = 1 us }}\n}}\n");
    let e = compile(&text).unwrap_err();
    assert_eq!(e.population, "a");
    assert!(e.message.contains("tau = 0.000001") && e.message.contains("finite"), "{e}");
    assert!(e.to_string().starts_with("population `a`: "), "{e}");
    // The same network with a time constant the step can take compiles.
    compile(&text.replace("tau = 1 us", "tau = 50 ms")).unwrap();
}

/// A step kernel computes values only: the straight-through spike's surrogate term
/// `s - stop_gradient(s)` (zero in value) and the reset term it multiplies are gone from
/// every stdlib model's kernel, and with them every `stop_gradient` and surrogate.
#[test]
fn a_step_kernel_carries_no_surrogate_term() {
    use snnc_compiler::backend::specialise::specialise_step;
    use snnc_compiler::ir::Op;
    let detached = |g: &snnc_compiler::ir::Graph| g.nodes().filter(|(_, n)| matches!(n.op, Op::StopGradient | Op::SurrogateGrad(_))).count();
    let (mut models, mut with_terms) = (0, 0);
    for (file, m) in super::common::stdlib_models() {
        let Ok(step) = discretise(&m) else { continue };
        let step = step.at_dt(1e-4);
        // The step itself has them (for differentiation: hard resets, COBALIF's too).
        with_terms += usize::from(detached(&step.graph) > 0);
        let specs = vec![ParamSpec::PerNeuron; step.layout.params.len()];
        let k = specialise_step(&step, &specs).unwrap_or_else(|e| panic!("{file}: {}: {e}", m.name));
        assert_eq!(detached(&k.graph), 0, "{file}: {}", m.name);
        models += 1;
    }
    assert!(models > 10 && with_terms > 3, "{models} models, {with_terms} with surrogate terms");
}
