//! Symbolic derivatives against finite differences of the interpreter, VJP against the
//! Jacobian, structural sparsity, and the surrogate rules.

use snnc_compiler::ir::{self, Env, Graph, NodeId, Op, diff, interp, surrogate};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }
}

fn eval_at(g: &Graph, n: NodeId, states: &[f64], params: &[f64]) -> f64 {
    ir::eval(g, &[n], &Env { states, params, ..Env::default() }).unwrap()[0]
}

/// d f / d states[k] by a Richardson-extrapolated central difference (error O(h^4)).
fn finite_diff(g: &Graph, f: NodeId, states: &[f64], params: &[f64], k: usize, h: f64) -> f64 {
    let central = |h: f64| {
        let mut p = states.to_vec();
        p[k] = states[k] + h;
        let up = eval_at(g, f, &p, params);
        p[k] = states[k] - h;
        let down = eval_at(g, f, &p, params);
        (up - down) / (2.0 * h)
    };
    (4.0 * central(h / 2.0) - central(h)) / 3.0
}

type Build = fn(&mut Graph, NodeId, NodeId, NodeId) -> NodeId;

/// Nonlinear test expressions in x = state 0 (in [0.5, 2]), y = state 1 (in [-1.5, 1.5])
/// and p = param 0.
fn expressions() -> Vec<(&'static str, Build)> {
    vec![
        ("exp(x*y) - log(x)", |g, x, y, _| {
            let xy = g.mul(x, y);
            let e = g.unary(Op::Exp, xy);
            let l = g.unary(Op::Log, x);
            g.sub(e, l)
        }),
        ("sigmoid(x - y) * tanh(y)", |g, x, y, _| {
            let d = g.sub(x, y);
            let s = g.unary(Op::Sigmoid, d);
            let t = g.unary(Op::Tanh, y);
            g.mul(s, t)
        }),
        ("pow(x, y)", |g, x, y, _| g.pow(x, y)),
        ("pow(y*y + 1, x * p)", |g, x, y, p| {
            let yy = g.mul(y, y);
            let one = g.constant(1.0);
            let b = g.add(yy, one);
            let e = g.mul(x, p);
            g.pow(b, e)
        }),
        ("x^3 / (1 + y^2)", |g, x, y, _| {
            let x3 = g.powi(x, 3);
            let y2 = g.powi(y, 2);
            let one = g.constant(1.0);
            let d = g.add(one, y2);
            g.div(x3, d)
        }),
        ("y^-3 * x", |g, x, y, _| {
            let c = g.constant(0.2);
            let yc = g.add(y, c);
            let yc = g.mul(yc, yc);
            let one = g.constant(1.0);
            let yc = g.add(yc, one);
            let p = g.powi(yc, -3);
            g.mul(p, x)
        }),
        ("exprel(4y - x)", |g, x, y, _| {
            let four = g.constant(4.0);
            let y4 = g.mul(four, y);
            let a = g.sub(y4, x);
            g.unary(Op::Exprel, a)
        }),
        ("if x > y then x*x else sin(y)", |g, x, y, _| {
            let c = g.binary(Op::Gt, x, y);
            let xx = g.mul(x, x);
            let s = g.unary(Op::Sin, y);
            g.select(c, xx, s)
        }),
        ("min(x, y) * max(x, y*y)", |g, x, y, _| {
            let mn = g.binary(Op::Min, x, y);
            let yy = g.mul(y, y);
            let mx = g.binary(Op::Max, x, yy);
            g.mul(mn, mx)
        }),
        ("abs(y) * cos(x) + sqrt(x)", |g, x, y, _| {
            let a = g.unary(Op::Abs, y);
            let c = g.unary(Op::Cos, x);
            let m = g.mul(a, c);
            let s = g.unary(Op::Sqrt, x);
            g.add(m, s)
        }),
        ("log(sigmoid(y)) / (x * p) - (-x) / y", |g, x, y, p| {
            let s = g.unary(Op::Sigmoid, y);
            let l = g.unary(Op::Log, s);
            let xp = g.mul(x, p);
            let a = g.div(l, xp);
            let nx = g.neg(x);
            let b = g.div(nx, y);
            g.sub(a, b)
        }),
    ]
}

