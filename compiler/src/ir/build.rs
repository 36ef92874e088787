//! The simplifying node constructor and typed helpers (`g.add(a, b)`, `g.exp(x)`, ...).
//!
//! Every rewrite here must keep results bit-exact with evaluating the unsimplified
//! expression, so that the reference interpreter, the backends and the reference models
//! agree to the last bit. Rewrites such as `a / c -> a * (1/c)` or reassociation are
//! therefore never done. The exceptions, all documented at the rule:
//! - `x * 0 -> 0`, `x - x -> 0`, `0 / x -> 0` assume x is finite (and non-zero for the
//!   division): an infinite or NaN x would give NaN. They are what makes structural
//!   zeros of derivatives appear as `Const(0)`, and a model producing inf/NaN is broken
//!   anyway;
//! - `x + 0 -> x` and `0 - x -> -x` may change the sign of a zero result (-0 vs +0),
//!   which only matters for a later division by that zero.

use super::interp;
use super::{Graph, NodeId, Op, SurrogateId};

impl Graph {
    /// Adds `op(args)` after constant folding and algebraic simplification; returns an
    /// existing node when an equal one exists (hash-consing).
    pub fn add_node(&mut self, op: Op, mut args: Vec<NodeId>) -> NodeId {
        if let Some(id) = self.fold(op, &args) {
            return id;
        }
        if let Some(id) = self.simplify(op, &args) {
            return id;
        }
        // Canonical operand order for commutative ops, so `a+b` and `b+a` share a node.
        if op.is_commutative() && args[1] < args[0] {
            args.swap(0, 1);
        }
        self.intern(op, args)
    }

    /// Constant folding with the interpreter's own arithmetic.
    fn fold(&mut self, op: Op, args: &[NodeId]) -> Option<NodeId> {
        if op.is_leaf() {
            return None;
        }
        let vals: Option<Vec<f64>> = args.iter().map(|&a| self.const_value(a)).collect();
        let vals = vals?;
        let v = match op {
            Op::SurrogateGrad(s) => {
                let def = self.surrogate(s);
                interp::eval_surrogate(def, vals[0]).ok()?
            }
            _ => interp::apply(op, &vals)?,
        };
        Some(self.constant(v))
    }

    /// Algebraic rewrites of `op(a)`, one method per operation.
    fn simplify(&mut self, op: Op, a: &[NodeId]) -> Option<NodeId> {
        match op {
            Op::Add => self.simplify_add(a),
            Op::Sub => self.simplify_sub(a),
            Op::Mul => self.simplify_mul(a),
            Op::Div => self.simplify_div(a),
            Op::Neg => self.neg_of(a[0]),
            Op::Pow => self.simplify_pow(a),
            Op::PowI(0) => Some(self.constant(1.0)),
            Op::PowI(1) => Some(a[0]),
            Op::Abs => match self.op(a[0]) {
                Op::Abs => Some(a[0]),
                Op::Neg => {
                    let x = self.args(a[0])[0];
                    Some(self.add_node(Op::Abs, vec![x]))
                }
                _ => None,
            },
            Op::Min | Op::Max if a[0] == a[1] => Some(a[0]),
            Op::Select => self.simplify_select(a),
            Op::Not => match self.op(a[0]) {
                Op::Not if self.op(self.args(a[0])[0]).is_boolean() => Some(self.args(a[0])[0]),
                _ => None,
            },
            Op::And | Op::Or => self.simplify_logic(op, a),
            // Constants are folded above; a detached leaf keeps its node, since a leaf
            // may be a differentiation variable.
            Op::StopGradient if self.op(a[0]) == Op::StopGradient => Some(a[0]),
            _ => None,
        }
    }

    /// `x` when `id` is `-x`.
    fn neg_of(&self, id: NodeId) -> Option<NodeId> {
        match self.op(id) {
            Op::Neg => Some(self.args(id)[0]),
            _ => None,
        }
    }

    fn simplify_add(&mut self, a: &[NodeId]) -> Option<NodeId> {
        // x + 0 -> x (sign of a zero result may change, see module docs).
        if self.const_value(a[1]) == Some(0.0) {
            return Some(a[0]);
        }
        if self.const_value(a[0]) == Some(0.0) {
            return Some(a[1]);
        }
        // x + (-y) == x - y exactly in IEEE arithmetic.
        if let Some(y) = self.neg_of(a[1]) {
            return Some(self.add_node(Op::Sub, vec![a[0], y]));
        }
        if let Some(y) = self.neg_of(a[0]) {
            return Some(self.add_node(Op::Sub, vec![a[1], y]));
        }
        // select(c, x, 0) + select(c, 0, y) -> select(c, x, y): each branch adds a
        // zero, so this is exact (forward-mode derivatives of `if` produce it).
        self.merge_selects(a[0], a[1])
    }

