//! Plastic synapses (issue 19, STDP): a synapse whose `on pre` / `on post` statements
//! change its weight `w` (`w = clip(w + apost, 0, w_max)`), as Brian2's `on_pre` /
//! `on_post`. Its states split three ways, each kept once where it lives:
//!
//! - *presynaptic traces* (`apre`): changed by `on pre`, reading only each other,
//!   params, constants and time: once per source neuron, in the projection's trace
//!   stage (the model of [`super::presyn`], run at the source's spikes, exact decay);
//! - *postsynaptic traces* (`apost`): changed by `on post`, reading only each other,
//!   params, constants and time: once per target neuron, a state of the target's
//!   hidden group (`PROJ.apost`) whose `on post` updates run with the neuron's own
//!   `on spike` updates;
//! - *merged* states (`g += w`): as for any synapse, summed per target neuron, with the
//!   weights as they are when the spike is delivered.
//!
//! The weight statements run per synapse in two *rules* (`PROJ.on_pre`,
//! `PROJ.on_post`): models over the synapses of the rows (or columns) that had an event,
//! whose states are `w` and copies of the traces the statements read, run by the
//! network's kernels (JIT or interpreter) at the end of each step. A rule runs its
//! block's statements in their order on those copies, so a statement reads the traces
//! as the block has left them; the `on post` rule first applies the presynaptic traces'
//! increments of a source that spiked in the same step (Brian2 runs `on_pre` before
//! `on_post`).

use super::group::{driven_states, reads};
use super::presyn::{at_spike, one_sided_states, presynaptic_states};
use crate::diag::Diagnostic;
use crate::sema::{Init, Model, NetworkDef, Program, SymId, SymKind, Symbol, TExpr, TKind, Ty, Update};
use crate::span::Span;
use crate::units::Dim;

/// Whether `syn` changes its weight or reacts to postsynaptic spikes.
pub fn is_plastic(syn: &Model) -> bool {
    !syn.on_post.is_empty() || syn.on_pre.iter().any(|u| syn.symbols[u.target].kind == SymKind::Weight)
}

/// The states of `syn` that depend only on the postsynaptic side: changed by `on post`
/// (and not by `on pre`), with updates and equations reading nothing but each other,
/// params, constants and time.
pub fn postsynaptic_states(syn: &Model) -> Vec<SymId> {
    one_sided_states(syn, &syn.on_post, &syn.on_pre)
}

/// Where a rule's state or input comes from at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The synapse's weight (written back after the rule).
    Weight,
    /// A presynaptic trace: this state of the projection's trace stage.
    PreTrace(String),
    /// A state of the target population, by name: a postsynaptic trace (`PROJ.apost`)
    /// or a postsynaptic value the statements read (`v_post` reads `v`).
    Post(String),
    /// 1 where the source spiked in this step, else 0.
    PreSpike,
}

/// One event's rule: a model over synapses whose states and inputs come from `states`
/// and `inputs` (layout order).
#[derive(Clone, Debug)]
pub struct Rule {
    pub model: Model,
    pub settings: Vec<(SymId, Init)>,
    pub states: Vec<Slot>,
    pub inputs: Vec<Slot>,
}

/// What a plastic projection runs besides its merged synapse state.
#[derive(Clone, Debug)]
pub struct Plastic {
    /// The presynaptic traces, once per source neuron (`None`: the synapse has none).
    pub traces: Option<super::PreStage>,
    pub on_pre: Option<Rule>,
    pub on_post: Option<Rule>,
}

/// The plasticity of projection `pi`; `None` when its synapse is not plastic.
pub fn plastic(program: &Program, net: &NetworkDef, pi: usize) -> Option<Result<Plastic, Diagnostic>> {
    let proj = &net.projections[pi];
    let (sid, settings) = proj.synapse.as_ref()?;
    let syn = &program.models[*sid];
    if !is_plastic(syn) {
        return None;
    }
    Some(build(syn, settings, &proj.name, proj.weight_dim, proj.span))
}

