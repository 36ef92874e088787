//! ES-D-RTRL on the device: the gradient of a sequence loss for a [`GpuNetwork`], with
//! every per-step array (traces, learning signals, gradients) resident on the GPU.
//!
//! Per step, after the network's step (whose kernels also write D, Df and ds/dh as
//! states, as on the CPU):
//! 1. the readout's output (B x O) comes to the host, where the loss, its gradient and
//!    the evidence are computed in f64 by the CPU's code; the gradient goes back (B x O);
//! 2. learning signals from the top of the stack down: dL/ds of what the readout reads
//!    (cuBLAS: err W^T), l = dL/ds * ds/dh + dL/dh per hidden state (element-wise), and
//!    along each same-step link dL/ds_q += (sum_a l_a Df_a) W^T (element-wise, cuBLAS);
//! 3. the traces: the per-neuron ES-D-RTRL output trace eps_f and u = l . eps_f, and the
//!    trainable params' exact traces, are the generated trace steps
//!    ([`snnc_compiler::discretise::trace`]) as PTX, launched like a population step;
//!    eps_x = decay eps_x + x element-wise; the weights into a one-state readout with
//!    dynamics get their exact trace ([`prop::EXACT_TRACE1`]);
//! 4. the gradient products: g += (1 / c_t) eps_x^T u and g += x^T err (Linear readout)
//!    are GEMMs over the batch (k = B), param gradients a GEMM with a vector of ones.
//!
//! What a projection read at step t is what the CPU's `StepTrace::pre` holds: the live
//! buffer for sources stepped before its target (inputs, lower layers), a copy taken
//! before the step for the others (recurrent spikes s^{t-1}).
//!
//! The plan (which projection is traced how, what is refused) is the CPU's
//! ([`crate::learn::plan`]). Not on the GPU yet: BPTT and D-RTRL, readouts with dynamics
//! of more than one state, per-step records, updates within a sequence.

use super::device::{Buf, Device, Elem, Gemm, KArg, ModId, Module};
use super::{GpuFloat, GpuNetwork, dev_err};
use crate::learn::{Gradients, Method, Plan, Sequence, bias_correction, masked_step_loss, plan};
use crate::network::RuntimeError;
use ndarray::Array2;
use snnc_compiler::backend::ParamSpec;
use snnc_compiler::backend::ptx::propagate::{self as prop, BLOCK};
use snnc_compiler::backend::ptx::{Role, STEP_ENTRY, compile_step, launch_config};
use snnc_compiler::discretise::trace::{TraceKind, trace_step};
use snnc_compiler::sema::Source;

/// A generated trace step loaded on the device, with its argument buffers.
struct TraceLaunch {
    module: ModId,
    args: Vec<Buf>,
    /// Elements (B x N).
    len: usize,
}

/// One ES-D-RTRL (population, input) group: eps_f (K slices), u, and its members.
struct Group {
    trace: TraceLaunch,
    n: usize,
    eps_f: Vec<Buf>,
    u: Buf,
    members: Vec<Member>,
}

struct Member {
    /// Index among the plan's etrace projections.
    ei: usize,
    proj: usize,
    n_pre: usize,
    eps_x: Buf,
    grad: Buf,
}

/// The exact trace of a weight into a one-state readout with dynamics.
struct Exact {
    ei: usize,
    proj: usize,
    n_pre: usize,
    n: usize,
    tr: Buf,
    d: Buf,
    f: Buf,
    grad: Buf,
}

struct ParamTrace {
    trace: TraceLaunch,
    pop: usize,
    eps: Vec<Buf>,
    u: Buf,
    grad: Buf,
}

