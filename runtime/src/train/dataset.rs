//! Sequence datasets from files: NumPy `.npz` archives.
//!
//! An archive holds `x` (samples, T, inputs) and either `labels` (samples,) of class
//! indices — cross-entropy on the readout, on every step or where `mask` (samples, T)
//! says — or `target` (samples, T, outputs) with MSE. `x_test` with `labels_test` /
//! `target_test` (and `mask_test`) give a held-out set; without them the last tenth of
//! the samples is held out. Batches are drawn in a shuffled order, reshuffled every pass.

use super::tasks::Task;
use crate::learn::{Loss, RowFill, Sequence};
use crate::error::RuntimeError;
use crate::rng::Rng;
use ndarray::{Array2, Array3, ArrayD, Ix2, Ix3};
use std::fs::File;
use std::path::Path;

/// Opens an `.npz` archive, with the path in the error.
fn open(path: &Path) -> Result<ndarray_npy::NpzReader<File>, RuntimeError> {
    let f = File::open(path).map_err(|e| RuntimeError::Input(format!("cannot open `{}`: {e}", path.display())))?;
    ndarray_npy::NpzReader::new(f).map_err(|e| RuntimeError::Input(format!("`{}` is not an .npz file: {e}", path.display())))
}

/// The names of the arrays in an `.npz` archive (without `.npy`).
pub fn npz_names(path: &Path) -> Result<Vec<String>, RuntimeError> {
    let names = open(path)?.names().map_err(|e| RuntimeError::Input(format!("`{}`: {e}", path.display())))?;
    Ok(names.into_iter().map(|n| n.trim_end_matches(".npy").to_string()).collect())
}

/// Reads array `name` of an `.npz` as f64, whatever numeric type NumPy wrote (float32,
/// float64, bool, or an integer type for labels).
pub fn read_npz_array(path: &Path, name: &str) -> Result<ArrayD<f64>, RuntimeError> {
    let open = || File::open(path).map_err(|e| RuntimeError::Input(format!("cannot open `{}`: {e}", path.display())));
    read_npz_from(&open, &format!("`{}`", path.display()), name)
}

/// [`read_npz_array`] from any archive `open` gives (a file, bytes built in), named
/// `what` in errors.
pub(crate) fn read_npz_from<R: std::io::Read + std::io::Seek>(open: &dyn Fn() -> Result<R, RuntimeError>, what: &str, name: &str) -> Result<ArrayD<f64>, RuntimeError> {
    use ndarray::{IxDyn, OwnedRepr};
    let npz = || ndarray_npy::NpzReader::new(open()?).map_err(|e| RuntimeError::Input(format!("{what} is not an .npz file: {e}")));
    let names = npz()?.names().map_err(|e| RuntimeError::Input(format!("{what}: {e}")))?;
    let Some(entry) = names.iter().find(|n| n.trim_end_matches(".npy") == name) else {
        return Err(RuntimeError::Input(format!("{what} has no array `{name}` (it has: {})", names.join(", ").replace(".npy", ""))));
    };
    macro_rules! try_as {
        ($($t:ty),*) => {$(
            if let Ok(a) = npz()?.by_name::<OwnedRepr<$t>, IxDyn>(entry) {
                return Ok(a.mapv(|v| v as f64));
            }
        )*};
    }
    try_as!(f64, f32, i64, i32, i16, i8, u64, u32, u16, u8);
    npz()?
        .by_name::<OwnedRepr<bool>, IxDyn>(entry)
        .map(|a| a.mapv(|b| if b { 1.0 } else { 0.0 }))
        .map_err(|e| RuntimeError::Input(format!("{what}: array `{name}` must be numeric or bool: {e}")))
}

