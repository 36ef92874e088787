//! `snnc.Network`: a built network to run step by step or for many steps (the GIL
//! released, Ctrl-C between chunks), its states and weights, and its gradients.

use crate::convert::{OnThisThread, f64_array, runtime_err};
use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use numpy::{IntoPyArray, PyArray2};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyString};
use snnc::api::grad::{self, GradSpec, MethodName};
use snnc::api::inputs::{Drive, InputSource, parse_input};
use snnc::api::load::Checked;
use snnc::compiler::sema::{Method, NetworkDef};
use snnc::runtime::kernels::{InterpFactory, JitFactory, KernelFactory};
use snnc::runtime::network::{Network as Net, Options};
use snnc::runtime::record::Recorder;
use snnc::compiler::backend::Real;
use snnc::runtime::scalar::Float;
use snnc::runtime::train::weights_of;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a run holds on without looking at Python's signals (Ctrl-C).
const CHUNK: Duration = Duration::from_millis(50);

/// How a network is built (`Program.network`'s arguments, checked).
#[derive(Clone, Debug)]
pub struct NetworkOptions {
    batch: usize,
    seed: u64,
    f64: bool,
    interp: bool,
    dt: Option<f64>,
    method: Option<Method>,
}

impl NetworkOptions {
    pub fn parse(batch: usize, seed: u64, precision: &str, backend: &str, dt: Option<f64>, method: Option<&str>) -> PyResult<NetworkOptions> {
        let f64 = match precision {
            "f32" => false,
            "f64" => true,
            p => return Err(PyValueError::new_err(format!("unknown precision `{p}` (f32, f64)"))),
        };
        let interp = match backend {
            "cpu" | "jit" => false,
            "interp" => true,
            "cuda" => return Err(PyValueError::new_err("backend \"cuda\" is not offered by the Python module yet; use `snnc run --backend cuda` (the CPU backends: \"cpu\", \"interp\")")),
            b => return Err(PyValueError::new_err(format!("unknown backend `{b}` (cpu, interp)"))),
        };
        if batch == 0 {
            return Err(PyValueError::new_err("batch must be at least 1"));
        }
        if let Some(dt) = dt
            && !(dt > 0.0 && dt.is_finite())
        {
            return Err(PyValueError::new_err(format!("dt must be a positive time in seconds, got {dt}")));
        }
        let method = method.map(|m| Method::ALL.iter().find(|(n, _)| *n == m).map(|(_, m)| *m).ok_or_else(|| PyValueError::new_err(format!("unknown method `{m}` (exact, exp_euler, euler, rk2, rk4)")))).transpose()?;
        Ok(NetworkOptions { batch, seed, f64, interp, dt, method })
    }

    fn factory<T: Float>(&self) -> &'static dyn KernelFactory<T> {
        if self.interp { &InterpFactory } else { &JitFactory }
    }
}

/// The network in its float type.
enum Built {
    F32(Net<f32>),
    F64(Net<f64>),
}

/// `$body` with `$n` the network, in either float type.
macro_rules! with_net {
    ($built:expr, $n:ident => $body:expr) => {
        match $built {
            Built::F32($n) => $body,
            Built::F64($n) => $body,
        }
    };
}

/// A network built from a `Program` (`Program.network(...)`), on the CPU.
///
/// States are per batch element and neuron: `state(pop, name)` is a (batch, n) array.
#[pyclass(module = "snnc", unsendable)]
pub struct Network {
    checked: Arc<Checked>,
    index: usize,
    o: NetworkOptions,
    built: Built,
}

impl Network {
    pub fn build(checked: Arc<Checked>, index: usize, o: NetworkOptions) -> PyResult<Network> {
        let def = &checked.program.networks[index];
        let opts = Options { dt: o.dt, seed: o.seed, batch: o.batch, method: o.method, ..Options::default() };
        let built = if o.f64 {
            Built::F64(Net::build(&checked.program, def, &opts, o.factory()).map_err(runtime_err)?)
        } else {
            Built::F32(Net::build(&checked.program, def, &opts, o.factory()).map_err(runtime_err)?)
        };
        Ok(Network { checked, index, o, built })
    }

