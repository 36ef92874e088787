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
//!
//! A phase may have several stages (populations stepped one after the other, each
//! reading the spikes of those before it): the thread that finishes a stage's last chunk
//! runs its epilogue (joining the population's spikes), and the threads go on to the
//! next stage when it is done, without the caller closing one phase and opening another
//! (`Pool::for_stages`).

use smallvec::SmallVec;
use std::any::Any;
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
/// The most stages a phase has ([`Pool::for_stages`]).
pub(crate) const MAX_STAGES: usize = 8;

/// The job of the current phase (`job(stage, chunk)`) and its stages' epilogue
/// (`epilogue(stage)`: whether the later stages run), erased to `'static` for the
/// workers: valid while a chunk of its phase is claimed and not done, or a stage's
/// epilogue runs (see `Pool::for_stages`).
type Job = *const (dyn Fn(usize, usize) + Sync);
type Epilogue = *const (dyn Fn(usize) -> bool + Sync);

/// The fields that threads write on cache lines of their own, and a phase's opening
/// writes only what changed since the last phase (`Pool::for_stages`): each write takes
/// the line from the cores that read it, a transfer the workers then wait for (about
/// 0.1 us a phase on two vCPUs, docs/benchmarks.md, fifteenth round).
struct Shared {
    /// The phase's job and epilogue (its chunks are in the cursors).
    job: Line<UnsafeCell<Option<(Job, Epilogue)>>>,
    /// The current phase (`PHASE_BITS` wide), opened once every cursor holds its share.
    state: Line<AtomicU64>,
    /// The stages of the current phase, and the chunks of each.
    stages: Line<AtomicUsize>,
    chunks: Line<[AtomicUsize; MAX_STAGES]>,
    /// Per stage and thread (`stage * threads + t`; thread 0: the caller), the chunks of
    /// its share not yet claimed in the current phase ([`Cursor`]).
    cursors: Box<[Cursor]>,
    /// Chunks of each stage of the current phase finished (back to 0 by the stage's
    /// last thread, for the next phase).
    done: Line<[AtomicUsize; MAX_STAGES]>,
    /// `phase << 32 | k`: stages 0..k of the phase are complete (their epilogues run);
    /// all of them once an epilogue has stopped the phase (whose later stages' cursors
    /// it empties first, so that nothing of the phase is left to claim).
    complete: Line<AtomicU64>,
    /// A chunk or an epilogue of the current phase panicked, on any thread: the stages
    /// after it do not run.
    failed: AtomicBool,
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

/// A thread's unclaimed chunks of one stage of a phase, `phase << 40 | next << 20 | end`,
/// on a cache line of its own: the owner claims `next` (advancing it), another thread
/// `end - 1` (lowering it); either by a compare-exchange that also checks the phase.
type Cursor = Line<AtomicU64>;

/// A value on cache lines of its own.
#[repr(align(64))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

const CHUNK_BITS: u32 = 20;
const PHASE_BITS: u32 = 64 - 2 * CHUNK_BITS;
/// Chunks a stage can have ([`CHUNK_BITS`]).
const MAX_CHUNKS: usize = (1 << CHUNK_BITS) - 1;

fn pack(phase: u64, next: usize, end: usize) -> u64 {
    (phase << (2 * CHUNK_BITS)) | ((next as u64) << CHUNK_BITS) | end as u64
}

fn unpack(v: u64) -> (u64, usize, usize) {
    let mask = (1u64 << CHUNK_BITS) - 1;
    (v >> (2 * CHUNK_BITS), ((v >> CHUNK_BITS) & mask) as usize, (v & mask) as usize)
}

// SAFETY: `job` is written only by `Pool::for_stages` while no chunk is claimed and no
// epilogue runs, before the Release stores of the cursors and `state` that open the
// phase; a worker reads it only after claiming a chunk of that phase (Acquire), and the
// phase (and the job) lasts until that chunk is reported done and, for a stage's last
// chunk, its epilogue has run.
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
            job: Line(UnsafeCell::new(None)),
            state: Line(AtomicU64::new(0)),
            stages: Line(AtomicUsize::new(0)),
            chunks: Line(std::array::from_fn(|_| AtomicUsize::new(0))),
            cursors: (0..threads * MAX_STAGES).map(|_| Line(AtomicU64::new(0))).collect(),
            done: Line(std::array::from_fn(|_| AtomicUsize::new(0))),
            complete: Line(AtomicU64::new(0)),
            failed: AtomicBool::new(false),
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
    #[cfg(test)]
    pub(crate) fn for_chunks(&self, chunks: usize, job: &(dyn Fn(usize) + Sync)) {
        self.for_stages(&[chunks], &|_, c| job(c), &|_| true);
    }

