//! Building a projection's connectivity and initial weights from its checked
//! description (`sema::Projection`), reproducibly from a seed.
//!
//! Every random choice is a counter-based draw keyed by (seed, stream, row, k), so the
//! structure is the same whatever the thread count or backend, and building a row
//! never depends on another row (rows can be built in parallel, or on a GPU).

use snnc_compiler::rng::Rng;
use snnc_compiler::sema::Init;
use snnc_compiler::syntax::ast::Sign;

/// Compressed sparse rows: row = presynaptic neuron, columns = its targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    pub n_pre: usize,
    pub n_post: usize,
    /// `row_ptr[i]..row_ptr[i + 1]` indexes the synapses of presynaptic neuron `i`.
    pub row_ptr: Vec<usize>,
    pub col: Vec<u32>,
    pub weight: Vec<f64>,
}

impl Csr {
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.row_ptr[i]..self.row_ptr[i + 1];
        (&self.col[r.clone()], &self.weight[r])
    }
}

/// A projection's weights in the layout its propagation kernel wants.
#[derive(Clone, Debug, PartialEq)]
pub enum Connectivity {
    /// Row-major `n_pre x n_post` (row = presynaptic, as in `y = x W`).
    Dense { n_pre: usize, n_post: usize, w: Vec<f64> },
    Sparse(Csr),
    /// `w[i]` connects `i -> i`.
    OneToOne { w: Vec<f64> },
}

impl Connectivity {
    pub fn n_synapses(&self) -> usize {
        match self {
            Connectivity::Dense { w, .. } | Connectivity::OneToOne { w } => w.len(),
            Connectivity::Sparse(c) => c.nnz(),
        }
    }
}

/// Draws a value of an initialiser (shared with the compiler's pipeline, which samples
/// per-neuron params and initial states with it).
pub use snnc_compiler::rng::sample;

/// The weight initialiser used when a connection names none: `normal(0, 1/sqrt(fan_in))`,
/// the variance-preserving choice of most deep-learning libraries.
pub fn default_init(fan_in: f64) -> Init {
    Init::Normal { mean: 0.0, std: 1.0 / fan_in.max(1.0).sqrt() }
}

/// The draws of fixed-probability connectivity, row by row: each (pre, post) pair is
/// connected with probability `p`, found by geometric skipping (O(synapses), not
/// O(n_pre * n_post)). A row depends on nothing but its index, so it can be drawn when
/// it is needed: a stored projection ([`fixed_probability`]) and a procedural one
/// (regenerated at every spike, nothing stored) have the same synapses and weights.
#[derive(Clone, Debug)]
pub struct FixedProbability {
    pub n_post: usize,
    pub p: f64,
    log_q: f64,
    no_self: bool,
    stream: u32,
    wstream: u32,
}

impl FixedProbability {
    pub fn new(n_post: usize, p: f64, no_self: bool, stream: u32) -> FixedProbability {
        // Below p ~ 1e-16, 1 - p rounds to 1 and its log to 0, which made every gap -inf
        // (a column out of range, then a panic); ln_1p keeps such a p apart from 0.
        let log_q = if 1.0 - p == 1.0 { (-p).ln_1p() } else { (1.0 - p).ln() };
        FixedProbability { n_post, p, log_q, no_self, stream, wstream: stream ^ 0x5bd1_e995 }
    }

    /// Calls `emit(column, weight)` for the synapses of presynaptic neuron `i`, columns
    /// ascending, weights drawn from `init`.
    #[inline]
    pub fn row(&self, i: usize, init: &Init, rng: &Rng, mut emit: impl FnMut(u32, f64)) {
        let (p, n_post) = (self.p, self.n_post);
        let mut j: i64 = -1;
        let mut k: u32 = 0;
        let mut kept: u32 = 0;
        loop {
            // Gap to the next connected column: Geometric(p) by inversion.
            let gap = if p >= 1.0 {
                0
            } else if p <= 0.0 {
                break;
            } else {
                let u = rng.uniform(self.stream, i as u64, k);
                (u.ln() / self.log_q).floor().min(n_post as f64) as i64
            };
            k = k.wrapping_add(1);
            j += gap + 1;
            if j >= n_post as i64 {
                break;
            }
            if self.no_self && j as usize == i {
                continue;
            }
            emit(j as u32, sample(init, rng, self.wstream, i as u64, kept));
            kept += 1;
        }
    }
}

