//! `snnc check FILE...`

use super::Reporter;
use super::args::plural;
use snnc_compiler::sema::{self, LoadOptions, Program, SymKind};
use snnc_compiler::syntax::ast::ModelKind;
use snnc_compiler::{FileId, SourceMap};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `.snn` files to check (with everything they import).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let mut failed = 0;
    for path in &args.files {
        let mut sources = SourceMap::new();
        let (program, diags) = sema::check_path(path, opts, &mut sources);
        let mut errors = reporter.report(&diags, &sources);
        if errors == 0 {
            errors += reporter.report(&composition_errors(&program), &sources);
        }
        if errors > 0 {
            failed += 1;
            eprintln!("{}: {errors} error{}", path.display(), if errors == 1 { "" } else { "s" });
            continue;
        }
        if !args.quiet {
            // The entry file is the one whose name is the path given.
            let entry = (0..).take_while(|i| *i < 1 << 20).find(|i| sources.name(*i) == path.display().to_string());
            print_summary(&program, entry, &sources, path);
        }
    }
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// What composing each network's populations and presynaptic stages refuses (E0417:
/// synapses the runtime would run differently from their text), so `check` reports it
/// before `run` does.
fn composition_errors(program: &Program) -> Vec<snnc_compiler::diag::Diagnostic> {
    let mut out = Vec::new();
    for net in &program.networks {
        let plan = snnc_compiler::net::plan(program, net);
        let mut composed = vec![true; net.populations.len()];
        for pop in 0..net.populations.len() {
            if let Some(Err(d)) = snnc_compiler::net::compose(program, net, &plan, pop) {
                out.push(d);
                composed[pop] = false;
            }
        }
        // Presynaptic synapse state of the projections into populations that composed.
        for pi in (0..net.projections.len()).filter(|&pi| composed[net.projections[pi].to]) {
            if let Some(Err(d)) = snnc_compiler::net::pre_stage(program, net, pi) {
                out.push(d);
            }
        }
    }
    out
}

/// One line per model and network defined in the file itself (not its imports).
fn print_summary(program: &Program, entry: Option<FileId>, sources: &SourceMap, path: &std::path::Path) {
    let here = |f: FileId| Some(f) == entry;
    let mut lines = 0;
    for m in program.models.iter().filter(|m| here(m.span.file)) {
        let names = |k: SymKind| m.syms_of(k).map(|(_, s)| s.name.as_str()).collect::<Vec<_>>().join(", ");
        let kind = match m.kind {
            ModelKind::Neuron => "neuron",
            ModelKind::Synapse => "synapse",
        };
        let mut parts = vec![format!("states [{}]", names(SymKind::State))];
        parts.push(format!("params [{}]", names(SymKind::Param)));
        let inputs = names(SymKind::Input);
        if !inputs.is_empty() {
            parts.push(format!("inputs [{inputs}]"));
        }
        if m.kind == ModelKind::Neuron {
            parts.push(if m.spike.is_some() { "spiking".into() } else { "non-spiking".into() });
        }
        if let Some((port, _)) = &m.output {
            parts.push(format!("output {port}"));
        }
        println!("ok {kind} {}: {}", m.name, parts.join(", "));
        lines += 1;
    }
    for n in program.networks.iter().filter(|n| here(n.span.file)) {
        let neurons: usize = n.populations.iter().map(|p| p.size).sum();
        println!(
            "ok network {}: {}, {}, {}, {}",
            n.name,
            plural(n.inputs.len(), "input"),
            plural(n.populations.len(), "population"),
            plural(neurons, "neuron"),
            plural(n.projections.len(), "projection")
        );
        lines += 1;
    }
    if lines == 0 {
        println!("ok {} (no models or networks)", path.display());
    }
    let _ = sources;
}
