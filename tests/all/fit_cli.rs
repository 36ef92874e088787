//! `snnc fit`: FORCE and ridge regression of a readout fed back into a rate network,
//! from the command line (what it prints and writes, and what it refuses).
use ndarray::Array2;
use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1").args(args).output().expect("run snnc")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snnc-fit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// examples/force.snn with 150 units (its recurrent weights scaled to keep g = 1.5).
fn small_force(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/force.snn")).unwrap();
    let text = text.replace("Rate[1000]", "Rate[150]").replace("normal(0, 0.15)", "normal(0, 0.3873)");
    let path = dir.join("force.snn");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The mean absolute error printed for `phase` ("learning" or "testing").
fn error(stdout: &str, phase: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with("mean absolute error") && l.contains(phase)).unwrap_or_else(|| panic!("no {phase} error in\n{stdout}"));
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn fit_trains_a_fed_back_readout_and_writes_it() {
    let dir = temp("ok");
    let file = small_force(&dir);
    for method in ["force", "ridge"] {
        let out = dir.join(method);
        let o = run(&["fit", &file, "--readout", "w_out", "--method", method, "--target", "sines:1.2s", "--learn", "3.6s", "--test", "1.2s", "--out", out.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{method}: {}\n{stdout}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains("with readout feedback: 3600 steps learning, 1200 testing"), "{stdout}");
        // The target's mean |f| is about 0.55 (what the untrained readout's 0 misses by);
        // how well each method does is runtime/tests/all/force.rs's subject.
        let testing = error(&stdout, "testing");
        assert!(testing.is_finite(), "{stdout}");
        if method == "force" {
            assert!(error(&stdout, "learning") < 0.2, "{method}: {stdout}");
        } else {
            assert!(!stdout.contains("learning steps"), "{stdout}");
        }
        let z: Array2<f64> = ndarray_npy::read_npy(out.join("z.npy")).unwrap();
        let f: Array2<f64> = ndarray_npy::read_npy(out.join("target.npy")).unwrap();
        let w: Array2<f64> = ndarray_npy::read_npy(out.join("w_out.npy")).unwrap();
        assert_eq!((z.dim(), f.dim(), w.dim()), ((4800, 1), (4800, 1), (150, 1)));
        assert!(w.iter().any(|v| *v != 0.0));
        assert!(out.join("fit.png").exists());
    }
}

#[test]
fn fit_refuses_what_it_cannot_train() {
    let dir = temp("refuse");
    let file = small_force(&dir);
    let bad = dir.join("bad.npy");
    ndarray_npy::write_npy(&bad, &Array2::<f64>::zeros((10, 3))).unwrap();
    for (args, want) in [
        (vec!["--readout", "J"], "`J`: `rec` is not a `Linear` readout"),
        (vec!["--readout", "w_out", "--alpha", "0"], "FORCE needs alpha > 0"),
        (vec!["--readout", "w_out", "--target", bad.to_str().unwrap()], "3 columns, the readout has 1 neurons"),
    ] {
        let mut a = vec!["fit", &file, "--target", "sines:1s", "--learn", "10ms", "--test", "10ms"];
        if args.contains(&"--target") {
            a.truncate(2);
            a.extend(["--learn", "10ms", "--test", "10ms"]);
        }
        a.extend(args.iter().copied());
        let o = run(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(want) && !err.contains("panicked"), "{err}");
    }
}
