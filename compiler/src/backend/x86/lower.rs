//! A specialised step as a straight-line program over vectors of lanes: the element
//! body that [`emit`](super::emit) turns into AVX-512 code, with the decisions of the
//! Cranelift generator made the same way (the shared [`Rewrites`], masks kept as masks,
//! `exp`, `exprel` and `sigmoid` inline in f32), so that both compute the same values.
//! Values unused by any store are dropped here; registers are given in `emit`.

use std::collections::HashMap;

use crate::backend::rewrite::{EXP_COEF, EXP_LN2, EXP_RANGE, Rewrites, exprel_coef};
use crate::backend::specialise::Specialised;
use crate::ir::{NodeId, Op};

/// An operand: a value of the program, or a constant (its bits in the kernel's float
/// width, or a 32-bit integer for the exponent bias), read from memory by broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Opd {
    V(u32),
    K(u64),
}

/// Float operations with two operands. `Min` / `Max` are x86's: `a < b ? a : b` and
/// `a > b ? a : b` (the second operand when either is NaN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    /// Bitwise, on the float's bits (sign flips and clears).
    Xor,
    And,
}

/// Comparison predicates (x86's `vcmpps` immediates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Cc {
    Eq = 0x00,
    Lt = 0x01,
    Le = 0x02,
    Unordered = 0x03,
    /// Unordered or not equal: NaN != x is true, as in Rust.
    Ne = 0x04,
    Ge = 0x0d,
    Gt = 0x0e,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Inst {
    /// A float from slice `slot` (states, inputs, per-neuron params, in the pointer
    /// array's order).
    Load(usize),
    /// The step's time, the same in every lane.
    Time,
    /// A constant in every lane (bits as in [`Opd::K`]).
    Splat(u64),
    Bin(Bin, Opd, Opd),
    Sqrt(u32),
    /// Round to the nearest integer, ties to even.
    Nearest(u32),
    /// `2^n` for an integral float `n` in the exponent's range (`exp`'s scale).
    Pow2(u32),
    /// A mask.
    Cmp(Cc, Opd, Opd),
    MaskAnd(u32, u32),
    MaskOr(u32, u32),
    MaskNot(u32),
    /// `mask ? x : y`.
    Select(u32, Opd, Opd),
    /// 1 where the mask is set, else 0.
    FromMask(u32),
    /// Stores a float into slice `slot`.
    Store(usize, u32),
    /// ORs the bits of `x - x` into the non-finite accumulator.
    NonFinite(u32),
    /// Stores mask `m` as the vector's bits in the spike bits (the last slice).
    Bits(u32),
    /// Stores a value to a stack slot (`spill::fit`).
    Spill(usize, u32),
    /// A value from a stack slot.
    Reload(usize),
}

impl Inst {
    /// Whether the result is a mask (else a float, or nothing for stores).
    pub fn is_mask(&self) -> bool {
        matches!(self, Inst::Cmp(..) | Inst::MaskAnd(..) | Inst::MaskOr(..) | Inst::MaskNot(..))
    }

    pub fn has_result(&self) -> bool {
        !matches!(self, Inst::Store(..) | Inst::NonFinite(..) | Inst::Bits(..) | Inst::Spill(..))
    }

    /// The values it reads.
    pub fn reads(&self) -> Vec<u32> {
        let v = |o: &Opd| match o {
            Opd::V(x) => Some(*x),
            Opd::K(_) => None,
        };
        match self {
            Inst::Load(_) | Inst::Time | Inst::Splat(_) | Inst::Reload(_) => vec![],
            Inst::Bin(_, a, b) | Inst::Cmp(_, a, b) => [v(a), v(b)].into_iter().flatten().collect(),
            Inst::Select(m, a, b) => std::iter::once(*m).chain([v(a), v(b)].into_iter().flatten()).collect(),
            Inst::Sqrt(x) | Inst::Nearest(x) | Inst::Pow2(x) | Inst::MaskNot(x) | Inst::FromMask(x) | Inst::Store(_, x) | Inst::NonFinite(x) | Inst::Bits(x) | Inst::Spill(_, x) => vec![*x],
            Inst::MaskAnd(a, b) | Inst::MaskOr(a, b) => vec![*a, *b],
        }
    }

