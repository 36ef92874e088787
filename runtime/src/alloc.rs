//! A global allocator that lays out the runtime's buffers for vector kernels and for
//! threads that share the work of a step: the programs built on the runtime (the `snnc`
//! CLI, the Python module) install it, and an embedder may (`#[global_allocator] static A:
//! CacheAligned = CacheAligned;`). Results do not depend on it: only where buffers lie.
//!
//! A population's states, inputs and spikes are `Vec`s. The system allocator starts one
//! 16 bytes into a cache line, or (a large one) 16 bytes into a page, and puts the next
//! right after it. Then
//! - every 64-byte vector load of an AVX-512 kernel straddles two lines (every other
//!   32-byte load of an AVX2 kernel);
//! - at each boundary between two threads' shares of a population (multiples of 16
//!   neurons, `parallel::split_range`) one line of every array is written by both threads;
//! - a thread streaming its share to the end of one array runs (through the hardware
//!   prefetchers, which follow a stream to the end of its page) into the start of the
//!   array allocated after it, the other thread's share: those lines pass between the
//!   cores every step, and the other thread starts each step's kernel waiting for them;
//! - every large array starts at the same place in a page, so element i of all of them
//!   falls in one set of the level-1 cache.
//!
//! So: a buffer of [`ALIGNED_FROM`] bytes or more starts on a line; one of
//! [`STAGGERED_FROM`] bytes or more (a population of 4,096 f32 neurons, the smallest the
//! threads split) starts at a line of a page that changes from one buffer to the next,
//! and is followed by a page that nothing uses (at most 8 KiB more a buffer).
//!
//! On Linux a buffer of [`HUGE_FROM`] bytes or more (a synapse table, a large population's
//! state, a long recording) is mapped on its own, starting on a 2 MiB boundary, and the
//! kernel is asked to back it with huge pages (`madvise(MADV_HUGEPAGE)`, which the usual
//! setting of transparent huge pages, `madvise`, waits for): a spike's row of synapses then
//! lies in a page the TLB already maps instead of costing a page walk, a buffer faults in
//! 2 MiB at a time instead of 4 KiB, and growing one moves its pages (`mremap`) instead of
//! copying its bytes. Where the kernel has no huge page to give, the pages are ordinary.
//!
//! Measured (docs/benchmarks.md, 2026-12-06 night, `bash bench/sim_ab.sh`, medians):
//! lines alone, one thread / two threads: COBA 40k 0.159 -> 0.149 s / 0.106 -> 0.100 s,
//! CUBA 400k 0.483 -> 0.394 s / 0.312 -> 0.245 s. With the pages apart, the first 512
//! neurons of the main thread's share took 2.1-2.5 ms of a two-thread COBA 40k run instead
//! of 4.8-6.0 ms (17-21 ms instead of 2.5 ms when the run is in its slow mode).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Buffers of this many bytes or more start on a cache line. Smaller ones are never
/// split across threads (a chunk has thousands of neurons) and would waste the most.
pub const ALIGNED_FROM: usize = 512;
/// Buffers of this many bytes or more also start at a line of a page that changes from
/// one to the next, with a page to themselves after their end.
pub const STAGGERED_FROM: usize = 16 << 10;
/// Buffers of this many bytes or more are mapped on their own, on huge pages where the
/// system gives them (Linux): the smallest that huge pages serve without wasting more than
/// they hold.
pub const HUGE_FROM: usize = 1 << 20;
/// Whether buffers of [`HUGE_FROM`] bytes or more are mapped on huge pages.
const HUGE_PAGES: bool = cfg!(target_os = "linux");
/// A cache line (x86-64, most AArch64).
const LINE: usize = 64;
/// A page: the span hardware prefetchers stay within, and the span of addresses that
/// map one-to-one onto the level-1 cache's sets.
const PAGE: usize = 4096;

/// [`System`], laying out buffers as the module's documentation says.
pub struct CacheAligned;

