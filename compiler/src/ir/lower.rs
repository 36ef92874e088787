//! Lowering of checked expressions ([`TExpr`]) of one model into IR nodes.
//!
//! Symbols become leaves: the k-th param of the model is `Param(k)`, and so on (see
//! [`Layout`]); `t` and `dt` are `Time` and `Dt`; `let`s are inlined, once per graph, so
//! all their uses share one node. Random calls get one slot each, in lowering order:
//! `poisson(rate)` becomes `rand < rate * dt` and `xi` becomes `randn / sqrt(dt)`.
//! `x ^ n` with a constant integer |n| <= 16 becomes `PowI(n)`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::surrogate::{self, SurrogateDef};
use super::{Graph, NodeId, Op, SurrogateId};
use crate::sema::{Func, Model, SpikeDef, SymId, SymKind, Surrogate, TExpr, TKind, UpdateOp};
use crate::span::Span;
use crate::syntax::ast::BinOp;

/// Lowering failed: the checked model contains something the IR cannot express.
#[derive(Clone, Debug, PartialEq)]
pub struct LowerError {
    pub message: String,
    pub span: Span,
}

impl LowerError {
    fn new(span: Span, message: impl Into<String>) -> LowerError {
        LowerError { message: message.into(), span }
    }
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LowerError {}

/// Which symbol each leaf index refers to: `Param(k)` reads `params[k]`, and so on.
/// Indices follow declaration order within each kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    pub params: Vec<SymId>,
    pub states: Vec<SymId>,
    pub inputs: Vec<SymId>,
    pub posts: Vec<SymId>,
    /// The leaf of every symbol (`None` for lets), indexed by [`SymId`].
    leaf_of: Vec<Option<Op>>,
}

impl Layout {
    pub fn of(model: &Model) -> Layout {
        let mut l = Layout::default();
        for (id, s) in model.symbols.iter().enumerate() {
            let index = |v: &mut Vec<SymId>| {
                v.push(id);
                v.len() as u32 - 1
            };
            let leaf = match s.kind {
                SymKind::Param => Some(Op::Param(index(&mut l.params))),
                SymKind::State => Some(Op::State(index(&mut l.states))),
                SymKind::Input => Some(Op::Input(index(&mut l.inputs))),
                SymKind::Post => Some(Op::Post(index(&mut l.posts))),
                SymKind::Time => Some(Op::Time),
                SymKind::Dt => Some(Op::Dt),
                SymKind::Weight => Some(Op::Weight),
                SymKind::PreSpike => Some(Op::PreSpike),
                SymKind::Let => None,
            };
            l.leaf_of.push(leaf);
        }
        l
    }

    /// The leaf that reads `sym` (`None` for a `let` or an unknown id).
    pub fn leaf(&self, sym: SymId) -> Option<Op> {
        self.leaf_of.get(sym).copied().flatten()
    }

    /// The symbol a leaf reads (`None` for constants, random draws and non-leaves).
    pub fn symbol(&self, op: Op) -> Option<SymId> {
        self.leaf_of.iter().position(|l| *l == Some(op))
    }

    /// The index of state `sym` (its `k` in `State(k)`).
    pub fn state_index(&self, sym: SymId) -> Option<u32> {
        self.states.iter().position(|s| *s == sym).map(|k| k as u32)
    }
}

/// Resolves the symbols of an expression to nodes (model symbols, or a function's
/// parameter) and numbers random draws.
trait Resolve {
    fn sym(&mut self, g: &mut Graph, id: SymId, span: Span) -> Result<NodeId, LowerError>;
    fn random_slot(&mut self) -> u32;
    /// Shared subexpressions already lowered into this graph.
    fn shared(&mut self) -> &mut SharedMemo;
}

/// Lowered shared nodes by address; each entry keeps its node alive, so an address
/// cannot be reused by another expression while the memo lives.
#[derive(Default)]
struct SharedMemo(HashMap<*const TExpr, (Arc<TExpr>, NodeId)>);

/// Lowers expressions of one model into one graph. The `let` cache belongs to the graph,
/// so use one `Lowerer` per graph.
pub struct Lowerer<'m> {
    model: &'m Model,
    layout: Layout,
    /// Lowered lets and explicit bindings.
    bound: HashMap<SymId, NodeId>,
    next_random: u32,
    memo: SharedMemo,
}

