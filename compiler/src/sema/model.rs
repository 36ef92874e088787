//! Checking `neuron` and `synapse` models: declarations, kinds, equations, events, units.

use super::expr::{ExprCx, FnTable, dim_mismatch_notes, is_zero_literal, resolve_unit};
use super::load::Loaded;
use super::*;
use crate::diag::{Diagnostic, nearest};
use crate::syntax::ast::{self, DeclKind, ModelItem};
use std::collections::HashMap;

/// All top-level names of one compilation.
pub(super) struct Scope<'a> {
    pub models: Vec<(&'a ast::Model, Option<Method>)>,
    pub fns: FnTable<'a>,
}

impl<'a> Scope<'a> {
    pub fn models_in_order(&self) -> Vec<(&'a ast::Model, Option<Method>)> {
        self.models.clone()
    }
    pub fn has_model(&self, name: &str) -> bool {
        self.models.iter().any(|(m, _)| m.name.name == name)
    }
    pub fn model_names(&self) -> Vec<&'a str> {
        self.models.iter().map(|(m, _)| m.name.name.as_str()).collect()
    }
}

/// Gathers models and functions from every file, reporting duplicate names.
pub(super) fn collect<'a>(loaded: &'a Loaded, diags: &mut Vec<Diagnostic>) -> Scope<'a> {
    let mut scope = Scope { models: Vec::new(), fns: HashMap::new() };
    let mut seen: HashMap<&str, Span> = HashMap::new();
    let mut define = |name: &'a ast::Ident, what: &str, diags: &mut Vec<Diagnostic>| -> bool {
        if let Some(prev) = seen.get(name.name.as_str()) {
            diags.push(
                Diagnostic::error("E0107", name.span, format!("`{}` is defined twice", name.name))
                    .with_label(format!("second definition of this {what}"))
                    .with_related(*prev, "first defined here"),
            );
            return false;
        }
        seen.insert(&name.name, name.span);
        true
    };
    for (_, file) in &loaded.files {
        // The file-level default integrator: checked once, one per file.
        let mut method = None;
        let mut seen_method: Option<Span> = None;
        for item in &file.items {
            if let ast::Item::Method { method: id, span } = item {
                if let Some(prev) = seen_method {
                    diags.push(
                        Diagnostic::error("E0306", *span, "a file has one default `method`")
                            .with_label("second `method`")
                            .with_related(prev, "first one"),
                    );
                    continue;
                }
                seen_method = Some(*span);
                method = method_of(id, diags);
            }
        }
        for item in &file.items {
            match item {
                ast::Item::Neuron(m) | ast::Item::Synapse(m) => {
                    if define(&m.name, "model", diags) {
                        scope.models.push((m, method));
                    }
                }
                ast::Item::Function(f) => {
                    if Func::by_name(&f.name.name).is_some() {
                        diags.push(
                            Diagnostic::error("E0107", f.name.span, format!("`{}` is a built-in function", f.name.name))
                                .with_label("choose another name"),
                        );
                    } else if define(&f.name, "function", diags) {
                        scope.fns.insert(f.name.name.clone(), f);
                    }
                }
                ast::Item::Network(n) => {
                    define(&n.name, "network", diags);
                }
                _ => {}
            }
        }
    }
    scope
}

fn method_of(id: &ast::Ident, diags: &mut Vec<Diagnostic>) -> Option<Method> {
    if let Some((_, m)) = Method::ALL.iter().find(|(n, _)| *n == id.name) {
        return Some(*m);
    }
    let mut d = Diagnostic::error("E0301", id.span, format!("unknown integration method `{}`", id.name))
        .with_label("expected `exact`, `exp_euler`, `euler`, `rk2` or `rk4`");
    if let Some(n) = nearest(&id.name, Method::ALL.iter().map(|(n, _)| *n)) {
        d = d.with_help(format!("did you mean `{n}`?"));
    }
    diags.push(d);
    None
}

