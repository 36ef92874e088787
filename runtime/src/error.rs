//! The runtime's error: a clear message, never a panic.

use snnc_compiler::backend::SpecialiseError;
use snnc_compiler::pipeline::PipelineError;
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

impl From<PipelineError> for RuntimeError {
    fn from(e: PipelineError) -> RuntimeError {
        RuntimeError::Build(e.to_string())
    }
}

impl From<SpecialiseError> for RuntimeError {
    fn from(e: SpecialiseError) -> RuntimeError {
        RuntimeError::Build(e.to_string())
    }
}
