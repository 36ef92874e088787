//! The whole-brain fit's data (docs/fly.md): a synthetic connectome with the size and the
//! statistics of FlyWire, a teacher network on it, and the region rates the student is
//! fitted to.
//!
//! `cargo run --release -p snnc-runtime --example make_fly -- OUT_DIR [--neurons N]
//!  [--regions R] [--trials K] [--steps T] [--seed S] [--batch B] [--score CKPT|init|teacher]`
//!
//! Defaults: 4,000 neurons in 80 regions, 400 trials of 500 steps (100 ms at 0.2 ms), the
//! reduced scale of `examples/fly/`. `--neurons 139255 --regions 78` is the full scale.
//!
//! It writes into OUT_DIR `fly.snn` (the student) and `teacher.snn` (the teacher), with the
//! sizes filled in, and the files that network reads: `conn.npz` (the connectome:
//! COO pre/post sorted, synapse counts as `weight`, a sign per neuron), `teacher_conn.npz`
//! (the same pairs, each count times a mean-one log-normal factor), `input.npz` and
//! `teacher_input.npz` (the input map: one channel per region onto a quarter of its
//! neurons; the teacher's weights times U(0.5, 1.5)), `readout.npz` (region averages) and
//! `data.npz` (`x`: the trials' Poisson input spikes; `target`: the teacher's region rates,
//! in units of 10 Hz; `mask`: steps after the first 20 ms), an `npz:` task for
//! `snnc train` (the last tenth held out).

use ndarray::{Array1, Array2, Array3};
use ndarray_npy::NpzWriter;
use snnc_compiler::SourceMap;
use snnc_compiler::sema::{LoadOptions, check_path};
use snnc_runtime::kernels::JitFactory;
use snnc_runtime::network::{Network, Options};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

#[path = "common/splitmix.rs"]
mod splitmix;
use splitmix::SplitMix;

/// The published statistics the synthetic connectome follows (Dorkenwald et al. 2024;
/// Lin et al. 2024, FlyWire v783): 139,255 neurons, 2,701,601 connections of at least five
/// synapses between 78 neuropils, about 50 million synapses in them (a mean of ~18.5 a
/// connection), so ~19.4 partners a neuron.
const PARTNERS_MEAN: f64 = 2_701_601.0 / 139_255.0;
const SYNAPSES_PER_CONNECTION: f64 = 18.5;
/// Modelling choices, not published figures: the share of a neuron's partners in its own
/// region, the spread of out-degrees (log-normal, sigma 1: a rich club of hubs), the
/// Pareto tail of the counts (alpha 1.5, heavy as the measured weight distribution) and
/// the excitatory share (cholinergic neurons; GABA and glutamate as inhibitory, as the
/// FlyWire LIF models do).
const WITHIN_REGION: f64 = 0.8;
const DEGREE_SIGMA: f64 = 1.0;
const COUNT_ALPHA: f64 = 1.5;
const COUNT_CAP: f64 = 2000.0;
const EXCITATORY: f64 = 2.0 / 3.0;
/// The teacher: each count times exp(N(-s^2/2, s^2)) (mean one), each input weight times
/// U(0.5, 1.5).
const TEACHER_SPREAD: f64 = 0.5;
/// The networks' step (fly.snn.in says the same).
const DT: f64 = 0.2e-3;

#[derive(Clone)]
pub struct Settings {
    out: PathBuf,
    neurons: usize,
    regions: usize,
    trials: usize,
    steps: usize,
    seed: u64,
    batch: usize,
    /// `--score CKPT|init`: score the student instead of generating.
    score: Option<String>,
}

