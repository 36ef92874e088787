//! A network at run time: state buffers, connectivity, drives and the order of a step,
//! allocated from the compiler's [`NetworkPlan`]. Generic over the float type (f32 or
//! f64) and over how kernels are made ([`KernelFactory`]); a network without kernels is
//! the host view of a GPU network.
//!
//! Layout: every per-neuron quantity is a contiguous slice of `batch * n` values
//! (index `b * n + i`), the structure of arrays the kernels expect.

use smallvec::SmallVec;
use crate::adapter::LowRank;
use crate::balance::{self, Balance};
use crate::batchnorm::{BatchNorm, STATE_PREFIX};
use crate::connectivity::{self, Csr, SynapseFn, apply_sign, build_threads};
use crate::dropout::{Dropout, MaskAt};
use crate::conv;
use crate::data;
use crate::error::RuntimeError;
use crate::kernels::KernelFactory;
use crate::memory;
use crate::parallel::Pool;
use crate::timers::{self, Span};
use crate::partition::{Exchange, Partition};
use crate::plastic::Plastic;
use crate::presyn::PreStage;
use crate::propagate::{Active, DelayRing, Procedural, SparseRows, Target, Weights, active_indices, arrive_into, deliver, propagate_delayed};
use crate::record::{SharedLog, lock_log};
use crate::rng::{Rng, stream_id};
use crate::scalar::Float;
use crate::parallel::MAX_STAGES;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use snnc_compiler::backend::{ClearingArgs, ParamSpec, RandomCtx, StepKernel};
use snnc_compiler::discretise::{DerivLayout, Step};
use snnc_compiler::pipeline::{self, CompileOptions, NetworkPlan, PopulationPlan};
use snnc_compiler::sema::{IndexExpr, IndexVar, Init, NetworkDef, PopKind, Program, Source, SynInit, Topology};
pub use snnc_compiler::syntax::ast::Sign;

/// How to build a network: the compiler's options (see [`CompileOptions`]) and the batch.
#[derive(Clone, Debug)]
pub struct Options {
    /// Time step (s), over the network's own ([`pipeline::resolve_dt`]).
    pub dt: Option<f64>,
    pub seed: u64,
    pub batch: usize,
    /// Replace every spike by `sigmoid(alpha * z)` (see `discretise_smooth`): a smooth
    /// network for checking gradients against finite differences.
    pub smooth_spikes: Option<f64>,
    /// Integrate every population with this method instead of the model's own choice
    /// (e.g. forward Euler to compare with simulators that use it).
    pub method: Option<snnc_compiler::sema::Method>,
    /// Compile spiking populations with their derivatives (D, Df, ds/dh) as extra
    /// outputs of the step, for the learning rules.
    pub learning: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { dt: None, seed: 0, batch: 1, smooth_spikes: None, method: None, learning: false }
    }
}

impl Options {
    /// What the compiler's pipeline is asked for.
    pub fn compile(&self) -> CompileOptions {
        CompileOptions { dt: self.dt, seed: self.seed, smooth_spikes: self.smooth_spikes, method: self.method, learning: self.learning }
    }
}

pub(crate) struct Proj<T> {
    pub(crate) name: String,
    pub(crate) from: Source,
    /// The source population's state read instead of its spikes (`connect rec.v -> out`).
    pub(crate) from_state: Option<usize>,
    pub(crate) to: usize,
    /// Index of the target population's kernel input that this projection adds to.
    pub(crate) input: usize,
    pub(crate) weights: Weights<T>,
    n_synapses: usize,
    pub(crate) delay: Option<DelayRing<T>>,
    /// Per-synapse delays in steps (sparse weights' order), read with a ring as long as
    /// the longest; `None` when every synapse has the ring's delay.
    pub(crate) syn_delay: Option<Vec<u32>>,
    sign: Option<Sign>,
    /// `trainable bounds (lo, hi)` of the weights.
    bounds: Option<(f64, f64)>,
    /// `dropout P`: the presynaptic values masked per step while training.
    pub(crate) dropout: Option<Dropout<T>>,
    /// `adapter rank R`: the trainable low-rank term added to the weights.
    pub(crate) adapter: Option<LowRank<T>>,
    /// `batch_norm`: the delivered current normalised (`crate::batchnorm`).
    pub(crate) batch_norm: Option<BatchNorm<T>>,
    /// The synapse's presynaptic state (short-term plasticity), if it has any.
    pub(crate) pre_stage: Option<PreStage<T>>,
    /// The synapse's plasticity (STDP), if its events change its weights.
    pub(crate) plastic: Option<Plastic<T>>,
    /// `conv(...)` / `pool(...)`: the kernel the sparse weights are written from.
    pub(crate) shared: Option<conv::Shared<T>>,
}

/// One population at run time.
pub struct Population<T> {
    pub name: String,
    /// Neurons per batch element.
    pub n: usize,
    pub kind: PopKind,
    /// State names in kernel order (a `_refractory` counter last, if any).
    pub state_names: Vec<String>,
    pub states: Vec<Vec<T>>,
    /// The latest spikes (`batch * n`, 0 or 1); empty for non-spiking populations. Read
    /// them with [`Population::spikes`]: a step delivers from `active`, so a value written
    /// here from outside would reach some projections and not others.
    pub(crate) spikes: Vec<T>,
    /// `Linear` readouts: the output `x W` of the current step.
    pub output: Vec<T>,
    /// The kernel inputs (deliveries and drives summed). Between steps each holds its
    /// start, 0 plus its drives: a step's kernel leaves them so ([`Network::step_part`]),
    /// and deliveries add into them.
    pub(crate) inputs: Vec<Vec<T>>,
    pub input_names: Vec<String>,
    /// Constant contributions to inputs every step: (input index, per-element values).
    pub(crate) drives: Vec<(usize, Vec<T>)>,
    /// Per input: whether no projection delivers into it. Such an input holds 0 plus its
    /// drives from the start and is never written again (a step does not gather it).
    pub(crate) fixed_inputs: Vec<bool>,
    /// The inputs a step puts back at their start after the kernel: those delivered into
    /// that the kernel does not clear itself (`StepKernel::cleared_inputs`).
    pub(crate) restarted: Vec<usize>,
    /// Per input: its value where it is the same for every neuron at every step
    /// ([`NetworkPlan::constant_inputs`]); the CPU kernel folds it instead of loading it.
    pub(crate) constant_inputs: Vec<Option<f64>>,
    /// The `PerNeuron` params (layout order), `batch * n` values each.
    pub(crate) per_neuron_params: Vec<Vec<T>>,
    /// The CPU kernel; `None` for a `Linear` readout, and for every population of a
    /// network built without kernels (the host view of a GPU network).
    pub(crate) kernel: Option<Box<dyn StepKernel<T>>>,
    /// The compiled step (with its dt); `None` for a `Linear` readout.
    pub step: Option<Step>,
    /// How each param reaches the kernel (uniform values folded in; per-neuron ones
    /// are in `per_neuron_params`).
    pub specs: Vec<ParamSpec>,
    /// Total spikes since the start, per batch element.
    pub spike_count: u64,
    /// Per batch element, the indices of the neurons that spiked in the latest step
    /// ([`Population::active`]).
    pub(crate) active: Vec<Vec<u32>>,
    /// With `Options::learning`: where the step writes D, Df and ds/dh among `states`.
    pub deriv: Option<DerivLayout>,
    /// `states` as built, for [`Network::reset`].
    pub(crate) initial: Vec<Vec<T>>,
}

/// What [`Network::step_traced`] captures of one step.
#[derive(Clone, Debug, Default)]
pub struct StepTrace<T> {
    /// Per projection: the presynaptic activity it read (x^t), `batch * n_pre`.
    pub pre: Vec<Vec<T>>,
    /// Per projection, where the network knows them (spikes, external inputs): the
    /// non-zero entries of `pre` as (batch element, presynaptic index), in row order;
    /// `None` for dense sources (a state read directly, a readout's output).
    pub nonzero: Vec<Option<Vec<(u32, u32)>>>,
}

impl<T> Population<T> {
    /// What a readout gives the loss this step: `x W` for the stateless `Linear`, the
    /// first state for a model with dynamics (e.g. `LeakyReadout`'s `r`).
    pub fn readout_output(&self) -> &[T] {
        if self.step.is_none() { &self.output } else { &self.states[0] }
    }

    /// What made the CPU kernel (`"avx512"`, `"avx2"`, `"cranelift"`, `"interpreter"`); `None`
    /// without one (a readout, a GPU network's host view).
    pub fn kernel_generator(&self) -> Option<&'static str> {
        self.kernel.as_ref().map(|k| k.generator())
    }

    /// The latest spikes, `batch * n` values (0 or 1; a rate population's sent values);
    /// empty for a population that does not spike. Read-only: the next step delivers
    /// from [`Population::active`], the same spikes as lists.
    pub fn spikes(&self) -> &[T] {
        &self.spikes
    }

    /// Per batch element, the indices of the neurons that spiked in the latest step, in
    /// ascending order.
    pub fn active(&self) -> &[Vec<u32>] {
        &self.active
    }
}

impl<T: Float> Population<T> {
    /// Writes the start (0 plus drives) of every input, or with `gathered_only` of
    /// those deliveries add into (not the fixed ones), whole.
    fn restart_inputs(&mut self, gathered_only: bool) {
        let n = self.n;
        for (k, buf) in self.inputs.iter_mut().enumerate() {
            if gathered_only && self.fixed_inputs.get(k).copied().unwrap_or(false) {
                continue;
            }
            for (b, y) in buf.chunks_mut(n.max(1)).enumerate() {
                start_input(&self.drives, k, n, b, &(0..n), y, false);
            }
        }
    }

    /// The buffers of one population, from its plan: per-neuron params and initial
    /// states repeated for each batch element; no kernel yet.
    pub(crate) fn allocate(plan: &PopulationPlan, batch: usize) -> Population<T> {
        let tile = |v: &Vec<f64>| -> Vec<T> { (0..batch).flat_map(|_| v.iter().map(|x| T::from_f64(*x))).collect() };
        let n = plan.n;
        let mut pop = Population {
            name: plan.name.clone(),
            n,
            kind: plan.kind,
            state_names: Vec::new(),
            states: Vec::new(),
            spikes: Vec::new(),
            output: Vec::new(),
            inputs: Vec::new(),
            input_names: Vec::new(),
            drives: Vec::new(),
            fixed_inputs: Vec::new(),
            restarted: Vec::new(),
            constant_inputs: Vec::new(),
            per_neuron_params: Vec::new(),
            kernel: None,
            step: None,
            specs: Vec::new(),
            spike_count: 0,
            active: Vec::new(),
            deriv: None,
            initial: Vec::new(),
        };
        let Some(d) = &plan.dynamics else {
            // A `Linear` readout: its projections sum into `output`.
            pop.output = vec![T::default(); batch * n];
            return pop;
        };
        pop.states = d.initial.iter().map(tile).collect();
        pop.initial = pop.states.clone();
        pop.state_names = d.state_names.clone();
        pop.input_names = d.input_names.clone();
        pop.inputs = vec![vec![T::default(); batch * n]; d.input_names.len()];
        pop.per_neuron_params = d.per_neuron.iter().map(tile).collect();
        if d.step.spike.is_some() {
            pop.spikes = vec![T::default(); batch * n];
        }
        pop.step = Some(d.step.clone());
        pop.specs = d.specs.clone();
        pop.deriv = d.deriv;
        pop
    }
}

impl<T: Float> Proj<T> {
    /// Projection `pi`: its source, target input, connectivity and initial weights
    /// (drawn from its stream, folded onto its sign) and delay ring.
    fn build(net: &NetworkDef, plan: &NetworkPlan, pops: &[Population<T>], pi: usize, batch: usize, rng: &Rng) -> Result<Proj<T>, RuntimeError> {
        let pr = &net.projections[pi];
        let from_state = match (&pr.from_state, pr.from) {
            (Some(name), Source::Pop(q)) => Some(pops[q].state_names.iter().position(|n| n == name).ok_or_else(|| {
                RuntimeError::Build(format!("projection `{}`: population `{}` has no state `{name}`", pr.name, pops[q].name))
            })?),
            _ => None,
        };
        if let (Source::Pop(q), None) = (pr.from, from_state) {
            if q == pr.to && pops[q].step.is_none() {
                return Err(RuntimeError::Build(format!("projection `{}`: a `Linear` readout cannot feed itself", pr.name)));
            }
            if pops[q].step.is_some() && pops[q].spikes.is_empty() {
                return Err(RuntimeError::Build(format!(
                    "projection `{}`: population `{}` does not spike, so it cannot send anything",
                    pr.name, pops[q].name
                )));
            }
        }
        let n_pre = match pr.from {
            Source::Input(i) => net.inputs[i].size,
            Source::Pop(p) => net.populations[p].size,
        };
        let n_post = net.populations[pr.to].size;
        let built = initial_weights(net, plan, pi, n_pre, n_post, rng)?;
        let (delay, syn_delay) = match built.delays {
            Some(d) => {
                let longest = d.iter().copied().max().unwrap_or(0) as usize;
                // An expression's or a file's delays are only known now: the ring they
                // need is checked against the memory left before it is allocated.
                let bytes = (longest as u64 + 1).saturating_mul((batch * n_post * std::mem::size_of::<T>()) as u64 + 96);
                if let Some(room) = memory::available().filter(|room| bytes > *room) {
                    return Err(RuntimeError::Build(format!(
                        "projection `{}`: its longest delay, {longest} steps, needs a delay ring of {} ({} available)",
                        pr.name,
                        memory::format_bytes(bytes),
                        memory::format_bytes(room)
                    )));
                }
                (Some(DelayRing::new(longest.max(1), batch, n_post)), Some(d))
            }
            None => {
                let d = pr.delay.as_ref().and_then(SynInit::constant).map(|d| (d / plan.dt).round() as usize).filter(|d| *d > 0);
                (d.map(|d| DelayRing::new(d, batch, n_post)), None)
            }
        };
        let adapter = pr.adapter.map(|r| LowRank::new(n_pre, n_post, r, rng, stream_id(&format!("{}.{}.adapter", net.name, pr.name))));
        let pre_stage = plan.pre_stages[pi].as_ref().map(|s| PreStage::allocate(s, format!("{}.pre", pr.name), batch));
        // A plastic projection delays its source's spikes itself (`plastic.rs`).
        let (delay, plastic) = match &plan.plastic[pi] {
            None => (delay, None),
            Some(_) if syn_delay.is_some() => {
                return Err(RuntimeError::Build(format!("plastic projection `{}`: a delay per synapse is not supported; give one `delay`", pr.name)));
            }
            Some(p) => {
                let d = delay.as_ref().map_or(0, DelayRing::delay);
                (None, Some(Plastic::allocate(p, &pr.name, &pops[pr.to], &built.weights, (n_pre, d), pr.no_self && Source::Pop(pr.to) == pr.from, batch)?))
            }
        };
        let batch_norm = pr.batch_norm.then(|| BatchNorm::new(n_post, batch));
        if batch_norm.is_some() && (delay.is_some() || pre_stage.is_some() || plastic.is_some()) {
            return Err(RuntimeError::Build(format!("projection `{}`: `batch_norm` needs a direct connection, without synapse model or delay", pr.name)));
        }
        Ok(Proj {
            name: pr.name.clone(),
            from: pr.from,
            from_state,
            to: pr.to,
            input: plan.projection_inputs[pi],
            weights: built.weights,
            n_synapses: built.n_synapses,
            delay,
            syn_delay,
            sign: pr.sign,
            bounds: pr.bounds,
            dropout: pr.dropout.map(|p| Dropout::new(p, stream_id(&format!("{}.{}.dropout", net.name, pr.name)))),
            adapter,
            batch_norm,
            pre_stage,
            plastic,
            shared: built.shared,
        })
    }
}

