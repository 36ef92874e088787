//! Gradients of a sequence loss for a [`GpuNetwork`] — ES-D-RTRL, D-RTRL and BPTT, as on
//! the CPU ([`crate::learn`]) — with every per-step array (traces, learning signals,
//! tapes, gradients) resident on the GPU.
//!
//! Per step, after the network's step (whose kernels also write D, Df and ds/dh as
//! states, as on the CPU):
//! 1. the loss of the readout's output (B x O), its gradient and the evidence, on the
//!    device in f64 and in the CPU's order ([`prop::LOSS_MSE`], [`prop::LOSS_CE`]);
//! 2. learning signals from the top of the stack down: dL/ds of what the readout reads
//!    (cuBLAS: err W^T), l = dL/ds * ds/dh + dL/dh per hidden state (element-wise), and,
//!    for the online methods, along each same-step link dL/ds_q += (sum_a l_a Df_a) W^T;
//! 3. the traces (online methods): the ES-D-RTRL output trace eps_f with u = l . eps_f,
//!    and the trainable params' exact traces, are the compiler's generated trace steps
//!    ([`snnc_compiler::discretise::trace`]) as PTX, launched like a population step;
//!    eps_x = decay eps_x + x element-wise; exact traces (D-RTRL, and the weights into a
//!    readout with dynamics in every online method) per weight ([`prop::EXACT_TRACE`]);
//!    then the gradient products g += (1 / c_t) eps_x^T u, one GEMM per projection and
//!    contraction window (k = steps x batch); or (BPTT) the step is taped on the device
//!    ([`bptt`]) for the backward pass;
//! 4. g += x^T err for a `Linear` readout's weights: a GEMM per step, or with ES-D-RTRL
//!    one per contraction window, as its other products ([`ReadoutWindow`]).
//!
//! ES-D-RTRL's eps_x of a projection that reads an external input or a recurrent
//! source is updated before the network's step, reading the source as it then is: the
//! copy of s^{t-1} such a projection's other learners read (below) is not needed.
//!
//! What a projection read at step t is what the CPU's `StepTrace::pre` holds: the live
//! buffer for sources stepped before its target (inputs, lower layers), a copy taken
//! before the step for the others (recurrent spikes s^{t-1}); through a delay of d steps
//! the learners read what arrives at t, kept in a ring of d + 1 copies.
//!
//! Sparse projections (and `conv`/`pool`, sparse synapses whose weights the host writes
//! from a kernel) have their gradient at the synapses, adapters a stacked (I + O) x R one
//! ([`sparse`]): the GEMMs above become per-synapse kernels or the adapter's GEMMs there.
//!
//! The plan (which projection is traced how, what is refused) is the CPU's
//! ([`crate::learn::plan`]). Not on the GPU: per-step records, updates within a sequence.

mod bptt;
mod sparse;
mod window;

use sparse::Pairs;

use super::device::{Buf, Device, Elem, Gemm, GraphId, KArg, ModId, Module};
use crate::learn::Loss;
use std::collections::HashMap;
use super::accumulate::Accumulators;
use super::{Float, GpuNetwork, dev_err, step_scalars};
use crate::engine::Learner;
use crate::learn::{GradShape, Gradients, Method, Online, Plan, Sequence, bias_correction, check_data, check_online_reach, check_target, plan};
use crate::error::RuntimeError;
use crate::network::Network;
use ndarray::Array2;
use snnc_compiler::backend::ParamSpec;
use snnc_compiler::backend::ptx::propagate::{self as prop, BLOCK};
use snnc_compiler::backend::ptx::{Role, STEP_ENTRY, compile_step, launch_config};
use snnc_compiler::discretise::trace::{TraceKind, trace_step};
use snnc_compiler::sema::Source;

/// A generated step (trace or adjoint) loaded on the device, with its buffers.
struct Launch {
    module: ModId,
    args: Vec<Buf>,
    /// Elements (B x N).
    len: usize,
}

/// One ES-D-RTRL (population, input) group: eps_f (K slices), u, and its members.
struct Group {
    trace: Launch,
    /// The trace step per slot of the contraction window: u written into `u_win`'s slot.
    traces: Vec<Launch>,
    n: usize,
    eps_f: Vec<Buf>,
    u: Buf,
    /// u of each step of the contraction window (slot x B x N).
    u_win: Buf,
    members: Vec<Member>,
}

struct Member {
    /// Index among the plan's etrace projections.
    ei: usize,
    proj: usize,
    /// Its eps_x is updated before the network's step (it reads an external input, or a
    /// source that is its target or steps after it, and has no delay): what it reads is
    /// then in the source's own buffer, with no copy (`pre`) taken.
    early: bool,
    n_pre: usize,
    eps_x: Buf,
    /// (1 / c_t) eps_x of each step of the contraction window (slot x B x I), and its
    /// per-slot views.
    x_win: Buf,
    x_views: Vec<Buf>,
    grad: Buf,
}

/// ES-D-RTRL: the `Linear` readout's weight products of a contraction window, one GEMM
/// per weight instead of one per step: each step's error (the loss kernel writes it into
/// its slot) and each plain weight's input (copied into its slot).
struct ReadoutWindow {
    /// slot x B x O, and its per-slot views.
    err: Buf,
    err_views: Vec<Buf>,
    /// Per plain weight (`GpuGradient::plain`'s order): slot x B x I, and its views.
    x: Vec<(Buf, Vec<Buf>)>,
}

/// ES-D-RTRL's products of a window are one GEMM when its slices take at most this
/// many bytes (the window shortens otherwise).
const CONTRACTION_BYTES: usize = 256 << 20;

/// The exact traces into one (population, input): they share D, the Df column and l,
/// packed into planes for [`prop::EXACT_TRACE`] when K > 1 (with K = 1 the population's
/// own buffers are the planes).
struct ExactGroup {
    pop: usize,
    input: usize,
    k: usize,
    n: usize,
    /// (D planes, Df planes, l planes): packed copies when K > 1.
    packed: Option<(Buf, Buf, Buf)>,
    members: Vec<ExactMember>,
}

struct ExactMember {
    ei: usize,
    proj: usize,
    n_pre: usize,
    /// The trace (B x I x O x K); two when K > 1 (read one, write the other).
    tr: [Buf; 2],
    grad: Buf,
}

struct ParamTrace {
    trace: Launch,
    pop: usize,
    eps: Vec<Buf>,
    u: Buf,
    grad: Buf,
}

