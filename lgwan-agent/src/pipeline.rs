//! From input files to prepared records: expand the inputs, parse them
//! (archives and CSVs), tokenize every person, refuse identities shared by
//! people with different 枝番, minimize, and compute record ids.
//!
//! Runs in two passes over the inputs so memory stays bounded: the first only
//! collects the 枝番 seen per subject token (a few bytes a subject, see
//! [`BranchBook`]), the second emits records. In both, one thread reads the
//! inputs in order and the documents are parsed (and in the second pass
//! minimized and sealed) on every core; results keep the input order.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDate;
use renkei_crypto::token::{RecordId, SubjectToken, record_id};
use serde::Serialize;
use serde_json::Value as Json;

use crate::agent::Agent;
use crate::archive::{Packed, RawEntry, inflate, scan_entries};
use crate::cda::{parse_document, parse_header};
use crate::domain::{CheckupDocument, DocumentKind, PersonIdentity};
use crate::error::{Error, Result};
use crate::minimize::{MinimizedRecord, minimize_checkup};
use crate::parallel::{ordered_map, workers};
use crate::quarantine::{Quarantine, Reason};
use crate::tabular::{RowIdentity, TableItem, TableRow, read_table, row_bundle};

/// Inputs between the reader and the consumer, per worker: enough to keep every
/// core busy, few enough that memory does not depend on the input size.
const WINDOW_PER_WORKER: usize = 32;

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

/// A record ready to seal, with its payload as the exact JSON bytes to seal
/// (what [`PreparedRecord`] holds parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
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
    /// The FHIR R4 Bundle, compact JSON.
    pub payload: Vec<u8>,
}

impl RawRecord {
    /// The record with its payload parsed (for `preview`).
    pub fn parsed(self) -> Result<PreparedRecord> {
        let payload = serde_json::from_slice(&self.payload).map_err(|e| Error::Invalid {
            field: "payload",
            value: self.record_id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(PreparedRecord {
            record_id: self.record_id,
            subject_token: self.subject_token,
            category: self.category,
            effective_date: self.effective_date,
            source_document: self.source_document,
            payload,
        })
    }
}

/// What the second pass makes of one input, in input order; `R` is what each
/// record became (see [`Agent::prepare_with`]).
#[derive(Debug)]
pub enum Outcome<R> {
    /// The records of a checkup document or a CSV row.
    Records(Vec<R>),
    /// An input set aside.
    Quarantined(Quarantine),
    /// Making a record failed (sealing): the import stops.
    Failed(Error),
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
    /// Results not exported: the catalog does not export their item, or their code is
    /// in another code system than the MHLW item codes.
    pub dropped_items: usize,
}

/// The 枝番 seen per subject token; a token with two is a conflict.
///
/// Kept compact so that memory grows by ~30 bytes a subject: the key is the
/// token's 20 bytes, the value one word naming the 枝番 (from a small table of
/// the distinct 枝番 seen), none, or a conflict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchBook {
    seen: HashMap<TokenKey, BranchState>,
    /// Rows that named a 宛名番号, in input order, without repeats (one per number and
    /// token, however many rows repeat them).
    residents: Vec<ResidentSeen>,
    /// `(number digest, token)` of [`Self::residents`], for finding repeats in O(1).
    residents_seen: std::collections::HashSet<(String, TokenKey)>,
    /// The token and person digest each 宛名番号 digest was first seen with: what a row
    /// keyed by 宛名番号 alone is filed under. This run's sightings, overridden by the
    /// outbox's earlier ones ([`Self::know_residents`]).
    resident_tokens: HashMap<String, (SubjectToken, String)>,
    /// The 宛名番号 digests that rows keyed by 宛名番号 alone asked for.
    wanted_residents: BTreeSet<String>,
    /// The 宛名番号 digest each token came with: a token seen with two is shared by two
    /// residents (one insurance identity, two people) and is refused.
    token_residents: HashMap<TokenKey, String>,
    /// The distinct 枝番 seen, indexed by [`BranchState`].
    branches: Vec<String>,
    refused: BTreeSet<TokenKey>,
    inputs: usize,
}

/// A subject token's 20 bytes (the base32 of `st1_…`).
type TokenKey = [u8; 20];

/// No 枝番 seen (0), two or more (1), or exactly one: `branches[n - 2]`.
type BranchState = u32;
const NO_BRANCH: BranchState = 0;
const CONFLICT: BranchState = 1;

fn token_key(token: &SubjectToken) -> TokenKey {
    token.to_bytes()
}

fn key_token(key: &TokenKey) -> SubjectToken {
    SubjectToken::from_bytes(key)
}

/// A 宛名番号 seen with a subject token, as keyed digests (the number, and the person's
/// birth date and sex) so that the outbox never holds the number itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidentSeen {
    /// Keyed digest of the 宛名番号.
    pub resident: String,
    /// The token the row's insurance identity gives.
    pub token: SubjectToken,
    /// Keyed digest of the birth date and sex: a 宛名番号 seen with another person is
    /// never linked.
    pub person: String,
}

