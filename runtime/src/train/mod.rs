//! Training: optimisers, checkpoints and the loop that runs a task through a network
//! with one of the learning rules of [`crate::learn`].

pub mod dataset;
pub mod events;
pub mod images;
pub mod ranks;
pub mod shd;
pub mod tasks;

use crate::engine::{Simulation, Trainer, start};
use crate::learn::{CpuGradient, Gradients, Method, Online, Sequence, StepData, gradient_split, split_sizes};
use crate::connectivity::project_onto_sign;
use crate::error::RuntimeError;
use crate::network::{Network, Sign};
use crate::scalar::Float;
use ndarray::Array2;
use std::collections::HashMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd,
    /// Adam (Kingma & Ba 2015) with the usual betas (0.9, 0.999) and eps 1e-8.
    Adam,
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::Sgd => "SGD",
            OptimizerKind::Adam => "Adam",
        })
    }
}

/// Updates weights from gradients; one state per parameter matrix.
///
/// Each tensor may have a scale `s` ([`Optimizer::set_scales`], default 1): the optimiser
/// then works on `u = w / s`, the weight in units of its scale, with gradient
/// `dL/du = s dL/dw`; clipping measures the global norm of those, and an update of u by
/// `du` moves w by `s du`. A network in SI units (weights of 1e-10 S) is then trained
/// with the same learning rates as a dimensionless one; a scale of 1 changes nothing,
/// bit for bit.
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub clip: Option<f64>,
    /// Weight decay (`weight_decay`): decoupled as in AdamW (optax.adamw: every step
    /// moves a weight by `-lr wd w` besides the gradient's update); for SGD the same as L2
    /// (a penalty `wd/2 w^2` outside the clipped gradient, as PyTorch's SGD adds it).
    pub weight_decay: f64,
    /// Tensors never decayed (the neuron params: a time constant decayed towards zero
    /// would be a bias, not a regulariser).
    no_decay: std::collections::HashSet<String>,
    step: i32,
    m: HashMap<String, Array2<f64>>,
    v: HashMap<String, Array2<f64>>,
    scales: HashMap<String, f64>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, lr: f64, clip: Option<f64>) -> Optimizer {
        Optimizer { kind, lr, clip, weight_decay: 0.0, no_decay: Default::default(), step: 0, m: HashMap::new(), v: HashMap::new(), scales: HashMap::new() }
    }

    /// With weight decay `wd` on every tensor but those of `exempt` (see
    /// [`Optimizer::weight_decay`]).
    pub fn with_weight_decay(mut self, wd: f64, exempt: &[String]) -> Optimizer {
        self.weight_decay = wd;
        self.no_decay = exempt.iter().cloned().collect();
        self
    }

    /// The scale of each named tensor (see [`Optimizer`]; [`lr_scales`] gives the
    /// default rule); tensors not named keep scale 1.
    pub fn set_scales(&mut self, scales: &[(String, f64)]) {
        self.scales = scales.iter().cloned().collect();
    }

    /// The updates taken so far.
    pub fn steps(&self) -> i32 {
        self.step
    }

    /// The optimiser's state for a checkpoint: Adam's moments as tensors named
    /// `optimizer/m/NAME` and `optimizer/v/NAME` (none for SGD); with [`Optimizer::steps`]
    /// and [`Optimizer::restore`], a resumed run takes the updates an uninterrupted one
    /// would.
    pub fn state(&self) -> Vec<(String, Array2<f64>)> {
        let mut out: Vec<(String, Array2<f64>)> = Vec::new();
        for (prefix, map) in [("m", &self.m), ("v", &self.v)] {
            out.extend(map.iter().map(|(n, a)| (format!("{OPTIMIZER_PREFIX}{prefix}/{n}"), a.clone())));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Back to a state [`Optimizer::state`] gave after `steps` updates, for the tensors
    /// `weights` (name and shape); a moment of another tensor or shape is refused.
    pub fn restore(&mut self, steps: i32, state: &[(String, Array2<f64>)], weights: &[(String, Array2<f64>)]) -> Result<(), String> {
        let (mut m, mut v) = (HashMap::new(), HashMap::new());
        for (key, a) in state {
            let (map, name) = match key.strip_prefix(OPTIMIZER_PREFIX).and_then(|k| k.split_once('/')) {
                Some(("m", name)) => (&mut m, name),
                Some(("v", name)) => (&mut v, name),
                _ => return Err(format!("`{key}` is not an optimiser moment")),
            };
            match weights.iter().find(|(n, _)| n == name) {
                Some((_, w)) if w.dim() == a.dim() => {}
                Some((_, w)) => return Err(format!("`{key}` is {:?}, its tensor `{name}` {:?}", a.dim(), w.dim())),
                None => return Err(format!("`{key}` is a moment of `{name}`, which is not trained")),
            }
            map.insert(name.to_string(), a.clone());
        }
        if steps < 0 {
            return Err(format!("the optimiser's step count is {steps}"));
        }
        (self.step, self.m, self.v) = (steps, m, v);
        Ok(())
    }

    fn scale_of(&self, name: &str) -> f64 {
        self.scales.get(name).copied().unwrap_or(1.0)
    }

    /// Applies one update to `weights` (name -> matrix) from `grads`.
    pub fn update(&mut self, weights: &mut [(String, Array2<f64>)], grads: &[(String, Array2<f64>)]) {
        self.step += 1;
        let norm = grads.iter().map(|(n, g)| g.iter().map(|x| (x * self.scale_of(n)).powi(2)).sum::<f64>()).sum::<f64>().sqrt();
        let clip = match self.clip {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        for (name, w) in weights.iter_mut() {
            let Some((_, g)) = grads.iter().find(|(n, _)| n == name) else { continue };
            let s = self.scale_of(name);
            // Decoupled decay, on the weight before this step's update (optax.adamw's
            // `-lr (adam + wd w)`); in units of the scale, u -= lr wd u is w -= lr wd w.
            let wd = if self.no_decay.contains(name) { 0.0 } else { self.weight_decay };
            if wd != 0.0 {
                w.mapv_inplace(|x| x - self.lr * wd * x);
            }
            match self.kind {
                // u -= lr du with du = s g clip, so w = s u moves by lr s^2 g clip.
                OptimizerKind::Sgd => w.scaled_add(-self.lr * clip * s * s, g),
                OptimizerKind::Adam => {
                    let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
                    let m = self.m.entry(name.clone()).or_insert_with(|| Array2::zeros(g.dim()));
                    let v = self.v.entry(name.clone()).or_insert_with(|| Array2::zeros(g.dim()));
                    let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
                    ndarray::Zip::from(&mut *w).and(&mut *m).and(&mut *v).and(g).for_each(|w, m, v, g| {
                        let g = g * s * clip;
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *w -= s * (self.lr * (*m / c1) / ((*v / c2).sqrt() + eps));
                    });
                }
            }
        }
    }
}

/// The physical dimension of trainable param `POP.PARAM`.
fn param_dim<T: Float>(net: &Network<T>, name: &str) -> Option<snnc_compiler::units::Dim> {
    let (p, _, col, _) = net.param_slot(name)?;
    let step = net.pops[p].step.as_ref()?;
    let k = *step.trainable_params().get(col)?;
    Some(step.model.symbols[step.layout.params[k]].dim)
}

/// The default learning-rate scale of each trainable tensor (see [`Optimizer`]): 1 for a
/// dimensionless one (every weight of a model written in dimensionless form, as the
/// examples are: their training is unchanged), else the root mean square of its
/// initial values (`initial`), so that a learning rate is relative to the tensor's own
/// magnitude, whatever SI prefix its unit has (nS weights, ms time constants). A
/// dimensional tensor whose initial values are all zero keeps scale 1 and is listed in
/// the second value (its learning rate is then in SI units: the caller says so).
pub fn lr_scales<T: Float>(net: &Network<T>, def: &snnc_compiler::sema::NetworkDef, initial: &[(String, Array2<f64>)]) -> (Vec<(String, f64)>, Vec<String>) {
    let mut unscaled = Vec::new();
    let scales = initial
        .iter()
        .map(|(name, w)| {
            // An adapter: U is dimensionless; V has the weights' unit, and their scale.
            if let Some((i, is_v)) = net.adapter_slot(name) {
                let p = &def.projections[i];
                let base = net.trainable(&p.name).map(|w| w.mapv(|v| v.to_f64()));
                let rms = base.map_or(0.0, |w| (w.iter().map(|v| v * v).sum::<f64>() / w.len().max(1) as f64).sqrt());
                let scale = if is_v && p.weight_dim != snnc_compiler::units::Dim::ONE && rms > 0.0 && rms.is_finite() { rms } else { 1.0 };
                return (name.clone(), scale);
            }
            let dimensionless = match def.projections.iter().find(|p| &p.name == name) {
                Some(p) => p.weight_dim == snnc_compiler::units::Dim::ONE,
                None => param_dim(net, name).is_none_or(|d| d == snnc_compiler::units::Dim::ONE),
            };
            let rms = (w.iter().map(|v| v * v).sum::<f64>() / w.len().max(1) as f64).sqrt();
            let scale = match (dimensionless, rms > 0.0 && rms.is_finite()) {
                (true, _) => 1.0,
                (false, true) => rms,
                (false, false) => {
                    unscaled.push(name.clone());
                    1.0
                }
            };
            (name.clone(), scale)
        })
        .collect();
    (scales, unscaled)
}

/// Writes weights (and a few numbers of metadata) as safetensors, atomically: a
/// temporary file renamed into place, so an interrupted run never leaves a broken one.
pub fn save_checkpoint(path: &Path, weights: &[(String, Array2<f64>)], meta: &[(&str, String)]) -> Result<(), RuntimeError> {
    let err = |e: &dyn std::fmt::Display| RuntimeError::Input(format!("cannot write checkpoint `{}`: {e}", path.display()));
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .iter()
        .map(|(n, w)| (n.clone(), w.iter().flat_map(|x| x.to_le_bytes()).collect(), w.shape().to_vec()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| safetensors::tensor::TensorView::new(safetensors::Dtype::F64, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let info: HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let data = safetensors::serialize(views, Some(info)).map_err(|e| err(&e))?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(&e)
    })
}

/// Removes what an interrupted [`save_checkpoint`] of `path` may have left (the
/// temporary file it writes first); returns whether there was one.
pub fn remove_stale_checkpoint_tmp(path: &Path) -> Result<bool, RuntimeError> {
    let tmp = path.with_extension("safetensors.tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(RuntimeError::Input(format!("cannot remove the stale `{}`: {e}", tmp.display()))),
    }
}

/// The names of a checkpoint's optimiser state ([`Optimizer::state`]) start with this (no
/// projection or param name has a `/`; the other prefixed tensors, `state/...`, are
/// weights); [`load_checkpoint`] leaves them out of the weights.
pub const OPTIMIZER_PREFIX: &str = "optimizer/";

/// Reads a checkpoint written by [`save_checkpoint`]: weights and metadata; a value that
/// is not finite is refused, naming the tensor and index. The optimiser's state, if the
/// checkpoint holds it, is not among the weights ([`load_checkpoint_and_optimizer`]).
pub fn load_checkpoint(path: &Path) -> Result<(Vec<(String, Array2<f64>)>, HashMap<String, String>), RuntimeError> {
    load_checkpoint_and_optimizer(path).map(|(w, _, meta)| (w, meta))
}

/// [`load_checkpoint`], with the optimiser's state ([`Optimizer::state`]) apart.
#[allow(clippy::type_complexity)]
pub fn load_checkpoint_and_optimizer(path: &Path) -> Result<(Vec<(String, Array2<f64>)>, Vec<(String, Array2<f64>)>, HashMap<String, String>), RuntimeError> {
    let (all, meta) = read_checkpoint(path)?;
    let (opt, weights) = all.into_iter().partition(|(n, _)| n.starts_with(OPTIMIZER_PREFIX));
    Ok((weights, opt, meta))
}

fn read_checkpoint(path: &Path) -> Result<(Vec<(String, Array2<f64>)>, HashMap<String, String>), RuntimeError> {
    let err = |e: &dyn std::fmt::Display| RuntimeError::Input(format!("cannot read checkpoint `{}`: {e}", path.display()));
    let data = std::fs::read(path).map_err(|e| err(&e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&data).map_err(|e| err(&e))?;
    let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| err(&e))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let t = st.tensor(&name).map_err(|e| err(&e))?;
        if t.dtype() != safetensors::Dtype::F64 || t.shape().len() != 2 {
            return Err(err(&format!("tensor `{name}` is not a float64 matrix")));
        }
        let vals: Vec<f64> = t.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let a = Array2::from_shape_vec((t.shape()[0], t.shape()[1]), vals).map_err(|e| err(&e))?;
        crate::train::dataset::check_finite(a.view(), path, &name)?;
        out.push((name, a));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// One batch of a training run.
#[derive(Clone, Debug)]
pub struct BatchReport {
    pub loss: f64,
    /// Fraction of the batch whose `argmax` of the masked readout output is the label.
    pub accuracy: f64,
    /// Mean firing rate (Hz) of each spiking population over the batch: (name, rate).
    /// A silent or saturated layer is the first thing to look at when nothing learns.
    pub rates: Vec<(String, f64)>,
}

/// The dense weights of `names` in `net`.
pub fn weights_of<T: Float>(net: &Network<T>, names: &[String]) -> Vec<(String, Array2<f64>)> {
    names
        .iter()
        .filter_map(|n| net.trainable(n).map(|w| (n.clone(), w.mapv(|v| v.to_f64()))))
        .collect()
}

/// Loads `weights` into `sim` (by projection name, or `POP.PARAM` for a trainable
/// param), in the network's float type.
pub fn set_weights<T: Float, S: Simulation<T> + ?Sized>(sim: &mut S, weights: &[(String, Array2<f64>)]) -> Result<(), RuntimeError> {
    for (n, w) in weights {
        sim.set_trainable(n, w.mapv(T::from_f64))?;
    }
    Ok(())
}

/// The CPU's [`Trainer`]: the batch split across one network per core
/// ([`crate::learn::gradient_split`]), or on one network when updates within the sequence
/// need the whole batch's gradient at every step. `make_net(b)` builds the network for b
/// batch elements; the networks are kept from one batch to the next (reset, not rebuilt).
pub struct CpuTrainer<'a, T: 'static> {
    make_net: &'a dyn Fn(usize) -> Result<Network<T>, RuntimeError>,
    nets: Vec<Network<T>>,
    trainable: &'a [String],
    method: Method,
    dropout_pass: Option<u64>,
    /// Whether the network has a `batch_norm` (then the batch runs on one network: its
    /// statistics are the whole batch's); found when the first networks are built.
    batch_norm: bool,
}

impl<'a, T: Float> CpuTrainer<'a, T> {
    pub fn new(make_net: &'a dyn Fn(usize) -> Result<Network<T>, RuntimeError>, trainable: &'a [String], method: Method) -> CpuTrainer<'a, T> {
        CpuTrainer { make_net, nets: Vec::new(), trainable, method, dropout_pass: None, batch_norm: false }
    }
}

impl<T: Float> Trainer<T> for CpuTrainer<'_, T> {
    fn start(&mut self, batch: usize, whole: bool, weights: &[(String, Array2<f64>)]) -> Result<(), RuntimeError> {
        let threads = if whole || self.batch_norm { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()) };
        let sizes = split_sizes(batch, threads);
        if self.nets.iter().map(|n| n.batch).ne(sizes.iter().copied()) {
            self.nets.clear();
            let first = (self.make_net)(sizes[0])?;
            if sizes.len() > 1 && first.has_batch_norm() {
                // A batch norm normalises over the whole batch: one network holds it
                // (found on the first network built, before the others are).
                self.batch_norm = true;
                self.nets.push((self.make_net)(batch)?);
            } else {
                self.nets.push(first);
                for &b in &sizes[1..] {
                    self.nets.push((self.make_net)(b)?);
                }
            }
        }
        for net in self.nets.iter_mut() {
            start(net, weights)?;
            net.dropout_pass = self.dropout_pass;
        }
        Ok(())
    }

    fn set_dropout_pass(&mut self, pass: Option<u64>) {
        self.dropout_pass = pass;
        self.nets.iter_mut().for_each(|n| n.dropout_pass = pass);
    }

    fn networks(&self) -> &[Network<T>] {
        &self.nets
    }

    fn gradient(&mut self, data: &mut dyn Sequence, online: Option<Online>) -> Result<Gradients, RuntimeError> {
        match online {
            Some(on) => CpuGradient::new(&self.nets[0], self.trainable, self.method)?.run_online(&mut self.nets[0], data, Some(on)),
            None => gradient_split(&mut self.nets, self.trainable, data, self.method),
        }
    }
}

/// Runs one batch on `trainer`: gradient over the sequences from the network's initial
/// state, then one optimiser step (with `update_every = Some(n)`, also one every n steps
/// within the sequence: truly online learning). `labels` gives the class of each batch
/// element for the accuracy. The weights and optimiser state stay in f64 whatever the
/// network's float type `T`.
pub fn train_batch<T: Float>(
    trainer: &mut dyn Trainer<T>,
    weights: &mut Vec<(String, Array2<f64>)>,
    data: &mut dyn Sequence,
    labels: &[usize],
    opt: &mut Optimizer,
    update_every: Option<usize>,
) -> Result<BatchReport, RuntimeError> {
    // Dropout masks while training only, drawn anew each batch: keyed by the optimiser's
    // step count before it (the same on every MPI rank).
    trainer.set_dropout_pass(Some(opt.steps() as u64));
    let report = train_batch_masked(trainer, weights, data, labels, opt, update_every);
    trainer.set_dropout_pass(None);
    report
}

fn train_batch_masked<T: Float>(
    trainer: &mut dyn Trainer<T>,
    weights: &mut Vec<(String, Array2<f64>)>,
    data: &mut dyn Sequence,
    labels: &[usize],
    opt: &mut Optimizer,
    update_every: Option<usize>,
) -> Result<BatchReport, RuntimeError> {
    trainer.start(data.batch(), update_every.is_some(), weights)?;
    let described = |e: RuntimeError, nets: &[Network<T>]| crate::learn::describe_non_finite(&nets[0], e);
    let mut step = constrained_step(&trainer.networks()[0], weights, opt);
    let g = match update_every {
        Some(every) => {
            let mut update = |grads: &[(String, Array2<f64>)]| {
                step(weights, grads);
                Ok(weights.clone())
            };
            trainer.gradient(data, Some(Online { every, update: &mut update }))
        }
        None => trainer.gradient(data, None),
    };
    let g = g.map_err(|e| described(e, trainer.networks()))?;
    step(weights, &g.total);
    // The state the pass moved on (batch norms' running estimates), from the network
    // that held the whole batch (a batch norm's is never split).
    keep_state(trainer.networks(), weights)?;
    Ok(report(trainer.networks(), trainer.spike_totals(), data.steps(), g.loss, &g.evidence, labels))
}

/// The tensors of `weights` that are state (`state/...`, [`crate::batchnorm::STATE_PREFIX`]:
/// batch norms' running estimates) as `nets` hold them after a training pass; refused if
/// the batch was split across networks (each would hold its own).
fn keep_state<T: Float>(nets: &[Network<T>], weights: &mut [(String, Array2<f64>)]) -> Result<(), RuntimeError> {
    for (name, w) in weights.iter_mut().filter(|(n, _)| n.starts_with(crate::batchnorm::STATE_PREFIX)) {
        let [net] = nets else {
            return Err(RuntimeError::Build(format!("`{name}`: the batch ran on {} networks, each with its own running statistics", nets.len())));
        };
        let v = net.trainable(name).ok_or_else(|| RuntimeError::Input(format!("the network has no state `{name}`")))?;
        *w = v.mapv(|x| x.to_f64());
    }
    Ok(())
}

/// One optimiser step on `weights`, then the network's constraints: sign-constrained
/// projections are projected back onto their sign (weights that would cross zero stop
/// at zero), and every tensor into its interval ([`Network::trainable_bounds`]: its
/// `trainable bounds (lo, hi)`; a trainable time constant at or above one step).
fn constrained_step<'a, T: Float>(
    net: &Network<T>,
    weights: &[(String, Array2<f64>)],
    opt: &'a mut Optimizer,
) -> impl FnMut(&mut Vec<(String, Array2<f64>)>, &[(String, Array2<f64>)]) + use<'a, T> {
    let signs: Vec<Option<Sign>> = weights.iter().map(|(n, _)| net.projection(n).and_then(|(i, ..)| net.projection_sign(i))).collect();
    let bounds: Vec<(f64, f64)> = weights.iter().map(|(n, _)| net.trainable_bounds(n)).collect();
    move |weights: &mut Vec<(String, Array2<f64>)>, grads: &[(String, Array2<f64>)]| {
        opt.update(weights, grads);
        for (((_, w), sign), &(lo, hi)) in weights.iter_mut().zip(&signs).zip(&bounds) {
            if let Some(sign) = *sign {
                w.mapv_inplace(|v| project_onto_sign(sign, v));
            }
            if lo > f64::NEG_INFINITY || hi < f64::INFINITY {
                w.mapv_inplace(|v| v.clamp(lo, hi));
            }
        }
    }
}

