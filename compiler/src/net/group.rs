//! Composing a population's neuron with the synapse groups that drive it into one
//! model (its hidden group), so that discretisation, derivatives and code generation
//! treat a network population exactly like a single model.
//!
//! The composed model keeps the neuron's symbols first, with the same ids. Each synapse
//! group adds its params and states (named `PROJ.name` after the group's first
//! projection) and one input `PROJ.y`: the summed weighted presynaptic activity
//! `sum_i w_ij pre_i` of the step. In the synapse's equations `w * pre` and, in `on pre`,
//! `w` become that input (merged linear synapses). A port that synapses drive becomes a
//! `let` equal to its direct input (`PORT.direct`: projections without a synapse and
//! drives) plus the synapse outputs. The synapse's `on pre` updates go to the composed
//! model's `on_pre` list: they run at the start of every step, after the resets.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use super::{NetPlan, SynGroup};
use crate::diag::Diagnostic;
use crate::sema::{Init, Model, NetworkDef, PopModel, Program, SymId, SymKind, Symbol, TExpr, TKind, Ty, Update};
use crate::syntax::ast::BinOp;
use crate::units::Dim;

#[derive(Clone, Debug)]
pub struct GroupModel {
    pub model: Model,
    /// For each synapse group of the plan: the id of its input `PROJ.y`.
    pub group_inputs: Vec<SymId>,
    /// For each synapse group: synapse symbol id -> composed id (params and states).
    pub group_syms: Vec<Vec<Option<SymId>>>,
    /// For each neuron port fed by synapses: (port id, id of its `PORT.direct` input).
    pub direct_inputs: Vec<(SymId, SymId)>,
    /// Initial values and parameter overrides, from the population and its synapses.
    pub settings: Vec<(SymId, Init)>,
}

impl GroupModel {
    /// The input symbol that receives direct projections and drives into `port`.
    pub fn direct_input(&self, port: SymId) -> SymId {
        self.direct_inputs.iter().find(|(p, _)| *p == port).map(|(_, d)| *d).unwrap_or(port)
    }
}

/// Composes population `pop`. `None` for a `Linear` readout (it has no model).
pub fn compose(program: &Program, net: &NetworkDef, plan: &NetPlan, pop: usize) -> Option<Result<GroupModel, Diagnostic>> {
    let p = &net.populations[pop];
    let PopModel::Model(mid) = p.model else { return None };
    Some(compose_model(program, net, &program.models[mid], &plan.pops[pop].syn_groups, &p.settings))
}

