//! Every `.snn` file of `stdlib/` and `examples/`:
//! - checks with no error and no warning;
//! - has a snapshot of what the front end made of it (`snapshots/all__stdlib__<dir>_<file>.snap`):
//!   per model its symbols with kind and physical dimension, equations, spike condition,
//!   surrogate and events; per network its inputs, populations and projections with the
//!   dimension of their weights;
//! - is in canonical format (`snnc fmt` leaves it unchanged), formatting is idempotent,
//!   and parsing the formatted text gives the same AST up to source positions.

use snnc_compiler::SourceMap;
use snnc_compiler::sema::{self, Init, LoadOptions, Model, NetworkDef, PopModel, Program, Source, Surrogate, SymKind, SynInit, Topology, TrainValue};
use snnc_compiler::syntax::format::format_file;
use snnc_compiler::syntax::parse_file;
use snnc_compiler::units::Dim;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::common::strip_spans;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(dir, file name)` of every `.snn` file in `stdlib/` and `examples/`, sorted.
fn files() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for dir in ["stdlib", "examples"] {
        let mut names: Vec<String> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".snn"))
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| (dir, n)));
    }
    out
}

fn dim(d: Dim) -> String {
    if d.is_dimensionless() { "1".into() } else { d.to_string() }
}

/// A value in SI units with six significant digits (`1.5e-8`, not `1.5000000000000002e-8`),
/// written plainly between 0.001 and 100000.
fn si(v: f64) -> String {
    let s = format!("{v:.5e}");
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        return format!("{}", s.parse::<f64>().expect("a number"));
    }
    let (mantissa, exp) = s.split_once('e').expect("exponent");
    let mantissa = if mantissa.contains('.') { mantissa.trim_end_matches('0').trim_end_matches('.') } else { mantissa };
    if exp == "0" { mantissa.to_string() } else { format!("{mantissa}e{exp}") }
}

/// A value with its dimension: `-0.06 V`, `20` (dimensionless).
fn quantity(v: f64, d: Dim) -> String {
    if d.is_dimensionless() { si(v) } else { format!("{} {d}", si(v)) }
}

fn init(i: &Init, d: Dim) -> String {
    match i {
        Init::Const(v) => quantity(*v, d),
        Init::Uniform { low, high } => format!("U({}, {})", quantity(*low, d), quantity(*high, d)),
        Init::Normal { mean, std } => format!("normal({}, {})", quantity(*mean, d), quantity(*std, d)),
        Init::Data(k) => format!("data {k}"),
    }
}

fn syn_init(v: &SynInit, d: Dim) -> String {
    match v {
        SynInit::Draw(i) => init(i, d),
        SynInit::Expr(_) => "an expression of the indices".to_string(),
    }
}

fn surrogate(s: &Surrogate) -> String {
    match s {
        Surrogate::Builtin { name, params } => {
            let p: Vec<String> = params.iter().map(|(n, v)| format!("{n} = {v}")).collect();
            format!("{name}({})", p.join(", "))
        }
        Surrogate::User { name, .. } => format!("{name} (user function)"),
    }
}

fn model_summary(out: &mut String, m: &Model) {
    let _ = writeln!(out, "{:?} {}", m.kind, m.name);
    for s in m.symbols.iter().filter(|s| !matches!(s.kind, SymKind::Time | SymKind::Dt)) {
        let value = match s.value.as_ref().map(|v| v.const_value()) {
            Some(Some(v)) => format!(" = {}", si(v)),
            Some(None) => " = (expression)".into(),
            None => String::new(),
        };
        let kind = format!("{:?}", s.kind);
        let name = format!("{}:", s.name);
        let _ = writeln!(out, "  {kind:<9} {name:<12} {}{value}{}", dim(s.dim), if s.trainable { " trainable" } else { "" });
    }
    let states: Vec<String> = m.odes.iter().map(|(s, _)| format!("d{}/dt", m.symbols[*s].name)).collect();
    let _ = writeln!(out, "  {} ODE(s){}{}", m.odes.len(), if states.is_empty() { "" } else { ": " }, states.join(", "));
    match &m.spike {
        Some(sp) => {
            let _ = writeln!(out, "  spike condition: yes, surrogate {}", surrogate(&sp.surrogate));
        }
        None => {
            let _ = writeln!(out, "  spike condition: no");
        }
    }
    for u in m.on_spike.iter().chain(&m.on_pre) {
        let event = if m.on_spike.is_empty() { "pre" } else { "spike" };
        let _ = writeln!(out, "  on {event}: {} {:?}", m.symbols[u.target].name, u.op);
    }
    for u in &m.on_post {
        let _ = writeln!(out, "  on post: {} {:?}", m.symbols[u.target].name, u.op);
    }
    if let Some(r) = &m.refractory {
        let clamp: Vec<&str> = r.clamp.iter().map(|c| m.symbols[*c].name.as_str()).collect();
        let period = match (&r.period.kind, r.period.const_value()) {
            (sema::TKind::Sym(s), _) => m.symbols[*s].name.clone(),
            (_, Some(v)) => quantity(v, r.period.ty_dim()),
            _ => "(expression)".into(),
        };
        let clamp = if clamp.is_empty() { "nothing".to_string() } else { clamp.join(", ") };
        let _ = writeln!(out, "  refractory {period}, clamping {clamp}");
    }
    if let Some(method) = m.method {
        let _ = writeln!(out, "  method {}", method.name());
    }
    if let Some((port, value)) = &m.output {
        let _ = writeln!(out, "  output {port}: {}", dim(value.ty_dim()));
    }
    if m.kind == snnc_compiler::syntax::ast::ModelKind::Synapse {
        let _ = writeln!(out, "  weight: {}", m.weight_dim.map(dim).unwrap_or_else(|| "from the port it drives".into()));
    }
}

fn network_summary(out: &mut String, p: &Program, n: &NetworkDef) {
    let _ = writeln!(out, "network {}", n.name);
    if let Some(dt) = n.dt {
        let _ = writeln!(out, "  dt = {}", quantity(dt, Dim::TIME));
    }
    if let Some(seed) = n.seed {
        let _ = writeln!(out, "  seed = {seed}");
    }
    for i in &n.inputs {
        let _ = writeln!(out, "  input {}[{}]", i.name, i.size);
    }
    for pop in &n.populations {
        let model = match pop.model {
            PopModel::Model(m) => p.models[m].name.as_str(),
            PopModel::Linear => "Linear",
        };
        let _ = write!(out, "  {:?} {} = {model}[{}]", pop.kind, pop.name, pop.size);
        if let PopModel::Model(m) = pop.model {
            let syms = &p.models[m].symbols;
            let s: Vec<String> = pop.settings.iter().map(|(sid, i)| format!("{} = {}", syms[*sid].name, init(i, syms[*sid].dim))).collect();
            if !s.is_empty() {
                let _ = write!(out, " {{ {} }}", s.join(", "));
            }
        }
        let _ = writeln!(out);
    }
    for d in &n.drives {
        let pop = &n.populations[d.pop];
        let PopModel::Model(m) = pop.model else { continue };
        let port = &p.models[m].symbols[d.port];
        let _ = writeln!(out, "  drive {}.{} = {}", pop.name, port.name, init(&d.value, port.dim));
    }
    for pr in &n.projections {
        let from = match pr.from {
            Source::Input(i) => n.inputs[i].name.as_str(),
            Source::Pop(i) => n.populations[i].name.as_str(),
        };
        let to = &n.populations[pr.to];
        let port = match (to.model, pr.port) {
            (PopModel::Model(m), Some(s)) => format!(".{}", p.models[m].symbols[s].name),
            _ => String::new(),
        };
        let topo = match &pr.topology {
            Topology::Dense => "dense".to_string(),
            Topology::Sparse { p } => format!("sparse p = {p}"),
            Topology::SparseExpr { .. } => "sparse p = an expression of the indices".into(),
            Topology::OneToOne => "one_to_one".into(),
            // The path is resolved next to the file: only its name is the same everywhere.
            Topology::File { path } => format!("from {:?}", Path::new(path).file_name().unwrap_or_default()),
            Topology::Procedural { p } => format!("procedural p = {p}"),
            Topology::Conv(c) => format!(
                "{} {}x{}x{} -> {}x{}x{}, kernel {}, stride {}, padding {}",
                if c.pool { "pool" } else { "conv" },
                c.channels,
                c.height,
                c.width,
                c.out,
                c.out_height(),
                c.out_width(),
                c.kernel,
                c.stride,
                c.padding
            ),
        };
        let from = match &pr.from_state {
            Some(st) => format!("{from}.{st}"),
            None => from.to_string(),
        };
        let _ = write!(out, "  projection {}: {from} -> {}{port}, {topo}, weight {}", pr.name, to.name, dim(pr.weight_dim));
        if let Some((syn, settings)) = &pr.synapse {
            let sm = &p.models[*syn];
            let s: Vec<String> = settings.iter().map(|(sid, i)| format!("{} = {}", sm.symbols[*sid].name, init(i, sm.symbols[*sid].dim))).collect();
            let _ = write!(out, ", via {}", sm.name);
            if !s.is_empty() {
                let _ = write!(out, " {{ {} }}", s.join(", "));
            }
        }
        if let Some(i) = &pr.init {
            let _ = write!(out, ", init {}", syn_init(i, pr.weight_dim));
        }
        for (flag, name) in [(pr.trainable, "trainable"), (pr.no_self, "no_self"), (pr.bias, "bias")] {
            if flag {
                let _ = write!(out, ", {name}");
            }
        }
        if let Some(d) = &pr.delay {
            let _ = write!(out, ", delay {}", syn_init(d, Dim::TIME));
        }
        let _ = writeln!(out);
    }
    for (k, v) in &n.train {
        let v = match v {
            TrainValue::Name(s) => s.clone(),
            TrainValue::Number(x) => si(*x),
            TrainValue::Text(t) => format!("{t:?}"),
        };
        let _ = writeln!(out, "  train {k} = {v}");
    }
}

/// The dimension of a numeric checked expression.
trait TyDim {
    fn ty_dim(&self) -> Dim;
}

impl TyDim for sema::TExpr {
    fn ty_dim(&self) -> Dim {
        match self.ty {
            sema::Ty::Num(d) => d,
            sema::Ty::Bool => panic!("a condition where a number was expected"),
        }
    }
}

#[test]
fn every_file_checks_cleanly_and_matches_its_summary() {
    let all = files();
    assert!(all.iter().filter(|(d, _)| *d == "stdlib").count() >= 9, "{all:?}");
    assert!(all.iter().filter(|(d, _)| *d == "examples").count() >= 6, "{all:?}");
    for (dir, name) in all {
        let path = repo().join(dir).join(&name);
        let mut sources = SourceMap::new();
        let (program, diags) = sema::check_path(&path, &LoadOptions::default(), &mut sources);
        assert!(diags.is_empty(), "{dir}/{name}: expected no diagnostics, got\n{}", snnc_compiler::diag::render_all(&diags, &sources));
        let mut out = String::new();
        // Only what this file defines (file 0), not what it imports.
        let own: Vec<&Model> = program.models.iter().filter(|m| m.span.file == 0).collect();
        let nets: Vec<&NetworkDef> = program.networks.iter().filter(|n| n.span.file == 0).collect();
        assert!(!own.is_empty() || !nets.is_empty(), "{dir}/{name} defines nothing");
        for m in own {
            model_summary(&mut out, m);
        }
        for n in nets {
            network_summary(&mut out, &program, n);
        }
        let stem = name.trim_end_matches(".snn");
        insta::with_settings!({ omit_expression => true, description => format!("{dir}/{name}") }, {
            insta::assert_snapshot!(format!("{dir}_{stem}"), out);
        });
    }
}

// ---------------------------------------------------------------- formatting

#[test]
fn strip_spans_removes_exactly_the_spans() {
    let d = r#"Ident { name: "v", span: Span { file: 0, start: 12, end: 13 } }, Str("Span { file: 0, start: 1, end: 2 }")"#;
    assert_eq!(strip_spans(d), r#"Ident { name: "v", span: _ }, Str("Span { file: 0, start: 1, end: 2 }")"#);
    assert_eq!(strip_spans(r#"One(Span { file: 3, start: 0, end: 10 })"#), "One(_)");
    assert_eq!(strip_spans(r#""a\"Span { file: 0, start: 1, end: 2 }""#), r#""a\"Span { file: 0, start: 1, end: 2 }""#);
    // Not a span: left alone.
    assert_eq!(strip_spans("Span { file: x }"), "Span { file: x }");
}

/// Formats `text`, checks that the result parses to the same AST (spans aside) and that
/// formatting it again changes nothing; returns the formatted text.
fn format_round_trip(label: &str, text: &str) -> String {
    let ast = parse_file(0, text).unwrap_or_else(|d| panic!("{label}: does not parse: {}", d.message));
    let once = format_file(&ast, text);
    let again = parse_file(0, &once).unwrap_or_else(|d| panic!("{label}: formatted text does not parse: {}\n{once}", d.message));
    assert_eq!(strip_spans(&format!("{ast:?}")), strip_spans(&format!("{again:?}")), "{label}: formatting changed the AST:\n{once}");
    let twice = format_file(&again, &once);
    assert_eq!(once, twice, "{label}: formatting is not idempotent");
    once
}

#[test]
fn every_file_is_formatted_and_formatting_preserves_the_ast() {
    for (dir, name) in files() {
        let label = format!("{dir}/{name}");
        let text = std::fs::read_to_string(repo().join(dir).join(&name)).unwrap();
        let once = format_round_trip(&label, &text);
        if once != text {
            let line = once.lines().zip(text.lines()).position(|(a, b)| a != b).map(|i| i + 1).unwrap_or(0);
            panic!("{label}: not in canonical format (`snnc fmt` changes line {line}):\n{once}");
        }
    }
}

#[test]
fn formatting_restores_the_canonical_layout() {
    // Each file re-indented with tabs and odd spacing, `;` after items, and trailing
    // blanks: formatting gives the original file back.
    for (dir, name) in files() {
        let label = format!("{dir}/{name}");
        let text = std::fs::read_to_string(repo().join(dir).join(&name)).unwrap();
        let messy: String = text
            .lines()
            .map(|l| {
                let body = l.trim_start_matches(' ');
                let level = (l.len() - body.len()) / 4;
                let mut s = "\t".repeat(level);
                s.push_str(&" ".repeat(level % 2));
                s.push_str(body);
                // A `;` may end any item that does not end in a comment or a brace.
                if !body.is_empty() && !body.contains("//") && !body.ends_with('{') && !body.ends_with('}') {
                    s.push(';');
                }
                s.push_str("  ");
                s
            })
            .collect::<Vec<_>>()
            .join("\n");
        let messy = messy + "\n\n\n";
        let once = format_round_trip(&label, &messy);
        assert_eq!(once, text, "{label}: formatting the re-laid-out file does not give the file back");
    }
}
