//! The compiler's driver: a checked network becomes the plans the runtime allocates
//! from, pass after pass, each population lowered once.
//!
//! ```text
//! NetworkDef ──net::plan──▶ synapse groups ──net::compose──▶ GroupModel (per population)
//!   ──lower──▶ param values (settings, sampled, defaults) ──discretise──▶ Step (dt fixed)
//!   ──derivatives (learning)──▶ Step + DerivLayout ──instantiate──▶ initial states
//! NetworkDef ──net::pre_stage──▶ presynaptic stage (per projection with STP state)
//!   ──lower, discretise, instantiate (as a population of its source neurons)──▶ PreStagePlan
//! ```
//!
//! Everything that depends on the model text, the network's settings, the time step and
//! the seed is decided here, once: `snnc run`, `train`, `grad`, `explain --network` and
//! `emit --network`, on any backend, see the same steps. Backends only specialise a
//! [`Step`] (fold its params and its [`Step::dt`]); the runtime only allocates buffers
//! from a [`NetworkPlan`] and asks a kernel factory for the kernels it runs.
//!
//! The dt rule, in one place ([`resolve_dt`]): the command line's `--dt` over the
//! network's `dt` over [`DEFAULT_DT`].

use std::fmt;

use crate::backend::{ParamSpec, RandomCtx, random_draw};
use crate::diag::Diagnostic;
use crate::discretise::{self, DerivLayout, Step};
use crate::ir::{self, Env, LoweredModel};
use crate::net::{self, GroupModel, NetPlan};
use crate::rng::{self, Rng, stream_id};
use crate::sema::{Init, Method, Model, NetworkDef, PopKind, Program, Source, SymId};

/// The time step when neither the command line nor the network sets one (0.1 ms, the
/// step of the COBA/CUBA benchmarks and Brian2's default).
pub const DEFAULT_DT: f64 = 1e-4;

/// The one rule for dt: `requested` (the command line's `--dt`, an embedding program's
/// choice) over the network's `dt` over [`DEFAULT_DT`].
pub fn resolve_dt(requested: Option<f64>, net: Option<&NetworkDef>) -> f64 {
    requested.or(net.and_then(|n| n.dt)).unwrap_or(DEFAULT_DT)
}

/// What the caller decides about a compilation; everything else comes from the file.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Time step (s), over the network's own ([`resolve_dt`]).
    pub dt: Option<f64>,
    /// Seed of every random choice, unless the network sets its own `seed`.
    pub seed: u64,
    /// Replace every spike by `sigmoid(alpha * z)` (see `discretise_smooth`): a smooth
    /// network for checking gradients against finite differences.
    pub smooth_spikes: Option<f64>,
    /// Integrate every population with this method instead of the model's own choice.
    pub method: Option<Method>,
    /// Compile spiking populations (and readouts with dynamics) with their derivatives
    /// (D, Df, ds/dh, dh/dtheta) as extra outputs of the step, for the learning rules.
    pub learning: bool,
}

/// Why a network cannot be compiled: the population, what went wrong, and the
/// diagnostic (with its place in the source) when a compiler stage produced one.
#[derive(Clone, Debug)]
pub struct PipelineError {
    pub population: String,
    pub message: String,
    pub diagnostic: Option<Diagnostic>,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "population `{}`: {}", self.population, self.message)
    }
}

impl std::error::Error for PipelineError {}

/// A compiled network: one plan per population, and where each drive and projection
/// lands among its target's kernel inputs.
#[derive(Clone, Debug)]
pub struct NetworkPlan {
    pub name: String,
    /// The resolved time step: every population's [`Step::dt`].
    pub dt: f64,
    /// The resolved seed (the network's, else the options').
    pub seed: u64,
    pub populations: Vec<PopulationPlan>,
    /// Per drive (in `NetworkDef::drives` order): the target's kernel input index.
    pub drive_inputs: Vec<usize>,
    /// Per projection: the target's kernel input index (0 for a `Linear` readout, which
    /// has no kernel and sums into its output).
    pub projection_inputs: Vec<usize>,
    /// Per projection: its presynaptic stage, if its synapse has presynaptic state.
    pub pre_stages: Vec<Option<PreStagePlan>>,
    /// Per projection: its plasticity, if its synapse changes its weights.
    pub plastic: Vec<Option<PlasticPlan>>,
}

