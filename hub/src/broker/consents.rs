//! Granting and revoking consents through the hub: policy check, the consent ledger,
//! a signed receipt, and the key-grant queue and events that follow.

use chrono::{DateTime, Utc};
use renkei_consent::store::shared::{self, Dialect};
use renkei_consent::{
    Consent, ConsentTerms, Receipt, ReceiptSigner, RevocationCode, RevocationRequest, RevokedBy,
};
use renkei_crypto::consent_statement::ConsentStatement;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::sign::SigningKey;
use renkei_crypto::token::{SubjectToken, recipient_pseudonym};

use sqlx::{AnyConnection, Row};

use super::{Hub, authorize_caller, bounded, events, grants, statements, subjects};
use crate::audit::{self, Entry};
use crate::db;
use crate::error::{Error, Result};
use crate::registry;
pub use renkei_protocol::{GrantBody, Granted};

struct HubSigner<'a>(&'a SigningKey);

impl ReceiptSigner for HubSigner<'_> {
    fn sign(&self, bytes: &[u8]) -> String {
        self.0.sign(bytes).to_base64()
    }
}

/// Links a subject to a recipient under that recipient's pseudonym (idempotent).
pub async fn link(
    conn: &mut AnyConnection,
    hub: &Hub,
    recipient: &str,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<String> {
    let token =
        SubjectToken::parse(subject).map_err(|e| Error::internal_from("subject token", e))?;
    let pseudonym = recipient_pseudonym(&hub.pseudonym_key, recipient, &token).to_string();
    sqlx::query(
        "INSERT INTO hub_pseudonyms (recipient, pseudonym, subject_token, created_at) \
         VALUES ($1,$2,$3,$4) ON CONFLICT (recipient, pseudonym) DO NOTHING",
    )
    .bind(recipient)
    .bind(&pseudonym)
    .bind(subject)
    .bind(db::micros(now))
    .execute(&mut *conn)
    .await?;
    Ok(pseudonym)
}

/// Most consents in force for one (resident, recipient, purpose): a participant that
/// grants the same thing over and over cannot make feed and portal cost grow.
pub const MAX_ACTIVE_PER_PURPOSE: usize = 4;

/// Grants a consent for `who` (a PHR app for a resident who linked it by enrollment,
/// or the owning source at the counter), if the policies allow it. Granting terms
/// equal to a consent in force returns that consent (its receipt without a new code).
pub async fn grant(hub: &Hub, who: &ParticipantId, body: GrantBody) -> Result<Granted> {
    let r = crate::error::retry(|| grant_checked(hub, who, body.clone())).await;
    subjects::audited(hub, who, "consent.grant", r).await
}

/// One transaction (issue 16): the policy decision, the consent and its ledger entry and
/// receipt code, the pseudonym link, the key-grant queue, the statement and the audit
/// entry are committed together or not at all.
async fn grant_checked(hub: &Hub, who: &ParticipantId, body: GrantBody) -> Result<Granted> {
    let now = hub.now();
    let me = who.to_string();
    bounded::participant("recipient", &body.recipient)?;
    // Sizes first: the policy check, the statement check and the store look at every
    // category, and a write transaction is about to be held.
    renkei_consent::validate_sizes(&body.categories, &body.granted_by, body.evidence.as_deref())
        .map_err(consent_error)?;
    let mut tx = hub.db.begin().await?;
    authorize_caller(
        &mut tx,
        who,
        &[ParticipantKind::Phr, ParticipantKind::Source],
    )
    .await?;
    let subject = subjects::acting_for(&mut tx, who, &body.subject, now).await?;
    let statement = statements::check(hub, who, &body, now)?;
    let recipient = registry::get_by_str(&mut tx, &body.recipient)
        .await?
        .ok_or_else(|| {
            Error::bad_request(format!("recipient `{}` is not registered", body.recipient))
        })?;
    let valid_from = body.valid_from.unwrap_or(now);
    let approved_study = crate::studies::approved(
        &mut tx,
        body.evidence.as_deref(),
        &body.recipient,
        valid_from,
        body.valid_until,
    )
    .await?;
    let decision = hub
        .policies()
        .authorize_grant(&renkei_policies::GrantRequest {
            participant: &recipient.id,
            kind: &recipient.kind,
            suspended: recipient.suspended(),
            purpose: &body.purpose,
            categories: &body.categories,
            valid_from,
            valid_until: body.valid_until,
            approved_study,
        });
    if !decision.allowed {
        let reason = decision.reasons.join("; ");
        audit::append(
            &mut tx,
            now,
            &Entry::deny(&me, "consent.grant", &body.recipient, &reason).about(
                &subject,
                "",
                &body.categories.join(","),
            ),
        )
        .await?;
        tx.commit().await?;
        return Err(Error::Forbidden(format!(
            "policy denies this consent: {reason}"
        )));
    }
    let in_force = in_force_for(&mut tx, &subject, &body.recipient, &body.purpose, now).await?;
    if let Some(same) = in_force.iter().find(|c| same_terms(c, &body, now)) {
        if let Some(st) = &statement {
            // The first consent with these terms gets the statement it lacked.
            statements::store(&mut tx, &same.id, st).await?;
        }
        let statement_id = statements::id_of(&mut tx, &same.id).await?;
        let consent = subjects::consent_view(&mut tx, hub, who, same.clone()).await?;
        tx.commit().await?;
        let mut receipt = Receipt::new(&consent, RevocationCode::generate(), now);
        receipt.revocation_code = None;
        receipt
            .sign(&HubSigner(&hub.signing_key))
            .map_err(consent_error)?;
        return Ok(Granted {
            consent,
            receipt,
            grant_requests: 0,
            statement_id,
        });
    }
    if in_force.len() >= MAX_ACTIVE_PER_PURPOSE {
        return Err(Error::Conflict(format!(
            "the resident already has {} consents in force for `{}` and purpose `{}`; \
             revoke one first",
            in_force.len(),
            body.recipient,
            body.purpose
        )));
    }
    let terms = ConsentTerms {
        subject: subject.clone(),
        recipient: body.recipient.clone(),
        purpose: body.purpose,
        categories: body.categories,
        data_period: body.data_period,
        valid_from: body.valid_from.unwrap_or(now),
        valid_until: body.valid_until,
        method: body.method,
        evidence: body.evidence,
        granted_by: body.granted_by,
        guardian: body.guardian,
    };
    let (consent, mut receipt) = renkei_consent::store::shared::grant(
        &mut tx,
        dialect(hub),
        terms,
        &hub.receipt_pepper,
        now,
    )
    .await
    .map_err(consent_error)?;
    hub.fail_point("consent.grant.stored")?;
    link(&mut tx, hub, &consent.terms.recipient, &subject, now).await?;
    let queued =
        grants::queue_for_subject(&mut tx, hub, &subject, &consent.terms.categories, now).await?;
    hub.fail_point("consent.grant.queued")?;
    if let Some(st) = &statement {
        statements::store(&mut tx, &consent.id, st).await?;
    }
    let entry = Entry::allow(&me, "consent.grant", &consent.id);
    audit::append(
        &mut tx,
        now,
        &entry.about(&subject, &consent.id, &consent.terms.categories.join(",")),
    )
    .await?;
    hub.fail_point("consent.grant.audited")?;
    let consent = subjects::consent_view(&mut tx, hub, who, consent).await?;
    tx.commit().await?;
    // The caller's copy names the resident as the caller knows them, and is signed so.
    receipt
        .terms
        .terms
        .subject
        .clone_from(&consent.terms.subject);
    receipt
        .sign(&HubSigner(&hub.signing_key))
        .map_err(consent_error)?;
    Ok(Granted {
        consent,
        receipt,
        grant_requests: queued,
        statement_id: statement.as_ref().map(ConsentStatement::id),
    })
}

/// The consents in force now for (subject, recipient, purpose).
pub(crate) async fn in_force_for(
    conn: &mut AnyConnection,
    subject: &str,
    recipient: &str,
    purpose: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Consent>> {
    let rows = sqlx::query(
        "SELECT consent_json FROM consents WHERE subject = $1 AND recipient = $2 \
         AND purpose = $3 AND status = 'active' AND (valid_until_us IS NULL OR valid_until_us > $4)",
    )
    .bind(subject)
    .bind(recipient)
    .bind(purpose)
    .bind(db::micros(now))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let json: String = r.try_get("consent_json")?;
            serde_json::from_str(&json).map_err(|e| Error::internal_from("stored consent_json", e))
        })
        .collect()
}

