//! Mutations of a model file: token-level edits (delete, duplicate, swap, insert),
//! hostile numbers and units, deep nesting, unbalanced brackets, line edits and raw
//! bytes. Every choice comes from the caller's [`Rng`], so a mutant is a pure function
//! of (file, seed, index).

/// SplitMix64: small, fast and good enough to pick mutations (not for statistics).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    Number,
    Space,
    Punct,
    /// `// ...` or `/* ... */`: skipped by the token-level mutations, which would
    /// otherwise spend much of their time in the stdlib's comments.
    Comment,
}

/// A token of the text: its byte range and kind (a crude lexer: enough to keep
/// mutations near the grammar's units without depending on it).
#[derive(Clone, Copy, Debug)]
struct Token {
    start: usize,
    end: usize,
    kind: Kind,
}

fn tokens(text: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let start = i;
        let kind = if text[i..].starts_with(b"//") {
            while i < text.len() && text[i] != b'\n' {
                i += 1;
            }
            Kind::Comment
        } else if text[i..].starts_with(b"/*") {
            i += 2;
            while i < text.len() && !text[i..].starts_with(b"*/") {
                i += 1;
            }
            i = (i + 2).min(text.len());
            Kind::Comment
        } else if c.is_ascii_whitespace() {
            while i < text.len() && text[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if c.is_ascii_digit() {
            // 1, 1.5, 1e-3, 2.5E+10
            while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'.' || ((text[i] == b'-' || text[i] == b'+') && matches!(text[i - 1], b'e' | b'E'))) {
                i += 1;
            }
            Kind::Number
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < text.len() && (text[i].is_ascii_alphanumeric() || text[i] == b'_' || text[i] >= 0x80) {
                i += 1;
            }
            Kind::Word
        } else {
            i += 1;
            Kind::Punct
        };
        out.push(Token { start, end: i, kind });
    }
    out
}

/// Numbers that break things: zero, signs, extremes, beyond f64, beyond u64.
const NUMBERS: &[&str] = &[
    "0", "-1", "1", "-0", "0.0", "1e308", "-1e308", "1e-308", "1e999", "1e-30", "1e30", "1e9", "4294967296",
    "18446744073709551616", "99999999999999999999999", "NaN", "inf", "0/0", "1e308*1e308", "(0 - 1)", "1/0",
];

/// Grammar tokens, keywords, units and troublemakers to insert.
const INSERTS: &[&str] = &[
    "{", "}", "(", ")", "[", "]", ",", ";", ":", ".", "=", "+=", "->", "+", "-", "*", "/", "^", "<", ">", "==",
    "and", "not", "if", "then", "else", "neuron", "synapse", "network", "import", "fn", "param", "state",
    "input", "let", "spike", "when", "on", "pre", "reset", "refractory", "method", "output", "per_synapse",
    "detach", "trainable", "layer", "readout", "connect", "via", "drive", "train", "dense", "sparse",
    "one_to_one", "procedural", "from", "init", "weight", "delay", "as", "p", "w", "v", "t", "dt", "ms", "mV",
    "nS", "Hz", "s", "exp(", "rand()", "randn()", "normal(0, -1)", "U(1, 0)", "poisson(1e9 Hz)", "\"x.snn\"",
    "\"", "//", "/*", "\n", "\u{0}", "\u{feff}", "é", "😀", "dv/dt = ", "spike when", "on spike {", "v_post",
];

const UNITS: &[&str] = &["ms", "s", "us", "mV", "V", "nS", "pA", "nA", "Hz", "kHz", "1/ms", "ms^2", "mV^64", "ohm"];

/// Applies 1 to 3 random mutations to `text`; returns the mutant and what was done.
pub fn mutate(text: &[u8], rng: &mut Rng) -> (Vec<u8>, Vec<String>) {
    let mut cur = text.to_vec();
    let mut done = Vec::new();
    // Mostly one edit (60 %), so that many mutants still check and reach `run`.
    let n = match rng.below(20) {
        0..12 => 1,
        12..17 => 2,
        _ => 3,
    };
    for _ in 0..n {
        let (next, what) = mutate_once(&cur, rng);
        cur = next;
        done.push(what);
    }
    (cur, done)
}

