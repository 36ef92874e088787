//! The settings of a training run: each from its command-line flag, else from the
//! network's `train { }` block, else a default; every one checked, and a refusal names
//! where the bad value came from (`--lr`, or `lr` in the train block).

use super::{Args, OptArg};
use crate::cli::args::MethodArg;
use snnc_compiler::sema::{NetworkDef, TrainValue};
use snnc_runtime::learn::Method;
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
struct Source<'a> {
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
                let decay = src.number(args.etrace_decay, "--etrace-decay", "etrace_decay");
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
        Ok(Settings { method, optimizer, lr, lr_decay, epochs, batch, batch_from, seed, clip, weight_decay, update_every })
    }
}
