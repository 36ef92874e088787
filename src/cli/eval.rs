//! `snnc eval FILE --weights CKPT`: a training run with no training (the held-out
//! evaluation `snnc train` reports each epoch, on the checkpoint's weights).

use super::Reporter;
use super::args::TrainBackend;
use super::train::{Args, TaskOpts, run};
use snnc_compiler::sema::LoadOptions;
use std::path::PathBuf;
use std::process::ExitCode;

/// `snnc eval FILE --weights CKPT`: loss and accuracy of trained weights on the task's
/// held-out trials (the ones `snnc train` reports each epoch).
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// A checkpoint written by `snnc train` (`DIR/checkpoint.safetensors`).
    #[arg(long, value_name = "CKPT")]
    pub weights: PathBuf,
    #[command(flatten)]
    pub task: TaskOpts,
    #[arg(long)]
    pub batch: Option<usize>,
    /// Held-out batches to evaluate. Default: a dataset's whole held-out split, each
    /// sample once; 8 batches of fresh trials for a generated task (dms, evidence).
    #[arg(long)]
    pub test_batches: Option<usize>,
    /// Evaluate the trainable tensors the checkpoint lacks with their initial values
    /// (without it, a checkpoint lacking one is refused).
    #[arg(long)]
    pub init_missing: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the network in f64 (the default is f32).
    #[arg(long)]
    pub f64: bool,
}

pub fn eval(a: EvalArgs, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let args = Args {
        file: a.file,
        network: a.network,
        method: None,
        etrace_decay: None,
        task: a.task,
        epochs: Some(0),
        batches: 0,
        batch: a.batch,
        lr: None,
        lr_decay: None,
        optimizer: None,
        grad_clip: None,
        weight_decay: None,
        update_every: None,
        seed: a.seed,
        out: None,
        resume: Some(a.weights),
        init_missing: a.init_missing,
        overwrite: false,
        test_batches: a.test_batches,
        plot: false,
        backend: TrainBackend::Jit,
        f64: a.f64,
        evaluate_only: true,
        start_weights: Vec::new(),
        returns_weights: false,
    };
    run(args, opts, reporter)
}
