//! Specialisation, shared by every code-generating backend: a [`Step`] and the specs of
//! its params become the graph a code generator sees.
//!
//! - checked once, here, with a typed error: the step has a `dt`, one spec per param,
//!   and every leaf it reads has a slot ([`check`]);
//! - uniform params and `dt` folded in as constants, so `exp(-dt / tau)` and friends
//!   become numbers; synapse leaves without a slot (`w`, the presynaptic event) read 0,
//!   as in the reference interpreter ([`fold_leaves`]);
//! - surrogates expanded into primitive ops;
//! - for a step kernel, the spike bound to the new state ([`specialise_step`]).
//!
//! The Cranelift and PTX backends both start from here (naga's `proc/` plays this part
//! before its back ends); the interpreter runs the unfolded graph but makes the same
//! [`check`], so all three accept and refuse the same steps.

use std::collections::HashMap;
use std::fmt;

use super::ParamSpec;
use crate::discretise::Step;
use crate::ir::{Graph, NodeId, Op};

/// Why a step cannot be turned into a kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum SpecialiseError {
    /// The step was never given a time step (a symbolic step from `discretise`).
    NoDt { model: String },
    /// The step's dt is zero, negative or not finite.
    BadDt { model: String, dt: f64 },
    /// The number of param specs differs from the step's params.
    SpecCount { model: String, specs: usize, params: usize },
    /// The number of next values differs from the step's states.
    NextCount { model: String, next: usize, states: usize },
    /// A leaf reads a slot the step does not have.
    Leaf { model: String, what: LeafError },
}

/// The leaf of a [`SpecialiseError::Leaf`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafError {
    ParamWithoutSpec(u32),
    /// A synapse's postsynaptic variable: a population step has no slice for it.
    Post(u32),
    State { index: u32, count: usize },
    Input { index: u32, count: usize },
    Random { slot: u32, count: u32 },
}

impl fmt::Display for SpecialiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecialiseError::NoDt { model } => write!(f, "`{model}` has no time step: a kernel needs the step of a network (or --dt)"),
            SpecialiseError::BadDt { dt, .. } => write!(f, "dt = {dt} is not a positive finite number"),
            SpecialiseError::SpecCount { model, specs, params } => write!(f, "{specs} param specs for {params} params of `{model}`"),
            SpecialiseError::NextCount { model, next, states } => write!(f, "`{model}`: {next} next values for {states} states"),
            SpecialiseError::Leaf { model, what } => match what {
                LeafError::ParamWithoutSpec(k) => write!(f, "`{model}` reads param {k}, which has no spec"),
                LeafError::Post(k) => write!(
                    f,
                    "`{model}` reads postsynaptic variable {k}; a population step has no slice for it (compose the synapse first)"
                ),
                LeafError::State { index, count } => write!(f, "`{model}` reads state {index} of {count}"),
                LeafError::Input { index, count } => write!(f, "`{model}` reads input {index} of {count}"),
                LeafError::Random { slot, count } => write!(f, "`{model}` draws from random slot {slot} of {count}"),
            },
        }
    }
}

impl std::error::Error for SpecialiseError {}

/// A step kernel's graph, ready for code generation: every node of `graph` is live, and
/// the only leaves left are constants, `State`, `Input`, per-neuron `Param`, `Time` and
/// random draws.
pub struct Specialised {
    pub graph: Graph,
    /// The new value of each state (layout order).
    pub next: Vec<NodeId>,
    /// The spike of the new state: the step's spike with its `State` leaves bound to
    /// `next`, which is what the interpreter kernel computes from the stored state.
    pub spike: Option<NodeId>,
    /// For each random slot: whether it holds a normal draw. A slot is normal when any
    /// `Randn(k)` of the step reads it; `Rand(k)` / `Randn(k)` then read the same number.
    pub normal: Vec<bool>,
    /// For each param: its index among the per-neuron slices, if it is per-neuron.
    pub per_neuron: Vec<Option<usize>>,
    /// The dt folded in.
    pub dt: f64,
}

/// The checks every backend makes before it takes a step; returns the step's dt.
pub fn check(step: &Step, specs: &[ParamSpec]) -> Result<f64, SpecialiseError> {
    let model = || step.model.name.clone();
    let dt = step.dt.ok_or_else(|| SpecialiseError::NoDt { model: model() })?;
    if !(dt.is_finite() && dt > 0.0) {
        return Err(SpecialiseError::BadDt { model: model(), dt });
    }
    if specs.len() != step.layout.params.len() {
        return Err(SpecialiseError::SpecCount { model: model(), specs: specs.len(), params: step.layout.params.len() });
    }
    if step.next.len() != step.layout.states.len() {
        return Err(SpecialiseError::NextCount { model: model(), next: step.next.len(), states: step.layout.states.len() });
    }
    Ok(dt)
}

