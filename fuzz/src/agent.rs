//! Properties of the agent's input parsers on arbitrary input: CDA checkup
//! documents, archive index files, KDB/notice CSVs and zip archives. None may
//! panic; every refusal is a [`Reason`] with a bounded message; a DOCTYPE (and so
//! any entity declaration) is always refused; what parses is consistent.
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/`) and `lgwan-agent/tests/it/fuzz.rs`.

use std::path::{Path, PathBuf};

use lgwan_agent::archive::{ArchiveItem, Limits, scan_archive};
use lgwan_agent::cda::parse_checkup;
use lgwan_agent::config::{Config, initial_config};
use lgwan_agent::domain::{CheckupDocument, Value};
use lgwan_agent::index::parse_index;
use lgwan_agent::quarantine::Reason;
use lgwan_agent::tabular::{TableItem, TableMapping, read_table};

/// Longest reason message accepted: a report may name a value, not echo a field of megabytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// The name a checkup document falls back to when it has no id.
pub const FALLBACK_ID: &str = "fuzz/DATA/h0000000000.xml";

/// A DOCTYPE with an internal subset declaring entities (a small billion laughs).
const DOCTYPE: &str = "<!DOCTYPE ClinicalDocument [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\"><!ENTITY x SYSTEM \"file:///etc/passwd\">]>";

/// A refusal is a clean value: a kind and a non-empty message of bounded size.
pub fn clean_reason(what: &str, reason: &Reason) {
    assert!(!reason.kind().is_empty(), "{what}: reason without a kind");
    assert!(!reason.to_string().is_empty(), "{what}: empty reason");
    bounded_reason(what, reason);
}

/// The reason's message is at most [`MAX_MESSAGE_BYTES`]: it names a value, not echoes it.
pub fn bounded_reason(what: &str, reason: &Reason) {
    let length = reason.to_string().len();
    assert!(
        length <= MAX_MESSAGE_BYTES,
        "{what}: reason `{}` of {length} bytes echoes its input",
        reason.kind(),
    );
}

/// Whether `raw` is `-?digits[.digits]`, the form a quantity must keep.
fn is_decimal(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && frac.is_none_or(all_digits)
}

/// `bytes` with `DOCTYPE` inserted before the root element: after the BOM and the
/// XML declaration when there is one, else at the start.
pub fn with_doctype(bytes: &[u8]) -> Vec<u8> {
    let bom = if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    let rest = bytes.get(bom..).unwrap_or_default();
    let at = if rest.starts_with(b"<?xml") {
        rest.windows(2)
            .position(|w| w == b"?>")
            .map_or(bom, |p| bom + p + 2)
    } else {
        bom
    };
    let (head, tail) = bytes.split_at(at.min(bytes.len()));
    [head, DOCTYPE.as_bytes(), tail].concat()
}

/// Checks what a parsed checkup document holds.
fn check_document(doc: &CheckupDocument) {
    assert!(!doc.document_id.is_empty(), "a document without an id");
    for o in &doc.observations {
        assert!(
            o.item_code.len() == 17 && o.item_code.bytes().all(|b| b.is_ascii_alphanumeric()),
            "item code is not 17 characters"
        );
        if let Value::Quantity { value, .. } = &o.value {
            assert!(is_decimal(value), "quantity `{value}` is not a decimal");
        }
    }
}

/// `parse_checkup`: never panics; a refusal is clean; an accepted document is
/// consistent, and the same document with a DOCTYPE in its prolog is refused.
pub fn cda(data: &[u8]) {
    match parse_checkup(data, FALLBACK_ID) {
        Ok(doc) => {
            check_document(&doc);
            let doctyped = with_doctype(data);
            match parse_checkup(&doctyped, FALLBACK_ID) {
                Err(Reason::Doctype) => {}
                other => panic!("a document with a DOCTYPE was not refused as such: {other:?}"),
            }
        }
        Err(reason) => clean_reason("checkup", &reason),
    }
}

/// `parse_index` as an index and as a summary, with the same DOCTYPE property.
pub fn index(data: &[u8]) {
    for root in ["index", "summary"] {
        match parse_index(data, root) {
            Ok(_) => match parse_index(&with_doctype(data), root) {
                Err(Reason::Doctype) => {}
                other => panic!("a {root} with a DOCTYPE was not refused as such: {other:?}"),
            },
            Err(reason) => clean_reason(root, &reason),
        }
    }
}

/// The column mappings `lgwan-agent init` writes, read as the agent reads them.
pub fn initial_mappings() -> Vec<TableMapping> {
    let source = "source:fuzz"
        .parse()
        .unwrap_or_else(|e| panic!("participant id: {e}"));
    let text = initial_config(&source);
    match Config::from_toml(Path::new("/fuzz/agent.toml"), &text) {
        Ok(config) => config.tables,
        Err(e) => panic!("the initial config does not load: {e}"),
    }
}

/// A scratch folder and the mappings, made once per fuzzing process.
#[derive(Debug)]
pub struct Files {
    dir: tempfile::TempDir,
    mappings: Vec<TableMapping>,
}

impl Files {
    /// A fresh scratch folder.
    pub fn new() -> Files {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        Files {
            dir,
            mappings: initial_mappings(),
        }
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// `read_table` on the bytes as a CSV file: rows name a real mapping and value
    /// column, come in file order with non-empty cells, and refusals are clean.
    pub fn csv(&self, data: &[u8]) {
        let path = self.write("fuzz.csv", data);
        let mut last_line = 1;
        read_table(&path, &self.mappings, 1 << 20, &mut |item| match item {
            TableItem::Row(m, row) => {
                let mapping = self
                    .mappings
                    .get(m)
                    .unwrap_or_else(|| panic!("mapping {m}"));
                assert!(row.line > last_line, "row {} after {last_line}", row.line);
                last_line = row.line;
                for (i, cell) in &row.cells {
                    assert!(*i < mapping.values.len(), "value column {i} out of range");
                    assert!(!cell.is_empty(), "an empty cell was kept");
                }
            }
            TableItem::Quarantined(q) => clean_reason("csv", &q.reason),
        });
    }

    /// `scan_archive` on the bytes as a zip file under small limits: the summary
    /// counts exactly the items handed out, every document is consistent, every
    /// refusal clean.
    pub fn archive(&self, data: &[u8]) {
        let path = self.write("fuzz.zip", data);
        let limits = Limits {
            max_archive_bytes: 4 << 20,
            max_entry_bytes: 1 << 20,
            max_entries: 1000,
        };
        let (mut documents, mut quarantined) = (0, 0);
        let summary = scan_archive(&path, &limits, &mut |item| match item {
            ArchiveItem::Checkup { document, .. } => {
                documents += 1;
                check_document(&document);
            }
            ArchiveItem::Quarantined(q) => {
                quarantined += 1;
                clean_reason("archive", &q.reason);
            }
        });
        assert_eq!(summary.documents, documents, "documents miscounted");
        assert_eq!(summary.quarantined, quarantined, "quarantines miscounted");
    }
}

impl Default for Files {
    fn default() -> Self {
        Files::new()
    }
}
