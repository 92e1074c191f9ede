//! The key-grant queue: which (record, recipient) pairs a source must seal a DEK for,
//! the source's uploads of those grants, and dropping them when consent ends.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use renkei_crypto::envelope::SealedRecord;
use renkei_crypto::grant::KeyGrant;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::{SubjectToken, recipient_pseudonym};
use sqlx::{AnyConnection, Row};

use super::{Hub, authorize_caller, bounded, coverage};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
use crate::registry;
pub use renkei_protocol::{GrantReport, GrantRequest, GrantUpload};

/// A stored record's routing fields.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Record id.
    pub record_id: String,
    /// The uploading source.
    pub source: String,
    /// Subject token.
    pub subject: String,
    /// Category.
    pub category: String,
    /// Effective date.
    pub effective_date: NaiveDate,
}

/// Queues a request for every (record, recipient) where a consent in force covers the
/// record, the recipient's policy allows the read and the recipient holds no grant for
/// it yet. One coverage query for all the records' subjects and one registry lookup per
/// recipient. Returns how many were queued.
pub async fn queue_for_records(
    conn: &mut AnyConnection,
    hub: &Hub,
    recs: &[StoredRecord],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut subjects: Vec<&str> = recs.iter().map(|r| r.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    let covers = coverage::covering_subjects(conn, &subjects, now).await?;
    if covers.is_empty() {
        return Ok(0);
    }
    let mut by_key: HashMap<(&str, &str), Vec<&coverage::SubjectCover>> = HashMap::new();
    for c in &covers {
        by_key
            .entry((c.subject.as_str(), c.category.as_str()))
            .or_default()
            .push(c);
    }
    let mut recipients: HashMap<&str, Option<registry::Participant>> = HashMap::new();
    let mut queued = 0;
    for rec in recs {
        let Some(found) = by_key.get(&(rec.subject.as_str(), rec.category.as_str())) else {
            continue;
        };
        for sc in found.iter().filter(|sc| sc.covers(rec.effective_date)) {
            let id = sc.cover.recipient.as_str();
            if !recipients.contains_key(id) {
                recipients.insert(id, registry::get_by_str(conn, id).await?);
            }
            if let Some(Some(recipient)) = recipients.get(id) {
                queued += queue_one(conn, hub, rec, &sc.cover, recipient, now).await?;
            }
        }
    }
    Ok(queued)
}

/// Queues one (record, recipient) request if the recipient's policy allows the read.
async fn queue_one(
    conn: &mut AnyConnection,
    hub: &Hub,
    rec: &StoredRecord,
    cover: &coverage::Cover,
    recipient: &registry::Participant,
    now: DateTime<Utc>,
) -> Result<usize> {
    let decision = hub
        .policies()
        .authorize_read(&renkei_policies::ReadRequest {
            participant: &recipient.id,
            kind: &recipient.kind,
            suspended: recipient.suspended(),
            purpose: &cover.purpose,
            category: &rec.category,
        });
    if !decision.allowed {
        return Ok(0);
    }
    // A recipient that already holds a grant for the record needs no second one.
    let inserted = sqlx::query(
        "INSERT INTO hub_grant_requests (record_id, recipient, source, consent_id, created_at) \
         SELECT $1,$2,$3,$4,$5 WHERE NOT EXISTS \
           (SELECT 1 FROM hub_key_grants WHERE record_id = $1 AND recipient = $2) \
         ON CONFLICT (record_id, recipient) DO NOTHING",
    )
    .bind(&rec.record_id)
    .bind(&cover.recipient)
    .bind(&rec.source)
    .bind(&cover.consent_id)
    .bind(db::micros(now))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(usize::try_from(inserted).unwrap_or(0))
}

/// Queues requests for every stored record of `subject` in `categories` (after a grant).
pub async fn queue_for_subject(
    conn: &mut AnyConnection,
    hub: &Hub,
    subject: &str,
    categories: &[String],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut records = Vec::new();
    for category in categories {
        let rows = sqlx::query(
            "SELECT record_id, source, effective_date FROM hub_records \
             WHERE subject_token = $1 AND category = $2",
        )
        .bind(subject)
        .bind(category)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let date: String = r.try_get("effective_date")?;
            records.push(StoredRecord {
                record_id: r.try_get("record_id")?,
                source: r.try_get("source")?,
                subject: subject.to_owned(),
                category: category.clone(),
                effective_date: date.parse().map_err(|e| {
                    Error::internal_from(format!("stored effective_date `{date}`"), e)
                })?,
            });
        }
    }
    queue_for_records(conn, hub, &records, now).await
}