fn build(syn: &Model, settings: &[(SymId, Init)], proj: &str, wdim: Dim, via: Span) -> Result<Plastic, Diagnostic> {
    check(syn, via)?;
    let pre = presynaptic_states(syn);
    let post = postsynaptic_states(syn);
    let traces = if pre.is_empty() { None } else { Some(super::presyn::build(syn, &pre, settings, via)?) };
    let has_w = |us: &[Update]| us.iter().any(|u| syn.symbols[u.target].kind == SymKind::Weight);
    let cx = RuleCx { syn, pre: &pre, post: &post, proj, wdim, settings, via };
    let on_pre = has_w(&syn.on_pre).then(|| cx.rule("on_pre", false)).transpose()?;
    let on_post = has_w(&syn.on_post).then(|| cx.rule("on_post", true)).transpose()?;
    Ok(Plastic { traces, on_pre, on_post })
}

/// Refuses a plastic synapse that would not run as written (E0435).
pub fn check(syn: &Model, via: Span) -> Result<(), Diagnostic> {
    let refuse = |span: Span, message: String, label: &str, help: &str| {
        Err(Diagnostic::error("E0435", span, message).with_label(label.to_string()).with_related(via, "used by this connection").with_help(help.to_string()))
    };
    if syn.per_synapse {
        return refuse(syn.span, format!("synapse `{}` is plastic and `per_synapse`", syn.name), "state per connection is not supported yet", "remove `per_synapse`: only `w` is kept per connection");
    }
    let pre = presynaptic_states(syn);
    let post = postsynaptic_states(syn);
    let merged = driven_states(syn, &pre);
    // A state `on post` changes must be a postsynaptic trace; anything else would
    // be a state per connection.
    for u in &syn.on_post {
        let sym = &syn.symbols[u.target];
        if sym.kind == SymKind::State && !post.contains(&u.target) {
            return refuse(
                u.span,
                format!("state `{}` of plastic synapse `{}` would need a value per connection", sym.name, syn.name),
                "changed at postsynaptic spikes, but not a postsynaptic trace",
                "a postsynaptic trace changes in `on post` only and reads only postsynaptic traces and params (`apost += A`); per-connection states other than `w` are not supported yet",
            );
        }
    }
    // The weight statements read the weight, traces, params, time and the target's values.
    let allowed = |s: SymId| match syn.symbols[s].kind {
        SymKind::Weight | SymKind::Post | SymKind::Param | SymKind::Time | SymKind::Dt | SymKind::Let => true,
        SymKind::State => pre.contains(&s) || post.contains(&s),
        _ => false,
    };
    for u in syn.on_pre.iter().chain(&syn.on_post).filter(|u| syn.symbols[u.target].kind == SymKind::Weight) {
        if reads(syn, &u.value, &|s| !allowed(s)) {
            return refuse(u.span, format!("the weight update of plastic synapse `{}` reads a value it cannot run with", syn.name), "reads `pre` or a state merged per target neuron", "read `w`, the traces, params, `t` and postsynaptic values (`v_post`, `X_post`) only");
        }
    }
    // The merged update delivers the weight as it is before this event's changes.
    let first_w = syn.on_pre.iter().position(|u| syn.symbols[u.target].kind == SymKind::Weight);
    let last_merged = syn.on_pre.iter().rposition(|u| merged.contains(&u.target));
    if let (Some(w), Some(m)) = (first_w, last_merged)
        && w < m
    {
        return refuse(syn.on_pre[w].span, format!("in plastic synapse `{}`, `w` changes before the update that delivers it", syn.name), "the projection delivers the weight before this event changes it", "write the update that takes `w` (`g += w`) first, as in Brian2's STDP example");
    }
    // Short-term plasticity scales the delivery by a presynaptic efficacy: not combined yet.
    let efficacy = syn.on_pre.iter().filter(|u| merged.contains(&u.target)).find(|u| reads(syn, &u.value, &|s| pre.contains(&s)));
    if let Some(u) = efficacy {
        return refuse(u.span, format!("plastic synapse `{}` also scales its delivery by presynaptic state (short-term plasticity)", syn.name), "a presynaptic trace scales what is delivered: not supported together with a changing `w` yet", "keep short-term and spike-timing plasticity in two synapses");
    }
    Ok(())
}

struct RuleCx<'a> {
    syn: &'a Model,
    pre: &'a [SymId],
    post: &'a [SymId],
    proj: &'a str,
    wdim: Dim,
    settings: &'a [(SymId, Init)],
    via: Span,
}

