//! `snnc run FILE --network NAME --duration 1s ...`: simulate a network.

use super::Reporter;
use super::args::{Backend, Precision, parse_method, parse_time};
use snnc_compiler::sema::{self, LoadOptions};
use super::engine::{Job, On};
use snnc_runtime::engine::Simulation;
use snnc_runtime::scalar::Float;
use snnc_runtime::kernels::flush_denormals;
use snnc_runtime::network::{Network, Options};
use snnc_runtime::record::Recorder;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;



#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The network to run (default: the only network in FILE).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Biological time to simulate, with a unit: `1s`, `500ms`.
    #[arg(long, default_value = "1s", value_parser = parse_time)]
    pub duration: f64,
    /// Time step, overriding the network's `dt`: `0.1ms`.
    #[arg(long, value_parser = parse_time)]
    pub dt: Option<f64>,
    /// Seed of every random choice (connectivity, initial values, noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// What to record: `spikes` and/or state names, comma-separated (`spikes,v`).
    #[arg(long, value_delimiter = ',', default_value = "spikes")]
    pub record: Vec<String>,
    /// Directory for the recordings (`.npy`); nothing is written without it.
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
}



pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let Some((program, index)) = super::load_network(&args.file, args.network.as_deref(), opts, reporter) else {
        return ExitCode::FAILURE;
    };
    let net = &program.networks[index];
    let o = Options { dt: args.dt, seed: args.seed, method: args.method, ..Options::default() };
    flush_denormals();
    let job = Simulate { args: &args, program: &program, net, o: &o };
    super::engine::dispatch(args.precision, args.backend, job).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

/// `snnc run`'s work in float type `T`.
struct Simulate<'a> {
    args: &'a Args,
    program: &'a sema::Program,
    net: &'a sema::NetworkDef,
    o: &'a Options,
}

