//! `Program.train` and `Program.evaluate`: `snnc train` / `snnc eval` with their
//! options as keyword arguments, a callback after every batch, weights as dicts.

use crate::convert::{OnThisThread, runtime_err};
use crate::network::weights_from;
use ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};
use snnc::cli::train::{Args, HeldOut, Hooks, train_program};
use snnc::compiler::sema::Program;
use snnc::runtime::train::BatchReport;

/// The command line of `snnc train`, parsed by the command's own parser.
#[derive(clap::Parser)]
#[command(name = "train", no_binary_name = false)]
struct TrainCommand {
    #[command(flatten)]
    args: Args,
}

/// `snnc train`'s arguments from keyword options: `epochs=3` is `--epochs 3`,
/// `grad_clip=1.0` `--grad-clip 1.0`, `plot=True` `--plot` (False and None: left out).
pub fn parse_args(entry: &str, network: Option<&str>, options: Option<&Bound<'_, PyDict>>) -> PyResult<Args> {
    let mut argv = vec!["train".to_string(), entry.to_string()];
    if let Some(n) = network {
        argv.extend(["--network".to_string(), n.to_string()]);
    }
    if let Some(options) = options {
        for (k, v) in options.iter() {
            let flag = format!("--{}", k.extract::<String>()?.replace('_', "-"));
            if v.is_none() {
                continue;
            }
            if let Ok(b) = v.cast::<PyBool>() {
                if b.is_true() {
                    argv.push(flag);
                }
                continue;
            }
            argv.push(format!("{flag}={}", v.str()?.to_cow()?));
        }
    }
    use clap::Parser;
    let cmd = TrainCommand::try_parse_from(&argv).map_err(|e| PyValueError::new_err(e.render().to_string().trim_end().to_string()))?;
    Ok(cmd.args)
}

/// What a run reports to Python: the callback, the history, the latest weights, and
/// the Python error that stopped it (a callback's exception, Ctrl-C).
struct PyHooks {
    callback: Option<Py<PyAny>>,
    /// Per batch: epoch, batch and its report.
    history: Vec<(usize, usize, BatchReport)>,
    /// Per epoch: its held-out evaluation.
    tests: Vec<(usize, Option<HeldOut>)>,
    latest: Option<Vec<(String, Array2<f64>)>>,
    error: Option<PyErr>,
    stopped: bool,
}

/// The message a stop by the callback gives the run (it ends like a failed batch).
const STOPPED: &str = "stopped by the callback";

fn weights_dict<'py>(py: Python<'py>, weights: &[(String, Array2<f64>)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (n, w) in weights {
        d.set_item(n, w.clone().into_pyarray(py))?;
    }
    Ok(d)
}

/// A batch's report as the callback and the history give it.
fn batch_dict<'py>(py: Python<'py>, epoch: usize, b: usize, r: &BatchReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", epoch)?;
    d.set_item("batch", b)?;
    d.set_item("loss", r.loss)?;
    d.set_item("accuracy", r.accuracy)?;
    d.set_item("rates", r.rates.clone().into_pyobject(py)?)?;
    Ok(d)
}

impl PyHooks {
    fn call(&mut self, epoch: usize, b: usize, r: &BatchReport, weights: &[(String, Array2<f64>)]) -> PyResult<bool> {
        Python::attach(|py| {
            py.check_signals()?;
            let Some(cb) = &self.callback else { return Ok(true) };
            let d = batch_dict(py, epoch, b, r)?;
            d.set_item("weights", weights_dict(py, weights)?)?;
            let ret = cb.call1(py, (d,))?;
            // `False` stops the run; None or anything else goes on.
            Ok(!ret.bind(py).is_instance_of::<PyBool>() || ret.extract::<bool>(py)?)
        })
    }
}

impl Hooks for PyHooks {
    fn batch(&mut self, epoch: usize, b: usize, r: &BatchReport, weights: &[(String, Array2<f64>)]) -> Result<(), String> {
        self.history.push((epoch, b, r.clone()));
        self.latest = Some(weights.to_vec());
        match self.call(epoch, b, r, weights) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.stopped = true;
                Err(STOPPED.into())
            }
            Err(e) => {
                self.error = Some(e);
                Err("a Python error".into())
            }
        }
    }

    fn epoch(&mut self, epoch: usize, test: Option<&HeldOut>) -> Result<(), String> {
        self.tests.push((epoch, test.cloned()));
        Python::attach(|py| py.check_signals()).map_err(|e| {
            self.error = Some(e);
            "interrupted".to_string()
        })
    }
}

/// Runs `args` on network `index` of `program` with the GIL released, calling
/// `callback` after every batch; gives {"weights", "history", "test", "stopped"}.
pub fn run<'py>(py: Python<'py>, program: &Program, index: usize, args: Args, callback: Option<Py<PyAny>>) -> PyResult<Bound<'py, PyDict>> {
    let mut hooks = PyHooks { callback, history: Vec::new(), tests: Vec::new(), latest: None, error: None, stopped: false };
    let work = OnThisThread((&args, program, &mut hooks));
    let result = py.detach(move || {
        let (args, program, hooks) = work.into_inner();
        OnThisThread(train_program(args, program, index, hooks))
    });
    let weights = match result.into_inner() {
        Ok(w) => w,
        Err(_) if hooks.stopped => hooks.latest.take().unwrap_or_default(),
        Err(e) => return Err(hooks.error.take().unwrap_or_else(|| runtime_err(e))),
    };
    let out = PyDict::new(py);
    out.set_item("weights", weights_dict(py, &weights)?)?;
    let history = PyList::empty(py);
    for (epoch, b, r) in &hooks.history {
        history.append(batch_dict(py, *epoch, *b, r)?)?;
    }
    out.set_item("history", history)?;
    let tests = PyList::empty(py);
    for (epoch, t) in &hooks.tests {
        if let Some(t) = t {
            let d = PyDict::new(py);
            d.set_item("epoch", epoch)?;
            d.set_item("loss", t.loss)?;
            d.set_item("accuracy", t.accuracy)?;
            d.set_item("trials", t.trials)?;
            tests.append(d)?;
        }
    }
    out.set_item("test", tests)?;
    out.set_item("stopped", hooks.stopped)?;
    Ok(out)
}

/// Starting weights for `args` from a dict.
pub fn set_start_weights(args: &mut Args, weights: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
    if let Some(w) = weights {
        args.start_weights = weights_from(w)?;
    }
    Ok(())
}
