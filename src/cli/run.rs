//! `snnc run FILE --network NAME --duration 1s ...`: simulate a network.
//!
//! Everything that can be refused is refused before simulating: the step count, the
//! output directory, the network's memory and the recordings' disk space. Recordings
//! are streamed to `.npy` files as the run goes; Ctrl-C stops the run between two steps
//! and keeps them (docs/running.md describes the files).

use super::Reporter;
use super::args::{Backend, Precision, fail, parse_count, parse_method, parse_time, plural};
use super::engine::{Job, On};
use super::os;
use super::plot::RasterData;
use crate::api::inputs::{Drive, InputSource, parse_input};
use snnc_compiler::sema::{self, LoadOptions};
use snnc_runtime::engine::Simulation;
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::flush_denormals;
use snnc_runtime::memory::{self, format_bytes};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::partition::{Exchange, Partitioned};
use snnc_runtime::record::{Selection, StreamRecorder};
use snnc_runtime::scalar::Float;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Steps a run may take unless `--max-steps` says more: a billion steps is hours of
/// simulation; more is nearly always a dt or a duration off by orders of magnitude.
pub const MAX_STEPS: u64 = 1_000_000_000;

/// Recordings at least this large are announced before the run.
const ANNOUNCE_BYTES: u64 = 100_000_000;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The network to run (default: the only network in FILE).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Biological time to simulate, with a unit: `1s`, `500ms`. Rounded to a whole
    /// number of steps (with a warning when that changes it).
    #[arg(long, default_value = "1s", value_parser = parse_time)]
    pub duration: f64,
    /// Time step, overriding the network's `dt`: `0.1ms`.
    #[arg(long, value_parser = parse_time)]
    pub dt: Option<f64>,
    /// Refuse runs of more steps than this (a dt or a duration off by orders of magnitude).
    #[arg(long, default_value_t = MAX_STEPS, value_name = "N", value_parser = parse_count)]
    pub max_steps: u64,
    /// Seed of every random choice (connectivity, initial values, noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What to record into --out: `spikes` and/or state names, comma-separated
    /// (`spikes,v`). Default with --out: `spikes`.
    #[arg(long, value_delimiter = ',', requires = "out")]
    pub record: Option<Vec<String>>,
    /// Directory for the recordings (`.npy`, written as the run goes); nothing is
    /// written without it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also draw `DIR/raster.png`: spike raster and population rates (needs --out).
    #[arg(long, requires = "out")]
    pub plot: bool,
    /// Drive an external input: `NAME=poisson:RATE` (independent Poisson spike trains,
    /// e.g. `x=poisson:20Hz`), `NAME=const:VALUE` or `NAME=FILE.npy` (an array of shape
    /// (T, size); steps beyond T get 0). Inputs not given are 0.
    #[arg(long = "input", value_name = "NAME=SOURCE")]
    pub inputs: Vec<String>,
    #[arg(long, value_enum, default_value = "jit")]
    pub backend: Backend,
    /// Integrate every population with this method (exact, exp_euler, euler, rk2, rk4)
    /// instead of each model's own.
    #[arg(long, value_parser = parse_method)]
    pub method: Option<snnc_compiler::sema::Method>,
    /// Float type of states and weights (the interpreter computes in f64 either way).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Weights from a `snnc train` checkpoint (safetensors), by projection name; the
    /// other projections keep their seeded initial weights.
    #[arg(long, value_name = "CKPT")]
    pub weights: Option<PathBuf>,
    /// CPU threads the neurons of every population are split across (the spikes are
    /// those of one thread); 0: one per core.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
}

impl Args {
    /// The recorded names: `--record`, else spikes.
    fn recorded(&self) -> Vec<String> {
        self.record.clone().unwrap_or_else(|| vec!["spikes".into()])
    }
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    with_ranks(|ex| run_on(args, opts, reporter, ex))
}

/// Why `--backend cuda` refuses `mpirun` (of `run` and `bench sim`).
pub(super) const GPU_NOT_PARTITIONED: &str =
    "E0702: --backend cuda: a simulation partitioned over MPI ranks runs on the CPU (--backend jit or interp); run it in one process for the GPU";

