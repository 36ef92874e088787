//! `snnc explain FILE [--model NAME | --network NAME]`, and the steps `snnc emit` writes.

use super::Reporter;
use snnc_compiler::backend::ParamSpec;
use snnc_compiler::discretise::{Step, discretise};
use snnc_compiler::pipeline::{self, CompileOptions};
use snnc_compiler::sema::{self, LoadOptions, NetworkDef, Program};
use snnc_compiler::{FileId, SourceMap, explain};
use std::path::{Path, PathBuf};
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

/// A step to explain or emit: its label, the step, and how its params reach a kernel.
pub struct Explained {
    pub label: String,
    pub step: Step,
    pub specs: Vec<ParamSpec>,
}

/// The steps of FILE: one network's populations as the runtime runs them (the
/// pipeline's steps: uniform params folded, dt resolved by `pipeline::resolve_dt`
/// from `dt`), or its models, discretised symbolically (dt then set from `dt` or the
/// default, for the backends; every param a per-neuron array, so the kernels serve any
/// values).
pub fn steps(
    file: &Path,
    model: Option<&str>,
    network: Option<&str>,
    dt: Option<f64>,
    opts: &LoadOptions,
    reporter: &Reporter,
) -> Result<Vec<Explained>, ExitCode> {
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_path(file, opts, &mut sources);
    if reporter.report(&diags, &sources) > 0 {
        return Err(ExitCode::FAILURE);
    }
    if let Some(nname) = network {
        let Some(net) = program.network(nname) else {
            eprintln!("error: no network `{nname}` in {}", file.display());
            return Err(ExitCode::FAILURE);
        };
        return network_steps(&program, net, dt, &sources, reporter);
    }
    let entry: Option<FileId> = (0..1 << 20).take_while(|i| *i < 1 << 20).find(|i| sources.name(*i) == file.display().to_string());
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
    let dt = pipeline::resolve_dt(dt, None);
    let mut out = Vec::new();
    for m in chosen {
        let step = discretise(m).map_err(|d| {
            reporter.report(&[d], &sources);
            ExitCode::FAILURE
        })?;
        let specs = vec![ParamSpec::PerNeuron; step.layout.params.len()];
        out.push(Explained { label: m.name.clone(), step: step.at_dt(dt), specs });
    }
    Ok(out)
}

/// The steps of a network's populations with a model, from the pipeline, labelled
/// `net.pop (Model)`, then the projections' presynaptic stages (`net.PROJ.pre`).
fn network_steps(program: &Program, net: &NetworkDef, dt: Option<f64>, sources: &SourceMap, reporter: &Reporter) -> Result<Vec<Explained>, ExitCode> {
    let opts = CompileOptions { dt, ..CompileOptions::default() };
    let plan = pipeline::compile_network(program, net, &opts).map_err(|e| {
        match &e.diagnostic {
            Some(d) => {
                reporter.report(std::slice::from_ref(d), sources);
            }
            None => eprintln!("error: {e}"),
        }
        ExitCode::FAILURE
    })?;
    let mut out = Vec::new();
    for p in plan.populations {
        let Some(d) = p.dynamics else { continue };
        let mut step = d.step;
        step.model.name = format!("{}.{} ({})", net.name, p.name, step.model.name);
        out.push(Explained { label: p.name, step, specs: d.specs });
    }
    // Presynaptic synapse state: one stage per projection, kept per source neuron.
    for (pr, stage) in net.projections.iter().zip(plan.pre_stages) {
        let Some(stage) = stage else { continue };
        let mut step = stage.dynamics.step;
        step.model.name = format!("{}.{}.pre ({}, per source neuron)", net.name, pr.name, step.model.name);
        out.push(Explained { label: format!("{}.pre", pr.name), step, specs: stage.dynamics.specs });
    }
    Ok(out)
}

fn models_in(program: &Program, entry: Option<FileId>) -> Vec<&sema::Model> {
    program.models.iter().filter(|m| Some(m.span.file) == entry).collect()
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let steps = match steps(&args.file, args.model.as_deref(), args.network.as_deref(), None, opts, reporter) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let file = args.file.display().to_string();
    let mut first = true;
    let mut json = Vec::new();
    for Explained { mut step, .. } in steps {
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
