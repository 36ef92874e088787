//! What the GPU engine asks of a device: buffers, copies, module loading, kernel
//! launches and a GEMM. [`EmuDevice`] implements it on the CPU (recording every call and
//! executing the kernels: the step kernels' instruction streams through
//! [`PtxKernel::emulate`], the propagation kernels' PTX text through
//! [`text_emu`], with every access bounds-checked), so a network's whole GPU schedule
//! runs and is checked without a GPU;
//! `cuda::CudaDevice` (feature `cuda`) implements it with cudarc.

use snnc_compiler::backend::RandomCtx;
use snnc_compiler::backend::ptx::propagate;
use snnc_compiler::backend::ptx::text_emu::{self, Entry};
use snnc_compiler::backend::ptx::{Precision, PtxKernel, Target};
use std::collections::HashMap;
use std::fmt;

/// A device failure (driver, cuBLAS, a launch the emulator finds wrong).
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceError(pub String);

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceError {}

pub type DResult<T> = Result<T, DeviceError>;

/// The element type of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
    U32,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::U32 => 4,
            Elem::F64 => 8,
        }
    }

    pub fn float(p: Precision) -> Elem {
        match p {
            Precision::F32 => Elem::F32,
            Precision::F64 => Elem::F64,
        }
    }
}

/// A device buffer: an index into the device's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Buf(pub usize);

/// A loaded module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModId(pub usize);

/// A recorded sequence of device calls ([`Device::end_capture`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphId(pub usize);

/// Host data to upload.
#[derive(Clone, Copy, Debug)]
pub enum Host<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    U32(&'a [u32]),
}

/// Host memory to download into.
#[derive(Debug)]
pub enum HostMut<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    U32(&'a mut [u32]),
}

impl Host<'_> {
    pub fn elem(&self) -> Elem {
        match self {
            Host::F32(_) => Elem::F32,
            Host::F64(_) => Elem::F64,
            Host::U32(_) => Elem::U32,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Host::F32(s) => s.len(),
            Host::F64(s) => s.len(),
            Host::U32(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl HostMut<'_> {
    pub fn elem(&self) -> Elem {
        match self {
            HostMut::F32(_) => Elem::F32,
            HostMut::F64(_) => Elem::F64,
            HostMut::U32(_) => Elem::U32,
        }
    }
}

/// What a module holds. The PTX text comes from the compiler's emitters; the emulator
/// executes the same kernels from their structured form.
#[derive(Clone, Debug)]
pub enum Module {
    /// A population's step kernel ([`snnc_compiler::backend::ptx::STEP_ENTRY`]).
    Step(Box<PtxKernel>),
    /// The propagation kernels ([`propagate::ENTRIES`]).
    Propagate(Precision, Target),
}

impl Module {
    pub fn ptx(&self) -> String {
        match self {
            Module::Step(k) => k.ptx(),
            Module::Propagate(p, t) => propagate::emit_propagate(*p, *t),
        }
    }

    pub fn entries(&self) -> Vec<&'static str> {
        match self {
            Module::Step(k) => vec![k.entry],
            Module::Propagate(..) => propagate::ENTRIES.to_vec(),
        }
    }
}

/// A kernel argument, in `.param` order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KArg {
    Buf(Buf),
    U64(u64),
    F64(f64),
}

/// `C = alpha * op(A) op(B) + beta * C` in cuBLAS's column-major convention: op(A) is
/// m x k, op(B) is k x n, C is m x n (leading dimension ldc); `ta` / `tb` say that A / B
/// are stored transposed (A as k x m with leading dimension lda, B as n x k).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f64,
    pub a: Buf,
    pub lda: usize,
    pub ta: bool,
    pub b: Buf,
    pub tb: bool,
    pub ldb: usize,
    pub beta: f64,
    pub c: Buf,
    pub ldc: usize,
}

