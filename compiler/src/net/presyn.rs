//! Presynaptic synapse state (short-term plasticity): states of a synapse that depend
//! only on the presynaptic side, such as `u` and `x` of Tsodyks–Markram, are the same
//! for every connection from one source neuron. They are stored once per source neuron
//! of each projection and run as a model of their own, the projection's *presynaptic
//! stage*: each step, its `on pre` statements at the source's spike (in their order),
//! then its equations over `dt` (exactly for linear ones, as any model). The synapse's
//! one `on pre` update of a merged state `g += w * F` whose factor `F` reads them splits
//! into the stage's *efficacy* `F` (evaluated where the statement stands, e.g. after
//! `u` and before `x` changes) and the merged update `g += w`: the projection delivers
//! `sum_i w_ij pre_i F_i`, the presynaptic activity scaled by the efficacy.
//!
//! A synapse whose `on pre` changes its presynaptic states only and whose `output`
//! reads them as `w * F` (saturating NMDA gating: `x += 1` at a spike, `s` following
//! `ds/dt = -s / tau + alpha x (1 - s)`, `output I = g (E - v_post) w s`) is *gated*:
//! the stage sends `F` every step (as a rate population sends its `output`), and the
//! projection delivers `sum_i w_ij F_i` every step, not only at spikes.

use super::group::{driven_states, reads, split_factor};
use crate::diag::Diagnostic;
use crate::sema::{Init, Model, NetworkDef, Program, SymId, SymKind, Symbol, TExpr, TKind, Ty, Update, UpdateOp};
use crate::syntax::ast::BinOp;
use crate::units::Dim;

/// The states of `syn` that depend only on the presynaptic side: changed by `on pre`
/// (and not by `on post`), with updates and equations reading nothing but each other,
/// params, constants and time (no `w`, `pre`, postsynaptic value or other state); and
/// the states no event changes whose equation is driven by them alone (NMDA's `s`,
/// driven by `x`).
pub fn presynaptic_states(syn: &Model) -> Vec<SymId> {
    let mut set = one_sided_states(syn, &syn.on_pre, &syn.on_post);
    let by_event = |s: SymId| syn.on_pre.iter().chain(&syn.on_post).any(|u| u.target == s);
    loop {
        let more: Vec<SymId> = syn
            .odes
            .iter()
            .filter(|(s, rhs)| {
                let inside = |r: SymId| set.contains(&r) || r == *s;
                let outside = |r: SymId| match syn.symbols[r].kind {
                    SymKind::Weight | SymKind::PreSpike | SymKind::Post | SymKind::Input => true,
                    SymKind::State => !inside(r),
                    _ => false,
                };
                !set.contains(s) && !by_event(*s) && reads(syn, rhs, &|r| set.contains(&r)) && !reads(syn, rhs, &outside)
            })
            .map(|(s, _)| *s)
            .collect();
        if more.is_empty() {
            set.sort_unstable();
            return set;
        }
        set.extend(more);
    }
}

/// The states changed by the updates `events` only (not by `others`), whose updates and
/// equations read nothing but each other, params, constants and time: the states of
/// one side of a synapse (presynaptic: `on pre`; postsynaptic traces: `on post`).
pub(super) fn one_sided_states(syn: &Model, events: &[Update], others: &[Update]) -> Vec<SymId> {
    let mut set: Vec<SymId> = events.iter().map(|u| u.target).filter(|&s| syn.symbols[s].kind == SymKind::State && !others.iter().any(|u| u.target == s)).collect();
    set.sort_unstable();
    set.dedup();
    loop {
        let outside = |set: &[SymId], s: SymId| match syn.symbols[s].kind {
            SymKind::Weight | SymKind::PreSpike | SymKind::Post | SymKind::Input => true,
            SymKind::State => !set.contains(&s),
            _ => false,
        };
        let keep: Vec<SymId> = set
            .iter()
            .copied()
            .filter(|&s| {
                let updates = events.iter().filter(|u| u.target == s).map(|u| &u.value);
                let ode = syn.odes.iter().filter(|(t, _)| *t == s).map(|(_, rhs)| rhs);
                !updates.chain(ode).any(|e| reads(syn, e, &|r| outside(&set, r)))
            })
            .collect();
        if keep.len() == set.len() {
            return set;
        }
        set = keep;
    }
}

