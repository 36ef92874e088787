//! What several commands share: backends, precisions, learning methods, and the
//! parsers and error exit of their arguments.

use snnc_compiler::units;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    /// Native code compiled by Cranelift (the default).
    Jit,
    /// The reference IR interpreter (slow; for checking).
    Interp,
    /// An NVIDIA GPU (sm_80 or later) through CUDA; needs a build with `--features cuda`.
    Cuda,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Precision {
    F32,
    F64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum TrainBackend {
    Jit,
    Cuda,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum MethodArg {
    Bptt,
    DRtrl,
    EsDRtrl,
}

pub fn parse_method(s: &str) -> Result<snnc_compiler::sema::Method, String> {
    snnc_compiler::sema::Method::ALL
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, m)| *m)
        .ok_or_else(|| format!("unknown method `{s}` (exact, exp_euler, euler, rk2, rk4)"))
}

/// `1s`, `500 ms`, `0.1ms` → seconds.
pub fn parse_time(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(|| format!("`{s}` needs a unit, e.g. `1s` or `500ms`"))?;
    let (num, unit) = (s[..split].trim(), s[split..].trim());
    if num.is_empty() {
        return Err(format!("`{s}` is not a time: expected a number and a unit, e.g. `1s` or `500ms`"));
    }
    let v: f64 = num.parse().map_err(|_| format!("`{num}` (in `{s}`) is not a number"))?;
    let u = units::lookup(unit).ok_or_else(|| format!("unknown unit `{unit}`"))?;
    if u.dim != units::Dim::TIME {
        return Err(format!("`{unit}` is not a unit of time"));
    }
    if !(v * u.scale > 0.0) || !(v * u.scale).is_finite() {
        return Err(format!("`{s}` must be a positive time"));
    }
    Ok(v * u.scale)
}

/// A `--threads` value: 0 means one thread per core.
pub fn threads_or_cores(threads: usize) -> usize {
    if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads }
}

/// Prints `error: msg` and gives the failing exit code.
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// `1 population`, `2 populations`.
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// A whole number, also written like `1e9`: `1000`, `1e9`, `2.5e6`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 => Ok(v as u64),
        _ => Err(format!("`{s}` is not a whole number >= 0")),
    }
}
