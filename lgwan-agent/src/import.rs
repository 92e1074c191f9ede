//! `import`: survey the inputs, prepare and seal every record, and spool them into
//! the outbox in batches (one transaction each), with progress reports.
//!
//! Parsing and sealing run on a blocking thread and hand batches to the outbox
//! through a bounded channel, so memory stays bounded whatever the input size. A
//! crash loses at most the batch being written; a re-import is a no-op for every
//! record already spooled (ids are deterministic, first bytes are kept).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use renkei_crypto::envelope::{EnvelopeHeader, seal};
use renkei_crypto::token::{RecordId, SubjectToken, subject_binding};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::outbox::{KnownSubject, NewRecord, Outbox};
use crate::pipeline::{BranchBook, Outcome, PreparedRecord, RawRecord, RunSummary, expand_inputs};
use crate::quarantine::{Quarantine, Reason};

/// Version of the payload schema the agent seals (FHIR R4 JSON, compressed:
/// `renkei_crypto::payload`).
pub const SCHEMA_VERSION: u16 = renkei_crypto::payload::JSON_LZ4;

/// Records per outbox transaction: large enough that a commit (and its fsync)
/// and the index pages it rewrites are shared by many records (~360 checkups).
pub const BATCH: usize = 4000;

/// Batches in flight between the parser and the outbox.
const IN_FLIGHT: usize = 2;

/// What one import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Records prepared and sealed (as `preview` would print them).
    pub records: usize,
    /// Of those, records new to the outbox (the rest were already spooled).
    pub new_records: usize,
    /// Checkup documents parsed.
    pub documents: usize,
    /// CSV rows parsed.
    pub rows: usize,
    /// Results not exported: the catalog does not export their item, or their code is
    /// in another code system than the MHLW item codes.
    pub dropped_items: usize,
    /// Inputs set aside, with the reason.
    pub quarantined: Vec<Quarantine>,
    /// Subjects refused because two people share their canonical identity.
    pub conflicts: usize,
    /// Insurer changes linked now: a resident's later token to their first (宛名番号).
    pub resident_links: usize,
    /// 宛名番号 seen with another birth date or sex than before: not linked.
    pub resident_mismatches: usize,
}

/// Progress of the second pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// Records spooled so far.
    pub records: usize,
    /// Inputs (documents, rows, quarantined entries) done.
    pub inputs_done: usize,
    /// Inputs in all.
    pub inputs_total: usize,
    /// Time since the import started.
    pub elapsed: Duration,
}

impl ImportProgress {
    /// Records per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the pace so far, once something is done.
    pub fn eta(&self) -> Option<Duration> {
        if self.inputs_done == 0 {
            return None;
        }
        let left = self.inputs_total.saturating_sub(self.inputs_done) as f64;
        Some(self.elapsed.mul_f64(left / self.inputs_done as f64))
    }

    /// One line: records, inputs, rate and ETA.
    pub fn line(&self) -> String {
        let eta = match self.eta() {
            Some(d) => {
                let s = d.as_secs();
                format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
            }
            None => "-".into(),
        };
        format!(
            "{} records, {}/{} inputs, {:.0} records/s, ETA {eta}",
            self.records,
            self.inputs_done,
            self.inputs_total,
            self.rate()
        )
    }
}

/// Prints progress to stderr: rewritten in place (`\r`) on a terminal, a log line
/// every ten seconds otherwise.
#[derive(Debug)]
pub struct ProgressPrinter {
    tty: bool,
    last: Option<Instant>,
}

impl ProgressPrinter {
    /// A printer for this process's stderr.
    pub fn stderr() -> Self {
        ProgressPrinter {
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    /// Prints `p` unless the last line was printed too recently.
    pub fn report(&mut self, p: &ImportProgress) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the import.
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{}", p.line())
        } else {
            writeln!(err, "import: {}", p.line())
        };
    }

