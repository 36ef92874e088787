//! Gradients of a sequence loss: BPTT (exact), D-RTRL and ES-D-RTRL (online, with
//! eligibility traces), as defined in ../shared/ALGORITHMS.md and the braintrace golden
//! files. The per-neuron Jacobians D, Df and the spike's surrogate derivative come from
//! the compiler (the step's IR) and are written by the population's step kernel in the
//! same pass as the step (interpreter or JIT).
//!
//! Everything runs in the network's float type `T` (f32 or f64): traces, tapes, weight
//! gradients and their products. The task side (data, targets, the loss and its gradient
//! at the readout) is f64, and so are the [`Gradients`] handed back.
//!
//! Supported today: hidden spiking populations (stacked or recurrent) whose trainable
//! dense projections come from external inputs or spiking populations (etrace weights),
//! read by one readout: the stateless `Linear` (plain weights: exact same-step gradient)
//! or a model with dynamics such as `LeakyReadout` (the loss reads its first state; its
//! weights get their exact trace in every method). Losses: MSE or cross-entropy per
//! step, masked, summed over steps.
//!
//! Files: `loss` (sequences and per-step losses), `es` (ES-D-RTRL traces and their lazy
//! contraction), `exact` (exact D-RTRL traces over windows), `bptt` (the backward pass),
//! `pass` (the gradient pass, [`CpuGradient`]), `split` (the batch split across threads);
//! this file plans which projection gets which treatment.

mod bptt;
mod diagnose;
pub(crate) mod es;
mod exact;
pub(crate) mod loss;
mod pass;
mod split;

pub use loss::{DeviceDraws, InMemory, Loss, RowFill, Sequence, step_loss};
pub use diagnose::{bytes_per_element, describe_non_finite};
pub use pass::CpuGradient;
pub use split::{gradient_split, split_sizes};
pub(crate) use loss::StepData;

use crate::error::RuntimeError;
use crate::network::{Network, StepTrace};
use crate::scalar::Float;
pub(crate) use bptt::Target;
use es::EsGroup;
use ndarray::{Array2, Array3, ArrayView2, linalg::general_mat_mul};
use snnc_compiler::sema::{PopKind, Source};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Bptt,
    DRtrl,
    /// ES-D-RTRL with trace decay `lambda` (braintrace's `pp_prop`).
    EsDRtrl { decay: f64 },
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Bptt => f.write_str("BPTT"),
            Method::DRtrl => f.write_str("D-RTRL"),
            Method::EsDRtrl { decay } => write!(f, "ES-D-RTRL (decay {decay})"),
        }
    }
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

fn record_into<T: Float>(rec: &mut Vec<(String, Vec<usize>, Vec<f64>)>, name: String, shape: &[usize], data: &[T]) {
    let vals = data.iter().map(|v| v.to_f64());
    match rec.iter_mut().find(|(n, _, _)| *n == name) {
        Some((_, sh, d)) => {
            sh[0] += 1;
            d.extend(vals);
        }
        None => {
            let mut sh = vec![1];
            sh.extend_from_slice(shape);
            rec.push((name, sh, vals.collect()));
        }
    }
}

impl Gradients {
    pub fn get(&self, name: &str) -> Option<&Array2<f64>> {
        self.total.iter().find(|(n, _)| n == name).map(|(_, g)| g)
    }
}

fn zero<T: Float>() -> T {
    T::default()
}

fn to_f64<T: Float>(a: &Array2<T>) -> Array2<f64> {
    a.mapv(|v| v.to_f64())
}

/// The derivatives of one hidden population at one step that the learning signal needs
/// (the traces and the BPTT tape read the others from the population's states).
#[derive(Clone, Default)]
pub(crate) struct PopDerivs<T> {
    /// (B*N, K, n_in)
    df: Vec<T>,
    /// (B*N, K): ds^t/dh^t
    ds: Vec<T>,
}

/// ds/dh and Df of population `p` for the step just taken, as the step kernel wrote them
/// (the population was built with `Options::learning`), into `out`.
fn read_derivs<T: Float>(net: &Network<T>, p: usize, out: &mut PopDerivs<T>) -> Result<(), RuntimeError> {
    let pop = &net.pops[p];
    let dl = pop.deriv.ok_or_else(|| {
        RuntimeError::Build(format!("population `{}` was not built for learning (Options::learning)", pop.name))
    })?;
    let m = pop.n * net.batch;
    // States are structure of arrays: gather each element's matrices.
    let gather = |first: usize, per: usize, dst: &mut Vec<T>| {
        dst.resize(m * per, zero());
        if per == 1 {
            dst.copy_from_slice(&pop.states[first][..m]);
            return;
        }
        for e in 0..per {
            for (i, v) in pop.states[first + e][..m].iter().enumerate() {
                dst[i * per + e] = *v;
            }
        }
    };
    gather(dl.df, dl.k * dl.n_in, &mut out.df);
    gather(dl.ds, dl.k, &mut out.ds);
    Ok(())
}

