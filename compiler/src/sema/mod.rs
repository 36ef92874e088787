//! Front end, part 2: AST → checked [`Program`].
//!
//! `load` reads a file and its imports; `model` checks neurons and synapses (names,
//! kinds, physical dimensions); `network` checks networks against the models; `expr`
//! types expressions. The output holds values in SI units and resolved symbols, so later
//! stages never look at names or units again.

mod bounds;
mod consts;
mod expr;
mod load;
mod model;
mod network;
pub use network::ConvShape;

pub use load::{LoadOptions, Loaded, load};

use crate::diag::Diagnostic;
use crate::source::SourceMap;
use crate::span::Span;
use crate::syntax::ast::{BinOp, ModelKind};
use crate::units::Dim;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Index of a symbol in its model's [`Model::symbols`].
pub type SymId = usize;
/// Index of a model in [`Program::models`].
pub type ModelId = usize;

/// Everything the front end checked: models and networks, ready for compilation.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub models: Vec<Model>,
    pub networks: Vec<NetworkDef>,
}

impl Program {
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }
    pub fn network(&self, name: &str) -> Option<&NetworkDef> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// The type of an expression: a number with a dimension, or a truth value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Num(Dim),
    Bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymKind {
    Param,
    State,
    /// A port: the sum of every projection into it (read-only).
    Input,
    /// A derived value (`let`), inlined where it is used.
    Let,
    /// Synapse: the weight of the connection (`w`).
    Weight,
    /// Synapse: 1 in a step where the presynaptic neuron spiked (`pre`).
    PreSpike,
    /// Synapse: a postsynaptic variable (`v_post` reads the target's `v`).
    Post,
    /// Simulation time `t` (s).
    Time,
    /// The time step `dt` (s).
    Dt,
}

#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    pub kind: SymKind,
    pub dim: Dim,
    /// Param default, state initial value, or let definition (SI units).
    pub value: Option<TExpr>,
    /// A per-neuron param learned by training.
    pub trainable: bool,
    /// `trainable bounds (lo, hi)` (SI): every optimiser step is projected back into it.
    pub bounds: Option<(f64, f64)>,
    pub span: Span,
}

/// Built-in functions (all element-wise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    Exp,
    Log,
    Sqrt,
    Tanh,
    Sigmoid,
    Abs,
    Min,
    Max,
    Clip,
    Sin,
    Cos,
    /// `exprel(x) = (exp(x) - 1) / x`, finite at 0 (Hodgkin–Huxley rate functions).
    Exprel,
    /// Uniform random number in [0, 1).
    Rand,
    /// Standard normal random number.
    Randn,
    /// 1 with probability `rate * dt` in this step, else 0.
    Poisson,
    /// White noise: a standard normal sample scaled by 1/sqrt(dt) (dimension s^-1/2).
    Xi,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Sqrt => "sqrt",
            Func::Tanh => "tanh",
            Func::Sigmoid => "sigmoid",
            Func::Abs => "abs",
            Func::Min => "min",
            Func::Max => "max",
            Func::Clip => "clip",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Exprel => "exprel",
            Func::Rand => "rand",
            Func::Randn => "randn",
            Func::Poisson => "poisson",
            Func::Xi => "xi",
        }
    }

    pub const ALL: [Func; 16] = [
        Func::Exp,
        Func::Log,
        Func::Sqrt,
        Func::Tanh,
        Func::Sigmoid,
        Func::Abs,
        Func::Min,
        Func::Max,
        Func::Clip,
        Func::Sin,
        Func::Cos,
        Func::Exprel,
        Func::Rand,
        Func::Randn,
        Func::Poisson,
        Func::Xi,
    ];

    pub fn by_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The function of constant arguments (`None` for the random ones).
    pub fn apply(self, v: &[f64]) -> Option<f64> {
        Some(match self {
            Func::Exp => v[0].exp(),
            Func::Log => v[0].ln(),
            Func::Sqrt => v[0].sqrt(),
            Func::Tanh => v[0].tanh(),
            Func::Sigmoid => 1.0 / (1.0 + (-v[0]).exp()),
            Func::Abs => v[0].abs(),
            Func::Min => v[0].min(v[1]),
            Func::Max => v[0].max(v[1]),
            Func::Clip => v[0].max(v[1]).min(v[2]),
            Func::Sin => v[0].sin(),
            Func::Cos => v[0].cos(),
            Func::Exprel => {
                if v[0].abs() < 1e-8 { 1.0 + v[0] / 2.0 } else { v[0].exp_m1() / v[0] }
            }
            Func::Rand | Func::Randn | Func::Poisson | Func::Xi => return None,
        })
    }

    pub fn is_random(self) -> bool {
        matches!(self, Func::Rand | Func::Randn | Func::Poisson | Func::Xi)
    }
}

