//! An snnc network as a NIR graph: inputs as Input nodes, populations of the NIR models
//! ([`MODELS`]) as their neuron nodes, `Linear` readouts as Output nodes, dense
//! projections as Linear nodes, a `one_to_one weight 1` projection as a plain edge.
//! Whatever NIR cannot express is refused, naming it.

use super::import::{model_params, model_text};
use super::{Graph, MODELS, Node};
use ndarray::{Array2, ArrayD, IxDyn};
use snnc_compiler::discretise::discretise;
use snnc_compiler::explain::explain_json;
use snnc_compiler::sema::{self, Model, NetworkDef, PopModel, Program, Source, SynInit, Topology};
use snnc_compiler::SourceMap;
use snnc_runtime::network::{Network, Options};

/// Network `def` of `program` as a NIR graph: its params and weights as built with
/// `seed`, then `weights` (by projection name) set.
pub fn export(program: &Program, def: &NetworkDef, seed: u64, weights: &[(String, Array2<f64>)]) -> Result<Graph, String> {
    let o = Options { seed, ..Options::default() };
    let mut net = Network::<f64>::without_kernels(program, def, &o).map_err(|e| e.to_string())?;
    super::super::grad::set_weights(&mut net, weights, "the weights")?;
    let mut g = Graph::default();
    let vector = |v: Vec<f64>| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("a vector");
    for input in &def.inputs {
        g.nodes.push((input.name.clone(), Node { kind: "Input".into(), params: vec![("shape".into(), vector(vec![input.size as f64]))] }));
    }
    for (p, pop) in def.populations.iter().enumerate() {
        let node = match &pop.model {
            PopModel::Linear => Node { kind: "Output".into(), params: vec![("shape".into(), vector(vec![pop.size as f64]))] },
            PopModel::Model(id) => {
                let model = &program.models[*id];
                let kind = nir_kind(model).map_err(|why| format!("population `{}`: {why}", pop.name))?;
                let mut params = Vec::new();
                for name in model_params(kind) {
                    let v = net.param_values(p, name).ok_or_else(|| format!("population `{}`: no values of `{name}`", pop.name))?;
                    params.push((name.to_string(), vector(v)));
                }
                Node { kind: kind.into(), params }
            }
        };
        g.nodes.push((pop.name.clone(), node));
    }
    let source = |s: Source| match s {
        Source::Input(i) => def.inputs[i].name.clone(),
        Source::Pop(p) => def.populations[p].name.clone(),
    };
    for (k, proj) in def.projections.iter().enumerate() {
        let refuse = |why: &str| Err(format!("projection `{}`: {why}", proj.name));
        if let Some((syn, _)) = &proj.synapse {
            return refuse(&format!("it goes through synapse `{}`; NIR has no synapse node (NirCubaLIF's current is one: docs/nir.md)", program.models[*syn].name));
        }
        if proj.delay.as_ref().is_some_and(|d| d.constant() != Some(0.0)) {
            return refuse("it has a delay (NIR's Delay node is not exported yet)");
        }
        if proj.adapter.is_some() {
            return refuse("it has a low-rank adapter (`adapter rank R`), which NIR cannot express");
        }
        if proj.batch_norm {
            return refuse("it has `batch_norm`, which NIR has no node for (its running statistics are not exported)");
        }
        if proj.from_state.is_some() {
            return refuse("its source is a state, not spikes; NIR's edges carry a node's output");
        }
        let (from, to) = (source(proj.from), def.populations[proj.to].name.clone());
        match &proj.topology {
            Topology::OneToOne if proj.init.as_ref().and_then(SynInit::constant) == Some(1.0) => g.edges.push((from, to)),
            Topology::Dense => {
                let w = net.dense_weights(k).ok_or_else(|| format!("projection `{}`: no dense weights", proj.name))?;
                let t = w.t().to_owned().into_dyn();
                g.nodes.push((proj.name.clone(), Node { kind: "Linear".into(), params: vec![("weight".into(), t)] }));
                g.edges.push((from, proj.name.clone()));
                g.edges.push((proj.name.clone(), to));
            }
            _ => return refuse("only dense projections and `one_to_one weight 1` are exported (NIR's Linear is a dense matrix)"),
        }
    }
    // Spiking populations that feed nothing are the graph's outputs.
    let sinks: Vec<&str> = def
        .populations
        .iter()
        .enumerate()
        .filter(|(p, pop)| matches!(pop.model, PopModel::Model(_)) && !def.projections.iter().any(|x| x.from == Source::Pop(*p)))
        .map(|(_, pop)| pop.name.as_str())
        .collect();
    for s in &sinks {
        let name = if sinks.len() == 1 { "output".to_string() } else { format!("output_{s}") };
        let n = def.populations.iter().find(|p| p.name == *s).map_or(0, |p| p.size);
        g.nodes.push((name.clone(), Node { kind: "Output".into(), params: vec![("shape".into(), vector(vec![n as f64]))] }));
        g.edges.push((s.to_string(), name));
    }
    Ok(g)
}

/// The NIR type of `model`: one of [`MODELS`], when its discretised step is that of the
/// model's text there (with the same integration method).
fn nir_kind(model: &Model) -> Result<&'static str, String> {
    let known = MODELS.iter().map(|(_, m, _)| *m).collect::<Vec<_>>().join(", ");
    let Some((kind, name, _)) = MODELS.iter().find(|(_, m, _)| *m == model.name) else {
        return Err(format!("model `{}` is not one NIR has (snnc exports {known}: docs/nir.md)", model.name));
    };
    let text = match model.method {
        Some(m) => model_text(name, m),
        None => MODELS.iter().find(|(_, m, _)| m == name).map(|(_, _, t)| t.to_string()).unwrap_or_default(),
    };
    let mut sources = SourceMap::new();
    let (canonical, diags) = sema::check_source("<nir>", &text, &mut sources);
    let want = canonical.model(name).filter(|_| diags.iter().all(|d| !d.is_error())).ok_or("the NIR model text does not check")?;
    let json = |m: &Model| discretise(m).map(|mut s| explain_json(&mut s)).map_err(|d| d.message);
    if json(model)? != json(want)? {
        return Err(format!("model `{}` is not NIR's {kind} as docs/nir.md writes it (its equations differ)", model.name));
    }
    Ok(kind)
}
