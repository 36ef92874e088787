//! Matrix exponential of small dense matrices (the propagators of linear ODE systems).
//!
//! Scaling and squaring with a [13/13] Padé approximant (Higham 2005, "The scaling and
//! squaring method for the matrix exponential revisited", SIAM J. Matrix Anal. Appl.
//! 26:1179), accurate to about 1e-15 relative for the K <= 10 systems of neuron models.
//! The input term of a step with constant input b is `Q b` with Q = \int_0^dt exp(A s) ds,
//! read off the exponential of the augmented matrix [[A, I], [0, 0]] dt, which stays
//! exact when A is singular or has repeated eigenvalues (e.g. tau_m = tau_s).

/// A square matrix, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub n: usize,
    pub a: Vec<f64>,
}

impl Mat {
    pub fn zeros(n: usize) -> Mat {
        Mat { n, a: vec![0.0; n * n] }
    }

    pub fn identity(n: usize) -> Mat {
        let mut m = Mat::zeros(n);
        for i in 0..n {
            m.a[i * n + i] = 1.0;
        }
        m
    }

    pub fn from_rows(rows: &[Vec<f64>]) -> Mat {
        let n = rows.len();
        Mat { n, a: rows.iter().flat_map(|r| r.iter().copied()).collect() }
    }

    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.n + j]
    }

    fn mul(&self, o: &Mat) -> Mat {
        let n = self.n;
        let mut r = Mat::zeros(n);
        for i in 0..n {
            for k in 0..n {
                let x = self.a[i * n + k];
                if x != 0.0 {
                    for j in 0..n {
                        r.a[i * n + j] += x * o.a[k * n + j];
                    }
                }
            }
        }
        r
    }

    fn scale(&self, s: f64) -> Mat {
        Mat { n: self.n, a: self.a.iter().map(|x| x * s).collect() }
    }

    fn add(&self, o: &Mat) -> Mat {
        Mat { n: self.n, a: self.a.iter().zip(&o.a).map(|(x, y)| x + y).collect() }
    }

    fn sub(&self, o: &Mat) -> Mat {
        Mat { n: self.n, a: self.a.iter().zip(&o.a).map(|(x, y)| x - y).collect() }
    }

    /// The 1-norm (largest absolute column sum).
    fn norm1(&self) -> f64 {
        (0..self.n).map(|j| (0..self.n).map(|i| self.get(i, j).abs()).sum::<f64>()).fold(0.0, f64::max)
    }

    /// Solves `self * X = b` by LU with partial pivoting. `None` if singular.
    fn solve(&self, b: &Mat) -> Option<Mat> {
        let n = self.n;
        let mut a = self.a.clone();
        let mut x = b.a.clone();
        for c in 0..n {
            let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))?;
            if a[p * n + c] == 0.0 {
                return None;
            }
            if p != c {
                for j in 0..n {
                    a.swap(p * n + j, c * n + j);
                    x.swap(p * n + j, c * n + j);
                }
            }
            for r in c + 1..n {
                let f = a[r * n + c] / a[c * n + c];
                if f != 0.0 {
                    for j in c..n {
                        a[r * n + j] -= f * a[c * n + j];
                    }
                    for j in 0..n {
                        x[r * n + j] -= f * x[c * n + j];
                    }
                }
            }
        }
        for c in (0..n).rev() {
            for j in 0..n {
                let mut s = x[c * n + j];
                for k in c + 1..n {
                    s -= a[c * n + k] * x[k * n + j];
                }
                x[c * n + j] = s / a[c * n + c];
            }
        }
        Some(Mat { n, a: x })
    }
}

const PADE13: [f64; 14] = [
    64764752532480000.0,
    32382376266240000.0,
    7771770303897600.0,
    1187353796428800.0,
    129060195264000.0,
    10559470521600.0,
    670442572800.0,
    33522128640.0,
    1323241920.0,
    40840800.0,
    960960.0,
    16380.0,
    182.0,
    1.0,
];

