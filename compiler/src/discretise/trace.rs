//! Learning kernels derived from a population's step: the per-neuron parts of the
//! online learning rules, generated as steps of their own so that every backend that
//! runs a step (reference interpreter, Cranelift JIT) runs them too, and the JIT is
//! checked against the interpreter like any model.
//!
//! The runtime hands a trace step the derivatives the population's step wrote (D and a
//! column of Df, as input slices read in place) and the learning signal; the D entries
//! that are structurally zero (`Const(0)` in the derivative graph, e.g. an adaptation
//! current that does not depend on the membrane) are left out, so the generated code does
//! only the multiply-adds the model needs.

use super::{DerivLayout, Step};
use crate::ir::{Graph, Layout, NodeId};
use crate::sema::{SymKind, Symbol};
use crate::units::Dim;

/// A trace step and where its inputs come from.
#[derive(Clone, Debug)]
pub struct TraceStep {
    pub step: Step,
    /// Inputs `0..d.len()`: D[a][c] for each listed (a, c); the other entries are zero.
    pub d: Vec<(usize, usize)>,
    /// Next inputs: the driving column (of Df or dh/dtheta), its row a for each listed a
    /// (the others are zero), as states of the population's step (`drive_states`).
    pub df: Vec<usize>,
    /// The population-step state holding each listed row of the driving column.
    pub drive_states: Vec<usize>,
    /// K: the last K inputs are the learning signal l_0..l_{K-1}.
    pub k: usize,
}

/// Which per-neuron trace a [`TraceStep`] updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceKind {
    /// The ES-D-RTRL output trace of kernel input j, braintrace's `pp_prop` with decay
    /// lambda (param 0 of the step): eps_f_a <- lambda sum_c D[a][c] eps_f_c + (1 - lambda) Df[a][j].
    EsOutput { input: usize },
    /// The exact trace of trainable param j (a per-neuron param acts on its own neuron
    /// only, so its D-RTRL trace is per neuron): eps_a <- sum_c D[a][c] eps_c + dh_a/dtheta_j.
    Param { col: usize },
}

/// The trace update of `kind` for a population whose step with derivative outputs is
/// `deriv_step` ([`Step::with_derivative_outputs`], layout `dl`), followed by
///   u <- sum_a l_a eps_a          (with the new eps)
/// which the runtime contracts with presynaptic activity (ES-D-RTRL) or sums over the
/// batch (params). States: eps_0..eps_{K-1}, then u (written, never read).
pub fn trace_step(deriv_step: &Step, dl: &DerivLayout, kind: TraceKind) -> TraceStep {
    let k = dl.k;
    let zero_at = |state: usize| deriv_step.graph.is_zero(deriv_step.next[state]);
    let drive_of = |a: usize| match kind {
        TraceKind::EsOutput { input } => dl.df + a * dl.n_in + input,
        TraceKind::Param { col } => dl.dp + a * dl.n_p + col,
    };
    let d: Vec<(usize, usize)> = (0..k).flat_map(|a| (0..k).map(move |c| (a, c))).filter(|&(a, c)| !zero_at(dl.d + a * k + c)).collect();
    let df: Vec<usize> = (0..k).filter(|&a| !zero_at(drive_of(a))).collect();
    let drive_states: Vec<usize> = df.iter().map(|&a| drive_of(a)).collect();
    let mut g = Graph::new();
    let es = matches!(kind, TraceKind::EsOutput { .. });
    let lambda = g.param(0);
    let one = g.constant(1.0);
    let keep = g.sub(one, lambda);
    let d_in: Vec<NodeId> = (0..d.len() as u32).map(|i| g.input(i)).collect();
    let df_in: Vec<NodeId> = (0..df.len() as u32).map(|i| g.input(d.len() as u32 + i)).collect();
    let l_in: Vec<NodeId> = (0..k as u32).map(|i| g.input((d.len() + df.len()) as u32 + i)).collect();
    let f: Vec<NodeId> = (0..k as u32).map(|c| g.state(c)).collect();
    let mut next = Vec::with_capacity(k + 1);
    for a in 0..k {
        // sum_c D[a][c] f_c over the structurally non-zero entries, in c order.
        let mut s: Option<NodeId> = None;
        for (i, _) in d.iter().enumerate().filter(|(_, (r, _))| *r == a) {
            let term = g.mul(d_in[i], f[d[i].1]);
            s = Some(match s {
                Some(acc) => g.add(acc, term),
                None => term,
            });
        }
        let decayed = match s {
            Some(s) if es => g.mul(lambda, s),
            Some(s) => s,
            None => g.constant(0.0),
        };
        let new = match df.iter().position(|&r| r == a) {
            Some(i) => {
                let inject = if es { g.mul(keep, df_in[i]) } else { df_in[i] };
                g.add(decayed, inject)
            }
            None => decayed,
        };
        next.push(new);
    }
    let mut u: Option<NodeId> = None;
    for a in 0..k {
        let term = g.mul(l_in[a], next[a]);
        u = Some(match u {
            Some(acc) => g.add(acc, term),
            None => term,
        });
    }
    next.push(u.expect("K >= 1"));
    // The ES step reads lambda (param 0); the param trace has no param.
    let mut names: Vec<(String, SymKind)> = if es { vec![("lambda".into(), SymKind::Param)] } else { Vec::new() };
    names.extend((0..k).map(|a| (format!("eps{a}"), SymKind::State)));
    names.push(("u".into(), SymKind::State));
    names.extend(d.iter().map(|(a, c)| (format!("D{a}{c}"), SymKind::Input)));
    names.extend(df.iter().map(|a| (format!("drive{a}"), SymKind::Input)));
    names.extend((0..k).map(|a| (format!("l{a}"), SymKind::Input)));
    let (name, note) = match kind {
        TraceKind::EsOutput { input } => (format!("{}.es_trace_in{input}", deriv_step.model.name), "ES-D-RTRL output trace"),
        TraceKind::Param { col } => (format!("{}.param_trace{col}", deriv_step.model.name), "trainable-param trace"),
    };
    let (graph, next) = g.extract(&next);
    let step = derived_step(deriv_step, &name, graph, next, &names, note);
    TraceStep { step, d, df, drive_states, k }
}

/// A step with the given graph, next values and symbols (in kind order within each
/// kind: the leaves' indices follow it), taking the rest from `base`.
fn derived_step(base: &Step, name: &str, graph: Graph, next: Vec<NodeId>, symbols: &[(String, SymKind)], note: &str) -> Step {
    let mut model = base.model.clone();
    model.name = name.to_string();
    model.symbols = symbols
        .iter()
        .map(|(n, kind)| Symbol { name: n.clone(), kind: *kind, dim: Dim::ONE, value: None, trainable: false, span: base.model.span })
        .collect();
    model.odes.clear();
    model.spike = None;
    model.on_spike.clear();
    model.on_pre.clear();
    model.refractory = None;
    model.output = None;
    let layout = Layout::of(&model);
    let n_states = layout.states.len();
    Step {
        model,
        graph,
        layout,
        method: base.method,
        method_note: note.to_string(),
        n_hidden: n_states,
        next,
        spike: None,
        spike_arg: None,
        spike_scale: None,
        random_slots: 0,
    }
}
