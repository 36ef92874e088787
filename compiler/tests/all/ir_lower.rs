//! Lowering checked models (from source text) to IR, evaluated with the interpreter.

use snnc_compiler::SourceMap;
use snnc_compiler::ir::{self, Env, LoweredModel, Op, lower_model};
use snnc_compiler::sema::{self, Program, UpdateOp};

fn check(text: &str) -> Program {
    let (program, diags) = sema::check_source("t.snn", text, &mut SourceMap::new());
    let errors: Vec<String> = diags.iter().filter(|d| d.is_error()).map(|d| format!("{d:?}")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    program
}

fn lower(program: &Program, name: &str) -> (sema::Model, LoweredModel) {
    let m = program.model(name).unwrap_or_else(|| panic!("no model {name}")).clone();
    let l = lower_model(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
    (m, l)
}

const LIF: &str = "
neuron N {
    param tau: ms = 10 ms
    param v_th = 1.0
    param v_reset = 0.0
    state v = 0.0
    input I
    dv/dt = (-v + I) / tau
    spike when v > v_th
    on spike { v -= v_th - v_reset }
}
";

#[test]
fn lif_right_hand_side_evaluates() {
    let p = check(LIF);
    let (m, l) = lower(&p, "N");
    assert_eq!(l.layout.params.iter().map(|&s| m.symbols[s].name.as_str()).collect::<Vec<_>>(), ["tau", "v_th", "v_reset"]);
    assert_eq!(l.layout.states.len(), 1);
    assert_eq!(l.odes.len(), 1);
    let (k, rhs) = l.odes[0];
    assert_eq!(k, 0);
    // Param defaults are in SI: 10 ms = 0.01 s.
    let defaults: Vec<f64> = l.param_defaults.iter().map(|d| ir::eval(&l.graph, &[d.unwrap()], &Env::default()).unwrap()[0]).collect();
    assert_eq!(defaults, [0.01, 1.0, 0.0]);
    for (v, i) in [(0.0, 0.0), (0.3, 1.5), (-2.0, 0.25), (1.1, -0.7)] {
        let env = Env { params: &defaults, states: &[v], inputs: &[i], ..Env::default() };
        let got = ir::eval(&l.graph, &[rhs], &env).unwrap()[0];
        let want: f64 = (-v + i) / 0.01;
        assert_eq!(got.to_bits(), want.to_bits(), "v = {v}, I = {i}: {got} vs {want}");
    }
}

#[test]
fn lif_spike_and_reset() {
    let p = check(LIF);
    let (m, l) = lower(&p, "N");
    let spike = l.spike.as_ref().expect("spike");
    assert!(matches!(l.graph.op(spike.spike), Op::Heaviside(_)));
    assert_eq!(spike.reset_spike, spike.spike, "not detached");
    assert_eq!(l.graph.surrogate(spike.surrogate).name, "relu_grad", "the default surrogate");
    let params = [0.01, 1.0, 0.0];
    for (v, s) in [(0.5, 0.0), (1.0, 1.0), (1.5, 1.0)] {
        let env = Env { params: &params, states: &[v], ..Env::default() };
        let out = ir::eval(&l.graph, &[spike.arg, spike.spike], &env).unwrap();
        assert_eq!(out, [v - 1.0, s]);
    }
    assert_eq!(l.on_spike.len(), 1);
    let u = &l.on_spike[0];
    assert_eq!(m.symbols[u.target].name, "v");
    assert_eq!(u.op, UpdateOp::Sub);
    let env = Env { params: &[0.01, 1.0, 0.25], ..Env::default() };
    assert_eq!(ir::eval(&l.graph, &[u.value], &env).unwrap()[0], 0.75);
    // The derivative of the soft reset v - (v_th - v_reset) * H(v - v_th) w.r.t. v uses
    // the surrogate: 1 - sg(v - v_th) (v_th - v_reset).
    let mut g = l.graph.clone();
    let v = g.state(0);
    let reset = g.mul(u.value, spike.reset_spike);
    let after = ir::lower::apply_update(&mut g, v, u.op, reset);
    let d = ir::derivative(&mut g, &[after], v)[0];
    let env = Env { params: &[0.01, 1.0, 0.0], states: &[1.2], ..Env::default() };
    let got = ir::eval(&g, &[d], &env).unwrap()[0];
    assert!((got - (1.0 - 0.3 * (1.0 - 0.2))).abs() < 1e-15, "{got}");
}

#[test]
fn detached_reset_has_no_spike_gradient() {
    let p = check(
        "neuron D {
            state v = 0.0
            input I
            dv/dt = (-v + I) / (10 ms)
            spike when v > 1.0 surrogate sigmoid(alpha = 2.0)
            on spike detach { v -= 1.0 }
        }",
    );
    let (_, l) = lower(&p, "D");
    let s = l.spike.as_ref().unwrap();
    assert_eq!(l.graph.op(s.reset_spike), Op::StopGradient);
    let def = l.graph.surrogate(s.surrogate);
    assert_eq!(def.name, "sigmoid");
    assert_eq!(def.params, [("alpha".to_string(), 2.0)]);
    let mut g = l.graph.clone();
    let v = g.state(0);
    let one = g.constant(1.0);
    let reset = g.mul(one, s.reset_spike);
    let after = g.sub(v, reset);
    let d = ir::derivative(&mut g, &[after], v)[0];
    assert_eq!(g.const_value(d), Some(1.0));
}

#[test]
fn lets_are_inlined_once() {
    let p = check(
        "neuron L {
            param tau: ms = 20 ms
            state v = 0.0
            input I
            let u = I - v
            dv/dt = (u * u + u) / tau
            spike when v > 1.0
        }",
    );
    let (_, l) = lower(&p, "L");
    let rhs = l.odes[0].1;
    let g = &l.graph;
    assert_eq!(g.op(rhs), Op::Div);
    let sum = g.args(rhs)[0];
    assert_eq!(g.op(sum), Op::Add);
    let u = g.args(sum).iter().copied().find(|&a| g.op(a) == Op::Sub).expect("u");
    let sq = g.args(sum).iter().copied().find(|&a| g.op(a) == Op::Mul).expect("u * u");
    assert_eq!(g.args(sq), [u, u]);
    let env = Env { params: &[0.02], states: &[0.5], inputs: &[1.5], ..Env::default() };
    let d: f64 = 1.5 - 0.5;
    assert_eq!(ir::eval(g, &[rhs], &env).unwrap()[0], (d * d + d) / 0.02);
}

