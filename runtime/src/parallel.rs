//! The worker threads of a network that simulates on several cores: a pool that lives as
//! long as the network and runs the chunks of one phase of a step (a population's share
//! of neurons each) on the caller and on whichever workers are free.
//!
//! Chunks are claimed, not assigned: a worker that the OS has not scheduled (the machine
//! shared with other work) leaves its chunks to the others instead of holding everyone at
//! a barrier, so a phase never waits for a thread that has not started. Each thread first
//! claims its own contiguous share of the chunks (the same every step, so a chunk's
//! neurons stay in one core's cache), then takes what is left of the others' from their
//! ends. What a chunk computes does not depend on who computes it, so the results are
//! those of one thread. Waiting workers spin briefly, then yield, then sleep on a
//! condition variable.

use smallvec::SmallVec;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Spins of a waiting thread before it starts yielding its core.
const SPINS: u32 = 1 << 10;
/// How long a worker yields for the next phase before it sleeps.
const YIELD_FOR: Duration = Duration::from_millis(1);

/// The job of the current phase, erased to `'static` for the workers: valid while a
/// chunk of its phase is claimed and not done (see `Pool::for_chunks`).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// The phase's job (its chunks are in the cursors).
    job: UnsafeCell<Option<Job>>,
    /// The current phase (`PHASE_BITS` wide), opened once every cursor holds its share.
    state: AtomicU64,
    /// Per thread (0: the caller), the chunks of its share not yet claimed in the
    /// current phase ([`Cursor`]).
    cursors: Box<[Cursor]>,
    /// Chunks of the current phase finished.
    done: AtomicUsize,
    quit: AtomicBool,
    /// A worker's chunk panicked (the payload is dropped; the caller panics).
    panicked: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
    /// Workers asleep on `wake`, or about to be: a phase notifies only then (a
    /// notification is a system call whether anyone sleeps or not).
    sleepers: AtomicUsize,
    denormals_flushed: bool,
}

/// A thread's unclaimed chunks of one phase, `phase << 40 | next << 20 | end`, on a
/// cache line of its own: the owner claims `next` (advancing it), another thread `end - 1`
/// (lowering it); either by a compare-exchange that also checks the phase.
#[repr(align(64))]
struct Cursor(AtomicU64);

const CHUNK_BITS: u32 = 20;
const PHASE_BITS: u32 = 64 - 2 * CHUNK_BITS;
/// Chunks a phase can have ([`CHUNK_BITS`]).
const MAX_CHUNKS: usize = (1 << CHUNK_BITS) - 1;

fn pack(phase: u64, next: usize, end: usize) -> u64 {
    (phase << (2 * CHUNK_BITS)) | ((next as u64) << CHUNK_BITS) | end as u64
}

fn unpack(v: u64) -> (u64, usize, usize) {
    let mask = (1u64 << CHUNK_BITS) - 1;
    (v >> (2 * CHUNK_BITS), ((v >> CHUNK_BITS) & mask) as usize, (v & mask) as usize)
}

