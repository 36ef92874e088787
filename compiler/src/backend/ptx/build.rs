//! An instruction builder with helpers, and the math routines built from it.
//!
//! Accuracy (measured by the unit tests below, which run these very instructions in the
//! emulator against Rust's libm):
//! - f64 kernels use software routines, branch-free: `exp` and `expm1` by Cody–Waite
//!   reduction (ln 2 in two parts, fma) and a degree-14 Taylor polynomial, scaled by 2^n
//!   through the exponent bits (in two factors, so subnormal results and overflow come
//!   out right); `log` by fdlibm's reduction (m in [sqrt(1/2), sqrt(2)), s = f/(2+f),
//!   log(1+f) = f - (hfsq - s (hfsq + R(s^2)))) with an 11-term series for R; `sin`/`cos`
//!   by Cody–Waite reduction by pi/2 in three parts and degree-19/20 Taylor polynomials.
//!   Measured worst errors: exp 1 ulp, log 1, sin/cos 1 (|x| <= 1e4; there is no
//!   Payne–Hanek step, so accuracy degrades beyond ~2^20), expm1 2, exprel 2, sigmoid 2,
//!   tanh 3. `pow(a, b) = exp(b log|a|)` with sign and special cases: the rounding of
//!   b log a is amplified by exp: up to ~1.3 (2 + |b ln a|) ulp.
//! - f32 kernels use the hardware approximations: `exp(x) = ex2.approx(hi) * (1 + lo ln 2)`
//!   with x log2(e) = hi + lo split exactly by an fma (so the error does not grow with
//!   |x|: ~2 ulp of ex2.approx plus rounding); `log(x) = lg2.approx(x) * ln 2` (absolute
//!   error ~2^-22, so relative accuracy is poor near x = 1); `sin`/`cos` = `sin.approx`
//!   after reduction to [-pi, pi] (absolute error ~2^-20.9); `pow` = ex2(b lg2|a|).
//!   `expm1`, `exprel` and `tanh` use Taylor polynomials for small |x| (no cancellation).
//!   With exact hardware approximations the algorithms measure <= 2 f32 ulp; on a GPU the
//!   approximation error (PTX ISA: ~2 ulp for ex2, 2^-22 absolute for lg2, 2^-20.9 for
//!   sin/cos) comes on top.
//! - Random draws are computed in f64 in every kernel (Philox is exact; Box–Muller with
//!   the f64 routines above), then rounded to the kernel's precision.

use super::asm::{Arg, Bin, Cmp, Inst, Reg, Rnd, Scalar, Test, Ty, Un};

pub(crate) struct Builder {
    pub body: Vec<Inst>,
    pub counts: [u32; 5],
}

const LOG2E: f64 = std::f64::consts::LOG2_E;
const LN2: f64 = std::f64::consts::LN_2;
/// fdlibm's split of ln 2: `LN2_HI` has 32 trailing zero bits, so n * LN2_HI is exact.
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
/// ln 2 split into f64 parts for Cody–Waite with fma (checked against a 150-digit value).
const LN2_A: f64 = std::f64::consts::LN_2;
const LN2_B: f64 = 2.319_046_813_846_299_6e-17;
const PIO2_A: f64 = std::f64::consts::FRAC_PI_2;
const PIO2_B: f64 = 6.123_233_995_736_766e-17;
const PIO2_C: f64 = -1.497_384_904_859_169_8e-33;
const TAU_A: f64 = std::f64::consts::TAU;
const TAU_B: f64 = 2.449_293_598_294_706_4e-16;

fn fact(k: u32) -> f64 {
    (1..=k).map(f64::from).product()
}

impl Builder {
    pub fn new() -> Builder {
        Builder { body: Vec::new(), counts: [0; 5] }
    }

    pub fn reg(&mut self, ty: Ty) -> Reg {
        let class = ty.class();
        let ix = super::asm::CLASSES.iter().position(|&c| c == class).expect("class");
        let n = self.counts[ix];
        self.counts[ix] += 1;
        Reg { class, n }
    }

    pub fn push(&mut self, i: Inst) {
        self.body.push(i);
    }

    pub fn comment(&mut self, c: String) {
        self.body.push(Inst::Comment(c));
    }

    pub fn ld(&mut self, ty: Ty, buf: usize, read_only: bool) -> Reg {
        let d = self.reg(ty);
        self.push(Inst::Ld { ty, d, buf, read_only });
        d
    }

    pub fn param(&mut self, which: Scalar) -> Reg {
        let d = self.reg(which.ty());
        self.push(Inst::Param { d, which });
        d
    }

    pub fn index(&mut self) -> Reg {
        let d = self.reg(Ty::U64);
        self.push(Inst::Index { d });
        d
    }

    pub fn mov(&mut self, ty: Ty, a: impl Into<Arg>) -> Reg {
        let d = self.reg(ty);
        self.push(Inst::Mov { ty, d, a: a.into() });
        d
    }

