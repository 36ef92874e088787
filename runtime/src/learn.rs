//! Gradients of a sequence loss: BPTT (exact), D-RTRL and ES-D-RTRL (online, with
//! eligibility traces), as defined in ../shared/ALGORITHMS.md and the braintrace golden
//! files. The per-neuron Jacobians D, Df and the spike's surrogate derivative come from
//! the compiler (the step's IR) and are written by the population's step kernel in the
//! same pass as the step (interpreter or JIT, f64).
//!
//! Supported today: hidden spiking populations (stacked or recurrent) whose trainable
//! dense projections come from external inputs or spiking populations (etrace weights),
//! read by one readout: the stateless `Linear` (plain weights: exact same-step gradient)
//! or a model with dynamics such as `LeakyReadout` (the loss reads its first state; its
//! weights get their exact trace in every method). Losses: MSE or cross-entropy per
//! step, masked, summed over steps.

use crate::network::{Network, RuntimeError, StepTrace};
use ndarray::{Array2, Array3, ArrayView2, Axis};
use std::rc::Rc;
use snnc_compiler::sema::{PopKind, Source};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Bptt,
    DRtrl,
    /// ES-D-RTRL with trace decay `lambda` (braintrace's `pp_prop`).
    EsDRtrl { decay: f64 },
}

/// The gradient of the summed loss with respect to every trainable projection.
#[derive(Clone, Debug, Default)]
pub struct Gradients {
    pub loss: f64,
    /// (projection name, gradient n_pre x n_post), in declaration order.
    pub total: Vec<(String, Array2<f64>)>,
    /// Per step, the contribution to each etrace projection's gradient (online methods).
    pub per_step: Vec<Vec<(String, Array2<f64>)>>,
    /// Bytes of the method's own state: eligibility traces, or the BPTT tape. (The lazy
    /// windows' tapes, at most `WINDOW` steps of per-neuron values and the non-zero
    /// presynaptic values, are not counted: they do not grow with the sequence.)
    pub state_bytes: usize,
    /// Per batch element, the readout output summed over the steps that count in the
    /// loss (weighted by the mask): `argmax` is the predicted class.
    pub evidence: Array2<f64>,
    /// With `record_per_step`: per-step arrays (name, shape with T first, values):
    /// hidden states `POP.STATE` (T, B, N); D-RTRL traces `eps_PROJ` (T, B, I, O, K);
    /// ES-D-RTRL traces `eps_x_PROJ` (T, B, I), `eps_f_PROJ` (T, B, O, K) and
    /// `bias_correction` (T).
    pub recorded: Vec<(String, Vec<usize>, Vec<f64>)>,
}

fn record_into(rec: &mut Vec<(String, Vec<usize>, Vec<f64>)>, name: String, shape: &[usize], data: &[f64]) {
    match rec.iter_mut().find(|(n, _, _)| *n == name) {
        Some((_, sh, d)) => {
            sh[0] += 1;
            d.extend_from_slice(data);
        }
        None => {
            let mut sh = vec![1];
            sh.extend_from_slice(shape);
            rec.push((name, sh, data.to_vec()));
        }
    }
}

impl Gradients {
    pub fn get(&self, name: &str) -> Option<&Array2<f64>> {
        self.total.iter().find(|(n, _)| n == name).map(|(_, g)| g)
    }
}

/// Per-neuron values of one hidden population at one step.
#[derive(Clone)]
struct PopDerivs {
    /// (B*N, K, K)
    d: Vec<f64>,
    /// (B*N, K, n_in)
    df: Vec<f64>,
    /// (B*N, K): ds^t/dh^t
    ds: Vec<f64>,
    /// (B*N, K, n_p): dh^t/dtheta of the trainable params
    dp: Vec<f64>,
}

/// D, Df and ds/dh of population `p` for the step just taken, as the step kernel
/// wrote them (the population was built with `Options::learning`).
fn read_derivs(net: &Network<f64>, p: usize) -> Result<PopDerivs, RuntimeError> {
    let pop = &net.pops[p];
    let dl = pop.deriv.ok_or_else(|| {
        RuntimeError::Build(format!("population `{}` was not built for learning (Options::learning)", pop.name))
    })?;
    let m = pop.n * net.batch;
    let (k, n_in, n_p) = (dl.k, dl.n_in, dl.n_p);
    let mut out = PopDerivs { d: vec![0.0; m * k * k], df: vec![0.0; m * k * n_in], ds: vec![0.0; m * k], dp: vec![0.0; m * k * n_p] };
    // States are structure of arrays: gather each element's matrices.
    for e in 0..k * k {
        let s = &pop.states[dl.d + e];
        for i in 0..m {
            out.d[i * k * k + e] = s[i];
        }
    }
    for e in 0..k * n_in {
        let s = &pop.states[dl.df + e];
        for i in 0..m {
            out.df[i * k * n_in + e] = s[i];
        }
    }
    for a in 0..k {
        let s = &pop.states[dl.ds + a];
        for i in 0..m {
            out.ds[i * k + a] = s[i];
        }
    }
    for e in 0..k * n_p {
        let s = &pop.states[dl.dp + e];
        for i in 0..m {
            out.dp[i * k * n_p + e] = s[i];
        }
    }
    Ok(out)
}

/// Steps whose weight-gradient products are accumulated together (ES-D-RTRL, and the
/// exact traces of D-RTRL and of the readout).
const WINDOW: usize = 32;

/// The pending steps of one projection's lazy ES-D-RTRL gradient.
struct Window {
    /// eps_x just before the window's first step (B x I).
    start: Vec<f64>,
    /// Per step, the non-zero presynaptic values (batch, input, value).
    x: Vec<Vec<(u32, u32, f64)>>,
    /// Per step, q = (sum_a l eps_f) / c_t (B x O), shared by the projections whose
    /// output trace is the same.
    q: Vec<Rc<Array2<f64>>>,
}

impl Window {
    fn new(len: usize) -> Window {
        Window { start: vec![0.0; len], x: Vec::new(), q: Vec::new() }
    }
}

