//! Checking one `connect` of a network, phase by phase: its endpoints, its clauses, the
//! target port, the synapse, the topology, the initial weights, the delay and the name.

use super::*;

/// The clauses of one connection, each given at most once.
#[derive(Default)]
struct Clauses<'c> {
    synapse: Option<(&'c ast::Ident, &'c Vec<ast::Setting>)>,
    topology: Option<&'c ast::Topology>,
    init: Option<&'c ast::Expr>,
    trainable: bool,
    bounds: Option<&'c ast::Bounds>,
    dropout: Option<&'c ast::Expr>,
    batch_norm: Option<Span>,
    no_self: bool,
    bias: bool,
    delay: Option<&'c ast::Expr>,
    adapter: Option<&'c ast::Expr>,
    name: Option<&'c ast::Ident>,
    sign: Option<ast::Sign>,
}

/// The synapse of a projection and the params set for it.
type SynapseUse = (ModelId, Vec<(SymId, Init)>);

impl NetCx<'_, '_> {
    pub(super) fn connect(&mut self, c: &ast::Connect, earlier: &[Projection]) -> Option<Projection> {
        let (from, from_state, to) = self.endpoints(c)?;
        let cl = self.clauses(c)?;
        if cl.bias {
            // Parsed but never applied until 2026-12-05: a network with it ran without the
            // bias, silently. Refused until the runtime adds one.
            let span = c.clauses.iter().find(|sc| matches!(sc.clause, ConnClause::Bias)).map_or(c.span, |sc| sc.span);
            self.diags.push(
                Diagnostic::error("E0422", span, "a connection bias is not supported yet")
                    .with_label("the runtime would run this connection without it")
                    .with_help("give the target model a `param` for it (e.g. `dv/dt = (-v + I + b) / tau`), or add a constant with `drive POP.PORT = VALUE`"),
            );
            return None;
        }
        if let Some(span) = cl.batch_norm {
            // The current normalised is what the weights deliver each step: a synapse
            // model's state or a delay ring would carry it elsewhere first.
            let clash = c.clauses.iter().find(|sc| matches!(sc.clause, ConnClause::Via { .. } | ConnClause::Delay(_)));
            if let Some(sc) = clash {
                let what = if matches!(sc.clause, ConnClause::Via { .. }) { "a synapse model (`via`)" } else { "a `delay`" };
                self.diags.push(
                    Diagnostic::error("E0453", span, format!("`batch_norm` on a connection with {what} is not supported"))
                        .with_label("normalises the current the weights deliver in the same step")
                        .with_related(sc.span, "this clause")
                        .with_help("put the batch norm on a direct, undelayed connection (`connect A -> B.I dense trainable batch_norm`)"),
                );
                return None;
            }
        }
        let port = self.target_port(c, to, cl.synapse)?;
        let port_dim = self.port_dim(c, from, to, port, from_state.as_ref())?;
        let (synapse, weight_dim) = match cl.synapse {
            None => (None, port_dim),
            Some((sid, settings)) => {
                let (syn, w) = self.synapse(c, to, sid, settings, port_dim)?;
                (Some(syn), w)
            }
        };
        let topology = self.topology(c, from, to, cl.topology)?;
        let init = self.weights(c, cl.init, cl.sign, weight_dim, from, to)?;
        if cl.no_self && Source::Pop(to) != from {
            self.diags.push(
                Diagnostic::warning("W0402", c.span, "`no_self` has no effect here")
                    .with_label("source and target are different populations"),
            );
        }
        let delay = match cl.delay {
            Some(e) => Some(self.delay(e, from, to)?),
            None => None,
        };
        if let Topology::Conv(shape) = &topology {
            self.conv_clauses(c, shape, init.as_ref(), delay.as_ref(), cl.trainable)?;
        }
        let adapter = match cl.adapter {
            Some(e) => Some(self.adapter_rank(e, &topology)?),
            None => None,
        };
        let bounds = match cl.bounds {
            Some(b) => Some(self.weight_bounds(b, weight_dim, init.as_ref())?),
            None => None,
        };
        let dropout = match cl.dropout {
            Some(e) => Some(self.dropout(e, delay.as_ref())?),
            None => None,
        };
        let name = self.projection_name(c, from, to, cl.name, earlier)?;
        Some(Projection {
            name,
            from,
            from_state: from_state.map(|(n, _)| n),
            to,
            port,
            synapse,
            topology,
            init,
            weight_dim,
            trainable: cl.trainable,
            bounds,
            dropout,
            batch_norm: cl.batch_norm.is_some(),
            no_self: cl.no_self,
            bias: cl.bias,
            delay,
            adapter,
            sign: cl.sign,
            span: c.span,
        })
    }

