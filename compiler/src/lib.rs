//! The snnc compiler: `.snn` text → checked model → IR → backends.
//!
//! Pipeline (one module per stage):
//! - [`syntax`]: pest grammar → AST, and the canonical formatter;
//! - [`sema`]: imports, names, kinds and physical dimensions → a checked [`sema::Program`];
//! - [`net`]: a network's synapse groups composed into each population's model;
//! - [`ir`]: models lowered to a dataflow graph, differentiated symbolically;
//! - [`discretise`]: ODEs and events → one step `h^t = f(h^{t-1}, y^t)` and its Jacobians;
//! - [`backend`]: a step specialised once ([`backend::specialise`]) → the interpreter,
//!   Cranelift or PTX kernel.
//!
//! [`pipeline`] drives the stages for a network: it turns (program, network, options)
//! into one plan per population, which is all the runtime needs. `docs/ARCHITECTURE.md`
//! has the whole floor plan.
pub mod backend;
pub mod diag;
pub mod discretise;
pub mod explain;
pub mod ir;
pub mod net;
pub mod pipeline;
pub mod rng;
pub mod sema;
pub mod source;
pub mod span;
pub mod syntax;
pub mod units;

pub use diag::Diagnostic;

/// Runs `f`, first moving to a fresh stack segment if little stack is left. Every
/// recursive pass over expressions calls it once per level, so that depth is bounded by
/// memory, not by the thread's stack (a long flat sum is a deep tree).
pub(crate) fn deep<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(256 * 1024, 8 * 1024 * 1024, f)
}
pub use source::SourceMap;
pub use span::{FileId, Span};