    /// Reads each value `v` it reads as `name[v]` (the program renumbered).
    pub fn rename_reads(&mut self, name: &[u32]) {
        let map = |v: &mut u32| *v = name[*v as usize];
        let mapo = |o: &mut Opd| {
            if let Opd::V(v) = o {
                *v = name[*v as usize];
            }
        };
        match self {
            Inst::Load(_) | Inst::Time | Inst::Splat(_) | Inst::Reload(_) => {}
            Inst::Bin(_, a, b) | Inst::Cmp(_, a, b) => {
                mapo(a);
                mapo(b);
            }
            Inst::Select(m, a, b) => {
                map(m);
                mapo(a);
                mapo(b);
            }
            Inst::Sqrt(x) | Inst::Nearest(x) | Inst::Pow2(x) | Inst::MaskNot(x) | Inst::FromMask(x) | Inst::Store(_, x) | Inst::NonFinite(x) | Inst::Bits(x) | Inst::Spill(_, x) => map(x),
            Inst::MaskAnd(a, b) | Inst::MaskOr(a, b) => {
                map(a);
                map(b);
            }
        }
    }
}

impl Program {
    /// One instruction per line, constants as numbers (`v4 = mul v2, 0.5`).
    pub fn text(&self, f64: bool) -> String {
        let o = |x: &Opd| match *x {
            Opd::V(v) => format!("v{v}"),
            Opd::K(bits) if f64 => format!("{:?}", f64::from_bits(bits)),
            Opd::K(bits) => format!("{:?}", f32::from_bits(bits as u32)),
        };
        let mut out = String::new();
        for (k, i) in self.insts.iter().enumerate() {
            let line = match i {
                Inst::Load(j) => format!("load slice {j}"),
                Inst::Time => "t".into(),
                Inst::Splat(b) => format!("splat {}", o(&Opd::K(*b))),
                Inst::Bin(op, a, b) => format!("{} {}, {}", format!("{op:?}").to_lowercase(), o(a), o(b)),
                Inst::Sqrt(x) => format!("sqrt v{x}"),
                Inst::Nearest(x) => format!("nearest v{x}"),
                Inst::Pow2(x) => format!("pow2 v{x}"),
                Inst::Cmp(cc, a, b) => format!("cmp.{} {}, {}", format!("{cc:?}").to_lowercase(), o(a), o(b)),
                Inst::MaskAnd(a, b) => format!("and m{a}, m{b}"),
                Inst::MaskOr(a, b) => format!("or m{a}, m{b}"),
                Inst::MaskNot(a) => format!("not m{a}"),
                Inst::Select(m, a, b) => format!("select m{m}, {}, {}", o(a), o(b)),
                Inst::FromMask(m) => format!("float m{m}"),
                Inst::Store(j, x) => format!("store slice {j}, v{x}"),
                Inst::NonFinite(x) => format!("nonfinite |= bits v{x}"),
                Inst::Bits(m) => format!("spike bits m{m}"),
                Inst::Spill(s, v) => format!("spill v{v} to slot {s}"),
                Inst::Reload(s) => format!("reload slot {s}"),
            };
            if i.has_result() {
                let kind = if i.is_mask() { "m" } else { "v" };
                out += &format!("{kind}{k} = {line}\n");
            } else {
                out += &format!("{line}\n");
            }
        }
        out
    }
}

/// Why a step is left to the Cranelift generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// The element body: its instructions (value `k` is the result of `insts[k]`).
#[derive(Clone, Debug, Default)]
pub(super) struct Program {
    pub insts: Vec<Inst>,
    /// The spikes are also stored as bits ([`Inst::Bits`]), through one more slice.
    pub bits: bool,
    /// Stack slots of one vector each ([`Inst::Spill`]).
    pub slots: usize,
}