impl BranchBook {
    /// Records that a row naming a 宛名番号 came with `seen.token`.
    pub fn observe_resident(&mut self, seen: ResidentSeen) {
        let key = (seen.resident.clone(), token_key(&seen.token));
        if self.residents_seen.insert(key) {
            let token = token_key(&seen.token);
            match self.token_residents.get(&token) {
                Some(first) if *first != seen.resident => {
                    self.refused.insert(token);
                }
                Some(_) => {}
                None => {
                    self.token_residents.insert(token, seen.resident.clone());
                }
            }
            self.resident_tokens
                .entry(seen.resident.clone())
                .or_insert_with(|| (seen.token.clone(), seen.person.clone()));
            self.residents.push(seen);
        }
    }

    /// The 宛名番号 digests that rows keyed by 宛名番号 alone need a token for.
    pub fn wanted_residents(&self) -> impl Iterator<Item = &str> {
        self.wanted_residents.iter().map(String::as_str)
    }

    /// The first sightings an earlier import kept (outbox `resident_numbers`), as
    /// `(number digest, token, person digest)`: they win over this run's.
    pub fn know_residents(&mut self, known: Vec<(String, SubjectToken, String)>) {
        for (resident, token, person) in known {
            self.resident_tokens.insert(resident, (token, person));
        }
    }

