//! A plastic projection at run time (issue 19: STDP). The compiler splits a synapse
//! that changes its weight (`compiler/src/net/plastic.rs`) into presynaptic traces kept
//! once per source neuron (a [`PreStage`] of the source's neurons), postsynaptic
//! traces kept once per target neuron (states of the target population, stepped by
//! its kernel with its own `on spike` updates) and two rules run per synapse.
//!
//! Each step, the projection delivers this step's presynaptic events (the source's
//! spikes, `delay` steps late for a delayed projection: the whole `on pre` runs when
//! the spike arrives, as in Brian2) with the weights as they are; then, after every
//! population has stepped, on this thread (so any thread count gives the same weights):
//!
//! 1. the `on pre` rule over the synapses of every source with an event, reading the
//!    traces as they were just before this step's events;
//! 2. the `on post` rule over the synapses of every target that spiked in this step,
//!    reading the presynaptic traces after this step's presynaptic events (Brian2 runs
//!    `on_pre` before `on_post`) and the postsynaptic ones before their own;
//! 3. the presynaptic traces: this step's events, then their equations over `dt`.
//!
//! A trace stored after step t holds its value at time t dt before the events of
//! step t (the postsynaptic ones: the target's kernel applies the spike s^{t-1}, then
//! integrates), so events at steps t0 < t1 see `a exp(-(t1 - t0) dt / tau)` exactly.

use crate::error::RuntimeError;
use crate::kernels::KernelFactory;
use crate::network::Population;
use crate::presyn::PreStage;
use crate::propagate::Weights;
use crate::rng::stream_id;
use crate::scalar::Float;
use snnc_compiler::backend::{ParamSpec, RandomCtx, StepArgs};
use snnc_compiler::net::Slot;
use snnc_compiler::pipeline::{PlasticPlan, PopulationPlan, RulePlan};
use snnc_compiler::sema::PopKind;

/// Where a rule's value comes from, resolved to indices.
#[derive(Clone, Copy, Debug)]
pub(crate) enum At {
    Weight,
    /// A state of the trace stage.
    Pre(usize),
    /// A state of the target population.
    Post(usize),
    PreSpike,
}

struct Rule<T> {
    pop: Population<T>,
    states: Vec<At>,
    inputs: Vec<At>,
    /// The rule's states and inputs gathered for this step's synapses.
    state_buf: Vec<Vec<T>>,
    input_buf: Vec<Vec<T>>,
}

/// One synapse of this step's events: (source, target, index into the weights).
pub(crate) type Synapse = (u32, u32, usize);

pub struct Plastic<T> {
    name: String,
    traces: Option<PreStage<T>>,
    on_pre: Option<Rule<T>>,
    on_post: Option<Rule<T>>,
    /// The source's spikes still in flight, one slot a step (`delay + 1` slots).
    ring: Vec<Vec<T>>,
    /// This step's presynaptic events (what the projection delivers) and their sources.
    events: Vec<T>,
    active: Vec<Vec<u32>>,
    /// Sparse weights, per target: its synapses (source, index), built at first use.
    columns: Option<Vec<Vec<(u32, usize)>>>,
    /// Dense weights without the diagonal (`no_self`): i -> i is no synapse.
    no_self: bool,
    synapses: Vec<Synapse>,
}

