//! Quarantine reports: every input that cannot be read is set aside with a
//! report naming the archive (or file), the entry and the reason, and the rest
//! of the input is still processed.
//!
//! Reasons never quote identifying values (a bad 記号 is reported by field
//! name, not by value), so a report can be shown and logged.

use std::fmt;

use serde::Serialize;

/// Why an input was set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// The file could not be opened or is not a zip/CSV at all.
    Unreadable(String),
    /// The archive file is larger than the configured limit.
    ArchiveTooLarge {
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The archive has more entries than the configured limit.
    TooManyEntries {
        /// Its number of entries.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A zip entry name is absolute, contains `..`, or leaves the root folder.
    PathEscapesRoot,
    /// An entry is not where the archive layout puts anything, or the archive holds
    /// fewer documents than its index declares.
    Layout(String),
    /// A zip entry inflates past the configured limit.
    EntryTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The bytes are not UTF-8, or the XML declaration names another encoding.
    Encoding(String),
    /// The XML has a DOCTYPE (and so possibly entity declarations).
    Doctype,
    /// The XML is not well formed.
    MalformedXml(String),
    /// The root element is not the expected element in the expected namespace.
    WrongNamespace(String),
    /// The checkup document has no (or more than one) `recordTarget`.
    RecordTarget(String),
    /// A required field is missing or invalid (named, never quoted).
    Field(String),
    /// An observation value does not fit its type.
    BadValue(String),
    /// A CSV row or header cannot be mapped.
    Csv(String),
    /// Two people share one canonical identity but differ in 枝番.
    IdentityConflict(String),
}

/// Longest reason text shown: a quoted value from hostile input (a 64 KiB attribute
/// or cell) must not turn a report line into a copy of the input.
const MAX_REASON_CHARS: usize = 300;

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.full_text();
        match full.char_indices().nth(MAX_REASON_CHARS) {
            Some((cut, _)) => write!(
                f,
                "{}… ({} more bytes)",
                full.get(..cut).unwrap_or_default(),
                full.len() - cut
            ),
            None => f.write_str(&full),
        }
    }
}

impl Reason {
    fn full_text(&self) -> String {
        struct Full<'a>(&'a Reason);
        impl fmt::Display for Full<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_full(f)
            }
        }
        Full(self).to_string()
    }

    fn write_full(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unreadable(why) => write!(f, "unreadable: {why}"),
            Reason::ArchiveTooLarge { size, limit } => {
                write!(f, "archive is {size} bytes, over the limit of {limit}")
            }
            Reason::TooManyEntries { count, limit } => {
                write!(f, "archive has {count} entries, over the limit of {limit}")
            }
            Reason::PathEscapesRoot => {
                f.write_str("entry path is absolute, contains `..` or leaves the root folder")
            }
            Reason::Layout(why) => write!(f, "archive layout: {why}"),
            Reason::EntryTooLarge { limit } => {
                write!(f, "entry inflates past the limit of {limit} bytes")
            }
            Reason::Encoding(why) => write!(f, "encoding: {why}"),
            Reason::Doctype => f.write_str("DOCTYPE or entity declaration is not allowed"),
            Reason::MalformedXml(why) => write!(f, "malformed XML: {why}"),
            Reason::WrongNamespace(why) => write!(f, "wrong namespace: {why}"),
            Reason::RecordTarget(why) => write!(f, "recordTarget: {why}"),
            Reason::Field(why) => write!(f, "{why}"),
            Reason::BadValue(why) => write!(f, "bad value: {why}"),
            Reason::Csv(why) => write!(f, "csv: {why}"),
            Reason::IdentityConflict(why) => write!(f, "identity conflict: {why}"),
        }
    }
}

impl Reason {
    /// The stable machine-readable kind, e.g. `path-escapes-root`.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Unreadable(_) => "unreadable",
            Reason::ArchiveTooLarge { .. } => "archive-too-large",
            Reason::TooManyEntries { .. } => "too-many-entries",
            Reason::PathEscapesRoot => "path-escapes-root",
            Reason::Layout(_) => "layout",
            Reason::EntryTooLarge { .. } => "entry-too-large",
            Reason::Encoding(_) => "encoding",
            Reason::Doctype => "doctype",
            Reason::MalformedXml(_) => "malformed-xml",
            Reason::WrongNamespace(_) => "wrong-namespace",
            Reason::RecordTarget(_) => "record-target",
            Reason::Field(_) => "field",
            Reason::BadValue(_) => "bad-value",
            Reason::Csv(_) => "csv",
            Reason::IdentityConflict(_) => "identity-conflict",
        }
    }
}

/// One input set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quarantine {
    /// The archive or file, as given on the command line.
    pub archive: String,
    /// The zip entry or CSV row, when the problem is inside the file.
    pub entry: Option<String>,
    /// Why.
    pub reason: Reason,
}

impl Quarantine {
    /// A report for `entry` of `archive`.
    pub fn new(archive: impl Into<String>, entry: Option<String>, reason: Reason) -> Self {
        Quarantine {
            archive: archive.into(),
            entry,
            reason,
        }
    }
}

impl fmt::Display for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "`{}` entry `{}`: {}", self.archive, entry, self.reason),
            None => write!(f, "`{}`: {}", self.archive, self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_archive_entry_and_reason() {
        let q = Quarantine::new(
            "a.zip",
            Some("a/../evil.xml".into()),
            Reason::PathEscapesRoot,
        );
        let shown = q.to_string();
        assert!(shown.contains("`a.zip`") && shown.contains("`a/../evil.xml`"));
        assert!(shown.contains("leaves the root"));
        assert_eq!(q.reason.kind(), "path-escapes-root");
    }

    #[test]
    fn serializes_kind_and_detail() {
        let q = Quarantine::new("a.zip", None, Reason::EntryTooLarge { limit: 10 });
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["reason"]["kind"], "entry-too-large");
        assert_eq!(json["reason"]["detail"]["limit"], 10);
    }
}
