//! Data parallelism over the batch: the batch elements of a gradient pass are
//! independent until their weight gradients are summed, so a batch of B is split across
//! networks of B/P elements (same weights, `batch_offset` set so that their random draws
//! are those of the whole batch), each run on a thread of its own (the first on the
//! calling thread). A sequence that can write any rows of any step ([`Sequence::rows`]:
//! the built-in generators) is filled by each network's thread for its own rows; any
//! other is produced in order by one more thread, which hands each network its rows. The
//! gradients, losses and evidence are then combined: the result equals the unsplit pass
//! up to the order of the floating-point sums over the batch.

use super::{CpuGradient, Gradients, Loss, Method, RowFill, Sequence};
use crate::error::RuntimeError;
use crate::network::Network;
use crate::scalar::Float;
use ndarray::{Array2, Axis, concatenate};
use std::sync::mpsc::{Receiver, sync_channel};

/// Steps the producer may run ahead of the slowest network.
const AHEAD: usize = 32;

/// Batch sizes of `parts` networks sharing a batch of `batch` (the first ones one larger
/// when it does not divide); never more parts than batch elements.
pub fn split_sizes(batch: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, batch.max(1));
    (0..parts).map(|i| batch / parts + usize::from(i < batch % parts)).collect()
}

/// One step of one part: its rows of every input, of the target and of the mask.
struct Rows {
    x: Vec<Vec<f64>>,
    target: Vec<f64>,
    mask: Vec<f64>,
}

/// Where a part's rows come from.
enum Source<'a> {
    /// Dealt out by the producer thread, step by step.
    Channel(Receiver<Rows>),
    /// Written by the part itself: rows `b0..` of the whole batch.
    Own(&'a dyn RowFill, usize),
}

/// The sequence as one network of the split sees it.
struct Part<'a> {
    source: Source<'a>,
    steps: usize,
    batch: usize,
    in_sizes: Vec<usize>,
    n_target: usize,
    loss: Loss,
    mask: Vec<f64>,
    /// Its first element in the whole batch.
    offset: usize,
}

impl Sequence for Part<'_> {
    fn steps(&self) -> usize {
        self.steps
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (self.in_sizes.clone(), self.n_target)
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        match &self.source {
            Source::Own(rows, b0) => rows.fill_rows(t, *b0, self.batch, x, target, &mut self.mask),
            Source::Channel(rx) => match rx.recv() {
                Ok(r) => {
                    for (d, s) in x.iter_mut().zip(&r.x) {
                        d.copy_from_slice(s);
                    }
                    target.copy_from_slice(&r.target);
                    self.mask = r.mask;
                }
                // The producer stopped (another part failed): the rest counts for nothing.
                Err(_) => {
                    x.iter_mut().for_each(|v| v.fill(0.0));
                    target.fill(0.0);
                    self.mask = vec![0.0; self.batch];
                }
            },
        }
    }
    fn loss(&self) -> Loss {
        self.loss
    }
    fn mask(&self, _t: usize, mask: &mut [f64]) {
        mask.copy_from_slice(&self.mask);
    }
    fn batch_offset(&self) -> usize {
        self.offset
    }
}