/// The points where an expression is smooth enough for a finite difference: away from
/// y = 0 (abs, division by y) and from x = y, x = y^2 (select, min, max).
fn smooth_at(x: f64, y: f64) -> bool {
    y.abs() > 0.05 && (x - y).abs() > 0.05 && (x - y * y).abs() > 0.05
}

fn check_close(what: &str, got: f64, want: f64) {
    let rel = (got - want).abs() / want.abs().max(1e-3);
    assert!(rel < 1e-6, "{what}: symbolic {got} vs finite difference {want} (rel. error {rel:e})");
}

#[test]
fn forward_derivatives_match_finite_differences() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for (name, build) in expressions() {
        let mut g = Graph::new();
        let (x, y, p) = (g.state(0), g.state(1), g.param(0));
        let f = build(&mut g, x, y, p);
        let dfdx = ir::derivative(&mut g, &[f], x)[0];
        let dfdy = ir::derivative(&mut g, &[f], y)[0];
        let mut checked = 0;
        while checked < 25 {
            let s = [rng.uniform(0.5, 2.0), rng.uniform(-1.5, 1.5)];
            if !smooth_at(s[0], s[1]) {
                continue;
            }
            let params = [rng.uniform(0.5, 1.5)];
            for (k, d) in [(0, dfdx), (1, dfdy)] {
                let fd = finite_diff(&g, f, &s, &params, k, 1e-3);
                let sym = eval_at(&g, d, &s, &params);
                check_close(&format!("d/ds{k} {name} at {s:?}"), sym, fd);
            }
            checked += 1;
        }
    }
}

#[test]
fn stop_gradient_blocks_the_derivative() {
    let mut g = Graph::new();
    let (x, y) = (g.state(0), g.state(1));
    let s = g.stop_gradient(x);
    let f = g.mul(s, y);
    let dx = ir::derivative(&mut g, &[f], x)[0];
    assert!(g.is_zero(dx));
    // ... but not the forward value or the other variable.
    let dy = ir::derivative(&mut g, &[f], y)[0];
    assert_eq!(dy, s);
    assert_eq!(eval_at(&g, f, &[3.0, 2.0], &[]), 6.0);
}

#[test]
fn exprel_derivative_near_zero() {
    let mut g = Graph::new();
    let x = g.state(0);
    let f = g.unary(Op::Exprel, x);
    let d = ir::derivative(&mut g, &[f], x)[0];
    for v in [-2e-3f64, -1.0001e-3, -9.99e-4, -1e-6, -1e-9, 0.0, 1e-9, 3e-7, 9.99e-4, 1.0001e-3, 2e-3, 0.5, -3.0] {
        // exprel'(x) = sum_k (k+1) x^k / (k+2)!, to 6 terms.
        let series: f64 = (0..6).map(|k| (k + 1) as f64 * v.powi(k) / (1..=k + 2).product::<i32>() as f64).sum();
        let want = if v.abs() < 1e-2 { series } else { (v.exp() * (v - 1.0) + 1.0) / (v * v) };
        let got = eval_at(&g, d, &[v], &[]);
        assert!((got - want).abs() < 1e-12 * want.abs(), "exprel'({v}) = {got}, want {want}");
    }
}

