//! Symbolic differentiation on the IR, forward mode ([`jvp`]) and reverse mode ([`vjp`]).
//!
//! Derivatives are IR nodes built with the simplifying constructor, so structurally zero
//! derivatives come out as `Const(0)` ([`Jacobian::sparsity`]). Rules that are not the
//! textbook ones:
//! - `Heaviside(x)` has derivative `SurrogateGrad(x)` (same surrogate), never 0;
//! - `StopGradient`, comparisons, logic and random draws have derivative 0;
//! - `Select(c, a, b)` differentiates to `Select(c, da, db)`;
//! - `abs` uses sign +1 at 0; `min(a, b)` / `max(a, b)` follow the operand they return,
//!   `a` on ties (jax would split a tie half/half);
//! - `exprel'(x) = (exp(x) - exprel(x)) / x`, with its Taylor series for |x| < 1e-3 where
//!   that difference would cancel.
//!
//! The differentiation variables ("wrt" nodes, seeds) are independent variables: paths
//! from one of them through another are cut. They are usually leaves (`State(k)`,
//! `Input(k)`, `Param(k)`), but may be any node (e.g. the spike of the previous step).

use std::collections::{HashMap, HashSet};

use super::{Graph, NodeId, Op};

/// `∂n/∂(operand i) · t`, built in the graph. Used by both modes: the forward mode passes
/// the operand's tangent as `t`, the reverse mode the node's adjoint.
pub fn chain(g: &mut Graph, n: NodeId, i: usize, t: NodeId) -> NodeId {
    let zero = g.constant(0.0);
    if g.is_zero(t) {
        return zero;
    }
    let args = g.args(n).to_vec();
    let a = args.first().copied().unwrap_or(zero);
    let b = args.get(1).copied().unwrap_or(zero);
    use Op::*;
    match g.op(n) {
        Add => t,
        Sub => {
            if i == 0 {
                t
            } else {
                g.neg(t)
            }
        }
        Mul => g.mul(t, if i == 0 { b } else { a }),
        Div => {
            if i == 0 {
                g.div(t, b)
            } else {
                // d(a/b)/db = -(a/b)/b, reusing the node a/b.
                let nt = g.mul(n, t);
                let q = g.div(nt, b);
                g.neg(q)
            }
        }
        Neg => g.neg(t),
        Pow => {
            let p = if i == 0 {
                let one = g.constant(1.0);
                let bm1 = g.sub(b, one);
                let pw = g.pow(a, bm1);
                g.mul(b, pw)
            } else {
                let l = g.unary(Log, a);
                g.mul(n, l)
            };
            g.mul(t, p)
        }
        PowI(k) => {
            let kk = g.constant(f64::from(k));
            let pw = g.powi(a, k - 1);
            let p = g.mul(kk, pw);
            g.mul(t, p)
        }
        Exp => g.mul(t, n),
        Log => g.div(t, a),
        Sqrt => {
            let two = g.constant(2.0);
            let d = g.mul(two, n);
            g.div(t, d)
        }
        Tanh => {
            let one = g.constant(1.0);
            let sq = g.mul(n, n);
            let p = g.sub(one, sq);
            g.mul(t, p)
        }
        Sigmoid => {
            let one = g.constant(1.0);
            let om = g.sub(one, n);
            let p = g.mul(n, om);
            g.mul(t, p)
        }
        Abs => {
            let neg = g.binary(Lt, a, zero);
            let mt = g.neg(t);
            g.select(neg, mt, t)
        }
        Min | Max => {
            let first = g.binary(if g.op(n) == Min { Le } else { Ge }, a, b);
            if i == 0 { g.select(first, t, zero) } else { g.select(first, zero, t) }
        }
        Sin => {
            let c = g.unary(Cos, a);
            g.mul(t, c)
        }
        Cos => {
            let s = g.unary(Sin, a);
            let p = g.mul(t, s);
            g.neg(p)
        }
        Exprel => {
            let p = exprel_grad(g, a, n);
            g.mul(t, p)
        }
        Select => match i {
            1 => g.select(a, t, zero),
            2 => g.select(a, zero, t),
            _ => zero,
        },
        Heaviside(s) => {
            let sg = g.surrogate_grad(a, s);
            g.mul(t, sg)
        }
        SurrogateGrad(s) => {
            // Second derivative of the spike: differentiate the surrogate's body.
            let body = g.inline_surrogate(s, a);
            let one = g.constant(1.0);
            let d = jvp(g, &[body], &[(a, one)])[0];
            g.mul(t, d)
        }
        StopGradient | Lt | Le | Gt | Ge | Eq | Ne | And | Or | Not => zero,
        Const(_) | Param(_) | State(_) | Input(_) | Post(_) | Time | Dt | Weight | PreSpike | Rand(_) | Randn(_) => zero,
    }
}

/// `exprel'(x)` given `e = exprel(x)`.
fn exprel_grad(g: &mut Graph, x: NodeId, e: NodeId) -> NodeId {
    // Far from 0: (exp(x) - exprel(x)) / x.
    let ex = g.unary(Op::Exp, x);
    let diff = g.sub(ex, e);
    let far = g.div(diff, x);
    // Near 0: 1/2 + x/3 + x^2/8 + x^3/30 (Horner), error < 1e-14 for |x| < 1e-3.
    let mut acc = g.constant(1.0 / 30.0);
    for c in [1.0 / 8.0, 1.0 / 3.0, 0.5] {
        let m = g.mul(acc, x);
        let k = g.constant(c);
        acc = g.add(m, k);
    }
    let ax = g.unary(Op::Abs, x);
    let eps = g.constant(1e-3);
    let small = g.binary(Op::Lt, ax, eps);
    g.select(small, acc, far)
}

