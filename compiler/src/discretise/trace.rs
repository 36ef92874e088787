//! Learning kernels derived from a population's step: the per-neuron parts of the
//! online learning rules, generated as steps of their own so that every backend that
//! runs a step (reference interpreter, Cranelift JIT) runs them too, and the JIT is
//! checked against the interpreter like any model.
//!
//! The same holds for BPTT's per-step adjoint ([`adjoint_step`]).
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

/// The backward recursion of one step of an exact (D-RTRL) trace window, for the
/// projections into kernel input j of a population (see `runtime/src/learn/exact.rs`
/// for the derivation). Run from the window's last step back to its first, with
/// rho (K) and M (K x K) as states:
///
///   q     = sum_a rho_a f_a                 u_a = sum_c M[a][c] f_c
///   rho_c <- sum_a rho_a D[a][c] + l'_c      M[a][c] <- sum_b M[a][b] D[b][c]
///
/// where f is column j of Df and l' the learning signal of the step before (zero at the
/// window's first step). States: rho (K), M (K x K, row-major), then q (1) and u (K),
/// written only. Inputs: the non-zero D[a][c] (`d`), the non-zero f_a (`df`), then l'
/// (K).
pub fn exact_window_step(deriv_step: &Step, dl: &DerivLayout, input: usize) -> TraceStep {
    let k = dl.k;
    let zero_at = |state: usize| deriv_step.graph.is_zero(deriv_step.next[state]);
    let d: Vec<(usize, usize)> = (0..k).flat_map(|a| (0..k).map(move |c| (a, c))).filter(|&(a, c)| !zero_at(dl.d + a * k + c)).collect();
    let df: Vec<usize> = (0..k).filter(|&a| !zero_at(dl.df + a * dl.n_in + input)).collect();
    let drive_states: Vec<usize> = df.iter().map(|&a| dl.df + a * dl.n_in + input).collect();
    let mut g = Graph::new();
    let d_in: Vec<NodeId> = (0..d.len() as u32).map(|i| g.input(i)).collect();
    let f_in: Vec<NodeId> = (0..df.len() as u32).map(|i| g.input(d.len() as u32 + i)).collect();
    let lprev: Vec<NodeId> = (0..k as u32).map(|a| g.input((d.len() + df.len()) as u32 + a)).collect();
    let rho: Vec<NodeId> = (0..k as u32).map(|a| g.state(a)).collect();
    let m: Vec<NodeId> = (0..(k * k) as u32).map(|e| g.state(k as u32 + e)).collect();
    let dot = |g: &mut Graph, terms: &[(NodeId, NodeId)]| -> NodeId {
        let mut acc: Option<NodeId> = None;
        for &(x, y) in terms {
            let t = g.mul(x, y);
            acc = Some(match acc {
                Some(a) => g.add(a, t),
                None => t,
            });
        }
        acc.unwrap_or_else(|| g.constant(0.0))
    };
    let f_of = |a: usize| df.iter().position(|&r| r == a).map(|i| f_in[i]);
    let d_of = |a: usize, c: usize| d.iter().position(|&e| e == (a, c)).map(|i| d_in[i]);
    let mut next = Vec::new();
    // rho <- rho D + l'
    for c in 0..k {
        let terms: Vec<(NodeId, NodeId)> = (0..k).filter_map(|a| d_of(a, c).map(|x| (rho[a], x))).collect();
        let s = dot(&mut g, &terms);
        next.push(g.add(s, lprev[c]));
    }
    // M <- M D
    for a in 0..k {
        for c in 0..k {
            let terms: Vec<(NodeId, NodeId)> = (0..k).filter_map(|b| d_of(b, c).map(|x| (m[a * k + b], x))).collect();
            next.push(dot(&mut g, &terms));
        }
    }
    // q = rho . f, u = M f (with the values before the update)
    let terms: Vec<(NodeId, NodeId)> = (0..k).filter_map(|a| f_of(a).map(|f| (rho[a], f))).collect();
    next.push(dot(&mut g, &terms));
    for a in 0..k {
        let terms: Vec<(NodeId, NodeId)> = (0..k).filter_map(|c| f_of(c).map(|f| (m[a * k + c], f))).collect();
        next.push(dot(&mut g, &terms));
    }
    let mut names: Vec<(String, SymKind)> = (0..k).map(|a| (format!("rho{a}"), SymKind::State)).collect();
    names.extend((0..k * k).map(|e| (format!("M{}{}", e / k, e % k), SymKind::State)));
    names.push(("q".into(), SymKind::State));
    names.extend((0..k).map(|a| (format!("u{a}"), SymKind::State)));
    names.extend(d.iter().map(|(a, c)| (format!("D{a}{c}"), SymKind::Input)));
    names.extend(df.iter().map(|a| (format!("f{a}"), SymKind::Input)));
    names.extend((0..k).map(|a| (format!("lprev{a}"), SymKind::Input)));
    let (graph, next) = g.extract(&next);
    let step = derived_step(deriv_step, &format!("{}.drtrl_window_in{input}", deriv_step.model.name), graph, next, &names, "D-RTRL window recursion");
    TraceStep { step, d, df, drive_states, k }
}

