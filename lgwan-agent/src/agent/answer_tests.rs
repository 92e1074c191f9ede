//! What `Agent::grant_answers` checks before it seals anything, each on its own, with a
//! counter consent (no hub needed): a request that passes every check is answered, and
//! each check refuses the request that only it stands in the way of.

use chrono::{Duration, Timelike};
use renkei_client::api::GrantRequest;
use renkei_client::{ClientConfig, HubClient};
use renkei_crypto::consent_statement::{ConsentStatement, ConsentTerms, RevocationList};
use renkei_crypto::envelope::{SealedRecord, open};
use renkei_crypto::grant::{KeyGrant, RecipientSecretKey, open_grant};
use renkei_crypto::keys::KeyVersion;
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::statement::KeyStatement;
use renkei_crypto::token::record_id;

use super::{Agent, init};
use crate::import::seal_record;
use crate::outbox::{NewRecord, Outbox};
use crate::pipeline::PreparedRecord;

const RESIDENT: &str = "st1_abcdefghijklmnopqrstuvwxyz234567";

#[path = "../../../tests/pki/fixture.rs"]
#[expect(
    dead_code,
    reason = "the shared PKI fixture has helpers this test does not use"
)]
mod fixture;
use fixture::TestPki;

struct Scene {
    _dir: tempfile::TempDir,
    pki: TestPki,
    agent: Agent,
    outbox: Outbox,
    client: HubClient,
    record: NewRecord,
    clinic: RecipientSecretKey,
}

/// City A's agent releasing to `clinic:mysos` for any purpose, one lipids record of
/// [`RESIDENT`] in its outbox.
async fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let source: ParticipantId = "source:city-a".parse().unwrap();
    let config = init(dir.path(), &source).unwrap().config;
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[[release]]\nparticipant = \"clinic:mysos\"\npurposes = [\"*\"]\n");
    std::fs::write(&config, text).unwrap();
    let agent = Agent::load(&config).unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox.sqlite"))
        .await
        .unwrap();
    let prepared = PreparedRecord {
        record_id: record_id(agent.record_id_key(), "doc-1", "checkup.lipids"),
        subject_token: renkei_crypto::token::SubjectToken::parse(RESIDENT).unwrap(),
        category: "checkup.lipids".into(),
        effective_date: chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        source_document: "doc-1".into(),
        payload: serde_json::json!({ "ldl": 120 }),
    };
    let record = seal_record(&agent, &prepared, None).unwrap();
    outbox.put(std::slice::from_ref(&record)).await.unwrap();
    let pki = TestPki::new();
    let client = HubClient::new(ClientConfig::new(
        "https://127.0.0.1:9",
        pki.pem("ca"),
        pki.pem("source-city-a"),
        pki.key("source-city-a"),
    ))
    .unwrap();
    Scene {
        _dir: dir,
        pki,
        agent,
        outbox,
        client,
        record,
        clinic: RecipientSecretKey::generate(KeyVersion::V1),
    }
}

impl Scene {
    /// A counter consent for `recipient` and `purpose`, signed by `signer` (a PKI name).
    fn consent(&self, signer: &str, recipient: &str, purpose: &str) -> ConsentStatement {
        let now = self.client.now().with_nanosecond(0).unwrap();
        let terms = ConsentTerms {
            resident: RESIDENT.into(),
            recipient: recipient.into(),
            purpose: purpose.into(),
            categories: vec!["checkup.lipids".into()],
            data_from: None,
            data_until: None,
            valid_from: now - Duration::hours(1),
            valid_until: Some(now + Duration::hours(24)),
            aliases: Vec::new(),
            guardian: None,
        };
        ConsentStatement::sign(&self.pki.pem(signer), &self.pki.key(signer), terms, now).unwrap()
    }

