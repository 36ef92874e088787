//! The reference interpreter: evaluates IR nodes in f64. Every backend is tested against
//! it, and the constant folder uses [`apply`] so folded and evaluated values agree.

use std::fmt;

use super::{Graph, NodeId, Op, SurrogateDef};

/// The values of the leaves. Leaves index their slice by their payload (`State(2)` reads
/// `states[2]`); `Rand(k)` and `Randn(k)` read `random[k]`, a draw the caller made with
/// whatever generator the backend specifies.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env<'a> {
    pub params: &'a [f64],
    pub states: &'a [f64],
    pub inputs: &'a [f64],
    pub posts: &'a [f64],
    pub random: &'a [f64],
    pub t: f64,
    pub dt: f64,
    pub weight: f64,
    pub pre_spike: f64,
}

/// A leaf whose value the [`Env`] does not provide.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalError {
    pub node: NodeId,
    pub op: Op,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.op {
            Op::Param(k) | Op::State(k) | Op::Input(k) | Op::Post(k) | Op::Rand(k) | Op::Randn(k) => k,
            _ => 0,
        };
        write!(f, "no value for {} = {} {k} in the environment", self.node, self.op.name())
    }
}

impl std::error::Error for EvalError {}

/// `x^n` for an integer n by binary exponentiation, in the same order of operations as
/// `jax.lax.integer_pow` (what `x ** 3` computes in the reference models): x^3 is
/// `x * (x*x)`, x^4 is `(x*x) * (x*x)`; `1 / x^|n|` for negative n; 1 for n = 0 (even for
/// NaN). Backends must compute `PowI` exactly this way.
pub fn powi(x: f64, n: i32) -> f64 {
    let mut m = n.unsigned_abs();
    if m == 0 {
        return 1.0;
    }
    let (mut base, mut acc): (f64, Option<f64>) = (x, None);
    while m > 0 {
        if m & 1 == 1 {
            acc = Some(match acc {
                None => base,
                Some(a) => a * base,
            });
        }
        m >>= 1;
        if m > 0 {
            base *= base;
        }
    }
    let r = acc.unwrap_or(1.0);
    if n < 0 { 1.0 / r } else { r }
}

/// `(exp(x) - 1) / x`, with the first Taylor terms near 0 (same as the front end's
/// constant evaluation).
pub fn exprel(x: f64) -> f64 {
    if x.abs() < 1e-8 { 1.0 + x / 2.0 } else { x.exp_m1() / x }
}

/// `1 / (1 + exp(-x))`.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn truth(c: bool) -> f64 {
    f64::from(u8::from(c))
}

/// The value of a pure op on operand values; `None` for leaves and `SurrogateGrad`
/// (which needs the graph's surrogate table, see [`eval_surrogate`]).
pub fn apply(op: Op, a: &[f64]) -> Option<f64> {
    use Op::*;
    Some(match op {
        Const(v) => v,
        Add => a[0] + a[1],
        Sub => a[0] - a[1],
        Mul => a[0] * a[1],
        Div => a[0] / a[1],
        Neg => -a[0],
        Pow => a[0].powf(a[1]),
        PowI(n) => powi(a[0], n),
        Exp => a[0].exp(),
        Log => a[0].ln(),
        Sqrt => a[0].sqrt(),
        Tanh => a[0].tanh(),
        Sigmoid => sigmoid(a[0]),
        Abs => a[0].abs(),
        Min => a[0].min(a[1]),
        Max => a[0].max(a[1]),
        Sin => a[0].sin(),
        Cos => a[0].cos(),
        Exprel => exprel(a[0]),
        Select => {
            if a[0] != 0.0 {
                a[1]
            } else {
                a[2]
            }
        }
        Lt => truth(a[0] < a[1]),
        Le => truth(a[0] <= a[1]),
        Gt => truth(a[0] > a[1]),
        Ge => truth(a[0] >= a[1]),
        Eq => truth(a[0] == a[1]),
        Ne => truth(a[0] != a[1]),
        And => truth(a[0] != 0.0 && a[1] != 0.0),
        Or => truth(a[0] != 0.0 || a[1] != 0.0),
        Not => truth(a[0] == 0.0),
        Heaviside(_) => truth(a[0] >= 0.0),
        StopGradient => a[0],
        Param(_) | State(_) | Input(_) | Post(_) | Time | Dt | Weight | PreSpike | Rand(_) | Randn(_)
        | SurrogateGrad(_) => return None,
    })
}

fn leaf(op: Op, env: &Env) -> Option<f64> {
    let at = |s: &[f64], k: u32| s.get(k as usize).copied();
    match op {
        Op::Param(k) => at(env.params, k),
        Op::State(k) => at(env.states, k),
        Op::Input(k) => at(env.inputs, k),
        Op::Post(k) => at(env.posts, k),
        Op::Rand(k) | Op::Randn(k) => at(env.random, k),
        Op::Time => Some(env.t),
        Op::Dt => Some(env.dt),
        Op::Weight => Some(env.weight),
        Op::PreSpike => Some(env.pre_spike),
        _ => None,
    }
}

/// Evaluates the roots (and everything they depend on) in `env`.
pub fn eval(g: &Graph, roots: &[NodeId], env: &Env) -> Result<Vec<f64>, EvalError> {
    let mut val = vec![f64::NAN; g.len()];
    let mut args = Vec::with_capacity(3);
    for id in g.ancestors(roots) {
        let op = g.op(id);
        args.clear();
        args.extend(g.args(id).iter().map(|a| val[a.index()]));
        val[id.index()] = if op.is_leaf() && !matches!(op, Op::Const(_)) {
            leaf(op, env).ok_or(EvalError { node: id, op })?
        } else if let Op::SurrogateGrad(s) = op {
            eval_surrogate(g.surrogate(s), args[0])?
        } else {
            apply(op, &args).expect("pure op")
        };
    }
    Ok(roots.iter().map(|r| val[r.index()]).collect())
}

/// The surrogate derivative dH/dx of `def` at `x`.
pub fn eval_surrogate(def: &SurrogateDef, x: f64) -> Result<f64, EvalError> {
    let env = Env { inputs: std::slice::from_ref(&x), ..Env::default() };
    Ok(eval(&def.body, &[def.result], &env)?[0])
}
