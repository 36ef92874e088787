//! Where a simulation step's time goes, per thread and per part of the step: built only
//! with the `step-timers` cargo feature (`cargo build --release -p snnc --features
//! step-timers`), which makes `snnc bench sim` print them (`"timers"`). Without the
//! feature a [`Timer`] is an empty value and every call here compiles to nothing.
//!
//! The spans are those that docs/benchmarks.md reasons about when two threads gain less
//! than two: the kernel's first 512 neurons apart from the rest (where a thread waits for
//! lines the other core holds), the gathering, the restart of the inputs, the spike scan,
//! the caller's serial part of a step and each thread's idle time. Timing a span costs
//! two clock reads (tens of nanoseconds): the instrumented build is a little slower, and
//! its kernel is called twice per chunk (head and rest), which changes no result.

/// The parts of a step that are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// `Network::step`, on the thread that calls it.
    Step,
    /// The caller inside `Pool::for_stages` (its chunks and its wait for the others;
    /// a phase of one chunk runs it there, timed as `Phase` but not as `Chunk`).
    Phase,
    /// A chunk of a phase's first stage, on whichever thread claimed it (the spans below
    /// and what lies between them; a later stage's are [`Span::ChunkLater`]).
    Chunk,
    /// Deliveries into a chunk's inputs.
    Gather,
    /// The kernel on the first `HEAD` neurons of a chunk, in the order it runs.
    KernelHead,
    /// The kernel on the rest of the chunk (the whole of a chunk of `HEAD` neurons or
    /// fewer).
    Kernel,
    /// The inputs put back at their start after the kernel.
    Restart,
    /// The list of the chunk's neurons that spiked (and the non-finite search).
    Scan,
    /// Waiting: the caller for the others' chunks, a worker for the next phase.
    Idle,
    /// A chunk of a later stage of a phase (the second population of COBA's), timed
    /// apart from the first stage's `Chunk`.
    ChunkLater,
    /// Waiting between two stages of a phase for the last chunk of the earlier one.
    StageWait,
    /// From the caller opening a phase to a worker starting its first chunk of it (one
    /// clock for the whole process: two networks stepping at once mix theirs).
    Start,
    /// What the caller records after a step (`snnc bench sim`'s monitor): the traces, and
    /// the spikes where the recorder is not attached to the network (an attached one's
    /// are logged inside the step, `Recorder::attach`).
    Record,
    /// The chunks' bounds moved to the threads' speeds at the end of a window of steps
    /// (`Network::rebalance`, part of the caller's serial time).
    Rebalance,
    /// One move of a population's bounds within `Rebalance` (its calls: the moves).
    Move,
    /// A stage's epilogue (joining its population's spikes), on the thread that
    /// finished the stage's last chunk.
    Epilogue,
}

/// Every span, in the order they are reported.
pub const SPANS: [Span; 16] = [Span::Step, Span::Phase, Span::Chunk, Span::Gather, Span::KernelHead, Span::Kernel, Span::Restart, Span::Scan, Span::Idle, Span::ChunkLater, Span::StageWait, Span::Start, Span::Record, Span::Rebalance, Span::Move, Span::Epilogue];

/// Neurons of a chunk timed as its kernel's head.
pub const HEAD: usize = 512;

impl Span {
    pub fn name(self) -> &'static str {
        match self {
            Span::Step => "step",
            Span::Phase => "phase",
            Span::Chunk => "chunk",
            Span::Gather => "gather",
            Span::KernelHead => "kernel_head",
            Span::Kernel => "kernel_rest",
            Span::Restart => "restart",
            Span::Scan => "scan",
            Span::Idle => "idle",
            Span::ChunkLater => "chunk_later",
            Span::StageWait => "stage_wait",
            Span::Start => "start",
            Span::Record => "record",
            Span::Rebalance => "rebalance",
            Span::Move => "move",
            Span::Epilogue => "epilogue",
        }
    }
}

/// Whether this build times steps (the `step-timers` feature).
pub const ENABLED: bool = cfg!(feature = "step-timers");

/// The total time and count of one span on one thread.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanTotal {
    /// 0: the thread that steps the network; 1..: the pool's workers.
    pub thread: usize,
    pub span: Span,
    pub seconds: f64,
    pub calls: u64,
}