#[test]
fn two_state_model_jacobian_sparsity() {
    let p = check(
        "neuron A {
            param tau: ms = 20 ms
            param tau_a: ms = 200 ms
            param beta = 0.1
            state v = 0.0
            state a = 0.0
            input I
            dv/dt = (-v + I) / tau
            da/dt = -a / tau_a
            spike when v > 1.0 + beta * a
            on spike { v -= 1.0; a += 1 }
        }",
    );
    let (_, mut l) = lower(&p, "A");
    let mut outs: Vec<_> = l.odes.iter().map(|(_, n)| *n).collect();
    outs.push(l.spike.as_ref().unwrap().arg);
    let (v, a, i) = (l.graph.state(0), l.graph.state(1), l.graph.input(0));
    let jac = ir::jacobian(&mut l.graph, &outs, &[v, a, i]);
    assert_eq!(
        jac.sparsity(&l.graph),
        vec![vec![true, false, true], vec![false, true, false], vec![true, true, false]]
    );
    // d(spike arg)/da = -beta
    let env = Env { params: &[0.02, 0.2, 0.1], ..Env::default() };
    assert_eq!(ir::eval(&l.graph, &[jac.get(2, 1)], &env).unwrap()[0], -0.1);
}

#[test]
fn user_surrogate_binds_the_spike_argument() {
    let p = check(
        "fn my_sg(x, k) = k / (1 + abs(x))^2
        neuron U {
            state v = 0.0
            input I
            dv/dt = (-v + I) / (10 ms)
            spike when v > 1.0 surrogate my_sg(3.0)
            on spike { v = 0 }
        }",
    );
    let (_, l) = lower(&p, "U");
    let s = l.spike.as_ref().unwrap();
    let def = l.graph.surrogate(s.surrogate);
    assert_eq!(def.name, "my_sg");
    for x in [-2.0, -0.5, 0.0, 0.7] {
        let got = ir::interp::eval_surrogate(def, x).unwrap();
        let want = 3.0 / ((1.0 + f64::abs(x)) * (1.0 + f64::abs(x)));
        assert_eq!(got, want, "at {x}");
    }
    // And it is what the spike differentiates to.
    let mut g = l.graph.clone();
    let v = g.state(0);
    let d = ir::derivative(&mut g, &[s.spike], v)[0];
    let got = ir::eval(&g, &[d], &Env { states: &[1.5], ..Env::default() }).unwrap()[0];
    assert_eq!(got, 3.0 / (1.5 * 1.5));
}

#[test]
fn random_functions_get_their_own_slots() {
    let p = check(
        "neuron R {
            param rate: Hz = 10 Hz
            param sigma = 0.5
            state n = 0.0
            state x = randn()
            state v = rand()
            dn/dt = poisson(rate) / dt
            dx/dt = sigma * xi / sqrt(1 s)
            dv/dt = clip(v, 0.2, 0.4) / (1 ms)
        }",
    );
    let (_, l) = lower(&p, "R");
    assert_eq!(l.step_random, 2, "poisson and xi in the dynamics");
    assert_eq!(l.random_slots, 4, "plus randn and rand in the initial values");
    let g = &l.graph;
    let [(_, dn), (_, dx), (_, dv)] = l.odes[..] else { panic!("three equations") };
    let env = |r: &[f64], v: f64| -> Vec<f64> {
        let e = Env { params: &[10.0, 0.5], states: &[0.0, 0.0, v], random: r, dt: 1e-3, ..Env::default() };
        ir::eval(g, &[dn, dx, dv], &e).unwrap()
    };
    // poisson: rand < rate * dt = 0.01; xi = randn / sqrt(dt).
    assert_eq!(env(&[0.005, 2.0], 0.0)[0], 1000.0);
    assert_eq!(env(&[0.5, 2.0], 0.0)[0], 0.0);
    assert_eq!(env(&[0.5, 2.0], 0.0)[1], 0.5 * (2.0 / 1e-3f64.sqrt()));
    assert_eq!(env(&[0.5, 2.0], 0.0)[2], 0.2 / 1e-3);
    assert_eq!(env(&[0.5, 2.0], 0.3)[2], 0.3 / 1e-3);
    assert_eq!(env(&[0.5, 2.0], 0.9)[2], 0.4 / 1e-3);
    let init: Vec<_> = l.state_init.iter().map(|n| n.unwrap()).collect();
    let e = Env { random: &[0.0, 0.0, -1.25, 0.75], ..Env::default() };
    assert_eq!(ir::eval(g, &init, &e).unwrap(), [0.0, -1.25, 0.75]);
}

