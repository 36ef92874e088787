//! The whole-brain fit's network (docs/fly.md: a connectome kept as data with a 1.8 ms
//! delay and a rank-20 adapter, a trained input map, a fixed sparse readout map into a
//! leaky readout) at a tiny scale, written by runtime/examples/make_fly.rs (compiled in
//! here as a module): its gradients on the emulated GPU equal the CPU's.
use ndarray::Array2;
use snnc_compiler::SourceMap;
use snnc_compiler::backend::ptx::Target;
use snnc_compiler::sema::{LoadOptions, check_path};
use snnc_runtime::gpu::{EmuDevice, GpuGradient, GpuNetwork};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::learn::{Method, gradient_of};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::tasks::RandomSpikes;

#[path = "../../examples/make_fly.rs"]
#[allow(dead_code)]
mod make_fly;

fn largest_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

#[test]
fn gpu_fly_fit_gradients_equal_the_cpus() {
    let dir = std::env::temp_dir().join(format!("snnc-fly-gpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (neurons, regions) = (120, 4);
    let args = [dir.to_str().unwrap(), "--neurons", "120", "--regions", "4", "--trials", "10", "--steps", "110", "--batch", "2"];
    let s = make_fly::settings(args.iter().map(|s| s.to_string())).unwrap();
    make_fly::generate(&s).unwrap();
    let text = std::fs::read_to_string(dir.join("fly.snn")).unwrap();
    assert!(text.contains("delay 1.8 ms adapter rank 20") && text.contains(&format!("LIFHard[{neurons}]")), "{text}");
    let mut sources = SourceMap::new();
    let (p, d) = check_path(&dir.join("fly.snn"), &LoadOptions::default(), &mut sources);
    assert!(d.iter().all(|d| !d.is_error()));
    let opts = Options { batch: 2, seed: 3, learning: true, ..Options::default() };
    let trained: Vec<String> = ["W_in", "W_rec.U", "W_rec.V"].map(String::from).to_vec();
    // V starts at zero (where dL/dU is zero too): drawn, on both.
    let v = Array2::from_shape_fn((20, neurons), |(k, o)| 0.05 * ((k * neurons + o) as f64 * 0.37).sin());
    let data = || RandomSpikes::new(150, 2, regions, regions, 0.3, 5);
    for method in [Method::EsDRtrl { decay: 0.99 }, Method::Bptt] {
        let mut cpu = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
        cpu.set_trainable("W_rec.V", v.clone()).unwrap();
        let want = gradient_of(&mut cpu, &trained, &mut data(), method, false).unwrap();
        let mut host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
        host.set_trainable("W_rec.V", v.clone()).unwrap();
        let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
        let got = GpuGradient::new(&mut gpu, &trained, method).unwrap().run(&mut gpu, &mut data()).unwrap();
        assert!(cpu.pops[0].spike_count > 0, "the connectome fires");
        assert!((want.loss - got.loss).abs() <= 1e-10 * want.loss, "{method}: loss {} vs {}", want.loss, got.loss);
        assert_eq!(want.total.len(), got.total.len());
        for ((n, a), (m, b)) in want.total.iter().zip(&got.total) {
            assert_eq!((n, a.dim()), (m, b.dim()));
            let scale = largest_abs(a);
            assert!(scale > 0.0, "{method} {n}: zero gradient");
            let diff = largest_abs(&(a - b));
            eprintln!("fly, {method}, {n} {:?}: device vs CPU {:.1e} of the largest", a.dim(), diff / scale);
            assert!(diff <= 1e-10 * scale, "{method} {n}: device vs CPU {diff:e} of {scale:e}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
