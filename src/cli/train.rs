//! `snnc train FILE --network NAME --method ... --task dms|evidence|npz:..|shd:.. ...`: online training.
//! Settings come from the network's `train { }` block; command-line flags override them.

mod rundir;
mod settings;

use super::Reporter;
use super::engine::{Job, On};
use super::args::{MethodArg, TrainBackend, fail, parse_time};
use snnc_compiler::sema::{LoadOptions, NetworkDef, PopKind, Program, TrainValue};
use rundir::{Curves, Log};
use settings::Settings;
use ndarray::Array2;
#[cfg(feature = "cuda")]
use snnc_runtime::engine::Engine;
use snnc_runtime::engine::Trainer;
use snnc_runtime::scalar::Float;
use snnc_runtime::learn::Sequence;
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::JitFactory;
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::dataset::{NpzDataset, Split};
use snnc_runtime::train::events::load_events;
use snnc_runtime::train::shd::{ShdDataset, ShdOptions};
use snnc_runtime::train::images::{Coding, ImageDataset, ImageOptions};
use snnc_runtime::train::tasks::{Dms, Evidence, Task};
use snnc_runtime::train::{BatchReport, CpuTrainer, Optimizer, evaluate, lr_scales, save_checkpoint, train_batch, weights_of};
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
    /// `digits`: scikit-learn's 8x8 handwritten digits, built in; `images:PATH`: images
    /// from an `.npz` (see `snnc_runtime::train::images`). Shown as spikes (`--coding`).
    Digits,
    Images(PathBuf),
    /// `events:PATH`: event-camera recordings `(t, x, y, p)` in an `.npz` (see
    /// `snnc_runtime::train::events`), binned at the network's dt.
    Events(PathBuf),
}

impl std::str::FromStr for TaskArg {
    type Err = String;
    fn from_str(s: &str) -> Result<TaskArg, String> {
        match s {
            "dms" => Ok(TaskArg::Dms),
            "evidence" => Ok(TaskArg::Evidence),
            "digits" => Ok(TaskArg::Digits),
            _ if s.strip_prefix("images:").is_some_and(|p| !p.is_empty()) => Ok(TaskArg::Images(PathBuf::from(&s["images:".len()..]))),
            _ if s.strip_prefix("events:").is_some_and(|p| !p.is_empty()) => Ok(TaskArg::Events(PathBuf::from(&s["events:".len()..]))),
            _ => match (s.strip_prefix("npz:"), s.strip_prefix("shd:").map(|p| p.split_once(',').unwrap_or((p, "")))) {
                (Some(p), _) if !p.is_empty() => Ok(TaskArg::Npz(PathBuf::from(p))),
                (_, Some((train, test))) if !train.is_empty() => {
                    Ok(TaskArg::Shd { train: PathBuf::from(train), test: (!test.is_empty()).then(|| PathBuf::from(test)) })
                }
                _ => Err(format!("unknown task `{s}` (dms, evidence, digits, images:PATH, npz:PATH, shd:TRAIN.h5[,TEST.h5], events:PATH)")),
            },
        }
    }
}

