//! Presynaptic stages (short-term plasticity, [`crate::presyn`]) and plastic projections
//! (STDP, [`crate::plastic`]) on the device, run as the CPU runs them:
//!
//! - A *stage* (`u`, `x` of Tsodyks–Markram; a gated NMDA stage's `x`, `s`) is a step
//!   kernel generated from the stage's model, one thread per source neuron and batch
//!   element, launched when the projection is gathered (before its target steps) with
//!   the source's activity as its `pre` input; then the projection delivers the
//!   activity times the efficacy ([`prop::MUL`]), or a gated stage's output, every
//!   source every step (a list of its non-zero entries for sparse weights).
//! - A *plastic* projection keeps its source's spikes in flight in a ring of `delay + 1`
//!   slots (the whole `on pre` runs when a spike arrives, as on the CPU) and delivers
//!   the slot due now. After every population has stepped: its `on pre` rule, its
//!   `on post` rule, then its presynaptic traces (a stage, fed the arrived events).
//!
//! A rule is a step kernel generated from the rule's model (`PROJ.on_pre`,
//! `PROJ.on_post`: the same IR the CPU's kernels come from), one thread per synapse.
//! It runs over *every* synapse of the projection, not only those with an event: its
//! states and inputs are gathered per synapse ([`prop::GATHER`]: the weight, the
//! presynaptic traces and events by source, the postsynaptic values by target), and
//! [`prop::SCATTER_EVENTS`] writes back the new weight only where the synapse's source
//! (`on pre`) or target (`on post`) had an event. So no transposed index is needed for
//! `on post` over CSR weights, at a cost of O(synapses) per rule and step whatever the
//! activity: (gathered values + 3) reads and a rule evaluation per synapse, and three
//! u32 (source, target, weight index) plus one float per rule state and input per
//! synapse of device memory. Each synapse's rule reads only its own copies, so the
//! result does not depend on the order; the CPU runs the same statements on the same
//! values, so the weights are the CPU's.
//!
//! What the CPU refuses at run time is flagged on the device and reported at the
//! window's read-back, in the CPU's order: a source value other than 0 or 1 read by a
//! stage or a plastic projection ([`prop::NOT_SPIKE`]), a weight a rule made NaN or
//! infinite. A rule that draws random numbers is refused (the CPU keys its draws by the
//! position of a synapse among the step's events, which a rule over every synapse
//! cannot reproduce).

use super::{Buf, Device, GpuNetwork, KArg, ModId, Module, dev_err, step_scalars};
use crate::error::RuntimeError;
use crate::network::Population;
use crate::plastic::{At, Plastic, Synapse};
use crate::presyn::PreStage;
use crate::propagate::Weights;
use crate::rng::stream_id;
use crate::scalar::Float;
use snnc_compiler::backend::ptx::propagate::{self as prop, BLOCK};
use snnc_compiler::backend::ptx::{Role, STEP_ENTRY, compile_step, launch_config};
use snnc_compiler::sema::Source;

/// A step kernel generated from a model the CPU also steps (a stage, a rule), with its
/// buffers: `len` elements each.
pub(super) struct DevStep {
    module: ModId,
    roles: Vec<Role>,
    pub(super) states: Vec<Buf>,
    inputs: Vec<Buf>,
    params: Vec<Buf>,
    pub(super) spikes: Option<Buf>,
    len: usize,
    seed: u64,
    /// It reads its step from the device's clock (`PtxKernel::clocked`).
    pub(super) clocked: bool,
}