/// Device state of the gradients of one [`GpuNetwork`] (made for it by
/// [`GpuGradient::new`], and used only with it): buffers are allocated and generated
/// kernels loaded once, then [`GpuGradient::run`] computes the gradient of one batch.
pub struct GpuGradient<T> {
    /// The network it was made for ([`GpuNetwork`]'s identity).
    net: u64,
    plan: Plan,
    method: Method,
    /// Per etrace projection (the plan's order): where its gradient lives.
    pairs: Vec<Pairs>,
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
    /// Per trained projection with a delay of d steps: what it read in each of the last
    /// d + 1 steps (slot t mod (d + 1)), so that step t's learners read what arrives in
    /// it, read at t - d (zeros before; the CPU's `PreDelay`).
    delayed: Vec<Option<Vec<Buf>>>,
    groups: Vec<Group>,
    exact: Vec<ExactGroup>,
    params: Vec<ParamTrace>,
    /// Per plain (Linear readout) weight: its gradient (n_pre x O).
    plain: Vec<(usize, usize, Buf)>,
    /// BPTT: the tape and the backward pass, with one gradient per etrace projection.
    bptt: Option<(bptt::Tape, Vec<Buf>, Vec<Buf>)>,
    /// Bytes of the traces (the online methods' state).
    trace_bytes: usize,
    /// A window of the sequence on the device: inputs, targets, masks, the loss.
    window: window::Window<T>,
    /// dL/ds and dL/dh, summed into per step without clearing.
    acc: Accumulators,
    use_graphs: bool,
    graphs_off: Option<String>,
    /// ES-D-RTRL: steps per contraction (one GEMM per projection), and the next slot.
    es_len: usize,
    es_slot: usize,
    readout_win: Option<ReadoutWindow>,
    /// Recorded windows (see [`GpuGradient::replay_window`]).
    graphs: HashMap<WindowKey, Recorded>,
}

/// At most this many recorded windows per gradient (then windows run call by call).
const MAX_GRAPHS: usize = 64;

/// What decides the calls of a window (see [`GpuGradient::replay_window`]).
#[derive(Clone, PartialEq, Eq, Hash)]
struct WindowKey {
    t0: usize,
    n: usize,
    /// The network's `batch_offset` (the noise kernels' element offset is recorded too).
    offset: usize,
    net: (u64, usize, Vec<(usize, u8)>),
    /// The network's buffers and kernels a recording holds (`GpuNetwork::generation`).
    generation: u64,
    acc: Vec<(usize, u8)>,
    tr: Vec<usize>,
}

/// A recorded window and the host state it leaves.
struct Recorded {
    graph: GraphId,
    net_acc: Vec<(usize, u8)>,
    acc: Vec<(usize, u8)>,
    tr: Vec<usize>,
}

fn flat(len: usize) -> (u32, u32) {
    (launch_config(len as u64, BLOCK).0, 1)
}

