//! The abstract syntax tree of a `.snn` file, exactly as written.
//!
//! Every node carries the [`Span`] of the source it came from, so that every later
//! pass can point at the text. Nothing here is resolved or checked: that is the job of
//! [`crate::sema`].

use crate::span::Span;

/// A name as written, with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One parsed `.snn` file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Import(Import),
    Function(FnDef),
    Neuron(Model),
    Synapse(Model),
    Network(Network),
    /// `method euler` at the top of a file: the default integrator of its models.
    Method { method: Ident, span: Span },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    /// The path exactly as written between the quotes.
    pub path: String,
    pub span: Span,
}

/// `fn name(a, b) = expr`
#[derive(Clone, Debug, PartialEq)]
pub struct FnDef {
    pub name: Ident,
    pub params: Vec<Ident>,
    pub body: Expr,
    pub span: Span,
}

/// Which kind of block a [`Model`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Neuron,
    Synapse,
}

/// A `neuron` or `synapse` block: both are lists of declarations and equations.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub kind: ModelKind,
    pub name: Ident,
    pub body: Vec<ModelItem>,
    pub span: Span,
}

/// The role of a declared name inside a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclKind {
    /// `param`: constant during a run (may be heterogeneous across neurons).
    Param,
    /// `state`: evolves by an ODE and/or by events.
    State,
    /// `input`: a port summed from every projection into it; read-only.
    Input,
    /// `let`: a derived value, recomputed every step.
    Let,
}

impl DeclKind {
    pub fn keyword(self) -> &'static str {
        match self {
            DeclKind::Param => "param",
            DeclKind::State => "state",
            DeclKind::Input => "input",
            DeclKind::Let => "let",
        }
    }
}

/// `param tau: ms = 10 ms`, `state v = 0`, `input I: pA`, `let u = v - v_th`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decl {
    pub kind: DeclKind,
    pub name: Ident,
    /// The declared unit, if written.
    pub unit: Option<UnitExpr>,
    /// Default value (param/state), or the defining expression (let).
    pub value: Option<Expr>,
    /// `trainable` after a param: a per-neuron parameter learned by training.
    pub trainable: bool,
    /// `trainable bounds (lo, hi)`: the interval every update is projected back into.
    pub bounds: Option<Bounds>,
    pub span: Span,
}

/// `bounds (lo, hi)` after `trainable`: the closed interval a trained value stays in.
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    pub lo: Expr,
    pub hi: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ModelItem {
    Decl(Decl),
    /// `dv/dt = expr`
    Ode {
        state: Ident,
        rhs: Expr,
        span: Span,
    },
    /// `spike when cond surrogate f(...)`
    Spike {
        condition: Expr,
        surrogate: Option<Call>,
        span: Span,
    },
    /// `on spike { ... }` or `on pre { ... }`
    On {
        event: Ident,
        body: Vec<Stmt>,
        /// `on spike detach { ... }`: the spike's gradient is stopped in these updates.
        detach: bool,
        span: Span,
    },
    /// `reset v = expr`: shorthand for a hard reset `on spike { v = expr }`.
    Reset {
        target: Ident,
        value: Expr,
        detach: bool,
        span: Span,
    },
    /// `refractory t_ref` (optionally `refractory t_ref clamp v, w`).
    Refractory {
        period: Expr,
        clamp: Vec<Ident>,
        span: Span,
    },
    /// `method exact | exp_euler | euler | rk2 | rk4`
    Method { method: Ident, span: Span },
    /// `output I = expr` (synapse): drives the port `I` of the postsynaptic neuron.
    Output {
        port: Ident,
        value: Expr,
        span: Span,
    },
    /// `per_synapse`: the synapse keeps its state per connection instead of merged per target.
    PerSynapse { span: Span },
    Function(FnDef),
}

impl ModelItem {
    pub fn span(&self) -> Span {
        match self {
            ModelItem::Decl(d) => d.span,
            ModelItem::Ode { span, .. }
            | ModelItem::Spike { span, .. }
            | ModelItem::On { span, .. }
            | ModelItem::Reset { span, .. }
            | ModelItem::Refractory { span, .. }
            | ModelItem::Method { span, .. }
            | ModelItem::Output { span, .. }
            | ModelItem::PerSynapse { span } => *span,
            ModelItem::Function(f) => f.span,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
    Div,
}

impl AssignOp {
    pub fn symbol(self) -> &'static str {
        match self {
            AssignOp::Set => "=",
            AssignOp::Add => "+=",
            AssignOp::Sub => "-=",
            AssignOp::Mul => "*=",
            AssignOp::Div => "/=",
        }
    }
}

/// `v -= v_th`
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub target: Ident,
    pub op: AssignOp,
    pub value: Expr,
    pub span: Span,
}

