//! Streaming reader of 特定健診 zip archives: entries are read one at a time
//! from the file (never the whole archive, nor its central directory, in
//! memory: see `zipdir`), each capped at a configured inflated size, and any
//! entry whose path is absolute, contains `..` or leaves the root folder is
//! refused. Nothing is ever written to disk.
//!
//! The central directory is walked twice: once to check all of it and find the
//! root folder and its index, then to read the entries.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cda::parse_document;
use crate::domain::{CheckupDocument, DocumentKind};
use crate::index::{IndexInfo, parse_index};
use crate::quarantine::{Quarantine, Reason};

mod zipdir;

pub use zipdir::Packed;
use zipdir::{Directory, Entry, Walk};

/// Size limits for archives; every one of them is a quarantine, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest archive file accepted, in bytes.
    pub max_archive_bytes: u64,
    /// Largest inflated size of one entry, in bytes.
    pub max_entry_bytes: u64,
    /// Most entries accepted in one archive.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 4 * 1024 * 1024 * 1024,
            max_entry_bytes: 8 * 1024 * 1024,
            max_entries: 500_000,
        }
    }
}

/// What scanning an archive yields, one entry at a time.
#[derive(Debug)]
pub enum ArchiveItem {
    /// A checkup or guidance document that parsed (its `kind` says which).
    Checkup {
        /// The entry it came from.
        entry: String,
        /// The document.
        document: Box<CheckupDocument>,
    },
    /// An entry (or the whole archive) set aside.
    Quarantined(Quarantine),
}

/// Totals of one archive scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    /// The index, when it was present and readable.
    pub index: Option<IndexInfo>,
    /// Checkup and guidance documents parsed.
    pub documents: usize,
    /// Entries (or the archive) quarantined.
    pub quarantined: usize,
    /// Entries skipped as not ours (`XSD/`, `CLAIMS/`).
    pub skipped: usize,
}

/// Where an entry sits inside the root folder.
enum Kind {
    Index,
    Summary,
    Document(DocumentKind),
    /// `CLAIMS/…` and `DATA/c….xml`: not ours, but counted against the index.
    Claims,
    /// The root folder itself, `XSD/…`, and folders: not ours.
    Other,
    /// Anywhere the layout puts nothing (`data/x.txt`, `DATA/sub/h1.xml`, `notes.txt`).
    Stray,
}

/// The archive layout, for messages.
const LAYOUT: &str =
    "ix08_V08.xml, su08_V08.xml, DATA/h….xml, DATA/g….xml, DATA/c….xml, CLAIMS/, XSD/";

/// Reads `path` entry by entry, handing every parsed document and every
/// quarantine report to `sink`.
pub fn scan_archive(
    path: &Path,
    limits: &Limits,
    sink: &mut dyn FnMut(ArchiveItem),
) -> ArchiveSummary {
    let mut documents = 0;
    let mut failed = 0;
    let mut summary = scan_entries(path, limits, &mut |entry| match entry {
        RawEntry::Checkup {
            entry,
            fallback_id,
            kind,
            packed,
        } => match inflate(&packed).and_then(|bytes| parse_document(&bytes, &fallback_id, kind)) {
            Ok(document) => {
                documents += 1;
                sink(ArchiveItem::Checkup {
                    entry,
                    document: Box::new(document),
                });
            }
            Err(reason) => {
                failed += 1;
                sink(ArchiveItem::Quarantined(Quarantine::new(
                    path.display().to_string(),
                    Some(entry),
                    reason,
                )));
            }
        },
        RawEntry::Quarantined(q) => sink(ArchiveItem::Quarantined(q)),
    });
    summary.documents = documents;
    summary.quarantined += failed;
    summary
}

/// One entry of an archive before its document is parsed: what
/// [`scan_entries`] yields, so that the parsing can run on other threads.
#[derive(Debug)]
pub enum RawEntry {
    /// A checkup (`DATA/h….xml`) or guidance (`DATA/g….xml`) document's bytes, to
    /// parse with [`parse_document`].
    Checkup {
        /// The entry name.
        entry: String,
        /// The document id to use when the document has none (`<root>/<entry>`).
        fallback_id: String,
        /// Which document the entry's name says it is.
        kind: DocumentKind,
        /// The stored bytes, to inflate ([`Packed::inflate`]) where they are parsed.
        packed: Packed,
    },
    /// An entry (or the whole archive) set aside.
    Quarantined(Quarantine),
}