/// Steps whose weight-gradient products are accumulated together (ES-D-RTRL, and the
/// exact traces of D-RTRL and of the readout).
const WINDOW: usize = 32;

/// The non-zero entries of projection `proj`'s presynaptic values (batch x n_pre) as
/// (batch, index, value), into `out`: from the network's list where it has one (spikes,
/// external inputs), else by scanning.
fn non_zeros<T: Float>(trace: &StepTrace<T>, proj: usize, n_pre: usize, out: &mut Vec<(u32, u32, T)>) {
    out.clear();
    let pre = &trace.pre[proj];
    match trace.nonzero.get(proj).and_then(|n| n.as_deref()) {
        Some(nz) => out.extend(nz.iter().map(|&(b, i)| (b, i, pre[b as usize * n_pre + i as usize]))),
        None => {
            for (b, row) in pre.chunks_exact(n_pre).enumerate() {
                out.extend(row.iter().enumerate().filter(|(_, x)| **x != zero::<T>()).map(|(i, x)| (b as u32, i as u32, *x)));
            }
        }
    }
}

fn nz_is_sparse(known: Option<&[(u32, u32)]>, len: usize) -> bool {
    known.is_some_and(|nz| nz.len() * 4 < len)
}

/// `g += x^T c` (x: B x I, c: B x O): a GEMM, or rows of `c` added where `x` is sparse
/// (spikes; `known`: its non-zero entries, when the network listed them).
fn add_outer<T: Float>(g: &mut Array2<T>, x: ArrayView2<T>, c: ArrayView2<T>, known: Option<&[(u32, u32)]>) {
    let one = T::from_f64(1.0);
    let o = c.ncols();
    if let (Some(nz), Some(xs), Some(cs), true) = (known, x.as_slice(), c.as_slice(), nz_is_sparse(known, x.len())) {
        let n_pre = x.ncols();
        let gs = g.as_slice_mut().expect("standard layout");
        for &(b, i) in nz {
            let (b, i) = (b as usize, i as usize);
            let xv = xs[b * n_pre + i];
            let (grow, crow) = (&mut gs[i * o..(i + 1) * o], &cs[b * o..(b + 1) * o]);
            if xv == one {
                grow.iter_mut().zip(crow).for_each(|(g, c)| *g += *c);
            } else {
                grow.iter_mut().zip(crow).for_each(|(g, c)| *g += xv * *c);
            }
        }
        return;
    }
    let (Some(xs), Some(cs)) = (x.as_slice(), c.as_slice()) else {
        general_mat_mul(one, &x.t(), &c, one, g);
        return;
    };
    let nnz = xs.iter().fold(0usize, |n, v| n + usize::from(*v != zero::<T>()));
    if nnz * 4 >= xs.len() {
        general_mat_mul(one, &x.t(), &c, one, g);
        return;
    }
    let (n_pre, o) = (x.ncols(), c.ncols());
    let gs = g.as_slice_mut().expect("standard layout");
    for (xr, cr) in xs.chunks_exact(n_pre).zip(cs.chunks_exact(o)) {
        for (i, &xv) in xr.iter().enumerate() {
            if xv == zero::<T>() {
                continue;
            }
            let grow = &mut gs[i * o..(i + 1) * o];
            if xv == one {
                grow.iter_mut().zip(cr).for_each(|(g, c)| *g += *c);
            } else {
                grow.iter_mut().zip(cr).for_each(|(g, c)| *g += xv * *c);
            }
        }
    }
}

/// Adds `d` (B x n, the loss's derivative with respect to what a projection read) to
/// dL/ds of its source, or to dL/dh of the state `state` when it read that state.
fn add_signal<T: Float>(dlds: &mut [T], dldh: &mut [T], k: usize, state: Option<usize>, d: &[T]) {
    match state {
        None => dlds.iter_mut().zip(d).for_each(|(a, b)| *a += *b),
        Some(j) => dldh.iter_mut().skip(j).step_by(k).zip(d).for_each(|(a, b)| *a += *b),
    }
}

