//! The CPU kernel in x86 vectors: AVX-512 (16 f32 or 8 f64 lanes per instruction) or,
//! where the host has no AVX-512, AVX2 (8 or 4), where Cranelift (0.135) emits 128-bit
//! vectors only. It takes the same specialised step as the Cranelift generator and makes
//! the same rewrites ([`rewrite`](super::rewrite)), and the function it makes has the
//! Cranelift kernel's signature and contract (the non-finite flag included), so
//! [`JitKernel`](super::cranelift::JitKernel) uses whichever was made: this one where the
//! host has one of the two instruction sets ([`Isa`]) and the step has a vector form;
//! Cranelift's otherwise.
//!
//! f64 kernels perform the interpreter's operations in its order (no contraction into
//! FMA), so they equal it to the bit as the Cranelift kernel does; f32 kernels equal the
//! Cranelift f32 kernel to the bit (the same operations, constants and polynomials) in
//! either instruction set: each lane computes what one element of the scalar code would.
//! Constants are read from memory (AVX-512 by broadcast, AVX2 as whole vectors), not held
//! in registers.
//!
//! Pipeline: [`lower`] (graph -> straight-line vector program, unused values dropped) ->
//! in AVX2, `spill` (stack slots where more values would be live than its registers) ->
//! [`emit`] (registers, machine code through iced-x86's assembler; the AVX2 body in
//! `avx2`) -> executable memory. In the environment, `SNNC_X86=avx2` keeps a host with
//! AVX-512 to AVX2 and `SNNC_X86=off` (or `SNNC_AVX512=0`, its older name) to Cranelift
//! (for A/B measurements).

/// `$a.<op>($d, $x, $s)` for a float operation of the program in the kernel's width,
/// with the instruction set's bitwise ops (`xor` and `and` as f32 / f64 mnemonics): the
/// one table of `Bin` to instructions that both bodies use.
macro_rules! float_bin {
    ($a:expr, $op:expr, $f64:expr, $d:expr, $x:expr, $s:expr, xor: $xs:ident / $xd:ident, and: $as_:ident / $ad:ident) => {
        match ($op, $f64) {
            (Bin::Add, false) => $a.vaddps($d, $x, $s),
            (Bin::Add, true) => $a.vaddpd($d, $x, $s),
            (Bin::Sub, false) => $a.vsubps($d, $x, $s),
            (Bin::Sub, true) => $a.vsubpd($d, $x, $s),
            (Bin::Mul, false) => $a.vmulps($d, $x, $s),
            (Bin::Mul, true) => $a.vmulpd($d, $x, $s),
            (Bin::Div, false) => $a.vdivps($d, $x, $s),
            (Bin::Div, true) => $a.vdivpd($d, $x, $s),
            (Bin::Min, false) => $a.vminps($d, $x, $s),
            (Bin::Min, true) => $a.vminpd($d, $x, $s),
            (Bin::Max, false) => $a.vmaxps($d, $x, $s),
            (Bin::Max, true) => $a.vmaxpd($d, $x, $s),
            (Bin::Xor, false) => $a.$xs($d, $x, $s),
            (Bin::Xor, true) => $a.$xd($d, $x, $s),
            (Bin::And, false) => $a.$as_($d, $x, $s),
            (Bin::And, true) => $a.$ad($d, $x, $s),
        }
    };
}

mod avx2;
mod spill;
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
    /// Elements per vector ([`Isa::lanes`]).
    pub lanes: usize,
    pub isa: Isa,
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

/// The x86 vector instruction sets the generator writes, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// AVX and AVX2 (256-bit vectors; masks are vectors of all-ones lanes).
    Avx2,
    /// AVX-512 F and DQ, with BMI2 (512-bit vectors, mask registers).
    Avx512,
}

impl Isa {
    /// The generator's name (`JitKernel::generator`, `cpu_code` in benchmarks).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Elements per vector.
    pub fn lanes(self, f64: bool) -> usize {
        let bytes = match self {
            Isa::Avx2 => 32,
            Isa::Avx512 => 64,
        };
        bytes / if f64 { 8 } else { 4 }
    }
}

/// The widest instruction set this machine runs that the environment allows
/// (`SNNC_X86=avx512|avx2|off`; `SNNC_AVX512=0` is `off`), if any.
pub fn host() -> Option<Isa> {
    static HOST: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
    *HOST.get_or_init(|| {
        let off = std::env::var("SNNC_AVX512").is_ok_and(|v| v == "0");
        let cap = match std::env::var("SNNC_X86") {
            Ok(v) => cap_from(&v).unwrap_or_else(|e| {
                // (Said once: the choice is made once per process.)
                eprintln!("warning: {e}; the widest this machine runs is used");
                Some(Isa::Avx512)
            }),
            Err(_) => Some(Isa::Avx512),
        };
        let has = [Isa::Avx512, Isa::Avx2].into_iter().find(|&i| host_runs(i));
        if off { None } else { has.min(cap) }
    })
}

