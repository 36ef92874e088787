//! `snnc train FILE --network NAME --method ... --task dms|evidence|npz:..|shd:.. ...`: online training.
//! Settings come from the network's `train { }` block; command-line flags override them.

use super::Reporter;
use super::engine::{Job, On};
use super::args::{MethodArg, TrainBackend, fail, parse_time};
use snnc_compiler::sema::{LoadOptions, NetworkDef, PopKind, Program, TrainValue};
use ndarray::Array2;
#[cfg(feature = "cuda")]
use snnc_runtime::engine::Engine;
use snnc_runtime::engine::Trainer;
use snnc_runtime::scalar::Float;
use snnc_runtime::learn::{Method, Sequence};
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::JitFactory;
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::dataset::{NpzDataset, Split};
use snnc_runtime::train::shd::{ShdDataset, ShdOptions};
use snnc_runtime::train::tasks::{Dms, Evidence, Task};
use snnc_runtime::train::{BatchReport, CpuTrainer, Optimizer, OptimizerKind, evaluate, load_checkpoint, save_checkpoint, train_batch, weights_of};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--task`: a built-in generator, or a dataset file.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskArg {
    Dms,
    Evidence,
    /// `npz:PATH` (see `snnc_runtime::train::dataset`).
    Npz(PathBuf),
    /// `shd:TRAIN.h5` or `shd:TRAIN.h5,TEST.h5`: Spiking Heidelberg Digits files (see
    /// `snnc_runtime::train::shd`); without TEST, the last tenth of TRAIN is held out.
    Shd { train: PathBuf, test: Option<PathBuf> },
}

impl std::str::FromStr for TaskArg {
    type Err = String;
    fn from_str(s: &str) -> Result<TaskArg, String> {
        match s {
            "dms" => Ok(TaskArg::Dms),
            "evidence" => Ok(TaskArg::Evidence),
            _ => match (s.strip_prefix("npz:"), s.strip_prefix("shd:").map(|p| p.split_once(',').unwrap_or((p, "")))) {
                (Some(p), _) if !p.is_empty() => Ok(TaskArg::Npz(PathBuf::from(p))),
                (_, Some((train, test))) if !train.is_empty() => {
                    Ok(TaskArg::Shd { train: PathBuf::from(train), test: (!test.is_empty()).then(|| PathBuf::from(test)) })
                }
                _ => Err(format!("unknown task `{s}` (dms, evidence, npz:PATH, shd:TRAIN.h5[,TEST.h5])")),
            },
        }
    }
}

impl std::fmt::Display for TaskArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskArg::Dms => write!(f, "delayed match-to-sample"),
            TaskArg::Evidence => write!(f, "evidence accumulation"),
            TaskArg::Npz(p) => write!(f, "{}", p.display()),
            TaskArg::Shd { train, test: None } => write!(f, "{} (SHD; last tenth held out)", train.display()),
            TaskArg::Shd { train, test: Some(t) } => write!(f, "{} (SHD; held out: {})", train.display(), t.display()),
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum OptArg {
    Adam,
    Sgd,
}

/// The task and its settings: shared by `snnc train` and `snnc eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct TaskOpts {
    /// `dms`, `evidence`, `npz:PATH` (arrays `x` and `labels` or `target`) or
    /// `shd:TRAIN.h5[,TEST.h5]` (Spiking Heidelberg Digits; without TEST the last tenth of
    /// TRAIN is held out). docs/training.md describes each. Default: the train block's
    /// `task`.
    #[arg(long)]
    pub task: Option<TaskArg>,
    /// Delay period of the task (`1s`, `500ms`).
    #[arg(long, value_parser = parse_time)]
    pub delay: Option<f64>,
    /// DMS: the sample period (default 500ms, as in the BrainScale experiments).
    #[arg(long, value_parser = parse_time)]
    pub sample: Option<f64>,
    /// DMS: the test period, during which the answer is read (default 500ms).
    #[arg(long, value_parser = parse_time)]
    pub test_period: Option<f64>,
    /// `shd:` sequence length: spikes at or after it are dropped (default 1s).
    #[arg(long, value_parser = parse_time)]
    pub max_time: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    #[arg(long)]
    pub etrace_decay: Option<f64>,
    #[command(flatten)]
    pub task: TaskOpts,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batches per epoch.
    #[arg(long, default_value_t = 10)]
    pub batches: usize,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Multiply the learning rate by this after every epoch (e.g. 0.95).
    #[arg(long)]
    pub lr_decay: Option<f64>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptArg>,
    /// Clip the global gradient norm.
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Truly online learning: an optimiser step every N steps within each sequence (and
    /// one at its end), instead of one per batch. Online methods only.
    #[arg(long, value_name = "N")]
    pub update_every: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for `log.csv` and `checkpoint.safetensors`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue from a checkpoint.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Held-out batches evaluated after every epoch (fresh trials the optimiser never sees).
    #[arg(long, default_value_t = 4)]
    pub test_batches: usize,
    /// Also draw `curves.png` (loss and accuracy against batches) in the output directory.
    #[arg(long, requires = "out")]
    pub plot: bool,
    /// Where the gradients are computed: the CPU (JIT kernels), or an NVIDIA GPU
    /// (`cuda`: every method, the whole batch on GPU 0; needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: TrainBackend,
    /// Compute in f64 (network, traces, gradients); the default is f32. Weights, the
    /// optimiser's state and checkpoints are f64 either way.
    #[arg(long)]
    pub f64: bool,
    /// Set by `snnc eval`: evaluate the held-out trials with the `--resume` weights only.
    #[arg(skip)]
    pub evaluate_only: bool,
}

/// The network of a training run in float type `T` (with derivatives when `learning`).
fn build_net<T: Float>(program: &Program, def: &NetworkDef, batch: usize, seed: u64, learning: bool) -> Result<Network<T>, RuntimeError> {
    Network::<T>::build(program, def, &Options { batch, seed, learning, ..Options::default() }, &JitFactory)
}


pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let Some((program, index)) = super::load_network(&args.file, args.network.as_deref(), opts, reporter) else {
        return ExitCode::FAILURE;
    };
    let def = &program.networks[index];
    // The `train { }` block, then the command line.
    let block = |key: &str| def.train.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let num = |key: &str| match block(key) {
        Some(TrainValue::Number(v)) => Some(v),
        _ => None,
    };
    let name = |key: &str| match block(key) {
        Some(TrainValue::Name(v)) | Some(TrainValue::Text(v)) => Some(v),
        _ => None,
    };
    let method = match args.method.map(|m| match m {
        MethodArg::Bptt => "bptt",
        MethodArg::DRtrl => "d_rtrl",
        MethodArg::EsDRtrl => "es_d_rtrl",
    }).map(String::from).or_else(|| name("method")).as_deref() {
        Some("bptt") => Method::Bptt,
        Some("d_rtrl") => Method::DRtrl,
        Some("es_d_rtrl") | None => Method::EsDRtrl { decay: args.etrace_decay.or_else(|| num("etrace_decay")).unwrap_or(0.99) },
        Some(other) => return fail(format!("unknown method `{other}` (bptt, d_rtrl, es_d_rtrl)")),
    };
    let task = match args.task.task.clone().map(Ok).or_else(|| name("task").map(|t| t.parse::<TaskArg>())) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return fail(e),
        None => return fail("no task: give --task dms|evidence|npz:PATH|shd:TRAIN.h5[,TEST.h5] or `task = ...` in the train block"),
    };
    let optimizer = match args.optimizer.map(|o| o == OptArg::Sgd).or_else(|| name("optimizer").map(|o| o == "sgd")) {
        Some(true) => OptimizerKind::Sgd,
        _ => OptimizerKind::Adam,
    };
    let lr = args.lr.or_else(|| num("lr")).unwrap_or(1e-3);
    let lr_decay = args.lr_decay.or_else(|| num("lr_decay")).unwrap_or(1.0);
    if !(lr_decay > 0.0 && lr_decay <= 1.0) {
        return fail(format!("the learning-rate decay must be in (0, 1], got {lr_decay}"));
    }
    let epochs = args.epochs.or_else(|| num("epochs").map(|v| v as usize)).unwrap_or(1);
    let batch = args.batch.or_else(|| num("batch").map(|v| v as usize)).unwrap_or(16).max(1);
    let seed = args.seed.or_else(|| num("seed").map(|v| v as u64)).unwrap_or(0);
    let clip = args.grad_clip.or_else(|| num("grad_clip"));
    let update_every = args.update_every.or_else(|| num("update_every").map(|v| v as usize));
    let dt = def.dt.unwrap_or(1e-3);
    let delay = args.task.delay.unwrap_or(1.0);
    let mut trainable: Vec<String> = def.projections.iter().filter(|p| p.trainable).map(|p| p.name.clone()).collect();
    let n_projections = trainable.len();
    let make_net = |b: usize| build_net::<f64>(&program, def, b, seed, true);
    let net = match make_net(batch) {
        Ok(n) => n,
        Err(e) => return fail(e.to_string()),
    };
    // Params marked `trainable` in the models (`rec.tau`), after the projections.
    trainable.extend(net.trainable_params());
    let mut weights = weights_of(&net, &trainable);
    let mut start_epoch = 0;
    if let Some(ck) = &args.resume {
        match load_checkpoint(ck) {
            Ok((w, meta)) => {
                weights = w;
                start_epoch = meta.get("epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
            }
            Err(e) => return fail(e.to_string()),
        }
    }
    let opt = Optimizer::new(optimizer, lr, clip);
    let log = match &args.out {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return fail(format!("cannot create `{}`: {e}", dir.display()));
            }
            let path = dir.join("log.csv");
            let fresh = !path.exists() || args.resume.is_none();
            let f = std::fs::OpenOptions::new().create(true).append(!fresh).write(true).truncate(fresh).open(&path);
            match f {
                Ok(mut f) => {
                    if fresh {
                        let _ = writeln!(f, "epoch,batch,split,loss,accuracy");
                    }
                    Some(f)
                }
                Err(e) => return fail(format!("cannot write `{}`: {e}", path.display())),
            }
        }
        None => None,
    };
    let outputs = net.pops.iter().find(|p| p.kind == PopKind::Readout).map(|p| p.n).unwrap_or(0);
    let input_sizes: Vec<usize> = net.inputs.iter().map(|(_, n)| *n).collect();
    // The test trials come from another seed (or the file's held-out samples): the
    // optimiser never sees them.
    let test_seed = seed ^ 0x7e57_7e57_7e57;
    let make_task = |split: Split, seed: u64| -> Result<Box<dyn Task>, String> {
        Ok(match &task {
            TaskArg::Dms => {
                let mut d = Dms::new(dt, delay, batch, seed);
                d.sample = args.task.sample.unwrap_or(d.sample);
                d.test = args.task.test_period.unwrap_or(d.test);
                Box::new(d)
            }
            TaskArg::Evidence => Box::new(Evidence::new(dt, delay, batch, seed)),
            TaskArg::Npz(p) => Box::new(NpzDataset::load(p, split, outputs, batch, seed).map_err(|e| e.to_string())?),
            TaskArg::Shd { train, test } => {
                let [channels] = input_sizes[..] else {
                    return Err(format!("`shd:` feeds one input (the spike channels); network `{}` has {}", def.name, input_sizes.len()));
                };
                let opts = ShdOptions { dt, max_time: args.task.max_time.unwrap_or(1.0), channels: Some(channels) };
                Box::new(ShdDataset::load(train, test.as_deref(), split, &opts, outputs, batch, seed).map_err(|e| e.to_string())?)
            }
        })
    };
    let train_task = match make_task(Split::Train, seed) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let classifies = train_task.classifies();
    let training = Training {
        args: &args,
        program: &program,
        def,
        method,
        task: &task,
        optimizer,
        lr,
        lr_decay,
        epochs,
        start_epoch,
        batch,
        seed,
        test_seed,
        update_every,
        trainable: &trainable,
        n_projections,
        weights,
        opt,
        log,
        train_task,
        make_task: &make_task,
        classifies,
    };
    super::engine::dispatch(super::engine::precision(args.f64), args.backend, training).unwrap_or_else(fail)
}

