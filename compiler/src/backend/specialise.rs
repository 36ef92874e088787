//! Specialisation, shared by every code-generating backend: a [`Step`] and the specs of
//! its params become the graph a code generator sees.
//!
//! - checked once, here, with a typed error: the step has a `dt`, one spec per param,
//!   every leaf it reads has a slot, and nothing folding would bake in is NaN or
//!   infinite ([`check`], [`check_constants`]);
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
    /// A part of the step made only of constants, dt and uniform params is NaN or
    /// infinite (`exp(-dt / tau)` with `tau = 0`, `1e308 * 1e308`): folded into a
    /// kernel, the simplifier's finite-value rewrites (`x * 0 -> 0`) could turn it into
    /// a silent 0, so every backend refuses it instead.
    NonFinite {
        model: String,
        /// The expression, shortened for a message.
        expr: String,
        value: f64,
        /// The uniform params it depends on, with their values (SI units).
        params: Vec<(String, f64)>,
        /// Whether it depends on dt.
        uses_dt: bool,
    },
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
            SpecialiseError::NonFinite { model, expr, value, params, uses_dt } => {
                write!(f, "`{model}`: `{expr}` is {value}")?;
                let given: Vec<String> = params.iter().map(|(p, v)| format!("{p} = {v}")).collect();
                match (given.is_empty(), uses_dt) {
                    (false, _) => write!(f, " with {}", given.join(", "))?,
                    (true, true) => f.write_str(" at this dt")?,
                    (true, false) => {}
                }
                f.write_str(" (values in SI units); every constant of a kernel must be finite: is a time constant or divisor zero, or a value out of range?")
            }
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
    /// Inputs (layout indices) the kernel sets to 0 after reading them
    /// ([`StepKernel::step_clearing`](super::StepKernel::step_clearing)); none unless
    /// the caller asks.
    pub cleared: Vec<usize>,
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
    let mut roots = step.next.clone();
    roots.extend(step.spike);
    check_constants(&step.graph, &roots, step, specs, dt)?;
    Ok(dt)
}

/// Refuses a NaN or infinite value among the parts of `roots` (nodes of `g`, a graph
/// of `step` or extracted from it, unfolded) that depend only on constants, dt and
/// uniform params: the values folding would bake into a kernel. A branch of an `if`
/// whose condition is such a constant counts only when it is taken. The interpreter
/// makes the same check, so every backend refuses the same steps.
pub fn check_constants(g: &Graph, roots: &[NodeId], step: &Step, specs: &[ParamSpec], dt: f64) -> Result<(), SpecialiseError> {
    let value = constant_values(g, specs, dt);
    // The nodes the roots use, through the taken branch only of a constant `if`.
    let mut live = vec![false; g.len()];
    let mut stack: Vec<NodeId> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut live[n.index()], true) {
            continue;
        }
        let args = g.args(n);
        match (g.op(n), args.first().and_then(|c| value[c.index()])) {
            (Op::Select, Some(c)) => stack.extend([args[0], if c != 0.0 { args[1] } else { args[2] }]),
            _ => stack.extend_from_slice(args),
        }
    }
    // Ids ascend in topological order: the first bad node is where the trouble starts
    // (its operands are finite), the one worth showing.
    let bad = (0..g.len()).find(|&i| live[i] && value[i].is_some_and(|v| !v.is_finite()));
    let Some(bad) = bad.map(|i| NodeId(i as u32)) else { return Ok(()) };
    let mut params = Vec::new();
    let mut uses_dt = false;
    for a in g.ancestors(&[bad]) {
        match g.op(a) {
            Op::Param(k) => {
                if let Some(ParamSpec::Uniform(v)) = specs.get(k as usize) {
                    params.push((step.param_name(k as usize).to_string(), *v));
                }
            }
            Op::Dt => uses_dt = true,
            _ => {}
        }
    }
    let expr = short_expr(g, bad, step, 3);
    // The outer parentheses say nothing at the top.
    let expr = expr.strip_prefix('(').and_then(|e| e.strip_suffix(')')).map_or(expr.clone(), str::to_string);
    Err(SpecialiseError::NonFinite { model: step.model.name.clone(), expr, value: value[bad.index()].unwrap_or(f64::NAN), params, uses_dt })
}