/// A checked expression: names resolved, user functions and `let`s inlined where used,
/// numbers in SI units, every node typed.
#[derive(Clone, Debug, PartialEq)]
pub struct TExpr {
    pub kind: TKind,
    pub ty: Ty,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TKind {
    Const(f64),
    Sym(SymId),
    Neg(Box<TExpr>),
    Not(Box<TExpr>),
    Binary(BinOp, Box<TExpr>, Box<TExpr>),
    If(Box<TExpr>, Box<TExpr>, Box<TExpr>),
    Call(Func, Vec<TExpr>),
    /// A subexpression used in several places (an inlined function call, a function's
    /// argument): every use holds the same node, so a chain of calls stays linear in
    /// size. Never random (random draws must stay distinct per use).
    Shared(Arc<TExpr>),
}

impl TExpr {
    /// The expression itself, looking through [`TKind::Shared`] wrappers.
    pub fn peel(&self) -> &TExpr {
        match &self.kind {
            TKind::Shared(e) => e.peel(),
            _ => self,
        }
    }

    /// The value of an expression made of constants only (no symbols, no randomness).
    pub fn const_value(&self) -> Option<f64> {
        self.const_memo(&mut HashMap::new())
    }

    fn const_memo(&self, memo: &mut HashMap<*const TExpr, Option<f64>>) -> Option<f64> {
        let mut cv = |e: &TExpr| crate::deep(|| e.const_memo(memo));
        Some(match &self.kind {
            TKind::Const(v) => *v,
            TKind::Shared(e) => match memo.get(&Arc::as_ptr(e)) {
                Some(v) => (*v)?,
                None => {
                    let v = e.const_memo(memo);
                    memo.insert(Arc::as_ptr(e), v);
                    v?
                }
            },
            TKind::Sym(_) => return None,
            TKind::Neg(a) => -cv(a)?,
            TKind::Not(a) => f64::from(cv(a)? == 0.0),
            TKind::Binary(op, a, b) => consts::binary(*op, cv(a)?, cv(b)?),
            TKind::If(c, a, b) => {
                if cv(c)? != 0.0 {
                    cv(a)?
                } else {
                    cv(b)?
                }
            }
            TKind::Call(f, args) => {
                if f.is_random() {
                    return None;
                }
                let v: Option<Vec<f64>> = args.iter().map(&mut cv).collect();
                f.apply(&v?)?
            }
        })
    }

    /// Rebuilds the expression with every symbol replaced by `f(symbol, span)`
    /// (`None` keeps it). Used to compose synapses into their target neuron. Shared
    /// subexpressions are rebuilt once and stay shared.
    pub fn map_syms(&self, f: &mut dyn FnMut(SymId, Span) -> Option<TExpr>) -> TExpr {
        self.map_syms_memo(f, &mut HashMap::new())
    }