/// Checks one model. Returns `None` if it has errors (reported in `diags`).
pub(super) fn check_model(
    (m, file_method): (&ast::Model, Option<Method>),
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) -> Option<Model> {
    // A synapse's weight dimension is solved from its equations; if that happens, the
    // model is checked once more with the solution fixed so every expression is final.
    let mut pass = Vec::new();
    let first = check_pass(m, file_method, scope, None, &mut pass);
    match first {
        Ok(model) => {
            diags.extend(pass);
            Some(model)
        }
        Err(Some(w)) => {
            let mut again = Vec::new();
            let r = check_pass(m, file_method, scope, Some(w), &mut again);
            diags.extend(again);
            r.ok()
        }
        Err(None) => {
            diags.extend(pass);
            None
        }
    }
}

/// `Err(Some(w))`: the weight dimension was solved, run again; `Err(None)`: errors.
fn check_pass(
    m: &ast::Model,
    file_method: Option<Method>,
    scope: &Scope,
    weight: Option<Dim>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Model, Option<Dim>> {
    let n_errors = diags.iter().filter(|d| d.is_error()).count();
    let is_syn = m.kind == ast::ModelKind::Synapse;
    let mut symbols: Vec<Symbol> = Vec::new();
    let builtin = |name: &str, kind, dim| Symbol { name: name.into(), kind, dim, value: None, trainable: false, span: m.name.span };
    symbols.push(builtin("t", SymKind::Time, Dim::TIME));
    symbols.push(builtin("dt", SymKind::Dt, Dim::TIME));
    if is_syn {
        symbols.push(builtin("w", SymKind::Weight, weight.unwrap_or(Dim::WEIGHT)));
        symbols.push(builtin("pre", SymKind::PreSpike, Dim::ONE));
    }
    let n_builtin = symbols.len();

    // 1. Declarations: names, kinds and declared units.
    let mut fixed_weight: Option<Dim> = None;
    let mut decls: Vec<(&ast::Decl, Option<(f64, Dim)>)> = Vec::new();
    let mut local_fns: FnTable = HashMap::new();
    for item in &m.body {
        match item {
            ModelItem::Decl(d) => {
                if is_syn && d.name.name == "w" && d.kind == DeclKind::Param {
                    // `param w: nS` fixes the unit of the weight; it stays the weight.
                    if d.value.is_some() || d.trainable {
                        diags.push(
                            Diagnostic::error("E0315", d.span, "the weight `w` is set by each connection")
                                .with_label("declare only its unit: `param w: nS`"),
                        );
                    }
                    match &d.unit {
                        Some(u) => {
                            if let Some((_, dim)) = resolve_unit(u, diags) {
                                if weight.is_none() {
                                    fixed_weight = Some(dim);
                                }
                                if let Some(w) = symbols.iter_mut().find(|s| s.kind == SymKind::Weight) {
                                    w.dim = dim;
                                }
                            }
                        }
                        None => diags.push(
                            Diagnostic::error("E0315", d.span, "`param w` needs a unit")
                                .with_label("e.g. `param w: nS`"),
                        ),
                    }
                    continue;
                }
                if let Some(prev) = symbols.iter().find(|s| s.name == d.name.name) {
                    let dd = if symbols.iter().position(|s| s.name == d.name.name).is_some_and(|i| i < n_builtin) {
                        Some(
                            Diagnostic::error("E0107", d.name.span, format!("`{}` is a built-in name", d.name.name))
                                .with_label("choose another name")
                                .with_note("built-in names: `t`, `dt`; in synapses also `w`, `pre`"),
                        )
                    } else {
                        Some(
                            Diagnostic::error("E0107", d.name.span, format!("`{}` is declared twice", d.name.name))
                                .with_label("second declaration")
                                .with_related(prev.span, "first declared here"),
                        )
                    };
                    if let Some(dd) = dd {
                        diags.push(dd);
                        continue;
                    }
                }
                if d.trainable && d.kind != DeclKind::Param {
                    diags.push(
                        Diagnostic::error("E0302", d.span, format!("only a `param` can be `trainable`, not a `{}`", d.kind.keyword()))
                            .with_label("remove `trainable`"),
                    );
                }
                let unit = match &d.unit {
                    Some(u) => match resolve_unit(u, diags) {
                        Some(x) => Some(x),
                        None => continue,
                    },
                    None => None,
                };
                if d.kind == DeclKind::Input && d.value.is_some() {
                    diags.push(
                        Diagnostic::error("E0303", d.span, format!("input `{}` cannot have a value", d.name.name))
                            .with_label("an input is the sum of the projections into it")
                            .with_help("use `drive pop.port = value` in a network for a constant input"),
                    );
                }
                if d.kind == DeclKind::Let && d.value.is_none() {
                    diags.push(
                        Diagnostic::error("E0304", d.span, format!("`let {}` needs a definition", d.name.name))
                            .with_label("expected `= expression`"),
                    );
                    continue;
                }
                if is_syn && d.kind == DeclKind::Input && !d.name.name.ends_with("_post") {
                    diags.push(
                        Diagnostic::error("E0316", d.name.span, format!("a synapse cannot have the input `{}`", d.name.name))
                            .with_label("a synapse input reads a postsynaptic variable")
                            .with_help(format!("name it after the target's variable: `input {}_post: <unit>`", d.name.name)),
                    );
                    continue;
                }
                let kind = match d.kind {
                    DeclKind::Param => SymKind::Param,
                    DeclKind::State => SymKind::State,
                    DeclKind::Input => {
                        if is_syn { SymKind::Post } else { SymKind::Input }
                    }
                    DeclKind::Let => SymKind::Let,
                };
                symbols.push(Symbol {
                    name: d.name.name.clone(),
                    kind,
                    dim: unit.map(|u| u.1).unwrap_or(Dim::ONE),
                    value: None,
                    trainable: d.trainable,
                    span: d.name.span,
                });
                decls.push((d, unit));
            }
            ModelItem::Function(f) => {
                if Func::by_name(&f.name.name).is_some() || local_fns.contains_key(&f.name.name) {
                    diags.push(
                        Diagnostic::error("E0107", f.name.span, format!("function `{}` is already defined", f.name.name))
                            .with_label("choose another name"),
                    );
                } else {
                    local_fns.insert(f.name.name.clone(), f);
                }
            }
            _ => {}
        }
    }
    // Synapses may read postsynaptic variables without declaring them: `v_post` is the
    // target's membrane potential (volts). Other `X_post` names must be declared.
    if is_syn && !symbols.iter().any(|s| s.name == "v_post") && uses_name(m, "v_post") {
        symbols.push(Symbol { name: "v_post".into(), kind: SymKind::Post, dim: crate::units::VOLT, value: None, trainable: false, span: m.name.span });
    }
    if is_syn && weight.is_some() {
        if let Some(w) = symbols.iter_mut().find(|s| s.kind == SymKind::Weight) {
            w.dim = weight.unwrap_or(w.dim);
        }
    }

    // 2. Values of declarations, in order: a value may use the declarations above it.
    // Dimensions not written are taken from the value.
    let weight_open = is_syn && weight.is_none() && fixed_weight.is_none() && symbols.iter().any(|s| s.kind == SymKind::Weight && s.dim == Dim::WEIGHT);
    let mut solved: Option<Dim> = None;
    for (d, unit) in &decls {
        let Some(value) = &d.value else { continue };
        let sid = symbols.iter().position(|s| s.name == d.name.name).expect("declared");
        let order: Vec<usize> = decls.iter().map(|(x, _)| symbols.iter().position(|s| s.name == x.name.name).unwrap_or(usize::MAX)).collect();
        let pos = order.iter().position(|x| *x == sid).unwrap_or(0);
        let later: Vec<usize> = order[pos..].to_vec();
        let t = {
            let snapshot = symbols.clone();
            let mut cx = ExprCx::new(&snapshot, &scope.fns);
            cx.local_fns = local_fns.clone();
            cx.weight_open = weight_open;
            cx.allow_random = d.kind == DeclKind::State;
            cx.visible = Box::new(move |s| !later.contains(&s));
            let r = cx.num(value, diags);
            if cx.weight_solution.is_some() {
                solved = cx.weight_solution;
            }
            r
        };
        let Some((t, vdim)) = t else { continue };
        match unit {
            Some((_, udim)) => {
                let zero = t.const_value() == Some(0.0);
                if vdim != *udim && !(zero && vdim.is_dimensionless()) {
                    let mut dg = Diagnostic::error("E0201", value.span, format!("the value of `{}` has the wrong dimension", d.name.name))
                        .with_label(format!("expected {udim}, found {vdim}"))
                        .with_related(d.unit.as_ref().map(|u| u.span()).unwrap_or(d.span), "declared unit");
                    if vdim.is_dimensionless() {
                        if let ExprKind::Number { text, .. } = &value.kind {
                            let u = d.unit.as_ref().map(unit_text).unwrap_or_default();
                            dg = dg.with_help(format!("write the unit: `{text} {u}`"));
                        }
                    }
                    diags.push(dg);
                    continue;
                }
            }
            None => symbols[sid].dim = vdim,
        }
        symbols[sid].value = Some(t);
    }

    let mut cx = ExprCx::new(&symbols, &scope.fns);
    cx.local_fns = local_fns.clone();
    cx.weight_open = weight_open;
    if let Some(w) = solved {
        cx.weight_solution = Some(w);
    }

    // 3. Equations and events.
    let mut odes: Vec<(SymId, TExpr)> = Vec::new();
    let mut spike: Option<SpikeDef> = None;
    let mut spike_written = false;
    let mut on_spike = Vec::new();
    let mut on_pre = Vec::new();
    let mut reset_detached = false;
    let mut refractory: Option<(Refractory, Vec<ast::Ident>)> = None;
    let mut method = file_method;
    let mut output: Option<(String, TExpr)> = None;
    let mut per_synapse = false;
    let mut ode_spans: HashMap<SymId, Span> = HashMap::new();
    for item in &m.body {
        match item {
            ModelItem::Decl(_) | ModelItem::Function(_) => {}
            ModelItem::Ode { state, rhs, span } => {
                let Some(sid) = symbols.iter().position(|s| s.name == state.name) else {
                    let mut d = Diagnostic::error("E0101", state.span, format!("unknown state `{}` in an equation", state.name))
                        .with_label("not declared");
                    let states: Vec<&str> = symbols.iter().filter(|s| s.kind == SymKind::State).map(|s| s.name.as_str()).collect();
                    d = match nearest(&state.name, states) {
                        Some(n) => d.with_help(format!("did you mean `{n}`?")),
                        None => d.with_help(format!("declare it: `state {}: <unit> = <initial value>`", state.name)),
                    };
                    diags.push(d);
                    continue;
                };
                let s = &symbols[sid];
                if s.kind != SymKind::State {
                    diags.push(
                        Diagnostic::error("E0305", state.span, format!("`{}` is {}, and only a state can have an equation", state.name, kind_phrase(s.kind)))
                            .with_label("not a state")
                            .with_related(s.span, "declared here")
                            .with_help(format!("declare it with `state {}` to make it evolve in time", state.name)),
                    );
                    continue;
                }
                if let Some(prev) = ode_spans.get(&sid) {
                    diags.push(
                        Diagnostic::error("E0306", *span, format!("`{}` has two equations", state.name))
                            .with_label("second equation")
                            .with_related(*prev, "first equation"),
                    );
                    continue;
                }
                ode_spans.insert(sid, *span);
                let Some((t, d)) = cx.num(rhs, diags) else { continue };
                let want = s.dim.div(Dim::TIME);
                if !is_zero_literal(&t) && !cx.same_dim(d, want) {
                    let dg = Diagnostic::error("E0201", rhs.span, format!("the right side of `d{}/dt` has the wrong dimension", state.name))
                        .with_label(format!("expected {want}, found {d}"))
                        .with_related(s.span, format!("`{}` has dimension {}", state.name, s.dim))
                        .with_note(format!("`d{}/dt` must have the dimension of `{}` per time: {want}", state.name, state.name));
                    let dg = if d == s.dim { dg.with_help("divide by a time constant, e.g. `(-v + I) / tau`") } else { dg };
                    diags.push(dg);
                    continue;
                }
                odes.push((sid, t));
            }
            ModelItem::Spike { condition, surrogate, span } => {
                if is_syn {
                    diags.push(Diagnostic::error("E0307", *span, "a synapse cannot spike").with_label("only neurons have `spike when`"));
                    continue;
                }
                let first = spike_written;
                spike_written = true;
                if first {
                    diags.push(
                        Diagnostic::error("E0306", *span, "a neuron has one spike condition")
                            .with_label("second `spike when`"),
                    );
                    continue;
                }
                cx.allow_random = false;
                let cond = cx.boolean(condition, diags);
                cx.allow_random = true;
                let sg = check_surrogate(surrogate.as_ref(), &scope.fns, &local_fns, diags);
                if let (Some(condition), Some(surrogate)) = (cond, sg) {
                    spike = Some(SpikeDef { condition, surrogate, span: *span });
                }
            }
            ModelItem::On { event, body, detach, span } => {
                let (expected, list) = if is_syn { ("pre", &mut on_pre) } else { ("spike", &mut on_spike) };
                if event.name != expected {
                    diags.push(
                        Diagnostic::error("E0308", event.span, format!("unknown event `{}`", event.name))
                            .with_label(format!("a {} reacts to `on {expected}`", if is_syn { "synapse" } else { "neuron" }))
                            .with_help(format!("write `on {expected} {{ ... }}`")),
                    );
                    continue;
                }
                if *detach {
                    reset_detached = true;
                }
                let _ = span;
                for st in body {
                    if let Some(u) = check_update(&mut cx, &symbols, &st.target, st.op, &st.value, st.span, diags) {
                        list.push(u);
                    }
                }
            }
            ModelItem::Reset { target, value, detach, span } => {
                if is_syn {
                    diags.push(Diagnostic::error("E0307", *span, "a synapse cannot have a reset").with_label("use `on pre { ... }`"));
                    continue;
                }
                reset_detached |= *detach;
                if let Some(u) = check_update(&mut cx, &symbols, target, ast::AssignOp::Set, value, *span, diags) {
                    on_spike.push(u);
                }
            }
            ModelItem::Refractory { period, clamp, span } => {
                if is_syn {
                    diags.push(Diagnostic::error("E0307", *span, "a synapse cannot be refractory").with_label("only neurons are refractory"));
                    continue;
                }
                cx.allow_random = false;
                let p = cx.num(period, diags);
                cx.allow_random = true;
                let Some((p, d)) = p else { continue };
                if d != Dim::TIME {
                    diags.push(
                        Diagnostic::error("E0201", period.span, "a refractory period must be a time")
                            .with_label(format!("expected s, found {d}"))
                            .with_help("e.g. `refractory 5 ms`"),
                    );
                    continue;
                }
                refractory = Some((Refractory { period: p, clamp: Vec::new(), span: *span }, clamp.clone()));
            }
            ModelItem::Method { method: id, .. } => method = method_of(id, diags).or(method),
            ModelItem::Output { port, value, span } => {
                if !is_syn {
                    diags.push(
                        Diagnostic::error("E0307", *span, "a neuron has no `output`")
                            .with_label("only synapses drive ports")
                            .with_note("a neuron's output is its spike"),
                    );
                    continue;
                }
                if output.is_some() {
                    diags.push(Diagnostic::error("E0306", *span, "a synapse has one `output`").with_label("second output"));
                    continue;
                }
                if let Some((t, _)) = cx.num(value, diags) {
                    output = Some((port.name.clone(), t));
                }
            }
            ModelItem::PerSynapse { .. } => per_synapse = true,
        }
    }

    // 4. Whole-model rules.
    let event_targets: Vec<SymId> = on_spike.iter().chain(&on_pre).map(|u: &Update| u.target).collect();
    for (sid, s) in symbols.iter().enumerate() {
        if s.kind == SymKind::State && !ode_spans.contains_key(&sid) && !event_targets.contains(&sid) {
            diags.push(
                Diagnostic::error("E0309", s.span, format!("state `{}` never changes", s.name))
                    .with_label("no equation and no event updates it")
                    .with_help(format!("add `d{}/dt = ...`, update it in an `on` block, or make it a `param`", s.name)),
            );
        }
    }
    if is_syn && output.is_none() {
        diags.push(
            Diagnostic::error("E0310", m.name.span, format!("synapse `{}` has no `output`", m.name.name))
                .with_label("it drives nothing")
                .with_help("add e.g. `output I = g`"),
        );
    }
    let refractory = refractory.and_then(|(mut r, clamp)| {
        if clamp.is_empty() {
            // Default: hold every state that the reset sets.
            let unique = |it: &mut dyn Iterator<Item = SymId>| {
                let mut c: Vec<SymId> = Vec::new();
                it.for_each(|s| if !c.contains(&s) { c.push(s) });
                c
            };
            let mut c = unique(&mut on_spike.iter().filter(|u| u.op == UpdateOp::Set).map(|u| u.target));
            if c.is_empty() {
                c = unique(&mut on_spike.iter().map(|u| u.target));
            }
            r.clamp = c;
        } else {
            for id in &clamp {
                match symbols.iter().position(|s| s.name == id.name && s.kind == SymKind::State) {
                    Some(sid) => r.clamp.push(sid),
                    None => diags.push(
                        Diagnostic::error("E0101", id.span, format!("`{}` is not a state of this neuron", id.name))
                            .with_label("only states can be clamped"),
                    ),
                }
            }
        }
        Some(r)
    });
    if !spike_written && (!on_spike.is_empty() || refractory.is_some()) {
        diags.push(
            Diagnostic::error("E0311", m.name.span, format!("neuron `{}` resets but never spikes", m.name.name))
                .with_label("no `spike when` condition")
                .with_help("add e.g. `spike when v > v_th`"),
        );
    }

    let weight_solution = cx.weight_solution;
    drop(cx);
    let n_now = diags.iter().filter(|d| d.is_error()).count();
    if n_now > n_errors {
        return Err(None);
    }
    if weight.is_none() {
        if let Some(w) = weight_solution {
            return Err(Some(w));
        }
    }
    let weight_dim = if is_syn {
        symbols.iter().find(|s| s.kind == SymKind::Weight).map(|s| s.dim).filter(|d| d.weight_power() == 0)
    } else {
        None
    };
    Ok(Model {
        kind: m.kind,
        name: m.name.name.clone(),
        // Where the model is defined: its name (diagnostics point there).
        span: m.name.span,
        symbols,
        odes,
        spike,
        on_spike,
        reset_detached,
        on_pre,
        refractory,
        method,
        output,
        per_synapse,
        weight_dim,
    })
}

fn unit_text(u: &ast::UnitExpr) -> String {
    crate::syntax::format::unit_to_string(u)
}

fn kind_phrase(k: SymKind) -> &'static str {
    match k {
        SymKind::Param => "a param",
        SymKind::State => "a state",
        SymKind::Input => "an input",
        SymKind::Let => "a derived value (`let`)",
        SymKind::Weight => "the synaptic weight",
        SymKind::PreSpike => "the presynaptic spike",
        SymKind::Post => "a postsynaptic variable",
        SymKind::Time => "the simulation time",
        SymKind::Dt => "the time step",
    }
}

