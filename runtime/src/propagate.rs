//! Moving presynaptic activity through a projection into a postsynaptic port:
//! dense `y += x W` (GEMM through ndarray/matrixmultiply), event-driven sparse rows,
//! one-to-one, and synaptic delays in ring buffers; and the lists of active
//! (spiking) neurons that event-driven propagation reads.

use crate::connectivity::Csr;
use crate::scalar::Float;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, LinalgScalar, ShapeBuilder, linalg::general_mat_mul, s};
use smallvec::SmallVec;
use snnc_compiler::backend::Real;
use std::ops::Range;

/// `y += x W` for a batch: x is (B, I), W is (I, O), y is (B, O).
pub fn dense<T: LinalgScalar>(x: ArrayView2<T>, w: ArrayView2<T>, y: &mut ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &x, &w, T::one(), y);
}

/// Sparse weights converted to the runtime's float type, kept next to the structure.
#[derive(Clone, Debug)]
pub struct SparseRows<T> {
    pub row_ptr: Vec<usize>,
    pub col: Vec<u32>,
    /// One a synapse, in `col`'s order ([`SparseRows::weight`]; written through
    /// [`SparseRows::weight_mut`] or [`SparseRows::set_weights`]).
    weight: Vec<T>,
    /// The weight of every synapse when all are the same (`weight 6 nS`): delivery then
    /// adds it without reading `weight`, streaming half the bytes of a row.
    uniform: Option<T>,
    /// Columns increase within every row, so a range of targets is found by bisection.
    sorted: bool,
    /// Where each row's entries of each chunk of targets lie, found once
    /// ([`SparseRows::split_columns`]) instead of by bisection at every spike.
    split: Option<ColumnSplit>,
    /// The same at finer bounds, the cells that chunks are runs of, bound by bound:
    /// what a chunk's bound moved to another cell's copies into the split
    /// ([`SparseRows::move_split_on`]).
    cells: Option<CellColumns>,
    /// Every entry's column in 16 bits ([`SparseRows::split_columns`]): with a split,
    /// its offset from the split's first column modulo 2^16 (the split has a cell bound
    /// at every multiple of 2^16 from there, so a cell's entries share the rest); without
    /// one, the column itself where every column is under 2^16. What delivery reads
    /// instead of `col`, half the bytes (a step's rows are mostly cache misses, and half
    /// as many bytes stay twice as long in the shared cache).
    narrow: Option<Vec<u16>>,
}

/// Runs `job(b)` for each block b in 0..count, on any threads ([`SparseRows::move_split_on`]).
pub(crate) type RunBlocks<'a> = &'a dyn Fn(usize, &(dyn Fn(usize) + Sync));

/// The entries of each row that fall in each of `k` contiguous ranges of columns (the
/// chunks that threads deliver into, cut at the epochs of [`SparseRows::narrow`]): row
/// i's entries for ranges a..b are `at[i * (k + 1) + a]..at[i * (k + 1) + b]`, the
/// ends of all on a cache line mostly (delivery reads them for every spiking row).
#[derive(Clone, Debug)]
struct ColumnSplit {
    /// The ranges' first columns, then the last one's end.
    bounds: Vec<usize>,
    /// Entry positions (u32: a split is only made for fewer than 2^32 entries).
    at: Vec<u32>,
}

/// [`ColumnSplit`] at the cells' bounds, bound by bound: row i's first entry at or past
/// bound c is `row_ptr[i] + at[c * rows + i]` (a bound's column is copied whole into
/// the split; 16 bits, as rows of fewer than 2^16 entries have).
#[derive(Clone, Debug)]
struct CellColumns {
    bounds: Vec<usize>,
    at: Vec<u16>,
}

/// The bounds of contiguous `ranges` and every 2^16th column from their start, in
/// order; `None` if they are not contiguous.
fn bounds_with_epochs(ranges: &[Range<usize>]) -> Option<Vec<usize>> {
    if ranges.is_empty() || ranges.windows(2).any(|w| w[0].end != w[1].start) {
        return None;
    }
    let (origin, end) = (ranges[0].start, ranges[ranges.len() - 1].end);
    let mut bounds: Vec<usize> = ranges.iter().map(|c| c.start).chain([end]).collect();
    bounds.extend((origin + EPOCH..end).step_by(EPOCH));
    bounds.sort_unstable();
    Some(bounds)
}

/// 16-bit columns repeat every this many columns (an epoch: [`SparseRows::narrow`]).
const EPOCH: usize = 1 << 16;

/// A range of columns as cells of the split: per epoch it crosses, its first and end
/// cells and what to add to a 16-bit column to index the range (wrapping: the epoch
/// may start before the range).
pub(crate) type Span = SmallVec<[(usize, usize, usize); 4]>;

impl<T> SparseRows<T> {
    /// The weights, one a synapse in `col`'s order.
    pub fn weight(&self) -> &[T] {
        &self.weight
    }

    /// The weights to change in place, for as long as they may change (plasticity):
    /// delivery reads each synapse's weight from now on.
    pub fn weight_mut(&mut self) -> &mut [T] {
        self.uniform = None;
        &mut self.weight
    }

    /// `cols` as cells of the split ([`SparseRows::split_columns`]), if it starts and
    /// ends on their bounds: any run of cells, so that a thread's chunk can grow or
    /// shrink by cells without the rows being split again (`balance.rs`).
    pub(crate) fn span_of(&self, cols: &Range<usize>) -> Option<Span> {
        let s = self.split.as_ref()?;
        // (Cells may be empty, so several bounds may be one column: the first at the
        // start, the last at the end.)
        let a = s.bounds.partition_point(|&b| b < cols.start);
        let b = s.bounds.partition_point(|&b| b <= cols.end).checked_sub(1)?;
        if s.bounds.get(a) != Some(&cols.start) || s.bounds[b] != cols.end || a > b {
            return None;
        }
        let origin = s.bounds[0];
        let epoch = |k: usize| (s.bounds[k] - origin) / EPOCH;
        let mut span = Span::new();
        let mut from = a;
        for k in a..=b {
            // (Every epoch's first column is a bound: a cell lies in one epoch.)
            if k == b || (k > from && epoch(k) != epoch(from)) {
                if k > from || span.is_empty() {
                    span.push((from, k, (origin + epoch(from) * EPOCH).wrapping_sub(cols.start)));
                }
                from = k;
            }
        }
        Some(span)
    }

    /// Row `i`'s entries in cells `a..b` of the split.
    #[inline(always)]
    fn row_of_cells(&self, i: usize, a: usize, b: usize) -> Range<usize> {
        let s = self.split.as_ref().expect("a split");
        let at = i * s.bounds.len();
        s.at[at + a] as usize..s.at[at + b] as usize
    }
}

impl<T: Real> SparseRows<T> {
    pub fn from_csr(c: &Csr, conv: impl Fn(f64) -> T) -> SparseRows<T> {
        SparseRows::from_owned_csr(c.clone(), conv)
    }

