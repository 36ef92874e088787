//! This machine's dense-product peak, to state what fraction of it the learning rules'
//! dense parts reach: ndarray's `dot` (matrixmultiply's AVX2/FMA kernels, one thread)
//! on square matrices, f64 and f32. `cargo bench -p snnc-runtime --bench gemm -- [N]`
use ndarray::Array2;
use std::time::Instant;

fn best_gflops<T: ndarray::LinalgScalar + From<u8>>(n: usize) -> f64 {
    let a = Array2::<T>::from_shape_fn((n, n), |(i, j)| T::from(((i * 7 + j * 3) % 11) as u8));
    let b = Array2::<T>::from_shape_fn((n, n), |(i, j)| T::from(((i * 5 + j) % 13) as u8));
    let mut c = Array2::<T>::zeros((n, n));
    let reps = (2e9 / (2.0 * (n as f64).powi(3))).clamp(1.0, 200.0) as usize;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            ndarray::linalg::general_mat_mul(T::one(), &a, &b, T::zero(), &mut c);
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    std::hint::black_box(&c);
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![64, 128, 256, 512, 1024] } else { sizes };
    println!("{:>6} {:>14} {:>14}", "n", "f64 GFLOP/s", "f32 GFLOP/s");
    for n in sizes {
        println!("{n:>6} {:>14.1} {:>14.1}", best_gflops::<f64>(n), best_gflops::<f32>(n));
    }
}
