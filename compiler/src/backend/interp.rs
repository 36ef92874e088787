//! The reference kernel: the f64 IR interpreter, one element at a time.

use super::specialise::{SpecialiseError, check};
use super::{ParamSpec, Real, StepArgs, StepKernel, random_draw};
use crate::discretise::Step;
use crate::ir::{self, Env, Graph, NodeId, Op};

pub struct InterpKernel {
    graph: Graph,
    next: Vec<NodeId>,
    spike: Option<NodeId>,
    specs: Vec<ParamSpec>,
    /// For each random slot: is it a normal draw?
    slots: Vec<bool>,
    dt: f64,
    /// The inputs `step_clearing` leaves at 0 (after the step: the interpreter reads
    /// every element's inputs before it writes anything).
    cleared: Vec<usize>,
}

impl InterpKernel {
    /// The reference kernel of `step`: the same checks as the code-generating backends
    /// (so all accept and refuse the same steps), and the graph left unfolded.
    pub fn new(step: &Step, specs: &[ParamSpec]) -> Result<InterpKernel, SpecialiseError> {
        let dt = check(step, specs)?;
        let mut roots = step.next.clone();
        roots.extend(step.spike);
        let (graph, roots) = step.graph.extract(&roots);
        let mut slots = vec![false; step.random_slots as usize];
        for (_, node) in graph.nodes() {
            match node.op {
                Op::Randn(k) if (k as usize) < slots.len() => slots[k as usize] = true,
                _ => {}
            }
        }
        let n = step.next.len();
        Ok(InterpKernel {
            graph,
            next: roots[..n].to_vec(),
            spike: step.spike.map(|_| roots[n]),
            specs: specs.to_vec(),
            slots,
            dt,
            cleared: Vec::new(),
        })
    }

    /// The same kernel, clearing the inputs `clear` in `StepKernel::step_clearing`.
    pub fn clearing(self, clear: &[usize]) -> InterpKernel {
        InterpKernel { cleared: clear.to_vec(), ..self }
    }
}

impl<T: Real> StepKernel<T> for InterpKernel {
    fn step(&self, a: StepArgs<'_, '_, T>) {
        let n = a.states.first().map(|s| s.len()).or(a.inputs.first().map(|s| s.len())).unwrap_or(a.spikes.len());
        let mut params = vec![0.0; self.specs.len()];
        let mut states = vec![0.0; a.states.len()];
        let mut inputs = vec![0.0; a.inputs.len()];
        let mut random = vec![0.0; self.slots.len()];
        for i in 0..n {
            let mut pn = 0;
            for (k, s) in self.specs.iter().enumerate() {
                params[k] = match s {
                    ParamSpec::Uniform(v) => *v,
                    ParamSpec::PerNeuron => {
                        pn += 1;
                        a.params[pn - 1][i].to_f64()
                    }
                };
            }
            for (k, s) in a.states.iter().enumerate() {
                states[k] = s[i].to_f64();
            }
            for (k, s) in a.inputs.iter().enumerate() {
                inputs[k] = s[i].to_f64();
            }
            for (k, normal) in self.slots.iter().enumerate() {
                random[k] = random_draw(a.random, a.random.offset + i as u64, k as u32, *normal);
            }
            let env = Env { params: &params, states: &states, inputs: &inputs, random: &random, t: a.t, dt: self.dt, ..Env::default() };
            let next = ir::eval(&self.graph, &self.next, &env).expect("kernel graph has every leaf");
            for (k, s) in a.states.iter_mut().enumerate() {
                s[i] = T::from_f64(next[k]);
            }
            if let Some(sp) = self.spike {
                // The spike of the stored (rounded) state, as the next step will see it.
                let stored: Vec<f64> = a.states.iter().map(|s| s[i].to_f64()).collect();
                let env = Env { states: &stored, ..env };
                a.spikes[i] = T::from_f64(ir::eval(&self.graph, &[sp], &env).expect("spike")[0]);
            }
        }
    }

    fn cleared_inputs(&self) -> &[usize] {
        &self.cleared
    }
}
