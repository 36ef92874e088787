//! The low-rank adapter of a projection (`adapter rank R`): its weights are
//! `W + U V`, with W as the projection gives it (dense, sparse, from a file; frozen
//! unless the projection is `trainable` too), U (pre x R) and V (R x post) trained.
//! Nothing pre x post is ever formed: the input is `x W + (x U) V`, the learning
//! signal goes back as `mu W^T + (mu V^T) U^T`, and the gradients are
//! `dL/dU = sum x^T (c V^T)` and `dL/dV = sum (x U)^T c` over the steps' presynaptic
//! values x and postsynaptic factors c (BPTT's adjoint, ES-D-RTRL's contracted signal).
//!
//! U starts as `normal(0, 1/sqrt(pre))` and V at zero (LoRA's convention): a network
//! with an adapter starts as the one without, and V's gradient is not zero.

use crate::propagate::{Active, Target};
use crate::scalar::Float;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, linalg::general_mat_mul};
use snnc_compiler::rng::Rng;
use snnc_compiler::sema::Init;

/// A projection's adapter: U (pre x R) and V (R x post).
#[derive(Clone, Debug)]
pub struct LowRank<T> {
    pub u: Array2<T>,
    pub v: Array2<T>,
}

impl<T: Float> LowRank<T> {
    /// U drawn from `rng`'s stream `stream`, V zero.
    pub fn new(n_pre: usize, n_post: usize, rank: usize, rng: &Rng, stream: u32) -> LowRank<T> {
        let init = Init::Normal { mean: 0.0, std: 1.0 / (n_pre.max(1) as f64).sqrt() };
        let u = Array2::from_shape_fn((n_pre, rank), |(i, k)| T::from_f64(crate::connectivity::sample(&init, rng, stream, i as u64, k as u32)));
        LowRank { u, v: Array2::from_elem((rank, n_post), T::default()) }
    }

    pub fn rank(&self) -> usize {
        self.u.ncols()
    }

    /// `out += (x U) V` into the columns `out.cols` of a step's target (a thread's share
    /// of it: each share forms its own x U), x: B x I; `active` lists the non-zero entries
    /// of x per batch element where they are known (spikes: rows of U added).
    ///
    /// # Safety
    /// As [`Target::row`], for every row of `out`.
    pub(crate) unsafe fn deliver(&self, x: &[T], active: Option<Active>, n_pre: usize, out: &Target<T>) {
        let r = self.rank();
        let us = self.u.as_slice().expect("standard layout");
        let mut z = vec![T::default(); r];
        for b in 0..out.batch {
            z.fill(T::default());
            let xb = &x[b * n_pre..(b + 1) * n_pre];
            let mut add = |idx: &[u32]| {
                for &i in idx {
                    let xv = xb[i as usize];
                    z.iter_mut().zip(&us[i as usize * r..(i as usize + 1) * r]).for_each(|(z, u)| *z += xv * *u);
                }
            };
            match active {
                Some(a) => add(&a.lists[b]),
                None => add(&(0..n_pre as u32).filter(|&i| xb[i as usize] != T::default()).collect::<Vec<_>>()),
            }
            // SAFETY: forwarded to the caller.
            let y = unsafe { out.row(b) };
            for (k, &zk) in z.iter().enumerate().filter(|(_, z)| **z != T::default()) {
                let vrow = &self.v.row(k);
                y.iter_mut().zip(out.cols.clone()).for_each(|(y, o)| *y += zk * vrow[o]);
            }
        }
    }

    /// `out += (mu V^T) U^T` (mu: B x O, out: B x I): the learning signal through the
    /// adapter.
    pub fn back_project(&self, mu: &[T], out: &mut [T], batch: usize) {
        let (n_pre, n_post) = (self.u.nrows(), self.v.ncols());
        let one = T::from_f64(1.0);
        let muv = ArrayView2::from_shape((batch, n_post), mu).expect("shape");
        let mut c = Array2::from_elem((batch, self.rank()), T::default());
        general_mat_mul(one, &muv, &self.v.t(), T::default(), &mut c);
        let mut ov = ArrayViewMut2::from_shape((batch, n_pre), out).expect("shape");
        general_mat_mul(one, &c, &self.u.t(), one, &mut ov);
    }

    /// Adds `scale * (x^T (c V^T), ((x U)^T c)^T)` to the stacked gradient `g`
    /// ((I + O) x R: dL/dU on top, dL/dV transposed below), with x given by its non-zero
    /// `entries` (batch, index, value) and c (B x O).
    pub fn add_products(&self, g: &mut [T], entries: impl IntoIterator<Item = (usize, usize, T)>, c: &[T], batch: usize, scale: T) {
        let (n_pre, r, n_post) = (self.u.nrows(), self.rank(), self.v.ncols());
        let zero = T::default();
        let cview = ArrayView2::from_shape((batch, n_post), c).expect("shape");
        let mut cv = Array2::from_elem((batch, r), zero);
        general_mat_mul(T::from_f64(1.0), &cview, &self.v.t(), zero, &mut cv);
        let cvs = cv.as_slice().expect("standard layout");
        let us = self.u.as_slice().expect("standard layout");
        let mut z = vec![zero; batch * r];
        let (gu, gv) = g.split_at_mut(n_pre * r);
        for (b, i, x) in entries {
            let sx = scale * x;
            gu[i * r..(i + 1) * r].iter_mut().zip(&cvs[b * r..(b + 1) * r]).for_each(|(g, c)| *g += sx * *c);
            z[b * r..(b + 1) * r].iter_mut().zip(&us[i * r..(i + 1) * r]).for_each(|(z, u)| *z += sx * *u);
        }
        // g_V^T (O x R) += c^T z.
        let zv = ArrayView2::from_shape((batch, r), &z).expect("shape");
        let mut gvv = ArrayViewMut2::from_shape((n_post, r), gv).expect("shape");
        general_mat_mul(T::from_f64(1.0), &cview.t(), &zv, T::from_f64(1.0), &mut gvv);
    }

    /// The stacked gradient ((I + O) x R) split into dL/dU (I x R) and dL/dV (R x O).
    pub fn split(stacked: &Array2<f64>, n_pre: usize) -> (Array2<f64>, Array2<f64>) {
        let u = stacked.slice(ndarray::s![..n_pre, ..]).to_owned();
        let v = stacked.slice(ndarray::s![n_pre.., ..]).t().as_standard_layout().into_owned();
        (u, v)
    }
}

/// The non-zero entries of a dense B x I block as (batch, index, value).
pub fn dense_entries<T: Float>(x: &[T], n_pre: usize) -> impl Iterator<Item = (usize, usize, T)> + '_ {
    x.iter().enumerate().filter(|(_, v)| **v != T::default()).map(move |(k, v)| (k / n_pre, k % n_pre, *v))
}
