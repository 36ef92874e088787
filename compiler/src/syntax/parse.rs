//! Text → AST: the pest grammar (`grammar.pest`) and the conversion of its parse tree.

use super::ast::*;
use crate::diag::Diagnostic;
use crate::span::{FileId, Span};
use pest::Parser as _;
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::sync::LazyLock;

#[derive(pest_derive::Parser)]
#[grammar = "syntax/grammar.pest"]
struct SnnParser;

/// Parses one file. After a syntax error the parser skips to the next line that starts
/// a top-level item (`neuron`, `synapse`, `network`, `import`, `fn`, `method`) and goes
/// on, so one run reports the syntax errors of several items. The AST holds the items
/// that parsed.
pub fn parse_file_recovering(file: FileId, text: &str) -> (File, Vec<Diagnostic>) {
    let mut items = Vec::new();
    let mut diags = Vec::new();
    // A UTF-8 byte order mark (some Windows editors write one) is not part of the text.
    let mut base = if text.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    // The parser recurses once per level of nesting: refuse absurd nesting before it.
    if let Some(d) = nesting_error(file, text) {
        return (File { items }, vec![d]);
    }
    while base < text.len() {
        let rest = &text[base..];
        if SnnParser::parse(Rule::only_trivia, rest).is_ok() {
            break;
        }
        let cx = Cx { file, base, chain: Default::default() };
        match SnnParser::parse(Rule::single_item, rest) {
            Ok(mut pairs) => {
                let pair = pairs.next().expect("single_item");
                let end = pair.as_span().end();
                for p in pair.into_inner() {
                    match cx.item(p) {
                        Ok(i) => items.push(i),
                        Err(d) => diags.push(d),
                    }
                }
                if end == 0 {
                    break; // cannot happen (an item is never empty), but never loop forever
                }
                base += end;
            }
            Err(e) => {
                let at = match e.location {
                    pest::error::InputLocation::Pos(p) => p,
                    pest::error::InputLocation::Span((s, _)) => s,
                };
                let mut d = syntax_error(file, rest, e);
                for span in std::iter::once(&mut d.span).chain(d.related.iter_mut().map(|r| &mut r.0)) {
                    span.start += base as u32;
                    span.end += base as u32;
                }
                diags.push(d);
                match next_item_start(rest, at) {
                    Some(next) => base += next,
                    None => break,
                }
            }
        }
    }
    (File { items }, diags)
}

/// Parses one file; the first syntax error is returned (see [`parse_file_recovering`]
/// for all of them).
pub fn parse_file(file: FileId, text: &str) -> Result<File, Diagnostic> {
    let (f, mut diags) = parse_file_recovering(file, text);
    if diags.is_empty() { Ok(f) } else { Err(diags.remove(0)) }
}

/// How deeply an expression may nest: brackets, signs and `not` in a row, `^` and `if`
/// in one bracket. Deeper is refused before parsing (the parser recurses per level).
pub const MAX_NESTING: usize = 256;

/// How many binary operators one expression may chain (`a + b + ...`, counting those
/// of the expressions around it): each is a level of its tree, and dropping a tree
/// recurses once per level.
pub const MAX_CHAIN: usize = 10_000;

/// One open bracket of [`nesting_error`]: its weight (itself and the signs before it)
/// and the `^`s and `if`s seen inside it, which nest to its end.
struct Frame {
    weight: usize,
    chain: usize,
    brace: bool,
}

