//! `snnc bench train|sim`: the workloads of the side-by-side comparison with the peers
//! (bench/compare.sh), runnable without cargo bench. One JSON object per line and per
//! repetition on stdout, so that a driver can parse it; nothing else goes to stdout.

use super::Reporter;
use super::engine::{Job, On};
use super::args::{MethodArg, Precision, TrainBackend, fail, parse_method, parse_time};
use snnc_compiler::SourceMap;
use snnc_compiler::sema::{self, LoadOptions};
use snnc_runtime::learn::{Method, gradient_split, split_sizes};
use snnc_runtime::scalar::Float;
use snnc_runtime::kernels::{KernelFactory, flush_denormals};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::partition::Exchange;
use snnc_runtime::record::Recorder;
use snnc_runtime::train::tasks::RandomSpikes;
use snnc_runtime::timers::SpanTotal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Gradient of one batch on the training-throughput workload: a recurrent LIF layer
    /// (tau 10 ms, dt 1 ms, soft reset, ReluGrad(0.3, 1)), Bernoulli(0.1) inputs, linear
    /// readouts, MSE summed over every step.
    Train(TrainArgs),
    /// Simulate a network file: front end, JIT and connectivity timed apart from the run.
    Sim(SimArgs),
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Sequence length T (steps of 1 ms).
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 512)]
    pub neurons: usize,
    #[arg(long, default_value_t = 128)]
    pub inputs: usize,
    #[arg(long, default_value_t = 10)]
    pub outputs: usize,
    /// ES-D-RTRL trace decay, in (0, 1).
    #[arg(long, default_value_t = 0.9)]
    pub etrace_decay: f64,
    /// Spike probability of each input per step.
    #[arg(long, default_value_t = 0.1)]
    pub input_p: f64,
    /// Threads over the batch (networks of batch / threads elements each); 0: one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Float type of the network, its traces and gradients (the workload is f32).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the gradient is computed: the CPU (JIT, `--threads`), or GPU 0 (`cuda`:
    /// the whole batch on the device; needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: TrainBackend,
}

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Biological time to simulate: `1s`, `200ms`.
    #[arg(long, default_value = "1s", value_parser = parse_time)]
    pub duration: f64,
    /// Integrate every population with this method (the peers' comparisons use euler).
    #[arg(long, value_parser = parse_method)]
    pub method: Option<sema::Method>,
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads the neurons of every population are split across; 0: one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Keeps every population's chunks at their even split, instead of moving their
    /// bounds as the threads' speeds differ (for comparisons: the spikes are the same).
    #[arg(long)]
    pub even_chunks: bool,
    /// Where the network runs: the CPU (JIT, `--threads`), or GPU 0 (`cuda`: spikes
    /// counted on the device, read once per window of steps; needs a build with
    /// `--features cuda`).
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: TrainBackend,
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    match args.what {
        What::Train(a) => train(&a),
        What::Sim(a) => sim(&a, opts, reporter),
    }
}


/// Whole-process peak resident set (VmHWM), MB; 0 where /proc is missing.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .unwrap_or(0.0)
        / 1024.0
}

fn method_name(m: MethodArg) -> &'static str {
    match m {
        MethodArg::Bptt => "bptt",
        MethodArg::DRtrl => "d-rtrl",
        MethodArg::EsDRtrl => "es-d-rtrl",
    }
}

