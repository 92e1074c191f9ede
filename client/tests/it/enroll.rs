//! Enrollment claims: sealed to the source, signed by the requesting app with its
//! certificate key. A source opens only a claim that the app named as requester signed,
//! by a certificate of the pinned CA, over exactly this claim for this source.

use chrono::{DateTime, TimeZone, Utc};
use renkei_client::enroll::{Claim, SignedClaim, enrollment_info, open_signed_claim, seal_claim};
use renkei_crypto::grant::{RecipientSecretKey, hpke_open, hpke_seal};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::KeyVersion;
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::statement::Signed;

use crate::fixture::TestPki;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn identity() -> Identity {
    Identity {
        insurer_number: "138123".into(),
        symbol: "アイ".into(),
        number: "１２３".into(),
        birth_date: "1980-04-01".into(),
        sex: Sex::Female,
        branch: Some("01".into()),
    }
}

fn claim() -> Claim {
    let mut claim = Claim::new(identity(), Some("K7QM-3XWA-9PZD")).unwrap();
    claim.user_ref = Some("u-1".into());
    claim
}

fn signer<'a>(
    pki: &'a TestPki,
    name: &'a str,
) -> impl FnOnce(&[u8]) -> renkei_client::Result<Signed> + 'a {
    move |bytes| Ok(Signed::make(&pki.pem(name), &pki.key(name), |_| bytes.to_vec()).unwrap())
}

/// `claim()` sealed to `sk` for the source and app of [`ids`], signed by `name`'s key.
fn sealed_by(pki: &TestPki, sk: &RecipientSecretKey, name: &str) -> Vec<u8> {
    let (source, app) = ids();
    seal_claim(&sk.public_key(), &source, &app, &claim(), signer(pki, name)).unwrap()
}

fn ids() -> (ParticipantId, ParticipantId) {
    (
        "source:city-a".parse().unwrap(),
        "phr:asmile".parse().unwrap(),
    )
}

fn open(
    pki: &TestPki,
    sk: &RecipientSecretKey,
    requester: &ParticipantId,
    sealed: &[u8],
) -> renkei_client::Result<Claim> {
    let (source, _) = ids();
    open_signed_claim(sk, &source, requester, sealed)?.verify(
        &source,
        requester,
        &pki.pem("ca"),
        now(),
    )
}

#[test]
fn a_claim_opens_for_its_source_and_requester_with_the_apps_signature() {
    let pki = TestPki::new();
    let sk = RecipientSecretKey::generate(KeyVersion::V1);
    let (source, app) = ids();
    let sealed = sealed_by(&pki, &sk, "phr-asmile");
    assert!(open(&pki, &sk, &app, &sealed).unwrap() == claim());

    let other_app: ParticipantId = "phr:other".parse().unwrap();
    assert!(open(&pki, &sk, &other_app, &sealed).is_err());
    let other_source: ParticipantId = "source:city-b".parse().unwrap();
    assert!(open_signed_claim(&sk, &other_source, &app, &sealed).is_err());
    assert!(
        !format!(
            "{:?}",
            open_signed_claim(&sk, &source, &app, &sealed).unwrap()
        )
        .contains("K7QM")
    );
}

#[test]
fn a_claim_signed_by_anyone_but_the_requester_is_refused() {
    let pki = TestPki::new();
    let sk = RecipientSecretKey::generate(KeyVersion::V1);
    let (_, app) = ids();
    // Another participant of the same CA (what a hub holding some certificate could do).
    let sealed = sealed_by(&pki, &sk, "clinic-mysos");
    let err = open(&pki, &sk, &app, &sealed).unwrap_err().to_string();
    assert!(err.contains("signed by `clinic:mysos`"), "{err}");
    // A certificate of another CA naming an app.
    let sealed = sealed_by(&pki, &sk, "wrong-ca");
    assert!(open(&pki, &sk, &app, &sealed).is_err());
}

#[test]
fn an_unsigned_or_altered_claim_is_refused() {
    let pki = TestPki::new();
    let sk = RecipientSecretKey::generate(KeyVersion::V1);
    let (source, app) = ids();
    let info = enrollment_info(&source, &app);
    let reseal = |v: &serde_json::Value| {
        hpke_seal(&sk.public_key(), &info, &[], v.to_string().as_bytes()).unwrap()
    };
    // What apps sealed before claims were signed: bare identifiers, or a bare claim.
    let bare = serde_json::to_value(identity()).unwrap();
    assert!(open_signed_claim(&sk, &source, &app, &reseal(&bare)).is_err());
    let unsigned = serde_json::to_value(claim()).unwrap();
    assert!(open_signed_claim(&sk, &source, &app, &reseal(&unsigned)).is_err());

    // The app's signature moved onto another claim (another user reference).
    let sealed = sealed_by(&pki, &sk, "phr-asmile");
    let mut v: serde_json::Value =
        serde_json::from_slice(&hpke_open(&sk, &info, &[], &sealed).unwrap()).unwrap();
    let mut other = claim();
    other.user_ref = Some("u-2".into());
    v["claim"] = serde_json::Value::String(serde_json::to_string(&other).unwrap());
    let err = open(&pki, &sk, &app, &reseal(&v)).unwrap_err().to_string();
    assert!(err.contains("does not verify"), "{err}");
    // The app's genuine claim, checked against a CA the source did not pin.
    let sealed = sealed_by(&pki, &sk, "phr-asmile");
    assert!(open(&pki, &sk, &app, &sealed).is_ok());
    assert!(
        SignedClaim::verify(
            &open_signed_claim(&sk, &source, &app, &sealed).unwrap(),
            &source,
            &app,
            &pki.pem("other-ca"),
            now()
        )
        .is_err()
    );
}
