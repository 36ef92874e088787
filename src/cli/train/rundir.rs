//! A run directory (`--out DIR`): `log.csv`, `checkpoint.safetensors` (the last epoch),
//! `best.safetensors` (the epoch of the lowest held-out loss), `curves.png`.
//! A new run refuses a directory that already holds one (unless `--overwrite`); a
//! resumed run cuts the log back to its checkpoint, so that rows written after the
//! checkpoint by an interrupted run are not repeated; write errors are reported.

use ndarray::Array2;
use snnc_runtime::train::{Optimizer, OptimizerKind, load_checkpoint, load_checkpoint_and_optimizer, remove_stale_checkpoint_tmp};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Trainable tensors by name.
type Weights = Vec<(String, Array2<f64>)>;

pub(super) const LOG_HEADER: &str = "epoch,batch,split,loss,accuracy";

/// The weights of the epoch with the lowest held-out loss so far, as Keras'
/// `ModelCheckpoint(save_best_only=True)` keeps them: its metadata holds `epoch` and
/// `test_loss`.
pub(super) const BEST: &str = "best.safetensors";

/// What `--plot` draws: per training batch (loss, accuracy); per epoch (batches so far,
/// test loss, test accuracy).
#[derive(Default)]
pub(super) struct Curves {
    pub train: Vec<(f64, f64)>,
    pub test: Vec<(usize, f64, f64)>,
}

/// `log.csv`, open for appending rows. A write error is reported at once and remembered:
/// training goes on (checkpoints are still written) and the run ends in an error.
pub(super) struct Log {
    pub path: PathBuf,
    file: std::fs::File,
    pub error: Option<String>,
}

impl Log {
    pub fn row(&mut self, row: std::fmt::Arguments) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = writeln!(self.file, "{row}") {
            eprintln!("warning: cannot write `{}`: {e}; training goes on, but the log will be incomplete", self.path.display());
            self.error = Some(e.to_string());
        }
    }
}

/// A row of `log.csv`: (epoch, whether a test row, loss, accuracy); `None` for the header
/// or a row an interrupted write cut short.
fn parse_row(line: &str) -> Option<(usize, bool, f64, f64)> {
    let f: Vec<&str> = line.split(',').collect();
    let [epoch, _, split, loss, acc] = f[..] else { return None };
    let test = match split {
        "train" => false,
        "test" => true,
        _ => return None,
    };
    Some((epoch.parse().ok()?, test, loss.parse().ok()?, acc.parse().ok()?))
}