impl<'m> Lowerer<'m> {
    pub fn new(model: &'m Model) -> Lowerer<'m> {
        Lowerer { model, layout: Layout::of(model), bound: HashMap::new(), next_random: 0, memo: SharedMemo::default() }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of random slots handed out so far.
    pub fn random_slots(&self) -> u32 {
        self.next_random
    }

    /// Makes `sym` lower to `node` from now on (instead of its leaf or definition).
    pub fn bind(&mut self, sym: SymId, node: NodeId) {
        self.bound.insert(sym, node);
        // A shared node lowered before may read `sym`.
        self.memo.0.clear();
    }

    /// Lowers a checked expression (numbers and truth values alike: truth values are 0/1).
    pub fn expr(&mut self, g: &mut Graph, e: &TExpr) -> Result<NodeId, LowerError> {
        lower_expr(g, e, self)
    }

    /// The spike of the model: `Heaviside(arg)` with `arg = lhs - rhs` for `lhs > rhs`
    /// (`>=` alike; `rhs - lhs` for `<`, `<=`), divided by `scale` when given (the
    /// normalisation `(v - v_th) / (v_th - v_reset)` is the caller's choice). Note that
    /// the forward value is `arg >= 0`, so `v > v_th` also fires at equality.
    pub fn spike(&mut self, g: &mut Graph, def: &SpikeDef, scale: Option<NodeId>) -> Result<LoweredSpike, LowerError> {
        let TKind::Binary(op, l, r) = &def.condition.peel().kind else {
            return Err(LowerError::new(def.condition.span, "a spike condition must be a comparison such as `v > v_th`"));
        };
        let (hi, lo) = match op {
            BinOp::Gt | BinOp::Ge => (l, r),
            BinOp::Lt | BinOp::Le => (r, l),
            _ => {
                return Err(LowerError::new(
                    def.condition.span,
                    "a spike condition must be a comparison such as `v > v_th`",
                ));
            }
        };
        let (hi, lo) = (self.expr(g, hi)?, self.expr(g, lo)?);
        let mut arg = g.sub(hi, lo);
        if let Some(s) = scale {
            arg = g.div(arg, s);
        }
        let surrogate = g.add_surrogate(lower_surrogate(&def.surrogate, def.span)?);
        let spike = g.heaviside(arg, surrogate);
        let reset_spike = if self.model.reset_detached { g.stop_gradient(spike) } else { spike };
        Ok(LoweredSpike { arg, spike, reset_spike, surrogate })
    }
}

impl Resolve for Lowerer<'_> {
    fn sym(&mut self, g: &mut Graph, id: SymId, span: Span) -> Result<NodeId, LowerError> {
        if let Some(&n) = self.bound.get(&id) {
            return Ok(n);
        }
        if let Some(op) = self.layout.leaf(id) {
            return Ok(g.leaf(op));
        }
        let model = self.model;
        let Some(sym) = model.symbols.get(id) else {
            return Err(LowerError::new(span, format!("unknown symbol #{id} in model `{}`", model.name)));
        };
        let Some(value) = &sym.value else {
            return Err(LowerError::new(sym.span, format!("`let {}` has no definition", sym.name)));
        };
        let n = lower_expr(g, value, self)?;
        self.bound.insert(id, n);
        Ok(n)
    }

    fn random_slot(&mut self) -> u32 {
        self.next_random += 1;
        self.next_random - 1
    }

    fn shared(&mut self) -> &mut SharedMemo {
        &mut self.memo
    }
}

fn lower_expr(g: &mut Graph, e: &TExpr, r: &mut dyn Resolve) -> Result<NodeId, LowerError> {
    crate::deep(|| lower_at(g, e, r))
}

fn lower_at(g: &mut Graph, e: &TExpr, r: &mut dyn Resolve) -> Result<NodeId, LowerError> {
    Ok(match &e.kind {
        TKind::Const(v) => g.constant(*v),
        TKind::Sym(id) => r.sym(g, *id, e.span)?,
        TKind::Shared(inner) => {
            if let Some((_, n)) = r.shared().0.get(&Arc::as_ptr(inner)) {
                return Ok(*n);
            }
            let n = lower_expr(g, inner, r)?;
            r.shared().0.insert(Arc::as_ptr(inner), (inner.clone(), n));
            n
        }
        TKind::Neg(a) => {
            let a = lower_expr(g, a, r)?;
            g.neg(a)
        }
        TKind::Not(a) => {
            let a = lower_expr(g, a, r)?;
            g.unary(Op::Not, a)
        }
        TKind::Binary(BinOp::Pow, a, b) => {
            let x = lower_expr(g, a, r)?;
            match b.const_value() {
                Some(n) if n.fract() == 0.0 && n.abs() <= 16.0 => g.powi(x, n as i32),
                _ => {
                    let y = lower_expr(g, b, r)?;
                    g.pow(x, y)
                }
            }
        }
        TKind::Binary(op, a, b) => {
            let (a, b) = (lower_expr(g, a, r)?, lower_expr(g, b, r)?);
            let op = match op {
                BinOp::Add => Op::Add,
                BinOp::Sub => Op::Sub,
                BinOp::Mul => Op::Mul,
                BinOp::Div => Op::Div,
                BinOp::Pow => Op::Pow,
                BinOp::Lt => Op::Lt,
                BinOp::Le => Op::Le,
                BinOp::Gt => Op::Gt,
                BinOp::Ge => Op::Ge,
                BinOp::Eq => Op::Eq,
                BinOp::Ne => Op::Ne,
                BinOp::And => Op::And,
                BinOp::Or => Op::Or,
            };
            g.binary(op, a, b)
        }
        TKind::If(c, a, b) => {
            let c = lower_expr(g, c, r)?;
            let (a, b) = (lower_expr(g, a, r)?, lower_expr(g, b, r)?);
            g.select(c, a, b)
        }
        TKind::Call(f, args) => {
            let mut v = Vec::with_capacity(args.len());
            for a in args {
                v.push(lower_expr(g, a, r)?);
            }
            if v.len() != expected_args(*f) {
                return Err(LowerError::new(e.span, format!("`{}` called with {} argument(s)", f.name(), v.len())));
            }
            match f {
                Func::Exp => g.unary(Op::Exp, v[0]),
                Func::Log => g.unary(Op::Log, v[0]),
                Func::Sqrt => g.unary(Op::Sqrt, v[0]),
                Func::Tanh => g.unary(Op::Tanh, v[0]),
                Func::Sigmoid => g.unary(Op::Sigmoid, v[0]),
                Func::Abs => g.unary(Op::Abs, v[0]),
                Func::Sin => g.unary(Op::Sin, v[0]),
                Func::Cos => g.unary(Op::Cos, v[0]),
                Func::Exprel => g.unary(Op::Exprel, v[0]),
                Func::Min => g.binary(Op::Min, v[0], v[1]),
                Func::Max => g.binary(Op::Max, v[0], v[1]),
                // Same order as the front end's constant evaluation: max first, then min.
                Func::Clip => {
                    let lo = g.binary(Op::Max, v[0], v[1]);
                    g.binary(Op::Min, lo, v[2])
                }
                Func::Rand => g.leaf(Op::Rand(r.random_slot())),
                Func::Randn => g.leaf(Op::Randn(r.random_slot())),
                Func::Poisson => {
                    let u = g.leaf(Op::Rand(r.random_slot()));
                    let dt = g.leaf(Op::Dt);
                    let p = g.mul(v[0], dt);
                    g.binary(Op::Lt, u, p)
                }
                Func::Xi => {
                    let n = g.leaf(Op::Randn(r.random_slot()));
                    let dt = g.leaf(Op::Dt);
                    let s = g.unary(Op::Sqrt, dt);
                    g.div(n, s)
                }
            }
        }
    })
}

fn expected_args(f: Func) -> usize {
    match f {
        Func::Rand | Func::Randn | Func::Xi => 0,
        Func::Min | Func::Max => 2,
        Func::Clip => 3,
        _ => 1,
    }
}

/// Binds a user surrogate's spike-argument symbol to `Input(0)`.
struct SurrogateArg(SymId, SharedMemo);

impl Resolve for SurrogateArg {
    fn sym(&mut self, g: &mut Graph, id: SymId, span: Span) -> Result<NodeId, LowerError> {
        if id == self.0 {
            Ok(g.input(0))
        } else {
            Err(LowerError::new(span, "a surrogate function may only read its spike argument"))
        }
    }
    fn random_slot(&mut self) -> u32 {
        0
    }