/// Adds the window's steps to `g` (I x O) and starts a new window at `eps_x_now`.
fn flush_window(w: &mut Window, g: &mut Array2<f64>, decay: f64, eps_x_now: &[f64], batch: usize, n_pre: usize) {
    if w.q.is_empty() {
        return;
    }
    let (_, n_post) = w.q[0].dim();
    let mut r = Array2::<f64>::zeros((batch, n_post));
    for s in (0..w.q.len()).rev() {
        r.mapv_inplace(|v| v * decay);
        r += &*w.q[s];
        for &(b, i, x) in &w.x[s] {
            let mut row = g.row_mut(i as usize);
            row.scaled_add(x, &r.row(b as usize));
        }
    }
    // eps_x^{t0-1} (x) decay * r^{t0}
    if w.start.iter().any(|v| *v != 0.0) {
        let start = ArrayView2::from_shape((batch, n_pre), &w.start).expect("shape");
        g.scaled_add(decay, &start.t().dot(&r));
    }
    w.start.copy_from_slice(eps_x_now);
    w.x.clear();
    w.q.clear();
}

/// One projection whose exact trace is kept in an [`ExactWindow`].
struct ExactMember {
    /// Index into the etrace projections (and their traces and gradients).
    ei: usize,
    /// Index of the projection in the network (its presynaptic values in `StepTrace::pre`).
    proj: usize,
    n_pre: usize,
    /// Per step of the window, the non-zero presynaptic values (batch, input, value).
    x: Vec<Vec<(u32, u32, f64)>>,
}

/// The pending steps of the exact (D-RTRL) traces of the projections into one
/// (population, input): they share D, the Df column and the learning signal, so
/// everything but the presynaptic values is taped and reduced once.
///
/// Per (b, o), with the trace tr[b,i,o,:] (K) and, over the window's steps
/// s = t0+1..t1 (tr0 = tr at t0), tr^t = D^t tr^{t-1} + x^t[b,i] f^t and the
/// gradient sum_t l^t . tr^t, let P(s->t) = D^t ... D^{s+1} (P(t->t) = I). Then
///   tr^{t1} = P(t0->t1) tr0 + sum_s x^s P(s->t1) f^s,
///   sum_t l^t . tr^t = sigma . tr0 + sum_s x^s (rho^s . f^s),
/// with rho^s = sum_{t>=s} l^t P(s->t) (rho^{t1} = l^{t1}, rho^s = l^s + rho^{s+1} D^{s+1}),
/// sigma = rho^{t0+1} D^{t0+1}, M^s = P(s->t1) (M^{t1} = I, M^s = M^{s+1} D^{s+1}) and
/// P(t0->t1) = M^{t0+1} D^{t0+1}. So the O(B I O K^2) work is one pass over the trace per
/// window, plus O(n K) per non-zero presynaptic value (spikes are sparse).
struct ExactWindow {
    pop: usize,
    input: usize,
    batch: usize,
    n: usize,
    k: usize,
    members: Vec<ExactMember>,
    /// Steps taped so far.
    len: usize,
    /// Per step: D (B*N, K, K), the Df column f (B*N, K), l (B*N, K); reused buffers.
    d: Vec<Vec<f64>>,
    f: Vec<Vec<f64>>,
    l: Vec<Vec<f64>>,
    /// Per step, after `reduce`: rho^s . f^s (B*N) and u^s = M^s f^s (B*N, K).
    q: Vec<Vec<f64>>,
    u: Vec<Vec<f64>>,
    /// After `reduce`: sigma (B*N, K) and P(t0->t1) (B*N, K, K).
    sigma: Vec<f64>,
    p: Vec<f64>,
}

impl ExactWindow {
    fn new(pop: usize, input: usize, batch: usize, n: usize, k: usize) -> ExactWindow {
        let m = batch * n;
        ExactWindow {
            pop,
            input,
            batch,
            n,
            k,
            members: Vec::new(),
            len: 0,
            d: Vec::new(),
            f: Vec::new(),
            l: Vec::new(),
            q: Vec::new(),
            u: Vec::new(),
            sigma: vec![0.0; m * k],
            p: vec![0.0; m * k * k],
        }
    }

    /// Tapes one step: the population's derivatives, its learning signal `l` (B*N*K)
    /// and every member's non-zero presynaptic values.
    fn push(&mut self, v: &PopDerivs, nin: usize, l: &[f64], pre: &[Vec<f64>]) {
        let (m, k, j) = (self.batch * self.n, self.k, self.len);
        if self.d.len() == j {
            self.d.push(vec![0.0; m * k * k]);
            self.f.push(vec![0.0; m * k]);
            self.l.push(vec![0.0; m * k]);
            self.q.push(vec![0.0; m]);
            self.u.push(vec![0.0; m * k]);
            for mb in &mut self.members {
                mb.x.push(Vec::new());
            }
        }
        self.d[j].copy_from_slice(&v.d);
        for (mk, f) in self.f[j].iter_mut().enumerate() {
            *f = v.df[mk * nin + self.input];
        }
        self.l[j].copy_from_slice(l);
        for mb in &mut self.members {
            let x = &mut mb.x[j];
            x.clear();
            let n_pre = mb.n_pre;
            x.extend(pre[mb.proj].iter().enumerate().filter(|(_, x)| **x != 0.0).map(|(bi, x)| ((bi / n_pre) as u32, (bi % n_pre) as u32, *x)));
        }
        self.len += 1;
    }

    /// The backward recursions over the window: q^s, u^s, sigma and P.
    fn reduce(&mut self) {
        let (m, k, len) = (self.batch * self.n, self.k, self.len);
        let mut rho = self.l[len - 1].clone();
        let mut mm = vec![0.0; m * k * k];
        for mi in 0..m {
            for a in 0..k {
                mm[(mi * k + a) * k + a] = 1.0;
            }
        }
        let mut row = vec![0.0; k];
        let mut mat = vec![0.0; k * k];
        for j in (0..len).rev() {
            let (f, d) = (&self.f[j], &self.d[j]);
            let (q, u) = (&mut self.q[j], &mut self.u[j]);
            for mi in 0..m {
                let (fm, dm) = (&f[mi * k..(mi + 1) * k], &d[mi * k * k..(mi + 1) * k * k]);
                let (rm, mmm) = (&mut rho[mi * k..(mi + 1) * k], &mut mm[mi * k * k..(mi + 1) * k * k]);
                q[mi] = (0..k).map(|a| rm[a] * fm[a]).sum();
                for a in 0..k {
                    u[mi * k + a] = (0..k).map(|c| mmm[a * k + c] * fm[c]).sum();
                }
                // rho <- rho D, M <- M D.
                for c in 0..k {
                    row[c] = (0..k).map(|a| rm[a] * dm[a * k + c]).sum();
                    for a in 0..k {
                        mat[a * k + c] = (0..k).map(|b| mmm[a * k + b] * dm[b * k + c]).sum();
                    }
                }
                rm.copy_from_slice(&row);
                mmm.copy_from_slice(&mat);
            }
            if j > 0 {
                rho.iter_mut().zip(&self.l[j - 1]).for_each(|(r, l)| *r += l);
            }
        }
        self.sigma = rho;
        self.p = mm;
    }