    /// The tokens rows keyed by 宛名番号 alone will be filed under: the import checks
    /// them against the outbox's conflicts like the tokens it saw itself.
    pub fn resident_tokens(&self) -> Vec<SubjectToken> {
        let mut out: Vec<SubjectToken> = self
            .wanted_residents
            .iter()
            .filter_map(|r| self.resident_tokens.get(r))
            .map(|(token, _)| token.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The token a row keyed by 宛名番号 alone is filed under, or why it cannot be.
    fn resident_token(&self, resident: &str, person: &str) -> Result<SubjectToken, Reason> {
        match self.resident_tokens.get(resident) {
            Some((token, seen)) if seen == person => Ok(token.clone()),
            Some(_) => Err(Reason::IdentityConflict(
                "宛名番号 was seen with another birth date or sex; the row is refused, never \
                 filed under someone else"
                    .into(),
            )),
            None => Err(Reason::Field(
                "identity: 宛名番号 has not been seen with an insurance identity yet; import \
                 a KDB file that names it (column 宛名番号), then this file again"
                    .into(),
            )),
        }
    }

    /// The 宛名番号 sightings, in input order.
    pub fn residents(&self) -> &[ResidentSeen] {
        &self.residents
    }

    fn branch_id(&mut self, branch: &str) -> BranchState {
        let index = match self.branches.iter().position(|b| b == branch) {
            Some(i) => i,
            None => {
                self.branches.push(branch.to_owned());
                self.branches.len() - 1
            }
        };
        u32::try_from(index).map_or(CONFLICT, |i| i.saturating_add(2))
    }

    /// Records that `token` came with `branch`.
    pub fn observe(&mut self, token: &SubjectToken, branch: Option<&str>) {
        let new = branch.map(|b| self.branch_id(b));
        let state = self.seen.entry(token_key(token)).or_insert(NO_BRANCH);
        match new {
            None => {}
            Some(b) if *state == NO_BRANCH => *state = b,
            Some(b) if *state == b => {}
            Some(_) => *state = CONFLICT,
        }
    }

    /// The one 枝番 seen with `token`, if exactly one was.
    pub fn branch(&self, token: &SubjectToken) -> Option<&str> {
        let state = *self.seen.get(&token_key(token))?;
        let index = usize::try_from(state.checked_sub(2)?).ok()?;
        self.branches.get(index).map(String::as_str)
    }

    /// True when the survey saw `token`, with `branch` if one is given.
    pub fn agrees(&self, token: &SubjectToken, branch: Option<&str>) -> bool {
        if !self.seen.contains_key(&token_key(token)) {
            return false;
        }
        branch.is_none_or(|b| self.branch(token) == Some(b))
    }

    /// Subjects seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no subject was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Every subject seen, `chunk` at a time (each chunk a new `Vec`, so memory
    /// for the tokens themselves stays at one chunk).
    pub fn token_chunks(&self, chunk: usize) -> impl Iterator<Item = Vec<SubjectToken>> + '_ {
        let mut keys = self.seen.keys().peekable();
        std::iter::from_fn(move || {
            keys.peek()?;
            Some(keys.by_ref().take(chunk.max(1)).map(key_token).collect())
        })
    }

    /// Inputs (documents, rows, quarantined files and entries) the survey saw:
    /// the total for progress reports.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Marks `token` as a conflict found earlier (by another import).
    pub fn refuse(&mut self, token: &SubjectToken) {
        self.refused.insert(token_key(token));
    }

    /// True when two different 枝番 came with `token`, or it was refused before.
    pub fn is_conflict(&self, token: &SubjectToken) -> bool {
        let key = token_key(token);
        self.refused.contains(&key) || self.seen.get(&key) == Some(&CONFLICT)
    }

    /// Every conflicting token seen, sorted.
    pub fn conflicts(&self) -> Vec<SubjectToken> {
        let mut out: Vec<SubjectToken> = self
            .seen
            .iter()
            .filter(|(k, state)| **state == CONFLICT || self.refused.contains(*k))
            .map(|(k, _)| key_token(k))
            .collect();
        out.sort();
        out
    }
}

/// What an input adds to the [`RunSummary`] counts besides records and quarantines.
#[derive(Clone, Copy, Debug)]
enum Counted {
    Document { dropped: usize },
    Row,
    Nothing,
}

/// One input, read but not yet parsed: what the reading thread hands to the workers.
enum Input {
    Checkup {
        label: String,
        entry: String,
        fallback_id: String,
        kind: DocumentKind,
        doc: Doc,
    },
    Row(String, usize, TableRow),
    Quarantined(Quarantine),
}

/// One input as `evaluate` sees it.
#[derive(Debug)]
pub enum Evaluated<'a> {
    /// A checkup or guidance document.
    Checkup(&'a CheckupDocument),
    /// A CSV row, with the name of its mapping.
    Row(&'a str, &'a TableRow),
}

/// What the survey learns from one input.
enum Surveyed {
    /// A person by insurance identity: the token, the 枝番, and the 宛名番号 sighting.
    Person(SubjectToken, Option<String>, Option<ResidentSeen>),
    /// A row keyed by 宛名番号 alone: the digest it will need a token for.
    Wants(String),
    /// Nothing (a quarantine, an identity that cannot be tokenized).
    Nothing,
}

/// A parser of checkup and guidance documents: the whole ([`parse_document`]) or the
/// header alone ([`parse_header`]).
type DocumentParser = fn(&[u8], &str, DocumentKind) -> Result<CheckupDocument, Reason>;

/// Where [`Agent::read_inputs`] inflates documents.
#[derive(Clone, Copy)]
enum Inflate {
    Here,
    OnWorker,
}

/// A document as the reading thread hands it on: inflated there (the second pass, whose
/// workers have the most to do) or on the worker (the survey, which may need only the
/// first bytes).
enum Doc {
    Inflated(Vec<u8>),
    Packed(Packed),
}

impl Doc {
    fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, Reason> {
        match self {
            Doc::Inflated(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
            Doc::Packed(packed) => inflate(packed).map(std::borrow::Cow::Owned),
        }
    }
}

/// Inflated bytes the survey first tries a document's header in.
const HEADER_PREFIX: usize = 4096;

/// One parsed input, before tokenization.
enum Parsed {
    Checkup(String, String, Box<CheckupDocument>),
    Row(String, usize, TableRow),
    Quarantined(Quarantine),
}

impl Input {
    /// Parses a checkup or guidance document; rows and quarantines pass through.
    fn parse(self) -> Parsed {
        self.parse_with(parse_document)
    }