/// Where a trainable projection's gradient (and its trainable tensor) lives: every
/// (pre, post) pair of a dense projection (I x O, row-major), or only the stored synapses
/// of a sparse one (1 x nnz, in CSR order: presynaptic rows, columns ascending). Either
/// way a flat index runs over the trainable pairs ("pair index": `i * O + o` dense, the
/// synapse's position in the CSR sparse), and the traces and gradients of every method
/// are indexed by it, so a sparse projection costs memory in proportion to its synapses.
#[derive(Clone)]
pub(crate) enum GradShape {
    Dense { n_pre: usize, n_post: usize },
    /// The structure is shared with the ES-D-RTRL contraction's worker thread.
    Sparse(std::sync::Arc<Rows>),
    /// A projection's adapter (`adapter rank R`): dL/dU (I x R) stacked over dL/dV
    /// transposed (O x R), formed by [`crate::adapter::LowRank::add_products`] only.
    LowRank { n_pre: usize, n_post: usize, rank: usize },
}

/// The structure of a sparse projection (a copy of the network's: the network is
/// mutably borrowed while a pass steps it).
pub(crate) struct Rows {
    pub n_post: usize,
    pub row_ptr: Vec<usize>,
    pub col: Vec<u32>,
    /// A convolution's synapses share a kernel (`conv.rs`): each synapse's entry in it
    /// and its shape. The traces stay per synapse; the gradient is the kernel's.
    pub kernel: Option<KernelIndex>,
}

/// Each synapse's kernel entry, and the kernel's shape.
pub(crate) type KernelIndex = (std::sync::Arc<[u32]>, (usize, usize));

impl GradShape {
    /// The gradient of projection `proj` of `net` (into `n_post` neurons), where it can
    /// be trained.
    fn of<T: Float>(net: &Network<T>, proj: usize, n_post: usize) -> Option<GradShape> {
        if let Some(w) = net.dense_weights(proj) {
            return Some(GradShape::Dense { n_pre: w.nrows(), n_post: w.ncols() });
        }
        let (row_ptr, col, _) = net.sparse_weights(proj)?;
        let kernel = net.conv_kernel(proj).map(|s| (s.entry.clone(), s.kernel.dim()));
        Some(GradShape::Sparse(std::sync::Arc::new(Rows { n_post, row_ptr: row_ptr.to_vec(), col: col.to_vec(), kernel })))
    }

    /// The gradient of the trainable tensor from the pairs' (`dim()`): itself, or for a
    /// convolution the synapses' gradients summed into the kernel entries they share.
    pub fn of_tensor(&self, g: Array2<f64>) -> Array2<f64> {
        match self {
            GradShape::Sparse(r) => match &r.kernel {
                Some((entry, dim)) => crate::conv::kernel_gradient(&g, entry, *dim),
                None => g,
            },
            _ => g,
        }
    }

    /// The shape of the gradient array: I x O, or 1 x nnz.
    pub fn dim(&self) -> (usize, usize) {
        match self {
            GradShape::Dense { n_pre, n_post } => (*n_pre, *n_post),
            GradShape::Sparse(r) => (1, r.col.len()),
            GradShape::LowRank { n_pre, n_post, rank } => (n_pre + n_post, *rank),
        }
    }

    /// Trainable pairs (I * O, or nnz).
    pub fn pairs(&self) -> usize {
        let (a, b) = self.dim();
        a * b
    }

    pub fn zeros<T: Float>(&self) -> Array2<T> {
        Array2::from_elem(self.dim(), zero())
    }

    /// The pairs of presynaptic row `i` (a range of pair indices) and their columns
    /// (`None`: dense, the columns are `0..O` in order).
    #[inline]
    pub fn row(&self, i: usize) -> (std::ops::Range<usize>, Option<&[u32]>) {
        match self {
            GradShape::Dense { n_post, .. } => (i * n_post..(i + 1) * n_post, None),
            GradShape::Sparse(r) => {
                let range = r.row_ptr[i]..r.row_ptr[i + 1];
                (range.clone(), Some(&r.col[range]))
            }
            GradShape::LowRank { .. } => unreachable!("an adapter has no pairs (planned: no exact trace, products by LowRank::add_products)"),
        }
    }

