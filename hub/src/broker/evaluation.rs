//! Evaluation reports (issue 19): a source delivers its signed programme statistics,
//! sealed to the evaluator its programme names, and the evaluator collects them. A
//! report holds no individual data, so it travels under no resident's consent, only
//! under the policies: the recipient must be a registered, unsuspended participant the
//! policies let read [`CATEGORY`] for [`PURPOSE`] (analysts, `policies/analyst.cedar`).
//! The hub stores the sealed bytes only (it cannot open them) and audits both sides
//! (`evaluation.deliver`, `evaluation.collect`).

use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Hub, authorize_caller, bounded};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
use crate::registry;
pub use renkei_protocol::evaluation::{
    CATEGORY, DeliverBody, Delivered, DeliveredList, DeliveredReport, PAGE_REPORTS, PURPOSE,
};

/// Largest sealed report accepted (base64): a report of many years, measures and strata
/// is far smaller.
const MAX_SEALED: usize = 4 * 1024 * 1024;

/// Stores a report a source delivers; audited either way.
pub async fn deliver(hub: &Hub, who: &ParticipantId, body: &DeliverBody) -> Result<Delivered> {
    let now = hub.now();
    let me = who.to_string();
    let recipient = bounded::participant("recipient", &body.recipient)?;
    if body.purpose != PURPOSE {
        return Err(Error::bad_request(format!(
            "purpose: an evaluation report travels under `{PURPOSE}`, not `{}`",
            bounded::echo(&body.purpose)
        )));
    }
    if body.sealed.len() > MAX_SEALED {
        return Err(Error::TooLarge(format!(
            "sealed: {} bytes exceed the limit of {MAX_SEALED}",
            body.sealed.len()
        )));
    }
    data_encoding::BASE64
        .decode(body.sealed.as_bytes())
        .map_err(|e| Error::bad_request_from("sealed: not base64", e))?;
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, &[ParticipantKind::Source]).await?;
    let allowed = match registry::get(&mut tx, &recipient).await? {
        None => Err("the recipient is not registered".to_owned()),
        Some(p) => {
            let decision = hub
                .policies()
                .authorize_read(&renkei_policies::ReadRequest {
                    participant: &recipient.to_string(),
                    kind: recipient.kind().as_str(),
                    suspended: p.suspended(),
                    purpose: PURPOSE,
                    category: CATEGORY,
                });
            match decision.allowed {
                true => Ok(()),
                false => Err(format!("policy denies: {}", decision.reasons.join("; "))),
            }
        }
    };
    if let Err(why) = allowed {
        let entry = Entry::deny(&me, "evaluation.deliver", &recipient.to_string(), &why);
        audit::append(&mut tx, now, &entry).await?;
        tx.commit().await?;
        return Err(Error::Forbidden(format!(
            "an evaluation report may not go to `{recipient}`: {why}"
        )));
    }
    let id = format!(
        "ev1_{}",
        hex::encode(Sha256::digest(body.sealed.as_bytes()))
    );
    sqlx::query(
        "INSERT INTO hub_evaluation_reports (id, source, recipient, sealed, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(&me)
    .bind(recipient.to_string())
    .bind(&body.sealed)
    .bind(db::micros(now))
    .execute(&mut *tx)
    .await?;
    let entry = Entry::allow(&me, "evaluation.deliver", &id).about("", "", CATEGORY);
    audit::append(&mut tx, now, &entry).await?;
    tx.commit().await?;
    Ok(Delivered { id })
}

/// A page of the reports delivered to the caller, oldest first, after `after` (the
/// `next` of the page before); audited. A page holds at most [`PAGE_REPORTS`], so what
/// one answer loads is bounded however many reports sources deliver.
pub async fn collect(hub: &Hub, who: &ParticipantId, after: Option<&str>) -> Result<DeliveredList> {
    let now = hub.now();
    let me = who.to_string();
    let (after_at, after_id) = match after {
        None => (i64::MIN, String::new()),
        Some(cursor) => parse_cursor(cursor)?,
    };
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, super::RECIPIENTS).await?;
    let rows = sqlx::query(
        "SELECT id, source, sealed, created_at FROM hub_evaluation_reports \
         WHERE recipient = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
         ORDER BY created_at, id LIMIT $4",
    )
    .bind(&me)
    .bind(after_at)
    .bind(&after_id)
    .bind(PAGE_REPORTS as i64)
    .fetch_all(&mut *tx)
    .await?;
    let mut reports = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in rows {
        let at: i64 = r.try_get("created_at")?;
        let id: String = r.try_get("id")?;
        last = Some(format!("{at}.{id}"));
        reports.push(DeliveredReport {
            id,
            source: r.try_get("source")?,
            sealed: r.try_get("sealed")?,
            delivered_at: chrono::DateTime::from_timestamp_micros(at).unwrap_or_default(),
        });
    }
    let next = last.filter(|_| reports.len() == PAGE_REPORTS);
    let entry =
        Entry::allow(&me, "evaluation.collect", &reports.len().to_string()).about("", "", CATEGORY);
    audit::append(&mut tx, now, &entry).await?;
    tx.commit().await?;
    Ok(DeliveredList { reports, next })
}

/// A page cursor, `<microseconds>.<report id>`, as [`collect`] writes it.
fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || {
        Error::bad_request(format!(
            "after: `{}` is not the `next` of a page",
            bounded::echo(cursor)
        ))
    };
    let (at, id) = cursor.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    let hex = id.strip_prefix("ev1_").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}
