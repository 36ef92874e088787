//! The gradient of one batch of sequences (the `snnc grad` contract): the network built
//! for learning, given weights set, the loss summed over steps, no optimiser step.

use ndarray::{Array2, Array3};
use snnc_compiler::sema::{NetworkDef, Program};
use snnc_runtime::kernels::{JitFactory, KernelFactory};
use snnc_runtime::learn::{Gradients, Method, gradient};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::scalar::Float;

/// What to differentiate and how.
#[derive(Clone, Debug)]
pub struct GradSpec {
    /// `bptt`, `d-rtrl` or `es-d-rtrl` (with `etrace_decay`).
    pub method: MethodName,
    /// ES-D-RTRL trace decay (0 < decay < 1); an integer r >= 2 means (r - 1) / (r + 1).
    pub etrace_decay: f64,
    pub seed: u64,
    /// Network, traces and gradients in f64 (else f32).
    pub f64: bool,
    /// Also give per-step hidden states and eligibility traces.
    pub record: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MethodName {
    Bptt,
    DRtrl,
    EsDRtrl,
}

impl MethodName {
    /// `bptt`, `d-rtrl`, `es-d-rtrl` (as on the command line).
    pub fn parse(s: &str) -> Result<MethodName, String> {
        match s {
            "bptt" => Ok(MethodName::Bptt),
            "d-rtrl" | "d_rtrl" => Ok(MethodName::DRtrl),
            "es-d-rtrl" | "es_d_rtrl" => Ok(MethodName::EsDRtrl),
            _ => Err(format!("unknown method `{s}` (bptt, d-rtrl, es-d-rtrl)")),
        }
    }
}

impl GradSpec {
    /// The learning method, with the trace decay checked.
    pub fn method(&self) -> Result<Method, String> {
        let d = self.etrace_decay;
        let decay = if d >= 2.0 && d.fract() == 0.0 { (d - 1.0) / (d + 1.0) } else { d };
        if !(decay > 0.0 && decay < 1.0) {
            return Err(format!("--etrace-decay must be in (0, 1) or an integer rank >= 2, got {d}"));
        }
        Ok(match self.method {
            MethodName::Bptt => Method::Bptt,
            MethodName::DRtrl => Method::DRtrl,
            MethodName::EsDRtrl => Method::EsDRtrl { decay },
        })
    }
}

/// The gradient of `x` (T, B, inputs) against `target` (T, B, readouts) on the CPU (JIT
/// kernels), with `weights` (by projection or trainable param name, from `origin`: how
/// an unknown name's error names them) set first.
pub fn compute(
    program: &Program,
    def: &NetworkDef,
    spec: &GradSpec,
    x: Array3<f64>,
    target: &Array3<f64>,
    weights: &[(String, Array2<f64>)],
    origin: &str,
) -> Result<Gradients, String> {
    if x.shape()[..2] != target.shape()[..2] {
        return Err(format!("`x` is {:?} and `target` is {:?}: T and B must agree", x.shape(), target.shape()));
    }
    if spec.f64 {
        compute_in::<f64>(program, def, spec, x, target, weights, origin, &JitFactory)
    } else {
        compute_in::<f32>(program, def, spec, x, target, weights, origin, &JitFactory)
    }
}

#[allow(clippy::too_many_arguments)]
fn compute_in<T: Float>(
    program: &Program,
    def: &NetworkDef,
    spec: &GradSpec,
    x: Array3<f64>,
    target: &Array3<f64>,
    weights: &[(String, Array2<f64>)],
    origin: &str,
    factory: &'static dyn KernelFactory<T>,
) -> Result<Gradients, String> {
    let batch = x.shape()[1];
    let o = Options { seed: spec.seed, batch, learning: true, ..Options::default() };
    let mut network = Network::<T>::build(program, def, &o, factory).map_err(|e| e.to_string())?;
    set_weights(&mut network, weights, origin)?;
    let trainable = trainable_names(def, &network);
    let method = spec.method()?;
    gradient(&mut network, &trainable, &[x], target, method, spec.record).map_err(|e| e.to_string())
}

/// Sets each of `weights` (by projection or trainable param name, from `origin`) in
/// `network`; an unknown name is refused, listing the names there are.
pub fn set_weights<T: Float>(network: &mut Network<T>, weights: &[(String, Array2<f64>)], origin: &str) -> Result<(), String> {
    for (name, w) in weights {
        if network.trainable(name).is_none() {
            let mut known: Vec<String> = network.projections().into_iter().map(|(n, _)| n).collect();
            known.extend(network.trainable_adapters());
            known.extend(network.trainable_params());
            known.extend(network.trainable_batch_norms());
            known.extend(network.batch_norm_state());
            return Err(format!("{origin} has weights `{name}`, but the network has no such projection or trainable param (it has: {})", known.join(", ")));
        }
        network.set_trainable(name, w.mapv(T::from_f64)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The names of the tensors `snnc grad` differentiates: the trainable projections, then
/// the params marked `trainable` (`POP.PARAM`).
pub fn trainable_names<T: Float>(def: &NetworkDef, network: &Network<T>) -> Vec<String> {
    let mut trainable: Vec<String> = def.projections.iter().filter(|p| p.trainable).map(|p| p.name.clone()).collect();
    trainable.extend(network.trainable_adapters());
    trainable.extend(network.trainable_params());
    trainable.extend(network.trainable_batch_norms());
    trainable
}
