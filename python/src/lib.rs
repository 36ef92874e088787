//! The `snnc` Python module: compile `.snn` programs, simulate their networks, take
//! gradients, explain their math, from Python and numpy (docs/python.md).
//!
//! Everything is done by the `snnc` crate's library (`snnc::api`, the runtime): this
//! crate only converts between Python and Rust values.

mod convert;
mod network;
mod program;
mod train;

use pyo3::prelude::*;

// As the `snnc` binary: buffers start on cache lines (snnc::runtime::alloc).
#[global_allocator]
static ALLOC: snnc::runtime::alloc::CacheAligned = snnc::runtime::alloc::CacheAligned;

pyo3::create_exception!(snnc, CompileError, pyo3::exceptions::PyException, "A program refused by the checks: the message is the rendered diagnostics (as `snnc check` prints them); `file`, `line` and `column` locate the first error.");
pyo3::create_exception!(snnc, SnncError, pyo3::exceptions::PyRuntimeError, "A network that cannot be built or run as asked (the runtime's error).");

#[pymodule]
#[pyo3(name = "snnc")]
fn snnc_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CompileError", py.get_type::<CompileError>())?;
    m.add("SnncError", py.get_type::<SnncError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<program::Program>()?;
    m.add_class::<network::Network>()?;
    m.add_function(wrap_pyfunction!(program::load, m)?)?;
    m.add_function(wrap_pyfunction!(program::compile, m)?)?;
    m.add_function(wrap_pyfunction!(program::import_nir, m)?)?;
    Ok(())
}