/// `f` given the other ranks of an MPI launch (`mpirun -np K`, K > 1, feature `mpi`):
/// the neurons of every population are split over them (docs/scaling.md), and rank 0
/// alone writes to standard output. Else, and without the feature, `f(None)`.
pub(super) fn with_ranks<R>(f: impl FnOnce(Option<&dyn Exchange>) -> R) -> R {
    #[cfg(feature = "mpi")]
    {
        let universe = snnc_runtime::ranks::launched();
        let ranks = universe.as_ref().map(snnc_runtime::ranks::Ranks::new).filter(|r| r.size > 1);
        if let Some(r) = ranks.as_ref().filter(|r| r.rank > 0) {
            r.silence_stdout();
        }
        f(ranks.as_ref().map(|r| r as &dyn Exchange))
    }
    #[cfg(not(feature = "mpi"))]
    f(None)
}

/// `snnc run` in this process, or as one rank of a partitioned run (`ex`).
fn run_on(args: Args, opts: &LoadOptions, reporter: &Reporter, ex: Option<&dyn Exchange>) -> ExitCode {
    if let Some(ex) = ex {
        if let Err(e) = launched_alike(&args.file, ex) {
            return fail(e);
        }
        if args.backend == Backend::Cuda {
            return fail(GPU_NOT_PARTITIONED);
        }
    }
    let writes = ex.is_none_or(|ex| ex.rank() == 0);
    let Some((program, index, steps, o)) = agree(ex, prepare(&args, opts, reporter, writes)) else {
        return ExitCode::FAILURE;
    };
    flush_denormals();
    let job = Simulate { args: &args, program: &program, net: &program.networks[index], o: &o, steps, ex };
    super::engine::dispatch(args.precision, args.backend, job).unwrap_or_else(fail)
}

/// What is checked before anything is built: the network, its step count, its memory
/// and (where this process `writes`) the output directory; errors are printed.
fn prepare(args: &Args, opts: &LoadOptions, reporter: &Reporter, writes: bool) -> Option<(sema::Program, usize, u64, Options)> {
    let (program, index, sources) = super::load_network_sources(&args.file, args.network.as_deref(), opts, reporter)?;
    let net = &program.networks[index];
    let steps = step_count(args, net).map_err(|e| fail(e)).ok()?;
    let o = Options { dt: args.dt, seed: args.seed, method: args.method, ..Options::default() };
    let float_bytes = match args.precision {
        Precision::F32 => 4,
        Precision::F64 => 8,
    };
    if let Err(e) = memory::check(&program, net, &o, float_bytes) {
        reporter.report(&[crate::api::load::too_large(&e, float_bytes == 8)], &sources);
        return None;
    }
    if let Some(dir) = args.out.as_ref().filter(|_| writes) {
        prepare_out(dir).map_err(|e| fail(e)).ok()?;
    }
    Some((program, index, steps, o))
}

/// The ranks of a partitioned run were started with the same command and model file
/// (else every rank stops with the error).
pub(super) fn launched_alike(file: &Path, ex: &dyn Exchange) -> Result<(), String> {
    let mut h = snnc_runtime::connectivity::Fingerprint::default();
    let file = std::fs::read(file).unwrap_or_default();
    std::env::args().skip(1).flat_map(|a| a.into_bytes().into_iter().chain([0])).chain(file).for_each(|b| h.add(u64::from(b)));
    ex.check_alike(h.0, "another command or model file").map_err(|e| e.to_string())
}

/// `r`, unless a rank of a partitioned run (`ex`) failed to get here (each has printed
/// its own error): a rank that stopped alone would leave the others waiting in their
/// next collective. One process: `r`.
pub(super) fn agree<X>(ex: Option<&dyn Exchange>, r: Option<X>) -> Option<X> {
    let Some(ex) = ex else { return r };
    let all = ex.all_gather(&[u32::from(r.is_none())]);
    let failed: Vec<usize> = (0..all.len()).filter(|&k| all[k] != [0]).collect();
    if failed.is_empty() {
        return r;
    }
    if r.is_some() {
        eprintln!("error (rank {} of {}): MPI ranks {failed:?} could not start the run (their errors above)", ex.rank(), ex.size());
    }
    None
}

