//! The CUDA backend, first part: a PTX text emitter (no GPU needed to build or test it;
//! `ptxas` checks the text, and [`PtxKernel::emulate`] runs the emitted instruction
//! stream on the CPU).
//!
//! [`emit_step`] produces one `.entry` kernel ([`STEP_ENTRY`]) that advances element
//! `i = blockIdx.x * blockDim.x + threadIdx.x` (guarded by `i < n`) exactly as the
//! interpreter kernel does: it loads the states, inputs and per-neuron params it reads,
//! computes every next state, stores the ones that change and writes the spike of the
//! new state. Uniform params and `dt` are folded into the code as constants.
//! [`emit_derivatives`] produces [`DERIV_ENTRY`], which reads the same arguments (states
//! h^{t-1}, read only) and writes D = dh^t/dh^{t-1} (K x K), Df = dh^t/dy^t (K x inputs)
//! and ds/dh at the new state h^t (as `Step::with_derivative_outputs` defines them):
//! launched before the step kernel of the same step.
//!
//! Kernel signature ([`PtxKernel::args`] lists the pointers with their roles): one
//! `.param .u64` global pointer per array, each holding `n` values of the kernel's
//! float type (structure of arrays), in the order states, inputs, per-neuron params,
//! then the outputs (spike; or D row-major, Df row-major, ds); then the scalars
//! `.param .u64 n`, `.param .f64 t`, `.param .u64 seed`, `.param .u64 step`,
//! `.param .u64 offset` (the fields of [`RandomCtx`](super::RandomCtx)), always present
//! so every kernel is launched the same way.
//!
//! Arithmetic: f64 kernels round like the interpreter (explicit `.rn`, so no FMA
//! contraction), and f32 kernels compute in f32 with `.ftz` (subnormals flushed: decaying
//! states otherwise reach subnormals, which are slow and meaningless here). The
//! transcendental functions and their accuracy are documented in [`build`]. Random draws
//! reproduce [`random_draw`](super::random_draw): Philox4x32-10 bit for bit, the uniform
//! exactly, Box–Muller to within the f64 routines' few ulp.

mod asm;
mod build;
pub mod propagate;
pub mod text_emu;

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use self::asm::{Arg, Bin, Cmp, Inst, Reg, Rnd, Scalar, Test, Ty, Un};
use self::build::Builder;
pub use super::Precision;
use super::specialise::{SpecialiseError, fold_leaves, specialise_step};
use super::{ParamSpec, RandomCtx};
use crate::discretise::Step;
use crate::ir::{Graph, NodeId, Op};

/// The GPU architecture the PTX is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A100 and later (`.target sm_80`).
    Sm80,
    /// H100 / H200 (`.target sm_90`).
    Sm90,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Sm80 => "sm_80",
            Target::Sm90 => "sm_90",
        }
    }
}

/// PTX ISA 7.8 (CUDA 11.8): the first with sm_90; `min/max.NaN` need 7.0.
pub const PTX_VERSION: &str = "7.8";
/// The entry point of [`emit_step`] kernels.
pub const STEP_ENTRY: &str = "snnc_step";
/// The entry point of [`emit_derivatives`] kernels.
pub const DERIV_ENTRY: &str = "snnc_derivatives";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtxError(pub String);

impl fmt::Display for PtxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PtxError {}

impl From<SpecialiseError> for PtxError {
    fn from(e: SpecialiseError) -> PtxError {
        PtxError(e.to_string())
    }
}

/// How a kernel uses a pointer argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// What a pointer argument holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    State(usize),
    Input(usize),
    /// The k-th per-neuron param slice (k counts `PerNeuron` params only).
    Param(usize),
    Spike,
    /// D[a][c] = d h_a^t / d h_c^{t-1}.
    D(usize, usize),
    /// Df[a][j] = d h_a^t / d y_j^t.
    Df(usize, usize),
    /// d s / d h_a at the new state.
    Ds(usize),
}

/// One pointer argument of a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelArg {
    /// The `.param` name in the PTX.
    pub name: String,
    pub role: Role,
    pub access: Access,
    /// The model's name for it (for messages and the comment in the PTX).
    pub label: String,
}

/// An emitted kernel: its PTX ([`PtxKernel::ptx`]) and the instruction stream behind it.
#[derive(Clone, Debug)]
pub struct PtxKernel {
    pub entry: &'static str,
    pub precision: Precision,
    pub target: Target,
    pub args: Vec<KernelArg>,
    header: Vec<String>,
    body: Vec<Inst>,
    counts: [u32; 5],
    /// The kernel checks the states it writes ([`compile_checked_step`]) and takes two
    /// more parameters after the scalars: `flags` (a u32 pointer) and `flag_slot`.
    pub checks: bool,
    /// The kernel reads its step (and time) from the device ([`PtxKernel::clocked`]) and
    /// takes the clock's pointer after the flag parameters.
    pub clocked: bool,
    /// The kernel lists its spikes ([`PtxKernel::listing`]): seven parameters after the
    /// clock.
    pub lists: bool,
    /// The kernel also records its spikes as bits ([`PtxKernel::recording`]): three
    /// parameters last.
    pub records: bool,
}

