//! [`Device`] on an NVIDIA GPU through cudarc: the driver API (loaded at run time, so a
//! machine without CUDA gets an error, not a link failure), PTX modules from the
//! compiler's emitters (JIT-compiled by the driver; no NVRTC), cuBLAS for GEMM. One
//! stream: calls run in the order made, which is the order the engine relies on.

use super::cublas::Blas;
use super::device::{Buf, DResult, Device, DeviceError, Elem, Gemm, GraphId, Host, HostMut, KArg, ModId, Module};
use cudarc::driver::{CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg, sys};
use cudarc::nvrtc::Ptx;
use snnc_compiler::backend::ptx::Target;
use std::collections::HashMap;
use std::sync::Arc;

enum DBuf {
    F32(CudaSlice<f32>),
    F64(CudaSlice<f64>),
    U32(CudaSlice<u32>),
    /// Elements `offset..offset + len` of buffer `base` (see [`Device::view`]).
    View { base: usize, offset: usize },
}

struct Slot {
    buf: DBuf,
    elem: Elem,
    /// The logical length (the allocation has at least one element: CUDA refuses 0).
    len: usize,
    /// The device address of element 0 (kernels and cuBLAS take addresses).
    ptr: u64,
    label: String,
}

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: Option<Blas>,
    bufs: Vec<Slot>,
    funcs: Vec<HashMap<&'static str, CudaFunction>>,
    graphs: Vec<CudaGraph>,
    capturing: bool,
    /// cuBLAS's workspace, set by the engine so that a GEMM in a graph capture does not
    /// allocate.
    blas_workspace: Option<CudaSlice<u8>>,
    target: Target,
    name: String,
}

/// cuBLAS's workspace: NVIDIA's recommendation for Hopper (32 MiB) covers older GPUs too.
const BLAS_WORKSPACE: usize = 32 << 20;

fn err(what: &str, e: impl std::fmt::Debug) -> DeviceError {
    DeviceError(format!("{what}: {e:?}"))
}

impl CudaDevice {
    /// How many GPUs this process sees: the driver's count, which `CUDA_VISIBLE_DEVICES`
    /// limits (and renumbers from 0), or why there are none to count (no driver).
    pub fn count() -> DResult<usize> {
        // cudarc panics if it cannot load libcuda; check first.
        // SAFETY: only tries to dlopen the driver library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(DeviceError("no CUDA driver found (libcuda could not be loaded); `--backend cuda` needs an NVIDIA GPU and its driver".into()));
        }
        let count = CudaContext::device_count().map_err(|e| err("CUDA driver: cannot count devices", e))?;
        Ok(count.max(0) as usize)
    }

    /// Opens GPU `ordinal` (of those [`CudaDevice::count`] counts), or says why it cannot
    /// (no driver, no device, too old).
    pub fn open(ordinal: usize) -> DResult<CudaDevice> {
        let count = Self::count()?;
        if count <= ordinal {
            return Err(DeviceError(format!("no CUDA device {ordinal} (the driver reports {count})")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| err("cannot create a CUDA context", e))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| err("compute capability", e))?;
        if major < 8 {
            return Err(DeviceError(format!("the GPU has compute capability {major}.{minor}; the PTX backend needs 8.0 (A100) or later")));
        }
        let target = if major >= 9 { Target::Sm90 } else { Target::Sm80 };
        let name = format!("{} (sm_{major}{minor}, PTX for {})", ctx.name().unwrap_or_else(|_| "CUDA device".into()), target.name());
        // SAFETY: every buffer is used on this one stream only, so cudarc's per-buffer
        // events (an extra record/wait per kernel argument) are not needed.
        unsafe { ctx.disable_event_tracking() };
        // A stream of its own: the legacy default stream cannot be captured into a graph.
        let stream = ctx.new_stream().map_err(|e| err("cannot create a CUDA stream", e))?;
        Ok(CudaDevice { ctx, stream, blas: None, bufs: Vec::new(), funcs: Vec::new(), graphs: Vec::new(), capturing: false, blas_workspace: None, target, name })
    }

    /// Loads cuBLAS with its workspace, bound to the stream.
    fn load_blas(&mut self) -> DResult<()> {
        let ws = self.stream.alloc_zeros::<u8>(BLAS_WORKSPACE).map_err(|e| err("cuBLAS workspace", e))?;
        let ws_ptr = ws.device_ptr(&self.stream).0;
        self.blas = Some(Blas::new(self.stream.cu_stream() as *mut std::ffi::c_void, ws_ptr, BLAS_WORKSPACE)?);
        self.blas_workspace = Some(ws);
        Ok(())
    }

    fn slot(&self, b: Buf) -> DResult<&Slot> {
        self.bufs.get(b.0).ok_or_else(|| DeviceError(format!("no buffer {}", b.0)))
    }

    /// The owning buffer of `b` and where `b` starts in it.
    fn owner(&self, b: Buf) -> DResult<(usize, usize)> {
        match self.slot(b)?.buf {
            DBuf::View { base, offset } => Ok((base, offset)),
            _ => Ok((b.0, 0)),
        }
    }
}

