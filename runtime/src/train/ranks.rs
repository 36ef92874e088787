//! Data-parallel training over MPI ranks (`mpirun -np K snnc train ...`, cargo feature
//! `mpi`): each rank computes the gradient of its share of the batch (on the CPU split
//! further over its cores as without MPI; on the GPU on its own device), the shares'
//! gradients, losses and evidence are summed with one all-reduce per gradient (and per
//! update within a sequence) on the host, and every rank then takes the same optimiser
//! step on the host: the weights and the optimiser's state stay identical on every rank,
//! and equal to a one-process run up to the order of the floating-point sums over the
//! batch. [`RankTrainer`] wraps any [`Trainer`] (the CPU's or a device's) and sums
//! through any [`Exchange`] (MPI's ranks, or threads in a test).
//!
//! Failure: the ranks first check that they were launched alike (one fingerprint of the
//! batch, the trainable names and shapes, gathered from every rank); a rank whose own
//! gradient fails prints its error and aborts the whole launch (`MPI_Abort`), so no rank
//! waits forever in a collective its peer never reaches (`crate::ranks`, shared with the
//! partitioned simulation).

use crate::learn::{RowFill, Sequence, split_sizes};
use crate::connectivity::Fingerprint;
use crate::engine::Trainer;
use crate::error::RuntimeError;
use crate::learn::{Gradients, Loss, Online};
use crate::network::Network;
use crate::partition::Exchange;
use crate::scalar::Float;
use ndarray::Array2;

#[cfg(feature = "mpi")]
pub use crate::ranks::{Ranks, launched};

/// The share of a batch of `batch` elements that rank `rank` of `size` trains: (first
/// element, count), contiguous, in rank order. A batch smaller than the launch leaves
/// some rank nothing, and is refused.
pub fn share_of(batch: usize, rank: usize, size: usize) -> Result<(usize, usize), RuntimeError> {
    if batch < size {
        return Err(RuntimeError::Input(format!("a batch of {batch} cannot be shared by {size} MPI ranks: use a batch of at least {size}")));
    }
    let sizes = split_sizes(batch, size);
    Ok((sizes[..rank].iter().sum(), sizes[rank]))
}

/// A [`Trainer`] that runs this rank's share of each batch on `inner` and sums the
/// shares' results over the ranks. `inner` is started for the share (a device trainer
/// must have been made for that batch).
pub struct RankTrainer<'r, I> {
    inner: I,
    ranks: &'r dyn Exchange,
    /// The batch of the launch, and this rank's share of it.
    batch: usize,
    share: (usize, usize),
    checked: bool,
    /// The latest batch's spikes per population, summed over the ranks.
    spikes: Vec<u64>,
}

