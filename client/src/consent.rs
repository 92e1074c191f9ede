//! Signed consents (issue 14): whoever takes a consent signs its terms
//! ([`grant_signed`]); whoever releases a record under it checks that signature and
//! those terms itself ([`check_request`]), so that a consent the hub invents, alters or
//! moves to another record releases nothing.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use renkei_crypto::consent_statement::{ConsentStatement, ConsentTerms, RevocationList};
use renkei_crypto::participant::ParticipantId;

use crate::api::{Consent, GrantBody, GrantRequest, Granted};
use crate::error::{Error, Result};
use crate::state::{SignedConsent, StateDir};
use crate::transport::HubClient;

/// Grants `body` with its terms signed by this client's certificate key. `resident`
/// names the resident in the statement: the subject token for a source at its counter
/// (signed as a commitment to it, [`sign_grant`]),
/// [`renkei_crypto::consent_statement::user_resident`] for an app's user; a source adds
/// the resident's user digests at the apps it linked them to as `aliases`. The categories
/// are sorted and the start of validity (default now) is cut to whole seconds, as signed.
pub async fn grant_signed(
    client: &HubClient,
    body: GrantBody,
    resident: String,
    aliases: Vec<String>,
) -> Result<Granted> {
    let body = sign_grant(client, body, resident, aliases)?;
    client.grant_consent(&body).await
}

/// Grants a consent signed by this participant ([`grant_signed`]). The statement is kept
/// in `state` *before* the hub sees it (with its resident, recipient and purpose), then
/// again under the consent id the hub gives it, so that a revocation names every
/// statement this participant signed for those terms, whatever the hub answered. Then
/// publishes a fresh revocation list (sources release under this participant's consents
/// only while its list is fresh).
pub async fn grant_kept(
    client: &HubClient,
    state: &StateDir,
    body: GrantBody,
    resident: String,
    aliases: Vec<String>,
) -> Result<Granted> {
    let body = sign_grant(client, body, resident, aliases)?;
    let kept = body.statement.as_ref().map(|st| SignedConsent {
        consent_id: String::new(),
        statement_id: st.id(),
        valid_until: body.valid_until,
        resident: st.terms.resident.clone(),
        recipient: st.terms.recipient.clone(),
        purpose: st.terms.purpose.clone(),
    });
    if let Some(kept) = &kept {
        state.record_signed(kept)?;
    }
    let granted = client.grant_consent(&body).await?;
    if let Some(kept) = kept {
        state.record_signed(&SignedConsent {
            consent_id: granted.consent.id.clone(),
            ..kept
        })?;
    }
    publish_revocations(client, state).await.map_err(|e| {
        Error::invalid(
            format!("consent `{}`", granted.consent.id),
            format!(
                "granted, but the revocation list was not published ({e}): sources release \
                 under it only once `renkei-client consent publish-revocations` succeeds"
            ),
        )
    })?;
    Ok(granted)
}

/// The statements a revocation of consent `id` names: every statement kept under that id,
/// and every statement this participant signed for the same resident, recipient and
/// purpose (one the hub never gave an id, kept twice under one id, or superseded).
pub fn statements_to_revoke(signed: &[SignedConsent], id: &str) -> Vec<SignedConsent> {
    let terms: Vec<(&str, &str, &str)> = signed
        .iter()
        .filter(|c| c.consent_id == id)
        .map(|c| {
            (
                c.resident.as_str(),
                c.recipient.as_str(),
                c.purpose.as_str(),
            )
        })
        .collect();
    let mut out: Vec<SignedConsent> = Vec::new();
    for c in signed {
        let same_terms = terms.iter().any(|(r, to, p)| {
            !r.is_empty() && c.resident == *r && c.recipient == *to && c.purpose == *p
        });
        if (c.consent_id == id || same_terms)
            && !out.iter().any(|o| o.statement_id == c.statement_id)
        {
            out.push(c.clone());
        }
    }
    out
}

/// Revokes consent `id` at the hub. The statements this participant signed for it
/// ([`statements_to_revoke`]) are noted as revoked in `state` first and named in a fresh
/// signed revocation list published after the hub's answer, so that sources stop
/// releasing under them even if the hub does not pass the revocation on. Returns the
/// hub's answer and how many statements the list now names for it.
pub async fn revoke_kept(
    client: &HubClient,
    state: &StateDir,
    id: &str,
    reason: &str,
) -> Result<(Consent, usize)> {
    let named = statements_to_revoke(&state.signed_consents()?, id);
    for c in &named {
        state.record_revoked(c)?;
    }
    let revoked = client.revoke_consent(id, reason).await;
    if !named.is_empty() {
        publish_revocations(client, state).await.map_err(|e| {
            Error::invalid(
                format!("consent `{id}`"),
                format!(
                    "noted as revoked here, but the revocation list was not published ({e}): \
                     run `renkei-client consent publish-revocations` until it succeeds"
                ),
            )
        })?;
    }
    Ok((revoked?, named.len()))
}