#[test]
fn synapse_output_reads_weight_and_post() {
    let p = check(
        "synapse S {
            param tau: ms = 5 ms
            param E: mV = 0 mV
            state g: nS = 0 nS
            dg/dt = -g / tau
            on pre { g += w }
            output I = g * (E - v_post)
        }",
    );
    let (m, l) = lower(&p, "S");
    let (port, out) = l.output.clone().unwrap();
    assert_eq!(port, "I");
    assert_eq!(l.layout.posts.len(), 1);
    assert_eq!(m.symbols[l.layout.posts[0]].name, "v_post");
    let env = Env { params: &[5e-3, 0.0], states: &[2e-9], posts: &[-0.065], weight: 1e-9, ..Env::default() };
    assert_eq!(ir::eval(&l.graph, &[out], &env).unwrap()[0], 2e-9 * (0.0 - -0.065));
    assert_eq!(l.on_pre.len(), 1);
    assert_eq!(l.graph.op(l.on_pre[0].value), Op::Weight);
    let text = l.to_text(&m);
    assert!(text.contains("= post 0  ; v_post"), "{text}");
    assert!(text.contains("out output I = "), "{text}");
}

#[test]
fn integer_powers_become_powi() {
    let p = check(
        "neuron P {
            state v = 0.5
            dv/dt = (v^3 + v^0.5 + v^-2) / (1 ms)
        }",
    );
    let (_, l) = lower(&p, "P");
    let g = &l.graph;
    let ops: Vec<Op> = g.ancestors(&[l.odes[0].1]).iter().map(|&n| g.op(n)).collect();
    assert!(ops.contains(&Op::PowI(3)) && ops.contains(&Op::PowI(-2)) && ops.contains(&Op::Pow), "{ops:?}");
    let got = ir::eval(g, &[l.odes[0].1], &Env { states: &[1.7], ..Env::default() }).unwrap()[0];
    let want = (1.7f64 * (1.7 * 1.7) + 1.7f64.powf(0.5) + 1.0 / (1.7 * 1.7)) / 1e-3;
    assert_eq!(got, want);
}

/// Every standard-library model lowers, and its right-hand sides are finite at the
/// default params and initial states with zero input.
#[test]
fn stdlib_models_lower_and_evaluate() {
    let names = ["adlif", "alif", "coba", "gif", "hh", "izhikevich", "lif", "readout", "synapses"];
    let text: String = names.iter().map(|n| format!("import \"{n}.snn\"\n")).collect();
    let p = check(&text);
    assert!(p.models.len() >= names.len(), "{} models", p.models.len());
    for m in &p.models {
        let l = lower_model(m).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        let mut params = Vec::new();
        for (k, d) in l.param_defaults.iter().enumerate() {
            let d = d.unwrap_or_else(|| panic!("{}: param {k} has no default", m.name));
            let e = Env { params: &params, dt: 1e-4, ..Env::default() };
            params.push(ir::eval(&l.graph, &[d], &e).unwrap_or_else(|e| panic!("{}: {e}", m.name))[0]);
        }
        let random = vec![0.5; l.random_slots as usize];
        let base = Env { params: &params, random: &random, dt: 1e-4, ..Env::default() };
        let states: Vec<f64> = l
            .state_init
            .iter()
            .map(|s| s.map(|n| ir::eval(&l.graph, &[n], &base).unwrap()[0]).unwrap_or(0.0))
            .collect();
        let inputs = vec![0.0; l.layout.inputs.len()];
        let posts = vec![-0.065; l.layout.posts.len()];
        let env = Env { states: &states, inputs: &inputs, posts: &posts, weight: 1e-9, ..base };
        let rhs: Vec<_> = l.odes.iter().map(|(_, n)| *n).collect();
        for (v, (k, _)) in ir::eval(&l.graph, &rhs, &env).unwrap().iter().zip(&l.odes) {
            assert!(v.is_finite(), "{}: d{}/dt = {v}", m.name, m.symbols[l.layout.states[*k as usize]].name);
        }
        // The text form lists every output.
        let text = l.to_text(m);
        assert_eq!(text.matches("\nout ").count() + usize::from(text.starts_with("out ")), l.outputs(m).len(), "{text}");
    }
}