/// Whether a consent in force already grants what `body` asks (same categories in any
/// order, same data period, same end of validity, and both in force from `now` on or
/// from the same later start).
fn same_terms(c: &Consent, body: &GrantBody, now: DateTime<Utc>) -> bool {
    let mut a = c.terms.categories.clone();
    let mut b = body.categories.clone();
    a.sort_unstable();
    b.sort_unstable();
    a == b
        && c.terms.data_period == body.data_period
        && c.terms.valid_until == body.valid_until
        && c.terms.method == body.method
        && c.terms.guardian == body.guardian
        && body.valid_from.unwrap_or(now).max(now) == c.terms.valid_from.max(now)
}

/// Maps consent-store errors onto HTTP-facing errors.
pub fn consent_error(e: renkei_consent::Error) -> Error {
    use renkei_consent::Error as C;
    match e {
        C::InvalidTerms(m) | C::InvalidSubject(m) | C::InvalidParticipant(m) => {
            Error::bad_request(m)
        }
        C::NotFound(m) => Error::NotFound(m),
        C::MalformedCode(_) | C::UnknownCode | C::CodeUsed => {
            Error::NotFound("the code is not valid or has already been used".into())
        }
        C::NotActive { id, status } => Error::Conflict(format!("consent `{id}` is {status}")),
        C::Db(d) => Error::from(d),
        other => Error::internal_from("consent store", other),
    }
}

