//! How the front end scales with a model's size (issue #15, item 6): `check` of n
//! chained `let`s, and `explain` (check, discretise with derivatives, print) of n
//! `let`s each used twice, at n = 1k, 2k, 4k, 8k; then the target, `check` of a
//! 10,000-line model with 10,000 chained lets.
//!
//! `cargo bench -p snnc-compiler --bench frontend` (no timing assertions: figures go to
//! docs/benchmarks.md). Linear means the time per let stays flat down the table.
use snnc_compiler::SourceMap;
use snnc_compiler::discretise::discretise;
use snnc_compiler::explain::explain_text;
use snnc_compiler::sema::check_source;
use std::time::Instant;

/// A neuron whose `n` lets each read the previous one once (`shared` false) or twice.
fn model(n: usize, shared: bool) -> String {
    let mut s = String::from("neuron N {\n    param tau: ms = 10 ms\n    state v = 0\n    let l0 = v\n");
    for i in 1..=n {
        let p = i - 1;
        if shared {
            s.push_str(&format!("    let l{i} = 0.5 * l{p} + 0.25 * l{p} * l{p}\n"));
        } else {
            s.push_str(&format!("    let l{i} = l{p} + 1\n"));
        }
    }
    s.push_str(&format!("    dv/dt = (l{n} - v) / tau\n    spike when v > 1\n    reset v = 0\n}}\n"));
    s
}

/// The best of `reps` runs of `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn check(text: &str) -> snnc_compiler::sema::Program {
    let (program, diags) = check_source("big.snn", text, &mut SourceMap::new());
    assert!(diags.iter().all(|d| !d.is_error()));
    program
}

fn main() {
    println!("{:>6} {:>14} {:>12} {:>16} {:>12}", "n", "check chain ms", "us per let", "explain shared ms", "us per let");
    for n in [1000, 2000, 4000, 8000] {
        let chain = model(n, false);
        let t_check = best(3, || {
            check(&chain);
        });
        let shared = model(n, true);
        let t_explain = best(3, || {
            let program = check(&shared);
            let mut step = discretise(&program.models[0]).expect("discretises");
            let _ = step.with_derivative_outputs().expect("derivatives");
            assert!(!explain_text(&mut step, "big.snn").is_empty());
        });
        println!(
            "{n:>6} {:>14.1} {:>12.2} {:>16.1} {:>12.2}",
            t_check * 1e3,
            t_check * 1e6 / n as f64,
            t_explain * 1e3,
            t_explain * 1e6 / n as f64
        );
    }
    let text = model(10_000, false);
    let t = best(3, || {
        check(&text);
    });
    println!("check of {} lines with 10,000 chained lets: {:.1} ms", text.lines().count(), t * 1e3);
}
