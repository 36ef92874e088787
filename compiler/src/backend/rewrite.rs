//! Rewrites that the CPU code generators (Cranelift's f32x4 / f64x2 loop and the
//! x86 one in AVX-512 or AVX2, [`x86`](super::x86)) both make while they lower a specialised step: the
//! same decisions in both, so that their kernels compute the same values to the bit.
//! Each one is exact or documented to be within 1.5 ulp, and f32-only where it is not
//! exact (f64 keeps the interpreter's operations).

use crate::ir::{Graph, NodeId, Op};

/// The step's graph, seen by a code generator of one precision.
#[derive(Clone, Copy)]
pub(crate) struct Rewrites<'a> {
    pub graph: &'a Graph,
    pub f32: bool,
}

/// Cephes `expf`: `ln 2` split in two (an exact product with small integers), and the
/// coefficients of the degree-7 polynomial of `exp(r)`, |r| <= ln2/2, highest first.
pub(crate) const EXP_LN2: (f64, f64) = (0.693_359_375, -2.121_944_4e-4);
pub(crate) const EXP_COEF: [f64; 6] = [1.987_569_15e-4, 1.398_199_950_7e-3, 8.333_451_907_3e-3, 4.166_579_589_4e-2, 1.666_666_545_9e-1, 5.000_000_120_1e-1];
/// The clamp of `exp`'s argument in f32, so that 2^n stays a normal float.
pub(crate) const EXP_RANGE: (f64, f64) = (-87.0, 88.0);

/// `1 / (k+1)!` for k = 0..=8: the Taylor coefficients of `exprel(x) = (exp(x) - 1) / x`
/// that the f32 kernels use where |x| < 0.5.
pub(crate) fn exprel_coef() -> [f64; 9] {
    let mut fact = 1.0;
    std::array::from_fn(|k| {
        fact *= (k + 1) as f64;
        1.0 / fact
    })
}

impl Rewrites<'_> {
    /// In f32 kernels, the reciprocal of a constant divisor when it is a normal f32 (so
    /// that `x * (1/c)` is within 1.5 ulp of `x / c`); `None` otherwise and in f64.
    pub fn reciprocal(&self, divisor: NodeId) -> Option<f64> {
        let Op::Const(c) = self.graph.node(divisor).op else { return None };
        let r = (1.0 / c) as f32;
        (self.f32 && (c as f32).is_normal() && r.is_normal()).then_some(f64::from(r))
    }

    /// `(x, k)` when node `id` is `x * k` for a constant `k` (either order, or `x / c`
    /// with `k` the reciprocal, f32 only: see `reciprocal`).
    fn scale(&self, id: NodeId) -> Option<(NodeId, f64)> {
        let g = self.graph;
        let konst = |n: NodeId| match g.op(n) {
            Op::Const(c) if (c as f32).is_normal() => Some(c),
            _ => None,
        };
        match (g.op(id), g.args(id)) {
            (Op::Mul, &[x, c]) if konst(c).is_some() => Some((x, konst(c)?)),
            (Op::Mul, &[c, x]) => Some((x, konst(c)?)),
            (Op::Div, &[x, c]) => Some((x, self.reciprocal(c)?)),
            _ => None,
        }
    }

    /// In f32 kernels, `(x, a * b)` when node `id` is `(x * a) * b` with constants `a`
    /// and `b` (or divisions by constants, see `scale`): one multiplication by the
    /// product, rounded once, instead of two (within 1.5 ulp of either). f64 keeps the
    /// interpreter's two.
    pub fn folded_scale(&self, id: NodeId) -> Option<(NodeId, f64)> {
        if !self.f32 {
            return None;
        }
        let (inner, b) = self.scale(id)?;
        let (x, a) = self.scale(inner)?;
        let k = a * b;
        (k as f32).is_normal().then_some((x, f64::from(k as f32)))
    }

    /// `(x, c)` when a spike's argument is `(x - c) * k` (either order) with constants
    /// `k >= 1` and `c`, or `(x - c) / d` with `0 < d <= 1` (a normalised threshold,
    /// `(v - V_th) / (V_th - V_reset)`): then `arg >= 0` exactly when `x >= c`, in either
    /// precision. A non-zero `x - c` keeps its sign through the scaling and cannot
    /// underflow to zero (|k| >= 1), nor be flushed to zero (|c| >= 2^-60 makes a
    /// non-zero difference at least 2^-84); a NaN or infinity compares alike both ways.
    pub fn threshold(&self, arg: NodeId) -> Option<(NodeId, f64)> {
        let g = self.graph;
        let f32_ = self.f32;
        // A constant as this kernel holds it: a normal number in its precision.
        let konst = |id: NodeId| match g.op(id) {
            Op::Const(c) if c.is_normal() && (!f32_ || (c as f32).is_normal()) => Some(c),
            _ => None,
        };
        let diff = match (g.op(arg), g.args(arg)) {
            (Op::Mul, &[u, v]) => match (konst(u), konst(v)) {
                (_, Some(k)) if k >= 1.0 => u,
                (Some(k), _) if k >= 1.0 => v,
                _ => return None,
            },
            (Op::Div, &[u, d]) => match konst(d) {
                Some(d) if d > 0.0 && d <= 1.0 => u,
                _ => return None,
            },
            _ => arg,
        };
        match (g.op(diff), g.args(diff)) {
            (Op::Sub, &[x, c]) => konst(c).filter(|c| c.abs() >= 2f64.powi(-60)).map(|c| (x, c)),
            _ => None,
        }
    }
}