/// Refuses starting values (drawn, loaded or resumed from a checkpoint) outside a
/// tensor's `bounds (lo, hi)`, naming the first: training would start where its
/// projection can never bring it back. A trainable time constant below one step is left
/// to the optimiser's floor, as before bounds existed.
pub fn check_bounds<T: Float>(net: &Network<T>, weights: &[(String, Array2<f64>)]) -> Result<(), RuntimeError> {
    for (name, w) in weights {
        let Some((lo, hi)) = net.declared_bounds(name) else { continue };
        if let Some(((r, c), v)) = w.indexed_iter().find(|(_, v)| !(lo..=hi).contains(*v)) {
            return Err(RuntimeError::Input(format!(
                "`{name}` starts outside its bounds: [{r}, {c}] is {v}, outside [{lo}, {hi}] (SI units); start inside them (its `init`, the population's setting or the checkpoint) or widen `bounds`"
            )));
        }
    }
    Ok(())
}

/// Runs the sequences forward on `sim` with `weights` (no gradient, no update): the loss
/// and accuracy on data the optimiser never sees (a held-out test set). `sim` (built for
/// the batch; a training network built for learning does, at the cost of its derivative
/// outputs) is reset and given `weights`; only the readout's output is read each step.
pub fn evaluate<T: Float, S: Simulation<T> + ?Sized>(
    sim: &mut S,
    weights: &[(String, Array2<f64>)],
    data: &mut dyn Sequence,
    labels: &[usize],
) -> Result<BatchReport, RuntimeError> {
    start(sim, weights)?;
    let r = readout_of(sim.network())?;
    let net = sim.network();
    let mut out = vec![T::from_f64(0.0); net.batch * net.pops[r].n];
    let (loss, evidence) = forward_loss::<T>(data, &mut |x, y| {
        sim.advance(x)?;
        sim.readout_output(r, &mut out)?;
        y.iter_mut().zip(&out).for_each(|(y, v)| *y = v.to_f64());
        Ok(())
    })?;
    // The host's spike counters (the rates reported) as of the last step.
    sim.sync(false)?;
    let net = sim.network();
    let totals = (net.pops.iter().map(|p| p.spike_count).collect(), net.batch);
    Ok(report(std::slice::from_ref(net), totals, data.steps(), loss, &evidence, labels))
}