/// The settings of the command line `args` (without the program's name).
pub fn settings(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let out = args.next().ok_or("usage: make_fly OUT_DIR [--neurons N] [--regions R] [--trials K] [--steps T] [--seed S] [--batch B] [--score CKPT|init]")?;
    let mut s = Settings { out: out.into(), neurons: 4000, regions: 80, trials: 400, steps: 500, seed: 1, batch: 25, score: None };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        if flag == "--score" {
            s.score = Some(value);
            continue;
        }
        let n: u64 = value.parse().map_err(|_| format!("{flag} {value}: not a whole number"))?;
        match flag.as_str() {
            "--neurons" => s.neurons = n as usize,
            "--regions" => s.regions = n as usize,
            "--trials" => s.trials = n as usize,
            "--steps" => s.steps = n as usize,
            "--seed" => s.seed = n,
            "--batch" => s.batch = n as usize,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if s.regions == 0 || s.neurons < 10 * s.regions {
        return Err("need at least one region and ten neurons a region".into());
    }
    if s.trials < 10 || s.steps <= 100 || s.batch == 0 {
        return Err("need at least 10 trials, more than 100 steps and a batch of at least 1".into());
    }
    Ok(s)
}

/// Region of every neuron: contiguous blocks of log-normal sizes (neuropils differ in
/// size by orders of magnitude), each at least ten neurons.
fn regions(s: &Settings, rng: &mut SplitMix) -> Vec<usize> {
    let raw: Vec<f64> = (0..s.regions).map(|_| (0.7 * rng.normal()).exp()).collect();
    let spare = (s.neurons - 10 * s.regions) as f64;
    let total: f64 = raw.iter().sum();
    let mut sizes: Vec<usize> = raw.iter().map(|r| 10 + (spare * r / total) as usize).collect();
    sizes[0] += s.neurons - sizes.iter().sum::<usize>();
    sizes.iter().enumerate().flat_map(|(r, &n)| std::iter::repeat_n(r, n)).collect()
}

struct Connectome {
    pre: Vec<u32>,
    post: Vec<u32>,
    count: Vec<f32>,
    sign: Vec<i8>,
}

/// Partners of each neuron (out-degree log-normal around the FlyWire mean, most in its own
/// region, no self, no repeats), a heavy-tailed count of at least five synapses a pair.
fn connectome(region: &[usize], rng: &mut SplitMix) -> Connectome {
    let n = region.len();
    let n_regions = region.iter().max().map_or(0, |r| r + 1);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_regions];
    for (i, &r) in region.iter().enumerate() {
        members[r].push(i as u32);
    }
    let mu = PARTNERS_MEAN.ln() - DEGREE_SIGMA * DEGREE_SIGMA / 2.0;
    // The tail's scale such that the mean count is SYNAPSES_PER_CONNECTION: 5 + floor(c (P - 1)),
    // P ~ Pareto(alpha), E[P - 1] = 1 / (alpha - 1).
    let c = (SYNAPSES_PER_CONNECTION - 4.5) * (COUNT_ALPHA - 1.0);
    let (mut pre, mut post, mut count) = (Vec::new(), Vec::new(), Vec::new());
    let mut row: Vec<u32> = Vec::new();
    for i in 0..n {
        let k = ((mu + DEGREE_SIGMA * rng.normal()).exp().round() as usize).clamp(1, (n - 1).min(2000));
        row.clear();
        while row.len() < k {
            let j = if rng.unit() < WITHIN_REGION {
                let own = &members[region[i]];
                own[rng.below(own.len())]
            } else {
                rng.below(n) as u32
            };
            if j as usize != i && !row.contains(&j) {
                row.push(j);
            }
        }
        row.sort_unstable();
        for &j in &row {
            let p = rng.unit().powf(-1.0 / COUNT_ALPHA);
            pre.push(i as u32);
            post.push(j);
            count.push((5.0 + (c * (p - 1.0)).floor()).min(COUNT_CAP) as f32);
        }
    }
    let sign = (0..n).map(|_| if rng.unit() < EXCITATORY { 1 } else { -1 }).collect();
    Connectome { pre, post, count, sign }
}

/// `pre`/`post`/`weight` (and `sign` per presynaptic neuron where given) as a connectivity file.
fn write_projection(path: &Path, pre: &[u32], post: &[u32], weight: &[f32], sign: Option<&[i8]>) -> Result<(), Box<dyn std::error::Error>> {
    let (pre, post, weight) = (Array1::from(pre.to_vec()), Array1::from(post.to_vec()), Array1::from(weight.to_vec()));
    let mut w = NpzWriter::new(BufWriter::new(File::create(path).map_err(|e| format!("{}: {e}", path.display()))?));
    w.add_array("pre", &pre)?;
    w.add_array("post", &post)?;
    w.add_array("weight", &weight)?;
    if let Some(sign) = sign {
        w.add_array("sign", &Array1::from(sign.to_vec()))?;
    }
    w.finish()?;
    Ok(())
}