    fn def(&self) -> &NetworkDef {
        &self.checked.program.networks[self.index]
    }

    pub fn set_weights(&mut self, _py: Python<'_>, weights: &Bound<'_, PyDict>) -> PyResult<()> {
        let w = weights_from(weights)?;
        with_net!(&mut self.built, n => grad::set_weights(n, &w, "the dict").map_err(runtime_err))
    }
}

/// A dict of name -> matrix (a 1-D array is a row: a trainable param's values).
pub fn weights_from(d: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Array2<f64>)>> {
    let mut out = Vec::new();
    for (k, v) in d.iter() {
        let name: String = k.extract()?;
        let a = f64_array(&v, &name)?;
        let a = match a.ndim() {
            1 => a.insert_axis(ndarray::Axis(0)),
            _ => a,
        };
        let m = a.into_dimensionality::<Ix2>().map_err(|_| PyValueError::new_err(format!("weights `{name}` must be a matrix (n_pre, n_post) or a row of values")))?;
        out.push((name, m));
    }
    Ok(out)
}

/// The sources of the inputs in `inputs` (name -> array, number or `"poisson:20Hz"`):
/// an array is (T, size) or (T, batch, size); the others stay 0. With `single`, an
/// array is one step's values: (size,) or (batch, size).
fn input_sources<T: Float>(net: &Net<T>, inputs: Option<&Bound<'_, PyDict>>, single: bool) -> PyResult<(Vec<InputSource>, Option<usize>)> {
    let mut sources = vec![InputSource::Zero; net.inputs.len()];
    let mut rows = None;
    let Some(inputs) = inputs else { return Ok((sources, rows)) };
    let names = || net.inputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    for (k, v) in inputs.iter() {
        let name: String = k.extract()?;
        let i = net.inputs.iter().position(|(n, _)| *n == name).ok_or_else(|| PyKeyError::new_err(format!("the network has no input `{name}` (inputs: {})", names())))?;
        let size = net.inputs[i].1;
        if let Ok(spec) = v.cast::<PyString>() {
            sources[i] = parse_input(&format!("{name}={}", spec.to_cow()?), &net.inputs).map_err(|e| PyValueError::new_err(format!("input `{name}`: {e}")))?.1;
            continue;
        }
        if v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>() {
            sources[i] = InputSource::Const(v.extract()?);
            continue;
        }
        let mut a = f64_array(&v, &name)?;
        if single {
            a = a.insert_axis(ndarray::Axis(0));
        }
        let steps = a.shape().first().copied().unwrap_or(0);
        let shape = a.shape().to_vec();
        let width = match shape[1..] {
            [s] if s == size => size,
            [b, s] if b == net.batch && s == size => net.batch * size,
            _ => {
                let want = if single { format!("({size},) or ({}, {size})", net.batch) } else { format!("(T, {size}) or (T, {}, {size})", net.batch) };
                let got = if single { &shape[1..] } else { &shape[..] };
                return Err(PyValueError::new_err(format!("input `{name}` has shape {got:?}; it must be {want} (input `{name}` has {size} neurons, the network batch {})", net.batch)));
            }
        };
        if let Some(bad) = a.iter().find(|v| !v.is_finite()) {
            return Err(PyValueError::new_err(format!("input `{name}` has a value that is not finite ({bad})")));
        }
        let a = a.into_shape_with_order((steps, width)).map_err(runtime_err)?;
        rows = Some(rows.map_or(steps, |r: usize| r.max(steps)));
        sources[i] = InputSource::Array(a);
    }
    Ok((sources, rows))
}

/// Runs `steps` steps from the network's current state with `sources`, sampling
/// `rec` after each; the GIL is released and Python's signals are checked every
/// [`CHUNK`] (Ctrl-C raises `KeyboardInterrupt`, the network left at the last whole step).
fn run_in<T: Float>(py: Python<'_>, net: &mut Net<T>, steps: u64, sources: Vec<InputSource>, rec: &mut Recorder) -> PyResult<()> {
    // The network logs the spikes as its threads join them (`Recorder::attach`), until
    // the run ends, however it ends.
    rec.attach(net).map_err(runtime_err)?;
    let done = run_attached(py, net, steps, sources, rec);
    // (The run's error first: a detach cannot fail on the network attached to.)
    done.and(rec.detach(net).map_err(runtime_err))
}

