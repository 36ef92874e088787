//! Diagnostics: what went wrong, where, and what would be valid.
//!
//! Every pass reports problems as [`Diagnostic`] values and keeps going where it can,
//! so one run shows as many errors as possible. Rendering (plain text for snapshots
//! and pipes, colour for terminals) is done by `codespan-reporting`.

use crate::source::SourceMap;
use crate::span::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFiles;
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
        self.to_codespan_at(&|_, o| o)
    }

    /// The codespan diagnostic, each offset of file `f` moved by `at(f, offset)`.
    fn to_codespan_at(&self, at: &dyn Fn(usize, usize) -> usize) -> CsDiagnostic<usize> {
        let range = |s: &Span| at(s.file, s.start as usize)..at(s.file, s.end as usize);
        let base = match self.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        };
        let mut labels =
            vec![Label::primary(self.span.file, range(&self.span)).with_message(&self.label)];
        for (span, text) in &self.related {
            labels.push(Label::secondary(span.file, range(span)).with_message(text));
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
        let fallback = |_| format!("error[{}]: {}\n", self.code, self.message);
        match self.shortened(sources) {
            Some((files, d)) => term::emit_into_string(&config, &files, &d).unwrap_or_else(fallback),
            None => term::emit_into_string(&config, sources.files(), &self.to_codespan()).unwrap_or_else(fallback),
        }
    }

    /// If a line this diagnostic shows is longer than [`MAX_SHOWN_LINE`], the files
    /// with such lines cut down around the underlined places, and the diagnostic moved
    /// onto them (a generated model can have a line of megabytes).
    fn shortened<'s>(&self, sources: &'s SourceMap) -> Option<(Shortened<'s>, CsDiagnostic<usize>)> {
        let spans: Vec<Span> = std::iter::once(self.span).chain(self.related.iter().map(|r| r.0)).collect();
        let long = |s: &Span| {
            let text = sources.text(s.file);
            let at = (s.start as usize).min(text.len());
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            end - start > MAX_SHOWN_LINE
        };
        if !spans.iter().any(long) {
            return None;
        }
        let mut files = SimpleFiles::new();
        let mut maps = Vec::new();
        for id in 0.. {
            if sources.files().get(id).is_err() {
                break;
            }
            let starts: Vec<usize> = spans.iter().filter(|s| s.file == id).map(|s| s.start as usize).collect();
            let (text, map) = if starts.is_empty() { (String::new(), Vec::new()) } else { shorten(sources.text(id), &starts) };
            files.add(sources.name(id).to_string(), text);
            maps.push(map);
        }
        let at = |f: usize, o: usize| maps.get(f).filter(|m| !m.is_empty()).map_or(o, |m| moved(m, o));
        let d = self.to_codespan_at(&at);
        Some((Shortened { files, maps, sources }, d))
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

/// The longest source line a diagnostic shows whole; longer ones are cut around the
/// underlined places.
pub const MAX_SHOWN_LINE: usize = 200;

/// A kept piece of a shortened text: (start in the original, end, start in the new).
type Piece = (usize, usize, usize);

/// `text` with each line longer than [`MAX_SHOWN_LINE`] cut to a window around the
/// first of `starts` in it (or its beginning), marked `...`; and the kept pieces.
fn shorten(text: &str, starts: &[usize]) -> (String, Vec<Piece>) {
    let snap = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (mut out, mut pieces, mut line) = (String::new(), Vec::new(), 0);
    while line < text.len() {
        let end = text[line..].find('\n').map_or(text.len(), |i| line + i + 1);
        let (mut from, mut to) = (line, end);
        if end - line > MAX_SHOWN_LINE {
            let first = starts.iter().copied().filter(|s| (line..end).contains(s)).min().unwrap_or(line);
            from = snap(first.saturating_sub(MAX_SHOWN_LINE / 3).max(line));
            to = snap((from + MAX_SHOWN_LINE).min(end));
        }
        if from > line {
            out.push_str("...");
        }
        pieces.push((from, to, out.len()));
        out.push_str(&text[from..to]);
        if to < end {
            out.push_str(if text[..end].ends_with('\n') { "...\n" } else { "..." });
        }
        line = end;
    }
    (out, pieces)
}

/// Files with long lines cut ([`shorten`]) that still report the original columns.
struct Shortened<'s> {
    files: SimpleFiles<String, String>,
    /// Per file, its kept pieces (empty: a file the diagnostic does not show).
    maps: Vec<Vec<Piece>>,
    sources: &'s SourceMap,
}

impl<'a> codespan_reporting::files::Files<'a> for Shortened<'_> {
    type FileId = usize;
    type Name = String;
    type Source = &'a str;

    fn name(&'a self, id: usize) -> Result<String, codespan_reporting::files::Error> {
        self.files.name(id)
    }
    fn source(&'a self, id: usize) -> Result<&'a str, codespan_reporting::files::Error> {
        self.files.source(id)
    }
    fn line_index(&'a self, id: usize, byte: usize) -> Result<usize, codespan_reporting::files::Error> {
        self.files.line_index(id, byte)
    }
    fn line_range(&'a self, id: usize, line: usize) -> Result<std::ops::Range<usize>, codespan_reporting::files::Error> {
        self.files.line_range(id, line)
    }
    /// The column in the original file (lines are kept, only their text is cut).
    fn column_number(&'a self, id: usize, line: usize, byte: usize) -> Result<usize, codespan_reporting::files::Error> {
        let pieces = self.maps.get(id).map_or(&[][..], |m| m.as_slice());
        let i = pieces.partition_point(|p| p.2 + (p.1 - p.0) < byte);
        let original = pieces.get(i).map_or(byte, |&(from, _, new)| from + byte.saturating_sub(new));
        self.sources.files().column_number(id, line, original)
    }
}

/// Where offset `o` of the original text is in the shortened one (a cut-out offset goes
/// to the nearest kept place).
fn moved(pieces: &[Piece], o: usize) -> usize {
    let i = pieces.partition_point(|p| p.1 < o);
    match pieces.get(i) {
        Some(&(from, _, new)) if o < from => new,
        Some(&(from, _, new)) => new + (o - from),
        None => pieces.last().map_or(0, |&(from, to, new)| new + (to - from)),
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
