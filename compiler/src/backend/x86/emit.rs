//! Registers and machine code for a lowered element body.
//!
//! AVX-512: a float value gets one of zmm0-28 and a mask one of k2-k7, given in
//! program order and freed after the last reader (a straight line with no calls, so
//! no spills: a body that would need more is left to Cranelift). zmm31 holds the
//! step's time, zmm30 is the scratch for a constant that must sit in a register,
//! zmm29 the non-finite accumulator; k1 is the tail's lane mask. AVX2 (`avx2.rs`):
//! floats and masks (all-ones lanes) share ymm0-11; ymm15 the time, ymm14 the scratch,
//! ymm13 the accumulator, ymm12 the tail's lane mask. General registers: rax the
//! element index, rsi `n`, rdi the end of the whole vectors (then the tail's length),
//! rcx the non-finite flag's address, and up to 11 slice bases; a program that stores
//! spike bits takes the next free one for the bits' offset (`rax / 8` bytes), and in
//! AVX2 one more for the bits themselves.
//!
//! The loop runs whole vectors unmasked, then the remaining `n % lanes` elements once
//! with masked loads, stores and accumulation (the masked-off lanes compute on zeros
//! and are neither stored nor checked). The descending variant runs the same vectors
//! from the last to the first, the masked rest first (see [`emit`]).

use std::collections::HashMap;

use iced_x86::{BlockEncoderOptions, IcedError};
use iced_x86::code_asm::*;

use super::Isa;
use super::lower::{Bin, Inst, Opd, Program, Unsupported};

const ZMM: [AsmRegisterZmm; 32] = [
    zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15, zmm16, zmm17, zmm18, zmm19,
    zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31,
];
const K: [AsmRegisterK; 8] = [k0, k1, k2, k3, k4, k5, k6, k7];
/// Float registers given to values.
const FLOAT_REGS: usize = 29;
const ACC: AsmRegisterZmm = zmm29;
const SCRATCH: AsmRegisterZmm = zmm30;
const TIME: AsmRegisterZmm = zmm31;
/// The slice bases, in order of use; the callee-saved ones are pushed when used.
static BASES: [AsmRegister64; 11] = [r8, r9, r10, r11, rdx, rbx, rbp, r12, r13, r14, r15];
const CALLEE_SAVED: [AsmRegister64; 6] = [rbx, rbp, r12, r13, r14, r15];

/// `r{k}` (merge-masked, or a blend's selector).
fn masked(r: AsmRegisterZmm, k: usize) -> AsmRegisterZmm {
    match k {
        1 => r.k1(),
        2 => r.k2(),
        3 => r.k3(),
        4 => r.k4(),
        5 => r.k5(),
        6 => r.k6(),
        7 => r.k7(),
        _ => r,
    }
}

fn mem_masked(m: AsmMemoryOperand, k: usize) -> AsmMemoryOperand {
    if k == 1 { m.k1() } else { m }
}

/// Where each value lives.
#[derive(Clone, Copy, Debug)]
pub(super) enum Reg {
    Z(usize),
    K(usize),
    None,
}

fn allocate(prog: &Program, last: &[usize], isa: Isa) -> Result<Vec<Reg>, Unsupported> {
    // AVX2 has no mask registers: masks are vectors, from the floats' registers.
    let (floats, time) = match isa {
        Isa::Avx512 => (FLOAT_REGS, 31),
        Isa::Avx2 => (super::avx2::VALUE_REGS, super::avx2::TIME),
    };
    let mut free_z: Vec<usize> = (0..floats).rev().collect();
    let mut free_k: Vec<usize> = (2..8).rev().collect();
    let mut regs = vec![Reg::None; prog.insts.len()];
    for (k, inst) in prog.insts.iter().enumerate() {
        // Operands read for the last time here free their registers first, so the
        // result may take one (every instruction reads its operands before it writes).
        let mut reads = inst.reads();
        reads.sort_unstable();
        reads.dedup();
        for r in reads {
            if last[r as usize] == k {
                match regs[r as usize] {
                    Reg::Z(z) if z < floats => free_z.push(z),
                    Reg::K(m) => free_k.push(m),
                    _ => {}
                }
            }
        }
        if !inst.has_result() {
            continue;
        }
        regs[k] = if matches!(inst, Inst::Time) {
            Reg::Z(time)
        } else if inst.is_mask() && isa == Isa::Avx512 {
            Reg::K(free_k.pop().ok_or_else(|| Unsupported("more than 6 masks live at once".into()))?)
        } else {
            Reg::Z(free_z.pop().ok_or_else(|| Unsupported(format!("more than {floats} values live at once ({})", isa.name())))?)
        };
    }
    Ok(regs)
}

