//! Diagnostics for bad inputs: each case asserts the code, the exact underlined text and
//! the message, and snapshots the rendered report (file:line:col, source line, label,
//! notes and suggestion) as a user sees it.

use snnc_compiler::SourceMap;
use snnc_compiler::diag::{Diagnostic, render_all};
use snnc_compiler::sema::{self, LoadOptions};

struct Case {
    name: &'static str,
    text: &'static str,
    code: &'static str,
    /// The text under the primary underline.
    span: &'static str,
    message: &'static str,
}

fn check(text: &str) -> (Vec<Diagnostic>, SourceMap) {
    let mut sources = SourceMap::new();
    let (_, diags) = sema::check_source("bad.snn", text, &mut sources);
    (diags, sources)
}

const LIF: &str = "import \"stdlib/lif.snn\"\n";

const CASES: &[Case] = &[
    Case { name: "unknown_name", text: "neuron N {\n    param tau: ms = 10 ms\n    state v = 0\n    dv/dt = -v / tua\n}\n", code: "E0101", span: "tua", message: "unknown name `tua`" },
    Case { name: "unknown_unit", text: "neuron N {\n    param tau: ms = 10 msec\n}\n", code: "E0102", span: "msec", message: "unknown unit `msec`" },
    Case { name: "ode_unit_mismatch", text: "neuron N {\n    param tau: ms = 10 ms\n    state v: mV = 0 mV\n    dv/dt = -v * tau\n}\n", code: "E0201", span: "-v * tau", message: "the right side of `dv/dt` has the wrong dimension" },
    Case { name: "exp_of_dimensional", text: "neuron N {\n    param tau: ms = 10 ms\n    state v = 0\n    dv/dt = exp(tau) / tau\n}\n", code: "E0203", span: "tau", message: "the argument of `exp` must be dimensionless" },
    Case { name: "state_never_changes", text: "neuron N {\n    state v = 0\n    state w = 0\n    dv/dt = -v / (1 ms)\n}\n", code: "E0309", span: "w", message: "state `w` never changes" },
    Case { name: "assign_param", text: "neuron N {\n    param th = 1\n    state v = 0\n    dv/dt = -v / (1 ms)\n    spike when v > th\n    on spike { th = 2 }\n}\n", code: "E0312", span: "th", message: "cannot assign to `th`: it is a param" },
    Case { name: "assign_input", text: "neuron N {\n    input I\n    state v = 0\n    dv/dt = (I - v) / (1 ms)\n    spike when v > 1\n    on spike { I = 0 }\n}\n", code: "E0312", span: "I", message: "cannot assign to `I`: it is an input" },
    Case { name: "ode_for_param", text: "neuron N {\n    param a = 1\n    da/dt = -a / (1 ms)\n}\n", code: "E0305", span: "a", message: "`a` is a param, and only a state can have an equation" },
    Case { name: "duplicate_declaration", text: "neuron N {\n    param a = 1\n    param a = 2\n}\n", code: "E0107", span: "a", message: "`a` is declared twice" },
    Case { name: "wrong_port", text: "import \"stdlib/lif.snn\"\nnetwork n {\n    input x: 3\n    layer L = LIF[4]\n    connect x -> L.J dense\n}\n", code: "E0408", span: "J", message: "has no input port `J`" },
    Case { name: "unknown_population", text: "import \"stdlib/lif.snn\"\nnetwork n {\n    input x: 3\n    layer L = LIF[4]\n    connect x -> M.I dense\n}\n", code: "E0101", span: "M", message: "unknown population `M`" },
    Case { name: "unknown_model", text: "import \"stdlib/lif.snn\"\nnetwork n {\n    layer L = LIFF[4]\n}\n", code: "E0101", span: "LIFF", message: "unknown model `LIFF`" },
    Case { name: "missing_import", text: "import \"lif2.snn\"\n", code: "E0004", span: "import \"lif2.snn\"", message: "cannot find `lif2.snn` to import" },
    Case { name: "unterminated_block", text: "neuron N {\n    param a = 1\n", code: "E0001", span: "", message: "unexpected end of the file: a block is not closed" },
    Case { name: "number_too_large", text: "neuron N {\n    param a = 1e999\n}\n", code: "E0002", span: "1e999", message: "number `1e999` is too large" },
    Case { name: "bad_number", text: "neuron N {\n    param a = 1.2.3\n}\n", code: "E0001", span: ".3", message: "expected" },
    Case { name: "keyword_as_name", text: "neuron N {\n    param delay: ms = 1 ms\n}\n", code: "E0001", span: "delay", message: "expected a name" },
    Case { name: "if_branches_differ", text: "neuron N {\n    state v: mV = 0 mV\n    dv/dt = if v > 0 then v / (1 ms) else 1 / (1 ms)\n}\n", code: "E0201", span: "1 / (1 ms)", message: "the branches of `if` have different dimensions" },
    Case { name: "compare_dimensions", text: "neuron N {\n    state v: mV = 0 mV\n    dv/dt = -v / (1 ms)\n    spike when v > 1 ms\n}\n", code: "E0201", span: "v > 1 ms", message: "cannot compare quantities of different dimensions" },
    Case { name: "unknown_surrogate", text: "neuron N {\n    state v = 0\n    dv/dt = -v / (1 ms)\n    spike when v > 1 surrogate relu_grd()\n    on spike { v = 0 }\n}\n", code: "E0314", span: "relu_grd", message: "unknown surrogate `relu_grd`" },
    Case { name: "bad_surrogate_parameter", text: "neuron N {\n    state v = 0\n    dv/dt = -v / (1 ms)\n    spike when v > 1 surrogate relu_grad(alpah = 1)\n    on spike { v = 0 }\n}\n", code: "E0105", span: "alpah", message: "surrogate `relu_grad` has no parameter `alpah`" },
    Case { name: "reset_in_synapse", text: "synapse S {\n    state g = 0\n    dg/dt = -g / (1 ms)\n    reset g = 0\n    output I = g\n}\n", code: "E0307", span: "reset g = 0", message: "a synapse cannot have a reset" },
    Case { name: "on_pre_in_neuron", text: "neuron N {\n    state v = 0\n    dv/dt = -v / (1 ms)\n    on pre { v += 1 }\n}\n", code: "E0308", span: "pre", message: "unknown event `pre`" },
    Case { name: "one_to_one_sizes", text: "import \"stdlib/lif.snn\"\nnetwork n {\n    input x: 3\n    layer L = LIF[4]\n    connect x -> L.I one_to_one\n}\n", code: "E0415", span: "connect x -> L.I one_to_one", message: "`one_to_one` needs populations of the same size" },
    Case { name: "probability_out_of_range", text: "import \"stdlib/lif.snn\"\nnetwork n {\n    layer L = LIF[4]\n    connect L -> L.I sparse p = 1.5\n}\n", code: "E0403", span: "1.5", message: "a connection probability must be between 0 and 1" },
    Case { name: "drive_dimension", text: "import \"stdlib/coba.snn\"\nnetwork n {\n    layer E = COBALIF[4]\n    drive E.I = 20 mV\n}\n", code: "E0201", span: "20 mV", message: "wrong dimension for the drive" },
    Case { name: "unknown_network_setting", text: "network n {\n    dtt = 1 ms\n}\n", code: "E0410", span: "dtt", message: "unknown network setting `dtt`" },
    Case { name: "unknown_train_setting", text: "network n {\n    train { methd = bptt }\n}\n", code: "E0416", span: "methd", message: "unknown training setting `methd`" },
    Case { name: "param_without_default", text: "neuron N {\n    param tau: ms\n    state v = 0\n    dv/dt = -v / tau\n}\nnetwork n {\n    layer L = N[2]\n}\n", code: "E0407", span: "layer L = N[2]", message: "param `tau` of `N` has no default and is not set" },
    Case { name: "recursive_function", text: "fn f(x) = f(x) + 1\nneuron N {\n    state v = 0\n    dv/dt = f(v) / (1 ms)\n}\n", code: "E0106", span: "f(x)", message: "`f` calls itself" },
    Case { name: "builtin_arity", text: "neuron N {\n    state v = 0\n    dv/dt = exp(v, 2) / (1 ms)\n}\n", code: "E0105", span: "exp(v, 2)", message: "`exp` takes 1 argument, found 2" },
    Case { name: "initialiser_in_equation", text: "neuron N {\n    state v = 0\n    dv/dt = U(0, 1) / (1 ms)\n}\n", code: "E0207", span: "U(0, 1)", message: "`U(...)` is an initialiser, not a function" },
    Case { name: "negative_std", text: "import \"stdlib/lif.snn\"\nnetwork n {\n    layer L = LIF[4] { tau = normal(10 ms, -1 ms) }\n}\n", code: "E0403", span: "-1 ms", message: "a standard deviation cannot be negative" },
    Case { name: "let_before_definition", text: "neuron N {\n    let a = b + 1\n    let b = 2\n}\n", code: "E0103", span: "b", message: "`b` is used before it is defined" },
    Case { name: "synapse_cannot_drive_port", text: "import \"stdlib/lif.snn\"\nimport \"stdlib/synapses.snn\"\nnetwork n {\n    layer L = LIF[4]\n    connect L -> L.I via ExpCond dense weight 1 nS\n}\n", code: "E0413", span: "ExpCond", message: "`ExpCond` cannot drive port `I`" },
    Case { name: "synapse_reads_missing_post", text: "import \"stdlib/gif.snn\"\nimport \"stdlib/synapses.snn\"\nnetwork n {\n    layer G = GIF[4]\n    connect G -> G.I via ExpCond dense weight 1 nS\n}\n", code: "E0414", span: "ExpCond", message: "but `GIF` has no `v`" },
    Case { name: "weights_need_a_value", text: "import \"stdlib/coba.snn\"\nnetwork n {\n    layer E = COBALIF[4]\n    connect E -> E.I via ExpCond sparse p = 0.1\n}\n", code: "E0418", span: "connect E -> E.I via ExpCond sparse p = 0.1", message: "need a value" },
];