impl<T: Float> GpuGradient<T> {
    /// Plans and allocates the gradient of `trainable` by `method` for `g`, whose host
    /// network was built with `Options::learning`.
    pub fn new<D: Device>(g: &mut GpuNetwork<T, D>, trainable: &[String], method: Method) -> Result<GpuGradient<T>, RuntimeError> {
        let plan = plan(&g.host, trainable)?;
        refuse_on_device(&g.host, &plan, method)?;
        // An adapter's products run over up to a contraction window of rows.
        let rows = g.window().max(1) * g.host.batch;
        let pairs: Vec<Pairs> = plan.etrace.iter().map(|e| Pairs::of(g, e.target.index, &e.target.shape, rows)).collect::<Result<_, _>>()?;
        let online = method != Method::Bptt;
        if online {
            check_online_reach(&g.host, &plan)?;
        }
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
        let n_pre_of = |i: usize| net.source_size(i);
        let mut needs_pre = |i: usize, alloc: &mut dyn FnMut(usize, String) -> Result<Buf, RuntimeError>| -> Result<(), RuntimeError> {
            let pr = &net.projs[i];
            if matches!(pr.from, Source::Pop(q) if q >= pr.to) && pre[i].is_none() {
                pre[i] = Some(alloc(batch * n_pre_of(i), format!("learn.{}.pre", pr.name))?);
            }
            Ok(())
        };
        let mut groups: Vec<Group> = Vec::new();
        let mut exact: Vec<ExactGroup> = Vec::new();
        let mut bptt_grads = Vec::new();
        let mut delayed: Vec<Option<Vec<Buf>>> = vec![None; net.projs.len()];
        for (ei, e) in plan.etrace.iter().enumerate() {
            let t = &e.target;
            // An ES-D-RTRL output-trace member (below) without a delay that reads an
            // external input or a source stepped after its target reads before the
            // step: no copy (`Member::early`).
            let before = match net.projs[t.index].from {
                Source::Input(_) => true,
                Source::Pop(q) => q >= net.projs[t.index].to,
            };
            let early = online && method != Method::DRtrl && t.pop != plan.r && t.delay == 0 && before;
            if !early {
                needs_pre(t.index, &mut alloc)?;
            }
            if t.delay > 0 && delayed[t.index].is_none() {
                let ring = (0..=t.delay).map(|s| alloc(batch * t.n_pre, format!("learn.{}.pre_delay{s}", e.name))).collect::<Result<Vec<_>, _>>()?;
                bytes += (t.delay + 1) * batch * t.n_pre * size;
                delayed[t.index] = Some(ring);
            }
            let n = n_of(t.pop);
            // I x O, or one per synapse of a sparse projection.
            let grad = match pairs[ei] {
                Pairs::LowRank { grad, .. } => grad,
                _ => alloc(t.shape.pairs(), format!("learn.{}.grad", e.name))?,
            };
            let k = k_of(t.pop);
            if !online {
                bptt_grads.push(grad);
                continue;
            }
            if method == Method::DRtrl || t.pop == plan.r {
                // Exact traces: D-RTRL, and the readout's weights in every online method.
                let gi = match exact.iter().position(|x| x.pop == t.pop && x.input == t.input) {
                    Some(gi) => gi,
                    None => {
                        let packed = if k > 1 {
                            let plane = batch * n;
                            Some((alloc(k * k * plane, format!("learn.{}.D", e.name))?, alloc(k * plane, format!("learn.{}.Df", e.name))?, alloc(k * plane, format!("learn.{}.l", e.name))?))
                        } else {
                            None
                        };
                        exact.push(ExactGroup { pop: t.pop, input: t.input, k, n, packed, members: Vec::new() });
                        exact.len() - 1
                    }
                };
                let len = batch * t.shape.pairs() * k;
                let tr0 = alloc(len, format!("learn.{}.trace", e.name))?;
                let tr1 = if k > 1 { alloc(len, format!("learn.{}.trace'", e.name))? } else { tr0 };
                bytes += len * size * if k > 1 { 2 } else { 1 };
                exact[gi].members.push(ExactMember { ei, proj: t.index, n_pre: t.n_pre, tr: [tr0, tr1], grad });
                continue;
            }
            let gi = match groups.iter().position(|gr| {
                let u = &plan.etrace[gr.members[0].ei].target;
                u.pop == t.pop && u.input == t.input
            }) {
                Some(gi) => gi,
                None => {
                    let eps_f: Vec<Buf> = (0..k).map(|a| alloc(batch * n, format!("learn.{}.eps_f{a}", e.name))).collect::<Result<_, _>>()?;
                    let u = alloc(batch * n, format!("learn.{}.u", e.name))?;
                    bytes += k * batch * n * size;
                    let mut states = eps_f.clone();
                    states.push(u);
                    let trace = Launch { module: ModId(0), args: states, len: batch * n };
                    groups.push(Group { trace, traces: Vec::new(), n, eps_f, u, u_win: u, members: Vec::new() });
                    groups.len() - 1
                }
            };
            let eps_x = alloc(batch * t.n_pre, format!("learn.{}.eps_x", e.name))?;
            bytes += batch * t.n_pre * size;
            groups[gi].members.push(Member { ei, proj: t.index, early, n_pre: t.n_pre, eps_x, x_win: eps_x, x_views: Vec::new(), grad });
        }
        let mut plain = Vec::new();
        for (i, name) in &plan.plain {
            needs_pre(*i, &mut alloc)?;
            plain.push((*i, n_pre_of(*i), alloc(n_pre_of(*i) * o, format!("learn.{name}.grad"))?));
        }
        let mut params = Vec::new();
        let mut bptt_param_grads = Vec::new();
        for q in &plan.params {
            let (n, k) = (n_of(q.pop), k_of(q.pop));
            let grad = alloc(n, format!("learn.{}.grad", q.name))?;
            if !online {
                bptt_param_grads.push(grad);
                continue;
            }
            let eps: Vec<Buf> = (0..k).map(|a| alloc(batch * n, format!("learn.{}.eps{a}", q.name))).collect::<Result<_, _>>()?;
            let u = alloc(batch * n, format!("learn.{}.u", q.name))?;
            bytes += k * batch * n * size;
            let mut states = eps.clone();
            states.push(u);
            params.push(ParamTrace { trace: Launch { module: ModId(0), args: states, len: batch * n }, pop: q.pop, eps, u, grad });
        }
        g.dev.upload(ones, T::host(&vec![T::from_f64(1.0); batch])).map_err(dev_err)?;
        // The generated trace steps.
        if let Method::EsDRtrl { decay } = method {
            for gr in &mut groups {
                let t = &plan.etrace[gr.members[0].ei].target;
                let states = std::mem::take(&mut gr.trace.args);
                gr.trace = load_trace(g, &l, t.pop, TraceKind::EsOutput { input: t.input }, &[decay], states)?;
            }
        }
        for (pt, q) in params.iter_mut().zip(&plan.params) {
            let states = std::mem::take(&mut pt.trace.args);
            pt.trace = load_trace(g, &l, q.pop, TraceKind::Param { col: q.col }, &[], states)?;
        }
        let es = matches!(method, Method::EsDRtrl { .. });
        let readout_slot = batch * size * (o + plain.iter().map(|&(_, n_pre, _)| n_pre).sum::<usize>());
        let es_len = if es { contraction_window(g, &mut groups, if plain.is_empty() { 0 } else { readout_slot }, &mut bytes)? } else { 1 };
        let readout_win = if es && !plain.is_empty() { Some(readout_window(g, &plain, o, es_len, &mut bytes)?) } else { None };
        let bptt = if online { None } else { Some((bptt::Tape::new(g, &plan)?, bptt_grads, bptt_param_grads)) };
        let window = window::Window::new(g, plan.r)?;
        let mut acc = Accumulators::default();
        acc.track(dlds.iter().flatten().chain(dldh.iter().flatten()).copied());
        Ok(GpuGradient {
            net: g.id,
            window,
            acc,
            use_graphs: true,
            es_len,
            es_slot: 0,
            readout_win,
            graphs_off: None,
            graphs: HashMap::new(),
            plan,
            method,
            pairs,
            err,
            dlds,
            dldh,
            l,
            mu,
            ones,
            pre,
            delayed,
            groups,
            exact,
            params,
            plain,
            bptt,
            trace_bytes: bytes,
        })
    }

