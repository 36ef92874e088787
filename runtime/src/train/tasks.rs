//! Built-in tasks of the BrainScale experiments, generated on the fly from a seed.
//!
//! - Delayed match-to-sample (DMS): 100 inputs with von Mises tuning to a direction fire
//!   as Poisson processes; a sample direction is shown, held over a delay, then a test
//!   direction; the answer (match / non-match) is read out during the test period.
//! - Evidence accumulation (Bellec et al. 2020, e-prop; the BrainScale experiments):
//!   left and right cue trains, a delay, then a recall cue; the answer is the side that
//!   had more cues.
//!
//! Both implement [`Sequence`] with one-hot targets and a loss mask on the answer period.

use crate::learn::{Loss, RowFill, Sequence};
use crate::rng::Rng;

/// A source of training or test batches: a [`Sequence`] that can move on to the next
/// batch and knows each batch element's class.
pub trait Task: Sequence {
    /// Replaces the current batch by the next one.
    fn next_batch(&mut self);
    /// The class of each real element of the current batch (zeros for regression
    /// tasks): the whole batch, or fewer for the padded last batch of a held-out split.
    fn labels(&self) -> &[usize];
    /// A dataset's batches in one pass over its split, each sample once (the last batch
    /// may be partial: padded, and only its real elements counted); `None` for a
    /// generator, which draws fresh trials forever.
    fn batches_per_pass(&self) -> Option<usize> {
        None
    }
    /// Whether the task is a classification (accuracy means something).
    fn classifies(&self) -> bool {
        true
    }
    /// Back to the first batch: the same trials again (a held-out set is re-served
    /// every epoch without being rebuilt).
    fn restart(&mut self);
}

impl Task for Dms {
    fn next_batch(&mut self) {
        self.new_batch();
    }
    fn restart(&mut self) {
        self.batch_index = 0;
        self.new_batch();
    }
    fn labels(&self) -> &[usize] {
        &self.labels
    }
}

impl Task for Evidence {
    fn next_batch(&mut self) {
        self.new_batch();
    }
    fn restart(&mut self) {
        self.batch_index = 0;
        self.new_batch();
    }
    fn labels(&self) -> &[usize] {
        &self.labels
    }
}

/// Delayed match-to-sample.
#[derive(Clone, Debug)]
pub struct Dms {
    pub dt: f64,
    pub n_inputs: usize,
    /// Period lengths in seconds.
    pub fixation: f64,
    pub sample: f64,
    pub delay: f64,
    pub test: f64,
    /// Peak rate of a tuned input (Hz) and the background rate (Hz).
    pub rate: f64,
    pub background: f64,
    /// von Mises concentration of the tuning curves.
    pub kappa: f64,
    pub batch: usize,
    /// Trial directions (radians) and labels (1 = match), filled by `new_batch`.
    sample_dir: Vec<f64>,
    test_dir: Vec<f64>,
    pub labels: Vec<usize>,
    seed: u64,
    rng: Rng,
    batch_index: u64,
}

impl Dms {
    pub fn new(dt: f64, delay: f64, batch: usize, seed: u64) -> Dms {
        let mut d = Dms {
            dt,
            n_inputs: 100,
            // The periods and rates of the BrainScale experiments (sample and test
            // 500 ms, 100 Hz over a 1 Hz background), with a 100 ms fixation.
            fixation: 0.1,
            sample: 0.5,
            delay,
            test: 0.5,
            rate: 100.0,
            background: 1.0,
            kappa: 3.0,
            batch,
            sample_dir: Vec::new(),
            test_dir: Vec::new(),
            labels: Vec::new(),
            seed,
            rng: Rng::new(seed),
            batch_index: 0,
        };
        d.new_batch();
        d
    }

    /// The tuned rate of input `i` for direction `d` (Hz): the background plus a von
    /// Mises bump around the input's preferred direction.
    fn rate_of(&self, d: f64, i: usize) -> f64 {
        let pref = i as f64 / self.n_inputs as f64 * std::f64::consts::TAU;
        self.background + self.rate * (self.kappa * ((d - pref).cos() - 1.0)).exp()
    }