impl DevStep {
    /// The kernel of `pop` over `len` elements; with `upload`, its states and params as
    /// the host holds them (a stage), else fresh buffers the caller fills (a rule).
    fn new<T: Float, D: Device>(dev: &mut D, pop: &Population<T>, len: usize, upload: bool, seed: u64) -> Result<DevStep, RuntimeError> {
        let step = pop.step.as_ref().ok_or_else(|| RuntimeError::Build(format!("`{}` has no step", pop.name)))?;
        let k = compile_step(step, &pop.specs, T::PRECISION, dev.target()).map_err(|e| RuntimeError::Build(format!("`{}`: {e}", pop.name)))?;
        // One that draws random numbers or reads the time reads its step from the clock.
        let k = match step.dt {
            Some(dt) if k.reads_step() => k.clocked(dt),
            _ => k,
        };
        let clocked = k.clocked;
        let fe = super::Elem::float(T::PRECISION);
        let label = |what: &str| format!("{}.{what}", pop.name);
        let mut states = Vec::new();
        for (i, s) in pop.states.iter().enumerate() {
            let b = dev.alloc(fe, len, &label(&pop.state_names[i])).map_err(dev_err)?;
            if upload {
                dev.upload(b, T::host(s)).map_err(dev_err)?;
            }
            states.push(b);
        }
        let mut inputs = Vec::new();
        for name in &pop.input_names {
            inputs.push(dev.alloc(fe, len, &label(name)).map_err(dev_err)?);
        }
        let mut params = Vec::new();
        for (i, v) in pop.per_neuron_params.iter().enumerate() {
            if v.len() != len {
                return Err(RuntimeError::Build(format!("`{}`: a per-neuron param of {} values for {len} elements", pop.name, v.len())));
            }
            let b = dev.alloc(fe, len, &label(&format!("param{i}"))).map_err(dev_err)?;
            dev.upload(b, T::host(v)).map_err(dev_err)?;
            params.push(b);
        }
        let spikes = if step.spike.is_some() { Some(dev.alloc(fe, len, &label("output")).map_err(dev_err)?) } else { None };
        let roles = k.args.iter().map(|a| a.role).collect::<Vec<_>>();
        if let Some(r) = roles.iter().find(|r| !matches!(r, Role::State(_) | Role::Input(_) | Role::Param(_) | Role::Spike)) {
            return Err(RuntimeError::Build(format!("`{}`: kernel argument {r:?} is not supported on the GPU", pop.name)));
        }
        let module = dev.load(&Module::Step(Box::new(k))).map_err(dev_err)?;
        Ok(DevStep { module, roles, states, inputs, params, spikes, len, seed, clocked })
    }

    /// Launches the step at time `t` of step `step` (a clocked kernel reads them from
    /// `clock`), input `k` read from `bound` where given (`(k, buffer)`); `offset`: the
    /// random stream's index of its first element (as the CPU's: a stage of a network
    /// holding batch elements b0.. draws from `b0 * n_pre`; rules and traces run with
    /// batch 1, from 0).
    fn launch<D: Device>(&self, dev: &mut D, (t, step, clock): (f64, u64, Buf), offset: u64, bound: Option<(usize, Buf)>) -> Result<(), RuntimeError> {
        let mut args: Vec<KArg> = self
            .roles
            .iter()
            .map(|r| {
                KArg::Buf(match *r {
                    Role::State(i) => self.states[i],
                    Role::Input(i) => match bound {
                        Some((k, b)) if k == i => b,
                        _ => self.inputs[i],
                    },
                    Role::Param(i) => self.params[i],
                    _ => self.spikes.expect("checked: a kernel writing spikes has an output"),
                })
            })
            .collect();
        args.extend(step_scalars(self.len, t, self.seed, step, offset));
        if self.clocked {
            args.push(KArg::Buf(clock));
        }
        dev.launch(self.module, STEP_ENTRY, (launch_config(self.len as u64, BLOCK).0, 1), BLOCK, &args).map_err(dev_err)
    }

    /// Uploads `pop`'s states (after the host's reset).
    fn upload<T: Float, D: Device>(&self, dev: &mut D, pop: &Population<T>) -> Result<(), RuntimeError> {
        for (b, s) in self.states.iter().zip(&pop.states) {
            dev.upload(*b, T::host(s)).map_err(dev_err)?;
        }
        Ok(())
    }

    /// Downloads the states into `pop`.
    fn download<T: Float, D: Device>(&self, dev: &mut D, pop: &mut Population<T>) -> Result<(), RuntimeError> {
        for (b, s) in self.states.iter().zip(&mut pop.states) {
            dev.download(*b, T::host_mut(s)).map_err(dev_err)?;
        }
        Ok(())
    }
}

/// A presynaptic stage on the device.
pub(super) struct DevStage {
    step: DevStep,
    pre_input: usize,
    efficacy: Option<usize>,
    /// The source's activity times the efficacy (what a non-gated stage delivers).
    scaled: Buf,
}

impl DevStage {
    /// Whether its kernel reads the device's clock.
    pub(super) fn clocked(&self) -> bool {
        self.step.clocked
    }

