//! The integration tests of `snnc-runtime`, one module per subject, all in one test
//! binary: each `tests/*.rs` used to be its own crate, compiled and linked on its own
//! (naga's `tests/naga/main.rs` layout). Run one subject with
//! `cargo test -p snnc-runtime --test all -- gpu_emu::`.
//! Snapshots are `snapshots/all__<module>__<name>.snap` (insta names them by module path).

mod batchnorm;
mod common;
// A real GPU through cudarc: only with the `cuda` feature (`scripts/gpu-tests.sh`).
#[cfg(feature = "cuda")]
mod cuda;
mod conv;
mod data;
mod fly_gpu;
mod force;
mod golden;
mod gpu_emu;
mod gpu_learn;
mod gpu_plastic;
mod learn;
mod learn_sparse;
mod memory;
mod network;
mod nmda;
mod partition;
mod rate;
mod regularise;
mod stdp;
mod stp;