/// A node's lowered value: a float operand, a mask, or both (as in the Cranelift
/// generator, conversions are made once, where first needed).
#[derive(Clone, Copy, Default)]
struct Val {
    f: Option<Opd>,
    m: Option<u32>,
}

struct Lower<'a> {
    p: &'a Specialised,
    rw: Rewrites<'a>,
    states: usize,
    inputs: usize,
    prog: Program,
    vals: Vec<Val>,
    /// Instructions already made (loads, conversions, constant compares), reused.
    made: HashMap<Inst, u32>,
}


/// Lowers a step whose every op has a vector form (no calls, no random draws).
/// `spike`: the slice the spikes are stored into, if any. With `bits` (f32 kernels), a
/// spike that is a mask's float (0 or 1) is also stored as the mask's bits
/// ([`Inst::Bits`]); whether it was is [`Program::bits`].
pub(super) fn lower(p: &Specialised, f32: bool, states: usize, inputs: usize, spike: Option<usize>, bits: bool) -> Result<Program, Unsupported> {
    let mut l = Lower { p, rw: Rewrites { graph: &p.graph, f32 }, states, inputs, prog: Program::default(), vals: vec![Val::default(); p.graph.len()], made: HashMap::new() };
    for (id, _) in p.graph.nodes() {
        let v = l.node(id)?;
        l.vals[id.index()] = v;
    }
    // The new states stored, their sum checked (one `x - x` per element, as the
    // Cranelift kernel), then the spike.
    let mut sum: Option<u32> = None;
    for (k, &id) in p.next.iter().enumerate() {
        let v = l.float(id);
        let v = l.materialised(v);
        l.push(Inst::Store(k, v));
        sum = Some(match sum {
            None => v,
            Some(s) => l.push(Inst::Bin(Bin::Add, Opd::V(s), Opd::V(v))),
        });
    }
    if let Some(s) = sum {
        let d = l.push(Inst::Bin(Bin::Sub, Opd::V(s), Opd::V(s)));
        l.push(Inst::NonFinite(d));
    }
    if let (Some(s), Some(slot)) = (p.spike, spike) {
        let v = l.float(s);
        let v = l.materialised(v);
        l.push(Inst::Store(slot, v));
        if let (true, Some(&Inst::FromMask(m))) = (bits, l.prog.insts.get(v as usize)) {
            l.push(Inst::Bits(m));
            l.prog.bits = true;
        }
    }
    // The inputs to clear, after every load of them.
    if !p.cleared.is_empty() {
        let zero = l.konst(0.0);
        let zero = l.materialised(zero);
        for &k in &p.cleared {
            l.push(Inst::Store(states + k, zero));
        }
    }
    Ok(l.prog)
}