/// What building a projection's connectivity gives.
struct Built<T> {
    weights: Weights<T>,
    n_synapses: usize,
    /// Per-synapse delays in steps, when they differ (in the sparse weights' order).
    delays: Option<Vec<u32>>,
    shared: Option<conv::Shared<T>>,
}

/// A projection's connectivity and initial weights (its `init`, else variance-preserving
/// for its fan-in), drawn from the projection's own stream and folded onto its sign
/// (Dale's law), and its per-synapse delays. Rows are built on [`build_threads`]
/// threads; every draw is keyed by its row, so the count does not change the network.
fn initial_weights<T: Float>(net: &NetworkDef, plan: &NetworkPlan, pi: usize, n_pre: usize, n_post: usize, rng: &Rng) -> Result<Built<T>, RuntimeError> {
    let pr = &net.projections[pi];
    let in_proj = |e: RuntimeError| data::in_context(&format!("projection `{}`", pr.name), e);
    let default = SynInit::Draw(match &pr.topology {
        // Average pooling: each window's mean.
        Topology::Conv(s) if s.pool => Init::Const(1.0 / conv::fan_in(s)),
        t => connectivity::default_init(match t {
            Topology::Sparse { p } | Topology::Procedural { p } => p * n_pre as f64,
            Topology::SparseExpr { p } => connectivity::sampled_mean_probability(p, n_pre, n_post).unwrap_or(1.0) * n_pre as f64,
            Topology::OneToOne => 1.0,
            Topology::Conv(s) => conv::fan_in(s),
            _ => n_pre as f64,
        }),
    });
    let init = pr.init.as_ref().unwrap_or(&default);
    let stream = stream_id(&format!("{}.{}", net.name, pr.name));
    let no_self = pr.no_self && Source::Pop(pr.to) == pr.from;
    let fold = |w: f64| T::from_f64(apply_sign(pr.sign, w));
    let threads = build_threads();
    let names = (source_name(net, pr.from), net.populations[pr.to].name.as_str());
    let cx = SynCx { rng, plan, from: pr.from, to: pr.to, n_pre, n_post };
    // Dense and one-to-one weights are keyed by (row, column), sparse ones by (row, place
    // in the row) from their own stream, as before index expressions existed.
    let by_column = |v| cx.synapse_fn(v, stream, Key::Column).map_err(in_proj);
    let by_place = |v| cx.synapse_fn(v, connectivity::weight_stream(stream), Key::Place).map_err(in_proj);
    let file = match &pr.topology {
        Topology::File { path } => Some(data::load_projection(std::path::Path::new(path), n_pre, n_post, names.0, names.1).map_err(in_proj)?),
        _ => None,
    };
    let per_synapse_delay = file.as_ref().is_some_and(|f| f.delay.is_some()) || pr.delay.as_ref().is_some_and(|d| d.constant().is_none());
    let csr: Csr = match (&pr.topology, per_synapse_delay) {
        // Drawn straight into the run's precision: an f64 copy would double the peak.
        (Topology::Dense, false) => {
            let w = connectivity::dense_with(n_pre, n_post, no_self, &*by_column(init)?, fold, threads);
            let w = ndarray::Array2::from_shape_vec((n_pre, n_post), w).map_err(|e| in_proj(RuntimeError::Build(e.to_string())))?;
            let n = w.len();
            return Ok(Built { weights: Weights::Dense(w), n_synapses: n, delays: None, shared: None });
        }
        (Topology::OneToOne, false) => {
            let f = by_column(init)?;
            let w: Vec<T> = (0..n_pre).map(|i| fold(f(i, i as u32, 0))).collect();
            return Ok(Built { n_synapses: w.len(), weights: Weights::OneToOne(w), delays: None, shared: None });
        }
        // With a delay per synapse, every topology is kept sparse (one ring for them all).
        (Topology::Dense, true) => connectivity::fixed_probability_with(n_pre, n_post, 1.0, no_self, rng, stream, &*by_column(init)?, threads),
        (Topology::OneToOne, true) => {
            let f = by_column(init)?;
            Csr { n_pre, n_post, row_ptr: (0..=n_pre).collect(), col: (0..n_pre as u32).collect(), weight: (0..n_pre).map(|i| f(i, i as u32, 0)).collect() }
        }
        (Topology::Sparse { p }, _) => connectivity::fixed_probability_with(n_pre, n_post, *p, no_self, rng, stream, &*by_place(init)?, threads),
        (Topology::SparseExpr { p }, _) => {
            let prob = cx.expr_fn(p).map_err(in_proj)?;
            connectivity::pairwise_probability(n_pre, n_post, no_self, rng, stream, &*prob, &*by_place(init)?, threads).map_err(|(i, j, v)| {
                in_proj(RuntimeError::Build(format!("the connection probability of synapse ({i}, {j}) is {v}, outside [0, 1]")))
            })?
        }
        (Topology::Conv(shape), _) => {
            // One draw per kernel entry, keyed by (output channel, entry).
            let draw = by_column(init)?;
            let (csr, entry) = conv::structure(shape);
            let kernel = ndarray::Array2::from_shape_fn(shape.kernel_dim(), |(o, j)| fold(draw(o, j as u32, 0)));
            let shared = conv::Shared { kernel, entry: entry.into() };
            let mut built = sparse_built(csr, None, fold);
            if let Weights::Sparse(rows) = &mut built.weights {
                rows.set_weights(|w| shared.write_weights(w));
            }
            built.shared = Some(shared);
            return Ok(built);
        }
        (Topology::File { .. }, _) => {
            let f = file.expect("loaded above");
            if f.delay.is_some() && pr.delay.is_some() {
                let path = match &pr.topology {
                    Topology::File { path } => path.as_str(),
                    _ => "",
                };
                return Err(in_proj(RuntimeError::Build(format!("E0606: `{path}` gives every synapse a delay, and so does the `delay` clause: keep one"))));
            }
            // A file's weights are in units of the `weight` clause, if any; without
            // weights in the file, the clause (or the default) draws them.
            let scale = match (&f.weight, &pr.init) {
                (Some(_), None) => None,
                (Some(_), Some(v)) | (None, Some(v)) => Some(by_place(v)?),
                (None, None) => Some(by_place(&default)?),
            };
            let mut f = f;
            let file_delays = f.delay.take();
            let csr = f.into_csr(scale.as_deref(), threads);
            let delays = file_delays.map(|d| d.iter().map(|s| steps(*s, plan.dt)).collect());
            return Ok(sparse_built(csr, delays, fold));
        }
        (Topology::Procedural { p }, _) => {
            // Nothing stored: the rows of spiking sources are drawn again at each spike,
            // with the draws `sparse p = P` stores.
            if per_synapse_delay {
                return Err(in_proj(RuntimeError::Build("a delay per synapse needs stored connectivity (`sparse p = ...`): `procedural` draws its rows again at every spike".into())));
            }
            let SynInit::Draw(draw) = init else {
                return Err(in_proj(RuntimeError::Build("`procedural` weights are drawn from an initialiser (a constant, `U`, `normal`); an expression of the indices needs stored connectivity (`sparse p = ...`)".into())));
            };
            let draws = connectivity::FixedProbability::new(n_post, *p, no_self, stream);
            let weights = Weights::Procedural(Procedural { draws, init: *draw, rng: *rng, fold: |sign, w| T::from_f64(apply_sign(sign, w)), sign: pr.sign });
            // Not stored: the expected count (the stored variant's is within a few sqrt of it).
            let n_synapses = (p * n_pre as f64 * n_post as f64).round() as usize;
            return Ok(Built { weights, n_synapses, delays: None, shared: None });
        }
    };
    let delays = match &pr.delay {
        Some(d) if per_synapse_delay => {
            let f = cx.synapse_fn(d, stream_id(&format!("{}.{}.delay", net.name, pr.name)), Key::Place).map_err(in_proj)?;
            Some(per_synapse(&csr, threads, &|i, j, k| steps(f(i, j, k), plan.dt)))
        }
        _ => None,
    };
    Ok(sparse_built(csr, delays, fold))
}

/// Sparse weights in the run's precision, with their delays.
fn sparse_built<T: Float>(csr: Csr, delays: Option<Vec<u32>>, fold: impl Fn(f64) -> T) -> Built<T> {
    let n_synapses = csr.nnz();
    Built { weights: Weights::Sparse(SparseRows::from_owned_csr(csr, fold)), n_synapses, delays, shared: None }
}

/// A delay in seconds as whole steps of `dt` (a negative or NaN one as 0: sema and the
/// file checks refuse those before).
fn steps(d: f64, dt: f64) -> u32 {
    (d / dt).round().clamp(0.0, f64::from(u32::MAX)) as u32
}

/// `f(i, j, k)` for every synapse of `csr`, in its order, rows shared out over threads.
fn per_synapse(csr: &Csr, threads: usize, f: &(dyn Fn(usize, u32, usize) -> u32 + Sync)) -> Vec<u32> {
    connectivity::par_blocks(csr.n_pre, threads, |rows| {
        let mut out = Vec::with_capacity(csr.row_ptr[rows.end] - csr.row_ptr[rows.start]);
        for i in rows {
            let (cols, _) = csr.row(i);
            out.extend(cols.iter().enumerate().map(|(k, &j)| f(i, j, k)));
        }
        out
    })
    .concat()
}

fn source_name(net: &NetworkDef, from: Source) -> &str {
    match from {
        Source::Input(i) => &net.inputs[i].name,
        Source::Pop(p) => &net.populations[p].name,
    }
}

/// How a drawn synapse value is keyed: by its column (dense, one-to-one) or by its place
/// in the row (sparse).
#[derive(Clone, Copy)]
enum Key {
    Column,
    Place,
}

/// What a synapse value of a projection may read: its random numbers, its neurons'
/// params (from the plan, in f64) and its sizes.
struct SynCx<'a> {
    rng: &'a Rng,
    plan: &'a NetworkPlan,
    from: Source,
    to: usize,
    n_pre: usize,
    n_post: usize,
}

impl<'a> SynCx<'a> {
    /// The value of `v` for synapse (i, j, k): a draw keyed by `key`, or the expression.
    fn synapse_fn(&self, v: &'a SynInit, stream: u32, key: Key) -> Result<Box<SynapseFn<'a>>, RuntimeError> {
        let rng = self.rng;
        Ok(match (v, key) {
            (SynInit::Draw(init), Key::Column) => Box::new(move |i, j, _| connectivity::sample(init, rng, stream, i as u64, j)),
            (SynInit::Draw(init), Key::Place) => Box::new(move |i, _, k| connectivity::sample(init, rng, stream, i as u64, k as u32)),
            (SynInit::Expr(e), _) => self.expr_fn(e)?,
        })
    }

    /// An index expression's value for synapse (i, j).
    fn expr_fn(&self, e: &'a IndexExpr) -> Result<Box<SynapseFn<'a>>, RuntimeError> {
        let ev = IndexEval::new(e, self.plan, self.from, self.to, self.n_pre, self.n_post)?;
        Ok(Box::new(move |i, j, _| ev.at(i, j as usize)))
    }
}

/// An index expression ready to evaluate per synapse: where each of its symbols reads.
struct IndexEval<'a> {
    expr: &'a IndexExpr,
    reads: Vec<Read<'a>>,
}

enum Read<'a> {
    Pre,
    Post,
    Const(f64),
    PreValues(&'a [f64]),
    PostValues(&'a [f64]),
}

impl<'a> IndexEval<'a> {
    fn new(expr: &'a IndexExpr, plan: &'a NetworkPlan, from: Source, to: usize, n_pre: usize, n_post: usize) -> Result<IndexEval<'a>, RuntimeError> {
        let param = |pop: usize, name: &str| -> Result<Read<'a>, RuntimeError> {
            let p = &plan.populations[pop];
            let missing = || RuntimeError::Build(format!("population `{}` has no param `{name}` to read", p.name));
            let d = p.dynamics.as_ref().ok_or_else(missing)?;
            let k = (0..d.specs.len()).find(|&k| d.step.param_name(k) == name).ok_or_else(missing)?;
            Ok(match d.specs[k] {
                ParamSpec::Uniform(v) => Read::Const(v),
                ParamSpec::PerNeuron => Read::PreValues(&d.per_neuron[d.specs[..k].iter().filter(|s| matches!(s, ParamSpec::PerNeuron)).count()]),
            })
        };
        let reads = expr
            .vars
            .iter()
            .map(|v| {
                Ok(match v {
                    IndexVar::Pre => Read::Pre,
                    IndexVar::Post => Read::Post,
                    IndexVar::NPre => Read::Const(n_pre as f64),
                    IndexVar::NPost => Read::Const(n_post as f64),
                    IndexVar::PreParam(name) => match from {
                        Source::Pop(q) => param(q, name)?,
                        Source::Input(_) => return Err(RuntimeError::Build(format!("`{name}_pre`: an input has no params"))),
                    },
                    IndexVar::PostParam(name) => match param(to, name)? {
                        Read::PreValues(v) => Read::PostValues(v),
                        r => r,
                    },
                })
            })
            .collect::<Result<_, RuntimeError>>()?;
        Ok(IndexEval { expr, reads })
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        let value = |r: &Read| match r {
            Read::Pre => i as f64,
            Read::Post => j as f64,
            Read::Const(v) => *v,
            Read::PreValues(v) => v[i],
            Read::PostValues(v) => v[j],
        };
        // Few symbols: on the stack.
        let mut buf = [0.0f64; 8];
        if self.reads.len() <= buf.len() {
            for (b, r) in buf.iter_mut().zip(&self.reads) {
                *b = value(r);
            }
            self.expr.eval(&buf[..self.reads.len()])
        } else {
            self.expr.eval(&self.reads.iter().map(value).collect::<Vec<_>>())
        }
    }
}