    /// Draws the next batch of trials: 8 directions, half of the trials match.
    pub fn new_batch(&mut self) {
        let k = self.batch_index;
        self.batch_index += 1;
        let dirs = 8;
        self.sample_dir.clear();
        self.test_dir.clear();
        self.labels.clear();
        for b in 0..self.batch {
            let w = self.rng.words(1, k * 65536 + b as u64, 0);
            let s = (w[0] % dirs) as f64;
            let matched = w[1] % 2 == 0;
            let t = if matched { s } else { (s + 1.0 + (w[2] % (dirs - 1)) as f64) % dirs as f64 };
            let tau = std::f64::consts::TAU;
            self.sample_dir.push(s * tau / dirs as f64);
            self.test_dir.push(t * tau / dirs as f64);
            self.labels.push(usize::from(matched));
        }
    }

    fn period(&self, t: usize) -> (bool, bool, bool) {
        let time = t as f64 * self.dt;
        let s0 = self.fixation;
        let s1 = s0 + self.sample;
        let t0 = s1 + self.delay;
        (time >= s0 && time < s1, time >= t0, time >= t0 && time < t0 + self.test)
    }
}

impl Sequence for Dms {
    fn steps(&self) -> usize {
        ((self.fixation + self.sample + self.delay + self.test) / self.dt).round() as usize
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (vec![self.n_inputs], 2)
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        self.write_rows(t, 0, self.batch, x, target);
    }
    fn loss(&self) -> Loss {
        Loss::CrossEntropy
    }
    fn mask(&self, t: usize, mask: &mut [f64]) {
        let (_, _, answer) = self.period(t);
        mask.fill(if answer { 1.0 } else { 0.0 });
    }
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        Some(Box::new(self.clone()))
    }
    fn device_draws(&self) -> Option<crate::learn::DeviceDraws> {
        // The bounds of `period`, as it computes them.
        let s0 = self.fixation;
        let s1 = s0 + self.sample;
        let u0 = s1 + self.delay;
        let n = self.n_inputs;
        let mut rates = Vec::with_capacity(2 * self.batch * n);
        for b in 0..self.batch {
            rates.extend((0..n).map(|i| self.rate_of(self.sample_dir[b], i)));
            rates.extend((0..n).map(|i| self.rate_of(self.test_dir[b], i)));
        }
        Some(crate::learn::DeviceDraws::Dms {
            seed: self.seed,
            base: self.batch_index << 40,
            batch: self.batch_index,
            inputs: n,
            dt: self.dt,
            bounds: [s0, s1, u0, u0 + self.test],
            background: self.background,
            rates,
            labels: self.labels.iter().map(|&l| l as u32).collect(),
        })
    }
}

impl Dms {
    /// Step `t` of trials `b0..b0 + nb` (rows relative to b0).
    fn write_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        let (in_sample, in_test, _) = self.period(t);
        let n = self.n_inputs;
        for (r, b) in (b0..b0 + nb).enumerate() {
            let dir = if in_sample { Some(self.sample_dir[b]) } else if in_test { Some(self.test_dir[b]) } else { None };
            for i in 0..n {
                let rate = match dir {
                    Some(d) => self.rate_of(d, i),
                    None => self.background,
                };
                let u = self.rng.uniform(2, (self.batch_index << 40) ^ ((t as u64) << 20) ^ (b * n + i) as u64, 0);
                x[0][r * n + i] = if u <= rate * self.dt { 1.0 } else { 0.0 };
            }
            target[r * 2] = f64::from(self.labels[b] == 0);
            target[r * 2 + 1] = f64::from(self.labels[b] == 1);
        }
    }
}

impl RowFill for Dms {
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]) {
        self.write_rows(t, b0, nb, x, target);
        self.mask(t, mask);
    }
}

/// Evidence accumulation: 4 groups of 10 inputs (left cue, right cue, recall, noise).
#[derive(Clone, Debug)]
pub struct Evidence {
    pub dt: f64,
    pub n_cues: usize,
    pub cue: f64,
    pub gap: f64,
    pub delay: f64,
    pub recall: f64,
    pub rate: f64,
    pub noise_rate: f64,
    pub batch: usize,
    /// Per trial, per cue: true = left.
    cues: Vec<Vec<bool>>,
    pub labels: Vec<usize>,
    rng: Rng,
    batch_index: u64,
}

