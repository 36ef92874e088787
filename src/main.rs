use clap::Parser;
use std::process::ExitCode;

// Buffers start on cache lines: the kernels' vector loads and the threads' shares of a
// population do not straddle lines (snnc_runtime::alloc).
#[global_allocator]
static ALLOC: snnc_runtime::alloc::CacheAligned = snnc_runtime::alloc::CacheAligned;

fn main() -> ExitCode {
    snnc::cli::quiet_broken_pipe();
    let cli = snnc::cli::Cli::parse();
    snnc::cli::run(cli)
}
