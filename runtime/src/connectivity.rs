//! Building a projection's connectivity and initial weights from its checked
//! description (`sema::Projection`), reproducibly from a seed.
//!
//! Every random choice is a counter-based draw keyed by (seed, stream, row, k), so the
//! structure is the same whatever the thread count or backend, and building a row
//! never depends on another row (rows can be built in parallel, or on a GPU).

use snnc_compiler::rng::Rng;
use snnc_compiler::sema::{IndexExpr, IndexVar, Init};
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

/// A synapse's value from (presynaptic index, postsynaptic index, index within the row).
pub type SynapseFn<'a> = dyn Fn(usize, u32, usize) -> f64 + Sync + 'a;

thread_local! {
    /// [`with_build_threads`]'s count, for what this thread builds.
    static BUILD_THREADS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// How many threads build connectivity: [`with_build_threads`]'s count, else
/// `SNNC_BUILD_THREADS` if set (at least 1), else the machine's cores. Any count gives
/// the same network: every draw is keyed by its row.
pub fn build_threads() -> usize {
    if let Some(n) = BUILD_THREADS.with(|c| c.get()) {
        return n;
    }
    match std::env::var("SNNC_BUILD_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => n.max(1),
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }
}

/// Runs `f` with networks built on `threads` threads (on this thread only, unlike the
/// environment variable).
pub fn with_build_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let old = BUILD_THREADS.with(|c| c.replace(Some(threads.max(1))));
    let r = f();
    BUILD_THREADS.with(|c| c.set(old));
    r
}

/// Splits rows `0..n` into one contiguous block per thread (at most `threads`, none
/// empty) and runs `f(block)` for each on its own scoped thread, results in row order.
pub fn par_blocks<R: Send>(n: usize, threads: usize, f: impl Fn(std::ops::Range<usize>) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return vec![f(0..n)];
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || f(t * n / threads..(t + 1) * n / threads))).collect();
        handles.into_iter().map(|h| h.join().expect("a build thread panicked")).collect()
    })
}

/// The stream sparse weights are drawn from, apart from the structure's.
pub fn weight_stream(stream: u32) -> u32 {
    stream ^ 0x5bd1_e995
}

/// FNV-1a over 64-bit words: a fingerprint of a structure (a sparse projection's
/// synapses in a checkpoint, what MPI ranks were launched with), not a random draw.
pub struct Fingerprint(pub u64);

