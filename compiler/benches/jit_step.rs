//! Cranelift kernels: time per step for 4000 neurons (f32, the COBA/CUBA population
//! size) against the interpreter kernel, and compile time per model.
//!
//! `CARGO_TARGET_DIR=/work/target-jit cargo bench -p snnc-compiler --bench jit_step`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use snnc_compiler::SourceMap;
use snnc_compiler::backend::Precision;
use snnc_compiler::backend::cranelift::JitKernel;
use snnc_compiler::backend::interp::InterpKernel;
use snnc_compiler::backend::{ParamSpec, RandomCtx, StepArgs, StepKernel};
use snnc_compiler::discretise::{Step, discretise};
use snnc_compiler::ir::{self, Env};
use snnc_compiler::sema::{self, Init, LoadOptions, Program, SymId};

const DT: f64 = 1e-4;
const N: usize = 4000;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn load(rel: &str) -> Program {
    let mut sources = SourceMap::new();
    let (p, diags) = sema::check_path(&root().join(rel), &LoadOptions::default(), &mut sources);
    assert!(diags.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&diags, &sources));
    p
}

/// Every param uniform: defaults, then the population's constant settings.
fn specs(step: &Step, overrides: &[(SymId, f64)]) -> Vec<ParamSpec> {
    let lm = ir::lower_model(&step.model).expect("lower");
    let mut vals = vec![f64::NAN; step.layout.params.len()];
    for (k, d) in lm.param_defaults.iter().enumerate() {
        if let Some(n) = d {
            let env = Env { params: &vals, dt: DT, ..Env::default() };
            vals[k] = ir::eval(&lm.graph, &[*n], &env).expect("param default")[0];
        }
        if let Some((_, v)) = overrides.iter().find(|(s, _)| step.layout.params[k] == *s) {
            vals[k] = *v;
        }
    }
    vals.into_iter().map(ParamSpec::Uniform).collect()
}

fn stdlib(file: &str, name: &str) -> (Step, Vec<ParamSpec>) {
    let p = load(file);
    let step = discretise(p.models.iter().find(|m| m.name == name).unwrap()).unwrap().at_dt(DT);
    let s = specs(&step, &[]);
    (step, s)
}

fn population(file: &str, net: &str, pop: usize) -> (Step, Vec<ParamSpec>) {
    let program = load(file);
    let net = program.network(net).unwrap();
    let plan = snnc_compiler::net::plan(&program, net);
    let g = snnc_compiler::net::compose(&program, net, &plan, pop).unwrap().unwrap();
    let step = discretise(&g.model).unwrap().at_dt(DT);
    let overrides: Vec<(SymId, f64)> = g
        .settings
        .iter()
        .filter_map(|(s, i)| match i {
            Init::Const(v) => Some((*s, *v)),
            _ => None,
        })
        .collect();
    let s = specs(&step, &overrides);
    (step, s)
}

/// Seconds per step of `kernel` on N neurons (median of batches), with inputs that keep
/// the neurons firing (no denormals from silent decay).
fn time_step<T: Copy + From<f32>>(step: &Step, kernel: &dyn StepKernel<T>, steps: usize) -> f64 {
    let mut states: Vec<Vec<T>> = step
        .layout
        .states
        .iter()
        .map(|&s| T::from(step.model.symbols[s].value.as_ref().and_then(|v| v.const_value()).unwrap_or(0.0) as f32))
        .map(|v| vec![v; N])
        .collect();
    let inputs: Vec<Vec<T>> = step
        .layout
        .inputs
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let dim = step.model.symbols[s].dim;
            let scale = if dim == snnc_compiler::units::AMPERE {
                3e-10
            } else if dim == snnc_compiler::units::VOLT {
                0.012
            } else if dim == snnc_compiler::units::SIEMENS {
                1e-9
            } else {
                1.5
            };
            (0..N).map(|i| T::from((scale * (0.5 + ((i * 7 + k * 3) % 11) as f64 / 10.0)) as f32)).collect()
        })
        .collect();
    let mut spikes: Vec<T> = vec![T::from(0.0); N];
    let ins: Vec<&[T]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut run = |t0: usize, count: usize| {
        for t in t0..t0 + count {
            let mut st: Vec<&mut [T]> = states.iter_mut().map(|v| v.as_mut_slice()).collect();
            kernel.step(StepArgs {
                states: &mut st,
                inputs: &ins,
                params: &[],
                spikes: &mut spikes,
                t: t as f64 * DT,
                random: RandomCtx { seed: 1, step: t as u64, offset: 0 },
            });
        }
    };
    run(0, steps / 10 + 1);
    let mut batches: Vec<f64> = (0..7)
        .map(|b| {
            let start = Instant::now();
            run(b * steps, steps);
            start.elapsed().as_secs_f64() / steps as f64
        })
        .collect();
    black_box(&spikes);
    batches.sort_by(f64::total_cmp);
    batches[3]
}

fn compile_time(step: &Step, specs: &[ParamSpec], precision: Precision) -> Duration {
    let mut t: Vec<Duration> = (0..5).map(|_| JitKernel::compile(step, specs, precision).unwrap().compile_time()).collect();
    t.sort();
    t[2]
}

fn main() {
    let models: Vec<(&str, (Step, Vec<ParamSpec>))> = vec![
        ("LIF (stdlib)", stdlib("stdlib/lif.snn", "LIF")),
        ("LIFHard (stdlib)", stdlib("stdlib/lif.snn", "LIFHard")),
        ("ALIF (stdlib)", stdlib("stdlib/alif.snn", "ALIF")),
        ("COBALIF (stdlib)", stdlib("stdlib/coba.snn", "COBALIF")),
        ("HH (stdlib)", stdlib("stdlib/hh.snn", "HH")),
        ("COBA E population", population("examples/coba.snn", "coba", 0)),
        ("CUBA E population", population("examples/cuba.snn", "cuba", 0)),
    ];
    println!("{N} neurons, dt = 0.1 ms, all params uniform; time per step (median of 7 batches)");
    println!(
        "{:20} {:>5} {:>9} {:>9} {:>11} {:>11} {:>11} {:>9}",
        "model", "vec", "nodes", "compile", "jit f32", "jit f64", "interp f64", "ns/neuron"
    );
    for (name, (step, specs)) in &models {
        let k32 = JitKernel::compile(step, specs, Precision::F32).unwrap();
        let k64 = JitKernel::compile(step, specs, Precision::F64).unwrap();
        let interp = InterpKernel::new(step, specs).unwrap();
        let ct = compile_time(step, specs, Precision::F32);
        let t32 = time_step::<f32>(step, &k32, 2000);
        let t64 = time_step::<f64>(step, &k64, 2000);
        let ti = time_step::<f64>(step, &interp, 20);
        println!(
            "{:20} {:>5} {:>9} {:>7.2}ms {:>9.2}us {:>9.2}us {:>9.0}us {:>9.2}",
            name,
            k32.is_vectorised(),
            step.graph.len(),
            ct.as_secs_f64() * 1e3,
            t32 * 1e6,
            t64 * 1e6,
            ti * 1e6,
            t32 * 1e9 / N as f64
        );
    }
}
