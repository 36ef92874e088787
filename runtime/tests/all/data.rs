//! Networks defined by data (`connect A -> B from "conn.npz"`), connectivity as
//! expressions of the indices, per-synapse delays, and building on several threads.
use crate::common::program;
use ndarray::{Array1, arr1};
use ndarray_npy::{NpzWriter, WritableElement};
use snnc_runtime::connectivity::with_build_threads;
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::network::{Network, Options};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snnc-data-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes 1-D arrays into an `.npz`.
struct Npz(NpzWriter<std::fs::File>);

impl Npz {
    fn create(path: &Path) -> Npz {
        Npz(NpzWriter::new(std::fs::File::create(path).unwrap()))
    }
    fn add<T: WritableElement>(mut self, name: &str, v: Vec<T>) -> Npz {
        self.0.add_array(name, &Array1::from(v)).unwrap();
        self
    }
    fn finish(self) {
        self.0.finish().unwrap();
    }
}

/// A recurrent E/I network of dimensionless LIF neurons, its projections written by
/// `conn(name, kind)` where `kind` is `sparse p = ...` for the inline version.
fn ei_network(conn: &dyn Fn(&str, &str) -> String) -> String {
    format!(
        r#"import "stdlib/lif.snn"
network ei {{
    dt = 0.1 ms
    seed = 5
    layer E = LIF[120] {{ v = U(0, 1) }}
    layer I = LIF[30] {{ v = U(0, 1) }}
    drive E.I = U(0.9, 1.3)
    drive I.I = U(0.9, 1.3)
    connect E -> E.I {} as EE
    connect E -> I.I {} as EI
    connect I -> E.I {} as IE
}}"#,
        conn("EE", "sparse p = 0.2 init normal(0.02, 0.01) no_self delay 1 ms"),
        conn("EI", "sparse p = 0.3 init U(0, 0.05)"),
        conn("IE", "sparse p = 0.4 init normal(0.1, 0.02) inhibitory delay 2 ms"),
    )
}

fn spikes(net: &mut Network<f64>, steps: usize) -> Vec<Vec<f64>> {
    (0..steps)
        .map(|_| {
            net.step(&[]).unwrap();
            net.pops.iter().flat_map(|p| p.spikes().iter().copied()).collect()
        })
        .collect()
}

fn build(text: &str) -> Result<Network<f64>, RuntimeError> {
    let p = program(text);
    Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory)
}

fn proj(net: &Network<f64>, name: &str) -> usize {
    net.projection(name).unwrap().0
}