    /// Ends the progress line on a terminal.
    pub fn finish(&mut self) {
        if self.tty && self.last.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// Seals one prepared record as the agent's source, with its subject binding.
pub fn seal_record(
    agent: &Agent,
    record: &PreparedRecord,
    branch: Option<&str>,
) -> Result<NewRecord> {
    let payload = serde_json::to_vec(&record.payload).map_err(|e| Error::Invalid {
        field: "payload",
        value: record.record_id.to_string(),
        reason: e.to_string(),
    })?;
    seal_parts(
        agent,
        &record.record_id,
        &record.subject_token,
        &record.category,
        record.effective_date,
        &payload,
        branch,
    )
}

/// Seals one record whose payload is already JSON text (what the import seals).
pub fn seal_raw(agent: &Agent, record: &RawRecord, branch: Option<&str>) -> Result<NewRecord> {
    seal_parts(
        agent,
        &record.record_id,
        &record.subject_token,
        &record.category,
        record.effective_date,
        &record.payload,
        branch,
    )
}

fn seal_parts(
    agent: &Agent,
    record_id: &RecordId,
    subject: &SubjectToken,
    category: &str,
    effective_date: NaiveDate,
    payload: &[u8],
    branch: Option<&str>,
) -> Result<NewRecord> {
    let key = agent.record_key();
    let header = EnvelopeHeader {
        subject_binding: subject_binding(key, record_id, subject.as_str()),
        record_id: record_id.clone(),
        category: category.to_owned(),
        source: agent.config.source.to_string(),
        effective_date,
        schema_version: SCHEMA_VERSION,
        key_version: key.version(),
    };
    // Compressed and padded to a size bucket: the hub sees only the bucket.
    let sealed = seal(
        key,
        header,
        &renkei_crypto::payload::pack(SCHEMA_VERSION, payload)?,
    )?;
    Ok(NewRecord {
        record_id: record_id.clone(),
        subject: subject.clone(),
        branch: branch.map(str::to_owned),
        category: category.to_owned(),
        sealed: sealed.to_bytes(),
    })
}

enum Msg {
    Batch(Vec<NewRecord>, usize),
    Quarantined(Quarantine),
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Worker(format!("import: {e}"))
}

/// Subjects looked up in the outbox per query.
const KNOWN_CHUNK: usize = 500;

/// Imports `inputs` (files or folders) into `outbox`, reporting progress.
pub async fn import(
    agent: &Agent,
    outbox: &Outbox,
    inputs: &[PathBuf],
    progress: &mut (dyn FnMut(ImportProgress) + Send),
) -> Result<ImportSummary> {
    let started = Instant::now();
    let files = expand_inputs(inputs);
    let (worker, list) = (agent.clone(), files.clone());
    let mut book = tokio::task::spawn_blocking(move || worker.survey(&list))
        .await
        .map_err(join_error)?;
    // Token key rotation: the (old, new) token pairs of everyone surveyed, spooled
    // first so new tokens inherit what is known of old ones (outbox/links.rs).
    outbox.put_links(&agent.take_links()).await?;
    // Insurer changes: a resident's later token, linked to the first one by the
    // 宛名番号 a KDB file gave (outbox/residents.rs).
    let residents = outbox.link_residents(book.residents()).await?;
    // Rows keyed by 宛名番号 alone (the vaccination register) are filed under the token
    // first seen with their 宛名番号, here or in an earlier import.
    let wanted: Vec<&str> = book.wanted_residents().collect();
    let known = outbox.first_sightings(&wanted).await?;
    book.know_residents(known);
    // A token an earlier import found shared is refused for these rows too.
    for chunk in book.resident_tokens().chunks(KNOWN_CHUNK) {
        for (token, known) in outbox.known_subjects(chunk).await? {
            if known.conflict {
                book.refuse(&token);
            }
        }
    }
    // A subject spooled by an earlier import with another 枝番, or refused before,
    // is a conflict now too: never two people's data under one token. The tokens
    // are looked up a chunk at a time, never all copied at once, and only what
    // changes the book is kept until it is applied.
    let mut changes = Vec::new();
    for chunk in book.token_chunks(KNOWN_CHUNK) {
        for (token, known) in outbox.known_subjects(&chunk).await? {
            let same = !known.conflict
                && known
                    .branch
                    .as_deref()
                    .is_none_or(|b| book.branch(&token) == Some(b));
            if !same {
                changes.push((token, known));
            }
        }
    }
    apply_known(&mut book, changes);
    let conflicts = book.conflicts();
    outbox.mark_conflicts(&conflicts).await?;

    let total = book.inputs();
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let worker = agent.clone();
    let producer = tokio::task::spawn_blocking(move || produce(&worker, &files, &book, &tx));
    let mut summary = ImportSummary {
        conflicts: conflicts.len(),
        resident_links: residents.linked,
        resident_mismatches: residents.mismatched,
        ..ImportSummary::default()
    };
    progress(ImportProgress {
        records: 0,
        inputs_done: 0,
        inputs_total: total,
        elapsed: started.elapsed(),
    });
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Batch(records, done) => {
                let put = outbox.put(&records).await?;
                summary.records += records.len();
                summary.new_records += put.inserted;
                for id in put.reused {
                    let reason = Reason::IdentityConflict(
                        "this record id is already spooled for another person: two documents \
                         share a document id (ClinicalDocument/id), from which record ids are \
                         made; the first stays, this one was not spooled (`preview` names the \
                         document by record id)"
                            .into(),
                    );
                    let q = Quarantine::new("outbox", Some(id.to_string()), reason);
                    summary.quarantined.push(q);
                }
                progress(ImportProgress {
                    records: summary.records,
                    inputs_done: done.min(total),
                    inputs_total: total,
                    elapsed: started.elapsed(),
                });
            }
            Msg::Quarantined(q) => summary.quarantined.push(q),
        }
    }
    let (run, failure) = producer.await.map_err(join_error)?;
    drop(agent.take_links()); // pass two saw the same people as the survey
    if let Some(e) = failure {
        return Err(e);
    }
    summary.documents = run.documents;
    summary.rows = run.rows;
    summary.dropped_items = run.dropped_items;
    progress(ImportProgress {
        records: summary.records,
        inputs_done: total,
        inputs_total: total,
        elapsed: started.elapsed(),
    });
    Ok(summary)
}

