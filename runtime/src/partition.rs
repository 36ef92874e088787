//! Partitioned simulation: the neurons of every population split over K processes
//! (`mpirun -np K snnc run`, `ranks.rs` with the feature `mpi`), each stepping a
//! contiguous range of every population.
//!
//! A process keeps the whole network's structure of arrays (states are small) but only
//! the synapses into its own targets (sparse rows are cut to its columns; dense weights,
//! `conv` kernels and one-to-one weights stay whole), and gathers what arrives at its
//! targets from every source. After each spiking population's pass of a step, the
//! processes all-gather the indices of its neurons that spiked (ordered by rank, then
//! index: the order of the neurons), so every process sees all spikes before the next
//! population, which may read them in the same step, gathers. Draws are keyed by the
//! neuron (noise, initial values) or by the row (connectivity, weights), never by the
//! process, and each target's sum runs over the same sources in the same order: the
//! spikes and states are those of one process, bit for bit.
//!
//! What cannot run this way is refused by name ([`refuse`]): plasticity (a rule changes
//! weights from both sides of a synapse), populations that send values (the exchange
//! carries spike indices), projections reading a state or a readout's output, learning.

use crate::error::RuntimeError;
use crate::network::{Network, lock};
use crate::parallel::{chunks_of, split_range};
use crate::propagate::Weights;
use crate::scalar::Float;
use snnc_compiler::sema::Source;
use std::fmt::Display;
use std::ops::Range;

/// This process's share of a partitioned network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub rank: usize,
    pub size: usize,
}

/// The collective calls of the processes of a partitioned run or of data-parallel
/// training (MPI's, or threads' in a test). Every process makes the same calls in the
/// same order.
pub trait Exchange {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Every process's `local` words, in rank order.
    fn all_gather(&self, local: &[u32]) -> Vec<Vec<u32>>;
    /// `v` summed over the processes, in place; every process gets the same sums, bit for
    /// bit. By default gathered, then added in rank order (MPI's ranks use its
    /// all-reduce instead).
    fn all_sum(&self, v: &mut [f64]) {
        let words: Vec<u32> = v.iter().flat_map(|x| [x.to_bits() as u32, (x.to_bits() >> 32) as u32]).collect();
        let all = self.all_gather(&words);
        if let Some(r) = all.iter().position(|w| w.len() != words.len()) {
            self.abort(&format!("rank {r} summed {} values, this one {}: the ranks ran different work", all[r].len() / 2, v.len()));
        }
        for (i, x) in v.iter_mut().enumerate() {
            *x = all.iter().map(|w| f64::from_bits(u64::from(w[2 * i]) | (u64::from(w[2 * i + 1]) << 32))).fold(0.0, |s, y| s + y);
        }
    }
    /// Ends every process after this one's error `why`, so that none waits forever in a
    /// collective this one will not reach.
    fn abort(&self, why: &dyn Display) -> !;

    /// Checks that every process was launched alike: the same `fingerprint` (of its
    /// command, its network, ...) on all of them; else the error names the processes
    /// that differ from rank 0 in `what`.
    fn check_alike(&self, fingerprint: u64, what: &str) -> Result<(), RuntimeError> {
        let all = self.all_gather(&[fingerprint as u32, (fingerprint >> 32) as u32]);
        let bad: Vec<usize> = (0..all.len()).filter(|&r| all[r] != all[0]).collect();
        if bad.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::Input(format!("the MPI ranks were not launched alike: ranks {bad:?} have {what} than rank 0 (give every rank the same command)")))
    }
}

/// Process `rank`'s neurons of a population of `n` among `size` processes: contiguous,
/// starting on multiples of 16 neurons (as a thread's chunks do).
pub fn share(n: usize, rank: usize, size: usize) -> Range<usize> {
    split_range(n, size, rank)
}

/// The parts of a population of `n` neurons: each one's neurons, and which of them this
/// process steps. Without a partition, the chunks of [`chunks_of`]; with one, one part
/// per other process (what it sends) around this process's chunks, in neuron order.
pub(crate) fn layout(n: usize, threads: usize, chunk: Option<usize>, partition: Option<Partition>) -> (Vec<Range<usize>>, Range<usize>) {
    let Some(Partition { rank, size }) = partition else {
        let chunks = chunks_of(n, threads, chunk);
        return ((0..chunks).map(|c| split_range(n, chunks, c)).collect(), 0..chunks);
    };
    let mine = share(n, rank, size);
    // An empty share steps nothing.
    let chunks = if mine.is_empty() { 0 } else { chunks_of(mine.len(), threads, chunk) };
    let mut ranges: Vec<Range<usize>> = (0..rank).map(|r| share(n, r, size)).collect();
    ranges.extend((0..chunks).map(|c| {
        let r = split_range(mine.len(), chunks, c);
        mine.start + r.start..mine.start + r.end
    }));
    ranges.extend((rank + 1..size).map(|r| share(n, r, size)));
    (ranges, rank..rank + chunks)
}