#[test]
fn vjp_is_the_transposed_jacobian() {
    let mut rng = Rng(42);
    let exprs = expressions();
    let mut g = Graph::new();
    let (x, y, p) = (g.state(0), g.state(1), g.param(0));
    let outputs: Vec<NodeId> = exprs.iter().map(|(_, b)| b(&mut g, x, y, p)).collect();
    let wrt = [x, y, p];
    let jac = ir::jacobian(&mut g, &outputs, &wrt);
    // Symbolic cotangents: input k is the cotangent of output k.
    let cot: Vec<NodeId> = (0..outputs.len()).map(|k| g.input(k as u32)).collect();
    let grads = ir::vjp(&mut g, &outputs, &cot, &wrt);
    for _ in 0..20 {
        let s = [rng.uniform(0.5, 2.0), rng.uniform(-1.5, 1.5)];
        let params = [rng.uniform(0.5, 1.5)];
        let c: Vec<f64> = (0..outputs.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let env = Env { states: &s, params: &params, inputs: &c, ..Env::default() };
        let jv = ir::eval(&g, &jac.entries, &env).unwrap();
        let gv = ir::eval(&g, &grads, &env).unwrap();
        for j in 0..wrt.len() {
            let want: f64 = (0..outputs.len()).map(|i| c[i] * jv[i * jac.cols + j]).sum();
            let scale = (0..outputs.len()).map(|i| (c[i] * jv[i * jac.cols + j]).abs()).sum::<f64>().max(1e-12);
            assert!((gv[j] - want).abs() <= 1e-12 * scale, "column {j}: vjp {} vs J^T c {want}", gv[j]);
        }
    }
}

#[test]
fn vjp_with_unit_cotangent_is_a_jacobian_row() {
    let mut g = Graph::new();
    let (x, y) = (g.state(0), g.state(1));
    let xy = g.mul(x, y);
    let f0 = g.unary(Op::Exp, xy);
    let f1 = g.div(x, y);
    let jac = ir::jacobian(&mut g, &[f0, f1], &[x, y]);
    let (one, zero) = (g.constant(1.0), g.constant(0.0));
    let row1 = ir::vjp(&mut g, &[f0, f1], &[zero, one], &[x, y]);
    let env = Env { states: &[0.3, -1.7], ..Env::default() };
    let a = ir::eval(&g, &row1, &env).unwrap();
    let b = ir::eval(&g, &[jac.get(1, 0), jac.get(1, 1)], &env).unwrap();
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() <= 1e-15 * v.abs().max(1.0), "{a:?} vs {b:?}");
    }
}

#[test]
fn structural_sparsity() {
    let mut g = Graph::new();
    let (x, y, p) = (g.state(0), g.state(1), g.param(0));
    let f0 = g.mul(x, p);
    let one = g.constant(1.0);
    let f1 = g.add(y, one);
    let e = g.unary(Op::Exp, x);
    let c = g.binary(Op::Lt, y, x); // piecewise constant: no derivative
    let f2 = g.add(e, c);
    let sy = g.stop_gradient(y);
    let f3 = g.mul(sy, x);
    let xx = g.sub(x, x);
    let f4 = g.mul(xx, y); // (x - x) * y is structurally 0
    let jac = ir::jacobian(&mut g, &[f0, f1, f2, f3, f4], &[x, y]);
    assert_eq!(
        jac.sparsity(&g),
        vec![vec![true, false], vec![false, true], vec![true, false], vec![true, false], vec![false, false]]
    );
    assert!(jac.is_structural_zero(&g, 4, 0));
    // d f0/dx is p itself (hash-consed), d f1/dy is the constant 1.
    assert_eq!(jac.get(0, 0), p);
    assert_eq!(g.const_value(jac.get(1, 1)), Some(1.0));
}

#[test]
fn wrt_nodes_are_independent_variables() {
    // f = u * x with u = x^2: differentiating w.r.t. [u, x] holds u fixed for d/dx.
    let mut g = Graph::new();
    let x = g.state(0);
    let u = g.powi(x, 2);
    let f = g.mul(u, x);
    let jac = ir::jacobian(&mut g, &[f], &[u, x]);
    assert_eq!(jac.get(0, 0), x);
    assert_eq!(jac.get(0, 1), u);
    let one = g.constant(1.0);
    assert_eq!(ir::vjp(&mut g, &[f], &[one], &[u, x]), vec![x, u]);
    // With x alone, the full derivative 3x^2.
    let d = ir::derivative(&mut g, &[f], x)[0];
    assert_eq!(eval_at(&g, d, &[2.0], &[]), 12.0);
}