    pub fn un(&mut self, op: Un, ty: Ty, a: Reg) -> Reg {
        let d = self.reg(ty);
        self.push(Inst::Un { op, ty, d, a });
        d
    }

    pub fn bin(&mut self, op: Bin, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>) -> Reg {
        let d = self.reg(ty);
        self.push(Inst::Bin { op, ty, d, a: a.into(), b: b.into() });
        d
    }

    pub fn add(&mut self, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>) -> Reg {
        self.bin(Bin::Add, ty, a, b)
    }
    pub fn sub(&mut self, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>) -> Reg {
        self.bin(Bin::Sub, ty, a, b)
    }
    pub fn mul(&mut self, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>) -> Reg {
        self.bin(Bin::Mul, ty, a, b)
    }
    pub fn div(&mut self, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>) -> Reg {
        self.bin(Bin::Div, ty, a, b)
    }

    pub fn fma(&mut self, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>, c: impl Into<Arg>) -> Reg {
        let d = self.reg(ty);
        self.push(Inst::Fma { ty, d, a: a.into(), b: b.into(), c: c.into() });
        d
    }

    pub fn setp(&mut self, cmp: Cmp, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>) -> Reg {
        let d = self.reg(Ty::Pred);
        self.push(Inst::Setp { cmp, ty, d, a: a.into(), b: b.into() });
        d
    }

    pub fn testp(&mut self, test: Test, ty: Ty, a: Reg) -> Reg {
        let d = self.reg(Ty::Pred);
        self.push(Inst::Testp { test, ty, d, a });
        d
    }

    /// `p ? a : b`.
    pub fn selp(&mut self, ty: Ty, a: impl Into<Arg>, b: impl Into<Arg>, p: Reg) -> Reg {
        let d = self.reg(ty);
        self.push(Inst::Selp { ty, d, a: a.into(), b: b.into(), p });
        d
    }

    pub fn cvt(&mut self, rnd: Option<Rnd>, dty: Ty, sty: Ty, a: Reg) -> Reg {
        let d = self.reg(dty);
        self.push(Inst::Cvt { rnd, dty, sty, d, a });
        d
    }

    pub fn bits(&mut self, ty: Ty, a: Reg) -> Reg {
        let d = self.reg(ty);
        self.push(Inst::Bits { ty, d, a });
        d
    }

    /// Horner: c[0] + x (c[1] + x (c[2] + ...)) with fma.
    fn horner(&mut self, ty: Ty, x: Reg, c: &[f64]) -> Reg {
        let n = c.len();
        let mut acc = self.fma(ty, x, Arg::F(c[n - 1]), Arg::F(c[n - 2]));
        for k in (0..n - 2).rev() {
            acc = self.fma(ty, acc, x, Arg::F(c[k]));
        }
        acc
    }

    /// `result`, or `x` where x is NaN (propagation past clamps and bit tricks).
    fn keep_nan(&mut self, ty: Ty, x: Reg, result: Reg) -> Reg {
        let nan = self.testp(Test::NotANumber, ty, x);
        self.selp(ty, x, result, nan)
    }

    /// 2^m as f64 for an integer m in [-1022, 1023] held in an s32 register.
    fn pow2_f64(&mut self, m: Reg) -> Reg {
        let w = self.cvt(None, Ty::S64, Ty::S32, m);
        let b = self.add(Ty::S64, w, Arg::I(1023));
        let b = self.bin(Bin::Shl, Ty::B64, b, Arg::I(52));
        self.bits(Ty::F64, b)
    }

    /// Cody–Waite: x = n ln 2 + r with |r| <= ln2/2 (n as an f64 integer).
    fn reduce_ln2(&mut self, x: Reg) -> (Reg, Reg) {
        let t = self.mul(Ty::F64, x, Arg::F(LOG2E));
        let n = self.un(Un::Rni, Ty::F64, t);
        let nn = self.un(Un::Neg, Ty::F64, n);
        let r = self.fma(Ty::F64, nn, Arg::F(LN2_A), x);
        let r = self.fma(Ty::F64, nn, Arg::F(LN2_B), r);
        (n, r)
    }

    /// expm1(r) for |r| <= 0.35: r (1 + r/2 + ... + r^13/14!), error ~2^-60 relative.
    fn expm1_poly_f64(&mut self, r: Reg) -> Reg {
        let c: Vec<f64> = (1..=14).map(|k| 1.0 / fact(k)).collect();
        let p = self.horner(Ty::F64, r, &c);
        self.mul(Ty::F64, p, r)
    }