    /// `g[i, .] += x * c` at the trainable pairs of row `i` (`c`: the O postsynaptic
    /// values of one batch element).
    #[inline]
    pub fn add_row<T: Float>(&self, g: &mut [T], i: usize, x: T, c: &[T]) {
        let (range, cols) = self.row(i);
        let grow = &mut g[range];
        match cols {
            None if x == T::from_f64(1.0) => grow.iter_mut().zip(c).for_each(|(g, c)| *g += *c),
            None => grow.iter_mut().zip(c).for_each(|(g, c)| *g += x * *c),
            Some(cols) => grow.iter_mut().zip(cols).for_each(|(g, &o)| *g += x * c[o as usize]),
        }
    }

    /// `g += x^T c` (x: B x I, c: B x O, row-major) at the trainable pairs: a GEMM for
    /// dense weights, rows of the non-zero x for sparse ones.
    pub fn add_outer<T: Float>(&self, g: &mut Array2<T>, x: &[T], c: &[T], batch: usize, scale: T) {
        match self {
            GradShape::Dense { n_pre, n_post } => {
                let xv = ArrayView2::from_shape((batch, *n_pre), x).expect("shape");
                let cv = ArrayView2::from_shape((batch, *n_post), c).expect("shape");
                general_mat_mul(scale, &xv.t(), &cv, T::from_f64(1.0), g);
            }
            GradShape::Sparse(r) => {
                let (n_pre, n) = (r.row_ptr.len() - 1, r.n_post);
                let gs = g.as_slice_mut().expect("standard layout");
                for (b, xr) in x.chunks_exact(n_pre).enumerate().take(batch) {
                    for (i, &xv) in xr.iter().enumerate().filter(|(_, v)| **v != zero::<T>()) {
                        self.add_row(gs, i, scale * xv, &c[b * n..(b + 1) * n]);
                    }
                }
            }
            GradShape::LowRank { .. } => unreachable!("an adapter's products go through LowRank::add_products"),
        }
    }
}

/// `out = mu W^T` for projection `proj` (mu: B x O, out: B x I): the learning signal
/// carried back through its weights, dense (a GEMM) or sparse (each stored synapse), and
/// through its adapter (`+ (mu V^T) U^T`).
fn back_project<T: Float>(net: &Network<T>, proj: usize, step: u64, mu: &[T], out: &mut [T], batch: usize) {
    let one = T::from_f64(1.0);
    if let Some(w) = net.dense_weights(proj) {
        let muv = ArrayView2::from_shape((batch, w.ncols()), mu).expect("shape");
        let mut dv = ndarray::ArrayViewMut2::from_shape((batch, w.nrows()), out).expect("shape");
        general_mat_mul(one, &muv, &w.t(), zero(), &mut dv);
    } else {
        let (row_ptr, col, w) = net.sparse_weights(proj).expect("a link is dense or sparse (planned)");
        let (n_pre, n) = (row_ptr.len() - 1, mu.len() / batch);
        for (mub, ob) in mu.chunks_exact(n).zip(out.chunks_exact_mut(n_pre)).take(batch) {
            for (i, o) in ob.iter_mut().enumerate() {
                let r = row_ptr[i]..row_ptr[i + 1];
                *o = col[r.clone()].iter().zip(&w[r]).fold(zero(), |acc, (&j, &wv)| acc + wv * mub[j as usize]);
            }
        }
    }
    if let Some(a) = net.adapter(proj) {
        a.back_project(mu, out, batch);
    }
    // What the projection read was its source times the step's dropout mask.
    net.dropout_back(proj, step, out);
}

/// A trainable per-neuron param: its name, population and column in dh/dtheta.
pub(crate) struct ParamTrain {
    pub name: String,
    pub pop: usize,
    pub col: usize,
}

/// A projection between populations with a step, along which the learning signal
/// flows back: its index, source and target, the target's kernel input, whether the
/// source is read in the same step (a layer below) and the source state read, if any.
pub(crate) struct Link {
    pub proj: usize,
    pub from: usize,
    pub to: usize,
    pub input: usize,
    pub now: bool,
    pub state: Option<usize>,
    /// The projection's transmission delay, in steps.
    pub delay: usize,
}

impl Link {
    /// How many steps before its target's step the source value it delivers was read:
    /// 0 for a layer below read in the same step without delay, 1 for a recurrent (or
    /// later-stepped) source, plus the delay.
    pub fn steps_back(&self) -> usize {
        self.delay + usize::from(!self.now)
    }
}