    fn new<T: Float, D: Device>(dev: &mut D, stage: &PreStage<T>, batch: usize, seed: u64) -> Result<DevStage, RuntimeError> {
        let len = stage.pop.n * batch;
        let step = DevStep::new(dev, &stage.pop, len, true, seed ^ u64::from(stream_id(&stage.pop.name)))?;
        if step.spikes.is_none() && stage.efficacy().is_none() {
            return Err(RuntimeError::Build(format!("`{}`: a gated presynaptic stage without an output", stage.pop.name)));
        }
        let scaled = dev.alloc(super::Elem::float(T::PRECISION), len, &format!("{}.scaled", stage.pop.name)).map_err(dev_err)?;
        Ok(DevStage { step, pre_input: stage.pre_input(), efficacy: stage.efficacy(), scaled })
    }
}

/// A weight rule on the device: its step over every synapse and where its states and
/// inputs come from.
struct DevRule {
    step: DevStep,
    states: Vec<At>,
    inputs: Vec<At>,
    /// The rule's state that is the weight.
    weight: usize,
    /// Its non-finite weight flag within a step's flags.
    flag: usize,
}

/// A plastic projection on the device.
pub(super) struct DevPlastic {
    /// The source's spikes in flight: `delay + 1` slots of `n_pre`.
    ring: Vec<Buf>,
    traces: Option<DevStage>,
    /// `on pre`, `on post`.
    rules: [Option<DevRule>; 2],
    /// Per synapse (row after row): its source, its target, its index into the weights.
    pre_idx: Buf,
    post_idx: Buf,
    w_idx: Buf,
    /// The same on the host, for messages: (source, target) of each synapse.
    synapses: Vec<(u32, u32)>,
}

impl DevPlastic {
    /// `next_flag`: the first free flag slot, advanced past the rules' flags.
    pub(super) fn new<T: Float, D: Device>(dev: &mut D, pl: &Plastic<T>, name: &str, weights: &Weights<T>, (n_pre, n_post): (usize, usize), seed: u64, next_flag: &mut usize) -> Result<DevPlastic, RuntimeError> {
        let err = |m: String| RuntimeError::Build(format!("plastic projection `{name}`: {m}"));
        let fe = super::Elem::float(T::PRECISION);
        let mut ring = Vec::new();
        for s in 0..=pl.delay() {
            ring.push(dev.alloc(fe, n_pre, &format!("{name}.in_flight{s}")).map_err(dev_err)?);
        }
        let all: Vec<Synapse> = pl.all_synapses(weights, n_post);
        if all.len() > prop::FLAG_INDEX_MAX as usize {
            return Err(err(format!("{} synapses: the GPU backend runs a plastic projection of at most {} synapses", all.len(), prop::FLAG_INDEX_MAX)));
        }
        let index = |dev: &mut D, what: &str, v: Vec<u32>| -> Result<Buf, RuntimeError> {
            let b = dev.alloc(super::Elem::U32, v.len(), &format!("{name}.{what}")).map_err(dev_err)?;
            dev.upload(b, super::Host::U32(&v)).map_err(dev_err)?;
            Ok(b)
        };
        let pre_idx = index(dev, "syn_pre", all.iter().map(|s| s.0).collect())?;
        let post_idx = index(dev, "syn_post", all.iter().map(|s| s.1).collect())?;
        let w_idx = index(dev, "syn_w", all.iter().map(|s| s.2 as u32).collect())?;
        let mut rules = [None, None];
        for (slot, rule) in rules.iter_mut().zip(pl.rules()) {
            let Some((pop, states, inputs)) = rule else { continue };
            let step = pop.step.as_ref().ok_or_else(|| err(format!("`{}` has no step", pop.name)))?;
            if step.random_slots > 0 {
                return Err(err(format!(
                    "its weight rule `{}` draws random numbers, which the GPU backend does not run (the CPU draws them per synapse of a step's events); run it on the CPU",
                    pop.name
                )));
            }
            let weight = states.iter().position(|a| matches!(a, At::Weight)).ok_or_else(|| err(format!("`{}` does not change `w`", pop.name)))?;
            let step = DevStep::new(dev, pop, all.len(), false, seed ^ u64::from(stream_id(&pop.name)))?;
            *slot = Some(DevRule { step, states: states.to_vec(), inputs: inputs.to_vec(), weight, flag: *next_flag });
            *next_flag += 1;
        }
        let synapses = all.iter().map(|s| (s.0, s.1)).collect();
        Ok(DevPlastic { ring, traces: None, rules, pre_idx, post_idx, w_idx, synapses })
    }

    /// The rules' flags: (`on post`?, flag slot).
    /// The slots of its ring of spikes in flight (`delay + 1`).
    pub(super) fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// Whether a kernel of it (a rule, the traces) reads the device's clock.
    pub(super) fn clocked(&self) -> bool {
        self.rules.iter().flatten().any(|r| r.step.clocked) || self.traces.as_ref().is_some_and(|t| t.clocked())
    }