impl<'r, I> RankTrainer<'r, I> {
    pub fn new(inner: I, ranks: &'r dyn Exchange) -> RankTrainer<'r, I> {
        RankTrainer { inner, ranks, batch: 0, share: (0, 0), checked: false, spikes: Vec::new() }
    }

    /// The trainer of this rank's share.
    pub fn inner(&self) -> &I {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut I {
        &mut self.inner
    }
}

impl<T: Float, I: Trainer<T>> Trainer<T> for RankTrainer<'_, I> {
    fn start(&mut self, batch: usize, whole: bool, weights: &[(String, Array2<f64>)]) -> Result<(), RuntimeError> {
        let share = share_of(batch, self.ranks.rank(), self.ranks.size())?;
        if !self.checked {
            // Launched alike: the same batch, trainable names and shapes on every rank
            // (a mismatch would make the sums below mix unrelated arrays, or hang).
            let mut h = Fingerprint::default();
            h.add(batch as u64);
            for (n, w) in weights {
                n.bytes().for_each(|b| h.add(u64::from(b)));
                h.add(w.nrows() as u64);
                h.add(w.ncols() as u64);
            }
            self.ranks.check_alike(h.0, "another batch or other trainable tensors")?;
            self.checked = true;
        }
        self.batch = batch;
        self.share = share;
        self.inner.start(self.share.1, whole, weights)?;
        // Every rank refuses alike (the same network): a share's statistics are not the
        // batch's.
        if self.ranks.size() > 1
            && let Some(net) = self.inner.networks().first()
            && let Some(i) = (0..net.projs.len()).find(|&i| net.batch_norm(i).is_some())
        {
            return Err(RuntimeError::Build(format!(
                "`{}` has `batch_norm`, which normalises over the whole batch at each step: it cannot be trained over {} MPI ranks (each holds a share of the batch); train it in one process",
                net.projections()[i].0,
                self.ranks.size()
            )));
        }
        Ok(())
    }

    fn set_dropout_pass(&mut self, pass: Option<u64>) {
        self.inner.set_dropout_pass(pass)
    }

    fn networks(&self) -> &[Network<T>] {
        self.inner.networks()
    }

    fn spike_totals(&self) -> (Vec<u64>, usize)
    where
        T: 'static,
    {
        (self.spikes.clone(), self.batch)
    }

    fn gradient(&mut self, data: &mut dyn Sequence, online: Option<Online>) -> Result<Gradients, RuntimeError> {
        if data.batch() != self.batch {
            return Err(RuntimeError::Input(format!("the data has batch {}, the ranks were started for {}", data.batch(), self.batch)));
        }
        let ranks = self.ranks;
        let (b0, n) = self.share;
        let mut view = Share::new(data, b0, n);
        // An update within the sequence takes the gradient of the whole batch.
        let result = match online {
            Some(on) => {
                let inner_update = on.update;
                let mut update = |g: &[(String, Array2<f64>)]| {
                    let mut g = g.to_vec();
                    sum_arrays(ranks, g.iter_mut().map(|(_, a)| a), &mut []);
                    inner_update(&g)
                };
                self.inner.gradient(&mut view, Some(Online { every: on.every, update: &mut update }))
            }
            None => self.inner.gradient(&mut view, None),
        };
        let mut g = match result {
            Ok(g) => g,
            Err(e) => ranks.abort(&e),
        };
        // Everything summed in one message: gradients, loss, state bytes, and the
        // evidence as a whole-batch array with this rank's rows in place.
        let o = g.evidence.ncols();
        let mut evidence = Array2::<f64>::zeros((self.batch, o));
        evidence.slice_mut(ndarray::s![b0..b0 + n, ..]).assign(&g.evidence);
        // Spike counts are far below 2^53: exact in f64.
        let (local_spikes, _) = self.inner.spike_totals();
        let mut scalars: Vec<f64> = [g.loss, g.state_bytes as f64].into_iter().chain(local_spikes.iter().map(|s| *s as f64)).collect();
        let arrays = g.total.iter_mut().map(|(_, a)| a).chain(std::iter::once(&mut evidence));
        sum_arrays(ranks, arrays, &mut scalars);
        g.loss = scalars[0];
        g.state_bytes = scalars[1] as usize;
        self.spikes = scalars[2..].iter().map(|s| *s as u64).collect();
        g.evidence = evidence;
        Ok(g)
    }
}

/// Sums `arrays` and `scalars` over the ranks with one all-reduce.
fn sum_arrays<'a>(ranks: &dyn Exchange, arrays: impl Iterator<Item = &'a mut Array2<f64>>, scalars: &mut [f64]) {
    let mut arrays: Vec<&mut Array2<f64>> = arrays.collect();
    let mut buf: Vec<f64> = arrays.iter().flat_map(|a| a.iter().copied()).chain(scalars.iter().copied()).collect();
    ranks.all_sum(&mut buf);
    let mut at = 0;
    for a in arrays.iter_mut() {
        a.iter_mut().zip(&buf[at..]).for_each(|(d, s)| *d = *s);
        at += a.len();
    }
    scalars.copy_from_slice(&buf[at..]);
}

/// Batch elements `b0..b0 + n` of a sequence: this rank's rows of every step (written by
/// the data's own generator where it has one, else read from the whole step).
struct Share<'a> {
    data: &'a mut dyn Sequence,
    b0: usize,
    n: usize,
    x: Vec<Vec<f64>>,
    target: Vec<f64>,
    mask: Vec<f64>,
}

impl<'a> Share<'a> {
    fn new(data: &'a mut dyn Sequence, b0: usize, n: usize) -> Share<'a> {
        let (in_sizes, n_target) = data.shape();
        let batch = data.batch();
        let x = in_sizes.iter().map(|s| vec![0.0; s * batch]).collect();
        Share { data, b0, n, x, target: vec![0.0; n_target * batch], mask: vec![1.0; batch] }
    }
}

impl Sequence for Share<'_> {
    fn steps(&self) -> usize {
        self.data.steps()
    }
    fn batch(&self) -> usize {
        self.n
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        self.data.shape()
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        let (sizes, n_target) = self.data.shape();
        self.data.fill(t, &mut self.x, &mut self.target);
        self.data.mask(t, &mut self.mask);
        let (b0, n) = (self.b0, self.n);
        for ((d, s), size) in x.iter_mut().zip(&self.x).zip(&sizes) {
            d.copy_from_slice(&s[b0 * size..(b0 + n) * size]);
        }
        target.copy_from_slice(&self.target[b0 * n_target..(b0 + n) * n_target]);
    }
    fn loss(&self) -> Loss {
        self.data.loss()
    }
    fn mask(&self, _t: usize, mask: &mut [f64]) {
        mask.copy_from_slice(&self.mask[self.b0..self.b0 + self.n]);
    }
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        let rows = self.data.rows()?;
        Some(Box::new(Offset { rows, b0: self.b0 }))
    }
    fn batch_offset(&self) -> usize {
        self.data.batch_offset() + self.b0
    }
}

/// A generator's rows shifted by `b0`.
struct Offset {
    rows: Box<dyn RowFill>,
    b0: usize,
}

impl RowFill for Offset {
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]) {
        self.rows.fill_rows(t, self.b0 + b0, nb, x, target, mask);
    }
}
