//! `snnc.load`, `snnc.compile` and the checked `Program`.

use crate::convert::{compile_err, runtime_err, warn};
use crate::network::{Network, NetworkOptions};
use crate::train;
use pyo3::prelude::*;
use pyo3::types::PyList;
use snnc::api::explain::{Refusal, steps};
use snnc::api::load::{Checked, Refused, check_path, check_text, render, select_network};
use snnc::compiler as snnc_compiler;
use snnc_compiler::sema::LoadOptions;
use std::path::PathBuf;
use std::sync::Arc;



/// A checked program: its models and networks, ready to build networks from.
#[pyclass(module = "snnc", unsendable)]
pub struct Program {
    pub checked: Arc<Checked>,
}

/// The load options of `include` and `SNNC_PATH`, as the CLI's `-I`.
fn load_options(include: Vec<PathBuf>) -> LoadOptions {
    LoadOptions::from_env(&include)
}

fn finish(py: Python<'_>, r: Result<Checked, Refused>) -> PyResult<Program> {
    let checked = r.map_err(|e| compile_err(py, &e))?;
    if !checked.warnings.is_empty() {
        warn(py, render(&checked.warnings, &checked.sources).trim_end())?;
    }
    Ok(Program { checked: Arc::new(checked) })
}

/// Loads and checks a `.snn` file and its imports (as `snnc check` does).
///
/// `include`: extra directories searched by `import` (as `-I`; `SNNC_PATH` too).
/// Raises `CompileError` with the rendered diagnostics.
#[pyfunction]
#[pyo3(signature = (path, include = Vec::new()))]
pub fn load(py: Python<'_>, path: PathBuf, include: Vec<PathBuf>) -> PyResult<Program> {
    finish(py, check_path(&path, &load_options(include)))
}

/// Checks `.snn` source text (named `name` in diagnostics; imports resolved from the
/// current directory, `include` and the embedded stdlib).
#[pyfunction]
#[pyo3(signature = (text, name = "<string>".to_string(), include = Vec::new()))]
pub fn compile(py: Python<'_>, text: &str, name: String, include: Vec<PathBuf>) -> PyResult<Program> {
    finish(py, check_text(&name, text, &load_options(include)))
}

/// Reads a NIR graph (HDF5, as the `nir` package writes it) as a program with one
/// network, and its weights: `prog, weights = snnc.import_nir("graph.nir", dt=1e-3)`,
/// then `prog.network(weights=weights)`. NIR has no time step: `dt` (seconds) is the
/// one to run with; `method` integrates NIR's continuous-time equations ("euler", as
/// snnTorch and Norse do, or "exact", "exp_euler", "rk2", "rk4"). `name`: the
/// network's (default: the file's stem). See docs/nir.md.
#[pyfunction]
#[pyo3(signature = (path, dt, *, method = "euler", name = None))]
pub fn import_nir<'py>(py: Python<'py>, path: PathBuf, dt: f64, method: &str, name: Option<String>) -> PyResult<(Program, Bound<'py, pyo3::types::PyDict>)> {
    let method = snnc_compiler::sema::Method::ALL
        .iter()
        .find(|(n, _)| *n == method)
        .map(|(_, m)| *m)
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("unknown method `{method}` (exact, exp_euler, euler, rk2, rk4)")))?;
    let name = name.unwrap_or_else(|| path.file_stem().map_or("imported".into(), |s| s.to_string_lossy().into_owned()));
    let imported = snnc::api::nir::read(&path).and_then(|g| snnc::api::nir::import(&g, &name, dt, method)).map_err(runtime_err)?;
    let program = finish(py, check_text(&format!("{name}.snn"), &imported.snn, &LoadOptions::default()))?;
    let weights = pyo3::types::PyDict::new(py);
    for (n, w) in imported.weights {
        weights.set_item(n, numpy::IntoPyArray::into_pyarray(w, py))?;
    }
    Ok((program, weights))
}

impl Program {
    /// The network `train` and `evaluate` use, and `snnc train`'s arguments for it.
    fn train_args(&self, network: Option<&str>, weights: Option<&Bound<'_, pyo3::types::PyDict>>, options: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<(usize, snnc::cli::train::Args)> {
        let index = select_network(&self.checked.program, network, &self.checked.entry, "network=").map_err(runtime_err)?;
        let name = &self.checked.program.networks[index].name;
        let mut args = train::parse_args(&self.checked.entry, Some(name), options)?;
        train::set_start_weights(&mut args, weights)?;
        args.returns_weights = true;
        Ok((index, args))
    }
}

#[pymethods]
impl Program {
    /// The program's source text (an imported NIR graph's generated `.snn`, too).
    #[getter]
    fn source(&self) -> String {
        let c = &self.checked;
        (0..1 << 20).take_while(|i| c.sources.name(*i) != "<unknown>").find(|i| c.sources.name(*i) == c.entry).map(|i| c.sources.text(i).to_string()).unwrap_or_default()
    }

    /// The networks' names, in definition order.
    #[getter]
    fn networks(&self) -> Vec<String> {
        self.checked.program.networks.iter().map(|n| n.name.clone()).collect()
    }

    /// The models' names (imports included), in definition order.
    #[getter]
    fn models(&self) -> Vec<String> {
        self.checked.program.models.iter().map(|m| m.name.clone()).collect()
    }