    /// The clinic's grant key as stated by `signer` (a PKI name).
    fn key_statement(&self, signer: &str) -> KeyStatement {
        let grant_key = self.clinic.public_key().to_base64();
        let (pem, key) = (self.pki.pem(signer), self.pki.key(signer));
        KeyStatement::sign(&pem, &key, Some(&grant_key), None, self.client.now()).unwrap()
    }

    /// A request for the record by `recipient` for `purpose`; the hub lists an
    /// attacker's key beside the recipient's statement.
    fn request(&self, recipient: &str, purpose: &str) -> GrantRequest {
        GrantRequest {
            record_id: self.record.record_id.to_string(),
            recipient: recipient.into(),
            recipient_key: RecipientSecretKey::generate(KeyVersion::V1)
                .public_key()
                .to_base64(),
            sealed: data_encoding::BASE64.encode(&self.record.sealed),
            purpose: purpose.into(),
            recipient_statement: Some(self.key_statement("clinic-mysos")),
            consent_statement: Some(self.consent("source-city-a", recipient, purpose)),
            subject: RESIDENT.into(),
        }
    }

    /// The refusal of `request` alone (it must be refused).
    async fn refusal(&self, request: GrantRequest) -> String {
        let (uploads, refused) = self
            .agent
            .grant_answers(&self.client, &self.outbox, &[request], self.client.now())
            .await
            .unwrap();
        assert!(uploads.is_empty(), "answered: {refused:?}");
        assert_eq!(refused.len(), 1);
        refused.concat()
    }
}