    /// [`SparseRows::from_csr`], taking the structure over instead of copying it (a
    /// network's sparse projection is built this way, without a second copy).
    pub fn from_owned_csr(c: Csr, conv: impl Fn(f64) -> T) -> SparseRows<T> {
        let weight: Vec<T> = c.weight.iter().map(|w| conv(*w)).collect();
        let sorted = c.row_ptr.windows(2).all(|r| c.col[r[0]..r[1]].windows(2).all(|w| w[0] < w[1]));
        let uniform = uniform_value(&weight);
        SparseRows { row_ptr: c.row_ptr, col: c.col, weight, uniform, sorted, split: None, cells: None, narrow: None }
    }

    /// Finds where each row's entries of each chunk of targets `chunks` (contiguous, in
    /// order) lie, so that a thread delivering into one reads its part of a row without
    /// a bisection: two row lookups and the cache misses of a bisection per spike and
    /// chunk are most of what a second thread adds to delivery. The chunks are cut
    /// further at every 2^16th column from their start (the 16-bit columns' epochs).
    /// Nothing is kept for one chunk or unsorted rows.
    ///
    /// It takes 4 (chunks + 1) bytes a row, so it is not made where that is more than the
    /// rows' columns take (chunks as many as the entries of a row), nor for 2^32 entries
    /// or more.
    #[cfg(test)]
    pub(crate) fn split_columns(&mut self, chunks: &[Range<usize>]) {
        self.split_cells(chunks, chunks);
    }

    /// [`SparseRows::split_columns`] at `chunks`, each a run of `cells` (finer, over the
    /// same columns), whose bounds are kept too, bound by bound: then a chunk's bound
    /// moves to another cell's by copying ([`SparseRows::move_split_on`]), not by a search
    /// in every row. (Cells in the split itself would spread each row's two ends over
    /// more cache lines and the split over ten times the bytes: two-thread runs 6-13 %
    /// slower at 40,000 neurons, docs/benchmarks.md, sixteenth round.) The cells are
    /// kept where they take at most 8 bytes an entry and every row has fewer than 2^16
    /// entries.
    pub(crate) fn split_cells(&mut self, cells: &[Range<usize>], chunks: &[Range<usize>]) {
        self.split = None;
        self.cells = None;
        self.narrow = None;
        let (rows, entries) = (self.row_ptr.len() - 1, self.col.len());
        if chunks.len() == 1 && chunks[0].start == 0 {
            // (Columns from 0 in 16 bits: every one under 2^16.)
            self.narrow = if chunks[0].len() <= EPOCH { self.narrowed() } else { None };
            return;
        }
        let Some(bounds) = bounds_with_epochs(chunks).filter(|_| chunks.len() >= 2 && self.sorted) else { return };
        if bounds.len() * rows > entries || u32::try_from(entries).is_err() {
            return;
        }
        let short = self.row_ptr.windows(2).all(|r| r[1] - r[0] <= u16::MAX as usize);
        let fine = bounds_with_epochs(cells).filter(|c| {
            short && cells.len() > chunks.len() && c[0] == bounds[0] && c[c.len() - 1] == bounds[bounds.len() - 1] && c.len() * rows <= 4 * entries && bounds.iter().all(|b| c.binary_search(b).is_ok())
        });
        if let Some(fine) = fine {
            let mut at = vec![0u16; fine.len() * rows];
            for (i, r) in self.row_ptr.windows(2).enumerate() {
                let row = &self.col[r[0]..r[1]];
                for (c, &b) in fine.iter().enumerate() {
                    at[c * rows + i] = row.partition_point(|&col| (col as usize) < b) as u16;
                }
            }
            self.cells = Some(CellColumns { bounds: fine, at });
        }
        let at = self.split_table(&bounds);
        self.split = Some(ColumnSplit { bounds, at });
        self.narrow = self.narrowed();
    }

    /// The split's entries at `bounds`, found in every row.
    fn split_table(&self, bounds: &[usize]) -> Vec<u32> {
        let mut at = Vec::with_capacity((self.row_ptr.len() - 1) * bounds.len());
        for r in self.row_ptr.windows(2) {
            let row = &self.col[r[0]..r[1]];
            at.extend(bounds.iter().map(|&b| (r[0] + row.partition_point(|&c| (c as usize) < b)) as u32));
        }
        at
    }

    /// Whether the split can move to other runs of its cells ([`SparseRows::move_split_on`]:
    /// there are cells only beside a split).
    pub(crate) fn has_cells(&self) -> bool {
        self.cells.is_some()
    }

    /// [`SparseRows::move_split_on`] on this thread alone.
    #[cfg(test)]
    pub(crate) fn move_split(&mut self, chunks: &[Range<usize>]) -> bool {
        self.move_split_on(chunks, 1, &|blocks, job| (0..blocks).for_each(job))
    }

    /// Moves the split to `chunks`, runs of the cells of [`SparseRows::split_cells`] (as
    /// many chunks, the same columns): each bound that moved is copied from the cells'
    /// (a few tens of microseconds at 40,000 neurons, about a millisecond at 400,000).
    /// Whether it could. The copies run in about `blocks` blocks of rows: `run(count,
    /// job)` must call `job(b)` once for each block b in 0..count, on any threads
    /// (`Network::move_bounds` runs them on the pool, whose threads would otherwise wait).
    pub(crate) fn move_split_on(&mut self, chunks: &[Range<usize>], blocks: usize, run: RunBlocks<'_>) -> bool {
        let (Some(cells), Some(split)) = (&self.cells, &self.split) else { return false };
        let Some(bounds) = bounds_with_epochs(chunks) else { return false };
        if bounds.len() != split.bounds.len() || bounds.iter().any(|b| cells.bounds.binary_search(b).is_err()) {
            return false;
        }
        let (rows, k) = (self.row_ptr.len() - 1, bounds.len());
        let moved: Vec<(usize, usize)> = (0..k).filter(|&j| bounds[j] != split.bounds[j]).map(|j| (j, cells.bounds.binary_search(&bounds[j]).expect("checked"))).collect();
        let (cells_at, row_ptr) = (&cells.at, &self.row_ptr);
        let split = self.split.as_mut().expect("checked");
        // Each block's rows of the split, behind a lock that only its job takes.
        let per = rows.div_ceil(blocks.max(1)).max(1);
        let parts: Vec<std::sync::Mutex<&mut [u32]>> = split.at.chunks_mut(per * k).map(std::sync::Mutex::new).collect();
        let job = |b: usize| {
            let Some(part) = parts.get(b) else { return };
            let mut at = part.lock().unwrap_or_else(|e| e.into_inner());
            let first = b * per;
            for &(j, c) in &moved {
                let from = &cells_at[c * rows + first..];
                for ((slot, &v), &r) in at.chunks_exact_mut(k).zip(from).zip(&row_ptr[first..]) {
                    slot[j] = (r + v as usize) as u32;
                }
            }
        };
        run(parts.len(), &job);
        drop(parts);
        split.bounds = bounds;
        true
    }