    fn map_syms_memo(&self, f: &mut dyn FnMut(SymId, Span) -> Option<TExpr>, memo: &mut HashMap<*const TExpr, Arc<TExpr>>) -> TExpr {
        let mut go = |e: &TExpr| Box::new(crate::deep(|| e.map_syms_memo(f, memo)));
        let kind = match &self.kind {
            TKind::Const(v) => TKind::Const(*v),
            TKind::Sym(s) => match f(*s, self.span) {
                Some(e) => return e,
                None => TKind::Sym(*s),
            },
            TKind::Neg(a) => TKind::Neg(go(a)),
            TKind::Not(a) => TKind::Not(go(a)),
            TKind::Binary(op, a, b) => TKind::Binary(*op, go(a), go(b)),
            TKind::If(c, a, b) => TKind::If(go(c), go(a), go(b)),
            TKind::Call(func, args) => TKind::Call(*func, args.iter().map(|a| *go(a)).collect()),
            TKind::Shared(e) => {
                let key = Arc::as_ptr(e);
                let mapped = match memo.get(&key) {
                    Some(m) => m.clone(),
                    None => {
                        let m = Arc::new(crate::deep(|| e.map_syms_memo(f, memo)));
                        memo.insert(key, m.clone());
                        m
                    }
                };
                TKind::Shared(mapped)
            }
        };
        TExpr { kind, ty: self.ty, span: self.span }
    }

    /// Calls `f` on every symbol this expression reads (once per use; a shared
    /// subexpression is visited once).
    pub fn visit_syms(&self, f: &mut dyn FnMut(SymId)) {
        self.visit_syms_seen(f, &mut HashSet::new())
    }

    fn visit_syms_seen(&self, f: &mut dyn FnMut(SymId), seen: &mut HashSet<*const TExpr>) {
        crate::deep(|| self.visit_syms_at(f, seen))
    }

    fn visit_syms_at(&self, f: &mut dyn FnMut(SymId), seen: &mut HashSet<*const TExpr>) {
        match &self.kind {
            TKind::Const(_) => {}
            TKind::Sym(s) => f(*s),
            TKind::Neg(a) | TKind::Not(a) => a.visit_syms_seen(f, seen),
            TKind::Binary(_, a, b) => {
                a.visit_syms_seen(f, seen);
                b.visit_syms_seen(f, seen);
            }
            TKind::If(c, a, b) => {
                c.visit_syms_seen(f, seen);
                a.visit_syms_seen(f, seen);
                b.visit_syms_seen(f, seen);
            }
            TKind::Call(_, args) => args.iter().for_each(|a| a.visit_syms_seen(f, seen)),
            TKind::Shared(e) => {
                if seen.insert(Arc::as_ptr(e)) {
                    e.visit_syms_seen(f, seen);
                }
            }
        }
    }
}

/// Integration method of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Exact,
    ExpEuler,
    Euler,
    Rk2,
    Rk4,
}

