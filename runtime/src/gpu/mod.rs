//! The GPU runtime: a [`Network`] allocated on the host from the compiler's plan without
//! CPU kernels ([`Network::without_kernels`]: connectivity, initial states, drives, the
//! discretised steps), then moved to a [`Device`], which runs the PTX the compiler
//! emits from the same steps, and stepped there.
//!
//! Per step, in the host's population order (so what reads what, and when, is the CPU
//! backend's): add the population's drives (an input only drives reach holds them from
//! the build on), run each projection into it (cuBLAS GEMM for dense, one warp per spike
//! over the CSR rows for sparse, an element-wise kernel for one-to-one; delayed ones into
//! their ring slot, then the slot due now is added and cleared), launch the step kernel
//! the compiler emitted for the population (`population_kernel`: same Philox streams
//! as the CPU, the step read from the device's clock; it flags its non-finite states,
//! clears the inputs it has read, and lists its spikes for the sparse kernels, adding
//! them to the window's spike totals, and records them when asked). A projection with presynaptic state first
//! steps its stage and delivers the scaled activity; a plastic projection puts its
//! source's spikes in flight and delivers those arriving; after the populations, the
//! plastic projections run their weight rules and traces ([`plastic`]).
//!
//! Nothing comes back to the host per step. Spike totals and one non-finite flag per
//! population and step stay on the device for a window of steps ([`GpuNetwork::window`],
//! [`DEFAULT_WINDOW`]); one read-back at the window's end ([`GpuNetwork::flush`], also
//! done by `sync`) adds the totals to the host's spike counters and reports the first
//! non-finite state exactly as the CPU does (step, population, state, neuron, batch
//! element, NaN or which infinity): each flag keeps its step's first offending element.
//! Spikes and states are copied to the host only when asked ([`GpuNetwork::fetch`]).
//!
//! The device is a trait: `cuda::CudaDevice` (feature `cuda`) runs on a GPU through
//! cudarc; [`EmuDevice`] runs the same calls on the CPU, executing the emitted kernels,
//! which is how this module is tested without a GPU.

mod accumulate;
pub mod counted;
pub mod device;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
mod cublas;
pub mod learn;
mod plastic;

pub use counted::{Counted, Counts};
pub use learn::GpuGradient;
pub use device::{Buf, Call, Device, DeviceError, Elem, EmuDevice, Gemm, Host, HostMut, KArg, ModId, Module};

use accumulate::Accumulators;
use device::GraphId;
use std::collections::HashMap;
use plastic::{DevPlastic, DevStage};
use crate::engine::Simulation;
use crate::error::RuntimeError;
use crate::network::Network;
use crate::propagate::Weights;
use crate::scalar::Float;
use crate::rng::stream_id;
use snnc_compiler::backend::ptx::propagate::{self as prop, BLOCK, SPARSE_BLOCK, sparse_grid};
use snnc_compiler::backend::ptx::{Role, compile_checked_step, launch_config};
use snnc_compiler::sema::Source;

/// Steps between two status read-backs, unless set with [`GpuNetwork::set_window`].
pub const DEFAULT_WINDOW: usize = 256;

struct DevPop {
    module: Option<ModId>,
    /// The step kernel's pointer arguments, in its `.param` order.
    args: Vec<Buf>,
    /// The states: views of one allocation, one after the other, so that element e of
    /// the non-finite flag is state e / len, element e % len (as the CPU names it).
    states: Vec<Buf>,
    inputs: Vec<Buf>,
    /// Per-neuron params (the host's `per_neuron_params`, in order).
    params: Vec<Buf>,
    spikes: Option<Buf>,
    /// Spike list and its slot in the list lengths (and the spike totals). The step
    /// kernel writes the list (`PtxKernel::listing`), its length alternating between
    /// this slot (even steps) and `alt` (odd steps): see [`GpuNetwork::list_slot`].
    list: Option<(Buf, usize)>,
    alt: usize,
    /// `Linear` readouts: the output their projections sum into.
    output: Option<Buf>,
    drives: Vec<(usize, Buf)>,
    /// Per input: nothing delivers into it, so it holds its drives (or zeros) from the
    /// build on, as on the CPU (`fixed_inputs`): uploaded once, never written per step
    /// (`drives` holds the drives of the other inputs).
    fixed: Vec<bool>,
    /// Its step reads the device's clock (`PtxKernel::clocked`).
    clocked: bool,
    /// Where its step records its spikes as bits ([`GpuNetwork::record_spikes`]): per
    /// step of a window and batch element, `words` u32 words.
    rec: Option<Buf>,
    words: usize,
    /// This population's non-finite flag within a step's flags.
    flag: usize,
    seed: u64,
}

impl DevProj {
    /// Whether a kernel of its stage or plasticity reads the device's clock.
    fn clocked(&self) -> bool {
        self.stage.as_ref().is_some_and(|s| s.clocked()) || self.plastic.as_ref().is_some_and(|p| p.clocked())
    }
}

impl DevPop {
    /// The inputs a step sums into (not the fixed ones).
    fn accumulated_inputs(&self) -> impl Iterator<Item = Buf> + '_ {
        self.inputs.iter().enumerate().filter(|(k, _)| !self.fixed.get(*k).copied().unwrap_or(false)).map(|(_, b)| *b)
    }
}

enum DevWeights {
    Dense(Buf),
    Sparse { row_ptr: Buf, col: Buf, w: Buf },
    OneToOne(Buf),
}

impl DevWeights {
    /// The buffer of the weights' values (a sparse projection's in CSR order).
    fn values(&self) -> Buf {
        match *self {
            DevWeights::Dense(w) | DevWeights::OneToOne(w) | DevWeights::Sparse { w, .. } => w,
        }
    }
}

/// A projection's low-rank adapter (`adapter rank R`) on the device: U (I x R) and
/// V (R x O), row-major, and x U of the step (B x R).
struct DevAdapter {
    u: Buf,
    v: Buf,
    rank: usize,
    xu: Buf,
}

struct DevProj {
    weights: DevWeights,
    /// The low-rank term added to what the weights deliver: `(x U) V`.
    adapter: Option<DevAdapter>,
    /// Sparse projections from non-spiking sources compact their source themselves.
    own_list: Option<(Buf, usize)>,
    ring: Vec<Buf>,
    n_pre: usize,
    n_post: usize,
    /// The flag of a stage's or plastic projection's check that its source sends 0 or 1.
    check: Option<usize>,
    /// Its presynaptic stage (short-term plasticity), if any.
    stage: Option<DevStage>,
    /// Its plasticity (STDP), if any.
    plastic: Option<DevPlastic>,
}

/// What a flag of a step's status reports, in the order the CPU would meet it.
#[derive(Clone, Copy, Debug)]
enum FlagAt {
    /// A population's non-finite state.
    Pop(usize),
    /// A projection's source sending something other than 0 or 1 to its stage or rules.
    Source(usize),
    /// A plastic projection's weight made non-finite by its `on pre` (false) or
    /// `on post` (true) rule.
    Rule(usize, bool),
}

/// A network on a device (see the module doc).
pub struct GpuNetwork<T: 'static, D> {
    /// The host view: structure and counters always; spikes and states after `sync`.
    pub host: Network<T>,
    /// The device, counting the calls made to it ([`GpuNetwork::counts`]).
    pub dev: Counted<D>,
    prop: ModId,
    /// The external inputs [`GpuNetwork::step`] uploads into.
    ext: Vec<Buf>,
    /// What this step's projections read as external inputs: `ext`, or the views a
    /// caller gives [`GpuNetwork::step_on`] (a window's inputs, uploaded at once).
    cur_ext: Vec<Buf>,
    pops: Vec<DevPop>,
    projs: Vec<DevProj>,
    /// This step's spike-list lengths (batch per count slot).
    lens: Buf,
    count_slots: usize,
    /// The window's spike totals (as `lens`), then per step of the window one
    /// non-finite flag per population with a step: read back once per window.
    status: Buf,
    n_flags: usize,
    /// Every flag of a step: what it reports and its slot, in the CPU's order.
    flag_order: Vec<(FlagAt, usize)>,
    window: usize,
    /// Steps since the last read-back.
    pending: usize,
    /// The populations' inputs and readout outputs, written per step without clearing.
    acc: Accumulators,
    /// The step index on the device (one f64), which the population steps that draw
    /// random numbers or read the time read (`PtxKernel::clocked`), and each step's last
    /// call advances ([`prop::TICK`]) when there is one.
    clock: Buf,
    /// Some kernel reads the clock: each step ends with [`prop::TICK`].
    ticks: bool,
    /// Recorded simulation windows ([`GpuNetwork::run`]) by what decides their calls,
    /// with what the host knows of the accumulation buffers after one.
    graphs: HashMap<RunKey, (GraphId, Vec<(usize, u8)>)>,
    /// Why simulation windows stopped being recorded, if the device refused one.
    graphs_off: Option<String>,
    /// The step a failure interrupted (its calls half made), until a reset.
    broken: Option<u64>,
    /// Counts the changes of buffers or kernels a recorded window holds (a new status
    /// buffer, recording kernels): recordings of an older generation are not replayed.
    generation: u64,
    /// The population steps record their spikes ([`GpuNetwork::record_spikes`]).
    recording: bool,
    /// The records are read back (inside [`Simulation::advance_recorded`]).
    collecting: bool,
    /// The step whose status reported the last failure (what the recorder may not see).
    failed_at: Option<u64>,
    /// The spikes recorded on the device, read back with each window's status inside
    /// [`Simulation::advance_recorded`] (empty outside it).
    recorded: Vec<RecordedStep<T>>,
    /// The states recorded on the device ([`GpuNetwork::record_states`]): (population,
    /// state, a window of its values: step after step, batch x N each).
    state_recs: Vec<(usize, usize, Buf)>,
    /// Every state record made: (population, state, window, buffer), reused.
    state_rec_bufs: Vec<(usize, usize, usize, Buf)>,
    /// A window of external inputs staged on the device ([`GpuNetwork::run_fed`]),
    /// made at its first use.
    fed: Option<Fed<T>>,
    id: u64,
}

