//! Reading files and following `import`s (with cycle detection).

use crate::diag::Diagnostic;
use crate::source::{Located, STDLIB_PREFIX, SourceMap, locate};
use crate::span::{FileId, Span};
use crate::syntax::ast;
use crate::syntax::parse_file_recovering;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Extra directories searched by `import` (after the importing file's own).
    pub search_path: Vec<PathBuf>,
}

impl LoadOptions {
    /// The search path from `SNNC_PATH` (colon-separated), plus `extra`.
    pub fn from_env(extra: &[PathBuf]) -> LoadOptions {
        let mut search_path = extra.to_vec();
        if let Ok(p) = std::env::var("SNNC_PATH") {
            search_path.extend(std::env::split_paths(&p));
        }
        LoadOptions { search_path }
    }
}

/// The parsed files of one compilation, imports first.
#[derive(Debug, Default)]
pub struct Loaded {
    pub files: Vec<(FileId, ast::File)>,
    /// Some file had syntax errors: semantic checks are skipped, since the items that
    /// failed to parse would only cause misleading "unknown name" errors.
    pub syntax_errors: bool,
}

impl Loaded {
    pub fn networks(&self) -> Vec<&ast::Network> {
        self.files
            .iter()
            .flat_map(|(_, f)| f.items.iter())
            .filter_map(|i| match i {
                ast::Item::Network(n) => Some(n),
                _ => None,
            })
            .collect()
    }
}

/// Loads `path` and everything it imports.
pub fn load(path: &Path, opts: &LoadOptions, sources: &mut SourceMap) -> (Loaded, Vec<Diagnostic>) {
    let mut st = State { opts, loaded: Loaded::default(), diags: Vec::new(), stack: Vec::new() };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = canonical_key(path);
            let id = sources.add(path.display().to_string(), key, text);
            st.visit(id, path.parent().map(Path::to_path_buf), sources);
        }
        Err(e) => st.diags.push(io_error(path, &e)),
    }
    (st.loaded, st.diags)
}

/// Loads in-memory text as if it were a file named `name` in the current directory.
pub fn load_source(
    name: &str,
    text: &str,
    opts: &LoadOptions,
    sources: &mut SourceMap,
) -> (Loaded, Vec<Diagnostic>) {
    let mut st = State { opts, loaded: Loaded::default(), diags: Vec::new(), stack: Vec::new() };
    let id = sources.add_virtual(name, text);
    st.visit(id, None, sources);
    (st.loaded, st.diags)
}

/// A diagnostic for a file that cannot be read (no source line to show).
pub fn io_error(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error("E0003", Span::default(), format!("cannot read `{}`: {e}", path.display()))
}

fn canonical_key(path: &Path) -> String {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

struct State<'a> {
    opts: &'a LoadOptions,
    loaded: Loaded,
    diags: Vec<Diagnostic>,
    /// Files being loaded (for cycle detection), with the span of the import that led here.
    stack: Vec<FileId>,
}

impl State<'_> {
    fn visit(&mut self, id: FileId, dir: Option<PathBuf>, sources: &mut SourceMap) {
        let (file, syntax) = parse_file_recovering(id, sources.text(id));
        if !syntax.is_empty() {
            self.loaded.syntax_errors = true;
            self.diags.extend(syntax);
        }
        self.stack.push(id);
        for item in &file.items {
            let ast::Item::Import(imp) = item else { continue };
            let is_stdlib = sources.name(id).starts_with(STDLIB_PREFIX);
            let from_dir = if is_stdlib { None } else { dir.as_deref() };
            // Imports inside the stdlib stay inside it: a user file on the search path
            // must not replace the stdlib's own dependencies.
            let search: &[PathBuf] = if is_stdlib { &[] } else { &self.opts.search_path };
            let located = locate(&imp.path, from_dir, search);
            let (key, name, text, next_dir) = match located {
                Some(Located::Disk(p)) => {
                    let text = match std::fs::read_to_string(&p) {
                        Ok(t) => t,
                        Err(e) => {
                            self.diags.push(
                                Diagnostic::error("E0003", imp.span, format!("cannot read `{}`: {e}", p.display()))
                                    .with_label("imported here"),
                            );
                            continue;
                        }
                    };
                    (canonical_key(&p), p.display().to_string(), text, p.parent().map(Path::to_path_buf))
                }
                Some(Located::Stdlib(n, text)) => {
                    let name = format!("{STDLIB_PREFIX}{n}");
                    (name.clone(), name, text.to_string(), None)
                }
                None if let Some(dir) = directory_named(&imp.path, from_dir, search) => {
                    self.diags.push(
                        Diagnostic::error("E0004", imp.span, format!("cannot import `{}`: it is a directory", imp.path))
                            .with_label("a directory, not a file")
                            .with_note(format!("found the directory `{}`", dir.display()))
                            .with_help("import one `.snn` file of it, e.g. `import \"dir/model.snn\"`"),
                    );
                    continue;
                }
                None => {
                    let mut d = Diagnostic::error("E0004", imp.span, format!("cannot find `{}` to import", imp.path))
                        .with_label("no such file")
                        .with_note("searched: the importing file's directory, -I/SNNC_PATH directories, and the standard library");
                    let stdlib: Vec<&str> = crate::source::STDLIB.iter().map(|(n, _)| *n).collect();
                    let short = imp.path.rsplit('/').next().unwrap_or(&imp.path);
                    if let Some(n) = crate::diag::nearest(short, stdlib) {
                        d = d.with_help(format!("the standard library has `{n}`"));
                    }
                    self.diags.push(d);
                    continue;
                }
            };
            if let Some(existing) = sources.find_key(&key) {
                if self.stack.contains(&existing) {
                    let chain: Vec<String> = self.stack[self.stack.iter().position(|f| *f == existing).unwrap_or(0)..]
                        .iter()
                        .map(|f| format!("`{}`", sources.name(*f)))
                        .chain(std::iter::once(format!("`{}`", sources.name(existing))))
                        .collect();
                    self.diags.push(
                        Diagnostic::error("E0005", imp.span, "cyclic import")
                            .with_label(format!("`{}` is already being imported", imp.path))
                            .with_note(format!("import chain: {}", chain.join(" -> ")))
                            .with_help("move the shared models into a file that both import"),
                    );
                }
                continue; // already loaded (diamond imports are fine)
            }
            let new_id = sources.add(name, key, text);
            self.visit(new_id, next_dir, sources);
        }
        self.stack.pop();
        self.loaded.files.push((id, file));
    }
}

/// The directory an import path names where the search looks for files (an import of a
/// directory is a mistake worth its own message, not "no such file").
fn directory_named(path: &str, from_dir: Option<&Path>, search: &[PathBuf]) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.is_dir().then(|| p.to_path_buf());
    }
    from_dir.into_iter().chain(search.iter().map(|d| d.as_path())).map(|d| d.join(p)).find(|c| c.is_dir())
}
