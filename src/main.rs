use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = snnc::cli::Cli::parse();
    snnc::cli::run(cli)
}