/// A training run (or, with `evaluate_only`, an evaluation) as set up from the network's
/// `train { }` block and the command line: what [`Training::train`] runs on a backend.
struct Training<'a> {
    args: &'a Args,
    program: &'a Program,
    def: &'a NetworkDef,
    method: Method,
    task: &'a TaskArg,
    optimizer: OptimizerKind,
    lr: f64,
    lr_decay: f64,
    epochs: usize,
    start_epoch: usize,
    batch: usize,
    seed: u64,
    test_seed: u64,
    update_every: Option<usize>,
    trainable: &'a [String],
    n_projections: usize,
    weights: Vec<(String, Array2<f64>)>,
    opt: Optimizer,
    log: Option<std::fs::File>,
    train_task: Box<dyn Task>,
    #[allow(clippy::type_complexity)]
    make_task: &'a dyn Fn(Split, u64) -> Result<Box<dyn Task>, String>,
    classifies: bool,
}

impl Job for Training<'_> {
    type Out = ExitCode;
    fn run<T: Float>(self, on: On) -> ExitCode {
        let (program, def, seed) = (self.program, self.def, self.seed);
        match on {
            On::Cpu { .. } => {
                let make = |b: usize| build_net::<T>(program, def, b, seed, true);
                let cpu = CpuTrainer::new(&make, self.trainable, self.method);
                // The held-out trials on a network of their own, without derivatives.
                self.train(cpu, |_, weights, data, labels| evaluate(&mut build_net::<T>(program, def, data.batch(), seed, false)?, weights, data, labels))
            }
            #[cfg(feature = "cuda")]
            On::Cuda => {
                // The network and its gradient state are made once and kept on the device.
                let gpu = match open_gpu::<T>(program, def, self.batch, seed, self.trainable, self.method) {
                    Ok(g) => g,
                    Err(e) => return fail(e),
                };
                println!("on {}", snnc_runtime::gpu::Device::name(&gpu.net.dev));
                // The held-out evaluation with the training network (reset, given the weights).
                self.train(gpu, |g, weights, data, labels| evaluate(&mut g.net, weights, data, labels))
            }
        }
    }
}

