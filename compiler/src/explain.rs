//! `snnc explain`: the discrete update and its derivatives as readable math (or JSON).
//!
//! Expressions are printed from the IR in infix form with the fewest parentheses.
//! Inside the step, a state name means its stored value h^{t-1}; shared subexpressions
//! that are not tiny get names (`%3`) and are listed once.

use crate::discretise::{Derivatives, Step};
use crate::ir::{Graph, NodeId, Op};
use std::collections::HashMap;
use std::fmt::Write;

/// Names leaves and prints IR nodes as infix expressions.
pub struct MathPrinter<'a> {
    step: &'a Step,
    /// Nodes printed by name instead of inline.
    named: HashMap<NodeId, String>,
}

fn prec(op: Op) -> u8 {
    match op {
        Op::Select => 0,
        Op::Or => 1,
        Op::And => 2,
        Op::Not => 3,
        Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => 4,
        Op::Add | Op::Sub => 5,
        Op::Mul | Op::Div => 6,
        Op::Neg => 7,
        Op::Pow | Op::PowI(_) => 8,
        _ => 9,
    }
}

fn number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}").replace("-0", "-0")
    } else {
        let s = format!("{v}");
        let e = format!("{v:e}");
        if e.len() < s.len() { e } else { s }
    }
}

impl<'a> MathPrinter<'a> {
    pub fn new(step: &'a Step) -> MathPrinter<'a> {
        MathPrinter { step, named: HashMap::new() }
    }

    fn leaf(&self, op: Op) -> String {
        let s = self.step;
        match op {
            Op::Const(v) => number(v),
            Op::Param(k) => s.param_name(k as usize).to_string(),
            Op::State(k) => s.state_name(k as usize).to_string(),
            Op::Input(k) => s.input_name(k as usize).to_string(),
            Op::Post(k) => format!("post{k}"),
            Op::Time => "t".into(),
            Op::Dt => "dt".into(),
            Op::Weight => "w".into(),
            Op::PreSpike => "pre".into(),
            Op::Rand(k) => format!("rand#{k}"),
            Op::Randn(k) => format!("randn#{k}"),
            _ => unreachable!("not a leaf"),
        }
    }

    /// Gives names to shared non-trivial subexpressions of `roots`; returns their
    /// definitions in dependency order.
    pub fn share(&mut self, roots: &[NodeId]) -> Vec<(String, String)> {
        let g = &self.step.graph;
        let mut uses: HashMap<NodeId, usize> = HashMap::new();
        let mut stack: Vec<NodeId> = roots.to_vec();
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            for &a in g.args(n) {
                *uses.entry(a).or_default() += 1;
                if seen.insert(a) {
                    stack.push(a);
                }
            }
        }
        let mut sizes = HashMap::new();
        let mut shared: Vec<NodeId> =
            uses.iter().filter(|(n, c)| **c > 1 && size(g, **n, &mut sizes) > 4).map(|(n, _)| *n).collect();
        shared.sort();
        let mut defs = Vec::new();
        for n in shared {
            let text = self.expr(n);
            let name = format!("%{}", defs.len() + 1);
            self.named.insert(n, name.clone());
            defs.push((name, text));
        }
        defs
    }

    pub fn expr(&self, n: NodeId) -> String {
        self.go(n, true)
    }

    /// A function argument: named if shared, never parenthesised.
    fn arg(&self, n: NodeId) -> String {
        match self.named.get(&n) {
            Some(name) => name.clone(),
            None => self.go(n, true),
        }
    }

    fn go(&self, n: NodeId, top: bool) -> String {
        crate::deep(|| self.go_at(n, top))
    }

