//! Enrollment brokering (DESIGN.md step 6): a PHR app submits a resident's identifiers
//! (and the one-time enrollment code the municipality issued them) sealed to a source's
//! enrollment key; the source opens, tokenizes, checks and answers; the hub links the
//! app's user to the subject. The hub never sees the identifiers or the code.
//!
//! The app's `user_ref` is kept only as a keyed hash (`ur1_…`, under a key derived
//! from the receipt pepper, bound to the app): the submission's answer echoes what the
//! app sent, later views show the hash. Rows stored in plain text by an older hub are
//! hashed when the hub starts ([`hash_stored_user_refs`]).

use chrono::{DateTime, Utc};
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::token::{UserRefHash, user_ref_hash};
use sqlx::Row;

use super::{Hub, authorize_caller, bounded, consents};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
use crate::registry;
pub use renkei_protocol::{Enrollment, EnrollmentResult, SubmitBody};

const MAX_SEALED: usize = 16 * 1024;

/// Enrollments one app may have waiting for one source at once. The source answers
/// them oldest first, a page at a time: without a bound, one app's flood would hold
/// every other app's residents back until their requests expired.
pub const MAX_PENDING_PER_APP: i64 = 1000;

/// Queues an enrollment request for its source.
pub async fn submit(hub: &Hub, who: &ParticipantId, body: &SubmitBody) -> Result<Enrollment> {
    let now = hub.now();
    let me = who.to_string();
    if body.user_ref.is_empty() || body.user_ref.len() > 128 {
        return Err(Error::bad_request("user_ref must be 1 to 128 characters"));
    }
    let sealed = data_encoding::BASE64
        .decode(body.sealed.as_bytes())
        .map_err(|e| Error::bad_request_from("sealed: not base64", e))?;
    if sealed.is_empty() || sealed.len() > MAX_SEALED {
        return Err(Error::bad_request(format!(
            "sealed: must be 1 to {MAX_SEALED} bytes"
        )));
    }
    bounded::participant("source", &body.source)?;
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, &[ParticipantKind::Phr]).await?;
    let source = registry::get_by_str(&mut tx, &body.source).await?;
    match &source {
        Some(s) if s.kind == "source" && !s.suspended() && s.enrollment_pk.is_some() => {}
        _ => {
            return Err(Error::bad_request(format!(
                "source `{}` does not take enrollments",
                bounded::echo(&body.source)
            )));
        }
    }
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM hub_enrollments \
         WHERE source = $1 AND status = 'pending' AND requester = $2 AND expires_at > $3",
    )
    .bind(&body.source)
    .bind(&me)
    .bind(db::micros(now))
    .fetch_one(&mut *tx)
    .await?;
    if waiting >= MAX_PENDING_PER_APP {
        return Err(Error::RateLimited(60));
    }
    let user_ref = user_ref_hash(&hub.receipt_pepper, &me, &body.user_ref);
    let id = uuid::Uuid::new_v4().to_string();
    let ttl = chrono::Duration::from_std(hub.limits.enrollment_ttl)
        .map_err(|e| Error::internal_from("enrollment ttl", e))?;
    let expires = now + ttl;
    sqlx::query(
        "INSERT INTO hub_enrollments (id, requester, source, user_ref, sealed, status, created_at, expires_at) \
         VALUES ($1,$2,$3,$4,$5,'pending',$6,$7)",
    )
    .bind(&id)
    .bind(&me)
    .bind(&body.source)
    .bind(user_ref.as_str())
    .bind(sealed.as_slice())
    .bind(db::micros(now))
    .bind(db::micros(expires))
    .execute(&mut *tx)
    .await?;
    audit::append(&mut tx, now, &Entry::allow(&me, "enrollment.submit", &id)).await?;
    tx.commit().await?;
    Ok(Enrollment {
        id,
        user_ref: body.user_ref.clone(),
        source: body.source.clone(),
        status: "pending".into(),
        pseudonym: None,
        reason: None,
        sealed: None,
        requester: me,
        expires_at: expires,
    })
}

/// Hashes the `user_ref`s an older hub stored in plain text (each a keyed hash bound
/// to its app, as new ones are); returns how many. Run at start-up, before serving.
pub async fn hash_stored_user_refs(db: &crate::db::Db, pepper: &[u8]) -> Result<u64> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query(
        "SELECT id, requester, user_ref FROM hub_enrollments \
         WHERE substr(user_ref, 1, 4) <> 'ur1_' OR length(user_ref) <> 36",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut hashed = 0;
    for r in &rows {
        let id: String = r.try_get("id")?;
        let requester: String = r.try_get("requester")?;
        let plain: String = r.try_get("user_ref")?;
        if UserRefHash::parse(&plain).is_ok() {
            continue;
        }
        sqlx::query("UPDATE hub_enrollments SET user_ref = $1 WHERE id = $2")
            .bind(user_ref_hash(pepper, &requester, &plain).as_str())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        hashed += 1;
    }
    tx.commit().await?;
    Ok(hashed)
}