    /// Builds a network of this program to simulate and differentiate.
    ///
    /// `name`: the network (default: the only one). `batch`: independent copies run
    /// together. `seed`: every random choice (connectivity, initial values, noise).
    /// `precision`: "f32" or "f64". `backend`: "cpu" (Cranelift JIT) or "interp" (the
    /// reference interpreter). `dt`: a time step in seconds overriding the network's.
    /// `method`: integrate every population with this method (exact, exp_euler, euler,
    /// rk2, rk4). `weights`: a dict of trainable tensors to set (see `Network.weights`).
    #[pyo3(signature = (name = None, *, batch = 1, seed = 0, precision = "f32", backend = "cpu", dt = None, method = None, weights = None))]
    #[allow(clippy::too_many_arguments)]
    fn network(
        &self,
        py: Python<'_>,
        name: Option<&str>,
        batch: usize,
        seed: u64,
        precision: &str,
        backend: &str,
        dt: Option<f64>,
        method: Option<&str>,
        weights: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Network> {
        let index = select_network(&self.checked.program, name, &self.checked.entry, "name=").map_err(runtime_err)?;
        let o = NetworkOptions::parse(batch, seed, precision, backend, dt, method)?;
        let mut net = Network::build(self.checked.clone(), index, o)?;
        if let Some(w) = weights {
            net.set_weights(py, w)?;
        }
        Ok(net)
    }

    /// The math of the models (or, with `network`, of that network's populations as the
    /// runtime runs them): the integrator, the discrete step, D, Df and the surrogate.
    ///
    /// `format="data"` gives a list of dicts (as `snnc explain --format json`);
    /// `format="text"` the text `snnc explain` prints.
    #[pyo3(signature = (model = None, network = None, format = "data"))]
    fn explain<'py>(&self, py: Python<'py>, model: Option<&str>, network: Option<&str>, format: &str) -> PyResult<Bound<'py, PyAny>> {
        let c = &self.checked;
        if model.is_some() && network.is_some() {
            return Err(pyo3::exceptions::PyValueError::new_err("give `model` or `network`, not both"));
        }
        let explained = steps(&c.program, &c.sources, &c.entry, model, network, None).map_err(|r| match r {
            Refusal::Diagnostic(d) => runtime_err(d.render(&c.sources).trim_end()),
            Refusal::Message(m) => runtime_err(m),
        })?;
        match format {
            "text" => {
                let texts: Vec<String> = explained.into_iter().map(|mut e| snnc_compiler::explain::explain_text(&mut e.step, &c.entry)).collect();
                Ok(texts.join("\n").into_pyobject(py)?.into_any())
            }
            "data" => {
                let json = py.import("json")?;
                let list = PyList::empty(py);
                for mut e in explained {
                    list.append(json.call_method1("loads", (snnc_compiler::explain::explain_json(&mut e.step),))?)?;
                }
                Ok(list.into_any())
            }
            f => Err(pyo3::exceptions::PyValueError::new_err(format!("unknown format `{f}` (data, text)"))),
        }
    }

    /// Trains a network as `snnc train` does (docs/training.md), with its options as
    /// keyword arguments: `task="dms"`, `method="es-d-rtrl"`, `epochs=3`, `batches=10`,
    /// `batch=32`, `lr=1e-3`, `optimizer="adam"`, `grad_clip=1.0`, `seed=1`,
    /// `out="runs/x"` (log.csv and checkpoint.safetensors after every epoch), `plot=True`,
    /// `f64=True`, ...; the network's `train { }` block gives the rest. Progress is
    /// printed as the command prints it. The GIL is released while it runs.
    ///
    /// `weights`: starting values of trainable tensors (a dict as `Network.weights()`
    /// gives). `callback(info)` is called after every batch with a dict: "epoch",
    /// "batch", "loss", "accuracy", "rates", "weights"; returning False stops the run.
    /// Ctrl-C raises KeyboardInterrupt after the batch (checkpoints written stay whole).
    ///
    /// Returns {"weights": the final weights, "history": one dict per batch, "test": the
    /// held-out evaluations, "stopped": whether the callback stopped it}.
    #[pyo3(signature = (network = None, *, callback = None, weights = None, **options))]
    fn train<'py>(
        &self,
        py: Python<'py>,
        network: Option<&str>,
        callback: Option<Py<PyAny>>,
        weights: Option<&Bound<'py, pyo3::types::PyDict>>,
        options: Option<&Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let (index, args) = self.train_args(network, weights, options)?;
        train::run(py, &self.checked.program, index, args, callback)
    }

    /// Loss and accuracy of `weights` on held-out trials, as `snnc eval` (options as
    /// for `train`: `task`, `batch`, `test_batches`, `seed`, ...). Returns the same dict
    /// as `train`, its "test" holding the one evaluation.
    #[pyo3(signature = (network = None, *, weights = None, **options))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        network: Option<&str>,
        weights: Option<&Bound<'py, pyo3::types::PyDict>>,
        options: Option<&Bound<'py, pyo3::types::PyDict>>,
    ) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let (index, mut args) = self.train_args(network, weights, options)?;
        (args.evaluate_only, args.epochs, args.batches) = (true, Some(0), 0);
        train::run(py, &self.checked.program, index, args, None)
    }

    fn __repr__(&self) -> String {
        format!("<snnc.Program {}: networks {:?}, models {:?}>", self.checked.entry, self.networks(), self.models())
    }
}
