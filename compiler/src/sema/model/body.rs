//! Phases 3 and 4 of checking a model: its equations and events (one method per kind
//! of item), then the rules about the whole model.

use super::*;

/// Phase 3 of a pass: the equations and events of a model, checked against its symbols
/// (final after phases 1 and 2); phase 4 then checks the whole model.
pub(super) struct BodyCx<'a> {
    m: &'a ast::Model,
    is_syn: bool,
    symbols: &'a [Symbol],
    fns: &'a FnTable<'a>,
    local_fns: &'a FnTable<'a>,
    cx: ExprCx<'a>,
    ode_spans: HashMap<SymId, Span>,
    spike_written: bool,
    /// The `refractory` item and the states it names to clamp (resolved in phase 4).
    refractory: Option<(Refractory, Vec<ast::Ident>)>,
    body: Body,
}

/// What phases 3 and 4 give a [`Model`] besides its symbols.
pub(super) struct Body {
    pub odes: Vec<(SymId, TExpr)>,
    pub spike: Option<SpikeDef>,
    pub on_spike: Vec<Update>,
    pub on_pre: Vec<Update>,
    pub on_post: Vec<Update>,
    pub reset_detached: bool,
    pub refractory: Option<Refractory>,
    pub method: Option<Method>,
    pub output: Option<(String, TExpr)>,
    pub per_synapse: bool,
}