/// exp(A). `None` only if A contains non-finite entries.
pub fn expm(a: &Mat) -> Option<Mat> {
    if a.a.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let n = a.n;
    // theta_13 from Higham 2005, Table 2.3.
    let theta13 = 5.371920351148152;
    let norm = a.norm1();
    let s = if norm > theta13 { (norm / theta13).log2().ceil() as i32 } else { 0 };
    let a = a.scale(0.5f64.powi(s));
    let b = &PADE13;
    let i = Mat::identity(n);
    let a2 = a.mul(&a);
    let a4 = a2.mul(&a2);
    let a6 = a4.mul(&a2);
    let u_inner = a6.scale(b[13]).add(&a4.scale(b[11])).add(&a2.scale(b[9]));
    let u = a.mul(&a6.mul(&u_inner).add(&a6.scale(b[7])).add(&a4.scale(b[5])).add(&a2.scale(b[3])).add(&i.scale(b[1])));
    let v_inner = a6.scale(b[12]).add(&a4.scale(b[10])).add(&a2.scale(b[8]));
    let v = a6.mul(&v_inner).add(&a6.scale(b[6])).add(&a4.scale(b[4])).add(&a2.scale(b[2])).add(&i.scale(b[0]));
    let mut r = v.sub(&u).solve(&v.add(&u))?;
    for _ in 0..s {
        r = r.mul(&r);
    }
    Some(r)
}

/// The exact one-step propagators of dx/dt = A x + b with b constant over the step:
/// `x(t + dt) = P x(t) + Q b` with P = exp(A dt) and Q = \int_0^dt exp(A s) ds.
pub fn propagators(a: &Mat, dt: f64) -> Option<(Mat, Mat)> {
    // Balance first: SI units mix scales (R/tau ~ 1e9 next to 1/tau ~ 1e2), and the
    // squarings would smear the large entries' rounding over the small ones.
    let d = balance(a);
    let n = a.n;
    let mut b = a.clone();
    for i in 0..n {
        for j in 0..n {
            b.a[i * n + j] = a.get(i, j) * d[j] / d[i];
        }
    }
    let (pb, qb) = propagators_balanced(&b, dt)?;
    let mut p = Mat::zeros(n);
    let mut q = Mat::zeros(n);
    for i in 0..n {
        for j in 0..n {
            p.a[i * n + j] = pb.get(i, j) * d[i] / d[j];
            q.a[i * n + j] = qb.get(i, j) * d[i] / d[j];
        }
    }
    Some((p, q))
}

/// Diagonal scaling by powers of two (exact) that brings every off-diagonal entry of
/// `D^-1 A D` near the size of the largest diagonal entry: least squares in log2 space
/// over the coupling graph, a few relaxation sweeps. (Parlett–Reinsch balancing does
/// nothing for the triangular systems of neurons driven by synapses.)
fn balance(a: &Mat) -> Vec<f64> {
    let n = a.n;
    let target = (0..n).map(|i| a.get(i, i).abs()).fold(0.0f64, f64::max).max(1e-300).log2();
    let edges: Vec<(usize, usize, f64)> = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| i != j && a.get(i, j) != 0.0 && a.get(i, j).is_finite())
        .map(|(i, j)| (i, j, a.get(i, j).abs().log2()))
        .collect();
    let mut x = vec![0.0f64; n];
    for _ in 0..50 {
        for &(i, j, l) in &edges {
            // entry (i, j) of D^-1 A D is a_ij * 2^(x_j - x_i)
            let r = l + x[j] - x[i] - target;
            x[i] += r / 2.0;
            x[j] -= r / 2.0;
        }
    }
    x.iter().map(|v| 2f64.powi(v.round().clamp(-1000.0, 1000.0) as i32)).collect()
}

