//! IR construction: hash-consing (CSE), constant folding, algebraic simplification,
//! passes (extract, substitute, surrogate expansion) and the printers.

use std::collections::HashMap;

use snnc_compiler::ir::{self, Env, Graph, NodeId, Op, interp, print, surrogate};

fn eval1(g: &Graph, n: NodeId, env: &Env) -> f64 {
    ir::eval(g, &[n], env).unwrap()[0]
}

#[test]
fn same_expression_twice_is_the_same_node() {
    let mut g = Graph::new();
    let build = |g: &mut Graph| {
        let v = g.state(0);
        let i = g.input(0);
        let tau = g.param(0);
        let d = g.sub(i, v);
        let r = g.div(d, tau);
        g.unary(Op::Exp, r)
    };
    let a = build(&mut g);
    let n = g.len();
    let b = build(&mut g);
    assert_eq!(a, b);
    assert_eq!(g.len(), n, "no new node for the second build");
}

#[test]
fn commutative_operands_are_canonical_but_others_are_not() {
    let mut g = Graph::new();
    let (x, y) = (g.state(0), g.state(1));
    assert_eq!(g.add(x, y), g.add(y, x));
    assert_eq!(g.mul(x, y), g.mul(y, x));
    assert_eq!(g.binary(Op::Max, x, y), g.binary(Op::Max, y, x));
    assert_ne!(g.sub(x, y), g.sub(y, x));
    assert_ne!(g.div(x, y), g.div(y, x));
    assert_ne!(g.binary(Op::Lt, x, y), g.binary(Op::Lt, y, x));
}

#[test]
fn random_draws_in_different_slots_stay_different() {
    let mut g = Graph::new();
    let a = g.leaf(Op::Rand(0));
    let b = g.leaf(Op::Rand(1));
    assert_ne!(a, b);
    let d = g.sub(a, b);
    assert!(g.const_value(d).is_none(), "rand() - rand() must not fold to 0");
    let env = Env { random: &[0.25, 0.75], ..Env::default() };
    assert_eq!(eval1(&g, d, &env), -0.5);
}

#[test]
fn constants_fold_with_interpreter_arithmetic() {
    let mut g = Graph::new();
    let a = g.constant(0.1);
    let b = g.constant(0.2);
    let s = g.add(a, b);
    assert_eq!(g.const_value(s), Some(0.1 + 0.2));
    let e = g.unary(Op::Exprel, a);
    assert_eq!(g.const_value(e), Some(interp::exprel(0.1)));
    let p = g.powi(b, 5);
    assert_eq!(g.const_value(p), Some(interp::powi(0.2, 5)));
    let c = g.binary(Op::Gt, a, b);
    assert_eq!(g.const_value(c), Some(0.0));
    let h = g.constant(-0.0);
    let one = g.constant(1.0);
    // -0.0 and 0.0 are different constants (1/x differs).
    let z = g.constant(0.0);
    assert_ne!(h, z);
    let q = g.div(one, h);
    assert_eq!(g.const_value(q), Some(f64::NEG_INFINITY));
}

#[test]
fn identities_simplify() {
    let mut g = Graph::new();
    let x = g.state(0);
    let y = g.state(1);
    let (zero, one, m1) = (g.constant(0.0), g.constant(1.0), g.constant(-1.0));
    assert_eq!(g.add(x, zero), x);
    assert_eq!(g.add(zero, x), x);
    assert_eq!(g.sub(x, zero), x);
    assert_eq!(g.mul(x, one), x);
    assert_eq!(g.mul(one, x), x);
    assert_eq!(g.mul(x, zero), zero);
    assert_eq!(g.div(x, one), x);
    assert_eq!(g.div(zero, x), zero);
    assert_eq!(g.sub(x, x), zero);
    let nx = g.neg(x);
    assert_eq!(g.neg(nx), x);
    assert_eq!(g.mul(x, m1), nx);
    assert_eq!(g.sub(zero, x), nx);
    // Negations cancel in products and quotients.
    let ny = g.neg(y);
    assert_eq!(g.mul(nx, ny), g.mul(x, y));
    assert_eq!(g.div(nx, ny), g.div(x, y));
    // x + (-y) is x - y; x - (-y) is x + y.
    assert_eq!(g.add(x, ny), g.sub(x, y));
    assert_eq!(g.sub(x, ny), g.add(x, y));
    assert_eq!(g.powi(x, 1), x);
    assert_eq!(g.powi(x, 0), one);
    assert_eq!(g.pow(x, one), x);
    assert_eq!(g.pow(one, y), one);
    let sg = g.stop_gradient(x);
    assert_eq!(g.stop_gradient(sg), sg);
    assert_eq!(g.binary(Op::Min, x, x), x);
    let ax = g.unary(Op::Abs, x);
    assert_eq!(g.unary(Op::Abs, nx), ax);
}