/// Fixed-probability connectivity, stored: the rows of [`FixedProbability`] as CSR.
pub fn fixed_probability(
    n_pre: usize,
    n_post: usize,
    p: f64,
    no_self: bool,
    init: &Init,
    rng: &Rng,
    stream: u32,
) -> Csr {
    let mut row_ptr = Vec::with_capacity(n_pre + 1);
    // Room for the expected count (+5 %), asked for without aborting when it cannot be
    // had (networks estimate their memory first, `memory::estimate`; the vectors grow).
    let expected = ((p * n_pre as f64 * n_post as f64 * 1.05) as usize).saturating_add(16);
    let (mut col, mut weight) = (Vec::new(), Vec::new());
    let _ = col.try_reserve_exact(expected).and_then(|_| weight.try_reserve_exact(expected));
    row_ptr.push(0);
    let draws = FixedProbability::new(n_post, p, no_self, stream);
    for i in 0..n_pre {
        draws.row(i, init, rng, |j, w| {
            col.push(j);
            weight.push(w);
        });
        row_ptr.push(col.len());
    }
    Csr { n_pre, n_post, row_ptr, col, weight }
}

/// Dense weights, row-major, with `no_self` zeroing the diagonal.
pub fn dense(n_pre: usize, n_post: usize, no_self: bool, init: &Init, rng: &Rng, stream: u32) -> Vec<f64> {
    dense_with(n_pre, n_post, no_self, init, rng, stream, |w| w)
}

/// [`dense`], each draw converted by `conv` as it is made (into the run's float type,
/// folded onto a sign), so no f64 copy of the matrix is ever held.
pub fn dense_with<W>(n_pre: usize, n_post: usize, no_self: bool, init: &Init, rng: &Rng, stream: u32, conv: impl Fn(f64) -> W) -> Vec<W> {
    let mut w = Vec::with_capacity(n_pre.saturating_mul(n_post));
    for i in 0..n_pre {
        for j in 0..n_post {
            w.push(conv(if no_self && i == j { 0.0 } else { sample(init, rng, stream, i as u64, j as u32) }));
        }
    }
    w
}

/// `w` on the side of `sign`: |w| for excitatory, -|w| for inhibitory (Dale's law).
pub fn apply_sign(sign: Option<Sign>, w: f64) -> f64 {
    match sign {
        Some(Sign::Excitatory) => w.abs(),
        Some(Sign::Inhibitory) => -w.abs(),
        None => w,
    }
}

/// Dale's law after an update: a weight that crossed to the wrong side of zero stops at zero.
pub fn project_onto_sign(sign: Sign, w: f64) -> f64 {
    match sign {
        Sign::Excitatory => w.max(0.0),
        Sign::Inhibitory => w.min(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_probability_statistics_and_determinism() {
        let rng = Rng::new(1234);
        let init = Init::Const(6e-9);
        let c = fixed_probability(4000, 3200, 0.02, false, &init, &rng, 7);
        let expected: f64 = 0.02 * 4000.0 * 3200.0;
        let sd = (expected * 0.98).sqrt();
        assert!(((c.nnz() as f64) - expected).abs() < 5.0 * sd, "nnz {} vs {expected}", c.nnz());
        // Columns strictly increase within a row and stay in range.
        for i in 0..c.n_pre {
            let (cols, _) = c.row(i);
            assert!(cols.windows(2).all(|w| w[0] < w[1]));
            assert!(cols.iter().all(|&j| (j as usize) < c.n_post));
        }
        // In-degree of a target is Binomial(4000, 0.02): mean 80.
        let mut indeg = vec![0usize; 3200];
        c.col.iter().for_each(|&j| indeg[j as usize] += 1);
        let mean = indeg.iter().sum::<usize>() as f64 / 3200.0;
        assert!((mean - 80.0).abs() < 1.0, "mean in-degree {mean}");
        // Same seed, same structure; another seed, another one.
        assert_eq!(c, fixed_probability(4000, 3200, 0.02, false, &init, &rng, 7));
        assert_ne!(c.col, fixed_probability(4000, 3200, 0.02, false, &init, &Rng::new(1), 7).col);
    }

    #[test]
    fn no_self_and_extremes() {
        let rng = Rng::new(5);
        let init = Init::Normal { mean: 0.0, std: 1.0 };
        let full = fixed_probability(50, 50, 1.0, true, &init, &rng, 1);
        assert_eq!(full.nnz(), 50 * 49);
        for i in 0..50 {
            assert!(!full.row(i).0.contains(&(i as u32)));
        }
        assert_eq!(fixed_probability(50, 50, 0.0, false, &init, &rng, 1).nnz(), 0);
        // Found by snnc-fuzz: `sparse p = 1e-30` gave out-of-range columns.
        for p in [1e-30, 1e-17, f64::MIN_POSITIVE, 5e-324] {
            let c = fixed_probability(30, 30, p, false, &init, &rng, 1);
            assert!(c.col.iter().all(|&j| (j as usize) < 30), "p = {p}: {:?}", c.col);
            assert_eq!(c.nnz(), 0, "p = {p}");
        }
        let w = dense(4, 4, true, &init, &rng, 3);
        assert!((0..4).all(|i| w[i * 4 + i] == 0.0));
        assert!(w.iter().filter(|x| **x != 0.0).count() == 12);
    }
}