// SAFETY: `job` is written only by `Pool::for_chunks` while no chunk is claimed, before
// the Release stores of the cursors and `state` that open the phase; a worker reads it
// only after claiming a chunk of that phase (Acquire), and the phase (and the job) lasts
// until that chunk is reported done.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// Threads that run the chunks of a phase: the caller and `threads - 1` workers.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `threads` >= 2 in all, the workers in the caller's denormal mode
    /// ([`crate::kernels::flush_denormals`]).
    pub(crate) fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            state: AtomicU64::new(0),
            cursors: (0..threads).map(|_| Cursor(AtomicU64::new(0))).collect(),
            done: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            denormals_flushed: crate::kernels::denormals_flushed(),
        });
        let mut pool = Pool { shared, handles: Vec::new() };
        for t in 1..threads {
            let shared = Arc::clone(&pool.shared);
            // On failure, `pool` drops here and stops the workers already started.
            let h = std::thread::Builder::new().name(format!("snnc-sim-{t}")).spawn(move || worker(&shared, t))?;
            pool.handles.push(h);
        }
        Ok(pool)
    }

    pub(crate) fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Runs `job(c)` for every chunk c in 0..chunks, here and on free workers; returns
    /// when all are done. A panic in a chunk is raised here once all are done.
    pub(crate) fn for_chunks(&self, chunks: usize, job: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        let _phase = crate::timers::start(crate::timers::Span::Phase);
        // Nothing to share: no phase is opened and no worker woken (a wake-up is a
        // system call, a sizeable part of a small population's step).
        if chunks <= 1 {
            (0..chunks).for_each(job);
            return;
        }
        assert!(chunks <= MAX_CHUNKS, "{chunks} chunks in one phase: at most {MAX_CHUNKS}");
        // SAFETY: lifetime erasure only: the job is used by claimed chunks, and this
        // function returns only when every chunk is done.
        let erased: Job = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(job as *const _) };
        // SAFETY: every chunk of the last phase is done, so nobody reads `job`.
        unsafe { *s.job.get() = Some(erased) };
        s.done.store(0, Ordering::Relaxed);
        let phase = (s.state.load(Ordering::Relaxed) + 1) & ((1 << PHASE_BITS) - 1);
        let threads = s.cursors.len();
        for (t, cursor) in s.cursors.iter().enumerate() {
            let share = split(chunks, threads, t);
            cursor.0.store(pack(phase, share.start, share.end), Ordering::Release);
        }
        // Sequentially consistent with a worker's count of `sleepers` and its check of
        // `state` (`wait_for_phase`): either it counted itself before the load below, and
        // is notified (it checks `state` under the lock, so it is then asleep or sees the
        // phase), or its check comes after this store and sees the phase.
        crate::timers::opened();
        s.state.store(phase, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            drop(s.sleep.lock().unwrap_or_else(|e| e.into_inner()));
            s.wake.notify_all();
        }
        let mut mine = Ok(());
        while let Some(c) = claim(s, phase, 0) {
            let _chunk = crate::timers::start(crate::timers::Span::Chunk);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| job(c))) {
                mine = Err(p);
            }
            s.done.fetch_add(1, Ordering::Release);
        }
        let mut spins = 0u32;
        let idle = crate::timers::start(crate::timers::Span::Idle);
        while s.done.load(Ordering::Acquire) != chunks {
            backoff(&mut spins);
        }
        drop(idle);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a simulation thread panicked");
        }
    }
}

/// The chunks of thread `t`'s share of `chunks` (contiguous, the same every phase).
fn split(chunks: usize, threads: usize, t: usize) -> std::ops::Range<usize> {
    chunks * t / threads..chunks * (t + 1) / threads
}