impl<T: Float> Plastic<T> {
    /// `target` is the population the projection drives; `delay` in steps.
    pub(crate) fn allocate(plan: &PlasticPlan, name: &str, target: &Population<T>, weights: &Weights<T>, (n_pre, delay): (usize, usize), no_self: bool, batch: usize) -> Result<Plastic<T>, RuntimeError> {
        let err = |m: String| RuntimeError::Build(format!("plastic projection `{name}`: {m}"));
        if batch != 1 {
            return Err(err(format!("its weights change with the run, so it runs with batch 1 (got {batch})")));
        }
        if matches!(weights, Weights::Procedural(_)) {
            return Err(err("`procedural` weights are never stored, so they cannot change; use `sparse`".into()));
        }
        let traces = plan.traces.as_ref().map(|s| PreStage::allocate(s, format!("{name}.pre"), batch));
        let resolve = |slot: &Slot| -> Result<At, RuntimeError> {
            Ok(match slot {
                Slot::Weight => At::Weight,
                Slot::PreSpike => At::PreSpike,
                Slot::PreTrace(s) => {
                    let stage = traces.as_ref().ok_or_else(|| err("no presynaptic trace stage".into()))?;
                    At::Pre(stage.pop.state_names.iter().position(|n| n == s).ok_or_else(|| err(format!("no presynaptic trace `{s}`")))?)
                }
                Slot::Post(s) => At::Post(target.state_names.iter().position(|n| n == s).ok_or_else(|| {
                    err(format!("its rule reads `{s}` of population `{}`, which is not one of its states ({})", target.name, target.state_names.join(", ")))
                })?),
            })
        };
        let rule = |r: &RulePlan, event: &str| -> Result<Rule<T>, RuntimeError> {
            if r.dynamics.specs.iter().any(|s| !matches!(s, ParamSpec::Uniform(_))) {
                return Err(err("the params of its weight rule must be the same for every connection".into()));
            }
            let pop = Population::allocate(&PopulationPlan { name: format!("{name}.{event}"), n: 1, kind: PopKind::Layer, dynamics: Some(r.dynamics.clone()) }, 1);
            let states = r.states.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
            let inputs = r.inputs.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
            Ok(Rule { state_buf: vec![Vec::new(); states.len()], input_buf: vec![Vec::new(); inputs.len()], pop, states, inputs })
        };
        let on_pre = plan.on_pre.as_ref().map(|r| rule(r, "on_pre")).transpose()?;
        let on_post = plan.on_post.as_ref().map(|r| rule(r, "on_post")).transpose()?;
        Ok(Plastic {
            name: name.to_string(),
            traces,
            on_pre,
            on_post,
            ring: vec![Vec::new(); delay + 1],
            events: vec![T::default(); n_pre],
            active: vec![Vec::new()],
            columns: None,
            no_self,
            synapses: Vec::new(),
        })
    }

    pub(crate) fn attach_kernels(&mut self, factory: &'static dyn KernelFactory<T>) -> Result<(), RuntimeError> {
        if let Some(t) = &mut self.traces {
            t.attach_kernel(factory)?;
        }
        for r in [&mut self.on_pre, &mut self.on_post].into_iter().flatten() {
            let step = r.pop.step.as_ref().expect("a rule has a step");
            r.pop.kernel = Some(factory.build(step, &r.pop.specs)?);
        }
        Ok(())
    }

    /// Nothing in flight, the traces as built; the weights are kept (what was learned).
    pub(crate) fn reset(&mut self) {
        if let Some(t) = &mut self.traces {
            t.reset();
        }
        self.ring.iter_mut().for_each(Vec::clear);
        self.events.fill(T::default());
        self.active.iter_mut().for_each(Vec::clear);
    }

    /// The presynaptic trace stage (one state per source neuron), if any.
    pub fn traces(&self) -> Option<&Population<T>> {
        self.traces.as_ref().map(|t| &t.pop)
    }

    /// The presynaptic trace stage, to be stepped elsewhere (the GPU backend).
    pub(crate) fn trace_stage(&self) -> Option<&PreStage<T>> {
        self.traces.as_ref()
    }

    pub(crate) fn trace_stage_mut(&mut self) -> Option<&mut PreStage<T>> {
        self.traces.as_mut()
    }

    /// The `on pre` and `on post` rules: each its model (a population of one, with the
    /// step) and where its states and inputs come from, in layout order.
    pub(crate) fn rules(&self) -> [Option<(&Population<T>, &[At], &[At])>; 2] {
        fn view<T>(r: &Option<Rule<T>>) -> Option<(&Population<T>, &[At], &[At])> {
            r.as_ref().map(|r| (&r.pop, r.states.as_slice(), r.inputs.as_slice()))
        }
        [view(&self.on_pre), view(&self.on_post)]
    }

    /// The steps a presynaptic event takes to arrive (the projection's `delay`).
    pub(crate) fn delay(&self) -> usize {
        self.ring.len() - 1
    }