/// One chunk's time at one step ([`log_chunks`]): what told the threads' speeds apart
/// step by step in docs/benchmarks.md (thirteenth round).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkTime {
    pub step: u64,
    pub pop: u32,
    pub chunk: u32,
    /// As [`SpanTotal::thread`].
    pub thread: u32,
    pub nanos: u64,
}

/// Chunk times kept at most ([`log_chunks`]): 32 MB of them.
pub const MAX_CHUNK_TIMES: usize = 1 << 20;

#[cfg(feature = "step-timers")]
mod on {
    use super::{ChunkTime, MAX_CHUNK_TIMES, SPANS, Span, SpanTotal};
    use std::cell::Cell;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;

    /// Threads told apart; a pool with more shares the last slot.
    const THREADS: usize = 64;

    /// One thread's nanoseconds and calls per span, on lines of its own (two threads
    /// adding to one line would pass it between their cores at every span).
    #[repr(align(128))]
    struct Slot {
        nanos: [AtomicU64; SPANS.len()],
        calls: [AtomicU64; SPANS.len()],
    }

    static SLOTS: [Slot; THREADS] = [const { Slot { nanos: [const { AtomicU64::new(0) }; SPANS.len()], calls: [const { AtomicU64::new(0) }; SPANS.len()] } }; THREADS];

    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(0) };
    }

    pub struct Timer {
        span: Span,
        /// Nanoseconds from `EPOCH`.
        from: u64,
    }

    /// When the totals were last taken ([`take`]): a span that began before counts from
    /// then (a worker waits for its first phase from when its pool starts, before the
    /// run being timed).
    static TAKEN: AtomicU64 = AtomicU64::new(0);

    /// When the last phase was opened, in nanoseconds from `EPOCH`, on a line of its own.
    #[repr(align(128))]
    struct Opened(AtomicU64);
    static OPENED: Opened = Opened(AtomicU64::new(0));
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    fn since_epoch() -> u64 {
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    pub fn opened() {
        OPENED.0.store(since_epoch(), Ordering::Relaxed);
    }

    pub fn started() {
        let ns = since_epoch().saturating_sub(OPENED.0.load(Ordering::Relaxed));
        let (t, s) = (SLOT.with(Cell::get), Span::Start as usize);
        SLOTS[t].nanos[s].fetch_add(ns, Ordering::Relaxed);
        SLOTS[t].calls[s].fetch_add(1, Ordering::Relaxed);
    }

    pub fn start(span: Span) -> Timer {
        Timer { span, from: since_epoch() }
    }

    impl Drop for Timer {
        fn drop(&mut self) {
            let ns = since_epoch().saturating_sub(self.from.max(TAKEN.load(Ordering::Relaxed)));
            let (t, s) = (SLOT.with(Cell::get), self.span as usize);
            SLOTS[t].nanos[s].fetch_add(ns, Ordering::Relaxed);
            SLOTS[t].calls[s].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn set_thread(t: usize) {
        SLOT.with(|s| s.set(t.min(THREADS - 1)));
    }

    static LOGGING: AtomicBool = AtomicBool::new(false);
    static CHUNKS: Mutex<Vec<ChunkTime>> = Mutex::new(Vec::new());

    pub fn log_chunks(on: bool) {
        LOGGING.store(on, Ordering::Relaxed);
    }

    pub fn now() -> u64 {
        if LOGGING.load(Ordering::Relaxed) { since_epoch() } else { 0 }
    }

    pub fn chunk(step: u64, pop: usize, chunk: usize, from: u64) {
        if !LOGGING.load(Ordering::Relaxed) {
            return;
        }
        let nanos = since_epoch().saturating_sub(from);
        let thread = SLOT.with(Cell::get) as u32;
        let mut log = CHUNKS.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() < MAX_CHUNK_TIMES {
            log.push(ChunkTime { step, pop: pop as u32, chunk: chunk as u32, thread, nanos });
        }
    }

    pub fn take_chunks() -> Vec<ChunkTime> {
        std::mem::take(&mut *CHUNKS.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn take() -> Vec<SpanTotal> {
        TAKEN.store(since_epoch(), Ordering::Relaxed);
        let mut out = Vec::new();
        for (t, slot) in SLOTS.iter().enumerate() {
            for (&span, (n, c)) in SPANS.iter().zip(slot.nanos.iter().zip(&slot.calls)) {
                let (n, c) = (n.swap(0, Ordering::Relaxed), c.swap(0, Ordering::Relaxed));
                if c > 0 {
                    out.push(SpanTotal { thread: t, span, seconds: n as f64 * 1e-9, calls: c });
                }
            }
        }
        out
    }
}

#[cfg(not(feature = "step-timers"))]
mod on {
    use super::{ChunkTime, Span, SpanTotal};

    pub struct Timer;

    #[inline(always)]
    pub fn start(_: Span) -> Timer {
        Timer
    }

    #[inline(always)]
    pub fn set_thread(_: usize) {}

    #[inline(always)]
    pub fn opened() {}

    #[inline(always)]
    pub fn started() {}

    pub fn take() -> Vec<SpanTotal> {
        Vec::new()
    }

    pub fn log_chunks(_: bool) {}

    #[inline(always)]
    pub fn now() -> u64 {
        0
    }

    #[inline(always)]
    pub fn chunk(_: u64, _: usize, _: usize, _: u64) {}

    pub fn take_chunks() -> Vec<ChunkTime> {
        Vec::new()
    }
}

/// Times `span` on this thread until the value is dropped.
pub use on::Timer;

/// A [`Timer`] of `span`, running from now.
#[inline(always)]
pub fn start(span: Span) -> Timer {
    on::start(span)
}

/// Names the pool thread running here (0: the caller).
#[inline(always)]
pub(crate) fn set_thread(t: usize) {
    on::set_thread(t);
}

/// A phase is opened now (before its `state` is published).
#[inline(always)]
pub(crate) fn opened() {
    on::opened();
}

/// A worker starts its first chunk of the phase opened last ([`Span::Start`]).
#[inline(always)]
pub(crate) fn started() {
    on::started();
}

/// The totals since the last call, per thread and span (empty without the feature);
/// the counters start again from zero.
pub fn take() -> Vec<SpanTotal> {
    on::take()
}

/// Whether each chunk's time is logged step by step from now on (a `step-timers` build;
/// `snnc bench sim` with `SNNC_CHUNK_TIMES=FILE`): the totals above hide which thread
/// was slow when, the log shows it (`bench/chunk_times.py`).
pub fn log_chunks(on: bool) {
    on::log_chunks(on);
}

/// A clock for [`chunk`] (0 while nothing is logged).
#[inline(always)]
pub(crate) fn now() -> u64 {
    on::now()
}

/// Logs chunk `chunk` of population `pop` at `step`, begun at `from` ([`now`]), on
/// this thread, if chunks are logged (the first [`MAX_CHUNK_TIMES`] only).
#[inline(always)]
pub(crate) fn chunk(step: u64, pop: usize, chunk: usize, from: u64) {
    on::chunk(step, pop, chunk, from);
}

/// The chunk times logged since the last call, in the order they ended.
pub fn take_chunks() -> Vec<ChunkTime> {
    on::take_chunks()
}

#[cfg(all(test, feature = "step-timers"))]
mod tests {
    use super::*;

    #[test]
    fn spans_add_up_per_thread() {
        // Slots of their own: other tests step networks on slot 0 meanwhile.
        let timed = |slot: usize, span: Span, times: usize| {
            std::thread::spawn(move || {
                set_thread(slot);
                for _ in 0..times {
                    let _t = start(span);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
            .join()
            .unwrap()
        };
        timed(60, Span::Gather, 3);
        timed(61, Span::Idle, 1);
        let got = take();
        let gather = got.iter().find(|s| s.thread == 60 && s.span == Span::Gather).expect("timed");
        assert_eq!(gather.calls, 3);
        assert!(gather.seconds >= 0.006, "{gather:?}");
        assert!(got.iter().any(|s| s.thread == 61 && s.span == Span::Idle && s.calls == 1));
        assert!(!take().iter().any(|s| s.thread >= 60), "taken");
    }

    /// Chunk times are logged only while asked for, with the thread that ran them.
    #[test]
    fn chunk_times_are_logged_while_asked_for() {
        let logged = |on: bool| {
            std::thread::spawn(move || {
                set_thread(59);
                log_chunks(on);
                let from = now();
                std::thread::sleep(std::time::Duration::from_millis(2));
                chunk(7, 1, 2, from);
                log_chunks(false);
            })
            .join()
            .unwrap();
            take_chunks().into_iter().filter(|c| c.thread == 59).collect::<Vec<_>>()
        };
        assert!(logged(false).is_empty());
        let got = logged(true);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].step, got[0].pop, got[0].chunk), (7, 1, 2));
        assert!(got[0].nanos >= 2_000_000, "{got:?}");
    }
}