/// What a partitioned network cannot run, by name (the same on every process: it is
/// decided by the network alone).
pub fn refuse<T: Float>(net: &Network<T>) -> Result<(), RuntimeError> {
    let no = |what: String| Err(RuntimeError::Build(format!("E0702: {what}: a simulation partitioned over MPI ranks does not run it; run it in one process")));
    if let Some(pr) = net.projs.iter().find(|p| p.plastic.is_some()) {
        return no(format!("projection `{}` is plastic (its weights change with pre- and postsynaptic events)", pr.name));
    }
    if let Some((pop, v)) = net.pops.iter().find_map(|p| crate::sends::sent_value(p).map(|v| (p, v))) {
        return no(format!("population `{}` sends its `output {v}` (the ranks exchange spike indices, not values)", pop.name));
    }
    for pr in &net.projs {
        match pr.from {
            Source::Pop(q) if pr.from_state.is_some() => return no(format!("projection `{}` reads a state of `{}` (the ranks exchange spikes, not states)", pr.name, net.pops[q].name)),
            Source::Pop(q) if net.pops[q].step.is_none() => return no(format!("projection `{}` reads the readout `{}`'s output (the ranks exchange spikes)", pr.name, net.pops[q].name)),
            _ => {}
        }
    }
    Ok(())
}

impl<T: Float> Network<T> {
    /// Makes this network part `rank` of `size` of a partitioned simulation (refused by
    /// name where it cannot be: [`refuse`]): it steps its share of every population's
    /// neurons with [`Network::step_exchanging`], and keeps only the sparse synapses into
    /// them. Weights are set before (`--weights`): the synapses of the other parts are
    /// dropped here.
    pub fn partition(&mut self, rank: usize, size: usize) -> Result<(), RuntimeError> {
        if size == 0 || rank >= size {
            return Err(RuntimeError::Input(format!("part {rank} of {size}: no such part")));
        }
        refuse(self)?;
        for pr in &mut self.projs {
            let n_post = self.pops[pr.to].n;
            // A `conv` kernel indexes its synapses: kept whole.
            if let (Weights::Sparse(rows), None) = (&mut pr.weights, &pr.shared) {
                let kept = rows.keep_columns(&share(n_post, rank, size));
                if let Some(d) = &mut pr.syn_delay {
                    *d = kept.iter().map(|&k| d[k]).collect();
                }
            }
        }
        self.partition = Some(Partition { rank, size });
        self.lay_out();
        Ok(())
    }

    /// This network's part of a partitioned simulation, if it is one.
    pub fn part(&self) -> Option<Partition> {
        self.partition
    }

    /// One step of a partitioned network together with the other parts (every process
    /// calls it with the same inputs): the spikes of every population are then those of
    /// the whole network; its states, those of this part's neurons (see
    /// [`Network::gather_states`]).
    pub fn step_exchanging(&mut self, external: &[&[T]], exchange: &dyn Exchange) -> Result<(), RuntimeError> {
        match self.partition {
            Some(p) if p.rank == exchange.rank() && p.size == exchange.size() => self.step_inner(external, None, Some(exchange)),
            p => Err(RuntimeError::Input(format!(
                "network `{}` is {}, the exchange is rank {} of {}",
                self.name,
                p.map_or("not partitioned".to_string(), |p| format!("part {} of {}", p.rank, p.size)),
                exchange.rank(),
                exchange.size()
            ))),
        }
    }