impl TaskArg {
    /// The task with its relative file paths taken from `dir`: a train block names its
    /// files relative to its `.snn` file, as `from "FILE"` does.
    fn relative_to(self, dir: &std::path::Path) -> TaskArg {
        let join = |p: PathBuf| if p.is_relative() { dir.join(p) } else { p };
        match self {
            TaskArg::Npz(p) => TaskArg::Npz(join(p)),
            TaskArg::Images(p) => TaskArg::Images(join(p)),
            TaskArg::Events(p) => TaskArg::Events(join(p)),
            TaskArg::Shd { train, test } => TaskArg::Shd { train: join(train), test: test.map(join) },
            t => t,
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
            TaskArg::Digits => write!(f, "the scikit-learn digits (8x8; a fifth held out)"),
            TaskArg::Images(p) => write!(f, "{} (images)", p.display()),
            TaskArg::Events(p) => write!(f, "{} (events)", p.display()),
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
    /// `dms`, `evidence`, `digits` (scikit-learn's 8x8 digits, built in), `images:PATH`
    /// (arrays `images` and `labels`), `npz:PATH` (arrays `x` and `labels` or `target`) or
    /// `shd:TRAIN.h5[,TEST.h5]` (Spiking Heidelberg Digits; without TEST the last tenth of
    /// TRAIN is held out) or `events:PATH` (event-camera `(t, x, y, p)` arrays as tonic
    /// keeps them). docs/training.md describes each. Default: the train block's
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
    /// `shd:` and `events:` sequence length: spikes at or after it are dropped (default 1s).
    #[arg(long, value_parser = parse_time)]
    pub max_time: Option<f64>,
    /// `digits`, `images:`: steps each image is shown for (default 20).
    #[arg(long)]
    pub steps: Option<usize>,
    /// `digits`, `images:`: `rate` (Bernoulli spikes, probability = intensity per step;
    /// the default) or `latency` (one spike per pixel, earlier the brighter).
    #[arg(long)]
    pub coding: Option<Coding>,
    /// `digits`, `images:` without a test set: hold out a fixed random fifth (as
    /// scikit-learn's `train_test_split`) instead of the last fifth in file order.
    #[arg(long)]
    pub shuffle_split: bool,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    #[arg(long, allow_negative_numbers = true)]
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
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Multiply the learning rate by this after every epoch (e.g. 0.95).
    #[arg(long, allow_negative_numbers = true)]
    pub lr_decay: Option<f64>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptArg>,
    /// Clip the global gradient norm.
    #[arg(long, allow_negative_numbers = true)]
    pub grad_clip: Option<f64>,
    /// Decoupled weight decay (AdamW, as optax.adamw; L2 for SGD) on the weights.
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
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
    /// With `--resume`: start the trainable tensors the checkpoint lacks from their
    /// initialisers (without it, a checkpoint lacking one is refused).
    #[arg(long, requires = "resume")]
    pub init_missing: bool,
    /// Replace the run an existing `--out DIR` holds (without it, that is refused unless
    /// `--resume`).
    #[arg(long, requires = "out")]
    pub overwrite: bool,
    /// Held-out batches evaluated after every epoch (trials the optimiser never sees).
    /// Default: a dataset's whole held-out split, each sample once (the last batch may be
    /// partial); 4 batches of fresh trials for a generated task (dms, evidence). With a
    /// dataset, at most one pass over the split.
    #[arg(long)]
    pub test_batches: Option<usize>,
    /// Also draw `curves.png` (loss and accuracy against batches) in the output directory.
    #[arg(long, requires = "out")]
    pub plot: bool,
    /// Where the gradients are computed: the CPU (JIT kernels), or an NVIDIA GPU
    /// (`cuda`: every method, the whole batch on GPU 0; under `mpirun -np K`, each rank
    /// its share on GPU (local rank mod visible GPUs); needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: TrainBackend,
    /// Compute in f64 (network, traces, gradients); the default is f32. Weights, the
    /// optimiser's state and checkpoints are f64 either way.
    #[arg(long)]
    pub f64: bool,
    /// Set by `snnc eval`: evaluate the held-out trials with the `--resume` weights only.
    #[arg(skip)]
    pub evaluate_only: bool,
    /// Set by the Python module (`weights=`): starting values of these trainable tensors,
    /// over the initial (or resumed) ones.
    #[arg(skip)]
    pub start_weights: Vec<(String, Array2<f64>)>,
    /// Set by the Python module: the caller gets the final weights (so a run without
    /// `--out` loses nothing, and is not warned about).
    #[arg(skip)]
    pub returns_weights: bool,
}

/// The network of a training run in float type `T` (with derivatives when `learning`).
fn build_net<T: Float>(program: &Program, def: &NetworkDef, batch: usize, seed: u64, learning: bool) -> Result<Network<T>, RuntimeError> {
    Network::<T>::build(program, def, &Options { batch, seed, learning, ..Options::default() }, &JitFactory)
}


pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    // Under `mpirun -np K` (K > 1): the ranks share each batch; rank 0 alone reports,
    // logs and checkpoints.
    #[cfg(feature = "mpi")]
    let universe = snnc_runtime::train::ranks::launched();
    #[cfg(feature = "mpi")]
    let ranks = universe.as_ref().map(snnc_runtime::train::ranks::Ranks::new).filter(|r| r.size > 1);
    #[cfg(feature = "mpi")]
    let (args, follower) = match &ranks {
        Some(r) if r.rank > 0 => {
            r.silence_stdout();
            (Args { out: None, ..args }, true)
        }
        _ => (args, false),
    };
    #[cfg(not(feature = "mpi"))]
    let follower = false;
    let launch = Launch {
        follower,
        #[cfg(feature = "mpi")]
        ranks: ranks.as_ref(),
        ..Launch::default()
    };
    let Some((program, index)) = super::load_network(&args.file, args.network.as_deref(), opts, reporter) else {
        return ExitCode::FAILURE;
    };
    match train_program_on(&args, &program, index, &mut NoHooks, launch) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Called by a training run after each batch and each epoch (the Python module's
/// callback; the command has none). An error stops the run, as a failed batch would.
pub trait Hooks {
    /// After batch `b` of `epoch` and its optimiser step: its report and the weights.
    fn batch(&mut self, epoch: usize, b: usize, report: &BatchReport, weights: &[(String, Array2<f64>)]) -> Result<(), String>;
    /// After an epoch, with its held-out evaluation if there was one.
    fn epoch(&mut self, epoch: usize, test: Option<&HeldOut>) -> Result<(), String>;
}

/// The command's hooks: none.
pub struct NoHooks;

impl Hooks for NoHooks {
    fn batch(&mut self, _: usize, _: usize, _: &BatchReport, _: &[(String, Array2<f64>)]) -> Result<(), String> {
        Ok(())
    }
    fn epoch(&mut self, _: usize, _: Option<&HeldOut>) -> Result<(), String> {
        Ok(())
    }
}

/// `snnc train` (or, with `args.evaluate_only`, `snnc eval`) of network `index` of
/// `program`: prints its progress as the command does, calls `hooks`, and gives the
/// final weights; the error is the message the command prints.
pub fn train_program(args: &Args, program: &Program, index: usize, hooks: &mut dyn Hooks) -> Result<Vec<(String, Array2<f64>)>, String> {
    train_program_on(args, program, index, hooks, Launch::default())
}

/// Where a training run runs: one process (the default), or one rank of an MPI launch.
#[derive(Clone, Copy, Default)]
pub struct Launch<'a> {
    /// A rank other than 0: it trains its share of each batch and reports nothing.
    pub follower: bool,
    #[cfg(feature = "mpi")]
    pub ranks: Option<&'a snnc_runtime::train::ranks::Ranks>,
    _ranks: std::marker::PhantomData<&'a ()>,
}

/// [`train_program`] as `launch` says.
pub fn train_program_on(args: &Args, program: &Program, index: usize, hooks: &mut dyn Hooks, launch: Launch) -> Result<Vec<(String, Array2<f64>)>, String> {
    let def = &program.networks[index];
    let s = Settings::of(args, def)?;
    let block_task = def.train.iter().find(|(k, _)| k == "task").and_then(|(_, v)| match v {
        TrainValue::Name(t) | TrainValue::Text(t) => Some(t.parse::<TaskArg>().map(|t| t.relative_to(args.file.parent().unwrap_or(std::path::Path::new(""))))),
        TrainValue::Number(_) => None,
    });
    let task = match args.task.task.clone().map(Ok).or(block_task) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return Err(e),
        None => return Err("no task: give --task dms|evidence|digits|images:PATH|npz:PATH|shd:TRAIN.h5[,TEST.h5]|events:PATH or `task = ...` in the train block".into()),
    };
    let mut trainable: Vec<String> = def.projections.iter().filter(|p| p.trainable).map(|p| p.name.clone()).collect();
    // One batch element is enough for the names, initial weights and sizes (none of them
    // depends on the batch), and costs nothing whatever `--batch` asks.
    let net = build_net::<f64>(program, def, 1, s.seed, true).map_err(|e| e.to_string())?;
    // Adapters' factors (`NAME.U`, `NAME.V`), then params marked `trainable` in the
    // models (`rec.tau`), after the projections.
    trainable.extend(net.trainable_adapters());
    let n_projections = trainable.len();
    trainable.extend(net.trainable_params());
    // Batch norms' gamma and beta (not decayed), and their running estimates: state
    // carried, checkpointed and restored with the weights, never trained.
    trainable.extend(net.trainable_batch_norms());
    trainable.extend(net.batch_norm_state());
    let initial = weights_of(&net, &trainable);
    // Sparse trainable projections: their structure's fingerprint goes with the weights.
    let structure: Vec<(String, String)> = trainable
        .iter()
        .filter_map(|n| net.projection(n).and_then(|(i, ..)| net.synapse_fingerprint(i)).map(|f| (format!("structure.{n}"), f)))
        .collect();
    let (weights, start_epoch, resumed) = match &args.resume {
        Some(ck) => rundir::resume(ck, initial.clone(), &def.name, args.init_missing, &structure).map(|(w, e, p)| (w, e, Some(p)))?,
        None => (initial.clone(), 0, None),
    };
    let weights = with_start_weights(weights, &args.start_weights)?;
    if !args.evaluate_only {
        snnc_runtime::train::check_bounds(&net, &weights).map_err(|e| e.to_string())?;
    }
    // Every piece of data is loaded and checked against the network before anything runs.
    let outputs = net.pops.iter().find(|p| p.kind == PopKind::Readout).map(|p| p.n).unwrap_or(0);
    let input_sizes: Vec<usize> = net.inputs.iter().map(|(_, n)| *n).collect();
    let make_task = |split: Split, seed: u64, batch: usize| make_task(&task, &args.task, def, split, seed, batch, outputs, &input_sizes);
    // The memory a batch needs, checked before a generator draws one: BPTT's tape grows
    // with the sequence, whose length a one-trial generator tells (a dataset's is known
    // once loaded: checked again then).
    let bptt = s.method == snnc_runtime::learn::Method::Bptt;
    let probe_steps = match (&task, bptt) {
        (TaskArg::Dms | TaskArg::Evidence, true) => make_task(Split::Train, s.seed, 1).map_or(0, |t| t.steps()),
        _ => 0,
    };
    if !args.evaluate_only {
        check_memory(&net, &trainable, &s, probe_steps, args.f64)?;
    }
    // The test trials come from another seed (or the file's held-out samples): the
    // optimiser never sees them.
    let test_seed = s.seed ^ 0x7e57_7e57_7e57;
    let tasks = make_task(Split::Train, s.seed, s.batch).and_then(|train| Ok((train, make_task(Split::Test, test_seed, s.batch)?)));
    let (train_task, test_task) = tasks.and_then(|(a, b)| check_shapes(&[(&*a, "training"), (&*b, "held-out")], &task, &net, outputs).map(|_| (a, b)))?;
    settings::Source::check_loss(def, train_task.loss())?;
    if !args.evaluate_only && bptt && probe_steps != train_task.steps() {
        check_memory(&net, &trainable, &s, train_task.steps(), args.f64)?;
    }
    let (scales, unscaled) = lr_scales(&net, def, &initial);
    for name in &unscaled {
        eprintln!("warning: `{name}` has a physical unit and all-zero initial values: its learning rate is in SI units (no scale)");
    }
    // The f64 network of the names and the initial weights are not needed while training
    // (for a sparse network they are ~20 bytes a synapse).
    drop(net);
    drop(initial);
    // Weight decay acts on the weights (and adapters), not on the neurons' params.
    let mut opt = Optimizer::new(s.optimizer, s.lr, s.clip).with_weight_decay(s.weight_decay, &trainable[n_projections..]);
    opt.set_scales(&scales);
    if let Some(r) = &resumed {
        r.restore(&mut opt, s.optimizer, &weights)?;
    }
    let (log, curves, best) = match (&args.out, args.evaluate_only) {
        (Some(dir), false) => rundir::open(dir, args.resume.as_ref().map(|_| start_epoch), args.overwrite).map(|(log, curves, best)| (Some(log), curves, best))?,
        _ => (None, Curves::default(), None),
    };
    let classifies = train_task.classifies();
    // A resumed run draws on from where its checkpoint's run stopped (not the first
    // batches again): the batches of the uninterrupted run, in its order.
    let batches_drawn = resumed.as_ref().and_then(|r| r.batches_drawn).unwrap_or(0);
    let mut train_task = train_task;
    for _ in 0..batches_drawn {
        train_task.next_batch();
    }
    if resumed.as_ref().is_some_and(|r| r.batches_drawn.is_none()) {
        eprintln!("note: the checkpoint does not say how many batches its run drew: the training data start again from the first batch");
    }
    let training = Training {
        args,
        hooks,
        program,
        def,
        task: &task,
        s,
        start_epoch,
        trainable: &trainable,
        n_projections,
        scales,
        weights,
        structure,
        opt,
        log,
        curves,
        best,
        train_task,
        batches_drawn,
        test_task,
        classifies,
        follower: launch.follower,
        #[cfg(feature = "mpi")]
        ranks: launch.ranks,
    };
    super::engine::dispatch(super::engine::precision(args.f64), args.backend, training)?
}

/// `weights` with the values of `start` put in, each checked to be one of them and of
/// its shape. A checkpoint's optimiser state (`optimizer/...`: a whole checkpoint read
/// with `safetensors` and handed over as it is) is not a weight and is passed over.
fn with_start_weights(mut weights: Vec<(String, Array2<f64>)>, start: &[(String, Array2<f64>)]) -> Result<Vec<(String, Array2<f64>)>, String> {
    for (name, w) in start.iter().filter(|(n, _)| !n.starts_with(snnc_runtime::train::OPTIMIZER_PREFIX)) {
        let names = || weights.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        let Some(i) = weights.iter().position(|(n, _)| n == name) else {
            return Err(format!("no trainable tensor `{name}` to start from (trainable: {})", names()));
        };
        if weights[i].1.dim() != w.dim() {
            return Err(format!("`{name}` is {:?}; the given starting values are {:?}", weights[i].1.dim(), w.dim()));
        }
        weights[i].1 = w.clone();
    }
    Ok(weights)
}

/// The task `task` for `split`: a generator seeded by `seed`, or a dataset file.
#[allow(clippy::too_many_arguments)]
fn make_task(task: &TaskArg, o: &TaskOpts, def: &NetworkDef, split: Split, seed: u64, batch: usize, outputs: usize, input_sizes: &[usize]) -> Result<Box<dyn Task>, String> {
    let dt = def.dt.unwrap_or(1e-3);
    let delay = o.delay.unwrap_or(1.0);
    Ok(match task {
        TaskArg::Dms => {
            let mut d = Dms::new(dt, delay, batch, seed);
            d.sample = o.sample.unwrap_or(d.sample);
            d.test = o.test_period.unwrap_or(d.test);
            Box::new(d)
        }
        TaskArg::Evidence => Box::new(Evidence::new(dt, delay, batch, seed)),
        TaskArg::Npz(p) => Box::new(NpzDataset::load(p, split, outputs, batch, seed).map_err(|e| e.to_string())?),
        TaskArg::Digits | TaskArg::Images(_) => {
            let opts = ImageOptions { steps: o.steps.unwrap_or(20), coding: o.coding.unwrap_or(Coding::Rate), shuffle_split: o.shuffle_split };
            let d = match task {
                TaskArg::Images(p) => ImageDataset::load(p, split, &opts, outputs, batch, seed),
                _ => ImageDataset::digits(split, &opts, outputs, batch, seed),
            };
            Box::new(d.map_err(|e| e.to_string())?)
        }
        TaskArg::Shd { train, test } => {
            let [channels] = input_sizes[..] else {
                return Err(format!("`shd:` feeds one input (the spike channels); network `{}` has {}", def.name, input_sizes.len()));
            };
            let opts = ShdOptions { dt, max_time: o.max_time.unwrap_or(1.0), channels: Some(channels) };
            Box::new(ShdDataset::load(train, test.as_deref(), split, &opts, outputs, batch, seed).map_err(|e| e.to_string())?)
        }
        TaskArg::Events(p) => {
            let [channels] = input_sizes[..] else {
                return Err(format!("`events:` feeds one input (polarity x height x width channels); network `{}` has {}", def.name, input_sizes.len()));
            };
            let opts = ShdOptions { dt, max_time: o.max_time.unwrap_or(1.0), channels: Some(channels) };
            Box::new(load_events(p, split, &opts, outputs, batch, seed).map_err(|e| e.to_string())?)
        }
    })
}

/// Refuses data whose inputs or outputs per step do not fit the network (`tasks`: each
/// with the name of its split), before the first batch: a held-out set of the wrong
/// shape would otherwise be found after the first epoch.
fn check_shapes(tasks: &[(&dyn Task, &str)], task: &TaskArg, net: &Network<f64>, outputs: usize) -> Result<(), String> {
    let npz_test = match task {
        TaskArg::Npz(p) => snnc_runtime::train::dataset::npz_names(p).map_err(|e| e.to_string())?.iter().any(|n| n == "x_test"),
        _ => false,
    };
    for (t, split) in tasks {
        let what = match task {
            TaskArg::Npz(p) => format!("the {split} data (array `{}` of `{}`)", if npz_test && *split == "held-out" { "x_test" } else { "x" }, p.display()),
            _ => format!("the {split} data of {task}"),
        };
        let (sizes, out) = t.shape();
        if sizes.len() != net.inputs.len() {
            return Err(format!("{what} feeds {} inputs; the network has {}", sizes.len(), net.inputs.len()));
        }
        for (have, (name, want)) in sizes.iter().zip(&net.inputs) {
            if have != want {
                return Err(format!("{what} has {have} values per step; the network's input `{name}` has {want} neurons"));
            }
        }
        if out != outputs {
            return Err(format!("{what} has {out} outputs per step; the network's readout has {outputs}"));
        }
    }
    Ok(())
}

/// Refuses a batch whose networks and learning state cannot fit in memory, with the
/// bytes needed and available (estimated from the one-element network `net`).
fn check_memory(net: &Network<f64>, trainable: &[String], s: &Settings, steps: usize, f64: bool) -> Result<(), String> {
    let per = snnc_runtime::learn::bytes_per_element(net, trainable, s.method, steps).map_err(|e| e.to_string())?;
    // Measured in f64; the default f32 run needs half. The held-out network (no
    // derivatives) is at most as large again.
    let per = if f64 { per } else { per / 2 }.saturating_mul(2);
    let need = per.saturating_mul(s.batch);
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?.to_string();
        line.split_whitespace().nth(1)?.parse::<usize>().ok().map(|kb| kb.saturating_mul(1024))
    });
    match available {
        Some(a) if need > a => Err(format!(
            "{} = {} needs about {} of memory ({} per trial: network states, derivatives and {} state); {} are available",
            s.batch_from,
            s.batch,
            bytes(need),
            bytes(per),
            s.method,
            bytes(a)
        )),
        _ => Ok(()),
    }
}

