//! Writes synthetic event-camera recordings shaped like DVS Gesture (Amir et al. 2017)
//! for `--task events:PATH` (docs/training.md) and examples/dvs_gestures.snn.
//!
//! `cargo run --release -p snnc-runtime --example make_events -- OUT.npz [TRAIN] [TEST] [SIZE] [MS] [SEED]`
//!
//! 11 classes, as DVS Gesture has 11 gestures: a bright blob moving in one of 8 directions
//! (classes 0-7, 45 degrees apart), a bar turning clockwise (8) or anticlockwise (9)
//! about the centre, and a ring expanding from the centre (10); each sample with its own
//! start, speed, size and brightness. The events are those of a DVS pixel model: each
//! pixel fires an ON (p = 1) or OFF (p = 0) event whenever its log intensity has moved by
//! 0.2 since its last event, sampled every 0.25 ms, plus background noise events (0.2 Hz
//! per pixel). SIZE x SIZE pixels (default 32; DVS Gesture's sensor is 128), MS
//! milliseconds per sample (default 300; its gestures last about 6 s), TRAIN (default
//! 440) and TEST (default 110) samples in the `_test` arrays, `t` in microseconds; the
//! layout of `events:` (`t x y p offsets labels sensor_size`), as tonic keeps events.

use ndarray::Array1;
use ndarray_npy::NpzWriter;

#[path = "common/splitmix.rs"]
mod splitmix;
use splitmix::SplitMix;

const CLASSES: usize = 11;
/// Log-intensity change that makes an event.
const THRESHOLD: f64 = 0.2;
/// Pixel sampling period (s).
const TICK: f64 = 0.25e-3;
/// Background events per pixel and second.
const NOISE_HZ: f64 = 0.2;

/// One sample's scene: intensity at (x, y) (pixels from the centre) and time t (s).
struct Scene {
    class: usize,
    start: (f64, f64),
    speed: f64,
    size: f64,
    contrast: f64,
}

impl Scene {
    fn intensity(&self, x: f64, y: f64, t: f64) -> f64 {
        let bump = |d2: f64| self.contrast * (-d2 / (2.0 * self.size * self.size)).exp();
        match self.class {
            0..=7 => {
                let a = self.class as f64 * std::f64::consts::FRAC_PI_4;
                let (cx, cy) = (self.start.0 + self.speed * t * a.cos(), self.start.1 + self.speed * t * a.sin());
                bump((x - cx).powi(2) + (y - cy).powi(2))
            }
            8 | 9 => {
                // A bar through the centre at angle phi: distance of (x, y) from its line.
                let turn = if self.class == 8 { -1.0 } else { 1.0 };
                let phi = self.start.0 + turn * self.speed / 8.0 * t;
                let d = x * phi.sin() - y * phi.cos();
                bump(d * d)
            }
            _ => {
                let r = (x * x + y * y).sqrt();
                let radius = 2.0 + self.speed * t;
                bump((r - radius).powi(2))
            }
        }
    }
}

/// The events of one sample, time-ordered: (t µs, x, y, p).
fn record(scene: &Scene, size: usize, ms: f64, rng: &mut SplitMix) -> Vec<[f64; 4]> {
    let half = size as f64 / 2.0;
    let log = |v: f64| (0.1 + v).ln();
    let mut level: Vec<f64> = (0..size * size).map(|k| log(scene.intensity((k % size) as f64 + 0.5 - half, (k / size) as f64 + 0.5 - half, 0.0))).collect();
    let mut out = Vec::new();
    let ticks = (ms * 1e-3 / TICK).round() as usize;
    for tick in 1..=ticks {
        let t = tick as f64 * TICK;
        for (k, lv) in level.iter_mut().enumerate() {
            let (x, y) = (k % size, k / size);
            let now = log(scene.intensity(x as f64 + 0.5 - half, y as f64 + 0.5 - half, t));
            // As many events as thresholds crossed, spread over the tick.
            while (now - *lv).abs() >= THRESHOLD {
                let on = now > *lv;
                *lv += if on { THRESHOLD } else { -THRESHOLD };
                out.push([((t - TICK * rng.unit()) * 1e6).round(), x as f64, y as f64, f64::from(u8::from(on))]);
            }
            if rng.unit() < NOISE_HZ * TICK {
                out.push([((t - TICK * rng.unit()) * 1e6).round(), x as f64, y as f64, rng.below(2) as f64]);
            }
        }
    }
    out.sort_by(|a, b| a[0].total_cmp(&b[0]));
    out
}

