//! The CPU kernel in AVX-512: 16 f32 or 8 f64 lanes per instruction, where Cranelift
//! (0.135) emits 128-bit vectors only. It takes the same specialised step as the
//! Cranelift generator and makes the same rewrites ([`rewrite`](super::rewrite)), and
//! the function it makes has the Cranelift kernel's signature and contract (the
//! non-finite flag included), so [`JitKernel`](super::cranelift::JitKernel) uses
//! whichever was made: this one where the host has AVX-512 (F, DQ, BMI2) and the step
//! has a vector form; Cranelift's otherwise.
//!
//! f64 kernels perform the interpreter's operations in its order (no contraction into
//! FMA), so they equal it to the bit as the Cranelift kernel does; f32 kernels equal the
//! Cranelift f32 kernel to the bit (the same operations, constants and polynomials).
//! Constants are read from memory by broadcast, not held in registers: with 32 vector
//! registers and no constants in them, no element body here has needed a spill.
//!
//! Pipeline: [`lower`] (graph -> straight-line vector program, unused values dropped) ->
//! [`emit`] (registers, machine code through iced-x86's assembler) -> executable memory.
//! `SNNC_AVX512=0` in the environment turns it off (for A/B measurements).

mod emit;
mod lower;

pub use lower::Unsupported;

use crate::backend::Slices;
use crate::backend::specialise::Specialised;

/// The kernel's signature (as the Cranelift kernel's `KernelFn`).
pub(crate) type KernelFn = unsafe extern "C" fn(ptrs: *const *mut u8, n: u64, t: f64, random: *const crate::backend::RandomCtx, non_finite: *mut u32);

/// Machine code in executable memory: the kernel's loops, and the same also storing the
/// spikes as bits through one more pointer, after the spikes' (`StepKernel::spike_bits`),
/// where the spikes are a mask's float.
pub(crate) struct Code {
    pub plain: Loops,
    pub bits: Option<Loops>,
    /// Elements per vector (16 in f32, 8 in f64).
    pub lanes: usize,
    /// With `listing`: the vector program and the machine code, disassembled.
    pub listing: Option<String>,
}

/// A kernel, and the same visiting its elements from the last to the first
/// (`emit::emit`'s `descending`).
pub(crate) struct Loops {
    _memory: region::Allocation,
    _memory_down: region::Allocation,
    func: KernelFn,
    func_down: KernelFn,
}

impl Loops {
    /// The loops' bytes (from [`assemble`]) in executable memory.
    fn new((up, down): &(Vec<u8>, Vec<u8>)) -> Result<Loops, Unsupported> {
        let (memory, func) = executable(up)?;
        let (memory_down, func_down) = executable(down)?;
        Ok(Loops { _memory: memory, _memory_down: memory_down, func, func_down })
    }

    pub fn func(&self, descending: bool) -> KernelFn {
        if descending { self.func_down } else { self.func }
    }
}

// SAFETY: the memory is written once, before it is made executable, and never again;
// the code is reentrant (it keeps nothing between calls).
unsafe impl Send for Loops {}
unsafe impl Sync for Loops {}

/// Whether this machine runs the AVX-512 kernels (and `SNNC_AVX512` does not say no).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let wanted = std::env::var("SNNC_AVX512").map(|v| v != "0").unwrap_or(true);
        wanted && host_has_avx512()
    })
}

#[cfg(target_arch = "x86_64")]
fn host_has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") && std::arch::is_x86_feature_detected!("bmi2")
}

#[cfg(not(target_arch = "x86_64"))]
fn host_has_avx512() -> bool {
    false
}