/// `n` bytes for people: `1.2 GB`.
fn bytes(n: usize) -> String {
    let n = n as f64;
    match n {
        _ if n >= 1e12 => format!("{:.1} TB", n / 1e12),
        _ if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        _ if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        _ if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        _ => format!("{n} bytes"),
    }
}

/// A training run (or, with `evaluate_only`, an evaluation) as set up from the network's
/// `train { }` block and the command line: what [`Training::train`] runs on a backend.
struct Training<'a> {
    args: &'a Args,
    hooks: &'a mut dyn Hooks,
    program: &'a Program,
    def: &'a NetworkDef,
    task: &'a TaskArg,
    s: Settings,
    start_epoch: usize,
    trainable: &'a [String],
    n_projections: usize,
    /// The optimiser's scale of each trainable tensor ([`lr_scales`]).
    scales: Vec<(String, f64)>,
    weights: Vec<(String, Array2<f64>)>,
    /// Checkpoint metadata `structure.NAME`: the fingerprint of each sparse trainable
    /// projection's synapses.
    structure: Vec<(String, String)>,
    opt: Optimizer,
    log: Option<Log>,
    /// What the log already held (a resumed run), then each batch and evaluation.
    curves: Curves,
    /// (epochs done, held-out loss) of `best.safetensors`.
    best: Option<(usize, f64)>,
    train_task: Box<dyn Task>,
    /// Training batches drawn from `train_task` since the run began (its first run, for
    /// a resumed one).
    batches_drawn: u64,
    test_task: Box<dyn Task>,
    classifies: bool,
    /// An MPI rank other than 0: it trains its share, and reports nothing.
    follower: bool,
    #[cfg(feature = "mpi")]
    ranks: Option<&'a snnc_runtime::train::ranks::Ranks>,
}