/// What [`PtxKernel::emulate`] saw besides the buffers it wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Emulated {
    /// The largest non-finite flag word a [`compile_checked_step`] kernel raised (0:
    /// none, and always for other kernels), for the caller to max into its flag.
    pub flag: u32,
    /// The elements a [`PtxKernel::listing`] kernel listed, in element order (the
    /// emulator runs them one after another; a GPU lists in any order).
    pub listed: Vec<u64>,
}

/// `(grid, block)` for `n` elements with `block` threads per block (clamped to 1..=1024,
/// the CUDA limit): grid = ceil(n / block), at least 1 so an empty launch is still valid
/// (the `i < n` guard makes the extra threads idle). Panics if n needs more than 2^31 - 1
/// blocks (the `gridDim.x` limit), i.e. never below ~2.2e12 elements.
pub fn launch_config(n: u64, block: u32) -> (u32, u32) {
    let block = block.clamp(1, 1024);
    let grid = n.div_ceil(u64::from(block)).max(1);
    assert!(grid <= i32::MAX as u64, "{n} elements need {grid} blocks, more than gridDim.x allows");
    (grid as u32, block)
}

/// One PTX module holding `kernels`, each under its entry name (distinct names; the
/// module directives written once, so `ptxas` and the driver take it as one unit).
pub fn module(target: Target, kernels: &[(&str, &PtxKernel)]) -> String {
    let mut o = String::new();
    for (i, (entry, k)) in kernels.iter().enumerate() {
        if i > 0 {
            o.push('\n');
        }
        o.push_str(&k.comments());
        if i == 0 {
            let _ = writeln!(o, "\n.version {PTX_VERSION}\n.target {}\n.address_size 64", target.name());
        }
        o.push('\n');
        o.push_str(&k.entry_text(entry));
    }
    o
}

/// The PTX of one step of `step` over `n` elements (see the module doc).
pub fn emit_step(step: &Step, specs: &[ParamSpec], precision: Precision, target: Target) -> Result<String, PtxError> {
    Ok(compile_step(step, specs, precision, target)?.ptx())
}

/// The PTX of the derivative kernel of `step` (see the module doc).
pub fn emit_derivatives(step: &Step, specs: &[ParamSpec], precision: Precision, target: Target) -> Result<String, PtxError> {
    Ok(compile_derivatives(step, specs, precision, target)?.ptx())
}

/// The step kernel as a [`PtxKernel`] (its PTX, arguments and CPU emulation).
pub fn compile_step(step: &Step, specs: &[ParamSpec], precision: Precision, target: Target) -> Result<PtxKernel, PtxError> {
    let sp = specialise_step(step, specs)?;
    let g = &sp.graph;
    let mut outputs: Vec<(Role, NodeId)> = Vec::new();
    for (k, &r) in sp.next.iter().enumerate() {
        // A state the step leaves unchanged is neither loaded for it nor stored.
        if !matches!(g.op(r), Op::State(j) if j as usize == k) {
            outputs.push((Role::State(k), r));
        }
    }
    if let Some(s) = sp.spike {
        outputs.push((Role::Spike, s));
    }
    let mut args = input_args(step, specs);
    if step.spike.is_some() {
        args.push(KernelArg { name: "spike".into(), role: Role::Spike, access: Access::Write, label: "spike".into() });
    }
    for (role, _) in &outputs {
        if let Role::State(k) = role {
            args[*k].access = Access::ReadWrite;
        }
    }
    let header = header(step, specs, sp.dt, precision, "step");
    lower(g, &outputs, step, specs, args, header, STEP_ENTRY, precision, target)
}

/// The derivative kernel as a [`PtxKernel`].
pub fn compile_derivatives(step: &Step, specs: &[ParamSpec], precision: Precision, target: Target) -> Result<PtxKernel, PtxError> {
    let dt = super::specialise::check(step, specs)?;
    let mut st = step.clone();
    let der = st.derivatives();
    let k = st.n_hidden;
    let n_in = st.layout.inputs.len();
    let mut roles = Vec::new();
    let mut roots = Vec::new();
    for a in 0..k {
        for c in 0..k {
            roles.push(Role::D(a, c));
            roots.push(der.d.get(a, c));
        }
    }
    for a in 0..k {
        for j in 0..n_in {
            roles.push(Role::Df(a, j));
            roots.push(der.df.get(a, j));
        }
    }
    if let Some(ds) = &der.dspike {
        // ds/dh read at the new state (as `Step::with_derivative_outputs`).
        let leaves: Vec<NodeId> = (0..st.layout.states.len() as u32).map(|s| st.graph.state(s)).collect();
        let map: HashMap<NodeId, NodeId> = leaves.into_iter().zip(st.next.iter().copied()).collect();
        let ds_new = st.graph.substitute(&ds.entries, &map);
        for (a, &r) in ds_new.iter().enumerate() {
            roles.push(Role::Ds(a));
            roots.push(r);
        }
    }
    let (mut g, roots) = st.graph.extract(&roots);
    let roots = fold_leaves(&mut g, &roots, step, specs)?;
    let (g, roots) = g.extract(&roots);
    let mut args = input_args(step, specs);
    for &role in &roles {
        let (name, label) = match role {
            Role::D(a, c) => (format!("d_{a}_{c}"), format!("d {} / d {}", step.state_name(a), step.state_name(c))),
            Role::Df(a, j) => (format!("df_{a}_{j}"), format!("d {} / d {}", step.state_name(a), step.input_name(j))),
            Role::Ds(a) => (format!("ds_{a}"), format!("d spike / d {}", step.state_name(a))),
            _ => unreachable!(),
        };
        args.push(KernelArg { name, role, access: Access::Write, label });
    }
    let outputs: Vec<(Role, NodeId)> = roles.into_iter().zip(roots).collect();
    let header = header(step, specs, dt, precision, "derivatives");
    lower(&g, &outputs, step, specs, args, header, DERIV_ENTRY, precision, target)
}

