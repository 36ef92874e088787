//! Recording spikes and state traces, written as NumPy `.npy` files.
//!
//! Spikes are stored Brian2-style as two arrays per population: `POP.spikes.t.npy`
//! (times in seconds, f64) and `POP.spikes.i.npy` (neuron index `b * n + i`, i64).
//! A state trace `POP.VAR.npy` has shape (steps, batch * n), f32, in SI units.
//!
//! [`Recorder`] keeps everything in memory (for embedding programs and benchmarks) and
//! writes it at the end; [`StreamRecorder`] writes to disk as the run goes, in chunks,
//! so a long run's recordings never have to fit in memory and every file is a valid
//! `.npy` after each chunk (its header's shape is rewritten in place).

use crate::error::RuntimeError;
use crate::network::Network;
use crate::scalar::Float;
use ndarray::Array2;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What to record: the spiking populations, and each (population, state) named.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Populations whose spikes are recorded.
    pub spikes: Vec<usize>,
    /// (population, state index, file stem `POP.VAR`, values per step).
    pub traces: Vec<(usize, usize, String, usize)>,
}

impl Selection {
    /// The spikes of every spiking population (with `spikes`) and the states named in
    /// `vars`, in every population that has them. An unknown name is an error listing
    /// the states there are.
    pub fn new<T: Float>(net: &Network<T>, spikes: bool, vars: &[String]) -> Result<Selection, RuntimeError> {
        let mut sel = Selection::default();
        if spikes {
            sel.spikes = net.pops.iter().enumerate().filter(|(_, p)| !p.spikes.is_empty() && !crate::sends::sends_rate(p)).map(|(i, _)| i).collect();
        }
        for v in vars {
            let before = sel.traces.len();
            for (p, pop) in net.pops.iter().enumerate() {
                if let Some(k) = pop.state_names.iter().position(|s| s == v) {
                    sel.traces.push((p, k, format!("{}.{v}", pop.name), pop.states[k].len()));
                }
            }
            if sel.traces.len() == before {
                let mut names: Vec<String> = net.pops.iter().flat_map(|p| p.state_names.iter().filter(|s| !s.starts_with('_')).cloned()).collect();
                names.sort();
                names.dedup();
                return Err(RuntimeError::Input(format!("no population has a state `{v}` to record (states: {})", names.join(", "))));
            }
        }
        Ok(sel)
    }

    /// Bytes the state traces take on disk after `steps` steps (f32 values and their
    /// headers). Spikes are 16 bytes each and cannot be known before the run.
    pub fn trace_bytes(&self, steps: u64) -> u64 {
        self.traces.iter().fold(0u64, |a, t| a.saturating_add(steps.saturating_mul(t.3 as u64).saturating_mul(4)).saturating_add(HEADER as u64))
    }
}

/// `net` is the network `id` ([`Network::id`]) a recorder was made for, or the error
/// saying that it cannot `what` another.
fn made_for<T: Float>(id: u64, net: &Network<T>, what: &str) -> Result<(), RuntimeError> {
    if net.id() == id {
        return Ok(());
    }
    Err(RuntimeError::Input(format!(
        "cannot {what} network `{}`: the recorder was made for another network (a recording holds one network's steps; make a recorder for each)",
        net.name
    )))
}

#[derive(Default)]
struct Trace {
    pop: usize,
    state: usize,
    name: String,
    width: usize,
    values: Vec<f32>,
}

/// The spikes of one population as they are recorded: the lists of each step copied as
/// they are (4 bytes a spike, a bulk copy), with a run for each non-empty list saying its
/// time, batch row and length. Brian2's layout (a time and an index per spike, 16 bytes) is
/// made when asked for: recording it spike by spike took ~30 ns a spike in a 400k-neuron
/// run (the growing arrays' copies and page faults), on the thread that steps the network
/// while the others wait (docs/benchmarks.md, ninth round).
///
/// While a [`Recorder`] is attached to its network ([`Recorder::attach`]), the network
/// shares the logs ([`SharedLog`]) and appends each step's spikes as a population's
/// lists are joined, on the thread that joins them: the lists are still in that core's
/// cache, where the caller copying them after the step read them from the other core's
/// (~10 us a step at 400k neurons on two threads, while the other thread waited;
/// docs/benchmarks.md).
#[derive(Default)]
pub(crate) struct SpikeLog {
    pub(crate) pop: usize,
    /// The population's neurons (per batch row).
    n: usize,
    neurons: Vec<u32>,
    runs: Vec<Run>,
}

