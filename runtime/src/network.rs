//! A network instantiated from a checked `network` block: state buffers, connectivity,
//! drives and the order of a step. Generic over the float type (f32 or f64) and over
//! how kernels are made ([`KernelFactory`]).
//!
//! Layout: every per-neuron quantity is a contiguous slice of `batch * n` values
//! (index `b * n + i`), the structure of arrays the kernels expect.

use crate::connectivity::{self, Connectivity};
use crate::propagate::{self, DelayRing, SparseRows};
use crate::rng::{Rng, stream_id};
use ndarray::{ArrayView2, ArrayViewMut2};
use snnc_compiler::backend::{ParamSpec, RandomCtx, Real, StepArgs, StepKernel, random_draw};
use snnc_compiler::discretise::{DerivLayout, Step};
use snnc_compiler::ir::{self, Env};
use snnc_compiler::net::{self, GroupModel, NetPlan};
use snnc_compiler::sema::{Init, NetworkDef, PopKind, Program, Source, SymId, Topology};
pub use snnc_compiler::syntax::ast::Sign;
use std::fmt;

/// A runtime failure: a clear message, never a panic.
#[derive(Clone, Debug, PartialEq)]
pub enum RuntimeError {
    /// The network cannot be built (unsupported feature, bad file, ...).
    Build(String),
    /// A state became NaN or infinite.
    NonFinite { population: String, state: String, neuron: usize, batch: usize, step: u64, value: f64 },
    /// Bad input data (shape, values).
    Input(String),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Build(m) | RuntimeError::Input(m) => f.write_str(m),
            RuntimeError::NonFinite { population, state, neuron, batch, step, value } => write!(
                f,
                "state `{state}` of neuron {neuron} (batch {batch}) of population `{population}` became {value} at step {step}"
            ),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// Builds the kernel of a population's step (the interpreter, the JIT, ...).
pub trait KernelFactory<T> {
    fn build(&self, step: &Step, specs: &[ParamSpec], dt: f64) -> Result<Box<dyn StepKernel<T>>, RuntimeError>;
    fn name(&self) -> &'static str;
}

/// Native code through Cranelift: one fused, vectorised loop per population.
pub struct JitFactory;

impl<T: Real + snnc_compiler::backend::cranelift::JitReal> KernelFactory<T> for JitFactory
where
    snnc_compiler::backend::cranelift::JitKernel: StepKernel<T>,
{
    fn build(&self, step: &Step, specs: &[ParamSpec], dt: f64) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        use snnc_compiler::backend::cranelift::JitKernel;
        let k = JitKernel::compile(step, specs, dt, T::PRECISION).map_err(|e| RuntimeError::Build(format!("`{}`: {e}", step.model.name)))?;
        Ok(Box::new(k))
    }
    fn name(&self) -> &'static str {
        "cranelift"
    }
}

/// Makes the current thread flush denormal floats to zero (x86-64 MXCSR FTZ and DAZ):
/// decaying states reach denormals, which are many times slower on most CPUs. Results
/// then differ from strict IEEE only below ~1e-38 (f32) / 1e-308 (f64).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    // SAFETY: setting the FTZ (bit 15) and DAZ (bit 6) flags of MXCSR only changes how
    // this thread rounds tiny results; no memory is touched.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// Whether this thread flushes denormals ([`flush_denormals`]), so that helper threads
