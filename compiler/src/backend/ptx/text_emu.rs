//! A CPU interpreter for PTX text: the subset the propagation kernels
//! ([`super::propagate`]) are written in (integer address arithmetic, predicated
//! branches, global loads and stores, `atom.add.u32`, `red.add.f32/f64`, f32/f64
//! `add`/`mul` with `.rn` and `.ftz`, unsigned `div`/`rem`, `testp.finite`, and the
//! `mul.hi.u32`, `xor` and `cvt.rn.f64.u32`/`.u64` of Philox and its uniform numbers). The step kernels' emulator works
//! on their structured form; these hand-written kernels exist only as text, so this runs
//! the text itself, thread after thread (none of them uses shared memory or barriers, so
//! any serial order is a legal schedule).
//!
//! Memory is the caller's ([`Memory`]): a 64-bit address names a buffer and a byte
//! offset, so out-of-bounds or misaligned accesses are errors, not silent corruption.

use super::asm::Cmp;
use std::collections::HashMap;

/// Global memory as the interpreter sees it: loads and stores of 4- or 8-byte values
/// (raw bits; f32 in the low 32 bits).
pub trait Memory {
    fn load(&mut self, addr: u64, bytes: u32) -> Result<u64, String>;
    fn store(&mut self, addr: u64, bytes: u32, bits: u64) -> Result<(), String>;
}

