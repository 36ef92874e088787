//! The discrete step and its derivatives: D and Df against finite differences for every
//! stdlib model and every example population, the golden braintrace Jacobians, and the
//! exact integrator against the matrix exponential and the analytic solution.

use crate::common::{Lcg, example_populations, load, param_values, root, stdlib_models};
use snnc_compiler::SourceMap;
use snnc_compiler::discretise::{Step, discretise, expm};
use snnc_compiler::ir::{self, Env, Graph, NodeId, Op};
use snnc_compiler::sema::{self, Init, Method};
use snnc_compiler::units::{self, Dim};
use std::collections::HashMap;

/// The time step param defaults are evaluated at.
const DT: f64 = 1e-4;

/// A typical magnitude of a quantity of this dimension (SI units).
fn typical(dim: Dim) -> f64 {
    match dim {
        d if d == units::VOLT => 0.01,
        d if d == units::SIEMENS => 1e-8,
        d if d == units::AMPERE => 1e-10,
        d if d == Dim::TIME => 1e-3,
        d if d == units::VOLT.div(Dim::TIME) => 10.0,
        _ => 1.0,
    }
}

fn initial_state(step: &Step) -> Vec<f64> {
    step.layout
        .states
        .iter()
        .map(|&s| step.model.symbols[s].value.as_ref().and_then(|v| v.const_value()).unwrap_or(0.0))
        .collect()
}

/// The step's graph with every surrogate derivative replaced by 0: what finite
/// differences of the (piecewise constant in the spike) forward step measure.
fn without_surrogates(g: &mut Graph, roots: &[NodeId]) -> Vec<NodeId> {
    g.rewrite(roots, &mut |g, old, _| match g.op(old) {
        Op::SurrogateGrad(_) => Some(g.constant(0.0)),
        _ => None,
    })
}

struct Checked {
    entries: usize,
}

/// D and Df against central differences of `next` at `points` random states.
fn fd_check(name: &str, step: &mut Step, points: usize, dt: f64) -> Checked {
    let params = param_values(step, &[], DT);
    let der = step.derivatives();
    let k = step.n_hidden;
    let n_in = step.layout.inputs.len();
    let d_roots = without_surrogates(&mut step.graph, &der.d.entries);
    let df_roots = without_surrogates(&mut step.graph, &der.df.entries);
    let spike_roots: Vec<NodeId> = step.spike.into_iter().collect();
    let state_scale: Vec<f64> = step.layout.states.iter().map(|&s| typical(step.model.symbols[s].dim)).collect();
    let input_scale: Vec<f64> = step.layout.inputs.iter().map(|&s| typical(step.model.symbols[s].dim)).collect();
    let init = initial_state(step);
    let mut rng = Lcg(0x5eed ^ name.len() as u64);
    let random = vec![0.0; step.random_slots as usize];
    let mut checked = 0;
    let mut tries = 0;
    while checked < points {
        tries += 1;
        assert!(tries < points * 50, "{name}: could not find points away from the threshold");
        let mut x: Vec<f64> = init.iter().zip(&state_scale).map(|(i, s)| i + s * rng.sym()).collect();
        // Not refractory (the counter, if any, is the last state).
        if step.layout.states.len() > k {
            x[k] = -dt;
        }
        let y: Vec<f64> = input_scale.iter().map(|s| s * rng.sym()).collect();
        let eval = |g: &Graph, roots: &[NodeId], x: &[f64], y: &[f64]| {
            let env = Env { params: &params, states: x, inputs: y, random: &random, dt, t: 0.01, ..Env::default() };
            ir::eval(g, roots, &env).expect("eval")
        };
        let s0 = eval(&step.graph, &spike_roots, &x, &y);
        let d = eval(&step.graph, &d_roots, &x, &y);
        let df = eval(&step.graph, &df_roots, &x, &y);
        let mut ok_point = true;
        let mut fd = vec![0.0; k * k];
        for j in 0..k {
            let h = 1e-5 * state_scale[j];
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[j] += h;
            xm[j] -= h;
            // The spike must not flip between the two points (H is a step function).
            if eval(&step.graph, &spike_roots, &xp, &y) != s0 || eval(&step.graph, &spike_roots, &xm, &y) != s0 {
                ok_point = false;
                break;
            }
            let (np, nm) = (eval(&step.graph, &step.next, &xp, &y), eval(&step.graph, &step.next, &xm, &y));
            for i in 0..k {
                fd[i * k + j] = (np[i] - nm[i]) / (2.0 * h);
            }
        }
        if !ok_point {
            continue;
        }
        for i in 0..k {
            for j in 0..k {
                let (a, b) = (d[i * k + j], fd[i * k + j]);
                let tol = 1e-6 * a.abs().max(b.abs()) + 1e-8 * state_scale[i] / state_scale[j];
                assert!((a - b).abs() <= tol, "{name}: D[{i},{j}] = {a} but finite differences give {b} at x = {x:?}, y = {y:?}");
            }
            for j in 0..n_in {
                let h = 1e-5 * input_scale[j];
                let (mut yp, mut ym) = (y.clone(), y.clone());
                yp[j] += h;
                ym[j] -= h;
                let (np, nm) = (eval(&step.graph, &step.next, &x, &yp), eval(&step.graph, &step.next, &x, &ym));
                let b = (np[i] - nm[i]) / (2.0 * h);
                let a = df[i * n_in + j];
                let tol = 1e-6 * a.abs().max(b.abs()) + 1e-8 * state_scale[i] / input_scale[j];
                assert!((a - b).abs() <= tol, "{name}: Df[{i},{j}] = {a} but finite differences give {b}");
            }
        }
        checked += 1;
    }
    Checked { entries: points * (k * k + k * n_in) }
}