#[tokio::test]
async fn a_request_is_answered_only_when_every_check_passes() {
    let s = scene().await;

    // Every check passes: answered, and the grant opens with the key the clinic stated,
    // not the one the hub listed.
    let good = s.request("clinic:mysos", "online-consultation");
    let (uploads, refused) = s
        .agent
        .grant_answers(&s.client, &s.outbox, &[good], s.client.now())
        .await
        .unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let copy = SealedRecord::from_bytes(
        &data_encoding::BASE64
            .decode(uploads[0].sealed.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let grant = KeyGrant::from_base64(&uploads[0].grant).unwrap();
    let dek = open_grant(&s.clinic, &copy.header().record_id, "clinic:mysos", &grant).unwrap();
    let plain = open(&dek, &copy).unwrap();
    let json = renkei_crypto::payload::unpack(copy.header().schema_version, &plain).unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(payload["ldl"], 120);

    // A recipient with a consent, a key statement and the policies on its side, which
    // the city's release list does not name.
    let mut asmile = s.request("phr:asmile", "phr-display");
    asmile.recipient_statement = Some(s.key_statement("phr-asmile"));
    let why = s.refusal(asmile).await;
    assert!(why.contains("release list"), "{why}");

    // On the release list, under a consent, but for a purpose the policies deny a clinic.
    let why = s.refusal(s.request("clinic:mysos", "phr-display")).await;
    assert!(why.contains("policies deny"), "{why}");

    // The recipient's key vouched for by another participant's statement.
    let mut vouched = s.request("clinic:mysos", "online-consultation");
    vouched.recipient_statement = Some(s.key_statement("analyst-hachioji"));
    let why = s.refusal(vouched).await;
    assert!(why.contains("statement is `analyst:hachioji`'s"), "{why}");

    // A consent signed by a participant that takes no consents for this source's
    // residents (here the recipient itself).
    let mut self_granted = s.request("clinic:mysos", "online-consultation");
    self_granted.consent_statement =
        Some(s.consent("clinic-mysos", "clinic:mysos", "online-consultation"));
    let why = s.refusal(self_granted).await;
    assert!(why.contains("takes no consents"), "{why}");
    s.outbox.close().await;
}

/// A counter statement the hub never confirmed (no consent id: the grant failed, or its
/// answer was lost) releases nothing, nor one revoked at the counter; once confirmed, it
/// releases.
#[tokio::test]
async fn a_counter_statement_releases_only_once_confirmed_and_until_revoked() {
    let s = scene().await;
    let request = s.request("clinic:mysos", "online-consultation");
    let statement = request.consent_statement.as_ref().unwrap().id();
    s.outbox
        .put_counter_statement(&statement, None)
        .await
        .unwrap();
    let why = s.refusal(request.clone()).await;
    assert!(why.contains("never confirmed"), "{why}");
    s.outbox
        .set_counter_consent(&statement, "c-1")
        .await
        .unwrap();
    let (uploads, refused) = s
        .agent
        .grant_answers(
            &s.client,
            &s.outbox,
            std::slice::from_ref(&request),
            s.client.now(),
        )
        .await
        .unwrap();
    assert!(refused.is_empty() && uploads.len() == 1, "{refused:?}");
    s.outbox.revoke_counter_consent("c-1").await.unwrap();
    let why = s.refusal(request).await;
    assert!(why.contains("revoked at this agent's counter"), "{why}");
    let now = s.client.now().timestamp();
    let listed = async |at: i64| s.outbox.revoked_counter_statements(at, 600).await.unwrap();
    assert_eq!(listed(now).await, std::slice::from_ref(&statement));
    // The agent's list also names a statement the hub never confirmed, once the grant
    // could no longer be in flight; and no statement whose consent has ended.
    s.outbox
        .put_counter_statement("unconfirmed", Some(now + 86_400))
        .await
        .unwrap();
    assert_eq!(listed(now).await, std::slice::from_ref(&statement));
    assert_eq!(
        listed(now + 1200).await,
        [statement.clone(), "unconfirmed".to_owned()]
    );
    // Kept an hour past the consent's end (apps' clocks may run behind), then dropped.
    assert_eq!(
        listed(now + 86_400 + 1800).await,
        [statement.clone(), "unconfirmed".to_owned()]
    );
    assert_eq!(listed(now + 86_400 + 3601).await, [statement]);
    s.outbox.close().await;
}

/// An app's consent that the app once revoked stays refused when a later list of that
/// app (fresh, signed, newer) no longer names it: the agent keeps every revoked id it
/// saw, so neither the app nor a hub choosing which list to show can bring it back.
#[tokio::test]
async fn an_apps_revocation_is_remembered_when_its_next_list_drops_it() {
    let s = scene().await;
    let user = &renkei_crypto::consent_statement::user_resident("phr:asmile", "user-1");
    s.outbox
        .link_app_user_for_test("phr:asmile", user, RESIDENT)
        .await;
    let mut request = s.request("clinic:mysos", "online-consultation");
    let mut consent = s.consent("phr-asmile", "clinic:mysos", "online-consultation");
    consent.terms.resident = user.into();
    let consent = ConsentStatement::sign(
        &s.pki.pem("phr-asmile"),
        &s.pki.key("phr-asmile"),
        consent.terms,
        consent.issued_at,
    )
    .unwrap();
    let id = consent.id();
    request.consent_statement = Some(consent);
    let header = SealedRecord::from_bytes(&s.record.sealed)
        .unwrap()
        .header()
        .clone();
    let now = s.client.now();
    // This round's list, checked and fresh, names nothing.
    let empty = RevocationList::sign(
        &s.pki.pem("phr-asmile"),
        &s.pki.key("phr-asmile"),
        Vec::new(),
        now,
    )
    .unwrap();
    let covers = async || {
        let mut lists = super::Lists::new();
        lists.insert("phr:asmile".into(), Ok(empty.clone()));
        s.agent
            .consent_covers(&s.client, &s.outbox, &request, &header, &mut lists, now)
            .await
    };
    covers().await.unwrap();

    // An earlier list named the consent.
    let earlier = (now - Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    s.outbox
        .note_revocation_list("phr:asmile", &earlier, std::slice::from_ref(&id))
        .await
        .unwrap();
    let why = covers().await.unwrap_err().to_string();
    assert!(why.contains("revoked by `phr:asmile`"), "{why}");
    s.outbox.close().await;
}