impl Device for CudaDevice {
    fn target(&self) -> Target {
        self.target
    }

    fn alloc(&mut self, elem: Elem, len: usize, label: &str) -> DResult<Buf> {
        let n = len.max(1);
        let what = || format!("allocating `{label}` ({len} x {elem:?})");
        let stream = &self.stream;
        let (buf, ptr) = match elem {
            Elem::F32 => {
                let d = stream.alloc_zeros::<f32>(n).map_err(|e| err(&what(), e))?;
                let p = d.device_ptr(stream).0;
                (DBuf::F32(d), p)
            }
            Elem::F64 => {
                let d = stream.alloc_zeros::<f64>(n).map_err(|e| err(&what(), e))?;
                let p = d.device_ptr(stream).0;
                (DBuf::F64(d), p)
            }
            Elem::U32 => {
                let d = stream.alloc_zeros::<u32>(n).map_err(|e| err(&what(), e))?;
                let p = d.device_ptr(stream).0;
                (DBuf::U32(d), p)
            }
        };
        self.bufs.push(Slot { buf, elem, len, ptr, label: label.to_string() });
        Ok(Buf(self.bufs.len() - 1))
    }

    fn view(&mut self, base: Buf, offset: usize, len: usize, label: &str) -> DResult<Buf> {
        let s = self.slot(base)?;
        if matches!(s.buf, DBuf::View { .. }) || offset.checked_add(len).is_none_or(|end| end > s.len) {
            return Err(DeviceError(format!("a view of {len} elements at {offset} of `{}` ({})", s.label, s.len)));
        }
        let slot = Slot { buf: DBuf::View { base: base.0, offset }, elem: s.elem, len, ptr: s.ptr + (offset * s.elem.size()) as u64, label: label.to_string() };
        self.bufs.push(slot);
        Ok(Buf(self.bufs.len() - 1))
    }

    fn upload(&mut self, b: Buf, src: Host<'_>) -> DResult<()> {
        if self.capturing {
            return Err(DeviceError("an upload during a graph capture".into()));
        }
        let (len, label) = (self.slot(b)?.len, self.slot(b)?.label.clone());
        if len != src.len() {
            return Err(DeviceError(format!("upload of {} values into `{label}` ({len})", src.len())));
        }
        if src.is_empty() {
            return Ok(());
        }
        let (owner, at) = self.owner(b)?;
        let range = at..at + len;
        let r = match (&mut self.bufs[owner].buf, src) {
            (DBuf::F32(d), Host::F32(h)) => self.stream.memcpy_htod(h, &mut d.slice_mut(range)),
            (DBuf::F64(d), Host::F64(h)) => self.stream.memcpy_htod(h, &mut d.slice_mut(range)),
            (DBuf::U32(d), Host::U32(h)) => self.stream.memcpy_htod(h, &mut d.slice_mut(range)),
            _ => return Err(DeviceError(format!("upload of {:?} data into `{label}`", src.elem()))),
        };
        r.map_err(|e| err(&format!("upload into `{label}`"), e))
    }

