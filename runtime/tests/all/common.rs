//! Helpers shared by the test modules (`crate::common`): checking a network's text, and
//! networks shared by the learning tests (CPU and emulated GPU).

use snnc_compiler::SourceMap;
use snnc_compiler::backend::ptx::Target;
use snnc_compiler::sema::{self, Program};
use snnc_runtime::gpu::{Counts, EmuDevice, GpuNetwork};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::network::{Network, Options};
use std::sync::{Arc, Barrier, Mutex};

/// Checks `text`; any error fails the test with the rendered diagnostics.
pub fn program(text: &str) -> Program {
    let mut sources = SourceMap::new();
    let (p, d) = sema::check_source("t.snn", text, &mut sources);
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&d, &sources));
    p
}

/// A network of `p` as the CPU builds it (connectivity, states; interpreter kernels) on
/// the emulated GPU.
pub fn emulated<T: snnc_runtime::scalar::Float>(p: &Program, o: &Options) -> GpuNetwork<T, EmuDevice> {
    let host = Network::<T>::build(p, &p.networks[0], o, &InterpFactory).unwrap();
    GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap()
}

/// A network without inputs stepped `steps` times on the CPU, and on the emulated GPU
/// run as windows of `window` steps recorded and replayed (`GpuNetwork::run`), with the
/// device calls of that run; every window could be recorded.
pub fn cpu_and_replayed(p: &Program, o: &Options, window: usize, steps: usize) -> (Network<f64>, GpuNetwork<f64, EmuDevice>, Counts) {
    let mut cpu = Network::<f64>::build(p, &p.networks[0], o, &InterpFactory).unwrap();
    for _ in 0..steps {
        cpu.step(&[]).unwrap();
    }
    let mut gpu = emulated::<f64>(p, o);
    gpu.set_window(window).unwrap();
    let before = gpu.counts();
    gpu.run(steps as u64).unwrap();
    let c = gpu.counts().since(&before);
    assert!(gpu.graphs_off().is_none(), "{:?}", gpu.graphs_off());
    (cpu, gpu, c)
}

/// Trainable per-neuron params: a recurrent layer whose membrane and adaptation time
/// constants are learned (`param ... trainable`), read by `readout`.
pub fn trainable_param_text(readout: &str, recurrent: bool) -> String {
    let rec = if recurrent { "connect L -> L.I dense trainable init normal(0, 3) no_self as W_rec" } else { "" };
    format!(
        r#"import "stdlib/readout.snn"
neuron TALIF {{
    param tau: ms = 20 ms trainable
    param tau_a: ms = 100 ms trainable
    param beta = 0.3
    state v = 0.0
    state a = 0.0
    input I
    dv/dt = (-v + I) / tau
    da/dt = -a / tau_a
    spike when v > 1 + beta * a surrogate relu_grad(alpha = 0.3, width = 1.0)
    on spike {{ v -= 1; a += 1 }}
}}
network n {{
    dt = 1 ms
    input x: 3
    layer L = TALIF[4] {{ tau = U(10 ms, 30 ms) }}
    readout out = {readout}
    connect x -> L.I dense trainable init normal(0, 3) as W_in
    {rec}
    connect L -> out dense trainable init normal(0, 1) as W_out
}}"#
    )
}

/// The workload of the GPU gradient tests (`cuda.rs::gradients_gpu_equal_cpu`):
/// `data/gpu_grad.snn`, whose recurrent layer fires under these Poisson inputs.
pub fn gpu_grad_program() -> Program {
    program(include_str!("../data/gpu_grad.snn"))
}

/// That workload with sparse input and recurrent projections (a quarter of the pairs;
/// the input weights scaled up so that the layer still fires): the hardware test of
/// gradients through sparse projections (`cuda::sparse_gradients_gpu_equal_cpu`).
pub fn gpu_grad_sparse_program() -> Program {
    let text = include_str!("../data/gpu_grad.snn")
        .replace("connect x -> rec.I dense init normal(0.04, 0.1)", "connect x -> rec.I sparse p = 0.25 init normal(0.16, 0.2)")
        .replace("connect rec -> rec.I dense init normal(0, 0.05)", "connect rec -> rec.I sparse p = 0.25 init normal(0, 0.1)");
    assert_eq!(text.matches("sparse p = 0.25").count(), 2, "the workload's text changed");
    program(&text)
}

/// (steps, batch, input rate per step, data seed) of that workload.
pub const GPU_GRAD_DATA: (usize, usize, f64, u64) = (300, 32, 0.2, 5);

pub fn gpu_grad_data(outputs: usize) -> snnc_runtime::train::tasks::RandomSpikes {
    let (steps, batch, rate, seed) = GPU_GRAD_DATA;
    snnc_runtime::train::tasks::RandomSpikes::new(steps, batch, 128, outputs, rate, seed)
}

/// The ranks of a partitioned run or of data-parallel training as threads of this
/// process (MPI's collective calls through shared memory).
pub struct Threads {
    pub rank: usize,
    pub size: usize,
    shared: Arc<(Barrier, Mutex<Vec<Vec<u32>>>)>,
}

impl Threads {
    pub fn world(size: usize) -> Vec<Threads> {
        let shared = Arc::new((Barrier::new(size), Mutex::new(vec![Vec::new(); size])));
        (0..size).map(|rank| Threads { rank, size, shared: shared.clone() }).collect()
    }
}

impl snnc_runtime::partition::Exchange for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather(&self, local: &[u32]) -> Vec<Vec<u32>> {
        let (barrier, slots) = &*self.shared;
        slots.lock().unwrap()[self.rank] = local.to_vec();
        barrier.wait();
        let all = slots.lock().unwrap().clone();
        // Nobody writes the next call's words before everyone has read these.
        barrier.wait();
        all
    }
    fn abort(&self, why: &dyn std::fmt::Display) -> ! {
        panic!("rank {} aborts: {why}", self.rank)
    }
}
