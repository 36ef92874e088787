//! Convolution and pooling projections (`conv(...)`, `pool(...)`): their synapses and
//! weights against a direct convolution formula; their kernel gradient equals the dense
//! gradient of the same weights summed over the synapses sharing each kernel entry, for
//! BPTT, D-RTRL and ES-D-RTRL; BPTT against finite differences (one conv layer, and a
//! conv layer read through average pooling by a second layer); D-RTRL = BPTT on one conv
//! layer; on the emulated GPU, the CPU's gradients (those two networks, and
//! examples/digits_conv.snn).
use crate::common::program;
use ndarray::Array2;
use snnc_compiler::backend::ptx::Target;
use snnc_runtime::gpu::{EmuDevice, GpuNetwork};
use snnc_runtime::kernels::InterpFactory;
use snnc_runtime::learn::{Method, gradient_of};
use snnc_runtime::network::{Network, Options};
use snnc_runtime::train::tasks::RandomSpikes;

/// (channels, height, width, out, kernel, stride, padding)
type Shape = (usize, usize, usize, usize, usize, usize, usize);

fn out_size(n: usize, k: usize, s: usize, p: usize) -> usize {
    (n + 2 * p - k) / s + 1
}

/// One conv layer of LIF neurons on an image input, read by a `Linear` readout (so the
/// loss at a step reads that step's spikes: D-RTRL is exact, ALGORITHMS.md); `topo` is the conv clause, or `dense` for the same sizes.
fn one_layer((c, h, w, o, k, s, p): Shape, topo: &str) -> String {
    let n_out = o * out_size(h, k, s, p) * out_size(w, k, s, p);
    format!(
        r#"import "stdlib/lif.snn"
network n {{
    dt = 1 ms
    input x: {n_in}
    layer C = LIF[{n_out}]
    readout out = Linear[2]
    connect x -> C.I {topo} trainable init normal(0, 3) as K
    connect C -> out dense trainable init normal(0, 1) as W_out
}}"#,
        n_in = c * h * w
    )
}

fn conv_clause((c, h, w, o, k, s, p): Shape) -> String {
    format!("conv(channels = {c}, height = {h}, width = {w}, out = {o}, kernel = {k}, stride = {s}, padding = {p})")
}

fn build(text: &str, opts: &Options) -> Network<f64> {
    let p = program(text);
    Network::<f64>::build(&p, &p.networks[0], opts, &InterpFactory).unwrap()
}

/// The weight matrix (pre x post) of a convolution by the textbook formula:
/// `y[o, oy, ox] = sum_{c, ky, kx} K[o, (c, ky, kx)] x[c, oy*s - p + ky, ox*s - p + kx]`,
/// with the synapses it has (their kernel entry).
fn direct((c, h, w, o, k, s, p): Shape, kernel: &Array2<f64>) -> (Array2<f64>, Vec<(usize, usize, usize)>) {
    let (oh, ow) = (out_size(h, k, s, p), out_size(w, k, s, p));
    let mut m = Array2::zeros((c * h * w, o * oh * ow));
    let mut at = Vec::new();
    for oc in 0..o {
        for oy in 0..oh {
            for ox in 0..ow {
                for ic in 0..c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (y, x) = ((oy * s + ky) as isize - p as isize, (ox * s + kx) as isize - p as isize);
                            if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                                continue;
                            }
                            let (i, j, e) = ((ic * h + y as usize) * w + x as usize, (oc * oh + oy) * ow + ox, (ic * k + ky) * k + kx);
                            m[[i, j]] = kernel[[oc, e]];
                            at.push((i, j, oc * c * k * k + e));
                        }
                    }
                }
            }
        }
    }
    (m, at)
}

/// A sparse projection's weights as a dense matrix (zeros where there is no synapse).
fn densified(net: &Network<f64>, name: &str) -> Array2<f64> {
    let (pi, _, to, _) = net.projection(name).unwrap();
    let (row_ptr, col, w) = net.sparse_weights(pi).expect("sparse");
    let mut d = Array2::zeros((row_ptr.len() - 1, net.pops[to].n));
    for i in 0..row_ptr.len() - 1 {
        for s in row_ptr[i]..row_ptr[i + 1] {
            d[[i, col[s] as usize]] = w[s];
        }
    }
    d
}

