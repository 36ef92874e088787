//! Typing expressions: name resolution, physical dimensions, inlining of user functions.

use super::{Func, SymId, Symbol, TExpr, TKind, Ty};
use crate::diag::{Diagnostic, nearest};
use crate::span::Span;
use crate::syntax::ast::{self, BinOp, ExprKind, UnOp};
use crate::units::{self, Dim};
use std::collections::HashMap;
use std::sync::Arc;

/// Global functions visible everywhere (`fn` at the top of any loaded file).
pub(super) type FnTable<'a> = HashMap<String, &'a ast::FnDef>;

/// A model's symbols by name (the first of each name).
pub(super) type SymIndex = HashMap<String, SymId>;

pub(super) fn sym_index(symbols: &[Symbol]) -> SymIndex {
    let mut index = SymIndex::new();
    for (i, s) in symbols.iter().enumerate() {
        index.entry(s.name.clone()).or_insert(i);
    }
    index
}

/// What identifies a checked argument for reusing an inlined call: the same constant,
/// symbol or shared node (anything else is not compared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ArgKey {
    Const(u64),
    Sym(SymId),
    Shared(*const TExpr),
}

impl ArgKey {
    fn of(e: &TExpr) -> Option<ArgKey> {
        match &e.kind {
            TKind::Const(v) => Some(ArgKey::Const(v.to_bits())),
            TKind::Sym(s) => Some(ArgKey::Sym(*s)),
            TKind::Shared(r) => Some(ArgKey::Shared(Arc::as_ptr(r))),
            _ => None,
        }
    }
}

/// A function and the identities of its arguments.
type CallKey = (*const ast::FnDef, Vec<ArgKey>);

/// Whether an expression draws random numbers (shared nodes never do).
fn is_random(e: &TExpr) -> bool {
    crate::deep(|| match &e.kind {
        TKind::Call(f, args) => f.is_random() || args.iter().any(is_random),
        TKind::Const(_) | TKind::Sym(_) | TKind::Shared(_) => false,
        TKind::Neg(a) | TKind::Not(a) => is_random(a),
        TKind::Binary(_, a, b) => is_random(a) || is_random(b),
        TKind::If(c, a, b) => is_random(c) || is_random(a) || is_random(b),
    })
}

/// `e` as a shared node, unless it is trivial (a constant or symbol costs nothing to
/// copy) or random (each use of a random draw is its own draw).
fn share(e: TExpr) -> TExpr {
    match e.kind {
        TKind::Const(_) | TKind::Sym(_) | TKind::Shared(_) => e,
        _ if is_random(&e) => e,
        _ => TExpr { ty: e.ty, span: e.span, kind: TKind::Shared(Arc::new(e)) },
    }
}

/// What an expression may refer to.
pub(super) struct ExprCx<'a> {
    pub symbols: &'a [Symbol],
    pub global_fns: &'a FnTable<'a>,
    pub local_fns: FnTable<'a>,
    /// Whether `rand()`, `randn()`, `poisson()` and `xi` may appear.
    pub allow_random: bool,
    /// Whether the symbolic weight dimension `[w]` may still be solved (synapses).
    pub weight_open: bool,
    /// The solution for `[w]` found while checking, if any.
    pub weight_solution: Option<Dim>,
    /// Function parameters bound to their (checked) arguments while inlining a call.
    locals: Vec<(String, TExpr)>,
    /// Functions being inlined (recursion guard).
    fn_stack: Vec<String>,
    /// Inlined calls by function and arguments: a second identical call reuses the
    /// first's result instead of checking (and copying) the body again. The arguments
    /// are kept with it, so that no address in a key can be reused by another node.
    inlined: HashMap<CallKey, (Arc<TExpr>, Vec<TExpr>)>,
    /// Symbol by name (the first of that name), for lookups in constant time.
    index: Option<&'a SymIndex>,
    /// Symbols that may be read (a `let` may not read itself or later lets).
    pub visible: Box<dyn Fn(SymId) -> bool + 'a>,
}

const CONSTANTS: &[(&str, f64)] = &[("pi", std::f64::consts::PI), ("e", std::f64::consts::E)];

pub(super) fn dim_mismatch_notes(d: Diagnostic, what_a: &str, a: Dim, what_b: &str, b: Dim) -> Diagnostic {
    d.with_note(format!("{what_a} has dimension {a}")).with_note(format!("{what_b} has dimension {b}"))
}