    /// Adds the window's steps to the members' gradients `g` (indexed like the
    /// etrace projections), brings their traces `eps` to the window's last step and
    /// starts a new window.
    fn flush(&mut self, eps: &mut [Vec<f64>], g: &mut [Array2<f64>]) {
        if self.len == 0 {
            return;
        }
        self.reduce();
        let (n, k) = (self.n, self.k);
        for mb in &self.members {
            let tr = &mut eps[mb.ei];
            let gs = g[mb.ei].as_slice_mut().expect("standard layout");
            // The dense pass: g += sigma . tr0, tr = P tr0.
            for b in 0..self.batch {
                let (sig, p) = (&self.sigma[b * n * k..(b + 1) * n * k], &self.p[b * n * k * k..(b + 1) * n * k * k]);
                for i in 0..mb.n_pre {
                    let trow = &mut tr[(b * mb.n_pre + i) * n * k..(b * mb.n_pre + i + 1) * n * k];
                    let grow = &mut gs[i * n..(i + 1) * n];
                    if k == 1 {
                        for o in 0..n {
                            let t = trow[o];
                            grow[o] += sig[o] * t;
                            trow[o] = p[o] * t;
                        }
                    } else {
                        let mut new = [0.0; 8];
                        for o in 0..n {
                            let t = &mut trow[o * k..(o + 1) * k];
                            grow[o] += (0..k).map(|a| sig[o * k + a] * t[a]).sum::<f64>();
                            let pm = &p[o * k * k..(o + 1) * k * k];
                            if k <= new.len() {
                                for a in 0..k {
                                    new[a] = (0..k).map(|c| pm[a * k + c] * t[c]).sum();
                                }
                                t.copy_from_slice(&new[..k]);
                            } else {
                                let new: Vec<f64> = (0..k).map(|a| (0..k).map(|c| pm[a * k + c] * t[c]).sum()).collect();
                                t.copy_from_slice(&new);
                            }
                        }
                    }
                }
            }
            // The sparse part: each non-zero presynaptic value of each step.
            for j in 0..self.len {
                let (q, u) = (&self.q[j], &self.u[j]);
                for &(b, i, x) in &mb.x[j] {
                    let (b, i) = (b as usize, i as usize);
                    let grow = &mut gs[i * n..(i + 1) * n];
                    grow.iter_mut().zip(&q[b * n..(b + 1) * n]).for_each(|(g, q)| *g += x * q);
                    let trow = &mut tr[(b * mb.n_pre + i) * n * k..(b * mb.n_pre + i + 1) * n * k];
                    trow.iter_mut().zip(&u[b * n * k..(b + 1) * n * k]).for_each(|(t, u)| *t += x * u);
                }
            }
        }
        self.len = 0;
    }
}

/// A trainable per-neuron param: its name, population and column in dh/dtheta.
struct ParamTrain {
    name: String,
    pop: usize,
    col: usize,
}

struct EtraceProj {
    index: usize,
    name: String,
    pop: usize,
    input: usize,
    n_pre: usize,
}

/// A batch of sequences, produced step by step so that online methods never hold the
/// whole sequence (their memory does not grow with its length).
pub trait Sequence {
    fn steps(&self) -> usize;
    fn batch(&self) -> usize;
    /// Sizes of the external inputs per batch element, then of the target.
    fn shape(&self) -> (Vec<usize>, usize);
    /// Writes step `t`: `x[i]` gets input `i` (`batch * size`, index `b * size + j`),
    /// `target` the readout target (`batch * readouts`).
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]);
    /// The loss function of the task.
    fn loss(&self) -> Loss {
        Loss::Mse
    }
    /// How much step `t` of each batch element counts in the loss (0: not at all).
    fn mask(&self, _t: usize, mask: &mut [f64]) {
        mask.fill(1.0);
    }
}

/// The per-step loss `L^t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// `sum_{b,j} m_b (y_bj - target_bj)^2` (braintrace's convention: no 1/2, no mean).
    Mse,
    /// `-sum_b m_b sum_j target_bj log softmax(y_b)_j` with one-hot targets.
    CrossEntropy,
}

/// The loss of one batch element at one step, and (with `grad`) its gradient dL/dy.
pub fn step_loss(kind: Loss, y: &[f64], target: &[f64], grad: Option<&mut [f64]>) -> f64 {
    match kind {
        Loss::Mse => {
            let mut l = 0.0;
            let mut g = grad;
            for j in 0..y.len() {
                let e = y[j] - target[j];
                l += e * e;
                if let Some(g) = g.as_deref_mut() {
                    g[j] = 2.0 * e;
                }
            }
            l
        }
        Loss::CrossEntropy => {
            // Stable log-softmax.
            let mx = y.iter().fold(f64::NEG_INFINITY, |a, v| a.max(*v));
            let lz = y.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
            let mut l = 0.0;
            let mut g = grad;
            for j in 0..y.len() {
                let logp = y[j] - mx - lz;
                l -= target[j] * logp;
                if let Some(g) = g.as_deref_mut() {
                    g[j] = logp.exp() - target[j];
                }
            }
            l
        }
    }
}