/// Staggered buffers made so far: the next one's line in its page.
static STAGGERS: AtomicUsize = AtomicUsize::new(0);

/// How a layout is allocated: decided by the layout alone, so that `dealloc` and
/// `realloc`, which are given the caller's layout, find it again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// As asked (small, or aligned more than a line already).
    Plain,
    /// On a cache line.
    Line,
    /// Page-aligned, handed out `offset` bytes in (a multiple of a line below a page, so
    /// the pointer's low bits give it back), a page unused after the end.
    Staggered,
    /// As `Staggered`, in a mapping of its own on huge pages ([`huge`]).
    Huge,
}

fn kind(l: Layout) -> Kind {
    match l.size() {
        _ if l.align() > LINE => Kind::Plain,
        s if HUGE_PAGES && s >= HUGE_FROM => Kind::Huge,
        s if s >= STAGGERED_FROM => Kind::Staggered,
        s if s >= ALIGNED_FROM => Kind::Line,
        _ => Kind::Plain,
    }
}

/// The layout asked of the system for `l` of kind `k` (`offset`: a staggered buffer's).
fn system_layout(l: Layout, k: Kind, offset: usize) -> Layout {
    match k {
        Kind::Plain => l,
        // A power of two no smaller than the old alignment: cannot fail.
        Kind::Line => l.align_to(LINE).expect("a line-aligned layout"),
        // A large allocation's size, far from overflowing with two pages more.
        Kind::Staggered => Layout::from_size_align(l.size() + offset + PAGE, PAGE).expect("a page-aligned layout"),
        Kind::Huge => unreachable!("huge buffers are mapped, not asked of the system"),
    }
}

/// The next staggered buffer's offset in its page: 5 lines on from the last (5 and 64
/// share no factor: 64 buffers in a row start at 64 different lines).
fn next_offset() -> usize {
    let n = STAGGERS.fetch_add(1, Ordering::Relaxed);
    (n * 5 % (PAGE / LINE)) * LINE
}

// SAFETY: every block comes from `System` with `system_layout` of the caller's layout and
// goes back to it with the same layout and start (a staggered buffer's offset is its
// pointer's place in its page); what is handed out is at least as large and aligned as
// asked.
/// A block for `l` from `system` (the system's `alloc` or `alloc_zeroed`, which gets this
/// allocator's layout for it): a staggered one handed out `offset` bytes in.
fn allocate(l: Layout, system: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
    match kind(l) {
        Kind::Staggered => {
            let offset = next_offset();
            let p = system(system_layout(l, Kind::Staggered, offset));
            // SAFETY: the block holds `offset` bytes more than asked.
            if p.is_null() { p } else { unsafe { p.add(offset) } }
        }
        Kind::Huge => {
            let offset = next_offset();
            // SAFETY: a mapping of `huge::mapped` bytes holds `offset` bytes more than
            // asked; its pages are zero, as `alloc_zeroed` needs.
            let p = unsafe { huge::map(huge::mapped(l.size(), offset)) };
            if p.is_null() { p } else { unsafe { p.add(offset) } }
        }
        k => system(system_layout(l, k, 0)),
    }
}