pub(super) struct Emitted {
    pub bytes: Vec<u8>,
    /// The machine code's length (the constants follow it).
    pub code_len: usize,
}

pub(super) struct Emit<'a> {
    pub a: CodeAssembler,
    pub f64: bool,
    pub isa: Isa,
    pub lanes: i32,
    pub prog: &'a Program,
    pub regs: Vec<Reg>,
    pub bases: &'static [AsmRegister64],
    /// The spike bits' offset register (a program with [`Inst::Bits`]), and in AVX2 the
    /// register the bits are moved through.
    pub temp: Option<AsmRegister64>,
    pub temp2: Option<usize>,
    consts: HashMap<u64, CodeLabel>,
    /// AVX2's table of the tail's lane masks: 32 bytes of ones, then 32 of zeros here.
    tail_zeros: Option<CodeLabel>,
    descending: bool,
}

/// Generates the kernel: `fn(ptrs, n, t, random, non_finite)` as the Cranelift one.
/// `descending`: the elements are visited from the last to the first. Each element's
/// result is the same either way (nothing is carried from one to the next); what
/// changes is where the memory streams end: a thread stepping the lower share of a
/// population ends at the start of its arrays instead of running (with the hardware
/// prefetchers) into the next thread's first elements.
pub(super) fn emit(prog: &Program, last: &[usize], slices: usize, f64: bool, isa: Isa, descending: bool) -> Result<Emitted, Unsupported> {
    let temps = if prog.bits { if isa == Isa::Avx2 { 2 } else { 1 } } else { 0 };
    if slices + temps > BASES.len() {
        return Err(Unsupported(format!("{slices} slices (at most {} in general registers)", BASES.len() - temps)));
    }
    let regs = allocate(prog, last, isa)?;
    // Assembled twice: the second time with the constants on a cache line of their own
    // (the code is at the start of a page), so that no broadcast straddles two lines.
    // Padding after the code leaves its encoding as it was (rip-relative operands are
    // always 32-bit displacements).
    let once = |pad: usize| -> Result<Emitted, IcedError> {
        let a = CodeAssembler::new(64)?;
        let temp = prog.bits.then(|| BASES[slices]);
        let temp2 = (prog.bits && isa == Isa::Avx2).then_some(slices + 1);
        let lanes = isa.lanes(f64) as i32;
        let mut e = Emit { a, f64, isa, lanes, prog, regs: regs.clone(), bases: &BASES[..slices], temp, temp2, consts: HashMap::new(), tail_zeros: None, descending };
        e.function()?;
        let mut data = e.a.create_label();
        e.data(&mut data, pad)?;
        let r = e.a.assemble_options(0, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let code_len = r.label_ip(&data)? as usize;
        Ok(Emitted { bytes: r.inner.code_buffer, code_len })
    };
    let first = once(0).map_err(asm)?;
    // (The int3 that ends the code is one byte.)
    let pad = (64 - (first.code_len + 1) % 64) % 64;
    if pad == 0 {
        return Ok(first);
    }
    once(pad).map_err(asm)
}

fn asm(e: IcedError) -> Unsupported {
    Unsupported(format!("internal: x86 assembler: {e}"))
}

impl Emit<'_> {
    fn function(&mut self) -> Result<(), IcedError> {
        let temp2 = self.temp2.map(|t| BASES[t]);
        let saved: Vec<AsmRegister64> = CALLEE_SAVED.iter().copied().filter(|r| self.bases.contains(r) || self.temp == Some(*r) || temp2 == Some(*r)).collect();
        for r in &saved {
            self.a.push(*r)?;
        }
        // (Spill slots: vectors, unaligned loads and stores.)
        let frame = 32 * self.prog.slots as i32;
        if frame > 0 {
            self.a.sub(rsp, frame)?;
        }
        // rdi (the pointer array) is read for every base before it is reused.
        for (j, &b) in self.bases.iter().enumerate() {
            self.a.mov(b, qword_ptr(rdi + 8 * j as i32))?;
        }
        if self.isa == Isa::Avx2 && self.prog.bits {
            // AVX2 stores a byte of bits per vector: the last word (n >= 1) cleared
            // first, so that its byte past the elements holds no bits of an earlier step.
            let (bits, temp) = (*self.bases.last().expect("the bits' slice"), self.temp.expect("a register for the bits' offset"));
            self.a.lea(temp, qword_ptr(rsi - 1))?;
            self.a.shr(temp, 4)?;
            self.a.mov(word_ptr(bits + temp * 2), 0)?;
        }
        if self.prog.insts.contains(&Inst::Time) {
            if !self.f64 {
                self.a.vcvtsd2ss(xmm0, xmm0, xmm0)?;
            }
            match (self.isa, self.f64) {
                (Isa::Avx512, true) => self.a.vbroadcastsd(TIME, xmm0)?,
                (Isa::Avx512, false) => self.a.vbroadcastss(TIME, xmm0)?,
                (Isa::Avx2, true) => self.a.vbroadcastsd(super::avx2::YMM[super::avx2::TIME], xmm0)?,
                (Isa::Avx2, false) => self.a.vbroadcastss(super::avx2::YMM[super::avx2::TIME], xmm0)?,
            }
        }
        self.a.mov(rdi, rsi)?;
        self.a.and(rdi, -self.lanes)?;
        match self.isa {
            Isa::Avx512 => self.a.vpxord(ACC, ACC, ACC)?,
            Isa::Avx2 => self.a.vpxor(super::avx2::ACC, super::avx2::ACC, super::avx2::ACC)?,
        }
        if self.descending {
            self.descending_loop()?;
        } else {
            self.ascending_loop()?;
        }
        // al: whether any bit of the accumulator is set.
        match self.isa {
            Isa::Avx512 => {
                if self.f64 {
                    self.a.vptestmq(k2, ACC, ACC)?;
                } else {
                    self.a.vptestmd(k2, ACC, ACC)?;
                }
                self.a.kortestw(k2, k2)?;
            }
            Isa::Avx2 => self.a.vptest(super::avx2::ACC, super::avx2::ACC)?,
        }
        self.a.setne(al)?;
        self.a.movzx(eax, al)?;
        self.a.mov(dword_ptr(rcx), eax)?;
        self.a.vzeroupper()?;
        if frame > 0 {
            self.a.add(rsp, frame)?;
        }
        for r in saved.iter().rev() {
            self.a.pop(*r)?;
        }
        self.a.ret()
    }

    /// Whole vectors from the first, then the masked rest (rdi: the whole vectors' end).
    fn ascending_loop(&mut self) -> Result<(), IcedError> {
        self.a.xor(eax, eax)?;
        // Tested at the bottom: one branch a vector.
        let (mut top, mut tail, mut done) = (self.a.create_label(), self.a.create_label(), self.a.create_label());
        self.a.test(rdi, rdi)?;
        self.a.je(tail)?;
        self.a.set_label(&mut top)?;
        self.body(false)?;
        self.a.add(rax, self.lanes)?;
        self.a.cmp(rax, rdi)?;
        self.a.jb(top)?;
        self.a.set_label(&mut tail)?;
        self.a.mov(rdi, rsi)?;
        self.a.sub(rdi, rax)?;
        self.a.je(done)?;
        self.tail_mask()?;
        self.body(true)?;
        self.a.set_label(&mut done)
    }

    /// The masked rest first, then whole vectors from the last to the first (rdi: the
    /// whole vectors' end). The body sets flags (mask tests), so the loop's own test
    /// comes after it.
    fn descending_loop(&mut self) -> Result<(), IcedError> {
        let (mut top, mut whole, mut done) = (self.a.create_label(), self.a.create_label(), self.a.create_label());
        self.a.mov(rax, rdi)?;
        self.a.mov(rdi, rsi)?;
        self.a.sub(rdi, rax)?;
        self.a.je(whole)?;
        self.tail_mask()?;
        self.body(true)?;
        self.a.set_label(&mut whole)?;
        self.a.test(rax, rax)?;
        self.a.je(done)?;
        self.a.set_label(&mut top)?;
        self.a.sub(rax, self.lanes)?;
        self.body(false)?;
        self.a.test(rax, rax)?;
        self.a.jne(top)?;
        self.a.set_label(&mut done)
    }

    /// The tail's lane mask, the low `edi` lanes (the rest's length, below a vector):
    /// AVX-512 k1; AVX2 ymm12, read from a table of ones then zeros `edi` elements
    /// before the zeros (rsi is free: the loops no longer read `n`).
    fn tail_mask(&mut self) -> Result<(), IcedError> {
        match self.isa {
            Isa::Avx512 => {
                let ones = self.konst(u64::from(u32::MAX));
                self.a.bzhi(edi, dword_ptr(ones), edi)?;
                self.a.kmovw(k1, edi)
            }
            Isa::Avx2 => {
                let zeros = match self.tail_zeros {
                    Some(l) => l,
                    None => *self.tail_zeros.insert(self.a.create_label()),
                };
                self.a.shl(rdi, if self.f64 { 3 } else { 2 })?;
                self.a.lea(rsi, ptr(zeros))?;
                self.a.sub(rsi, rdi)?;
                self.a.vmovdqu(super::avx2::TAIL, ymmword_ptr(rsi))
            }
        }
    }

    /// The constants, after the code and `pad` more int3s.
    fn data(&mut self, start: &mut CodeLabel, pad: usize) -> Result<(), IcedError> {
        // (A label marks one instruction: an int3 ends the code, never reached.)
        self.a.set_label(start)?;
        self.a.int3()?;
        if pad > 0 {
            self.a.db(&vec![0xcc; pad])?;
        }
        if let Some(mut zeros) = self.tail_zeros {
            self.a.db(&[0xff; 32])?;
            self.a.set_label(&mut zeros)?;
            self.a.db(&[0; 32])?;
        }
        let mut consts: Vec<(u64, CodeLabel)> = self.consts.iter().map(|(k, l)| (*k, *l)).collect();
        consts.sort_by_key(|(k, _)| *k);
        // AVX2 reads a constant as a whole vector (it has no broadcast operand).
        let copies = match self.isa {
            Isa::Avx512 => 1,
            Isa::Avx2 => self.lanes as usize,
        };
        for (bits, mut label) in consts {
            self.a.set_label(&mut label)?;
            // Each constant in the kernel's width (32-bit ones in f32 kernels; the
            // tail mask's all-ones word is read as 32 bits in either).
            if self.f64 {
                self.a.dq(&vec![bits; copies])?;
            } else {
                self.a.dd(&vec![bits as u32; copies])?;
            }
        }
        Ok(())
    }

    /// The label of a constant's bits (emitted once, after the code).
    pub(super) fn konst(&mut self, bits: u64) -> CodeLabel {
        if let Some(l) = self.consts.get(&bits) {
            return *l;
        }
        let l = self.a.create_label();
        self.consts.insert(bits, l);
        l
    }

    fn bcst(&mut self, bits: u64) -> AsmMemoryOperand {
        let l = self.konst(bits);
        if self.f64 { qword_bcst(l) } else { dword_bcst(l) }
    }

    fn z(&self, v: u32) -> AsmRegisterZmm {
        match self.regs[v as usize] {
            Reg::Z(z) => ZMM[z],
            r => unreachable!("value {v} is a float, in {r:?}"),
        }
    }

    fn k(&self, v: u32) -> usize {
        match self.regs[v as usize] {
            Reg::K(k) => k,
            r => unreachable!("value {v} is a mask, in {r:?}"),
        }
    }

    /// An operand that must be a register: a constant is broadcast into the scratch.
    fn reg(&mut self, o: Opd) -> Result<AsmRegisterZmm, IcedError> {
        match o {
            Opd::V(v) => Ok(self.z(v)),
            Opd::K(bits) => {
                let l = self.konst(bits);
                if self.f64 { self.a.vbroadcastsd(SCRATCH, qword_ptr(l))? } else { self.a.vbroadcastss(SCRATCH, dword_ptr(l))? }
                Ok(SCRATCH)
            }
        }
    }

    fn slot(&self, j: usize) -> AsmMemoryOperand {
        zmmword_ptr(self.bases[j] + rax * if self.f64 { 8 } else { 4 })
    }

    fn body(&mut self, tail: bool) -> Result<(), IcedError> {
        match self.isa {
            Isa::Avx512 => self.body_avx512(tail),
            Isa::Avx2 => self.body_avx2(tail),
        }
    }

    fn body_avx512(&mut self, tail: bool) -> Result<(), IcedError> {
        let m = if tail { 1 } else { 0 };
        let prog = self.prog;
        for (k, inst) in prog.insts.iter().enumerate() {
            let v = k as u32;
            match *inst {
                Inst::Load(j) => {
                    let (d, at) = (self.z(v), self.slot(j));
                    let d = if tail { d.k1().z() } else { d };
                    if self.f64 { self.a.vmovupd(d, at)? } else { self.a.vmovups(d, at)? }
                }
                Inst::Time => {}
                Inst::Splat(bits) => {
                    let (d, l) = (self.z(v), self.konst(bits));
                    if self.f64 { self.a.vbroadcastsd(d, qword_ptr(l))? } else { self.a.vbroadcastss(d, dword_ptr(l))? }
                }
                Inst::Bin(op, x, y) => self.bin(op, v, x, y)?,
                Inst::Sqrt(x) => {
                    let (d, x) = (self.z(v), self.z(x));
                    if self.f64 { self.a.vsqrtpd(d, x)? } else { self.a.vsqrtps(d, x)? }
                }
                Inst::Nearest(x) => {
                    let (d, x) = (self.z(v), self.z(x));
                    if self.f64 { self.a.vrndscalepd(d, x, 0)? } else { self.a.vrndscaleps(d, x, 0)? }
                }
                Inst::Pow2(n) => {
                    // f32 only (exp is inline in f32 kernels): (n + 127) << 23.
                    let (d, n) = (self.z(v), self.z(n));
                    self.a.vcvttps2dq(d, n)?;
                    let bias = self.bcst(127);
                    self.a.vpaddd(d, d, bias)?;
                    self.a.vpslld(d, d, 23)?;
                }
                Inst::Cmp(cc, x, y) => {
                    let d = K[self.k(v)];
                    let x = self.reg(x)?;
                    let imm = cc as i32;
                    match y {
                        Opd::V(y) => {
                            let y = self.z(y);
                            if self.f64 { self.a.vcmppd(d, x, y, imm)? } else { self.a.vcmpps(d, x, y, imm)? }
                        }
                        Opd::K(bits) => {
                            let y = self.bcst(bits);
                            if self.f64 { self.a.vcmppd(d, x, y, imm)? } else { self.a.vcmpps(d, x, y, imm)? }
                        }
                    }
                }
                Inst::MaskAnd(x, y) => self.a.kandw(K[self.k(v)], K[self.k(x)], K[self.k(y)])?,
                Inst::MaskOr(x, y) => self.a.korw(K[self.k(v)], K[self.k(x)], K[self.k(y)])?,
                Inst::MaskNot(x) => self.a.knotw(K[self.k(v)], K[self.k(x)])?,
                Inst::Select(c, x, y) => {
                    // vblendm: where the mask is set the third operand (x), else the second (y).
                    let c = self.k(c);
                    let y = self.reg(y)?;
                    let d = masked(self.z(v), c);
                    match x {
                        Opd::V(x) => {
                            let x = self.z(x);
                            if self.f64 { self.a.vblendmpd(d, y, x)? } else { self.a.vblendmps(d, y, x)? }
                        }
                        Opd::K(bits) => {
                            let x = self.bcst(bits);
                            if self.f64 { self.a.vblendmpd(d, y, x)? } else { self.a.vblendmps(d, y, x)? }
                        }
                    }
                }
                Inst::FromMask(c) => {
                    let one = if self.f64 { 1f64.to_bits() } else { u64::from(1f32.to_bits()) };
                    let l = self.konst(one);
                    let d = masked(self.z(v), self.k(c)).z();
                    if self.f64 { self.a.vbroadcastsd(d, qword_ptr(l))? } else { self.a.vbroadcastss(d, dword_ptr(l))? }
                }
                Inst::Store(j, x) => {
                    let (x, at) = (self.z(x), mem_masked(self.slot(j), m));
                    if self.f64 { self.a.vmovupd(at, x)? } else { self.a.vmovups(at, x)? }
                }
                Inst::NonFinite(x) => {
                    let x = self.z(x);
                    let acc = masked(ACC, m);
                    if self.f64 { self.a.vporq(acc, ACC, x)? } else { self.a.vpord(acc, ACC, x)? }
                }
                Inst::Spill(..) | Inst::Reload(_) => unreachable!("AVX-512 bodies have registers enough (`spill::fit` is AVX2's)"),
                Inst::Bits(c) => {
                    // The vector's 16 lanes are elements rax.., so its bits are the word
                    // rax / 8 bytes into the last slice; the tail's masked-off lanes as 0.
                    // (f32 only: `lower` makes no `Bits` in f64.)
                    let (bits, temp) = (*self.bases.last().expect("the bits' slice"), self.temp.expect("a register for the bits' offset"));
                    self.a.mov(temp, rax)?;
                    self.a.shr(temp, 3)?;
                    let c = if tail {
                        self.a.kandw(k0, K[self.k(c)], k1)?;
                        k0
                    } else {
                        K[self.k(c)]
                    };
                    self.a.kmovw(word_ptr(bits + temp), c)?;
                }
            }
        }
        Ok(())
    }

    fn bin(&mut self, op: Bin, v: u32, x: Opd, y: Opd) -> Result<(), IcedError> {
        let (x, y) = constant_second(op, x, y);
        let d = self.z(v);
        let x = self.reg(x)?;
        macro_rules! go {
            ($src:expr) => {
                float_bin!(self.a, op, self.f64, d, x, $src, xor: vpxord / vpxorq, and: vpandd / vpandq)
            };
        }
        match y {
            Opd::V(y) => {
                let y = self.z(y);
                go!(y)
            }
            Opd::K(bits) => {
                let y = self.bcst(bits);
                go!(y)
            }
        }
    }
}

/// `x op y`'s operands with a constant second where `op` commutes (IEEE addition and
/// multiplication do, to the bit): the first operand must be a register, the second
/// may be read from memory.
pub(super) fn constant_second(op: Bin, x: Opd, y: Opd) -> (Opd, Opd) {
    let commutes = matches!(op, Bin::Add | Bin::Mul | Bin::Xor | Bin::And);
    if commutes && matches!(x, Opd::K(_)) && matches!(y, Opd::V(_)) { (y, x) } else { (x, y) }
}
