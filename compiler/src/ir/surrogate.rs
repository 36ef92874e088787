//! Surrogate gradients as IR built from primitive ops, so every backend gets them.
//!
//! A [`SurrogateDef`] holds dH/dx as a small graph whose `Input(0)` is the spike argument
//! x. The interpreter evaluates it directly ([`super::interp::eval_surrogate`]);
//! [`Graph::expand_surrogates`] inlines it where a backend wants primitives only.
//!
//! The built-in formulas follow braintools (`braintools/surrogate/_impl.py`, v0.4), with
//! the operations in the same order so that f64 results match:
//!
//! | name | dH/dx |
//! |---|---|
//! | `relu_grad(alpha, width)` | `max(alpha*width - abs(x)*alpha, 0)` (`ReluGrad`) |
//! | `sigmoid(alpha)` | `(1 - s) * s * alpha`, `s = sigmoid(x*alpha)` (`Sigmoid`) |
//! | `boxcar(width)` | `1/width` if `abs(x) < width/2`, else 0 (not in braintools; unit area) |
//! | `gaussian(sigma, alpha)` | `alpha * exp(-x^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)` |
//! | `multi_gaussian(h, s, sigma, scale)` | `scale * (g1*(1+h) - g2*h - g3*h)` (`MultiGaussianGrad`) |
//! | `fast_sigmoid(slope)` | `1 / (slope*abs(x) + 1)^2` (= `InvSquareGrad`, snnTorch's fast sigmoid) |
//! | `arctan(alpha)` | `alpha*0.5 / (1 + (pi/2*alpha*x)^2)` (`Arctan`) |
//! | `slayer(alpha)` | `exp(-alpha*abs(x))` (`SlayerGrad`; peak 1, no alpha factor) |
//!
//! `gaussian` deliberately differs from braintools' code: `GaussianGrad.surrogate_grad`
//! computes `exp(-(x ** 2) / 2 * sigma ** 2) / (sqrt(2 pi) sigma)`, i.e. by operator
//! precedence `exp(-x^2 sigma^2 / 2)`, which contradicts its own documentation
//! (`alpha * N(x; 0, sigma^2)`) and its `MultiGaussianGrad`. We implement the documented
//! Gaussian density; the two agree when sigma = 1.
//! In `multi_gaussian`, `g1 = N(x; 0, sigma^2)` and `g2`, `g3 = N(x; ±sigma, (s sigma)^2)`.

use std::f64::consts::PI;

use super::{Graph, NodeId, Op};
use crate::sema::SURROGATES;

/// A surrogate derivative: `body` computes dH/dx at `result`, with `Input(0)` = x.
#[derive(Clone, Debug)]
pub struct SurrogateDef {
    pub name: String,
    /// The parameters it was built with (for printing; already folded into `body`).
    pub params: Vec<(String, f64)>,
    pub body: Graph,
    pub result: NodeId,
}

impl SurrogateDef {
    /// Same name, parameters and body graph.
    pub(super) fn same_as(&self, other: &SurrogateDef) -> bool {
        self.name == other.name
            && self.params.len() == other.params.len()
            && self.params.iter().zip(&other.params).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits())
            && self.result == other.result
            && self.body.len() == other.body.len()
            && self.body.nodes().zip(other.body.nodes()).all(|(a, b)| a == b)
    }
}

