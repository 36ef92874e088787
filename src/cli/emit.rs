//! `snnc emit --target ir|ptx|clif FILE`: the IR of each step, its CUDA kernels as one
//! PTX module, or its CPU kernels as Cranelift compiles them here.

use super::Reporter;
use super::explain::{Explained, steps};
use snnc_compiler::backend::cranelift::JitKernel;
use snnc_compiler::backend::ptx::{self, PtxKernel};
use snnc_compiler::backend::{ParamSpec, Precision};
use snnc_compiler::discretise::Step;
use snnc_compiler::discretise::trace::{TraceKind, adjoint_step, exact_window_step, trace_step};
use snnc_compiler::explain;
use snnc_compiler::sema::LoadOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The IR of each model's step, in a stable text form.
    Ir,
    /// CUDA PTX (sm_80) of each step kernel and derivative kernel.
    Ptx,
    /// The CPU step kernel of each step as the JIT compiles it on this machine: the
    /// optimised Cranelift IR, then the machine code.
    Clif,
}

#[derive(clap::Args, Debug)]
pub struct EmitArgs {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub target: Target,
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    #[arg(long, value_name = "NAME", conflicts_with = "model")]
    pub network: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// The time step folded into the kernels (over the network's; default 0.1 ms).
    #[arg(long, value_parser = super::args::parse_time)]
    pub dt: Option<f64>,
    /// PTX and clif: f32 or f64 kernels.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: super::args::Precision,
    /// PTX: the derivative kernel (D, Df, ds/dh) instead of the step kernel (the same as
    /// `--kernel derivatives`).
    #[arg(long)]
    pub derivatives: bool,
    /// PTX: which kernel of the model: its step, its derivatives, or one of the learning
    /// kernels generated from them (the ES-D-RTRL output trace of kernel input
    /// `--input`, the trace of trainable param `--input`, the BPTT adjoint, the D-RTRL
    /// window recursion for kernel input `--input`).
    #[arg(long, value_enum, default_value = "step")]
    pub kernel: KernelArg,
    /// PTX: the kernel input (es-trace, drtrl-window) or trainable param (param-trace), by index.
    #[arg(long, default_value_t = 0)]
    pub input: usize,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelArg {
    Step,
    Derivatives,
    EsTrace,
    ParamTrace,
    Adjoint,
    DrtrlWindow,
}

pub fn emit(args: EmitArgs, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let steps = match steps(&args.file, args.model.as_deref(), args.network.as_deref(), args.dt, opts, reporter) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let text = match args.target {
        Target::Ir => Ok(steps.into_iter().map(|mut e| explain::emit_ir(&mut e.step) + "\n").collect()),
        Target::Ptx => ptx_module(&args, &steps),
        Target::Clif => clif_listings(&args, &steps),
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &args.output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("error: cannot write `{}`: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

/// The chosen kernel of every step, as one PTX module: one kernel keeps its usual
/// entry name (what the GPU runtime loads), several get the step's label appended
/// (`snnc_step_LIF`), so that `ptxas` assembles the file as is.
fn ptx_module(args: &EmitArgs, steps: &[Explained]) -> Result<String, String> {
    let precision = precision(args);
    let target = ptx::Target::Sm80;
    let kind = if args.derivatives { KernelArg::Derivatives } else { args.kernel };
    let mut kernels: Vec<(String, PtxKernel)> = Vec::new();
    for e in steps {
        let kernel = match kind {
            KernelArg::Step => ptx::compile_step(&e.step, &e.specs, precision, target).map_err(|x| x.to_string()),
            KernelArg::Derivatives => ptx::compile_derivatives(&e.step, &e.specs, precision, target).map_err(|x| x.to_string()),
            _ => learning_kernel(&e.step, kind, args.input)
                .and_then(|(s, specs)| ptx::compile_step(&s, &specs, precision, target).map_err(|x| x.to_string())),
        }
        .map_err(|x| format!("{}: {x}", e.step.model.name))?;
        let entry = if steps.len() == 1 { kernel.entry.to_string() } else { format!("{}_{}", kernel.entry, identifier(&e.label)) };
        kernels.push((entry, kernel));
    }
    let refs: Vec<(&str, &PtxKernel)> = kernels.iter().map(|(n, k)| (n.as_str(), k)).collect();
    Ok(ptx::module(target, &refs) + "\n")
}

fn precision(args: &EmitArgs) -> Precision {
    match args.precision {
        super::args::Precision::F32 => Precision::F32,
        super::args::Precision::F64 => Precision::F64,
    }
}

/// The CPU step kernel of every step (what `snnc run` runs: the same specialisation),
/// as generated for this machine: the AVX-512 or AVX2 vector program and its machine
/// code, or the optimised Cranelift IR and its machine code (with why neither was used).
fn clif_listings(args: &EmitArgs, steps: &[Explained]) -> Result<String, String> {
    if args.derivatives || args.kernel != KernelArg::Step {
        return Err("--target clif shows step kernels only (drop --derivatives / --kernel)".into());
    }
    let mut text = String::new();
    for e in steps {
        // As the runtime builds it: the inputs that never change folded in.
        let step = e.step.with_constant_inputs(&e.constant_inputs);
        let k = JitKernel::compile_listed(&step, &e.specs, precision(args)).map_err(|x| format!("{}: {x}", e.step.model.name))?;
        let generator = match k.why_not_x86() {
            None => format!("{}, {} lanes", k.generator(), k.lanes()),
            Some(why) => format!("{}, {} lanes; not AVX-512 or AVX2: {why}", k.generator(), k.lanes()),
        };
        text += &format!(
            "; {} ({}, {:?}, vectorised: {}; {generator})\n{}\n",
            e.label,
            e.step.model.name,
            k.precision(),
            k.is_vectorised(),
            k.listing().unwrap_or_default()
        );
    }
    Ok(text)
}

/// `label` as a PTX identifier: letters, digits and `_`.
fn identifier(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// A learning kernel of `step` (built from its step with derivative outputs) and the
/// specs of its params (the ES decay as a per-neuron array, like every param here).
fn learning_kernel(step: &Step, kind: KernelArg, input: usize) -> Result<(Step, Vec<ParamSpec>), String> {
    let (ds, dl) = step.with_derivative_outputs().map_err(|d| d.message)?;
    let name = &step.model.name;
    match kind {
        KernelArg::EsTrace if input < dl.n_in => Ok((trace_step(&ds, &dl, TraceKind::EsOutput { input }).step, vec![ParamSpec::PerNeuron])),
        KernelArg::DrtrlWindow if input < dl.n_in => Ok((exact_window_step(&ds, &dl, input).step, Vec::new())),
        KernelArg::EsTrace | KernelArg::DrtrlWindow => Err(format!("`{name}` has {} kernel inputs; --input {input} is not one", dl.n_in)),
        KernelArg::ParamTrace if input < dl.n_p => Ok((trace_step(&ds, &dl, TraceKind::Param { col: input }).step, Vec::new())),
        KernelArg::ParamTrace => Err(format!("`{name}` has {} trainable params; --input {input} is not one", dl.n_p)),
        _ => Ok((adjoint_step(&ds, &dl).step, Vec::new())),
    }
}

