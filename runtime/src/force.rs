//! Training a `Linear` readout without gradients, over one sequence (batch 1):
//!
//! - **FORCE** (Sussillo & Abbott 2009): recursive least squares on the readout weights
//!   while the network runs, the readout's output fed back through fixed weights. With
//!   r^t what the readout reads, z^t = r^t W its output and f^t the target, every
//!   `every` steps: k = P r, c = 1 / (1 + r . k), P -= c k k^T, W -= c k (z - f)^T,
//!   with P = I / alpha at the start (P is the running inverse of the correlation of r
//!   plus alpha I). The network then runs with learning off (the testing phase).
//! - **Ridge regression**: the states are collected over a training phase (the readout's
//!   feedback, if any, carries the target then: teacher forcing) and W solves
//!   (R^T R + lambda I) W = R^T Y once.
//!
//! Both read exactly what the readout reads ([`Network::step_traced`]) and write the
//! weights back with [`Network::set_projection_weights`].

use crate::error::RuntimeError;
use crate::network::{Network, StepTrace};
use crate::scalar::Float;
use ndarray::Array2;
use snnc_compiler::sema::{PopKind, Source};

/// The projection trained: its index, presynaptic size, the readout and its size.
#[derive(Clone, Copy, Debug)]
pub struct FitTarget {
    pub proj: usize,
    pub n_pre: usize,
    pub readout: usize,
    pub n_out: usize,
}

/// Projection `name` as a readout these methods can train: dense, undelayed, into a
/// `Linear` readout that nothing else drives, in a network of batch 1.
pub fn fit_target<T: Float>(net: &Network<T>, name: &str) -> Result<FitTarget, RuntimeError> {
    let refuse = |why: String| Err(RuntimeError::Build(format!("`{name}`: {why}")));
    let Some((proj, _, to, _)) = net.projection(name) else {
        let names: Vec<String> = net.projections().into_iter().map(|(n, _)| n).collect();
        return Err(RuntimeError::Input(format!("no projection `{name}` (projections: {})", names.join(", "))));
    };
    let pop = &net.pops[to];
    if pop.kind != PopKind::Readout || pop.step.is_some() {
        return refuse(format!("`{}` is not a `Linear` readout; FORCE and ridge regression train the weights into one", pop.name));
    }
    if net.dense_weights(proj).is_none() || net.projection_delay(proj).is_some() {
        return refuse("the trained weights must be dense and without delay".into());
    }
    if let Some((other, _)) = net.projections().into_iter().find(|(n, _)| n != name && net.projection(n).is_some_and(|p| p.2 == to)) {
        return refuse(format!("`{other}` drives the readout `{}` too; the readout must be driven by the trained projection only", pop.name));
    }
    if net.batch != 1 {
        return refuse(format!("FORCE and ridge regression run one sequence (batch 1), not {}", net.batch));
    }
    Ok(FitTarget { proj, n_pre: net.source_size(proj), readout: to, n_out: pop.n })
}

/// The running inverse correlation matrix of recursive least squares.
pub struct Rls {
    n: usize,
    /// P, n x n, symmetric.
    p: Vec<f64>,
    k: Vec<f64>,
}

impl Rls {
    /// P = I / alpha (alpha: the regulariser, the learning rate's inverse).
    pub fn new(n: usize, alpha: f64) -> Rls {
        let mut p = vec![0.0; n * n];
        (0..n).for_each(|i| p[i * n + i] = 1.0 / alpha);
        Rls { n, p, k: vec![0.0; n] }
    }

    /// One update with the presynaptic vector `r` and the readout's error `e = z - f`:
    /// P and the weights `w` (n x outputs, row-major) change in place.
    pub fn update(&mut self, r: &[f64], e: &[f64], w: &mut [f64]) {
        let n = self.n;
        for (i, ki) in self.k.iter_mut().enumerate() {
            *ki = self.p[i * n..(i + 1) * n].iter().zip(r).map(|(p, r)| p * r).sum();
        }
        let c = 1.0 / (1.0 + r.iter().zip(&self.k).map(|(r, k)| r * k).sum::<f64>());
        for i in 0..n {
            let cki = c * self.k[i];
            for (p, kj) in self.p[i * n..(i + 1) * n].iter_mut().zip(&self.k) {
                *p -= cki * kj;
            }
            for (o, eo) in e.iter().enumerate() {
                w[i * e.len() + o] -= cki * eo;
            }
        }
    }
}

/// What a fitting run gives: the readout's output z and the target f, per step.
#[derive(Clone, Debug, Default)]
pub struct FitRun {
    pub z: Vec<Vec<f64>>,
    pub f: Vec<Vec<f64>>,
}

