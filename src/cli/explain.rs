//! `snnc explain FILE [--model NAME | --network NAME]` and `snnc emit --target ir`.

use super::Reporter;
use snnc_compiler::discretise::{Step, discretise};
use snnc_compiler::sema::{self, LoadOptions, Program};
use snnc_compiler::{Diagnostic, FileId, SourceMap, explain, net};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `.snn` file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Explain only this model (default: every model defined in FILE).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Explain the hidden groups of this network's populations (neuron + merged synapses),
    /// as the runtime runs them: uniform params and the network's dt fixed.
    #[arg(long, value_name = "NAME", conflicts_with = "model")]
    pub network: Option<String>,
    /// Output format.
    #[arg(long, default_value = "text")]
    pub format: Format,
    /// Print the dataflow graph of the step in Graphviz DOT instead.
    #[arg(long)]
    pub dot: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The IR of each model's step, in a stable text form.
    Ir,
    /// CUDA PTX (sm_80) of each step kernel and derivative kernel.
    Ptx,
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
    /// PTX: the time step folded into the kernels (default: the network's, else 0.1 ms).
    #[arg(long, value_parser = crate::cli::run::parse_time)]
    pub dt: Option<f64>,
    /// PTX: f32 or f64 kernels.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::cli::run::Precision,
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

/// The steps to explain: (label, step).
fn steps(
    file: &PathBuf,
    model: Option<&str>,
    network: Option<&str>,
    opts: &LoadOptions,
    reporter: &Reporter,
) -> Result<Vec<(String, Step)>, ExitCode> {
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_path(file, opts, &mut sources);
    if reporter.report(&diags, &sources) > 0 {
        return Err(ExitCode::FAILURE);
    }
    let entry: Option<FileId> = (0..1 << 20).take_while(|i| *i < 1 << 20).find(|i| sources.name(*i) == file.display().to_string());
    let fail = |d: Diagnostic, sources: &SourceMap| {
        reporter.report(&[d], sources);
        ExitCode::FAILURE
    };
    let mut out = Vec::new();
    if let Some(nname) = network {
        let Some(net) = program.network(nname) else {
            eprintln!("error: no network `{nname}` in {}", file.display());
            return Err(ExitCode::FAILURE);
        };
        let plan = net::plan(&program, net);
        // What the runtime runs: uniform params and dt fixed (numerical propagators
        // where the closed form does not reach).
        let dt = net.dt.unwrap_or(1e-4);
        for (i, pop) in net.populations.iter().enumerate() {
            let Some(group) = net::compose(&program, net, &plan, i) else { continue };
            let mut g = group.map_err(|d| fail(d, &sources))?;
            g.model.name = format!("{}.{} ({})", net.name, pop.name, g.model.name);
            match snnc_runtime::network::population_step(&g, &pop.name, pop.size, dt) {
                Ok(step) => out.push((pop.name.clone(), step)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Err(ExitCode::FAILURE);
                }
            }
        }
        return Ok(out);
    }
    let chosen: Vec<&sema::Model> = match model {
        Some(name) => match program.model(name) {
            Some(m) => vec![m],
            None => {
                let names: Vec<&str> = program.models.iter().map(|m| m.name.as_str()).collect();
                eprintln!("error: no model `{name}` in {} (models: {})", file.display(), names.join(", "));
                return Err(ExitCode::FAILURE);
            }
        },
        None => models_in(&program, entry),
    };
    for m in chosen {
        out.push((m.name.clone(), discretise(m).map_err(|d| fail(d, &sources))?));
    }
    Ok(out)
}

fn models_in(program: &Program, entry: Option<FileId>) -> Vec<&sema::Model> {
    program.models.iter().filter(|m| Some(m.span.file) == entry).collect()
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let steps = match steps(&args.file, args.model.as_deref(), args.network.as_deref(), opts, reporter) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let file = args.file.display().to_string();
    let mut first = true;
    let mut json = Vec::new();
    for (_, mut step) in steps {
        if args.dot {
            let outputs: Vec<(String, _)> =
                step.next.iter().enumerate().map(|(k, n)| (format!("{}^t", step.state_name(k)), *n)).collect();
            print!("{}", snnc_compiler::ir::print::to_dot(&step.graph, &outputs));
            continue;
        }
        match args.format {
            Format::Text => {
                if !first {
                    println!();
                }
                print!("{}", explain::explain_text(&mut step, &file));
            }
            Format::Json => json.push(explain::explain_json(&mut step)),
        }
        first = false;
    }
    if args.format == Format::Json && !args.dot {
        println!("[{}]", json.join(",\n"));
    }
    ExitCode::SUCCESS
}

/// A learning kernel of `step` (built from its step with derivative outputs) and the
/// specs of its params (the ES decay as a per-neuron array, like every param here).
fn learning_kernel(step: &Step, kind: KernelArg, input: usize) -> Result<(Step, Vec<snnc_compiler::backend::ParamSpec>), String> {
    use snnc_compiler::backend::ParamSpec;
    use snnc_compiler::discretise::trace::{TraceKind, adjoint_step, exact_window_step, trace_step};
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

pub fn emit(args: EmitArgs, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let steps = match steps(&args.file, args.model.as_deref(), args.network.as_deref(), opts, reporter) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut text = String::new();
    for (_, mut step) in steps {
        match args.target {
            Target::Ir => text.push_str(&explain::emit_ir(&mut step)),
            Target::Ptx => {
                use snnc_compiler::backend::{ParamSpec, cranelift::Precision, ptx};
                // Every param as a per-neuron array: the kernels serve any values.
                let specs = vec![ParamSpec::PerNeuron; step.layout.params.len()];
                let dt = args.dt.unwrap_or(1e-4);
                let precision = match args.precision {
                    crate::cli::run::Precision::F32 => Precision::F32,
                    crate::cli::run::Precision::F64 => Precision::F64,
                };
                // One PTX module per model: pick one model (--model, or a network with
                // --network) to get a file `ptxas` assembles as is.
                let kind = if args.derivatives { KernelArg::Derivatives } else { args.kernel };
                let kernel = match kind {
                    KernelArg::Step => ptx::emit_step(&step, &specs, dt, precision, ptx::Target::Sm80).map_err(|e| e.to_string()),
                    KernelArg::Derivatives => ptx::emit_derivatives(&step, &specs, dt, precision, ptx::Target::Sm80).map_err(|e| e.to_string()),
                    KernelArg::EsTrace | KernelArg::ParamTrace | KernelArg::Adjoint | KernelArg::DrtrlWindow => learning_kernel(&step, kind, args.input).and_then(|(s, specs)| {
                        ptx::emit_step(&s, &specs, dt, precision, ptx::Target::Sm80).map_err(|e| e.to_string())
                    }),
                };
                match kernel {
                    Ok(k) => text.push_str(&k),
                    Err(e) => {
                        eprintln!("error: {}: {e}", step.model.name);
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        text.push('\n');
    }
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