/// [`run_in`] with `rec` attached to `net`.
fn run_attached<T: Float>(py: Python<'_>, net: &mut Net<T>, steps: u64, sources: Vec<InputSource>, rec: &mut Recorder) -> PyResult<()> {
    let mut drive = Drive::new(net, sources);
    let (dt, end) = (net.dt, net.step_index + steps);
    while net.step_index < end {
        let work = OnThisThread((&mut *net, &mut drive, &mut *rec));
        let done = py.detach(move || {
            let (net, drive, rec) = work.into_inner();
            let t0 = Instant::now();
            while net.step_index < end {
                let external = drive.fill(net.step_index, dt);
                net.step(&external)?;
                rec.sample(net)?;
                if t0.elapsed() >= CHUNK {
                    break;
                }
            }
            Ok::<(), snnc::runtime::error::RuntimeError>(())
        });
        done.map_err(|e| runtime_err(format!("{e}; stopped at step {} (t = {:.4} s)", net.step_index, net.time())))?;
        py.check_signals()?;
    }
    Ok(())
}

/// The recordings as a dict keyed like `snnc run`'s files: `POP.spikes.t` (times, s),
/// `POP.spikes.i` (index `b * n + i`), `POP.VAR` (steps, batch * n) float32; with
/// `dense`, `POP.spikes` (steps, batch * n) bool instead of the index lists.
fn recordings<'py, T: Float>(py: Python<'py>, net: &Net<T>, rec: &Recorder, first: u64, steps: usize, dense: bool) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (p, ts, is) in rec.spikes() {
        let pop = &net.pops[p];
        if dense {
            let mut a = Array2::<bool>::from_elem((steps, pop.n * net.batch), false);
            for (t, i) in ts.iter().zip(&is) {
                // Sampled after each step: time (first + row + 1) * dt.
                let row = (t / net.dt).round() as u64 - first - 1;
                a[[row as usize, *i as usize]] = true;
            }
            out.set_item(format!("{}.spikes", pop.name), a.into_pyarray(py))?;
        } else {
            out.set_item(format!("{}.spikes.t", pop.name), ts.into_pyarray(py))?;
            out.set_item(format!("{}.spikes.i", pop.name), is.into_pyarray(py))?;
        }
    }
    for (name, width, values) in rec.traces() {
        let a = Array2::from_shape_vec((values.len() / width.max(1), width), values.to_vec()).map_err(runtime_err)?;
        out.set_item(name, a.into_pyarray(py))?;
    }
    Ok(out)
}

fn state_slot<T: Float>(net: &Net<T>, pop: &str, name: &str) -> PyResult<(usize, usize)> {
    let p = net.pops.iter().position(|p| p.name == pop).ok_or_else(|| {
        let names: Vec<&str> = net.pops.iter().map(|p| p.name.as_str()).collect();
        PyKeyError::new_err(format!("no population `{pop}` (populations: {})", names.join(", ")))
    })?;
    let k = net.pops[p].state_names.iter().position(|s| s == name).ok_or_else(|| {
        let names: Vec<&str> = net.pops[p].state_names.iter().filter(|s| !s.starts_with('_')).map(|s| s.as_str()).collect();
        PyKeyError::new_err(format!("population `{pop}` has no state `{name}` (states: {})", names.join(", ")))
    })?;
    Ok((p, k))
}

fn state_of<'py, T: Float + numpy::Element>(py: Python<'py>, net: &Net<T>, pop: &str, name: &str) -> PyResult<Bound<'py, PyArray2<T>>> {
    let (p, k) = state_slot(net, pop, name)?;
    let n = net.pops[p].n;
    let v = net.pops[p].states[k][..net.batch * n].to_vec();
    Ok(Array2::from_shape_vec((net.batch, n), v).map_err(runtime_err)?.into_pyarray(py))
}

