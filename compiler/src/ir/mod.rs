//! The dataflow IR: scalar expressions of one neuron or synapse as a hash-consed DAG.
//!
//! Design (naga / cranelift style): the IR is plain data and every pass is a function
//! from data to data.
//! - [`Graph`] stores nodes in a petgraph [`DiGraph`]: a node is an [`Op`] with its
//!   operands, an edge runs from an operand to its user (weight = operand position).
//!   Operands always exist before their users, so ascending [`NodeId`] order is a
//!   topological order.
//! - Nodes are hash-consed: building the same op on the same operands returns the existing
//!   node, which gives common-subexpression elimination for free.
//! - Every node is built through a simplifying constructor ([`build`]): constant folding
//!   and algebraic identities that keep results bit-exact (with documented exceptions).
//!
//! Passes: [`lower`] (checked model → IR), [`interp`] (reference interpreter, the ground
//! truth for backends), [`diff`] (forward- and reverse-mode symbolic derivatives),
//! [`surrogate`] (surrogate gradients as IR), [`print`](mod@print) (text and Graphviz DOT).

pub mod build;
pub mod diff;
pub mod interp;
pub mod lower;
pub mod print;
pub mod surrogate;

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

pub use diff::{Jacobian, derivative, jacobian, jvp, vjp};
pub use interp::{Env, EvalError, eval};
pub use lower::{
    Layout, LowerError, LoweredModel, LoweredSpike, LoweredUpdate, Lowerer, apply_update, lower_model, lower_surrogate,
};
pub use surrogate::SurrogateDef;