impl Gemm {
    /// The elements A, B and C must hold (column-major, with the leading dimensions and
    /// transposes), after checking the leading dimensions: what both devices check before
    /// a GEMM, so that a wrong shape is an error, not an out-of-bounds cuBLAS access.
    pub fn required_lengths(&self) -> DResult<[usize; 3]> {
        let need = |rows: usize, cols: usize, ld: usize| if cols == 0 { 0 } else { ld * (cols - 1) + rows };
        // Stored shapes (rows x cols) of A and B.
        let (ar, ac) = if self.ta { (self.k, self.m) } else { (self.m, self.k) };
        let (br, bc) = if self.tb { (self.n, self.k) } else { (self.k, self.n) };
        if self.lda < ar.max(1) || self.ldb < br.max(1) || self.ldc < self.m.max(1) {
            return Err(DeviceError(format!("gemm: leading dimensions too small: {self:?}")));
        }
        Ok([need(ar, ac, self.lda), need(br, bc, self.ldb), need(self.m, self.n, self.ldc)])
    }
}

/// One recorded device call (what [`EmuDevice::log`] holds).
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Alloc { buf: Buf, elem: Elem, len: usize, label: String },
    View { buf: Buf, base: Buf, offset: usize, len: usize },
    Upload { buf: Buf, len: usize },
    Download { buf: Buf, len: usize },
    Zero { buf: Buf },
    Load { module: ModId },
    Launch { module: ModId, entry: &'static str, grid: (u32, u32), block: u32, args: Vec<KArg> },
    Gemm(Gemm),
    /// The end of a capture: a graph of `calls` device calls.
    Capture { graph: GraphId, calls: usize },
    Replay { graph: GraphId },
}

