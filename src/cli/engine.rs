//! The precision x backend dispatch of the commands, written once: `run`, `train`,
//! `eval`, `grad` and `bench` describe their work as a [`Job`] generic over the float
//! type, and [`dispatch`] picks the type (f32 or f64) and where it runs ([`On`]).

use super::args::{Backend, Precision, TrainBackend};
use snnc_runtime::scalar::Float;
use snnc_compiler::sema::{NetworkDef, Program};
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::{InterpFactory, JitFactory, KernelFactory};
use snnc_runtime::network::{Network, Options};

/// Where a command's network runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum On {
    /// The CPU, with Cranelift's JIT kernels or (`interp`) the reference interpreter's.
    Cpu { interp: bool },
    /// GPU 0, through CUDA.
    #[cfg(feature = "cuda")]
    Cuda,
}

impl On {
    /// The CPU's kernel factory: the reference interpreter's with `Cpu { interp: true }`,
    /// else Cranelift's (jobs that only run on the CPU dispatch with `Backend::Jit`).
    pub fn cpu_kernels<T: Float>(self) -> &'static dyn KernelFactory<T> {
        match self {
            On::Cpu { interp: true } => &InterpFactory,
            _ => &JitFactory,
        }
    }

    /// The network built on the host: with CPU kernels on the CPU; on the GPU without
    /// any (it holds the structure and the starting state; the GPU runtime compiles its
    /// own kernels from the same steps).
    pub fn build<T: Float>(self, program: &Program, net: &NetworkDef, o: &Options) -> Result<Network<T>, RuntimeError> {
        match self {
            On::Cpu { .. } => Network::build(program, net, o, self.cpu_kernels()),
            #[cfg(feature = "cuda")]
            On::Cuda => Network::without_kernels(program, net, o),
        }
    }
}

impl From<TrainBackend> for Backend {
    fn from(b: TrainBackend) -> Backend {
        match b {
            TrainBackend::Jit => Backend::Jit,
            TrainBackend::Cuda => Backend::Cuda,
        }
    }
}

/// A command's work on a network in float type `T`, on the backend it is given.
pub trait Job {
    type Out;
    fn run<T: Float>(self, on: On) -> Self::Out;
}

/// Runs `job` in the float type of `precision` on `backend`; a CUDA backend in a build
/// without the `cuda` feature is an error (the message to print).
pub fn dispatch<J: Job>(precision: Precision, backend: impl Into<Backend>, job: J) -> Result<J::Out, String> {
    let on = match backend.into() {
        Backend::Jit => On::Cpu { interp: false },
        Backend::Interp => On::Cpu { interp: true },
        #[cfg(feature = "cuda")]
        Backend::Cuda => On::Cuda,
        #[cfg(not(feature = "cuda"))]
        Backend::Cuda => return Err("this snnc was built without CUDA support; rebuild it with `cargo build --release --features cuda`".into()),
    };
    Ok(match precision {
        Precision::F32 => job.run::<f32>(on),
        Precision::F64 => job.run::<f64>(on),
    })
}

/// `--f64`: the precision of the commands with a flag for it.
pub fn precision(f64: bool) -> Precision {
    if f64 { Precision::F64 } else { Precision::F32 }
}