/// Device state of ES-D-RTRL gradients for one [`GpuNetwork`] (made for it by
/// [`GpuGradient::new`], and used only with it): buffers are allocated and trace kernels
/// loaded once, then [`GpuGradient::run`] computes the gradient of one batch.
pub struct GpuGradient<T> {
    plan: Plan,
    decay: f64,
    err: Buf,
    /// Per population with a step: dL/ds (B x N), dL/dh and l (K slices each).
    dlds: Vec<Option<Buf>>,
    dldh: Vec<Vec<Buf>>,
    l: Vec<Vec<Buf>>,
    /// sum_a l_a Df_a, for the largest population (B x N).
    mu: Buf,
    ones: Buf,
    /// Per projection: the copy of what it read, for sources that step after its target.
    pre: Vec<Option<Buf>>,
    groups: Vec<Group>,
    exact: Vec<Exact>,
    params: Vec<ParamTrace>,
    /// Per plain (Linear readout) weight: its gradient (n_pre x O).
    plain: Vec<(usize, usize, Buf)>,
    state_bytes: usize,
    y: Vec<T>,
    err_t: Vec<T>,
}

fn flat(len: usize) -> (u32, u32) {
    (launch_config(len as u64, BLOCK).0, 1)
}

impl<T: GpuFloat> GpuGradient<T> {
    /// Plans and allocates the gradient of `trainable` by `method` (ES-D-RTRL only) for
    /// `g`, whose host network was built with `Options::learning`.
    pub fn new<D: Device>(g: &mut GpuNetwork<T, D>, trainable: &[String], method: Method) -> Result<GpuGradient<T>, RuntimeError> {
        let Method::EsDRtrl { decay } = method else {
            return Err(RuntimeError::Build(format!(
                "{} is not on the GPU yet (ES-D-RTRL is); use the CPU backend for it",
                if method == Method::Bptt { "BPTT" } else { "D-RTRL" }
            )));
        };
        let plan = plan(&g.host, trainable)?;
        let net = &g.host;
        let batch = net.batch;
        let fe = Elem::float(T::PRECISION);
        let o = net.pops[plan.r].n;
        let n_of = |p: usize| net.pops[p].n;
        let k_of = |p: usize| net.pops[p].deriv.map_or(0, |d| d.k);
        let mut bytes = 0usize;
        let size = std::mem::size_of::<T>();
        let dev = &mut g.dev;
        let mut alloc = |len: usize, label: String| dev.alloc(fe, len, &label).map_err(dev_err);
        let err = alloc(batch * o, "learn.err".into())?;
        let mut dlds = vec![None; net.pops.len()];
        let mut dldh = vec![Vec::new(); net.pops.len()];
        let mut l = vec![Vec::new(); net.pops.len()];
        for &p in &plan.hidden {
            let name = &net.pops[p].name;
            dlds[p] = Some(alloc(batch * n_of(p), format!("learn.{name}.dlds"))?);
            for a in 0..k_of(p) {
                dldh[p].push(alloc(batch * n_of(p), format!("learn.{name}.dldh{a}"))?);
                l[p].push(alloc(batch * n_of(p), format!("learn.{name}.l{a}"))?);
            }
        }
        let mu = alloc(batch * plan.hidden.iter().map(|&p| n_of(p)).max().unwrap_or(1), "learn.mu".into())?;
        let ones = alloc(batch, "learn.ones".into())?;
        let mut pre = vec![None; net.projs.len()];
        let mut groups: Vec<Group> = Vec::new();
        let mut exact = Vec::new();
        let n_pre_of = |i: usize| net.dense_weights(i).map_or(0, |w| w.nrows());
        let mut needs_pre = |i: usize, alloc: &mut dyn FnMut(usize, String) -> Result<Buf, RuntimeError>| -> Result<(), RuntimeError> {
            let pr = &net.projs[i];
            if matches!(pr.from, Source::Pop(q) if q >= pr.to) && pre[i].is_none() {
                pre[i] = Some(alloc(batch * n_pre_of(i), format!("learn.{}.pre", pr.name))?);
            }
            Ok(())
        };
        for (ei, e) in plan.etrace.iter().enumerate() {
            let t = &e.target;
            needs_pre(t.index, &mut alloc)?;
            let n = n_of(t.pop);
            let grad = alloc(t.n_pre * n, format!("learn.{}.grad", e.name))?;
            let dl = net.pops[t.pop].deriv.expect("the plan checked learning");
            if t.pop == plan.r {
                // The readout's weights: their exact trace (as on the CPU, in every method).
                if dl.k != 1 {
                    return Err(RuntimeError::Build(format!(
                        "`{}`: weights into a readout with {} states are not trained on the GPU yet (one state, such as LeakyReadout, is)",
                        e.name, dl.k
                    )));
                }
                let states = &g.pops[t.pop].states;
                let tr = alloc(batch * t.n_pre * n, format!("learn.{}.trace", e.name))?;
                bytes += batch * t.n_pre * n * size;
                exact.push(Exact { ei, proj: t.index, n_pre: t.n_pre, n, tr, d: states[dl.d], f: states[dl.df + t.input], grad });
                continue;
            }
            let gi = match groups.iter().position(|gr| gr.members.first().is_some_and(|m| {
                let u = &plan.etrace[m.ei].target;
                u.pop == t.pop && u.input == t.input
            })) {
                Some(gi) => gi,
                None => {
                    let k = dl.k;
                    let eps_f: Vec<Buf> = (0..k).map(|a| alloc(batch * n, format!("learn.{}.eps_f{a}", e.name))).collect::<Result<_, _>>()?;
                    let u = alloc(batch * n, format!("learn.{}.u", e.name))?;
                    bytes += k * batch * n * size;
                    let mut states = eps_f.clone();
                    states.push(u);
                    groups.push(Group { trace: TraceLaunch { module: ModId(0), args: states, len: batch * n }, n, eps_f, u, members: Vec::new() });
                    groups.len() - 1
                }
            };
            let eps_x = alloc(batch * t.n_pre, format!("learn.{}.eps_x", e.name))?;
            bytes += batch * t.n_pre * size;
            groups[gi].members.push(Member { ei, proj: t.index, n_pre: t.n_pre, eps_x, grad });
        }
        let mut plain = Vec::new();
        for (i, name) in &plan.plain {
            needs_pre(*i, &mut alloc)?;
            plain.push((*i, n_pre_of(*i), alloc(n_pre_of(*i) * o, format!("learn.{name}.grad"))?));
        }
        let mut params = Vec::new();
        for q in &plan.params {
            let (n, k) = (n_of(q.pop), k_of(q.pop));
            let eps: Vec<Buf> = (0..k).map(|a| alloc(batch * n, format!("learn.{}.eps{a}", q.name))).collect::<Result<_, _>>()?;
            let u = alloc(batch * n, format!("learn.{}.u", q.name))?;
            bytes += k * batch * n * size;
            let grad = alloc(n, format!("learn.{}.grad", q.name))?;
            let mut states = eps.clone();
            states.push(u);
            params.push(ParamTrace { trace: TraceLaunch { module: ModId(0), args: states, len: batch * n }, pop: q.pop, eps, u, grad });
        }
        g.dev.upload(ones, T::host(&vec![T::from_f64(1.0); batch])).map_err(dev_err)?;
        // The generated trace steps.
        for gr in &mut groups {
            let t = &plan.etrace[gr.members[0].ei].target;
            let states = std::mem::take(&mut gr.trace.args);
            gr.trace = load_trace(g, &l, t.pop, TraceKind::EsOutput { input: t.input }, &[decay], states)?;
        }
        for (pt, q) in params.iter_mut().zip(&plan.params) {
            let states = std::mem::take(&mut pt.trace.args);
            pt.trace = load_trace(g, &l, q.pop, TraceKind::Param { col: q.col }, &[], states)?;
        }
        Ok(GpuGradient {
            y: vec![T::from_f64(0.0); batch * o],
            err_t: vec![T::from_f64(0.0); batch * o],
            plan,
            decay,
            err,
            dlds,
            dldh,
            l,
            mu,
            ones,
            pre,
            groups,
            exact,
            params,
            plain,
            state_bytes: bytes,
        })
    }

