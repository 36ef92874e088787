//! Discretisation: from a model's ODEs and events to one step `h^t = f(h^{t-1}, y^t)`,
//! and the derivatives online learning needs (D = dh^t/dh^{t-1}, Df = dh^t/dy^t).
//!
//! Order within step t (the convention of ../shared/ALGORITHMS.md and the golden files):
//! 1. the spike of the previous step, `s^{t-1} = H(u(h^{t-1}))`, is read from the stored
//!    (pre-reset) state;
//! 2. its events are applied: `on spike` updates (differentiable in `s` through the
//!    surrogate unless detached), the refractory counter restarts, then the `on pre`
//!    updates of composed synapses (with this step's input `y^t`);
//! 3. the ODEs are integrated over `dt` from there, inputs held constant (zero-order
//!    hold); states clamped by refractoriness keep their value;
//! 4. the result is stored: `s^t = H(u(h^t))` is read from it in the next step, and by
//!    the network (0 while refractory).
//!
//! Integrators: `exact` (linear systems: `exp(A dt)` built symbolically in the params;
//! singular cases such as tau_m = tau_s are handled through `exprel`), `exp_euler`
//! (`x + dt * exprel(a dt) * f(x)` with `a = df/dx`, exact for each state's own linear
//! part), `euler`, `rk2` (midpoint), `rk4`.
//!
//! The phases live in `events` (steps 1 and 2), `refractory` (the counter, the spike's
//! gate and the clamp) and `integrate` (step 3), as methods of one `StepCx`.

pub mod expm;
pub mod trace;

mod events;
mod integrate;
mod refractory;

use crate::diag::Diagnostic;
use crate::ir::{self, Graph, Jacobian, Layout, Lowerer, NodeId, Op};
use crate::sema::{Method, Model, SymId, SymKind, Symbol, TKind, UpdateOp};
use crate::syntax::ast::BinOp;
use crate::units::Dim;

/// One discrete step of a model, as IR.
#[derive(Clone, Debug)]
pub struct Step {
    /// The model the step was made from; a refractory counter, if any, is appended to
    /// its states as `_refractory` (time left, in seconds).
    pub model: Model,
    pub graph: Graph,
    pub layout: Layout,
    pub method: Method,
    /// Why this integrator (for `snnc explain`).
    pub method_note: String,
    /// The first `n_hidden` states of the layout are the hidden group h (K = n_hidden).
    pub n_hidden: usize,
    /// `next[k]` = state k after the step, from `State` leaves (h^{t-1}), `Input`
    /// leaves (y^t), params, `Time`, `Dt` and random draws.
    pub next: Vec<NodeId>,
    /// What the population sends, read from a stored state (the `State` leaves): the
    /// spike `s = H(u)` (0 while refractory), or the neuron's declared `output` - times
    /// `s` (a graded event) when it spikes, alone (a rate) when it does not.
    pub spike: Option<NodeId>,
    /// `u`, the normalised spike argument.
    pub spike_arg: Option<NodeId>,
    /// What `lhs - rhs` of the spike condition is divided by (`None`: not normalised).
    pub spike_scale: Option<NodeId>,
    /// Random draws per step are slots `0..random_slots`.
    pub random_slots: u32,
    /// The time step (s) the step is made for: `Some` once the pipeline has fixed it
    /// (every backend folds this value into its kernel; there is no other source of dt
    /// below the pipeline), `None` for a symbolic step (`snnc explain --model`), which
    /// no backend takes.
    pub dt: Option<f64>,
}

/// Where [`Step::with_derivative_outputs`] puts the derivatives among the states:
/// D[a][c] is state `d + a * k + c`, Df[a][j] is `df + a * n_in + j`, ds/dh_a is `ds + a`,
/// and dh_a/dtheta_j of the j-th trainable param ([`Step::trainable_params`]) is
/// `dp + a * n_p + j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerivLayout {
    pub d: usize,
    pub df: usize,
    pub ds: usize,
    pub dp: usize,
    pub k: usize,
    pub n_in: usize,
    pub n_p: usize,
}

