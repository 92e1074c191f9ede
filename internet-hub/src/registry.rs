//! The participant registry: who may talk to the hub, their kind, status and
//! published public keys. Read on every request, so suspension is immediate.

use chrono::{DateTime, Utc};
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::db::{self, Db};
use crate::error::{Error, Result};

/// A registered participant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Participant {
    /// `kind:id`.
    pub id: String,
    /// The participant kind.
    pub kind: String,
    /// Human-readable name.
    pub display_name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// X25519 key-grant public key (base64).
    pub grant_pk: Option<String>,
    /// X25519 enrollment public key (base64, sources only).
    pub enrollment_pk: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Participant {
    /// Whether the participant is suspended.
    pub fn suspended(&self) -> bool {
        self.status != "active"
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Participant> {
    Ok(Participant {
        id: r.try_get("participant")?,
        kind: r.try_get("kind")?,
        display_name: r.try_get("display_name")?,
        status: r.try_get("status")?,
        grant_pk: r.try_get("grant_pk")?,
        enrollment_pk: r.try_get("enrollment_pk")?,
        updated_at: db::from_micros(r.try_get("updated_at")?)?,
    })
}

const COLUMNS: &str =
    "participant, kind, display_name, status, grant_pk, enrollment_pk, updated_at";

/// Looks a participant up inside a transaction.
pub async fn get(conn: &mut AnyConnection, id: &ParticipantId) -> Result<Option<Participant>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM hub_participants WHERE participant = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| from_row(&r)).transpose()
}

/// Looks a participant up by its `kind:id` string.
pub async fn get_by_str(conn: &mut AnyConnection, id: &str) -> Result<Option<Participant>> {
    let pid: ParticipantId = id
        .parse()
        .map_err(|e| Error::BadRequest(format!("participant `{id}`: {e}")))?;
    get(conn, &pid).await
}

/// Adds a participant, or updates its name and keys if it exists (status unchanged).
pub async fn add(
    db: &Db,
    id: &ParticipantId,
    display_name: &str,
    grant_pk: Option<&str>,
    enrollment_pk: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    if enrollment_pk.is_some() && id.kind() != ParticipantKind::Source {
        return Err(Error::BadRequest(format!(
            "participant `{id}`: only sources have an enrollment key"
        )));
    }
    let t = db::micros(now);
    let mut tx = db.begin().await?;
    let updated = sqlx::query(
        "UPDATE hub_participants SET display_name = $1, grant_pk = COALESCE($2, grant_pk), \
         enrollment_pk = COALESCE($3, enrollment_pk), updated_at = $4 WHERE participant = $5",
    )
    .bind(display_name)
    .bind(grant_pk)
    .bind(enrollment_pk)
    .bind(t)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        sqlx::query(
            "INSERT INTO hub_participants (participant, kind, display_name, status, grant_pk, \
             enrollment_pk, created_at, updated_at) VALUES ($1,$2,$3,'active',$4,$5,$6,$6)",
        )
        .bind(id.to_string())
        .bind(id.kind().as_str())
        .bind(display_name)
        .bind(grant_pk)
        .bind(enrollment_pk)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    }
    crate::audit::append(
        &mut tx,
        now,
        &crate::audit::Entry::allow("admin", "participant.add", &id.to_string()),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets `active` or `suspended`; effective for the participant's very next request.
pub async fn set_status(
    db: &Db,
    id: &ParticipantId,
    suspended: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let status = if suspended { "suspended" } else { "active" };
    let mut tx = db.begin().await?;
    let n = sqlx::query(
        "UPDATE hub_participants SET status = $1, updated_at = $2 WHERE participant = $3",
    )
    .bind(status)
    .bind(db::micros(now))
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!(
            "participant `{id}` is not registered"
        )));
    }
    let action = if suspended {
        "participant.suspend"
    } else {
        "participant.resume"
    };
    crate::audit::append(
        &mut tx,
        now,
        &crate::audit::Entry::allow("admin", action, &id.to_string()),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Publishes a participant's own public keys (from the participant API).
pub async fn set_keys(
    conn: &mut AnyConnection,
    id: &ParticipantId,
    grant_pk: Option<&str>,
    enrollment_pk: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE hub_participants SET grant_pk = COALESCE($1, grant_pk), \
         enrollment_pk = COALESCE($2, enrollment_pk), updated_at = $3 WHERE participant = $4",
    )
    .bind(grant_pk)
    .bind(enrollment_pk)
    .bind(db::micros(now))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// All participants, ordered by id.
pub async fn list(db: &Db) -> Result<Vec<Participant>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM hub_participants ORDER BY participant"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}