fn readout_of<T>(net: &Network<T>) -> Result<usize, RuntimeError> {
    net.pops
        .iter()
        .position(|p| p.kind == snnc_compiler::sema::PopKind::Readout)
        .ok_or_else(|| RuntimeError::Build("evaluation needs a readout".into()))
}

/// The masked loss and the evidence of `data` run forward by `step`, which advances the
/// network by one step on its inputs and writes the readout's output.
#[allow(clippy::type_complexity)]
fn forward_loss<T: Float>(
    data: &mut dyn Sequence,
    step: &mut dyn FnMut(&[&[T]], &mut [f64]) -> Result<(), RuntimeError>,
) -> Result<(f64, Array2<f64>), RuntimeError> {
    let mut sd = StepData::<T>::new(data);
    let mut y = vec![0.0; data.shape().1 * data.batch()];
    let mut loss = 0.0;
    for t in 0..data.steps() {
        step(&sd.load(data, t), &mut y)?;
        loss += sd.loss(&y, None);
    }
    Ok((loss, sd.evidence))
}

/// Loss per sequence, accuracy of `argmax` of the evidence, and firing rates.
fn report<T>(nets: &[Network<T>], (spikes, batch): (Vec<u64>, usize), steps: usize, loss: f64, evidence: &Array2<f64>, labels: &[usize]) -> BatchReport {
    let correct = labels
        .iter()
        .enumerate()
        .filter(|(b, l)| {
            let row = evidence.row(*b);
            let best = (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap_or(0);
            best == **l
        })
        .count();
    // Rates over the whole batch (every network of a split one, every rank's share).
    let seconds = steps as f64 * nets[0].dt;
    let rates = (0..nets[0].pops.len())
        .filter(|&p| !nets[0].pops[p].spikes.is_empty())
        .map(|p| (nets[0].pops[p].name.clone(), spikes[p] as f64 / (nets[0].pops[p].n * batch) as f64 / seconds.max(1e-12)))
        .collect();
    let n = labels.len().max(1) as f64;
    BatchReport { loss: loss / n, accuracy: correct as f64 / n, rates }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_and_sgd_minimise_a_quadratic() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
            let mut opt = Optimizer::new(kind, 0.05, Some(10.0));
            let mut w = vec![("w".to_string(), Array2::from_elem((2, 2), 3.0))];
            for _ in 0..500 {
                let g = vec![("w".to_string(), w[0].1.mapv(|x| 2.0 * (x - 1.0)))];
                opt.update(&mut w, &g);
            }
            assert!(w[0].1.iter().all(|x| (x - 1.0).abs() < 1e-3), "{kind:?}: {:?}", w[0].1);
        }
    }

    /// With every scale 1 (dimensionless weights) the update is the plain Adam of before,
    /// bit for bit; a scale s makes the optimiser work on w / s: training w = s u with
    /// dL/dw = (dL/du) / s moves u exactly as training u itself would.
    #[test]
    fn optimizer_scales_are_units_and_one_changes_nothing() {
        let grad = |w: &Array2<f64>| w.mapv(|x| 2.0 * (x - 1.0) + 0.1 * x.sin());
        let mut plain = Optimizer::new(OptimizerKind::Adam, 0.05, Some(0.5));
        let mut ones = Optimizer::new(OptimizerKind::Adam, 0.05, Some(0.5));
        ones.set_scales(&[("w".into(), 1.0)]);
        let (mut a, mut b) = (vec![("w".to_string(), Array2::from_elem((2, 3), 3.0))], vec![("w".to_string(), Array2::from_elem((2, 3), 3.0))]);
        // The update as written before scales existed.
        let (mut m, mut v, mut reference) = (Array2::<f64>::zeros((2, 3)), Array2::<f64>::zeros((2, 3)), Array2::from_elem((2, 3), 3.0));
        for step in 1..=20 {
            let g = grad(&reference);
            let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            let clip = if norm > 0.5 { 0.5 / norm } else { 1.0 };
            let (c1, c2) = (1.0 - 0.9f64.powi(step), 1.0 - 0.999f64.powi(step));
            ndarray::Zip::from(&mut reference).and(&mut m).and(&mut v).and(&g).for_each(|w, m, v, g| {
                let g = g * clip;
                *m = 0.9 * *m + (1.0 - 0.9) * g;
                *v = 0.999 * *v + (1.0 - 0.999) * g * g;
                *w -= 0.05 * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
            });
            let (ga, gb) = (grad(&a[0].1), grad(&b[0].1));
            plain.update(&mut a, &[("w".into(), ga)]);
            ones.update(&mut b, &[("w".into(), gb)]);
        }
        assert!(a[0].1.iter().zip(&reference).all(|(x, y)| x.to_bits() == y.to_bits()), "{:?} vs {reference:?}", a[0].1);
        assert!(a[0].1.iter().zip(b[0].1.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
        // In SI units: w = s u.
        for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
            let s = 1e-9;
            let mut si = Optimizer::new(kind, 0.05, Some(0.5));
            si.set_scales(&[("w".into(), s)]);
            let mut unit = Optimizer::new(kind, 0.05, Some(0.5));
            let (mut w, mut u) = (vec![("w".to_string(), Array2::from_elem((2, 3), 3.0 * s))], vec![("w".to_string(), Array2::from_elem((2, 3), 3.0))]);
            for _ in 0..20 {
                let (gw, gu) = (grad(&w[0].1.mapv(|x| x / s)) / s, grad(&u[0].1));
                si.update(&mut w, &[("w".into(), gw)]);
                unit.update(&mut u, &[("w".into(), gu)]);
            }
            assert!(w[0].1.iter().zip(u[0].1.iter()).all(|(w, u)| (w / s - u).abs() < 1e-9 * u.abs().max(1.0)), "{kind:?}: {:?} vs {:?}", w[0].1, u[0].1);
        }
    }

    #[test]
    fn checkpoints_round_trip_and_bad_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("snnc-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("w.safetensors");
        let w = vec![("W_in".to_string(), Array2::from_shape_fn((3, 4), |(i, j)| i as f64 - 0.5 * j as f64)), ("W_out".to_string(), Array2::eye(2))];
        save_checkpoint(&p, &w, &[("epoch", "3".into())]).unwrap();
        let (back, meta) = load_checkpoint(&p).unwrap();
        assert_eq!(meta["epoch"], "3");
        for (n, a) in &w {
            assert_eq!(&back.iter().find(|(m, _)| m == n).unwrap().1, a);
        }
        std::fs::write(dir.join("bad.safetensors"), b"not a checkpoint").unwrap();
        assert!(load_checkpoint(&dir.join("bad.safetensors")).is_err());
        assert!(!dir.join("w.safetensors.tmp").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