pub struct Network<T: 'static> {
    pub name: String,
    pub dt: f64,
    pub batch: usize,
    pub seed: u64,
    pub step_index: u64,
    pub inputs: Vec<(String, usize)>,
    pub pops: Vec<Population<T>>,
    pub(crate) projs: Vec<Proj<T>>,
    /// The factory the network's kernels come from, for the learning rules' steps;
    /// `None` for a network without kernels.
    pub(crate) factory: Option<&'static dyn KernelFactory<T>>,
    /// Index of this network's first batch element in a larger batch split across
    /// networks (the random draws of element b are those of the whole batch's b0 + b).
    pub batch_offset: usize,
    /// The training pass whose dropout masks the projections with `dropout P` apply
    /// (`crate::dropout`); `None` (evaluation, `snnc run`): nothing is dropped. Set, it
    /// also makes batch norms normalise with the batch's statistics and update their
    /// running estimates (`crate::batchnorm`, [`Network::training`]).
    pub dropout_pass: Option<u64>,
    /// Per external input and batch element, the indices of its non-zero entries this step.
    ext_active: Vec<Vec<Vec<u32>>>,
    /// The threads of a step split across cores ([`Network::set_threads`]); `None`: one.
    pool: Option<Pool>,
    /// Per population and chunk of its neurons, what the chunk's step found (see [`Part`]).
    pub(crate) parts: Vec<Vec<Mutex<Part>>>,
    /// Per population, the neurons that spiked this step ([`Fresh`]).
    fresh: Vec<Fresh>,
    /// Per population whose kernel stores its spikes as bits too (`StepKernel::spike_bits`)
    /// and a batch of one, the bits of this step, from which a chunk lists its spikes (n / 8
    /// bytes read, not n floats); else empty. Chunk c's words start at `bits_at[p][c]`
    /// (its element i at bit i % 16 of word i / 16 from there; the last entry: the words
    /// of all), a multiple of 32 words
    /// (64 bytes: its own cache lines where the buffer starts on one, as `CacheAligned`
    /// starts it): the threads' chunks meet where both start their kernels, and a line
    /// of words written by both would pass between their cores there every step.
    spike_bits: Vec<Vec<u16>>,
    bits_at: Vec<Vec<usize>>,
    /// Per population, whether every spike listed in its `active` (the last step) has
    /// the value 1 (as [`Joined::ones`]).
    active_ones: Vec<bool>,
    /// Per population, whether this step gathers and steps each chunk in one go though
    /// it reads its own spikes ([`Network::self_reads_listed`]).
    fused: Vec<bool>,
    /// Per population, the neurons of each part, and the parts this process steps (all
    /// of them unless the network is partitioned: `partition.rs`).
    pub(crate) ranges: Vec<Vec<std::ops::Range<usize>>>,
    pub(crate) local: Vec<std::ops::Range<usize>>,
    /// This process's share of a network partitioned over processes, if it is.
    pub(crate) partition: Option<Partition>,
    /// Neurons per chunk when set ([`Network::set_chunk`]); else `parallel::chunks_of`.
    chunk: Option<usize>,
    /// Per population, the cells its chunks are runs of, at which the rows of the sparse
    /// projections into it are split: [`balance::CELLS_PER_CHUNK`] a chunk where several
    /// threads step it in chunks that move (`balance.rs`), else its chunks.
    cells: Vec<Vec<std::ops::Range<usize>>>,
    /// On several threads with the chunks split automatically (no `set_chunk`, no
    /// partition) and [`Network::set_balancing`] on: the chunks' times, after which their
    /// bounds move (`balance.rs`).
    balance: Option<Balance>,
    balancing: bool,
    ptrs: StepPtrs<T>,
    /// Which network this is (unique in the process): what a recorder made for it
    /// checks before it attaches or samples (`record.rs`).
    id: u64,
}

/// The ids of networks ([`Network::id`]).
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A population's spikes of this step, per batch element: its parts' lists joined once
/// its chunks are stepped, read by the populations after it (a plain list: no thread of
/// a later stage locks the parts) and its `active` at the end of the step. Written by
/// the thread that finishes the population's stage (`Pool::for_stages`' epilogue), when
/// no other thread reads it, or through `&mut Network`; read by the later stages.
#[derive(Default)]
struct Fresh(UnsafeCell<Joined>);

// SAFETY: see the type: its writer and its readers never overlap (`Network::join`).
unsafe impl Sync for Fresh {}

#[derive(Default)]
struct Joined {
    lists: Vec<Vec<u32>>,
    /// Every spike listed has the value 1: then delivery needs only the lists (smoothed
    /// spikes and graded events have other values).
    ones: bool,
    /// Where its spikes are logged step by step: one log per recorder attached.
    logs: Vec<SharedLog>,
}

/// How a stage of a phase treats a population's chunks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Deliveries only (the population reads its own last spikes' values).
    Gather,
    /// The kernel only (after `Gather`).
    Step,
    Both,
}

/// Appends the elements whose bit is set in `words` (element `base + i`: bit i % 16 of
/// word i / 16), in ascending order: 64 at a time, one branch for four words of zeros.
fn active_from_bits(words: &[u16], base: usize, out: &mut Vec<u32>) {
    let mut push = |mut w: u64, at: usize| {
        while w != 0 {
            out.push((at + w.trailing_zeros() as usize) as u32);
            w &= w - 1;
        }
    };
    let quads = words.chunks_exact(4);
    let rest = quads.remainder();
    for (q, four) in quads.enumerate() {
        // (One load: the four words as a little-endian u64.)
        let bytes: [u8; 8] = le_bytes(four);
        let w = u64::from_le_bytes(bytes);
        if w != 0 {
            push(w, base + 64 * q);
        }
    }
    let at = base + 16 * (words.len() - rest.len());
    for (k, &w) in rest.iter().enumerate() {
        push(u64::from(w), at + 16 * k);
    }
}

/// Four words' bytes, each word little-endian (a u64 read from them is the four words
/// with the first in its low bits, on any host).
#[inline(always)]
fn le_bytes(four: &[u16]) -> [u8; 8] {
    let mut b = [0u8; 8];
    for (k, w) in four.iter().enumerate() {
        b[2 * k..2 * k + 2].copy_from_slice(&w.to_le_bytes());
    }
    b
}

/// What the step of one chunk of a population's neurons found. Aligned to a pair of
/// cache lines: the chunks next to each other, written by different threads (the lock,
/// the lists' lengths), would otherwise share one and pass it between cores every step.
#[repr(align(128))]
pub(crate) struct Part {
    /// Per batch element, the neurons of the chunk that spiked this step.
    pub(crate) active: Vec<Vec<u32>>,
    /// Every spike listed has the value 1.
    pub(crate) ones: bool,
    non_finite: Option<NonFiniteAt>,
}

/// A state that is not finite: state index, element index `b * n + i`.
#[derive(Clone, Copy)]
struct NonFiniteAt {
    state: usize,
    index: usize,
}

pub(crate) fn lock(m: &Mutex<Part>) -> MutexGuard<'_, Part> {
    // A thread that panicked left nothing half-written that matters: parts are rewritten
    // by every step before they are read.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A part between passes, when this thread holds the network (no lock taken; as [`lock`]).
fn part_mut(m: &mut Mutex<Part>) -> &mut Part {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}

/// Raw pointers to the buffers a step writes, taken through `&mut` at the start of each
/// step (`Network::take_ptrs`), so that the threads of a step, which share `&Network`,
/// can each write their own range of targets: population p's states, inputs, spikes
/// and output during p's pass, and each delayed projection's ring slots.
struct StepPtrs<T> {
    pops: Vec<PopPtrs<T>>,
    /// Per projection with a delay: (slot emitted into, slot arriving) this step.
    delays: Vec<Option<(*mut T, *mut T)>>,
}

impl<T> Default for StepPtrs<T> {
    fn default() -> StepPtrs<T> {
        StepPtrs { pops: Vec::new(), delays: Vec::new() }
    }
}

struct PopPtrs<T> {
    states: Vec<*mut T>,
    inputs: Vec<*mut T>,
    spikes: *mut T,
    output: *mut T,
    /// The spikes as bits ([`Network::spike_bits`]), null where the kernel writes none.
    bits: *mut u16,
}

impl<T> Default for PopPtrs<T> {
    fn default() -> PopPtrs<T> {
        PopPtrs { states: Vec::new(), inputs: Vec::new(), spikes: std::ptr::null_mut(), output: std::ptr::null_mut(), bits: std::ptr::null_mut() }
    }
}

// SAFETY: the pointers are into buffers the network owns; they are written only during
// a step, by the thread that owns the range (see `Network::step_traced`), and retaken
// at every step, so moving or sharing the network moves or shares nothing else.
unsafe impl<T: Send> Send for StepPtrs<T> {}
unsafe impl<T: Sync> Sync for StepPtrs<T> {}

/// Refuses a network that would not fit in memory ([`memory::check`]) before the
/// compiler's plan or any buffer is allocated.
fn check_memory<T: Float>(program: &Program, net: &NetworkDef, opts: &Options) -> Result<(), RuntimeError> {
    memory::check(program, net, opts, std::mem::size_of::<T>() as u64).map(|_| ()).map_err(|e| RuntimeError::Build(e.to_string()))
}

fn sample_values<T: Float>(init: &Init, rng: &Rng, stream: u32, count: usize) -> Vec<T> {
    (0..count).map(|i| T::from_f64(connectivity::sample(init, rng, stream, i as u64, 0))).collect()
}

/// Where each chunk's spike bits start (`Network::spike_bits`): a multiple of 32 words
/// (a cache line), then the end of the last.
fn bits_offsets(ranges: &[std::ops::Range<usize>]) -> Vec<usize> {
    let mut at = vec![0];
    for c in ranges {
        at.push(at[at.len() - 1] + c.len().div_ceil(16).next_multiple_of(32));
    }
    at
}

impl<T: Float> Network<T> {
    /// Compiles `net` ([`pipeline::compile_network`]) and instantiates it with kernels
    /// from `factory`.
    pub fn build(program: &Program, net: &NetworkDef, opts: &Options, factory: &'static dyn KernelFactory<T>) -> Result<Network<T>, RuntimeError> {
        check_memory::<T>(program, net, opts)?;
        let plan = pipeline::compile_network(program, net, &opts.compile())?;
        let mut network = Network::allocate(net, &plan, opts.batch)?;
        network.attach_kernels(factory)?;
        Ok(network)
    }

    /// Compiles `net` and instantiates it without kernels: the host view of a network
    /// that runs elsewhere (a GPU network compiles its own kernels from the same steps).
    pub fn without_kernels(program: &Program, net: &NetworkDef, opts: &Options) -> Result<Network<T>, RuntimeError> {
        check_memory::<T>(program, net, opts)?;
        let plan = pipeline::compile_network(program, net, &opts.compile())?;
        Network::allocate(net, &plan, opts.batch)
    }