fn largest(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

const SHAPES: [Shape; 3] = [(2, 5, 5, 3, 3, 2, 1), (1, 6, 7, 2, 3, 1, 0), (3, 4, 4, 2, 2, 2, 0)];

#[test]
fn conv_weights_equal_the_direct_formula() {
    let opts = Options { batch: 1, seed: 4, ..Options::default() };
    for shape in SHAPES {
        let net = build(&one_layer(shape, &conv_clause(shape)), &opts);
        let kernel = net.trainable("K").unwrap();
        let (c, _, _, o, k, ..) = shape;
        assert_eq!(kernel.dim(), (o, c * k * k), "{shape:?}: the kernel's shape");
        let (m, at) = direct(shape, &kernel);
        assert_eq!(densified(&net, "K"), m, "{shape:?}: synapses and weights");
        let (pi, ..) = net.projection("K").unwrap();
        assert_eq!(net.sparse_weights(pi).unwrap().1.len(), at.len(), "{shape:?}: one synapse per (output, tap) inside the image");
        // Every kernel entry is used and they differ (drawn, not one value repeated).
        let mut distinct: Vec<f64> = kernel.iter().copied().collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert_eq!(distinct.len(), kernel.len(), "{shape:?}: every kernel entry drawn on its own");
    }
}

#[test]
fn setting_the_kernel_rewrites_every_synapse() {
    let shape = SHAPES[0];
    let mut net = build(&one_layer(shape, &conv_clause(shape)), &Options::default());
    let kernel = Array2::from_shape_fn(net.trainable("K").unwrap().dim(), |(a, b)| (a * 31 + b) as f64 * 0.01 - 0.3);
    net.set_trainable("K", kernel.clone()).unwrap();
    assert_eq!(densified(&net, "K"), direct(shape, &kernel).0);
    let e = net.set_trainable("K", Array2::zeros((1, 4))).unwrap_err().to_string();
    assert!(e.contains("the kernel of the convolution `K` must be 3x18"), "{e}");
}

#[test]
fn average_pooling_is_the_mean_of_each_window() {
    let text = r#"import "stdlib/lif.snn"
network n {
    input x: 32
    layer P = LIF[8]
    connect x -> P.I pool(channels = 2, height = 4, width = 4, kernel = 2) as avg
}"#;
    let net = build(text, &Options::default());
    let m = densified(&net, "avg");
    for i in 0..32 {
        let (c, y, x) = (i / 16, (i / 4) % 4, i % 4);
        for j in 0..8 {
            let (pc, py, px) = (j / 4, (j / 2) % 2, j % 2);
            let want = if pc == c && py == y / 2 && px == x / 2 { 0.25 } else { 0.0 };
            assert_eq!(m[[i, j]], want, "pixel {i} -> pooled {j}");
        }
    }
}

#[test]
fn kernel_gradients_are_the_dense_gradients_summed_over_shared_synapses() {
    let opts = Options { batch: 3, seed: 21, learning: true, ..Options::default() };
    let names = ["K".to_string(), "W_out".to_string()];
    for shape in SHAPES {
        let n_in = shape.0 * shape.1 * shape.2;
        let data = || RandomSpikes::new(60, 3, n_in, 2, 0.3, 8);
        let mut conv = build(&one_layer(shape, &conv_clause(shape)), &opts);
        let mut dense = build(&one_layer(shape, "dense"), &opts);
        let (m, at) = direct(shape, &conv.trainable("K").unwrap());
        dense.set_trainable("K", m).unwrap();
        dense.set_trainable("W_out", conv.trainable("W_out").unwrap()).unwrap();
        let mut by_method = Vec::new();
        for method in [Method::Bptt, Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
            conv.reset();
            dense.reset();
            let gc = gradient_of(&mut conv, &names, &mut data(), method, false).unwrap();
            let gd = gradient_of(&mut dense, &names, &mut data(), method, false).unwrap();
            assert_eq!(gc.loss, gd.loss, "{method} {shape:?}: the forward passes differ");
            let (k, d) = (gc.get("K").unwrap(), gd.get("K").unwrap());
            let mut want = Array2::zeros(k.dim());
            for &(i, j, e) in &at {
                want.as_slice_mut().unwrap()[e] += d[[i, j]];
            }
            let scale = largest(&want);
            assert!(scale > 0.0, "{method} {shape:?}: zero gradient");
            assert!(largest(&(k - &want)) <= 1e-10 * scale, "{method} {shape:?}: kernel gradient vs the summed dense one");
            assert!(largest(&(gc.get("W_out").unwrap() - gd.get("W_out").unwrap())) <= 1e-10 * largest(gd.get("W_out").unwrap()));
            by_method.push(k.clone());
        }
        // One feed-forward conv layer: D-RTRL is exact.
        let (bptt, drtrl) = (&by_method[0], &by_method[1]);
        assert!(largest(&(drtrl - bptt)) <= 1e-9 * largest(bptt), "{shape:?}: D-RTRL differs from BPTT");
    }
}

fn loss_with(text: &str, opts: &Options, n_in: usize, k: usize, delta: f64) -> f64 {
    let mut n = build(text, opts);
    let mut w = n.trainable("K").unwrap();
    w.as_slice_mut().unwrap()[k] += delta;
    n.set_trainable("K", w).unwrap();
    gradient_of(&mut n, &[], &mut RandomSpikes::new(40, 2, n_in, 2, 0.3, 9), Method::Bptt, false).unwrap().loss
}

/// A conv layer read through average pooling (a fixed sparse link the learning signal
/// goes back through) by a second layer, then a `Linear` readout.
const CONV_POOL: &str = r#"import "stdlib/lif.snn"
network n {
    dt = 1 ms
    input x: 32
    layer C = LIF[48]
    layer P = LIF[12]
    readout out = Linear[2]
    connect x -> C.I conv(channels = 2, height = 4, width = 4, out = 3, kernel = 3, padding = 1) trainable init normal(0, 3) as K
    connect C -> P.I pool(channels = 3, height = 4, width = 4, kernel = 2) weight 3 as avg
    connect P -> out dense trainable init normal(0, 1) as W_out
}"#;

#[test]
fn kernel_gradient_matches_finite_differences() {
    let shape = SHAPES[0];
    let one = one_layer(shape, &conv_clause(shape));
    for (text, n_in) in [(one.as_str(), shape.0 * shape.1 * shape.2), (CONV_POOL, 32)] {
        kernel_gradient_against_finite_differences(text, n_in);
    }
}

fn kernel_gradient_against_finite_differences(text: &str, n_in: usize) {
    let opts = Options { batch: 2, seed: 3, smooth_spikes: Some(3.0), learning: true, ..Options::default() };
    let mut n = build(text, &opts);
    let g = gradient_of(&mut n, &["K".to_string()], &mut RandomSpikes::new(40, 2, n_in, 2, 0.3, 9), Method::Bptt, false).unwrap();
    let grad = g.get("K").unwrap();
    let scale = largest(grad);
    assert!(scale > 0.0);
    let flat = grad.as_slice().unwrap();
    for k in [0, 5, flat.len() / 2, flat.len() - 1] {
        let h = 1e-5;
        let fd = (loss_with(text, &opts, n_in, k, h) - loss_with(text, &opts, n_in, k, -h)) / (2.0 * h);
        assert!((fd - flat[k]).abs() <= 1e-4 * scale, "K[{k}]: BPTT {:e} vs finite differences {fd:e} (largest {scale:e})", flat[k]);
    }
}

/// Convolutions trained on the (emulated) GPU: a conv layer, and a conv layer read
/// through average pooling (a fixed sparse link the signal goes back through), by every
/// method: the device's kernel gradients (its synapses' summed into the entries they
/// share) and loss equal the CPU's (f64, 1e-10); a kernel set on the device reaches its
/// synapses there (the next gradient equals the CPU's with that kernel).
#[test]
fn conv_gradients_on_the_emulated_gpu_equal_the_cpus() {
    use snnc_runtime::gpu::GpuGradient;
    let opts = Options { batch: 2, seed: 21, learning: true, ..Options::default() };
    let shape = SHAPES[0];
    let one = one_layer(shape, &conv_clause(shape));
    for (what, text, n_in) in [("conv", one.as_str(), shape.0 * shape.1 * shape.2), ("conv + pool", CONV_POOL, 32)] {
        let names = ["K".to_string(), "W_out".to_string()];
        let data = || RandomSpikes::new(40, 2, n_in, 2, 0.3, 8);
        for method in [Method::Bptt, Method::DRtrl, Method::EsDRtrl { decay: 0.9 }] {
            let mut cpu = build(text, &opts);
            let p = program(text);
            let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
            let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
            let mut grad = GpuGradient::new(&mut gpu, &names, method).unwrap();
            // Then again with another kernel, set on both.
            let kernel = cpu.trainable("K").unwrap().mapv(|v| 0.8 * v + 0.3);
            for round in 0..2 {
                if round == 1 {
                    cpu.set_trainable("K", kernel.clone()).unwrap();
                    gpu.set_trainable("K", kernel.clone()).unwrap();
                    cpu.reset();
                    gpu.reset().unwrap();
                }
                let want = gradient_of(&mut cpu, &names, &mut data(), method, false).unwrap();
                let got = grad.run(&mut gpu, &mut data()).unwrap();
                assert!((want.loss - got.loss).abs() <= 1e-10 * want.loss, "{what} {method} round {round}: loss {} vs {}", want.loss, got.loss);
                for name in &names {
                    let (a, b) = (want.get(name).unwrap(), got.get(name).unwrap());
                    assert_eq!(a.dim(), b.dim(), "{what} {method} {name}: the kernel's shape");
                    let scale = largest(a);
                    assert!(scale > 0.0, "{what} {method} {name}: zero gradient");
                    eprintln!("{what}, {method}, round {round}, {name} {:?}: device vs CPU {:.1e} of the largest", a.dim(), largest(&(a - b)) / scale);
                    assert!(largest(&(a - b)) <= 1e-10 * scale, "{what} {method} round {round} {name}: device vs CPU");
                }
            }
        }
    }
}

/// examples/digits_conv.snn (conv 8 x 3 x 3 on 8 x 8 images, average pooling, a leaky
/// readout) trained by its method, ES-D-RTRL, on the emulated GPU: the CPU's gradients.
#[test]
fn the_digits_conv_example_gets_the_cpus_gradient_on_the_emulated_gpu() {
    use snnc_compiler::SourceMap;
    use snnc_compiler::sema::{self, LoadOptions};
    use snnc_runtime::gpu::GpuGradient;
    let mut sources = SourceMap::new();
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/digits_conv.snn"));
    let (p, d) = sema::check_path(path, &LoadOptions::default(), &mut sources);
    assert!(d.iter().all(|d| !d.is_error()));
    let opts = Options { batch: 2, seed: 3, learning: true, ..Options::default() };
    let names = ["K1".to_string(), "W_out".to_string()];
    let method = Method::EsDRtrl { decay: 0.9 };
    let data = || RandomSpikes::new(20, 2, 64, 10, 0.3, 5);
    let mut cpu = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let want = gradient_of(&mut cpu, &names, &mut data(), method, false).unwrap();
    let host = Network::<f64>::build(&p, &p.networks[0], &opts, &InterpFactory).unwrap();
    let mut gpu = GpuNetwork::new(host, EmuDevice::new(Target::Sm80)).unwrap();
    let got = GpuGradient::new(&mut gpu, &names, method).unwrap().run(&mut gpu, &mut data()).unwrap();
    assert!((want.loss - got.loss).abs() <= 1e-10 * want.loss, "loss {} vs {}", want.loss, got.loss);
    for name in &names {
        let (a, b) = (want.get(name).unwrap(), got.get(name).unwrap());
        assert_eq!(a.dim(), b.dim(), "{name}");
        let scale = largest(a);
        assert!(scale > 0.0, "{name}: zero gradient");
        eprintln!("digits_conv, {name} {:?}: device vs CPU {:.1e} of the largest", a.dim(), largest(&(a - b)) / scale);
        assert!(largest(&(a - b)) <= 1e-10 * scale, "{name}: device vs CPU");
    }
}