fn train(a: &TrainArgs) -> ExitCode {
    if a.steps == 0 || a.batch == 0 || a.neurons == 0 || a.inputs == 0 || a.outputs == 0 || a.reps == 0 {
        return fail("--steps, --batch, --neurons, --inputs, --outputs and --reps must be positive");
    }
    if !(a.etrace_decay > 0.0 && a.etrace_decay < 1.0) {
        return fail(format!("--etrace-decay must be in (0, 1), got {}", a.etrace_decay));
    }
    let text = snnc_runtime::train::tasks::training_workload(a.neurons, a.inputs, a.outputs);
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_source("bench-train.snn", &text, &mut sources);
    if diags.iter().any(|d| d.is_error()) {
        Reporter::new(super::ColorChoice::Never).report(&diags, &sources);
        return fail("the generated training network does not check");
    }
    let method = match a.method {
        MethodArg::Bptt => Method::Bptt,
        MethodArg::DRtrl => Method::DRtrl,
        MethodArg::EsDRtrl => Method::EsDRtrl { decay: a.etrace_decay },
    };
    flush_denormals();
    super::engine::dispatch(a.precision, a.backend, TrainBench { a, program: &program, method }).unwrap_or_else(fail)
}

/// `snnc bench train`'s repetitions in float type `T`.
struct TrainBench<'a> {
    a: &'a TrainArgs,
    program: &'a sema::Program,
    method: Method,
}

impl Job for TrainBench<'_> {
    type Out = ExitCode;
    fn run<T: Float>(self, on: On) -> ExitCode {
        for rep in 0..self.a.reps {
            let r = match on {
                On::Cpu { .. } => train_once::<T>(self.a, self.program, self.method, rep, on.cpu_kernels()),
                #[cfg(feature = "cuda")]
                On::Cuda => train_gpu_once::<T>(self.a, self.program, self.method, rep),
            };
            if let Err(e) = r {
                return fail(e);
            }
        }
        ExitCode::SUCCESS
    }
}

fn train_once<T: Float>(a: &TrainArgs, program: &sema::Program, method: Method, rep: usize, factory: &'static dyn KernelFactory<T>) -> Result<(), String> {
    let trainable: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    // A fresh network per repetition: the same initial weights and data each time, and
    // its build (JIT of step + derivatives) is reported apart from the pass.
    let t0 = Instant::now();
    let o = Options { batch: a.batch, seed: a.seed, learning: true, ..Options::default() };
    let threads = super::args::threads_or_cores(a.threads);
    let mut nets = Vec::new();
    for b in split_sizes(a.batch, threads) {
        nets.push(Network::<T>::build(program, &program.networks[0], &Options { batch: b, ..o }, factory).map_err(|e| e.to_string())?);
    }
    let build = t0.elapsed().as_secs_f64();
    let mut data = RandomSpikes::new(a.steps, a.batch, a.inputs, a.outputs, a.input_p, a.seed);
    let t1 = Instant::now();
    let g = gradient_split(&mut nets, &trainable, &mut data, method).map_err(|e| e.to_string())?;
    let secs = t1.elapsed().as_secs_f64();
    print_train(a, &format!("\"threads\":{}", nets.len()), std::mem::size_of::<T>(), rep, build, secs, &g);
    Ok(())
}

/// One JSON line of a training pass; `where_` says where it ran (threads, or the GPU).
fn print_train(a: &TrainArgs, where_: &str, float_bytes: usize, rep: usize, build: f64, secs: f64, g: &snnc_runtime::learn::Gradients) {
    let grad_norm = g.total.iter().map(|(_, w)| w.iter().map(|v| v * v).sum::<f64>()).sum::<f64>().sqrt();
    println!(
        "{{\"bench\":\"train\",\"tool\":\"snnc\",\"method\":\"{}\",\"T\":{},\"batch\":{},\"neurons\":{},\"inputs\":{},\"outputs\":{},\"precision\":\"{}\",{where_},\"rep\":{rep},\"build_s\":{build:.9},\"seconds\":{secs:.9},\"sample_steps_per_s\":{:.3},\"loss\":{:e},\"grad_norm\":{grad_norm:e},\"state_bytes\":{},\"peak_rss_mb\":{:.1}}}",
        method_name(a.method),
        a.steps,
        a.batch,
        a.neurons,
        a.inputs,
        a.outputs,
        if float_bytes == 4 { "f32" } else { "f64" },
        (a.batch * a.steps) as f64 / secs,
        g.loss,
        g.state_bytes,
        peak_rss_mb()
    );
}

