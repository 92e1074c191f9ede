//! The participant registry: who may talk to the hub, their kind, status and
//! published public keys. Read on every request, so suspension is immediate.
//! Also the certificate expiry view of the PKI index (`participants list --pki`,
//! `pki expiring`): what must be renewed soon.

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
    /// The participant's signed key statement (JSON), if it published one.
    pub key_statement: Option<String>,
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
        key_statement: r.try_get("key_statement")?,
        updated_at: db::from_micros(r.try_get("updated_at")?)?,
    })
}

const COLUMNS: &str =
    "participant, kind, display_name, status, grant_pk, enrollment_pk, key_statement, updated_at";

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
    let pid: ParticipantId = id.parse().map_err(|e| {
        let shown = crate::broker::bounded::echo(id);
        Error::bad_request_from(format!("participant `{shown}`"), e)
    })?;
    get(conn, &pid).await
}

/// Sets a participant's English display name (residents reading the portal in English
/// see it; the Japanese one is `display_name`).
pub async fn set_english_name(db: &Db, id: &ParticipantId, name: &str) -> Result<()> {
    let done =
        sqlx::query("UPDATE hub_participants SET display_name_en = $1 WHERE participant = $2")
            .bind(name)
            .bind(id.to_string())
            .execute(db.pool())
            .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("participant `{id}` not found")));
    }
    Ok(())
}

/// The display names (Japanese, English if set) of the participants among `ids`.
pub async fn names(
    conn: &mut sqlx::AnyConnection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, (String, Option<String>)>> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(256) {
        let sql = format!(
            "SELECT participant, display_name, display_name_en FROM hub_participants \
             WHERE participant IN ({})",
            db::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(
                r.try_get("participant")?,
                (r.try_get("display_name")?, r.try_get("display_name_en")?),
            );
        }
    }
    Ok(out)
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
        return Err(Error::bad_request(format!(
            "participant `{id}`: only sources have an enrollment key"
        )));
    }
    for (what, key) in [("grant key", grant_pk), ("enrollment key", enrollment_pk)] {
        if let Some(key) = key {
            renkei_crypto::grant::RecipientPublicKey::from_base64(key).map_err(|e| {
                Error::bad_request(format!(
                    "participant `{id}`: the {what} is not a base64 X25519 public key: {e}"
                ))
            })?;
        }
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
    statement: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE hub_participants SET grant_pk = COALESCE($1, grant_pk), \
         enrollment_pk = COALESCE($2, enrollment_pk), key_statement = $5, updated_at = $3 \
         WHERE participant = $4",
    )
    .bind(grant_pk)
    .bind(enrollment_pk)
    .bind(db::micros(now))
    .bind(id.to_string())
    .bind(statement)
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

/// Where a live (not revoked) certificate stands on its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertState {
    /// Valid beyond the warning window.
    Valid,
    /// Expires within the warning window: renew it.
    Expiring,
    /// Already expired and not renewed.
    Expired,
    /// Expiring or expired, but its holder has a newer certificate valid beyond the
    /// window: revoke this one once the new one is in use.
    Renewed,
}

impl CertState {
    /// The state as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Valid => "valid",
            CertState::Expiring => "EXPIRING",
            CertState::Expired => "EXPIRED",
            CertState::Renewed => "renewed",
        }
    }

    /// Whether someone has to act (renew).
    pub fn needs_renewal(self) -> bool {
        matches!(self, CertState::Expiring | CertState::Expired)
    }
}

/// A live certificate from the PKI index with its expiry state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    /// Serial (hex).
    pub serial: String,
    /// Subject common name (`kind:id` for participants).
    pub subject: String,
    /// The participant, `None` for the CA and the hub's server certificate.
    pub participant: Option<ParticipantId>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// Where it stands.
    pub state: CertState,
}

/// Every certificate of `index` that is not revoked, soonest expiry first, flagged
/// against a warning window of `within` from `now`. Certificates are grouped by holder
/// (participant, else subject: the CA, the server), so a renewed one is not flagged.
pub fn certificate_status(
    index: &crate::pki::Index,
    now: DateTime<Utc>,
    within: chrono::Duration,
) -> Vec<CertStatus> {
    let live: Vec<&crate::pki::IssuedCert> = index
        .certificates
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .collect();
    let holder = |c: &crate::pki::IssuedCert| {
        c.participant
            .as_ref()
            .map_or_else(|| c.subject.clone(), ToString::to_string)
    };
    let horizon = now + within;
    let mut out: Vec<CertStatus> = live
        .iter()
        .map(|c| {
            let renewed = live
                .iter()
                .any(|o| holder(o) == holder(c) && o.not_after > horizon);
            let state = if c.not_after > horizon {
                CertState::Valid
            } else if renewed {
                CertState::Renewed
            } else if c.not_after <= now {
                CertState::Expired
            } else {
                CertState::Expiring
            };
            CertStatus {
                serial: c.serial.clone(),
                subject: c.subject.clone(),
                participant: c.participant.clone(),
                not_after: c.not_after,
                days_left: (c.not_after - now).num_days(),
                state,
            }
        })
        .collect();
    out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.serial.cmp(&b.serial)));
    out
}

/// One line per certificate: state, expiry, days left, serial, subject.
pub fn cert_line(c: &CertStatus) -> String {
    format!(
        "{:<9} {} {:>5}d  serial {}  {}",
        c.state.as_str(),
        c.not_after.format("%Y-%m-%d %H:%M UTC"),
        c.days_left,
        c.serial,
        c.subject
    )
}
