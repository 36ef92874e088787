//! The library's face for programs that drive snnc (the `snnc` commands in `cli/` and
//! the Python module in `python/`): loading, inputs, gradients and explanations as
//! data, without printing.

pub mod load;
pub mod inputs;
pub mod grad;
pub mod explain;
pub mod nir;
