//! Minimization: a parsed source document becomes one record per data category
//! (through the catalog), each a FHIR R4 Bundle (type `collection`) of
//! Observations with no subject and no identifier. A checkup also yields the
//! derived `checkup.attendance` record, which holds only the fiscal year.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use renkei_policies::Catalog;
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use crate::domain::{CheckupDocument, Observation, Value};

/// FHIR system URI of the MHLW checkup item codes.
pub const ITEM_CODE_SYSTEM: &str = "urn:oid:1.2.392.200119.6.1005";
/// FHIR system URI of UCUM units.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// FHIR system URI of catalog-derived codes (the attendance record).
pub const CATALOG_SYSTEM: &str = "urn:renkei:catalog";

/// A minimized record, before tokenization and sealing.
#[derive(Clone, Debug, PartialEq)]
pub struct MinimizedRecord {
    /// The source document id (the input to the record id).
    pub source_document: String,
    /// The catalog category.
    pub category: String,
    /// The date the data refers to (exam date; April 1 of the fiscal year for attendance).
    pub effective_date: NaiveDate,
    /// The FHIR R4 Bundle.
    pub payload: Json,
}

/// What minimizing one checkup gives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Minimized {
    /// One record per category, in category order, then the attendance record.
    pub records: Vec<MinimizedRecord>,
    /// Item codes dropped: unknown to the catalog, or marked `export = false`.
    pub dropped: Vec<String>,
}

/// The fiscal year (年度, starting April 1) of a date.
pub fn fiscal_year(date: NaiveDate) -> i32 {
    if date.month() >= 4 {
        date.year()
    } else {
        date.year() - 1
    }
}

/// Splits a checkup into per-category records, plus its attendance record
/// when the catalog names an attendance category.
pub fn minimize_checkup(doc: &CheckupDocument, catalog: &Catalog) -> Minimized {
    let mut by_category: BTreeMap<&str, Vec<&Observation>> = BTreeMap::new();
    let mut dropped = Vec::new();
    for obs in &doc.observations {
        match catalog.item(&obs.item_code) {
            Some(item) if item.export => by_category
                .entry(item.category.as_str())
                .or_default()
                .push(obs),
            _ => dropped.push(obs.item_code.clone()),
        }
    }
    let mut records: Vec<MinimizedRecord> = by_category
        .into_iter()
        .map(|(category, observations)| MinimizedRecord {
            source_document: doc.document_id.clone(),
            category: category.to_owned(),
            effective_date: doc.exam_date,
            payload: checkup_bundle(doc, category, &observations, catalog),
        })
        .collect();
    if let Some(category) = catalog.attendance_category() {
        records.push(attendance_record(doc, category));
    }
    Minimized { records, dropped }
}

/// The "attended in fiscal year N" record: no result, no exam date, no facility.
fn attendance_record(doc: &CheckupDocument, category: &str) -> MinimizedRecord {
    let year = fiscal_year(doc.exam_date);
    let start = NaiveDate::from_ymd_opt(year, 4, 1).unwrap_or(doc.exam_date);
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{
            "system": CATALOG_SYSTEM,
            "code": category,
            "display": "特定健診受診年度 (fiscal year of a specific health checkup)",
        }]},
        "valueInteger": year,
    });
    MinimizedRecord {
        source_document: doc.document_id.clone(),
        category: category.to_owned(),
        effective_date: start,
        payload: bundle(vec![(None, observation)]),
    }
}

fn checkup_bundle(
    doc: &CheckupDocument,
    category: &str,
    observations: &[&Observation],
    catalog: &Catalog,
) -> Json {
    let urls: Vec<String> = (0..observations.len())
        .map(|i| entry_url(&doc.document_id, category, i))
        .collect();
    let entries = observations
        .iter()
        .enumerate()
        .map(|(i, obs)| {
            let display = catalog
                .item(&obs.item_code)
                .map(|item| item.name.clone())
                .or_else(|| obs.display.clone());
            let mut resource = observation(obs, display, doc.exam_date);
            // A series-group header lists the members that travel in the same record.
            let members: Vec<Json> = observations
                .iter()
                .zip(&urls)
                .filter(|(m, _)| {
                    obs.group.as_deref() == Some(obs.item_code.as_str())
                        && m.group == obs.group
                        && m.item_code != obs.item_code
                })
                .map(|(_, url)| json!({"reference": url}))
                .collect();
            if !members.is_empty() {
                resource.insert("hasMember".into(), Json::Array(members));
            }
            (urls.get(i).cloned(), Json::Object(resource))
        })
        .collect();
    bundle(entries)
}

