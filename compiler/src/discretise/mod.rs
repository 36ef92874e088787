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

pub mod expm;
pub mod trace;

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
    /// `s = H(u)` read from a stored state (the `State` leaves); 0 while refractory.
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
    let ref_sym = m.refractory.as_ref().map(|r| {
        m.symbols.push(Symbol {
            name: "_refractory".into(),
            kind: SymKind::State,
            dim: Dim::TIME,
            value: None,
            trainable: false,
            span: r.span,
        });
        m.symbols.len() - 1
    });
    let layout = Layout::of(&m);
    let mut g = Graph::new();
    let n_states = layout.states.len();
    let leaves: Vec<NodeId> = (0..n_states as u32).map(|k| g.state(k)).collect();
    let dt = g.leaf(Op::Dt);
    let state_index = |sym: SymId| layout.state_index(sym).map(|k| k as usize);

    // The spike, read from the stored state (State leaves).
    let mut spike_arg = None;
    let mut spike_scale = None;
    let mut spike = None;
    let mut reset_spike = None;
    if let Some(def) = &m.spike {
        let mut lw = Lowerer::new(&m);
        let scale = match spike_scale_expr(&m) {
            Some(e) => Some(lw.expr(&mut g, &e).map_err(lower_err)?),
            None => None,
        };
        let ls = lw.spike(&mut g, def, scale).map_err(lower_err)?;
        let (mut s, mut rs) = (ls.spike, ls.reset_spike);
        if let Some(alpha) = smooth {
            let a = g.constant(alpha);
            let az = g.mul(a, ls.arg);
            s = g.unary(Op::Sigmoid, az);
            rs = if m.reset_detached { g.stop_gradient(s) } else { s };
        }
        if let Some(r) = ref_sym.and_then(state_index) {
            // No spike in a refractory step: the stored counter is > -dt/2 exactly then.
            let half = g.constant(-0.5);
            let lim = g.mul(half, dt);
            let free = g.binary(Op::Le, leaves[r], lim);
            s = g.mul(s, free);
            rs = g.mul(rs, free);
        }
        spike_arg = Some(ls.arg);
        spike_scale = scale;
        spike = Some(s);
        reset_spike = Some(rs);
    }

    // Events at the start of the step.
    let mut cur = leaves.clone();
    if let Some(s) = reset_spike {
        for u in &m.on_spike {
            let k = state_index(u.target).expect("update of a state");
            let value = lower_at(&m, &mut g, &cur, &u.value)?;
            cur[k] = if smooth.is_some() {
                let new = ir::lower::apply_update(&mut g, cur[k], u.op, value);
                let jump = g.sub(new, cur[k]);
                let t = g.mul(s, jump);
                g.add(cur[k], t)
            } else {
                gated_update(&mut g, cur[k], u.op, value, s)
            };
        }
    }
    let mut refractory_now = None;
    if let (Some(r), Some(rsym)) = (&m.refractory, ref_sym) {
        let k = state_index(rsym).expect("refractory state");
        let period = lower_at(&m, &mut g, &cur, &r.period)?;
        let s = spike.expect("a refractory neuron spikes (checked)");
        cur[k] = g.select(s, period, cur[k]);
        let half = g.constant(0.5);
        let lim = g.mul(half, dt);
        refractory_now = Some(g.binary(Op::Gt, cur[k], lim));
    }
    // `on pre`: in a standalone synapse model, gated by its `pre` event; in a composed
    // population, applied every step with the summed input (0 when nothing arrived).
    let pre_gate = (m.kind == crate::syntax::ast::ModelKind::Synapse).then(|| g.leaf(Op::PreSpike));
    for u in &m.on_pre {
        let k = state_index(u.target).expect("update of a state");
        let value = lower_at(&m, &mut g, &cur, &u.value)?;
        cur[k] = match pre_gate {
            Some(pre) => gated_update(&mut g, cur[k], u.op, value, pre),
            None => ir::lower::apply_update(&mut g, cur[k], u.op, value),
        };
    }

    // Integration.
    let ode_states: Vec<usize> = m.odes.iter().map(|(s, _)| state_index(*s).expect("ode of a state")).collect();
    let mut lw = Lowerer::new(&m);
    let mut f_leaf = Vec::new();
    for (_, rhs) in &m.odes {
        f_leaf.push(lw.expr(&mut g, rhs).map_err(lower_err)?);
    }
    let ode_leaves: Vec<NodeId> = ode_states.iter().map(|&k| leaves[k]).collect();
    let a = ir::jacobian(&mut g, &f_leaf, &ode_leaves);
    let linear = a.entries.iter().all(|&e| !leaves.iter().any(|&l| g.depends_on(e, l)));
    let exact_ok = linear && exact_structure(&g, &a, &f_leaf, &ode_leaves);
    // With params and dt known, A may be a constant matrix: exact by the numerical
    // matrix exponential whatever the coupling.
    let numeric = match fixed {
        Some((params, dt_value)) if linear && !exact_ok => numeric_a(&mut g, &a, params, dt_value),
        _ => None,
    };
    let (method, mut method_note) = choose_method(&m, linear, exact_ok || numeric.is_some());

    let mut end = cur.clone();
    if let (Method::Exact, Some((a_num, dt_value))) = (method, &numeric) {
        method_note = "exact: numerical propagators exp(A dt) (Pade), params and dt fixed for this population".into();
        let (p, q) = expm::propagators(a_num, *dt_value).ok_or_else(|| {
            Diagnostic::error("E0502", m.span, format!("`{}`: the propagator of its linear equations is not finite", m.name))
        })?;
        let zero = g.constant(0.0);
        let zero_map: std::collections::HashMap<NodeId, NodeId> = leaves.iter().map(|&l| (l, zero)).collect();
        let b = g.substitute(&f_leaf, &zero_map);
        for (i, &ki) in ode_states.iter().enumerate() {
            let mut terms = Vec::new();
            for (j, &kj) in ode_states.iter().enumerate() {
                if p.get(i, j) != 0.0 {
                    let c = g.constant(p.get(i, j));
                    terms.push(g.mul(c, cur[kj]));
                }
                if q.get(i, j) != 0.0 {
                    let c = g.constant(q.get(i, j));
                    terms.push(g.mul(c, b[j]));
                }
            }
            end[ki] = g.sum(&terms);
        }
    } else {
    match method {
        Method::Exact => {
            let zero = g.constant(0.0);
            let zero_map: std::collections::HashMap<NodeId, NodeId> = leaves.iter().map(|&l| (l, zero)).collect();
            let b = g.substitute(&f_leaf, &zero_map);
            for (i, &ki) in ode_states.iter().enumerate() {
                let aii = a.get(i, i);
                let adt = g.mul(aii, dt);
                let e = g.unary(Op::Exp, adt);
                let phi_arg = g.unary(Op::Exprel, adt);
                let phi = g.mul(dt, phi_arg);
                let mut terms = vec![g.mul(e, cur[ki])];
                terms.push(g.mul(phi, b[i]));
                for (j, &kj) in ode_states.iter().enumerate() {
                    if i == j || a.is_structural_zero(&g, i, j) {
                        continue;
                    }
                    // x_i gains c * x_j0 * dt * e^{a_i dt} * exprel((a_j - a_i) dt):
                    // the divided difference of exp, finite when a_i = a_j.
                    let diff = g.sub(a.get(j, j), aii);
                    let ddt = g.mul(diff, dt);
                    let ex = g.unary(Op::Exprel, ddt);
                    let w = g.mul(dt, e);
                    let w = g.mul(w, ex);
                    let c = g.mul(a.get(i, j), cur[kj]);
                    terms.push(g.mul(c, w));
                }
                end[ki] = g.sum(&terms);
            }
        }
        Method::ExpEuler => {
            let map: std::collections::HashMap<NodeId, NodeId> = leaves.iter().copied().zip(cur.iter().copied()).collect();
            let f_cur = eval_odes(&m, &mut g, &cur, None)?;
            let diag: Vec<NodeId> = (0..ode_states.len()).map(|i| a.get(i, i)).collect();
            let a_cur = g.substitute(&diag, &map);
            for (i, &ki) in ode_states.iter().enumerate() {
                let adt = g.mul(a_cur[i], dt);
                let phi = g.unary(Op::Exprel, adt);
                let step = g.mul(dt, phi);
                let inc = g.mul(step, f_cur[i]);
                end[ki] = g.add(cur[ki], inc);
            }
        }
        Method::Euler => {
            let f = eval_odes(&m, &mut g, &cur, None)?;
            for (i, &ki) in ode_states.iter().enumerate() {
                let inc = g.mul(dt, f[i]);
                end[ki] = g.add(cur[ki], inc);
            }
        }
        Method::Rk2 => {
            let k1 = eval_odes(&m, &mut g, &cur, None)?;
            let half = g.constant(0.5);
            let hdt = g.mul(half, dt);
            let mid = offset(&mut g, &cur, &ode_states, &k1, hdt);
            let k2 = eval_odes(&m, &mut g, &mid, Some(hdt))?;
            for (i, &ki) in ode_states.iter().enumerate() {
                let inc = g.mul(dt, k2[i]);
                end[ki] = g.add(cur[ki], inc);
            }
        }
        Method::Rk4 => {
            let half = g.constant(0.5);
            let hdt = g.mul(half, dt);
            let k1 = eval_odes(&m, &mut g, &cur, None)?;
            let x2 = offset(&mut g, &cur, &ode_states, &k1, hdt);
            let k2 = eval_odes(&m, &mut g, &x2, Some(hdt))?;
            let x3 = offset(&mut g, &cur, &ode_states, &k2, hdt);
            let k3 = eval_odes(&m, &mut g, &x3, Some(hdt))?;
            let x4 = offset(&mut g, &cur, &ode_states, &k3, dt);
            let k4 = eval_odes(&m, &mut g, &x4, Some(dt))?;
            let two = g.constant(2.0);
            let sixth = g.constant(6.0);
            for (i, &ki) in ode_states.iter().enumerate() {
                let a2 = g.mul(two, k2[i]);
                let a3 = g.mul(two, k3[i]);
                let s = g.sum(&[k1[i], a2, a3, k4[i]]);
                let w = g.div(dt, sixth);
                let inc = g.mul(w, s);
                end[ki] = g.add(cur[ki], inc);
            }
        }
    }

    }

    // Refractoriness: clamped states hold their post-event value; the counter runs down.
    if let (Some(r), Some(rsym), Some(is_ref)) = (&m.refractory, ref_sym, refractory_now) {
        for &c in &r.clamp {
            if let Some(k) = state_index(c) {
                end[k] = g.select(is_ref, cur[k], end[k]);
            }
        }
        let k = state_index(rsym).expect("refractory state");
        let left = g.sub(cur[k], dt);
        let floor = g.neg(dt);
        end[k] = g.binary(Op::Max, left, floor);
    }
    let random_slots = lw_random_slots(&m);
    Ok(Step {
        model: m,
        graph: g,
        layout,
        method,
        method_note,
        n_hidden,
        next: end,
        spike,
        spike_arg,
        spike_scale,
        random_slots,
        dt: fixed.map(|(_, dt)| dt),
    })
}

