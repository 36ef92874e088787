//! Chunk bounds that follow the threads' measured speeds.
//!
//! On shared machines one core often runs a third slower than the other for hundreds
//! of steps at a time (another guest on its sibling hardware thread: docs/benchmarks.md,
//! thirteenth round), and a step's stages wait for their slowest chunk; an even split
//! then leaves the fast thread idle for a third of its chunk. So each population that
//! several threads step is cut into [`CELLS_PER_CHUNK`] cells a chunk, where each row of
//! the projections into it is looked at once (`SparseRows::split_cells`), and every
//! [`WINDOW`] steps the network compares how long each chunk took per neuron and, where
//! it saves enough, moves the chunks' bounds to other cells' bounds: widths in
//! proportion to the speeds. A move searches no row (a bound's entries are copied from
//! the cells', `SparseRows::move_split_on`, on the pool: tens of microseconds at 40,000
//! neurons), so it can follow short spells; it is made once [`PERSIST`] windows in a row ask for one the
//! same way and it saves more over [`HORIZON`] steps than the last move cost (none in
//! the first [`WARM`] windows). What a
//! chunk computes does not depend on its bounds, so the spikes are those of one thread
//! whatever the bounds (tested).
//!
//! (An earlier try moved bounds to any multiple of 16 neurons and split the rows again
//! at each move, a millisecond at 40,000 neurons: slower than even bounds, since spells
//! end within a few windows. The patch is in `bench/attempts/`.)

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

/// Cells a chunk of an evenly split population starts with: the steps in which its
/// bounds move (a thirty-second of a population on two threads).
pub(crate) const CELLS_PER_CHUNK: usize = 16;
/// Steps over which chunk times are gathered before the bounds are looked at.
pub(crate) const WINDOW: u32 = 64;
/// Windows in a row that must ask for a move the same way before it is made.
const PERSIST: u32 = 2;
/// Steps a move must pay for itself within.
const HORIZON: f64 = 1024.0;
/// Windows after the bounds are laid out that move nothing: the first steps of a run
/// touch cold caches and pages unevenly, and a move asked for then would stay.
const WARM: u32 = 2;
/// A move must save at least this share of the population's slowest chunk.
const MIN_GAIN: f64 = 0.03;

/// A chunk's time at each step of a window (in the clock's ticks, [`now`]), on cache
/// lines of its own (written by the thread stepping it).
#[repr(align(64))]
struct Times([AtomicU32; WINDOW as usize]);

impl Default for Times {
    fn default() -> Times {
        Times(std::array::from_fn(|_| AtomicU32::new(0)))
    }
}

/// The chunk times of one window, and the moves asked for.
#[derive(Default)]
pub(crate) struct Balance {
    /// Per population and chunk (this process's), its times this window.
    ticks: Vec<Vec<Times>>,
    /// Pooled steps in this window, and the windows so far.
    steps: u32,
    windows: u32,
    /// Per population, the way the windows in a row so far asked its inner bounds to
    /// move (each one's sign), and how many.
    asked: Vec<(Vec<i8>, u32)>,
    /// Per population, what its last move took (ticks of [`now`]).
    pub(crate) cost: Vec<f64>,
}

/// A cheap clock for chunk times: the time-stamp counter where there is one (the same
/// rate on every core), else nanoseconds.
#[inline(always)]
pub(crate) fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the time-stamp counter; no memory is touched.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}

impl Balance {
    /// Empty timers for populations of `chunks[p]` chunks.
    pub(crate) fn new(chunks: &[usize]) -> Balance {
        Balance { ticks: chunks.iter().map(|&k| (0..k).map(|_| Times::default()).collect()).collect(), steps: 0, windows: 0, asked: vec![(Vec::new(), 0); chunks.len()], cost: vec![0.0; chunks.len()] }
    }

