//! Discretisation: from a model's ODEs and events to one step h^t = f(h^{t-1}, y^t).
pub mod expm;