fn from_row(r: &sqlx::any::AnyRow, now: DateTime<Utc>, with_sealed: bool) -> Result<Enrollment> {
    let expires_at = db::from_micros(r.try_get("expires_at")?)?;
    let mut status: String = r.try_get("status")?;
    if status == "pending" && now >= expires_at {
        status = "expired".into();
    }
    let sealed: Vec<u8> = r.try_get("sealed")?;
    Ok(Enrollment {
        id: r.try_get("id")?,
        user_ref: r.try_get("user_ref")?,
        source: r.try_get("source")?,
        status,
        pseudonym: r.try_get("pseudonym")?,
        reason: r.try_get("reason")?,
        sealed: with_sealed.then(|| data_encoding::BASE64.encode(&sealed)),
        requester: r.try_get("requester")?,
        expires_at,
    })
}

const COLUMNS: &str =
    "id, requester, source, user_ref, sealed, status, pseudonym, reason, expires_at";

/// The app's view of one of its enrollments (another app's id is not found).
pub async fn get(hub: &Hub, who: &ParticipantId, id: &str) -> Result<Enrollment> {
    let now = hub.now();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, &[ParticipantKind::Phr]).await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM hub_enrollments WHERE id = $1 AND requester = $2"
    ))
    .bind(id)
    .bind(who.to_string())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("enrollment `{id}` not found")))?;
    tx.commit().await?;
    from_row(&row, now, false)
}

/// Pending, unexpired requests for the calling source.
pub async fn pending(hub: &Hub, who: &ParticipantId, limit: i64) -> Result<Vec<Enrollment>> {
    let now = hub.now();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, &[ParticipantKind::Source]).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM hub_enrollments WHERE source = $1 AND status = 'pending' \
         AND expires_at > $2 ORDER BY created_at LIMIT $3"
    ))
    .bind(who.to_string())
    .bind(db::micros(now))
    .bind(limit.clamp(1, hub.limits.max_page))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(|r| from_row(r, now, true)).collect()
}

/// Records the source's answer to a pending request addressed to it.
pub async fn answer(
    hub: &Hub,
    who: &ParticipantId,
    id: &str,
    body: &EnrollmentResult,
) -> Result<Enrollment> {
    let r = answer_checked(hub, who, id, body).await;
    super::subjects::audited(hub, who, "enrollment.link", r).await
}

async fn answer_checked(
    hub: &Hub,
    who: &ParticipantId,
    id: &str,
    body: &EnrollmentResult,
) -> Result<Enrollment> {
    let now = hub.now();
    let me = who.to_string();
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, &[ParticipantKind::Source]).await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM hub_enrollments WHERE id = $1 AND source = $2"
    ))
    .bind(id)
    .bind(&me)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound(format!("enrollment `{id}` not found")))?;
    let current = from_row(&row, now, false)?;
    if current.status != "pending" {
        return Err(Error::Conflict(format!(
            "enrollment `{id}` is already {}",
            current.status
        )));
    }
    let (status, pseudonym, reason, entry) = match body {
        EnrollmentResult::Linked { subject_token } => {
            renkei_crypto::token::SubjectToken::parse(subject_token)
                .map_err(|e| Error::bad_request_from("subject_token", e))?;
            let subject_token = &super::links::resolve(&mut tx, &me, subject_token).await?;
            super::subjects::claim(&mut tx, &me, &[subject_token.as_str()], now).await?;
            super::subjects::link_app(&mut tx, &current.requester, subject_token, &me, now).await?;
            let p = consents::link(&mut tx, hub, &current.requester, subject_token, now).await?;
            (
                "linked",
                Some(p),
                None,
                Entry::allow(&me, "enrollment.link", id).about(subject_token, "", ""),
            )
        }
        EnrollmentResult::Rejected { reason } => {
            let r: String = reason.chars().take(500).collect();
            (
                "rejected",
                None,
                Some(r.clone()),
                Entry::deny(&me, "enrollment.link", id, &r),
            )
        }
    };
    sqlx::query("UPDATE hub_enrollments SET status = $1, pseudonym = $2, reason = $3, resolved_at = $4 WHERE id = $5")
        .bind(status)
        .bind(&pseudonym)
        .bind(&reason)
        .bind(db::micros(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::append(&mut tx, now, &entry).await?;
    tx.commit().await?;
    Ok(Enrollment {
        status: status.into(),
        pseudonym,
        reason,
        ..current
    })
}
