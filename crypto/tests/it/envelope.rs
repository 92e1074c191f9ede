//! Envelope seal/open, tamper detection over every byte and every header
//! field, and the binary and JSON formats.

use chrono::NaiveDate;
use renkei_crypto::Error;
use renkei_crypto::envelope::{
    EnvelopeHeader, FORMAT_VERSION, MAGIC, SealedRecord, derive_dek, open, seal,
};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::{KeyVersion, RecordKey, TokenKey};
use renkei_crypto::token::{SubjectToken, record_id, subject_binding, subject_token};

fn header(key: &RecordKey, doc: &str) -> EnvelopeHeader {
    let token_key = TokenKey::from_bytes([9; 32], KeyVersion::V1);
    let identity = Identity {
        insurer_number: "01380057".into(),
        symbol: "12".into(),
        number: "3456".into(),
        birth_date: "1975-11-30".into(),
        sex: Sex::Male,
        branch: None,
    };
    EnvelopeHeader {
        record_id: record_id(key, doc, "checkup.lipids"),
        subject_binding: subject_binding(
            key,
            &record_id(key, doc, "checkup.lipids"),
            subject_token(&token_key, &identity.canonical().unwrap()).as_str(),
        ),
        category: "checkup.lipids".into(),
        source: "source:hachioji".into(),
        effective_date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        schema_version: 1,
        key_version: key.version(),
    }
}

const PAYLOAD: &[u8] = br#"{"resourceType":"Bundle","type":"collection"}"#;

#[test]
fn seal_then_open_round_trips() {
    let key = RecordKey::generate(KeyVersion::V1);
    let sealed = seal(&key, header(&key, "doc-1"), PAYLOAD).unwrap();
    assert_eq!(sealed.ciphertext().len(), PAYLOAD.len() + 16);
    assert_ne!(&sealed.ciphertext()[..PAYLOAD.len()], PAYLOAD);
    let dek = derive_dek(&key, &sealed.header().record_id);
    assert_eq!(open(&dek, &sealed).unwrap(), PAYLOAD);
    // Two seals of the same record use fresh nonces.
    let again = seal(&key, header(&key, "doc-1"), PAYLOAD).unwrap();
    assert_ne!(again.nonce(), sealed.nonce());
    assert_eq!(open(&dek, &again).unwrap(), PAYLOAD);
    // An empty payload is fine.
    let empty = seal(&key, header(&key, "doc-1"), b"").unwrap();
    assert_eq!(open(&dek, &empty).unwrap(), b"");
}

#[test]
fn flipping_any_byte_of_the_sealed_bytes_fails() {
    let key = RecordKey::generate(KeyVersion::V1);
    let sealed = seal(&key, header(&key, "doc-1"), PAYLOAD).unwrap();
    let dek = derive_dek(&key, &sealed.header().record_id);
    let bytes = sealed.to_bytes();
    assert_eq!(SealedRecord::from_bytes(&bytes).unwrap(), sealed);
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut bent = bytes.clone();
            bent[i] ^= flip;
            let opened = SealedRecord::from_bytes(&bent).and_then(|s| open(&dek, &s));
            assert!(
                opened.is_err(),
                "flipping bit {flip:#x} of byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn truncated_and_overlong_input_is_rejected_with_a_reason() {
    let key = RecordKey::generate(KeyVersion::V1);
    let bytes = seal(&key, header(&key, "doc-1"), PAYLOAD)
        .unwrap()
        .to_bytes();
    for len in 0..bytes.len() {
        let err = SealedRecord::from_bytes(&bytes[..len]).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{len}: {err}");
    }
    let mut long = bytes.clone();
    long.push(0);
    let err = SealedRecord::from_bytes(&long).unwrap_err().to_string();
    assert_eq!(
        err,
        "malformed sealed record: 1 unexpected bytes after the sealed record"
    );
    let err = SealedRecord::from_bytes(b"RKSR\x01\xff\xff\xff\xff")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated: header needs 4294967295 bytes"),
        "{err}"
    );
    let err = SealedRecord::from_bytes(b"JUNK").unwrap_err().to_string();
    assert!(err.contains("magic"), "{err}");
}

#[test]
fn binary_layout_matches_the_documentation() {
    let key = RecordKey::generate(KeyVersion::new(3));
    let sealed = seal(&key, header(&key, "doc-1"), PAYLOAD).unwrap();
    let bytes = sealed.to_bytes();
    let encoded_header = sealed.header().encode();
    assert_eq!(&bytes[..4], MAGIC);
    assert_eq!(bytes[4], FORMAT_VERSION);
    let header_len = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
    assert_eq!(&bytes[9..9 + header_len], encoded_header.as_slice());
    let rest = &bytes[9 + header_len..];
    assert_eq!(&rest[..12], sealed.nonce());
    assert_eq!(
        u32::from_be_bytes(rest[12..16].try_into().unwrap()) as usize,
        PAYLOAD.len() + 16
    );
    assert_eq!(&rest[16..], sealed.ciphertext());
    // Header encoding: label, then the fields, each with a u16 length.
    assert_eq!(&encoded_header[..20], b"\x00\x12renkei envelope v1");
    assert!(
        encoded_header.ends_with(b"\x00\x0a2024-06-01\x00\x02\x00\x01\x00\x04\x00\x00\x00\x03")
    );
}

