//! [`Device`] on an NVIDIA GPU through cudarc: the driver API (loaded at run time, so a
//! machine without CUDA gets an error, not a link failure), PTX modules from the
//! compiler's emitters (JIT-compiled by the driver; no NVRTC), cuBLAS for GEMM. One
//! stream: calls run in the order made, which is the order the engine relies on.

use super::device::{Buf, DResult, Device, DeviceError, Elem, Gemm, Host, HostMut, KArg, ModId, Module};
use cudarc::cublas::{CudaBlas, Gemm as _, GemmConfig, sys::cublasOperation_t};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use snnc_compiler::backend::ptx::Target;
use std::collections::HashMap;
use std::sync::Arc;

enum DBuf {
    F32(CudaSlice<f32>),
    F64(CudaSlice<f64>),
    U32(CudaSlice<u32>),
    /// Moved out for the duration of a GEMM (its output is borrowed mutably).
    Taken,
}

struct Slot {
    buf: DBuf,
    /// The logical length (the allocation has at least one element: CUDA refuses 0).
    len: usize,
    label: String,
}

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: Option<CudaBlas>,
    bufs: Vec<Slot>,
    funcs: Vec<HashMap<&'static str, CudaFunction>>,
    target: Target,
    name: String,
}

fn err(what: &str, e: impl std::fmt::Debug) -> DeviceError {
    DeviceError(format!("{what}: {e:?}"))
}

impl CudaDevice {
    /// Opens GPU `ordinal`, or says why it cannot (no driver, no device, too old).
    pub fn open(ordinal: usize) -> DResult<CudaDevice> {
        // cudarc panics if it cannot load libcuda; check first.
        // SAFETY: only tries to dlopen the driver library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(DeviceError("no CUDA driver found (libcuda could not be loaded); `--backend cuda` needs an NVIDIA GPU and its driver".into()));
        }
        let count = CudaContext::device_count().map_err(|e| err("CUDA driver: cannot count devices", e))?;
        if count <= ordinal as i32 {
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
        let stream = ctx.default_stream();
        Ok(CudaDevice { ctx, stream, blas: None, bufs: Vec::new(), funcs: Vec::new(), target, name })
    }

    fn slot(&self, b: Buf) -> DResult<&Slot> {
        self.bufs.get(b.0).ok_or_else(|| DeviceError(format!("no buffer {}", b.0)))
    }
}

impl Device for CudaDevice {
    fn target(&self) -> Target {
        self.target
    }

    fn alloc(&mut self, elem: Elem, len: usize, label: &str) -> DResult<Buf> {
        let n = len.max(1);
        let what = || format!("allocating `{label}` ({len} x {elem:?})");
        let buf = match elem {
            Elem::F32 => DBuf::F32(self.stream.alloc_zeros::<f32>(n).map_err(|e| err(&what(), e))?),
            Elem::F64 => DBuf::F64(self.stream.alloc_zeros::<f64>(n).map_err(|e| err(&what(), e))?),
            Elem::U32 => DBuf::U32(self.stream.alloc_zeros::<u32>(n).map_err(|e| err(&what(), e))?),
        };
        self.bufs.push(Slot { buf, len, label: label.to_string() });
        Ok(Buf(self.bufs.len() - 1))
    }

    fn upload(&mut self, b: Buf, src: Host<'_>) -> DResult<()> {
        let s = self.bufs.get_mut(b.0).ok_or_else(|| DeviceError(format!("no buffer {}", b.0)))?;
        if s.len != src.len() {
            return Err(DeviceError(format!("upload of {} values into `{}` ({})", src.len(), s.label, s.len)));
        }
        if src.is_empty() {
            return Ok(());
        }
        let r = match (&mut s.buf, src) {
            (DBuf::F32(d), Host::F32(h)) => self.stream.memcpy_htod(h, d),
            (DBuf::F64(d), Host::F64(h)) => self.stream.memcpy_htod(h, d),
            (DBuf::U32(d), Host::U32(h)) => self.stream.memcpy_htod(h, d),
            _ => return Err(DeviceError(format!("upload of {:?} data into `{}`", src.elem(), s.label))),
        };
        r.map_err(|e| err(&format!("upload into `{}`", s.label), e))
    }

