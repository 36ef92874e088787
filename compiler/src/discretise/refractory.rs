//! Refractoriness in a discrete step: a counter state (time left) restarted by each
//! spike; while it runs, the neuron does not spike and its clamped states hold.

use super::*;

/// Appends the refractory counter `_refractory` (time left, in seconds) to the model's
/// states, if the model is refractory; returns its symbol.
pub(super) fn add_counter(m: &mut Model) -> Option<SymId> {
    let span = m.refractory.as_ref()?.span;
    m.symbols.push(Symbol {
        name: "_refractory".into(),
        kind: SymKind::State,
        dim: Dim::TIME,
        value: None,
        trainable: false,
        bounds: None,
        span,
    });
    Some(m.symbols.len() - 1)
}

impl StepCx {
    /// The spike `s` and reset spike `rs`, zero in a refractory step.
    pub(super) fn gate_refractory(&mut self, s: NodeId, rs: NodeId) -> (NodeId, NodeId) {
        let Some(r) = self.ref_sym.and_then(|sym| self.state_index(sym)) else { return (s, rs) };
        let g = &mut self.g;
        // No spike in a refractory step: the stored counter is > -dt/2 exactly then.
        let half = g.constant(-0.5);
        let lim = g.mul(half, self.dt);
        let free = g.binary(Op::Le, self.leaves[r], lim);
        (g.mul(s, free), g.mul(rs, free))
    }

    /// A spike restarts the counter (after the `on spike` updates); returns whether
    /// the neuron is refractory in this step.
    pub(super) fn restart_refractory(&mut self, cur: &mut [NodeId], spike: Option<NodeId>) -> Result<Option<NodeId>, Diagnostic> {
        let (Some(r), Some(rsym)) = (&self.m.refractory, self.ref_sym) else { return Ok(None) };
        let k = self.state_index(rsym).expect("refractory state");
        let g = &mut self.g;
        let period = lower_at(&self.m, g, cur, &r.period)?;
        let s = spike.expect("a refractory neuron spikes (checked)");
        cur[k] = g.select(s, period, cur[k]);
        let half = g.constant(0.5);
        let lim = g.mul(half, self.dt);
        Ok(Some(g.binary(Op::Gt, cur[k], lim)))
    }

    /// Refractoriness: clamped states hold their post-event value; the counter runs down.
    pub(super) fn hold_refractory(&mut self, cur: &[NodeId], end: &mut [NodeId], refractory_now: Option<NodeId>) {
        let (Some(r), Some(rsym), Some(is_ref)) = (&self.m.refractory, self.ref_sym, refractory_now) else { return };
        for &c in &r.clamp {
            if let Some(k) = self.state_index(c) {
                end[k] = self.g.select(is_ref, cur[k], end[k]);
            }
        }
        let k = self.state_index(rsym).expect("refractory state");
        let left = self.g.sub(cur[k], self.dt);
        let floor = self.g.neg(self.dt);
        end[k] = self.g.binary(Op::Max, left, floor);
    }
}