impl Default for Fingerprint {
    fn default() -> Fingerprint {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    pub fn add(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The draws of fixed-probability connectivity for one row at a time: a row depends on
/// nothing but its index, so it can be drawn when it is needed. A stored projection
/// ([`fixed_probability`]) and a procedural one (its rows drawn again at every spike,
/// nothing stored) have the same synapses and weights.
#[derive(Clone, Debug)]
pub struct FixedProbability {
    pub n_post: usize,
    pub p: f64,
    no_self: bool,
    stream: u32,
}

impl FixedProbability {
    pub fn new(n_post: usize, p: f64, no_self: bool, stream: u32) -> FixedProbability {
        FixedProbability { n_post, p, no_self, stream }
    }

    /// Calls `emit(column, weight)` for the synapses of presynaptic neuron `i`, columns
    /// ascending, weights drawn from `init` as [`fixed_probability`] draws them.
    #[inline]
    pub fn row(&self, i: usize, init: &Init, rng: &Rng, mut emit: impl FnMut(u32, f64)) {
        let wstream = weight_stream(self.stream);
        let mut k: u32 = 0;
        connected_columns(i, self.n_post, self.p, self.no_self, rng, self.stream, &mut |j| {
            emit(j, sample(init, rng, wstream, i as u64, k));
            k += 1;
        });
    }
}

/// Fixed-probability connectivity: each (pre, post) pair is connected with probability
/// `p`, drawn row by row by geometric skipping (O(synapses), not O(n_pre * n_post)),
/// weights from `init` (drawn from [`weight_stream`], keyed by row and place in it).
pub fn fixed_probability(n_pre: usize, n_post: usize, p: f64, no_self: bool, init: &Init, rng: &Rng, stream: u32) -> Csr {
    let wstream = weight_stream(stream);
    fixed_probability_with(n_pre, n_post, p, no_self, rng, stream, &|i, _, k| sample(init, rng, wstream, i as u64, k as u32), build_threads())
}

/// [`fixed_probability`] with each synapse's weight from `weight`, built on `threads`
/// threads in two passes: the row lengths (so that the arrays are allocated once, at
/// their exact size), then the columns and weights, each thread filling its own rows.
pub fn fixed_probability_with(n_pre: usize, n_post: usize, p: f64, no_self: bool, rng: &Rng, stream: u32, weight: &SynapseFn<'_>, threads: usize) -> Csr {
    let row = |i: usize, emit: &mut dyn FnMut(u32)| connected_columns(i, n_post, p, no_self, rng, stream, emit);
    let lens: Vec<usize> = par_blocks(n_pre, threads, |rows| {
        rows.map(|i| {
            let mut n = 0;
            row(i, &mut |_| n += 1);
            n
        })
        .collect::<Vec<_>>()
    })
    .concat();
    let mut row_ptr = Vec::with_capacity(n_pre + 1);
    row_ptr.push(0usize);
    for l in &lens {
        row_ptr.push(row_ptr.last().expect("non-empty") + l);
    }
    let nnz = row_ptr[n_pre];
    let (mut col, mut w) = (vec![0u32; nnz], vec![0.0f64; nnz]);
    fill_rows(&row_ptr, &mut col, &mut w, threads, &|i, cols, ws| {
        let mut k = 0;
        row(i, &mut |j| {
            cols[k] = j;
            ws[k] = weight(i, j, k);
            k += 1;
        });
    });
    Csr { n_pre, n_post, row_ptr, col, weight: w }
}

/// Connectivity with a probability per pair, `prob(i, j, j)` (an expression of the
/// indices): every pair is looked at, connected when its uniform draw from `(stream, i,
/// j)` is at most its probability; weights from `weight(i, j, k)`. The first pair whose
/// probability is outside [0, 1] (or NaN) is returned as the error.
#[allow(clippy::too_many_arguments)]
pub fn pairwise_probability(n_pre: usize, n_post: usize, no_self: bool, rng: &Rng, stream: u32, prob: &SynapseFn<'_>, weight: &SynapseFn<'_>, threads: usize) -> Result<Csr, (usize, u32, f64)> {
    let blocks = par_blocks(n_pre, threads, |rows| -> Result<(Vec<usize>, Vec<u32>), (usize, u32, f64)> {
        let (mut lens, mut cols) = (Vec::with_capacity(rows.len()), Vec::new());
        for i in rows {
            let start = cols.len();
            for j in (0..n_post as u32).filter(|&j| !(no_self && j as usize == i)) {
                let p = prob(i, j, j as usize);
                if !(0.0..=1.0).contains(&p) {
                    return Err((i, j, p));
                }
                if p > 0.0 && rng.uniform(stream, i as u64, j) <= p {
                    cols.push(j);
                }
            }
            lens.push(cols.len() - start);
        }
        Ok((lens, cols))
    });
    let mut row_ptr = Vec::with_capacity(n_pre + 1);
    row_ptr.push(0usize);
    let mut col = Vec::new();
    for b in blocks {
        let (lens, cols) = b?;
        for l in lens {
            row_ptr.push(row_ptr.last().expect("non-empty") + l);
        }
        col.extend_from_slice(&cols);
    }
    let mut w = vec![0.0f64; col.len()];
    fill_rows(&row_ptr, &mut col, &mut w, threads, &|i, c, ws| {
        for (k, (j, w)) in c.iter().zip(ws.iter_mut()).enumerate() {
            *w = weight(i, *j, k);
        }
    });
    Ok(Csr { n_pre, n_post, row_ptr, col, weight: w })
}

/// The mean of a probability expression over a grid of up to 64 x 64 pairs spread
/// over the indices, clamped to [0, 1]: the expected density, before anything is built
/// (the memory estimate, the default weights' fan-in). `None` when the expression reads
/// neurons' params, which only the compiled plan knows.
pub fn sampled_mean_probability(e: &IndexExpr, n_pre: usize, n_post: usize) -> Option<f64> {
    let grid = |n: usize| -> Vec<usize> { (0..n.min(64)).map(|k| k * n / n.min(64)).collect() };
    let (rows, cols) = (grid(n_pre), grid(n_post));
    let mut vals = Vec::with_capacity(e.vars.len());
    let mut sum = 0.0;
    for &i in &rows {
        for &j in &cols {
            vals.clear();
            for v in &e.vars {
                vals.push(match v {
                    IndexVar::Pre => i as f64,
                    IndexVar::Post => j as f64,
                    IndexVar::NPre => n_pre as f64,
                    IndexVar::NPost => n_post as f64,
                    IndexVar::PreParam(_) | IndexVar::PostParam(_) => return None,
                });
            }
            sum += e.eval(&vals).clamp(0.0, 1.0);
        }
    }
    Some(if rows.is_empty() || cols.is_empty() { 0.0 } else { sum / (rows.len() * cols.len()) as f64 })
}

/// Fills the columns and weights (or anything kept a synapse) of every row (`row(i,
/// cols, weights)` gets row i's slices), rows shared out over `threads` threads in
/// contiguous blocks.
pub fn fill_rows<W: Send>(row_ptr: &[usize], col: &mut [u32], w: &mut [W], threads: usize, row: &(dyn Fn(usize, &mut [u32], &mut [W]) + Sync)) {
    let n = row_ptr.len() - 1;
    let threads = threads.clamp(1, n.max(1));
    std::thread::scope(|s| {
        let (mut col_rest, mut w_rest) = (col, w);
        for t in 0..threads {
            let rows = t * n / threads..(t + 1) * n / threads;
            let len = row_ptr[rows.end] - row_ptr[rows.start];
            let (c, cr) = std::mem::take(&mut col_rest).split_at_mut(len);
            let (ws, wr) = std::mem::take(&mut w_rest).split_at_mut(len);
            (col_rest, w_rest) = (cr, wr);
            let base = row_ptr[rows.start];
            let job = move || {
                for i in rows {
                    let r = row_ptr[i] - base..row_ptr[i + 1] - base;
                    row(i, &mut c[r.clone()], &mut ws[r]);
                }
            };
            if threads == 1 { job() } else { drop(s.spawn(job)) }
        }
    });
}

/// The columns row `i` connects to, in increasing order: geometric gaps drawn from
/// `(stream, i, k)`.
fn connected_columns(i: usize, n_post: usize, p: f64, no_self: bool, rng: &Rng, stream: u32, emit: &mut dyn FnMut(u32)) {
    if p <= 0.0 {
        return;
    }
    // Below p ~ 1e-16, 1 - p rounds to 1 and its log to 0, which made every gap -inf
    // (a column out of range, then a panic); ln_1p keeps such a p apart from 0.
    let log_q = if 1.0 - p == 1.0 { (-p).ln_1p() } else { (1.0 - p).ln() };
    let mut j: i64 = -1;
    let mut k: u32 = 0;
    loop {
        // Gap to the next connected column: Geometric(p) by inversion.
        let gap = if p >= 1.0 {
            0
        } else {
            let u = rng.uniform(stream, i as u64, k);
            (u.ln() / log_q).floor().min(n_post as f64) as i64
        };
        k = k.wrapping_add(1);
        j += gap + 1;
        if j >= n_post as i64 {
            break;
        }
        if no_self && j as usize == i {
            continue;
        }
        emit(j as u32);
    }
}

/// Dense weights, row-major, with `no_self` zeroing the diagonal.
pub fn dense(n_pre: usize, n_post: usize, no_self: bool, init: &Init, rng: &Rng, stream: u32) -> Vec<f64> {
    dense_with(n_pre, n_post, no_self, &|i, j, _| sample(init, rng, stream, i as u64, j), |w| w, build_threads())
}

/// Dense weights from `weight(i, j, j)`, each converted by `conv` as it is made (into the
/// run's float type, folded onto a sign), so no f64 copy of the matrix is ever held;
/// rows filled on `threads` threads.
pub fn dense_with<W: Send + Default + Clone>(n_pre: usize, n_post: usize, no_self: bool, weight: &SynapseFn<'_>, conv: impl Fn(f64) -> W + Sync, threads: usize) -> Vec<W> {
    let mut w = vec![W::default(); n_pre.saturating_mul(n_post)];
    if n_post == 0 {
        return w;
    }
    let threads = threads.clamp(1, n_pre.max(1));
    std::thread::scope(|s| {
        let mut rest = w.as_mut_slice();
        for t in 0..threads {
            let rows = t * n_pre / threads..(t + 1) * n_pre / threads;
            let (mine, r) = std::mem::take(&mut rest).split_at_mut(rows.len() * n_post);
            rest = r;
            let conv = &conv;
            let job = move || {
                for (row, i) in mine.chunks_mut(n_post).zip(rows) {
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = conv(if no_self && i == j { 0.0 } else { weight(i, j as u32, j) });
                    }
                }
            };
            if threads == 1 { job() } else { drop(s.spawn(job)) }
        }
    });
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
