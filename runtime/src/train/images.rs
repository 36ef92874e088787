//! Image classification as spike sequences: images from an `.npz` archive (or the
//! scikit-learn handwritten digits built in), each shown for a number of steps as spikes,
//! rate coded (pixel j spikes at each step with probability its intensity) or latency
//! coded (once, earlier the brighter), with cross-entropy on the readout at every step.
//!
//! An archive holds `images` (samples, H, W), (samples, C, H, W) or (samples, pixels),
//! any numeric type, and `labels` (samples,); `images_test` / `labels_test` give a
//! held-out set, else the last fifth of the samples is held out (in file order: for the
//! digits, writers the training set did not see). Intensities are scaled to [0, 1] by the
//! largest value of the archive. Pixels are flattened C-ordered, `(c, y, x)`: the layout
//! of a `conv(...)` input.

use super::dataset::{Sampler, Split, read_npz_from};
use super::tasks::Task;
use crate::error::RuntimeError;
use crate::learn::{Loss, RowFill, Sequence};
use crate::rng::Rng;
use ndarray::{Array2, ArrayD};
use std::path::Path;
use std::sync::Arc;

/// The scikit-learn digits (1,797 8x8 images, intensities 0..16, classes 0..9): a copy of
/// the test set of the UCI "Optical Recognition of Handwritten Digits" data as
/// scikit-learn ships it (`runtime/data/README.md`: origin and licence).
pub const DIGITS_NPZ: &[u8] = include_bytes!("../../data/digits.npz");

/// How an image becomes spikes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Coding {
    /// Bernoulli per step: pixel j spikes with probability `intensity_j` (fresh draws for
    /// every training pass; the held-out set always gets the same ones).
    Rate,
    /// One spike per pixel of intensity > 0, at step `round((1 - intensity) * (steps - 1))`.
    Latency,
}

impl std::str::FromStr for Coding {
    type Err = String;
    fn from_str(s: &str) -> Result<Coding, String> {
        match s {
            "rate" => Ok(Coding::Rate),
            "latency" => Ok(Coding::Latency),
            _ => Err(format!("unknown coding `{s}` (rate, latency)")),
        }
    }
}

/// What an image dataset holds.
struct Images {
    /// (samples, pixels), in [0, 1].
    pixels: Array2<f32>,
    labels: Vec<usize>,
    outputs: usize,
    steps: usize,
    coding: Coding,
    rng: Rng,
}

/// A split of an image archive, served in batches of spike sequences.
pub struct ImageDataset {
    data: Arc<Images>,
    batch: usize,
    sampler: Sampler,
    labels: Vec<usize>,
    /// Training draws new rate-coded spikes every pass; held out, always the first's.
    fresh_noise: bool,
}

/// The spikes of the current batch at any step, for the threads of a split batch.
struct ImageRows {
    data: Arc<Images>,
    current: Vec<usize>,
    valid: usize,
    pass: u64,
}

impl Images {
    /// Pixel `j` of sample `s` at step `t` (of pass `pass`): 1 for a spike, else 0.
    fn spike(&self, s: usize, pass: u64, t: usize, j: usize) -> f64 {
        let v = f64::from(self.pixels[[s, j]]);
        let on = match self.coding {
            Coding::Rate => v > 0.0 && self.rng.uniform(16, (pass << 40) | ((s as u64) << 16) | t as u64, j as u32) < v,
            Coding::Latency => v > 0.0 && ((1.0 - v) * (self.steps - 1) as f64).round() as usize == t,
        };
        f64::from(u8::from(on))
    }
}

impl RowFill for ImageRows {
    /// Rows `b0..b0 + nb`: the spikes, the one-hot class, mask 1 (0 for the padding of a
    /// held-out batch).
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]) {
        let d = &self.data;
        let (np, no) = (d.pixels.ncols(), d.outputs);
        for (b, &s) in self.current[b0..b0 + nb].iter().enumerate() {
            x[0][b * np..(b + 1) * np].iter_mut().enumerate().for_each(|(j, v)| *v = d.spike(s, self.pass, t, j));
            target[b * no..(b + 1) * no].iter_mut().enumerate().for_each(|(k, v)| *v = f64::from(k == d.labels[s]));
            mask[b] = f64::from(u8::from(b0 + b < self.valid));
        }
    }
}

