//! The recipient feed and single reads. Every read re-checks consent and policy in a
//! read-only transaction of its own, and answers only once its audit entry is committed
//! (group-committed by [`crate::audit::Writer`], so reads do not serialize).

use chrono::NaiveDate;
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::token::{SubjectToken, recipient_pseudonym};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::{Hub, RECIPIENTS, authorize_caller, coverage, grants};
use crate::audit::{self, Entry};
use crate::error::{Error, Result};

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

/// The records `who` may read now, after `cursor`. Consent and policy are checked in
/// one read-only transaction; items whose consent lapsed since the grant are skipped
/// and their grant dropped. Nothing is answered before the page's audit entries are
/// committed.
pub async fn feed(hub: &Hub, who: &ParticipantId, cursor: i64, limit: i64) -> Result<FeedPage> {
    let limit = limit.clamp(1, hub.limits.max_page);
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin_read().await?;
    let caller = authorize_caller(&mut tx, who, RECIPIENTS).await?;
    let rows = sqlx::query(&format!(
        "{GRANT_SQL} WHERE g.recipient = $1 AND g.seq > $2 ORDER BY g.seq LIMIT $3"
    ))
    .bind(&me)
    .bind(cursor)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    let mut entries = Vec::with_capacity(rows.len());
    let mut denied = Vec::new();
    let mut next_cursor = cursor;
    for r in rows {
        let seq: i64 = r.try_get("seq")?;
        next_cursor = seq;
        let row = GrantRow::from_row(&r)?;
        let outcome = release(&mut tx, hub, &caller.kind, who, &row, now).await?;
        entries.push(row.entry(&me, &outcome));
        match outcome {
            Ok(item) => items.push(FeedItem { seq, ..item }),
            Err(_) => denied.push(row.record_id),
        }
    }
    tx.commit().await?;
    if denied.is_empty() {
        hub.audit.record(now, entries).await?;
    } else {
        let mut tx = hub.db.begin().await?;
        let entries: Vec<_> = entries.into_iter().map(|e| (now, e)).collect();
        audit::append_batch(&mut tx, &entries).await?;
        for record_id in &denied {
            grants::drop_grant(&mut tx, record_id, &me).await?;
        }
        tx.commit().await?;
    }
    Ok(FeedPage { items, next_cursor })
}

/// A single record by id, for its recipient, under a consent in force now.
pub async fn read(hub: &Hub, who: &ParticipantId, record_id: &str) -> Result<FeedItem> {
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin_read().await?;
    let caller = authorize_caller(&mut tx, who, RECIPIENTS).await?;
    let row = sqlx::query(&format!(
        "{GRANT_SQL} WHERE g.recipient = $1 AND g.record_id = $2"
    ))
    .bind(&me)
    .bind(record_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(r) = row else {
        tx.commit().await?;
        let entry = Entry::deny(&me, "read", record_id, "no key grant for this recipient");
        hub.audit.record(now, vec![entry]).await?;
        return Err(Error::NotFound(format!(
            "record `{record_id}` is not available to `{me}`"
        )));
    };
    let seq: i64 = r.try_get("seq")?;
    let row = GrantRow::from_row(&r)?;
    let outcome = release(&mut tx, hub, &caller.kind, who, &row, now).await?;
    tx.commit().await?;
    let entry = row.entry(&me, &outcome);
    match outcome {
        Ok(item) => {
            hub.audit.record(now, vec![entry]).await?;
            Ok(FeedItem { seq, ..item })
        }
        Err(reason) => {
            // The audit row is locked first, as in `consents::after_revoke`.
            let mut tx = hub.db.begin().await?;
            audit::append(&mut tx, now, &entry).await?;
            grants::drop_grant(&mut tx, record_id, &me).await?;
            tx.commit().await?;
            Err(Error::Forbidden(format!("record `{record_id}`: {reason}")))
        }
    }
}

/// A recipient's key grants joined with their records.
const GRANT_SQL: &str = "SELECT g.seq, g.record_id, g.consent_id, g.grant_bytes, r.sealed, \
     r.subject_token, r.category, r.effective_date FROM hub_key_grants g \
     JOIN hub_records r ON r.record_id = g.record_id";

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
    /// The audit entry for releasing (or refusing) this record to `me`.
    fn entry(&self, me: &str, outcome: &std::result::Result<FeedItem, String>) -> Entry {
        let entry = match outcome {
            Ok(_) => Entry::allow(me, "read", &self.record_id),
            Err(reason) => Entry::deny(me, "read", &self.record_id, reason),
        };
        entry.about(&self.subject, &self.consent_id, &self.category)
    }

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