/// How old a signer's revocation list may be before nothing is released under its
/// consents (the agent's default `revocation_list_max_age_secs`).
pub const REVOCATION_LIST_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Checks `list`, shown by the hub as `signer`'s revocation list: signed by `signer` with
/// a certificate of the CA `ca`, and no older than `max_age`. Whether it is older than a
/// list of the same signer seen before is the caller's to check.
pub fn check_revocation_list(
    list: &RevocationList,
    signer: &ParticipantId,
    ca: &std::path::Path,
    now: DateTime<Utc>,
    max_age: std::time::Duration,
) -> Result<()> {
    let refuse = |why: String| Error::invalid(format!("revocation list of `{signer}`"), why);
    let by = list.verify(ca, now).map_err(|e| refuse(e.to_string()))?;
    if &by != signer {
        return Err(refuse(format!("the list shown is `{by}`'s")));
    }
    let age = (now - list.issued_at).to_std().unwrap_or_default();
    if age > max_age {
        return Err(refuse(format!(
            "it is {} s old, more than {} s: nothing is released under its consents until \
             it publishes a fresh one",
            age.as_secs(),
            max_age.as_secs()
        )));
    }
    Ok(())
}

/// Signs and publishes the list of every consent statement revoked from `state` whose
/// validity has not ended (an ended consent covers nothing any more).
pub async fn publish_revocations(client: &HubClient, state: &StateDir) -> Result<RevocationList> {
    let now = client.now();
    let ids = state
        .revoked()?
        .into_iter()
        .filter(|c| c.valid_until.is_none_or(|u| u > now))
        .map(|c| c.statement_id)
        .collect();
    let list = client.sign_revocation_list(ids)?;
    client.publish_revocation_list(&list).await?;
    Ok(list)
}

/// `body` with its terms signed ([`grant_signed`] without the request), so that the
/// caller can keep the statement's id before the hub sees it.
pub fn sign_grant(
    client: &HubClient,
    mut body: GrantBody,
    resident: String,
    mut aliases: Vec<String>,
) -> Result<GrantBody> {
    aliases.sort_unstable();
    aliases.dedup();
    // A source names the resident by a commitment to its token, and the apps' user
    // digests by commitments too: the statement reaches the apps and clinics whose own
    // records it releases, which must learn neither.
    let (resident, aliases) = if renkei_crypto::token::SubjectToken::parse(&resident).is_ok() {
        renkei_crypto::consent_statement::commit_resident(&resident, &aliases)
    } else {
        (resident, aliases)
    };
    body.categories.sort_unstable();
    body.categories.dedup();
    let valid_from = body.valid_from.unwrap_or_else(|| client.now());
    let whole = |t: DateTime<Utc>| t.with_nanosecond(0).unwrap_or(t);
    body.valid_from = Some(whole(valid_from));
    body.valid_until = body.valid_until.map(whole);
    let terms = ConsentTerms {
        resident,
        recipient: body.recipient.clone(),
        purpose: body.purpose.clone(),
        categories: body.categories.clone(),
        data_from: body.data_period.from,
        data_until: body.data_period.until,
        valid_from: whole(valid_from),
        valid_until: body.valid_until,
        aliases,
        guardian: body.guardian.map(|g| g.as_str().to_owned()),
    };
    body.statement = Some(client.sign_consent(terms)?);
    Ok(body)
}

/// A consent statement a source has checked for one key-grant request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedConsent {
    /// Who signed it (the source itself at its counter, or an app).
    pub signer: ParticipantId,
    /// The statement's id ([`ConsentStatement::id`]).
    pub id: String,
    /// Its terms; the caller still checks that `resident` is the record's.
    pub terms: ConsentTerms,
}

/// Checks the consent statement the hub sent with `request`, for a record of `category`
/// and `effective_date`, at `now`: signed by a certificate of the pinned CA `ca`, for the
/// request's recipient and purpose, covering the category, the date and the time. The
/// resident is the caller's to check (only the source knows whom `resident` names).
pub fn check_request(
    ca: &std::path::Path,
    request: &GrantRequest,
    category: &str,
    effective_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<CheckedConsent> {
    let what = "consent";
    let st: &ConsentStatement = request.consent_statement.as_ref().ok_or_else(|| {
        Error::invalid(
            what,
            "no signed consent statement: refusing a consent the hub alone vouches for",
        )
    })?;
    let signer = st.verify(ca, now).map_err(Error::crypto(what))?;
    let t = &st.terms;
    if t.recipient != request.recipient {
        return Err(Error::invalid(
            what,
            format!(
                "signed for `{}`, not for `{}`",
                t.recipient,
                crate::error::shorten(&request.recipient)
            ),
        ));
    }
    if t.purpose != request.purpose {
        return Err(Error::invalid(
            what,
            format!("signed for purpose `{}`", t.purpose),
        ));
    }
    t.covers(category, effective_date, now)
        .map_err(|why| Error::invalid(what, why))?;
    Ok(CheckedConsent {
        signer,
        id: st.id(),
        terms: t.clone(),
    })
}
