//! The copy of a record that one recipient receives (docs/authorization.md, "no shared
//! identifiers"). When a source answers a key grant it opens its own record and seals
//! it again for that recipient alone: a record id derived from the recipient
//! (`recipient_record_id`), a subject binding under that id, its own DEK and nonce,
//! fresh `urn:uuid:` ids inside the FHIR payload, and the payload padded to a size
//! bucket. Two recipients of the same record therefore share no identifier and no
//! ciphertext byte pattern; they can still match the record by its clinical content.

use std::collections::HashMap;

use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord, derive_dek, open, seal};
use renkei_crypto::keys::RecordKey;
use renkei_crypto::payload;
use renkei_crypto::token::{recipient_record_id, subject_binding};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Opens `sealed` (a record of this source, sealed with `key`) and seals the copy for
/// `recipient`. Fails if the record does not open with `key`: the hub cannot make a
/// source seal anything but its own records.
pub fn copy_for(key: &RecordKey, sealed: &SealedRecord, recipient: &str) -> Result<SealedRecord> {
    let header = sealed.header();
    let what = || format!("record `{}`", header.record_id);
    // Every plaintext buffer is wiped when dropped.
    let plain = Zeroizing::new(open(&derive_dek(key, &header.record_id), sealed).map_err(
        Error::crypto(format!("{}: does not open with our key", what())),
    )?);
    let json = Zeroizing::new(
        payload::unpack(header.schema_version, &plain).map_err(Error::crypto(what()))?,
    );
    let alias = recipient_record_id(key, &header.record_id, recipient);
    let copy_header = EnvelopeHeader {
        // Binds the original binding (and so the subject) under the recipient's id.
        subject_binding: subject_binding(key, &alias, header.subject_binding.as_str()),
        record_id: alias,
        ..header.clone()
    };
    // The copy keeps the original's schema: a recipient reads it as the header says.
    let fresh = Zeroizing::new(
        fresh_uuids(&json)
            .map_err(|e| Error::invalid(what(), format!("payload is not JSON: {e}")))?,
    );
    let padded = Zeroizing::new(
        payload::pack(header.schema_version, &fresh).map_err(Error::crypto(what()))?,
    );
    seal(key, copy_header, &padded).map_err(Error::crypto(what()))
}

/// The payload with every `urn:uuid:` value replaced by a fresh random one (the same
/// replacement wherever a value recurs, so references inside the bundle still resolve).
fn fresh_uuids(payload: &[u8]) -> serde_json::Result<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(payload)?;
    let mut fresh: HashMap<String, String> = HashMap::new();
    rewrite(&mut doc, &mut fresh);
    serde_json::to_vec(&doc)
}

fn rewrite(v: &mut Value, fresh: &mut HashMap<String, String>) {
    match v {
        Value::String(s) if s.starts_with("urn:uuid:") => {
            let new = fresh
                .entry(s.clone())
                .or_insert_with(|| format!("urn:uuid:{}", uuid::Uuid::new_v4()))
                .clone();
            *s = new;
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite(i, fresh)),
        Value::Object(map) => map.values_mut().for_each(|i| rewrite(i, fresh)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use renkei_crypto::keys::KeyVersion;
    use renkei_crypto::token::record_id;

    fn original(key: &RecordKey, schema: u16) -> SealedRecord {
        let rid = record_id(key, "doc-1", "checkup.body");
        let header = EnvelopeHeader {
            subject_binding: subject_binding(key, &rid, "st1_abcdefghijklmnopqrstuvwxyz234567"),
            record_id: rid,
            category: "checkup.body".into(),
            source: "source:city-a".into(),
            effective_date: chrono::NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
            schema_version: schema,
            key_version: KeyVersion::V1,
        };
        let json = br#"{"resourceType":"Bundle","entry":[{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000001","resource":{"resourceType":"Observation","hasMember":[{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"}]}}]}"#;
        seal(key, header, &payload::pack(schema, json).unwrap()).unwrap()
    }

    #[test]
    fn two_recipients_share_no_identifier() {
        for schema in [payload::JSON, payload::JSON_LZ4] {
            two_recipients_share_no_identifier_in(schema);
        }
    }

    fn two_recipients_share_no_identifier_in(schema: u16) {
        let key = RecordKey::from_bytes([5; 32], KeyVersion::V1);
        let sealed = original(&key, schema);
        let a = copy_for(&key, &sealed, "phr:asmile").unwrap();
        let b = copy_for(&key, &sealed, "clinic:mysos").unwrap();
        for (x, y) in [(&a, &b), (&a, &sealed), (&b, &sealed)] {
            assert_ne!(x.header().record_id, y.header().record_id);
            assert_ne!(x.header().subject_binding, y.header().subject_binding);
            assert_ne!(x.nonce(), y.nonce());
        }
        // Deterministic per recipient: answering the same request again names the same record.
        let again = copy_for(&key, &sealed, "phr:asmile").unwrap();
        assert_eq!(again.header().record_id, a.header().record_id);
        let open_copy = |c: &SealedRecord| -> Value {
            let plain = open(&derive_dek(&key, &c.header().record_id), c).unwrap();
            serde_json::from_slice(&payload::unpack(c.header().schema_version, &plain).unwrap())
                .unwrap()
        };
        let (pa, pb) = (open_copy(&a), open_copy(&b));
        let url = |p: &Value| p["entry"][0]["fullUrl"].as_str().unwrap().to_owned();
        assert_ne!(url(&pa), url(&pb));
        assert_ne!(url(&pa), "urn:uuid:00000000-0000-4000-8000-000000000001");
        assert_eq!(
            url(&pa),
            pa["entry"][0]["resource"]["hasMember"][0]["reference"],
            "references follow"
        );
        assert_eq!(pa["resourceType"], "Bundle");
        assert_eq!(a.header().schema_version, schema, "a copy keeps the schema");
        assert_eq!(
            a.ciphertext().len(),
            payload::MIN_BUCKET + 16,
            "padded to the bucket"
        );
    }

    #[test]
    fn a_record_of_another_key_is_refused() {
        let key = RecordKey::from_bytes([5; 32], KeyVersion::V1);
        let other = RecordKey::from_bytes([6; 32], KeyVersion::V1);
        let e = copy_for(&other, &original(&key, payload::JSON_LZ4), "phr:asmile").unwrap_err();
        assert!(e.to_string().contains("does not open"), "{e}");
    }
}
