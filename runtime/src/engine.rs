//! The engine seam: what the drivers above a backend (simulation, training, evaluation,
//! the command line) need of it, in one place. A backend is a network that can be
//! stepped and observed ([`Simulation`]: the CPU's [`Network`], the GPU's
//! [`crate::gpu::GpuNetwork`]) and a learner computing gradients on it ([`Learner`]: the
//! CPU's [`CpuGradient`], the GPU's [`crate::gpu::GpuGradient`]); the training loop
//! drives a [`Trainer`]: a network and its learner kept together ([`Engine`]), or the
//! CPU's batch split across threads ([`crate::train::CpuTrainer`]).

use crate::learn::{CpuGradient, Gradients, Online, Sequence};
use crate::error::RuntimeError;
use crate::network::Network;
use crate::scalar::Float;
use ndarray::Array2;

/// Writes the external inputs of a network step (`Simulation::advance_fed`): the step's
/// index, one buffer per input (batch x size).
pub type FillInputs<'a, T> = dyn FnMut(u64, &mut [Vec<T>]) -> Result<(), RuntimeError> + 'a;

/// Shown every step that ran (`Simulation::advance_recorded`, `advance_fed`).
pub type ShowStep<'a, T> = dyn FnMut(&Network<T>) -> Result<(), RuntimeError> + 'a;

