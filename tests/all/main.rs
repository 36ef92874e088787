//! The integration tests of the `snnc` command line, one module per subject, all in one
//! test binary: each `tests/*.rs` used to be its own crate, compiled and linked on its
//! own (naga's `tests/naga/main.rs` layout). Run one subject with
//! `cargo test -p snnc --test all -- explain::`.
//! Snapshots are `snapshots/all__<module>__<name>.snap` (insta names them by module path).

mod bench_cli;
mod cli;
mod explain;
mod fit_cli;
mod fly;
mod grad_cli;
#[cfg(feature = "mpi")]
mod mpi;
mod run_cli;
mod train_cli;
mod train_faults;
