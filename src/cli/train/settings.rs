//! The settings of a training run: each from its command-line flag, else from the
//! network's `train { }` block, else a default; every one checked, and a refusal names
//! where the bad value came from (`--lr`, or `lr` in the train block).

use super::{Args, OptArg};
use crate::cli::args::MethodArg;
use snnc_compiler::sema::{NetworkDef, TrainValue};
use snnc_runtime::learn::Method;
use snnc_runtime::learn::Loss;
use snnc_runtime::train::OptimizerKind;

/// What [`Settings::of`] resolves.
pub(super) struct Settings {
    pub method: Method,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub lr_decay: f64,
    pub epochs: usize,
    pub batch: usize,
    /// Where the batch size came from (`--batch`, or the train block), for messages.
    pub batch_from: String,
    pub seed: u64,
    pub clip: Option<f64>,
    /// Decoupled weight decay (AdamW; L2 for SGD), 0 for none.
    pub weight_decay: f64,
    pub update_every: Option<usize>,
}

/// A number of the train block, or its flag's value: (value, where it came from).
pub(super) struct Source<'a> {
    def: &'a NetworkDef,
}

impl Source<'_> {
    fn block(&self, key: &str) -> Option<TrainValue> {
        self.def.train.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn name(&self, key: &str) -> Option<String> {
        match self.block(key) {
            Some(TrainValue::Name(v)) | Some(TrainValue::Text(v)) => Some(v),
            _ => None,
        }
    }

    /// `flag`'s value, else the block's `key`, with a description of where it came from.
    fn number(&self, flag: Option<f64>, flag_name: &str, key: &str) -> Option<(f64, String)> {
        match (flag, self.block(key)) {
            (Some(v), _) => Some((v, format!("`{flag_name}`"))),
            (None, Some(TrainValue::Number(v))) => Some((v, format!("`{key}` in the train block of network `{}`", self.def.name))),
            _ => None,
        }
    }

    /// A count (a whole number >= `min`).
    fn count(&self, flag: Option<usize>, flag_name: &str, key: &str, min: usize) -> Result<Option<(usize, String)>, String> {
        let Some((v, from)) = self.number(flag.map(|v| v as f64), flag_name, key) else { return Ok(None) };
        if !(v.fract() == 0.0 && v >= min as f64 && v <= usize::MAX as f64) {
            return Err(format!("{from} must be a whole number of at least {min}, got {v}"));
        }
        Ok(Some((v as usize, from)))
    }
}

/// Keys the checker accepts in a train block (they are part of the language) that
/// `snnc train` does not read: a block naming one is refused rather than trained
/// differently than written. Each with what to do instead.
const UNREAD: &[(&str, &str)] = &[
    ("data", "name a dataset with `task = \"npz:PATH\"` (or images:, shd:, events:)"),
    ("seq_len", "a sequence's length is the task's (`--delay`, `--steps`, `--max-time`)"),
    ("eval_every", "the held-out set is evaluated after every epoch (`--test-batches`)"),
    ("loss_steps", "the steps a loss is computed on are the task's (its mask)"),
];