impl Lower<'_> {
    fn push(&mut self, i: Inst) -> u32 {
        let pure = i.has_result();
        if pure && let Some(&v) = self.made.get(&i) {
            return v;
        }
        let v = self.prog.insts.len() as u32;
        if pure {
            self.made.insert(i.clone(), v);
        }
        self.prog.insts.push(i);
        v
    }

    fn konst(&self, c: f64) -> Opd {
        Opd::K(if self.rw.f32 { u64::from((c as f32).to_bits()) } else { c.to_bits() })
    }

    /// A float operand as a value in a register (a constant broadcast).
    fn materialised(&mut self, o: Opd) -> u32 {
        match o {
            Opd::V(v) => v,
            Opd::K(bits) => self.push(Inst::Splat(bits)),
        }
    }

    fn float(&mut self, id: NodeId) -> Opd {
        let v = self.vals[id.index()];
        if let Some(f) = v.f {
            return f;
        }
        let m = v.m.expect("node lowered before its users");
        let f = Opd::V(self.push(Inst::FromMask(m)));
        self.vals[id.index()].f = Some(f);
        f
    }

    /// The "non-zero" mask of a node (NaN counts as non-zero).
    fn mask(&mut self, id: NodeId) -> u32 {
        if let Some(m) = self.vals[id.index()].m {
            return m;
        }
        let f = self.float(id);
        let zero = self.konst(0.0);
        let m = self.push(Inst::Cmp(Cc::Ne, f, zero));
        self.vals[id.index()].m = Some(m);
        m
    }

    fn is_mask(&self, id: NodeId) -> bool {
        matches!(self.vals[id.index()], Val { f: None, m: Some(_) })
    }

    fn bin(&mut self, op: Bin, a: Opd, b: Opd) -> Opd {
        Opd::V(self.push(Inst::Bin(op, a, b)))
    }

    fn fl(v: Opd) -> Val {
        Val { f: Some(v), m: None }
    }

    fn node(&mut self, id: NodeId) -> Result<Val, Unsupported> {
        let p = self.p;
        let node = p.graph.node(id);
        let a = node.args.clone();
        let (ns, ni) = (self.states, self.inputs);
        Ok(match node.op {
            Op::Const(c) => Self::fl(self.konst(c)),
            Op::State(k) => Self::fl(Opd::V(self.push(Inst::Load(k as usize)))),
            Op::Input(k) => Self::fl(Opd::V(self.push(Inst::Load(ns + k as usize)))),
            Op::Param(k) => {
                let j = p.per_neuron.get(k as usize).copied().flatten().ok_or_else(|| internal(node.op))?;
                Self::fl(Opd::V(self.push(Inst::Load(ns + ni + j))))
            }
            Op::Time => Self::fl(Opd::V(self.push(Inst::Time))),
            Op::Add => Self::fl({ let (x, y) = (self.float(a[0]), self.float(a[1])); self.bin(Bin::Add, x, y) }),
            Op::Sub => Self::fl({ let (x, y) = (self.float(a[0]), self.float(a[1])); self.bin(Bin::Sub, x, y) }),
            // The product of two conditions is their `and`, as in the Cranelift kernel.
            Op::Mul if self.is_mask(a[0]) && self.is_mask(a[1]) => {
                let (x, y) = (self.mask(a[0]), self.mask(a[1]));
                Val { f: None, m: Some(self.push(Inst::MaskAnd(x, y))) }
            }
            Op::Mul | Op::Div if self.rw.folded_scale(id).is_some() => {
                let (x, k) = self.rw.folded_scale(id).expect("checked");
                let (x, k) = (self.float(x), self.konst(k));
                Self::fl(self.bin(Bin::Mul, x, k))
            }
            Op::Mul => Self::fl({ let (x, y) = (self.float(a[0]), self.float(a[1])); self.bin(Bin::Mul, x, y) }),
            Op::Div => match self.rw.reciprocal(a[1]) {
                Some(r) => Self::fl({ let (x, r) = (self.float(a[0]), self.konst(r)); self.bin(Bin::Mul, x, r) }),
                None => Self::fl({ let (x, y) = (self.float(a[0]), self.float(a[1])); self.bin(Bin::Div, x, y) }),
            },
            Op::Neg => Self::fl({ let x = self.float(a[0]); let s = self.konst(-0.0); self.bin(Bin::Xor, x, s) }),
            Op::Abs => {
                let x = self.float(a[0]);
                let m = Opd::K(if self.rw.f32 { 0x7fff_ffff } else { 0x7fff_ffff_ffff_ffff });
                Self::fl(self.bin(Bin::And, x, m))
            }
            Op::Sqrt => {
                let x = self.float(a[0]);
                let x = self.materialised(x);
                Self::fl(Opd::V(self.push(Inst::Sqrt(x))))
            }
            Op::StopGradient => self.vals[a[0].index()],
            Op::PowI(e) => Self::fl({ let x = self.float(a[0]); self.powi(x, e) }),
            // Rust's f64::min/max: a NaN operand yields the other one. `x < y ? x : y`
            // is x86's min of (x, y), `y < x ? x : y` its max; then the NaN fix-up,
            // unless y is a constant that is not NaN.
            Op::Min | Op::Max => {
                let (x, y) = (self.float(a[0]), self.float(a[1]));
                let r = self.bin(if node.op == Op::Min { Bin::Min } else { Bin::Max }, x, y);
                Self::fl(if matches!(p.graph.node(a[1]).op, Op::Const(c) if !c.is_nan()) {
                    r
                } else {
                    let y_nan = self.push(Inst::Cmp(Cc::Unordered, y, y));
                    Opd::V(self.push(Inst::Select(y_nan, x, r)))
                })
            }
            Op::Select => {
                let c = self.mask(a[0]);
                let (x, y) = (self.float(a[1]), self.float(a[2]));
                Self::fl(Opd::V(self.push(Inst::Select(c, x, y))))
            }
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => {
                let cc = match node.op {
                    Op::Lt => Cc::Lt,
                    Op::Le => Cc::Le,
                    Op::Gt => Cc::Gt,
                    Op::Ge => Cc::Ge,
                    Op::Eq => Cc::Eq,
                    _ => Cc::Ne,
                };
                let (x, y) = (self.float(a[0]), self.float(a[1]));
                Val { f: None, m: Some(self.push(Inst::Cmp(cc, x, y))) }
            }
            Op::Heaviside(_) => {
                let (x, c) = match self.rw.threshold(a[0]) {
                    Some((x, c)) => (self.float(x), self.konst(c)),
                    None => (self.float(a[0]), self.konst(0.0)),
                };
                Val { f: None, m: Some(self.push(Inst::Cmp(Cc::Ge, x, c))) }
            }
            Op::And | Op::Or => {
                let (x, y) = (self.mask(a[0]), self.mask(a[1]));
                Val { f: None, m: Some(self.push(if node.op == Op::And { Inst::MaskAnd(x, y) } else { Inst::MaskOr(x, y) })) }
            }
            Op::Not => {
                let x = self.mask(a[0]);
                Val { f: None, m: Some(self.push(Inst::MaskNot(x))) }
            }
            Op::Exp if self.rw.f32 => Self::fl({ let x = self.float(a[0]); self.exp(x) }),
            Op::Exprel if self.rw.f32 => Self::fl({ let x = self.float(a[0]); self.exprel(x) }),
            Op::Sigmoid if self.rw.f32 => {
                // 1 / (1 + exp(-x)), as the interpreter.
                let x = self.float(a[0]);
                let s = self.konst(-0.0);
                let nx = self.bin(Bin::Xor, x, s);
                let e = self.exp(nx);
                let one = self.konst(1.0);
                let d = self.bin(Bin::Add, one, e);
                Self::fl(self.bin(Bin::Div, one, d))
            }
            op => {
                return Err(Unsupported(format!("`{}` needs a call per element", op.name())));
            }
        })
    }

    /// `exp(x)` in f32, operation for operation as the Cranelift kernel's `exp_f32`.
    fn exp(&mut self, x: Opd) -> Opd {
        // Cranelift's fmax / fmin propagate a NaN x: x86's max(lo, x) and min(hi, x)
        // return their second operand when either is NaN.
        let (lo, hi) = (self.konst(EXP_RANGE.0), self.konst(EXP_RANGE.1));
        let x = self.bin(Bin::Max, lo, x);
        let x = self.bin(Bin::Min, hi, x);
        let log2e = self.konst(std::f64::consts::LOG2_E);
        let xl = self.bin(Bin::Mul, x, log2e);
        let xl = self.materialised(xl);
        let n = Opd::V(self.push(Inst::Nearest(xl)));
        let (c1, c2) = (self.konst(EXP_LN2.0), self.konst(EXP_LN2.1));
        let t = self.bin(Bin::Mul, n, c1);
        let r = self.bin(Bin::Sub, x, t);
        let t = self.bin(Bin::Mul, n, c2);
        let r = self.bin(Bin::Sub, r, t);
        let mut p = self.konst(EXP_COEF[0]);
        for &k in &EXP_COEF[1..] {
            let m = self.bin(Bin::Mul, p, r);
            let k = self.konst(k);
            p = self.bin(Bin::Add, m, k);
        }
        let r2 = self.bin(Bin::Mul, r, r);
        let p = self.bin(Bin::Mul, p, r2);
        let p = self.bin(Bin::Add, p, r);
        let one = self.konst(1.0);
        let p = self.bin(Bin::Add, p, one);
        let Opd::V(n) = n else { unreachable!("pushed") };
        let scale = Opd::V(self.push(Inst::Pow2(n)));
        self.bin(Bin::Mul, p, scale)
    }

    /// `exprel(x)` in f32, as the Cranelift kernel's `exprel_f32`.
    fn exprel(&mut self, x: Opd) -> Opd {
        let inv = exprel_coef();
        let mut s = self.konst(inv[8]);
        for &k in inv[..8].iter().rev() {
            let m = self.bin(Bin::Mul, s, x);
            let k = self.konst(k);
            s = self.bin(Bin::Add, m, k);
        }
        let e = self.exp(x);
        let one = self.konst(1.0);
        let em1 = self.bin(Bin::Sub, e, one);
        let big = self.bin(Bin::Div, em1, x);
        let m = Opd::K(0x7fff_ffff);
        let ax = self.bin(Bin::And, x, m);
        let half = self.konst(0.5);
        let small = self.push(Inst::Cmp(Cc::Lt, ax, half));
        Opd::V(self.push(Inst::Select(small, s, big)))
    }

    /// `x^e` in the interpreter's order of multiplications.
    fn powi(&mut self, x: Opd, e: i32) -> Opd {
        let mut m = e.unsigned_abs();
        if m == 0 {
            return self.konst(1.0);
        }
        let (mut base, mut acc): (Opd, Option<Opd>) = (x, None);
        while m > 0 {
            if m & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => self.bin(Bin::Mul, a, base),
                });
            }
            m >>= 1;
            if m > 0 {
                base = self.bin(Bin::Mul, base, base);
            }
        }
        let r = acc.expect("m > 0 has a set bit");
        if e < 0 {
            let one = self.konst(1.0);
            self.bin(Bin::Div, one, r)
        } else {
            r
        }
    }
}