    /// Adds `ticks` to this step's time of chunk `c` (this process's numbering) of
    /// population `p` (a population gathered and stepped in two stages adds twice).
    pub(crate) fn add(&self, p: usize, c: usize, ticks: u64) {
        if let Some(times) = self.ticks.get(p).and_then(|v| v.get(c)) {
            times.0[self.steps as usize % WINDOW as usize].fetch_add(u32::try_from(ticks).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
    }

    /// Counts a pooled step; whether the window is full (then [`Balance::take`] each
    /// population and [`Balance::restart`]).
    pub(crate) fn stepped(&mut self) -> bool {
        self.steps += 1;
        self.steps >= WINDOW
    }

    /// Population `p`'s chunk times a step, each chunk's median over the window (a
    /// step that an interrupt or the host stretched says nothing of a core's speed),
    /// and clears them.
    pub(crate) fn take(&mut self, p: usize) -> Vec<f64> {
        let steps = (self.steps as usize).min(WINDOW as usize);
        let median = |times: &mut Times| {
            let mut v: Vec<u32> = times.0[..steps].iter_mut().map(|t| std::mem::take(t.get_mut())).collect();
            v.sort_unstable();
            v.get(steps / 2).map_or(0.0, |&t| f64::from(t))
        };
        self.ticks.get_mut(p).map_or(Vec::new(), |v| v.iter_mut().map(median).collect())
    }

    pub(crate) fn restart(&mut self) {
        self.steps = 0;
        self.windows = self.windows.saturating_add(1);
    }

    /// Counts a window of population `p` that asks its bounds `now` to become `new`,
    /// saving `saved` ticks a step (`None`: to stay; a move that would not pay for its
    /// cost within [`HORIZON`] steps is none): whether [`PERSIST`] windows in a row have
    /// now asked for a move the same way (then the count starts again).
    pub(crate) fn persists(&mut self, p: usize, now: &[Range<usize>], new: Option<(&[Range<usize>], f64)>) -> bool {
        let cost = self.cost.get(p).copied().unwrap_or(0.0);
        let warm = self.windows >= WARM;
        let Some(asked) = self.asked.get_mut(p) else { return false };
        let Some((new, _)) = new.filter(|&(_, saved)| warm && saved * HORIZON > cost) else {
            *asked = (Vec::new(), 0);
            return false;
        };
        let way: Vec<i8> = now.iter().zip(new).skip(1).map(|(a, b)| (b.start as i64 - a.start as i64).signum() as i8).collect();
        if asked.0 == way {
            asked.1 += 1;
        } else {
            *asked = (way, 1);
        }
        let due = asked.1 >= PERSIST;
        if due {
            asked.1 = 0;
        }
        due
    }
}

/// The `g`-th of `cells` cells of `chunks` chunks' span `range`: chunk c of an even
/// split (`parallel::split_range`) is cells `c * cells / chunks..`, exactly.
pub(crate) fn cells(range: Range<usize>, cells: usize) -> Vec<Range<usize>> {
    (0..cells).map(|g| {
        let r = crate::parallel::split_range(range.len(), cells, g);
        range.start + r.start..range.start + r.end
    }).collect()
}

/// New bounds for the contiguous chunks `ranges` whose chunks took `ticks` each a step,
/// on the bounds of `cells` (covering the same span): widths in proportion to each
/// chunk's speed (neurons per tick), each at least a quarter of an even share and a
/// cell; if they save the slowest chunk [`MIN_GAIN`] of its time, with the ticks they
/// save a step. A chunk with no time (nothing measured) or no neurons keeps the bounds
/// as they are.
pub(crate) fn proportional(ranges: &[Range<usize>], ticks: &[f64], cells: &[Range<usize>]) -> Option<(Vec<Range<usize>>, f64)> {
    let k = ranges.len();
    if k < 2 || ticks.len() != k || cells.len() < 2 * k || ranges.iter().zip(ticks).any(|(r, &t)| r.is_empty() || !t.is_finite() || t <= 0.0) {
        return None;
    }
    let (start, end) = (ranges[0].start, ranges[k - 1].end);
    let bounds: Vec<usize> = cells.iter().map(|c| c.start).chain([end]).collect();
    if bounds[0] != start || cells[cells.len() - 1].end != end {
        return None;
    }
    let span = (end - start) as f64;
    // Time per neuron of each chunk, and its speed's share of the whole.
    let rate: Vec<f64> = ranges.iter().zip(ticks).map(|(r, &t)| t / r.len() as f64).collect();
    let speed: f64 = rate.iter().map(|r| 1.0 / r).sum();
    let least = ((cells.len() / k) / 4).max(1);
    // Each inner bound at the cell bound nearest its share, every chunk kept at
    // `least` cells or more.
    let mut at = vec![0usize];
    let mut cum = 0.0;
    for (c, r) in rate.iter().enumerate().take(k - 1) {
        cum += 1.0 / r / speed;
        let want = start as f64 + cum * span;
        let near = (0..bounds.len()).min_by(|&a, &b| (bounds[a] as f64 - want).abs().total_cmp(&(bounds[b] as f64 - want).abs())).unwrap_or(0);
        let (lo, hi) = (at[c] + least, cells.len() - least * (k - 1 - c));
        at.push(near.clamp(lo, hi.max(lo)));
    }
    at.push(cells.len());
    let new: Vec<Range<usize>> = at.windows(2).map(|w| bounds[w[0]]..bounds[w[1]]).collect();
    let slowest = |rs: &[Range<usize>]| rs.iter().zip(&rate).map(|(r, t)| r.len() as f64 * t).fold(0.0, f64::max);
    let (before, after) = (slowest(ranges), slowest(&new));
    (new.as_slice() != ranges && before - after > MIN_GAIN * before).then_some((new, before - after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk twice as fast gets about twice the neurons, on the cells' bounds; even
    /// speeds move nothing; back once the speeds are even again.
    #[test]
    fn widths_follow_the_chunks_speeds_on_cell_bounds() {
        let grid = cells(0..6400, 16);
        let even = vec![0..3200, 3200..6400];
        let (new, saved) = proportional(&even, &[2000.0, 1000.0], &grid).expect("a move");
        // A third of 6400 is 2133: the nearest cell bound is 2000 (cells of 400). The
        // slowest chunk then takes 4400 * 1000 / 3200 ticks, not 2000.
        assert_eq!(new, vec![0..2000, 2000..6400]);
        assert!((saved - (2000.0 - 1375.0)).abs() < 1e-9, "{saved}");
        assert_eq!(proportional(&even, &[1000.0, 1010.0], &grid), None);
        // 2000 and 4400 neurons at one tick each: even again.
        assert_eq!(proportional(&new, &[2000.0, 4400.0], &grid).map(|m| m.0), Some(even));
        // Three chunks of a span that does not start at 0.
        let grid = cells(100..3300, 12);
        let three = vec![100..1166, 1166..2233, 2233..3300];
        let three: Vec<Range<usize>> = three.iter().map(|r| {
            let b = |x: usize| grid.iter().map(|c| c.start).chain([3300]).min_by_key(|&g| g.abs_diff(x)).unwrap();
            b(r.start)..b(r.end)
        }).collect();
        let (new, _) = proportional(&three, &[1.0, 1.0, 3.0], &grid).expect("a move");
        assert_eq!((new[0].start, new[2].end), (100, 3300));
        assert!(new.windows(2).all(|w| w[0].end == w[1].start && grid.iter().any(|c| c.start == w[1].start)));
        assert!(new[2].len() < new[0].len(), "{new:?}");
    }

    /// A move is due after PERSIST windows in a row ask for one the same way (not
    /// necessarily as far) that pays for the last move's cost within HORIZON steps; a
    /// window that asks for none, or the other way, starts the count again.
    #[test]
    fn only_a_persistent_imbalance_moves_bounds() {
        let now = vec![0..3200, 3200..6400];
        let (right, further, left) = (vec![0..3600, 3600..6400], vec![0..4000, 4000..6400], vec![0..2800, 2800..6400]);
        let mut bal = Balance::new(&[2]);
        // (The first windows move nothing.)
        for _ in 0..WARM {
            assert!(!bal.persists(0, &now, Some((&right, 10.0))));
            bal.restart();
        }
        let mut ask = |new: Option<&Vec<Range<usize>>>| bal.persists(0, &now, new.map(|v| (v.as_slice(), 10.0)));
        let due: Vec<bool> = [Some(&right), None, Some(&right), Some(&left), Some(&right), Some(&further), Some(&right)].into_iter().map(&mut ask).collect();
        assert_eq!(due, [false, false, false, false, false, true, false]);
        let due: Vec<bool> = [Some(&left), Some(&left)].into_iter().map(&mut ask).collect();
        assert_eq!(due, [false, true]);
        // A move that cost more than 10 ticks a step saves over HORIZON steps: none.
        bal.cost[0] = 10.0 * HORIZON;
        let due: Vec<bool> = [Some(&left), Some(&left), Some(&left)].into_iter().map(|n| bal.persists(0, &now, n.map(|v| (v.as_slice(), 10.0)))).collect();
        assert_eq!(due, [false, false, false]);
        assert!(bal.persists(0, &now, Some((&left, 11.0))) == false && bal.persists(0, &now, Some((&left, 11.0))));
    }

    /// However skewed the times, no chunk falls under a quarter of an even share; no
    /// time measured, or too few cells, moves nothing.
    #[test]
    fn no_chunk_is_starved() {
        let grid = cells(0..32000, 16);
        let (new, _) = proportional(&[0..16000, 16000..32000], &[1e9, 1.0], &grid).expect("a move");
        assert_eq!(new[0].len(), 4000);
        let (new, _) = proportional(&[0..16000, 16000..32000], &[1.0, 1e9], &grid).expect("a move");
        assert_eq!(new[1].len(), 4000);
        assert_eq!(proportional(&[0..16000, 16000..32000], &[0.0, 1.0], &grid), None);
        assert_eq!(proportional(&[0..16000, 16000..32000], &[10.0, 1.0], &cells(0..32000, 3)), None);
        assert_eq!(proportional(&[0..64], &[10.0], &grid), None);
    }

    /// An even split's chunks are runs of the cells.
    #[test]
    fn even_chunks_are_runs_of_cells() {
        for n in [40_000usize, 8000, 3201, 320_000, 17] {
            for chunks in 2..5 {
                let grid = cells(0..n, chunks * CELLS_PER_CHUNK);
                for c in 0..chunks {
                    let r = crate::parallel::split_range(n, chunks, c);
                    assert_eq!(grid[c * CELLS_PER_CHUNK].start, r.start, "{n} {chunks} {c}");
                    assert_eq!(grid[(c + 1) * CELLS_PER_CHUNK - 1].end, r.end, "{n} {chunks} {c}");
                }
            }
        }
    }
}