impl NetworkPlan {
    /// Population `p`'s kernel inputs that are the same for every neuron at every step,
    /// with their value: no projection delivers into them, and their drives, if any, are
    /// constants (summed from 0 in declaration order, as the runtime sums them; 0 with
    /// none). A CPU kernel folds these ([`Step::with_constant_inputs`]) instead of
    /// loading them (COBA's 200 pA drive, CUBA's unused `I.direct`).
    pub fn constant_inputs(&self, net: &NetworkDef, p: usize) -> Vec<Option<f64>> {
        let n_inputs = self.populations[p].dynamics.as_ref().map_or(0, |d| d.step.layout.inputs.len());
        let delivered = |k: usize| net.projections.iter().zip(&self.projection_inputs).any(|(pr, &i)| pr.to == p && i == k);
        let drives = |k: usize| {
            let mut of_k = net.drives.iter().zip(&self.drive_inputs).filter(|&(d, &i)| d.pop == p && i == k);
            of_k.try_fold(0.0, |sum, (d, _)| match d.value {
                Init::Const(c) => Some(sum + c),
                _ => None,
            })
        };
        (0..n_inputs).map(|k| if delivered(k) { None } else { drives(k).filter(|v| v.is_finite()) }).collect()
    }
}

/// A plastic projection ([`net::plastic`]): its presynaptic traces (run as a stage of
/// its source neurons, whose efficacy is unused) and the rules run per synapse at pre
/// and post events, each a step over synapses (every param uniform).
#[derive(Clone, Debug)]
pub struct PlasticPlan {
    pub traces: Option<PreStagePlan>,
    pub on_pre: Option<RulePlan>,
    pub on_post: Option<RulePlan>,
}

/// One rule: its step and where each of its states and inputs comes from.
#[derive(Clone, Debug)]
pub struct RulePlan {
    pub dynamics: Dynamics,
    pub states: Vec<net::Slot>,
    pub inputs: Vec<net::Slot>,
}

/// A projection's presynaptic stage ([`net::pre_stage`]): dynamics run for each source
/// neuron, whose efficacy scales the source's activity before it is delivered.
#[derive(Clone, Debug)]
pub struct PreStagePlan {
    /// Source neurons per batch element.
    pub n: usize,
    pub dynamics: Dynamics,
    /// The kernel input that receives the source's activity.
    pub pre_input: usize,
    /// The state holding the efficacy of the latest spike; `None` for a gated synapse,
    /// whose stage sends its `output` (`F`) every step ([`net::presyn`]).
    pub efficacy: Option<usize>,
}

/// One population: its size and kind, and its dynamics unless it is a `Linear` readout.
#[derive(Clone, Debug)]
pub struct PopulationPlan {
    pub name: String,
    /// Neurons per batch element.
    pub n: usize,
    pub kind: PopKind,
    pub dynamics: Option<Dynamics>,
}

/// What a population with a model runs, and the values it starts from (per neuron; the
/// runtime repeats them for each batch element).
#[derive(Clone, Debug)]
pub struct Dynamics {
    /// The discretised step, `dt` fixed; with derivative outputs when compiled for learning.
    pub step: Step,
    /// Where the step writes D, Df, ds/dh and dh/dtheta among its states (learning only).
    pub deriv: Option<DerivLayout>,
    /// How each param reaches the kernel (layout order).
    pub specs: Vec<ParamSpec>,
    /// The `PerNeuron` params, in layout order: `n` values each.
    pub per_neuron: Vec<Vec<f64>>,
    /// Initial value of every state in layout order (derivative outputs included): `n` each.
    pub initial: Vec<Vec<f64>>,
    pub state_names: Vec<String>,
    pub input_names: Vec<String>,
}