    /// Buffers, connectivity and drives from a compiled plan, without kernels: what a
    /// GPU network keeps on the host, and what [`Network::attach_kernels`] completes.
    pub fn allocate(net: &NetworkDef, plan: &NetworkPlan, batch: usize) -> Result<Network<T>, RuntimeError> {
        let plan = &*data::fill_plan(net, plan)?;
        let batch = batch.max(1);
        let rng = Rng::new(plan.seed);
        let mut pops: Vec<Population<T>> = plan.populations.iter().map(|p| Population::allocate(p, batch)).collect();
        for (d, &idx) in net.drives.iter().zip(&plan.drive_inputs) {
            let pop = &mut pops[d.pop];
            let stream = stream_id(&format!("{}.{}.drive{}", net.name, pop.name, idx));
            let per = sample_values::<T>(&d.value, &rng, stream, pop.n);
            pop.drives.push((idx, (0..batch).flat_map(|_| per.iter().copied()).collect()));
        }
        let projs: Vec<Proj<T>> = (0..net.projections.len()).map(|pi| Proj::build(net, plan, &pops, pi, batch, &rng)).collect::<Result<_, _>>()?;
        for (p, pop) in pops.iter_mut().enumerate() {
            pop.fixed_inputs = (0..pop.inputs.len()).map(|k| !projs.iter().any(|pr| pr.to == p && pr.input == k)).collect();
            pop.constant_inputs = plan.constant_inputs(net, p);
            // Every input at its start (a fixed one stays there).
            pop.restart_inputs(false);
        }
        Ok(Network {
            name: net.name.clone(),
            dt: plan.dt,
            batch,
            seed: plan.seed,
            step_index: 0,
            inputs: net.inputs.iter().map(|i| (i.name.clone(), i.size)).collect(),
            pops,
            projs,
            factory: None,
            batch_offset: 0,
            dropout_pass: None,
            ext_active: Vec::new(),
            pool: None,
            parts: Vec::new(),
            fresh: Vec::new(),
            spike_bits: Vec::new(),
            bits_at: Vec::new(),
            active_ones: Vec::new(),
            fused: Vec::new(),
            ranges: Vec::new(),
            local: Vec::new(),
            partition: None,
            chunk: None,
            cells: Vec::new(),
            balance: None,
            balancing: true,
            ptrs: StepPtrs::default(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Compiles every population's kernel with `factory`.
    pub fn attach_kernels(&mut self, factory: &'static dyn KernelFactory<T>) -> Result<(), RuntimeError> {
        for pop in &mut self.pops {
            if let Some(step) = &pop.step {
                // The inputs that never change (a uniform drive, nothing at all) as
                // constants of the kernel.
                let step = step.with_constant_inputs(&pop.constant_inputs);
                // The kernel clears the inputs that restart at 0 (delivered into, no
                // drive) as it reads them; the step restarts the others.
                let delivered = |k: &usize| !pop.fixed_inputs[*k];
                let clear: Vec<usize> = (0..pop.inputs.len()).filter(delivered).filter(|k| pop.drives.iter().all(|(i, _)| i != k)).collect();
                let kernel = factory.build_clearing(&step, &pop.specs, &clear)?;
                pop.restarted = (0..pop.inputs.len()).filter(delivered).filter(|k| !kernel.cleared_inputs().contains(k)).collect();
                pop.kernel = Some(kernel);
            }
        }
        for stage in self.projs.iter_mut().filter_map(|pr| pr.pre_stage.as_mut()) {
            stage.attach_kernel(factory)?;
        }
        for plastic in self.projs.iter_mut().filter_map(|pr| pr.plastic.as_mut()) {
            plastic.attach_kernels(factory)?;
        }
        self.factory = Some(factory);
        Ok(())
    }

    /// Compiles a step derived from this network's populations (the learning rules'
    /// trace steps) with the factory the network's kernels came from.
    pub fn build_kernel(&self, step: &Step, specs: &[ParamSpec]) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        let factory = self.factory.ok_or_else(|| RuntimeError::Build(format!("network `{}` was built without kernels", self.name)))?;
        factory.build(step, specs)
    }

    /// Back to the state the network was built in (states, spikes, delays, time),
    /// keeping its weights and params: a network can run sequence after sequence
    /// without being built (and compiled) again.
    pub fn reset(&mut self) {
        for pop in &mut self.pops {
            for (s, i) in pop.states.iter_mut().zip(&pop.initial) {
                s.copy_from_slice(i);
            }
            // (A step that failed may have left deliveries in them.)
            pop.restart_inputs(true);
            pop.spikes.fill(T::default());
            pop.output.fill(T::default());
            pop.active.iter_mut().for_each(Vec::clear);
            pop.spike_count = 0;
        }
        for pr in &mut self.projs {
            if let Some(ring) = &mut pr.delay {
                ring.clear();
            }
            if let Some(stage) = &mut pr.pre_stage {
                stage.reset();
            }
            if let Some(plastic) = &mut pr.plastic {
                plastic.reset();
            }
        }
        self.step_index = 0;
    }

    pub fn n_neurons(&self) -> usize {
        self.pops.iter().map(|p| p.n).sum()
    }

    pub fn n_synapses(&self) -> usize {
        self.projs.iter().map(|p| p.n_synapses).sum()
    }

    pub fn time(&self) -> f64 {
        self.step_index as f64 * self.dt
    }

    /// During a step, the time [`Network::time`] gives once it is over (the time its
    /// spikes are recorded at).
    fn time_after_step(&self) -> f64 {
        (self.step_index + 1) as f64 * self.dt
    }

    /// Advances the network one step. `external[i]` holds input `i` for this step,
    /// `batch * size` values (index `b * size + j`).
    pub fn step(&mut self, external: &[&[T]]) -> Result<(), RuntimeError> {
        self.step_traced(external, None)
    }

    /// Splits every population's neurons across `threads` threads (1: none) for the
    /// following steps; the spikes and states are those of one thread. Threads that
    /// cannot be started are an error; the network keeps its current threads then.
    pub fn set_threads(&mut self, threads: usize) -> Result<(), RuntimeError> {
        let threads = threads.max(1);
        if threads != self.threads() {
            let pool = if threads > 1 { Some(Pool::new(threads).map_err(|e| RuntimeError::Build(format!("cannot start {threads} simulation threads: {e}")))?) } else { None };
            self.pool = pool;
            // The chunks follow the threads (`parallel::chunks_of`).
            self.lay_out();
        }
        Ok(())
    }

    /// Whether the chunks' bounds follow the threads' measured speeds (by default they
    /// do, where the threads split populations themselves: `balance.rs`); off, every
    /// population keeps its even split. The results are the same either way.
    pub fn set_balancing(&mut self, on: bool) {
        if on != self.balancing {
            self.balancing = on;
            self.lay_out();
        }
    }

    /// Splits each population into chunks of about `neurons` neurons, the units of work
    /// the threads claim (by default: one per thread, of at least 4096 neurons); the results depend neither on it nor on the threads,
    /// which the tests check with small chunks.
    pub fn set_chunk(&mut self, neurons: usize) {
        self.chunk = Some(neurons.max(1));
        self.lay_out();
    }

    /// Which network this is: unique among the networks of the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Logs the spikes of the population of `log` into it from the next step on, as they
    /// are joined ([`crate::record::Recorder::attach`]); a log kept already stays one.
    pub(crate) fn keep_spike_log(&mut self, log: &SharedLog) {
        if self.fresh.len() < self.pops.len() {
            self.fresh.resize_with(self.pops.len(), Fresh::default);
        }
        let p = lock_log(log).pop;
        let logs = &mut self.fresh[p].0.get_mut().logs;
        if !logs.iter().any(|l| std::sync::Arc::ptr_eq(l, log)) {
            logs.push(log.clone());
        }
    }

    /// `log` no longer kept ([`Network::keep_spike_log`]).
    pub(crate) fn drop_spike_log(&mut self, log: &SharedLog) {
        let p = lock_log(log).pop;
        if let Some(f) = self.fresh.get_mut(p) {
            f.0.get_mut().logs.retain(|l| !std::sync::Arc::ptr_eq(l, log));
        }
    }

    /// The threads a step runs on ([`Network::set_threads`]).
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, Pool::threads)
    }

    /// [`Network::step`], also capturing what learning rules need besides the
    /// derivatives the kernels write: each projection's presynaptic activity x^t (on one
    /// thread: the capture follows the order of the step).
    ///
    /// A step runs population after population (a population reads the spikes that
    /// earlier ones emitted this step), each in chunks of its neurons that the threads
    /// claim: gather the chunk's inputs (the deliveries into its range of targets, added
    /// to its drives), the kernel (after which the inputs go back to their drives), the
    /// non-finite check, the neurons that spiked. A population
    /// that reads itself is gathered whole before any chunk steps (its last spikes must
    /// not change under another chunk's delivery).
    pub fn step_traced(&mut self, external: &[&[T]], trace: Option<&mut StepTrace<T>>) -> Result<(), RuntimeError> {
        if let Some(part) = self.partition {
            return Err(RuntimeError::Input(format!(
                "network `{}` holds part {} of {} of its neurons: it steps with the other parts (`step_exchanging`), and learning is not partitioned",
                self.name,
                part.rank + 1,
                part.size
            )));
        }
        self.step_inner(external, trace, None)
    }

    /// A step, exchanging each spiking population's spikes with the other parts of a
    /// partitioned network through `exchange` once the population has stepped.
    pub(crate) fn step_inner(&mut self, external: &[&[T]], trace: Option<&mut StepTrace<T>>, exchange: Option<&dyn Exchange>) -> Result<(), RuntimeError> {
        let done = {
            let _timer = timers::start(Span::Step);
            self.step_passes(external, trace, exchange)
        };
        if done.is_err() {
            // A step stopped partway has written spikes its lists do not show: from now
            // on delivery reads the values rather than trust the lists to be ones. And
            // the populations it gathered but did not step hold this step's deliveries:
            // back to their start, so that the next step does not add them again.
            self.active_ones.fill(false);
            self.pops.iter_mut().for_each(|pop| pop.restart_inputs(true));
            // A recording holds whole steps: not the populations this one logged.
            let t = self.time_after_step();
            self.fresh.iter_mut().flat_map(|f| &f.0.get_mut().logs).for_each(|log| lock_log(log).forget(t));
        }
        done
    }

    /// The step itself ([`Network::step_inner`]).
    fn step_passes(&mut self, external: &[&[T]], mut trace: Option<&mut StepTrace<T>>, exchange: Option<&dyn Exchange>) -> Result<(), RuntimeError> {
        if let Some(tr) = trace.as_deref_mut() {
            tr.pre.resize_with(self.projs.len(), Vec::new);
            tr.nonzero.resize_with(self.projs.len(), || None);
        }
        if external.len() != self.inputs.len() {
            return Err(RuntimeError::Input(format!("{} external inputs given, the network has {}", external.len(), self.inputs.len())));
        }
        for (x, (name, size)) in external.iter().zip(&self.inputs) {
            if x.len() != size * self.batch {
                return Err(RuntimeError::Input(format!("input `{name}` needs {} values per step ({} x batch {}), got {}", size * self.batch, size, self.batch, x.len())));
            }
        }
        // A host view (`without_kernels`) is stepped by its device, never here.
        if let Some(pop) = self.pops.iter().find(|p| p.step.is_some() && p.kernel.is_none()) {
            let model = &pop.step.as_ref().expect("checked").model.name;
            return Err(RuntimeError::Build(format!("population `{}` (`{model}`) has no CPU kernel: the network was built without kernels", pop.name)));
        }
        // The non-zero entries of each external input (spike trains are mostly zeros),
        // found once per step: its projections add rows, and learning reads them.
        self.ext_active.resize_with(external.len(), Vec::new);
        for (act, (x, (_, n))) in self.ext_active.iter_mut().zip(external.iter().zip(&self.inputs)) {
            act.resize_with(self.batch, Vec::new);
            for (b, a) in act.iter_mut().enumerate() {
                a.clear();
                // Any sign (not `active_indices`, which relies on spikes being >= 0).
                a.extend(x[b * n..(b + 1) * n].iter().enumerate().filter(|(_, v)| v.to_f64() != 0.0).map(|(j, _)| j as u32));
            }
        }
        if self.parts.len() != self.pops.len() {
            self.lay_out();
        }
        self.take_ptrs();
        // Learning captures what each population reads as the step goes: one thread.
        let pooled = trace.is_none();
        // The pool's threads step it (a partitioned network's exchange runs between its
        // populations on this thread): phases of several populations, and chunks timed
        // for their bounds to move.
        let on_pool = pooled && exchange.is_none() && self.pool.is_some();
        // (From the last step's spikes: the same for the whole step.)
        for q in 0..self.pops.len() {
            self.fused[q] = pooled && self.self_reads_listed(q);
        }
        let mut p = 0;
        while p < self.pops.len() {
            // The populations one phase steps: `p` and, on several threads, those after
            // it that need nothing done between them on this thread (`stage_group`).
            let group = if on_pool { self.stage_group(p) } else { p..p + 1 };
            // What must happen once per step before the chunks deliver (presynaptic
            // stages, delays per synapse), on this thread (the others' have nothing).
            self.prepare_deliveries(p, external)?;
            let this = &*self;
            if let Some(tr) = trace.as_deref_mut() {
                this.capture_trace(p, external, tr);
            }
            // Each population gathers and steps chunk by chunk, or, reading its own last
            // spikes' values, gathers them all before any is overwritten: two stages.
            // (Pushed where they lie: a `collect` into a SmallVec copies it out by memcpy.)
            let mut stages = SmallVec::<[(usize, Stage); MAX_STAGES]>::new();
            for q in group.clone() {
                if this.reads_itself(q) && !this.fused[q] {
                    stages.extend([(q, Stage::Gather), (q, Stage::Step)]);
                } else {
                    stages.push((q, Stage::Both));
                }
            }
            let mut chunks = SmallVec::<[usize; MAX_STAGES]>::new();
            chunks.extend(stages.iter().map(|&(q, _)| this.local[q].len()));
            // (Timed where the chunks' bounds move: `balance.rs`.)
            let timed = this.balance.as_ref().filter(|_| on_pool);
            let job = |k: usize, c: usize| {
                let from = timers::now();
                let started = timed.map(|_| balance::now());
                let (q, stage) = stages[k];
                let at = this.local[q].start + c;
                if stage != Stage::Step {
                    this.gather_part(q, &this.ranges[q][at], external);
                }
                if stage != Stage::Gather {
                    this.step_part(q, at);
                }
                if let (Some(bal), Some(t)) = (timed, started) {
                    bal.add(q, c, balance::now().wrapping_sub(t));
                }
                timers::chunk(this.step_index, q, at, from);
            };
            // A population's spikes joined as soon as its chunks are stepped, on the
            // thread that stepped the last (a partitioned network's after the exchange).
            // As one thread would, stop at the first population with a non-finite state
            // (a partitioned network goes on to the end of the step, since the other
            // processes wait for its spikes; it is reported there).
            let stopped = AtomicBool::new(false);
            let exchanged = exchange.is_some();
            let epilogue = |k: usize| {
                let (q, stage) = stages[k];
                if stage == Stage::Gather || exchanged {
                    return true;
                }
                // SAFETY: population q's chunks are all stepped and no later stage has
                // begun: nobody else reads or writes its `fresh` now.
                let non_finite = unsafe { this.join(q) };
                stopped.fetch_or(non_finite, Ordering::Relaxed);
                !non_finite
            };
            match this.pool.as_ref().filter(|_| pooled && chunks.iter().all(|&c| c > 0)) {
                Some(pool) => pool.for_stages(&chunks, &job, &epilogue),
                None => crate::parallel::run_stages_here(&chunks, &job, &epilogue),
            }
            if let Some(ex) = exchange {
                self.exchange_spikes(p, ex)?;
                self.join_parts(p);
            } else if stopped.into_inner() {
                break;
            }
            p = group.end;
        }
        self.finish_step()?;
        if on_pool {
            self.rebalance();
        }
        self.plasticity()
    }

    /// At the end of a window of pooled steps, the chunks of each population whose
    /// times say a move pays (`balance::proportional`) get their new bounds, runs of
    /// its cells: no row is split again, and only the spike bits are laid out anew.
    fn rebalance(&mut self) {
        // (Out of the network while its bounds move.)
        let Some(mut bal) = self.balance.take() else { return };
        if bal.stepped() {
            let _t = timers::start(Span::Rebalance);
            for p in 0..self.pops.len() {
                let times = bal.take(p);
                let local = self.local[p].clone();
                let asked = balance::proportional(&self.ranges[p][local.clone()], &times, &self.cells[p]).filter(|_| self.movable(p));
                if bal.persists(p, &self.ranges[p][local], asked.as_ref().map(|(new, saved)| (new.as_slice(), *saved))) {
                    let started = balance::now();
                    let _t = timers::start(Span::Move);
                    self.move_bounds(p, asked.expect("a move was asked for").0);
                    bal.cost[p] = balance::now().wrapping_sub(started) as f64;
                }
            }
            bal.restart();
        }
        self.balance = Some(bal);
    }

    /// Whether population `p`'s chunks can move: it has cells finer than its chunks, and
    /// every sparse projection into it keeps its rows' entries at them.
    fn movable(&self, p: usize) -> bool {
        self.cells[p].len() > self.local[p].len() && self.projs.iter().filter(|pr| pr.to == p).all(|pr| !matches!(&pr.weights, Weights::Sparse(rows) if !rows.has_cells()))
    }

    /// Gives population `p`'s chunks the bounds `new` (as many, runs of its cells, and
    /// [`Network::movable`]): the rows' splits and the spike bits laid out for them.
    fn move_bounds(&mut self, p: usize, new: Vec<std::ops::Range<usize>>) {
        debug_assert_eq!(new.len(), self.local[p].len());
        // The rows' copies in blocks on the pool's threads (the caller's alone, they
        // would wait for it): a block's rows are its own, so any thread may copy them.
        let threads = self.threads();
        let pool = self.pool.as_ref();
        let run = |blocks: usize, job: &(dyn Fn(usize) + Sync)| match pool.filter(|_| blocks > 1) {
            Some(pool) => pool.for_stages(&[blocks], &|_, b| job(b), &|_| true),
            None => (0..blocks).for_each(job),
        };
        for pr in self.projs.iter_mut().filter(|pr| pr.to == p) {
            if let Weights::Sparse(rows) = &mut pr.weights {
                let moved = rows.move_split_on(&new, 2 * threads, &run);
                debug_assert!(moved, "`{}`: {new:?} not runs of cells", pr.name);
            }
        }
        let local = self.local[p].clone();
        self.ranges[p].splice(local, new);
        self.bits_at[p] = bits_offsets(&self.ranges[p]);
    }

    /// The end of a step for the plastic projections, in order, on this thread: their
    /// weight rules and presynaptic traces (`plastic.rs`).
    fn plasticity(&mut self) -> Result<(), RuntimeError> {
        let step = self.step_index - 1;
        let t = step as f64 * self.dt;
        for pr in self.projs.iter_mut() {
            if let Some(plastic) = &mut pr.plastic {
                plastic.update(&mut pr.weights, &self.pops[pr.to], t, step, self.seed)?;
            }
        }
        Ok(())
    }

    /// Joins the spikes population `p`'s parts found this step into `fresh[p]`, in
    /// neuron order; whether a part found a non-finite state.
    fn join_parts(&mut self, p: usize) -> bool {
        // SAFETY: `&mut self`: nobody else reads or writes `fresh`.
        unsafe { self.join(p) }
    }

    /// [`Network::join_parts`] from any thread.
    ///
    /// # Safety
    /// Nobody else reads or writes `fresh[p]` meanwhile ([`Fresh`]).
    unsafe fn join(&self, p: usize) -> bool {
        let parts = &self.parts[p];
        // SAFETY: forwarded to the caller.
        let fresh = unsafe { &mut *self.fresh[p].0.get() };
        // (The parts' steps are over: their locks are free.)
        let locks = parts;
        let mut parts = SmallVec::<[MutexGuard<'_, Part>; 8]>::new();
        parts.extend(locks.iter().map(lock));
        if !self.pops[p].spikes.is_empty() {
            fresh.ones = parts.iter().all(|part| part.ones);
            fresh.lists.resize_with(self.batch, Vec::new);
            for (b, act) in fresh.lists.iter_mut().enumerate() {
                act.clear();
                for part in &parts {
                    act.extend_from_slice(&part.active[b]);
                }
            }
            if !fresh.logs.is_empty() {
                // (A recorder dropped while attached leaves its logs to the network
                // alone: nobody would read them.)
                fresh.logs.retain(|log| std::sync::Arc::strong_count(log) > 1);
                let t = self.time_after_step();
                for log in &fresh.logs {
                    lock_log(log).push(t, &fresh.lists);
                }
            }
        }
        parts.iter().any(|part| part.non_finite.is_some())
    }

    /// The populations from `p` on that one phase steps (`Pool::for_stages`): `p`, then
    /// each next one whose deliveries need nothing done on the stepping thread before
    /// its chunks start (`prepare_deliveries`: no dropout, batch norm, presynaptic stage,
    /// delay per synapse or plasticity in a projection into it), as many as a phase's
    /// stages allow. Every population of the group reads the spikes of those before it
    /// in the step as one thread would: each is joined by its stage's last thread
    /// before the next stage starts. A phase is a round of the workers' wake-up and
    /// the caller's wait for them, ~1 us a step on two vCPUs (docs/benchmarks.md,
    /// eleventh round).
    fn stage_group(&self, p: usize) -> std::ops::Range<usize> {
        // (As `step_passes` makes them, from this step's `fused`.)
        let stages = |q: usize| if self.reads_itself(q) && !self.fused[q] { 2 } else { 1 };
        let quiet = |q: usize| {
            self.projs.iter().filter(|pr| pr.to == q).all(|pr| pr.dropout.is_none() && pr.batch_norm.is_none() && pr.pre_stage.is_none() && pr.syn_delay.is_none() && pr.plastic.is_none())
        };
        let (mut end, mut count) = (p + 1, stages(p));
        while end < self.pops.len() && quiet(end) && count + stages(end) <= MAX_STAGES {
            count += stages(end);
            end += 1;
        }
        p..end
    }

    /// One part per chunk of each population (`parallel::chunks_of`), whatever the
    /// threads: a chunk's results do not depend on which thread computes it. A
    /// partitioned network has one more part per other process (`partition.rs`). Made
    /// when the threads, the chunks or the partition change, not at the next step: the
    /// rows of sparse projections are split at the chunks' columns here, tens of
    /// milliseconds at 400,000 neurons (32 million synapses), which a run's first step
    /// would otherwise pay (and `snnc bench sim` count as running time).
    pub(crate) fn lay_out(&mut self) {
        let batch = self.batch;
        let threads = self.threads();
        let layouts: Vec<_> = self.pops.iter().map(|p| crate::partition::layout(p.n, threads, self.chunk, self.partition)).collect();
        self.parts = layouts.iter().map(|(r, _)| r.iter().map(|_| Mutex::new(Part { active: vec![Vec::new(); batch], ones: true, non_finite: None })).collect()).collect();
        (self.ranges, self.local) = layouts.into_iter().unzip();
        self.bits_at = self.ranges.iter().map(|r| bits_offsets(r)).collect();
        let pops = self.pops.len();
        self.fresh.resize_with(pops, Fresh::default);
        (self.active_ones, self.fused) = (vec![false; pops], vec![false; pops]);
        // Bounds that move where the threads split populations themselves.
        let moving = self.balancing && self.pool.is_some() && self.chunk.is_none() && self.partition.is_none();
        self.cells = (0..pops)
            .map(|p| {
                let mine = &self.ranges[p][self.local[p].clone()];
                match (mine.first(), mine.last()) {
                    (Some(first), Some(last)) if moving && mine.len() > 1 => balance::cells(first.start..last.end, mine.len() * balance::CELLS_PER_CHUNK),
                    _ => mine.to_vec(),
                }
            })
            .collect();
        self.balance = moving.then(|| Balance::new(&self.local.iter().map(|l| l.len()).collect::<Vec<_>>()));
        for pr in &mut self.projs {
            if let Weights::Sparse(rows) = &mut pr.weights {
                // This process's chunks (a partitioned network keeps only their columns).
                rows.split_cells(&self.cells[pr.to], &self.ranges[pr.to][self.local[pr.to].clone()]);
            }
        }
    }

    /// Takes the pointers a step writes through ([`StepPtrs`]).
    fn take_ptrs(&mut self) {
        let step = self.step_index as usize;
        let ptrs = &mut self.ptrs;
        ptrs.pops.resize_with(self.pops.len(), PopPtrs::default);
        self.spike_bits.resize_with(self.pops.len(), Vec::new);
        for (p, ((pp, pop), bits)) in ptrs.pops.iter_mut().zip(&mut self.pops).zip(&mut self.spike_bits).enumerate() {
            pp.states.clear();
            pp.states.extend(pop.states.iter_mut().map(|s| s.as_mut_ptr()));
            pp.inputs.clear();
            pp.inputs.extend(pop.inputs.iter_mut().map(|s| s.as_mut_ptr()));
            pp.spikes = pop.spikes.as_mut_ptr();
            pp.output = pop.output.as_mut_ptr();
            let wanted = self.batch == 1 && !pop.spikes.is_empty() && pop.kernel.as_ref().is_some_and(|k| k.spike_bits());
            let words = self.bits_at.get(p).and_then(|at| at.last()).copied().unwrap_or(0);
            bits.resize(if wanted { words } else { 0 }, 0);
            pp.bits = if wanted { bits.as_mut_ptr() } else { std::ptr::null_mut() };
        }
        ptrs.delays.clear();
        ptrs.delays.extend(self.projs.iter_mut().map(|pr| pr.delay.as_mut().map(|r| r.slot_ptrs(step))));
    }

    /// The first non-finite state of the populations stepped (as one thread would find
    /// it), else each population's spikes of this step (`fresh`) become its `active`.
    fn finish_step(&mut self) -> Result<(), RuntimeError> {
        for (p, pop) in self.pops.iter_mut().enumerate() {
            let parts = &mut self.parts[p];
            // (Looked at before it is taken: a take writes the part's line, which the
            // thread stepping it would then fetch back from this core.)
            let first = parts.iter_mut().map(part_mut).filter(|part| part.non_finite.is_some()).filter_map(|part| part.non_finite.take()).min_by_key(|nf| (nf.state, nf.index));
            if let Some(nf) = first {
                let value = pop.states[nf.state][nf.index].to_f64();
                return Err(RuntimeError::NonFinite {
                    population: pop.name.clone(),
                    state: pop.state_names[nf.state].clone(),
                    neuron: nf.index % pop.n,
                    batch: nf.index / pop.n,
                    step: self.step_index,
                    value,
                });
            }
            if pop.spikes.is_empty() {
                continue;
            }
            // (The lists of the last step are kept to be filled again.)
            let fresh = self.fresh[p].0.get_mut();
            std::mem::swap(&mut pop.active, &mut fresh.lists);
            self.active_ones[p] = fresh.ones;
            pop.spike_count += pop.active.iter().map(|a| a.len() as u64).sum::<u64>();
        }
        self.step_index += 1;
        Ok(())
    }

    /// Records what each projection into population `p` reads this step.
    fn capture_trace(&self, p: usize, external: &[&[T]], tr: &mut StepTrace<T>) {
        for (pi, pr) in self.projs.iter().enumerate().filter(|(_, pr)| pr.to == p) {
            let (src, _, active) = self.source(pr, p, external);
            tr.pre[pi].clear();
            tr.pre[pi].extend_from_slice(src);
            match active {
                Some(a) => {
                    let nz = tr.nonzero[pi].get_or_insert_with(Vec::new);
                    nz.clear();
                    for b in 0..self.batch {
                        nz.extend(a.lists[b].iter().map(|&i| (b as u32, i)));
                    }
                }
                None => tr.nonzero[pi] = None,
            }
        }
    }

    /// What projection `pr` into population `p` reads: the source's values, its size
    /// and, where known, its non-zero entries.
    fn source<'s>(&'s self, pr: &'s Proj<T>, p: usize, external: &[&'s [T]]) -> (&'s [T], usize, Option<Active<'s>>) {
        if let (Some(d), Some(_)) = (&pr.dropout, self.dropout_pass) {
            return (&d.values, d.values.len() / self.batch, Some(Active { lists: &d.active, ones: false }));
        }
        match pr.from {
            Source::Input(i) => (external[i], self.inputs[i].1, Some(Active { lists: &self.ext_active[i], ones: false })),
            // A state (membrane-potential readout): its value as it is now, dense.
            Source::Pop(q) if pr.from_state.is_some() => (&self.pops[q].states[pr.from_state.expect("checked")], self.pops[q].n, None),
            // Spikes are read when they are: a population earlier in the order has
            // already stepped (s^t: its chunks' lists of this step, joined), itself or a later
            // one not yet (s^{t-1}: its list of the last step).
            // Reading itself in one go with its step (`self_reads_listed`), its values,
            // being overwritten, are not given.
            Source::Pop(q) if self.pops[q].step.is_some() => {
                let (a, ones) = if q < p {
                    // SAFETY: q was joined before p gathers (a stage before p's, or a
                    // phase before), and is not again until the next step.
                    let fresh = unsafe { &*self.fresh[q].0.get() };
                    (&fresh.lists, fresh.ones)
                } else {
                    (&self.pops[q].active, self.active_ones[q])
                };
                let active = (a.len() == self.batch).then_some(Active { lists: a, ones });
                let values = if q == p && self.fused[p] { &[][..] } else { &self.pops[q].spikes[..] };
                (values, self.pops[q].n, active)
            }
            // A `Linear` readout sends its output.
            Source::Pop(q) => (&self.pops[q].output, self.pops[q].n, None),
        }
    }