/// The step's element loop as machine code bytes, ascending and descending, on any
/// machine, with the listing of the ascending one when asked for (tests and listings;
/// [`compile`] also runs it).
fn assemble(p: &Specialised, slices: Slices, f64: bool, listed: bool) -> Result<Assembled, Unsupported> {
    if p.graph.nodes().any(|(_, n)| n.op.is_random()) {
        return Err(Unsupported("random draws need a call per element".into()));
    }
    let n = slices.count();
    // Lowered once with the spikes' bits where they are a mask's: in f32 only, where a
    // vector's lanes are one whole word (an f64 vector's are a byte, and an odd count of
    // them would leave the last word's other byte as it was).
    let with_bits = lower::lower(p, !f64, slices.states, slices.inputs, slices.spike.then(|| n - 1), !f64)?;
    let mut prog = with_bits.clone();
    let last = lower::live(&mut prog, false);
    // One program, both loops (`emit::emit`'s `descending`).
    let up = emit::emit(&prog, &last, n, f64, false)?;
    let down = emit::emit(&prog, &last, n, f64, true)?;
    let listing = listed.then(|| format!("; AVX-512 vector program\n{}; machine code\n{}", prog.text(f64), disassemble(&up.bytes[..up.code_len])));
    // With the bits, where a register is left for them.
    let bits = Some(with_bits).filter(|w| w.bits).and_then(|mut w| {
        let last = lower::live(&mut w, true);
        Some((emit::emit(&w, &last, n + 1, f64, false).ok()?.bytes, emit::emit(&w, &last, n + 1, f64, true).ok()?.bytes))
    });
    Ok(Assembled { plain: (up.bytes, down.bytes), bits, listing })
}

/// What [`assemble`] makes: the kernel's bytes with the ascending loop and with the
/// descending one, the same storing the spike bits too where they can, and the listing
/// of the first when asked for.
struct Assembled {
    plain: (Vec<u8>, Vec<u8>),
    bits: Option<(Vec<u8>, Vec<u8>)>,
    listing: Option<String>,
}

/// Compiles the step for this machine, or says why it is left to Cranelift.
pub(crate) fn compile(p: &Specialised, slices: Slices, f64: bool, listing: bool) -> Result<Code, Unsupported> {
    if !available() {
        return Err(Unsupported("this machine has no AVX-512 (or SNNC_AVX512=0)".into()));
    }
    let Assembled { plain, bits, listing } = assemble(p, slices, f64, listing)?;
    Ok(Code { plain: Loops::new(&plain)?, bits: bits.as_ref().map(Loops::new).transpose()?, lanes: if f64 { 8 } else { 16 }, listing })
}

/// `bytes` (a kernel from [`assemble`]) in executable memory, and the function it is.
fn executable(bytes: &[u8]) -> Result<(region::Allocation, KernelFn), Unsupported> {
    let fail = |e: region::Error| Unsupported(format!("executable memory: {e}"));
    let mut memory = region::alloc(bytes.len(), region::Protection::READ_WRITE).map_err(fail)?;
    // SAFETY: the allocation is at least `bytes.len()` long and nothing else uses it.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), memory.as_mut_ptr::<u8>(), bytes.len());
        region::protect(memory.as_ptr::<u8>(), bytes.len(), region::Protection::READ_EXECUTE).map_err(fail)?;
    }
    // SAFETY: the bytes are a function of exactly this signature (System V: ptrs in
    // rdi, n in rsi, t in xmm0, random in rdx, non_finite in rcx), position-independent
    // (relative branches, constants addressed relative to rip), now executable.
    let func = unsafe { std::mem::transmute::<*const u8, KernelFn>(memory.as_ptr::<u8>()) };
    Ok((memory, func))
}

/// The vector program and machine code of `step`'s AVX-512 kernel, made on any
/// machine (nothing is run): what `snnc emit --target clif` shows where the host has
/// AVX-512, and what the snapshot tests hold.
pub fn listing(step: &crate::discretise::Step, specs: &[super::ParamSpec], precision: super::Precision) -> Result<String, Unsupported> {
    let p = crate::backend::specialise::specialise_step(step, specs).map_err(|e| Unsupported(e.to_string()))?;
    let a = assemble(&p, Slices::of(step, specs, p.spike.is_some()), precision == super::Precision::F64, true)?;
    Ok(a.listing.expect("asked for"))
}

/// Intel-syntax listing of machine code assembled at address 0.
pub(crate) fn disassemble(code: &[u8]) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    let mut out = String::new();
    for ins in &mut d {
        out.push_str(&format!("{:5x}  ", ins.ip()));
        f.format(&ins, &mut out);
        out.push('\n');
    }
    out
}