/// External inputs of up to a window of steps: on the device (one buffer per input,
/// its per-step views) and their host staging.
struct Fed<T> {
    /// The status window it was made for, and the steps it holds (the window, fewer
    /// where their inputs would pass [`FED_BYTES`]).
    window: usize,
    len: usize,
    bufs: Vec<Buf>,
    /// Per step of the window, per input.
    views: Vec<Vec<Buf>>,
    /// Per input: the window's values (window x batch x size), and one step's.
    host: Vec<Vec<T>>,
    step: Vec<Vec<T>>,
}

/// The spikes of one step, recorded on the device ([`GpuNetwork::record_spikes`]), and
/// the recorded states.
struct RecordedStep<T> {
    /// The step's index (the network's `step_index` before it).
    step: u64,
    /// Per population (empty for one without spikes), per batch element: the indices of
    /// the neurons that spiked, ascending.
    active: Vec<Vec<Vec<u32>>>,
    /// Per recorded state (`GpuNetwork::state_recs`' order): its values after the step.
    states: Vec<Vec<T>>,
}

/// The most bytes a window's state records may take on the device; past it, recorded
/// states are read back step by step ([`GpuNetwork::record_states`]).
const STATE_RECORD_BYTES: usize = 512 << 20;

/// The most bytes of external inputs staged at once ([`GpuNetwork::run_fed`]; as the
/// training window's staging): a larger input is fed fewer steps at a time.
const FED_BYTES: usize = 64 << 20;

/// At most this many recorded simulation windows (phases of the rings, times the states
/// of the accumulation buffers a window starts from).
const RUN_GRAPHS: usize = 16;

/// What decides the calls of a simulation window that starts a status window: where
/// each delay ring stands (the step modulo the rings' common period) and what the host
/// knows of the accumulation buffers.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RunKey {
    phase: u64,
    acc: Vec<(usize, u8)>,
    /// The steps read external inputs from the fed window's slots (`run_fed`).
    fed: bool,
}

/// The scalar arguments that follow a step kernel's buffers: element count, time and
/// the random stream (seed, step, and the index of the first element in the whole
/// batch: nonzero for a network holding elements b0.. of a larger batch, as the CPU's
/// `batch_offset`).
pub(crate) fn step_scalars(len: usize, t: f64, seed: u64, step: u64, offset: u64) -> [KArg; 5] {
    [KArg::U64(len as u64), KArg::F64(t), KArg::U64(seed), KArg::U64(step), KArg::U64(offset)]
}

/// The step kernel of a population as the device runs it: it checks the states it
/// writes, clears the inputs deliveries sum into, lists its spikes (and, with `record`,
/// records them as bits), and reads its step from the device's clock where it draws
/// random numbers or reads the time.
fn population_kernel<T: Float>(pop: &crate::network::Population<T>, step: &snnc_compiler::discretise::Step, target: snnc_compiler::backend::ptx::Target, dt: f64, record: bool) -> Result<snnc_compiler::backend::ptx::PtxKernel, RuntimeError> {
    let consumed: Vec<bool> = pop.fixed_inputs.iter().map(|f| !f).collect();
    let k = compile_checked_step(step, &pop.specs, T::PRECISION, target)
        .map_err(|e| RuntimeError::Build(format!("population `{}`: {e}", pop.name)))?
        .consuming(&consumed)
        .listing();
    let k = if record { k.recording() } else { k };
    Ok(if k.reads_step() { k.clocked(dt) } else { k })
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// A process-wide identity for each [`GpuNetwork`], so that state made for one (a
/// [`GpuGradient`]) refuses to run with another.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn dev_err(e: DeviceError) -> RuntimeError {
    RuntimeError::Build(format!("GPU: {e}"))
}

fn u32_index(n: usize, what: &str) -> Result<(), RuntimeError> {
    if n >= u32::MAX as usize {
        return Err(RuntimeError::Build(format!("{what} has {n} entries; the GPU kernels index with 32 bits")));
    }
    Ok(())
}