impl FitRun {
    /// Mean absolute error over steps `range` (all outputs).
    pub fn mae(&self, range: std::ops::Range<usize>) -> f64 {
        let (mut s, mut n) = (0.0, 0usize);
        for t in range {
            for (z, f) in self.z[t].iter().zip(&self.f[t]) {
                s += (z - f).abs();
                n += 1;
            }
        }
        s / n.max(1) as f64
    }
}

/// The external inputs of step `t` (one slice per input of the network).
pub type Inputs<'a, T> = dyn FnMut(usize) -> Vec<Vec<T>> + 'a;
/// The target of step `t`, written into the slice (one value per readout neuron).
pub type Targets<'a> = dyn Fn(usize, &mut [f64]) + 'a;

/// One step: what the readout read (r^t, f64) and its output z^t.
fn step<T: Float>(net: &mut Network<T>, fit: &FitTarget, inputs: &mut Inputs<T>, t: usize, trace: &mut StepTrace<T>) -> Result<(Vec<f64>, Vec<f64>), RuntimeError> {
    let x = inputs(t);
    let refs: Vec<&[T]> = x.iter().map(|v| v.as_slice()).collect();
    net.step_traced(&refs, Some(trace))?;
    let r = trace.pre[fit.proj].iter().map(|v| v.to_f64()).collect();
    let z = net.pops[fit.readout].output.iter().map(|v| v.to_f64()).collect();
    Ok((r, z))
}

fn weights_f64<T: Float>(net: &Network<T>, fit: &FitTarget) -> Vec<f64> {
    net.dense_weights(fit.proj).expect("checked dense").iter().map(|v| v.to_f64()).collect()
}

fn set_weights<T: Float>(net: &mut Network<T>, fit: &FitTarget, w: &[f64]) -> Result<(), RuntimeError> {
    let a = Array2::from_shape_fn((fit.n_pre, fit.n_out), |(i, o)| T::from_f64(w[i * fit.n_out + o]));
    net.set_projection_weights(fit.proj, a)
}

/// FORCE: `steps` steps, learning during the first `learn` (every `every` steps, P
/// from I / `alpha`), then with the weights fixed.
pub fn force<T: Float>(
    net: &mut Network<T>,
    fit: &FitTarget,
    steps: usize,
    learn: usize,
    (alpha, every): (f64, usize),
    inputs: &mut Inputs<T>,
    target: &Targets,
) -> Result<FitRun, RuntimeError> {
    if !(alpha > 0.0 && alpha.is_finite()) || every == 0 {
        return Err(RuntimeError::Input(format!("FORCE needs alpha > 0 and an update every k >= 1 steps (alpha {alpha}, every {every})")));
    }
    let mut rls = Rls::new(fit.n_pre, alpha);
    let mut w = weights_f64(net, fit);
    let mut run = FitRun::default();
    let mut trace = StepTrace::default();
    for t in 0..steps {
        let (r, z) = step(net, fit, inputs, t, &mut trace)?;
        let mut f = vec![0.0; fit.n_out];
        target(t, &mut f);
        if t < learn && t % every == 0 {
            let e: Vec<f64> = z.iter().zip(&f).map(|(z, f)| z - f).collect();
            rls.update(&r, &e, &mut w);
            set_weights(net, fit, &w)?;
        }
        run.z.push(z);
        run.f.push(f);
    }
    Ok(run)
}

/// Ridge regression: the first `learn` steps collect what the readout reads (its
/// output replaced by the target after each step, so that feedback carries the target:
/// teacher forcing), the weights are solved with regulariser `lambda`, and the run
/// goes on for the remaining steps with them.
pub fn ridge<T: Float>(net: &mut Network<T>, fit: &FitTarget, steps: usize, learn: usize, lambda: f64, inputs: &mut Inputs<T>, target: &Targets) -> Result<FitRun, RuntimeError> {
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(RuntimeError::Input(format!("ridge regression needs lambda >= 0, got {lambda}")));
    }
    let (n, o) = (fit.n_pre, fit.n_out);
    let mut gram = vec![0.0; n * n];
    let mut cross = vec![0.0; n * o];
    let mut run = FitRun::default();
    let mut trace = StepTrace::default();
    for t in 0..steps {
        if t == learn {
            let w = solve_ridge(&mut gram, &cross, n, o, lambda)?;
            set_weights(net, fit, &w)?;
        }
        let (r, z) = step(net, fit, inputs, t, &mut trace)?;
        let mut f = vec![0.0; o];
        target(t, &mut f);
        if t < learn {
            for i in 0..n {
                for (g, rj) in gram[i * n..(i + 1) * n].iter_mut().zip(&r) {
                    *g += r[i] * rj;
                }
                for (c, fo) in cross[i * o..(i + 1) * o].iter_mut().zip(&f) {
                    *c += r[i] * fo;
                }
            }
            for (out, fo) in net.pops[fit.readout].output.iter_mut().zip(&f) {
                *out = T::from_f64(*fo);
            }
        }
        run.z.push(z);
        run.f.push(f);
    }
    Ok(run)
}