/// A network that can be stepped and observed, wherever its state lives.
pub trait Simulation<T> {
    /// The host view: sizes, names, counters; spikes and states as of the last `sync`.
    fn network(&self) -> &Network<T>;
    fn advance(&mut self, external: &[&[T]]) -> Result<(), RuntimeError>;
    /// How many steps a caller should hand [`Simulation::advance_free`],
    /// [`Simulation::advance_recorded`] or [`Simulation::advance_fed`] at once (between
    /// which it looks for Ctrl-C): one where steps run one by one anyway.
    fn steps_at_once(&self) -> u64 {
        1
    }
    /// Advances `steps` steps of a network without external inputs, with nothing read
    /// in between (no recording): as many `advance(&[])`, which a backend may batch
    /// (the GPU replays recorded windows of steps: `GpuNetwork::run`).
    fn advance_free(&mut self, steps: u64) -> Result<(), RuntimeError> {
        (0..steps).try_for_each(|_| self.advance(&[]))
    }
    /// [`Simulation::advance_free`] with the spikes of every step shown to `each` (the
    /// host view with that step's active lists and time, as after `advance` and
    /// `sync(false)`), and the states `states` names ((population, state) pairs: the
    /// host view's `states[state]` of that population, as after `sync(true)`), in
    /// order; an error of `each` stops the run. A backend may show them a window of
    /// steps at a time (the GPU records them on the device: `GpuNetwork::record_spikes`,
    /// `GpuNetwork::record_states`). Steps that ran are shown before a failure of a
    /// later step is returned.
    fn advance_recorded(&mut self, steps: u64, states: &[(usize, usize)], each: &mut dyn FnMut(&Network<T>) -> Result<(), RuntimeError>) -> Result<(), RuntimeError> {
        for _ in 0..steps {
            self.advance(&[])?;
            self.sync(!states.is_empty())?;
            each(self.network())?;
        }
        Ok(())
    }
    /// Advances `steps` steps of a network with external inputs, `fill(step, x)` writing
    /// the inputs of network step `step` (`x[i]`: batch x size of input `i`, in the
    /// network's order) before it runs; with `each`, every step is shown to it as by
    /// [`Simulation::advance_recorded`] (spikes, and the states `states` names). A
    /// backend may fill a window of steps ahead and hand it over at once (the GPU
    /// uploads a window's inputs in one copy per input: `GpuNetwork::run_fed`), so
    /// `fill` must depend on the step alone.
    fn advance_fed(
        &mut self,
        steps: u64,
        fill: &mut FillInputs<'_, T>,
        states: &[(usize, usize)],
        mut each: Option<&mut ShowStep<'_, T>>,
    ) -> Result<(), RuntimeError>
    where
        T: Copy + Default,
    {
        let (batch, sizes): (usize, Vec<usize>) = (self.network().batch, self.network().inputs.iter().map(|(_, n)| *n).collect());
        let mut x: Vec<Vec<T>> = sizes.iter().map(|n| vec![T::default(); batch * n]).collect();
        for _ in 0..steps {
            fill(self.network().step_index, &mut x)?;
            let refs: Vec<&[T]> = x.iter().map(Vec::as_slice).collect();
            self.advance(&refs)?;
            if let Some(each) = each.as_mut() {
                self.sync(!states.is_empty())?;
                each(self.network())?;
            }
        }
        Ok(())
    }
    /// Brings the host view's spikes (and active lists) and, with `states`, every
    /// population's state up to date: what a recorder reads after each step.
    fn sync(&mut self, states: bool) -> Result<(), RuntimeError>;
    /// Brings the rest of the host view up to date: presynaptic stages' states, traces
    /// and plastic weights (read at the end of a run, not per step).
    fn sync_plasticity(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Where it runs (for reports).
    fn backend(&self) -> String;
    /// Back at the initial state (weights are kept).
    fn reset(&mut self) -> Result<(), RuntimeError>;
    /// Sets a trainable projection's weights or a trainable param (`POP.PARAM`).
    fn set_trainable(&mut self, name: &str, w: Array2<T>) -> Result<(), RuntimeError>;
    /// The output of readout population `p` (B x N) into `out`.
    fn readout_output(&mut self, p: usize, out: &mut [T]) -> Result<(), RuntimeError>;
}

impl<T: Float> Simulation<T> for Network<T> {
    fn network(&self) -> &Network<T> {
        self
    }
    fn advance(&mut self, external: &[&[T]]) -> Result<(), RuntimeError> {
        self.step(external)
    }
    fn sync(&mut self, _states: bool) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn backend(&self) -> String {
        "CPU".into()
    }
    fn reset(&mut self) -> Result<(), RuntimeError> {
        Network::reset(self);
        Ok(())
    }
    fn set_trainable(&mut self, name: &str, w: Array2<T>) -> Result<(), RuntimeError> {
        Network::set_trainable(self, name, w)
    }
    fn readout_output(&mut self, p: usize, out: &mut [T]) -> Result<(), RuntimeError> {
        out.copy_from_slice(self.pops[p].readout_output());
        Ok(())
    }
}

/// The gradient of a sequence loss over one batch, on a network of type `N` that it was
/// made for (its `new(net, trainable, method)`).
pub trait Learner<N: ?Sized> {
    /// The gradient of one batch of `data` from the network's current state; with
    /// [`Online`], updates within the sequence (the returned `total` is then what
    /// accumulated after the last update).
    fn run_online(&mut self, net: &mut N, data: &mut dyn Sequence, online: Option<Online>) -> Result<Gradients, RuntimeError>;
}

impl<T: Float> Learner<Network<T>> for CpuGradient<T> {
    fn run_online(&mut self, net: &mut Network<T>, data: &mut dyn Sequence, online: Option<Online>) -> Result<Gradients, RuntimeError> {
        CpuGradient::run_online(self, net, data, online)
    }
}

/// What the training loop runs on: networks and gradient state kept from batch to batch.
pub trait Trainer<T> {
    /// Back at the start with `weights`, ready for a batch of `batch` sequences; `whole`:
    /// on one network (updates within a sequence need the whole batch's gradient).
    fn start(&mut self, batch: usize, whole: bool, weights: &[(String, Array2<f64>)]) -> Result<(), RuntimeError>;
    /// The training pass whose dropout masks the next batches draw (`None`: no dropout,
    /// as at evaluation); see `Network::dropout_pass`.
    fn set_dropout_pass(&mut self, pass: Option<u64>);
    /// The host views of the networks the batch runs on (the parts of a split batch, in
    /// order): their structure and spike counters.
    fn networks(&self) -> &[Network<T>];
    /// The gradient of the batch of `data`, optionally [`Online`].
    fn gradient(&mut self, data: &mut dyn Sequence, online: Option<Online>) -> Result<Gradients, RuntimeError>;
    /// Per population, the spikes of the latest batch summed over all its elements,
    /// and how many elements that is (by default over [`Trainer::networks`]; a batch
    /// shared with other processes sums theirs too).
    fn spike_totals(&self) -> (Vec<u64>, usize)
    where
        T: 'static,
    {
        let nets = self.networks();
        let batch = nets.iter().map(|n| n.batch).sum();
        let totals = (0..nets.first().map_or(0, |n| n.pops.len())).map(|p| nets.iter().map(|n| n.pops[p].spike_count).sum()).collect();
        (totals, batch)
    }
}

/// A network and its learner, kept together: the whole batch on one network (the GPU's
/// way of training).
pub struct Engine<S, L> {
    pub net: S,
    pub learner: L,
}

/// `sim` back at its start, with `weights`.
pub fn start<T: Float, S: Simulation<T> + ?Sized>(sim: &mut S, weights: &[(String, Array2<f64>)]) -> Result<(), RuntimeError> {
    sim.reset()?;
    crate::train::set_weights(sim, weights)
}

impl<T: Float, S: Simulation<T>, L: Learner<S>> Trainer<T> for Engine<S, L> {
    fn start(&mut self, batch: usize, _whole: bool, weights: &[(String, Array2<f64>)]) -> Result<(), RuntimeError> {
        // The network is made once for its batch (an MPI rank's: its share).
        let built = self.net.network().batch;
        if batch != built {
            return Err(RuntimeError::Input(format!("a batch of {batch} on a network made for a batch of {built}")));
        }
        start(&mut self.net, weights)
    }
    // A device network steps without masks; its learner refuses a network with a
    // dropout (`gpu::learn::refuse_on_device`), so there is nothing to set.
    fn set_dropout_pass(&mut self, _pass: Option<u64>) {}
    fn networks(&self) -> &[Network<T>] {
        std::slice::from_ref(self.net.network())
    }
    fn gradient(&mut self, data: &mut dyn Sequence, online: Option<Online>) -> Result<Gradients, RuntimeError> {
        self.learner.run_online(&mut self.net, data, online)
    }
}