    /// Runs the stages of `chunks` (stage k has `chunks[k]` >= 1 chunks) one after the
    /// other, here and on free workers: `job(k, c)` for every chunk c of stage k, then,
    /// on the thread that finished its last chunk, `epilogue(k)`, which says whether the
    /// later stages run. Returns when every stage that runs is done. A stage sees
    /// everything the earlier ones and their epilogues wrote. A panic in a chunk or an
    /// epilogue stops the later stages and is raised here.
    pub(crate) fn for_stages(&self, chunks: &[usize], job: &(dyn Fn(usize, usize) + Sync), epilogue: &(dyn Fn(usize) -> bool + Sync)) {
        let s = &*self.shared;
        let _phase = crate::timers::start(crate::timers::Span::Phase);
        assert!(chunks.len() <= MAX_STAGES, "{} stages in one phase: at most {MAX_STAGES}", chunks.len());
        // Nothing to share: no phase is opened and no worker woken (a wake-up is a
        // system call, a sizeable part of a small population's step).
        if chunks.iter().all(|&c| c <= 1) {
            return run_stages_here(chunks, job, epilogue);
        }
        assert!(chunks.iter().all(|&c| (1..=MAX_CHUNKS).contains(&c)), "stages of 1 to {MAX_CHUNKS} chunks: {chunks:?}");
        // SAFETY: lifetime erasure only: the job and epilogue are used by claimed chunks
        // and stages' last chunks, and this function returns only when every stage that
        // runs is complete.
        let erased: (Job, Epilogue) = unsafe {
            (
                std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), Job>(job as *const _),
                std::mem::transmute::<*const (dyn Fn(usize) -> bool + Sync + '_), Epilogue>(epilogue as *const _),
            )
        };
        // (Each field written only where it changes: a step's job is the same closure
        // from one step to the next, and a store would take the line from every core
        // that reads it.)
        // SAFETY: every stage of the last phase is complete, so nobody reads `job`.
        unsafe {
            let job = s.job.get();
            if (*job).is_none_or(|(j, e)| !std::ptr::eq(j, erased.0) || !std::ptr::eq(e, erased.1)) {
                *job = Some(erased);
            }
        }
        let phase = (s.state.load(Ordering::Relaxed) + 1) & ((1 << PHASE_BITS) - 1);
        let threads = self.threads();
        store_if_changed(&s.stages, chunks.len());
        if s.failed.load(Ordering::Relaxed) {
            s.failed.store(false, Ordering::Relaxed);
        }
        s.complete.store(phase << 32, Ordering::Relaxed);
        for (k, &n) in chunks.iter().enumerate() {
            store_if_changed(&s.chunks[k], n);
            for t in 0..threads {
                let share = split(n, threads, t);
                s.cursors[k * threads + t].0.store(pack(phase, share.start, share.end), Ordering::Release);
            }
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
        let mine = run_phase(s, phase, 0);
        let mut spins = 0u32;
        let idle = crate::timers::start(crate::timers::Span::Idle);
        while s.complete.load(Ordering::Acquire) != (phase << 32 | chunks.len() as u64) {
            backoff(&mut spins);
        }
        drop(idle);
        // (Cleared before raising this thread's own panic, so that the next phase does
        // not raise a worker's again.)
        let worker_panicked = s.panicked.swap(false, Ordering::Relaxed);
        if let Some(p) = mine {
            resume_unwind(p);
        }
        if worker_panicked {
            panic!("a simulation thread panicked");
        }
    }
}

/// [`Pool::for_stages`] on the calling thread alone: each stage's chunks in order, then its
/// epilogue, until one says the later stages do not run.
pub(crate) fn run_stages_here(chunks: &[usize], job: &(dyn Fn(usize, usize) + Sync), epilogue: &(dyn Fn(usize) -> bool + Sync)) {
    for (k, &n) in chunks.iter().enumerate() {
        (0..n).for_each(|c| job(k, c));
        if !epilogue(k) {
            break;
        }
    }
}

/// Thread `me`'s part in `phase`: each stage's chunks it can claim, the epilogue of a
/// stage whose last chunk it finished, and between stages a wait for the last one to be
/// complete. Returns early when the phase is over (done by others; a stopped phase
/// leaves it nothing to claim) and hands back the first panic of its chunks and
/// epilogues. Everything it does is checked against `phase` first (the cursors' tags,
/// `complete`'s), so a thread that comes late, after the caller has opened the next
/// phase, does nothing.
fn run_phase(s: &Shared, phase: u64, me: usize) -> Option<Box<dyn Any + Send>> {
    let threads = s.cursors.len() / MAX_STAGES;
    let mut caught = None;
    let mut first = true;
    for k in 0..s.stages.load(Ordering::Relaxed).min(MAX_STAGES) {
        if k > 0 {
            let mut spins = 0u32;
            let _idle = crate::timers::start(crate::timers::Span::StageWait);
            loop {
                let v = s.complete.load(Ordering::Acquire);
                if v >> 32 != phase {
                    return caught;
                }
                if (v & 0xffff_ffff) as usize >= k {
                    break;
                }
                backoff(&mut spins);
            }
        }
        while let Some(c) = claim(&s.cursors[k * threads..(k + 1) * threads], phase, me) {
            if me > 0 && std::mem::take(&mut first) {
                crate::timers::started();
            }
            // SAFETY: chunk `c` of `phase` is claimed, so the phase's job is published and
            // stays valid until `done` counts this chunk and, for the stage's last, its
            // epilogue has run (the caller waits for `complete`).
            let (job, epilogue) = unsafe { *s.job.get() }.expect("a job is published with its phase");
            {
                let _chunk = crate::timers::start(if k == 0 { crate::timers::Span::Chunk } else { crate::timers::Span::ChunkLater });
                // SAFETY: see above.
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(k, c) })) {
                    caught.get_or_insert(p);
                    failed(s, me);
                }
            }
            // The stage's chunks, read while this one is claimed and not counted: the
            // phase cannot end before, so they are this phase's.
            let chunks = s.chunks[k].load(Ordering::Relaxed);
            // (Acquire and Release: the last chunk's thread sees every chunk's writes,
            // and its epilogue's store of `complete` passes them on.)
            if s.done[k].fetch_add(1, Ordering::AcqRel) + 1 == chunks {
                // Nobody counts this stage again before the next phase, which the
                // store of `complete` below (or the caller's, ending the phase) precedes.
                s.done[k].store(0, Ordering::Relaxed);
                let _epilogue = crate::timers::start(crate::timers::Span::Epilogue);
                // SAFETY: see above.
                let go = match catch_unwind(AssertUnwindSafe(|| unsafe { (*epilogue)(k) })) {
                    Ok(go) => go && !s.failed.load(Ordering::Relaxed),
                    Err(p) => {
                        caught.get_or_insert(p);
                        failed(s, me);
                        false
                    }
                };
                let stages = s.stages.load(Ordering::Relaxed);
                if !go {
                    // Nothing of the later stages left to claim, before anyone can see
                    // that they are due (a late thread of this phase claims nothing
                    // once the caller has opened the next).
                    for cursor in &s.cursors[(k + 1) * threads..stages * threads] {
                        cursor.0.store(pack(phase, 0, 0), Ordering::Relaxed);
                    }
                }
                s.complete.store(phase << 32 | if go { k as u64 + 1 } else { stages as u64 }, Ordering::Release);
            }
        }
    }
    caught
}

