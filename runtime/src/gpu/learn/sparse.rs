//! Sparse projections in the device's gradient pass, as the CPU's
//! ([`crate::learn::GradShape::Sparse`]): a trained sparse projection's gradient lives
//! at its synapses only (1 x nnz, CSR order), and the learning signal goes back through
//! its stored synapses.
//!
//! - `g[e] += sum_b x[b, row(e)] c[b, col(e)]` (every gradient product: ES-D-RTRL's
//!   contraction window, BPTT's dL/dW += x^T mu) is [`prop::SPARSE_OUTER`], one thread
//!   per synapse over a CSR row index per synapse made once ([`Pairs::of`]), where a dense
//!   projection has a GEMM;
//! - the exact (D-RTRL) trace per synapse is [`prop::SPARSE_EXACT_TRACE`] (B x nnz x K);
//! - the learning signal `mu W^T` through a sparse projection (trained or only on the
//!   path) is [`prop::SPARSE_BACK`], one thread per (presynaptic neuron, batch element)
//!   over its CSR row, where a dense projection has a GEMM.
//!
//! None of them uses atomics: each thread owns what it writes, so the sums are
//! deterministic (and in the CPU's order for the gradient products and the signal).
//!
//! A projection's low-rank adapter (`adapter rank R`, [`crate::adapter`]) is GEMMs:
//! its gradient is stacked ((I + O) x R: dL/dU over dL/dV transposed) and formed as
//! `dL/dU += x^T (c V^T)`, `dL/dV^T += c^T (x U)`; the signal through it adds
//! `(mu V^T) U^T`. Nothing pre x post is formed.

use super::super::device::{Buf, Device, Elem, Gemm, Host, KArg};
use super::super::{DevWeights, Float, GpuNetwork, dev_err};
use super::{flat, outer, times_transpose};
use crate::error::RuntimeError;
use crate::learn::GradShape;
use snnc_compiler::backend::ptx::launch_config;
use snnc_compiler::backend::ptx::propagate::{self as prop, BLOCK};

/// Where a trained projection's gradient lives on the device.
#[derive(Clone, Copy, Debug)]
pub(super) enum Pairs {
    /// Every (pre, post) pair of dense weights: I x O, row-major.
    Dense,
    /// The synapses of a sparse projection (1 x nnz, CSR order): each one's CSR row
    /// (`row`, u32, made by [`Pairs::of`]) and column (the projection's own `col`).
    Sparse { row: Buf, col: Buf, nnz: usize },
    /// A projection's adapter: its U and V (the network's), the stacked gradient
    /// (`grad`, (I + O) x R) and its two parts (`gu`: I x R, `gv`: O x R, views), and
    /// scratch of `rows` x R for `c V^T` and `x U`.
    LowRank { proj: usize, rank: usize, grad: Buf, gu: Buf, gv: Buf, cv: Buf, xu: Buf, rows: usize },
}

impl Pairs {
    /// The pairs of projection `proj` of `g` trained as `shape`: for a sparse one, its
    /// row index per synapse is uploaded (once, when the gradient is made); for an
    /// adapter, its gradient and scratch for products over up to `rows` rows.
    pub fn of<T: Float, D: Device>(g: &mut GpuNetwork<T, D>, proj: usize, shape: &GradShape, rows: usize) -> Result<Pairs, RuntimeError> {
        let name = g.host.projs[proj].name.clone();
        if let GradShape::LowRank { n_pre, n_post, rank } = *shape {
            if g.projs[proj].adapter.is_none() {
                return Err(RuntimeError::Build(format!("`{name}`: its adapter is not on the device")));
            }
            let fe = Elem::float(T::PRECISION);
            let grad = g.dev.alloc(fe, (n_pre + n_post) * rank, &format!("learn.{name}.adapter.grad")).map_err(dev_err)?;
            let gu = g.dev.view(grad, 0, n_pre * rank, &format!("learn.{name}.adapter.dU")).map_err(dev_err)?;
            let gv = g.dev.view(grad, n_pre * rank, n_post * rank, &format!("learn.{name}.adapter.dV^T")).map_err(dev_err)?;
            let cv = g.dev.alloc(fe, rows * rank, &format!("learn.{name}.adapter.cV")).map_err(dev_err)?;
            let xu = g.dev.alloc(fe, rows * rank, &format!("learn.{name}.adapter.xU")).map_err(dev_err)?;
            return Ok(Pairs::LowRank { proj, rank, grad, gu, gv, cv, xu, rows });
        }
        let name = &name;
        match g.projs[proj].weights {
            DevWeights::Dense(_) => Ok(Pairs::Dense),
            DevWeights::Sparse { col, .. } => {
                let (row_ptr, ..) = g.host.sparse_weights(proj).ok_or_else(|| RuntimeError::Build(format!("`{name}`: sparse on the device but not on the host")))?;
                let mut rows = Vec::with_capacity(row_ptr[row_ptr.len() - 1]);
                for (i, w) in row_ptr.windows(2).enumerate() {
                    rows.extend(std::iter::repeat_n(i as u32, w[1] - w[0]));
                }
                let nnz = rows.len();
                let label = format!("learn.{name}.row");
                let row = g.dev.alloc(Elem::U32, nnz, &label).map_err(dev_err)?;
                g.dev.upload(row, Host::U32(&rows)).map_err(dev_err)?;
                Ok(Pairs::Sparse { row, col, nnz })
            }
            DevWeights::OneToOne(_) => Err(RuntimeError::Build(format!("`{name}`: only dense and sparse projections can be trained"))),
        }
    }
}

