//! From input files to prepared records: expand the inputs, parse them
//! (archives and CSVs), tokenize every person, refuse identities shared by
//! people with different 枝番, minimize, and compute record ids.
//!
//! Runs in two passes over the inputs so memory stays bounded: the first only
//! collects the 枝番 seen per subject token, the second emits records.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use renkei_crypto::token::{RecordId, SubjectToken, record_id};
use serde::Serialize;
use serde_json::Value as Json;

use crate::agent::Agent;
use crate::archive::{ArchiveItem, scan_archive};
use crate::domain::{CheckupDocument, PersonIdentity};
use crate::minimize::{MinimizedRecord, minimize_checkup};
use crate::quarantine::{Quarantine, Reason};
use crate::tabular::{TableItem, TableRow, read_table, row_bundle};

/// A record ready to seal: exactly what would leave the building.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PreparedRecord {
    /// Deterministic id: HMAC(K_rec, source document, category).
    pub record_id: RecordId,
    /// The subject.
    pub subject_token: SubjectToken,
    /// Catalog category.
    pub category: String,
    /// The date the data refers to.
    pub effective_date: NaiveDate,
    /// The source document id.
    pub source_document: String,
    /// The FHIR R4 Bundle.
    pub payload: Json,
}

/// What the second pass yields.
#[derive(Debug)]
pub enum Prepared {
    /// A record.
    Record(PreparedRecord),
    /// An input set aside.
    Quarantined(Quarantine),
}

/// Counts of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Checkup documents parsed.
    pub documents: usize,
    /// CSV rows parsed.
    pub rows: usize,
    /// Records prepared.
    pub records: usize,
    /// Inputs quarantined (including refused identities).
    pub quarantined: usize,
    /// Observations dropped because the catalog does not export their item.
    pub dropped_items: usize,
}

/// The 枝番 seen per subject token; a token with two is a conflict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchBook {
    seen: HashMap<SubjectToken, BTreeSet<String>>,
    refused: BTreeSet<SubjectToken>,
    inputs: usize,
}

impl BranchBook {
    /// Records that `token` came with `branch`.
    pub fn observe(&mut self, token: &SubjectToken, branch: Option<&str>) {
        let set = self.seen.entry(token.clone()).or_default();
        if let Some(b) = branch {
            set.insert(b.to_owned());
        }
    }

    /// The one 枝番 seen with `token`, if exactly one was.
    pub fn branch(&self, token: &SubjectToken) -> Option<&str> {
        let set = self.seen.get(token)?;
        match set.len() {
            1 => set.iter().next().map(String::as_str),
            _ => None,
        }
    }

    /// Every subject seen.
    pub fn tokens(&self) -> impl Iterator<Item = &SubjectToken> {
        self.seen.keys()
    }

    /// Inputs (documents, rows, quarantined files and entries) the survey saw:
    /// the total for progress reports.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Marks `token` as a conflict found earlier (by another import).
    pub fn refuse(&mut self, token: &SubjectToken) {
        self.refused.insert(token.clone());
    }

    /// True when two different 枝番 came with `token`, or it was refused before.
    pub fn is_conflict(&self, token: &SubjectToken) -> bool {
        self.refused.contains(token) || self.seen.get(token).is_some_and(|b| b.len() > 1)
    }

    /// Every conflicting token.
    pub fn conflicts(&self) -> Vec<&SubjectToken> {
        let mut out: Vec<_> = self
            .seen
            .iter()
            .filter(|(t, b)| b.len() > 1 || self.refused.contains(*t))
            .map(|(t, _)| t)
            .collect();
        out.sort();
        out
    }
}

/// One parsed input, before tokenization.
enum Parsed {
    Checkup(String, String, Box<CheckupDocument>),
    Row(String, usize, TableRow),
    Quarantined(Quarantine),
}

/// Files named on the command line; folders are expanded (sorted, recursive)
/// to the `.zip` and `.csv` files in them.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut out);
        } else {
            out.push(input.clone());
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            walk(&child, out);
        } else if has_input_extension(&child) {
            out.push(child);
        }
    }
}

fn has_input_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip") || e.eq_ignore_ascii_case("csv"))
}

impl Agent {
    fn parse_inputs(&self, files: &[PathBuf], sink: &mut dyn FnMut(Parsed)) {
        for file in files {
            let label = file.display().to_string();
            let ext = file
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            match ext.as_str() {
                "zip" => {
                    scan_archive(file, &self.config.limits, &mut |item| match item {
                        ArchiveItem::Checkup { entry, document } => {
                            sink(Parsed::Checkup(label.clone(), entry, document))
                        }
                        ArchiveItem::Quarantined(q) => sink(Parsed::Quarantined(q)),
                    });
                }
                "csv" | "txt" => {
                    let tables = &self.config.tables;
                    read_table(
                        file,
                        tables,
                        self.config.max_table_bytes,
                        &mut |item| match item {
                            TableItem::Row(mapping, row) => {
                                sink(Parsed::Row(label.clone(), mapping, row))
                            }
                            TableItem::Quarantined(q) => sink(Parsed::Quarantined(q)),
                        },
                    );
                }
                _ => sink(Parsed::Quarantined(Quarantine::new(
                    label,
                    None,
                    Reason::Unreadable("not a .zip archive or a .csv file".into()),
                ))),
            }
        }
    }