fn splice(text: &[u8], start: usize, end: usize, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + with.len());
    out.extend_from_slice(&text[..start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&text[end..]);
    out
}

fn mutate_once(text: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let toks = tokens(text);
    let solid: Vec<Token> = toks.iter().copied().filter(|t| !matches!(t.kind, Kind::Space | Kind::Comment)).collect();
    let numbers: Vec<Token> = toks.iter().copied().filter(|t| t.kind == Kind::Number).collect();
    if solid.is_empty() {
        return (INSERTS[rng.below(INSERTS.len())].as_bytes().to_vec(), "replaced an empty file".into());
    }
    let tok_text = |t: &Token| String::from_utf8_lossy(&text[t.start..t.end]).into_owned();
    // Weighted towards edits that keep a file valid (numbers, units), so that many
    // mutants get as far as `run` and `train`.
    const WEIGHTS: [usize; 13] = [8, 8, 6, 18, 12, 10, 8, 8, 6, 8, 3, 2, 3];
    let mut r = rng.below(WEIGHTS.iter().sum());
    let op = WEIGHTS.iter().position(|&w| if r < w { true } else { r -= w; false }).unwrap_or(0);
    match op {
        0 => {
            let t = *rng.pick(&solid);
            (splice(text, t.start, t.end, b""), format!("deleted `{}` at byte {}", tok_text(&t), t.start))
        }
        1 => {
            let t = *rng.pick(&solid);
            let copy = text[t.start..t.end].to_vec();
            (splice(text, t.end, t.end, &[b" ".as_slice(), &copy].concat()), format!("duplicated `{}` at byte {}", tok_text(&t), t.start))
        }
        2 => {
            let (a, b) = (*rng.pick(&solid), *rng.pick(&solid));
            let (a, b) = if a.start <= b.start { (a, b) } else { (b, a) };
            if a.start == b.start {
                return (text.to_vec(), "swapped a token with itself".into());
            }
            let mut out = text[..a.start].to_vec();
            out.extend_from_slice(&text[b.start..b.end]);
            out.extend_from_slice(&text[a.end..b.start]);
            out.extend_from_slice(&text[a.start..a.end]);
            out.extend_from_slice(&text[b.end..]);
            (out, format!("swapped `{}` and `{}`", tok_text(&a), tok_text(&b)))
        }
        3 | 4 if !numbers.is_empty() => {
            let t = *rng.pick(&numbers);
            let n = rng.pick(NUMBERS);
            (splice(text, t.start, t.end, n.as_bytes()), format!("number `{}` at byte {} -> `{n}`", tok_text(&t), t.start))
        }
        5 => nest(text, if numbers.is_empty() || rng.below(5) == 0 { &solid } else { &numbers }, rng),
        6 => {
            let brackets: Vec<Token> = solid.iter().copied().filter(|t| matches!(text[t.start], b'{' | b'}' | b'(' | b')' | b'[' | b']')).collect();
            if brackets.is_empty() || rng.below(2) == 0 {
                let at = rng.pick(&toks).start;
                let b = *rng.pick(&["{", "}", "(", ")", "[", "]"]);
                (splice(text, at, at, b.as_bytes()), format!("inserted `{b}` at byte {at}"))
            } else {
                let t = *rng.pick(&brackets);
                (splice(text, t.start, t.end, b""), format!("deleted bracket `{}` at byte {}", tok_text(&t), t.start))
            }
        }
        7 => {
            let at = rng.pick(&toks).start;
            let s = rng.pick(INSERTS);
            (splice(text, at, at, format!(" {s} ").as_bytes()), format!("inserted `{}` at byte {at}", s.escape_debug()))
        }
        8 => lines(text, rng),
        9 => {
            let units: Vec<Token> = solid.iter().copied().filter(|t| t.kind == Kind::Word && UNITS.contains(&tok_text(t).as_str())).collect();
            if units.is_empty() {
                return (text.to_vec(), "no unit to change".into());
            }
            let t = *rng.pick(&units);
            let u = rng.pick(UNITS);
            (splice(text, t.start, t.end, u.as_bytes()), format!("unit `{}` at byte {} -> `{u}`", tok_text(&t), t.start))
        }
        10 => {
            let at = rng.below(text.len().max(1));
            let b = (rng.next() & 0xff) as u8;
            let end = (at + 1).min(text.len());
            (splice(text, at, end, &[b]), format!("byte {at} -> 0x{b:02x}"))
        }
        11 => {
            let at = rng.below(text.len().max(1));
            (text[..at].to_vec(), format!("truncated at byte {at}"))
        }
        _ => {
            // A number (or another token) replaced by a huge layer size or count.
            let t = if numbers.is_empty() { *rng.pick(&solid) } else { *rng.pick(&numbers) };
            let n = *rng.pick(&["100000", "10000000000", "1000000000000000000000"]);
            (splice(text, t.start, t.end, n.as_bytes()), format!("`{}` at byte {} -> `{n}`", tok_text(&t), t.start))
        }
    }
}