    /// Every synapse of `weights` (source, target, index), row after row: what the GPU
    /// backend runs a rule over.
    pub(crate) fn all_synapses(&self, weights: &Weights<T>, n_post: usize) -> Vec<Synapse> {
        let n_pre = self.events.len();
        let mut out = Vec::new();
        for i in 0..n_pre as u32 {
            push_row(weights, i, n_pre, n_post, self.no_self, &mut out);
        }
        out
    }

    /// Takes the source's spikes `src` of step `step`; this step's events are those of
    /// `delay` steps ago.
    pub(crate) fn receive(&mut self, src: &[T], step: usize) -> Result<(), RuntimeError> {
        let (zero, one) = (T::default(), T::from_f64(1.0));
        if let Some(x) = src.iter().find(|&&x| x != zero && x != one) {
            return Err(RuntimeError::Input(format!("plastic projection `{}` needs spikes (0 or 1) from its source, got {}", self.name, x.to_f64())));
        }
        let n = self.ring.len();
        self.ring[step % n].clear();
        self.ring[step % n].extend_from_slice(src);
        let due = &self.ring[(step + 1) % n];
        self.events.clear();
        if due.is_empty() {
            self.events.resize(src.len(), zero);
        } else {
            self.events.extend_from_slice(due);
        }
        let act = &mut self.active[0];
        act.clear();
        act.extend(self.events.iter().enumerate().filter(|(_, v)| **v == one).map(|(i, _)| i as u32));
        Ok(())
    }

    /// This step's presynaptic events (what the projection delivers) and their sources.
    pub(crate) fn events(&self) -> (&[T], &[Vec<u32>]) {
        (&self.events, &self.active)
    }

    /// The end of step `step` (time `t`): the rules, then the presynaptic traces (see
    /// the module doc). `post` is the target population after its step.
    pub(crate) fn update(&mut self, weights: &mut Weights<T>, post: &Population<T>, t: f64, step: u64, seed: u64) -> Result<(), RuntimeError> {
        let (n_pre, n_post) = (self.events.len(), post.n);
        if let Some(mut rule) = self.on_pre.take() {
            self.synapses.clear();
            for &i in &self.active[0] {
                push_row(weights, i, n_pre, n_post, self.no_self, &mut self.synapses);
            }
            let done = self.apply(&mut rule, weights, post, t, step, seed);
            self.on_pre = Some(rule);
            done?;
        }
        if let Some(mut rule) = self.on_post.take() {
            self.synapses.clear();
            if let Weights::Sparse(rows) = &*weights {
                let columns = self.columns.get_or_insert_with(|| columns_of(&rows.row_ptr, &rows.col, n_post));
                for &j in post.active.first().map_or(&[][..], Vec::as_slice) {
                    self.synapses.extend(columns[j as usize].iter().map(|&(i, k)| (i, j, k)));
                }
            } else {
                for &j in post.active.first().map_or(&[][..], Vec::as_slice) {
                    push_column(weights, j, n_pre, n_post, self.no_self, &mut self.synapses);
                }
            }
            let done = self.apply(&mut rule, weights, post, t, step, seed);
            self.on_post = Some(rule);
            done?;
        }
        if let Some(traces) = &mut self.traces {
            let random = RandomCtx { seed: seed ^ u64::from(stream_id(&traces.pop.name)), step, offset: 0 };
            traces.advance(&self.events, t, random)?;
        }
        Ok(())
    }

