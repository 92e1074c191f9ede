//! The crate's error type and the helpers that turn source offsets into line numbers.

use std::path::PathBuf;

/// Everything that can go wrong while loading the catalog, the schema or the policies.
///
/// Authorization itself never returns an error: it answers with a denying
/// [`Decision`](crate::Decision) instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The catalog is not valid TOML or breaks a catalog rule.
    #[error("invalid catalog `{file}` at line {line}: {message}")]
    Catalog {
        /// The catalog's file name.
        file: String,
        /// The 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The Cedar schema does not parse.
    #[error("invalid schema `{file}` at line {line}: {message}")]
    Schema {
        /// The schema's file name.
        file: String,
        /// The 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A policy file does not parse, does not validate against the schema, or names
    /// a category the catalog does not know.
    #[error("invalid policy file `{file}` at line {line}: {message}")]
    Policy {
        /// The policy file's name.
        file: String,
        /// The 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The policy directory holds no `*.cedar` file (which would deny everything).
    #[error("no policy file (`*.cedar`) in `{}`", dir.display())]
    NoPolicies {
        /// The directory that was searched.
        dir: PathBuf,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The 1-based line number of byte `offset` in `text` (the last line if past the end).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The line of the first label of a Cedar diagnostic, or line 1 when it has none.
pub(crate) fn diagnostic_line(text: &str, diagnostic: &dyn miette::Diagnostic) -> usize {
    diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map_or(1, |label| line_of(text, label.offset()))
}

/// The message of a Cedar diagnostic with its help text, on one line.
pub(crate) fn diagnostic_message(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(" (");
        message.push_str(&help.to_string());
        message.push(')');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        let text = "a\nbb\nccc";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 1), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 5), 3);
        assert_eq!(line_of(text, 999), 3);
    }

    #[test]
    fn line_of_survives_an_offset_inside_a_character() {
        let text = "身長\n体重";
        assert_eq!(line_of(text, 1), 1);
        assert_eq!(line_of(text, 8), 2);
    }
}
