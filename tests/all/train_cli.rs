//! `snnc train`: settings from the `train { }` block, CSV log, atomic checkpoints, resume.
use std::process::Command;

fn snnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn train(args: &[&str]) -> std::process::Output {
    snnc(&[&["train"][..], args].concat())
}

/// Test data's stream of uniform numbers in [0, 1) (an LCG: reproducible, not a model's draws).
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn trains_logs_checkpoints_and_resumes() {
    let dir = std::env::temp_dir().join(format!("snnc-train-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let o = train(&["tests/data/tiny_evidence.snn", "--delay", "50ms", "--batch", "4", "--batches", "2", "--epochs", "1", "--out", out, "--plot"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("ES-D-RTRL (decay 0.99)"), "the method comes from the train block: {stdout}");
    assert!(stdout.contains("epoch 0: loss"), "{stdout}");
    assert!(stdout.contains("test accuracy"), "{stdout}");
    // Header, two training batches, one held-out evaluation.
    let log = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    assert_eq!(log.lines().next(), Some("epoch,batch,split,loss,accuracy"));
    assert!(log.lines().last().unwrap().starts_with("0,,test,"), "{log}");
    let png = std::fs::read(dir.join("curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(dir.join("checkpoint.safetensors").exists());
    // Resume: epochs continue from the checkpoint's count, the log is appended.
    let ck = dir.join("checkpoint.safetensors");
    let o = train(&["tests/data/tiny_evidence.snn", "--delay", "50ms", "--batch", "4", "--batches", "1", "--epochs", "1", "--out", out, "--resume", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("epoch 1: loss"));
    assert_eq!(std::fs::read_to_string(dir.join("log.csv")).unwrap().lines().count(), 6);
    // The checkpoint serves `snnc eval` (held-out trials) and `snnc run --weights`.
    let ck_s = ck.to_str().unwrap();
    let o = snnc(&["eval", "tests/data/tiny_evidence.snn", "--weights", ck_s, "--delay", "50ms", "--batch", "4", "--test-batches", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev = String::from_utf8_lossy(&o.stdout);
    assert!(ev.contains("held-out (8 trials): loss") && ev.contains("accuracy"), "{ev}");
    let o = snnc(&["run", "tests/data/tiny_evidence.snn", "--weights", ck_s, "--duration", "20ms"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = snnc(&["run", "tests/data/tiny_npz.snn", "--weights", ck_s, "--duration", "20ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be"), "wrong shapes: {}", String::from_utf8_lossy(&o.stderr));
    // A broken checkpoint is a clear error.
    std::fs::write(dir.join("bad.safetensors"), b"garbage").unwrap();
    let o = train(&["tests/data/tiny_evidence.snn", "--resume", dir.join("bad.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read checkpoint"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `--task npz:FILE`: a dataset written here (class 0: inputs 0 and 1 fire, class 1:
/// inputs 2 and 3) is learnt; the held-out tenth is evaluated every epoch.
#[test]
fn learns_a_dataset_from_an_npz_file() {
    let dir = std::env::temp_dir().join(format!("snnc-train-npz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("pairs.npz");
    let (n, steps) = (80, 20);
    let mut draw = uniform(12345);
    let mut bernoulli = |p: f64| draw() < p;
    let labels = ndarray::Array1::from_shape_fn(n, |s| (s % 2) as i64);
    let x = ndarray::Array3::from_shape_fn((n, steps, 4), |(s, _, i)| {
        let on = (i / 2) as i64 == labels[s];
        f32::from(u8::from(bernoulli(if on { 0.5 } else { 0.05 })))
    });
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&data).unwrap());
    w.add_array("x", &x).unwrap();
    w.add_array("labels", &labels).unwrap();
    w.finish().unwrap();
    let task = format!("npz:{}", data.display());
    let out = dir.join("run");
    let o = train(&["tests/data/tiny_npz.snn", "--task", &task, "--epochs", "6", "--batches", "9", "--test-batches", "1", "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let last_test: f64 = log.lines().filter(|l| l.contains(",test,")).last().unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert!(last_test >= 0.875, "held-out accuracy {last_test} after 6 epochs\n{stdout}");
    // A train block names its dataset relative to its own .snn file (as `from "FILE"`
    // does), whatever the working directory.
    let text = std::fs::read_to_string("tests/data/tiny_npz.snn").unwrap().replace("batch = 8 }", "batch = 8, task = \"npz:pairs.npz\" }");
    std::fs::write(dir.join("block.snn"), text).unwrap();
    let o = train(&[dir.join("block.snn").to_str().unwrap(), "--epochs", "1", "--batches", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Truly online: an update every 5 steps; BPTT cannot do that.
    let o = train(&["tests/data/tiny_npz.snn", "--task", &task, "--epochs", "1", "--batches", "2", "--update-every", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = train(&["tests/data/tiny_npz.snn", "--task", &task, "--epochs", "1", "--batches", "1", "--update-every", "5", "--method", "bptt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("need an online method"), "{}", String::from_utf8_lossy(&o.stderr));
    // A label outside the readout's range is an error naming the array.
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&data).unwrap());
    w.add_array("x", &x).unwrap();
    w.add_array("labels", &labels.mapv(|l| l + 1)).unwrap();
    w.finish().unwrap();
    let o = train(&["tests/data/tiny_npz.snn", "--task", &task, "--epochs", "1", "--batches", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`labels`[1] = 2"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// `--task shd:FILE`: a file of the Spiking Heidelberg Digits format (variable-length
/// spike times and units, labels) written here: class c fires on channels 8c..8c+7, with
/// a few noise spikes anywhere. ES-D-RTRL learns it above chance; the held-out set is the
/// file's last tenth, or a second file.
#[test]
fn learns_a_dataset_from_an_shd_file() {
    use snnc_runtime::train::shd::write_shd;
    let dir = std::env::temp_dir().join(format!("snnc-train-shd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut uniform = uniform(99);
    let (mut times, mut units, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..60u16 {
        let class = s % 3;
        let mut spikes: Vec<(f32, u16)> = (0..30).map(|_| ((uniform() * 0.04) as f32, 8 * class + (uniform() * 8.0) as u16)).collect();
        spikes.extend((0..6).map(|_| ((uniform() * 0.04) as f32, (uniform() * 24.0) as u16)));
        spikes.sort_by(|a, b| a.0.total_cmp(&b.0));
        times.push(spikes.iter().map(|p| p.0).collect::<Vec<f32>>());
        units.push(spikes.iter().map(|p| p.1).collect::<Vec<u16>>());
        labels.push(class);
    }
    let data = dir.join("shd_train.h5");
    write_shd(&data, &times, &units, &labels).unwrap();
    let task = format!("shd:{}", data.display());
    let out = dir.join("run");
    let args = ["tests/data/tiny_shd.snn", "--task", &task, "--max-time", "40ms", "--test-batches", "1"];
    let o = train(&[&args[..], &["--epochs", "4", "--batches", "9", "--out", out.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("(SHD; last tenth held out)"), "{stdout}");
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let last_test: f64 = log.lines().filter(|l| l.contains(",test,")).last().unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert!(last_test >= 0.8, "held-out accuracy {last_test} after 4 epochs (chance 1/3)\n{stdout}");
    // A separate held-out file, and `snnc eval` on it.
    let test = dir.join("shd_test.h5");
    write_shd(&test, &times[..12], &units[..12], &labels[..12]).unwrap();
    let both = format!("shd:{},{}", data.display(), test.display());
    let ck = out.join("checkpoint.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["eval", "tests/data/tiny_shd.snn", "--task", &both, "--max-time", "40ms", "--weights", ck.to_str().unwrap(), "--test-batches", "2"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let ev = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{ev}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(ev.contains("held-out (12 trials): loss"), "{ev}");
    // The network's input size bounds the channels; a missing file is named.
    let two = dir.join("two_classes.h5");
    write_shd(&two, &times, &units, &labels.iter().map(|l| l % 2).collect::<Vec<u16>>()).unwrap();
    let two = format!("shd:{}", two.display());
    let o = train(&["tests/data/tiny_npz.snn", "--task", &two, "--max-time", "40ms", "--epochs", "1", "--batches", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is out of range: the network's input has 4 channels (0 to 3)"), "{err}");
    let o = train(&["tests/data/tiny_shd.snn", "--task", "shd:no/such.h5", "--epochs", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open `no/such.h5`"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// `--task events:FILE`: event-camera recordings `(t, x, y, p)` as tonic keeps them,
/// written here on a 4 x 3 sensor of 2 polarities (24 channels, as `tiny_shd.snn`'s
/// input): class c fires on the channels 8c..8c+7 (decoded to (p, y, x)), each sample at
/// its own start time. ES-D-RTRL learns it above chance on the last tenth; a sensor that
/// does not fit the input is refused.
#[test]
fn learns_event_camera_recordings() {
    use ndarray::Array1;
    use ndarray_npy::NpzWriter;
    let dir = std::env::temp_dir().join(format!("snnc-train-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut uniform = uniform(7);
    let (mut t, mut x, mut y, mut p, mut offsets, mut labels) = (vec![], vec![], vec![], vec![], vec![0i64], vec![]);
    for s in 0..60i64 {
        let class = s % 3;
        let mut events: Vec<(i64, i64)> = (0..30).map(|_| ((uniform() * 40e3) as i64, 8 * class + (uniform() * 8.0) as i64)).collect();
        events.extend((0..6).map(|_| ((uniform() * 40e3) as i64, (uniform() * 24.0) as i64)));
        events.sort();
        for (time, unit) in events {
            t.push(1_000_000 * s + time);
            p.push(unit / 12);
            y.push(unit % 12 / 4);
            x.push(unit % 4);
        }
        offsets.push(t.len() as i64);
        labels.push(class);
    }
    let write = |path: &std::path::Path, sensor: [i64; 3]| {
        let mut npz = NpzWriter::new(std::fs::File::create(path).unwrap());
        for (name, v) in [("t", &t), ("x", &x), ("y", &y), ("p", &p), ("offsets", &offsets), ("labels", &labels)] {
            npz.add_array(name, &Array1::from(v.clone())).unwrap();
        }
        npz.add_array("sensor_size", &Array1::from(sensor.to_vec())).unwrap();
        npz.finish().unwrap();
    };
    let data = dir.join("events.npz");
    write(&data, [4, 3, 2]);
    let task = format!("events:{}", data.display());
    let out = dir.join("run");
    let o = train(&["tests/data/tiny_shd.snn", "--task", &task, "--max-time", "40ms", "--test-batches", "1", "--epochs", "4", "--batches", "9", "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("(events)"), "{stdout}");
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let last_test: f64 = log.lines().filter(|l| l.contains(",test,")).last().unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert!(last_test >= 0.8, "held-out accuracy {last_test} after 4 epochs (chance 1/3)\n{stdout}");
    let wide = dir.join("wide.npz");
    write(&wide, [5, 3, 2]);
    let o = train(&["tests/data/tiny_shd.snn", "--task", &format!("events:{}", wide.display()), "--max-time", "40ms", "--epochs", "1", "--batches", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the sensor has 2 x 3 x 5 = 30 channels (polarity, y, x) but the network's input has 24 neurons"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `--task digits`: the built-in scikit-learn digits (no file, no download) through
/// `examples/digits_conv.snn`'s convolution and pooling, trained with ES-D-RTRL for a few
/// batches: above chance on the held-out fifth; the checkpoint holds the kernel (8 x 9)
/// and serves `snnc eval`; latency coding runs too.
#[test]
fn learns_the_built_in_digits_with_a_conv_network() {
    let dir = std::env::temp_dir().join(format!("snnc-train-digits-{}", std::process::id()));
    let out = dir.join("run");
    let args = ["examples/digits_conv.snn", "--batch", "16", "--lr", "0.01", "--test-batches", "4", "--seed", "3"];
    let o = train(&[&args[..], &["--epochs", "2", "--batches", "12", "--out", out.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("the scikit-learn digits (8x8; a fifth held out)"), "{stdout}");
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let last_test: f64 = log.lines().filter(|l| l.contains(",test,")).last().unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert!(last_test >= MIN_DIGITS_ACCURACY, "held-out accuracy {last_test} after 24 batches (chance 0.1)\n{stdout}");
    let ck = out.join("checkpoint.safetensors");
    let (weights, _) = snnc_runtime::train::load_checkpoint(&ck).unwrap();
    let k1 = &weights.iter().find(|(n, _)| n == "K1").expect("the kernel is checkpointed").1;
    assert_eq!(k1.dim(), (8, 9));
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["eval", "examples/digits_conv.snn", "--weights", ck.to_str().unwrap(), "--batch", "16", "--test-batches", "2"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("held-out (32 trials)"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = train(&[&args[..], &["--epochs", "1", "--batches", "1", "--coding", "latency", "--steps", "10"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = train(&[&args[..], &["--epochs", "1", "--batches", "1", "--coding", "phase"]].concat());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unknown coding `phase` (rate, latency)"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

// Chance is 0.1; this many batches reach about 0.5 (the example's 900 batches: 0.95).
const MIN_DIGITS_ACCURACY: f64 = 0.35;

/// `trainable bounds (lo, hi)` and `weight_decay` from the network's text and train block:
/// a start outside the bounds is refused; trained and resumed weights stay inside (some
/// at a bound); a checkpoint outside them is refused on resume; weight decay (ignored
/// before 2026-12-05) shrinks the trained weights against the same run without it.
#[test]
fn bounds_and_weight_decay_hold_through_checkpoints_and_resume() {
    use snnc_runtime::train::{load_checkpoint, save_checkpoint};
    let dir = std::env::temp_dir().join(format!("snnc-train-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = std::fs::read_to_string("tests/data/tiny_evidence.snn").unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let run = |file: &str, extra: &[&str]| {
        let mut a = vec![file, "--delay", "50ms", "--batch", "4", "--batches", "2", "--epochs", "1"];
        a.extend_from_slice(extra);
        train(&a)
    };
    // The drawn normal(0, 0.2) leaves [-0.05, 0.05]: refused, naming the tensor.
    let drawn = write("drawn.snn", tiny.replace("trainable no_self as W_rec", "trainable bounds (-0.05, 0.05) no_self as W_rec"));
    let o = run(&drawn, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`W_rec` starts outside its bounds"), "{}", String::from_utf8_lossy(&o.stderr));
    // Inside: a large learning rate pushes W_rec to its bounds, where it stays.
    let bounded = write(
        "bounded.snn",
        tiny.replace("init normal(0, 0.2) trainable no_self as W_rec", "init U(-0.05, 0.05) trainable bounds (-0.05, 0.05) no_self as W_rec").replace("lr = 1e-2", "lr = 0.5"),
    );
    let out = dir.join("run");
    let ck = out.join("checkpoint.safetensors");
    let w_rec = |ck: &std::path::Path| load_checkpoint(ck).unwrap().0.into_iter().find(|(n, _)| n == "W_rec").unwrap().1;
    let inside = |w: &ndarray::Array2<f64>| w.iter().all(|v| (-0.05..=0.05).contains(v)) && w.iter().any(|v| v.abs() == 0.05);
    let o = run(&bounded, &["--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(inside(&w_rec(&ck)), "{:?}", w_rec(&ck));
    let o = run(&bounded, &["--out", out.to_str().unwrap(), "--resume", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(inside(&w_rec(&ck)), "after resuming: {:?}", w_rec(&ck));
    // A checkpoint outside the bounds (trained without them) is refused on resume.
    let (mut w, _) = load_checkpoint(&ck).unwrap();
    w.iter_mut().find(|(n, _)| n == "W_rec").unwrap().1[[0, 1]] = 0.3;
    let bad = dir.join("outside.safetensors");
    save_checkpoint(&bad, &w, &[("epoch", "1".into())]).unwrap();
    let o = run(&bounded, &["--resume", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`W_rec` starts outside its bounds: [0, 1] is 0.3"), "{}", String::from_utf8_lossy(&o.stderr));
    // Weight decay from the train block: the same run with and without it.
    let norm = |ck: &std::path::Path| load_checkpoint(ck).unwrap().0.iter().map(|(_, w)| w.iter().map(|v| v * v).sum::<f64>()).sum::<f64>();
    let plain = write("plain.snn", tiny.clone());
    let decayed = write("decayed.snn", tiny.replace("lr = 1e-2", "lr = 1e-2, weight_decay = 10"));
    let (a, b) = (dir.join("plain"), dir.join("decayed"));
    for (file, to) in [(&plain, &a), (&decayed, &b)] {
        let o = run(file, &["--out", to.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (na, nb) = (norm(&a.join("checkpoint.safetensors")), norm(&b.join("checkpoint.safetensors")));
    // Two steps of (1 - lr wd) = 0.9 each: about 0.66 of the squared norm.
    assert!(nb < 0.8 * na, "weight decay did not shrink the weights: {nb} vs {na}");
    let o = run(&decayed, &["--weight-decay", "-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`--weight-decay`: the weight decay must be a finite number >= 0"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// A run stopped after its first epoch and resumed from the checkpoint ends with the
/// weights and log of the uninterrupted run, bit for bit: the checkpoint keeps Adam's
/// moments and step count, and the resumed run draws the batches that come next.
#[test]
fn a_resumed_run_equals_the_uninterrupted_one() {
    let dir = std::env::temp_dir().join(format!("snnc-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (whole, parts) = (dir.join("whole"), dir.join("parts"));
    let run = |out: &std::path::Path, extra: &[&str]| {
        let args = [&["tests/data/tiny_evidence.snn", "--delay", "50ms", "--batch", "4", "--batches", "3", "--out", out.to_str().unwrap()][..], extra].concat();
        let o = train(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    run(&whole, &["--epochs", "2"]);
    run(&parts, &["--epochs", "1"]);
    let ck = parts.join("checkpoint.safetensors");
    let (_, moments, meta) = snnc_runtime::train::load_checkpoint_and_optimizer(&ck).unwrap();
    assert_eq!((meta["optimizer"].as_str(), meta["optimizer_steps"].as_str(), meta["batches_drawn"].as_str()), ("Adam", "3", "3"));
    assert_eq!(moments.len(), 2 * 3, "m and v of W_in, W_rec, W_out");
    let o = run(&parts, &["--epochs", "1", "--resume", ck.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("note:"), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |d: &std::path::Path| snnc_runtime::train::load_checkpoint_and_optimizer(&d.join("checkpoint.safetensors")).unwrap();
    let (a, b) = (read(&whole), read(&parts));
    assert_eq!(a.0, b.0, "weights");
    assert_eq!(a.1, b.1, "Adam's moments");
    let log = |d: &std::path::Path| std::fs::read_to_string(d.join("log.csv")).unwrap();
    assert_eq!(log(&whole), log(&parts));
    // Without the optimiser state (as older checkpoints) the resumed run says so, and
    // differs: the test above would see a resume that ignored it.
    let (w, _, meta) = snnc_runtime::train::load_checkpoint_and_optimizer(&ck).unwrap();
    let old = dir.join("old.safetensors");
    snnc_runtime::train::save_checkpoint(&old, &w, &[("epoch", meta["epoch"].clone())]).unwrap();
    let o = run(&dir.join("from_old"), &["--epochs", "1", "--resume", old.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds no optimiser state") && err.contains("start again from the first batch"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A network with `batch_norm`: its checkpoint holds gamma and beta with the weights and
/// the running statistics as `state/...` (moved by training, not by the optimiser);
/// `snnc eval` and `snnc run --weights` read them (a checkpoint without them is refused
/// by name); a resumed run equals the uninterrupted one; the online methods are refused.
#[test]
fn batch_norm_checkpoints_its_running_statistics_and_resumes() {
    let dir = std::env::temp_dir().join(format!("snnc-train-bn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (whole, parts) = (dir.join("whole"), dir.join("parts"));
    let file = "tests/data/tiny_batchnorm.snn";
    let run = |out: &std::path::Path, extra: &[&str]| {
        let args = [&[file, "--delay", "50ms", "--batch", "4", "--batches", "2", "--out", out.to_str().unwrap()][..], extra].concat();
        let o = train(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    run(&whole, &["--epochs", "2"]);
    run(&parts, &["--epochs", "1"]);
    let ck = parts.join("checkpoint.safetensors");
    let (w, moments, meta) = snnc_runtime::train::load_checkpoint_and_optimizer(&ck).unwrap();
    let get = |n: &str| w.iter().find(|(m, _)| m == n).unwrap_or_else(|| panic!("no `{n}` in the checkpoint")).1.clone();
    let (mean, var) = (get("state/W_in.running_mean"), get("state/W_in.running_var"));
    assert_eq!(mean.dim(), (1, 12));
    assert!(mean.iter().any(|v| v.abs() > 1e-6) && var.iter().any(|v| (v - 1.0).abs() > 1e-6), "running statistics not moved: {mean} {var}");
    assert!(get("W_in.gamma").iter().any(|v| (v - 1.0).abs() > 1e-6), "gamma not trained");
    assert!(!moments.iter().any(|(n, _)| n.contains("state/")), "the optimiser has moments of the running statistics");
    assert_eq!(meta["optimizer_steps"], "2");
    let o = run(&parts, &["--epochs", "1", "--resume", ck.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("note:"), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |d: &std::path::Path| snnc_runtime::train::load_checkpoint_and_optimizer(&d.join("checkpoint.safetensors")).unwrap();
    let (a, b) = (read(&whole), read(&parts));
    assert_eq!(a.0, b.0, "weights and running statistics");
    assert_eq!(a.1, b.1, "Adam's moments");
    let log = |d: &std::path::Path| std::fs::read_to_string(d.join("log.csv")).unwrap();
    assert_eq!(log(&whole), log(&parts));
    // `snnc eval` normalises with the checkpoint's running statistics: others (the
    // initial ones) give another held-out loss.
    let eval = |ck: &std::path::Path| {
        let o = snnc(&["eval", file, "--weights", ck.to_str().unwrap(), "--delay", "50ms", "--batch", "4", "--test-batches", "1"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        out.lines().find(|l| l.contains("held-out")).unwrap_or_else(|| panic!("{out}")).to_string()
    };
    let reset = dir.join("reset.safetensors");
    let w2: Vec<_> = w.iter().map(|(n, a)| (n.clone(), if n.ends_with("running_mean") { a.mapv(|_| 0.0) } else if n.ends_with("running_var") { a.mapv(|_| 1.0) } else { a.clone() })).collect();
    snnc_runtime::train::save_checkpoint(&reset, &w2, &[]).unwrap();
    assert_ne!(eval(&ck), eval(&reset), "`snnc eval` ignores the running statistics");
    // Without them: refused by `snnc eval` (without --init-missing) and `snnc run`.
    let lacking = dir.join("lacking.safetensors");
    let w3: Vec<_> = w.iter().filter(|(n, _)| !n.starts_with("state/")).cloned().collect();
    snnc_runtime::train::save_checkpoint(&lacking, &w3, &[]).unwrap();
    let o = snnc(&["eval", file, "--weights", lacking.to_str().unwrap(), "--delay", "50ms", "--batch", "4", "--test-batches", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("lacks `state/W_in.running_mean`"), "{err}");
    let o = snnc(&["run", file, "--weights", lacking.to_str().unwrap(), "--duration", "20ms"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("running statistics of the network's `batch_norm`"), "{err}");
    let o = snnc(&["run", file, "--weights", ck.to_str().unwrap(), "--duration", "20ms"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for method in ["d-rtrl", "es-d-rtrl"] {
        let o = train(&[file, "--delay", "50ms", "--batch", "4", "--batches", "1", "--epochs", "1", "--method", method]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("`W_in` has `batch_norm`") && err.contains("train it with bptt"), "{method}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