impl Training<'_> {
    /// What a checkpoint says besides the weights: the epochs done, and the structure
    /// of each sparse trainable projection.
    fn checkpoint_meta(&self, epochs: usize) -> Vec<(&str, String)> {
        let mut meta = vec![("epoch", epochs.to_string())];
        meta.extend(self.structure.iter().map(|(k, v)| (k.as_str(), v.clone())));
        meta
    }

    /// The checkpoint of the run so far: the weights and the optimiser's moments, with
    /// the metadata that lets `--resume` go on as if never stopped.
    fn save_checkpoint(&self, path: &std::path::Path, epochs: usize) -> Result<(), String> {
        let mut meta = self.checkpoint_meta(epochs);
        meta.push((rundir::OPTIMIZER, self.s.optimizer.to_string()));
        meta.push((rundir::OPTIMIZER_STEPS, self.opt.steps().to_string()));
        meta.push((rundir::BATCHES_DRAWN, self.batches_drawn.to_string()));
        let tensors: Vec<(String, Array2<f64>)> = self.weights.iter().cloned().chain(self.opt.state()).collect();
        save_checkpoint(path, &tensors, &meta).map_err(|e| e.to_string())
    }
}

impl Job for Training<'_> {
    type Out = Result<Vec<(String, Array2<f64>)>, String>;
    fn run<T: Float>(self, on: On) -> Self::Out {
        let (program, def, seed) = (self.program, self.def, self.s.seed);
        match on {
            On::Cpu { .. } => {
                let make = |b: usize| build_net::<T>(program, def, b, seed, true);
                let cpu = CpuTrainer::new(&make, self.trainable, self.s.method);
                #[cfg(feature = "mpi")]
                if let Some(r) = self.ranks {
                    let ranks = snnc_runtime::train::ranks::RankTrainer::new(cpu, r);
                    return self.train(ranks, |_, weights, data, labels| evaluate(&mut build_net::<T>(program, def, data.batch(), seed, false)?, weights, data, labels));
                }
                // The held-out trials on a network of their own, without derivatives.
                self.train(cpu, |_, weights, data, labels| evaluate(&mut build_net::<T>(program, def, data.batch(), seed, false)?, weights, data, labels))
            }
            #[cfg(feature = "cuda")]
            On::Cuda => {
                // Under MPI: each rank trains its share of every batch on a GPU of its own
                // (`gpu_of_rank`); the gradients are summed over the ranks on the host.
                #[cfg(feature = "mpi")]
                if let Some(r) = self.ranks {
                    let (_, share) = r.share(self.s.batch).map_err(|e| e.to_string())?;
                    let opened = gpu_of_rank(r.local_rank).and_then(|o| Ok((open_gpu::<T>(program, def, share, seed, self.trainable, self.s.method, o)?, o)));
                    let (gpu, ordinal) = opened_on_every_rank(r, opened)?;
                    // Rank 0 reports its own GPU and share.
                    println!(
                        "on {} (GPU {ordinal}): MPI rank 0 of {}, {share} of every batch of {}, each rank on a GPU of its own; gradients summed over MPI on the host",
                        snnc_runtime::gpu::Device::name(&gpu.net.dev),
                        r.size,
                        self.s.batch
                    );
                    let ranks = snnc_runtime::train::ranks::RankTrainer::new(gpu, r);
                    // The held-out batches (rank 0's) are whole batches: on a network of
                    // their own on this rank's GPU, made for the first and kept.
                    let mut held: Option<snnc_runtime::gpu::GpuNetwork<T, snnc_runtime::gpu::cuda::CudaDevice>> = None;
                    return self.train(ranks, move |_, weights, data, labels| {
                        if held.as_ref().is_some_and(|h| h.host.batch != data.batch()) {
                            // Another batch: the old network's device memory freed first.
                            drop(held.take());
                        }
                        let net = match held.take() {
                            Some(net) => net,
                            None => open_gpu_network::<T>(program, def, data.batch(), seed, false, ordinal).map_err(RuntimeError::Input)?,
                        };
                        evaluate(held.insert(net), weights, data, labels)
                    });
                }
                // The network and its gradient state are made once and kept on the device.
                let gpu = open_gpu::<T>(program, def, self.s.batch, seed, self.trainable, self.s.method, 0)?;
                println!("on {}", snnc_runtime::gpu::Device::name(&gpu.net.dev));
                // The held-out evaluation with the training network (reset, given the weights).
                self.train(gpu, |g, weights, data, labels| evaluate(&mut g.net, weights, data, labels))
            }
        }
    }
}

