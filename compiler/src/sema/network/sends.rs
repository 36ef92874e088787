//! What a population sends through its projections: its spikes (0 or 1), or the value
//! its model declares with `output NAME = EXPR` - a graded event (`EXPR * spike`, for a
//! model with `spike when`) or a rate (`EXPR` every step, for a model without). The
//! weights of a projection from it convert the sent value's unit into the port's.

use super::*;

impl NetCx<'_, '_> {
    /// The declared sent value of source `from` and its dimension; `None` for an input,
    /// a `Linear` readout, or a model that sends bare spikes.
    pub(super) fn sent_value(&self, from: Source) -> Option<(String, Dim)> {
        let Source::Pop(p) = from else { return None };
        let PopModel::Model(mid) = self.pops[p].model else { return None };
        let (name, e) = self.program.models[mid].output.as_ref()?;
        match e.ty {
            Ty::Num(d) => Some((name.clone(), d)),
            Ty::Bool => None,
        }
    }

    /// The dimension the weights of connection `c` take from a source sending a value of
    /// dimension `sent` into a port of dimension `port_dim`. A synapse (`via`) solves its
    /// weights for spikes (`w * pre` with `pre` a pure number), so only a dimensionless
    /// sent value may drive one (E0430).
    pub(super) fn weight_dim_for_sent(&mut self, c: &ast::Connect, sent: (String, Dim), port_dim: Dim) -> Option<Dim> {
        let (name, dim) = sent;
        if dim == Dim::ONE {
            return Some(port_dim);
        }
        if let Some(sc) = c.clauses.iter().find(|sc| matches!(sc.clause, ConnClause::Via { .. })) {
            self.diags.push(
                Diagnostic::error("E0430", sc.span, format!("`{}` sends `{name}`, which has dimension {dim}: a synapse cannot take it", c.from.pop.name))
                    .with_label("a synapse's weights are solved for dimensionless events")
                    .with_related(c.from.span, format!("sends a value of dimension {dim}"))
                    .with_help(format!("connect without `via` (the weights then convert {dim} into the port's dimension), or send a dimensionless value")),
            );
            return None;
        }
        Some(port_dim.div(dim))
    }
}