fn uses_name(m: &ast::Model, name: &str) -> bool {
    fn expr_uses(e: &ast::Expr, name: &str) -> bool {
        match &e.kind {
            ExprKind::Var(i) => i.name == name,
            ExprKind::Number { .. } | ExprKind::Str(_) => false,
            ExprKind::Unary(_, a) => expr_uses(a, name),
            ExprKind::Binary(_, a, b) => expr_uses(a, name) || expr_uses(b, name),
            ExprKind::If { cond, then, otherwise } => {
                expr_uses(cond, name) || expr_uses(then, name) || expr_uses(otherwise, name)
            }
            ExprKind::Call(c) => c.args.iter().any(|a| expr_uses(&a.value, name)),
        }
    }
    m.body.iter().any(|item| match item {
        ModelItem::Decl(d) => d.value.as_ref().is_some_and(|v| expr_uses(v, name)),
        ModelItem::Ode { rhs, .. } => expr_uses(rhs, name),
        ModelItem::Spike { condition, .. } => expr_uses(condition, name),
        ModelItem::On { body, .. } => body.iter().any(|s| expr_uses(&s.value, name)),
        ModelItem::Reset { value, .. } | ModelItem::Output { value, .. } => expr_uses(value, name),
        ModelItem::Refractory { period, .. } => expr_uses(period, name),
        ModelItem::Function(f) => expr_uses(&f.body, name),
        _ => false,
    })
}