    fn download(&mut self, b: Buf, dst: HostMut<'_>) -> DResult<()> {
        if self.capturing {
            return Err(DeviceError("a download during a graph capture".into()));
        }
        let (len, label) = (self.slot(b)?.len, self.slot(b)?.label.clone());
        let want = match &dst {
            HostMut::F32(h) => h.len(),
            HostMut::F64(h) => h.len(),
            HostMut::U32(h) => h.len(),
        };
        if want != len {
            return Err(DeviceError(format!("download of `{label}` ({len}) into {want} values")));
        }
        if len == 0 {
            return Ok(());
        }
        let (owner, at) = self.owner(b)?;
        let range = at..at + len;
        let r = match (&self.bufs[owner].buf, dst) {
            (DBuf::F32(d), HostMut::F32(h)) => self.stream.memcpy_dtoh(&d.slice(range), h),
            (DBuf::F64(d), HostMut::F64(h)) => self.stream.memcpy_dtoh(&d.slice(range), h),
            (DBuf::U32(d), HostMut::U32(h)) => self.stream.memcpy_dtoh(&d.slice(range), h),
            _ => return Err(DeviceError(format!("download of `{label}` into the wrong element type"))),
        };
        r.map_err(|e| err(&format!("download of `{label}`"), e))?;
        // The copy is queued on the stream; the host reads the data next.
        self.stream.synchronize().map_err(|e| err("synchronize", e))
    }

    fn zero(&mut self, b: Buf) -> DResult<()> {
        let (len, label) = (self.slot(b)?.len, self.slot(b)?.label.clone());
        if len == 0 {
            return Ok(());
        }
        let (owner, at) = self.owner(b)?;
        let range = at..at + len;
        let r = match &mut self.bufs[owner].buf {
            DBuf::F32(d) => self.stream.memset_zeros(&mut d.slice_mut(range)),
            DBuf::F64(d) => self.stream.memset_zeros(&mut d.slice_mut(range)),
            DBuf::U32(d) => self.stream.memset_zeros(&mut d.slice_mut(range)),
            DBuf::View { .. } => unreachable!("a view's owner is a buffer"),
        };
        r.map_err(|e| err(&format!("zeroing `{label}`"), e))
    }

    fn load(&mut self, module: &Module) -> DResult<ModId> {
        let m = self.ctx.load_module(Ptx::from_src(module.ptx())).map_err(|e| err("the driver rejected a PTX module", e))?;
        let mut funcs = HashMap::new();
        for e in module.entries() {
            funcs.insert(e, m.load_function(e).map_err(|x| err(&format!("no entry `{e}` in the module"), x))?);
        }
        self.funcs.push(funcs);
        Ok(ModId(self.funcs.len() - 1))
    }

