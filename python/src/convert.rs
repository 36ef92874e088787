//! Conversions between numpy and the runtime's arrays, and the errors Python sees.

use crate::{CompileError, SnncError};
use ndarray::ArrayD;
use numpy::PyReadonlyArrayDyn;
use pyo3::prelude::*;
use snnc::api::load::Refused;

/// Any array-like as an owned f64 array (numpy converts lists, numbers, ints and float32).
pub fn f64_array(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayD<f64>> {
    let np = obj.py().import("numpy")?;
    let arr = np.call_method1("asarray", (obj, "float64")).map_err(|e| pyo3::exceptions::PyTypeError::new_err(format!("{what}: not an array of numbers ({e})")))?;
    let view: PyReadonlyArrayDyn<'_, f64> = arr.extract()?;
    Ok(view.as_array().to_owned())
}

/// A runtime or argument error as `snnc.SnncError`.
pub fn runtime_err(e: impl std::fmt::Display) -> PyErr {
    SnncError::new_err(e.to_string())
}

/// A refused program as `snnc.CompileError`, with `file`, `line` and `column` (None
/// when the error has no place, e.g. a file that cannot be read).
pub fn compile_err(py: Python<'_>, r: &Refused) -> PyErr {
    let err = CompileError::new_err(r.render().trim_end().to_string());
    let (file, line, column) = match r.location() {
        Some((f, l, c)) => (Some(f), Some(l), Some(c)),
        None => (None, None, None),
    };
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail in practice; if it
    // did, the exception still carries its message.
    let _ = value.setattr("file", file);
    let _ = value.setattr("line", line);
    let _ = value.setattr("column", column);
    let _ = value.setattr("errors", r.errors());
    err
}

/// Warns (Python's `warnings`) with each rendered warning diagnostic.
pub fn warn(py: Python<'_>, text: &str) -> PyResult<()> {
    let w = py.import("warnings")?;
    w.call_method1("warn", (text,))?;
    Ok(())
}

/// A value that crosses `Python::detach` (the GIL released) on the thread that owns it.
/// The networks hold JIT kernels that are not `Send`; `detach` runs its closure on the
/// calling thread, and the objects are `unsendable` pyclasses (pinned to their thread),
/// so nothing is ever used from two threads.
pub struct OnThisThread<T>(pub T);
unsafe impl<T> Send for OnThisThread<T> {}

impl<T> OnThisThread<T> {
    /// The value (a method, so a closure captures the whole wrapper, not its field).
    pub fn into_inner(self) -> T {
        self.0
    }
}