/// `cur op= value`, applied only where the spike `s` is 1, keeping the forward value
/// exact and the gradient through `s`: additive updates as `cur ± s * value` (the golden
/// form `v - theta * s`), others as `select(s, new, cur) + (s - sg(s)) * (new - cur)`
/// whose second term is exactly 0 forward and carries `d s` backward.
fn gated_update(g: &mut Graph, cur: NodeId, op: UpdateOp, value: NodeId, s: NodeId) -> NodeId {
    match op {
        UpdateOp::Add => {
            let t = g.mul(s, value);
            g.add(cur, t)
        }
        UpdateOp::Sub => {
            let t = g.mul(s, value);
            g.sub(cur, t)
        }
        _ => {
            let new = ir::lower::apply_update(g, cur, op, value);
            let fwd = g.select(s, new, cur);
            let stop = g.stop_gradient(s);
            let ds = g.sub(s, stop);
            let jump = g.sub(new, cur);
            let st = g.mul(ds, jump);
            g.add(fwd, st)
        }
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

/// The right-hand sides at state `x`, time shifted by `dt_shift` (RK stages).
fn eval_odes(m: &Model, g: &mut Graph, x: &[NodeId], dt_shift: Option<NodeId>) -> Result<Vec<NodeId>, Diagnostic> {
    let mut lw = Lowerer::new(m);
    bind_states(m, &mut lw, x);
    if let (Some(shift), Some(tsym)) = (dt_shift, m.symbols.iter().position(|s| s.kind == SymKind::Time)) {
        let t = g.leaf(Op::Time);
        let ts = g.add(t, shift);
        lw.bind(tsym, ts);
    }
    m.odes.iter().map(|(_, rhs)| lw.expr(g, rhs).map_err(lower_err)).collect()
}

fn offset(g: &mut Graph, cur: &[NodeId], ode_states: &[usize], k: &[NodeId], h: NodeId) -> Vec<NodeId> {
    let mut x = cur.to_vec();
    for (i, &ki) in ode_states.iter().enumerate() {
        let inc = g.mul(h, k[i]);
        x[ki] = g.add(cur[ki], inc);
    }
    x
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

/// A as numbers when every entry is a constant once `params` and `dt` are substituted.
fn numeric_a(g: &mut Graph, a: &Jacobian, params: &[Option<f64>], dt: f64) -> Option<(expm::Mat, f64)> {
    let mut map = std::collections::HashMap::new();
    for (k, v) in params.iter().enumerate() {
        if let Some(v) = v {
            let leaf = g.param(k as u32);
            let c = g.constant(*v);
            map.insert(leaf, c);
        }
    }
    let dt_leaf = g.leaf(Op::Dt);
    let dt_c = g.constant(dt);
    map.insert(dt_leaf, dt_c);
    let entries = g.substitute(&a.entries, &map);
    let values: Option<Vec<f64>> = entries.iter().map(|&e| g.const_value(e)).collect();
    let values = values?;
    Some((expm::Mat { n: a.rows, a: values }, dt))
}

/// Whether `exact` can be built symbolically: a linear system whose couplings go one
/// level deep (x_i may depend on x_j when x_j depends on no other state and has no
/// constant drive), which covers neurons with exponential synapses and alpha synapses.
fn exact_structure(g: &Graph, a: &Jacobian, f: &[NodeId], leaves: &[NodeId]) -> bool {
    let n = a.rows;
    let has_in = |j: usize| (0..n).any(|k| k != j && !a.is_structural_zero(g, j, k));
    for i in 0..n {
        for j in 0..n {
            if i == j || a.is_structural_zero(g, i, j) {
                continue;
            }
            if has_in(j) {
                return false;
            }
            // x_j must be homogeneous (dx_j/dt = a_jj x_j): f_j is zero at x = 0.
            if !is_homogeneous(g, f[j], leaves) {
                return false;
            }
        }
    }
    true
}

/// f is a sum of terms each proportional to a state leaf (no constant drive).
fn is_homogeneous(g: &Graph, f: NodeId, leaves: &[NodeId]) -> bool {
    match g.op(f) {
        Op::State(_) => leaves.contains(&f),
        Op::Add | Op::Sub => g.args(f).iter().all(|&x| is_homogeneous(g, x, leaves)),
        Op::Neg => is_homogeneous(g, g.args(f)[0], leaves),
        Op::Mul => g.args(f).iter().any(|&x| is_homogeneous(g, x, leaves)),
        Op::Div => is_homogeneous(g, g.args(f)[0], leaves),
        Op::Const(v) => v == 0.0,
        _ => false,
    }
}

fn choose_method(m: &Model, linear: bool, exact_ok: bool) -> (Method, String) {
    match m.method {
        Some(Method::Exact) if exact_ok => (Method::Exact, "exact (asked for; linear system)".into()),
        Some(Method::Exact) => (
            Method::ExpEuler,
            if linear {
                "exp_euler: `exact` was asked for, but the couplings between states go more than one level deep".into()
            } else {
                "exp_euler: `exact` was asked for, but the equations are not linear in the states".into()
            },
        ),
        Some(other) => (other, format!("{} (asked for)", other.name())),
        None if m.odes.is_empty() => (Method::Exact, "no equations: states change only by events".into()),
        None if exact_ok => (Method::Exact, "exact (the default for linear systems): propagators exp(A dt) in closed form".into()),
        None if linear => (Method::ExpEuler, "exp_euler: linear, but coupled too deeply for closed-form propagators".into()),
        None => (Method::ExpEuler, "exp_euler (the default for non-linear equations)".into()),
    }
}

/// The normaliser of the spike argument: how far the reset moves the compared state
/// (`v -= X` gives X; `v = v_reset` gives `threshold - v_reset`), so that
/// u = (v - v_th) / (v_th - v_reset) as braintrace/brainpy normalise it.
fn spike_scale_expr(m: &Model) -> Option<crate::sema::TExpr> {
    let def = m.spike.as_ref()?;
    let TKind::Binary(op, l, r) = &def.condition.kind else { return None };
    let (hi, lo) = match op {
        BinOp::Gt | BinOp::Ge => (l, r),
        BinOp::Lt | BinOp::Le => (r, l),
        _ => return None,
    };
    let TKind::Sym(v) = hi.kind else { return None };
    let u = m.on_spike.iter().find(|u| u.target == v)?;
    match u.op {
        UpdateOp::Sub => Some(u.value.clone()),
        UpdateOp::Set => {
            // threshold - reset value, where the threshold is the comparison's other side
            // with states at rest (their declared initial values are not needed: use the
            // constant part only if the threshold reads no state).
            let mut reads_state = false;
            lo.visit_syms(&mut |s| reads_state |= m.symbols[s].kind == SymKind::State);
            if reads_state {
                return None;
            }
            Some(crate::sema::TExpr {
                kind: TKind::Binary(BinOp::Sub, Box::new((**lo).clone()), Box::new(u.value.clone())),
                ty: lo.ty,
                span: def.span,
            })
        }
        _ => None,
    }
}