/// Refuses a non-finite value in `a` (array `array` of file `file`), naming the first
/// one by its index: bad data must be blamed on the data, not on the network it would
/// later make NaN. Shared by every loader of numbers (datasets, `snnc grad`'s arrays,
/// `snnc run --input`, checkpoints).
pub fn check_finite<'a, D: ndarray::Dimension>(a: ndarray::ArrayView<'a, f64, D>, file: &Path, array: &str) -> Result<(), RuntimeError> {
    match a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some((i, v)) => {
            let dim = ndarray::IntoDimension::into_dimension(i);
            let index: Vec<String> = ndarray::Dimension::slice(&dim).iter().map(|k| k.to_string()).collect();
            Err(RuntimeError::Input(format!("`{}`: array `{array}` has {v} at index [{}]; every value must be finite", file.display(), index.join(", "))))
        }
    }
}

/// Which samples of the archive a [`NpzDataset`] serves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Split {
    Train,
    Test,
}

/// What the model is asked to produce.
#[derive(Clone, Debug)]
enum Targets {
    /// Class per sample.
    Labels(Vec<usize>),
    /// (samples, T, outputs).
    Values(Array3<f32>),
}

/// The order in which a dataset's samples are served, batch by batch: shuffled anew
/// every pass (Fisher–Yates with the counter-based generator, so the order depends only
/// on seed and pass); a held-out split is served in file order, each sample once per
/// pass: its last batch is padded ([`Sampler::valid`]). Shared by the file datasets
/// (`NpzDataset`, `ShdDataset`).
#[derive(Clone, Debug)]
pub(crate) struct Sampler {
    order: Vec<usize>,
    /// Position of the current batch in `order`.
    cursor: usize,
    pub(crate) pass: u64,
    batch: usize,
    shuffled: bool,
    rng: Rng,
    /// The samples of the current batch (training: wrapping around the split).
    pub(crate) current: Vec<usize>,
    /// How many of `current` are real: the whole batch, except for the last batch of a
    /// pass over a held-out split, which is padded with repeats of its own samples so
    /// that the network keeps its batch size. The padding counts nowhere: its loss mask
    /// is 0 and it has no label.
    pub(crate) valid: usize,
}

impl Sampler {
    /// Serves `samples` (indices, in their start order) in batches of `batch`.
    pub(crate) fn new(samples: Vec<usize>, batch: usize, split: Split, seed: u64) -> Sampler {
        let mut s = Sampler { order: samples, cursor: 0, pass: 0, batch, shuffled: split == Split::Train, rng: Rng::new(seed), current: Vec::new(), valid: batch };
        s.restart();
        s
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// The samples of the split (in serving order).
    #[cfg(test)]
    pub(crate) fn order(&self) -> &[usize] {
        &self.order
    }

    fn shuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let u = self.rng.uniform(8, self.pass, i as u32);
            let j = ((u * (i + 1) as f64) as usize).min(i);
            self.order.swap(i, j);
        }
    }

    /// Batches in one pass over the split (the last one may be partial).
    pub(crate) fn batches_per_pass(&self) -> usize {
        self.order.len().div_ceil(self.batch)
    }

    fn select(&mut self) {
        let len = self.order.len();
        // Training wraps around into the next samples; a held-out split stops at its end
        // (each sample once) and pads the batch with its own first samples.
        self.valid = if self.shuffled { self.batch } else { (len - self.cursor).min(self.batch) };
        let valid = self.valid;
        self.current = (0..self.batch).map(|k| self.order[(self.cursor + if k < valid { k } else { k % valid }) % len]).collect();
    }

    /// The next batch; a new pass (reshuffled) once every sample was served.
    pub(crate) fn next_batch(&mut self) {
        self.cursor += self.batch;
        if self.cursor >= self.order.len() {
            self.cursor = 0;
            self.pass += 1;
            self.shuffle();
        }
        self.select();
    }

    /// Back to the first batch of the first pass.
    pub(crate) fn restart(&mut self) {
        // The samples are indices: sorted, they are the start order.
        self.order.sort_unstable();
        (self.cursor, self.pass) = (0, 0);
        if self.shuffled {
            self.shuffle();
        }
        self.select();
    }
}