impl<'a> BodyCx<'a> {
    /// `weight_open` and `solved`: the state of the weight dimension after phase 2.
    pub fn new(
        m: &'a ast::Model,
        symbols: &'a [Symbol],
        index: &'a SymIndex,
        fns: &'a FnTable<'a>,
        local_fns: &'a FnTable<'a>,
        file_method: Option<Method>,
        (weight_open, solved): (bool, Option<Dim>),
    ) -> BodyCx<'a> {
        let mut cx = ExprCx::new(symbols, fns).with_index(index);
        cx.local_fns = local_fns.clone();
        cx.weight_open = weight_open;
        if let Some(w) = solved {
            cx.weight_solution = Some(w);
        }
        BodyCx {
            m,
            is_syn: m.kind == ast::ModelKind::Synapse,
            symbols,
            fns,
            local_fns,
            cx,
            ode_spans: HashMap::new(),
            spike_written: false,
            refractory: None,
            body: Body {
                odes: Vec::new(),
                spike: None,
                on_spike: Vec::new(),
                on_pre: Vec::new(),
                on_post: Vec::new(),
                reset_detached: false,
                refractory: None,
                method: file_method,
                output: None,
                per_synapse: false,
            },
        }
    }

    /// Phases 3 and 4. Returns the model's body and the weight dimension solved, if any.
    pub fn check(mut self, diags: &mut Vec<Diagnostic>) -> (Body, Option<Dim>) {
        let m = self.m;
        for item in &m.body {
            self.item(item, diags);
        }
        self.whole_model(diags);
        (self.body, self.cx.weight_solution)
    }

    /// 3. Equations and events.
    fn item(&mut self, item: &ModelItem, diags: &mut Vec<Diagnostic>) {
        match item {
            ModelItem::Decl(_) | ModelItem::Function(_) => {}
            ModelItem::Ode { state, rhs, span } => self.ode(state, rhs, *span, diags),
            ModelItem::Spike { condition, surrogate, span } => self.spike(condition, surrogate.as_ref(), *span, diags),
            ModelItem::On { event, body, detach, .. } => self.on(event, body, *detach, diags),
            ModelItem::Reset { target, value, detach, span } => self.reset(target, value, *detach, *span, diags),
            ModelItem::Refractory { period, clamp, span } => self.refractory(period, clamp, *span, diags),
            ModelItem::Method { method: id, .. } => self.body.method = method_of(id, diags).or(self.body.method),
            ModelItem::Output { port, value, span } => self.output(port, value, *span, diags),
            ModelItem::PerSynapse { .. } => self.body.per_synapse = true,
        }
    }

    /// `dx/dt = rhs`.
    fn ode(&mut self, state: &ast::Ident, rhs: &ast::Expr, span: Span, diags: &mut Vec<Diagnostic>) {
        let symbols = self.symbols;
        let Some(sid) = symbols.iter().position(|s| s.name == state.name) else {
            let mut d = Diagnostic::error("E0101", state.span, format!("unknown state `{}` in an equation", state.name))
                .with_label("not declared");
            let states: Vec<&str> = symbols.iter().filter(|s| s.kind == SymKind::State).map(|s| s.name.as_str()).collect();
            d = match nearest(&state.name, states) {
                Some(n) => d.with_help(format!("did you mean `{n}`?")),
                None => d.with_help(format!("declare it: `state {}: <unit> = <initial value>`", state.name)),
            };
            diags.push(d);
            return;
        };
        let s = &symbols[sid];
        if s.kind != SymKind::State {
            diags.push(
                Diagnostic::error("E0305", state.span, format!("`{}` is {}, and only a state can have an equation", state.name, kind_phrase(s.kind)))
                    .with_label("not a state")
                    .with_related(s.span, "declared here")
                    .with_help(format!("declare it with `state {}` to make it evolve in time", state.name)),
            );
            return;
        }
        if let Some(prev) = self.ode_spans.get(&sid) {
            diags.push(
                Diagnostic::error("E0306", span, format!("`{}` has two equations", state.name))
                    .with_label("second equation")
                    .with_related(*prev, "first equation"),
            );
            return;
        }
        self.ode_spans.insert(sid, span);
        let Some((t, d)) = self.cx.num(rhs, diags) else { return };
        let want = s.dim.div(Dim::TIME);
        if !is_zero_literal(&t) && !self.cx.same_dim(d, want) {
            let dg = Diagnostic::error("E0201", rhs.span, format!("the right side of `d{}/dt` has the wrong dimension", state.name))
                .with_label(format!("expected {want}, found {d}"))
                .with_related(s.span, format!("`{}` has dimension {}", state.name, s.dim))
                .with_note(format!("`d{}/dt` must have the dimension of `{}` per time: {want}", state.name, state.name));
            let dg = if d == s.dim { dg.with_help("divide by a time constant, e.g. `(-v + I) / tau`") } else { dg };
            diags.push(dg);
            return;
        }
        self.body.odes.push((sid, t));
    }

    /// `spike when condition surrogate f(...)`.
    fn spike(&mut self, condition: &ast::Expr, surrogate: Option<&ast::Call>, span: Span, diags: &mut Vec<Diagnostic>) {
        if self.is_syn {
            diags.push(Diagnostic::error("E0307", span, "a synapse cannot spike").with_label("only neurons have `spike when`"));
            return;
        }
        let first = self.spike_written;
        self.spike_written = true;
        if first {
            diags.push(
                Diagnostic::error("E0306", span, "a neuron has one spike condition")
                    .with_label("second `spike when`"),
            );
            return;
        }
        self.cx.allow_random = false;
        let cond = self.cx.boolean(condition, diags);
        self.cx.allow_random = true;
        let sg = check_surrogate(surrogate, self.fns, self.local_fns, diags);
        if let (Some(condition), Some(surrogate)) = (cond, sg) {
            self.body.spike = Some(SpikeDef { condition, surrogate, span });
        }
    }

    /// `on spike { ... }` (neurons), `on pre { ... }` or `on post { ... }` (synapses).
    fn on(&mut self, event: &ast::Ident, body: &[ast::Stmt], detach: bool, diags: &mut Vec<Diagnostic>) {
        let (expected, list) = match (self.is_syn, event.name.as_str()) {
            (true, "post") => ("post", &mut self.body.on_post),
            (true, _) => ("pre", &mut self.body.on_pre),
            (false, _) => ("spike", &mut self.body.on_spike),
        };
        if event.name != expected {
            let known = if self.is_syn { "`on pre` and `on post`" } else { "`on spike`" };
            diags.push(
                Diagnostic::error("E0308", event.span, format!("unknown event `{}`", event.name))
                    .with_label(format!("a {} reacts to {known}", if self.is_syn { "synapse" } else { "neuron" }))
                    .with_help(format!("write `on {expected} {{ ... }}`")),
            );
            return;
        }
        if detach {
            self.body.reset_detached = true;
        }
        for st in body {
            // A synapse's events may change its weight (plasticity, `net::plastic`).
            if let Some(u) = check_update(&mut self.cx, self.symbols, &st.target, st.op, &st.value, st.span, self.is_syn, diags) {
                list.push(u);
            }
        }
    }

    /// `reset x = value`: an `on spike { x = value }`.
    fn reset(&mut self, target: &ast::Ident, value: &ast::Expr, detach: bool, span: Span, diags: &mut Vec<Diagnostic>) {
        if self.is_syn {
            diags.push(Diagnostic::error("E0307", span, "a synapse cannot have a reset").with_label("use `on pre { ... }`"));
            return;
        }
        self.body.reset_detached |= detach;
        if let Some(u) = check_update(&mut self.cx, self.symbols, target, ast::AssignOp::Set, value, span, false, diags) {
            self.body.on_spike.push(u);
        }
    }

    /// `refractory period [clamp x, y]`; the clamped states are resolved in phase 4.
    fn refractory(&mut self, period: &ast::Expr, clamp: &[ast::Ident], span: Span, diags: &mut Vec<Diagnostic>) {
        if self.is_syn {
            diags.push(Diagnostic::error("E0307", span, "a synapse cannot be refractory").with_label("only neurons are refractory"));
            return;
        }
        self.cx.allow_random = false;
        let p = self.cx.num(period, diags);
        self.cx.allow_random = true;
        let Some((p, d)) = p else { return };
        if d != Dim::TIME {
            diags.push(
                Diagnostic::error("E0201", period.span, "a refractory period must be a time")
                    .with_label(format!("expected s, found {d}"))
                    .with_help("e.g. `refractory 5 ms`"),
            );
            return;
        }
        self.refractory = Some((Refractory { period: p, clamp: Vec::new(), span }, clamp.to_vec()));
    }

    /// `output port = value`: what a synapse adds to its target's port, or what a
    /// neuron sends through its projections instead of a bare spike (a graded event
    /// `value * spike` for a spiking neuron, the value every step for one without
    /// `spike when`). A neuron's sent value is read from its stored state, like the
    /// spike: it may not read an input (E0317) or draw random numbers (E0208).
    fn output(&mut self, port: &ast::Ident, value: &ast::Expr, span: Span, diags: &mut Vec<Diagnostic>) {
        if self.body.output.is_some() {
            let what = if self.is_syn { "a synapse" } else { "a neuron" };
            diags.push(Diagnostic::error("E0306", span, format!("{what} has one `output`")).with_label("second output"));
            return;
        }
        self.cx.allow_random = self.is_syn;
        let checked = self.cx.num(value, diags);
        self.cx.allow_random = true;
        let Some((t, _)) = checked else { return };
        if !self.is_syn
            && let Some(input) = reads_input(self.symbols, &t)
        {
            diags.push(
                Diagnostic::error("E0317", value.span, format!("the output `{}` reads the input `{}`", port.name, self.symbols[input].name))
                    .with_label("a neuron's output is read from its state")
                    .with_note("it is sent after the step, like a spike, from the states the step stored")
                    .with_help("make it a function of the states and params (e.g. `output r = tanh(x)`)"),
            );
            return;
        }
        self.body.output = Some((port.name.clone(), t));
    }

    /// 4. Whole-model rules.
    fn whole_model(&mut self, diags: &mut Vec<Diagnostic>) {
        let m = self.m;
        let event_targets: Vec<SymId> = self.body.on_spike.iter().chain(&self.body.on_pre).chain(&self.body.on_post).map(|u: &Update| u.target).collect();
        for (sid, s) in self.symbols.iter().enumerate() {
            if s.kind == SymKind::State && !self.ode_spans.contains_key(&sid) && !event_targets.contains(&sid) {
                diags.push(
                    Diagnostic::error("E0309", s.span, format!("state `{}` never changes", s.name))
                        .with_label("no equation and no event updates it")
                        .with_help(format!("add `d{}/dt = ...`, update it in an `on` block, or make it a `param`", s.name)),
                );
            }
        }
        if self.is_syn && self.body.output.is_none() {
            diags.push(
                Diagnostic::error("E0310", m.name.span, format!("synapse `{}` has no `output`", m.name.name))
                    .with_label("it drives nothing")
                    .with_help("add e.g. `output I = g`"),
            );
        }
        if let Some((r, clamp)) = self.refractory.take() {
            self.body.refractory = Some(self.clamped(r, &clamp, diags));
        }
        if !self.spike_written && (!self.body.on_spike.is_empty() || self.body.refractory.is_some()) {
            diags.push(
                Diagnostic::error("E0311", m.name.span, format!("neuron `{}` resets but never spikes", m.name.name))
                    .with_label("no `spike when` condition")
                    .with_help("add e.g. `spike when v > v_th`"),
            );
        }
    }

    /// The states a refractory period holds: those named, else every state the reset sets.
    fn clamped(&self, mut r: Refractory, clamp: &[ast::Ident], diags: &mut Vec<Diagnostic>) -> Refractory {
        if clamp.is_empty() {
            // Default: hold every state that the reset sets.
            let unique = |it: &mut dyn Iterator<Item = SymId>| {
                let mut c: Vec<SymId> = Vec::new();
                it.for_each(|s| if !c.contains(&s) { c.push(s) });
                c
            };
            let on_spike = &self.body.on_spike;
            let mut c = unique(&mut on_spike.iter().filter(|u| u.op == UpdateOp::Set).map(|u| u.target));
            if c.is_empty() {
                c = unique(&mut on_spike.iter().map(|u| u.target));
            }
            r.clamp = c;
        } else {
            for id in clamp {
                match self.symbols.iter().position(|s| s.name == id.name && s.kind == SymKind::State) {
                    Some(sid) => r.clamp.push(sid),
                    None => diags.push(
                        Diagnostic::error("E0101", id.span, format!("`{}` is not a state of this neuron", id.name))
                            .with_label("only states can be clamped"),
                    ),
                }
            }
        }
        r
    }
}