/// The derivatives of a step, as IR in the step's graph.
#[derive(Clone, Debug)]
pub struct Derivatives {
    /// D = d h^t / d h^{t-1}: K x K (inputs held constant).
    pub d: Jacobian,
    /// Df = d h^t / d y^t: K x (number of inputs).
    pub df: Jacobian,
    /// d s / d h: 1 x K, the surrogate derivative of the spike with respect to each state.
    pub dspike: Option<Jacobian>,
}

impl Step {
    /// The params marked `trainable`, as indices into the layout's params (the order
    /// of the columns of dh/dtheta).
    pub fn trainable_params(&self) -> Vec<usize> {
        self.layout.params.iter().enumerate().filter(|(_, s)| self.model.symbols[**s].trainable).map(|(k, _)| k).collect()
    }

    pub fn state_leaves(&mut self) -> Vec<NodeId> {
        (0..self.layout.states.len() as u32).map(|k| self.graph.state(k)).collect()
    }

    /// D, Df and the spike's state derivative.
    pub fn derivatives(&mut self) -> Derivatives {
        let k = self.n_hidden;
        let states: Vec<NodeId> = (0..k as u32).map(|i| self.graph.state(i)).collect();
        let inputs: Vec<NodeId> = (0..self.layout.inputs.len() as u32).map(|i| self.graph.input(i)).collect();
        let next = self.next[..k].to_vec();
        let d = ir::jacobian(&mut self.graph, &next, &states);
        let df = ir::jacobian(&mut self.graph, &next, &inputs);
        let dspike = self.spike.map(|s| ir::jacobian(&mut self.graph, &[s], &states));
        Derivatives { d, df, dspike }
    }

    /// The step extended with outputs for learning: after the real states come
    /// D (K x K, at h^{t-1}), Df (K x inputs, at h^{t-1}) and ds/dh at the new state h^t,
    /// as extra "states" that the step writes and never reads. Any backend that runs a
    /// step (interpreter, JIT) then produces the derivatives in the same pass.
    ///
    /// A non-spiking model (a readout with dynamics, e.g. `LeakyReadout`) is read through
    /// its first state: its "ds/dh" is then d h_0 / dh, the unit vector e_0.
    pub fn with_derivative_outputs(&self) -> Result<(Step, DerivLayout), Diagnostic> {
        let mut st = self.clone();
        if st.n_hidden == 0 {
            return Err(Diagnostic::error("E0503", st.model.span, format!("`{}` has no state: no learning signal through it", st.model.name)));
        }
        let der = st.derivatives();
        let ds_new = match der.dspike {
            // ds/dh read at the new state: substitute each state leaf by its next value.
            Some(ds) => {
                let leaves: Vec<NodeId> = (0..st.layout.states.len() as u32).map(|k| st.graph.state(k)).collect();
                let map: std::collections::HashMap<NodeId, NodeId> = leaves.iter().copied().zip(st.next.iter().copied()).collect();
                st.graph.substitute(&ds.entries, &map)
            }
            None => (0..st.n_hidden).map(|a| st.graph.constant(if a == 0 { 1.0 } else { 0.0 })).collect(),
        };
        let k = st.n_hidden;
        let n_in = st.layout.inputs.len();
        let base = st.layout.states.len();
        // dh^t/dtheta for trainable params (per neuron; the runtime never folds them).
        let trainable = st.trainable_params();
        let param_leaves: Vec<NodeId> = trainable.iter().map(|&j| st.graph.param(j as u32)).collect();
        let next = st.next[..k].to_vec();
        let dp = ir::jacobian(&mut st.graph, &next, &param_leaves);
        // The learning signal reaches a param through the states only (dL/dh . dh/dtheta):
        // a param the spike condition reads directly (a trainable threshold) would need
        // ds/dtheta as well, which the runtime does not take yet.
        if let (Some(spike), false) = (st.spike, param_leaves.is_empty()) {
            let ds = ir::jacobian(&mut st.graph, &[spike], &param_leaves);
            if let Some(j) = (0..trainable.len()).find(|&j| !st.graph.is_zero(ds.entries[j])) {
                let name = st.param_name(trainable[j]).to_string();
                return Err(Diagnostic::error("E0504", st.model.span, format!("trainable param `{name}` of `{}` is read by the spike condition: not supported yet", st.model.name))
                    .with_label("in this model")
                    .with_help("train params that act through the states (time constants, couplings), or keep this one fixed"));
            }
        }
        let mut outputs = der.d.entries.clone();
        outputs.extend(&der.df.entries);
        outputs.extend(&ds_new);
        outputs.extend(&dp.entries);
        for (o, _) in outputs.iter().enumerate() {
            st.model.symbols.push(Symbol {
                name: format!("_deriv{o}"),
                kind: SymKind::State,
                dim: Dim::ONE,
                value: None,
                trainable: false,
                bounds: None,
                span: st.model.span,
            });
        }
        st.layout = Layout::of(&st.model);
        st.next.extend(outputs);
        let ds = base + k * k + k * n_in;
        Ok((st, DerivLayout { d: base, df: base + k * k, ds, dp: ds + k, k, n_in, n_p: trainable.len() }))
    }

