//! Steps 1 and 2 of a discrete step: the spike of the previous step, read from the
//! stored state, and the events it triggers (`on spike`, then `on pre`).

use super::*;

/// The spike of the previous step and the nodes it is made of.
pub(super) struct Spike {
    /// `u`, the normalised spike argument.
    pub arg: Option<NodeId>,
    /// What the spike argument is divided by.
    pub scale: Option<NodeId>,
    /// `s = H(u)`; 0 while refractory.
    pub spike: Option<NodeId>,
    /// The spike the `on spike` updates are gated by (detached if the reset is).
    pub reset: Option<NodeId>,
}

impl StepCx {
    /// `s^{t-1} = H(u(h^{t-1}))`, read from the `State` leaves (a sigmoid in the smooth
    /// variant); none for a model without a spike condition.
    pub(super) fn spike(&mut self) -> Result<Spike, Diagnostic> {
        let Some(def) = &self.m.spike else {
            return Ok(Spike { arg: None, scale: None, spike: None, reset: None });
        };
        let g = &mut self.g;
        let mut lw = Lowerer::new(&self.m);
        let scale = match spike_scale_expr(&self.m) {
            Some(e) => Some(lw.expr(g, &e).map_err(lower_err)?),
            None => None,
        };
        let ls = lw.spike(g, def, scale).map_err(lower_err)?;
        let (mut s, mut rs) = (ls.spike, ls.reset_spike);
        if let Some(alpha) = self.smooth {
            let a = g.constant(alpha);
            let az = g.mul(a, ls.arg);
            s = g.unary(Op::Sigmoid, az);
            rs = if self.m.reset_detached { g.stop_gradient(s) } else { s };
        }
        let (s, rs) = self.gate_refractory(s, rs);
        Ok(Spike { arg: Some(ls.arg), scale, spike: Some(s), reset: Some(rs) })
    }

    /// What the neuron sends, from the `State` leaves: its `output` value times the
    /// spike `s` (a graded event, zero where it does not spike), the value alone for a
    /// neuron without a spike condition (a rate), else the spike. Its derivative by the
    /// states is then the "ds/dh" of every learning rule.
    pub(super) fn sent(&mut self, spike: Option<NodeId>) -> Result<Option<NodeId>, Diagnostic> {
        let Some((_, e)) = self.m.output.as_ref().filter(|_| self.m.kind == crate::syntax::ast::ModelKind::Neuron) else {
            return Ok(spike);
        };
        let value = lower_at(&self.m, &mut self.g, &self.leaves, e)?;
        Ok(Some(match spike {
            Some(s) => self.g.mul(value, s),
            None => value,
        }))
    }

    /// The `on spike` updates, gated by the spike `reset_spike`.
    pub(super) fn on_spike(&mut self, cur: &mut [NodeId], reset_spike: Option<NodeId>) -> Result<(), Diagnostic> {
        let Some(s) = reset_spike else { return Ok(()) };
        for u in &self.m.on_spike {
            let k = self.state_index(u.target).expect("update of a state");
            let g = &mut self.g;
            let value = lower_at(&self.m, g, cur, &u.value)?;
            cur[k] = if self.smooth.is_some() {
                let new = ir::lower::apply_update(g, cur[k], u.op, value);
                let jump = g.sub(new, cur[k]);
                let t = g.mul(s, jump);
                g.add(cur[k], t)
            } else {
                gated_update(g, cur[k], u.op, value, s)
            };
        }
        Ok(())
    }

    /// `on pre`: in a standalone synapse model, gated by its `pre` event; in a composed
    /// population, applied every step with the summed input (0 when nothing arrived).
    pub(super) fn on_pre(&mut self, cur: &mut [NodeId]) -> Result<(), Diagnostic> {
        let pre_gate = (self.m.kind == crate::syntax::ast::ModelKind::Synapse).then(|| self.g.leaf(Op::PreSpike));
        // A plastic synapse's weight updates run per connection (`net::plastic`), not here.
        for u in self.m.on_pre.iter().filter(|u| self.m.symbols[u.target].kind == crate::sema::SymKind::State) {
            let k = self.state_index(u.target).expect("update of a state");
            let g = &mut self.g;
            let value = lower_at(&self.m, g, cur, &u.value)?;
            cur[k] = match pre_gate {
                Some(pre) => gated_update(g, cur[k], u.op, value, pre),
                None => ir::lower::apply_update(g, cur[k], u.op, value),
            };
        }
        Ok(())
    }
}

/// `cur op= value`, applied only where the spike `s` is 1, keeping the forward value
/// exact and the gradient through `s`: additive updates as `cur ± s * value` (the golden
/// form `v - theta * s`), others as `select(s, new, cur) + (s - sg(s)) * (new - cur)`
/// whose second term is exactly 0 forward and carries `d s` backward.
fn gated_update(g: &mut Graph, cur: NodeId, op: UpdateOp, value: NodeId, s: NodeId) -> NodeId {
    match op {
        UpdateOp::Add => {
            let t = g.mul(s, value);
            g.add(cur, t)
        }
        UpdateOp::Sub => {
            let t = g.mul(s, value);
            g.sub(cur, t)
        }
        _ => {
            let new = ir::lower::apply_update(g, cur, op, value);
            let fwd = g.select(s, new, cur);
            let stop = g.stop_gradient(s);
            let ds = g.sub(s, stop);
            let jump = g.sub(new, cur);
            let st = g.mul(ds, jump);
            g.add(fwd, st)
        }
    }
}

/// The normaliser of the spike argument: how far the reset moves the compared state
/// (`v -= X` gives X; `v = v_reset` gives `threshold - v_reset`), so that
/// u = (v - v_th) / (v_th - v_reset) as braintrace/brainpy normalise it.
fn spike_scale_expr(m: &Model) -> Option<crate::sema::TExpr> {
    let def = m.spike.as_ref()?;
    let TKind::Binary(op, l, r) = &def.condition.peel().kind else { return None };
    let (hi, lo) = match op {
        BinOp::Gt | BinOp::Ge => (l, r),
        BinOp::Lt | BinOp::Le => (r, l),
        _ => return None,
    };
    let TKind::Sym(v) = hi.peel().kind else { return None };
    let u = m.on_spike.iter().find(|u| u.target == v)?;
    match u.op {
        UpdateOp::Sub => Some(u.value.clone()),
        UpdateOp::Set => {
            // threshold - reset value, where the threshold is the comparison's other side
            // with states at rest (their declared initial values are not needed: use the
            // constant part only if the threshold reads no state).
            let mut reads_state = false;
            lo.visit_syms(&mut |s| reads_state |= m.symbols[s].kind == SymKind::State);
            if reads_state {
                return None;
            }
            Some(crate::sema::TExpr {
                kind: TKind::Binary(BinOp::Sub, Box::new((**lo).clone()), Box::new(u.value.clone())),
                ty: lo.ty,
                span: def.span,
            })
        }
        _ => None,
    }
}
