//! Checking `neuron` and `synapse` models: declarations, kinds, equations, events, units.
//! Phases 1 and 2 (declarations, their values) are here, 3 and 4 (equations and events,
//! whole-model rules) in `body`.

use super::expr::{ExprCx, FnTable, SymIndex, dim_mismatch_notes, is_zero_literal, resolve_unit, sym_index};
use super::consts::{Folder, fold_model, problem_diagnostic};
use super::load::Loaded;
use super::*;
use crate::diag::{Diagnostic, nearest};
use crate::syntax::ast::{self, DeclKind, ModelItem};
use std::collections::{HashMap, HashSet};

mod body;
use body::BodyCx;

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
            constants_ok(&model, diags).then_some(model)
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

/// Whether the model's constants, with its param defaults, are finite and divide by no
/// zero (reported if not).
fn constants_ok(model: &Model, diags: &mut Vec<Diagnostic>) -> bool {
    let mut f = Folder::with_params(model, &HashMap::new());
    fold_model(&mut f, model);
    match &f.problem {
        Some(p) => {
            diags.push(problem_diagnostic(p, None));
            false
        }
        None => true,
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
    let mut mcx = ModelCx::new(m, scope, weight);
    let (decls, fixed_weight) = mcx.declarations(diags);
    // The names are final after the declarations (values only fill in dimensions).
    let index = sym_index(&mcx.symbols);
    let weight_state = mcx.values(&decls, fixed_weight, &index, diags);
    let ModelCx { symbols, local_fns, is_syn, .. } = mcx;
    let (body, weight_solution) = BodyCx::new(m, &symbols, &index, &scope.fns, &local_fns, file_method, weight_state).check(diags);

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
        odes: body.odes,
        spike: body.spike,
        on_spike: body.on_spike,
        reset_detached: body.reset_detached,
        on_pre: body.on_pre,
        on_post: body.on_post,
        refractory: body.refractory,
        method: body.method,
        output: body.output,
        per_synapse: body.per_synapse,
        weight_dim,
    })
}

/// A model's declarations in order, with their declared units.
type Decls<'a> = Vec<(&'a ast::Decl, Option<(f64, Dim)>)>;

/// Phases 1 and 2 of one pass over a model: its symbols, from the built-in names, the
/// declarations and their values.
struct ModelCx<'a> {
    m: &'a ast::Model,
    scope: &'a Scope<'a>,
    is_syn: bool,
    /// The weight dimension solved by the first pass (`None` in the first pass).
    weight: Option<Dim>,
    symbols: Vec<Symbol>,
    /// `symbols[..n_builtin]` are `t`, `dt` and in synapses `w`, `pre`.
    n_builtin: usize,
    local_fns: FnTable<'a>,
    /// Declared names so far, for finding a redeclaration in constant time.
    names: SymIndex,
}

