//! BPTT: reverse-mode accumulation through the whole taped sequence, including the
//! paths through recurrent and feed-forward spikes between populations.
//!
//! Per step and population the tape keeps what the compiler's adjoint step
//! ([`snnc_compiler::discretise::trace::adjoint_step`]) reads: the non-zero entries of D,
//! Df and dh/dtheta and ds/dh, each kept once when it is the same every step (D and Df of
//! a model whose step is linear in its state), and the learning signal; per trained
//! projection its presynaptic values, as the non-zero entries when they are spikes.

use super::{BnPlan, GradShape, Link, ParamTrain, back_project, zero};
use crate::adapter::dense_entries;
use crate::error::RuntimeError;
use crate::network::{Network, StepTrace};
use crate::scalar::Float;
use ndarray::Array2;
use snnc_compiler::backend::{RandomCtx, StepArgs, StepKernel};
use snnc_compiler::discretise::trace::{AdjointStep, adjoint_step, is_time_invariant};
use std::rc::Rc;

/// A trainable projection into (population, input), `n_pre` presynaptic.
#[derive(Clone)]
pub(crate) struct Target {
    pub index: usize,
    pub pop: usize,
    pub input: usize,
    pub n_pre: usize,
    /// The projection's delay in steps (its presynaptic values reach the learners late).
    pub delay: usize,
    /// Where its gradient lives (dense I x O, or the synapses of a sparse projection).
    pub shape: GradShape,
}

/// Presynaptic values of one projection at one step.
enum Pre<T> {
    /// The non-zero entries (batch, index, value).
    Sparse(Vec<(u32, u32, T)>),
    /// All of them (B x n_pre).
    Dense(Vec<T>),
}

/// One step of the tape.
struct StepTape<T> {
    /// Per population (empty for those without a step): the adjoint's derivative inputs.
    derivs: Vec<Vec<Rc<Vec<T>>>>,
    /// Per population: the learning signal, one slice per hidden state.
    ls: Vec<Vec<Vec<T>>>,
    /// Per trained projection (indexed like the targets).
    pre: Vec<Pre<T>>,
    /// Per batch norm (indexed like the plan's): zhat (B x O), 1 / sigma (O) and whether
    /// the batch's statistics were used.
    bn: Vec<(Vec<T>, Vec<T>, bool)>,
}

/// A population's compiled adjoint step and which of its inputs are kept once.
struct Adjoint<T> {
    layout: AdjointStep,
    kernel: Box<dyn StepKernel<T>>,
    invariant: Vec<bool>,
    /// The values of the time-invariant inputs, taped at the first step.
    kept: Vec<Option<Rc<Vec<T>>>>,
}

/// The BPTT tape of a gradient pass and the backward pass over it.
pub(super) struct Bptt<T> {
    adjoints: Vec<Option<Adjoint<T>>>,
    tape: Vec<StepTape<T>>,
    bytes: usize,
}

impl<T: Float> Bptt<T> {
    /// Compiles the adjoint step of every population in `hidden`.
    pub fn new(net: &Network<T>, hidden: &[usize]) -> Result<Bptt<T>, RuntimeError> {
        let mut adjoints: Vec<Option<Adjoint<T>>> = (0..net.pops.len()).map(|_| None).collect();
        for &p in hidden {
            let pop = &net.pops[p];
            let (Some(step), Some(dl)) = (&pop.step, pop.deriv) else {
                return Err(RuntimeError::Build(format!("population `{}` was not built for learning (Options::learning)", pop.name)));
            };
            let layout = adjoint_step(step, &dl);
            let kernel = net.build_kernel(&layout.step, &[])?;
            let invariant: Vec<bool> = layout.deriv_states.iter().map(|&s| is_time_invariant(step, s)).collect();
            let kept = vec![None; invariant.len()];
            adjoints[p] = Some(Adjoint { layout, kernel, invariant, kept });
        }
        Ok(Bptt { adjoints, tape: Vec::new(), bytes: 0 })
    }