    fn shared(&mut self) -> &mut SharedMemo {
        &mut self.1
    }
}

/// The IR definition of a checked surrogate (built-in or user function); `span` is the
/// spike definition, for errors.
pub fn lower_surrogate(s: &Surrogate, span: Span) -> Result<SurrogateDef, LowerError> {
    match s {
        Surrogate::Builtin { name, params } => surrogate::builtin(name, params)
            .ok_or_else(|| LowerError::new(span, format!("unknown surrogate `{name}` or parameter"))),
        Surrogate::User { name, body, arg } => {
            if let Some(sp) = find_random(body) {
                return Err(LowerError::new(sp, "a surrogate function cannot be random"));
            }
            let mut g = Graph::new();
            let result = lower_expr(&mut g, body, &mut SurrogateArg(*arg, SharedMemo::default()))?;
            Ok(SurrogateDef { name: name.clone(), params: Vec::new(), body: g, result })
        }
    }
}

fn find_random(e: &TExpr) -> Option<Span> {
    crate::deep(|| match &e.kind {
        TKind::Call(f, _) if f.is_random() => Some(e.span),
        // Shared nodes are never random (sema::expr::share).
        TKind::Const(_) | TKind::Sym(_) | TKind::Shared(_) => None,
        TKind::Neg(a) | TKind::Not(a) => find_random(a),
        TKind::Binary(_, a, b) => find_random(a).or_else(|| find_random(b)),
        TKind::If(c, a, b) => find_random(c).or_else(|| find_random(a)).or_else(|| find_random(b)),
        TKind::Call(_, args) => args.iter().find_map(find_random),
    })
}

/// The spike of a lowered model.
#[derive(Clone, Debug, PartialEq)]
pub struct LoweredSpike {
    /// The argument of the Heaviside step (un-normalised, see [`Lowerer::spike`]).
    pub arg: NodeId,
    /// `Heaviside(arg)`.
    pub spike: NodeId,
    /// The spike as resets use it: `StopGradient(spike)` if the model detaches the
    /// reset, else `spike`.
    pub reset_spike: NodeId,
    pub surrogate: SurrogateId,
}

/// One event update `target op= value`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoweredUpdate {
    pub target: SymId,
    pub op: UpdateOp,
    pub value: NodeId,
}

