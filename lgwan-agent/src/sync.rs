//! The agent's side of the hub, one round at a time: upload the subject links of a
//! token key rotation and the outbox, answer key-grant requests, publish the agent's
//! public key, and keep the hub's latest audit checkpoint. Every call is outbound (mTLS through [`HubClient`]).
//!
//! Enrollment answers are in [`crate::enroll`], the daemon loop in [`crate::daemon`];
//! both are re-exported here.

use renkei_client::HubClient;
use renkei_client::api::{Checkpoint, Keys, LinkReport, SubjectLink, Upload};
use renkei_crypto::sign::{Signature, VerifyingKey};

use crate::agent::Agent;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::outbox::{Outbox, OutboxItem, Refusal};

pub use crate::daemon::run;
pub use crate::enroll::answer_enrollments_once;

/// Key-grant requests read per call to the hub.
const GRANT_PAGE: u32 = 500;
/// How long a counter statement may wait for the hub's confirmation before the agent's
/// revocation list names it (a grant in flight must not be voided at the apps for good).
const UNCONFIRMED_GRACE_SECS: i64 = 600;
/// Pages of key-grant requests answered in one round at most.
const GRANT_PAGES_PER_ROUND: usize = 20;

/// A client for the hub named in the config's `[hub]` section (does not connect yet).
pub fn connect(config: &Config) -> Result<HubClient> {
    Ok(HubClient::new(config.hub()?.client_config())?)
}

/// How the hub refused a batch, when the refusal is about a record rather than
/// about the agent or the hub's state: such a batch is split to find the record.
fn refusal(e: &renkei_client::Error) -> Option<Refusal> {
    match e {
        renkei_client::Error::Hub { status: 409, .. } => Some(Refusal::Conflict),
        renkei_client::Error::Hub {
            status: 400 | 413, ..
        } => Some(Refusal::Rejected),
        _ => None,
    }
}

/// Where batches go: the hub, or a fake in tests.
pub(crate) trait Uploader {
    /// Uploads one batch, all or nothing.
    async fn upload(&self, batch: &[Upload]) -> renkei_client::Result<()>;
}

impl Uploader for HubClient {
    async fn upload(&self, batch: &[Upload]) -> renkei_client::Result<()> {
        self.upload_records(batch).await.map(|_| ())
    }
}

/// Uploads every pending record in batches of `batch` and marks them sent; returns
/// how many were accepted. A batch the hub refuses because of one record (409
/// conflict, 400, 413) is split until that record is found; it is marked refused
/// and recorded as the last error, and the rest goes on. Any other failure (hub
/// down, agent suspended) stops the round with the error; nothing is lost.
pub async fn upload_once(outbox: &Outbox, client: &HubClient, batch: usize) -> Result<usize> {
    upload_with(outbox, client, batch).await
}

async fn upload_with(outbox: &Outbox, client: &impl Uploader, batch: usize) -> Result<usize> {
    let mut sent = 0;
    loop {
        let items = outbox.pending(batch.max(1)).await?;
        if items.is_empty() {
            return Ok(sent);
        }
        sent += deliver(outbox, client, &items).await?;
    }
}

/// Uploads `items`, splitting on per-record refusals; every item leaves `pending`
/// (sent or refused) unless an error is returned.
async fn deliver(outbox: &Outbox, client: &impl Uploader, items: &[OutboxItem]) -> Result<usize> {
    let mut sent = 0;
    let mut stack = vec![items];
    while let Some(part) = stack.pop() {
        let uploads: Vec<Upload> = part
            .iter()
            .map(|i| Upload {
                sealed: i.sealed.clone(),
                subject: i.subject.clone(),
            })
            .collect();
        let ids: Vec<String> = part.iter().map(|i| i.record_id.clone()).collect();
        let error = match client.upload(&uploads).await {
            Ok(_) => {
                sent += outbox.mark_sent(&ids).await?;
                continue;
            }
            Err(e) => e,
        };
        match (refusal(&error), part) {
            (Some(how), [one]) => {
                let why = format!("record `{}` refused: {error}", one.record_id);
                outbox.mark_refused(&one.record_id, how, &why).await?;
                outbox.set_last_error(&why).await?;
            }
            (Some(_), _) => {
                let (head, tail) = part.split_at(part.len() / 2);
                stack.push(tail);
                stack.push(head);
            }
            (None, _) => {
                let why = format!("upload: {error}");
                outbox.mark_failed(&ids, &why).await?;
                outbox.set_last_error(&why).await?;
                return Err(error.into());
            }
        }
    }
    Ok(sent)
}

