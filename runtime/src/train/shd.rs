//! The Spiking Heidelberg Digits (SHD; Cramer et al. 2020) in its HDF5 format.
//!
//! A file (`shd_train.h5`, `shd_test.h5`) holds `spikes/times` (one variable-length
//! array of spike times in seconds per sample), `spikes/units` (the input channel of each
//! of those spikes, 0..699) and `labels` (the class, 0..19); `extra/...` is ignored.
//!
//! Binning: a spike at time t goes to step `floor(t / dt)` (with a tolerance of 1e-6 of a
//! step, so that a time written as k·dt lands in step k); the sequence has
//! `T = ceil(max_time / dt)` steps and spikes at or after `max_time` are dropped. Inputs
//! are spikes: several spikes of one channel in one step count as one (the input is 1,
//! not the count). Cross-entropy on the label at every step (no mask): the readout's
//! output summed over all steps is the prediction.
//!
//! Memory: the spikes are kept sparse, per sample a sorted list of `step * channels +
//! unit` (4 bytes a binned spike), and each step's inputs are filled in on the fly; no
//! dense (samples, T, channels) array is ever made.
//!
//! Held-out set: the last tenth of the training file, or a whole second file.

use super::tasks::Task;
use crate::learn::{Loss, RowFill, Sequence};
use crate::error::RuntimeError;
use super::dataset::Sampler;
use rust_hdf5::{ByteOrder, DatatypeMessage, H5File};
use std::path::Path;
use std::sync::Arc;

pub use super::dataset::Split;

/// How spikes become steps.
#[derive(Clone, Debug, PartialEq)]
pub struct ShdOptions {
    /// The network's time step (s).
    pub dt: f64,
    /// Length of a sequence (s): spikes at or after it are dropped. SHD digits last less
    /// than about 1.4 s; the default 1 s keeps almost all of their spikes.
    pub max_time: f64,
    /// Input channels (the network's input size): a unit at or above it is an error.
    /// `None`: the largest unit in the file plus one.
    pub channels: Option<usize>,
}

impl Default for ShdOptions {
    fn default() -> ShdOptions {
        ShdOptions { dt: 1e-3, max_time: 1.0, channels: None }
    }
}

/// `split` of an SHD file in batches: the training file's first nine tenths (`Train`) or
/// last tenth (`Test`), or with a `test` file, the whole of `train` or `test`.
pub struct ShdDataset {
    /// Per sample (in this split), sorted and without repeats: `step * channels + unit`
    /// (shared with the row writers of a split batch).
    keys: Arc<Vec<u32>>,
    /// Sample `i`'s keys are `keys[starts[i]..starts[i + 1]]`.
    starts: Arc<Vec<usize>>,
    /// The class of each sample.
    classes: Arc<Vec<usize>>,
    /// Each sample's index in its file.
    file_index: Vec<usize>,
    channels: usize,
    steps: usize,
    outputs: usize,
    batch: usize,
    sampler: Sampler,
    labels: Vec<usize>,
    /// The current batch, as the steps are written from it.
    rows: ShdRows,
}

fn err(msg: String) -> RuntimeError {
    RuntimeError::Input(msg)
}

/// How one element of a variable-length sequence is stored.
#[derive(Clone, Copy, Debug)]
enum Elem {
    F16(bool),
    F32(bool),
    F64(bool),
    /// size in bytes, signed, big-endian
    Int(usize, bool, bool),
}

impl Elem {
    fn of(dt: &DatatypeMessage) -> Option<Elem> {
        match dt {
            DatatypeMessage::FloatingPoint { size, byte_order, .. } => {
                let be = *byte_order == ByteOrder::BigEndian;
                match size {
                    2 => Some(Elem::F16(be)),
                    4 => Some(Elem::F32(be)),
                    8 => Some(Elem::F64(be)),
                    _ => None,
                }
            }
            DatatypeMessage::FixedPoint { size, byte_order, signed, .. } if matches!(size, 1 | 2 | 4 | 8) => {
                Some(Elem::Int(*size as usize, *signed, *byte_order == ByteOrder::BigEndian))
            }
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Elem::F16(_) => 2,
            Elem::F32(_) => 4,
            Elem::F64(_) => 8,
            Elem::Int(s, _, _) => s,
        }
    }

    fn is_float(self) -> bool {
        !matches!(self, Elem::Int(..))
    }