#[test]
fn a_network_from_files_equals_the_same_network_written_inline() {
    let dir = tmp("equal");
    let inline = ei_network(&|_, kind| kind.to_string());
    let mut a = build(&inline).unwrap();
    // The inline network's connectivity, written three ways: COO in an .npz (rows
    // shuffled, so the loader must sort them), CSR in an .npz, COO in a .safetensors;
    // the delays as a per-synapse array in the file, the sign as one per neuron.
    let (rp, col, w) = a.sparse_weights(proj(&a, "EE")).unwrap();
    let mut coo: Vec<(i64, i64, f64)> = (0..120).flat_map(|i| (rp[i]..rp[i + 1]).map(move |k| (i as i64, k))).map(|(i, k)| (i, col[k] as i64, w[k])).collect();
    coo.reverse();
    let ee = dir.join("ee.npz");
    Npz::create(&ee)
        .add("pre", coo.iter().map(|c| c.0).collect())
        .add("post", coo.iter().map(|c| c.1 as u32).collect())
        .add("weight", coo.iter().map(|c| c.2).collect())
        .add("delay", vec![1.0f64; coo.len()])
        .finish();
    let (rp, col, w) = a.sparse_weights(proj(&a, "EI")).unwrap();
    let ei = dir.join("ei.npz");
    Npz::create(&ei).add("indptr", rp.iter().map(|&r| r as u64).collect()).add("indices", col.to_vec()).add("weight", w.to_vec()).finish();
    let (rp, col, w) = a.sparse_weights(proj(&a, "IE")).unwrap();
    let ie = dir.join("ie.safetensors");
    let pre: Vec<i32> = (0..30).flat_map(|i| std::iter::repeat_n(i as i32, rp[i + 1] - rp[i])).collect();
    let post: Vec<i32> = col.iter().map(|&j| j as i32).collect();
    let mags: Vec<f64> = w.iter().map(|w| w.abs()).collect();
    let bytes = |v: &[u8]| v.to_vec();
    let le = |v: &Vec<i32>| bytes(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    let tensors = [
        ("pre", safetensors::Dtype::I32, vec![pre.len()], le(&pre)),
        ("post", safetensors::Dtype::I32, vec![post.len()], le(&post)),
        ("weight", safetensors::Dtype::F64, vec![mags.len()], mags.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ("sign", safetensors::Dtype::F32, vec![30], (0..30).flat_map(|_| (-1.0f32).to_le_bytes()).collect()),
    ];
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors.iter().map(|(n, d, s, b)| (*n, safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &ie).unwrap();

    let files = ei_network(&|name, _| match name {
        "EE" => format!("from \"{}\"", ee.display()),
        "EI" => format!("from \"{}\"", ei.display()),
        _ => format!("from \"{}\" delay 2 ms", ie.display()),
    });
    let mut b = build(&files).unwrap();
    for name in ["EE", "EI", "IE"] {
        assert_eq!(a.sparse_weights(proj(&a, name)), b.sparse_weights(proj(&b, name)), "{name}");
    }
    // The file's delays are one a synapse (all 10 steps); the inline ones one for all.
    assert_eq!(b.synapse_delays(proj(&b, "EE")).unwrap().iter().copied().max(), Some(10));
    assert!(a.synapse_delays(proj(&a, "EE")).is_none());
    let (sa, sb) = (spikes(&mut a, 600), spikes(&mut b, 600));
    assert!(sa.iter().flatten().sum::<f64>() > 100.0, "the network fires");
    assert_eq!(sa, sb);
}

#[test]
fn a_data_path_is_relative_to_the_file_that_names_it() {
    let dir = tmp("relative");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    Npz::create(&dir.join("data/c.npz")).add("pre", vec![0i64, 1, 2]).add("post", vec![2i64, 0, 1]).add("weight", vec![0.5, 0.25, 0.125]).finish();
    std::fs::write(dir.join("net.snn"), "import \"stdlib/lif.snn\"\nnetwork n { layer A = LIF[3]; connect A -> A.I from \"data/c.npz\" }\n").unwrap();
    let mut sources = snnc_compiler::SourceMap::new();
    let (p, d) = snnc_compiler::sema::check_path(&dir.join("net.snn"), &Default::default(), &mut sources);
    assert!(d.iter().all(|d| !d.is_error()));
    let net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let (rp, col, w) = net.sparse_weights(0).unwrap();
    assert_eq!((rp, col, w), (&[0usize, 1, 2, 3][..], &[2u32, 0, 1][..], &[0.5, 0.25, 0.125][..]));
}

/// The error of building a 4 -> 3 projection from `file` (written by `write`).
fn file_error(name: &str, file: &str, write: impl FnOnce(&Path)) -> String {
    let dir = tmp(name);
    let path = dir.join(file);
    write(&path);
    let text = format!("import \"stdlib/lif.snn\"\nnetwork n {{ layer A = LIF[4]; layer B = LIF[3]; connect A -> B.I from \"{}\" }}", path.display());
    match build(&text) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{name}: the file was accepted"),
    }
}

#[test]
fn bad_files_are_refused_naming_the_file_the_array_and_the_first_bad_entry() {
    let e = file_error("missing", "none.npz", |_| {});
    assert!(e.contains("E0601") && e.contains("none.npz") && e.contains("cannot open"), "{e}");
    let e = file_error("noarray", "c.npz", |p| Npz::create(p).add("pre", vec![0i64]).finish());
    assert!(e.contains("E0602") && e.contains("no array `post`") && e.contains("pre"), "{e}");
    let e = file_error("dtype", "c.npz", |p| Npz::create(p).add("pre", vec![0.0f64, 1.0]).add("post", vec![0i64, 1]).finish());
    assert!(e.contains("E0603") && e.contains("`pre` has type float64"), "{e}");
    let e = file_error("wtype", "c.npz", |p| Npz::create(p).add("pre", vec![0i32]).add("post", vec![0i32]).add("weight", vec![1i32]).finish());
    assert!(e.contains("E0603") && e.contains("`weight` has type int32"), "{e}");
    let e = file_error("range", "c.npz", |p| Npz::create(p).add("pre", vec![0u64, 3, 1]).add("post", vec![0u64, 2, 3]).finish());
    assert!(e.contains("E0604") && e.contains("`post` has 3 at entry 2") && e.contains("`B` (3 neurons)"), "{e}");
    let e = file_error("negative", "c.npz", |p| Npz::create(p).add("pre", vec![0i64, -1]).add("post", vec![0i64, 1]).finish());
    assert!(e.contains("E0604") && e.contains("`pre` has -1 at entry 1"), "{e}");
    let e = file_error("nan", "c.npz", |p| Npz::create(p).add("pre", vec![0i64, 1]).add("post", vec![0i64, 1]).add("weight", vec![0.5f32, f32::NAN]).finish());
    assert!(e.contains("E0605") && e.contains("`weight` has NaN at entry 1"), "{e}");
    let e = file_error("delay", "c.npz", |p| Npz::create(p).add("pre", vec![0i64]).add("post", vec![0i64]).add("delay", vec![-1.0f64]).finish());
    assert!(e.contains("E0605") && e.contains("`delay` has -1 at entry 0"), "{e}");
    let e = file_error("length", "c.npz", |p| Npz::create(p).add("pre", vec![0i64, 1, 2]).add("post", vec![0i64, 1]).finish());
    assert!(e.contains("E0606") && e.contains("`pre` and `post` have 3 and 2 entries"), "{e}");
    let e = file_error("wlength", "c.npz", |p| Npz::create(p).add("pre", vec![0i64, 1]).add("post", vec![0i64, 1]).add("weight", vec![1.0f64]).finish());
    assert!(e.contains("E0606") && e.contains("`weight` has 1 entries for 2 synapses"), "{e}");
    let e = file_error("indptr", "c.npz", |p| Npz::create(p).add("indptr", vec![0i64, 2, 1, 3, 3]).add("indices", vec![0i64, 1, 2]).finish());
    assert!(e.contains("E0607") && e.contains("`indptr` decreases at entry 2: 1 after 2"), "{e}");
    let e = file_error("indptr_len", "c.npz", |p| Npz::create(p).add("indptr", vec![0i64, 3]).add("indices", vec![0i64, 1, 2]).finish());
    assert!(e.contains("E0606") && e.contains("needs 5"), "{e}");
    let e = file_error("sign", "c.npz", |p| Npz::create(p).add("pre", vec![0i64]).add("post", vec![0i64]).add("sign", vec![0.5f64]).finish());
    assert!(e.contains("E0605") && e.contains("a sign is +1 or -1"), "{e}");
    let e = file_error("notzip", "c.npz", |p| std::fs::write(p, b"not a zip").unwrap());
    assert!(e.contains("E0601") && e.contains("not an .npz"), "{e}");
    let e = file_error("notst", "c.safetensors", |p| std::fs::write(p, b"\x05\0\0\0\0\0\0\0{}").unwrap());
    assert!(e.contains("E0601") && e.contains("not a .safetensors"), "{e}");
}

#[test]
fn weights_as_expressions_of_the_indices_follow_their_formula() {
    let text = r#"import "stdlib/lif.snn"
neuron P { param x = 0 trainable; param tau: ms = 10 ms; state v = 0; input I; dv/dt = (I - v) / tau; spike when v > 1; on spike { v -= 1 } }
network ring {
    layer R = LIF[50]
    layer Q = P[40] { x = U(0, 10) }
    connect R -> R.I dense weight 0.5 * exp(-(i - j)^2 / 50) as ring
    connect Q -> R.I sparse p = 0.5 weight 0.1 * i / N_pre + j / N_post as idx
    connect Q -> Q.I dense weight exp(-abs(x_pre - x_post)) no_self as dist
}"#;
    let net = build(text).unwrap();
    let w = net.dense_weights(proj(&net, "ring")).unwrap();
    for i in 0..50 {
        for j in 0..50 {
            let d = i as f64 - j as f64;
            assert_eq!(w[[i, j]], 0.5 * (-d.powf(2.0) / 50.0).exp(), "({i}, {j})");
        }
    }
    let (rp, col, w) = net.sparse_weights(proj(&net, "idx")).unwrap();
    assert!(col.len() > 600, "{} synapses", col.len());
    for i in 0..40 {
        for k in rp[i]..rp[i + 1] {
            assert_eq!(w[k], 0.1 * i as f64 / 40.0 + col[k] as f64 / 50.0);
        }
    }
    let x = net.trainable("Q.x").unwrap();
    assert!(x.iter().any(|v| *v > 5.0) && x.iter().any(|v| *v < 5.0), "positions drawn per neuron");
    let w = net.dense_weights(proj(&net, "dist")).unwrap();
    for i in 0..40 {
        for j in 0..40 {
            let want = if i == j { 0.0 } else { (-(x[[0, i]] - x[[0, j]]).abs()).exp() };
            assert_eq!(w[[i, j]], want, "({i}, {j})");
        }
    }
}

#[test]
fn index_expressions_are_unit_checked() {
    // A fresh map each time: an import is read once per map.
    let sources = &mut snnc_compiler::SourceMap::new();
    let text = "import \"stdlib/coba.snn\"\nnetwork n { layer A = COBALIF[5]; connect A -> A.I via ExpCond { tau = 5 ms, E = 0 mV } dense weight 0.5 mV * exp(-(i - j)^2 / 50) }";
    let (_, d) = snnc_compiler::sema::check_source("t.snn", text, { *sources = Default::default(); sources });
    assert!(d.iter().any(|d| d.code == "E0201"), "{}", snnc_compiler::diag::render_all(&d, sources));
    // An index is a number: its exponent must be too.
    let text = "import \"stdlib/lif.snn\"\nnetwork n { layer A = LIF[5]; connect A -> A.I dense weight exp(i * 1 ms) }";
    let (_, d) = snnc_compiler::sema::check_source("t.snn", text, { *sources = Default::default(); sources });
    assert!(d.iter().any(|d| d.is_error()), "{}", snnc_compiler::diag::render_all(&d, sources));
    // `x_pre` names a param of the source.
    let text = "import \"stdlib/lif.snn\"\nnetwork n { layer A = LIF[5]; connect A -> A.I dense weight tau_pre / 1 ms + v_th_post }";
    let (p, d) = snnc_compiler::sema::check_source("t.snn", text, { *sources = Default::default(); sources });
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&d, sources));
    let net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    assert!(net.dense_weights(0).unwrap().iter().all(|w| (*w - 11.0).abs() < 1e-12));
    let text = "import \"stdlib/lif.snn\"\nnetwork n { layer A = LIF[5]; connect A -> A.I dense delay normal(1 ms, 1 ms) }";
    let (_, d) = snnc_compiler::sema::check_source("t.snn", text, { *sources = Default::default(); sources });
    assert!(d.iter().any(|d| d.code == "E0403"), "{}", snnc_compiler::diag::render_all(&d, sources));
}