#[test]
fn select_derivative_is_a_select() {
    let mut g = Graph::new();
    let (x, y) = (g.state(0), g.state(1));
    let c = g.binary(Op::Gt, x, y);
    let xx = g.mul(x, x);
    let s = g.unary(Op::Sin, x);
    let f = g.select(c, xx, s);
    let d = ir::derivative(&mut g, &[f], x)[0];
    assert_eq!(g.op(d), Op::Select);
    assert_eq!(g.args(d)[0], c);
    let cos = g.unary(Op::Cos, x);
    // d(x*x) = x*1 + x*1 = x + x; the false branch is cos(x).
    let xpx = g.add(x, x);
    assert_eq!(g.args(d)[1..], [xpx, cos]);
}

#[test]
fn heaviside_differentiates_to_its_surrogate() {
    let mut g = Graph::new();
    let s = g.add_surrogate(surrogate::builtin("relu_grad", &[]).unwrap());
    let (v, th) = (g.state(0), g.param(0));
    let u = g.sub(v, th);
    let u = g.div(u, th);
    let spike = g.heaviside(u, s);
    // A soft reset v - th * s: its derivative goes through the surrogate ...
    let reset = g.mul(th, spike);
    let v_new = g.sub(v, reset);
    let d = ir::derivative(&mut g, &[v_new], v)[0];
    for (vv, want) in [(1.2, 1.0 - 0.3 * (1.0 - 0.2)), (0.5, 1.0 - 0.3 * (1.0 - 0.5)), (3.0, 1.0)] {
        // D = 1 - th * sg((v - th)/th) / th with th = 1
        let got = eval_at(&g, d, &[vv], &[1.0]);
        assert!((got - want).abs() < 1e-15, "v = {vv}: {got} vs {want}");
    }
    // ... unless it is detached.
    let ds = g.stop_gradient(spike);
    let reset = g.mul(th, ds);
    let v_det = g.sub(v, reset);
    let d = ir::derivative(&mut g, &[v_det], v)[0];
    assert_eq!(g.const_value(d), Some(1.0));
    // The forward value is the step either way.
    assert_eq!(eval_at(&g, v_new, &[1.2], &[1.0]), eval_at(&g, v_det, &[1.2], &[1.0]));
    assert_eq!(eval_at(&g, v_new, &[1.2], &[1.0]), 0.19999999999999996);
}

#[test]
fn surrogate_second_derivatives_match_finite_differences() {
    for name in ["sigmoid", "gaussian", "multi_gaussian", "arctan", "fast_sigmoid", "slayer", "relu_grad"] {
        let mut g = Graph::new();
        let def = surrogate::builtin(name, &[]).unwrap();
        let s = g.add_surrogate(def.clone());
        let x = g.state(0);
        let sg = g.surrogate_grad(x, s);
        let d = ir::derivative(&mut g, &[sg], x)[0];
        for i in 0..40 {
            let v = -2.0 + 0.1 * f64::from(i) + 0.013;
            // Kinks of abs/max at 0 and ±width: stay away from them.
            if v.abs() < 0.02 || (v.abs() - 1.0).abs() < 0.02 {
                continue;
            }
            let f = |t: f64| interp::eval_surrogate(&def, t).unwrap();
            let central = |h: f64| (f(v + h) - f(v - h)) / (2.0 * h);
            let fd = (4.0 * central(5e-4) - central(1e-3)) / 3.0;
            let got = eval_at(&g, d, &[v], &[]);
            assert!((got - fd).abs() <= 1e-6 * fd.abs().max(1e-3), "{name}'' at {v}: {got} vs {fd}");
        }
    }
}

#[test]
fn chain_of_leaf_is_zero() {
    let mut g = Graph::new();
    let x = g.state(0);
    let t = g.constant(2.0);
    let c = diff::chain(&mut g, x, 0, t);
    assert!(g.is_zero(c));
    let r = g.leaf(Op::Rand(0));
    let f = g.mul(r, x);
    let d = ir::derivative(&mut g, &[f], r)[0];
    assert_eq!(d, x, "a draw can be a differentiation variable");
    let d = ir::derivative(&mut g, &[f], x)[0];
    assert_eq!(d, r);
}