impl Evidence {
    pub fn new(dt: f64, delay: f64, batch: usize, seed: u64) -> Evidence {
        let mut e = Evidence {
            dt,
            n_cues: 7,
            cue: 0.1,
            gap: 0.05,
            delay,
            recall: 0.15,
            rate: 40.0,
            noise_rate: 10.0,
            batch,
            cues: Vec::new(),
            labels: Vec::new(),
            rng: Rng::new(seed),
            batch_index: 0,
        };
        e.new_batch();
        e
    }

    pub fn new_batch(&mut self) {
        let k = self.batch_index;
        self.batch_index += 1;
        self.cues.clear();
        self.labels.clear();
        for b in 0..self.batch {
            let w = self.rng.words(3, k * 65536 + b as u64, 0);
            // The majority side, then each cue on it with probability 0.75 (an odd
            // number of cues cannot tie).
            let left_wins = w[0] % 2 == 0;
            let cues: Vec<bool> = (0..self.n_cues)
                .map(|c| {
                    let u = self.rng.uniform(4, k * 65536 + b as u64, c as u32);
                    if u < 0.75 { left_wins } else { !left_wins }
                })
                .collect();
            let left = cues.iter().filter(|c| **c).count();
            self.labels.push(usize::from(left * 2 < self.n_cues));
            self.cues.push(cues);
        }
    }

    fn cue_end(&self) -> f64 {
        self.n_cues as f64 * (self.cue + self.gap)
    }
}

impl Sequence for Evidence {
    fn steps(&self) -> usize {
        ((self.cue_end() + self.delay + self.recall) / self.dt).round() as usize
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (vec![40], 2)
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        self.write_rows(t, 0, self.batch, x, target);
    }
    fn loss(&self) -> Loss {
        Loss::CrossEntropy
    }
    fn mask(&self, t: usize, mask: &mut [f64]) {
        let recall = t as f64 * self.dt >= self.cue_end() + self.delay;
        mask.fill(if recall { 1.0 } else { 0.0 });
    }
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        Some(Box::new(self.clone()))
    }
}

impl RowFill for Evidence {
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]) {
        self.write_rows(t, b0, nb, x, target);
        self.mask(t, mask);
    }
}

