//! Exact eligibility traces (D-RTRL, and the weights into a readout with dynamics in
//! every online method), reduced lazily over windows of steps.

use super::{PopDerivs, zero};
use crate::network::{Float, StepTrace};
use ndarray::Array2;

/// One projection whose exact trace is kept in an [`ExactWindow`].
pub(super) struct ExactMember<T> {
    /// Index into the etrace projections (and their traces and gradients).
    pub ei: usize,
    /// Index of the projection in the network (its presynaptic values in `StepTrace::pre`).
    pub proj: usize,
    pub n_pre: usize,
    /// Per step of the window, the non-zero presynaptic values (batch, input, value).
    x: Vec<Vec<(u32, u32, T)>>,
}

impl<T> ExactMember<T> {
    pub fn new(ei: usize, proj: usize, n_pre: usize) -> ExactMember<T> {
        ExactMember { ei, proj, n_pre, x: Vec::new() }
    }
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
pub(super) struct ExactWindow<T> {
    pub pop: usize,
    pub input: usize,
    batch: usize,
    n: usize,
    k: usize,
    pub members: Vec<ExactMember<T>>,
    /// Steps taped so far.
    pub len: usize,
    /// Per step: D (B*N, K, K), the Df column f (B*N, K), l (B*N, K); reused buffers.
    d: Vec<Vec<T>>,
    f: Vec<Vec<T>>,
    l: Vec<Vec<T>>,
    /// Per step, after `reduce`: rho^s . f^s (B*N) and u^s = M^s f^s (B*N, K).
    q: Vec<Vec<T>>,
    u: Vec<Vec<T>>,
    /// After `reduce`: sigma (B*N, K) and P(t0->t1) (B*N, K, K).
    sigma: Vec<T>,
    p: Vec<T>,
}

impl<T: Float> ExactWindow<T> {
    pub fn new(pop: usize, input: usize, batch: usize, n: usize, k: usize) -> ExactWindow<T> {
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
            sigma: vec![zero(); m * k],
            p: vec![zero(); m * k * k],
        }
    }

    /// Tapes one step: the population's derivatives, its learning signal `l` (B*N*K)
    /// and every member's non-zero presynaptic values.
    pub fn push(&mut self, v: &PopDerivs<T>, nin: usize, l: &[T], trace: &StepTrace<T>) {
        let (m, k, j) = (self.batch * self.n, self.k, self.len);
        if self.d.len() == j {
            self.d.push(vec![zero(); m * k * k]);
            self.f.push(vec![zero(); m * k]);
            self.l.push(vec![zero(); m * k]);
            self.q.push(vec![zero(); m]);
            self.u.push(vec![zero(); m * k]);
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
            super::non_zeros(trace, mb.proj, mb.n_pre, &mut mb.x[j]);
        }
        self.len += 1;
    }

    /// The backward recursions over the window: q^s, u^s, sigma and P.
    fn reduce(&mut self) {
        let (m, k, len) = (self.batch * self.n, self.k, self.len);
        let one = T::from_f64(1.0);
        let mut rho = self.l[len - 1].clone();
        let mut mm = vec![zero(); m * k * k];
        for mi in 0..m {
            for a in 0..k {
                mm[(mi * k + a) * k + a] = one;
            }
        }
        let mut row = vec![zero(); k];
        let mut mat = vec![zero(); k * k];
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
                rho.iter_mut().zip(&self.l[j - 1]).for_each(|(r, l)| *r += *l);
            }
        }
        self.sigma = rho;
        self.p = mm;
    }

    /// Adds the window's steps to the members' gradients `g` (indexed like the
    /// etrace projections), brings their traces `eps` to the window's last step and
    /// starts a new window.
    pub fn flush(&mut self, eps: &mut [Vec<T>], g: &mut [Array2<T>]) {
        if self.len == 0 {
            return;
        }
        self.reduce();
        let (n, k) = (self.n, self.k);
        for mb in &self.members {
            let tr = &mut eps[mb.ei];
            let gs = g[mb.ei].as_slice_mut().expect("standard layout");
            // The dense pass: g += sigma . tr0, tr = P tr0.
            let mut new = vec![zero(); k];
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
                        for o in 0..n {
                            let t = &mut trow[o * k..(o + 1) * k];
                            grow[o] += (0..k).map(|a| sig[o * k + a] * t[a]).sum::<T>();
                            let pm = &p[o * k * k..(o + 1) * k * k];
                            for a in 0..k {
                                new[a] = (0..k).map(|c| pm[a * k + c] * t[c]).sum();
                            }
                            t.copy_from_slice(&new);
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
                    grow.iter_mut().zip(&q[b * n..(b + 1) * n]).for_each(|(g, q)| *g += x * *q);
                    let trow = &mut tr[(b * mb.n_pre + i) * n * k..(b * mb.n_pre + i + 1) * n * k];
                    trow.iter_mut().zip(&u[b * n * k..(b + 1) * n * k]).for_each(|(t, u)| *t += x * *u);
                }
            }
        }
        self.len = 0;
    }
}
