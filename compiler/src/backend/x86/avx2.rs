//! The element body in AVX2 (256-bit vectors), for hosts without AVX-512.
//!
//! What differs from the AVX-512 body: there are no mask registers, so a mask is a
//! vector whose lanes are all ones or all zeros (`vcmpps`' result), combined with the
//! float logic instructions and used by `vblendvps`; the tail's lanes are such a vector
//! too (ymm12), for `vmaskmovps` loads and stores; there is no broadcast operand, so a
//! constant is stored as a whole vector and read as one; and 16 registers, not 32:
//! a body that needs more than [`VALUE_REGS`] at once spills (`spill.rs`). Each lane
//! computes the same IEEE operations as the AVX-512 and Cranelift kernels do.

use iced_x86::IcedError;
use iced_x86::code_asm::*;

use super::emit::{Emit, Reg};
use super::lower::{Bin, Inst, Opd};

pub(super) const YMM: [AsmRegisterYmm; 16] = [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15];
/// Registers given to values (floats and masks alike): ymm0-11.
pub(super) const VALUE_REGS: usize = 12;
pub(super) const TAIL: AsmRegisterYmm = ymm12;
pub(super) const ACC: AsmRegisterYmm = ymm13;
const SCRATCH: AsmRegisterYmm = ymm14;
/// The step's time (an index into [`YMM`], as the allocator gives it).
pub(super) const TIME: usize = 15;

/// The 32-bit and 8-bit names of `emit::BASES` (the spike bits' stores).
const BASES32: [AsmRegister32; 11] = [r8d, r9d, r10d, r11d, edx, ebx, ebp, r12d, r13d, r14d, r15d];
const BASES8: [AsmRegister8; 11] = [r8b, r9b, r10b, r11b, dl, bl, bpl, r12b, r13b, r14b, r15b];

