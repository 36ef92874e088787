//! `snnc bench train|sim`: the JSON lines the comparison harness (bench/compare.py) reads.
use serde_json::Value;
use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).arg("bench").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn json_lines(o: &std::process::Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn positive(v: &Value, key: &str) -> f64 {
    let x = v[key].as_f64().unwrap_or_else(|| panic!("`{key}` missing or not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "`{key}` = {x} must be finite and positive: {v}");
    x
}

#[test]
fn train_prints_one_json_line_per_rep_for_every_method() {
    for (method, precision) in [("bptt", "f32"), ("d-rtrl", "f64"), ("es-d-rtrl", "f32"), ("es-d-rtrl", "f64")] {
        // T = 80 > one lazy window (32 steps): the ES-D-RTRL windows are contracted on
        // the worker thread.
        let o = bench(&["train", "--method", method, "--precision", precision, "--steps", "80", "--batch", "2", "--neurons", "8", "--inputs", "6", "--outputs", "3", "--reps", "2"]);
        let rows = json_lines(&o);
        assert_eq!(rows.len(), 2, "{rows:?}");
        for (rep, r) in rows.iter().enumerate() {
            assert_eq!(r["bench"], "train");
            assert_eq!(r["method"], method);
            assert_eq!(r["T"], 80);
            assert_eq!(r["batch"], 2);
            assert_eq!(r["neurons"], 8);
            assert_eq!(r["rep"], rep);
            assert_eq!(r["precision"], precision);
            let secs = positive(r, "seconds");
            let sps = positive(r, "sample_steps_per_s");
            assert!((sps * secs / 160.0 - 1.0).abs() < 1e-3, "sample-steps/s = B T / seconds: {r}");
            positive(r, "loss");
            positive(r, "grad_norm");
            positive(r, "peak_rss_mb");
            positive(r, "state_bytes");
        }
        // Same seed, same data: every repetition computes the same loss.
        assert_eq!(rows[0]["loss"], rows[1]["loss"]);
    }
}

#[test]
fn train_rejects_bad_sizes() {
    let o = bench(&["train", "--method", "bptt", "--steps", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be positive"));
    let o = bench(&["train", "--method", "es-d-rtrl", "--etrace-decay", "1.5", "--steps", "4"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn sim_reports_jit_build_and_run_apart() {
    let o = bench(&["sim", "examples/cuba.snn", "--duration", "20ms", "--method", "euler"]);
    let rows = json_lines(&o);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["network"], "cuba");
    assert_eq!(r["neurons"], 4000);
    assert_eq!(r["steps"], 200);
    assert_eq!(r["method"], "euler");
    let jit = positive(r, "jit_s");
    let build = positive(r, "build_s");
    assert!(jit <= build, "the JIT is part of the build: {r}");
    positive(r, "run_s");
    positive(r, "synapses");
    assert!(r["kernels"].as_u64().unwrap() >= 2, "{r}");
    assert!(r["rates_hz"]["E"].is_number(), "{r}");
}

/// `SNNC_CHUNK_TIMES=FILE`: a step-timers build logs every chunk's time at every step
/// into FILE (what bench/chunk_times.py reads); any other build says it cannot and
/// prints its figures all the same.
#[test]
fn sim_logs_chunk_times_only_where_the_timers_are_built() {
    let dir = std::env::temp_dir().join(format!("snnc-chunk-times-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("chunks.tsv");
    let o = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["bench", "sim", "examples/cuba.snn", "--duration", "2ms", "--method", "euler", "--threads", "2"])
        .env("SNNC_CHUNK_TIMES", &log)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let rows = json_lines(&o);
    assert_eq!(rows.len(), 1);
    let stderr = String::from_utf8_lossy(&o.stderr);
    if rows[0].get("timers").is_none() {
        assert!(stderr.contains("SNNC_CHUNK_TIMES needs a build with `--features step-timers`"), "{stderr}");
        assert!(!log.exists());
    } else {
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("step\tpop\tchunk\tthread\tns"));
        // Each of the 20 steps logs the same chunks, of both populations (E and I).
        let mut chunks_at: std::collections::BTreeMap<u64, std::collections::BTreeSet<(u32, u32)>> = Default::default();
        for l in lines {
            let f: Vec<u64> = l.split('\t').map(|x| x.parse().unwrap()).collect();
            assert_eq!(f.len(), 5, "{l}");
            chunks_at.entry(f[0]).or_default().insert((f[1] as u32, f[2] as u32));
        }
        assert_eq!(chunks_at.len(), 20, "{text}");
        let first = chunks_at.values().next().unwrap();
        assert!(chunks_at.values().all(|c| c == first), "{text}");
        assert_eq!(first.iter().map(|&(p, _)| p).collect::<std::collections::BTreeSet<_>>().len(), 2, "{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
