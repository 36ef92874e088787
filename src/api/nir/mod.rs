//! NIR, the Neuromorphic Intermediate Representation (nir 1.0: an HDF5 graph of nodes
//! and edges, read and written by snnTorch, Norse, Sinabs, Lava, ...): export of snnc
//! networks whose parts NIR can express, and import of NIR graphs as `.snn` text plus
//! weights (docs/nir.md).
//!
//! The graph is kept as NIR writes it: each node its type and its arrays by name;
//! `import` and `export` know which arrays each type has.

mod export;
mod hdf5;
mod import;

pub use export::export;
pub use hdf5::{read, write};
pub use import::{Imported, import};

use ndarray::ArrayD;

/// One NIR node: its type (`"LIF"`, `"Affine"`, ...) and its arrays (`"tau"`,
/// `"weight"`, `"shape"`, ...), in the order read or written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: String,
    pub params: Vec<(String, ArrayD<f64>)>,
}

impl Node {
    pub fn param(&self, name: &str) -> Option<&ArrayD<f64>> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

/// A NIR graph: named nodes and directed edges between them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub nodes: Vec<(String, Node)>,
    pub edges: Vec<(String, String)>,
}

impl Graph {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, n)| n)
    }
}

/// The NIR neuron models snnc has, as `.snn` text: NIR's equations as its documentation
/// writes them (nir 1.0), dimensionless but for the time constants (seconds). Import
/// writes the ones a graph uses; export recognises a population's model as one of
/// these when its discretised step is the same as this text's.
pub const MODELS: &[(&str, &str, &str)] = &[
    (
        "LIF",
        "NirLIF",
        "// NIR's LIF: tau dv/dt = (v_leak - v) + r I; a spike when v > v_threshold, then v = v_reset.
neuron NirLIF {
    param tau: s = 10 ms
    param r = 1.0
    param v_leak = 0.0
    param v_threshold = 1.0
    param v_reset = 0.0
    state v = 0.0
    input I

    dv/dt = (v_leak - v + r * I) / tau
    spike when v > v_threshold surrogate relu_grad(alpha = 0.3, width = 1.0)
    reset v = v_reset
}
",
    ),
    (
        "LI",
        "NirLI",
        "// NIR's LI: tau dv/dt = (v_leak - v) + r I (no spikes).
neuron NirLI {
    param tau: s = 10 ms
    param r = 1.0
    param v_leak = 0.0
    state v = 0.0
    input I

    dv/dt = (v_leak - v + r * I) / tau
}
",
    ),
    (
        "IF",
        "NirIF",
        "// NIR's IF: dv/dt = r I; a spike when v > v_threshold, then v = v_reset.
neuron NirIF {
    param r: Hz = 1 Hz
    param v_threshold = 1.0
    param v_reset = 0.0
    state v = 0.0
    input I

    dv/dt = r * I
    spike when v > v_threshold surrogate relu_grad(alpha = 0.3, width = 1.0)
    reset v = v_reset
}
",
    ),
    (
        "CubaLIF",
        "NirCubaLIF",
        "// NIR's CubaLIF: tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = (v_leak - v) + r I; a spike
// when v > v_threshold, then v = v_reset.
neuron NirCubaLIF {
    param tau_syn: s = 5 ms
    param tau_mem: s = 10 ms
    param r = 1.0
    param v_leak = 0.0
    param v_threshold = 1.0
    param v_reset = 0.0
    param w_in = 1.0
    state syn = 0.0
    state v = 0.0
    input S

    dsyn/dt = (w_in * S - syn) / tau_syn
    dv/dt = (v_leak - v + r * syn) / tau_mem
    spike when v > v_threshold surrogate relu_grad(alpha = 0.3, width = 1.0)
    reset v = v_reset
}
",
    ),
    (
        "CubaLI",
        "NirCubaLI",
        "// NIR's CubaLI: tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = (v_leak - v) + r I (no spikes).
neuron NirCubaLI {
    param tau_syn: s = 5 ms
    param tau_mem: s = 10 ms
    param r = 1.0
    param v_leak = 0.0
    param w_in = 1.0
    state syn = 0.0
    state v = 0.0
    input S

    dsyn/dt = (w_in * S - syn) / tau_syn
    dv/dt = (v_leak - v + r * syn) / tau_mem
}
",
    ),
];

/// The params of NIR type `kind` that are time constants (seconds in NIR and in snnc).
fn is_time(param: &str) -> bool {
    param.starts_with("tau")
}