/// Stores `v` unless `a` already holds it (by the thread that alone writes `a`).
fn store_if_changed(a: &AtomicUsize, v: usize) {
    if a.load(Ordering::Relaxed) != v {
        a.store(v, Ordering::Relaxed);
    }
}

/// Marks the current phase failed (a panic on thread `me`), before its chunk is counted.
fn failed(s: &Shared, me: usize) {
    s.failed.store(true, Ordering::Relaxed);
    if me > 0 {
        s.panicked.store(true, Ordering::Relaxed);
    }
}

/// The chunks of thread `t`'s share of `chunks` (contiguous, the same every phase).
fn split(chunks: usize, threads: usize, t: usize) -> std::ops::Range<usize> {
    chunks * t / threads..chunks * (t + 1) / threads
}

/// A chunk of `phase` for thread `me` from one stage's `cursors`, if one is left: the
/// next of its own share, else the last left of another's (the next thread's first).
fn claim(cursors: &[Cursor], phase: u64, me: usize) -> Option<usize> {
    let threads = cursors.len();
    (0..threads).find_map(|k| {
        let t = (me + k) % threads;
        let cursor = &cursors[t].0;
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
        // (A panic's payload is dropped here: `run_phase` has marked it for the caller.)
        drop(run_phase(s, phase, me));
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

    /// Each stage starts once the one before it and its epilogue are done, the epilogue
    /// runs once per stage after all its chunks, and an epilogue that stops the phase
    /// leaves the later stages unrun.
    #[test]
    fn stages_run_in_order_each_after_its_predecessors_epilogue() {
        for threads in [2usize, 3] {
            let pool = Pool::new(threads).expect("threads");
            for round in 0..200usize {
                let chunks: Vec<usize> = (0..1 + round % MAX_STAGES).map(|k| 1 + (round + k) % 5).collect();
                let stop_after = (round % 3 == 0).then(|| round % chunks.len());
                let done: Vec<AtomicU64> = chunks.iter().map(|_| AtomicU64::new(0)).collect();
                let epilogues: Vec<AtomicU64> = chunks.iter().map(|_| AtomicU64::new(0)).collect();
                pool.for_stages(
                    &chunks,
                    &|k, c| {
                        assert!(c < chunks[k]);
                        // Every earlier stage is whole and its epilogue has run.
                        for j in 0..k {
                            assert_eq!(done[j].load(Ordering::Relaxed), chunks[j] as u64, "round {round}: stage {k} began before stage {j} ended");
                            assert_eq!(epilogues[j].load(Ordering::Relaxed), 1, "round {round}: stage {k} began before epilogue {j}");
                        }
                        done[k].fetch_add(1, Ordering::Relaxed);
                    },
                    &|k| {
                        assert_eq!(done[k].load(Ordering::Relaxed), chunks[k] as u64, "round {round}: epilogue {k} before its chunks");
                        epilogues[k].fetch_add(1, Ordering::Relaxed);
                        stop_after != Some(k)
                    },
                );
                let last = stop_after.unwrap_or(chunks.len() - 1);
                for k in 0..chunks.len() {
                    let (want_done, want_epi) = if k <= last { (chunks[k] as u64, 1) } else { (0, 0) };
                    assert_eq!(done[k].load(Ordering::Relaxed), want_done, "round {round}, stage {k}");
                    assert_eq!(epilogues[k].load(Ordering::Relaxed), want_epi, "round {round}, stage {k}");
                }
            }
        }
    }

    /// A panic in a stage's chunk, on whichever thread runs it, leaves the later stages
    /// unrun and is raised in the caller; the next phase runs whole and raises nothing.
    #[test]
    fn a_panic_stops_the_later_stages_and_the_next_phase_runs_whole() {
        let pool = Pool::new(2).expect("threads");
        for round in 0..300usize {
            let later = AtomicU64::new(0);
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.for_stages(
                    &[4, 4, 2],
                    &|k, c| {
                        assert!(k != 0 || c != round % 4, "chunk fails");
                        if k > 0 {
                            later.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    &|_| true,
                )
            }));
            assert!(r.is_err(), "round {round}: the panic is raised");
            assert_eq!(later.load(Ordering::Relaxed), 0, "round {round}: a later stage ran");
            let hits = AtomicU64::new(0);
            pool.for_stages(
                &[3, 3],
                &|_, _| {
                    hits.fetch_add(1, Ordering::Relaxed);
                },
                &|_| true,
            );
            assert_eq!(hits.load(Ordering::Relaxed), 6, "round {round}");
        }
    }

    /// The pool's own cost a phase: many phases of one and of two stages whose chunks
    /// do almost nothing (50 relaxed additions each), each chunk checked to run once a
    /// phase; prints the microseconds a phase of seven rounds, sorted, and a cache
    /// line's round trip between two threads. A timing probe
    /// for changes to the pool (docs/benchmarks.md, fifteenth round), ignored by
    /// default:
    /// `cargo test --release -p snnc-runtime --lib pool_phase_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn pool_phase_cost() {
        let pool = Pool::new(2).expect("threads");
        let hits: Vec<Line<AtomicU64>> = (0..4).map(|_| Line(AtomicU64::new(0))).collect();
        for stages in [&[2usize][..], &[2, 2][..]] {
            let mut rounds = Vec::new();
            for _ in 0..7 {
                const PHASES: u64 = 100_000;
                hits.iter().for_each(|h| h.0.store(0, Ordering::Relaxed));
                let t = Instant::now();
                for _ in 0..PHASES {
                    pool.for_stages(stages, &|k, c| (0..50).for_each(|_| {
                        hits[k * 2 + c].fetch_add(1, Ordering::Relaxed);
                    }), &|_| true);
                }
                rounds.push(t.elapsed().as_secs_f64() / PHASES as f64 * 1e6);
                for (i, h) in hits.iter().enumerate().take(stages.len() * 2) {
                    assert_eq!(h.0.load(Ordering::Relaxed), 50 * PHASES, "chunk {} of stage {}", i % 2, i / 2);
                }
            }
            rounds.sort_by(f64::total_cmp);
            eprintln!("{} stage(s) of 2 chunks on 2 threads: {rounds:.3?} us a phase", stages.len());
        }
        // Beside it, the floor: one line passed to another thread and back.
        let line = Arc::new(Line(AtomicU64::new(0)));
        const TRIPS: u64 = 1_000_000;
        let other = Arc::clone(&line);
        let echo = std::thread::spawn(move || {
            for i in 0..TRIPS {
                while other.0.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                other.0.store(2 * i + 2, Ordering::Release);
            }
        });
        let t = Instant::now();
        for i in 0..TRIPS {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        eprintln!("a line to another thread and back: {:.3} us", t.elapsed().as_secs_f64() / TRIPS as f64 * 1e6);
        echo.join().expect("the echoing thread");
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