    /// [`SparseRows::narrow`] for the split as it is (without one, if every column fits
    /// 16 bits).
    fn narrowed(&self) -> Option<Vec<u16>> {
        let mut narrow = Vec::with_capacity(self.col.len());
        match &self.split {
            Some(s) => {
                // (A partitioned network's rows hold only columns of its cells.)
                let origin = s.bounds[0];
                if self.col.iter().any(|&c| (c as usize) < origin || c as usize >= s.bounds[s.bounds.len() - 1]) {
                    return None;
                }
                narrow.extend(self.col.iter().map(|&c| ((c as usize - origin) % EPOCH) as u16));
            }
            None => {
                for &col in &self.col {
                    narrow.push(u16::try_from(col).ok()?);
                }
            }
        }
        // (A partitioned network's rows may hold no entry outside its chunks; if one did,
        // the chunks would not cover every entry.)
        (narrow.len() == self.col.len()).then_some(narrow)
    }

    /// Changes the weights once (`f` writes them), then checks again whether all are equal.
    pub fn set_weights(&mut self, f: impl FnOnce(&mut [T])) {
        f(&mut self.weight);
        self.uniform = uniform_value(&self.weight);
    }

    /// Keeps the entries whose column lies in `cols` (a process's targets, `partition.rs`);
    /// returns the places the kept entries had, in order.
    pub(crate) fn keep_columns(&mut self, cols: &Range<usize>) -> Vec<usize> {
        let mut kept = Vec::new();
        let mut row_ptr = Vec::with_capacity(self.row_ptr.len());
        row_ptr.push(0);
        for r in self.row_ptr.windows(2) {
            kept.extend((r[0]..r[1]).filter(|&k| cols.contains(&(self.col[k] as usize))));
            row_ptr.push(kept.len());
        }
        self.col = kept.iter().map(|&k| self.col[k]).collect();
        self.weight = kept.iter().map(|&k| self.weight[k]).collect();
        self.row_ptr = row_ptr;
        self.split = None;
        self.cells = None;
        self.narrow = None;
        kept
    }

    /// The entries of row `i` whose column may lie in `cols` (all of them when the row
    /// is not sorted; the caller checks each column then).
    fn row_within(&self, i: usize, cols: &Range<usize>, n_post: usize) -> Range<usize> {
        let r = self.row_ptr[i]..self.row_ptr[i + 1];
        if !self.sorted || (cols.start == 0 && cols.end >= n_post) {
            return r;
        }
        let row = &self.col[r.clone()];
        let lo = row.partition_point(|&c| (c as usize) < cols.start);
        let hi = lo + row[lo..].partition_point(|&c| (c as usize) < cols.end);
        r.start + lo..r.start + hi
    }
}

/// Spiking sources ahead of the one being delivered whose row pointers ([`ROW_AHEAD`]
/// after it) and rows ([`ROW_AHEAD`] / 2 after it) are fetched into the cache.
const ROW_AHEAD: usize = 16;
/// Cache lines of a row fetched ahead at most (the hardware prefetcher follows a row
/// once it is read).
const ROW_LINES: usize = 8;

/// Asks for the cache line holding `p`; never faults, so `p` may be anywhere.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and never faults.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl<T> SparseRows<T> {
    /// Event-driven delivery reads the rows of the sources that spiked, scattered over the
    /// whole matrix: past the last-level cache each row's pointer and first line are a
    /// wait on memory, most of a step's delivery at 400k neurons (perf, docs/benchmarks.md).
    /// Called at the `k`-th of `active`, fetches the pointers and rows of later ones (their
    /// entries in `chunk` of the split, when given).
    #[inline(always)]
    fn prefetch_ahead(&self, active: &[u32], k: usize, chunk: Option<(usize, usize)>, narrow: bool) {
        if let Some(&far) = active.get(k + ROW_AHEAD) {
            self.prefetch_bounds(far as usize, chunk);
        }
        if let Some(&near) = active.get(k + ROW_AHEAD / 2) {
            self.prefetch_row(near as usize, chunk, narrow);
        }
    }

    /// Before the first of `active` is delivered, what [`SparseRows::prefetch_ahead`]
    /// would have fetched by then: without it the first [`ROW_AHEAD`] / 2 rows of every
    /// step are each a wait on memory, most of the rows a step reads at 40k neurons
    /// (about 40 spikes a step in all). The pointers are all asked for first, so that
    /// their misses overlap.
    #[inline(always)]
    fn prefetch_start(&self, active: &[u32], chunk: Option<(usize, usize)>, narrow: bool) {
        for &i in active.iter().take(ROW_AHEAD) {
            self.prefetch_bounds(i as usize, chunk);
        }
        for &i in active.iter().take(ROW_AHEAD / 2) {
            self.prefetch_row(i as usize, chunk, narrow);
        }
    }

    /// Fetches where row `i` (its part in cells `chunk`, when given) starts and ends.
    #[inline(always)]
    fn prefetch_bounds(&self, i: usize, chunk: Option<(usize, usize)>) {
        match (chunk, &self.split) {
            (Some((a, b)), Some(s)) => {
                let row = s.at.as_ptr().wrapping_add(i * s.bounds.len());
                prefetch(row.wrapping_add(a));
                prefetch(row.wrapping_add(b));
            }
            _ => prefetch(self.row_ptr.as_ptr().wrapping_add(i)),
        }
    }

    /// Fetches the first [`ROW_LINES`] lines of row `i`'s columns (the narrow ones when
    /// delivery reads those) and weights (its part in `chunk`, when given).
    #[inline(always)]
    fn prefetch_row(&self, i: usize, chunk: Option<(usize, usize)>, narrow: bool) {
        let row = match chunk {
            Some((a, b)) => self.row_of_cells(i, a, b),
            None => self.row_ptr[i]..self.row_ptr[i + 1],
        };
        match self.narrow.as_deref().filter(|_| narrow) {
            Some(n) => prefetch_lines(n, row.clone()),
            None => prefetch_lines(&self.col, row.clone()),
        }
        if self.uniform.is_none() {
            prefetch_lines(&self.weight, row);
        }
    }
}

/// Fetches the cache lines that hold `v[r]`, the first [`ROW_LINES`] of them: counted
/// from the line of `r.start`, not in steps of a line's elements from it, which miss
/// the last line of a range that starts inside one (most row parts of a chunk do).
#[inline(always)]
fn prefetch_lines<T>(v: &[T], r: Range<usize>) {
    if r.is_empty() {
        return;
    }
    let first = v.as_ptr().wrapping_add(r.start) as usize & !63;
    let last = v.as_ptr().wrapping_add(r.end - 1) as usize;
    for line in (first..=last).step_by(64).take(ROW_LINES) {
        prefetch(line as *const u8);
    }
}

/// The value of every element of `w` when all are the same bits (so that adding it is
/// adding each: a +0 and a -0 differ), else `None`.
fn uniform_value<T: Real>(w: &[T]) -> Option<T> {
    let first = *w.first()?;
    let bits = first.to_f64().to_bits();
    w.iter().all(|x| x.to_f64().to_bits() == bits).then_some(first)
}

/// Event-driven propagation: only the rows of presynaptic neurons that spiked are read.
/// `spikes` lists the indices of spiking neurons of one batch element; `y` is that
/// element's port accumulator.
pub fn sparse_events<T: Copy + std::ops::AddAssign>(rows: &SparseRows<T>, spikes: &[u32], y: &mut [T]) {
    for &i in spikes {
        let r = rows.row_ptr[i as usize]..rows.row_ptr[i as usize + 1];
        for (c, w) in rows.col[r.clone()].iter().zip(&rows.weight[r]) {
            y[*c as usize] += *w;
        }
    }
}