    /// `trainable bounds (lo, hi)` on the weights: constants of their dimension that
    /// contain a known initial weight (E0450, E0451).
    fn weight_bounds(&mut self, b: &ast::Bounds, weight_dim: Dim, init: Option<&SynInit>) -> Option<(f64, f64)> {
        let bounds = super::super::bounds::fold_bounds(b, weight_dim, &self.scope.fns, "the weights", self.diags)?;
        if let Some(SynInit::Draw(i)) = init {
            super::super::bounds::check_initial(i, bounds, b.span, b.span, "the weights", self.diags)?;
        }
        Some(bounds)
    }

    /// `dropout P`: a constant probability in [0, 1), on a connection without delay
    /// (E0452).
    fn dropout(&mut self, e: &ast::Expr, delay: Option<&SynInit>) -> Option<f64> {
        let (p, d) = self.constant(e)?;
        if !d.is_dimensionless() || !(0.0..1.0).contains(&p) {
            self.diags.push(
                Diagnostic::error("E0452", e.span, "a dropout probability must be a number in [0, 1)")
                    .with_label(if d.is_dimensionless() { format!("found {p}") } else { format!("found a quantity of dimension {d}") }),
            );
            return None;
        }
        if delay.is_some() {
            self.diags.push(
                Diagnostic::error("E0452", e.span, "`dropout` on a connection with a `delay` is not supported")
                    .with_label("the mask would have to travel with the delayed values")
                    .with_help("drop the delay, or put the dropout on an undelayed connection"),
            );
            return None;
        }
        Some(p)
    }

    /// The source (an input, a population or, as `rec.v`, a state of one with its
    /// dimension) and the target population.
    fn endpoints(&mut self, c: &ast::Connect) -> Option<(Source, Option<(String, Dim)>, usize)> {
        let from = if let Some(i) = self.inputs.iter().position(|i| i.name == c.from.pop.name) {
            if let Some(p) = &c.from.port {
                self.diags.push(Diagnostic::error("E0408", p.span, "an input has no ports").with_label("remove this"));
                return None;
            }
            Source::Input(i)
        } else {
            Source::Pop(self.find_pop(&c.from.pop)?)
        };
        // `rec.v`: a state of the source, with its dimension.
        let from_state = match (&c.from.port, from) {
            (Some(st), Source::Pop(p)) => Some(self.source_state(p, st)?),
            _ => None,
        };
        if self.inputs.iter().any(|i| i.name == c.to.pop.name) {
            self.diags.push(
                Diagnostic::error("E0411", c.to.pop.span, format!("`{}` is an input and cannot receive connections", c.to.pop.name))
                    .with_label("target is an input"),
            );
            return None;
        }
        let to = self.find_pop(&c.to.pop)?;
        if let (Some(st), true) = (&c.from.port, from_state.is_some() && self.pops[to].kind != PopKind::Readout) {
            self.diags.push(
                Diagnostic::error("E0420", st.span, format!("only a readout can read the state `{}` of `{}`", st.name, c.from.pop.name))
                    .with_label("a state read by a layer")
                    .with_related(c.to.span, "this is a layer")
                    .with_help(format!("connect the spikes (`connect {} -> ...`), or make the target a `readout`", c.from.pop.name)),
            );
            return None;
        }
        Some((from, from_state, to))
    }

