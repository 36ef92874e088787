//! snnc: a modelling language and compiler for spiking neural networks.
//!
//! This crate is the facade: it re-exports the compiler and runtime, and hosts the
//! `snnc` command-line tool (`src/main.rs`, commands in `src/cli/`).
pub use snnc_compiler as compiler;
pub use snnc_runtime as runtime;

pub mod api;
pub mod cli;