impl Source<'_> {
    /// `etrace_rank = r`: the trace decay (r - 1) / (r + 1), with where it came from.
    fn etrace_rank(&self) -> Result<Option<(f64, String)>, String> {
        let Some((r, from)) = self.number(None, "", "etrace_rank") else {
            return match self.block("etrace_rank") {
                Some(v) => Err(format!("`etrace_rank` in the train block of network `{}` must be a number, got {v:?}", self.def.name)),
                None => Ok(None),
            };
        };
        if self.block("etrace_decay").is_some() {
            return Err(format!("the train block of network `{}` gives both `etrace_decay` and `etrace_rank`: give one", self.def.name));
        }
        if !(r > 1.0 && r.is_finite()) {
            return Err(format!("{from}: the trace rank must be a number above 1 (decay (r - 1) / (r + 1)), got {r}"));
        }
        Ok(Some(((r - 1.0) / (r + 1.0), from)))
    }

    fn refuse_unread(&self) -> Result<(), String> {
        match UNREAD.iter().find(|(k, _)| self.block(k).is_some()) {
            Some((k, instead)) => Err(format!("`{k}` in the train block of network `{}` is not read by `snnc train`: remove it; {instead}", self.def.name)),
            None => Ok(()),
        }
    }

    /// The train block's `loss`, checked against the loss `task_loss` the task trains
    /// with (the task decides it: labels give cross-entropy, values the squared error).
    pub(super) fn check_loss(def: &NetworkDef, task_loss: Loss) -> Result<(), String> {
        let Some(v) = (Source { def }).block("loss") else { return Ok(()) };
        let asked = match &v {
            TrainValue::Name(n) | TrainValue::Text(n) => match n.as_str() {
                "mse" => Some(Loss::Mse),
                "cross_entropy" | "ce" => Some(Loss::CrossEntropy),
                _ => None,
            },
            TrainValue::Number(_) => None,
        };
        let name = |l: Loss| match l {
            Loss::Mse => "mse",
            Loss::CrossEntropy => "cross_entropy",
        };
        match asked {
            None => Err(format!("`loss` in the train block of network `{}`: unknown loss {v:?} (mse, cross_entropy)", def.name)),
            Some(l) if l != task_loss => Err(format!(
                "`loss = {}` in the train block of network `{}`, but the task trains with `{}` (labels give cross_entropy, target values mse): change the block or the task",
                name(l),
                def.name,
                name(task_loss)
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Refuses a value that is not finite and strictly positive.
fn positive(v: Option<(f64, String)>, what: &str) -> Result<Option<f64>, String> {
    match v {
        Some((v, from)) if !(v > 0.0 && v.is_finite()) => Err(format!("{from}: the {what} must be a positive number, got {v}")),
        v => Ok(v.map(|(v, _)| v)),
    }
}

impl Settings {
    /// The run's settings from `args` over `def`'s train block, checked (an evaluation,
    /// `args.evaluate_only`, has no epochs or batches per epoch).
    pub fn of(args: &Args, def: &NetworkDef) -> Result<Settings, String> {
        let src = Source { def };
        let method_name = args
            .method
            .map(|m| match m {
                MethodArg::Bptt => "bptt",
                MethodArg::DRtrl => "d_rtrl",
                MethodArg::EsDRtrl => "es_d_rtrl",
            })
            .map(String::from)
            .or_else(|| src.name("method"));
        let method = match method_name.as_deref() {
            Some("bptt") => Method::Bptt,
            Some("d_rtrl") => Method::DRtrl,
            Some("es_d_rtrl") | None => {
                let decay = match src.etrace_rank()? {
                    Some(alpha) if args.etrace_decay.is_none() => Some(alpha),
                    _ => src.number(args.etrace_decay, "--etrace-decay", "etrace_decay"),
                };
                if let Some((d, from)) = &decay
                    && !(*d > 0.0 && *d < 1.0)
                {
                    return Err(format!("{from}: the trace decay must be between 0 and 1 (exclusive), got {d}"));
                }
                Method::EsDRtrl { decay: decay.map_or(0.99, |d| d.0) }
            }
            Some(other) => return Err(format!("unknown method `{other}` (bptt, d_rtrl, es_d_rtrl)")),
        };
        let optimizer = match args.optimizer.map(|o| o == OptArg::Sgd).or_else(|| src.name("optimizer").map(|o| o == "sgd")) {
            Some(true) => OptimizerKind::Sgd,
            _ => OptimizerKind::Adam,
        };
        let lr = positive(src.number(args.lr, "--lr", "lr"), "learning rate")?.unwrap_or(1e-3);
        let lr_decay = match src.number(args.lr_decay, "--lr-decay", "lr_decay") {
            Some((d, from)) if !(d > 0.0 && d <= 1.0) => return Err(format!("{from}: the learning-rate decay must be in (0, 1], got {d}")),
            d => d.map_or(1.0, |d| d.0),
        };
        let clip = positive(src.number(args.grad_clip, "--grad-clip", "grad_clip"), "gradient-norm clip")?;
        let weight_decay = match src.number(args.weight_decay, "--weight-decay", "weight_decay") {
            Some((d, from)) if !(d >= 0.0 && d.is_finite()) => return Err(format!("{from}: the weight decay must be a finite number >= 0, got {d}")),
            d => d.map_or(0.0, |d| d.0),
        };
        let evaluating = args.evaluate_only;
        let epochs = if evaluating { 0 } else { src.count(args.epochs, "--epochs", "epochs", 1)?.map_or(1, |e| e.0) };
        let (batch, batch_from) = src.count(args.batch, "--batch", "batch", 1)?.unwrap_or((16, "the default batch".into()));
        if !evaluating && args.batches == 0 {
            return Err("`--batches` (batches per epoch) must be at least 1".into());
        }
        // A seed flag is any u64 (not through f64, which would round large ones).
        let seed = match args.seed {
            Some(s) => s,
            None => src.count(None, "--seed", "seed", 0)?.map_or(0, |s| s.0 as u64),
        };
        let update_every = src.count(args.update_every, "--update-every", "update_every", 1)?.map(|u| u.0);
        src.refuse_unread()?;
        Ok(Settings { method, optimizer, lr, lr_decay, epochs, batch, batch_from, seed, clip, weight_decay, update_every })
    }
}