/// Where subject-link batches go: the hub, or a fake in tests.
pub(crate) trait LinkUploader {
    /// Uploads one batch of links, all or nothing.
    async fn upload_links(&self, batch: &[SubjectLink]) -> renkei_client::Result<LinkReport>;
}

impl LinkUploader for HubClient {
    async fn upload_links(&self, batch: &[SubjectLink]) -> renkei_client::Result<LinkReport> {
        self.upload_subject_links(batch).await
    }
}

/// Uploads every pending subject link (token key rotation) in batches of `batch` and
/// marks them sent; returns how many the hub took (linked now or before). Run before
/// [`upload_once`], so that records under a new token find its link at the hub. A
/// batch the hub refuses because of one pair (409: it would touch another source's or
/// another resident's history; 400, 413) is split until that pair is found; it is
/// marked refused, recorded as the last error, and the rest goes on. Any other failure
/// stops the round with the error; nothing is lost.
pub async fn upload_links_once(outbox: &Outbox, client: &HubClient, batch: usize) -> Result<usize> {
    upload_links_with(outbox, client, batch).await
}

async fn upload_links_with(
    outbox: &Outbox,
    client: &impl LinkUploader,
    batch: usize,
) -> Result<usize> {
    let mut sent = 0;
    loop {
        let links = outbox.pending_links(batch.max(1)).await?;
        if links.is_empty() {
            return Ok(sent);
        }
        let mut stack = vec![links.as_slice()];
        while let Some(part) = stack.pop() {
            let error = match client.upload_links(part).await {
                Ok(_) => {
                    sent += outbox.mark_links_sent(part).await?;
                    continue;
                }
                Err(e) => e,
            };
            match (refusal(&error), part) {
                (Some(_), [one]) => {
                    let why = format!("link `{}` → `{}` refused: {error}", one.old, one.new);
                    outbox.mark_link_refused(one, &why).await?;
                    outbox.set_last_error(&why).await?;
                }
                (Some(_), _) => {
                    let (head, tail) = part.split_at(part.len() / 2);
                    stack.push(tail);
                    stack.push(head);
                }
                (None, _) => {
                    outbox
                        .set_last_error(&format!("link upload: {error}"))
                        .await?;
                    return Err(error.into());
                }
            }
        }
    }
}

/// Answers the pending key-grant requests for the agent's records (sealing each
/// DEK to its recipient); returns how many grants the hub stored.
pub async fn answer_grants_once(agent: &Agent, client: &HubClient) -> Result<usize> {
    answer_pages(|| agent.serve_grants_once(client, GRANT_PAGE)).await
}

/// Serves pages of key-grant requests with `serve` until a short page, a page that
/// stored nothing (the hub serves refused requests again only after a wait), or
/// [`GRANT_PAGES_PER_ROUND`] pages: a hub replaying answerable requests cannot hold the
/// round for ever (the next round goes on where this one stopped).
async fn answer_pages<F, Fut>(mut serve: F) -> Result<usize>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<renkei_client::source::ServeReport>>,
{
    let mut stored = 0;
    for _ in 0..GRANT_PAGES_PER_ROUND {
        let report = serve().await?;
        stored += report.uploaded.stored;
        let full = u32::try_from(report.requests).is_ok_and(|n| n >= GRANT_PAGE);
        if !full || report.uploaded.stored == 0 {
            return Ok(stored);
        }
    }
    Ok(stored)
}

