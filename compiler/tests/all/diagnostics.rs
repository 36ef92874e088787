//! The front end's diagnostics, one small bad `.snn` input per case.
//!
//! Every case asserts the diagnostic's code, the exact text under its primary underline
//! and a key phrase of its message, and snapshots the whole rendered report (as a user
//! sees it: file:line:col, the source line, labels, notes and help) in
//! `snapshots/all__diagnostics__<case>.snap`. The cases cover every code of
//! docs/diagnostics.md that a single in-memory file can trigger; cyclic imports, a
//! missing command-line file and several errors in one file have tests of their own
//! at the end.

use snnc_compiler::SourceMap;
use snnc_compiler::diag::{Diagnostic, Severity, render_all};
use snnc_compiler::sema::{self, LoadOptions};
use std::path::{Path, PathBuf};

/// Checks `text` as the file `bad.snn`; returns the diagnostics and the source map.
fn check(text: &str) -> (Vec<Diagnostic>, SourceMap) {
    let mut sources = SourceMap::new();
    let (_, diags) = sema::check_source("bad.snn", text, &mut sources);
    (diags, sources)
}

/// Runs one case: finds the diagnostic with `code`, checks its underlined text and
/// message, and snapshots the rendering of every diagnostic of the input.
fn case(name: &str, text: &str, code: &str, span: &str, message: &str) -> Diagnostic {
    let (diags, sources) = check(text);
    let rendered = render_all(&diags, &sources);
    let d = diags
        .iter()
        .find(|d| d.code == code)
        .unwrap_or_else(|| panic!("{name}: no {code} among the diagnostics:\n{rendered}"))
        .clone();
    let expected_severity = if code.starts_with('W') { Severity::Warning } else { Severity::Error };
    assert_eq!(d.severity, expected_severity, "{name}: severity\n{rendered}");
    let file_text = sources.text(d.span.file);
    let underlined = file_text
        .get(d.span.range())
        .unwrap_or_else(|| panic!("{name}: span {:?} outside its file\n{rendered}", d.span));
    assert_eq!(underlined, span, "{name}: underlined text\n{rendered}");
    assert!(d.message.contains(message), "{name}: message `{}` lacks `{message}`\n{rendered}", d.message);
    // The rendering is the codespan one (not the fallback without source lines).
    assert!(rendered.contains("┌─"), "{name}: rendered without its source\n{rendered}");
    insta::with_settings!({ description => text, omit_expression => true }, {
        insta::assert_snapshot!(name, rendered);
    });
    d
}

/// `bad!(name: CODE at "underlined", "message phrase" [, help "..."]; "source")`
macro_rules! bad {
    ($name:ident: $code:literal at $span:literal, $msg:literal $(, help $help:literal)?; $text:expr) => {
        #[test]
        fn $name() {
            let _d = case(stringify!($name), $text, $code, $span, $msg);
            $(assert_eq!(_d.help.as_deref(), Some($help), "help of {}", stringify!($name));)?
        }
    };
}

// ---------------------------------------------------------------- reading and parsing