/// Deep nesting around a token: parentheses, unary minus, `exp(`, or a long flat sum.
fn nest(text: &[u8], solid: &[Token], rng: &mut Rng) -> (Vec<u8>, String) {
    let t = *rng.pick(solid);
    let depth = *rng.pick(&[20usize, 200, 3000, 10000]);
    let inner = String::from_utf8_lossy(&text[t.start..t.end]).into_owned();
    let (with, what) = match rng.below(4) {
        0 => (format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth)), "parentheses"),
        1 => (format!("{}{inner}", "-".repeat(depth)), "unary minuses"),
        2 => (format!("{}{inner}{}", "exp(".repeat(depth), ")".repeat(depth)), "nested exp("),
        _ => (vec![inner.clone(); depth].join(" + "), "terms summed"),
    };
    (splice(text, t.start, t.end, with.as_bytes()), format!("{depth} {what} around `{inner}` at byte {}", t.start))
}

/// Deletes, duplicates or swaps whole lines.
fn lines(text: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut ls: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let (i, j) = (rng.below(ls.len()), rng.below(ls.len()));
    let what = match rng.below(3) {
        0 => {
            ls.remove(i);
            format!("deleted line {}", i + 1)
        }
        1 => {
            ls.insert(i, ls[i]);
            format!("duplicated line {}", i + 1)
        }
        _ => {
            ls.swap(i, j);
            format!("swapped lines {} and {}", i + 1, j + 1)
        }
    };
    (ls.join(&b'\n'), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_deterministic_and_differ() {
        let text = b"neuron N {\n    param tau: ms = 10 ms\n    state v = 0\n    dv/dt = -v / tau\n}\n";
        let a: Vec<_> = (0..50).map(|i| mutate(text, &mut Rng::new(i)).0).collect();
        let b: Vec<_> = (0..50).map(|i| mutate(text, &mut Rng::new(i)).0).collect();
        assert_eq!(a, b);
        assert!(a.iter().filter(|m| m.as_slice() != text).count() > 40);
    }

    #[test]
    fn lexer_covers_the_text() {
        let text = b"x = 1.5e-3 ms + f(a_b) // c\n/* d */ y";
        let t = tokens(text);
        assert_eq!(t.first().unwrap().start, 0);
        assert_eq!(t.last().unwrap().end, text.len());
        assert!(t.windows(2).all(|w| w[0].end == w[1].start));
        assert!(t.iter().any(|t| t.kind == Kind::Number && &text[t.start..t.end] == b"1.5e-3"));
        assert_eq!(t.iter().filter(|t| t.kind == Kind::Comment).count(), 2);
    }
}
