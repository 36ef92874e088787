//! Backends: turn a discretised [`Step`] into something that advances a whole
//! population by one step. Every backend implements [`StepKernel`]; the runtime does not
//! care how a kernel was made.
//!
//! - [`interp`]: the reference, evaluating the IR with the f64 interpreter per neuron.
//!   Slow; the ground truth the JIT is tested against.
//! - `cranelift` (native code) and `ptx` (CUDA) follow the same contract.
//!
//! Data layout (structure of arrays): every state, input and per-neuron param is a
//! contiguous slice of `n` values (neurons, with the batch folded in: index = b * N + i).
//! Params that are the same for every neuron are fixed when the kernel is built
//! ([`ParamSpec::Uniform`]) and folded into the code as constants, as is the step's
//! `dt` ([`Step::dt`](crate::discretise::Step::dt)): [`specialise`] does that once for
//! every backend.

pub mod cranelift;
pub mod interp;
pub mod ptx;
mod rewrite;
pub mod x86;
pub mod specialise;

pub use specialise::SpecialiseError;

/// The slices of a CPU kernel's pointer array, in order: states, inputs, per-neuron
/// params, then the spikes (the Cranelift and the x86 generator alike).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slices {
    pub states: usize,
    pub inputs: usize,
    pub params: usize,
    pub spike: bool,
}

impl Slices {
    /// Those of `step` with `specs`, spiking where its specialised form binds a spike.
    pub fn of(step: &crate::discretise::Step, specs: &[ParamSpec], spike: bool) -> Slices {
        let params = specs.iter().filter(|s| **s == ParamSpec::PerNeuron).count();
        Slices { states: step.layout.states.len(), inputs: step.layout.inputs.len(), params, spike }
    }

    pub fn count(&self) -> usize {
        self.states + self.inputs + self.params + usize::from(self.spike)
    }
}

/// How a param reaches the kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamSpec {
    /// The same value for every neuron: folded in as a constant.
    Uniform(f64),
    /// One value per neuron: the kernel reads the k-th per-neuron array.
    PerNeuron,
}

/// Where random draws come from: Philox4x32-10 keyed by `seed`, counter
/// `[index, index >> 32, step_lo ^ (slot << 16)... ]` as defined by [`random_draw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RandomCtx {
    pub seed: u64,
    /// The simulation step (distinct draws every step).
    pub step: u64,
    /// Global index of element 0 of the slices (so a split population draws the same).
    pub offset: u64,
}

/// The arguments of one step over `n` elements: `'s` the slices' data, `'a` the lists of
/// them (apart, so that the lists can be arrays on the caller's stack).
pub struct StepArgs<'a, 's, T> {
    /// One slice per state (layout order), updated in place: h^{t-1} in, h^t out.
    pub states: &'a mut [&'s mut [T]],
    /// One slice per input (layout order): y^t.
    pub inputs: &'a [&'s [T]],
    /// One slice per `PerNeuron` param, in layout order of those params.
    pub params: &'a [&'s [T]],
    /// Out: the spike s^t read from the new state (0 or 1); empty if the model never spikes.
    pub spikes: &'s mut [T],
    pub t: f64,
    pub random: RandomCtx,
}

/// The arguments of a step that may also write the inputs
/// ([`StepKernel::step_clearing`]): as [`StepArgs`], the inputs mutable.
pub struct ClearingArgs<'a, 's, T> {
    pub states: &'a mut [&'s mut [T]],
    pub inputs: &'a mut [&'s mut [T]],
    pub params: &'a [&'s [T]],
    pub spikes: &'s mut [T],
    pub t: f64,
    pub random: RandomCtx,
    /// Where a kernel that says so ([`StepKernel::spike_bits`]) also writes its spikes
    /// as bits: element i's at bit i % 16 of word i / 16, set where the spike is 1 (it
    /// is 0 elsewhere), every word of the elements' range written (at least
    /// `n.div_ceil(16)` words). Other kernels leave it as it is.
    pub spike_bits: Option<&'s mut [u16]>,
}

