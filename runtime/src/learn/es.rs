//! ES-D-RTRL (braintrace's `pp_prop`): the rank-one trace eps_x (x) eps_f of every
//! projection into a hidden population, and its gradient contraction, done lazily over
//! windows of steps so that the O(B I O) product runs once per window, not per step.
//!
//! Over a window t0..t1, with r^s = sum_{t>=s} decay^{t-s} q^t (q^t = l^t . eps_f^t / c_t):
//!   sum_t eps_x^t (x) q^t = decay eps_x^{t0-1} (x) r^{t0}  +  sum_s x^s (x) r^s,
//! and x^s (spikes) is sparse, so the second term is a few row additions per step.

use super::{PopDerivs, zero};
use crate::network::Float;
use ndarray::{Array2, ArrayView2, linalg::general_mat_mul};

/// What a window hands to the gradient contraction ([`contract`]): owned buffers, so
/// that a window can be contracted on another thread while the next one is taped.
pub(super) struct Tape<T> {
    /// Per step, q (B x N).
    q: Vec<Vec<T>>,
    len: usize,
    /// Per member and step, the non-zero presynaptic values (batch, input, value).
    x: Vec<Vec<Vec<(u32, u32, T)>>>,
    /// Per member, eps_x just before the window's first step (B x I).
    start: Vec<Vec<T>>,
    /// r, reused (B x N).
    r: Vec<T>,
}

impl<T: Float> Tape<T> {
    fn new(members: usize, batch: usize, n: usize, n_pre: &[usize]) -> Tape<T> {
        Tape {
            q: Vec::new(),
            len: 0,
            x: vec![Vec::new(); members],
            start: n_pre.iter().map(|&i| vec![zero(); batch * i]).collect(),
            r: vec![zero(); batch * n],
        }
    }
}

/// The shape of one group's contraction.
#[derive(Clone)]
pub(super) struct Shape {
    pub batch: usize,
    pub n: usize,
    /// Per member: presynaptic size.
    pub n_pre: Vec<usize>,
}

/// Adds a window's steps to the members' gradients `g` (I x N each) and empties it.
pub(super) fn contract<T: Float>(tape: &mut Tape<T>, shape: &Shape, decay: T, g: &mut [&mut Array2<T>]) {
    if tape.len == 0 {
        return;
    }
    let (batch, n) = (shape.batch, shape.n);
    let one = T::from_f64(1.0);
    tape.r.fill(zero());
    for s in (0..tape.len).rev() {
        let q = &tape.q[s];
        tape.r.iter_mut().zip(q).for_each(|(r, q)| *r = decay * *r + *q);
        for (m, gm) in g.iter_mut().enumerate() {
            let gs = gm.as_slice_mut().expect("standard layout");
            for &(b, i, x) in &tape.x[m][s] {
                let grow = &mut gs[i as usize * n..(i as usize + 1) * n];
                let rrow = &tape.r[b as usize * n..(b as usize + 1) * n];
                if x == one {
                    grow.iter_mut().zip(rrow).for_each(|(g, r)| *g += *r);
                } else {
                    grow.iter_mut().zip(rrow).for_each(|(g, r)| *g += x * *r);
                }
            }
        }
    }
    // decay * eps_x^{t0-1}^T r^{t0}
    let r = ArrayView2::from_shape((batch, n), &tape.r).expect("shape");
    for (m, gm) in g.iter_mut().enumerate() {
        let start = &tape.start[m];
        if start.iter().any(|v| *v != zero()) {
            let sv = ArrayView2::from_shape((batch, shape.n_pre[m]), start).expect("shape");
            general_mat_mul(decay, &sv.t(), &r, one, *gm);
        }
    }
    tape.len = 0;
}

/// One projection's input trace.
pub(super) struct EsMember<T> {
    /// Index into the etrace projections (and their gradients).
    pub ei: usize,
    /// Index of the projection in the network (its presynaptic values in `StepTrace::pre`).
    pub proj: usize,
    /// eps_x (B x I).
    pub eps_x: Vec<T>,
}

/// The projections into one (population, input): W_in and W_rec into `rec.I` have the
/// same Df column, hence the same output trace eps_f and the same q, kept once.
pub(super) struct EsGroup<T> {
    pub pop: usize,
    pub input: usize,
    k: usize,
    pub shape: Shape,
    /// eps_f (B x N x K).
    pub eps_f: Vec<T>,
    pub members: Vec<EsMember<T>>,
    /// The window being taped.
    pub tape: Tape<T>,
}