    fn simplify_sub(&mut self, a: &[NodeId]) -> Option<NodeId> {
        if self.const_value(a[1]) == Some(0.0) {
            return Some(a[0]);
        }
        if self.const_value(a[0]) == Some(0.0) {
            return Some(self.add_node(Op::Neg, vec![a[1]]));
        }
        // x - x -> 0 assumes x finite.
        if a[0] == a[1] {
            return Some(self.constant(0.0));
        }
        let y = self.neg_of(a[1])?;
        Some(self.add_node(Op::Add, vec![a[0], y]))
    }

    fn simplify_mul(&mut self, a: &[NodeId]) -> Option<NodeId> {
        for (i, j) in [(0, 1), (1, 0)] {
            match self.const_value(a[i]) {
                Some(1.0) => return Some(a[j]),
                // x * 0 -> 0 assumes x finite.
                Some(0.0) => return Some(self.constant(0.0)),
                Some(-1.0) => return Some(self.add_node(Op::Neg, vec![a[j]])),
                _ => {}
            }
        }
        // Negation commutes with rounding: pull it out so it can cancel.
        match (self.neg_of(a[0]), self.neg_of(a[1])) {
            (Some(x), Some(y)) => return Some(self.add_node(Op::Mul, vec![x, y])),
            (Some(x), None) => {
                let m = self.add_node(Op::Mul, vec![x, a[1]]);
                return Some(self.add_node(Op::Neg, vec![m]));
            }
            (None, Some(y)) => {
                let m = self.add_node(Op::Mul, vec![a[0], y]);
                return Some(self.add_node(Op::Neg, vec![m]));
            }
            (None, None) => {}
        }
        // x * select(c, k1, k2) with k in {-1, 0, 1} -> select(c, x*k1, x*k2).
        for (i, j) in [(0, 1), (1, 0)] {
            if let Some(id) = self.mul_into_select(a[i], a[j]) {
                return Some(id);
            }
        }
        None
    }

    fn simplify_div(&mut self, a: &[NodeId]) -> Option<NodeId> {
        if self.const_value(a[1]) == Some(1.0) {
            return Some(a[0]);
        }
        if self.const_value(a[1]) == Some(-1.0) {
            return Some(self.add_node(Op::Neg, vec![a[0]]));
        }
        // 0 / x -> 0 assumes x finite and non-zero.
        if self.const_value(a[0]) == Some(0.0) {
            return Some(self.constant(0.0));
        }
        match (self.neg_of(a[0]), self.neg_of(a[1])) {
            (Some(x), Some(y)) => Some(self.add_node(Op::Div, vec![x, y])),
            (Some(x), None) => {
                let d = self.add_node(Op::Div, vec![x, a[1]]);
                Some(self.add_node(Op::Neg, vec![d]))
            }
            (None, Some(y)) => {
                let d = self.add_node(Op::Div, vec![a[0], y]);
                Some(self.add_node(Op::Neg, vec![d]))
            }
            (None, None) => None,
        }
    }

    fn simplify_pow(&mut self, a: &[NodeId]) -> Option<NodeId> {
        // powf(x, 1) == x, powf(x, 0) == 1 and powf(1, y) == 1 for every x, y.
        if self.const_value(a[1]) == Some(1.0) {
            return Some(a[0]);
        }
        if self.const_value(a[1]) == Some(0.0) || self.const_value(a[0]) == Some(1.0) {
            return Some(self.constant(1.0));
        }
        None
    }

    fn simplify_select(&mut self, a: &[NodeId]) -> Option<NodeId> {
        if let Some(v) = self.const_value(a[0]) {
            return Some(if v != 0.0 { a[1] } else { a[2] });
        }
        if a[1] == a[2] {
            return Some(a[1]);
        }
        if let Op::Not = self.op(a[0]) {
            let inner = self.args(a[0])[0];
            return Some(self.add_node(Op::Select, vec![inner, a[2], a[1]]));
        }
        None
    }

    /// `and` / `or` with a constant operand, or of a boolean with itself.
    fn simplify_logic(&mut self, op: Op, a: &[NodeId]) -> Option<NodeId> {
        let absorbing = if op == Op::And { 0.0 } else { 1.0 };
        for (i, j) in [(0, 1), (1, 0)] {
            match self.const_value(a[i]) {
                Some(v) if (v != 0.0) == (absorbing != 0.0) => return Some(self.constant(absorbing)),
                // The neutral constant: the other operand, if it is already 0/1.
                Some(_) if self.op(a[j]).is_boolean() => return Some(a[j]),
                _ => {}
            }
        }
        if a[0] == a[1] && self.op(a[0]).is_boolean() {
            return Some(a[0]);
        }
        None
    }

