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
            errors += reporter.report(&crate::api::load::composition_errors(&program), &sources);
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
        match (m.kind, &m.output, m.spike.is_some()) {
            (ModelKind::Neuron, None, spiking) => parts.push(if spiking { "spiking".into() } else { "non-spiking".into() }),
            // What its projections carry: graded events, or a rate every step.
            (ModelKind::Neuron, Some((name, _)), true) => parts.push(format!("sends graded events `{name}`")),
            (ModelKind::Neuron, Some((name, _)), false) => parts.push(format!("sends a rate `{name}`")),
            (_, Some((port, _)), _) => parts.push(format!("output {port}")),
            _ => {}
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