fn compose_model(
    program: &Program,
    net: &NetworkDef,
    neuron: &Model,
    groups: &[SynGroup],
    pop_settings: &[(SymId, Init)],
) -> Result<GroupModel, Diagnostic> {
    let mut model = neuron.clone();
    let mut settings: Vec<(SymId, Init)> = pop_settings.to_vec();
    let mut group_inputs = Vec::new();
    let mut group_syms = Vec::new();
    // Synapse outputs to add to each port.
    let mut port_terms: Vec<(SymId, Vec<TExpr>)> = Vec::new();
    let time_sym = neuron.sym("t");
    let dt_sym = neuron.sym("dt");

    for g in groups {
        let syn = &program.models[g.synapse];
        let first = &net.projections[g.projections[0]];
        runs_as_written(syn, first.span)?;
        // Presynaptic states live in each projection's stage (`super::presyn`).
        let pre_states = super::presyn::presynaptic_states(syn);
        let reads_pre = |s: &Symbol| s.kind == SymKind::Let && s.value.as_ref().is_some_and(|v| reads(syn, v, &|r| pre_states.contains(&r)));
        let prefix = first.name.clone();
        let wdim = first.weight_dim;
        let y = push(&mut model, Symbol {
            name: format!("{prefix}.y"),
            kind: SymKind::Input,
            dim: wdim,
            value: None,
            trainable: false,
            bounds: None,
            span: first.span,
        });
        let mut map: Vec<Option<SymId>> = vec![None; syn.symbols.len()];
        for (sid, s) in syn.symbols.iter().enumerate() {
            map[sid] = match s.kind {
                SymKind::Time => time_sym,
                SymKind::Dt => dt_sym,
                SymKind::Post => neuron.sym(s.name.trim_end_matches("_post")),
                SymKind::Weight | SymKind::PreSpike => None,
                SymKind::State if pre_states.contains(&sid) => None,
                SymKind::Let if reads_pre(s) => None,
                SymKind::Param | SymKind::State | SymKind::Let | SymKind::Input => Some(push(&mut model, Symbol {
                    name: format!("{prefix}.{}", s.name),
                    dim: s.dim.substitute_weight(wdim).unwrap_or(s.dim),
                    value: None,
                    ..s.clone()
                })),
            };
        }
        let rw = Rewrite { syn, map: &map, y, wdim, memo: Default::default() };
        // Values (defaults, lets) after all symbols exist.
        for (sid, s) in syn.symbols.iter().enumerate() {
            if let (Some(new), Some(v)) = (map[sid], &s.value) {
                model.symbols[new].value = Some(rw.value(v));
            }
        }
        for (sid, rhs) in syn.odes.iter().filter(|(s, _)| !pre_states.contains(s)) {
            let new = map[*sid].expect("synapse state mapped");
            model.odes.push((new, rw.expr(rhs, false)?));
        }
        let driven = driven_states(syn, &pre_states);
        for u in syn.on_pre.iter().filter(|u| !pre_states.contains(&u.target) && syn.symbols[u.target].kind != SymKind::Weight) {
            let target = map[u.target].expect("synapse state mapped");
            // The factors reading presynaptic states are the stage's efficacy, which
            // scales the summed input: here they read 1.
            let (value, _) = split_factor(syn, &u.value, &pre_states, &driven).expect("checked by runs_as_written");
            model.on_pre.push(Update { target, op: u.op, value: rw.expr(&value, true)?, span: u.span });
        }
        // Postsynaptic traces (`super::plastic`) change at the target neuron's own spikes.
        for u in syn.on_post.iter().filter(|u| syn.symbols[u.target].kind == SymKind::State) {
            let target = map[u.target].expect("synapse state mapped");
            model.on_spike.push(Update { target, op: u.op, value: rw.expr(&u.value, false)?, span: u.span });
        }
        if let Some((_, out)) = &syn.output {
            let port = g.port.expect("a synapse drives a port of a neuron model");
            // Gated: `w * F` is the summed input `sum_i w_ij F_i` the stage sends.
            let term = match super::presyn::is_gated(syn) {
                true => rw.expr(&split_factor(syn, out, &pre_states, &driven).expect("checked by runs_as_written").0, true)?,
                false => rw.expr(out, false)?,
            };
            match port_terms.iter_mut().find(|(p, _)| *p == port) {
                Some((_, v)) => v.push(term),
                None => port_terms.push((port, vec![term])),
            }
        }
        for (sid, init) in &g.settings {
            if let Some(new) = map[*sid] {
                settings.push((new, *init));
            }
        }
        group_inputs.push(y);
        group_syms.push(map);
    }

    // A port fed by synapses becomes `let PORT = PORT.direct + outputs...`.
    let mut direct_inputs = Vec::new();
    for (port, terms) in port_terms {
        let ps = model.symbols[port].clone();
        let direct = push(&mut model, Symbol { name: format!("{}.direct", ps.name), kind: SymKind::Input, value: None, ..ps.clone() });
        let ty = Ty::Num(ps.dim);
        let mut sum = TExpr { kind: TKind::Sym(direct), ty, span: ps.span };
        for t in terms {
            sum = TExpr { kind: TKind::Binary(BinOp::Add, Box::new(sum), Box::new(t)), ty, span: ps.span };
        }
        model.symbols[port].kind = SymKind::Let;
        model.symbols[port].value = Some(sum);
        direct_inputs.push((port, direct));
    }
    Ok(GroupModel { model, group_inputs, group_syms, direct_inputs, settings })
}