/// The first place where `text` nests deeper than [`MAX_NESTING`], as a diagnostic.
fn nesting_error(file: FileId, text: &str) -> Option<Diagnostic> {
    let b = text.as_bytes();
    let mut frames: Vec<Frame> = vec![Frame { weight: 0, chain: 0, brace: true }];
    let (mut depth, mut run, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        let start = i;
        let c = b[i];
        i += 1;
        match c {
            b'/' if b.get(i) == Some(&b'/') => i = text[i..].find('\n').map_or(b.len(), |k| i + k),
            b'/' if b.get(i) == Some(&b'*') => i = text[i..].find("*/").map_or(b.len(), |k| i + k + 2),
            b'"' => i = text[i..].find(['"', '\n']).map_or(b.len(), |k| i + k + 1),
            b'(' | b'[' | b'{' => {
                frames.push(Frame { weight: 1 + run, chain: 0, brace: c == b'{' });
                depth += 1 + run;
                run = 0;
            }
            b')' | b']' | b'}' => {
                if frames.len() > 1 {
                    depth -= frames.pop().map_or(0, |f| f.weight);
                }
                run = 0;
            }
            b'-' | b'+' if !matches!(b.get(i), Some(b'>' | b'=')) => run += 1,
            b'^' => frames.last_mut().expect("frame").chain += 1,
            // A new line in a block starts a new declaration.
            b'\n' if frames.last().is_some_and(|f| f.brace) => frames.last_mut().expect("frame").chain = 0,
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.'
                    || (matches!(b[i], b'-' | b'+') && matches!(b[i - 1], b'e' | b'E') && b[start].is_ascii_digit()))
                {
                    i += 1;
                }
                match &text[start..i] {
                    "not" => run += 1,
                    "if" => frames.last_mut().expect("frame").chain += 1,
                    _ => run = 0,
                }
            }
            _ => {}
        }
        let chain = frames.last().map_or(0, |f| f.chain);
        if depth + run + chain > MAX_NESTING {
            let end = (start + 1..=text.len()).find(|k| text.is_char_boundary(*k)).unwrap_or(text.len());
            return Some(
                Diagnostic::error("E0006", Span::new(file, start, end), format!("expression nested deeper than {MAX_NESTING} levels"))
                    .with_label("too deep here")
                    .with_note("brackets, signs and `not` in a row, `^` and `if` all count as a level")
                    .with_help("give parts of the expression names with `let`"),
            );
        }
    }
    None
}

/// The byte offset of the first line after `at` that begins with a top-level keyword.
fn next_item_start(text: &str, at: usize) -> Option<usize> {
    let mut pos = text[at.min(text.len())..].find('\n').map(|i| i + at + 1)?;
    while pos < text.len() {
        let line_end = text[pos..].find('\n').map(|i| i + pos).unwrap_or(text.len());
        let line = &text[pos..line_end];
        let trimmed = line.trim_start();
        let word: String = trimmed.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if matches!(word.as_str(), "neuron" | "synapse" | "network" | "import" | "fn" | "method") && line.len() == trimmed.len() {
            return Some(pos);
        }
        pos = line_end + 1;
    }
    None
}

/// Parses a single expression (used by tests and by `snnc` command-line overrides).
pub fn parse_expr(file: FileId, text: &str) -> Result<Expr, Diagnostic> {
    if let Some(d) = nesting_error(file, text) {
        return Err(d);
    }
    let mut pairs = SnnParser::parse(Rule::expr, text).map_err(|e| syntax_error(file, text, e))?;
    let pair = pairs.next().expect("expr rule");
    if pair.as_span().end() != text.trim_end().len() {
        let at = pair.as_span().end();
        return Err(Diagnostic::error("E0001", Span::new(file, at, text.len()), "unexpected text after the expression")
            .with_label("not part of the expression"));
    }
    Cx { file, base: 0, chain: Default::default() }.expr(pair)
}

struct Cx {
    file: FileId,
    /// Offset of the parsed text in the file (parsing resumes after errors).
    base: usize,
    /// Operators in the chains of the expressions being built around the current one:
    /// a chain of n operators is a tree n deep (see [`MAX_CHAIN`]).
    chain: std::cell::Cell<usize>,
}

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or_op, Assoc::Left))
        .op(Op::infix(Rule::and_op, Assoc::Left))
        .op(Op::prefix(Rule::not_op))
        .op(Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left)
            | Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg) | Op::prefix(Rule::pos))
        .op(Op::infix(Rule::pow, Assoc::Right))
});

type PResult<T> = Result<T, Diagnostic>;