/// May `who` revoke this consent? Its recipient (only consents that name it), an app
/// the resident linked by enrollment, or the source that owns the resident (counter
/// staff act through their agent). Being a recipient of another consent never counts.
async fn may_revoke(conn: &mut AnyConnection, who: &ParticipantId, c: &Consent) -> Result<bool> {
    let me = who.to_string();
    Ok(match who.kind() {
        _ if c.terms.recipient == me => true,
        ParticipantKind::Source => {
            subjects::owner(conn, &c.terms.subject).await?.as_deref() == Some(&me)
        }
        ParticipantKind::Phr => subjects::is_linked(conn, &me, &c.terms.subject).await?,
        _ => false,
    })
}

/// Revokes a consent by id for a participant (app, counter, recipient). A consent the
/// caller may not revoke is not found, whether or not it exists.
pub async fn revoke(hub: &Hub, who: &ParticipantId, id: &str, reason: &str) -> Result<Consent> {
    bounded::consent_id(id)?;
    let reason = bounded::text(reason, 200);
    crate::error::retry(|| revoke_once(hub, who, id, &reason)).await
}

async fn revoke_once(hub: &Hub, who: &ParticipantId, id: &str, reason: &str) -> Result<Consent> {
    let now = hub.now();
    let mut tx = hub.db.begin().await?;
    authorize_caller(
        &mut tx,
        who,
        &[
            ParticipantKind::Phr,
            ParticipantKind::Source,
            ParticipantKind::Clinic,
            ParticipantKind::Municipality,
            ParticipantKind::Analyst,
            ParticipantKind::Insurer,
        ],
    )
    .await?;
    let consent = shared::get(&mut tx, id).await.map_err(consent_error)?;
    let visible = match &consent {
        Some(c) => may_revoke(&mut tx, who, c).await?,
        None => false,
    };
    if !visible {
        audit::append(
            &mut tx,
            now,
            &Entry::deny(
                &who.to_string(),
                "consent.revoke",
                id,
                "not the recipient, a linked app or the owning source",
            ),
        )
        .await?;
        tx.commit().await?;
        return Err(Error::NotFound(format!("consent `{id}` not found")));
    }
    let by = if who.kind() == ParticipantKind::Source {
        RevokedBy::Counter
    } else {
        RevokedBy::App
    };
    let request = RevocationRequest {
        by,
        actor: who.to_string(),
        reason: reason.to_owned(),
    };
    let revoked = shared::revoke(&mut tx, dialect(hub), id, &request, now)
        .await
        .map_err(consent_error)?;
    after_revoke(&mut tx, hub, &who.to_string(), &revoked, now).await?;
    let view = subjects::consent_view(&mut tx, hub, who, revoked).await?;
    tx.commit().await?;
    Ok(view)
}

