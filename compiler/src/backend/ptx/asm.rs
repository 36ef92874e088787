//! A small typed PTX instruction set: what the lowering produces, printed as PTX text
//! and, for testing without a GPU, executed by a CPU emulator with the same semantics
//! (IEEE rounding, `.ftz` flushing, wrapping integers). Only the element body is
//! modelled; the prologue (thread index, bounds guard, addresses) is printed around it.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Ty {
    F32,
    F64,
    U32,
    S32,
    U64,
    S64,
    B32,
    B64,
    Pred,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::U32 => "u32",
            Ty::S32 => "s32",
            Ty::U64 => "u64",
            Ty::S64 => "s64",
            Ty::B32 => "b32",
            Ty::B64 => "b64",
            Ty::Pred => "pred",
        }
    }

    pub fn class(self) -> Class {
        match self {
            Ty::F32 => Class::F,
            Ty::F64 => Class::Fd,
            Ty::U32 | Ty::S32 | Ty::B32 => Class::R,
            Ty::U64 | Ty::S64 | Ty::B64 => Class::Rd,
            Ty::Pred => Class::P,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Ty::F32 | Ty::F64)
    }
}

/// Register classes, one `.reg` declaration each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    P,
    R,
    Rd,
    F,
    Fd,
}

pub(crate) const CLASSES: [Class; 5] = [Class::P, Class::R, Class::Rd, Class::F, Class::Fd];

impl Class {
    pub fn prefix(self) -> &'static str {
        match self {
            Class::P => "%p",
            Class::R => "%r",
            Class::Rd => "%rd",
            Class::F => "%f",
            Class::Fd => "%fd",
        }
    }
    pub fn decl(self) -> &'static str {
        match self {
            Class::P => ".pred",
            Class::R => ".b32",
            Class::Rd => ".b64",
            Class::F => ".f32",
            Class::Fd => ".f64",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Reg {
    pub class: Class,
    pub n: u32,
}

/// An operand: a register or an immediate (printed in the instruction's type).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    R(Reg),
    F(f64),
    I(u64),
}

