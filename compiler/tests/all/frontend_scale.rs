//! Issue #15, items 5 and 6: no nesting or size of a model crashes or stalls the front
//! end. The sources are generated here at the sizes of the reproductions; every
//! test runs on the test harness's default thread (2 MB of stack), and each case runs
//! every stage `check`, `fmt`, `explain` and `run` go through (check, format, lower and
//! discretise with derivatives and the explain text, compile the network and the JIT).

use snnc_compiler::SourceMap;
use snnc_compiler::backend::Precision;
use snnc_compiler::backend::cranelift::JitKernel;
use snnc_compiler::discretise::discretise;
use snnc_compiler::explain::explain_text;
use snnc_compiler::pipeline::{CompileOptions, compile_network};
use snnc_compiler::sema::check_source;
use snnc_compiler::syntax::format::format_file;
use snnc_compiler::syntax::parse::parse_file;

/// A neuron whose `let e` is `value`, preceded by `before` (functions), in a network.
fn model(before: &str, value: &str) -> String {
    format!(
        "{before}
neuron N {{
    param tau: ms = 10 ms
    state v = 0
    input I
    let e = {value}
    dv/dt = (e - v) / tau + I / tau
    spike when v > 1
    reset v = 0
}}
network net {{
    layer a = N[2]
    drive a.I = 0.5
}}
"
    )
}

/// Every stage of `check`, `fmt`, `explain` and `run` on `text`, which must be valid.
fn all_stages(text: &str) {
    let mut sources = SourceMap::new();
    let (program, diags) = check_source("big.snn", text, &mut sources);
    assert!(diags.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&diags, &sources));
    let file = parse_file(0, text).expect("parses");
    let formatted = format_file(&file, text);
    let (again, diags) = check_source("fmt.snn", &formatted, &mut SourceMap::new());
    assert!(diags.is_empty() && again.models.len() == 1, "the formatted text checks too");
    let mut step = discretise(&program.models[0]).expect("discretises");
    let (mut learn, _) = step.with_derivative_outputs().expect("derivatives");
    assert!(explain_text(&mut step, "big.snn").contains("neuron N"));
    assert!(!explain_text(&mut learn, "big.snn").is_empty());
    let plan = compile_network(&program, &program.networks[0], &CompileOptions::default()).expect("compiles");
    let dynamics = plan.populations[0].dynamics.as_ref().expect("a model");
    JitKernel::compile(&dynamics.step, &dynamics.specs, Precision::F64).expect("JIT");
}

/// The error diagnostics of `text`, rendered.
fn errors(text: &str) -> String {
    let mut sources = SourceMap::new();
    let (_, diags) = check_source("deep.snn", text, &mut sources);
    let errors: Vec<_> = diags.into_iter().filter(|d| d.is_error()).collect();
    snnc_compiler::diag::render_all(&errors, &sources)
}

#[test]
fn a_flat_sum_of_4000_terms_just_works() {
    all_stages(&model("", &vec!["v"; 4000].join(" + ")));
}

#[test]
fn a_flat_product_and_difference_chain_works() {
    all_stages(&model("", &format!("1 {}", " - v * 0.5".repeat(3000))));
}

#[test]
fn a_chain_of_2000_functions_works() {
    let mut fns = String::from("fn f0(x) = x\n");
    for i in 1..=2000 {
        fns.push_str(&format!("fn f{i}(x) = f{}(x) + 1\n", i - 1));
    }
    all_stages(&model(&fns, "f2000(v)"));
}

#[test]
fn deep_nesting_is_refused_at_the_place_not_a_crash() {
    for (what, value) in [
        ("parentheses", format!("{}v{}", "(".repeat(3000), ")".repeat(3000))),
        ("unary minuses", format!("{}v", "-".repeat(10_000))),
        ("`not`s", format!("if {}v > 0 then 1 else 0", "not ".repeat(10_000))),
        ("nested calls", format!("{}v{}", "exp(".repeat(10_000), ")".repeat(10_000))),
        ("`^` chain", format!("v{}", "^1".repeat(5000))),
        ("`if` chain", format!("{}0", "if v > 0 then 1 else ".repeat(5000))),
    ] {
        let text = model("", &value);
        let e = errors(&text);
        assert!(e.contains("error[E0006]: expression nested deeper than 256 levels"), "{what}: {e}");
        assert!(e.contains("deep.snn:6:"), "{what}: points at the `let` line: {e}");
    }
}

#[test]
fn nesting_up_to_the_limit_works() {
    // 250 levels: brackets, signs and calls mixed.
    let value = format!("{}v{}", "-(exp(".repeat(83), "))".repeat(83));
    all_stages(&model("", &value));
    all_stages(&model("", &format!("{}v{}", "(".repeat(250), ")".repeat(250))));
}