    fn download(&mut self, b: Buf, dst: HostMut<'_>) -> DResult<()> {
        let s = self.slot(b)?;
        let len = match &dst {
            HostMut::F32(h) => h.len(),
            HostMut::F64(h) => h.len(),
            HostMut::U32(h) => h.len(),
        };
        if s.len != len {
            return Err(DeviceError(format!("download of `{}` ({}) into {len} values", s.label, s.len)));
        }
        if len == 0 {
            return Ok(());
        }
        let r = match (&s.buf, dst) {
            (DBuf::F32(d), HostMut::F32(h)) => self.stream.memcpy_dtoh(d, h),
            (DBuf::F64(d), HostMut::F64(h)) => self.stream.memcpy_dtoh(d, h),
            (DBuf::U32(d), HostMut::U32(h)) => self.stream.memcpy_dtoh(d, h),
            _ => return Err(DeviceError(format!("download of `{}` into the wrong element type", s.label))),
        };
        r.map_err(|e| err(&format!("download of `{}`", s.label), e))?;
        // The copy is queued on the stream; the host reads the data next.
        self.stream.synchronize().map_err(|e| err("synchronize", e))
    }

    fn zero(&mut self, b: Buf) -> DResult<()> {
        let s = self.bufs.get_mut(b.0).ok_or_else(|| DeviceError(format!("no buffer {}", b.0)))?;
        let r = match &mut s.buf {
            DBuf::F32(d) => self.stream.memset_zeros(d),
            DBuf::F64(d) => self.stream.memset_zeros(d),
            DBuf::U32(d) => self.stream.memset_zeros(d),
            DBuf::Taken => return Err(DeviceError(format!("`{}` is in use", s.label))),
        };
        r.map_err(|e| err(&format!("zeroing `{}`", s.label), e))
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
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                KArg::Buf(id) => match &self.bufs.get(id.0).ok_or_else(|| DeviceError(format!("no buffer {}", id.0)))?.buf {
                    DBuf::F32(s) => b.arg(s),
                    DBuf::F64(s) => b.arg(s),
                    DBuf::U32(s) => b.arg(s),
                    DBuf::Taken => return Err(DeviceError("a buffer in use was passed to a kernel".into())),
                },
                KArg::U64(v) => b.arg(v),
                KArg::F64(v) => b.arg(v),
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
            // SAFETY: only tries to dlopen cuBLAS.
            if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                return Err(DeviceError("dense projections need cuBLAS, and libcublas could not be loaded".into()));
            }
            self.blas = Some(CudaBlas::new(self.stream.clone()).map_err(|e| err("cuBLAS", e))?);
        }
        let blas = self.blas.as_ref().expect("created above");
        let dim = |v: usize| i32::try_from(v).map_err(|_| DeviceError(format!("GEMM dimension {v} exceeds cuBLAS's 32-bit sizes")));
        let (m, n, k, lda, ldb, ldc) = (dim(g.m)?, dim(g.n)?, dim(g.k)?, dim(g.lda)?, dim(g.ldb)?, dim(g.ldc)?);
        let need = g.required_lengths()?;
        for (b, n, what) in [(g.a, need[0], "A"), (g.b, need[1], "B"), (g.c, need[2], "C")] {
            let s = self.slot(b)?;
            if s.len < n {
                return Err(DeviceError(format!("GEMM {what}: `{}` has {} elements, the product needs {n}", s.label, s.len)));
            }
        }
        if [g.a, g.b].contains(&g.c) {
            return Err(DeviceError("GEMM output aliases an input".into()));
        }
        let mut c = std::mem::replace(&mut self.bufs[g.c.0].buf, DBuf::Taken);
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let (op_a, op_b) = (op(g.ta), op(g.tb));
        // SAFETY: A, B and C hold the elements these dimensions reach (checked above).
        let r = unsafe {
            match (&self.bufs[g.a.0].buf, &self.bufs[g.b.0].buf, &mut c) {
                (DBuf::F32(a), DBuf::F32(b), DBuf::F32(c)) => blas.gemm(
                    GemmConfig { transa: op_a, transb: op_b, m, n, k, alpha: g.alpha as f32, lda, ldb, beta: g.beta as f32, ldc },
                    a,
                    b,
                    c,
                ),
                (DBuf::F64(a), DBuf::F64(b), DBuf::F64(c)) => {
                    blas.gemm(GemmConfig { transa: op_a, transb: op_b, m, n, k, alpha: g.alpha, lda, ldb, beta: g.beta, ldc }, a, b, c)
                }
                _ => {
                    self.bufs[g.c.0].buf = c;
                    return Err(DeviceError("GEMM operands of different or non-float types".into()));
                }
            }
        };
        self.bufs[g.c.0].buf = c;
        r.map_err(|e| err("cuBLAS GEMM", e))
    }

    fn synchronize(&mut self) -> DResult<()> {
        self.stream.synchronize().map_err(|e| err("synchronize", e))
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}
