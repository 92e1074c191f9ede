//! Consent statements at the hub (issue 14): the hub checks that a statement is the
//! caller's and says what the grant body says, keeps it beside the consent and relays it
//! with every key-grant request. The hub's check only catches honest mistakes early; the
//! source checks the statement again itself, against the CA it pinned, before it
//! releases anything (`lgwan-agent`, `renkei-client serve-grants`).

use chrono::{DateTime, Utc};
use renkei_crypto::consent_statement::{COMMITTED_PREFIX, ConsentStatement, USER_PREFIX};
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use sqlx::{AnyConnection, Row};

use super::Hub;
use super::consents::GrantBody;
use crate::error::{Error, Result};

/// Checks `body.statement`, if any: signed by `who` with a certificate of the participant
/// CA, its terms equal to the body's (categories in any order), naming the resident as
/// the caller may (a source by the body's subject token, an app by a user digest).
pub fn check(
    hub: &Hub,
    who: &ParticipantId,
    body: &GrantBody,
    now: DateTime<Utc>,
) -> Result<Option<ConsentStatement>> {
    let Some(st) = &body.statement else {
        return Ok(None);
    };
    let bad = |why: &str| Error::bad_request(format!("consent statement: {why}"));
    let signer = st
        .verify(&hub.participant_ca, now)
        .map_err(Error::bad_input)?;
    if &signer != who {
        return Err(bad("signed by another participant than the caller"));
    }
    let t = &st.terms;
    let mut categories = body.categories.clone();
    categories.sort_unstable();
    categories.dedup();
    let same = t.recipient == body.recipient
        && t.purpose == body.purpose
        && t.categories == categories
        && t.data_from == body.data_period.from
        && t.data_until == body.data_period.until
        && Some(t.valid_from) == body.valid_from
        && t.valid_until == body.valid_until
        && t.guardian.as_deref() == body.guardian.map(|g| g.as_str());
    if !same {
        return Err(bad(
            "its terms differ from the grant's (recipient, purpose, categories, \
             data period, validity or guardian)",
        ));
    }
    // A source's statement reaches the apps and clinics whose own records it releases:
    // it names the resident by a commitment to the token, never the token itself.
    let resident_ok = match who.kind() {
        ParticipantKind::Source => {
            t.resident.starts_with(COMMITTED_PREFIX) && t.names_token(&body.subject)
        }
        _ => t.resident.starts_with(USER_PREFIX),
    };
    if !resident_ok {
        return Err(bad(
            "it names the resident otherwise than the caller may (a source by a \
             commitment to the subject token, `stc1_…`; an app by its user digest)",
        ));
    }
    Ok(Some(st.clone()))
}

/// Keeps `statement` beside consent `consent_id`.
pub async fn store(
    conn: &mut AnyConnection,
    consent_id: &str,
    statement: &ConsentStatement,
) -> Result<()> {
    let json = serde_json::to_string(statement)
        .map_err(|e| Error::internal_from("consent statement", e))?;
    sqlx::query(
        "INSERT INTO hub_consent_statements (consent_id, statement_id, statement) \
         VALUES ($1, $2, $3) ON CONFLICT (consent_id) DO NOTHING",
    )
    .bind(consent_id)
    .bind(statement.id())
    .bind(json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The id of the statement kept with consent `consent_id`, if any.
pub async fn id_of(conn: &mut AnyConnection, consent_id: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT statement_id FROM hub_consent_statements WHERE consent_id = $1")
        .bind(consent_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Reads a stored statement column (JSON) back.
pub fn parse(row: &sqlx::any::AnyRow, column: &str) -> Result<Option<ConsentStatement>> {
    row.try_get::<Option<String>, _>(column)?
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| Error::internal_from("stored consent statement", e))
}
