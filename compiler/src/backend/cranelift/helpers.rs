//! The Rust functions generated code calls: transcendentals and random draws. Cranelift
//! has no `exp` instruction; calling the same Rust functions the interpreter uses keeps
//! f64 kernels bit-exact with it.

use crate::backend::{RandomCtx, random_draw};
use crate::ir::interp;

/// A math function the generated code may call, by op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum MathFn {
    Exp,
    Log,
    Tanh,
    Sin,
    Cos,
    Exprel,
    Sigmoid,
    /// Two arguments.
    Pow,
}

impl MathFn {
    pub fn arity(self) -> usize {
        if self == MathFn::Pow { 2 } else { 1 }
    }

    /// The symbol name and address for a precision.
    pub fn symbol(self, f64_: bool) -> (&'static str, *const u8) {
        use MathFn::*;
        if f64_ {
            match self {
                Exp => ("snnc_jit_exp_f64", exp_f64 as *const u8),
                Log => ("snnc_jit_log_f64", log_f64 as *const u8),
                Tanh => ("snnc_jit_tanh_f64", tanh_f64 as *const u8),
                Sin => ("snnc_jit_sin_f64", sin_f64 as *const u8),
                Cos => ("snnc_jit_cos_f64", cos_f64 as *const u8),
                Exprel => ("snnc_jit_exprel_f64", exprel_f64 as *const u8),
                Sigmoid => ("snnc_jit_sigmoid_f64", sigmoid_f64 as *const u8),
                Pow => ("snnc_jit_pow_f64", pow_f64 as *const u8),
            }
        } else {
            match self {
                Exp => ("snnc_jit_exp_f32", exp_f32 as *const u8),
                Log => ("snnc_jit_log_f32", log_f32 as *const u8),
                Tanh => ("snnc_jit_tanh_f32", tanh_f32 as *const u8),
                Sin => ("snnc_jit_sin_f32", sin_f32 as *const u8),
                Cos => ("snnc_jit_cos_f32", cos_f32 as *const u8),
                Exprel => ("snnc_jit_exprel_f32", exprel_f32 as *const u8),
                Sigmoid => ("snnc_jit_sigmoid_f32", sigmoid_f32 as *const u8),
                Pow => ("snnc_jit_pow_f32", pow_f32 as *const u8),
            }
        }
    }

    pub const ALL: [MathFn; 8] =
        [MathFn::Exp, MathFn::Log, MathFn::Tanh, MathFn::Sin, MathFn::Cos, MathFn::Exprel, MathFn::Sigmoid, MathFn::Pow];
}

extern "C" fn exp_f64(x: f64) -> f64 {
    x.exp()
}
extern "C" fn log_f64(x: f64) -> f64 {
    x.ln()
}
extern "C" fn tanh_f64(x: f64) -> f64 {
    x.tanh()
}
extern "C" fn sin_f64(x: f64) -> f64 {
    x.sin()
}
extern "C" fn cos_f64(x: f64) -> f64 {
    x.cos()
}
extern "C" fn exprel_f64(x: f64) -> f64 {
    interp::exprel(x)
}
extern "C" fn sigmoid_f64(x: f64) -> f64 {
    interp::sigmoid(x)
}
extern "C" fn pow_f64(x: f64, y: f64) -> f64 {
    x.powf(y)
}

extern "C" fn exp_f32(x: f32) -> f32 {
    x.exp()
}
extern "C" fn log_f32(x: f32) -> f32 {
    x.ln()
}
extern "C" fn tanh_f32(x: f32) -> f32 {
    x.tanh()
}
extern "C" fn sin_f32(x: f32) -> f32 {
    x.sin()
}
extern "C" fn cos_f32(x: f32) -> f32 {
    x.cos()
}
/// The interpreter's `exprel` in f32 arithmetic (`exp_m1` keeps it accurate near 0).
extern "C" fn exprel_f32(x: f32) -> f32 {
    if x.abs() < 1e-8 { 1.0 + x / 2.0 } else { x.exp_m1() / x }
}
extern "C" fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
extern "C" fn pow_f32(x: f32, y: f32) -> f32 {
    x.powf(y)
}

pub(super) const RANDOM_SYMBOL: &str = "snnc_jit_random";

/// `random_draw(*ctx, ctx.offset + i, slot, normal)`: the draw of element `i`, bit for
/// bit the interpreter kernel's (f32 kernels round it afterwards).
///
/// # Safety
/// `ctx` points to a live `RandomCtx` (the kernel passes a reference it holds).
pub(super) unsafe extern "C" fn random(ctx: *const RandomCtx, i: u64, slot: u32, normal: u32) -> f64 {
    // SAFETY: the caller (JitKernel::try_step) passes a pointer to its own RandomCtx.
    let ctx = unsafe { *ctx };
    random_draw(ctx, ctx.offset.wrapping_add(i), slot, normal != 0)
}
