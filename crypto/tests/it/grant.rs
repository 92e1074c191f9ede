//! Key grants and general HPKE sealing: round trips and every way a grant
//! must fail to open.

use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord, derive_dek, open, seal};
use renkei_crypto::grant::{
    GrantOpener, GrantSealer, KeyGrant, RecipientPublicKey, RecipientSecretKey, grant_info,
    hpke_open, hpke_seal, open_grant, seal_grant,
};
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::token::{RecordId, record_id};

const RECIPIENT: &str = "phr:asmile";

/// `payload` sealed as record `id` (a `checkup.body` of one subject) under `record_key`.
fn sealed(record_key: &RecordKey, id: &RecordId, payload: &[u8]) -> SealedRecord {
    let header = EnvelopeHeader {
        record_id: id.clone(),
        subject_binding: renkei_crypto::token::subject_binding(
            record_key,
            id,
            &format!("st1_{}", "b".repeat(32)),
        ),
        category: "checkup.body".into(),
        source: "source:hachioji".into(),
        effective_date: chrono::NaiveDate::from_ymd_opt(2024, 4, 1).unwrap(),
        schema_version: 1,
        key_version: KeyVersion::V1,
    };
    seal(record_key, header, payload).unwrap()
}

#[test]
fn a_grant_carries_the_dek_to_its_recipient() {
    let record_key = RecordKey::generate(KeyVersion::V1);
    let id = record_id(&record_key, "doc-1", "checkup.body");
    let sealed = sealed(&record_key, &id, b"payload");
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
        let mut bent = bytes.clone();
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
    assert_eq!(grant.to_bytes().len(), KeyGrant::LEN_V2);
    assert_eq!(KeyGrant::from_base64(&grant.to_base64()).unwrap(), grant);
    assert!(KeyGrant::from_bytes(&grant.to_bytes()[..91]).is_err());
    assert!(
        KeyGrant::from_bytes(&grant.to_bytes()[..80]).is_ok(),
        "a v1 length"
    );
    let err = KeyGrant::from_base64("AAAA").unwrap_err().to_string();
    assert!(err.contains("key grant") && err.contains("got 3"), "{err}");
    let err = RecipientPublicKey::from_base64("AAAA")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected 32 bytes, got 3"), "{err}");
    assert!(format!("{recipient:?}").contains("[secret elided]"));
}

/// A recipient key file holding `bytes`.
fn recipient_from(dir: &std::path::Path, bytes: [u8; 32]) -> RecipientSecretKey {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("recipient.key");
    let line = format!(
        "renkei-key x25519 v1 {}\n",
        data_encoding::BASE64.encode(&bytes)
    );
    std::fs::write(&path, line).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    RecipientSecretKey::load(&path).unwrap()
}

/// Grants sealed before batches (v1, 80 bytes) still open: this one was sealed by the
/// v1 code for record `doc-v1` of record key `[9; 32]` to recipient key `[7; 32]`.
#[test]
fn a_v1_grant_sealed_before_batches_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let recipient = recipient_from(dir.path(), [7; 32]);
    let record_key = RecordKey::from_bytes([9; 32], KeyVersion::V1);
    let id = record_id(&record_key, "doc-v1", "checkup.body");
    assert_eq!(id.as_str(), "rec1_sfosnvecz7lm3ydcooffx6rdirqrgygd");
    let grant = KeyGrant::from_base64(
        "lu8aUTHVpoI7RY0eNd6O9x1hg7qaqTskibOA0aLFYT1v7yz3AZJB+AFiSwzeVeE3lGdqFKjh93eP6koULrDrtxOU6lkzwlRrHF2/8VhDwk8=",
    )
    .unwrap();
    assert_eq!(grant.to_bytes().len(), KeyGrant::LEN_V1);
    let dek = open_grant(&recipient, &id, RECIPIENT, &grant).unwrap();
    let sealed = sealed(&record_key, &id, b"v1");
    assert_eq!(open(&dek, &sealed).unwrap(), b"v1");
    assert!(open_grant(&recipient, &id, "clinic:kita", &grant).is_err());
    let other = record_id(&record_key, "doc-v2", "checkup.body");
    assert!(open_grant(&recipient, &other, RECIPIENT, &grant).is_err());
}

/// One batch: every grant shares the HPKE `enc`, opens only for its own record, and a
/// wrapped DEK moved onto another record's grant, or a batch opened by another
/// recipient id or key, fails, also once the opener holds the batch key.
#[test]
fn a_batch_shares_one_setup_and_binds_each_record() {
    let record_key = RecordKey::generate(KeyVersion::V1);
    let ids: Vec<_> = (0..5)
        .map(|i| record_id(&record_key, &format!("doc-{i}"), "checkup.body"))
        .collect();
    let recipient = RecipientSecretKey::generate(KeyVersion::V1);
    let sealer = GrantSealer::new(&recipient.public_key(), RECIPIENT).unwrap();
    assert_eq!(sealer.recipient_id(), RECIPIENT);
    assert!(format!("{sealer:?}").contains("[secret elided]"));
    let grants: Vec<_> = ids
        .iter()
        .map(|id| sealer.seal(id, &derive_dek(&record_key, id)).unwrap())
        .collect();
    let enc = |g: &KeyGrant| g.to_bytes()[..32].to_vec();
    assert!(grants.iter().all(|g| enc(g) == enc(&grants[0])), "one enc");
    assert_ne!(grants[0], grants[1]);

    let opener = GrantOpener::new(&recipient, RECIPIENT);
    for (id, grant) in ids.iter().zip(&grants) {
        let dek = opener.open(id, grant).unwrap();
        let same = derive_dek(&record_key, id);
        assert_eq!(format!("{dek:?}"), format!("{same:?}"));
        // Opened by a fresh opener too: the result does not depend on the cache.
        open_grant(&recipient, id, RECIPIENT, grant).unwrap();
    }
    // The opener now holds the batch key: the bindings still hold.
    assert!(opener.open(&ids[1], &grants[0]).is_err(), "other record");
    let mut moved = grants[0].to_bytes();
    moved[32..].copy_from_slice(&grants[1].to_bytes()[32..]);
    let moved = KeyGrant::from_bytes(&moved).unwrap();
    assert!(opener.open(&ids[0], &moved).is_err(), "wrapped DEK moved");
    assert!(
        opener.open(&ids[1], &moved).is_ok(),
        "it is record 1's grant"
    );
    let other_name = GrantOpener::new(&recipient, "clinic:kita");
    assert!(other_name.open(&ids[0], &grants[0]).is_err(), "other id");
    let stranger = RecipientSecretKey::generate(KeyVersion::V1);
    assert!(open_grant(&stranger, &ids[0], RECIPIENT, &grants[0]).is_err());
    for i in 0..KeyGrant::LEN_V2 {
        let mut bent = grants[2].to_bytes();
        bent[i] ^= 0x10;
        let bent = KeyGrant::from_bytes(&bent).unwrap();
        assert!(opener.open(&ids[2], &bent).is_err(), "byte {i}");
    }
    // A second batch to the same recipient has its own setup.
    let again = GrantSealer::new(&recipient.public_key(), RECIPIENT).unwrap();
    let g = again
        .seal(&ids[0], &derive_dek(&record_key, &ids[0]))
        .unwrap();
    assert_ne!(enc(&g), enc(&grants[0]));
    assert!(opener.open(&ids[0], &g).is_ok());
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