/// Refuses a synapse the merged runtime would run differently from its text (E0417):
/// its states live per target neuron and its `on pre` statements run on every step,
/// with `w` standing for the summed input `sum_i w_ij pre_i` (0 in a step without a
/// presynaptic spike). That is exact for `STATE += w * (...)` and `STATE -= ...` with
/// `w` once as a factor and no `w` or `pre` elsewhere; anything else (a statement
/// without `w`, `=`, `*=`, `w * w`, per-connection state) would run silently wrong.
fn runs_as_written(syn: &Model, via: crate::span::Span) -> Result<(), Diagnostic> {
    if syn.per_synapse {
        return Err(Diagnostic::error("E0417", via, format!("synapse `{}` is `per_synapse`, which the runtime does not support yet", syn.name))
            .with_label("its state would be merged per target neuron")
            .with_related(syn.span, "declared `per_synapse` here")
            .with_help("remove `per_synapse` if the synapse is linear in `w * pre` (state merged per target neuron)"));
    }
    // A `let` is rewritten like a declared value, where `w` and `pre` read 0.
    if let Some(s) = syn.symbols.iter().find(|s| s.kind == SymKind::Let && s.value.as_ref().is_some_and(|v| reads_event(syn, v))) {
        return Err(Diagnostic::error("E0417", s.span, format!("`let {}` of synapse `{}` reads `w` or `pre`", s.name, syn.name))
            .with_label("would read 0 in a merged synapse")
            .with_related(via, "used by this connection")
            .with_help("write `w * pre` (or `w` in `on pre`) where the value is used"));
    }
    // States the events drive: a factor reading one would differ between applying each
    // spike's update in turn and applying the summed input once.
    let pre_states = super::presyn::presynaptic_states(syn);
    let driven = driven_states(syn, &pre_states);
    if super::plastic::is_plastic(syn) {
        super::plastic::check(syn, via)?;
    }
    for u in syn.on_pre.iter().filter(|u| !pre_states.contains(&u.target) && syn.symbols[u.target].kind != SymKind::Weight) {
        let additive = matches!(u.op, crate::sema::UpdateOp::Add | crate::sema::UpdateOp::Sub);
        if additive && split_factor(syn, &u.value, &pre_states, &driven).is_some() {
            continue;
        }
        let name = &syn.symbols[u.target].name;
        let why = if !additive {
            "only `+=` and `-=` can run at presynaptic spikes"
        } else if !reads(syn, &u.value, &|s| syn.symbols[s].kind == SymKind::Weight) {
            "it would change it on every step, not only at a presynaptic spike"
        } else {
            "summed over the connections into a neuron, only `+= w * (...)` is exact, with `w` once as a factor and no state that `on pre` changes in `(...)` (a presynaptic state only as a factor of its own)"
        };
        return Err(Diagnostic::error("E0417", u.span, format!("the `on pre` update of `{name}` in synapse `{}` cannot run as written: {why}", syn.name))
            .with_label("not of the form `+= w * (...)`")
            .with_related(via, "used by this connection")
            .with_note("a merged synapse runs `on pre` on every step with `w` as the summed input `sum_i w_ij pre_i`, which is 0 without a presynaptic spike")
            .with_help(format!("write it `{name} += w * (...)`; per-connection state and other event updates are not supported yet")));
    }
    if !pre_states.is_empty() {
        presynaptic_uses(syn, &pre_states, via)?;
    }
    // The sum over connections of what each one does equals what the merged state does
    // only where the driven states and `w * pre` enter linearly (no constant term).
    let equations = syn.odes.iter().filter(|(s, _)| driven.contains(s)).map(|(s, rhs)| (format!("the equation of `{}`", syn.symbols[*s].name), rhs));
    // A gated output is `w * F` times factors free of them (`presynaptic_uses`).
    let output = syn.output.iter().filter(|_| !super::presyn::is_gated(syn)).map(|(port, e)| (format!("`output {port}`"), e));
    for (what, e) in equations.chain(output) {
        if !linear_in(syn, e, &driven) {
            let names: Vec<String> = driven.iter().map(|s| format!("`{}`", syn.symbols[*s].name)).chain(std::iter::once("`w * pre`".to_string())).collect();
            return Err(Diagnostic::error("E0417", e.span, format!("{what} in synapse `{}` is not linear in {}, so it cannot be merged per target neuron", syn.name, names.join(", ")))
                .with_label("not a sum of terms each linear in the event-driven states")
                .with_related(via, "used by this connection")
                .with_note("a merged synapse holds the sum over its connections into a neuron; that sum follows the equations only where they are linear and without a constant term in these states")
                .with_help("per-connection state (`per_synapse`) is not supported yet; write the synapse linear (e.g. `dg/dt = -g / tau`, `output I = g * (E - v_post)`)"));
        }
    }
    Ok(())
}