impl Evidence {
    /// Step `t` of trials `b0..b0 + nb` (rows relative to b0).
    fn write_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        let time = t as f64 * self.dt;
        let slot = (time / (self.cue + self.gap)) as usize;
        let in_cue = slot < self.n_cues && time - slot as f64 * (self.cue + self.gap) < self.cue;
        let recall = time >= self.cue_end() + self.delay;
        for (r, b) in (b0..b0 + nb).enumerate() {
            for i in 0..40 {
                let group = i / 10;
                let active = match group {
                    0 => in_cue && self.cues[b][slot],
                    1 => in_cue && !self.cues[b][slot],
                    2 => recall,
                    _ => false,
                };
                let rate = if active { self.rate } else if group == 3 { self.noise_rate } else { 0.0 };
                let u = self.rng.uniform(5, (self.batch_index << 40) ^ ((t as u64) << 20) ^ (b * 40 + i) as u64, 0);
                x[0][r * 40 + i] = if u <= rate * self.dt { 1.0 } else { 0.0 };
            }
            target[r * 2] = f64::from(self.labels[b] == 0);
            target[r * 2 + 1] = f64::from(self.labels[b] == 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dms_balanced_tuned_and_masked() {
        let mut d = Dms::new(1e-3, 0.2, 64, 1);
        d.sample = 0.1;
        d.test = 0.1;
        crate::learn::loss::assert_rows_match_fill(&mut d);
        crate::learn::loss::assert_rows_match_fill(&mut Evidence::new(1e-3, 0.2, 5, 3));
        crate::learn::loss::assert_rows_match_fill(&mut RandomSpikes::new(20, 5, 7, 3, 0.3, 2));
        let steps = d.steps();
        assert_eq!(steps, 500);
        let matches = d.labels.iter().sum::<usize>();
        assert!(matches > 16 && matches < 48, "{matches} of 64 match");
        let mut x = vec![vec![0.0; 64 * 100]];
        let mut tgt = vec![0.0; 128];
        let (mut sample_spikes, mut delay_spikes) = (0.0, 0.0);
        for t in 0..steps {
            d.fill(t, &mut x, &mut tgt);
            let s: f64 = x[0].iter().sum();
            if (100..200).contains(&t) {
                sample_spikes += s;
            } else if (200..400).contains(&t) {
                delay_spikes += s;
            }
            let mut m = vec![0.0; 64];
            d.mask(t, &mut m);
            assert_eq!(m[0], if t >= 400 { 1.0 } else { 0.0 });
        }
        // Tuned inputs fire much more during the sample than the background.
        assert!(sample_spikes / 100.0 > 3.0 * delay_spikes / 200.0);
        assert!(tgt.chunks(2).all(|c| c[0] + c[1] == 1.0));
    }

    #[test]
    fn evidence_labels_follow_the_majority() {
        let e = Evidence::new(1e-3, 0.5, 32, 3);
        for (cues, label) in e.cues.iter().zip(&e.labels) {
            let left = cues.iter().filter(|c| **c).count();
            assert_eq!(*label, usize::from(left < 4));
        }
    }
}

/// Random sequences for tests and benchmarks: Bernoulli(`p`) spike inputs and targets
/// uniform in [-0.5, 0.5), MSE on every step, all from a seed.
#[derive(Clone, Debug)]
pub struct RandomSpikes {
    pub steps: usize,
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub p: f64,
    seed: u64,
    rng: Rng,
}

impl RandomSpikes {
    pub fn new(steps: usize, batch: usize, inputs: usize, outputs: usize, p: f64, seed: u64) -> RandomSpikes {
        RandomSpikes { steps, batch, inputs, outputs, p, seed, rng: Rng::new(seed) }
    }
}

impl Sequence for RandomSpikes {
    fn steps(&self) -> usize {
        self.steps
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn shape(&self) -> (Vec<usize>, usize) {
        (vec![self.inputs], self.outputs)
    }
    fn fill(&mut self, t: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        self.write_rows(t, 0, self.batch, x, target);
    }
    fn rows(&self) -> Option<Box<dyn RowFill>> {
        Some(Box::new(self.clone()))
    }
    fn device_draws(&self) -> Option<crate::learn::DeviceDraws> {
        Some(crate::learn::DeviceDraws::RandomSpikes { seed: self.seed, p: self.p })
    }
}

impl RowFill for RandomSpikes {
    fn fill_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64], mask: &mut [f64]) {
        self.write_rows(t, b0, nb, x, target);
        mask.fill(1.0);
    }
}

impl RandomSpikes {
    /// Step `t` of batch elements `b0..b0 + nb` (rows relative to b0).
    fn write_rows(&self, t: usize, b0: usize, nb: usize, x: &mut [Vec<f64>], target: &mut [f64]) {
        // Element e of the whole batch (flat index) takes word e % 4 of Philox block e / 4:
        // four inputs per block, and any rows give what the whole batch would.
        let first = b0 * self.inputs;
        let mut block = (u32::MAX, [0u32; 4]);
        for (k, v) in x[0][..nb * self.inputs].iter_mut().enumerate() {
            let e = first + k;
            let j = (e / 4) as u32;
            if block.0 != j {
                block = (j, self.rng.words(6, t as u64, j));
            }
            *v = if crate::rng::u01(block.1[e % 4]) <= self.p { 1.0 } else { 0.0 };
        }
        for (k, v) in target[..nb * self.outputs].iter_mut().enumerate() {
            *v = 1.0 - self.rng.uniform(7, t as u64, (b0 * self.outputs + k) as u32) - 0.5;
        }
    }
}

/// The .snn text of the training-throughput workload (BENCHMARKS.md's braintrace
/// comparison, `snnc bench train`): a recurrent LIF layer (tau 10 ms, dt 1 ms) read by
/// `Linear` readouts, every projection dense and trainable (W_in, W_rec, W_out).
pub fn training_workload(neurons: usize, inputs: usize, outputs: usize) -> String {
    format!(
        r#"import "stdlib/lif.snn"
network bench {{
    dt = 1 ms
    input x: {inputs}
    layer rec = LIF[{neurons}] {{ tau = 10 ms }}
    readout out = Linear[{outputs}]
    connect x -> rec.I dense init normal(0, 1.5 / sqrt({inputs})) trainable as W_in
    connect rec -> rec.I dense init normal(0, 0.5 / sqrt({neurons})) trainable as W_rec
    connect rec -> out dense init normal(0, 1 / sqrt({neurons})) trainable as W_out
}}"#
    )
}