/// A projection with `batch_norm` into a population with a step: BPTT turns the signal
/// at its target's input (dL/dy) into dL/dz (`crate::batchnorm::backward`) before its
/// weights' gradient and its link use it, and trains gamma and beta where listed.
pub(crate) struct BnPlan {
    pub proj: usize,
    pub pop: usize,
    pub input: usize,
    pub name: String,
    pub gamma: bool,
    pub beta: bool,
}

pub(crate) struct EtraceProj {
    pub target: Target,
    pub name: String,
}

/// Which projection gets which treatment in a gradient pass (the CPU's and the GPU's):
/// the readout, the etrace projections (trainable, into populations with a step), the
/// plain ones (trainable, into a `Linear` readout), what the readout reads, the links
/// the learning signal flows back along, the populations with a step and the trainable
/// per-neuron params. Everything a pass cannot do is refused here, with one message.
pub(crate) struct Plan {
    pub r: usize,
    pub linear_readout: bool,
    pub etrace: Vec<EtraceProj>,
    /// (projection, name)
    pub plain: Vec<(usize, String)>,
    /// (projection, source population, state read instead of spikes)
    pub into_readout: Vec<(usize, usize, Option<usize>)>,
    pub links: Vec<Link>,
    pub hidden: Vec<usize>,
    pub params: Vec<ParamTrain>,
    pub projection_names: Vec<String>,
    pub bn: Vec<BnPlan>,
}