/// With presynaptic states, the stage's efficacy scales all that the projection
/// delivers: so one merged state only may take it (`g += w * u * x`), `w * pre` may not
/// appear elsewhere, and the presynaptic states are read in that update only.
fn presynaptic_uses(syn: &Model, pre_states: &[SymId], via: crate::span::Span) -> Result<(), Diagnostic> {
    let names: Vec<String> = pre_states.iter().map(|s| format!("`{}`", syn.symbols[*s].name)).collect();
    let names = names.join(", ");
    let refuse = |span, message: String, label: &str| {
        Err(Diagnostic::error("E0417", span, message)
            .with_label(label.to_string())
            .with_related(via, "used by this connection")
            .with_note(format!("{names} depend only on the presynaptic neuron: they are kept once per source neuron, and the projection delivers `w` times their factor (the efficacy) at each spike"))
            .with_help("write one update `g += w * F` in `on pre`, with F reading the presynaptic states, and read `g` elsewhere"))
    };
    if super::presyn::is_gated(syn) {
        return gated_uses(syn, pre_states, via);
    }
    let merged: Vec<&Update> = syn.on_pre.iter().filter(|u| !pre_states.contains(&u.target) && syn.symbols[u.target].kind != SymKind::Weight).collect();
    if merged.len() != 1 {
        let (span, label) = match merged.get(1) {
            Some(u) => (u.span, "a second update taking `w`"),
            None => (syn.span, "no `on pre` update takes `w`"),
        };
        return refuse(span, format!("synapse `{}` has presynaptic state ({names}), so its `on pre` must update exactly one other state with `w`", syn.name), label);
    }
    let odes = syn.odes.iter().filter(|(s, _)| !pre_states.contains(s)).map(|(_, e)| e);
    for e in odes.chain(syn.output.iter().map(|(_, e)| e)) {
        if reads(syn, e, &|s| syn.symbols[s].kind == SymKind::Weight || pre_states.contains(&s)) {
            return refuse(e.span, format!("synapse `{}` reads `w * pre` or its presynaptic state ({names}) outside `on pre`", syn.name), "only the `on pre` update may read these");
        }
    }
    Ok(())
}

/// A gated synapse (`super::presyn::is_gated`): the stage sends `F` every step, so the
/// output must be `w * F` times factors free of `w`, `pre` and the presynaptic states
/// (`g * (E - v_post) * w * s`), `F` dimensionless, and nothing else may read them.
fn gated_uses(syn: &Model, pre_states: &[SymId], via: crate::span::Span) -> Result<(), Diagnostic> {
    let names: Vec<String> = pre_states.iter().map(|s| format!("`{}`", syn.symbols[*s].name)).collect();
    let names = names.join(", ");
    let refuse = |span, message: String, label: &str| {
        Err(Diagnostic::error("E0417", span, message)
            .with_label(label.to_string())
            .with_related(via, "used by this connection")
            .with_note(format!("{names} depend only on the presynaptic neuron: they are kept once per source neuron, and the projection delivers `sum_i w_ij F_i` every step, F their (dimensionless) factor in the output"))
            .with_help("write the output as `w * F` times a factor of the target (`output I = g * (E - v_post) * w * s`)"))
    };
    let (_, out) = syn.output.as_ref().expect("a gated synapse has an output");
    let event = |s: SymId| syn.symbols[s].kind == SymKind::PreSpike;
    match split_factor(syn, out, pre_states, &[]) {
        Some((_, factors)) if !reads(syn, out, &event) && factors.iter().all(|f| f.ty == Ty::Num(Dim::ONE)) => {}
        _ => return refuse(out.span, format!("the output of synapse `{}` reads its presynaptic state ({names}) but is not `w * F` times a factor free of them, with F dimensionless", syn.name), "not `w * F` times a factor of the target"),
    }
    for (_, e) in syn.odes.iter().filter(|(s, _)| !pre_states.contains(s)) {
        if reads(syn, e, &|s| matches!(syn.symbols[s].kind, SymKind::Weight | SymKind::PreSpike) || pre_states.contains(&s)) {
            return refuse(e.span, format!("synapse `{}` reads `w`, `pre` or its presynaptic state ({names}) in an equation of another state", syn.name), "only the output may read these");
        }
    }
    Ok(())
}

