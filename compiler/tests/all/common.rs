//! Helpers shared by the front-end test files (`crate::common`).

/// The `Debug` form of an AST with every `Span { file: F, start: S, end: E }` removed,
/// so two parses of differently laid out text compare equal when they mean the same.
/// String literals in the debug output (names, numbers as written, paths) are copied
/// unchanged, even if they happen to contain the text `Span {`.
pub fn strip_spans(debug: &str) -> String {
    let b = debug.as_bytes();
    let mut out = String::with_capacity(debug.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] == b'"' {
            // Skip a string literal, honouring backslash escapes.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if let Some(len) = span_at(&debug[i..]) {
            out.push_str(&debug[copied..i]);
            out.push_str("_");
            i += len;
            copied = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&debug[copied.min(debug.len())..]);
    out
}

/// The length of `Span { file: N, start: N, end: N }` at the start of `s`, if it is one.
fn span_at(s: &str) -> Option<usize> {
    let mut rest = s;
    for (i, field) in ["file", "start", "end"].iter().enumerate() {
        let prefix = if i == 0 { "Span { " } else { ", " };
        rest = rest.strip_prefix(prefix)?.strip_prefix(field)?.strip_prefix(": ")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &rest[digits..];
    }
    rest = rest.strip_prefix(" }")?;
    Some(s.len() - rest.len())
}