/// Signs and publishes the list of the counter statements this agent revoked: an app
/// releasing its own records under a counter consent (which names the app's user among
/// its aliases) releases only while this list is fresh and does not name the statement,
/// so a revocation the hub hides still stops it. Published every round, so that it
/// stays fresh ([`renkei_client::consent::REVOCATION_LIST_MAX_AGE`]).
pub async fn publish_counter_revocations(outbox: &Outbox, client: &HubClient) -> Result<usize> {
    let now = client.now().timestamp();
    let revoked = outbox
        .revoked_counter_statements(now, UNCONFIRMED_GRACE_SECS)
        .await?;
    let n = revoked.len();
    let list = client.sign_revocation_list(revoked)?;
    client.publish_revocation_list(&list).await?;
    Ok(n)
}

/// Publishes the agent's enrollment public key (a source holds no grant key: it
/// never receives key grants).
pub async fn publish_keys(agent: &Agent, client: &HubClient) -> Result<Keys> {
    let enrollment = agent.enrollment_key().public_key().to_base64();
    // Signed with the agent's certificate key: apps seal identifiers only to an
    // enrollment key this statement binds (the hub cannot swap it).
    Ok(client.publish_signed_keys(None, Some(&enrollment)).await?)
}

/// Checks a checkpoint's signature by its own key, and that this key is `pinned`
/// when the agent pins one (base64 Ed25519).
pub fn verify_checkpoint(cp: &Checkpoint, pinned: Option<&str>) -> Result<()> {
    let bad = |why: String| Error::Checkpoint(format!("entry {}: {why}", cp.seq));
    if let Some(pinned) = pinned {
        if pinned.trim() != cp.public_key {
            return Err(bad(format!(
                "signed by `{}`, not by the pinned hub key",
                cp.public_key
            )));
        }
    }
    let key = VerifyingKey::from_base64(&cp.public_key).map_err(|e| bad(e.to_string()))?;
    let signature = Signature::from_base64(&cp.signature).map_err(|e| bad(e.to_string()))?;
    key.verify(&cp.signed_bytes(), &signature)
        .map_err(|_| bad("the signature does not verify".into()))
}