/// `n` as text for a message: names for leaves, `...` below `depth` levels (so the
/// text stays short however deep the graph).
fn short_expr(g: &Graph, n: NodeId, step: &Step, depth: usize) -> String {
    let op = g.op(n);
    let name = |names: &[crate::sema::SymId], k: u32| names.get(k as usize).map(|&s| step.model.symbols[s].name.clone());
    let leaf = match op {
        Op::Const(v) => Some(format!("{v}")),
        Op::Param(k) => name(&step.layout.params, k),
        Op::State(k) => name(&step.layout.states, k),
        Op::Input(k) => name(&step.layout.inputs, k),
        Op::Dt => Some("dt".into()),
        Op::Time => Some("t".into()),
        _ => None,
    };
    if let Some(l) = leaf {
        return l;
    }
    if depth == 0 {
        return "...".into();
    }
    let a: Vec<String> = g.args(n).iter().map(|&a| short_expr(g, a, step, depth - 1)).collect();
    match (op, a.as_slice()) {
        (Op::Add | Op::Sub | Op::Mul | Op::Div, [x, y]) => {
            let sym = match op {
                Op::Add => "+",
                Op::Sub => "-",
                Op::Mul => "*",
                _ => "/",
            };
            format!("({x} {sym} {y})")
        }
        (Op::Neg, [x]) => format!("-{x}"),
        _ => format!("{}({})", op.name(), a.join(", ")),
    }
}

/// For each node of `g`: its value when it depends only on constants, dt and uniform
/// params (what folding computes), else `None`.
fn constant_values(g: &Graph, specs: &[ParamSpec], dt: f64) -> Vec<Option<f64>> {
    let mut value: Vec<Option<f64>> = Vec::with_capacity(g.len());
    for (_, node) in g.nodes() {
        let v = match node.op {
            Op::Const(c) => Some(c),
            Op::Dt => Some(dt),
            Op::Param(k) => match specs.get(k as usize) {
                Some(ParamSpec::Uniform(v)) => Some(*v),
                _ => None,
            },
            // Synapse leaves fold to 0 but stand for values a kernel does not see.
            op if op.is_leaf() => None,
            op => {
                let args: Option<Vec<f64>> = node.args.iter().map(|a| value[a.index()]).collect();
                args.and_then(|a| match op {
                    Op::SurrogateGrad(s) => crate::ir::interp::eval_surrogate(g.surrogate(s), a[0]).ok(),
                    _ => crate::ir::interp::apply(op, &a),
                })
            }
        };
        value.push(v);
    }
    value
}

/// Folds uniform params and `dt` into `roots` (nodes of `g`, a graph extracted from
/// `step`) as constants, checks every leaf, and expands surrogates.
pub fn fold_leaves(g: &mut Graph, roots: &[NodeId], step: &Step, specs: &[ParamSpec]) -> Result<Vec<NodeId>, SpecialiseError> {
    let dt = check(step, specs)?;
    check_constants(g, roots, step, specs, dt)?;
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
    Ok(values_only(g, &roots))
}

/// The roots as a kernel computes them: values only, in primitive ops. Surrogates are
/// expanded, and `stop_gradient(x)` is `x` (it matters to differentiation, which is
/// done by now): the straight-through spike's `s - stop_gradient(s)`, zero in value,
/// cancels by the simplifier's `x - x` rule (x finite: a spike is 0 or 1), and so does
/// the reset term it multiplies - a forward kernel carries no surrogate term.
fn values_only(g: &mut Graph, roots: &[NodeId]) -> Vec<NodeId> {
    g.rewrite(roots, &mut |g, old, args| match g.op(old) {
        Op::SurrogateGrad(s) => Some(g.inline_surrogate(s, args[0])),
        Op::StopGradient => Some(args[0]),
        _ => None,
    })
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
    Ok(Specialised { next: roots[..n_states].to_vec(), spike: roots.get(n_states).copied(), normal, per_neuron: per_neuron_slots(specs), graph, dt, cleared: Vec::new() })
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