/// Folds uniform params and `dt` into `roots` (nodes of `g`, a graph extracted from
/// `step`) as constants, checks every leaf, and expands surrogates.
pub fn fold_leaves(g: &mut Graph, roots: &[NodeId], step: &Step, specs: &[ParamSpec]) -> Result<Vec<NodeId>, SpecialiseError> {
    let dt = check(step, specs)?;
    let leaf_error = |what| SpecialiseError::Leaf { model: step.model.name.clone(), what };
    let (n_states, n_inputs) = (step.layout.states.len(), step.layout.inputs.len());
    let leaves: Vec<(NodeId, Op)> = g.nodes().filter(|(_, n)| n.op.is_leaf()).map(|(id, n)| (id, n.op)).collect();
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    for (id, op) in leaves {
        let value = match op {
            Op::Param(k) => match specs.get(k as usize) {
                Some(ParamSpec::Uniform(v)) => Some(*v),
                Some(ParamSpec::PerNeuron) => None,
                None => return Err(leaf_error(LeafError::ParamWithoutSpec(k))),
            },
            // dt is fixed per kernel, so `exp(-dt / tau)` and friends fold to constants.
            Op::Dt => Some(dt),
            // Kernels have no slot for these: the reference kernel reads them as 0 (its
            // `Env` default), so a standalone synapse step runs the same everywhere.
            Op::Weight | Op::PreSpike => Some(0.0),
            Op::Post(k) => return Err(leaf_error(LeafError::Post(k))),
            Op::State(k) if k as usize >= n_states => return Err(leaf_error(LeafError::State { index: k, count: n_states })),
            Op::Input(k) if k as usize >= n_inputs => return Err(leaf_error(LeafError::Input { index: k, count: n_inputs })),
            Op::Rand(k) | Op::Randn(k) if k >= step.random_slots => {
                return Err(leaf_error(LeafError::Random { slot: k, count: step.random_slots }));
            }
            _ => None,
        };
        if let Some(v) = value {
            let c = g.constant(v);
            map.insert(id, c);
        }
    }
    let roots = g.substitute(roots, &map);
    // Only primitive ops from here on (SurrogateGrad has no forward use, but costs nothing).
    Ok(g.expand_surrogates(&roots))
}

/// The step kernel of `step`: its next states and the spike of the new state, folded.
pub fn specialise_step(step: &Step, specs: &[ParamSpec]) -> Result<Specialised, SpecialiseError> {
    let dt = check(step, specs)?;
    let n_states = step.layout.states.len();
    let mut roots = step.next.clone();
    roots.extend(step.spike);
    let (mut g, roots) = step.graph.extract(&roots);
    // Read before folding, as the interpreter does: a draw folding removes still counts.
    let mut normal = vec![false; step.random_slots as usize];
    for (_, n) in g.nodes() {
        if let Op::Randn(k) = n.op {
            if let Some(slot) = normal.get_mut(k as usize) {
                *slot = true;
            }
        }
    }
    let roots = fold_leaves(&mut g, &roots, step, specs)?;
    let (next, spike) = roots.split_at(n_states);
    let mut roots = next.to_vec();
    if let Some(&s) = spike.first() {
        // The spike of the new state, as the interpreter reads it from the stored state.
        let bind: HashMap<NodeId, NodeId> = (0..n_states).map(|k| (g.state(k as u32), next[k])).collect();
        roots.push(g.substitute(&[s], &bind)[0]);
    }
    let (graph, roots) = g.extract(&roots);
    Ok(Specialised { next: roots[..n_states].to_vec(), spike: roots.get(n_states).copied(), normal, per_neuron: per_neuron_slots(specs), graph, dt })
}

/// For each param: its index among the per-neuron slices, if it is per-neuron.
pub fn per_neuron_slots(specs: &[ParamSpec]) -> Vec<Option<usize>> {
    let mut next = 0;
    specs
        .iter()
        .map(|s| match s {
            ParamSpec::PerNeuron => {
                next += 1;
                Some(next - 1)
            }
            ParamSpec::Uniform(_) => None,
        })
        .collect()
}