/// A projection's presynaptic stage, as a model: the presynaptic states, the synapse's
/// params, an input `pre` (the source's activity) and the state `_efficacy` (the
/// factor of the latest spike), or, for a gated synapse, an `output` sent every step.
#[derive(Clone, Debug)]
pub struct PreStage {
    pub model: Model,
    /// The projection's settings of the params and states the stage holds.
    pub settings: Vec<(SymId, Init)>,
    /// The state `_efficacy`; `None` for a gated synapse ([`is_gated`]), whose stage's
    /// `output` is what the projection delivers, every step.
    pub efficacy: Option<SymId>,
    pub pre: SymId,
}

/// Whether `syn` is gated: it has presynaptic states, its `on pre` changes nothing
/// else (no merged update takes `w`), and its `output` reads them (`w * s`): the
/// projection then delivers the presynaptic factor every step.
pub fn is_gated(syn: &Model) -> bool {
    let pre_states = presynaptic_states(syn);
    !pre_states.is_empty()
        && !super::plastic::is_plastic(syn)
        && syn.on_pre.iter().all(|u| pre_states.contains(&u.target))
        && syn.output.as_ref().is_some_and(|(_, e)| reads(syn, e, &|s| pre_states.contains(&s)))
}

/// The presynaptic stage of projection `pi`; `None` when its synapse has no
/// presynaptic state. [`super::compose`] has checked the synapse runs as written.
pub fn pre_stage(program: &Program, net: &NetworkDef, pi: usize) -> Option<Result<PreStage, Diagnostic>> {
    let proj = &net.projections[pi];
    let (sid, settings) = proj.synapse.as_ref()?;
    let syn = &program.models[*sid];
    let pre_states = presynaptic_states(syn);
    // A plastic synapse's presynaptic traces are part of its plasticity (`super::plastic`).
    if pre_states.is_empty() || super::plastic::is_plastic(syn) {
        return None;
    }
    Some(build(syn, &pre_states, settings, proj.span))
}

