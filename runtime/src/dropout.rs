//! A projection's `dropout P` (docs/language.md §9.5): while training, each presynaptic
//! value it reads is dropped with probability P per step and the others scaled by
//! 1 / (1 - P), as sparch applies `nn.Dropout` to a layer's output. The mask of (training
//! pass, step, batch element, presynaptic neuron) is a Philox draw of the network's seed
//! (`dropout_key`), so the forward step and every learning rule's backward path (BPTT's,
//! long after the step) recompute the same mask without storing it. Evaluation and
//! `snnc run` never drop anything ([`crate::network::Network::dropout_pass`] unset).

use crate::scalar::Float;
use snnc_compiler::rng::Rng;

/// The dropout of one projection and its masked copy of the source for this step.
pub(crate) struct Dropout<T> {
    pub(crate) p: f64,
    /// Its stream (`NET.PROJ.dropout`).
    stream: u32,
    /// The source's values times the mask, `batch * n_pre`, and their non-zero entries per
    /// batch element (the projection delivers those, event-driven).
    pub(crate) values: Vec<T>,
    pub(crate) active: Vec<Vec<u32>>,
}

/// The mask's key for one training pass: the network's seed mixed with the pass.
fn dropout_key(seed: u64, pass: u64) -> Rng {
    Rng::new(seed ^ pass.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Where a mask is drawn: the seed, the training pass, the network step and the first
/// batch element's index in the whole batch.
#[derive(Clone, Copy)]
pub(crate) struct MaskAt {
    pub seed: u64,
    pub pass: u64,
    pub step: u64,
    pub batch_offset: usize,
}

impl<T: Float> Dropout<T> {
    pub(crate) fn new(p: f64, stream: u32) -> Dropout<T> {
        Dropout { p, stream, values: Vec::new(), active: Vec::new() }
    }

    /// The factor of value `i` of batch element `b` (of this network): 0 (dropped) or
    /// 1 / (1 - P) (kept), the same for the forward step and the backward paths.
    fn factor(&self, rng: &Rng, at: MaskAt, n_pre: usize, b: usize, i: usize) -> f64 {
        factor(self.p, self.stream, rng, at, n_pre, b, i)
    }

    /// Masks `src` (`batch * n_pre` values) for the step `at` into [`Dropout::values`]
    /// and their non-zero entries.
    pub(crate) fn apply(&mut self, src: &[T], n_pre: usize, batch: usize, at: MaskAt) {
        let rng = dropout_key(at.seed, at.pass);
        self.values.clear();
        let (p, stream) = (self.p, self.stream);
        self.values.extend(src.iter().enumerate().map(|(m, &x)| if x.to_f64() == 0.0 { x } else { x * T::from_f64(factor(p, stream, &rng, at, n_pre, m / n_pre, m % n_pre)) }));
        self.active.resize_with(batch, Vec::new);
        for (b, act) in self.active.iter_mut().enumerate() {
            act.clear();
            act.extend((0..n_pre).filter(|&i| self.values[b * n_pre + i].to_f64() != 0.0).map(|i| i as u32));
        }
    }

    /// Multiplies `d` (dL/dx of the projection's presynaptic values, `batch * n_pre`) by
    /// the mask of step `at`: dL/ds = dL/dx * mask / (1 - P).
    pub(crate) fn scale_back(&self, d: &mut [T], n_pre: usize, at: MaskAt) {
        let rng = dropout_key(at.seed, at.pass);
        for (m, v) in d.iter_mut().enumerate() {
            *v *= T::from_f64(self.factor(&rng, at, n_pre, m / n_pre, m % n_pre));
        }
    }
}

/// 0 or 1 / (1 - p): value `i` of batch element `b` at `at` on stream `stream`.
fn factor(p: f64, stream: u32, rng: &Rng, at: MaskAt, n_pre: usize, b: usize, i: usize) -> f64 {
    let u = rng.uniform(stream, ((at.batch_offset + b) * n_pre + i) as u64, at.step as u32);
    if u > p { 1.0 / (1.0 - p) } else { 0.0 }
}