/// `old op= value` as a node (`Set` gives `value`).
pub fn apply_update(g: &mut Graph, old: NodeId, op: UpdateOp, value: NodeId) -> NodeId {
    match op {
        UpdateOp::Set => value,
        UpdateOp::Add => g.add(old, value),
        UpdateOp::Sub => g.sub(old, value),
        UpdateOp::Mul => g.mul(old, value),
        UpdateOp::Div => g.div(old, value),
    }
}

/// Every expression of a model, lowered into one graph (continuous-time form: the
/// discretisation is a later pass).
#[derive(Clone, Debug)]
pub struct LoweredModel {
    pub graph: Graph,
    pub layout: Layout,
    /// `d states[k] / dt = rhs`, as `(k, rhs)` in equation order.
    pub odes: Vec<(u32, NodeId)>,
    pub spike: Option<LoweredSpike>,
    pub on_spike: Vec<LoweredUpdate>,
    pub on_pre: Vec<LoweredUpdate>,
    /// Synapse: `output PORT = value`.
    pub output: Option<(String, NodeId)>,
    /// The refractory period.
    pub refractory: Option<NodeId>,
    /// Random slots `0..step_random` are drawn every step (dynamics, events, output).
    pub step_random: u32,
    /// Default of each param (layout order), `None` if it has none.
    pub param_defaults: Vec<Option<NodeId>>,
    /// Initial value of each state (layout order); its random slots follow the step's.
    pub state_init: Vec<Option<NodeId>>,
    /// Total number of random slots.
    pub random_slots: u32,
}

/// Lowers every expression of a checked model.
pub fn lower_model(m: &Model) -> Result<LoweredModel, LowerError> {
    let mut g = Graph::new();
    let mut lw = Lowerer::new(m);
    let mut odes = Vec::with_capacity(m.odes.len());
    for (sym, rhs) in &m.odes {
        let k = lw.layout.state_index(*sym).ok_or_else(|| LowerError::new(rhs.span, "an equation for a non-state"))?;
        odes.push((k, lw.expr(&mut g, rhs)?));
    }
    let spike = match &m.spike {
        Some(def) => Some(lw.spike(&mut g, def, None)?),
        None => None,
    };
    let on_spike = lower_updates(&mut lw, &mut g, &m.on_spike)?;
    let on_pre = lower_updates(&mut lw, &mut g, &m.on_pre)?;
    let output = match &m.output {
        Some((port, e)) => Some((port.clone(), lw.expr(&mut g, e)?)),
        None => None,
    };
    let refractory = match &m.refractory {
        Some(r) => Some(lw.expr(&mut g, &r.period)?),
        None => None,
    };
    let step_random = lw.random_slots();
    let params = lw.layout.params.clone();
    let states = lw.layout.states.clone();
    let param_defaults = lower_values(&mut lw, &mut g, &params)?;
    let state_init = lower_values(&mut lw, &mut g, &states)?;
    let random_slots = lw.random_slots();
    Ok(LoweredModel {
        graph: g,
        layout: lw.layout,
        odes,
        spike,
        on_spike,
        on_pre,
        output,
        refractory,
        step_random,
        param_defaults,
        state_init,
        random_slots,
    })
}

fn lower_updates(lw: &mut Lowerer, g: &mut Graph, list: &[crate::sema::Update]) -> Result<Vec<LoweredUpdate>, LowerError> {
    list.iter().map(|u| Ok(LoweredUpdate { target: u.target, op: u.op, value: lw.expr(g, &u.value)? })).collect()
}

/// The declared values (param defaults, state initial values) of `syms`.
fn lower_values(lw: &mut Lowerer, g: &mut Graph, syms: &[SymId]) -> Result<Vec<Option<NodeId>>, LowerError> {
    let model = lw.model;
    syms.iter().map(|&s| model.symbols[s].value.as_ref().map(|v| lw.expr(g, v)).transpose()).collect()
}
