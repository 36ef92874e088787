//! Checking a program and choosing its network: what the commands and the Python module
//! share. Nothing here prints; the caller renders or raises.

use snnc_compiler::diag::Diagnostic;
use snnc_compiler::sema::{self, LoadOptions, Program};
use snnc_compiler::SourceMap;
use std::path::Path;

/// A program that passed every check, with its sources (for later diagnostics) and the
/// warnings the checks gave.
pub struct Checked {
    pub program: Program,
    pub sources: SourceMap,
    pub warnings: Vec<Diagnostic>,
    /// The display name of the entry file (the path given, or the name of the text).
    pub entry: String,
}

/// A program refused: every diagnostic (errors first as reported) and the sources they
/// point into.
pub struct Refused {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: SourceMap,
}

impl Refused {
    /// The diagnostics as `snnc check` prints them without colour.
    pub fn render(&self) -> String {
        render(&self.diagnostics, &self.sources)
    }

    /// File, 1-based line and column of the first error.
    pub fn location(&self) -> Option<(String, usize, usize)> {
        let d = self.diagnostics.iter().find(|d| d.is_error())?;
        let (line, col) = self.sources.line_col(d.span.file, d.span.start as usize);
        Some((self.sources.name(d.span.file).to_string(), line, col))
    }

    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

/// Plain-text rendering of `diags`, one after the other.
pub fn render(diags: &[Diagnostic], sources: &SourceMap) -> String {
    diags.iter().map(|d| d.render(sources)).collect()
}

/// Checks `path` and its imports, as `snnc check` does (composition included).
pub fn check_path(path: &Path, opts: &LoadOptions) -> Result<Checked, Refused> {
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_path(path, opts, &mut sources);
    finish(program, diags, sources, path.display().to_string())
}

/// Checks source text named `name` (imports resolved from the current directory and
/// `opts`' search path).
pub fn check_text(name: &str, text: &str, opts: &LoadOptions) -> Result<Checked, Refused> {
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_source_with(name, text, opts, &mut sources);
    finish(program, diags, sources, name.to_string())
}

fn finish(program: Program, mut diags: Vec<Diagnostic>, sources: SourceMap, entry: String) -> Result<Checked, Refused> {
    if !diags.iter().any(|d| d.is_error()) {
        diags.extend(composition_errors(&program));
    }
    if diags.iter().any(|d| d.is_error()) {
        return Err(Refused { diagnostics: diags, sources });
    }
    Ok(Checked { program, sources, warnings: diags, entry })
}

/// What composing each network's populations and presynaptic stages refuses (E0417:
/// synapses the runtime would run differently from their text), so a check reports it
/// before a run does.
pub fn composition_errors(program: &Program) -> Vec<Diagnostic> {
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
            if let Some(Err(d)) = snnc_compiler::net::plastic(program, net, pi) {
                out.push(d);
            }
        }
    }
    out
}

/// The index of network `name` in `program`, or of its only network; else the reason,
/// naming `file` and the networks there are (`flag`: how the caller chooses one).
pub fn select_network(program: &Program, name: Option<&str>, file: &str, flag: &str) -> Result<usize, String> {
    let names: Vec<&str> = program.networks.iter().map(|n| n.name.as_str()).collect();
    let index = match name {
        Some(n) => program.networks.iter().position(|x| x.name == n),
        None if names.len() == 1 => Some(0),
        None => None,
    };
    index.ok_or_else(|| match (name, names.is_empty()) {
        (_, true) => format!("{file} defines no network; this command needs one"),
        (Some(n), false) => format!("no network `{n}` in {file} (networks: {})", names.join(", ")),
        (None, false) => format!("{file} defines {} networks; choose one with {flag} (networks: {})", names.len(), names.join(", ")),
    })
}

/// The refusal of a network too large for memory, at its largest part (E0701): `snnc
/// run`'s, and `explain`'s / `emit`'s of a network, whose plan alone holds every
/// neuron's values.
pub fn too_large(e: &snnc_runtime::memory::TooLarge, f64: bool) -> Diagnostic {
    let available = match e.available {
        Some(a) => format!("{} of memory is available (MemAvailable, or SNNC_MEMORY_LIMIT if lower)", snnc_runtime::memory::format_bytes(a)),
        None => "the free memory of this machine is unknown".to_string(),
    };
    Diagnostic::error("E0701", e.largest.span, format!("network `{}` needs about {} of memory ({} bytes)", e.network, snnc_runtime::memory::format_bytes(e.needed), e.needed))
        .with_label(format!("the {}: {}", e.largest.what, snnc_runtime::memory::format_bytes(e.largest.bytes)))
        .with_note(available)
        .with_help(if f64 {
            "fewer neurons, sparse connectivity or shorter delays; `--precision f32` halves states and weights"
        } else {
            "fewer neurons, sparse connectivity or shorter delays"
        })
}