    pub fn exp(&mut self, ty: Ty, x: Reg) -> Reg {
        if ty == Ty::F32 {
            return self.exp_f32(x);
        }
        // Beyond [-746, 710] the result is 0 or inf anyway; the clamp keeps n in range.
        let xc = self.bin(Bin::Max, Ty::F64, x, Arg::F(-746.0));
        let xc = self.bin(Bin::Min, Ty::F64, xc, Arg::F(710.0));
        let (n, r) = self.reduce_ln2(xc);
        let q = self.expm1_poly_f64(r);
        let p = self.add(Ty::F64, q, Arg::F(1.0));
        // 2^n in two factors: each stays a normal number for n in [-1076, 1024].
        let ni = self.cvt(Some(Rnd::Rzi), Ty::S32, Ty::F64, n);
        let h = self.bin(Bin::Shr, Ty::S32, ni, Arg::I(1));
        let rest = self.sub(Ty::S32, ni, h);
        let s1 = self.pow2_f64(h);
        let s2 = self.pow2_f64(rest);
        let y = self.mul(Ty::F64, p, s1);
        let y = self.mul(Ty::F64, y, s2);
        self.keep_nan(Ty::F64, x, y)
    }

    fn exp_f32(&mut self, x: Reg) -> Reg {
        let f = Ty::F32;
        let l2e_hi = LOG2E as f32;
        let l2e_lo = (LOG2E - f64::from(l2e_hi)) as f32;
        // x log2(e) = hi + lo exactly (up to lo's own rounding): 2^x = 2^hi (1 + lo ln 2).
        let hi = self.mul(f, x, Arg::F(f64::from(l2e_hi)));
        let nhi = self.un(Un::Neg, f, hi);
        let lo = self.fma(f, x, Arg::F(f64::from(l2e_hi)), nhi);
        let lo = self.fma(f, x, Arg::F(f64::from(l2e_lo)), lo);
        let e = self.un(Un::Ex2, f, hi);
        let c = self.mul(f, lo, Arg::F(LN2));
        let y = self.fma(f, e, c, e);
        // x = +-inf (or |x| so large that hi is): lo is NaN there, ex2(hi) is right.
        let fin = self.testp(Test::Finite, f, hi);
        self.selp(f, y, e, fin)
    }

    /// expm1 in f64: for x in [-40, 709.8] as s (1 + q) - 1 = fma(s, q, s - 1), s = 2^n
    /// (exact: no cancellation); below -40 the result is -1 to the last bit.
    fn expm1_f64(&mut self, x: Reg) -> Reg {
        let f = Ty::F64;
        let xc = self.bin(Bin::Max, f, x, Arg::F(-40.0));
        let xc = self.bin(Bin::Min, f, xc, Arg::F(710.0));
        let (n, r) = self.reduce_ln2(xc);
        let q = self.expm1_poly_f64(r);
        // n up to 1024: split 2^n = 2^(n-k) 2^k with k = max(n - 1000, 0); the -1 only
        // matters when k = 0.
        let ni = self.cvt(Some(Rnd::Rzi), Ty::S32, f, n);
        let k = self.sub(Ty::S32, ni, Arg::I(1000));
        let k = self.bin(Bin::Max, Ty::S32, k, Arg::I(0));
        let m = self.sub(Ty::S32, ni, k);
        let s1 = self.pow2_f64(m);
        let s2 = self.pow2_f64(k);
        let k0 = self.setp(Cmp::Eq, Ty::S32, k, Arg::I(0));
        let one = self.selp(f, Arg::F(1.0), Arg::F(0.0), k0);
        let sm1 = self.sub(f, s1, one);
        let y = self.fma(f, s1, q, sm1);
        let y = self.mul(f, y, s2);
        self.keep_nan(f, x, y)
    }

    fn expm1_f32(&mut self, x: Reg) -> Reg {
        let f = Ty::F32;
        // |x| < 0.5: x (1 + x/2 + ... + x^7/8!), truncation < 2^-27 relative.
        let c: Vec<f64> = (1..=8).map(|k| 1.0 / fact(k)).collect();
        let p = self.horner(f, x, &c);
        let small = self.mul(f, p, x);
        let e = self.exp_f32(x);
        let big = self.sub(f, e, Arg::F(1.0));
        let ax = self.un(Un::Abs, f, x);
        let is_small = self.setp(Cmp::Lt, f, ax, Arg::F(0.5));
        self.selp(f, small, big, is_small)
    }

    pub fn expm1(&mut self, ty: Ty, x: Reg) -> Reg {
        if ty == Ty::F32 { self.expm1_f32(x) } else { self.expm1_f64(x) }
    }

