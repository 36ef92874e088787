//! Recording spikes and state traces, written as NumPy `.npy` files.
//!
//! Spikes are stored Brian2-style as two arrays per population: `POP.spikes.t.npy`
//! (times in seconds, f64) and `POP.spikes.i.npy` (neuron index `b * n + i`, i64).
//! A state trace `POP.VAR.npy` has shape (steps, batch * n), in SI units.
//! Everything recorded so far can be written at any time (also after an error).

use crate::error::RuntimeError;
use crate::network::Network;
use crate::scalar::Float;
use ndarray::Array2;
use std::path::{Path, PathBuf};

#[derive(Default)]
struct Trace {
    pop: usize,
    state: usize,
    name: String,
    width: usize,
    values: Vec<f32>,
}

#[derive(Default)]
pub struct Recorder {
    spikes: Vec<(usize, Vec<f64>, Vec<i64>)>,
    traces: Vec<Trace>,
}

impl Recorder {
    /// Records the spikes of every spiking population and the states named in `vars`
    /// (in every population that has them). Unknown names are an error.
    pub fn new<T: Float>(net: &Network<T>, spikes: bool, vars: &[String]) -> Result<Recorder, RuntimeError> {
        let mut r = Recorder::default();
        if spikes {
            for (p, pop) in net.pops.iter().enumerate() {
                if !pop.spikes.is_empty() {
                    r.spikes.push((p, Vec::new(), Vec::new()));
                }
            }
        }
        for v in vars {
            let mut found = false;
            for (p, pop) in net.pops.iter().enumerate() {
                if let Some(k) = pop.state_names.iter().position(|s| s == v) {
                    found = true;
                    r.traces.push(Trace { pop: p, state: k, name: format!("{}.{v}", pop.name), width: pop.states[k].len(), values: Vec::new() });
                }
            }
            if !found {
                let mut names: Vec<String> = net.pops.iter().flat_map(|p| p.state_names.iter().filter(|s| !s.starts_with('_')).cloned()).collect();
                names.sort();
                names.dedup();
                return Err(RuntimeError::Input(format!("no population has a state `{v}` to record (states: {})", names.join(", "))));
            }
        }
        Ok(r)
    }

    /// Call after every step.
    pub fn sample<T: Float>(&mut self, net: &Network<T>) {
        let t = net.time();
        for (p, ts, is) in &mut self.spikes {
            let pop = &net.pops[*p];
            for (b, active) in pop.active.iter().enumerate() {
                for &i in active {
                    ts.push(t);
                    is.push((b * pop.n) as i64 + i64::from(i));
                }
            }
        }
        for tr in &mut self.traces {
            tr.values.extend(net.pops[tr.pop].states[tr.state].iter().map(|v| v.to_f64() as f32));
        }
    }

    /// The spikes recorded so far: (population, times in s, indices `b * n + i`).
    pub fn spikes(&self) -> &[(usize, Vec<f64>, Vec<i64>)] {
        &self.spikes
    }

    pub fn spike_count(&self, pop: usize) -> usize {
        self.spikes.iter().find(|(p, _, _)| *p == pop).map(|(_, t, _)| t.len()).unwrap_or(0)
    }

    /// Writes every recording into `dir` (created if needed); returns the files written.
    pub fn write<T: Float>(&self, net: &Network<T>, dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Input(format!("cannot create `{}`: {e}", dir.display())))?;
        let mut files = Vec::new();
        let io = |path: &Path, e: &dyn std::fmt::Display| RuntimeError::Input(format!("cannot write `{}`: {e}", path.display()));
        for (p, ts, is) in &self.spikes {
            let name = &net.pops[*p].name;
            let pt = dir.join(format!("{name}.spikes.t.npy"));
            ndarray_npy::write_npy(&pt, &ndarray::Array1::from(ts.clone())).map_err(|e| io(&pt, &e))?;
            let pi = dir.join(format!("{name}.spikes.i.npy"));
            ndarray_npy::write_npy(&pi, &ndarray::Array1::from(is.clone())).map_err(|e| io(&pi, &e))?;
            files.push(pt);
            files.push(pi);
        }
        for tr in &self.traces {
            let steps = tr.values.len() / tr.width.max(1);
            let path = dir.join(format!("{}.npy", tr.name));
            let arr = Array2::from_shape_vec((steps, tr.width), tr.values.clone()).map_err(|e| io(&path, &e))?;
            ndarray_npy::write_npy(&path, &arr).map_err(|e| io(&path, &e))?;
            files.push(path);
        }
        Ok(files)
    }
}