/// The widest instruction set that a value of `SNNC_X86` allows (`None`: Cranelift's
/// kernels only); an unknown value is an error naming the known ones, not a silent
/// default.
pub fn cap_from(v: &str) -> Result<Option<Isa>, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "avx512" | "avx-512" => Ok(Some(Isa::Avx512)),
        "avx2" => Ok(Some(Isa::Avx2)),
        "off" | "0" | "cranelift" => Ok(None),
        _ => Err(format!("SNNC_X86=`{v}` is none of avx512, avx2, off")),
    }
}

#[cfg(target_arch = "x86_64")]
fn host_runs(isa: Isa) -> bool {
    match isa {
        Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") && std::arch::is_x86_feature_detected!("bmi2"),
        Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn host_runs(_: Isa) -> bool {
    false
}

/// The step's element loop as machine code bytes, ascending and descending, on any
/// machine, with the listing of the ascending one when asked for (tests and listings;
/// [`compile`] also runs it).
fn assemble(p: &Specialised, slices: Slices, f64: bool, isa: Isa, listed: bool) -> Result<Assembled, Unsupported> {
    if p.graph.nodes().any(|(_, n)| n.op.is_random()) {
        return Err(Unsupported("random draws need a call per element".into()));
    }
    let n = slices.count();
    // Lowered once with the spikes' bits where they are a mask's: in f32 only, where a
    // vector's lanes are one whole word (AVX-512) or byte (AVX2); an f64 vector's are a
    // byte or half of one, and an odd count of them would leave the rest as it was.
    let with_bits = lower::lower(p, !f64, slices.states, slices.inputs, slices.spike.then(|| n - 1), !f64)?;
    // AVX2's twelve registers are too few for some bodies: those spill.
    let fitted = |prog: &mut lower::Program, last: Vec<usize>| if isa == Isa::Avx2 { spill::fit(prog, &last, avx2::VALUE_REGS) } else { last };
    let mut prog = with_bits.clone();
    let last = lower::live(&mut prog, false);
    let last = fitted(&mut prog, last);
    // One program, both loops (`emit::emit`'s `descending`).
    let up = emit::emit(&prog, &last, n, f64, isa, false)?;
    let down = emit::emit(&prog, &last, n, f64, isa, true)?;
    let title = match isa {
        Isa::Avx512 => "AVX-512",
        Isa::Avx2 => "AVX2",
    };
    let listing = listed.then(|| format!("; {title} vector program\n{}; machine code\n{}", prog.text(f64), disassemble(&up.bytes[..up.code_len])));
    // With the bits, where a register is left for them.
    let bits = Some(with_bits).filter(|w| w.bits).and_then(|mut w| {
        let last = lower::live(&mut w, true);
        let last = fitted(&mut w, last);
        Some((emit::emit(&w, &last, n + 1, f64, isa, false).ok()?.bytes, emit::emit(&w, &last, n + 1, f64, isa, true).ok()?.bytes))
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

/// Compiles the step for this machine in the widest instruction set it runs up to
/// `widest`, or says why it is left to Cranelift.
pub(crate) fn compile(p: &Specialised, slices: Slices, f64: bool, widest: Isa, listing: bool) -> Result<Code, Unsupported> {
    let Some(isa) = host().map(|h| h.min(widest)) else {
        return Err(Unsupported("this machine has no AVX-512 or AVX2 (or SNNC_X86=off)".into()));
    };
    let Assembled { plain, bits, listing } = assemble(p, slices, f64, isa, listing)?;
    Ok(Code { plain: Loops::new(&plain)?, bits: bits.as_ref().map(Loops::new).transpose()?, lanes: isa.lanes(f64), isa, listing })
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

/// The vector program and machine code of `step`'s kernel in `isa`, made on any machine
/// (nothing is run): what `snnc emit --target clif` shows where the host runs it, and
/// what the snapshot tests hold.
pub fn listing(step: &crate::discretise::Step, specs: &[super::ParamSpec], precision: super::Precision, isa: Isa) -> Result<String, Unsupported> {
    let p = crate::backend::specialise::specialise_step(step, specs).map_err(|e| Unsupported(e.to_string()))?;
    let a = assemble(&p, Slices::of(step, specs, p.spike.is_some()), precision == super::Precision::F64, isa, true)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `SNNC_X86` takes the known names in any case; anything else is an error that
    /// names them, not AVX-512 in silence.
    #[test]
    fn snnc_x86_values_are_known_or_refused() {
        assert_eq!(cap_from("avx512"), Ok(Some(Isa::Avx512)));
        assert_eq!(cap_from("AVX2"), Ok(Some(Isa::Avx2)));
        assert_eq!(cap_from(" off "), Ok(None));
        assert_eq!(cap_from("0"), Ok(None));
        let e = cap_from("sse4").unwrap_err();
        assert!(e.contains("sse4") && e.contains("avx512, avx2, off"), "{e}");
    }
}