/// The held-out evaluation: loss and accuracy per trial, and how many trials.
#[derive(Clone, Debug)]
pub struct HeldOut {
    pub loss: f64,
    pub accuracy: f64,
    pub trials: usize,
}

impl Training<'_> {
    /// Held-out batches per evaluation: a dataset's whole split once (or at most
    /// `--test-batches` of it), or `--test-batches` of a generator's fresh trials.
    fn test_batches(&self) -> usize {
        // A follower rank leaves the held-out trials to rank 0.
        if self.follower && !self.args.evaluate_only {
            return 0;
        }
        let default = if self.args.evaluate_only { 8 } else { 4 };
        match (self.test_task.batches_per_pass(), self.args.test_batches) {
            (Some(pass), Some(n)) => n.min(pass),
            (Some(pass), None) => pass,
            (None, n) => n.unwrap_or(default),
        }
    }

    /// Evaluates the held-out trials with `weights`: the same ones every time (the
    /// task restarted); each counted once, the padding of a partial last batch not at all.
    #[allow(clippy::type_complexity)]
    fn held_out<T: Float, Tr: Trainer<T>>(
        &mut self,
        trainer: &mut Tr,
        held: &mut impl FnMut(&mut Tr, &[(String, Array2<f64>)], &mut dyn Sequence, &[usize]) -> Result<BatchReport, RuntimeError>,
    ) -> Result<HeldOut, String> {
        let batches = self.test_batches();
        let mut h = HeldOut { loss: 0.0, accuracy: 0.0, trials: 0 };
        self.test_task.restart();
        for b in 0..batches {
            if b > 0 {
                self.test_task.next_batch();
            }
            let labels = self.test_task.labels().to_vec();
            let r = held(trainer, &self.weights, self.test_task.as_mut(), &labels).map_err(|e| format!("held-out evaluation: {e}"))?;
            h.loss += r.loss * labels.len() as f64;
            h.accuracy += r.accuracy * labels.len() as f64;
            h.trials += labels.len();
        }
        let n = h.trials.max(1) as f64;
        (h.loss, h.accuracy) = (h.loss / n, h.accuracy / n);
        Ok(h)
    }

    /// Trains (or only evaluates) on `trainer`, with the held-out evaluation `held`;
    /// gives the final weights.
    #[allow(clippy::type_complexity)]
    fn train<T: Float, Tr: Trainer<T>>(
        mut self,
        mut trainer: Tr,
        mut held: impl FnMut(&mut Tr, &[(String, Array2<f64>)], &mut dyn Sequence, &[usize]) -> Result<BatchReport, RuntimeError>,
    ) -> Result<Vec<(String, Array2<f64>)>, String> {
        let args = self.args;
        if args.evaluate_only {
            if args.test_batches == Some(0) {
                return Err("--test-batches must be at least 1".into());
            }
            let t = self.held_out(&mut trainer, &mut held)?;
            let acc = if self.classifies { format!(", accuracy {:.1} %", 100.0 * t.accuracy) } else { String::new() };
            println!("held-out ({} trials): loss {:.4} per trial{acc}", t.trials, t.loss);
            self.hooks.epoch(self.start_epoch, Some(&t))?;
            return Ok(self.weights);
        }
        self.banner();
        if args.out.is_none() && !args.returns_weights && !self.follower {
            eprintln!("note: no --out DIR: the trained weights will not be saved");
        }
        let mut progress = Progress::new(self.s.epochs * args.batches);
        progress.quiet = self.follower;
        let mut last_checkpoint = None;
        for epoch in self.start_epoch..self.start_epoch + self.s.epochs {
            let test_loss = match self.epoch(epoch, &mut trainer, &mut held, &mut progress) {
                Ok(loss) => loss,
                Err(e) => {
                    let kept = last_checkpoint.map_or(String::new(), |e| format!("; the checkpoint of epoch {e} is kept"));
                    return Err(format!("{e}{kept}"));
                }
            };
            if let Some(dir) = &args.out {
                self.save_checkpoint(&dir.join("checkpoint.safetensors"), epoch + 1)?;
                last_checkpoint = Some(epoch + 1);
                self.keep_best(dir, epoch + 1, test_loss)?;
                if args.plot {
                    // A plot is a view of the log: failing to draw one stops nothing.
                    if let Err(e) = super::plot::curves_png(&dir.join("curves.png"), &self.curves.train, &self.curves.test) {
                        eprintln!("warning: {e}; training goes on");
                    }
                }
            }
            progress.epoch_done(epoch, self.start_epoch + self.s.epochs);
        }
        self.finish(last_checkpoint)?;
        Ok(self.weights)
    }

    /// Writes `best.safetensors` when the held-out loss after `epochs` is the lowest yet.
    fn keep_best(&mut self, dir: &std::path::Path, epochs: usize, test_loss: Option<f64>) -> Result<(), String> {
        let Some(loss) = test_loss.filter(|l| l.is_finite()) else { return Ok(()) };
        if self.best.is_some_and(|(_, b)| b <= loss) {
            return Ok(());
        }
        let mut meta = self.checkpoint_meta(epochs);
        meta.push(("test_loss", format!("{loss:e}")));
        save_checkpoint(&dir.join(rundir::BEST), &self.weights, &meta).map_err(|e| e.to_string())?;
        self.best = Some((epochs, loss));
        Ok(())
    }

    fn banner(&self) {
        let lr = match self.scales.iter().filter(|(_, s)| *s != 1.0).map(|(n, s)| format!("{n} x {s:.3e}")).collect::<Vec<_>>() {
            scaled if scaled.is_empty() => format!("lr {}", self.s.lr),
            scaled => format!("lr {} (scaled by the RMS of the initial values: {})", self.s.lr, scaled.join(", ")),
        };
        // Each batch norm carries gamma, beta and its two running estimates among the names.
        let norms = self.def.projections.iter().filter(|p| p.batch_norm).count();
        let norms_said = match norms {
            0 => String::new(),
            n => format!(", {n} batch norm{} (each batch on one network)", if n == 1 { "" } else { "s" }),
        };
        println!(
            "training {} ({} trainable projections, {} trainable params{norms_said}) on {} with {}, {} {lr}, batch {}",
            self.def.name,
            self.n_projections,
            self.trainable.len() - self.n_projections - 4 * norms,
            self.task,
            self.s.method,
            self.s.optimizer,
            self.s.batch,
        );
    }

    /// One epoch: its batches, each an optimiser step, then the held-out evaluation.
    #[allow(clippy::type_complexity)]
    fn epoch<T: Float, Tr: Trainer<T>>(
        &mut self,
        epoch: usize,
        trainer: &mut Tr,
        held: &mut impl FnMut(&mut Tr, &[(String, Array2<f64>)], &mut dyn Sequence, &[usize]) -> Result<BatchReport, RuntimeError>,
        progress: &mut Progress,
    ) -> Result<Option<f64>, String> {
        let args = self.args;
        // Exponential decay per epoch, counted from the first epoch (a resumed run goes on
        // with the schedule where it stopped).
        self.opt.lr = self.s.lr * self.s.lr_decay.powi(epoch as i32);
        let (mut sl, mut sa) = (0.0, 0.0);
        let mut rates: Vec<(String, f64)> = Vec::new();
        for b in 0..args.batches {
            self.train_task.next_batch();
            self.batches_drawn += 1;
            let labels = self.train_task.labels().to_vec();
            let r = train_batch(trainer, &mut self.weights, self.train_task.as_mut(), &labels, &mut self.opt, self.s.update_every)
                .map_err(|e| format!("epoch {epoch}, batch {b}: {e}"))?;
            if !r.loss.is_finite() {
                return Err(format!("the loss became {} at epoch {epoch}, batch {b}", r.loss));
            }
            sl += r.loss;
            sa += r.accuracy;
            if rates.is_empty() {
                rates = r.rates.iter().map(|(n, _)| (n.clone(), 0.0)).collect();
            }
            rates.iter_mut().zip(&r.rates).for_each(|(a, b)| a.1 += b.1);
            if let Some(log) = &mut self.log {
                log.row(format_args!("{epoch},{b},train,{:.6},{:.4}", r.loss, r.accuracy));
            }
            self.curves.train.push((r.loss, r.accuracy));
            self.hooks.batch(epoch, b, &r, &self.weights).map_err(|e| format!("epoch {epoch}, batch {b}: {e}"))?;
            progress.batch_done(epoch, b, args.batches);
        }
        let n = args.batches as f64;
        let rates: Vec<String> = rates.iter().map(|(p, r)| format!("{p} {:.1} Hz", r / n)).collect();
        let classifies = self.classifies;
        let acc = |what: &str, a: f64| if classifies { format!(", {what} {:.1} %", 100.0 * a) } else { String::new() };
        if self.test_batches() == 0 {
            println!("epoch {epoch}: loss {:.4}{}, rates {}", sl / n, acc("accuracy", sa / n), rates.join(", "));
            return self.hooks.epoch(epoch, None).map(|_| None);
        }
        let test = self.held_out(trainer, held)?;
        println!(
            "epoch {epoch}: loss {:.4}{}, test loss {:.4}{} ({} held-out trials), rates {}",
            sl / n,
            acc("accuracy", sa / n),
            test.loss,
            acc("test accuracy", test.accuracy),
            test.trials,
            rates.join(", ")
        );
        if let Some(log) = &mut self.log {
            log.row(format_args!("{epoch},,test,{:.6},{:.4}", test.loss, test.accuracy));
        }
        self.curves.test.push((self.curves.train.len(), test.loss, test.accuracy));
        self.hooks.epoch(epoch, Some(&test)).map(|_| Some(test.loss))
    }

    /// The final line: what the run wrote, and the log's write error if there was one.
    fn finish(&self, last_checkpoint: Option<usize>) -> Result<(), String> {
        let Some(dir) = &self.args.out else {
            println!("done; nothing written (no --out{})", if self.args.returns_weights { "; the weights are returned" } else { "" });
            return Ok(());
        };
        let mut wrote = vec![format!("{}", dir.join("log.csv").display())];
        if let Some(e) = last_checkpoint {
            wrote.push(format!("{} (after epoch {e})", dir.join("checkpoint.safetensors").display()));
        }
        if let Some((e, loss)) = self.best.filter(|_| last_checkpoint.is_some()) {
            wrote.push(format!("{} (after epoch {e}: the lowest held-out loss, {loss:.4})", dir.join(rundir::BEST).display()));
        }
        if self.args.plot && dir.join("curves.png").exists() {
            wrote.push(format!("{}", dir.join("curves.png").display()));
        }
        println!("wrote {}", wrote.join(", "));
        match self.log.as_ref().and_then(|l| l.error.as_ref().map(|e| (l, e))) {
            Some((l, e)) => Err(format!("`{}` is incomplete: {e} (the checkpoint is complete)", l.path.display())),
            None => Ok(()),
        }
    }
}