const DELAYED: &str = r#"import "stdlib/lif.snn"
network d {
    dt = 0.1 ms
    seed = 9
    layer E = LIF[300] { v = U(0, 1) }
    drive E.I = U(0.9, 1.4)
    connect E -> E.I sparse p = 0.1 init normal(0.05, 0.01) delay U(1 ms, 10 ms) as EE
    connect E -> E.I dense weight -0.001 delay 0.5 ms + 0.1 ms * abs(i - j) / 30 as far
}"#;

#[test]
fn per_synapse_delays_stay_within_their_bounds_whatever_the_thread_count() {
    let one = with_build_threads(1, || build(DELAYED).unwrap());
    let three = with_build_threads(3, || build(DELAYED).unwrap());
    let d = one.synapse_delays(proj(&one, "EE")).unwrap();
    assert_eq!(d.len(), one.sparse_weights(proj(&one, "EE")).unwrap().1.len());
    assert!(d.iter().all(|&s| (10..=100).contains(&s)), "delays in steps of 0.1 ms");
    let (lo, hi) = (d.iter().min().unwrap(), d.iter().max().unwrap());
    assert!(*lo <= 11 && *hi >= 99, "{lo}..{hi}: the whole range is drawn");
    let mean = d.iter().map(|&s| f64::from(s)).sum::<f64>() / d.len() as f64;
    assert!((mean - 55.0).abs() < 2.0, "mean delay {mean} steps");
    assert_eq!(Some(d), three.synapse_delays(proj(&three, "EE")));
    // An expression of the indices: exactly its formula, rounded to steps.
    let (rp, col, _) = one.sparse_weights(proj(&one, "far")).unwrap();
    let far = one.synapse_delays(proj(&one, "far")).unwrap();
    for i in 0..300 {
        for k in rp[i]..rp[i + 1] {
            let want = ((0.5e-3 + 0.1e-3 * (i as f64 - col[k] as f64).abs() / 30.0) / 1e-4).round() as u32;
            assert_eq!(far[k], want);
        }
    }
    assert_eq!(one.projection_delay(proj(&one, "far")), Some(15));
    let (mut a, mut b) = (one, three);
    assert_eq!(spikes(&mut a, 400), spikes(&mut b, 400));
}