/// Applies what the outbox knows of some subjects to `book`.
fn apply_known(book: &mut BranchBook, known: Vec<(SubjectToken, KnownSubject)>) {
    for (token, known) in known {
        if known.conflict {
            book.refuse(&token);
        } else if let Some(branch) = known.branch {
            book.observe(&token, Some(&branch));
        }
    }
}

/// The blocking half: prepare and seal (on every core), and send batches in
/// input order until done or the receiver is gone.
fn produce(
    agent: &Agent,
    files: &[PathBuf],
    book: &BranchBook,
    tx: &mpsc::Sender<Msg>,
) -> (RunSummary, Option<Error>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failure = None;
    let mut closed = false;
    let mut done = 0usize;
    let seal = |record: RawRecord| seal_raw(agent, &record, book.branch(&record.subject_token));
    let run = agent.prepare_with(files, book, &seal, &mut |outcome| {
        done += 1;
        if failure.is_some() || closed {
            return;
        }
        match outcome {
            Outcome::Records(records) => {
                batch.extend(records);
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    closed = tx.blocking_send(Msg::Batch(full, done)).is_err();
                }
            }
            Outcome::Quarantined(q) => {
                closed = tx.blocking_send(Msg::Quarantined(q)).is_err();
            }
            Outcome::Failed(e) => failure = Some(e),
        }
    });
    if failure.is_none() && !closed && !batch.is_empty() {
        // The receiver only goes away on an outbox error, which it reports itself.
        let _ = tx.blocking_send(Msg::Batch(batch, done));
    }
    (run, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rate_and_eta() {
        let p = ImportProgress {
            records: 500,
            inputs_done: 25,
            inputs_total: 100,
            elapsed: Duration::from_secs(10),
        };
        assert!((p.rate() - 50.0).abs() < 1e-9);
        assert_eq!(p.eta(), Some(Duration::from_secs(30)));
        assert_eq!(
            p.line(),
            "500 records, 25/100 inputs, 50 records/s, ETA 0:00:30"
        );
        let start = ImportProgress {
            inputs_done: 0,
            elapsed: Duration::ZERO,
            ..p
        };
        assert_eq!(start.eta(), None);
        assert_eq!(start.rate(), 0.0);
        assert!(start.line().ends_with("ETA -"));
    }
}
