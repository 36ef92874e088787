//! Memory estimated before a network is allocated (issue 15, item 4), and recordings
//! streamed to `.npy` files (item 3).
use crate::common::program;
use ndarray::{Array1, Array2};
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::memory::{self, estimate};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::record::{NpyStream, Selection, StreamRecorder};

const DENSE: &str = r#"
import "stdlib/lif.snn"
network n { dt = 1 ms; input x: 300; layer a = LIF[200]; connect x -> a.I dense; connect a -> a.I sparse p = 0.1 delay 5 ms }"#;

/// The estimate counts the weights exactly (n_pre x n_post in the run's precision,
/// no f64 copy) and a delay ring of delay + 1 slots, and scales with the batch.
#[test]
fn the_estimate_counts_weights_in_the_runs_precision() {
    let p = program(DENSE);
    let net = &p.networks[0];
    let part = |e: &memory::Estimate, what: &str| e.parts.iter().find(|x| x.what.starts_with(what)).unwrap_or_else(|| panic!("{what}: {:?}", e.parts)).bytes;
    let f32s = estimate(&p, net, &Options::default(), 4);
    let f64s = estimate(&p, net, &Options::default(), 8);
    assert_eq!(part(&f32s, "dense weights of `x_to_a`"), 300 * 200 * 4);
    assert_eq!(part(&f64s, "dense weights of `x_to_a`"), 300 * 200 * 8);
    // Six slots, each an array of its own (96 bytes of bookkeeping apiece).
    assert_eq!(part(&f32s, "delay ring of `a_to_a`"), 6 * (200 * 4 + 96));
    let batch8 = estimate(&p, net, &Options { batch: 8, ..Options::default() }, 4);
    assert_eq!(part(&batch8, "delay ring of `a_to_a`"), 6 * (8 * 200 * 4 + 96));
    assert!(f64s.total() > f32s.total() && batch8.total() > f32s.total());
    // The network it describes builds, and is no larger than estimated.
    let built = Network::<f32>::build(&p, net, &Options::default(), &InterpFactory).unwrap();
    let weights = built.dense_weights(0).unwrap();
    assert_eq!(weights.len() * 4, part(&f32s, "dense weights of `x_to_a`") as usize);
    let sparse = built.projections()[1].1 as u64;
    assert!(sparse * 16 < part(&f32s, "sparse weights of `a_to_a`"), "{sparse} synapses");
}

/// `LIF[10000000000]`, a dense projection of 100,000 neurons, `sparse p = 0.01` on a
/// million and a delay of 10^9 s each used to abort the process in an allocation;
/// the build refuses them, saying the bytes, before allocating anything.
#[test]
fn networks_too_large_are_refused_before_allocating() {
    for (src, needs) in [
        ("network n { layer a = LIF[10000000000] }", "640.0 GB"),
        ("network n { layer a = LIF[100000]; connect a -> a.I dense }", "40.0 GB"),
        ("network n { layer a = LIF[1000000]; connect a -> a.I sparse p = 0.01 }", "168.1 GB"),
        ("network n { layer a = LIF[100]; connect a -> a.I dense delay 1e9 s }", "5.0 PB"),
    ] {
        let p = program(&format!("import \"stdlib/lif.snn\"\n{src}"));
        let o = Options::default();
        let err = memory::check_within(&p, &p.networks[0], &o, 4, Some(1_000_000_000)).err().map(|e| e.to_string());
        let err = err.unwrap_or_else(|| panic!("{src}: accepted"));
        assert!(err.contains(&format!("network `n` needs about {needs} of memory")) && err.contains("1.0 GB is available"), "{err}");
        // More than any machine that runs the tests has (so the build is safe to try).
        if needs.ends_with("PB") || needs.starts_with("640") {
            let Err(RuntimeError::Build(m)) = Network::<f32>::without_kernels(&p, &p.networks[0], &o) else { panic!("{src}: built") };
            assert!(m.contains(&format!("network `n` needs about {needs} of memory")), "{m}");
        }
    }
    // A batch that cannot fit (train --batch 100000000) is refused the same way.
    let p = program(DENSE);
    let huge_batch = Options { batch: 100_000_000, ..Options::default() };
    assert!(matches!(Network::<f32>::without_kernels(&p, &p.networks[0], &huge_batch), Err(RuntimeError::Build(m)) if m.contains("needs about")));
}

