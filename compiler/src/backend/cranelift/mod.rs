//! The CPU backend: one population step compiled to native code with Cranelift.
//!
//! [`JitKernel::compile`] takes the shared specialisation (uniform params and the step's
//! `dt` folded in as constants, surrogates expanded, the spike bound to the new state:
//! [`specialise`](super::specialise)) and generates one fused loop
//! over the elements (see [`codegen`] for the loop structure and value model). f64
//! kernels perform the interpreter's operations in the interpreter's order (no FMA
//! contraction, the same Rust functions for transcendentals and random draws), so they
//! reproduce [`InterpKernel`](super::interp::InterpKernel) to the last bit apart from
//! the simplifier's documented sign-of-zero exceptions; f32 kernels run the same
//! operations in f32, except that a division by a constant is a multiplication by its
//! reciprocal (within 1.5 ulp; a vector division costs several multiplications).

mod codegen;
mod helpers;
mod prepare;

use std::fmt;
use std::time::{Duration, Instant};

use super::specialise::{SpecialiseError, specialise_step};
use super::x86;
use super::{ParamSpec, Precision, Real, StepArgs, StepKernel};
use crate::discretise::Step;

/// Why a kernel could not be compiled, or a step was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitError(pub String);

impl From<SpecialiseError> for JitError {
    fn from(e: SpecialiseError) -> JitError {
        JitError(e.to_string())
    }
}

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JitError {}

/// The machine code of a kernel, from either generator (the same signature).
enum Machine {
    Cranelift(Box<codegen::Code>),
    Avx512(x86::Code),
}

/// How to compile a kernel.
#[derive(Clone, Copy, Debug)]
pub struct JitOptions {
    /// Keep the generated code as text ([`JitKernel::listing`]).
    pub listing: bool,
    /// Use the AVX-512 generator where the machine has it and the step has a vector
    /// form (else Cranelift's f32x4 / f64x2 loop). Off: Cranelift always.
    pub avx512: bool,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions { listing: false, avx512: true }
    }
}

/// A population step compiled to native code for one precision and the step's `dt`.
pub struct JitKernel {
    code: Machine,
    /// Why the AVX-512 generator was not used (when it was not).
    why_not_avx512: Option<String>,
    slices: codegen::Slices,
    precision: Precision,
    dt: f64,
    compile_time: Duration,
}

impl JitKernel {
    /// Compiles `step` with the given param specs (layout order), for the step's dt.
    pub fn compile(step: &Step, specs: &[ParamSpec], precision: Precision) -> Result<JitKernel, JitError> {
        JitKernel::compile_with(step, specs, precision, JitOptions::default())
    }

    /// [`JitKernel::compile`], keeping the optimised Cranelift IR and the machine code as
    /// text ([`JitKernel::listing`]).
    pub fn compile_listed(step: &Step, specs: &[ParamSpec], precision: Precision) -> Result<JitKernel, JitError> {
        JitKernel::compile_with(step, specs, precision, JitOptions { listing: true, ..JitOptions::default() })
    }