    /// The gradient of the summed loss over `data`, from the network's current state (as
    /// [`crate::learn::gradient_of`]; reset the network first for a fresh sequence).
    pub fn run<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, data: &mut dyn Sequence) -> Result<Gradients, RuntimeError> {
        self.run_online(g, data, None)
    }

    /// [`GpuGradient::run`], optionally [`Online`] (as [`crate::learn::gradient_online`]):
    /// every `every` steps the gradient so far comes to the host for `update`, whose
    /// weights go to the device at once while the traces carry on; the returned `total`
    /// is what accumulated after the last update.
    pub fn run_online<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, data: &mut dyn Sequence, mut online: Option<Online>) -> Result<Gradients, RuntimeError> {
        if g.id != self.net {
            return Err(RuntimeError::Input("this GPU gradient state was made for another network (GpuGradient::new with this one)".into()));
        }
        let steps = data.steps();
        check_data(&g.host, data, self.bptt.is_some(), online.as_ref())?;
        // A part of a larger batch (an MPI rank's share) draws what the whole one would
        // for its elements, as on the CPU.
        g.host.batch_offset = data.batch_offset();
        let r = self.plan.r;
        check_target(&g.host, r, data)?;
        let mut bufs: Vec<Buf> = Vec::new();
        for gr in &self.groups {
            bufs.extend(&gr.eps_f);
            bufs.extend(gr.members.iter().flat_map(|m| [m.eps_x, m.grad]));
        }
        bufs.extend(self.exact.iter().flat_map(|x| x.members.iter().flat_map(|m| [m.tr[0], m.tr[1], m.grad])));
        bufs.extend(self.params.iter().flat_map(|p| p.eps.iter().copied().chain([p.grad])));
        bufs.extend(self.plain.iter().map(|(.., b)| *b));
        if let Some((tape, gs, ps)) = &mut self.bptt {
            tape.clear();
            bufs.extend(gs.iter().chain(ps.iter()));
        }
        bufs.extend(self.dlds.iter().flatten().chain(self.dldh.iter().flatten()));
        // Nothing has arrived through a delayed projection when a sequence starts.
        bufs.extend(self.delayed.iter().flatten().flatten());
        for b in &bufs {
            g.dev.zero(*b).map_err(dev_err)?;
        }
        self.acc.cleared();
        let kind = data.loss();
        self.window.start(g)?;
        // Windows replay as recorded graphs where nothing in them needs the host: no
        // updates within the sequence, no BPTT tape (which grows on the host).
        let replayable = self.use_graphs && online.is_none() && self.bptt.is_none();
        let mut t0 = 0;
        while t0 < steps {
            let n = self.window.len.min(steps - t0);
            // A window's inputs (and targets) go to the device at once.
            self.window.load(g, data, t0, n)?;
            if replayable && g.window_state().1 == 0 {
                self.replay_window(g, kind, t0, n)?;
            } else {
                for t in t0..t0 + n {
                    self.step(g, kind, t, t - t0)?;
                    // The window's one read-back, after its last step's learning work.
                    if g.window_full() {
                        g.flush()?;
                    }
                    if let Some(on) = online.as_mut().filter(|on| (t + 1) % on.every == 0 && t + 1 < steps) {
                        // A non-finite state so far is reported before its gradient is used.
                        g.flush()?;
                        self.contract(g)?;
                        let so_far = self.gradients(g)?;
                        for (name, w) in (on.update)(&so_far)? {
                            g.set_trainable(&name, w.mapv(T::from_f64))?;
                        }
                        for b in self.gradient_bufs() {
                            g.dev.zero(b).map_err(dev_err)?;
                        }
                    }
                }
                self.contract(g)?;
            }
            t0 += n;
        }
        if let Some((tape, gs, ps)) = &mut self.bptt {
            tape.backward(g, &self.plan, &self.pairs, self.ones, gs, ps)?;
        }
        // The last window's status: spike counts current, a non-finite state reported.
        g.flush()?;
        let total = self.gradients(g)?;
        let (loss, evidence) = self.window.finish(g)?;
        let state_bytes = self.bptt.as_ref().map_or(self.trace_bytes, |(tape, ..)| tape.bytes());
        Ok(Gradients { loss, total, per_step: Vec::new(), state_bytes, evidence, recorded: Vec::new() })
    }

    /// Step `t` of the sequence (slot `slot` of its window): the network's step, the
    /// loss, the learning signals, the traces or the tape. No host transfer.
    fn step<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, kind: Loss, t: usize, slot: usize) -> Result<(), RuntimeError> {
        let batch = g.host.batch;
        // What the recurrent projections read: the sources as they are before the step.
        for (i, p) in self.pre.iter().enumerate() {
            if let Some(p) = *p {
                let src = g.source(i).0;
                let len = batch * g.projs[i].n_pre;
                g.launch(prop::COPY, flat(len), BLOCK, &[KArg::Buf(src), KArg::Buf(p), KArg::U64(len as u64)])?;
            }
        }
        let inputs = self.window.inputs(slot).to_vec();
        self.eps_x_before_step(g, t, &inputs)?;
        g.step_deferred(&inputs)?;
        // What the delayed projections read this step joins their rings.
        for (i, ring) in self.delayed.iter().enumerate() {
            if let Some(ring) = ring {
                let len = batch * g.projs[i].n_pre;
                let src = pre_of(&self.pre, g, i);
                g.launch(prop::COPY, flat(len), BLOCK, &[KArg::Buf(src), KArg::Buf(ring[t % ring.len()]), KArg::U64(len as u64)])?;
            }
        }
        // The error of this step: into the readout window's slot where it has one.
        let err = self.readout_win.as_ref().map_or(self.err, |w| w.err_views[self.es_slot]);
        self.window.loss(g, kind, self.plan.r, slot, err)?;
        self.signals(g, err)?;
        match &mut self.bptt {
            Some((tape, ..)) => {
                let pre: Vec<Buf> = self.plan.etrace.iter().map(|e| arriving(&self.pre, &self.delayed, g, e.target.index, t)).collect();
                tape.push(g, &self.plan, &self.l, &pre)?;
            }
            None => self.traces(g, t)?,
        }
        Ok(())
    }

    /// Steps `t0..t0 + n` (a window), ending with its ES-D-RTRL contraction.
    fn window_steps<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, kind: Loss, t0: usize, n: usize) -> Result<(), RuntimeError> {
        for t in t0..t0 + n {
            self.step(g, kind, t, t - t0)?;
        }
        self.contract(g)
    }

    /// Steps `t0..t0 + n` (a window) as one recorded graph: recorded the first time the
    /// window starts from this state (sequence position, step index, what the host knows
    /// of the accumulation buffers and exact traces), replayed after that, one host
    /// call instead of tens per step. Then the window's status read-back.
    fn replay_window<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, kind: Loss, t0: usize, n: usize) -> Result<(), RuntimeError> {
        // Not on top of a step a failure left half made.
        g.check_whole()?;
        let key = WindowKey { t0, n, offset: g.host.batch_offset, net: g.window_state(), generation: g.generation(), acc: self.acc.snapshot(), tr: self.exact_parity() };
        if let Some(rec) = self.graphs.get(&key) {
            g.dev.replay(rec.graph).map_err(dev_err)?;
            g.fast_forward(n, &rec.net_acc);
            self.acc.restore(&rec.acc);
            let tr = rec.tr.clone();
            self.set_exact_parity(&tr);
        } else if !self.record_window(g, kind, &key)? {
            self.window_steps(g, kind, t0, n)?;
        }
        if g.window_full() {
            g.flush()?;
        }
        Ok(())
    }

    /// Records the window `key` names as a graph (its calls are made into the capture,
    /// which advances the host's view as running them would). False when the device
    /// cannot record it: the host's view is put back, recording is switched off for this
    /// gradient (the reason kept: [`GpuGradient::graphs_off`]), and the caller runs the
    /// window call by call, with the same results. True: the window has run (recorded,
    /// then replayed once), kept for later batches up to [`MAX_GRAPHS`] recordings.
    fn record_window<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, kind: Loss, key: &WindowKey) -> Result<bool, RuntimeError> {
        let (t0, n) = (key.t0, key.n);
        let recorded = g.dev.begin_capture().map_err(dev_err).and_then(|()| {
            let steps = self.window_steps(g, kind, t0, n);
            // A capture records without running: end it either way.
            let graph = g.dev.end_capture().map_err(dev_err);
            steps.and(graph)
        });
        let graph = match recorded.and_then(|graph| g.dev.replay(graph).map_err(dev_err).map(|()| graph)) {
            Ok(graph) => graph,
            Err(e) => {
                g.restore_window_state(&key.net);
                self.acc.restore(&key.acc);
                self.set_exact_parity(&key.tr);
                // Windows start with an empty contraction window.
                self.es_slot = 0;
                self.use_graphs = false;
                self.graphs_off = Some(e.to_string());
                return Ok(false);
            }
        };
        let rec = Recorded { graph, net_acc: g.window_state().2, acc: self.acc.snapshot(), tr: self.exact_parity() };
        if self.graphs.len() < MAX_GRAPHS {
            self.graphs.insert(key.clone(), rec);
        }
        Ok(true)
    }

    /// Why windows stopped being recorded as graphs, if the device refused one.
    pub fn graphs_off(&self) -> Option<&str> {
        self.graphs_off.as_deref()
    }

    /// Which of its two buffers each exact trace reads next (they swap every step when
    /// K > 1).
    fn exact_parity(&self) -> Vec<usize> {
        self.exact.iter().flat_map(|x| &x.members).map(|m| m.tr[0].0).collect()
    }

    fn set_exact_parity(&mut self, first: &[usize]) {
        for (m, &f) in self.exact.iter_mut().flat_map(|x| &mut x.members).zip(first) {
            if m.tr[0].0 != f {
                m.tr.swap(0, 1);
            }
        }
    }

    /// Whether windows may replay as recorded graphs (the default). Off: every step's
    /// calls are made one by one (the same calls and results; for comparison).
    pub fn set_graphs(&mut self, on: bool) {
        self.use_graphs = on;
    }

    /// The device buffers of the gradients, in the CPU's order: etrace, plain, params.
    fn gradient_bufs(&self) -> Vec<Buf> {
        let mut etrace: Vec<Option<Buf>> = vec![None; self.plan.etrace.len()];
        for m in self.groups.iter().flat_map(|gr| &gr.members) {
            etrace[m.ei] = Some(m.grad);
        }
        for m in self.exact.iter().flat_map(|x| &x.members) {
            etrace[m.ei] = Some(m.grad);
        }
        let mut params: Vec<Buf> = self.params.iter().map(|p| p.grad).collect();
        if let Some((_, gs, ps)) = &self.bptt {
            etrace = gs.iter().map(|b| Some(*b)).collect();
            params = ps.clone();
        }
        let mut out: Vec<Buf> = etrace.into_iter().map(|b| b.expect("every etrace projection has a gradient")).collect();
        out.extend(self.plain.iter().map(|(.., b)| *b));
        out.extend(params);
        out
    }

    /// The gradients on the device, to the host (named, in the CPU's order).
    fn gradients<D: Device>(&self, g: &mut GpuNetwork<T, D>) -> Result<Vec<(String, Array2<f64>)>, RuntimeError> {
        let o = g.host.pops[self.plan.r].n;
        // I x O, or 1 x nnz for a sparse projection.
        let mut shapes: Vec<(String, usize, usize)> = self.plan.etrace.iter().map(|e| (e.name.clone(), e.target.shape.dim().0, e.target.shape.dim().1)).collect();
        shapes.extend(self.plan.plain.iter().zip(&self.plain).map(|((_, name), &(_, n_pre, _))| (name.clone(), n_pre, o)));
        shapes.extend(self.plan.params.iter().map(|q| (q.name.clone(), 1, g.host.pops[q.pop].n)));
        let mut total = Vec::with_capacity(shapes.len());
        for (k, ((name, rows, cols), b)) in shapes.into_iter().zip(self.gradient_bufs()).enumerate() {
            let grad = download(g, b, rows, cols)?;
            match self.plan.etrace.get(k).map(|e| &e.target.shape) {
                // An adapter's stacked gradient, as `NAME.U` and `NAME.V` (as the CPU's).
                Some(GradShape::LowRank { n_pre, .. }) => {
                    let (u, v) = crate::adapter::LowRank::<f64>::split(&grad, *n_pre);
                    let proj = name.trim_end_matches(".adapter");
                    total.push((format!("{proj}.U"), u));
                    total.push((format!("{proj}.V"), v));
                }
                // A convolution's kernel gradient: its synapses' summed into their entries.
                Some(shape) => total.push((name, shape.of_tensor(grad))),
                None => total.push((name, grad)),
            }
        }
        Ok(total)
    }


    /// Learning signals, from the top of the stack down (the CPU's order).
    fn signals<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, err: Buf) -> Result<(), RuntimeError> {
        let batch = g.host.batch;
        let r = self.plan.r;
        let o = g.host.pops[r].n;
        // dL/ds and dL/dh start at zero each step: their first write overwrites.
        self.acc.next_step();
        for &(i, q, state) in &self.plan.into_readout {
            let dst = match state {
                Some(j) => self.dldh[q][j],
                None => self.dlds[q].expect("the readout reads a population with a step"),
            };
            let w = dense(g, i)?;
            // dst (B x n_q) += err (B x O) W^T
            let beta = if self.acc.first_write(dst) { 0.0 } else { 1.0 };
            g.dev.gemm(&times_transpose(dst, err, w, batch, g.host.pops[q].n, o, beta)).map_err(dev_err)?;
            if let Some(k) = self.plain.iter().position(|(pi, ..)| *pi == i) {
                let (_, n_pre, gb) = self.plain[k];
                let x = pre_of(&self.pre, g, i);
                match &self.readout_win {
                    // Its input joins the window's slot; the product is `contract`'s.
                    Some(w) => {
                        let len = batch * n_pre;
                        g.launch(prop::COPY, flat(len), BLOCK, &[KArg::Buf(x), KArg::Buf(w.x[k].1[self.es_slot]), KArg::U64(len as u64)])?;
                    }
                    None => g.dev.gemm(&outer(gb, x, err, batch, n_pre, o, 1.0)).map_err(dev_err)?,
                }
            }
        }
        if !self.plan.linear_readout {
            let len = batch * o;
            let dst = self.dlds[r].expect("a readout with dynamics has a step");
            let entry = if self.acc.first_write(dst) { prop::COPY } else { prop::ADD };
            g.launch(entry, flat(len), BLOCK, &[KArg::Buf(err), KArg::Buf(dst), KArg::U64(len as u64)])?;
        }
        for &p in self.plan.hidden.iter().rev() {
            let dl = g.host.pops[p].deriv.expect("planned");
            let len = batch * g.host.pops[p].n;
            let dlds = self.dlds[p].expect("planned");
            self.acc.settle(&mut g.dev, dlds, false)?;
            for a in 0..dl.k {
                self.acc.settle(&mut g.dev, self.dldh[p][a], false)?;
                let ds = g.pops[p].states[dl.ds + a];
                let args = [KArg::Buf(dlds), KArg::Buf(ds), KArg::Buf(self.dldh[p][a]), KArg::Buf(self.l[p][a]), KArg::U64(len as u64)];
                g.launch(prop::MUL_ADD, flat(len), BLOCK, &args)?;
            }
            // BPTT's backward pass carries the loss down the stack itself.
            if self.method == Method::Bptt {
                continue;
            }
            for li in 0..self.plan.links.len() {
                let lk = &self.plan.links[li];
                // Only what was read in this very step (ALGORITHMS.md): no signal back
                // along recurrent or delayed links.
                if lk.to != p || lk.steps_back() != 0 {
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
                let acc = !self.acc.first_write(dst);
                sparse::back(g, proj, dst, self.mu, batch, g.host.pops[from].n, g.host.pops[p].n, acc)?;
            }
        }
        Ok(())
    }

    /// The online methods' traces and gradient products of step `t`.
    fn traces<D: Device>(&mut self, g: &mut GpuNetwork<T, D>, t: usize) -> Result<(), RuntimeError> {
        let batch = g.host.batch;
        for x in &mut self.exact {
            let (p, k, n) = (x.pop, x.k, x.n);
            let dl = g.host.pops[p].deriv.expect("planned");
            let states = &g.pops[p].states;
            let (d, f, l) = match x.packed {
                None => (states[dl.d], states[dl.df + x.input], self.l[p][0]),
                Some((d, f, l)) => {
                    // One plane per D[a][c], Df[a][input] and l_a.
                    let plane = batch * n;
                    let mut copies: Vec<(Buf, Buf, usize)> = Vec::new();
                    for a in 0..k {
                        for c in 0..k {
                            copies.push((states[dl.d + a * k + c], d, (a * k + c) * plane));
                        }
                        copies.push((states[dl.df + a * dl.n_in + x.input], f, a * plane));
                        copies.push((self.l[p][a], l, a * plane));
                    }
                    for (src, dst, at) in copies {
                        g.launch(prop::COPY_AT, flat(plane), BLOCK, &[KArg::Buf(src), KArg::Buf(dst), KArg::U64(at as u64), KArg::U64(plane as u64)])?;
                    }
                    (d, f, l)
                }
            };
            for m in &mut x.members {
                let xb = arriving(&self.pre, &self.delayed, g, m.proj, t);
                // Dense pairs read the first 11 arguments; sparse ones their synapses too.
                let mut args = [
                    KArg::Buf(m.tr[0]),
                    KArg::Buf(m.tr[1]),
                    KArg::Buf(d),
                    KArg::Buf(f),
                    KArg::Buf(xb),
                    KArg::Buf(l),
                    KArg::Buf(m.grad),
                    KArg::U64(batch as u64),
                    KArg::U64(m.n_pre as u64),
                    KArg::U64(n as u64),
                    KArg::U64(k as u64),
                    KArg::U64(0),
                    KArg::U64(0),
                    KArg::U64(0),
                ];
                // A sparse projection's traces are its synapses' (one thread each).
                let (entry, grid, used) = match self.pairs[m.ei] {
                    Pairs::Sparse { row, col, nnz } => {
                        args[11..].copy_from_slice(&[KArg::Buf(row), KArg::Buf(col), KArg::U64(nnz as u64)]);
                        (prop::SPARSE_EXACT_TRACE, flat(nnz), 14)
                    }
                    _ => (prop::EXACT_TRACE, flat(m.n_pre * n), 11),
                };
                g.launch(entry, grid, BLOCK, &args[..used])?;
                m.tr.swap(0, 1);
            }
        }
        for pt in &self.params {
            launch_step(g, &pt.trace)?;
            let n = g.host.pops[pt.pop].n;
            // grad (1 x N) += ones^T u: the sum over the batch.
            g.dev.gemm(&outer(pt.grad, self.ones, pt.u, batch, 1, n, 1.0)).map_err(dev_err)?;
        }
        let Method::EsDRtrl { decay } = self.method else { return Ok(()) };
        let s = self.es_slot;
        for gr in &self.groups {
            launch_step(g, &gr.traces[s])?;
            for m in gr.members.iter().filter(|m| !m.early) {
                let x = arriving(&self.pre, &self.delayed, g, m.proj, t);
                eps_x_update(g, &[(m, x)], decay, t, s)?;
            }
        }
        self.es_slot += 1;
        if self.es_slot == self.es_len {
            self.contract(g)?;
        }
        Ok(())
    }

    /// ES-D-RTRL: eps_x of the members that read before the network's step
    /// ([`Member::early`]): an external input (this step's slot of the window) or a
    /// source not yet stepped (s^{t-1}, in its own buffer).
    fn eps_x_before_step<D: Device>(&self, g: &mut GpuNetwork<T, D>, t: usize, inputs: &[Buf]) -> Result<(), RuntimeError> {
        let Method::EsDRtrl { decay } = self.method else { return Ok(()) };
        let early: Vec<(&Member, Buf)> = self
            .groups
            .iter()
            .flat_map(|gr| &gr.members)
            .filter(|m| m.early)
            .map(|m| match g.host.projs[m.proj].from {
                Source::Input(k) => (m, inputs[k]),
                Source::Pop(_) => (m, g.source(m.proj).0),
            })
            .collect();
        // Two a launch (an input and a recurrent projection: one launch a step).
        for two in early.chunks(2) {
            eps_x_update(g, two, decay, t, self.es_slot)?;
        }
        Ok(())
    }

    /// ES-D-RTRL: the gradient products of the steps in the contraction window, one GEMM
    /// per projection with k = steps x batch (instead of one per step), the readout's
    /// plain weights' too.
    fn contract<D: Device>(&mut self, g: &mut GpuNetwork<T, D>) -> Result<(), RuntimeError> {
        let k = self.es_slot * g.host.batch;
        self.es_slot = 0;
        if k == 0 {
            return Ok(());
        }
        for gr in &self.groups {
            for m in &gr.members {
                sparse::add_outer(g, self.pairs[m.ei], m.grad, m.x_win, gr.u_win, k, m.n_pre, gr.n)?;
            }
        }
        if let Some(w) = &self.readout_win {
            let o = g.host.pops[self.plan.r].n;
            for (&(_, n_pre, gb), (x_win, _)) in self.plain.iter().zip(&w.x) {
                g.dev.gemm(&outer(gb, *x_win, w.err, k, n_pre, o, 1.0)).map_err(dev_err)?;
            }
        }
        Ok(())
    }
}