#[test]
fn signs_and_brackets_in_strings_and_comments_do_not_count() {
    let text = format!("// {}\n/* {} */\n{}", "(".repeat(1000), "-".repeat(1000), model("", "v"));
    all_stages(&text);
}

/// 28 functions each calling the previous twice: a tree of 2^28 calls when inlined as a
/// tree (about 20 GB before the fix), 28 shared nodes now.
#[test]
fn functions_calling_the_previous_twice_stay_linear() {
    // Halved at each level, so that the value stays 0.5 v (2^28 v would overflow the
    // kernel's folded propagator, which the backends refuse).
    let mut fns = String::from("fn f0(x) = x * 0.5\n");
    for i in 1..=28 {
        fns.push_str(&format!("fn f{i}(x) = (f{p}(x) + f{p}(x)) * 0.5\n", p = i - 1));
    }
    all_stages(&model(&fns, "f28(v)"));
}

/// The same with a constant argument: constant folding of the checked value must not
/// walk the 2^28 paths either.
#[test]
fn constant_calls_of_shared_functions_stay_linear() {
    let mut fns = String::from("fn f0(x) = x * 0.5\n");
    for i in 1..=40 {
        fns.push_str(&format!("fn f{i}(x) = f{p}(x) + f{p}(x)\n", p = i - 1));
    }
    let text = fns + "neuron N { param p = f40(1e-12); state v = 0; dv/dt = -v * p / ms }";
    let (program, diags) = check_source("c.snn", &text, &mut SourceMap::new());
    assert!(diags.is_empty());
    let p = program.models[0].symbols.iter().find(|s| s.name == "p").unwrap();
    assert_eq!(p.value.as_ref().unwrap().const_value(), Some(1e-12 * 0.5 * 2f64.powi(40)));
}

/// Random draws in a function stay one draw per call (not shared by identical calls).
#[test]
fn random_calls_are_not_shared() {
    let text = "fn noise(x) = x * randn()\nneuron N { state v = 0; dv/dt = (noise(1) + noise(1) - v) / ms }";
    let (program, diags) = check_source("r.snn", text, &mut SourceMap::new());
    assert!(diags.is_empty());
    let lowered = snnc_compiler::ir::lower::lower_model(&program.models[0]).unwrap();
    assert_eq!(lowered.random_slots, 2);
}

/// 18 lets each using the previous twice: `explain` printed (and sized) every path,
/// 2^18 of them (> 60 s before the fix).
#[test]
fn lets_used_twice_explain_in_linear_time() {
    let mut lets = String::from("let l0 = v\n");
    for i in 1..=18 {
        lets.push_str(&format!("let l{i} = l{p} * l{p} + l{p}\n", p = i - 1));
    }
    let text = format!("neuron N {{ param tau: ms = 10 ms; state v = 0\n{lets}dv/dt = (l18 - v) / tau; spike when v > 1; reset v = 0 }}\nnetwork net {{ layer a = N[1] }}");
    let (program, diags) = check_source("l.snn", &text, &mut SourceMap::new());
    assert!(diags.is_empty());
    let mut step = discretise(&program.models[0]).unwrap();
    let text = explain_text(&mut step, "l.snn");
    assert!(text.lines().count() < 200, "shared lets are printed once each:\n{text}");
}

/// 3,000 chained lets (29 s before the fix: every declaration rescanned all the others).
#[test]
fn chained_lets_check_in_linear_time() {
    let mut lets = String::from("let l0 = v\n");
    for i in 1..=3000 {
        lets.push_str(&format!("let l{i} = l{} + 1\n", i - 1));
    }
    all_stages(&model("", "v").replace("    let e = v\n", &format!("{lets}    let e = l3000\n")));
}

/// `fmt` of a file with a byte order mark: the mark is dropped, the rest formatted.
#[test]
fn formatting_a_file_with_a_byte_order_mark() {
    let text = "\u{feff}// a comment\nneuron N {\n  state v = 0\n  dv/dt = -v / ms\n}\n";
    let file = parse_file(0, text).expect("parses");
    let out = format_file(&file, text);
    assert!(out.starts_with("// a comment\nneuron N {"), "{out}");
    let (_, diags) = check_source("f.snn", &out, &mut SourceMap::new());
    assert!(diags.is_empty());
}

/// A single expression (command-line overrides) is held to the same limits.
#[test]
fn a_single_expression_nested_too_deep_is_refused() {
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let e = snnc_compiler::syntax::parse::parse_expr(0, &deep).unwrap_err();
    assert_eq!(e.code, "E0006");
    let long = format!("1{}", " + 1".repeat(20_000));
    assert_eq!(snnc_compiler::syntax::parse::parse_expr(0, &long).unwrap_err().code, "E0006");
    assert!(snnc_compiler::syntax::parse::parse_expr(0, &format!("1{}", " + 1".repeat(4000))).is_ok());
}
