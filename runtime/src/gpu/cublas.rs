//! cuBLAS, found as it is installed. cudarc's own loader looks for `libcublas.so`,
//! `.so.12`, `.so.11`, ... on the loader's path only, so a machine with CUDA 13 alone
//! (`libcublas.so.13` under `/usr/local/cuda-13.0/targets/x86_64-linux/lib`, not on the
//! loader's path) had no GEMM. The engine needs five functions of the stable `_v2` API
//! (the same in CUDA 11, 12 and 13), so it loads them itself:
//! 1. `SNNC_CUBLAS` (a path to the library), if set;
//! 2. the versioned and plain names on the loader's path (`LD_LIBRARY_PATH`, the cache);
//! 3. the CUDA install directories (`CUDA_HOME`, `CUDA_PATH`, `/usr/local/cuda*`, their
//!    `lib64` and `targets/<arch>-linux/lib`) and the distribution's library folders.
//!
//! When nothing loads, the error lists every name and directory tried.

use super::device::{DResult, DeviceError};
use libloading::Library;
use std::ffi::c_void;
use std::path::{Path, PathBuf};

/// Newest first: a machine with several keeps the newest.
const NAMES: [&str; 4] = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"];

type Handle = *mut c_void;
type Status = i32;
type Create = unsafe extern "C" fn(*mut Handle) -> Status;
type Destroy = unsafe extern "C" fn(Handle) -> Status;
type SetStream = unsafe extern "C" fn(Handle, *mut c_void) -> Status;
type SetWorkspace = unsafe extern "C" fn(Handle, u64, usize) -> Status;
/// `cublas{S,D}gemm_v2(handle, transa, transb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc)`
/// with host-side alpha/beta (the default pointer mode) and device pointers.
type GemmFn<T> = unsafe extern "C" fn(Handle, i32, i32, i32, i32, i32, *const T, u64, i32, u64, i32, *const T, u64, i32) -> Status;

/// A loaded cuBLAS with one handle bound to the engine's stream.
pub struct Blas {
    handle: Handle,
    sgemm: GemmFn<f32>,
    dgemm: GemmFn<f64>,
    destroy: Destroy,
    /// Where it was loaded from (for the device's name).
    pub path: String,
    // Kept last: dropped after the handle is destroyed.
    _lib: Library,
    _lt: Option<Library>,
}

/// Every directory to look in, in order, without duplicates.
fn directories() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    let mut roots: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"].iter().filter_map(|v| std::env::var_os(v)).map(PathBuf::from).collect();
    roots.push(PathBuf::from("/usr/local/cuda"));
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/local")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("cuda-"))).collect())
        .unwrap_or_default();
    // Newest version first ("cuda-13.0" before "cuda-12.8").
    versioned.sort_by_key(|p| std::cmp::Reverse(version_key(p)));
    roots.extend(versioned);
    let mut dirs = Vec::new();
    for r in roots {
        dirs.push(r.join("lib64"));
        dirs.push(r.join(format!("targets/{arch}-linux/lib")));
        dirs.push(r.join("lib"));
    }
    dirs.push(PathBuf::from(format!("/usr/lib/{arch}-linux-gnu")));
    dirs.push(PathBuf::from("/usr/lib64"));
    dirs.push(PathBuf::from("/usr/lib"));
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn version_key(p: &Path) -> Vec<u32> {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.trim_start_matches("cuda-").split('.').map(|s| s.parse().unwrap_or(0)).collect()
}

/// Loads `path` (a name for the loader's search, or a file), with its `cublasLt` from the
/// same folder first: libcublas needs it, and that folder may not be on the loader's path.
fn open(path: &Path) -> Result<(Library, Option<Library>), String> {
    let mut lt = None;
    if let (Some(dir), Some(name)) = (path.parent().filter(|d| !d.as_os_str().is_empty()), path.file_name().and_then(|n| n.to_str())) {
        let lt_path = dir.join(name.replace("libcublas", "libcublasLt"));
        if lt_path.exists() {
            // SAFETY: loading NVIDIA's library runs only its initialisers.
            lt = unsafe { libloading::os::unix::Library::open(Some(&lt_path), libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL) }
                .ok()
                .map(Library::from);
        }
    }
    // SAFETY: as above.
    let lib = unsafe { Library::new(path) }.map_err(|e| e.to_string())?;
    Ok((lib, lt))
}

/// Finds and loads cuBLAS (see the module doc).
fn find() -> DResult<(Library, Option<Library>, String)> {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("SNNC_CUBLAS") {
        let p = PathBuf::from(p);
        return open(&p).map(|(l, lt)| (l, lt, p.display().to_string())).map_err(|e| DeviceError(format!("SNNC_CUBLAS={}: {e}", p.display())));
    }
    for name in NAMES {
        match open(Path::new(name)) {
            Ok((l, lt)) => return Ok((l, lt, name.to_string())),
            Err(_) => tried.push(name.to_string()),
        }
    }
    let dirs = directories();
    for d in &dirs {
        for name in NAMES {
            let p = d.join(name);
            if p.exists() {
                match open(&p) {
                    Ok((l, lt)) => return Ok((l, lt, p.display().to_string())),
                    Err(e) => tried.push(format!("{} ({e})", p.display())),
                }
            }
        }
    }
    Err(DeviceError(format!(
        "dense projections need cuBLAS, and it could not be loaded: tried {} on the loader's path, then in {}; install the CUDA toolkit's cuBLAS (11, 12 or 13), or set SNNC_CUBLAS=/path/to/libcublas.so.N",
        NAMES.join(", "),
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    )))
}

