//! Plastic synapses (issue 19, STDP): where each state of a synapse that changes `w` in
//! `on pre` / `on post` lives (presynaptic traces per source neuron, postsynaptic ones
//! per target neuron, the rules per synapse), the formatter's round trip, and what is
//! refused (E0435), with snapshots of the diagnostics.

use snnc_compiler::SourceMap;
use snnc_compiler::diag::{Diagnostic, render_all};
use snnc_compiler::net::{self, Slot};
use snnc_compiler::sema::check_source;
use snnc_compiler::syntax::format::format_file;
use snnc_compiler::syntax::parse::parse_file;

const STDP: &str = "synapse STDP {
    param taupre: ms = 20 ms
    param taupost: ms = 20 ms
    param Apre = 0.01
    param Apost = -0.0105
    param w_max = 1
    state apre = 0 * w
    state apost = 0 * w
    state g = 0 * w
    dapre/dt = -apre / taupre
    dapost/dt = -apost / taupost
    dg/dt = -g / (5 ms)
    on pre {
        g += w
        apre += Apre * w_max
        w = clip(w + apost, 0, w_max)
    }
    on post {
        apost += Apost * w_max
        w = clip(w + apre, 0, w_max)
    }
    output I = g
}
";

fn network(synapse: &str) -> String {
    format!(
        "neuron LIF {{
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
    spike when v > 1
    on spike {{ v -= 1 }}
}}
{synapse}
network n {{
    dt = 0.1 ms
    input x: 5
    layer a = LIF[3]
    connect x -> a.I via STDP sparse p = 0.5 weight 0.5 as xa
}}
"
    )
}

/// The composition's errors of `text`, rendered (after a clean check).
fn refusals(text: &str) -> (Vec<Diagnostic>, String) {
    let mut sources = SourceMap::new();
    let (program, diags) = check_source("t.snn", text, &mut sources);
    assert!(diags.iter().all(|d| !d.is_error()), "{}", render_all(&diags, &sources));
    let net = &program.networks[0];
    let plan = net::plan(&program, net);
    let mut errors: Vec<Diagnostic> = (0..net.populations.len()).filter_map(|p| net::compose(&program, net, &plan, p)?.err()).collect();
    // As `snnc check`: a projection's plasticity once its target composed.
    if errors.is_empty() {
        errors.extend((0..net.projections.len()).filter_map(|pi| net::plastic(&program, net, pi)?.err()));
    }
    let rendered = render_all(&errors, &sources);
    (errors, rendered)
}

#[test]
fn traces_live_once_per_neuron_and_the_rules_per_synapse() {
    let text = network(STDP);
    let (errors, rendered) = refusals(&text);
    assert!(errors.is_empty(), "{rendered}");
    let mut sources = SourceMap::new();
    let (program, _) = check_source("t.snn", &text, &mut sources);
    let net = &program.networks[0];
    let plan = net::plan(&program, net);
    let group = net::compose(&program, net, &plan, 0).unwrap().unwrap();
    let states: Vec<&str> = group.model.states().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(states, ["v", "xa.apost", "xa.g"], "apost per target neuron, apre not");
    // apost jumps with the target's own spike.
    assert_eq!(group.model.on_spike.len(), 2);
    assert!(net::pre_stage(&program, net, 0).is_none(), "no efficacy stage");
    let plastic = net::plastic(&program, net, 0).expect("plastic").unwrap();
    let traces = plastic.traces.expect("apre per source neuron");
    let states: Vec<&str> = traces.model.states().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(states, ["apre", "_efficacy"]);
    let on_pre = plastic.on_pre.expect("on pre changes w");
    assert_eq!(on_pre.states, [Slot::Weight, Slot::PreTrace("apre".into()), Slot::Post("xa.apost".into())]);
    // `g += w` is delivered by the projection: the rule has apre's jump and w's update.
    assert_eq!(on_pre.model.on_pre.len(), 2);
    let on_post = plastic.on_post.expect("on post changes w");
    assert_eq!(on_post.inputs, [Slot::PreSpike]);
    // apre's jump (gated by this step's presynaptic spike), apost's, then w.
    assert_eq!(on_post.model.on_pre.len(), 3);
}

#[test]
fn fmt_round_trips_on_post_and_weight_updates() {
    let text = network(STDP);
    let file = parse_file(0, &text).unwrap();
    let formatted = format_file(&file, &text);
    assert!(formatted.contains("on post {") && formatted.contains("w = clip(w + apre, 0, w_max)"), "{formatted}");
    let again = parse_file(0, &formatted).unwrap();
    assert_eq!(format_file(&again, &formatted), formatted);
}

macro_rules! refused {
    ($name:ident: $phrase:literal; $from:literal => $to:literal) => {
        #[test]
        fn $name() {
            let text = network(STDP).replacen($from, $to, 1);
            assert_ne!(text, network(STDP), "the replacement applies");
            let (errors, rendered) = refusals(&text);
            let e = errors.first().unwrap_or_else(|| panic!("accepted:\n{text}"));
            assert_eq!(e.code, "E0435", "{rendered}");
            assert!(e.message.contains($phrase), "{rendered}");
            insta::assert_snapshot!(stringify!($name), rendered);
        }
    };
}

refused!(weight_changed_before_delivery: "`w` changes before the update that delivers it";
    "        g += w\n        apre += Apre * w_max\n        w = clip(w + apost, 0, w_max)\n"
    => "        w = clip(w + apost, 0, w_max)\n        g += w\n        apre += Apre * w_max\n");
refused!(state_changed_at_both_spikes: "would need a value per connection";
    "        apost += Apost * w_max\n" => "        apost += Apost * w_max\n        apre += Apost * w_max\n");
refused!(weight_rule_reads_a_merged_state: "reads a value it cannot run with";
    "w = clip(w + apre, 0, w_max)" => "w = clip(w + apre * g / w_max, 0, w_max)");
refused!(weight_rule_reads_pre: "reads a value it cannot run with";
    "w = clip(w + apost, 0, w_max)" => "w = clip(w + apost * pre, 0, w_max)");
refused!(with_short_term_plasticity: "also scales its delivery by presynaptic state";
    "        g += w\n" => "        g += w * (1 - apre / w_max)\n");

#[test]
fn a_param_drawn_per_connection_is_refused() {
    // The traces and the rules take one value for every connection.
    let text = network(STDP).replacen("via STDP sparse", "via STDP { taupost = U(10 ms, 30 ms) } sparse", 1);
    let (errors, rendered) = refusals(&text);
    assert!(errors.first().is_some_and(|e| e.message.contains("`taupost` of synapse `STDP` is drawn from a distribution")), "{rendered}");
}