    /// `(exp(x) - 1) / x` with the interpreter's branch: 1 + x/2 for |x| < 1e-8 (f64). In
    /// f32 a direct polynomial serves |x| < 0.5 (no division, no cancellation).
    pub fn exprel(&mut self, ty: Ty, x: Reg) -> Reg {
        let ax = self.un(Un::Abs, ty, x);
        if ty == Ty::F32 {
            let c: Vec<f64> = (0..=8).map(|k| 1.0 / fact(k + 1)).collect();
            let small = self.horner(ty, x, &c);
            let e = self.exp_f32(x);
            let em = self.sub(ty, e, Arg::F(1.0));
            let big = self.div(ty, em, x);
            let is_small = self.setp(Cmp::Lt, ty, ax, Arg::F(0.5));
            return self.selp(ty, small, big, is_small);
        }
        let half = self.mul(ty, x, Arg::F(0.5));
        let small = self.add(ty, half, Arg::F(1.0));
        let em = self.expm1_f64(x);
        let big = self.div(ty, em, x);
        let is_small = self.setp(Cmp::Lt, ty, ax, Arg::F(1e-8));
        self.selp(ty, small, big, is_small)
    }

    /// `1 / (1 + exp(-x))`, as the interpreter writes it.
    pub fn sigmoid(&mut self, ty: Ty, x: Reg) -> Reg {
        let nx = self.un(Un::Neg, ty, x);
        let e = self.exp(ty, nx);
        let d = self.add(ty, e, Arg::F(1.0));
        self.div(ty, Arg::F(1.0), d)
    }

    /// tanh(x) = sign(x) em / (em + 2), em = expm1(2|x|), |x| clamped to 20 (tanh = 1
    /// to the last bit beyond).
    pub fn tanh(&mut self, ty: Ty, x: Reg) -> Reg {
        let ax = self.un(Un::Abs, ty, x);
        let ac = self.bin(Bin::Min, ty, ax, Arg::F(20.0));
        let two = self.add(ty, ac, ac);
        let em = self.expm1(ty, two);
        let den = self.add(ty, em, Arg::F(2.0));
        let t = self.div(ty, em, den);
        let t = self.bin(Bin::CopySign, ty, x, t);
        self.keep_nan(ty, x, t)
    }

    pub fn log(&mut self, ty: Ty, x: Reg) -> Reg {
        if ty == Ty::F32 {
            let l = self.un(Un::Lg2, ty, x);
            return self.mul(ty, l, Arg::F(LN2));
        }
        let f = Ty::F64;
        // Subnormals: scale by 2^54 first.
        let tiny = self.setp(Cmp::Lt, f, x, Arg::F(f64::MIN_POSITIVE));
        let xs = self.mul(f, x, Arg::F(18014398509481984.0));
        let xs = self.selp(f, xs, x, tiny);
        let bits = self.bits(Ty::B64, xs);
        let e = self.bin(Bin::Shr, Ty::U64, bits, Arg::I(52));
        let e = self.cvt(None, Ty::S32, Ty::U64, e);
        let bias = self.selp(Ty::S32, Arg::I(1023 + 54), Arg::I(1023), tiny);
        let e = self.sub(Ty::S32, e, bias);
        let mb = self.bin(Bin::And, Ty::B64, bits, Arg::I(0x000F_FFFF_FFFF_FFFF));
        let mb = self.bin(Bin::Or, Ty::B64, mb, Arg::I(0x3FF0_0000_0000_0000));
        let m = self.bits(f, mb);
        // m in [sqrt(1/2), sqrt(2)).
        let big = self.setp(Cmp::Ge, f, m, Arg::F(std::f64::consts::SQRT_2));
        let mh = self.mul(f, m, Arg::F(0.5));
        let m = self.selp(f, mh, m, big);
        let e1 = self.add(Ty::S32, e, Arg::I(1));
        let e = self.selp(Ty::S32, e1, e, big);
        let k = self.cvt(Some(Rnd::Rn), f, Ty::S32, e);
        let fr = self.sub(f, m, Arg::F(1.0)); // exact (Sterbenz)
        let den = self.add(f, fr, Arg::F(2.0));
        let s = self.div(f, fr, den);
        let z = self.mul(f, s, s);
        // R = 2 z/3 + 2 z^2/5 + ... : log(1+f) = 2s + s R.
        let c: Vec<f64> = (0..=11).map(|j| if j == 0 { 0.0 } else { 2.0 / f64::from(2 * j + 1) }).collect();
        let r = self.horner(f, z, &c[1..]);
        let r = self.mul(f, r, z);
        let hf = self.mul(f, fr, fr);
        let hfsq = self.mul(f, hf, Arg::F(0.5));
        // fdlibm: log = k ln2_hi - ((hfsq - (s (hfsq + R) + k ln2_lo)) - f).
        let t = self.add(f, hfsq, r);
        let t = self.mul(f, s, t);
        let t = self.fma(f, k, Arg::F(LN2_LO), t);
        let t = self.sub(f, hfsq, t);
        let t = self.sub(f, t, fr);
        let y = self.fma(f, k, Arg::F(LN2_HI), Arg::F(0.0));
        let y = self.sub(f, y, t);
        // Special values: log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays.
        let zero = self.setp(Cmp::Eq, f, x, Arg::F(0.0));
        let y = self.selp(f, Arg::F(f64::NEG_INFINITY), y, zero);
        let neg = self.setp(Cmp::Lt, f, x, Arg::F(0.0));
        let y = self.selp(f, Arg::F(f64::NAN), y, neg);
        let same = self.setp(Cmp::Equ, f, x, Arg::F(f64::INFINITY));
        self.selp(f, x, y, same)
    }