    /// [`JitKernel::compile`] with options (the listing; which generator).
    pub fn compile_with(step: &Step, specs: &[ParamSpec], precision: Precision, options: JitOptions) -> Result<JitKernel, JitError> {
        let listing = options.listing;
        let start = Instant::now();
        let prepared = specialise_step(step, specs)?;
        let dt = prepared.dt;
        let slices = codegen::Slices::of(step, specs, prepared.spike.is_some());
        let avx = if options.avx512 {
            x86::compile(&prepared, slices, precision == Precision::F64, listing)
        } else {
            Err(x86::Unsupported("not asked for".into()))
        };
        let (code, why_not_avx512) = match avx {
            Ok(code) => (Machine::Avx512(code), None),
            Err(why) => (Machine::Cranelift(Box::new(codegen::compile(&prepared, &slices, precision, listing)?)), Some(why.0)),
        };
        Ok(JitKernel { code, why_not_avx512, slices, precision, dt, compile_time: start.elapsed() })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The time step the kernel was compiled for (the step's).
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// Whether the element loop runs on vectors (steps without calls): f32x4 / f64x2
    /// from Cranelift, or AVX-512.
    pub fn is_vectorised(&self) -> bool {
        match &self.code {
            Machine::Cranelift(c) => c.vectorised,
            Machine::Avx512(_) => true,
        }
    }

    /// Elements per vector of the main loop (1: scalar).
    pub fn lanes(&self) -> usize {
        match &self.code {
            Machine::Cranelift(c) if c.vectorised => if self.precision == Precision::F64 { 2 } else { 4 },
            Machine::Cranelift(_) => 1,
            Machine::Avx512(c) => c.lanes,
        }
    }

    /// Which generator made the code: `"avx512"` or `"cranelift"`.
    pub fn generator(&self) -> &'static str {
        match &self.code {
            Machine::Cranelift(_) => "cranelift",
            Machine::Avx512(_) => "avx512",
        }
    }

    /// Why the AVX-512 generator was not used, when it was not.
    pub fn why_not_avx512(&self) -> Option<&str> {
        self.why_not_avx512.as_deref()
    }

    /// The optimised Cranelift IR and the machine code, when compiled by
    /// [`JitKernel::compile_listed`].
    pub fn listing(&self) -> Option<&str> {
        match &self.code {
            Machine::Cranelift(c) => c.listing.as_deref(),
            Machine::Avx512(c) => c.listing.as_deref(),
        }
    }

    /// Wall time of [`JitKernel::compile`] (preparation, codegen and linking).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Advances every element one step, after checking the arguments: the precision,
    /// the number of slices and that every slice has the same length `n` (spikes
    /// too when the model spikes; otherwise they are not touched). Nothing is written
    /// when the arguments are refused.
    pub fn try_step<T: Real>(&self, a: StepArgs<'_, '_, T>) -> Result<(), JitError> {
        self.try_step_checked(a).map(|_| ())
    }

    /// [`JitKernel::try_step`], also telling whether every new state is finite (the
    /// kernel checks the sum of each element's new states as it stores them: `true`
    /// means all are finite; `false` that one is not, or rarely that finite states
    /// summed past the float range).
    pub fn try_step_checked<T: Real>(&self, a: StepArgs<'_, '_, T>) -> Result<bool, JitError> {
        self.try_step_ordered(a, false)
    }

    /// [`JitKernel::try_step_checked`], visiting the elements from the last to the first
    /// when `descending` and the code is AVX-512's (Cranelift's visits them in order):
    /// the same results, other memory streams ([`StepKernel::step_checked_descending`]).
    pub fn try_step_ordered<T: Real>(&self, a: StepArgs<'_, '_, T>, descending: bool) -> Result<bool, JitError> {
        if T::PRECISION != self.precision {
            return Err(JitError(format!("kernel compiled for {:?}, called with {:?} data", self.precision, T::PRECISION)));
        }
        let s = &self.slices;
        for (what, got, want) in
            [("state", a.states.len(), s.states), ("input", a.inputs.len(), s.inputs), ("per-neuron param", a.params.len(), s.params)]
        {
            if got != want {
                return Err(JitError(format!("{got} {what} slices, the kernel takes {want}")));
            }
        }
        let lens = a
            .states
            .iter()
            .map(|x| x.len())
            .chain(a.inputs.iter().map(|x| x.len()))
            .chain(a.params.iter().map(|x| x.len()))
            .chain(s.spike.then_some(a.spikes.len()));
        let mut n = None;
        for len in lens {
            match n {
                None => n = Some(len),
                Some(m) if m != len => return Err(JitError(format!("slices of different lengths ({m} and {len})"))),
                Some(_) => {}
            }
        }
        let n = n.unwrap_or(0);
        if n == 0 {
            return Ok(true);
        }
        // On the stack: made at every call (every chunk of every step).
        let mut ptrs: smallvec::SmallVec<[*mut u8; 24]> = smallvec::SmallVec::with_capacity(s.count());
        ptrs.extend(a.states.iter_mut().map(|x| x.as_mut_ptr().cast::<u8>()));
        ptrs.extend(a.inputs.iter().map(|x| x.as_ptr().cast_mut().cast::<u8>()));
        ptrs.extend(a.params.iter().map(|x| x.as_ptr().cast_mut().cast::<u8>()));
        if s.spike {
            ptrs.push(a.spikes.as_mut_ptr().cast::<u8>());
        }
        let random = a.random;
        // SAFETY: every pointer is the start of a live slice of exactly n values of the
        // kernel's float type (checked above); the code reads inputs and params and writes
        // only states and spikes, each element i once, within 0..n. States and spikes are
        // distinct `&mut` slices, so nothing the code writes aliases what it reads
        // elsewhere. `random` and `non_finite` live on this stack frame for the call.
        let mut non_finite = 0u32;
        let func = match &self.code {
            Machine::Cranelift(c) => c.func,
            Machine::Avx512(c) if descending => c.func_down,
            Machine::Avx512(c) => c.func,
        };
        unsafe { func(ptrs.as_ptr(), n as u64, a.t, &random, &mut non_finite) };
        Ok(non_finite == 0)
    }
}

impl<T: Real> StepKernel<T> for JitKernel {
    /// Panics (before touching any data) on arguments [`JitKernel::try_step`] refuses.
    fn step(&self, args: StepArgs<'_, '_, T>) {
        self.try_step(args).unwrap_or_else(|e| panic!("JIT step refused: {e}"));
    }
    fn step_checked(&self, args: StepArgs<'_, '_, T>) -> Option<bool> {
        Some(self.try_step_checked(args).unwrap_or_else(|e| panic!("JIT step refused: {e}")))
    }
    fn step_checked_descending(&self, args: StepArgs<'_, '_, T>) -> Option<bool> {
        Some(self.try_step_ordered(args, true).unwrap_or_else(|e| panic!("JIT step refused: {e}")))
    }
    fn generator(&self) -> &'static str {
        JitKernel::generator(self)
    }
}
