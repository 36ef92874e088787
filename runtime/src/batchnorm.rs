//! A projection's `batch_norm` (docs/language.md §9.5): sparch's `BatchNorm1d` on a
//! layer's input current, step by step. The current the weights deliver at a step,
//! z[b, j] = sum_i x[b, i] W[i, j] (with the adapter's `(x U) V`, after the dropout of x),
//! is normalised per target neuron j:
//!
//! - while training (a training pass, [`crate::network::Network::dropout_pass`] set):
//!   over the batch elements of that step, zhat = (z - mean_b z) / sqrt(var_b z + eps)
//!   with the biased variance; the running estimates are updated as torch does,
//!   `running = (1 - momentum) running + momentum stat`, with the unbiased variance;
//! - otherwise (evaluation, `snnc run`, held-out trials): with the running estimates,
//!   zhat = (z - running_mean) / sqrt(running_var + eps);
//!
//! and the projection delivers gamma_j zhat + beta_j, gamma (`NAME.gamma`, from 1) and
//! beta (`NAME.beta`, from 0) trainable. The running estimates are state, not trained:
//! `state/NAME.running_mean` and `state/NAME.running_var` (from 0 and 1) in the tensors a
//! training run carries and checkpoints ([`STATE_PREFIX`]).
//!
//! BPTT's backward through a step (the tape keeps zhat and 1 / sigma of every step):
//! with g = dL/dy, dL/dgamma += sum_b g zhat, dL/dbeta += sum_b g and, with batch
//! statistics, dL/dz = gamma / sigma (g - mean_b g - zhat mean_b (g zhat)) (the batch
//! elements are coupled), with the running ones dL/dz = gamma / sigma g.

use crate::error::RuntimeError;
use crate::scalar::Float;

/// torch's `BatchNorm1d` defaults.
pub const EPS: f64 = 1e-5;
pub const MOMENTUM: f64 = 0.1;

/// The names of a run's tensors that are state rather than trained (batch norm's running
/// estimates) start with this: no gradient, no optimiser step, but checkpointed and
/// restored with the weights. No projection or param has a `/` in its name.
pub const STATE_PREFIX: &str = "state/";

/// One projection's batch norm: its affine parameters, running estimates and what the
/// latest step computed.
#[derive(Clone, Debug)]
pub struct BatchNorm<T> {
    pub gamma: Vec<T>,
    pub beta: Vec<T>,
    pub running_mean: Vec<f64>,
    pub running_var: Vec<f64>,
    /// The latest step's delivered current z (B x O), then its output y (B x O).
    pub(crate) z: Vec<T>,
    pub(crate) out: Vec<T>,
    /// The latest step's zhat (B x O) and 1 / sigma per neuron (O).
    pub zhat: Vec<T>,
    pub inv_sigma: Vec<T>,
    /// Whether the latest step normalised with the batch's statistics (training).
    pub batch_stats: bool,
}

impl<T: Float> BatchNorm<T> {
    pub(crate) fn new(n_post: usize, batch: usize) -> BatchNorm<T> {
        BatchNorm {
            gamma: vec![T::from_f64(1.0); n_post],
            beta: vec![T::default(); n_post],
            running_mean: vec![0.0; n_post],
            running_var: vec![1.0; n_post],
            z: vec![T::default(); batch * n_post],
            out: vec![T::default(); batch * n_post],
            zhat: vec![T::default(); batch * n_post],
            inv_sigma: vec![T::default(); n_post],
            batch_stats: false,
        }
    }

    pub fn n_post(&self) -> usize {
        self.gamma.len()
    }

    /// Normalises the step's current [`BatchNorm::z`] (`batch` rows) into
    /// [`BatchNorm::out`]: with the batch's statistics (and the running estimates
    /// updated) when `training`, else with the running estimates.
    pub(crate) fn normalise(&mut self, batch: usize, training: bool, name: &str) -> Result<(), RuntimeError> {
        let o = self.n_post();
        if training && batch < 2 {
            return Err(RuntimeError::Input(format!(
                "`{name}` has `batch_norm`: training normalises over the batch, which needs at least 2 elements (got {batch})"
            )));
        }
        self.batch_stats = training;
        for j in 0..o {
            let (mean, var) = if training {
                let mean = (0..batch).map(|b| self.z[b * o + j].to_f64()).sum::<f64>() / batch as f64;
                let var = (0..batch).map(|b| (self.z[b * o + j].to_f64() - mean).powi(2)).sum::<f64>() / batch as f64;
                self.running_mean[j] = (1.0 - MOMENTUM) * self.running_mean[j] + MOMENTUM * mean;
                self.running_var[j] = (1.0 - MOMENTUM) * self.running_var[j] + MOMENTUM * var * batch as f64 / (batch - 1) as f64;
                (mean, var)
            } else {
                (self.running_mean[j], self.running_var[j])
            };
            let inv = 1.0 / (var + EPS).sqrt();
            self.inv_sigma[j] = T::from_f64(inv);
            let (g, bt) = (self.gamma[j].to_f64(), self.beta[j].to_f64());
            for b in 0..batch {
                let zh = (self.z[b * o + j].to_f64() - mean) * inv;
                self.zhat[b * o + j] = T::from_f64(zh);
                self.out[b * o + j] = T::from_f64(g * zh + bt);
            }
        }
        Ok(())
    }
}

/// The backward of one step's batch norm: from g = dL/dy (B x O) and the step's `zhat`,
/// `inv_sigma` and mode, dL/dz into `dz` (B x O), and dL/dgamma, dL/dbeta added to
/// `dgamma`, `dbeta` (O each).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Float>(g: &[T], zhat: &[T], inv_sigma: &[T], gamma: &[T], batch_stats: bool, batch: usize, dz: &mut [T], dgamma: &mut [T], dbeta: &mut [T]) {
    let o = gamma.len();
    for j in 0..o {
        let (mut sg, mut sgz) = (0.0f64, 0.0f64);
        for b in 0..batch {
            let (gv, zh) = (g[b * o + j].to_f64(), zhat[b * o + j].to_f64());
            sg += gv;
            sgz += gv * zh;
        }
        dgamma[j] += T::from_f64(sgz);
        dbeta[j] += T::from_f64(sg);
        let k = gamma[j].to_f64() * inv_sigma[j].to_f64();
        let (mg, mgz) = (sg / batch as f64, sgz / batch as f64);
        for b in 0..batch {
            let (gv, zh) = (g[b * o + j].to_f64(), zhat[b * o + j].to_f64());
            dz[b * o + j] = T::from_f64(if batch_stats { k * (gv - mg - zh * mgz) } else { k * gv });
        }
    }
}
