//! Populations that send a declared value instead of a bare spike: a neuron's `output`
//! (the compiler makes it the step's "spike" output, so the kernels write it where
//! spikes go and propagation multiplies each weight by it, event-driven over its
//! non-zero entries). What the other parts of the runtime ask of them lives here.

use crate::error::RuntimeError;
use crate::network::{Network, Population};
use snnc_compiler::sema::Source;
use snnc_compiler::syntax::ast::ModelKind;

/// The name of the value population `pop` sends (its model's `output`), if it sends one
/// rather than bare spikes.
pub fn sent_value<T>(pop: &Population<T>) -> Option<&str> {
    let model = &pop.step.as_ref()?.model;
    match (&model.output, model.kind) {
        (Some((name, _)), ModelKind::Neuron) => Some(name),
        _ => None,
    }
}

/// Whether population `pop` sends a rate (an `output` and no spike condition): a value
/// every step, so it has no spike times to record.
pub fn sends_rate<T>(pop: &Population<T>) -> bool {
    sent_value(pop).is_some() && pop.step.as_ref().is_some_and(|s| s.model.spike.is_none())
}

/// The CUDA backend propagates 0/1 spikes and keeps no readout output for a projection
/// to read: populations sending values and readouts fed back into the network are
/// refused by name rather than run differently.
pub(crate) fn refuse_on_device<T>(net: &Network<T>) -> Result<(), RuntimeError> {
    if let Some((pop, name)) = net.pops.iter().find_map(|p| sent_value(p).map(|v| (p, v))) {
        return Err(RuntimeError::Build(format!(
            "`{}` sends its `output {name}` (a rate or graded event): the CUDA backend propagates spikes only; run it with --backend cpu",
            pop.name
        )));
    }
    for pr in &net.projs {
        if let Source::Pop(q) = pr.from
            && net.pops[q].step.is_none()
        {
            return Err(RuntimeError::Build(format!(
                "`{}` reads the readout `{}` (readout feedback): the CUDA backend does not run it yet; run it with --backend cpu",
                pr.name, net.pops[q].name
            )));
        }
    }
    Ok(())
}