    /// The per-step adjoint (vector-Jacobian product) BPTT needs: for cotangents
    /// `lambda` of h^t (nodes the caller provides, one per hidden state), returns
    /// `(lambda^T D, lambda^T Df)`: the cotangents of h^{t-1} and of y^t. Built by
    /// reverse-mode differentiation of the same graph D and Df come from.
    pub fn vjp(&mut self, lambda: &[NodeId]) -> (Vec<NodeId>, Vec<NodeId>) {
        let k = self.n_hidden;
        assert_eq!(lambda.len(), k, "one cotangent per hidden state");
        let mut wrt: Vec<NodeId> = (0..k as u32).map(|i| self.graph.state(i)).collect();
        wrt.extend((0..self.layout.inputs.len() as u32).map(|i| self.graph.input(i)));
        let next = self.next[..k].to_vec();
        let mut all = ir::vjp(&mut self.graph, &next, lambda, &wrt);
        let dy = all.split_off(k);
        (all, dy)
    }

    pub fn state_name(&self, k: usize) -> &str {
        &self.model.symbols[self.layout.states[k]].name
    }

    pub fn input_name(&self, k: usize) -> &str {
        &self.model.symbols[self.layout.inputs[k]].name
    }

    pub fn param_name(&self, k: usize) -> &str {
        &self.model.symbols[self.layout.params[k]].name
    }

    /// The step with input `k` read as the constant `values[k]` where that is `Some`:
    /// for a runtime that knows an input is the same for every neuron at every step (a
    /// uniform drive, or nothing ever delivered), so that a kernel folds it as it folds a
    /// uniform param instead of loading it. The layout keeps the input: its slice is
    /// still passed, and no longer read.
    pub fn with_constant_inputs(&self, values: &[Option<f64>]) -> Step {
        let mut st = self.clone();
        let mut map = std::collections::HashMap::new();
        for (k, v) in values.iter().enumerate().take(st.layout.inputs.len()) {
            if let Some(v) = v {
                let (leaf, c) = (st.graph.input(k as u32), st.graph.constant(*v));
                map.insert(leaf, c);
            }
        }
        if map.is_empty() {
            return st;
        }
        let singles = [st.spike, st.spike_arg, st.spike_scale];
        let mut roots = st.next.clone();
        roots.extend(singles.iter().flatten());
        let mut new = st.graph.substitute(&roots, &map).into_iter();
        st.next = new.by_ref().take(st.next.len()).collect();
        [st.spike, st.spike_arg, st.spike_scale] = singles.map(|s| s.map(|_| new.next().expect("one root per node")));
        st
    }

    /// The step made for time step `dt` (the pipeline's one decision about dt).
    pub fn at_dt(mut self, dt: f64) -> Step {
        self.dt = Some(dt);
        self
    }
}

fn lower_err(e: ir::LowerError) -> Diagnostic {
    Diagnostic::error("E0501", e.span, e.message).with_label("cannot be compiled")
}

/// Discretises a checked neuron (or composed hidden group, or synapse) model.
pub fn discretise(model: &Model) -> Result<Step, Diagnostic> {
    discretise_with(model, None, None)
}

/// Discretises with some params and `dt` known (a population whose params are the same
/// for every neuron): linear systems whose couplings are too deep for the closed form
/// then get exact propagators computed numerically (`expm`) instead of `exp_euler`.
/// `params[k]` is the value of the k-th param (layout order), `None` if per-neuron.
pub fn discretise_fixed(model: &Model, params: &[Option<f64>], dt: f64) -> Result<Step, Diagnostic> {
    discretise_with(model, None, Some((params, dt)))
}

