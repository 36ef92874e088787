//! Counting what the engine asks of a device: kernel launches, GEMMs, copies each way
//! and host synchronisations. The cost of a GPU step at small sizes is its number of
//! calls, not its arithmetic, so the counts are what `snnc bench --backend cuda` reports
//! per step, and what a test on the emulated device can check without a GPU.

use super::device::{Buf, DResult, Device, Elem, Gemm, GraphId, Host, HostMut, KArg, ModId, Module};
use snnc_compiler::backend::ptx::Target;
use std::ops::{Deref, DerefMut};

/// Device calls so far (see [`Counted`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Kernel launches (GEMMs not included).
    pub launches: u64,
    pub gemms: u64,
    /// Buffer clears (`memset`).
    pub zeros: u64,
    pub uploads: u64,
    pub downloads: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Times the host waited for the device: every download, and every `synchronize`.
    pub syncs: u64,
    /// Graph replays (one host call each), and the device calls they ran.
    pub replays: u64,
    pub replayed_calls: u64,
}

impl Counts {
    /// Calls the host makes into the device's queue (launches, GEMMs, clears, copies,
    /// graph replays): what costs host time per step.
    pub fn calls(&self) -> u64 {
        self.launches + self.gemms + self.zeros + self.uploads + self.downloads + self.replays
    }

    /// `self - before`: the calls made since `before` was taken.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            launches: self.launches - before.launches,
            gemms: self.gemms - before.gemms,
            zeros: self.zeros - before.zeros,
            uploads: self.uploads - before.uploads,
            downloads: self.downloads - before.downloads,
            bytes_up: self.bytes_up - before.bytes_up,
            bytes_down: self.bytes_down - before.bytes_down,
            syncs: self.syncs - before.syncs,
            replays: self.replays - before.replays,
            replayed_calls: self.replayed_calls - before.replayed_calls,
        }
    }

    /// Per step, as JSON fields (for `snnc bench`): `"launches": 12.5, ...`.
    pub fn per_step_json(&self, steps: u64) -> String {
        let d = steps.max(1) as f64;
        format!(
            "\"device_calls\": {:.2}, \"launches\": {:.2}, \"gemms\": {:.2}, \"zeros\": {:.2}, \"uploads\": {:.3}, \"downloads\": {:.3}, \"syncs\": {:.3}, \"bytes_up\": {:.1}, \"bytes_down\": {:.1}, \"graph_replays\": {:.3}, \"graph_calls\": {:.2}",
            self.calls() as f64 / d,
            self.launches as f64 / d,
            self.gemms as f64 / d,
            self.zeros as f64 / d,
            self.uploads as f64 / d,
            self.downloads as f64 / d,
            self.syncs as f64 / d,
            self.bytes_up as f64 / d,
            self.bytes_down as f64 / d,
            self.replays as f64 / d,
            self.replayed_calls as f64 / d
        )
    }
}

/// A [`Device`] that counts the calls made through it ([`Counts`]) and passes them on;
/// it dereferences to the device it wraps (an emulator's log, say).
pub struct Counted<D> {
    pub inner: D,
    pub counts: Counts,
    /// The calls recorded by the capture under way, and per graph its number of calls
    /// (counted when replayed, not when recorded).
    capture: Option<Counts>,
    graph_calls: Vec<u64>,
}

impl<D> Counted<D> {
    pub fn new(inner: D) -> Counted<D> {
        Counted { inner, counts: Counts::default(), capture: None, graph_calls: Vec::new() }
    }

    /// Where a call is counted: in the capture under way, or as made.
    fn tally(&mut self) -> &mut Counts {
        self.capture.as_mut().unwrap_or(&mut self.counts)
    }
}

impl<D> Deref for Counted<D> {
    type Target = D;
    fn deref(&self) -> &D {
        &self.inner
    }
}

impl<D> DerefMut for Counted<D> {
    fn deref_mut(&mut self) -> &mut D {
        &mut self.inner
    }
}

fn bytes(elem: Elem, len: usize) -> u64 {
    (elem.size() * len) as u64
}

impl<D: Device> Device for Counted<D> {
    fn target(&self) -> Target {
        self.inner.target()
    }
    fn alloc(&mut self, elem: Elem, len: usize, label: &str) -> DResult<Buf> {
        self.inner.alloc(elem, len, label)
    }
    fn view(&mut self, base: Buf, offset: usize, len: usize, label: &str) -> DResult<Buf> {
        self.inner.view(base, offset, len, label)
    }
    fn upload(&mut self, buf: Buf, src: Host<'_>) -> DResult<()> {
        self.counts.uploads += 1;
        self.counts.bytes_up += bytes(src.elem(), src.len());
        self.inner.upload(buf, src)
    }
    fn download(&mut self, buf: Buf, dst: HostMut<'_>) -> DResult<()> {
        self.counts.downloads += 1;
        self.counts.syncs += 1;
        let len = match &dst {
            HostMut::F32(s) => s.len(),
            HostMut::F64(s) => s.len(),
            HostMut::U32(s) => s.len(),
        };
        self.counts.bytes_down += bytes(dst.elem(), len);
        self.inner.download(buf, dst)
    }
    fn zero(&mut self, buf: Buf) -> DResult<()> {
        self.tally().zeros += 1;
        self.inner.zero(buf)
    }
    fn load(&mut self, module: &Module) -> DResult<ModId> {
        self.inner.load(module)
    }
    fn launch(&mut self, module: ModId, entry: &'static str, grid: (u32, u32), block: u32, args: &[KArg]) -> DResult<()> {
        self.tally().launches += 1;
        self.inner.launch(module, entry, grid, block, args)
    }
    fn gemm(&mut self, g: &Gemm) -> DResult<()> {
        self.tally().gemms += 1;
        self.inner.gemm(g)
    }
    fn begin_capture(&mut self) -> DResult<()> {
        self.inner.begin_capture()?;
        self.capture = Some(Counts::default());
        Ok(())
    }
    fn end_capture(&mut self) -> DResult<GraphId> {
        let recorded = self.capture.take().map_or(0, |c| c.calls());
        let g = self.inner.end_capture()?;
        if self.graph_calls.len() <= g.0 {
            self.graph_calls.resize(g.0 + 1, 0);
        }
        self.graph_calls[g.0] = recorded;
        Ok(g)
    }
    fn replay(&mut self, graph: GraphId) -> DResult<()> {
        self.counts.replays += 1;
        self.counts.replayed_calls += self.graph_calls.get(graph.0).copied().unwrap_or(0);
        self.inner.replay(graph)
    }
    fn synchronize(&mut self) -> DResult<()> {
        self.counts.syncs += 1;
        self.inner.synchronize()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}
