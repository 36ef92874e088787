//! Front end, part 1: text → AST (`parse`) and AST → canonical text (`format`).
pub mod ast;
pub mod format;
pub mod parse;

pub use parse::{parse_expr, parse_file, parse_file_recovering};

/// The reserved words (the grammar's `keyword` rule, docs/language.md §2): never names.
/// Tools that make names (the NIR importer) avoid them.
pub const KEYWORDS: &[&str] = &[
    "neuron", "synapse", "network", "import", "fn", "param", "state", "input", "let", "spike", "when", "surrogate", "on", "reset", "refractory",
    "clamp", "method", "output", "per_synapse", "detach", "trainable", "if", "then", "else", "and", "or", "not", "layer", "readout", "connect",
    "via", "drive", "train", "dense", "sparse", "one_to_one", "procedural", "from", "init", "weight", "no_self", "bias", "delay", "as",
    "excitatory", "inhibitory", "adapter", "conv", "pool", "dropout", "batch_norm",
];

#[cfg(test)]
mod tests {
    /// [`super::KEYWORDS`] is the grammar's `keyword` rule, word for word.
    #[test]
    fn keywords_are_the_grammars() {
        let grammar = include_str!("grammar.pest");
        let rule = &grammar[grammar.find("keyword = @{").expect("keyword rule")..];
        let rule = &rule[..rule.find("~ !ident_char").expect("end of the rule")];
        let mut words: Vec<&str> = rule.split('"').skip(1).step_by(2).collect();
        let mut ours = super::KEYWORDS.to_vec();
        words.sort_unstable();
        ours.sort_unstable();
        assert_eq!(words, ours);
    }
}

