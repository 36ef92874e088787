//! Diagnostics: what went wrong, where, and what would be valid.
//!
//! Every pass reports problems as [`Diagnostic`] values and keeps going where it can,
//! so one run shows as many errors as possible. Rendering (plain text for snapshots
//! and pipes, colour for terminals) is done by `codespan-reporting`.

use crate::source::SourceMap;
use crate::span::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::term;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable short code, e.g. `E0101`, listed in docs/diagnostics.md.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    /// Text under the primary underline.
    pub label: String,
    /// Other places that explain the error (e.g. where a name was declared).
    pub related: Vec<(Span, String)>,
    /// Free-form notes, e.g. both dimensions of a unit mismatch.
    pub notes: Vec<String>,
    /// A suggestion: "did you mean `tau`?"
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: String::new(),
            related: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.related.push((span, label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn to_codespan(&self) -> CsDiagnostic<usize> {
        let base = match self.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        };
        let mut labels =
            vec![Label::primary(self.span.file, self.span.range()).with_message(&self.label)];
        for (span, text) in &self.related {
            labels.push(Label::secondary(span.file, span.range()).with_message(text));
        }
        let mut notes = self.notes.clone();
        if let Some(help) = &self.help {
            notes.push(format!("help: {help}"));
        }
        base.with_code(self.code).with_message(&self.message).with_labels(labels).with_notes(notes)
    }

    /// Plain text, no colour: what tests snapshot and what goes to a pipe.
    pub fn render(&self, sources: &SourceMap) -> String {
        let config = term::Config::default();
        term::emit_into_string(&config, sources.files(), &self.to_codespan())
            .unwrap_or_else(|_| format!("error[{}]: {}\n", self.code, self.message))
    }

    /// Coloured when `color` is true (a terminal).
    pub fn emit(&self, sources: &SourceMap, out: &mut dyn std::io::Write, color: bool) {
        if !color {
            let _ = out.write_all(self.render(sources).as_bytes());
            return;
        }
        use term::termcolor::{Buffer, WriteColor};
        let mut buf = Buffer::ansi();
        let config = term::Config::default();
        let styles = term::Styles::default();
        let mut writer = term::StylesWriter::new(&mut buf, &styles);
        if term::emit_to_write_style(&mut writer, &config, sources.files(), &self.to_codespan())
            .is_err()
        {
            let _ = out.write_all(self.render(sources).as_bytes());
            return;
        }
        let _ = buf.reset();
        let _ = out.write_all(buf.as_slice());
    }
}

/// Renders a list of diagnostics, one after another, as plain text.
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap) -> String {
    diags.iter().map(|d| d.render(sources)).collect::<Vec<_>>().join("")
}

/// The nearest candidate to `name` by edit distance, if it is close enough to be a
/// plausible typo (used for "did you mean" suggestions).
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    let candidates: Vec<&str> = candidates.into_iter().filter(|c| *c != name).collect();
    let close = candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, c)| c);
    // Else a known name the input starts with (`msec` -> `ms`, `tau_mem` -> `tau`).
    close.or_else(|| {
        candidates.iter().filter(|c| c.len() >= 2 && name.starts_with(**c)).max_by_key(|c| c.len()).copied()
    })
}

/// Levenshtein distance with adjacent transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos() {
        assert_eq!(nearest("tua", ["tau", "v", "v_th"]), Some("tau"));
        assert_eq!(nearest("v_hh", ["tau", "v", "v_th"]), Some("v_th"));
        assert_eq!(nearest("xyz", ["tau", "v_th"]), None);
    }
}
