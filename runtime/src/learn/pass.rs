//! The CPU's gradient pass, in the GPU learner's shape ([`crate::gpu::GpuGradient`]):
//! [`CpuGradient::new`] plans the gradient of the trainable names by one method for a
//! network and compiles the params' trace steps once; [`CpuGradient::run`] (or
//! [`CpuGradient::run_online`]) runs one batch, step by step: the network's step, the
//! loss, then the phases [`Pass::signals`], [`Pass::traces`] (or BPTT's tape),
//! [`Pass::update`] within the sequence and [`Pass::record`], and at the end
//! [`Pass::finish`] (the backward pass, the named gradients).

use super::bptt::{Bptt, Target};
use super::es::{self, EsGroup};
use super::exact::{ExactMember, ExactWindow};
use super::{
    Contractor, GradShape, Gradients, Method, Online, PopDerivs, Plan, Sequence, StepData, WINDOW, add_group_grads, add_outer, add_signal, back_project,
    bias_correction, check_data, check_online_reach, check_target, plan, read_derivs, record_into, to_f64, zero,
};
use crate::adapter::LowRank;
use crate::error::RuntimeError;
use crate::network::{Network, StepTrace};
use crate::scalar::Float;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, linalg::general_mat_mul};
use snnc_compiler::discretise::trace::TraceKind;

/// The gradient of `sum_t L^t` of the trainable names by one method, for networks of one
/// structure (the one it was made for, at any batch size).
pub struct CpuGradient<T: Float> {
    plan: Plan,
    method: Method,
    /// Per-step records ([`Gradients::per_step`], [`Gradients::recorded`]).
    record: bool,
    /// Whether the ES-D-RTRL contraction may run on a thread of its own (not when the
    /// batch is already split across threads).
    helper_thread: bool,
    /// Per etrace projection: whether its trace is exact (D-RTRL, and the weights into a
    /// readout with dynamics in every online method).
    exact: Vec<bool>,
    /// The trainable params' generated trace steps (online methods).
    param_kernels: Vec<Option<es::TraceKernel<T>>>,
}

impl<T: Float> CpuGradient<T> {
    /// Plans the gradient of `trainable` by `method` for `net` (built with
    /// `Options::learning`) and compiles what its steps need.
    pub fn new(net: &Network<T>, trainable: &[String], method: Method) -> Result<CpuGradient<T>, RuntimeError> {
        let plan = plan(net, trainable)?;
        let online = method != Method::Bptt;
        if let (true, Some(b)) = (online, plan.bn.first()) {
            return Err(RuntimeError::Build(format!(
                "`{}` has `batch_norm`: its batch statistics couple the batch elements at every step, which the per-element traces of {method} cannot carry; train it with bptt",
                b.name
            )));
        }
        if online {
            check_online_reach(net, &plan)?;
        }
        // A per-neuron param's trace dh^t/dtheta is exact in every online method, since it
        // acts on its own neuron only (D is per neuron): a generated trace step.
        let param_kernels = plan
            .params
            .iter()
            .map(|q| online.then(|| es::TraceKernel::new(net, q.pop, TraceKind::Param { col: q.col }, &[])).transpose())
            .collect::<Result<_, _>>()?;
        // Weights into a readout with dynamics get their exact gradient in every online
        // method: the readout is read only by the loss and its D is per neuron, so its
        // D-RTRL trace is exact, and small (B x I x O x K with few outputs). The rank-one
        // ES-D-RTRL approximation would pair the output with presynaptic activity over the
        // trace's horizon (1/(1 - decay) steps) instead of the readout's own time constant,
        // which adaptation can anti-correlate with the activity the readout actually sees.
        let exact: Vec<bool> = plan.etrace.iter().map(|e| method == Method::DRtrl || (online && e.target.pop == plan.r)).collect();
        // An exact trace is one per weight of W + U V (pre x post): not for an adapter.
        if let Some(e) = plan.etrace.iter().zip(&exact).find(|(e, x)| **x && matches!(e.target.shape, GradShape::LowRank { .. })).map(|(e, _)| e) {
            let proj = e.name.trim_end_matches(".adapter");
            let why = if method == Method::DRtrl { "D-RTRL keeps one trace per weight of W + U V".to_string() } else { format!("it feeds the readout `{}`, whose weights get exact traces", net.pops[plan.r].name) };
            return Err(RuntimeError::Build(format!("the adapter of `{proj}` cannot be trained here: {why}; train it with es-d-rtrl (into a hidden layer) or bptt")));
        }
        Ok(CpuGradient { plan, method, record: false, helper_thread: true, exact, param_kernels })
    }

