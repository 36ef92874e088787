//! Snapshots of what the front end makes of every stdlib file: each model's symbols with
//! their kinds and physical dimensions, equations, spike, surrogate and events. A change
//! to the grammar, the unit system or a stdlib model shows up here for review.
use snnc_compiler::SourceMap;
use snnc_compiler::sema::{self, LoadOptions, Surrogate, SymKind};
use std::fmt::Write;

fn summary(file: &str) -> String {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../stdlib")).join(file);
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_path(&path, &LoadOptions::default(), &mut sources);
    assert!(diags.is_empty(), "{}", snnc_compiler::diag::render_all(&diags, &sources));
    let mut out = String::new();
    for m in program.models.iter().filter(|m| m.span.file == 0) {
        let _ = writeln!(out, "{:?} {}", m.kind, m.name);
        for s in m.symbols.iter().filter(|s| !matches!(s.kind, SymKind::Time | SymKind::Dt)) {
            let value = s.value.as_ref().and_then(|v| v.const_value()).map(|v| format!(" = {v:e}")).unwrap_or_default();
            let _ = writeln!(out, "  {:<9} {:<12} {}{value}{}", format!("{:?}", s.kind), s.name, s.dim, if s.trainable { " trainable" } else { "" });
        }
        for (sid, _) in &m.odes {
            let _ = writeln!(out, "  ode d{}/dt", m.symbols[*sid].name);
        }
        if let Some(sp) = &m.spike {
            let sg = match &sp.surrogate {
                Surrogate::Builtin { name, params } => format!("{name}{params:?}"),
                Surrogate::User { name, .. } => format!("user {name}"),
            };
            let _ = writeln!(out, "  spike, surrogate {sg}");
        }
        for u in m.on_spike.iter().chain(&m.on_pre) {
            let _ = writeln!(out, "  event {} {:?}", m.symbols[u.target].name, u.op);
        }
        if let Some(r) = &m.refractory {
            let clamp: Vec<&str> = r.clamp.iter().map(|c| m.symbols[*c].name.as_str()).collect();
            let _ = writeln!(out, "  refractory {:e} s, clamp {clamp:?}", r.period.const_value().unwrap_or(f64::NAN));
        }
        if let Some(method) = m.method {
            let _ = writeln!(out, "  method {}", method.name());
        }
        if let Some(w) = m.weight_dim {
            let _ = writeln!(out, "  weight {w}");
        }
    }
    out
}

#[test]
fn stdlib_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../stdlib");
    let mut files: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert!(files.len() >= 9);
    for f in files {
        insta::with_settings!({ snapshot_suffix => f.trim_end_matches(".snn") }, {
            insta::assert_snapshot!("stdlib", summary(&f));
        });
    }
}
