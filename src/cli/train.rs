//! `snnc train FILE --network NAME --method ... --task dms|evidence ...`: online training.
//! Settings come from the network's `train { }` block; command-line flags override them.

use super::Reporter;
use super::grad::MethodArg;
use crate::cli::run::parse_time;
use snnc_compiler::sema::{LoadOptions, TrainValue};
use snnc_runtime::learn::{Method, Sequence};
use snnc_runtime::network::{JitFactory, Network, Options};
use snnc_runtime::train::tasks::{Dms, Evidence};
use snnc_runtime::train::{Optimizer, OptimizerKind, load_checkpoint, save_checkpoint, train_batch, weights_of};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum TaskArg {
    Dms,
    Evidence,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum OptArg {
    Adam,
    Sgd,
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
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Delay period of the task (`1s`, `500ms`).
    #[arg(long, value_parser = parse_time)]
    pub delay: Option<f64>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batches per epoch.
    #[arg(long, default_value_t = 10)]
    pub batches: usize,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptArg>,
    /// Clip the global gradient norm.
    #[arg(long)]
    pub grad_clip: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for `log.csv` and `checkpoint.safetensors`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue from a checkpoint.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Where the gradients are computed: the CPU (JIT kernels); `cuda` is not supported
    /// for training yet.
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: TrainBackend,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum TrainBackend {
    Jit,
    Cuda,
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    if args.backend == TrainBackend::Cuda {
        return fail("training on the GPU is not supported yet (`snnc run --backend cuda` simulates on it); train with `--backend jit`".into());
    }
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
    let task = match args.task.or_else(|| match name("task").as_deref() {
        Some("dms") => Some(TaskArg::Dms),
        Some("evidence") => Some(TaskArg::Evidence),
        _ => None,
    }) {
        Some(t) => t,
        None => return fail("no task: give --task dms|evidence or `task = ...` in the train block".into()),
    };
    let optimizer = match args.optimizer.map(|o| o == OptArg::Sgd).or_else(|| name("optimizer").map(|o| o == "sgd")) {
        Some(true) => OptimizerKind::Sgd,
        _ => OptimizerKind::Adam,
    };
    let lr = args.lr.or_else(|| num("lr")).unwrap_or(1e-3);
    let epochs = args.epochs.or_else(|| num("epochs").map(|v| v as usize)).unwrap_or(1);
    let batch = args.batch.or_else(|| num("batch").map(|v| v as usize)).unwrap_or(16).max(1);
    let seed = args.seed.or_else(|| num("seed").map(|v| v as u64)).unwrap_or(0);
    let clip = args.grad_clip.or_else(|| num("grad_clip"));
    let dt = def.dt.unwrap_or(1e-3);
    let delay = args.delay.unwrap_or(1.0);
    let trainable: Vec<String> = def.projections.iter().filter(|p| p.trainable).map(|p| p.name.clone()).collect();
    let make_net = || Network::<f64>::build(&program, def, &Options { batch, seed, learning: true, ..Options::default() }, &JitFactory);
    let net = match make_net() {
        Ok(n) => n,
        Err(e) => return fail(e.to_string()),
    };
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
    let mut opt = Optimizer::new(optimizer, lr, clip);
    let mut log = match &args.out {
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
                        let _ = writeln!(f, "epoch,batch,loss,accuracy");
                    }
                    Some(f)
                }
                Err(e) => return fail(format!("cannot write `{}`: {e}", path.display())),
            }
        }
        None => None,
    };
    println!(
        "training {} ({} trainable projections) on {:?} with {:?}, {:?} lr {lr}, batch {batch}",
        def.name,
        trainable.len(),
        task,
        method,
        optimizer
    );
    let mut dms = Dms::new(dt, delay, batch, seed);
    let mut evi = Evidence::new(dt, delay, batch, seed);
    for epoch in start_epoch..start_epoch + epochs {
        let (mut sl, mut sa) = (0.0, 0.0);
        for b in 0..args.batches {
            let (data, labels): (&mut dyn Sequence, Vec<usize>) = match task {
                TaskArg::Dms => {
                    dms.new_batch();
                    let l = dms.labels.clone();
                    (&mut dms, l)
                }
                TaskArg::Evidence => {
                    evi.new_batch();
                    let l = evi.labels.clone();
                    (&mut evi, l)
                }
            };
            let r = match train_batch(&make_net, &mut weights, &trainable, data, &labels, method, &mut opt) {
                Ok(r) => r,
                Err(e) => return fail(e.to_string()),
            };
            if !r.loss.is_finite() {
                return fail(format!("the loss became {} at epoch {epoch}, batch {b}; the last checkpoint is kept", r.loss));
            }
            sl += r.loss;
            sa += r.accuracy;
            if let Some(f) = &mut log {
                let _ = writeln!(f, "{epoch},{b},{:.6},{:.4}", r.loss, r.accuracy);
            }
        }
        let n = args.batches.max(1) as f64;
        println!("epoch {epoch}: loss {:.4}, accuracy {:.1} %", sl / n, 100.0 * sa / n);
        if let Some(dir) = &args.out {
            if let Err(e) = save_checkpoint(&dir.join("checkpoint.safetensors"), &weights, &[("epoch", (epoch + 1).to_string())]) {
                return fail(e.to_string());
            }
        }
    }
    ExitCode::SUCCESS
}
