//! Source uploads: idempotent by record id, all or nothing per batch, durable before
//! the answer.

use std::collections::HashMap;

use renkei_crypto::envelope::SealedRecord;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::SubjectToken;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use super::{Hub, authorize_caller, grants};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
pub use renkei_protocol::{IngestReport, Upload};

/// Whether a participant of `kind` may publish `category`: a PHR app the resident's own
/// records (`phr.*`) and what a consultation service saw (`consult.*`); a clinic the
/// vaccinations it gave (`immunization.*`); an LGWAN source everything else, the
/// municipality's vaccination register among it, but never an evaluation table (which
/// travels on its own, `evaluation.rs`).
fn may_publish(kind: ParticipantKind, category: &str) -> bool {
    let app = category.starts_with("phr.") || category.starts_with("consult.");
    match kind {
        ParticipantKind::Phr => app,
        ParticipantKind::Clinic => category.starts_with("immunization."),
        ParticipantKind::Source => !app && !category.starts_with("evaluation."),
        _ => false,
    }
}

/// Stores a batch of sealed records from a source. All or nothing: a malformed record
/// or a different record under an existing id rejects the whole batch. The batch is
/// checked in memory first, then stored with a handful of statements whatever its size
/// (one lookup of existing ids, multi-row inserts, one coverage query, one audit append).
pub async fn ingest(hub: &Hub, who: &ParticipantId, batch: &[Upload]) -> Result<IngestReport> {
    let r = ingest_checked(hub, who, batch).await;
    super::subjects::audited(hub, who, "ingest", r).await
}

async fn ingest_checked(hub: &Hub, who: &ParticipantId, batch: &[Upload]) -> Result<IngestReport> {
    if batch.len() > hub.limits.max_batch {
        return Err(Error::TooLarge(format!(
            "batch of {} records exceeds the limit of {}",
            batch.len(),
            hub.limits.max_batch
        )));
    }
    let me = who.to_string();
    let policies = hub.policies();
    let mut checked = Vec::with_capacity(batch.len());
    for (i, upload) in batch.iter().enumerate() {
        let sealed = SealedRecord::from_bytes(&upload.sealed)
            .map_err(|e| Error::bad_request_from(format!("records[{i}]"), e))?;
        let h = sealed.header();
        let record_id = h.record_id.to_string();
        if h.source != me {
            return Err(Error::Forbidden(format!(
                "records[{i}] `{record_id}`: source `{}` is not the uploader `{who}`",
                h.source
            )));
        }
        if !policies.catalog().is_category(&h.category) {
            return Err(Error::bad_request(format!(
                "records[{i}] `{record_id}`: unknown category `{}`",
                h.category
            )));
        }
        if !may_publish(who.kind(), &h.category) {
            return Err(Error::Forbidden(format!(
                "records[{i}] `{record_id}`: a `{}` source may not publish `{}`",
                who.kind().as_str(),
                h.category
            )));
        }
        checked.push(Checked {
            index: i,
            digest: hex::encode(Sha256::digest(&upload.sealed)),
            record: grants::StoredRecord {
                record_id,
                source: me.clone(),
                subject: String::new(),
                category: h.category.clone(),
                effective_date: h.effective_date,
            },
            sealed: &upload.sealed,
        });
    }

    let now = hub.now();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, super::PUBLISHERS).await?;
    let mut subjects: HashMap<&str, String> = HashMap::new();
    for (c, upload) in checked.iter_mut().zip(batch) {
        let named = upload.subject.as_str();
        let subject = match subjects.get(named) {
            Some(known) => known.clone(),
            None => {
                let subject =
                    resolve_subject(&mut tx, who, named, now)
                        .await
                        .map_err(|e| match e {
                            Error::BadRequest { context, source } => Error::BadRequest {
                                context: format!(
                                    "records[{}] `{}`: {context}",
                                    c.index, c.record.record_id
                                ),
                                source,
                            },
                            other => other,
                        })?;
                subjects.insert(named, subject.clone());
                subject
            }
        };
        c.record.subject = subject;
    }
    if who.kind() == ParticipantKind::Source {
        let mut tokens: Vec<&str> = subjects.values().map(String::as_str).collect();
        tokens.sort_unstable();
        tokens.dedup();
        super::subjects::claim(&mut tx, &me, &tokens, now).await?;
    }

    let stored = stored_digests(&mut tx, &checked).await?;
    let mut report = IngestReport::default();
    let mut fresh: Vec<&Checked<'_>> = Vec::with_capacity(checked.len());
    let mut in_batch: HashMap<&str, &str> = HashMap::new();
    for c in &checked {
        let id = c.record.record_id.as_str();
        match stored
            .get(id)
            .map(String::as_str)
            .or(in_batch.get(id).copied())
        {
            Some(d) if d == c.digest => report.duplicates += 1,
            Some(_) => {
                return Err(Error::Conflict(format!(
                    "records[{}]: a different record is already stored under `{id}`",
                    c.index
                )));
            }
            None => {
                in_batch.insert(id, &c.digest);
                fresh.push(c);
            }
        }
    }
    insert_records(&mut tx, &fresh, now).await?;
    let records: Vec<_> = fresh.iter().map(|c| c.record.clone()).collect();
    report.accepted = records.len();
    report.grant_requests = grants::queue_for_records(&mut tx, hub, &records, now).await?;
    let entries: Vec<_> = records
        .iter()
        .map(|r| {
            let e = Entry::allow(&me, "ingest", &r.record_id).about(&r.subject, "", &r.category);
            (now, e)
        })
        .collect();
    if !entries.is_empty() {
        audit::append_batch(&mut tx, &entries).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// An upload that passed the checks that need no database.
struct Checked<'a> {
    /// Its position in the batch, for errors.
    index: usize,
    /// SHA-256 of the sealed bytes (hex).
    digest: String,
    record: grants::StoredRecord,
    sealed: &'a [u8],
}