/// The number of steps of `--duration`: refused when it is 0 or over `--max-steps`,
/// with a warning when the duration is not a whole number of steps.
fn step_count(args: &Args, net: &sema::NetworkDef) -> Result<u64, String> {
    let dt = snnc_compiler::pipeline::resolve_dt(args.dt, Some(net));
    let whose = match (args.dt, net.dt) {
        (Some(_), _) => "--dt".to_string(),
        (None, Some(_)) => format!("the `dt` of network `{}`", net.name),
        (None, None) => "the default dt".to_string(),
    };
    let duration = time_str(args.duration);
    let ratio = args.duration / dt;
    let steps = ratio.round();
    if steps < 1.0 {
        return Err(format!("--duration {duration} is less than half a step of {} ({whose}): 0 steps to simulate", time_str(dt)));
    }
    if steps > args.max_steps as f64 {
        let count = if steps < 1e15 { format!("{steps}") } else { format!("{steps:.3e}") };
        return Err(format!(
            "--duration {duration} is {count} steps of {} ({whose}), over the limit of {} steps (raise it with --max-steps if this is meant)",
            time_str(dt),
            args.max_steps
        ));
    }
    if (ratio - steps).abs() > 1e-6 * ratio.max(1.0) {
        eprintln!(
            "warning: --duration {duration} is not a whole number of steps of {}: simulating {} ({})",
            time_str(dt),
            plural(steps as usize, "step"),
            time_str(steps * dt)
        );
    }
    Ok(steps as u64)
}

