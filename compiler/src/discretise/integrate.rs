//! Step 3 of a discrete step: the ODEs integrated over `dt` from the state after the
//! events, inputs held constant, by the integrator the model asks for or the default.

use super::*;

/// The equations of a step: the states they drive, their right-hand sides at the
/// `State` leaves and their Jacobian A there.
struct Odes {
    states: Vec<usize>,
    f: Vec<NodeId>,
    a: Jacobian,
}

impl StepCx {
    /// The states after integration from `cur` (others unchanged), with the method used
    /// and why. `fixed`: params and `dt` known (see [`discretise_fixed`]).
    pub(super) fn integrate(&mut self, cur: &[NodeId], fixed: Option<(&[Option<f64>], f64)>) -> Result<(Method, String, Vec<NodeId>), Diagnostic> {
        let states: Vec<usize> = self.m.odes.iter().map(|(s, _)| self.state_index(*s).expect("ode of a state")).collect();
        let g = &mut self.g;
        let mut lw = Lowerer::new(&self.m);
        let mut f = Vec::new();
        for (_, rhs) in &self.m.odes {
            f.push(lw.expr(g, rhs).map_err(lower_err)?);
        }
        let leaves = &self.leaves;
        let ode_leaves: Vec<NodeId> = states.iter().map(|&k| leaves[k]).collect();
        let a = ir::jacobian(g, &f, &ode_leaves);
        let linear = a.entries.iter().all(|&e| !leaves.iter().any(|&l| g.depends_on(e, l)));
        let exact_ok = linear && exact_structure(g, &a, &f, &ode_leaves);
        // With params and dt known, A may be a constant matrix: exact by the numerical
        // matrix exponential whatever the coupling.
        let numeric = match fixed {
            Some((params, dt_value)) if linear && !exact_ok => numeric_a(g, &a, params, dt_value),
            _ => None,
        };
        let (method, mut method_note) = choose_method(&self.m, linear, exact_ok || numeric.is_some());
        let odes = Odes { states, f, a };
        let mut end = cur.to_vec();
        if let (Method::Exact, Some((a_num, dt_value))) = (method, &numeric) {
            method_note = "exact: numerical propagators exp(A dt) (Pade), params and dt fixed for this population".into();
            self.exact_numeric(cur, &odes, a_num, *dt_value, &mut end)?;
        } else {
            match method {
                Method::Exact => self.exact(cur, &odes, &mut end),
                Method::ExpEuler => self.exp_euler(cur, &odes, &mut end)?,
                Method::Euler => self.euler(cur, &odes, &mut end)?,
                Method::Rk2 => self.rk2(cur, &odes, &mut end)?,
                Method::Rk4 => self.rk4(cur, &odes, &mut end)?,
            }
        }
        Ok((method, method_note, end))
    }

    /// `b`: the right-hand sides with every state at 0 (the constant drive).
    fn drive(&mut self, odes: &Odes) -> Vec<NodeId> {
        let zero = self.g.constant(0.0);
        let zero_map: std::collections::HashMap<NodeId, NodeId> = self.leaves.iter().map(|&l| (l, zero)).collect();
        self.g.substitute(&odes.f, &zero_map)
    }

    /// `exact` with propagators computed numerically: x' = P x + Q b.
    fn exact_numeric(&mut self, cur: &[NodeId], odes: &Odes, a_num: &expm::Mat, dt_value: f64, end: &mut [NodeId]) -> Result<(), Diagnostic> {
        let (p, q) = expm::propagators(a_num, dt_value).ok_or_else(|| {
            Diagnostic::error("E0502", self.m.span, format!("`{}`: the propagator of its linear equations is not finite", self.m.name))
        })?;
        let b = self.drive(odes);
        let g = &mut self.g;
        for (i, &ki) in odes.states.iter().enumerate() {
            let mut terms = Vec::new();
            for (j, &kj) in odes.states.iter().enumerate() {
                if p.get(i, j) != 0.0 {
                    let c = g.constant(p.get(i, j));
                    terms.push(g.mul(c, cur[kj]));
                }
                if q.get(i, j) != 0.0 {
                    let c = g.constant(q.get(i, j));
                    terms.push(g.mul(c, b[j]));
                }
            }
            end[ki] = g.sum(&terms);
        }
        Ok(())
    }