use crate::syntax::ast::ExprKind;

fn check_update(
    cx: &mut ExprCx,
    symbols: &[Symbol],
    target: &ast::Ident,
    op: ast::AssignOp,
    value: &ast::Expr,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Update> {
    let Some(sid) = symbols.iter().position(|s| s.name == target.name) else {
        let mut d = Diagnostic::error("E0101", target.span, format!("unknown name `{}`", target.name)).with_label("not declared");
        let states: Vec<&str> = symbols.iter().filter(|s| s.kind == SymKind::State).map(|s| s.name.as_str()).collect();
        if let Some(n) = nearest(&target.name, states) {
            d = d.with_help(format!("did you mean `{n}`?"));
        }
        diags.push(d);
        return None;
    };
    let s = &symbols[sid];
    if s.kind != SymKind::State {
        let mut d = Diagnostic::error("E0312", target.span, format!("cannot assign to `{}`: it is {}", target.name, kind_phrase(s.kind)))
            .with_label("only states can be updated by events")
            .with_related(s.span, "declared here");
        if s.kind == SymKind::Param {
            d = d.with_help(format!("declare it `state {}` if it should change", target.name));
        }
        diags.push(d);
        return None;
    }
    let (t, d) = cx.num(value, diags)?;
    let op = match op {
        ast::AssignOp::Set => UpdateOp::Set,
        ast::AssignOp::Add => UpdateOp::Add,
        ast::AssignOp::Sub => UpdateOp::Sub,
        ast::AssignOp::Mul => UpdateOp::Mul,
        ast::AssignOp::Div => UpdateOp::Div,
    };
    let want = if matches!(op, UpdateOp::Mul | UpdateOp::Div) { Dim::ONE } else { s.dim };
    if !(is_zero_literal(&t) && want != Dim::ONE || cx.same_dim(d, want)) {
        let dg = Diagnostic::error("E0201", value.span, format!("cannot update `{}` with a value of dimension {d}", target.name))
            .with_label(format!("expected {want}"))
            .with_related(s.span, format!("`{}` has dimension {}", target.name, s.dim));
        diags.push(dim_mismatch_notes(dg, &format!("`{}`", target.name), s.dim, "the value", d));
        return None;
    }
    Some(Update { target: sid, op, value: t, span })
}

fn check_surrogate(
    call: Option<&ast::Call>,
    global: &FnTable,
    local: &FnTable,
    diags: &mut Vec<Diagnostic>,
) -> Option<Surrogate> {
    let Some(call) = call else {
        // braintools' default surrogate, as in the golden files.
        return Some(Surrogate::Builtin { name: "relu_grad", params: vec![("alpha", 0.3), ("width", 1.0)] });
    };
    let name = call.callee.name.as_str();
    // Arguments of a surrogate are constants.
    let empty: Vec<Symbol> = Vec::new();
    let mut cx = ExprCx::new(&empty, global);
    cx.allow_random = false;
    if let Some(f) = local.get(name).or_else(|| global.get(name)) {
        // A user surrogate: `fn my_sg(x, a) = ...`, called as `surrogate my_sg(a = 2)`;
        // its first parameter is the normalised spike argument.
        if f.params.is_empty() {
            diags.push(
                Diagnostic::error("E0105", call.span, format!("surrogate function `{name}` needs a first parameter for the spike argument"))
                    .with_label("e.g. `fn my_sg(x) = 1 / (1 + abs(x))^2`")
                    .with_related(f.span, "defined here"),
            );
            return None;
        }
        if call.args.len() + 1 != f.params.len() {
            diags.push(
                Diagnostic::error("E0105", call.span, format!("surrogate `{name}` takes {} argument(s) after the spike argument", f.params.len() - 1))
                    .with_label("wrong number of arguments")
                    .with_related(f.span, "defined here"),
            );
            return None;
        }
        let x = Symbol { name: f.params[0].name.clone(), kind: SymKind::Let, dim: Dim::ONE, value: None, trainable: false, span: f.params[0].span };
        let syms = vec![x];
        let mut fcx = ExprCx::new(&syms, global);
        fcx.local_fns = local.clone();
        fcx.allow_random = false;
        // Bind the remaining parameters by rewriting the call: check body with x as symbol 0.
        let wrapped = ast::Call {
            callee: call.callee.clone(),
            args: std::iter::once(ast::Arg {
                name: None,
                value: ast::Expr { kind: ExprKind::Var(f.params[0].clone()), span: call.span },
            })
            .chain(call.args.iter().cloned())
            .collect(),
            span: call.span,
        };
        let body = fcx.expr(&ast::Expr { kind: ExprKind::Call(wrapped), span: call.span }, diags)?;
        if body.ty != Ty::Num(Dim::ONE) {
            diags.push(
                Diagnostic::error("E0313", call.span, "a surrogate must be a dimensionless function of the spike argument")
                    .with_label("not dimensionless"),
            );
            return None;
        }
        return Some(Surrogate::User { name: name.to_string(), body: Box::new(body), arg: 0 });
    }
    if let Some((sname, defaults)) = SURROGATES.iter().find(|(n, _)| *n == name) {
        let mut params: Vec<(&'static str, f64)> = defaults.to_vec();
        let mut ok = true;
        for (i, a) in call.args.iter().enumerate() {
            let slot = match &a.name {
                Some(n) => match defaults.iter().position(|(p, _)| *p == n.name) {
                    Some(j) => j,
                    None => {
                        let names: Vec<&str> = defaults.iter().map(|(p, _)| *p).collect();
                        let mut d = Diagnostic::error("E0105", n.span, format!("surrogate `{name}` has no parameter `{}`", n.name))
                            .with_label(format!("parameters: {}", names.join(", ")));
                        if let Some(s) = nearest(&n.name, names) {
                            d = d.with_help(format!("did you mean `{s}`?"));
                        }
                        diags.push(d);
                        ok = false;
                        continue;
                    }
                },
                None if i < defaults.len() => i,
                None => {
                    diags.push(
                        Diagnostic::error("E0105", a.value.span, format!("surrogate `{name}` takes at most {} argument(s)", defaults.len()))
                            .with_label("extra argument"),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some(prev) = call.args[..i].iter().position(|b| b.name.as_ref().map(|n| &n.name) == a.name.as_ref().map(|n| &n.name) && a.name.is_some()) {
                diags.push(
                    Diagnostic::error("E0105", a.value.span, format!("`{}` is given twice", defaults[slot].0))
                        .with_label("second value")
                        .with_related(call.args[prev].value.span, "first value"),
                );
                ok = false;
                continue;
            }
            match cx.num(&a.value, diags) {
                Some((t, d)) => match t.const_value() {
                    Some(v) if d.is_dimensionless() => params[slot].1 = v,
                    _ => {
                        diags.push(
                            Diagnostic::error("E0313", a.value.span, "a surrogate parameter must be a dimensionless constant")
                                .with_label("not a dimensionless constant"),
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        return ok.then(|| Surrogate::Builtin { name: sname, params });
    }
    let names: Vec<&str> = SURROGATES.iter().map(|(n, _)| *n).collect();
    let mut d = Diagnostic::error("E0314", call.callee.span, format!("unknown surrogate `{name}`"))
        .with_label(format!("built-in surrogates: {}", names.join(", ")));
    if let Some(n) = nearest(name, names) {
        d = d.with_help(format!("did you mean `{n}`?"));
    } else {
        d = d.with_help("or define one: `fn my_sg(x) = ...` and write `surrogate my_sg()`");
    }
    diags.push(d);
    None
}
