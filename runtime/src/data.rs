//! Networks defined by data: connectivity read from `.npz` and `.safetensors` files
//! (`connect A -> B from "conn.npz"`), validated on load.
//!
//! A file holds 1-D arrays: `pre` and `post` (COO, one entry a synapse) or `indptr` and
//! `indices` (CSR, rows = presynaptic neurons), and optionally `weight` (one a synapse),
//! `delay` (one a synapse, in milliseconds) and `sign` (+1 / -1, one a synapse or one a
//! presynaptic neuron). Indices are any integer type (int8..int64, uint8..uint64),
//! values float32 or float64. Everything is checked before a network uses it; each
//! refusal names the file, the array and the first bad entry, under a code of its kind
//! (docs/diagnostics.md, "Data files"):
//!
//! - E0601: the file cannot be opened or is not an `.npz` / `.safetensors` archive;
//! - E0602: an array is missing;
//! - E0603: an array has the wrong type (floats as indices, integers as weights) or is
//!   not 1-D;
//! - E0604: an index out of range;
//! - E0605: a value that is not allowed (NaN or infinite, a negative delay, a sign
//!   other than +1 / -1);
//! - E0606: arrays whose lengths do not match;
//! - E0607: a CSR `indptr` that does not start at 0 or decreases.
//!
//! A population's params and initial states are read the same way, one value a neuron
//! (`layer E = LIF[100] { tau = load("params.npz", "tau") * 1 ms }`): [`fill_plan`].
//!
//! The `.npy` entries of an archive are read by their header (type, shape) and streamed
//! into the type the network keeps (u32 indices, f64 values), so a 50-million-synapse
//! file is never held twice in its stored width.

