//! Where a population's kernel comes from: a [`KernelFactory`] turns a compiled step
//! into something that runs on the CPU (the Cranelift JIT, or the reference
//! interpreter). The GPU runtime compiles its own PTX from the same steps and needs no
//! factory. Also: the thread's denormal mode, which every CPU kernel runs under.

use crate::error::RuntimeError;
use snnc_compiler::backend::cranelift::{JitKernel, JitOptions};
use snnc_compiler::backend::interp::InterpKernel;
use snnc_compiler::backend::{ParamSpec, Real, StepKernel};
use snnc_compiler::discretise::Step;

/// Builds the kernel of a population's step (the interpreter, the JIT, ...). The step
/// carries its `dt`; `specs` say which params are folded in.
pub trait KernelFactory<T>: Sync {
    fn build(&self, step: &Step, specs: &[ParamSpec]) -> Result<Box<dyn StepKernel<T>>, RuntimeError>;
    /// [`KernelFactory::build`], asking for a kernel that leaves the inputs `clear` at 0
    /// when stepped with `StepKernel::step_clearing` (the simulation's step). A kernel may
    /// clear fewer (its `cleared_inputs` say which): the network restarts the others.
    fn build_clearing(&self, step: &Step, specs: &[ParamSpec], clear: &[usize]) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        let _ = clear;
        self.build(step, specs)
    }
    fn name(&self) -> &'static str;
}

/// Native code through Cranelift: one fused, vectorised loop per population.
pub struct JitFactory;

impl<T: Real> KernelFactory<T> for JitFactory {
    fn build(&self, step: &Step, specs: &[ParamSpec]) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        self.build_clearing(step, specs, &[])
    }
    fn build_clearing(&self, step: &Step, specs: &[ParamSpec], clear: &[usize]) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        let options = JitOptions { clear: clear.to_vec(), ..JitOptions::default() };
        let k = JitKernel::compile_with(step, specs, T::PRECISION, options).map_err(|e| RuntimeError::Build(format!("`{}`: {e}", step.model.name)))?;
        Ok(Box::new(k))
    }
    fn name(&self) -> &'static str {
        "cranelift"
    }
}

/// The reference backend: the IR interpreter (f64 arithmetic, slow).
pub struct InterpFactory;

impl<T: Real> KernelFactory<T> for InterpFactory {
    fn build(&self, step: &Step, specs: &[ParamSpec]) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        Ok(Box::new(InterpKernel::new(step, specs)?))
    }
    fn build_clearing(&self, step: &Step, specs: &[ParamSpec], clear: &[usize]) -> Result<Box<dyn StepKernel<T>>, RuntimeError> {
        Ok(Box::new(InterpKernel::new(step, specs)?.clearing(clear)))
    }
    fn name(&self) -> &'static str {
        "interpreter"
    }
}

/// Makes the current thread flush denormal floats to zero (x86-64 MXCSR FTZ and DAZ):
/// decaying states reach denormals, which are many times slower on most CPUs. Results
/// then differ from strict IEEE only below ~1e-38 (f32) / 1e-308 (f64).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    // SAFETY: setting the FTZ (bit 15) and DAZ (bit 6) flags of MXCSR only changes how
    // this thread rounds tiny results; no memory is touched.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// Whether this thread flushes denormals ([`flush_denormals`]), so that helper threads
/// can run in the same mode.
pub fn denormals_flushed() -> bool {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    // SAFETY: reading MXCSR has no side effect.
    unsafe {
        std::arch::x86_64::_mm_getcsr() & 0x8040 == 0x8040
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