/// Reads `path` entry by entry like [`scan_archive`], handing checkup documents
/// over unparsed. The index and summary are checked here; `documents` in the
/// returned totals stays 0 (nothing was parsed).
pub fn scan_entries(
    path: &Path,
    limits: &Limits,
    sink: &mut dyn FnMut(RawEntry),
) -> ArchiveSummary {
    let mut out = Out {
        label: path.display().to_string(),
        summary: ArchiveSummary::default(),
        sink,
        records_seen: 0,
    };
    scan_into(path, limits, &mut out);
    out.summary
}

/// The sink plus the running totals.
struct Out<'s> {
    label: String,
    summary: ArchiveSummary,
    sink: &'s mut dyn FnMut(RawEntry),
    /// Entries under `DATA/` and `CLAIMS/`, read or not: what the index's count counts.
    records_seen: u64,
}

impl Out<'_> {
    fn quarantine(&mut self, entry: Option<String>, reason: Reason) {
        self.summary.quarantined += 1;
        (self.sink)(RawEntry::Quarantined(Quarantine::new(
            &self.label,
            entry,
            reason,
        )));
    }
}

fn scan_into(path: &Path, limits: &Limits, out: &mut Out<'_>) {
    let opened = File::open(path).and_then(|f| f.metadata().map(|m| (f, m.len())));
    let (mut file, size) = match opened {
        Ok(v) => v,
        Err(e) => return out.quarantine(None, Reason::Unreadable(e.to_string())),
    };
    if size > limits.max_archive_bytes {
        let limit = limits.max_archive_bytes;
        return out.quarantine(None, Reason::ArchiveTooLarge { size, limit });
    }
    let not_a_zip = |e: String| Reason::Unreadable(format!("not a zip archive: {e}"));
    let dir = match zipdir::locate(&mut file) {
        Ok(dir) => dir,
        Err(e) => return out.quarantine(None, not_a_zip(e)),
    };
    if dir.entries > limits.max_entries as u64 {
        let count = usize::try_from(dir.entries).unwrap_or(usize::MAX);
        let limit = limits.max_entries;
        return out.quarantine(None, Reason::TooManyEntries { count, limit });
    }
    // First walk: the whole directory is readable, and where the root folder is.
    let mut roots = Roots::new(path);
    let walked = walk(path, &dir, &mut |entry| roots.see(&entry.name));
    if let Err(e) = walked {
        return out.quarantine(None, not_a_zip(e));
    }
    let (root, has_index) = roots.root();
    // Second walk: the entries, one at a time.
    let walked = walk(path, &dir, &mut |entry| {
        scan_entry(&mut file, entry, &root, limits, out);
    });
    if let Err(e) = walked {
        // Only when the file changed between the walks.
        return out.quarantine(None, not_a_zip(e));
    }
    if !has_index {
        let reason = Reason::Field("archive has no ix08_V08.xml index".into());
        out.quarantine(Some(format!("{root}/ix08_V08.xml")), reason);
    }
    // The count both ways: fewer files than declared were lost on the way, more were
    // added to the archive after the index was made.
    let declared = out.summary.index.as_ref().and_then(|i| i.count);
    if let Some(declared) = declared.filter(|n| *n != out.records_seen) {
        let reason = Reason::Layout(format!(
            "the index declares {declared} records, the archive holds {} under DATA/ and CLAIMS/",
            out.records_seen
        ));
        out.quarantine(Some(format!("{root}/ix08_V08.xml")), reason);
    }
}

/// Calls `each` with every entry of the central directory, read from a handle
/// of its own.
fn walk(path: &Path, dir: &Directory, each: &mut dyn FnMut(Entry)) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    for entry in Walk::new(file, dir)? {
        each(entry?);
    }
    Ok(())
}

