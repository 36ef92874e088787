//! `snnc train`: settings from the `train { }` block, CSV log, atomic checkpoints, resume.
use std::process::Command;

fn train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).arg("train").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn trains_logs_checkpoints_and_resumes() {
    let dir = std::env::temp_dir().join(format!("snnc-train-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let o = train(&["tests/data/tiny_evidence.snn", "--delay", "50ms", "--batch", "4", "--batches", "2", "--epochs", "1", "--out", out, "--plot"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("EsDRtrl"), "the method comes from the train block: {stdout}");
    assert!(stdout.contains("epoch 0: loss"), "{stdout}");
    assert!(stdout.contains("test accuracy"), "{stdout}");
    // Header, two training batches, one held-out evaluation.
    let log = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    assert_eq!(log.lines().next(), Some("epoch,batch,split,loss,accuracy"));
    assert!(log.lines().last().unwrap().starts_with("0,,test,"), "{log}");
    let png = std::fs::read(dir.join("curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(dir.join("checkpoint.safetensors").exists());
    // Resume: epochs continue from the checkpoint's count, the log is appended.
    let ck = dir.join("checkpoint.safetensors");
    let o = train(&["tests/data/tiny_evidence.snn", "--delay", "50ms", "--batch", "4", "--batches", "1", "--epochs", "1", "--out", out, "--resume", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("epoch 1: loss"));
    assert_eq!(std::fs::read_to_string(dir.join("log.csv")).unwrap().lines().count(), 6);
    // A broken checkpoint is a clear error.
    std::fs::write(dir.join("bad.safetensors"), b"garbage").unwrap();
    let o = train(&["tests/data/tiny_evidence.snn", "--resume", dir.join("bad.safetensors").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read checkpoint"));
    std::fs::remove_dir_all(&dir).ok();
}