impl Job for Simulate<'_> {
    type Out = ExitCode;
    fn run<T: Float>(self, on: On) -> ExitCode {
        simulate::<T>(self.args, self.program, self.net, self.o, on)
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

fn simulate<T: Float>(
    args: &Args,
    program: &sema::Program,
    net: &sema::NetworkDef,
    o: &Options,
    on: On,
) -> ExitCode {
    let wrap = match Wrap::open(on) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t0 = Instant::now();
    let mut network = match on.build::<T>(program, net, o) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(ck) = &args.weights {
        if let Err(e) = load_weights(&mut network, ck) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let (mut sim, backend): (Box<dyn Simulation<T>>, String) = match wrap {
        Wrap::Cpu => (Box::new(network), format!("{} backend", on.cpu_kernels::<T>().name())),
        #[cfg(feature = "cuda")]
        Wrap::Cuda(dev) => match snnc_runtime::gpu::GpuNetwork::new(network, dev) {
            Ok(g) => {
                let name = g.backend();
                (Box::new(g), format!("CUDA backend on {name}"))
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let build_time = t0.elapsed().as_secs_f64();
    let network = sim.network();
    let vars: Vec<String> = args.record.iter().filter(|r| *r != "spikes").cloned().collect();
    let mut rec = match Recorder::new(&network, args.record.iter().any(|r| r == "spikes"), &vars) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let steps = (args.duration / network.dt).round() as u64;
    let mut sources: Vec<InputSource> = vec![InputSource::Zero; network.inputs.len()];
    for spec in &args.inputs {
        match parse_input(spec, &network.inputs) {
            Ok((i, src)) => sources[i] = src,
            Err(e) => {
                eprintln!("error: --input {spec}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut buffers: Vec<Vec<T>> = network.inputs.iter().map(|(_, n)| vec![T::default(); n * network.batch]).collect();
    let rng = snnc_runtime::rng::Rng::new(network.seed ^ 0x1A2B_3C4D);
    let dt = network.dt;
    // What the recorder reads must be on the host after every step.
    let (sync, sync_states) = (args.record.iter().any(|r| r == "spikes"), !vars.is_empty());
    let bar = progress(steps);
    let t1 = Instant::now();
    let mut failure = None;
    for s in 0..steps {
        for (i, (src, buf)) in sources.iter().zip(buffers.iter_mut()).enumerate() {
            src.fill(buf, s, dt, &rng, i as u32);
        }
        let external: Vec<&[T]> = buffers.iter().map(|v| v.as_slice()).collect();
        if let Err(e) = sim.advance(&external).and_then(|_| if sync || sync_states { sim.sync(sync_states) } else { Ok(()) }) {
            failure = Some(e);
            break;
        }
        rec.sample(sim.network());
        if s % 100 == 0 {
            if let Some(b) = &bar {
                b.set_position(s);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let wall = t1.elapsed().as_secs_f64();
    if failure.is_none()
        && let Err(e) = sim.sync(true)
    {
        failure = Some(e);
    }
    let network = sim.network();
    let simulated = network.time();
    print_summary(network, &backend, wall, build_time);
    let mut status = ExitCode::SUCCESS;
    if let Some(e) = &failure {
        eprintln!("error: {e}; stopped at t = {:.4} s (recordings up to there are kept)", simulated);
        status = ExitCode::FAILURE;
    }
    if !write_outputs(args, &rec, network, simulated) {
        status = ExitCode::FAILURE;
    }
    status
}

/// The run's summary: size, speed, and each population's rate.
fn print_summary<T: Float>(network: &Network<T>, backend: &str, wall: f64, build_time: f64) {
    let simulated = network.time();
    println!(
        "network {}: {} neurons in {} populations, {} synapses in {} projections ({backend}, {})",
        network.name,
        network.n_neurons(),
        network.pops.len(),
        network.n_synapses(),
        network.projections().len(),
        std::any::type_name::<T>()
    );
    println!(
        "simulated {:.4} s ({} steps of {} ms) in {:.3} s wall ({:.3}x real time); build {:.3} s",
        simulated,
        network.step_index,
        network.dt * 1e3,
        wall,
        simulated / wall.max(1e-12),
        build_time
    );
    for pop in &network.pops {
        if pop.spikes.is_empty() {
            println!("  {}: {} neurons (non-spiking)", pop.name, pop.n);
        } else {
            let rate = pop.spike_count as f64 / (pop.n * network.batch) as f64 / simulated.max(1e-12);
            println!("  {}: {} neurons, mean rate {:.2} Hz", pop.name, pop.n, rate);
        }
    }
}

/// The raster plot and the recordings under `--out`; false if any could not be written.
fn write_outputs<T: Float>(args: &Args, rec: &Recorder, network: &Network<T>, simulated: f64) -> bool {
    let mut ok = true;
    if let (true, Some(dir)) = (args.plot, &args.out) {
        let spikes = rec.spikes();
        let rasters: Vec<super::plot::Raster> = spikes
            .iter()
            .map(|(p, t, i)| super::plot::Raster { name: &network.pops[*p].name, n: network.pops[*p].n * network.batch, t, i })
            .collect();
        let png = dir.join("raster.png");
        match std::fs::create_dir_all(dir).map_err(|e| e.to_string()).and_then(|_| super::plot::raster_png(&png, &rasters, simulated)) {
            Ok(()) => println!("  wrote {}", png.display()),
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    if let Some(dir) = &args.out {
        match rec.write(network, dir) {
            Ok(files) => {
                for f in files {
                    println!("  wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
            }
        }
    }
    ok
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

/// Where the values of an external input come from, step by step.
#[derive(Clone, Debug)]
enum InputSource {
    Zero,
    Const(f64),
    /// Independent Poisson spike trains with this rate (Hz).
    Poisson(f64),
    /// (T, size) values; 0 after the last row.
    Array(ndarray::Array2<f64>),
}

impl InputSource {
    fn fill<T: snnc_runtime::scalar::Float>(&self, buf: &mut [T], step: u64, dt: f64, rng: &snnc_runtime::rng::Rng, stream: u32) {
        match self {
            InputSource::Zero => buf.fill(T::default()),
            InputSource::Const(v) => buf.fill(T::from_f64(*v)),
            InputSource::Poisson(rate) => {
                let p = rate * dt;
                for (j, b) in buf.iter_mut().enumerate() {
                    let u = rng.uniform(stream, (step << 24) ^ j as u64, 0);
                    *b = T::from_f64(if u <= p { 1.0 } else { 0.0 });
                }
            }
            InputSource::Array(a) => {
                let n = a.ncols();
                for (j, b) in buf.iter_mut().enumerate() {
                    *b = T::from_f64(if (step as usize) < a.nrows() { a[[step as usize, j % n]] } else { 0.0 });
                }
            }
        }
    }
}

fn parse_input(spec: &str, inputs: &[(String, usize)]) -> Result<(usize, InputSource), String> {
    let (name, source) = spec.split_once('=').ok_or("expected NAME=SOURCE")?;
    let i = inputs.iter().position(|(n, _)| n == name).ok_or_else(|| {
        let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        format!("the network has no input `{name}` (inputs: {})", names.join(", "))
    })?;
    let size = inputs[i].1;
    if let Some(rate) = source.strip_prefix("poisson:") {
        let r = rate.trim();
        let split = r.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(r.len());
        let v: f64 = r[..split].trim().parse().map_err(|_| format!("`{r}` is not a rate"))?;
        let scale = match r[split..].trim() {
            "" | "Hz" => 1.0,
            "kHz" => 1e3,
            u => return Err(format!("unknown rate unit `{u}` (Hz, kHz)")),
        };
        return Ok((i, InputSource::Poisson(v * scale)));
    }
    if let Some(v) = source.strip_prefix("const:") {
        return Ok((i, InputSource::Const(v.trim().parse().map_err(|_| format!("`{v}` is not a number"))?)));
    }
    let a: ndarray::Array2<f64> = match ndarray_npy::read_npy::<_, ndarray::Array2<f64>>(source) {
        Ok(a) => a,
        Err(_) => ndarray_npy::read_npy::<_, ndarray::Array2<f32>>(source)
            .map(|a| a.mapv(f64::from))
            .map_err(|e| format!("cannot read `{source}` as a (T, {size}) float array: {e}"))?,
    };
    if a.ncols() != size {
        return Err(format!("`{source}` has {} columns, input `{name}` has {size} neurons", a.ncols()));
    }
    snnc_runtime::train::dataset::check_finite(a.view(), std::path::Path::new(source), name).map_err(|e| e.to_string())?;
    Ok((i, InputSource::Array(a)))
}

/// Sets the dense weights stored in checkpoint `ck` (written by `snnc train`).
fn load_weights<T: Float>(network: &mut Network<T>, ck: &std::path::Path) -> Result<(), String> {
    let (weights, _) = snnc_runtime::train::load_checkpoint(ck).map_err(|e| e.to_string())?;
    snnc_runtime::train::set_weights(network, &weights).map_err(|e| format!("checkpoint `{}`: {e}", ck.display()))
}