/// Progress on stderr: a line after each epoch, and within an epoch every 10 s, with
/// the time elapsed and an estimate of the time left.
struct Progress {
    start: std::time::Instant,
    last: std::time::Instant,
    total: usize,
    done: usize,
    /// A follower MPI rank: no progress lines.
    quiet: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let now = std::time::Instant::now();
        Progress { start: now, last: now, total, done: 0, quiet: false }
    }

    fn eta(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let left = elapsed / self.done.max(1) as f64 * (self.total - self.done.min(self.total)) as f64;
        format!("{elapsed:.0} s elapsed, about {left:.0} s left")
    }

    fn batch_done(&mut self, epoch: usize, b: usize, batches: usize) {
        self.done += 1;
        if !self.quiet && self.last.elapsed().as_secs_f64() >= 10.0 && b + 1 < batches {
            eprintln!("epoch {epoch}, batch {}/{batches}: {}", b + 1, self.eta());
            self.last = std::time::Instant::now();
        }
    }

    fn epoch_done(&mut self, epoch: usize, end: usize) {
        if self.quiet {
            return;
        }
        eprintln!("epoch {epoch} done ({} of {end}): {}", epoch + 1, self.eta());
        self.last = std::time::Instant::now();
    }
}

/// Opens GPU `ordinal` and moves the training network (built for learning, for `batch`
/// elements: the whole batch, or an MPI rank's share) there, with its gradient state.
#[cfg(feature = "cuda")]
#[allow(clippy::type_complexity)]
fn open_gpu<T: Float>(
    program: &Program,
    def: &NetworkDef,
    batch: usize,
    seed: u64,
    trainable: &[String],
    method: snnc_runtime::learn::Method,
    ordinal: usize,
) -> Result<Engine<snnc_runtime::gpu::GpuNetwork<T, snnc_runtime::gpu::cuda::CudaDevice>, snnc_runtime::gpu::GpuGradient<T>>, String> {
    use snnc_runtime::gpu::GpuGradient;
    let mut net = open_gpu_network::<T>(program, def, batch, seed, true, ordinal)?;
    let learner = GpuGradient::new(&mut net, trainable, method).map_err(|e| e.to_string())?;
    Ok(Engine { net, learner })
}