/// The step at which the input of neurons 0, 1, 2 first arrives, after the external
/// input fires at step 0 only, in a network whose connection from it is `conn`.
fn arrivals(conn: &str) -> Vec<usize> {
    let text = format!("neuron Acc {{ state v = 0; input I; dv/dt = I / 1 ms }}\nnetwork n {{ dt = 1 ms; input x: 1; layer A = Acc[3]; {conn} }}");
    let mut net = build(&text).unwrap();
    let mut arrived = vec![None; 3];
    for t in 0..8 {
        net.step(&[&[if t == 0 { 1.0 } else { 0.0 }]]).unwrap();
        for (j, a) in arrived.iter_mut().enumerate() {
            if net.pops[0].states[0][j] != 0.0 && a.is_none() {
                *a = Some(t);
            }
        }
    }
    arrived.iter().map(|a| a.expect("every input arrives")).collect()
}

#[test]
fn a_delay_per_synapse_delivers_each_spike_after_its_own_delay() {
    let dir = tmp("deliver");
    let (own, one) = (dir.join("own.npz"), dir.join("one.npz"));
    // Synapses x -> 0, 1, 2 with delays of 1, 2 and 3 ms; and the same without delays.
    Npz::create(&own).add("pre", vec![0i64, 0, 0]).add("post", vec![0i64, 1, 2]).add("delay", vec![1.0f64, 2.0, 3.0]).finish();
    Npz::create(&one).add("pre", vec![0i64, 0, 0]).add("post", vec![0i64, 1, 2]).finish();
    let per_synapse = arrivals(&format!("connect x -> A.I from \"{}\" weight 1", own.display()));
    // One delay for all (a ring of its own) gives the reference for each.
    let reference: Vec<usize> = (1..=3).map(|d| arrivals(&format!("connect x -> A.I from \"{}\" weight 1 delay {d} ms", one.display()))[d - 1]).collect();
    assert_eq!(per_synapse, reference);
    assert_eq!(reference, vec![1, 2, 3], "an input at step 0 arrives d steps later");
}