unsafe impl GlobalAlloc for CacheAligned {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: as `GlobalAlloc::alloc` (a non-zero size is kept).
        allocate(l, |sl| unsafe { System.alloc(sl) })
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as in `alloc` (small blocks keep `calloc`'s lazily zeroed pages).
        allocate(l, |sl| unsafe { System.alloc_zeroed(sl) })
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        match kind(l) {
            Kind::Staggered => {
                let offset = p as usize % PAGE;
                // SAFETY: the block starts `offset` bytes before `p`, made with this layout.
                unsafe { System.dealloc(p.sub(offset), system_layout(l, Kind::Staggered, offset)) }
            }
            Kind::Huge => {
                let offset = p as usize % PAGE;
                // SAFETY: the mapping starts `offset` bytes before `p`, with this length.
                unsafe { huge::unmap(p.sub(offset), huge::mapped(l.size(), offset)) }
            }
            // SAFETY: `p` is `System`'s, made with this layout.
            k => unsafe { System.dealloc(p, system_layout(l, k, 0)) },
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(new_size, l.align()).expect("a valid size");
        let (old, new) = (kind(l), kind(new_layout));
        if old == new && old == Kind::Huge {
            // The pages move, not the bytes (a recording that grows is never copied).
            let offset = p as usize % PAGE;
            // SAFETY: the mapping starts `offset` bytes before `p`, with the old length.
            let q = unsafe { huge::remap(p.sub(offset), huge::mapped(l.size(), offset), huge::mapped(new_size, offset)) };
            // SAFETY: the new mapping holds `offset` bytes more than asked.
            return if q.is_null() { q } else { unsafe { q.add(offset) } };
        }
        if old == new && old != Kind::Staggered {
            // SAFETY: `p` is `System`'s with this layout, whose alignment stays.
            return unsafe { System.realloc(p, system_layout(l, old, 0), new_size) };
        }
        // Another kind of block, or a staggered one (the system cannot keep its offset
        // and its page after): a new block, the bytes copied.
        // SAFETY: a realloc's new size is non-zero; both blocks hold the bytes copied and
        // do not overlap; `p` goes back as it was made.
        unsafe {
            let q = self.alloc(new_layout);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
            q
        }
    }
}

/// Buffers mapped on their own on huge pages (Linux); elsewhere never called.
#[cfg(target_os = "linux")]
mod huge {
    use super::PAGE;

    /// A huge page (x86-64, and AArch64 with 4 KiB pages).
    pub const SIZE: usize = 2 << 20;

    /// The bytes mapped for a buffer of `size` bytes handed out `offset` bytes in: whole
    /// huge pages, the last with at least a page unused after the buffer's end.
    pub fn mapped(size: usize, offset: usize) -> usize {
        (size + offset + PAGE).next_multiple_of(SIZE)
    }

    /// `len` bytes (whole huge pages) of zeroed memory starting on a huge page, which the
    /// kernel is asked to back with huge pages; null when there is no memory.
    ///
    /// # Safety
    /// `len` is a non-zero multiple of [`SIZE`].
    pub unsafe fn map(len: usize) -> *mut u8 {
        // Mapped a huge page longer, then trimmed to start on one.
        let over = len + SIZE;
        // SAFETY: a new private anonymous mapping, touching nothing else.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), over, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        let head = (p as usize).next_multiple_of(SIZE) - p as usize;
        // SAFETY: both pieces lie in the mapping just made, outside what is kept; the
        // advice only asks (without huge pages, the pages are ordinary ones).
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            let start = p.cast::<u8>().add(head);
            if over - head > len {
                libc::munmap(start.add(len).cast(), over - head - len);
            }
            libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE);
            start
        }
    }

    /// Unmaps a mapping made by [`map`] or [`remap`].
    ///
    /// # Safety
    /// `p` and `len` are such a mapping's start and length, not used after.
    pub unsafe fn unmap(p: *mut u8, len: usize) {
        // SAFETY: as the caller promises.
        unsafe { libc::munmap(p.cast(), len) };
    }

    /// The mapping at `p` of `old` bytes, made `new` bytes long (whole huge pages): cut
    /// where it shrinks; where it grows, its pages moved (not copied) to a new place that
    /// starts on a huge page, the rest zeroed. Null (and the old mapping kept) when there
    /// is no memory.
    ///
    /// # Safety
    /// `p` and `old` are a mapping made by [`map`] or [`remap`]; `new` a non-zero
    /// multiple of [`SIZE`]. Unless null is returned, `p` is not used after.
    pub unsafe fn remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
        if new <= old {
            // SAFETY: the tail lies in the mapping.
            unsafe {
                if new < old {
                    libc::munmap(p.add(new).cast(), old - new);
                }
            }
            return p;
        }
        // SAFETY: `map`'s contract holds for `new`.
        let q = unsafe { map(new) };
        if q.is_null() {
            return q;
        }
        // SAFETY: the old mapping moves onto the new one's place (which it replaces),
        // whole, keeping its advice; the grown part is zero.
        let r = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, q.cast::<libc::c_void>()) };
        if r == libc::MAP_FAILED {
            // SAFETY: the new mapping is ours and unused.
            unsafe { unmap(q, new) };
            return std::ptr::null_mut();
        }
        r.cast()
    }
}

