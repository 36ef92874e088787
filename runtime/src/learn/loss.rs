//! The task side of learning: sequences produced step by step, per-step losses and
//! their gradient at the readout. Data and losses are in f64 whatever the network's
//! float type (they are small: batch x inputs and batch x readouts per step).

use ndarray::{Array2, Array3, Axis};

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
    /// A copy of the current batch that can write any rows of any step, from any thread
    /// (generators whose draws depend only on step and batch element): lets a batch split
    /// across threads make its own rows. `None`: the steps come from `fill`, in order.
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        None
    }
    /// The index of this sequence's first batch element in a larger batch it is a part
    /// of (a batch split across threads or MPI ranks): the network's own random draws
    /// (noise) of element b are then those of element `batch_offset() + b` of the whole.
    fn batch_offset(&self) -> usize {
        0
    }
    /// Where every step is a draw the GPU can make itself, bit for bit what `fill` and
    /// `mask` write: the GPU backend then draws each window of the sequence on the
    /// device instead of filling it on the host and uploading it. `None` (the default):
    /// filled on the host.
    fn device_draws(&self) -> Option<DeviceDraws> {
        None
    }
}

/// A sequence the GPU draws itself ([`Sequence::device_draws`]).
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceDraws {
    /// `RandomSpikes` of this seed: Bernoulli(`p`) spikes and uniform targets, mask 1
    /// (the kernel `snnc_random_spikes`).
    RandomSpikes { seed: u64, p: f64 },
    /// A delayed match-to-sample batch (`snnc_dms`): input i of trial b at step t spikes
    /// when `u01(Philox(seed; [c lo, c hi, 2, 0])[0]) <= rate * dt`, with
    /// `c = base ^ (t << 20) ^ (b * inputs + i)`, the rate `rates[(b * 2 + 0) * inputs + i]`
    /// while `bounds[0] <= t dt < bounds[1]` (the sample), `rates[(b * 2 + 1) * inputs + i]`
    /// from `bounds[2]` on (the test), `background` otherwise; the target is one-hot of
    /// `labels[b]` (2 classes) and the mask 1 while `bounds[2] <= t dt < bounds[3]`.
    /// `batch` identifies the batch (its tables are uploaded once per batch).
    Dms { seed: u64, base: u64, batch: u64, inputs: usize, dt: f64, bounds: [f64; 4], background: f64, rates: Vec<f64>, labels: Vec<u32> },
}

/// Rows of a batch of sequences, written independently of each other (see
/// [`Sequence::rows`]).
pub trait RowFill: Send + Sync {
    /// Writes step `t` of batch elements `b0..b0 + nb`: `x[i]` gets `nb * size_i` values,
    /// `target` `nb * readouts`, `mask` `nb`, as [`Sequence::fill`] and
    /// [`Sequence::mask`] would for those elements.
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]);
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
fn masked_step_loss(kind: Loss, y: &[f64], target: &[f64], mask: &[f64], evidence: &mut Array2<f64>, mut err: Option<&mut [f64]>) -> f64 {
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

/// The per-step data of a pass over a [`Sequence`] (CPU and GPU, gradients and
/// evaluation): the inputs as the sequence writes them (f64) and in the network's float
/// type, the targets and mask of the step, and the evidence summed so far.
pub(crate) struct StepData<T> {
    ext64: Vec<Vec<f64>>,
    ext: Vec<Vec<T>>,
    tgt: Vec<f64>,
    mask: Vec<f64>,
    kind: Loss,
    pub evidence: Array2<f64>,
}

impl<T: crate::scalar::Float> StepData<T> {
    pub fn new(data: &dyn Sequence) -> StepData<T> {
        let ((in_sizes, n_out), batch) = (data.shape(), data.batch());
        StepData {
            ext64: in_sizes.iter().map(|s| vec![0.0; s * batch]).collect(),
            ext: in_sizes.iter().map(|s| vec![T::from_f64(0.0); s * batch]).collect(),
            tgt: vec![0.0; n_out * batch],
            mask: vec![1.0; batch],
            kind: data.loss(),
            evidence: Array2::zeros((batch, n_out)),
        }
    }

    /// Step `t`'s inputs, targets and mask from `data`; the inputs, for the network step.
    pub fn load(&mut self, data: &mut dyn Sequence, t: usize) -> Vec<&[T]> {
        data.fill(t, &mut self.ext64, &mut self.tgt);
        data.mask(t, &mut self.mask);
        for (d, s) in self.ext.iter_mut().zip(&self.ext64) {
            d.iter_mut().zip(s).for_each(|(d, s)| *d = T::from_f64(*s));
        }
        self.ext.iter().map(|v| v.as_slice()).collect()
    }

    /// The step's masked loss of the readout output `y` ([`masked_step_loss`]), adding to
    /// the evidence; with `err`, dL^t/dy.
    pub fn loss(&mut self, y: &[f64], err: Option<&mut [f64]>) -> f64 {
        masked_step_loss(self.kind, y, &self.tgt, &self.mask, &mut self.evidence, err)
    }
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


/// For tests of every [`Sequence`] with [`Sequence::rows`]: the rows written in two
/// pieces are what `fill` and `mask` write for the whole batch, at every step.
#[cfg(test)]
pub(crate) fn assert_rows_match_fill(seq: &mut dyn Sequence) {
    let rows = seq.rows().expect("the sequence writes rows");
    let (sizes, n_target) = seq.shape();
    let batch = seq.batch();
    let cut = batch / 2;
    for t in 0..seq.steps() {
        let mut x: Vec<Vec<f64>> = sizes.iter().map(|s| vec![0.0; s * batch]).collect();
        let mut target = vec![0.0; n_target * batch];
        let mut mask = vec![0.0; batch];
        seq.fill(t, &mut x, &mut target);
        seq.mask(t, &mut mask);
        for (b0, nb) in [(0, cut), (cut, batch - cut)] {
            let mut xp: Vec<Vec<f64>> = sizes.iter().map(|s| vec![f64::NAN; s * nb]).collect();
            let mut tp = vec![f64::NAN; n_target * nb];
            let mut mp = vec![f64::NAN; nb];
            rows.fill_rows(t, b0, nb, &mut xp, &mut tp, &mut mp);
            for (whole, part) in x.iter().zip(&xp) {
                let s = part.len() / nb.max(1);
                assert_eq!(&whole[b0 * s..(b0 + nb) * s], part.as_slice(), "inputs at step {t}, rows {b0}..");
            }
            assert_eq!(&target[b0 * n_target..(b0 + nb) * n_target], tp.as_slice(), "target at step {t}");
            assert_eq!(&mask[b0..b0 + nb], mp.as_slice(), "mask at step {t}");
        }
    }
}