#[test]
fn stdlib_jacobians_match_finite_differences() {
    let models = stdlib_models();
    assert!(models.len() >= 13, "{}", models.len());
    let mut total = 0;
    for (_, m) in &models {
        let mut step = discretise(m).unwrap_or_else(|d| panic!("{}: {}", m.name, d.message));
        total += fd_check(&m.name, &mut step, 100, 1e-4).entries;
    }
    assert!(total > 1000);
}

#[test]
fn every_integrator_has_correct_jacobians() {
    // The same non-linear neuron under each integrator.
    for method in ["exact", "exp_euler", "euler", "rk2", "rk4"] {
        let text = format!(
            "neuron Q {{ param tau: ms = 10 ms; param k = 0.3; state v = 0; state w = 0; input I
               dv/dt = (-v + k * v^2 - w + I) / tau; dw/dt = (v - w) / (5 * tau)
               spike when v > 1; on spike {{ v = 0; w += 0.2 }}; method {method} }}"
        );
        let mut sources = SourceMap::new();
        let (p, d) = sema::check_source("q.snn", &text, &mut sources);
        assert!(d.is_empty(), "{}", snnc_compiler::diag::render_all(&d, &sources));
        let mut step = discretise(&p.models[0]).unwrap();
        // `exact` is not possible for a non-linear system: it falls back to exp_euler.
        let want = if method == "exact" { Method::ExpEuler } else { p.models[0].method.unwrap() };
        assert_eq!(step.method, want);
        fd_check(method, &mut step, 50, 1e-3);
    }
}

#[test]
fn network_populations_match_finite_differences() {
    let nets = [("examples/coba.snn", "coba"), ("examples/cuba.snn", "cuba"), ("examples/cobahh.snn", "cobahh"), ("examples/dms.snn", "dms")];
    for (name, g) in example_populations(&nets) {
        let mut step = discretise(&g.model).unwrap();
        fd_check(&name, &mut step, 30, 1e-4);
    }
}

// ------------------------------------------------------------------ golden files

fn golden(name: &str) -> serde_json::Value {
    // Copies of ../shared/golden (braintrace 0.2.8), so the suite runs from any clone.
    let path = root().join("tests/data/golden").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden json")
}

fn arr(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v.as_array().expect("array").clone()
}

/// The hidden group of population 0 of a golden network, with its param values.
fn golden_step(snn: &str) -> (Step, Vec<f64>) {
    let program = load(snn);
    let net = &program.networks[0];
    let plan = snnc_compiler::net::plan(&program, net);
    let g = snnc_compiler::net::compose(&program, net, &plan, 0).unwrap().unwrap();
    let overrides: Vec<(usize, f64)> = g
        .settings
        .iter()
        .filter_map(|(s, init)| match init {
            Init::Const(v) => Some((*s, *v)),
            _ => None,
        })
        .collect();
    let step = discretise(&g.model).unwrap();
    let params = param_values(&step, &overrides, DT);
    (step, params)
}