/// Compiles every population of `net` (see the module doc).
pub fn compile_network(program: &Program, net: &NetworkDef, opts: &CompileOptions) -> Result<NetworkPlan, PipelineError> {
    let cx = NetworkCx::new(program, net, opts);
    let mut populations = Vec::with_capacity(net.populations.len());
    let mut groups = Vec::with_capacity(net.populations.len());
    for pi in 0..net.populations.len() {
        let (plan, group) = cx.population(pi)?;
        populations.push(plan);
        groups.push(group);
    }
    let drive_inputs = cx.drive_inputs(&groups)?;
    let projection_inputs = cx.projection_inputs(&groups)?;
    let pre_stages = (0..net.projections.len()).map(|pi| cx.pre_stage(pi)).collect::<Result<_, _>>()?;
    let plastic = (0..net.projections.len()).map(|pi| cx.plastic(pi)).collect::<Result<_, _>>()?;
    Ok(NetworkPlan { name: net.name.clone(), dt: cx.dt, seed: cx.seed, populations, drive_inputs, projection_inputs, pre_stages, plastic })
}

/// The state of one network's compilation.
struct NetworkCx<'a> {
    program: &'a Program,
    net: &'a NetworkDef,
    opts: &'a CompileOptions,
    plan: NetPlan,
    dt: f64,
    seed: u64,
    rng: Rng,
}

/// One population's model, lowered once, and its param values.
struct PopulationCx<'a> {
    n: usize,
    /// `net.pop`: names the random streams of its params and states.
    qualified: String,
    group: &'a GroupModel,
    lowered: LoweredModel,
    /// Per param (layout order): the value when it is the same for every neuron.
    uniform: Vec<Option<f64>>,
    /// Per param: one value per neuron when it is not.
    per_neuron: Vec<Option<Vec<f64>>>,
}