#[test]
fn a_network_built_on_several_threads_equals_one_built_on_one() {
    let dir = tmp("threads");
    let f = dir.join("c.npz");
    // An unsorted COO file with repeated pairs: sorting rows is shared out too.
    let n = 5000usize;
    let pre: Vec<u32> = (0..n * 20).map(|k| ((k * 7919) % n) as u32).collect();
    let post: Vec<u32> = (0..n * 20).map(|k| ((k * 104_729 + 13) % 400) as u32).collect();
    let w: Vec<f32> = (0..n * 20).map(|k| (k % 97) as f32 * 0.001).collect();
    Npz::create(&f).add("pre", pre).add("post", post).add("weight", w).finish();
    let text = format!(
        r#"import "stdlib/lif.snn"
network big {{
    layer A = LIF[5000] {{ v = U(0, 1) }}
    layer B = LIF[400]
    connect A -> A.I sparse p = 0.01 init normal(0, 0.1) no_self as AA
    connect A -> B.I dense init U(-0.1, 0.1) as AB
    connect B -> B.I sparse p = 0.2 weight 0.01 * abs(i - j) delay U(0.1 ms, 2 ms) as BB
    connect A -> B.I from "{}" as file
}}"#,
        f.display()
    );
    let nets: Vec<Network<f64>> = [1, 2, 5].iter().map(|&t| with_build_threads(t, || build(&text).unwrap())).collect();
    for net in &nets[1..] {
        for name in ["AA", "BB", "file"] {
            assert_eq!(nets[0].sparse_weights(proj(&nets[0], name)), net.sparse_weights(proj(net, name)), "{name}");
            assert_eq!(nets[0].synapse_delays(proj(&nets[0], name)), net.synapse_delays(proj(net, name)), "{name}");
        }
        assert_eq!(nets[0].dense_weights(proj(&nets[0], "AB")), net.dense_weights(proj(net, "AB")));
    }
    // The file's rows are sorted by column, repeated pairs kept in file order.
    let (rp, col, _) = nets[0].sparse_weights(proj(&nets[0], "file")).unwrap();
    assert_eq!(col.len(), n * 20);
    assert!((0..n).all(|i| col[rp[i]..rp[i + 1]].is_sorted()));
    let _ = arr1(&[0]);
}