/// Revokes by the resident's receipt code (portal). One-time: the code is then spent.
pub async fn revoke_by_code(hub: &Hub, code: &str, reason: &str) -> Result<Consent> {
    let request = RevocationRequest {
        by: RevokedBy::Resident,
        actor: "portal".into(),
        reason: bounded::text(reason, 200),
    };
    crate::error::retry(|| async {
        let now = hub.now();
        let mut tx = hub.db.begin().await?;
        let revoked = shared::revoke_by_code(
            &mut tx,
            dialect(hub),
            code,
            &hub.receipt_pepper,
            &request,
            now,
        )
        .await
        .map_err(consent_error)?;
        after_revoke(&mut tx, hub, "resident", &revoked, now).await?;
        tx.commit().await?;
        Ok(revoked)
    })
    .await
}

/// Revokes by id as the hub administrator.
pub async fn revoke_as_admin(hub: &Hub, id: &str, reason: &str) -> Result<Consent> {
    super::bounded::consent_id(id)?;
    let request = RevocationRequest {
        by: RevokedBy::Admin,
        actor: "admin".into(),
        reason: bounded::text(reason, 200),
    };
    crate::error::retry(|| async {
        let now = hub.now();
        let mut tx = hub.db.begin().await?;
        let revoked = shared::revoke(&mut tx, dialect(hub), id, &request, now)
            .await
            .map_err(|e| match e {
                renkei_consent::Error::NotFound(_) => {
                    Error::NotFound(format!("consent `{id}` does not exist"))
                }
                e => consent_error(e),
            })?;
        after_revoke(&mut tx, hub, "admin", &revoked, now).await?;
        tx.commit().await?;
        Ok(revoked)
    })
    .await
}

/// The consent SQL dialect of the hub's database.
fn dialect(hub: &Hub) -> Dialect {
    match hub.db.backend() {
        db::Backend::Sqlite => Dialect::Sqlite,
        db::Backend::Postgres => Dialect::Postgres,
    }
}

/// In the revoking transaction: audits, drops pending and stored grants, re-queues what
/// another consent in force still covers and queues the `consent.revoked` event.
async fn after_revoke(
    tx: &mut AnyConnection,
    hub: &Hub,
    actor: &str,
    c: &Consent,
    now: DateTime<Utc>,
) -> Result<()> {
    hub.fail_point("consent.revoke.stored")?;
    let reason = c
        .revocation
        .as_ref()
        .map(|r| r.reason.clone())
        .unwrap_or_default();
    let entry = Entry {
        reason,
        ..Entry::allow(actor, "consent.revoke", &c.id)
    };
    audit::append(
        tx,
        now,
        &entry.about(&c.terms.subject, &c.id, &c.terms.categories.join(",")),
    )
    .await?;
    hub.fail_point("consent.revoke.audited")?;
    grants::drop_for_consent(tx, &c.id).await?;
    // Records another consent in force still covers get their grants asked for again.
    grants::queue_for_subject(tx, hub, &c.terms.subject, &c.terms.categories, now).await?;
    hub.fail_point("consent.revoke.dropped")?;
    events::push(tx, &c.terms.recipient, events::REVOKED, &c.id, now).await?;
    Ok(())
}
