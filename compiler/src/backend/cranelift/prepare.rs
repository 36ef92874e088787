//! From a [`Step`] to the graph the code generator sees: uniform params and `dt` folded
//! in as constants, surrogates expanded, and the spike bound to the new state.

use std::collections::HashMap;

use super::JitError;
use crate::backend::{ParamSpec, check_specs};
use crate::discretise::Step;
use crate::ir::{Graph, NodeId, Op};

/// A step ready for code generation: every node of `graph` is live, and the only
/// leaves left are constants, `State`, `Input`, per-neuron `Param`, `Time` and random
/// draws.
pub(super) struct Prepared {
    pub graph: Graph,
    /// The new value of each state (layout order).
    pub next: Vec<NodeId>,
    /// The spike of the new state: the step's spike with its `State` leaves bound to
    /// `next`, which is what the interpreter kernel computes from the stored state.
    pub spike: Option<NodeId>,
    /// For each random slot: whether it holds a normal draw. Same rule as the
    /// interpreter kernel: a slot is normal when any `Randn(k)` of the step reads it, and
    /// `Rand(k)` / `Randn(k)` then read the same number.
    pub normal: Vec<bool>,
    /// For each param: its index among the per-neuron slices, if it is per-neuron.
    pub per_neuron: Vec<Option<usize>>,
}

impl Prepared {
    /// Whether the step needs a call per element (transcendental or random draw); such
    /// steps are compiled as a scalar loop. With `inline_exp` (f32 kernels), `exp`,
    /// `exprel` and `sigmoid` are generated inline and need no call.
    pub fn needs_calls(&self, inline_exp: bool) -> bool {
        self.graph.nodes().any(|(_, n)| {
            use Op::*;
            match n.op {
                Exp | Exprel | Sigmoid => !inline_exp,
                Log | Tanh | Sin | Cos | Pow | Rand(_) | Randn(_) => true,
                _ => false,
            }
        })
    }
}

pub(super) fn prepare(step: &Step, specs: &[ParamSpec], dt: f64) -> Result<Prepared, JitError> {
    check_specs(step, specs).map_err(JitError)?;
    if !(dt.is_finite() && dt > 0.0) {
        return Err(JitError(format!("dt = {dt} is not a positive finite number")));
    }
    let n_states = step.layout.states.len();
    let n_inputs = step.layout.inputs.len();
    if step.next.len() != n_states {
        return Err(JitError(format!("`{}`: {} next values for {} states", step.model.name, step.next.len(), n_states)));
    }
    let mut roots = step.next.clone();
    roots.extend(step.spike);
    let (mut g, roots) = step.graph.extract(&roots);

    let mut normal = vec![false; step.random_slots as usize];
    let leaves: Vec<(NodeId, Op)> = g.nodes().filter(|(_, n)| n.op.is_leaf()).map(|(id, n)| (id, n.op)).collect();
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    let name = &step.model.name;
    for (id, op) in leaves {
        match op {
            Op::Param(k) => match specs.get(k as usize) {
                Some(ParamSpec::Uniform(v)) => {
                    let c = g.constant(*v);
                    map.insert(id, c);
                }
                Some(ParamSpec::PerNeuron) => {}
                None => return Err(JitError(format!("`{name}` reads param {k}, which has no spec"))),
            },
            // dt is fixed per kernel, so `exp(-dt / tau)` and friends fold to constants.
            Op::Dt => {
                let c = g.constant(dt);
                map.insert(id, c);
            }
            // StepArgs have no slot for these: the reference kernel reads them as 0 (its
            // `Env` default), so a standalone synapse step runs the same here.
            Op::Weight | Op::PreSpike => {
                let c = g.constant(0.0);
                map.insert(id, c);
            }
            Op::Post(k) => {
                return Err(JitError(format!(
                    "`{name}` reads postsynaptic variable {k}; a population step has no slice for it (compose the synapse first)"
                )));
            }
            Op::State(k) if k as usize >= n_states => {
                return Err(JitError(format!("`{name}` reads state {k} of {n_states}")));
            }
            Op::Input(k) if k as usize >= n_inputs => {
                return Err(JitError(format!("`{name}` reads input {k} of {n_inputs}")));
            }
            Op::Rand(k) | Op::Randn(k) if k >= step.random_slots => {
                return Err(JitError(format!("`{name}` draws from random slot {k} of {}", step.random_slots)));
            }
            Op::Randn(k) => normal[k as usize] = true,
            _ => {}
        }
    }
    let roots = g.substitute(&roots, &map);
    // Only primitive ops from here on (SurrogateGrad has no forward use, but costs nothing).
    let roots = g.expand_surrogates(&roots);
    let (next, spike) = roots.split_at(n_states);
    let mut roots = next.to_vec();
    if let Some(&s) = spike.first() {
        let bind: HashMap<NodeId, NodeId> = (0..n_states).map(|k| (g.state(k as u32), next[k])).collect();
        roots.push(g.substitute(&[s], &bind)[0]);
    }
    let (graph, roots) = g.extract(&roots);
    let mut pn = 0;
    let per_neuron = specs
        .iter()
        .map(|s| match s {
            ParamSpec::PerNeuron => {
                pn += 1;
                Some(pn - 1)
            }
            ParamSpec::Uniform(_) => None,
        })
        .collect();
    Ok(Prepared {
        graph,
        next: roots[..n_states].to_vec(),
        spike: roots.get(n_states).copied(),
        normal,
        per_neuron,
    })
}