/// A spike log that a recorder and the network it is attached to share: the network
/// appends to it (a lock taken once per population and step, by the thread that joins
/// the population's spikes, never contended while the network steps), the recorder
/// reads it whenever asked, attached or not.
pub(crate) type SharedLog = Arc<Mutex<SpikeLog>>;

/// The log behind `log`'s lock, even one that a panicking thread held (nothing done
/// under it panics: a log's pushes only allocate, and running out of memory aborts).
pub(crate) fn lock_log(log: &SharedLog) -> MutexGuard<'_, SpikeLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The spikes of one list of one step: the next `len` of `neurons` (16 bytes: a list
/// of a small network holds one or two spikes).
#[derive(Clone, Copy)]
struct Run {
    t: f64,
    /// The batch row.
    row: u32,
    len: u32,
}

impl SpikeLog {
    /// Appends the lists of one step (one per batch row) at time `t`.
    pub(crate) fn push(&mut self, t: f64, lists: &[Vec<u32>]) {
        let before = self.neurons.len();
        for (b, active) in lists.iter().enumerate().filter(|(_, a)| !a.is_empty()) {
            // (A list's length and a batch row fit: indices are u32.)
            self.neurons.extend_from_slice(active);
            self.runs.push(Run { t, row: b as u32, len: active.len() as u32 });
        }
        // (The next step's about as many as this one's.)
        warm_spare(&self.neurons, (self.neurons.len() - before).max(64));
    }

    /// Drops what was logged at time `t` (a step that stopped on an error, after some of
    /// its populations were logged): a recording holds whole steps.
    pub(crate) fn forget(&mut self, t: f64) {
        while let Some(r) = self.runs.last().filter(|r| r.t == t) {
            let len = self.neurons.len() - r.len as usize;
            self.neurons.truncate(len);
            self.runs.pop();
        }
    }

    /// Times and indices `b * n + i`, spike by spike.
    fn times_and_indices(&self) -> (Vec<f64>, Vec<i64>) {
        let (mut ts, mut is) = (Vec::with_capacity(self.neurons.len()), Vec::with_capacity(self.neurons.len()));
        let mut start = 0;
        for r in &self.runs {
            let (end, base) = (start + r.len as usize, r.row as usize * self.n);
            ts.extend(std::iter::repeat_n(r.t, r.len as usize));
            is.extend(self.neurons[start..end].iter().map(|&i| (base + i as usize) as i64));
            start = end;
        }
        (ts, is)
    }
}

/// Asks for the cache lines of `v`'s spare capacity that its next `next` elements will
/// take: fetched while the next step runs, they are then written without waiting for
/// memory (a 400k-neuron step's ~1,200 spikes took 4.6 us to log, 2.1 us so).
fn warm_spare<T>(v: &Vec<T>, next: usize) {
    let from = v.as_ptr().wrapping_add(v.len()) as usize & !63;
    let to = v.as_ptr().wrapping_add(v.len() + next.min(v.capacity() - v.len())) as usize;
    for line in (from..to).step_by(64) {
        crate::propagate::prefetch(line as *const u8);
    }
}

/// Records in memory the spikes and states of the network it was made for, step by
/// step: sampled after each step ([`Recorder::sample`]), or, for the spikes, logged by
/// the network itself while attached ([`Recorder::attach`]).
pub struct Recorder {
    spikes: Vec<SharedLog>,
    traces: Vec<Trace>,
    /// The network it records ([`Network::id`]): it samples, attaches to and detaches
    /// from that one only (another's populations are not its logs').
    network: u64,
    /// The network logs the spikes ([`Recorder::attach`]).
    attached: bool,
}