impl Cx {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        // A rule ending in an optional part (`trainable?`, `detach?`) can end after the
        // whitespace and comments that pest skipped while trying it: trim them.
        let len = content_len(s.as_str());
        Span::new(self.file, s.start() + self.base, s.start() + len + self.base)
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident { name: pair.as_str().to_string(), span: self.span(&pair) }
    }

    fn string(&self, pair: Pair<Rule>) -> String {
        // string = "\"" ~ string_inner ~ "\""
        pair.into_inner().next().map(|p| p.as_str().to_string()).unwrap_or_default()
    }

    fn item(&self, pair: Pair<Rule>) -> PResult<Item> {
        let span = self.span(&pair);
        Ok(match pair.as_rule() {
            Rule::import => {
                let s = pair.into_inner().next().expect("import path");
                Item::Import(Import { path: self.string(s), span })
            }
            Rule::fn_def => Item::Function(self.fn_def(pair)?),
            Rule::neuron => Item::Neuron(self.model(pair, ModelKind::Neuron)?),
            Rule::synapse => Item::Synapse(self.model(pair, ModelKind::Synapse)?),
            Rule::network => Item::Network(self.network(pair)?),
            Rule::file_method => {
                let m = pair.into_inner().next().expect("method name");
                Item::Method { method: self.ident(m), span }
            }
            r => unreachable!("unexpected item rule {r:?}"),
        })
    }

    fn fn_def(&self, pair: Pair<Rule>) -> PResult<FnDef> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("fn name"));
        let mut params = Vec::new();
        let mut body = None;
        for p in inner {
            match p.as_rule() {
                Rule::ident => params.push(self.ident(p)),
                Rule::expr => body = Some(self.expr(p)?),
                r => unreachable!("fn_def: {r:?}"),
            }
        }
        Ok(FnDef { name, params, body: body.expect("fn body"), span })
    }

    fn model(&self, pair: Pair<Rule>, kind: ModelKind) -> PResult<Model> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("model name"));
        let body_pair = inner.next().expect("model body");
        let mut body = Vec::new();
        for p in body_pair.into_inner() {
            body.push(self.model_item(p)?);
        }
        Ok(Model { kind, name, body, span })
    }

    fn model_item(&self, pair: Pair<Rule>) -> PResult<ModelItem> {
        if pair.as_rule() == Rule::fn_def {
            return Ok(ModelItem::Function(self.fn_def(pair)?));
        }
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        Ok(match rule {
            Rule::decl => {
                let kind = match inner.next().expect("decl kind").as_str() {
                    "param" => DeclKind::Param,
                    "state" => DeclKind::State,
                    "input" => DeclKind::Input,
                    _ => DeclKind::Let,
                };
                let name = self.ident(inner.next().expect("decl name"));
                let (mut unit, mut value, mut trainable, mut bounds) = (None, None, false, None);
                for p in inner {
                    match p.as_rule() {
                        Rule::unit_expr => unit = Some(self.unit_expr(p)?),
                        Rule::expr => value = Some(self.expr(p)?),
                        Rule::trainable => {
                            trainable = true;
                            bounds = self.bounds(p.into_inner().next())?;
                        }
                        r => unreachable!("decl: {r:?}"),
                    }
                }
                ModelItem::Decl(Decl { kind, name, unit, value, trainable, bounds, span })
            }
            Rule::ode => {
                let lhs = inner.next().expect("ode lhs");
                let name = lhs.into_inner().next().expect("ode name");
                let state = self.ident(name);
                let rhs = self.expr(inner.next().expect("ode rhs"))?;
                ModelItem::Ode { state, rhs, span }
            }
            Rule::spike_def => {
                let condition = self.expr(inner.next().expect("spike condition"))?;
                let surrogate = match inner.next() {
                    Some(c) => Some(self.call(c)?),
                    None => None,
                };
                ModelItem::Spike { condition, surrogate, span }
            }
            Rule::on_block => {
                let event = self.ident(inner.next().expect("event"));
                let mut detach = false;
                let mut body = Vec::new();
                for p in inner {
                    match p.as_rule() {
                        Rule::detach => detach = true,
                        Rule::stmt => body.push(self.stmt(p)?),
                        r => unreachable!("on: {r:?}"),
                    }
                }
                ModelItem::On { event, body, detach, span }
            }
            Rule::reset => {
                let target = self.ident(inner.next().expect("reset target"));
                let value = self.expr(inner.next().expect("reset value"))?;
                let detach = inner.next().is_some();
                ModelItem::Reset { target, value, detach, span }
            }
            Rule::refractory => {
                let period = self.expr(inner.next().expect("refractory period"))?;
                let clamp = inner.map(|p| self.ident(p)).collect();
                ModelItem::Refractory { period, clamp, span }
            }
            Rule::method => {
                ModelItem::Method { method: self.ident(inner.next().expect("method")), span }
            }
            Rule::output => {
                let port = self.ident(inner.next().expect("port"));
                let value = self.expr(inner.next().expect("output value"))?;
                ModelItem::Output { port, value, span }
            }
            Rule::per_synapse => ModelItem::PerSynapse { span },
            r => unreachable!("model item {r:?}"),
        })
    }

    fn stmt(&self, pair: Pair<Rule>) -> PResult<Stmt> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let target = self.ident(inner.next().expect("target"));
        let op = match inner.next().expect("op").as_str() {
            "+=" => AssignOp::Add,
            "-=" => AssignOp::Sub,
            "*=" => AssignOp::Mul,
            "/=" => AssignOp::Div,
            _ => AssignOp::Set,
        };
        let value = self.expr(inner.next().expect("value"))?;
        Ok(Stmt { target, op, value, span })
    }

    fn unit_expr(&self, pair: Pair<Rule>) -> PResult<UnitExpr> {
        // unit_expr = unit_factor ~ (unit_op ~ unit_factor)*
        let mut inner = pair.into_inner();
        let mut acc = self.unit_factor(inner.next().expect("unit factor"))?;
        while let Some(op) = inner.next() {
            let rhs = self.unit_factor(inner.next().expect("unit factor"))?;
            let span = acc.span().to(rhs.span());
            acc = if op.as_str() == "*" {
                UnitExpr::Mul(Box::new(acc), Box::new(rhs), span)
            } else {
                UnitExpr::Div(Box::new(acc), Box::new(rhs), span)
            };
        }
        Ok(acc)
    }

    fn unit_factor(&self, pair: Pair<Rule>) -> PResult<UnitExpr> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let prim = inner.next().expect("unit primary");
        let base = match prim.as_rule() {
            Rule::unit_one => UnitExpr::One(self.span(&prim)),
            Rule::ident => UnitExpr::Name(self.ident(prim)),
            Rule::unit_expr => self.unit_expr(prim)?,
            r => unreachable!("unit primary {r:?}"),
        };
        match inner.next() {
            Some(exp) => {
                let e = exp.as_str().parse::<i32>().map_err(|_| {
                    Diagnostic::error("E0002", self.span(&exp), "unit exponent out of range")
                        .with_label("expected a small whole number")
                })?;
                Ok(UnitExpr::Pow(Box::new(base), e, span))
            }
            None => Ok(base),
        }
    }

    fn call(&self, pair: Pair<Rule>) -> PResult<Call> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let callee = self.ident(inner.next().expect("callee"));
        let mut args = Vec::new();
        for a in inner {
            let mut ai = a.into_inner();
            let first = ai.next().expect("arg");
            let (name, value) = if first.as_rule() == Rule::ident {
                (Some(self.ident(first)), self.expr(ai.next().expect("arg value"))?)
            } else {
                (None, self.expr(first)?)
            };
            args.push(Arg { name, value });
        }
        Ok(Call { callee, args, span })
    }

    fn expr(&self, pair: Pair<Rule>) -> PResult<Expr> {
        crate::deep(|| self.expr_at(pair))
    }

    fn expr_at(&self, pair: Pair<Rule>) -> PResult<Expr> {
        match pair.as_rule() {
            Rule::expr => self.expr(pair.into_inner().next().expect("expr body")),
            Rule::if_expr => {
                let span = self.span(&pair);
                let mut inner = pair.into_inner();
                let cond = self.expr(inner.next().expect("cond"))?;
                let then = self.expr(inner.next().expect("then"))?;
                let otherwise = self.expr(inner.next().expect("else"))?;
                Ok(Expr {
                    kind: ExprKind::If {
                        cond: Box::new(cond),
                        then: Box::new(then),
                        otherwise: Box::new(otherwise),
                    },
                    span,
                })
            }
            Rule::binary => self.chain(pair),
            _ => self.primary(pair),
        }
    }

    /// A chain of binary operators, if the tree it makes (with those around it) stays
    /// within [`MAX_CHAIN`] levels.
    fn chain(&self, pair: Pair<Rule>) -> PResult<Expr> {
        let n = pair.clone().into_inner().filter(|p| is_infix(p.as_rule())).count();
        let depth = self.chain.get() + n;
        if depth > MAX_CHAIN {
            // Underline its first term: the whole may be megabytes long.
            let head = pair.clone().into_inner().next().map_or_else(|| self.span(&pair), |p| self.span(&p));
            return Err(Diagnostic::error("E0006", head, format!("expression too long: a chain of {depth} operators (at most {MAX_CHAIN})"))
                .with_label("the expression starting here")
                .with_help("split it into several `let`s"));
        }
        self.chain.set(depth);
        let r = self.binary(pair.into_inner());
        self.chain.set(depth - n);
        r
    }

    fn binary(&self, pairs: Pairs<Rule>) -> PResult<Expr> {
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let span = self.span(&op).to(rhs.span);
                let kind = match op.as_rule() {
                    Rule::neg => ExprKind::Unary(UnOp::Neg, Box::new(rhs)),
                    Rule::not_op => ExprKind::Unary(UnOp::Not, Box::new(rhs)),
                    // Unary plus changes nothing; keep the operand, widen the span.
                    _ => return Ok(Expr { span, ..rhs }),
                };
                Ok(Expr { kind, span })
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let op = match op.as_rule() {
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    Rule::div => BinOp::Div,
                    Rule::pow => BinOp::Pow,
                    Rule::lt => BinOp::Lt,
                    Rule::le => BinOp::Le,
                    Rule::gt => BinOp::Gt,
                    Rule::ge => BinOp::Ge,
                    Rule::eq => BinOp::Eq,
                    Rule::ne => BinOp::Ne,
                    Rule::and_op => BinOp::And,
                    Rule::or_op => BinOp::Or,
                    r => unreachable!("infix {r:?}"),
                };
                let span = lhs.span.to(rhs.span);
                Ok(Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span })
            })
            .parse(pairs)
    }

    fn primary(&self, pair: Pair<Rule>) -> PResult<Expr> {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::quantity => {
                let mut inner = pair.into_inner();
                let num = inner.next().expect("number");
                let text = num.as_str().to_string();
                let value: f64 = text.parse().map_err(|_| {
                    Diagnostic::error("E0002", self.span(&num), format!("`{text}` is not a valid number"))
                        .with_label("not a number")
                })?;
                if !value.is_finite() {
                    return Err(Diagnostic::error("E0002", self.span(&num), format!("number `{text}` is too large"))
                        .with_label("overflows a 64-bit float")
                        .with_note("the largest finite value is about 1.8e308"));
                }
                let unit = inner.next().map(|u| UnitExpr::Name(self.ident(u)));
                Ok(Expr { kind: ExprKind::Number { value, text, unit }, span })
            }
            Rule::string => Ok(Expr { kind: ExprKind::Str(self.string(pair)), span }),
            Rule::call => Ok(Expr { kind: ExprKind::Call(self.call(pair)?), span }),
            Rule::ident => Ok(Expr { kind: ExprKind::Var(self.ident(pair)), span }),
            Rule::paren => {
                // Keep the parentheses in the span so that diagnostics underline what
                // the user wrote.
                let inner = self.expr(pair.into_inner().next().expect("parenthesised expression"))?;
                Ok(Expr { span, ..inner })
            }
            Rule::expr | Rule::if_expr | Rule::binary => self.expr(pair),
            r => unreachable!("primary {r:?}"),
        }
    }

    // ------------------------------------------------------------ networks

    fn network(&self, pair: Pair<Rule>) -> PResult<Network> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("network name"));
        let mut body = Vec::new();
        for p in inner {
            body.push(self.net_item(p)?);
        }
        Ok(Network { name, body, span })
    }

    fn setting(&self, pair: Pair<Rule>) -> PResult<Setting> {
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("setting name"));
        let value = self.expr(inner.next().expect("setting value"))?;
        Ok(Setting { name, value })
    }

    fn settings(&self, pair: Pair<Rule>) -> PResult<Vec<Setting>> {
        pair.into_inner().map(|p| self.setting(p)).collect()
    }

    fn endpoint(&self, pair: Pair<Rule>) -> Endpoint {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let pop = self.ident(inner.next().expect("population"));
        let port = inner.next().map(|p| self.ident(p));
        Endpoint { pop, port, span }
    }

    fn net_item(&self, pair: Pair<Rule>) -> PResult<NetItem> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        Ok(match rule {
            Rule::setting => {
                let name = self.ident(inner.next().expect("name"));
                let value = self.expr(inner.next().expect("value"))?;
                NetItem::Setting(Setting { name, value })
            }
            Rule::net_input => {
                let name = self.ident(inner.next().expect("input name"));
                let size = self.expr(inner.next().expect("input size"))?;
                NetItem::Input { name, size, span }
            }
            Rule::population => {
                let kind = if inner.next().expect("kind").as_str() == "layer" {
                    PopKind::Layer
                } else {
                    PopKind::Readout
                };
                let name = self.ident(inner.next().expect("name"));
                let model = self.ident(inner.next().expect("model"));
                let size = self.expr(inner.next().expect("size"))?;
                let settings = match inner.next() {
                    Some(s) => self.settings(s)?,
                    None => Vec::new(),
                };
                NetItem::Population(Population { kind, name, model, size, settings, span })
            }
            Rule::drive => {
                let target = self.endpoint(inner.next().expect("target"));
                let value = self.expr(inner.next().expect("value"))?;
                NetItem::Drive { target, value, span }
            }
            Rule::train => {
                let settings = self.settings(inner.next().expect("settings"))?;
                NetItem::Train { settings, span }
            }
            Rule::connect => {
                let from = self.endpoint(inner.next().expect("from"));
                let to = self.endpoint(inner.next().expect("to"));
                let mut clauses = Vec::new();
                for c in inner {
                    clauses.push(self.clause(c)?);
                }
                NetItem::Connect(Connect { from, to, clauses, span })
            }
            r => unreachable!("net item {r:?}"),
        })
    }

    /// The `bounds (lo, hi)` inside a `trainable`, if written.
    fn bounds(&self, pair: Option<Pair<Rule>>) -> PResult<Option<Bounds>> {
        let Some(pair) = pair else { return Ok(None) };
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let lo = self.expr(inner.next().expect("lo"))?;
        let hi = self.expr(inner.next().expect("hi"))?;
        Ok(Some(Bounds { lo, hi, span }))
    }

    fn clause(&self, pair: Pair<Rule>) -> PResult<SpannedClause> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let text = pair.as_str();
        let mut inner = pair.into_inner();
        let (clause, keyword) = match rule {
            Rule::via => {
                let synapse = self.ident(inner.next().expect("synapse"));
                let settings = match inner.next() {
                    Some(s) => self.settings(s)?,
                    None => Vec::new(),
                };
                (ConnClause::Via { synapse, settings }, "via")
            }
            Rule::dense => (ConnClause::Topology(Topology::Dense), "dense"),
            Rule::one_to_one => (ConnClause::Topology(Topology::OneToOne), "one_to_one"),
            Rule::sparse => {
                let p = self.expr(inner.next().expect("p"))?;
                (ConnClause::Topology(Topology::Sparse { p }), "sparse")
            }
            Rule::procedural => {
                let p = self.expr(inner.next().expect("p"))?;
                (ConnClause::Topology(Topology::Procedural { p }), "procedural")
            }
            Rule::from_file => {
                let path = self.string(inner.next().expect("path"));
                (ConnClause::Topology(Topology::File { path }), "from")
            }
            Rule::conv | Rule::pool => {
                let args = inner.map(|a| self.setting(a)).collect::<PResult<Vec<_>>>()?;
                let pool = rule == Rule::pool;
                (ConnClause::Topology(Topology::Conv { pool, args }), if pool { "pool" } else { "conv" })
            }
            Rule::init => (ConnClause::Init(self.expr(inner.next().expect("init"))?), "init"),
            Rule::weight => (ConnClause::Init(self.expr(inner.next().expect("weight"))?), "weight"),
            Rule::trainable => (ConnClause::Trainable(self.bounds(inner.next())?), "trainable"),
            Rule::no_self => (ConnClause::NoSelf, "no_self"),
            Rule::bias => (ConnClause::Bias, "bias"),
            Rule::dropout => (ConnClause::Dropout(self.expr(inner.next().expect("p"))?), "dropout"),
            Rule::batch_norm => (ConnClause::BatchNorm, "batch_norm"),
            Rule::delay => (ConnClause::Delay(self.expr(inner.next().expect("delay"))?), "delay"),
            Rule::adapter => (ConnClause::Adapter(self.expr(inner.next().expect("rank"))?), "adapter"),
            Rule::conn_as => (ConnClause::As(self.ident(inner.next().expect("name"))), "as"),
            Rule::sign if text == "excitatory" => (ConnClause::Sign(Sign::Excitatory), "excitatory"),
            Rule::sign => (ConnClause::Sign(Sign::Inhibitory), "inhibitory"),
            r => unreachable!("clause {r:?}"),
        };
        Ok(SpannedClause { clause, span, keyword })
    }
}

