//! Data-parallel training and partitioned simulation over MPI ranks (`--features mpi`;
//! needs `mpirun`, which `.ci/run` installs from Debian's Open MPI): two ranks train and
//! simulate as one process does, a checkpoint resumes under any rank count, what a
//! partitioned run cannot do is refused on every rank, and a killed or mismatched rank
//! ends the launch with an error instead of a hang. The GPU trainer's ranks run on the
//! emulated device (no GPU here), through the runtime: `snnc train` selects real GPUs
//! only.
use snnc_runtime::train::load_checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TINY: &str = "tests/data/tiny_evidence.snn";
const COBA: &str = "examples/coba.snn";
/// Three Adam steps of batch 4 in f64.
const RUN: [&str; 11] = ["--delay", "50ms", "--batch", "4", "--batches", "3", "--epochs", "1", "--f64", "--seed", "3"];

fn snnc() -> &'static str {
    env!("CARGO_BIN_EXE_snnc")
}

/// `mpirun -np K` as root on one machine, more ranks than cores allowed.
fn mpirun(k: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &k.to_string()])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snnc-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

/// Largest difference between the two checkpoints' tensors, relative to each tensor's
/// largest entry.
fn max_rel_diff(a: &Path, b: &Path) -> f64 {
    let (wa, _) = load_checkpoint(a).unwrap();
    let (wb, _) = load_checkpoint(b).unwrap();
    assert_eq!(wa.iter().map(|(n, _)| n).collect::<Vec<_>>(), wb.iter().map(|(n, _)| n).collect::<Vec<_>>());
    wa.iter()
        .zip(&wb)
        .map(|((_, x), (_, y))| {
            let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            (x - y).iter().fold(0.0f64, |m, v| m.max(v.abs())) / scale
        })
        .fold(0.0, f64::max)
}

