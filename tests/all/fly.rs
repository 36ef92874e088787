//! The whole-brain fit's pipeline (docs/fly.md) at a tiny scale: the generator
//! (runtime/examples/make_fly.rs, compiled in here as a module) writes a connectome, a
//! teacher and its targets; `snnc train` fits the student with the train block's
//! ES-D-RTRL (adapter and input map); the scores compare it with the teacher.
use std::process::Command;

#[path = "../../runtime/examples/make_fly.rs"]
#[allow(dead_code)]
mod make_fly;

#[test]
fn the_fly_pipeline_runs_at_a_tiny_scale() {
    let dir = std::env::temp_dir().join(format!("snnc-fly-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = |extra: &[&str]| {
        let base = [dir.to_str().unwrap(), "--neurons", "400", "--regions", "10", "--trials", "40", "--steps", "300", "--batch", "5"];
        make_fly::settings(base.iter().chain(extra).map(|s| s.to_string())).unwrap()
    };
    make_fly::generate(&args(&[])).unwrap();
    for f in ["fly.snn", "teacher.snn", "conn.npz", "teacher_conn.npz", "input.npz", "teacher_input.npz", "readout.npz", "data.npz"] {
        assert!(dir.join(f).exists(), "{f} not written");
    }
    let fly = std::fs::read_to_string(dir.join("fly.snn")).unwrap();
    assert!(fly.contains("LIFHard[400]") && fly.contains("input x: 10") && fly.contains("adapter rank 20"), "{fly}");

    let run = dir.join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["train", dir.join("fly.snn").to_str().unwrap(), "--epochs", "2", "--batches", "2", "--batch", "4", "--out", run.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("with ES-D-RTRL (decay 0.99)") && stdout.contains("4 held-out trials"), "{stdout}");
    assert!(run.join("best.safetensors").exists());

    let s = args(&[]);
    let (teacher, init, best) = (
        make_fly::score_checkpoint(&s, "teacher").unwrap(),
        make_fly::score_checkpoint(&s, "init").unwrap(),
        make_fly::score_checkpoint(&s, run.join("best.safetensors").to_str().unwrap()).unwrap(),
    );
    for sc in [&teacher, &init, &best] {
        assert_eq!(sc.trials, 4);
        assert!(sc.loss.0.is_finite() && sc.loss.0 > 0.0 && (-1.0..=1.0).contains(&sc.correlation.0) && (0.0..=1.0).contains(&sc.accuracy.0), "{sc}");
    }
    // The teacher from other initial states is the floor: the student, on other weights,
    // fits its targets worse.
    assert!(teacher.loss.0 < init.loss.0, "{teacher}\n{init}");
    // A checkpoint that is not one is an error, not a score.
    assert!(make_fly::score_checkpoint(&s, dir.join("fly.snn").to_str().unwrap()).is_err());
    std::fs::remove_dir_all(&dir).ok();
}
