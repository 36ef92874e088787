//! A NIR graph as an snnc network: `.snn` text (the NIR neuron models of [`MODELS`],
//! one population per neuron node, one projection per Linear/Affine node) and the
//! projections' weights by name (the language has no matrix literals).

use super::{Graph, MODELS, Node, is_time};
use ndarray::{Array2, ArrayD, Ix2};
use snnc_compiler::sema::Method;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What an import gives: the program text and the weights of its projections.
pub struct Imported {
    pub snn: String,
    /// By projection name, (n_pre, n_post) as `Network::set_trainable` takes them.
    pub weights: Vec<(String, Array2<f64>)>,
}

/// What each node becomes.
enum Role<'a> {
    Input(usize),
    Output,
    /// NIR type, snnc model, size.
    Neurons(&'a str, &'a str, usize),
    /// (out, in) weights.
    Linear(Array2<f64>),
}

/// The NIR node types import understands.
const IMPORTED: &str = "Input, Output, Affine (zero bias), Linear, LIF, LI, IF, CubaLIF, CubaLI";

/// `graph` as network `name` with time step `dt` (seconds; NIR has none), its models
/// integrated with `method` (NIR's equations are continuous in time: docs/nir.md).
pub fn import(graph: &Graph, name: &str, dt: f64, method: Method) -> Result<Imported, String> {
    if !(dt > 0.0 && dt.is_finite()) {
        return Err(format!("the time step must be a positive number of seconds, got {dt}"));
    }
    let ids = identifiers(graph);
    let id = |n: &str| ids[n].clone();
    let mut roles: BTreeMap<&str, Role> = BTreeMap::new();
    for (n, node) in &graph.nodes {
        roles.insert(n.as_str(), role(n, node)?);
    }
    for (a, b) in &graph.edges {
        for end in [a, b] {
            if !roles.contains_key(end.as_str()) {
                return Err(format!("an edge names node `{end}`, which the graph does not have"));
            }
        }
    }
    let size = |n: &str| -> Option<usize> {
        match &roles[n] {
            Role::Input(s) | Role::Neurons(_, _, s) => Some(*s),
            Role::Output | Role::Linear(_) => None,
        }
    };
    let preds = |n: &str| graph.edges.iter().filter(|(_, b)| b == n).map(|(a, _)| a.as_str()).collect::<Vec<_>>();
    let succs = |n: &str| graph.edges.iter().filter(|(a, _)| a == n).map(|(_, b)| b.as_str()).collect::<Vec<_>>();

    let mut inputs = String::new();
    let mut layers = String::new();
    let mut connects = String::new();
    let mut weights = Vec::new();
    let mut used: Vec<&str> = Vec::new();
    for n in order(graph, &roles) {
        match &roles[n] {
            Role::Input(s) => writeln!(inputs, "    input {}: {s}", id(n)).unwrap(),
            Role::Neurons(kind, model, s) => {
                let node = graph.node(n).expect("a node of the graph");
                writeln!(layers, "    layer {} = {model}[{s}] {{ {} }}", id(n), settings(n, kind, node)?).unwrap();
                if !used.contains(model) {
                    used.push(model);
                }
                // Edges straight from an input or neurons: NIR's identity.
                for p in preds(n).into_iter().filter(|p| size(p).is_some()) {
                    if size(p) != Some(*s) {
                        return Err(format!("edge `{p}` -> `{n}` joins {} values to {s} neurons without a Linear node", size(p).unwrap_or(0)));
                    }
                    writeln!(connects, "    connect {} -> {} one_to_one weight 1.0 as {}_to_{}", id(p), id(n), id(p), id(n)).unwrap();
                }
            }
            Role::Output | Role::Linear(_) => {}
        }
    }
    // Each Linear/Affine node: a dense projection from its one source to each of its
    // targets (a Linear node into an Output is a `Linear` readout named after it).
    for (n, _) in &graph.nodes {
        let Role::Linear(w) = &roles[n.as_str()] else { continue };
        let [pre] = preds(n)[..] else {
            return Err(format!("node `{n}` ({}) has {} inputs; snnc needs exactly one (a population or an input)", graph.node(n).map_or("", |x| &x.kind), preds(n).len()));
        };
        let Some(n_pre) = size(pre) else {
            return Err(format!("node `{n}` takes its input from `{pre}`, which is not a population or an input (snnc has no chains of Linear nodes)"));
        };
        if w.ncols() != n_pre {
            return Err(format!("node `{n}` has weights of {} inputs, but `{pre}` has {n_pre} values", w.ncols()));
        }
        let targets = succs(n);
        for t in &targets {
            let post = match &roles[t] {
                Role::Neurons(_, _, s) => *s,
                Role::Output => {
                    writeln!(layers, "    readout {} = Linear[{}]", id(t), w.nrows()).unwrap();
                    w.nrows()
                }
                _ => return Err(format!("node `{n}` feeds `{t}`, which is not a population or an Output (snnc has no chains of Linear nodes)")),
            };
            if w.nrows() != post {
                return Err(format!("node `{n}` has weights of {} outputs, but `{t}` has {post} neurons", w.nrows()));
            }
            let proj = if targets.len() == 1 { id(n) } else { format!("{}_{}", id(n), id(t)) };
            writeln!(connects, "    connect {} -> {} dense as {proj}", id(pre), id(t)).unwrap();
            weights.push((proj, w.t().as_standard_layout().into_owned()));
        }
    }
    let method_name = Method::ALL.iter().find(|(_, m)| *m == method).map_or("exact", |(n, _)| n);
    let mut snn = format!(
        "// Imported from NIR by `snnc import-nir` (docs/nir.md): NIR's equations integrated with\n\
         // `{method_name}` at dt = {dt:?} s. The projections' weights are in the weights file\n\
         // written beside this one (`snnc run --weights`); without it they are drawn at random.\n\n"
    );
    for model in &used {
        snn.push_str(&model_text(model, method));
        snn.push('\n');
    }
    write!(snn, "network {} {{\n    dt = {dt:?} s\n{inputs}{layers}{connects}}}\n", identifier(name)).unwrap();
    Ok(Imported { snn, weights })
}

