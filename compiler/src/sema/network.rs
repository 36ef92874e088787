//! Checking `network` blocks against the checked models: populations, ports, sizes,
//! projections, initialisers and the `train { }` block.
//! One `connect` is checked phase by phase in `connect`.

use super::expr::{ExprCx, dim_mismatch_notes};
use super::consts::{Folder, fold_model, problem_diagnostic};
use super::model::Scope;
use std::collections::HashMap;
use super::*;
use crate::diag::{Diagnostic, nearest};
use crate::syntax::ast::{self, ConnClause, ExprKind};

mod connect;
mod sends;
mod conv;
pub use conv::ConvShape;

/// Network-wide settings and the dimension each must have.
/// The largest population or input size (the runtime refuses what will not fit in memory).
const MAX_SIZE: f64 = 1e10;

const NET_SETTINGS: &[(&str, Option<Dim>)] = &[("dt", Some(Dim::TIME)), ("seed", Some(Dim::ONE))];

/// Keys of a `train { }` block. Values are names, numbers or strings; the runtime
/// interprets them (so the CLI and the block share one meaning).
pub const TRAIN_KEYS: &[&str] = &[
    "method", "etrace_decay", "etrace_rank", "optimizer", "lr", "lr_decay", "loss", "task", "data", "epochs", "batch",
    "seq_len", "grad_clip", "weight_decay", "update_every", "seed", "eval_every", "loss_steps",
];

struct NetCx<'p, 'a> {
    program: &'p Program,
    scope: &'p Scope<'a>,
    net: &'p ast::Network,
    inputs: Vec<NetInput>,
    pops: Vec<Population>,
    diags: &'p mut Vec<Diagnostic>,
    /// The directory of the file declaring the network: data files are relative to it.
    dir: &'p std::path::Path,
    /// Per-neuron values from files, for `NetworkDef::data`.
    data: Vec<DataRef>,
}

