//! Child-health follow-up (issue 20): a municipality that received a family's records
//! under a `child-health-followup` consent must find which family to visit. Only its own
//! LGWAN agent can: the agent names the municipality and the pseudonym the municipality
//! saw, and the hub answers with the subject token — the agent's own name for the
//! resident, which it maps to the 宛名 inside LGWAN (`lgwan-agent resolve`). Nothing
//! identifying leaves LGWAN, and no other participant ever learns a token.
//!
//! The hub answers only when every check holds, audited either way (`pseudonym.resolve`):
//! the caller is a source; the municipality is the caller's own (the same id: city A's
//! agent resolves only for `municipality:<city A>`); the pseudonym is one the hub gave
//! that municipality; the caller owns the resident's token; and a consent for a
//! [`RESOLVABLE`] purpose naming the municipality is in force now. Any failure answers
//! 404 alike, so the caller learns nothing of other residents or municipalities.

use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use sqlx::Row;

use super::{Hub, authorize_caller, bounded, consents, subjects};
use crate::audit::{self, Entry};
use crate::error::{Error, Result};

/// The purposes whose consent lets the recipient's own municipality find the resident.
pub const RESOLVABLE: &[&str] = &["child-health-followup"];

pub use renkei_protocol::{ResolveBody, Resolved};

/// Resolves `body` for the source `who`, or answers 404; audited either way.
pub async fn resolve(hub: &Hub, who: &ParticipantId, body: &ResolveBody) -> Result<Resolved> {
    let now = hub.now();
    let me = who.to_string();
    let recipient = bounded::participant("recipient", &body.recipient)?;
    if !body.pseudonym.starts_with("rp1_") || body.pseudonym.len() > 64 {
        return Err(Error::bad_request("pseudonym: not a pseudonym (`rp1_…`)"));
    }
    let mut tx = hub.db.begin().await?;
    authorize_caller(&mut tx, who, &[ParticipantKind::Source]).await?;
    let found = match checked(&mut tx, who, &recipient, &body.pseudonym, now).await? {
        Ok(found) => found,
        Err(why) => {
            let entry = Entry::deny(&me, "pseudonym.resolve", &body.recipient, why);
            audit::append(&mut tx, now, &entry).await?;
            tx.commit().await?;
            return Err(Error::NotFound(format!(
                "no resident of yours under `{}` for `{}` with a consent that allows it",
                body.pseudonym, body.recipient
            )));
        }
    };
    let entry = Entry::allow(&me, "pseudonym.resolve", &body.recipient).about(
        &found.subject_token,
        &found.consent_id,
        "",
    );
    audit::append(&mut tx, now, &entry).await?;
    tx.commit().await?;
    Ok(found)
}

/// The resolution, or why not (for the audit log only).
async fn checked(
    conn: &mut sqlx::AnyConnection,
    who: &ParticipantId,
    recipient: &ParticipantId,
    pseudonym: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<std::result::Result<Resolved, &'static str>> {
    if recipient.kind() != ParticipantKind::Municipality || recipient.id() != who.id() {
        return Ok(Err("not the caller's own municipality"));
    }
    let row = sqlx::query(
        "SELECT subject_token FROM hub_pseudonyms WHERE recipient = $1 AND pseudonym = $2",
    )
    .bind(recipient.to_string())
    .bind(pseudonym)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(Err("no such pseudonym for this municipality"));
    };
    let token: String = row.try_get("subject_token")?;
    if subjects::owner(conn, &token).await?.as_deref() != Some(who.to_string().as_str()) {
        return Ok(Err("the resident belongs to another source"));
    }
    for purpose in RESOLVABLE {
        let in_force =
            consents::in_force_for(conn, &token, &recipient.to_string(), purpose, now).await?;
        if let Some(c) = in_force.into_iter().find(|c| c.is_in_force(now)) {
            return Ok(Ok(Resolved {
                subject_token: token,
                consent_id: c.id,
                purpose: (*purpose).to_owned(),
            }));
        }
    }
    Ok(Err("no consent in force that allows resolving"))
}