    fn go_at(&self, n: NodeId, top: bool) -> String {
        if !top {
            if let Some(name) = self.named.get(&n) {
                return name.clone();
            }
        }
        let g: &Graph = &self.step.graph;
        let op = g.op(n);
        if op.is_leaf() {
            let s = self.leaf(op);
            return if s.starts_with('-') && !top { format!("({s})") } else { s };
        }
        let args = g.args(n);
        let wrap = |child: NodeId, min: u8| {
            let s = self.go(child, false);
            let cop = g.op(child);
            let cp = if self.named.contains_key(&child) || cop.is_leaf() { 9 } else { prec(cop) };
            if cp < min { format!("({s})") } else { s }
        };
        let p = prec(op);
        match op {
            Op::Add => format!("{} + {}", wrap(args[0], p), wrap(args[1], p)),
            Op::Sub => format!("{} - {}", wrap(args[0], p), wrap(args[1], p + 1)),
            Op::Mul => format!("{} * {}", wrap(args[0], p), wrap(args[1], p)),
            Op::Div => format!("{} / {}", wrap(args[0], p), wrap(args[1], p + 1)),
            Op::Neg => format!("-{}", wrap(args[0], p + 1)),
            Op::Pow => format!("{}^{}", wrap(args[0], 9), wrap(args[1], 9)),
            Op::PowI(k) => format!("{}^{}", wrap(args[0], 9), if k < 0 { format!("({k})") } else { k.to_string() }),
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => {
                let sym = match op {
                    Op::Lt => "<",
                    Op::Le => "<=",
                    Op::Gt => ">",
                    Op::Ge => ">=",
                    Op::Eq => "==",
                    _ => "!=",
                };
                format!("{} {sym} {}", wrap(args[0], p + 1), wrap(args[1], p + 1))
            }
            Op::And => format!("{} and {}", wrap(args[0], p), wrap(args[1], p)),
            Op::Or => format!("{} or {}", wrap(args[0], p), wrap(args[1], p)),
            Op::Not => format!("not {}", wrap(args[0], p)),
            Op::Select => format!(
                "if {} then {} else {}",
                self.go(args[0], false),
                wrap(args[1], 1),
                wrap(args[2], 1)
            ),
            Op::Heaviside(_) => format!("H({})", self.arg(args[0])),
            Op::SurrogateGrad(s) => format!("{}'({})", g.surrogate(s).name, self.arg(args[0])),
            Op::StopGradient => format!("detach({})", self.arg(args[0])),
            _ => {
                let list: Vec<String> = args.iter().map(|a| self.arg(*a)).collect();
                format!("{}({})", op.name(), list.join(", "))
            }
        }
    }
}

/// The size of `n` as a tree, capped at 1000; memoised, so linear in the graph.
fn size(g: &Graph, n: NodeId, memo: &mut HashMap<NodeId, usize>) -> usize {
    if let Some(s) = memo.get(&n) {
        return *s;
    }
    let s = 1 + g.args(n).iter().map(|a| crate::deep(|| size(g, *a, memo))).sum::<usize>().min(1000);
    memo.insert(n, s);
    s
}

