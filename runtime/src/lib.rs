//! The snnc runtime: network state, projections, simulation and training drivers.
//!
//! Populated by the CPU runtime issue; the compiler front end does not depend on it.
pub use snnc_compiler as compiler;