/// can run in the same mode.
pub fn denormals_flushed() -> bool {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    // SAFETY: reading MXCSR has no side effect.
    unsafe {
        std::arch::x86_64::_mm_getcsr() & 0x8040 == 0x8040
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The reference backend: the IR interpreter (f64 arithmetic, slow).
pub struct InterpFactory;

impl InterpFactory {
    fn name_of(&self) -> &'static str {
        "interpreter"
    }
}

impl<T: Real> KernelFactory<T> for InterpFactory {
    fn build(&self, step: &Step, specs: &[ParamSpec], _dt: f64) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        let k = snnc_compiler::backend::interp::InterpKernel::new(step, specs).map_err(RuntimeError::Build)?;
        Ok(Box::new(k))
    }
    fn name(&self) -> &'static str {
        self.name_of()
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Time step (s); the network's `dt` if `None`, else 0.1 ms.
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

pub(crate) enum Weights<T> {
    Dense(ndarray::Array2<T>),
    Sparse(SparseRows<T>),
    OneToOne(Vec<T>),
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
    sign: Option<Sign>,
}

/// `w` on the side of `sign`: |w| for excitatory, -|w| for inhibitory (Dale's law).
pub fn apply_sign(sign: Option<Sign>, w: f64) -> f64 {
    match sign {
        Some(Sign::Excitatory) => w.abs(),
        Some(Sign::Inhibitory) => -w.abs(),
        None => w,
    }
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
    /// The latest spikes (`batch * n`, 0 or 1); empty for non-spiking populations.
    pub spikes: Vec<T>,
    /// `Linear` readouts: the output `x W` of the current step.
    pub output: Vec<T>,
    pub(crate) inputs: Vec<Vec<T>>,
    pub input_names: Vec<String>,
    /// Constant contributions to inputs every step: (input index, per-element values).
    pub(crate) drives: Vec<(usize, Vec<T>)>,
    pub(crate) per_neuron_params: Vec<Vec<T>>,
    pub(crate) kernel: Option<Box<dyn StepKernel<T>>>,
    /// The discretised step the kernel was made from (for derivatives).
    pub step: Option<Step>,
    /// How each param reaches the kernel (uniform values; per-neuron ones are in
    /// `per_neuron_values`).
    pub specs: Vec<ParamSpec>,
    pub per_neuron_values: Vec<Vec<T>>,
    /// Total spikes since the start, per batch element.
    pub spike_count: u64,
    /// Per batch element, the indices of the neurons that spiked in the latest step.
    pub active: Vec<Vec<u32>>,
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
}

/// Dale's law after an update: a weight that crossed to the wrong side of zero stops at zero.
pub fn project_onto_sign(sign: Sign, w: f64) -> f64 {
    match sign {
        Sign::Excitatory => w.max(0.0),
        Sign::Inhibitory => w.min(0.0),
    }
}

pub struct Network<T> {
    pub name: String,
    pub dt: f64,
    pub batch: usize,
    pub seed: u64,
    pub step_index: u64,
    pub inputs: Vec<(String, usize)>,
    pub pops: Vec<Population<T>>,
    pub(crate) projs: Vec<Proj<T>>,
    /// [`KernelFactory::name`] of the factory the network was built with.
    pub(crate) kernel_backend: &'static str,
    /// Index of this network's first batch element in a larger batch split across
    /// networks (the random draws of element b are those of the whole batch's b0 + b).
    pub batch_offset: usize,
    /// Per external input and batch element, the indices of its non-zero entries this step.
    ext_active: Vec<Vec<Vec<u32>>>,
}

fn sample_values<T: Real>(init: &Init, rng: &Rng, stream: u32, count: usize) -> Vec<T> {
    (0..count).map(|i| T::from_f64(connectivity::sample(init, rng, stream, i as u64, 0))).collect()
}

/// The float types a network runs in (f32 or f64).
pub trait Float:
    Real
    + Default
    + PartialOrd
    + std::fmt::Debug
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::Mul<Output = Self>
    + ndarray::LinalgScalar
    + propagate::num_zero::Zero
{
    /// The Cranelift JIT for this float type.
    fn jit_factory() -> &'static dyn KernelFactory<Self>;
}
impl Float for f32 {
    fn jit_factory() -> &'static dyn KernelFactory<f32> {
        &JitFactory
    }
}
impl Float for f64 {
    fn jit_factory() -> &'static dyn KernelFactory<f64> {
        &JitFactory
    }
}