    /// The token of `person`, or the quarantine reason (naming the field, never its value).
    fn token_or_reason(
        &self,
        person: &PersonIdentity,
    ) -> Result<(SubjectToken, Option<String>), Reason> {
        self.tokenize(person).map_err(|e| match e {
            crate::Error::Crypto(renkei_crypto::Error::Identity { field, reason, .. }) => {
                Reason::Field(format!("identity: {field} {reason}"))
            }
            _ => Reason::Field("identity cannot be tokenized".into()),
        })
    }

    /// Pass one: the 枝番 of every subject in `files`.
    pub fn survey(&self, files: &[PathBuf]) -> BranchBook {
        let mut book = BranchBook::default();
        self.parse_inputs(files, &mut |parsed| {
            book.inputs += 1;
            let person = match &parsed {
                Parsed::Checkup(_, _, doc) => &doc.identity,
                Parsed::Row(_, _, row) => &row.identity,
                Parsed::Quarantined(_) => return,
            };
            if let Ok((token, branch)) = self.token_or_reason(person) {
                book.observe(&token, branch.as_deref());
            }
        });
        book
    }

    /// Pass two: every record of `files`, refusing subjects `book` marks as conflicts.
    pub fn prepare(
        &self,
        files: &[PathBuf],
        book: &BranchBook,
        sink: &mut dyn FnMut(Prepared),
    ) -> RunSummary {
        let mut summary = RunSummary::default();
        self.parse_inputs(files, &mut |parsed| {
            let mut quarantine = |q: Quarantine, summary: &mut RunSummary| {
                summary.quarantined += 1;
                sink(Prepared::Quarantined(q));
            };
            let (label, entry, person) = match &parsed {
                Parsed::Quarantined(q) => return quarantine(q.clone(), &mut summary),
                Parsed::Checkup(label, entry, doc) => (label, entry.clone(), &doc.identity),
                Parsed::Row(label, _, row) => (label, format!("record {}", row.line), &row.identity),
            };
            let token = match self.token_or_reason(person) {
                Ok((token, _)) if book.is_conflict(&token) => {
                    let reason = Reason::IdentityConflict(format!(
                        "subject `{}` is shared by people with different 枝番; their records are refused",
                        token.as_str()
                    ));
                    return quarantine(Quarantine::new(label, Some(entry), reason), &mut summary);
                }
                Ok((token, _)) => token,
                Err(reason) => return quarantine(Quarantine::new(label, Some(entry), reason), &mut summary),
            };
            let records = match &parsed {
                Parsed::Checkup(_, _, doc) => {
                    summary.documents += 1;
                    let minimized = minimize_checkup(doc, self.catalog());
                    summary.dropped_items += minimized.dropped.len();
                    minimized.records
                }
                Parsed::Row(_, mapping, row) => {
                    summary.rows += 1;
                    self.row_record(*mapping, row, &token).into_iter().collect()
                }
                Parsed::Quarantined(_) => Vec::new(),
            };
            for r in records {
                summary.records += 1;
                sink(Prepared::Record(PreparedRecord {
                    record_id: record_id(self.record_id_key(), &r.source_document, &r.category),
                    subject_token: token.clone(),
                    category: r.category,
                    effective_date: r.effective_date,
                    source_document: r.source_document,
                    payload: r.payload,
                }));
            }
        });
        summary
    }

    /// The record of one CSV row. Its document id is the mapping, the date and
    /// a keyed digest of the subject and the cells, so a re-import is idempotent
    /// and the id reveals nothing of the row.
    fn row_record(
        &self,
        mapping: usize,
        row: &TableRow,
        token: &SubjectToken,
    ) -> Option<MinimizedRecord> {
        let mapping = self.config.tables.get(mapping)?;
        let mut canonical = format!(
            "{}\u{1f}{}\u{1f}{}",
            mapping.name,
            token.as_str(),
            row.effective_date
        );
        for (i, cell) in &row.cells {
            canonical.push_str(&format!("\u{1f}{i}={cell}"));
        }
        let digest = record_id(self.record_id_key(), &canonical, "table-row");
        Some(MinimizedRecord {
            source_document: format!(
                "{}/{}/{}",
                mapping.name,
                row.effective_date,
                digest.as_str()
            ),
            category: mapping.category.clone(),
            effective_date: row.effective_date,
            payload: row_bundle(mapping, row),
        })
    }
}