impl<T: Float, D: Device> Learner<GpuNetwork<T, D>> for GpuGradient<T> {
    fn run_online(&mut self, g: &mut GpuNetwork<T, D>, data: &mut dyn Sequence, online: Option<Online>) -> Result<Gradients, RuntimeError> {
        GpuGradient::run_online(self, g, data, online)
    }
}

/// ES-D-RTRL's contraction window: allocates each group's u and each member's scaled
/// eps_x for every slot (adding their bytes to `bytes`), and the trace step's launch per
/// slot (u written into the slot: the trace step writes u and never reads it). Returns
/// the number of slots: the network's window, shorter where the slices would pass
/// [`CONTRACTION_BYTES`].
fn contraction_window<T: Float, D: Device>(g: &mut GpuNetwork<T, D>, groups: &mut [Group], readout_slot: usize, bytes: &mut usize) -> Result<usize, RuntimeError> {
    let batch = g.host.batch;
    let size = std::mem::size_of::<T>();
    let per_slot: usize = readout_slot + groups.iter().map(|gr| batch * size * (gr.n + gr.members.iter().map(|m| m.n_pre).sum::<usize>())).sum::<usize>();
    let len = g.window().min((CONTRACTION_BYTES / per_slot.max(1)).max(1));
    let fe = Elem::float(T::PRECISION);
    for gr in groups.iter_mut() {
        let plane = batch * gr.n;
        gr.u_win = g.dev.alloc(fe, len * plane, "learn.u_window").map_err(dev_err)?;
        let at = gr.trace.args.iter().position(|b| *b == gr.u).expect("the trace step writes u");
        for s in 0..len {
            let mut launch = Launch { module: gr.trace.module, args: gr.trace.args.clone(), len: gr.trace.len };
            launch.args[at] = g.dev.view(gr.u_win, s * plane, plane, &format!("learn.u_window[{s}]")).map_err(dev_err)?;
            gr.traces.push(launch);
        }
        for m in &mut gr.members {
            let plane = batch * m.n_pre;
            m.x_win = g.dev.alloc(fe, len * plane, "learn.eps_x_window").map_err(dev_err)?;
            for s in 0..len {
                m.x_views.push(g.dev.view(m.x_win, s * plane, plane, &format!("learn.eps_x_window[{s}]")).map_err(dev_err)?);
            }
            *bytes += len * plane * size;
        }
        *bytes += len * plane * size;
    }
    Ok(len)
}