bad!(unterminated_block: "E0001" at "", "unexpected end of the file: a block is not closed";
"neuron N {
    param a = 1
");

bad!(unterminated_block_in_network: "E0001" at "", "a block is not closed";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] {
");

bad!(number_with_two_dots: "E0001" at ".3", "expected";
"neuron N {
    param a = 1.2.3
}
");

bad!(number_too_large: "E0002" at "1e999", "number `1e999` is too large";
"neuron N {
    param a = 1e999
}
");

bad!(unit_exponent_out_of_range: "E0002" at "99999999999", "unit exponent out of range";
"neuron N {
    param a: ms^99999999999 = 1
}
");

bad!(keyword_as_name: "E0001" at "delay", "expected a name";
"neuron N {
    param delay: ms = 1 ms
}
");

bad!(stray_closing_brace: "E0001" at "}", "found `}`";
"neuron N {
    param a = 1
}
}
");

bad!(unknown_connection_clause: "E0001" at "weigth", "found `weigth`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense weigth 0.5
}
");

bad!(unclosed_string: "E0001" at "\"lif.snn", "expected";
"import \"lif.snn
neuron N {
    state v = 0
    dv/dt = -v / (1 ms)
}
");

bad!(missing_import: "E0004" at "import \"lif2.snn\"", "cannot find `lif2.snn` to import", help "the standard library has `lif.snn`";
"import \"lif2.snn\"
");

// ---------------------------------------------------------------- names

bad!(unknown_name: "E0101" at "tua", "unknown name `tua`", help "did you mean `tau`?";
"neuron N {
    param tau: ms = 10 ms
    state v = 0
    dv/dt = -v / tua
}
");

bad!(unknown_state_in_equation: "E0101" at "gate", "unknown state `gate` in an equation", help "declare it: `state gate: <unit> = <initial value>`";
"neuron N {
    state v = 0
    dv/dt = -v / (1 ms)
    dgate/dt = 1 / (1 ms)
}
");

bad!(unknown_update_target: "E0101" at "vv", "unknown name `vv`", help "did you mean `v`?";
"neuron N {
    state v = 0
    dv/dt = (1 - v) / (1 ms)
    spike when v > 0.9
    on spike { vv = 0 }
}
");

bad!(clamp_of_a_param: "E0101" at "th", "`th` is not a state of this neuron";
"neuron N {
    param th = 1
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > th
    reset v = 0
    refractory 2 ms clamp th
}
");

bad!(unknown_unit: "E0102" at "msec", "unknown unit `msec`", help "did you mean `ms`?";
"neuron N {
    param tau: ms = 10 msec
}
");

bad!(unknown_unit_in_annotation: "E0102" at "msec", "unknown unit `msec`", help "did you mean `ms`?";
"neuron N {
    param tau: msec = 10 ms
}
");

bad!(let_before_definition: "E0103" at "b", "`b` is used before it is defined";
"neuron N {
    let a = b + 1
    let b = 2
    state v = 0
    dv/dt = -v * a / (1 ms)
}
");

bad!(unknown_function: "E0104" at "expp", "unknown function `expp`", help "did you mean `exp`?";
"neuron N {
    state v = 0
    dv/dt = -expp(v) / (1 ms)
}
");

bad!(builtin_arity: "E0105" at "exp(v, 2)", "`exp` takes 1 argument, found 2";
"neuron N {
    state v = 0
    dv/dt = exp(v, 2) / (1 ms)
}
");

bad!(builtin_named_argument: "E0105" at "x", "`exp` takes no named arguments";
"neuron N {
    state v = 0
    dv/dt = exp(x = v) / (1 ms)
}
");

bad!(user_function_arity: "E0105" at "f(v)", "`f` takes 2 argument(s), found 1";
"fn f(x, y) = x + y
neuron N {
    state v = 0
    dv/dt = f(v) / (1 ms)
}
");

bad!(recursive_function: "E0106" at "f(x)", "`f` calls itself";
"fn f(x) = f(x) + 1
neuron N {
    state v = 0
    dv/dt = f(v) / (1 ms)
}
");

bad!(mutually_recursive_functions: "E0106" at "f(x)", "`f` calls itself";
"fn f(x) = g(x)
fn g(x) = 2 * f(x)
neuron N {
    state v = 0
    dv/dt = f(v) / (1 ms)
}
");

bad!(duplicate_declaration: "E0107" at "a", "`a` is declared twice";
"neuron N {
    param a = 1
    param a = 2
}
");

bad!(duplicate_model: "E0107" at "N", "`N` is defined twice";
"neuron N {
    state v = 0
    dv/dt = -v / (1 ms)
}
neuron N {
    state u = 0
    du/dt = -u / (1 ms)
}
");

bad!(builtin_name_redeclared: "E0107" at "t", "`t` is a built-in name";
"neuron N {
    param t = 1
    state v = 0
    dv/dt = -v / (1 ms)
}
");

bad!(function_named_like_builtin: "E0107" at "exp", "`exp` is a built-in function";
"fn exp(x) = x
");

bad!(duplicate_population: "E0107" at "L", "`L` is defined twice in network `n`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    layer L = LIF[2]
}
");

bad!(duplicate_connection_name: "E0107" at "connect L -> L.I dense weight 0.5", "two connections are named `L_to_L`", help "name them with `as NAME`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense weight 0.1
    connect L -> L.I dense weight 0.5
}
");

// ---------------------------------------------------------------- types and dimensions

bad!(ode_unit_mismatch: "E0201" at "-v * tau", "the right side of `dv/dt` has the wrong dimension";
"neuron N {
    param tau: ms = 10 ms
    state v: mV = 0 mV
    dv/dt = -v * tau
}
");

bad!(ode_missing_time_constant: "E0201" at "-v", "the right side of `dv/dt` has the wrong dimension", help "divide by a time constant, e.g. `(-v + I) / tau`";
"neuron N {
    state v: mV = 0 mV
    dv/dt = -v
}
");

bad!(add_different_dimensions: "E0201" at "(v + 1 nS)", "cannot add quantities of different dimensions";
"neuron N {
    state v: mV = 0 mV
    dv/dt = (v + 1 nS) / (1 ms)
}
");

bad!(if_branches_differ: "E0201" at "1 / (1 ms)", "the branches of `if` have different dimensions";
"neuron N {
    state v: mV = 0 mV
    dv/dt = if v > 0 then v / (1 ms) else 1 / (1 ms)
}
");

bad!(compare_dimensions: "E0201" at "v > 1 ms", "cannot compare quantities of different dimensions";
"neuron N {
    state v: mV = 0 mV
    dv/dt = -v / (1 ms)
    spike when v > 1 ms
    reset v = 0 mV
}
");

bad!(declared_value_without_unit: "E0201" at "10", "the value of `tau` has the wrong dimension", help "write the unit: `10 ms`";
"neuron N {
    param tau: ms = 10
}
");

bad!(max_arguments_differ: "E0201" at "1 ms", "the arguments of `max` must have the same dimension";
"neuron N {
    state v: mV = 0 mV
    dv/dt = max(v, 1 ms) / (1 ms)
}
");

bad!(refractory_not_a_time: "E0201" at "5 mV", "a refractory period must be a time";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > 1
    reset v = 0
    refractory 5 mV
}
");

bad!(update_wrong_dimension: "E0201" at "1 ms", "cannot update `v` with a value of dimension s";
"neuron N {
    state v: mV = 0 mV
    dv/dt = (20 mV - v) / (1 ms)
    spike when v > 10 mV
    on spike { v += 1 ms }
}
");

bad!(drive_dimension: "E0201" at "20 mV", "wrong dimension for the drive";
"import \"stdlib/coba.snn\"
network n {
    layer E = COBALIF[4]
    drive E.I = 20 mV
}
");

bad!(setting_dimension: "E0201" at "10 mV", "wrong dimension for `tau`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] { tau = 10 mV }
}
");

bad!(dimensional_exponent: "E0202" at "(1 ms)", "an exponent must be dimensionless";
"neuron N {
    state v = 0
    dv/dt = v^(1 ms) / (1 ms)
}
");

bad!(non_constant_exponent: "E0202" at "x", "cannot raise a quantity of dimension V to this power";
"neuron N {
    state v: mV = 0 mV
    let x = 2
    dv/dt = v^x / (1 ms * 1 mV)
}
");

bad!(sqrt_of_quarter_power: "E0202" at "sqrt(t)", "cannot take the square root of dimension s^1/2";
"neuron N {
    state v = 0
    dv/dt = sqrt(sqrt(t)) / (1 ms)
}
");

bad!(exp_of_dimensional: "E0203" at "tau", "the argument of `exp` must be dimensionless";
"neuron N {
    param tau: ms = 10 ms
    state v = 0
    dv/dt = exp(tau) / tau
}
");

bad!(poisson_without_rate: "E0204" at "5", "`poisson` takes a rate";
"neuron N {
    state n = 0
    dn/dt = poisson(5) / (1 ms)
}
");

bad!(number_as_condition: "E0205" at "v", "expected a condition, found a number";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v
    reset v = 0
}
");

bad!(condition_as_number: "E0205" at "(v > 1)", "expected a number, found a condition";
"neuron N {
    state v = 0
    dv/dt = (v > 1) / (1 ms)
}
");

bad!(string_in_expression: "E0206" at "\"abc\"", "a string is not allowed here";
"neuron N {
    param x = \"abc\"
}
");

bad!(initialiser_in_equation: "E0207" at "U(0, 1)", "`U(...)` is an initialiser, not a function";
"neuron N {
    state v = 0
    dv/dt = U(0, 1) / (1 ms)
}
");

bad!(random_in_param: "E0208" at "rand()", "`rand` is random and not allowed here";
"neuron N {
    param x = rand()
    state v = 0
    dv/dt = -v * x / (1 ms)
}
");

bad!(random_in_spike_condition: "E0208" at "randn()", "`randn` is random and not allowed here";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > randn()
    reset v = 0
}
");

// ---------------------------------------------------------------- model rules

bad!(unknown_method: "E0301" at "rk3", "unknown integration method `rk3`", help "did you mean `rk2`?";
"neuron N {
    state v = 0
    dv/dt = -v / (1 ms)
    method rk3
}
");

bad!(trainable_state: "E0302" at "state v = 0 trainable", "only a `param` can be `trainable`, not a `state`";
"neuron N {
    state v = 0 trainable
    dv/dt = -v / (1 ms)
}
");

bad!(input_with_value: "E0303" at "input I = 1", "input `I` cannot have a value";
"neuron N {
    input I = 1
    state v = 0
    dv/dt = (I - v) / (1 ms)
}
");

bad!(let_without_definition: "E0304" at "let u", "`let u` needs a definition";
"neuron N {
    let u
    state v = 0
    dv/dt = -v / (1 ms)
}
");

bad!(ode_for_param: "E0305" at "a", "`a` is a param, and only a state can have an equation";
"neuron N {
    param a = 1
    da/dt = -a / (1 ms)
}
");

bad!(ode_for_input: "E0305" at "I", "`I` is an input, and only a state can have an equation";
"neuron N {
    input I
    state v = 0
    dv/dt = (I - v) / (1 ms)
    dI/dt = -I / (1 ms)
}
");

bad!(two_equations: "E0306" at "dv/dt = v / (1 ms)", "`v` has two equations";
"neuron N {
    state v = 0
    dv/dt = -v / (1 ms)
    dv/dt = v / (1 ms)
}
");

bad!(two_spike_conditions: "E0306" at "spike when v > 2", "a neuron has one spike condition";
"neuron N {
    state v = 0
    dv/dt = (3 - v) / (1 ms)
    spike when v > 1
    spike when v > 2
    reset v = 0
}
");

bad!(neuron_output_reads_an_input: "E0317" at "tanh(v + I)", "the output `r` reads the input `I`";
"neuron N {
    state v = 0
    input I
    dv/dt = (-v + I) / (1 ms)
    output r = tanh(v + I)
}
");

bad!(neuron_output_draws_random_numbers: "E0208" at "rand()", "";
"neuron N {
    state v = 0
    input I
    dv/dt = (-v + I) / (1 ms)
    output r = v * rand()
}
");

bad!(two_neuron_outputs: "E0306" at "output s = v", "a neuron has one `output`";
"neuron N {
    state v = 0
    input I
    dv/dt = (-v + I) / (1 ms)
    output r = v
    output s = v
}
");

bad!(sent_value_with_a_unit_through_a_synapse: "E0430" at "via ExpCurrent", "`R` sends `r`, which has dimension";
"import \"stdlib/lif.snn\"
import \"stdlib/synapses.snn\"
neuron Rate {
    state x: Hz = 0 Hz
    input I: Hz
    dx/dt = (-x + I) / (10 ms)
    output r = x
}
network n {
    layer R = Rate[4]
    layer L = LIF[4]
    connect R -> L.I via ExpCurrent dense
}
");

bad!(spike_in_synapse: "E0307" at "spike when g > 1", "a synapse cannot spike";
"synapse S {
    state g = 0 * w
    dg/dt = -g / (5 ms)
    on pre { g += w }
    spike when g > 1
    output I = g
}
");

bad!(reset_in_synapse: "E0307" at "reset g = 0", "a synapse cannot have a reset";
"synapse S {
    state g = 0
    dg/dt = -g / (1 ms)
    reset g = 0
    output I = g
}
");

bad!(refractory_in_synapse: "E0307" at "refractory 1 ms", "a synapse cannot be refractory";
"synapse S {
    state g = 0 * w
    dg/dt = -g / (5 ms)
    on pre { g += w }
    refractory 1 ms
    output I = g
}
");

bad!(on_pre_in_neuron: "E0308" at "pre", "unknown event `pre`", help "write `on spike { ... }`";
"neuron N {
    state v = 0
    dv/dt = -v / (1 ms)
    on pre { v += 1 }
}
");

bad!(on_spike_in_synapse: "E0308" at "spike", "unknown event `spike`", help "write `on pre { ... }`";
"synapse S {
    state g = 0 * w
    dg/dt = -g / (5 ms)
    on spike { g += w }
    output I = g
}
");

bad!(state_never_changes: "E0309" at "w", "state `w` never changes";
"neuron N {
    state v = 0
    state w = 0
    dv/dt = -v / (1 ms)
}
");

bad!(synapse_without_output: "E0310" at "S", "synapse `S` has no `output`";
"synapse S {
    state g = 0 * w
    dg/dt = -g / (5 ms)
    on pre { g += w }
}
");

bad!(reset_without_spike: "E0311" at "N", "neuron `N` resets but never spikes";
"neuron N {
    state v = 0
    dv/dt = -v / (1 ms)
    reset v = 0
}
");

bad!(assign_param: "E0312" at "th", "cannot assign to `th`: it is a param", help "declare it `state th` if it should change";
"neuron N {
    param th = 1
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > th
    on spike { th += 1 }
}
");

bad!(assign_input: "E0312" at "I", "cannot assign to `I`: it is an input";
"neuron N {
    input I
    state v = 0
    dv/dt = (I - v) / (1 ms)
    spike when v > 1
    on spike { I = 0 }
}
");

// `w` may change in a synapse's events (plasticity, tests in `plastic.rs`); `pre` not.
bad!(assign_pre_spike: "E0312" at "pre", "cannot assign to `pre`: it is the presynaptic spike";
"synapse S {
    state g = 0 * w
    dg/dt = -g / (5 ms)
    on pre { pre = 0 }
    output I = g
}
");

// A plastic weight keeps the projection's weight unit (nS here).
bad!(weight_update_with_another_unit: "E0201" at "apre", "cannot update `w` with a value of dimension";
"synapse S {
    param w: nS
    state g: nS = 0 nS
    state apre: mV = 0 mV
    dg/dt = -g / (5 ms)
    dapre/dt = -apre / (20 ms)
    on pre { g += w; apre += 1 mV }
    on post { w += apre }
    output I = g
}
");

bad!(surrogate_parameter_with_unit: "E0313" at "4 mV", "a surrogate parameter must be a dimensionless constant";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > 1 surrogate sigmoid(alpha = 4 mV)
    reset v = 0
}
");

bad!(unknown_surrogate: "E0314" at "relu_grd", "unknown surrogate `relu_grd`", help "did you mean `relu_grad`?";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > 1 surrogate relu_grd()
    reset v = 0
}
");

bad!(bad_surrogate_parameter: "E0105" at "alpah", "surrogate `relu_grad` has no parameter `alpah`", help "did you mean `alpha`?";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > 1 surrogate relu_grad(alpah = 1)
    reset v = 0
}
");

bad!(weight_param_with_value: "E0315" at "param w: nS = 1 nS", "the weight `w` is set by each connection";
"synapse S {
    param w: nS = 1 nS
    output I = w * pre
}
");

bad!(synapse_input_not_post: "E0316" at "J", "a synapse cannot have the input `J`";
"synapse S {
    input J
    output I = w * pre * J
}
");

// ---------------------------------------------------------------- network rules

bad!(unknown_model: "E0101" at "LIFF", "unknown model `LIFF`", help "did you mean `LIF`?";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIFF[4]
}
");

bad!(unknown_model_without_import: "E0101" at "LIF", "unknown model `LIF`", help "import the file that defines it, e.g. `import \"lif.snn\"`";
"network n {
    layer L = LIF[4]
}
");

bad!(unknown_population: "E0101" at "exe", "unknown population `exe`", help "did you mean `exc`?";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer exc = LIF[4]
    connect x -> exe.I dense
}
");

bad!(size_not_whole: "E0402" at "0.5", "a size must be a positive whole number";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[0.5]
}
");

bad!(size_with_unit: "E0402" at "4 ms", "a size must be a positive whole number";
"network n {
    input x: 4 ms
}
");

bad!(probability_out_of_range: "E0403" at "1.5", "a connection probability must be between 0 and 1";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I sparse p = 1.5
}
");

bad!(negative_std: "E0403" at "-1 ms", "a standard deviation cannot be negative";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] { tau = normal(10 ms, -1 ms) }
}
");

bad!(uniform_bounds_reversed: "E0403" at "U(20 ms, 10 ms)", "the bounds of `U` are the wrong way round";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] { tau = U(20 ms, 10 ms) }
}
");

bad!(negative_dt: "E0403" at "-0.1 ms", "`dt` must be positive";
"network n {
    dt = -0.1 ms
}
");

bad!(fractional_seed: "E0403" at "1.5", "`seed` must be a whole number >= 0";
"network n {
    seed = 1.5
}
");

bad!(fractional_adapter_rank: "E0403" at "2.5", "an adapter's rank must be a whole number of at least 1";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I sparse p = 0.5 weight 0.5 adapter rank 2.5
}
");

bad!(one_to_one_adapter: "E0403" at "3", "a one-to-one connection has no weight matrix to adapt";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I one_to_one weight 0.5 adapter rank 3
}
");

bad!(connection_bias: "E0422" at "bias", "a connection bias is not supported yet";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.I dense weight 0.5 bias
}
");

bad!(negative_delay: "E0403" at "-1 ms", "a delay must be a non-negative time";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense weight 0.5 delay -1 ms
}
");

bad!(synapse_as_population: "E0404" at "ExpCurrent", "`ExpCurrent` is a synapse";
"import \"stdlib/synapses.snn\"
network n {
    layer L = ExpCurrent[4]
}
");

bad!(neuron_after_via: "E0404" at "LIF", "`LIF` is a neuron";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I via LIF dense weight 0.5
}
");

bad!(unknown_population_setting: "E0405" at "tua", "`LIF` has no param or state `tua`", help "did you mean `tau`?";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] { tua = 5 ms }
}
");

bad!(setting_on_linear: "E0405" at "tau", "`Linear` has no settings";
"network n {
    readout out = Linear[2] { tau = 5 ms }
}
");

bad!(linear_as_layer: "E0406" at "Linear", "`Linear` is a readout";
"network n {
    layer h = Linear[10]
}
");

bad!(param_without_default: "E0407" at "readout L = N[2]", "param `tau` of `N` has no default and is not set";
"neuron N {
    param tau: ms
    state v = 0
    dv/dt = -v / tau
}
network n {
    readout L = N[2]
}
");

bad!(wrong_port: "E0408" at "Isyn", "`L` (LIF) has no input port `Isyn`";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.Isyn dense
}
");

bad!(port_on_source: "E0408" at "I", "`LIF` has no state `I`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L.I -> L.I dense
}
");

bad!(unknown_state_on_source: "E0408" at "vv", "`ALIF` has no state `vv`", help "did you mean `v`?";
"import \"stdlib/alif.snn\"
network n {
    layer L = ALIF[4]
    readout o = Linear[2]
    connect L.vv -> o dense
}
");

bad!(state_read_by_a_layer: "E0420" at "v", "only a readout can read the state `v` of `L`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    layer M = LIF[4]
    connect L.v -> M.I dense
}
");

bad!(state_through_a_synapse: "E0420" at "via ExpCurrent", "a connection from a state is dense, without synapse or delay: `via` does not apply";
"import \"stdlib/lif.snn\"
import \"stdlib/synapses.snn\"
import \"stdlib/readout.snn\"
network n {
    layer L = LIF[4]
    readout o = LeakyReadout[2]
    connect L.v -> o.I via ExpCurrent dense
}
");

bad!(sparse_state_read: "E0420" at "sparse p = 0.5", "a connection from a state is dense, without synapse or delay: `sparse` does not apply";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    readout o = Linear[2]
    connect L.v -> o sparse p = 0.5
}
");

bad!(port_on_input: "E0408" at "a", "an input has no ports";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x.a -> L.I dense
}
");

bad!(which_port: "E0409" at "L", "which port of `L`?", help "write `L.PORT`";
"neuron Two {
    input A
    input B
    state v = 0
    dv/dt = (A + B - v) / (1 ms)
    spike when v > 1
    reset v = 0
}
network n {
    input x: 3
    layer L = Two[4]
    connect x -> L dense
}
");

bad!(unknown_network_setting: "E0410" at "dtt", "unknown network setting `dtt`", help "did you mean `dt`?";
"network n {
    dtt = 1 ms
}
");

bad!(connect_into_input: "E0411" at "x", "`x` is an input and cannot receive connections";
"import \"stdlib/lif.snn\"
network n {
    input x: 4
    layer L = LIF[4]
    connect L -> x dense
}
");

bad!(conflicting_clauses: "E0412" at "weight 0.5", "`weight` conflicts with an earlier clause";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense init normal(0, 0.1) weight 0.5
}
");

bad!(two_signs: "E0412" at "inhibitory", "`inhibitory` conflicts with an earlier clause";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense excitatory inhibitory
}
");

bad!(fixed_weight_against_its_sign: "E0419" at "inhibitory", "a fixed weight of 0.5 cannot be `inhibitory`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense weight 0.5 inhibitory
}
");

bad!(synapse_cannot_drive_port: "E0413" at "ExpCond", "`ExpCond` cannot drive port `I`";
"import \"stdlib/lif.snn\"
import \"stdlib/synapses.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I via ExpCond dense weight 1 nS
}
");

bad!(synapse_reads_missing_post: "E0414" at "ExpCond", "`ExpCond` reads `v_post`, but `GIF` has no `v`";
"import \"stdlib/gif.snn\"
import \"stdlib/synapses.snn\"
network n {
    layer G = GIF[4]
    connect G -> G.I via ExpCond dense weight 1 nS
}
");

bad!(one_to_one_sizes: "E0415" at "connect x -> L.I one_to_one", "`one_to_one` needs populations of the same size";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.I one_to_one
}
");

bad!(unknown_train_setting: "E0416" at "methd", "unknown training setting `methd`", help "did you mean `method`?";
"network n {
    train { methd = bptt }
}
");

bad!(weights_need_a_value: "E0418" at "connect E -> E.I via ExpCond sparse p = 0.1", "the weights of this connection have unit S and need a value";
"import \"stdlib/coba.snn\"
network n {
    layer E = COBALIF[4]
    connect E -> E.I via ExpCond sparse p = 0.1
}
");

bad!(two_train_blocks: "E0306" at "train { lr = 2e-3 }", "a network has one `train` block";
"network n {
    train { lr = 1e-3 }
    train { lr = 2e-3 }
}
");

bad!(setting_given_twice: "E0306" at "tau", "`tau` is set twice";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] { tau = 5 ms, tau = 6 ms }
}
");

bad!(uniform_arity: "E0105" at "U(1 ms)", "`U` takes two arguments";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] { tau = U(1 ms) }
}
");

bad!(dt_without_unit: "E0201" at "0.1", "wrong dimension for `dt`";
"network n {
    dt = 0.1
}
");

bad!(delay_without_unit: "E0403" at "2", "a delay must be a non-negative time";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense weight 0.5 delay 2
}
");

bad!(unbounded_delay_distribution: "E0403" at "normal(2 ms, 1 ms)", "a delay distribution must be bounded", help "draw it with `U(low, high)`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense weight 0.5 delay normal(2 ms, 1 ms)
}
");

bad!(index_weight_dimension: "E0201" at "0.5 mV * exp(-(i - j)^2 / 50)", "wrong dimension for the weights";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I dense weight 0.5 mV * exp(-(i - j)^2 / 50)
}
");

bad!(no_self_with_a_file: "E0412" at "no_self", "`no_self` conflicts with `from`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4]
    connect L -> L.I from \"conn.npz\" no_self
}
");

bad!(loaded_value_without_unit: "E0201" at "load(\"p.npz\", \"tau\")", "wrong dimension for `tau`", help "a file holds numbers: give their unit, as in `load(\"p.npz\", \"tau\") * 1 s`";
"import \"stdlib/lif.snn\"
network n {
    layer L = LIF[4] { tau = load(\"p.npz\", \"tau\") }
}
");

bad!(loaded_synapse_setting: "E0405" at "load(\"p.npz\", \"tau\") * 1 ms", "a synapse's settings are one value for all its synapses";
"import \"stdlib/coba.snn\"
network n {
    layer L = COBALIF[4]
    connect L -> L.I via ExpCond { tau = load(\"p.npz\", \"tau\") * 1 ms, E = 0 mV } weight 1 nS
}
");

bad!(derived_from_a_loaded_value: "E0421" at "layer R = Q[8] { a = load(\"p.npz\", \"a\") }", "the initial value of `v` reads `a`, which `R` reads from a file";
"neuron Q { param a = 1; state v = a; input I; dv/dt = (I - v) / 10 ms; spike when v > 2; on spike { v -= 1 } }
network n {
    layer R = Q[8] { a = load(\"p.npz\", \"a\") }
}
");

bad!(train_value_dimension: "E0201" at "1 mV", "unexpected dimension";
"network n {
    train { lr = 1 mV }
}
");

bad!(duplicate_input: "E0107" at "x", "`x` is defined twice in network `n`";
"network n {
    input x: 3
    input x: 4
}
");

bad!(drive_linear_readout: "E0408" at "o", "`o` is a `Linear` readout and cannot be driven";
"network n {
    readout o = Linear[2]
    drive o = 1
}
");

bad!(synapse_into_linear_readout: "E0408" at "o", "`o` is a `Linear` readout: it takes weights directly", help "remove the `via` clause";
"import \"stdlib/lif.snn\"
import \"stdlib/synapses.snn\"
network n {
    layer L = LIF[4]
    readout o = Linear[2]
    connect L -> o via ExpCurrent dense
}
");

bad!(two_file_methods: "E0306" at "method rk4", "a file has one default `method`";
"method euler
method rk4
");

bad!(global_function_reads_a_model_name: "E0101" at "v_rest", "unknown name `v_rest`";
"fn leak(x) = x - v_rest
neuron N {
    param v_rest = 0.5
    state v = 0
    dv/dt = leak(v) / (1 ms)
}
");

bad!(surrogate_extra_argument: "E0105" at "2", "surrogate `sigmoid` takes at most 1 argument(s)";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > 1 surrogate sigmoid(4, 2)
    reset v = 0
}
");

bad!(surrogate_parameter_twice: "E0105" at "2", "`alpha` is given twice";
"neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > 1 surrogate sigmoid(alpha = 1, alpha = 2)
    reset v = 0
}
");

bad!(user_surrogate_without_spike_parameter: "E0105" at "sg()", "surrogate function `sg` needs a first parameter for the spike argument";
"fn sg() = 1
neuron N {
    state v = 0
    dv/dt = (2 - v) / (1 ms)
    spike when v > 1 surrogate sg()
    reset v = 0
}
");

// ---------------------------------------------------------------- warnings

bad!(layer_never_spikes: "W0401" at "LeakyReadout", "`LeakyReadout` never spikes";
"import \"stdlib/readout.snn\"
network n {
    layer h = LeakyReadout[10]
}
");

bad!(no_self_between_populations: "W0402" at "connect A -> B.I dense no_self", "`no_self` has no effect here";
"import \"stdlib/lif.snn\"
network n {
    layer A = LIF[4]
    layer B = LIF[4]
    connect A -> B.I dense no_self
}
");

bad!(spiking_readout: "W0403" at "LIF", "readout `r` uses the spiking model `LIF`";
"import \"stdlib/lif.snn\"
network n {
    readout r = LIF[2]
}
");

// ---------------------------------------------------------------- beyond one file

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("snnc-diagnostics-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces the temp directory in rendered text so snapshots do not depend on it.
fn anonymise(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "$TMP")
}

#[test]
fn cyclic_import() {
    let tmp = TempDir::new("cycle");
    let a = tmp.write("a.snn", "import \"b.snn\"\n\nneuron A {\n    state v = 0\n    dv/dt = -v / (1 ms)\n}\n");
    tmp.write("b.snn", "import \"a.snn\"\n");
    let mut sources = SourceMap::new();
    let (_, diags) = sema::check_path(&a, &LoadOptions::default(), &mut sources);
    let rendered = anonymise(&render_all(&diags, &sources), &tmp.0);
    assert_eq!(diags.len(), 1, "{rendered}");
    let d = &diags[0];
    assert_eq!(d.code, "E0005");
    assert_eq!(d.message, "cyclic import");
    // The underline is the import that closes the cycle, in b.snn.
    assert!(sources.name(d.span.file).ends_with("b.snn"), "{rendered}");
    assert_eq!(&sources.text(d.span.file)[d.span.range()], "import \"a.snn\"");
    assert!(d.notes[0].starts_with("import chain: `"), "{:?}", d.notes);
    assert!(d.notes[0].contains("a.snn` -> `") && d.notes[0].contains("b.snn` -> `"), "{:?}", d.notes);
    insta::assert_snapshot!("cyclic_import", rendered);
}

#[test]
fn diamond_imports_are_not_cycles() {
    let tmp = TempDir::new("diamond");
    tmp.write("base.snn", "neuron B {\n    state v = 0\n    dv/dt = -v / (1 ms)\n}\n");
    tmp.write("left.snn", "import \"base.snn\"\n");
    tmp.write("right.snn", "import \"base.snn\"\n");
    let top = tmp.write("top.snn", "import \"left.snn\"\nimport \"right.snn\"\n");
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_path(&top, &LoadOptions::default(), &mut sources);
    assert!(diags.is_empty(), "{}", render_all(&diags, &sources));
    assert_eq!(program.models.len(), 1);
}

#[test]
fn missing_import_next_to_the_importing_file() {
    let tmp = TempDir::new("missing");
    let main = tmp.write("main.snn", "import \"models/mine.snn\"\n");
    let mut sources = SourceMap::new();
    let (_, diags) = sema::check_path(&main, &LoadOptions::default(), &mut sources);
    let rendered = anonymise(&render_all(&diags, &sources), &tmp.0);
    assert_eq!(diags.len(), 1, "{rendered}");
    assert_eq!(diags[0].code, "E0004");
    assert_eq!(&sources.text(diags[0].span.file)[diags[0].span.range()], "import \"models/mine.snn\"");
    insta::assert_snapshot!("missing_import_on_disk", rendered);
    // Once the file exists, the import resolves relative to the importing file.
    std::fs::create_dir_all(tmp.0.join("models")).unwrap();
    tmp.write("models/mine.snn", "neuron Mine {\n    state v = 0\n    dv/dt = -v / (1 ms)\n}\n");
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_path(&main, &LoadOptions::default(), &mut sources);
    assert!(diags.is_empty(), "{}", render_all(&diags, &sources));
    assert!(program.model("Mine").is_some());
}

#[test]
fn unreadable_command_line_file() {
    let tmp = TempDir::new("unreadable");
    let path = tmp.0.join("nope.snn");
    let mut sources = SourceMap::new();
    let (_, diags) = sema::check_path(&path, &LoadOptions::default(), &mut sources);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, "E0003");
    assert!(diags[0].message.starts_with("cannot read `"), "{}", diags[0].message);
    assert!(diags[0].message.contains("nope.snn"), "{}", diags[0].message);
    // No source to quote: the rendering is one line, and it must not panic.
    let rendered = anonymise(&render_all(&diags, &sources), &tmp.0);
    assert!(rendered.starts_with("error[E0003]: cannot read `$TMP/nope.snn`"), "{rendered}");
}

#[test]
fn several_errors_in_one_file_are_reported_together() {
    let text = "neuron N {
    param tau: ms = 10 ms
    state v = 0
    state w = 0
    dv/dt = -v / tua
    on spike { tau = 1 }
}

neuron M {
    state u: mV = 0 mV
    du/dt = exp(u) / (1 ms)
}

network n {
    layer L = LIF[3]
    dtt = 1 ms
}
";
    let (diags, sources) = check(text);
    let rendered = render_all(&diags, &sources);
    let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert!(diags.len() >= 3, "{rendered}");
    for c in ["E0101", "E0203", "E0309", "E0312", "E0410"] {
        assert!(codes.contains(&c), "{c} missing from {codes:?}\n{rendered}");
    }
    insta::assert_snapshot!("several_errors", rendered);
}

#[test]
fn several_syntax_errors_are_reported_together() {
    let text = "neuron A {
    param = 1
}

neuron B {
    state v =
}

neuron C {
    param ok = 1
}

network n {
    layer = LIF[3]
}
";
    let (diags, sources) = check(text);
    let rendered = render_all(&diags, &sources);
    assert_eq!(diags.len(), 3, "{rendered}");
    assert!(diags.iter().all(|d| d.code == "E0001"), "{rendered}");
    let lines: Vec<usize> = diags.iter().map(|d| sources.line_col(0, d.span.start as usize).0).collect();
    assert_eq!(lines, vec![2, 7, 14], "{rendered}");
    insta::assert_snapshot!("several_syntax_errors", rendered);
}

#[test]
fn an_error_in_an_imported_file_names_that_file() {
    let tmp = TempDir::new("imported");
    tmp.write("model.snn", "neuron Bad {\n    state v = 0\n    dv/dt = -v / tua\n}\n");
    let main = tmp.write("main.snn", "import \"model.snn\"\n\nnetwork n {\n    layer L = Bad[2]\n}\n");
    let mut sources = SourceMap::new();
    let (_, diags) = sema::check_path(&main, &LoadOptions::default(), &mut sources);
    let rendered = anonymise(&render_all(&diags, &sources), &tmp.0);
    // The model's error is reported once, in model.snn; the network does not add an
    // "unknown model" error for a model that exists but has errors.
    assert_eq!(diags.len(), 1, "{rendered}");
    assert!(sources.name(diags[0].span.file).ends_with("model.snn"));
    assert_eq!(&sources.text(diags[0].span.file)[diags[0].span.range()], "tua");
    insta::assert_snapshot!("error_in_imported_file", rendered);
}

// ---------------------------------------------------------------- issue #15: messages, units, constants

bad!(unclosed_parenthesis: "E0001" at "(", "unclosed `(`", help "add the missing `)`";
"neuron N {
    param tau: ms = 10 ms
    state v = 0
    dv/dt = (-v / tau
}
");

bad!(unclosed_parenthesis_before_the_next_item: "E0001" at "(", "unclosed `(`";
"neuron N {
    param tau: ms = 10 ms
    state v = 0
    dv/dt = (-v / tau
    spike when v > 1
}
");

bad!(unclosed_bracket_of_a_population: "E0001" at "[", "unclosed `[`", help "add the missing `]`";
"import \"stdlib/lif.snn\"
network n {
    layer a = LIF[4
}
");

bad!(fat_arrow_after_an_equation: "E0001" at "=>", "`=>` is not an operator";
"neuron N {
    state v = 0
    dv/dt = -v / ms =>
    spike when v > 1
}
");

bad!(fat_arrow_instead_of_equals: "E0001" at "=>", "`=>` is not an operator";
"neuron N {
    state v = 0
    dv/dt => -v / ms
}
");

bad!(population_size_too_large: "E0402" at "1e30", "a size of 1e30 is too large";
"import \"stdlib/lif.snn\"
network n {
    layer a = LIF[1e30]
}
");

bad!(nesting_too_deep: "E0006" at "(", "expression nested deeper than 256 levels";
&format!("neuron N {{
    state v = 0
    let x = {}v{}
    dv/dt = -v / ms
}}
", "(".repeat(300), ")".repeat(300)));

bad!(unit_exponents_are_exact: "E0201" at "a + b", "cannot add quantities of different dimensions";
"neuron N {
    param a: mV^64 = 0 mV^64
    param b: mV^65 = 0 mV^65
    let c = a + b
    state v = 0
    dv/dt = -v / ms
}
");

bad!(unit_exponent_too_large: "E0209" at "mV^2000", "an exponent beyond ±1000";
"neuron N {
    param a: mV^2000
    state v = 0
    dv/dt = -v / ms
}
");

bad!(power_of_a_quantity_too_large: "E0209" at "(1 mV)^2000", "an exponent beyond ±1000";
"neuron N {
    param a = (1 mV)^2000
    state v = 0
    dv/dt = -v / ms
}
");

bad!(zero_time_constant: "E0210" at "tau", "division by zero";
"neuron N {
    param tau: ms = 0 ms
    state v = 0
    dv/dt = -v / tau
}
");

bad!(negative_time_constant: "E0210" at "tau", "division by a negative time";
"neuron N {
    param tau: ms = -5 ms
    state v = 0
    dv/dt = -v / tau
}
");

bad!(zero_time_constant_set_by_a_population: "E0210" at "tau = 0 ms", "division by zero";
"import \"stdlib/lif.snn\"
network n {
    layer a = LIF[10] { tau = 0 ms }
    drive a.I = 2
}
");

bad!(zero_over_zero: "E0210" at "0", "division by zero";
"neuron N {
    param x = 0 / 0
    state v = 0
    dv/dt = -v * x / ms
}
");

bad!(infinite_constant: "E0210" at "1e308 * 1e308", "this value is infinite";
"neuron N {
    state v = 0
    let big = 1e308 * 1e308
    dv/dt = -v / ms + big / s
}
");

#[test]
fn large_whole_powers_of_quantities_are_accepted() {
    // `1 mV^9` is (1 mV)^9: any whole or half power within the exponent bound works.
    let (diags, sources) = check("neuron N {\n    param a = 1 mV^9\n    param b: mV^9 = 1 mV^9\n    state v = 0\n    dv/dt = -v / ms\n}\n");
    assert!(diags.is_empty(), "{}", render_all(&diags, &sources));
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let (diags, sources) = check("\u{feff}neuron N {\n    state v = 0\n    dv/dt = -v / ms\n}\n");
    assert!(diags.is_empty(), "{}", render_all(&diags, &sources));
    // An error after it points at the right column.
    let (diags, sources) = check("\u{feff}neuron N {\n    state v = 0\n    dv/dt = -v / tua\n}\n");
    assert_eq!(render_all(&diags, &sources).lines().nth(1), Some("  ┌─ bad.snn:3:18"));
}

#[test]
fn a_guarded_division_by_zero_is_fine() {
    let (diags, sources) = check("neuron N {\n    param t_ref: ms = 0 ms\n    state v = 0\n    dv/dt = -v / ms + (if t_ref > 0 ms then 1 / t_ref else 0 / ms)\n}\n");
    assert!(diags.is_empty(), "{}", render_all(&diags, &sources));
}

#[test]
fn an_expression_chain_too_long_is_refused() {
    let text = format!("neuron N {{\n    state v = 0\n    dv/dt = -v / ms + v{}\n}}\n", " + v".repeat(10_000));
    let (diags, sources) = check(&text);
    let rendered = render_all(&diags, &sources);
    assert_eq!(diags.len(), 1, "{rendered}");
    assert_eq!(diags[0].code, "E0006");
    assert!(diags[0].message.contains("a chain of 10002 operators (at most 10000)"), "{rendered}");
    insta::assert_snapshot!("an_expression_chain_too_long_is_refused", rendered);
}

#[test]
fn a_megabyte_line_is_shown_cut_around_the_error() {
    let text = format!("neuron N {{\n    state v = 0\n    let a = 1{}\n    let b = 2{} + q{}\n    dv/dt = -v / ms\n}}\n", " * 1".repeat(9000), " * 2".repeat(4000), " * 3".repeat(4000));
    assert!(text.len() > 50_000);
    let (diags, sources) = check(&text);
    let rendered = render_all(&diags, &sources);
    assert_eq!(diags.len(), 1, "{rendered}");
    assert!(rendered.len() < 1000, "{rendered}");
    // The original line and column, and the underline under `q`.
    assert!(rendered.contains("bad.snn:4:16017"), "{rendered}");
    let shown = rendered.lines().find(|l| l.starts_with("4 │")).unwrap();
    let caret = rendered.lines().find(|l| l.contains('^')).unwrap();
    assert_eq!(shown.chars().nth(caret.find('^').map(|i| caret[..i].chars().count()).unwrap()), Some('q'), "{rendered}");
    insta::assert_snapshot!("a_megabyte_line_is_shown_cut_around_the_error", rendered);
}

#[test]
fn a_directory_import_says_it_is_a_directory() {
    let tmp = TempDir::new("dirimport");
    std::fs::create_dir_all(tmp.0.join("models.snn")).unwrap();
    let main = tmp.write("main.snn", "import \"models.snn\"\n");
    let mut sources = SourceMap::new();
    let (_, diags) = sema::check_path(&main, &LoadOptions::default(), &mut sources);
    let rendered = anonymise(&render_all(&diags, &sources), &tmp.0);
    assert_eq!(diags.len(), 1, "{rendered}");
    assert_eq!(diags[0].code, "E0004");
    assert!(diags[0].message.contains("it is a directory"), "{rendered}");
    insta::assert_snapshot!("a_directory_import_says_it_is_a_directory", rendered);
}

// ---------------------------------------------------------------- convolutions

bad!(conv_unknown_setting: "E0440" at "size", "`conv` has no setting `size`";
"import \"stdlib/lif.snn\"
network n {
    input x: 64
    layer C = LIF[512]
    connect x -> C.I conv(size = 8, out = 8, kernel = 3)
}
");

bad!(conv_missing_kernel: "E0440" at "connect x -> C.I conv(height = 8, width = 8, out = 8)", "`conv` needs `kernel`";
"import \"stdlib/lif.snn\"
network n {
    input x: 64
    layer C = LIF[512]
    connect x -> C.I conv(height = 8, width = 8, out = 8)
}
");

bad!(conv_fractional_stride: "E0440" at "1.5", "`stride` must be a whole number of at least 1";
"import \"stdlib/lif.snn\"
network n {
    input x: 64
    layer C = LIF[512]
    connect x -> C.I conv(height = 8, width = 8, out = 8, kernel = 3, stride = 1.5)
}
");

bad!(conv_kernel_larger_than_image: "E0440" at "connect x -> C.I conv(height = 2, width = 2, out = 1, kernel = 3)", "a 3x3 kernel does not fit a 2x2 image padded by 0";
"import \"stdlib/lif.snn\"
network n {
    input x: 4
    layer C = LIF[1]
    connect x -> C.I conv(height = 2, width = 2, out = 1, kernel = 3)
}
");

bad!(conv_sizes_do_not_match_the_populations: "E0441" at "connect x -> C.I conv(height = 8, width = 8, out = 8, kernel = 3)", "this `conv` joins 64 to 288 neurons, the populations have 64 and 512";
"import \"stdlib/lif.snn\"
network n {
    input x: 64
    layer C = LIF[512]
    connect x -> C.I conv(height = 8, width = 8, out = 8, kernel = 3)
}
");

bad!(pool_is_not_trainable: "E0442" at "trainable", "average pooling is fixed: a `pool` cannot be `trainable`";
"import \"stdlib/lif.snn\"
network n {
    input x: 128
    layer P = LIF[32]
    connect x -> P.I pool(channels = 2, height = 8, width = 8, kernel = 2) trainable
}
");

bad!(conv_with_a_sign: "E0442" at "excitatory", "`excitatory` does not apply to a `conv` connection";
"import \"stdlib/lif.snn\"
network n {
    input x: 64
    layer C = LIF[512]
    connect x -> C.I conv(height = 8, width = 8, out = 8, kernel = 3, padding = 1) excitatory
}
");

bad!(conv_init_of_the_indices: "E0442" at "init 0.1 * i", "a `conv` kernel is drawn from an initialiser, not an expression of the indices";
"import \"stdlib/lif.snn\"
network n {
    input x: 64
    layer C = LIF[512]
    connect x -> C.I conv(height = 8, width = 8, out = 8, kernel = 3, padding = 1) init 0.1 * i
}
");

// ---------------------------------------------------------------- bounds, dropout, batch norm

bad!(bounds_the_wrong_way_round: "E0450" at "bounds (30 ms, 5 ms)", "the bounds of `tau` are empty or the wrong way round";
"neuron N {
    param tau: ms = 20 ms trainable bounds (30 ms, 5 ms)
    state v = 0
    dv/dt = -v / tau
}
");

bad!(bounds_of_the_wrong_dimension: "E0450" at "2", "a bound of `tau` has the wrong dimension";
"neuron N {
    param tau: ms = 20 ms trainable bounds (2, 50 ms)
    state v = 0
    dv/dt = -v / tau
}
");

bad!(bounds_excluding_the_default: "E0451" at "20 ms", "the initial value of `tau` is outside its bounds";
"neuron N {
    param tau: ms = 20 ms trainable bounds (30 ms, 50 ms)
    state v = 0
    dv/dt = -v / tau
}
");

bad!(bounds_excluding_a_population_setting: "E0451" at "U(10 ms, 40 ms)", "the initial value of `tau` is outside its bounds";
"neuron N {
    param tau: ms = 20 ms trainable bounds (15 ms, 50 ms)
    state v = 0
    input I
    dv/dt = (-v + I) / tau
}
network n {
    layer L = N[4] { tau = U(10 ms, 40 ms) }
}
");

bad!(weight_bounds_excluding_the_weight: "E0451" at "bounds (-1, 1)", "the initial value of the weights is outside its bounds";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.I dense weight 2 trainable bounds (-1, 1)
}
");

bad!(dropout_of_one: "E0452" at "1", "a dropout probability must be a number in [0, 1)";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.I dense dropout 1
}
");

bad!(dropout_with_a_delay: "E0452" at "0.2", "`dropout` on a connection with a `delay` is not supported";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.I dense delay 2 ms dropout 0.2
}
");

bad!(batch_norm_with_a_delay: "E0453" at "batch_norm", "`batch_norm` on a connection with a `delay` is not supported";
"import \"stdlib/lif.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.I dense trainable delay 2 ms batch_norm
}
");

bad!(batch_norm_through_a_synapse: "E0453" at "batch_norm", "`batch_norm` on a connection with a synapse model (`via`) is not supported";
"import \"stdlib/lif.snn\"
import \"stdlib/synapses.snn\"
network n {
    input x: 3
    layer L = LIF[4]
    connect x -> L.I via ExpCurrent dense trainable batch_norm
}
");