/// The operations the GPU engine needs. Calls are ordered (one stream); downloads
/// return once the data is on the host.
pub trait Device {
    /// The PTX target of this device.
    fn target(&self) -> Target;
    /// A zeroed buffer of `len` elements (`label` names it in errors and logs).
    fn alloc(&mut self, elem: Elem, len: usize, label: &str) -> DResult<Buf>;
    /// Elements `offset..offset + len` of `base` as a buffer of their own, without a copy:
    /// what is written through one is seen through the other (a window's inputs are one
    /// upload, each step reading its slice). Views of views are refused.
    fn view(&mut self, base: Buf, offset: usize, len: usize, label: &str) -> DResult<Buf>;
    fn upload(&mut self, buf: Buf, src: Host<'_>) -> DResult<()>;
    fn download(&mut self, buf: Buf, dst: HostMut<'_>) -> DResult<()>;
    fn zero(&mut self, buf: Buf) -> DResult<()>;
    fn load(&mut self, module: &Module) -> DResult<ModId>;
    fn launch(&mut self, module: ModId, entry: &'static str, grid: (u32, u32), block: u32, args: &[KArg]) -> DResult<()>;
    fn gemm(&mut self, g: &Gemm) -> DResult<()>;
    /// Records the launches, GEMMs and clears that follow, without running them, until
    /// [`Device::end_capture`] (a window of steps, replayed as one graph: one host call
    /// instead of tens per step). Copies and synchronisations are refused meanwhile.
    fn begin_capture(&mut self) -> DResult<()>;
    /// Ends a recording: a graph of the calls made since [`Device::begin_capture`].
    fn end_capture(&mut self) -> DResult<GraphId>;
    /// Runs a recorded graph (the buffers it names hold what they hold now).
    fn replay(&mut self, graph: GraphId) -> DResult<()>;
    /// Waits for everything queued (for timing).
    fn synchronize(&mut self) -> DResult<()>;
    /// A short description ("NVIDIA H100 (sm_90)", "CPU emulator").
    fn name(&self) -> String;
}

struct EmuBuf {
    elem: Elem,
    label: String,
    /// Values held in f64: exact for f32 and u32 data (empty for a view).
    data: Vec<f64>,
    /// A view: (owner, offset, len).
    view: Option<(usize, usize, usize)>,
}

/// A CPU stand-in for a GPU: checks every call (element types, buffer sizes, argument
/// counts, that a grid covers its elements) and executes it, keeping a log.
pub struct EmuDevice {
    target: Target,
    bufs: Vec<EmuBuf>,
    modules: Vec<Module>,
    /// The parsed PTX of the propagation modules (`None` for step modules).
    texts: Vec<Option<HashMap<String, Entry>>>,
    /// Every call so far, in order (a replay is one entry).
    pub log: Vec<Call>,
    /// The calls of the capture under way.
    capturing: Option<Vec<Call>>,
    /// Refuse to end captures (as a device without graph support would): for tests.
    pub refuse_graphs: bool,
    graphs: Vec<Vec<Call>>,
}

impl EmuDevice {
    pub fn new(target: Target) -> EmuDevice {
        EmuDevice { target, bufs: Vec::new(), modules: Vec::new(), texts: Vec::new(), log: Vec::new(), capturing: None, refuse_graphs: false, graphs: Vec::new() }
    }

    /// The label a buffer was allocated with.
    pub fn label(&self, b: Buf) -> &str {
        &self.bufs[b.0].label
    }

    pub fn len(&self, b: Buf) -> usize {
        let eb = &self.bufs[b.0];
        eb.view.map_or(eb.data.len(), |(.., len)| len)
    }

    /// Where `b`'s elements live: (owning buffer, first element, length).
    fn span(&self, b: Buf) -> DResult<(usize, usize, usize)> {
        let eb = self.buf(b)?;
        Ok(eb.view.unwrap_or((b.0, 0, eb.data.len())))
    }

    pub fn elem(&self, b: Buf) -> Elem {
        self.bufs[b.0].elem
    }

    /// One call as a line (for schedules in tests and when debugging): launches with
    /// their grid, block and arguments, buffers by label and length.
    pub fn render(&self, c: &Call) -> String {
        let arg = |a: &KArg| match a {
            KArg::Buf(b) => format!("{}[{}]", self.label(*b), self.len(*b)),
            KArg::U64(v) => v.to_string(),
            KArg::F64(v) => format!("{v}"),
        };
        match c {
            Call::Launch { entry, grid, block, args, .. } => {
                format!("{entry} {}x{}x{block} ({})", grid.0, grid.1, args.iter().map(arg).collect::<Vec<_>>().join(", "))
            }
            Call::Upload { buf, .. } => format!("upload {}", self.label(*buf)),
            Call::Download { buf, .. } => format!("download {}", self.label(*buf)),
            Call::Zero { buf } => format!("zero {}", self.label(*buf)),
            Call::Gemm(g) => format!(
                "gemm m={} n={} k={} A={}{} lda={} B={}{} ldb={} C={} ldc={} alpha={} beta={}",
                g.m,
                g.n,
                g.k,
                self.label(g.a),
                if g.ta { "^T" } else { "" },
                g.lda,
                self.label(g.b),
                if g.tb { "^T" } else { "" },
                g.ldb,
                self.label(g.c),
                g.ldc,
                g.alpha,
                g.beta
            ),
            Call::Alloc { label, .. } => format!("alloc {label}"),
            Call::Capture { graph, calls } => format!("capture graph {} ({calls} calls)", graph.0),
            Call::Replay { graph } => format!("replay graph {}", graph.0),
            Call::View { buf, .. } => format!("view {}", self.label(*buf)),
            Call::Load { module } => format!("load {}", module.0),
        }
    }

    fn buf(&self, b: Buf) -> DResult<&EmuBuf> {
        self.bufs.get(b.0).ok_or_else(|| DeviceError(format!("no buffer {}", b.0)))
    }

    fn take(&mut self, a: KArg, want: Elem, min_len: usize, what: &str) -> DResult<Vec<f64>> {
        let KArg::Buf(b) = a else { return Err(DeviceError(format!("{what}: expected a buffer, got {a:?}"))) };
        let eb = self.buf(b)?;
        let len = self.len(b);
        if eb.elem != want || len < min_len {
            return Err(DeviceError(format!("{what}: buffer `{}` is {:?}[{len}], the kernel needs {want:?}[>= {min_len}]", eb.label, eb.elem)));
        }
        // A view's elements are copied out and back (`put`); a buffer's are moved.
        match eb.view {
            Some((owner, at, len)) if self.bufs[owner].data.len() >= at + len => Ok(self.bufs[owner].data[at..at + len].to_vec()),
            Some(_) => Err(DeviceError(format!("{what}: `{}` is a view of a buffer passed in the same call", eb.label))),
            None => Ok(std::mem::take(&mut self.bufs[b.0].data)),
        }
    }

    fn put(&mut self, a: KArg, data: Vec<f64>) {
        if let KArg::Buf(b) = a {
            match self.bufs[b.0].view {
                Some((owner, at, len)) => self.bufs[owner].data[at..at + len].copy_from_slice(&data),
                None => self.bufs[b.0].data = data,
            }
        }
    }

    fn run_step(&mut self, k: &PtxKernel, grid: (u32, u32), block: u32, args: &[KArg]) -> DResult<()> {
        let np = k.args.len();
        // A checked step (`compile_checked_step`) takes its flag buffer and slot, a
        // clocked one (`PtxKernel::clocked`) its clock, a listing one (`listing`) seven more.
        let (checks, clocked, lists) = (if k.checks { 2 } else { 0 }, usize::from(k.clocked), if k.lists { 7 } else { 0 });
        let at_list = np + 5 + checks + clocked;
        let records = if k.records { 3 } else { 0 };
        if args.len() != at_list + lists + records {
            return Err(DeviceError(format!("step kernel takes {} arguments, got {}", at_list + lists + records, args.len())));
        }
        let record = match args[at_list + lists..] {
            [] => None,
            [KArg::Buf(r), KArg::U64(at), KArg::U64(words)] => Some((r, at as usize, words as usize)),
            _ => return Err(DeviceError("step kernel: its record arguments must be a buffer and two integers".into())),
        };
        let list = match args[at_list..at_list + lists] {
            [] => None,
            [KArg::Buf(l), KArg::Buf(c), KArg::Buf(tot), KArg::U64(app), KArg::U64(clr), KArg::U64(tot_at), KArg::U64(pop_n)] => {
                Some((l, c, tot, app as usize, clr as usize, tot_at as usize, pop_n as usize))
            }
            _ => return Err(DeviceError("step kernel: its list arguments must be three buffers and four integers".into())),
        };
        let clock = match args[np + 5 + checks..at_list] {
            [] => None,
            [a @ KArg::Buf(_)] => {
                let c = self.take(a, Elem::F64, 1, "step kernel clock")?;
                let step = c[0];
                self.put(a, c);
                if step < 0.0 || step.fract() != 0.0 || step >= 2f64.powi(53) {
                    return Err(DeviceError(format!("step kernel: the clock holds {step}, not a step")));
                }
                Some(step as u64)
            }
            _ => return Err(DeviceError("step kernel: its clock must be a buffer".into())),
        };
        let flag = match args[np + 5..np + 5 + checks] {
            [] => None,
            [KArg::Buf(b), KArg::U64(slot)] => {
                let e = self.buf(b)?;
                if e.elem != Elem::U32 || self.len(b) <= slot as usize {
                    return Err(DeviceError(format!("step kernel: flag slot {slot} is not a u32 of `{}`", e.label)));
                }
                Some((b, slot as usize))
            }
            _ => return Err(DeviceError("step kernel: its flags must be a buffer and a slot".into())),
        };
        let scalars: Vec<u64> = args[np..np + 5]
            .iter()
            .map(|a| match a {
                KArg::U64(v) => Ok(*v),
                KArg::F64(v) => Ok(v.to_bits()),
                KArg::Buf(_) => Err(DeviceError("step kernel: a buffer where a scalar belongs".into())),
            })
            .collect::<DResult<_>>()?;
        if !matches!(args[np + 1], KArg::F64(_)) {
            return Err(DeviceError("step kernel: `t` must be an f64".into()));
        }
        let n = scalars[0] as usize;
        if grid.1 != 1 || (grid.0 as usize) * (block as usize) < n {
            return Err(DeviceError(format!("step kernel: grid {grid:?} x {block} does not cover {n} elements")));
        }
        let elem = Elem::float(k.precision);
        let mut bufs = Vec::with_capacity(np);
        let mut taken = Vec::with_capacity(np);
        for (i, a) in args[..np].iter().enumerate() {
            let full = self.take(*a, elem, n, &format!("step kernel arg `{}`", k.args[i].name))?;
            bufs.push(full[..n].to_vec());
            taken.push(full);
        }
        let t = f64::from_bits(scalars[1]);
        let step = clock.unwrap_or(scalars[3]);
        let out = k.emulate(&mut bufs, t, RandomCtx { seed: scalars[2], step, offset: scalars[4] });
        for ((a, mut full), vals) in args[..np].iter().zip(taken).zip(bufs) {
            full[..n].copy_from_slice(&vals);
            self.put(*a, full);
        }
        if let Some((l, c, tot, app, clr, tot_at, pop_n)) = list {
            self.list_spikes(&out.listed, n, (l, c, tot), (app, clr, tot_at), pop_n)?;
            if let Some((r, at, words)) = record {
                self.record_spikes(&out.listed, pop_n, r, at, words)?;
            }
        }
        let word = out.flag;
        if let Some((b, slot)) = flag.filter(|_| word != 0) {
            // `red.global.max.u32`: the flag keeps the larger word.
            let mut data = self.take(KArg::Buf(b), Elem::U32, slot + 1, "step kernel flags")?;
            data[slot] = data[slot].max(f64::from(word));
            self.put(KArg::Buf(b), data);
        }
        Ok(())
    }

    /// What a listing step's threads do with their spikes (`PtxKernel::listing`), in
    /// element order: rows b = e / pop_n append j = e % pop_n to `list` (at the count
    /// `counts[app + b]`, incremented) and count it in `totals[tot_at + b]`; every row
    /// clears `counts[clr + b]`.
    fn list_spikes(&mut self, listed: &[u64], n: usize, (l, c, tot): (Buf, Buf, Buf), (app, clr, tot_at): (usize, usize, usize), pop_n: usize) -> DResult<()> {
        if pop_n == 0 || n % pop_n != 0 {
            return Err(DeviceError(format!("step kernel: {n} elements are not rows of pop_n = {pop_n}")));
        }
        let rows = n / pop_n;
        for (b, len, what) in [(l, n, "list"), (c, app.max(clr) + rows, "counts"), (tot, tot_at + rows, "totals")] {
            let e = self.buf(b)?;
            if e.elem != Elem::U32 || self.len(b) < len {
                return Err(DeviceError(format!("step kernel: its {what} `{}` is not u32[>= {len}]", e.label)));
            }
        }
        let mut list = self.take(KArg::Buf(l), Elem::U32, n, "step kernel list")?;
        let mut counts = self.take(KArg::Buf(c), Elem::U32, 0, "step kernel counts")?;
        for b in 0..rows {
            counts[clr + b] = 0.0;
        }
        let mut adds = vec![0.0; rows];
        for &e in listed {
            let (b, j) = (e as usize / pop_n, e as usize % pop_n);
            list[b * pop_n + counts[app + b] as usize] = j as f64;
            counts[app + b] += 1.0;
            adds[b] += 1.0;
        }
        self.put(KArg::Buf(c), counts);
        self.put(KArg::Buf(l), list);
        let mut totals = self.take(KArg::Buf(tot), Elem::U32, 0, "step kernel totals")?;
        for (b, a) in adds.into_iter().enumerate() {
            totals[tot_at + b] += a;
        }
        self.put(KArg::Buf(tot), totals);
        Ok(())
    }

    /// What a recording step's spiking threads do (`PtxKernel::recording`): element
    /// e = b * pop_n + j sets bit j % 32 of word `at + b * words + j / 32` of `r`.
    fn record_spikes(&mut self, listed: &[u64], pop_n: usize, r: Buf, at: usize, words: usize) -> DResult<()> {
        let need = listed.iter().map(|&e| at + (e as usize / pop_n) * words + (e as usize % pop_n) / 32 + 1).max().unwrap_or(0);
        if words * 32 < pop_n {
            return Err(DeviceError(format!("step kernel: {words} record words per row hold fewer than {pop_n} bits")));
        }
        let mut rec = self.take(KArg::Buf(r), Elem::U32, need, "step kernel record")?;
        for &e in listed {
            let (b, j) = (e as usize / pop_n, e as usize % pop_n);
            let w = &mut rec[at + b * words + j / 32];
            *w = f64::from(*w as u32 | (1u32 << (j % 32)));
        }
        self.put(KArg::Buf(r), rec);
        Ok(())
    }

    fn run_propagate(&mut self, module: ModId, entry: &str, grid: (u32, u32), block: u32, args: &[KArg]) -> DResult<()> {
        if (entry == propagate::SPARSE_EVENTS || entry == propagate::SPARSE_EVENTS2) && block % 32 != 0 {
            return Err(DeviceError(format!("{entry}: block {block} is not a whole number of warps")));
        }
        let params: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                KArg::Buf(b) => self.buf(b).map(|_| (b.0 as u64 + 1) << ADDR_BITS),
                KArg::U64(v) => Ok(v),
                KArg::F64(_) => Err(DeviceError(format!("{entry}: takes no f64 arguments"))),
            })
            .collect::<DResult<_>>()?;
        let code = self.texts[module.0].as_ref().and_then(|m| m.get(entry)).ok_or_else(|| DeviceError(format!("no kernel `{entry}`")))?;
        let mut mem = EmuMemory { bufs: &mut self.bufs };
        code.run(text_emu::Grid { grid, block }, &params, &mut mem).map_err(|e| DeviceError(format!("{entry}: {e}")))
    }
}

/// Addresses the PTX interpreter sees: buffer k at `(k + 1) << ADDR_BITS` (so 0 is no
/// buffer), the byte offset below.
const ADDR_BITS: u32 = 40;

struct EmuMemory<'a> {
    bufs: &'a mut Vec<EmuBuf>,
}