impl RuleCx<'_> {
    /// The model of the `on pre` (`post = false`) or `on post` rule.
    fn rule(&self, event: &str, post_event: bool) -> Result<Rule, Diagnostic> {
        let syn = self.syn;
        let mut model = Model::derived(format!("{}.{event}", self.proj), syn.span, syn.method);
        let (mut states, mut inputs) = (Vec::new(), Vec::new());
        let mut map: Vec<Option<SymId>> = vec![None; syn.symbols.len()];
        for (s, sym) in syn.symbols.iter().enumerate() {
            let (kind, slot) = match sym.kind {
                SymKind::Time | SymKind::Dt | SymKind::Param => (sym.kind, None),
                SymKind::Weight => (SymKind::State, Some(Slot::Weight)),
                SymKind::State if self.pre.contains(&s) => (SymKind::State, Some(Slot::PreTrace(sym.name.clone()))),
                SymKind::State if self.post.contains(&s) => (SymKind::State, Some(Slot::Post(format!("{}.{}", self.proj, sym.name)))),
                SymKind::Post => (SymKind::Input, Some(Slot::Post(sym.name.trim_end_matches("_post").to_string()))),
                SymKind::PreSpike if post_event => (SymKind::Input, Some(Slot::PreSpike)),
                // Lets of the kept symbols; the others are never read (checked).
                SymKind::Let => (SymKind::Let, None),
                _ => continue,
            };
            match (kind, slot) {
                (SymKind::State, Some(slot)) => states.push(slot),
                (SymKind::Input, Some(slot)) => inputs.push(slot),
                _ => {}
            }
            map[s] = Some(model.symbols.len());
            model.symbols.push(Symbol { kind, dim: sym.dim.substitute_weight(self.wdim).unwrap_or(sym.dim), value: None, ..sym.clone() });
        }
        let zero = |span| TExpr { kind: TKind::Const(0.0), ty: Ty::Num(self.wdim), span };
        let mapped = |e: &TExpr| {
            e.map_syms(&mut |s, span| match map[s] {
                Some(n) => Some(TExpr { kind: TKind::Sym(n), ty: Ty::Num(model_dim(syn, s, self.wdim)), span }),
                // A let reading a dropped symbol is never read by the rule (checked).
                None => Some(zero(span)),
            })
        };
        for (s, sym) in syn.symbols.iter().enumerate() {
            if let (Some(n), Some(v)) = (map[s], &sym.value)
                && sym.kind != SymKind::State
            {
                model.symbols[n].value = Some(mapped(v));
            }
        }
        let kept = |u: &&Update| map[u.target].is_some();
        if post_event {
            // A source that spiked in this step has already run `on pre`: its traces'
            // increments come first (gated by its spike, as its trace stage runs them).
            let pre_spike = map.iter().zip(&syn.symbols).find(|(_, s)| s.kind == SymKind::PreSpike).and_then(|(m, _)| *m);
            for u in syn.on_pre.iter().filter(|u| self.pre.contains(&u.target)) {
                let target = map[u.target].expect("kept");
                let spike = pre_spike.expect("a synapse has `pre`");
                model.on_pre.push(Update { target, op: u.op, value: at_spike(&mapped(&u.value), spike, u, target), span: u.span });
            }
        }
        let block = if post_event { &syn.on_post } else { &syn.on_pre };
        for u in block.iter().filter(kept) {
            model.on_pre.push(Update { target: map[u.target].expect("kept"), op: u.op, value: mapped(&u.value), span: u.span });
        }
        let settings = self.settings.iter().filter_map(|(s, init)| map[*s].filter(|_| syn.symbols[*s].kind == SymKind::Param).map(|n| (n, *init))).collect::<Vec<_>>();
        if let Some((s, _)) = self.settings.iter().find(|(s, init)| map[*s].is_some() && syn.symbols[*s].kind == SymKind::Param && !matches!(init, Init::Const(_))) {
            return Err(Diagnostic::error("E0435", self.via, format!("`{}` of plastic synapse `{}` is drawn from a distribution", syn.symbols[*s].name, syn.name))
                .with_label("the weight rule takes one value for every connection")
                .with_help("give it one value"));
        }
        Ok(Rule { model, settings, states, inputs })
    }
}

fn model_dim(syn: &Model, s: SymId, wdim: Dim) -> Dim {
    let d = syn.symbols[s].dim;
    d.substitute_weight(wdim).unwrap_or(d)
}