fn check(what: &str, s: Status) -> DResult<()> {
    if s == 0 { Ok(()) } else { Err(DeviceError(format!("cuBLAS {what} failed with status {s}"))) }
}

impl Blas {
    /// Loads cuBLAS and makes a handle on `stream` (a `CUstream`) with the workspace at
    /// device address `workspace` (`bytes` long): with its own workspace cuBLAS does not
    /// allocate inside a graph capture.
    pub fn new(stream: *mut c_void, workspace: u64, bytes: usize) -> DResult<Blas> {
        let (lib, lt, path) = find()?;
        let sym = |name: &str| DeviceError(format!("{path} has no `{name}`"));
        // SAFETY: the types are those of cublas_api.h for these `_v2` entry points.
        unsafe {
            let create: Create = *lib.get::<Create>(b"cublasCreate_v2\0").map_err(|_| sym("cublasCreate_v2"))?;
            let set_stream: SetStream = *lib.get::<SetStream>(b"cublasSetStream_v2\0").map_err(|_| sym("cublasSetStream_v2"))?;
            let destroy: Destroy = *lib.get::<Destroy>(b"cublasDestroy_v2\0").map_err(|_| sym("cublasDestroy_v2"))?;
            let sgemm: GemmFn<f32> = *lib.get::<GemmFn<f32>>(b"cublasSgemm_v2\0").map_err(|_| sym("cublasSgemm_v2"))?;
            let dgemm: GemmFn<f64> = *lib.get::<GemmFn<f64>>(b"cublasDgemm_v2\0").map_err(|_| sym("cublasDgemm_v2"))?;
            let mut handle: Handle = std::ptr::null_mut();
            check("create", create(&mut handle))?;
            let blas = Blas { handle, sgemm, dgemm, destroy, path, _lib: lib, _lt: lt };
            check("set stream", set_stream(handle, stream))?;
            // cublasSetWorkspace_v2 exists from cuBLAS 11.4 on; older ones allocate as before.
            if let Ok(set_ws) = blas._lib.get::<SetWorkspace>(b"cublasSetWorkspace_v2\0") {
                check("set workspace", set_ws(handle, workspace, bytes))?;
            }
            Ok(blas)
        }
    }

    /// `C = alpha op(A) op(B) + beta C`, column-major, on device pointers (see
    /// [`super::device::Gemm`]); `f64` selects double precision.
    ///
    /// # Safety
    /// The pointers must hold the elements the dimensions reach, of the selected type.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(&self, f64_: bool, ta: bool, tb: bool, dims: [i32; 6], alpha: f64, a: u64, b: u64, beta: f64, c: u64) -> DResult<()> {
        let [m, n, k, lda, ldb, ldc] = dims;
        let (ta, tb) = (i32::from(ta), i32::from(tb)); // CUBLAS_OP_N = 0, CUBLAS_OP_T = 1
        // SAFETY: as the caller promises.
        let s = unsafe {
            if f64_ {
                (self.dgemm)(self.handle, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc)
            } else {
                let (alpha, beta) = (alpha as f32, beta as f32);
                (self.sgemm)(self.handle, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc)
            }
        };
        check("GEMM", s)
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: the handle was created by this library and is destroyed once.
        unsafe { (self.destroy)(self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_cuda_directory_first() {
        let mut v = [PathBuf::from("/usr/local/cuda-12.8"), PathBuf::from("/usr/local/cuda-13.0"), PathBuf::from("/usr/local/cuda-12.10")];
        v.sort_by_key(|p| std::cmp::Reverse(version_key(p)));
        assert_eq!(v[0], PathBuf::from("/usr/local/cuda-13.0"));
        assert_eq!(v[1], PathBuf::from("/usr/local/cuda-12.10"));
    }

    #[test]
    fn the_search_covers_the_cuda_13_layout() {
        let dirs = directories();
        let arch = std::env::consts::ARCH;
        assert!(dirs.contains(&PathBuf::from(format!("/usr/local/cuda/targets/{arch}-linux/lib"))), "{dirs:?}");
        assert!(dirs.contains(&PathBuf::from("/usr/local/cuda/lib64")));
        assert!(NAMES.contains(&"libcublas.so.13"));
    }

    /// Where no cuBLAS is installed (this project's CI), the error says what was searched.
    #[test]
    fn a_missing_cublas_names_what_was_searched() {
        if std::env::var_os("SNNC_CUBLAS").is_some() {
            return;
        }
        match find() {
            Ok((.., path)) => eprintln!("cuBLAS is installed here ({path}): nothing to check"),
            Err(e) => {
                assert!(e.0.contains("libcublas.so.13") && e.0.contains("libcublas.so.12"), "{e}");
                assert!(e.0.contains("/usr/local/cuda/lib64") && e.0.contains("SNNC_CUBLAS"), "{e}");
            }
        }
    }
}