/// Builds the built-in surrogate `name`; `params` override the defaults of
/// [`crate::sema::SURROGATES`]. `None` for an unknown surrogate or parameter name.
pub fn builtin(name: &str, params: &[(&str, f64)]) -> Option<SurrogateDef> {
    let (_, defaults) = SURROGATES.iter().find(|(n, _)| *n == name)?;
    let mut values: Vec<(String, f64)> = defaults.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    for (n, v) in params {
        values.iter_mut().find(|(m, _)| m == n)?.1 = *v;
    }
    let p = |n: &str| values.iter().find(|(m, _)| m == n).map(|(_, v)| *v).unwrap_or(f64::NAN);
    let mut g = Graph::new();
    let x = g.input(0);
    let result = match name {
        "relu_grad" => {
            let (alpha, width) = (p("alpha"), p("width"));
            let top = g.constant(alpha * width);
            let ax = g.unary(Op::Abs, x);
            let a = g.constant(alpha);
            let slope = g.mul(ax, a);
            let d = g.sub(top, slope);
            let zero = g.constant(0.0);
            g.binary(Op::Max, d, zero)
        }
        "sigmoid" => {
            let a = g.constant(p("alpha"));
            let ax = g.mul(x, a);
            let s = g.unary(Op::Sigmoid, ax);
            let one = g.constant(1.0);
            let oms = g.sub(one, s);
            let d = g.mul(oms, s);
            g.mul(d, a)
        }
        "boxcar" => {
            let width = p("width");
            let ax = g.unary(Op::Abs, x);
            let half = g.constant(width / 2.0);
            let inside = g.binary(Op::Lt, ax, half);
            let height = g.constant(1.0 / width);
            let zero = g.constant(0.0);
            g.select(inside, height, zero)
        }
        "gaussian" => {
            let (sigma, alpha) = (p("sigma"), p("alpha"));
            let d = normal_pdf(&mut g, x, 0.0, sigma, (2.0 * PI).sqrt() * sigma);
            let a = g.constant(alpha);
            g.mul(a, d)
        }
        "multi_gaussian" => {
            let (h, s, sigma, scale) = (p("h"), p("s"), p("sigma"), p("scale"));
            let root = (2.0 * PI).sqrt();
            let g1 = normal_pdf(&mut g, x, 0.0, sigma, root * sigma);
            let g2 = normal_pdf(&mut g, x, sigma, s * sigma, root * s * sigma);
            let g3 = normal_pdf(&mut g, x, -sigma, s * sigma, root * s * sigma);
            let w1 = g.constant(1.0 + h);
            let hh = g.constant(h);
            let t1 = g.mul(g1, w1);
            let t2 = g.mul(g2, hh);
            let t3 = g.mul(g3, hh);
            let d = g.sub(t1, t2);
            let d = g.sub(d, t3);
            let sc = g.constant(scale);
            g.mul(sc, d)
        }
        "fast_sigmoid" => {
            let k = g.constant(p("slope"));
            let ax = g.unary(Op::Abs, x);
            let kx = g.mul(k, ax);
            let one = g.constant(1.0);
            let den = g.add(kx, one);
            let den = g.powi(den, 2);
            g.div(one, den)
        }
        "arctan" => {
            let alpha = p("alpha");
            let top = g.constant(alpha * 0.5);
            let k = g.constant(PI / 2.0 * alpha);
            let kx = g.mul(k, x);
            let sq = g.powi(kx, 2);
            let one = g.constant(1.0);
            let den = g.add(one, sq);
            g.div(top, den)
        }
        "slayer" => {
            let k = g.constant(-p("alpha"));
            let ax = g.unary(Op::Abs, x);
            let e = g.mul(k, ax);
            g.unary(Op::Exp, e)
        }
        _ => return None,
    };
    Some(SurrogateDef { name: name.to_string(), params: values, body: g, result })
}

/// `exp(-(x - mu)^2 / (2 sd^2)) / norm` with `norm` = sqrt(2 pi) sd as the caller
/// computes it (braintools' operation order differs between its surrogates).
fn normal_pdf(g: &mut Graph, x: NodeId, mu: f64, sd: f64, norm: f64) -> NodeId {
    let d = if mu == 0.0 {
        x
    } else {
        let m = g.constant(mu.abs());
        if mu > 0.0 { g.sub(x, m) } else { g.add(x, m) }
    };
    let sq = g.powi(d, 2);
    let num = g.neg(sq);
    let den = g.constant(2.0 * sd.powi(2));
    let e = g.div(num, den);
    let e = g.unary(Op::Exp, e);
    let norm = g.constant(norm);
    g.div(e, norm)
}