    pub fn sqrt(&mut self, ty: Ty, x: Reg) -> Reg {
        self.un(Un::Sqrt, ty, x)
    }

    /// sin (cos = false) or cos of x.
    pub fn sincos(&mut self, ty: Ty, x: Reg, cos: bool) -> Reg {
        if ty == Ty::F32 {
            // Reduce to [-pi, pi] (two-part 2 pi), where sin.approx is most accurate.
            let a = TAU_A as f32;
            let b = ((TAU_A - f64::from(a)) + TAU_B) as f32;
            let q = self.mul(ty, x, Arg::F(1.0 / TAU_A));
            let q = self.un(Un::Rni, ty, q);
            let nq = self.un(Un::Neg, ty, q);
            let r = self.fma(ty, nq, Arg::F(f64::from(a)), x);
            let r = self.fma(ty, nq, Arg::F(f64::from(b)), r);
            return self.un(if cos { Un::Cos } else { Un::Sin }, ty, r);
        }
        let f = Ty::F64;
        let q = self.mul(f, x, Arg::F(std::f64::consts::FRAC_2_PI));
        let q = self.un(Un::Rni, f, q);
        let nq = self.un(Un::Neg, f, q);
        let r = self.fma(f, nq, Arg::F(PIO2_A), x);
        let r = self.fma(f, nq, Arg::F(PIO2_B), r);
        let r = self.fma(f, nq, Arg::F(PIO2_C), r);
        let r2 = self.mul(f, r, r);
        // sin r = r + r^3 P(r^2), cos r = 1 + r^2 Q(r^2), |r| <= pi/4.
        let ps: Vec<f64> = (1..=9).map(|k| if k % 2 == 1 { -1.0 } else { 1.0 } / fact(2 * k + 1)).collect();
        let qs: Vec<f64> = (1..=10).map(|k| if k % 2 == 1 { -1.0 } else { 1.0 } / fact(2 * k)).collect();
        let p = self.horner(f, r2, &ps);
        let r3 = self.mul(f, r2, r);
        let s = self.fma(f, r3, p, r);
        let qq = self.horner(f, r2, &qs);
        let c = self.fma(f, r2, qq, Arg::F(1.0));
        // Quadrant: sin x = (s, c, -s, -c)[q & 3], cos x = (c, -s, -c, s)[q & 3].
        let qi = self.cvt(Some(Rnd::Rzi), Ty::S64, f, q);
        let qi = self.cvt(None, Ty::U32, Ty::U64, qi);
        let qi = if cos { self.add(Ty::U32, qi, Arg::I(1)) } else { qi };
        let odd = self.bin(Bin::And, Ty::B32, qi, Arg::I(1));
        let swap = self.setp(Cmp::Ne, Ty::U32, odd, Arg::I(0));
        let v = self.selp(f, c, s, swap);
        let hi = self.bin(Bin::And, Ty::B32, qi, Arg::I(2));
        let flip = self.setp(Cmp::Ne, Ty::U32, hi, Arg::I(0));
        let nv = self.un(Un::Neg, f, v);
        let v = self.selp(f, nv, v, flip);
        // sin/cos of +-inf and NaN are NaN.
        let fin = self.testp(Test::Finite, f, x);
        let nan = self.sub(f, x, x);
        self.selp(f, v, nan, fin)
    }

