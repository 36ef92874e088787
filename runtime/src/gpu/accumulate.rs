//! Accumulation buffers a step sums into (a population's inputs, a readout's output, the
//! learning signals dL/ds and dL/dh). Clearing each one every step and then adding costs
//! a device call per buffer per step; instead the step's first write overwrites the
//! buffer (a GEMM with beta = 0, a copy), which gives the same values (0 + x = x), and a
//! buffer that is read (or added to atomically) before any write of its step is cleared
//! then. A buffer no step writes is cleared once and stays zero. A population's step
//! kernel clears the inputs it has read (`PtxKernel::consuming`), so they start the next
//! step zero: its atomic deliveries need no clearing call.

use super::device::{Buf, Device};
use super::{Counted, dev_err};
use crate::error::RuntimeError;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Held {
    /// All zeros.
    Zero,
    /// What an earlier step wrote.
    Stale,
    /// Written this step.
    Written,
}

/// The state of each accumulation buffer (see the module doc).
#[derive(Clone, Default)]
pub(crate) struct Accumulators {
    held: HashMap<Buf, Held>,
}

impl Accumulators {
    /// Tracks `bufs`, which must be all zeros now.
    pub fn track(&mut self, bufs: impl IntoIterator<Item = Buf>) {
        self.held.extend(bufs.into_iter().map(|b| (b, Held::Zero)));
    }

    /// What each buffer holds, in a canonical order (to key a recorded window by, and to
    /// restore after replaying it).
    pub fn snapshot(&self) -> Vec<(usize, u8)> {
        let mut v: Vec<(usize, u8)> = self.held.iter().map(|(b, h)| (b.0, *h as u8)).collect();
        v.sort_unstable();
        v
    }

    /// Back to a [`Accumulators::snapshot`].
    pub fn restore(&mut self, snap: &[(usize, u8)]) {
        for &(b, h) in snap {
            let h = match h {
                0 => Held::Zero,
                1 => Held::Stale,
                _ => Held::Written,
            };
            self.held.insert(Buf(b), h);
        }
    }

    /// A new step: what the last one wrote is stale.
    pub fn next_step(&mut self) {
        self.held.values_mut().filter(|h| **h == Held::Written).for_each(|h| *h = Held::Stale);
    }

    /// Every buffer was cleared (a reset).
    pub fn cleared(&mut self) {
        self.held.values_mut().for_each(|h| *h = Held::Zero);
    }

    /// A kernel left `b` all zeros (a step that clears the inputs it has read).
    pub fn cleared_one(&mut self, b: Buf) {
        self.held.insert(b, Held::Zero);
    }

    /// Before a write that adds into `b`: true when it should overwrite instead (this is
    /// the step's first write). `b` is written from now on.
    pub fn first_write(&mut self, b: Buf) -> bool {
        match self.held.insert(b, Held::Written) {
            Some(Held::Written) => false,
            _ => true,
        }
    }

    /// Before `b` is read, or added to by a kernel that cannot overwrite: a stale buffer
    /// is cleared. `written` marks it written by that kernel.
    pub fn settle<D: Device>(&mut self, dev: &mut Counted<D>, b: Buf, written: bool) -> Result<(), RuntimeError> {
        let h = self.held.get(&b).copied().unwrap_or(Held::Stale);
        if h == Held::Stale {
            dev.zero(b).map_err(dev_err)?;
        }
        let now = if written { Held::Written } else if h == Held::Stale { Held::Zero } else { h };
        self.held.insert(b, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{Elem, EmuDevice, Host, HostMut};
    use snnc_compiler::backend::ptx::Target;

    #[test]
    fn first_writes_overwrite_and_stale_reads_are_cleared() {
        let mut dev = Counted::new(EmuDevice::new(Target::Sm80));
        let (a, b) = (dev.alloc(Elem::F64, 2, "a").unwrap(), dev.alloc(Elem::F64, 2, "b").unwrap());
        let mut acc = Accumulators::default();
        acc.track([a, b]);
        // Step 1: a written twice (overwrite, then add); b only read: already zero.
        assert!(acc.first_write(a));
        assert!(!acc.first_write(a));
        acc.settle(&mut dev, b, false).unwrap();
        assert_eq!(dev.counts.zeros, 0);
        // Step 2: a is read before any write: cleared; b, never written, stays zero.
        acc.next_step();
        dev.upload(a, Host::F64(&[1.0, 2.0])).unwrap();
        acc.settle(&mut dev, a, false).unwrap();
        acc.settle(&mut dev, b, false).unwrap();
        assert_eq!(dev.counts.zeros, 1);
        let mut v = [9.0; 2];
        dev.download(a, HostMut::F64(&mut v)).unwrap();
        assert_eq!(v, [0.0, 0.0]);
        // Step 3: a is zero (cleared in step 2, not written since): its write overwrites,
        // and a read of it needs no clear.
        acc.next_step();
        assert!(acc.first_write(a));
        acc.settle(&mut dev, a, false).unwrap();
        assert_eq!(dev.counts.zeros, 1);
    }
}
