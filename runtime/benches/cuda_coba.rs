//! COBA on the GPU: examples/coba.snn (4000 neurons) and the same network scaled to
//! 400 000 neurons at the same expected in-degree (80: p = 80 / N), f32 and f64.
//! `cargo bench -p snnc-runtime --features cuda --bench cuda_coba -- [STEPS]`
//! Prints build (host + upload) time, wall time per step and the real-time factor
//! (biological time / wall time); spikes stay on the GPU except for the per-step counts.
use snnc_compiler::SourceMap;
use snnc_compiler::sema::{self, Program};
use snnc_runtime::gpu::cuda::CudaDevice;
use snnc_runtime::gpu::{Device, GpuNetwork};
use snnc_runtime::scalar::Float;
use snnc_runtime::kernels::{InterpFactory, JitFactory, KernelFactory, flush_denormals};
use snnc_runtime::network::{Network, Options};
use std::time::Instant;

fn coba(n: usize) -> Program {
    let (ne, ni) = (n * 4 / 5, n / 5);
    let p = 80.0 / n as f64;
    let text = format!(
        r#"import "stdlib/coba.snn"
network coba {{
    dt = 0.1 ms
    layer E = COBALIF[{ne}] {{ v = normal(-55 mV, 5 mV) }}
    layer I = COBALIF[{ni}] {{ v = normal(-55 mV, 5 mV) }}
    drive E.I = 200 pA
    drive I.I = 200 pA
    connect E -> E.I via ExpCond {{ tau = 5 ms, E = 0 mV, g = normal(40 nS, 15 nS) }} sparse p = {p} weight 6 nS
    connect E -> I.I via ExpCond {{ tau = 5 ms, E = 0 mV, g = normal(40 nS, 15 nS) }} sparse p = {p} weight 6 nS
    connect I -> E.I via ExpCond {{ tau = 10 ms, E = -80 mV, g = normal(200 nS, 120 nS) }} sparse p = {p} weight 67 nS
    connect I -> I.I via ExpCond {{ tau = 10 ms, E = -80 mV, g = normal(200 nS, 120 nS) }} sparse p = {p} weight 67 nS
}}"#
    );
    let mut sources = SourceMap::new();
    let (p, d) = sema::check_source("coba_scaled.snn", &text, &mut sources);
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&d, &sources));
    p
}

fn rates<T: snnc_runtime::scalar::Float>(net: &Network<T>) -> String {
    let secs = net.time();
    net.pops.iter().map(|p| format!("{} {:.1} Hz", p.name, p.spike_count as f64 / p.n as f64 / secs)).collect::<Vec<_>>().join(", ")
}

fn bench<T: Float>(n: usize, steps: usize, cpu: Option<&'static dyn KernelFactory<T>>) {
    let p = coba(n);
    let o = Options { seed: 1, ..Options::default() };
    let t0 = Instant::now();
    let host = Network::<T>::build(&p, &p.networks[0], &o, &InterpFactory).unwrap();
    let synapses = host.n_synapses();
    let mut gpu = GpuNetwork::new(host, CudaDevice::open(0).unwrap_or_else(|e| panic!("{e}"))).unwrap();
    gpu.dev.synchronize().unwrap();
    let build = t0.elapsed().as_secs_f64();
    // Warm-up: the driver compiles the PTX on first launch.
    for _ in 0..10 {
        gpu.step(&[]).unwrap();
    }
    gpu.dev.synchronize().unwrap();
    let before = gpu.counts();
    let t1 = Instant::now();
    for _ in 0..steps {
        gpu.step(&[]).unwrap();
    }
    gpu.dev.synchronize().unwrap();
    let wall = t1.elapsed().as_secs_f64();
    // The spike counters as of the last step (read once per window of steps).
    gpu.flush().unwrap();
    let sim = steps as f64 * gpu.host.dt;
    let ty = std::any::type_name::<T>();
    let calls = gpu.counts().since(&before).per_step_json(steps as u64);
    println!(
        "GPU {ty} N = {n:>7} ({synapses} synapses): build {build:.2} s, {:.1} us/step, {:.3}x real time; {}; per step: {calls}",
        wall / steps as f64 * 1e6,
        sim / wall,
        rates(&gpu.host)
    );
    if let Some(factory) = cpu {
        flush_denormals();
        let mut net = Network::<T>::build(&p, &p.networks[0], &o, factory).unwrap();
        let t2 = Instant::now();
        for _ in 0..steps + 10 {
            net.step(&[]).unwrap();
        }
        let wall = t2.elapsed().as_secs_f64();
        let total = steps + 10;
        let sim = total as f64 * net.dt;
        println!("CPU {ty} N = {n:>7} (JIT, one thread): {:.1} us/step, {:.3}x real time; {}", wall / total as f64 * 1e6, sim / wall, rates(&net));
    }
}

fn main() {
    let steps: usize = std::env::args().skip(1).find(|a| !a.starts_with("--")).and_then(|a| a.parse().ok()).unwrap_or(1000);
    println!("{}", CudaDevice::open(0).map(|d| d.name()).unwrap_or_else(|e| panic!("{e}")));
    for n in [4000, 400_000] {
        // The CPU comparison only where it takes seconds, not hours.
        bench::<f32>(n, steps, (n == 4000).then_some(&JitFactory as &dyn KernelFactory<f32>));
        bench::<f64>(n, steps, (n == 4000).then_some(&JitFactory as &dyn KernelFactory<f64>));
    }
}