/// One pass on GPU 0: the build (network to the device, trace kernels loaded) timed
/// apart from the gradient, which ends with the gradients on the host.
#[cfg(feature = "cuda")]
fn train_gpu_once<T: snnc_runtime::scalar::Float>(a: &TrainArgs, program: &sema::Program, method: Method, rep: usize) -> Result<(), String> {
    use snnc_runtime::gpu::cuda::CudaDevice;
    use snnc_runtime::gpu::{Device, GpuGradient, GpuNetwork};
    let trainable: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
    let err = |e: snnc_runtime::error::RuntimeError| e.to_string();
    let t0 = Instant::now();
    let dev = CudaDevice::open(0).map_err(|e| e.to_string())?;
    let o = Options { batch: a.batch, seed: a.seed, learning: true, ..Options::default() };
    let host = Network::<T>::without_kernels(program, &program.networks[0], &o).map_err(err)?;
    let mut gpu = GpuNetwork::new(host, dev).map_err(err)?;
    let mut grad = GpuGradient::new(&mut gpu, &trainable, method).map_err(err)?;
    gpu.dev.synchronize().map_err(|e| e.to_string())?;
    let build = t0.elapsed().as_secs_f64();
    // One untimed pass first: BPTT allocates its tape (thousands of buffers) the first
    // time a step is reached, and the driver finishes loading modules lazily.
    let mut data = RandomSpikes::new(a.steps, a.batch, a.inputs, a.outputs, a.input_p, a.seed);
    grad.run(&mut gpu, &mut data).map_err(err)?;
    gpu.reset().map_err(err)?;
    let mut data = RandomSpikes::new(a.steps, a.batch, a.inputs, a.outputs, a.input_p, a.seed);
    let before = gpu.counts();
    let t1 = Instant::now();
    let g = grad.run(&mut gpu, &mut data).map_err(err)?;
    let secs = t1.elapsed().as_secs_f64();
    // Device calls per step of the timed pass (the gradients' download at its end included).
    let calls = gpu.counts().since(&before).per_step_json(a.steps as u64);
    // Whether windows replayed as recorded graphs, or why not.
    let graphs = match grad.graphs_off() {
        Some(why) => format!("\"graphs\":false,\"graphs_off\":\"{}\"", why.replace('"', "'")),
        None => "\"graphs\":true".to_string(),
    };
    let where_ = format!("\"backend\":\"cuda\",\"warm\":true,\"device\":\"{}\",{calls},{graphs}", gpu.dev.name().replace('"', "'"));
    print_train(a, &where_, std::mem::size_of::<T>(), rep, build, secs, &g);
    Ok(())
}

fn sim(a: &SimArgs, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    if a.reps == 0 {
        return fail("--reps must be positive");
    }
    flush_denormals();
    // Under `mpirun -np K`: the network partitioned over the ranks (as `snnc run`).
    super::run::with_ranks(|ex| {
        if let Some(ex) = ex
            && let Err(e) = super::run::launched_alike(&a.file, ex)
        {
            return fail(e);
        }
        if ex.is_some() && a.backend == TrainBackend::Cuda {
            return fail(super::run::GPU_NOT_PARTITIONED);
        }
        super::engine::dispatch(a.precision, a.backend, SimBench { a, opts, reporter, ex }).unwrap_or_else(fail)
    })
}

/// `snnc bench sim`'s repetitions in float type `T` (on the CPU).
struct SimBench<'a> {
    a: &'a SimArgs,
    opts: &'a LoadOptions,
    reporter: &'a Reporter,
    ex: Option<&'a dyn Exchange>,
}