    fn launch(&mut self, module: ModId, entry: &'static str, grid: (u32, u32), block: u32, args: &[KArg]) -> DResult<()> {
        let f = self.funcs.get(module.0).and_then(|m| m.get(entry)).ok_or_else(|| DeviceError(format!("no kernel `{entry}` in module {}", module.0)))?;
        // Pointer parameters are `.u64` addresses: pass each buffer's address.
        let mut words: Vec<u64> = Vec::with_capacity(args.len());
        let mut floats: Vec<f64> = Vec::new();
        for a in args {
            match a {
                KArg::Buf(id) => words.push(self.slot(*id)?.ptr),
                KArg::U64(v) => words.push(*v),
                KArg::F64(v) => floats.push(*v),
            }
        }
        let mut b = self.stream.launch_builder(f);
        let (mut w, mut x) = (words.iter(), floats.iter());
        for a in args {
            match a {
                KArg::Buf(_) | KArg::U64(_) => b.arg(w.next().expect("one word per argument")),
                KArg::F64(_) => b.arg(x.next().expect("one float per argument")),
            };
        }
        let cfg = LaunchConfig { grid_dim: (grid.0, grid.1, 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the arguments follow the kernel's `.param` list (the engine builds them
        // from the emitter's argument table; the emulated device checks the same calls),
        // and every buffer holds the elements the kernel indexes.
        unsafe { b.launch(cfg) }.map_err(|e| err(&format!("launching {entry}"), e))?;
        Ok(())
    }

    fn gemm(&mut self, g: &Gemm) -> DResult<()> {
        if self.blas.is_none() {
            if self.capturing {
                // begin_capture loads cuBLAS first; it failed there.
                return Err(self.load_blas().err().unwrap_or_else(|| DeviceError("cuBLAS is first used inside a graph capture".into())));
            }
            self.load_blas()?;
        }
        let dim = |v: usize| i32::try_from(v).map_err(|_| DeviceError(format!("GEMM dimension {v} exceeds cuBLAS's 32-bit sizes")));
        let dims = [dim(g.m)?, dim(g.n)?, dim(g.k)?, dim(g.lda)?, dim(g.ldb)?, dim(g.ldc)?];
        let need = g.required_lengths()?;
        let mut elem = None;
        for (b, n, what) in [(g.a, need[0], "A"), (g.b, need[1], "B"), (g.c, need[2], "C")] {
            let s = self.slot(b)?;
            if s.len < n {
                return Err(DeviceError(format!("GEMM {what}: `{}` has {} elements, the product needs {n}", s.label, s.len)));
            }
            if s.elem == Elem::U32 || elem.is_some_and(|e| e != s.elem) {
                return Err(DeviceError("GEMM operands of different or non-float types".into()));
            }
            elem = Some(s.elem);
        }
        if [g.a, g.b].contains(&g.c) {
            return Err(DeviceError("GEMM output aliases an input".into()));
        }
        let (a, b, c) = (self.slot(g.a)?.ptr, self.slot(g.b)?.ptr, self.slot(g.c)?.ptr);
        let blas = self.blas.as_ref().expect("loaded above");
        // SAFETY: A, B and C hold the elements these dimensions reach, of one float type
        // (checked above).
        unsafe { blas.gemm(elem == Some(Elem::F64), g.ta, g.tb, dims, g.alpha, a, b, g.beta, c) }
    }

    fn begin_capture(&mut self) -> DResult<()> {
        if self.capturing {
            return Err(DeviceError("a capture is already under way".into()));
        }
        // cuBLAS allocates when it starts, which a capture does not allow: start it now.
        // Without cuBLAS a graph without GEMMs still records; one with them says why.
        if self.blas.is_none() {
            let _ = self.load_blas();
        }
        // Thread-local: another thread's unsafe calls do not break this capture.
        self.stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(|e| err("begin graph capture", e))?;
        self.capturing = true;
        Ok(())
    }

    fn end_capture(&mut self) -> DResult<GraphId> {
        if !self.capturing {
            return Err(DeviceError("no capture under way".into()));
        }
        self.capturing = false;
        let g = self.stream.end_capture(sys::CUgraphInstantiate_flags(0)).map_err(|e| err("end graph capture", e))?;
        let g = g.ok_or_else(|| DeviceError("the graph capture recorded nothing".into()))?;
        g.upload().map_err(|e| err("graph upload", e))?;
        self.graphs.push(g);
        Ok(GraphId(self.graphs.len() - 1))
    }

    fn replay(&mut self, graph: GraphId) -> DResult<()> {
        let g = self.graphs.get(graph.0).ok_or_else(|| DeviceError(format!("no graph {}", graph.0)))?;
        g.launch().map_err(|e| err("graph launch", e))
    }

    fn synchronize(&mut self) -> DResult<()> {
        if self.capturing {
            return Err(DeviceError("synchronize during a graph capture".into()));
        }
        self.stream.synchronize().map_err(|e| err("synchronize", e))
    }

    fn name(&self) -> String {
        match &self.blas {
            Some(b) => format!("{}, cuBLAS {}", self.name, b.path),
            None => self.name.clone(),
        }
    }
}
