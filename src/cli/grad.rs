//! `snnc grad FILE --network NAME --method ... --data SEQ.npz --weights W.npz --out GRADS.npz`:
//! the gradient of one batch of sequences (loss summed over steps), no optimiser step.

use super::Reporter;
use super::engine::{Job, On};
use super::args::{Backend, MethodArg, fail};
use snnc_runtime::scalar::Float;
use ndarray::{Array2, Array3, ArrayD, Ix2, Ix3};
use snnc_compiler::sema::LoadOptions;
use snnc_runtime::train::dataset::{check_finite, npz_names, read_npz_array};
use snnc_runtime::learn::{Gradients, Method, gradient};
use snnc_compiler::sema::{NetworkDef, Program};
use snnc_runtime::kernels::KernelFactory;
use snnc_runtime::network::{Network, Options};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;


#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// ES-D-RTRL trace decay (0 < decay < 1); an integer r >= 2 means (r - 1) / (r + 1).
    #[arg(long, default_value_t = 0.9)]
    pub etrace_decay: f64,
    /// `x` (T, B, inputs) and `target` (T, B, readouts).
    #[arg(long, value_name = "SEQ.npz")]
    pub data: PathBuf,
    /// Weights by projection name (rows = presynaptic); projections not in the file keep
    /// their initial values.
    #[arg(long, value_name = "W.npz")]
    pub weights: Option<PathBuf>,
    #[arg(long, value_name = "GRADS.npz")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute in f64 (network, traces and gradients); the default is f32.
    #[arg(long)]
    pub f64: bool,
    /// Also write per-step hidden states and eligibility traces as `.npy` into DIR
    /// (`POP.STATE.npy`, `eps_PROJ.npy`, `eps_x_PROJ.npy`, `eps_f_PROJ.npy`, ...).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
}


/// Array `name` of `path`; a value that is not finite is refused, naming it (a NaN
/// target would give NaN gradients, a NaN input a NaN network).
fn read_array(path: &Path, name: &str) -> Result<ArrayD<f64>, String> {
    let a = read_npz_array(path, name).map_err(|e| e.to_string())?;
    check_finite(a.view(), path, name).map_err(|e| e.to_string())?;
    Ok(a)
}

fn array_names(path: &Path) -> Result<Vec<String>, String> {
    npz_names(path).map_err(|e| e.to_string())
}

pub fn run(args: Args, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let Some((program, index)) = super::load_network(&args.file, args.network.as_deref(), opts, reporter) else {
        return ExitCode::FAILURE;
    };
    let def = &program.networks[index];
    let x = match read_array(&args.data, "x").and_then(|a| a.into_dimensionality::<Ix3>().map_err(|_| "`x` must have shape (T, B, inputs)".to_string())) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let target: Array3<f64> = match read_array(&args.data, "target").and_then(|a| a.into_dimensionality::<Ix3>().map_err(|_| "`target` must have shape (T, B, readouts)".to_string())) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    if x.shape()[..2] != target.shape()[..2] {
        return fail(format!("`x` is {:?} and `target` is {:?}: T and B must agree", x.shape(), target.shape()));
    }
    let job = GradJob { args: &args, program: &program, def, x, target: &target };
    let res = match super::engine::dispatch(super::engine::precision(args.f64), Backend::Jit, job).and_then(|r| r) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    // Write atomically: a temporary file renamed into place.
    let tmp = args.out.with_extension("npz.tmp");
    let write = || -> Result<(), String> {
        let f = File::create(&tmp).map_err(|e| format!("cannot write `{}`: {e}", tmp.display()))?;
        let mut w = ndarray_npy::NpzWriter::new(f);
        for (name, g) in &res.total {
            w.add_array(name.as_str(), g).map_err(|e| e.to_string())?;
        }
        w.add_array("loss", &ndarray::arr0(res.loss)).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &args.out).map_err(|e| format!("cannot write `{}`: {e}", args.out.display()))
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return fail(e);
    }
    if let Some(dir) = &args.record {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("cannot create `{}`: {e}", dir.display()));
        }
        for (name, shape, data) in &res.recorded {
            let path = dir.join(format!("{name}.npy"));
            let arr = match ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data.clone()) {
                Ok(a) => a,
                Err(e) => return fail(format!("{name}: {e}")),
            };
            if let Err(e) = ndarray_npy::write_npy(&path, &arr) {
                return fail(format!("cannot write `{}`: {e}", path.display()));
            }
        }
        println!("recorded {} arrays in {}", res.recorded.len(), dir.display());
    }
    println!("loss {:.6e}; wrote gradients of {} to {}", res.loss, res.total.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "), args.out.display());
    ExitCode::SUCCESS
}

/// `snnc grad`'s work in float type `T` (on the CPU).
struct GradJob<'a> {
    args: &'a Args,
    program: &'a Program,
    def: &'a NetworkDef,
    x: Array3<f64>,
    target: &'a Array3<f64>,
}

impl Job for GradJob<'_> {
    type Out = Result<Gradients, String>;
    fn run<T: Float>(self, on: On) -> Result<Gradients, String> {
        gradient_in::<T>(self.args, self.program, self.def, self.x, self.target, on.cpu_kernels())
    }
}

/// Builds the network in float type `T`, loads the weights and computes the gradient.
fn gradient_in<T: Float>(
    args: &Args,
    program: &Program,
    def: &NetworkDef,
    x: Array3<f64>,
    target: &Array3<f64>,
    factory: &'static dyn KernelFactory<T>,
) -> Result<Gradients, String> {
    let batch = x.shape()[1];
    let mut network = Network::<T>::build(program, def, &Options { seed: args.seed, batch, learning: true, ..Options::default() }, factory).map_err(|e| e.to_string())?;
    if let Some(wpath) = &args.weights {
        let names = array_names(wpath)?;
        for name in names {
            if network.trainable(&name).is_none() {
                let mut known: Vec<String> = network.projections().into_iter().map(|(n, _)| n).collect();
                known.extend(network.trainable_adapters());
                known.extend(network.trainable_params());
                return Err(format!("`{}` has weights `{name}`, but the network has no such projection or trainable param (it has: {})", wpath.display(), known.join(", ")));
            }
            let w: Array2<f64> = read_array(wpath, &name).and_then(|a| a.into_dimensionality::<Ix2>().map_err(|_| format!("weights `{name}` must be a matrix")))?;
            network.set_trainable(&name, w.mapv(T::from_f64)).map_err(|e| e.to_string())?;
        }
    }
    // Trainable params (`POP.PARAM`, 1 x n) come after the projections.
    let mut trainable: Vec<String> = def.projections.iter().filter(|p| p.trainable).map(|p| p.name.clone()).collect();
    trainable.extend(network.trainable_adapters());
    trainable.extend(network.trainable_params());
    let decay = if args.etrace_decay >= 2.0 && args.etrace_decay.fract() == 0.0 {
        (args.etrace_decay - 1.0) / (args.etrace_decay + 1.0)
    } else {
        args.etrace_decay
    };
    if !(decay > 0.0 && decay < 1.0) {
        return Err(format!("--etrace-decay must be in (0, 1) or an integer rank >= 2, got {}", args.etrace_decay));
    }
    let method = match args.method {
        MethodArg::Bptt => Method::Bptt,
        MethodArg::DRtrl => Method::DRtrl,
        MethodArg::EsDRtrl => Method::EsDRtrl { decay },
    };
    gradient(&mut network, &trainable, &[x], target, method, args.record.is_some()).map_err(|e| e.to_string())
}