#[test]
fn golden_lif_and_alif_jacobians() {
    for (json, snn, k) in [("golden_lif.json", "tests/data/golden_lif.snn", 1), ("golden_alif.json", "tests/data/golden_alif.snn", 2)] {
        let gj = golden(json);
        let (mut step, params) = golden_step(snn);
        assert_eq!(step.n_hidden, k);
        assert_eq!(step.method, Method::Exact);
        let der = step.derivatives();
        let fwd = &gj["forward"];
        let v = arr(&fwd["v"]);
        let a = if k == 2 { arr(&fwd["a"]) } else { Vec::new() };
        let d_ref = arr(&gj["per_step"]["reference"]["D_hidden_jacobian"]);
        let df_ref = arr(&gj["per_step"]["reference"]["df"]);
        let dt = gj["config"]["dt_ms"].as_f64().unwrap() * 1e-3;
        let mut worst: f64 = 0.0;
        let mut count = 0;
        for t in 0..v.len() {
            for b in 0..arr(&v[t]).len() {
                for n in 0..arr(&v[t][b]).len() {
                    // h^{t-1}: the state after the previous step (0 before the first).
                    let prev = |src: &Vec<serde_json::Value>| if t == 0 { 0.0 } else { src[t - 1][b][n].as_f64().unwrap() };
                    let x: Vec<f64> = if k == 1 { vec![prev(&v)] } else { vec![prev(&v), prev(&a)] };
                    let y = vec![0.3; step.layout.inputs.len()];
                    let env = Env { params: &params, states: &x, inputs: &y, dt, ..Env::default() };
                    let d = ir::eval(&step.graph, &der.d.entries, &env).unwrap();
                    let df = ir::eval(&step.graph, &der.df.entries, &env).unwrap();
                    for i in 0..k {
                        for j in 0..k {
                            let want = if k == 1 { d_ref[t][b][n].as_f64().unwrap() } else { d_ref[t][b][n][i][j].as_f64().unwrap() };
                            let err = (d[i * k + j] - want).abs();
                            worst = worst.max(err);
                            assert!(err <= 1e-12 * want.abs().max(1.0), "{json} t={t} b={b} n={n} D[{i},{j}] = {} want {want}", d[i * k + j]);
                            count += 1;
                        }
                        let want = if k == 1 { df_ref[t][b][n].as_f64().unwrap() } else { df_ref[t][b][n][i].as_f64().unwrap() };
                        assert!((df[i] - want).abs() <= 1e-12, "{json} Df[{i}] = {} want {want}", df[i]);
                    }
                }
            }
        }
        assert!(count >= 50 * 2 * 16 * k * k);
        eprintln!("{json}: {count} D entries, worst error {worst:e}");
    }
}

#[test]
fn golden_forward_step_reproduces_states() {
    // One step from the golden h^{t-1} with the golden input current gives h^t.
    let gj = golden("golden_alif.json");
    let (step, params) = golden_step("tests/data/golden_alif.snn");
    let x = arr(&gj["inputs"]["x"]);
    let w_in = arr(&gj["init_weights"]["W_in"]);
    let w_rec = arr(&gj["init_weights"]["W_rec"]);
    let (v, a, s_prev) = (arr(&gj["forward"]["v"]), arr(&gj["forward"]["a"]), arr(&gj["forward"]["s_prev"]));
    let f = |val: &serde_json::Value| val.as_f64().unwrap();
    for t in 1..v.len() {
        for b in 0..2 {
            for n in 0..16 {
                let mut current = 0.0;
                for i in 0..8 {
                    current += f(&x[t][b][i]) * f(&w_in[i][n]);
                }
                for i in 0..16 {
                    current += f(&s_prev[t][b][i]) * f(&w_rec[i][n]);
                }
                let h = [f(&v[t - 1][b][n]), f(&a[t - 1][b][n])];
                let env = Env { params: &params, states: &h, inputs: &[current], dt: 1e-3, ..Env::default() };
                let next = ir::eval(&step.graph, &step.next, &env).unwrap();
                assert!((next[0] - f(&v[t][b][n])).abs() < 1e-12, "t={t} v {} vs {}", next[0], f(&v[t][b][n]));
                assert!((next[1] - f(&a[t][b][n])).abs() < 1e-12, "t={t} a");
                let s = ir::eval(&step.graph, &[step.spike.unwrap()], &Env { states: &next, ..env }).unwrap()[0];
                assert_eq!(s, f(&gj["forward"]["s"][t][b][n]), "spike t={t} b={b} n={n}");
            }
        }
    }
}

// ------------------------------------------------------------------ exact integration

