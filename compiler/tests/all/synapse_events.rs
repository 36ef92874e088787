//! A merged synapse's `on pre` block runs on every step with `w` standing for the summed
//! input `sum_i w_ij pre_i` (0 without a presynaptic spike). What that cannot run as
//! written (issue 19: `u += U * (1 - u)` grew with no spike at all) is refused with
//! E0417 when the network is composed; what it runs exactly is accepted.

use snnc_compiler::SourceMap;
use snnc_compiler::diag::Diagnostic;
use snnc_compiler::net;
use snnc_compiler::pipeline::{CompileOptions, compile_network};
use snnc_compiler::sema::check_source;

/// A network of two LIF neurons driven through synapse `S` (declared by `synapse`).
fn network(synapse: &str) -> String {
    format!(
        "neuron LIF {{
    param tau: ms = 10 ms
    state v = 0.0
    input I
    dv/dt = (-v + I) / tau
    spike when v > 1 surrogate relu_grad(alpha = 0.3, width = 1.0)
    on spike {{ v -= 1 }}
}}
{synapse}
network n {{
    dt = 1 ms
    input x: 2
    layer a = LIF[2]
    connect x -> a.I via S dense weight 0.1
}}
"
    )
}

/// The composition errors of `text` (after a clean check).
fn compose(text: &str) -> Vec<Diagnostic> {
    let mut sources = SourceMap::new();
    let (program, diags) = check_source("t.snn", text, &mut sources);
    assert!(diags.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&diags, &sources));
    let net = &program.networks[0];
    let plan = net::plan(&program, net);
    let errors: Vec<Diagnostic> = (0..net.populations.len()).filter_map(|p| net::compose(&program, net, &plan, p)?.err()).collect();
    // The pipeline refuses the same, naming the population.
    let compiled = compile_network(&program, net, &CompileOptions::default());
    assert_eq!(compiled.is_err(), !errors.is_empty());
    if let Err(e) = compiled {
        assert_eq!(e.population, "a");
        assert_eq!(e.diagnostic.as_ref().map(|d| d.code), Some("E0417"));
    }
    errors
}

fn synapse(state: &str, on_pre: &str) -> String {
    format!("synapse S {{\n    param tau_s: ms = 5 ms\n    state {state}\n    dg/dt = -g / (5 ms)\n    on pre {{ {on_pre} }}\n    output I = g\n}}")
}

#[test]
fn additive_updates_linear_in_w_are_accepted() {
    for on_pre in ["g += w", "g -= w", "g += 2 * w", "g += w * 2", "g += w / 2", "g += -w", "g += w * pre", "g += w * tau_s / (5 ms)"] {
        let errors = compose(&network(&synapse("g = 0 * w", on_pre)));
        assert!(errors.is_empty(), "`{on_pre}`: {errors:?}");
    }
}

#[test]
fn updates_that_would_run_every_step_are_refused() {
    for (on_pre, why) in [
        ("g += 1 * w\n g += 0.1", "on every step"),
        ("g = w", "only `+=` and `-=`"),
        ("g *= w", "only `+=` and `-=`"),
        ("g += w * w", "only `+= w * (...)` is exact"),
        ("g += w + 1", "only `+= w * (...)` is exact"),
        ("g += w * (1 - g)", "no state that `on pre` changes"),
    ] {
        let errors = compose(&network(&synapse("g = 0 * w", on_pre)));
        let e = errors.first().unwrap_or_else(|| panic!("`{on_pre}` accepted"));
        assert_eq!(e.code, "E0417");
        assert!(e.message.contains("`on pre` update of `g` in synapse `S`") && e.message.contains(why), "`{on_pre}`: {}", e.message);
    }
}

/// Issue 19's model: u went 0.20 -> 0.36 -> ... -> 0.997 in 50 ms without a presynaptic
/// spike, since the update ran on every step. `u` depends only on the presynaptic side:
/// it is now kept per source neuron in the projection's stage, gated by its spikes.
const FACILITATION: &str = "synapse S {
    param U = 0.2
    param tau_f: ms = 1500 ms
    state u = 0.2
    state g = 0 * w
    du/dt = (U - u) / tau_f
    dg/dt = -g / (5 ms)
    on pre {
        u += U * (1 - u)
        g += w * u
    }
    output I = g
}";

#[test]
fn facilitation_runs_as_a_presynaptic_stage() {
    let text = network(FACILITATION);
    assert!(compose(&text).is_empty());
    let mut sources = SourceMap::new();
    let (program, _) = check_source("t.snn", &text, &mut sources);
    let net = &program.networks[0];
    let plan = net::plan(&program, net);
    let group = net::compose(&program, net, &plan, 0).unwrap().unwrap();
    let states: Vec<&str> = group.model.states().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(states, ["v", "x_to_a.g"], "u is not merged per target");
    let stage = net::pre_stage(&program, net, 0).expect("a stage").unwrap();
    let states: Vec<&str> = stage.model.states().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(states, ["u", "_efficacy"]);
    // u's update at the spike, then the efficacy where `g += w * u` stands.
    assert_eq!(stage.model.on_pre.len(), 2);
    assert_eq!(Some(stage.model.on_pre[1].target), stage.efficacy);
}

