//! Minimization: a parsed source document becomes one record per data category
//! (through the catalog), each a FHIR R4 Bundle (type `collection`) of
//! Observations with no subject and no identifier. A checkup also yields the
//! derived `checkup.attendance` record, which holds only the fiscal year.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use renkei_policies::Catalog;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::domain::{CheckupDocument, DocumentKind, Observation, Value};

mod group;

pub use group::{GROUP_RELATIONSHIP_EXTENSION, JP_CLINS_GROUP_SYSTEM};
use group::{group_url, write_group_head};

/// FHIR system URI of the MHLW checkup item codes.
pub const ITEM_CODE_SYSTEM: &str = "urn:oid:1.2.392.200119.6.1005";
/// FHIR system URI of the MHLW guidance item codes.
pub const GUIDANCE_CODE_SYSTEM: &str = "urn:oid:1.2.392.200119.6.1006";
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
    /// The FHIR R4 Bundle as compact JSON text: exactly the bytes that are sealed.
    pub payload: Vec<u8>,
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
/// when the catalog names an attendance category. A guidance document is split the
/// same way (into `guidance.*` records) and has no attendance record.
pub fn minimize_checkup(doc: &CheckupDocument, catalog: &Catalog) -> Minimized {
    let mut by_category: BTreeMap<&str, Vec<(&Observation, Option<&str>)>> = BTreeMap::new();
    let mut dropped = Vec::new();
    for obs in &doc.observations {
        match catalog.item(&obs.item_code) {
            Some(item) if item.export => by_category
                .entry(item.category.as_str())
                .or_default()
                .push((obs, Some(item.name.as_str()))),
            _ => dropped.push(obs.item_code.clone()),
        }
    }
    let date = doc.exam_date.to_string();
    let system = match doc.kind {
        DocumentKind::Checkup => ITEM_CODE_SYSTEM,
        DocumentKind::Guidance => GUIDANCE_CODE_SYSTEM,
    };
    let mut records: Vec<MinimizedRecord> = by_category
        .into_iter()
        .map(|(category, observations)| MinimizedRecord {
            source_document: doc.document_id.clone(),
            category: category.to_owned(),
            effective_date: doc.exam_date,
            payload: checkup_bundle(&doc.document_id, &date, system, category, &observations),
        })
        .collect();
    let attendance = catalog
        .attendance_category()
        .filter(|_| doc.kind == DocumentKind::Checkup);
    if let Some(category) = attendance {
        records.push(attendance_record(doc, category));
    }
    Minimized { records, dropped }
}

/// The "attended in fiscal year N" record: no result, no facility, and no exam date.
/// Its effective time is the fiscal year the exam fell in (`effectivePeriod`, April 1
/// to March 31): the date the source has, at the precision the record may carry
/// (DESIGN.md: "attended in fiscal year N" only).
fn attendance_record(doc: &CheckupDocument, category: &str) -> MinimizedRecord {
    let display = "特定健診受診年度 (fiscal year of a specific health checkup)";
    let (start, payload) = attendance_bundle(doc.exam_date, category, display, None);
    MinimizedRecord {
        source_document: doc.document_id.clone(),
        category: category.to_owned(),
        effective_date: start,
        payload,
    }
}