impl<T: Float> EsGroup<T> {
    pub fn new(pop: usize, input: usize, batch: usize, n: usize, k: usize) -> EsGroup<T> {
        let shape = Shape { batch, n, n_pre: Vec::new() };
        EsGroup { pop, input, k, eps_f: vec![zero(); batch * n * k], members: Vec::new(), tape: Tape::new(0, batch, n, &[]), shape }
    }

    pub fn add_member(&mut self, ei: usize, proj: usize, n_pre: usize) {
        self.members.push(EsMember { ei, proj, eps_x: vec![zero(); self.shape.batch * n_pre] });
        self.shape.n_pre.push(n_pre);
        self.tape = self.fresh_tape();
    }

    /// An empty tape for this group's windows.
    pub fn fresh_tape(&self) -> Tape<T> {
        Tape::new(self.members.len(), self.shape.batch, self.shape.n, &self.shape.n_pre)
    }

    /// Steps the traces with the population's derivatives `v` (`nin` kernel inputs) and
    /// learning signal `l` (B x N x K), and tapes q and the non-zero presynaptic values.
    /// `inv_c` is the bias correction 1 / c_t.
    pub fn step(&mut self, v: &PopDerivs<T>, nin: usize, l: &[T], pre: &[Vec<T>], decay: T, inv_c: T) {
        let (k, input) = (self.k, self.input);
        let m = self.shape.batch * self.shape.n;
        let keep = T::from_f64(1.0) - decay;
        let j = self.tape.len;
        if self.tape.q.len() == j {
            self.tape.q.push(vec![zero(); m]);
            self.tape.x.iter_mut().for_each(|x| x.push(Vec::new()));
        }
        let q = &mut self.tape.q[j];
        let f = &mut self.eps_f;
        if k == 1 {
            // LIF-like models: everything is per neuron.
            for mi in 0..m {
                let new = decay * v.d[mi] * f[mi] + keep * v.df[mi * nin + input];
                f[mi] = new;
                q[mi] = l[mi] * new * inv_c;
            }
        } else {
            let mut new = vec![zero(); k];
            for mi in 0..m {
                let dm = &v.d[mi * k * k..(mi + 1) * k * k];
                for a in 0..k {
                    let s: T = (0..k).map(|c| dm[a * k + c] * f[mi * k + c]).sum();
                    new[a] = decay * s + keep * v.df[(mi * k + a) * nin + input];
                }
                f[mi * k..(mi + 1) * k].copy_from_slice(&new);
                q[mi] = (0..k).map(|a| l[mi * k + a] * new[a]).sum::<T>() * inv_c;
            }
        }
        for (mb, (x, &n_pre)) in self.members.iter_mut().zip(self.tape.x.iter_mut().zip(&self.shape.n_pre)) {
            let p = &pre[mb.proj];
            mb.eps_x.iter_mut().zip(p).for_each(|(e, x)| *e = decay * *e + *x);
            super::non_zeros(p, n_pre, &mut x[j]);
        }
        self.tape.len += 1;
    }

    /// Steps taped in the current window.
    pub fn len(&self) -> usize {
        self.tape.len
    }

    /// The latest step's own contribution eps_x^T q for every member (per-step records),
    /// and a new window started after it.
    pub fn step_contributions(&mut self) -> Vec<(usize, Array2<T>)> {
        let (batch, n) = (self.shape.batch, self.shape.n);
        let q = ArrayView2::from_shape((batch, n), &self.tape.q[self.tape.len - 1]).expect("shape");
        let out = self
            .members
            .iter()
            .zip(&self.shape.n_pre)
            .map(|(mb, &n_pre)| (mb.ei, ArrayView2::from_shape((batch, n_pre), &mb.eps_x).expect("shape").t().dot(&q)))
            .collect();
        self.restart(None);
        out
    }

    /// Starts a new window (at the members' current eps_x), putting `fresh` in place of
    /// the current tape and returning that tape.
    pub fn restart(&mut self, fresh: Option<Tape<T>>) -> Option<Tape<T>> {
        let old = match fresh {
            Some(f) => Some(std::mem::replace(&mut self.tape, f)),
            None => {
                self.tape.len = 0;
                None
            }
        };
        for (mb, st) in self.members.iter().zip(&mut self.tape.start) {
            st.copy_from_slice(&mb.eps_x);
        }
        old
    }
}