impl EmuMemory<'_> {
    fn locate(&self, addr: u64, bytes: u32) -> Result<(usize, usize), String> {
        let (k, off) = ((addr >> ADDR_BITS) as usize, addr & ((1u64 << ADDR_BITS) - 1));
        let b = k.checked_sub(1).and_then(|k| self.bufs.get(k)).ok_or_else(|| format!("address {addr:#x} is in no buffer"))?;
        let size = b.elem.size() as u64;
        if u64::from(bytes) != size || off % size != 0 {
            return Err(format!("{bytes}-byte access at offset {off} of `{}` ({:?})", b.label, b.elem));
        }
        let i = (off / size) as usize;
        let (owner, at, len) = b.view.unwrap_or((k - 1, 0, b.data.len()));
        if i >= len {
            return Err(format!("access to element {i} of `{}`, which has {len}", b.label));
        }
        Ok((owner, at + i))
    }
}

impl text_emu::Memory for EmuMemory<'_> {
    fn load(&mut self, addr: u64, bytes: u32) -> Result<u64, String> {
        let (k, i) = self.locate(addr, bytes)?;
        let v = self.bufs[k].data[i];
        Ok(match self.bufs[k].elem {
            Elem::F32 => u64::from((v as f32).to_bits()),
            Elem::F64 => v.to_bits(),
            Elem::U32 => v as u64,
        })
    }

    fn store(&mut self, addr: u64, bytes: u32, bits: u64) -> Result<(), String> {
        let (k, i) = self.locate(addr, bytes)?;
        let b = &mut self.bufs[k];
        b.data[i] = match b.elem {
            Elem::F32 => f64::from(f32::from_bits(bits as u32)),
            Elem::F64 => f64::from_bits(bits),
            Elem::U32 => (bits & 0xFFFF_FFFF) as f64,
        };
        Ok(())
    }
}

