//! The worker threads of a network that simulates on several cores: a pool that lives as
//! long as the network, running one job per step on every thread (the caller included),
//! and the barrier its threads meet at between the phases of a step.
//!
//! Waiting spins briefly, then yields, then (between steps only) sleeps on a condition
//! variable: a step of a mid-sized network lasts tens of microseconds, too short for a
//! sleep and a wake-up, while a network that is not being stepped must not burn its cores.

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Spins of a waiting thread before it starts yielding its core.
const SPINS: u32 = 1 << 12;
/// How long a worker yields for the next step before it sleeps.
const YIELD_FOR: Duration = Duration::from_millis(2);

/// The job of the current step, erased to `'static` for the workers: valid from the
/// `epoch` bump that publishes it until every worker has reported back (see `Pool::run`).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    job: UnsafeCell<Option<Job>>,
    /// Bumped once per job (and to quit); workers start a job when they see it change.
    epoch: AtomicU64,
    /// Workers still running the current job.
    pending: AtomicUsize,
    quit: AtomicBool,
    /// A worker's job panicked (the payload is dropped; the caller panics after the join).
    panicked: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
    barrier: Barrier,
    denormals_flushed: bool,
}

// SAFETY: `job` is written only by the thread in `Pool::run` while no worker reads it
// (between jobs), and read by workers only between the Release bump of `epoch` that
// publishes it and their Release decrement of `pending`, which `run` waits for.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// Threads that run a job on every index 0..threads, index 0 on the caller's thread.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `threads` >= 2 in all (the caller and `threads - 1` workers), which run in the
    /// caller's denormal mode ([`crate::kernels::flush_denormals`]).
    pub(crate) fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(None),
            epoch: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            barrier: Barrier::new(threads),
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
        self.shared.barrier.n
    }

    /// The barrier every thread of a job meets at between phases.
    pub(crate) fn barrier(&self) -> &Barrier {
        &self.shared.barrier
    }

    /// Runs `job(t)` for every thread t (0 here), returning when all have finished; a
    /// panic in any of them is raised here once all have stopped. A job that waits at the
    /// barrier must do so the same number of times on every thread.
    pub(crate) fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        // SAFETY: lifetime erasure only; the pointer is read by workers before they
        // decrement `pending`, and this function does not return before `pending` is 0.
        let erased: Job = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(job as *const _) };
        // SAFETY: no worker reads `job` between jobs (see `Shared`).
        unsafe { *s.job.get() = Some(erased) };
        s.pending.store(self.handles.len(), Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::Release);
        // A worker checks `epoch` under this lock before sleeping, so it either sees the
        // new epoch or is asleep when this notification comes.
        drop(s.sleep.lock().unwrap_or_else(|e| e.into_inner()));
        s.wake.notify_all();
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            backoff(&mut spins);
        }
        // SAFETY: every worker is done with the job.
        unsafe { *s.job.get() = None };
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a simulation thread panicked");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.quit.store(true, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::Release);
        drop(s.sleep.lock().unwrap_or_else(|e| e.into_inner()));
        s.wake.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(s: &Shared, t: usize) {
    if s.denormals_flushed {
        crate::kernels::flush_denormals();
    }
    let mut seen = 0u64;
    loop {
        seen = wait_for_epoch(s, seen);
        if s.quit.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: published by the epoch bump just seen; valid until `pending` drops.
        let job = unsafe { (*s.job.get()).expect("a job is published with its epoch") };
        // SAFETY: see `Pool::run`: the job outlives this call.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(t) }));
        if r.is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Waits until `epoch` differs from `seen` (spinning, yielding, then sleeping); returns it.
fn wait_for_epoch(s: &Shared, seen: u64) -> u64 {
    let mut spins = 0u32;
    let start = Instant::now();
    loop {
        let e = s.epoch.load(Ordering::Acquire);
        if e != seen {
            return e;
        }
        if spins < SPINS || start.elapsed() < YIELD_FOR {
            backoff(&mut spins);
            continue;
        }
        let mut guard = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
        while s.epoch.load(Ordering::Acquire) == seen {
            guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
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

/// A reusable barrier for the `n` threads of a job (spin, then yield).
pub(crate) struct Barrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    fn new(n: usize) -> Barrier {
        Barrier { n, arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }

    /// Returns once all `n` threads have called it; what each wrote before is visible
    /// to all after.
    pub(crate) fn wait(&self) {
        let g = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            // The others wait for `generation`, so nobody touches `arrived` until it moves.
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == g {
            backoff(&mut spins);
        }
    }
}

/// The `t`-th of `parts` contiguous ranges splitting 0..n (sizes differ by at most
/// one vector width, and each starts on a multiple of 16 elements so that threads write
/// separate cache lines).
pub(crate) fn split_range(n: usize, parts: usize, t: usize) -> std::ops::Range<usize> {
    const ALIGN: usize = 16;
    let blocks = n.div_ceil(ALIGN);
    let at = |k: usize| ((blocks * k / parts) * ALIGN).min(n);
    at(t)..at(t + 1)
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

    #[test]
    fn every_thread_runs_every_job_and_the_barrier_orders_phases() {
        for threads in [2usize, 3, 4] {
            let pool = Pool::new(threads).expect("threads");
            let slots: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
            for round in 0..200u64 {
                pool.run(&|t| {
                    slots[t].store(round * 10 + t as u64, Ordering::Relaxed);
                    pool.barrier().wait();
                    // After the barrier every thread sees every other's write.
                    for (u, s) in slots.iter().enumerate() {
                        assert_eq!(s.load(Ordering::Relaxed), round * 10 + u as u64);
                    }
                    pool.barrier().wait();
                });
            }
        }
    }

    #[test]
    fn a_panicking_job_panics_in_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new(2).expect("threads");
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(&|t| assert!(t != 1, "worker fails"))));
        assert!(r.is_err());
        let hits = AtomicU64::new(0);
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