#[test]
fn every_bad_input_gives_its_diagnostic() {
    assert!(CASES.len() >= 30);
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CASES.len(), "case names are unique");
    for case in CASES {
        let (diags, sources) = check(case.text);
        let rendered = render_all(&diags, &sources);
        let d = diags
            .iter()
            .find(|d| d.is_error() && d.code == case.code)
            .unwrap_or_else(|| panic!("{}: no {} in\n{rendered}", case.name, case.code));
        let text = sources.text(d.span.file);
        assert_eq!(&text[d.span.range()], case.span, "{}: underlined text\n{rendered}", case.name);
        assert!(d.message.contains(case.message), "{}: message `{}` lacks `{}`", case.name, d.message, case.message);
        insta::with_settings!({ snapshot_suffix => case.name, description => case.text }, {
            insta::assert_snapshot!("bad_input", rendered);
        });
    }
}

#[test]
fn suggestions_name_the_nearest_known_name() {
    let (d, _) = check(CASES[0].text);
    assert_eq!(d[0].help.as_deref(), Some("did you mean `tau`?"));
    let (d, _) = check("neuron N {\n    param tau: ms = 10 msec\n}\n");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `ms`?"));
    let (d, _) = check("import \"stdlib/lif.snn\"\nnetwork n {\n    layer L = LIFF[4]\n}\n");
    assert_eq!(d[0].help.as_deref(), Some("did you mean `LIF`?"));
}