fn propagators_balanced(a: &Mat, dt: f64) -> Option<(Mat, Mat)> {
    let n = a.n;
    let mut aug = Mat::zeros(2 * n);
    for i in 0..n {
        for j in 0..n {
            aug.a[i * 2 * n + j] = a.get(i, j) * dt;
        }
        aug.a[i * 2 * n + n + i] = dt;
    }
    let e = expm(&aug)?;
    let mut p = Mat::zeros(n);
    let mut q = Mat::zeros(n);
    for i in 0..n {
        for j in 0..n {
            p.a[i * n + j] = e.get(i, j);
            q.a[i * n + j] = e.get(i, n + j);
        }
    }
    Some((p, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn scalar_decay() {
        for dt in [1e-4, 1e-3, 0.1, 1.0, 30.0] {
            let tau = 0.01;
            let (p, q) = propagators(&Mat::from_rows(&[vec![-1.0 / tau]]), dt).unwrap();
            assert!(close(p.get(0, 0), (-dt / tau).exp(), 1e-14), "dt {dt}");
            assert!(close(q.get(0, 0), tau * (1.0 - (-dt / tau).exp()), 1e-14), "dt {dt}");
        }
    }

    #[test]
    fn current_based_lif_with_equal_time_constants() {
        // dv/dt = (-v + g)/tau_m, dg/dt = -g/tau_s. With tau_m = tau_s = tau the
        // solution is v(t) = (v0 + g0 t / tau) e^{-t/tau}: the singular case of the
        // usual formula g0 tau_s/(tau_s - tau_m) (e^{-t/tau_s} - e^{-t/tau_m}).
        let tau = 0.02;
        for dt in [1e-4, 1e-3, 0.05] {
            let a = Mat::from_rows(&[vec![-1.0 / tau, 1.0 / tau], vec![0.0, -1.0 / tau]]);
            let (p, _) = propagators(&a, dt).unwrap();
            let e = (-dt / tau).exp();
            assert!(close(p.get(0, 0), e, 1e-14));
            assert!(close(p.get(0, 1), dt / tau * e, 1e-13), "{} vs {}", p.get(0, 1), dt / tau * e);
            assert!(close(p.get(1, 1), e, 1e-14));
            assert_eq!(p.get(1, 0), 0.0);
        }
        // Distinct constants: the usual closed form.
        let (tm, ts) = (0.02, 0.005);
        let a = Mat::from_rows(&[vec![-1.0 / tm, 1.0 / tm], vec![0.0, -1.0 / ts]]);
        let dt = 1e-3;
        let (p, _) = propagators(&a, dt).unwrap();
        let want = ts / (ts - tm) * ((-dt / ts).exp() - (-dt / tm).exp());
        assert!(close(p.get(0, 1), want, 1e-13));
    }

    #[test]
    fn badly_scaled_systems_keep_small_entries_accurate() {
        // A current I (amperes) decaying at 200/s driving a voltage through R/tau = 1e9.
        let (k, c, tau) = (200.0, 1e9, 0.02);
        let a = Mat::from_rows(&[vec![-1.0 / tau, c], vec![0.0, -k]]);
        let dt = 1e-3;
        let (p, _) = propagators(&a, dt).unwrap();
        assert!(close(p.get(1, 1), (-k * dt).exp(), 1e-14), "{}", p.get(1, 1));
        let want = c * dt * (-dt / tau).exp() * crate::ir::interp::exprel((1.0 / tau - k) * dt);
        assert!(close(p.get(0, 1), want, 1e-13), "{} vs {want}", p.get(0, 1));
    }

    #[test]
    fn rotation_and_large_norm() {
        // exp of a rotation generator, and a stiff system needing many squarings.
        let w = 3.0;
        let r = expm(&Mat::from_rows(&[vec![0.0, -w], vec![w, 0.0]])).unwrap();
        assert!(close(r.get(0, 0), w.cos(), 1e-14) && close(r.get(1, 0), w.sin(), 1e-14));
        let r = expm(&Mat::from_rows(&[vec![-500.0, 0.0], vec![0.0, 2.0]])).unwrap();
        assert!(close(r.get(1, 1), 2f64.exp(), 1e-13) && r.get(0, 0).abs() < 1e-200);
    }
}