/// Adds step `t`'s masked loss of every batch element (`y`, `target`: batch x outputs) to
/// the return value and the masked output to `evidence`; with `err`, writes dL^t/dy.
pub(crate) fn masked_step_loss(kind: Loss, y: &[f64], target: &[f64], mask: &[f64], evidence: &mut Array2<f64>, mut err: Option<&mut [f64]>) -> f64 {
    let o = evidence.ncols();
    let mut loss = 0.0;
    for (b, &m) in mask.iter().enumerate().filter(|(_, m)| **m != 0.0) {
        let rows = b * o..(b + 1) * o;
        let (yb, tb) = (&y[rows.clone()], &target[rows.clone()]);
        evidence.row_mut(b).iter_mut().zip(yb).for_each(|(e, v)| *e += m * v);
        match err.as_deref_mut() {
            Some(e) => {
                let g = &mut e[rows];
                loss += m * step_loss(kind, yb, tb, Some(&mut *g));
                g.iter_mut().for_each(|v| *v *= m);
            }
            None => loss += m * step_loss(kind, yb, tb, None),
        }
    }
    loss
}

/// Sequences held in memory: `x[i]` is (T, B, size_i), `target` is (T, B, readouts).
pub struct InMemory<'a> {
    pub x: &'a [Array3<f64>],
    pub target: &'a Array3<f64>,
}

impl Sequence for InMemory<'_> {
    fn steps(&self) -> usize {
        self.target.shape()[0]
    }
    fn batch(&self) -> usize {
        self.target.shape()[1]
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (self.x.iter().map(|a| a.shape()[2]).collect(), self.target.shape()[2])
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        for (dst, src) in x.iter_mut().zip(self.x) {
            dst.iter_mut().zip(src.index_axis(Axis(0), t).iter()).for_each(|(d, s)| *d = *s);
        }
        target.iter_mut().zip(self.target.index_axis(Axis(0), t).iter()).for_each(|(d, s)| *d = *s);
    }
}

/// Computes the gradient of `sum_t L^t` for a batch of sequences. `x[i]` is external
/// input `i` with shape (T, B, size); `target` is (T, B, readout size).
pub fn gradient(
    net: &mut Network<f64>,
    trainable: &[String],
    x: &[Array3<f64>],
    target: &Array3<f64>,
    method: Method,
    record_per_step: bool,
) -> Result<Gradients, RuntimeError> {
    for (xi, (name, size)) in x.iter().zip(&net.inputs) {
        if xi.shape() != [target.shape()[0], target.shape()[1], *size] {
            return Err(RuntimeError::Input(format!(
                "input `{name}` must have shape ({}, {}, {size}), got {:?}",
                target.shape()[0],
                target.shape()[1],
                xi.shape()
            )));
        }
    }
    if x.len() != net.inputs.len() {
        return Err(RuntimeError::Input(format!("{} inputs given, the network has {}", x.len(), net.inputs.len())));
    }
    gradient_of(net, trainable, &mut InMemory { x, target }, method, record_per_step)
}

/// [`gradient`] for any [`Sequence`].
pub fn gradient_of(
    net: &mut Network<f64>,
    trainable: &[String],
    data: &mut dyn Sequence,
    method: Method,
    record_per_step: bool,
) -> Result<Gradients, RuntimeError> {
    gradient_online(net, trainable, data, method, record_per_step, None)
}

/// Truly online learning: every `every` steps the gradient accumulated since the last
/// update is handed to `update` (an optimiser step), and the weights it returns are
/// set in the network at once, while the sequence goes on (the traces carry on too).
pub struct Online<'a> {
    pub every: usize,
    #[allow(clippy::type_complexity)]
    pub update: &'a mut dyn FnMut(&[(String, Array2<f64>)]) -> Result<Vec<(String, Array2<f64>)>, RuntimeError>,
}