/// Options of an image task.
#[derive(Clone, Copy, Debug)]
pub struct ImageOptions {
    /// Steps each image is shown for.
    pub steps: usize,
    pub coding: Coding,
    /// Without a test set in the archive: hold out a fifth drawn at random (a fixed
    /// permutation, the same for every seed, as scikit-learn's `train_test_split` with a
    /// fixed `random_state`) instead of the last fifth in file order.
    pub shuffle_split: bool,
}

impl ImageDataset {
    /// `split` of the archive at `path` for a readout of `outputs` classes.
    pub fn load(path: &Path, split: Split, opts: &ImageOptions, outputs: usize, batch: usize, seed: u64) -> Result<ImageDataset, RuntimeError> {
        let open = || {
            let f = std::fs::File::open(path).map_err(|e| RuntimeError::Input(format!("cannot open `{}`: {e}", path.display())))?;
            Ok(std::io::BufReader::new(f))
        };
        ImageDataset::from_reader(&open, &path.display().to_string(), split, opts, outputs, batch, seed)
    }

    /// The built-in scikit-learn digits ([`DIGITS_NPZ`]).
    pub fn digits(split: Split, opts: &ImageOptions, outputs: usize, batch: usize, seed: u64) -> Result<ImageDataset, RuntimeError> {
        ImageDataset::from_reader(&|| Ok(std::io::Cursor::new(DIGITS_NPZ)), "the built-in digits", split, opts, outputs, batch, seed)
    }

    #[allow(clippy::too_many_arguments)]
    fn from_reader<R: std::io::Read + std::io::Seek>(
        open: &dyn Fn() -> Result<R, RuntimeError>,
        what: &str,
        split: Split,
        opts: &ImageOptions,
        outputs: usize,
        batch: usize,
        seed: u64,
    ) -> Result<ImageDataset, RuntimeError> {
        if opts.steps == 0 {
            return Err(RuntimeError::Input("an image must be shown for at least one step".into()));
        }
        let read = |name: &str| read_npz_from(open, what, name);
        let has_test = read("images_test").is_ok();
        let suffix = if split == Split::Test && has_test { "_test" } else { "" };
        let images = read(&format!("images{suffix}"))?;
        let labels = read(&format!("labels{suffix}"))?;
        let n = images.shape().first().copied().unwrap_or(0);
        if images.ndim() < 2 || n == 0 {
            return Err(RuntimeError::Input(format!("{what}: `images{suffix}` must be (samples, ...) with at least one sample, it has shape {:?}", images.shape())));
        }
        if labels.ndim() != 1 || labels.len() != n {
            return Err(RuntimeError::Input(format!("{what}: `labels{suffix}` must have shape ({n},), it has {:?}", labels.shape())));
        }
        if let Some((i, bad)) = labels.iter().enumerate().find(|(_, v)| **v < 0.0 || v.fract() != 0.0 || **v as usize >= outputs) {
            return Err(RuntimeError::Input(format!("{what}: `labels{suffix}`[{i}] = {bad}: labels must be whole numbers from 0 to {} (the readout has {outputs} outputs)", outputs.saturating_sub(1))));
        }
        let pixels = scaled(&images, what, &format!("images{suffix}"))?;
        // Without a separate test set, the last fifth is held out.
        let held = if has_test { 0 } else { (n / 5).max(1).min(n.saturating_sub(1)) };
        let mut all: Vec<usize> = (0..n).collect();
        if opts.shuffle_split && !has_test {
            let rng = Rng::new(0x5eed_d161);
            for i in (1..n).rev() {
                all.swap(i, ((rng.uniform(17, 0, i as u32) * (i + 1) as f64) as usize).min(i));
            }
        }
        let order: Vec<usize> = match (split, has_test) {
            (_, true) => all,
            (Split::Train, false) => all[..n - held].to_vec(),
            (Split::Test, false) => all[n - held..].to_vec(),
        };
        if order.is_empty() {
            return Err(RuntimeError::Input(format!("{what} has no samples for the {split:?} split")));
        }
        let labels = labels.iter().map(|v| *v as usize).collect();
        let data = Arc::new(Images { pixels, labels, outputs, steps: opts.steps, coding: opts.coding, rng: Rng::new(seed ^ 0x1a2b_3c4d) });
        let mut d = ImageDataset { data, batch, sampler: Sampler::new(order, batch, split, seed), labels: Vec::new(), fresh_noise: split == Split::Train };
        d.relabel();
        Ok(d)
    }

    pub fn len(&self) -> usize {
        self.sampler.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sampler.len() == 0
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.data.pixels.ncols()
    }