/// A kernel parameter value (`.param .u64` only: pointers and integers).
pub type Param = u64;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    U32,
    U64,
    F32,
    F64,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "u32" | "s32" | "b32" => Ty::U32,
            "u64" | "s64" | "b64" => Ty::U64,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            _ => return None,
        })
    }
    fn bytes(self) -> u32 {
        match self {
            Ty::U32 | Ty::F32 => 4,
            Ty::U64 | Ty::F64 => 8,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Special {
    Tid,
    Ntid,
    Ctaid,
    CtaidY,
    Nctaid,
    NctaidY,
}

#[derive(Clone, Copy, Debug)]
enum Opnd {
    Reg(usize),
    Imm(u64),
    Sreg(Special),
    /// `[%reg+offset]`
    Addr(usize, u64),
    /// `[name]` of a `.param`
    Param(usize),
    Label(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Mov,
    CvtU64U32,
    CvtU32U64,
    MadWide,
    MadLo,
    MulLo,
    /// `mul.hi.u32`: the high word of the 64-bit product.
    MulHi,
    MulWide,
    Xor,
    /// `cvt.rn.f64.u32` (exact), `cvt.rn.f64.u64`.
    CvtF64U32,
    CvtF64U64,
    Div,
    Rem,
    Add,
    Shl,
    Shr,
    And,
    LdParam,
    Cvta,
    /// `setp.CMP`: the comparison (see [`cmp`]).
    Setp(Cmp),
    TestpFinite,
    TestpNan,
    Selp,
    Sub,
    Or,
    FSub,
    /// `cvt.f64.f32` / `cvt.rn.f32.f64`.
    CvtF64F32,
    CvtF32F64,
    /// `cvt.rn.f64.s32`, `cvt.rzi.s32.f64`, `cvt.s64.s32`, `cvt.rni.f64.f64`.
    CvtF64S32,
    CvtS32F64,
    CvtS64S32,
    Rni,
    /// Arithmetic shift right (`shr.s32` / `shr.s64`).
    ShrS,
    FDiv,
    Fma,
    FNeg,
    FMin,
    FMax,
    AtomMax,
    Bra,
    LdGlobal,
    StGlobal,
    AtomAdd,
    RedAdd,
    FMul,
    FAdd,
    Ret,
}

#[derive(Clone, Debug)]
struct Inst {
    op: Op,
    ty: Ty,
    ftz: bool,
    /// `@%p` / `@!%p`
    guard: Option<(usize, bool)>,
    o: Vec<Opnd>,
}

/// One `.entry`: its parameter names and decoded instructions.
#[derive(Clone, Debug)]
pub struct Entry {
    pub params: Vec<String>,
    insts: Vec<Inst>,
    n_regs: usize,
}

/// Parses every `.entry` of a module.
pub fn parse(text: &str) -> Result<HashMap<String, Entry>, String> {
    let mut out = HashMap::new();
    let mut lines = text.lines().map(|l| l.split("//").next().unwrap_or("").trim()).filter(|l| !l.is_empty()).peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(".visible .entry ") else { continue };
        let name = rest.trim_end_matches('(').to_string();
        let mut params = Vec::new();
        for l in lines.by_ref() {
            if l == ")" {
                break;
            }
            let p = l.trim_end_matches(',').rsplit(' ').next().ok_or_else(|| format!("{name}: bad param `{l}`"))?;
            params.push(p.to_string());
        }
        let mut regs: HashMap<String, usize> = HashMap::new();
        let mut labels: HashMap<String, usize> = HashMap::new();
        let mut raw: Vec<&str> = Vec::new();
        for l in lines.by_ref() {
            if l == "}" {
                break;
            }
            if l == "{" || l.starts_with(".reg") {
                continue;
            }
            if let Some(label) = l.strip_suffix(':') {
                labels.insert(label.to_string(), raw.len());
                continue;
            }
            raw.push(l.trim_end_matches(';'));
        }
        let mut insts = Vec::new();
        for l in raw {
            insts.push(decode(l, &params, &mut regs, &labels).map_err(|e| format!("{name}: `{l}`: {e}"))?);
        }
        out.insert(name, Entry { params, insts, n_regs: regs.len() });
    }
    Ok(out)
}

fn reg(name: &str, regs: &mut HashMap<String, usize>) -> usize {
    let n = regs.len();
    *regs.entry(name.to_string()).or_insert(n)
}

fn operand(s: &str, params: &[String], regs: &mut HashMap<String, usize>, labels: &HashMap<String, usize>) -> Result<Opnd, String> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        if let Some(p) = params.iter().position(|p| p == inner) {
            return Ok(Opnd::Param(p));
        }
        let (r, off) = match inner.split_once('+') {
            Some((r, o)) => (r, o.parse::<u64>().map_err(|_| format!("bad offset `{o}`"))?),
            None => (inner, 0),
        };
        return Ok(Opnd::Addr(reg(r, regs), off));
    }
    Ok(match s {
        "%tid.x" => Opnd::Sreg(Special::Tid),
        "%ntid.x" => Opnd::Sreg(Special::Ntid),
        "%ctaid.x" => Opnd::Sreg(Special::Ctaid),
        "%ctaid.y" => Opnd::Sreg(Special::CtaidY),
        "%nctaid.x" => Opnd::Sreg(Special::Nctaid),
        "%nctaid.y" => Opnd::Sreg(Special::NctaidY),
        _ if s.starts_with('%') => Opnd::Reg(reg(s, regs)),
        _ if s.starts_with('$') => Opnd::Label(*labels.get(s).ok_or_else(|| format!("no label `{s}`"))?),
        _ if s.starts_with("0f") => Opnd::Imm(u64::from(u32::from_str_radix(&s[2..], 16).map_err(|_| format!("bad f32 `{s}`"))?)),
        _ if s.starts_with("0d") => Opnd::Imm(u64::from_str_radix(&s[2..], 16).map_err(|_| format!("bad f64 `{s}`"))?),
        _ => Opnd::Imm(s.parse::<u64>().map_err(|_| format!("unsupported operand `{s}`"))?),
    })
}