    /// With per-step records: hidden states, traces and per-step contributions.
    pub fn recording(mut self, record: bool) -> CpuGradient<T> {
        self.record = record;
        self
    }

    /// Without the ES-D-RTRL contraction's helper thread (each part of a batch split
    /// across threads already has one).
    pub(crate) fn single_threaded(mut self) -> CpuGradient<T> {
        self.helper_thread = false;
        self
    }

    /// The gradient of one batch of `data` from `net`'s current state.
    pub fn run(&mut self, net: &mut Network<T>, data: &mut dyn Sequence) -> Result<Gradients, RuntimeError> {
        self.run_online(net, data, None)
    }

    /// [`CpuGradient::run`], optionally [`Online`]: then the returned `total` is what
    /// accumulated after the last update (the caller applies it at the end of the sequence).
    pub fn run_online(&mut self, net: &mut Network<T>, data: &mut dyn Sequence, mut online: Option<Online>) -> Result<Gradients, RuntimeError> {
        let steps = data.steps();
        check_data(net, data, self.method == Method::Bptt, online.as_ref())?;
        // A part of a larger batch draws what the whole one would for its elements.
        net.batch_offset = data.batch_offset();
        check_target(net, self.plan.r, data)?;
        let threaded = self.helper_thread && !self.record && online.is_none() && steps > WINDOW && std::thread::available_parallelism().map_or(1, |n| n.get()) > 1;
        let mut pass = Pass::new(self, net, threaded)?;
        let mut sd = StepData::<T>::new(data);
        for t in 0..steps {
            net.step_traced(&sd.load(data, t), Some(&mut pass.trace))?;
            pass.delayed.iter_mut().for_each(|d| d.shift(&mut pass.trace));
            pass.loss(net, &mut sd);
            pass.signals(net)?;
            let step_grads = pass.traces(net, t);
            if let Some(b) = pass.bptt.as_mut() {
                b.push(net, &pass.ls, &pass.trace, &pass.targets, &self.plan.bn);
            }
            if let Some(on) = online.as_mut().filter(|on| (t + 1) % on.every == 0 && t + 1 < steps) {
                pass.update(net, on)?;
            }
            if self.record {
                pass.record(net, t, step_grads);
            }
        }
        pass.finish(net, sd.evidence)
    }
}

/// The state of one pass of a [`CpuGradient`]: traces, tapes, gradients and the
/// per-step buffers, reused from step to step.
struct Pass<'g, T: Float> {
    g: &'g CpuGradient<T>,
    batch: usize,
    /// Per population: neurons, hidden states K and kernel inputs.
    n_of: Vec<usize>,
    k_of: Vec<usize>,
    nin_of: Vec<usize>,
    online_method: bool,
    /// The trainable params' traces dh^t/dtheta (B x N x K): one slice per hidden state
    /// (B x N each), updated by a generated trace step; u, and their gradients.
    eps_p: Vec<Vec<Vec<T>>>,
    param_u: Vec<T>,
    param_grads: Vec<Array2<T>>,
    grads: Vec<Array2<T>>,
    plain_grads: Vec<Array2<T>>,
    /// Per batch norm: dL/dgamma and dL/dbeta (O each).
    bn_grads: Vec<(Vec<T>, Vec<T>)>,
    per_step: Vec<Vec<(String, Array2<f64>)>>,
    loss: f64,
    eps: Vec<Vec<T>>,
    /// The exact traces' windows, one per (population, input) they are into.
    xwins: Vec<ExactWindow<T>>,
    /// ES-D-RTRL: one group per (population, input), sharing eps_f.
    groups: Vec<EsGroup<T>>,
    decay_t: T,
    contractor: Contractor<T>,
    /// BPTT's tape and the adjoint steps that run over it.
    targets: Vec<Target>,
    bptt: Option<Bptt<T>>,
    recorded: Vec<(String, Vec<usize>, Vec<f64>)>,
    trace: StepTrace<T>,
    /// The trained delayed projections' presynaptic values in flight.
    delayed: Vec<PreDelay<T>>,
    y: Vec<f64>,
    err: Vec<f64>,
    err_t: Array2<T>,
    dlds: Vec<Vec<T>>,
    dldh: Vec<Vec<T>>,
    ls: Vec<Vec<T>>,
    pd: Vec<PopDerivs<T>>,
    mu: Vec<T>,
    dbuf: Vec<T>,
    l_soa: Vec<Vec<T>>,
}