    /// The value of one element (integers of up to 64 bits as f64: channels and labels
    /// are far below 2^53).
    fn decode(self, b: &[u8]) -> f64 {
        let word = |be: bool| {
            let mut w = [0u8; 8];
            if be {
                w[8 - b.len()..].copy_from_slice(b);
                u64::from_be_bytes(w)
            } else {
                w[..b.len()].copy_from_slice(b);
                u64::from_le_bytes(w)
            }
        };
        match self {
            Elem::F16(be) => f16_to_f64(word(be) as u16),
            Elem::F32(be) => f64::from(f32::from_bits(word(be) as u32)),
            Elem::F64(be) => f64::from_bits(word(be)),
            Elem::Int(size, signed, be) => {
                let w = word(be);
                if signed {
                    let shift = 64 - 8 * size as u32;
                    (((w << shift) as i64) >> shift) as f64
                } else {
                    w as f64
                }
            }
        }
    }
}

/// IEEE half precision (NumPy's float16) to f64.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mantissa = f64::from(h & 0x3ff);
    sign * match exp {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + mantissa / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Steps of a sequence of `max_time` at `dt`: ceil, but k·dt (up to rounding) is k steps.
pub fn steps_for(max_time: f64, dt: f64) -> usize {
    let r = max_time / dt;
    if (r - r.round()).abs() <= 1e-6 { r.round() as usize } else { r.ceil() as usize }
}

/// The step of a spike at `t` seconds: floor(t / dt), with k·dt (up to rounding) in step k.
pub fn step_of(t: f64, dt: f64) -> f64 {
    let r = t / dt;
    if (r - r.round()).abs() <= 1e-6 { r.round() } else { r.floor() }
}

/// A datatype in NumPy's words.
fn describe(dt: &DatatypeMessage) -> String {
    match dt {
        DatatypeMessage::FloatingPoint { size, .. } => format!("float{}", 8 * size),
        DatatypeMessage::FixedPoint { size, signed, .. } => format!("{}int{}", if *signed { "" } else { "u" }, 8 * size),
        DatatypeMessage::VarLenSequence { base } => format!("variable-length arrays of {}", describe(base)),
        DatatypeMessage::VarLenString { .. } | DatatypeMessage::FixedString { .. } => "strings".into(),
        other => format!("{other:?}").split([' ', '{', '(']).next().unwrap_or("?").to_string(),
    }
}

/// One variable-length dataset: per sample, the values of its elements.
fn read_vlen(file: &H5File, path: &Path, name: &str) -> Result<(Elem, Vec<Vec<u8>>), RuntimeError> {
    let ds = dataset(file, path, name)?;
    let dt = ds.datatype().map_err(|e| err(format!("`{}`: cannot read the type of `{name}`: {e}", path.display())))?;
    let DatatypeMessage::VarLenSequence { base } = &dt else {
        return Err(err(format!("`{}`: `{name}` must be a variable-length dataset (one array per sample), it holds {}", path.display(), describe(&dt))));
    };
    let Some(elem) = Elem::of(base) else {
        return Err(err(format!("`{}`: `{name}` must hold arrays of numbers, it holds arrays of {}", path.display(), describe(base))));
    };
    if ds.shape().len() != 1 {
        return Err(err(format!("`{}`: `{name}` must have one dimension (samples), it has shape {:?}", path.display(), ds.shape())));
    }
    let data = ds.read_vlen_bytes().map_err(|e| err(format!("`{}`: cannot read `{name}`: {e}", path.display())))?;
    if let Some(i) = data.iter().position(|b| b.len() % elem.size() != 0) {
        return Err(err(format!("`{}`: `{name}`[{i}] has {} bytes, not a whole number of {}-byte values", path.display(), data[i].len(), elem.size())));
    }
    Ok((elem, data))
}

fn dataset(file: &H5File, path: &Path, name: &str) -> Result<rust_hdf5::H5Dataset, RuntimeError> {
    file.dataset(name).map_err(|e| match e {
        rust_hdf5::Hdf5Error::NotFound(_) => {
            err(format!("`{}` has no dataset `{name}` (an SHD file holds `spikes/times`, `spikes/units` and `labels`)", path.display()))
        }
        e => err(format!("`{}`: cannot open dataset `{name}`: {e}", path.display())),
    })
}

/// One file's samples: keys and starts as in [`ShdDataset`], classes.
pub(super) struct Samples {
    pub keys: Vec<u32>,
    pub starts: Vec<usize>,
    pub classes: Vec<usize>,
    pub file_index: Vec<usize>,
    pub channels: usize,
}

impl Samples {
    pub(super) fn new(channels: usize) -> Samples {
        Samples { keys: Vec::new(), starts: vec![0], classes: Vec::new(), file_index: Vec::new(), channels }
    }

    /// Ends the sample whose keys were pushed since `starts`' last entry: sorted, without
    /// repeats (several spikes of a channel in one step are one).
    pub(super) fn end_sample(&mut self, class: usize, file_index: usize) {
        let from = *self.starts.last().expect("starts begins with 0");
        self.keys[from..].sort_unstable();
        let mut w = from;
        for r in from..self.keys.len() {
            if w == from || self.keys[r] != self.keys[w - 1] {
                self.keys[w] = self.keys[r];
                w += 1;
            }
        }
        self.keys.truncate(w);
        self.starts.push(self.keys.len());
        self.classes.push(class);
        self.file_index.push(file_index);
    }
}

/// Reads `path` and bins the samples whose index `keep` accepts.
fn read_file(path: &Path, opts: &ShdOptions, outputs: usize, keep: &dyn Fn(usize, usize) -> bool) -> Result<Samples, RuntimeError> {
    std::fs::File::open(path).map_err(|e| err(format!("cannot open `{}`: {e}", path.display())))?;
    let file = H5File::open(path).map_err(|e| err(format!("`{}` is not an HDF5 file: {e}", path.display())))?;
    // Labels first: they are small and say how many samples there are.
    let ds = dataset(&file, path, "labels")?;
    if ds.shape().len() != 1 {
        return Err(err(format!("`{}`: `labels` must have one dimension (samples), it has shape {:?}", path.display(), ds.shape())));
    }
    // Integer labels (SHD's are uint16), or whole numbers stored as floats.
    let labels = match ds.read_numeric_as::<i64>() {
        Ok(l) => l.into_iter().map(|v| v as f64).collect(),
        Err(_) => ds.read_numeric_as::<f64>().map_err(|e| err(format!("`{}`: `labels` must be numbers: {e}", path.display())))?,
    };
    let n = labels.len();
    if n == 0 {
        return Err(err(format!("`{}` has no samples", path.display())));
    }
    if let Some((i, bad)) = labels.iter().enumerate().find(|(_, v)| !(**v >= 0.0 && v.fract() == 0.0 && (**v as usize) < outputs)) {
        return Err(err(format!(
            "`{}`: `labels`[{i}] = {bad}: labels must be whole numbers from 0 to {} (the readout has {outputs} outputs)",
            path.display(),
            outputs.saturating_sub(1)
        )));
    }
    let (dt, max_time) = (opts.dt, opts.max_time);
    if !(dt > 0.0 && dt.is_finite() && max_time > 0.0 && max_time.is_finite()) {
        return Err(err(format!("SHD binning needs dt > 0 and max_time > 0 (got dt {dt} s, max_time {max_time} s)")));
    }
    let steps = steps_for(max_time, dt);
    // Times to steps (u32::MAX: dropped), sample by sample, freeing the file's bytes.
    let (t_elem, times) = read_vlen(&file, path, "spikes/times")?;
    if !t_elem.is_float() {
        return Err(err(format!("`{}`: `spikes/times` must hold floating-point times in seconds, it holds integers", path.display())));
    }
    if times.len() != n {
        return Err(err(format!("`{}`: `spikes/times` has {} samples but `labels` has {n}", path.display(), times.len())));
    }
    let mut sample_steps: Vec<Vec<u32>> = Vec::with_capacity(n);
    for (i, bytes) in times.into_iter().enumerate() {
        if !keep(i, n) {
            sample_steps.push(Vec::new());
            continue;
        }
        let mut s = Vec::with_capacity(bytes.len() / t_elem.size());
        for (k, b) in bytes.chunks_exact(t_elem.size()).enumerate() {
            let t = t_elem.decode(b);
            if t.is_nan() || t < 0.0 || t.is_infinite() {
                return Err(err(format!("`{}`: `spikes/times`[{i}][{k}] = {t}: spike times must be finite seconds >= 0", path.display())));
            }
            let step = step_of(t, dt);
            s.push(if step < steps as f64 { step as u32 } else { u32::MAX });
        }
        sample_steps.push(s);
    }
    let (u_elem, units) = read_vlen(&file, path, "spikes/units")?;
    if u_elem.is_float() {
        return Err(err(format!("`{}`: `spikes/units` must hold integer channels, it holds floating-point numbers", path.display())));
    }
    if units.len() != n {
        return Err(err(format!("`{}`: `spikes/units` has {} samples but `labels` has {n}", path.display(), units.len())));
    }
    // Units, checked; the channel count.
    let mut max_unit = 0u64;
    for (i, bytes) in units.iter().enumerate().filter(|(i, _)| keep(*i, n)) {
        let count = bytes.len() / u_elem.size();
        if count != sample_steps[i].len() {
            return Err(err(format!("`{}`: sample {i} has {} spike times but {count} units", path.display(), sample_steps[i].len())));
        }
        for (k, b) in bytes.chunks_exact(u_elem.size()).enumerate() {
            let u = u_elem.decode(b);
            if u < 0.0 {
                return Err(err(format!("`{}`: `spikes/units`[{i}][{k}] = {u}: units must be channels >= 0", path.display())));
            }
            if let Some(c) = opts.channels.filter(|&c| u >= c as f64) {
                return Err(err(format!(
                    "`{}`: `spikes/units`[{i}][{k}] = {u} is out of range: the network's input has {c} channels (0 to {})",
                    path.display(),
                    c.saturating_sub(1)
                )));
            }
            max_unit = max_unit.max(u as u64);
        }
    }
    let channels = opts.channels.unwrap_or(max_unit as usize + 1);
    if (steps as u64) * (channels as u64) > u64::from(u32::MAX) {
        return Err(err(format!("{steps} steps × {channels} channels is too many for the SHD loader (at most 2^32 - 1); raise dt or lower max_time")));
    }
    // Keys `step * channels + unit`, per sample sorted and without repeats.
    let kept: usize = sample_steps.iter().map(|s| s.iter().filter(|&&st| st != u32::MAX).count()).sum();
    let mut out = Samples::new(channels);
    out.keys.reserve(kept);
    for (i, bytes) in units.into_iter().enumerate() {
        if !keep(i, n) {
            continue;
        }
        let steps_i = std::mem::take(&mut sample_steps[i]);
        for (st, b) in steps_i.into_iter().zip(bytes.chunks_exact(u_elem.size())) {
            if st != u32::MAX {
                out.keys.push(st * channels as u32 + u_elem.decode(b) as u32);
            }
        }
        out.end_sample(labels[i] as usize, i);
    }
    out.keys.shrink_to_fit();
    Ok(out)
}

impl ShdDataset {
    /// Loads `split` of `train` (with `test` as the held-out file if given) for a readout
    /// of `outputs` classes.
    pub fn load(train: &Path, test: Option<&Path>, split: Split, opts: &ShdOptions, outputs: usize, batch: usize, seed: u64) -> Result<ShdDataset, RuntimeError> {
        let held = |n: usize| (n / 10).max(1).min(n.saturating_sub(1));
        type Keep = Box<dyn Fn(usize, usize) -> bool>;
        let (path, keep): (&Path, Keep) = match (split, test) {
            (Split::Train, Some(_)) => (train, Box::new(|_, _| true)),
            (Split::Test, Some(t)) => (t, Box::new(|_, _| true)),
            (Split::Train, None) => (train, Box::new(move |i, n| i < n - held(n))),
            (Split::Test, None) => (train, Box::new(move |i, n| i >= n - held(n))),
        };
        let s = read_file(path, opts, outputs, &keep)?;
        if s.classes.is_empty() {
            return Err(err(format!("`{}` has no samples for the {split:?} split (it needs at least two to hold one out)", path.display())));
        }
        Ok(ShdDataset::from_samples(s, split, opts, outputs, batch, seed))
    }

    /// `split`'s binned samples as a dataset (the event loader's too, `events.rs`).
    pub(super) fn from_samples(s: Samples, split: Split, opts: &ShdOptions, outputs: usize, batch: usize, seed: u64) -> ShdDataset {
        let sampler = Sampler::new((0..s.classes.len()).collect(), batch.max(1), split, seed);
        let mut d = ShdDataset {
            keys: Arc::new(s.keys),
            starts: Arc::new(s.starts),
            classes: Arc::new(s.classes),
            file_index: s.file_index,
            channels: s.channels,
            steps: steps_for(opts.max_time, opts.dt),
            outputs,
            batch: batch.max(1),
            sampler,
            labels: Vec::new(),
            rows: ShdRows { keys: Arc::default(), starts: Arc::default(), classes: Arc::default(), channels: 0, outputs: 0, current: Vec::new(), valid: 0 },
        };
        d.relabel();
        d
    }

    /// Samples in this split.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Input channels per step.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Binned spikes stored (after dropping late ones and merging repeats).
    pub fn spike_count(&self) -> usize {
        self.keys.len()
    }

    /// Sample `i` of this split: its index in the file, its class and its binned spikes
    /// as (step, channel), sorted.
    pub fn sample(&self, i: usize) -> (usize, usize, Vec<(usize, usize)>) {
        let c = self.channels as u32;
        let spikes = self.keys[self.starts[i]..self.starts[i + 1]].iter().map(|k| ((k / c) as usize, (k % c) as usize)).collect();
        (self.file_index[i], self.classes[i], spikes)
    }

    /// The samples (indices into this split) of the current batch.
    pub fn current(&self) -> &[usize] {
        &self.sampler.current
    }

    /// The classes of the current batch.
    fn relabel(&mut self) {
        self.labels = self.sampler.current[..self.sampler.valid].iter().map(|&s| self.classes[s]).collect();
        self.rows = self.rows_of(self.sampler.current.clone(), self.sampler.valid);
    }
}

impl ShdDataset {
    fn rows_of(&self, current: Vec<usize>, valid: usize) -> ShdRows {
        ShdRows { keys: self.keys.clone(), starts: self.starts.clone(), classes: self.classes.clone(), channels: self.channels, outputs: self.outputs, current, valid }
    }
}

/// The current batch of an [`ShdDataset`], binned on the fly.
#[derive(Clone)]
struct ShdRows {
    keys: Arc<Vec<u32>>,
    starts: Arc<Vec<usize>>,
    classes: Arc<Vec<usize>>,
    channels: usize,
    outputs: usize,
    current: Vec<usize>,
    /// The real rows of `current` (the rest pads a held-out batch: mask 0).
    valid: usize,
}

impl ShdRows {
    /// Step `t` of batch elements `b0..b0 + nb` (rows relative to b0).
    fn write(&self, b0: usize, nb: usize, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        let (nc, no) = (self.channels, self.outputs);
        let (lo, hi) = ((t * nc) as u32, ((t + 1) * nc) as u32);
        for (b, &s) in self.current[b0..b0 + nb].iter().enumerate() {
            let row = &mut x[0][b * nc..(b + 1) * nc];
            row.fill(0.0);
            let keys = &self.keys[self.starts[s]..self.starts[s + 1]];
            let from = keys.partition_point(|&k| k < lo);
            for &k in keys[from..].iter().take_while(|&&k| k < hi) {
                row[(k - lo) as usize] = 1.0;
            }
            let class = self.classes[s];
            target[b * no..(b + 1) * no].iter_mut().enumerate().for_each(|(j, d)| *d = f64::from(j == class));
        }
    }
}

impl ShdRows {
    /// 1 for the real rows from `b0` on, 0 for the padding of a held-out batch.
    fn write_mask(&self, b0: usize, mask: &mut [f64]) {
        mask.iter_mut().enumerate().for_each(|(b, m)| *m = f64::from(u8::from(b0 + b < self.valid)));
    }
}

impl RowFill for ShdRows {
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]) {
        self.write(b0, nb, t, x, target);
        self.write_mask(b0, mask);
    }
}