/// A unit expression such as `mV`, `nS*mV`, `mV/ms`, `ms^-1` or `1`.
#[derive(Clone, Debug, PartialEq)]
pub enum UnitExpr {
    /// `1`: dimensionless.
    One(Span),
    /// A unit name with optional SI prefix, e.g. `mV`.
    Name(Ident),
    Mul(Box<UnitExpr>, Box<UnitExpr>, Span),
    Div(Box<UnitExpr>, Box<UnitExpr>, Span),
    Pow(Box<UnitExpr>, i32, Span),
}

impl UnitExpr {
    pub fn span(&self) -> Span {
        match self {
            UnitExpr::One(s) => *s,
            UnitExpr::Name(i) => i.span,
            UnitExpr::Mul(_, _, s) | UnitExpr::Div(_, _, s) | UnitExpr::Pow(_, _, s) => *s,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }

    /// Binding power, higher binds tighter (used by the formatter to place parentheses).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => 4,
            BinOp::Add | BinOp::Sub => 5,
            BinOp::Mul | BinOp::Div => 6,
            BinOp::Pow => 8,
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

/// An argument of a call: positional, or `name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub callee: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number, optionally with a unit: `1.5`, `10 ms`, `0.5 mV/ms`.
    /// `text` keeps the literal as written so that `snnc fmt` never changes a value.
    Number { value: f64, text: String, unit: Option<UnitExpr> },
    /// A string literal: only meaningful in `train { }` settings (`data = "shd.h5"`).
    Str(String),
    Var(Ident),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    If { cond: Box<Expr>, then: Box<Expr>, otherwise: Box<Expr> },
    Call(Call),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

// ---------------------------------------------------------------- networks

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub name: Ident,
    pub body: Vec<NetItem>,
    pub span: Span,
}

/// `name = expr` inside `{ ... }` after a population or synapse: parameter overrides
/// and initialisers (`tau = U(100 ms, 2 s)`, `v = normal(-55 mV, 5 mV)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub name: Ident,
    pub value: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopKind {
    Layer,
    Readout,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    pub kind: PopKind,
    pub name: Ident,
    pub model: Ident,
    pub size: Expr,
    pub settings: Vec<Setting>,
    pub span: Span,
}

/// `pop` or `pop.port`
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub pop: Ident,
    pub port: Option<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
    Dense,
    Sparse { p: Expr },
    OneToOne,
    File { path: String },
    Procedural { p: Expr },
    /// `conv(...)` / `pool(...)`: an image-shaped projection, its sizes as settings.
    Conv { pool: bool, args: Vec<Setting> },
}

/// One clause after `connect a -> b`; clauses may come in any order, each at most once.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnClause {
    Via { synapse: Ident, settings: Vec<Setting> },
    Topology(Topology),
    /// `init expr` (random initialiser) or `weight expr` (a fixed weight): the same slot.
    Init(Expr),
    /// `trainable`, optionally `bounds (lo, hi)` on every weight.
    Trainable(Option<Bounds>),
    NoSelf,
    Bias,
    Delay(Expr),
    /// `adapter rank R`: a trainable low-rank term added to the fixed weights.
    Adapter(Expr),
    As(Ident),
    /// `excitatory` (weights >= 0) or `inhibitory` (weights <= 0): Dale's law, kept by
    /// the initialiser and by training.
    Sign(Sign),
    /// `dropout P`: the presynaptic values, each dropped with probability P per step
    /// while training (the others scaled by 1 / (1 - P)).
    Dropout(Expr),
    /// `batch_norm`: the delivered current normalised over the batch (E0453 where it
    /// cannot apply).
    BatchNorm,
}

/// The sign a connection's weights keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    Excitatory,
    Inhibitory,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SpannedClause {
    pub clause: ConnClause,
    pub span: Span,
    /// The keyword as written (`init` or `weight` both give [`ConnClause::Init`]).
    pub keyword: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Connect {
    pub from: Endpoint,
    pub to: Endpoint,
    pub clauses: Vec<SpannedClause>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NetItem {
    /// `dt = 0.1 ms` and other network-wide settings.
    Setting(Setting),
    /// `input x: 100`
    Input { name: Ident, size: Expr, span: Span },
    Population(Population),
    /// `drive E.I = 200 pA`: a constant input into a port.
    Drive { target: Endpoint, value: Expr, span: Span },
    Connect(Connect),
    /// `train { method = es_d_rtrl, lr = 1e-3, ... }`
    Train { settings: Vec<Setting>, span: Span },
}
