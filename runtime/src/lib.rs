//! The snnc runtime: network state, projections, simulation and training drivers.
//!
//! The runtime does not care how a kernel was made (Cranelift JIT, CUDA PTX, or the
//! reference interpreter): it owns buffers, connectivity and the order of a step.
pub use snnc_compiler as compiler;

pub mod connectivity;
pub mod engine;
pub mod gpu;
pub mod learn;
pub mod network;
pub mod propagate;
pub mod record;
pub mod rng;
pub mod train;