    /// After population `p`'s pass of a step: its spikes from every part, in the parts of
    /// the other processes' neurons and in its spike vector.
    pub(crate) fn exchange_spikes(&mut self, p: usize, exchange: &dyn Exchange) -> Result<(), RuntimeError> {
        let Some(Partition { rank, size }) = self.partition else { return Ok(()) };
        let (n, batch) = (self.pops[p].n, self.batch);
        if self.pops[p].spikes.is_empty() {
            return Ok(());
        }
        // Per batch element: the count, then the indices.
        let mut words = Vec::new();
        for b in 0..batch {
            let at = words.len();
            words.push(0);
            for c in self.local[p].clone() {
                words.extend_from_slice(&lock(&self.parts[p][c]).active[b]);
            }
            words[at] = (words.len() - at - 1) as u32;
        }
        let all = exchange.all_gather(&words);
        let chunks = self.local[p].len();
        let pop = &mut self.pops[p];
        for (r, words) in all.iter().enumerate().filter(|(r, _)| *r != rank) {
            let range = share(n, r, size);
            let c = if r < rank { r } else { r + chunks - 1 };
            let mut part = lock(&self.parts[p][c]);
            part.active.resize_with(batch, Vec::new);
            let mut at = 0;
            for b in 0..batch {
                let count = words.get(at).copied().unwrap_or(0) as usize;
                let idx = words.get(at + 1..at + 1 + count).filter(|idx| idx.iter().all(|&i| range.contains(&(i as usize))));
                let Some(idx) = idx else {
                    return Err(RuntimeError::Input(format!("rank {r} sent spikes of population `{}` outside its neurons {range:?}", pop.name)));
                };
                at += 1 + count;
                let row = &mut pop.spikes[b * n..(b + 1) * n];
                row[range.clone()].fill(T::default());
                idx.iter().for_each(|&i| row[i as usize] = T::from_f64(1.0));
                part.active[b].clear();
                part.active[b].extend_from_slice(idx);
                part.ones = true;
            }
        }
        Ok(())
    }

    /// Every population's states from the parts that step them, so that each process
    /// holds the whole network's (for recording): one all-gather of every state.
    pub fn gather_states(&mut self, exchange: &dyn Exchange) {
        let Some(Partition { rank, size }) = self.partition else { return };
        let batch = self.batch;
        // f64 bits as two words: an f32 is exact in f64.
        let mut words = Vec::new();
        for pop in &self.pops {
            let mine = share(pop.n, rank, size);
            for s in &pop.states {
                for b in 0..batch {
                    for v in &s[b * pop.n + mine.start..b * pop.n + mine.end] {
                        let bits = v.to_f64().to_bits();
                        words.extend([bits as u32, (bits >> 32) as u32]);
                    }
                }
            }
        }
        let all = exchange.all_gather(&words);
        for (r, words) in all.iter().enumerate().filter(|(r, _)| *r != rank) {
            let mut at = words.chunks_exact(2).map(|w| f64::from_bits(u64::from(w[0]) | (u64::from(w[1]) << 32)));
            for pop in &mut self.pops {
                let theirs = share(pop.n, r, size);
                for s in &mut pop.states {
                    for b in 0..batch {
                        for v in &mut s[b * pop.n + theirs.start..b * pop.n + theirs.end] {
                            *v = T::from_f64(at.next().unwrap_or(f64::NAN));
                        }
                    }
                }
            }
        }
    }
}

/// A partitioned network as a [`crate::engine::Simulation`]: each advance steps with
/// the other parts and, when states are recorded, gathers them (every process alike).
pub struct Partitioned<'e, T: 'static> {
    pub net: Network<T>,
    exchange: &'e dyn Exchange,
    states: bool,
}

impl<'e, T: Float> Partitioned<'e, T> {
    /// `net` (partitioned with [`Network::partition`]) stepped with `exchange`; with
    /// `states`, every state is gathered after each step.
    pub fn new(net: Network<T>, exchange: &'e dyn Exchange, states: bool) -> Partitioned<'e, T> {
        Partitioned { net, exchange, states }
    }
}

impl<T: Float> crate::engine::Simulation<T> for Partitioned<'_, T> {
    fn network(&self) -> &Network<T> {
        &self.net
    }
    fn advance(&mut self, external: &[&[T]]) -> Result<(), RuntimeError> {
        self.net.step_exchanging(external, self.exchange)?;
        if self.states {
            self.net.gather_states(self.exchange);
        }
        Ok(())
    }
    fn sync(&mut self, _states: bool) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn backend(&self) -> String {
        format!("CPU, rank {} of {}", self.exchange.rank(), self.exchange.size())
    }
    fn reset(&mut self) -> Result<(), RuntimeError> {
        self.net.reset();
        Ok(())
    }
    fn set_trainable(&mut self, name: &str, _w: ndarray::Array2<T>) -> Result<(), RuntimeError> {
        Err(RuntimeError::Input(format!("`{name}`: a partitioned network keeps only its part of the synapses; set weights before partitioning it")))
    }
    fn readout_output(&mut self, p: usize, _out: &mut [T]) -> Result<(), RuntimeError> {
        Err(RuntimeError::Input(format!("readout `{}`: a partitioned network holds its part of each readout only", self.net.pops[p].name)))
    }
}