    /// Whether a projection into population `p` reads `p` itself (its spikes or states).
    fn reads_itself(&self, p: usize) -> bool {
        self.projs.iter().any(|pr| pr.to == p && pr.from == Source::Pop(p))
    }

    /// Whether population `p` reads its own last spikes only as lists of 1s (plain sparse
    /// projections, its list of the last step known and all ones): then a chunk's step,
    /// which overwrites spikes, cannot change what another chunk gathers, and each chunk
    /// gathers and steps in one go (one phase, not two; no spike values read across
    /// threads). `source` then gives no values for them.
    fn self_reads_listed(&self, p: usize) -> bool {
        let pop = &self.pops[p];
        let plain = |pr: &Proj<T>| {
            matches!(pr.weights, Weights::Sparse(_))
                && pr.from_state.is_none()
                && pr.syn_delay.is_none()
                && pr.dropout.is_none()
                && pr.adapter.is_none()
                && pr.batch_norm.is_none()
                && pr.pre_stage.is_none()
                && pr.plastic.is_none()
                && pr.shared.is_none()
        };
        pop.active.len() == self.batch && self.active_ones[p] && self.projs.iter().filter(|pr| pr.to == p && pr.from == Source::Pop(p)).all(plain)
    }

    /// Chunk `c` of population `p`'s step after its inputs are gathered: the kernel over
    /// its range, the non-finite check, the neurons that spiked, recorded in the chunk's
    /// part (see [`Network::step_traced`]).
    fn step_part(&self, p: usize, c: usize) {
        let pop = &self.pops[p];
        let n = pop.n;
        let cols = self.ranges[p][c].clone();
        let mut part = lock(&self.parts[p][c]);
        let (Some(kernel), Some(_)) = (&pop.kernel, &pop.step) else { return };
        let ptrs = &self.ptrs.pops[p];
        // The element ranges of this part: the whole batch as one when it has every
        // neuron, else the range in each batch element.
        let whole = cols.len() == n;
        let (segments, stride, len) = if whole { (1, 0, self.batch * n) } else { (self.batch, n, cols.len()) };
        let t_now = self.time();
        let mut checked = true;
        // The lower threads' shares backwards (`parallel::runs_down`).
        let local = &self.local[p];
        let down = crate::parallel::runs_down(c - local.start, local.len(), self.threads());
        // Whether every piece's kernel stored its spikes as bits too (then the scan reads
        // those): one batch element, each piece starting on a word (chunks do).
        let mut in_bits = !ptrs.bits.is_null();
        let bits_at = self.bits_at[p].get(c).copied().unwrap_or(0);
        // The kernel over elements start..start + len; whether it found them all finite.
        let kernel_on = |start: usize, len: usize, down: bool, bits: bool| {
            // SAFETY: elements start..start + len of this population's buffers belong to
            // this thread in this phase (`take_ptrs`); nobody else touches them.
            // On the stack: made for every chunk of every step. (Filled where they lie:
            // a `collect` returns the whole inline array by value, a copy of ~136 bytes
            // through memcpy each, 1-2 % of a COBA 4k step in perf.)
            let (mut states, mut inputs, mut params) = (SmallVec::<[&mut [T]; 8]>::new(), SmallVec::<[&mut [T]; 8]>::new(), SmallVec::<[&[T]; 8]>::new());
            states.extend(ptrs.states.iter().map(|&q| unsafe { std::slice::from_raw_parts_mut(q.add(start), len) }));
            inputs.extend(ptrs.inputs.iter().map(|&q| unsafe { std::slice::from_raw_parts_mut(q.add(start), len) }));
            params.extend(pop.per_neuron_params.iter().map(|v| &v[start..start + len]));
            let spikes: &mut [T] = if pop.spikes.is_empty() { &mut [] } else { unsafe { std::slice::from_raw_parts_mut(ptrs.spikes.add(start), len) } };
            // A network holding batch elements b0.. of a larger batch draws what the whole
            // one would for them (element index = b0 * n + i).
            let random = RandomCtx { seed: self.seed ^ u64::from(stream_id(&pop.name)), step: self.step_index, offset: (self.batch_offset * n + start) as u64 };
            // The kernel leaves the inputs it clears at 0 (the restart below does the rest).
            // SAFETY: as above: the words of elements start..start + len (start on a word)
            // are this chunk's.
            let spike_bits = bits.then(|| unsafe { std::slice::from_raw_parts_mut(ptrs.bits.add(bits_at + (start - cols.start) / 16), len.div_ceil(16)) });
            let args = ClearingArgs { states: &mut states[..], inputs: &mut inputs[..], params: &params[..], spikes, t: t_now, random, spike_bits };
            kernel.step_clearing(args, down) == Some(true)
        };
        let mut kernel_on = |start: usize, len: usize, down: bool| {
            in_bits &= (start - cols.start) % 16 == 0;
            kernel_on(start, len, down, in_bits)
        };
        for s in 0..segments {
            let start = s * stride + cols.start;
            // In the order the kernel runs them (`parallel::run_pieces`): elementwise, so the
            // same results in any order. Timed apart: the first `timers::HEAD` neurons.
            for (i, (from, count, desc)) in crate::parallel::run_pieces(len, down).into_iter().enumerate() {
                let from = start + from;
                if timers::ENABLED && i == 0 && count > timers::HEAD {
                    let (head, rest) = if desc { (from + count - timers::HEAD, from) } else { (from, from + timers::HEAD) };
                    checked &= {
                        let _t = timers::start(Span::KernelHead);
                        kernel_on(head, timers::HEAD, desc)
                    };
                    let _t = timers::start(Span::Kernel);
                    checked &= kernel_on(rest, count - timers::HEAD, desc);
                } else {
                    let _t = timers::start(Span::Kernel);
                    checked &= kernel_on(from, count, desc);
                }
            }
            let _t = timers::start(Span::Restart);
            // The inputs the kernel did not clear (those with drives) back at their start
            // for the next step's deliveries, while this chunk's lines are still in the
            // cache: a separate pass over them before the gather (a memset of every input)
            // was 6-10% of a COBA step (perf). The GPU's step kernel clears them likewise.
            let restart = |b: usize, from: usize, cols: &std::ops::Range<usize>| {
                for (k, q) in pop.restarted.iter().map(|&k| (k, ptrs.inputs[k])) {
                    // SAFETY: as above; the kernel is done with the slice.
                    let y = unsafe { std::slice::from_raw_parts_mut(q.add(from), cols.len()) };
                    start_input(&pop.drives, k, n, b, cols, y, down);
                }
            };
            if whole {
                (0..self.batch).for_each(|b| restart(b, b * n, &(0..n)));
            } else {
                restart(s, start, &cols);
            }
        }
        let _t = timers::start(Span::Scan);
        // Stop on the first non-finite state, naming it, unless the kernel found them all
        // finite. A sum is non-finite when an element is (and vectorises); only then is
        // the element looked for.
        for k in (0..ptrs.states.len()).filter(|_| !checked) {
            for s in 0..segments {
                let start = s * stride + cols.start;
                // SAFETY: as above; the kernel is done with the slice.
                let v = unsafe { std::slice::from_raw_parts(ptrs.states[k].add(start), len) };
                if finite_sum(v) {
                    continue;
                }
                if let Some(i) = v.iter().position(|v| !v.to_f64().is_finite()) {
                    part.non_finite = Some(NonFiniteAt { state: k, index: start + i });
                    return;
                }
            }
        }
        // The indices of the neurons that spiked, per batch element: sparse
        // projections and recorders read these instead of scanning every neuron.
        if !pop.spikes.is_empty() {
            part.active.resize_with(self.batch, Vec::new);
            let mut ones = true;
            // The kernel's pieces in neuron order, so that the lists are (each scanned
            // in the direction the kernel ran it).
            let mut pieces = crate::parallel::run_pieces(cols.len(), down);
            pieces.sort_by_key(|p| p.0);
            for (b, slot) in part.active.iter_mut().enumerate() {
                // Filled out of place: the lists' headers (length, capacity) lie next to
                // other parts' in one small allocation, and a push to each in place would
                // pass that cache line between the threads at every spike.
                let mut act = std::mem::take(slot);
                act.clear();
                if in_bits {
                    // SAFETY: as above: the chunk's words, all written by its kernel (its
                    // start is on a word; a last word past its end is the population's).
                    let words = unsafe { std::slice::from_raw_parts(ptrs.bits.add(bits_at), cols.len().div_ceil(16)) };
                    active_from_bits(words, cols.start, &mut act);
                    *slot = act;
                    continue;
                }
                // SAFETY: as above.
                let s = unsafe { std::slice::from_raw_parts(ptrs.spikes.add(b * n + cols.start), cols.len()) };
                for &(from, count, desc) in &pieces {
                    ones &= active_indices(&s[from..from + count], cols.start + from, &mut act, desc);
                }
                *slot = act;
            }
            part.ones = ones;
        }
    }