impl Job for SimBench<'_> {
    type Out = ExitCode;
    fn run<T: Float>(self, on: On) -> ExitCode {
        for rep in 0..self.a.reps {
            let r = match on {
                On::Cpu { .. } => sim_once::<T>(&self, rep, on.cpu_kernels()),
                #[cfg(feature = "cuda")]
                On::Cuda => sim_gpu_once::<T>(&self, rep).unwrap_or_else(fail),
            };
            if r != ExitCode::SUCCESS {
                return r;
            }
        }
        ExitCode::SUCCESS
    }
}

fn sim_once<T: Float>(job: &SimBench, rep: usize, kernels: &'static dyn KernelFactory<T>) -> ExitCode {
    let (a, ex) = (job.a, job.ex);
    let t0 = Instant::now();
    let Some((program, index)) = super::load_network(&a.file, a.network.as_deref(), job.opts, job.reporter) else {
        return ExitCode::FAILURE;
    };
    let frontend = t0.elapsed().as_secs_f64();
    let net_def = &program.networks[index];
    let o = Options { seed: a.seed, method: a.method, ..Options::default() };
    let t1 = Instant::now();
    let mut jit = 0.0;
    let built = (|| -> Result<Network<T>, String> {
        let mut net = Network::<T>::without_kernels(&program, net_def, &o).map_err(|e| e.to_string())?;
        let tj = Instant::now();
        net.attach_kernels(kernels).map_err(|e| e.to_string())?;
        jit = tj.elapsed().as_secs_f64();
        net.set_balancing(!a.even_chunks);
        net.set_threads(super::args::threads_or_cores(a.threads)).map_err(|e| e.to_string())?;
        if let Some(ex) = ex {
            net.partition(ex.rank(), ex.size()).map_err(|e| e.to_string())?;
        }
        Ok(net)
    })();
    // Every rank built its part, or all stop (a rank stopping alone would hang the others).
    let Some(mut net) = super::run::agree(ex, built.map_err(fail).ok()) else {
        return ExitCode::FAILURE;
    };
    let build = t1.elapsed().as_secs_f64();
    // Spikes are recorded in memory, as the peers' scripts do with a spike monitor.
    let mut rec = match Recorder::new(&net, true, &[]) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let zeros: Vec<Vec<T>> = net.inputs.iter().map(|(_, n)| vec![T::default(); n * net.batch]).collect();
    let external: Vec<&[T]> = zeros.iter().map(|v| v.as_slice()).collect();
    let steps = (a.duration / net.dt).round() as u64;
    // The step timers (`step-timers` builds) count the run loop only; with
    // SNNC_CHUNK_TIMES=FILE they also log every chunk's time, step by step, into FILE.
    snnc_runtime::timers::take();
    let chunk_log = std::env::var_os("SNNC_CHUNK_TIMES").map(std::path::PathBuf::from);
    if chunk_log.is_some() && !snnc_runtime::timers::ENABLED {
        eprintln!("warning: SNNC_CHUNK_TIMES needs a build with `--features step-timers`; nothing is logged");
    }
    snnc_runtime::timers::log_chunks(chunk_log.is_some());
    snnc_runtime::timers::take_chunks();
    // (The network logs the spikes as its threads join them: `Recorder::attach`.)
    if let Err(e) = rec.attach(&mut net) {
        return fail(e);
    }
    let t2 = Instant::now();
    for _ in 0..steps {
        let stepped = match ex {
            Some(ex) => net.step_exchanging(&external, ex),
            None => net.step(&external),
        };
        if let Err(e) = stepped {
            // A rank that failed alone ends the others, which would wait for its spikes.
            if let Some(ex) = ex {
                ex.abort(&e);
            }
            return fail(e);
        }
        let _t = snnc_runtime::timers::start(snnc_runtime::timers::Span::Record);
        if let Err(e) = rec.sample(&net) {
            return fail(e);
        }
    }
    let run = t2.elapsed().as_secs_f64();
    if let Err(e) = rec.detach(&mut net) {
        return fail(e);
    }
    let timers = snnc_runtime::timers::take();
    snnc_runtime::timers::log_chunks(false);
    if let Some(path) = chunk_log.filter(|_| snnc_runtime::timers::ENABLED) {
        // (The run's figures are printed all the same.)
        if let Err(e) = write_chunk_times(&path, &snnc_runtime::timers::take_chunks()) {
            eprintln!("warning: cannot write the chunk times to `{}`: {e}", path.display());
        }
    }
    // Which code generator made the kernels (AVX-512 or AVX2 where the machine has it).
    let mut code: Vec<&str> = net.pops.iter().filter_map(|p| p.kernel_generator()).collect();
    code.sort_unstable();
    code.dedup();
    let where_ = format!("\"backend\":\"jit\",\"cpu_code\":\"{}\",\"threads\":{},\"ranks\":{}", code.join("+"), net.threads(), ex.map_or(1, |ex| ex.size()));
    print_sim(&net, a, &where_, rep, Times { frontend, jit, build, run }, &timers);
    ExitCode::SUCCESS
}