impl Method {
    pub const ALL: [(&'static str, Method); 5] = [
        ("exact", Method::Exact),
        ("exp_euler", Method::ExpEuler),
        ("euler", Method::Euler),
        ("rk2", Method::Rk2),
        ("rk4", Method::Rk4),
    ];
    pub fn name(self) -> &'static str {
        Method::ALL.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// Surrogate gradient used for the derivative of the spike (forward: Heaviside).
#[derive(Clone, Debug, PartialEq)]
pub enum Surrogate {
    /// A built-in surrogate with its parameters (defaults filled in), e.g.
    /// `relu_grad` with `[("alpha", 0.3), ("width", 1.0)]`.
    Builtin { name: &'static str, params: Vec<(&'static str, f64)> },
    /// A user function `fn sg(x, ...) = ...` giving dH/dx; remaining arguments bound.
    User { name: String, body: Box<TExpr>, arg: SymId },
}

/// The built-in surrogates with their parameter names and default values
/// (braintools conventions).
pub const SURROGATES: &[(&str, &[(&str, f64)])] = &[
    ("relu_grad", &[("alpha", 0.3), ("width", 1.0)]),
    ("sigmoid", &[("alpha", 4.0)]),
    ("boxcar", &[("width", 1.0)]),
    ("gaussian", &[("sigma", 0.5), ("alpha", 0.5)]),
    ("multi_gaussian", &[("h", 0.15), ("s", 6.0), ("sigma", 0.5), ("scale", 0.5)]),
    ("fast_sigmoid", &[("slope", 25.0)]),
    ("arctan", &[("alpha", 1.0)]),
    ("slayer", &[("alpha", 1.0)]),
];

#[derive(Clone, Debug)]
pub struct SpikeDef {
    /// The condition as written (type Bool).
    pub condition: TExpr,
    pub surrogate: Surrogate,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
}

/// One update of an event block: `target op= value`.
#[derive(Clone, Debug)]
pub struct Update {
    pub target: SymId,
    pub op: UpdateOp,
    pub value: TExpr,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Refractory {
    pub period: TExpr,
    /// States held at their value while refractory.
    pub clamp: Vec<SymId>,
    pub span: Span,
}

/// A checked neuron or synapse model.
#[derive(Clone, Debug)]
pub struct Model {
    pub kind: ModelKind,
    pub name: String,
    pub span: Span,
    pub symbols: Vec<Symbol>,
    /// `d state / dt = rhs`, in declaration order of the equations.
    pub odes: Vec<(SymId, TExpr)>,
    pub spike: Option<SpikeDef>,
    /// `on spike` (neuron) updates, in order.
    pub on_spike: Vec<Update>,
    /// The spike's gradient is stopped in the reset (`on spike detach`, `reset ... detach`).
    pub reset_detached: bool,
    /// `on pre` (synapse) updates, in order.
    pub on_pre: Vec<Update>,
    /// `on post` (synapse) updates, in order: at the target neuron's spikes (plasticity).
    pub on_post: Vec<Update>,
    pub refractory: Option<Refractory>,
    /// The integrator asked for; `None` lets the compiler choose.
    pub method: Option<Method>,
    /// Synapse: `output PORT = value`.
    pub output: Option<(String, TExpr)>,
    pub per_synapse: bool,
    /// Synapse: the dimension of `w` if the model fixes it, `None` if it is the
    /// dimension of whatever port the synapse drives.
    pub weight_dim: Option<Dim>,
}

impl Model {
    /// An empty neuron model derived from a synapse (a presynaptic stage, a plasticity
    /// rule): no symbols or equations yet, the synapse's integration method.
    pub fn derived(name: String, span: Span, method: Option<Method>) -> Model {
        Model {
            kind: ModelKind::Neuron,
            name,
            span,
            symbols: Vec::new(),
            odes: Vec::new(),
            spike: None,
            on_spike: Vec::new(),
            reset_detached: false,
            on_pre: Vec::new(),
            on_post: Vec::new(),
            refractory: None,
            method,
            output: None,
            per_synapse: false,
            weight_dim: None,
        }
    }

    pub fn sym(&self, name: &str) -> Option<SymId> {
        self.symbols.iter().position(|s| s.name == name)
    }
    pub fn syms_of(&self, kind: SymKind) -> impl Iterator<Item = (SymId, &Symbol)> {
        self.symbols.iter().enumerate().filter(move |(_, s)| s.kind == kind)
    }
    pub fn states(&self) -> impl Iterator<Item = (SymId, &Symbol)> {
        self.syms_of(SymKind::State)
    }
    pub fn params(&self) -> impl Iterator<Item = (SymId, &Symbol)> {
        self.syms_of(SymKind::Param)
    }
    pub fn inputs(&self) -> impl Iterator<Item = (SymId, &Symbol)> {
        self.syms_of(SymKind::Input)
    }
}

// ---------------------------------------------------------------- networks

/// A per-neuron (or per-connection) initial value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Const(f64),
    Uniform { low: f64, high: f64 },
    Normal { mean: f64, std: f64 },
    /// One value a neuron from a data file: [`NetworkDef::data`]`[k]` (`tau =
    /// load("params.npz", "tau") * 1 ms`). Only a population's settings hold one; the
    /// runtime reads the file (`snnc_runtime::data`), so [`crate::rng::sample`] gives NaN.
    Data(usize),
}

/// A population's param or initial state read from a data file, one value a neuron.
#[derive(Clone, Debug, PartialEq)]
pub struct DataRef {
    /// The file, relative to the directory of the `.snn` file resolved.
    pub path: String,
    pub array: String,
    /// What a value of the file is multiplied by (SI): `load(...) * 1 ms` is 1e-3.
    pub scale: f64,
    pub pop: usize,
    /// The param or state set.
    pub name: String,
    pub span: Span,
}

/// A value of a connection (its weights, its delay): drawn per synapse from an
/// initialiser, or computed from the synapse's indices and the neurons' params.
#[derive(Clone, Debug, PartialEq)]
pub enum SynInit {
    Draw(Init),
    Expr(Arc<IndexExpr>),
}

impl SynInit {
    /// The same value for every synapse, if it is one.
    pub fn constant(&self) -> Option<f64> {
        match self {
            SynInit::Draw(Init::Const(v)) => Some(*v),
            _ => None,
        }
    }
}

/// An expression of a synapse's presynaptic index `i`, postsynaptic index `j`, the
/// population sizes `N_pre` and `N_post`, and the params of its two neurons (`x_pre`,
/// `x_post`): `weight 0.5 * exp(-(i - j)^2 / 50) mV`. Symbol `k` of `expr` is `vars[k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexExpr {
    pub expr: TExpr,
    pub vars: Vec<IndexVar>,
}

