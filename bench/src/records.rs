//! Synthetic sealed records for the hub benchmarks: invented subjects, one record per
//! checkup category each, a FHIR payload of a realistic size, sealed as an agent would.

use anyhow::{Context, Result};
use chrono::NaiveDate;
use renkei_client::api::Upload;
use renkei_crypto::envelope::{EnvelopeHeader, seal};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::{RecordKey, TokenKey};
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::payload::{self, JSON_LZ4};
use renkei_crypto::token::{record_id, subject_binding, subject_token};

/// One invented subject and its sealed records.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Its subject token (`st1_…`).
    pub token: String,
    /// Its records, one per category.
    pub uploads: Vec<Upload>,
}

/// The checkup categories of the bundled catalog (the unit of consent and of sealing).
pub fn checkup_categories() -> Result<Vec<String>> {
    let catalog = renkei_policies::Catalog::embedded().context("loading the bundled catalog")?;
    let mut out: Vec<String> = catalog
        .categories()
        .map(|c| c.name.clone())
        .filter(|c| c.starts_with("checkup."))
        .collect();
    out.sort();
    Ok(out)
}

/// A FHIR Bundle of four observations, about 1.5 KB of JSON, sealed as the agent seals
/// (schema 2: compressed, then padded to its bucket, here the smallest, 1 KiB).
fn bundle(n: usize, category: &str) -> Vec<u8> {
    let obs = |code: &str, value: usize, unit: &str| {
        format!(
            r#"{{"fullUrl":"urn:uuid:00000000-0000-8000-8000-{n:012x}","resource":{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"urn:oid:1.2.392.200119.6.1005","code":"{code}","display":"{category}"}}]}},"effectiveDateTime":"2026-06-01","valueQuantity":{{"value":{value},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}}}}}"#
        )
    };
    let entries = [
        obs("9N001000000000001", 150 + n % 40, "cm"),
        obs("9N006000000000001", 45 + n % 50, "kg"),
        obs("3F015000002327101", 60 + n % 200, "mg/dL"),
        obs("3D046000001906202", 5 + n % 3, "%"),
    ];
    format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

/// `subjects` invented subjects of `source`, each with one sealed record per category.
pub fn synthesize(
    source: &ParticipantId,
    record_key: &RecordKey,
    token_key: &TokenKey,
    subjects: usize,
    categories: &[String],
) -> Result<Vec<Subject>> {
    let date = NaiveDate::from_ymd_opt(2026, 6, 1).context("a fixed date")?;
    let mut out = Vec::with_capacity(subjects);
    for n in 0..subjects {
        let identity = Identity {
            insurer_number: "01380016".into(),
            symbol: format!("{}", 100 + n / 10_000),
            number: format!("{n}"),
            birth_date: format!("19{:02}-{:02}-{:02}", 40 + n % 60, 1 + n % 12, 1 + n % 28),
            sex: if n % 2 == 0 { Sex::Female } else { Sex::Male },
            branch: None,
        };
        let canonical = identity.canonical().context("canonical identity")?;
        let token = subject_token(token_key, &canonical);
        let document = format!("bench-{n:08}");
        let mut uploads = Vec::with_capacity(categories.len());
        for category in categories {
            let id = record_id(record_key, &document, category);
            let header = EnvelopeHeader {
                subject_binding: subject_binding(record_key, &id, token.as_str()),
                record_id: id,
                category: category.clone(),
                source: source.to_string(),
                effective_date: date,
                schema_version: JSON_LZ4,
                key_version: record_key.version(),
            };
            let plain = payload::pack(JSON_LZ4, &bundle(n, category))?;
            let sealed = seal(record_key, header, &plain)?;
            uploads.push(Upload {
                sealed: sealed.to_bytes(),
                subject: token.as_str().to_owned(),
            });
        }
        out.push(Subject {
            token: token.as_str().to_owned(),
            uploads,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use renkei_crypto::envelope::{SealedRecord, derive_dek, open};
    use renkei_crypto::keys::KeyVersion;

    #[test]
    fn records_open_and_are_distinct() {
        let cats = checkup_categories().unwrap();
        assert!(cats.len() >= 5 && cats.iter().all(|c| c.starts_with("checkup.")));
        let key = RecordKey::generate(KeyVersion::V1);
        let tok = TokenKey::generate(KeyVersion::V1);
        let source: ParticipantId = "source:bench-city".parse().unwrap();
        let subjects = synthesize(&source, &key, &tok, 3, &cats).unwrap();
        assert_eq!(subjects.len(), 3);
        assert_ne!(subjects[0].token, subjects[1].token);
        let first = &subjects[0].uploads[0];
        let sealed = SealedRecord::from_bytes(&first.sealed).unwrap();
        assert_eq!(sealed.header().schema_version, JSON_LZ4);
        let plain = open(&derive_dek(&key, &sealed.header().record_id), &sealed).unwrap();
        assert_eq!(plain.len(), payload::MIN_BUCKET);
        let json = payload::unpack(JSON_LZ4, &plain).unwrap();
        assert!((1000..2000).contains(&json.len()), "{}", json.len());
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["resourceType"], "Bundle");
    }
}