    pub(super) fn flags(&self) -> impl Iterator<Item = (bool, usize)> + '_ {
        self.rules.iter().enumerate().filter_map(|(k, r)| r.as_ref().map(|r| (k == 1, r.flag)))
    }

    /// The (source, target) of the synapse a rule's flag names.
    pub(super) fn synapse(&self, e: usize) -> (u32, u32) {
        self.synapses.get(e).copied().unwrap_or((u32::MAX, u32::MAX))
    }
}

impl<T: Float, D: Device> GpuNetwork<T, D> {
    /// The device state of the stages and plastic projections of `self.host`
    /// (`next_flag`: the first free flag slot; the source checks and the rules take
    /// theirs).
    pub(super) fn build_plasticity(&mut self, next_flag: &mut usize) -> Result<(), RuntimeError> {
        let batch = self.host.batch;
        for pi in 0..self.host.projs.len() {
            let pr = &self.host.projs[pi];
            let (n_pre, n_post) = (self.projs[pi].n_pre, self.projs[pi].n_post);
            let checked = pr.pre_stage.is_some() || pr.plastic.is_some();
            // A spiking population's spikes are 0 or 1; anything else is checked per step.
            let spiking = pr.from_state.is_none() && matches!(pr.from, Source::Pop(q) if !self.host.pops[q].spikes.is_empty());
            if checked && !spiking {
                self.projs[pi].check = Some(*next_flag);
                *next_flag += 1;
            }
            if let Some(stage) = &pr.pre_stage {
                self.projs[pi].stage = Some(DevStage::new(&mut self.dev, stage, batch, self.host.seed)?);
            }
            if let Some(pl) = &pr.plastic {
                let mut dp = DevPlastic::new(&mut self.dev, pl, &pr.name, &pr.weights, (n_pre, n_post), self.host.seed, next_flag)?;
                if let Some(stage) = pl.trace_stage() {
                    dp.traces = Some(DevStage::new(&mut self.dev, stage, batch, self.host.seed)?);
                }
                self.projs[pi].plastic = Some(dp);
            }
        }
        Ok(())
    }

    /// What projection `pi` delivers this step, given what its source holds (`src`, its
    /// spike list): the source checked, its stage advanced, a plastic projection's
    /// spikes put in flight and those arriving now taken. `None` for the list: the
    /// projection lists what it delivers itself.
    pub(super) fn presynaptic(&mut self, pi: usize, src: Buf, list: Option<(Buf, usize)>, flags_at: usize) -> Result<(Buf, Option<(Buf, usize)>), RuntimeError> {
        let (t, step) = (self.host.time(), self.host.step_index);
        let len = self.projs[pi].n_pre * self.host.batch;
        if let Some(flag) = self.projs[pi].check {
            let a = [KArg::Buf(src), KArg::U64(len as u64), KArg::Buf(self.status), KArg::U64((flags_at + flag) as u64)];
            self.launch(prop::NOT_SPIKE, Self::flat(len), BLOCK, &a)?;
        }
        let module = self.prop;
        if let Some(stage) = &self.projs[pi].stage {
            stage.step.launch(&mut self.dev, (t, step, self.clock), (self.host.batch_offset * self.projs[pi].n_pre) as u64, Some((stage.pre_input, src)))?;
            return Ok(match stage.efficacy {
                Some(k) => {
                    let (scaled, e) = (stage.scaled, stage.step.states[k]);
                    let a = [KArg::Buf(src), KArg::Buf(e), KArg::Buf(scaled), KArg::U64(len as u64)];
                    self.dev.launch(module, prop::MUL, Self::flat(len), BLOCK, &a).map_err(dev_err)?;
                    (scaled, list)
                }
                None => (stage.step.spikes.expect("checked: a gated stage has an output"), None),
            });
        }
        if let Some(pl) = &self.projs[pi].plastic {
            // Slot t mod (d + 1) takes this step's spikes; slot t + 1 mod (d + 1), written d
            // steps ago (zeros at first), arrives.
            let n = pl.ring.len();
            let (put, due) = (pl.ring[step as usize % n], pl.ring[(step as usize + 1) % n]);
            self.dev.launch(module, prop::COPY, Self::flat(len), BLOCK, &[KArg::Buf(src), KArg::Buf(put), KArg::U64(len as u64)]).map_err(dev_err)?;
            return Ok((due, None));
        }
        Ok((src, list))
    }

