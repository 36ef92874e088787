//! A projection's presynaptic stage at run time (issue 19: short-term plasticity). The
//! compiler splits a synapse's states that depend only on the presynaptic neuron (`u`,
//! `x` of Tsodyks–Markram) into a model of their own, run here as a population of the
//! projection's source neurons: each step it reads the source's activity as its input
//! `pre`, runs its `on pre` statements where `pre` is non-zero and its equations over
//! `dt`, and leaves in its `_efficacy` state the factor of the latest spike. The
//! projection then delivers `sum_i w_ij pre_i efficacy_i` instead of `sum_i w_ij pre_i`.
//! A gated stage (saturating NMDA: `compiler/src/net/presyn.rs`) sends its `output` F
//! every step instead, and the projection delivers `sum_i w_ij F_i`.

use crate::error::RuntimeError;
use crate::kernels::KernelFactory;
use crate::network::Population;
use crate::scalar::Float;
use snnc_compiler::backend::{RandomCtx, StepArgs};
use snnc_compiler::pipeline::{PopulationPlan, PreStagePlan};
use snnc_compiler::sema::PopKind;

pub struct PreStage<T> {
    /// The stage's states, one per source neuron and batch element (`PROJ.pre`).
    pub pop: Population<T>,
    pre_input: usize,
    /// The state holding the efficacy of the latest spike; `None`: gated.
    efficacy: Option<usize>,
    /// The source's activity times the efficacy: what the projection delivers.
    scaled: Vec<T>,
}

impl<T: Float> PreStage<T> {
    pub(crate) fn allocate(plan: &PreStagePlan, name: String, batch: usize) -> PreStage<T> {
        let pop = Population::allocate(&PopulationPlan { name, n: plan.n, kind: PopKind::Layer, dynamics: Some(plan.dynamics.clone()) }, batch);
        PreStage { pop, pre_input: plan.pre_input, efficacy: plan.efficacy, scaled: vec![T::default(); batch * plan.n] }
    }

    pub(crate) fn attach_kernel(&mut self, factory: &'static dyn KernelFactory<T>) -> Result<(), RuntimeError> {
        let step = self.pop.step.as_ref().expect("a stage has dynamics");
        self.pop.kernel = Some(factory.build(step, &self.pop.specs)?);
        Ok(())
    }

    pub(crate) fn reset(&mut self) {
        for (s, i) in self.pop.states.iter_mut().zip(&self.pop.initial) {
            s.copy_from_slice(i);
        }
    }

    /// One step on the source's activity `src` (`batch * n`): the activity to deliver.
    /// The source's activity scaled by each source's efficacy, as the latest
    /// [`PreStage::advance`] left it.
    pub(crate) fn output(&self) -> &[T] {
        &self.scaled
    }

    pub(crate) fn advance(&mut self, src: &[T], t: f64, random: RandomCtx) -> Result<&[T], RuntimeError> {
        let pop = &mut self.pop;
        let Some(kernel) = &pop.kernel else {
            return Err(RuntimeError::Build(format!("the presynaptic state of `{}` has no CPU kernel", pop.name)));
        };
        // Its statements run at spikes: an analog source (an input of rates) has none.
        let (zero, one) = (T::default(), T::from_f64(1.0));
        if let Some(x) = src.iter().find(|&&x| x != zero && x != one) {
            return Err(RuntimeError::Input(format!(
                "`{}`: the presynaptic state of a synapse needs spikes (0 or 1) from its source, got {}",
                pop.name,
                x.to_f64()
            )));
        }
        pop.inputs[self.pre_input].copy_from_slice(src);
        let mut states: Vec<&mut [T]> = pop.states.iter_mut().map(|s| s.as_mut_slice()).collect();
        let inputs: Vec<&[T]> = pop.inputs.iter().map(|s| s.as_slice()).collect();
        let params: Vec<&[T]> = pop.per_neuron_params.iter().map(|s| s.as_slice()).collect();
        kernel.step(StepArgs { states: &mut states, inputs: &inputs, params: &params, spikes: &mut pop.spikes, t, random });
        match self.efficacy {
            Some(k) => {
                for ((d, &x), &e) in self.scaled.iter_mut().zip(src).zip(&pop.states[k]) {
                    *d = x * e;
                }
            }
            // Gated: the stage's output, every source every step.
            None => self.scaled.copy_from_slice(&pop.spikes),
        }
        Ok(&self.scaled)
    }

    /// The kernel input that receives the source's activity.
    pub(crate) fn pre_input(&self) -> usize {
        self.pre_input
    }

    /// The state holding the efficacy of the latest spike; `None`: gated.
    pub(crate) fn efficacy(&self) -> Option<usize> {
        self.efficacy
    }

    /// Whether the stage sends a value every step (gated), so that delivery must read
    /// every source, not only those that spiked.
    pub(crate) fn is_gated(&self) -> bool {
        self.efficacy.is_none()
    }
}