/// `y[i] += w[i] * x[i]`.
pub fn one_to_one<T: Copy + std::ops::AddAssign + std::ops::Mul<Output = T>>(w: &[T], x: &[T], y: &mut [T]) {
    for ((yi, wi), xi) in y.iter_mut().zip(w).zip(x) {
        *yi += *wi * *xi;
    }
}

/// Delayed delivery: contributions computed at step t land in the port at t + d.
/// Slot `(t + d) mod len` accumulates; the port reads and clears slot `t mod len`.
#[derive(Clone, Debug)]
pub struct DelayRing<T> {
    slots: Vec<Array2<T>>,
    delay: usize,
}

impl<T: Clone + Default> DelayRing<T> {
    /// `delay` in steps (>= 1), for a (batch, n_post) port.
    pub fn new(delay: usize, batch: usize, n_post: usize) -> DelayRing<T> {
        let delay = delay.max(1);
        DelayRing { slots: (0..=delay).map(|_| Array2::from_elem((batch, n_post), T::default())).collect(), delay }
    }

    /// Empties every slot (nothing in flight).
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.fill(T::default());
        }
    }

    /// The delay in steps (the ring has `delay + 1` slots).
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// The accumulator for contributions emitted at step `t`.
    pub fn emit_slot(&mut self, t: usize) -> &mut Array2<T> {
        let n = self.slots.len();
        &mut self.slots[(t + self.delay) % n]
    }

    /// Adds `v` to element (b, j) of what arrives at step `t + d` (`d` at most the ring's
    /// delay): a synapse with a delay of its own.
    #[inline]
    pub fn add_after(&mut self, t: usize, d: usize, b: usize, j: usize, v: T)
    where
        T: std::ops::AddAssign + Copy,
    {
        let n = self.slots.len();
        self.slots[(t + d) % n][[b, j]] += v;
    }

    /// The slots of step `t` as raw pointers to their `batch * n_post` values: where
    /// contributions emitted at `t` go, and what arrives at `t` (see [`arrive_into`]).
    pub(crate) fn slot_ptrs(&mut self, t: usize) -> (*mut T, *mut T) {
        let n = self.slots.len();
        let emit = self.slots[(t + self.delay) % n].as_mut_ptr();
        (emit, self.slots[t % n].as_mut_ptr())
    }

    /// Takes what arrives at step `t` (the slot is cleared for reuse).
    pub fn arrive(&mut self, t: usize, into: &mut ArrayViewMut2<T>)
    where
        T: std::ops::AddAssign + Copy,
    {
        let n = self.slots.len();
        let slot = &mut self.slots[t % n];
        ndarray::Zip::from(into).and(&mut *slot).for_each(|d, s| {
            *d += *s;
            *s = T::default();
        });
    }
}

/// Adds what arrives (`slot`, laid out as `into`) to the columns of `into` and clears
/// them in the slot.
///
/// # Safety
/// As [`Target::row`], for `into` and for the same columns of `slot`.
pub(crate) unsafe fn arrive_into<T: std::ops::AddAssign + Copy + Default>(slot: *mut T, into: &Target<T>) {
    let from = Target { ptr: slot, n_post: into.n_post, batch: into.batch, cols: into.cols.clone() };
    for b in 0..into.batch {
        // SAFETY: forwarded to the caller.
        let (y, s) = unsafe { (into.row(b), from.row(b)) };
        for (d, v) in y.iter_mut().zip(s) {
            *d += *v;
            *v = T::default();
        }
    }
}

/// A projection's weights, in the layout its propagation kernel wants.
pub(crate) enum Weights<T> {
    Dense(ndarray::Array2<T>),
    Sparse(SparseRows<T>),
    OneToOne(Vec<T>),
    /// Nothing stored: the rows of the spiking sources are drawn again at each spike.
    Procedural(Procedural<T>),
}

/// Procedural fixed-probability connectivity (`procedural p = P`): the synapses and
/// weights of the stored `sparse p = P` projection with the same seed, regenerated
/// from the counter-based draws whenever a source spikes; memory flat in the synapse
/// count. `fold` converts a drawn weight as the stored projection does (its sign, then
/// the run's float type), so both deliver the same values in the same order.
pub(crate) struct Procedural<T> {
    pub draws: crate::connectivity::FixedProbability,
    pub init: snnc_compiler::sema::Init,
    pub rng: snnc_compiler::rng::Rng,
    pub fold: fn(Option<snnc_compiler::syntax::ast::Sign>, f64) -> T,
    pub sign: Option<snnc_compiler::syntax::ast::Sign>,
}

impl<T: Real + std::ops::AddAssign + std::ops::Mul<Output = T>> Procedural<T> {
    /// `y += x W` for one batch element, over the non-zero entries `active` of x, into
    /// the columns `cols` (`y` holds those).
    fn deliver(&self, active: &[u32], x: &[T], cols: &Range<usize>, y: &mut [T]) {
        for &i in active {
            let xi = x[i as usize];
            let one = xi.to_f64() == 1.0;
            self.draws.row(i as usize, &self.init, &self.rng, |c, w| {
                if cols.contains(&(c as usize)) {
                    let w = (self.fold)(self.sign, w);
                    y[c as usize - cols.start] += if one { w } else { w * xi };
                }
            });
        }
    }
}

/// The non-zero entries of a source: per batch element, their indices in increasing
/// order; and whether each of them is exactly 1 (spikes), so that delivery need not
/// read the values (lines another thread is writing, or about to).
#[derive(Clone, Copy)]
pub(crate) struct Active<'a> {
    pub(crate) lists: &'a [Vec<u32>],
    pub(crate) ones: bool,
}

/// Where a projection delivers: `batch` rows of `n_post` values from `ptr`, of which
/// only the columns `cols` are written (a thread's share of the targets).
pub(crate) struct Target<T> {
    pub ptr: *mut T,
    pub n_post: usize,
    pub batch: usize,
    pub cols: Range<usize>,
}

impl<T> Target<T> {
    /// Columns `cols` of row `b`.
    ///
    /// # Safety
    /// `ptr` points to `batch * n_post` live values, `b < batch`, and nothing else reads
    /// or writes these columns while the slice lives.
    pub(crate) unsafe fn row<'a>(&self, b: usize) -> &'a mut [T] {
        // SAFETY: as the caller promises; cols lies within 0..n_post.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(b * self.n_post + self.cols.start), self.cols.len()) }
    }
}