/// Drops the pending requests and stored grants of a consent (revocation, expiry).
pub async fn drop_for_consent(conn: &mut AnyConnection, consent_id: &str) -> Result<u64> {
    let a = sqlx::query("DELETE FROM hub_grant_requests WHERE consent_id = $1")
        .bind(consent_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM hub_key_grants WHERE consent_id = $1")
        .bind(consent_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(a + b)
}

/// Drops one stored grant whose consent no longer covers it.
pub async fn drop_grant(conn: &mut AnyConnection, record_id: &str, recipient: &str) -> Result<()> {
    sqlx::query("DELETE FROM hub_key_grants WHERE record_id = $1 AND recipient = $2")
        .bind(record_id)
        .bind(recipient)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// How long a served request waits before it is served again, the first time; each
/// further time twice as long, up to [`RESERVE_MAX_SECS`].
const RESERVE_FIRST_SECS: i64 = 30;

/// The longest wait before a request is served again (a refusal for a reason that passes,
/// such as a stale revocation list, is retried within this).
const RESERVE_MAX_SECS: i64 = 600;

/// Requests marked served in one statement.
const MARK_CHUNK: usize = 200;

/// When a request served for the `served`-th time (1 for the first) is due again (µs).
fn due_again(now: i64, served: i64) -> i64 {
    let shift = u32::try_from(served.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let wait = RESERVE_FIRST_SECS
        .saturating_mul(1_i64 << shift)
        .min(RESERVE_MAX_SECS);
    now.saturating_add(wait.saturating_mul(1_000_000))
}

/// The pending requests for records of `who` that are due, those served fewest times
/// first, then the oldest. Each one served waits before it is served again
/// ([`due_again`]): requests the source refuses (a statement that does not verify, a
/// recipient it does not release to) cannot hold the queue's head and keep every request
/// behind them from being answered. A recipient publishing new keys makes its requests
/// due at once ([`due_now_for_recipient`]).
pub async fn pending(hub: &Hub, who: &ParticipantId, limit: i64) -> Result<Vec<GrantRequest>> {
    let now = db::micros(hub.now());
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, super::PUBLISHERS).await?;
    let rows = sqlx::query(
        "SELECT q.record_id, q.recipient, q.served, p.grant_pk, p.key_statement, r.sealed, \
         k.purpose, r.subject_token, \
         s.statement AS consent_statement \
         FROM hub_grant_requests q \
         JOIN hub_participants p ON p.participant = q.recipient \
         JOIN hub_records r ON r.record_id = q.record_id \
         JOIN consents k ON k.id = q.consent_id \
         LEFT JOIN hub_consent_statements s ON s.consent_id = q.consent_id \
         WHERE q.source = $1 AND q.due_at <= $3 AND p.status = 'active' \
         AND p.grant_pk IS NOT NULL \
         ORDER BY q.served, q.created_at, q.record_id LIMIT $2",
    )
    .bind(who.to_string())
    .bind(limit.clamp(1, hub.limits.max_page))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let served: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get("record_id")?,
                r.try_get("recipient")?,
                r.try_get("served")?,
            ))
        })
        .collect::<std::result::Result<_, sqlx::Error>>()?;
    mark_served(&mut tx, &served, now).await?;
    tx.commit().await?;
    let me = who.to_string();
    rows.iter()
        .map(|r| {
            let token: String = r.try_get("subject_token")?;
            // Only a source learns a token; an app or a clinic its own pseudonym.
            let subject = match who.kind() {
                ParticipantKind::Phr | ParticipantKind::Clinic => SubjectToken::parse(&token)
                    .map(|t| recipient_pseudonym(&hub.pseudonym_key, &me, &t).to_string())
                    .map_err(|e| Error::internal_from("stored subject token", e))?,
                _ => token,
            };
            Ok(GrantRequest {
                record_id: r.try_get("record_id")?,
                recipient: r.try_get("recipient")?,
                recipient_key: r.try_get("grant_pk")?,
                sealed: data_encoding::BASE64.encode(&r.try_get::<Vec<u8>, _>("sealed")?),
                purpose: r.try_get("purpose")?,
                recipient_statement: r
                    .try_get::<Option<String>, _>("key_statement")?
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| Error::internal_from("stored key statement", e))?,
                consent_statement: super::statements::parse(r, "consent_statement")?,
                subject,
            })
        })
        .collect()
}