#[test]
fn params_and_initial_states_from_a_file_equal_the_same_values_written_inline() {
    let model = "neuron P { param tau: ms = 10 ms trainable; param th = 1; state v = 0; input I; dv/dt = (I - v) / tau; spike when v > th; on spike { v -= th } }";
    let net = |settings: &str| format!("{model}\nnetwork n {{ dt = 0.1 ms; layer E = P[80] {{ {settings} }}; drive E.I = U(0.8, 1.5); connect E -> E.I sparse p = 0.1 init normal(0.05, 0.02) }}");
    let mut a = build(&net("tau = U(5 ms, 20 ms), v = U(0, 1)")).unwrap();
    let tau: Vec<f64> = a.trainable("E.tau").unwrap().iter().copied().collect();
    let v: Vec<f64> = a.pops[0].states[0].clone();
    let dir = tmp("params");
    let f = dir.join("p.npz");
    Npz::create(&f).add("tau_s", tau.clone()).add("tau_ms", tau.iter().map(|t| (t * 1e3) as f32).collect()).add("v0", v.clone()).add("short", vec![1.0f64; 79]).add("n", vec![1i64; 80]).finish();
    let mut b = build(&net(&format!("tau = load(\"{0}\", \"tau_s\") * 1 s, v = load(\"{0}\", \"v0\")", f.display()))).unwrap();
    assert_eq!(b.trainable("E.tau").unwrap().iter().copied().collect::<Vec<_>>(), tau);
    assert_eq!(b.pops[0].states[0], v);
    assert_eq!(spikes(&mut a, 500), spikes(&mut b, 500));
    // In milliseconds, as float32: the unit converts them.
    let c = build(&net(&format!("tau = 1 ms * load(\"{}\", \"tau_ms\")", f.display()))).unwrap();
    let got = c.trainable("E.tau").unwrap();
    assert!(got.iter().zip(&tau).all(|(g, t)| (g - t).abs() < 1e-9), "{got:?}");
    // Refusals: a length that is not one a neuron, an array that is not there or not
    // floats, a value without its unit, a file for a synapse's param, a value derived
    // from one read from a file.
    let e = build(&net(&format!("v = load(\"{}\", \"short\")", f.display()))).err().unwrap().to_string();
    assert!(e.contains("E0606") && e.contains("`short` has 79 entries") && e.contains("80 neurons"), "{e}");
    let e = build(&net(&format!("v = load(\"{}\", \"nope\")", f.display()))).err().unwrap().to_string();
    assert!(e.contains("E0602") && e.contains("no array `nope`"), "{e}");
    let e = build(&net(&format!("v = load(\"{}\", \"n\")", f.display()))).err().unwrap().to_string();
    assert!(e.contains("E0603") && e.contains("`n` has type int64"), "{e}");
    let sources = &mut snnc_compiler::SourceMap::new();
    let (_, d) = snnc_compiler::sema::check_source("t.snn", &net(&format!("tau = load(\"{}\", \"tau_s\")", f.display())), sources);
    assert!(d.iter().any(|d| d.code == "E0201" && d.help.iter().any(|h| h.contains("* 1 s"))), "{}", snnc_compiler::diag::render_all(&d, sources));
    for (model, name) in [("param a = 1; param b = a * 2; state v = 0", "b"), ("param a = 1; state v = a", "v")] {
        let derived = format!("neuron Q {{ {model}; input I; dv/dt = (I - v) / 10 ms }}\nnetwork n {{ readout R = Q[80] {{ a = load(\"{}\", \"v0\") }} }}", f.display());
        let (_, d) = snnc_compiler::sema::check_source("t.snn", &derived, { *sources = Default::default(); sources });
        assert!(d.iter().any(|d| d.code == "E0421" && d.message.contains(&format!("`{name}` reads `a`"))), "{}", snnc_compiler::diag::render_all(&d, sources));
    }
}

