//! The braintrace golden files (tests/data/golden: copies of ../shared/golden, float64): the forward pass and the
//! gradients of BPTT, D-RTRL and ES-D-RTRL (totals and per step) for recurrent LIF,
//! recurrent ALIF (K = 2) and feed-forward LIF networks written as `.snn` files.
use ndarray::{Array2, Array3};
use serde_json::Value;
use snnc_compiler::SourceMap;
use snnc_compiler::sema::{self, LoadOptions};
use snnc_runtime::learn::{Method, gradient};
use snnc_runtime::kernels::{InterpFactory, JitFactory, KernelFactory};
use snnc_runtime::network::{Network, Options, StepTrace};
use snnc_runtime::scalar::Float;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn golden(name: &str) -> Value {
    let p = root().join("tests/data/golden").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn mat(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

fn tensor3(v: &Value) -> Array3<f64> {
    let a: Vec<Array2<f64>> = v.as_array().unwrap().iter().map(mat).collect();
    Array3::from_shape_fn((a.len(), a[0].nrows(), a[0].ncols()), |(t, i, j)| a[t][[i, j]])
}

fn network_with<T: Float>(snn: &str, g: &Value, factory: &'static dyn KernelFactory<T>) -> Network<T> {
    let mut sources = SourceMap::new();
    let (program, diags) = sema::check_path(&root().join(snn), &LoadOptions::default(), &mut sources);
    assert!(diags.is_empty(), "{}", snnc_compiler::diag::render_all(&diags, &sources));
    let batch = g["config"]["batch"].as_u64().unwrap() as usize;
    let mut net = Network::<T>::build(&program, &program.networks[0], &Options { batch, learning: true, ..Options::default() }, factory).unwrap();
    for name in ["W_in", "W_rec", "W_out"] {
        if let Some((i, ..)) = net.projection(name) {
            net.set_projection_weights(i, mat(&g["init_weights"][name]).mapv(T::from_f64)).unwrap();
        }
    }
    net
}

fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        x => out.push(x.as_f64().unwrap()),
    }
}

fn rel_err(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let num = (a - b).iter().map(|x| x * x).sum::<f64>().sqrt();
    let den = b.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    num / den
}

const CASES: [(&str, &str); 3] = [
    ("golden_lif.json", "tests/data/golden_lif.snn"),
    ("golden_alif.json", "tests/data/golden_alif.snn"),
    ("golden_ff_lif.json", "tests/data/golden_ff_lif.snn"),
];

#[test]
fn forward_pass_reproduces_states_and_spikes() {
    forward_with::<f64>(&InterpFactory, 1e-10);
    forward_with::<f64>(&JitFactory, 1e-10);
}

#[test]
fn forward_pass_in_f32_reproduces_spikes_and_states_to_1e_6() {
    forward_with::<f32>(&JitFactory, 1e-6);
}

fn forward_with<T: Float>(factory: &'static dyn KernelFactory<T>, tol: f64) {
    for (json, snn) in CASES {
        let g = golden(json);
        let mut net = network_with::<T>(snn, &g, factory);
        let x = tensor3(&g["inputs"]["x"]);
        let v = tensor3(&g["forward"]["v"]);
        let s = tensor3(&g["forward"]["s"]);
        let y = tensor3(&g["forward"]["y"]);
        let mut trace = StepTrace::default();
        let mut worst = 0.0f64;
        for t in 0..x.shape()[0] {
            let xt: Vec<T> = x.index_axis(ndarray::Axis(0), t).iter().map(|v| T::from_f64(*v)).collect();
            net.step_traced(&[&xt], Some(&mut trace)).unwrap();
            let rec = &net.pops[0];
            for (i, (got, want)) in rec.states[0].iter().zip(v.index_axis(ndarray::Axis(0), t).iter()).enumerate() {
                let e = (got.to_f64() - want).abs();
                worst = worst.max(e);
                assert!(e < tol, "{json} t={t} v[{i}] {got:?} vs {want}");
            }
            let spikes: Vec<f64> = s.index_axis(ndarray::Axis(0), t).iter().copied().collect();
            let got: Vec<f64> = rec.spikes().iter().map(|v| v.to_f64()).collect();
            assert_eq!(got, spikes, "{json} spikes at t={t}");
            for (got, want) in net.pops[1].output.iter().zip(y.index_axis(ndarray::Axis(0), t).iter()) {
                assert!((got.to_f64() - want).abs() < tol, "{json} readout t={t}");
            }
        }
        eprintln!("{json} ({} bytes): largest state error {worst:.2e}", std::mem::size_of::<T>());
    }
}

#[test]
fn gradients_match_braintrace() {
    gradients_match_with::<f64>(&InterpFactory, 1e-9);
}

#[test]
fn gradients_match_braintrace_with_jit_kernels() {
    // The JIT writes D, Df and ds/dh in the same pass as the step (f64, bit-exact).
    gradients_match_with::<f64>(&JitFactory, 1e-9);
}