#[test]
fn division_by_a_constant_is_kept() {
    // a / c is not rewritten to a * (1/c): that would change the last bit.
    let mut g = Graph::new();
    let x = g.state(0);
    let c = g.constant(3.0);
    let d = g.div(x, c);
    assert_eq!(g.op(d), Op::Div);
    let env = Env { states: &[0.1], ..Env::default() };
    assert_eq!(eval1(&g, d, &env).to_bits(), (0.1f64 / 3.0).to_bits());
}

#[test]
fn selects_simplify() {
    let mut g = Graph::new();
    let (x, y, c) = (g.state(0), g.state(1), g.state(2));
    let (zero, one) = (g.constant(0.0), g.constant(1.0));
    assert_eq!(g.select(one, x, y), x);
    assert_eq!(g.select(zero, x, y), y);
    assert_eq!(g.select(c, x, x), x);
    let nc = g.unary(Op::Not, c);
    assert_eq!(g.select(nc, x, y), g.select(c, y, x));
    // select(c, x, 0) + select(c, 0, y) == select(c, x, y)
    let a = g.select(c, x, zero);
    let b = g.select(c, zero, y);
    assert_eq!(g.add(a, b), g.select(c, x, y));
    // x * select(c, 1, 0) == select(c, x, 0)
    let ind = g.select(c, one, zero);
    assert_eq!(g.mul(x, ind), a);
}

#[test]
fn logic_simplifies_only_for_truth_values() {
    let mut g = Graph::new();
    let (x, y) = (g.state(0), g.state(1));
    let (zero, one) = (g.constant(0.0), g.constant(1.0));
    let lt = g.binary(Op::Lt, x, y);
    assert_eq!(g.binary(Op::And, lt, one), lt);
    assert_eq!(g.binary(Op::And, x, zero), zero);
    assert_eq!(g.binary(Op::Or, x, one), one);
    // `x and 1` is 0/1, not x: x may be 2.5.
    let a = g.binary(Op::And, x, one);
    assert_ne!(a, x);
    let env = Env { states: &[2.5, 0.0], ..Env::default() };
    assert_eq!(eval1(&g, a, &env), 1.0);
    let n = g.unary(Op::Not, lt);
    assert_eq!(g.unary(Op::Not, n), lt);
    let nx = g.unary(Op::Not, x);
    assert_ne!(g.unary(Op::Not, nx), x);
}

#[test]
fn powi_follows_jax_integer_pow() {
    // jax.lax.integer_pow: binary exponentiation, acc = acc * base.
    let x = 1.1f64;
    assert_eq!(interp::powi(x, 2).to_bits(), (x * x).to_bits());
    assert_eq!(interp::powi(x, 3).to_bits(), (x * (x * x)).to_bits());
    assert_eq!(interp::powi(x, 4).to_bits(), ((x * x) * (x * x)).to_bits());
    let x2 = x * x;
    let x4 = x2 * x2;
    assert_eq!(interp::powi(x, 5).to_bits(), (x * x4).to_bits());
    assert_eq!(interp::powi(x, -2).to_bits(), (1.0 / (x * x)).to_bits());
    assert_eq!(interp::powi(f64::NAN, 0), 1.0);
    for n in -7..=7 {
        let p = interp::powi(1.3, n);
        assert!((p - 1.3f64.powi(n)).abs() <= 1e-14 * p.abs(), "n = {n}");
    }
}

