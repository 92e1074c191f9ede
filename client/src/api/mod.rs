//! The hub's participant API as typed calls on [`HubClient`]; the JSON types are the
//! protocol's ([`renkei_protocol::types`]), re-exported here.

pub use renkei_protocol::types::{self, *};

use renkei_crypto::consent_statement::RevocationList;
use renkei_crypto::participant::ParticipantId;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::transport::HubClient;

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
        let records = uploads
            .iter()
            .map(|u| UploadItem {
                sealed: data_encoding::BASE64.encode(&u.sealed),
                subject: u.subject.clone(),
            })
            .collect();
        self.post_json("/v1/records", &UploadBody { records }).await
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

    /// `POST /v1/records/{id}/unreadable`: tells the hub (and through it the source)
    /// that a record this recipient holds a key grant for does not open. Repeats are
    /// no-ops at the hub.
    pub async fn report_unreadable(&self, record_id: &str, reason: &str) -> Result<()> {
        let path = format!(
            "/v1/records/{}/unreadable",
            segment("record id", record_id)?
        );
        let reason: String = reason.chars().take(200).collect();
        let _: Reported = self.post_json(&path, &ReasonBody { reason }).await?;
        Ok(())
    }

    /// `GET /v1/source/unreadable`: reports about this source's records that a recipient
    /// could not open, newest first.
    pub async fn unreadable_reports(&self, limit: u32) -> Result<Vec<UnreadableReport>> {
        let list: ReportList = self
            .get_json(&format!("/v1/source/unreadable?limit={limit}"))
            .await?;
        Ok(list.reports)
    }

    /// `GET /v1/events`: unacknowledged events, oldest first.
    pub async fn events(&self, limit: u32) -> Result<Vec<Event>> {
        let list: EventList = self.get_json(&format!("/v1/events?limit={limit}")).await?;
        Ok(list.events)
    }

    /// `POST /v1/events/{id}/ack`: acknowledges an event, saying whether local copies were deleted.
    pub async fn ack_event(&self, id: i64, deleted: bool) -> Result<()> {
        let ack: Acknowledged = self
            .post_json(&format!("/v1/events/{id}/ack"), &AckBody { deleted })
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
        self.post_json(
            &path,
            &ReasonBody {
                reason: reason.to_owned(),
            },
        )
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
        let list: RequestList = self
            .get_json(&format!("/v1/source/key-grant-requests?limit={limit}"))
            .await?;
        Ok(list.requests)
    }

    /// `POST /v1/source/key-grants`: uploads sealed key grants.
    pub async fn upload_key_grants(&self, grants: &[GrantUpload]) -> Result<GrantReport> {
        self.post_json(
            "/v1/source/key-grants",
            &GrantsBody {
                grants: grants.to_vec(),
            },
        )
        .await
    }

    /// `GET /v1/source/enrollments`: pending enrollment requests for the calling source.
    pub async fn source_enrollments(&self, limit: u32) -> Result<Vec<Enrollment>> {
        let list: EnrollmentList = self
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

    /// `POST /v1/subjects/links`: links residents' tokens across a token key rotation,
    /// all or nothing; the body is `{"links": [{"old": "st1_…", "new": "st1_…"}]}`.
    /// Idempotent: a pair linked before is counted as a duplicate.
    pub async fn upload_subject_links(&self, links: &[SubjectLink]) -> Result<LinkReport> {
        let body = LinksBody {
            links: links.to_vec(),
        };
        self.post_json("/v1/subjects/links", &body).await
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

    /// `GET /v1/participants/{kind}/{id}/revocations`: `who`'s newest signed revocation
    /// list, as the hub relays it (check it with its `verify`).
    pub async fn revocation_list(&self, who: &ParticipantId) -> Result<RevocationList> {
        self.get_json(&format!(
            "/v1/participants/{}/{}/revocations",
            who.kind(),
            who.id()
        ))
        .await
    }

    /// `PUT /v1/participants/{kind}/{id}/revocations`: publishes this participant's own
    /// signed revocation list.
    pub async fn publish_revocation_list(&self, list: &RevocationList) -> Result<Value> {
        let me = self.participant()?.clone();
        self.put_json(
            &format!("/v1/participants/{}/{}/revocations", me.kind(), me.id()),
            list,
        )
        .await
    }

    /// `POST /v1/source/resolve`: the calling source's token of the resident behind the
    /// pseudonym its own municipality received records under, when a child-health
    /// follow-up consent is in force (404 otherwise, audited either way).
    pub async fn resolve_pseudonym(&self, recipient: &str, pseudonym: &str) -> Result<Resolved> {
        let body = ResolveBody {
            recipient: recipient.to_owned(),
            pseudonym: pseudonym.to_owned(),
        };
        self.post_json("/v1/source/resolve", &body).await
    }

    /// `POST /v1/evaluation/reports`: a source delivers a sealed evaluation report.
    pub async fn deliver_evaluation(
        &self,
        body: &renkei_protocol::evaluation::DeliverBody,
    ) -> Result<renkei_protocol::evaluation::Delivered> {
        self.post_json("/v1/evaluation/reports", body).await
    }

    /// `GET /v1/evaluation/reports[?after=…]`: a page of the evaluation reports delivered
    /// to the caller, after the page whose `next` is `after`.
    pub async fn evaluation_reports(
        &self,
        after: Option<&str>,
    ) -> Result<renkei_protocol::evaluation::DeliveredList> {
        match after {
            None => self.get_json("/v1/evaluation/reports").await,
            // The hub's cursor is `<digits>.ev1_<hex>`: nothing to escape, and nothing
            // else is sent.
            Some(after)
                if after
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
            {
                self.get_json(&format!("/v1/evaluation/reports?after={after}"))
                    .await
            }
            Some(_) => Err(crate::Error::invalid(
                "the hub's `next` of evaluation reports",
                "not a page cursor",
            )),
        }
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
    fn path_segments_refuse_anything_needing_escapes() {
        assert!(segment("id", "rec1_abc").is_ok());
        assert!(segment("id", "0b8e-uuid").is_ok());
        for bad in ["", "..", "a/b", "..%2f", "a b", "a?b"] {
            assert!(segment("id", bad).is_err(), "{bad}");
        }
    }
}
