//! The snnc runtime: network state, projections, simulation and training drivers.
//!
//! The runtime does not care how a kernel was made (Cranelift JIT, CUDA PTX, or the
//! reference interpreter): it owns buffers, connectivity and the order of a step.
pub use snnc_compiler as compiler;
/// Counter-based random numbers, shared with the compiler (instantiation and kernels).
pub use snnc_compiler::rng;

pub mod adapter;
pub mod alloc;
pub mod batchnorm;
pub mod connectivity;
pub mod conv;
pub mod data;
mod balance;
mod dropout;
pub mod error;
pub mod force;
pub mod engine;
pub mod gpu;
pub mod kernels;
pub mod learn;
pub mod memory;
pub mod network;
mod parallel;
pub mod partition;
pub mod plastic;
pub mod presyn;
pub mod propagate;
#[cfg(feature = "mpi")]
pub mod ranks;
pub mod record;
pub mod scalar;
pub mod sends;
pub mod timers;
pub mod train;