/// A node of a [`Graph`]. Displays as `%N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
    fn ix(self) -> NodeIndex {
        NodeIndex::new(self.index())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Index of a surrogate gradient in [`Graph::surrogates`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SurrogateId(pub u32);

/// An operation. Leaves read the environment ([`interp::Env`]); every other op is a pure
/// function of its operands. Truth values are numbers: 1 is true, 0 is false, and
/// operands of `And`/`Or`/`Not`/`Select` are true when non-zero.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Const(f64),
    /// The k-th param of the model (in declaration order, see [`lower::Layout`]).
    Param(u32),
    /// The k-th state variable.
    State(u32),
    /// The k-th input port (the summed input y^t).
    Input(u32),
    /// Synapse: the k-th postsynaptic variable (`v_post`).
    Post(u32),
    /// Simulation time `t`.
    Time,
    /// Time step `dt`.
    Dt,
    /// Synapse: the connection weight `w`.
    Weight,
    /// Synapse: 1 if the presynaptic neuron spiked in this step.
    PreSpike,
    /// A uniform draw in [0, 1); the payload is the draw's slot, so two `rand()` calls
    /// stay two different numbers under hash-consing.
    Rand(u32),
    /// A standard normal draw (slot as for `Rand`).
    Randn(u32),
    Add,
    Sub,
    Mul,
    Div,
    Neg,
    /// `powf(a, b)`.
    Pow,
    /// `a^n` for a constant integer n, by repeated multiplication (see [`interp::powi`]).
    PowI(i32),
    Exp,
    Log,
    Sqrt,
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    Abs,
    Min,
    Max,
    Sin,
    Cos,
    /// `(exp(x) - 1) / x`, finite at 0.
    Exprel,
    /// `Select(c, a, b)`: a if c != 0 else b.
    Select,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Not,
    /// Forward: 1 if x >= 0 else 0. Its derivative is `SurrogateGrad` of the same surrogate.
    Heaviside(SurrogateId),
    /// The surrogate's dH/dx evaluated at x.
    SurrogateGrad(SurrogateId),
    /// Forward: identity. Derivative: 0 (`detach`).
    StopGradient,
}

impl Op {
    /// Number of operands the op takes.
    pub fn arity(self) -> usize {
        use Op::*;
        match self {
            Const(_) | Param(_) | State(_) | Input(_) | Post(_) | Time | Dt | Weight | PreSpike | Rand(_) | Randn(_) => 0,
            Neg | PowI(_) | Exp | Log | Sqrt | Tanh | Sigmoid | Abs | Sin | Cos | Exprel | Not | Heaviside(_)
            | SurrogateGrad(_) | StopGradient => 1,
            Add | Sub | Mul | Div | Pow | Min | Max | Lt | Le | Gt | Ge | Eq | Ne | And | Or => 2,
            Select => 3,
        }
    }

    /// The mnemonic used by the text form.
    pub fn name(self) -> &'static str {
        use Op::*;
        match self {
            Const(_) => "const",
            Param(_) => "param",
            State(_) => "state",
            Input(_) => "input",
            Post(_) => "post",
            Time => "time",
            Dt => "dt",
            Weight => "weight",
            PreSpike => "pre_spike",
            Rand(_) => "rand",
            Randn(_) => "randn",
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "div",
            Neg => "neg",
            Pow => "pow",
            PowI(_) => "powi",
            Exp => "exp",
            Log => "log",
            Sqrt => "sqrt",
            Tanh => "tanh",
            Sigmoid => "sigmoid",
            Abs => "abs",
            Min => "min",
            Max => "max",
            Sin => "sin",
            Cos => "cos",
            Exprel => "exprel",
            Select => "select",
            Lt => "lt",
            Le => "le",
            Gt => "gt",
            Ge => "ge",
            Eq => "eq",
            Ne => "ne",
            And => "and",
            Or => "or",
            Not => "not",
            Heaviside(_) => "heaviside",
            SurrogateGrad(_) => "surrogate_grad",
            StopGradient => "stop_gradient",
        }
    }

    pub fn is_leaf(self) -> bool {
        self.arity() == 0
    }

    pub fn is_random(self) -> bool {
        matches!(self, Op::Rand(_) | Op::Randn(_))
    }

    /// `op(a, b) == op(b, a)` bit for bit, so operands may be put in canonical order.
    pub fn is_commutative(self) -> bool {
        matches!(self, Op::Add | Op::Mul | Op::Min | Op::Max | Op::Eq | Op::Ne | Op::And | Op::Or)
    }

    /// The result is always exactly 0 or 1.
    pub fn is_boolean(self) -> bool {
        use Op::*;
        matches!(self, Lt | Le | Gt | Ge | Eq | Ne | And | Or | Not | Heaviside(_) | PreSpike)
    }

    /// The integer payload of the op, if any (for hashing and equality).
    fn payload(self) -> u64 {
        use Op::*;
        match self {
            Const(v) => canonical_bits(v),
            Param(k) | State(k) | Input(k) | Post(k) | Rand(k) | Randn(k) => u64::from(k),
            PowI(n) => n as u64,
            Heaviside(s) | SurrogateGrad(s) => u64::from(s.0),
            _ => 0,
        }
    }
}

/// Constants are compared by bits (so 0.0 and -0.0 stay distinct), with one NaN.
fn canonical_bits(v: f64) -> u64 {
    if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() }
}

impl PartialEq for Op {
    fn eq(&self, other: &Op) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.payload() == other.payload()
    }
}
impl Eq for Op {}
impl Hash for Op {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        self.payload().hash(state);
    }
}

/// The callback of [`Graph::rewrite`]: (graph, old node, rebuilt operands) → replacement.
pub type RewriteHook<'a> = dyn FnMut(&mut Graph, NodeId, &[NodeId]) -> Option<NodeId> + 'a;

/// One node: an op applied to operands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub op: Op,
    pub args: Vec<NodeId>,
}

