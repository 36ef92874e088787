//! What a learner needs and how its failures read to a user: the memory a batch
//! element costs (checked before anything is allocated), and non-finite derivative
//! outputs named by what they are rather than by their internal state names.

use super::{Method, plan};
use crate::error::RuntimeError;
use crate::network::Network;
use crate::scalar::Float;

/// An estimate of the bytes one batch element costs a training run of `net` with
/// `method` over sequences of `steps` steps: the network's per-element buffers (states
/// with their derivative outputs, inputs, per-neuron params, spikes), the learning
/// signals, and the method's own state: ES-D-RTRL's factored traces (n_pre + K n per
/// projection), D-RTRL's full ones (n_pre K n per projection), or BPTT's tape (every
/// state at every step). Measured from a network built for any batch (`net.batch`
/// elements); weights and other per-network buffers are not counted.
pub fn bytes_per_element<T: Float>(net: &Network<T>, trainable: &[String], method: Method, steps: usize) -> Result<usize, RuntimeError> {
    let plan = plan(net, trainable)?;
    let b = net.batch.max(1);
    let per = |v: &[Vec<T>]| v.iter().map(Vec::len).sum::<usize>() / b;
    let n = |p: usize| net.pops[p].n;
    let k = |p: usize| net.pops[p].deriv.map_or(0, |d| d.k);
    let network: usize = net.pops.iter().map(|p| per(&p.states) + per(&p.inputs) + per(&p.per_neuron_params) + (p.spikes.len() + p.output.len()) / b).sum();
    // dL/ds, dL/dh and the learning signal, per population.
    let signals: usize = (0..net.pops.len()).map(|p| 3 * n(p) * k(p)).sum();
    let params: usize = plan.params.iter().map(|q| n(q.pop) * k(q.pop)).sum();
    let learner = match method {
        // Per step: the states, and each batch norm's zhat (its 1 / sigma is per neuron).
        Method::Bptt => steps.saturating_mul(net.pops.iter().map(|p| per(&p.states)).sum::<usize>() + plan.bn.iter().map(|bn| n(bn.pop)).sum::<usize>()),
        Method::DRtrl => plan.etrace.iter().map(|e| e.target.n_pre.saturating_mul(n(e.target.pop) * k(e.target.pop))).sum::<usize>() + params,
        Method::EsDRtrl { .. } => plan.etrace.iter().map(|e| e.target.n_pre + n(e.target.pop) * k(e.target.pop)).sum::<usize>() + params,
    };
    Ok((network + signals).saturating_add(learner).saturating_mul(std::mem::size_of::<T>()))
}

/// `e` as a user should read it: a non-finite derivative output of the learning step
/// (an internal state `_derivN`) is named by what it is (`dv/dw over one step`), with
/// the likely cause; any other error is returned as it is.
pub fn describe_non_finite<T>(net: &Network<T>, e: RuntimeError) -> RuntimeError {
    let RuntimeError::NonFinite { population, state, neuron, batch, step, value } = &e else { return e };
    let Some(pop) = net.pops.iter().find(|p| &p.name == population) else { return e };
    let (Some(layout), Some(s)) = (pop.deriv, pop.state_names.iter().position(|n| n == state)) else { return e };
    let Some(o) = s.checked_sub(layout.d) else { return e };
    let (k, n_in) = (layout.k, layout.n_in);
    let h = |a: usize| pop.state_names.get(a).map_or("?", String::as_str);
    let what = if o < k * k {
        format!("the derivative d{}/d{} over one step", h(o / k), h(o % k))
    } else if o < k * k + k * n_in {
        let (a, j) = ((o - k * k) / n_in, (o - k * k) % n_in);
        format!("the derivative d{}/d{} (of the state by its input)", h(a), pop.input_names.get(j).map_or("?", String::as_str))
    } else if o < k * k + k * n_in + k {
        format!("the surrogate derivative of the spike by {}", h(o - k * k - k * n_in))
    } else {
        let r = o - k * k - k * n_in - k;
        let param = pop.step.as_ref().and_then(|st| st.trainable_params().get(r % layout.n_p.max(1)).map(|&q| st.param_name(q).to_string()));
        format!("the derivative d{}/d{} (of the state by a trainable param)", h(r / layout.n_p.max(1)), param.as_deref().unwrap_or("?"))
    };
    RuntimeError::Input(format!(
        "{what} of neuron {neuron} (batch {batch}) of population `{population}` became {value} at step {step}: the network's states or weights \
         are far out of range (a learning rate too large for the weights' scale?)"
    ))
}
