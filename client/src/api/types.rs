//! Request and response JSON of the hub's participant API, declared by the client
//! (see `hub/src/api/openapi.json`). Responses are read leniently (unknown
//! fields ignored); request bodies are exact.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// What an upload of sealed records did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Records stored now.
    pub accepted: usize,
    /// Records already stored with identical bytes.
    pub duplicates: usize,
    /// Key-grant requests queued for existing consents.
    pub grant_requests: usize,
}

/// The same resident under an older token key and under the next one, as a source
/// uploads it after a token key rotation (`POST /v1/subjects/links`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubjectLink {
    /// The token under the older key (`st1_…`).
    pub old: String,
    /// The token under the next key (`st1_…`).
    pub new: String,
}

/// What an upload of subject links did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    /// Pairs linked now.
    pub linked: usize,
    /// Pairs already linked the same way.
    pub duplicates: usize,
}

/// One sealed record to upload, with the subject it is about. The subject travels
/// beside the envelope, to the hub only (docs/envelope.md): `st1_…` from an LGWAN agent,
/// the app's own `rp1_…` from a PHR app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Binary sealed record (`SealedRecord::to_bytes`).
    pub sealed: Vec<u8>,
    /// The subject as the source knows it.
    pub subject: String,
}

/// One record as a recipient receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItem {
    /// Feed position.
    pub seq: i64,
    /// Record id (`rec1_…`).
    pub record_id: String,
    /// The subject as this recipient knows it (`rp1_…`).
    pub pseudonym: String,
    /// Data category.
    pub category: String,
    /// Effective date, `YYYY-MM-DD`.
    pub effective_date: String,
    /// The consent that releases it.
    pub consent_id: String,
    /// Sealed record bytes, base64.
    pub sealed: String,
    /// HPKE key grant for this recipient, base64.
    pub grant: String,
}

/// A page of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    /// Items released now.
    pub items: Vec<FeedItem>,
    /// Cursor for the next page.
    pub next_cursor: i64,
}

/// `consent.revoked`: a consent was revoked.
pub const EVENT_REVOKED: &str = "consent.revoked";
/// `consent.expired`: a consent reached its end of validity.
pub const EVENT_EXPIRED: &str = "consent.expired";

/// A recipient event, redelivered until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Event id (acknowledge with it).
    pub id: i64,
    /// [`EVENT_REVOKED`] or [`EVENT_EXPIRED`].
    pub kind: String,
    /// The consent concerned.
    pub consent_id: String,
    /// When the event arose.
    pub created_at: DateTime<Utc>,
}

/// How a consent was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// At the municipal counter.
    Counter,
    /// On the web.
    Web,
    /// In an app.
    App,
}

/// Which records a consent covers, by effective date (inclusive; `None` = open).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPeriod {
    /// First effective date covered.
    #[serde(default)]
    pub from: Option<NaiveDate>,
    /// Last effective date covered.
    #[serde(default)]
    pub until: Option<NaiveDate>,
}

/// A consent grant as a participant submits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// `rp1_…` (a PHR app's linked resident) or `st1_…` (a source at the counter).
    pub subject: String,
    /// Recipient `kind:id`.
    pub recipient: String,
    /// Purpose code.
    pub purpose: String,
    /// Categories.
    pub categories: Vec<String>,
    /// Data period.
    #[serde(default)]
    pub data_period: DataPeriod,
    /// Start of validity (default: now at the hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// End of validity, exclusive (none = until revoked, where policy allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
    /// How it was taken.
    pub method: Method,
    /// Evidence, e.g. the SHA-256 of a signed form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Who granted it.
    pub granted_by: String,
    /// The terms signed by the caller ([`crate::consent::grant_signed`] makes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<renkei_crypto::consent_statement::ConsentStatement>,
}

/// A stored consent (one version), as the hub returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Consent id.
    pub id: String,
    /// Version, from 1.
    pub version: u32,
    /// Subject token.
    pub subject: String,
    /// Recipient `kind:id`.
    pub recipient: String,
    /// Purpose code.
    pub purpose: String,
    /// Categories.
    pub categories: Vec<String>,
    /// Data period.
    pub data_period: DataPeriod,
    /// Start of validity.
    pub valid_from: DateTime<Utc>,
    /// End of validity, exclusive.
    pub valid_until: Option<DateTime<Utc>>,
    /// How it was taken.
    pub method: Method,
    /// Status: `active`, `revoked`, `expired` or `superseded`.
    pub status: String,
    /// Revocation details, when revoked.
    #[serde(default)]
    pub revocation: Option<serde_json::Value>,
}

/// The result of a grant: the consent, the resident's receipt, queued grant requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Granted {
    /// The stored consent.
    pub consent: Consent,
    /// The signed receipt (with the one-time `revocation_code`), kept as JSON to hand on.
    pub receipt: serde_json::Value,
    /// Key-grant requests queued for existing records.
    pub grant_requests: usize,
    /// The id of the signed consent statement the hub keeps with the consent, if any.
    #[serde(default)]
    pub statement_id: Option<String>,
}

