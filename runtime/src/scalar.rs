//! The float types the runtime computes in (f32 or f64).

use crate::gpu::{Host, HostMut};
use snnc_compiler::backend::Real;

/// What the runtime needs of its float type, beyond a kernel's [`Real`] (conversions
/// and the precision): arithmetic in place, ordering, sums and ndarray's GEMM, and the
/// typed host slices the device seam copies (one trait for the CPU and the GPU engine).
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
    fn host(s: &[Self]) -> Host<'_>;
    fn host_mut(s: &mut [Self]) -> HostMut<'_>;
    /// The value's bits, as a GPU kernel's u64 argument takes a float (`SCALE_ADD`).
    fn bits(self) -> u64;
    /// Whether any value of `block` has a bit set (is not +0): an OR of the bits in the
    /// float's own width over a block of fixed size, which vectorises.
    fn any_bits(block: &[Self]) -> bool;
}

impl Float for f32 {
    fn host(s: &[f32]) -> Host<'_> {
        Host::F32(s)
    }
    fn host_mut(s: &mut [f32]) -> HostMut<'_> {
        HostMut::F32(s)
    }
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn any_bits(block: &[f32]) -> bool {
        // A block of 16 (the callers' size) has a fixed trip count: four vector ORs.
        match <&[f32; 16]>::try_from(block) {
            Ok(b) => b.iter().fold(0u32, |a, v| a | v.to_bits()) != 0,
            Err(_) => block.iter().any(|v| v.to_bits() != 0),
        }
    }
}

impl Float for f64 {
    fn host(s: &[f64]) -> Host<'_> {
        Host::F64(s)
    }
    fn host_mut(s: &mut [f64]) -> HostMut<'_> {
        HostMut::F64(s)
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
    fn any_bits(block: &[f64]) -> bool {
        match <&[f64; 16]>::try_from(block) {
            Ok(b) => b.iter().fold(0u64, |a, v| a | v.to_bits()) != 0,
            Err(_) => block.iter().any(|v| v.to_bits() != 0),
        }
    }
}