/// `grad += x^T c` at `pairs` (x: rows x n_pre, c: rows x n_out, row-major; `rows` the
/// batch, or steps x batch of a contraction window): a GEMM for dense weights,
/// [`prop::SPARSE_OUTER`] for a sparse projection's synapses.
#[allow(clippy::too_many_arguments)]
pub(super) fn add_outer<T: Float, D: Device>(
    g: &mut GpuNetwork<T, D>,
    pairs: Pairs,
    grad: Buf,
    x: Buf,
    c: Buf,
    rows: usize,
    n_pre: usize,
    n_out: usize,
) -> Result<(), RuntimeError> {
    match pairs {
        Pairs::Dense => g.dev.gemm(&outer(grad, x, c, rows, n_pre, n_out, 1.0)).map_err(dev_err),
        Pairs::Sparse { row, col, nnz } => {
            let args = [
                KArg::Buf(row),
                KArg::Buf(col),
                KArg::Buf(x),
                KArg::Buf(c),
                KArg::Buf(grad),
                KArg::U64(nnz as u64),
                KArg::U64(rows as u64),
                KArg::U64(n_pre as u64),
                KArg::U64(n_out as u64),
            ];
            g.launch(prop::SPARSE_OUTER, flat(nnz), BLOCK, &args)
        }
        Pairs::LowRank { proj, rank: r, gu, gv, cv, xu, rows: most, .. } => {
            if rows > most {
                return Err(RuntimeError::Build(format!("`{}`: {rows} rows of adapter products, scratch for {most}", g.host.projs[proj].name)));
            }
            let Some(a) = &g.projs[proj].adapter else {
                return Err(RuntimeError::Build(format!("`{}`: its adapter is not on the device", g.host.projs[proj].name)));
            };
            let (u, v) = (a.u, a.v);
            // cV = c V^T (rows x R); dU += x^T cV; xU = x U (rows x R); dV^T += c^T xU.
            let calls = [
                rm(cv, c, v, rows, r, n_out, false, true, 0.0),
                rm(gu, x, cv, n_pre, r, rows, true, false, 1.0),
                rm(xu, x, u, rows, r, n_pre, false, false, 0.0),
                rm(gv, c, xu, n_out, r, rows, true, false, 1.0),
            ];
            for call in &calls {
                g.dev.gemm(call).map_err(dev_err)?;
            }
            Ok(())
        }
    }
}

/// Row-major `C (m x n) = op(A) op(B) + beta C` with `k` the inner size, `op` a
/// transpose where `ta` / `tb` (A stored k x m, B stored n x k): cuBLAS's column-major
/// `C^T = op(B)^T op(A)^T` on the arrays as they are.
#[allow(clippy::too_many_arguments)]
fn rm(c: Buf, a: Buf, b: Buf, m: usize, n: usize, k: usize, ta: bool, tb: bool, beta: f64) -> Gemm {
    Gemm {
        m: n,
        n: m,
        k,
        alpha: 1.0,
        a: b,
        lda: if tb { k } else { n },
        ta: tb,
        b: a,
        ldb: if ta { m } else { k },
        tb: ta,
        beta,
        c,
        ldc: n,
    }
}

/// `dst (B x n_from) = mu (B x n_to) W^T`, or with `acc` `dst += mu W^T`, through the
/// weights of projection `proj` (from `n_from` neurons into `n_to`): a GEMM for dense
/// weights, [`prop::SPARSE_BACK`] over the stored synapses of a sparse one; then its
/// adapter's `(mu V^T) U^T` is added.
#[allow(clippy::too_many_arguments)]
pub(super) fn back<T: Float, D: Device>(
    g: &mut GpuNetwork<T, D>,
    proj: usize,
    dst: Buf,
    mu: Buf,
    batch: usize,
    n_from: usize,
    n_to: usize,
    acc: bool,
) -> Result<(), RuntimeError> {
    back_weights(g, proj, dst, mu, batch, n_from, n_to, acc)?;
    let Some(a) = &g.projs[proj].adapter else { return Ok(()) };
    // dst += (mu V^T) U^T, through the network's x U scratch (the forward pass of the
    // step is done when the signal goes back).
    let (u, v, r, t) = (a.u, a.v, a.rank, a.xu);
    g.dev.gemm(&rm(t, mu, v, batch, r, n_to, false, true, 0.0)).map_err(dev_err)?;
    g.dev.gemm(&rm(dst, t, u, batch, n_from, r, false, true, 1.0)).map_err(dev_err)
}

/// [`back`] through the weights only.
#[allow(clippy::too_many_arguments)]
fn back_weights<T: Float, D: Device>(
    g: &mut GpuNetwork<T, D>,
    proj: usize,
    dst: Buf,
    mu: Buf,
    batch: usize,
    n_from: usize,
    n_to: usize,
    acc: bool,
) -> Result<(), RuntimeError> {
    match g.projs[proj].weights {
        DevWeights::Dense(w) => {
            let beta = if acc { 1.0 } else { 0.0 };
            g.dev.gemm(&times_transpose(dst, mu, w, batch, n_from, n_to, beta)).map_err(dev_err)
        }
        DevWeights::Sparse { row_ptr, col, w } => {
            let args = [
                KArg::Buf(row_ptr),
                KArg::Buf(col),
                KArg::Buf(w),
                KArg::Buf(mu),
                KArg::Buf(dst),
                KArg::U64(n_from as u64),
                KArg::U64(n_to as u64),
                KArg::U64(u64::from(acc)),
            ];
            g.launch(prop::SPARSE_BACK, (launch_config(n_from as u64, BLOCK).0, batch as u32), BLOCK, &args)
        }
        DevWeights::OneToOne(_) => Err(RuntimeError::Build(format!("`{}`: the learning signal goes back through dense and sparse projections only", g.host.projs[proj].name))),
    }
}
