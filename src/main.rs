use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    snnc::cli::quiet_broken_pipe();
    let cli = snnc::cli::Cli::parse();
    snnc::cli::run(cli)
}