impl<'a> ModelCx<'a> {
    fn new(m: &'a ast::Model, scope: &'a Scope<'a>, weight: Option<Dim>) -> ModelCx<'a> {
        let is_syn = m.kind == ast::ModelKind::Synapse;
        let mut symbols: Vec<Symbol> = Vec::new();
        let builtin = |name: &str, kind, dim| Symbol { name: name.into(), kind, dim, value: None, trainable: false, bounds: None, span: m.name.span };
        symbols.push(builtin("t", SymKind::Time, Dim::TIME));
        symbols.push(builtin("dt", SymKind::Dt, Dim::TIME));
        if is_syn {
            symbols.push(builtin("w", SymKind::Weight, weight.unwrap_or(Dim::WEIGHT)));
            symbols.push(builtin("pre", SymKind::PreSpike, Dim::ONE));
        }
        let n_builtin = symbols.len();
        let names = sym_index(&symbols);
        ModelCx { m, scope, is_syn, weight, symbols, n_builtin, local_fns: HashMap::new(), names }
    }

    /// 1. Declarations: names, kinds and declared units. Returns the declarations and,
    /// in a first pass, the weight's unit if `param w` fixes it.
    fn declarations(&mut self, diags: &mut Vec<Diagnostic>) -> (Decls<'a>, Option<Dim>) {
        let m = self.m;
        let mut fixed_weight: Option<Dim> = None;
        let mut decls: Decls = Vec::new();
        for item in &m.body {
            match item {
                ModelItem::Decl(d) if self.is_syn && d.name.name == "w" && d.kind == DeclKind::Param => {
                    if let Some(dim) = self.weight_unit(d, diags) {
                        fixed_weight = Some(dim);
                    }
                }
                ModelItem::Decl(d) => {
                    if let Some(unit) = self.declare(d, diags) {
                        decls.push((d, unit));
                    }
                }
                ModelItem::Function(f) => {
                    if Func::by_name(&f.name.name).is_some() || self.local_fns.contains_key(&f.name.name) {
                        diags.push(
                            Diagnostic::error("E0107", f.name.span, format!("function `{}` is already defined", f.name.name))
                                .with_label("choose another name"),
                        );
                    } else {
                        self.local_fns.insert(f.name.name.clone(), f);
                    }
                }
                _ => {}
            }
        }
        // Synapses may read postsynaptic variables without declaring them: `v_post` is the
        // target's membrane potential (volts). Other `X_post` names must be declared.
        if self.is_syn && !self.symbols.iter().any(|s| s.name == "v_post") && uses_name(m, "v_post") {
            self.symbols.push(Symbol { name: "v_post".into(), kind: SymKind::Post, dim: crate::units::VOLT, value: None, trainable: false, bounds: None, span: m.name.span });
        }
        if self.is_syn && self.weight.is_some() {
            if let Some(w) = self.symbols.iter_mut().find(|s| s.kind == SymKind::Weight) {
                w.dim = self.weight.unwrap_or(w.dim);
            }
        }
        (decls, fixed_weight)
    }

    /// `param w: nS` fixes the unit of the weight; it stays the weight. Returns that
    /// unit in a first pass.
    fn weight_unit(&mut self, d: &ast::Decl, diags: &mut Vec<Diagnostic>) -> Option<Dim> {
        if d.value.is_some() || d.trainable {
            diags.push(
                Diagnostic::error("E0315", d.span, "the weight `w` is set by each connection")
                    .with_label("declare only its unit: `param w: nS`"),
            );
        }
        let Some(u) = &d.unit else {
            diags.push(
                Diagnostic::error("E0315", d.span, "`param w` needs a unit")
                    .with_label("e.g. `param w: nS`"),
            );
            return None;
        };
        let (_, dim) = resolve_unit(u, diags)?;
        if let Some(w) = self.symbols.iter_mut().find(|s| s.kind == SymKind::Weight) {
            w.dim = dim;
        }
        self.weight.is_none().then_some(dim)
    }

    /// Declares one symbol; returns its declared unit, or `None` if it was not declared.
    fn declare(&mut self, d: &ast::Decl, diags: &mut Vec<Diagnostic>) -> Option<Option<(f64, Dim)>> {
        if let Some(dd) = self.redeclared(d) {
            diags.push(dd);
            return None;
        }
        if d.trainable && d.kind != DeclKind::Param {
            diags.push(
                Diagnostic::error("E0302", d.span, format!("only a `param` can be `trainable`, not a `{}`", d.kind.keyword()))
                    .with_label("remove `trainable`"),
            );
        }
        let unit = match &d.unit {
            Some(u) => Some(resolve_unit(u, diags)?),
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
            return None;
        }
        if self.is_syn && d.kind == DeclKind::Input && !d.name.name.ends_with("_post") {
            diags.push(
                Diagnostic::error("E0316", d.name.span, format!("a synapse cannot have the input `{}`", d.name.name))
                    .with_label("a synapse input reads a postsynaptic variable")
                    .with_help(format!("name it after the target's variable: `input {}_post: <unit>`", d.name.name)),
            );
            return None;
        }
        let kind = match d.kind {
            DeclKind::Param => SymKind::Param,
            DeclKind::State => SymKind::State,
            DeclKind::Input => {
                if self.is_syn { SymKind::Post } else { SymKind::Input }
            }
            DeclKind::Let => SymKind::Let,
        };
        self.names.insert(d.name.name.clone(), self.symbols.len());
        self.symbols.push(Symbol {
            name: d.name.name.clone(),
            kind,
            dim: unit.map(|u| u.1).unwrap_or(Dim::ONE),
            value: None,
            trainable: d.trainable,
            bounds: None,
            span: d.name.span,
        });
        Some(unit)
    }

    /// The error for a name already taken by a built-in or an earlier declaration.
    fn redeclared(&self, d: &ast::Decl) -> Option<Diagnostic> {
        let i = *self.names.get(&d.name.name)?;
        Some(if i < self.n_builtin {
            Diagnostic::error("E0107", d.name.span, format!("`{}` is a built-in name", d.name.name))
                .with_label("choose another name")
                .with_note("built-in names: `t`, `dt`; in synapses also `w`, `pre`")
        } else {
            Diagnostic::error("E0107", d.name.span, format!("`{}` is declared twice", d.name.name))
                .with_label("second declaration")
                .with_related(self.symbols[i].span, "first declared here")
        })
    }

    /// 2. Values of declarations, in order: a value may use the declarations above it.
    /// Dimensions not written are taken from the value. Returns whether the weight
    /// dimension is still open, and its solution if a value solved it.
    fn values(&mut self, decls: &Decls, fixed_weight: Option<Dim>, index: &SymIndex, diags: &mut Vec<Diagnostic>) -> (bool, Option<Dim>) {
        let weight_open = self.is_syn
            && self.weight.is_none()
            && fixed_weight.is_none()
            && self.symbols.iter().any(|s| s.kind == SymKind::Weight && s.dim == Dim::WEIGHT);
        // Declarations were pushed in order, so those at or after a declaration are the
        // symbols from its own up to the last declared one.
        let last_decl = decls.iter().filter_map(|(d, _)| index.get(&d.name.name).copied()).max().unwrap_or(0);
        let mut solved: Option<Dim> = None;
        for (d, unit) in decls {
            let Some(value) = &d.value else { continue };
            let sid = index[&d.name.name];
            let Some((t, vdim)) = self.typed_value(d, value, (sid, last_decl), index, weight_open, &mut solved, diags) else { continue };
            match unit {
                Some((_, udim)) => {
                    if !value_fits(d, value, &t, vdim, *udim, diags) {
                        continue;
                    }
                }
                None => self.symbols[sid].dim = vdim,
            }
            self.symbols[sid].value = Some(t);
        }
        self.bounds(decls, index, diags);
        (weight_open, solved)
    }

    /// `trainable bounds (lo, hi)` of each param, in its dimension (known once the values
    /// are), and a constant default inside them (E0450, E0451).
    fn bounds(&mut self, decls: &Decls, index: &SymIndex, diags: &mut Vec<Diagnostic>) {
        for (d, _) in decls {
            let (Some(b), Some(&sid)) = (&d.bounds, index.get(&d.name.name)) else { continue };
            let what = format!("`{}`", d.name.name);
            let Some(bounds) = super::bounds::fold_bounds(b, self.symbols[sid].dim, &self.scope.fns, &what, diags) else { continue };
            if let Some(v) = self.symbols[sid].value.as_ref().and_then(TExpr::const_value) {
                let at = d.value.as_ref().map_or(d.span, |v| v.span);
                super::bounds::check_initial(&Init::Const(v), bounds, at, b.span, &what, diags);
            }
            self.symbols[sid].bounds = Some(bounds);
        }
    }

    /// The value of declaration `d` (symbol `sid`), which sees only the declarations
    /// above it (not `sid..=last_decl`); records a solution of the weight dimension in
    /// `solved`.
    #[allow(clippy::too_many_arguments)]
    fn typed_value(
        &self,
        d: &ast::Decl,
        value: &ast::Expr,
        (sid, last_decl): (SymId, SymId),
        index: &SymIndex,
        weight_open: bool,
        solved: &mut Option<Dim>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(TExpr, Dim)> {
        let mut cx = ExprCx::new(&self.symbols, &self.scope.fns).with_index(index);
        cx.local_fns = self.local_fns.clone();
        cx.weight_open = weight_open;
        cx.allow_random = d.kind == DeclKind::State;
        cx.visible = Box::new(move |s| s < sid || s > last_decl);
        let r = cx.num(value, diags);
        if cx.weight_solution.is_some() {
            *solved = cx.weight_solution;
        }
        r
    }
}

/// Whether a declaration's value of dimension `vdim` fits its declared unit `udim` (a
/// zero fits any); reports the mismatch if not.
fn value_fits(d: &ast::Decl, value: &ast::Expr, t: &TExpr, vdim: Dim, udim: Dim, diags: &mut Vec<Diagnostic>) -> bool {
    let zero = t.const_value() == Some(0.0);
    if vdim == udim || (zero && vdim.is_dimensionless()) {
        return true;
    }
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
    false
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
        crate::deep(|| match &e.kind {
            ExprKind::Var(i) => i.name == name,
            ExprKind::Number { .. } | ExprKind::Str(_) => false,
            ExprKind::Unary(_, a) => expr_uses(a, name),
            ExprKind::Binary(_, a, b) => expr_uses(a, name) || expr_uses(b, name),
            ExprKind::If { cond, then, otherwise } => {
                expr_uses(cond, name) || expr_uses(then, name) || expr_uses(otherwise, name)
            }
            ExprKind::Call(c) => c.args.iter().any(|a| expr_uses(&a.value, name)),
        })
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

