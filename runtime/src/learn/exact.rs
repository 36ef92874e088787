//! Exact eligibility traces (D-RTRL, and the weights into a readout with dynamics in
//! every online method), reduced lazily over windows of steps.

use super::{GradShape, zero};
use crate::error::RuntimeError;
use crate::network::{Network, StepTrace};
use crate::scalar::Float;
use ndarray::Array2;
use snnc_compiler::backend::{RandomCtx, StepArgs, StepKernel};
use snnc_compiler::discretise::trace::exact_window_step;

/// One projection whose exact trace is kept in an [`ExactWindow`].
pub(super) struct ExactMember<T> {
    /// Index into the etrace projections (and their traces and gradients).
    pub ei: usize,
    /// Index of the projection in the network (its presynaptic values in `StepTrace::pre`).
    pub proj: usize,
    pub n_pre: usize,
    /// Its trainable pairs: the trace is (B, pairs, K), the gradient has one value per pair.
    pub shape: GradShape,
    /// Per step of the window, the non-zero presynaptic values (batch, input, value).
    x: Vec<Vec<(u32, u32, T)>>,
}

impl<T> ExactMember<T> {
    pub fn new(ei: usize, proj: usize, n_pre: usize, shape: GradShape) -> ExactMember<T> {
        ExactMember { ei, proj, n_pre, shape, x: Vec::new() }
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
    /// The backward recursion of one step, a generated step (see
    /// [`snnc_compiler::discretise::trace::exact_window_step`]), and where its D and f
    /// inputs are among the population's states.
    kernel: Box<dyn StepKernel<T>>,
    input_states: Vec<usize>,
    /// Per step (reused buffers): the kernel's D and f inputs, and l (K slices).
    dtape: Vec<Vec<Vec<T>>>,
    ltape: Vec<Vec<Vec<T>>>,
    /// Per step, after `reduce`: rho^s . f^s (B*N) and u^s = M^s f^s (K slices).
    q: Vec<Vec<T>>,
    u: Vec<Vec<Vec<T>>>,
    /// rho (K slices) and M (K x K slices, row-major); after `reduce`, sigma and P.
    rho_m: Vec<Vec<T>>,
    zeros: Vec<Vec<T>>,
}

impl<T: Float> ExactWindow<T> {
    pub fn new(net: &Network<T>, pop: usize, input: usize) -> Result<ExactWindow<T>, RuntimeError> {
        let p = &net.pops[pop];
        let (Some(step), Some(dl)) = (&p.step, p.deriv) else {
            return Err(RuntimeError::Build(format!("population `{}` was not built for learning (Options::learning)", p.name)));
        };
        let layout = exact_window_step(step, &dl, input);
        let kernel = net.build_kernel(&layout.step, &[])?;
        let mut input_states: Vec<usize> = layout.d.iter().map(|(a, c)| dl.d + a * dl.k + c).collect();
        input_states.extend(&layout.drive_states);
        let (m, k) = (net.batch * p.n, dl.k);
        Ok(ExactWindow {
            pop,
            input,
            batch: net.batch,
            n: p.n,
            k,
            members: Vec::new(),
            len: 0,
            kernel,
            input_states,
            dtape: Vec::new(),
            ltape: Vec::new(),
            q: Vec::new(),
            u: Vec::new(),
            rho_m: vec![vec![zero(); m]; k + k * k],
            zeros: vec![vec![zero(); m]; k],
        })
    }

    /// Tapes one step: the population's derivatives (its states), its learning signal
    /// `l` (B*N*K, interleaved) and every member's non-zero presynaptic values.
    pub fn push(&mut self, net: &Network<T>, l: &[T], trace: &StepTrace<T>) {
        let (m, k, j) = (self.batch * self.n, self.k, self.len);
        if self.dtape.len() == j {
            self.dtape.push(vec![vec![zero(); m]; self.input_states.len()]);
            self.ltape.push(vec![vec![zero(); m]; k]);
            self.q.push(vec![zero(); m]);
            self.u.push(vec![vec![zero(); m]; k]);
            for mb in &mut self.members {
                mb.x.push(Vec::new());
            }
        }
        let states = &net.pops[self.pop].states;
        for (dst, &s) in self.dtape[j].iter_mut().zip(&self.input_states) {
            dst.copy_from_slice(&states[s][..m]);
        }
        for (a, dst) in self.ltape[j].iter_mut().enumerate() {
            dst.iter_mut().zip(l.iter().skip(a).step_by(k)).for_each(|(d, v)| *d = *v);
        }
        for mb in &mut self.members {
            super::non_zeros(trace, mb.proj, mb.n_pre, &mut mb.x[j]);
        }
        self.len += 1;
    }

