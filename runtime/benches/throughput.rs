//! Online-training throughput on the BENCHMARKS.md workload: a recurrent LIF layer of 512
//! neurons (tau 10 ms, dt 1 ms, soft reset, ReluGrad(0.3, 1)), 128 Bernoulli inputs,
//! 10 linear readouts, batch 64, MSE on every step; one pass = the gradient of one batch.
//! `cargo bench -p snnc-runtime --bench throughput -- [T] [methods]`
use snnc_compiler::SourceMap;
use snnc_compiler::sema;
use snnc_runtime::learn::{Method, gradient_of};
use snnc_runtime::train::tasks::RandomSpikes;
use snnc_runtime::network::{JitFactory, Network, Options};
use std::time::Instant;

const NET: &str = r#"
import "stdlib/lif.snn"
network bench {
    dt = 1 ms
    input x: 128
    layer rec = LIF[512] { tau = 10 ms }
    readout out = Linear[10]
    connect x -> rec.I dense init normal(0, 1.5 / sqrt(128)) trainable as W_in
    connect rec -> rec.I dense init normal(0, 0.5 / sqrt(512)) trainable as W_rec
    connect rec -> out dense init normal(0, 1 / sqrt(512)) trainable as W_out
}"#;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let steps: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let methods = args.get(1).cloned().unwrap_or_else(|| "es-d-rtrl,bptt".into());
    let mut sources = SourceMap::new();
    let (p, d) = sema::check_source("bench.snn", NET, &mut sources);
    assert!(d.is_empty());
    let train: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    println!("{:>10} {:>6} {:>10} {:>16} {:>12}", "method", "T", "pass (s)", "sample-steps/s", "peak RSS MB");
    for m in methods.split(',') {
        let method = match m {
            "bptt" => Method::Bptt,
            "d-rtrl" => Method::DRtrl,
            _ => Method::EsDRtrl { decay: 0.9 },
        };
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options { batch: 64, seed: 1, learning: true, ..Options::default() }, &JitFactory).unwrap();
        let t0 = Instant::now();
        let g = gradient_of(&mut net, &train, &mut RandomSpikes::new(steps, 64, 128, 10, 0.1, 1), method, false).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        assert!(g.loss.is_finite());
        println!("{m:>10} {steps:>6} {secs:>10.2} {:>16.0} {:>12.0}", (64 * steps) as f64 / secs, peak_rss_mb());
    }
}
