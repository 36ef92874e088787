//! The snnc compiler: `.snn` text → checked model → IR → backends.
//!
//! Pipeline (one module per stage):
//! - [`syntax`]: pest grammar → AST, and the canonical formatter;
//! - [`sema`]: imports, names, kinds and physical dimensions → a checked [`sema::Program`];
//! - later stages (discretisation, IR, derivatives, backends) consume `sema::Program`.
pub mod backend;
pub mod diag;
pub mod discretise;
pub mod explain;
pub mod ir;
pub mod net;
pub mod sema;
pub mod source;
pub mod span;
pub mod syntax;
pub mod units;

pub use diag::Diagnostic;
pub use source::SourceMap;
pub use span::{FileId, Span};