fn scene(class: usize, size: usize, rng: &mut SplitMix) -> Scene {
    let half = size as f64 / 2.0;
    let jitter = |rng: &mut SplitMix, r: f64| (rng.unit() - 0.5) * 2.0 * r;
    let start = match class {
        // Moving blobs start opposite their direction, so that they cross the centre.
        0..=7 => {
            let a = class as f64 * std::f64::consts::FRAC_PI_4;
            (-0.45 * half * a.cos() + jitter(rng, 0.15 * half), -0.45 * half * a.sin() + jitter(rng, 0.15 * half))
        }
        8 | 9 => (rng.unit() * std::f64::consts::PI, 0.0),
        _ => (0.0, 0.0),
    };
    Scene { class, start, speed: half * (1.5 + 1.5 * rng.unit()), size: 1.0 + 1.5 * rng.unit(), contrast: 0.6 + 0.8 * rng.unit() }
}

/// `n` samples (classes in turn): their events concatenated, offsets, labels.
fn samples(n: usize, size: usize, ms: f64, rng: &mut SplitMix) -> ([Vec<f64>; 4], Vec<i64>, Vec<i64>) {
    let (mut cols, mut offsets, mut labels) = ([Vec::new(), Vec::new(), Vec::new(), Vec::new()], vec![0i64], Vec::new());
    for i in 0..n {
        let class = i % CLASSES;
        for e in record(&scene(class, size, rng), size, ms, rng) {
            for (c, v) in cols.iter_mut().zip(e) {
                c.push(v);
            }
        }
        offsets.push(cols[0].len() as i64);
        labels.push(class as i64);
    }
    (cols, offsets, labels)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        return Err("usage: make_events OUT.npz [TRAIN] [TEST] [SIZE] [MS] [SEED]".into());
    };
    let arg = |i: usize, default: f64| -> Result<f64, Box<dyn std::error::Error>> { Ok(args.get(i).map(|a| a.parse::<f64>()).transpose()?.unwrap_or(default)) };
    let (train, test, size, ms) = (arg(1, 440.0)? as usize, arg(2, 110.0)? as usize, arg(3, 32.0)? as usize, arg(4, 300.0)?);
    let mut rng = SplitMix(arg(5, 1.0)? as u64);
    let mut w = NpzWriter::new(std::io::BufWriter::new(std::fs::File::create(out)?));
    let mut events = 0;
    for (n, suffix) in [(train, ""), (test, "_test")] {
        let (cols, offsets, labels) = samples(n, size, ms, &mut rng);
        events += cols[0].len();
        let ints = |v: &[f64]| v.iter().map(|x| *x as i64).collect::<Array1<i64>>();
        w.add_array(format!("t{suffix}"), &ints(&cols[0]))?;
        w.add_array(format!("x{suffix}"), &cols[1].iter().map(|x| *x as i16).collect::<Array1<i16>>())?;
        w.add_array(format!("y{suffix}"), &cols[2].iter().map(|x| *x as i16).collect::<Array1<i16>>())?;
        w.add_array(format!("p{suffix}"), &cols[3].iter().map(|x| *x as i8).collect::<Array1<i8>>())?;
        w.add_array(format!("offsets{suffix}"), &Array1::from(offsets))?;
        w.add_array(format!("labels{suffix}"), &Array1::from(labels))?;
    }
    w.add_array("sensor_size", &Array1::from(vec![size as i64, size as i64, 2]))?;
    w.finish()?;
    eprintln!("{out}: {train} + {test} samples, {CLASSES} classes, {size} x {size} x 2, {ms} ms, {events} events");
    Ok(())
}