/// The states a presynaptic spike drives: those `on pre` changes (but the presynaptic
/// states `pre_states`), those whose equation reads `w * pre`, and those whose equation
/// reads a driven state (to a fixed point).
pub(super) fn driven_states(syn: &Model, pre_states: &[SymId]) -> Vec<SymId> {
    let mut driven: Vec<SymId> = syn.on_pre.iter().map(|u| u.target).filter(|s| !pre_states.contains(s) && syn.symbols[*s].kind == SymKind::State).collect();
    loop {
        let more: Vec<SymId> = syn
            .odes
            .iter()
            .filter(|(s, rhs)| !driven.contains(s) && reads(syn, rhs, &|r| syn.symbols[r].kind == SymKind::Weight || driven.contains(&r)))
            .map(|(s, _)| *s)
            .collect();
        if more.is_empty() {
            break;
        }
        driven.extend(more);
    }
    driven.sort_unstable();
    driven.dedup();
    driven
}

/// Whether `e` is a homogeneous linear form in the states `driven` and `w * pre`: a
/// sum of terms, each one of them (or `w * pre`) times a factor free of all of them
/// (an `if` free of them choosing between two such forms counts, as does 0).
fn linear_in(syn: &Model, e: &TExpr, driven: &[SymId]) -> bool {
    let free = |e: &TExpr| !reads(syn, e, &|s| matches!(syn.symbols[s].kind, SymKind::Weight | SymKind::PreSpike) || driven.contains(&s));
    let is = |e: &TExpr, kind: SymKind| matches!(e.peel().kind, TKind::Sym(s) if syn.symbols[s].kind == kind);
    crate::deep(|| match &e.kind {
        TKind::Const(v) => *v == 0.0,
        TKind::Sym(s) if driven.contains(s) => true,
        TKind::Sym(s) => syn.symbols[*s].kind == SymKind::Let && syn.symbols[*s].value.as_ref().is_some_and(|v| linear_in(syn, v, driven)),
        TKind::Shared(a) => linear_in(syn, a, driven),
        TKind::Neg(a) => linear_in(syn, a, driven),
        TKind::Binary(BinOp::Add | BinOp::Sub, a, b) => linear_in(syn, a, driven) && linear_in(syn, b, driven),
        TKind::Binary(BinOp::Mul, a, b) => {
            (is(a, SymKind::Weight) && is(b, SymKind::PreSpike))
                || (is(a, SymKind::PreSpike) && is(b, SymKind::Weight))
                || (linear_in(syn, a, driven) && free(b))
                || (free(a) && linear_in(syn, b, driven))
        }
        TKind::Binary(BinOp::Div, a, b) => linear_in(syn, a, driven) && free(b),
        TKind::If(c, a, b) => free(c) && linear_in(syn, a, driven) && linear_in(syn, b, driven),
        _ => false,
    })
}

/// Whether `e` reads `w` or `pre`.
fn reads_event(syn: &Model, e: &TExpr) -> bool {
    reads(syn, e, &|s| matches!(syn.symbols[s].kind, SymKind::Weight | SymKind::PreSpike))
}

/// Whether `e` reads a symbol for which `pred` holds, directly or through `let`s.
pub(super) fn reads(syn: &Model, e: &TExpr, pred: &dyn Fn(SymId) -> bool) -> bool {
    let mut seen = vec![false; syn.symbols.len()];
    let mut stack = vec![e];
    let mut found = false;
    while let Some(e) = stack.pop() {
        e.visit_syms(&mut |s| {
            found |= pred(s);
            if syn.symbols[s].kind == SymKind::Let && !std::mem::replace(&mut seen[s], true) {
                stack.extend(syn.symbols[s].value.as_ref());
            }
        });
    }
    found
}

