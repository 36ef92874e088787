//! `snnc grad FILE --network NAME --method ... --data SEQ.npz --weights W.npz --out GRADS.npz`:
//! the gradient of one batch of sequences (loss summed over steps), no optimiser step.

use super::Reporter;
use super::args::{MethodArg, fail};
use crate::api::grad::{self, GradSpec, MethodName};
use ndarray::{Array2, Array3, ArrayD, Ix2, Ix3};
use snnc_compiler::sema::LoadOptions;
use snnc_runtime::train::dataset::{check_finite, npz_names, read_npz_array};
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
    let weights = match &args.weights {
        Some(w) => match read_weights(w) {
            Ok(w) => w,
            Err(e) => return fail(e),
        },
        None => Vec::new(),
    };
    let method = match args.method {
        MethodArg::Bptt => MethodName::Bptt,
        MethodArg::DRtrl => MethodName::DRtrl,
        MethodArg::EsDRtrl => MethodName::EsDRtrl,
    };
    let spec = GradSpec { method, etrace_decay: args.etrace_decay, seed: args.seed, f64: args.f64, record: args.record.is_some() };
    let origin = args.weights.as_ref().map(|w| format!("`{}`", w.display())).unwrap_or_default();
    let res = match grad::compute(&program, def, &spec, x, &target, &weights, &origin) {
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

/// Every array of the weights file `path`, each a matrix.
fn read_weights(path: &Path) -> Result<Vec<(String, Array2<f64>)>, String> {
    array_names(path)?
        .into_iter()
        .map(|name| {
            let w = read_array(path, &name).and_then(|a| a.into_dimensionality::<Ix2>().map_err(|_| format!("weights `{name}` must be a matrix")))?;
            Ok((name, w))
        })
        .collect()
}