/// A network of examples/fly/ written with this connectome's sizes.
fn network_text(template: &str, s: &Settings) -> String {
    template.replace("@NEURONS@", &s.neurons.to_string()).replace("@REGIONS@", &s.regions.to_string())
}

/// Each trial: every channel at 10 Hz, and three regions' channels at 150 Hz from 20 to
/// 70 ms (the stimulus), as Bernoulli draws per step.
fn inputs(s: &Settings, dt: f64, rng: &mut SplitMix) -> Array3<f32> {
    let mut x = Array3::<f32>::zeros((s.trials, s.steps, s.regions));
    let (on, off) = ((0.02 / dt) as usize, (0.07 / dt) as usize);
    for trial in 0..s.trials {
        let stimulated: Vec<usize> = (0..3).map(|_| rng.below(s.regions)).collect();
        for t in 0..s.steps {
            for ch in 0..s.regions {
                let hz = if (on..off).contains(&t) && stimulated.contains(&ch) { 150.0 } else { 10.0 };
                if rng.unit() < hz * dt {
                    x[[trial, t, ch]] = 1.0;
                }
            }
        }
    }
    x
}

/// The readout (region rates) of `network` in `snn` for the trials `trials` of `x`, run
/// in batches, with `weights` (trained tensors by name) set over the initial ones.
fn readouts(s: &Settings, snn: &Path, network: &str, x: &Array3<f32>, trials: std::ops::Range<usize>, weights: &[(String, Array2<f64>)]) -> Result<Array3<f32>, Box<dyn std::error::Error>> {
    let mut sources = SourceMap::new();
    let (program, diags) = check_path(snn, &LoadOptions::default(), &mut sources);
    if diags.iter().any(|d| d.is_error()) {
        return Err(snnc_compiler::diag::render_all(&diags, &sources).into());
    }
    let def = program.network(network).ok_or(format!("{} has no network `{network}`", snn.display()))?;
    let mut net = Network::<f32>::build(&program, def, &Options { seed: s.seed, batch: s.batch, ..Options::default() }, &JitFactory)?;
    for (name, w) in weights {
        net.set_trainable(name, w.mapv(|v| v as f32))?;
    }
    let readout = net.pops.iter().position(|p| p.name == "out").ok_or("no readout `out`")?;
    let (steps, width) = (x.shape()[1], x.shape()[2]);
    let regions = net.pops[readout].n;
    let mut y = Array3::<f32>::zeros((trials.len(), steps, regions));
    let mut step_in = vec![0.0f32; s.batch * width];
    let mut spikes = 0u64;
    for first in trials.clone().step_by(s.batch) {
        let here = s.batch.min(trials.end - first);
        net.reset();
        for t in 0..steps {
            step_in.fill(0.0);
            for b in 0..here {
                step_in[b * width..(b + 1) * width].iter_mut().zip(x.slice(ndarray::s![first + b, t, ..])).for_each(|(v, x)| *v = *x);
            }
            net.step(&[&step_in])?;
            let out = net.pops[readout].readout_output();
            for b in 0..here {
                y.slice_mut(ndarray::s![first - trials.start + b, t, ..]).iter_mut().zip(&out[b * regions..(b + 1) * regions]).for_each(|(y, v)| *y = *v);
            }
        }
        spikes += net.pops.iter().map(|p| p.spike_count).sum::<u64>();
    }
    let seconds = (trials.len().div_ceil(s.batch) * s.batch * steps) as f64 * net.dt;
    eprintln!("{network}: {} trials, mean rate {:.2} Hz", trials.len(), spikes as f64 / (net.n_neurons() as f64 * seconds));
    Ok(y)
}

