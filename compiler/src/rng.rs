//! Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, "Parallel random
//! numbers: as easy as 1, 2, 3").
//!
//! A draw is a pure function of (seed, counter): no state is carried between draws, so
//! a run with a seed gives the same numbers on every backend (the CUDA backend emits
//! the same rounds in PTX) and for every thread count. We implement the 10 rounds
//! ourselves rather than use a crate because the generated CPU and GPU kernels must
//! reproduce them bit for bit; the known-answer tests below are Random123's.

/// A 128-bit counter: four 32-bit words.
pub type Counter = [u32; 4];

use crate::sema::Init;

/// Philox4x32 with 10 rounds: 4 random words from a counter and a 64-bit key. One
/// implementation serves instantiation (params, states, weights) and every backend's
/// random draws; generated kernels must match it bit for bit.
pub fn philox4x32(mut ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    const M0: u32 = 0xD251_1F53;
    const M1: u32 = 0xCD9E_8D57;
    let (mut k0, mut k1) = (key[0], key[1]);
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(ctr[0]);
        let p1 = u64::from(M1) * u64::from(ctr[2]);
        ctr = [(p1 >> 32) as u32 ^ ctr[1] ^ k0, p1 as u32, (p0 >> 32) as u32 ^ ctr[3] ^ k1, p0 as u32];
        k0 = k0.wrapping_add(0x9E37_79B9);
        k1 = k1.wrapping_add(0xBB67_AE85);
    }
    ctr
}

/// A uniform float in (0, 1] from 32 random bits (never 0, so `ln` is finite).
#[inline]
pub fn u01(bits: u32) -> f64 {
    (f64::from(bits) + 1.0) * (1.0 / 4_294_967_296.0)
}

/// Draws keyed by a seed; `stream` separates independent uses (one per population,
/// projection or parameter), `index` is the element (neuron, row, ...).
#[derive(Clone, Copy, Debug)]
pub struct Rng {
    key: [u32; 2],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { key: [seed as u32, (seed >> 32) as u32] }
    }

    /// Four random words for (stream, index, sub).
    #[inline]
    pub fn words(&self, stream: u32, index: u64, sub: u32) -> [u32; 4] {
        philox4x32([index as u32, (index >> 32) as u32, stream, sub], self.key)
    }

    /// A uniform number in (0, 1].
    #[inline]
    pub fn uniform(&self, stream: u32, index: u64, sub: u32) -> f64 {
        u01(self.words(stream, index, sub)[0])
    }

    /// A standard normal number (Box–Muller on two words of one block).
    #[inline]
    pub fn normal(&self, stream: u32, index: u64, sub: u32) -> f64 {
        let w = self.words(stream, index, sub);
        let (u1, u2) = (u01(w[0]), u01(w[1]));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A stable 32-bit stream id from a name (FNV-1a), so streams do not depend on the
/// order in which a network declares its parts.
pub fn stream_id(name: &str) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Draws a value of an initialiser for element (index, sub) of a stream.
pub fn sample(init: &Init, rng: &Rng, stream: u32, index: u64, sub: u32) -> f64 {
    match *init {
        Init::Const(v) => v,
        Init::Uniform { low, high } => low + (high - low) * (1.0 - rng.uniform(stream, index, sub)),
        Init::Normal { mean, std } => mean + std * rng.normal(stream, index, sub),
        // Read from a file by the runtime, which replaces these (see `Init::Data`).
        Init::Data(_) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer tests from Random123 (kat_vectors: philox4x32_10).
    #[test]
    fn random123_known_answers() {
        assert_eq!(philox4x32([0, 0, 0, 0], [0, 0]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(
            philox4x32([0xffff_ffff; 4], [0xffff_ffff; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn moments() {
        let r = Rng::new(42);
        let n = 200_000;
        let (mut s, mut s2, mut u) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let x = r.normal(7, i, 0);
            s += x;
            s2 += x * x;
            u += r.uniform(8, i, 0);
        }
        let n = n as f64;
        assert!((s / n).abs() < 0.01, "mean {}", s / n);
        assert!((s2 / n - 1.0).abs() < 0.02, "var {}", s2 / n);
        assert!((u / n - 0.5).abs() < 0.005, "uniform mean {}", u / n);
        // Different streams and seeds differ.
        assert_ne!(r.words(1, 0, 0), r.words(2, 0, 0));
        assert_ne!(Rng::new(1).words(1, 0, 0), Rng::new(2).words(1, 0, 0));
    }
}