impl<T: Float> Network<T> {
    /// Instantiates `net`: composes and compiles every population, builds connectivity.
    pub fn build(program: &Program, net: &NetworkDef, opts: &Options, factory: &dyn KernelFactory<T>) -> Result<Network<T>, RuntimeError> {
        let dt = opts.dt.or(net.dt).unwrap_or(1e-4);
        let seed = net.seed.unwrap_or(opts.seed);
        let batch = opts.batch.max(1);
        let rng = Rng::new(seed);
        let plan: NetPlan = net::plan(program, net);
        let mut pops = Vec::new();
        let mut groups: Vec<Option<GroupModel>> = Vec::new();
        for (pi, p) in net.populations.iter().enumerate() {
            let pname = format!("{}.{}", net.name, p.name);
            match net::compose(program, net, &plan, pi) {
                None => {
                    groups.push(None);
                    pops.push(Population {
                        name: p.name.clone(),
                        n: p.size,
                        kind: p.kind,
                        state_names: Vec::new(),
                        states: Vec::new(),
                        spikes: Vec::new(),
                        output: vec![T::default(); batch * p.size],
                        inputs: Vec::new(),
                        input_names: Vec::new(),
                        drives: Vec::new(),
                        per_neuron_params: Vec::new(),
                        kernel: None,
                        step: None,
                        specs: Vec::new(),
                        per_neuron_values: Vec::new(),
                        spike_count: 0,
                        active: Vec::new(),
                        deriv: None,
                        initial: Vec::new(),
                    });
                }
                Some(g) => {
                    let mut g = g.map_err(|d| RuntimeError::Build(format!("population `{}`: {}", p.name, d.message)))?;
                    if let Some(m) = opts.method {
                        g.model.method = Some(m);
                    }
                    let pop = build_population(&g, opts.smooth_spikes, opts.learning, p.name.clone(), p.size, p.kind, batch, dt, &rng, &pname, factory)?;
                    pops.push(pop);
                    groups.push(Some(g));
                }
            }
        }
        // Drives: constant input into a port.
        for d in &net.drives {
            let g = groups[d.pop].as_ref().expect("drives target neuron populations");
            let pop = &mut pops[d.pop];
            let sym = g.direct_input(d.port);
            let idx = input_index(&g.model, sym)?;
            let stream = stream_id(&format!("{}.{}.drive{}", net.name, pop.name, idx));
            let per = sample_values::<T>(&d.value, &rng, stream, pop.n);
            let vals: Vec<T> = (0..batch).flat_map(|_| per.iter().copied()).collect();
            pop.drives.push((idx, vals));
        }
        // Projections.
        let mut projs = Vec::new();
        for (pi, pr) in net.projections.iter().enumerate() {
            let from_state = match (&pr.from_state, pr.from) {
                (Some(name), Source::Pop(q)) => Some(pops[q].state_names.iter().position(|n| n == name).ok_or_else(|| {
                    RuntimeError::Build(format!("projection `{}`: population `{}` has no state `{name}`", pr.name, pops[q].name))
                })?),
                _ => None,
            };
            if let (Source::Pop(q), None) = (pr.from, from_state) {
                if q == pr.to && pops[q].kernel.is_none() {
                    return Err(RuntimeError::Build(format!("projection `{}`: a `Linear` readout cannot feed itself", pr.name)));
                }
                if pops[q].kernel.is_some() && pops[q].spikes.is_empty() {
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
            let input = match &groups[pr.to] {
                None => 0,
                Some(g) => {
                    let sym: SymId = match plan.pops[pr.to].syn_groups.iter().position(|sg| sg.projections.contains(&pi)) {
                        Some(gi) => g.group_inputs[gi],
                        None => g.direct_input(pr.port.expect("a neuron population's port")),
                    };
                    input_index(&g.model, sym)?
                }
            };
            let init = pr.init.unwrap_or_else(|| {
                let fan_in = match pr.topology {
                    Topology::Sparse { p } | Topology::Procedural { p } => p * n_pre as f64,
                    Topology::OneToOne => 1.0,
                    _ => n_pre as f64,
                };
                connectivity::default_init(fan_in)
            });
            let stream = stream_id(&format!("{}.{}", net.name, pr.name));
            let no_self = pr.no_self && Source::Pop(pr.to) == pr.from;
            let conn = match &pr.topology {
                Topology::Dense => Connectivity::Dense { n_pre, n_post, w: connectivity::dense(n_pre, n_post, no_self, &init, &rng, stream) },
                Topology::Sparse { p } => Connectivity::Sparse(connectivity::fixed_probability(n_pre, n_post, *p, no_self, &init, &rng, stream)),
                Topology::OneToOne => Connectivity::OneToOne { w: (0..n_pre).map(|i| connectivity::sample(&init, &rng, stream, i as u64, 0)).collect() },
                Topology::File { path } => {
                    return Err(RuntimeError::Build(format!("projection `{}`: connectivity from a file (`from \"{path}\"`) is not supported yet", pr.name)));
                }
                Topology::Procedural { .. } => {
                    return Err(RuntimeError::Build(format!("projection `{}`: `procedural` connectivity is not supported yet", pr.name)));
                }
            };
            let n_synapses = conn.n_synapses();
            // Dale's law: drawn weights are folded onto the connection's sign.
            let fold = |w: f64| T::from_f64(apply_sign(pr.sign, w));
            let weights = match conn {
                Connectivity::Dense { n_pre, n_post, w } => Weights::Dense(
                    ndarray::Array2::from_shape_vec((n_pre, n_post), w.into_iter().map(fold).collect()).expect("shape"),
                ),
                Connectivity::Sparse(c) => Weights::Sparse(SparseRows::from_csr(&c, fold)),
                Connectivity::OneToOne { w } => Weights::OneToOne(w.into_iter().map(fold).collect()),
            };
            let delay = pr.delay.map(|d| (d / dt).round() as usize).filter(|d| *d > 0).map(|d| DelayRing::new(d, batch, n_post));
            projs.push(Proj { name: pr.name.clone(), from: pr.from, from_state, to: pr.to, input, weights, n_synapses, delay, sign: pr.sign });
        }
        Ok(Network {
            name: net.name.clone(),
            dt,
            batch,
            seed,
            step_index: 0,
            inputs: net.inputs.iter().map(|i| (i.name.clone(), i.size)).collect(),
            pops,
            projs,
            kernel_backend: factory.name(),
            batch_offset: 0,
            ext_active: Vec::new(),
        })
    }

    /// Compiles a step derived from this network's populations (the learning rules'
    /// trace steps) with the backend the network was built with: the reference
    /// interpreter for a network built with [`InterpFactory`], the Cranelift JIT otherwise.
    pub fn build_kernel(&self, step: &Step, specs: &[ParamSpec]) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        if self.kernel_backend == InterpFactory.name_of() {
            KernelFactory::<T>::build(&InterpFactory, step, specs, self.dt)
        } else {
            T::jit_factory().build(step, specs, self.dt)
        }
    }

    /// Back to the state the network was built in (states, spikes, delays, time),
    /// keeping its weights and params: a network can run sequence after sequence
    /// without being built (and compiled) again.
    pub fn reset(&mut self) {
        for pop in &mut self.pops {
            for (s, i) in pop.states.iter_mut().zip(&pop.initial) {
                s.copy_from_slice(i);
            }
            pop.spikes.fill(T::default());
            pop.output.fill(T::default());
            pop.active.iter_mut().for_each(Vec::clear);
            pop.spike_count = 0;
        }
        for pr in &mut self.projs {
            if let Some(ring) = &mut pr.delay {
                ring.clear();
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

    /// Advances the network one step. `external[i]` holds input `i` for this step,
    /// `batch * size` values (index `b * size + j`).
    pub fn step(&mut self, external: &[&[T]]) -> Result<(), RuntimeError> {
        self.step_traced(external, None)
    }

    /// [`Network::step`], also capturing what learning rules need besides the
    /// derivatives the kernels write: each projection's presynaptic activity x^t.
    pub fn step_traced(&mut self, external: &[&[T]], mut trace: Option<&mut StepTrace<T>>) -> Result<(), RuntimeError> {
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
        let t = self.time();
        for p in 0..self.pops.len() {
            self.gather_inputs(p, external, trace.as_deref_mut());
            let pop = &mut self.pops[p];
            let Some(kernel) = &pop.kernel else { continue };
            let mut states: Vec<&mut [T]> = pop.states.iter_mut().map(|s| s.as_mut_slice()).collect();
            let inputs: Vec<&[T]> = pop.inputs.iter().map(|s| s.as_slice()).collect();
            let params: Vec<&[T]> = pop.per_neuron_params.iter().map(|s| s.as_slice()).collect();
            // A network holding batch elements b0.. of a larger batch draws what the whole
            // one would for them (element index = b0 * n + i).
            let ctx = RandomCtx { seed: self.seed ^ u64::from(stream_id(&pop.name)), step: self.step_index, offset: (self.batch_offset * pop.n) as u64 };
            kernel.step(StepArgs { states: &mut states, inputs: &inputs, params: &params, spikes: &mut pop.spikes, t, dt: self.dt, random: ctx });
            // Stop on the first non-finite state, naming it. A sum is non-finite when an
            // element is (and vectorises); only then is the element looked for.
            for (k, s) in pop.states.iter().enumerate() {
                if finite_sum(s) {
                    continue;
                }
                if let Some(i) = s.iter().position(|v| !v.to_f64().is_finite()) {
                    return Err(RuntimeError::NonFinite {
                        population: pop.name.clone(),
                        state: pop.state_names[k].clone(),
                        neuron: i % pop.n,
                        batch: i / pop.n,
                        step: self.step_index,
                        value: s[i].to_f64(),
                    });
                }
            }
            // The indices of the neurons that spiked, per batch element: sparse
            // projections and recorders read these instead of scanning every neuron.
            let n = pop.n;
            if pop.spikes.is_empty() {
                continue;
            }
            pop.active.resize_with(self.batch, Vec::new);
            for (b, act) in pop.active.iter_mut().enumerate() {
                act.clear();
                active_indices(&pop.spikes[b * n..(b + 1) * n], act);
                pop.spike_count += act.len() as u64;
            }
        }
        self.step_index += 1;
        Ok(())
    }

    /// Sums everything that arrives at population `p` this step into its kernel inputs.
    fn gather_inputs(&mut self, p: usize, external: &[&[T]], mut trace: Option<&mut StepTrace<T>>) {
        let batch = self.batch;
        {
            let pop = &mut self.pops[p];
            for x in pop.inputs.iter_mut() {
                x.fill(T::default());
            }
            pop.output.fill(T::default());
            for (idx, vals) in &pop.drives {
                for (d, v) in pop.inputs[*idx].iter_mut().zip(vals) {
                    *d += *v;
                }
            }
        }
        let step = self.step_index as usize;
        // The target's buffers are moved out while sources are read, so a recurrent
        // projection can read the population's own spikes.
        let mut inputs = std::mem::take(&mut self.pops[p].inputs);
        let mut output = std::mem::take(&mut self.pops[p].output);
        let has_kernel = self.pops[p].kernel.is_some();
        let n_post = self.pops[p].n;
        let ext_active = std::mem::take(&mut self.ext_active);
        for (pi, pr) in self.projs.iter_mut().enumerate().filter(|(_, pr)| pr.to == p) {
            let (src, n_pre, active): (&[T], usize, Option<&[Vec<u32>]>) = match pr.from {
                Source::Input(i) => (external[i], self.inputs[i].1, Some(ext_active[i].as_slice())),
                // A state (membrane-potential readout): its value as it is now, dense.
                Source::Pop(q) if pr.from_state.is_some() => (&self.pops[q].states[pr.from_state.expect("checked")], self.pops[q].n, None),
                // Spikes are read when they are: a population earlier in the order has
                // already stepped (s^t), itself or a later one not yet (s^{t-1}).
                Source::Pop(q) if self.pops[q].kernel.is_some() => {
                    let a = &self.pops[q].active;
                    (&self.pops[q].spikes, self.pops[q].n, (a.len() == batch).then_some(a.as_slice()))
                }
                // A `Linear` readout sends its output.
                Source::Pop(q) => (&self.pops[q].output, self.pops[q].n, None),
            };
            if let Some(tr) = trace.as_deref_mut() {
                tr.pre[pi].clear();
                tr.pre[pi].extend_from_slice(src);
                match active {
                    Some(a) => {
                        let nz = tr.nonzero[pi].get_or_insert_with(Vec::new);
                        nz.clear();
                        for (b, row) in a.iter().enumerate() {
                            nz.extend(row.iter().map(|&i| (b as u32, i)));
                        }
                    }
                    None => tr.nonzero[pi] = None,
                }
            }
            let target: &mut Vec<T> = if has_kernel { &mut inputs[pr.input] } else { &mut output };
            match &mut pr.delay {
                // Delayed: computed now into the ring slot of step t + d, and whatever
                // was computed d steps ago arrives.
                Some(ring) => {
                    let slot = ring.emit_slot(step).as_slice_mut().expect("contiguous ring slot");
                    propagate_into(&pr.weights, src, active, n_pre, n_post, batch, slot);
                    let mut view = ArrayViewMut2::from_shape((batch, n_post), target.as_mut_slice()).expect("target shape");
                    ring.arrive(step, &mut view);
                }
                None => propagate_into(&pr.weights, src, active, n_pre, n_post, batch, target),
            }
        }
        self.pops[p].inputs = inputs;
        self.pops[p].output = output;
        self.ext_active = ext_active;
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

    /// A projection's delay in steps, if it has one.
    pub fn projection_delay(&self, proj: usize) -> Option<usize> {
        self.projs[proj].delay.as_ref().map(|r| r.delay())
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

    /// Replaces the weights of a dense projection (e.g. loaded from a file).
    pub fn set_dense_weights(&mut self, proj: usize, w: ndarray::Array2<T>) -> Result<(), RuntimeError> {
        let pr = &mut self.projs[proj];
        match &mut pr.weights {
            Weights::Dense(old) if old.dim() == w.dim() => {
                *old = w;
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
            _ => Err(RuntimeError::Input(format!("`{}` is not a dense projection", pr.name))),
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

    /// The smallest value an update may give a trainable tensor: a trainable time
    /// constant stays at or above one step (below it, the discretised decay is
    /// meaningless and soon not finite); everything else is unbounded.
    pub fn trainable_floor(&self, name: &str) -> Option<f64> {
        match self.param_slot(name) {
            Some((.., true)) => Some(self.dt),
            _ => None,
        }
    }

    /// A trainable tensor by name: a dense projection's weights (n_pre x n_post), or a
    /// trainable param `POP.PARAM` as a 1 x n row.
    pub fn trainable(&self, name: &str) -> Option<ndarray::Array2<T>> {
        if let Some((i, ..)) = self.projection(name) {
            return self.dense_weights(i).cloned();
        }
        let (p, slot, ..) = self.param_slot(name)?;
        let n = self.pops[p].n;
        Some(ndarray::Array2::from_shape_vec((1, n), self.pops[p].per_neuron_params[slot][..n].to_vec()).expect("shape"))
    }

    /// Sets a trainable tensor ([`Network::trainable`]); a param's row goes to every
    /// batch element.
    pub fn set_trainable(&mut self, name: &str, w: ndarray::Array2<T>) -> Result<(), RuntimeError> {
        if let Some((i, ..)) = self.projection(name) {
            return self.set_dense_weights(i, w);
        }
        let (p, slot, ..) = self.param_slot(name).ok_or_else(|| RuntimeError::Input(format!("the network has no projection or trainable param `{name}`")))?;
        let n = self.pops[p].n;
        if w.dim() != (1, n) {
            return Err(RuntimeError::Input(format!("`{name}` must be 1x{n} (one value per neuron), got {}x{}", w.nrows(), w.ncols())));
        }
        let row: Vec<T> = w.iter().copied().collect();
        let pop = &mut self.pops[p];
        for arr in [&mut pop.per_neuron_params[slot], &mut pop.per_neuron_values[slot]] {
            for chunk in arr.chunks_mut(n) {
                chunk.copy_from_slice(&row);
            }
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

/// `out += x W` for one projection, with the kernel its connectivity calls for.
/// `active` lists the non-zero entries of `src` per batch element when they are known.
fn propagate_into<T>(weights: &Weights<T>, src: &[T], active: Option<&[Vec<u32>]>, n_pre: usize, n_post: usize, batch: usize, out: &mut [T])
where
    T: Real + std::ops::AddAssign + std::ops::Mul<Output = T> + ndarray::LinalgScalar,
{
    match weights {
        // Spikes are mostly zeros: adding the rows of the neurons that fired is far
        // cheaper than a GEMM with the whole 0/1 vector (event-driven dense).
        Weights::Dense(w) if active.is_some_and(|a| a.iter().map(|r| r.len()).sum::<usize>() * 4 < batch * n_pre) => {
            let a = active.expect("checked");
            let w = w.as_slice().expect("row-major weights");
            for b in 0..batch {
                let y = &mut out[b * n_post..(b + 1) * n_post];
                for &i in &a[b] {
                    let row = &w[i as usize * n_post..(i as usize + 1) * n_post];
                    let xi = src[b * n_pre + i as usize];
                    for (yo, wo) in y.iter_mut().zip(row) {
                        *yo += *wo * xi;
                    }
                }
            }
        }
        Weights::Dense(w) => {
            let x = ArrayView2::from_shape((batch, n_pre), src).expect("input shape");
            let mut y = ArrayViewMut2::from_shape((batch, n_post), out).expect("output shape");
            propagate::dense(x, w.view(), &mut y);
        }
        Weights::Sparse(rows) => {
            for b in 0..batch {
                let x = &src[b * n_pre..(b + 1) * n_pre];
                let y = &mut out[b * n_post..(b + 1) * n_post];
                match active {
                    Some(a) => sparse_weighted(rows, &a[b], x, y),
                    None => {
                        let a: Vec<u32> = (0..n_pre).filter(|&i| x[i].to_f64() != 0.0).map(|i| i as u32).collect();
                        sparse_weighted(rows, &a, x, y);
                    }
                }
            }
        }
        Weights::OneToOne(w) => {
            for b in 0..batch {
                propagate::one_to_one(w, &src[b * n_pre..(b + 1) * n_pre], &mut out[b * n_post..(b + 1) * n_post]);
            }
        }
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

/// Appends the indices of the non-zero entries of `spikes` to `out`. Spikes are rare
/// (a few per thousand neurons and step): blocks of 16 that are all zero are skipped
/// with one branch-free sum (spikes are >= 0, so a zero sum means no spike).
fn active_indices<T: Float>(spikes: &[T], out: &mut Vec<u32>) {
    let zero = T::default();
    for (blk, c) in spikes.chunks(16).enumerate() {
        let mut sum = zero;
        for v in c {
            sum += *v;
        }
        if sum.to_f64() == 0.0 {
            continue;
        }
        out.extend(c.iter().enumerate().filter(|(_, v)| v.to_f64() != 0.0).map(|(i, _)| (blk * 16 + i) as u32));
    }
}

/// Sparse propagation of real-valued presynaptic activity: event-driven over the
/// non-zero entries (spikes are 1, so the weight is added as is).
fn sparse_weighted<T: Real + std::ops::AddAssign + std::ops::Mul<Output = T>>(rows: &SparseRows<T>, active: &[u32], x: &[T], y: &mut [T]) {
    for &i in active {
        let xi = x[i as usize];
        let r = rows.row_ptr[i as usize]..rows.row_ptr[i as usize + 1];
        if xi.to_f64() == 1.0 {
            for (c, w) in rows.col[r.clone()].iter().zip(&rows.weight[r]) {
                y[*c as usize] += *w;
            }
        } else {
            for (c, w) in rows.col[r.clone()].iter().zip(&rows.weight[r]) {
                y[*c as usize] += *w * xi;
            }
        }
    }
}

fn input_index(model: &snnc_compiler::sema::Model, sym: SymId) -> Result<usize, RuntimeError> {
    model
        .inputs()
        .position(|(id, _)| id == sym)
        .ok_or_else(|| RuntimeError::Build(format!("internal: symbol {sym} is not an input of `{}`", model.name)))
}

/// The params of a population: uniform values (`Some`) and per-neuron samples, from the
/// population's settings, else the declared defaults (evaluated in order: a default may
/// read earlier params; one that reads a heterogeneous param takes neuron 0's value).
#[allow(clippy::type_complexity)]
pub fn param_values(
    g: &GroupModel,
    name: &str,
    n: usize,
    dt: f64,
    rng: &Rng,
    qualified: &str,
) -> Result<(Vec<Option<f64>>, Vec<Option<Vec<f64>>>), RuntimeError> {
    let lowered = ir::lower_model(&g.model).map_err(|e| RuntimeError::Build(format!("population `{name}`: {e}")))?;
    let layout = &lowered.layout;
    let model = &g.model;
    let mut uniform: Vec<Option<f64>> = vec![None; layout.params.len()];
    let mut per_neuron: Vec<Option<Vec<f64>>> = vec![None; layout.params.len()];
    for (k, &sym) in layout.params.iter().enumerate() {
        let setting = g.settings.iter().find(|(s, _)| *s == sym).map(|(_, i)| *i);
        match setting {
            Some(Init::Const(v)) => uniform[k] = Some(v),
            Some(init) => {
                let stream = stream_id(&format!("{qualified}.{}", model.symbols[sym].name));
                per_neuron[k] = Some((0..n).map(|i| connectivity::sample(&init, rng, stream, i as u64, 0)).collect());
            }
            None => {
                let Some(node) = lowered.param_defaults[k] else {
                    return Err(RuntimeError::Build(format!("population `{name}`: param `{}` has no value", model.symbols[sym].name)));
                };
                let vals: Vec<f64> = uniform.iter().zip(&per_neuron).map(|(u, p)| u.or(p.as_ref().map(|v| v[0])).unwrap_or(f64::NAN)).collect();
                let env = Env { params: &vals, dt, ..Env::default() };
                uniform[k] = Some(ir::eval(&lowered.graph, &[node], &env).map_err(|e| RuntimeError::Build(format!("population `{name}`: {e}")))?[0]);
            }
        }
    }
    Ok((uniform, per_neuron))
}

/// The discrete step a population runs: its composed model, discretised with its
/// uniform params and dt known (what `snnc explain --network` shows).
pub fn population_step(g: &GroupModel, name: &str, n: usize, dt: f64) -> Result<Step, RuntimeError> {
    let (uniform, _) = param_values(g, name, n, dt, &Rng::new(0), name)?;
    snnc_compiler::discretise::discretise_fixed(&g.model, &uniform, dt).map_err(|d| RuntimeError::Build(format!("population `{name}`: {}", d.message)))
}

#[allow(clippy::too_many_arguments)]
fn build_population<T: Real + Default>(
    g: &GroupModel,
    smooth: Option<f64>,
    learning: bool,
    name: String,
    n: usize,
    kind: PopKind,
    batch: usize,
    dt: f64,
    rng: &Rng,
    qualified: &str,
    factory: &dyn KernelFactory<T>,
) -> Result<Population<T>, RuntimeError> {
    let model = &g.model;
    let (mut uniform, mut per_neuron) = param_values(g, &name, n, dt, rng, qualified)?;
    // A trainable param is per neuron (one value each, never folded into the kernel as
    // a constant): the step can be differentiated with respect to it, and trained
    // values can be loaded into any network (evaluation, `snnc run --weights`).
    {
        let lowered = ir::lower_model(model).map_err(|e| RuntimeError::Build(format!("population `{name}`: {e}")))?;
        for (k, &sym) in lowered.layout.params.iter().enumerate() {
            if let (true, Some(v)) = (model.symbols[sym].trainable, uniform[k]) {
                uniform[k] = None;
                per_neuron[k] = Some(vec![v; n]);
            }
        }
    }
    // Knowing the uniform params lets deeply coupled linear systems integrate exactly.
    let step = match smooth {
        Some(a) => snnc_compiler::discretise::discretise_smooth(model, a),
        None => snnc_compiler::discretise::discretise_fixed(model, &uniform, dt),
    }
    .map_err(|d| RuntimeError::Build(format!("population `{name}`: {}", d.message)))?;
    // Spiking layers and readouts with dynamics carry derivatives; a state-free model none.
    let (step, deriv) = if learning && (step.spike.is_some() || (kind == PopKind::Readout && step.n_hidden > 0)) {
        let (s, l) = step.with_derivative_outputs().map_err(|d| RuntimeError::Build(format!("population `{name}`: {}", d.message)))?;
        (s, Some(l))
    } else {
        (step, None)
    };
    let step = &step;
    let lowered = ir::lower_model(&step.model).map_err(|e| RuntimeError::Build(format!("population `{name}`: {e}")))?;
    let layout = &step.layout;
    let specs: Vec<ParamSpec> = uniform.iter().map(|u| match u {
        Some(v) => ParamSpec::Uniform(*v),
        None => ParamSpec::PerNeuron,
    }).collect();
    let per_neuron_params: Vec<Vec<T>> = per_neuron
        .iter()
        .flatten()
        .map(|v| (0..batch).flat_map(|_| v.iter().map(|x| T::from_f64(*x))).collect())
        .collect();
    // States: settings, else the declared initial value (evaluated per neuron: it may
    // be random or read params), else 0. The refractory counter starts at -dt (free).
    let mut states = Vec::new();
    let mut state_names = Vec::new();
    for (k, &sym) in layout.states.iter().enumerate() {
        let sname = step.model.symbols[sym].name.clone();
        let setting = g.settings.iter().find(|(s, _)| *s == sym).map(|(_, i)| *i);
        let per: Vec<f64> = if sname == "_refractory" && k >= step.n_hidden {
            vec![-dt; n]
        } else if let Some(init) = setting {
            let stream = stream_id(&format!("{qualified}.{sname}"));
            (0..n).map(|i| connectivity::sample(&init, rng, stream, i as u64, 0)).collect()
        } else if let Some(node) = lowered.state_init.get(k).copied().flatten() {
            let stream = stream_id(&format!("{qualified}.{sname}.init"));
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let params: Vec<f64> = uniform.iter().zip(&per_neuron).map(|(u, p)| u.or(p.as_ref().map(|v| v[i])).unwrap_or(f64::NAN)).collect();
                let random: Vec<f64> = (0..lowered.random_slots)
                    .map(|s| random_draw(RandomCtx { seed: u64::from(stream), step: u64::MAX, offset: 0 }, i as u64, s, true))
                    .collect();
                let env = Env { params: &params, random: &random, dt, ..Env::default() };
                out.push(ir::eval(&lowered.graph, &[node], &env).map_err(|e| RuntimeError::Build(format!("population `{name}`: {e}")))?[0]);
            }
            out
        } else {
            vec![0.0; n]
        };
        states.push((0..batch).flat_map(|_| per.iter().map(|x| T::from_f64(*x))).collect());
        state_names.push(sname);
    }
    let input_names: Vec<String> = layout.inputs.iter().map(|&s| step.model.symbols[s].name.clone()).collect();
    let kernel = factory.build(step, &specs, dt)?;
    Ok(Population {
        name,
        n,
        kind,
        state_names,
        initial: states.clone(),
        states,
        spikes: if step.spike.is_some() { vec![T::default(); batch * n] } else { Vec::new() },
        output: Vec::new(),
        inputs: vec![vec![T::default(); batch * n]; input_names.len()],
        input_names,
        drives: Vec::new(),
        per_neuron_values: per_neuron_params.clone(),
        per_neuron_params,
        kernel: Some(kernel),
        step: Some(step.clone()),
        specs,
        spike_count: 0,
        active: Vec::new(),
        deriv,
    })
}

#[cfg(test)]
mod tests {
    use super::{active_indices, finite_sum};

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

    #[test]
    fn active_indices_are_the_non_zero_spikes() {
        for n in [1usize, 15, 16, 17, 100] {
            for seed in 0..20u64 {
                let spikes: Vec<f64> = (0..n).map(|i| f64::from(u8::from((i as u64 * 2654435761 + seed * 97) % 23 == 0))).collect();
                let mut got = Vec::new();
                active_indices(&spikes, &mut got);
                let want: Vec<u32> = (0..n as u32).filter(|&i| spikes[i as usize] != 0.0).collect();
                assert_eq!(got, want, "n = {n}, seed {seed}");
            }
        }
        // Smooth spikes (a sigmoid in (0, 1)) are all active.
        let mut got = Vec::new();
        active_indices(&[0.2f32, 0.7, 1e-30], &mut got);
        assert_eq!(got, vec![0, 1, 2]);
    }
}