#[test]
fn interpreter_reports_missing_leaves() {
    let mut g = Graph::new();
    let x = g.state(3);
    let err = ir::eval(&g, &[x], &Env { states: &[1.0], ..Env::default() }).unwrap_err();
    assert_eq!(err.op, Op::State(3));
    assert!(err.to_string().contains("state 3"), "{err}");
}

#[test]
fn heaviside_is_one_at_zero() {
    let mut g = Graph::new();
    let s = g.add_surrogate(surrogate::builtin("relu_grad", &[]).unwrap());
    let x = g.state(0);
    let h = g.heaviside(x, s);
    for (v, want) in [(-1e-12, 0.0), (0.0, 1.0), (-0.0, 1.0), (2.0, 1.0), (f64::NAN, 0.0)] {
        assert_eq!(eval1(&g, h, &Env { states: &[v], ..Env::default() }), want, "H({v})");
    }
}

#[test]
fn extract_drops_dead_nodes_and_keeps_values() {
    let mut g = Graph::new();
    let (x, y) = (g.state(0), g.state(1));
    let dead = g.unary(Op::Sin, y);
    let e = g.unary(Op::Exp, x);
    let out = g.mul(e, x);
    let (small, roots) = g.extract(&[out]);
    assert_eq!(small.len(), 3);
    let env = Env { states: &[0.7, 2.0], ..Env::default() };
    assert_eq!(eval1(&small, roots[0], &env), eval1(&g, out, &env));
    assert!(g.ancestors(&[out]).iter().all(|&n| n != dead && n != y));
    assert!(g.depends_on(out, x));
    assert!(!g.depends_on(out, y));
}

#[test]
fn substitute_rebuilds_and_simplifies() {
    let mut g = Graph::new();
    let v = g.state(0);
    let dt = g.leaf(Op::Dt);
    let tau = g.param(0);
    let r = g.div(dt, tau);
    let decay = g.unary(Op::Exp, r);
    let out = g.mul(decay, v);
    // dt -> 0: exp(0 / tau) folds to 1 and the product to v.
    let zero = g.constant(0.0);
    let map: HashMap<NodeId, NodeId> = [(dt, zero)].into();
    assert_eq!(g.substitute(&[out], &map), vec![v]);
    // dt -> 1 ms keeps the structure with the constant in place.
    let ms = g.constant(1e-3);
    let map: HashMap<NodeId, NodeId> = [(dt, ms)].into();
    let new = g.substitute(&[out], &map)[0];
    let env = Env { states: &[2.0], params: &[0.01], dt: 1e-3, ..Env::default() };
    assert_eq!(eval1(&g, new, &env), eval1(&g, out, &env));
    assert!(!g.depends_on(new, dt));
}

#[test]
fn expanded_surrogates_match_the_surrogate_node() {
    for (name, _) in snnc_compiler::sema::SURROGATES {
        let mut g = Graph::new();
        let s = g.add_surrogate(surrogate::builtin(name, &[]).unwrap());
        let x = g.state(0);
        let node = g.surrogate_grad(x, s);
        let expanded = g.expand_surrogates(&[node])[0];
        assert!(
            g.ancestors(&[expanded]).iter().all(|&n| !matches!(g.op(n), Op::SurrogateGrad(_))),
            "{name}: expansion left a surrogate node"
        );
        for i in -30..=30 {
            let v = f64::from(i) * 0.07;
            let env = Env { states: &[v], ..Env::default() };
            let (a, b) = (eval1(&g, node, &env), eval1(&g, expanded, &env));
            assert_eq!(a.to_bits(), b.to_bits(), "{name} at {v}: {a} vs {b}");
        }
    }
}