fn decode(line: &str, params: &[String], regs: &mut HashMap<String, usize>, labels: &HashMap<String, usize>) -> Result<Inst, String> {
    let (guard, line) = match line.strip_prefix('@') {
        Some(rest) => {
            let (p, rest) = rest.split_once(char::is_whitespace).ok_or("guard without instruction")?;
            let (neg, p) = match p.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, p),
            };
            (Some((reg(p, regs), neg)), rest.trim())
        }
        None => (None, line),
    };
    let (opcode, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let parts: Vec<&str> = opcode.split('.').collect();
    let ftz = parts.contains(&"ftz");
    let ty = parts.iter().rev().find_map(|p| Ty::parse(p)).unwrap_or(Ty::U64);
    let op = match (parts[0], parts.get(1).copied().unwrap_or("")) {
        ("mov", _) => Op::Mov,
        ("cvt", _) => match &parts[1..] {
            ["f64", "f32"] => Op::CvtF64F32,
            ["rn", "f32", "f64"] => Op::CvtF32F64,
            ["rn", "f64", "s32"] => Op::CvtF64S32,
            ["rn", "f64", "u32"] => Op::CvtF64U32,
            ["rn", "f64", "u64"] => Op::CvtF64U64,
            ["rzi", "s32", "f64"] => Op::CvtS32F64,
            ["s64", "s32"] => Op::CvtS64S32,
            ["rni", "f64", "f64"] => Op::Rni,
            ["u64", "u32"] => Op::CvtU64U32,
            ["u32" | "s32", "u64" | "s64"] => Op::CvtU32U64,
            _ => return Err(format!("unsupported instruction `{opcode}`")),
        },
        ("mad", "wide") => Op::MadWide,
        ("mad", "lo") => Op::MadLo,
        ("mul", "lo") => Op::MulLo,
        ("mul", "hi") if ty == Ty::U32 => Op::MulHi,
        ("xor", _) => Op::Xor,
        ("mul", "wide") => Op::MulWide,
        ("mul", "rn") => Op::FMul,
        ("add", "rn") => Op::FAdd,
        ("sub", "rn") => Op::FSub,
        ("sub", "u32" | "u64" | "s32" | "s64") => Op::Sub,
        ("or", _) => Op::Or,
        ("selp", _) => Op::Selp,
        ("add", _) => Op::Add,
        // Unsigned only (`Ty` does not tell s32 from u32).
        ("div", "u32" | "u64") => Op::Div,
        ("div", "rn") => Op::FDiv,
        ("fma", "rn") => Op::Fma,
        ("neg", _) if matches!(ty, Ty::F32 | Ty::F64) => Op::FNeg,
        ("min", _) if matches!(ty, Ty::F32 | Ty::F64) => Op::FMin,
        ("max", _) if matches!(ty, Ty::F32 | Ty::F64) => Op::FMax,
        ("shr", "s32" | "s64") => Op::ShrS,
        ("rem", "u32" | "u64") => Op::Rem,
        ("shl", _) => Op::Shl,
        ("shr", _) => Op::Shr,
        ("and", _) => Op::And,
        ("ld", "param") => Op::LdParam,
        ("ld", "global") => Op::LdGlobal,
        ("st", "global") => Op::StGlobal,
        ("cvta", _) => Op::Cvta,
        ("setp", c) => Op::Setp(cmp(c).ok_or_else(|| format!("unsupported comparison `{opcode}`"))?),
        ("testp", "finite") => Op::TestpFinite,
        ("testp", "notanumber") => Op::TestpNan,
        ("bra", _) => Op::Bra,
        ("atom", "global") if parts.get(2) == Some(&"add") && ty == Ty::U32 => Op::AtomAdd,
        ("atom", "global") if parts.get(2) == Some(&"max") && ty == Ty::U32 => Op::AtomMax,
        ("red", "global") if parts.get(2) == Some(&"add") => Op::RedAdd,
        ("ret", _) => Op::Ret,
        _ => return Err(format!("unsupported instruction `{opcode}`")),
    };
    let o = if args.is_empty() { Vec::new() } else { args.split(',').map(|a| operand(a, params, regs, labels)).collect::<Result<_, _>>()? };
    Ok(Inst { op, ty, ftz, guard, o })
}

fn cmp(c: &str) -> Option<Cmp> {
    Some(match c {
        "eq" => Cmp::Eq,
        "ne" => Cmp::Ne,
        "lt" => Cmp::Lt,
        "le" => Cmp::Le,
        "gt" => Cmp::Gt,
        "ge" => Cmp::Ge,
        "neu" => Cmp::Neu,
        "equ" => Cmp::Equ,
        _ => return None,
    })
}

/// `a CMP b` on values already widened (integers unsigned, as the kernels use them).
fn compare<V: PartialOrd>(c: Cmp, a: V, b: V) -> bool {
    let unordered = a.partial_cmp(&b).is_none();
    match c {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b && !unordered,
        Cmp::Lt => a < b,
        Cmp::Le => a <= b,
        Cmp::Gt => a > b,
        Cmp::Ge => a >= b,
        Cmp::Neu => a != b,
        Cmp::Equ => a == b || unordered,
    }
}