    /// Sums everything that arrives at targets `cols` of population `p` this step into
    /// its kernel inputs (or a readout's output).
    fn gather_part(&self, p: usize, cols: &std::ops::Range<usize>, external: &[&[T]]) {
        let _t = timers::start(Span::Gather);
        let pop = &self.pops[p];
        let ptrs = &self.ptrs.pops[p];
        let target = |ptr: *mut T| Target { ptr, n_post: pop.n, batch: self.batch, cols: cols.clone() };
        let has_dynamics = pop.step.is_some();
        // A readout's output starts from 0 (its last is read until now); a kernel's
        // inputs are at their start already (the last step's kernel left them so).
        if !has_dynamics {
            for b in 0..self.batch {
                // SAFETY: columns `cols` of every batch element belong to this thread (`take_ptrs`).
                unsafe { target(ptrs.output).row(b) }.fill(T::default());
            }
        }
        for (pi, pr) in self.projs.iter().enumerate().filter(|(_, pr)| pr.to == p) {
            let into = target(if has_dynamics { ptrs.inputs[pr.input] } else { ptrs.output });
            if let Some(bn) = &pr.batch_norm {
                // Normalised whole by `prepare_deliveries`: its columns arrive.
                for b in 0..self.batch {
                    // SAFETY: as below, columns `cols` of the target are this thread's.
                    let y = unsafe { into.row(b) };
                    y.iter_mut().zip(&bn.out[b * pop.n + cols.start..b * pop.n + cols.end]).for_each(|(y, v)| *y += *v);
                }
                continue;
            }
            let (src, n_pre, active) = self.source(pr, p, external);
            // Short-term plasticity: the activity scaled by each source's efficacy
            // (advanced for this step by `prepare_deliveries`): no longer ones.
            let src = pr.pre_stage.as_ref().map_or(src, |s| s.output());
            let active = if pr.pre_stage.is_some() { active.map(|a| Active { ones: false, ..a }) } else { active };
            // A gated stage (NMDA) sends a value for every source, spiking or not.
            let active = if pr.pre_stage.as_ref().is_some_and(|s| s.is_gated()) { None } else { active };
            // A plastic projection delivers this step's events (its delayed spikes).
            let (src, active) = match &pr.plastic {
                Some(pl) => {
                    let (events, act) = pl.events();
                    (events, Some(Active { lists: act, ones: false }))
                }
                None => (src, active),
            };
            // SAFETY: as above, for the target and for the ring slots of this projection
            // (a ring belongs to its projection, whose target columns are this thread's).
            unsafe {
                match self.ptrs.delays[pi] {
                    // A delay per synapse: emitted by `prepare_deliveries`; what is due arrives.
                    Some((_, arrive)) if pr.syn_delay.is_some() => arrive_into(arrive, &into),
                    // Delayed: computed now into the ring slot of step t + d, and whatever
                    // was computed d steps ago arrives.
                    Some((emit, arrive)) => {
                        deliver(&pr.weights, src, active, n_pre, &target(emit));
                        if let Some(a) = &pr.adapter {
                            a.deliver(src, active, n_pre, &target(emit));
                        }
                        arrive_into(arrive, &into);
                    }
                    None => {
                        deliver(&pr.weights, src, active, n_pre, &into);
                        if let Some(a) = &pr.adapter {
                            a.deliver(src, active, n_pre, &into);
                        }
                    }
                }
            }
        }
    }

    /// The parts of the deliveries into population `p` that run once per step, in order,
    /// before its chunks gather: each presynaptic stage advances with its source's
    /// spikes, and projections with a delay per synapse emit into their rings.
    fn prepare_deliveries(&mut self, p: usize, external: &[&[T]]) -> Result<(), RuntimeError> {
        let (t, step, batch) = (self.time(), self.step_index as usize, self.batch);
        for pi in 0..self.projs.len() {
            // Dropout first: every later reader of the source (`source`) sees the masked one.
            if let (Some(at), true) = (self.mask_at(self.step_index), self.projs[pi].to == p) {
                if let Some(mut d) = self.projs[pi].dropout.take() {
                    let (src, n_pre, _) = self.source(&self.projs[pi], p, external);
                    d.apply(src, n_pre, batch, at);
                    self.projs[pi].dropout = Some(d);
                }
            }
            if self.projs[pi].to == p && self.projs[pi].batch_norm.is_some() {
                self.batch_norm_step(pi, p, external)?;
                continue;
            }
            if self.projs[pi].to != p || (self.projs[pi].pre_stage.is_none() && self.projs[pi].syn_delay.is_none() && self.projs[pi].plastic.is_none()) {
                continue;
            }
            if let Some(mut plastic) = self.projs[pi].plastic.take() {
                let (src, _, _) = self.source(&self.projs[pi], p, external);
                let done = plastic.receive(src, step);
                self.projs[pi].plastic = Some(plastic);
                done?;
                continue;
            }
            // Taken out while the source is read from the network.
            let mut stage = self.projs[pi].pre_stage.take();
            let mut ring = if self.projs[pi].syn_delay.is_some() { self.projs[pi].delay.take() } else { None };
            let done = (|| -> Result<(), RuntimeError> {
                let pr = &self.projs[pi];
                let (src, n_pre, active) = self.source(pr, p, external);
                let active = if stage.as_ref().is_some_and(|s| s.is_gated()) { None } else { active };
                let src = match &mut stage {
                    Some(s) => {
                        let random = RandomCtx { seed: self.seed ^ u64::from(stream_id(&s.pop.name)), step: step as u64, offset: (self.batch_offset * n_pre) as u64 };
                        s.advance(src, t, random)?
                    }
                    None => src,
                };
                if let (Some(ring), Weights::Sparse(rows), Some(d)) = (&mut ring, &pr.weights, &pr.syn_delay) {
                    propagate_delayed(rows, d, src, active, n_pre, batch, ring, step);
                }
                Ok(())
            })();
            self.projs[pi].pre_stage = stage;
            if ring.is_some() {
                self.projs[pi].delay = ring;
            }
            done?;
        }
        Ok(())
    }

    /// The current projection `pi` (into population `p`, with `batch_norm`) delivers
    /// this step, whole, then normalised (`crate::batchnorm`): by the batch's statistics
    /// in a training pass, else by the running estimates.
    fn batch_norm_step(&mut self, pi: usize, p: usize, external: &[&[T]]) -> Result<(), RuntimeError> {
        let (batch, training) = (self.batch, self.training());
        let mut bn = self.projs[pi].batch_norm.take().expect("a batch norm");
        let n_post = bn.n_post();
        bn.z.fill(T::default());
        {
            let pr = &self.projs[pi];
            let (src, n_pre, active) = self.source(pr, p, external);
            let into = Target { ptr: bn.z.as_mut_ptr(), n_post, batch, cols: 0..n_post };
            // SAFETY: `into` is the whole of `bn.z`, owned here, written by this thread only.
            unsafe {
                deliver(&pr.weights, src, active, n_pre, &into);
                if let Some(a) = &pr.adapter {
                    a.deliver(src, active, n_pre, &into);
                }
            }
        }
        let done = bn.normalise(batch, training, &self.projs[pi].name);
        self.projs[pi].batch_norm = Some(bn);
        done
    }

    /// Whether the network is in a training pass ([`Network::dropout_pass`] set): dropout
    /// masks apply and batch norm uses the batch's statistics (and updates its running
    /// ones); otherwise it evaluates, with the running statistics.
    pub fn training(&self) -> bool {
        self.dropout_pass.is_some()
    }

    /// Projection `proj`'s batch norm, if it has one.
    pub fn batch_norm(&self, proj: usize) -> Option<&BatchNorm<T>> {
        self.projs[proj].batch_norm.as_ref()
    }

    /// Whether any projection has `batch_norm`.
    pub fn has_batch_norm(&self) -> bool {
        self.projs.iter().any(|p| p.batch_norm.is_some())
    }

    /// The batch norms' trainable tensors, `NAME.gamma` and `NAME.beta` of each
    /// projection with `batch_norm`.
    pub fn trainable_batch_norms(&self) -> Vec<String> {
        self.projs.iter().filter(|p| p.batch_norm.is_some()).flat_map(|p| [format!("{}.gamma", p.name), format!("{}.beta", p.name)]).collect()
    }

    /// The batch norms' running estimates, `state/NAME.running_mean` and
    /// `state/NAME.running_var` ([`STATE_PREFIX`]): carried and checkpointed with the
    /// trainable tensors, never trained.
    pub fn batch_norm_state(&self) -> Vec<String> {
        self.projs
            .iter()
            .filter(|p| p.batch_norm.is_some())
            .flat_map(|p| [format!("{STATE_PREFIX}{}.running_mean", p.name), format!("{STATE_PREFIX}{}.running_var", p.name)])
            .collect()
    }

    /// `NAME.gamma` (0), `NAME.beta` (1), `state/NAME.running_mean` (2),
    /// `state/NAME.running_var` (3): the projection and which tensor.
    pub(crate) fn batch_norm_slot(&self, name: &str) -> Option<(usize, u8)> {
        let (state, rest) = match name.strip_prefix(STATE_PREFIX) {
            Some(r) => (true, r),
            None => (false, name),
        };
        let (proj, which) = rest.rsplit_once('.')?;
        let (i, ..) = self.projection(proj)?;
        self.projs[i].batch_norm.as_ref()?;
        match (state, which) {
            (false, "gamma") => Some((i, 0)),
            (false, "beta") => Some((i, 1)),
            (true, "running_mean") => Some((i, 2)),
            (true, "running_var") => Some((i, 3)),
            _ => None,
        }
    }

    /// Where this training pass's dropout masks of network step `step` are drawn;
    /// `None` when nothing is dropped (not training).
    fn mask_at(&self, step: u64) -> Option<MaskAt> {
        self.dropout_pass.map(|pass| MaskAt { seed: self.seed, pass, step, batch_offset: self.batch_offset })
    }

    /// dL/dx of projection `proj`'s presynaptic values at network step `step` (`batch *
    /// n_pre`) into dL/d(source): times the step's dropout mask, if it has one and the
    /// network is training; unchanged otherwise.
    pub(crate) fn dropout_back(&self, proj: usize, step: u64, d: &mut [T]) {
        if let (Some(dr), Some(at)) = (&self.projs[proj].dropout, self.mask_at(step)) {
            let n_pre = d.len() / self.batch;
            dr.scale_back(d, n_pre, at);
        }
    }