pub(super) fn check_network(
    net: &ast::Network,
    program: &Program,
    scope: &Scope,
    dir: &std::path::Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<NetworkDef> {
    let n_err = diags.iter().filter(|d| d.is_error()).count();
    let mut cx = NetCx { program, scope, net, inputs: Vec::new(), pops: Vec::new(), diags, dir, data: Vec::new() };
    let mut def = NetworkDef {
        name: net.name.name.clone(),
        span: net.span,
        dt: None,
        seed: None,
        inputs: Vec::new(),
        populations: Vec::new(),
        drives: Vec::new(),
        projections: Vec::new(),
        train: Vec::new(),
        data: Vec::new(),
    };
    // Names first, so connections may mention populations declared below them.
    for item in &net.body {
        match item {
            ast::NetItem::Input { name, size, span } => {
                if cx.name_taken(name) {
                    continue;
                }
                if let Some(size) = cx.size(size) {
                    cx.inputs.push(NetInput { name: name.name.clone(), size, span: *span });
                }
            }
            ast::NetItem::Population(p) => {
                if cx.name_taken(&p.name) {
                    continue;
                }
                if let Some(pop) = cx.population(p) {
                    cx.pops.push(pop);
                }
            }
            _ => {}
        }
    }
    let mut train_span: Option<Span> = None;
    for item in &net.body {
        match item {
            ast::NetItem::Setting(s) => cx.net_setting(s, &mut def),
            ast::NetItem::Drive { target, value, span } => {
                if let Some(d) = cx.drive(target, value, *span) {
                    def.drives.push(d);
                }
            }
            ast::NetItem::Connect(c) => {
                if let Some(p) = cx.connect(c, &def.projections) {
                    def.projections.push(p);
                }
            }
            ast::NetItem::Train { settings, span } => {
                if let Some(prev) = train_span {
                    cx.diags.push(
                        Diagnostic::error("E0306", *span, "a network has one `train` block")
                            .with_label("second `train` block")
                            .with_related(prev, "first one"),
                    );
                    continue;
                }
                train_span = Some(*span);
                def.train = cx.train(settings);
            }
            _ => {}
        }
    }
    def.inputs = std::mem::take(&mut cx.inputs);
    def.populations = std::mem::take(&mut cx.pops);
    def.data = std::mem::take(&mut cx.data);
    let failed = diags.iter().filter(|d| d.is_error()).count() > n_err;
    (!failed).then_some(def)
}

impl NetCx<'_, '_> {
    fn name_taken(&mut self, name: &ast::Ident) -> bool {
        let prev = self
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), i.span))
            .chain(self.pops.iter().map(|p| (p.name.as_str(), p.span)))
            .find(|(n, _)| *n == name.name);
        if let Some((_, span)) = prev {
            self.diags.push(
                Diagnostic::error("E0107", name.span, format!("`{}` is defined twice in network `{}`", name.name, self.net.name.name))
                    .with_label("second definition")
                    .with_related(span, "first defined here"),
            );
            return true;
        }
        false
    }

    /// A constant expression: network settings see units and constants only.
    fn constant(&mut self, e: &ast::Expr) -> Option<(f64, Dim)> {
        let empty: Vec<Symbol> = Vec::new();
        let mut ecx = ExprCx::new(&empty, &self.scope.fns);
        ecx.allow_random = false;
        let (t, d) = ecx.num(e, self.diags)?;
        match t.const_value() {
            Some(v) => Some((v, d)),
            None => {
                self.diags.push(
                    Diagnostic::error("E0401", e.span, "expected a constant")
                        .with_label("must be computable before the simulation starts"),
                );
                None
            }
        }
    }

    fn size(&mut self, e: &ast::Expr) -> Option<usize> {
        let (v, d) = self.constant(e)?;
        if d.is_dimensionless() && v.fract() == 0.0 && v > MAX_SIZE {
            self.diags.push(
                Diagnostic::error("E0402", e.span, format!("a size of {v:e} is too large"))
                    .with_label(format!("at most {MAX_SIZE:e}"))
                    .with_note("a size must be a positive whole number that fits in memory"),
            );
            return None;
        }
        if !d.is_dimensionless() || v.fract() != 0.0 || v < 1.0 {
            self.diags.push(
                Diagnostic::error("E0402", e.span, "a size must be a positive whole number")
                    .with_label(if d.is_dimensionless() { format!("found {v}") } else { format!("found a quantity of dimension {d}") }),
            );
            return None;
        }
        Some(v as usize)
    }

    /// An initial value: a constant, `U(low, high)`/`uniform(...)`, or `normal(mean, std)`,
    /// each with the dimension `want`.
    fn init(&mut self, e: &ast::Expr, want: Dim, what: &str) -> Option<Init> {
        if let ExprKind::Call(call) = &e.kind {
            let n = call.callee.name.as_str();
            if matches!(n, "U" | "uniform" | "normal") {
                if call.args.len() != 2 || call.args.iter().any(|a| a.name.is_some()) {
                    self.diags.push(
                        Diagnostic::error("E0105", call.span, format!("`{n}` takes two arguments"))
                            .with_label(if n == "normal" { "expected `normal(mean, std)`" } else { "expected `U(low, high)`" }),
                    );
                    return None;
                }
                let a = self.constant(&call.args[0].value);
                let b = self.constant(&call.args[1].value);
                let ((a, da), (b, db)) = (a?, b?);
                for (d, v, arg) in [(da, a, &call.args[0].value), (db, b, &call.args[1].value)] {
                    if !dim_ok(d, want, v) {
                        let dg = Diagnostic::error("E0201", arg.span, format!("wrong dimension for {what}"))
                            .with_label(format!("expected {want}, found {d}"));
                        self.diags.push(dg);
                        return None;
                    }
                }
                if n == "normal" {
                    if b < 0.0 {
                        self.diags.push(
                            Diagnostic::error("E0403", call.args[1].value.span, "a standard deviation cannot be negative")
                                .with_label(format!("found {b}")),
                        );
                        return None;
                    }
                    return Some(Init::Normal { mean: a, std: b });
                }
                if b < a {
                    self.diags.push(
                        Diagnostic::error("E0403", call.span, "the bounds of `U` are the wrong way round")
                            .with_label("expected `U(low, high)` with low <= high"),
                    );
                    return None;
                }
                return Some(Init::Uniform { low: a, high: b });
            }
        }
        let (v, d) = self.constant(e)?;
        if !dim_ok(d, want, v) {
            let dg = Diagnostic::error("E0201", e.span, format!("wrong dimension for {what}"))
                .with_label(format!("expected {want}, found {d}"));
            self.diags.push(dg);
            return None;
        }
        Some(Init::Const(v))
    }

    fn model_by_name(&mut self, id: &ast::Ident, want: ast::ModelKind) -> Option<Option<ModelId>> {
        if let Some(i) = self.program.models.iter().position(|m| m.name == id.name) {
            let m = &self.program.models[i];
            if m.kind != want {
                let (is, wants) = match want {
                    ast::ModelKind::Neuron => ("a synapse", "a neuron model"),
                    ast::ModelKind::Synapse => ("a neuron", "a synapse model"),
                };
                self.diags.push(
                    Diagnostic::error("E0404", id.span, format!("`{}` is {is}", id.name))
                        .with_label(format!("expected {wants}"))
                        .with_related(m.span, "defined here"),
                );
                return None;
            }
            return Some(Some(i));
        }
        if self.scope.has_model(&id.name) {
            return Some(None); // defined but has errors, already reported
        }
        let mut d = Diagnostic::error("E0101", id.span, format!("unknown model `{}`", id.name)).with_label("not defined");
        let mut names = self.scope.model_names();
        if want == ast::ModelKind::Neuron {
            names.push("Linear");
        }
        d = match nearest(&id.name, names) {
            Some(n) => d.with_help(format!("did you mean `{n}`?")),
            None => d.with_help("import the file that defines it, e.g. `import \"lif.snn\"`"),
        };
        self.diags.push(d);
        None
    }

    /// The settings of a population (`pop`, which may read files) or of a synapse.
    fn settings_for(&mut self, model: &Model, settings: &[ast::Setting], pop: Option<usize>) -> Option<Vec<(SymId, Init)>> {
        let mut out: Vec<(SymId, Init)> = Vec::new();
        let mut ok = true;
        for s in settings {
            let settable = |k: SymKind| matches!(k, SymKind::Param | SymKind::State);
            let Some(sid) = model.sym(&s.name.name).filter(|i| settable(model.symbols[*i].kind)) else {
                let names: Vec<&str> = model.symbols.iter().filter(|x| settable(x.kind)).map(|x| x.name.as_str()).collect();
                let mut d = Diagnostic::error("E0405", s.name.span, format!("`{}` has no param or state `{}`", model.name, s.name.name))
                    .with_label("cannot be set");
                d = match nearest(&s.name.name, names.iter().copied()) {
                    Some(n) => d.with_help(format!("did you mean `{n}`?")),
                    None => d.with_note(format!("settable: {}", names.join(", "))),
                };
                self.diags.push(d);
                ok = false;
                continue;
            };
            if out.iter().any(|(x, _)| *x == sid) {
                self.diags.push(Diagnostic::error("E0306", s.name.span, format!("`{}` is set twice", s.name.name)).with_label("second setting"));
                ok = false;
                continue;
            }
            let sym = &model.symbols[sid];
            if let Some(load) = load_call(&s.value) {
                match self.data_setting(&s.value, load, sym, pop) {
                    Some(d) => {
                        out.push((sid, Init::Data(self.data.len())));
                        self.data.push(d);
                    }
                    None => ok = false,
                }
                continue;
            }
            match self.init(&s.value, sym.dim, &format!("`{}`", sym.name)) {
                // A trainable param's setting is its initial value: inside its bounds.
                Some(i) if sym.bounds.is_some_and(|b| super::bounds::check_initial(&i, b, s.value.span, sym.span, &format!("`{}`", sym.name), self.diags).is_none()) => ok = false,
                Some(i) => out.push((sid, i)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `NAME = load("FILE", "ARRAY")`, optionally times a constant in the unit of the
    /// values (`load("p.npz", "tau") * 1 ms`): one value a neuron, read when the network
    /// is built.
    fn data_setting(&mut self, e: &ast::Expr, load: &ast::Call, sym: &Symbol, pop: Option<usize>) -> Option<DataRef> {
        let Some(pop) = pop else {
            self.diags.push(
                Diagnostic::error("E0405", e.span, "a synapse's settings are one value for all its synapses: `load` gives one a neuron")
                    .with_label("only a population's params and states are read from files"),
            );
            return None;
        };
        let strings: Vec<&str> = load.args.iter().filter_map(|a| match (&a.name, &a.value.kind) {
            (None, ExprKind::Str(s)) => Some(s.as_str()),
            _ => None,
        }).collect();
        let [path, array] = strings[..] else {
            self.diags.push(
                Diagnostic::error("E0105", load.span, "`load` takes a file and an array name")
                    .with_label("expected `load(\"params.npz\", \"tau\")`"),
            );
            return None;
        };
        // The unit scale: the other factor of `load(...) * 1 ms`.
        let (scale, dim) = match &e.kind {
            ExprKind::Binary(ast::BinOp::Mul, a, b) => {
                let other = if matches!(&a.kind, ExprKind::Call(c) if std::ptr::eq(c, load)) { b } else { a };
                self.constant(other)?
            }
            _ => (1.0, Dim::ONE),
        };
        if dim != sym.dim {
            self.diags.push(
                Diagnostic::error("E0201", e.span, format!("wrong dimension for `{}`", sym.name))
                    .with_label(format!("expected {}, found {dim}", sym.dim))
                    .with_help(format!("a file holds numbers: give their unit, as in `load(\"{path}\", \"{array}\") * 1 {}`", sym.dim)),
            );
            return None;
        }
        let p = std::path::Path::new(path);
        let path = if p.is_absolute() { path.to_string() } else { self.dir.join(p).display().to_string() };
        Some(DataRef { path, array: array.to_string(), scale, pop, name: sym.name.clone(), span: e.span })
    }

    /// A param default or an initial value that reads a value set with `load` would be
    /// computed before the file is read (the runtime reads files into the compiled
    /// plan): refused, naming it. Lets are inlined, so reads through them count.
    fn derived_from_files(&mut self, model: &Model, settings: &[(SymId, Init)], p: &ast::Population) -> Option<()> {
        let from_file: Vec<SymId> = settings.iter().filter(|(_, i)| matches!(i, Init::Data(_))).map(|(s, _)| *s).collect();
        if from_file.is_empty() {
            return Some(());
        }
        let unset = |sid: SymId| !settings.iter().any(|(x, _)| *x == sid);
        for (_, sym) in model.params().chain(model.states()).filter(|(sid, _)| unset(*sid)) {
            let Some(value) = &sym.value else { continue };
            let mut reads = None;
            value.visit_syms(&mut |r| {
                if reads.is_none() && from_file.contains(&r) {
                    reads = Some(r);
                }
            });
            let Some(r) = reads else { continue };
            let what = if sym.kind == SymKind::Param { "default" } else { "initial value" };
            self.diags.push(
                Diagnostic::error("E0421", p.span, format!("the {what} of `{}` reads `{}`, which `{}` reads from a file", sym.name, model.symbols[r].name, p.name.name))
                    .with_label("computed before any file is read")
                    .with_related(sym.span, "declared here")
                    .with_help(format!("set `{}` too (with `load`, or a value)", sym.name)),
            );
            return None;
        }
        Some(())
    }

    fn population(&mut self, p: &ast::Population) -> Option<Population> {
        let size = self.size(&p.size);
        let kind = match p.kind {
            ast::PopKind::Layer => PopKind::Layer,
            ast::PopKind::Readout => PopKind::Readout,
        };
        if p.model.name == "Linear" {
            if kind == PopKind::Layer {
                self.diags.push(
                    Diagnostic::error("E0406", p.model.span, "`Linear` is a readout")
                        .with_label("write `readout NAME = Linear[n]`"),
                );
                return None;
            }
            if let Some(s) = p.settings.first() {
                self.diags.push(Diagnostic::error("E0405", s.name.span, "`Linear` has no settings").with_label("remove this"));
                return None;
            }
            return Some(Population { name: p.name.name.clone(), kind, model: PopModel::Linear, size: size?, settings: Vec::new(), span: p.span });
        }
        let mid = self.model_by_name(&p.model, ast::ModelKind::Neuron)??;
        let model = &self.program.models[mid];
        let settings = self.settings_for(model, &p.settings, Some(self.pops.len()))?;
        if kind == PopKind::Readout && model.spike.is_some() {
            self.diags.push(
                Diagnostic::warning("W0403", p.model.span, format!("readout `{}` uses the spiking model `{}`", p.name.name, model.name))
                    .with_label("readouts are usually non-spiking")
                    .with_help("use `layer` for spiking populations, or `LeakyReadout`/`Linear` here"),
            );
        }
        if kind == PopKind::Layer && model.spike.is_none() && model.output.is_none() {
            self.diags.push(
                Diagnostic::warning("W0401", p.model.span, format!("`{}` never spikes", model.name))
                    .with_label("a layer of neurons without `spike when`")
                    .with_help("use `readout` for non-spiking output units, or declare what it sends (`output r = tanh(x)`)"),
            );
        }
        for (sid, s) in model.params() {
            if s.value.is_none() && !settings.iter().any(|(x, _)| *x == sid) {
                self.diags.push(
                    Diagnostic::error("E0407", p.span, format!("param `{}` of `{}` has no default and is not set", s.name, model.name))
                        .with_label(format!("add `{} = ...` in the braces", s.name))
                        .with_related(s.span, "declared here"),
                );
                return None;
            }
        }
        self.derived_from_files(model, &settings, p)?;
        // The population's constant settings in place of the defaults.
        let set: HashMap<SymId, f64> = settings.iter().filter_map(|(sid, i)| match i {
            Init::Const(v) => Some((*sid, *v)),
            _ => None,
        }).collect();
        if !set.is_empty() {
            let mut f = Folder::with_params(model, &set);
            fold_model(&mut f, model);
            if let Some(problem) = &f.problem {
                let at = p.settings.first().map_or(p.span, |s| s.name.span.to(p.settings.last().map_or(s.value.span, |l| l.value.span)));
                self.diags.push(problem_diagnostic(problem, Some((at, "with the values set here"))));
                return None;
            }
        }
        Some(Population { name: p.name.name.clone(), kind, model: PopModel::Model(mid), size: size?, settings, span: p.span })
    }

    fn find_pop(&mut self, id: &ast::Ident) -> Option<usize> {
        if let Some(i) = self.pops.iter().position(|p| p.name == id.name) {
            return Some(i);
        }
        if self.net.body.iter().any(|i| matches!(i, ast::NetItem::Population(p) if p.name.name == id.name)) {
            return None; // declared with errors
        }
        let mut d = Diagnostic::error("E0101", id.span, format!("unknown population `{}`", id.name)).with_label("not a layer or readout of this network");
        let names: Vec<&str> = self.pops.iter().map(|p| p.name.as_str()).collect();
        if let Some(n) = nearest(&id.name, names) {
            d = d.with_help(format!("did you mean `{n}`?"));
        } else if self.inputs.iter().any(|i| i.name == id.name) {
            d = d.with_note(format!("`{}` is an input: it can only be the source of a connection", id.name));
        }
        self.diags.push(d);
        None
    }

    /// `pop.state` as a connection's source: the state's name and dimension.
    fn source_state(&mut self, pop: usize, st: &ast::Ident) -> Option<(String, Dim)> {
        let p = &self.pops[pop];
        let PopModel::Model(mid) = p.model else {
            self.diags.push(
                Diagnostic::error("E0408", st.span, format!("`{}` is a `Linear` readout and has no states", p.name))
                    .with_label("no state to read"),
            );
            return None;
        };
        let model = &self.program.models[mid];
        if let Some((_, s)) = model.states().find(|(_, s)| s.name == st.name) {
            return Some((s.name.clone(), s.dim));
        }
        let states: Vec<&str> = model.states().map(|(_, s)| s.name.as_str()).collect();
        let listed = states.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
        let mut d = Diagnostic::error("E0408", st.span, format!("`{}` has no state `{}`", model.name, st.name))
            .with_label(format!("not a state of `{}`", p.name));
        d = if model.syms_of(SymKind::Input).any(|(_, s)| s.name == st.name) {
            // A port on the source: the spikes were probably meant.
            d.with_note(format!("`{}` is an input port of `{}`", st.name, model.name))
                .with_help(format!("write `connect {} -> ...` for its spikes{}", p.name, if states.is_empty() { String::new() } else { format!(", or read a state: {listed}") }))
        } else {
            match nearest(&st.name, states.clone()) {
                Some(n) => d.with_help(format!("did you mean `{n}`?")),
                None if states.is_empty() => d.with_note(format!("`{}` has no states", model.name)),
                None => d.with_note(format!("its states: {listed}")),
            }
        };
        self.diags.push(d);
        None
    }

    /// The port of a target endpoint: `pop.port`; else the port named like the
    /// synapse's `output`; else the model's only input.
    fn port(&mut self, pop: usize, ep: &ast::Endpoint, output: Option<&str>) -> Option<Option<SymId>> {
        let p = &self.pops[pop];
        let PopModel::Model(mid) = p.model else {
            if let Some(port) = &ep.port {
                self.diags.push(
                    Diagnostic::error("E0408", port.span, format!("`{}` is a `Linear` readout and has no ports", p.name))
                        .with_label(format!("write `{}`", p.name)),
                );
                return None;
            }
            return Some(None);
        };
        let model = &self.program.models[mid];
        let inputs: Vec<(SymId, &str)> = model.inputs().map(|(i, s)| (i, s.name.as_str())).collect();
        match &ep.port {
            Some(port) => match inputs.iter().find(|(_, n)| *n == port.name) {
                Some((i, _)) => Some(Some(*i)),
                None => {
                    let names: Vec<&str> = inputs.iter().map(|(_, n)| *n).collect();
                    let mut d = Diagnostic::error("E0408", port.span, format!("`{}` ({}) has no input port `{}`", p.name, model.name, port.name))
                        .with_label("no such port");
                    d = match nearest(&port.name, names.iter().copied()) {
                        Some(n) => d.with_help(format!("did you mean `{n}`?")),
                        None if names.is_empty() => d.with_note(format!("`{}` declares no `input`", model.name)),
                        None => d.with_note(format!("its ports: {}", names.join(", "))),
                    };
                    self.diags.push(d.with_related(model.span, "model defined here"));
                    None
                }
            },
            None if output.is_some_and(|o| inputs.iter().any(|(_, n)| *n == o)) => {
                inputs.iter().find(|(_, n)| Some(*n) == output).map(|(i, _)| Some(*i))
            }
            None if inputs.len() == 1 => Some(Some(inputs[0].0)),
            None => {
                let names: Vec<&str> = inputs.iter().map(|(_, n)| *n).collect();
                self.diags.push(
                    Diagnostic::error("E0409", ep.span, format!("which port of `{}`?", p.name))
                        .with_label(if names.is_empty() { format!("`{}` has no input ports", model.name) } else { format!("`{}` has ports {}", model.name, names.join(", ")) })
                        .with_help(format!("write `{}.PORT`", p.name)),
                );
                None
            }
        }
    }

    fn net_setting(&mut self, s: &ast::Setting, def: &mut NetworkDef) {
        let Some((_, want)) = NET_SETTINGS.iter().find(|(n, _)| *n == s.name.name) else {
            let names: Vec<&str> = NET_SETTINGS.iter().map(|(n, _)| *n).collect();
            let mut d = Diagnostic::error("E0410", s.name.span, format!("unknown network setting `{}`", s.name.name))
                .with_label(format!("settings: {}", names.join(", ")));
            if let Some(n) = nearest(&s.name.name, names) {
                d = d.with_help(format!("did you mean `{n}`?"));
            }
            self.diags.push(d);
            return;
        };
        let Some((v, d)) = self.constant(&s.value) else { return };
        if Some(d) != *want {
            self.diags.push(
                Diagnostic::error("E0201", s.value.span, format!("wrong dimension for `{}`", s.name.name))
                    .with_label(format!("expected {}, found {d}", want.unwrap_or(Dim::ONE))),
            );
            return;
        }
        match s.name.name.as_str() {
            "dt" if v > 0.0 => def.dt = Some(v),
            "dt" => self.diags.push(Diagnostic::error("E0403", s.value.span, "`dt` must be positive").with_label(format!("found {v}"))),
            "seed" if v >= 0.0 && v.fract() == 0.0 => def.seed = Some(v as u64),
            _ => self.diags.push(Diagnostic::error("E0403", s.value.span, "`seed` must be a whole number >= 0").with_label(format!("found {v}"))),
        }
    }

    fn drive(&mut self, target: &ast::Endpoint, value: &ast::Expr, span: Span) -> Option<Drive> {
        let pop = self.find_pop(&target.pop)?;
        let Some(port) = self.port(pop, target, None)? else {
            self.diags.push(
                Diagnostic::error("E0408", target.span, format!("`{}` is a `Linear` readout and cannot be driven", target.pop.name))
                    .with_label("no port"),
            );
            return None;
        };
        let PopModel::Model(mid) = self.pops[pop].model else { return None };
        let dim = self.program.models[mid].symbols[port].dim;
        let value = self.init(value, dim, "the drive")?;
        Some(Drive { pop, port, value, span })
    }

    fn train(&mut self, settings: &[ast::Setting]) -> Vec<(String, TrainValue)> {
        let mut out = Vec::new();
        for s in settings {
            if !TRAIN_KEYS.contains(&s.name.name.as_str()) {
                let mut d = Diagnostic::error("E0416", s.name.span, format!("unknown training setting `{}`", s.name.name)).with_label("not a setting");
                d = match nearest(&s.name.name, TRAIN_KEYS.iter().copied()) {
                    Some(n) => d.with_help(format!("did you mean `{n}`?")),
                    None => d.with_note(format!("settings: {}", TRAIN_KEYS.join(", "))),
                };
                self.diags.push(d);
                continue;
            }
            let v = match &s.value.kind {
                ExprKind::Var(id) => TrainValue::Name(id.name.clone()),
                ExprKind::Str(t) => TrainValue::Text(t.clone()),
                _ => match self.constant(&s.value) {
                    Some((v, d)) if d.is_dimensionless() => TrainValue::Number(v),
                    Some((v, d)) if d == Dim::TIME => TrainValue::Number(v),
                    Some((_, d)) => {
                        self.diags.push(Diagnostic::error("E0201", s.value.span, "unexpected dimension").with_label(format!("found {d}")));
                        continue;
                    }
                    None => continue,
                },
            };
            out.push((s.name.name.clone(), v));
        }
        out
    }
}

/// A zero fits any dimension (`state g: nS = 0`), otherwise dimensions must agree.
fn dim_ok(found: Dim, want: Dim, value: f64) -> bool {
    found == want || (value == 0.0 && found.is_dimensionless())
}

/// The `load("FILE", "ARRAY")` call of a setting, alone or as a factor of a product.
fn load_call(e: &ast::Expr) -> Option<&ast::Call> {
    let is_load = |e: &'_ ast::Expr| -> bool { matches!(&e.kind, ExprKind::Call(c) if c.callee.name == "load") };
    match &e.kind {
        ExprKind::Call(c) if c.callee.name == "load" => Some(c),
        ExprKind::Binary(ast::BinOp::Mul, a, b) => [a, b].into_iter().find(|x| is_load(x)).and_then(|x| match &x.kind {
            ExprKind::Call(c) => Some(c),
            _ => None,
        }),
        _ => None,
    }
}