impl<'a> ExprCx<'a> {
    pub fn new(symbols: &'a [Symbol], global_fns: &'a FnTable<'a>) -> ExprCx<'a> {
        ExprCx {
            symbols,
            global_fns,
            local_fns: HashMap::new(),
            allow_random: true,
            weight_open: false,
            weight_solution: None,
            locals: Vec::new(),
            fn_stack: Vec::new(),
            inlined: HashMap::new(),
            index: None,
            visible: Box::new(|_| true),
        }
    }

    /// Looks names up in `index` (built from the same symbols) instead of scanning.
    pub fn with_index(mut self, index: &'a SymIndex) -> ExprCx<'a> {
        self.index = Some(index);
        self
    }

    fn lookup(&self, name: &str) -> Option<SymId> {
        match self.index {
            Some(index) => index.get(name).copied(),
            None => self.symbols.iter().position(|s| s.name == name),
        }
    }

    /// Are two dimensions equal? While `[w]` is open, a difference in its power solves it.
    pub fn same_dim(&mut self, a: Dim, b: Dim) -> bool {
        if a == b {
            return true;
        }
        if let Some(w) = self.weight_solution {
            return a.substitute_weight(w) == b.substitute_weight(w);
        }
        if self.weight_open && a.weight_power() != b.weight_power() {
            if let Some(w) = a.solve_weight(b) {
                self.weight_solution = Some(w);
                return true;
            }
        }
        false
    }

    pub fn num(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<(TExpr, Dim)> {
        let t = self.expr(e, diags)?;
        match t.ty {
            Ty::Num(d) => Some((t, d)),
            Ty::Bool => {
                diags.push(
                    Diagnostic::error("E0205", e.span, "expected a number, found a condition")
                        .with_label("this is true or false, not a number")
                        .with_help("use `if cond then a else b` to turn a condition into a value"),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        let t = self.expr(e, diags)?;
        if t.ty != Ty::Bool {
            diags.push(
                Diagnostic::error("E0205", e.span, "expected a condition, found a number")
                    .with_label("this is a number")
                    .with_help("compare it with something, e.g. `v > v_th`"),
            );
            return None;
        }
        Some(t)
    }

    pub fn expr(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        crate::deep(|| self.expr_at(e, diags))
    }

    fn expr_at(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        let span = e.span;
        let mk = |kind, ty| Some(TExpr { kind, ty, span });
        match &e.kind {
            ExprKind::Number { value, unit, .. } => match unit {
                None => mk(TKind::Const(*value), Ty::Num(Dim::ONE)),
                Some(ast::UnitExpr::Name(u)) => match units::lookup(&u.name) {
                    Some(unit) => mk(TKind::Const(value * unit.scale), Ty::Num(unit.dim)),
                    None => {
                        diags.push(unknown_unit(u));
                        None
                    }
                },
                Some(other) => {
                    let (scale, dim) = resolve_unit(other, diags)?;
                    mk(TKind::Const(value * scale), Ty::Num(dim))
                }
            },
            ExprKind::Str(_) => {
                diags.push(
                    Diagnostic::error("E0206", span, "a string is not allowed here")
                        .with_label("strings are only used for file names")
                        .with_note("strings appear in `import`, `from \"...\"` and `train { }` settings"),
                );
                None
            }
            ExprKind::Var(id) => self.name(id, diags),
            ExprKind::Unary(op, a) => match op {
                UnOp::Neg => {
                    let (a, d) = self.num(a, diags)?;
                    mk(TKind::Neg(Box::new(a)), Ty::Num(d))
                }
                UnOp::Not => {
                    let a = self.boolean(a, diags)?;
                    mk(TKind::Not(Box::new(a)), Ty::Bool)
                }
            },
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, span, diags),
            ExprKind::If { cond, then, otherwise } => {
                let c = self.boolean(cond, diags);
                let t = self.expr(then, diags);
                let o = self.expr(otherwise, diags);
                let (c, t, o) = (c?, t?, o?);
                let ty = match (t.ty, o.ty) {
                    (Ty::Bool, Ty::Bool) => Ty::Bool,
                    (Ty::Num(x), Ty::Num(y)) if self.same_dim(x, y) => Ty::Num(x),
                    (tx, ty) => {
                        let d = Diagnostic::error("E0201", otherwise.span, "the branches of `if` have different dimensions")
                            .with_label("this branch")
                            .with_related(then.span, "differs from this branch");
                        diags.push(match (tx, ty) {
                            (Ty::Num(x), Ty::Num(y)) => dim_mismatch_notes(d, "the `then` branch", x, "the `else` branch", y),
                            _ => d.with_note("one branch is a condition and the other a number"),
                        });
                        return None;
                    }
                };
                mk(TKind::If(Box::new(c), Box::new(t), Box::new(o)), ty)
            }
            ExprKind::Call(call) => self.call(call, diags),
        }
    }

    fn name(&mut self, id: &ast::Ident, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        let span = id.span;
        if let Some((_, bound)) = self.locals.iter().rev().find(|(n, _)| *n == id.name) {
            // A function parameter: the argument, inlined (with the use's span).
            return Some(TExpr { span, ..bound.clone() });
        }
        if self.fn_stack_is_global() {
            // Global functions see only their parameters, constants and units.
        } else if let Some(sid) = self.lookup(&id.name) {
            if !(self.visible)(sid) {
                diags.push(
                    Diagnostic::error("E0103", span, format!("`{}` is used before it is defined", id.name))
                        .with_label("not yet defined here")
                        .with_related(self.symbols[sid].span, "defined here")
                        .with_note("a declaration's value may only use the declarations above it"),
                );
                return None;
            }
            let s = &self.symbols[sid];
            return Some(TExpr { kind: TKind::Sym(sid), ty: Ty::Num(s.dim), span });
        }
        if id.name == "xi" {
            if !self.allow_random {
                diags.push(no_random(span, "xi"));
                return None;
            }
            let dim = Dim::TIME.powi(-1).sqrt().unwrap_or(Dim::ONE);
            return Some(TExpr { kind: TKind::Call(Func::Xi, vec![]), ty: Ty::Num(dim), span });
        }
        if let Some((_, v)) = CONSTANTS.iter().find(|(n, _)| *n == id.name) {
            return Some(TExpr { kind: TKind::Const(*v), ty: Ty::Num(Dim::ONE), span });
        }
        if let Some(u) = units::lookup(&id.name) {
            // A unit used as a value (`0.5 * mV/ms`): its size in SI.
            return Some(TExpr { kind: TKind::Const(u.scale), ty: Ty::Num(u.dim), span });
        }
        let mut d = Diagnostic::error("E0101", span, format!("unknown name `{}`", id.name)).with_label("not declared");
        let candidates: Vec<&str> = self
            .locals
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(if self.fn_stack_is_global() { None } else { Some(self.symbols.iter().map(|s| s.name.as_str())) }.into_iter().flatten())
            .chain(CONSTANTS.iter().map(|(n, _)| *n))
            .collect();
        if let Some(n) = nearest(&id.name, candidates) {
            d = d.with_help(format!("did you mean `{n}`?"));
        } else if self.fn_stack_is_global() {
            d = d.with_note("a function defined at the top of a file sees only its own parameters");
        }
        diags.push(d);
        None
    }

    fn fn_stack_is_global(&self) -> bool {
        self.fn_stack.last().is_some_and(|f| !self.local_fns.contains_key(f))
    }

    fn binary(&mut self, op: BinOp, a: &ast::Expr, b: &ast::Expr, span: Span, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        let mk = |ta: TExpr, tb: TExpr, ty| Some(TExpr { kind: TKind::Binary(op, Box::new(ta), Box::new(tb)), ty, span });
        match op {
            BinOp::And | BinOp::Or => {
                let ta = self.boolean(a, diags);
                let tb = self.boolean(b, diags);
                mk(ta?, tb?, Ty::Bool)
            }
            BinOp::Add | BinOp::Sub | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => {
                let ta = self.num(a, diags);
                let tb = self.num(b, diags);
                let ((ta, da), (tb, db)) = (ta?, tb?);
                // A literal 0 fits any dimension: `v > 0`, `x + 0`.
                let (da, db) = if is_zero_literal(&ta) { (db, db) } else if is_zero_literal(&tb) { (da, da) } else { (da, db) };
                if !self.same_dim(da, db) {
                    let verb = match op {
                        BinOp::Add => "add",
                        BinOp::Sub => "subtract",
                        _ => "compare",
                    };
                    let d = Diagnostic::error("E0201", span, format!("cannot {verb} quantities of different dimensions"))
                        .with_label(format!("`{}` needs both sides in the same unit", op.symbol()))
                        .with_related(a.span, format!("{da}"))
                        .with_related(b.span, format!("{db}"));
                    diags.push(dim_mismatch_notes(d, "the left side", da, "the right side", db));
                    return None;
                }
                let ty = if op.is_comparison() { Ty::Bool } else { Ty::Num(da) };
                mk(ta, tb, ty)
            }
            BinOp::Mul | BinOp::Div => {
                let ta = self.num(a, diags);
                let tb = self.num(b, diags);
                let ((ta, da), (tb, db)) = (ta?, tb?);
                let d = if op == BinOp::Mul { da.checked_mul(db) } else { da.checked_div(db) };
                let Some(d) = d else {
                    diags.push(exponent_overflow(span, &format!("{da} {} {db}", op.symbol())));
                    return None;
                };
                mk(ta, tb, Ty::Num(d))
            }
            BinOp::Pow => {
                let ta = self.num(a, diags);
                let tb = self.num(b, diags);
                let ((ta, da), (tb, db)) = (ta?, tb?);
                if !db.is_dimensionless() {
                    diags.push(
                        Diagnostic::error("E0202", b.span, "an exponent must be dimensionless")
                            .with_label(format!("this has dimension {db}")),
                    );
                    return None;
                }
                if da.is_dimensionless() {
                    return mk(ta, tb, Ty::Num(Dim::ONE));
                }
                // A dimensional base needs a constant exponent that keeps the exponents whole (or half).
                let twice = tb.const_value().map(|p| p * 2.0).filter(|t| t.fract() == 0.0);
                // Whole or half exponents keep the dimension's exponents multiples of one half.
                let keeps_halves = |t: f64| da.0.iter().all(|x| i64::from(*x).saturating_mul(t as i64) % 2 == 0);
                match twice.filter(|t| keeps_halves(*t)) {
                    Some(t) => match da.checked_pow_halves(t as i64).filter(|_| t.abs() <= f64::from(4 * Dim::MAX_EXP)) {
                        Some(d) => mk(ta, tb, Ty::Num(d)),
                        None => {
                            diags.push(exponent_overflow(span, &format!("({da})^{}", t / 2.0)));
                            None
                        }
                    },
                    _ => {
                        diags.push(
                            Diagnostic::error("E0202", b.span, format!("cannot raise a quantity of dimension {da} to this power"))
                                .with_label("the exponent must be a constant whole or half number")
                                .with_related(a.span, format!("{da}")),
                        );
                        None
                    }
                }
            }
        }
    }

    fn call(&mut self, call: &ast::Call, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        let name = call.callee.name.as_str();
        let span = call.span;
        let user = self.local_fns.get(name).copied().or_else(|| self.global_fns.get(name).copied());
        if let Some(f) = user {
            return self.inline_fn(f, call, diags);
        }
        if let Some(func) = Func::by_name(name) {
            return self.builtin(func, call, diags);
        }
        if matches!(name, "U" | "uniform" | "normal") {
            diags.push(
                Diagnostic::error("E0207", span, format!("`{name}(...)` is an initialiser, not a function"))
                    .with_label("only allowed as the whole value of a setting in a network")
                    .with_help(format!("write it in a network: `layer p = Model[n] {{ x = {name}(...) }}`")),
            );
            return None;
        }
        let mut d = Diagnostic::error("E0104", call.callee.span, format!("unknown function `{name}`")).with_label("not a function");
        let names: Vec<&str> = Func::ALL
            .iter()
            .map(|f| f.name())
            .chain(self.local_fns.keys().map(|k| k.as_str()))
            .chain(self.global_fns.keys().map(|k| k.as_str()))
            .collect();
        if let Some(n) = nearest(name, names) {
            d = d.with_help(format!("did you mean `{n}`?"));
        }
        diags.push(d);
        None
    }

    fn builtin(&mut self, func: Func, call: &ast::Call, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        let span = call.span;
        if func.is_random() && !self.allow_random {
            diags.push(no_random(span, func.name()));
            return None;
        }
        let arity = match func {
            Func::Rand | Func::Randn | Func::Xi => 0,
            Func::Min | Func::Max => 2,
            Func::Clip => 3,
            _ => 1,
        };
        if call.args.len() != arity {
            diags.push(
                Diagnostic::error("E0105", span, format!("`{}` takes {arity} argument{}, found {}", func.name(), if arity == 1 { "" } else { "s" }, call.args.len()))
                    .with_label("wrong number of arguments"),
            );
            return None;
        }
        if let Some(named) = call.args.iter().find_map(|a| a.name.as_ref()) {
            diags.push(
                Diagnostic::error("E0105", named.span, format!("`{}` takes no named arguments", func.name()))
                    .with_label("remove the name"),
            );
            return None;
        }
        let mut args = Vec::new();
        let mut dims = Vec::new();
        let mut ok = true;
        for a in &call.args {
            match self.num(&a.value, diags) {
                Some((t, d)) => {
                    args.push(t);
                    dims.push(d);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let result = match func {
            Func::Exp | Func::Log | Func::Tanh | Func::Sigmoid | Func::Sin | Func::Cos | Func::Exprel => {
                if !dims[0].is_dimensionless() {
                    diags.push(
                        Diagnostic::error("E0203", call.args[0].value.span, format!("the argument of `{}` must be dimensionless", func.name()))
                            .with_label(format!("this has dimension {}", dims[0]))
                            .with_help("divide by a quantity of the same dimension, e.g. `exp(-t / tau)`"),
                    );
                    return None;
                }
                Dim::ONE
            }
            Func::Sqrt => match dims[0].sqrt() {
                Some(d) => d,
                None => {
                    diags.push(
                        Diagnostic::error("E0202", call.args[0].value.span, format!("cannot take the square root of dimension {}", dims[0]))
                            .with_label("exponents would not be whole or half numbers"),
                    );
                    return None;
                }
            },
            Func::Abs => dims[0],
            Func::Min | Func::Max | Func::Clip => {
                for (i, d) in dims.iter().enumerate().skip(1) {
                    if !self.same_dim(dims[0], *d) {
                        let dg = Diagnostic::error("E0201", call.args[i].value.span, format!("the arguments of `{}` must have the same dimension", func.name()))
                            .with_label(format!("{d}"))
                            .with_related(call.args[0].value.span, format!("{}", dims[0]));
                        diags.push(dim_mismatch_notes(dg, "the first argument", dims[0], "this argument", *d));
                        return None;
                    }
                }
                dims[0]
            }
            Func::Rand | Func::Randn => Dim::ONE,
            Func::Poisson => {
                if !self.same_dim(dims[0], Dim::TIME.powi(-1)) {
                    diags.push(
                        Diagnostic::error("E0204", call.args[0].value.span, "`poisson` takes a rate")
                            .with_label(format!("expected dimension 1/s (e.g. `10 Hz`), found {}", dims[0])),
                    );
                    return None;
                }
                Dim::ONE
            }
            Func::Xi => Dim::TIME.powi(-1).sqrt().unwrap_or(Dim::ONE),
        };
        Some(TExpr { kind: TKind::Call(func, args), ty: Ty::Num(result), span })
    }

    fn inline_fn(&mut self, f: &ast::FnDef, call: &ast::Call, diags: &mut Vec<Diagnostic>) -> Option<TExpr> {
        if self.fn_stack.iter().any(|n| *n == f.name.name) {
            diags.push(
                Diagnostic::error("E0106", call.span, format!("`{}` calls itself", f.name.name))
                    .with_label("recursive call")
                    .with_related(f.span, "defined here")
                    .with_note("functions are inlined, so they cannot be recursive"),
            );
            return None;
        }
        if call.args.len() != f.params.len() {
            diags.push(
                Diagnostic::error("E0105", call.span, format!("`{}` takes {} argument(s), found {}", f.name.name, f.params.len(), call.args.len()))
                    .with_label("wrong number of arguments")
                    .with_related(f.span, "defined here"),
            );
            return None;
        }
        let mut bound = Vec::new();
        let mut keys = Vec::new();
        for (p, a) in f.params.iter().zip(&call.args) {
            if let Some(n) = &a.name {
                if n.name != p.name {
                    diags.push(
                        Diagnostic::error("E0105", n.span, format!("`{}` has no parameter `{}` here", f.name.name, n.name))
                            .with_label(format!("this position is `{}`", p.name)),
                    );
                    return None;
                }
            }
            // An argument used several times in the body is one shared node.
            let value = share(self.expr(&a.value, diags)?);
            keys.push(ArgKey::of(&value));
            bound.push((p.name.clone(), value));
        }
        // The same call again (`f(x) + f(x)`, or any call in a chain of functions that
        // each call the previous twice) reuses the first's result: linear, not exponential.
        let key = keys.into_iter().collect::<Option<Vec<_>>>().map(|k| (f as *const ast::FnDef, k));
        if let Some((done, _)) = key.as_ref().and_then(|k| self.inlined.get(k)) {
            return Some(TExpr { kind: TKind::Shared(done.clone()), ty: done.ty, span: call.span });
        }
        let args: Vec<TExpr> = if key.is_some() { bound.iter().map(|(_, a)| a.clone()).collect() } else { Vec::new() };
        // Arguments are checked in the caller's scope; the body in the function's.
        let saved = std::mem::replace(&mut self.locals, bound);
        self.fn_stack.push(f.name.name.clone());
        let body = self.expr(&f.body, diags);
        self.fn_stack.pop();
        self.locals = saved;
        let body = share(body?);
        if let (Some(k), TKind::Shared(rc)) = (key, &body.kind) {
            self.inlined.insert(k, (rc.clone(), args));
        }
        Some(TExpr { span: call.span, ..body })
    }
}

/// A dimension whose exponents leave the range the checker keeps exact.
pub(super) fn exponent_overflow(span: Span, what: &str) -> Diagnostic {
    Diagnostic::error("E0209", span, format!("the dimension of this value has an exponent beyond ±{}", Dim::MAX_EXP))
        .with_label(format!("{what} is out of range"))
        .with_note("no physical quantity needs such powers; units are checked exactly up to this bound")
}

/// A plain `0` (dimensionless literal zero), which fits any dimension.
pub(super) fn is_zero_literal(e: &TExpr) -> bool {
    matches!(e.kind, TKind::Const(v) if v == 0.0) && e.ty == Ty::Num(Dim::ONE)
}

fn no_random(span: Span, name: &str) -> Diagnostic {
    Diagnostic::error("E0208", span, format!("`{name}` is random and not allowed here"))
        .with_label("random value")
        .with_note("random numbers may appear in equations and event updates, not in constants or conditions of a network")
}

pub(super) fn unknown_unit(u: &ast::Ident) -> Diagnostic {
    let mut d = Diagnostic::error("E0102", u.span, format!("unknown unit `{}`", u.name)).with_label("not a unit");
    let names = units::common_names();
    if let Some(n) = nearest(&u.name, names.iter().map(|s| s.as_str())) {
        d = d.with_help(format!("did you mean `{n}`?"));
    } else {
        d = d.with_note("a name written right after a number is read as its unit; to multiply, write `2 * x`");
    }
    d
}

/// Resolves a unit annotation (`mV`, `nS*mV`, `1/ms`) to its SI scale and dimension.
pub(super) fn resolve_unit(u: &ast::UnitExpr, diags: &mut Vec<Diagnostic>) -> Option<(f64, Dim)> {
    match u {
        ast::UnitExpr::One(_) => Some((1.0, Dim::ONE)),
        ast::UnitExpr::Name(id) => match units::lookup(&id.name) {
            Some(unit) => Some((unit.scale, unit.dim)),
            None => {
                diags.push(unknown_unit(id));
                None
            }
        },
        ast::UnitExpr::Mul(a, b, _) => {
            let x = resolve_unit(a, diags);
            let y = resolve_unit(b, diags);
            let ((sa, da), (sb, db)) = (x?, y?);
            unit_dim(u, da.checked_mul(db), diags).map(|d| (sa * sb, d))
        }
        ast::UnitExpr::Div(a, b, _) => {
            let x = resolve_unit(a, diags);
            let y = resolve_unit(b, diags);
            let ((sa, da), (sb, db)) = (x?, y?);
            unit_dim(u, da.checked_div(db), diags).map(|d| (sa / sb, d))
        }
        ast::UnitExpr::Pow(a, e, _) => {
            let (s, d) = resolve_unit(a, diags)?;
            unit_dim(u, d.checked_powi(i64::from(*e)), diags).map(|d| (s.powi(*e), d))
        }
    }
}

/// The dimension of unit `u`, or the error if its exponents overflowed.
fn unit_dim(u: &ast::UnitExpr, d: Option<Dim>, diags: &mut Vec<Diagnostic>) -> Option<Dim> {
    if d.is_none() {
        diags.push(exponent_overflow(u.span(), &crate::syntax::format::unit_to_string(u)));
    }
    d
}