/// The readout's window of `len` slots ([`ReadoutWindow`]) for the plain weights
/// `plain` into a readout of `o` neurons (adding its bytes to `bytes`).
fn readout_window<T: Float, D: Device>(g: &mut GpuNetwork<T, D>, plain: &[(usize, usize, Buf)], o: usize, len: usize, bytes: &mut usize) -> Result<ReadoutWindow, RuntimeError> {
    let batch = g.host.batch;
    let fe = Elem::float(T::PRECISION);
    let mut slots = |plane: usize, label: &str| -> Result<(Buf, Vec<Buf>), RuntimeError> {
        let win = g.dev.alloc(fe, len * plane, label).map_err(dev_err)?;
        *bytes += len * plane * std::mem::size_of::<T>();
        let views = (0..len).map(|s| g.dev.view(win, s * plane, plane, &format!("{label}[{s}]")).map_err(dev_err)).collect::<Result<_, _>>()?;
        Ok((win, views))
    };
    let (err, err_views) = slots(batch * o, "learn.err_window")?;
    let x = plain.iter().map(|&(_, n_pre, _)| slots(batch * n_pre, "learn.readout_x_window")).collect::<Result<_, _>>()?;
    Ok(ReadoutWindow { err, err_views, x })
}

/// ES-D-RTRL: `eps_x = decay eps_x + x` of each member `m` of `members` (one or two:
/// one launch), reading its `x`, and its copy scaled by step `t`'s bias correction into
/// slot `s` of the contraction window.
fn eps_x_update<T: Float, D: Device>(g: &mut GpuNetwork<T, D>, members: &[(&Member, Buf)], decay: f64, t: usize, s: usize) -> Result<(), RuntimeError> {
    // g += (1 / c_t) eps_x^T u: the step's factors go into the contraction window's slot,
    // and a full window is one GEMM per projection (`contract`).
    let inv_c = 1.0 / bias_correction(decay, t);
    let (decay_bits, scale_bits) = (T::from_f64(decay).bits(), T::from_f64(inv_c).bits());
    let mut args = Vec::with_capacity(10);
    let mut len = 0;
    for &(m, x) in members {
        let n = g.host.batch * m.n_pre;
        args.extend([KArg::Buf(m.eps_x), KArg::Buf(x), KArg::Buf(m.x_views[s]), KArg::U64(n as u64)]);
        len += n;
    }
    args.extend([KArg::U64(decay_bits), KArg::U64(scale_bits)]);
    let entry = if members.len() == 2 { prop::SCALE_ADD_STORE2 } else { prop::SCALE_ADD_STORE };
    g.launch(entry, flat(len), BLOCK, &args)
}

