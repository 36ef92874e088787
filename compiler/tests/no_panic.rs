//! Property tests: no input, however broken, makes the compiler panic, and formatting is
//! idempotent and meaning-preserving. The number of cases is bounded (PROPTEST_CASES
//! overrides it) so CI stays fast; every generated program that checks is also
//! discretised, differentiated and explained, so later stages are covered too.

use proptest::prelude::*;
use snnc_compiler::SourceMap;
use snnc_compiler::discretise::discretise;
use snnc_compiler::sema::check_source;
use snnc_compiler::syntax::format::format_file;
use snnc_compiler::syntax::parse_file;

fn corpus() -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut out = Vec::new();
    for dir in ["stdlib", "examples", "tests/data"] {
        let mut files: Vec<_> = std::fs::read_dir(format!("{root}/{dir}")).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "snn")) {
            out.push(std::fs::read_to_string(f).unwrap());
        }
    }
    out
}

/// Runs every stage on `text`; panics are the failure.
fn compile_all(text: &str) {
    let mut sources = SourceMap::new();
    let (program, diags) = check_source("fuzz.snn", text, &mut sources);
    // Rendering must not panic either (spans must lie inside their files).
    let _ = snnc_compiler::diag::render_all(&diags, &sources);
    if diags.iter().any(|d| d.is_error()) {
        return;
    }
    for m in &program.models {
        if let Ok(mut step) = discretise(m) {
            let _ = snnc_compiler::explain::explain_text(&mut step, "fuzz.snn");
        }
    }
    for net in &program.networks {
        let plan = snnc_compiler::net::plan(&program, net);
        for p in 0..net.populations.len() {
            if let Some(Ok(g)) = snnc_compiler::net::compose(&program, net, &plan, p) {
                let _ = discretise(&g.model);
            }
        }
    }
}

/// Removes spans from an AST's debug form, to compare meaning only.
fn strip_spans(ast: &str) -> String {
    let mut out = String::with_capacity(ast.len());
    let mut rest = ast;
    while let Some(i) = rest.find("Span {") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').map(|j| i + j + 1).unwrap_or(rest.len());
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

fn check_format(text: &str) {
    let Ok(ast) = parse_file(0, text) else { return };
    let once = format_file(&ast, text);
    let reparsed = parse_file(0, &once).unwrap_or_else(|d| panic!("formatted text does not parse: {}\n---\n{once}", d.message));
    assert_eq!(strip_spans(&format!("{ast:?}")), strip_spans(&format!("{reparsed:?}")), "formatting changed the meaning:\n{once}");
    let twice = format_file(&reparsed, &once);
    assert_eq!(once, twice, "formatting is not idempotent");
}

const TOKENS: &[&str] = &[
    "{", "}", "(", ")", "[", "]", ",", ";", ":", "=", "+=", "-=", "->", ".", "+", "-", "*", "/", "^", "<", ">=", "==",
    "and", "or", "not", "if", "then", "else", "neuron", "synapse", "network", "import", "fn", "param", "state", "input",
    "let", "spike", "when", "surrogate", "on", "reset", "refractory", "method", "output", "layer", "readout", "connect",
    "via", "drive", "train", "dense", "sparse", "p", "one_to_one", "init", "weight", "trainable", "no_self", "delay", "as",
    "detach", "clamp", "1", "0", "1e999", "-3.5", "10 ms", "mV", "nS", "1/ms", "v", "w", "pre", "v_post", "dv/dt", "exp(",
    "U(", "normal(", "relu_grad(", "\"x.snn\"", "\n", "// c\n", "/*", "*/", "µ", "é", "\0",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "[ -~\n\t]{0,200}") {
        compile_all(&text);
    }

    #[test]
    fn random_token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..60)) {
        let text = tokens.join(" ");
        compile_all(&text);
        check_format(&text);
    }

    #[test]
    fn mutated_valid_files_never_panic(file in 0usize..1000, a in 0usize..100_000, b in 0usize..100_000, tok in prop::sample::select(TOKENS), kind in 0u8..4) {
        let files = corpus();
        let text = &files[file % files.len()];
        let n = text.len();
        let (mut lo, mut hi) = ((a % (n + 1)).min(b % (n + 1)), (a % (n + 1)).max(b % (n + 1)));
        while !text.is_char_boundary(lo) { lo -= 1; }
        while !text.is_char_boundary(hi) { hi -= 1; }
        let mutated = match kind {
            0 => format!("{}{}", &text[..lo], &text[hi..]),
            1 => format!("{}{}{}", &text[..hi], &text[lo..hi], &text[hi..]),
            2 => format!("{} {tok} {}", &text[..lo], &text[lo..]),
            _ => {
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() > 1 {
                    let (i, j) = (a % lines.len(), b % lines.len());
                    lines.swap(i, j);
                }
                lines.join("\n")
            }
        };
        compile_all(&mutated);
        check_format(&mutated);
    }
}

#[test]
fn repository_files_are_formatted_and_round_trip() {
    for text in corpus() {
        let ast = parse_file(0, &text).expect("repository files parse");
        assert_eq!(format_file(&ast, &text), text, "not in canonical format");
        check_format(&text);
    }
}