    /// Whether projection `proj` has a `dropout` clause.
    pub fn has_dropout(&self, proj: usize) -> bool {
        self.projs[proj].dropout.is_some()
    }

    /// A projection by name: (index, source, target population, kernel input index).
    pub fn projection(&self, name: &str) -> Option<(usize, Source, usize, usize)> {
        self.projs.iter().position(|p| p.name == name).map(|i| (i, self.projs[i].from, self.projs[i].to, self.projs[i].input))
    }

    /// The state of the source population that a projection reads instead of its
    /// spikes (`connect rec.v -> out`), as an index into the source's states.
    pub fn projection_state(&self, proj: usize) -> Option<usize> {
        self.projs[proj].from_state
    }

    /// The number of presynaptic values a projection reads per batch element.
    pub fn source_size(&self, proj: usize) -> usize {
        match self.projs[proj].from {
            Source::Input(i) => self.inputs[i].1,
            Source::Pop(q) => self.pops[q].n,
        }
    }

    /// The names of the plastic projections (weights changed by `on pre` / `on post`).
    pub fn plastic_projections(&self) -> Vec<String> {
        self.projs.iter().filter(|p| p.plastic.is_some()).map(|p| p.name.clone()).collect()
    }

    /// The number of projections (indices for [`Network::dense_weights`] and the like).
    pub fn n_projections(&self) -> usize {
        self.projs.len()
    }

    /// The `on pre` (`post` false) or `on post` rule of plastic projection `proj`: a
    /// model over synapses, as a population of one (its step and params).
    pub fn plastic_rule(&self, proj: usize, post: bool) -> Option<&Population<T>> {
        self.projs.get(proj)?.plastic.as_ref()?.rules()[usize::from(post)].map(|(pop, ..)| pop)
    }

    /// The presynaptic traces of plastic projection `proj` (a population of its source
    /// neurons); `None` when it has none.
    pub fn plastic_traces(&self, proj: usize) -> Option<&Population<T>> {
        self.projs.get(proj)?.plastic.as_ref()?.traces()
    }

    /// The presynaptic state of projection `proj` (short-term plasticity, [`PreStage`]):
    /// a population of its source neurons holding the synapse's presynaptic states and
    /// `_efficacy`; `None` when its synapse has none.
    pub fn presynaptic_state(&self, proj: usize) -> Option<&Population<T>> {
        self.projs.get(proj)?.pre_stage.as_ref().map(|s| &s.pop)
    }

    /// A projection's delay in steps, if it has one (with a delay per synapse, the
    /// longest).
    pub fn projection_delay(&self, proj: usize) -> Option<usize> {
        self.projs[proj].delay.as_ref().map(|r| r.delay())
    }

    /// A projection's delays in steps, one a synapse in the order of its sparse weights,
    /// if they differ from synapse to synapse.
    pub fn synapse_delays(&self, proj: usize) -> Option<&[u32]> {
        self.projs[proj].syn_delay.as_deref()
    }

    /// A sparse projection's structure and weights: (row pointers, columns, weights).
    pub fn sparse_weights(&self, proj: usize) -> Option<(&[usize], &[u32], &[T])> {
        match &self.projs[proj].weights {
            Weights::Sparse(r) => Some((&r.row_ptr, &r.col, r.weight())),
            _ => None,
        }
    }

    /// A `conv(...)` / `pool(...)` projection's kernel and each synapse's entry in it.
    pub fn conv_kernel(&self, proj: usize) -> Option<&conv::Shared<T>> {
        self.projs[proj].shared.as_ref()
    }

    /// The sign a projection's weights keep (`excitatory` / `inhibitory`), if any.
    pub fn projection_sign(&self, proj: usize) -> Option<Sign> {
        self.projs[proj].sign
    }

    /// The dense weights (n_pre x n_post) of a projection.
    pub fn dense_weights(&self, proj: usize) -> Option<&ndarray::Array2<T>> {
        match &self.projs[proj].weights {
            Weights::Dense(w) => Some(w),
            _ => None,
        }
    }

    /// A fingerprint of a sparse projection's structure (FNV-1a over its row pointers
    /// and columns), saved with trained weights: 1 x nnz weights only mean something on
    /// the structure they were trained on.
    pub fn synapse_fingerprint(&self, proj: usize) -> Option<String> {
        let (row_ptr, col, _) = self.sparse_weights(proj)?;
        let mut h = connectivity::Fingerprint::default();
        row_ptr.iter().map(|&r| r as u64).chain(col.iter().map(|&c| u64::from(c))).for_each(|w| h.add(w));
        Some(format!("{:016x}", h.0))
    }

    /// A projection's low-rank adapter (`adapter rank R`), if it has one.
    pub fn adapter(&self, proj: usize) -> Option<&LowRank<T>> {
        self.projs[proj].adapter.as_ref()
    }

    /// The adapters' trainable tensors, `NAME.U` and `NAME.V` of each projection with an
    /// `adapter` (they are trained together).
    pub fn trainable_adapters(&self) -> Vec<String> {
        self.projs.iter().filter(|p| p.adapter.is_some()).flat_map(|p| [format!("{}.U", p.name), format!("{}.V", p.name)]).collect()
    }

    /// `NAME.U` / `NAME.V`: the projection and which factor (false: U, true: V).
    pub(crate) fn adapter_slot(&self, name: &str) -> Option<(usize, bool)> {
        let (proj, factor) = name.rsplit_once('.')?;
        let (i, ..) = self.projection(proj)?;
        self.projs[i].adapter.as_ref()?;
        match factor {
            "U" => Some((i, false)),
            "V" => Some((i, true)),
            _ => None,
        }
    }


    /// Replaces the weights of a dense projection (e.g. loaded from a file), or those of
    /// a sparse one's synapses given as 1 x nnz in CSR order (its structure stays).
    pub fn set_projection_weights(&mut self, proj: usize, w: ndarray::Array2<T>) -> Result<(), RuntimeError> {
        let pr = &mut self.projs[proj];
        if let (Some(sh), Weights::Sparse(rows)) = (&mut pr.shared, &mut pr.weights) {
            let mut done = Ok(());
            rows.set_weights(|into| done = sh.set(&pr.name, w, into));
            return done;
        }
        match &mut pr.weights {
            Weights::Dense(old) if old.dim() == w.dim() => {
                // Propagation reads rows: a transposed or column-major matrix (a
                // Fortran-ordered `.npy`, a transposed view made owned) is laid out anew.
                *old = if w.is_standard_layout() { w } else { w.as_standard_layout().into_owned() };
                Ok(())
            }
            Weights::Dense(old) => Err(RuntimeError::Input(format!(
                "weights of `{}` must be {}x{} (presynaptic x postsynaptic), got {}x{}",
                pr.name,
                old.nrows(),
                old.ncols(),
                w.nrows(),
                w.ncols()
            ))),
            Weights::Sparse(r) if w.dim() == (1, r.weight().len()) => {
                r.set_weights(|into| into.iter_mut().zip(w.iter()).for_each(|(d, s)| *d = *s));
                Ok(())
            }
            Weights::Sparse(r) => Err(RuntimeError::Input(format!(
                "weights of the sparse projection `{}` must be 1x{} (one per synapse, in CSR order), got {}x{}",
                pr.name,
                r.weight().len(),
                w.nrows(),
                w.ncols()
            ))),
            Weights::OneToOne(_) => Err(RuntimeError::Input(format!("`{}` is a one-to-one projection: its weights cannot be set", pr.name))),
            Weights::Procedural(_) => Err(RuntimeError::Input(format!("`{}` is procedural (its weights are drawn from the seed, never stored): they cannot be set", pr.name))),
        }
    }

    /// The per-neuron params marked `trainable`, named `POP.PARAM` (e.g. `rec.tau`).
    pub fn trainable_params(&self) -> Vec<String> {
        let mut out = Vec::new();
        for pop in self.pops.iter().filter(|p| p.step.is_some()) {
            let step = pop.step.as_ref().expect("a population with derivatives has a step");
            out.extend(step.trainable_params().into_iter().map(|k| format!("{}.{}", pop.name, step.param_name(k))));
        }
        out
    }

    /// Where a trainable param lives: (population, index among its per-neuron arrays,
    /// column of dh/dtheta, the param's symbol dimension is a time).
    pub(crate) fn param_slot(&self, name: &str) -> Option<(usize, usize, usize, bool)> {
        let (pop_name, param) = name.split_once('.')?;
        let p = self.pops.iter().position(|p| p.name == pop_name && p.step.is_some())?;
        let step = self.pops[p].step.as_ref()?;
        let trainable = step.trainable_params();
        let col = trainable.iter().position(|&k| step.param_name(k) == param)?;
        let k = trainable[col];
        let slot = self.pops[p].specs[..k].iter().filter(|s| matches!(s, ParamSpec::PerNeuron)).count();
        let is_time = step.model.symbols[step.layout.params[k]].dim == snnc_compiler::units::Dim::TIME;
        Some((p, slot, col, is_time))
    }

    /// The values of param `name` of population `pop`'s step, one per neuron (batch
    /// element 0): a uniform param's one value repeated, or its per-neuron array.
    pub fn param_values(&self, pop: usize, name: &str) -> Option<Vec<T>> {
        let p = self.pops.get(pop)?;
        let step = p.step.as_ref()?;
        let k = (0..step.layout.params.len()).find(|&k| step.param_name(k) == name)?;
        match p.specs.get(k)? {
            ParamSpec::Uniform(v) => Some(vec![T::from_f64(*v); p.n]),
            ParamSpec::PerNeuron => {
                let slot = p.specs[..k].iter().filter(|s| matches!(s, ParamSpec::PerNeuron)).count();
                Some(p.per_neuron_params.get(slot)?[..p.n].to_vec())
            }
        }
    }

    /// The interval an update keeps trainable tensor `name` in (after each optimiser
    /// step): its `trainable bounds (lo, hi)`, and for a trainable time constant at least
    /// one step `dt` (below it the discretised decay is meaningless and soon not finite);
    /// (-inf, inf) for the rest.
    pub fn trainable_bounds(&self, name: &str) -> (f64, f64) {
        let (lo, hi) = self.declared_bounds(name).unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        match self.param_slot(name) {
            Some((.., true)) => (lo.max(self.dt), hi.max(self.dt)),
            _ => (lo, hi),
        }
    }

    /// The `trainable bounds (lo, hi)` written for `name` (a projection's weights, or a
    /// trainable param `POP.PARAM`), if any.
    pub fn declared_bounds(&self, name: &str) -> Option<(f64, f64)> {
        if let Some((i, ..)) = self.projection(name) {
            return self.projs[i].bounds;
        }
        let (p, _, col, _) = self.param_slot(name)?;
        let step = self.pops[p].step.as_ref()?;
        let k = *step.trainable_params().get(col)?;
        step.model.symbols[step.layout.params[k]].bounds
    }

    /// A trainable tensor by name: a dense projection's weights (n_pre x n_post), a
    /// sparse one's as a 1 x nnz row in CSR order, or a trainable param `POP.PARAM` as a
    /// 1 x n row.
    pub fn trainable(&self, name: &str) -> Option<ndarray::Array2<T>> {
        if let Some((i, ..)) = self.projection(name) {
            if let Some(sh) = &self.projs[i].shared {
                return Some(sh.kernel.clone());
            }
            if let Some((.., w)) = self.sparse_weights(i) {
                return Some(ndarray::Array2::from_shape_vec((1, w.len()), w.to_vec()).expect("shape"));
            }
            return self.dense_weights(i).cloned();
        }
        if let Some((i, is_v)) = self.adapter_slot(name) {
            let a = self.projs[i].adapter.as_ref().expect("an adapter");
            return Some(if is_v { a.v.clone() } else { a.u.clone() });
        }
        if let Some((i, which)) = self.batch_norm_slot(name) {
            let bn = self.projs[i].batch_norm.as_ref().expect("a batch norm");
            let row: Vec<T> = match which {
                0 => bn.gamma.clone(),
                1 => bn.beta.clone(),
                2 => bn.running_mean.iter().map(|v| T::from_f64(*v)).collect(),
                _ => bn.running_var.iter().map(|v| T::from_f64(*v)).collect(),
            };
            return Some(ndarray::Array2::from_shape_vec((1, row.len()), row).expect("shape"));
        }
        let (p, slot, ..) = self.param_slot(name)?;
        let n = self.pops[p].n;
        Some(ndarray::Array2::from_shape_vec((1, n), self.pops[p].per_neuron_params[slot][..n].to_vec()).expect("shape"))
    }

    /// Sets a trainable tensor ([`Network::trainable`]); a param's row goes to every
    /// batch element.
    pub fn set_trainable(&mut self, name: &str, w: ndarray::Array2<T>) -> Result<(), RuntimeError> {
        if let Some((i, ..)) = self.projection(name) {
            return self.set_projection_weights(i, w);
        }
        if let Some((i, is_v)) = self.adapter_slot(name) {
            let a = self.projs[i].adapter.as_mut().expect("an adapter");
            let into = if is_v { &mut a.v } else { &mut a.u };
            if into.dim() != w.dim() {
                return Err(RuntimeError::Input(format!("`{name}` must be {}x{}, got {}x{}", into.nrows(), into.ncols(), w.nrows(), w.ncols())));
            }
            // Row-major, as the propagation's row additions read U.
            *into = w.as_standard_layout().into_owned();
            return Ok(());
        }
        if let Some((i, which)) = self.batch_norm_slot(name) {
            let bn = self.projs[i].batch_norm.as_mut().expect("a batch norm");
            let n = bn.n_post();
            if w.dim() != (1, n) {
                return Err(RuntimeError::Input(format!("`{name}` must be 1x{n} (one value per target neuron), got {}x{}", w.nrows(), w.ncols())));
            }
            if which == 3 && w.iter().any(|v| v.to_f64() < 0.0) {
                return Err(RuntimeError::Input(format!("`{name}` is a variance: its values cannot be negative")));
            }
            match which {
                0 => bn.gamma = w.iter().copied().collect(),
                1 => bn.beta = w.iter().copied().collect(),
                2 => bn.running_mean = w.iter().map(|v| v.to_f64()).collect(),
                _ => bn.running_var = w.iter().map(|v| v.to_f64()).collect(),
            }
            return Ok(());
        }
        let (p, slot, ..) = self.param_slot(name).ok_or_else(|| RuntimeError::Input(format!("the network has no projection or trainable param `{name}`")))?;
        let n = self.pops[p].n;
        if w.dim() != (1, n) {
            return Err(RuntimeError::Input(format!("`{name}` must be 1x{n} (one value per neuron), got {}x{}", w.nrows(), w.ncols())));
        }
        let row: Vec<T> = w.iter().copied().collect();
        for chunk in self.pops[p].per_neuron_params[slot].chunks_mut(n) {
            chunk.copy_from_slice(&row);
        }
        Ok(())
    }

    /// Names of the projections, with their synapse counts.
    pub fn projections(&self) -> Vec<(String, usize)> {
        self.projs.iter().map(|p| (p.name.clone(), p.n_synapses)).collect()
    }