impl<'a> NetworkCx<'a> {
    fn new(program: &'a Program, net: &'a NetworkDef, opts: &'a CompileOptions) -> NetworkCx<'a> {
        let seed = net.seed.unwrap_or(opts.seed);
        NetworkCx { program, net, opts, plan: net::plan(program, net), dt: resolve_dt(opts.dt, Some(net)), seed, rng: Rng::new(seed) }
    }

    /// Composes, lowers, discretises and instantiates population `pi`.
    fn population(&self, pi: usize) -> Result<(PopulationPlan, Option<GroupModel>), PipelineError> {
        let p = &self.net.populations[pi];
        let error = |message: String| PipelineError { population: p.name.clone(), message, diagnostic: None };
        let diagnostic = |d: Diagnostic| PipelineError { population: p.name.clone(), message: d.message.clone(), diagnostic: Some(d) };
        let mut plan = PopulationPlan { name: p.name.clone(), n: p.size, kind: p.kind, dynamics: None };
        let Some(group) = net::compose(self.program, self.net, &self.plan, pi) else { return Ok((plan, None)) };
        let mut group = group.map_err(diagnostic)?;
        if let Some(m) = self.opts.method {
            group.model.method = Some(m);
        }
        plan.dynamics = Some(self.dynamics(&group, p.size, format!("{}.{}", self.net.name, p.name), p.kind).map_err(|e| match e {
            Ok(d) => diagnostic(d),
            Err(m) => error(m),
        })?);
        Ok((plan, Some(group)))
    }

    /// Lowers, discretises and instantiates `group` for `n` neurons named `qualified`
    /// (their random streams); a coded diagnostic or a message when it cannot.
    fn dynamics(&self, group: &GroupModel, n: usize, qualified: String, kind: PopKind) -> Result<Dynamics, Result<Diagnostic, String>> {
        let error = |message: String| Err(message);
        let diagnostic = |d: Diagnostic| Ok(d);
        let lowered = ir::lower_model(&group.model).map_err(|e| error(e.to_string()))?;
        let mut cx = PopulationCx { n, qualified, group, lowered, uniform: Vec::new(), per_neuron: Vec::new() };
        cx.param_values(&self.rng, self.dt).map_err(error)?;
        cx.trainable_per_neuron();
        let (step, deriv) = cx.discretise(self.opts, self.dt, kind).map_err(diagnostic)?;
        let initial = cx.initial_states(&step, &self.rng, self.dt).map_err(error)?;
        let specs = cx.specs();
        // The backends' own checks, made here once so the refusal names the population
        // (and `explain --network` / the GPU refuse what the CPU backends refuse).
        crate::backend::specialise::check(&step, &specs).map_err(|e| error(e.to_string()))?;
        Ok(Dynamics {
            specs,
            per_neuron: cx.per_neuron.iter().flatten().cloned().collect(),
            initial,
            state_names: (0..step.layout.states.len()).map(|k| step.state_name(k).to_string()).collect(),
            input_names: (0..step.layout.inputs.len()).map(|k| step.input_name(k).to_string()).collect(),
            step,
            deriv,
        })
    }

    /// Projection `pi`'s presynaptic stage, run as a population of its source neurons
    /// (named `NET.PROJ.pre`). Learning through it is not implemented: refused.
    fn pre_stage(&self, pi: usize) -> Result<Option<PreStagePlan>, PipelineError> {
        let Some(stage) = net::pre_stage(self.program, self.net, pi) else { return Ok(None) };
        let proj = &self.net.projections[pi];
        let to = proj.to;
        let diagnostic = |d: Diagnostic| PipelineError { population: self.net.populations[to].name.clone(), message: d.message.clone(), diagnostic: Some(d) };
        let stage = stage.map_err(diagnostic)?;
        if self.opts.learning {
            return Err(self.error(to, format!("projection `{}`: training through presynaptic synapse state (short-term plasticity) is not supported yet; `snnc run` simulates it", proj.name)));
        }
        self.stage_plan(pi, stage).map(Some)
    }

    /// A presynaptic stage run as a population of projection `pi`'s source neurons.
    fn stage_plan(&self, pi: usize, stage: net::PreStage) -> Result<PreStagePlan, PipelineError> {
        let proj = &self.net.projections[pi];
        let to = proj.to;
        let diagnostic = |d: Diagnostic| PipelineError { population: self.net.populations[to].name.clone(), message: d.message.clone(), diagnostic: Some(d) };
        if proj.from_state.is_some() {
            return Err(self.error(to, format!("projection `{}` reads a state, not spikes: its synapse's presynaptic state needs spikes", proj.name)));
        }
        let n = match proj.from {
            Source::Input(i) => self.net.inputs[i].size,
            Source::Pop(q) => self.net.populations[q].size,
        };
        let mut group = GroupModel { model: stage.model, group_inputs: Vec::new(), group_syms: Vec::new(), direct_inputs: Vec::new(), settings: stage.settings };
        if let Some(m) = self.opts.method {
            group.model.method = Some(m);
        }
        let dynamics = self.dynamics(&group, n, format!("{}.{}.pre", self.net.name, proj.name), PopKind::Layer).map_err(|e| match e {
            Ok(d) => diagnostic(d),
            Err(m) => self.error(to, format!("projection `{}` (presynaptic state): {m}", proj.name)),
        })?;
        let pre_input = input_index(&group.model, stage.pre).map_err(|m| self.error(to, m))?;
        let efficacy = match stage.efficacy {
            Some(e) => Some(dynamics.step.layout.states.iter().position(|s| *s == e).ok_or_else(|| self.error(to, "internal: the efficacy is not a state of the stage".into()))?),
            None => None,
        };
        Ok(PreStagePlan { n, dynamics, pre_input, efficacy })
    }

    /// Projection `pi`'s plasticity: its traces' stage and its rules. Training through
    /// changing weights is refused.
    fn plastic(&self, pi: usize) -> Result<Option<PlasticPlan>, PipelineError> {
        let Some(plastic) = net::plastic(self.program, self.net, pi) else { return Ok(None) };
        let proj = &self.net.projections[pi];
        let to = proj.to;
        let diagnostic = |d: Diagnostic| PipelineError { population: self.net.populations[to].name.clone(), message: d.message.clone(), diagnostic: Some(d) };
        let plastic = plastic.map_err(diagnostic)?;
        if self.opts.learning {
            return Err(self.error(to, format!("projection `{}`: training through a plastic synapse (weights changed by `on pre` / `on post`) is not supported; `snnc run` simulates it", proj.name)));
        }
        let traces = plastic.traces.map(|stage| self.stage_plan(pi, stage)).transpose()?;
        let rule = |r: net::Rule| -> Result<RulePlan, PipelineError> {
            let mut group = GroupModel { model: r.model, group_inputs: Vec::new(), group_syms: Vec::new(), direct_inputs: Vec::new(), settings: r.settings };
            if let Some(m) = self.opts.method {
                group.model.method = Some(m);
            }
            let qualified = format!("{}.{}.{}", self.net.name, proj.name, group.model.name);
            let dynamics = self.dynamics(&group, 1, qualified, PopKind::Layer).map_err(|e| match e {
                Ok(d) => diagnostic(d),
                Err(m) => self.error(to, format!("projection `{}` (plasticity): {m}", proj.name)),
            })?;
            Ok(RulePlan { dynamics, states: r.states, inputs: r.inputs })
        };
        let on_pre = plastic.on_pre.map(rule).transpose()?;
        let on_post = plastic.on_post.map(rule).transpose()?;
        Ok(Some(PlasticPlan { traces, on_pre, on_post }))
    }

    /// Each drive's kernel input in its target.
    fn drive_inputs(&self, groups: &[Option<GroupModel>]) -> Result<Vec<usize>, PipelineError> {
        self.net
            .drives
            .iter()
            .map(|d| {
                let g = groups[d.pop].as_ref().expect("sema: drives target populations with a model");
                input_index(&g.model, g.direct_input(d.port)).map_err(|message| self.error(d.pop, message))
            })
            .collect()
    }

    /// Each projection's kernel input in its target: the input of its synapse group, or
    /// the port it connects to directly.
    fn projection_inputs(&self, groups: &[Option<GroupModel>]) -> Result<Vec<usize>, PipelineError> {
        let mut out = Vec::with_capacity(self.net.projections.len());
        for (pi, pr) in self.net.projections.iter().enumerate() {
            let Some(g) = &groups[pr.to] else {
                out.push(0);
                continue;
            };
            let sym: SymId = match self.plan.pops[pr.to].syn_groups.iter().position(|sg| sg.projections.contains(&pi)) {
                Some(gi) => g.group_inputs[gi],
                None => g.direct_input(pr.port.expect("sema: a projection into a model names a port")),
            };
            out.push(input_index(&g.model, sym).map_err(|message| self.error(pr.to, message))?);
        }
        Ok(out)
    }

    fn error(&self, pop: usize, message: String) -> PipelineError {
        PipelineError { population: self.net.populations[pop].name.clone(), message, diagnostic: None }
    }
}

impl PopulationCx<'_> {
    /// The params: settings (a constant is uniform, a distribution is sampled per
    /// neuron), else the declared defaults, evaluated in order (a default may read
    /// earlier params; one that reads a heterogeneous param takes neuron 0's value).
    fn param_values(&mut self, rng: &Rng, dt: f64) -> Result<(), String> {
        let model = &self.group.model;
        let params = &self.lowered.layout.params;
        self.uniform = vec![None; params.len()];
        self.per_neuron = vec![None; params.len()];
        for (k, &sym) in params.iter().enumerate() {
            match self.setting(sym) {
                Some(Init::Const(v)) => self.uniform[k] = Some(v),
                Some(init) => {
                    let stream = stream_id(&format!("{}.{}", self.qualified, model.symbols[sym].name));
                    self.per_neuron[k] = Some((0..self.n).map(|i| rng::sample(&init, rng, stream, i as u64, 0)).collect());
                }
                None => {
                    let Some(node) = self.lowered.param_defaults[k] else {
                        return Err(format!("param `{}` has no value", model.symbols[sym].name));
                    };
                    let vals = self.values_of_neuron(0);
                    let env = Env { params: &vals, dt, ..Env::default() };
                    self.uniform[k] = Some(ir::eval(&self.lowered.graph, &[node], &env).map_err(|e| e.to_string())?[0]);
                }
            }
        }
        Ok(())
    }

