//! A window of a training sequence on the device: the inputs, targets and masks of up to
//! [`GpuNetwork::window`] steps go to the device in one upload each (the host writes
//! them from the [`Sequence`] into staging arrays first), each step reads its slice
//! through a view, and the loss, its gradient (the error the learning signals start
//! from) and the evidence are computed there ([`prop::LOSS_MSE`], [`prop::LOSS_CE`], in
//! f64 as the CPU computes them) and summed over the sequence on the device: nothing
//! crosses between the first and the last step of a window.

use super::super::device::{Buf, Device, Elem, HostMut, KArg};
use super::super::{GpuNetwork, dev_err};
use super::flat;
use crate::error::RuntimeError;
use crate::learn::{DeviceDraws, Loss, Sequence};
use crate::scalar::Float;
use ndarray::Array2;
use snnc_compiler::backend::ptx::propagate::{self as prop, BLOCK};

/// Host staging of a window is kept under this many bytes (the window shortens).
const STAGING_BYTES: usize = 64 << 20;

/// Device buffers and host staging of a window (see the module doc).
pub(super) struct Window<T> {
    /// Steps per window.
    pub len: usize,
    /// Per slot (step of the window), per external input: its view (B x size).
    x_views: Vec<Vec<Buf>>,
    x: Vec<Buf>,
    target: Buf,
    target_views: Vec<Buf>,
    mask: Buf,
    mask_views: Vec<Buf>,
    /// Summed over the sequence on the device (f64): the loss per batch element and the
    /// evidence (B x O).
    loss: Buf,
    evidence: Buf,
    x64: Vec<Vec<f64>>,
    x_host: Vec<Vec<T>>,
    target_host: Vec<f64>,
    mask_host: Vec<f64>,
    /// Readout outputs (B x O): the evidence's shape.
    shape: (usize, usize),
    /// A DMS batch's tables on the device (`DeviceDraws::Dms`): (seed, batch) they
    /// hold, its rates and labels.
    tables: Option<((u64, u64), Buf, Buf)>,
}

impl<T: Float> Window<T> {
    /// Allocates a window for `g` with readout `r`: at most the network's window, shorter
    /// where the staging of its inputs would pass [`STAGING_BYTES`].
    pub fn new<D: Device>(g: &mut GpuNetwork<T, D>, r: usize) -> Result<Window<T>, RuntimeError> {
        let batch = g.host.batch;
        let o = g.host.pops[r].n;
        let sizes: Vec<usize> = g.host.inputs.iter().map(|(_, n)| *n).collect();
        let per_step = batch * (sizes.iter().sum::<usize>() * (8 + std::mem::size_of::<T>()) + o * 8 + 8);
        let len = g.window().min((STAGING_BYTES / per_step.max(1)).max(1));
        if len < g.window() {
            g.set_window(len)?;
        }
        let fe = Elem::float(T::PRECISION);
        let dev = &mut g.dev;
        let mut x = Vec::new();
        let mut x_views = vec![Vec::new(); len];
        for ((name, _), &n) in g.host.inputs.iter().zip(&sizes) {
            let b = dev.alloc(fe, len * batch * n, &format!("window.{name}")).map_err(dev_err)?;
            for (s, views) in x_views.iter_mut().enumerate() {
                views.push(dev.view(b, s * batch * n, batch * n, &format!("window.{name}[{s}]")).map_err(dev_err)?);
            }
            x.push(b);
        }
        let target = dev.alloc(Elem::F64, len * batch * o, "window.target").map_err(dev_err)?;
        let mask = dev.alloc(Elem::F64, len * batch, "window.mask").map_err(dev_err)?;
        let mut target_views = Vec::with_capacity(len);
        let mut mask_views = Vec::with_capacity(len);
        for s in 0..len {
            target_views.push(dev.view(target, s * batch * o, batch * o, &format!("window.target[{s}]")).map_err(dev_err)?);
            mask_views.push(dev.view(mask, s * batch, batch, &format!("window.mask[{s}]")).map_err(dev_err)?);
        }
        let loss = dev.alloc(Elem::F64, batch, "learn.loss").map_err(dev_err)?;
        let evidence = dev.alloc(Elem::F64, batch * o, "learn.evidence").map_err(dev_err)?;
        Ok(Window {
            len,
            x_views,
            x,
            target,
            target_views,
            mask,
            mask_views,
            loss,
            evidence,
            x64: sizes.iter().map(|n| vec![0.0; batch * n]).collect(),
            x_host: sizes.iter().map(|n| vec![T::from_f64(0.0); len * batch * n]).collect(),
            target_host: vec![0.0; len * batch * o],
            mask_host: vec![0.0; len * batch],
            shape: (batch, o),
            tables: None,
        })
    }

    /// A new sequence: the sums start at zero.
    pub fn start<D: Device>(&mut self, g: &mut GpuNetwork<T, D>) -> Result<(), RuntimeError> {
        g.dev.zero(self.loss).map_err(dev_err)?;
        g.dev.zero(self.evidence).map_err(dev_err)
    }

