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
use super::{ClearingArgs, ParamSpec, Precision, RandomCtx, Real, StepArgs, StepKernel};
use smallvec::SmallVec;
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
    X86(x86::Code),
}

/// How to compile a kernel.
#[derive(Clone, Debug)]
pub struct JitOptions {
    /// Keep the generated code as text ([`JitKernel::listing`]).
    pub listing: bool,
    /// Inputs (layout indices) the code sets to 0 once read: the kernel is then stepped
    /// with mutable inputs only ([`StepKernel::step_clearing`]).
    pub clear: Vec<usize>,
    /// The widest instruction set the x86 generator may use (AVX-512 or AVX2), where
    /// the machine runs it and the step has a vector form (else Cranelift's f32x4 /
    /// f64x2 loop). `None`: Cranelift always.
    pub x86: Option<x86::Isa>,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions { listing: false, x86: Some(x86::Isa::Avx512), clear: Vec::new() }
    }
}

/// A population step compiled to native code for one precision and the step's `dt`.
pub struct JitKernel {
    code: Machine,
    /// Why the x86 generator was not used (when it was not).
    why_not_x86: Option<String>,
    slices: codegen::Slices,
    precision: Precision,
    dt: f64,
    compile_time: Duration,
    /// The inputs the code sets to 0 ([`JitOptions::clear`]).
    cleared: Vec<usize>,
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
        let mut prepared = specialise_step(step, specs)?;
        if let Some(&k) = options.clear.iter().find(|&&k| k >= step.layout.inputs.len()) {
            return Err(JitError(format!("input {k} to clear: the step has {} inputs", step.layout.inputs.len())));
        }
        prepared.cleared = options.clear.clone();
        let dt = prepared.dt;
        let slices = codegen::Slices::of(step, specs, prepared.spike.is_some());
        let native = match options.x86 {
            Some(widest) => x86::compile(&prepared, slices, precision == Precision::F64, widest, listing),
            None => Err(x86::Unsupported("not asked for".into())),
        };
        let (code, why_not_x86) = match native {
            Ok(code) => (Machine::X86(code), None),
            Err(why) => (Machine::Cranelift(Box::new(codegen::compile(&prepared, &slices, precision, listing)?)), Some(why.0)),
        };
        Ok(JitKernel { code, why_not_x86, slices, precision, dt, compile_time: start.elapsed(), cleared: options.clear })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The time step the kernel was compiled for (the step's).
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// Whether the element loop runs on vectors (steps without calls): f32x4 / f64x2
    /// from Cranelift, or AVX-512 / AVX2.
    pub fn is_vectorised(&self) -> bool {
        match &self.code {
            Machine::Cranelift(c) => c.vectorised,
            Machine::X86(_) => true,
        }
    }

    /// Elements per vector of the main loop (1: scalar).
    pub fn lanes(&self) -> usize {
        match &self.code {
            Machine::Cranelift(c) if c.vectorised => if self.precision == Precision::F64 { 2 } else { 4 },
            Machine::Cranelift(_) => 1,
            Machine::X86(c) => c.lanes,
        }
    }

    /// Which generator made the code: `"avx512"`, `"avx2"` or `"cranelift"`.
    pub fn generator(&self) -> &'static str {
        match &self.code {
            Machine::Cranelift(_) => "cranelift",
            Machine::X86(c) => c.isa.name(),
        }
    }

    /// Why the x86 generator (AVX-512 or AVX2) was not used, when it was not.
    pub fn why_not_x86(&self) -> Option<&str> {
        self.why_not_x86.as_deref()
    }

