//! The `snnc` command line: one module per subcommand.

mod args;
mod bench;
mod check;
mod emit;
mod eval;
mod engine;
mod explain;
mod fit;
mod fmt;
mod grad;
mod nir;
mod os;
mod plot;
pub(crate) mod run;
pub mod train;

use clap::{Parser, Subcommand};
use snnc_compiler::{Diagnostic, SourceMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

pub use os::quiet_broken_pipe;

const EXAMPLES: &str = "\
Examples:
  snnc check examples/coba.snn          check names, kinds and units
  snnc check stdlib/*.snn examples/*.snn
  snnc fmt examples/coba.snn            print the canonical formatting
  snnc fmt --write model.snn            format in place
  snnc fmt --check stdlib/*.snn         exit 1 if a file is not formatted
  snnc explain stdlib/lif.snn --model LIF   integrator, discrete step, D, Df
  snnc explain examples/coba.snn --network coba   hidden groups of a network
  snnc emit --target ir stdlib/alif.snn     the IR of each step";

/// snnc — a modelling language and compiler for spiking neural networks.
#[derive(Parser, Debug)]
#[command(name = "snnc", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Extra directories searched by `import` (also: SNNC_PATH, colon-separated).
    #[arg(short = 'I', long = "include", global = true, value_name = "DIR")]
    pub include: Vec<PathBuf>,
    /// Colour diagnostics: auto, always or never.
    #[arg(long, global = true, default_value = "auto", value_name = "WHEN")]
    pub color: ColorChoice,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check models and networks: syntax, names, kinds and physical dimensions.
    Check(check::Args),
    /// Print a file in canonical formatting (or rewrite it with --write).
    Fmt(fmt::Args),
    /// Show the integrator, the discrete update, D, Df and the surrogate of each model.
    Explain(explain::Args),
    /// Write generated code: `--target ir` (the dataflow IR) or `--target ptx` (CUDA).
    Emit(emit::EmitArgs),
    /// Simulate a network and write recordings (`.npy`).
    Run(run::Args),
    /// Gradient of one batch of sequences (BPTT, D-RTRL or ES-D-RTRL) into an `.npz`.
    Grad(grad::Args),
    /// Train a network on a task (DMS, evidence accumulation) with an online rule.
    Train(train::Args),
    /// Train a `Linear` readout without gradients: FORCE (online, fed back) or ridge regression.
    Fit(fit::Args),
    /// Loss and accuracy of trained weights (a `snnc train` checkpoint) on held-out trials.
    Eval(eval::EvalArgs),
    /// Benchmark workloads with JSON-line results (`bench train`, `bench sim`).
    Bench(bench::Args),
    /// Write a network as a NIR graph (HDF5) for other simulators and hardware.
    ExportNir(nir::ExportArgs),
    /// Read a NIR graph into a `.snn` file and its weights.
    ImportNir(nir::ImportArgs),
}

/// Shared by every command: how to report diagnostics.
pub struct Reporter {
    color: bool,
}

impl Reporter {
    pub fn new(choice: ColorChoice) -> Reporter {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Reporter { color }
    }

    /// Prints diagnostics to stderr; returns the number of errors.
    pub fn report(&self, diags: &[Diagnostic], sources: &SourceMap) -> usize {
        let mut err = std::io::stderr().lock();
        for d in diags {
            d.emit(sources, &mut err, self.color);
        }
        diags.iter().filter(|d| d.is_error()).count()
    }
}

/// Checks `file` and returns its program and the network to use: `name`, or the only
/// network in the file. Errors are printed; `None` means the command should fail.
pub fn load_network(
    file: &std::path::Path,
    name: Option<&str>,
    opts: &snnc_compiler::sema::LoadOptions,
    reporter: &Reporter,
) -> Option<(snnc_compiler::sema::Program, usize)> {
    load_network_sources(file, name, opts, reporter).map(|(p, i, _)| (p, i))
}

/// [`load_network`], also giving the sources, for diagnostics about the network later
/// (e.g. one too large for memory).
pub fn load_network_sources(
    file: &std::path::Path,
    name: Option<&str>,
    opts: &snnc_compiler::sema::LoadOptions,
    reporter: &Reporter,
) -> Option<(snnc_compiler::sema::Program, usize, SourceMap)> {
    let mut sources = SourceMap::new();
    let (program, diags) = snnc_compiler::sema::check_path(file, opts, &mut sources);
    if reporter.report(&diags, &sources) > 0 {
        return None;
    }
    match crate::api::load::select_network(&program, name, &file.display().to_string(), "--network") {
        Ok(i) => Some((program, i, sources)),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let reporter = Reporter::new(cli.color);
    let opts = snnc_compiler::sema::LoadOptions::from_env(&cli.include);
    match cli.command {
        Command::Check(a) => check::run(a, &opts, &reporter),
        Command::Fmt(a) => fmt::run(a, &reporter),
        Command::Explain(a) => explain::run(a, &opts, &reporter),
        Command::Emit(a) => emit::emit(a, &opts, &reporter),
        Command::Run(a) => run::run(a, &opts, &reporter),
        Command::Grad(a) => grad::run(a, &opts, &reporter),
        Command::Train(a) => train::run(a, &opts, &reporter),
        Command::Fit(a) => fit::run(a, &opts, &reporter),
        Command::Eval(a) => eval::eval(a, &opts, &reporter),
        Command::Bench(a) => bench::run(a, &opts, &reporter),
        Command::ExportNir(a) => nir::export(a, &opts, &reporter),
        Command::ImportNir(a) => nir::import(a),
    }
}
