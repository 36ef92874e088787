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
    /// `propagate::active_indices` in AVX-512 or AVX2 where the host has it (`None`: it
    /// has neither).
    fn nonzero_indices_simd(spikes: &[Self], base: usize, out: &mut Vec<u32>, down: bool) -> Option<bool>;
}

/// Whether this host runs AVX-512 F (checked once; `is_x86_feature_detected` caches).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Whether this host runs AVX2.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// The indices (+ `at`) of the entries of one vector set in `nonzero` (a lane mask),
/// appended to `out`: in ascending order, or the highest first when the scan runs down
/// (`propagate::active_indices`, which reverses what the scan appended).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn push_lanes(mut nonzero: u64, at: usize, out: &mut Vec<u32>, down: bool) {
    while nonzero != 0 {
        let lane = if down { 63 - nonzero.leading_zeros() } else { nonzero.trailing_zeros() };
        out.push((at + lane as usize) as u32);
        nonzero &= !(1u64 << lane);
    }
}

/// [`Float::nonzero_indices_simd`] for f32: per 64 values whose bits are not all zero,
/// per 16 a mask of those that are not zero (`!=`, so NaN is and -0 is not) and of those
/// that are 1; a masked load for the tail.
///
/// # Safety
/// The host has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn nonzero_indices_f32<const DOWN: bool>(s: &[f32], base: usize, out: &mut Vec<u32>) -> bool {
    use std::arch::x86_64::*;
    let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
    let mut not_one = 0u32;
    // 64 values a round, one branch for the four vectors (nearly always all zero).
    let blocks = s.chunks_exact(64);
    let rest = blocks.remainder();
    let rest_at = s.len() - rest.len();
    macro_rules! block {
        ($k:expr, $c:expr) => {{
            let (k, c): (usize, &[f32]) = ($k, $c);
            // SAFETY: `c` holds 64 values, so q * 16.. q * 16 + 16 is within it.
            let v: [__m512; 4] = std::array::from_fn(|q| unsafe { _mm512_loadu_ps(c.as_ptr().add(if DOWN { 3 - q } else { q } * 16)) });
            let v = if DOWN { [v[3], v[2], v[1], v[0]] } else { v };
            // The four vectors' bits ORed, one test: a block with no bit set (every value
            // +0, nearly all blocks) costs no compare.
            let any = _mm512_or_si512(
                _mm512_or_si512(_mm512_castps_si512(v[0]), _mm512_castps_si512(v[1])),
                _mm512_or_si512(_mm512_castps_si512(v[2]), _mm512_castps_si512(v[3])),
            );
            if _mm512_test_epi32_mask(any, any) != 0 {
                let mut nz = 0u64;
                let mut ones = 0u64;
                for (q, &v) in v.iter().enumerate() {
                    nz |= u64::from(_mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero)) << (q * 16);
                    ones |= u64::from(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(v, one)) << (q * 16);
                }
                if nz != 0 {
                    not_one |= u32::from(nz & !ones != 0);
                    push_lanes(nz, base + k * 64, out, DOWN);
                }
            }
        }};
    }
    // The rest, 16 at a time, a masked load for the last.
    macro_rules! tail {
        ($k:expr, $c:expr) => {{
            let (k, c): (usize, &[f32]) = ($k, $c);
            let lanes: __mmask16 = if c.len() == 16 { 0xffff } else { (1u16 << c.len()) - 1 };
            // SAFETY: the mask loads only the lanes of `c` (masked-off lanes do not fault).
            let v = unsafe { _mm512_maskz_loadu_ps(lanes, c.as_ptr()) };
            let nz = _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(lanes, v, zero);
            if nz != 0 {
                not_one |= u32::from(nz & !_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(v, one));
                push_lanes(u64::from(nz), base + rest_at + k * 16, out, DOWN);
            }
        }};
    }
    if DOWN {
        for (k, c) in rest.chunks(16).enumerate().rev() {
            tail!(k, c);
        }
        for (k, c) in blocks.enumerate().rev() {
            block!(k, c);
        }
    } else {
        for (k, c) in blocks.enumerate() {
            block!(k, c);
        }
        for (k, c) in rest.chunks(16).enumerate() {
            tail!(k, c);
        }
    }
    not_one == 0
}

/// [`nonzero_indices_f32`] for f64, 8 values a vector.
///
/// # Safety
/// The host has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn nonzero_indices_f64<const DOWN: bool>(s: &[f64], base: usize, out: &mut Vec<u32>) -> bool {
    use std::arch::x86_64::*;
    let (zero, one) = (_mm512_setzero_pd(), _mm512_set1_pd(1.0));
    let mut not_one = 0u32;
    let units = s.len().div_ceil(8);
    for j in 0..units {
        let at = 8 * if DOWN { units - 1 - j } else { j };
        let c = &s[at..(at + 8).min(s.len())];
        let lanes: __mmask8 = if c.len() == 8 { 0xff } else { (1u8 << c.len()) - 1 };
        // SAFETY: as for f32.
        let v = unsafe { _mm512_maskz_loadu_pd(lanes, c.as_ptr()) };
        let nz = _mm512_mask_cmp_pd_mask::<_CMP_NEQ_UQ>(lanes, v, zero);
        if nz != 0 {
            not_one |= u32::from(nz & !_mm512_cmp_pd_mask::<_CMP_EQ_OQ>(v, one));
            push_lanes(u64::from(nz), base + at, out, DOWN);
        }
    }
    not_one == 0
}