    pub fn population(&self, name: &str) -> Option<&Population<T>> {
        self.pops.iter().find(|p| p.name == name)
    }
}

/// Input `k` of a population of `n` neurons as a step starts, columns `cols` of batch
/// element `b` (`y`): 0 plus its drives, in one pass.
/// `down`: written from the last element to the first (a share stepped down,
/// `parallel::runs_down`), with the same values.
fn start_input<T: Float>(drives: &[(usize, Vec<T>)], k: usize, n: usize, b: usize, cols: &std::ops::Range<usize>, y: &mut [T], down: bool) {
    let mut drives = drives.iter().filter(|(i, _)| *i == k).map(|(_, v)| &v[b * n + cols.start..b * n + cols.end]);
    fn each<T: Copy>(y: &mut [T], v: &[T], down: bool, f: impl Fn(&mut T, T)) {
        // (Zipped from their ends when down: the same pairs only for equal lengths.)
        debug_assert_eq!(y.len(), v.len());
        if down {
            y.iter_mut().rev().zip(v.iter().rev()).for_each(|(d, v)| f(d, *v));
        } else {
            y.iter_mut().zip(v).for_each(|(d, v)| f(d, *v));
        }
    }
    match drives.next() {
        Some(first) => each(y, first, down, |d, v| *d = T::default() + v),
        None if down => {
            // A line at a time from the end (a plain reversed loop may become a memset,
            // which runs up).
            let mut lines = y.rchunks_exact_mut(16);
            lines.by_ref().for_each(|c| c.fill(T::default()));
            lines.into_remainder().fill(T::default());
        }
        None => y.fill(T::default()),
    }
    for more in drives {
        each(y, more, down, |d, v| *d += v);
    }
}

/// Whether the sum of `s` is finite (false if any element is NaN or infinite, and in the
/// harmless case of a sum that overflows, which the caller then checks element-wise).
// `x - x` is the point (see below), not a typo.
#[allow(clippy::eq_op)]
fn finite_sum<T: Float>(s: &[T]) -> bool {
    // x - x is 0 for a finite x and NaN for an infinite or NaN one, so the sum of the
    // differences cannot overflow, stays in T (8 lanes vectorise: no conversion to f64)
    // and is 0 exactly when every element is finite.
    let zero = T::default();
    let mut acc = [zero; 8];
    let chunks = s.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k] - c[k];
        }
    }
    for v in rest {
        acc[0] += *v - *v;
    }
    acc.iter().all(|a| a.to_f64() == 0.0)
}

#[cfg(test)]
mod tests {
    use super::{Float, Network, Options, Weights, finite_sum, start_input};

    /// The COBA example (forward Euler, f32, JIT) drawn with `seed`.
    fn coba_f32(seed: u64) -> Network<f32> {
        let mut sources = snnc_compiler::SourceMap::new();
        let (p, d) = snnc_compiler::sema::check_source("coba.snn", include_str!("../../examples/coba.snn"), &mut sources);
        assert!(d.iter().all(|d| !d.is_error()));
        let o = Options { seed, method: Some(snnc_compiler::sema::Method::Euler), ..Options::default() };
        Network::<f32>::build(&p, &p.networks[0], &o, &crate::kernels::JitFactory).unwrap()
    }

    /// The COBA example split in chunks on two threads takes the fast paths: E and I are
    /// the stages of one phase, each gathering and stepping in one stage (each reads
    /// itself through plain sparse projections of spikes of 1), and every sparse
    /// projection has its rows split at the chunks. (Their results are checked against
    /// one thread in tests/all/network.rs; this checks that they are used, so that a
    /// change cannot lose them in silence.)
    #[test]
    fn coba_on_two_threads_steps_in_one_phase_one_stage_a_population_with_split_rows() {
        let mut net = coba_f32(3);
        net.set_threads(2).unwrap();
        // (E has 3200 neurons, I 800: each in several chunks.)
        net.set_chunk(256);
        for _ in 0..50 {
            net.step(&[]).unwrap();
        }
        assert!(net.pops.iter().map(|p| p.spike_count).sum::<u64>() > 0, "the network fires");
        assert_eq!(net.fused, vec![true; net.pops.len()], "one stage a population");
        assert_eq!(net.stage_group(0), 0..net.pops.len(), "E and I: the stages of one phase");
        assert_eq!(net.active_ones, vec![true; net.pops.len()]);
        for pr in &net.projs {
            let Weights::Sparse(rows) = &pr.weights else { panic!("`{}` is not sparse", pr.name) };
            assert!(rows.span_of(&net.ranges[pr.to][1]).is_some(), "`{}` has no split", pr.name);
        }
    }

    /// Chunks moved to other runs of their cells (as `rebalance` moves them when one
    /// thread runs slower) give the spikes of one thread, step by step, and their rows
    /// are not split again: every new chunk is a span of the split made at the cells.
    #[test]
    fn chunks_moved_to_other_cells_give_the_spikes_of_one_thread() {
        // COBA with E and I of more than 4096 neurons each: two chunks each on two
        // threads (80 inputs a neuron, weights scaled, as bench/compare.py scales it).
        let (n_e, n_i) = (8200usize, 4100usize);
        let scale = 4000.0 / (n_e + n_i) as f64;
        let text = include_str!("../../examples/coba.snn")
            .replace("[3200]", &format!("[{n_e}]"))
            .replace("[800]", &format!("[{n_i}]"))
            .replace("p = 0.02", &format!("p = {:.10}", 80.0 / (n_e + n_i) as f64))
            .replace("weight 6 nS", &format!("weight {:.10} nS", 6.0 * scale))
            .replace("weight 67 nS", &format!("weight {:.10} nS", 67.0 * scale));
        let build = || {
            let mut sources = snnc_compiler::SourceMap::new();
            let (p, d) = snnc_compiler::sema::check_source("coba.snn", &text, &mut sources);
            assert!(d.iter().all(|d| !d.is_error()));
            let o = Options { seed: 7, method: Some(snnc_compiler::sema::Method::Euler), ..Options::default() };
            Network::<f32>::build(&p, &p.networks[0], &o, &crate::kernels::JitFactory).unwrap()
        };
        let steps = 240;
        let mut one = build();
        let want: Vec<Vec<Vec<u32>>> = (0..steps)
            .map(|_| {
                one.step(&[]).unwrap();
                one.pops.iter().map(|p| p.active[0].clone()).collect()
            })
            .collect();
        assert!(want.iter().flatten().map(Vec::len).sum::<usize>() > 100, "the network fires");
        let mut two = build();
        two.set_threads(2).unwrap();
        assert_eq!(two.local.iter().map(|l| l.len()).collect::<Vec<_>>(), vec![2, 2]);
        assert!((0..two.pops.len()).all(|p| two.movable(p)));
        // The cells a step moves the bound between the two chunks to (even: 16).
        let moves = [(40, 5), (90, 27), (150, 16), (200, 9)];
        for (t, want) in want.iter().enumerate() {
            if let Some(&(_, cut)) = moves.iter().find(|(at, _)| *at == t) {
                for p in 0..two.pops.len() {
                    let cells = two.cells[p].clone();
                    assert_eq!(cells.len(), 2 * crate::balance::CELLS_PER_CHUNK);
                    two.move_bounds(p, vec![cells[0].start..cells[cut].start, cells[cut].start..cells[cells.len() - 1].end]);
                }
                for pr in &two.projs {
                    let Weights::Sparse(rows) = &pr.weights else { panic!("`{}` is not sparse", pr.name) };
                    for c in &two.ranges[pr.to] {
                        assert!(rows.span_of(c).is_some(), "`{}`: {c:?} is not a span of the split", pr.name);
                    }
                }
            }
            two.step(&[]).unwrap();
            let got: Vec<Vec<u32>> = two.pops.iter().map(|p| p.active[0].clone()).collect();
            assert_eq!(&got, want, "step {t}");
        }
    }

    /// A recorder dropped while attached leaves its logs to the network alone: the next
    /// step lets them go (else the network would log into them for the rest of its life,
    /// and nobody could read them); another recorder's stay.
    #[test]
    fn a_recorder_dropped_while_attached_is_not_logged_into() {
        let mut net = coba_f32(4);
        let logs = |net: &mut Network<f32>| net.fresh.iter_mut().map(|f| f.0.get_mut().logs.len()).collect::<Vec<_>>();
        let mut kept = crate::record::Recorder::new(&net, true, &[]).unwrap();
        let mut dropped = crate::record::Recorder::new(&net, true, &[]).unwrap();
        kept.attach(&mut net).unwrap();
        dropped.attach(&mut net).unwrap();
        net.step(&[]).unwrap();
        assert_eq!(logs(&mut net), vec![2, 2]);
        drop(dropped);
        net.step(&[]).unwrap();
        assert_eq!(logs(&mut net), vec![1, 1]);
        kept.detach(&mut net).unwrap();
        assert_eq!(logs(&mut net), vec![0, 0]);
    }

    /// Where the kernels store their spikes as bits (AVX-512 or AVX2, f32, a batch of one), each
    /// chunk lists its spikes from them: the lists are the neurons whose spike is not 0,
    /// in order, at every step, on one thread and on two (pieces stepped down included).
    #[test]
    fn spike_lists_from_the_kernels_bits_are_the_spikes() {
        for threads in [1, 2] {
            let mut net = coba_f32(4);
            net.set_threads(threads).unwrap();
            let mut fired = 0;
            for step in 0..200 {
                net.step(&[]).unwrap();
                for pop in &net.pops {
                    let want: Vec<u32> = pop.spikes.iter().enumerate().filter(|(_, s)| **s != 0.0).map(|(i, _)| i as u32).collect();
                    assert_eq!(pop.active[0], want, "{} threads, step {step}, `{}`", threads, pop.name);
                    fired += want.len();
                }
            }
            assert!(fired > 0, "the network fires");
            if snnc_compiler::backend::x86::host().is_some() {
                assert!(net.spike_bits.iter().all(|b| !b.is_empty()), "{threads} threads: the lists come from the kernels' bits");
            }
        }
    }

    /// The elements of set bits, in order, from words of any length (four at a time and
    /// the rest).
    #[test]
    fn active_from_bits_lists_the_set_bits_in_order() {
        for len in [0usize, 1, 3, 4, 5, 9] {
            let words: Vec<u16> = (0..len).map(|k| (0x9249u16).rotate_left(k as u32 * 3) & if k % 4 == 2 { 0 } else { 0xffff }).collect();
            let mut got = Vec::new();
            super::active_from_bits(&words, 32, &mut got);
            let want: Vec<u32> = (0..16 * len).filter(|&i| words[i / 16] >> (i % 16) & 1 == 1).map(|i| (32 + i) as u32).collect();
            assert_eq!(got, want, "{len} words");
        }
    }

    /// Between steps every input a projection delivers into holds its start, 0 plus its
    /// drives: the step's kernel leaves it so (`step_part`), and the next step's
    /// deliveries add into it. Stepped whole (one thread) and in chunks of each batch
    /// element (two threads), with a drive that differs from neuron to neuron and a
    /// batch of two: the same spikes and states, and the inputs at their drives.
    #[test]
    fn inputs_are_back_at_their_drives_after_every_step() {
        let src = r#"
import "stdlib/lif.snn"
network n {
    dt = 0.1 ms
    layer L = LIF[200] { v = uniform(0, 1) }
    drive L.I = normal(1.2, 0.3)
    connect L -> L.I sparse p = 0.1 weight 0.05
}"#;
        let mut sources = snnc_compiler::SourceMap::new();
        let (p, d) = snnc_compiler::sema::check_source("drive.snn", src, &mut sources);
        assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
        let o = Options { seed: 5, batch: 2, ..Options::default() };
        let mut whole = Network::<f64>::build(&p, &p.networks[0], &o, &crate::kernels::JitFactory).unwrap();
        let mut chunked = Network::<f64>::build(&p, &p.networks[0], &o, &crate::kernels::JitFactory).unwrap();
        chunked.set_threads(2).unwrap();
        chunked.set_chunk(64);
        let drive = whole.pops[0].drives[0].1.clone();
        assert!(drive.iter().any(|&d| d != drive[0]), "the drive differs between neurons");
        let mut spikes = 0.0;
        for step in 0..300 {
            whole.step(&[]).unwrap();
            chunked.step(&[]).unwrap();
            assert_eq!(whole.pops[0].spikes, chunked.pops[0].spikes, "step {step}");
            spikes += whole.pops[0].spikes.iter().sum::<f64>();
            for net in [&whole, &chunked] {
                assert_eq!(net.pops[0].inputs[0], drive, "step {step}: the input is back at its drive");
            }
        }
        assert!(spikes > 0.0, "the network fires");
        assert_eq!(whole.pops[0].states, chunked.pops[0].states);
        assert!(chunked.ranges[0].len() > 2, "stepped in chunks");
    }

    /// An input restarted from its last element to its first holds what one restarted from
    /// its first holds: 0 with no drive, 0 plus one drive, plus two; f32 and f64.
    #[test]
    fn inputs_restart_the_same_up_and_down() {
        fn check<T: Float>() {
            let (n, b, cols) = (50usize, 1usize, 3..41);
            let drive = |k: u64| (0..2 * n).map(|i| T::from_f64(((i as u64 * 7919 + k * 31) % 97) as f64 / 7.0 - 5.0)).collect::<Vec<T>>();
            for drives in [vec![], vec![(0, drive(1))], vec![(0, drive(1)), (1, drive(2)), (0, drive(3))]] {
                for k in 0..2 {
                    let mut up = vec![T::from_f64(9.0); cols.len()];
                    let mut down = up.clone();
                    start_input(&drives, k, n, b, &cols, &mut up, false);
                    start_input(&drives, k, n, b, &cols, &mut down, true);
                    let want: Vec<f64> = (0..cols.len()).map(|i| drives.iter().filter(|(j, _)| *j == k).fold(0.0, |a, (_, v)| a + v[b * n + cols.start + i].to_f64())).collect();
                    assert_eq!(up.iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>(), down.iter().map(|v| v.to_f64().to_bits()).collect::<Vec<_>>(), "{} drives, input {k}", drives.len());
                    assert!(up.iter().zip(&want).all(|(u, w)| (u.to_f64() - w).abs() < 1e-5), "{} drives, input {k}", drives.len());
                }
            }
        }
        check::<f32>();
        check::<f64>();
    }

    #[test]
    fn finite_sum_finds_every_non_finite_value_and_no_other() {
        for n in [1usize, 7, 8, 9, 33] {
            // Huge finite values would overflow a plain sum; they are finite.
            assert!(finite_sum(&vec![f32::MAX; n]), "n = {n}");
            assert!(finite_sum(&vec![-1e300f64; n]), "n = {n}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for i in 0..n {
                    let mut v = vec![0.5f32; n];
                    v[i] = bad;
                    assert!(!finite_sum(&v), "{bad} at {i} of {n}");
                }
            }
        }
    }
}