/// A dataset of equal-length sequences from an `.npz` archive, served in batches.
pub struct NpzDataset {
    /// The samples, shared with the row writers of a split batch.
    data: std::sync::Arc<NpzData>,
    batch: usize,
    sampler: Sampler,
    labels: Vec<usize>,
}

/// What an `.npz` dataset holds.
struct NpzData {
    /// (samples, T, inputs), kept in f32: datasets are large, spikes and targets exact.
    x: Array3<f32>,
    targets: Targets,
    mask: Option<Array2<f32>>,
    outputs: usize,
}

impl NpzData {
    /// Step `t` of samples `current` (one row each).
    fn write(&self, current: &[usize], t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        let (ni, no) = (self.x.shape()[2], self.outputs);
        for (b, &s) in current.iter().enumerate() {
            for (d, v) in x[0][b * ni..(b + 1) * ni].iter_mut().zip(self.x.slice(ndarray::s![s, t, ..])) {
                *d = f64::from(*v);
            }
            let dst = &mut target[b * no..(b + 1) * no];
            match &self.targets {
                Targets::Labels(l) => dst.iter_mut().enumerate().for_each(|(j, d)| *d = f64::from(j == l[s])),
                Targets::Values(v) => dst.iter_mut().zip(v.slice(ndarray::s![s, t, ..])).for_each(|(d, v)| *d = f64::from(*v)),
            }
        }
    }

    /// The mask of step `t` for rows `current`, of which the first `real` are samples
    /// and the rest the padding of a held-out batch (mask 0: it counts nowhere).
    fn write_mask(&self, current: &[usize], real: usize, t: usize, mask: &mut [f64]) {
        match &self.mask {
            Some(m) => mask.iter_mut().zip(current).for_each(|(d, &s)| *d = f64::from(m[[s, t]])),
            None => mask.fill(1.0),
        }
        mask.iter_mut().skip(real).for_each(|d| *d = 0.0);
    }
}

/// The current batch of an [`NpzDataset`], for the threads of a split batch.
struct NpzRows {
    data: std::sync::Arc<NpzData>,
    current: Vec<usize>,
    valid: usize,
}

impl RowFill for NpzRows {
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]) {
        let rows = &self.current[b0..b0 + nb];
        self.data.write(rows, t, x, target);
        self.data.write_mask(rows, self.valid.saturating_sub(b0), t, mask);
    }
}

/// Array `name` of the archive, refused if a value is not finite ([`check_finite`]).
fn read_checked(path: &Path, name: &str) -> Result<ArrayD<f64>, RuntimeError> {
    let a = read_npz_array(path, name)?;
    check_finite(a.view(), path, name)?;
    Ok(a)
}

fn to3(a: ArrayD<f64>, what: &str) -> Result<Array3<f32>, RuntimeError> {
    let shape = a.shape().to_vec();
    a.mapv(|v| v as f32)
        .into_dimensionality::<Ix3>()
        .map_err(|_| RuntimeError::Input(format!("`{what}` must have 3 dimensions (samples, steps, size), it has shape {shape:?}")))
}