#[test]
fn gradients_match_braintrace_in_f32() {
    // The whole learning path in f32 (network, traces, tapes, gradients) against the
    // float64 golden files: the tolerance is 1e-4 relative.
    gradients_match_with::<f32>(&JitFactory, 1e-4);
    gradients_match_with::<f32>(&InterpFactory, 1e-4);
}

fn gradients_match_with<T: Float>(factory: &'static dyn KernelFactory<T>, tol: f64) {
    for (json, snn) in CASES {
        let g = golden(json);
        let x = tensor3(&g["inputs"]["x"]);
        let target = tensor3(&g["inputs"]["target"]);
        let decay = g["config"]["es_d_rtrl_decay"].as_f64().unwrap();
        let trainable: Vec<String> = ["W_in", "W_rec", "W_out"].map(String::from).to_vec();
        let mut compared = 0;
        for (key, method) in [("bptt", Method::Bptt), ("d_rtrl", Method::DRtrl), ("es_d_rtrl", Method::EsDRtrl { decay })] {
            let mut net = network_with(snn, &g, factory);
            // The feed-forward case has no W_rec (an unknown name is an error).
            let trainable: Vec<String> = trainable.iter().filter(|n| net.projection(n).is_some()).cloned().collect();
            let res = gradient(&mut net, &trainable, &[x.clone()], &target, method, true).unwrap();
            let want_loss = g["forward"]["loss_total"].as_f64().unwrap();
            let loss_tol = if tol < 1e-6 { 1e-10 } else { 1e-6 };
            assert!((res.loss - want_loss).abs() <= loss_tol * want_loss.abs(), "{json}: loss {} vs {want_loss}", res.loss);
            for w in ["W_in", "W_rec", "W_out"] {
                let Some(want) = g["grads"][key].get(w) else { continue };
                let want = mat(want);
                let got = res.get(w).unwrap_or_else(|| panic!("{json}: no gradient for {w}"));
                let e = rel_err(got, &want);
                assert!(e < tol, "{json} {key} {w}: relative error {e:e}");
                eprintln!("{json} {key} {w}: relative error {e:.2e}");
                compared += 1;
            }
            // The traces after every step (the ones used for that step's gradient).
            let traces: &[(&str, &str)] = match key {
                "d_rtrl" => &[("eps_W_in", "eps_W_in"), ("eps_W_rec", "eps_W_rec")],
                "es_d_rtrl" => &[("eps_x_W_in", "eps_x_W_in"), ("eps_x_W_rec", "eps_x_W_rec"), ("eps_f_W_in", "eps_f_W_in"), ("eps_f_W_rec", "eps_f_W_rec"), ("bias_correction", "bias_correction")],
                _ => &[],
            };
            for (ours, theirs) in traces {
                if json.contains("ff") && ours.contains("W_rec") {
                    continue;
                }
                let want = g["per_step"][key].get(*theirs).unwrap_or_else(|| panic!("{json}: golden file lacks {theirs}"));
                let mut flat = Vec::new();
                flatten(want, &mut flat);
                let (_, _, got) = res.recorded.iter().find(|(n, _, _)| n == ours).unwrap_or_else(|| panic!("{json}: no {ours} recorded"));
                assert_eq!(got.len(), flat.len(), "{json} {ours}: size");
                let err = got.iter().zip(&flat).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                let scale = flat.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                assert!(err <= tol * scale, "{json} {key} {ours}: max error {err:e}");
                compared += 1;
            }
            if method != Method::Bptt {
                // Per-step contributions of the etrace weights.
                for w in ["W_in", "W_rec"] {
                    let Some(steps) = g["per_step"][key].get(format!("grad_{w}")) else { continue };
                    for (t, want) in steps.as_array().unwrap().iter().enumerate() {
                        let want = mat(want);
                        let got = &res.per_step[t].iter().find(|(n, _)| n == w).unwrap().1;
                        let err = (got - &want).iter().fold(0.0f64, |m, x| m.max(x.abs()));
                        assert!(err <= tol * want.iter().fold(1.0f64, |m, x| m.max(x.abs())), "{json} {key} step {t} {w}: max error {err:e}");
                        compared += 1;
                    }
                }
            }
        }
        // ES-D-RTRL without per-step records accumulates the weight gradient lazily over
        // windows of steps: the totals must be the same.
        let mut net = network_with(snn, &g, factory);
        let trainable: Vec<String> = trainable.iter().filter(|n| net.projection(n).is_some()).cloned().collect();
        let lazy = gradient(&mut net, &trainable, &[x.clone()], &target, Method::EsDRtrl { decay }, false).unwrap();
        for w in ["W_in", "W_rec", "W_out"] {
            let Some(want) = g["grads"]["es_d_rtrl"].get(w) else { continue };
            let e = rel_err(lazy.get(w).unwrap(), &mat(want));
            assert!(e < tol, "{json} lazy es_d_rtrl {w}: relative error {e:e}");
        }
        // Every method's totals for every weight, and 50 steps of per-step gradients.
        let n_w = if json.contains("ff") { 2 } else { 3 };
        assert!(compared >= 3 * n_w + 2 * 50 * (n_w - 1), "{json}: only {compared} comparisons");
    }
}