/// Pointer arguments for the states, inputs and per-neuron params (all read-only here).
fn input_args(step: &Step, specs: &[ParamSpec]) -> Vec<KernelArg> {
    let mut args = Vec::new();
    for k in 0..step.layout.states.len() {
        args.push(KernelArg { name: format!("state{k}"), role: Role::State(k), access: Access::Read, label: step.state_name(k).into() });
    }
    for k in 0..step.layout.inputs.len() {
        args.push(KernelArg { name: format!("input{k}"), role: Role::Input(k), access: Access::Read, label: step.input_name(k).into() });
    }
    let mut pn = 0;
    for (k, s) in specs.iter().enumerate() {
        if *s == ParamSpec::PerNeuron {
            args.push(KernelArg { name: format!("param{pn}"), role: Role::Param(pn), access: Access::Read, label: step.param_name(k).into() });
            pn += 1;
        }
    }
    args
}

fn header(step: &Step, specs: &[ParamSpec], dt: f64, precision: Precision, what: &str) -> Vec<String> {
    let mut h = vec![format!(
        "snnc {what} kernel of `{}` ({}; {:?}; dt = {dt:e} s folded in)",
        step.model.name,
        step.method.name(),
        precision
    )];
    let uniform: Vec<String> = specs
        .iter()
        .enumerate()
        .filter_map(|(k, s)| match s {
            ParamSpec::Uniform(v) => Some(format!("{} = {v:e}", step.param_name(k))),
            ParamSpec::PerNeuron => None,
        })
        .collect();
    if !uniform.is_empty() {
        h.push(format!("uniform params: {}", uniform.join(", ")));
    }
    h
}

/// The value of a graph node during lowering.
#[derive(Clone, Copy)]
enum Val {
    /// A float register of the kernel's type.
    F(Reg),
    /// A truth value held in a predicate.
    P(Reg),
    C(f64),
}

struct Lower<'g> {
    g: &'g Graph,
    b: Builder,
    ty: Ty,
    vals: Vec<Option<Val>>,
    floats: HashMap<NodeId, Reg>,
    preds: HashMap<NodeId, Reg>,
    /// Pointer argument of each state / input / per-neuron param.
    state_buf: Vec<usize>,
    input_buf: Vec<usize>,
    param_buf: Vec<Option<usize>>,
    /// For each random slot: is it normal, and its value once drawn (f64).
    normal: Vec<bool>,
    draws: HashMap<u32, Reg>,
}