impl NpzDataset {
    /// Loads `split` of the archive at `path` for a readout of `outputs` values.
    pub fn load(path: &Path, split: Split, outputs: usize, batch: usize, seed: u64) -> Result<NpzDataset, RuntimeError> {
        let names = npz_names(path)?;
        let has = |n: &str| names.iter().any(|m| m == n);
        let separate_test = has("x_test");
        let suffix = if split == Split::Test && separate_test { "_test" } else { "" };
        let x = to3(read_checked(path, &format!("x{suffix}"))?, &format!("x{suffix}"))?;
        let n = x.shape()[0];
        let steps = x.shape()[1];
        let targets = if has(&format!("labels{suffix}")) {
            let l = read_npz_array(path, &format!("labels{suffix}"))?;
            if l.ndim() != 1 || l.len() != n {
                return Err(RuntimeError::Input(format!("`labels{suffix}` must have shape ({n},), it has {:?}", l.shape())));
            }
            let labels: Vec<usize> = l.iter().map(|v| *v as usize).collect();
            if let Some((i, bad)) = l.iter().enumerate().find(|(_, v)| **v < 0.0 || v.fract() != 0.0 || **v as usize >= outputs) {
                return Err(RuntimeError::Input(format!(
                    "`labels{suffix}`[{i}] = {bad}: labels must be whole numbers from 0 to {} (the readout has {outputs} outputs)",
                    outputs - 1
                )));
            }
            Targets::Labels(labels)
        } else if has(&format!("target{suffix}")) {
            let t = to3(read_checked(path, &format!("target{suffix}"))?, &format!("target{suffix}"))?;
            if t.shape() != [n, steps, outputs] {
                return Err(RuntimeError::Input(format!("`target{suffix}` must have shape ({n}, {steps}, {outputs}), it has {:?}", t.shape())));
            }
            Targets::Values(t)
        } else {
            return Err(RuntimeError::Input(format!("`{}` needs `labels{suffix}` or `target{suffix}` besides `x{suffix}`", path.display())));
        };
        let mask = if has(&format!("mask{suffix}")) {
            let m = read_checked(path, &format!("mask{suffix}"))?;
            let shape = m.shape().to_vec();
            let m = m.mapv(|v| v as f32).into_dimensionality::<Ix2>().ok().filter(|m| m.dim() == (n, steps));
            Some(m.ok_or_else(|| RuntimeError::Input(format!("`mask{suffix}` must have shape ({n}, {steps}), it has {shape:?}")))?)
        } else {
            None
        };
        // Without a separate test set, the last tenth is held out.
        let all: Vec<usize> = (0..n).collect();
        let held = if separate_test { 0 } else { (n / 10).max(1).min(n.saturating_sub(1)) };
        let order = match (split, separate_test) {
            (_, true) => all,
            (Split::Train, false) => all[..n - held].to_vec(),
            (Split::Test, false) => all[n - held..].to_vec(),
        };
        if order.is_empty() {
            return Err(RuntimeError::Input(format!("`{}` has no samples for the {split:?} split", path.display())));
        }
        let data = std::sync::Arc::new(NpzData { x, targets, mask, outputs });
        let mut d = NpzDataset { data, batch, sampler: Sampler::new(order, batch, split, seed), labels: Vec::new() };
        d.relabel();
        Ok(d)
    }

    /// Samples in this split.
    pub fn len(&self) -> usize {
        self.sampler.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sampler.len() == 0
    }

    /// The classes of the current batch.
    fn relabel(&mut self) {
        self.labels = match &self.data.targets {
            Targets::Labels(l) => self.sampler.current[..self.sampler.valid].iter().map(|&s| l[s]).collect(),
            Targets::Values(_) => vec![0; self.sampler.valid],
        };
    }
}

impl Task for NpzDataset {
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
    fn classifies(&self) -> bool {
        matches!(self.data.targets, Targets::Labels(_))
    }
    fn batches_per_pass(&self) -> Option<usize> {
        Some(self.sampler.batches_per_pass())
    }
}