/// The network of `def` for `batch` elements on GPU `ordinal` (with derivatives when
/// `learning`).
#[cfg(feature = "cuda")]
fn open_gpu_network<T: Float>(
    program: &Program,
    def: &NetworkDef,
    batch: usize,
    seed: u64,
    learning: bool,
    ordinal: usize,
) -> Result<snnc_runtime::gpu::GpuNetwork<T, snnc_runtime::gpu::cuda::CudaDevice>, String> {
    use snnc_runtime::gpu::{GpuNetwork, cuda::CudaDevice};
    let dev = CudaDevice::open(ordinal).map_err(|e| e.to_string())?;
    let o = Options { batch, seed, learning, ..Options::default() };
    let err = |e: RuntimeError| e.to_string();
    // The host network only holds the structure and the starting state: its kernels
    // never run, so the interpreter's (no JIT) do.
    GpuNetwork::new(Network::<T>::without_kernels(program, def, &o).map_err(err)?, dev).map_err(err)
}

/// The GPU of an MPI rank: its rank among the ranks on its machine modulo the GPUs the
/// process sees (`CUDA_VISIBLE_DEVICES` respected: its GPUs are numbered from 0). With
/// more ranks on a machine than GPUs, ranks share GPUs in turn.
#[cfg(all(feature = "cuda", feature = "mpi"))]
fn gpu_of_rank(local_rank: usize) -> Result<usize, String> {
    match snnc_runtime::gpu::cuda::CudaDevice::count().map_err(|e| e.to_string())? {
        0 => Err("no CUDA device visible to this rank (CUDA_VISIBLE_DEVICES, or none on its machine)".into()),
        n => Ok(local_rank % n),
    }
}

/// `opened` when every rank opened its GPU; else an error on every rank (this rank's
/// own, or which ranks failed), so that none goes on to wait for a failed one.
#[cfg(all(feature = "cuda", feature = "mpi"))]
fn opened_on_every_rank<X>(r: &snnc_runtime::train::ranks::Ranks, opened: Result<X, String>) -> Result<X, String> {
    use snnc_runtime::partition::Exchange;
    let all = r.all_gather(&[u32::from(opened.is_err())]);
    let failed: Vec<usize> = (0..all.len()).filter(|&i| all[i] != [0]).collect();
    match opened {
        Ok(x) if failed.is_empty() => Ok(x),
        Ok(_) => Err(format!("MPI ranks {failed:?} could not open their GPU (see their errors)")),
        Err(e) => Err(format!("rank {} of {}: {e}", r.rank, r.size)),
    }
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