/// How well `y` fits `target` on the masked steps: the loss per trial `snnc train` reports
/// (sum over steps and regions of the squared error), the Pearson correlation of all
/// (trial, step, region) rates, and the binned-rate accuracy: the share of (trial, region,
/// 10 ms bin) whose mean rates fall in the same 5 Hz class.
fn score(y: &Array3<f32>, target: &Array3<f32>, mask: &Array2<f32>) -> (f64, f64, f64) {
    let (trials, steps, regions) = y.dim();
    let (mut sq, mut pairs) = (0.0, Vec::new());
    for ((k, t, r), &v) in y.indexed_iter() {
        if mask[[k, t]] > 0.0 {
            let d = f64::from(v) - f64::from(target[[k, t, r]]);
            sq += d * d;
            pairs.push((f64::from(v), f64::from(target[[k, t, r]])));
        }
    }
    let n = pairs.len().max(1) as f64;
    let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &pairs {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    let corr = sxy / (sxx * syy).sqrt().max(1e-300);
    // Rates are in units of 10 Hz: a 5 Hz class is half a unit.
    let bin = (0.010 / DT) as usize;
    let (mut same, mut bins) = (0usize, 0usize);
    for k in 0..trials {
        for start in (0..steps).step_by(bin).filter(|&t0| t0 + bin <= steps && mask[[k, t0]] > 0.0) {
            for r in 0..regions {
                let mean = |a: &Array3<f32>| (start..start + bin).map(|t| f64::from(a[[k, t, r]])).sum::<f64>() / bin as f64;
                same += usize::from((mean(y) / 0.5).floor() == (mean(target) / 0.5).floor());
                bins += 1;
            }
        }
    }
    (sq / trials.max(1) as f64, corr, same as f64 / bins.max(1) as f64)
}

/// Initial states each score is averaged over: the trials are chaotic, so one set of
/// initial voltages moves the loss by a few per cent.
const SCORE_SEEDS: u64 = 5;

/// `--score CKPT`: the student's fit on the held-out tenth of data.npz, with the
/// checkpoint's weights, or as it starts (`--score init`); `--score teacher`: the teacher
/// itself, the floor no student can pass. Each is run from the initial states of seeds
/// seed + 1 ..= seed + SCORE_SEEDS (the targets were made from `seed`'s), and reported as
/// mean and standard deviation over them.
pub fn score_checkpoint(s: &Settings, ckpt: &str) -> Result<Score, Box<dyn std::error::Error>> {
    let mut npz = ndarray_npy::NpzReader::new(File::open(s.out.join("data.npz"))?)?;
    let (x, target, mask): (Array3<f32>, Array3<f32>, Array2<f32>) = (npz.by_name("x")?, npz.by_name("target")?, npz.by_name("mask")?);
    let trials = x.shape()[0];
    let held = trials - trials / 10..trials;
    let (target, mask) = (target.slice(ndarray::s![held.clone(), .., ..]).to_owned(), mask.slice(ndarray::s![held.clone(), ..]).to_owned());
    let (snn, network, weights) = match ckpt {
        "teacher" => ("teacher.snn", "fly_teacher", Vec::new()),
        "init" => ("fly.snn", "fly", Vec::new()),
        path => ("fly.snn", "fly", snnc_runtime::train::load_checkpoint(Path::new(path))?.0),
    };
    let mut scores = Vec::new();
    for seed in s.seed + 1..=s.seed + SCORE_SEEDS {
        let y = readouts(&Settings { seed, ..s.clone() }, &s.out.join(snn), network, &x, held.clone(), &weights)?;
        scores.push(score(&y, &target, &mask));
    }
    let stat = |f: fn(&(f64, f64, f64)) -> f64| {
        let n = scores.len() as f64;
        let mean = scores.iter().map(f).sum::<f64>() / n;
        (mean, (scores.iter().map(|v| (f(v) - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt())
    };
    let who = if ckpt == "teacher" { "teacher" } else { "student" };
    Ok(Score { what: format!("{who} ({ckpt})"), trials: held.len(), loss: stat(|v| v.0), correlation: stat(|v| v.1), accuracy: stat(|v| v.2) })
}

/// A fit on the held-out trials: (mean, standard deviation) over the initial states.
pub struct Score {
    pub what: String,
    pub trials: usize,
    pub loss: (f64, f64),
    pub correlation: (f64, f64),
    pub accuracy: (f64, f64),
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let Score { what, trials, loss: (l, dl), correlation: (c, dc), accuracy: (a, da) } = self;
        write!(
            f,
            "{what} on {trials} held-out trials, {SCORE_SEEDS} initial states: loss {l:.1} +- {dl:.1} per trial, correlation {c:.3} +- {dc:.3}, binned-rate accuracy {:.1} +- {:.1} %",
            100.0 * a,
            100.0 * da
        )
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = settings(std::env::args().skip(1))?;
    match &s.score {
        Some(ckpt) => println!("{}", score_checkpoint(&s, ckpt)?),
        None => generate(&s)?,
    }
    Ok(())
}

/// Writes the connectome, the networks, the teacher's targets and the inputs into
/// `s.out`, and says how the untrained student fits.
pub fn generate(s: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&s.out)?;
    let mut rng = SplitMix(s.seed);
    let region = regions(s, &mut rng);
    let c = connectome(&region, &mut rng);
    let synapses: f64 = c.count.iter().map(|&x| f64::from(x)).sum();
    eprintln!("connectome: {} neurons, {} regions, {} connections, {synapses:.0} synapses", s.neurons, s.regions, c.pre.len());
    write_projection(&s.out.join("conn.npz"), &c.pre, &c.post, &c.count, Some(&c.sign))?;
    let spread = |rng: &mut SplitMix| (TEACHER_SPREAD * rng.normal() - TEACHER_SPREAD * TEACHER_SPREAD / 2.0).exp();
    let teacher: Vec<f32> = c.count.iter().map(|&k| (f64::from(k) * spread(&mut rng)) as f32).collect();
    write_projection(&s.out.join("teacher_conn.npz"), &c.pre, &c.post, &teacher, Some(&c.sign))?;

    // The input map: channel r onto a quarter of region r's neurons (at least one).
    let (mut ipre, mut ipost) = (Vec::new(), Vec::new());
    for (i, &r) in region.iter().enumerate() {
        if rng.unit() < 0.25 || (i == 0 || region[i - 1] != r) {
            ipre.push(r as u32);
            ipost.push(i as u32);
        }
    }
    let ones = vec![1.0f32; ipre.len()];
    let scaled: Vec<f32> = (0..ipre.len()).map(|_| (0.5 + rng.unit()) as f32).collect();
    write_projection(&s.out.join("input.npz"), &ipre, &ipost, &ones, None)?;
    write_projection(&s.out.join("teacher_input.npz"), &ipre, &ipost, &scaled, None)?;

    // The readout: each region's LeakyReadout (tau 20 ms) gets 1 / (n_r tau) / 10 Hz a
    // spike, so its state is the region's rate in units of 10 Hz.
    let mut size = vec![0usize; s.regions];
    region.iter().for_each(|&r| size[r] += 1);
    let rpost: Vec<u32> = region.iter().map(|&r| r as u32).collect();
    let rpre: Vec<u32> = (0..s.neurons as u32).collect();
    let rw: Vec<f32> = region.iter().map(|&r| (1.0 / (size[r] as f64 * 0.020) / 10.0) as f32).collect();
    write_projection(&s.out.join("readout.npz"), &rpre, &rpost, &rw, None)?;

    std::fs::write(s.out.join("fly.snn"), network_text(include_str!("../../examples/fly/fly.snn.in"), s))?;
    let snn = s.out.join("teacher.snn");
    std::fs::write(&snn, network_text(include_str!("../../examples/fly/teacher.snn.in"), s))?;
    let x = inputs(s, DT, &mut rng);
    let target = readouts(s, &snn, "fly_teacher", &x, 0..s.trials, &[])?;
    // The first 20 ms (the network settling from its random start) count nowhere.
    let mut mask = ndarray::Array2::<f32>::ones((s.trials, s.steps));
    mask.columns_mut().into_iter().take((0.02 / DT) as usize).for_each(|mut c| c.fill(0.0));
    let path = s.out.join("data.npz");
    let mut w = NpzWriter::new(BufWriter::new(File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?));
    w.add_array("x", &x)?;
    w.add_array("target", &target)?;
    w.add_array("mask", &mask)?;
    w.finish()?;
    println!("{}", score_checkpoint(s, "init")?);
    eprintln!("wrote {} (fly.snn, teacher.snn, conn.npz, teacher_conn.npz, input.npz, teacher_input.npz, readout.npz, data.npz)", s.out.display());
    Ok(())
}