impl Emit<'_> {
    fn y(&self, v: u32) -> AsmRegisterYmm {
        match self.regs[v as usize] {
            Reg::Z(z) => YMM[z],
            r => unreachable!("value {v} is in {r:?}"),
        }
    }

    /// A constant as a whole vector in memory.
    fn vector(&mut self, bits: u64) -> AsmMemoryOperand {
        ymmword_ptr(self.konst(bits))
    }

    /// An operand that must be a register: a constant is loaded into the scratch.
    fn yreg(&mut self, o: Opd) -> Result<AsmRegisterYmm, IcedError> {
        match o {
            Opd::V(v) => Ok(self.y(v)),
            Opd::K(bits) => {
                let m = self.vector(bits);
                self.a.vmovups(SCRATCH, m)?;
                Ok(SCRATCH)
            }
        }
    }

    /// An operand that may be in memory (a constant's vector).
    fn yopd(&mut self, o: Opd) -> YOpd {
        match o {
            Opd::V(v) => YOpd::R(self.y(v)),
            Opd::K(bits) => YOpd::M(self.vector(bits)),
        }
    }

    fn yslot(&self, j: usize) -> AsmMemoryOperand {
        ymmword_ptr(self.bases[j] + rax * if self.f64 { 8 } else { 4 })
    }

    /// The same as the AVX-512 body, instruction for instruction; `tail`: the lanes of
    /// ymm12 only are loaded, stored and checked (the others hold zeros).
    pub(super) fn body_avx2(&mut self, tail: bool) -> Result<(), IcedError> {
        let prog = self.prog;
        let all_ones = if self.f64 { u64::MAX } else { u64::from(u32::MAX) };
        for (k, inst) in prog.insts.iter().enumerate() {
            let v = k as u32;
            match *inst {
                Inst::Load(j) => {
                    let (d, at) = (self.y(v), self.yslot(j));
                    match (tail, self.f64) {
                        (false, _) => self.a.vmovups(d, at)?,
                        (true, false) => self.a.vmaskmovps(d, TAIL, at)?,
                        (true, true) => self.a.vmaskmovpd(d, TAIL, at)?,
                    }
                }
                Inst::Time => {}
                Inst::Splat(bits) => {
                    let (d, m) = (self.y(v), self.vector(bits));
                    self.a.vmovups(d, m)?;
                }
                Inst::Bin(op, x, y) => self.bin_avx2(op, v, x, y)?,
                Inst::Sqrt(x) => {
                    let (d, x) = (self.y(v), self.y(x));
                    if self.f64 { self.a.vsqrtpd(d, x)? } else { self.a.vsqrtps(d, x)? }
                }
                Inst::Nearest(x) => {
                    // Immediate 0: to nearest, ties to even (AVX-512's vrndscale 0).
                    let (d, x) = (self.y(v), self.y(x));
                    if self.f64 { self.a.vroundpd(d, x, 0)? } else { self.a.vroundps(d, x, 0)? }
                }
                Inst::Pow2(n) => {
                    // f32 only: (n + 127) << 23.
                    let (d, n) = (self.y(v), self.y(n));
                    self.a.vcvttps2dq(d, n)?;
                    let bias = self.vector(127);
                    self.a.vpaddd(d, d, bias)?;
                    self.a.vpslld(d, d, 23)?;
                }
                Inst::Cmp(cc, x, y) => {
                    let d = self.y(v);
                    let x = self.yreg(x)?;
                    let imm = cc as i32;
                    match (self.yopd(y), self.f64) {
                        (YOpd::R(y), false) => self.a.vcmpps(d, x, y, imm)?,
                        (YOpd::R(y), true) => self.a.vcmppd(d, x, y, imm)?,
                        (YOpd::M(y), false) => self.a.vcmpps(d, x, y, imm)?,
                        (YOpd::M(y), true) => self.a.vcmppd(d, x, y, imm)?,
                    }
                }
                Inst::MaskAnd(x, y) => {
                    let (d, x, y) = (self.y(v), self.y(x), self.y(y));
                    self.a.vandps(d, x, y)?;
                }
                Inst::MaskOr(x, y) => {
                    let (d, x, y) = (self.y(v), self.y(x), self.y(y));
                    self.a.vorps(d, x, y)?;
                }
                Inst::MaskNot(x) => {
                    let (d, x, ones) = (self.y(v), self.y(x), self.vector(all_ones));
                    self.a.vxorps(d, x, ones)?;
                }
                Inst::Select(c, x, y) => {
                    // vblendv: where the mask's lane is set the third operand (x), else
                    // the second (y).
                    let c = self.y(c);
                    let y = self.yreg(y)?;
                    let d = self.y(v);
                    match (self.yopd(x), self.f64) {
                        (YOpd::R(x), false) => self.a.vblendvps(d, y, x, c)?,
                        (YOpd::R(x), true) => self.a.vblendvpd(d, y, x, c)?,
                        (YOpd::M(x), false) => self.a.vblendvps(d, y, x, c)?,
                        (YOpd::M(x), true) => self.a.vblendvpd(d, y, x, c)?,
                    }
                }
                Inst::FromMask(c) => {
                    let one = if self.f64 { 1f64.to_bits() } else { u64::from(1f32.to_bits()) };
                    let (d, c, one) = (self.y(v), self.y(c), self.vector(one));
                    self.a.vandps(d, c, one)?;
                }
                Inst::Store(j, x) => {
                    let (x, at) = (self.y(x), self.yslot(j));
                    match (tail, self.f64) {
                        (false, _) => self.a.vmovups(at, x)?,
                        (true, false) => self.a.vmaskmovps(at, TAIL, x)?,
                        (true, true) => self.a.vmaskmovpd(at, TAIL, x)?,
                    }
                }
                Inst::NonFinite(x) => {
                    let mut x = self.y(x);
                    if tail {
                        self.a.vandps(SCRATCH, x, TAIL)?;
                        x = SCRATCH;
                    }
                    self.a.vorps(ACC, ACC, x)?;
                }
                Inst::Bits(c) => self.bits_avx2(self.y(c), tail)?,
                Inst::Spill(s, x) => {
                    let x = self.y(x);
                    self.a.vmovups(ymmword_ptr(rsp + 32 * s as i32), x)?;
                }
                Inst::Reload(s) => {
                    let d = self.y(v);
                    self.a.vmovups(d, ymmword_ptr(rsp + 32 * s as i32))?;
                }
            }
        }
        Ok(())
    }

    /// Stores a mask's 8 lanes as the byte `rax / 8` of the spike bits (the last slice;
    /// f32 only), the tail's masked-off lanes as 0 (the function's start cleared the
    /// last word's other byte).
    fn bits_avx2(&mut self, c: AsmRegisterYmm, tail: bool) -> Result<(), IcedError> {
        let (bits, temp) = (*self.bases.last().expect("the bits' slice"), self.temp.expect("a register for the bits' offset"));
        let t2 = self.temp2.expect("a register for the bits");
        let c = if tail {
            self.a.vandps(SCRATCH, c, TAIL)?;
            SCRATCH
        } else {
            c
        };
        self.a.vmovmskps(BASES32[t2], c)?;
        self.a.mov(temp, rax)?;
        self.a.shr(temp, 3)?;
        self.a.mov(byte_ptr(bits + temp), BASES8[t2])
    }

    fn bin_avx2(&mut self, op: Bin, v: u32, x: Opd, y: Opd) -> Result<(), IcedError> {
        let (x, y) = super::emit::constant_second(op, x, y);
        let d = self.y(v);
        let x = self.yreg(x)?;
        macro_rules! go {
            ($src:expr) => {
                float_bin!(self.a, op, self.f64, d, x, $src, xor: vxorps / vxorpd, and: vandps / vandpd)
            };
        }
        match self.yopd(y) {
            YOpd::R(y) => go!(y),
            YOpd::M(y) => go!(y),
        }
    }
}

/// A second operand: a register, or a constant's vector in memory.
enum YOpd {
    R(AsmRegisterYmm),
    M(AsmMemoryOperand),
}