/// Ids per `IN (…)` lookup and rows per multi-row `INSERT` (8 parameters each).
const CHUNK: usize = 256;

/// The digests already stored under the batch's record ids.
async fn stored_digests(
    conn: &mut AnyConnection,
    checked: &[Checked<'_>],
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for chunk in checked.chunks(CHUNK) {
        let sql = format!(
            "SELECT record_id, digest FROM hub_records WHERE record_id IN ({})",
            db::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for c in chunk {
            q = q.bind(c.record.record_id.as_str());
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(r.try_get("record_id")?, r.try_get("digest")?);
        }
    }
    Ok(out)
}

async fn insert_records(
    conn: &mut AnyConnection,
    fresh: &[&Checked<'_>],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    for chunk in fresh.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO hub_records (record_id, source, subject_token, category, effective_date, \
             digest, sealed, received_at) VALUES {}",
            db::values_rows(conn, chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for c in chunk {
            let r = &c.record;
            q = q
                .bind(r.record_id.as_str())
                .bind(r.source.as_str())
                .bind(r.subject.as_str())
                .bind(r.category.as_str())
                .bind(r.effective_date.to_string())
                .bind(c.digest.as_str())
                .bind(c.sealed)
                .bind(db::micros(now));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The subject token a record names: a source names it directly (`st1_…`, resolved to
/// the canonical token when the source linked it after a token key rotation); a PHR
/// app names its own pseudonym (`rp1_…`) for a resident linked to it.
async fn resolve_subject(
    conn: &mut AnyConnection,
    who: &ParticipantId,
    named: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    match who.kind() {
        // An app publishes only for residents who linked it by enrollment.
        ParticipantKind::Phr => super::subjects::linked_subject(conn, who, named).await,
        // A clinic only for residents it knows as a recipient, by its own pseudonym.
        ParticipantKind::Clinic => super::subjects::recipient_subject(conn, who, named, now).await,
        _ => {
            SubjectToken::parse(named).map_err(|e| {
                Error::bad_request_from(format!("subject `{}`", super::bounded::echo(named)), e)
            })?;
            super::links::resolve(conn, &who.to_string(), named).await
        }
    }
}