/// What a symbol of an [`IndexExpr`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexVar {
    /// `i`, the presynaptic index.
    Pre,
    /// `j`, the postsynaptic index.
    Post,
    NPre,
    NPost,
    /// `NAME_pre`: param `NAME` of the presynaptic neuron.
    PreParam(String),
    /// `NAME_post`: param `NAME` of the postsynaptic neuron.
    PostParam(String),
}

impl IndexExpr {
    /// The value with symbol `k` equal to `vals[k]`.
    pub fn eval(&self, vals: &[f64]) -> f64 {
        eval_with(&self.expr, vals)
    }
}

/// `e` with `Sym(k)` read from `vals[k]` (no random draws: sema refuses them here).
fn eval_with(e: &TExpr, vals: &[f64]) -> f64 {
    let ev = |a: &TExpr| crate::deep(|| eval_with(a, vals));
    match &e.kind {
        TKind::Const(v) => *v,
        TKind::Sym(s) => vals[*s],
        TKind::Neg(a) => -ev(a),
        TKind::Not(a) => f64::from(ev(a) == 0.0),
        TKind::Binary(op, a, b) => consts::binary(*op, ev(a), ev(b)),
        TKind::If(c, a, b) => {
            if ev(c) != 0.0 { ev(a) } else { ev(b) }
        }
        TKind::Call(f, args) => {
            let v: Vec<f64> = args.iter().map(ev).collect();
            f.apply(&v).unwrap_or(f64::NAN)
        }
        TKind::Shared(a) => ev(a),
    }
}

#[derive(Clone, Debug)]
pub struct NetInput {
    pub name: String,
    pub size: usize,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopKind {
    Layer,
    Readout,
}

/// A readout model: a stdlib/user neuron model, or the built-in stateless `Linear`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopModel {
    Model(ModelId),
    Linear,
}

