//! Request and response JSON of the hub's participant API, as both the hub and its
//! clients use them (documented in `hub/src/api/openapi.json`, which a client test
//! checks against these types). Request bodies are exact (unknown fields refused);
//! responses are read leniently (unknown fields ignored), so a newer hub can add fields.

use chrono::{DateTime, Utc};
use renkei_crypto::sign::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

pub use renkei_consent::{Consent, DataPeriod, Guardian, Method, Receipt, Status};

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
#[serde(deny_unknown_fields)]
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
    /// When a guardian consents for a child (the subject): how they are related.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<Guardian>,
}

/// The result of a grant: the consent, the resident's receipt, queued grant requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// The stored consent.
    pub consent: Consent,
    /// The signed receipt with the one-time revocation code, for the resident.
    pub receipt: Receipt,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// A signed audit checkpoint: the head of the hub's audit hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last audit entry covered.
    pub seq: i64,
    /// That entry's hash (hex).
    pub head_hash: String,
    /// When it was signed.
    pub at: DateTime<Utc>,
    /// Version of the signing key.
    pub key_version: String,
    /// The signing key's public half (base64 Ed25519).
    pub public_key: String,
    /// Ed25519 signature over [`Checkpoint::signed_bytes`] (base64).
    pub signature: String,
    /// The same checkpoint as a C2SP signed note over the Merkle tree of the first
    /// `seq` entries (empty for checkpoints from before the tree).
    #[serde(default)]
    pub note: String,
}

impl Checkpoint {
    /// The exact bytes the hub signs and agents verify.
    pub fn signed_bytes(&self) -> Vec<u8> {
        checkpoint_bytes(self.seq, &self.head_hash, self.at)
    }

    /// Whether it is signed by `trusted` (its stated key is that key and the signature
    /// verifies).
    pub fn verify_signature(&self, trusted: &VerifyingKey) -> bool {
        let Ok(sig) = Signature::from_base64(&self.signature) else {
            return false;
        };
        trusted.to_base64() == self.public_key && trusted.verify(&self.signed_bytes(), &sig).is_ok()
    }
}

/// The exact bytes of an audit checkpoint that the hub signs and agents verify:
/// `renkei-audit-checkpoint v1`, the sequence number, the head hash and the time in
/// microseconds since the epoch, one per line (no final newline).
pub fn checkpoint_bytes(seq: i64, head_hash: &str, at: DateTime<Utc>) -> Vec<u8> {
    format!(
        "renkei-audit-checkpoint v1\n{seq}\n{head_hash}\n{}",
        at.timestamp_micros()
    )
    .into_bytes()
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

/// One record of `POST /v1/records`: sealed bytes (base64) and the subject as the
/// source knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadItem {
    /// `SealedRecord::to_bytes`, base64.
    pub sealed: String,
    /// `st1_…` from an agent, the app's own `rp1_…` from a PHR app.
    pub subject: String,
}

/// `POST /v1/records`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadBody {
    /// The records, stored all or nothing.
    pub records: Vec<UploadItem>,
}

/// `POST /v1/source/key-grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsBody {
    /// The grants.
    pub grants: Vec<GrantUpload>,
}

/// `POST /v1/subjects/links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksBody {
    /// The pairs, linked all or nothing.
    pub links: Vec<SubjectLink>,
}

/// `POST /v1/consents/{id}/revoke` and `POST /v1/records/{id}/unreadable`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (free text, bounded by the hub).
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/events/{id}/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Whether the recipient deleted its copies of the consent's records.
    pub deleted: bool,
}

/// `POST /v1/log/cosignature`: a witness's cosignature of the checkpoint of `size`
/// entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignatureBody {
    /// The tree size cosigned.
    pub size: u64,
    /// The witness's verifier key (C2SP signed-note vkey).
    pub vkey: String,
    /// The C2SP tlog-cosignature/v1 signature line.
    pub cosignature: String,
}

/// `POST /v1/source/resolve`: a source's request for the resident behind the pseudonym
/// its own municipality received records under (child-health follow-up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// The municipality (`municipality:<id>`, the caller's own id).
    pub recipient: String,
    /// The pseudonym the municipality received records under (`rp1_…`).
    pub pseudonym: String,
}

/// The answer to [`ResolveBody`]: the caller's own token of the resident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The subject token (`st1_…`) the caller's agent computed for the resident.
    pub subject_token: String,
    /// The consent in force that allows it.
    pub consent_id: String,
    /// Its purpose.
    pub purpose: String,
}

/// `?cursor=…&limit=…` of the paged lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Answer items after this position (the feed).
    #[serde(default)]
    pub cursor: Option<i64>,
    /// At most this many items (the hub caps it).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    /// Unacknowledged events, oldest first.
    pub events: Vec<Event>,
}

/// `GET /v1/source/key-grant-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestList {
    /// Pending requests, oldest first.
    pub requests: Vec<GrantRequest>,
}

/// `GET /v1/source/enrollments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentList {
    /// Pending enrollment requests.
    pub enrollments: Vec<Enrollment>,
}

/// `GET /v1/source/unreadable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportList {
    /// Reports, newest first.
    pub reports: Vec<UnreadableReport>,
}

/// The answer to `POST /v1/events/{id}/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// The event acknowledged.
    pub acknowledged: i64,
}

/// The answer to `POST /v1/records/{id}/unreadable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    /// The record reported.
    pub reported: String,
    /// Whether this report is new (a repeat is a no-op).
    pub new: bool,
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
            guardian: None,
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
