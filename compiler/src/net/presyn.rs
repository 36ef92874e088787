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

use super::group::{driven_states, reads, split_factor};
use crate::diag::Diagnostic;
use crate::sema::{Init, Model, NetworkDef, Program, SymId, SymKind, Symbol, TExpr, TKind, Ty, Update, UpdateOp};
use crate::syntax::ast::BinOp;
use crate::units::Dim;

/// The states of `syn` that depend only on the presynaptic side: changed by `on pre`
/// (and not by `on post`), with updates and equations reading nothing but each other,
/// params, constants and time (no `w`, `pre`, postsynaptic value or other state).
pub fn presynaptic_states(syn: &Model) -> Vec<SymId> {
    one_sided_states(syn, &syn.on_pre, &syn.on_post)
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
/// params, an input `pre` (the source's activity) and the state `_efficacy`.
#[derive(Clone, Debug)]
pub struct PreStage {
    pub model: Model,
    /// The projection's settings of the params and states the stage holds.
    pub settings: Vec<(SymId, Init)>,
    pub efficacy: SymId,
    pub pre: SymId,
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
    let efficacy = push(&mut model, "_efficacy", SymKind::State, syn.span);
    for u in &syn.on_pre {
        if pre_states.contains(&u.target) {
            let target = map[u.target].expect("kept");
            model.on_pre.push(Update { target, op: u.op, value: at_spike(&mapped(&u.value), pre, u, target), span: u.span });
        } else if let Some((_, factors)) = split_factor(syn, &u.value, pre_states, &driven_states(syn, pre_states)) {
            if factors.is_empty() {
                continue;
            }
            // The efficacy where the statement stands: read at the spike, 0 otherwise.
            let product = factors.iter().map(&mapped).reduce(|a, b| TExpr { span: a.span, ty: Ty::Num(Dim::ONE), kind: TKind::Binary(BinOp::Mul, Box::new(a), Box::new(b)) });
            let value = product.expect("non-empty");
            model.on_pre.push(Update { target: efficacy, op: UpdateOp::Set, value, span: u.span });
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

fn constant(v: f64, span: crate::span::Span) -> TExpr {
    TExpr { kind: TKind::Const(v), ty: Ty::Num(Dim::ONE), span }
}

fn push(model: &mut Model, name: &str, kind: SymKind, span: crate::span::Span) -> SymId {
    model.symbols.push(Symbol { name: name.into(), kind, dim: Dim::ONE, value: None, trainable: false, bounds: None, span });
    model.symbols.len() - 1
}