/// Forward mode: the directional derivatives of `outputs` when each seed node `s` moves
/// with tangent `ds` (`seeds = [(s, ds)]`). Seeds are independent variables (see module
/// docs); every other leaf has tangent 0.
pub fn jvp(g: &mut Graph, outputs: &[NodeId], seeds: &[(NodeId, NodeId)]) -> Vec<NodeId> {
    let seed: HashMap<NodeId, NodeId> = seeds.iter().copied().collect();
    let mut tan: HashMap<NodeId, NodeId> = HashMap::new();
    for n in g.ancestors(outputs) {
        if let Some(&s) = seed.get(&n) {
            if !g.is_zero(s) {
                tan.insert(n, s);
            }
            continue;
        }
        let args = g.args(n).to_vec();
        let mut acc: Option<NodeId> = None;
        for (i, a) in args.iter().enumerate() {
            let Some(&ta) = tan.get(a) else { continue };
            let term = chain(g, n, i, ta);
            acc = Some(match acc {
                None => term,
                Some(prev) => g.add(prev, term),
            });
        }
        if let Some(t) = acc.filter(|t| !g.is_zero(*t)) {
            tan.insert(n, t);
        }
    }
    let zero = g.constant(0.0);
    outputs.iter().map(|o| tan.get(o).copied().unwrap_or(zero)).collect()
}

/// d outputs / d wrt for one variable: [`jvp`] with tangent 1.
pub fn derivative(g: &mut Graph, outputs: &[NodeId], wrt: NodeId) -> Vec<NodeId> {
    let one = g.constant(1.0);
    jvp(g, outputs, &[(wrt, one)])
}

/// Reverse mode: the vector-Jacobian product `sum_i cotangents[i] * d outputs[i] / d wrt[j]`
/// for every `wrt[j]`.
pub fn vjp(g: &mut Graph, outputs: &[NodeId], cotangents: &[NodeId], wrt: &[NodeId]) -> Vec<NodeId> {
    assert_eq!(outputs.len(), cotangents.len(), "one cotangent per output");
    let cut: HashSet<NodeId> = wrt.iter().copied().collect();
    let mut adj: HashMap<NodeId, NodeId> = HashMap::new();
    for (&o, &c) in outputs.iter().zip(cotangents) {
        accumulate(g, &mut adj, o, c);
    }
    let order = g.ancestors(outputs);
    for &n in order.iter().rev() {
        if cut.contains(&n) {
            continue;
        }
        let Some(&an) = adj.get(&n) else { continue };
        let args = g.args(n).to_vec();
        for (i, a) in args.into_iter().enumerate() {
            let term = chain(g, n, i, an);
            accumulate(g, &mut adj, a, term);
        }
    }
    let zero = g.constant(0.0);
    wrt.iter().map(|w| adj.get(w).copied().unwrap_or(zero)).collect()
}

fn accumulate(g: &mut Graph, adj: &mut HashMap<NodeId, NodeId>, n: NodeId, term: NodeId) {
    if g.is_zero(term) {
        return;
    }
    let v = match adj.get(&n) {
        Some(&prev) => g.add(prev, term),
        None => term,
    };
    adj.insert(n, v);
}

/// A Jacobian of IR nodes, row-major: `entries[i * cols + j] = d outputs[i] / d wrt[j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Jacobian {
    pub rows: usize,
    pub cols: usize,
    pub entries: Vec<NodeId>,
}

impl Jacobian {
    pub fn get(&self, i: usize, j: usize) -> NodeId {
        self.entries[i * self.cols + j]
    }

    /// The entry is the constant 0, i.e. proven zero for every input.
    pub fn is_structural_zero(&self, g: &Graph, i: usize, j: usize) -> bool {
        g.is_zero(self.get(i, j))
    }

    /// The structural sparsity pattern: `true` where an entry may be non-zero.
    pub fn sparsity(&self, g: &Graph) -> Vec<Vec<bool>> {
        (0..self.rows).map(|i| (0..self.cols).map(|j| !self.is_structural_zero(g, i, j)).collect()).collect()
    }
}

/// The Jacobian of `outputs` with respect to `wrt`, one forward-mode sweep per column.
pub fn jacobian(g: &mut Graph, outputs: &[NodeId], wrt: &[NodeId]) -> Jacobian {
    let (one, zero) = (g.constant(1.0), g.constant(0.0));
    let mut cols = Vec::with_capacity(wrt.len());
    for j in 0..wrt.len() {
        let seeds: Vec<(NodeId, NodeId)> =
            wrt.iter().enumerate().map(|(k, &w)| (w, if k == j { one } else { zero })).collect();
        cols.push(jvp(g, outputs, &seeds));
    }
    let entries = (0..outputs.len()).flat_map(|i| cols.iter().map(move |c| c[i])).collect();
    Jacobian { rows: outputs.len(), cols: wrt.len(), entries }
}