pub(crate) fn plan<T: Float>(net: &Network<T>, trainable: &[String]) -> Result<Plan, RuntimeError> {
    // The readout: one `readout` population, either the stateless `Linear` (output x W)
    // or a model with dynamics (e.g. `LeakyReadout`) whose output is its first state.
    let readouts: Vec<usize> = (0..net.pops.len()).filter(|&p| net.pops[p].kind == PopKind::Readout).collect();
    let [r] = readouts[..] else {
        return Err(RuntimeError::Build(format!("gradients need exactly one readout, the network has {}", readouts.len())));
    };
    let linear_readout = net.pops[r].step.is_none();
    if let Some(v) = crate::sends::sent_value(&net.pops[r]) {
        return Err(RuntimeError::Build(format!(
            "readout `{}` declares `output {v}`, but the loss reads a readout's first state: learning through it is not supported; drop the `output`",
            net.pops[r].name
        )));
    }
    // Projections: etrace (into hidden populations) and plain (into the readout).
    let mut etrace: Vec<EtraceProj> = Vec::new();
    let mut plain = Vec::new();
    let mut into_readout = Vec::new(); // (proj, source population, state read instead of spikes)
    let mut links: Vec<Link> = Vec::new();
    let mut bn: Vec<BnPlan> = Vec::new();
    for name in net.projections().iter().map(|(n, _)| n.clone()) {
        let (i, from, to, input) = net.projection(&name).expect("exists");
        let dense = net.dense_weights(i).is_some();
        // Dense or sparse: the shapes a gradient flows through and a weight trains in.
        let shape = GradShape::of(net, i, net.pops[to].n);
        let is_trainable = trainable.contains(&name);
        let state = net.projection_state(i);
        // A delayed projection delivers at step t what its source sent at t - d: the
        // traces read the presynaptic values d steps late (the pass keeps them), and
        // BPTT carries the signal back d steps. The readout's error reaches its sources
        // in the same step only.
        let delay = net.projection_delay(i).unwrap_or(0);
        if net.synapse_delays(i).is_some() {
            return Err(RuntimeError::Build(format!("`{name}` has a delay per synapse: gradients go through one delay per projection only (`delay 2 ms`), not yet through per-synapse delays")));
        }
        if let (Some(j), Source::Pop(q)) = (state, from) {
            if net.pops[q].deriv.is_some_and(|d| j >= d.k) {
                return Err(RuntimeError::Build(format!(
                    "`{name}` reads `{}.{}`, which is not one of its hidden states: no gradient through it",
                    net.pops[q].name, net.pops[q].state_names[j]
                )));
            }
        }
        if net.batch_norm(i).is_some() {
            if to == r && linear_readout {
                return Err(RuntimeError::Build(format!(
                    "`{name}` has `batch_norm` into the `Linear` readout `{}`: gradients through it are not supported; normalise a layer's input current instead",
                    net.pops[r].name
                )));
            }
            let listed = |t: &str| trainable.iter().any(|n| *n == format!("{name}.{t}"));
            bn.push(BnPlan { proj: i, pop: to, input, name: name.clone(), gamma: listed("gamma"), beta: listed("beta") });
        }
        if to == r && linear_readout {
            if net.adapter(i).is_some() {
                return Err(RuntimeError::Build(format!("`{name}` has an adapter: gradients through an adapted projection into a `Linear` readout are not supported")));
            }
            let Source::Pop(q) = from else {
                return Err(RuntimeError::Build("a readout fed directly by an input is not supported by the gradient yet".into()));
            };
            if !dense {
                return Err(RuntimeError::Build(format!("`{name}`: the weights into the readout must be dense for a gradient")));
            }
            if delay > 0 {
                return Err(RuntimeError::Build(format!("`{name}` has a delay: gradients through a delayed projection into the readout are not supported")));
            }
            into_readout.push((i, q, state));
            if is_trainable {
                plain.push((i, name.clone()));
            }
            continue;
        }
        if let Source::Pop(q) = from {
            if q == r {
                return Err(RuntimeError::Build(format!("`{name}` reads the output of the readout `{}`: gradients through it are not supported", net.pops[r].name)));
            }
            if shape.is_none() {
                return Err(RuntimeError::Build(format!("`{name}`: gradients through one-to-one and procedural projections are not supported yet")));
            }
            links.push(Link { proj: i, from: q, to, input, now: q < to, state, delay });
        }
        if is_trainable {
            let Some(shape) = shape else {
                return Err(RuntimeError::Build(format!("`{name}`: only dense and sparse projections can be trained (one-to-one and procedural ones cannot yet)")));
            };
            let n_pre = net.source_size(i);
            etrace.push(EtraceProj { target: Target { index: i, pop: to, input, n_pre, delay, shape }, name: name.clone() });
        }
        // The adapter's U and V, trained together as one entry (their stacked gradient).
        if let Some(a) = net.adapter(i) {
            let (u, v) = (format!("{name}.U"), format!("{name}.V"));
            match (trainable.contains(&u), trainable.contains(&v)) {
                (true, true) => {
                    let (n_pre, n_post, rank) = (net.source_size(i), net.pops[to].n, a.rank());
                    let shape = GradShape::LowRank { n_pre, n_post, rank };
                    etrace.push(EtraceProj { target: Target { index: i, pop: to, input, n_pre, delay, shape }, name: format!("{name}.adapter") });
                }
                (false, false) => {}
                _ => return Err(RuntimeError::Build(format!("`{u}` and `{v}` (the adapter of `{name}`) are trained together: list both"))),
            }
        }
    }
    // Every population with a step (spiking layers, and a readout with dynamics).
    let hidden: Vec<usize> = (0..net.pops.len()).filter(|&p| net.pops[p].step.is_some()).collect();
    if let Some(&p) = hidden.iter().find(|&&p| p != r && net.pops[p].spikes.is_empty()) {
        return Err(RuntimeError::Build(format!("`{}` does not spike: no learning signal through it", net.pops[p].name)));
    }
    let layouts: Vec<Option<snnc_compiler::discretise::DerivLayout>> = net.pops.iter().map(|p| p.deriv).collect();
    for &p in &hidden {
        if layouts[p].is_none() {
            return Err(RuntimeError::Build(format!(
                "population `{}` was not built for learning (build the network with Options::learning)",
                net.pops[p].name
            )));
        }
    }
    // Trainable per-neuron params (`POP.PARAM`): (name, population, column of dh/dtheta).
    let projection_names: Vec<String> = net.projections().into_iter().map(|(n, _)| n).collect();
    let mut params: Vec<ParamTrain> = Vec::new();
    // Batch norms' gamma and beta are planned with their projections; their running
    // estimates (`state/...`) are state: no gradient.
    let other = |n: &String| net.adapter_slot(n).is_some() || net.batch_norm_slot(n).is_some();
    for name in trainable.iter().filter(|n| !projection_names.contains(n) && !other(n)) {
        let (pop, _, col, _) = net.param_slot(name).ok_or_else(|| {
            RuntimeError::Input(format!("`{name}` is neither a projection nor a trainable param (`POP.PARAM` of a param marked `trainable`) of the network"))
        })?;
        params.push(ParamTrain { name: name.clone(), pop, col });
    }
    Ok(Plan { r, linear_readout, etrace, plain, into_readout, links, hidden, params, projection_names, bn })
}