impl Training<'_> {
    /// Trains (or only evaluates) on `trainer`, with the held-out evaluation `held`.
    fn train<T: Float, Tr: Trainer<T>>(mut self, mut trainer: Tr, mut held: impl FnMut(&mut Tr, &[(String, Array2<f64>)], &mut dyn Sequence, &[usize]) -> Result<BatchReport, RuntimeError>) -> ExitCode {
        let (args, batch) = (self.args, self.batch);
        if !args.evaluate_only {
            println!(
                "training {} ({} trainable projections, {} trainable params) on {} with {:?}, {:?} lr {}, batch {batch}",
                self.def.name,
                self.n_projections,
                self.trainable.len() - self.n_projections,
                self.task,
                self.method,
                self.optimizer,
                self.lr,
            );
        }
        // Held-out trials: the same generator with the test seed, or the file's held-out
        // samples, made once and restarted for each evaluation (the same trials every time).
        let mut test_task = match (self.make_task)(Split::Test, self.test_seed) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let mut held_out = |trainer: &mut Tr, weights: &[(String, Array2<f64>)]| -> Result<BatchReport, String> {
            let mut test = BatchReport { loss: 0.0, accuracy: 0.0, rates: Vec::new() };
            test_task.restart();
            for _ in 0..args.test_batches {
                let labels = test_task.labels().to_vec();
                let r = held(trainer, weights, test_task.as_mut(), &labels).map_err(|e| e.to_string())?;
                test.loss += r.loss / args.test_batches as f64;
                test.accuracy += r.accuracy / args.test_batches as f64;
                test_task.next_batch();
            }
            Ok(test)
        };
        if args.evaluate_only {
            if args.test_batches == 0 {
                return fail("--test-batches must be at least 1");
            }
            return match held_out(&mut trainer, &self.weights) {
                Ok(t) => {
                    let trials = args.test_batches * batch;
                    let acc = if self.classifies { format!(", accuracy {:.1} %", 100.0 * t.accuracy) } else { String::new() };
                    println!("held-out ({trials} trials): loss {:.4} per trial{acc}", t.loss);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            };
        }
        let mut curves = Curves::default();
        for epoch in self.start_epoch..self.start_epoch + self.epochs {
            // Exponential decay per epoch, counted from the first epoch (a resumed run goes on
            // with the schedule where it stopped).
            self.opt.lr = self.lr * self.lr_decay.powi(epoch as i32);
            let (mut sl, mut sa) = (0.0, 0.0);
            let mut rates: Vec<(String, f64)> = Vec::new();
            for b in 0..args.batches {
                self.train_task.next_batch();
                let labels = self.train_task.labels().to_vec();
                let r = match train_batch(&mut trainer, &mut self.weights, self.train_task.as_mut(), &labels, &mut self.opt, self.update_every) {
                    Ok(r) => r,
                    Err(e) => return fail(e.to_string()),
                };
                if !r.loss.is_finite() {
                    return fail(format!("the loss became {} at epoch {epoch}, batch {b}; the last checkpoint is kept", r.loss));
                }
                sl += r.loss;
                sa += r.accuracy;
                if rates.is_empty() {
                    rates = r.rates.iter().map(|(n, _)| (n.clone(), 0.0)).collect();
                }
                rates.iter_mut().zip(&r.rates).for_each(|(a, b)| a.1 += b.1);
                if let Some(f) = &mut self.log {
                    let _ = writeln!(f, "{epoch},{b},train,{:.6},{:.4}", r.loss, r.accuracy);
                }
                curves.train.push((r.loss, r.accuracy));
            }
            let test = match held_out(&mut trainer, &self.weights) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let n = args.batches.max(1) as f64;
            let rates: Vec<String> = rates.iter().map(|(p, r)| format!("{p} {:.1} Hz", r / n)).collect();
            let acc = |what: &str, a: f64| if self.classifies { format!(", {what} {:.1} %", 100.0 * a) } else { String::new() };
            if args.test_batches > 0 {
                println!(
                    "epoch {epoch}: loss {:.4}{}, test loss {:.4}{}, rates {}",
                    sl / n,
                    acc("accuracy", sa / n),
                    test.loss,
                    acc("test accuracy", test.accuracy),
                    rates.join(", ")
                );
                if let Some(f) = &mut self.log {
                    let _ = writeln!(f, "{epoch},,test,{:.6},{:.4}", test.loss, test.accuracy);
                }
                curves.test.push((curves.train.len(), test.loss, test.accuracy));
            } else {
                println!("epoch {epoch}: loss {:.4}{}, rates {}", sl / n, acc("accuracy", sa / n), rates.join(", "));
            }
            if let Some(dir) = &args.out {
                if let Err(e) = save_checkpoint(&dir.join("checkpoint.safetensors"), &self.weights, &[("epoch", (epoch + 1).to_string())]) {
                    return fail(e.to_string());
                }
                if args.plot {
                    if let Err(e) = super::plot::curves_png(&dir.join("curves.png"), &curves.train, &curves.test) {
                        return fail(e);
                    }
                }
            }
        }
        ExitCode::SUCCESS
    }
}

