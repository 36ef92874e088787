//! Snapshots of `snnc explain` for every stdlib model and the example networks: the
//! integrator, the discrete update, D, Df and the surrogate as a person reads them.
use std::process::Command;

fn explain(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .arg("explain")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run snnc");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

macro_rules! snapshot_file {
    ($name:ident, $($arg:expr),+) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(explain(&[$($arg),+]));
        }
    };
}

snapshot_file!(explain_lif, "stdlib/lif.snn");
snapshot_file!(explain_alif, "stdlib/alif.snn");
snapshot_file!(explain_adlif, "stdlib/adlif.snn");
snapshot_file!(explain_gif, "stdlib/gif.snn");
snapshot_file!(explain_izhikevich, "stdlib/izhikevich.snn");
snapshot_file!(explain_coba_neurons, "stdlib/coba.snn");
snapshot_file!(explain_hh, "stdlib/hh.snn");
snapshot_file!(explain_synapses, "stdlib/synapses.snn");
snapshot_file!(explain_readout, "stdlib/readout.snn");
snapshot_file!(explain_rate_sender, "examples/force.snn", "--model", "Rate");
snapshot_file!(explain_graded_sender, "tests/data/graded.snn");
snapshot_file!(explain_coba_network, "examples/coba.snn", "--network", "coba");
snapshot_file!(explain_dms_network, "examples/dms.snn", "--network", "dms");

#[test]
fn explain_json_is_valid_and_complete() {
    let text = explain(&["stdlib/alif.snn", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let m = &v[0];
    assert_eq!(m["model"], "ALIF");
    assert_eq!(m["integrator"], "exact");
    assert_eq!(m["hidden"], serde_json::json!(["v", "a"]));
    assert_eq!(m["D_sparsity"], serde_json::json!([[true, true], [true, true]]));
    assert_eq!(m["Df"].as_array().unwrap().len(), 2);
}

#[test]
fn explain_dot_is_a_graph() {
    let text = explain(&["stdlib/lif.snn", "--model", "LIF", "--dot"]);
    assert!(text.starts_with("digraph"), "{text}");
    assert!(text.contains("->"));
}

#[test]
fn emit_ir_lists_step_and_jacobians() {
    let out = Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["emit", "--target", "ir", "stdlib/lif.snn", "--model", "LIF"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}