    /// `exact` in closed form, for couplings one level deep.
    fn exact(&mut self, cur: &[NodeId], odes: &Odes, end: &mut [NodeId]) {
        let b = self.drive(odes);
        let (g, a, dt) = (&mut self.g, &odes.a, self.dt);
        for (i, &ki) in odes.states.iter().enumerate() {
            let aii = a.get(i, i);
            let adt = g.mul(aii, dt);
            let e = g.unary(Op::Exp, adt);
            let phi_arg = g.unary(Op::Exprel, adt);
            let phi = g.mul(dt, phi_arg);
            let mut terms = vec![g.mul(e, cur[ki])];
            terms.push(g.mul(phi, b[i]));
            for (j, &kj) in odes.states.iter().enumerate() {
                if i == j || a.is_structural_zero(g, i, j) {
                    continue;
                }
                // x_i gains c * x_j0 * dt * e^{a_i dt} * exprel((a_j - a_i) dt):
                // the divided difference of exp, finite when a_i = a_j.
                let diff = g.sub(a.get(j, j), aii);
                let ddt = g.mul(diff, dt);
                let ex = g.unary(Op::Exprel, ddt);
                let w = g.mul(dt, e);
                let w = g.mul(w, ex);
                let c = g.mul(a.get(i, j), cur[kj]);
                terms.push(g.mul(c, w));
            }
            end[ki] = g.sum(&terms);
        }
    }

    /// `x + dt * exprel(a dt) * f(x)`, `a = df/dx` at the state after the events.
    fn exp_euler(&mut self, cur: &[NodeId], odes: &Odes, end: &mut [NodeId]) -> Result<(), Diagnostic> {
        let (g, dt) = (&mut self.g, self.dt);
        let map: std::collections::HashMap<NodeId, NodeId> = self.leaves.iter().copied().zip(cur.iter().copied()).collect();
        let f_cur = eval_odes(&self.m, g, cur, None)?;
        let diag: Vec<NodeId> = (0..odes.states.len()).map(|i| odes.a.get(i, i)).collect();
        let a_cur = g.substitute(&diag, &map);
        for (i, &ki) in odes.states.iter().enumerate() {
            let adt = g.mul(a_cur[i], dt);
            let phi = g.unary(Op::Exprel, adt);
            let step = g.mul(dt, phi);
            let inc = g.mul(step, f_cur[i]);
            end[ki] = g.add(cur[ki], inc);
        }
        Ok(())
    }

    fn euler(&mut self, cur: &[NodeId], odes: &Odes, end: &mut [NodeId]) -> Result<(), Diagnostic> {
        let (g, dt) = (&mut self.g, self.dt);
        let f = eval_odes(&self.m, g, cur, None)?;
        for (i, &ki) in odes.states.iter().enumerate() {
            let inc = g.mul(dt, f[i]);
            end[ki] = g.add(cur[ki], inc);
        }
        Ok(())
    }

    /// The midpoint method.
    fn rk2(&mut self, cur: &[NodeId], odes: &Odes, end: &mut [NodeId]) -> Result<(), Diagnostic> {
        let (m, g, dt) = (&self.m, &mut self.g, self.dt);
        let k1 = eval_odes(m, g, cur, None)?;
        let half = g.constant(0.5);
        let hdt = g.mul(half, dt);
        let mid = offset(g, cur, &odes.states, &k1, hdt);
        let k2 = eval_odes(m, g, &mid, Some(hdt))?;
        for (i, &ki) in odes.states.iter().enumerate() {
            let inc = g.mul(dt, k2[i]);
            end[ki] = g.add(cur[ki], inc);
        }
        Ok(())
    }

    fn rk4(&mut self, cur: &[NodeId], odes: &Odes, end: &mut [NodeId]) -> Result<(), Diagnostic> {
        let (m, g, dt, states) = (&self.m, &mut self.g, self.dt, &odes.states);
        let half = g.constant(0.5);
        let hdt = g.mul(half, dt);
        let k1 = eval_odes(m, g, cur, None)?;
        let x2 = offset(g, cur, states, &k1, hdt);
        let k2 = eval_odes(m, g, &x2, Some(hdt))?;
        let x3 = offset(g, cur, states, &k2, hdt);
        let k3 = eval_odes(m, g, &x3, Some(hdt))?;
        let x4 = offset(g, cur, states, &k3, dt);
        let k4 = eval_odes(m, g, &x4, Some(dt))?;
        let two = g.constant(2.0);
        let sixth = g.constant(6.0);
        for (i, &ki) in states.iter().enumerate() {
            let a2 = g.mul(two, k2[i]);
            let a3 = g.mul(two, k3[i]);
            let s = g.sum(&[k1[i], a2, a3, k4[i]]);
            let w = g.div(dt, sixth);
            let inc = g.mul(w, s);
            end[ki] = g.add(cur[ki], inc);
        }
        Ok(())
    }
}

