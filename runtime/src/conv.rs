//! Convolution and average pooling as sparse projections whose synapses share weights.
//!
//! A `conv(...)` projection is stored as sparse rows (one per presynaptic pixel, its
//! targets ascending), so it propagates event-driven like any sparse projection; each
//! synapse also keeps the index of the kernel entry it uses. The trainable tensor is the
//! kernel (`out x channels*kernel*kernel`): setting it writes every synapse's weight
//! from it, and a gradient over the synapses (1 x nnz, as every method forms for a
//! sparse projection) becomes the kernel's by a scatter-add over those indices. Pooling
//! is the same with one weight for every synapse, never trained. (A direct or im2col +
//! GEMM path would be faster for dense images; this one reuses the sparse machinery.)

use crate::connectivity::Csr;
use crate::error::RuntimeError;
use crate::scalar::Float;
use ndarray::Array2;
use snnc_compiler::sema::ConvShape;

/// The kernel of a conv projection and, per synapse (CSR order), its entry in it.
#[derive(Clone, Debug)]
pub struct Shared<T> {
    pub kernel: Array2<T>,
    pub entry: std::sync::Arc<[u32]>,
}

/// The synapses of `shape` (weights left at zero) and each one's kernel entry.
/// Presynaptic pixel `(c, y, x)` reaches output `(o, oy, ox)` through kernel tap
/// `(ky, kx) = (y + padding - oy * stride, x + padding - ox * stride)` when it lies in
/// the kernel; columns come out ascending (o, then oy, then ox).
pub fn structure(shape: &ConvShape) -> (Csr, Vec<u32>) {
    let (c_in, h, w, k, s, p) = (shape.channels, shape.height, shape.width, shape.kernel, shape.stride, shape.padding);
    let (oh, ow) = (shape.out_height(), shape.out_width());
    // Output positions along one axis that pixel `y` reaches, with the tap it uses.
    let taps = |y: usize, n_out: usize| -> Vec<(usize, usize)> {
        (0..n_out).filter_map(|o| (y + p).checked_sub(o * s).filter(|t| *t < k).map(|t| (o, t))).collect()
    };
    let mut row_ptr = Vec::with_capacity(shape.n_pre() + 1);
    let (mut col, mut entry) = (Vec::new(), Vec::new());
    row_ptr.push(0);
    for c in 0..c_in {
        for y in 0..h {
            let ys = taps(y, oh);
            for x in 0..w {
                let xs = taps(x, ow);
                let outs: Vec<usize> = if shape.pool { vec![c] } else { (0..shape.out).collect() };
                for o in outs {
                    for &(oy, ky) in &ys {
                        for &(ox, kx) in &xs {
                            col.push(((o * oh + oy) * ow + ox) as u32);
                            entry.push(if shape.pool { 0 } else { (o * c_in * k * k + (c * k + ky) * k + kx) as u32 });
                        }
                    }
                }
                row_ptr.push(col.len());
            }
        }
    }
    let weight = vec![0.0; col.len()];
    (Csr { n_pre: shape.n_pre(), n_post: shape.n_post(), row_ptr, col, weight }, entry)
}

/// The fan-in of one output neuron of a convolution (its default init is
/// `normal(0, 1/sqrt(fan_in))`), and of pooling: its window.
pub fn fan_in(shape: &ConvShape) -> f64 {
    let window = (shape.kernel * shape.kernel) as f64;
    if shape.pool { window } else { shape.channels as f64 * window }
}

impl<T: Float> Shared<T> {
    /// Every synapse's weight from the kernel.
    pub fn write_weights(&self, weights: &mut [T]) {
        let flat = self.kernel.as_slice().expect("a standard-layout kernel");
        weights.iter_mut().zip(self.entry.iter()).for_each(|(w, &e)| *w = flat[e as usize]);
    }

    /// A new kernel (`name`'s trainable tensor), written through to the synapses.
    pub fn set(&mut self, name: &str, kernel: Array2<T>, weights: &mut [T]) -> Result<(), RuntimeError> {
        if kernel.dim() != self.kernel.dim() {
            let (r, c) = self.kernel.dim();
            return Err(RuntimeError::Input(format!(
                "the kernel of the convolution `{name}` must be {r}x{c} (output channels x input channels*kernel*kernel), got {}x{}",
                kernel.nrows(),
                kernel.ncols()
            )));
        }
        self.kernel = kernel.as_standard_layout().into_owned();
        self.write_weights(weights);
        Ok(())
    }
}

/// The kernel's gradient from the synapses' (1 x nnz): each synapse's share added into
/// the entry it uses.
pub fn kernel_gradient(per_synapse: &Array2<f64>, entry: &[u32], dim: (usize, usize)) -> Array2<f64> {
    let mut g = Array2::zeros(dim);
    let flat = g.as_slice_mut().expect("fresh");
    per_synapse.iter().zip(entry).for_each(|(v, &e)| flat[e as usize] += v);
    g
}
