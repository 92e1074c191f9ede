//! Revocation lists at the hub (issue 14): each participant publishes its own signed list
//! of the consent statements it revoked; the hub keeps the newest and hands it to any
//! participant. Sources check the list themselves (`lgwan-agent`): the hub can neither
//! make one nor take an id out of one, and withholding a newer list works only until
//! the source finds the old one too old.

use chrono::{DateTime, Utc};
use renkei_crypto::consent_statement::RevocationList;
use renkei_crypto::participant::ParticipantId;
use sqlx::Row;

use super::Hub;
use crate::error::{Error, Result};

/// Keeps `list` as `who`'s newest: signed by `who` with a certificate of the participant
/// CA, and newer than the one kept (else 409).
pub async fn publish(
    hub: &Hub,
    who: &ParticipantId,
    list: &RevocationList,
    now: DateTime<Utc>,
) -> Result<()> {
    let signer = list
        .verify(&hub.participant_ca, now)
        .map_err(Error::bad_input)?;
    if &signer != who {
        return Err(Error::Forbidden(
            "a participant may publish only its own revocation list".into(),
        ));
    }
    let json =
        serde_json::to_string(list).map_err(|e| Error::internal_from("revocation list", e))?;
    let mut tx = hub.db.begin().await?;
    super::authorize_caller(&mut tx, who, super::ANY_PARTICIPANT).await?;
    let kept = sqlx::query("SELECT list FROM hub_revocation_lists WHERE signer = $1")
        .bind(who.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| parse(&row))
        .transpose()?;
    if kept.is_some_and(|k| k.issued_at >= list.issued_at) {
        return Err(Error::Conflict(
            "the hub keeps a revocation list of this participant at least as new".into(),
        ));
    }
    sqlx::query(
        "INSERT INTO hub_revocation_lists (signer, issued_at, list) VALUES ($1, $2, $3) \
         ON CONFLICT (signer) DO UPDATE SET issued_at = excluded.issued_at, list = excluded.list",
    )
    .bind(who.to_string())
    .bind(
        list.issued_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
    .bind(json)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// `target`'s newest revocation list, for any active participant.
pub async fn get(hub: &Hub, who: &ParticipantId, target: &ParticipantId) -> Result<RevocationList> {
    let mut tx = hub.db.begin_read().await?;
    super::authorize_caller(&mut tx, who, super::ANY_PARTICIPANT).await?;
    let row = sqlx::query("SELECT list FROM hub_revocation_lists WHERE signer = $1")
        .bind(target.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    let row = row.ok_or_else(|| {
        Error::NotFound(format!(
            "participant `{target}` has published no revocation list"
        ))
    })?;
    parse(&row)
}

fn parse(row: &sqlx::any::AnyRow) -> Result<RevocationList> {
    serde_json::from_str(&row.try_get::<String, _>("list")?)
        .map_err(|e| Error::internal_from("stored revocation list", e))
}