/// Checks, reads and hands on one entry.
fn scan_entry(file: &mut File, entry: Entry, root: &str, limits: &Limits, out: &mut Out<'_>) {
    let kind = match classify(&entry.name, root) {
        Ok(kind) => kind,
        Err(reason) => return out.quarantine(Some(entry.name), reason),
    };
    let folder = entry.name.ends_with(['/', '\\']);
    match kind {
        Kind::Other | Kind::Claims | Kind::Stray if folder => return,
        Kind::Other => {
            out.summary.skipped += 1;
            return;
        }
        Kind::Claims => {
            out.records_seen += 1;
            out.summary.skipped += 1;
            return;
        }
        Kind::Stray => {
            let reason = Reason::Layout(format!("not a place the layout has ({LAYOUT})"));
            return out.quarantine(Some(entry.name), reason);
        }
        Kind::Document(_) => out.records_seen += 1,
        Kind::Index | Kind::Summary => {}
    }
    if let Kind::Document(kind) = kind {
        // Inflated and parsed where the caller parses (on the import's worker threads).
        let packed = match read_document(file, &entry, limits.max_entry_bytes) {
            Ok(packed) => packed,
            Err(reason) => return out.quarantine(Some(entry.name), reason),
        };
        let fallback_id = format!("{root}/{}", tail(&entry.name));
        return (out.sink)(RawEntry::Checkup {
            entry: entry.name,
            fallback_id,
            kind,
            packed,
        });
    }
    let bytes = match read_entry(file, &entry, limits.max_entry_bytes) {
        Ok(bytes) => bytes,
        Err(reason) => return out.quarantine(Some(entry.name), reason),
    };
    let name = entry.name;
    match kind {
        Kind::Index => match parse_index(&bytes, "index") {
            Ok(info) => out.summary.index = Some(info),
            Err(reason) => out.quarantine(Some(name), reason),
        },
        Kind::Summary => {
            if let Err(reason) = parse_index(&bytes, "summary") {
                out.quarantine(Some(name), reason);
            }
        }
        Kind::Document(_) | Kind::Claims | Kind::Other | Kind::Stray => {}
    }
}

/// Inflates a document read by [`scan_entries`]: more than the limit, or bytes that do
/// not match the CRC-32, is a quarantine.
pub fn inflate(packed: &Packed) -> Result<Vec<u8>, Reason> {
    let bytes = packed
        .inflate()
        .map_err(|e| Reason::Unreadable(e.to_string()))?;
    let limit = packed.limit();
    if bytes.len() as u64 > limit {
        return Err(Reason::EntryTooLarge { limit });
    }
    Ok(bytes)
}

/// Reads `entry`'s stored bytes to inflate later ([`inflate`]); a declared size over
/// the limit is a quarantine before anything is read. Every entry is read this way.
fn read_document(file: &mut File, entry: &Entry, limit: u64) -> Result<Packed, Reason> {
    // Deflate adds at most 5 bytes a 64 KiB stored block to what it cannot shrink.
    let stored_limit = limit.saturating_add(limit / 64).saturating_add(1024);
    if entry.size > limit || entry.compressed() > stored_limit {
        return Err(Reason::EntryTooLarge { limit });
    }
    zipdir::read_packed(file, entry, limit).map_err(Reason::Unreadable)
}

/// Inflates `entry`, at most `limit` bytes; more is a quarantine.
fn read_entry(file: &mut File, entry: &Entry, limit: u64) -> Result<Vec<u8>, Reason> {
    inflate(&read_document(file, entry, limit)?)
}

/// Finds the root folder, one entry name at a time: the archive's file stem
/// when entries live under it, else the first folder of the first entry; and
/// whether that root holds the index.
struct Roots {
    stem: String,
    stem_seen: bool,
    stem_index: bool,
    fallback: Option<String>,
    fallback_index: bool,
}

impl Roots {
    fn new(path: &Path) -> Roots {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Roots {
            stem,
            stem_seen: false,
            stem_index: false,
            fallback: None,
            fallback_index: false,
        }
    }

    fn see(&mut self, name: &str) {
        // The parts as `classify` reads them: `./root/…` is `root/…`.
        let parts = path_parts(name);
        let first = parts.first().copied().unwrap_or_default();
        if first == self.stem {
            self.stem_seen = true;
        } else if self.fallback.is_none()
            && !first.is_empty()
            && first != ".."
            && !name.starts_with(['/', '\\'])
        {
            self.fallback = Some(first.to_owned());
        }
        let is_index_of = |root: &str| {
            matches!(parts.as_slice(), [dir, file]
                if *dir == root && file.eq_ignore_ascii_case("ix08_V08.xml"))
        };
        self.stem_index |= is_index_of(&self.stem);
        if let Some(fallback) = &self.fallback {
            self.fallback_index |= is_index_of(fallback);
        }
    }

