//! Memory of the learning rules against sequence length:
//! `cargo bench -p snnc-runtime --bench etrace_memory`.
//!
//! Each configuration runs in a child process so that its peak resident memory
//! (VmHWM) is its own. The network is the golden recurrent LIF (8 inputs, 16 neurons,
//! 3 readouts, batch 2); the sequence is generated step by step, never stored.
use snnc_compiler::SourceMap;
use snnc_compiler::sema::{self, LoadOptions};
use snnc_runtime::learn::{Method, gradient_of};
use snnc_runtime::train::tasks::RandomSpikes;
use snnc_runtime::kernels::JitFactory;
use snnc_runtime::network::{Network, Options};
use std::process::Command;
use std::time::Instant;

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn child(method: &str, steps: usize) {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/golden_lif.snn"));
    let mut sources = SourceMap::new();
    let (p, _) = sema::check_path(path, &LoadOptions::default(), &mut sources);
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options { batch: 2, seed: 1, learning: true, ..Options::default() }, &JitFactory).unwrap();
    let m = match method {
        "bptt" => Method::Bptt,
        "d-rtrl" => Method::DRtrl,
        _ => Method::EsDRtrl { decay: 0.9 },
    };
    let train: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    let t0 = Instant::now();
    let g = gradient_of(&mut net, &train, &mut RandomSpikes::new(steps, 2, 8, 3, 0.3, 1), m, false).unwrap();
    println!("{method:>10} {steps:>8} {:>14} {:>12} {:>9.2}", g.state_bytes, peak_rss_kb() * 1024, t0.elapsed().as_secs_f64());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    println!("{:>10} {:>8} {:>14} {:>12} {:>9}", "method", "T", "state bytes", "peak RSS", "time (s)");
    let exe = std::env::current_exe().unwrap();
    for method in ["es-d-rtrl", "d-rtrl", "bptt"] {
        for steps in ["1000", "100000"] {
            let out = Command::new(&exe).args(["--child", method, steps]).output().unwrap();
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
}
