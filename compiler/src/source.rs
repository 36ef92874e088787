//! Loaded source files, and the embedded standard library.

use crate::span::FileId;
use codespan_reporting::files::SimpleFiles;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/stdlib_files.rs"));

/// The display name of stdlib files: `<stdlib>/lif.snn`.
pub const STDLIB_PREFIX: &str = "<stdlib>/";

/// Every file the compiler has read, so diagnostics can quote them.
#[derive(Default)]
pub struct SourceMap {
    files: SimpleFiles<String, String>,
    /// The canonical on-disk path (or `<stdlib>/name`) of each file, for import cycles.
    keys: Vec<String>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file under a display name; `key` identifies it for import de-duplication.
    pub fn add(&mut self, name: impl Into<String>, key: impl Into<String>, text: impl Into<String>) -> FileId {
        self.keys.push(key.into());
        self.files.add(name.into(), text.into())
    }

    /// Adds an in-memory source (tests, `snnc fmt -`), keyed by its name.
    pub fn add_virtual(&mut self, name: &str, text: &str) -> FileId {
        self.add(name, name, text)
    }

    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id).map(|f| f.source().as_str()).unwrap_or("")
    }

    pub fn name(&self, id: FileId) -> &str {
        self.files.get(id).map(|f| f.name().as_str()).unwrap_or("<unknown>")
    }

    pub fn key(&self, id: FileId) -> &str {
        &self.keys[id]
    }

    pub fn find_key(&self, key: &str) -> Option<FileId> {
        self.keys.iter().position(|k| k == key)
    }

    pub fn files(&self) -> &SimpleFiles<String, String> {
        &self.files
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let text = self.text(id);
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
        (line, col)
    }
}

/// Where an import was found.
#[derive(Clone, Debug, PartialEq)]
pub enum Located {
    Disk(PathBuf),
    Stdlib(&'static str, &'static str),
}

/// Resolves `import "path"` written in a file living in `from_dir`.
///
/// Search order: relative to the importing file, then each directory of the search
/// path (`-I`, `SNNC_PATH`), then the embedded stdlib (where a leading `stdlib/` is
/// ignored, so `import "stdlib/lif.snn"` works from anywhere).
pub fn locate(path: &str, from_dir: Option<&Path>, search: &[PathBuf]) -> Option<Located> {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.is_file().then(|| Located::Disk(p.to_path_buf()));
    }
    let dirs = from_dir.into_iter().chain(search.iter().map(|d| d.as_path()));
    for dir in dirs {
        let cand = dir.join(p);
        if cand.is_file() {
            return Some(Located::Disk(cand));
        }
    }
    let short = path.strip_prefix("stdlib/").unwrap_or(path);
    STDLIB
        .iter()
        .find(|(name, _)| *name == short)
        .map(|(name, text)| Located::Stdlib(name, text))
}