impl<'g, T: Float> Pass<'g, T> {
    /// Traces, tapes and buffers at their start for a pass of `g` over `net`; `threaded`:
    /// the ES-D-RTRL contraction on a worker thread.
    fn new(g: &'g CpuGradient<T>, net: &Network<T>, threaded: bool) -> Result<Pass<'g, T>, RuntimeError> {
        let (plan, method, batch) = (&g.plan, g.method, net.batch);
        let k_of: Vec<usize> = net.pops.iter().map(|p| p.deriv.map(|d| d.k).unwrap_or(0)).collect();
        let nin_of: Vec<usize> = net.pops.iter().map(|p| p.deriv.map(|d| d.n_in).unwrap_or(0)).collect();
        let n_of: Vec<usize> = net.pops.iter().map(|p| p.n).collect();
        let online_method = method != Method::Bptt;
        let eps_p = plan.params.iter().map(|q| if online_method { vec![vec![zero(); batch * n_of[q.pop]]; k_of[q.pop]] } else { Vec::new() }).collect();
        let param_u = vec![zero(); plan.params.iter().map(|q| batch * n_of[q.pop]).max().unwrap_or(0)];
        let param_grads = plan.params.iter().map(|q| Array2::zeros((1, n_of[q.pop]))).collect();
        let grads = plan.etrace.iter().map(|e| e.target.shape.zeros()).collect();
        let plain_grads = plan.plain.iter().map(|(i, _)| Array2::zeros(net.dense_weights(*i).expect("dense").dim())).collect();
        let eps = plan
            .etrace
            .iter()
            .zip(&g.exact)
            .map(|(e, &ex)| if ex { vec![zero(); batch * e.target.shape.pairs() * k_of[e.target.pop]] } else { Vec::new() })
            .collect();
        let mut xwins: Vec<ExactWindow<T>> = Vec::new();
        let mut groups: Vec<EsGroup<T>> = Vec::new();
        for (ei, e) in plan.etrace.iter().enumerate() {
            let t = &e.target;
            if g.exact[ei] {
                let at = match xwins.iter().position(|w| w.pop == t.pop && w.input == t.input) {
                    Some(at) => at,
                    None => {
                        xwins.push(ExactWindow::new(net, t.pop, t.input)?);
                        xwins.len() - 1
                    }
                };
                xwins[at].members.push(ExactMember::new(ei, t.index, t.n_pre, t.shape.clone()));
            } else if let Method::EsDRtrl { decay } = method {
                let at = match groups.iter().position(|g| g.pop == t.pop && g.input == t.input) {
                    Some(at) => at,
                    None => {
                        groups.push(EsGroup::new(net, t.pop, t.input, k_of[t.pop], decay)?);
                        groups.len() - 1
                    }
                };
                groups[at].add_member(ei, t.index, t.n_pre, t.shape.clone());
            }
        }
        let decay_t: T = T::from_f64(match method {
            Method::EsDRtrl { decay } => decay,
            _ => 0.0,
        });
        let contractor = Contractor::new(&groups, decay_t, threaded);
        let targets = plan.etrace.iter().map(|e| e.target.clone()).collect();
        let bptt = if method == Method::Bptt { Some(Bptt::new(net, &plan.hidden)?) } else { None };
        let o = n_of[plan.r];
        let np = net.pops.len();
        Ok(Pass {
            g,
            batch,
            online_method,
            eps_p,
            param_u,
            param_grads,
            grads,
            plain_grads,
            bn_grads: plan.bn.iter().map(|b| (vec![zero(); n_of[b.pop]], vec![zero(); n_of[b.pop]])).collect(),
            per_step: Vec::new(),
            loss: 0.0,
            eps,
            xwins,
            groups,
            decay_t,
            contractor,
            targets,
            bptt,
            recorded: Vec::new(),
            trace: StepTrace::default(),
            delayed: delayed_projections(plan),
            y: vec![0.0; batch * o],
            err: vec![0.0; batch * o],
            err_t: Array2::<T>::zeros((batch, o)),
            dlds: n_of.iter().map(|n| vec![zero(); batch * n]).collect(),
            dldh: (0..np).map(|p| vec![zero(); batch * n_of[p] * k_of[p]]).collect(),
            ls: (0..np).map(|p| vec![zero(); batch * n_of[p] * k_of[p]]).collect(),
            pd: (0..np).map(|_| PopDerivs::default()).collect(),
            mu: Vec::new(),
            dbuf: Vec::new(),
            l_soa: Vec::new(),
            n_of,
            k_of,
            nin_of,
        })
    }

    /// The step's loss and its gradient at the readout.
    fn loss(&mut self, net: &Network<T>, sd: &mut StepData<T>) {
        self.y.iter_mut().zip(net.pops[self.g.plan.r].readout_output()).for_each(|(y, v)| *y = v.to_f64());
        self.err.fill(0.0);
        self.loss += sd.loss(&self.y, Some(&mut self.err));
        self.err_t.iter_mut().zip(&self.err).for_each(|(d, s)| *d = T::from_f64(*s));
    }

    /// dL^t/ds^t of the populations the readout reads, the plain weights' gradient, then
    /// derivatives and learning signals l^t = dL^t/ds * ds/dh, from the top of the stack
    /// down. The online methods carry the step's loss down through the layers above
    /// within the same step (dL/ds_q += (l_p Df_p) W^T for each q -> p read as s^t);
    /// BPTT's backward pass does that itself, with the paths through time.
    fn signals(&mut self, net: &Network<T>) -> Result<(), RuntimeError> {
        let (plan, batch, one) = (&self.g.plan, self.batch, T::from_f64(1.0));
        let (n_of, k_of) = (&self.n_of, &self.k_of);
        // The network step just taken (its dropout masks).
        let step = net.step_index - 1;
        self.dlds.iter_mut().chain(self.dldh.iter_mut()).for_each(|v| v.fill(zero()));
        for &(i, q, state) in &plan.into_readout {
            let w = net.dense_weights(i).expect("dense");
            self.dbuf.clear();
            self.dbuf.resize(batch * n_of[q], zero());
            let mut dv = ArrayViewMut2::from_shape((batch, n_of[q]), &mut self.dbuf).expect("shape");
            general_mat_mul(one, &self.err_t, &w.t(), zero(), &mut dv);
            net.dropout_back(i, step, &mut self.dbuf);
            add_signal(&mut self.dlds[q], &mut self.dldh[q], k_of[q], state, &self.dbuf);
            if let Some(pi) = plan.plain.iter().position(|(pi, _)| *pi == i) {
                let pre = ArrayView2::from_shape((batch, w.nrows()), &self.trace.pre[i]).expect("shape");
                add_outer(&mut self.plain_grads[pi], pre, self.err_t.view(), self.trace.nonzero.get(i).and_then(|n| n.as_deref()));
            }
        }
        if !plan.linear_readout {
            // The loss reads the readout's first state: dL/dh_0 = err.
            self.dlds[plan.r].iter_mut().zip(self.err_t.iter()).for_each(|(d, e)| *d = *e);
        }
        for &p in plan.hidden.iter().rev() {
            read_derivs(net, p, &mut self.pd[p])?;
            let v = &self.pd[p];
            let (n, k, nin) = (n_of[p], k_of[p], self.nin_of[p]);
            let (ls, dlds, dldh) = (&mut self.ls[p], &self.dlds[p], &self.dldh[p]);
            if k == 1 {
                for ((l, s), (ds, h)) in ls.iter_mut().zip(dlds).zip(v.ds.iter().zip(dldh)) {
                    *l = *s * *ds + *h;
                }
            } else {
                for (ik, l) in ls.iter_mut().enumerate() {
                    *l = dlds[ik / k] * v.ds[ik] + dldh[ik];
                }
            }
            if self.online_method && self.ls[p].iter().any(|x| *x != zero()) {
                // Only what was read in this very step: the online methods do not carry a
                // signal back in time (recurrent or delayed paths).
                for l in plan.links.iter().filter(|l| l.to == p && l.steps_back() == 0) {
                    let ls = &self.ls[p];
                    self.mu.clear();
                    self.mu.extend((0..batch * n).map(|m| (0..k).map(|a| ls[m * k + a] * v.df[(m * k + a) * nin + l.input]).sum::<T>()));
                    self.dbuf.clear();
                    self.dbuf.resize(batch * n_of[l.from], zero());
                    back_project(net, l.proj, step, &self.mu, &mut self.dbuf, batch);
                    add_signal(&mut self.dlds[l.from], &mut self.dldh[l.from], k_of[l.from], l.state, &self.dbuf);
                }
            }
        }
        Ok(())
    }

    /// The online methods' traces and gradient products of step `t`; with per-step
    /// records, the step's contributions (in declaration order).
    fn traces(&mut self, net: &Network<T>, t: usize) -> Vec<(String, Array2<f64>)> {
        let (g, record) = (self.g, self.g.record);
        let etrace = &g.plan.etrace;
        let mut step_grads = Vec::new();
        // Exact traces: D-RTRL, and the readout's weights in every online method. The
        // step is taped into its window; a window of one step with `record_per_step`
        // (the step's own contribution and trace are recorded).
        for w in &mut self.xwins {
            w.push(net, &self.ls[w.pop], &self.trace);
        }
        if record {
            let mut gs: Vec<Array2<T>> = etrace.iter().map(|e| e.target.shape.zeros()).collect();
            for w in &mut self.xwins {
                w.flush(&mut self.eps, &mut gs);
            }
            for (ei, (e, gr)) in etrace.iter().zip(gs).enumerate().filter(|(ei, _)| g.exact[*ei]) {
                self.grads[ei] += &gr;
                step_grads.push((e.name.clone(), e.target.shape.of_tensor(to_f64(&gr))));
            }
        } else if self.xwins.first().is_some_and(|w| w.len == WINDOW) {
            for w in &mut self.xwins {
                w.flush(&mut self.eps, &mut self.grads);
            }
        }
        for (pi, q) in g.plan.params.iter().enumerate().filter(|_| self.online_method) {
            // The generated trace step: eps_p <- D eps_p + dh/dtheta, u = l . eps_p.
            let n = self.n_of[q.pop];
            let l = es::signal_slices(&self.ls[q.pop], self.k_of[q.pop], &mut self.l_soa);
            // This population's share of the buffer (params of populations of other sizes
            // use it too).
            let u = &mut self.param_u[..self.batch * n];
            g.param_kernels[pi].as_ref().expect("online").run(net, q.pop, &mut self.eps_p[pi], u, &l);
            let mut gr = Array2::<T>::zeros((1, n));
            for ub in self.param_u[..self.batch * n].chunks_exact(n) {
                gr.iter_mut().zip(ub).for_each(|(g, u)| *g += *u);
            }
            self.param_grads[pi] += &gr;
            if record {
                step_grads.push((q.name.clone(), to_f64(&gr)));
            }
        }
        if let Method::EsDRtrl { decay } = g.method {
            // Bias correction of the smoothed trace, indexed by the update count as in
            // braintrace (and switched off from step 1001 on).
            let inv_c = T::from_f64(1.0 / bias_correction(decay, t));
            for (gi, gr) in self.groups.iter_mut().enumerate() {
                let l = es::signal_slices(&self.ls[gr.pop], self.k_of[gr.pop], &mut self.l_soa);
                gr.step(net, &l, &self.trace, self.decay_t, inv_c);
                if record {
                    for (ei, c) in gr.step_contributions() {
                        self.grads[ei] += &c;
                        step_grads.push((etrace[ei].name.clone(), etrace[ei].target.shape.of_tensor(to_f64(&c))));
                    }
                } else if gr.len() == WINDOW {
                    self.contractor.flush(gi, gr);
                }
            }
            // Per-step records list the projections in declaration order.
            step_grads.sort_by_key(|(name, _)| g.plan.projection_names.iter().position(|n| n == name));
        }
        step_grads
    }

    /// Every window and group contracted into the gradients.
    fn flush(&mut self) -> Result<(), RuntimeError> {
        for w in &mut self.xwins {
            w.flush(&mut self.eps, &mut self.grads);
        }
        for (gi, g) in self.groups.iter_mut().enumerate() {
            self.contractor.flush(gi, g);
        }
        add_group_grads(&mut self.grads, &self.groups, self.contractor.take()?);
        Ok(())
    }

    /// The gradients so far, named, in the GPU's order: etrace, plain, params.
    fn gradients(&self) -> Vec<(String, Array2<f64>)> {
        let plan = &self.g.plan;
        let mut total: Vec<(String, Array2<f64>)> = Vec::new();
        for (e, g) in plan.etrace.iter().zip(&self.grads) {
            match e.target.shape {
                // An adapter's stacked gradient, as `NAME.U` and `NAME.V`.
                GradShape::LowRank { n_pre, .. } => {
                    let (u, v) = LowRank::<f64>::split(&to_f64(g), n_pre);
                    let proj = e.name.trim_end_matches(".adapter");
                    total.push((format!("{proj}.U"), u));
                    total.push((format!("{proj}.V"), v));
                }
                _ => total.push((e.name.clone(), e.target.shape.of_tensor(to_f64(g)))),
            }
        }
        total.extend(plan.plain.iter().map(|(_, n)| n.clone()).zip(self.plain_grads.iter().map(to_f64)));
        total.extend(plan.params.iter().map(|q| q.name.clone()).zip(self.param_grads.iter().map(to_f64)));
        let row = |v: &Vec<T>| Array2::from_shape_fn((1, v.len()), |(_, j)| v[j].to_f64());
        for (b, (dg, db)) in plan.bn.iter().zip(&self.bn_grads) {
            if b.gamma {
                total.push((format!("{}.gamma", b.name), row(dg)));
            }
            if b.beta {
                total.push((format!("{}.beta", b.name), row(db)));
            }
        }
        total
    }

    /// An update within the sequence: the gradient so far to `on`, its weights into
    /// `net`, and the gradients start again from zero (the traces carry on).
    fn update(&mut self, net: &mut Network<T>, on: &mut Online) -> Result<(), RuntimeError> {
        self.flush()?;
        for (name, w) in (on.update)(&self.gradients())? {
            net.set_trainable(&name, w.mapv(T::from_f64))?;
        }
        self.grads.iter_mut().chain(self.plain_grads.iter_mut()).chain(self.param_grads.iter_mut()).for_each(|g| g.fill(zero()));
        Ok(())
    }

    /// Step `t`'s records: hidden states, traces, the bias correction and (online
    /// methods) the step's contributions `step_grads`.
    fn record(&mut self, net: &Network<T>, t: usize, step_grads: Vec<(String, Array2<f64>)>) {
        let (g, batch, recorded) = (self.g, self.batch, &mut self.recorded);
        for &p in &g.plan.hidden {
            let pop = &net.pops[p];
            for (k, name) in pop.state_names.iter().enumerate().filter(|(_, n)| !n.starts_with('_')) {
                record_into(recorded, format!("{}.{name}", pop.name), &[batch, pop.n], &pop.states[k]);
            }
        }
        for (ei, e) in g.plan.etrace.iter().enumerate() {
            let (n, k) = (self.n_of[e.target.pop], self.k_of[e.target.pop]);
            if g.exact[ei] {
                // (B, I, O, K) for dense weights; (B, synapses, K) for sparse ones.
                let dims = match &e.target.shape {
                    GradShape::Dense { .. } => vec![batch, e.target.n_pre, n, k],
                    GradShape::Sparse(_) | GradShape::LowRank { .. } => vec![batch, e.target.shape.pairs(), k],
                };
                record_into(recorded, format!("eps_{}", e.name), &dims, &self.eps[ei]);
            } else if let Some(gr) = self.groups.iter().find(|gr| gr.members.iter().any(|m| m.ei == ei)) {
                let mb = gr.members.iter().find(|m| m.ei == ei).expect("member");
                record_into(recorded, format!("eps_x_{}", e.name), &[batch, e.target.n_pre], &mb.eps_x);
                record_into(recorded, format!("eps_f_{}", e.name), &[batch, n, k], &gr.eps_f_interleaved());
            }
        }
        if let Method::EsDRtrl { decay } = g.method {
            record_into(recorded, "bias_correction".into(), &[], &[bias_correction(decay, t)]);
        }
        if self.online_method {
            self.per_step.push(step_grads);
        }
    }

    /// The end of the pass: the last windows contracted, BPTT's backward pass, and the
    /// named gradients with the loss, the evidence and the method's state bytes.
    fn finish(mut self, net: &Network<T>, evidence: Array2<f64>) -> Result<Gradients, RuntimeError> {
        self.flush()?;
        // Bytes held by the method's own state: traces, or the BPTT tape.
        let size = std::mem::size_of::<T>();
        let vec_bytes = |v: &[Vec<T>]| v.iter().map(|x| x.len() * size).sum::<usize>();
        let es_bytes: usize = self.groups.iter().map(|g| vec_bytes(&g.eps_f) + g.members.iter().map(|m| m.eps_x.len() * size).sum::<usize>()).sum();
        let tape_bytes = self.bptt.as_ref().map_or(0, |b| b.bytes());
        let state_bytes = vec_bytes(&self.eps) + es_bytes + self.eps_p.iter().map(|e| vec_bytes(e)).sum::<usize>() + tape_bytes;
        if let Some(b) = &self.bptt {
            let plan = &self.g.plan;
            b.backward(net, &self.targets, &plan.params, &plan.links, &plan.hidden, &mut self.grads, &mut self.param_grads, &plan.bn, &mut self.bn_grads);
        }
        let total = self.gradients();
        Ok(Gradients { loss: self.loss, total, per_step: self.per_step, state_bytes, evidence, recorded: self.recorded })
    }
}

/// A ring per trained delayed projection (once, though its weights and its adapter may
/// both be trained).
fn delayed_projections<T: Float>(plan: &Plan) -> Vec<PreDelay<T>> {
    let mut out: Vec<PreDelay<T>> = Vec::new();
    for t in plan.etrace.iter().map(|e| &e.target).filter(|t| t.delay > 0) {
        if !out.iter().any(|d| d.proj == t.index) {
            out.push(PreDelay::new(t.index, t.delay));
        }
    }
    out
}

/// The presynaptic values of a delayed projection as its target receives them: what
/// its source sent `delay` steps ago (zeros before that), put in the step's trace in
/// place of what it sends now, so that every method pairs a target's step with the
/// values that arrive in it. (The network's ring carries x W; this one carries x.)
struct PreDelay<T> {
    proj: usize,
    delay: usize,
    /// Oldest first: (values, their non-zero entries where known).
    ring: std::collections::VecDeque<(Vec<T>, Option<Vec<(u32, u32)>>)>,
}

impl<T: Float> PreDelay<T> {
    fn new(proj: usize, delay: usize) -> PreDelay<T> {
        PreDelay { proj, delay, ring: std::collections::VecDeque::with_capacity(delay + 1) }
    }

    /// Swaps the values sent this step for those arriving in it.
    fn shift(&mut self, trace: &mut StepTrace<T>) {
        let p = self.proj;
        let sent = std::mem::take(&mut trace.pre[p]);
        let len = sent.len();
        let known = trace.nonzero[p].is_some();
        self.ring.push_back((sent, trace.nonzero[p].take()));
        (trace.pre[p], trace.nonzero[p]) = if self.ring.len() > self.delay {
            self.ring.pop_front().expect("longer than the delay")
        } else {
            (vec![zero(); len], known.then(Vec::new))
        };
    }
}
