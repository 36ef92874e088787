//! Text and Graphviz forms of the IR.
//!
//! The text form is an SSA-like listing of the nodes the outputs depend on, renumbered
//! densely in topological order, so it does not depend on dead nodes left in the graph:
//!
//! ```text
//! %0 = state 0  ; v
//! %1 = input 0  ; I
//! %2 = sub %1, %0
//! %3 = param 0  ; tau
//! %4 = div %2, %3
//! out dv/dt = %4
//! ```
//!
//! Surrogates used by the listing come first, each with its body (`input 0` = x).

use std::collections::HashMap;
use std::fmt::{self, Write};

use petgraph::dot::{Config, Dot};
use petgraph::visit::NodeRef;

use super::lower::LoweredModel;
use super::{Graph, Node, NodeId, Op};
use crate::sema::{Model, UpdateOp};

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match *self {
            Op::Const(v) => write!(f, "{name} {v:?}"),
            Op::Param(k) | Op::State(k) | Op::Input(k) | Op::Post(k) | Op::Rand(k) | Op::Randn(k) => {
                write!(f, "{name} {k}")
            }
            Op::PowI(n) => write!(f, "{name} {n}"),
            Op::Heaviside(s) | Op::SurrogateGrad(s) => write!(f, "{name}[#{}]", s.0),
            _ => f.write_str(name),
        }
    }
}

/// Petgraph's DOT writer labels nodes with this.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.op.fmt(f)
    }
}

/// The text form of the nodes `outputs` depend on; `outputs` are named.
pub fn to_text(g: &Graph, outputs: &[(String, NodeId)]) -> String {
    to_text_with(g, outputs, &|_| None)
}

/// [`to_text`] with a comment naming each leaf for which `leaf_name` returns a name.
pub fn to_text_with(g: &Graph, outputs: &[(String, NodeId)], leaf_name: &dyn Fn(Op) -> Option<String>) -> String {
    let roots: Vec<NodeId> = outputs.iter().map(|(_, n)| *n).collect();
    let live = g.ancestors(&roots);
    let mut out = String::new();
    let mut used: Vec<u32> = live
        .iter()
        .filter_map(|&n| match g.op(n) {
            Op::Heaviside(s) | Op::SurrogateGrad(s) => Some(s.0),
            _ => None,
        })
        .collect();
    used.sort_unstable();
    used.dedup();
    for s in used {
        let def = &g.surrogates()[s as usize];
        let params: Vec<String> = def.params.iter().map(|(n, v)| format!("{n} = {v:?}")).collect();
        let _ = writeln!(out, "surrogate #{s} {}({}) {{", def.name, params.join(", "));
        let body = listing(&def.body, &[("dH/dx".to_string(), def.result)], &|op| match op {
            Op::Input(0) => Some("x".to_string()),
            _ => None,
        });
        for line in body.lines() {
            let _ = writeln!(out, "    {line}");
        }
        out.push_str("}\n");
    }
    out.push_str(&listing(g, outputs, leaf_name));
    out
}

fn listing(g: &Graph, outputs: &[(String, NodeId)], leaf_name: &dyn Fn(Op) -> Option<String>) -> String {
    let roots: Vec<NodeId> = outputs.iter().map(|(_, n)| *n).collect();
    let mut num: HashMap<NodeId, usize> = HashMap::new();
    let mut out = String::new();
    for id in g.ancestors(&roots) {
        let i = num.len();
        num.insert(id, i);
        let node = g.node(id);
        let args: Vec<String> = node.args.iter().map(|a| format!("%{}", num[a])).collect();
        let rhs = match node.op {
            Op::PowI(n) => format!("powi {}, {n}", args[0]),
            op if op.is_leaf() => op.to_string(),
            op => format!("{op} {}", args.join(", ")),
        };
        let _ = write!(out, "%{i} = {rhs}");
        if let Some(name) = node.op.is_leaf().then(|| leaf_name(node.op)).flatten() {
            let _ = write!(out, "  ; {name}");
        }
        out.push('\n');
    }
    for (name, n) in outputs {
        let _ = writeln!(out, "out {name} = %{}", num[n]);
    }
    out
}

/// Graphviz DOT of the nodes `outputs` depend on (edges labelled with the operand
/// position, outputs drawn doubled and labelled with their names).
pub fn to_dot(g: &Graph, outputs: &[(String, NodeId)]) -> String {
    let roots: Vec<NodeId> = outputs.iter().map(|(_, n)| *n).collect();
    let (live, new_roots) = g.extract(&roots);
    let mut names: HashMap<usize, Vec<String>> = HashMap::new();
    for ((name, _), r) in outputs.iter().zip(&new_roots) {
        names.entry(r.index()).or_default().push(name.replace('"', "'"));
    }
    let edge_attr = |_, e: petgraph::graph::EdgeReference<'_, u8>| format!("label = \"{}\"", e.weight());
    let node_attr = |_, n: (petgraph::graph::NodeIndex, &Node)| match names.get(&n.id().index()) {
        Some(v) => format!("peripheries = 2, xlabel = \"{}\"", v.join(", ")),
        None => String::new(),
    };
    let dot = Dot::with_attr_getters(live.petgraph(), &[Config::EdgeNoLabel], &edge_attr, &node_attr);
    format!("{dot}")
}

impl LoweredModel {
    /// Every named expression of the model: `d<state>/dt`, `spike_arg`, `spike`,
    /// `on_spike <target> <op>=`, `on_pre <target> <op>=`, `output <port>`, `refractory`.
    pub fn outputs(&self, model: &Model) -> Vec<(String, NodeId)> {
        let name = |s: usize| model.symbols.get(s).map(|s| s.name.clone()).unwrap_or_else(|| format!("#{s}"));
        let mut v = Vec::new();
        for (k, rhs) in &self.odes {
            v.push((format!("d{}/dt", name(self.layout.states[*k as usize])), *rhs));
        }
        if let Some(s) = &self.spike {
            v.push(("spike_arg".into(), s.arg));
            v.push(("spike".into(), s.spike));
        }
        let op = |u: &UpdateOp| match u {
            UpdateOp::Set => "=",
            UpdateOp::Add => "+=",
            UpdateOp::Sub => "-=",
            UpdateOp::Mul => "*=",
            UpdateOp::Div => "/=",
        };
        for u in &self.on_spike {
            v.push((format!("on_spike {} {}", name(u.target), op(&u.op)), u.value));
        }
        for u in &self.on_pre {
            v.push((format!("on_pre {} {}", name(u.target), op(&u.op)), u.value));
        }
        if let Some((port, e)) = &self.output {
            v.push((format!("output {port}"), *e));
        }
        if let Some(r) = self.refractory {
            v.push(("refractory".into(), r));
        }
        v
    }

    /// The text form of [`LoweredModel::outputs`], leaves annotated with symbol names.
    pub fn to_text(&self, model: &Model) -> String {
        let leaf_name = |op: Op| self.layout.symbol(op).map(|s| model.symbols[s].name.clone());
        to_text_with(&self.graph, &self.outputs(model), &leaf_name)
    }

    /// The DOT form of [`LoweredModel::outputs`].
    pub fn to_dot(&self, model: &Model) -> String {
        to_dot(&self.graph, &self.outputs(model))
    }
}