/// The `snnc explain` report of one model.
pub fn explain_text(step: &mut Step, file: &str) -> String {
    let der: Derivatives = step.derivatives();
    let mut out = String::new();
    let m = &step.model;
    let kind = match m.kind {
        crate::syntax::ast::ModelKind::Neuron => "neuron",
        crate::syntax::ast::ModelKind::Synapse => "synapse",
    };
    let _ = writeln!(out, "{kind} {} ({file})", m.name);
    let hidden: Vec<&str> = (0..step.n_hidden).map(|k| step.state_name(k)).collect();
    let inputs: Vec<&str> = (0..step.layout.inputs.len()).map(|k| step.input_name(k)).collect();
    let params: Vec<&str> = (0..step.layout.params.len()).map(|k| step.param_name(k)).collect();
    let _ = writeln!(out, "  hidden state  h = [{}]  (K = {})", hidden.join(", "), step.n_hidden);
    if step.layout.states.len() > step.n_hidden {
        let _ = writeln!(out, "  auxiliary     {} (refractory time left)", step.state_name(step.n_hidden));
    }
    let _ = writeln!(out, "  inputs        y = [{}]", inputs.join(", "));
    let _ = writeln!(out, "  params        {}", if params.is_empty() { "-".into() } else { params.join(", ") });
    let _ = writeln!(out, "  integrator    {}", step.method_note);

    let mut roots: Vec<NodeId> = step.next.clone();
    roots.extend(der.d.entries.iter().copied());
    roots.extend(der.df.entries.iter().copied());
    if let Some(ds) = &der.dspike {
        roots.extend(ds.entries.iter().copied());
    }
    if let Some(s) = step.spike_arg {
        roots.push(s);
    }
    let sent = step.model.output.as_ref().filter(|_| step.model.kind == crate::syntax::ast::ModelKind::Neuron).zip(step.spike);
    roots.extend(sent.map(|(_, s)| s));
    let mut pr = MathPrinter::new(step);
    let defs = pr.share(&roots);

    if let Some(arg) = step.spike_arg {
        let _ = writeln!(out, "\nspike");
        let _ = writeln!(out, "  s = H(z),  z = {}", pr.expr(arg));
        match step.spike_scale {
            Some(sc) => {
                let _ = writeln!(out, "  (z is normalised by {}: the size of the reset)", pr.expr(sc));
            }
            None => {
                let _ = writeln!(out, "  (z is not normalised: no reset of the compared state)");
            }
        }
        if let Some(sg) = step.graph.surrogates().first() {
            let ps: Vec<String> = sg.params.iter().map(|(n, v)| format!("{n} = {}", number(*v))).collect();
            let _ = writeln!(out, "  surrogate dH/dz: {}({})", sg.name, ps.join(", "));
        }
    }
    let where_at = out.len();
    if let Some(((name, _), node)) = sent {
        let what = if step.spike_arg.is_some() { "a graded event, 0 where s = 0" } else { "a rate, every step" };
        let _ = writeln!(out, "\nsends ({what}; names are values at t)");
        let _ = writeln!(out, "  {name} = {}", pr.expr(node));
    }
    let _ = writeln!(out, "\nstep (names on the right are values at t-1; s = H(z) of h^(t-1))");
    for (k, &n) in step.next.iter().enumerate() {
        let _ = writeln!(out, "  {}^t = {}", step.state_name(k), pr.expr(n));
    }
    let _ = writeln!(out, "\nD = dh^t/dh^(t-1)");
    for i in 0..der.d.rows {
        for j in 0..der.d.cols {
            let e = der.d.get(i, j);
            if step.graph.is_zero(e) {
                continue;
            }
            let _ = writeln!(out, "  d{}/d{} = {}", step.state_name(i), step.state_name(j), pr.expr(e));
        }
    }
    let zeros: Vec<String> = (0..der.d.rows)
        .flat_map(|i| (0..der.d.cols).map(move |j| (i, j)))
        .filter(|(i, j)| step.graph.is_zero(der.d.get(*i, *j)))
        .map(|(i, j)| format!("d{}/d{}", step.state_name(i), step.state_name(j)))
        .collect();
    if !zeros.is_empty() {
        let _ = writeln!(out, "  structural zeros: {}", zeros.join(", "));
    }
    let _ = writeln!(out, "\nDf = dh^t/dy^t");
    for i in 0..der.df.rows {
        for j in 0..der.df.cols {
            let e = der.df.get(i, j);
            if !step.graph.is_zero(e) {
                let _ = writeln!(out, "  d{}/d{} = {}", step.state_name(i), step.input_name(j), pr.expr(e));
            }
        }
    }
    if let Some(ds) = &der.dspike {
        // A neuron that declares what it sends: the derivative is that value's.
        match step.model.output.as_ref().filter(|_| step.model.kind == crate::syntax::ast::ModelKind::Neuron) {
            Some((name, _)) if step.spike_arg.is_some() => {
                let _ = writeln!(out, "\nds/dh of the graded event sent, {name} * s (surrogate for s)");
            }
            Some((name, _)) => {
                let _ = writeln!(out, "\nds/dh of the rate sent, {name}");
            }
            None => {
                let _ = writeln!(out, "\nds/dh (surrogate)");
            }
        }
        for j in 0..ds.cols {
            let e = ds.get(0, j);
            if !step.graph.is_zero(e) {
                let _ = writeln!(out, "  ds/d{} = {}", step.state_name(j), pr.expr(e));
            }
        }
    }
    // The shared subexpressions that the report uses, in definition order.
    // Each text is scanned once for the names it mentions (linear in the report).
    let mut used: Vec<bool> = vec![false; defs.len()];
    for k in mentioned(&out[where_at..]) {
        used[k] = true;
    }
    for j in (0..defs.len()).rev() {
        if used[j] {
            for k in mentioned(&defs[j].1) {
                used[k] = true;
            }
        }
    }
    if used.iter().any(|u| *u) {
        let mut w = String::from("\nwhere\n");
        for ((n, t), u) in defs.iter().zip(&used) {
            if *u {
                let _ = writeln!(w, "  {n} = {t}");
            }
        }
        out.insert_str(where_at, &w);
    }
    out
}