impl Lower<'_> {
    fn float(&mut self, id: NodeId) -> Arg {
        match self.vals[id.index()].expect("operand lowered") {
            Val::F(r) => Arg::R(r),
            Val::C(v) => Arg::F(v),
            Val::P(p) => {
                if let Some(&r) = self.floats.get(&id) {
                    return Arg::R(r);
                }
                let r = self.b.selp(self.ty, Arg::F(1.0), Arg::F(0.0), p);
                self.floats.insert(id, r);
                Arg::R(r)
            }
        }
    }

    /// The operand in a register (routines need one; constants are normally folded).
    fn freg(&mut self, id: NodeId) -> Reg {
        match self.float(id) {
            Arg::R(r) => r,
            a => self.b.mov(self.ty, a),
        }
    }

    /// The operand as a truth value: non-zero (NaN included) is true.
    fn pred(&mut self, id: NodeId) -> Reg {
        if let Some(Val::P(p)) = self.vals[id.index()] {
            return p;
        }
        if let Some(&p) = self.preds.get(&id) {
            return p;
        }
        let x = self.freg(id);
        let p = self.b.setp(Cmp::Neu, self.ty, x, Arg::F(0.0));
        self.preds.insert(id, p);
        p
    }

    fn draw(&mut self, slot: u32) -> Reg {
        if let Some(&r) = self.draws.get(&slot) {
            return r;
        }
        let i = self.b.index();
        let off = self.b.param(Scalar::Offset);
        let index = self.b.add(Ty::U64, i, off);
        let seed = self.b.param(Scalar::Seed);
        let step = self.b.param(Scalar::Step);
        let w = self.b.philox_words(index, slot, seed, step);
        let v = if self.normal[slot as usize] { self.b.box_muller(w[0], w[1]) } else { self.b.u01(w[0]) };
        self.draws.insert(slot, v);
        v
    }

    fn node(&mut self, id: NodeId) -> Result<Val, PtxError> {
        let ty = self.ty;
        let op = self.g.op(id);
        let a = self.g.args(id).to_vec();
        use Op::*;
        let v = match op {
            Const(v) => Val::C(v),
            State(k) => Val::F(self.b.ld(ty, self.state_buf[k as usize], false)),
            Input(k) => Val::F(self.b.ld(ty, self.input_buf[k as usize], true)),
            Param(k) => match self.param_buf[k as usize] {
                Some(buf) => Val::F(self.b.ld(ty, buf, true)),
                None => return Err(PtxError(format!("uniform param {k} was not folded"))),
            },
            Time => {
                let t = self.b.param(Scalar::T);
                Val::F(if ty == Ty::F32 { self.b.cvt(Some(Rnd::Rn), Ty::F32, Ty::F64, t) } else { t })
            }
            Rand(k) | Randn(k) => {
                let v = self.draw(k);
                Val::F(if ty == Ty::F32 { self.b.cvt(Some(Rnd::Rn), Ty::F32, Ty::F64, v) } else { v })
            }
            Dt | Weight | PreSpike | Post(_) | SurrogateGrad(_) => {
                return Err(PtxError(format!("`{}` left in a prepared graph", op.name())));
            }
            Add | Sub | Mul | Div | Min | Max => {
                let bop = match op {
                    Add => Bin::Add,
                    Sub => Bin::Sub,
                    Mul => Bin::Mul,
                    Div => Bin::Div,
                    Min => Bin::Min,
                    _ => Bin::Max,
                };
                let (x, y) = (self.float(a[0]), self.float(a[1]));
                let x = match x {
                    // An immediate first operand only where PTX allows it (not min/max).
                    Arg::F(_) if matches!(bop, Bin::Min | Bin::Max) => Arg::R(self.freg(a[0])),
                    x => x,
                };
                Val::F(self.b.bin(bop, ty, x, y))
            }
            Neg | Abs => {
                let x = self.freg(a[0]);
                Val::F(self.b.un(if matches!(op, Neg) { Un::Neg } else { Un::Abs }, ty, x))
            }
            Pow => {
                let (x, y) = (self.freg(a[0]), self.freg(a[1]));
                Val::F(self.b.pow(ty, x, y))
            }
            PowI(n) => self.powi(a[0], n),
            Exp | Log | Sqrt | Tanh | Sigmoid | Sin | Cos | Exprel => {
                let x = self.freg(a[0]);
                Val::F(match op {
                    Exp => self.b.exp(ty, x),
                    Log => self.b.log(ty, x),
                    Sqrt => self.b.sqrt(ty, x),
                    Tanh => self.b.tanh(ty, x),
                    Sigmoid => self.b.sigmoid(ty, x),
                    Sin => self.b.sincos(ty, x, false),
                    Cos => self.b.sincos(ty, x, true),
                    _ => self.b.exprel(ty, x),
                })
            }
            Select => {
                let c = self.pred(a[0]);
                let (x, y) = (self.float(a[1]), self.float(a[2]));
                Val::F(self.b.selp(ty, x, y, c))
            }
            Lt | Le | Gt | Ge | Eq | Ne => {
                let cmp = match op {
                    Lt => Cmp::Lt,
                    Le => Cmp::Le,
                    Gt => Cmp::Gt,
                    Ge => Cmp::Ge,
                    Eq => Cmp::Eq,
                    // Rust's `!=` is true when either side is NaN.
                    _ => Cmp::Neu,
                };
                let x = self.freg(a[0]);
                let y = self.float(a[1]);
                Val::P(self.b.setp(cmp, ty, x, y))
            }
            And | Or => {
                let (x, y) = (self.pred(a[0]), self.pred(a[1]));
                Val::P(self.b.bin(if matches!(op, And) { Bin::And } else { Bin::Or }, Ty::Pred, x, y))
            }
            Not => match self.vals[a[0].index()] {
                Some(Val::P(p)) => Val::P(self.b.un(Un::Not, Ty::Pred, p)),
                _ => {
                    let x = self.freg(a[0]);
                    Val::P(self.b.setp(Cmp::Eq, ty, x, Arg::F(0.0)))
                }
            },
            Heaviside(_) => {
                let x = self.freg(a[0]);
                Val::P(self.b.setp(Cmp::Ge, ty, x, Arg::F(0.0)))
            }
            StopGradient => self.vals[a[0].index()].expect("operand lowered"),
        };
        Ok(v)
    }

    /// `ir::interp::powi`: binary exponentiation in the interpreter's order.
    fn powi(&mut self, x: NodeId, n: i32) -> Val {
        let mut m = n.unsigned_abs();
        if m == 0 {
            return Val::C(1.0);
        }
        let ty = self.ty;
        let mut base = self.freg(x);
        let mut acc: Option<Reg> = None;
        while m > 0 {
            if m & 1 == 1 {
                acc = Some(match acc {
                    None => base,
                    Some(a) => self.b.mul(ty, a, base),
                });
            }
            m >>= 1;
            if m > 0 {
                base = self.b.mul(ty, base, base);
            }
        }
        let r = acc.expect("n != 0");
        Val::F(if n < 0 { self.b.div(ty, Arg::F(1.0), r) } else { r })
    }
}