    /// `powf(a, b)`: exp(b log|a|), negative bases with integer exponents signed,
    /// otherwise NaN; pow(a, 0) = pow(1, b) = 1. Signed-zero bases give +0 / +inf.
    pub fn pow(&mut self, ty: Ty, a: Reg, b: Reg) -> Reg {
        let aa = self.un(Un::Abs, ty, a);
        let y = if ty == Ty::F32 {
            let l = self.un(Un::Lg2, ty, aa);
            let t = self.mul(ty, b, l);
            self.un(Un::Ex2, ty, t)
        } else {
            let l = self.log(ty, aa);
            let t = self.mul(ty, b, l);
            self.exp(ty, t)
        };
        let rb = self.un(Un::Rni, ty, b);
        let bint = self.setp(Cmp::Eq, ty, rb, b);
        let hb = self.mul(ty, b, Arg::F(0.5));
        let rhb = self.un(Un::Rni, ty, hb);
        let even = self.setp(Cmp::Eq, ty, rhb, hb);
        let neg = self.setp(Cmp::Lt, ty, a, Arg::F(0.0));
        let ny = self.un(Un::Neg, ty, y);
        // Odd integer b: bint and not even.
        let ne = self.reg(Ty::Pred);
        self.push(Inst::Un { op: Un::Not, ty: Ty::Pred, d: ne, a: even });
        let odd = self.bin(Bin::And, Ty::Pred, bint, ne);
        let flip = self.bin(Bin::And, Ty::Pred, neg, odd);
        let y = self.selp(ty, ny, y, flip);
        let nb = self.reg(Ty::Pred);
        self.push(Inst::Un { op: Un::Not, ty: Ty::Pred, d: nb, a: bint });
        let bad = self.bin(Bin::And, Ty::Pred, neg, nb);
        let y = self.selp(ty, Arg::F(f64::NAN), y, bad);
        let b0 = self.setp(Cmp::Eq, ty, b, Arg::F(0.0));
        let a1 = self.setp(Cmp::Eq, ty, a, Arg::F(1.0));
        let one = self.bin(Bin::Or, Ty::Pred, b0, a1);
        self.selp(ty, Arg::F(1.0), y, one)
    }

    /// Philox4x32-10 of `ctr` under `key` (see `rng::philox4x32`), in u32 registers.
    pub fn philox(&mut self, ctr: [Reg; 4], key: [Reg; 2]) -> [Reg; 4] {
        const M0: u64 = 0xD251_1F53;
        const M1: u64 = 0xCD9E_8D57;
        let u = Ty::U32;
        let (mut c, [mut k0, mut k1]) = (ctr, key);
        for round in 0..10 {
            let hi0 = self.bin(Bin::MulHi, u, c[0], Arg::I(M0));
            let lo0 = self.bin(Bin::MulLo, u, c[0], Arg::I(M0));
            let hi1 = self.bin(Bin::MulHi, u, c[2], Arg::I(M1));
            let lo1 = self.bin(Bin::MulLo, u, c[2], Arg::I(M1));
            let a = self.bin(Bin::Xor, Ty::B32, hi1, c[1]);
            let a = self.bin(Bin::Xor, Ty::B32, a, k0);
            let b = self.bin(Bin::Xor, Ty::B32, hi0, c[3]);
            let b = self.bin(Bin::Xor, Ty::B32, b, k1);
            c = [a, lo1, b, lo0];
            if round < 9 {
                k0 = self.add(u, k0, Arg::I(0x9E37_79B9));
                k1 = self.add(u, k1, Arg::I(0xBB67_AE85));
            }
        }
        c
    }

    /// The two Philox words of random slot `slot` for element `index` (u64, offset
    /// already added): counter [index lo, index hi, step lo, (step hi << 8) ^ slot].
    pub fn philox_words(&mut self, index: Reg, slot: u32, seed: Reg, step: Reg) -> [Reg; 4] {
        let lo = |b: &mut Builder, r: Reg| b.cvt(None, Ty::U32, Ty::U64, r);
        let hi = |b: &mut Builder, r: Reg| {
            let s = b.bin(Bin::Shr, Ty::U64, r, Arg::I(32));
            b.cvt(None, Ty::U32, Ty::U64, s)
        };
        let c0 = lo(self, index);
        let c1 = hi(self, index);
        let c2 = lo(self, step);
        let sh = hi(self, step);
        let sh = self.bin(Bin::Shl, Ty::B32, sh, Arg::I(8));
        let c3 = self.bin(Bin::Xor, Ty::B32, sh, Arg::I(u64::from(slot)));
        let k0 = lo(self, seed);
        let k1 = hi(self, seed);
        self.philox([c0, c1, c2, c3], [k0, k1])
    }

    /// (w + 1) / 2^32 in f64: uniform in (0, 1], exact.
    pub fn u01(&mut self, w: Reg) -> Reg {
        let f = self.cvt(Some(Rnd::Rn), Ty::F64, Ty::U32, w);
        let f = self.add(Ty::F64, f, Arg::F(1.0));
        self.mul(Ty::F64, f, Arg::F(1.0 / 4_294_967_296.0))
    }

    /// Box–Muller as `random_draw`: sqrt(-2 ln u0) cos(2 pi u1), in f64.
    pub fn box_muller(&mut self, w0: Reg, w1: Reg) -> Reg {
        let f = Ty::F64;
        let u0 = self.u01(w0);
        let u1 = self.u01(w1);
        let l = self.log(f, u0);
        let m = self.mul(f, l, Arg::F(-2.0));
        let r = self.sqrt(f, m);
        let a = self.mul(f, u1, Arg::F(std::f64::consts::TAU));
        let c = self.sincos(f, a, true);
        self.mul(f, r, c)
    }
}