#[test]
fn presynaptic_state_used_otherwise_is_refused() {
    for (on_pre, output, why) in [
        // The efficacy scales all the projection delivers: one merged update takes it.
        ("u += U * (1 - u)\n g += w * u\n h += w", "g + h", "exactly one other state"),
        ("u += U * (1 - u)\n g += w * u", "g * u", "outside `on pre`"),
        // A factor mixing the presynaptic state with a state merged per target.
        ("u += U * (1 - u)\n g += w * (u + h / w)", "g", "only `+= w * (...)` is exact"),
    ] {
        let syn = format!(
            "synapse S {{\n    param U = 0.2\n    state u = 0.2\n    state g = 0 * w\n    state h = 0 * w\n    du/dt = (U - u) / (100 ms)\n    dg/dt = -g / (5 ms)\n    dh/dt = -h / (5 ms)\n    on pre {{\n {on_pre}\n }}\n    output I = {output}\n}}"
        );
        let errors = compose(&network(&syn));
        let e = errors.first().unwrap_or_else(|| panic!("`{on_pre}` / `{output}` accepted"));
        assert_eq!(e.code, "E0417");
        assert!(e.message.contains(why), "`{on_pre}`: {}", e.message);
    }
    // A parameter drawn per connection cannot be kept per source neuron.
    let text = network(FACILITATION).replace("via S dense", "via S { U = U(0.1, 0.3) } dense");
    let mut sources = SourceMap::new();
    let (program, _) = check_source("t.snn", &text, &mut sources);
    let e = net::pre_stage(&program, &program.networks[0], 0).unwrap().unwrap_err();
    assert!(e.message.contains("`U` of synapse `S` is drawn from a distribution"), "{}", e.message);
}

#[test]
fn per_synapse_state_and_lets_reading_w_are_refused() {
    let per = "synapse S {\n    per_synapse\n    state g = 0 * w\n    dg/dt = -g / (5 ms)\n    on pre { g += w }\n    output I = g\n}";
    let errors = compose(&network(per));
    assert!(errors[0].message.contains("`per_synapse`"), "{}", errors[0].message);
    let with_let = "synapse S {\n    state g = 0 * w\n    let jump = 2 * w\n    dg/dt = -g / (5 ms)\n    on pre { g += jump }\n    output I = g\n}";
    let errors = compose(&network(with_let));
    assert!(errors[0].message.contains("`let jump`"), "{}", errors[0].message);
    // A `let` is read through: here it reads the state being updated.
    let through = "synapse S {\n    state g = 0 * w\n    let room = 1 - g\n    dg/dt = -g / (5 ms)\n    on pre { g += w * room }\n    output I = g\n}";
    let errors = compose(&network(through));
    assert!(errors[0].message.contains("no state that `on pre` changes"), "{}", errors[0].message);
}

#[test]
fn nonlinear_uses_of_the_summed_input_are_refused() {
    // Merged, two connections spiking into one neuron in one step give (w1 + w2)^2, not
    // w1^2 + w2^2: accepted (and run so) before.
    for (ode, output, what) in [
        ("-g / (5 ms)", "g + 0.5 * (w * pre) * (w * pre) / w", "`output I`"),
        ("-g / (5 ms) + (w * pre) * (w * pre) / w / (1 ms)", "g", "the equation of `g`"),
        ("-g / (5 ms)", "g * g / w", "`output I`"),
        ("(w - g) / (5 ms)", "g", "the equation of `g`"),
    ] {
        let text = network(&format!("synapse S {{\n    state g = 0 * w\n    dg/dt = {ode}\n    on pre {{ g += w }}\n    output I = {output}\n}}"));
        let errors = compose(&text);
        let e = errors.first().unwrap_or_else(|| panic!("`{ode}` / `{output}` accepted"));
        assert_eq!(e.code, "E0417");
        assert!(e.message.starts_with(what) && e.message.contains("is not linear in `g`, `w * pre`"), "{}", e.message);
    }
}