impl From<Reg> for Arg {
    fn from(r: Reg) -> Arg {
        Arg::R(r)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Un {
    Neg,
    Abs,
    Sqrt,
    /// `ex2.approx`, `lg2.approx`, `sin.approx`, `cos.approx` (f32 only).
    Ex2,
    Lg2,
    Sin,
    Cos,
    /// Round to the nearest integer, ties to even (`cvt.rni` to the same float type).
    Rni,
    /// Bitwise / logical not.
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    MulHi,
    MulLo,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    /// `copysign d, a, b`: |b| with the sign of a.
    CopySign,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Unordered: true when either operand is NaN.
    Neu,
    Equ,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    Finite,
    NotANumber,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rnd {
    /// Float result: round to nearest even.
    Rn,
    /// Integer result: round toward zero.
    Rzi,
}

/// The scalar (non-pointer) kernel parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    /// The number of elements (the `i < n` bound).
    N,
    T,
    Seed,
    Step,
    Offset,
}

impl Scalar {
    pub fn name(self) -> &'static str {
        match self {
            Scalar::N => "n",
            Scalar::T => "t",
            Scalar::Seed => "seed",
            Scalar::Step => "step",
            Scalar::Offset => "offset",
        }
    }
    pub fn ty(self) -> Ty {
        match self {
            Scalar::T => Ty::F64,
            _ => Ty::U64,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Inst {
    /// Load element i of pointer argument `buf`.
    Ld { ty: Ty, d: Reg, buf: usize, read_only: bool },
    /// Store to element i of pointer argument `buf`.
    St { ty: Ty, buf: usize, a: Arg },
    Param { d: Reg, which: Scalar },
    /// The element index i (u64), computed in the prologue.
    Index { d: Reg },
    Mov { ty: Ty, d: Reg, a: Arg },
    Un { op: Un, ty: Ty, d: Reg, a: Reg },
    Bin { op: Bin, ty: Ty, d: Reg, a: Arg, b: Arg },
    Fma { ty: Ty, d: Reg, a: Arg, b: Arg, c: Arg },
    Setp { cmp: Cmp, ty: Ty, d: Reg, a: Arg, b: Arg },
    Testp { test: Test, ty: Ty, d: Reg, a: Reg },
    Selp { ty: Ty, d: Reg, a: Arg, b: Arg, p: Reg },
    Cvt { rnd: Option<Rnd>, dty: Ty, sty: Ty, d: Reg, a: Reg },
    /// Reinterpret bits between a float and an integer register of the same width.
    Bits { ty: Ty, d: Reg, a: Reg },
    /// The spike `s` (a float of type `ty`) of a kernel that lists its spikes
    /// (`PtxKernel::listing`): where it is not 0 (NaN included, as the CPU's `!= 0.0`),
    /// element i = b * pop_n + j joins batch row b's list and counts; the first element
    /// of each row clears the count the next step appends to. Printed as a scoped block
    /// over the prologue's list registers.
    /// With `records`, it also sets bit j % 32 of word `b * words + j / 32` of the
    /// step's spike record (`PtxKernel::recording`).
    SpikeList { ty: Ty, s: Reg, records: bool },
    /// The step index the device's clock holds (f64; `ld.global.f64` from the `clock`
    /// parameter of a clocked kernel).
    Clock { d: Reg },
    /// Where `p`: the kernel's non-finite flag word (`flags[flag_slot]`, u32) becomes
    /// the larger of itself and `a` (`red.global.max.u32`).
    FlagMax { a: Reg, p: Reg },
    Comment(String),
}

fn reg(r: Reg) -> String {
    format!("{}{}", r.class.prefix(), r.n)
}

fn arg(a: Arg, ty: Ty) -> String {
    match a {
        Arg::R(r) => reg(r),
        Arg::F(v) => match ty {
            Ty::F32 => format!("0f{:08X}", (v as f32).to_bits()),
            _ => format!("0d{:016X}", v.to_bits()),
        },
        Arg::I(v) => match ty {
            Ty::S32 => format!("{}", v as u32 as i32),
            Ty::S64 => format!("{}", v as i64),
            Ty::U32 | Ty::B32 => format!("{}", v as u32),
            Ty::F32 => format!("0f{:08X}", v as u32),
            Ty::F64 => format!("0d{:016X}", v),
            _ => format!("{v}"),
        },
    }
}

/// `.ftz` for f32 float arithmetic: subnormal inputs and results are flushed to zero
/// (sign kept), as the runtime's CPU kernels do with FTZ/DAZ; f64 has no flush mode.
fn ftz(ty: Ty) -> &'static str {
    if ty == Ty::F32 { ".ftz" } else { "" }
}

/// Prints one instruction; `addr(buf)` names the register holding that pointer's element
/// address.
pub(crate) fn print_inst(out: &mut String, inst: &Inst, addr: &dyn Fn(usize) -> String) {
    let t = |ty: Ty| ty.name();
    let line = match *inst {
        Inst::Comment(ref c) => format!("// {c}"),
        Inst::Ld { ty, d, buf, read_only } => {
            // Inputs and params are never written by the kernel: the read-only cache path.
            let nc = if read_only { ".nc" } else { "" };
            format!("ld.global{nc}.{} {}, [{}];", t(ty), reg(d), addr(buf))
        }
        Inst::St { ty, buf, a } => format!("st.global.{} [{}], {};", t(ty), addr(buf), arg(a, ty)),
        Inst::Param { d, which } => format!("ld.param.{} {}, [{}];", t(which.ty()), reg(d), which.name()),
        Inst::Index { d } => format!("mov.u64 {}, %rd_i;", reg(d)),
        Inst::Mov { ty, d, a } => format!("mov.{} {}, {};", t(ty), reg(d), arg(a, ty)),
        Inst::Un { op, ty, d, a } => {
            let m = match op {
                Un::Neg => format!("neg{}", ftz(ty)),
                Un::Abs => format!("abs{}", ftz(ty)),
                Un::Sqrt => format!("sqrt.rn{}", ftz(ty)),
                Un::Ex2 => "ex2.approx.ftz".into(),
                Un::Lg2 => "lg2.approx.ftz".into(),
                Un::Sin => "sin.approx.ftz".into(),
                Un::Cos => "cos.approx.ftz".into(),
                Un::Rni => format!("cvt.rni{}.{}", ftz(ty), t(ty)),
                Un::Not => "not".into(),
            };
            format!("{m}.{} {}, {};", t(ty), reg(d), reg(a))
        }
        Inst::Bin { op, ty, d, a, b } => {
            let f = ftz(ty);
            let rn = if ty.is_float() { ".rn" } else { "" };
            let m = match op {
                // Explicit `.rn` also keeps ptxas from contracting mul+add into fma, so
                // the kernel performs the interpreter's roundings.
                Bin::Add => format!("add{rn}{f}"),
                Bin::Sub => format!("sub{rn}{f}"),
                Bin::Mul if ty.is_float() => format!("mul.rn{f}"),
                Bin::Mul | Bin::MulLo => "mul.lo".into(),
                Bin::MulHi => "mul.hi".into(),
                Bin::Div => format!("div.rn{f}"),
                Bin::Min => format!("min{f}"),
                Bin::Max => format!("max{f}"),
                Bin::And => "and".into(),
                Bin::Or => "or".into(),
                Bin::Xor => "xor".into(),
                Bin::Shl => "shl".into(),
                Bin::Shr => "shr".into(),
                Bin::CopySign => "copysign".into(),
            };
            // Shift amounts are always u32.
            let bt = if matches!(op, Bin::Shl | Bin::Shr) { Ty::U32 } else { ty };
            format!("{m}.{} {}, {}, {};", t(ty), reg(d), arg(a, ty), arg(b, bt))
        }
        Inst::Fma { ty, d, a, b, c } => {
            format!("fma.rn{}.{} {}, {}, {}, {};", ftz(ty), t(ty), reg(d), arg(a, ty), arg(b, ty), arg(c, ty))
        }
        Inst::Setp { cmp, ty, d, a, b } => {
            let c = match cmp {
                Cmp::Eq => "eq",
                Cmp::Ne => "ne",
                Cmp::Lt => "lt",
                Cmp::Le => "le",
                Cmp::Gt => "gt",
                Cmp::Ge => "ge",
                Cmp::Neu => "neu",
                Cmp::Equ => "equ",
            };
            format!("setp.{c}{}.{} {}, {}, {};", ftz(ty), t(ty), reg(d), arg(a, ty), arg(b, ty))
        }
        Inst::Testp { test, ty, d, a } => {
            let m = match test {
                Test::Finite => "finite",
                Test::NotANumber => "notanumber",
            };
            format!("testp.{m}.{} {}, {};", t(ty), reg(d), reg(a))
        }
        Inst::Selp { ty, d, a, b, p } => format!("selp.{} {}, {}, {}, {};", t(ty), reg(d), arg(a, ty), arg(b, ty), reg(p)),
        Inst::Cvt { rnd, dty, sty, d, a } => {
            let r = match rnd {
                None => "",
                Some(Rnd::Rn) => ".rn",
                Some(Rnd::Rzi) => ".rzi",
            };
            let f = if dty == Ty::F32 { ".ftz" } else { "" };
            format!("cvt{r}{f}.{}.{} {}, {};", t(dty), t(sty), reg(d), reg(a))
        }
        Inst::Bits { ty, d, a } => format!("mov.{} {}, {};", t(ty), reg(d), reg(a)),
        Inst::FlagMax { a, p } => format!("@{} red.global.max.u32 [%rd_flag], {};", reg(p), reg(a)),
        Inst::Clock { d } => format!("ld.global.f64 {}, [%rd_clock];", reg(d)),
        Inst::SpikeList { ty, s, records } => {
            let zero = if ty == Ty::F32 { "0f00000000" } else { "0d0000000000000000" };
            let mut lines = vec![
                "{".to_string(),
                ".reg .pred %lp<2>;\n.reg .b32 %lr<4>;\n.reg .b64 %ld<10>;".into(),
                // b = i / pop_n, the row's start b * pop_n, j = i - b * pop_n; 4 b.
                "div.u64 %ld0, %rd_i, %rd_popn;\nmul.lo.u64 %ld1, %ld0, %rd_popn;\nsub.u64 %ld2, %rd_i, %ld1;\nshl.b64 %ld7, %ld0, 2;".into(),
                // The row's first element clears the other count.
                "setp.eq.u64 %lp0, %ld2, 0;\nadd.u64 %ld3, %rd_clr, %ld7;\nmov.u32 %lr0, 0;\n@%lp0 st.global.u32 [%ld3], %lr0;".into(),
                // `neu`: true for NaN, false for +-0 (no .ftz: a subnormal spike is listed).
                format!("setp.neu.{} %lp1, {}, {zero};", t(ty), reg(s)),
                "add.u64 %ld4, %rd_app, %ld7;\nadd.u64 %ld5, %rd_tot, %ld7;".into(),
                "@%lp1 atom.global.add.u32 %lr1, [%ld4], 1;\n@%lp1 red.global.add.u32 [%ld5], 1;".into(),
                "cvt.u64.u32 %ld6, %lr1;\nadd.u64 %ld6, %ld6, %ld1;\nshl.b64 %ld6, %ld6, 2;\nadd.u64 %ld6, %rd_list, %ld6;".into(),
                "cvt.u32.u64 %lr0, %ld2;\n@%lp1 st.global.u32 [%ld6], %lr0;".into(),
            ];
            if records {
                // rec word b * words + j / 32 (%rd_rec: this step's record), bit j % 32.
                lines.push("mul.lo.u64 %ld8, %ld0, %rd_words;\nshr.u64 %ld9, %ld2, 5;\nadd.u64 %ld8, %ld8, %ld9;\nshl.b64 %ld8, %ld8, 2;\nadd.u64 %ld8, %rd_rec, %ld8;".into());
                lines.push("and.b32 %lr2, %lr0, 31;\nmov.u32 %lr3, 1;\nshl.b32 %lr3, %lr3, %lr2;\n@%lp1 red.global.or.b32 [%ld8], %lr3;".into());
            }
            lines.push("}".into());
            lines
                .join("\n")
            .replace('\n', "\n\t")
        }
    };
    let _ = writeln!(out, "\t{line}");
}

/// The register file of the emulator: every register as raw bits.
pub(crate) struct Machine {
    regs: Vec<Vec<u64>>,
    /// The largest word [`Inst::FlagMax`] raised so far (0: none).
    pub flag: u32,
    /// The elements [`Inst::SpikeList`] listed, in the order run.
    pub listed: Vec<u64>,
}

fn class_ix(c: Class) -> usize {
    CLASSES.iter().position(|&k| k == c).expect("class")
}

fn flush32(x: f32) -> f32 {
    if x.is_subnormal() { 0.0f32.copysign(x) } else { x }
}

/// A float value of an instruction's type, held as f64 (f32 values are exact in f64).
fn fval(bits: u64, ty: Ty) -> f64 {
    match ty {
        Ty::F32 => f64::from(flush32(f32::from_bits(bits as u32))),
        _ => f64::from_bits(bits),
    }
}

fn fbits(v: f64, ty: Ty) -> u64 {
    match ty {
        Ty::F32 => u64::from(flush32(v as f32).to_bits()),
        _ => v.to_bits(),
    }
}

fn imask(ty: Ty) -> u64 {
    match ty {
        Ty::U32 | Ty::S32 | Ty::B32 => 0xFFFF_FFFF,
        Ty::Pred => 1,
        _ => u64::MAX,
    }
}

fn sext(v: u64, ty: Ty) -> i64 {
    match ty {
        Ty::S32 | Ty::U32 | Ty::B32 => v as u32 as i32 as i64,
        _ => v as i64,
    }
}

/// Float to integer as `cvt.rni` / `cvt.rzi` do: saturating, NaN gives 0.
fn f2i(v: f64, rnd: Option<Rnd>, ty: Ty) -> u64 {
    let r = if rnd == Some(Rnd::Rzi) { v.trunc() } else { v.round_ties_even() };
    match ty {
        Ty::S32 => (r as i32) as u32 as u64,
        Ty::U32 => u64::from(r as u32),
        Ty::S64 => (r as i64) as u64,
        _ => r as u64,
    }
}

impl Machine {
    pub fn new(counts: &[u32; 5]) -> Machine {
        Machine { regs: counts.iter().map(|&n| vec![0; n as usize]).collect(), flag: 0, listed: Vec::new() }
    }

    fn get(&self, r: Reg) -> u64 {
        self.regs[class_ix(r.class)][r.n as usize]
    }

    fn set(&mut self, r: Reg, v: u64) {
        self.regs[class_ix(r.class)][r.n as usize] = v;
    }

    /// An operand's raw bits in type `ty`.
    fn bits(&self, a: Arg, ty: Ty) -> u64 {
        match a {
            Arg::R(r) => self.get(r),
            Arg::F(v) => match ty {
                Ty::F32 => u64::from((v as f32).to_bits()),
                _ => v.to_bits(),
            },
            Arg::I(v) => v & imask(ty),
        }
    }

    fn f(&self, a: Arg, ty: Ty) -> f64 {
        fval(self.bits(a, ty), ty)
    }

    /// `op a` in type `ty`, as the result's bits.
    fn un(&self, op: Un, ty: Ty, a: Reg) -> u64 {
        if op == Un::Not {
            return !self.get(a) & imask(ty);
        }
        let x = self.f(Arg::R(a), ty);
        let r = match op {
            Un::Neg => -x,
            Un::Abs => x.abs(),
            Un::Sqrt if ty == Ty::F32 => f64::from((x as f32).sqrt()),
            Un::Sqrt => x.sqrt(),
            Un::Ex2 => x.exp2(),
            Un::Lg2 => x.log2(),
            Un::Sin => x.sin(),
            Un::Cos => x.cos(),
            Un::Rni => x.round_ties_even(),
            Un::Not => unreachable!(),
        };
        fbits(r, ty)
    }

    /// `a op b` in a float type.
    fn float_bin(&self, op: Bin, ty: Ty, a: Arg, b: Arg) -> u64 {
        let (x, y) = (self.f(a, ty), self.f(b, ty));
        let r = match op {
            Bin::Add => x + y,
            Bin::Sub => x - y,
            Bin::Mul => x * y,
            Bin::Div => x / y,
            Bin::Min => x.min(y),
            Bin::Max => x.max(y),
            Bin::CopySign => y.copysign(x),
            _ => panic!("integer op {op:?} on {ty:?}"),
        };
        // f32 ops round the f64 result once: exact for + - * / (the f64
        // result of f32 operands is exact or rounds innocuously).
        fbits(r, ty)
    }

    /// `a op b` in an integer type, wrapped to its width.
    fn int_bin(&self, op: Bin, ty: Ty, a: Arg, b: Arg) -> u64 {
        let m = imask(ty);
        let (x, y) = (self.bits(a, ty), self.bits(b, if matches!(op, Bin::Shl | Bin::Shr) { Ty::U32 } else { ty }));
        let wide = m == u64::MAX;
        let r = match op {
            Bin::Add => x.wrapping_add(y),
            Bin::Sub => x.wrapping_sub(y),
            Bin::Mul | Bin::MulLo => x.wrapping_mul(y),
            Bin::MulHi if wide => ((u128::from(x) * u128::from(y)) >> 64) as u64,
            Bin::MulHi => (x * y) >> 32,
            Bin::And => x & y,
            Bin::Or => x | y,
            Bin::Xor => x ^ y,
            Bin::Min | Bin::Max => {
                let lt = if matches!(ty, Ty::S32 | Ty::S64) { sext(x, ty) < sext(y, ty) } else { x < y };
                if lt == (op == Bin::Min) { x } else { y }
            }
            Bin::Shl => if y >= 64 { 0 } else { x << y },
            Bin::Shr if matches!(ty, Ty::S32 | Ty::S64) => (sext(x, ty) >> y.min(63)) as u64,
            Bin::Shr => if y >= 64 { 0 } else { x >> y },
            _ => panic!("float op {op:?} on {ty:?}"),
        };
        r & m
    }

    /// `a cmp b` in type `ty`; with a NaN operand only the unordered `neu` and `equ` hold.
    fn setp(&self, cmp: Cmp, ty: Ty, a: Arg, b: Arg) -> bool {
        if ty.is_float() {
            let (x, y) = (self.f(a, ty), self.f(b, ty));
            let un = x.is_nan() || y.is_nan();
            return match cmp {
                Cmp::Eq => x == y,
                Cmp::Ne => !un && x != y,
                Cmp::Lt => x < y,
                Cmp::Le => x <= y,
                Cmp::Gt => x > y,
                Cmp::Ge => x >= y,
                Cmp::Neu => un || x != y,
                Cmp::Equ => un || x == y,
            };
        }
        let (x, y) = (self.bits(a, ty), self.bits(b, ty));
        let signed = matches!(ty, Ty::S32 | Ty::S64);
        let (sx, sy) = (sext(x, ty), sext(y, ty));
        match cmp {
            Cmp::Eq | Cmp::Equ => x == y,
            Cmp::Ne | Cmp::Neu => x != y,
            Cmp::Lt => if signed { sx < sy } else { x < y },
            Cmp::Le => if signed { sx <= sy } else { x <= y },
            Cmp::Gt => if signed { sx > sy } else { x > y },
            Cmp::Ge => if signed { sx >= sy } else { x >= y },
        }
    }

    /// Executes the body for one element. `ld(buf)` reads element i of a pointer
    /// argument as f64, `st(buf, v)` writes it; `scalar` gives the scalar params' bits.
    /// The approximate f32 instructions (`ex2`, `lg2`, `sin`, `cos`) are emulated by the
    /// correctly rounded functions: the hardware is within the PTX ISA's error bounds of
    /// these, so the emulator checks the algorithms, not the hardware approximations.
    pub fn run(
        &mut self,
        body: &[Inst],
        index: u64,
        scalar: &dyn Fn(Scalar) -> u64,
        ld: &mut dyn FnMut(usize) -> f64,
        st: &mut dyn FnMut(usize, f64),
    ) {
        for inst in body {
            match *inst {
                Inst::Comment(_) => {}
                Inst::Ld { ty, d, buf, .. } => {
                    let v = ld(buf);
                    self.set(d, if ty == Ty::F32 { u64::from((v as f32).to_bits()) } else { v.to_bits() });
                }
                Inst::St { ty, buf, a } => {
                    let b = self.bits(a, ty);
                    let v = if ty == Ty::F32 { f64::from(f32::from_bits(b as u32)) } else { f64::from_bits(b) };
                    st(buf, v);
                }
                Inst::Param { d, which } => self.set(d, scalar(which)),
                Inst::Index { d } => self.set(d, index),
                Inst::Mov { ty, d, a } => self.set(d, self.bits(a, ty)),
                Inst::Bits { d, a, .. } => self.set(d, self.get(a)),
                Inst::Un { op, ty, d, a } => self.set(d, self.un(op, ty, a)),
                Inst::Bin { op, ty, d, a, b } => {
                    let v = if ty.is_float() { self.float_bin(op, ty, a, b) } else { self.int_bin(op, ty, a, b) };
                    self.set(d, v);
                }
                Inst::Fma { ty, d, a, b, c } => {
                    let (x, y, z) = (self.f(a, ty), self.f(b, ty), self.f(c, ty));
                    let r = if ty == Ty::F32 { f64::from((x as f32).mul_add(y as f32, z as f32)) } else { x.mul_add(y, z) };
                    self.set(d, fbits(r, ty));
                }
                Inst::Setp { cmp, ty, d, a, b } => self.set(d, u64::from(self.setp(cmp, ty, a, b))),
                Inst::Testp { test, ty, d, a } => {
                    let x = fval(self.get(a), ty);
                    let r = match test {
                        Test::Finite => x.is_finite(),
                        Test::NotANumber => x.is_nan(),
                    };
                    self.set(d, u64::from(r));
                }
                Inst::Selp { ty, d, a, b, p } => {
                    let v = if self.get(p) != 0 { self.bits(a, ty) } else { self.bits(b, ty) };
                    self.set(d, v);
                }
                Inst::Cvt { rnd, dty, sty, d, a } => self.set(d, cvt(self.get(a), rnd, dty, sty)),
                // The clock holds the step (what `Scalar::Step` gives), as an f64.
                Inst::Clock { d } => self.set(d, (scalar(Scalar::Step) as f64).to_bits()),
                Inst::SpikeList { ty, s, .. } => {
                    // Not `.ftz`: the raw value, as `setp.neu` compares it.
                    let x = if ty == Ty::F32 { f64::from(f32::from_bits(self.get(s) as u32)) } else { f64::from_bits(self.get(s)) };
                    if x != 0.0 {
                        self.listed.push(index);
                    }
                }
                Inst::FlagMax { a, p } => {
                    if self.get(p) != 0 {
                        self.flag = self.flag.max(self.get(a) as u32);
                    }
                }
            }
        }
    }
}

/// `cvt` of the bits `s` of type `sty` to type `dty`.
fn cvt(s: u64, rnd: Option<Rnd>, dty: Ty, sty: Ty) -> u64 {
    match (sty.is_float(), dty.is_float()) {
        (true, true) => fbits(fval(s, sty), dty),
        (true, false) => f2i(fval(s, sty), rnd, dty),
        (false, true) => {
            let x = if matches!(sty, Ty::S32 | Ty::S64) { sext(s, sty) as f64 } else { (s & imask(sty)) as f64 };
            fbits(x, dty)
        }
        (false, false) => {
            let x = if matches!(sty, Ty::S32) { sext(s, sty) as u64 } else { s & imask(sty) };
            x & imask(dty)
        }
    }
}

/// Declarations of `counts[c]` registers of each class.
pub(crate) fn print_decls(out: &mut String, counts: &[u32; 5]) {
    for (c, &n) in CLASSES.iter().zip(counts) {
        if n > 0 {
            let _ = writeln!(out, "\t.reg {} {}<{n}>;", c.decl(), c.prefix());
        }
    }
}