#[allow(clippy::too_many_arguments)]
fn lower(
    g: &Graph,
    outputs: &[(Role, NodeId)],
    step: &Step,
    specs: &[ParamSpec],
    args: Vec<KernelArg>,
    header: Vec<String>,
    entry: &'static str,
    precision: Precision,
    target: Target,
) -> Result<PtxKernel, PtxError> {
    let ty = match precision {
        Precision::F32 => Ty::F32,
        Precision::F64 => Ty::F64,
    };
    let find = |role: Role| args.iter().position(|a| a.role == role);
    let state_buf = (0..step.layout.states.len()).map(|k| find(Role::State(k)).expect("state arg")).collect();
    let input_buf = (0..step.layout.inputs.len()).map(|k| find(Role::Input(k)).expect("input arg")).collect();
    // Param k (layout order) -> its pointer argument, if per-neuron.
    let mut pn = 0;
    let param_buf = specs
        .iter()
        .map(|s| match s {
            ParamSpec::PerNeuron => {
                pn += 1;
                find(Role::Param(pn - 1))
            }
            ParamSpec::Uniform(_) => None,
        })
        .collect();
    // Same rule as the interpreter kernel: a slot is normal when any `Randn(k)` reads it.
    let mut normal = vec![false; step.random_slots as usize];
    for (_, n) in g.nodes() {
        if let Op::Randn(k) = n.op {
            normal[k as usize] = true;
        }
    }
    let mut lw = Lower {
        g,
        b: Builder::new(),
        ty,
        vals: vec![None; g.len()],
        floats: HashMap::new(),
        preds: HashMap::new(),
        state_buf,
        input_buf,
        param_buf,
        normal,
        draws: HashMap::new(),
    };
    let roots: Vec<NodeId> = outputs.iter().map(|(_, r)| *r).collect();
    for id in g.ancestors(&roots) {
        let v = lw.node(id)?;
        lw.vals[id.index()] = Some(v);
    }
    for (role, r) in outputs {
        let buf = find(*role).expect("output arg");
        lw.b.comment(format!("{} <- {}", args[buf].name, args[buf].label));
        let a = match lw.float(*r) {
            // `st` takes a register.
            Arg::F(v) => Arg::R(lw.b.mov(ty, Arg::F(v))),
            a => a,
        };
        lw.b.push(Inst::St { ty, buf, a });
    }
    let Builder { body, counts } = lw.b;
    Ok(PtxKernel { entry, precision, target, args, header, body, counts, checks: false, clocked: false, lists: false, records: false })
}

