//! The steps a program's models or a network's populations run, to explain or emit
//! (`snnc explain`, `snnc emit`, the Python module's `explain`).

use snnc_compiler::backend::ParamSpec;
use snnc_compiler::diag::Diagnostic;
use snnc_compiler::discretise::{Step, discretise};
use snnc_compiler::pipeline::{self, CompileOptions};
use snnc_compiler::sema::{self, NetworkDef, Program};
use snnc_compiler::{FileId, SourceMap};

/// A step to explain or emit: its label, the step, and how its params reach a kernel.
pub struct Explained {
    pub label: String,
    pub step: Step,
    pub specs: Vec<ParamSpec>,
    /// Per input of a network's population: its value where the CPU runtime folds it
    /// into the kernel ([`pipeline::NetworkPlan::constant_inputs`]); empty otherwise.
    pub constant_inputs: Vec<Option<f64>>,
}

/// Why there is nothing to explain.
pub enum Refusal {
    /// A language matter, pointing into the sources.
    Diagnostic(Box<Diagnostic>),
    Message(String),
}

/// The steps of a checked program whose entry file is named `entry`: one network's
/// populations as the runtime runs them (the pipeline's steps: uniform params folded,
/// dt resolved by `pipeline::resolve_dt` from `dt`; the entry file's one network when it
/// defines no model), or its models (`model`, else those defined in the entry file),
/// discretised symbolically (dt then set from `dt` or the
/// default, for the backends; every param a per-neuron array, so the kernels serve any
/// values).
pub fn steps(program: &Program, sources: &SourceMap, entry: &str, model: Option<&str>, network: Option<&str>, dt: Option<f64>) -> Result<Vec<Explained>, Refusal> {
    if let Some(nname) = network {
        let net = program.network(nname).ok_or_else(|| Refusal::Message(format!("no network `{nname}` in {entry}")))?;
        return network_steps(program, net, dt);
    }
    // Past the last file, names read `<unknown>`: the search ends there.
    let entry_id: Option<FileId> = (0..1 << 20).take_while(|i| sources.name(*i) != "<unknown>").find(|i| sources.name(*i) == entry);
    let chosen: Vec<&sema::Model> = match model {
        Some(name) => match program.model(name) {
            Some(m) => vec![m],
            None => {
                let names: Vec<&str> = program.models.iter().map(|m| m.name.as_str()).collect();
                return Err(Refusal::Message(format!("no model `{name}` in {entry} (models: {})", names.join(", "))));
            }
        },
        None => program.models.iter().filter(|m| Some(m.span.file) == entry_id).collect(),
    };
    if chosen.is_empty() {
        // A file of networks only (examples/coba.snn): its one network, else ask which.
        let nets: Vec<&NetworkDef> = program.networks.iter().filter(|n| Some(n.span.file) == entry_id).collect();
        return match nets[..] {
            [net] => network_steps(program, net, dt),
            [] => Err(Refusal::Message(format!("{entry} defines no model and no network: nothing to show (give --model NAME for an imported model)"))),
            _ => Err(Refusal::Message(format!(
                "{entry} defines no model and {} networks: give --network ({})",
                nets.len(),
                nets.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        };
    }
    let dt = pipeline::resolve_dt(dt, None);
    let mut out = Vec::new();
    for m in chosen {
        let step = discretise(m).map_err(|d| Refusal::Diagnostic(Box::new(d)))?;
        let specs = vec![ParamSpec::PerNeuron; step.layout.params.len()];
        out.push(Explained { label: m.name.clone(), step: step.at_dt(dt), specs, constant_inputs: Vec::new() });
    }
    Ok(out)
}

/// The steps of a network's populations with a model, from the pipeline, labelled
/// `net.pop (Model)`.
fn network_steps(program: &Program, net: &NetworkDef, dt: Option<f64>) -> Result<Vec<Explained>, Refusal> {
    // The plan holds every neuron's initial values: a network too large to build is
    // refused as `snnc run` refuses it, not left to fail an allocation.
    let run = snnc_runtime::network::Options { dt, ..Default::default() };
    snnc_runtime::memory::check(program, net, &run, 8).map_err(|e| Refusal::Diagnostic(Box::new(super::load::too_large(&e, false))))?;
    let opts = CompileOptions { dt, ..CompileOptions::default() };
    let plan = pipeline::compile_network(program, net, &opts).map_err(|e| match e.diagnostic {
        Some(d) => Refusal::Diagnostic(Box::new(d)),
        None => Refusal::Message(e.to_string()),
    })?;
    let mut out = Vec::new();
    for (i, p) in plan.populations.iter().enumerate() {
        let Some(d) = &p.dynamics else { continue };
        let mut step = d.step.clone();
        step.model.name = format!("{}.{} ({})", net.name, p.name, step.model.name);
        out.push(Explained { label: p.name.clone(), step, specs: d.specs.clone(), constant_inputs: plan.constant_inputs(net, i) });
    }
    // Presynaptic synapse state: one stage per projection, kept per source neuron.
    let stage = |pr: &snnc_compiler::sema::Projection, stage: pipeline::PreStagePlan, what: &str| {
        let mut step = stage.dynamics.step;
        step.model.name = format!("{}.{}.pre ({}, {what})", net.name, pr.name, step.model.name);
        Explained { label: format!("{}.pre", pr.name), step, specs: stage.dynamics.specs, constant_inputs: Vec::new() }
    };
    for (pr, s) in net.projections.iter().zip(plan.pre_stages) {
        out.extend(s.map(|s| stage(pr, s, "per source neuron")));
    }
    // Plasticity: the presynaptic traces, and each rule, run over the synapses of the
    // step's events.
    for (pr, plastic) in net.projections.iter().zip(plan.plastic) {
        let Some(plastic) = plastic else { continue };
        out.extend(plastic.traces.map(|s| stage(pr, s, "traces per source neuron")));
        for (event, rule) in [("on pre", plastic.on_pre), ("on post", plastic.on_post)] {
            let Some(rule) = rule else { continue };
            let mut step = rule.dynamics.step;
            let label = step.model.name.clone();
            step.model.name = format!("{}.{label} (weight rule at each {event} event, per synapse)", net.name);
            out.push(Explained { label, step, specs: rule.dynamics.specs, constant_inputs: Vec::new() });
        }
    }
    Ok(out)
}