/// The chunk times of a run (`SNNC_CHUNK_TIMES`), one line each: step, population,
/// chunk, thread, nanoseconds (read by `bench/chunk_times.py`).
fn write_chunk_times(path: &std::path::Path, times: &[snnc_runtime::timers::ChunkTime]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "step\tpop\tchunk\tthread\tns")?;
    for t in times {
        writeln!(out, "{}\t{}\t{}\t{}\t{}", t.step, t.pop, t.chunk, t.thread, t.nanos)?;
    }
    out.flush()
}

/// The phases of a `bench sim` repetition, in seconds.
struct Times {
    frontend: f64,
    jit: f64,
    build: f64,
    run: f64,
}

/// One JSON line of a simulation run; `where_` says where it ran (threads and ranks, or
/// the GPU with its device calls per step). Rates come from the spike counters. A
/// `step-timers` build adds where the run loop's time went, per thread and span
/// (`snnc_runtime::timers`).
fn print_sim<T: Float>(net: &Network<T>, a: &SimArgs, where_: &str, rep: usize, t: Times, timers: &[SpanTotal]) {
    let simulated = net.time();
    let spikes: u64 = net.pops.iter().map(|p| p.spike_count).sum();
    let spiking: usize = net.pops.iter().filter(|p| !p.spikes().is_empty()).map(|p| p.n * net.batch).sum();
    let kernels = net.pops.iter().filter(|p| p.step.is_some()).count();
    let rates: Vec<String> = net
        .pops
        .iter()
        .filter(|p| !p.spikes().is_empty())
        .map(|p| format!("\"{}\":{:.3}", p.name, p.spike_count as f64 / (p.n * net.batch) as f64 / simulated.max(1e-12)))
        .collect();
    let Times { frontend, jit, build, run } = t;
    let timers: String = if timers.is_empty() {
        String::new()
    } else {
        let spans: Vec<String> = timers.iter().map(|s| format!("{{\"thread\":{},\"span\":\"{}\",\"s\":{:.6},\"calls\":{}}}", s.thread, s.span.name(), s.seconds, s.calls)).collect();
        format!(",\"timers\":[{}]", spans.join(","))
    };
    println!(
        "{{\"bench\":\"sim\",\"tool\":\"snnc\",\"network\":\"{}\",\"neurons\":{},\"synapses\":{},\"precision\":\"{}\",\"method\":\"{}\",{where_},\"rep\":{rep},\"duration_s\":{simulated:.6},\"steps\":{},\"frontend_s\":{frontend:.6},\"jit_s\":{jit:.6},\"kernels\":{kernels},\"build_s\":{build:.6},\"run_s\":{run:.6},\"spikes\":{spikes},\"mean_rate_hz\":{:.3},\"rates_hz\":{{{}}},\"peak_rss_mb\":{:.1}{timers}}}",
        net.name,
        net.n_neurons(),
        net.n_synapses(),
        std::any::type_name::<T>(),
        a.method.map(method_label).unwrap_or("default"),
        net.step_index,
        spikes as f64 / spiking.max(1) as f64 / simulated.max(1e-12),
        rates.join(","),
        peak_rss_mb()
    );
}