/// The indices into the shared definitions of the names (`%1`, `%2`, ...) in `text`.
fn mentioned(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.split('%').skip(1).filter_map(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest[..digits].parse::<usize>().ok().filter(|k| *k >= 1).map(|k| k - 1)
    })
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The report as one JSON object (for tools): names, integrator, and every expression
/// as infix text, with D's structural sparsity.
pub fn explain_json(step: &mut Step) -> String {
    let der = step.derivatives();
    let pr = MathPrinter::new(step);
    let names = |v: Vec<&str>| format!("[{}]", v.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(", "));
    let hidden = names((0..step.n_hidden).map(|k| step.state_name(k)).collect());
    let inputs = names((0..step.layout.inputs.len()).map(|k| step.input_name(k)).collect());
    let params = names((0..step.layout.params.len()).map(|k| step.param_name(k)).collect());
    let next: Vec<String> = step.next.iter().map(|n| json_str(&pr.expr(*n))).collect();
    let mat = |j: &crate::ir::Jacobian| {
        let rows: Vec<String> = (0..j.rows)
            .map(|i| format!("[{}]", (0..j.cols).map(|c| json_str(&pr.expr(j.get(i, c)))).collect::<Vec<_>>().join(", ")))
            .collect();
        format!("[{}]", rows.join(", "))
    };
    let sparsity: Vec<String> = der
        .d
        .sparsity(&step.graph)
        .iter()
        .map(|r| format!("[{}]", r.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")))
        .collect();
    let spike = step.spike_arg.map(|a| json_str(&pr.expr(a))).unwrap_or_else(|| "null".into());
    format!(
        "{{\"model\": {}, \"integrator\": {}, \"integrator_note\": {}, \"hidden\": {hidden}, \"inputs\": {inputs}, \"params\": {params}, \"spike_arg\": {spike}, \"next\": [{}], \"D\": {}, \"D_sparsity\": [{}], \"Df\": {}}}",
        json_str(&step.model.name),
        json_str(step.method.name()),
        json_str(&step.method_note),
        next.join(", "),
        mat(&der.d),
        sparsity.join(", "),
        mat(&der.df)
    )
}

/// `snnc emit --target ir`: the step, D and Df as SSA text.
pub fn emit_ir(step: &mut Step) -> String {
    let der = step.derivatives();
    let mut outputs: Vec<(String, NodeId)> = Vec::new();
    for (k, n) in step.next.iter().enumerate() {
        outputs.push((format!("{}^t", step.state_name(k)), *n));
    }
    if let Some(s) = step.spike {
        outputs.push(("spike".into(), s));
    }
    for i in 0..der.d.rows {
        for j in 0..der.d.cols {
            outputs.push((format!("D[{},{}]", step.state_name(i), step.state_name(j)), der.d.get(i, j)));
        }
    }
    for i in 0..der.df.rows {
        for j in 0..der.df.cols {
            outputs.push((format!("Df[{},{}]", step.state_name(i), step.input_name(j)), der.df.get(i, j)));
        }
    }
    let s = &*step;
    let name = |op: Op| -> Option<String> {
        match op {
            Op::Param(k) => Some(s.param_name(k as usize).to_string()),
            Op::State(k) => Some(s.state_name(k as usize).to_string()),
            Op::Input(k) => Some(s.input_name(k as usize).to_string()),
            _ => None,
        }
    };
    format!("; model {} ({})\n{}", s.model.name, s.method.name(), crate::ir::print::to_text_with(&s.graph, &outputs, &name))
}