/// The gradient of `sum_t L^t` over the batch of `data`, split across `nets` (their
/// batches, in order, must add up to the data's; they must hold the same weights). With
/// one network this is [`super::gradient_of`]. No per-step records, no updates within
/// the sequence (those need the whole batch's gradient at every step).
pub fn gradient_split<T: Float>(nets: &mut [Network<T>], trainable: &[String], data: &mut dyn Sequence, method: Method) -> Result<Gradients, RuntimeError> {
    let (steps, batch) = (data.steps(), data.batch());
    let sizes: Vec<usize> = nets.iter().map(|n| n.batch).collect();
    if sizes.iter().sum::<usize>() != batch {
        return Err(RuntimeError::Input(format!("the data has batch {batch}, the networks of the split hold {sizes:?}")));
    }
    if let [net] = nets {
        return CpuGradient::new(net, trainable, method)?.run(net, data);
    }
    // A batch norm's statistics are those of the whole batch at each step.
    if let Some(name) = nets[0].projections().iter().enumerate().find(|(i, _)| nets[0].batch_norm(*i).is_some()).map(|(_, (n, _))| n.clone()) {
        return Err(RuntimeError::Build(format!(
            "`{name}` has `batch_norm`, which normalises over the whole batch at each step: the batch cannot be split across {} networks; train it on one",
            nets.len()
        )));
    }
    // One gradient per part; the parts already run on threads of their own.
    let part = |net: &mut Network<T>, data: &mut dyn Sequence| CpuGradient::new(net, trainable, method)?.single_threaded().run(net, data);
    let (in_sizes, n_target) = data.shape();
    let loss = data.loss();
    let base = data.batch_offset();
    let flush = crate::kernels::denormals_flushed();
    if let Some(rows) = data.rows() {
        let rows: &dyn RowFill = rows.as_ref();
        let mut b0 = 0;
        let mut parts: Vec<Part> = Vec::new();
        for net in nets.iter_mut() {
            parts.push(Part { source: Source::Own(rows, b0), steps, batch: net.batch, in_sizes: in_sizes.clone(), n_target, loss, mask: vec![1.0; net.batch], offset: base + b0 });
            b0 += net.batch;
        }
        let results: Vec<Result<Gradients, RuntimeError>> = std::thread::scope(|scope| {
            let mut pairs = nets.iter_mut().zip(parts.iter_mut());
            let (net0, part0) = pairs.next().expect("two or more networks");
            let handles: Vec<_> = pairs
                .map(|(net, seq)| {
                    scope.spawn(move || {
                        if flush {
                            crate::kernels::flush_denormals();
                        }
                        part(net, seq)
                    })
                })
                .collect();
            let first = part(net0, part0);
            std::iter::once(first)
                .chain(handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(RuntimeError::Build("a gradient thread panicked".into())))))
                .collect()
        });
        return combine(results);
    }
    let results: Vec<Result<Gradients, RuntimeError>> = std::thread::scope(|scope| {
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        let mut b0 = 0;
        for net in nets.iter_mut() {
            let (tx, rx) = sync_channel::<Rows>(AHEAD);
            let mut seq = Part { source: Source::Channel(rx), steps, batch: net.batch, in_sizes: in_sizes.clone(), n_target, loss, mask: vec![1.0; net.batch], offset: base + b0 };
            b0 += net.batch;
            handles.push(scope.spawn(move || {
                if flush {
                    crate::kernels::flush_denormals();
                }
                part(net, &mut seq)
            }));
            txs.push(tx);
        }
        // Produce the steps and deal out the rows.
        let mut x: Vec<Vec<f64>> = in_sizes.iter().map(|s| vec![0.0; s * batch]).collect();
        let mut target = vec![0.0; n_target * batch];
        let mut mask = vec![1.0; batch];
        for t in 0..steps {
            data.fill(t, &mut x, &mut target);
            data.mask(t, &mut mask);
            let mut b0 = 0;
            let mut alive = false;
            for (tx, &nb) in txs.iter().zip(&sizes) {
                let rows = Rows {
                    x: x.iter().zip(&in_sizes).map(|(v, s)| v[b0 * s..(b0 + nb) * s].to_vec()).collect(),
                    target: target[b0 * n_target..(b0 + nb) * n_target].to_vec(),
                    mask: mask[b0..b0 + nb].to_vec(),
                };
                alive |= tx.send(rows).is_ok();
                b0 += nb;
            }
            if !alive {
                break;
            }
        }
        drop(txs);
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(RuntimeError::Build("a gradient thread panicked".into())))).collect()
    });
    combine(results)
}

/// The parts' results as one: losses, gradients and state summed, evidence stacked.
fn combine(results: Vec<Result<Gradients, RuntimeError>>) -> Result<Gradients, RuntimeError> {
    let mut parts = Vec::with_capacity(results.len());
    for r in results {
        parts.push(r?);
    }
    let mut out = parts.remove(0);
    for p in &parts {
        out.loss += p.loss;
        out.state_bytes += p.state_bytes;
        for ((n, g), (m, h)) in out.total.iter_mut().zip(&p.total) {
            debug_assert_eq!(n, m);
            *g += h;
        }
    }
    let views: Vec<ndarray::ArrayView2<f64>> = std::iter::once(out.evidence.view()).chain(parts.iter().map(|p| p.evidence.view())).collect();
    let evidence: Array2<f64> = concatenate(Axis(0), &views).map_err(|e| RuntimeError::Build(format!("evidence: {e}")))?;
    out.evidence = evidence;
    Ok(out)
}