impl<T: Float, D: Device> GpuNetwork<T, D> {
    /// Moves `host` to `dev` (built with [`Network::without_kernels`]; a network with CPU
    /// kernels works too, and they stay unused).
    pub fn new(host: Network<T>, dev: D) -> Result<GpuNetwork<T, D>, RuntimeError> {
        crate::sends::refuse_on_device(&host)?;
        if let Some(pr) = host.projs.iter().find(|pr| pr.batch_norm.is_some()) {
            return Err(RuntimeError::Build(format!(
                "projection `{}` has `batch_norm`: the CUDA backend does not normalise a projection's current; run it on the CPU (--backend jit)",
                pr.name
            )));
        }
        // A part of a partitioned network steps with the other parts (`partition.rs`).
        if let Some(part) = host.part() {
            return Err(RuntimeError::Build(format!(
                "E0702: network `{}` is part {} of {} of a simulation partitioned over MPI ranks: the GPU backend runs a whole network; run the parts on the CPU",
                host.name,
                part.rank + 1,
                part.size
            )));
        }
        let mut dev = Counted::new(dev);
        let batch = host.batch;
        if batch > 65535 {
            return Err(RuntimeError::Build(format!("batch {batch}: the GPU backend runs at most 65535 batch elements")));
        }
        // A `conv` / `pool` projection runs as the sparse projection it is: its kernel
        // stays on the host, which writes it into the synapses' weights (conv.rs);
        // `set_trainable` uploads those.
        let target = dev.target();
        let prop = dev.load(&Module::Propagate(T::PRECISION, target)).map_err(dev_err)?;
        let mut ext = Vec::new();
        for (name, size) in &host.inputs {
            ext.push(dev.alloc(Elem::float(T::PRECISION), size * batch, &format!("input {name}")).map_err(dev_err)?);
        }
        let mut pops = Vec::new();
        let mut count_slots = 0;
        let mut n_flags = 0;
        let fe = Elem::float(T::PRECISION);
        for pop in &host.pops {
            let len = pop.n * batch;
            u32_index(len, &format!("population `{}`", pop.name))?;
            let alloc = |dev: &mut D, what: &str| dev.alloc(Elem::float(T::PRECISION), len, &format!("{}.{what}", pop.name));
            let upload = |dev: &mut D, what: &str, v: &[T]| -> Result<Buf, DeviceError> {
                let b = alloc(dev, what)?;
                dev.upload(b, T::host(v))?;
                Ok(b)
            };
            let mut dp = DevPop {
                module: None,
                args: Vec::new(),
                states: Vec::new(),
                inputs: Vec::new(),
                params: Vec::new(),
                spikes: None,
                list: None,
                output: None,
                drives: Vec::new(),
                fixed: pop.fixed_inputs.clone(),
                clocked: false,
                rec: None,
                words: pop.n.div_ceil(32),
                alt: 0,
                flag: n_flags,
                seed: host.seed ^ u64::from(stream_id(&pop.name)),
            };
            let Some(step) = &pop.step else {
                dp.output = Some(alloc(&mut dev, "output").map_err(dev_err)?);
                pops.push(dp);
                continue;
            };
            let k = population_kernel(pop, step, target, host.dt, false)?;
            dp.clocked = k.clocked;
            // One allocation for the states: the step's flag names an element of it.
            let block_len = len * pop.states.len();
            if block_len > prop::FLAG_INDEX_MAX as usize {
                return Err(RuntimeError::Build(format!(
                    "population `{}`: {} states x {} neurons x batch {batch} exceed the {} elements a GPU population may hold",
                    pop.name,
                    pop.states.len(),
                    pop.n,
                    prop::FLAG_INDEX_MAX
                )));
            }
            let block = dev.alloc(fe, block_len, &format!("{}.states", pop.name)).map_err(dev_err)?;
            for (k, s) in pop.states.iter().enumerate() {
                let view = dev.view(block, k * len, len, &format!("{}.{}", pop.name, pop.state_names[k])).map_err(dev_err)?;
                dev.upload(view, T::host(s)).map_err(dev_err)?;
                dp.states.push(view);
            }
            for (k, name) in pop.input_names.iter().enumerate() {
                let b = match pop.fixed_inputs.get(k) {
                    Some(true) => upload(&mut dev, name, &pop.inputs[k]),
                    _ => alloc(&mut dev, name),
                };
                dp.inputs.push(b.map_err(dev_err)?);
            }
            for (i, v) in pop.per_neuron_params.iter().enumerate() {
                dp.params.push(upload(&mut dev, &format!("param{i}"), v).map_err(dev_err)?);
            }
            if !pop.spikes.is_empty() {
                dp.spikes = Some(alloc(&mut dev, "spikes").map_err(dev_err)?);
                let list = dev.alloc(Elem::U32, len, &format!("{}.spike_list", pop.name)).map_err(dev_err)?;
                dp.list = Some((list, count_slots));
                count_slots += 1;
            }
            for a in &k.args {
                dp.args.push(match a.role {
                    Role::State(i) => dp.states[i],
                    Role::Input(i) => dp.inputs[i],
                    Role::Param(i) => dp.params[i],
                    Role::Spike => dp.spikes.expect("a spiking kernel has a spike buffer"),
                    r => return Err(RuntimeError::Build(format!("population `{}`: kernel argument {r:?} is not supported on the GPU", pop.name))),
                });
            }
            // (A fixed input holds its drives already.)
            for (i, (idx, v)) in pop.drives.iter().enumerate().filter(|(_, (idx, _))| !pop.fixed_inputs[*idx]) {
                dp.drives.push((*idx, upload(&mut dev, &format!("drive{i}"), v).map_err(dev_err)?));
            }
            dp.module = Some(dev.load(&Module::Step(Box::new(k))).map_err(dev_err)?);
            n_flags += 1;
            pops.push(dp);
        }
        let mut projs = Vec::new();
        for pr in &host.projs {
            if pr.syn_delay.is_some() {
                return Err(RuntimeError::Build(format!("projection `{}`: a delay per synapse is not supported on the GPU yet (it runs on the CPU)", pr.name)));
            }
            let n_pre = match pr.from {
                Source::Input(i) => host.inputs[i].1,
                Source::Pop(q) => host.pops[q].n,
            };
            let n_post = host.pops[pr.to].n;
            let fe = Elem::float(T::PRECISION);
            let label = |what: &str| format!("{}.{what}", pr.name);
            let upload = |dev: &mut D, elem: Elem, what: &str, h: Host<'_>| -> Result<Buf, DeviceError> {
                let b = dev.alloc(elem, h.len(), &label(what))?;
                dev.upload(b, h)?;
                Ok(b)
            };
            let mut own_list = None;
            let weights = match &pr.weights {
                Weights::Dense(w) => {
                    let w = w.as_standard_layout();
                    DevWeights::Dense(upload(&mut dev, fe, "w", T::host(w.as_slice().expect("standard layout"))).map_err(dev_err)?)
                }
                Weights::Sparse(rows) => {
                    u32_index(rows.col.len(), &format!("projection `{}`", pr.name))?;
                    let row_ptr: Vec<u32> = rows.row_ptr.iter().map(|&r| r as u32).collect();
                    // A plastic projection delivers the spikes arriving now, a gated stage
                    // its value for every source: they list what they deliver.
                    let own = pr.plastic.is_some() || pr.pre_stage.as_ref().is_some_and(|s| s.is_gated());
                    let spiking_source = !own && pr.from_state.is_none() && matches!(pr.from, Source::Pop(q) if !host.pops[q].spikes.is_empty());
                    if !spiking_source {
                        let list = dev.alloc(Elem::U32, n_pre * batch, &label("active")).map_err(dev_err)?;
                        own_list = Some((list, count_slots));
                        count_slots += 1;
                    }
                    DevWeights::Sparse {
                        row_ptr: upload(&mut dev, Elem::U32, "row_ptr", Host::U32(&row_ptr)).map_err(dev_err)?,
                        col: upload(&mut dev, Elem::U32, "col", Host::U32(&rows.col)).map_err(dev_err)?,
                        w: upload(&mut dev, fe, "w", T::host(rows.weight())).map_err(dev_err)?,
                    }
                }
                Weights::OneToOne(w) => DevWeights::OneToOne(upload(&mut dev, fe, "w", T::host(w)).map_err(dev_err)?),
                Weights::Procedural(_) => {
                    return Err(RuntimeError::Build(format!("`{}` is procedural: the CUDA backend does not regenerate connectivity yet; run it on the CPU backend, or store it (`sparse p = ...`)", pr.name)));
                }
            };
            let mut ring = Vec::new();
            if let Some(r) = &pr.delay {
                for s in 0..=r.delay() {
                    ring.push(dev.alloc(fe, batch * n_post, &label(&format!("delay{s}"))).map_err(dev_err)?);
                }
            }
            let adapter = match &pr.adapter {
                Some(a) => {
                    let (u, v) = (a.u.as_standard_layout(), a.v.as_standard_layout());
                    Some(DevAdapter {
                        u: upload(&mut dev, fe, "U", T::host(u.as_slice().expect("standard layout"))).map_err(dev_err)?,
                        v: upload(&mut dev, fe, "V", T::host(v.as_slice().expect("standard layout"))).map_err(dev_err)?,
                        rank: a.rank(),
                        xu: dev.alloc(fe, batch * a.rank(), &label("xU")).map_err(dev_err)?,
                    })
                }
                None => None,
            };
            projs.push(DevProj { weights, adapter, own_list, ring, n_pre, n_post, check: None, stage: None, plastic: None });
        }
        // The second count of each population's list, after every other slot (the
        // spike totals keep the first slot's index).
        let mut slots = count_slots;
        for dp in pops.iter_mut().filter(|dp| dp.list.is_some()) {
            dp.alt = slots;
            slots += 1;
        }
        let lens = dev.alloc(Elem::U32, slots * batch, "lens").map_err(dev_err)?;
        // A window's spike totals fit 32 bits.
        let largest = host.pops.iter().map(|p| p.n).max().unwrap_or(1).max(1);
        let window = DEFAULT_WINDOW.min((u32::MAX as usize / largest).max(1));
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cur_ext = ext.clone();
        let mut acc = Accumulators::default();
        acc.track(pops.iter().flat_map(|d: &DevPop| d.accumulated_inputs().chain(d.output)));
        // The status is allocated once every flag is known.
        let status = lens;
        let clock = dev.alloc(Elem::F64, 1, "clock").map_err(dev_err)?;
        let (graphs, graphs_off) = (HashMap::new(), None);
        let mut net = GpuNetwork { host, dev, prop, ext, cur_ext, pops, projs, lens, count_slots, status, n_flags, flag_order: Vec::new(), window, pending: 0, acc, clock, ticks: false, graphs, graphs_off, broken: None, generation: 0, recording: false, collecting: false, failed_at: None, recorded: Vec::new(), state_recs: Vec::new(), state_rec_bufs: Vec::new(), fed: None, id };
        net.build_plasticity(&mut n_flags)?;
        net.ticks = net.pops.iter().any(|dp| dp.clocked) || net.projs.iter().any(|p| p.clocked());
        net.n_flags = n_flags;
        // The CPU's order: per population its projections' stages (sources), then its step;
        // the plastic projections' rules at the end of the step.
        for (p, dp) in net.pops.iter().enumerate() {
            for (pi, pr) in net.projs.iter().enumerate().filter(|(pi, _)| net.host.projs[*pi].to == p) {
                net.flag_order.extend(pr.check.map(|f| (FlagAt::Source(pi), f)));
            }
            if dp.module.is_some() {
                net.flag_order.push((FlagAt::Pop(p), dp.flag));
            }
        }
        for (pi, pr) in net.projs.iter().enumerate() {
            net.flag_order.extend(pr.plastic.iter().flat_map(|pl| pl.flags()).map(|(post, f)| (FlagAt::Rule(pi, post), f)));
        }
        net.status = net.dev.alloc(Elem::U32, count_slots * batch + window * n_flags, "status").map_err(dev_err)?;
        Ok(net)
    }

    /// Steps between status read-backs (spike totals, non-finite flags): at least 1. A
    /// spike total must fit 32 bits, so a window is at most 2^32 / (the largest
    /// population) steps.
    pub fn set_window(&mut self, steps: usize) -> Result<(), RuntimeError> {
        let largest = self.host.pops.iter().map(|p| p.n).max().unwrap_or(1).max(1);
        let most = (u32::MAX as usize / largest).max(1);
        if steps == 0 || steps > most {
            return Err(RuntimeError::Input(format!("a GPU window of {steps} steps: it must be 1 to {most} steps for these populations")));
        }
        self.flush()?;
        // Every buffer of the new size first: a failed allocation changes nothing.
        let len = self.count_slots * self.host.batch + steps * self.n_flags;
        let status = self.dev.alloc(Elem::U32, len, "status").map_err(dev_err)?;
        let recs: Vec<Option<Buf>> = (0..self.pops.len()).map(|p| self.pops[p].rec.map(|_| self.alloc_record(p, steps)).transpose()).collect::<Result<_, _>>()?;
        // Recorded states keep being recorded where their records for the new window fit
        // (else none are: the next `record_states` says so).
        let which: Vec<(usize, usize)> = self.state_recs.iter().map(|&(p, k, _)| (p, k)).collect();
        let state_recs = if self.state_records_fit(&which, steps) { self.alloc_state_records(&which, steps)? } else { Vec::new() };
        self.status = status;
        self.window = steps;
        for (dp, rec) in self.pops.iter_mut().zip(recs) {
            dp.rec = rec;
        }
        self.state_recs = state_recs;
        self.renew();
        Ok(())
    }

    /// From now on the populations' steps record their spikes on the device, one bit
    /// per neuron, batch element and step of a window; inside
    /// [`Simulation::advance_recorded`] each window's records are read back with its
    /// status, so a recorder reads a window of steps at a time instead of synchronising
    /// every step. Their kernels are generated again (`PtxKernel::recording`).
    pub fn record_spikes(&mut self) -> Result<(), RuntimeError> {
        if self.recording {
            return Ok(());
        }
        self.flush()?;
        // Every kernel and record first: a failure changes nothing.
        let target = self.dev.target();
        let mut swaps = Vec::new();
        for p in 0..self.pops.len() {
            let (pop, dp) = (&self.host.pops[p], &self.pops[p]);
            let (Some(step), Some(_)) = (&pop.step, dp.list) else { continue };
            let k = population_kernel(pop, step, target, self.host.dt, true)?;
            let module = self.dev.load(&Module::Step(Box::new(k))).map_err(dev_err)?;
            swaps.push((p, module, self.alloc_record(p, self.window)?));
        }
        for (p, module, rec) in swaps {
            self.pops[p].module = Some(module);
            self.pops[p].rec = Some(rec);
        }
        self.recording = true;
        self.renew();
        Ok(())
    }

    /// From now on the steps record the states `which` names ((population, state)
    /// pairs; none: no recording) on the device, a window of steps at a time: each
    /// population's step is followed by a copy of each of its recorded states into this
    /// step's slot of a window's record, read back with the window's status inside
    /// [`Simulation::advance_recorded`]. False, and nothing recorded, where a window's
    /// records would take more than [`STATE_RECORD_BYTES`] (the caller then reads the
    /// states step by step).
    pub fn record_states(&mut self, which: &[(usize, usize)]) -> Result<bool, RuntimeError> {
        if let Some(&(p, k)) = which.iter().find(|&&(p, k)| p >= self.pops.len() || k >= self.pops[p].states.len()) {
            return Err(RuntimeError::Input(format!("no state {k} of population {p} to record")));
        }
        if self.state_recs.iter().map(|&(p, k, _)| (p, k)).eq(which.iter().copied()) {
            return Ok(true);
        }
        let fits = self.state_records_fit(which, self.window);
        if !fits && self.state_recs.is_empty() {
            return Ok(false);
        }
        self.flush()?;
        self.state_recs = if fits { self.alloc_state_records(which, self.window)? } else { Vec::new() };
        self.renew();
        Ok(fits)
    }

    /// Whether records of `which` for windows of `window` steps stay within
    /// [`STATE_RECORD_BYTES`].
    fn state_records_fit(&self, which: &[(usize, usize)], window: usize) -> bool {
        let per_step: usize = which.iter().map(|&(p, _)| self.host.pops[p].n * self.host.batch * std::mem::size_of::<T>()).sum();
        per_step.saturating_mul(window) <= STATE_RECORD_BYTES
    }

    /// State records of `which` for windows of `window` steps: those made before for
    /// the same state and window again (the device has no free), new ones for the rest.
    fn alloc_state_records(&mut self, which: &[(usize, usize)], window: usize) -> Result<Vec<(usize, usize, Buf)>, RuntimeError> {
        let fe = Elem::float(T::PRECISION);
        let mut recs = Vec::with_capacity(which.len());
        for &(p, k) in which {
            let made = self.state_rec_bufs.iter().find(|&&(q, j, w, _)| (q, j, w) == (p, k, window)).map(|&(.., b)| b);
            let b = match made {
                Some(b) => b,
                None => {
                    let (pop, batch) = (&self.host.pops[p], self.host.batch);
                    let name = format!("{}.{}_record", pop.name, pop.state_names[k]);
                    let b = self.dev.alloc(fe, window * batch * pop.n, &name).map_err(dev_err)?;
                    self.state_rec_bufs.push((p, k, window, b));
                    b
                }
            };
            recs.push((p, k, b));
        }
        Ok(recs)
    }

    /// A spike record of population `p` for windows of `window` steps.
    fn alloc_record(&mut self, p: usize, window: usize) -> Result<Buf, RuntimeError> {
        let len = window * self.host.batch * self.pops[p].words;
        let name = format!("{}.spike_record", self.host.pops[p].name);
        self.dev.alloc(Elem::U32, len, &name).map_err(dev_err)
    }

    /// Reads the spike records of the window's `pending` steps (from `first_step`) into
    /// [`GpuNetwork::take_recorded`]'s list.
    fn read_records(&mut self, first_step: u64, pending: usize) -> Result<(), RuntimeError> {
        if !self.collecting {
            return Ok(());
        }
        let batch = self.host.batch;
        let mut steps: Vec<RecordedStep<T>> = (0..pending).map(|s| RecordedStep { step: first_step + s as u64, active: vec![Vec::new(); self.pops.len()], states: Vec::new() }).collect();
        for &(p, _, rec) in &self.state_recs {
            let len = batch * self.host.pops[p].n;
            let mut values = vec![T::default(); self.window * len];
            self.dev.download(rec, T::host_mut(&mut values)).map_err(dev_err)?;
            for (st, v) in steps.iter_mut().zip(values.chunks_exact(len)) {
                st.states.push(v.to_vec());
            }
        }
        for (p, dp) in self.pops.iter().enumerate() {
            let Some(rec) = dp.rec else { continue };
            let mut bits = vec![0u32; self.window * batch * dp.words];
            self.dev.download(rec, HostMut::U32(&mut bits)).map_err(dev_err)?;
            let n = self.host.pops[p].n;
            for (s, st) in steps.iter_mut().enumerate() {
                st.active[p] = (0..batch)
                    .map(|b| {
                        let row = &bits[(s * batch + b) * dp.words..][..dp.words];
                        let mut set = Vec::new();
                        // Spikes are rare: skip empty words, then each set bit.
                        for (w, &x) in row.iter().enumerate().filter(|(_, x)| **x != 0) {
                            let mut x = x;
                            while x != 0 {
                                set.push((w * 32) as u32 + x.trailing_zeros());
                                x &= x - 1;
                            }
                        }
                        set.retain(|&j| (j as usize) < n);
                        set
                    })
                    .collect();
            }
        }
        self.recorded.extend(steps);
        Ok(())
    }

    /// The steps whose spikes were recorded and read back since the last call, in order.
    fn take_recorded(&mut self) -> Vec<RecordedStep<T>> {
        std::mem::take(&mut self.recorded)
    }

    /// After a change of the buffers or kernels a recorded window holds: no recording
    /// made before is replayed (the simulation's are dropped, the training's keyed by
    /// the generation).
    fn renew(&mut self) {
        self.generation += 1;
        self.graphs.clear();
    }

    /// See the field: what a recorded window's key must hold.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Steps between status read-backs.
    pub fn window(&self) -> usize {
        self.window
    }

    /// The device calls made so far (see [`Counts`]).
    pub fn counts(&self) -> Counts {
        self.dev.counts
    }

    fn launch(&mut self, entry: &'static str, grid: (u32, u32), block: u32, args: &[KArg]) -> Result<(), RuntimeError> {
        self.dev.launch(self.prop, entry, grid, block, args).map_err(dev_err)
    }

    /// Grid of an element-wise kernel over `len` elements.
    fn flat(len: usize) -> (u32, u32) {
        (launch_config(len as u64, BLOCK).0, 1)
    }

    /// Advances one step (see the module doc); `external` as for [`Network::step`]
    /// (uploaded into the network's input buffers).
    pub fn step(&mut self, external: &[&[T]]) -> Result<(), RuntimeError> {
        let batch = self.host.batch;
        if external.len() != self.host.inputs.len() {
            return Err(RuntimeError::Input(format!("{} external inputs given, the network has {}", external.len(), self.host.inputs.len())));
        }
        for ((x, (name, size)), buf) in external.iter().zip(&self.host.inputs).zip(&self.ext) {
            if x.len() != size * batch {
                return Err(RuntimeError::Input(format!("input `{name}` needs {} values per step ({} x batch {}), got {}", size * batch, size, batch, x.len())));
            }
            self.dev.upload(*buf, T::host(x)).map_err(dev_err)?;
        }
        let ext = std::mem::take(&mut self.ext);
        let r = self.step_on(&ext);
        self.ext = ext;
        r
    }

    /// Advances one step reading external input `i` from device buffer `ext[i]` (B x
    /// size, e.g. a view of a window's inputs uploaded at once): no host transfer, unless
    /// the step ends a window ([`GpuNetwork::flush`]).
    pub fn step_on(&mut self, ext: &[Buf]) -> Result<(), RuntimeError> {
        self.step_deferred(ext)?;
        if self.window_full() {
            self.flush()?;
        }
        Ok(())
    }

    /// What the host knows of the device's state at a window's start that decides the
    /// calls of its steps (a recorded window replays only where this is equal): the step
    /// index, the steps not yet read back, the accumulation buffers.
    pub(crate) fn window_state(&self) -> (u64, usize, Vec<(usize, u8)>) {
        (self.host.step_index, self.pending, self.acc.snapshot())
    }

    /// Back to a [`GpuNetwork::window_state`] (a recording the device refused: the
    /// calls made into it did not run).
    pub(crate) fn restore_window_state(&mut self, (step, pending, acc): &(u64, usize, Vec<(usize, u8)>)) {
        // Nothing of a refused recording ran, and none starts from a step left half made
        // (`check_whole`): none is now.
        self.broken = None;
        self.host.step_index = *step;
        self.pending = *pending;
        self.acc.restore(acc);
    }

    /// The host's view after replaying `steps` recorded steps: what running them would
    /// have left (`acc` as it was after the recording).
    pub(crate) fn fast_forward(&mut self, steps: usize, acc: &[(usize, u8)]) {
        self.host.step_index += steps as u64;
        self.pending += steps;
        self.acc.restore(acc);
    }

    /// Advances `steps` steps of a network without external inputs, as that many
    /// [`GpuNetwork::step`]s would, but a whole status window at a time where it can: the
    /// window's calls are recorded as a graph the first time it starts from a given
    /// phase (where the delay rings stand, what the accumulation buffers hold) and
    /// replayed after that (its steps read their step from the device's clock), so a
    /// window costs one host call and its status read-back. Windows run call by call,
    /// with the same results, where the rings have too many phases, once
    /// [`RUN_GRAPHS`] windows are kept (a window of another start runs call by call),
    /// and once the device refuses to record one ([`GpuNetwork::graphs_off`]). A network
    /// with external inputs is refused (step it with them, or feed it a window at a
    /// time: [`GpuNetwork::run_fed`]).
    pub fn run(&mut self, steps: u64) -> Result<(), RuntimeError> {
        self.check_whole()?;
        if let Some((name, _)) = self.host.inputs.first() {
            return Err(RuntimeError::Input(format!("the network reads input `{name}`: step it with its inputs (GpuNetwork::step)")));
        }
        let mut left = steps;
        while left > 0 {
            let w = self.window as u64;
            if self.pending == 0 && left >= w && self.replayable() {
                self.run_window(&[])?;
                left -= w;
            } else {
                self.step(&[])?;
                left -= 1;
            }
        }
        Ok(())
    }

    /// Advances `steps` steps of a network with external inputs, `fill(step, x)` writing
    /// network step `step`'s inputs (`x[i]`: batch x size of input `i`): the steps up to
    /// the end of the status window are filled on the host at once, uploaded in one copy
    /// per input, and made reading their slice: no transfer or synchronisation per step,
    /// and a whole window recorded as a graph the first time it starts from a given
    /// phase and replayed after that, as [`GpuNetwork::run`]'s.
    pub fn run_fed(&mut self, steps: u64, fill: &mut crate::engine::FillInputs<'_, T>) -> Result<(), RuntimeError> {
        self.check_whole()?;
        let mut left = steps;
        while left > 0 {
            if self.window_full() {
                self.flush()?;
            }
            let most = self.fed_slots()?;
            let n = left.min((self.window - self.pending).min(most) as u64) as usize;
            self.stage_inputs(n, fill)?;
            let views = self.fed.as_ref().map(|f| f.views[..n].to_vec()).expect("staged");
            if n == self.window && self.replayable() {
                // A whole window: recorded once, replayed after that (`run_window`).
                self.run_window(&views)?;
            } else {
                for x in &views {
                    self.step_deferred(x)?;
                }
            }
            left -= n as u64;
        }
        if self.window_full() {
            self.flush()?;
        }
        Ok(())
    }

    /// The steps of inputs the fed window holds ([`Fed`]), made (for this status
    /// window) where it is not yet. (The device has no free: a window made for an
    /// earlier status window stays allocated.)
    fn fed_slots(&mut self) -> Result<usize, RuntimeError> {
        if let Some(f) = self.fed.as_ref().filter(|f| f.window == self.window) {
            return Ok(f.len);
        }
        let batch = self.host.batch;
        let per_step = batch * self.host.inputs.iter().map(|(_, size)| size).sum::<usize>() * std::mem::size_of::<T>();
        let len = self.window.min((FED_BYTES / per_step.max(1)).max(1));
        let fe = Elem::float(T::PRECISION);
        let (mut bufs, mut views) = (Vec::new(), vec![Vec::new(); len]);
        for (name, size) in &self.host.inputs {
            let plane = batch * size;
            let b = self.dev.alloc(fe, len * plane, &format!("fed.{name}")).map_err(dev_err)?;
            for (s, v) in views.iter_mut().enumerate() {
                v.push(self.dev.view(b, s * plane, plane, &format!("fed.{name}[{s}]")).map_err(dev_err)?);
            }
            bufs.push(b);
        }
        let host = self.host.inputs.iter().map(|(_, size)| vec![T::default(); len * batch * size]).collect();
        let step = self.host.inputs.iter().map(|(_, size)| vec![T::default(); batch * size]).collect();
        self.fed = Some(Fed { window: self.window, len, bufs, views, host, step });
        Ok(len)
    }

    /// The next `n` steps' inputs (at most [`GpuNetwork::fed_slots`]) filled on the host
    /// and uploaded: the whole window in one copy per input, fewer steps slot by slot.
    fn stage_inputs(&mut self, n: usize, fill: &mut crate::engine::FillInputs<'_, T>) -> Result<(), RuntimeError> {
        let first = self.host.step_index;
        let fed = self.fed.as_mut().expect("made by fed_slots");
        for k in 0..n {
            fill(first + k as u64, &mut fed.step)?;
            for (h, x) in fed.host.iter_mut().zip(&fed.step) {
                h[k * x.len()..(k + 1) * x.len()].copy_from_slice(x);
            }
        }
        if n == fed.len {
            for (b, h) in fed.bufs.iter().zip(&fed.host) {
                self.dev.upload(*b, T::host(h)).map_err(dev_err)?;
            }
        } else {
            for (k, views) in fed.views[..n].iter().enumerate() {
                for (v, h) in views.iter().zip(&fed.host) {
                    let plane = h.len() / fed.len;
                    self.dev.upload(*v, T::host(&h[k * plane..(k + 1) * plane])).map_err(dev_err)?;
                }
            }
        }
        Ok(())
    }

    /// Runs `steps` steps by `run` (the whole at once, or a window at a time where
    /// states are recorded, so that the host holds one window of them), showing each
    /// step's recorded spikes and `states` to `each` ([`Simulation::advance_recorded`]).
    fn run_shown(
        &mut self,
        steps: u64,
        states: &[(usize, usize)],
        each: &mut crate::engine::ShowStep<'_, T>,
        run: &mut dyn FnMut(&mut Self, u64) -> Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        if !self.record_states(states)? {
            // A window's records of these states would not fit: read step by step.
            for _ in 0..steps {
                run(self, 1)?;
                // (It reads the window's status first.)
                self.fetch_observed(true)?;
                each(&self.host)?;
            }
            return Ok(());
        }
        self.record_spikes()?;
        // Steps made before this call are not shown again: their window is read first
        // (records are read back only while `collecting`).
        self.flush()?;
        let mut left = steps;
        while left > 0 {
            let n = if self.state_recs.is_empty() { left } else { left.min(self.window as u64) };
            self.failed_at = None;
            self.collecting = true;
            let ran = run(self, n);
            let ran = ran.and(self.flush());
            self.collecting = false;
            // What ran is shown, a failure or not, up to the step whose status reported it
            // (the CPU stops there); then the host view is the last step's.
            let stop = self.failed_at.filter(|_| ran.is_err()).unwrap_or(u64::MAX);
            let now = self.host.step_index;
            let mut shown = Ok(());
            for st in self.take_recorded().into_iter().filter(|st| st.step < stop) {
                for (pop, active) in self.host.pops.iter_mut().zip(st.active) {
                    if !pop.spikes.is_empty() {
                        pop.active = active;
                    }
                }
                for (&(p, k, _), values) in self.state_recs.iter().zip(st.states) {
                    self.host.pops[p].states[k] = values;
                }
                self.host.step_index = st.step + 1;
                shown = each(&self.host);
                if shown.is_err() {
                    break;
                }
            }
            self.host.step_index = now;
            ran.and(shown)?;
            left -= n;
        }
        Ok(())
    }

    /// Why simulation windows stopped being recorded as graphs, if the device refused.
    pub fn graphs_off(&self) -> Option<&str> {
        self.graphs_off.as_deref()
    }

    /// Whether [`GpuNetwork::run`] may record and replay windows (see there).
    fn replayable(&self) -> bool {
        let period = self.ring_period();
        let phases = period / gcd(period, self.window as u64);
        self.graphs_off.is_none() && phases <= RUN_GRAPHS as u64
    }

    /// The steps after which every delay ring (the plastic projections' rings of spikes
    /// in flight too) and spike-list count is where it was (the least common multiple of
    /// the rings' lengths and 2).
    fn ring_period(&self) -> u64 {
        // The spike lists' counts alternate between two slots.
        let lists = if self.pops.iter().any(|p| p.list.is_some()) { 2 } else { 1 };
        let rings = self.projs.iter().flat_map(|p| [p.ring.len(), p.plastic.as_ref().map_or(0, |pl| pl.ring_len())]);
        rings.map(|l| l as u64).filter(|&l| l > 1).fold(lists, |a, l| (a / gcd(a, l)).saturating_mul(l))
    }

    /// One status window of [`GpuNetwork::run`], replayed or recorded, then read back.
    /// `inputs`: the external input buffers of each step (none: a network without
    /// inputs), the slots of the fed window (`run_fed`), whose values are uploaded
    /// before the window runs: a recording reads whatever they hold when replayed.
    fn run_window(&mut self, inputs: &[Vec<Buf>]) -> Result<(), RuntimeError> {
        let n = self.window;
        let ext = |k: usize| inputs.get(k).map_or(&[][..], Vec::as_slice);
        let key = RunKey { phase: self.host.step_index % self.ring_period(), acc: self.acc.snapshot(), fed: !inputs.is_empty() };
        if let Some((graph, acc)) = self.graphs.get(&key).cloned() {
            self.dev.replay(graph).map_err(dev_err)?;
            self.fast_forward(n, &acc);
            return self.flush();
        }
        if self.graphs.len() >= RUN_GRAPHS {
            // No room to keep another recording: this window call by call.
            for k in 0..n {
                self.step_deferred(ext(k))?;
            }
            return self.flush();
        }
        let start = self.window_state();
        let recorded = self.dev.begin_capture().map_err(dev_err).and_then(|()| {
            let steps = (0..n).try_for_each(|k| self.step_deferred(ext(k)));
            // A capture records without running: end it either way.
            let graph = self.dev.end_capture().map_err(dev_err);
            steps.and(graph)
        });
        match recorded.and_then(|graph| self.dev.replay(graph).map_err(dev_err).map(|()| graph)) {
            Ok(graph) => {
                self.graphs.insert(key, (graph, self.acc.snapshot()));
            }
            Err(e) => {
                // Nothing recorded ran: the host's view back, and the window call by call.
                self.restore_window_state(&start);
                self.graphs_off = Some(e.to_string());
                for k in 0..n {
                    self.step_deferred(ext(k))?;
                }
            }
        }
        self.flush()
    }

    /// Whether the window's status is full: the next step reads it back first.
    pub fn window_full(&self) -> bool {
        self.pending == self.window
    }

    /// [`GpuNetwork::step_on`] leaving the read-back of a full window to the caller (a
    /// training step queues its learning work first) or to the next step.
    pub(crate) fn step_deferred(&mut self, ext: &[Buf]) -> Result<(), RuntimeError> {
        self.check_whole()?;
        if self.window_full() {
            self.flush()?;
        }
        if ext.len() != self.host.inputs.len() {
            return Err(RuntimeError::Input(format!("{} external inputs given, the network has {}", ext.len(), self.host.inputs.len())));
        }
        self.cur_ext.clear();
        self.cur_ext.extend_from_slice(ext);
        if self.pending == 0 {
            // A new window: its totals, flags and spike records start at zero.
            self.dev.zero(self.status).map_err(dev_err)?;
            for rec in self.pops.iter().filter_map(|dp| dp.rec) {
                self.dev.zero(rec).map_err(dev_err)?;
            }
        }
        let step = self.host.step_index;
        // A step's calls are not repeatable once some ran (the spike lists append): a
        // failure in the middle leaves the network refusing to step until a reset.
        let r = self.step_calls(step);
        if r.is_err() {
            self.broken = Some(step);
        }
        r
    }

    /// Refuses to go on from a step a failure left half made (see `step_deferred`).
    pub(crate) fn check_whole(&self) -> Result<(), RuntimeError> {
        match self.broken {
            Some(step) => Err(RuntimeError::Input(format!(
                "the GPU network stopped in the middle of step {step} after an error: its state is no whole step's; reset it"
            ))),
            None => Ok(()),
        }
    }

    /// The calls of step `step` (see [`GpuNetwork::step_deferred`]).
    fn step_calls(&mut self, step: u64) -> Result<(), RuntimeError> {
        self.acc.next_step();
        let batch = self.host.batch;
        let t = self.host.time();
        let flags_at = self.count_slots * batch + self.pending * self.n_flags;
        for p in 0..self.pops.len() {
            self.gather(p, flags_at)?;
            let Some(module) = self.pops[p].module else { continue };
            let len = self.host.pops[p].n * batch;
            let dp = &self.pops[p];
            let mut args: Vec<KArg> = dp.args.iter().map(|b| KArg::Buf(*b)).collect();
            // Elements b0.. of a larger batch draw what the whole one would for them.
            let offset = (self.host.batch_offset * self.host.pops[p].n) as u64;
            args.extend(step_scalars(len, t, dp.seed, step, offset));
            // The step checks the states it writes (its flag of this step in the status),
            // and may read its step from the clock.
            args.extend([KArg::Buf(self.status), KArg::U64((flags_at + dp.flag) as u64)]);
            if dp.clocked {
                args.push(KArg::Buf(self.clock));
            }
            // It lists its spikes: appended at this step's count, the other one cleared.
            if let Some((list, slot)) = dp.list {
                let (n, now, other) = (self.host.pops[p].n, self.list_slot(p, step), self.list_slot(p, step + 1));
                args.extend([KArg::Buf(list), KArg::Buf(self.lens), KArg::Buf(self.status)]);
                args.extend([now * batch, other * batch, slot * batch, n].map(|v| KArg::U64(v as u64)));
            }
            // And records them: this step's rows of the window's record.
            if let Some(rec) = dp.rec {
                args.extend([KArg::Buf(rec), KArg::U64((self.pending * batch * dp.words) as u64), KArg::U64(dp.words as u64)]);
            }
            self.dev.launch(module, snnc_compiler::backend::ptx::STEP_ENTRY, Self::flat(len), BLOCK, &args).map_err(dev_err)?;
            // Its recorded states into this step's slot of their records.
            for r in 0..self.state_recs.len() {
                let (q, k, rec) = self.state_recs[r];
                if q == p {
                    let src = self.pops[p].states[k];
                    let at = [KArg::Buf(src), KArg::Buf(rec), KArg::U64((self.pending * len) as u64), KArg::U64(len as u64)];
                    self.launch(prop::COPY_AT, Self::flat(len), BLOCK, &at)?;
                }
            }
            let dp = &self.pops[p];
            // It left its accumulated inputs zero (`PtxKernel::consuming`).
            for b in dp.accumulated_inputs() {
                self.acc.cleared_one(b);
            }
        }
        self.plasticity(flags_at)?;
        if self.ticks {
            self.launch(prop::TICK, (1, 1), 1, &[KArg::Buf(self.clock)])?;
        }
        self.host.step_index += 1;
        self.pending += 1;
        Ok(())
    }

    /// The count slot of population `p`'s spike list as its step `step` left it.
    fn list_slot(&self, p: usize, step: u64) -> usize {
        let dp = &self.pops[p];
        let (_, slot) = dp.list.expect("a population with a spike list");
        if step % 2 == 0 { slot } else { dp.alt }
    }

    /// Lists the non-zero entries of `x` (`batch` rows of `n`) into `list` / count `slot`,
    /// adding them to the window's spike totals.
    fn compact(&mut self, x: Buf, list: Buf, slot: usize, n: usize) -> Result<(), RuntimeError> {
        let batch = self.host.batch;
        let clear = [KArg::Buf(self.lens), KArg::U64((slot * batch) as u64), KArg::U64(batch as u64)];
        self.launch(prop::CLEAR_U32, Self::flat(batch), BLOCK, &clear)?;
        let a = [KArg::Buf(x), KArg::Buf(list), KArg::Buf(self.lens), KArg::Buf(self.status), KArg::U64(slot as u64), KArg::U64(n as u64)];
        self.launch(prop::NONZERO_LIST, (launch_config(n as u64, BLOCK).0, batch as u32), BLOCK, &a)
    }

    /// Sums everything that arrives at population `p` this step into its inputs (the
    /// CPU's `gather_inputs`).
    fn gather(&mut self, p: usize, flags_at: usize) -> Result<(), RuntimeError> {
        let batch = self.host.batch;
        let len = self.host.pops[p].n * batch;
        let dp = &self.pops[p];
        let (inputs, output, drives) = (dp.inputs.clone(), dp.output, dp.drives.clone());
        let accumulated: Vec<Buf> = dp.accumulated_inputs().chain(output).collect();
        // The CPU's inputs hold their drives when a step starts (its kernel left them
        // so) and each projection adds into them: here each input's first write (a
        // drive's copy, or a delivery) overwrites it instead (`accumulate`). A fixed
        // input keeps its drives from the build on.
        for (idx, d) in drives {
            let entry = if self.acc.first_write(inputs[idx]) { prop::COPY } else { prop::ADD };
            self.launch(entry, Self::flat(len), BLOCK, &[KArg::Buf(d), KArg::Buf(inputs[idx]), KArg::U64(len as u64)])?;
        }
        let step = self.host.step_index as usize;
        let into: Vec<usize> = (0..self.projs.len()).filter(|&pi| self.host.projs[pi].to == p).collect();
        let mut k = 0;
        while k < into.len() {
            let pi = into[k];
            k += 1;
            // Two plain sparse projections in a row deliver in one launch.
            if let Some(&pj) = into.get(k)
                && output.is_none()
                && self.plain_events(pi)
                && self.plain_events(pj)
            {
                k += 1;
                self.events_pair(pi, pj, &inputs)?;
                continue;
            }
            let pr = &self.host.projs[pi];
            let target = match output {
                Some(o) => o,
                None => inputs[pr.input],
            };
            let (src, list) = self.source(pi);
            let (src, list) = self.presynaptic(pi, src, list, flags_at)?;
            let ring = &self.projs[pi].ring;
            let out = if ring.is_empty() { target } else { ring[(step + ring.len() - 1) % ring.len()] };
            let overwrite = if out == target && matches!(self.projs[pi].weights, DevWeights::Dense(_)) {
                self.acc.first_write(target)
            } else {
                if out == target {
                    self.acc.settle(&mut self.dev, target, true)?;
                }
                false
            };
            self.propagate(pi, src, list, out, overwrite)?;
            let ring = &self.projs[pi].ring;
            if !ring.is_empty() {
                // Slot (t + d) mod (d + 1) took this step's contributions; t mod (d + 1) arrives.
                let arrive = ring[step % ring.len()];
                let n = batch * self.projs[pi].n_post;
                self.acc.settle(&mut self.dev, target, true)?;
                self.launch(prop::ADD_CLEAR, Self::flat(n), BLOCK, &[KArg::Buf(arrive), KArg::Buf(target), KArg::U64(n as u64)])?;
            }
        }
        // What nothing wrote this step is read as zeros by the step.
        for &b in &accumulated {
            self.acc.settle(&mut self.dev, b, false)?;
        }
        Ok(())
    }

    /// Whether projection `pi` delivers as [`prop::SPARSE_EVENTS`] straight into its
    /// target's input, with nothing before or after: sparse weights from a spiking
    /// population's list, no delay, stage, plasticity or adapter.
    fn plain_events(&self, pi: usize) -> bool {
        let (pr, dp) = (&self.host.projs[pi], &self.projs[pi]);
        let listed = matches!(pr.from, Source::Pop(q) if pr.from_state.is_none() && self.pops[q].list.is_some());
        listed && matches!(dp.weights, DevWeights::Sparse { .. }) && dp.ring.is_empty() && dp.adapter.is_none() && dp.stage.is_none() && dp.plastic.is_none()
    }

    /// Projections `pi` then `pj` ([`GpuNetwork::plain_events`], into the same
    /// population, whose inputs are `inputs`) in one [`prop::SPARSE_EVENTS2`] launch.
    fn events_pair(&mut self, pi: usize, pj: usize, inputs: &[Buf]) -> Result<(), RuntimeError> {
        let batch = self.host.batch;
        let mut a = Vec::with_capacity(19);
        let mut n_pre_max = 0;
        for q in [pi, pj] {
            let target = inputs[self.host.projs[q].input];
            self.acc.settle(&mut self.dev, target, true)?;
            let (src, list) = self.source(q);
            let (list, slot) = list.expect("plain_events: a listed source");
            let DevWeights::Sparse { row_ptr, col, w } = self.projs[q].weights else { unreachable!("plain_events: sparse weights") };
            let n_pre = self.projs[q].n_pre;
            n_pre_max = n_pre_max.max(n_pre);
            a.extend([KArg::Buf(row_ptr), KArg::Buf(col), KArg::Buf(w), KArg::Buf(list), KArg::U64(slot as u64), KArg::Buf(src), KArg::Buf(target), KArg::U64(n_pre as u64)]);
        }
        a.extend([KArg::Buf(self.lens), KArg::U64(self.projs[pi].n_post as u64), KArg::U64(batch as u64)]);
        self.launch(prop::SPARSE_EVENTS2, (sparse_grid(n_pre_max as u64), 2 * batch as u32), SPARSE_BLOCK, &a)
    }

    /// What projection `pi` reads (a state, spikes, an external input or a readout's
    /// output), and the source's spike list when it has one.
    fn source(&self, pi: usize) -> (Buf, Option<(Buf, usize)>) {
        let pr = &self.host.projs[pi];
        match pr.from {
            Source::Input(i) => (self.cur_ext[i], None),
            Source::Pop(q) => match (pr.from_state, &self.pops[q].spikes, self.pops[q].list) {
                (Some(j), ..) => (self.pops[q].states[j], None),
                // Stepped already this step (earlier in the order): this step's list;
                // itself or later: the last step's.
                (None, Some(s), Some((l, _))) => {
                    let step = self.host.step_index;
                    (*s, Some((l, self.list_slot(q, if q < pr.to { step } else { step.wrapping_sub(1) }))))
                }
                (None, Some(s), None) => (*s, None),
                (None, None, _) => (self.pops[q].output.expect("a readout has an output"), None),
            },
        }
    }

    /// Back to the state the network was built in, as [`Network::reset`] (the host view
    /// and every device buffer that carries over from step to step).
    pub fn reset(&mut self) -> Result<(), RuntimeError> {
        // The window so far first: a non-finite state in it is still reported.
        self.flush()?;
        self.broken = None;
        self.host.reset();
        self.reset_plasticity()?;
        for (dp, pop) in self.pops.iter().zip(&self.host.pops) {
            for (b, s) in dp.states.iter().zip(&pop.states) {
                self.dev.upload(*b, T::host(s)).map_err(dev_err)?;
            }
            for b in dp.spikes.iter().chain(&dp.output).copied().chain(dp.accumulated_inputs()) {
                self.dev.zero(b).map_err(dev_err)?;
            }
        }
        for b in self.projs.iter().flat_map(|p| &p.ring) {
            self.dev.zero(*b).map_err(dev_err)?;
        }
        self.acc.cleared();
        self.dev.zero(self.clock).map_err(dev_err)?;
        // No spikes listed: the first step's projections from later populations read none.
        self.dev.zero(self.lens).map_err(dev_err)
    }

    /// The device buffer of what population `p` gives the loss when it is the readout:
    /// the output of a `Linear` readout, the first state of one with dynamics.
    pub(crate) fn readout_buffer(&self, p: usize) -> Buf {
        match self.pops[p].output {
            Some(o) => o,
            None => self.pops[p].states[0],
        }
    }

    /// Copies what readout population `p` gives the loss this step
    /// ([`crate::network::Population::readout_output`]) into `out` (B x N).
    pub fn readout_output(&mut self, p: usize, out: &mut [T]) -> Result<(), RuntimeError> {
        let b = self.readout_buffer(p);
        self.dev.download(b, T::host_mut(out)).map_err(dev_err)
    }

    /// Sets a trainable tensor ([`Network::set_trainable`]) on the host and the device.
    pub fn set_trainable(&mut self, name: &str, w: ndarray::Array2<T>) -> Result<(), RuntimeError> {
        if let Some((i, ..)) = self.host.projection(name) {
            // Checked before the host takes the weights: host and device stay equal.
            if matches!(self.projs[i].weights, DevWeights::OneToOne(_)) {
                return Err(RuntimeError::Input(format!("`{name}` is a one-to-one projection: only dense and sparse ones are set on the device")));
            }
            self.host.set_trainable(name, w)?;
            return match (&self.projs[i].weights, self.host.dense_weights(i), self.host.sparse_weights(i)) {
                (DevWeights::Dense(b), Some(w), _) => {
                    let w = w.as_standard_layout();
                    self.dev.upload(*b, T::host(w.as_slice().expect("standard layout"))).map_err(dev_err)
                }
                // A sparse projection's tensor is its synapses' weights (1 x nnz, CSR order).
                (DevWeights::Sparse { w: b, .. }, _, Some((_, _, w))) => self.dev.upload(*b, T::host(w)).map_err(dev_err),
                _ => Err(RuntimeError::Input(format!("`{name}`: its weights on the host and the device differ in kind"))),
            };
        }
        if let Some((i, is_v)) = self.host.adapter_slot(name) {
            self.host.set_trainable(name, w)?;
            let (Some(a), Some(d)) = (self.host.adapter(i), &self.projs[i].adapter) else {
                return Err(RuntimeError::Input(format!("`{name}`: the projection's adapter is not on the device")));
            };
            let (m, b) = if is_v { (&a.v, d.v) } else { (&a.u, d.u) };
            let m = m.as_standard_layout();
            return self.dev.upload(b, T::host(m.as_slice().expect("standard layout"))).map_err(dev_err);
        }
        self.host.set_trainable(name, w)?;
        let (p, slot, ..) = self.host.param_slot(name).ok_or_else(|| RuntimeError::Input(format!("no trainable `{name}`")))?;
        self.dev.upload(self.pops[p].params[slot], T::host(&self.host.pops[p].per_neuron_params[slot])).map_err(dev_err)
    }

    /// `out += x W` for projection `pi` (`out = x W` with `overwrite`, dense only), and
    /// its adapter's `(x U) V`.
    fn propagate(&mut self, pi: usize, src: Buf, list: Option<(Buf, usize)>, out: Buf, overwrite: bool) -> Result<(), RuntimeError> {
        self.propagate_weights(pi, src, list, out, overwrite)?;
        let Some(a) = &self.projs[pi].adapter else { return Ok(()) };
        let (batch, n_pre, n_post) = (self.host.batch, self.projs[pi].n_pre, self.projs[pi].n_post);
        // Row-major xU (B x R) = x U, then out (B x O) += xU V (the weights wrote `out`
        // first), as the dense GEMM above: column-major transposes, no copies.
        let (u, v, r, xu) = (a.u, a.v, a.rank, a.xu);
        let g1 = Gemm { m: r, n: batch, k: n_pre, alpha: 1.0, a: u, lda: r, ta: false, b: src, ldb: n_pre, tb: false, beta: 0.0, c: xu, ldc: r };
        self.dev.gemm(&g1).map_err(dev_err)?;
        let g2 = Gemm { m: n_post, n: batch, k: r, alpha: 1.0, a: v, lda: n_post, ta: false, b: xu, ldb: r, tb: false, beta: 1.0, c: out, ldc: n_post };
        self.dev.gemm(&g2).map_err(dev_err)
    }

    /// `out += x W` for projection `pi`'s weights (`out = x W` with `overwrite`, dense only).
    fn propagate_weights(&mut self, pi: usize, src: Buf, list: Option<(Buf, usize)>, out: Buf, overwrite: bool) -> Result<(), RuntimeError> {
        let batch = self.host.batch;
        let (n_pre, n_post) = (self.projs[pi].n_pre, self.projs[pi].n_post);
        match self.projs[pi].weights {
            DevWeights::Dense(w) => {
                // Row-major y (B x O) += x (B x I) W (I x O) is, column-major,
                // y^T (O x B) += W^T (O x I) x^T (I x B), with W^T and x^T the row-major
                // arrays as they are: no transposes, no copies.
                let beta = if overwrite { 0.0 } else { 1.0 };
                let g = Gemm { m: n_post, n: batch, k: n_pre, alpha: 1.0, a: w, lda: n_post, ta: false, b: src, ldb: n_pre, tb: false, beta, c: out, ldc: n_post };
                self.dev.gemm(&g).map_err(dev_err)
            }
            DevWeights::Sparse { row_ptr, col, w } => {
                let (list, slot) = match list {
                    Some(l) => l,
                    None => {
                        let (l, s) = self.projs[pi].own_list.expect("a sparse projection from a non-spiking source has its own list");
                        self.compact(src, l, s, n_pre)?;
                        (l, s)
                    }
                };
                let a = [
                    KArg::Buf(row_ptr),
                    KArg::Buf(col),
                    KArg::Buf(w),
                    KArg::Buf(list),
                    KArg::Buf(self.lens),
                    KArg::U64(slot as u64),
                    KArg::Buf(src),
                    KArg::Buf(out),
                    KArg::U64(n_pre as u64),
                    KArg::U64(n_post as u64),
                ];
                self.launch(prop::SPARSE_EVENTS, (sparse_grid(n_pre as u64), batch as u32), SPARSE_BLOCK, &a)
            }
            DevWeights::OneToOne(w) => {
                let a = [KArg::Buf(w), KArg::Buf(src), KArg::Buf(out), KArg::U64(n_post as u64)];
                self.launch(prop::ONE_TO_ONE, (launch_config(n_post as u64, BLOCK).0, batch as u32), BLOCK, &a)
            }
        }
    }

    /// Reads the status of the steps since the last read-back (one download): adds the
    /// spike totals to the host's counters, and reports the first non-finite state, in
    /// step order, then population order, as the CPU does.
    pub fn flush(&mut self) -> Result<(), RuntimeError> {
        if self.pending == 0 {
            return Ok(());
        }
        let (batch, pending) = (self.host.batch, self.pending);
        self.pending = 0;
        let totals_len = self.count_slots * batch;
        let mut status = vec![0u32; totals_len + self.window * self.n_flags];
        self.dev.download(self.status, HostMut::U32(&mut status)).map_err(dev_err)?;
        let (totals, flags) = status.split_at(totals_len);
        let first_step = self.host.step_index - pending as u64;
        // The recorded spikes first: what ran before a non-finite state is kept.
        self.read_records(first_step, pending)?;
        for (s, step_flags) in flags.chunks(self.n_flags.max(1)).take(pending).enumerate() {
            let step = first_step + s as u64;
            for &(at, flag) in &self.flag_order {
                let Some((e, value)) = prop::decode_flag(step_flags[flag]) else { continue };
                self.failed_at = Some(step);
                return Err(match at {
                    FlagAt::Pop(p) => {
                        let pop = &self.host.pops[p];
                        let len = pop.n * batch;
                        let (k, i) = (e / len, e % len);
                        RuntimeError::NonFinite { population: pop.name.clone(), state: pop.state_names[k].clone(), neuron: i % pop.n, batch: i / pop.n, step, value }
                    }
                    FlagAt::Source(pi) => {
                        let pr = &self.host.projs[pi];
                        let n = self.projs[pi].n_pre;
                        let what = match &pr.pre_stage {
                            Some(st) => format!("`{}`: the presynaptic state of a synapse", st.pop.name),
                            None => format!("plastic projection `{}`", pr.name),
                        };
                        RuntimeError::Input(format!("{what} needs spikes (0 or 1) from its source, got another value from source neuron {} (batch element {}) at step {step}", e % n, e / n))
                    }
                    FlagAt::Rule(pi, post) => {
                        let (i, j) = self.projs[pi].plastic.as_ref().expect("a rule's flag").synapse(e);
                        let t = step as f64 * self.host.dt;
                        let rule = if post { "on post" } else { "on pre" };
                        RuntimeError::Input(format!("plastic projection `{}`: the weight of synapse ({i}, {j}) became {value} at t = {t} s (its `{rule}` rule)", self.host.projs[pi].name))
                    }
                });
            }
        }
        for (dp, pop) in self.pops.iter().zip(&mut self.host.pops) {
            if let Some((_, slot)) = dp.list {
                pop.spike_count += totals[slot * batch..(slot + 1) * batch].iter().map(|c| u64::from(*c)).sum::<u64>();
            }
        }
        Ok(())
    }

    /// Copies spikes (and with `states` every state, the presynaptic stages' states and
    /// traces, and the plastic projections' weights) to the host view, and rebuilds the
    /// active lists from the spikes (ascending, as the CPU's).
    pub fn fetch(&mut self, states: bool) -> Result<(), RuntimeError> {
        self.fetch_observed(states)?;
        if states {
            self.fetch_plasticity()?;
        }
        Ok(())
    }

    /// [`GpuNetwork::fetch`] without the plasticity: spikes and, with `states`, the
    /// populations' states (what a recorder reads every step).
    fn fetch_observed(&mut self, states: bool) -> Result<(), RuntimeError> {
        self.flush()?;
        let batch = self.host.batch;
        for (dp, pop) in self.pops.iter().zip(&mut self.host.pops) {
            if let Some(sp) = dp.spikes {
                self.dev.download(sp, T::host_mut(&mut pop.spikes)).map_err(dev_err)?;
                let n = pop.n;
                pop.active.resize_with(batch, Vec::new);
                for (b, act) in pop.active.iter_mut().enumerate() {
                    act.clear();
                    act.extend(pop.spikes[b * n..(b + 1) * n].iter().enumerate().filter(|(_, s)| s.to_f64() != 0.0).map(|(i, _)| i as u32));
                }
            }
            if states {
                for (buf, s) in dp.states.iter().zip(&mut pop.states) {
                    self.dev.download(*buf, T::host_mut(s)).map_err(dev_err)?;
                }
            }
        }
        Ok(())
    }
}