fn round(elem: Elem, v: f64) -> f64 {
    match elem {
        Elem::F32 => f64::from(v as f32),
        _ => v,
    }
}

impl Device for EmuDevice {
    fn target(&self) -> Target {
        self.target
    }

    fn alloc(&mut self, elem: Elem, len: usize, label: &str) -> DResult<Buf> {
        let buf = Buf(self.bufs.len());
        self.bufs.push(EmuBuf { elem, label: label.to_string(), data: vec![0.0; len], view: None });
        self.log.push(Call::Alloc { buf, elem, len, label: label.to_string() });
        Ok(buf)
    }

    fn view(&mut self, base: Buf, offset: usize, len: usize, label: &str) -> DResult<Buf> {
        let b = self.buf(base)?;
        if b.view.is_some() || offset.checked_add(len).is_none_or(|end| end > b.data.len()) {
            return Err(DeviceError(format!("a view of {len} elements at {offset} of `{}` ({})", b.label, self.len(base))));
        }
        let buf = Buf(self.bufs.len());
        let eb = EmuBuf { elem: b.elem, label: label.to_string(), data: Vec::new(), view: Some((base.0, offset, len)) };
        self.bufs.push(eb);
        self.log.push(Call::View { buf, base, offset, len });
        Ok(buf)
    }

