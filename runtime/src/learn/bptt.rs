//! BPTT: reverse-mode accumulation through the whole taped sequence, including the
//! paths through recurrent and feed-forward spikes between populations.

use super::{Link, ParamTrain, PopDerivs, add_signal, zero};
use crate::network::{Float, Network};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, linalg::general_mat_mul};

/// One step of the tape: per population its derivatives and learning signal (empty for
/// populations without a step), and every projection's presynaptic activity.
pub(super) struct StepTape<T> {
    pub pd: Vec<PopDerivs<T>>,
    pub ls: Vec<Vec<T>>,
    pub pre: Vec<Vec<T>>,
}

impl<T> StepTape<T> {
    pub fn bytes(&self) -> usize {
        let n: usize = self.pd.iter().map(|d| d.d.len() + d.df.len() + d.ds.len() + d.dp.len()).sum::<usize>()
            + self.ls.iter().map(Vec::len).sum::<usize>()
            + self.pre.iter().map(Vec::len).sum::<usize>();
        n * std::mem::size_of::<T>()
    }
}

/// A trainable projection into (population, input), `n_pre` presynaptic.
#[derive(Clone)]
pub(super) struct Target {
    pub index: usize,
    pub pop: usize,
    pub input: usize,
    pub n_pre: usize,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Float>(
    net: &Network<T>,
    tape: &[StepTape<T>],
    etrace: &[Target],
    params: &[ParamTrain],
    links: &[Link],
    hidden: &[usize],
    grads: &mut [Array2<T>],
    param_grads: &mut [Array2<T>],
    batch: usize,
    k_of: &dyn Fn(usize) -> usize,
    nin_of: &dyn Fn(usize) -> usize,
) {
    let np = net.pops.len();
    let one = T::from_f64(1.0);
    let sized = |per: &dyn Fn(usize) -> usize| -> Vec<Vec<T>> { (0..np).map(|p| vec![zero(); batch * net.pops[p].n * per(p)]).collect() };
    // lambda_p = dL/dh_p^t (all future losses), per population.
    let mut lambda = sized(k_of);
    // dL/ds_q carried to step t-1 (recurrent paths) or within step t (feed-forward),
    // and the same for states read directly (dL/dh_q).
    let mut ds_prev = sized(&|_| 1);
    let mut ds_now = sized(&|_| 1);
    let mut dh_prev = sized(k_of);
    let mut dh_now = sized(k_of);
    let mut mu: Vec<Vec<T>> = (0..np).map(|p| vec![zero(); batch * net.pops[p].n * nin_of(p)]).collect();
    let mut col: Vec<T> = Vec::new();
    let mut d: Vec<T> = Vec::new();
    let mut back: Vec<T> = Vec::new();
    for step in tape.iter().rev() {
        std::mem::swap(&mut ds_now, &mut ds_prev);
        std::mem::swap(&mut dh_now, &mut dh_prev);
        ds_prev.iter_mut().chain(dh_prev.iter_mut()).for_each(|v| v.fill(zero()));
        for &p in hidden.iter().rev() {
            let v = &step.pd[p];
            let (n, k, nin) = (net.pops[p].n, k_of(p), nin_of(p));
            let lam = &mut lambda[p];
            let ls = &step.ls[p];
            for m in 0..batch * n {
                for a in 0..k {
                    lam[m * k + a] += ls[m * k + a] + ds_now[p][m] * v.ds[m * k + a] + dh_now[p][m * k + a];
                }
            }
            // mu = dL/dy^t for every kernel input of p.
            let mup = &mut mu[p];
            for m in 0..batch * n {
                for j in 0..nin {
                    mup[m * nin + j] = (0..k).map(|a| lam[m * k + a] * v.df[(m * k + a) * nin + j]).sum();
                }
            }
            // Trainable params: dL/dtheta += lambda . dh^t/dtheta.
            for (pi, q) in params.iter().enumerate().filter(|(_, q)| q.pop == p) {
                let n_p = v.dp.len() / (batch * n * k).max(1);
                for m in 0..batch * n {
                    param_grads[pi][[0, m % n]] += (0..k).map(|a| lam[m * k + a] * v.dp[(m * k + a) * n_p + q.col]).sum::<T>();
                }
            }
            let mu_col = |input: usize, out: &mut Vec<T>| {
                out.clear();
                out.extend((0..batch * n).map(|m| mup[m * nin + input]));
            };
            for (ei, e) in etrace.iter().enumerate().filter(|(_, e)| e.pop == p) {
                mu_col(e.input, &mut col);
                let x = ArrayView2::from_shape((batch, e.n_pre), &step.pre[e.index]).expect("shape");
                let c = ArrayView2::from_shape((batch, n), &col).expect("shape");
                super::add_outer(&mut grads[ei], x, c, None);
            }
            for l in links.iter().filter(|l| l.to == p) {
                mu_col(l.input, &mut col);
                let w = net.dense_weights(l.proj).expect("dense");
                let nq = net.pops[l.from].n;
                d.clear();
                d.resize(batch * nq, zero());
                let c = ArrayView2::from_shape((batch, n), &col).expect("shape");
                let mut dv = ArrayViewMut2::from_shape((batch, nq), &mut d).expect("shape");
                general_mat_mul(one, &c, &w.t(), zero(), &mut dv);
                let (ds, dh) = if l.now { (&mut ds_now[l.from], &mut dh_now[l.from]) } else { (&mut ds_prev[l.from], &mut dh_prev[l.from]) };
                add_signal(ds, dh, k_of(l.from), l.state, &d);
            }
            // lambda at h^{t-1} = D^T lambda.
            back.clear();
            back.extend((0..batch * n * k).map(|mc| {
                let (m, c) = (mc / k, mc % k);
                (0..k).map(|a| lam[m * k + a] * v.d[(m * k + a) * k + c]).sum::<T>()
            }));
            lam.copy_from_slice(&back);
        }
        // The spike s^{t-1} was read from h^{t-1}: its surrogate derivative is the one
        // taped at step t-1, applied when that step is processed (ds_prev).
    }
}