/// One repetition on GPU 0: the network built on the host and uploaded (timed as the
/// build; the PTX is emitted there, so `jit_s` is 0), up to four windows of steps and a
/// reset, so that the driver has loaded every module and the windows are recorded, then
/// the timed steps, which end with the last
/// window's status read back (the spike counters). Spikes are counted on the device,
/// not recorded.
#[cfg(feature = "cuda")]
fn sim_gpu_once<T: Float>(job: &SimBench, rep: usize) -> Result<ExitCode, String> {
    use snnc_runtime::gpu::cuda::CudaDevice;
    use snnc_runtime::gpu::{Device, GpuNetwork};
    let a = job.a;
    let t0 = Instant::now();
    let Some((program, index)) = super::load_network(&a.file, a.network.as_deref(), job.opts, job.reporter) else {
        return Ok(ExitCode::FAILURE);
    };
    let frontend = t0.elapsed().as_secs_f64();
    let o = Options { seed: a.seed, method: a.method, ..Options::default() };
    let t1 = Instant::now();
    let dev = CudaDevice::open(0).map_err(|e| e.to_string())?;
    let host = Network::<T>::without_kernels(&program, &program.networks[index], &o).map_err(|e| e.to_string())?;
    let mut gpu = GpuNetwork::new(host, dev).map_err(|e| e.to_string())?;
    gpu.dev.synchronize().map_err(|e| e.to_string())?;
    let build = t1.elapsed().as_secs_f64();
    let zeros: Vec<Vec<T>> = gpu.host.inputs.iter().map(|(_, n)| vec![T::default(); n * gpu.host.batch]).collect();
    let external: Vec<&[T]> = zeros.iter().map(|v| v.as_slice()).collect();
    let err = |e: snnc_runtime::error::RuntimeError| e.to_string();
    // The driver loads every module, and recorded windows are kept (a reset keeps
    // them; the run after it starts as the first did): the timed steps replay them.
    if external.is_empty() {
        let steps = (a.duration / gpu.host.dt).round() as u64;
        gpu.run(steps.min(4 * gpu.window() as u64).max(1)).map_err(err)?;
    } else {
        gpu.step(&external).map_err(err)?;
    }
    gpu.reset().map_err(err)?;
    let steps = (a.duration / gpu.host.dt).round() as u64;
    let before = gpu.counts();
    let t2 = Instant::now();
    if external.is_empty() {
        // Whole windows recorded once and replayed (GpuNetwork::run).
        gpu.run(steps).map_err(err)?;
    } else {
        for _ in 0..steps {
            gpu.step(&external).map_err(err)?;
        }
    }
    gpu.flush().map_err(err)?;
    let run = t2.elapsed().as_secs_f64();
    let counts = gpu.counts().since(&before);
    let calls = counts.per_step_json(steps);
    // Whether windows replayed as recorded graphs, or why not.
    let graphs = match gpu.graphs_off() {
        Some(why) => format!("\"graphs\":false,\"graphs_off\":\"{}\"", why.replace('"', "'")),
        None => format!("\"graphs\":{}", counts.replays > 0),
    };
    let where_ = format!("\"backend\":\"cuda\",\"device\":\"{}\",{calls},{graphs}", gpu.dev.name().replace('"', "'"));
    print_sim(&gpu.host, a, &where_, rep, Times { frontend, jit: 0.0, build, run }, &[]);
    Ok(ExitCode::SUCCESS)
}

fn method_label(m: sema::Method) -> &'static str {
    sema::Method::ALL.iter().find(|(_, x)| *x == m).map(|(n, _)| *n).unwrap_or("?")
}