fn observation(obs: &Observation, display: Option<String>, date: NaiveDate) -> Map<String, Json> {
    let mut coding = Map::new();
    coding.insert("system".into(), json!(ITEM_CODE_SYSTEM));
    coding.insert("code".into(), json!(obs.item_code));
    if let Some(display) = display {
        coding.insert("display".into(), json!(display));
    }
    let mut resource = Map::new();
    resource.insert("resourceType".into(), json!("Observation"));
    resource.insert("status".into(), json!("final"));
    resource.insert("code".into(), json!({"coding": [coding]}));
    resource.insert("effectiveDateTime".into(), json!(date.to_string()));
    let (key, value) = fhir_value(&obs.value);
    resource.insert(key.into(), value);
    resource
}

/// The FHIR `value[x]` of a value: its key and JSON.
pub(crate) fn fhir_value(value: &Value) -> (&'static str, Json) {
    match value {
        Value::Quantity { value, unit } => {
            let mut q = Map::new();
            q.insert("value".into(), decimal(value));
            if let Some(unit) = unit {
                q.insert("unit".into(), json!(unit));
                q.insert("system".into(), json!(UCUM));
                q.insert("code".into(), json!(unit));
            }
            ("valueQuantity", Json::Object(q))
        }
        Value::Coded {
            code,
            system,
            display,
        } => {
            let mut c = Map::new();
            c.insert("system".into(), json!(system_uri(system)));
            c.insert("code".into(), json!(code));
            if let Some(display) = display {
                c.insert("display".into(), json!(display));
            }
            ("valueCodeableConcept", json!({"coding": [c]}))
        }
        Value::Text(text) => ("valueString", json!(text)),
    }
}

/// `urn:oid:` + an OID; URIs are kept as they are.
pub(crate) fn system_uri(system: &str) -> String {
    if system.contains(':') {
        system.to_owned()
    } else {
        format!("urn:oid:{system}")
    }
}

/// A checked decimal string as a JSON number (integer when it has no point).
fn decimal(raw: &str) -> Json {
    if !raw.contains('.') {
        if let Ok(i) = raw.parse::<i64>() {
            return json!(i);
        }
    }
    raw.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| json!(raw), Json::Number)
}