/// An f64 routine of the builder (`f`: one register in, one out: `Builder::exp`, `log`)
/// as PTX text for the hand-written kernels of [`super::propagate`]: its registers are
/// renamed `%x...` so they cannot meet the kernel's own, `input`'s value is moved in
/// first and the result moved to `output`. Returns the registers it uses per class (see
/// [`routine_decls`]) and the instructions (the text emulator runs them as the
/// structured emulator does).
pub(crate) fn f64_routine_text(input: &str, output: &str, f: fn(&mut Builder, Ty, Reg) -> Reg) -> ([u32; 5], String) {
    let mut b = Builder::new();
    let x = b.reg(Ty::F64);
    let r = f(&mut b, Ty::F64, x);
    let mut body = String::new();
    for inst in &b.body {
        super::asm::print_inst(&mut body, inst, &|_| unreachable!("a routine has no memory access"));
    }
    // Every `%` in the routine names one of its registers.
    let rename = |t: &str| t.replace('%', "%x");
    let name = |r: Reg| rename(&format!("{}{}", r.class.prefix(), r.n));
    let text = format!("\tmov.f64 {}, {input};\n{}\tmov.f64 {output}, {};\n", name(x), rename(&body), name(r));
    (b.counts, text)
}

/// The `.reg` declarations of routines inlined into one kernel (they share the `%x`
/// names, so each class is declared once, as large as the largest use).
pub(crate) fn routine_decls(counts: &[[u32; 5]]) -> String {
    let mut decls = String::new();
    for (k, class) in super::asm::CLASSES.iter().enumerate() {
        let n = counts.iter().map(|c| c[k]).max().unwrap_or(0);
        if n > 0 {
            decls.push_str(&format!("\t.reg {} %x{}<{n}>;\n", class.decl(), &class.prefix()[1..]));
        }
    }
    decls
}

#[cfg(test)]
mod tests {
    //! The f64 routines run through the emulator (the same instructions the PTX holds)
    //! against Rust's libm, in ulp.
    use super::*;
    use crate::backend::ptx::asm::Machine;

    fn eval2(f: &dyn Fn(&mut Builder, Reg, Reg) -> Reg, ty: Ty, x: f64, y: f64) -> f64 {
        let mut b = Builder::new();
        let a = b.ld(ty, 0, true);
        let c = b.ld(ty, 1, true);
        let r = f(&mut b, a, c);
        b.push(Inst::St { ty, buf: 2, a: Arg::R(r) });
        let mut m = Machine::new(&b.counts);
        let mut out = f64::NAN;
        let round = |v: f64| if ty == Ty::F32 { f64::from(v as f32) } else { v };
        m.run(&b.body, 0, &|_| 0, &mut |k| round(if k == 0 { x } else { y }), &mut |_, v| out = v);
        out
    }

