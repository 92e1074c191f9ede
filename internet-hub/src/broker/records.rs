//! Source uploads (idempotent by record id), the recipient feed and single reads.
//! Every read re-checks consent and policy in the transaction that serves it.

use chrono::NaiveDate;
use renkei_crypto::envelope::SealedRecord;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::{SubjectToken, recipient_pseudonym};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use super::{Hub, RECIPIENTS, authorize_caller, coverage, grants};
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

/// The subject token a record names: a source names it directly (`st1_…`); a PHR app
/// names its own pseudonym (`rp1_…`) for a resident linked to it.
async fn resolve_subject(
    conn: &mut AnyConnection,
    who: &ParticipantId,
    named: &str,
) -> Result<String> {
    if who.kind() != ParticipantKind::Phr {
        SubjectToken::parse(named)
            .map_err(|e| Error::BadRequest(format!("subject `{named}`: {e}")))?;
        return Ok(named.to_owned());
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

/// One record as a recipient receives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedItem {
    /// Feed position (pass the last one back as `cursor`).
    pub seq: i64,
    /// Record id.
    pub record_id: String,
    /// The subject as this recipient knows it (`rp1_…`).
    pub pseudonym: String,
    /// Data category.
    pub category: String,
    /// Effective (exam) date.
    pub effective_date: String,
    /// The consent that releases it.
    pub consent_id: String,
    /// Sealed record bytes (base64; see docs/envelope.md).
    pub sealed: String,
    /// HPKE key grant for this recipient (base64).
    pub grant: String,
}

/// A page of the feed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedPage {
    /// Items released now.
    pub items: Vec<FeedItem>,
    /// Cursor for the next page.
    pub next_cursor: i64,
}

/// The records `who` may read now, after `cursor`. Items whose consent lapsed since the
/// grant are skipped (and their grant dropped) in the same transaction.
pub async fn feed(hub: &Hub, who: &ParticipantId, cursor: i64, limit: i64) -> Result<FeedPage> {
    let limit = limit.clamp(1, hub.limits.max_page);
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    let caller = authorize_caller(&mut tx, who, RECIPIENTS).await?;
    let rows = sqlx::query(
        "SELECT g.seq, g.record_id, g.consent_id, g.grant_bytes, r.sealed, r.subject_token, \
         r.category, r.effective_date FROM hub_key_grants g JOIN hub_records r ON r.record_id = g.record_id \
         WHERE g.recipient = $1 AND g.seq > $2 ORDER BY g.seq LIMIT $3",
    )
    .bind(&me)
    .bind(cursor)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    let mut next_cursor = cursor;
    for r in rows {
        let seq: i64 = r.try_get("seq")?;
        next_cursor = seq;
        let row = GrantRow::from_row(&r)?;
        match release(&mut tx, hub, &caller.kind, who, &row, now).await? {
            Ok(item) => {
                audit::append(
                    &mut tx,
                    now,
                    &Entry::allow(&me, "read", &row.record_id).about(
                        &row.subject,
                        &row.consent_id,
                        &row.category,
                    ),
                )
                .await?;
                items.push(FeedItem { seq, ..item });
            }
            Err(reason) => {
                grants::drop_grant(&mut tx, &row.record_id, &me).await?;
                audit::append(
                    &mut tx,
                    now,
                    &Entry::deny(&me, "read", &row.record_id, &reason).about(
                        &row.subject,
                        &row.consent_id,
                        &row.category,
                    ),
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(FeedPage { items, next_cursor })
}

/// A single record by id, for its recipient, under a consent in force now.
pub async fn read(hub: &Hub, who: &ParticipantId, record_id: &str) -> Result<FeedItem> {
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    let caller = authorize_caller(&mut tx, who, RECIPIENTS).await?;
    let row = sqlx::query(
        "SELECT g.seq, g.record_id, g.consent_id, g.grant_bytes, r.sealed, r.subject_token, \
         r.category, r.effective_date FROM hub_key_grants g JOIN hub_records r ON r.record_id = g.record_id \
         WHERE g.recipient = $1 AND g.record_id = $2",
    )
    .bind(&me)
    .bind(record_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(r) = row else {
        audit::append(
            &mut tx,
            now,
            &Entry::deny(&me, "read", record_id, "no key grant for this recipient"),
        )
        .await?;
        tx.commit().await?;
        return Err(Error::NotFound(format!(
            "record `{record_id}` is not available to `{me}`"
        )));
    };
    let seq: i64 = r.try_get("seq")?;
    let row = GrantRow::from_row(&r)?;
    let outcome = release(&mut tx, hub, &caller.kind, who, &row, now).await?;
    let entry = match &outcome {
        Ok(_) => Entry::allow(&me, "read", record_id),
        Err(reason) => Entry::deny(&me, "read", record_id, reason),
    };
    audit::append(
        &mut tx,
        now,
        &entry.about(&row.subject, &row.consent_id, &row.category),
    )
    .await?;
    if outcome.is_err() {
        grants::drop_grant(&mut tx, record_id, &me).await?;
    }
    tx.commit().await?;
    match outcome {
        Ok(item) => Ok(FeedItem { seq, ..item }),
        Err(reason) => Err(Error::Forbidden(format!("record `{record_id}`: {reason}"))),
    }
}

struct GrantRow {
    record_id: String,
    consent_id: String,
    grant: Vec<u8>,
    sealed: Vec<u8>,
    subject: String,
    category: String,
    effective_date: NaiveDate,
}

impl GrantRow {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<Self> {
        let date: String = r.try_get("effective_date")?;
        Ok(GrantRow {
            record_id: r.try_get("record_id")?,
            consent_id: r.try_get("consent_id")?,
            grant: r.try_get("grant_bytes")?,
            sealed: r.try_get("sealed")?,
            subject: r.try_get("subject_token")?,
            category: r.try_get("category")?,
            effective_date: date
                .parse()
                .map_err(|e| Error::Internal(format!("stored effective_date `{date}`: {e}")))?,
        })
    }
}

/// Decides, now and in this transaction, whether the grant may be released.
async fn release(
    conn: &mut AnyConnection,
    hub: &Hub,
    kind: &str,
    who: &ParticipantId,
    row: &GrantRow,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Result<FeedItem, String>> {
    let me = who.to_string();
    let covers = coverage::covering_for(
        conn,
        &row.subject,
        &me,
        &row.category,
        row.effective_date,
        now,
    )
    .await?;
    let Some(cover) = covers
        .iter()
        .find(|c| c.consent_id == row.consent_id)
        .or(covers.first())
    else {
        return Ok(Err("no consent in force covers this record".into()));
    };
    let decision = hub
        .policies()
        .authorize_read(&renkei_policies::ReadRequest {
            participant: &me,
            kind,
            suspended: false,
            purpose: &cover.purpose,
            category: &row.category,
        });
    if !decision.allowed {
        return Ok(Err(format!(
            "policy denies: {}",
            decision.reasons.join("; ")
        )));
    }
    let subject = SubjectToken::parse(&row.subject)
        .map_err(|e| Error::Internal(format!("stored subject token: {e}")))?;
    let b64 = data_encoding::BASE64;
    Ok(Ok(FeedItem {
        seq: 0,
        record_id: row.record_id.clone(),
        pseudonym: recipient_pseudonym(&hub.pseudonym_key, &me, &subject).to_string(),
        category: row.category.clone(),
        effective_date: row.effective_date.to_string(),
        consent_id: cover.consent_id.clone(),
        sealed: b64.encode(&row.sealed),
        grant: b64.encode(&row.grant),
    }))
}
