//! Records a recipient could not open: the recipient reports them once, the hub counts
//! them per source (metrics, audit), and the source's agent reads the reports, so a
//! source that publishes records no one can open is told instead of every recipient
//! failing silently on every pull.

use renkei_crypto::participant::ParticipantId;
use sqlx::Row;

use super::{Hub, RECIPIENTS, authorize_caller, bounded};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
pub use renkei_protocol::UnreadableReport;

/// Longest stored reason, in characters.
const MAX_REASON: usize = 200;

/// Records that `who` could not open `record_id` (the id of its copy), a record it holds
/// a key grant for.
/// Reporting the same record again is a no-op. Answers whether it was new.
pub async fn report(hub: &Hub, who: &ParticipantId, record_id: &str, reason: &str) -> Result<bool> {
    bounded::record_id(record_id)?;
    let reason = bounded::text(reason, MAX_REASON);
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, RECIPIENTS).await?;
    // The recipient names its copy; the source hears of its own record id.
    let row = sqlx::query(
        "SELECT r.record_id, r.source, r.subject_token, r.category, g.consent_id \
         FROM hub_key_grants g JOIN hub_records r ON r.record_id = g.record_id \
         WHERE g.alias = $1 AND g.recipient = $2",
    )
    .bind(record_id)
    .bind(&me)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("record `{record_id}` is not available to `{me}`")))?;
    let source: String = row.try_get("source")?;
    let record: String = row.try_get("record_id")?;
    let inserted = sqlx::query(
        "INSERT INTO hub_unreadable (record_id, recipient, source, reason, reported_at) \
         VALUES ($1,$2,$3,$4,$5) ON CONFLICT (record_id, recipient) DO NOTHING",
    )
    .bind(&record)
    .bind(&me)
    .bind(&source)
    .bind(&reason)
    .bind(db::micros(now))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted > 0 {
        let entry = Entry {
            reason: format!("reported by the recipient: {reason}"),
            ..Entry::allow(&me, "record.unreadable", &record)
        };
        audit::append(
            &mut tx,
            now,
            &entry.about(
                &row.try_get::<String, _>("subject_token")?,
                &row.try_get::<String, _>("consent_id")?,
                &row.try_get::<String, _>("category")?,
            ),
        )
        .await?;
        tracing::warn!(recipient = %me, %source, record = %record, "a recipient cannot open a record");
    }
    tx.commit().await?;
    Ok(inserted > 0)
}

/// The newest reports about records of `who` (a source, or an app publishing).
pub async fn for_source(
    hub: &Hub,
    who: &ParticipantId,
    limit: i64,
) -> Result<Vec<UnreadableReport>> {
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, super::PUBLISHERS).await?;
    let rows = sqlx::query(
        "SELECT record_id, recipient, reason, reported_at FROM hub_unreadable \
         WHERE source = $1 ORDER BY reported_at DESC, record_id LIMIT $2",
    )
    .bind(who.to_string())
    .bind(limit.clamp(1, hub.limits.max_page))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(UnreadableReport {
                record_id: r.try_get("record_id")?,
                recipient: r.try_get("recipient")?,
                reason: r.try_get("reason")?,
                reported_at: db::from_micros(r.try_get("reported_at")?)?,
            })
        })
        .collect()
}
