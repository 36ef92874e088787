//! `snnc fmt FILE...`

use super::Reporter;
use snnc_compiler::SourceMap;
use snnc_compiler::syntax::{format::format_file, parse_file_recovering};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files to format.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Rewrite the files in place instead of printing them.
    #[arg(short, long, conflicts_with = "check")]
    pub write: bool,
    /// Print nothing; exit 1 if a file is not already formatted.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: Args, reporter: &Reporter) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for path in &args.files {
        let mut sources = SourceMap::new();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read `{}`: {e}", path.display());
                status = ExitCode::FAILURE;
                continue;
            }
        };
        let id = sources.add_virtual(&path.display().to_string(), &text);
        let (file, diags) = parse_file_recovering(id, &text);
        if !diags.is_empty() {
            // Never format a file that does not parse: its broken items would be lost.
            reporter.report(&diags, &sources);
            status = ExitCode::FAILURE;
            continue;
        }
        let out = format_file(&file, &text);
        if args.check {
            if out != text {
                eprintln!("{}: not formatted (run `snnc fmt --write`)", path.display());
                status = ExitCode::FAILURE;
            }
        } else if args.write {
            if out != text {
                // Write to a temporary file and rename, so an interrupted run never
                // leaves half a file behind.
                let tmp = path.with_extension("snn.fmt-tmp");
                if let Err(e) = std::fs::write(&tmp, &out).and_then(|_| std::fs::rename(&tmp, path)) {
                    eprintln!("error: cannot write `{}`: {e}", path.display());
                    let _ = std::fs::remove_file(&tmp);
                    status = ExitCode::FAILURE;
                }
            }
        } else {
            print!("{out}");
        }
    }
    status
}
