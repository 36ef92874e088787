//! `snnc train`, `eval` and `grad` given bad options, bad data, an existing or
//! interrupted run directory, or a full disk (issue #15 items 7-12, 15-17, 19): each is
//! refused at once naming the argument, file, array or tensor at fault, or reported as a
//! warning while training goes on; nothing already computed is lost.
use ndarray::{Array1, Array2, Array3};
use snnc_runtime::train::{load_checkpoint, save_checkpoint};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn snnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A fresh temporary directory for one test.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snnc-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Fails with both streams unless `o` failed with an error containing `want`.
fn refused(o: &Output, want: &str) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "should be refused: {out}\n{err}");
    assert!(err.contains(want), "the error should say `{want}`:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.contains("epoch 0:"), "refused after training started: {out}");
}

const TINY: &str = "tests/data/tiny_evidence.snn";
/// A quick evidence run of the tiny network.
const QUICK: [&str; 8] = ["--delay", "50ms", "--batch", "4", "--batches", "2", "--epochs", "1"];

/// `snnc train` of the tiny network with QUICK's settings, except those `extra` gives.
fn train(extra: &[&str]) -> Output {
    let quick: Vec<&str> = QUICK.chunks(2).filter(|kv| !extra.contains(&kv[0])).flatten().copied().collect();
    snnc(&[&["train", TINY][..], &quick, extra].concat())
}

/// `x` (n, steps, 4) with labels (class s % 2) in an archive, and optionally `x_test`.
fn write_npz(path: &Path, n: usize, x_test: Option<Array3<f32>>, poison: Option<(usize, usize, usize, f32)>) {
    let mut x = Array3::from_shape_fn((n, 10, 4), |(s, t, i)| f32::from(u8::from((s + t + i) % 3 == 0)));
    if let Some((s, t, i, v)) = poison {
        x[[s, t, i]] = v;
    }
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(path).unwrap());
    w.add_array("x", &x).unwrap();
    w.add_array("labels", &Array1::from_shape_fn(n, |s| (s % 2) as i64)).unwrap();
    if let Some(xt) = x_test {
        let m = xt.shape()[0];
        w.add_array("x_test", &xt).unwrap();
        w.add_array("labels_test", &Array1::from_shape_fn(m, |s| (s % 2) as i64)).unwrap();
    }
    w.finish().unwrap();
}

/// Item 15: every training option out of its range is refused, naming it; a batch that
/// cannot fit in memory is refused with the bytes needed and available.
#[test]
fn options_out_of_range_are_refused_by_name() {
    for (args, want) in [
        (&["--lr", "-1"][..], "`--lr`: the learning rate must be a positive number, got -1"),
        (&["--lr", "0"], "`--lr`: the learning rate must be a positive number, got 0"),
        (&["--lr", "NaN"], "`--lr`: the learning rate must be a positive number, got NaN"),
        (&["--lr", "inf"], "`--lr`"),
        (&["--etrace-decay", "2"], "`--etrace-decay`: the trace decay must be between 0 and 1"),
        (&["--etrace-decay", "-3"], "`--etrace-decay`"),
        (&["--grad-clip", "-1"], "`--grad-clip`: the gradient-norm clip must be a positive number"),
        (&["--batch", "0"], "`--batch` must be a whole number of at least 1, got 0"),
        (&["--batches", "0"], "`--batches` (batches per epoch) must be at least 1"),
        (&["--epochs", "0"], "`--epochs` must be a whole number of at least 1"),
        (&["--update-every", "0"], "`--update-every`"),
        (&["--lr-decay", "-0.5"], "`--lr-decay`"),
    ] {
        refused(&train(args), want);
    }
    let o = train(&["--batch", "100000000"]);
    refused(&o, "`--batch` = 100000000 needs about");
    assert!(text(&o).1.contains("are available"), "{}", text(&o).1);
}