    /// Tapes the step just taken: derivatives of every population (from its states),
    /// learning signals `ls` (B x N x K, interleaved) and the targets' presynaptic values.
    pub fn push(&mut self, net: &Network<T>, ls: &[Vec<T>], trace: &StepTrace<T>, targets: &[Target], bns: &[BnPlan]) {
        let size = std::mem::size_of::<T>();
        let mut derivs = Vec::with_capacity(net.pops.len());
        let mut lsv = Vec::with_capacity(net.pops.len());
        for (p, adj) in self.adjoints.iter_mut().enumerate() {
            let Some(adj) = adj else {
                derivs.push(Vec::new());
                lsv.push(Vec::new());
                continue;
            };
            let pop = &net.pops[p];
            let m = pop.n * net.batch;
            let mut row = Vec::with_capacity(adj.layout.deriv_states.len());
            for (i, &s) in adj.layout.deriv_states.iter().enumerate() {
                let fresh = || Rc::new(pop.states[s][..m].to_vec());
                let v = if adj.invariant[i] {
                    adj.kept[i].get_or_insert_with(|| {
                        self.bytes += m * size;
                        fresh()
                    })
                    .clone()
                } else {
                    self.bytes += m * size;
                    fresh()
                };
                row.push(v);
            }
            derivs.push(row);
            let k = adj.layout.k;
            lsv.push((0..k).map(|a| ls[p].iter().skip(a).step_by(k).copied().collect()).collect());
            self.bytes += m * k * size;
        }
        let pre = targets
            .iter()
            .map(|e| {
                let x = &trace.pre[e.index];
                match trace.nonzero.get(e.index).and_then(|n| n.as_deref()) {
                    Some(nz) if nz.len() * 4 < x.len() => {
                        self.bytes += nz.len() * (8 + size);
                        Pre::Sparse(nz.iter().map(|&(b, i)| (b, i, x[b as usize * e.n_pre + i as usize])).collect())
                    }
                    _ => {
                        self.bytes += x.len() * size;
                        Pre::Dense(x.clone())
                    }
                }
            })
            .collect();
        let bn = bns
            .iter()
            .map(|b| {
                let n = net.batch_norm(b.proj).expect("planned with a batch norm");
                self.bytes += (n.zhat.len() + n.inv_sigma.len()) * size;
                (n.zhat.clone(), n.inv_sigma.clone(), n.batch_stats)
            })
            .collect();
        self.tape.push(StepTape { derivs, ls: lsv, pre, bn });
    }