/// The online methods carry the learning signal back within a step only (ALGORITHMS.md):
/// a trained projection or param of a population that reaches the loss only through
/// recurrent or delayed paths would get a zero gradient from them. Refused, naming the
/// population, rather than trained to nothing.
pub(crate) fn check_online_reach<T: Float>(net: &Network<T>, plan: &Plan) -> Result<(), RuntimeError> {
    let mut reach = vec![false; net.pops.len()];
    reach[plan.r] = true;
    for &(_, q, _) in &plan.into_readout {
        reach[q] = true;
    }
    let mut changed = true;
    while changed {
        changed = false;
        for l in plan.links.iter().filter(|l| l.steps_back() == 0) {
            if reach[l.to] && !reach[l.from] {
                reach[l.from] = true;
                changed = true;
            }
        }
    }
    let trained = plan.etrace.iter().map(|e| (&e.name, e.target.pop)).chain(plan.params.iter().map(|q| (&q.name, q.pop)));
    if let Some((name, p)) = trained.clone().find(|(_, p)| !reach[*p]) {
        let delayed: Vec<String> = plan.links.iter().filter(|l| l.from == p && l.delay > 0).map(|l| format!("`{}`", net.projections()[l.proj].0)).collect();
        let via = if delayed.is_empty() { String::new() } else { format!(" (delayed: {})", delayed.join(", ")) };
        return Err(RuntimeError::Build(format!(
            "`{name}`: the online methods carry the learning signal back within a step only, and `{}` reaches the loss only through delayed or recurrent paths{via}, so its gradient would be zero; train it with BPTT, or without the delay",
            net.pops[p].name
        )));
    }
    Ok(())
}