/// Item 15, the train block: a bad value there is named as the block's.
#[test]
fn train_block_values_are_checked() {
    let dir = tmp("block");
    let net = dir.join("bad_block.snn");
    let src = std::fs::read_to_string(TINY).unwrap().replace("lr = 1e-2", "lr = -1e-2, batch = 2.5").replace("import \"stdlib", &format!("import \"{}/stdlib", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&net, src).unwrap();
    let o = snnc(&["train", net.to_str().unwrap(), "--delay", "50ms"]);
    refused(&o, "`lr` in the train block of network `tiny`: the learning rate must be a positive number");
    let o = snnc(&["train", net.to_str().unwrap(), "--delay", "50ms", "--lr", "0.01"]);
    refused(&o, "`batch` in the train block of network `tiny` must be a whole number of at least 1, got 2.5");
    std::fs::remove_dir_all(&dir).ok();
}

/// The tiny network with its train block's `lr = 1e-2` followed by `extra`, in `dir`.
fn tiny_with_block(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let net = dir.join(format!("{name}.snn"));
    let src = std::fs::read_to_string(TINY).unwrap().replace("lr = 1e-2", &format!("lr = 1e-2, {extra}")).replace("import \"stdlib", &format!("import \"{}/stdlib", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&net, src).unwrap();
    net
}

/// A train block key the checker accepts but `snnc train` does not read is refused, not
/// ignored; `loss` must be the task's; `etrace_rank = r` trains as decay (r - 1) / (r + 1).
#[test]
fn train_block_keys_are_read_or_refused() {
    let dir = tmp("keys");
    let quick = &QUICK[..];
    let run = |extra: &str, flags: &[&str]| {
        let net = tiny_with_block(&dir, "k", extra);
        snnc(&[&["train", net.to_str().unwrap()][..], quick, flags].concat())
    };
    for (extra, want) in [
        ("seq_len = 100", "`seq_len` in the train block of network `tiny` is not read by `snnc train`"),
        ("eval_every = 2", "`eval_every` in the train block"),
        ("loss_steps = 10", "`loss_steps` in the train block"),
        ("data = \"x.npz\"", "`data` in the train block of network `tiny` is not read by `snnc train`: remove it; name a dataset"),
        ("loss = mse", "`loss = mse` in the train block of network `tiny`, but the task trains with `cross_entropy`"),
        ("loss = hinge", "unknown loss"),
        ("etrace_rank = 1", "`etrace_rank` in the train block of network `tiny`: the trace rank must be a number above 1"),
        ("etrace_rank = 9, etrace_decay = 0.8", "gives both `etrace_decay` and `etrace_rank`"),
    ] {
        refused(&run(extra, &[]), want);
    }
    // Read: the task's own loss, and a rank giving the same run as its decay.
    let ok = |o: &Output| {
        let (out, err) = text(o);
        assert!(o.status.success(), "{out}\n{err}");
        out.lines().filter(|l| l.contains("loss")).map(String::from).collect::<Vec<_>>()
    };
    let by_rank = ok(&run("loss = cross_entropy, etrace_rank = 9", &[]));
    let by_decay = ok(&run("etrace_decay = 0.8", &[]));
    let other = ok(&run("etrace_decay = 0.5", &[]));
    assert!(!by_rank.is_empty());
    assert_eq!(by_rank, by_decay, "etrace_rank = 9 should train as etrace_decay = 0.8");
    assert_ne!(by_rank, other, "the decay should change the run (else this test shows nothing)");
    // The flag overrides the block's rank.
    assert_eq!(ok(&run("etrace_rank = 9", &["--etrace-decay", "0.5"])), other);
    std::fs::remove_dir_all(&dir).ok();
}

/// Items 8, 17 and 19: a new run into an existing run directory is refused (its log is
/// kept); `--overwrite` replaces it. A resumed run after `kill -9` cuts the log back to
/// the checkpoint (no repeated rows), removes a partial checkpoint left behind, and says
/// what it wrote.
#[test]
fn run_directories_are_kept_and_resumed_cleanly() {
    let dir = tmp("rundir");
    let out = dir.join("run");
    let o = train(&["--out", out.to_str().unwrap(), "--plot"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("with ES-D-RTRL (decay 0.99), Adam lr 0.01, batch 4"), "the banner: {stdout}");
    assert!(stdout.contains(&format!("wrote {}", out.join("log.csv").display())) && stdout.contains("checkpoint.safetensors (after epoch 1)"), "{stdout}");
    assert!(stderr.contains("epoch 0 done (1 of 1)") && stderr.contains("left"), "progress on stderr: {stderr}");
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    // A new run into it: refused, and the log is untouched.
    let o = train(&["--out", out.to_str().unwrap()]);
    refused(&o, "already holds a training run (log.csv, checkpoint.safetensors, best.safetensors): continue it with `--resume");
    assert_eq!(std::fs::read_to_string(out.join("log.csv")).unwrap(), log);
    // What `kill -9` during epoch 1 leaves: rows of epoch 1 after the checkpoint of
    // epoch 1, one of them cut short, and a partial temporary checkpoint.
    std::fs::write(out.join("log.csv"), format!("{log}1,0,train,0.700000,0.5000\n1,1,train,0.6")).unwrap();
    std::fs::write(out.join("checkpoint.safetensors.tmp"), b"partial").unwrap();
    let ck = out.join("checkpoint.safetensors");
    let o = train(&["--out", out.to_str().unwrap(), "--resume", ck.to_str().unwrap(), "--plot"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("epoch 1: loss"), "{stdout}");
    assert!(stderr.contains("dropped 2 rows written after the checkpoint"), "{stderr}");
    assert!(!out.join("checkpoint.safetensors.tmp").exists(), "the stale temporary checkpoint is removed");
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let rows: Vec<&str> = log.lines().collect();
    assert_eq!(rows.len(), 7, "header, epoch 0 (2 + test), epoch 1 (2 + test): {log}");
    let keys: std::collections::HashSet<String> = rows.iter().map(|r| r.splitn(4, ',').take(3).collect::<Vec<_>>().join(",")).collect();
    assert_eq!(keys.len(), rows.len(), "no repeated (epoch, batch, split): {log}");
    assert_eq!(load_checkpoint(&ck).unwrap().1["epoch"], "2");
    // --overwrite starts afresh.
    let o = train(&["--out", out.to_str().unwrap(), "--overwrite"]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(std::fs::read_to_string(out.join("log.csv")).unwrap().lines().count(), 4);
    // Without --out, nothing is saved, and it says so.
    let (stdout, stderr) = text(&train(&[]));
    assert!(stderr.contains("no --out DIR: the trained weights will not be saved") && stdout.contains("nothing written"), "{stdout}\n{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `best.safetensors` holds the weights of the epoch with the lowest held-out loss (its
/// epoch and loss in the metadata); a resumed run keeps a best from before its checkpoint
/// and must beat it, and removes one written after it (by an interrupted run).
#[test]
fn the_best_held_out_epoch_is_kept() {
    let dir = tmp("best");
    let out = dir.join("run");
    let o = train(&["--out", out.to_str().unwrap(), "--epochs", "3"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let tests: Vec<f64> = std::fs::read_to_string(out.join("log.csv")).unwrap().lines().filter(|l| l.contains(",test,")).map(|l| l.split(',').nth(3).unwrap().parse().unwrap()).collect();
    assert_eq!(tests.len(), 3);
    let (at, low) = tests.iter().enumerate().fold((0, f64::INFINITY), |b, (i, &l)| if l < b.1 { (i, l) } else { b });
    let best = out.join("best.safetensors");
    let (weights, meta) = load_checkpoint(&best).unwrap();
    assert_eq!(meta["epoch"], (at + 1).to_string(), "{tests:?}");
    assert!((meta["test_loss"].parse::<f64>().unwrap() - low).abs() <= 1e-6 * low.abs().max(1.0), "{meta:?} against {tests:?}");
    assert!(stdout.contains(&format!("best.safetensors (after epoch {}: the lowest held-out loss", at + 1)), "{stdout}");
    if at == 2 {
        assert_eq!(weights, load_checkpoint(&out.join("checkpoint.safetensors")).unwrap().0, "the last epoch was the best");
    }
    // A best the resumed run cannot beat (loss 0, from epoch 1) is kept...
    let ck = out.join("checkpoint.safetensors");
    save_checkpoint(&best, &weights, &[("epoch", "1".into()), ("test_loss", "0".into())]).unwrap();
    let o = train(&["--out", out.to_str().unwrap(), "--resume", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(load_checkpoint(&best).unwrap().1["test_loss"], "0");
    // ...and one from after the checkpoint (epoch 9 of an interrupted run) is removed:
    // the resumed epoch is the new best.
    save_checkpoint(&best, &weights, &[("epoch", "9".into()), ("test_loss", "0".into())]).unwrap();
    let o = train(&["--out", out.to_str().unwrap(), "--resume", ck.to_str().unwrap()]);
    let (_, stderr) = text(&o);
    assert!(o.status.success() && stderr.contains("is not from the epochs before the checkpoint"), "{stderr}");
    let meta = load_checkpoint(&best).unwrap().1;
    assert_eq!(meta["epoch"], "5", "resumed at 4, one epoch: {meta:?}");
    assert!(meta["test_loss"].parse::<f64>().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).ok();
}

/// Item 17: a full disk under the plot is a warning (training goes on, the checkpoint is
/// written); under the log, it is refused before training.
#[cfg(unix)]
#[test]
fn a_full_disk_is_reported_and_training_goes_on() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = tmp("full");
    let out = dir.join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("curves.png")).unwrap();
    let o = train(&["--out", out.to_str().unwrap(), "--plot", "--epochs", "2"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("warning: cannot write") && stderr.contains("curves.png") && stderr.contains("training goes on"), "{stderr}");
    assert!(stdout.contains("epoch 1: loss"), "{stdout}");
    assert_eq!(load_checkpoint(&out.join("checkpoint.safetensors")).unwrap().1["epoch"], "2");
    // A log that cannot be written is refused before training (nothing is computed yet);
    // a write error later is reported once and fails the run at its end
    // (`rundir::tests::log_write_errors_are_reported_once`).
    std::fs::remove_file(out.join("log.csv")).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("log.csv")).unwrap();
    refused(&train(&["--out", out.to_str().unwrap(), "--overwrite"]), "No space left on device");
    std::fs::remove_dir_all(&dir).ok();
}

/// Item 7: a checkpoint lacking a trainable tensor is refused by `train --resume` and
/// `eval --weights`, naming it; `--init-missing` starts it from its initialiser, and the
/// next checkpoint has it.
#[test]
fn a_checkpoint_lacking_a_tensor_is_refused() {
    let dir = tmp("missing");
    let out = dir.join("run");
    assert!(train(&["--out", out.to_str().unwrap()]).status.success());
    let ck = out.join("checkpoint.safetensors");
    let (w, _) = load_checkpoint(&ck).unwrap();
    let partial = dir.join("partial.safetensors");
    let kept: Vec<(String, Array2<f64>)> = w.into_iter().filter(|(n, _)| n != "W_rec").collect();
    save_checkpoint(&partial, &kept, &[("epoch", "1".into())]).unwrap();
    let p = partial.to_str().unwrap();
    let o = train(&["--resume", p]);
    refused(&o, "lacks `W_rec` (trained by network `tiny`): give `--init-missing`");
    let o = snnc(&["eval", TINY, "--weights", p, "--delay", "50ms", "--batch", "4", "--test-batches", "1"]);
    refused(&o, "lacks `W_rec`");
    let out2 = dir.join("run2");
    let o = train(&["--resume", p, "--init-missing", "--out", out2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).1.contains("W_rec not in"), "{}", text(&o).1);
    let names: Vec<String> = load_checkpoint(&out2.join("checkpoint.safetensors")).unwrap().0.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["W_in", "W_out", "W_rec"]);
    let o = snnc(&["eval", TINY, "--weights", p, "--init-missing", "--delay", "50ms", "--batch", "4", "--test-batches", "1"]);
    assert!(o.status.success(), "{}", text(&o).1);
    // A tensor the network does not train is refused too.
    save_checkpoint(&partial, &[("W_x".into(), Array2::zeros((2, 2)))], &[]).unwrap();
    refused(&train(&["--resume", p]), "has `W_x`, which network `tiny` does not train");
    std::fs::remove_dir_all(&dir).ok();
}

/// Items 9 and 10: NaN or inf in data, a checkpoint or an input file is refused at load,
/// naming the file, the array and the first bad index (not a state gone NaN later).
#[test]
fn non_finite_data_is_refused_at_load() {
    let dir = tmp("nan");
    // grad: a NaN target.
    let data = dir.join("seq.npz");
    let mut target = Array3::<f64>::zeros((5, 2, 2));
    target[[3, 1, 0]] = f64::NAN;
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&data).unwrap());
    w.add_array("x", &Array3::<f64>::ones((5, 2, 40))).unwrap();
    w.add_array("target", &target).unwrap();
    w.finish().unwrap();
    let g = dir.join("g.npz");
    let o = snnc(&["grad", TINY, "--method", "bptt", "--data", data.to_str().unwrap(), "--out", g.to_str().unwrap()]);
    refused(&o, "array `target` has NaN at index [3, 1, 0]");
    assert!(!g.exists(), "no gradients written");
    // train: an inf in x.
    let npz = dir.join("d.npz");
    write_npz(&npz, 20, None, Some((7, 2, 1, f32::INFINITY)));
    let task = format!("npz:{}", npz.display());
    let o = snnc(&["train", "tests/data/tiny_npz.snn", "--task", &task, "--epochs", "1", "--batches", "1"]);
    refused(&o, &format!("`{}`: array `x` has inf at index [7, 2, 1]", npz.display()));
    // A checkpoint with a NaN weight.
    let ck = dir.join("nan.safetensors");
    let mut bad = Array2::<f64>::zeros((40, 12));
    bad[[4, 5]] = f64::NAN;
    save_checkpoint(&ck, &[("W_in".into(), bad)], &[]).unwrap();
    refused(&train(&["--resume", ck.to_str().unwrap()]), "array `W_in` has NaN at index [4, 5]");
    // run --input: a NaN in the .npy.
    let npy = dir.join("in.npy");
    let mut a = Array2::<f64>::zeros((10, 40));
    a[[2, 3]] = f64::NAN;
    ndarray_npy::write_npy(&npy, &a).unwrap();
    let o = snnc(&["run", TINY, "--duration", "10ms", "--input", &format!("x={}", npy.display())]);
    refused(&o, "has NaN at index [2, 3]");
    std::fs::remove_dir_all(&dir).ok();
}

/// Item 11: a held-out set of the wrong shape is refused before the first batch, in the
/// user's terms (the array and the network's input), not after an epoch.
#[test]
fn data_of_the_wrong_shape_is_refused_before_training() {
    let dir = tmp("shape");
    let npz = dir.join("d.npz");
    write_npz(&npz, 20, Some(Array3::zeros((6, 10, 9))), None);
    let task = format!("npz:{}", npz.display());
    let o = snnc(&["train", "tests/data/tiny_npz.snn", "--task", &task, "--epochs", "1", "--batches", "1"]);
    refused(&o, &format!("the held-out data (array `x_test` of `{}`) has 9 values per step; the network's input `x` has 4 neurons", npz.display()));
    // A generated task of the wrong size for the network.
    let o = snnc(&["train", "tests/data/tiny_npz.snn", "--task", "evidence", "--epochs", "1", "--batches", "1"]);
    refused(&o, "the training data of evidence accumulation has 40 values per step; the network's input `x` has 4 neurons");
    std::fs::remove_dir_all(&dir).ok();
}

/// Item 12: a held-out split is evaluated once, each sample once, whatever the batch;
/// the padding of a partial last batch counts nowhere.
#[test]
fn held_out_samples_are_evaluated_exactly_once() {
    let dir = tmp("heldout");
    let npz = dir.join("d.npz");
    let xt = Array3::from_shape_fn((6, 10, 4), |(s, t, i)| f32::from(u8::from((2 * s + t + i) % 3 == 0)));
    write_npz(&npz, 20, Some(xt), None);
    let task = format!("npz:{}", npz.display());
    let out = dir.join("run");
    let o = snnc(&["train", "tests/data/tiny_npz.snn", "--task", &task, "--epochs", "1", "--batches", "1", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.contains("(6 held-out trials)"), "{}", text(&o).0);
    let ck = out.join("checkpoint.safetensors");
    let eval = |batch: &str| {
        let o = snnc(&["eval", "tests/data/tiny_npz.snn", "--task", &task, "--weights", ck.to_str().unwrap(), "--batch", batch, "--f64"]);
        assert!(o.status.success(), "{}", text(&o).1);
        text(&o).0
    };
    // 8 > 6 (one padded batch), 4 (4 + 2 padded), 3 (two full batches): the same 6 trials.
    let (b8, b4, b3) = (eval("8"), eval("4"), eval("3"));
    assert!(b8.contains("held-out (6 trials)"), "{b8}");
    assert_eq!(b8, b3, "padding counted?");
    assert_eq!(b4, b3, "padding counted?");
    // --test-batches caps the batches, never repeats samples.
    let o = snnc(&["eval", "tests/data/tiny_npz.snn", "--task", &task, "--weights", ck.to_str().unwrap(), "--batch", "4", "--test-batches", "1"]);
    assert!(text(&o).0.contains("held-out (4 trials)"), "{}", text(&o).0);
    let o = snnc(&["eval", "tests/data/tiny_npz.snn", "--task", &task, "--weights", ck.to_str().unwrap(), "--batch", "4", "--test-batches", "9"]);
    assert!(text(&o).0.contains("held-out (6 trials)"), "{}", text(&o).0);
    std::fs::remove_dir_all(&dir).ok();
}

/// Item 16: a network in physical units (input weights of a few nS) trains at an
/// ordinary learning rate: the optimiser's steps are relative to the weights' scale.
/// Before, one Adam step moved a 3e-9 S weight by 1e-2 S and a derivative state went
/// infinite (reported by its internal name, `_deriv1`).
#[test]
fn a_network_in_si_units_trains_at_an_ordinary_learning_rate() {
    let o = snnc(&["train", "tests/data/si_units.snn", "--delay", "50ms", "--epochs", "2", "--batches", "3"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("scaled by the RMS of the initial values: W_in x 3.16"), "{stdout}");
    assert!(stdout.contains("epoch 1: loss"), "{stdout}");
    assert!(!stderr.contains("_deriv"), "{stderr}");
}

/// Sparse trained projections are checkpointed as their synapses' weights (1 x nnz,
/// with a fingerprint of the structure): a run resumes on the same structure and is
/// refused, naming the projection, on another one (another seed draws other synapses).
#[test]
fn sparse_checkpoints_resume_only_on_their_own_synapses() {
    const SPARSE: &str = "tests/data/tiny_sparse.snn";
    let dir = tmp("sparse");
    let out = dir.join("run");
    let run = |extra: &[&str]| snnc(&[&["train", SPARSE][..], &QUICK, extra].concat());
    let o = run(&["--out", out.to_str().unwrap(), "--seed", "3"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let ck = out.join("checkpoint.safetensors");
    let (w, meta) = load_checkpoint(&ck).unwrap();
    let w_rec = &w.iter().find(|(n, _)| n == "W_rec").unwrap().1;
    assert_eq!(w_rec.nrows(), 1, "one row of synapse weights");
    assert!(w_rec.ncols() > 0 && w_rec.ncols() < 12 * 11, "{:?}", w_rec.dim());
    assert!(meta.contains_key("structure.W_rec") && meta.contains_key("structure.W_in"), "{meta:?}");
    let p = ck.to_str().unwrap();
    let o = run(&["--resume", p, "--seed", "4", "--out", dir.join("other").to_str().unwrap()]);
    refused(&o, "`W_in` was trained on other synapses than network `tiny_sparse` has");
    let o = run(&["--resume", p, "--seed", "3", "--out", dir.join("same").to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).ok();
}