    /// The gradient of the summed loss over `data`, from the network's current state (as
    /// [`crate::learn::gradient_of`]; reset the network first for a fresh sequence).
    pub fn run<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, data: &mut dyn Sequence) -> Result<Gradients, RuntimeError> {
        let (steps, batch) = (data.steps(), data.batch());
        if batch != g.host.batch {
            return Err(RuntimeError::Input(format!("the data has batch {batch}, the network was built for {}", g.host.batch)));
        }
        let (in_sizes, n_target) = data.shape();
        let want: Vec<usize> = g.host.inputs.iter().map(|(_, s)| *s).collect();
        if in_sizes != want {
            return Err(RuntimeError::Input(format!("the data has inputs of sizes {in_sizes:?}, the network needs {want:?}")));
        }
        let r = self.plan.r;
        if n_target != g.host.pops[r].n {
            return Err(RuntimeError::Input(format!("target must have {} values per step (readout `{}`), got {n_target}", g.host.pops[r].n, g.host.pops[r].name)));
        }
        let bufs = self.groups.iter().flat_map(|gr| gr.eps_f.iter().chain(gr.members.iter().flat_map(|m| [&m.eps_x, &m.grad])));
        let bufs: Vec<Buf> = bufs
            .chain(self.exact.iter().flat_map(|e| [&e.tr, &e.grad]))
            .chain(self.params.iter().flat_map(|p| p.eps.iter().chain([&p.grad])))
            .chain(self.plain.iter().map(|(.., b)| b))
            .copied()
            .collect();
        for b in bufs {
            g.dev.zero(b).map_err(dev_err)?;
        }
        let mut ext64: Vec<Vec<f64>> = in_sizes.iter().map(|s| vec![0.0; s * batch]).collect();
        let mut ext: Vec<Vec<T>> = in_sizes.iter().map(|s| vec![T::from_f64(0.0); s * batch]).collect();
        let mut tgt = vec![0.0; n_target * batch];
        let mut mask = vec![1.0; batch];
        let mut y64 = vec![0.0; n_target * batch];
        let mut err64 = vec![0.0; n_target * batch];
        let mut evidence = Array2::<f64>::zeros((batch, n_target));
        let mut loss = 0.0;
        let kind = data.loss();
        let out = if self.plan.linear_readout { g.pops[r].output.expect("a Linear readout has an output") } else { g.pops[r].states[0] };
        for t in 0..steps {
            data.fill(t, &mut ext64, &mut tgt);
            data.mask(t, &mut mask);
            for (d, s) in ext.iter_mut().zip(&ext64) {
                d.iter_mut().zip(s).for_each(|(d, s)| *d = T::from_f64(*s));
            }
            // What the recurrent projections read: the sources as they are before the step.
            for (i, p) in self.pre.iter().enumerate() {
                if let Some(p) = *p {
                    let src = g.source(i).0;
                    let len = batch * self.plan_n_pre(g, i);
                    g.launch(prop::COPY, flat(len), BLOCK, &[KArg::Buf(src), KArg::Buf(p), KArg::U64(len as u64)])?;
                }
            }
            let refs: Vec<&[T]> = ext.iter().map(|v| v.as_slice()).collect();
            g.step(&refs)?;
            // The loss on the host.
            g.dev.download(out, T::host_mut(&mut self.y)).map_err(dev_err)?;
            y64.iter_mut().zip(&self.y).for_each(|(a, b)| *a = b.to_f64());
            err64.fill(0.0);
            loss += masked_step_loss(kind, &y64, &tgt, &mask, &mut evidence, Some(&mut err64));
            self.err_t.iter_mut().zip(&err64).for_each(|(a, b)| *a = T::from_f64(*b));
            g.dev.upload(self.err, T::host(&self.err_t)).map_err(dev_err)?;
            self.signals(g)?;
            self.traces(g, t)?;
        }
        // The gradients to the host, in the CPU's order: etrace, plain, params.
        let mut total: Vec<(String, Array2<f64>)> = Vec::new();
        let mut etrace: Vec<Option<Array2<f64>>> = vec![None; self.plan.etrace.len()];
        let members = self.groups.iter().flat_map(|gr| gr.members.iter().map(|m| (m.ei, m.n_pre, gr.n, m.grad)));
        let all: Vec<(usize, usize, usize, Buf)> = members.chain(self.exact.iter().map(|e| (e.ei, e.n_pre, e.n, e.grad))).collect();
        for (ei, rows, cols, b) in all {
            etrace[ei] = Some(download(g, b, rows, cols)?);
        }
        for (e, gm) in self.plan.etrace.iter().zip(etrace) {
            total.push((e.name.clone(), gm.expect("every etrace projection has a gradient")));
        }
        let o = g.host.pops[r].n;
        for ((_, name), &(_, n_pre, b)) in self.plan.plain.iter().zip(&self.plain) {
            total.push((name.clone(), download(g, b, n_pre, o)?));
        }
        for (q, pt) in self.plan.params.iter().zip(&self.params) {
            total.push((q.name.clone(), download(g, pt.grad, 1, g.host.pops[pt.pop].n)?));
        }
        Ok(Gradients { loss, total, per_step: Vec::new(), state_bytes: self.state_bytes, evidence, recorded: Vec::new() })
    }

    fn plan_n_pre<D>(&self, g: &GpuNetwork<T, D>, i: usize) -> usize {
        g.projs[i].n_pre
    }

    /// x^t of projection `i`: its copy, or the live source buffer.
    fn pre_of<D: Device>(&self, g: &GpuNetwork<T, D>, i: usize) -> Buf {
        self.pre[i].unwrap_or_else(|| g.source(i).0)
    }

    /// Learning signals, from the top of the stack down (the CPU's order).
    fn signals<D: Device>(&mut self, g: &mut GpuNetwork<T, D>) -> Result<(), RuntimeError> {
        let batch = g.host.batch;
        let r = self.plan.r;
        let o = g.host.pops[r].n;
        for b in self.dlds.iter().flatten().chain(self.dldh.iter().flatten()) {
            g.dev.zero(*b).map_err(dev_err)?;
        }
        for &(i, q, state) in &self.plan.into_readout {
            let dst = match state {
                Some(j) => self.dldh[q][j],
                None => self.dlds[q].expect("the readout reads a population with a step"),
            };
            let w = dense(g, i)?;
            // dst (B x n_q) += err (B x O) W^T
            g.dev.gemm(&times_transpose(dst, self.err, w, batch, g.host.pops[q].n, o)).map_err(dev_err)?;
            if let Some(&(_, n_pre, gb)) = self.plain.iter().find(|(pi, ..)| *pi == i) {
                let x = self.pre_of(g, i);
                g.dev.gemm(&outer(gb, x, self.err, batch, n_pre, o, 1.0)).map_err(dev_err)?;
            }
        }
        if !self.plan.linear_readout {
            let len = batch * o;
            let dst = self.dlds[r].expect("a readout with dynamics has a step");
            g.launch(prop::COPY, flat(len), BLOCK, &[KArg::Buf(self.err), KArg::Buf(dst), KArg::U64(len as u64)])?;
        }
        for &p in self.plan.hidden.iter().rev() {
            let dl = g.host.pops[p].deriv.expect("planned");
            let len = batch * g.host.pops[p].n;
            let dlds = self.dlds[p].expect("planned");
            for a in 0..dl.k {
                let ds = g.pops[p].states[dl.ds + a];
                let args = [KArg::Buf(dlds), KArg::Buf(ds), KArg::Buf(self.dldh[p][a]), KArg::Buf(self.l[p][a]), KArg::U64(len as u64)];
                g.launch(prop::MUL_ADD, flat(len), BLOCK, &args)?;
            }
            for li in 0..self.plan.links.len() {
                let lk = &self.plan.links[li];
                if lk.to != p || !lk.now {
                    continue;
                }
                let (proj, from, input, state) = (lk.proj, lk.from, lk.input, lk.state);
                g.dev.zero(self.mu).map_err(dev_err)?;
                for a in 0..dl.k {
                    let df = g.pops[p].states[dl.df + a * dl.n_in + input];
                    g.launch(prop::MUL_ACC, flat(len), BLOCK, &[KArg::Buf(self.l[p][a]), KArg::Buf(df), KArg::Buf(self.mu), KArg::U64(len as u64)])?;
                }
                let dst = match state {
                    Some(j) => self.dldh[from][j],
                    None => self.dlds[from].expect("a link's source has a step"),
                };
                let w = dense(g, proj)?;
                g.dev.gemm(&times_transpose(dst, self.mu, w, batch, g.host.pops[from].n, g.host.pops[p].n)).map_err(dev_err)?;
            }
        }
        Ok(())
    }

    /// The traces and the gradient products of step `t`.
    fn traces<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, t: usize) -> Result<(), RuntimeError> {
        let batch = g.host.batch;
        let r = self.plan.r;
        for e in &self.exact {
            let x = self.pre_of(g, e.proj);
            let args = [
                KArg::Buf(e.tr),
                KArg::Buf(e.d),
                KArg::Buf(e.f),
                KArg::Buf(x),
                KArg::Buf(self.l[r][0]),
                KArg::Buf(e.grad),
                KArg::U64(batch as u64),
                KArg::U64(e.n_pre as u64),
                KArg::U64(e.n as u64),
            ];
            g.launch(prop::EXACT_TRACE1, flat(e.n_pre * e.n), BLOCK, &args)?;
        }
        for pt in &self.params {
            launch_trace(g, &pt.trace)?;
            let n = g.host.pops[pt.pop].n;
            // grad (1 x N) += ones^T u: the sum over the batch.
            g.dev.gemm(&outer(pt.grad, self.ones, pt.u, batch, 1, n, 1.0)).map_err(dev_err)?;
        }
        let inv_c = 1.0 / bias_correction(self.decay, t);
        let decay_bits = T::from_f64(self.decay).bits();
        for gr in &self.groups {
            launch_trace(g, &gr.trace)?;
            for m in &gr.members {
                let x = self.pre_of(g, m.proj);
                let len = batch * m.n_pre;
                g.launch(prop::SCALE_ADD, flat(len), BLOCK, &[KArg::Buf(m.eps_x), KArg::Buf(x), KArg::U64(len as u64), KArg::U64(decay_bits)])?;
                g.dev.gemm(&outer(m.grad, m.eps_x, gr.u, batch, m.n_pre, gr.n, inv_c)).map_err(dev_err)?;
            }
        }
        Ok(())
    }
}