/// The right-hand sides at state `x`, time shifted by `dt_shift` (RK stages).
fn eval_odes(m: &Model, g: &mut Graph, x: &[NodeId], dt_shift: Option<NodeId>) -> Result<Vec<NodeId>, Diagnostic> {
    let mut lw = Lowerer::new(m);
    bind_states(m, &mut lw, x);
    if let (Some(shift), Some(tsym)) = (dt_shift, m.symbols.iter().position(|s| s.kind == SymKind::Time)) {
        let t = g.leaf(Op::Time);
        let ts = g.add(t, shift);
        lw.bind(tsym, ts);
    }
    m.odes.iter().map(|(_, rhs)| lw.expr(g, rhs).map_err(lower_err)).collect()
}

fn offset(g: &mut Graph, cur: &[NodeId], ode_states: &[usize], k: &[NodeId], h: NodeId) -> Vec<NodeId> {
    let mut x = cur.to_vec();
    for (i, &ki) in ode_states.iter().enumerate() {
        let inc = g.mul(h, k[i]);
        x[ki] = g.add(cur[ki], inc);
    }
    x
}

/// A as numbers when every entry is a constant once `params` and `dt` are substituted.
fn numeric_a(g: &mut Graph, a: &Jacobian, params: &[Option<f64>], dt: f64) -> Option<(expm::Mat, f64)> {
    let mut map = std::collections::HashMap::new();
    for (k, v) in params.iter().enumerate() {
        if let Some(v) = v {
            let leaf = g.param(k as u32);
            let c = g.constant(*v);
            map.insert(leaf, c);
        }
    }
    let dt_leaf = g.leaf(Op::Dt);
    let dt_c = g.constant(dt);
    map.insert(dt_leaf, dt_c);
    let entries = g.substitute(&a.entries, &map);
    let values: Option<Vec<f64>> = entries.iter().map(|&e| g.const_value(e)).collect();
    let values = values?;
    Some((expm::Mat { n: a.rows, a: values }, dt))
}

/// Whether `exact` can be built symbolically: a linear system whose couplings go one
/// level deep (x_i may depend on x_j when x_j depends on no other state and has no
/// constant drive), which covers neurons with exponential synapses and alpha synapses.
fn exact_structure(g: &Graph, a: &Jacobian, f: &[NodeId], leaves: &[NodeId]) -> bool {
    let n = a.rows;
    let has_in = |j: usize| (0..n).any(|k| k != j && !a.is_structural_zero(g, j, k));
    for i in 0..n {
        for j in 0..n {
            if i == j || a.is_structural_zero(g, i, j) {
                continue;
            }
            if has_in(j) {
                return false;
            }
            // x_j must be homogeneous (dx_j/dt = a_jj x_j): f_j is zero at x = 0.
            if !is_homogeneous(g, f[j], leaves) {
                return false;
            }
        }
    }
    true
}

/// f is a sum of terms each proportional to a state leaf (no constant drive).
fn is_homogeneous(g: &Graph, f: NodeId, leaves: &[NodeId]) -> bool {
    match g.op(f) {
        Op::State(_) => leaves.contains(&f),
        Op::Add | Op::Sub => g.args(f).iter().all(|&x| is_homogeneous(g, x, leaves)),
        Op::Neg => is_homogeneous(g, g.args(f)[0], leaves),
        Op::Mul => g.args(f).iter().any(|&x| is_homogeneous(g, x, leaves)),
        Op::Div => is_homogeneous(g, g.args(f)[0], leaves),
        Op::Const(v) => v == 0.0,
        _ => false,
    }
}

fn choose_method(m: &Model, linear: bool, exact_ok: bool) -> (Method, String) {
    match m.method {
        Some(Method::Exact) if exact_ok => (Method::Exact, "exact (asked for; linear system)".into()),
        Some(Method::Exact) => (
            Method::ExpEuler,
            if linear {
                "exp_euler: `exact` was asked for, but the couplings between states go more than one level deep".into()
            } else {
                "exp_euler: `exact` was asked for, but the equations are not linear in the states".into()
            },
        ),
        Some(other) => (other, format!("{} (asked for)", other.name())),
        None if m.odes.is_empty() => (Method::Exact, "no equations: states change only by events".into()),
        None if exact_ok => (Method::Exact, "exact (the default for linear systems): propagators exp(A dt) in closed form".into()),
        None if linear => (Method::ExpEuler, "exp_euler: linear, but coupled too deeply for closed-form propagators".into()),
        None => (Method::ExpEuler, "exp_euler (the default for non-linear equations)".into()),
    }
}