    fn upload(&mut self, buf: Buf, src: Host<'_>) -> DResult<()> {
        if self.capturing.is_some() {
            return Err(DeviceError("an upload during a capture".into()));
        }
        let b = self.buf(buf)?;
        let (owner, at, len) = self.span(buf)?;
        if b.elem != src.elem() || len != src.len() {
            return Err(DeviceError(format!("upload of {:?}[{}] into `{}` ({:?}[{len}])", src.elem(), src.len(), b.label, b.elem)));
        }
        let dst = &mut self.bufs[owner].data[at..at + len];
        match src {
            Host::F32(s) => dst.iter_mut().zip(s).for_each(|(d, v)| *d = f64::from(*v)),
            Host::F64(s) => dst.copy_from_slice(s),
            Host::U32(s) => dst.iter_mut().zip(s).for_each(|(d, v)| *d = f64::from(*v)),
        }
        self.log.push(Call::Upload { buf, len: src.len() });
        Ok(())
    }

    fn download(&mut self, buf: Buf, dst: HostMut<'_>) -> DResult<()> {
        if self.capturing.is_some() {
            return Err(DeviceError("a download during a capture".into()));
        }
        let b = self.buf(buf)?;
        let (owner, at, have) = self.span(buf)?;
        let (elem, len) = (dst.elem(), match &dst {
            HostMut::F32(s) => s.len(),
            HostMut::F64(s) => s.len(),
            HostMut::U32(s) => s.len(),
        });
        if b.elem != elem || have != len {
            return Err(DeviceError(format!("download of `{}` ({:?}[{have}]) into {elem:?}[{len}]", b.label, b.elem)));
        }
        let data = &self.bufs[owner].data[at..at + len];
        match dst {
            HostMut::F32(s) => s.iter_mut().zip(data).for_each(|(d, v)| *d = *v as f32),
            HostMut::F64(s) => s.copy_from_slice(data),
            HostMut::U32(s) => s.iter_mut().zip(data).for_each(|(d, v)| *d = *v as u32),
        }
        self.log.push(Call::Download { buf, len });
        Ok(())
    }

