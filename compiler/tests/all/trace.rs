//! The learning-rule trace steps ([`snnc_compiler::discretise::trace`]) of every stdlib
//! model: the generated step does what its formula says (checked against a dense
//! evaluation with all of D and the driving column, so a dropped entry must really be
//! zero), on the reference interpreter and on the JIT (f64 bit for bit with the
//! interpreter, f32 to float precision), and D's structural zeros are left out.

use crate::common::{Lcg, stdlib_models};
use snnc_compiler::backend::Precision;
use snnc_compiler::backend::cranelift::JitKernel;
use snnc_compiler::backend::interp::InterpKernel;
use snnc_compiler::backend::{ParamSpec, RandomCtx, StepArgs, StepKernel};
use snnc_compiler::discretise::trace::{TraceKind, TraceStep, trace_step};
use snnc_compiler::discretise::{DerivLayout, Step, discretise};
use snnc_compiler::ir::{self, Env};

const N: usize = 37;
const DT: f64 = 1e-4;

/// Every stdlib model that can carry derivatives, with its derivative step.
fn models() -> Vec<(String, Step, DerivLayout)> {
    let mut out = Vec::new();
    for (_, m) in stdlib_models() {
        let Ok(step) = discretise(&m).map(|s| s.at_dt(DT)) else { continue };
        if step.n_hidden == 0 {
            continue;
        }
        let Ok((s, dl)) = step.with_derivative_outputs() else { continue };
        out.push((m.name.clone(), s, dl));
    }
    assert!(out.len() >= 8, "only {} models", out.len());
    out
}

/// The value of every derivative output of `s` for random states, inputs and params:
/// [element][derivative state], by the interpreter (what the population step writes).
fn derivative_values(s: &Step, rng: &mut Lcg) -> Vec<Vec<f64>> {
    derivative_values_with(s, rng, None)
}

/// [`derivative_values`], with the same `params` for every element when given.
fn derivative_values_with(s: &Step, rng: &mut Lcg, fixed: Option<&[f64]>) -> Vec<Vec<f64>> {
    (0..N)
        .map(|_| {
            let states: Vec<f64> = (0..s.layout.states.len()).map(|_| rng.sym()).collect();
            let inputs: Vec<f64> = (0..s.layout.inputs.len()).map(|_| rng.sym()).collect();
            let params: Vec<f64> = match fixed {
                Some(p) => p.to_vec(),
                None => (0..s.layout.params.len()).map(|_| 0.5 + rng.sym().abs()).collect(),
            };
            let env = Env { states: &states, inputs: &inputs, params: &params, dt: DT, ..Env::default() };
            ir::eval(&s.graph, &s.next, &env).unwrap()
        })
        .collect()
}

/// Runs trace step `t` once on `kernel` from states `eps` (K + 1 slices) with the
/// derivative values `dv` and learning signal `l` (K slices).
fn run<T: Copy>(kernel: &dyn StepKernel<T>, t: &TraceStep, dl: &DerivLayout, dv: &[Vec<T>], eps: &mut [Vec<T>], l: &[Vec<T>]) {
    let col = |state: usize| -> Vec<T> { dv.iter().map(|e| e[state]).collect() };
    let mut inputs: Vec<Vec<T>> = t.d.iter().map(|(a, c)| col(dl.d + a * dl.k + c)).collect();
    inputs.extend(t.drive_states.iter().map(|&s| col(s)));
    inputs.extend(l.iter().cloned());
    let refs: Vec<&[T]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut states: Vec<&mut [T]> = eps.iter_mut().map(|v| v.as_mut_slice()).collect();
    kernel.step(StepArgs { states: &mut states, inputs: &refs, params: &[], spikes: &mut [], t: 0.0, random: RandomCtx::default() });
}