/// W (n x o) solving (G + lambda I) W = C by Cholesky; G is overwritten.
fn solve_ridge(g: &mut [f64], c: &[f64], n: usize, o: usize, lambda: f64) -> Result<Vec<f64>, RuntimeError> {
    (0..n).for_each(|i| g[i * n + i] += lambda);
    // G = L L^T, L in the lower triangle of g.
    for j in 0..n {
        let d = g[j * n + j] - (0..j).map(|k| g[j * n + k] * g[j * n + k]).sum::<f64>();
        if d <= 0.0 || !d.is_finite() {
            return Err(RuntimeError::Input(format!(
                "ridge regression: the states' correlation is singular (pivot {j}); give a regulariser lambda > 0"
            )));
        }
        let l = d.sqrt();
        g[j * n + j] = l;
        for i in j + 1..n {
            let s = g[i * n + j] - (0..j).map(|k| g[i * n + k] * g[j * n + k]).sum::<f64>();
            g[i * n + j] = s / l;
        }
    }
    let mut w = c.to_vec();
    for col in 0..o {
        // L y = c, then L^T w = y.
        for i in 0..n {
            let s = w[i * o + col] - (0..i).map(|k| g[i * n + k] * w[k * o + col]).sum::<f64>();
            w[i * o + col] = s / g[i * n + i];
        }
        for i in (0..n).rev() {
            let s = w[i * o + col] - (i + 1..n).map(|k| g[k * n + i] * w[k * o + col]).sum::<f64>();
            w[i * o + col] = s / g[i * n + i];
        }
    }
    Ok(w)
}

/// The Sussillo-Abbott (2009) periodic target: four harmonics of the period `period`
/// (s), (1.3 / 1.5) (sin w t + sin 2wt / 2 + sin 3wt / 6 + sin 4wt / 3), w = 2 pi / period.
pub fn sum_of_sines(t: f64, period: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI / period;
    1.3 / 1.5 * ((w * t).sin() + (2.0 * w * t).sin() / 2.0 + (3.0 * w * t).sin() / 6.0 + (4.0 * w * t).sin() / 3.0)
}

/// Whether a projection reads the readout `r` (readout feedback).
pub fn feeds_back<T: Float>(net: &Network<T>, r: usize) -> bool {
    net.projections().into_iter().any(|(n, _)| net.projection(&n).is_some_and(|p| p.1 == Source::Pop(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rls_converges_to_least_squares() {
        // y = r . w_true, noiseless: RLS from P = I / alpha (small alpha) reaches w_true.
        let n = 6;
        let w_true: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
        let mut rls = Rls::new(n, 1e-6);
        let mut w = vec![0.0; n];
        for t in 0..200 {
            let r: Vec<f64> = (0..n).map(|i| ((t * (i + 3)) as f64 * 0.37).cos()).collect();
            let z: f64 = r.iter().zip(&w).map(|(a, b)| a * b).sum();
            let f: f64 = r.iter().zip(&w_true).map(|(a, b)| a * b).sum();
            rls.update(&r, &[z - f], &mut w);
        }
        for (a, b) in w.iter().zip(&w_true) {
            assert!((a - b).abs() < 1e-6, "{w:?} vs {w_true:?}");
        }
    }

    #[test]
    fn ridge_solves_the_normal_equations() {
        let (n, o) = (4, 2);
        let g0: Vec<f64> = vec![4.0, 1.0, 0.5, 0.0, 1.0, 3.0, 0.2, 0.1, 0.5, 0.2, 2.0, 0.3, 0.0, 0.1, 0.3, 1.5];
        let c: Vec<f64> = (0..n * o).map(|k| k as f64 - 3.0).collect();
        let lambda = 0.1;
        let w = solve_ridge(&mut g0.clone(), &c, n, o, lambda).unwrap();
        for i in 0..n {
            for col in 0..o {
                let lhs: f64 = (0..n).map(|k| (g0[i * n + k] + if i == k { lambda } else { 0.0 }) * w[k * o + col]).sum();
                assert!((lhs - c[i * o + col]).abs() < 1e-12);
            }
        }
        assert!(solve_ridge(&mut [0.0; 4], &[1.0, 1.0], 2, 1, 0.0).is_err());
    }
}
