//! Helpers shared by the test modules (`crate::common`): the AST without spans for the
//! front-end tests; loading the stdlib and the example networks, deterministic random
//! numbers and param values for the backend and discretisation tests.

use snnc_compiler::SourceMap;
use snnc_compiler::discretise::Step;
use snnc_compiler::ir::{self, Env};
use snnc_compiler::net::GroupModel;
use snnc_compiler::sema::{self, Init, LoadOptions, Model, Program, SymId};
use snnc_compiler::units::{self, Dim};
use std::path::Path;

/// The `Debug` form of an AST with every `Span { file: F, start: S, end: E }` removed,
/// so two parses of differently laid out text compare equal when they mean the same.
/// String literals in the debug output (names, numbers as written, paths) are copied
/// unchanged, even if they happen to contain the text `Span {`.
pub fn strip_spans(debug: &str) -> String {
    let b = debug.as_bytes();
    let mut out = String::with_capacity(debug.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] == b'"' {
            // Skip a string literal, honouring backslash escapes.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if let Some(len) = span_at(&debug[i..]) {
            out.push_str(&debug[copied..i]);
            out.push_str("_");
            i += len;
            copied = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&debug[copied.min(debug.len())..]);
    out
}

/// The length of `Span { file: N, start: N, end: N }` at the start of `s`, if it is one.
fn span_at(s: &str) -> Option<usize> {
    let mut rest = s;
    for (i, field) in ["file", "start", "end"].iter().enumerate() {
        let prefix = if i == 0 { "Span { " } else { ", " };
        rest = rest.strip_prefix(prefix)?.strip_prefix(field)?.strip_prefix(": ")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &rest[digits..];
    }
    rest = rest.strip_prefix(" }")?;
    Some(s.len() - rest.len())
}

/// The repository's root (`stdlib/`, `examples/`, `tests/data/`).
pub fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Checks a file of the repository; any error fails the test with the rendered diagnostics.
pub fn load(rel: &str) -> Program {
    let mut sources = SourceMap::new();
    let (p, diags) = sema::check_path(&root().join(rel), &LoadOptions::default(), &mut sources);
    assert!(diags.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&diags, &sources));
    p
}

/// Every model declared in `stdlib/*.snn` (not those it imports), file by file in name
/// order, with its file (`stdlib/lif.snn`).
pub fn stdlib_models() -> Vec<(String, Model)> {
    let mut names: Vec<_> = std::fs::read_dir(root().join("stdlib")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let mut out = Vec::new();
    for p in names.into_iter().filter(|p| p.extension().is_some_and(|e| e == "snn")) {
        let rel = format!("stdlib/{}", p.file_name().unwrap().to_string_lossy());
        let program = load(&rel);
        out.extend(program.models.into_iter().filter(|m| m.span.file == 0).map(|m| (rel.clone(), m)));
    }
    out
}

/// Every population of the networks `(file, network)` that has a neuron model, composed
/// with its synapses, named `file:population`.
pub fn example_populations(networks: &[(&str, &str)]) -> Vec<(String, GroupModel)> {
    let mut out = Vec::new();
    for &(file, net) in networks {
        let program = load(file);
        let net = program.network(net).unwrap_or_else(|| panic!("{file}: no network {net}"));
        let plan = snnc_compiler::net::plan(&program, net);
        for i in 0..net.populations.len() {
            let Some(g) = snnc_compiler::net::compose(&program, net, &plan, i) else { continue };
            let g = g.unwrap_or_else(|d| panic!("{file}: {}", d.message));
            out.push((format!("{file}:{}", net.populations[i].name), g));
        }
    }
    out
}

/// A population's constant settings, as param overrides for [`param_values`].
pub fn const_overrides(settings: &[(SymId, Init)]) -> Vec<(SymId, f64)> {
    settings
        .iter()
        .filter_map(|(s, init)| match init {
            Init::Const(v) => Some((*s, *v)),
            _ => None,
        })
        .collect()
}

/// Deterministic pseudo-random numbers, so failures reproduce.
#[derive(Clone)]
pub struct Lcg(pub u64);
impl Lcg {
    /// Uniform in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f64 {
        2.0 * self.next() - 1.0
    }
}

/// Param values: defaults in order (a default may use earlier params), evaluated with
/// time step `dt`, then overrides.
pub fn param_values(step: &Step, overrides: &[(SymId, f64)], dt: f64) -> Vec<f64> {
    let lm = ir::lower_model(&step.model).expect("lower");
    let mut vals = vec![f64::NAN; step.layout.params.len()];
    for (k, d) in lm.param_defaults.iter().enumerate() {
        if let Some(n) = d {
            let env = Env { params: &vals, dt, ..Env::default() };
            vals[k] = ir::eval(&lm.graph, &[*n], &env).expect("param default")[0];
        }
        if let Some((_, v)) = overrides.iter().find(|(s, _)| step.layout.params[k] == *s) {
            vals[k] = *v;
        }
    }
    vals
}

/// The scale of an input of this dimension that makes the models fire.
pub fn input_scale(model: &str, dim: Dim) -> f64 {
    match dim {
        d if d == units::AMPERE => match model {
            "GIF" => 2e-9,
            "HH" => 6e-10,
            _ => 3e-10,
        },
        d if d == units::VOLT => 0.01,
        d if d == units::SIEMENS => 1e-8,
        d if d == units::VOLT.div(Dim::TIME) => 15.0,
        _ => 1.5,
    }
}