    fn ulps(got: f64, want: f64) -> f64 {
        if got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()) {
            return 0.0;
        }
        if !got.is_finite() || !want.is_finite() {
            return f64::INFINITY;
        }
        let ulp = f64::from_bits(want.abs().to_bits() + 1) - want.abs();
        (got - want).abs() / ulp.max(f64::from_bits(1))
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.next()
        }
    }

    /// Worst ulp error of `f` against `reference` over `xs`.
    fn worst(f: &dyn Fn(&mut Builder, Reg) -> Reg, reference: &dyn Fn(f64) -> f64, xs: &[f64]) -> (f64, f64) {
        let mut w = (0.0, f64::NAN);
        for &x in xs {
            let got = eval2(&|b, a, _| f(b, a), Ty::F64, x, 0.0);
            let e = ulps(got, reference(x));
            if e > w.0 || e.is_nan() {
                w = (e, x);
            }
        }
        w
    }

    fn samples(r: &mut Rng, lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..n).map(|_| r.range(lo, hi)).collect()
    }

    #[test]
    fn f64_routines_within_a_few_ulp() {
        let mut r = Rng(42);
        let specials = [0.0, -0.0, 1.0, -1.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-300, -1e-300, 5e-324];
        let mut wide = samples(&mut r, -745.0, 709.7, 4000);
        wide.extend(samples(&mut r, -1.0, 1.0, 2000));
        wide.extend(samples(&mut r, -1e-6, 1e-6, 500));
        wide.extend(specials);
        type Case<'a> = (&'a str, &'a dyn Fn(&mut Builder, Reg) -> Reg, &'a dyn Fn(f64) -> f64, Vec<f64>, f64);
        let cases: Vec<Case> = vec![
            ("exp", &|b, x| b.exp(Ty::F64, x), &f64::exp, wide.clone(), 1.5),
            ("expm1", &|b, x| b.expm1(Ty::F64, x), &f64::exp_m1, wide.clone(), 2.5),
            ("exprel", &|b, x| b.exprel(Ty::F64, x), &crate::ir::interp::exprel, wide.clone(), 3.0),
            ("tanh", &|b, x| b.tanh(Ty::F64, x), &f64::tanh, [samples(&mut r, -25.0, 25.0, 3000), samples(&mut r, -0.01, 0.01, 500), specials.to_vec()].concat(), 3.0),
            ("sigmoid", &|b, x| b.sigmoid(Ty::F64, x), &crate::ir::interp::sigmoid, samples(&mut r, -40.0, 40.0, 3000), 3.0),
            ("sin", &|b, x| b.sincos(Ty::F64, x, false), &f64::sin, [samples(&mut r, -1e4, 1e4, 3000), samples(&mut r, -4.0, 4.0, 2000), specials.to_vec()].concat(), 2.0),
            ("cos", &|b, x| b.sincos(Ty::F64, x, true), &f64::cos, [samples(&mut r, -1e4, 1e4, 3000), samples(&mut r, -4.0, 4.0, 2000), specials.to_vec()].concat(), 2.0),
        ];
        let mut logs: Vec<f64> = (0..4000).map(|_| 10f64.powf(r.range(-320.0, 308.0))).collect();
        logs.extend(samples(&mut r, 0.5, 2.0, 2000));
        logs.extend([0.0, -1.0, f64::INFINITY, f64::NAN, 1.0, 5e-324, f64::MAX, -0.0]);
        let mut report = String::new();
        let log: &dyn Fn(&mut Builder, Reg) -> Reg = &|b, x| b.log(Ty::F64, x);
        let mut cases = cases;
        cases.push(("log", log, &f64::ln, logs, 1.5));
        for (name, f, reference, xs, bound) in cases {
            let (w, at) = worst(f, reference, &xs);
            report.push_str(&format!("{name}: {w:.2} ulp (at {at:e})\n"));
            assert!(w <= bound, "{name}: {w} ulp at x = {at:e} (bound {bound})\n{report}");
            let _ = at;
        }
        // pow: the rounding of y = b ln a is amplified by exp: ~|y| ulp.
        let mut wp = (0.0f64, 0.0, 0.0);
        for _ in 0..3000 {
            let (a, p) = (r.range(0.0, 10.0), r.range(-8.0, 8.0));
            let got = eval2(&|b, x, y| b.pow(Ty::F64, x, y), Ty::F64, a, p);
            let e = ulps(got, a.powf(p)) / (2.0 + (p * a.ln()).abs());
            if e > wp.0 {
                wp = (e, a, p);
            }
        }
        for (a, p) in [(-2.0, 3.0), (-2.0, 2.0), (-2.0, 0.5), (0.0, 2.0), (0.0, -1.0), (2.0, 0.0), (f64::NAN, 0.0), (1.0, f64::NAN), (3.0, -2.0)] {
            let got = eval2(&|b, x, y| b.pow(Ty::F64, x, y), Ty::F64, a, p);
            assert!(ulps(got, a.powf(p)) <= 8.0, "pow({a}, {p}) = {got}, want {}", a.powf(p));
        }
        report.push_str(&format!("pow: {:.2} * (2 + |b ln a|) ulp (at {}^{})\n", wp.0, wp.1, wp.2));
        assert!(wp.0 <= 1.5, "{report}");
        eprintln!("{report}");
    }

    #[test]
    fn f32_routines_with_exact_hardware_approximations() {
        // With ex2/lg2/sin/cos exact (as the emulator runs them), the f32 algorithms are
        // within a few ulp; the hardware adds its own documented error on top.
        let mut r = Rng(7);
        let rel = |got: f64, want: f64| if got == want { 0.0 } else { (got - want).abs() / want.abs().max(1e-30) };
        let f32ulp = f64::from(f32::EPSILON);
        let mut w: Vec<(&str, f64)> = Vec::new();
        for (name, f, reference, lo, hi) in [
            ("exp", &(|b: &mut Builder, x| b.exp(Ty::F32, x)) as &dyn Fn(&mut Builder, Reg) -> Reg, &f64::exp as &dyn Fn(f64) -> f64, -87.0, 88.0),
            ("expm1", &|b, x| b.expm1(Ty::F32, x), &f64::exp_m1, -20.0, 20.0),
            ("exprel", &|b, x| b.exprel(Ty::F32, x), &crate::ir::interp::exprel, -20.0, 20.0),
            ("tanh", &|b, x| b.tanh(Ty::F32, x), &f64::tanh, -10.0, 10.0),
        ] {
            let mut worst = 0.0f64;
            for x in samples(&mut r, lo, hi, 3000).into_iter().chain(samples(&mut r, -0.01, 0.01, 300)) {
                let xf = f64::from(x as f32);
                let got = eval2(&|b, a, _| f(b, a), Ty::F32, xf, 0.0);
                worst = worst.max(rel(got, reference(xf)) / f32ulp);
            }
            w.push((name, worst));
            assert!(worst <= 4.0, "{name}: {worst} f32 ulp");
        }
        eprintln!("{w:?}");
    }
}