    /// A trainable param is per neuron (one value each, never folded into the kernel as
    /// a constant): the step can be differentiated with respect to it, and trained
    /// values can be loaded into any network (evaluation, `snnc run --weights`).
    fn trainable_per_neuron(&mut self) {
        for (k, &sym) in self.lowered.layout.params.iter().enumerate() {
            if let (true, Some(v)) = (self.group.model.symbols[sym].trainable, self.uniform[k]) {
                self.uniform[k] = None;
                self.per_neuron[k] = Some(vec![v; self.n]);
            }
        }
    }

    /// The step at the resolved dt; knowing the uniform params lets deeply coupled linear
    /// systems integrate exactly. With learning, spiking layers and readouts with
    /// dynamics also write their derivatives; a state-free model has none.
    fn discretise(&self, opts: &CompileOptions, dt: f64, kind: PopKind) -> Result<(Step, Option<DerivLayout>), Diagnostic> {
        let model = &self.group.model;
        let step = match opts.smooth_spikes {
            Some(a) => discretise::discretise_smooth(model, a).map(|s| s.at_dt(dt)),
            None => discretise::discretise_fixed(model, &self.uniform, dt),
        }?;
        if opts.learning && (step.spike.is_some() || (kind == PopKind::Readout && step.n_hidden > 0)) {
            let (s, l) = step.with_derivative_outputs()?;
            return Ok((s, Some(l)));
        }
        Ok((step, None))
    }