/// Never called where buffers are not mapped on huge pages ([`HUGE_PAGES`] is false).
#[cfg(not(target_os = "linux"))]
mod huge {
    pub fn mapped(_: usize, _: usize) -> usize {
        unreachable!("no huge buffers here")
    }
    pub unsafe fn map(_: usize) -> *mut u8 {
        unreachable!("no huge buffers here")
    }
    pub unsafe fn unmap(_: *mut u8, _: usize) {
        unreachable!("no huge buffers here")
    }
    pub unsafe fn remap(_: *mut u8, _: usize, _: usize) -> *mut u8 {
        unreachable!("no huge buffers here")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small and large blocks, grown and shrunk across the thresholds, keep their bytes
    /// and, once large, start on a line; staggered ones at different lines of a page.
    #[test]
    fn large_blocks_start_on_a_line_and_keep_their_bytes_across_reallocs() {
        let a = CacheAligned;
        for &(from, to) in &[(16usize, 4096usize), (4096, 16), (600, 100_000), (100_000, 600), (1000, 2000), (8, 24), (20_000, 300_000), (300_000, 20_000), (1 << 20, 1 << 21), (600_000, 3 << 20), (3 << 20, 9 << 20), (9 << 20, (9 << 20) + 1), (9 << 20, 1 << 20), (5 << 20, 100), (4 << 20, 300_000)] {
            let l = Layout::from_size_align(from, 4).unwrap();
            // SAFETY: non-zero sizes; every block is released with the layout it has.
            unsafe {
                let p = a.alloc(l);
                assert!(!p.is_null());
                assert!(from < ALIGNED_FROM || (p as usize).is_multiple_of(LINE));
                for i in 0..from {
                    *p.add(i) = i as u8;
                }
                let q = a.realloc(p, l, to);
                assert!(!q.is_null());
                assert!(to < ALIGNED_FROM || (q as usize).is_multiple_of(LINE), "{from} -> {to}");
                // A huge buffer's mapping starts on a huge page, grown or not.
                assert!(!HUGE_PAGES || to < HUGE_FROM || (q as usize - q as usize % PAGE).is_multiple_of(2 << 20), "{from} -> {to}");
                for i in from.min(to)..to {
                    *q.add(i) = 7;
                }
                assert!((0..from.min(to)).all(|i| *q.add(i) == i as u8), "{from} -> {to}");
                a.dealloc(q, Layout::from_size_align(to, 4).unwrap());
            }
        }
        // SAFETY: as above.
        unsafe {
            for size in [600_000, 3 << 20] {
                let l = Layout::from_size_align(size, 4).unwrap();
                let z = a.alloc_zeroed(l);
                assert!((z as usize).is_multiple_of(LINE) && (0..size).all(|i| *z.add(i) == 0));
                a.dealloc(z, l);
            }
        }
        // Consecutive large blocks start at different lines of a page.
        let l = Layout::from_size_align(STAGGERED_FROM, 4).unwrap();
        // SAFETY: as above.
        let blocks: Vec<*mut u8> = (0..8).map(|_| unsafe { a.alloc(l) }).collect();
        let mut offsets: Vec<usize> = blocks.iter().map(|&p| p as usize % PAGE).collect();
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), 8, "{offsets:?}");
        for p in blocks {
            // SAFETY: as above.
            unsafe { a.dealloc(p, l) };
        }
    }
}
