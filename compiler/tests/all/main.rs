//! The integration tests of `snnc-compiler`, one module per subject, all in one test
//! binary: each `tests/*.rs` used to be its own crate, compiled and linked on its own
//! (naga's `tests/naga/main.rs` layout). Run one subject with
//! `cargo test -p snnc-compiler --test all -- ptx::`.
//! Snapshots are `snapshots/all__<module>__<name>.snap` (insta names them by module path).

mod common;
mod diagnostics;
mod discretise;
mod frontend_scale;
mod fuzz;
mod ir_build;
mod ir_diff;
mod ir_lower;
mod jit;
mod plastic;
mod ptx;
mod specialise;
mod stdlib;
mod synapse_events;
mod trace;