    /// Initial states: settings, else the declared initial value (evaluated per neuron:
    /// it may be random or read params), else 0. The refractory counter starts at -dt
    /// (free); derivative outputs at 0.
    fn initial_states(&self, step: &Step, rng: &Rng, dt: f64) -> Result<Vec<Vec<f64>>, String> {
        let mut out = Vec::with_capacity(step.layout.states.len());
        for (k, &sym) in step.layout.states.iter().enumerate() {
            let sname = &step.model.symbols[sym].name;
            let values = if sname == "_refractory" && k >= step.n_hidden {
                vec![-dt; self.n]
            } else if let Some(init) = self.setting(sym) {
                let stream = stream_id(&format!("{}.{sname}", self.qualified));
                (0..self.n).map(|i| rng::sample(&init, rng, stream, i as u64, 0)).collect()
            } else if let Some(node) = self.lowered.state_init.get(k).copied().flatten() {
                self.evaluate_per_neuron(node, stream_id(&format!("{}.{sname}.init", self.qualified)), dt)?
            } else {
                vec![0.0; self.n]
            };
            out.push(values);
        }
        Ok(out)
    }

    /// A declared initial value, evaluated for each neuron with its params and its own
    /// random draws.
    fn evaluate_per_neuron(&self, node: ir::NodeId, stream: u32, dt: f64) -> Result<Vec<f64>, String> {
        let mut out = Vec::with_capacity(self.n);
        for i in 0..self.n {
            let params = self.values_of_neuron(i);
            let random: Vec<f64> = (0..self.lowered.random_slots)
                .map(|s| random_draw(RandomCtx { seed: u64::from(stream), step: u64::MAX, offset: 0 }, i as u64, s, true))
                .collect();
            let env = Env { params: &params, random: &random, dt, ..Env::default() };
            out.push(ir::eval(&self.lowered.graph, &[node], &env).map_err(|e| e.to_string())?[0]);
        }
        Ok(out)
    }