/// [`compile_step`] with the runtime's non-finite check fused in, instead of a launch
/// of [`propagate::NONFINITE`] over the states after the step: each thread tests the
/// states it has just written and, if one is NaN or infinite, raises the flag word
/// `NONFINITE` would for element `k * n + i` (state k of a population whose states are
/// one allocation, n elements each) into `flags[flag_slot]` (atomic max: the smallest
/// element wins, so the flag is the same). States the step leaves unchanged are not
/// written, so not tested: they are as finite as they were.
pub fn compile_checked_step(step: &Step, specs: &[ParamSpec], precision: Precision, target: Target) -> Result<PtxKernel, PtxError> {
    let mut k = compile_step(step, specs, precision, target)?;
    let ty = match precision {
        Precision::F32 => Ty::F32,
        Precision::F64 => Ty::F64,
    };
    let stored: Vec<(usize, Reg)> = k
        .body
        .iter()
        .filter_map(|inst| match *inst {
            Inst::St { buf, a: Arg::R(r), .. } => match k.args[buf].role {
                Role::State(s) => Some((s, r)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let mut b = Builder { body: std::mem::take(&mut k.body), counts: k.counts };
    if !stored.is_empty() {
        b.comment("non-finite check of the states written (the flag word of propagate::NONFINITE)".into());
        let i = b.index();
        let n = b.param(Scalar::N);
        // From the last state to the first, so that the first non-finite one is kept.
        let mut word = Arg::I(0);
        for &(s, x) in stored.iter().rev() {
            let finite = b.testp(Test::Finite, ty, x);
            let nan = b.testp(Test::NotANumber, ty, x);
            let positive = b.setp(Cmp::Gt, ty, x, Arg::F(0.0));
            let class = b.selp(Ty::U32, Arg::I(2), Arg::I(3), positive);
            let class = b.selp(Ty::U32, Arg::I(1), class, nan);
            let e = match s {
                0 => i,
                _ => {
                    let plane = b.mul(Ty::U64, n, Arg::I(s as u64));
                    b.add(Ty::U64, plane, i)
                }
            };
            let e = b.cvt(None, Ty::U32, Ty::U64, e);
            let w = b.sub(Ty::U32, Arg::I(u64::from(propagate::FLAG_INDEX_MAX)), e);
            let w = b.bin(Bin::Shl, Ty::B32, w, Arg::I(2));
            let w = b.bin(Bin::Or, Ty::B32, w, class);
            word = Arg::R(b.selp(Ty::U32, word, w, finite));
        }
        let Arg::R(word) = word else { unreachable!("one state at least") };
        let raised = b.setp(Cmp::Ne, Ty::U32, word, Arg::I(0));
        b.push(Inst::FlagMax { a: word, p: raised });
    }
    k.body = b.body;
    k.counts = b.counts;
    k.checks = true;
    k.header.push("non-finite check fused in: parameters flags (u32 pointer) and flag_slot follow offset".into());
    Ok(k)
}


impl PtxKernel {
    /// The kernel clearing the inputs `consume` marks (by input index) once it has read
    /// them, for a runtime that sums what arrives into an input from zero each step: the
    /// next step's deliveries then find it zero, with no clearing call of their own. Each
    /// thread stores 0 into its element of every marked input, read or not; those
    /// inputs are loaded through the coherent path (`ld.global`, not `.nc`), since the
    /// kernel writes them.
    pub fn consuming(mut self, consume: &[bool]) -> PtxKernel {
        let ty = match self.precision {
            Precision::F32 => Ty::F32,
            Precision::F64 => Ty::F64,
        };
        let marked: Vec<usize> =
            (0..self.args.len()).filter(|&b| matches!(self.args[b].role, Role::Input(k) if consume.get(k).copied().unwrap_or(false))).collect();
        if marked.is_empty() {
            return self;
        }
        for inst in &mut self.body {
            if let Inst::Ld { buf, read_only, .. } = inst
                && marked.contains(buf)
            {
                *read_only = false;
            }
        }
        let mut b = Builder { body: std::mem::take(&mut self.body), counts: self.counts };
        b.comment("inputs read: cleared for the next step's deliveries".into());
        let zero = b.mov(ty, Arg::F(0.0));
        for &buf in &marked {
            b.push(Inst::St { ty, buf, a: Arg::R(zero) });
            self.args[buf].access = Access::ReadWrite;
        }
        self.body = b.body;
        self.counts = b.counts;
        self.header.push(format!("clears inputs {} after reading them", marked.iter().map(|&b| self.args[b].name.as_str()).collect::<Vec<_>>().join(", ")));
        self
    }

    /// The kernel compacting its spikes as it writes them, instead of a launch of
    /// [`propagate::CLEAR_U32`] and [`propagate::NONZERO_LIST`] after it: element
    /// `i = b * pop_n + j` whose spike is not 0 (NaN included) appends `j` to batch row
    /// b's list (`list[b * pop_n + atomicAdd(counts[append_at + b], 1)] = j`) and counts
    /// itself in `totals[total_at + b]`; element j = 0 of each row sets
    /// `counts[clear_at + b] = 0`. So two counts alternate: a step appends to one and
    /// clears the other, which the next step appends to (the runtime reads the list of
    /// the last step before this step's kernel overwrites it). Parameters, after the
    /// others: `list`, `counts`, `totals` (u32 pointers), `append_at`, `clear_at`,
    /// `total_at`, `pop_n`. A kernel without a spike is returned as it is.
    pub fn listing(mut self) -> PtxKernel {
        let ty = match self.precision {
            Precision::F32 => Ty::F32,
            Precision::F64 => Ty::F64,
        };
        let Some(at) = self.body.iter().position(|i| matches!(*i, Inst::St { buf, a: Arg::R(_), .. } if self.args[buf].role == Role::Spike)) else {
            return self;
        };
        let Inst::St { a: Arg::R(s), .. } = self.body[at] else { unreachable!("found above") };
        self.body.insert(at + 1, Inst::SpikeList { ty, s, records: false });
        self.body.insert(at + 1, Inst::Comment("spike list: this element joins its row's list where it spiked".into()));
        self.lists = true;
        self.header.push("lists its spikes: parameters list, counts, totals, append_at, clear_at, total_at, pop_n come last".into());
        self
    }

    /// A [`PtxKernel::listing`] kernel that also records its spikes, one bit per element:
    /// a spiking element `i = b * pop_n + j` sets bit `j % 32` of word
    /// `rec_at + b * words + j / 32` of `rec` (atomic or), for a runtime that reads a
    /// window of steps' spikes at once. Parameters, after the list's: `rec` (a u32
    /// pointer), `rec_at`, `words`. A kernel that does not list is returned as it is.
    pub fn recording(mut self) -> PtxKernel {
        if !self.lists {
            return self;
        }
        for inst in &mut self.body {
            if let Inst::SpikeList { records, .. } = inst {
                *records = true;
            }
        }
        self.records = true;
        self.header.push("records its spikes as bits: parameters rec, rec_at, words come last".into());
        self
    }

    /// Whether the kernel reads its step or the time (random draws, a time-dependent
    /// drive): only then does it need [`PtxKernel::clocked`] to be replayed at another step.
    pub fn reads_step(&self) -> bool {
        self.body.iter().any(|i| matches!(i, Inst::Param { which: Scalar::Step | Scalar::T, .. }))
    }

    /// The kernel reading its step from the device's clock ([`propagate::TICK`]) instead
    /// of the `step` argument, and its time as `step * dt` (the network's `dt`, in f64,
    /// as the host computes `t`) instead of `t`: a launch's arguments no longer depend on
    /// the step, so a recorded window of steps replays at any step. It takes one more
    /// parameter, `clock`, after the others; `step` and `t` are still passed, unread.
    pub fn clocked(mut self, dt: f64) -> PtxKernel {
        let mut b = Builder { body: Vec::new(), counts: self.counts };
        for inst in std::mem::take(&mut self.body) {
            match inst {
                Inst::Param { d, which: Scalar::Step } => {
                    let c = b.reg(Ty::F64);
                    b.push(Inst::Clock { d: c });
                    b.push(Inst::Cvt { rnd: Some(Rnd::Rzi), dty: Ty::U64, sty: Ty::F64, d, a: c });
                }
                Inst::Param { d, which: Scalar::T } => {
                    let c = b.reg(Ty::F64);
                    b.push(Inst::Clock { d: c });
                    b.push(Inst::Bin { op: Bin::Mul, ty: Ty::F64, d, a: Arg::R(c), b: Arg::F(dt) });
                }
                other => b.push(other),
            }
        }
        self.body = b.body;
        self.counts = b.counts;
        self.clocked = true;
        self.header.push("step and time read from the device's clock: parameter clock (f64 pointer) comes last".into());
        self
    }

    /// Number of instructions of the element body (without prologue).
    pub fn body_len(&self) -> usize {
        self.body.iter().filter(|i| !matches!(i, Inst::Comment(_))).count()
    }

    /// The PTX module text: header, the `.entry` with its prologue (element index, the
    /// `i < n` guard, one global address per used pointer) and the body.
    pub fn ptx(&self) -> String {
        module(self.target, &[(self.entry, self)])
    }

    /// The comment that describes the kernel (what it computes, its pointer arguments).
    fn comments(&self) -> String {
        let mut o = String::new();
        for h in &self.header {
            let _ = writeln!(o, "// {h}");
        }
        let used = self.used_args();
        let _ = writeln!(o, "//\n// Pointer arguments ({} values each, n elements):", self.elem_name());
        for a in &self.args {
            let acc = match a.access {
                Access::Read => "in",
                Access::Write => "out",
                Access::ReadWrite => "in/out",
            };
            let unused = if used.iter().zip(&self.args).any(|(u, b)| *u && b.name == a.name) { "" } else { " (unused)" };
            let _ = writeln!(o, "//   {:10} {:6} {}{unused}", a.name, acc, a.label);
        }
        o
    }

    fn elem_name(&self) -> &'static str {
        match self.precision {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }

    /// Which pointer arguments the body loads or stores.
    fn used_args(&self) -> Vec<bool> {
        let mut used = vec![false; self.args.len()];
        for inst in &self.body {
            match *inst {
                Inst::Ld { buf, .. } | Inst::St { buf, .. } => used[buf] = true,
                _ => {}
            }
        }
        used
    }

    /// The `.entry` itself, named `entry`.
    fn entry_text(&self, entry: &str) -> String {
        let elem = match self.precision {
            Precision::F32 => 4u32,
            Precision::F64 => 8,
        };
        let used = self.used_args();
        let mut o = String::new();
        let _ = writeln!(o, ".visible .entry {entry}(");
        let mut params: Vec<String> = self.args.iter().map(|a| format!("\t.param .u64 {}", a.name)).collect();
        params.extend(["\t.param .u64 n", "\t.param .f64 t", "\t.param .u64 seed", "\t.param .u64 step", "\t.param .u64 offset"].map(String::from));
        if self.checks {
            params.extend(["\t.param .u64 flags", "\t.param .u64 flag_slot"].map(String::from));
        }
        if self.clocked {
            params.push("\t.param .u64 clock".into());
        }
        if self.lists {
            params.extend(["list", "counts", "totals", "append_at", "clear_at", "total_at", "pop_n"].map(|p| format!("\t.param .u64 {p}")));
        }
        if self.records {
            params.extend(["rec", "rec_at", "words"].map(|p| format!("\t.param .u64 {p}")));
        }
        let _ = writeln!(o, "{}\n)\n{{", params.join(",\n"));
        let _ = writeln!(o, "\t.reg .pred %p_out;\n\t.reg .b32 %r_ctaid, %r_ntid, %r_tid;\n\t.reg .b64 %rd_i, %rd_n, %rd_off;");
        if self.checks {
            o.push_str("\t.reg .b64 %rd_flag, %rd_slot;\n");
        }
        if self.clocked {
            o.push_str("\t.reg .b64 %rd_clock;\n");
        }
        if self.lists {
            o.push_str("\t.reg .b64 %rd_list, %rd_lens, %rd_tot, %rd_app, %rd_clr, %rd_popn;\n");
        }
        if self.records {
            o.push_str("\t.reg .b64 %rd_rec, %rd_words;\n");
        }
        if !self.args.is_empty() {
            let _ = writeln!(o, "\t.reg .b64 %rd_a<{}>;", self.args.len());
        }
        asm::print_decls(&mut o, &self.counts);
        // i = blockIdx.x * blockDim.x + threadIdx.x, in 64 bits (no overflow past 2^32).
        let _ = writeln!(o, "\n\tmov.u32 %r_ctaid, %ctaid.x;\n\tmov.u32 %r_ntid, %ntid.x;\n\tmov.u32 %r_tid, %tid.x;");
        let _ = writeln!(o, "\tcvt.u64.u32 %rd_i, %r_tid;\n\tmad.wide.u32 %rd_i, %r_ctaid, %r_ntid, %rd_i;");
        let _ = writeln!(o, "\tld.param.u64 %rd_n, [n];\n\tsetp.ge.u64 %p_out, %rd_i, %rd_n;\n\t@%p_out bra $L_end;");
        let _ = writeln!(o, "\tshl.b64 %rd_off, %rd_i, {};", elem.trailing_zeros());
        for (k, a) in self.args.iter().enumerate().filter(|(k, _)| used[*k]) {
            let _ = writeln!(o, "\tld.param.u64 %rd_a{k}, [{}];", a.name);
            let _ = writeln!(o, "\tcvta.to.global.u64 %rd_a{k}, %rd_a{k};");
            let _ = writeln!(o, "\tadd.s64 %rd_a{k}, %rd_a{k}, %rd_off;");
        }
        if self.checks {
            o.push_str("\tld.param.u64 %rd_flag, [flags];\n\tcvta.to.global.u64 %rd_flag, %rd_flag;\n");
            o.push_str("\tld.param.u64 %rd_slot, [flag_slot];\n\tshl.b64 %rd_slot, %rd_slot, 2;\n\tadd.s64 %rd_flag, %rd_flag, %rd_slot;\n");
        }
        if self.clocked {
            o.push_str("\tld.param.u64 %rd_clock, [clock];\n\tcvta.to.global.u64 %rd_clock, %rd_clock;\n");
        }
        if self.lists {
            // %rd_list: the list; %rd_app / %rd_clr / %rd_tot: batch row 0's count to append
            // to, count to clear, and spike total (the body adds 4 b for row b).
            o.push_str("\tld.param.u64 %rd_list, [list];\n\tcvta.to.global.u64 %rd_list, %rd_list;\n");
            o.push_str("\tld.param.u64 %rd_lens, [counts];\n\tcvta.to.global.u64 %rd_lens, %rd_lens;\n");
            for (r, p) in [("app", "append_at"), ("clr", "clear_at")] {
                let _ = writeln!(o, "\tld.param.u64 %rd_{r}, [{p}];\n\tshl.b64 %rd_{r}, %rd_{r}, 2;\n\tadd.s64 %rd_{r}, %rd_lens, %rd_{r};");
            }
            o.push_str("\tld.param.u64 %rd_tot, [totals];\n\tcvta.to.global.u64 %rd_tot, %rd_tot;\n");
            o.push_str("\tld.param.u64 %rd_lens, [total_at];\n\tshl.b64 %rd_lens, %rd_lens, 2;\n\tadd.s64 %rd_tot, %rd_tot, %rd_lens;\n");
            o.push_str("\tld.param.u64 %rd_popn, [pop_n];\n");
        }
        if self.records {
            // %rd_rec: word rec_at of the record (this step's first row).
            o.push_str("\tld.param.u64 %rd_rec, [rec];\n\tcvta.to.global.u64 %rd_rec, %rd_rec;\n");
            o.push_str("\tld.param.u64 %rd_words, [rec_at];\n\tshl.b64 %rd_words, %rd_words, 2;\n\tadd.s64 %rd_rec, %rd_rec, %rd_words;\n");
            o.push_str("\tld.param.u64 %rd_words, [words];\n");
        }
        o.push('\n');
        for inst in &self.body {
            asm::print_inst(&mut o, inst, &|buf| format!("%rd_a{buf}"));
        }
        let _ = writeln!(o, "$L_end:\n\tret;\n}}");
        o
    }

    /// Runs the kernel's instruction stream on the CPU, element by element, over
    /// `bufs` (one per pointer argument, in [`PtxKernel::args`] order, all of the same
    /// length n; values are rounded to the kernel's precision when loaded). This checks
    /// the emitted code without a GPU: same instructions, same IEEE roundings and `.ftz`
    /// flushing, with the approximate f32 instructions (`ex2`, `lg2`, `sin`, `cos`)
    /// replaced by correctly rounded ones.
    ///
    /// Returns what the kernel raised and listed besides ([`Emulated`]).
    pub fn emulate(&self, bufs: &mut [Vec<f64>], t: f64, random: RandomCtx) -> Emulated {
        assert_eq!(bufs.len(), self.args.len(), "one buffer per pointer argument");
        let n = bufs.first().map_or(0, |b| b.len());
        assert!(bufs.iter().all(|b| b.len() == n), "buffers of different lengths");
        let f32k = self.precision == Precision::F32;
        let scalar = |s: Scalar| match s {
            Scalar::N => n as u64,
            Scalar::T => t.to_bits(),
            Scalar::Seed => random.seed,
            Scalar::Step => random.step,
            Scalar::Offset => random.offset,
        };
        let mut m = asm::Machine::new(&self.counts);
        let cell = std::cell::RefCell::new(bufs);
        for i in 0..n {
            let mut ld = |buf: usize| {
                let v = cell.borrow()[buf][i];
                if f32k { f64::from(v as f32) } else { v }
            };
            let mut st = |buf: usize, v: f64| cell.borrow_mut()[buf][i] = v;
            m.run(&self.body, i as u64, &scalar, &mut ld, &mut st);
        }
        Emulated { flag: m.flag, listed: m.listed }
    }
}