/// Makes every request to `recipient` due now and new again: it published new keys, so a
/// source that refused to seal to the old ones may answer at once.
pub async fn due_now_for_recipient(conn: &mut AnyConnection, recipient: &str) -> Result<()> {
    sqlx::query("UPDATE hub_grant_requests SET served = 0, due_at = 0 WHERE recipient = $1")
        .bind(recipient)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Notes that `served` (record id, recipient, times served before) were served at `now`:
/// each is due again after its next wait. Requests with the same count share a statement.
async fn mark_served(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    served: &[(String, String, i64)],
    now: i64,
) -> Result<()> {
    let mut by_count: std::collections::BTreeMap<i64, Vec<(&str, &str)>> = Default::default();
    for (record, recipient, count) in served {
        by_count
            .entry(*count)
            .or_default()
            .push((record.as_str(), recipient.as_str()));
    }
    for (count, pairs) in by_count {
        let next = count.saturating_add(1);
        for chunk in pairs.chunks(MARK_CHUNK) {
            let mut sql = String::from(
                "UPDATE hub_grant_requests SET served = $1, due_at = $2 WHERE (record_id, recipient) IN (",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${})", 3 + 2 * i, 4 + 2 * i));
            }
            sql.push(')');
            let mut q = sqlx::query(&sql).bind(next).bind(due_again(now, next));
            for (record, recipient) in chunk {
                q = q.bind(*record).bind(*recipient);
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Stores grants that answer pending requests of `who`; anything else is dropped.
pub async fn upload(
    hub: &Hub,
    who: &ParticipantId,
    uploads: &[GrantUpload],
) -> Result<GrantReport> {
    if uploads.len() > hub.limits.max_batch {
        return Err(Error::TooLarge(format!(
            "{} grants exceed the batch limit of {}",
            uploads.len(),
            hub.limits.max_batch
        )));
    }
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, super::PUBLISHERS).await?;
    let mut report = GrantReport::default();
    for (i, g) in uploads.iter().enumerate() {
        let bytes = data_encoding::BASE64
            .decode(g.grant.as_bytes())
            .map_err(|e| Error::bad_request_from(format!("grants[{i}].grant: not base64"), e))?;
        KeyGrant::from_bytes(&bytes)
            .map_err(|e| Error::bad_request_from(format!("grants[{i}].grant"), e))?;
        let copy_bytes = data_encoding::BASE64
            .decode(g.sealed.as_bytes())
            .map_err(|e| Error::bad_request_from(format!("grants[{i}].sealed: not base64"), e))?;
        let copy = SealedRecord::from_bytes(&copy_bytes)
            .map_err(|e| Error::bad_request_from(format!("grants[{i}].sealed"), e))?;
        let req = sqlx::query(
            "SELECT q.consent_id, r.subject_token, r.category, r.effective_date FROM hub_grant_requests q \
             JOIN hub_records r ON r.record_id = q.record_id \
             WHERE q.record_id = $1 AND q.recipient = $2 AND q.source = $3",
        )
        .bind(&g.record_id)
        .bind(&g.recipient)
        .bind(&me)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(req) = req else {
            report.dropped.push(format!(
                "{} → {}: no pending request",
                g.record_id, g.recipient
            ));
            continue;
        };
        let subject: String = req.try_get("subject_token")?;
        let category: String = req.try_get("category")?;
        let date: String = req.try_get("effective_date")?;
        let date: NaiveDate = date
            .parse()
            .map_err(|e| Error::internal_from("stored date", e))?;
        let h = copy.header();
        if h.source != me
            || h.category != category
            || h.effective_date != date
            || h.record_id.as_str() == g.record_id
        {
            return Err(Error::bad_request(format!(
                "grants[{i}].sealed: not a recipient's copy of `{}` (its own record id, \
                 the record's source, category and effective date)",
                bounded::echo(&g.record_id)
            )));
        }
        let covers =
            coverage::covering_for(&mut tx, &subject, &g.recipient, &category, date, now).await?;
        sqlx::query("DELETE FROM hub_grant_requests WHERE record_id = $1 AND recipient = $2")
            .bind(&g.record_id)
            .bind(&g.recipient)
            .execute(&mut *tx)
            .await?;
        let Some(cover) = covers.first() else {
            report.dropped.push(format!(
                "{} → {}: consent no longer in force",
                g.record_id, g.recipient
            ));
            continue;
        };
        let (seq, _) = db::next_in_sequence(&mut tx, "grants").await?;
        let inserted = sqlx::query(
            "INSERT INTO hub_key_grants (seq, record_id, recipient, consent_id, grant_bytes, created_at, alias, sealed) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING",
        )
        .bind(seq)
        .bind(&g.record_id)
        .bind(&g.recipient)
        .bind(&cover.consent_id)
        .bind(bytes.as_slice())
        .bind(db::micros(now))
        .bind(h.record_id.as_str())
        .bind(copy_bytes.as_slice())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // The recipient already holds a grant for this record, or a copy under this
            // id (a copy id is the source's MAC of the record id, so two records cannot
            // share one honestly): nothing new is stored, and the source is told.
            report.dropped.push(format!(
                "{} → {}: the recipient already holds this record or a copy with id `{}`",
                g.record_id, g.recipient, h.record_id
            ));
            continue;
        }
        audit::append(
            &mut tx,
            now,
            &Entry::allow(&me, "key_grant", &g.record_id).about(
                &subject,
                &cover.consent_id,
                &category,
            ),
        )
        .await?;
        report.stored += 1;
    }
    tx.commit().await?;
    Ok(report)
}

/// Days since the common era, as the consent store keeps dates.
pub fn day_number(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce())
}
