//! Time from `.snn` text to a discretised, differentiated IR (step, D, Df, ds/dh) for
//! every stdlib model: `cargo bench -p snnc-compiler --bench compile_models`.
use snnc_compiler::SourceMap;
use snnc_compiler::discretise::discretise;
use snnc_compiler::sema::{self, LoadOptions};
use std::time::Instant;

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../stdlib");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    println!("{:<14} {:>8} {:>12} {:>10}", "model", "K", "best (ms)", "IR nodes");
    let mut worst: f64 = 0.0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Every model defined in the file, one at a time: parse + check the file
        // (with its imports), discretise the model, derive D, Df and ds/dh.
        let mut sources = SourceMap::new();
        let (program, _) = sema::check_source(&name, &text, &mut sources);
        let models: Vec<String> = program.models.iter().filter(|m| m.span.file == 0).map(|m| m.name.clone()).collect();
        for model in models {
            let mut best = f64::INFINITY;
            let mut info = (0, 0);
            for _ in 0..20 {
                let t0 = Instant::now();
                let mut sources = SourceMap::new();
                let (program, diags) = sema::check_source(&name, &text, &mut sources);
                assert!(diags.iter().all(|d| !d.is_error()));
                let m = program.model(&model).unwrap();
                let mut step = discretise(m).unwrap();
                let _ = step.derivatives();
                best = best.min(t0.elapsed().as_secs_f64());
                info = (step.n_hidden, step.graph.len());
                let _ = LoadOptions::default();
            }
            worst = worst.max(best);
            println!("{:<14} {:>8} {:>12.3} {:>10}", model, info.0, best * 1e3, info.1);
        }
    }
    println!("slowest: {:.3} ms", worst * 1e3);
}