use crate::connectivity::{Csr, SynapseFn, build_threads, fill_rows};
use crate::error::RuntimeError;
use snnc_compiler::backend::ParamSpec;
use snnc_compiler::pipeline::NetworkPlan;
use snnc_compiler::sema::NetworkDef;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// What an array holds, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    F32,
    F64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    fn is_int(self) -> bool {
        !matches!(self, Dtype::Bool | Dtype::F16 | Dtype::F32 | Dtype::F64)
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// From a NumPy `descr` (`<i8`, `|u1`, `<f4`); big-endian data is not read.
    fn from_npy(descr: &str) -> Option<Dtype> {
        let (order, code) = descr.split_at(1.min(descr.len()));
        if !matches!(order, "<" | "|" | "=") {
            return None;
        }
        Some(match code {
            "b1" => Dtype::Bool,
            "i1" => Dtype::I8,
            "i2" => Dtype::I16,
            "i4" => Dtype::I32,
            "i8" => Dtype::I64,
            "u1" => Dtype::U8,
            "u2" => Dtype::U16,
            "u4" => Dtype::U32,
            "u8" => Dtype::U64,
            "f2" => Dtype::F16,
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            _ => return None,
        })
    }

    fn from_safetensors(d: safetensors::Dtype) -> Option<Dtype> {
        use safetensors::Dtype as S;
        Some(match d {
            S::BOOL => Dtype::Bool,
            S::I8 => Dtype::I8,
            S::I16 => Dtype::I16,
            S::I32 => Dtype::I32,
            S::I64 => Dtype::I64,
            S::U8 => Dtype::U8,
            S::U16 => Dtype::U16,
            S::U32 => Dtype::U32,
            S::U64 => Dtype::U64,
            S::F16 => Dtype::F16,
            S::F32 => Dtype::F32,
            S::F64 => Dtype::F64,
            _ => return None,
        })
    }

    /// Element `k` of little-endian `bytes` as a number: an integer exactly (as i128),
    /// a float as f64.
    fn value(self, b: &[u8]) -> Value {
        let i = |v: i128| Value::Int(v);
        match self {
            Dtype::Bool | Dtype::U8 => i(i128::from(b[0])),
            Dtype::I8 => i(i128::from(b[0] as i8)),
            Dtype::I16 => i(i128::from(i16::from_le_bytes([b[0], b[1]]))),
            Dtype::U16 => i(i128::from(u16::from_le_bytes([b[0], b[1]]))),
            Dtype::I32 => i(i128::from(i32::from_le_bytes(b[..4].try_into().expect("4 bytes")))),
            Dtype::U32 => i(i128::from(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")))),
            Dtype::I64 => i(i128::from(i64::from_le_bytes(b[..8].try_into().expect("8 bytes")))),
            Dtype::U64 => i(i128::from(u64::from_le_bytes(b[..8].try_into().expect("8 bytes")))),
            Dtype::F16 => Value::Float(f16_to_f64(u16::from_le_bytes([b[0], b[1]]))),
            Dtype::F32 => Value::Float(f64::from(f32::from_le_bytes(b[..4].try_into().expect("4 bytes")))),
            Dtype::F64 => Value::Float(f64::from_le_bytes(b[..8].try_into().expect("8 bytes"))),
        }
    }
}

#[derive(Clone, Copy)]
enum Value {
    Int(i128),
    Float(f64),
}

impl Value {
    fn as_f64(self) -> f64 {
        match self {
            Value::Int(v) => v as f64,
            Value::Float(v) => v,
        }
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        0x1f if frac == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// A data error: its code and message, with the file named.
fn err(code: &str, file: &Path, msg: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Build(format!("{code}: `{}`: {msg}", file.display()))
}

/// `e` about `context` ("projection `EE`"): "CODE: context: ..." for a coded error,
/// "context: ..." otherwise.
pub fn in_context(context: &str, e: RuntimeError) -> RuntimeError {
    let msg = e.to_string();
    RuntimeError::Build(match msg.split_once(": ") {
        Some((code, rest)) if code.len() == 5 && code.starts_with('E') && code[1..].bytes().all(|b| b.is_ascii_digit()) => format!("{code}: {context}: {rest}"),
        _ => format!("{context}: {msg}"),
    })
}

/// An open data file: a NumPy `.npz` archive or a `.safetensors` file (memory-mapped).
pub struct DataFile {
    path: PathBuf,
    kind: Kind,
}

enum Kind {
    Npz(zip::ZipArchive<File>),
    Safetensors(memmap2::Mmap),
}

/// An array's type and shape, from its header.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl Header {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

impl DataFile {
    /// Opens `path` by its extension (`.safetensors`, else an `.npz` archive).
    pub fn open(path: &Path) -> Result<DataFile, RuntimeError> {
        let f = File::open(path).map_err(|e| err("E0601", path, format!("cannot open the file: {e}")))?;
        let kind = if path.extension().is_some_and(|e| e == "safetensors") {
            // SAFETY: the map is read only; a file changed underneath while a network
            // is built gives wrong numbers or a validation error, as a changed `.npz` would.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| err("E0601", path, format!("cannot map the file: {e}")))?;
            safetensors::SafeTensors::deserialize(&map).map_err(|e| err("E0601", path, format!("not a .safetensors file: {e}")))?;
            Kind::Safetensors(map)
        } else {
            Kind::Npz(zip::ZipArchive::new(f).map_err(|e| err("E0601", path, format!("not an .npz archive: {e}")))?)
        };
        Ok(DataFile { path: path.to_path_buf(), kind })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the arrays (without `.npy`).
    pub fn names(&self) -> Vec<String> {
        match &self.kind {
            Kind::Npz(z) => z.file_names().map(|n| n.trim_end_matches(".npy").to_string()).collect(),
            Kind::Safetensors(m) => safetensors::SafeTensors::deserialize(m).map(|s| s.names().into_iter().map(String::from).collect()).unwrap_or_default(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.names().iter().any(|n| n == name)
    }

    fn missing(&self, name: &str) -> RuntimeError {
        let mut names = self.names();
        names.sort();
        err("E0602", &self.path, format!("no array `{name}` (the file has: {})", if names.is_empty() { "nothing".to_string() } else { names.join(", ") }))
    }

    /// The type and shape of array `name`, from its header only.
    pub fn header(&mut self, name: &str) -> Result<Header, RuntimeError> {
        let path = self.path.clone();
        match &mut self.kind {
            Kind::Npz(z) => {
                let Ok(mut entry) = z.by_name(&format!("{name}.npy")) else { return Err(self.missing(name)) };
                npy_header(&mut entry, &path, name)
            }
            Kind::Safetensors(m) => {
                let st = safetensors::SafeTensors::deserialize(m).map_err(|e| err("E0601", &path, e))?;
                let Ok(t) = st.tensor(name) else { return Err(self.missing(name)) };
                let dtype = Dtype::from_safetensors(t.dtype())
                    .ok_or_else(|| err("E0603", &path, format!("array `{name}` has type {:?}, which snnc does not read", t.dtype())))?;
                Ok(Header { dtype, shape: t.shape().to_vec() })
            }
        }
    }

    /// The length of 1-D array `name`, from its header only.
    pub fn len_1d(&mut self, name: &str) -> Result<usize, RuntimeError> {
        let h = self.header(name)?;
        if h.shape.len() != 1 {
            return Err(err("E0603", &self.path, format!("array `{name}` must be 1-D, it has shape {:?}", h.shape)));
        }
        Ok(h.len())
    }

    /// Streams the elements of 1-D array `name` to `each(k, value)`, checking its header
    /// with `accept` (which says what it wants when it refuses a type).
    fn stream(&mut self, name: &str, accept: fn(Dtype) -> Result<(), &'static str>, each: &mut dyn FnMut(usize, Value) -> Result<(), RuntimeError>) -> Result<usize, RuntimeError> {
        let path = self.path.clone();
        let check = |h: &Header| -> Result<(), RuntimeError> {
            accept(h.dtype).map_err(|want| err("E0603", &path, format!("array `{name}` has type {}, expected {want}", h.dtype.name())))?;
            if h.shape.len() != 1 {
                return Err(err("E0603", &path, format!("array `{name}` must be 1-D, it has shape {:?}", h.shape)));
            }
            Ok(())
        };
        match &mut self.kind {
            Kind::Npz(z) => {
                let Ok(entry) = z.by_name(&format!("{name}.npy")) else { return Err(self.missing(name)) };
                let mut r = BufReader::with_capacity(1 << 16, entry);
                let h = npy_header(&mut r, &path, name)?;
                check(&h)?;
                let (n, size) = (h.len(), h.dtype.size());
                let mut buf = vec![0u8; size * 8192];
                let mut k = 0;
                while k < n {
                    let m = (n - k).min(8192);
                    r.read_exact(&mut buf[..m * size]).map_err(|e| err("E0601", &path, format!("array `{name}` is cut short: {e}")))?;
                    for (o, b) in buf[..m * size].chunks_exact(size).enumerate() {
                        each(k + o, h.dtype.value(b))?;
                    }
                    k += m;
                }
                Ok(n)
            }
            Kind::Safetensors(m) => {
                let st = safetensors::SafeTensors::deserialize(m).map_err(|e| err("E0601", &path, e))?;
                let Ok(t) = st.tensor(name) else { return Err(self.missing(name)) };
                let dtype = Dtype::from_safetensors(t.dtype())
                    .ok_or_else(|| err("E0603", &path, format!("array `{name}` has type {:?}, which snnc does not read", t.dtype())))?;
                let h = Header { dtype, shape: t.shape().to_vec() };
                check(&h)?;
                for (k, b) in t.data().chunks_exact(dtype.size()).enumerate() {
                    each(k, dtype.value(b))?;
                }
                Ok(h.len())
            }
        }
    }

    /// Array `name` as indices below `bound` (`what` names what they index, for the
    /// message): any integer type; a negative or too large entry is refused (E0604).
    pub fn indices(&mut self, name: &str, bound: usize, what: &str) -> Result<Vec<u32>, RuntimeError> {
        let n = self.len_1d(name)?;
        let mut out = Vec::new();
        out.try_reserve_exact(n).map_err(|_| err("E0601", &self.path, format!("no memory for the {n} entries of `{name}`")))?;
        let path = self.path.clone();
        self.stream(name, |d| if d.is_int() { Ok(()) } else { Err("an integer type (int32, int64, uint32, uint64, ...)") }, &mut |k, v| {
            let Value::Int(i) = v else { unreachable!("an integer type was checked") };
            if i < 0 || i >= bound as i128 {
                return Err(err("E0604", &path, format!("array `{name}` has {i} at entry {k}, out of range for {what} (0 to {})", bound.saturating_sub(1))));
            }
            out.push(i as u32);
            Ok(())
        })?;
        Ok(out)
    }

    /// Array `name` as finite floats (float32 or float64; E0605 on NaN or infinity),
    /// each passed through `check` (which refuses with a reason).
    pub fn floats(&mut self, name: &str, check: &dyn Fn(f64) -> Option<&'static str>) -> Result<Vec<f64>, RuntimeError> {
        let n = self.len_1d(name)?;
        let mut out = Vec::new();
        out.try_reserve_exact(n).map_err(|_| err("E0601", &self.path, format!("no memory for the {n} entries of `{name}`")))?;
        let path = self.path.clone();
        self.stream(name, |d| if matches!(d, Dtype::F32 | Dtype::F64) { Ok(()) } else { Err("float32 or float64") }, &mut |k, v| {
            let x = v.as_f64();
            if !x.is_finite() {
                return Err(err("E0605", &path, format!("array `{name}` has {x} at entry {k}; every value must be finite")));
            }
            if let Some(why) = check(x) {
                return Err(err("E0605", &path, format!("array `{name}` has {x} at entry {k}; {why}")));
            }
            out.push(x);
            Ok(())
        })?;
        Ok(out)
    }

    /// Array `name` as signs, +1 or -1 of any numeric type.
    pub fn signs(&mut self, name: &str) -> Result<Vec<i8>, RuntimeError> {
        let mut out = Vec::new();
        let path = self.path.clone();
        self.stream(name, |d| if d == Dtype::Bool { Err("a number (+1 or -1)") } else { Ok(()) }, &mut |k, v| {
            match v.as_f64() {
                1.0 => out.push(1),
                -1.0 => out.push(-1),
                x => return Err(err("E0605", &path, format!("array `{name}` has {x} at entry {k}; a sign is +1 or -1"))),
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Reads the header of an `.npy` stream (format versions 1 to 3), leaving `r` at the data.
fn npy_header(r: &mut impl Read, path: &Path, name: &str) -> Result<Header, RuntimeError> {
    let bad = |why: &str| err("E0601", path, format!("array `{name}` is not a valid .npy entry: {why}"));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| bad("too short"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(bad("no NumPy magic"));
    }
    let len = if magic[6] == 1 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b).map_err(|_| bad("too short"))?;
        usize::from(u16::from_le_bytes(b))
    } else {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|_| bad("too short"))?;
        u32::from_le_bytes(b) as usize
    };
    if len > 1 << 20 {
        return Err(bad("header too long"));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text).map_err(|_| bad("header cut short"))?;
    let text = String::from_utf8_lossy(&text);
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_string())
    };
    let descr = field("descr").and_then(|s| s.strip_prefix('\'').and_then(|s| s.split('\'').next()).map(String::from)).ok_or_else(|| bad("no `descr`"))?;
    let dtype = Dtype::from_npy(&descr).ok_or_else(|| err("E0603", path, format!("array `{name}` has type `{descr}`, which snnc does not read (little-endian integers, float32 or float64)")))?;
    let shape_text = field("shape").and_then(|s| s.strip_prefix('(').and_then(|s| s.split(')').next()).map(String::from)).ok_or_else(|| bad("no `shape`"))?;
    let shape = shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse::<usize>()).collect::<Result<Vec<_>, _>>().map_err(|_| bad("a bad `shape`"))?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) && shape.len() > 1 {
        return Err(err("E0603", path, format!("array `{name}` must be 1-D, it has shape {shape:?}")));
    }
    Ok(Header { dtype, shape })
}

/// A projection's connectivity as a file gives it, in CSR order (rows = presynaptic
/// neurons, each row's synapses by postsynaptic index, ties in file order).
#[derive(Clone, Debug, PartialEq)]
pub struct FileProjection {
    pub n_pre: usize,
    pub n_post: usize,
    pub row_ptr: Vec<usize>,
    pub col: Vec<u32>,
    /// The file's `weight`, one a synapse.
    pub weight: Option<Vec<f64>>,
    /// The file's `delay`, in seconds, one a synapse.
    pub delay: Option<Vec<f64>>,
    /// The file's `sign`, one a synapse.
    pub sign: Option<Vec<i8>>,
}

impl FileProjection {
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    /// The structure with weights: the file's times `scale(i, j, k)` (synapse k of row
    /// i), or the file's alone, or `scale` alone where the file has none; each weight then
    /// on the side of its sign, if the file gives signs.
    pub fn into_csr(self, scale: Option<&SynapseFn<'_>>, threads: usize) -> Csr {
        let (row_ptr, mut col) = (self.row_ptr, self.col);
        let mut w = match (self.weight, scale) {
            (Some(w), None) => w,
            (file, Some(f)) => {
                let mut w = file.unwrap_or_else(|| vec![1.0; col.len()]);
                fill_rows(&row_ptr, &mut col, &mut w, threads, &|i, c, ws| {
                    for (k, (j, w)) in c.iter().zip(ws.iter_mut()).enumerate() {
                        *w *= f(i, *j, k);
                    }
                });
                w
            }
            (None, None) => vec![1.0; col.len()],
        };
        if let Some(s) = &self.sign {
            w.iter_mut().zip(s).for_each(|(w, s)| *w = f64::from(*s) * w.abs());
        }
        Csr { n_pre: self.n_pre, n_post: self.n_post, row_ptr, col, weight: w }
    }
}

/// How many synapses the connectivity file `path` holds, from its headers only (for the
/// memory estimate before anything is read).
pub fn count_synapses(path: &Path) -> Result<usize, RuntimeError> {
    let mut f = DataFile::open(path)?;
    if f.has("indices") { f.len_1d("indices") } else { f.len_1d("pre") }
}

/// Reads and checks the connectivity of `path` for `n_pre` x `n_post` neurons
/// (`pre_name` / `post_name` name the populations in messages).
pub fn load_projection(path: &Path, n_pre: usize, n_post: usize, pre_name: &str, post_name: &str) -> Result<FileProjection, RuntimeError> {
    let mut f = DataFile::open(path)?;
    let post_what = format!("`{post_name}` ({n_post} neurons)");
    let (row_ptr, col, perm) = if f.has("indptr") || f.has("indices") {
        let indptr = f.indices("indptr", usize::MAX.min(u32::MAX as usize + 1), "a synapse offset")?;
        if indptr.len() != n_pre + 1 {
            return Err(err("E0606", path, format!("array `indptr` has {} entries; `{pre_name}` has {n_pre} neurons, so it needs {}", indptr.len(), n_pre + 1)));
        }
        if indptr[0] != 0 {
            return Err(err("E0607", path, format!("array `indptr` starts at {}, not 0", indptr[0])));
        }
        if let Some(k) = indptr.windows(2).position(|w| w[1] < w[0]) {
            return Err(err("E0607", path, format!("array `indptr` decreases at entry {}: {} after {}", k + 1, indptr[k + 1], indptr[k])));
        }
        let col = f.indices("indices", n_post, &post_what)?;
        if col.len() != indptr[n_pre] as usize {
            return Err(err("E0606", path, format!("array `indices` has {} entries, but `indptr` ends at {}", col.len(), indptr[n_pre])));
        }
        let row_ptr: Vec<usize> = indptr.iter().map(|&p| p as usize).collect();
        let (col, perm) = sort_rows(&row_ptr, col);
        (row_ptr, col, perm)
    } else if f.has("pre") || f.has("post") {
        let pre = f.indices("pre", n_pre, &format!("`{pre_name}` ({n_pre} neurons)"))?;
        let post = f.indices("post", n_post, &post_what)?;
        if pre.len() != post.len() {
            return Err(err("E0606", path, format!("arrays `pre` and `post` have {} and {} entries", pre.len(), post.len())));
        }
        coo_to_csr(n_pre, &pre, post)
    } else {
        return Err(err("E0602", path, format!("neither `pre` and `post` (COO) nor `indptr` and `indices` (CSR) (the file has: {})", f.names().join(", "))));
    };
    let nnz = col.len();
    let per_synapse = |f: &mut DataFile, name: &str, check: &dyn Fn(f64) -> Option<&'static str>| -> Result<Option<Vec<f64>>, RuntimeError> {
        if !f.has(name) {
            return Ok(None);
        }
        let v = f.floats(name, check)?;
        if v.len() != nnz {
            return Err(err("E0606", path, format!("array `{name}` has {} entries for {nnz} synapses", v.len())));
        }
        Ok(Some(permute(&v, &perm)))
    };
    let weight = per_synapse(&mut f, "weight", &|_| None)?;
    let delay = per_synapse(&mut f, "delay", &|d| (d < 0.0).then_some("a delay cannot be negative"))?.map(|d| d.into_iter().map(|ms| ms * 1e-3).collect());
    let sign = if f.has("sign") {
        let s = f.signs("sign")?;
        Some(if s.len() == nnz {
            permute(&s, &perm)
        } else if s.len() == n_pre {
            (0..n_pre).flat_map(|i| std::iter::repeat_n(s[i], row_ptr[i + 1] - row_ptr[i])).collect()
        } else {
            return Err(err("E0606", path, format!("array `sign` has {} entries: one a synapse ({nnz}) or one a presynaptic neuron ({n_pre})", s.len())));
        })
    } else {
        None
    };
    Ok(FileProjection { n_pre, n_post, row_ptr, col, weight, delay, sign })
}

/// `v` in the order `perm` gives (`None`: as it is).
fn permute<V: Copy>(v: &[V], perm: &Option<Vec<usize>>) -> Vec<V> {
    match perm {
        Some(p) => p.iter().map(|&k| v[k]).collect(),
        None => v.to_vec(),
    }
}

/// COO to CSR by a counting sort on `pre` (stable), then each row by `post`: the row
/// pointers, the columns, and where each synapse came from in the file.
fn coo_to_csr(n_pre: usize, pre: &[u32], post: Vec<u32>) -> (Vec<usize>, Vec<u32>, Option<Vec<usize>>) {
    let mut row_ptr = vec![0usize; n_pre + 1];
    for &i in pre {
        row_ptr[i as usize + 1] += 1;
    }
    for i in 0..n_pre {
        row_ptr[i + 1] += row_ptr[i];
    }
    // One pass over the file's order: each synapse's column and origin scattered to its
    // row's next place (the arrays are too large for a second random pass to be cheap).
    let mut next = row_ptr.clone();
    let (mut perm, mut col) = (vec![0usize; pre.len()], vec![0u32; pre.len()]);
    for (k, (&i, &j)) in pre.iter().zip(&post).enumerate() {
        let at = &mut next[i as usize];
        (perm[*at], col[*at]) = (k, j);
        *at += 1;
    }
    drop(post);
    let (col, inner) = sort_rows(&row_ptr, col);
    let perm = match inner {
        Some(p) => p.iter().map(|&k| perm[k]).collect(),
        None => perm,
    };
    (row_ptr, col, Some(perm))
}

/// Sorts each row's columns (stably), rows shared out over the build threads; the
/// permutation applied, or `None` when every row was sorted already.
fn sort_rows(row_ptr: &[usize], mut col: Vec<u32>) -> (Vec<u32>, Option<Vec<usize>>) {
    let n_pre = row_ptr.len() - 1;
    if (0..n_pre).all(|i| col[row_ptr[i]..row_ptr[i + 1]].is_sorted()) {
        return (col, None);
    }
    let mut perm: Vec<usize> = (0..col.len()).collect();
    fill_rows(row_ptr, &mut col, &mut perm, build_threads(), &|_, c, p| {
        let mut pairs: Vec<(u32, usize)> = c.iter().copied().zip(p.iter().copied()).collect();
        pairs.sort_unstable();
        for ((cj, pk), (j, k)) in c.iter_mut().zip(p.iter_mut()).zip(pairs) {
            (*cj, *pk) = (j, k);
        }
    });
    (col, Some(perm))
}

/// `plan` with the per-neuron values that files give (`tau = load("p.npz", "tau") * 1 ms`,
/// [`NetworkDef::data`]) read in, in place of the compiler's NaN placeholders; borrowed
/// as it is when no value comes from a file. A value derived from a file's (a default or
/// an initial state reading such a param) is still NaN: it is refused, naming it.
pub fn fill_plan<'a>(net: &NetworkDef, plan: &'a NetworkPlan) -> Result<Cow<'a, NetworkPlan>, RuntimeError> {
    if net.data.is_empty() {
        return Ok(Cow::Borrowed(plan));
    }
    let mut plan = plan.clone();
    let mut files: HashMap<&str, DataFile> = HashMap::new();
    for d in &net.data {
        let p = &mut plan.populations[d.pop];
        let pop_err = |m: String| RuntimeError::Build(format!("population `{}`: {m}", p.name));
        let Some(dy) = p.dynamics.as_mut() else { return Err(pop_err(format!("`{}` has no params or states", d.name))) };
        let file = match files.entry(d.path.as_str()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(DataFile::open(Path::new(&d.path)).map_err(|e| in_context(&format!("`{}` of population `{}`", d.name, p.name), e))?),
        };
        let values = file.floats(&d.array, &|_| None).map_err(|e| in_context(&format!("`{}` of population `{}`", d.name, p.name), e))?;
        if values.len() != p.n {
            return Err(err("E0606", Path::new(&d.path), format!("array `{}` has {} entries; `{}` has {} neurons, one each", d.array, values.len(), p.name, p.n)));
        }
        let slot = match (0..dy.specs.len()).find(|&k| dy.step.param_name(k) == d.name) {
            Some(k) => {
                let per_neuron = dy.specs[..k].iter().filter(|s| matches!(s, ParamSpec::PerNeuron)).count();
                dy.per_neuron.get_mut(per_neuron).filter(|_| matches!(dy.specs[k], ParamSpec::PerNeuron))
            }
            None => dy.state_names.iter().position(|s| *s == d.name).and_then(|k| dy.initial.get_mut(k)),
        };
        let Some(slot) = slot else { return Err(pop_err(format!("`{}` is not a per-neuron param or a state of its kernel", d.name))) };
        slot.iter_mut().zip(&values).for_each(|(s, v)| *s = v * d.scale);
    }
    for p in &plan.populations {
        let Some(dy) = &p.dynamics else { continue };
        let named = |values: &[f64], what: &str, name: &str| -> Result<(), RuntimeError> {
            match values.iter().position(|v| v.is_nan()) {
                Some(i) => Err(RuntimeError::Build(format!(
                    "population `{}`: the {what} `{name}` (of neuron {i}) is derived from a value read from a file, which is not computed: set `{name}` itself (e.g. with `load`)",
                    p.name
                ))),
                None => Ok(()),
            }
        };
        let mut slot = 0;
        for (k, s) in dy.specs.iter().enumerate() {
            match s {
                ParamSpec::PerNeuron => {
                    named(&dy.per_neuron[slot], "param", dy.step.param_name(k))?;
                    slot += 1;
                }
                // A default read from neuron 0's value of a file's param.
                ParamSpec::Uniform(v) => named(&[*v], "param", dy.step.param_name(k))?,
            }
        }
        for (values, name) in dy.initial.iter().zip(&dy.state_names) {
            named(values, "initial value of", name)?;
        }
    }
    Ok(Cow::Owned(plan))
}