/// Length of `text` without trailing whitespace and comments.
fn content_len(text: &str) -> usize {
    let mut t = text.trim_end();
    loop {
        if t.ends_with("*/") {
            if let Some(open) = t.rfind("/*") {
                t = t[..open].trim_end();
                continue;
            }
        }
        // A `//` comment on the last line, outside a string literal.
        let line_start = t.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line = &t[line_start..];
        let mut in_str = false;
        let mut cut = None;
        let b = line.as_bytes();
        for i in 0..b.len() {
            match b[i] {
                b'"' => in_str = !in_str,
                b'/' if !in_str && b.get(i + 1) == Some(&b'/') => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
        }
        match cut {
            Some(i) => t = t[..line_start + i].trim_end(),
            None => return t.len(),
        }
    }
}

// ---------------------------------------------------------------- syntax errors

/// Turns pest's error into a diagnostic that names what was expected in words.
fn syntax_error(file: FileId, text: &str, err: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match err.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    // Underline the offending token (or the end of the file) rather than an empty span.
    let end = if end > start {
        end
    } else {
        // A name or number as a whole; anything else up to the next space.
        let rest = &text[start.min(text.len())..];
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let starts_word = rest.chars().next().is_some_and(word);
        let len = rest
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || (starts_word && !word(*c)))
            .map(|(i, _)| i)
            .unwrap_or(rest.len())
            .max(rest.chars().next().map(|c| c.len_utf8()).unwrap_or(0));
        start + len
    };
    let span = Span::new(file, start, end);
    if let Some(d) = arrow_error(file, text, start).or_else(|| unclosed_error(file, text, start)) {
        return d;
    }
    let found = if start >= text.trim_end().len() {
        "the end of the file".to_string()
    } else {
        let tok = &text[start..end];
        let tok: String = tok.chars().take(24).collect();
        format!("`{tok}`")
    };
    match err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut expected: Vec<&'static str> = positives.iter().filter_map(|r| describe(*r)).collect();
            expected.sort();
            expected.dedup();
            let list = match expected.len() {
                0 => "valid syntax".to_string(),
                1 => expected[0].to_string(),
                n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
            };
            let open = text.matches('{').count() > text.matches('}').count();
            if found == "the end of the file" && open {
                // pest lists what could continue the block; the useful fact is that a
                // block is still open.
                return Diagnostic::error("E0001", span, "unexpected end of the file: a block is not closed")
                    .with_label("expected `}`")
                    .with_help("a block opened with `{` is missing its closing `}`");
            }
            let mut d = Diagnostic::error("E0001", span, format!("expected {list}, found {found}"))
                .with_label(format!("expected {list}"));
            if let Some(kw) = keyword_at(text, start) {
                d = d.with_note(format!("`{kw}` is a reserved word and cannot be used as a name"));
            }
            d
        }
        ErrorVariant::CustomError { message } => {
            Diagnostic::error("E0001", span, message).with_label("here")
        }
    }
}

