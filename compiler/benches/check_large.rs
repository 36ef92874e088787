//! How long `snnc check` takes on a large generated file (10,000+ lines).
//!
//! `cargo bench -p snnc-compiler --bench check_large` (no timing assertions: this is a
//! benchmark, figures go to docs/benchmarks.md).
use snnc_compiler::SourceMap;
use snnc_compiler::sema::check_source;
use std::time::Instant;

/// `n` neurons of 25 lines each, with units, lets, functions and events.
fn generate(n: usize) -> String {
    let mut s = String::from("fn sq(x) = x * x\n\n");
    for i in 0..n {
        s.push_str(&format!(
            "neuron N{i} {{
    param C: pF = 200 pF
    param g_L: nS = 10 nS
    param E_L: mV = -60 mV
    param V_th: mV = -50 mV
    param V_reset: mV = -60 mV
    param tau_w: ms = {tw} ms
    param a: nS = 2 nS
    param b: pA = 20 pA
    param t_ref: ms = 2 ms
    state v: mV = -60 mV
    state w: pA = 0 pA
    input I: pA
    let I_L = g_L * (E_L - v)
    let I_tot = I_L - w + I
    dv/dt = I_tot / C + 0 * sq((v - E_L) / mV) * pA / C
    dw/dt = (a * (v - E_L) - w) / tau_w
    spike when v > V_th
    on spike {{
        v = V_reset
        w += b
    }}
    refractory t_ref
    method exp_euler
}}

",
            tw = 100 + i % 50
        ));
    }
    s
}

fn main() {
    let text = generate(420);
    let lines = text.lines().count();
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let mut sources = SourceMap::new();
        let t0 = Instant::now();
        let (program, diags) = check_source("large.snn", &text, &mut sources);
        let dt = t0.elapsed().as_secs_f64();
        assert!(diags.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&diags, &sources));
        assert_eq!(program.models.len(), 420);
        best = best.min(dt);
    }
    println!("check_large: {lines} lines, {} bytes: best of 10 = {:.2} ms ({:.0} lines/ms)", text.len(), best * 1e3, lines as f64 / (best * 1e3));
}