/// Seconds as a person writes them: `1.5 ms`, `2 s`, `250 us`, `1e-33 s`.
fn time_str(s: f64) -> String {
    let (v, unit) = match s.abs() {
        a if a >= 1.0 || a == 0.0 => (s, "s"),
        a if a >= 1e-3 => (s * 1e3, "ms"),
        a if a >= 1e-6 => (s * 1e6, "us"),
        _ => return format!("{s:e} s"),
    };
    // Six significant digits, without the float noise of the scaling (1.5000000000000002).
    let text = format!("{:.6}", v);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// Makes sure recordings can be written into `dir` before anything is simulated: it is
/// created if needed, and a file is created in it and removed.
fn prepare_out(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!("--out `{}` is a file, not a directory", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("--out: cannot create the directory `{}`: {e}", dir.display()))?;
    let probe = dir.join(format!(".snnc-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| format!("--out: cannot write in `{}`: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `snnc run`'s work in float type `T`.
struct Simulate<'a> {
    args: &'a Args,
    program: &'a sema::Program,
    net: &'a sema::NetworkDef,
    o: &'a Options,
    steps: u64,
    /// The other ranks of a partitioned run, if any.
    ex: Option<&'a dyn Exchange>,
}

impl Job for Simulate<'_> {
    type Out = ExitCode;
    fn run<T: Float>(self, on: On) -> ExitCode {
        simulate::<T>(&self, on)
    }
}

/// Where the built network runs.
enum Wrap {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(snnc_runtime::gpu::cuda::CudaDevice),
}

impl Wrap {
    /// Opens the GPU (if `on` it) before anything is built, so a machine without one
    /// fails at once.
    fn open(on: On) -> Result<Wrap, String> {
        match on {
            On::Cpu { .. } => Ok(Wrap::Cpu),
            #[cfg(feature = "cuda")]
            On::Cuda => snnc_runtime::gpu::cuda::CudaDevice::open(0).map(Wrap::Cuda).map_err(|e| e.to_string()),
        }
    }
}

/// The network built where it runs, with `--weights` loaded, and the backend's name;
/// in a partitioned run, this rank's part of it.
fn build<'e, T: Float>(job: &Simulate<'e>, on: On) -> Result<(Box<dyn Simulation<T> + 'e>, String), String> {
    let args = job.args;
    let wrap = Wrap::open(on)?;
    let mut network = on.build::<T>(job.program, job.net, job.o).map_err(|e| e.to_string())?;
    if let Some(ck) = &args.weights {
        load_weights(&mut network, ck)?;
    }
    Ok(match wrap {
        Wrap::Cpu => {
            network.set_threads(super::args::threads_or_cores(args.threads)).map_err(|e| e.to_string())?;
            let threads = super::args::plural(network.threads(), "thread");
            let backend = format!("{} backend, {threads}", on.cpu_kernels::<T>().name());
            let Some(ex) = job.ex else { return Ok((Box::new(network), backend)) };
            network.partition(ex.rank(), ex.size()).map_err(|e| e.to_string())?;
            // Every rank gathers the states when they are recorded (the same calls on all).
            let states = args.out.is_some() && args.recorded().iter().any(|r| r != "spikes");
            (Box::new(Partitioned::new(network, ex, states)), format!("{backend} on each of {} MPI ranks", ex.size()))
        }
        #[cfg(feature = "cuda")]
        Wrap::Cuda(dev) => {
            let g = snnc_runtime::gpu::GpuNetwork::new(network, dev).map_err(|e| e.to_string())?;
            let name = g.backend();
            (Box::new(g), format!("CUDA backend on {name}"))
        }
    })
}

/// What a run writes as it goes: the recordings and the raster's data.
struct Outputs {
    rec: Option<StreamRecorder>,
    raster: Option<RasterData>,
}

impl Outputs {
    /// Checks what to record and that it fits on the disk, then creates the files (where
    /// this process `writes`: one process, or rank 0 of a partitioned run).
    fn open<T: Float>(args: &Args, network: &Network<T>, steps: u64, writes: bool) -> Result<Outputs, String> {
        let Some(dir) = args.out.as_ref().filter(|_| writes) else { return Ok(Outputs { rec: None, raster: None }) };
        let recorded = args.recorded();
        let vars: Vec<String> = recorded.iter().filter(|r| *r != "spikes").cloned().collect();
        // The raster needs the spikes; --plot records them too.
        let sel = Selection::new(network, args.plot || recorded.iter().any(|r| r == "spikes"), &vars).map_err(|e| e.to_string())?;
        let bytes = sel.trace_bytes(steps);
        let spikes = if sel.spikes.is_empty() { "" } else { ", plus 16 bytes per spike" };
        if let Some(free) = os::free_disk(dir)
            && bytes > free
        {
            return Err(format!(
                "the recordings need about {} ({bytes} bytes{spikes}), only {} are free on the disk of `{}`; record fewer states (--record) or a shorter --duration",
                format_bytes(bytes),
                format_bytes(free),
                dir.display()
            ));
        }
        if bytes >= ANNOUNCE_BYTES {
            println!("recording about {} into {}{spikes}", format_bytes(bytes), dir.display());
        }
        let rec = StreamRecorder::create(network, &sel, dir).map_err(|e| e.to_string())?;
        let raster = args.plot.then(|| RasterData::new(network, steps as f64 * network.dt));
        Ok(Outputs { rec: Some(rec), raster })
    }
}

/// Why a run stopped.
enum Stop {
    Done,
    /// Ctrl-C.
    Interrupted,
    /// The network failed (a state became NaN, ...).
    Failed(RuntimeError),
    /// A recording could not be written.
    WriteFailed(RuntimeError),
}

/// The simulation built with its inputs and open outputs, or the error (printed).
fn start<'e, T: Float>(job: &Simulate<'e>, on: On) -> Option<(Box<dyn Simulation<T> + 'e>, String, Vec<InputSource>, Outputs)> {
    let args = job.args;
    let (sim, backend) = build::<T>(job, on).map_err(fail).ok()?;
    let network = sim.network();
    let mut sources: Vec<InputSource> = vec![InputSource::Zero; network.inputs.len()];
    for spec in &args.inputs {
        let (i, src) = parse_input(spec, &network.inputs).map_err(|e| fail(format!("--input {spec}: {e}"))).ok()?;
        sources[i] = src;
    }
    // Ctrl-C from here on stops between steps; the files are created after, so an
    // interrupted run always finishes them. (The ranks of a partitioned run are ended
    // by mpirun: they could not agree on the step to stop at.)
    if job.ex.is_none() {
        os::catch_interrupt();
    }
    let out = Outputs::open(args, network, job.steps, job.ex.is_none_or(|ex| ex.rank() == 0)).map_err(fail).ok()?;
    Some((sim, backend, sources, out))
}