    /// The end of a step for the plastic projections, in order: `on pre` over the
    /// synapses whose source had an event, `on post` over those whose target spiked, the
    /// presynaptic traces (see the module doc).
    pub(super) fn plasticity(&mut self, flags_at: usize) -> Result<(), RuntimeError> {
        let (t, step) = (self.host.time(), self.host.step_index);
        for pi in 0..self.projs.len() {
            let Some(pl) = &self.projs[pi].plastic else { continue };
            let to = self.host.projs[pi].to;
            let events = pl.ring[(step as usize + 1) % pl.ring.len()];
            let w = self.projs[pi].weights.values();
            let (pre_idx, post_idx, w_idx) = (pl.pre_idx, pl.post_idx, pl.w_idx);
            let n = pl.synapses.len();
            for (post, rule) in pl.rules.iter().enumerate().filter_map(|(k, r)| r.as_ref().map(|r| (k == 1, r))) {
                // A target that never spikes has no `on post`.
                let mask = if post { self.pops[to].spikes } else { Some(events) };
                let Some(mask) = mask else { continue };
                let source = |at: At| -> (Buf, Buf) {
                    match at {
                        At::Weight => (w, w_idx),
                        At::Pre(s) => (pl.traces.as_ref().expect("resolved with a stage").step.states[s], pre_idx),
                        At::Post(s) => (self.pops[to].states[s], post_idx),
                        At::PreSpike => (events, pre_idx),
                    }
                };
                let bufs = rule.step.states.iter().zip(&rule.states).chain(rule.step.inputs.iter().zip(&rule.inputs));
                for (&dst, &at) in bufs {
                    let (from, idx) = source(at);
                    self.dev.launch(self.prop, prop::GATHER, Self::flat(n), BLOCK, &[KArg::Buf(from), KArg::Buf(idx), KArg::Buf(dst), KArg::U64(n as u64)]).map_err(dev_err)?;
                }
                rule.step.launch(&mut self.dev, (t, step, self.clock), 0, None)?;
                let a = [
                    KArg::Buf(rule.step.states[rule.weight]),
                    KArg::Buf(w),
                    KArg::Buf(w_idx),
                    KArg::Buf(mask),
                    KArg::Buf(if post { post_idx } else { pre_idx }),
                    KArg::U64(n as u64),
                    KArg::Buf(self.status),
                    KArg::U64((flags_at + rule.flag) as u64),
                ];
                self.dev.launch(self.prop, prop::SCATTER_EVENTS, Self::flat(n), BLOCK, &a).map_err(dev_err)?;
            }
            if let Some(tr) = &pl.traces {
                tr.step.launch(&mut self.dev, (t, step, self.clock), 0, Some((tr.pre_input, events)))?;
            }
        }
        Ok(())
    }

    /// After the host's reset: the stages' and traces' states as built, nothing in flight.
    pub(super) fn reset_plasticity(&mut self) -> Result<(), RuntimeError> {
        for (dp, pr) in self.projs.iter().zip(&mut self.host.projs) {
            if let (Some(s), Some(h)) = (&dp.stage, &pr.pre_stage) {
                s.step.upload(&mut self.dev, &h.pop)?;
            }
            if let (Some(pl), Some(h)) = (&dp.plastic, &mut pr.plastic) {
                for b in &pl.ring {
                    self.dev.zero(*b).map_err(dev_err)?;
                }
                if let (Some(s), Some(h)) = (&pl.traces, h.trace_stage_mut()) {
                    s.step.upload(&mut self.dev, &h.pop)?;
                }
            }
        }
        Ok(())
    }

    /// Copies the stages' states, the traces and the plastic weights to the host view.
    pub(super) fn fetch_plasticity(&mut self) -> Result<(), RuntimeError> {
        for (dp, pr) in self.projs.iter().zip(&mut self.host.projs) {
            if let (Some(s), Some(h)) = (&dp.stage, &mut pr.pre_stage) {
                s.step.download(&mut self.dev, &mut h.pop)?;
            }
            let (Some(pl), Some(h)) = (&dp.plastic, &mut pr.plastic) else { continue };
            if let (Some(s), Some(h)) = (&pl.traces, h.trace_stage_mut()) {
                s.step.download(&mut self.dev, &mut h.pop)?;
            }
            let w = dp.weights.values();
            self.dev.download(w, T::host_mut(crate::plastic::weight_values_mut(&mut pr.weights))).map_err(dev_err)?;
        }
        Ok(())
    }
}