/// `e` as `w` times factors free of `w`, `pre` and the states the events drive, `driven`
/// (`w`, `w * x`, `x * w`, `w / x`, `-e`, or `w * pre`, the same summed input): `e` with
/// each factor reading a presynaptic state (of `pre_states`) replaced by 1, and those
/// factors (a divisor as its reciprocal). `None` when `e` is not of that form, or when
/// such a factor reads anything of the connection but presynaptic states and params.
pub(super) fn split_factor(syn: &Model, e: &TExpr, pre_states: &[SymId], driven: &[SymId]) -> Option<(TExpr, Vec<TExpr>)> {
    let is = |e: &TExpr, kind: SymKind| matches!(e.kind, TKind::Sym(s) if syn.symbols[s].kind == kind);
    let free = |e: &TExpr| !reads(syn, e, &|s| matches!(syn.symbols[s].kind, SymKind::Weight | SymKind::PreSpike) || driven.contains(&s));
    let presynaptic = |e: &TExpr| reads(syn, e, &|s| pre_states.contains(&s));
    let of_source = |e: &TExpr| {
        !reads(syn, e, &|s| match syn.symbols[s].kind {
            SymKind::Post | SymKind::Input => true,
            SymKind::State => !pre_states.contains(&s),
            _ => false,
        })
    };
    let node = |kind| TExpr { kind, ty: e.ty, span: e.span };
    let one = |f: &TExpr| TExpr { kind: TKind::Const(1.0), ty: f.ty, span: f.span };
    // `(rest, factors)` of `w_part * other` (or `/ other` with `div`).
    let with = |(rest, mut factors): (TExpr, Vec<TExpr>), other: &TExpr, div: bool| -> Option<(TExpr, TExpr, Vec<TExpr>)> {
        if !free(other) {
            return None;
        }
        if !presynaptic(other) {
            return Some((rest, other.clone(), factors));
        }
        if !of_source(other) {
            return None;
        }
        factors.push(if div {
            TExpr { kind: TKind::Binary(BinOp::Div, Box::new(one(other)), Box::new(other.clone())), ty: other.ty, span: other.span }
        } else {
            other.clone()
        });
        Some((rest, one(other), factors))
    };
    crate::deep(|| match &e.kind {
        TKind::Sym(_) if is(e, SymKind::Weight) => Some((e.clone(), Vec::new())),
        TKind::Neg(a) => split_factor(syn, a, pre_states, driven).map(|(r, f)| (node(TKind::Neg(Box::new(r))), f)),
        TKind::Binary(BinOp::Mul, a, b)
            if (is(a, SymKind::Weight) && is(b, SymKind::PreSpike)) || (is(a, SymKind::PreSpike) && is(b, SymKind::Weight)) =>
        {
            Some((e.clone(), Vec::new()))
        }
        TKind::Binary(BinOp::Mul, a, b) => {
            if let Some((r, o, f)) = split_factor(syn, a, pre_states, driven).and_then(|s| with(s, b, false)) {
                return Some((node(TKind::Binary(BinOp::Mul, Box::new(r), Box::new(o))), f));
            }
            let (r, o, f) = split_factor(syn, b, pre_states, driven).and_then(|s| with(s, a, false))?;
            Some((node(TKind::Binary(BinOp::Mul, Box::new(o), Box::new(r))), f))
        }
        TKind::Binary(BinOp::Div, a, b) => {
            let (r, o, f) = split_factor(syn, a, pre_states, driven).and_then(|s| with(s, b, true))?;
            Some((node(TKind::Binary(BinOp::Div, Box::new(r), Box::new(o))), f))
        }
        _ => None,
    })
}

/// Replaces the symbolic weight dimension in every node's type.
fn fix_dims(e: TExpr, wdim: Dim) -> TExpr {
    fix_dims_memo(e, wdim, &mut HashMap::new())
}

