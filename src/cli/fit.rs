//! `snnc fit FILE --readout W_OUT --target sines:1.2s --learn 14.4s --test 2.4s`: train a
//! `Linear` readout without gradients over one sequence - online with FORCE (recursive
//! least squares while the network runs, its output fed back), or offline with ridge
//! regression - then run on with the weights fixed (the testing phase). Not part of
//! `snnc train`, whose batches, epochs, optimisers and losses do not apply (docs/training.md).

use super::args::{fail, parse_time};
use super::plot;
use crate::api::inputs::{Drive, InputSource, parse_input};
use snnc_compiler::sema::LoadOptions;
use snnc_runtime::force::{self, FitRun, fit_target, sum_of_sines};
use snnc_runtime::kernels::{JitFactory, flush_denormals};
use snnc_runtime::network::{Network, Options};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitMethod {
    /// Recursive least squares online (Sussillo & Abbott 2009).
    Force,
    /// Ridge regression of the states of the learning phase (teacher forcing).
    Ridge,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// The trained projection: dense, into a `Linear` readout that nothing else drives.
    #[arg(long, value_name = "PROJECTION")]
    pub readout: String,
    #[arg(long, value_enum, default_value = "force")]
    pub method: FitMethod,
    /// The readout's target: `sines:PERIOD` (Sussillo & Abbott's four harmonics of
    /// PERIOD, e.g. `sines:1.2s`) or `FILE.npy` of shape (T, readout size).
    #[arg(long, value_name = "TARGET")]
    pub target: String,
    /// Time with learning on, from the start: `14.4s`.
    #[arg(long, value_parser = parse_time)]
    pub learn: f64,
    /// Time with learning off, after it.
    #[arg(long, value_parser = parse_time)]
    pub test: f64,
    /// FORCE: P starts as I / alpha.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// FORCE: update every this many steps.
    #[arg(long, default_value_t = 2)]
    pub every: usize,
    /// Ridge: the regulariser lambda.
    #[arg(long, default_value_t = 1e-4)]
    pub lambda: f64,
    /// External inputs, as `snnc run --input` (`NAME=FILE.npy`, `NAME=const:V`, ...).
    #[arg(long = "input", value_name = "NAME=SOURCE")]
    pub inputs: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Writes `z.npy` and `target.npy` (T x outputs, every step), the trained weights
    /// `PROJECTION.npy`, and `fit.png` (output and target against time).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &super::Reporter) -> ExitCode {
    let Some((program, index)) = super::load_network(&args.file, args.network.as_deref(), opts, reporter) else {
        return ExitCode::FAILURE;
    };
    flush_denormals();
    // f64: the recursive least squares update loses P's symmetry in f32.
    let o = Options { seed: args.seed, ..Options::default() };
    let mut net = match Network::<f64>::build(&program, &program.networks[index], &o, &JitFactory) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    match fit(&args, &mut net) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The target of step t (its end, t + 1 steps in) for `--target`.
fn target_fn(spec: &str, dt: f64, n_out: usize) -> Result<Box<dyn Fn(usize, &mut [f64])>, String> {
    if let Some(p) = spec.strip_prefix("sines:") {
        let period = parse_time(p)?;
        return Ok(Box::new(move |t, f: &mut [f64]| f.fill(sum_of_sines((t + 1) as f64 * dt, period))));
    }
    let a: ndarray::Array2<f64> = ndarray_npy::read_npy(spec).map_err(|e| format!("--target {spec}: {e} (expected a (T, {n_out}) float64 array)"))?;
    if a.ncols() != n_out {
        return Err(format!("--target {spec}: {} columns, the readout has {n_out} neurons", a.ncols()));
    }
    Ok(Box::new(move |t, f: &mut [f64]| f.iter_mut().enumerate().for_each(|(o, v)| *v = a.get((t, o)).copied().unwrap_or(0.0))))
}

fn fit(args: &Args, net: &mut Network<f64>) -> Result<(), String> {
    let fit = fit_target(net, &args.readout).map_err(|e| e.to_string())?;
    let dt = net.dt;
    let (learn, test) = ((args.learn / dt).round() as usize, (args.test / dt).round() as usize);
    if learn == 0 {
        return Err("--learn is shorter than one step".into());
    }
    let target = target_fn(&args.target, dt, fit.n_out)?;
    let mut sources = vec![InputSource::Zero; net.inputs.len()];
    for spec in &args.inputs {
        let (i, src) = parse_input(spec, &net.inputs).map_err(|e| format!("--input {spec}: {e}"))?;
        sources[i] = src;
    }
    let mut drive = Drive::new(net, sources);
    let mut inputs = |t: usize| drive.fill(t as u64, dt).into_iter().map(|s| s.to_vec()).collect::<Vec<_>>();
    let feedback = if force::feeds_back(net, fit.readout) { "with readout feedback" } else { "without feedback" };
    println!(
        "{} of `{}` ({} x {}) {feedback}: {learn} steps learning, {test} testing",
        match args.method {
            FitMethod::Force => format!("FORCE (alpha {}, every {} steps)", args.alpha, args.every),
            FitMethod::Ridge => format!("ridge regression (lambda {:e})", args.lambda),
        },
        args.readout,
        fit.n_pre,
        fit.n_out
    );
    let start = std::time::Instant::now();
    let run = match args.method {
        FitMethod::Force => force::force(net, &fit, learn + test, learn, (args.alpha, args.every), &mut inputs, &*target),
        FitMethod::Ridge => force::ridge(net, &fit, learn + test, learn, args.lambda, &mut inputs, &*target),
    }
    .map_err(|e| e.to_string())?;
    let wall = start.elapsed().as_secs_f64();
    // Ridge sets the weights only once learning ends: its learning phase ran without them.
    if args.method == FitMethod::Force {
        let tail = learn.min(test.max(1));
        println!("mean absolute error: {:.4} over the last {tail} learning steps", run.mae(learn - tail..learn));
    }
    if test > 0 {
        println!("mean absolute error: {:.4} over the {test} testing steps (learning off)", run.mae(learn..learn + test));
    }
    println!("{} steps in {wall:.2} s wall", learn + test);
    if let Some(dir) = &args.out {
        write_outputs(dir, &args.readout, net, fit.proj, &run, learn, dt)?;
    }
    Ok(())
}

fn write_outputs(dir: &Path, readout: &str, net: &Network<f64>, proj: usize, run: &FitRun, learn: usize, dt: f64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let rows = |v: &[Vec<f64>]| ndarray::Array2::from_shape_fn((v.len(), v.first().map_or(0, Vec::len)), |(t, o)| v[t][o]);
    let write = |name: &str, a: &ndarray::Array2<f64>| {
        let p = dir.join(name);
        ndarray_npy::write_npy(&p, a).map_err(|e| format!("{}: {e}", p.display()))?;
        println!("  wrote {}", p.display());
        Ok::<(), String>(())
    };
    write("z.npy", &rows(&run.z))?;
    write("target.npy", &rows(&run.f))?;
    write(&format!("{readout}.npy"), net.dense_weights(proj).expect("checked dense"))?;
    let p = dir.join("fit.png");
    let series = |v: &[Vec<f64>]| v.iter().enumerate().map(|(t, x)| ((t + 1) as f64 * dt, x[0])).collect::<Vec<_>>();
    plot::fit_png(&p, &series(&run.z), &series(&run.f), learn as f64 * dt)?;
    println!("  wrote {}", p.display());
    Ok(())
}