/// A stable `urn:uuid:` for entry `index` of the `category` record of a document
/// (UUID version 8 from SHA-256), so re-minimizing gives identical payloads.
fn entry_url(document_id: &str, category: &str, index: usize) -> String {
    let mut h = Sha256::new();
    for part in [document_id.as_bytes(), category.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update((index as u64).to_be_bytes());
    let mut bytes = [0u8; 16];
    for (dst, src) in bytes.iter_mut().zip(h.finalize().iter()) {
        *dst = *src;
    }
    let mut n = u128::from_be_bytes(bytes);
    n = (n & !(0xF << 76)) | (0x8 << 76); // version 8
    n = (n & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    format!(
        "urn:uuid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xFFFF,
        (n >> 64) & 0xFFFF,
        (n >> 48) & 0xFFFF,
        n & 0xFFFF_FFFF_FFFF
    )
}

/// A FHIR R4 collection Bundle of the given (fullUrl, resource) entries.
pub(crate) fn bundle(entries: Vec<(Option<String>, Json)>) -> Json {
    let entries: Vec<Json> = entries
        .into_iter()
        .map(|(url, resource)| match url {
            Some(url) => json!({"fullUrl": url, "resource": resource}),
            None => json!({"resource": resource}),
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PersonIdentity, Sex};

    fn doc() -> CheckupDocument {
        let obs = |code: &str, value: Value, group: Option<&str>| Observation {
            item_code: code.into(),
            display: None,
            value,
            group: group.map(str::to_owned),
            relation: None,
        };
        let q = |v: &str, u: &str| Value::Quantity {
            value: v.into(),
            unit: Some(u.into()),
        };
        CheckupDocument {
            document_id: "1.2.3^doc-1".into(),
            identity: PersonIdentity {
                insurer: "138016".into(),
                symbol: "".into(),
                number: "1".into(),
                branch: None,
                birth: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
                sex: Sex::Male,
            },
            exam_date: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap(),
            observations: vec![
                obs("9N001000000000001", q("160.5", "cm"), None),
                obs("9A751000000000001", q("120", "mm[Hg]"), None),
                obs("9N516000000000049", Value::Text("医師名".into()), None),
                obs("0000000000000000X", Value::Text("?".into()), None),
                obs(
                    "3C015161002399949",
                    Value::Text("理由".into()),
                    Some("3C015161002399949"),
                ),
                obs(
                    "8A065000002391901",
                    q("71.4", "ml/min/1.73m2"),
                    Some("3C015161002399949"),
                ),
                obs(
                    "1A020000000191111",
                    Value::Coded {
                        code: "1".into(),
                        system: "1.2.392.200119.6.2102".into(),
                        display: None,
                    },
                    None,
                ),
            ],
        }
    }

    #[test]
    fn fiscal_years_start_in_april() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(fiscal_year(d(2025, 3, 31)), 2024);
        assert_eq!(fiscal_year(d(2025, 4, 1)), 2025);
    }

    #[test]
    fn one_record_per_category_and_attendance() {
        let catalog = Catalog::embedded().unwrap();
        let m = minimize_checkup(&doc(), &catalog);
        let cats: Vec<&str> = m.records.iter().map(|r| r.category.as_str()).collect();
        assert_eq!(
            cats,
            [
                "checkup.blood-pressure",
                "checkup.body",
                "checkup.urine-kidney",
                "checkup.attendance"
            ]
        );
        assert_eq!(m.dropped, ["9N516000000000049", "0000000000000000X"]);
        let body = &m.records[1].payload;
        assert_eq!(body["resourceType"], "Bundle");
        assert_eq!(body["type"], "collection");
        let o = &body["entry"][0]["resource"];
        assert_eq!(o["code"]["coding"][0]["system"], ITEM_CODE_SYSTEM);
        assert_eq!(o["code"]["coding"][0]["code"], "9N001000000000001");
        assert_eq!(o["code"]["coding"][0]["display"], "身長");
        assert_eq!(o["valueQuantity"]["value"], 160.5);
        assert_eq!(o["valueQuantity"]["system"], UCUM);
        assert_eq!(o["valueQuantity"]["code"], "cm");
        assert_eq!(o["effectiveDateTime"], "2025-03-31");
        assert!(o.get("subject").is_none() && o.get("identifier").is_none());
        let kidney = &m.records[2].payload;
        let members = &kidney["entry"][0]["resource"]["hasMember"];
        assert_eq!(members[0]["reference"], kidney["entry"][1]["fullUrl"]);
        let attendance = &m.records[3];
        assert_eq!(attendance.effective_date.to_string(), "2024-04-01");
        assert_eq!(
            attendance.payload["entry"][0]["resource"]["valueInteger"],
            2024
        );
        assert!(!attendance.payload.to_string().contains("2025-03-31"));
    }

    #[test]
    fn coded_values_and_stable_urls() {
        let catalog = Catalog::embedded().unwrap();
        let a = minimize_checkup(&doc(), &catalog);
        let b = minimize_checkup(&doc(), &catalog);
        assert_eq!(a, b);
        let (key, v) = fhir_value(&Value::Coded {
            code: "2".into(),
            system: "1.2.392.200119.6.2003".into(),
            display: Some("いいえ".into()),
        });
        assert_eq!(key, "valueCodeableConcept");
        assert_eq!(v["coding"][0]["system"], "urn:oid:1.2.392.200119.6.2003");
        let url = entry_url("d", "c", 0);
        assert_eq!(url.len(), "urn:uuid:".len() + 36);
        assert_eq!(&url[9 + 14..9 + 15], "8");
    }
}