impl Task for ShdDataset {
    fn next_batch(&mut self) {
        self.sampler.next_batch();
        self.relabel();
    }
    fn labels(&self) -> &[usize] {
        &self.labels
    }
    fn restart(&mut self) {
        self.sampler.restart();
        self.relabel();
    }
    fn batches_per_pass(&self) -> Option<usize> {
        Some(self.sampler.batches_per_pass())
    }
}

impl Sequence for ShdDataset {
    fn steps(&self) -> usize {
        self.steps
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (vec![self.channels], self.outputs)
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        self.rows.write(0, self.batch, t, x, target);
    }
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        Some(Box::new(self.rows.clone()))
    }
    fn mask(&self, _t: usize, mask: &mut [f64]) {
        self.rows.write_mask(0, mask);
    }
    fn loss(&self) -> Loss {
        Loss::CrossEntropy
    }
}

/// Writes an SHD-format file (`spikes/times` as variable-length float32 arrays,
/// `spikes/units` as uint16 ones, `labels` as uint16), readable by h5py and by
/// [`ShdDataset`]; the tests make their data with it.
pub fn write_shd(path: &Path, times: &[Vec<f32>], units: &[Vec<u16>], labels: &[u16]) -> Result<(), RuntimeError> {
    let e = |e: rust_hdf5::Hdf5Error| err(format!("cannot write `{}`: {e}", path.display()));
    let f = H5File::create(path).map_err(e)?;
    let g = f.create_group("spikes").map_err(e)?;
    g.write_vlen_numeric("times", &times.iter().map(|v| v.as_slice()).collect::<Vec<_>>()).map_err(e)?;
    g.write_vlen_numeric("units", &units.iter().map(|v| v.as_slice()).collect::<Vec<_>>()).map_err(e)?;
    f.new_dataset::<u16>().shape([labels.len()]).create("labels").map_err(e)?.write_raw(labels).map_err(e)?;
    f.close().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("snnc-shd-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// 40 samples of 4 classes; class c fires on channels 10c..10c+9, at times
    /// (k + 0.5) ms; sample 0 also has spikes on bin edges, repeats and late ones.
    fn synthetic() -> (Vec<Vec<f32>>, Vec<Vec<u16>>, Vec<u16>) {
        let (mut times, mut units, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..40u16 {
            let c = s % 4;
            let t: Vec<f32> = (0..6).map(|k| (f32::from(k * 7 + s % 5) + 0.5) * 1e-3).collect();
            let u: Vec<u16> = (0..6).map(|k| 10 * c + (k + s) % 10).collect();
            times.push(t);
            units.push(u);
            labels.push(c);
        }
        times[0] = vec![0.0, 0.0015, 0.0019, 0.003, 0.0495, 0.05, 0.2];
        units[0] = vec![3, 39, 39, 4, 0, 1, 2];
        (times, units, labels)
    }

    fn opts() -> ShdOptions {
        ShdOptions { dt: 1e-3, max_time: 0.05, channels: Some(40) }
    }

    #[test]
    fn bins_spikes_serves_batches_and_holds_out_the_last_tenth() {
        let d = dir("bins");
        let p = d.join("train.h5");
        let (times, units, labels) = synthetic();
        write_shd(&p, &times, &units, &labels).unwrap();
        let mut train = ShdDataset::load(&p, None, Split::Train, &opts(), 4, 8, 1).unwrap();
        assert_eq!((train.len(), train.steps(), train.shape()), (36, 50, (vec![40], 4)));
        crate::learn::loss::assert_rows_match_fill(&mut train);
        // floor(t / dt): 0 -> 0, 1.5 ms and 1.9 ms -> 1 (one spike: repeats merge), 3 ms
        // -> 3, 49.5 ms -> 49; 50 ms and later are past max_time and dropped.
        assert_eq!(train.sample(0), (0, 0, vec![(0, 3), (1, 39), (3, 4), (49, 0)]));
        assert_eq!(train.sample(5), (5, 1, (0..6).map(|k| (k * 7, 10 + (k + 5) % 10)).collect()));
        assert_eq!(train.spike_count(), 4 + 35 * 6);
        let test = ShdDataset::load(&p, None, Split::Test, &opts(), 4, 8, 1).unwrap();
        assert_eq!(test.len(), 4);
        assert_eq!((0..4).map(|i| test.sample(i).0).collect::<Vec<_>>(), vec![36, 37, 38, 39]);
        assert_eq!(test.current(), &[0, 1, 2, 3, 0, 1, 2, 3], "the held-out set in file order, wrapped");
        // Shuffled batches: 36 samples in batches of 8 see each one once in the first 4.5
        // batches, the held-out ones never.
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.extend(train.current().to_vec());
            train.next_batch();
        }
        seen.extend(&train.current()[..4]);
        assert_ne!(seen[..8], [0, 1, 2, 3, 4, 5, 6, 7], "shuffled");
        seen.sort();
        assert_eq!(seen, (0..36).collect::<Vec<_>>());
        // Each step's inputs are the sample's spikes at that step; one-hot targets.
        let (mut x, mut target) = (vec![vec![7.0; 8 * 40]], vec![0.0; 8 * 4]);
        for t in [0, 1, 3, 7, 49] {
            train.fill(t, &mut x, &mut target);
            for (b, &s) in train.current().iter().enumerate() {
                let (_, class, spikes) = train.sample(s);
                let want: Vec<usize> = spikes.iter().filter(|(st, _)| *st == t).map(|(_, u)| *u).collect();
                let got: Vec<usize> = (0..40).filter(|&u| x[0][b * 40 + u] == 1.0).collect();
                assert_eq!(got, want, "step {t}, sample {s}");
                assert_eq!(x[0][b * 40..(b + 1) * 40].iter().sum::<f64>(), want.len() as f64);
                assert_eq!(&target[b * 4..(b + 1) * 4], &(0..4).map(|j| f64::from(j == class)).collect::<Vec<_>>()[..]);
                assert_eq!(train.labels()[b], class);
            }
        }
        let mut mask = vec![0.0; 8];
        train.mask(17, &mut mask);
        assert_eq!(mask, vec![1.0; 8], "the loss counts at every step");
        assert_eq!(train.loss(), Loss::CrossEntropy);
        assert!(train.classifies());
        // Without a channel count, the largest unit + 1; T = ceil(max_time / dt).
        let o = ShdOptions { dt: 2e-3, max_time: 0.049, channels: None };
        let wide = ShdDataset::load(&p, None, Split::Train, &o, 4, 8, 1).unwrap();
        assert_eq!((wide.channels(), wide.steps()), (40, 25));
        assert_eq!(wide.sample(0).2, vec![(0, 3), (0, 39), (1, 4), (24, 0)]);
        // A second file is the whole held-out set; the training file is then used whole.
        let q = d.join("test.h5");
        write_shd(&q, &times[..6], &units[..6], &labels[..6]).unwrap();
        assert_eq!(ShdDataset::load(&p, Some(&q), Split::Train, &opts(), 4, 8, 1).unwrap().len(), 40);
        assert_eq!(ShdDataset::load(&p, Some(&q), Split::Test, &opts(), 4, 8, 1).unwrap().len(), 6);
        std::fs::remove_dir_all(&d).ok();
    }

    /// Files written by h5py (chunked, gzip + shuffle, float16 times, uint8 labels) and
    /// by PyTables (VLArray, zlib) with scripts/make_shd_fixtures.py.
    #[test]
    fn reads_files_written_by_h5py_and_pytables() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
        for name in ["shd_h5py_gzip.h5", "shd_pytables.h5"] {
            let o = ShdOptions { dt: 1e-3, max_time: 1.0, channels: Some(700) };
            let d = ShdDataset::load(&data.join(name), None, Split::Train, &o, 20, 2, 0).unwrap();
            let got: Vec<_> = (0..d.len()).map(|i| d.sample(i)).collect();
            let want = vec![
                (0, 0, vec![(0, 3), (1, 699), (250, 699), (500, 10)]),
                (1, 1, vec![]),
                (2, 2, vec![(125, 5), (750, 6)]),
                (3, 19, vec![(62, 0)]),
                (4, 4, vec![(375, 1)]),
            ];
            assert_eq!(got, want, "{name}");
            let t = ShdDataset::load(&data.join(name), None, Split::Test, &o, 20, 2, 0).unwrap();
            assert_eq!(t.sample(0), (5, 5, vec![(3, 7), (500, 698)]), "{name}");
        }
    }

    fn load_err(p: &Path, o: &ShdOptions) -> String {
        ShdDataset::load(p, None, Split::Train, o, 4, 8, 1).err().expect("an error").to_string()
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let d = dir("bad");
        let (times, units, labels) = synthetic();
        let p = d.join("f.h5");
        let expect = |e: String, what: &str| assert!(e.contains(what), "`{what}` not in: {e}");
        expect(load_err(&d.join("none.h5"), &opts()), "cannot open");
        std::fs::write(&p, b"not an HDF5 file at all").unwrap();
        expect(load_err(&p, &opts()), "is not an HDF5 file");
        // A dataset missing.
        let f = H5File::create(&p).unwrap();
        f.create_group("spikes").unwrap().write_vlen_numeric("times", &[&[0.1f32][..]]).unwrap();
        f.new_dataset::<u16>().shape([1]).create("labels").unwrap().write_raw(&[0u16]).unwrap();
        f.close().unwrap();
        expect(load_err(&p, &opts()), "has no dataset `spikes/units`");
        // The wrong kind of dataset.
        let f = H5File::create(&p).unwrap();
        let g = f.create_group("spikes").unwrap();
        g.new_dataset::<f32>().shape([1]).create("times").unwrap().write_raw(&[0.1f32]).unwrap();
        g.write_vlen_numeric("units", &[&[0u16][..]]).unwrap();
        f.new_dataset::<u16>().shape([1]).create("labels").unwrap().write_raw(&[0u16]).unwrap();
        f.close().unwrap();
        expect(load_err(&p, &opts()), "`spikes/times` must be a variable-length dataset (one array per sample), it holds float32");
        // Lengths that disagree.
        write_shd(&p, &times, &units[..39], &labels).unwrap();
        expect(load_err(&p, &opts()), "`spikes/units` has 39 samples but `labels` has 40");
        write_shd(&p, &times, &units, &labels[..38]).unwrap();
        expect(load_err(&p, &opts()), "`spikes/times` has 40 samples but `labels` has 38");
        let mut u = units.clone();
        u[3].pop();
        write_shd(&p, &times, &u, &labels).unwrap();
        expect(load_err(&p, &opts()), "sample 3 has 6 spike times but 5 units");
        // Bad values.
        for (bad, what) in [(-0.001f32, "`spikes/times`[2][1] = -0.0010000000474974513"), (f32::NAN, "`spikes/times`[2][1] = NaN")] {
            let mut t = times.clone();
            t[2][1] = bad;
            write_shd(&p, &t, &units, &labels).unwrap();
            let e = load_err(&p, &opts());
            expect(e.clone(), what);
            expect(e, "spike times must be finite seconds >= 0");
        }
        let mut u = units.clone();
        u[7][2] = 40;
        write_shd(&p, &times, &u, &labels).unwrap();
        expect(load_err(&p, &opts()), "`spikes/units`[7][2] = 40 is out of range: the network's input has 40 channels (0 to 39)");
        write_shd(&p, &times, &units, &labels).unwrap();
        let e = ShdDataset::load(&p, None, Split::Train, &opts(), 3, 8, 1).err().unwrap().to_string();
        expect(e, "`labels`[3] = 3: labels must be whole numbers from 0 to 2 (the readout has 3 outputs)");
        write_shd(&p, &times[..1], &units[..1], &labels[..1]).unwrap();
        let e = ShdDataset::load(&p, None, Split::Test, &opts(), 4, 8, 1).err().unwrap().to_string();
        expect(e, "no samples for the Test split");
        let f = H5File::create(&p).unwrap();
        f.new_dataset::<u16>().shape([0]).create("labels").unwrap();
        f.close().unwrap();
        expect(load_err(&p, &opts()), "has no samples");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn steps_and_half_precision() {
        assert_eq!(steps_for(1.0, 1e-3), 1000);
        assert_eq!(steps_for(1.4, 1e-3), 1400);
        assert_eq!(steps_for(0.0105, 1e-3), 11);
        assert_eq!(step_of(0.003, 1e-3), 3.0);
        assert_eq!(step_of(0.0029, 1e-3), 2.0);
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(Elem::Int(2, true, false).decode(&[0xff, 0xff]), -1.0);
        assert_eq!(Elem::Int(2, false, true).decode(&[0x01, 0x02]), 258.0);
    }

    /// Truncated or damaged files are errors (or, where the damage misses what is read,
    /// loads), never panics.
    #[test]
    fn damaged_files_do_not_panic() {
        let data = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/shd_h5py_gzip.h5")).unwrap();
        let d = dir("damaged");
        let p = d.join("f.h5");
        let o = ShdOptions { dt: 1e-3, max_time: 1.0, channels: Some(700) };
        let load = |bytes: &[u8]| {
            std::fs::write(&p, bytes).unwrap();
            std::panic::catch_unwind(|| ShdDataset::load(&p, None, Split::Train, &o, 20, 2, 0).map(|_| ()))
        };
        for cut in (0..data.len()).step_by(499) {
            let r = load(&data[..cut]);
            assert!(r.is_ok(), "cut at {cut}: a panic");
            assert!(cut > data.len() / 2 || r.is_ok_and(|r| r.is_err()), "cut at {cut}: no error");
        }
        let mut state = 1u64;
        for k in 0..60 {
            let mut bytes = data.clone();
            for _ in 0..4 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = (state >> 33) as usize % bytes.len();
                bytes[i] ^= (state >> 20) as u8 | 1;
            }
            assert!(load(&bytes).is_ok(), "damage {k}: a panic");
        }
        std::fs::remove_dir_all(&d).ok();
    }
}