fn set_state_of<T: Float>(net: &mut Net<T>, pop: &str, name: &str, values: ArrayD<f64>) -> PyResult<()> {
    let (p, k) = state_slot(net, pop, name)?;
    let (n, batch) = (net.pops[p].n, net.batch);
    let flat: Vec<f64> = match values.shape() {
        [] => vec![values[IxDyn(&[])]; batch * n],
        [m] if *m == n => values.iter().copied().cycle().take(batch * n).collect(),
        [b, m] if *b == batch && *m == n => values.iter().copied().collect(),
        s => return Err(PyValueError::new_err(format!("`{pop}.{name}` takes a number, ({n},) or ({batch}, {n}) values; got shape {s:?}"))),
    };
    if let Some(bad) = flat.iter().find(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!("`{pop}.{name}`: a value is not finite ({bad})")));
    }
    for (s, v) in net.pops[p].states[k].iter_mut().zip(&flat) {
        *s = T::from_f64(*v);
    }
    Ok(())
}

#[pymethods]
impl Network {
    #[getter]
    fn name(&self) -> String {
        self.def().name.clone()
    }

    /// The time step in seconds.
    #[getter]
    fn dt(&self) -> f64 {
        with_net!(&self.built, n => n.dt)
    }

    #[getter]
    fn batch(&self) -> usize {
        self.o.batch
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.o.seed
    }