/// Compiles and loads trace step `kind` of population `p`, its states `states` (the trace
/// slices, then u), its inputs D and the driving column (the population's states) and l.
fn load_trace<T: GpuFloat, D: Device>(
    g: &mut GpuNetwork<T, D>,
    l: &[Vec<Buf>],
    p: usize,
    kind: TraceKind,
    params: &[f64],
    states: Vec<Buf>,
) -> Result<TraceLaunch, RuntimeError> {
    let pop = &g.host.pops[p];
    let (Some(step), Some(dl)) = (&pop.step, pop.deriv) else {
        return Err(RuntimeError::Build(format!("population `{}` was not built for learning (Options::learning)", pop.name)));
    };
    let layout = trace_step(step, &dl, kind);
    let specs: Vec<ParamSpec> = params.iter().map(|v| ParamSpec::Uniform(*v)).collect();
    let target = g.dev.target();
    let k = compile_step(&layout.step, &specs, g.host.dt, T::PRECISION, target).map_err(|e| RuntimeError::Build(format!("population `{}`: trace step: {e}", pop.name)))?;
    let pop_states = &g.pops[p].states;
    let mut inputs: Vec<Buf> = layout.d.iter().map(|(a, c)| pop_states[dl.d + a * dl.k + c]).collect();
    inputs.extend(layout.drive_states.iter().map(|&s| pop_states[s]));
    inputs.extend(&l[p]);
    let mut args = Vec::new();
    for a in &k.args {
        args.push(match a.role {
            Role::State(i) if i < states.len() => states[i],
            Role::Input(i) if i < inputs.len() => inputs[i],
            role => return Err(RuntimeError::Build(format!("population `{}`: trace step argument {role:?} is not supported on the GPU", pop.name))),
        });
    }
    let len = g.host.batch * pop.n;
    let module = g.dev.load(&Module::Step(Box::new(k))).map_err(dev_err)?;
    Ok(TraceLaunch { module, args, len })
}

