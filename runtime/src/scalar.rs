//! The float types the runtime computes in (f32 or f64).

use snnc_compiler::backend::Real;

/// What the runtime needs of its float type, beyond a kernel's [`Real`] (conversions
/// and the precision): arithmetic in place, ordering, sums and ndarray's GEMM.
pub trait Float:
    Real
    + Default
    + PartialOrd
    + std::fmt::Debug
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::Mul<Output = Self>
    + ndarray::LinalgScalar
{
}

impl Float for f32 {}
impl Float for f64 {}
