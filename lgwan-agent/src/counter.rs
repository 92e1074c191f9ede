//! The counter path (対面, DESIGN.md step 6): staff check the resident's card and
//! type the identifiers; the agent tokenizes them locally and sends the hub only the
//! subject token with the consent terms. The resident gets the receipt, with the
//! one-time revocation code, printed as plain text.

use chrono::{DateTime, SecondsFormat, Utc};
use renkei_client::HubClient;
use renkei_client::api::{Consent, DataPeriod, GrantBody, Method, Receipt, SubjectLink};
use renkei_crypto::identity::Identity;
use renkei_crypto::participant::ParticipantId;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::outbox::Outbox;

/// The consent terms staff enter at the counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterTerms<'a> {
    /// Recipient `kind:id`.
    pub recipient: &'a str,
    /// Purpose code.
    pub purpose: &'a str,
    /// Catalog categories.
    pub categories: &'a [String],
    /// End of validity (none: until revoked, where policy allows).
    pub valid_until: Option<DateTime<Utc>>,
    /// The staff member's id, recorded as `granted_by`.
    pub staff: &'a str,
}

/// The grant body for `terms` about the person `identity`: checks the terms
/// locally and tokenizes; nothing identifying is in the result.
pub fn grant_body(
    agent: &Agent,
    identity: &Identity,
    terms: &CounterTerms<'_>,
) -> Result<GrantBody> {
    let invalid = |field, value: &str, reason: &str| Error::Invalid {
        field,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    terms
        .recipient
        .parse::<ParticipantId>()
        .map_err(|e| invalid("recipient", terms.recipient, &e.to_string()))?;
    if terms.categories.is_empty() {
        return Err(invalid("categories", "", "name at least one category"));
    }
    for c in terms.categories {
        if !agent.catalog().is_category(c) {
            return Err(invalid("category", c, "is not in the catalog"));
        }
    }
    let staff_ok = !terms.staff.is_empty()
        && terms.staff.len() <= 64
        && !terms
            .staff
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if !staff_ok {
        return Err(invalid(
            "staff id",
            terms.staff,
            "must be 1 to 64 bytes without spaces",
        ));
    }
    let (token, _branch) = agent.tokenize_identity(identity)?;
    Ok(GrantBody {
        subject: token.as_str().to_owned(),
        recipient: terms.recipient.to_owned(),
        purpose: terms.purpose.to_owned(),
        categories: terms.categories.to_vec(),
        data_period: DataPeriod::default(),
        valid_from: None,
        valid_until: terms.valid_until,
        method: Method::Counter,
        evidence: None,
        granted_by: terms.staff.to_owned(),
        statement: None,
        guardian: None,
    })
}

/// Grants a consent taken at the counter; returns the signed receipt (JSON) with
/// the revocation code, for [`receipt_text`]. While the agent holds more than one
/// token key version, the resident's token pairs are uploaded first; a refused link
/// stops the grant with the hub's reason.
pub async fn grant(
    agent: &Agent,
    client: &HubClient,
    identity: &Identity,
    terms: &CounterTerms<'_>,
) -> Result<Receipt> {
    let body = grant_body(agent, identity, terms)?;
    if agent.is_linking() {
        // Token key rotation: the hub learns the resident's new token before a consent
        // names it, so the consent joins their history (docs/operations.md).
        let links: Vec<SubjectLink> = agent
            .link_pairs(identity)?
            .into_iter()
            .map(|(old, new)| SubjectLink {
                old: old.as_str().to_owned(),
                new: new.as_str().to_owned(),
            })
            .collect();
        client.upload_subject_links(&links).await?;
    }
    // Signed with this agent's certificate key, naming the resident by token: the
    // agent releases records under it only while it verifies (docs/threat-model.md).
    // The resident's user digests at the apps this agent linked them to go with it, so
    // that an app releases their own records under it too.
    let resident = body.subject.clone();
    // The agent keeps the id of the statement it signed (not the one the hub reports)
    // before the hub sees it, and the consent id the hub gives it afterwards.
    let outbox = Outbox::open(&agent.config.outbox).await?;
    let kept = keep_and_grant(&outbox, client, body, resident).await;
    outbox.close().await;
    kept
}

async fn keep_and_grant(
    outbox: &Outbox,
    client: &HubClient,
    body: GrantBody,
    resident: String,
) -> Result<Receipt> {
    let aliases = outbox.app_users_of(&resident).await?;
    let body = renkei_client::consent::sign_grant(client, body, resident, aliases)?;
    let statement = body
        .statement
        .as_ref()
        .map(renkei_crypto::consent_statement::ConsentStatement::id)
        .unwrap_or_default();
    let valid_until = body.valid_until.map(|u| u.timestamp());
    outbox
        .put_counter_statement(&statement, valid_until)
        .await?;
    let granted = match client.grant_consent(&body).await {
        Ok(granted) => granted,
        Err(e) => {
            // Staff are told it failed and grant again: this statement must never count
            // (the hub may have stored it and lost or hidden its answer).
            outbox.revoke_counter_statement(&statement).await?;
            return Err(e.into());
        }
    };
    if let Err(e) = outbox
        .set_counter_consent(&statement, &granted.consent.id)
        .await
    {
        // Unconfirmed here, so void at this agent, and named in its list after the
        // grace period; staff are told to grant again.
        let _ = outbox.revoke_counter_statement(&statement).await;
        return Err(e);
    }
    // Apps release their own records under this consent only with a fresh list of this
    // agent's revocations: published now, and by the daemon every round.
    if let Err(e) = crate::sync::publish_counter_revocations(outbox, client).await {
        eprintln!(
            "lgwan-agent: the revocation list was not published ({e}); the agent's next round \
             publishes it"
        );
    }
    Ok(granted.receipt)
}

/// Revokes a consent at the counter (the resident asked in person). The agent notes
/// the revocation in its own outbox first, so that it stops releasing under the
/// consent even if the hub never records the revocation.
pub async fn revoke(
    agent: &Agent,
    client: &HubClient,
    consent_id: &str,
    reason: &str,
) -> Result<Consent> {
    let outbox = Outbox::open(&agent.config.outbox).await?;
    let noted = outbox.revoke_counter_consent(consent_id).await;
    if matches!(noted, Ok(0)) {
        eprintln!(
            "lgwan-agent: consent `{}` was not taken at this agent's counter (or before this \
             release): the agent cannot note its revocation itself",
            renkei_client::error::shorten(consent_id)
        );
    }
    // Apps releasing under the consent stop on this list even if the hub hides the
    // revocation; the daemon publishes it again every round.
    let published = match noted {
        Ok(n) if n > 0 => Some(crate::sync::publish_counter_revocations(&outbox, client).await),
        _ => None,
    };
    outbox.close().await;
    noted?;
    if let Some(Err(e)) = published {
        eprintln!(
            "lgwan-agent: the revocation list was not published ({e}); the agent's next round \
             publishes it"
        );
    }
    Ok(client.revoke_consent(consent_id, reason).await?)
}

/// The receipt as plain text for the resident: the terms, and the revocation code
/// in groups of four, two lines of four groups.
pub fn receipt_text(receipt: &Receipt) -> String {
    let terms = &receipt.terms;
    let until = terms.terms.valid_until.map_or_else(
        || "until revoked / 撤回まで".to_owned(),
        |u| u.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    );
    let mut out = String::new();
    out.push_str("Renkei consent receipt / 同意の控え\n");
    out.push_str(&format!(
        "consent / 同意番号:      {} (version {})\n",
        receipt.consent_id, receipt.version
    ));
    out.push_str(&format!(
        "recipient / 提供先:      {}\n",
        terms.terms.recipient
    ));
    out.push_str(&format!(
        "purpose / 目的:          {}\n",
        terms.terms.purpose
    ));
    out.push_str(&format!(
        "categories / 項目:       {}\n",
        terms.terms.categories.join(", ")
    ));
    out.push_str(&format!(
        "valid from / 開始:       {}\n",
        terms
            .terms
            .valid_from
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    ));
    out.push_str(&format!("valid until / 終了:      {until}\n"));
    if let Some(code) = receipt
        .revocation_code
        .as_ref()
        .and_then(|c| c.grouped().ok())
    {
        let groups: Vec<&str> = code.split('-').collect();
        out.push_str("revocation code / 撤回コード:\n");
        for line in groups.chunks(4) {
            out.push_str(&format!("    {}\n", line.join("-")));
        }
        out.push_str(
            "Keep this code. With it you can revoke this consent on the Renkei portal.\n\
             このコードは大切に保管してください。ポータルで同意を撤回できます。\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn receipt_text_shows_terms_and_grouped_code() {
        let receipt: Receipt = serde_json::from_value(json!({
            "consent_id": "c-123",
            "version": 1,
            "issued_at": "2025-04-01T00:00:00Z",
            "terms": {
                "subject": "st1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "recipient": "clinic:mysos",
                "purpose": "online-consultation",
                "categories": ["checkup.lipids", "checkup.glucose"],
                "data_period": {},
                "valid_from": "2025-04-01T00:00:00Z",
                "valid_until": null,
                "method": "counter",
                "evidence": null,
                "granted_by": "staff-1",
                "supersedes": null,
            },
            "revocation_code": "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH",
        }))
        .unwrap();
        let text = receipt_text(&receipt);
        assert!(text.contains("c-123 (version 1)"), "{text}");
        assert!(text.contains("checkup.lipids, checkup.glucose"));
        assert!(text.contains("    AAAA-BBBB-CCCC-DDDD\n    EEEE-FFFF-GGGG-HHHH\n"));
        assert!(text.contains("until revoked"));
        assert!(
            !text.contains("st1_"),
            "the receipt text does not need the token"
        );
    }
}