/// Prepares `dir` for a run: refuses one that already holds a run unless resuming or
/// `overwrite`; removes a temporary checkpoint an interrupted run left; opens the log,
/// cut back to the epochs before `resume_epoch` when resuming (the rows of later epochs
/// were written after the checkpoint) and returns what it already holds as curves.
pub(super) fn open(dir: &Path, resume_epoch: Option<usize>, overwrite: bool) -> Result<(Log, Curves, Option<(usize, f64)>), String> {
    let (path, ck, best) = (dir.join("log.csv"), dir.join("checkpoint.safetensors"), dir.join(BEST));
    if resume_epoch.is_none() && !overwrite {
        let held: Vec<&str> = [("log.csv", &path), ("checkpoint.safetensors", &ck), (BEST, &best)].iter().filter(|(_, p)| p.exists()).map(|(n, _)| *n).collect();
        if !held.is_empty() {
            return Err(format!(
                "`{}` already holds a training run ({}): continue it with `--resume {}`, or replace it with `--overwrite`",
                dir.display(),
                held.join(", "),
                ck.display()
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    for c in [&ck, &best] {
        if remove_stale_checkpoint_tmp(c).map_err(|e| e.to_string())? {
            eprintln!("note: removed `{}`, a partial checkpoint an interrupted run left", c.with_extension("safetensors.tmp").display());
        }
    }
    let best_loss = best_so_far(&best, resume_epoch)?;
    let cannot = |e: std::io::Error| format!("cannot write `{}`: {e}", path.display());
    let mut curves = Curves::default();
    let file = match resume_epoch {
        // A regular file only: a device (say /dev/full) would read forever.
        Some(epoch) if path.metadata().is_ok_and(|m| m.is_file()) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            let kept = cut_log(&text, epoch, &mut curves);
            let dropped = text.lines().filter(|l| !l.is_empty() && *l != LOG_HEADER).count().saturating_sub(kept.len() - 1);
            if dropped > 0 {
                eprintln!("note: `{}`: dropped {dropped} rows written after the checkpoint (epoch {epoch} on)", path.display());
            }
            // Written whole and renamed into place: an interruption leaves the old log.
            let tmp = path.with_extension("csv.tmp");
            std::fs::write(&tmp, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).and_then(|_| std::fs::rename(&tmp, &path)).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                cannot(e)
            })?;
            std::fs::OpenOptions::new().append(true).open(&path).map_err(cannot)?
        }
        _ => {
            let mut f = std::fs::File::create(&path).map_err(cannot)?;
            writeln!(f, "{LOG_HEADER}").map_err(cannot)?;
            f
        }
    };
    Ok((Log { path, file, error: None }, curves, best_loss))
}

/// The epochs done and the held-out loss of `best` (`best.safetensors`), which a resumed
/// run must beat; a new
/// run, or a best written after the checkpoint resumed from (by an interrupted run whose
/// later epochs are dropped), removes it and starts afresh.
fn best_so_far(best: &Path, resume_epoch: Option<usize>) -> Result<Option<(usize, f64)>, String> {
    if !best.exists() {
        return Ok(None);
    }
    let kept = match resume_epoch {
        Some(epoch) => {
            let (_, meta) = load_checkpoint(best).map_err(|e| e.to_string())?;
            match (meta.get("epoch").and_then(|v| v.parse::<usize>().ok()), meta.get("test_loss").and_then(|v| v.parse::<f64>().ok())) {
                (Some(e), Some(loss)) if e <= epoch => Some((e, loss)),
                _ => {
                    eprintln!("note: removed `{}`: it is not from the epochs before the checkpoint resumed from", best.display());
                    None
                }
            }
        }
        None => None,
    };
    if kept.is_none() {
        std::fs::remove_file(best).map_err(|e| format!("cannot remove `{}`: {e}", best.display()))?;
    }
    Ok(kept)
}

/// The header and the rows of `text` (a log) of epochs before `epoch`, which also go into
/// `curves`; rows of later epochs, and rows an interrupted write cut short, are left out.
fn cut_log(text: &str, epoch: usize, curves: &mut Curves) -> Vec<String> {
    let mut kept = vec![LOG_HEADER.to_string()];
    for line in text.lines() {
        let Some((e, test, loss, acc)) = parse_row(line) else { continue };
        if e >= epoch {
            continue;
        }
        match test {
            false => curves.train.push((loss, acc)),
            true => curves.test.push((curves.train.len(), loss, acc)),
        }
        kept.push(line.to_string());
    }
    kept
}

/// The weights to start from: `initial` (every trainable tensor, from its initialiser)
/// replaced by the checkpoint's. A checkpoint lacking one is refused, naming the missing
/// tensors, unless `init_missing` (those then start from their initialisers, as said on
/// stderr); a tensor the network does not train, or of the wrong shape, is refused.
/// Returns the weights in `initial`'s order and the checkpoint's epoch count.
/// `structure`: the fingerprints (`structure.NAME`) of the network's sparse trainable
/// projections, which the checkpoint's must equal where it has them.
pub(super) fn resume(ck: &Path, mut initial: Weights, network: &str, init_missing: bool, structure: &[(String, String)]) -> Result<(Weights, usize, Progress), String> {
    let (saved, moments, meta) = load_checkpoint_and_optimizer(ck).map_err(|e| e.to_string())?;
    for (key, want) in structure {
        if meta.get(key).is_some_and(|got| got != want) {
            let name = key.trim_start_matches("structure.");
            return Err(format!(
                "checkpoint `{}`: `{name}` was trained on other synapses than network `{network}` has (another seed, probability or connection file): its weights cannot be loaded",
                ck.display()
            ));
        }
    }
    let names = |w: &[(String, Array2<f64>)]| w.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>().join(", ");
    for (name, w) in &saved {
        let Some((_, into)) = initial.iter_mut().find(|(n, _)| n == name) else {
            return Err(format!("checkpoint `{}` has `{name}`, which network `{network}` does not train (it trains: {})", ck.display(), names(&initial)));
        };
        if into.dim() != w.dim() {
            return Err(format!("checkpoint `{}`: `{name}` is {}x{}, network `{network}` needs {}x{}", ck.display(), w.nrows(), w.ncols(), into.nrows(), into.ncols()));
        }
        *into = w.clone();
    }
    let missing: Vec<&str> = initial.iter().map(|(n, _)| n.as_str()).filter(|n| !saved.iter().any(|(m, _)| m == n)).collect();
    if !missing.is_empty() {
        if !init_missing {
            return Err(format!(
                "checkpoint `{}` lacks {} (trained by network `{network}`): give `--init-missing` to start {} from {} initialiser",
                ck.display(),
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "its" } else { "their" },
            ));
        }
        eprintln!("note: {} not in `{}`: starting from the initialiser (--init-missing)", missing.join(", "), ck.display());
        if missing.iter().any(|m| m.starts_with(snnc_runtime::batchnorm::STATE_PREFIX)) {
            eprintln!("note: a batch norm's running statistics start at mean 0 and variance 1: evaluation normalises with those until training updates them");
        }
    }
    let number = |key: &str| match meta.get(key) {
        None => Ok(None),
        Some(e) => e.parse::<u64>().map(Some).map_err(|_| format!("checkpoint `{}`: its `{key}` `{e}` is not a whole number", ck.display())),
    };
    let epoch = number("epoch")?.unwrap_or(0) as usize;
    let progress = Progress {
        optimizer: match (number(OPTIMIZER_STEPS)?, meta.get(OPTIMIZER)) {
            (Some(steps), Some(kind)) => Some((kind.clone(), i32::try_from(steps).map_err(|_| format!("checkpoint `{}`: {steps} optimiser steps", ck.display()))?, moments)),
            _ => None,
        },
        batches_drawn: number(BATCHES_DRAWN)?,
        from: ck.to_path_buf(),
    };
    Ok((initial, epoch, progress))
}