/// The Bundle of an attendance record for an exam on `date`: one Observation coded
/// with the catalog's attendance `category` (and `also`, a `(system, code)` naming which
/// examination, when the source is not a 特定健診), `display` as its text, the fiscal
/// year as `effectivePeriod` and `valueInteger`, and nothing else. Returns the fiscal
/// year's first day (the record's effective date) with it.
pub(crate) fn attendance_bundle(
    date: NaiveDate,
    category: &str,
    display: &str,
    also: Option<(&str, &str)>,
) -> (NaiveDate, Vec<u8>) {
    let year = fiscal_year(date);
    let start = NaiveDate::from_ymd_opt(year, 4, 1).unwrap_or(date);
    let end = NaiveDate::from_ymd_opt(year + 1, 3, 31).unwrap_or(date);
    let mut out = Vec::with_capacity(560);
    out.extend_from_slice(BUNDLE_HEAD);
    out.extend_from_slice(br#"{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"#);
    json_str(&mut out, CATALOG_SYSTEM);
    out.extend_from_slice(br#","code":"#);
    json_str(&mut out, category);
    out.extend_from_slice(br#","display":"#);
    json_str(&mut out, display);
    out.extend_from_slice(b"}");
    if let Some((system, code)) = also {
        out.extend_from_slice(br#",{"system":"#);
        json_str(&mut out, system);
        out.extend_from_slice(br#","code":"#);
        json_str(&mut out, code);
        out.extend_from_slice(br#","display":"#);
        json_str(&mut out, display);
        out.extend_from_slice(b"}");
    }
    out.extend_from_slice(br#"],"text":"#);
    json_str(&mut out, display);
    out.extend_from_slice(br#"},"effectivePeriod":{"start":"#);
    json_str(&mut out, &start.to_string());
    out.extend_from_slice(br#","end":"#);
    json_str(&mut out, &end.to_string());
    out.extend_from_slice(br#"},"valueInteger":"#);
    out.extend_from_slice(year.to_string().as_bytes());
    out.extend_from_slice(b"}}]}");
    (start, out)
}

/// The opening of every payload, up to the first entry.
const BUNDLE_HEAD: &[u8] = br#"{"resourceType":"Bundle","type":"collection","entry":["#;

/// The Bundle of one category of a checkup, written straight as JSON text (the
/// same text, key for key, as serializing the FHIR objects would give): one
/// Observation per result, each with a stable `fullUrl`, and for each series group
/// (一連検査グループ) with results in the record a head before its first result
/// ([`write_group_head`]). The display is the catalog's item name, else the document's.
fn checkup_bundle(
    document_id: &str,
    date: &str,
    system: &str,
    category: &str,
    observations: &[(&Observation, Option<&str>)],
) -> Vec<u8> {
    let urls: Vec<String> = (0..observations.len())
        .map(|i| entry_url(document_id, category, i))
        .collect();
    let mut out = Vec::with_capacity(256 + 320 * observations.len());
    out.extend_from_slice(BUNDLE_HEAD);
    let mut headed: Vec<&str> = Vec::new();
    for ((obs, name), url) in observations.iter().zip(&urls) {
        if let Some(group) = obs.group.as_deref().filter(|g| !headed.contains(g)) {
            headed.push(group);
            let members = observations
                .iter()
                .zip(&urls)
                .filter(|((m, _), _)| m.group.as_deref() == Some(group))
                .map(|((m, _), url)| (*m, url.as_str()));
            next_entry(&mut out);
            let head_url = group_url(document_id, category, group);
            write_group_head(&mut out, &head_url, date, group, members);
        }
        next_entry(&mut out);
        let when = obs.effective.map(|d| d.to_string());
        let when = when.as_deref().unwrap_or(date);
        write_observation(&mut out, url, system, category, when, obs, *name);
    }
    out.extend_from_slice(b"]}");
    out
}

/// The comma before an entry of the Bundle, unless it is the first.
fn next_entry(out: &mut Vec<u8>) {
    if out.last() != Some(&b'[') {
        out.push(b',');
    }
}

/// Writes the entry of one result: an Observation with its item code and value.
fn write_observation(
    out: &mut Vec<u8>,
    url: &str,
    system: &str,
    category: &str,
    date: &str,
    obs: &Observation,
    name: Option<&str>,
) {
    out.extend_from_slice(br#"{"fullUrl":"#);
    json_str(out, url);
    out.extend_from_slice(br#","resource":{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"#);
    json_str(out, OBSERVATION_CATEGORY);
    out.extend_from_slice(br#","code":"#);
    json_str(out, observation_category(category));
    out.extend_from_slice(br#"}]}],"code":{"coding":[{"system":"#);
    json_str(out, system);
    out.extend_from_slice(br#","code":"#);
    json_str(out, &obs.item_code);
    let display = name.or(obs.display.as_deref());
    if let Some(display) = display {
        out.extend_from_slice(br#","display":"#);
        json_str(out, display);
    }
    out.extend_from_slice(b"}]");
    if let Some(display) = display {
        out.extend_from_slice(br#","text":"#);
        json_str(out, display);
    }
    out.extend_from_slice(br#"},"effectiveDateTime":"#);
    json_str(out, date);
    write_value(out, &obs.value);
    out.extend_from_slice(b"}}");
}

/// FHIR's observation category code system.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// The FHIR observation category of a checkup catalog category: measurements taken at
/// the checkup are `exam`, specimen tests `laboratory`, the questionnaire and history
/// `survey`.
pub fn observation_category(category: &str) -> &'static str {
    match category {
        "checkup.lipids"
        | "checkup.liver"
        | "checkup.glucose"
        | "checkup.urine-kidney"
        | "checkup.blood-count"
        | "checkup.infection" => "laboratory",
        "checkup.questionnaire" | "checkup.history" | "checkup.life-function" => "survey",
        // 特定保健指導 is lifestyle treatment: its sessions and goals are `therapy`.
        c if c.starts_with("guidance.") => "therapy",
        _ => "exam",
    }
}

/// The valid UCUM code of a unit the MHLW item table (`XMLhc18tab`, "XML用単位") writes in
/// a form UCUM does not accept; every other unit of the table is valid UCUM as written.
/// The document's own text stays in `unit`.
pub fn ucum_code(unit: &str) -> &str {
    match unit {
        // eGFR: "1.73m2" is no UCUM unit; the body-surface normalisation is an annotation.
        "ml/min/1.73m2" => "mL/min/{1.73_m2}",
        // Urine albumin or protein per creatinine: "CR" is no UCUM unit.
        "mg/g*CR" => "mg/g{creat}",
        // UCUM's day is `d`.
        "mg/day" => "mg/d",
        other => other,
    }
}

/// Writes `,"value[x]":…` for a value: `valueQuantity` (UCUM unit), `valueCodeableConcept`
/// or `valueString`.
fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Quantity { value, unit } => {
            out.extend_from_slice(br#","valueQuantity":{"value":"#);
            write_decimal(out, value);
            if let Some(unit) = unit {
                out.extend_from_slice(br#","unit":"#);
                json_str(out, unit);
                out.extend_from_slice(br#","system":"#);
                json_str(out, UCUM);
                out.extend_from_slice(br#","code":"#);
                json_str(out, ucum_code(unit));
            }
            out.push(b'}');
        }
        Value::Coded {
            code,
            system,
            display,
        } => {
            out.extend_from_slice(br#","valueCodeableConcept":{"coding":[{"system":"#);
            json_str(out, &system_uri(system));
            out.extend_from_slice(br#","code":"#);
            json_str(out, code);
            if let Some(display) = display {
                out.extend_from_slice(br#","display":"#);
                json_str(out, display);
            }
            out.extend_from_slice(b"}]}");
        }
        Value::Text(text) => {
            out.extend_from_slice(br#","valueString":"#);
            json_str(out, text);
        }
        Value::Date { date } => {
            out.extend_from_slice(br#","valueDateTime":"#);
            json_str(out, &date.to_string());
        }
    }
}

/// Writes `s` as a JSON string, escaped exactly as `serde_json` escapes it
/// (`"`, `\`, and control characters; nothing else).
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            for nibble in [b >> 4, b & 0xF] {
                out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
            }
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Writes a checked decimal string as a JSON number (an integer when it has no point).
fn write_decimal(out: &mut Vec<u8>, raw: &str) {
    if !raw.contains('.') {
        if let Ok(i) = raw.parse::<i64>() {
            out.extend_from_slice(i.to_string().as_bytes());
            return;
        }
    }
    match raw
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => json_str(out, raw),
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

/// A stable `urn:uuid:` for entry `index` of the `category` record of a document
/// (UUID version 8 from SHA-256), so re-minimizing gives identical payloads.
fn entry_url(document_id: &str, category: &str, index: usize) -> String {
    stable_uuid(
        &[document_id.as_bytes(), category.as_bytes()],
        &(index as u64).to_be_bytes(),
    )
}

/// `urn:uuid:` + a UUID version 8 from SHA-256 over the length-prefixed `parts`, then `tail`.
fn stable_uuid(parts: &[&[u8]], tail: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(tail);
    let digest = h.finalize();
    let mut url = String::with_capacity(URN_UUID.len() + 36);
    url.push_str(URN_UUID);
    for (i, &byte) in digest.iter().take(16).enumerate() {
        let byte = match i {
            6 => 0x80 | (byte & 0x0F), // version 8
            8 => 0x80 | (byte & 0x3F), // RFC 4122 variant
            _ => byte,
        };
        if matches!(i, 4 | 6 | 8 | 10) {
            url.push('-');
        }
        for nibble in [byte >> 4, byte & 0x0F] {
            url.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    url
}

const URN_UUID: &str = "urn:uuid:";

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

    pub(super) fn doc() -> CheckupDocument {
        let obs = |code: &str, value: Value, group: Option<&str>| Observation {
            item_code: code.into(),
            display: None,
            value,
            group: group.map(str::to_owned),
            // As the CDA reader gives it: the `typeCode` of a member's relationship;
            // the group's own item, the coded container here, hangs in none.
            relation: group.filter(|g| *g != code).map(|_| "COMP".to_owned()),
            effective: None,
        };
        let q = |v: &str, u: &str| Value::Quantity {
            value: v.into(),
            unit: Some(u.into()),
        };
        CheckupDocument {
            kind: Default::default(),
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
            unread_values: 0,
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
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        let mut every: String = (0u8..0x80).map(char::from).collect();
        every.push_str("é健診\u{2028}\u{7f}\"\\/");
        for s in [every.as_str(), "", "plain", "\u{1f}end"] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        for raw in [
            "0",
            "007",
            "-0",
            "160.5",
            "71.40",
            "-3.25",
            "123456789012345678901",
            "1.0",
        ] {
            let mut out = Vec::new();
            write_decimal(&mut out, raw);
            let want = if !raw.contains('.') && raw.parse::<i64>().is_ok() {
                json!(raw.parse::<i64>().unwrap())
            } else {
                raw.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| json!(raw), Json::Number)
            };
            assert_eq!(out, serde_json::to_vec(&want).unwrap(), "{raw}");
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
        let json = |i: usize| serde_json::from_slice::<Json>(&m.records[i].payload).unwrap();
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
        let body = &json(1);
        assert_eq!(body["resourceType"], "Bundle");
        assert_eq!(body["type"], "collection");
        let o = &body["entry"][0]["resource"];
        assert_eq!(o["code"]["coding"][0]["system"], ITEM_CODE_SYSTEM);
        assert_eq!(o["code"]["coding"][0]["code"], "9N001000000000001");
        assert_eq!(o["code"]["coding"][0]["display"], "身長");
        assert_eq!(o["code"]["text"], "身長");
        assert_eq!(
            o["category"][0]["coding"][0]["system"],
            OBSERVATION_CATEGORY
        );
        assert_eq!(o["category"][0]["coding"][0]["code"], "exam");
        let kidney_obs = &json(2)["entry"][1]["resource"];
        assert_eq!(kidney_obs["category"][0]["coding"][0]["code"], "laboratory");
        assert_eq!(o["valueQuantity"]["value"], 160.5);
        assert_eq!(o["valueQuantity"]["system"], UCUM);
        assert_eq!(o["valueQuantity"]["code"], "cm");
        assert_eq!(o["effectiveDateTime"], "2025-03-31");
        assert!(o.get("subject").is_none() && o.get("identifier").is_none());
        // The creatinine group: its head, then its 実施理由 and eGFR, then 尿糖.
        let kidney = &json(2);
        let members = &kidney["entry"][0]["resource"]["hasMember"];
        assert_eq!(members[0]["reference"], kidney["entry"][1]["fullUrl"]);
        assert_eq!(members[1]["reference"], kidney["entry"][2]["fullUrl"]);
        assert_eq!(kidney["entry"].as_array().unwrap().len(), 4);
        let attendance = &m.records[3];
        assert_eq!(attendance.effective_date.to_string(), "2024-04-01");
        let attended = &json(3)["entry"][0]["resource"];
        assert_eq!(attended["valueInteger"], 2024);
        assert_eq!(attended["effectivePeriod"]["start"], "2024-04-01");
        assert_eq!(attended["effectivePeriod"]["end"], "2025-03-31");
        assert_eq!(
            attended["code"]["text"],
            attended["code"]["coding"][0]["display"]
        );
        // The exam date itself never appears (here it is not the fiscal year's end).
        let mut later = doc();
        later.exam_date = NaiveDate::from_ymd_opt(2024, 11, 5).unwrap();
        let m = minimize_checkup(&later, &catalog);
        let attended = &m.records.last().unwrap().payload;
        let text = String::from_utf8(attended.clone()).unwrap();
        assert!(
            text.contains("2024-04-01") && !text.contains("2024-11-05"),
            "{text}"
        );
    }

    #[test]
    fn coded_values_and_stable_urls() {
        let catalog = Catalog::embedded().unwrap();
        let a = minimize_checkup(&doc(), &catalog);
        let b = minimize_checkup(&doc(), &catalog);
        assert_eq!(a, b);
        // The text is exactly what serializing the parsed payload gives (the bytes
        // sealed before payloads were written directly).
        for r in &a.records {
            let parsed: Json = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(serde_json::to_vec(&parsed).unwrap(), r.payload);
        }
        let mut out = b"{\"x\":0".to_vec();
        write_value(
            &mut out,
            &Value::Coded {
                code: "2".into(),
                system: "1.2.392.200119.6.2003".into(),
                display: Some("いいえ".into()),
            },
        );
        out.push(b'}');
        let v: Json = serde_json::from_slice(&out).unwrap();
        let v = &v["valueCodeableConcept"];
        assert_eq!(v["coding"][0]["system"], "urn:oid:1.2.392.200119.6.2003");
        assert_eq!(v["coding"][0]["display"], "いいえ");
        let url = entry_url("d", "c", 0);
        assert_eq!(url.len(), "urn:uuid:".len() + 36);
        assert_eq!(&url[9 + 14..9 + 15], "8");
        // The urls results had before series groups got heads (SHA-256 over the
        // length-prefixed document id and category, then the index).
        assert_eq!(url, "urn:uuid:99aee4d8-1d4c-83ca-a492-ed5daeff249f");
        let kidney: Json = serde_json::from_slice(&a.records[2].payload).unwrap();
        assert_eq!(
            kidney["entry"][2]["fullUrl"], "urn:uuid:e41b9521-f030-8ad2-b4f8-ac0d31f15881",
            "the second result of the record keeps its url"
        );
        let head = group_url("1.2.3^doc-1", "checkup.urine-kidney", "3C015161002399949");
        assert_eq!(kidney["entry"][0]["fullUrl"], head.as_str());
        assert_ne!(
            head,
            group_url("1.2.3^doc-1", "checkup.blood-count", "3C015161002399949")
        );
    }

    #[test]
    fn table_units_that_are_not_ucum_get_valid_codes() {
        assert_eq!(ucum_code("ml/min/1.73m2"), "mL/min/{1.73_m2}");
        assert_eq!(ucum_code("mg/g*CR"), "mg/g{creat}");
        assert_eq!(ucum_code("mg/day"), "mg/d");
        assert_eq!(ucum_code("mg/dL"), "mg/dL");
        let mut out = Vec::new();
        write_value(
            &mut out,
            &Value::Quantity {
                value: "61.2".into(),
                unit: Some("ml/min/1.73m2".into()),
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""unit":"ml/min/1.73m2""#)
                && text.contains(r#""code":"mL/min/{1.73_m2}""#),
            "{text}"
        );
    }
}