/// `out += x W` for one projection, into the columns `out.cols` only, with the kernel its
/// connectivity calls for. `active` lists the non-zero entries of `src` per batch element
/// when they are known.
///
/// # Safety
/// As [`Target::row`], for every row of `out`.
pub(crate) unsafe fn deliver<T>(weights: &Weights<T>, src: &[T], active: Option<Active>, n_pre: usize, out: &Target<T>)
where
    T: Real + std::ops::AddAssign + std::ops::Mul<Output = T> + ndarray::LinalgScalar,
{
    let (batch, n_post, cols) = (out.batch, out.n_post, out.cols.clone());
    match weights {
        // Spikes are mostly zeros: adding the rows of the neurons that fired is far
        // cheaper than a GEMM with the whole 0/1 vector (event-driven dense).
        Weights::Dense(w) if active.is_some_and(|a| a.lists.iter().map(Vec::len).sum::<usize>() * 4 < batch * n_pre) => {
            let a = active.expect("checked");
            let w = w.as_slice().expect("row-major weights");
            for b in 0..batch {
                // SAFETY: forwarded to the caller.
                let y = unsafe { out.row(b) };
                for &i in &a.lists[b] {
                    let row = &w[i as usize * n_post + cols.start..i as usize * n_post + cols.end];
                    let xi = if a.ones { T::one() } else { src[b * n_pre + i as usize] };
                    for (yo, wo) in y.iter_mut().zip(row) {
                        *yo += *wo * xi;
                    }
                }
            }
        }
        Weights::Dense(w) => {
            let x = ArrayView2::from_shape((batch, n_pre), src).expect("input shape");
            // SAFETY: forwarded to the caller: rows of n_post values, columns `cols` of each.
            let mut y = unsafe { ArrayViewMut2::from_shape_ptr((batch, cols.len()).strides((n_post, 1)), out.ptr.add(cols.start)) };
            dense(x, w.slice(s![.., cols.clone()]), &mut y);
        }
        Weights::Sparse(rows) => {
            for b in 0..batch {
                // (A source of ones may come without its values: `Network::source`.)
                let x = src.get(b * n_pre..(b + 1) * n_pre).unwrap_or_default();
                // SAFETY: forwarded to the caller.
                let y = unsafe { out.row(b) };
                match active {
                    Some(a) => sparse_weighted(rows, &a.lists[b], a.ones.then_some(T::one()), x, &cols, n_post, y),
                    None => {
                        let a: Vec<u32> = (0..n_pre).filter(|&i| x[i].to_f64() != 0.0).map(|i| i as u32).collect();
                        sparse_weighted(rows, &a, None, x, &cols, n_post, y);
                    }
                }
            }
        }
        Weights::OneToOne(w) => {
            for b in 0..batch {
                // SAFETY: forwarded to the caller.
                let y = unsafe { out.row(b) };
                one_to_one(&w[cols.clone()], &src[b * n_pre + cols.start..b * n_pre + cols.end], y);
            }
        }
        Weights::Procedural(g) => {
            for b in 0..batch {
                let x = &src[b * n_pre..(b + 1) * n_pre];
                // SAFETY: forwarded to the caller.
                let y = unsafe { out.row(b) };
                match active {
                    Some(a) => g.deliver(&a.lists[b], x, &cols, y),
                    None => {
                        let a: Vec<u32> = (0..n_pre).filter(|&i| x[i].to_f64() != 0.0).map(|i| i as u32).collect();
                        g.deliver(&a, x, &cols, y);
                    }
                }
            }
        }
    }
}

/// `x W` with a delay per synapse: synapse k (sparse order) read at step `t` arrives
/// at step `t + delays[k]`, through `ring`. Event-driven over the non-zero entries of
/// `src` (`active` when known).
#[allow(clippy::too_many_arguments)]
pub(crate) fn propagate_delayed<T: Float>(rows: &SparseRows<T>, delays: &[u32], src: &[T], active: Option<Active>, n_pre: usize, batch: usize, ring: &mut DelayRing<T>, t: usize) {
    for b in 0..batch {
        let x = &src[b * n_pre..(b + 1) * n_pre];
        let mut emit = |idx: &[u32]| {
            for &i in idx {
                let xi = x[i as usize];
                for k in rows.row_ptr[i as usize]..rows.row_ptr[i as usize + 1] {
                    ring.add_after(t, delays[k] as usize, b, rows.col[k] as usize, rows.weight[k] * xi);
                }
            }
        };
        match active {
            Some(a) => emit(&a.lists[b]),
            None => emit(&(0..n_pre).filter(|&i| x[i].to_f64() != 0.0).map(|i| i as u32).collect::<Vec<_>>()),
        }
    }
}

/// Appends the indices of the non-zero entries of `spikes` (NaN included), plus `base`,
/// to `out`; whether each of them is exactly 1. Spikes are rare (a few per thousand
/// neurons and step): with AVX-512 or AVX2, one compare per 16 or 8 values (AVX2: 8 or
/// 4) gives the bits of those that are not zero; elsewhere blocks of 16 whose bits are
/// all zero (every value +0) are skipped after one branch-free OR. `down`: the spikes are read from the
/// last to the first (a thread's share that its kernel steps down, `parallel::runs_down`:
/// its streams then end away from the next thread's share); the indices appended are in
/// ascending order either way.
pub(crate) fn active_indices<T: Float>(spikes: &[T], base: usize, out: &mut Vec<u32>, down: bool) -> bool {
    let from = out.len();
    let ones = match T::nonzero_indices_simd(spikes, base, out, down) {
        Some(ones) => ones,
        None => active_indices_portable(spikes, base, out, down),
    };
    if down {
        out[from..].reverse();
    }
    ones
}

/// [`active_indices`] without vector instructions (appending in the order it reads).
fn active_indices_portable<T: Float>(spikes: &[T], base: usize, out: &mut Vec<u32>, down: bool) -> bool {
    let mut ones = true;
    let mut block = |blk: usize, c: &[T]| {
        if !T::any_bits(c) {
            return;
        }
        let mut push = |(i, v): (usize, &T)| {
            ones &= v.to_f64() == 1.0;
            out.push((base + blk * 16 + i) as u32);
        };
        let nonzero = |(_, v): &(usize, &T)| v.to_f64() != 0.0;
        if down {
            c.iter().enumerate().rev().filter(nonzero).for_each(&mut push);
        } else {
            c.iter().enumerate().filter(nonzero).for_each(&mut push);
        }
    };
    if down {
        spikes.chunks(16).enumerate().rev().for_each(|(k, c)| block(k, c));
    } else {
        spikes.chunks(16).enumerate().for_each(|(k, c)| block(k, c));
    }
    ones
}