    /// The backward recursions over the window: q^s, u^s, then sigma and P in `rho_m`.
    fn reduce(&mut self) {
        let (k, len) = (self.k, self.len);
        let one = T::from_f64(1.0);
        for (a, r) in self.rho_m[..k].iter_mut().enumerate() {
            r.copy_from_slice(&self.ltape[len - 1][a]);
        }
        for (e, mm) in self.rho_m[k..].iter_mut().enumerate() {
            mm.fill(if e / k == e % k { one } else { zero() });
        }
        for j in (0..len).rev() {
            let lprev = if j > 0 { &self.ltape[j - 1] } else { &self.zeros };
            let mut inputs: Vec<&[T]> = self.dtape[j].iter().map(|v| v.as_slice()).collect();
            inputs.extend(lprev.iter().map(|v| v.as_slice()));
            let mut states: Vec<&mut [T]> = self.rho_m.iter_mut().map(|v| v.as_mut_slice()).collect();
            states.push(&mut self.q[j]);
            states.extend(self.u[j].iter_mut().map(|v| v.as_mut_slice()));
            self.kernel.step(StepArgs { states: &mut states, inputs: &inputs, params: &[], spikes: &mut [], t: 0.0, random: RandomCtx::default() });
        }
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
        let (sigma, p) = self.rho_m.split_at(k);
        for mb in &self.members {
            let tr = &mut eps[mb.ei];
            let gs = g[mb.ei].as_slice_mut().expect("standard layout");
            let pairs = mb.shape.pairs();
            // The dense pass over every trainable pair: g += sigma . tr0, tr = P tr0.
            let mut new = vec![zero(); k];
            for b in 0..self.batch {
                for i in 0..mb.n_pre {
                    let (range, cols) = mb.shape.row(i);
                    let trow = &mut tr[(b * pairs + range.start) * k..(b * pairs + range.end) * k];
                    let grow = &mut gs[range];
                    // Row j of the pairs reaches postsynaptic neuron `o_of(j)`.
                    let o_of = |j: usize| cols.map_or(j, |c| c[j] as usize);
                    if k == 1 && cols.is_none() {
                        let cols = b * n..(b + 1) * n;
                        let (sig, pp) = (&sigma[0][cols.clone()], &p[0][cols]);
                        for o in 0..n {
                            let t = trow[o];
                            grow[o] += sig[o] * t;
                            trow[o] = pp[o] * t;
                        }
                        continue;
                    }
                    for (j, gj) in grow.iter_mut().enumerate() {
                        let bo = b * n + o_of(j);
                        let t = &mut trow[j * k..(j + 1) * k];
                        *gj += (0..k).map(|a| sigma[a][bo] * t[a]).sum::<T>();
                        for a in 0..k {
                            new[a] = (0..k).map(|c| p[a * k + c][bo] * t[c]).sum();
                        }
                        t.copy_from_slice(&new);
                    }
                }
            }
            // The sparse part: each non-zero presynaptic value of each step.
            for j in 0..self.len {
                let (q, u) = (&self.q[j], &self.u[j]);
                for &(b, i, x) in &mb.x[j] {
                    let (b, i) = (b as usize, i as usize);
                    mb.shape.add_row(gs, i, x, &q[b * n..(b + 1) * n]);
                    let (range, cols) = mb.shape.row(i);
                    let trow = &mut tr[(b * pairs + range.start) * k..(b * pairs + range.end) * k];
                    for (a, ua) in u.iter().enumerate() {
                        let urow = &ua[b * n..(b + 1) * n];
                        match cols {
                            None => trow.iter_mut().skip(a).step_by(k).zip(urow).for_each(|(t, u)| *t += x * *u),
                            Some(cols) => trow.iter_mut().skip(a).step_by(k).zip(cols).for_each(|(t, &o)| *t += x * urow[o as usize]),
                        }
                    }
                }
            }
        }
        self.len = 0;
    }
}
