//! Front end, part 1: text → AST (`parse`) and AST → canonical text (`format`).
pub mod ast;
pub mod format;
pub mod parse;

pub use parse::{parse_expr, parse_file, parse_file_recovering};