/// Computes the gradient of `sum_t L^t` for a batch of sequences. `x[i]` is external
/// input `i` with shape (T, B, size); `target` is (T, B, readout size).
pub fn gradient<T: Float>(
    net: &mut Network<T>,
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
pub fn gradient_of<T: Float>(
    net: &mut Network<T>,
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

/// Where the ES-D-RTRL windows are contracted into the weight gradients: on this thread,
/// or on a worker thread while the next window is taped (the two cores of a small
/// machine then split a pass roughly in half: stepping and traces here, the O(B I O)
/// gradient products there). Both give the same sums in the same order.
enum Contractor<T: Float> {
    Inline { grads: Vec<Vec<Array2<T>>>, shapes: Vec<es::Shape>, decay: T },
    Worker {
        jobs: Option<std::sync::mpsc::Sender<(usize, es::Tape<T>)>>,
        done: std::sync::mpsc::Receiver<(usize, es::Tape<T>)>,
        /// Per group: a tape back from the worker, ready to reuse, or one in flight.
        spare: Vec<Option<es::Tape<T>>>,
        in_flight: Vec<bool>,
        handle: Option<std::thread::JoinHandle<Vec<Vec<Array2<T>>>>>,
    },
}

impl<T: Float> Contractor<T> {
    fn new(groups: &[EsGroup<T>], decay: T, threaded: bool) -> Contractor<T> {
        let grads: Vec<Vec<Array2<T>>> = groups.iter().map(|g| g.shape.grad.iter().map(|s| s.zeros()).collect()).collect();
        let shapes: Vec<es::Shape> = groups.iter().map(|g| g.shape.clone()).collect();
        if !threaded || groups.is_empty() {
            return Contractor::Inline { grads, shapes, decay };
        }
        let (jobs, jobs_rx) = std::sync::mpsc::channel::<(usize, es::Tape<T>)>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let worker_shapes = shapes.clone();
        let worker_grads = grads.clone();
        let flush = crate::kernels::denormals_flushed();
        let spawned = std::thread::Builder::new().name("snnc-es-contract".into()).spawn(move || {
            if flush {
                crate::kernels::flush_denormals();
            }
            let mut g = worker_grads;
            for (gi, mut tape) in jobs_rx {
                let mut refs: Vec<&mut Array2<T>> = g[gi].iter_mut().collect();
                es::contract(&mut tape, &worker_shapes[gi], decay, &mut refs);
                if done_tx.send((gi, tape)).is_err() {
                    break;
                }
            }
            g
        });
        match spawned {
            Ok(handle) => Contractor::Worker {
                jobs: Some(jobs),
                done,
                spare: groups.iter().map(|_| None).collect(),
                in_flight: vec![false; groups.len()],
                handle: Some(handle),
            },
            Err(_) => Contractor::Inline { grads, shapes, decay },
        }
    }

    /// Contracts group `gi`'s current window and starts a new one.
    fn flush(&mut self, gi: usize, group: &mut EsGroup<T>) {
        if group.len() == 0 {
            return;
        }
        match self {
            Contractor::Inline { grads, shapes, decay } => {
                let mut refs: Vec<&mut Array2<T>> = grads[gi].iter_mut().collect();
                es::contract(&mut group.tape, &shapes[gi], *decay, &mut refs);
                group.restart(None);
            }
            Contractor::Worker { jobs, done, spare, in_flight, .. } => {
                // Wait for this group's previous window (other groups' come back too).
                while in_flight[gi] {
                    match done.recv() {
                        Ok((gj, tape)) => {
                            in_flight[gj] = false;
                            spare[gj] = Some(tape);
                        }
                        Err(_) => break,
                    }
                }
                let fresh = spare[gi].take().unwrap_or_else(|| group.fresh_tape());
                let old = group.restart(Some(fresh)).expect("a tape was given");
                if let Some(j) = jobs {
                    in_flight[gi] = j.send((gi, old)).is_ok();
                }
            }
        }
    }

    /// The gradients accumulated so far, per group and member; zeroes them (inline) or
    /// ends the worker (it must get no more windows).
    fn take(&mut self) -> Result<Vec<Vec<Array2<T>>>, RuntimeError> {
        match self {
            Contractor::Inline { grads, .. } => {
                let out = grads.clone();
                grads.iter_mut().flatten().for_each(|g| g.fill(zero()));
                Ok(out)
            }
            Contractor::Worker { jobs, handle, .. } => {
                drop(jobs.take());
                handle.take().and_then(|h| h.join().ok()).ok_or_else(|| RuntimeError::Build("the gradient worker thread failed".into()))
            }
        }
    }
}

/// [`gradient_of`], optionally [`Online`]: then the returned `total` is what accumulated
/// after the last update (the caller applies it at the end of the sequence).
pub fn gradient_online<T: Float>(
    net: &mut Network<T>,
    trainable: &[String],
    data: &mut dyn Sequence,
    method: Method,
    record_per_step: bool,
    online: Option<Online>,
) -> Result<Gradients, RuntimeError> {
    CpuGradient::new(net, trainable, method)?.recording(record_per_step).run_online(net, data, online)
}

/// What a gradient pass checks of its data before anything runs (CPU and GPU): an
/// online schedule only with an online method, the batch and the input sizes.
pub(crate) fn check_data<T>(net: &Network<T>, data: &dyn Sequence, bptt: bool, online: Option<&Online>) -> Result<(), RuntimeError> {
    if let Some(on) = online {
        if bptt {
            return Err(RuntimeError::Input("updates within a sequence (`update_every`) need an online method (d-rtrl, es-d-rtrl), not BPTT".into()));
        }
        if on.every == 0 {
            return Err(RuntimeError::Input("`update_every` must be at least 1 step".into()));
        }
    }
    if data.batch() != net.batch {
        return Err(RuntimeError::Input(format!("the data has batch {}, the network was built for {}", data.batch(), net.batch)));
    }
    let in_sizes = data.shape().0;
    let want_sizes: Vec<usize> = net.inputs.iter().map(|(_, s)| *s).collect();
    if in_sizes != want_sizes {
        return Err(RuntimeError::Input(format!("the data has inputs of sizes {in_sizes:?}, the network needs {want_sizes:?}")));
    }
    Ok(())
}

/// The data's targets have one value per output of readout `r`.
pub(crate) fn check_target<T>(net: &Network<T>, r: usize, data: &dyn Sequence) -> Result<(), RuntimeError> {
    let n_target = data.shape().1;
    if n_target != net.pops[r].n {
        return Err(RuntimeError::Input(format!("target must have {} values per step (readout `{}`), got {n_target}", net.pops[r].n, net.pops[r].name)));
    }
    Ok(())
}

/// The bias correction c_t of ES-D-RTRL's smoothed trace at step `t`, indexed by the
/// update count as in braintrace (and switched off from step 1001 on).
pub(crate) fn bias_correction(decay: f64, t: usize) -> f64 {
    if t >= 1000 { 1.0 } else { (1.0 - decay.powi(t as i32 + 1)).max(1e-8) }
}

/// Adds the ES-D-RTRL groups' contracted gradients (per group and member) to `grads`.
fn add_group_grads<T: Float>(grads: &mut [Array2<T>], groups: &[EsGroup<T>], g: Vec<Vec<Array2<T>>>) {
    for (group, gs) in groups.iter().zip(g) {
        for (mb, gm) in group.members.iter().zip(gs) {
            grads[mb.ei] += &gm;
        }
    }
}