    fn zero(&mut self, buf: Buf) -> DResult<()> {
        if let Some(c) = &mut self.capturing {
            c.push(Call::Zero { buf });
            return Ok(());
        }
        let (owner, at, len) = self.span(buf)?;
        self.bufs[owner].data[at..at + len].fill(0.0);
        self.log.push(Call::Zero { buf });
        Ok(())
    }

    fn load(&mut self, module: &Module) -> DResult<ModId> {
        if let Module::Step(k) = module
            && k.target != self.target
        {
            return Err(DeviceError(format!("module for {} on a {} device", k.target.name(), self.target.name())));
        }
        let id = ModId(self.modules.len());
        self.texts.push(match module {
            Module::Propagate(..) => Some(text_emu::parse(&module.ptx()).map_err(|e| DeviceError(format!("propagation module: {e}")))?),
            Module::Step(_) => None,
        });
        self.modules.push(module.clone());
        self.log.push(Call::Load { module: id });
        Ok(id)
    }

    fn launch(&mut self, module: ModId, entry: &'static str, grid: (u32, u32), block: u32, args: &[KArg]) -> DResult<()> {
        let call = Call::Launch { module, entry, grid, block, args: args.to_vec() };
        if let Some(c) = &mut self.capturing {
            c.push(call);
            return Ok(());
        }
        self.log.push(call);
        if !(1..=1024).contains(&block) || grid.0 == 0 || grid.1 == 0 || grid.1 > 65535 {
            return Err(DeviceError(format!("{entry}: invalid launch grid {grid:?} x {block}")));
        }
        let m = self.modules.get(module.0).cloned().ok_or_else(|| DeviceError(format!("no module {}", module.0)))?;
        if !m.entries().contains(&entry) {
            return Err(DeviceError(format!("module {} has no entry `{entry}`", module.0)));
        }
        match m {
            Module::Step(k) => self.run_step(&k, grid, block, args),
            Module::Propagate(..) => self.run_propagate(module, entry, grid, block, args),
        }
    }