impl Recorder {
    /// Records in memory what [`Selection::new`] selects.
    pub fn new<T: Float>(net: &Network<T>, spikes: bool, vars: &[String]) -> Result<Recorder, RuntimeError> {
        let sel = Selection::new(net, spikes, vars)?;
        Ok(Recorder {
            spikes: sel.spikes.iter().map(|&pop| Arc::new(Mutex::new(SpikeLog { pop, n: net.pops[pop].n, ..SpikeLog::default() }))).collect(),
            traces: sel.traces.into_iter().map(|(pop, state, name, width)| Trace { pop, state, name, width, values: Vec::new() }).collect(),
            network: net.id(),
            attached: false,
        })
    }

    /// Hands the spike logs to `net`, which from now on logs each step's spikes itself
    /// as its threads join them ([`SpikeLog`]); [`Recorder::sample`] then records the
    /// traces only. The recorder reads the logs whenever asked, attached or not;
    /// [`Recorder::detach`] stops the logging. Attaching twice is attaching once.
    /// An error, and nothing attached, if `net` is not the network the recorder was
    /// made for. A recorder dropped while attached is no longer logged into from the
    /// next step on.
    pub fn attach<T: Float>(&mut self, net: &mut Network<T>) -> Result<(), RuntimeError> {
        made_for(self.network, net, "attach to")?;
        if !self.attached {
            self.spikes.iter().for_each(|log| net.keep_spike_log(log));
            self.attached = true;
        }
        Ok(())
    }

    /// Stops `net` logging the spikes ([`Recorder::attach`]): [`Recorder::sample`] records
    /// them again. An error, and nothing changed, if `net` is not the network the
    /// recorder was made for; detaching a recorder that is not attached changes nothing.
    pub fn detach<T: Float>(&mut self, net: &mut Network<T>) -> Result<(), RuntimeError> {
        made_for(self.network, net, "detach from")?;
        if self.attached {
            self.spikes.iter().for_each(|log| net.drop_spike_log(log));
            self.attached = false;
        }
        Ok(())
    }

    /// Call after every step: the traces, and the spikes unless the recorder is attached
    /// (the network has logged them). An error, and nothing recorded, if `net` is not
    /// the network the recorder was made for.
    pub fn sample<T: Float>(&mut self, net: &Network<T>) -> Result<(), RuntimeError> {
        made_for(self.network, net, "sample")?;
        let t = net.time();
        for log in self.spikes.iter().filter(|_| !self.attached) {
            let mut log = lock_log(log);
            let pop = log.pop;
            log.push(t, &net.pops[pop].active);
        }
        for tr in &mut self.traces {
            tr.values.extend(net.pops[tr.pop].states[tr.state].iter().map(|v| v.to_f64() as f32));
        }
        Ok(())
    }

    /// The spikes recorded so far, Brian2's way: (population, times in s, indices
    /// `b * n + i`), spike by spike, in the order of time and then of index. Made on each
    /// call (attached or not).
    pub fn spikes(&self) -> Vec<(usize, Vec<f64>, Vec<i64>)> {
        self.spikes.iter().map(|log| {
            let log = lock_log(log);
            let (ts, is) = log.times_and_indices();
            (log.pop, ts, is)
        }).collect()
    }

    /// The state traces recorded so far: (file stem `POP.VAR`, values per step, values
    /// step after step).
    pub fn traces(&self) -> impl Iterator<Item = (&str, usize, &[f32])> {
        self.traces.iter().map(|t| (t.name.as_str(), t.width, t.values.as_slice()))
    }

    pub fn spike_count(&self, pop: usize) -> usize {
        self.spikes.iter().map(lock_log).find(|log| log.pop == pop).map_or(0, |log| log.neurons.len())
    }