#[test]
fn two_ranks_train_as_one_process() {
    let dir = tmp("equal");
    for (extra, what) in [(&[][..], "per batch"), (&["--update-every", "10"][..], "every 10 steps")] {
        let (one, two) = (dir.join(format!("one{}", extra.len())), dir.join(format!("two{}", extra.len())));
        let o = Command::new(snnc()).current_dir(env!("CARGO_MANIFEST_DIR")).args(["train", TINY]).args(RUN).args(extra).arg("--out").arg(&one).output().unwrap();
        ok(&o);
        let o = mpirun(2).args([snnc(), "train", TINY]).args(RUN).args(extra).arg("--out").arg(&two).output().unwrap();
        ok(&o);
        let d = max_rel_diff(&one.join("checkpoint.safetensors"), &two.join("checkpoint.safetensors"));
        assert!(d <= 1e-12, "updates {what}: 2 ranks differ from 1 process by {d:e}");
        // Rank 0 alone logs: the same rows (losses, accuracies) as the single process.
        let log = |d: &Path| std::fs::read_to_string(d.join("log.csv")).unwrap();
        assert_eq!(log(&one), log(&two), "updates {what}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(out.matches("epoch 0:").count(), 1, "one report, from rank 0:\n{out}");
    }
    // A checkpoint of one process resumes under two ranks.
    let ck = dir.join("one0").join("checkpoint.safetensors");
    let o = mpirun(2).args([snnc(), "train", TINY]).args(RUN).arg("--resume").arg(&ck).arg("--out").arg(dir.join("resumed")).output().unwrap();
    ok(&o);
    assert_eq!(load_checkpoint(&dir.join("resumed").join("checkpoint.safetensors")).unwrap().1["epoch"], "2");
    std::fs::remove_dir_all(&dir).ok();
}

/// Starts `launch` (an `mpirun -np 2` of a long run), kills its rank 1 once both run,
/// and checks that the launch ends, failing, within seconds.
fn a_killed_rank_ends(mut launch: Command) {
    let mut child = launch.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Rank 1 is a child of mpirun; kill it once the run runs.
    let start = Instant::now();
    let rank = loop {
        let o = Command::new("pgrep").args(["-P", &child.id().to_string(), "snnc"]).output().unwrap();
        let pids: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
        if pids.len() == 2 {
            break pids[1].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the ranks did not start");
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(Command::new("kill").args(["-9", &rank]).status().unwrap().success());
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "the launch still runs 20 s after a rank was killed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "a launch with a killed rank must fail");
}

#[test]
fn a_killed_rank_ends_the_launch_within_seconds() {
    let mut train = mpirun(2);
    train.args([snnc(), "train", TINY, "--delay", "50ms", "--batch", "4", "--batches", "100000", "--epochs", "1"]);
    a_killed_rank_ends(train);
    let mut sim = mpirun(2);
    sim.args([snnc(), "run", COBA, "--duration", "1000s", "--max-steps", "100000000"]);
    a_killed_rank_ends(sim);
}

#[test]
fn ranks_launched_differently_are_refused() {
    let o = mpirun(1)
        .args([snnc(), "train", TINY, "--delay", "50ms", "--batch", "4", "--batches", "1", "--epochs", "1", ":", "-np", "1"])
        .args([snnc(), "train", TINY, "--delay", "50ms", "--batch", "6", "--batches", "1", "--epochs", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the MPI ranks were not launched alike: ranks [1]"), "{err}");
    let o = mpirun(3).args([snnc(), "train", TINY, "--delay", "50ms", "--batch", "2", "--batches", "1", "--epochs", "1"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("a batch of 2 cannot be shared by 3 MPI ranks"));
}

#[test]
fn ranks_launched_with_other_commands_are_refused_by_a_run() {
    let o = mpirun(1).args([snnc(), "run", COBA, "--duration", "1ms", "--seed", "1", ":", "-np", "1", snnc(), "run", COBA, "--duration", "1ms", "--seed", "2"]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("the MPI ranks were not launched alike: ranks [1] have another command or model file").count(), 2, "{err}");
}

#[test]
fn two_ranks_simulate_as_one_process() {
    // COBA (4000 neurons), 1000 steps: the spikes and the membrane potentials recorded by
    // 2 ranks, each stepping half of every population, are the files one process writes.
    let dir = tmp("sim");
    let run = |out: &Path| -> Vec<String> {
        ["run", COBA, "--duration", "100ms", "--seed", "4", "--record", "spikes,v", "--out"].iter().map(|s| s.to_string()).chain([out.display().to_string()]).collect()
    };
    let (one, two) = (dir.join("one"), dir.join("two"));
    ok(&Command::new(snnc()).current_dir(env!("CARGO_MANIFEST_DIR")).args(run(&one)).output().unwrap());
    let o = mpirun(2).arg(snnc()).args(run(&two)).output().unwrap();
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("simulated 0.1000 s").count(), 1, "one report, from rank 0:\n{out}");
    assert!(out.contains("on each of 2 MPI ranks"), "{out}");
    for f in ["E.spikes.t.npy", "E.spikes.i.npy", "I.spikes.t.npy", "I.spikes.i.npy", "E.v.npy", "I.v.npy"] {
        let (a, b) = (std::fs::read(one.join(f)).unwrap(), std::fs::read(two.join(f)).unwrap());
        assert!(a.len() > 1000, "{f}: {} bytes", a.len());
        assert!(a == b, "{f} differs between 1 process and 2 ranks");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn what_a_partitioned_run_cannot_do_is_refused_on_every_rank() {
    let graded = tmp("graded").join("graded.snn");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/graded.snn")).unwrap();
    std::fs::write(&graded, format!("{text}\nnetwork g {{ layer a = GradedCell[10]\n layer b = GradedCell[10]\n drive a.I = 1.0\n connect a -> b.I dense }}\n")).unwrap();
    let graded = graded.display().to_string();
    for (cmd, refusal) in [
        (vec!["run", "examples/song2000.snn", "--duration", "10ms"], "E0702: projection `S` is plastic"),
        (vec!["run", COBA, "--duration", "1ms", "--backend", "cuda"], "E0702: --backend cuda"),
        (vec!["run", graded.as_str(), "--duration", "1ms"], "E0702: population `a` sends its `output y`"),
        (vec!["run", "examples/evidence.snn", "--duration", "1ms"], "E0702: projection `W_out` reads a state of `rec`"),
    ] {
        // Each runs in one process (on the CPU).
        if !cmd.contains(&"cuda") {
            ok(&Command::new(snnc()).current_dir(env!("CARGO_MANIFEST_DIR")).args(&cmd).output().unwrap());
        }
        let o = mpirun(2).arg(snnc()).args(&cmd).output().unwrap();
        assert!(!o.status.success(), "{cmd:?} was not refused");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.matches(refusal).count(), 2, "{cmd:?}: the refusal on each rank:\n{err}");
    }
}

/// The recurrent network of the GPU ranks' test: white noise (drawn by each element's
/// index in the whole batch), a leaky readout.
const NOISY: &str = include_str!("../../runtime/tests/data/noisy_ranks.snn");

/// Three Adam steps (batch 4, f64, ES-D-RTRL with updates every 10 steps) of the GPU
/// engine on the emulated device: the whole batch on one device, or this rank's share
/// of it on a device of its own with the gradients summed over `ranks`. The weights and
/// the batches' losses.
#[allow(clippy::type_complexity)]
fn gpu_training(ranks: Option<&dyn snnc_runtime::partition::Exchange>) -> (Vec<(String, ndarray::Array2<f64>)>, Vec<f64>) {
    use snnc_runtime::compiler::backend::ptx::Target;
    use snnc_runtime::engine::{Engine, Trainer};
    use snnc_runtime::gpu::{EmuDevice, GpuGradient, GpuNetwork};
    use snnc_runtime::kernels::InterpFactory;
    use snnc_runtime::learn::Method;
    use snnc_runtime::network::{Network, Options};
    use snnc_runtime::train::ranks::{RankTrainer, share_of};
    use snnc_runtime::train::tasks::RandomSpikes;
    use snnc_runtime::train::{Optimizer, OptimizerKind, train_batch, weights_of};
    let mut sources = snnc_runtime::compiler::SourceMap::new();
    let (p, d) = snnc_runtime::compiler::sema::check_source("noisy.snn", NOISY, &mut sources);
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_runtime::compiler::diag::render_all(&d, &sources));
    let batch = 4;
    let share = ranks.map_or(batch, |r| share_of(batch, r.rank(), r.size()).unwrap().1);
    let trainable = ["W_in", "W_rec", "W_out"].map(String::from);
    let method = Method::EsDRtrl { decay: 0.9 };
    let host = Network::<f64>::build(&p, &p.networks[0], &Options { batch: share, seed: 4, learning: true, ..Options::default() }, &InterpFactory).unwrap();
    let mut w = weights_of(&host, &trainable);
    let mut net = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let learner = GpuGradient::new(&mut net, &trainable, method).unwrap();
    let engine = Engine { net, learner };
    let mut trainer: Box<dyn Trainer<f64> + '_> = match ranks {
        Some(r) => Box::new(RankTrainer::new(engine, r)),
        None => Box::new(engine),
    };
    let mut opt = Optimizer::new(OptimizerKind::Adam, 0.05, None);
    let losses = (0..3)
        .map(|b| train_batch(trainer.as_mut(), &mut w, &mut RandomSpikes::new(25, batch, 3, 2, 0.3, 10 + b), &[0, 1, 0, 1], &mut opt, Some(10)).unwrap().loss)
        .collect();
    (w, losses)
}

/// One rank of the launch `two_gpu_ranks_train_as_one_device` makes (this test binary
/// under `mpirun -np 2`): writes its weights and losses to `rankN.safetensors` in
/// `$SNNC_TEST_RANK_OUT`.
#[test]
#[ignore = "a rank of an MPI launch, started by two_gpu_ranks_train_as_one_device"]
fn gpu_rank_of_a_launch() {
    use snnc_runtime::train::ranks::{Ranks, launched};
    let out = PathBuf::from(std::env::var_os("SNNC_TEST_RANK_OUT").expect("SNNC_TEST_RANK_OUT: started by two_gpu_ranks_train_as_one_device"));
    let universe = launched().expect("started by mpirun");
    let ranks = Ranks::new(&universe);
    assert_eq!(ranks.size, 2);
    assert!(ranks.local_rank < ranks.local_size && ranks.local_size == 2, "both ranks on this machine: local rank {} of {}", ranks.local_rank, ranks.local_size);
    let (w, losses) = gpu_training(Some(&ranks));
    let losses: Vec<String> = losses.iter().map(|l| format!("{l:?}")).collect();
    snnc_runtime::train::save_checkpoint(&out.join(format!("rank{}.safetensors", ranks.rank)), &w, &[("losses", losses.join(","))]).unwrap();
}

/// Two MPI ranks, each training its share of every batch on an emulated device of its
/// own (the GPU trainer under `mpirun`, as `snnc train --backend cuda` runs it on GPUs)
/// and summing the gradients over MPI, take the Adam steps of one device training the
/// whole batch (f64, 1e-12), with the same losses; both ranks hold the same weights.
#[test]
fn two_gpu_ranks_train_as_one_device() {
    let dir = tmp("gpu");
    let o = mpirun(2)
        .args(["-x", "SNNC_TEST_RANK_OUT"])
        .env("SNNC_TEST_RANK_OUT", &dir)
        .arg(std::env::current_exe().unwrap())
        .args(["mpi::gpu_rank_of_a_launch", "--exact", "--ignored", "--test-threads", "1"])
        .output()
        .unwrap();
    ok(&o);
    let (one, one_losses) = gpu_training(None);
    let (r0, r1) = (dir.join("rank0.safetensors"), dir.join("rank1.safetensors"));
    for r in [&r0, &r1] {
        let (w, meta) = load_checkpoint(r).unwrap();
        let losses: Vec<f64> = meta["losses"].split(',').map(|l| l.parse().unwrap()).collect();
        assert_eq!(losses.len(), 3);
        for (a, b) in one_losses.iter().zip(&losses) {
            assert!((a - b).abs() <= 1e-12 * a.abs(), "{}: loss {a} vs {b}", r.display());
        }
        for (n, a) in &one {
            let b = &w.iter().find(|(m, _)| m == n).unwrap().1;
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let diff = (a - b).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(diff <= 1e-12 * scale, "{}, {n}: 2 ranks differ from 1 device by {diff:e}", r.display());
        }
    }
    assert_eq!(max_rel_diff(&r0, &r1), 0.0, "the ranks' weights differ");
    std::fs::remove_dir_all(&dir).ok();
}