    fn relabel(&mut self) {
        self.labels = self.sampler.current[..self.sampler.valid].iter().map(|&s| self.data.labels[s]).collect();
    }

    fn rows_now(&self) -> ImageRows {
        let pass = if self.fresh_noise { self.sampler.pass } else { 0 };
        ImageRows { data: self.data.clone(), current: self.sampler.current.clone(), valid: self.sampler.valid, pass }
    }
}

/// The images as (samples, pixels) in [0, 1], flattened C-ordered; refused if a value is
/// negative or not finite.
fn scaled(images: &ArrayD<f64>, what: &str, name: &str) -> Result<Array2<f32>, RuntimeError> {
    let n = images.shape()[0];
    let np = images.len() / n;
    if let Some(bad) = images.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(RuntimeError::Input(format!("{what}: `{name}` has the value {bad}; intensities must be finite and >= 0")));
    }
    let top = images.iter().fold(0.0f64, |m, v| m.max(*v));
    let scale = if top > 0.0 { 1.0 / top } else { 1.0 };
    let flat: Vec<f32> = images.iter().map(|v| (v * scale) as f32).collect();
    Ok(Array2::from_shape_vec((n, np), flat).expect("C-ordered"))
}

impl Task for ImageDataset {
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

impl Sequence for ImageDataset {
    fn steps(&self) -> usize {
        self.data.steps
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (vec![self.pixels()], self.data.outputs)
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        let mut mask = vec![0.0; self.batch];
        self.rows_now().fill_rows(t, 0, self.batch, x, target, &mut mask);
    }
    fn loss(&self) -> Loss {
        Loss::CrossEntropy
    }
    fn mask(&self, t: usize, mask: &mut [f64]) {
        let _ = t;
        mask.iter_mut().enumerate().for_each(|(b, d)| *d = f64::from(u8::from(b < self.sampler.valid)));
    }
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        Some(Box::new(self.rows_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digits_are_built_in_and_coded_as_spikes() {
        let opts = ImageOptions { steps: 20, coding: Coding::Rate, shuffle_split: false };
        let mut train = ImageDataset::digits(Split::Train, &opts, 10, 8, 1).unwrap();
        let test = ImageDataset::digits(Split::Test, &opts, 10, 8, 1).unwrap();
        assert_eq!((train.len(), test.len(), train.pixels()), (1438, 359, 64));
        crate::learn::loss::assert_rows_match_fill(&mut train);
        // Rate coding: over many steps a pixel's spike frequency is its intensity.
        let s = train.sampler.current[0];
        let bright = (0..64).max_by(|a, b| train.data.pixels[[s, *a]].total_cmp(&train.data.pixels[[s, *b]])).unwrap();
        let v = f64::from(train.data.pixels[[s, bright]]);
        let freq = (0..2000).map(|t| train.data.spike(s, 0, t, bright)).sum::<f64>() / 2000.0;
        assert!((freq - v).abs() < 0.05, "frequency {freq} vs intensity {v}");
        // Latency coding: one spike per lit pixel, the brightest at step 0.
        let lat = ImageDataset::digits(Split::Train, &ImageOptions { steps: 20, coding: Coding::Latency, shuffle_split: false }, 10, 8, 1).unwrap();
        let spikes: Vec<f64> = (0..20).map(|t| lat.data.spike(s, 0, t, bright)).collect();
        assert_eq!(spikes.iter().sum::<f64>(), 1.0);
        assert_eq!(spikes[((1.0 - v) * 19.0).round() as usize], 1.0);
        // A shuffled split: the same sizes, disjoint, not the last fifth.
        let shuffled = ImageOptions { shuffle_split: true, ..opts };
        let (a, b) = (ImageDataset::digits(Split::Train, &shuffled, 10, 8, 1).unwrap(), ImageDataset::digits(Split::Test, &shuffled, 10, 8, 2).unwrap());
        let (mut ta, mut tb) = (a.sampler.order().to_vec(), b.sampler.order().to_vec());
        ta.sort();
        tb.sort();
        assert_eq!((ta.len(), tb.len()), (1438, 359));
        assert!(tb.iter().all(|s| ta.binary_search(s).is_err()) && tb[0] < 1438);
        // Too few outputs for the labels: refused.
        let e = ImageDataset::digits(Split::Train, &opts, 5, 8, 1).err().unwrap().to_string();
        assert!(e.contains("labels must be whole numbers from 0 to 4"), "{e}");
    }
}