    /// Writes every recording into `dir` (created if needed); returns the files written.
    pub fn write<T: Float>(&self, net: &Network<T>, dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
        made_for(self.network, net, "write the recordings of")?;
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Input(format!("cannot create `{}`: {e}", dir.display())))?;
        let mut files = Vec::new();
        let io = |path: &Path, e: &dyn std::fmt::Display| RuntimeError::Input(format!("cannot write `{}`: {e}", path.display()));
        for log in &self.spikes {
            let log = lock_log(log);
            let name = &net.pops[log.pop].name;
            let (ts, is) = log.times_and_indices();
            let pt = dir.join(format!("{name}.spikes.t.npy"));
            ndarray_npy::write_npy(&pt, &ndarray::Array1::from(ts)).map_err(|e| io(&pt, &e))?;
            let pi = dir.join(format!("{name}.spikes.i.npy"));
            ndarray_npy::write_npy(&pi, &ndarray::Array1::from(is)).map_err(|e| io(&pi, &e))?;
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

/// Bytes of the header every streamed file starts with (magic, version, length and the
/// dict, space-padded): fixed, so the shape can be rewritten in place as rows are added.
const HEADER: usize = 128;
/// Bytes buffered per file before they are written: one chunk.
const CHUNK: usize = 1 << 20;

/// An `.npy` file written row by row: rows are buffered and written a chunk at a time,
/// and after each chunk the header's shape is rewritten to count them, so the file is
/// a valid array of every row written so far.
pub struct NpyStream {
    path: PathBuf,
    file: File,
    /// NumPy's type string: `<f4`, `<f8` or `<i8`.
    descr: &'static str,
    /// Values per row of a 2-D array; `None` for a 1-D array (one value a row).
    width: Option<usize>,
    /// Rows on disk, counted in the header.
    rows: u64,
    pending: u64,
    buf: Vec<u8>,
    /// A write failed: nothing more is written (the rows before it stay valid).
    failed: bool,
}

impl NpyStream {
    /// Creates (or truncates) `path` as an empty array.
    pub fn create(path: PathBuf, descr: &'static str, width: Option<usize>) -> Result<NpyStream, RuntimeError> {
        let file = File::create(&path).map_err(|e| write_error(&path, &e))?;
        let mut s = NpyStream { path, file, descr, width, rows: 0, pending: 0, buf: Vec::new(), failed: false };
        let header = s.header(0);
        s.file.write_all(&header).map_err(|e| write_error(&s.path, &e))?;
        Ok(s)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header for `rows` rows (format version 1.0).
    fn header(&self, rows: u64) -> [u8; HEADER] {
        let shape = match self.width {
            Some(w) => format!("({rows}, {w})"),
            None => format!("({rows},)"),
        };
        let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", self.descr);
        let mut h = [b' '; HEADER];
        h[..6].copy_from_slice(b"\x93NUMPY");
        h[6] = 1;
        h[7] = 0;
        h[8..10].copy_from_slice(&((HEADER - 10) as u16).to_le_bytes());
        h[10..10 + dict.len()].copy_from_slice(dict.as_bytes());
        h[HEADER - 1] = b'\n';
        h
    }

    /// Adds one row (its values as little-endian bytes); writes a chunk when enough
    /// rows are buffered.
    pub fn push(&mut self, bytes: impl IntoIterator<Item = u8>) -> Result<(), RuntimeError> {
        if self.failed {
            return Ok(());
        }
        self.buf.extend(bytes);
        self.pending += 1;
        if self.buf.len() >= CHUNK { self.flush() } else { Ok(()) }
    }

    /// Writes the buffered rows and rewrites the header to count them.
    pub fn flush(&mut self) -> Result<(), RuntimeError> {
        if self.failed || (self.pending == 0 && self.buf.is_empty()) {
            return Ok(());
        }
        let rows = self.rows + self.pending;
        let header = self.header(rows);
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(&header))
            .and_then(|_| self.file.seek(SeekFrom::End(0)))
            .map(|_| ());
        self.buf.clear();
        self.pending = 0;
        match written {
            Ok(()) => {
                self.rows = rows;
                Ok(())
            }
            Err(e) => {
                // Back to the rows the header counts, so the file stays a valid array
                // (and a full disk gets the partial chunk's space back).
                self.failed = true;
                let item = if self.descr == "<f4" { 4 } else { 8 };
                let _ = self.file.set_len(HEADER as u64 + self.rows * item * self.width.unwrap_or(1) as u64);
                Err(write_error(&self.path, &e))
            }
        }
    }
}

fn write_error(path: &Path, e: &dyn std::fmt::Display) -> RuntimeError {
    RuntimeError::Input(format!("cannot write `{}`: {e}", path.display()))
}

/// Records a [`Selection`] straight to `.npy` files in a directory, as the run goes.
pub struct StreamRecorder {
    /// (population, times, indices).
    spikes: Vec<(usize, NpyStream, NpyStream)>,
    /// (population, state, values).
    traces: Vec<(usize, usize, NpyStream)>,
    /// The network it records ([`Network::id`]), as [`Recorder`]'s.
    network: u64,
}

impl StreamRecorder {
    /// Creates the files of `sel` in `dir` (which must exist), each an empty array. An
    /// error, and no file created, if `sel` names populations or states `net` does not
    /// have as it says (a selection made for another network).
    pub fn create<T: Float>(net: &Network<T>, sel: &Selection, dir: &Path) -> Result<StreamRecorder, RuntimeError> {
        let spiking = |p: usize| net.pops.get(p).is_some_and(|pop| !pop.spikes.is_empty());
        let traced = |&(p, k, _, width): &(usize, usize, String, usize)| net.pops.get(p).and_then(|pop| pop.states.get(k)).is_some_and(|s| s.len() == width);
        if !sel.spikes.iter().all(|&p| spiking(p)) || !sel.traces.iter().all(traced) {
            return Err(RuntimeError::Input(format!(
                "the recording's selection does not fit network `{}` (made for another network?): nothing recorded",
                net.name
            )));
        }
        let mut spikes = Vec::new();
        for &p in &sel.spikes {
            let name = &net.pops[p].name;
            let t = NpyStream::create(dir.join(format!("{name}.spikes.t.npy")), "<f8", None)?;
            let i = NpyStream::create(dir.join(format!("{name}.spikes.i.npy")), "<i8", None)?;
            spikes.push((p, t, i));
        }
        let mut traces = Vec::new();
        for (p, k, stem, width) in &sel.traces {
            traces.push((*p, *k, NpyStream::create(dir.join(format!("{stem}.npy")), "<f4", Some(*width))?));
        }
        Ok(StreamRecorder { spikes, traces, network: net.id() })
    }

    /// The states it records, as (population, state) pairs in file order (what
    /// `Simulation::advance_recorded` is asked to show).
    pub fn traced(&self) -> Vec<(usize, usize)> {
        self.traces.iter().map(|(p, k, _)| (*p, *k)).collect()
    }

    /// Call after every step. A write error stops nothing by itself: the caller decides
    /// (the files written so far stay valid). An error, and nothing written, if `net` is
    /// not the network the recorder was made for.
    pub fn sample<T: Float>(&mut self, net: &Network<T>) -> Result<(), RuntimeError> {
        made_for(self.network, net, "sample")?;
        let t = net.time();
        for (p, ts, is) in &mut self.spikes {
            let pop = &net.pops[*p];
            for (b, active) in pop.active.iter().enumerate() {
                for &i in active {
                    ts.push(t.to_le_bytes())?;
                    is.push(((b * pop.n) as i64 + i64::from(i)).to_le_bytes())?;
                }
            }
        }
        for (p, k, s) in &mut self.traces {
            s.push(net.pops[*p].states[*k].iter().flat_map(|v| (v.to_f64() as f32).to_le_bytes()))?;
        }
        Ok(())
    }

    /// Writes everything buffered, file by file (a failing file does not stop the
    /// others); the errors, one per failing file.
    pub fn finish(&mut self) -> Vec<RuntimeError> {
        let streams = self.spikes.iter_mut().flat_map(|(_, t, i)| [t, i]).chain(self.traces.iter_mut().map(|(_, _, s)| s));
        streams.filter_map(|s| s.flush().err()).collect()
    }

    /// The files, in the order they were created.
    pub fn files(&self) -> Vec<PathBuf> {
        let spikes = self.spikes.iter().flat_map(|(_, t, i)| [t.path.clone(), i.path.clone()]);
        spikes.chain(self.traces.iter().map(|(_, _, s)| s.path.clone())).collect()
    }

    /// The files whose writing failed.
    pub fn failed(&self) -> Vec<PathBuf> {
        let spikes = self.spikes.iter().flat_map(|(_, t, i)| [t, i]);
        spikes.chain(self.traces.iter().map(|(_, _, s)| s)).filter(|s| s.failed).map(|s| s.path.clone()).collect()
    }
}