/// Every chunk boundary leaves a valid `.npy` whose shape counts the rows written.
#[test]
fn streamed_npy_files_are_valid_after_every_flush() {
    let dir = std::env::temp_dir().join(format!("snnc-npy-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.npy");
    let mut s = NpyStream::create(path.clone(), "<f4", Some(3)).unwrap();
    let empty: Array2<f32> = ndarray_npy::read_npy(&path).unwrap();
    assert_eq!(empty.shape(), &[0, 3]);
    for r in 0..5u32 {
        s.push((0..3).flat_map(|c| ((r * 3 + c) as f32).to_le_bytes())).unwrap();
        if r == 1 {
            s.flush().unwrap();
            let two: Array2<f32> = ndarray_npy::read_npy(&path).unwrap();
            assert_eq!(two, ndarray::array![[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]);
        }
    }
    s.flush().unwrap();
    let all: Array2<f32> = ndarray_npy::read_npy(&path).unwrap();
    assert_eq!(all.shape(), &[5, 3]);
    assert_eq!(all[[4, 2]], 14.0);
    std::fs::remove_dir_all(&dir).ok();
}

/// A streamed recording records the network it was made for: a selection that does not
/// fit the network creates no file, and sampling another network writes nothing.
#[test]
fn a_streamed_recording_refuses_another_network() {
    let small = program(include_str!("../data/coba_small.snn"));
    let net = Network::<f64>::build(&small, &small.networks[0], &Options::default(), &InterpFactory).unwrap();
    let other = Network::<f64>::build(&small, &small.networks[0], &Options::default(), &InterpFactory).unwrap();
    let tiny = program("import \"stdlib/lif.snn\"\nnetwork n { dt = 0.1 ms; layer A = LIF[3] }");
    let tiny = Network::<f64>::build(&tiny, &tiny.networks[0], &Options::default(), &InterpFactory).unwrap();
    let dir = std::env::temp_dir().join(format!("snnc-stream-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sel = Selection::new(&net, true, &["v".to_string()]).unwrap();
    let e = StreamRecorder::create(&tiny, &sel, &dir).err().expect("a selection of two populations does not fit one of one");
    assert!(e.to_string().contains("does not fit network `n`"), "{e}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no file created");
    let mut rec = StreamRecorder::create(&net, &sel, &dir).unwrap();
    let e = rec.sample(&other).unwrap_err();
    assert!(e.to_string().contains("the recorder was made for another network"), "{e}");
    rec.sample(&net).unwrap();
    assert!(rec.finish().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A streamed recording holds the same values as the in-memory one.
#[test]
fn streamed_recordings_equal_the_in_memory_ones() {
    let p = program(include_str!("../data/coba_small.snn"));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    let vars = ["v".to_string()];
    let dir = std::env::temp_dir().join(format!("snnc-stream-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut mem = snnc_runtime::record::Recorder::new(&net, true, &vars).unwrap();
    let sel = Selection::new(&net, true, &vars).unwrap();
    let mut disk = StreamRecorder::create(&net, &sel, &dir.join("")).unwrap();
    for _ in 0..200 {
        net.step(&[]).unwrap();
        mem.sample(&net).unwrap();
        disk.sample(&net).unwrap();
    }
    assert!(disk.finish().is_empty());
    let mem_dir = dir.join("mem");
    let written = mem.write(&net, &mem_dir).unwrap();
    assert_eq!(written.len(), disk.files().len());
    for (m, d) in written.iter().zip(disk.files()) {
        assert_eq!(m.file_name(), d.file_name());
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".spikes.t.npy") {
            let (a, b): (Array1<f64>, Array1<f64>) = (ndarray_npy::read_npy(m).unwrap(), ndarray_npy::read_npy(&d).unwrap());
            assert_eq!(a, b, "{name}");
            assert!(!a.is_empty(), "{name}");
        } else if name.ends_with(".spikes.i.npy") {
            let (a, b): (Array1<i64>, Array1<i64>) = (ndarray_npy::read_npy(m).unwrap(), ndarray_npy::read_npy(&d).unwrap());
            assert_eq!(a, b, "{name}");
        } else {
            let (a, b): (Array2<f32>, Array2<f32>) = (ndarray_npy::read_npy(m).unwrap(), ndarray_npy::read_npy(&d).unwrap());
            assert_eq!(a, b, "{name}");
            assert_eq!(a.nrows(), 200);
        }
    }
    assert_eq!(sel.trace_bytes(200), disk.files().iter().filter(|f| !f.to_string_lossy().contains("spikes")).map(|f| std::fs::metadata(f).unwrap().len()).sum::<u64>());
    std::fs::remove_dir_all(&dir).ok();
}