    /// Clauses: each at most once, one topology.
    fn clauses<'c>(&mut self, c: &'c ast::Connect) -> Option<Clauses<'c>> {
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        let mut cl = Clauses::default();
        for sc in &c.clauses {
            let slot = match &sc.clause {
                ConnClause::Topology(_) => "connectivity",
                ConnClause::Init(_) => "init",
                ConnClause::Sign(_) => "sign",
                _ => sc.keyword,
            };
            if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == slot) {
                self.diags.push(
                    Diagnostic::error("E0412", sc.span, format!("`{}` conflicts with an earlier clause", sc.keyword))
                        .with_label(format!("a connection has one {slot}"))
                        .with_related(*prev, "earlier clause"),
                );
                return None;
            }
            seen.push((slot, sc.span));
            match &sc.clause {
                ConnClause::Via { synapse: s, settings } => cl.synapse = Some((s, settings)),
                ConnClause::Topology(t) => cl.topology = Some(t),
                ConnClause::Init(e) => cl.init = Some(e),
                ConnClause::Trainable(b) => {
                    cl.trainable = true;
                    cl.bounds = b.as_ref();
                }
                ConnClause::Dropout(e) => cl.dropout = Some(e),
                ConnClause::BatchNorm => cl.batch_norm = Some(sc.span),
                ConnClause::NoSelf => cl.no_self = true,
                ConnClause::Bias => cl.bias = true,
                ConnClause::Delay(e) => cl.delay = Some(e),
                ConnClause::Adapter(e) => cl.adapter = Some(e),
                ConnClause::As(n) => cl.name = Some(n),
                ConnClause::Sign(s) => cl.sign = Some(*s),
            }
        }
        Some(cl)
    }

    /// The port: as written, else the synapse's output name, else the only input.
    fn target_port(&mut self, c: &ast::Connect, to: usize, synapse: Option<(&ast::Ident, &Vec<ast::Setting>)>) -> Option<Option<SymId>> {
        let via_output = synapse.and_then(|(id, _)| self.program.model(&id.name)).and_then(|m| m.output.as_ref()).map(|(n, _)| n.clone());
        if synapse.is_some() && self.pops[to].model == PopModel::Linear {
            self.diags.push(
                Diagnostic::error("E0408", c.to.span, format!("`{}` is a `Linear` readout: it takes weights directly", c.to.pop.name))
                    .with_label("no synapse can drive a `Linear` readout")
                    .with_help("remove the `via` clause"),
            );
            return None;
        }
        self.port(to, &c.to, via_output.as_deref())
    }

    /// The dimension a weight brings to the port (without a synapse: the weights').
    fn port_dim(&mut self, c: &ast::Connect, from: Source, to: usize, port: Option<SymId>, from_state: Option<&(String, Dim)>) -> Option<Dim> {
        let port_dim = match (self.pops[to].model, port) {
            (PopModel::Model(mid), Some(p)) => self.program.models[mid].symbols[p].dim,
            _ => Dim::ONE,
        };
        // A state source is a value, not an event: weights convert its unit to the
        // port's, and there is no synapse (`on pre` needs spikes) and no sparse kernel.
        let Some((_, state_dim)) = from_state else {
            return match self.sent_value(from) {
                Some(sent) => self.weight_dim_for_sent(c, sent, port_dim),
                None => Some(port_dim),
            };
        };
        let bad = c.clauses.iter().find(|sc| {
            matches!(sc.clause, ConnClause::Via { .. } | ConnClause::Delay(_))
                || matches!(&sc.clause, ConnClause::Topology(t) if !matches!(t, ast::Topology::Dense))
        });
        if let Some(sc) = bad {
            self.diags.push(
                Diagnostic::error("E0420", sc.span, format!("a connection from a state is dense, without synapse or delay: `{}` does not apply", sc.keyword))
                    .with_label("needs spikes")
                    .with_related(c.from.span, "reads a state, not spikes"),
            );
            return None;
        }
        Some(port_dim.div(*state_dim))
    }

    /// The synapse `via sid { settings }` driving a port of dimension `port_dim`, and
    /// the dimension of the weights it solves.
    fn synapse(&mut self, c: &ast::Connect, to: usize, sid: &ast::Ident, settings: &[ast::Setting], port_dim: Dim) -> Option<(SynapseUse, Dim)> {
        let mid = self.model_by_name(sid, ast::ModelKind::Synapse)??;
        let program = self.program;
        let model = &program.models[mid];
        let settings = self.settings_for(model, settings, None)?;
        for (psid, s) in model.params() {
            if s.value.is_none() && !settings.iter().any(|(x, _)| *x == psid) {
                self.diags.push(
                    Diagnostic::error("E0407", sid_span(c), format!("param `{}` of `{}` has no default and is not set", s.name, model.name))
                        .with_label(format!("add `{} = ...` in the braces after `via {}`", s.name, model.name))
                        .with_related(s.span, "declared here"),
                );
                return None;
            }
        }
        let (out_port, out) = model.output.as_ref()?;
        let out_dim = match out.ty {
            Ty::Num(d) => d,
            Ty::Bool => return None,
        };
        let w = match model.weight_dim {
            Some(w) => Some(w),
            None => out_dim.solve_weight(port_dim),
        };
        let ok = w.and_then(|w| out_dim.substitute_weight(w)) == Some(port_dim);
        if !ok {
            let dg = Diagnostic::error("E0413", sid.span, format!("`{}` cannot drive port `{}`", sid.name, c.to.port.as_ref().map(|p| p.name.as_str()).unwrap_or(out_port)))
                .with_label("its output has another dimension")
                .with_related(c.to.span, format!("this port has dimension {port_dim}"));
            self.diags.push(dim_mismatch_notes(dg, &format!("the synapse's `output {out_port}`"), out_dim, "the port", port_dim));
            return None;
        }
        self.post_reads(sid, model, to)?;
        Some(((mid, settings), w.unwrap_or(port_dim)))
    }

    /// Postsynaptic reads (`v_post`) must exist in the target with that dimension.
    fn post_reads(&mut self, sid: &ast::Ident, model: &Model, to: usize) -> Option<()> {
        let PopModel::Model(tm) = self.pops[to].model else { return Some(()) };
        let target = &self.program.models[tm];
        for s in model.symbols.iter().filter(|s| s.kind == SymKind::Post) {
            let base = s.name.trim_end_matches("_post");
            match target.sym(base).map(|i| &target.symbols[i]) {
                Some(t) if t.dim == s.dim => {}
                other => {
                    let msg = match other {
                        Some(t) => format!("`{}` reads `{base}` of `{}` as {}, but it has dimension {}", sid.name, target.name, s.dim, t.dim),
                        None => format!("`{}` reads `{}`, but `{}` has no `{base}`", sid.name, s.name, target.name),
                    };
                    self.diags.push(Diagnostic::error("E0414", sid.span, msg).with_label("postsynaptic variable mismatch").with_related(target.span, "target model"));
                    return None;
                }
            }
        }
        Some(())
    }

    fn topology(&mut self, c: &ast::Connect, from: Source, to: usize, topology: Option<&ast::Topology>) -> Option<Topology> {
        Some(match topology {
            None | Some(ast::Topology::Dense) => Topology::Dense,
            Some(ast::Topology::OneToOne) => {
                let n_from = match from {
                    Source::Input(i) => self.inputs[i].size,
                    Source::Pop(p) => self.pops[p].size,
                };
                if n_from != self.pops[to].size {
                    self.diags.push(
                        Diagnostic::error("E0415", c.span, "`one_to_one` needs populations of the same size")
                            .with_label(format!("{} -> {} neurons", n_from, self.pops[to].size)),
                    );
                    return None;
                }
                Topology::OneToOne
            }
            Some(ast::Topology::Conv { pool, args }) => self.conv_topology(c, *pool, args, from, to)?,
            Some(ast::Topology::File { path }) => {
                if let Some(sc) = c.clauses.iter().find(|sc| matches!(sc.clause, ConnClause::NoSelf)) {
                    self.diags.push(
                        Diagnostic::error("E0412", sc.span, "`no_self` conflicts with `from`")
                            .with_label("a file gives every synapse")
                            .with_help("leave the self-connections out of the file"),
                    );
                    return None;
                }
                // Relative to the file that names it, as an `import` is.
                let p = std::path::Path::new(path);
                Topology::File { path: if p.is_absolute() { path.clone() } else { self.dir.join(p).display().to_string() } }
            }
            Some(ast::Topology::Sparse { p }) if mentions_any(p, &|n| self.index_var(n, from, to).is_some()) => {
                match self.syn_value(p, Dim::ONE, "a connection probability", from, to)? {
                    SynInit::Expr(e) => Topology::SparseExpr { p: e },
                    SynInit::Draw(_) => unreachable!("an expression of the indices"),
                }
            }
            Some(ast::Topology::Sparse { p }) | Some(ast::Topology::Procedural { p }) => {
                let (v, d) = self.constant(p)?;
                if !d.is_dimensionless() || !(0.0..=1.0).contains(&v) {
                    self.diags.push(
                        Diagnostic::error("E0403", p.span, "a connection probability must be between 0 and 1")
                            .with_label(if d.is_dimensionless() { format!("found {v}") } else { format!("found dimension {d}") }),
                    );
                    return None;
                }
                if matches!(topology, Some(ast::Topology::Sparse { .. })) { Topology::Sparse { p: v } } else { Topology::Procedural { p: v } }
            }
        })
    }

    /// The initial weights (`init` or `weight`), which a weight with a unit needs, and
    /// which a sign clause constrains.
    fn weights(&mut self, c: &ast::Connect, init: Option<&ast::Expr>, sign: Option<ast::Sign>, weight_dim: Dim, from: Source, to: usize) -> Option<Option<SynInit>> {
        let init = match init {
            Some(e) => Some(self.syn_value(e, weight_dim, "the weights", from, to)?),
            None if !weight_dim.is_dimensionless() => {
                let file = matches!(c.clauses.iter().find(|sc| matches!(sc.clause, ConnClause::Topology(_))).map(|sc| &sc.clause), Some(ConnClause::Topology(ast::Topology::File { .. })));
                self.diags.push(
                    Diagnostic::error("E0418", c.span, format!("the weights of this connection have unit {weight_dim} and need a value"))
                        .with_label("no `weight` or `init`")
                        .with_help(if file {
                            "add e.g. `weight 1 nS`: a file's `weight` array is in units of it"
                        } else {
                            "add e.g. `weight 6 nS` or `init normal(1 nS, 0.1 nS)`"
                        }),
                );
                return None;
            }
            None => None,
        };
        // A fixed weight of the other sign is a contradiction, not something to flip.
        if let (Some(s), Some(v)) = (sign, init.as_ref().and_then(SynInit::constant)) {
            let wrong = match s {
                ast::Sign::Excitatory => v < 0.0,
                ast::Sign::Inhibitory => v > 0.0,
            };
            if wrong {
                let (sc, word) = c.clauses.iter().find_map(|sc| matches!(sc.clause, ConnClause::Sign(_)).then_some((sc.span, sc.keyword))).expect("sign clause");
                self.diags.push(
                    Diagnostic::error("E0419", sc, format!("a fixed weight of {v} cannot be `{word}`"))
                        .with_label(if word == "excitatory" { "weights kept >= 0" } else { "weights kept <= 0" })
                        .with_help("give the weight the sign of the clause, or draw it with `init`"),
                );
                return None;
            }
        }
        Some(init)
    }

    /// A delay in seconds: one for all synapses, drawn per synapse from `U(low, high)`,
    /// or an expression of the indices.
    fn delay(&mut self, e: &ast::Expr, from: Source, to: usize) -> Option<SynInit> {
        if let ExprKind::Call(call) = &e.kind
            && call.callee.name == "normal"
        {
            self.diags.push(
                Diagnostic::error("E0403", e.span, "a delay distribution must be bounded")
                    .with_label("a normal draw can be negative or arbitrarily long")
                    .with_help("draw it with `U(low, high)`"),
            );
            return None;
        }
        let is_draw = matches!(&e.kind, ExprKind::Call(call) if matches!(call.callee.name.as_str(), "U" | "uniform"));
        if !is_draw && !mentions_any(e, &|n| self.index_var(n, from, to).is_some()) {
            // One delay for every synapse.
            let (v, d) = self.constant(e)?;
            if d != Dim::TIME || v < 0.0 {
                self.diags.push(
                    Diagnostic::error("E0403", e.span, "a delay must be a non-negative time")
                        .with_label(if d == Dim::TIME { format!("found {v} s") } else { format!("expected s, found {d}") }),
                );
                return None;
            }
            return Some(SynInit::Draw(Init::Const(v)));
        }
        let v = self.syn_value(e, Dim::TIME, "a delay", from, to)?;
        let low = match &v {
            SynInit::Draw(Init::Const(v)) => Some(*v),
            SynInit::Draw(Init::Uniform { low, .. }) => Some(*low),
            _ => None,
        };
        if let Some(low) = low.filter(|v| *v < 0.0) {
            self.diags.push(Diagnostic::error("E0403", e.span, "a delay must be a non-negative time").with_label(format!("found {low} s")));
            return None;
        }
        Some(v)
    }

    /// The rank of `adapter rank R`: a whole number of at least 1, on a projection with
    /// a weight matrix (not one-to-one).
    fn adapter_rank(&mut self, e: &ast::Expr, topology: &Topology) -> Option<usize> {
        let (v, d) = self.constant(e)?;
        if !d.is_dimensionless() || v < 1.0 || v.fract() != 0.0 || v > f64::from(u32::MAX) {
            self.diags.push(
                Diagnostic::error("E0403", e.span, "an adapter's rank must be a whole number of at least 1")
                    .with_label(if d.is_dimensionless() { format!("found {v}") } else { format!("found dimension {d}") }),
            );
            return None;
        }
        if *topology == Topology::OneToOne {
            self.diags.push(
                Diagnostic::error("E0403", e.span, "a one-to-one connection has no weight matrix to adapt")
                    .with_label("`adapter` needs dense, sparse or file connectivity"),
            );
            return None;
        }
        Some(v as usize)
    }

    /// A value per synapse of dimension `want`: an initialiser (a constant, `U(a, b)`,
    /// `normal(m, s)`), or an expression of the synapse's indices `i` and `j`, the sizes
    /// `N_pre` and `N_post`, and the neurons' params (`x_pre`, `x_post`).
    fn syn_value(&mut self, e: &ast::Expr, want: Dim, what: &str, from: Source, to: usize) -> Option<SynInit> {
        let is_draw = matches!(&e.kind, ExprKind::Call(call) if matches!(call.callee.name.as_str(), "U" | "uniform" | "normal"));
        if is_draw || !mentions_any(e, &|n| self.index_var(n, from, to).is_some()) {
            return Some(SynInit::Draw(self.init(e, want, what)?));
        }
        let names = ast_names(e);
        let mut vars: Vec<IndexVar> = Vec::new();
        let mut symbols: Vec<Symbol> = Vec::new();
        for n in names {
            if let Some((var, dim)) = self.index_var(&n, from, to)
                && !vars.contains(&var)
            {
                vars.push(var);
                symbols.push(Symbol { name: n, kind: SymKind::Param, dim, value: None, trainable: false, bounds: None, span: e.span });
            }
        }
        let mut ecx = ExprCx::new(&symbols, &self.scope.fns);
        ecx.allow_random = false;
        let (t, d) = ecx.num(e, self.diags)?;
        if !dim_ok(d, want, t.const_value().unwrap_or(1.0)) {
            self.diags.push(Diagnostic::error("E0201", e.span, format!("wrong dimension for {what}")).with_label(format!("expected {want}, found {d}")));
            return None;
        }
        Some(SynInit::Expr(Arc::new(IndexExpr { expr: t, vars })))
    }

    /// What name `n` reads in an expression of a synapse from `from` to `to`: an index, a
    /// size, or a param of one of its neurons (`NAME_pre`, `NAME_post`); with its dimension.
    fn index_var(&self, n: &str, from: Source, to: usize) -> Option<(IndexVar, Dim)> {
        let param = |pop: usize, name: &str| -> Option<Dim> {
            let PopModel::Model(mid) = self.pops[pop].model else { return None };
            let m = &self.program.models[mid];
            m.params().find(|(_, s)| s.name == name).map(|(_, s)| s.dim)
        };
        match n {
            "i" => Some((IndexVar::Pre, Dim::ONE)),
            "j" => Some((IndexVar::Post, Dim::ONE)),
            "N_pre" => Some((IndexVar::NPre, Dim::ONE)),
            "N_post" => Some((IndexVar::NPost, Dim::ONE)),
            _ => {
                if let Some(base) = n.strip_suffix("_pre")
                    && let Source::Pop(p) = from
                {
                    return param(p, base).map(|d| (IndexVar::PreParam(base.to_string()), d));
                }
                let base = n.strip_suffix("_post")?;
                param(to, base).map(|d| (IndexVar::PostParam(base.to_string()), d))
            }
        }
    }

    /// `as NAME`, else `FROM_to_TO`; unique among the network's projections.
    fn projection_name(&mut self, c: &ast::Connect, from: Source, to: usize, name: Option<&ast::Ident>, earlier: &[Projection]) -> Option<String> {
        let from_name = match from {
            Source::Input(i) => self.inputs[i].name.clone(),
            Source::Pop(p) => self.pops[p].name.clone(),
        };
        let pname = name.map(|n| n.name.clone()).unwrap_or_else(|| format!("{}_to_{}", from_name, self.pops[to].name));
        if let Some(prev) = earlier.iter().find(|p| p.name == pname) {
            self.diags.push(
                Diagnostic::error("E0107", name.map(|n| n.span).unwrap_or(c.span), format!("two connections are named `{pname}`"))
                    .with_label("second connection with this name")
                    .with_related(prev.span, "first one")
                    .with_help("name them with `as NAME`"),
            );
            return None;
        }
        Some(pname)
    }
}

fn sid_span(c: &ast::Connect) -> Span {
    c.clauses.iter().find(|k| matches!(k.clause, ConnClause::Via { .. })).map(|k| k.span).unwrap_or(c.span)
}

/// The identifiers an expression reads, in order of first use.
fn ast_names(e: &ast::Expr) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    visit_idents(e, &mut |n| {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    });
    out
}

/// Whether an expression reads a name that `is` accepts.
fn mentions_any(e: &ast::Expr, is: &dyn Fn(&str) -> bool) -> bool {
    ast_names(e).iter().any(|n| is(n))
}

fn visit_idents(e: &ast::Expr, f: &mut dyn FnMut(&str)) {
    crate::deep(|| match &e.kind {
        ExprKind::Var(id) => f(&id.name),
        ExprKind::Call(call) => call.args.iter().for_each(|a| visit_idents(&a.value, f)),
        ExprKind::Unary(_, a) => visit_idents(a, f),
        ExprKind::Binary(_, a, b) => {
            visit_idents(a, f);
            visit_idents(b, f);
        }
        ExprKind::If { cond, then, otherwise } => {
            visit_idents(cond, f);
            visit_idents(then, f);
            visit_idents(otherwise, f);
        }
        _ => {}
    })
}