    /// The optimised Cranelift IR and the machine code, when compiled by
    /// [`JitKernel::compile_listed`].
    pub fn listing(&self) -> Option<&str> {
        match &self.code {
            Machine::Cranelift(c) => c.listing.as_deref(),
            Machine::X86(c) => c.listing.as_deref(),
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
    /// when `descending` and the code is the x86 generator's (Cranelift's visits them in order):
    /// the same results, other memory streams ([`StepKernel::step_checked_descending`]).
    pub fn try_step_ordered<T: Real>(&self, a: StepArgs<'_, '_, T>, descending: bool) -> Result<bool, JitError> {
        if !self.cleared.is_empty() {
            return Err(JitError("the kernel clears inputs: step it with `step_clearing` (mutable inputs)".into()));
        }
        let mut slices = Slices::new();
        let counts = code_slices(a.states, a.inputs.iter().map(|x| (x.as_ptr().cast_mut().cast::<u8>(), x.len())), a.params, &mut slices);
        // SAFETY: the slices are live for the call; the code writes states and spikes
        // only (no input is cleared), which the `&mut` borrows cover.
        unsafe { self.call::<T>(counts, &mut slices, (a.spikes.as_mut_ptr().cast::<u8>(), a.spikes.len()), a.t, a.random, descending, None) }
    }

    /// [`JitKernel::try_step_ordered`] of a kernel compiled to clear inputs
    /// ([`JitOptions::clear`]): after it those inputs are 0
    /// ([`StepKernel::step_clearing`]). Also takes a kernel that clears none.
    pub fn try_step_clearing<T: Real>(&self, a: ClearingArgs<'_, '_, T>, descending: bool) -> Result<bool, JitError> {
        let mut slices = Slices::new();
        let counts = code_slices(a.states, a.inputs.iter_mut().map(|x| (x.as_mut_ptr().cast::<u8>(), x.len())), a.params, &mut slices);
        let n = a.spikes.len();
        let bits = match a.spike_bits {
            Some(b) if self.writes_spike_bits() => {
                if b.len() < n.div_ceil(16) {
                    return Err(JitError(format!("{} words of spike bits for {n} elements (at least {})", b.len(), n.div_ceil(16))));
                }
                Some(b.as_mut_ptr().cast::<u8>())
            }
            _ => None,
        };
        // SAFETY: the slices are live for the call; the code writes states, spikes, the
        // inputs it clears and the spike bits' first n.div_ceil(16) words, which the
        // `&mut` borrows cover (the bits' length is checked above).
        unsafe { self.call::<T>(counts, &mut slices, (a.spikes.as_mut_ptr().cast::<u8>(), n), a.t, a.random, descending, bits) }
    }

    /// Whether [`JitKernel::try_step_clearing`] stores the spikes as bits too, when given
    /// somewhere to ([`StepKernel::spike_bits`]).
    pub fn writes_spike_bits(&self) -> bool {
        matches!(&self.code, Machine::X86(c) if c.bits.is_some())
    }

    /// Runs the code on `slices` (start and length of the states, inputs and per-neuron
    /// params, `counts` of each) and `spikes`, after checking the precision, the counts
    /// and that every slice has the same length `n` (spikes too when the model spikes;
    /// otherwise they are not touched). Nothing is written when they are refused.
    ///
    /// # Safety
    /// Every slice is live for the call, and those the code writes (states, spikes, the
    /// inputs it clears) are not read or written elsewhere meanwhile.
    unsafe fn call<T: Real>(
        &self,
        counts: [usize; 3],
        slices: &mut Slices,
        spikes: (*mut u8, usize),
        t: f64,
        random: RandomCtx,
        descending: bool,
        bits: Option<*mut u8>,
    ) -> Result<bool, JitError> {
        if T::PRECISION != self.precision {
            return Err(JitError(format!("kernel compiled for {:?}, called with {:?} data", self.precision, T::PRECISION)));
        }
        let s = &self.slices;
        for (what, got, want) in [("state", counts[0], s.states), ("input", counts[1], s.inputs), ("per-neuron param", counts[2], s.params)] {
            if got != want {
                return Err(JitError(format!("{got} {what} slices, the kernel takes {want}")));
            }
        }
        if s.spike {
            slices.push(spikes);
        }
        let mut n = None;
        for &(_, len) in slices.iter() {
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
        // (Pushed where it lies: a `collect` into a SmallVec copies it out by memcpy.)
        let mut ptrs = SmallVec::<[*mut u8; 24]>::new();
        ptrs.extend(slices.iter().map(|&(p, _)| p));
        // SAFETY: every pointer is the start of a live slice of exactly n values of the
        // kernel's float type (checked above); the code reads every slice and writes
        // states, spikes and the inputs it clears, each element i once, within 0..n, as
        // the caller allows. `random` and `non_finite` live on this stack frame.
        let mut non_finite = 0u32;
        let func = match (&self.code, bits) {
            (Machine::X86(x86::Code { bits: Some(b), .. }), Some(at)) => {
                ptrs.push(at);
                b.func(descending)
            }
            (Machine::Cranelift(c), _) => c.func,
            (Machine::X86(c), _) => c.plain.func(descending),
        };
        unsafe { func(ptrs.as_ptr(), n as u64, t, &random, &mut non_finite) };
        Ok(non_finite == 0)
    }
}

/// Start and length of each slice a kernel call takes, on the stack (every chunk of
/// every step makes one).
type Slices = SmallVec<[(*mut u8, usize); 24]>;

/// Pushes the slices as the code takes them (states, inputs, per-neuron params: start
/// and length each, `inputs` already so) onto `slices`; how many of each, for
/// [`JitKernel::call`]. (Filled in the caller's frame: returning the 390-byte SmallVec
/// copied it by memcpy at every call, about 1 % of a COBA 4k step in perf.)
fn code_slices<T>(states: &mut [&mut [T]], inputs: impl ExactSizeIterator<Item = (*mut u8, usize)>, params: &[&[T]], slices: &mut Slices) -> [usize; 3] {
    let counts = [states.len(), inputs.len(), params.len()];
    slices.extend(states.iter_mut().map(|x| (x.as_mut_ptr().cast::<u8>(), x.len())));
    slices.extend(inputs);
    slices.extend(params.iter().map(|x| (x.as_ptr().cast_mut().cast::<u8>(), x.len())));
    counts
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
    fn cleared_inputs(&self) -> &[usize] {
        &self.cleared
    }
    fn spike_bits(&self) -> bool {
        self.writes_spike_bits()
    }
    fn step_clearing(&self, args: ClearingArgs<'_, '_, T>, descending: bool) -> Option<bool>
    where
        T: Copy + Default,
    {
        Some(self.try_step_clearing(args, descending).unwrap_or_else(|e| panic!("JIT step refused: {e}")))
    }
}
