//! End-to-end tests of the `snnc` binary: exit codes, stdout and stderr.
use std::path::Path;
use std::process::{Command, Output};

fn snnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run snnc")
}

fn snn_files(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".snn"))
        .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_stdlib_and_examples() {
    let mut files = snn_files("stdlib");
    files.extend(snn_files("examples"));
    assert!(files.len() >= 10);
    let args: Vec<&str> = std::iter::once("check").chain(files.iter().map(|s| s.as_str())).collect();
    let out = snnc(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "warnings:\n{}", String::from_utf8_lossy(&out.stderr));
    // One line per model or network, each starting with "ok".
    assert!(stdout.lines().all(|l| l.starts_with("ok ")), "{stdout}");
    assert!(stdout.contains("ok network coba: 0 inputs, 2 populations, 4000 neurons, 4 projections"), "{stdout}");
    assert!(stdout.contains("ok neuron LIF: states [v], params [tau, v_th, v_reset], inputs [I], spiking"), "{stdout}");
}

#[test]
fn check_reports_errors_with_location_and_fails() {
    let dir = std::env::temp_dir().join(format!("snnc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.snn");
    std::fs::write(&bad, "neuron N {\n    param tau: ms = 10 ms\n    state v: mV = 0 mV\n    dv/dt = -v * tau\n}\n").unwrap();
    let out = snnc(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error[E0201]: the right side of `dv/dt` has the wrong dimension"), "{err}");
    assert!(err.contains("bad.snn:4:13"), "{err}");
    assert!(err.contains("expected V/s, found V*s"), "{err}");
    let missing = snnc(&["check", "no/such/file.snn"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read `no/such/file.snn`"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fmt_check_passes_on_repository_files() {
    let mut files = snn_files("stdlib");
    files.extend(snn_files("examples"));
    let args: Vec<&str> = ["fmt", "--check"].into_iter().chain(files.iter().map(|s| s.as_str())).collect();
    let out = snnc(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn fmt_prints_canonical_text() {
    let dir = std::env::temp_dir().join(format!("snnc-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("m.snn");
    std::fs::write(&f, "neuron N{param tau:ms=10 ms;state v=0 // the potential\ndv/dt=(-v+1)/tau}").unwrap();
    let out = snnc(&["fmt", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "neuron N {\n    param tau: ms = 10 ms\n    state v = 0  // the potential\n    dv/dt = (-v + 1) / tau\n}\n"
    );
    // --write rewrites in place; --check then passes.
    assert!(snnc(&["fmt", "--write", f.to_str().unwrap()]).status.success());
    assert!(snnc(&["fmt", "--check", f.to_str().unwrap()]).status.success());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_lists_commands_and_examples() {
    let out = snnc(&["--help"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["check", "fmt", "Examples:"] {
        assert!(s.contains(word), "{s}");
    }
}

#[test]
fn run_writes_recordings_and_is_deterministic() {
    let dir = std::env::temp_dir().join(format!("snnc-run-{}", std::process::id()));
    let mut outs = Vec::new();
    for k in 0..2 {
        let d = dir.join(k.to_string());
        let o = snnc(&["run", "examples/embed.snn", "--input", "x=poisson:80Hz", "--duration", "300ms", "--record", "spikes,v", "--seed", "3", "--out", d.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("simulated 0.3000 s (300 steps of 1 ms)"), "{stdout}");
        assert!(stdout.contains("mean rate"), "{stdout}");
        let t: Vec<u8> = std::fs::read(d.join("h.spikes.t.npy")).unwrap();
        let v: Vec<u8> = std::fs::read(d.join("h.v.npy")).unwrap();
        assert!(v.len() > 300 * 10 * 4, "v has 300 x 10 f32 values");
        outs.push((t, v));
    }
    assert_eq!(outs[0], outs[1], "same seed, same recordings");
    let d = dir.join("plot");
    let o = snnc(&["run", "examples/embed.snn", "--input", "x=poisson:80Hz", "--duration", "200ms", "--out", d.to_str().unwrap(), "--plot"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(d.join("raster.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let bad = snnc(&["run", "examples/embed.snn", "--input", "y=poisson:80Hz"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no input `y`"));
    let bad = snnc(&["run", "examples/embed.snn", "--record", "spikes,nothing", "--out", dir.join("bad").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no population has a state `nothing`"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn emit_ptx_writes_an_assemblable_module() {
    // The step, and the learning kernels generated from ALIF's derivatives.
    for kernel in ["step", "es-trace", "adjoint"] {
        let out = std::env::temp_dir().join(format!("snnc-emit-{}-{kernel}.ptx", std::process::id()));
        let o = snnc(&["emit", "--target", "ptx", "stdlib/alif.snn", "--model", "ALIF", "--kernel", kernel, "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{kernel}: {}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains(".entry snnc_step") && text.contains(".target sm_80"), "{text}");
        assemble(&out, kernel);
        std::fs::remove_file(&out).ok();
    }
    // A kernel input that does not exist is one clear error.
    let o = snnc(&["emit", "--target", "ptx", "stdlib/alif.snn", "--model", "ALIF", "--kernel", "es-trace", "--input", "7"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--input 7") && !err.contains("panicked"), "{err}");
}

/// Runs `ptxas` on `file` when SNNC_PTXAS names one (scripts/install-ptxas.sh).
fn assemble(file: &Path, what: &str) {
    match std::env::var("SNNC_PTXAS") {
        Ok(ptxas) if !ptxas.is_empty() => {
            let r = Command::new(ptxas).args(["-arch=sm_80", "-o", "/dev/null"]).arg(file).output().unwrap();
            assert!(r.status.success(), "{what}: {}", String::from_utf8_lossy(&r.stderr));
        }
        _ => eprintln!("skipping the ptxas check: SNNC_PTXAS is not set (run scripts/install-ptxas.sh)"),
    }
}

/// dt has one owner: a network's kernels fold the network's dt (1 ms here) unless the
/// command line says otherwise, and a file with several models is one PTX module.
#[test]
fn emit_ptx_folds_the_networks_dt_and_writes_one_module() {
    let header = |args: &[&str]| {
        let o = snnc(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string()
    };
    let net = ["emit", "--target", "ptx", "tests/data/golden_lif.snn", "--network", "golden_lif"];
    assert!(header(&net).contains("dt = 1e-3 s folded in"), "{}", header(&net));
    let with_dt: Vec<&str> = net.iter().copied().chain(["--dt", "0.5ms"]).collect();
    assert!(header(&with_dt).contains("dt = 5e-4 s folded in"), "{}", header(&with_dt));
    // A model alone has no network: the default dt, or --dt.
    let model = ["emit", "--target", "ptx", "stdlib/lif.snn", "--model", "LIF"];
    assert!(header(&model).contains("dt = 1e-4 s folded in"), "{}", header(&model));

    // stdlib/lif.snn defines several models: one module, one entry per model.
    let out = std::env::temp_dir().join(format!("snnc-emit-all-{}.ptx", std::process::id()));
    let o = snnc(&["emit", "--target", "ptx", "stdlib/lif.snn", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.matches(".version").count(), 1, "{text}");
    let entries: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(".visible .entry ")).collect();
    assert!(entries.len() >= 2 && entries.contains(&"snnc_step_LIF("), "{entries:?}");
    assemble(&out, "stdlib/lif.snn");
    std::fs::remove_file(&out).ok();
}

/// `snnc emit --target clif`: each population's CPU kernel as the JIT compiles it here,
/// the optimised Cranelift IR then the machine code; COBA's kernels are vector loops.
/// Learning kernels are refused by name.
#[test]
fn emit_clif_shows_the_cpu_kernels() {
    // Cranelift's code (SNNC_AVX512=0; SNNC_X86=off the same), then whatever this
    // machine gets.
    let cranelift = |args: &[&str]| {
        let dir = env!("CARGO_MANIFEST_DIR");
        Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(dir).env("NO_COLOR", "1").env("SNNC_AVX512", "0").output().unwrap()
    };
    let o = cranelift(&["emit", "--target", "clif", "examples/coba.snn", "--network", "coba"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("; Cranelift IR (optimised)").count(), 2, "{text}");
    assert_eq!(text.matches("; machine code").count(), 2, "{text}");
    assert!(text.contains("; E (coba.E (COBALIF), F32, vectorised: true; cranelift, 4 lanes; not AVX-512 or AVX2: this machine has no AVX-512 or AVX2 (or SNNC_X86=off))"), "{text}");
    assert!(text.contains("f32x4"), "{text}");
    let o = cranelift(&["emit", "--target", "clif", "examples/cuba.snn", "--network", "cuba", "--precision", "f64"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("f64x2"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = snnc(&["emit", "--target", "clif", "examples/coba.snn", "--network", "coba"]);
    let text = String::from_utf8_lossy(&o.stdout);
    if snnc_compiler::backend::x86::host() == Some(snnc_compiler::backend::x86::Isa::Avx512) {
        assert!(text.contains("; E (coba.E (COBALIF), F32, vectorised: true; avx512, 16 lanes)"), "{text}");
        assert_eq!(text.matches("; AVX-512 vector program").count(), 2, "{text}");
        assert!(text.contains("vmulps zmm"), "{text}");
    } else if snnc_compiler::backend::x86::host() == Some(snnc_compiler::backend::x86::Isa::Avx2) {
        assert!(text.contains("; E (coba.E (COBALIF), F32, vectorised: true; avx2, 8 lanes)"), "{text}");
        assert_eq!(text.matches("; AVX2 vector program").count(), 2, "{text}");
        assert!(text.contains("vmulps ymm"), "{text}");
    } else {
        assert!(text.contains("f32x4"), "{text}");
    }
    let o = snnc(&["emit", "--target", "clif", "stdlib/lif.snn", "--model", "LIF", "--kernel", "adjoint"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("step kernels only"));
}

/// A file of networks only: `emit` and `explain` show its one network's populations
/// (not nothing), and ask which when it has several.
#[test]
fn a_file_without_models_shows_its_network() {
    let o = snnc(&["emit", "--target", "clif", "examples/coba.snn"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    // (Cranelift numbers values differently from run to run: compare the kernels' headers.)
    let headers = |t: &str| t.lines().filter(|l| l.starts_with("; ")).map(str::to_string).collect::<Vec<_>>();
    let named = snnc(&["emit", "--target", "clif", "examples/coba.snn", "--network", "coba"]);
    assert_eq!(headers(&text), headers(&String::from_utf8_lossy(&named.stdout)));
    assert!(text.contains("; E (coba.E (COBALIF)"), "{text}");
    let o = snnc(&["explain", "examples/coba.snn"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("COBALIF"), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = std::env::temp_dir().join(format!("snnc-two-nets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let two = dir.join("two.snn");
    let text = "import \"stdlib/lif.snn\"\nnetwork a { dt = 1 ms\n layer L = LIF[2] }\nnetwork b { dt = 1 ms\n layer L = LIF[3] }\n";
    std::fs::write(&two, text).unwrap();
    let o = snnc(&["emit", "--target", "ir", two.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("2 networks: give --network (a, b)"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
    // A network too large to build is refused as `snnc run` refuses it (E0701), not left
    // to fail an allocation while it is planned (the fuzzer found that abort).
    for cmd in [&["explain"][..], &["emit", "--target", "ir"][..]] {
        let o = snnc(&[cmd, &["tests/data/limits/neurons_1e10.snn"][..]].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(err.contains("error[E0701]: network `huge` needs about") && !err.contains("memory allocation"), "{cmd:?}: {err}");
    }
}

/// `--backend cuda` of `snnc run`, `snnc train` and `snnc bench sim` on a machine without a GPU (or in a
/// build without the `cuda` feature) fails with one `error:` line and exit code 1,
/// never a panic.
#[test]
fn backend_cuda_without_gpu_is_one_clear_error() {
    let has_driver = ["/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1"]
        .iter()
        .any(|p| Path::new(p).exists());
    if cfg!(feature = "cuda") && has_driver {
        eprintln!("skipping: a CUDA driver is installed here");
        return;
    }
    let run: &[&str] = &["run", "examples/coba.snn", "--backend", "cuda", "--duration", "1ms"];
    let train: &[&str] = &["train", "examples/dms.snn", "--backend", "cuda", "--batches", "1", "--epochs", "1"];
    let bench: &[&str] = &["bench", "sim", "examples/coba.snn", "--backend", "cuda", "--duration", "1ms"];
    for args in [run, train, bench] {
        let out = snnc(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} stderr:\n{stderr}");
        assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if cfg!(feature = "cuda") {
            assert!(lines[0].contains("no CUDA driver found"), "{stderr}");
        } else {
            assert!(lines[0].contains("built without CUDA support") && lines[0].contains("cargo build --release --features cuda"), "{stderr}");
        }
    }
}

/// Issue 15, item 1: with a uniform `tau = 0` the JIT folded `exp(-dt / tau)` into a
/// silent v = 0 (exit 0, no spikes) where the interpreter found NaN. Every backend now
/// refuses before simulating, with the same message naming the population and param.
#[test]
fn a_zero_time_constant_is_refused_by_every_backend_alike() {
    let dir = std::env::temp_dir().join(format!("snnc-tau0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("tau0.snn");
    std::fs::write(&f, "import \"stdlib/lif.snn\"\nnetwork n {\n    dt = 1 ms\n    layer a = LIF[10] { tau = 0 ms }\n    drive a.I = 2\n}\n").unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut errors = Vec::new();
    for backend in ["jit", "interp"] {
        let out = snnc(&["run", f.to_str().unwrap(), "-I", root, "--duration", "5ms", "--backend", backend]);
        assert_eq!(out.status.code(), Some(1), "{backend}");
        errors.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    // `check` itself refuses it now (E0210 at the population's setting), before any backend.
    assert!(errors[0].contains("E0210") && errors[0].contains("tau = 0 ms"), "{}", errors[0]);
    assert_eq!(errors[0], errors[1]);
    assert!(!errors[0].contains("became NaN"), "{}", errors[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 19, item 1: an `on pre` update without `w` ran on every step (u grew with no
/// presynaptic spike). Now a state that depends only on the presynaptic side (`u`) is
/// kept per source neuron and runs at its spikes (item 2); an update that would still
/// run on every step (`g += 0.1`, `g` being merged per target) is refused by `check` at
/// its line, and by `run`.
#[test]
fn an_on_pre_update_that_would_run_every_step_is_refused() {
    let dir = std::env::temp_dir().join(format!("snnc-onpre-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("stp.snn");
    let text = |extra: &str| {
        format!(
            "import \"stdlib/lif.snn\"
synapse STP {{
    param U = 0.2
    param tau_f: ms = 1500 ms
    state u = 0.2
    state g = 0 * w
    du/dt = (U - u) / tau_f
    dg/dt = -g / (5 ms)
    on pre {{
        u += U * (1 - u)
        g += w * u{extra}
    }}
    output I = g
}}
network n {{
    dt = 1 ms
    input x: 2
    layer a = LIF[2]
    connect x -> a.I via STP dense weight 0.1
}}
"
        )
    };
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::write(&f, text("")).unwrap();
    let out = snnc(&["check", f.to_str().unwrap(), "-I", root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = snnc(&["run", f.to_str().unwrap(), "-I", root, "--duration", "5ms"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `explain --network` shows where u lives: the projection's presynaptic stage.
    let out = snnc(&["explain", f.to_str().unwrap(), "-I", root, "--network", "n"]);
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert!(text_out.contains("n.x_to_a.pre (STP.pre, per source neuron)") && text_out.contains("h = [u, _efficacy]"), "{text_out}");
    // A param of the presynaptic state drawn per connection: refused by `check` too.
    std::fs::write(&f, text("").replace("via STP dense", "via STP { U = U(0.1, 0.3) } dense")).unwrap();
    let out = snnc(&["check", f.to_str().unwrap(), "-I", root]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[E0417]: `U` of synapse `STP` is drawn from a distribution"));
    std::fs::write(&f, text("\n        g += 0.1")).unwrap();
    let out = snnc(&["check", f.to_str().unwrap(), "-I", root]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error[E0417]: the `on pre` update of `g` in synapse `STP` cannot run as written"), "{err}");
    assert!(err.contains("stp.snn:12:9"), "{err}");
    let out = snnc(&["run", f.to_str().unwrap(), "-I", root, "--duration", "5ms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`on pre` update of `g`"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plastic projection (STDP): `check`, `run` writing its final weights, a second run
/// starting from them (`--weights`), `explain` showing the traces and rules, and a
/// refusal (E0435) with its place.
#[test]
fn stdp_weights_are_written_and_loaded() {
    let dir = std::env::temp_dir().join(format!("snnc-cli-stdp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("stdp.snn");
    let text = "neuron LIF {
    state v = 0.0
    input I
    dv/dt = (-v + I) / (10 ms)
    spike when v > 1
    on spike { v -= 1 }
}
synapse STDP {
    param Apre = 0.01
    param Apost = -0.0105
    state apre = 0
    state apost = 0
    state g = 0 * w
    dapre/dt = -apre / (20 ms)
    dapost/dt = -apost / (20 ms)
    dg/dt = -g / (5 ms)
    on pre {
        g += w
        apre += Apre
        w = clip(w + apost, 0, 1)
    }
    on post {
        apost += Apost
        w = clip(w + apre, 0, 1)
    }
    output I = g
}
network n {
    input x: 40
    layer out = LIF[3]
    connect x -> out.I via STDP sparse p = 0.5 weight 0.5 as xo
}
";
    std::fs::write(&f, text).unwrap();
    let file = f.to_str().unwrap();
    assert!(snnc(&["check", file]).status.success());
    let out_dir = dir.join("run");
    let out = snnc(&["run", file, "--input", "x=poisson:20Hz", "--duration", "300ms", "--precision", "f64", "--out", out_dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("plastic `xo`:"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let w: ndarray::Array2<f64> = ndarray_npy::read_npy(out_dir.join("xo.w.npy")).unwrap();
    assert_eq!(w.nrows(), 1, "sparse: one row of synapses");
    assert!(w.iter().any(|&v| v != 0.5) && w.iter().all(|v| (0.0..=1.0).contains(v)));
    // Loaded into the next run: its weights start where the first run's ended.
    let ck = out_dir.join("weights.safetensors");
    let out = snnc(&["run", file, "--duration", "1ms", "--precision", "f64", "--weights", ck.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mean = w.iter().sum::<f64>() / w.len() as f64;
    assert!(out.status.success() && stdout.contains(&format!("mean {mean:.6}")), "{stdout}");
    let out = snnc(&["explain", file, "--network", "n"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("n.xo.on_post (weight rule at each on post event, per synapse)") && stdout.contains("h = [v, xo.apost, xo.g]"), "{stdout}");
    std::fs::write(&f, text.replace("        g += w\n        apre += Apre\n", "        apre += Apre\n        w = clip(w + apost, 0, 1)\n        g += w\n")).unwrap();
    let out = snnc(&["check", file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("error[E0435]: in plastic synapse `STDP`, `w` changes before the update that delivers it"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
