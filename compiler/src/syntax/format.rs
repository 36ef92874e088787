//! AST → canonical text (`snnc fmt`).
//!
//! One layout for every file: four-space indents, one item per line, spaces around
//! binary operators, minimal parentheses, numbers exactly as written. Comments are kept:
//! each is re-attached before the item it preceded, or after it on the same line.
//! Formatting is idempotent, and parsing the output gives the same AST (tested).

use super::ast::*;
use crate::span::Span;

/// A comment in the source, with its byte range.
#[derive(Clone, Debug)]
struct Comment {
    start: usize,
    end: usize,
    text: String,
}

/// Finds `//` and `/* */` comments, skipping string literals.
fn scan_comments(src: &str) -> Vec<Comment> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += 1;
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push(Comment { start, end: i, text: src[start..i].trim_end().to_string() });
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                out.push(Comment { start, end: i, text: src[start..i].to_string() });
            }
            _ => i += 1,
        }
    }
    out
}

struct Printer<'s> {
    src: &'s str,
    comments: Vec<Comment>,
    next: usize,
    out: String,
    indent: usize,
}

/// Formats a parsed file; `src` is the text it was parsed from (for comments).
pub fn format_file(file: &File, src: &str) -> String {
    let mut p = Printer { src, comments: scan_comments(src), next: 0, out: String::new(), indent: 0 };
    let mut prev_kind: Option<&'static str> = None;
    for item in &file.items {
        let (kind, span) = match item {
            Item::Import(i) => ("import", i.span),
            Item::Function(f) => ("fn", f.span),
            Item::Method { span, .. } => ("method", *span),
            Item::Neuron(m) | Item::Synapse(m) => ("block", m.span),
            Item::Network(n) => ("block", n.span),
        };
        // Blank line between groups and around blocks.
        if prev_kind.is_some() && (kind == "block" || prev_kind != Some(kind)) {
            p.out.push('\n');
        }
        p.leading_comments(span.start as usize);
        match item {
            Item::Import(i) => p.line(&format!("import {}", quote(&i.path))),
            Item::Function(f) => p.line(&fn_text(f)),
            Item::Method { method, .. } => p.line(&format!("method {}", method.name)),
            Item::Neuron(m) | Item::Synapse(m) => p.model(m),
            Item::Network(n) => p.network(n),
        }
        p.trailing_comment(span.start as usize, span.end as usize);
        prev_kind = Some(kind);
    }
    p.leading_comments(src.len());
    let mut out = p.out;
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

impl Printer<'_> {
    fn pad(&mut self) {
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
    }

    fn line(&mut self, text: &str) {
        self.pad();
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Emits the comments that start before `pos` on lines of their own, keeping one
    /// blank line where the source had one or more.
    fn leading_comments(&mut self, pos: usize) {
        while self.next < self.comments.len() && self.comments[self.next].start < pos {
            let c = self.comments[self.next].clone();
            self.next += 1;
            let before = &self.src[..c.start];
            // A blank line before the comment's line; a line of spaces counts as blank.
            let gap = before.trim_end_matches([' ', '\t']);
            let prev_line = gap.strip_suffix('\n').map(|p| p.trim_end_matches([' ', '\t', '\r']));
            if prev_line.is_some_and(|p| p.ends_with('\n')) {
                if !self.out.is_empty() && !self.out.ends_with("\n\n") && !self.out.ends_with("{\n") {
                    self.out.push('\n');
                }
            }
            for (i, l) in c.text.lines().enumerate() {
                if i == 0 {
                    self.line(l.trim_end());
                } else {
                    self.out.push_str(l.trim_end());
                    self.out.push('\n');
                }
            }
        }
    }

    /// Where an item's own text ends: pest spans can run on over the whitespace and
    /// comments after an item (optional trailing parts), which belong to what follows.
    fn content_end(&self, start: usize, end: usize) -> usize {
        let mut e = end;
        loop {
            let trimmed = self.src[start..e].trim_end().len() + start;
            match self.comments.iter().find(|c| c.end == trimmed && c.start >= start) {
                Some(c) => e = c.start,
                None => return trimmed,
            }
        }
    }

    /// Appends a comment that starts on the same line right after `end`.
    fn trailing_comment(&mut self, start: usize, end: usize) {
        let end = self.content_end(start, end);
        if let Some(c) = self.comments.get(self.next) {
            let between = &self.src[end.min(c.start)..c.start];
            if c.start >= end && between.chars().all(|ch| matches!(ch, ' ' | '\t' | ';' | ',')) && !c.text.contains('\n') {
                let c = c.clone();
                self.next += 1;
                if self.out.ends_with('\n') {
                    self.out.pop();
                }
                self.out.push_str("  ");
                self.out.push_str(&c.text);
                self.out.push('\n');
            }
        }
    }

    fn block<T>(&mut self, header: &str, items: &[T], end: usize, span_of: impl Fn(&T) -> Span, mut print: impl FnMut(&mut Self, &T)) {
        self.line(&format!("{header} {{"));
        self.indent += 1;
        let mut prev_end: Option<usize> = None;
        for it in items {
            let s = span_of(it);
            // Keep one blank line where the source separated items by one or more.
            if let Some(pe) = prev_end {
                let upto = self.comments.get(self.next).map(|c| c.start).filter(|c| *c < s.start as usize).unwrap_or(s.start as usize);
                let gap: String = self.src[pe.min(upto)..upto].chars().filter(|c| *c != ' ' && *c != '\t' && *c != '\r').collect();
                if gap.contains("\n\n") && !self.out.ends_with("\n\n") {
                    self.out.push('\n');
                }
            }
            self.leading_comments(s.start as usize);
            print(self, it);
            self.trailing_comment(s.start as usize, s.end as usize);
            prev_end = Some(self.content_end(s.start as usize, s.end as usize));
        }
        self.leading_comments(end.saturating_sub(1));
        self.indent -= 1;
        self.line("}");
    }

    fn model(&mut self, m: &Model) {
        let kw = match m.kind {
            ModelKind::Neuron => "neuron",
            ModelKind::Synapse => "synapse",
        };
        let header = format!("{kw} {}", m.name.name);
        self.block(&header, &m.body, m.span.end as usize, |i| i.span(), |p, item| p.model_item(item));
    }

    fn model_item(&mut self, item: &ModelItem) {
        match item {
            ModelItem::Decl(d) => {
                let mut s = format!("{} {}", d.kind.keyword(), d.name.name);
                if let Some(u) = &d.unit {
                    s.push_str(": ");
                    s.push_str(&unit_to_string(u));
                }
                if let Some(v) = &d.value {
                    s.push_str(" = ");
                    s.push_str(&expr_to_string(v));
                }
                if d.trainable {
                    s.push_str(" trainable");
                    s.push_str(&bounds_to_string(d.bounds.as_ref()));
                }
                self.line(&s);
            }
            ModelItem::Ode { state, rhs, .. } => self.line(&format!("d{}/dt = {}", state.name, expr_to_string(rhs))),
            ModelItem::Spike { condition, surrogate, .. } => {
                let mut s = format!("spike when {}", expr_to_string(condition));
                if let Some(c) = surrogate {
                    s.push_str(" surrogate ");
                    s.push_str(&call_to_string(c));
                }
                self.line(&s);
            }
            ModelItem::On { event, body, detach, span } => {
                let header = format!("on {}{}", event.name, if *detach { " detach" } else { "" });
                if body.len() <= 2 && !self.has_comments_in(*span) {
                    let stmts: Vec<String> = body.iter().map(stmt_to_string).collect();
                    self.line(&format!("{header} {{ {} }}", stmts.join("; ")));
                } else {
                    self.block(&header, body, span.end as usize, |s| s.span, |p, s| p.line(&stmt_to_string(s)));
                }
            }
            ModelItem::Reset { target, value, detach, .. } => {
                self.line(&format!("reset {} = {}{}", target.name, expr_to_string(value), if *detach { " detach" } else { "" }))
            }
            ModelItem::Refractory { period, clamp, .. } => {
                let mut s = format!("refractory {}", expr_to_string(period));
                if !clamp.is_empty() {
                    let names: Vec<&str> = clamp.iter().map(|c| c.name.as_str()).collect();
                    s.push_str(&format!(" clamp {}", names.join(", ")));
                }
                self.line(&s);
            }
            ModelItem::Method { method, .. } => self.line(&format!("method {}", method.name)),
            ModelItem::Output { port, value, .. } => self.line(&format!("output {} = {}", port.name, expr_to_string(value))),
            ModelItem::PerSynapse { .. } => self.line("per_synapse"),
            ModelItem::Function(f) => self.line(&fn_text(f)),
        }
    }

    fn has_comments_in(&self, span: Span) -> bool {
        self.comments[self.next..].iter().any(|c| c.start >= span.start as usize && c.start < span.end as usize)
    }

    fn network(&mut self, n: &Network) {
        let header = format!("network {}", n.name.name);
        self.block(&header, &n.body, n.span.end as usize, net_item_span, |p, item| p.net_item(item));
    }

    fn net_item(&mut self, item: &NetItem) {
        let text = match item {
            NetItem::Setting(s) => setting_to_string(s),
            NetItem::Input { name, size, .. } => format!("input {}: {}", name.name, expr_to_string(size)),
            NetItem::Population(p) => {
                let kw = match p.kind {
                    PopKind::Layer => "layer",
                    PopKind::Readout => "readout",
                };
                format!("{kw} {} = {}[{}]{}", p.name.name, p.model.name, expr_to_string(&p.size), settings_to_string(&p.settings))
            }
            NetItem::Drive { target, value, .. } => format!("drive {} = {}", endpoint_to_string(target), expr_to_string(value)),
            NetItem::Connect(c) => {
                let mut s = format!("connect {} -> {}", endpoint_to_string(&c.from), endpoint_to_string(&c.to));
                for cl in &c.clauses {
                    s.push(' ');
                    s.push_str(&clause_to_string(cl));
                }
                s
            }
            NetItem::Train { settings, span } => {
                if settings.len() > 3 || self.has_comments_in(*span) {
                    self.block("train", settings, span.end as usize, |s| s.name.span.to(s.value.span), |p, s| p.line(&setting_to_string(s)));
                    return;
                }
                // `train` needs its braces even when empty.
                if settings.is_empty() { "train { }".to_string() } else { format!("train{}", settings_to_string(settings)) }
            }
        };
        self.line(&text);
    }
}

fn net_item_span(item: &NetItem) -> Span {
    match item {
        NetItem::Setting(s) => s.name.span.to(s.value.span),
        NetItem::Input { span, .. } | NetItem::Drive { span, .. } | NetItem::Train { span, .. } => *span,
        NetItem::Population(p) => p.span,
        NetItem::Connect(c) => c.span,
    }
}

fn quote(s: &str) -> String {
    format!("\"{s}\"")
}

fn fn_text(f: &FnDef) -> String {
    let params: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
    format!("fn {}({}) = {}", f.name.name, params.join(", "), expr_to_string(&f.body))
}

fn stmt_to_string(s: &Stmt) -> String {
    format!("{} {} {}", s.target.name, s.op.symbol(), expr_to_string(&s.value))
}

fn setting_to_string(s: &Setting) -> String {
    format!("{} = {}", s.name.name, expr_to_string(&s.value))
}

fn settings_to_string(s: &[Setting]) -> String {
    if s.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = s.iter().map(setting_to_string).collect();
    format!(" {{ {} }}", parts.join(", "))
}

fn endpoint_to_string(e: &Endpoint) -> String {
    match &e.port {
        Some(p) => format!("{}.{}", e.pop.name, p.name),
        None => e.pop.name.clone(),
    }
}

fn clause_to_string(c: &SpannedClause) -> String {
    match &c.clause {
        ConnClause::Via { synapse, settings } => format!("via {}{}", synapse.name, settings_to_string(settings)),
        ConnClause::Topology(t) => match t {
            Topology::Dense => "dense".into(),
            Topology::OneToOne => "one_to_one".into(),
            Topology::Sparse { p } => format!("sparse p = {}", expr_to_string(p)),
            Topology::Procedural { p } => format!("procedural p = {}", expr_to_string(p)),
            Topology::File { path } => format!("from {}", quote(path)),
            Topology::Conv { args, .. } => {
                let args: Vec<String> = args.iter().map(|a| format!("{} = {}", a.name.name, expr_to_string(&a.value))).collect();
                format!("{}({})", c.keyword, args.join(", "))
            }
        },
        ConnClause::Init(e) => format!("{} {}", c.keyword, expr_to_string(e)),
        ConnClause::Trainable(b) => format!("trainable{}", bounds_to_string(b.as_ref())),
        ConnClause::NoSelf => "no_self".into(),
        ConnClause::Bias => "bias".into(),
        ConnClause::Delay(e) => format!("delay {}", expr_to_string(e)),
        ConnClause::Adapter(e) => format!("adapter rank {}", expr_to_string(e)),
        ConnClause::As(n) => format!("as {}", n.name),
        ConnClause::Sign(_) => c.keyword.to_string(),
        ConnClause::Dropout(p) => format!("dropout {}", expr_to_string(p)),
        ConnClause::BatchNorm => "batch_norm".into(),
    }
}

/// ` bounds (lo, hi)` after `trainable`, or nothing.
fn bounds_to_string(b: Option<&Bounds>) -> String {
    b.map_or(String::new(), |b| format!(" bounds ({}, {})", expr_to_string(&b.lo), expr_to_string(&b.hi)))
}

/// A unit annotation in canonical form: `mV`, `nS*mV`, `mV/ms`, `ms^-1`.
pub fn unit_to_string(u: &UnitExpr) -> String {
    fn go(u: &UnitExpr, parent_div_rhs: bool) -> String {
        match u {
            UnitExpr::One(_) => "1".into(),
            UnitExpr::Name(i) => i.name.clone(),
            UnitExpr::Mul(a, b, _) => {
                let s = format!("{}*{}", go(a, false), go(b, true));
                if parent_div_rhs { format!("({s})") } else { s }
            }
            UnitExpr::Div(a, b, _) => {
                let s = format!("{}/{}", go(a, false), go(b, true));
                if parent_div_rhs { format!("({s})") } else { s }
            }
            UnitExpr::Pow(a, e, _) => {
                let base = match **a {
                    UnitExpr::Mul(..) | UnitExpr::Div(..) | UnitExpr::Pow(..) => format!("({})", go(a, false)),
                    _ => go(a, false),
                };
                format!("{base}^{e}")
            }
        }
    }
    go(u, false)
}

pub fn call_to_string(c: &Call) -> String {
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| match &a.name {
            Some(n) => format!("{} = {}", n.name, expr_to_string(&a.value)),
            None => expr_to_string(&a.value),
        })
        .collect();
    format!("{}({})", c.callee.name, args.join(", "))
}