#[test]
fn surrogate_values() {
    let at = |name: &str, params: &[(&str, f64)], x: f64| {
        interp::eval_surrogate(&surrogate::builtin(name, params).unwrap(), x).unwrap()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * b.abs().max(1.0);
    // braintools ReluGrad(0.3, 1): max(0.3*1 - |x|*0.3, 0), bit for bit (golden files).
    for x in [-1.5, -0.4, 0.0, 0.25, 0.999, 1.0, 3.0] {
        let want = (0.3f64 * 1.0 - f64::abs(x) * 0.3).max(0.0);
        assert_eq!(at("relu_grad", &[], x).to_bits(), want.to_bits(), "relu_grad({x})");
    }
    assert_eq!(at("relu_grad", &[("alpha", 2.0), ("width", 0.5)], 0.25), 0.5);
    assert!(close(at("sigmoid", &[], 0.0), 1.0)); // alpha/4 with alpha = 4
    assert_eq!(at("boxcar", &[("width", 2.0)], 0.99), 0.5);
    assert_eq!(at("boxcar", &[("width", 2.0)], 1.0), 0.0);
    let gauss0 = 1.0 / (2.0 * std::f64::consts::PI).sqrt(); // alpha/(sqrt(2 pi) sigma), 0.5/0.5
    assert!(close(at("gaussian", &[], 0.0), gauss0));
    // The documented Gaussian density, not braintools' exp(-x^2 sigma^2 / 2).
    let x: f64 = 0.8;
    assert!(close(at("gaussian", &[], x), gauss0 * (-x * x / (2.0 * 0.25)).exp()));
    let n = |x: f64, mu: f64, sd: f64| (-(x - mu).powi(2) / (2.0 * sd * sd)).exp() / ((2.0 * std::f64::consts::PI).sqrt() * sd);
    for x in [-1.0, 0.0, 0.3] {
        let want = 0.5 * (n(x, 0.0, 0.5) * 1.15 - n(x, 0.5, 3.0) * 0.15 - n(x, -0.5, 3.0) * 0.15);
        assert!(close(at("multi_gaussian", &[], x), want), "multi_gaussian({x})");
    }
    assert!(close(at("fast_sigmoid", &[], 0.1), 1.0 / (3.5f64 * 3.5)));
    assert!(close(at("arctan", &[], 0.0), 0.5));
    assert!(close(at("arctan", &[("alpha", 2.0)], 0.5), 1.0 / (1.0 + (std::f64::consts::PI / 2.0).powi(2))));
    assert!(close(at("slayer", &[], -1.0), (-1.0f64).exp()));
    assert!(surrogate::builtin("nope", &[]).is_none());
    assert!(surrogate::builtin("sigmoid", &[("width", 1.0)]).is_none());
}

#[test]
fn surrogates_are_registered_once() {
    let mut g = Graph::new();
    let a = g.add_surrogate(surrogate::builtin("sigmoid", &[]).unwrap());
    let b = g.add_surrogate(surrogate::builtin("sigmoid", &[("alpha", 4.0)]).unwrap());
    let c = g.add_surrogate(surrogate::builtin("sigmoid", &[("alpha", 2.0)]).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(g.surrogates().len(), 2);
}

#[test]
fn text_form_is_dense_and_stable() {
    let mut g = Graph::new();
    let half = g.constant(0.5);
    let _dead = g.unary(Op::Cos, half);
    let v = g.state(0);
    let i = g.input(0);
    let tau = g.param(0);
    let d = g.sub(i, v);
    let rhs = g.div(d, tau);
    let s = g.add_surrogate(surrogate::builtin("relu_grad", &[]).unwrap());
    let one = g.constant(1.0);
    let arg = g.sub(v, one);
    let sp = g.heaviside(arg, s);
    let sq = g.powi(v, 2);
    let text = print::to_text(&g, &[("dv/dt".into(), rhs), ("s".into(), sp), ("sq".into(), sq)]);
    let want = "\
surrogate #0 relu_grad(alpha = 0.3, width = 1.0) {
    %0 = input 0  ; x
    %1 = const 0.3
    %2 = abs %0
    %3 = mul %1, %2
    %4 = sub %1, %3
    %5 = const 0.0
    %6 = max %4, %5
    out dH/dx = %6
}
%0 = state 0
%1 = input 0
%2 = param 0
%3 = sub %1, %0
%4 = div %3, %2
%5 = const 1.0
%6 = sub %0, %5
%7 = heaviside[#0] %6
%8 = powi %0, 2
out dv/dt = %4
out s = %7
out sq = %8
";
    assert_eq!(text, want);
}

#[test]
fn dot_export_has_nodes_edges_and_outputs() {
    let mut g = Graph::new();
    let x = g.state(0);
    let y = g.state(1);
    let d = g.sub(x, y);
    let dot = print::to_dot(&g, &[("diff".into(), d)]);
    assert!(dot.starts_with("digraph {"), "{dot}");
    assert!(dot.contains("label = \"state 0\""), "{dot}");
    assert!(dot.contains("label = \"sub\""), "{dot}");
    assert!(dot.contains("0 -> 2 [ label = \"0\"]"), "{dot}");
    assert!(dot.contains("1 -> 2 [ label = \"1\"]"), "{dot}");
    assert!(dot.contains("xlabel = \"diff\""), "{dot}");
}

/// A random expression tree, evaluated naively (no sharing, no simplification).
enum Tree {
    Leaf(Op),
    Node(Op, Vec<Tree>),
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn random_tree(rng: &mut Rng, depth: u32) -> Tree {
    let leaves = [
        Op::State(0),
        Op::State(1),
        Op::Const(0.0),
        Op::Const(-0.0),
        Op::Const(1.0),
        Op::Const(-1.0),
        Op::Const(0.5),
        Op::Const(2.0),
    ];
    if depth == 0 || rng.next().is_multiple_of(5) {
        return Tree::Leaf(rng.pick(&leaves));
    }
    let ops = [
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Neg,
        Op::PowI(2),
        Op::PowI(3),
        Op::PowI(-1),
        Op::Pow,
        Op::Exp,
        Op::Log,
        Op::Sqrt,
        Op::Tanh,
        Op::Sigmoid,
        Op::Abs,
        Op::Min,
        Op::Max,
        Op::Sin,
        Op::Exprel,
        Op::Select,
        Op::Lt,
        Op::Ge,
        Op::And,
        Op::Or,
        Op::Not,
        Op::StopGradient,
    ];
    let op = rng.pick(&ops);
    Tree::Node(op, (0..op.arity()).map(|_| random_tree(rng, depth - 1)).collect())
}

/// The naive value, or `None` if some intermediate value is not finite (where the
/// documented `x * 0 -> 0`-style rewrites may differ).
fn naive(t: &Tree, states: &[f64]) -> Option<f64> {
    let v = match t {
        Tree::Leaf(Op::State(k)) => states[*k as usize],
        Tree::Leaf(op) => interp::apply(*op, &[]).unwrap(),
        Tree::Node(op, args) => {
            let a: Option<Vec<f64>> = args.iter().map(|a| naive(a, states)).collect();
            interp::apply(*op, &a?).unwrap()
        }
    };
    v.is_finite().then_some(v)
}

fn build_tree(g: &mut Graph, t: &Tree) -> NodeId {
    match t {
        Tree::Leaf(op) => g.leaf(*op),
        Tree::Node(op, args) => {
            let a: Vec<NodeId> = args.iter().map(|a| build_tree(g, a)).collect();
            g.add_node(*op, a)
        }
    }
}

#[test]
fn simplification_preserves_values_of_random_expressions() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let points = [[0.3, -1.2], [1.5, 0.0], [-0.7, 0.7], [2.0, 1.0], [-0.0, 3.5]];
    let mut compared = 0;
    for _ in 0..3000 {
        let t = random_tree(&mut rng, 5);
        let mut g = Graph::new();
        let n = build_tree(&mut g, &t);
        let mut raw = 0;
        for s in &points {
            let Some(want) = naive(&t, s) else { continue };
            let got = eval1(&g, n, &Env { states: s, ..Env::default() });
            // == rather than bits: `x + 0 -> x` may flip the sign of a zero.
            assert!(got == want, "{} at {s:?}: {got} vs {want}", print::to_text(&g, &[("f".into(), n)]));
            raw += 1;
        }
        compared += raw;
    }
    assert!(compared > 5000, "only {compared} finite comparisons");
}
