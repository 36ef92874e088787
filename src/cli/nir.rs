//! `snnc export-nir FILE --out GRAPH.nir` and `snnc import-nir GRAPH.nir --dt 1ms --out DIR`
//! (docs/nir.md).

use super::Reporter;
use super::args::{fail, parse_method, parse_time};
use crate::api::nir;
use snnc_compiler::sema::{LoadOptions, Method};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The network to export (default: the only network in FILE).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Seed of the initial weights and params (as `snnc run --seed`).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weights from a `snnc train` checkpoint (safetensors), by projection name.
    #[arg(long, value_name = "CKPT")]
    pub weights: Option<PathBuf>,
    /// The NIR file to write (HDF5).
    #[arg(long, value_name = "GRAPH.nir")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A NIR graph (HDF5, as the `nir` package writes it).
    #[arg(value_name = "GRAPH.nir")]
    pub file: PathBuf,
    /// The time step to run it with (NIR graphs have none): `1ms`.
    #[arg(long, value_parser = parse_time)]
    pub dt: f64,
    /// How NIR's continuous-time equations are integrated (docs/nir.md): euler (the
    /// discretisation of snnTorch, Norse and most NIR producers) or exact, exp_euler,
    /// rk2, rk4.
    #[arg(long, default_value = "euler", value_parser = parse_method)]
    pub method: Method,
    /// The network's name (default: the file's stem).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Directory for NAME.snn and its weights NAME.safetensors.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn export(a: ExportArgs, opts: &LoadOptions, reporter: &Reporter) -> ExitCode {
    let Some((program, index)) = super::load_network(&a.file, a.network.as_deref(), opts, reporter) else {
        return ExitCode::FAILURE;
    };
    let weights = match &a.weights {
        Some(ck) => match snnc_runtime::train::load_checkpoint(ck) {
            Ok((w, _)) => w,
            Err(e) => return fail(e),
        },
        None => Vec::new(),
    };
    let def = &program.networks[index];
    match nir::export(&program, def, a.seed, &weights).and_then(|g| nir::write(&a.out, &g).map(|_| g)) {
        Ok(g) => {
            println!("wrote {} ({} nodes, {} edges) from network {}", a.out.display(), g.nodes.len(), g.edges.len(), def.name);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("cannot export network `{}` to NIR: {e}", def.name)),
    }
}

pub fn import(a: ImportArgs) -> ExitCode {
    let name = a.name.clone().unwrap_or_else(|| stem(&a.file));
    let imported = match nir::read(&a.file).and_then(|g| nir::import(&g, &name, a.dt, a.method)) {
        Ok(i) => i,
        Err(e) => return fail(format!("cannot import `{}`: {e}", a.file.display())),
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        return fail(format!("cannot create `{}`: {e}", a.out.display()));
    }
    let snn = a.out.join(format!("{name}.snn"));
    let ck = a.out.join(format!("{name}.safetensors"));
    if let Err(e) = std::fs::write(&snn, &imported.snn) {
        return fail(format!("cannot write `{}`: {e}", snn.display()));
    }
    if let Err(e) = snnc_runtime::train::save_checkpoint(&ck, &imported.weights, &[("nir", a.file.display().to_string())]) {
        return fail(e);
    }
    println!("wrote {} and {} (run it: snnc run {} --weights {})", snn.display(), ck.display(), snn.display(), ck.display());
    ExitCode::SUCCESS
}

/// The file's stem as a network name.
fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "imported".into())
}