/// Fetches the hub's latest audit checkpoint, verifies it (against `pinned`, the
/// hub key from `[hub] signing_key`, when set) and keeps it unless it rolls back
/// or forks the one kept. `None` when the hub has no checkpoint yet.
pub async fn keep_checkpoint(
    outbox: &Outbox,
    client: &HubClient,
    pinned: Option<&str>,
) -> Result<Option<Checkpoint>> {
    let cp = match client.audit_checkpoint().await {
        Ok(cp) => cp,
        Err(renkei_client::Error::Hub { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    verify_checkpoint(&cp, pinned)?;
    outbox.store_checkpoint(&cp).await?;
    Ok(Some(cp))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub that keeps every page full and says each grant was stored (a replay)
    /// is served a bounded number of pages a round.
    #[tokio::test]
    async fn a_hub_replaying_grant_requests_cannot_hold_the_round() {
        let mut pages = 0;
        let stored = answer_pages(|| {
            pages += 1;
            assert!(pages <= 100, "the round did not end");
            let mut report = renkei_client::source::ServeReport {
                requests: GRANT_PAGE as usize,
                ..Default::default()
            };
            report.uploaded.stored = GRANT_PAGE as usize;
            std::future::ready(Ok(report))
        })
        .await
        .unwrap();
        assert_eq!(pages, GRANT_PAGES_PER_ROUND);
        assert_eq!(stored, GRANT_PAGES_PER_ROUND * GRANT_PAGE as usize);
    }
    use chrono::TimeZone;
    use renkei_crypto::keys::KeyVersion;
    use renkei_crypto::sign::SigningKey;

    fn signed(key: &SigningKey, seq: i64) -> Checkpoint {
        let mut cp = Checkpoint {
            seq,
            head_hash: "ab".repeat(32),
            at: chrono::Utc.with_ymd_and_hms(2025, 4, 1, 9, 0, 0).unwrap(),
            key_version: "v1".into(),
            public_key: key.verifying_key().to_base64(),
            signature: String::new(),
            note: String::new(),
        };
        cp.signature = key.sign(&cp.signed_bytes()).to_base64();
        cp
    }

    #[test]
    fn checkpoints_verify_against_the_pinned_key() {
        let hub = SigningKey::generate(KeyVersion::V1);
        let other = SigningKey::generate(KeyVersion::V1);
        let cp = signed(&hub, 12);
        let pinned = hub.verifying_key().to_base64();
        assert!(verify_checkpoint(&cp, None).is_ok());
        assert!(verify_checkpoint(&cp, Some(&pinned)).is_ok());
        let forged = signed(&other, 12);
        let e = verify_checkpoint(&forged, Some(&pinned)).unwrap_err();
        assert!(e.to_string().contains("pinned"), "{e}");
        let mut edited = cp.clone();
        edited.seq = 13;
        assert!(verify_checkpoint(&edited, Some(&pinned)).is_err());
        let mut moved = cp;
        moved.head_hash = "cd".repeat(32);
        assert!(verify_checkpoint(&moved, None).is_err());
    }

    fn hub(status: u16) -> renkei_client::Error {
        renkei_client::Error::Hub {
            status,
            code: "c".into(),
            message: "m".into(),
            retry_after: None,
        }
    }

    /// A hub that refuses (409) any batch holding a record whose bytes start with
    /// `bad`, is down once `down` batches were taken, and counts the calls.
    struct FakeHub {
        calls: std::sync::Mutex<Vec<usize>>,
        down_after: usize,
    }

    impl Uploader for FakeHub {
        async fn upload(&self, batch: &[Upload]) -> renkei_client::Result<()> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(batch.len());
            if calls.len() > self.down_after {
                return Err(renkei_client::Error::Transport {
                    hub: "fake".into(),
                    reason: "connection refused".into(),
                    maybe_sent: false,
                });
            }
            if batch.iter().any(|u| u.sealed.starts_with(b"bad")) {
                return Err(hub(409));
            }
            Ok(())
        }
    }

    async fn outbox_with(dir: &std::path::Path, n: usize, bad: &[usize]) -> Outbox {
        let outbox = Outbox::open(&dir.join("o.sqlite")).await.unwrap();
        let records: Vec<_> = (0..n)
            .map(|i| crate::outbox::NewRecord {
                record_id: renkei_crypto::token::RecordId::parse(&format!(
                    "rec1_{}{}",
                    "a".repeat(30),
                    ["aa", "ab", "ac", "ad", "ae", "af", "ag", "ah", "ba", "bb"][i]
                ))
                .unwrap(),
                subject: renkei_crypto::token::SubjectToken::parse(&format!(
                    "st1_{}",
                    "b".repeat(32)
                ))
                .unwrap(),
                branch: None,
                category: "checkup.body".into(),
                sealed: if bad.contains(&i) {
                    b"bad".to_vec()
                } else {
                    b"ok".to_vec()
                },
            })
            .collect();
        outbox.put(&records).await.unwrap();
        outbox
    }

    #[tokio::test]
    async fn a_conflicting_record_is_isolated_and_the_rest_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox_with(dir.path(), 10, &[6]).await;
        let fake = FakeHub {
            calls: Default::default(),
            down_after: usize::MAX,
        };
        assert_eq!(upload_with(&outbox, &fake, 8).await.unwrap(), 9);
        let status = outbox.status().await.unwrap();
        assert_eq!((status.pending, status.sent, status.refused), (0, 9, 1));
        let why = status.last_error.unwrap().value;
        assert!(why.contains("409") && why.contains("rec1_"), "{why}");
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls.first(), Some(&8));
        assert!(
            calls.len() <= 10,
            "binary search, not one by one: {calls:?}"
        );
    }

    #[tokio::test]
    async fn a_hub_going_down_keeps_the_rest_pending() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox_with(dir.path(), 10, &[]).await;
        let fake = FakeHub {
            calls: Default::default(),
            down_after: 1,
        };
        let e = upload_with(&outbox, &fake, 4).await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
        let status = outbox.status().await.unwrap();
        assert_eq!((status.pending, status.sent, status.refused), (6, 4, 0));
        assert!(
            status
                .last_error
                .unwrap()
                .value
                .contains("connection refused")
        );
        let fake = FakeHub {
            calls: Default::default(),
            down_after: usize::MAX,
        };
        assert_eq!(upload_with(&outbox, &fake, 4).await.unwrap(), 6);
        assert_eq!(outbox.depth().await.unwrap(), 0);
    }

    /// A hub that refuses (409) any link batch holding a pair whose new token is in
    /// `bad`, and is down after `down_after` batches.
    struct FakeLinkHub {
        bad: Vec<String>,
        calls: std::sync::Mutex<usize>,
        down_after: usize,
    }

    impl LinkUploader for FakeLinkHub {
        async fn upload_links(&self, batch: &[SubjectLink]) -> renkei_client::Result<LinkReport> {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            if *calls > self.down_after {
                return Err(hub(503));
            }
            if batch.iter().any(|l| self.bad.contains(&l.new)) {
                return Err(hub(409));
            }
            Ok(LinkReport {
                linked: batch.len(),
                duplicates: 0,
            })
        }
    }

    fn tok(i: usize) -> renkei_crypto::token::SubjectToken {
        let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
        let tail: String = [i / 32, i % 32]
            .iter()
            .map(|&j| alphabet[j] as char)
            .collect();
        renkei_crypto::token::SubjectToken::parse(&format!("st1_{}{tail}", "a".repeat(30))).unwrap()
    }

    #[tokio::test]
    async fn links_go_up_in_batches_and_a_refused_pair_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite")).await.unwrap();
        let pairs: Vec<_> = (0..10).map(|i| (tok(i), tok(100 + i))).collect();
        outbox.put_links(&pairs).await.unwrap();
        let fake = FakeLinkHub {
            bad: vec![tok(104).as_str().to_owned()],
            calls: Default::default(),
            down_after: usize::MAX,
        };
        assert_eq!(upload_links_with(&outbox, &fake, 8).await.unwrap(), 9);
        let counts = outbox.link_counts().await.unwrap();
        assert_eq!((counts.pending, counts.sent, counts.refused), (0, 9, 1));
        let why = outbox.last_error().await.unwrap().unwrap().value;
        assert!(
            why.contains("409") && why.contains(tok(104).as_str()),
            "{why}"
        );

        // A hub that is down keeps the links pending and stops the round.
        outbox
            .put_links(&[(tok(20), tok(120)), (tok(21), tok(121))])
            .await
            .unwrap();
        let down = FakeLinkHub {
            bad: vec![],
            calls: Default::default(),
            down_after: 0,
        };
        assert!(upload_links_with(&outbox, &down, 8).await.is_err());
        assert_eq!(outbox.link_counts().await.unwrap().pending, 2);
        outbox.close().await;
    }

    #[test]
    fn only_record_specific_refusals_split_a_batch() {
        assert_eq!(refusal(&hub(409)), Some(Refusal::Conflict));
        assert_eq!(refusal(&hub(400)), Some(Refusal::Rejected));
        assert_eq!(refusal(&hub(413)), Some(Refusal::Rejected));
        for status in [401, 403, 429, 500, 503] {
            assert_eq!(refusal(&hub(status)), None, "{status}");
        }
    }
}
