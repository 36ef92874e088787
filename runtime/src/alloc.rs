//! A global allocator that starts every buffer of [`ALIGNED_FROM`] bytes or more on a
//! cache line: the programs built on the runtime (the `snnc` CLI, the Python module)
//! install it, and an embedder may (`#[global_allocator] static A: CacheAligned =
//! CacheAligned;`).
//!
//! Why: a population's states, inputs and spikes are `Vec`s, which the system allocator
//! starts 16 bytes into a line at best. Then
//! - every 64-byte vector load of an AVX-512 kernel straddles two lines, and
//! - the threads of a step ([`crate::network::Network::set_threads`]) split neurons at
//!   multiples of 16 (`parallel::split_range`), meant to fall between lines: on a
//!   misaligned buffer the line at each boundary is written by both threads, and passes
//!   between their cores every step, for every state, input and spike array.
//!
//! `bash bench/sim_ab.sh` (docs/benchmarks.md, 2026-12-06 night), medians of 8 runs at
//! 40,000 neurons (0.5 s) and 3 at 400,000 (0.1 s), one thread / two threads: COBA 40k
//! 0.159 -> 0.149 s / 0.106 -> 0.100 s, CUBA 40k 0.149 -> 0.142 s / 0.108 -> 0.095 s,
//! COBA 400k 0.594 -> 0.478 s / 0.310 -> 0.292 s, CUBA 400k 0.483 -> 0.394 s / 0.312 ->
//! 0.245 s. Results do not depend on it: only where buffers start changes.
//!
//! (Large blocks, which the system allocator maps page by page, all start at the same
//! place in a page; a line offset that changed from block to block was tried against 4K
//! aliasing between the arrays a kernel streams, and made no difference at 400,000
//! neurons.)

use std::alloc::{GlobalAlloc, Layout, System};

/// Buffers of this many bytes or more start on a cache line. Smaller ones are never
/// split across threads (a chunk has thousands of neurons) and would waste the most.
pub const ALIGNED_FROM: usize = 512;
/// A cache line (x86-64, most AArch64).
const LINE: usize = 64;

/// [`System`], with every allocation of [`ALIGNED_FROM`] bytes or more aligned to a cache
/// line (see the module's documentation).
pub struct CacheAligned;

/// The layout asked of the system for `l`: the alignment depends on the size alone, so
/// that `dealloc` and `realloc`, which are given the caller's layout, find it again.
fn system_layout(l: Layout) -> Layout {
    if l.size() >= ALIGNED_FROM && l.align() < LINE {
        // A power of two no smaller than the old alignment: cannot fail.
        l.align_to(LINE).expect("a line-aligned layout")
    } else {
        l
    }
}

// SAFETY: every call is forwarded to `System` with `system_layout` of the caller's
// layout, the same for an allocation and its release, and at least as aligned as asked.
unsafe impl GlobalAlloc for CacheAligned {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: as `GlobalAlloc::alloc` (a non-zero size is kept).
        unsafe { System.alloc(system_layout(l)) }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(system_layout(l)) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `System` with `system_layout(l)`.
        unsafe { System.dealloc(p, system_layout(l)) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let (old, new) = (system_layout(l), system_layout(Layout::from_size_align(new_size, l.align()).expect("a valid size")));
        if old.align() == new.align() {
            // SAFETY: `p` is `System`'s with layout `old`; the alignment stays.
            return unsafe { System.realloc(p, old, new_size) };
        }
        // The block crosses ALIGNED_FROM: a new one with the other alignment.
        // SAFETY: `new` has a non-zero size (a realloc's new size is non-zero).
        let q = unsafe { System.alloc(new) };
        if !q.is_null() {
            // SAFETY: both blocks hold at least the bytes copied and do not overlap; `p`
            // is released with the layout it was made with.
            unsafe {
                std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                System.dealloc(p, old);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small and large blocks, grown and shrunk across the threshold, keep their bytes
    /// and, once large, start on a line.
    #[test]
    fn large_blocks_start_on_a_line_and_keep_their_bytes_across_reallocs() {
        let a = CacheAligned;
        for &(from, to) in &[(16usize, 4096usize), (4096, 16), (600, 100_000), (100_000, 600), (1000, 2000), (8, 24)] {
            let l = Layout::from_size_align(from, 4).unwrap();
            // SAFETY: non-zero sizes; every block is released with the layout it has.
            unsafe {
                let p = a.alloc(l);
                assert!(!p.is_null());
                assert!(from < ALIGNED_FROM || p as usize % LINE == 0);
                for i in 0..from {
                    *p.add(i) = i as u8;
                }
                let q = a.realloc(p, l, to);
                assert!(!q.is_null());
                assert!(to < ALIGNED_FROM || q as usize % LINE == 0, "{from} -> {to}");
                assert!((0..from.min(to)).all(|i| *q.add(i) == i as u8), "{from} -> {to}");
                a.dealloc(q, Layout::from_size_align(to, 4).unwrap());
            }
        }
        // SAFETY: as above.
        unsafe {
            let l = Layout::from_size_align(1 << 20, 4).unwrap();
            let z = a.alloc_zeroed(l);
            assert!(z as usize % LINE == 0 && (0..1 << 20).all(|i| *z.add(i) == 0));
            a.dealloc(z, l);
        }
    }
}