fn check_update(
    cx: &mut ExprCx,
    symbols: &[Symbol],
    target: &ast::Ident,
    op: ast::AssignOp,
    value: &ast::Expr,
    span: Span,
    weight_assignable: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Update> {
    let Some(sid) = symbols.iter().position(|s| s.name == target.name) else {
        let mut d = Diagnostic::error("E0101", target.span, format!("unknown name `{}`", target.name)).with_label("not declared");
        let states: Vec<&str> = symbols.iter().filter(|s| s.kind == SymKind::State).map(|s| s.name.as_str()).collect();
        if let Some(n) = nearest(&target.name, states) {
            d = d.with_help(format!("did you mean `{n}`?"));
        }
        diags.push(d);
        return None;
    };
    let s = &symbols[sid];
    if s.kind != SymKind::State && !(weight_assignable && s.kind == SymKind::Weight) {
        let mut d = Diagnostic::error("E0312", target.span, format!("cannot assign to `{}`: it is {}", target.name, kind_phrase(s.kind)))
            .with_label("only states can be updated by events")
            .with_related(s.span, "declared here");
        if s.kind == SymKind::Param {
            d = d.with_help(format!("declare it `state {}` if it should change", target.name));
        }
        diags.push(d);
        return None;
    }
    let (t, d) = cx.num(value, diags)?;
    let op = match op {
        ast::AssignOp::Set => UpdateOp::Set,
        ast::AssignOp::Add => UpdateOp::Add,
        ast::AssignOp::Sub => UpdateOp::Sub,
        ast::AssignOp::Mul => UpdateOp::Mul,
        ast::AssignOp::Div => UpdateOp::Div,
    };
    let want = if matches!(op, UpdateOp::Mul | UpdateOp::Div) { Dim::ONE } else { s.dim };
    if !(is_zero_literal(&t) && want != Dim::ONE || cx.same_dim(d, want)) {
        let dg = Diagnostic::error("E0201", value.span, format!("cannot update `{}` with a value of dimension {d}", target.name))
            .with_label(format!("expected {want}"))
            .with_related(s.span, format!("`{}` has dimension {}", target.name, s.dim));
        diags.push(dim_mismatch_notes(dg, &format!("`{}`", target.name), s.dim, "the value", d));
        return None;
    }
    Some(Update { target: sid, op, value: t, span })
}

fn check_surrogate(
    call: Option<&ast::Call>,
    global: &FnTable,
    local: &FnTable,
    diags: &mut Vec<Diagnostic>,
) -> Option<Surrogate> {
    let Some(call) = call else {
        // braintools' default surrogate, as in the golden files.
        return Some(Surrogate::Builtin { name: "relu_grad", params: vec![("alpha", 0.3), ("width", 1.0)] });
    };
    let name = call.callee.name.as_str();
    // Arguments of a surrogate are constants.
    let empty: Vec<Symbol> = Vec::new();
    let mut cx = ExprCx::new(&empty, global);
    cx.allow_random = false;
    if let Some(f) = local.get(name).or_else(|| global.get(name)) {
        // A user surrogate: `fn my_sg(x, a) = ...`, called as `surrogate my_sg(a = 2)`;
        // its first parameter is the normalised spike argument.
        if f.params.is_empty() {
            diags.push(
                Diagnostic::error("E0105", call.span, format!("surrogate function `{name}` needs a first parameter for the spike argument"))
                    .with_label("e.g. `fn my_sg(x) = 1 / (1 + abs(x))^2`")
                    .with_related(f.span, "defined here"),
            );
            return None;
        }
        if call.args.len() + 1 != f.params.len() {
            diags.push(
                Diagnostic::error("E0105", call.span, format!("surrogate `{name}` takes {} argument(s) after the spike argument", f.params.len() - 1))
                    .with_label("wrong number of arguments")
                    .with_related(f.span, "defined here"),
            );
            return None;
        }
        let x = Symbol { name: f.params[0].name.clone(), kind: SymKind::Let, dim: Dim::ONE, value: None, trainable: false, bounds: None, span: f.params[0].span };
        let syms = vec![x];
        let mut fcx = ExprCx::new(&syms, global);
        fcx.local_fns = local.clone();
        fcx.allow_random = false;
        // Bind the remaining parameters by rewriting the call: check body with x as symbol 0.
        let wrapped = ast::Call {
            callee: call.callee.clone(),
            args: std::iter::once(ast::Arg {
                name: None,
                value: ast::Expr { kind: ExprKind::Var(f.params[0].clone()), span: call.span },
            })
            .chain(call.args.iter().cloned())
            .collect(),
            span: call.span,
        };
        let body = fcx.expr(&ast::Expr { kind: ExprKind::Call(wrapped), span: call.span }, diags)?;
        if body.ty != Ty::Num(Dim::ONE) {
            diags.push(
                Diagnostic::error("E0313", call.span, "a surrogate must be a dimensionless function of the spike argument")
                    .with_label("not dimensionless"),
            );
            return None;
        }
        return Some(Surrogate::User { name: name.to_string(), body: Box::new(body), arg: 0 });
    }
    if let Some((sname, defaults)) = SURROGATES.iter().find(|(n, _)| *n == name) {
        let mut params: Vec<(&'static str, f64)> = defaults.to_vec();
        let mut ok = true;
        for (i, a) in call.args.iter().enumerate() {
            let slot = match &a.name {
                Some(n) => match defaults.iter().position(|(p, _)| *p == n.name) {
                    Some(j) => j,
                    None => {
                        let names: Vec<&str> = defaults.iter().map(|(p, _)| *p).collect();
                        let mut d = Diagnostic::error("E0105", n.span, format!("surrogate `{name}` has no parameter `{}`", n.name))
                            .with_label(format!("parameters: {}", names.join(", ")));
                        if let Some(s) = nearest(&n.name, names) {
                            d = d.with_help(format!("did you mean `{s}`?"));
                        }
                        diags.push(d);
                        ok = false;
                        continue;
                    }
                },
                None if i < defaults.len() => i,
                None => {
                    diags.push(
                        Diagnostic::error("E0105", a.value.span, format!("surrogate `{name}` takes at most {} argument(s)", defaults.len()))
                            .with_label("extra argument"),
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some(prev) = call.args[..i].iter().position(|b| b.name.as_ref().map(|n| &n.name) == a.name.as_ref().map(|n| &n.name) && a.name.is_some()) {
                diags.push(
                    Diagnostic::error("E0105", a.value.span, format!("`{}` is given twice", defaults[slot].0))
                        .with_label("second value")
                        .with_related(call.args[prev].value.span, "first value"),
                );
                ok = false;
                continue;
            }
            match cx.num(&a.value, diags) {
                Some((t, d)) => match t.const_value() {
                    Some(v) if d.is_dimensionless() => params[slot].1 = v,
                    _ => {
                        diags.push(
                            Diagnostic::error("E0313", a.value.span, "a surrogate parameter must be a dimensionless constant")
                                .with_label("not a dimensionless constant"),
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        return ok.then(|| Surrogate::Builtin { name: sname, params });
    }
    let names: Vec<&str> = SURROGATES.iter().map(|(n, _)| *n).collect();
    let mut d = Diagnostic::error("E0314", call.callee.span, format!("unknown surrogate `{name}`"))
        .with_label(format!("built-in surrogates: {}", names.join(", ")));
    if let Some(n) = nearest(name, names) {
        d = d.with_help(format!("did you mean `{n}`?"));
    } else {
        d = d.with_help("or define one: `fn my_sg(x) = ...` and write `surrogate my_sg()`");
    }
    diags.push(d);
    None
}

/// The first input an expression reads (through `let`s), if any.
fn reads_input(symbols: &[Symbol], e: &TExpr) -> Option<SymId> {
    let mut found = None;
    let mut seen = HashSet::new();
    let mut stack = vec![e.clone()];
    while let Some(e) = stack.pop() {
        e.visit_syms(&mut |s| {
            let sym = &symbols[s];
            match (sym.kind, &sym.value) {
                (SymKind::Input, _) if found.is_none() => found = Some(s),
                (SymKind::Let, Some(v)) if seen.insert(s) => stack.push(v.clone()),
                _ => {}
            }
        });
    }
    found
}
