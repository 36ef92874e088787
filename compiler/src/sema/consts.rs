//! Constants the checker can see: a value that folds to NaN or infinity (`0/0`,
//! `1e308 * 1e308`), a division by zero, and a negative time as a divisor (a time
//! constant `tau = 0 ms` or `-5 ms`), with the model's param defaults or a population's
//! constant overrides in place of the params. A kernel would turn these into NaN or
//! silently wrong dynamics; refusing them here points at the text.

use super::{Model, SymId, SymKind, TExpr, TKind, Ty};
use crate::diag::Diagnostic;
use crate::span::Span;
use crate::syntax::ast::BinOp;
use crate::units::Dim;
use std::collections::HashMap;
use std::sync::Arc;

/// What a fold found wrong, at the node where it first happens.
pub(super) enum Problem {
    /// The value became NaN or infinite here.
    NonFinite(Span, f64),
    /// A divisor that is zero, or a negative time.
    Divisor(Span, f64, Dim),
}

/// Folds expressions with some symbols known (params, lets) and records the first
/// problem.
pub(super) struct Folder<'a> {
    model: &'a Model,
    /// Known symbol values; lets are folded on first use.
    known: HashMap<SymId, Option<f64>>,
    shared: HashMap<*const TExpr, Option<f64>>,
    pub problem: Option<Problem>,
}

impl<'a> Folder<'a> {
    /// A folder where the params in `set` have those values and the others their
    /// defaults, folded in order (a default may read earlier params). Problems found in
    /// the defaults are recorded too.
    pub fn with_params(model: &'a Model, set: &HashMap<SymId, f64>) -> Folder<'a> {
        let mut f = Folder { model, known: HashMap::new(), shared: HashMap::new(), problem: None };
        for (sid, s) in model.symbols.iter().enumerate() {
            if s.kind == SymKind::Param {
                let v = match set.get(&sid) {
                    Some(v) => Some(*v),
                    None => s.value.as_ref().and_then(|e| f.fold(e)),
                };
                f.known.insert(sid, v);
            }
        }
        f
    }

    fn sym(&mut self, sid: SymId) -> Option<f64> {
        if let Some(v) = self.known.get(&sid) {
            return *v;
        }
        let s = &self.model.symbols[sid];
        // Only lets are folded through: states, inputs and time vary.
        let v = match (s.kind, &s.value) {
            (SymKind::Let, Some(e)) => {
                self.known.insert(sid, None); // a guard; lets cannot be cyclic anyway
                self.fold(e)
            }
            _ => None,
        };
        self.known.insert(sid, v);
        v
    }

    /// The value of `e` if it is constant with the known symbols, recording the first
    /// problem. Only the branch an `if` with a known condition takes is looked into.
    pub fn fold(&mut self, e: &TExpr) -> Option<f64> {
        crate::deep(|| self.fold_at(e))
    }

    fn fold_at(&mut self, e: &TExpr) -> Option<f64> {
        let v = match &e.kind {
            TKind::Const(v) => return Some(*v),
            TKind::Sym(s) => return self.sym(*s),
            TKind::Shared(inner) => {
                let key = Arc::as_ptr(inner);
                if let Some(v) = self.shared.get(&key) {
                    return *v;
                }
                let v = self.fold(inner);
                self.shared.insert(key, v);
                return v;
            }
            TKind::If(c, a, b) => {
                return match self.fold(c) {
                    Some(c) if c != 0.0 => self.fold(a),
                    Some(_) => self.fold(b),
                    None => {
                        let (x, y) = (self.fold(a), self.fold(b));
                        x.filter(|x| Some(*x) == y)
                    }
                };
            }
            TKind::Neg(a) => -self.fold(a)?,
            TKind::Not(a) => f64::from(self.fold(a)? == 0.0),
            TKind::Binary(op, a, b) => {
                let (x, y) = (self.fold(a), self.fold(b));
                if *op == BinOp::Div {
                    self.check_divisor(b, y);
                }
                binary(*op, x?, y?)
            }
            TKind::Call(f, args) => {
                let vals: Vec<Option<f64>> = args.iter().map(|a| self.fold(a)).collect();
                let vals: Vec<f64> = vals.into_iter().collect::<Option<_>>()?;
                f.apply(&vals)?
            }
        };
        if !v.is_finite() && self.problem.is_none() {
            self.problem = Some(Problem::NonFinite(e.span, v));
        }
        Some(v)
    }

    fn check_divisor(&mut self, b: &TExpr, y: Option<f64>) {
        let Some(y) = y else { return };
        let Ty::Num(dim) = b.ty else { return };
        if self.problem.is_none() && (y == 0.0 || (y < 0.0 && dim == Dim::TIME)) {
            self.problem = Some(Problem::Divisor(b.span, y, dim));
        }
    }
}

/// A binary operator on constants (also `sema`'s own constant evaluation).
pub(crate) fn binary(op: BinOp, x: f64, y: f64) -> f64 {
    let t = f64::from;
    match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Pow => x.powf(y),
        BinOp::Lt => t(x < y),
        BinOp::Le => t(x <= y),
        BinOp::Gt => t(x > y),
        BinOp::Ge => t(x >= y),
        BinOp::Eq => t(x == y),
        BinOp::Ne => t(x != y),
        BinOp::And => t(x != 0.0 && y != 0.0),
        BinOp::Or => t(x != 0.0 || y != 0.0),
    }
}

/// Every expression of a model, each once, for a [`Folder`].
pub(super) fn fold_model(f: &mut Folder, m: &Model) {
    let exprs = m
        .symbols
        .iter()
        .filter(|s| s.kind != SymKind::Param)
        .filter_map(|s| s.value.as_ref())
        .chain(m.odes.iter().map(|(_, e)| e))
        .chain(m.spike.iter().map(|s| &s.condition))
        .chain(m.on_spike.iter().chain(&m.on_pre).chain(&m.on_post).map(|u| &u.value))
        .chain(m.refractory.iter().map(|r| &r.period))
        .chain(m.output.iter().map(|(_, e)| e));
    for e in exprs {
        if f.problem.is_some() {
            return;
        }
        f.fold(e);
    }
}

/// The diagnostic of a problem; `via` names what made it (a population's setting).
pub(super) fn problem_diagnostic(p: &Problem, via: Option<(Span, &str)>) -> Diagnostic {
    let (span, mut d) = match p {
        Problem::NonFinite(span, v) => (
            *span,
            Diagnostic::error("E0210", *span, format!("this value is {}", if v.is_nan() { "not a number (NaN)" } else { "infinite" }))
                .with_label("evaluates to a value that is not finite"),
        ),
        Problem::Divisor(span, v, dim) if *v == 0.0 => (
            *span,
            Diagnostic::error("E0210", *span, "division by zero").with_label(if *dim == Dim::TIME {
                "a time constant of zero".to_string()
            } else {
                "this is zero".to_string()
            }),
        ),
        Problem::Divisor(span, v, _) => (
            *span,
            Diagnostic::error("E0210", *span, "division by a negative time")
                .with_label(format!("this is {} ms", v * 1e3))
                .with_note("a time constant must be positive: a negative one makes a decay grow"),
        ),
    };
    match via {
        Some((at, text)) => {
            d.span = at;
            d.label = text.to_string();
            d.with_related(span, "used here")
        }
        None => d,
    }
}