/// The text of NIR model `model` (from [`MODELS`]) integrated with `method`.
pub(super) fn model_text(model: &str, method: Method) -> String {
    let (_, m, text) = MODELS.iter().find(|(_, m, _)| *m == model).expect("a model of MODELS");
    let name = Method::ALL.iter().find(|(_, x)| *x == method).map_or("exact", |(n, _)| n);
    text.replacen(&format!("neuron {m} {{\n"), &format!("neuron {m} {{\n    method {name}\n"), 1)
}

fn role<'a>(name: &str, node: &'a Node) -> Result<Role<'a>, String> {
    let kind = node.kind.as_str();
    let need = |p: &str| node.param(p).ok_or_else(|| format!("node `{name}` ({kind}) has no `{p}`"));
    Ok(match kind {
        "Input" => Role::Input(need("shape")?.iter().product::<f64>() as usize),
        "Output" => Role::Output,
        "Linear" | "Affine" => {
            if kind == "Affine"
                && let Some(b) = node.param("bias")
                && b.iter().any(|v| *v != 0.0)
            {
                return Err(format!("node `{name}` (Affine) has a non-zero bias: snnc's projections have no bias yet (imported: {IMPORTED})"));
            }
            let w = need("weight")?.clone().into_dimensionality::<Ix2>().map_err(|_| format!("node `{name}` ({kind}): `weight` must be a matrix (out, in)"))?;
            Role::Linear(w)
        }
        _ => match MODELS.iter().find(|(k, _, _)| *k == kind) {
            Some((k, m, _)) => {
                let first = node.params.first().ok_or_else(|| format!("node `{name}` ({kind}) has no params"))?;
                Role::Neurons(k, m, first.1.len())
            }
            None => return Err(format!("node `{name}` is a NIR `{kind}`, which snnc cannot import (imported: {IMPORTED})")),
        },
    })
}