/// Sparse propagation of real-valued presynaptic activity into the columns `cols` (`y`
/// holds those): event-driven over the non-zero entries, whose values are `x`'s or,
/// given, `every` one's (spikes are 1, so the weight is added as is).
fn sparse_weighted<T: Real + std::ops::AddAssign + std::ops::Mul<Output = T>>(
    rows: &SparseRows<T>,
    active: &[u32],
    every: Option<T>,
    x: &[T],
    cols: &Range<usize>,
    n_post: usize,
    y: &mut [T],
) {
    let lo = cols.start;
    let whole = lo == 0 && cols.end >= n_post;
    let span = if whole { None } else { rows.span_of(cols) };
    // The cells' first and end, for a row's whole part in the range.
    let ends = span.as_ref().and_then(|s| Some((s.first()?.0, s.last()?.1)));
    // The narrow columns: a span's of the split (per epoch, from its base), or the
    // whole's when there is none (the columns themselves).
    let narrow = rows.narrow.as_deref().filter(|_| ends.is_some() || (whole && rows.split.is_none()));
    let whole_epoch = [(0, 0, 0usize)];
    let epochs: &[(usize, usize, usize)] = span.as_deref().unwrap_or(&whole_epoch);
    rows.prefetch_start(active, ends, narrow.is_some());
    for (k, &i) in active.iter().enumerate() {
        rows.prefetch_ahead(active, k, ends, narrow.is_some());
        let xi = every.unwrap_or_else(|| x[i as usize]);
        let one = xi.to_f64() == 1.0;
        if let Some(nw) = narrow {
            // Epoch by epoch (one, below 2^16 targets), each entry in the range.
            for &(a, b, base) in epochs {
                let r = match ends {
                    Some(_) => rows.row_of_cells(i as usize, a, b),
                    None => rows.row_within(i as usize, cols, n_post),
                };
                let entries = nw[r.clone()].iter();
                match (one, rows.uniform) {
                    (true, Some(w)) => entries.for_each(|c| y[base.wrapping_add(*c as usize)] += w),
                    (true, None) => entries.zip(&rows.weight[r]).for_each(|(c, w)| y[base.wrapping_add(*c as usize)] += *w),
                    (false, _) => entries.zip(&rows.weight[r]).for_each(|(c, w)| y[base.wrapping_add(*c as usize)] += *w * xi),
                }
            }
            continue;
        }
        let r = match ends {
            Some((a, b)) => rows.row_of_cells(i as usize, a, b),
            None => rows.row_within(i as usize, cols, n_post),
        };
        if let (true, true, Some(w)) = (one, whole || rows.sorted, rows.uniform) {
            // The same weight everywhere: the columns only.
            rows.col[r].iter().for_each(|c| y[*c as usize - lo] += w);
            continue;
        }
        let entries = rows.col[r.clone()].iter().zip(&rows.weight[r]);
        match (one, whole || rows.sorted) {
            (true, true) => entries.for_each(|(c, w)| y[*c as usize - lo] += *w),
            (false, true) => entries.for_each(|(c, w)| y[*c as usize - lo] += *w * xi),
            // Unsorted rows of a partial range: every column checked.
            (one, false) => {
                for (c, w) in entries.filter(|(c, _)| cols.contains(&(**c as usize))) {
                    y[*c as usize - lo] += if one { *w } else { *w * xi };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectivity::fixed_probability;
    use crate::rng::Rng;
    use ndarray::{Array2, array};
    use snnc_compiler::sema::Init;

    #[test]
    fn dense_matches_hand_product() {
        let x = array![[1.0f64, 0.0, 2.0]];
        let w = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let mut y = array![[0.5, 0.5]];
        dense(x.view(), w.view(), &mut y.view_mut());
        assert_eq!(y, array![[11.5, 14.5]]);
    }

    #[test]
    fn sparse_events_equal_dense_product_with_spike_vector() {
        let rng = Rng::new(3);
        let csr = fixed_probability(200, 150, 0.1, false, &Init::Normal { mean: 0.0, std: 1.0 }, &rng, 11);
        let rows = SparseRows::from_csr(&csr, |w| w);
        let spikes: Vec<u32> = (0..200).filter(|i| i % 7 == 0).collect();
        let mut y = vec![0.0f64; 150];
        sparse_events(&rows, &spikes, &mut y);
        let mut wd = Array2::<f64>::zeros((200, 150));
        for i in 0..200 {
            let (c, w) = csr.row(i);
            for (j, v) in c.iter().zip(w) {
                wd[[i, *j as usize]] = *v;
            }
        }
        let mut x = Array2::<f64>::zeros((1, 200));
        spikes.iter().for_each(|i| x[[0, *i as usize]] = 1.0);
        let mut yd = Array2::<f64>::zeros((1, 150));
        dense(x.view(), wd.view(), &mut yd.view_mut());
        for j in 0..150 {
            assert!((y[j] - yd[[0, j]]).abs() < 1e-12);
        }
    }

    /// Rows of one weight deliver it from their columns alone (`uniform`), and forget it
    /// as soon as their weights change: the same sums as reading every weight.
    #[test]
    fn rows_of_one_weight_deliver_it_until_the_weights_change() {
        let csr = fixed_probability(50, 40, 0.2, false, &Init::Const(0.25), &Rng::new(5), 3);
        let mut rows = SparseRows::from_csr(&csr, |w| w);
        assert_eq!(rows.uniform, Some(0.25));
        let spikes: Vec<u32> = (0..50).step_by(3).collect();
        let x = vec![1.0f64; 50];
        let check = |rows: &SparseRows<f64>| {
            let mut want = vec![0.0; 40];
            sparse_events(rows, &spikes, &mut want);
            // Values read, or known to be ones (then none is given).
            for (every, x) in [(None, &x[..]), (Some(1.0), &[][..])] {
                let mut y = vec![0.0; 40];
                sparse_weighted(rows, &spikes, every, x, &(0..40), 40, &mut y);
                assert_eq!(y, want);
                let mut part = vec![0.0; 20];
                sparse_weighted(rows, &spikes, every, x, &(10..30), 40, &mut part);
                assert_eq!(part, want[10..30]);
            }
        };
        check(&rows);
        rows.set_weights(|w| w.iter_mut().enumerate().for_each(|(k, w)| *w = k as f64));
        assert_eq!(rows.uniform, None);
        check(&rows);
        rows.set_weights(|w| w.fill(-0.5));
        assert_eq!(rows.uniform, Some(-0.5));
        check(&rows);
        rows.weight_mut()[0] = 3.0;
        assert_eq!(rows.uniform, None);
        check(&rows);
        // A +0 and a -0 are not one weight (adding them to -0 differs).
        rows.set_weights(|w| w.iter_mut().enumerate().for_each(|(k, w)| *w = if k == 0 { -0.0 } else { 0.0 }));
        assert_eq!(rows.uniform, None);
    }

    /// Rows split once at the chunks' columns deliver into each chunk what a bisection
    /// of every row finds, and a range that is not a chunk still bisects.
    #[test]
    fn rows_split_at_chunks_deliver_what_bisection_finds() {
        let csr = fixed_probability(300, 97, 0.3, false, &Init::Uniform { low: -1.0, high: 1.0 }, &Rng::new(9), 2);
        let mut rows = SparseRows::from_csr(&csr, |w| w);
        let spikes: Vec<u32> = (0..300).filter(|i| i % 7 != 3).collect();
        let x: Vec<f64> = (0..300).map(|i| 0.5 + (i % 5) as f64).collect();
        let chunks = [0..16, 16..64, 64..97];
        let deliver = |rows: &SparseRows<f64>, cols: &Range<usize>| {
            let mut y = vec![0.0; cols.len()];
            sparse_weighted(rows, &spikes, None, &x, cols, 97, &mut y);
            y
        };
        let want: Vec<Vec<f64>> = chunks.iter().map(|c| deliver(&rows, c)).collect();
        rows.split_columns(&chunks);
        assert!(rows.split.is_some());
        assert!(rows.narrow.is_some(), "chunks under 2^16 columns wide: delivery reads 16-bit columns");
        for (c, cols) in chunks.iter().enumerate() {
            assert_eq!(rows.span_of(cols).map(|s| s.to_vec()), Some(vec![(c, c + 1, 0usize.wrapping_sub(cols.start))]));
            assert_eq!(deliver(&rows, cols), want[c], "chunk {cols:?}");
        }
        assert_eq!(rows.span_of(&(16..50)), None);
        // Runs of cells: a chunk grown or shrunk by cells, with no new split.
        assert_eq!(rows.span_of(&(0..64)).map(|s| s.to_vec()), Some(vec![(0, 2, 0)]));
        let mut two = deliver(&rows, &(0..16));
        two.extend(deliver(&rows, &(16..64)));
        assert_eq!(deliver(&rows, &(0..64)), two);
        // An empty chunk (chunks smaller than the split's alignment make them) shares its
        // start with the next: each is still found by both ends.
        let with_empty = [0..16, 16..16, 16..64, 64..97];
        rows.split_columns(&with_empty);
        assert_eq!(rows.span_of(&(16..64)).map(|s| (s[0].0, s[0].1)), Some((1, 3)));
        assert_eq!(rows.span_of(&(16..16)).map(|s| (s[0].0, s[0].1)), Some((1, 2)));
        assert_eq!(deliver(&rows, &(16..64)), want[1]);
        // Cells over four times a row's entries: no split (it would outweigh the rows).
        // (Here rows of about 5 entries, cut in 97 cells.)
        let many: Vec<Range<usize>> = (0..97).map(|c| c..c + 1).collect();
        let mut thin = SparseRows::from_csr(&fixed_probability(300, 97, 0.05, false, &Init::Const(1.0), &Rng::new(9), 2), |w| w);
        thin.split_columns(&many);
        assert!(thin.split.is_none());
        thin.split_columns(&chunks);
        assert!(thin.split.is_some());
        rows.split_columns(&chunks);
        let mut whole = vec![0.0; 97];
        sparse_weighted(&rows, &spikes, None, &x, &(0..97), 97, &mut whole);
        assert_eq!(whole[16..50], deliver(&rows, &(16..50))[..]);
        // One chunk, the whole: no split, 16-bit columns from 0, the same deliveries.
        rows.split_columns(&[0..97]);
        assert!(rows.split.is_none() && rows.narrow.is_some());
        assert_eq!(deliver(&rows, &(0..97)), whole);
        // Columns kept by a partition: the split is dropped with the old structure.
        rows.keep_columns(&(0..64));
        assert!(rows.split.is_none() && rows.narrow.is_none());
    }

    /// Random f32 rows from `pre` sources to `n` targets (weights 0.5-1.5), and the
    /// sources of a step: those whose index is not `skip` modulo `every` (all ones).
    fn random_rows(pre: usize, n: usize, p: f64, seed: u64, every: u32, skip: u32) -> (SparseRows<f32>, Vec<u32>, Vec<f32>) {
        let csr = fixed_probability(pre, n, p, false, &Init::Uniform { low: 0.5, high: 1.5 }, &Rng::new(seed), 2);
        let spikes: Vec<u32> = (0..pre as u32).filter(|i| i % every != skip).collect();
        (SparseRows::<f32>::from_csr(&csr, |w| w as f32), spikes, vec![1.0f32; pre])
    }

    /// What `rows` deliver into targets `cols` of `n` from `spikes` of values `x`.
    fn delivered(rows: &SparseRows<f32>, spikes: &[u32], x: &[f32], cols: &Range<usize>, n: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; cols.len()];
        sparse_weighted(rows, spikes, None, x, cols, n, &mut y);
        y
    }

    /// 16-bit columns without a split only where every column is under 2^16; with one,
    /// modulo 2^16 from its start, the split cut at every 2^16th column: delivery into
    /// any run of cells is the same with them and without.
    #[test]
    fn narrow_columns_repeat_every_2_16_columns_of_a_split() {
        let n = 70_000;
        let (mut rows, spikes, x) = random_rows(40, n, 0.01, 3, 3, 0);
        let deliver = |rows: &SparseRows<f32>, cols: &Range<usize>| delivered(rows, &spikes, &x, cols, n);
        let whole = deliver(&rows, &(0..n));
        rows.split_columns(&[0..n]);
        assert!(rows.narrow.is_none(), "{n} columns in one chunk");
        assert_eq!(deliver(&rows, &(0..n)), whole);
        let halves = [0..n / 2, n / 2..n];
        rows.split_columns(&halves);
        assert!(rows.split.is_some() && rows.narrow.is_some(), "halves of {} columns", n / 2);
        for h in &halves {
            assert_eq!(deliver(&rows, h), whole[h.clone()], "{h:?}");
        }
        // Wider than 2^16, from a start that is not 0 (a partition's columns).
        let wide = 300_000;
        let (mut rows, spikes, x) = random_rows(60, wide, 0.002, 4, 4, 1);
        let deliver = |rows: &SparseRows<f32>, cols: &Range<usize>| delivered(rows, &spikes, &x, cols, wide);
        let whole = deliver(&rows, &(0..wide));
        let origin = 1000;
        rows.keep_columns(&(origin..wide));
        let cells: Vec<Range<usize>> = (0..8).map(|c| origin + (wide - origin) * c / 8..origin + (wide - origin) * (c + 1) / 8).collect();
        rows.split_columns(&cells);
        assert!(rows.split.is_some() && rows.narrow.is_some());
        for (a, b) in [(0, 8), (0, 1), (2, 7), (3, 4), (5, 8), (4, 4)] {
            let cols = cells[a].start..cells[b.max(1) - 1].end.max(cells[a].start);
            let span = rows.span_of(&cols).expect("a run of cells");
            assert_eq!(span.len(), (cols.end.max(cols.start + 1) - 1 - origin) / EPOCH - (cols.start - origin) / EPOCH + 1, "{cols:?}: one piece an epoch");
            assert_eq!(deliver(&rows, &cols), whole[cols.clone()], "{cols:?}");
        }
    }

    /// A split moved to other runs of its cells is the split made there (its bounds and
    /// entries), epochs of 2^16 columns included, and delivers the same; a chunk bound
    /// that is no cell's bound does not move it.
    #[test]
    fn a_split_moved_along_its_cells_is_the_split_made_there() {
        let n = 200_000;
        let (mut rows, spikes, x) = random_rows(50, n, 0.003, 6, 3, 2);
        let whole = delivered(&rows, &spikes, &x, &(0..n), n);
        let cells: Vec<Range<usize>> = (0..16).map(|c| crate::parallel::split_range(n, 16, c)).collect();
        let at = |cut: usize| vec![0..cells[cut].start, cells[cut].start..n];
        rows.split_cells(&cells, &at(8));
        assert!(rows.has_cells());
        for cut in [3, 13, 1, 8, 15] {
            assert!(rows.move_split(&at(cut)), "to cell {cut}");
            let mut fresh = rows.clone();
            fresh.split_columns(&at(cut));
            let (moved, made) = (rows.split.as_ref().unwrap(), fresh.split.as_ref().unwrap());
            assert_eq!((&moved.bounds, &moved.at), (&made.bounds, &made.at), "to cell {cut}");
            for c in at(cut) {
                assert_eq!(delivered(&rows, &spikes, &x, &c, n), whole[c.clone()], "{c:?}");
            }
        }
        assert!(!rows.move_split(&[0..1000, 1000..n]));
        assert!(!rows.move_split(&[0..cells[2].start, cells[2].start..cells[9].start, cells[9].start..n]), "as many chunks");
    }

    /// A move copied in blocks of rows on several threads (as `Network::move_bounds`
    /// does on its pool), whatever the blocks, is the move made on one.
    #[test]
    fn a_split_moved_in_blocks_on_threads_is_the_move_made_on_one() {
        let n = 20_000;
        let (mut rows, ..) = random_rows(37, n, 0.01, 6, 5, 2);
        let cells: Vec<Range<usize>> = (0..32).map(|c| crate::parallel::split_range(n, 32, c)).collect();
        let at = |a: usize, b: usize| vec![0..cells[a].start, cells[a].start..cells[b].start, cells[b].start..n];
        rows.split_cells(&cells, &at(10, 20));
        let threaded = |blocks: usize, job: &(dyn Fn(usize) + Sync)| std::thread::scope(|s| (0..blocks).rev().for_each(|b| drop(s.spawn(move || job(b)))));
        for blocks in [1, 2, 3, 8, 36, 100] {
            for (a, b) in [(3, 29), (3, 20), (12, 13)] {
                let mut one = rows.clone();
                assert!(one.move_split(&at(a, b)));
                let mut many = rows.clone();
                assert!(many.move_split_on(&at(a, b), blocks, &threaded), "{blocks} blocks");
                let (x, y) = (one.split.as_ref().unwrap(), many.split.as_ref().unwrap());
                assert_eq!((&x.bounds, &x.at), (&y.bounds, &y.at), "{blocks} blocks, to cells {a}, {b}");
            }
        }
    }

    #[test]
    fn delay_ring_delivers_after_d_steps() {
        let mut ring = DelayRing::<f32>::new(3, 1, 2);
        let mut got = vec![];
        for t in 0..8 {
            if t == 1 {
                ring.emit_slot(t)[[0, 1]] += 5.0;
            }
            let mut port = Array2::<f32>::zeros((1, 2));
            ring.arrive(t, &mut port.view_mut());
            got.push(port[[0, 1]]);
        }
        assert_eq!(got, vec![0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn active_indices_are_the_non_zero_spikes() {
        for n in [1usize, 15, 16, 17, 100] {
            for seed in 0..20u64 {
                let spikes: Vec<f64> = (0..n).map(|i| f64::from(u8::from((i as u64 * 2654435761 + seed * 97) % 23 == 0))).collect();
                let want: Vec<u32> = (0..n as u32).filter(|&i| spikes[i as usize] != 0.0).collect();
                for down in [false, true] {
                    // Appended after what the list holds.
                    let mut got = vec![99];
                    assert!(active_indices(&spikes, 0, &mut got, down));
                    assert_eq!(got[1..], want, "n = {n}, seed {seed}, down {down}");
                    let mut got32 = Vec::new();
                    assert!(active_indices(&spikes.iter().map(|&v| v as f32).collect::<Vec<_>>(), 7, &mut got32, down));
                    assert_eq!(got32, want.iter().map(|i| i + 7).collect::<Vec<_>>());
                }
            }
        }
        // Smooth spikes (a sigmoid in (0, 1)) are all active, and not all ones.
        for down in [false, true] {
            let mut got = Vec::new();
            assert!(!active_indices(&[0.2f32, 0.7, 1e-30], 0, &mut got, down));
            assert_eq!(got, vec![0, 1, 2]);
        }
        // Dense lists (many in one vector, every vector, its tail), both ways, f32 and
        // f64, dispatched and portable: in ascending order.
        for n in [1usize, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100, 130, 200] {
            for pattern in 0..4u64 {
                let s: Vec<f64> = (0..n as u64).map(|i| f64::from(u8::from(match pattern { 0 => true, 1 => i % 2 == 0, 2 => (i * 2654435761) % 7 < 3, _ => i % 9 != 4 }))).collect();
                let want: Vec<u32> = (0..n as u32).filter(|&i| s[i as usize] != 0.0).collect();
                let s32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
                for down in [false, true] {
                    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    assert!(active_indices(&s, 3, &mut a, down) && active_indices(&s32, 3, &mut b, down));
                    active_indices_portable(&s, 3, &mut c, down);
                    active_indices_portable(&s32, 3, &mut d, down);
                    if down {
                        c.reverse();
                        d.reverse();
                    }
                    let want3: Vec<u32> = want.iter().map(|i| i + 3).collect();
                    for (got, name) in [(&a, "f64"), (&b, "f32"), (&c, "portable f64"), (&d, "portable f32")] {
                        assert_eq!(*got, want3, "{name}, n {n}, pattern {pattern}, down {down}");
                    }
                }
            }
        }
        // Every position of a vector and its tail, each kind of value: -0 is zero, NaN
        // is not, and only 1 is one; the vector code (where the host has it) and the
        // portable one agree, read up or down.
        fn portable<T: Float>(s: &[T], base: usize, out: &mut Vec<u32>, down: bool) -> bool {
            let ones = active_indices_portable(s, base, out, down);
            if down {
                out.reverse();
            }
            ones
        }
        for (n, down) in [1usize, 8, 9, 16, 17, 33, 40, 64, 65, 130].into_iter().flat_map(|n| [(n, false), (n, true)]) {
            for at in 0..n {
                for (v, listed, one) in [(1.0f64, true, true), (-0.0, false, true), (f64::NAN, true, false), (-2.5, true, false), (1e-300, true, false)] {
                    let mut s = vec![0.0f64; n];
                    s[at] = v;
                    s[n - 1 - at] = if at == n - 1 - at { v } else { 1.0 };
                    let want: Vec<u32> = (0..n as u32).filter(|&i| s[i as usize] != 0.0 || s[i as usize].is_nan()).collect();
                    let s32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
                    let want32: Vec<u32> = (0..n as u32).filter(|&i| s32[i as usize] != 0.0).collect();
                    let one32 = want32.iter().all(|&i| s32[i as usize] == 1.0);
                    // The dispatching function (vector code where the host has it) and
                    // the portable one.
                    for (scan, name) in [(active_indices::<f64> as fn(&[f64], usize, &mut Vec<u32>, bool) -> bool, "dispatched"), (portable::<f64>, "portable")] {
                        let mut got = Vec::new();
                        assert_eq!(scan(&s, 0, &mut got, down), one, "{name}: {v} at {at} of {n}");
                        assert_eq!(got, want, "{name}: {v} at {at} of {n}");
                        assert_eq!(got.contains(&(at as u32)), listed, "{name}: {v} at {at} of {n}");
                    }
                    for (scan, name) in [(active_indices::<f32> as fn(&[f32], usize, &mut Vec<u32>, bool) -> bool, "dispatched"), (portable::<f32>, "portable")] {
                        let mut got32 = Vec::new();
                        assert_eq!(scan(&s32, 0, &mut got32, down), one32, "{name} f32: {v} at {at} of {n}");
                        assert_eq!(got32, want32, "{name} f32: {v} at {at} of {n}");
                    }
                }
            }
        }
    }
}