/// `=>` where an operator or `=` was expected: pest stops at its `>` or at the `=>`.
fn arrow_error(file: FileId, text: &str, start: usize) -> Option<Diagnostic> {
    let at = if text[start..].starts_with("=>") {
        start
    } else if text[start..].starts_with('>') && text[..start].ends_with('=') {
        start - 1
    } else {
        return None;
    };
    Some(
        Diagnostic::error("E0001", Span::new(file, at, at + 2), "`=>` is not an operator")
            .with_label("not valid here")
            .with_help("write `>=` for greater or equal, `=` to define a value, `->` to connect populations"),
    )
}

/// An error at a closing bracket of another kind, at the end of the file, or on a later
/// line than a `(` or `[` still open: the bracket is what is wrong, so point at it.
fn unclosed_error(file: FileId, text: &str, start: usize) -> Option<Diagnostic> {
    let open = open_brackets(&text[..start.min(text.len())]);
    let &(at, bracket) = open.last()?;
    if bracket == b'{' {
        return None;
    }
    let closer = if bracket == b'(' { ')' } else { ']' };
    let found = text[start..].trim_start().chars().next();
    let later_line = text[at..start].contains('\n');
    let wrong_closer = matches!(found, Some('}' | ')' | ']')) && found != Some(closer);
    if !(found.is_none() || wrong_closer || later_line) {
        return None;
    }
    let mut d = Diagnostic::error("E0001", Span::new(file, at, at + 1), format!("unclosed `{}`", bracket as char))
        .with_label(format!("this `{}` is never closed", bracket as char))
        .with_help(format!("add the missing `{closer}`"));
    if let Some(c) = found {
        let end = start + c.len_utf8();
        d = d.with_related(Span::new(file, start, end), format!("expected `{closer}` before this"));
    }
    Some(d)
}

