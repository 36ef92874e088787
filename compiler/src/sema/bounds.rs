//! `trainable bounds (lo, hi)` on a param or a connection's weights: two constants of the
//! trained value's dimension, lo < hi (E0450), that contain its initial value (E0451,
//! where the checker knows the value: a constant or a uniform range; drawn or loaded
//! values are checked by the runtime when training starts).

use super::expr::{ExprCx, FnTable};
use super::{Init, Symbol};
use crate::diag::Diagnostic;
use crate::span::Span;
use crate::syntax::ast;
use crate::units::Dim;

/// The interval of `b` for a value of dimension `want` (`what` names the value in
/// messages), or `None` after reporting why not.
pub(super) fn fold_bounds(b: &ast::Bounds, want: Dim, fns: &FnTable, what: &str, diags: &mut Vec<Diagnostic>) -> Option<(f64, f64)> {
    let empty: Vec<Symbol> = Vec::new();
    let mut ecx = ExprCx::new(&empty, fns);
    ecx.allow_random = false;
    let mut end = |e: &ast::Expr, diags: &mut Vec<Diagnostic>| -> Option<f64> {
        let (t, d) = ecx.num(e, diags)?;
        let Some(v) = t.const_value().filter(|v| v.is_finite()) else {
            diags.push(Diagnostic::error("E0450", e.span, format!("the bounds of {what} must be finite constants")).with_label("not a finite constant"));
            return None;
        };
        // A bare 0 fits any dimension, as everywhere.
        if d != want && !(v == 0.0 && d.is_dimensionless()) {
            diags.push(Diagnostic::error("E0450", e.span, format!("a bound of {what} has the wrong dimension")).with_label(format!("expected {want}, found {d}")));
            return None;
        }
        Some(v)
    };
    let (lo, hi) = (end(&b.lo, diags), end(&b.hi, diags));
    let (lo, hi) = (lo?, hi?);
    if lo >= hi {
        diags.push(
            Diagnostic::error("E0450", b.span, format!("the bounds of {what} are empty or the wrong way round"))
                .with_label(format!("lower {lo} is not below upper {hi}"))
                .with_help("write `bounds (lo, hi)` with lo < hi"),
        );
        return None;
    }
    Some((lo, hi))
}

/// Refuses an initial value the checker knows (a constant, a uniform range) that lies
/// outside `bounds`: training would start from a value it can never return to.
pub(super) fn check_initial(init: &Init, (lo, hi): (f64, f64), at: Span, bounds_span: Span, what: &str, diags: &mut Vec<Diagnostic>) -> Option<()> {
    let (a, b) = match *init {
        Init::Const(v) => (v, v),
        Init::Uniform { low, high } => (low, high),
        Init::Normal { .. } | Init::Data(_) => return Some(()),
    };
    if a >= lo && b <= hi {
        return Some(());
    }
    let found = if a == b { format!("{a}") } else { format!("values in [{a}, {b}]") };
    let mut d = Diagnostic::error("E0451", at, format!("the initial value of {what} is outside its bounds"))
        .with_label(format!("{found}, outside [{lo}, {hi}] (SI units)"))
        .with_help("start inside the bounds, or widen them");
    if bounds_span != at {
        d = d.with_related(bounds_span, "the bounds");
    }
    diags.push(d);
    None
}