/// Binding strength of an expression for parenthesisation (higher binds tighter).
fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::If { .. } => 0,
        ExprKind::Binary(op, _, _) => op.precedence(),
        ExprKind::Unary(UnOp::Not, _) => 3,
        ExprKind::Unary(UnOp::Neg, _) => 7,
        // `10 ms` binds like a single token, but `-3` must be parenthesised under `^`.
        _ => 9,
    }
}

/// An expression in canonical form, with the fewest parentheses that keep its meaning.
pub fn expr_to_string(e: &Expr) -> String {
    crate::deep(|| expr_text(e))
}

fn expr_text(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number { text, unit, .. } => match unit {
            Some(u) => format!("{text} {}", unit_to_string(u)),
            None => text.clone(),
        },
        ExprKind::Str(s) => quote(s),
        ExprKind::Var(i) => i.name.clone(),
        ExprKind::Call(c) => call_to_string(c),
        ExprKind::Unary(op, a) => {
            let my = prec(e);
            let inner = expr_to_string(a);
            let inner = if prec(a) < my || matches!(a.kind, ExprKind::Unary(UnOp::Neg, _)) {
                format!("({inner})")
            } else {
                inner
            };
            match op {
                UnOp::Neg => format!("-{inner}"),
                UnOp::Not => format!("not {inner}"),
            }
        }
        ExprKind::Binary(op, a, b) => {
            let p = op.precedence();
            let right_assoc = *op == BinOp::Pow;
            let wrap_l = prec(a) < p || (prec(a) == p && right_assoc) || (*op == BinOp::Pow && matches!(a.kind, ExprKind::Unary(..)));
            // Comparisons do not chain: parenthesise a comparison operand of a comparison.
            let wrap_l = wrap_l || (op.is_comparison() && prec(a) == p);
            let wrap_r = prec(b) < p || (prec(b) == p && !right_assoc);
            // `x / (4 mV)` parses the same without parentheses, but reads as `x / 4 * mV`.
            let with_unit = |e: &Expr| matches!(e.kind, ExprKind::Number { unit: Some(_), .. });
            let wrap_r = wrap_r || (matches!(op, BinOp::Div | BinOp::Pow) && with_unit(b));
            let wrap_l = wrap_l || (*op == BinOp::Pow && with_unit(a));
            let l = if wrap_l { format!("({})", expr_to_string(a)) } else { expr_to_string(a) };
            let r = if wrap_r { format!("({})", expr_to_string(b)) } else { expr_to_string(b) };
            if *op == BinOp::Pow { format!("{l}^{r}") } else { format!("{l} {} {r}", op.symbol()) }
        }
        ExprKind::If { cond, then, otherwise } => {
            format!("if {} then {} else {}", expr_to_string(cond), expr_to_string(then), expr_to_string(otherwise))
        }
    }
}