/// A chunk of `phase` for thread `me`, if one is left: the next of its own share, else
/// the last left of another's (the next thread's first).
fn claim(s: &Shared, phase: u64, me: usize) -> Option<usize> {
    let threads = s.cursors.len();
    (0..threads).find_map(|k| {
        let t = (me + k) % threads;
        let cursor = &s.cursors[t].0;
        let mut v = cursor.load(Ordering::Acquire);
        loop {
            let (p, next, end) = unpack(v);
            if p != phase || next >= end {
                return None;
            }
            let (taken, left) = if k == 0 { (next, pack(p, next + 1, end)) } else { (end - 1, pack(p, next, end - 1)) };
            match cursor.compare_exchange_weak(v, left, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(taken),
                Err(now) => v = now,
            }
        }
    })
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.quit.store(true, Ordering::Release);
        drop(s.sleep.lock().unwrap_or_else(|e| e.into_inner()));
        s.wake.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(s: &Shared, me: usize) {
    if s.denormals_flushed {
        crate::kernels::flush_denormals();
    }
    crate::timers::set_thread(me);
    let mut seen = 0u64;
    while let Some(phase) = {
        let _idle = crate::timers::start(crate::timers::Span::Idle);
        wait_for_phase(s, seen)
    } {
        seen = phase;
        let mut first = true;
        while let Some(c) = claim(s, phase, me) {
            if std::mem::take(&mut first) {
                crate::timers::started();
            }
            // SAFETY: chunk `c` of `phase` is claimed, so the phase's job is published
            // and stays valid until `done` counts this chunk.
            let job = unsafe { *s.job.get() }.expect("a job is published with its phase");
            let _chunk = crate::timers::start(crate::timers::Span::Chunk);
            // SAFETY: see above.
            if catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(c) })).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
            s.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// Waits for a phase after `seen` (spinning, yielding, then sleeping); `None` to quit.
fn wait_for_phase(s: &Shared, seen: u64) -> Option<u64> {
    let mut spins = 0u32;
    let start = Instant::now();
    loop {
        if s.quit.load(Ordering::Acquire) {
            return None;
        }
        let phase = s.state.load(Ordering::Acquire);
        if phase != seen {
            return Some(phase);
        }
        if spins < SPINS || start.elapsed() < YIELD_FOR {
            backoff(&mut spins);
            continue;
        }
        let mut guard = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
        s.sleepers.fetch_add(1, Ordering::SeqCst);
        while s.state.load(Ordering::SeqCst) == seen && !s.quit.load(Ordering::Acquire) {
            guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        s.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One round of waiting: a spin hint at first, then giving the core away.
fn backoff(spins: &mut u32) {
    if *spins < SPINS {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// The `c`-th of `chunks` contiguous ranges splitting 0..n, each starting on a multiple
/// of 16 elements so that chunks write separate cache lines.
pub(crate) fn split_range(n: usize, chunks: usize, c: usize) -> std::ops::Range<usize> {
    const ALIGN: usize = 16;
    let blocks = n.div_ceil(ALIGN);
    let at = |k: usize| ((blocks * k / chunks) * ALIGN).min(n);
    at(c)..at(c + 1)
}

/// Whether chunk `c` of `chunks` (a population's, split among `threads`) is stepped
/// away from its upper end: every chunk of a thread's share but the last thread's. Its
/// kernel runs its top piece from its last neuron down, then the rest from its first
/// neuron up ([`run_pieces`]); its spike scan takes the same pieces, and the inputs it
/// restarts run down (`Network::step_part`). (In a batch, each element's range runs so;
/// the elements one after the other.) Then two threads never stream towards each other:
/// the lower one leaves their boundary first and ends its upward pass below the piece
/// it did first, the upper one goes away from it towards the arrays' end, and neither
/// pulls the other's first lines into its core (measured on two threads in
/// docs/benchmarks.md). With more threads the middle ones still meet a neighbour.
pub(crate) fn runs_down(c: usize, chunks: usize, threads: usize) -> bool {
    threads > 1 && chunks > 1 && c < split(chunks, threads, threads - 1).start
}

/// Neurons next to its upper end that a chunk stepped down runs first, from the last
/// one down ([`run_pieces`]): four KiB of each f32 buffer, a page.
pub(crate) const DOWN_PIECE: usize = 1024;

/// The pieces `(start, count, descending)` of a chunk of `len` neurons in the order the
/// kernel runs them. A chunk that runs down ([`runs_down`]) does only its last
/// [`DOWN_PIECE`] neurons from the top down, away from the next thread's share, and then
/// the rest upwards from its first neuron, ending below the piece it did first: so its
/// streams still never run towards the neighbour's, and the bulk is stepped upwards,
/// which the hardware prefetchers follow better (a whole share stepped down took about
/// 10 % longer than the same neurons upwards at 400,000 neurons, docs/benchmarks.md,
/// eleventh round).
pub(crate) fn run_pieces(len: usize, down: bool) -> SmallVec<[(usize, usize, bool); 2]> {
    match (down, len.checked_sub(DOWN_PIECE)) {
        (true, Some(rest)) if rest > 0 => smallvec::smallvec![(rest, DOWN_PIECE, true), (0, rest, false)],
        _ => smallvec::smallvec![(0, len, down)],
    }
}

/// The fewest neurons of a chunk when the split is automatic (about 16 KB per f32
/// state: a few microseconds of work, large against the cost of claiming it).
pub(crate) const CHUNK: usize = 4096;

/// The chunks a population of `n` neurons is split into: chunks of `chunk` neurons when
/// given; otherwise one per thread, of at least `CHUNK` neurons. Every chunk bisects
/// each spiking row to its targets, so more chunks than threads cost row lookups; a
/// thread that starts late loses its chunk to one that is done (`claim`).
pub(crate) fn chunks_of(n: usize, threads: usize, chunk: Option<usize>) -> usize {
    match chunk {
        Some(c) => n.div_ceil(c.max(1)).max(1),
        None if threads <= 1 => 1,
        None => n.div_ceil(CHUNK).clamp(1, threads),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn split_ranges_cover_exactly_once() {
        for n in [0usize, 1, 15, 16, 17, 100, 4000, 3201] {
            for parts in 1..6 {
                let rs: Vec<_> = (0..parts).map(|t| split_range(n, parts, t)).collect();
                assert_eq!(rs[0].start, 0);
                assert_eq!(rs[parts - 1].end, n);
                for w in rs.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                assert!(rs.iter().all(|r| r.start % 16 == 0 || r.start == n));
            }
        }
    }

    /// A chunk's pieces cover it once; one that runs down starts with its top piece,
    /// stepped down, then the rest upwards from its first neuron.
    #[test]
    fn a_chunk_run_down_starts_with_its_top_piece_and_goes_up_from_its_start() {
        for len in [0usize, 1, 16, DOWN_PIECE - 16, DOWN_PIECE, DOWN_PIECE + 16, 20_000] {
            for down in [false, true] {
                let pieces = run_pieces(len, down);
                let mut seen = vec![0u8; len];
                for &(from, count, _) in &pieces {
                    seen[from..from + count].iter_mut().for_each(|s| *s += 1);
                }
                assert!(seen.iter().all(|&s| s == 1), "len {len}, down {down}: {pieces:?}");
                if down && len > DOWN_PIECE {
                    assert_eq!(pieces[..], [(len - DOWN_PIECE, DOWN_PIECE, true), (0, len - DOWN_PIECE, false)]);
                } else {
                    assert_eq!(pieces[..], [(0, len, down)]);
                }
            }
        }
    }

    /// Every share but the last thread's runs down; one chunk or one thread runs up.
    #[test]
    fn the_lower_shares_run_down() {
        let down = |chunks: usize, threads: usize| (0..chunks).filter(|&c| runs_down(c, chunks, threads)).collect::<Vec<_>>();
        assert_eq!(down(2, 2), [0]);
        assert_eq!(down(4, 2), [0, 1]);
        assert_eq!(down(3, 3), [0, 1]);
        assert_eq!(down(1, 2), Vec::<usize>::new());
        assert_eq!(down(4, 1), Vec::<usize>::new());
    }

    #[test]
    fn every_chunk_runs_once_per_phase() {
        for threads in [2usize, 3, 4] {
            let pool = Pool::new(threads).expect("threads");
            for round in 0..300u64 {
                let chunks = (round % 7) as usize + 1;
                let hits: Vec<AtomicU64> = (0..chunks).map(|_| AtomicU64::new(0)).collect();
                pool.for_chunks(chunks, &|c| {
                    hits[c].fetch_add(round + 1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == round + 1), "round {round}");
            }
        }
    }

    #[test]
    fn a_panicking_chunk_panics_in_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new(2).expect("threads");
        let r = catch_unwind(AssertUnwindSafe(|| pool.for_chunks(8, &|c| assert!(c != 5, "chunk fails"))));
        assert!(r.is_err());
        let hits = AtomicU64::new(0);
        pool.for_chunks(8, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 8);
    }
}