    /// The root folder, and whether its index is in the archive.
    fn root(self) -> (String, bool) {
        match self.fallback {
            Some(fallback) if !self.stem_seen => (fallback, self.fallback_index),
            _ => (self.stem, self.stem_index),
        }
    }
}

/// The entry name without its root folder.
fn tail(name: &str) -> &str {
    name.split_once('/').map_or(name, |(_, rest)| rest)
}

/// The parts of an entry path, either separator, without empty and `.` parts.
fn path_parts(name: &str) -> Vec<&str> {
    name.split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

/// Checks an entry path and says what it is.
fn classify(name: &str, root: &str) -> Result<Kind, Reason> {
    if name.starts_with(['/', '\\']) || name.contains('\0') {
        return Err(Reason::PathEscapesRoot);
    }
    let parts = path_parts(name);
    if parts.iter().any(|p| *p == ".." || p.contains(':')) {
        return Err(Reason::PathEscapesRoot);
    }
    match parts.as_slice() {
        // Names as the layout gives them, in any case (archives made on Windows).
        [first, rest @ ..] if *first == root => Ok(match rest {
            [] => Kind::Other,
            [file] if file.eq_ignore_ascii_case("ix08_V08.xml") => Kind::Index,
            [file] if file.eq_ignore_ascii_case("su08_V08.xml") => Kind::Summary,
            [dir, file] if dir.eq_ignore_ascii_case("DATA") => match document_kind(file) {
                Some(kind) => Kind::Document(kind),
                // Settlement (cc08) files, where a sender puts them beside the checkups.
                None if is_settlement(file) => Kind::Claims,
                None => Kind::Stray,
            },
            [dir] if dir.eq_ignore_ascii_case("DATA") => Kind::Other,
            [dir, ..] if dir.eq_ignore_ascii_case("CLAIMS") => Kind::Claims,
            [dir, ..] if dir.eq_ignore_ascii_case("XSD") => Kind::Other,
            _ => Kind::Stray,
        }),
        _ => Err(Reason::PathEscapesRoot),
    }
}

/// Whether a `DATA/` file is a settlement (`c….xml`) file, which is not ours.
fn is_settlement(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    lower.starts_with('c') && lower.ends_with(".xml")
}

/// What a `DATA/` file is by its name: `h….xml` a checkup, `g….xml` a guidance record.
fn document_kind(file: &str) -> Option<DocumentKind> {
    let lower = file.to_ascii_lowercase();
    if !lower.ends_with(".xml") {
        return None;
    }
    match lower.as_bytes().first() {
        Some(b'h') => Some(DocumentKind::Checkup),
        Some(b'g') => Some(DocumentKind::Guidance),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        let root = "1311234567_00138016_202407011_1";
        let ok = |n: &str| classify(n, root).is_ok();
        assert!(ok(&format!("{root}/ix08_V08.xml")));
        assert!(matches!(
            classify(&format!("{root}/DATA/h1.xml"), root),
            Ok(Kind::Document(DocumentKind::Checkup))
        ));
        assert!(matches!(
            classify(&format!("{root}/DATA/G1.XML"), root),
            Ok(Kind::Document(DocumentKind::Guidance))
        ));
        assert!(matches!(
            classify(&format!("{root}/DATA/c1.xml"), root),
            Ok(Kind::Claims)
        ));
        for stray in [
            "DATA/x1.txt",
            "DATA/sub/h1.xml",
            "readme.txt",
            "data2/h1.xml",
        ] {
            let kind = classify(&format!("{root}/{stray}"), root);
            assert!(matches!(kind, Ok(Kind::Stray)), "{stray}");
        }
        assert!(matches!(
            classify(&format!("{root}/data/H1.xml"), root),
            Ok(Kind::Document(_))
        ));
        for bad in [
            format!("{root}/../evil.xml"),
            "/tmp/absolute.xml".to_owned(),
            "\\windows\\evil.xml".to_owned(),
            format!("{root}\\..\\evil.xml"),
            "C:/evil.xml".to_owned(),
            "other_root/DATA/h1.xml".to_owned(),
            format!("{root}/DATA/../../x.xml"),
        ] {
            assert!(
                matches!(classify(&bad, root), Err(Reason::PathEscapesRoot)),
                "{bad}"
            );
        }
    }
}
