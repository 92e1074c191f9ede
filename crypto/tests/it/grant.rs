//! Key grants and general HPKE sealing: round trips and every way a grant
//! must fail to open.

use renkei_crypto::envelope::{EnvelopeHeader, derive_dek, open, seal};
use renkei_crypto::grant::{
    KeyGrant, RecipientPublicKey, RecipientSecretKey, grant_info, hpke_open, hpke_seal, open_grant,
    seal_grant,
};
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::token::record_id;

const RECIPIENT: &str = "phr:asmile";

#[test]
fn a_grant_carries_the_dek_to_its_recipient() {
    let record_key = RecordKey::generate(KeyVersion::V1);
    let id = record_id(&record_key, "doc-1", "checkup.body");
    let header = EnvelopeHeader {
        record_id: id.clone(),
        subject_binding: renkei_crypto::token::subject_binding(
            &record_key,
            &id,
            &format!("st1_{}", "b".repeat(32)),
        ),
        category: "checkup.body".into(),
        source: "source:hachioji".into(),
        effective_date: chrono::NaiveDate::from_ymd_opt(2024, 4, 1).unwrap(),
        schema_version: 1,
        key_version: KeyVersion::V1,
    };
    let sealed = seal(&record_key, header, b"payload").unwrap();
    let recipient = RecipientSecretKey::generate(KeyVersion::V1);
    let grant = seal_grant(
        &recipient.public_key(),
        &id,
        RECIPIENT,
        &derive_dek(&record_key, &id),
    )
    .unwrap();
    let dek = open_grant(&recipient, &id, RECIPIENT, &grant).unwrap();
    assert_eq!(open(&dek, &sealed).unwrap(), b"payload");
}

#[test]
fn a_grant_opens_for_no_one_else() {
    let record_key = RecordKey::generate(KeyVersion::V1);
    let id = record_id(&record_key, "doc-1", "checkup.body");
    let other_id = record_id(&record_key, "doc-2", "checkup.body");
    let recipient = RecipientSecretKey::generate(KeyVersion::V1);
    let stranger = RecipientSecretKey::generate(KeyVersion::V1);
    let grant = seal_grant(
        &recipient.public_key(),
        &id,
        RECIPIENT,
        &derive_dek(&record_key, &id),
    )
    .unwrap();
    assert!(open_grant(&recipient, &id, RECIPIENT, &grant).is_ok());
    assert!(
        open_grant(&stranger, &id, RECIPIENT, &grant).is_err(),
        "other key"
    );
    assert!(
        open_grant(&recipient, &id, "clinic:kita", &grant).is_err(),
        "other recipient id"
    );
    assert!(
        open_grant(&recipient, &other_id, RECIPIENT, &grant).is_err(),
        "other record"
    );
    let bytes = grant.to_bytes();
    for i in 0..bytes.len() {
        let mut bent = bytes;
        bent[i] ^= 0x04;
        let bent = KeyGrant::from_bytes(&bent).unwrap();
        assert!(
            open_grant(&recipient, &id, RECIPIENT, &bent).is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn grants_and_public_keys_have_text_forms() {
    let recipient = RecipientSecretKey::generate(KeyVersion::V1);
    let public = recipient.public_key();
    assert_eq!(public.to_base64().len(), 44);
    assert_eq!(
        RecipientPublicKey::from_base64(&public.to_base64()).unwrap(),
        public
    );
    assert_eq!(
        serde_json::from_str::<RecipientPublicKey>(&serde_json::to_string(&public).unwrap())
            .unwrap(),
        public
    );
    let key = RecordKey::generate(KeyVersion::V1);
    let id = record_id(&key, "d", "c");
    let grant = seal_grant(&public, &id, RECIPIENT, &derive_dek(&key, &id)).unwrap();
    assert_eq!(grant.to_bytes().len(), KeyGrant::LEN);
    assert_eq!(KeyGrant::from_base64(&grant.to_base64()).unwrap(), grant);
    assert!(KeyGrant::from_bytes(&grant.to_bytes()[..79]).is_err());
    let err = RecipientPublicKey::from_base64("AAAA")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected 32 bytes, got 3"), "{err}");
    assert!(format!("{recipient:?}").contains("[secret elided]"));
}

#[test]
fn grant_info_is_length_prefixed() {
    let key = RecordKey::generate(KeyVersion::V1);
    let id = record_id(&key, "d", "c");
    let info = grant_info(&id, "phr:x").unwrap();
    let mut expected = b"\x00\x13renkei key-grant v1\x00\x25".to_vec();
    expected.extend_from_slice(id.as_str().as_bytes());
    expected.extend_from_slice(b"\x00\x05phr:x");
    assert_eq!(info, expected);
}

#[test]
fn general_hpke_round_trip_and_binding() {
    let enrollment = RecipientSecretKey::generate(KeyVersion::V1);
    let sealed = hpke_seal(
        &enrollment.public_key(),
        b"enroll v1",
        b"req-7",
        b"identifiers",
    )
    .unwrap();
    assert_eq!(sealed.len(), 32 + 11 + 16);
    let opened = hpke_open(&enrollment, b"enroll v1", b"req-7", &sealed).unwrap();
    assert_eq!(opened.as_slice(), b"identifiers");
    assert!(hpke_open(&enrollment, b"enroll v2", b"req-7", &sealed).is_err());
    assert!(hpke_open(&enrollment, b"enroll v1", b"req-8", &sealed).is_err());
    let stranger = RecipientSecretKey::generate(KeyVersion::V1);
    assert!(hpke_open(&stranger, b"enroll v1", b"req-7", &sealed).is_err());
    let err = hpke_open(&enrollment, b"", b"", &sealed[..40])
        .unwrap_err()
        .to_string();
    assert!(err.contains("too short"), "{err}");
}