#[test]
fn the_connectome_example_runs_from_its_data_file() {
    // examples/connectome.snn beside a file as runtime/examples/make_connectivity.rs
    // writes it (a smaller one: the structure is what matters here).
    let dir = tmp("example");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/connectome.snn")).unwrap();
    std::fs::write(dir.join("connectome.snn"), text).unwrap();
    let n = 2000usize;
    let s = 100_000usize;
    Npz::create(&dir.join("connectome.npz"))
        .add("pre", (0..s).map(|k| ((k * 7919 + 3) % n) as i32).collect())
        .add("post", (0..s).map(|k| ((k * 104_729 + 11) % n) as i32).collect())
        .add("weight", (0..s).map(|k| (1 + k % 7) as f32).collect())
        .add("sign", (0..n).map(|i| if i % 5 == 0 { -1i8 } else { 1 }).collect())
        .add("tau_ms", (0..n).map(|i| 15.0 + (i % 10) as f32).collect())
        .finish();
    let mut sources = snnc_compiler::SourceMap::new();
    let (p, d) = snnc_compiler::sema::check_path(&dir.join("connectome.snn"), &Default::default(), &mut sources);
    assert!(d.iter().all(|d| !d.is_error()), "{}", snnc_compiler::diag::render_all(&d, &sources));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    assert_eq!(net.projections()[0].1, s);
    assert_eq!(net.projection_delay(0), Some(9));
    let fired: f64 = spikes(&mut net, 200).iter().flatten().sum();
    assert!(fired > 100.0, "{fired} spikes");
}