#[test]
fn unit_mismatch_shows_both_dimensions() {
    let (d, _) = check(CASES[2].text);
    assert_eq!(d[0].label, "expected V/s, found V*s");
    let (d, _) = check("neuron N {\n    state v: mV = 0 mV\n    dv/dt = (v + 1 nS) / (1 ms)\n}\n");
    assert_eq!(d[0].notes, vec!["the left side has dimension V", "the right side has dimension S"]);
}

#[test]
fn several_errors_are_reported_in_one_run() {
    let text = "neuron N {\n    param tau: ms = 10 ms\n    state v = 0\n    state w = 0\n    dv/dt = -v / tua + exp(tau)\n    on spike { tau = 1 }\n}\n\nneuron M {\n    param x = 1e999\n}\n\nneuron K {\n    state u = 0\n    du/dt = -u / (1 ms)\n}\n";
    // One syntax error (in M) stops the semantic checks but not the parser.
    let (d, _) = check(text);
    assert_eq!(d.len(), 1, "{d:?}");
    let text = "neuron N {\n    param tau: ms = 10 ms\n    state v = 0\n    state w = 0\n    dv/dt = -v / tua\n    on spike { tau = 1 }\n}\nnetwork n {\n    layer L = Q[3]\n    dtt = 1 ms\n}\n";
    let (d, sources) = check(text);
    let codes: Vec<&str> = d.iter().map(|d| d.code).collect();
    assert!(d.len() >= 4, "{}", render_all(&d, &sources));
    for c in ["E0101", "E0309", "E0410"] {
        assert!(codes.contains(&c), "{codes:?}");
    }
    // Syntax errors in several items are all reported.
    let (d, _) = check("neuron A {\n    param = 1\n}\nneuron B {\n    state v = \n}\nneuron C { param ok = 1 }\n");
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().all(|d| d.code == "E0001"));
}

#[test]
fn cyclic_imports_are_reported_with_the_chain() {
    let dir = std::env::temp_dir().join(format!("snnc-cycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.snn"), "import \"b.snn\"\nneuron A { state v = 0; dv/dt = -v / (1 ms) }\n").unwrap();
    std::fs::write(dir.join("b.snn"), "import \"a.snn\"\n").unwrap();
    let mut sources = SourceMap::new();
    let (_, d) = sema::check_path(&dir.join("a.snn"), &LoadOptions::default(), &mut sources);
    let c = d.iter().find(|d| d.code == "E0005").expect("cyclic import");
    assert_eq!(&sources.text(c.span.file)[c.span.range()], "import \"a.snn\"");
    assert!(c.notes[0].contains("a.snn` -> `") && c.notes[0].contains("b.snn"), "{:?}", c.notes);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_unit_mismatch_in_a_network_file_points_into_the_imported_model_file() {
    // A diagnostic in an imported file names that file.
    let (d, sources) = check(&format!("{LIF}network n {{\n    layer L = LIF[2] {{ tau = 10 mV }}\n}}\n"));
    assert_eq!(d[0].code, "E0201");
    assert_eq!(sources.name(d[0].span.file), "bad.snn");
    assert_eq!(&sources.text(d[0].span.file)[d[0].span.range()], "10 mV");
}