/// [`Float::nonzero_indices_simd`] in AVX2, for f32 (8 lanes) and f64 (4): per 32 or 16
/// values (four vectors) whose bits are not all zero, per vector a mask of those that
/// are not zero and of those that are 1; masked loads for the last block's rest.
///
/// # Safety
/// The host has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn nonzero_indices_avx2<T: Lanes256, const DOWN: bool>(s: &[T], base: usize, out: &mut Vec<u32>) -> bool {
    use std::arch::x86_64::*;
    let lanes = 32 / std::mem::size_of::<T>();
    let block = 4 * lanes;
    let mut not_one = false;
    let units = s.len().div_ceil(block);
    for j in 0..units {
        let at = block * if DOWN { units - 1 - j } else { j };
        let c = &s[at..(at + block).min(s.len())];
        let (mut nz, mut ones) = (0u64, 0u64);
        if c.len() == block {
            // SAFETY: `c` holds four vectors.
            let v: [__m256i; 4] = std::array::from_fn(|q| unsafe { _mm256_loadu_si256(c.as_ptr().add(q * lanes).cast()) });
            // One test for the block: nearly every block's bits are all zero (+0).
            let any = _mm256_or_si256(_mm256_or_si256(v[0], v[1]), _mm256_or_si256(v[2], v[3]));
            if _mm256_testz_si256(any, any) == 1 {
                continue;
            }
            for (q, &v) in v.iter().enumerate() {
                // SAFETY: the host has AVX2.
                let (z, o) = unsafe { T::masks(v) };
                nz |= u64::from(z) << (q * lanes);
                ones |= u64::from(o) << (q * lanes);
            }
        } else {
            for q in 0..c.len().div_ceil(lanes) {
                let n = (c.len() - q * lanes).min(lanes);
                // SAFETY: the mask loads only the `n` values of `c` from q * lanes on
                // (masked-off lanes read as 0 and do not fault).
                let v = unsafe { T::load_first(c.as_ptr().add(q * lanes), n) };
                // SAFETY: the host has AVX2.
                let (z, o) = unsafe { T::masks(v) };
                nz |= u64::from(z) << (q * lanes);
                ones |= u64::from(o) << (q * lanes);
            }
        }
        if nz != 0 {
            not_one |= nz & !ones != 0;
            push_lanes(nz, base + at, out, DOWN);
        }
    }
    !not_one
}

/// What [`nonzero_indices_avx2`] needs of a float type in 256-bit vectors.
#[cfg(target_arch = "x86_64")]
trait Lanes256: Sized {
    /// The lanes that are not zero (`!=`: NaN is, -0 is not) and those that are 1, as
    /// bits.
    ///
    /// # Safety
    /// The host has AVX2.
    unsafe fn masks(v: std::arch::x86_64::__m256i) -> (u32, u32);
    /// The first `n` values at `p` (the others 0).
    ///
    /// # Safety
    /// The host has AVX2; `p..p + n` is readable.
    unsafe fn load_first(p: *const Self, n: usize) -> std::arch::x86_64::__m256i;
}

#[cfg(target_arch = "x86_64")]
impl Lanes256 for f32 {
    #[target_feature(enable = "avx2")]
    unsafe fn masks(v: std::arch::x86_64::__m256i) -> (u32, u32) {
        use std::arch::x86_64::*;
        let v = _mm256_castsi256_ps(v);
        let nz = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps()));
        let one = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v, _mm256_set1_ps(1.0)));
        (nz as u32, one as u32)
    }
    #[target_feature(enable = "avx2")]
    unsafe fn load_first(p: *const f32, n: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        // SAFETY: forwarded to the caller.
        _mm256_castps_si256(unsafe { _mm256_maskload_ps(p, lanes) })
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes256 for f64 {
    #[target_feature(enable = "avx2")]
    unsafe fn masks(v: std::arch::x86_64::__m256i) -> (u32, u32) {
        use std::arch::x86_64::*;
        let v = _mm256_castsi256_pd(v);
        let nz = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_NEQ_UQ>(v, _mm256_setzero_pd()));
        let one = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_EQ_OQ>(v, _mm256_set1_pd(1.0)));
        (nz as u32, one as u32)
    }
    #[target_feature(enable = "avx2")]
    unsafe fn load_first(p: *const f64, n: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let lanes = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n as i64), _mm256_setr_epi64x(0, 1, 2, 3));
        // SAFETY: forwarded to the caller.
        _mm256_castpd_si256(unsafe { _mm256_maskload_pd(p, lanes) })
    }
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
    fn nonzero_indices_simd(spikes: &[f32], base: usize, out: &mut Vec<u32>, down: bool) -> Option<bool> {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the host has AVX-512 F.
            return Some(unsafe { if down { nonzero_indices_f32::<true>(spikes, base, out) } else { nonzero_indices_f32::<false>(spikes, base, out) } });
        }
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the host has AVX2.
            return Some(unsafe { if down { nonzero_indices_avx2::<f32, true>(spikes, base, out) } else { nonzero_indices_avx2::<f32, false>(spikes, base, out) } });
        }
        let _ = (spikes, base, out, down);
        None
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
    fn nonzero_indices_simd(spikes: &[f64], base: usize, out: &mut Vec<u32>, down: bool) -> Option<bool> {
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            // SAFETY: the host has AVX-512 F.
            return Some(unsafe { if down { nonzero_indices_f64::<true>(spikes, base, out) } else { nonzero_indices_f64::<false>(spikes, base, out) } });
        }
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the host has AVX2.
            return Some(unsafe { if down { nonzero_indices_avx2::<f64, true>(spikes, base, out) } else { nonzero_indices_avx2::<f64, false>(spikes, base, out) } });
        }
        let _ = (spikes, base, out, down);
        None
    }
}