fn simulate<T: Float>(job: &Simulate, on: On) -> ExitCode {
    let (args, steps) = (job.args, job.steps);
    let t0 = Instant::now();
    let Some((mut sim, backend, sources, mut out)) = agree(job.ex, start::<T>(job, on)) else {
        return ExitCode::FAILURE;
    };
    let build_time = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let stop = run_steps(sim.as_mut(), &sources, &mut out, steps);
    let wall = t1.elapsed().as_secs_f64();
    let stop = match (stop, sim.sync(true).and_then(|()| sim.sync_plasticity())) {
        (Stop::Done | Stop::Interrupted, Err(e)) => Stop::Failed(e),
        (s, _) => s,
    };
    // Recordings first: a closed stdout (SIGPIPE) while printing loses nothing.
    let mut ok = finish_outputs(args, &mut out);
    let network = sim.network();
    // A rank that failed alone ends the others, which would wait for its spikes.
    if let (Some(ex), Stop::Failed(e) | Stop::WriteFailed(e)) = (job.ex, &stop) {
        ex.abort(&format!("{e}; stopped at step {} of {steps}", network.step_index));
    }
    print_summary(network, &backend, wall, build_time);
    ok.0 &= plastic_weights(network, args.out.as_deref());
    if let Some(rec) = &out.rec {
        let failed = rec.failed();
        for f in rec.files().iter().filter(|f| !failed.contains(f)) {
            println!("  wrote {}", f.display());
        }
    }
    if let (Some(_), Some(dir)) = (&out.raster, &args.out)
        && ok.1
    {
        println!("  wrote {}", dir.join("raster.png").display());
    }
    let at = format!("step {} of {steps} (t = {:.4} s)", network.step_index, network.time());
    let kept = if args.out.is_some() { "; the recordings up to there are written" } else { "" };
    match stop {
        Stop::Done => {}
        Stop::Interrupted => {
            eprintln!("interrupted at {at}{kept}");
            return ExitCode::from(130);
        }
        Stop::Failed(e) => {
            eprintln!("error: {e}; stopped at {at}{kept}");
            ok.0 = false;
        }
        Stop::WriteFailed(e) => {
            eprintln!("error: {e}; stopped at {at}");
            ok.0 = false;
        }
    }
    if ok.0 && ok.1 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The final weights of the plastic projections (STDP): a summary line each and, with
/// `--out DIR`, `DIR/PROJ.w.npy` (pre x post dense, 1 x synapses sparse, as `snnc
/// train` stores them) and `DIR/weights.safetensors`, which `--weights` loads into the
/// next run. Returns whether the files were written.
fn plastic_weights<T: Float>(network: &Network<T>, out: Option<&std::path::Path>) -> bool {
    let names = network.plastic_projections();
    if names.is_empty() {
        return true;
    }
    let weights = snnc_runtime::train::weights_of(network, &names);
    for (name, w) in &weights {
        let (lo, hi) = w.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
        println!("  plastic `{name}`: {} weights, mean {mean:.6}, min {lo:.6}, max {hi:.6}", w.len());
    }
    let Some(dir) = out else { return true };
    let mut ok = true;
    for (name, w) in &weights {
        let path = dir.join(format!("{name}.w.npy"));
        match ndarray_npy::write_npy(&path, w) {
            Ok(()) => println!("  wrote {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write `{}`: {e}", path.display());
                ok = false;
            }
        }
    }
    let path = dir.join("weights.safetensors");
    match snnc_runtime::train::save_checkpoint(&path, &weights, &[("source", "snnc run: plastic weights".to_string())]) {
        Ok(()) => println!("  wrote {} (load with --weights)", path.display()),
        Err(e) => {
            eprintln!("error: {e}");
            ok = false;
        }
    }
    ok
}

