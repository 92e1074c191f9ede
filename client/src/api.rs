//! The hub's participant API as typed calls on [`HubClient`], with the client's own
//! declarations of the request and response JSON (see `internet-hub/src/api/openapi.json`).
//! Responses are read leniently (unknown fields ignored); request bodies are exact.

use chrono::{DateTime, NaiveDate, Utc};
use renkei_crypto::participant::ParticipantId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::transport::HubClient;

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
}

/// An enrollment request as a PHR app submits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// The source `source:<id>` whose enrollment key sealed the identifiers.
    pub source: String,
    /// The app's own reference for its user (1 to 128 bytes).
    pub user_ref: String,
    /// HPKE-sealed identifiers, base64.
    pub sealed: String,
}

/// An enrollment and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// Enrollment id.
    pub id: String,
    /// The app's user reference.
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
}

/// One key grant a source uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantUpload {
    /// Record id.
    pub record_id: String,
    /// Recipient `kind:id`.
    pub recipient: String,
    /// HPKE grant bytes, base64.
    pub grant: String,
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

#[derive(Deserialize)]
struct Events {
    events: Vec<Event>,
}
#[derive(Deserialize)]
struct Requests {
    requests: Vec<GrantRequest>,
}
#[derive(Deserialize)]
struct Enrollments {
    enrollments: Vec<Enrollment>,
}
#[derive(Deserialize)]
struct Acknowledged {
    acknowledged: i64,
}

/// A path segment from an id: only `[A-Za-z0-9._-]`, so nothing needs escaping.
fn segment<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    let ok = value.bytes().any(|b| b != b'.')
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(value)
    } else {
        Err(Error::invalid(
            format!("{what} `{}`", crate::error::shorten(value)),
            "is not a valid id",
        ))
    }
}

impl HubClient {
    /// `POST /v1/records`: uploads sealed records with their subjects, all or nothing;
    /// the body is `{"records": [{"sealed": base64, "subject": "…"}]}`.
    pub async fn upload_records(&self, uploads: &[Upload]) -> Result<IngestReport> {
        let records: Vec<serde_json::Value> = uploads
            .iter()
            .map(|u| {
                serde_json::json!({
                    "sealed": data_encoding::BASE64.encode(&u.sealed),
                    "subject": u.subject,
                })
            })
            .collect();
        self.post_json("/v1/records", &serde_json::json!({ "records": records }))
            .await
    }

    /// `GET /v1/feed`: records released to this recipient after `cursor`.
    pub async fn feed(&self, cursor: i64, limit: u32) -> Result<FeedPage> {
        self.get_json(&format!("/v1/feed?cursor={cursor}&limit={limit}"))
            .await
    }

    /// `GET /v1/records/{id}`: one record, under a consent in force now.
    pub async fn read_record(&self, record_id: &str) -> Result<FeedItem> {
        self.get_json(&format!("/v1/records/{}", segment("record id", record_id)?))
            .await
    }

    /// `GET /v1/events`: unacknowledged events, oldest first.
    pub async fn events(&self, limit: u32) -> Result<Vec<Event>> {
        let list: Events = self.get_json(&format!("/v1/events?limit={limit}")).await?;
        Ok(list.events)
    }

    /// `POST /v1/events/{id}/ack`: acknowledges an event, saying whether local copies were deleted.
    pub async fn ack_event(&self, id: i64, deleted: bool) -> Result<()> {
        let ack: Acknowledged = self
            .post_json(
                &format!("/v1/events/{id}/ack"),
                &serde_json::json!({ "deleted": deleted }),
            )
            .await?;
        if ack.acknowledged != id {
            return Err(Error::invalid(
                format!("acknowledgement of event `{id}`"),
                format!("the hub acknowledged `{}` instead", ack.acknowledged),
            ));
        }
        Ok(())
    }

    /// `POST /v1/consents`: grants a consent (never repeated once it may have reached the hub).
    pub async fn grant_consent(&self, body: &GrantBody) -> Result<Granted> {
        self.post_json_once("/v1/consents", body).await
    }

    /// `POST /v1/consents/{id}/revoke`.
    pub async fn revoke_consent(&self, consent_id: &str, reason: &str) -> Result<Consent> {
        let path = format!("/v1/consents/{}/revoke", segment("consent id", consent_id)?);
        self.post_json(&path, &serde_json::json!({ "reason": reason }))
            .await
    }

    /// `POST /v1/enrollments`: submits sealed identifiers (never repeated once it may have reached the hub).
    pub async fn submit_enrollment(&self, body: &SubmitBody) -> Result<Enrollment> {
        self.post_json_once("/v1/enrollments", body).await
    }

    /// `GET /v1/enrollments/{id}`: the app's view of its enrollment.
    pub async fn get_enrollment(&self, id: &str) -> Result<Enrollment> {
        self.get_json(&format!(
            "/v1/enrollments/{}",
            segment("enrollment id", id)?
        ))
        .await
    }

    /// `GET /v1/source/key-grant-requests`: pending requests for the caller's records.
    pub async fn key_grant_requests(&self, limit: u32) -> Result<Vec<GrantRequest>> {
        let list: Requests = self
            .get_json(&format!("/v1/source/key-grant-requests?limit={limit}"))
            .await?;
        Ok(list.requests)
    }

    /// `POST /v1/source/key-grants`: uploads sealed key grants.
    pub async fn upload_key_grants(&self, grants: &[GrantUpload]) -> Result<GrantReport> {
        self.post_json(
            "/v1/source/key-grants",
            &serde_json::json!({ "grants": grants }),
        )
        .await
    }

    /// `GET /v1/source/enrollments`: pending enrollment requests for the calling source.
    pub async fn source_enrollments(&self, limit: u32) -> Result<Vec<Enrollment>> {
        let list: Enrollments = self
            .get_json(&format!("/v1/source/enrollments?limit={limit}"))
            .await?;
        Ok(list.enrollments)
    }

    /// `POST /v1/source/enrollments/{id}/result`: the source's answer.
    pub async fn enrollment_result(
        &self,
        id: &str,
        result: &EnrollmentResult,
    ) -> Result<Enrollment> {
        let path = format!(
            "/v1/source/enrollments/{}/result",
            segment("enrollment id", id)?
        );
        self.post_json(&path, result).await
    }

    /// `GET /v1/participants/{kind}/{id}/keys`: a participant's public keys.
    pub async fn participant_keys(&self, who: &ParticipantId) -> Result<Keys> {
        self.get_json(&format!(
            "/v1/participants/{}/{}/keys",
            who.kind(),
            who.id()
        ))
        .await
    }

    /// `PUT /v1/participants/{kind}/{id}/keys`: publishes the caller's own public keys.
    pub async fn publish_keys(&self, who: &ParticipantId, keys: &Keys) -> Result<Keys> {
        self.put_json(
            &format!("/v1/participants/{}/{}/keys", who.kind(), who.id()),
            keys,
        )
        .await
    }

    /// `GET /v1/audit/checkpoint`: the hub's latest signed audit checkpoint.
    pub async fn audit_checkpoint(&self) -> Result<Checkpoint> {
        self.get_json("/v1/audit/checkpoint").await
    }
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
    fn path_segments_refuse_anything_needing_escapes() {
        assert!(segment("id", "rec1_abc").is_ok());
        assert!(segment("id", "0b8e-uuid").is_ok());
        for bad in ["", "..", "a/b", "..%2f", "a b", "a?b"] {
            assert!(segment("id", bad).is_err(), "{bad}");
        }
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