#[test]
fn exact_integrator_matches_matrix_exponential_and_analytic_solution() {
    let text = "neuron CurrentLIF { param tau_m: ms = 20 ms; param tau_s: ms = 5 ms; param E: mV = -65 mV
        state v: mV = -65 mV; state g: mV = 0 mV; input I: mV
        dv/dt = (E - v + g + I) / tau_m; dg/dt = -g / tau_s }";
    let mut sources = SourceMap::new();
    let (p, d) = sema::check_source("c.snn", text, &mut sources);
    assert!(d.is_empty());
    let step = discretise(&p.models[0]).unwrap();
    assert_eq!(step.method, Method::Exact);
    for tau_s in [5e-3, 20e-3, 20e-3 * (1.0 + 1e-9)] {
        for dt in [1e-4, 1e-3, 1e-2] {
            let (tm, e, i_in) = (20e-3, -65e-3, 3e-3);
            let params = [tm, tau_s, e];
            let x = [-60e-3, 4e-3];
            let env = Env { params: &params, states: &x, inputs: &[i_in], dt, ..Env::default() };
            let next = ir::eval(&step.graph, &step.next, &env).unwrap();
            // Reference: P x + Q b from the numerical matrix exponential.
            let a = expm::Mat::from_rows(&[vec![-1.0 / tm, 1.0 / tm], vec![0.0, -1.0 / tau_s]]);
            let (pm, qm) = expm::propagators(&a, dt).unwrap();
            let b = [(e + i_in) / tm, 0.0];
            for r in 0..2 {
                let want = pm.get(r, 0) * x[0] + pm.get(r, 1) * x[1] + qm.get(r, 0) * b[0] + qm.get(r, 1) * b[1];
                assert!((next[r] - want).abs() < 1e-14, "tau_s {tau_s} dt {dt}: state {r} = {} want {want}", next[r]);
            }
            // Analytic: the steady state plus two exponentials; for tau_s = tau_m the
            // g term is g0 (dt / tau) e^{-dt/tau}. (The textbook form cancels
            // catastrophically when tau_s is within 1e-9 of tau_m: checked above
            // against the matrix exponential only.)
            if tau_s != tm && (tau_s - tm).abs() < 1e-6 {
                continue;
            }
            let v_inf = e + i_in;
            let g_term = if tau_s == tm {
                x[1] * dt / tm * (-dt / tm).exp()
            } else {
                x[1] * tau_s / (tau_s - tm) * ((-dt / tau_s).exp() - (-dt / tm).exp())
            };
            let want = v_inf + (x[0] - v_inf) * (-dt / tm).exp() + g_term;
            assert!((next[0] - want).abs() < 1e-13, "analytic: {} vs {want} (tau_s {tau_s}, dt {dt})", next[0]);
            assert!(next.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn integrators_converge_at_their_order() {
    // dv/dt = -v^2 / tau (v(0) = 1): v(t) = 1 / (1 + t / tau).
    let mut errors: HashMap<&str, Vec<f64>> = HashMap::new();
    for method in ["euler", "exp_euler", "rk2", "rk4"] {
        let text = format!("neuron N {{ param tau: ms = 10 ms; state v = 1; dv/dt = -v^2 / tau; method {method} }}");
        let mut sources = SourceMap::new();
        let (p, _) = sema::check_source("n.snn", &text, &mut sources);
        let step = discretise(&p.models[0]).unwrap();
        for n in [20, 40, 80] {
            let t_end = 10e-3;
            let dt = t_end / n as f64;
            let mut v = 1.0;
            for _ in 0..n {
                let env = Env { params: &[10e-3], states: &[v], dt, ..Env::default() };
                v = ir::eval(&step.graph, &step.next, &env).unwrap()[0];
            }
            errors.entry(method).or_default().push((v - 0.5).abs());
        }
    }
    // exp_euler uses the exact derivative df/dv of each state's own equation, which makes
    // it the exponential Rosenbrock-Euler method: second order for a scalar equation
    // (first order for coupled systems, where only the diagonal is exponentiated).
    for (method, order) in [("euler", 1.0), ("exp_euler", 2.0), ("rk2", 2.0), ("rk4", 4.0)] {
        let e = &errors[method];
        let observed = (e[1] / e[2]).log2();
        assert!((observed - order).abs() < 0.25, "{method}: observed order {observed} ({e:?})");
    }
}

#[test]
fn adjoint_equals_transposed_jacobians() {
    // lambda^T D and lambda^T Df from reverse mode against the forward-mode Jacobians,
    // for every stdlib neuron (cotangents are extra input leaves of the same graph).
    for (_, m) in stdlib_models().iter().filter(|(_, m)| m.kind == snnc_compiler::syntax::ast::ModelKind::Neuron) {
        let mut step = discretise(m).unwrap();
        let params = param_values(&step, &[], DT);
        let der = step.derivatives();
        let (k, n_in) = (step.n_hidden, step.layout.inputs.len());
        let lambda: Vec<NodeId> = (0..k as u32).map(|i| step.graph.input(n_in as u32 + i)).collect();
        let (dh, dy) = step.vjp(&lambda);
        let mut x = initial_state(&step);
        for (i, v) in x.iter_mut().enumerate().take(k) {
            *v += 0.3 * typical(step.model.symbols[step.layout.states[i]].dim);
        }
        let mut inputs: Vec<f64> = step.layout.inputs.iter().map(|&s| typical(step.model.symbols[s].dim)).collect();
        let lam: Vec<f64> = (0..k).map(|i| 0.5 + i as f64).collect();
        inputs.extend(&lam);
        let random = vec![0.0; step.random_slots as usize];
        let env = Env { params: &params, states: &x, inputs: &inputs, random: &random, dt: 1e-4, ..Env::default() };
        let d = ir::eval(&step.graph, &der.d.entries, &env).unwrap();
        let df = ir::eval(&step.graph, &der.df.entries, &env).unwrap();
        let got_h = ir::eval(&step.graph, &dh, &env).unwrap();
        let got_y = ir::eval(&step.graph, &dy, &env).unwrap();
        for j in 0..k {
            let want: f64 = (0..k).map(|i| lam[i] * d[i * k + j]).sum();
            assert!((got_h[j] - want).abs() <= 1e-12 * want.abs().max(1.0), "{}: dh[{j}] {} vs {want}", m.name, got_h[j]);
        }
        for j in 0..n_in {
            let want: f64 = (0..k).map(|i| lam[i] * df[i * n_in + j]).sum();
            assert!((got_y[j] - want).abs() <= 1e-12 * want.abs().max(1e-300) + 1e-300, "{}: dy[{j}] {} vs {want}", m.name, got_y[j]);
        }
    }
}

#[test]
fn numeric_exact_for_deeply_coupled_linear_systems() {
    // AdLIF (v and w feed each other) and GIF (V_th <- V <- I1, I2) are linear but
    // coupled beyond the closed form. With params and dt fixed (a population with uniform
    // params) they get numerical propagators; one step must equal a fine RK4 solution.
    for (file, name) in [("stdlib/adlif.snn", "AdLIF"), ("stdlib/gif.snn", "GIF")] {
        let program = load(file);
        let m = program.model(name).unwrap();
        let symbolic = discretise(m).unwrap();
        assert_eq!(symbolic.method, Method::ExpEuler, "{name}: symbolic params cannot use the closed form");
        let params = param_values(&symbolic, &[], DT);
        let dt = 1e-3;
        let known: Vec<Option<f64>> = params.iter().map(|v| Some(*v)).collect();
        let exact = snnc_compiler::discretise::discretise_fixed(m, &known, dt).unwrap();
        assert_eq!(exact.method, Method::Exact, "{name}: {}", exact.method_note);
        let mut rk = m.clone();
        rk.method = Some(Method::Rk4);
        let rk = discretise(&rk).unwrap();
        // Below threshold so that no event happens; some input.
        let mut x = initial_state(&exact);
        for (k, v) in x.iter_mut().enumerate().take(exact.n_hidden) {
            *v += 0.2 * typical(exact.model.symbols[exact.layout.states[k]].dim) * if k % 2 == 0 { -1.0 } else { 1.0 };
        }
        let y: Vec<f64> = exact.layout.inputs.iter().map(|&s| 0.3 * typical(exact.model.symbols[s].dim)).collect();
        let env = Env { params: &params, states: &x, inputs: &y, dt, ..Env::default() };
        let got = ir::eval(&exact.graph, &exact.next, &env).unwrap();
        let mut r = x.clone();
        for _ in 0..1000 {
            let env = Env { params: &params, states: &r, inputs: &y, dt: dt / 1000.0, ..Env::default() };
            r = ir::eval(&rk.graph, &rk.next, &env).unwrap();
        }
        for k in 0..exact.n_hidden {
            let scale = typical(exact.model.symbols[exact.layout.states[k]].dim);
            assert!((got[k] - r[k]).abs() <= 1e-9 * scale, "{name} state {k}: exact {} vs RK4 {}", got[k], r[k]);
        }
    }
}