/// Whether state `state` of `step` is the same every step: its next value reads no state,
/// input, time or random draw (only params, constants and dt). A derivative output that
/// is (D and Df of a linear model without a differentiable reset, for instance) needs to
/// be kept once, not every step, by a method that tapes them (BPTT).
pub fn is_time_invariant(step: &Step, state: usize) -> bool {
    use crate::ir::Op;
    step.graph.ancestors(&[step.next[state]]).iter().all(|&n| {
        !matches!(step.graph.op(n), Op::State(_) | Op::Input(_) | Op::Post(_) | Op::Time | Op::Rand(_) | Op::Randn(_) | Op::Weight | Op::PreSpike)
    })
}

/// The BPTT adjoint step of a population and where its inputs come from.
#[derive(Clone, Debug)]
pub struct AdjointStep {
    pub step: Step,
    /// The population-step states (derivative outputs) read as inputs, in input order:
    /// the non-zero D[a][c], Df[a][j] and dh_a/dtheta_j, then ds/dh_a for every a.
    pub deriv_states: Vec<usize>,
    pub k: usize,
    pub n_in: usize,
    pub n_p: usize,
}

/// The per-step adjoint (reverse-mode) update of BPTT for one population, from the
/// derivatives its step wrote at step t:
///
///   lambda'_a = lambda_a + l_a + sbar ds_a/dh + hbar_a        (dL/dh^t from every path)
///   mu_j      = sum_a lambda'_a Df[a][j]                     (dL/dy^t, per kernel input)
///   g_j       = sum_a lambda'_a dh_a/dtheta_j                (per trainable param)
///   lambda_c  <- sum_a lambda'_a D[a][c]                     (dL/dh^{t-1})
///
/// with `l` the step's own learning signal, `sbar` dL/ds^t carried from the projections
/// that read the spike and `hbar` dL/dh^t from those that read a state. States: lambda
/// (K, read and written), then mu (n_in) and g (n_p), written only. Inputs: the
/// population-step states listed in `deriv_states` (structural zeros of D, Df and
/// dh/dtheta left out), then l (K), hbar (K) and sbar (1).
pub fn adjoint_step(deriv_step: &Step, dl: &DerivLayout) -> AdjointStep {
    let (k, n_in, n_p) = (dl.k, dl.n_in, dl.n_p);
    let zero_at = |state: usize| deriv_step.graph.is_zero(deriv_step.next[state]);
    let mut g = Graph::new();
    let mut deriv_states = Vec::new();
    let input = |g: &mut Graph, state: usize, deriv_states: &mut Vec<usize>| -> Option<NodeId> {
        if zero_at(state) {
            return None;
        }
        deriv_states.push(state);
        Some(g.input(deriv_states.len() as u32 - 1))
    };
    let d: Vec<Vec<Option<NodeId>>> = (0..k).map(|a| (0..k).map(|c| input(&mut g, dl.d + a * k + c, &mut deriv_states)).collect()).collect();
    let df: Vec<Vec<Option<NodeId>>> = (0..k).map(|a| (0..n_in).map(|j| input(&mut g, dl.df + a * n_in + j, &mut deriv_states)).collect()).collect();
    let dp: Vec<Vec<Option<NodeId>>> = (0..k).map(|a| (0..n_p).map(|j| input(&mut g, dl.dp + a * n_p + j, &mut deriv_states)).collect()).collect();
    // ds/dh is read whole (a zero entry is rare and costs one multiply).
    let first_ds = deriv_states.len();
    deriv_states.extend((0..k).map(|a| dl.ds + a));
    let ds: Vec<NodeId> = (0..k).map(|a| g.input((first_ds + a) as u32)).collect();
    let base = deriv_states.len() as u32;
    let l: Vec<NodeId> = (0..k as u32).map(|a| g.input(base + a)).collect();
    let hbar: Vec<NodeId> = (0..k as u32).map(|a| g.input(base + k as u32 + a)).collect();
    let sbar = g.input(base + 2 * k as u32);
    let lam: Vec<NodeId> = (0..k as u32).map(|a| g.state(a)).collect();
    // The same association as the reference loop: lambda + ((l + sbar ds) + hbar).
    let lamp: Vec<NodeId> = (0..k)
        .map(|a| {
            let s = g.mul(sbar, ds[a]);
            let ls = g.add(l[a], s);
            let all = g.add(ls, hbar[a]);
            g.add(lam[a], all)
        })
        .collect();
    let contract = |g: &mut Graph, col: &dyn Fn(usize) -> Option<NodeId>| -> NodeId {
        let mut acc: Option<NodeId> = None;
        for (a, &lp) in lamp.iter().enumerate() {
            if let Some(m) = col(a) {
                let term = g.mul(lp, m);
                acc = Some(match acc {
                    Some(x) => g.add(x, term),
                    None => term,
                });
            }
        }
        acc.unwrap_or_else(|| g.constant(0.0))
    };
    let mut next: Vec<NodeId> = (0..k).map(|c| contract(&mut g, &|a| d[a][c])).collect();
    next.extend((0..n_in).map(|j| contract(&mut g, &|a| df[a][j])).collect::<Vec<_>>());
    next.extend((0..n_p).map(|j| contract(&mut g, &|a| dp[a][j])).collect::<Vec<_>>());
    let mut names: Vec<(String, SymKind)> = (0..k).map(|a| (format!("lambda{a}"), SymKind::State)).collect();
    names.extend((0..n_in).map(|j| (format!("mu{j}"), SymKind::State)));
    names.extend((0..n_p).map(|j| (format!("g{j}"), SymKind::State)));
    names.extend(deriv_states.iter().map(|s| (format!("deriv{s}"), SymKind::Input)));
    names.extend((0..k).map(|a| (format!("l{a}"), SymKind::Input)));
    names.extend((0..k).map(|a| (format!("hbar{a}"), SymKind::Input)));
    names.push(("sbar".into(), SymKind::Input));
    let (graph, next) = g.extract(&next);
    let step = derived_step(deriv_step, &format!("{}.bptt_adjoint", deriv_step.model.name), graph, next, &names, "BPTT per-step adjoint");
    AdjointStep { step, deriv_states, k, n_in, n_p }
}

/// A step with the given graph, next values and symbols (in kind order within each
/// kind: the leaves' indices follow it), taking the rest from `base`.
fn derived_step(base: &Step, name: &str, graph: Graph, next: Vec<NodeId>, symbols: &[(String, SymKind)], note: &str) -> Step {
    let mut model = base.model.clone();
    model.name = name.to_string();
    model.symbols = symbols
        .iter()
        .map(|(n, kind)| Symbol { name: n.clone(), kind: *kind, dim: Dim::ONE, value: None, trainable: false, bounds: None, span: base.model.span })
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
        dt: base.dt,
    }
}