#[test]
fn changing_any_header_field_fails() {
    let key = RecordKey::generate(KeyVersion::V1);
    let original = header(&key, "doc-1");
    let sealed = seal(&key, original.clone(), PAYLOAD).unwrap();
    let dek = derive_dek(&key, &original.record_id);
    let other_binding = subject_binding(
        &key,
        &original.record_id,
        SubjectToken::parse(&format!("st1_{}", "a".repeat(32)))
            .unwrap()
            .as_str(),
    );
    type Change<'a> = Box<dyn Fn(&mut EnvelopeHeader) + 'a>;
    let changes: Vec<(&str, Change<'_>)> = vec![
        (
            "record_id",
            Box::new(|h| h.record_id = record_id(&key, "doc-2", "checkup.lipids")),
        ),
        (
            "subject_binding",
            Box::new(move |h| h.subject_binding = other_binding.clone()),
        ),
        ("category", Box::new(|h| h.category = "checkup.body".into())),
        ("source", Box::new(|h| h.source = "source:kita".into())),
        (
            "effective_date",
            Box::new(|h| h.effective_date = NaiveDate::from_ymd_opt(2024, 6, 2).unwrap()),
        ),
        ("schema_version", Box::new(|h| h.schema_version = 2)),
        (
            "key_version",
            Box::new(|h| h.key_version = KeyVersion::new(2)),
        ),
    ];
    for (field, change) in changes {
        let mut altered = original.clone();
        change(&mut altered);
        let forged =
            SealedRecord::from_parts(altered, *sealed.nonce(), sealed.ciphertext().to_vec())
                .unwrap();
        assert!(
            matches!(open(&dek, &forged), Err(Error::Open)),
            "changed {field}"
        );
    }
}

#[test]
fn wrong_dek_fails() {
    let key = RecordKey::generate(KeyVersion::V1);
    let sealed = seal(&key, header(&key, "doc-1"), PAYLOAD).unwrap();
    let other_record = derive_dek(&key, &record_id(&key, "doc-2", "checkup.lipids"));
    assert!(matches!(open(&other_record, &sealed), Err(Error::Open)));
    let other_key = RecordKey::generate(KeyVersion::V1);
    let other_master = derive_dek(&other_key, &sealed.header().record_id);
    assert!(matches!(open(&other_master, &sealed), Err(Error::Open)));
}

#[test]
fn deks_are_deterministic_per_key_and_record() {
    let key = RecordKey::from_bytes([1; 32], KeyVersion::V1);
    let same = RecordKey::from_bytes([1; 32], KeyVersion::V1);
    let id = record_id(&key, "doc-1", "checkup.body");
    assert_eq!(id, record_id(&same, "doc-1", "checkup.body"));
    // A record sealed with one instance opens with the DEK derived by another.
    let mut h = header(&key, "doc-1");
    h.record_id = id.clone();
    let sealed = seal(&key, h, PAYLOAD).unwrap();
    assert_eq!(open(&derive_dek(&same, &id), &sealed).unwrap(), PAYLOAD);
}

#[test]
fn seal_checks_the_header() {
    let key = RecordKey::generate(KeyVersion::new(2));
    let mut h = header(&key, "doc-1");
    h.key_version = KeyVersion::V1;
    let err = seal(&key, h, PAYLOAD).unwrap_err().to_string();
    assert_eq!(
        err,
        "header key version `v1` differs from the record key version `v2`"
    );
    for (category, reason) in [("", "must not be empty"), ("a b", "white space")] {
        let mut h = header(&key, "doc-1");
        h.category = category.into();
        let err = seal(&key, h, PAYLOAD).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid envelope header field `category`"),
            "{err}"
        );
        assert!(err.contains(reason), "{err}");
    }
}

#[test]
fn json_form_round_trips_with_base64_fields() {
    let key = RecordKey::generate(KeyVersion::V1);
    let sealed = seal(&key, header(&key, "doc-1"), PAYLOAD).unwrap();
    let json = serde_json::to_value(&sealed).unwrap();
    assert_eq!(json["header"]["effective_date"], "2024-06-01");
    assert_eq!(json["header"]["key_version"], 1);
    assert_eq!(json["nonce"].as_str().unwrap().len(), 16);
    let back: SealedRecord = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, sealed);
    let mut bad = json.clone();
    bad["nonce"] = "AAAA".into();
    assert!(serde_json::from_value::<SealedRecord>(bad).is_err());
    let mut bad = json;
    bad["ciphertext"] = "AAAA".into();
    let err = serde_json::from_value::<SealedRecord>(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("shorter than the 16-byte tag"), "{err}");
}