    /// Writes steps `t0..t0 + n` of `data` (n <= len) to the device: one upload per input,
    /// one each for the targets and masks; or, where the device can draw them itself
    /// ([`Sequence::device_draws`]), one launch and nothing uploaded.
    pub fn load<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, data: &mut dyn Sequence, t0: usize, n: usize) -> Result<(), RuntimeError> {
        let batch = g.host.batch;
        let o = self.target_host.len() / (self.len * batch).max(1);
        let draws = data.device_draws();
        if let (Some(DeviceDraws::Dms { seed, base, batch: id, inputs, dt, bounds, background, rates, labels }), [x]) = (&draws, self.x.as_slice()) {
            let (seed, id, inputs) = (*seed, *id, *inputs);
            // The trials' tables: made once (the device has no free), uploaded once per
            // batch.
            let (r, l) = match self.tables {
                Some((_, r, l)) => (r, l),
                None => (g.dev.alloc(Elem::F64, 2 * batch * inputs, "window.dms_rates").map_err(dev_err)?, g.dev.alloc(Elem::U32, batch, "window.dms_labels").map_err(dev_err)?),
            };
            if self.tables.is_none_or(|t| t.0 != (seed, id)) {
                g.dev.upload(r, crate::gpu::Host::F64(rates)).map_err(dev_err)?;
                g.dev.upload(l, crate::gpu::Host::U32(labels)).map_err(dev_err)?;
                self.tables = Some(((seed, id), r, l));
            }
            // One thread per input, per target and per mask entry of each step.
            let total = n * (batch * inputs + batch * o + batch);
            let bufs = [*x, self.target, self.mask, r, l].map(KArg::Buf);
            let mut all: Vec<KArg> = bufs.into_iter().collect();
            all.extend([seed, *base, t0 as u64, n as u64, batch as u64, inputs as u64, dt.to_bits(), background.to_bits()].map(KArg::U64));
            all.extend(bounds.map(|b| KArg::U64(b.to_bits())));
            return g.launch(prop::DMS, flat(total), BLOCK, &all);
        }
        if let (Some(&DeviceDraws::RandomSpikes { seed, p }), [x]) = (draws.as_ref(), self.x.as_slice()) {
            let inputs = self.x64[0].len() / batch.max(1);
            // One thread per Philox block of inputs, per target and per mask entry.
            let total = n * ((batch * inputs).div_ceil(4) + batch * o + batch);
            let args = [x, &self.target, &self.mask].map(|b| KArg::Buf(*b));
            let sizes = [seed, t0 as u64, n as u64, batch as u64, inputs as u64, o as u64, p.to_bits()].map(KArg::U64);
            let all: Vec<KArg> = args.into_iter().chain(sizes).collect();
            return g.launch(prop::RANDOM_SPIKES, flat(total), BLOCK, &all);
        }
        for s in 0..n {
            let tgt = &mut self.target_host[s * batch * o..(s + 1) * batch * o];
            data.fill(t0 + s, &mut self.x64, tgt);
            data.mask(t0 + s, &mut self.mask_host[s * batch..(s + 1) * batch]);
            for (dst, src) in self.x_host.iter_mut().zip(&self.x64) {
                let m = src.len();
                dst[s * m..(s + 1) * m].iter_mut().zip(src).for_each(|(d, v)| *d = T::from_f64(*v));
            }
        }
        // Whole buffers (a short last window uploads a stale tail, never read).
        for (b, h) in self.x.iter().zip(&self.x_host) {
            g.dev.upload(*b, T::host(h)).map_err(dev_err)?;
        }
        g.dev.upload(self.target, crate::gpu::Host::F64(&self.target_host)).map_err(dev_err)?;
        g.dev.upload(self.mask, crate::gpu::Host::F64(&self.mask_host)).map_err(dev_err)

    }

    /// The external inputs of slot `s` (for [`GpuNetwork::step_on`]).
    pub fn inputs(&self, s: usize) -> &[Buf] {
        &self.x_views[s]
    }

    /// Step `s` of the window's loss for readout `r`, writing dL/dy into `err`.
    pub fn loss<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, kind: Loss, r: usize, s: usize, err: Buf) -> Result<(), RuntimeError> {
        let batch = g.host.batch;
        let o = g.host.pops[r].n;
        let y = g.readout_buffer(r);
        let args = [
            KArg::Buf(y),
            KArg::Buf(self.target_views[s]),
            KArg::Buf(self.mask_views[s]),
            KArg::Buf(err),
            KArg::Buf(self.loss),
            KArg::Buf(self.evidence),
            KArg::U64(batch as u64),
            KArg::U64(o as u64),
        ];
        let entry = match kind {
            Loss::Mse => prop::LOSS_MSE,
            Loss::CrossEntropy => prop::LOSS_CE,
        };
        g.launch(entry, flat(batch), BLOCK, &args)
    }

    /// The sequence's loss and evidence (one download each).
    pub fn finish<D: Device>(&mut self, g: &mut GpuNetwork<T, D>) -> Result<(f64, Array2<f64>), RuntimeError> {
        let (batch, o) = self.shape;
        let mut loss = vec![0.0; batch];
        g.dev.download(self.loss, HostMut::F64(&mut loss)).map_err(dev_err)?;
        let mut ev = vec![0.0; batch * o];
        g.dev.download(self.evidence, HostMut::F64(&mut ev)).map_err(dev_err)?;
        Ok((loss.iter().sum(), Array2::from_shape_vec((batch, o), ev).expect("B x O")))
    }
}