pub(super) fn build(syn: &Model, pre_states: &[SymId], settings: &[(SymId, Init)], via: crate::span::Span) -> Result<PreStage, Diagnostic> {
    let mut model = Model::derived(format!("{}.pre", syn.name), syn.span, syn.method);
    // Time, params, the presynaptic states, and the lets that read nothing else.
    let kept = |s: SymId| match syn.symbols[s].kind {
        SymKind::Time | SymKind::Dt | SymKind::Param => true,
        SymKind::State => pre_states.contains(&s),
        SymKind::Let => !reads(syn, syn.symbols[s].value.as_ref().expect("a let has a value"), &|r| {
            matches!(syn.symbols[r].kind, SymKind::Weight | SymKind::PreSpike | SymKind::Post | SymKind::Input)
                || (syn.symbols[r].kind == SymKind::State && !pre_states.contains(&r))
        }),
        _ => false,
    };
    let mut map: Vec<Option<SymId>> = vec![None; syn.symbols.len()];
    for (s, sym) in syn.symbols.iter().enumerate() {
        if kept(s) {
            map[s] = Some(model.symbols.len());
            model.symbols.push(Symbol { value: None, ..sym.clone() });
        }
    }
    // `w` only gives a declared value its unit (`state apre = 0 * w`): it reads 0 there.
    let mapped = |e: &TExpr| {
        e.map_syms(&mut |s, span| match map[s] {
            Some(n) => Some(TExpr { kind: TKind::Sym(n), ty: Ty::Num(syn.symbols[s].dim), span }),
            None => Some(TExpr { kind: TKind::Const(0.0), ty: Ty::Num(syn.symbols[s].dim), span }),
        })
    };
    for (s, sym) in syn.symbols.iter().enumerate() {
        if let (Some(new), Some(v)) = (map[s], &sym.value) {
            model.symbols[new].value = Some(mapped(v));
        }
    }
    for (s, rhs) in syn.odes.iter().filter(|(s, _)| pre_states.contains(s)) {
        model.odes.push((map[*s].expect("kept"), mapped(rhs)));
    }
    let pre = push(&mut model, "pre", SymKind::Input, syn.span);
    let gated = is_gated(syn);
    let efficacy = (!gated).then(|| push(&mut model, "_efficacy", SymKind::State, syn.span));
    if let Some((_, out)) = syn.output.as_ref().filter(|_| gated) {
        // `super::group` checked the output is `w * F` times factors free of them.
        let (_, factors) = split_factor(syn, out, pre_states, &[]).expect("checked by runs_as_written");
        model.output = Some(("_efficacy".into(), product(factors.iter().map(&mapped)).expect("the output reads a presynaptic state")));
    }
    for u in &syn.on_pre {
        if pre_states.contains(&u.target) {
            let target = map[u.target].expect("kept");
            model.on_pre.push(Update { target, op: u.op, value: at_spike(&mapped(&u.value), pre, u, target), span: u.span });
        } else if let Some((_, factors)) = split_factor(syn, &u.value, pre_states, &driven_states(syn, pre_states)) {
            // The efficacy where the statement stands: read at the spike, 0 otherwise.
            let (Some(value), Some(target)) = (product(factors.iter().map(&mapped)), efficacy) else { continue };
            model.on_pre.push(Update { target, op: UpdateOp::Set, value, span: u.span });
        }
    }
    let mut stage_settings = Vec::new();
    for (s, init) in settings {
        let Some(new) = map[*s] else { continue };
        // A distribution would give each source neuron its own value, not each connection.
        if !matches!(init, Init::Const(_)) {
            return Err(Diagnostic::error("E0417", via, format!("`{}` of synapse `{}` is drawn from a distribution, but the presynaptic state reading it is kept once per source neuron", syn.symbols[*s].name, syn.name))
                .with_label("its presynaptic state needs the same value for every connection")
                .with_help("give it one value"));
        }
        stage_settings.push((new, *init));
    }
    Ok(PreStage { model, settings: stage_settings, efficacy, pre })
}

/// `if pre > 0 then value else (no change: += 0, *= 1, = itself)`: an update `u` of
/// `target` that runs only at the spike read from input `pre`.
pub(super) fn at_spike(value: &TExpr, pre: SymId, u: &Update, target: SymId) -> TExpr {
    let pre_sym = TExpr { kind: TKind::Sym(pre), ty: Ty::Num(Dim::ONE), span: u.span };
    let fired = TExpr { kind: TKind::Binary(BinOp::Gt, Box::new(pre_sym), Box::new(constant(0.0, u.span))), ty: Ty::Bool, span: u.span };
    let idle = match u.op {
        UpdateOp::Add | UpdateOp::Sub => constant(0.0, u.span),
        UpdateOp::Mul | UpdateOp::Div => constant(1.0, u.span),
        UpdateOp::Set => TExpr { kind: TKind::Sym(target), ty: value.ty, span: u.span },
    };
    TExpr { kind: TKind::If(Box::new(fired), Box::new(value.clone()), Box::new(idle)), ty: value.ty, span: u.span }
}

/// The product of `factors`; `None` when there are none.
fn product(factors: impl Iterator<Item = TExpr>) -> Option<TExpr> {
    factors.reduce(|a, b| TExpr { span: a.span, ty: Ty::Num(Dim::ONE), kind: TKind::Binary(BinOp::Mul, Box::new(a), Box::new(b)) })
}

fn constant(v: f64, span: crate::span::Span) -> TExpr {
    TExpr { kind: TKind::Const(v), ty: Ty::Num(Dim::ONE), span }
}

fn push(model: &mut Model, name: &str, kind: SymKind, span: crate::span::Span) -> SymId {
    model.symbols.push(Symbol { name: name.into(), kind, dim: Dim::ONE, value: None, trainable: false, bounds: None, span });
    model.symbols.len() - 1
}