/// A hash-consed dataflow graph plus the surrogate gradients its spike nodes refer to.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    dag: DiGraph<Node, u8>,
    interned: HashMap<Node, NodeId>,
    surrogates: Vec<SurrogateDef>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Number of nodes (live and dead).
    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id.ix()]
    }

    pub fn op(&self, id: NodeId) -> Op {
        self.dag[id.ix()].op
    }

    pub fn args(&self, id: NodeId) -> &[NodeId] {
        &self.dag[id.ix()].args
    }

    /// The value of a `Const` node.
    pub fn const_value(&self, id: NodeId) -> Option<f64> {
        match self.op(id) {
            Op::Const(v) => Some(v),
            _ => None,
        }
    }

    /// A structural zero: the constant 0 (of either sign).
    pub fn is_zero(&self, id: NodeId) -> bool {
        self.const_value(id) == Some(0.0)
    }

    /// Every node with its id, in topological (= ascending id) order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.dag.node_indices().map(|ix| (NodeId(ix.index() as u32), &self.dag[ix]))
    }

    /// The underlying petgraph (edges: operand → user, weight = operand position).
    pub fn petgraph(&self) -> &DiGraph<Node, u8> {
        &self.dag
    }

    /// The ids of the nodes that use `id` as an operand.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut u: Vec<NodeId> =
            self.dag.neighbors_directed(id.ix(), Direction::Outgoing).map(|ix| NodeId(ix.index() as u32)).collect();
        u.sort();
        u.dedup();
        u
    }

    /// Finds or adds a node exactly as given, without simplification. Passes should use
    /// [`Graph::add_node`] (or the typed constructors in [`build`]) instead.
    ///
    /// Panics on a wrong operand count or an operand that does not exist: both are bugs
    /// in the pass that builds the node, not in user input.
    pub fn intern(&mut self, op: Op, args: Vec<NodeId>) -> NodeId {
        assert_eq!(op.arity(), args.len(), "`{}` takes {} operand(s)", op.name(), op.arity());
        assert!(args.iter().all(|a| a.index() < self.len()), "operand of `{}` out of range", op.name());
        if let Op::SurrogateGrad(s) | Op::Heaviside(s) = op {
            assert!((s.0 as usize) < self.surrogates.len(), "unknown surrogate #{}", s.0);
        }
        let op = match op {
            Op::Const(v) if v.is_nan() => Op::Const(f64::NAN),
            _ => op,
        };
        let node = Node { op, args };
        if let Some(&id) = self.interned.get(&node) {
            return id;
        }
        let ix = self.dag.add_node(node.clone());
        for (pos, a) in node.args.iter().enumerate() {
            self.dag.add_edge(a.ix(), ix, pos as u8);
        }
        let id = NodeId(ix.index() as u32);
        self.interned.insert(node, id);
        id
    }

    /// Every node the roots depend on (roots included), in ascending (topological) order.
    pub fn ancestors(&self, roots: &[NodeId]) -> Vec<NodeId> {
        let rev = Reversed(&self.dag);
        let mut seen = vec![false; self.len()];
        for &r in roots {
            if seen[r.index()] {
                continue;
            }
            let mut dfs = Dfs::new(rev, r.ix());
            while let Some(ix) = dfs.next(rev) {
                seen[ix.index()] = true;
            }
        }
        seen.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| NodeId(i as u32)).collect()
    }

    /// Whether `node` depends on `on` (or is it).
    pub fn depends_on(&self, node: NodeId, on: NodeId) -> bool {
        node == on || (on < node && petgraph::algo::has_path_connecting(&self.dag, on.ix(), node.ix(), None))
    }

    /// The surrogate gradients referenced by `Heaviside` / `SurrogateGrad` nodes.
    pub fn surrogates(&self) -> &[SurrogateDef] {
        &self.surrogates
    }

    pub fn surrogate(&self, id: SurrogateId) -> &SurrogateDef {
        &self.surrogates[id.0 as usize]
    }

    /// Registers a surrogate; an identical definition already present is reused.
    pub fn add_surrogate(&mut self, def: SurrogateDef) -> SurrogateId {
        if let Some(i) = self.surrogates.iter().position(|s| s.same_as(&def)) {
            return SurrogateId(i as u32);
        }
        self.surrogates.push(def);
        SurrogateId(self.surrogates.len() as u32 - 1)
    }

    /// Copies the nodes the roots depend on into a fresh, dense graph (dead-code
    /// elimination). Returns the new graph and the roots' ids in it.
    pub fn extract(&self, roots: &[NodeId]) -> (Graph, Vec<NodeId>) {
        let mut out = Graph::new();
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        for id in self.ancestors(roots) {
            let node = self.node(id);
            let args = node.args.iter().map(|a| map[a]).collect();
            let op = match node.op {
                Op::Heaviside(s) => Op::Heaviside(out.add_surrogate(self.surrogate(s).clone())),
                Op::SurrogateGrad(s) => Op::SurrogateGrad(out.add_surrogate(self.surrogate(s).clone())),
                op => op,
            };
            map.insert(id, out.intern(op, args));
        }
        let roots = roots.iter().map(|r| map[r]).collect();
        (out, roots)
    }

    /// Rebuilds the roots bottom-up through the simplifying constructor. For every node
    /// (in topological order) `hook` sees the node's old id and its rebuilt operands and
    /// may return a replacement; otherwise the node is rebuilt with the same op.
    /// Returns the rebuilt roots. The old nodes stay in the graph (use [`Graph::extract`]).
    pub fn rewrite(
        &mut self,
        roots: &[NodeId],
        hook: &mut RewriteHook<'_>,
    ) -> Vec<NodeId> {
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        for id in self.ancestors(roots) {
            let args: Vec<NodeId> = self.args(id).iter().map(|a| map[a]).collect();
            let new = match hook(self, id, &args) {
                Some(n) => n,
                None => {
                    let op = self.op(id);
                    self.add_node(op, args)
                }
            };
            map.insert(id, new);
        }
        roots.iter().map(|r| map[r]).collect()
    }

    /// Replaces nodes by others (e.g. a leaf `Dt` by a constant) and rebuilds everything
    /// above them, simplifying on the way.
    pub fn substitute(&mut self, roots: &[NodeId], map: &HashMap<NodeId, NodeId>) -> Vec<NodeId> {
        self.rewrite(roots, &mut |_, old, _| map.get(&old).copied())
    }

    /// Replaces every `SurrogateGrad(x)` below the roots by the surrogate's body built
    /// from primitive ops, so a backend needs no surrogate support of its own.
    pub fn expand_surrogates(&mut self, roots: &[NodeId]) -> Vec<NodeId> {
        self.rewrite(roots, &mut |g, old, args| match g.op(old) {
            Op::SurrogateGrad(s) => Some(g.inline_surrogate(s, args[0])),
            _ => None,
        })
    }

    /// The body of surrogate `s` built in this graph at argument `x`.
    pub fn inline_surrogate(&mut self, s: SurrogateId, x: NodeId) -> NodeId {
        let def = self.surrogate(s).clone();
        self.inline(&def.body, def.result, &[x])
    }

    /// Copies `root` of another graph into this one, with its `Input(k)` leaves bound to
    /// `inputs[k]` (other leaves are copied as they are).
    pub fn inline(&mut self, sub: &Graph, root: NodeId, inputs: &[NodeId]) -> NodeId {
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        for id in sub.ancestors(&[root]) {
            let node = sub.node(id);
            let args: Vec<NodeId> = node.args.iter().map(|a| map[a]).collect();
            let new = match node.op {
                Op::Input(k) if (k as usize) < inputs.len() => inputs[k as usize],
                Op::Heaviside(s) => {
                    let s = self.add_surrogate(sub.surrogate(s).clone());
                    self.add_node(Op::Heaviside(s), args)
                }
                Op::SurrogateGrad(s) => {
                    let s = self.add_surrogate(sub.surrogate(s).clone());
                    self.add_node(Op::SurrogateGrad(s), args)
                }
                op => self.add_node(op, args),
            };
            map.insert(id, new);
        }
        map[&root]
    }
}