fn internal(op: Op) -> Unsupported {
    Unsupported(format!("internal: `{}` left in a prepared step", op.name()))
}

/// Drops the instructions no store depends on (a threshold's unused difference, a
/// float of a mask nobody reads); returns the last reader of each value.
/// With `bits` false, the spike bits' stores go too ([`Program::bits`] is then false).
pub(super) fn live(prog: &mut Program, bits: bool) -> Vec<usize> {
    let n = prog.insts.len();
    let mut needed = vec![false; n];
    for k in (0..n).rev() {
        let i = &prog.insts[k];
        let kept = match i {
            Inst::Bits(_) => bits,
            _ => !i.has_result(),
        };
        if kept || needed[k] {
            needed[k] = true;
            for r in i.reads() {
                needed[r as usize] = true;
            }
        }
    }
    // Renumber the kept instructions.
    let mut new_id = vec![u32::MAX; n];
    let mut kept = Vec::new();
    for (k, i) in prog.insts.drain(..).enumerate() {
        if needed[k] {
            new_id[k] = kept.len() as u32;
            kept.push(i);
        }
    }
    for i in &mut kept {
        i.rename_reads(&new_id);
    }
    prog.insts = kept;
    prog.bits &= bits;
    last_readers(prog)
}

/// The last instruction that reads each value (0 for none).
pub(super) fn last_readers(prog: &Program) -> Vec<usize> {
    let mut last = vec![0; prog.insts.len()];
    for (k, i) in prog.insts.iter().enumerate() {
        for r in i.reads() {
            last[r as usize] = k;
        }
    }
    last
}