/// The launch geometry a thread sees.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    pub grid: (u32, u32),
    pub block: u32,
}

fn f32_of(bits: u64, ftz: bool) -> f32 {
    let v = f32::from_bits(bits as u32);
    if ftz && v.is_subnormal() { 0.0f32.copysign(v) } else { v }
}

fn f32_bits(v: f32, ftz: bool) -> u64 {
    let v = if ftz && v.is_subnormal() { 0.0f32.copysign(v) } else { v };
    u64::from(v.to_bits())
}

impl Entry {
    /// Runs every thread of the grid, one after the other.
    pub fn run(&self, g: Grid, params: &[Param], mem: &mut dyn Memory) -> Result<(), String> {
        if params.len() != self.params.len() {
            return Err(format!("{} parameters given, the kernel takes {}", params.len(), self.params.len()));
        }
        let mut r = vec![0u64; self.n_regs];
        for by in 0..g.grid.1 {
            for bx in 0..g.grid.0 {
                for tid in 0..g.block {
                    r.fill(0);
                    self.thread(g, (bx, by), tid, params, mem, &mut r)?;
                }
            }
        }
        Ok(())
    }

    fn thread(&self, g: Grid, (bx, by): (u32, u32), tid: u32, params: &[Param], mem: &mut dyn Memory, r: &mut [u64]) -> Result<(), String> {
        let val = |r: &[u64], o: &Opnd| -> Result<u64, String> {
            Ok(match *o {
                Opnd::Reg(i) => r[i],
                Opnd::Imm(v) => v,
                Opnd::Sreg(s) => u64::from(match s {
                    Special::Tid => tid,
                    Special::Ntid => g.block,
                    Special::Ctaid => bx,
                    Special::CtaidY => by,
                    Special::Nctaid => g.grid.0,
                    Special::NctaidY => g.grid.1,
                }),
                Opnd::Param(p) => params[p],
                _ => return Err(format!("operand {o:?} has no value")),
            })
        };
        let addr = |r: &[u64], o: &Opnd| -> Result<u64, String> {
            match *o {
                Opnd::Addr(i, off) => Ok(r[i].wrapping_add(off)),
                _ => Err(format!("expected an address, got {o:?}")),
            }
        };
        let dst = |o: &Opnd| -> Result<usize, String> {
            match *o {
                Opnd::Reg(i) => Ok(i),
                _ => Err(format!("expected a register, got {o:?}")),
            }
        };
        let mut pc = 0;
        // A runaway loop is a kernel bug: stop it.
        let mut budget: u64 = 1 << 32;
        while pc < self.insts.len() {
            budget -= 1;
            if budget == 0 {
                return Err("a thread did not finish".into());
            }
            let i = &self.insts[pc];
            pc += 1;
            if let Some((p, neg)) = i.guard
                && (r[p] != 0) == neg
            {
                continue;
            }
            let o = &i.o;
            let m32 = |v: u64| if i.ty == Ty::U32 { v & 0xFFFF_FFFF } else { v };
            match i.op {
                Op::Mov => r[dst(&o[0])?] = m32(val(r, &o[1])?),
                Op::CvtU64U32 => r[dst(&o[0])?] = val(r, &o[1])? & 0xFFFF_FFFF,
                Op::CvtU32U64 => r[dst(&o[0])?] = val(r, &o[1])? & 0xFFFF_FFFF,
                Op::MadWide => {
                    let (a, b, c) = (val(r, &o[1])? & 0xFFFF_FFFF, val(r, &o[2])? & 0xFFFF_FFFF, val(r, &o[3])?);
                    r[dst(&o[0])?] = a.wrapping_mul(b).wrapping_add(c);
                }
                Op::MadLo => r[dst(&o[0])?] = m32(val(r, &o[1])?.wrapping_mul(val(r, &o[2])?).wrapping_add(val(r, &o[3])?)),
                Op::MulLo => r[dst(&o[0])?] = m32(val(r, &o[1])?.wrapping_mul(val(r, &o[2])?)),
                Op::MulWide => r[dst(&o[0])?] = (val(r, &o[1])? & 0xFFFF_FFFF).wrapping_mul(val(r, &o[2])? & 0xFFFF_FFFF),
                Op::Add => r[dst(&o[0])?] = m32(val(r, &o[1])?.wrapping_add(val(r, &o[2])?)),
                Op::Div | Op::Rem => {
                    let (a, b) = (m32(val(r, &o[1])?), m32(val(r, &o[2])?));
                    if b == 0 {
                        return Err("integer division by zero".into());
                    }
                    r[dst(&o[0])?] = if i.op == Op::Div { a / b } else { a % b };
                }
                Op::Shl => r[dst(&o[0])?] = m32(val(r, &o[1])? << (val(r, &o[2])? & 63)),
                Op::Shr => r[dst(&o[0])?] = m32(val(r, &o[1])?) >> (val(r, &o[2])? & 63),
                Op::And => r[dst(&o[0])?] = m32(val(r, &o[1])? & val(r, &o[2])?),
                Op::Or => r[dst(&o[0])?] = m32(val(r, &o[1])? | val(r, &o[2])?),
                Op::Xor => r[dst(&o[0])?] = m32(val(r, &o[1])? ^ val(r, &o[2])?),
                Op::MulHi => r[dst(&o[0])?] = ((val(r, &o[1])? & 0xFFFF_FFFF) * (val(r, &o[2])? & 0xFFFF_FFFF)) >> 32,
                Op::Sub => r[dst(&o[0])?] = m32(val(r, &o[1])?.wrapping_sub(val(r, &o[2])?)),
                Op::Selp => r[dst(&o[0])?] = m32(if val(r, &o[3])? != 0 { val(r, &o[1])? } else { val(r, &o[2])? }),
                Op::CvtF64F32 => r[dst(&o[0])?] = f64::from(f32::from_bits(val(r, &o[1])? as u32)).to_bits(),
                Op::CvtF32F64 => r[dst(&o[0])?] = u64::from((f64::from_bits(val(r, &o[1])?) as f32).to_bits()),
                Op::TestpNan => {
                    let a = val(r, &o[1])?;
                    let t = if i.ty == Ty::F32 { f32::from_bits(a as u32).is_nan() } else { f64::from_bits(a).is_nan() };
                    r[dst(&o[0])?] = u64::from(t);
                }
                Op::CvtF64S32 => r[dst(&o[0])?] = f64::from(val(r, &o[1])? as u32 as i32).to_bits(),
                Op::CvtF64U32 => r[dst(&o[0])?] = f64::from(val(r, &o[1])? as u32).to_bits(),
                // Round to nearest, as `u64 as f64`.
                Op::CvtF64U64 => r[dst(&o[0])?] = (val(r, &o[1])? as f64).to_bits(),
                // Saturating, NaN to 0: PTX's and Rust's float-to-integer conversion.
                Op::CvtS32F64 => r[dst(&o[0])?] = u64::from(f64::from_bits(val(r, &o[1])?) as i32 as u32),
                Op::CvtS64S32 => r[dst(&o[0])?] = i64::from(val(r, &o[1])? as u32 as i32) as u64,
                Op::Rni => r[dst(&o[0])?] = f64::from_bits(val(r, &o[1])?).round_ties_even().to_bits(),
                Op::ShrS => {
                    let (a, s) = (val(r, &o[1])?, val(r, &o[2])? & 63);
                    r[dst(&o[0])?] = if i.ty == Ty::U32 { u64::from(((a as u32 as i32) >> s.min(31)) as u32) } else { ((a as i64) >> s) as u64 };
                }
                Op::FDiv | Op::FMin | Op::FMax => {
                    let (a, b) = (val(r, &o[1])?, val(r, &o[2])?);
                    // PTX min/max return the other operand when one is NaN, as f64::min/max.
                    let op = |x: f64, y: f64| match i.op {
                        Op::FDiv => x / y,
                        Op::FMin => x.min(y),
                        _ => x.max(y),
                    };
                    r[dst(&o[0])?] = match i.ty {
                        Ty::F32 => f32_bits(op(f64::from(f32_of(a, i.ftz)), f64::from(f32_of(b, i.ftz))) as f32, i.ftz),
                        _ => op(f64::from_bits(a), f64::from_bits(b)).to_bits(),
                    };
                }
                Op::Fma => {
                    let (a, b, c) = (val(r, &o[1])?, val(r, &o[2])?, val(r, &o[3])?);
                    r[dst(&o[0])?] = match i.ty {
                        Ty::F32 => f32_bits(f32_of(a, i.ftz).mul_add(f32_of(b, i.ftz), f32_of(c, i.ftz)), i.ftz),
                        _ => f64::from_bits(a).mul_add(f64::from_bits(b), f64::from_bits(c)).to_bits(),
                    };
                }
                Op::FNeg => {
                    let a = val(r, &o[1])?;
                    r[dst(&o[0])?] = match i.ty {
                        Ty::F32 => f32_bits(-f32_of(a, i.ftz), i.ftz),
                        _ => a ^ (1 << 63),
                    };
                }
                Op::AtomMax => {
                    let a = addr(r, &o[1])?;
                    let old = mem.load(a, 4)?;
                    mem.store(a, 4, old.max(val(r, &o[2])? & 0xFFFF_FFFF))?;
                    r[dst(&o[0])?] = old;
                }
                Op::LdParam | Op::Cvta => r[dst(&o[0])?] = val(r, &o[1])?,
                Op::Setp(c) => {
                    let (a, b) = (val(r, &o[1])?, val(r, &o[2])?);
                    let t = match i.ty {
                        Ty::U32 | Ty::U64 => compare(c, m32(a), m32(b)),
                        Ty::F32 => compare(c, f32_of(a, i.ftz), f32_of(b, i.ftz)),
                        Ty::F64 => compare(c, f64::from_bits(a), f64::from_bits(b)),
                    };
                    r[dst(&o[0])?] = u64::from(t);
                }
                Op::TestpFinite => {
                    let a = val(r, &o[1])?;
                    let t = if i.ty == Ty::F32 { f32::from_bits(a as u32).is_finite() } else { f64::from_bits(a).is_finite() };
                    r[dst(&o[0])?] = u64::from(t);
                }
                Op::Bra => match o[0] {
                    Opnd::Label(l) => pc = l,
                    _ => return Err("bra without a label".into()),
                },
                Op::LdGlobal => r[dst(&o[0])?] = mem.load(addr(r, &o[1])?, i.ty.bytes())?,
                Op::StGlobal => mem.store(addr(r, &o[0])?, i.ty.bytes(), m32(val(r, &o[1])?))?,
                Op::AtomAdd => {
                    let a = addr(r, &o[1])?;
                    let old = mem.load(a, 4)?;
                    mem.store(a, 4, old.wrapping_add(val(r, &o[2])?) & 0xFFFF_FFFF)?;
                    r[dst(&o[0])?] = old;
                }
                Op::RedAdd => {
                    let a = addr(r, &o[0])?;
                    let (old, v) = (mem.load(a, i.ty.bytes())?, val(r, &o[1])?);
                    // red.add.f32 flushes subnormal inputs and results (PTX ISA).
                    let new = match i.ty {
                        Ty::F32 => f32_bits(f32_of(old, true) + f32_of(v, true), true),
                        Ty::F64 => (f64::from_bits(old) + f64::from_bits(v)).to_bits(),
                        Ty::U32 => old.wrapping_add(v) & 0xFFFF_FFFF,
                        Ty::U64 => old.wrapping_add(v),
                    };
                    mem.store(a, i.ty.bytes(), new)?;
                }
                Op::FMul | Op::FAdd | Op::FSub => {
                    let (a, b) = (val(r, &o[1])?, val(r, &o[2])?);
                    let op = |x: f64, y: f64| match i.op {
                        Op::FMul => x * y,
                        Op::FAdd => x + y,
                        _ => x - y,
                    };
                    r[dst(&o[0])?] = match i.ty {
                        Ty::F32 => {
                            let (x, y) = (f32_of(a, i.ftz), f32_of(b, i.ftz));
                            // f32 arithmetic: each op is exact in f64 and then rounded once.
                            f32_bits(op(f64::from(x), f64::from(y)) as f32, i.ftz)
                        }
                        _ => op(f64::from_bits(a), f64::from_bits(b)).to_bits(),
                    };
                }
                Op::Ret => return Ok(()),
            }
        }
        Ok(())
    }
}