#[test]
fn a_probability_may_depend_on_the_indices() {
    let text = |p: &str| format!("import \"stdlib/lif.snn\"\nnetwork n {{ layer A = LIF[400]; connect A -> A.I sparse p = {p} weight 0.1 as local }}");
    // 1 at distance 0, 2/3 at 1, 1/3 at 2, none further.
    let local = text("max(0, 1 - abs(i - j) / 3)");
    let one = with_build_threads(1, || build(&local).unwrap());
    let four = with_build_threads(4, || build(&local).unwrap());
    assert_eq!(one.sparse_weights(0), four.sparse_weights(0));
    let (rp, col, w) = one.sparse_weights(0).unwrap();
    let mut by_distance = [0usize; 3];
    for i in 0..400 {
        let row = &col[rp[i]..rp[i + 1]];
        assert!(row.contains(&(i as u32)), "p = 1 on the diagonal");
        for &j in row {
            let d = (i as i64 - j as i64).unsigned_abs() as usize;
            assert!(d <= 2, "({i}, {j}) has probability 0");
            by_distance[d] += 1;
        }
    }
    assert_eq!(by_distance[0], 400);
    // Binomial counts: about 798 * 2/3 = 532 and 796 / 3 = 265 (5 sd).
    assert!((by_distance[1] as f64 - 532.0).abs() < 67.0, "{by_distance:?}");
    assert!((by_distance[2] as f64 - 265.3).abs() < 67.0, "{by_distance:?}");
    assert!(w.iter().all(|w| *w == 0.1));
    let e = build(&text("i / 100")).err().unwrap().to_string();
    assert!(e.contains("`local`") && e.contains("probability of synapse (101, 0) is 1.01, outside [0, 1]"), "{e}");
}

#[test]
fn a_delay_too_long_for_memory_is_refused_before_its_ring_is_allocated() {
    // 1e6 s at 0.1 ms: 1e10 steps of ring.
    let text = "import \"stdlib/lif.snn\"\nnetwork n { layer A = LIF[10]; connect A -> A.I sparse p = 0.5 weight 0.1 delay 1 ms + 1e6 s * i / N_pre as slow }";
    let e = build(text).err().unwrap().to_string();
    assert!(e.contains("`slow`") && e.contains("needs a delay ring of"), "{e}");
}

#[test]
fn the_memory_estimate_counts_a_file_projection_from_its_headers() {
    let dir = tmp("memory");
    let f = dir.join("c.npz");
    Npz::create(&f).add("pre", vec![0i32; 5000]).add("post", (0..5000).map(|k| k % 30).collect::<Vec<i32>>()).add("weight", vec![1.0f32; 5000]).finish();
    let text = format!("import \"stdlib/lif.snn\"\nnetwork n {{ layer A = LIF[20]; layer B = LIF[30]; connect A -> B.I from \"{}\" as F }}", f.display());
    let p = program(&text);
    let est = snnc_runtime::memory::estimate(&p, &p.networks[0], &Options::default(), 4);
    let part = est.parts.iter().find(|p| p.what.contains("`F`")).expect("the file's projection is counted");
    assert!(part.what.contains("5000 synapses"), "{}", part.what);
    assert!(part.bytes >= 5000 * 40, "{} bytes", part.bytes);
    // Enough to refuse a network whose file would not fit.
    let e = snnc_runtime::memory::check_within(&p, &p.networks[0], &Options::default(), 4, Some(100_000)).unwrap_err();
    assert!(e.to_string().contains("`F`") || e.largest.what.contains("`F`"), "{e}");
}

#[test]
fn a_data_error_leads_with_its_code_and_names_the_projection() {
    let e = file_error("lead", "c.npz", |p| Npz::create(p).add("pre", vec![0u64, 3, 1]).add("post", vec![0u64, 2, 3]).finish());
    assert!(e.starts_with("E0604: projection `A_to_B`: `"), "{e}");
}