    /// Bytes held by the tape.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The backward pass: adds dL/dW to `grads` (indexed like `targets`), dL/dtheta
    /// to `param_grads` and dL/dgamma, dL/dbeta of each batch norm of `bns` to
    /// `bn_grads`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        net: &Network<T>,
        targets: &[Target],
        params: &[ParamTrain],
        links: &[Link],
        hidden: &[usize],
        grads: &mut [Array2<T>],
        param_grads: &mut [Array2<T>],
        bns: &[BnPlan],
        bn_grads: &mut [(Vec<T>, Vec<T>)],
    ) {
        let batch = net.batch;
        let np = net.pops.len();
        let one = T::from_f64(1.0);
        let m_of = |p: usize| batch * net.pops[p].n;
        let dims = |p: usize| self.adjoints[p].as_ref().map(|a| (a.layout.k, a.layout.n_in, a.layout.n_p)).unwrap_or((0, 0, 0));
        let slices = |p: usize, count: usize| -> Vec<Vec<T>> { vec![vec![zero(); m_of(p)]; count] };
        // lambda (K), then mu (n_in) and the param gradients (n_p): the adjoint's states.
        let mut st: Vec<Vec<Vec<T>>> = (0..np).map(|p| {
            let (k, n_in, n_p) = dims(p);
            slices(p, k + n_in + n_p)
        }).collect();
        // dL/ds_q carried to earlier steps (recurrent and delayed paths) or within step t
        // (feed-forward), and the same for states read directly (dL/dh_q, one slice per
        // state): `back[o]` holds what reaches step t - o while step t is processed.
        let depth = links.iter().map(|l| l.steps_back()).max().unwrap_or(0).max(1) + 1;
        let zero_ds: Vec<Vec<T>> = (0..np).map(|p| vec![zero(); m_of(p)]).collect();
        let zero_dh: Vec<Vec<Vec<T>>> = (0..np).map(|p| slices(p, dims(p).0)).collect();
        let mut back: Vec<(Vec<Vec<T>>, Vec<Vec<Vec<T>>>)> = (0..depth).map(|_| (zero_ds.clone(), zero_dh.clone())).collect();
        let mut d: Vec<T> = Vec::new();
        // Per batch norm, dL/dz of the step being processed (what its weights and its
        // link see in place of dL/dy at the target's input).
        let mut dz: Vec<Vec<T>> = bns.iter().map(|b| vec![zero(); m_of(b.pop)]).collect();
        let gammas: Vec<Vec<T>> = bns.iter().map(|b| net.batch_norm(b.proj).expect("planned").gamma.clone()).collect();
        let bn_of = |proj: usize| bns.iter().position(|b| b.proj == proj);
        // The network step of the tape's first entry (its dropout masks are redrawn).
        let first = net.step_index - self.tape.len() as u64;
        for (t, step) in self.tape.iter().enumerate().rev() {
            // Step t + 1's slot becomes the farthest one, emptied.
            back.rotate_left(1);
            let last = back.last_mut().expect("depth >= 2");
            last.0.iter_mut().for_each(|v| v.fill(zero()));
            last.1.iter_mut().flatten().for_each(|v| v.fill(zero()));
            for &p in hidden.iter().rev() {
                let adj = self.adjoints[p].as_ref().expect("hidden");
                let (k, n_in, _) = dims(p);
                let n = net.pops[p].n;
                {
                    let (ds_now, dh_now) = &back[0];
                    let mut inputs: Vec<&[T]> = step.derivs[p].iter().map(|v| v.as_slice()).collect();
                    inputs.extend(step.ls[p].iter().map(|v| v.as_slice()));
                    inputs.extend(dh_now[p].iter().map(|v| v.as_slice()));
                    inputs.push(&ds_now[p]);
                    let mut states: Vec<&mut [T]> = st[p].iter_mut().map(|v| v.as_mut_slice()).collect();
                    adj.kernel.step(StepArgs { states: &mut states, inputs: &inputs, params: &[], spikes: &mut [], t: 0.0, random: RandomCtx::default() });
                }
                let mu = &st[p][k..k + n_in];
                // Trainable params: dL/dtheta += lambda . dh^t/dtheta, summed over the batch.
                for (pi, q) in params.iter().enumerate().filter(|(_, q)| q.pop == p) {
                    let g = &st[p][k + n_in + q.col];
                    let pg = param_grads[pi].as_slice_mut().expect("standard layout");
                    for row in g.chunks_exact(n) {
                        pg.iter_mut().zip(row).for_each(|(a, b)| *a += *b);
                    }
                }
                for (bi, b) in bns.iter().enumerate().filter(|(_, b)| b.pop == p) {
                    let (zhat, inv_sigma, batch_stats) = &step.bn[bi];
                    let (dg, db) = &mut bn_grads[bi];
                    crate::batchnorm::backward(&mu[b.input], zhat, inv_sigma, &gammas[bi], *batch_stats, batch, &mut dz[bi], dg, db);
                }
                for (ei, e) in targets.iter().enumerate().filter(|(_, e)| e.pop == p) {
                    let c = match bn_of(e.index) {
                        Some(bi) => &dz[bi],
                        None => &mu[e.input],
                    };
                    if let GradShape::LowRank { .. } = e.shape {
                        let a = net.adapter(e.index).expect("planned with an adapter");
                        let gs = grads[ei].as_slice_mut().expect("standard layout");
                        match &step.pre[ei] {
                            Pre::Sparse(nz) => a.add_products(gs, nz.iter().map(|&(b, i, x)| (b as usize, i as usize, x)), c, batch, one),
                            Pre::Dense(x) => a.add_products(gs, dense_entries(x, e.n_pre), c, batch, one),
                        }
                        continue;
                    }
                    match &step.pre[ei] {
                        Pre::Sparse(nz) => {
                            let gs = grads[ei].as_slice_mut().expect("standard layout");
                            for &(b, i, x) in nz {
                                e.shape.add_row(gs, i as usize, x, &c[b as usize * n..(b as usize + 1) * n]);
                            }
                        }
                        Pre::Dense(x) => e.shape.add_outer(&mut grads[ei], x, c, batch, one),
                    }
                }
                for l in links.iter().filter(|l| l.to == p) {
                    d.clear();
                    d.resize(batch * net.pops[l.from].n, zero());
                    let c = match bn_of(l.proj) {
                        Some(bi) => &dz[bi],
                        None => &mu[l.input],
                    };
                    back_project(net, l.proj, first + t as u64, c, &mut d, batch);
                    let (ds, dh) = &mut back[l.steps_back()];
                    let target: &mut Vec<T> = match l.state {
                        None => &mut ds[l.from],
                        Some(j) => &mut dh[l.from][j],
                    };
                    target.iter_mut().zip(&d).for_each(|(a, b)| *a += *b);
                }
            }
            // The spike s^{t-1} was read from h^{t-1}: its surrogate derivative is the one
            // taped at step t-1, applied when that step is processed (ds_prev).
        }
    }
}