/// The brackets of `text` still open at its end (offset, byte), outside comments and
/// strings.
fn open_brackets(text: &str) -> Vec<(usize, u8)> {
    let b = text.as_bytes();
    let (mut open, mut i) = (Vec::new(), 0);
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => i = text[i..].find('\n').map_or(b.len(), |k| i + k),
            b'/' if b.get(i + 1) == Some(&b'*') => i = text[i + 2..].find("*/").map_or(b.len(), |k| i + 2 + k + 1),
            b'"' => i = text[i + 1..].find(['"', '\n']).map_or(b.len(), |k| i + 1 + k),
            c @ (b'(' | b'[' | b'{') => open.push((i, c)),
            b')' | b']' | b'}' => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    open
}

fn keyword_at(text: &str, start: usize) -> Option<&str> {
    let rest = &text[start..];
    let word: &str = &rest[..rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(rest.len())];
    if word.is_empty() {
        return None;
    }
    SnnParser::parse(Rule::keyword, word).ok().filter(|p| p.as_str() == word).map(|_| word)
}

/// The binary operators (each one a level of the expression tree).
fn is_infix(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::or_op | Rule::and_op | Rule::lt | Rule::le | Rule::gt | Rule::ge | Rule::eq | Rule::ne
            | Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::pow
    )
}

