//! Source uploads: idempotent by record id, all or nothing per batch, durable before
//! the answer.

use renkei_crypto::envelope::SealedRecord;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::SubjectToken;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use super::{Hub, authorize_caller, grants};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};

/// What an upload did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IngestReport {
    /// Records stored now.
    pub accepted: usize,
    /// Records already stored with identical bytes (no-ops).
    pub duplicates: usize,
    /// Key-grant requests queued for existing consents.
    pub grant_requests: usize,
}

/// One uploaded record: the sealed bytes and the subject they are about, named as the
/// source knows it (`st1_…` from an agent, the app's own `rp1_…` from a PHR app).
#[derive(Debug, Clone)]
pub struct Upload {
    /// Sealed record bytes.
    pub sealed: Vec<u8>,
    /// The subject.
    pub subject: String,
}

/// Stores a batch of sealed records from a source. All or nothing: a malformed record
/// or a different record under an existing id rejects the whole batch.
pub async fn ingest(hub: &Hub, who: &ParticipantId, batch: &[Upload]) -> Result<IngestReport> {
    if batch.len() > hub.limits.max_batch {
        return Err(Error::TooLarge(format!(
            "batch of {} records exceeds the limit of {}",
            batch.len(),
            hub.limits.max_batch
        )));
    }
    let now = hub.now();
    let mut tx = hub.db.begin().await?;
    authorize_caller(
        &mut tx,
        who,
        &[ParticipantKind::Source, ParticipantKind::Phr],
    )
    .await?;
    let mut report = IngestReport::default();
    for (i, upload) in batch.iter().enumerate() {
        let bytes = &upload.sealed;
        let sealed = SealedRecord::from_bytes(bytes)
            .map_err(|e| Error::BadRequest(format!("records[{i}]: {e}")))?;
        let h = sealed.header();
        let record_id = h.record_id.to_string();
        if h.source != who.to_string() {
            return Err(Error::Forbidden(format!(
                "records[{i}] `{record_id}`: source `{}` is not the uploader `{who}`",
                h.source
            )));
        }
        if !hub.policies().catalog().is_category(&h.category) {
            return Err(Error::BadRequest(format!(
                "records[{i}] `{record_id}`: unknown category `{}`",
                h.category
            )));
        }
        let app_category = h.category.starts_with("phr.");
        if app_category != (who.kind() == ParticipantKind::Phr) {
            return Err(Error::Forbidden(format!(
                "records[{i}] `{record_id}`: a `{}` source may not publish `{}`",
                who.kind().as_str(),
                h.category
            )));
        }
        let subject = resolve_subject(&mut tx, who, &upload.subject)
            .await
            .map_err(|e| match e {
                Error::BadRequest(m) => {
                    Error::BadRequest(format!("records[{i}] `{record_id}`: {m}"))
                }
                other => other,
            })?;
        let digest = hex::encode(Sha256::digest(bytes));
        let existing = sqlx::query("SELECT digest FROM hub_records WHERE record_id = $1")
            .bind(&record_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            let stored: String = row.try_get("digest")?;
            if stored == digest {
                report.duplicates += 1;
                continue;
            }
            return Err(Error::Conflict(format!(
                "records[{i}]: a different record is already stored under `{record_id}`"
            )));
        }
        sqlx::query(
            "INSERT INTO hub_records (record_id, source, subject_token, category, effective_date, \
             digest, sealed, received_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        )
        .bind(&record_id)
        .bind(who.to_string())
        .bind(&subject)
        .bind(&h.category)
        .bind(h.effective_date.to_string())
        .bind(&digest)
        .bind(bytes.as_slice())
        .bind(db::micros(now))
        .execute(&mut *tx)
        .await?;
        report.accepted += 1;
        report.grant_requests += grants::queue_for_record(
            &mut tx,
            hub,
            &grants::StoredRecord {
                record_id: record_id.clone(),
                source: who.to_string(),
                subject: subject.clone(),
                category: h.category.clone(),
                effective_date: h.effective_date,
            },
            now,
        )
        .await?;
        audit::append(
            &mut tx,
            now,
            &Entry::allow(&who.to_string(), "ingest", &record_id).about(&subject, "", &h.category),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// The subject token a record names: a source names it directly (`st1_…`, resolved to
/// the canonical token when the source linked it after a token key rotation); a PHR
/// app names its own pseudonym (`rp1_…`) for a resident linked to it.
async fn resolve_subject(
    conn: &mut AnyConnection,
    who: &ParticipantId,
    named: &str,
) -> Result<String> {
    if who.kind() != ParticipantKind::Phr {
        SubjectToken::parse(named)
            .map_err(|e| Error::BadRequest(format!("subject `{named}`: {e}")))?;
        return super::links::resolve(conn, &who.to_string(), named).await;
    }
    let row = sqlx::query(
        "SELECT subject_token FROM hub_pseudonyms WHERE recipient = $1 AND pseudonym = $2",
    )
    .bind(who.to_string())
    .bind(named)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(r.try_get("subject_token")?),
        None => Err(Error::BadRequest(format!(
            "subject `{named}` is not a resident linked to `{who}`"
        ))),
    }
}