/// [`gradient_of`], optionally [`Online`]: then the returned `total` is what accumulated
/// after the last update (the caller applies it at the end of the sequence).
pub fn gradient_online(
    net: &mut Network<f64>,
    trainable: &[String],
    data: &mut dyn Sequence,
    method: Method,
    record_per_step: bool,
    mut online: Option<Online>,
) -> Result<Gradients, RuntimeError> {
    let (steps, batch) = (data.steps(), data.batch());
    if let Some(on) = &online {
        if method == Method::Bptt {
            return Err(RuntimeError::Input("updates within a sequence (`update_every`) need an online method (d-rtrl, es-d-rtrl), not BPTT".into()));
        }
        if on.every == 0 {
            return Err(RuntimeError::Input("`update_every` must be at least 1 step".into()));
        }
    }
    if batch != net.batch {
        return Err(RuntimeError::Input(format!("the data has batch {batch}, the network was built for {}", net.batch)));
    }
    let (in_sizes, n_target) = data.shape();
    let want_sizes: Vec<usize> = net.inputs.iter().map(|(_, s)| *s).collect();
    if in_sizes != want_sizes {
        return Err(RuntimeError::Input(format!("the data has inputs of sizes {in_sizes:?}, the network needs {want_sizes:?}")));
    }
    // The readout: one `readout` population, either the stateless `Linear` (output x W)
    // or a model with dynamics (e.g. `LeakyReadout`) whose output is its first state.
    let readouts: Vec<usize> = (0..net.pops.len()).filter(|&p| net.pops[p].kind == PopKind::Readout).collect();
    let [r] = readouts[..] else {
        return Err(RuntimeError::Build(format!("gradients need exactly one readout, the network has {}", readouts.len())));
    };
    let linear_readout = net.pops[r].step.is_none();
    if n_target != net.pops[r].n {
        return Err(RuntimeError::Input(format!("target must have {} values per step (readout `{}`), got {n_target}", net.pops[r].n, net.pops[r].name)));
    }
    // Projections: etrace (into hidden populations) and plain (into the readout).
    let mut etrace = Vec::new();
    let mut plain = Vec::new();
    let mut into_readout = Vec::new(); // (proj, source, state read instead of spikes)
    let mut hidden_links = Vec::new(); // (proj, from pop, to pop, input, read now?, state read)
    for name in net.projections().iter().map(|(n, _)| n.clone()) {
        let (i, from, to, input) = net.projection(&name).expect("exists");
        let dense = net.dense_weights(i).is_some();
        let is_trainable = trainable.contains(&name);
        let state = net.projection_state(i);
        if let (Some(j), Source::Pop(q)) = (state, from) {
            if net.pops[q].deriv.is_some_and(|d| j >= d.k) {
                return Err(RuntimeError::Build(format!(
                    "`{name}` reads `{}.{}`, which is not one of its hidden states: no gradient through it",
                    net.pops[q].name, net.pops[q].state_names[j]
                )));
            }
        }
        if to == r && linear_readout {
            into_readout.push((i, from, state));
            if is_trainable {
                plain.push((i, name.clone()));
            }
            continue;
        }
        if let Source::Pop(q) = from {
            if !dense {
                return Err(RuntimeError::Build(format!("`{name}`: gradients through sparse projections are not supported yet")));
            }
            hidden_links.push((i, q, to, input, q < to, state));
        }
        if is_trainable {
            if !dense {
                return Err(RuntimeError::Build(format!("`{name}`: only dense projections can be trained")));
            }
            let n_pre = net.dense_weights(i).expect("dense").nrows();
            etrace.push(EtraceProj { index: i, name: name.clone(), pop: to, input, n_pre });
        }
    }
    // Every population with a step (spiking layers, and a readout with dynamics).
    let hidden: Vec<usize> = (0..net.pops.len()).filter(|&p| net.pops[p].step.is_some()).collect();
    if let Some(&p) = hidden.iter().find(|&&p| p != r && net.pops[p].spikes.is_empty()) {
        return Err(RuntimeError::Build(format!("`{}` does not spike: no learning signal through it", net.pops[p].name)));
    }
    let layouts: Vec<Option<snnc_compiler::discretise::DerivLayout>> = net.pops.iter().map(|p| p.deriv).collect();
    let layout_of = |p: usize| layouts[p];
    for &p in &hidden {
        if layout_of(p).is_none() {
            return Err(RuntimeError::Build(format!(
                "population `{}` was not built for learning (build the network with Options::learning)",
                net.pops[p].name
            )));
        }
    }
    let k_of = |p: usize| layout_of(p).map(|d| d.k).unwrap_or(0);
    let nin_of = |p: usize| layout_of(p).map(|d| d.n_in).unwrap_or(0);
    // Trainable per-neuron params (`POP.PARAM`): (name, population, column of dh/dtheta).
    let projection_names: Vec<String> = net.projections().into_iter().map(|(n, _)| n).collect();
    let mut params: Vec<ParamTrain> = Vec::new();
    for name in trainable.iter().filter(|n| !projection_names.contains(n)) {
        let (pop, _, col, _) = net.param_slot(name).ok_or_else(|| {
            RuntimeError::Input(format!("`{name}` is neither a projection nor a trainable param (`POP.PARAM` of a param marked `trainable`) of the network"))
        })?;
        params.push(ParamTrain { name: name.clone(), pop, col });
    }
    // Their traces dh^t/dtheta (B x N x K): exact in every online method, since a
    // per-neuron param acts on its own neuron only (D is per neuron).
    let mut eps_p: Vec<Vec<f64>> = params.iter().map(|q| if method == Method::Bptt { Vec::new() } else { vec![0.0; batch * net.pops[q.pop].n * k_of(q.pop)] }).collect();
    let mut param_grads: Vec<Array2<f64>> = params.iter().map(|q| Array2::zeros((1, net.pops[q.pop].n))).collect();

    let mut grads: Vec<Array2<f64>> = etrace.iter().map(|e| Array2::zeros((e.n_pre, net.pops[e.pop].n))).collect();
    let mut plain_grads: Vec<Array2<f64>> = plain.iter().map(|(i, _)| Array2::zeros(net.dense_weights(*i).expect("dense").dim())).collect();
    let mut per_step = Vec::new();
    let mut loss = 0.0;
    // Online traces.
    // Weights into a readout with dynamics get their exact gradient in every online
    // method: the readout is read only by the loss and its D is per neuron, so its
    // D-RTRL trace is exact, and small (B x I x O x K with few outputs). The rank-one
    // ES-D-RTRL approximation would pair the output with presynaptic activity over the
    // trace's horizon (1/(1 - decay) steps) instead of the readout's own time constant,
    // which adaptation can anti-correlate with the activity the readout actually sees.
    let exact: Vec<bool> = etrace.iter().map(|e| method == Method::DRtrl || (method != Method::Bptt && e.pop == r)).collect();
    let mut eps: Vec<Vec<f64>> = etrace.iter().zip(&exact).map(|(e, &ex)| if ex { vec![0.0; batch * e.n_pre * net.pops[e.pop].n * k_of(e.pop)] } else { Vec::new() }).collect();
    let es = matches!(method, Method::EsDRtrl { .. });
    let mut eps_x: Vec<Vec<f64>> = etrace.iter().zip(&exact).map(|(e, &ex)| if es && !ex { vec![0.0; batch * e.n_pre] } else { Vec::new() }).collect();
    // Projections into the same input of the same population (W_in and W_rec into
    // `rec.I`) have the same Df column, hence the same output trace eps_f and the same
    // q = l . eps_f / c: it is kept once, by the first of them (`owner`).
    let owner: Vec<usize> = (0..etrace.len())
        .map(|ei| (0..ei).find(|&ej| !exact[ej] && etrace[ej].pop == etrace[ei].pop && etrace[ej].input == etrace[ei].input).unwrap_or(ei))
        .collect();
    let mut eps_f: Vec<Vec<f64>> = etrace
        .iter()
        .enumerate()
        .map(|(ei, e)| if es && !exact[ei] && owner[ei] == ei { vec![0.0; batch * net.pops[e.pop].n * k_of(e.pop)] } else { Vec::new() })
        .collect();
    // BPTT tape: per step, per population derivatives and learning signals, and the
    // presynaptic activity of every projection.
    let mut tape: Vec<(Vec<Option<PopDerivs>>, Vec<Vec<f64>>, Vec<Vec<f64>>)> = Vec::new();

    let mut recorded = Vec::new();
    // The exact traces' windows, one per (population, input) they are into.
    let mut xwins: Vec<ExactWindow> = Vec::new();
    for (ei, e) in etrace.iter().enumerate().filter(|(ei, _)| exact[*ei]) {
        let at = match xwins.iter().position(|w| w.pop == e.pop && w.input == e.input) {
            Some(at) => at,
            None => {
                xwins.push(ExactWindow::new(e.pop, e.input, batch, net.pops[e.pop].n, k_of(e.pop)));
                xwins.len() - 1
            }
        };
        xwins[at].members.push(ExactMember { ei, proj: e.index, n_pre: e.n_pre, x: Vec::new() });
    }
    let mut windows: Vec<Window> = etrace.iter().map(|e| Window::new(batch * e.n_pre)).collect();
    let mut trace = StepTrace::default();
    let mut ext: Vec<Vec<f64>> = in_sizes.iter().map(|s| vec![0.0; s * batch]).collect();
    let mut tgt = vec![0.0; n_target * batch];
    let mut mask = vec![1.0; batch];
    let loss_kind = data.loss();
    let mut evidence = Array2::<f64>::zeros((batch, n_target));
    for t in 0..steps {
        data.fill(t, &mut ext, &mut tgt);
        data.mask(t, &mut mask);
        let ext_refs: Vec<&[f64]> = ext.iter().map(|v| v.as_slice()).collect();
        net.step_traced(&ext_refs, Some(&mut trace))?;
        // Loss and its gradient at the readout.
        let o = net.pops[r].n;
        let mut err = vec![0.0; batch * o];
        loss += masked_step_loss(loss_kind, net.pops[r].readout_output(), &tgt, &mask, &mut evidence, Some(&mut err));
        let err_m = ArrayView2::from_shape((batch, o), &err).expect("shape");
        // dL^t/ds^t of the populations the readout reads, and the plain weights' gradient.
        let mut dlds: Vec<Vec<f64>> = net.pops.iter().map(|p| vec![0.0; batch * p.n]).collect();
        // dL^t/dh^t directly, for the states that projections read (membrane readouts).
        let mut dldh: Vec<Vec<f64>> = (0..net.pops.len()).map(|p| vec![0.0; batch * net.pops[p].n * k_of(p)]).collect();
        for &(i, from, state) in &into_readout {
            let Source::Pop(q) = from else {
                return Err(RuntimeError::Build("a readout fed directly by an input is not supported by the gradient yet".into()));
            };
            let w = net.dense_weights(i).ok_or_else(|| RuntimeError::Build("the readout's weights must be dense".into()))?;
            let d = err_m.dot(&w.t());
            add_signal(&mut dlds[q], &mut dldh[q], k_of(q), state, &d);
            if let Some(pi) = plain.iter().position(|(pi, _)| *pi == i) {
                let pre = ArrayView2::from_shape((batch, w.nrows()), &trace.pre[i]).expect("shape");
                plain_grads[pi] += &pre.t().dot(&err_m);
            }
        }
        // Derivatives and learning signals l^t = dL^t/ds * ds/dh.
        let mut pd: Vec<Option<PopDerivs>> = (0..net.pops.len()).map(|_| None).collect();
        let mut ls: Vec<Vec<f64>> = vec![Vec::new(); net.pops.len()];
        if !linear_readout {
            // The loss reads the readout's first state: dL/dh_0 = err.
            dlds[r].copy_from_slice(&err);
        }
        // From the top of the stack down: l_p = dL/ds_p * ds_p/dh_p. The online methods
        // carry the step's loss down through the layers above within the same step
        // (dL/ds_q += (l_p Df_p) W^T for each q -> p read as s^t); BPTT's backward pass
        // does that itself, with the paths through time.
        for &p in hidden.iter().rev() {
            let v = read_derivs(net, p)?;
            let (n, k, nin) = (net.pops[p].n, k_of(p), nin_of(p));
            ls[p] = (0..batch * n * k).map(|ik| dlds[p][ik / k] * v.ds[ik] + dldh[p][ik]).collect();
            if method != Method::Bptt && ls[p].iter().any(|x| *x != 0.0) {
                for &(proj, q, _, input, _, state) in hidden_links.iter().filter(|l| l.2 == p && l.4) {
                    let mu = Array2::from_shape_fn((batch, n), |(b, o)| {
                        let m = b * n + o;
                        (0..k).map(|a| ls[p][m * k + a] * v.df[(m * k + a) * nin + input]).sum::<f64>()
                    });
                    let d = mu.dot(&net.dense_weights(proj).expect("dense").t());
                    add_signal(&mut dlds[q], &mut dldh[q], k_of(q), state, &d);
                }
            }
            pd[p] = Some(v);
        }
        let mut step_grads = Vec::new();
        // Exact traces: D-RTRL, and the readout's weights in every online method. The
        // step is taped into its window; a window of one step with `record_per_step`
        // (the step's own contribution and trace are recorded).
        for w in &mut xwins {
            let v = pd[w.pop].as_ref().expect("hidden");
            w.push(v, nin_of(w.pop), &ls[w.pop], &trace.pre);
        }
        if record_per_step {
            let mut gs: Vec<Array2<f64>> = etrace.iter().map(|e| Array2::zeros((e.n_pre, net.pops[e.pop].n))).collect();
            for w in &mut xwins {
                w.flush(&mut eps, &mut gs);
            }
            for (ei, (e, g)) in etrace.iter().zip(gs).enumerate().filter(|(ei, _)| exact[*ei]) {
                grads[ei] += &g;
                step_grads.push((e.name.clone(), g));
            }
        } else if xwins.first().is_some_and(|w| w.len == WINDOW) {
            for w in &mut xwins {
                w.flush(&mut eps, &mut grads);
            }
        }
        for (pi, q) in params.iter().enumerate().filter(|_| method != Method::Bptt) {
            let v = pd[q.pop].as_ref().expect("hidden");
            let (n, k, n_p) = (net.pops[q.pop].n, k_of(q.pop), layout_of(q.pop).expect("layout").n_p);
            let tr = &mut eps_p[pi];
            let mut g = Array2::<f64>::zeros((1, n));
            let mut new = vec![0.0; k];
            for b in 0..batch {
                for o in 0..n {
                    let m = b * n + o;
                    let dm = &v.d[m * k * k..(m + 1) * k * k];
                    for a in 0..k {
                        let s: f64 = (0..k).map(|c| dm[a * k + c] * tr[m * k + c]).sum();
                        new[a] = s + v.dp[(m * k + a) * n_p + q.col];
                    }
                    tr[m * k..(m + 1) * k].copy_from_slice(&new);
                    g[[0, o]] += (0..k).map(|a| ls[q.pop][m * k + a] * new[a]).sum::<f64>();
                }
            }
            param_grads[pi] += &g;
            step_grads.push((q.name.clone(), g));
        }
        if let Method::EsDRtrl { decay } = method {
            // Bias correction of the smoothed trace, indexed by the update count as in
            // braintrace (and switched off from step 1001 on).
            let c = if t >= 1000 { 1.0 } else { (1.0 - decay.powi(t as i32 + 1)).max(1e-8) };
            let mut qs: Vec<Option<Rc<Array2<f64>>>> = vec![None; etrace.len()];
            for (ei, e) in etrace.iter().enumerate().filter(|(ei, _)| !exact[*ei]) {
                let v = pd[e.pop].as_ref().expect("hidden");
                let (n, k, nin) = (net.pops[e.pop].n, k_of(e.pop), nin_of(e.pop));
                let pre = &trace.pre[e.index];
                for (ex, xi) in eps_x[ei].iter_mut().zip(pre) {
                    *ex = decay * *ex + xi;
                }
                if owner[ei] == ei {
                    let f = &mut eps_f[ei];
                    let mut new = vec![0.0; k];
                    let mut q = Array2::<f64>::zeros((batch, n));
                    for b in 0..batch {
                        for o in 0..n {
                            let m = b * n + o;
                            let dm = &v.d[m * k * k..(m + 1) * k * k];
                            for a in 0..k {
                                let mut s = 0.0;
                                for cc in 0..k {
                                    s += dm[a * k + cc] * f[m * k + cc];
                                }
                                new[a] = decay * s + (1.0 - decay) * v.df[(m * k + a) * nin + e.input];
                            }
                            f[m * k..(m + 1) * k].copy_from_slice(&new);
                            q[[b, o]] = (0..k).map(|a| ls[e.pop][m * k + a] * new[a]).sum::<f64>() / c;
                        }
                    }
                    qs[ei] = Some(Rc::new(q));
                }
                let q = qs[owner[ei]].clone().expect("the owner comes first");
                if record_per_step {
                    // The per-step contribution itself: eps_x^T q.
                    let ex = ArrayView2::from_shape((batch, e.n_pre), &eps_x[ei]).expect("shape");
                    let g = ex.t().dot(&*q);
                    grads[ei] += &g;
                    step_grads.push((e.name.clone(), g));
                } else {
                    // Lazily: sum_t eps_x^t q^t over a window is
                    //   eps_x^{t0-1} (x) sum_t decay^{t-t0+1} q^t  +  sum_s x^s (x) r^s,
                    // r^s = sum_{t>=s} decay^{t-s} q^t; x^s is sparse (spikes), so the
                    // O(B I O) product is done once per window instead of every step.
                    let w = &mut windows[ei];
                    let nz: Vec<(u32, u32, f64)> = pre
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| **x != 0.0)
                        .map(|(j, x)| ((j / e.n_pre) as u32, (j % e.n_pre) as u32, *x))
                        .collect();
                    w.x.push(nz);
                    w.q.push(q);
                    if w.q.len() == WINDOW {
                        flush_window(w, &mut grads[ei], decay, &eps_x[ei], batch, e.n_pre);
                    }
                }
            }
        }
        if method == Method::Bptt {
            tape.push((pd, ls, trace.pre.clone()));
        }
        if let Some(on) = online.as_mut().filter(|on| (t + 1) % on.every == 0 && t + 1 < steps) {
            for w in &mut xwins {
                w.flush(&mut eps, &mut grads);
            }
            if let Method::EsDRtrl { decay } = method {
                for (ei, e) in etrace.iter().enumerate().filter(|(ei, _)| !exact[*ei]) {
                    flush_window(&mut windows[ei], &mut grads[ei], decay, &eps_x[ei], batch, e.n_pre);
                }
            }
            let mut so_far: Vec<(String, Array2<f64>)> = etrace.iter().map(|e| e.name.clone()).zip(grads.iter().cloned()).collect();
            so_far.extend(plain.iter().map(|(_, n)| n.clone()).zip(plain_grads.iter().cloned()));
            so_far.extend(params.iter().map(|q| q.name.clone()).zip(param_grads.iter().cloned()));
            for (name, w) in (on.update)(&so_far)? {
                net.set_trainable(&name, w)?;
            }
            grads.iter_mut().chain(plain_grads.iter_mut()).chain(param_grads.iter_mut()).for_each(|g| g.fill(0.0));
        }
        if record_per_step {
            for &p in &hidden {
                let pop = &net.pops[p];
                for (k, name) in pop.state_names.iter().enumerate().filter(|(_, n)| !n.starts_with('_')) {
                    record_into(&mut recorded, format!("{}.{name}", pop.name), &[batch, pop.n], &pop.states[k]);
                }
            }
            for (ei, e) in etrace.iter().enumerate() {
                let (n, k) = (net.pops[e.pop].n, k_of(e.pop));
                if exact[ei] {
                    record_into(&mut recorded, format!("eps_{}", e.name), &[batch, e.n_pre, n, k], &eps[ei]);
                } else if es {
                    record_into(&mut recorded, format!("eps_x_{}", e.name), &[batch, e.n_pre], &eps_x[ei]);
                    record_into(&mut recorded, format!("eps_f_{}", e.name), &[batch, n, k], &eps_f[owner[ei]]);
                }
            }
            if let Method::EsDRtrl { decay } = method {
                let c = if t >= 1000 { 1.0 } else { (1.0 - decay.powi(t as i32 + 1)).max(1e-8) };
                record_into(&mut recorded, "bias_correction".into(), &[], &[c]);
            }
            if method != Method::Bptt {
                per_step.push(step_grads);
            }
        }
    }

    for w in &mut xwins {
        w.flush(&mut eps, &mut grads);
    }
    if let Method::EsDRtrl { decay } = method {
        for (ei, e) in etrace.iter().enumerate().filter(|(ei, _)| !exact[*ei]) {
            flush_window(&mut windows[ei], &mut grads[ei], decay, &eps_x[ei], batch, e.n_pre);
        }
    }
    // Bytes held by the method's own state: traces, or the BPTT tape.
    let vec_bytes = |v: &Vec<Vec<f64>>| v.iter().map(|x| x.len() * 8).sum::<usize>();
    let tape_bytes: usize = tape
        .iter()
        .map(|(pd, ls, pre)| {
            pd.iter().flatten().map(|d| (d.d.len() + d.df.len() + d.ds.len() + d.dp.len()) * 8).sum::<usize>() + vec_bytes(ls) + vec_bytes(pre)
        })
        .sum();
    let state_bytes = vec_bytes(&eps) + vec_bytes(&eps_x) + vec_bytes(&eps_f) + vec_bytes(&eps_p) + tape_bytes;
    if method == Method::Bptt {
        backward(net, &tape, &etrace, &params, &hidden_links, &hidden, &mut grads, &mut param_grads, batch, &k_of, &nin_of)?;
    }
    let mut total: Vec<(String, Array2<f64>)> = etrace.iter().map(|e| e.name.clone()).zip(grads).collect();
    total.extend(plain.iter().map(|(_, n)| n.clone()).zip(plain_grads));
    total.extend(params.iter().map(|q| q.name.clone()).zip(param_grads));
    Ok(Gradients { loss, total, per_step, state_bytes, evidence, recorded })
}

