//! `snnc grad` end to end: sequences and weights in `.npz`, gradients out, against the
//! braintrace golden file (recurrent ALIF).
use ndarray::{Array2, Array3};
use serde_json::Value;
use std::fs::File;
use std::process::Command;

fn mat(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

fn tensor3(v: &Value) -> Array3<f64> {
    let a: Vec<Array2<f64>> = v.as_array().unwrap().iter().map(mat).collect();
    Array3::from_shape_fn((a.len(), a[0].nrows(), a[0].ncols()), |(t, i, j)| a[t][[i, j]])
}

#[test]
fn grad_command_reproduces_golden_alif() {
    let root = env!("CARGO_MANIFEST_DIR");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(format!("{root}/tests/data/golden/golden_alif.json")).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("snnc-grad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seq = dir.join("seq.npz");
    let mut w = ndarray_npy::NpzWriter::new(File::create(&seq).unwrap());
    // x as float32, as NumPy users often save it: read back as f64 exactly (0/1 spikes).
    w.add_array("x", &tensor3(&g["inputs"]["x"]).mapv(|v| v as f32)).unwrap();
    w.add_array("target", &tensor3(&g["inputs"]["target"])).unwrap();
    w.finish().unwrap();
    let weights = dir.join("w.npz");
    let mut w = ndarray_npy::NpzWriter::new(File::create(&weights).unwrap());
    for name in ["W_in", "W_rec", "W_out"] {
        w.add_array(name, &mat(&g["init_weights"][name])).unwrap();
    }
    w.finish().unwrap();
    // f32 is the default (the tolerance, 1e-4); `--f64` computes in double.
    for (precision, tol) in [("--f64", 1e-9), ("", 1e-4)] {
        for (method, key) in [("bptt", "bptt"), ("d-rtrl", "d_rtrl"), ("es-d-rtrl", "es_d_rtrl")] {
            grad_case(&Case { root, g: &g, dir: &dir, seq: &seq, weights: &weights }, precision, tol, method, key);
        }
    }
    // A wrong shape is a clear error, not a panic.
    let bad = dir.join("bad.npz");
    let mut w = ndarray_npy::NpzWriter::new(File::create(&bad).unwrap());
    w.add_array("W_in", &Array2::<f64>::zeros((3, 3))).unwrap();
    w.finish().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["grad", "tests/data/golden_alif.snn", "--method", "bptt", "--out"])
        .arg(dir.join("x.npz"))
        .arg("--data")
        .arg(&seq)
        .arg("--weights")
        .arg(&bad)
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("weights of `W_in` must be 8x16"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

struct Case<'a> {
    root: &'a str,
    g: &'a Value,
    dir: &'a std::path::Path,
    seq: &'a std::path::Path,
    weights: &'a std::path::Path,
}

/// `snnc grad` with one method and precision against the golden gradients.
fn grad_case(c: &Case, precision: &str, tol: f64, method: &str, key: &str) {
    let (root, g, dir, seq, weights) = (c.root, c.g, c.dir, c.seq, c.weights);
    let out = dir.join(format!("{key}.npz"));
    let status = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["grad", "tests/data/golden_alif.snn", "--method", method, "--etrace-decay", "0.9"])
        .args(Some(precision).filter(|p| !p.is_empty()))
        .arg("--data")
        .arg(&seq)
        .arg("--weights")
        .arg(&weights)
        .arg("--out")
        .arg(&out)
        .arg("--record")
        .arg(dir.join(key))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    // Per-step states: (T, B, N) = (50, 2, 16).
    let v: ndarray::ArrayD<f64> = ndarray_npy::read_npy(dir.join(key).join("rec.v.npy")).unwrap();
    assert_eq!(v.shape(), &[50, 2, 16]);
    if key == "es_d_rtrl" {
        let f: ndarray::ArrayD<f64> = ndarray_npy::read_npy(dir.join(key).join("eps_f_W_in.npy")).unwrap();
        assert_eq!(f.shape(), &[50, 2, 16, 2], "ALIF has K = 2");
    }
    let mut r = ndarray_npy::NpzReader::new(File::open(&out).unwrap()).unwrap();
    for name in ["W_in", "W_rec", "W_out"] {
        let got: Array2<f64> = r.by_name(name).unwrap();
        let want = mat(&g["grads"][key][name]);
        let err = (&got - &want).iter().map(|x| x * x).sum::<f64>().sqrt() / want.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(err < tol, "{method} {precision} {name}: relative error {err:e}");
    }
}