#[test]
fn saturating_state_driven_through_another_is_refused() {
    // NMDA gating saturating in s (Wang 2002): per connection s_i saturates on its own;
    // merged, the sum would saturate as one. `s` is driven through `x`.
    let nmda = "synapse S {
    param tau_r: ms = 2 ms
    param tau_d: ms = 100 ms
    state x = 0 * w
    state s = 0 * w
    dx/dt = -x / tau_r
    ds/dt = -s / tau_d + 0.5 * x * (1 - s / w) / (1 ms)
    on pre { x += w }
    output I = s
}";
    let errors = compose(&network(nmda));
    assert!(errors.first().is_some_and(|e| e.message.contains("the equation of `s`")), "{errors:?}");
    // A factor of `on pre` reading a driven state (`h` is not changed by `on pre`).
    let through = "synapse S {\n    state g = 0 * w\n    state h = 0 * w\n    dg/dt = -g / (5 ms)\n    dh/dt = (w * pre - h) / (5 ms)\n    on pre { g += w * h / w }\n    output I = g\n}";
    let errors = compose(&network(through));
    assert!(errors.first().is_some_and(|e| e.message.contains("update of `g`")), "{errors:?}");
}

#[test]
fn linear_stdlib_forms_are_accepted() {
    for syn in [
        // Alpha: g driven through h.
        "synapse S {\n    state g = 0 * w\n    state h = 0 * w\n    dg/dt = (-g + h) / (5 ms)\n    dh/dt = -h / (5 ms)\n    on pre { h += e * w }\n    output I = g\n}",
        // A gate free of the driven states, a constant factor, and the summed input itself.
        "synapse S {\n    state g = 0 * w\n    dg/dt = -g / (5 ms)\n    on pre { g += w }\n    output I = (if t > 1 ms then g else 0 * g) * 2 + w * pre\n}",
        // A state of its own that the events do not drive scales the jump.
        "synapse S {\n    state a = 1.0\n    state g = 0 * w\n    da/dt = (1 - a) / (50 ms)\n    dg/dt = -g / (5 ms)\n    on pre { g += w * a }\n    output I = g\n}",
    ] {
        let errors = compose(&network(syn));
        assert!(errors.is_empty(), "{syn}: {errors:?}");
    }
}

/// Saturating NMDA gating (Wang 2002) with `x` and `s` per source neuron: `on pre`
/// changes only them and the output reads `w * s`.
const NMDA: &str = "synapse S {
    param tau_r: ms = 2 ms
    param tau_d: ms = 100 ms
    param alpha: kHz = 0.5 kHz
    input v_post: 1
    state x = 0
    state s = 0
    dx/dt = -x / tau_r
    ds/dt = -s / tau_d + alpha * x * (1 - s)
    on pre { x += 1 }
    output I = 2 * w * s
}";

#[test]
fn saturating_gating_per_source_is_a_gated_stage() {
    let text = network(NMDA);
    assert!(compose(&text).is_empty(), "{:?}", compose(&text));
    let mut sources = SourceMap::new();
    let (program, _) = check_source("t.snn", &text, &mut sources);
    let net = &program.networks[0];
    assert!(net::is_gated(&program.models[program.models.iter().position(|m| m.name == "S").unwrap()]));
    let plan = net::plan(&program, net);
    let group = net::compose(&program, net, &plan, 0).unwrap().unwrap();
    let states: Vec<&str> = group.model.states().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(states, ["v"], "x and s are not merged per target");
    // The stage keeps x and s, runs `x += 1` at spikes and sends s every step.
    let stage = net::pre_stage(&program, net, 0).expect("a stage").unwrap();
    let states: Vec<&str> = stage.model.states().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(states, ["x", "s"]);
    assert_eq!(stage.efficacy, None);
    assert_eq!(stage.model.output.as_ref().map(|(n, _)| n.as_str()), Some("_efficacy"));
    assert_eq!(stage.model.on_pre.len(), 1);
    // It compiles, the stage's step sending a value (its `spike` output).
    let compiled = compile_network(&program, net, &CompileOptions::default()).expect("compiles");
    let st = compiled.pre_stages[0].as_ref().expect("a stage plan");
    assert!(st.efficacy.is_none() && st.dynamics.step.spike.is_some());
}

#[test]
fn gated_outputs_not_of_the_form_w_times_f_are_refused() {
    for (output, why) in [
        // A sum of two terms, a factor mixing s with the target, a factor with a unit.
        ("w * s + w * x", "is not `w * F`"),
        ("w * (s + v_post)", "is not `w * F`"),
        ("w * s * pre", "is not `w * F`"),
    ] {
        let errors = compose(&network(&NMDA.replace("2 * w * s", output)));
        let e = errors.first().unwrap_or_else(|| panic!("`{output}` accepted"));
        assert_eq!(e.code, "E0417");
        assert!(e.message.contains(why), "`{output}`: {}", e.message);
    }
    // Another state reading the gating.
    let other = NMDA.replace("state s = 0", "state s = 0\n    state h = 0 * w").replace("on pre", "dh/dt = (w * s - h) / (5 ms)\n    on pre");
    let errors = compose(&network(&other));
    assert!(errors.first().is_some_and(|e| e.message.contains("in an equation of another state")), "{errors:?}");
}