/// Opens GPU 0 and moves the training network (built for learning, the whole batch)
/// there, with its gradient state.
#[cfg(feature = "cuda")]
fn open_gpu<T: Float>(
    program: &Program,
    def: &NetworkDef,
    batch: usize,
    seed: u64,
    trainable: &[String],
    method: Method,
) -> Result<Engine<snnc_runtime::gpu::GpuNetwork<T, snnc_runtime::gpu::cuda::CudaDevice>, snnc_runtime::gpu::GpuGradient<T>>, String> {
    use snnc_runtime::gpu::{GpuGradient, GpuNetwork, cuda::CudaDevice};
    let dev = CudaDevice::open(0).map_err(|e| e.to_string())?;
    let o = Options { batch, seed, learning: true, ..Options::default() };
    let err = |e: RuntimeError| e.to_string();
    // The host network only holds the structure and the starting state: its kernels
    // never run, so the interpreter's (no JIT) do.
    let mut net = GpuNetwork::new(Network::<T>::without_kernels(program, def, &o).map_err(err)?, dev).map_err(err)?;
    let learner = GpuGradient::new(&mut net, trainable, method).map_err(err)?;
    Ok(Engine { net, learner })
}

/// What `--plot` draws: per training batch (loss, accuracy); per epoch (batches so far,
/// test loss, test accuracy).
#[derive(Default)]
struct Curves {
    train: Vec<(f64, f64)>,
    test: Vec<(usize, f64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::TaskArg;
    use std::path::PathBuf;

    #[test]
    fn parses_shd_tasks() {
        let shd = |train: &str, test: Option<&str>| TaskArg::Shd { train: PathBuf::from(train), test: test.map(PathBuf::from) };
        assert_eq!("shd:data/shd_train.h5".parse(), Ok(shd("data/shd_train.h5", None)));
        assert_eq!("shd:a.h5,b.h5".parse(), Ok(shd("a.h5", Some("b.h5"))));
        assert_eq!("shd:a.h5,".parse(), Ok(shd("a.h5", None)));
        assert!("shd:".parse::<TaskArg>().unwrap_err().contains("shd:TRAIN.h5[,TEST.h5]"));
        assert!("shd:,b.h5".parse::<TaskArg>().is_err());
    }
}
