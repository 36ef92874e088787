//! Network lowering: which states each population carries and how projections feed it.
//!
//! A population's *hidden group* is its neuron's states plus the states of the synapses
//! that drive it. Linear synapses of the same model and settings into the same port are
//! merged: their states are summed per target neuron (Brian2's "summed variables",
//! BrainPy's merged synapses), so an ALIF layer fed through `ExpCurrent` from an input
//! and from itself has K = 3 states (`v`, `a`, `g`), as in the BrainScale experiments.
//!
//! Timing: populations are evaluated in declaration order. A projection from a
//! population declared earlier reads that population's spikes of the same step (s^t);
//! a recurrent projection, or one from a population declared later, reads s^{t-1}.
//! External inputs are always read at the current step (x^t).

mod group;
mod plastic;
mod presyn;
pub use group::{GroupModel, compose};
pub use plastic::{Plastic, Rule, Slot, is_plastic, plastic, postsynaptic_states};
pub use presyn::{PreStage, is_gated, pre_stage, presynaptic_states};

use crate::sema::{Init, ModelId, NetworkDef, PopModel, Program, Source, SymId};

/// A set of projections whose synapse states are merged per target neuron.
#[derive(Clone, Debug, PartialEq)]
pub struct SynGroup {
    pub synapse: ModelId,
    pub settings: Vec<(SymId, Init)>,
    /// The port of the target neuron the synapse's `output` adds to.
    pub port: Option<SymId>,
    /// Indices into `NetworkDef::projections`.
    pub projections: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PopPlan {
    pub pop: usize,
    /// Synapse groups with state or an `output` expression, in first-use order.
    pub syn_groups: Vec<SynGroup>,
    /// Projections without a synapse model: their `x W` is added to the port directly.
    pub direct: Vec<usize>,
}

/// When a projection's presynaptic values are read, relative to the target's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTime {
    /// x^t of an input, or s^t of a population evaluated earlier in the step.
    Current,
    /// s^{t-1}: recurrent, or from a population evaluated later.
    Previous,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetPlan {
    pub pops: Vec<PopPlan>,
    /// For each projection, when its source is read.
    pub read_time: Vec<ReadTime>,
}

impl NetPlan {
    /// Number of hidden states per neuron of population `p` (neuron + merged synapses).
    pub fn group_size(&self, program: &Program, net: &NetworkDef, p: usize) -> usize {
        let neuron = match net.populations[p].model {
            PopModel::Model(m) => program.models[m].states().count(),
            PopModel::Linear => 0,
        };
        neuron
            + self.pops[p]
                .syn_groups
                .iter()
                .map(|g| program.models[g.synapse].states().count())
                .sum::<usize>()
    }
}

/// Plans a checked network.
pub fn plan(program: &Program, net: &NetworkDef) -> NetPlan {
    let mut pops: Vec<PopPlan> =
        (0..net.populations.len()).map(|pop| PopPlan { pop, syn_groups: Vec::new(), direct: Vec::new() }).collect();
    let mut read_time = Vec::with_capacity(net.projections.len());
    for (i, proj) in net.projections.iter().enumerate() {
        read_time.push(match proj.from {
            Source::Input(_) => ReadTime::Current,
            Source::Pop(src) if src < proj.to => ReadTime::Current,
            Source::Pop(_) => ReadTime::Previous,
        });
        let plan = &mut pops[proj.to];
        match &proj.synapse {
            None => plan.direct.push(i),
            Some((syn, settings)) => {
                // A plastic synapse's weights and traces belong to its projection.
                let mergeable = !program.models[*syn].per_synapse && !plastic::is_plastic(&program.models[*syn]);
                let existing = plan.syn_groups.iter_mut().find(|g| {
                    mergeable && g.synapse == *syn && g.port == proj.port && same_settings(&g.settings, settings)
                });
                match existing {
                    Some(g) => g.projections.push(i),
                    None => plan.syn_groups.push(SynGroup {
                        synapse: *syn,
                        settings: settings.clone(),
                        port: proj.port,
                        projections: vec![i],
                    }),
                }
            }
        }
    }
    NetPlan { pops, read_time }
}

fn same_settings(a: &[(SymId, Init)], b: &[(SymId, Init)]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceMap;
    use crate::sema::check_source;

    #[test]
    fn merges_same_synapses_and_orders_reads() {
        let text = r#"
import "stdlib/alif.snn"
import "stdlib/synapses.snn"
import "stdlib/readout.snn"
network n {
    input x: 10
    layer rec = ALIF[20]
    readout out = LeakyReadout[2]
    connect x -> rec.I via ExpCurrent dense
    connect rec -> rec.I via ExpCurrent dense
    connect rec -> rec.I via ExpCurrent { tau = 10 ms } dense as slow
    connect rec -> out dense
    connect out -> rec.I dense as feedback
}"#;
        let mut sources = SourceMap::new();
        let (program, diags) = check_source("t.snn", text, &mut sources);
        assert!(diags.is_empty(), "{}", crate::diag::render_all(&diags, &sources));
        let net = &program.networks[0];
        let plan = plan(&program, net);
        let rec = &plan.pops[0];
        assert_eq!(rec.syn_groups.len(), 2, "5 ms synapses merged, the 10 ms one apart");
        assert_eq!(rec.syn_groups[0].projections, vec![0, 1]);
        assert_eq!(rec.syn_groups[1].projections, vec![2]);
        assert_eq!(rec.direct, vec![4]);
        assert_eq!(plan.group_size(&program, net, 0), 2 + 1 + 1);
        assert_eq!(
            plan.read_time,
            vec![ReadTime::Current, ReadTime::Previous, ReadTime::Previous, ReadTime::Current, ReadTime::Previous]
        );
    }
}
