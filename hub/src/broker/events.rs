//! Recipient events (`consent.revoked`, `consent.expired`): redelivered until the
//! recipient acknowledges, recording whether it deleted the data. Expiry events are
//! materialized when the recipient asks, from `valid_until` and `now`.

use chrono::{DateTime, Utc};
use renkei_crypto::participant::ParticipantId;
use sqlx::{AnyConnection, Row};

use super::{Hub, RECIPIENTS, authorize_caller, grants};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
pub use renkei_protocol::Event;

/// A consent was revoked.
pub const REVOKED: &str = "consent.revoked";
/// A consent reached its end of validity.
pub const EXPIRED: &str = "consent.expired";

/// Queues an event for a recipient (once per consent and kind).
pub async fn push(
    conn: &mut AnyConnection,
    recipient: &str,
    kind: &str,
    consent: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let exists = sqlx::query(
        "SELECT 1 AS one FROM hub_events WHERE recipient = $1 AND kind = $2 AND consent_id = $3",
    )
    .bind(recipient)
    .bind(kind)
    .bind(consent)
    .fetch_optional(&mut *conn)
    .await?;
    if exists.is_some() {
        return Ok(());
    }
    let (seq, _) = db::next_in_sequence(conn, "events").await?;
    sqlx::query("INSERT INTO hub_events (seq, recipient, kind, consent_id, created_at) VALUES ($1,$2,$3,$4,$5)")
        .bind(seq)
        .bind(recipient)
        .bind(kind)
        .bind(consent)
        .bind(db::micros(now))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Unacknowledged events of `who`, oldest first, after materializing expiries.
pub async fn list(hub: &Hub, who: &ParticipantId, limit: i64) -> Result<Vec<Event>> {
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, RECIPIENTS).await?;
    let expired = sqlx::query(
        "SELECT id FROM consents WHERE recipient = $1 AND status = 'active' \
         AND valid_until_us IS NOT NULL AND valid_until_us <= $2",
    )
    .bind(&me)
    .bind(db::micros(now))
    .fetch_all(&mut *tx)
    .await?;
    for r in expired {
        let id: String = r.try_get("id")?;
        grants::drop_for_consent(&mut tx, &id).await?;
        push(&mut tx, &me, EXPIRED, &id, now).await?;
    }
    let rows = sqlx::query(
        "SELECT seq, kind, consent_id, created_at FROM hub_events \
         WHERE recipient = $1 AND acked_at IS NULL ORDER BY seq LIMIT $2",
    )
    .bind(&me)
    .bind(limit.clamp(1, hub.limits.max_page))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                id: r.try_get("seq")?,
                kind: r.try_get("kind")?,
                consent_id: r.try_get("consent_id")?,
                created_at: db::from_micros(r.try_get("created_at")?)?,
            })
        })
        .collect()
}

/// Acknowledges an event of `who`, recording whether the local copies were deleted.
pub async fn ack(hub: &Hub, who: &ParticipantId, id: i64, deleted: bool) -> Result<()> {
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, RECIPIENTS).await?;
    let row = sqlx::query(
        "SELECT consent_id, acked_at FROM hub_events WHERE seq = $1 AND recipient = $2",
    )
    .bind(id)
    .bind(&me)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("event `{id}` not found")))?;
    let consent: String = row.try_get("consent_id")?;
    let acked: Option<i64> = row.try_get("acked_at")?;
    if acked.is_none() {
        sqlx::query("UPDATE hub_events SET acked_at = $1, deleted = $2 WHERE seq = $3")
            .bind(db::micros(now))
            .bind(deleted)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let reason = if deleted {
            "recipient deleted its copies"
        } else {
            "recipient kept its copies"
        };
        audit::append(
            &mut tx,
            now,
            &Entry {
                reason: reason.into(),
                ..Entry::allow(&me, "event.ack", &consent).about("", &consent, "")
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