/// [`fix_dims`]; a shared node is rebuilt once and stays shared.
/// The memo keeps each original node alive, so its address cannot be reused.
fn fix_dims_memo(mut e: TExpr, wdim: Dim, memo: &mut HashMap<*const TExpr, (Arc<TExpr>, Arc<TExpr>)>) -> TExpr {
    if let Ty::Num(d) = e.ty {
        e.ty = Ty::Num(d.substitute_weight(wdim).unwrap_or(d));
    }
    let mut go = |a: TExpr| Box::new(crate::deep(|| fix_dims_memo(a, wdim, memo)));
    e.kind = match e.kind {
        TKind::Neg(a) => TKind::Neg(go(*a)),
        TKind::Not(a) => TKind::Not(go(*a)),
        TKind::Binary(op, a, b) => TKind::Binary(op, go(*a), go(*b)),
        TKind::If(c, a, b) => TKind::If(go(*c), go(*a), go(*b)),
        TKind::Call(f, args) => TKind::Call(f, args.into_iter().map(|a| *go(a)).collect()),
        TKind::Shared(a) => {
            let key = Arc::as_ptr(&a);
            let fixed = match memo.get(&key) {
                Some((_, f)) => f.clone(),
                None => {
                    let f = Arc::new(fix_dims_memo((*a).clone(), wdim, memo));
                    memo.insert(key, (a, f.clone()));
                    f
                }
            };
            TKind::Shared(fixed)
        }
        k => k,
    };
    e
}

fn push(model: &mut Model, s: Symbol) -> SymId {
    model.symbols.push(s);
    model.symbols.len() - 1
}

struct Rewrite<'a> {
    syn: &'a Model,
    map: &'a [Option<SymId>],
    y: SymId,
    wdim: Dim,
    /// Shared nodes already rewritten (`in_on_pre` is part of the key: it changes a lone `w`).
    memo: RefCell<HashMap<(*const TExpr, bool), Arc<TExpr>>>,
}