#[derive(Clone, Debug)]
pub struct Population {
    pub name: String,
    pub kind: PopKind,
    pub model: PopModel,
    pub size: usize,
    /// Overridden params and initial states.
    pub settings: Vec<(SymId, Init)>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Input(usize),
    Pop(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
    Dense,
    Sparse { p: f64 },
    /// `sparse p = EXPR` of the indices (`exp(-abs(i - j) / 10)`): each pair connected
    /// with its own probability, every pair looked at.
    SparseExpr { p: Arc<IndexExpr> },
    OneToOne,
    File { path: String },
    Procedural { p: f64 },
    /// `conv(...)` / `pool(...)`: a sparse projection whose synapses share the weights
    /// of a kernel (sema/network/conv.rs).
    Conv(ConvShape),
}

#[derive(Clone, Debug)]
pub struct Projection {
    /// `as NAME`, else `FROM_to_TO`.
    pub name: String,
    pub from: Source,
    /// `connect rec.v -> out`: the source population's state `v` (its value every
    /// step) instead of its spikes. Only readouts read states (a membrane-potential
    /// readout, as in the BrainScale experiments).
    pub from_state: Option<String>,
    pub to: usize,
    /// The input port of the target population's model; `None` for `Linear` readouts.
    pub port: Option<SymId>,
    pub synapse: Option<(ModelId, Vec<(SymId, Init)>)>,
    pub topology: Topology,
    /// Weight initialiser (per synapse); `None` picks the default for the topology.
    pub init: Option<SynInit>,
    /// The dimension of the weights of this projection.
    pub weight_dim: Dim,
    pub trainable: bool,
    /// `trainable bounds (lo, hi)` (SI): every weight is projected back into it after
    /// each optimiser step.
    pub bounds: Option<(f64, f64)>,
    /// `dropout P`: while training, each presynaptic value is dropped with probability P
    /// per step and the others scaled by 1 / (1 - P).
    pub dropout: Option<f64>,
    /// `batch_norm`: the delivered current `x W` normalised per target neuron over the
    /// batch at each step while training (running statistics in evaluation), then scaled
    /// and shifted by the trainable `NAME.gamma` and `NAME.beta` (docs/language.md §9.5).
    pub batch_norm: bool,
    pub no_self: bool,
    pub bias: bool,
    /// Delay in seconds: one for every synapse (`delay 2 ms`), or one per synapse
    /// (`delay U(1 ms, 10 ms)`, an expression of the indices, a file's `delay`).
    pub delay: Option<SynInit>,
    /// `adapter rank R`: the weights are W + U V, with U (pre x R) and V (R x post)
    /// trained as `NAME.U` and `NAME.V`.
    pub adapter: Option<usize>,
    /// Dale's law: the sign every weight keeps (at initialisation and through training).
    pub sign: Option<crate::syntax::ast::Sign>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Drive {
    pub pop: usize,
    pub port: SymId,
    pub value: Init,
    pub span: Span,
}

/// A value in a `train { }` block: names (`es_d_rtrl`), numbers, strings.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainValue {
    Name(String),
    Number(f64),
    Text(String),
}

#[derive(Clone, Debug)]
pub struct NetworkDef {
    pub name: String,
    pub span: Span,
    /// Time step in seconds, if the network sets one.
    pub dt: Option<f64>,
    pub seed: Option<u64>,
    pub inputs: Vec<NetInput>,
    pub populations: Vec<Population>,
    pub drives: Vec<Drive>,
    pub projections: Vec<Projection>,
    pub train: Vec<(String, TrainValue)>,
    /// The per-neuron values read from files (`Init::Data(k)` is `data[k]`).
    pub data: Vec<DataRef>,
}

/// Checks a parsed-and-loaded set of files. Returns the program and every diagnostic
/// (errors and warnings); the program is only meaningful when no error was reported.
pub fn check(loaded: &Loaded, sources: &SourceMap) -> (Program, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut program = Program::default();
    if loaded.syntax_errors {
        return (program, diags);
    }
    let scope = model::collect(loaded, &mut diags);
    for m in scope.models_in_order() {
        if let Some(checked) = model::check_model(m, &scope, &mut diags) {
            program.models.push(checked);
        }
    }
    for n in &loaded.networks() {
        // Data files (`from "conn.npz"`) are found next to the file that names them.
        let dir = std::path::Path::new(sources.name(n.span.file)).parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        if let Some(net) = network::check_network(n, &program, &scope, &dir, &mut diags) {
            program.networks.push(net);
        }
    }
    (program, diags)
}

/// Parses, loads and checks `path` (and its imports) in one go.
pub fn check_path(
    path: &std::path::Path,
    opts: &LoadOptions,
    sources: &mut SourceMap,
) -> (Program, Vec<Diagnostic>) {
    let (loaded, mut diags) = load(path, opts, sources);
    let (program, more) = check(&loaded, sources);
    diags.extend(more);
    (program, diags)
}

/// Checks in-memory source text (tests, fuzzing, editors).
pub fn check_source(name: &str, text: &str, sources: &mut SourceMap) -> (Program, Vec<Diagnostic>) {
    check_source_with(name, text, &LoadOptions::default(), sources)
}

/// [`check_source`] with a search path for its imports (the Python module's `compile`).
pub fn check_source_with(name: &str, text: &str, opts: &LoadOptions, sources: &mut SourceMap) -> (Program, Vec<Diagnostic>) {
    let (loaded, mut diags) = load::load_source(name, text, opts, sources);
    let (program, more) = check(&loaded, sources);
    diags.extend(more);
    (program, diags)
}