    /// "f32" or "f64".
    #[getter]
    fn precision(&self) -> &'static str {
        if self.o.f64 { "f64" } else { "f32" }
    }

    /// Simulated time in seconds (steps taken x dt).
    #[getter]
    fn time(&self) -> f64 {
        with_net!(&self.built, n => n.time())
    }

    /// Steps taken since the network was built or reset.
    #[getter]
    fn step_index(&self) -> u64 {
        with_net!(&self.built, n => n.step_index)
    }

    /// The external inputs: name -> number of neurons.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        with_net!(&self.built, n => for (name, size) in &n.inputs { d.set_item(name, size)?; });
        Ok(d)
    }

    /// The populations: name -> {"n": neurons, "states": [names], "spiking": bool}.
    #[getter]
    fn populations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        with_net!(&self.built, net => for p in &net.pops {
            let e = PyDict::new(py);
            e.set_item("n", p.n)?;
            e.set_item("states", p.state_names.iter().filter(|s| !s.starts_with('_')).collect::<Vec<_>>())?;
            e.set_item("spiking", !p.spikes().is_empty())?;
            d.set_item(&p.name, e)?;
        });
        Ok(d)
    }

    /// Simulates `steps` steps (or `duration` seconds, rounded to whole steps) from the
    /// current state and returns what `record` names: "spikes" and state names.
    ///
    /// `inputs`: name -> (T, size) or (T, batch, size) array (0 after its last row), a
    /// number (constant), or a source string like "poisson:20Hz"; inputs not given are 0.
    /// Without `steps` or `duration`, the longest input array's T steps are run.
    /// The result is keyed like `snnc run --out`'s files: "POP.spikes.t" (s) and
    /// "POP.spikes.i" (index b * n + i), or with `dense=True` "POP.spikes" (steps,
    /// batch * n) bool; "POP.VAR" (steps, batch * n) float32.
    #[pyo3(signature = (steps = None, *, duration = None, inputs = None, record = vec!["spikes".to_string()], dense = false))]
    fn run<'py>(
        &mut self,
        py: Python<'py>,
        steps: Option<u64>,
        duration: Option<f64>,
        inputs: Option<&Bound<'py, PyDict>>,
        record: Vec<String>,
        dense: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        with_net!(&mut self.built, net => {
            let (sources, rows) = input_sources(net, inputs, false)?;
            let steps = match (steps, duration, rows) {
                (Some(_), Some(_), _) => return Err(PyValueError::new_err("give `steps` or `duration`, not both")),
                (Some(s), None, _) => s,
                (None, Some(d), _) => duration_steps(d, net.dt)?,
                (None, None, Some(r)) => r as u64,
                (None, None, None) => return Err(PyValueError::new_err("give `steps` or `duration` (or an input array, whose length is then the run's)")),
            };
            let vars: Vec<String> = record.iter().filter(|r| *r != "spikes").cloned().collect();
            let mut rec = Recorder::new(net, record.iter().any(|r| r == "spikes"), &vars).map_err(runtime_err)?;
            let first = net.step_index;
            run_in(py, net, steps, sources, &mut rec)?;
            recordings(py, net, &rec, first, steps as usize, dense)
        })
    }

    /// One step. `inputs`: name -> (size,) or (batch, size) values, or a number.
    #[pyo3(signature = (inputs = None))]
    fn step(&mut self, inputs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        with_net!(&mut self.built, net => {
            let (sources, _) = input_sources(net, inputs, true)?;
            let mut drive = Drive::new(net, sources);
            let external = drive.fill(net.step_index, net.dt);
            net.step(&external).map_err(runtime_err)
        })
    }

    /// Back to the state it was built in (states, spikes, delays, time 0); weights and
    /// params are kept.
    fn reset(&mut self) {
        with_net!(&mut self.built, n => n.reset())
    }

    /// The values of state `name` of population `pop`: a (batch, n) array (float32 or
    /// float64, the network's precision), in SI units.
    fn state<'py>(&self, py: Python<'py>, pop: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
        Ok(match &self.built {
            Built::F32(n) => state_of(py, n, pop, name)?.into_any(),
            Built::F64(n) => state_of(py, n, pop, name)?.into_any(),
        })
    }

    /// Sets state `name` of population `pop`: a number, (n,) values (every batch
    /// element) or (batch, n).
    fn set_state(&mut self, pop: &str, name: &str, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = f64_array(values, name)?;
        with_net!(&mut self.built, n => set_state_of(n, pop, name, v))
    }

    /// The latest step's spikes of population `pop`: a (batch, n) bool array.
    fn spikes<'py>(&self, py: Python<'py>, pop: &str) -> PyResult<Bound<'py, PyArray2<bool>>> {
        with_net!(&self.built, net => {
            let p = net.pops.iter().find(|p| p.name == pop).ok_or_else(|| PyKeyError::new_err(format!("no population `{pop}`")))?;
            if p.spikes().is_empty() {
                return Err(PyValueError::new_err(format!("population `{pop}` does not spike")));
            }
            let v: Vec<bool> = p.spikes()[..net.batch * p.n].iter().map(|s| s.to_f64() != 0.0).collect();
            Ok(Array2::from_shape_vec((net.batch, p.n), v).map_err(runtime_err)?.into_pyarray(py))
        })
    }

    /// Every dense projection's weights (n_pre, n_post), trainable param (1, n) and
    /// batch norm's tensors (1, n), as float64 arrays by name: what `set_weights`, `weights=` and `grad` take.
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        with_net!(&self.built, net => {
            let mut names: Vec<String> = net.projections().into_iter().map(|(n, _)| n).collect();
            names.extend(net.trainable_params());
            // Batch norms' gamma and beta, and their running estimates (`state/...`).
            names.extend(net.trainable_batch_norms());
            names.extend(net.batch_norm_state());
            for (name, w) in weights_of(net, &names) {
                d.set_item(name, w.into_pyarray(py))?;
            }
        });
        Ok(d)
    }

    /// Sets weights by name (a dict as `weights()` gives; names not in it are kept).
    #[pyo3(name = "set_weights")]
    fn py_set_weights(&mut self, py: Python<'_>, weights: &Bound<'_, PyDict>) -> PyResult<()> {
        self.set_weights(py, weights)
    }

    /// The gradient of one batch of sequences, as `snnc grad` computes it (bit for bit):
    /// a network built for learning with this one's seed, precision and current
    /// weights, the loss summed over steps. `x`: (T, B, inputs); `target`: (T, B,
    /// readouts). `method`: "bptt", "d-rtrl" or "es-d-rtrl" (with `etrace_decay`).
    ///
    /// Returns {"loss": float, NAME: gradient array, ...} for each trainable projection
    /// and param; with `record=True` also "recorded": {name: array} (per-step hidden
    /// states and eligibility traces, as `snnc grad --record`).
    #[pyo3(signature = (x, target, *, method = "bptt", etrace_decay = 0.9, record = false))]
    fn grad<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>, target: &Bound<'py, PyAny>, method: &str, etrace_decay: f64, record: bool) -> PyResult<Bound<'py, PyDict>> {
        if self.o.dt.is_some() || self.o.method.is_some() || self.o.interp {
            return Err(PyValueError::new_err("grad runs the network as `snnc grad` does (JIT kernels, the network's own dt and methods); build it without dt=, method= or backend=\"interp\""));
        }
        let three = |a: ArrayD<f64>, what: &str| a.into_dimensionality::<ndarray::Ix3>().map_err(|_| PyValueError::new_err(format!("`{what}` must have shape (T, B, {what}s)", what = what)));
        let x = three(f64_array(x, "x")?, "x").map_err(|_| PyValueError::new_err("`x` must have shape (T, B, inputs)"))?;
        let target = three(f64_array(target, "target")?, "target").map_err(|_| PyValueError::new_err("`target` must have shape (T, B, readouts)"))?;
        for (a, what) in [(x.view(), "x"), (target.view(), "target")] {
            if let Some(bad) = a.iter().find(|v| !v.is_finite()) {
                return Err(PyValueError::new_err(format!("`{what}` has a value that is not finite ({bad})")));
            }
        }
        let method = MethodName::parse(method).map_err(PyValueError::new_err)?;
        let spec = GradSpec { method, etrace_decay, seed: self.o.seed, f64: self.o.f64, record };
        let weights = with_net!(&self.built, n => weights_of(n, &grad::trainable_names(self.def(), n)));
        let (program, def) = (&self.checked.program, self.def());
        let work = OnThisThread((program, def, &spec, x, &target, &weights));
        let res = py
            .detach(move || {
                let (program, def, spec, x, target, weights) = work.into_inner();
                grad::compute(program, def, spec, x, target, weights, "the network")
            })
            .map_err(runtime_err)?;
        let d = PyDict::new(py);
        d.set_item("loss", res.loss)?;
        for (name, g) in res.total {
            d.set_item(name, g.into_pyarray(py))?;
        }
        if record {
            let r = PyDict::new(py);
            for (name, shape, data) in res.recorded {
                r.set_item(name, ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(runtime_err)?.into_pyarray(py))?;
            }
            d.set_item("recorded", r)?;
        }
        Ok(d)
    }

    /// Writes this network as a NIR graph (HDF5) to `path`: its params as built with
    /// its seed, its current weights. What NIR cannot express is refused, naming it
    /// (docs/nir.md).
    fn export_nir(&self, path: std::path::PathBuf) -> PyResult<()> {
        let weights = with_net!(&self.built, n => {
            let names: Vec<String> = n.projections().into_iter().map(|(p, _)| p).collect();
            weights_of(n, &names)
        });
        let def = self.def();
        let g = snnc::api::nir::export(&self.checked.program, def, self.o.seed, &weights).map_err(|e| runtime_err(format!("cannot export network `{}` to NIR: {e}", def.name)))?;
        snnc::api::nir::write(&path, &g).map_err(runtime_err)
    }

    fn __repr__(&self) -> String {
        with_net!(&self.built, n => format!(
            "<snnc.Network {}: {} neurons, {} populations, batch {}, {}, t = {:.4} s>",
            n.name, n.n_neurons(), n.pops.len(), n.batch, self.precision(), n.time()
        ))
    }
}

/// Whole steps of `duration` seconds at `dt`; refused below half a step.
fn duration_steps(duration: f64, dt: f64) -> PyResult<u64> {
    let steps = (duration / dt).round();
    if steps.is_nan() || steps < 1.0 || !steps.is_finite() {
        return Err(PyValueError::new_err(format!("duration {duration} s is less than half a step of {dt} s: 0 steps to simulate")));
    }
    Ok(steps as u64)
}