impl Rewrite<'_> {
    /// A declared value (param default, initial state). `w` only serves to give a state
    /// the weight's unit there (`state g = 0 * w`): it reads as zero of that unit.
    fn value(&self, e: &TExpr) -> TExpr {
        let zero = |span| TExpr { kind: TKind::Const(0.0), ty: Ty::Num(self.wdim), span };
        let mapped = e.map_syms(&mut |s, span| match self.syn.symbols[s].kind {
            SymKind::Weight | SymKind::PreSpike => Some(zero(span)),
            _ => self.map[s].map(|n| TExpr { kind: TKind::Sym(n), ty: Ty::Num(self.syn.symbols[s].dim.substitute_weight(self.wdim).unwrap_or(self.syn.symbols[s].dim)), span }),
        });
        fix_dims(mapped, self.wdim)
    }

    fn is(&self, e: &TExpr, kind: SymKind) -> bool {
        matches!(e.peel().kind, TKind::Sym(s) if self.syn.symbols[s].kind == kind)
    }

    /// Rewrites a synapse expression into the composed model. `w * pre` (either order)
    /// is the summed input; a lone `w` is too inside `on pre` (it only runs on events).
    fn expr(&self, e: &TExpr, in_on_pre: bool) -> Result<TExpr, Diagnostic> {
        crate::deep(|| self.expr_at(e, in_on_pre))
    }

    fn expr_at(&self, e: &TExpr, in_on_pre: bool) -> Result<TExpr, Diagnostic> {
        let ty = match e.ty {
            Ty::Num(d) => Ty::Num(d.substitute_weight(self.wdim).unwrap_or(d)),
            Ty::Bool => Ty::Bool,
        };
        let y = |span| TExpr { kind: TKind::Sym(self.y), ty: Ty::Num(self.wdim), span };
        let kind = match &e.kind {
            TKind::Binary(BinOp::Mul, a, b)
                if (self.is(a, SymKind::Weight) && self.is(b, SymKind::PreSpike))
                    || (self.is(a, SymKind::PreSpike) && self.is(b, SymKind::Weight)) =>
            {
                return Ok(y(e.span));
            }
            TKind::Sym(s) => match self.syn.symbols[*s].kind {
                SymKind::Weight if in_on_pre => return Ok(y(e.span)),
                SymKind::Weight | SymKind::PreSpike => {
                    return Err(Diagnostic::error("E0417", e.span, format!("`{}` can only appear as `w * pre` here", self.syn.symbols[*s].name))
                        .with_label("cannot be merged per target neuron")
                        .with_note("merged synapses see the summed input `sum_i w_ij pre_i`; in `on pre` a lone `w` is allowed")
                        .with_help("write the synapse `per_synapse` (not yet supported by the runtime) or use `w * pre`"));
                }
                _ => match self.map[*s] {
                    Some(n) => TKind::Sym(n),
                    None => TKind::Sym(*s),
                },
            },
            TKind::Const(v) => TKind::Const(*v),
            TKind::Neg(a) => TKind::Neg(Box::new(self.expr(a, in_on_pre)?)),
            TKind::Not(a) => TKind::Not(Box::new(self.expr(a, in_on_pre)?)),
            TKind::Binary(op, a, b) => TKind::Binary(*op, Box::new(self.expr(a, in_on_pre)?), Box::new(self.expr(b, in_on_pre)?)),
            TKind::If(c, a, b) => TKind::If(
                Box::new(self.expr(c, in_on_pre)?),
                Box::new(self.expr(a, in_on_pre)?),
                Box::new(self.expr(b, in_on_pre)?),
            ),
            TKind::Call(f, args) => {
                TKind::Call(*f, args.iter().map(|a| self.expr(a, in_on_pre)).collect::<Result<_, _>>()?)
            }
            TKind::Shared(a) => {
                let key = (Arc::as_ptr(a), in_on_pre);
                let done = self.memo.borrow().get(&key).cloned();
                let r = match done {
                    Some(r) => r,
                    None => {
                        let r = Arc::new(self.expr(a, in_on_pre)?);
                        self.memo.borrow_mut().insert(key, r.clone());
                        r
                    }
                };
                TKind::Shared(r)
            }
        };
        Ok(TExpr { kind, ty, span: e.span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceMap;
    use crate::net::plan;
    use crate::sema::check_source;

    #[test]
    fn coba_population_composes_two_conductances() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/coba.snn")).unwrap();
        let mut sources = SourceMap::new();
        let (program, diags) = check_source("coba.snn", &text, &mut sources);
        assert!(diags.is_empty(), "{}", crate::diag::render_all(&diags, &sources));
        let net = &program.networks[0];
        let plan = plan(&program, net);
        let g = compose(&program, net, &plan, 0).unwrap().unwrap();
        let m = &g.model;
        let names: Vec<&str> = m.states().map(|(_, s)| s.name.as_str()).collect();
        assert_eq!(names, ["v", "E_to_E.g", "I_to_E.g"]);
        let inputs: Vec<&str> = m.inputs().map(|(_, s)| s.name.as_str()).collect();
        assert_eq!(inputs, ["E_to_E.y", "I_to_E.y", "I.direct"]);
        // The port became a let, and conductances carry siemens.
        let port = m.sym("I").unwrap();
        assert_eq!(m.symbols[port].kind, SymKind::Let);
        assert_eq!(m.symbols[m.sym("E_to_E.g").unwrap()].dim, crate::units::SIEMENS);
        assert_eq!(m.on_pre.len(), 2);
        assert_eq!(m.odes.len(), 3);
        // Settings: v from the population, g and tau and E from each synapse group.
        assert_eq!(g.settings.len(), 1 + 3 + 3);
    }

    #[test]
    fn delta_synapse_becomes_the_summed_input() {
        let text = r#"
import "stdlib/lif.snn"
import "stdlib/synapses.snn"
network n {
    input x: 3
    layer a = LIF[4]
    connect x -> a.I via Delta dense
}"#;
        let mut sources = SourceMap::new();
        let (program, diags) = check_source("t.snn", text, &mut sources);
        assert!(diags.is_empty(), "{}", crate::diag::render_all(&diags, &sources));
        let net = &program.networks[0];
        let g = compose(&program, net, &plan(&program, net), 0).unwrap().unwrap();
        let port = g.model.sym("I").unwrap();
        let value = g.model.symbols[port].value.as_ref().unwrap();
        // I = I.direct + x_to_a.y
        let TKind::Binary(BinOp::Add, _, b) = &value.kind else { panic!("{value:?}") };
        assert_eq!(b.kind, TKind::Sym(g.group_inputs[0]));
    }
}