/// Human names of the grammar rules that can appear in "expected ..." lists.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "the end of the file",
        Rule::item | Rule::import => "`import`",
        Rule::fn_def => "`fn`",
        Rule::neuron => "`neuron`",
        Rule::synapse => "`synapse`",
        Rule::network => "`network`",
        Rule::file_method | Rule::method => "`method`",
        Rule::ident | Rule::any_ident | Rule::ode_name => "a name",
        Rule::number | Rule::quantity => "a number",
        Rule::int => "a whole number",
        Rule::string => "a string",
        Rule::expr | Rule::binary | Rule::if_expr | Rule::paren => "an expression",
        Rule::unit_expr | Rule::unit_one => "a unit",
        Rule::decl | Rule::decl_kind | Rule::ode | Rule::ode_lhs | Rule::spike_def | Rule::on_block
        | Rule::reset | Rule::refractory | Rule::output | Rule::per_synapse => {
            "a declaration, equation or event (`param`, `state`, `dx/dt = ...`, `spike when`, `on ...`)"
        }
        Rule::stmt => "an update such as `v = ...` or `g += w`",
        Rule::assign_op => "`=`, `+=`, `-=`, `*=` or `/=`",
        Rule::call => "a call",
        Rule::arg => "an argument",
        Rule::setting | Rule::brace_setting => "a setting `name = value`",
        Rule::settings => "`{`",
        Rule::net_input => "`input`",
        Rule::population | Rule::pop_kind => "`layer` or `readout`",
        Rule::drive => "`drive`",
        Rule::connect => "`connect`",
        Rule::train => "`train`",
        Rule::endpoint => "a population",
        Rule::via => "`via`",
        Rule::dense | Rule::sparse | Rule::one_to_one | Rule::from_file | Rule::procedural | Rule::conv | Rule::pool => {
            "a connectivity (`dense`, `sparse p = ...`, `one_to_one`, `from \"...\"`, `conv(...)`, `pool(...)`)"
        }
        Rule::init | Rule::weight => "`init` or `weight`",
        Rule::trainable => "`trainable`",
        Rule::bounds => "`bounds (lo, hi)`",
        Rule::dropout | Rule::batch_norm => "a connection option",
        Rule::no_self | Rule::bias | Rule::delay | Rule::adapter | Rule::conn_as | Rule::sign => "a connection option",
        Rule::detach => "`detach`",
        Rule::or_op | Rule::and_op | Rule::lt | Rule::le | Rule::gt | Rule::ge | Rule::eq | Rule::ne
        | Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::pow => "an operator",
        Rule::neg | Rule::pos | Rule::not_op => "an expression",
        Rule::unit_op => "`*` or `/`",
        _ => return None,
    })
}