/// What projection `i`'s target receives at step `t` of the sequence: what it read at
/// t - d through a delay of d steps (its ring's slot, zeros before), else [`pre_of`].
fn arriving<T: Float, D: Device>(pre: &[Option<Buf>], delayed: &[Option<Vec<Buf>>], g: &GpuNetwork<T, D>, i: usize, t: usize) -> Buf {
    match &delayed[i] {
        // Slot (t - d) mod (d + 1) = (t + 1) mod (d + 1), written at step t - d.
        Some(ring) => ring[(t + 1) % ring.len()],
        None => pre_of(pre, g, i),
    }
}

/// x^t of projection `i`: its copy (`pre`), or the live source buffer.
fn pre_of<T: Float, D: Device>(pre: &[Option<Buf>], g: &GpuNetwork<T, D>, i: usize) -> Buf {
    pre[i].unwrap_or_else(|| g.source(i).0)
}

/// Compiles and loads trace step `kind` of population `p`, its states `states` (the trace
/// slices, then u), its inputs D and the driving column (the population's states) and l.
fn load_trace<T: Float, D: Device>(
    g: &mut GpuNetwork<T, D>,
    l: &[Vec<Buf>],
    p: usize,
    kind: TraceKind,
    params: &[f64],
    states: Vec<Buf>,
) -> Result<Launch, RuntimeError> {
    let pop = &g.host.pops[p];
    let (Some(step), Some(dl)) = (&pop.step, pop.deriv) else {
        return Err(RuntimeError::Build(format!("population `{}` was not built for learning (Options::learning)", pop.name)));
    };
    let layout = trace_step(step, &dl, kind);
    let pop_states = &g.pops[p].states;
    let mut inputs: Vec<Buf> = layout.d.iter().map(|(a, c)| pop_states[dl.d + a * dl.k + c]).collect();
    inputs.extend(layout.drive_states.iter().map(|&s| pop_states[s]));
    inputs.extend(&l[p]);
    load_step(g, p, &layout.step, params, &states, &inputs)
}