    fn gemm(&mut self, g: &Gemm) -> DResult<()> {
        if let Some(c) = &mut self.capturing {
            c.push(Call::Gemm(*g));
            return Ok(());
        }
        self.log.push(Call::Gemm(*g));
        let elem = self.buf(g.c)?.elem;
        let [na, nb, nc] = g.required_lengths()?;
        let a = self.take(KArg::Buf(g.a), elem, na, "gemm A")?;
        let b = self.take(KArg::Buf(g.b), elem, nb, "gemm B");
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                self.put(KArg::Buf(g.a), a);
                return Err(e);
            }
        };
        let c = self.take(KArg::Buf(g.c), elem, nc, "gemm C");
        let mut c = match c {
            Ok(c) => c,
            Err(e) => {
                self.put(KArg::Buf(g.a), a);
                self.put(KArg::Buf(g.b), b);
                return Err(e);
            }
        };
        let at = |i: usize, l: usize| if g.ta { a[l + i * g.lda] } else { a[i + l * g.lda] };
        let bt = |l: usize, j: usize| if g.tb { b[j + l * g.ldb] } else { b[l + j * g.ldb] };
        // Accumulated in the buffer precision, in k order (cuBLAS's order is its own).
        for j in 0..g.n {
            for i in 0..g.m {
                let mut s = 0.0;
                for l in 0..g.k {
                    s = round(elem, s + round(elem, at(i, l) * bt(l, j)));
                }
                let e = i + j * g.ldc;
                // alpha and beta in the buffer precision, as cuBLAS takes them.
                let (alpha, beta) = (round(elem, g.alpha), round(elem, g.beta));
                // BLAS: with beta = 0, C is not read (whatever it holds, NaN included).
                c[e] = if g.beta == 0.0 { round(elem, alpha * s) } else { round(elem, round(elem, alpha * s) + round(elem, beta * c[e])) };
            }
        }
        self.put(KArg::Buf(g.a), a);
        self.put(KArg::Buf(g.b), b);
        self.put(KArg::Buf(g.c), c);
        Ok(())
    }

    fn begin_capture(&mut self) -> DResult<()> {
        if self.capturing.is_some() {
            return Err(DeviceError("a capture is already under way".into()));
        }
        self.capturing = Some(Vec::new());
        Ok(())
    }

    fn end_capture(&mut self) -> DResult<GraphId> {
        let calls = self.capturing.take().ok_or_else(|| DeviceError("no capture under way".into()))?;
        if self.refuse_graphs {
            return Err(DeviceError("this device records no graphs (EmuDevice::refuse_graphs)".into()));
        }
        let graph = GraphId(self.graphs.len());
        self.log.push(Call::Capture { graph, calls: calls.len() });
        self.graphs.push(calls);
        Ok(graph)
    }

    /// Runs the recorded calls one by one (checked as when they are made directly); the
    /// log shows the replay, not its calls.
    fn replay(&mut self, graph: GraphId) -> DResult<()> {
        if self.capturing.is_some() {
            return Err(DeviceError("a graph replayed during a capture".into()));
        }
        let calls = self.graphs.get(graph.0).cloned().ok_or_else(|| DeviceError(format!("no graph {}", graph.0)))?;
        let at = self.log.len();
        for c in calls {
            match c {
                Call::Zero { buf } => self.zero(buf)?,
                Call::Launch { module, entry, grid, block, args } => self.launch(module, entry, grid, block, &args)?,
                Call::Gemm(g) => self.gemm(&g)?,
                other => return Err(DeviceError(format!("a graph holds {other:?}"))),
            }
        }
        self.log.truncate(at);
        self.log.push(Call::Replay { graph });
        Ok(())
    }

    fn synchronize(&mut self) -> DResult<()> {
        if self.capturing.is_some() {
            return Err(DeviceError("synchronize during a capture".into()));
        }
        Ok(())
    }

    fn name(&self) -> String {
        format!("CPU emulator ({})", self.target.name())
    }
}