impl Sequence for NpzDataset {
    fn steps(&self) -> usize {
        self.data.x.shape()[1]
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (vec![self.data.x.shape()[2]], self.data.outputs)
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        self.data.write(&self.sampler.current, t, x, target);
    }
    fn loss(&self) -> Loss {
        match self.data.targets {
            Targets::Labels(_) => Loss::CrossEntropy,
            Targets::Values(_) => Loss::Mse,
        }
    }
    fn mask(&self, t: usize, mask: &mut [f64]) {
        self.data.write_mask(&self.sampler.current, self.sampler.valid, t, mask);
    }
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        Some(Box::new(NpzRows { data: self.data.clone(), current: self.sampler.current.clone(), valid: self.sampler.valid }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_npy::NpzWriter;

    fn write(path: &Path, n: usize, with_test: bool) {
        let mut w = NpzWriter::new(File::create(path).unwrap());
        // Sample s: input s at every step; label s % 3; mask on the last two steps.
        let x = Array3::from_shape_fn((n, 5, 4), |(s, _, i)| f32::from(u8::from(i == s % 4)));
        let labels = ndarray::Array1::from_shape_fn(n, |s| (s % 3) as i64);
        let mask = Array2::from_shape_fn((n, 5), |(_, t)| f32::from(u8::from(t >= 3)));
        w.add_array("x", &x).unwrap();
        w.add_array("labels", &labels).unwrap();
        w.add_array("mask", &mask).unwrap();
        if with_test {
            w.add_array("x_test", &x.slice(ndarray::s![..2, .., ..]).to_owned()).unwrap();
            w.add_array("labels_test", &labels.slice(ndarray::s![..2]).to_owned()).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn batches_cover_the_split_and_reshuffle() {
        let dir = std::env::temp_dir().join(format!("snnc-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.npz");
        write(&p, 20, false);
        let mut d = NpzDataset::load(&p, Split::Train, 3, 6, 1).unwrap();
        assert_eq!(d.len(), 18, "a tenth held out");
        crate::learn::loss::assert_rows_match_fill(&mut d);
        let test = NpzDataset::load(&p, Split::Test, 3, 2, 1).unwrap();
        assert_eq!(test.sampler.current, vec![18, 19]);
        // Three batches of 6 see every training sample once, none of the test ones.
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(d.sampler.current.clone());
            d.next_batch();
        }
        seen.sort();
        assert_eq!(seen, (0..18).collect::<Vec<_>>());
        assert_eq!(d.sampler.pass, 1);
        // Inputs, one-hot targets and mask come from the chosen samples.
        let (mut x, mut tgt, mut m) = (vec![vec![0.0; 6 * 4]], vec![0.0; 6 * 3], vec![0.0; 6]);
        d.fill(4, &mut x, &mut tgt);
        d.mask(1, &mut m);
        assert!(m.iter().all(|v| *v == 0.0));
        d.mask(4, &mut m);
        assert!(m.iter().all(|v| *v == 1.0));
        for (b, &s) in d.sampler.current.iter().enumerate() {
            assert_eq!(x[0][b * 4 + s % 4], 1.0);
            assert_eq!(x[0][b * 4..(b + 1) * 4].iter().sum::<f64>(), 1.0);
            assert_eq!(tgt[b * 3 + s % 3], 1.0);
            assert_eq!(d.labels()[b], s % 3);
        }
        assert_eq!(d.loss(), Loss::CrossEntropy);
        // A separate test set is used whole.
        write(&p, 20, true);
        assert_eq!(NpzDataset::load(&p, Split::Train, 3, 4, 1).unwrap().len(), 20);
        assert_eq!(NpzDataset::load(&p, Split::Test, 3, 4, 1).unwrap().len(), 2);
        // Bad files are errors that say what is wrong.
        let e = NpzDataset::load(&p, Split::Train, 2, 4, 1).err().unwrap().to_string();
        assert!(e.contains("labels must be whole numbers from 0 to 1"), "{e}");
        // A held-out split of 2 in batches of 3: one batch, its third row padding that
        // counts nowhere (mask 0, no label).
        let t = NpzDataset::load(&p, Split::Test, 3, 3, 1).unwrap();
        assert_eq!((t.sampler.current.as_slice(), t.labels().len(), t.batches_per_pass()), (&[0, 1, 0][..], 2, Some(1)));
        let mut m = vec![0.0; 3];
        t.mask(0, &mut m);
        assert_eq!(m, [1.0, 1.0, 0.0]);
        std::fs::write(dir.join("bad.npz"), b"nope").unwrap();
        assert!(NpzDataset::load(&dir.join("bad.npz"), Split::Train, 2, 4, 1).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