#[test]
fn trace_steps_compute_their_formula_on_every_backend() {
    let mut rng = Lcg(7);
    let mut checked = 0;
    let mut dropped = 0;
    for (name, s, dl) in models() {
        let k = dl.k;
        let dv = derivative_values(&s, &mut rng);
        let mut kinds: Vec<TraceKind> = (0..dl.n_in).map(|input| TraceKind::EsOutput { input }).collect();
        kinds.extend((0..dl.n_p).map(|col| TraceKind::Param { col }));
        for kind in kinds {
            let t = trace_step(&s, &dl, kind);
            assert_eq!(t.step.layout.states.len(), k + 1, "{name}");
            assert_eq!(t.step.layout.inputs.len(), t.d.len() + t.df.len() + k, "{name}");
            dropped += k * k - t.d.len();
            // Every dropped D entry and drive row is zero in the population's step.
            for a in 0..k {
                for c in 0..k {
                    if !t.d.contains(&(a, c)) {
                        assert!(dv.iter().all(|e| e[dl.d + a * k + c] == 0.0), "{name}: D[{a}][{c}] dropped but not zero");
                    }
                }
            }
            let (lambda, specs) = match kind {
                TraceKind::EsOutput { .. } => (0.9, vec![ParamSpec::Uniform(0.9)]),
                TraceKind::Param { .. } => (1.0, vec![]),
            };
            let drive = |e: &[f64], a: usize| match kind {
                TraceKind::EsOutput { input } => e[dl.df + a * dl.n_in + input],
                TraceKind::Param { col } => e[dl.dp + a * dl.n_p + col],
            };
            let eps0: Vec<Vec<f64>> = (0..=k).map(|_| (0..N).map(|_| rng.sym()).collect()).collect();
            let l: Vec<Vec<f64>> = (0..k).map(|_| (0..N).map(|_| rng.sym()).collect()).collect();
            // The formula, densely.
            let es = matches!(kind, TraceKind::EsOutput { .. });
            let mut want = vec![vec![0.0; N]; k + 1];
            for i in 0..N {
                for a in 0..k {
                    let s: f64 = (0..k).map(|c| dv[i][dl.d + a * k + c] * eps0[c][i]).sum();
                    want[a][i] = if es { lambda * s + (1.0 - lambda) * drive(&dv[i], a) } else { s + drive(&dv[i], a) };
                }
                want[k][i] = (0..k).map(|a| l[a][i] * want[a][i]).sum();
            }
            let interp = InterpKernel::new(&t.step, &specs).unwrap();
            let mut got_i = eps0.clone();
            run::<f64>(&interp, &t, &dl, &dv, &mut got_i, &l);
            for (a, (g, w)) in got_i.iter().zip(&want).enumerate() {
                for (x, y) in g.iter().zip(w) {
                    assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{name} {kind:?} state {a}: {x} vs {y}");
                }
            }
            let jit = JitKernel::compile(&t.step, &specs, Precision::F64).unwrap();
            let mut got_j = eps0.clone();
            run::<f64>(&jit, &t, &dl, &dv, &mut got_j, &l);
            assert_eq!(got_j, got_i, "{name} {kind:?}: JIT f64 differs from the interpreter");
            let jit32 = JitKernel::compile(&t.step, &specs, Precision::F32).unwrap();
            let to32 = |v: &[Vec<f64>]| -> Vec<Vec<f32>> { v.iter().map(|x| x.iter().map(|y| *y as f32).collect()).collect() };
            let mut got_32 = to32(&eps0);
            run::<f32>(&jit32, &t, &dl, &to32(&dv), &mut got_32, &to32(&l));
            for (g, w) in got_32.iter().zip(&want) {
                let scale = w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                for (x, y) in g.iter().zip(w) {
                    assert!((f64::from(*x) - y).abs() <= 1e-5 * scale, "{name} {kind:?} f32: {x} vs {y}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} trace steps");
    // The multi-state models (ALIF, AdLIF, GIF, ...) have structurally zero D entries.
    assert!(dropped > 0, "no structural zero of D was left out");
    eprintln!("{checked} trace steps, {dropped} structurally zero D entries left out");
}

/// The BPTT adjoint step of every stdlib model against its formula (dense D, Df and
/// dh/dtheta), on the interpreter and the JIT; and the time-invariance analysis: an entry
/// called invariant has the same value whatever the state and input.
#[test]
fn adjoint_steps_compute_their_formula_on_every_backend() {
    use snnc_compiler::discretise::trace::{adjoint_step, is_time_invariant};
    let mut rng = Lcg(11);
    let mut invariant = 0;
    for (name, s, dl) in models() {
        let (k, n_in, n_p) = (dl.k, dl.n_in, dl.n_p);
        let a = adjoint_step(&s, &dl);
        assert_eq!(a.step.layout.states.len(), k + n_in + n_p, "{name}");
        assert_eq!(a.step.layout.inputs.len(), a.deriv_states.len() + 2 * k + 1, "{name}");
        let dv = derivative_values(&s, &mut rng);
        // Same params, other states and inputs.
        let params: Vec<f64> = (0..s.layout.params.len()).map(|_| 0.5 + rng.sym().abs()).collect();
        let dv1 = derivative_values_with(&s, &mut rng, Some(&params));
        let dv2 = derivative_values_with(&s, &mut rng, Some(&params));
        for &st in &a.deriv_states {
            if is_time_invariant(&s, st) {
                invariant += 1;
                for (x, y) in dv1.iter().zip(&dv2) {
                    assert_eq!(x[st], y[st], "{name}: state {st} called time-invariant but varies");
                }
            }
        }
        let col = |st: usize| -> Vec<f64> { dv.iter().map(|e| e[st]).collect() };
        let lam0: Vec<Vec<f64>> = (0..k).map(|_| (0..N).map(|_| rng.sym()).collect()).collect();
        let l: Vec<Vec<f64>> = (0..k).map(|_| (0..N).map(|_| rng.sym()).collect()).collect();
        let hbar: Vec<Vec<f64>> = (0..k).map(|_| (0..N).map(|_| rng.sym()).collect()).collect();
        let sbar: Vec<f64> = (0..N).map(|_| rng.sym()).collect();
        let mut inputs: Vec<Vec<f64>> = a.deriv_states.iter().map(|&st| col(st)).collect();
        inputs.extend(l.iter().cloned());
        inputs.extend(hbar.iter().cloned());
        inputs.push(sbar.clone());
        // The formula, densely.
        let mut want = vec![vec![0.0; N]; k + n_in + n_p];
        for i in 0..N {
            let lp: Vec<f64> = (0..k).map(|q| lam0[q][i] + ((l[q][i] + sbar[i] * dv[i][dl.ds + q]) + hbar[q][i])).collect();
            for c in 0..k {
                want[c][i] = (0..k).map(|q| lp[q] * dv[i][dl.d + q * k + c]).sum();
            }
            for j in 0..n_in {
                want[k + j][i] = (0..k).map(|q| lp[q] * dv[i][dl.df + q * n_in + j]).sum();
            }
            for j in 0..n_p {
                want[k + n_in + j][i] = (0..k).map(|q| lp[q] * dv[i][dl.dp + q * n_p + j]).sum();
            }
        }
        let refs: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        let st0: Vec<Vec<f64>> = lam0.iter().cloned().chain(std::iter::repeat_n(vec![0.0; N], n_in + n_p)).collect();
        let run = |kernel: &dyn StepKernel<f64>| step_once(kernel, &st0, &refs);
        let got = run(&InterpKernel::new(&a.step, &[]).unwrap());
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            for (x, y) in g.iter().zip(w) {
                assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{name} adjoint state {r}: {x} vs {y}");
            }
        }
        let jit = JitKernel::compile(&a.step, &[], Precision::F64).unwrap();
        assert_eq!(run(&jit), got, "{name}: adjoint JIT f64 differs from the interpreter");
    }
    // LIF's Df (and D with a detached reset) is the same every step.
    assert!(invariant > 0, "no time-invariant derivative found");
}

/// The D-RTRL window recursion step of every stdlib model against its formula, on the
/// interpreter and the JIT.
#[test]
fn exact_window_steps_compute_their_formula_on_every_backend() {
    use snnc_compiler::discretise::trace::exact_window_step;
    let mut rng = Lcg(13);
    for (name, s, dl) in models() {
        let k = dl.k;
        let dv = derivative_values(&s, &mut rng);
        for input in 0..dl.n_in {
            let w = exact_window_step(&s, &dl, input);
            assert_eq!(w.step.layout.states.len(), k + k * k + 1 + k, "{name}");
            assert_eq!(w.step.layout.inputs.len(), w.d.len() + w.df.len() + k, "{name}");
            let col = |st: usize| -> Vec<f64> { dv.iter().map(|e| e[st]).collect() };
            let st0: Vec<Vec<f64>> = (0..k + k * k + 1 + k).map(|_| (0..N).map(|_| rng.sym()).collect()).collect();
            let lprev: Vec<Vec<f64>> = (0..k).map(|_| (0..N).map(|_| rng.sym()).collect()).collect();
            let mut inputs: Vec<Vec<f64>> = w.d.iter().map(|(a, c)| col(dl.d + a * k + c)).collect();
            inputs.extend(w.drive_states.iter().map(|&st| col(st)));
            inputs.extend(lprev.iter().cloned());
            let mut want = st0.clone();
            for i in 0..N {
                let d = |a: usize, c: usize| dv[i][dl.d + a * k + c];
                let f = |a: usize| dv[i][dl.df + a * dl.n_in + input];
                let (rho, m) = (|a: usize| st0[a][i], |a: usize, c: usize| st0[k + a * k + c][i]);
                for c in 0..k {
                    want[c][i] = (0..k).map(|a| rho(a) * d(a, c)).sum::<f64>() + lprev[c][i];
                    for a in 0..k {
                        want[k + a * k + c][i] = (0..k).map(|b| m(a, b) * d(b, c)).sum();
                    }
                }
                want[k + k * k][i] = (0..k).map(|a| rho(a) * f(a)).sum();
                for a in 0..k {
                    want[k + k * k + 1 + a][i] = (0..k).map(|c| m(a, c) * f(c)).sum();
                }
            }
            let refs: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
            let run = |kernel: &dyn StepKernel<f64>| step_once(kernel, &st0, &refs);
            let got = run(&InterpKernel::new(&w.step, &[]).unwrap());
            for (r, (g, wv)) in got.iter().zip(&want).enumerate() {
                for (x, y) in g.iter().zip(wv) {
                    assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{name} window state {r}: {x} vs {y}");
                }
            }
            let jit = JitKernel::compile(&w.step, &[], Precision::F64).unwrap();
            assert_eq!(run(&jit), got, "{name}: window JIT f64 differs from the interpreter");
        }
    }
}

/// One step of `kernel` from states `st0` with `inputs`; the states after it.
fn step_once(kernel: &dyn StepKernel<f64>, st0: &[Vec<f64>], inputs: &[&[f64]]) -> Vec<Vec<f64>> {
    let mut st = st0.to_vec();
    let mut states: Vec<&mut [f64]> = st.iter_mut().map(|v| v.as_mut_slice()).collect();
    kernel.step(StepArgs { states: &mut states, inputs, params: &[], spikes: &mut [], t: 0.0, random: RandomCtx::default() });
    st
}