/// A smooth variant for checking gradients: the spike is `sigmoid(alpha * z)` in the
/// forward pass too, resets interpolate linearly (`x + s * (new - x)`), and there is no
/// refractoriness. Its exact derivatives are what BPTT must reproduce, so finite
/// differences of a whole sequence can check every derivative path of a model.
pub fn discretise_smooth(model: &Model, alpha: f64) -> Result<Step, Diagnostic> {
    let mut m = model.clone();
    m.refractory = None;
    discretise_with(&m, Some(alpha), None)
}

fn discretise_with(model: &Model, smooth: Option<f64>, fixed: Option<(&[Option<f64>], f64)>) -> Result<Step, Diagnostic> {
    let mut m = model.clone();
    let n_hidden = m.states().count();
    let ref_sym = refractory::add_counter(&mut m);
    let mut cx = StepCx::new(m, ref_sym, smooth);
    // 1. The spike, read from the stored state (State leaves).
    let spike = cx.spike()?;
    // 2. Events at the start of the step.
    let mut cur = cx.leaves.clone();
    cx.on_spike(&mut cur, spike.reset)?;
    let refractory_now = cx.restart_refractory(&mut cur, spike.spike)?;
    cx.on_pre(&mut cur)?;
    // 3. Integration, then refractoriness.
    let (method, method_note, mut end) = cx.integrate(&cur, fixed)?;
    cx.hold_refractory(&cur, &mut end, refractory_now);
    let random_slots = lw_random_slots(&cx.m);
    let sent = cx.sent(spike.spike)?;
    let StepCx { m, g, layout, .. } = cx;
    Ok(Step {
        model: m,
        graph: g,
        layout,
        method,
        method_note,
        n_hidden,
        next: end,
        spike: sent,
        spike_arg: spike.arg,
        spike_scale: spike.scale,
        random_slots,
        dt: fixed.map(|(_, dt)| dt),
    })
}

/// What the phases of one discretisation share: the model, the graph being built and
/// the leaves every phase starts from.
struct StepCx {
    /// The model, with the refractory counter (if any) appended to its states.
    m: Model,
    g: Graph,
    layout: Layout,
    /// The `State` leaves: h^{t-1}.
    leaves: Vec<NodeId>,
    dt: NodeId,
    /// The refractory counter's symbol.
    ref_sym: Option<SymId>,
    /// `Some(alpha)`: the smooth variant ([`discretise_smooth`]).
    smooth: Option<f64>,
}

impl StepCx {
    fn new(m: Model, ref_sym: Option<SymId>, smooth: Option<f64>) -> StepCx {
        let layout = Layout::of(&m);
        let mut g = Graph::new();
        let n_states = layout.states.len();
        let leaves: Vec<NodeId> = (0..n_states as u32).map(|k| g.state(k)).collect();
        let dt = g.leaf(Op::Dt);
        StepCx { m, g, layout, leaves, dt, ref_sym, smooth }
    }

    fn state_index(&self, sym: SymId) -> Option<usize> {
        self.layout.state_index(sym).map(|k| k as usize)
    }
}

/// Lowers `e` with every state bound to `cur` (its value at this point of the step).
fn lower_at(m: &Model, g: &mut Graph, cur: &[NodeId], e: &crate::sema::TExpr) -> Result<NodeId, Diagnostic> {
    let mut lw = Lowerer::new(m);
    bind_states(m, &mut lw, cur);
    lw.expr(g, e).map_err(lower_err)
}

fn bind_states(m: &Model, lw: &mut Lowerer, cur: &[NodeId]) {
    let states: Vec<SymId> = m.states().map(|(id, _)| id).collect();
    for (k, sym) in states.into_iter().enumerate() {
        lw.bind(sym, cur[k]);
    }
}

fn lw_random_slots(m: &Model) -> u32 {
    // Random draws are numbered in lowering order by each Lowerer; the step's draws are
    // those of the equations and events. Count them as a fresh lowering would.
    let mut g = Graph::new();
    let mut lw = Lowerer::new(m);
    for (_, e) in &m.odes {
        let _ = lw.expr(&mut g, e);
    }
    for u in m.on_spike.iter().chain(&m.on_pre) {
        let _ = lw.expr(&mut g, &u.value);
    }
    lw.random_slots()
}
