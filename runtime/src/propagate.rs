//! Moving presynaptic activity through a projection into a postsynaptic port:
//! dense `y += x W` (GEMM through ndarray/matrixmultiply), event-driven sparse rows,
//! one-to-one, and synaptic delays in ring buffers.

use crate::connectivity::Csr;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, LinalgScalar, linalg::general_mat_mul};

/// `y += x W` for a batch: x is (B, I), W is (I, O), y is (B, O).
pub fn dense<T: LinalgScalar>(x: ArrayView2<T>, w: ArrayView2<T>, y: &mut ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &x, &w, T::one(), y);
}

/// Sparse weights converted to the runtime's float type, kept next to the structure.
#[derive(Clone, Debug)]
pub struct SparseRows<T> {
    pub row_ptr: Vec<usize>,
    pub col: Vec<u32>,
    pub weight: Vec<T>,
}

impl<T: Copy> SparseRows<T> {
    pub fn from_csr(c: &Csr, conv: impl Fn(f64) -> T) -> SparseRows<T> {
        SparseRows { row_ptr: c.row_ptr.clone(), col: c.col.clone(), weight: c.weight.iter().map(|w| conv(*w)).collect() }
    }
}

/// Event-driven propagation: only the rows of presynaptic neurons that spiked are read.
/// `spikes` lists the indices of spiking neurons of one batch element; `y` is that
/// element's port accumulator.
pub fn sparse_events<T: Copy + std::ops::AddAssign>(rows: &SparseRows<T>, spikes: &[u32], y: &mut [T]) {
    for &i in spikes {
        let r = rows.row_ptr[i as usize]..rows.row_ptr[i as usize + 1];
        for (c, w) in rows.col[r.clone()].iter().zip(&rows.weight[r]) {
            y[*c as usize] += *w;
        }
    }
}

/// `y[i] += w[i] * x[i]`.
pub fn one_to_one<T: Copy + std::ops::AddAssign + std::ops::Mul<Output = T>>(w: &[T], x: &[T], y: &mut [T]) {
    for ((yi, wi), xi) in y.iter_mut().zip(w).zip(x) {
        *yi += *wi * *xi;
    }
}

/// Delayed delivery: contributions computed at step t land in the port at t + d.
/// Slot `(t + d) mod len` accumulates; the port reads and clears slot `t mod len`.
#[derive(Clone, Debug)]
pub struct DelayRing<T> {
    slots: Vec<Array2<T>>,
    delay: usize,
}

impl<T: Clone + num_zero::Zero> DelayRing<T> {
    /// `delay` in steps (>= 1), for a (batch, n_post) port.
    pub fn new(delay: usize, batch: usize, n_post: usize) -> DelayRing<T> {
        let delay = delay.max(1);
        DelayRing { slots: (0..=delay).map(|_| Array2::from_elem((batch, n_post), T::zero())).collect(), delay }
    }

    /// Empties every slot (nothing in flight).
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            s.fill(T::zero());
        }
    }

    /// The delay in steps (the ring has `delay + 1` slots).
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// The accumulator for contributions emitted at step `t`.
    pub fn emit_slot(&mut self, t: usize) -> &mut Array2<T> {
        let n = self.slots.len();
        &mut self.slots[(t + self.delay) % n]
    }

    /// Takes what arrives at step `t` (the slot is cleared for reuse).
    pub fn arrive(&mut self, t: usize, into: &mut ArrayViewMut2<T>)
    where
        T: std::ops::AddAssign + Copy,
    {
        let n = self.slots.len();
        let slot = &mut self.slots[t % n];
        ndarray::Zip::from(into).and(&mut *slot).for_each(|d, s| {
            *d += *s;
            *s = T::zero();
        });
    }
}

/// `Zero` for the float types the runtime uses (keeps the public bounds small).
pub mod num_zero {
    pub trait Zero {
        fn zero() -> Self;
    }
    impl Zero for f32 {
        fn zero() -> f32 {
            0.0
        }
    }
    impl Zero for f64 {
        fn zero() -> f64 {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectivity::fixed_probability;
    use crate::rng::Rng;
    use ndarray::{Array2, array};
    use snnc_compiler::sema::Init;

    #[test]
    fn dense_matches_hand_product() {
        let x = array![[1.0f64, 0.0, 2.0]];
        let w = array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let mut y = array![[0.5, 0.5]];
        dense(x.view(), w.view(), &mut y.view_mut());
        assert_eq!(y, array![[11.5, 14.5]]);
    }

    #[test]
    fn sparse_events_equal_dense_product_with_spike_vector() {
        let rng = Rng::new(3);
        let csr = fixed_probability(200, 150, 0.1, false, &Init::Normal { mean: 0.0, std: 1.0 }, &rng, 11);
        let rows = SparseRows::from_csr(&csr, |w| w);
        let spikes: Vec<u32> = (0..200).filter(|i| i % 7 == 0).collect();
        let mut y = vec![0.0f64; 150];
        sparse_events(&rows, &spikes, &mut y);
        let mut wd = Array2::<f64>::zeros((200, 150));
        for i in 0..200 {
            let (c, w) = csr.row(i);
            for (j, v) in c.iter().zip(w) {
                wd[[i, *j as usize]] = *v;
            }
        }
        let mut x = Array2::<f64>::zeros((1, 200));
        spikes.iter().for_each(|i| x[[0, *i as usize]] = 1.0);
        let mut yd = Array2::<f64>::zeros((1, 150));
        dense(x.view(), wd.view(), &mut yd.view_mut());
        for j in 0..150 {
            assert!((y[j] - yd[[0, j]]).abs() < 1e-12);
        }
    }

    #[test]
    fn delay_ring_delivers_after_d_steps() {
        let mut ring = DelayRing::<f32>::new(3, 1, 2);
        let mut got = vec![];
        for t in 0..8 {
            if t == 1 {
                ring.emit_slot(t)[[0, 1]] += 5.0;
            }
            let mut port = Array2::<f32>::zeros((1, 2));
            ring.arrive(t, &mut port.view_mut());
            got.push(port[[0, 1]]);
        }
        assert_eq!(got, vec![0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]);
    }
}