    /// A document's header ([`parse_header`]), read from the first bytes of the document
    /// when they hold it (a header is ~2 KB), else from the whole: either way the same
    /// person, since the header parse stops at the body. What the survey reads.
    fn parse_header(self) -> Parsed {
        if let Input::Checkup {
            label,
            entry,
            fallback_id,
            kind,
            doc: Doc::Packed(packed),
        } = &self
            && let Ok(doc) = parse_header(&packed.prefix(HEADER_PREFIX), fallback_id, *kind)
        {
            return Parsed::Checkup(label.clone(), entry.clone(), Box::new(doc));
        }
        self.parse_with(parse_header)
    }

    /// [`Input::parse`] with `read` as the document parser.
    fn parse_with(self, read: DocumentParser) -> Parsed {
        match self {
            Input::Checkup {
                label,
                entry,
                fallback_id,
                kind,
                doc,
            } => match doc
                .bytes()
                .and_then(|bytes| read(&bytes, &fallback_id, kind))
            {
                Ok(doc) => Parsed::Checkup(label, entry, Box::new(doc)),
                Err(reason) => Parsed::Quarantined(Quarantine::new(label, Some(entry), reason)),
            },
            Input::Row(label, mapping, row) => Parsed::Row(label, mapping, row),
            Input::Quarantined(q) => Parsed::Quarantined(q),
        }
    }
}

/// Checks that every input named on the command line exists: a missing file is an error
/// of the command, not data to quarantine.
pub fn check_inputs(inputs: &[PathBuf]) -> Result<()> {
    for input in inputs {
        if let Err(e) = std::fs::metadata(input) {
            return Err(Error::Invalid {
                field: "input",
                value: input.display().to_string(),
                reason: e.to_string(),
            });
        }
    }
    Ok(())
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
    /// Reads `files` in order on this thread: archive entries unparsed, CSV rows
    /// parsed (they are small), quarantines as they come.
    fn read_inputs(&self, files: &[PathBuf], here: Inflate, sink: &mut dyn FnMut(Input)) {
        for file in files {
            let label = file.display().to_string();
            let ext = file
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            match ext.as_str() {
                "zip" => {
                    scan_entries(file, &self.config.limits, &mut |item| match item {
                        RawEntry::Checkup {
                            entry,
                            fallback_id,
                            kind,
                            packed,
                        } => {
                            let doc = match here {
                                Inflate::Here => match inflate(&packed) {
                                    Ok(bytes) => Doc::Inflated(bytes),
                                    Err(reason) => {
                                        let q = Quarantine::new(label.clone(), Some(entry), reason);
                                        return sink(Input::Quarantined(q));
                                    }
                                },
                                Inflate::OnWorker => Doc::Packed(packed),
                            };
                            sink(Input::Checkup {
                                label: label.clone(),
                                entry,
                                fallback_id,
                                kind,
                                doc,
                            })
                        }
                        RawEntry::Quarantined(q) => sink(Input::Quarantined(q)),
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
                                sink(Input::Row(label.clone(), mapping, row))
                            }
                            TableItem::Quarantined(q) => sink(Input::Quarantined(q)),
                        },
                    );
                }
                _ => sink(Input::Quarantined(Quarantine::new(
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

    /// The identity (and 宛名番号, when a row gave one) of the first person in `files`
    /// whose token is `token`: how the agent maps a resident back inside LGWAN
    /// (`lgwan-agent resolve`). Reads every input (of a document, its header); nothing
    /// leaves the agent.
    pub fn find_subject(
        &self,
        files: &[PathBuf],
        token: &SubjectToken,
    ) -> Option<(PersonIdentity, Option<String>)> {
        let mut found = None;
        self.read_inputs(files, Inflate::OnWorker, &mut |input| {
            if found.is_some() {
                return;
            }
            let (person, resident) = match input.parse_header() {
                Parsed::Checkup(_, _, doc) => (doc.identity, None),
                Parsed::Row(_, _, row) => match row.identity {
                    RowIdentity::Insured(person) => (person, row.resident),
                    // Only an insurance identity makes a token.
                    RowIdentity::Resident { .. } => return,
                },
                Parsed::Quarantined(_) => return,
            };
            if self
                .token_or_reason(&person)
                .is_ok_and(|(t, _)| t == *token)
            {
                found = Some((person, resident));
            }
        });
        found
    }

    /// Every checkup and every row of `files` keyed by an insurance identity, with its
    /// subject token and identity, in input order, for `evaluate`: statistics computed
    /// inside LGWAN (nothing leaves the agent). Quarantined inputs and rows keyed by
    /// 宛名番号 alone are passed over.
    pub fn for_each_person(
        &self,
        files: &[PathBuf],
        each: &mut dyn FnMut(SubjectToken, &PersonIdentity, Evaluated<'_>),
    ) {
        self.read_inputs(files, Inflate::Here, &mut |input| match input.parse() {
            Parsed::Checkup(_, _, doc) => {
                if let Ok((token, _)) = self.token_or_reason(&doc.identity) {
                    each(token, &doc.identity, Evaluated::Checkup(&doc));
                }
            }
            Parsed::Row(_, mapping, row) => {
                let (RowIdentity::Insured(person), Some(table)) =
                    (&row.identity, self.config.tables.get(mapping))
                else {
                    return;
                };
                if let Ok((token, _)) = self.token_or_reason(person) {
                    each(token, person, Evaluated::Row(&table.name, &row));
                }
            }
            Parsed::Quarantined(_) => {}
        });
    }

    /// Pass one: the 枝番 of every subject in `files`, on every core. Only a
    /// document's header is read ([`parse_header`]): the person in it counts even if the
    /// second pass refuses the document for its body, so a token two people share is
    /// refused before anything of either is spooled.
    pub fn survey(&self, files: &[PathBuf]) -> BranchBook {
        let mut book = BranchBook::default();
        let workers = workers();
        ordered_map(
            workers,
            workers * WINDOW_PER_WORKER,
            |sink| self.read_inputs(files, Inflate::OnWorker, sink),
            |input| {
                let (person, resident) = match input.parse_header() {
                    Parsed::Checkup(_, _, doc) => (doc.identity, None),
                    Parsed::Row(_, _, row) => match (row.identity, row.resident) {
                        (RowIdentity::Insured(person), resident) => (person, resident),
                        (RowIdentity::Resident { .. }, Some(r)) => {
                            return Surveyed::Wants(self.keyed("resident-number", &r));
                        }
                        (RowIdentity::Resident { .. }, None) => return Surveyed::Nothing,
                    },
                    Parsed::Quarantined(_) => return Surveyed::Nothing,
                };
                let Ok((token, branch)) = self.token_or_reason(&person) else {
                    return Surveyed::Nothing;
                };
                let resident = resident.map(|r| ResidentSeen {
                    resident: self.keyed("resident-number", &r),
                    token: token.clone(),
                    person: self.person_digest(person.birth, person.sex),
                });
                Surveyed::Person(token, branch, resident)
            },
            &mut |seen: Surveyed| {
                book.inputs += 1;
                match seen {
                    Surveyed::Person(token, branch, resident) => {
                        book.observe(&token, branch.as_deref());
                        if let Some(r) = resident {
                            book.observe_resident(r);
                        }
                    }
                    Surveyed::Wants(resident) => {
                        book.wanted_residents.insert(resident);
                    }
                    Surveyed::Nothing => {}
                }
            },
        );
        book
    }

    /// Pass two: every record of `files`, refusing subjects `book` marks as conflicts.
    pub fn prepare(
        &self,
        files: &[PathBuf],
        book: &BranchBook,
        sink: &mut dyn FnMut(Prepared),
    ) -> RunSummary {
        self.prepare_with(
            files,
            book,
            &RawRecord::parsed,
            &mut |outcome| match outcome {
                Outcome::Records(records) => {
                    for r in records {
                        sink(Prepared::Record(r));
                    }
                }
                Outcome::Quarantined(q) => sink(Prepared::Quarantined(q)),
                // Parsing a payload this agent wrote cannot fail; were it to, the
                // record is not shown rather than shown wrong.
                Outcome::Failed(_) => {}
            },
        )
    }

    /// Pass two with every record turned into an `R` by `make` (sealing, for an
    /// import) on the worker threads; `sink` gets one [`Outcome`] per input, in
    /// input order. After an [`Outcome::Failed`] the remaining inputs are read but
    /// no longer worked on.
    pub fn prepare_with<R: Send>(
        &self,
        files: &[PathBuf],
        book: &BranchBook,
        make: &(dyn Fn(RawRecord) -> Result<R> + Sync),
        sink: &mut dyn FnMut(Outcome<R>),
    ) -> RunSummary {
        let mut summary = RunSummary::default();
        let failed = AtomicBool::new(false);
        let workers = workers();
        ordered_map(
            workers,
            workers * WINDOW_PER_WORKER,
            |sink| self.read_inputs(files, Inflate::Here, sink),
            |input| {
                if failed.load(Ordering::Relaxed) {
                    return (Outcome::Records(Vec::new()), Counted::Nothing);
                }
                let out = self.prepare_one(input, book, make);
                if matches!(out.0, Outcome::Failed(_)) {
                    failed.store(true, Ordering::Relaxed);
                }
                out
            },
            &mut |(outcome, counted)| {
                match counted {
                    Counted::Document { dropped } => {
                        summary.documents += 1;
                        summary.dropped_items += dropped;
                    }
                    Counted::Row => summary.rows += 1,
                    Counted::Nothing => {}
                }
                match &outcome {
                    Outcome::Records(records) => summary.records += records.len(),
                    Outcome::Quarantined(_) => summary.quarantined += 1,
                    Outcome::Failed(_) => {}
                }
                sink(outcome);
            },
        );
        summary
    }

    /// Parses, tokenizes, checks, minimizes and makes the records of one input.
    fn prepare_one<R>(
        &self,
        input: Input,
        book: &BranchBook,
        make: &(dyn Fn(RawRecord) -> Result<R> + Sync),
    ) -> (Outcome<R>, Counted) {
        let parsed = input.parse();
        let (label, entry, token) = match &parsed {
            Parsed::Quarantined(q) => return (Outcome::Quarantined(q.clone()), Counted::Nothing),
            Parsed::Checkup(label, entry, doc) => {
                (label, entry.clone(), self.token_or_reason(&doc.identity))
            }
            Parsed::Row(label, _, row) => {
                let token = match (&row.identity, &row.resident) {
                    (RowIdentity::Insured(person), _) => self.token_or_reason(person),
                    (RowIdentity::Resident { birth, sex }, Some(r)) => book
                        .resident_token(
                            &self.keyed("resident-number", r),
                            &self.person_digest(*birth, *sex),
                        )
                        .map(|token| (token, None)),
                    (RowIdentity::Resident { .. }, None) => {
                        Err(Reason::Field("identity: 宛名番号 is empty".into()))
                    }
                };
                (label, format!("record {}", row.line), token)
            }
        };
        // A person by insurance identity was surveyed from the same input (a document's
        // header, a row): their token and 枝番 must be what the survey saw, or the two
        // passes read the input differently and the conflict check would not hold.
        let surveyed = matches!(&parsed, Parsed::Checkup(..))
            || matches!(&parsed, Parsed::Row(_, _, row) if matches!(row.identity, RowIdentity::Insured(_)));
        let token = match token {
            Ok((token, _)) if book.is_conflict(&token) => {
                let reason = Reason::IdentityConflict(format!(
                    "subject `{}` is shared by people with different 枝番; their records are refused",
                    token.as_str()
                ));
                let q = Quarantine::new(label, Some(entry), reason);
                return (Outcome::Quarantined(q), Counted::Nothing);
            }
            Ok((token, branch)) if surveyed && !book.agrees(&token, branch.as_deref()) => {
                let reason = Reason::IdentityConflict(format!(
                    "subject `{}` is not the person the survey read from this input; its records are refused",
                    token.as_str()
                ));
                let q = Quarantine::new(label, Some(entry), reason);
                return (Outcome::Quarantined(q), Counted::Nothing);
            }
            Ok((token, _)) => token,
            Err(reason) => {
                let q = Quarantine::new(label, Some(entry), reason);
                return (Outcome::Quarantined(q), Counted::Nothing);
            }
        };
        let (records, counted) = match &parsed {
            Parsed::Checkup(_, _, doc) => {
                let minimized = minimize_checkup(doc, self.catalog());
                let dropped = minimized.dropped.len() + doc.unread_values;
                (minimized.records, Counted::Document { dropped })
            }
            Parsed::Row(_, mapping, row) => (
                self.row_record(*mapping, row, &token).into_iter().collect(),
                Counted::Row,
            ),
            Parsed::Quarantined(_) => (Vec::new(), Counted::Nothing),
        };
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let raw = RawRecord {
                record_id: record_id(self.record_id_key(), &r.source_document, &r.category),
                subject_token: token.clone(),
                category: r.category,
                effective_date: r.effective_date,
                source_document: r.source_document,
                payload: r.payload,
            };
            match make(raw) {
                Ok(made) => out.push(made),
                // A record too large to seal (payload.rs) is this input's fault, not the
                // import's: the input is set aside and the import goes on.
                Err(Error::Crypto(e @ renkei_crypto::Error::Payload { .. })) => {
                    let q = Quarantine::new(label, Some(entry), Reason::Field(e.to_string()));
                    return (Outcome::Quarantined(q), Counted::Nothing);
                }
                Err(e) => return (Outcome::Failed(e), counted),
            }
        }
        (Outcome::Records(out), counted)
    }

    /// The keyed digest of a person's birth date and sex beside a 宛名番号.
    fn person_digest(&self, birth: NaiveDate, sex: crate::domain::Sex) -> String {
        self.keyed("resident-person", &format!("{birth}\u{1f}{sex:?}"))
    }

    /// A keyed digest of `value` for `purpose` under the record id key: stable for the
    /// agent, meaningless outside it.
    fn keyed(&self, purpose: &str, value: &str) -> String {
        record_id(self.record_id_key(), value, purpose)
            .as_str()
            .to_owned()
    }

    /// The attendance record of one row of an attendance list: the fiscal year only. One
    /// record per person, examination and fiscal year, so a list naming a resident twice
    /// in a year (or a re-import) gives the same record. `Agent::load` checked that the
    /// mapping's category is the catalog's attendance category.
    fn attendance_row(
        &self,
        mapping: &crate::tabular::TableMapping,
        name: &str,
        row: &TableRow,
        token: &SubjectToken,
    ) -> Option<MinimizedRecord> {
        let category = mapping.category.as_str();
        let system = mapping.code_system();
        let (start, payload) = crate::minimize::attendance_bundle(
            row.effective_date,
            category,
            name,
            Some((&system, &mapping.name)),
        );
        let canonical = format!("{}\u{1f}{}\u{1f}{start}", mapping.name, token.as_str());
        let digest = record_id(self.record_id_key(), &canonical, "attendance-row");
        Some(MinimizedRecord {
            source_document: format!("{}/{start}/{}", mapping.name, digest.as_str()),
            category: category.to_owned(),
            effective_date: start,
            payload,
        })
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
        if let Some(name) = &mapping.attendance {
            return self.attendance_row(mapping, name, row, token);
        }
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
            payload: row_bundle(mapping, row).to_string().into_bytes(),
        })
    }
}