fn launch_trace<T: GpuFloat, D: Device>(g: &mut GpuNetwork<T, D>, tr: &TraceLaunch) -> Result<(), RuntimeError> {
    let mut args: Vec<KArg> = tr.args.iter().map(|b| KArg::Buf(*b)).collect();
    args.extend([KArg::U64(tr.len as u64), KArg::F64(0.0), KArg::U64(0), KArg::U64(0), KArg::U64(0)]);
    g.dev.launch(tr.module, STEP_ENTRY, flat(tr.len), BLOCK, &args).map_err(dev_err)
}

/// The device buffer of dense projection `i`'s weights (n_pre x n_post, row-major).
fn dense<T, D>(g: &GpuNetwork<T, D>, i: usize) -> Result<Buf, RuntimeError> {
    match g.projs[i].weights {
        super::DevWeights::Dense(w) => Ok(w),
        _ => Err(RuntimeError::Build(format!("`{}`: gradients need dense weights", g.host.projs[i].name))),
    }
}

/// `dst (B x n_from) += x (B x n_to) W^T`, W row-major n_from x n_to. Column-major:
/// dst^T (n_from x B) += W' x^T, where W's memory is W^T column-major (transposed back).
fn times_transpose(dst: Buf, x: Buf, w: Buf, batch: usize, n_from: usize, n_to: usize) -> Gemm {
    Gemm { m: n_from, n: batch, k: n_to, alpha: 1.0, a: w, lda: n_to, ta: true, b: x, ldb: n_to, tb: false, beta: 1.0, c: dst, ldc: n_from }
}

/// `g (I x O) += alpha x^T c`, x row-major B x I, c row-major B x O. Column-major:
/// g^T (O x I) += alpha c^T x, c's memory being c^T and x's memory x^T (transposed back).
fn outer(gr: Buf, x: Buf, c: Buf, batch: usize, n_pre: usize, n_out: usize, alpha: f64) -> Gemm {
    Gemm { m: n_out, n: n_pre, k: batch, alpha, a: c, lda: n_out, ta: false, b: x, ldb: n_pre, tb: true, beta: 1.0, c: gr, ldc: n_out }
}

fn download<T: GpuFloat, D: Device>(g: &mut GpuNetwork<T, D>, b: Buf, rows: usize, cols: usize) -> Result<Array2<f64>, RuntimeError> {
    let mut v = vec![T::from_f64(0.0); rows * cols];
    g.dev.download(b, T::host_mut(&mut v)).map_err(dev_err)?;
    Ok(Array2::from_shape_vec((rows, cols), v.iter().map(|x| x.to_f64()).collect()).expect("shape"))
}