    /// `select(c, x1, y1) + select(c, x2, y2)` where one addend of each branch is zero.
    fn merge_selects(&mut self, p: NodeId, q: NodeId) -> Option<NodeId> {
        if self.op(p) != Op::Select || self.op(q) != Op::Select {
            return None;
        }
        let (pa, qa) = (self.args(p).to_vec(), self.args(q).to_vec());
        if pa[0] != qa[0] {
            return None;
        }
        let pick = |g: &Graph, x: NodeId, y: NodeId| {
            if g.is_zero(y) {
                Some(x)
            } else if g.is_zero(x) {
                Some(y)
            } else {
                None
            }
        };
        let t = pick(self, pa[1], qa[1])?;
        let f = pick(self, pa[2], qa[2])?;
        Some(self.add_node(Op::Select, vec![pa[0], t, f]))
    }

    /// `x * select(c, k1, k2)` with constant k1, k2 in {-1, 0, 1}: a select of x, -x, 0.
    fn mul_into_select(&mut self, x: NodeId, s: NodeId) -> Option<NodeId> {
        if self.op(s) != Op::Select {
            return None;
        }
        let sa = self.args(s).to_vec();
        let k1 = self.const_value(sa[1])?;
        let k2 = self.const_value(sa[2])?;
        let unit = |k: f64| k == 0.0 || k == 1.0 || k == -1.0;
        if !unit(k1) || !unit(k2) {
            return None;
        }
        let t = self.mul(x, sa[1]);
        let f = self.mul(x, sa[2]);
        Some(self.add_node(Op::Select, vec![sa[0], t, f]))
    }

    // ------------------------------------------------------------ typed helpers

    pub fn constant(&mut self, v: f64) -> NodeId {
        self.intern(Op::Const(v), vec![])
    }
    pub fn param(&mut self, k: u32) -> NodeId {
        self.intern(Op::Param(k), vec![])
    }
    pub fn state(&mut self, k: u32) -> NodeId {
        self.intern(Op::State(k), vec![])
    }
    pub fn input(&mut self, k: u32) -> NodeId {
        self.intern(Op::Input(k), vec![])
    }
    pub fn leaf(&mut self, op: Op) -> NodeId {
        assert!(op.is_leaf(), "`{}` is not a leaf", op.name());
        self.intern(op, vec![])
    }
    pub fn add(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.add_node(Op::Add, vec![a, b])
    }
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.add_node(Op::Sub, vec![a, b])
    }
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.add_node(Op::Mul, vec![a, b])
    }
    pub fn div(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.add_node(Op::Div, vec![a, b])
    }
    pub fn neg(&mut self, a: NodeId) -> NodeId {
        self.add_node(Op::Neg, vec![a])
    }
    pub fn pow(&mut self, a: NodeId, b: NodeId) -> NodeId {
        self.add_node(Op::Pow, vec![a, b])
    }
    pub fn powi(&mut self, a: NodeId, n: i32) -> NodeId {
        self.add_node(Op::PowI(n), vec![a])
    }
    /// A one-operand op (`Exp`, `Log`, ..., `StopGradient`).
    pub fn unary(&mut self, op: Op, a: NodeId) -> NodeId {
        self.add_node(op, vec![a])
    }
    /// A two-operand op (arithmetic, `Min`/`Max`, comparisons, `And`/`Or`).
    pub fn binary(&mut self, op: Op, a: NodeId, b: NodeId) -> NodeId {
        self.add_node(op, vec![a, b])
    }
    pub fn select(&mut self, c: NodeId, a: NodeId, b: NodeId) -> NodeId {
        self.add_node(Op::Select, vec![c, a, b])
    }
    pub fn heaviside(&mut self, x: NodeId, s: SurrogateId) -> NodeId {
        self.add_node(Op::Heaviside(s), vec![x])
    }
    pub fn surrogate_grad(&mut self, x: NodeId, s: SurrogateId) -> NodeId {
        self.add_node(Op::SurrogateGrad(s), vec![x])
    }
    pub fn stop_gradient(&mut self, x: NodeId) -> NodeId {
        self.add_node(Op::StopGradient, vec![x])
    }
    /// The sum of the terms (0 for none), added left to right.
    pub fn sum(&mut self, terms: &[NodeId]) -> NodeId {
        let zero = self.constant(0.0);
        terms.iter().fold(zero, |acc, &t| self.add(acc, t))
    }
}