/// An enrollment request as a PHR app submits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// The source `source:<id>` whose enrollment key sealed the identifiers.
    pub source: String,
    /// The app's own reference for its user (1 to 128 bytes); the hub keeps only a
    /// keyed hash of it.
    pub user_ref: String,
    /// HPKE-sealed identifiers, base64.
    pub sealed: String,
}

/// An enrollment and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Enrollment id.
    pub id: String,
    /// The app's user reference as submitted in the answer to the submission; in later
    /// views the keyed hash (`ur1_…`) the hub keeps instead.
    pub user_ref: String,
    /// The source asked.
    pub source: String,
    /// `pending`, `linked`, `rejected` or `expired`.
    pub status: String,
    /// On `linked`: the resident's pseudonym for this app.
    #[serde(default)]
    pub pseudonym: Option<String>,
    /// On `rejected`: why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Sealed identifiers (base64), in the source's view only.
    #[serde(default)]
    pub sealed: Option<String>,
    /// The requesting app.
    pub requester: String,
    /// When it expires if unanswered.
    pub expires_at: DateTime<Utc>,
}

/// A source's answer to an enrollment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "outcome", rename_all = "lowercase")]
pub enum EnrollmentResult {
    /// The identifiers match a known subject.
    Linked {
        /// The subject token.
        subject_token: String,
    },
    /// They do not, or are ambiguous.
    Rejected {
        /// Why (shown to the app).
        reason: String,
    },
}

/// A pending key-grant request, as the source sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    /// Record to grant.
    pub record_id: String,
    /// Recipient `kind:id` (bound into the HPKE info).
    pub recipient: String,
    /// The recipient's X25519 public key, base64.
    pub recipient_key: String,
    /// The record as the hub holds it (base64): the source opens it with its own key
    /// and seals the recipient's own copy.
    pub sealed: String,
    /// The purpose of the consent the hub says the request rests on.
    pub purpose: String,
    /// The recipient's signed key statement, if it published one.
    #[serde(default)]
    pub recipient_statement: Option<renkei_crypto::statement::KeyStatement>,
    /// The signed terms of the consent the hub says the request rests on, if any.
    #[serde(default)]
    pub consent_statement: Option<renkei_crypto::consent_statement::ConsentStatement>,
    /// The record's resident as the hub says this source names them (subject token, or
    /// an app's pseudonym); an app checks it against the record's subject binding.
    #[serde(default)]
    pub subject: String,
}

/// One key grant a source uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantUpload {
    /// Record id.
    pub record_id: String,
    /// Recipient `kind:id`.
    pub recipient: String,
    /// HPKE grant bytes, base64 (sealed to the copy's record id).
    pub grant: String,
    /// The recipient's own copy of the record (base64; `copy::copy_for`).
    pub sealed: String,
}

/// What an upload of key grants did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantReport {
    /// Grants stored.
    pub stored: usize,
    /// Grants not stored, each with the reason.
    pub dropped: Vec<String>,
}

/// A participant's published public keys (base64 X25519).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Key-grant public key.
    #[serde(default)]
    pub grant_key: Option<String>,
    /// Enrollment public key (sources only).
    #[serde(default)]
    pub enrollment_key: Option<String>,
    /// The participant's statement of these keys, signed with its certificate key: the
    /// only thing a source or app trusts before sealing to them.
    #[serde(default)]
    pub statement: Option<renkei_crypto::statement::KeyStatement>,
}

/// A signed audit checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last audit entry covered.
    pub seq: i64,
    /// That entry's hash.
    pub head_hash: String,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// Signing key version.
    pub key_version: String,
    /// Ed25519 public key, base64.
    pub public_key: String,
    /// Ed25519 signature, base64.
    pub signature: String,
}

/// A recipient's report that it could not open one of the source's records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnreadableReport {
    /// The record.
    pub record_id: String,
    /// The recipient that could not open it.
    pub recipient: String,
    /// What failed, as the recipient said it.
    pub reason: String,
    /// When it was reported.
    pub reported_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_body_serializes_as_the_hub_expects() {
        let body = GrantBody {
            subject: "rp1_abcdefghijklmnopqrstuvwxyz234567".into(),
            recipient: "clinic:mysos".into(),
            purpose: "online-consultation".into(),
            categories: vec!["checkup.lipids".into()],
            data_period: DataPeriod::default(),
            valid_from: None,
            valid_until: None,
            method: Method::App,
            evidence: None,
            granted_by: "resident".into(),
            statement: None,
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["method"], "app");
        assert_eq!(
            v["data_period"],
            serde_json::json!({"from": null, "until": null})
        );
        assert!(v.get("valid_until").is_none());
    }

    #[test]
    fn enrollment_result_is_tagged_by_outcome() {
        let r = EnrollmentResult::Rejected {
            reason: "no match".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"outcome": "rejected", "reason": "no match"})
        );
    }

    #[test]
    fn responses_with_extra_fields_still_decode() {
        let json = r#"{"id":3,"kind":"consent.revoked","consent_id":"c1",
            "created_at":"2025-01-02T03:04:05Z","new_field":1}"#;
        let e: Event = serde_json::from_str(json).unwrap();
        assert_eq!(e.id, 3);
        assert_eq!(e.kind, EVENT_REVOKED);
    }
}