/// Compiles a step generated for population `p` and binds its arguments: state i to
/// `states[i]`, input i to `inputs[i]`.
fn load_step<T: Float, D: Device>(
    g: &mut GpuNetwork<T, D>,
    p: usize,
    step: &snnc_compiler::discretise::Step,
    params: &[f64],
    states: &[Buf],
    inputs: &[Buf],
) -> Result<Launch, RuntimeError> {
    let name = &g.host.pops[p].name;
    let specs: Vec<ParamSpec> = params.iter().map(|v| ParamSpec::Uniform(*v)).collect();
    let k = compile_step(step, &specs, T::PRECISION, g.dev.target()).map_err(|e| RuntimeError::Build(format!("population `{name}`: generated step: {e}")))?;
    let mut args = Vec::new();
    for a in &k.args {
        args.push(match a.role {
            Role::State(i) if i < states.len() => states[i],
            Role::Input(i) if i < inputs.len() => inputs[i],
            role => return Err(RuntimeError::Build(format!("population `{name}`: generated step argument {role:?} is not supported on the GPU"))),
        });
    }
    let len = g.host.batch * g.host.pops[p].n;
    let module = g.dev.load(&Module::Step(Box::new(k))).map_err(dev_err)?;
    Ok(Launch { module, args, len })
}

fn launch_step<T: Float, D: Device>(g: &mut GpuNetwork<T, D>, s: &Launch) -> Result<(), RuntimeError> {
    let mut args: Vec<KArg> = s.args.iter().map(|b| KArg::Buf(*b)).collect();
    args.extend(step_scalars(s.len, 0.0, 0, 0, 0));
    g.dev.launch(s.module, STEP_ENTRY, flat(s.len), BLOCK, &args).map_err(dev_err)
}

/// What the CPU's gradient pass does and the device's does not yet, or refuses: dropout;
/// an adapter where an exact trace would be kept (the CPU's refusal, its message). (A
/// delay per synapse is refused by the plan and by the device.)
fn refuse_on_device<T: Float>(net: &Network<T>, plan: &Plan, method: Method) -> Result<(), RuntimeError> {
    let name = |i: usize| net.projections()[i].0.clone();
    // The device steps the network as evaluation does, without masks: training through a
    // dropout there would silently train another network.
    if let Some(i) = (0..net.projs.len()).find(|&i| net.has_dropout(i)) {
        return Err(RuntimeError::Build(format!("`{}` has `dropout`: training with dropout runs on the CPU only (--backend jit); the CUDA backend evaluates and runs such a network (without dropout, as evaluation does) but does not train it", name(i))));
    }
    let online = method != Method::Bptt;
    for e in plan.etrace.iter().filter(|e| matches!(e.target.shape, GradShape::LowRank { .. })) {
        // An exact trace is one per weight of W + U V (pre x post): not for an adapter.
        if method == Method::DRtrl || (online && e.target.pop == plan.r) {
            let proj = e.name.trim_end_matches(".adapter");
            let why = if method == Method::DRtrl { "D-RTRL keeps one trace per weight of W + U V".to_string() } else { format!("it feeds the readout `{}`, whose weights get exact traces", net.pops[plan.r].name) };
            return Err(RuntimeError::Build(format!("the adapter of `{proj}` cannot be trained here: {why}; train it with es-d-rtrl (into a hidden layer) or bptt")));
        }
    }
    let projs = plan.etrace.iter().map(|e| e.target.index).chain(plan.links.iter().map(|l| l.proj));
    for i in projs {
        if net.dense_weights(i).is_none() && net.sparse_weights(i).is_none() {
            return Err(RuntimeError::Build(format!("`{}`: the CUDA backend's gradients go through dense and sparse projections only", name(i))));
        }
    }
    Ok(())
}

/// The device buffer of dense projection `i`'s weights (n_pre x n_post, row-major).
fn dense<T, D>(g: &GpuNetwork<T, D>, i: usize) -> Result<Buf, RuntimeError> {
    match g.projs[i].weights {
        super::DevWeights::Dense(w) => Ok(w),
        _ => Err(RuntimeError::Build(format!("`{}`: gradients need dense weights", g.host.projs[i].name))),
    }
}

/// `dst (B x n_from) = x (B x n_to) W^T + beta dst`, W row-major n_from x n_to.
/// Column-major: dst^T (n_from x B) = W' x^T + beta dst^T, where W's memory is W^T
/// column-major (transposed back).
fn times_transpose(dst: Buf, x: Buf, w: Buf, batch: usize, n_from: usize, n_to: usize, beta: f64) -> Gemm {
    Gemm { m: n_from, n: batch, k: n_to, alpha: 1.0, a: w, lda: n_to, ta: true, b: x, ldb: n_to, tb: false, beta, c: dst, ldc: n_from }
}

/// `g (I x O) += alpha x^T c`, x row-major B x I, c row-major B x O. Column-major:
/// g^T (O x I) += alpha c^T x, c's memory being c^T and x's memory x^T (transposed back).
fn outer(gr: Buf, x: Buf, c: Buf, batch: usize, n_pre: usize, n_out: usize, alpha: f64) -> Gemm {
    Gemm { m: n_out, n: n_pre, k: batch, alpha, a: c, lda: n_out, ta: false, b: x, ldb: n_pre, tb: true, beta: 1.0, c: gr, ldc: n_out }
}

fn download<T: Float, D: Device>(g: &mut GpuNetwork<T, D>, b: Buf, rows: usize, cols: usize) -> Result<Array2<f64>, RuntimeError> {
    let mut v = vec![T::from_f64(0.0); rows * cols];
    g.dev.download(b, T::host_mut(&mut v)).map_err(dev_err)?;
    Ok(Array2::from_shape_vec((rows, cols), v.iter().map(|x| x.to_f64()).collect()).expect("shape"))
}