/// `p = value, ...` for a neuron node: each of the model's params, one value for all
/// neurons (snnc's populations take one value or a distribution).
fn settings(name: &str, kind: &str, node: &Node) -> Result<String, String> {
    let params = model_params(kind);
    let mut out = Vec::new();
    for p in params {
        let Some(a) = node.param(p) else {
            // nir 1.0 defaults: `v_reset` 0, `w_in` 1.
            if p == "v_reset" || p == "w_in" {
                continue;
            }
            return Err(format!("node `{name}` ({kind}) has no `{p}`"));
        };
        let v = uniform(a).ok_or_else(|| format!("node `{name}` ({kind}): `{p}` differs between neurons; snnc takes one value of a param per population"))?;
        if is_time(p) {
            out.push(format!("{p} = {v:?} s"));
        } else if kind == "IF" && p == "r" {
            out.push(format!("{p} = {v:?} Hz"));
        } else {
            out.push(format!("{p} = {v:?}"));
        }
    }
    Ok(out.join(", "))
}

/// The params of a NIR neuron type, as its model in [`MODELS`] declares them.
pub(super) fn model_params(kind: &str) -> Vec<&'static str> {
    let (_, _, text) = MODELS.iter().find(|(k, _, _)| *k == kind).expect("a kind of MODELS");
    text.lines().filter_map(|l| l.trim().strip_prefix("param ")).map(|l| l.split([':', ' ']).next().unwrap_or("")).collect()
}

/// The one value of `a`, if all its values are the same.
fn uniform(a: &ArrayD<f64>) -> Option<f64> {
    let first = *a.iter().next()?;
    a.iter().all(|v| v.to_bits() == first.to_bits()).then_some(first)
}

/// Neuron nodes and inputs in the order their spikes flow (a population is declared
/// after those feeding it, so a feed-forward graph propagates within a step; in a
/// cycle, the graph's order decides).
fn order<'a>(graph: &'a Graph, roles: &BTreeMap<&str, Role>) -> Vec<&'a str> {
    let is_unit = |n: &str| matches!(roles[n], Role::Input(_) | Role::Neurons(..));
    // Sources of a unit through at most one Linear node.
    let sources = |n: &str| -> Vec<&str> {
        let mut out = Vec::new();
        for (a, b) in &graph.edges {
            if b != n {
                continue;
            }
            if is_unit(a) {
                out.push(a.as_str());
            } else if matches!(roles[a.as_str()], Role::Linear(_)) {
                out.extend(graph.edges.iter().filter(|(_, x)| x == a).map(|(y, _)| y.as_str()).filter(|y| is_unit(y)));
            }
        }
        out
    };
    let units: Vec<&str> = graph.nodes.iter().map(|(n, _)| n.as_str()).filter(|n| is_unit(n)).collect();
    let mut done: Vec<&str> = Vec::new();
    while done.len() < units.len() {
        let ready = units.iter().find(|u| !done.contains(u) && sources(u).iter().all(|s| done.contains(s) || s == *u));
        // A cycle: take the first left, in the graph's order.
        let next = ready.or_else(|| units.iter().find(|u| !done.contains(u))).expect("a unit left");
        done.push(next);
    }
    done
}

/// Identifiers for the nodes: letters, digits and `_`, not starting with a digit,
/// distinct.
fn identifiers(graph: &Graph) -> BTreeMap<&str, String> {
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    for (n, _) in &graph.nodes {
        let mut id = identifier(n);
        while out.values().any(|v| *v == id) {
            id.push('_');
        }
        out.insert(n.as_str(), id);
    }
    out
}

fn identifier(name: &str) -> String {
    let mut id: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert_str(0, "n_");
    }
    if snnc_compiler::syntax::KEYWORDS.contains(&id.as_str()) {
        id.push('_');
    }
    id
}