/// Adds `d` (B x n, the loss's derivative with respect to what a projection read) to
/// dL/ds of its source, or to dL/dh of the state `state` when it read that state.
fn add_signal(dlds: &mut [f64], dldh: &mut [f64], k: usize, state: Option<usize>, d: &Array2<f64>) {
    match state {
        None => dlds.iter_mut().zip(d.iter()).for_each(|(a, b)| *a += b),
        Some(j) => dldh.iter_mut().skip(j).step_by(k).zip(d.iter()).for_each(|(a, b)| *a += b),
    }
}

/// Reverse-mode accumulation through the whole sequence (BPTT), including the paths
/// through recurrent and feed-forward spikes between populations.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn backward(
    net: &Network<f64>,
    tape: &[(Vec<Option<PopDerivs>>, Vec<Vec<f64>>, Vec<Vec<f64>>)],
    etrace: &[EtraceProj],
    params: &[ParamTrain],
    links: &[(usize, usize, usize, usize, bool, Option<usize>)],
    hidden: &[usize],
    grads: &mut [Array2<f64>],
    param_grads: &mut [Array2<f64>],
    batch: usize,
    k_of: &dyn Fn(usize) -> usize,
    nin_of: &dyn Fn(usize) -> usize,
) -> Result<(), RuntimeError> {
    let np = net.pops.len();
    // lambda_p = dL/dh_p^t (all future losses), per population.
    let mut lambda: Vec<Vec<f64>> = (0..np).map(|p| vec![0.0; batch * net.pops[p].n * k_of(p)]).collect();
    // dL/ds_q carried to step t-1 (recurrent paths) or within step t (feed-forward).
    let mut ds_prev: Vec<Vec<f64>> = (0..np).map(|p| vec![0.0; batch * net.pops[p].n]).collect();
    // The same for states read directly (dL/dh_q), per hidden state.
    let zero_h = || -> Vec<Vec<f64>> { (0..np).map(|p| vec![0.0; batch * net.pops[p].n * k_of(p)]).collect() };
    let mut dh_prev = zero_h();
    for t in (0..tape.len()).rev() {
        let (pd, ls, pre) = &tape[t];
        let mut ds_now: Vec<Vec<f64>> = std::mem::replace(&mut ds_prev, (0..np).map(|p| vec![0.0; batch * net.pops[p].n]).collect());
        let mut dh_now = std::mem::replace(&mut dh_prev, zero_h());
        for &p in hidden.iter().rev() {
            let v = pd[p].as_ref().expect("hidden");
            let (n, k, nin) = (net.pops[p].n, k_of(p), nin_of(p));
            let lam = &mut lambda[p];
            for m in 0..batch * n {
                for a in 0..k {
                    lam[m * k + a] += ls[p][m * k + a] + ds_now[p][m] * v.ds[m * k + a] + dh_now[p][m * k + a];
                }
            }
            // mu = dL/dy^t for every kernel input of p.
            let mut mu = vec![0.0; batch * n * nin];
            for m in 0..batch * n {
                for j in 0..nin {
                    mu[m * nin + j] = (0..k).map(|a| lam[m * k + a] * v.df[(m * k + a) * nin + j]).sum();
                }
            }
            // Trainable params: dL/dtheta += lambda . dh^t/dtheta.
            for (pi, q) in params.iter().enumerate().filter(|(_, q)| q.pop == p) {
                let n_p = v.dp.len() / (batch * n * k).max(1);
                for m in 0..batch * n {
                    param_grads[pi][[0, m % n]] += (0..k).map(|a| lam[m * k + a] * v.dp[(m * k + a) * n_p + q.col]).sum::<f64>();
                }
            }
            let mu_of = |input: usize| -> Array2<f64> { Array2::from_shape_fn((batch, n), |(b, o)| mu[(b * n + o) * nin + input]) };
            for (ei, e) in etrace.iter().enumerate().filter(|(_, e)| e.pop == p) {
                let x = ArrayView2::from_shape((batch, e.n_pre), &pre[e.index]).expect("shape");
                grads[ei] += &x.t().dot(&mu_of(e.input));
            }
            for &(proj, q, _, input, now, state) in links.iter().filter(|l| l.2 == p) {
                let w = net.dense_weights(proj).expect("dense");
                let d = mu_of(input).dot(&w.t());
                let (ds, dh) = if now { (&mut ds_now[q], &mut dh_now[q]) } else { (&mut ds_prev[q], &mut dh_prev[q]) };
                add_signal(ds, dh, k_of(q), state, &d);
            }
            // lambda at h^{t-1} = D^T lambda.
            let mut back = vec![0.0; lam.len()];
            for m in 0..batch * n {
                for c in 0..k {
                    back[m * k + c] = (0..k).map(|a| lam[m * k + a] * v.d[(m * k + a) * k + c]).sum();
                }
            }
            *lam = back;
        }
        // The spike s^{t-1} was read from h^{t-1}: its surrogate derivative is the one
        // taped at step t-1, applied when that step is processed (ds_prev).
    }
    Ok(())
}