/// A compiled step of one population.
pub trait StepKernel<T>: Send + Sync {
    /// Advances every element one step.
    fn step(&self, args: StepArgs<'_, '_, T>);
    /// [`StepKernel::step`], also telling whether every new state is finite, where the
    /// kernel checks as it goes (`None`: not checked, the caller checks the states).
    /// `Some(true)` is a promise; `Some(false)` may be a false alarm (the JIT checks a
    /// sum of each element's states, which can overflow), after which the caller looks.
    fn step_checked(&self, args: StepArgs<'_, '_, T>) -> Option<bool> {
        self.step(args);
        None
    }
    /// [`StepKernel::step_checked`], visiting the elements from the last to the first
    /// where the kernel can (the x86 one; others in order). The results are the
    /// same: each element's step reads and writes that element only. A thread stepping
    /// the lower of two threads' shares of a population uses it, so that its memory
    /// streams end at the start of the arrays, not (through the hardware prefetchers)
    /// in the other thread's first elements, which would then pass between the cores
    /// every step.
    fn step_checked_descending(&self, args: StepArgs<'_, '_, T>) -> Option<bool> {
        self.step_checked(args)
    }
    /// What made the code: `"interpreter"`, or the JIT's generator (`"avx512"`, `"avx2"`,
    /// `"cranelift"`); benchmarks report it.
    fn generator(&self) -> &'static str {
        "interpreter"
    }
    /// Whether [`StepKernel::step_clearing`] fills [`ClearingArgs::spike_bits`] when
    /// given: a kernel whose spikes are 0 or 1 (a threshold's mask) and that can store
    /// the mask as it goes (the x86 one in f32). Then the neurons that spiked are
    /// found in n / 8 bytes instead of n floats: a separate scan of the spikes was 9 %
    /// of a COBA step on one thread (docs/benchmarks.md, twelfth round).
    fn spike_bits(&self) -> bool {
        false
    }
    /// The inputs (layout indices) that [`StepKernel::step_clearing`] leaves at 0: those
    /// the kernel was built to clear.
    fn cleared_inputs(&self) -> &[usize] {
        &[]
    }
    /// [`StepKernel::step_checked`] (or its descending form), after which every input of
    /// [`StepKernel::cleared_inputs`] is 0: the simulation's step, whose inputs (the
    /// deliveries of the step) must be back at 0 for the next one. A generated kernel
    /// stores the zeros as it goes, in the pass that reads them; a separate pass over
    /// them afterwards was 8-11 % of a COBA step (docs/benchmarks.md, tenth round).
    fn step_clearing(&self, a: ClearingArgs<'_, '_, T>, descending: bool) -> Option<bool>
    where
        T: Copy + Default,
    {
        let checked = {
            // Reborrowed for the step, so that the inputs can be written after it (the
            // states too: a list of `&mut` holds its slices' lifetime fixed).
            let mut states: smallvec::SmallVec<[&mut [T]; 8]> = a.states.iter_mut().map(|s| &mut **s).collect();
            let inputs: smallvec::SmallVec<[&[T]; 8]> = a.inputs.iter().map(|s| &**s).collect();
            let args = StepArgs { states: &mut states[..], inputs: &inputs[..], params: a.params, spikes: &mut *a.spikes, t: a.t, random: a.random };
            if descending { self.step_checked_descending(args) } else { self.step_checked(args) }
        };
        for &k in self.cleared_inputs() {
            a.inputs[k].fill(T::default());
        }
        checked
    }
}

/// The value of random slot `slot` for element `index` at `ctx.step`: uniform in (0, 1]
/// for `Rand`, standard normal for `Randn` (Box–Muller on two words of one block).
/// Counter = [index lo, index hi, step lo, (step hi << 8) ^ slot]: a pure function of
/// (seed, index, step, slot) that every backend reproduces.
pub fn random_draw(ctx: RandomCtx, index: u64, slot: u32, normal: bool) -> f64 {
    let ctr = [index as u32, (index >> 32) as u32, ctx.step as u32, (((ctx.step >> 32) as u32) << 8) ^ slot];
    let w = crate::rng::philox4x32(ctr, [ctx.seed as u32, (ctx.seed >> 32) as u32]);
    let u01 = |b: u32| (f64::from(b) + 1.0) * (1.0 / 4_294_967_296.0);
    if normal {
        (-2.0 * u01(w[0]).ln()).sqrt() * (std::f64::consts::TAU * u01(w[1])).cos()
    } else {
        u01(w[0])
    }
}

/// The float type a kernel computes and stores in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    F32,
    F64,
}

/// The float types kernels run in (f32 and f64: sealed, since every backend generates
/// code for exactly these two).
pub trait Real: Copy + Send + Sync + 'static + sealed::Sealed {
    const PRECISION: Precision;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl Real for f32 {
    const PRECISION: Precision = Precision::F32;
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
}

impl Real for f64 {
    const PRECISION: Precision = Precision::F64;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> f64 {
        v
    }
}