    /// Every param's value for neuron `i` (NaN for one not known yet).
    fn values_of_neuron(&self, i: usize) -> Vec<f64> {
        self.uniform.iter().zip(&self.per_neuron).map(|(u, p)| u.or(p.as_ref().map(|v| v[i])).unwrap_or(f64::NAN)).collect()
    }

    fn setting(&self, sym: SymId) -> Option<Init> {
        self.group.settings.iter().find(|(s, _)| *s == sym).map(|(_, i)| *i)
    }

    fn specs(&self) -> Vec<ParamSpec> {
        self.uniform.iter().map(|u| u.map_or(ParamSpec::PerNeuron, ParamSpec::Uniform)).collect()
    }
}

/// The position of input `sym` among the model's kernel inputs.
fn input_index(model: &Model, sym: SymId) -> Result<usize, String> {
    model.inputs().position(|(id, _)| id == sym).ok_or_else(|| format!("internal: symbol {sym} is not an input of `{}`", model.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceMap;
    use crate::sema::{LoadOptions, check_path};

    fn golden_lif() -> Program {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/golden_lif.snn");
        let (program, diags) = check_path(&path, &LoadOptions::default(), &mut SourceMap::new());
        assert!(diags.iter().all(|d| !d.is_error()));
        program
    }

    #[test]
    fn dt_is_the_command_lines_over_the_networks_over_the_default() {
        let program = golden_lif();
        let net = &program.networks[0];
        assert_eq!(resolve_dt(Some(5e-4), Some(net)), 5e-4);
        assert_eq!(resolve_dt(None, Some(net)), 1e-3);
        assert_eq!(resolve_dt(None, None), DEFAULT_DT);
        // The plan and every step carry the one resolved value.
        for (requested, want) in [(None, 1e-3), (Some(2e-4), 2e-4)] {
            let plan = compile_network(&program, net, &CompileOptions { dt: requested, learning: true, ..CompileOptions::default() }).unwrap();
            assert_eq!(plan.dt, want);
            let steps: Vec<&Step> = plan.populations.iter().filter_map(|p| p.dynamics.as_ref().map(|d| &d.step)).collect();
            assert!(!steps.is_empty() && steps.iter().all(|s| s.dt == Some(want)));
        }
    }

    #[test]
    fn a_plan_holds_what_the_runtime_allocates() {
        let program = golden_lif();
        let plan = compile_network(&program, &program.networks[0], &CompileOptions { learning: true, ..CompileOptions::default() }).unwrap();
        let rec = plan.populations.iter().find(|p| p.name == "rec").unwrap();
        let d = rec.dynamics.as_ref().unwrap();
        // Uniform params folded, per-neuron ones listed; n values per state, the
        // derivative outputs included; LIF has one input port.
        assert_eq!(d.specs.iter().filter(|s| **s == ParamSpec::PerNeuron).count(), d.per_neuron.len());
        assert_eq!(d.initial.len(), d.step.layout.states.len());
        assert!(d.initial.iter().all(|v| v.len() == rec.n));
        assert!(d.deriv.is_some() && d.input_names == ["I"]);
        // The readout is `Linear`: no dynamics; every projection lands on input 0 of LIF.
        assert!(plan.populations.iter().any(|p| p.name == "out" && p.dynamics.is_none()));
        assert_eq!(plan.projection_inputs, vec![0, 0, 0]);
    }
}