impl<T: Float, D: Device> Simulation<T> for GpuNetwork<T, D> {
    fn network(&self) -> &Network<T> {
        &self.host
    }
    fn advance(&mut self, external: &[&[T]]) -> Result<(), RuntimeError> {
        self.step(external)
    }
    fn steps_at_once(&self) -> u64 {
        // Whole windows, a few tens of milliseconds of a GPU's time.
        16 * self.window as u64
    }
    fn advance_free(&mut self, steps: u64) -> Result<(), RuntimeError> {
        self.run(steps)
    }
    fn advance_recorded(&mut self, steps: u64, states: &[(usize, usize)], each: &mut dyn FnMut(&Network<T>) -> Result<(), RuntimeError>) -> Result<(), RuntimeError> {
        self.run_shown(steps, states, each, &mut |g, n| g.run(n))
    }
    fn advance_fed(
        &mut self,
        steps: u64,
        fill: &mut crate::engine::FillInputs<'_, T>,
        states: &[(usize, usize)],
        each: Option<&mut crate::engine::ShowStep<'_, T>>,
    ) -> Result<(), RuntimeError> {
        match each {
            Some(each) => self.run_shown(steps, states, each, &mut |g, n| g.run_fed(n, fill)),
            None => self.run_fed(steps, fill),
        }
    }
    fn sync(&mut self, states: bool) -> Result<(), RuntimeError> {
        self.fetch_observed(states)
    }
    fn sync_plasticity(&mut self) -> Result<(), RuntimeError> {
        self.flush()?;
        self.fetch_plasticity()
    }
    fn backend(&self) -> String {
        self.dev.name()
    }
    fn reset(&mut self) -> Result<(), RuntimeError> {
        GpuNetwork::reset(self)
    }
    fn set_trainable(&mut self, name: &str, w: ndarray::Array2<T>) -> Result<(), RuntimeError> {
        GpuNetwork::set_trainable(self, name, w)
    }
    fn readout_output(&mut self, p: usize, out: &mut [T]) -> Result<(), RuntimeError> {
        GpuNetwork::readout_output(self, p, out)
    }
}