/// Checkpoint metadata besides the weights that lets a resumed run go on as the
/// uninterrupted one would: the optimiser (its kind and update count; Adam's moments are
/// tensors of the checkpoint) and the training batches drawn so far.
pub(super) const OPTIMIZER: &str = "optimizer";
pub(super) const OPTIMIZER_STEPS: &str = "optimizer_steps";
pub(super) const BATCHES_DRAWN: &str = "batches_drawn";

/// Where a checkpoint left its run ([`resume`]); absent in checkpoints written before
/// snnc kept it.
pub(super) struct Progress {
    /// (kind, updates taken, Adam's moments).
    optimizer: Option<(String, i32, Weights)>,
    pub batches_drawn: Option<u64>,
    from: PathBuf,
}

impl Progress {
    /// Puts the checkpoint's optimiser state into `opt` (trained tensors `weights`): the
    /// next update is the one the interrupted run would have taken. A checkpoint without
    /// it, or of another optimiser, leaves `opt` new, with a note.
    pub fn restore(&self, opt: &mut Optimizer, kind: OptimizerKind, weights: &Weights) -> Result<(), String> {
        match &self.optimizer {
            Some((k, steps, moments)) if *k == kind.to_string() => {
                opt.restore(*steps, moments, weights).map_err(|e| format!("checkpoint `{}`: {e}", self.from.display()))
            }
            Some((k, ..)) => {
                eprintln!("note: `{}` was trained with {k}; {kind} starts anew (no moments, step count 0)", self.from.display());
                Ok(())
            }
            None => {
                eprintln!("note: `{}` holds no optimiser state (an older checkpoint): the optimiser starts anew", self.from.display());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row that cannot be written is reported once and remembered (the run then ends
    /// in an error); later rows are not attempted.
    #[cfg(unix)]
    #[test]
    fn log_write_errors_are_reported_once() {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
        let mut log = Log { path: PathBuf::from("/dev/full"), file, error: None };
        log.row(format_args!("0,0,train,1.0,0.5"));
        assert!(log.error.as_deref().is_some_and(|e| e.contains("No space left")), "{:?}", log.error);
        log.row(format_args!("0,1,train,1.0,0.5"));
    }

    /// A resumed run's curves start with what the log held before its checkpoint.
    #[test]
    fn a_cut_log_keeps_earlier_rows_as_curves() {
        let text = format!("{LOG_HEADER}\n0,0,train,0.9,0.5\n0,1,train,0.8,0.5\n0,,test,0.7,0.6\n1,0,train,0.6,0.7\n1,1,tr");
        let mut curves = Curves::default();
        let kept = cut_log(&text, 1, &mut curves);
        assert_eq!(kept.len(), 4);
        assert_eq!(curves.train, vec![(0.9, 0.5), (0.8, 0.5)]);
        assert_eq!(curves.test, vec![(2, 0.7, 0.6)]);
    }
}
