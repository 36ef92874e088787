//! `snnc explain FILE [--model NAME | --network NAME]`, and the steps `snnc emit` writes.

use super::Reporter;
use crate::api::{self, explain::Refusal};
pub use crate::api::explain::Explained;
use snnc_compiler::sema::{self, LoadOptions};
use snnc_compiler::{SourceMap, explain};
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

/// The steps of FILE ([`api::explain::steps`]), with every refusal reported.
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
    api::explain::steps(&program, &sources, &file.display().to_string(), model, network, dt).map_err(|r| {
        match r {
            Refusal::Diagnostic(d) => {
                reporter.report(&[*d], &sources);
            }
            Refusal::Message(m) => eprintln!("error: {m}"),
        }
        ExitCode::FAILURE
    })
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