    /// Runs `rule` over `self.synapses` and writes their weights back.
    fn apply(&self, rule: &mut Rule<T>, weights: &mut Weights<T>, post: &Population<T>, t: f64, step: u64, seed: u64) -> Result<(), RuntimeError> {
        if self.synapses.is_empty() {
            return Ok(());
        }
        let w = weight_values(weights);
        let pre_states = self.traces.as_ref().map(|s| &s.pop.states);
        let value = |at: At, (i, j, k): Synapse| -> T {
            match at {
                At::Weight => w[k],
                At::Pre(s) => pre_states.expect("resolved with a stage")[s][i as usize],
                At::Post(s) => post.states[s][j as usize],
                At::PreSpike => self.events[i as usize],
            }
        };
        for (buf, &at) in rule.state_buf.iter_mut().zip(&rule.states).chain(rule.input_buf.iter_mut().zip(&rule.inputs)) {
            buf.clear();
            buf.extend(self.synapses.iter().map(|&syn| value(at, syn)));
        }
        let kernel = rule.pop.kernel.as_ref().ok_or_else(|| RuntimeError::Build(format!("`{}` has no CPU kernel", rule.pop.name)))?;
        let mut states: Vec<&mut [T]> = rule.state_buf.iter_mut().map(|s| s.as_mut_slice()).collect();
        let inputs: Vec<&[T]> = rule.input_buf.iter().map(|s| s.as_slice()).collect();
        let random = RandomCtx { seed: seed ^ u64::from(stream_id(&rule.pop.name)), step, offset: 0 };
        kernel.step(StepArgs { states: &mut states, inputs: &inputs, params: &[], spikes: &mut [], t, random });
        let new = &rule.state_buf[rule.states.iter().position(|a| matches!(a, At::Weight)).expect("a rule changes `w`")];
        if let Some((v, &(i, j, _))) = new.iter().zip(&self.synapses).find(|(v, _)| !v.to_f64().is_finite()) {
            return Err(RuntimeError::Input(format!("plastic projection `{}`: the weight of synapse ({i}, {j}) became {} at t = {t} s", self.name, v.to_f64())));
        }
        let w = weight_values_mut(weights);
        for (&(_, _, k), &v) in self.synapses.iter().zip(new) {
            w[k] = v;
        }
        Ok(())
    }
}

fn weight_values<T>(weights: &Weights<T>) -> &[T] {
    match weights {
        Weights::Dense(w) => w.as_slice().expect("row-major weights"),
        Weights::Sparse(rows) => rows.weight(),
        Weights::OneToOne(w) => w,
        Weights::Procedural(_) => &[],
    }
}

pub(crate) fn weight_values_mut<T>(weights: &mut Weights<T>) -> &mut [T] {
    match weights {
        Weights::Dense(w) => w.as_slice_mut().expect("row-major weights"),
        Weights::Sparse(rows) => rows.weight_mut(),
        Weights::OneToOne(w) => w,
        Weights::Procedural(_) => &mut [],
    }
}

/// The synapses of source `i`.
fn push_row<T>(weights: &Weights<T>, i: u32, _n_pre: usize, n_post: usize, no_self: bool, out: &mut Vec<Synapse>) {
    let iu = i as usize;
    match weights {
        Weights::Dense(_) => out.extend((0..n_post as u32).filter(|&j| !(no_self && j == i)).map(|j| (i, j, iu * n_post + j as usize))),
        Weights::Sparse(rows) => out.extend((rows.row_ptr[iu]..rows.row_ptr[iu + 1]).map(|k| (i, rows.col[k], k))),
        Weights::OneToOne(_) => out.push((i, i, iu)),
        Weights::Procedural(_) => {}
    }
}

/// The synapses into target `j` (dense and one-to-one weights).
fn push_column<T>(weights: &Weights<T>, j: u32, n_pre: usize, n_post: usize, no_self: bool, out: &mut Vec<Synapse>) {
    let ju = j as usize;
    match weights {
        Weights::Dense(_) => out.extend((0..n_pre as u32).filter(|&i| !(no_self && j == i)).map(|i| (i, j, i as usize * n_post + ju))),
        Weights::OneToOne(_) => out.push((j, j, ju)),
        Weights::Sparse(_) | Weights::Procedural(_) => {}
    }
}

/// Per target, its synapses (source, index) in source order.
fn columns_of(row_ptr: &[usize], col: &[u32], n_post: usize) -> Vec<Vec<(u32, usize)>> {
    let mut columns = vec![Vec::new(); n_post];
    for i in 0..row_ptr.len().saturating_sub(1) {
        for k in row_ptr[i]..row_ptr[i + 1] {
            columns[col[k] as usize].push((i as u32, k));
        }
    }
    columns
}
