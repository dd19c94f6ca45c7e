//! Source files and positions in them: byte offsets from the TOML parser
//! become `file:line:col` for people.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A place in a rule or config file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl Location {
    /// The start of a file, for errors about the file as a whole.
    pub fn file_start(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
        }
    }
}

/// One loaded file: its path as the user gave it and its text.
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path,
            text,
            line_starts,
        }
    }

    pub fn location(&self, offset: usize) -> Location {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        Location {
            file: self.path.clone(),
            line,
            column,
        }
    }

    pub fn span_location(&self, span: Option<Range<usize>>) -> Location {
        self.location(span.map_or(0, |s| s.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let source = Source::new("r.toml".into(), "a = 1\nbæ = 2\n".into());
        assert_eq!(source.location(0).to_string(), "r.toml:1:1");
        assert_eq!(source.location(6).to_string(), "r.toml:2:1");
        // Columns count characters, not bytes.
        assert_eq!(source.location(10).to_string(), "r.toml:2:4");
    }
}