/// Steps the simulation `steps` times (or until Ctrl-C, a failure or a write error),
/// recording after every step: `Simulation::advance_free` (no inputs, nothing
/// recorded), `Simulation::advance_recorded` (no inputs) or `Simulation::advance_fed`
/// (the inputs filled step by step from their sources), in chunks of
/// `Simulation::steps_at_once` (one step on the CPU), between which Ctrl-C is seen and
/// the progress bar moves. The GPU runs a chunk a window at a time: the inputs of a
/// window uploaded at once, the spikes and recorded states handed over a window at a
/// time.
fn run_steps<T: Float>(sim: &mut dyn Simulation<T>, sources: &[InputSource], out: &mut Outputs, steps: u64) -> Stop {
    let network = sim.network();
    let dt = network.dt;
    let mut drive = (!network.inputs.is_empty()).then(|| Drive::new(network, sources.to_vec()));
    let chunk = sim.steps_at_once().max(1);
    let recorded = out.rec.is_some() || out.raster.is_some();
    let traced = out.rec.as_ref().map(|r| r.traced()).unwrap_or_default();
    let bar = progress(steps);
    let mut done = 0;
    let mut stop = Stop::Done;
    while done < steps {
        if os::interrupted() {
            stop = Stop::Interrupted;
            break;
        }
        let n = chunk.min(steps - done);
        let mut write_failed = None;
        let mut show = |net: &Network<T>| {
            if let Some(r) = &mut out.raster {
                r.sample(net);
            }
            match &mut out.rec {
                Some(rec) => rec.sample(net).inspect_err(|e| write_failed = Some(e.clone())),
                None => Ok(()),
            }
        };
        let ran = match (&mut drive, recorded) {
            (None, false) => sim.advance_free(n),
            (None, true) => sim.advance_recorded(n, &traced, &mut show),
            (Some(drive), _) => {
                let mut fill = |step: u64, x: &mut [Vec<T>]| {
                    drive.fill_into(step, dt, x);
                    Ok(())
                };
                let each: Option<&mut snnc_runtime::engine::ShowStep<'_, T>> = if recorded { Some(&mut show) } else { None };
                sim.advance_fed(n, &mut fill, &traced, each)
            }
        };
        if let Err(e) = ran {
            stop = match write_failed {
                Some(w) => Stop::WriteFailed(w),
                None => Stop::Failed(e),
            };
            break;
        }
        done += n;
        if let Some(b) = bar.as_ref().filter(|_| n > 1 || done % 100 == 0) {
            b.set_position(done);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    stop
}

/// Writes what the recordings still buffer and draws the raster. Returns whether the
/// recordings and the raster were written; every error is printed, naming its file.
fn finish_outputs(args: &Args, out: &mut Outputs) -> (bool, bool) {
    let mut recordings = true;
    if let Some(rec) = &mut out.rec {
        for e in rec.finish() {
            eprintln!("error: {e}");
            recordings = false;
        }
        recordings &= rec.failed().is_empty();
    }
    let mut plot = true;
    if let (Some(r), Some(dir)) = (&out.raster, &args.out)
        && let Err(e) = super::plot::raster_png(&dir.join("raster.png"), r)
    {
        eprintln!("error: {e}");
        plot = false;
    }
    (recordings, plot)
}

/// The run's summary: size, speed, and each population's rate.
fn print_summary<T: Float>(network: &Network<T>, backend: &str, wall: f64, build_time: f64) {
    let simulated = network.time();
    println!(
        "network {}: {} in {}, {} in {} ({backend}, {})",
        network.name,
        plural(network.n_neurons(), "neuron"),
        plural(network.pops.len(), "population"),
        plural(network.n_synapses(), "synapse"),
        plural(network.projections().len(), "projection"),
        std::any::type_name::<T>()
    );
    println!(
        "simulated {:.4} s ({} of {} ms) in {:.3} s wall ({:.3}x real time); build {:.3} s",
        simulated,
        plural(network.step_index as usize, "step"),
        network.dt * 1e3,
        wall,
        simulated / wall.max(1e-12),
        build_time
    );
    for pop in &network.pops {
        if pop.spikes().is_empty() {
            println!("  {}: {} (non-spiking)", pop.name, plural(pop.n, "neuron"));
        } else if snnc_runtime::sends::sends_rate(pop) {
            let name = snnc_runtime::sends::sent_value(pop).unwrap_or_default();
            println!("  {}: {} (sends the rate `{name}` every step)", pop.name, plural(pop.n, "neuron"));
        } else {
            let rate = pop.spike_count as f64 / (pop.n * network.batch) as f64 / simulated.max(1e-12);
            println!("  {}: {}, mean rate {:.2} Hz", pop.name, plural(pop.n, "neuron"), rate);
        }
    }
}

fn progress(steps: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || steps < 1000 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps ({eta} left)").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Sets the dense weights stored in checkpoint `ck` (written by `snnc train`).
fn load_weights<T: Float>(network: &mut Network<T>, ck: &std::path::Path) -> Result<(), String> {
    let (weights, _) = snnc_runtime::train::load_checkpoint(ck).map_err(|e| e.to_string())?;
    // A batch norm runs with its running statistics: a checkpoint without them would
    // run it with mean 0 and variance 1, another network.
    let lacking: Vec<String> = network.batch_norm_state().into_iter().filter(|n| !weights.iter().any(|(m, _)| m == n)).collect();
    if !lacking.is_empty() {
        return Err(format!(
            "checkpoint `{}` lacks {}: the running statistics of the network's `batch_norm` (a checkpoint of `snnc train` holds them)",
            ck.display(),
            lacking.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    snnc_runtime::train::set_weights(network, &weights).map_err(|e| format!("checkpoint `{}`: {e}", ck.display()))
}
