//! Samples of every kind of record the system emits, made by the code that emits them,
//! for the independent FHIR R4 and UCUM validators of `tests/fhir/` (issue 15).
//!
//! - `preview` (the agent's pipeline) over a freshly synthesized archive, the checkup
//!   fixtures and the KDB / insurer-notice CSV fixtures;
//! - [`minimize_checkup`] of one document holding every item of the MHLW item table, so
//!   that every checkup category is emitted, each item with the unit the table gives;
//! - the PHR app's payload builders ([`renkei_client::phr`]).
//!
//! The test checks that every catalog category has a sample, and the series groups of the
//! every-item checkup's records ([`checked_records`], which `valid_checkups` uses too).
//! With `RENKEI_FHIR_SAMPLES` set to a folder it also writes them there, one file a
//! record (`<category>/<n>.json`), plus `item-units.json`: for every row of the item table
//! with a unit, the code [`ucum_code`] gives it. `tests/fhir/check.mjs` validates the
//! folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use lgwan_agent::domain::{CheckupDocument, Observation, PersonIdentity, Sex, Value};
use lgwan_agent::minimize::{minimize_checkup, ucum_code};
use lgwan_agent::synth::{SynthOptions, write_archive};
use renkei_client::phr::{
    ChildHealthNote, Medication, VitalSign, child_health_bundle, medication_bundle, vitals_bundle,
};
use renkei_policies::Catalog;
use serde_json::json;

use crate::preview::{agent, run_preview};
use crate::synth::spec_dir;
use crate::{MAIN, MHLW, fixture};

/// One row of the MHLW item table (`XMLhc18tab.utf8.csv`), read here by the test.
struct Row {
    code: String,
    name: String,
    kind: String,
    unit: Option<String>,
    group: Option<String>,
    relation: Option<String>,
    oid: Option<String>,
}

fn item_table() -> Vec<Row> {
    let text = std::fs::read_to_string(spec_dir().join("XMLhc18tab.utf8.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
            let cell = |i: usize| {
                cols.get(i)
                    .map(|c| c.trim())
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
            };
            Some(Row {
                code: cell(3)?,
                name: cell(4).unwrap_or_default(),
                kind: cell(6).unwrap_or_default(),
                unit: cell(10),
                group: cell(12),
                relation: cell(13),
                oid: cell(18),
            })
        })
        .collect()
}

/// One checkup holding a value for every item of the table, typed as the table says.
fn every_item_checkup(rows: &[Row]) -> CheckupDocument {
    let observations = rows
        .iter()
        .map(|r| Observation {
            item_code: r.code.clone(),
            display: Some(r.name.clone()),
            value: match r.kind.as_str() {
                "PQ" => Value::Quantity {
                    value: "12.5".into(),
                    unit: r.unit.clone(),
                },
                "CD" | "CO" => Value::Coded {
                    code: "1".into(),
                    system: r.oid.clone().unwrap(),
                    display: None,
                },
                _ => Value::Text("所見なし".into()),
            },
            group: r.group.clone(),
            relation: r.relation.clone(),
            effective: None,
        })
        .collect();
    CheckupDocument {
        kind: Default::default(),
        document_id: "1.2.392.200119.6.102.11234567^every-item".into(),
        identity: PersonIdentity {
            insurer: "00138016".into(),
            symbol: "1".into(),
            number: "1".into(),
            branch: None,
            birth: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
            sex: Sex::Female,
        },
        exam_date: NaiveDate::from_ymd_opt(2024, 10, 15).unwrap(),
        unread_values: 0,
        observations,
    }
}

/// Records as (category, payload).
type Records = Vec<(String, Vec<u8>)>;

/// The records [`minimize_checkup`] makes of `doc`, each checked against the results it
/// was made from ([`check_record`]): every exported result of the document is in the
/// record of its category, with its value, and each series group has one head without
/// a value listing exactly its results. Returns the records and the number of heads.
pub(crate) fn checked_records(
    doc: &CheckupDocument,
    catalog: &Catalog,
) -> Result<(Records, usize), String> {
    let records: Records = minimize_checkup(doc, catalog)
        .records
        .into_iter()
        .map(|r| (r.category, r.payload))
        .collect();
    let mut exported: BTreeMap<&str, Vec<&Observation>> = BTreeMap::new();
    for o in &doc.observations {
        if let Some(item) = catalog.item(&o.item_code).filter(|i| i.export) {
            exported.entry(item.category.as_str()).or_default().push(o);
        }
    }
    let mut heads = 0;
    // The attendance record holds no result.
    let with_results = records.iter().filter(|(c, _)| c != "checkup.attendance");
    let categories: Vec<&str> = with_results.clone().map(|(c, _)| c.as_str()).collect();
    if !categories.iter().copied().eq(exported.keys().copied()) {
        return Err(format!(
            "records {categories:?} for results of {:?}",
            exported.keys()
        ));
    }
    for (category, payload) in with_results {
        let results = exported
            .get(category.as_str())
            .map_or(&[][..], Vec::as_slice);
        heads += check_record(results, payload).map_err(|e| format!("{category}: {e}"))?;
    }
    Ok((records, heads))
}

/// Checks one checkup record against its results (in document order), independently of
/// how the agent writes it: every result is one entry, in order, with exactly its value;
/// each series group with results in the record has one head, before them, with no
/// `value[x]` and no `category`, coded by the group id, whose `hasMember` lists exactly
/// those results (JP-CLINS eCheckup's group shape, issue 15). Returns the number of heads.
pub(crate) fn check_record(results: &[&Observation], payload: &[u8]) -> Result<usize, String> {
    use serde_json::Value as J;
    let bundle: J = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let entries = bundle["entry"].as_array().ok_or("no entries")?;
    // Entries with their positions: group heads, and the rest (one per result).
    type Entries<'a> = Vec<(usize, &'a J)>;
    let (heads, rows): (Entries, Entries) = entries
        .iter()
        .enumerate()
        .partition(|(_, e)| e["resource"].get("hasMember").is_some());
    if rows.len() != results.len() {
        return Err(format!(
            "{} entries for {} results",
            rows.len(),
            results.len()
        ));
    }
    for ((_, row), o) in rows.iter().zip(results) {
        let r = &row["resource"];
        let item = &o.item_code;
        if r["code"]["coding"][0]["code"] != item.as_str() {
            return Err(format!("`{item}` is written as {}", r["code"]));
        }
        let keys: Vec<&String> = r
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("value"))
            .collect();
        let same = match &o.value {
            Value::Quantity { value, unit } => {
                let q = &r["valueQuantity"];
                q["value"].as_f64() == value.parse::<f64>().ok()
                    && q["unit"].as_str() == unit.as_deref()
            }
            Value::Coded {
                code,
                system,
                display,
            } => {
                let c = &r["valueCodeableConcept"]["coding"][0];
                c["code"] == code.as_str()
                    && c["system"].as_str().is_some_and(|s| {
                        s == system || s.strip_prefix("urn:oid:") == Some(system.as_str())
                    })
                    && c["display"].as_str() == display.as_deref()
            }
            Value::Text(text) => r["valueString"] == text.as_str(),
            Value::Date { date } => r["valueDateTime"] == date.to_string().as_str(),
        };
        if keys.len() != 1 || !same {
            return Err(format!("`{item}`: {:?} written as {r}", o.value));
        }
    }
    let mut groups: Vec<&str> = results.iter().filter_map(|o| o.group.as_deref()).collect();
    groups.sort_unstable();
    groups.dedup();
    if heads.len() != groups.len() {
        return Err(format!("{} heads for the groups {groups:?}", heads.len()));
    }
    for group in &groups {
        let (at, head) = heads
            .iter()
            .find(|(_, h)| h["resource"]["code"]["coding"][0]["code"] == *group)
            .ok_or_else(|| format!("no head for `{group}`"))?;
        let h = head["resource"].as_object().unwrap();
        if let Some(k) = h
            .keys()
            .find(|k| k.starts_with("value") || *k == "category")
        {
            return Err(format!("the head of `{group}` has `{k}`"));
        }
        let listed: Vec<&J> = h["hasMember"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["reference"])
            .collect();
        let members: Vec<(usize, &J)> = rows
            .iter()
            .zip(results)
            .filter(|(_, o)| o.group.as_deref() == Some(*group))
            .map(|((i, e), _)| (*i, &e["fullUrl"]))
            .collect();
        if listed != members.iter().map(|(_, u)| *u).collect::<Vec<_>>() {
            return Err(format!(
                "the head of `{group}` lists {listed:?}, not {members:?}"
            ));
        }
        if members.iter().any(|(i, _)| i < at) {
            return Err(format!("the head of `{group}` comes after a member"));
        }
    }
    Ok(heads.len())
}

/// Every sample, as (category, payload), in a stable order.
fn samples(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // The pipeline: synthetic archive, checkup fixtures, KDB and notice CSVs.
    // With 特定保健指導 records, for the guidance categories.
    let opts = SynthOptions {
        guidance: true,
        ..SynthOptions::default()
    };
    let archive = dir.join(opts.archive_name());
    write_archive(&archive, &opts).unwrap();
    let agent = agent(&dir.join("agent"));
    let inputs: Vec<PathBuf> = vec![archive, fixture(MAIN), fixture(MHLW), fixture("csv")];
    let (records, quarantined) = run_preview(&agent, &inputs);
    assert!(quarantined.is_empty(), "{quarantined:?}");
    for r in records {
        let category = r["category"].as_str().unwrap().to_owned();
        out.push((category, serde_json::to_vec(&r["payload"]).unwrap()));
    }
    // Every checkup category: one document with every item of the table.
    let catalog = Catalog::embedded().unwrap();
    let (every, heads) = checked_records(&every_item_checkup(&item_table()), &catalog).unwrap();
    // The item table has ten series groups, all of them with exported results.
    assert_eq!(heads, 10);
    out.extend(every);
    // The PHR app's own records.
    let day = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
    out.push((
        "phr.vitals".into(),
        vitals_bundle(
            day,
            &[
                VitalSign::HeartRate(64.0),
                VitalSign::BodyWeight(58.2),
                VitalSign::BodyTemperature(36.4),
                VitalSign::BloodPressure {
                    systolic: 128.0,
                    diastolic: 82.0,
                },
            ],
        ),
    ));
    // A row of the vaccination register (tests/it/vaccination.rs runs it through the
    // pipeline; this is the same writer).
    out.push((
        "immunization.record".into(),
        serde_json::to_vec(&lgwan_agent::tabular::immunization_bundle(
            day,
            "日本脳炎",
            Some(2),
            "urn:renkei:table:immunization",
        ))
        .unwrap(),
    ));
    out.push((
        "consult.child-health".into(),
        child_health_bundle(
            day,
            &ChildHealthNote {
                follow_up: true,
                reason: "育児不安".into(),
                district: "府中第三地区".into(),
            },
        ),
    ));
    out.push((
        "phr.medication".into(),
        medication_bundle(
            day,
            &[
                Medication {
                    name: "アムロジピン錠5mg".into(),
                    dosage: Some("1日1回 朝食後".into()),
                },
                Medication {
                    name: "amlodipine 5 mg".into(),
                    dosage: None,
                },
            ],
        ),
    ));
    out
}

#[test]
fn every_record_kind_has_samples_for_the_validators() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path());
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    for (category, payload) in &samples {
        let doc: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(doc["resourceType"], "Bundle", "{category}");
        *by_category.entry(category).or_default() += 1;
    }
    let catalog = Catalog::embedded().unwrap();
    // Every category of records; `evaluation.aggregate` is a signed table of statistics
    // (docs/evaluation.md), not FHIR.
    let missing: Vec<&str> = catalog
        .categories()
        .map(|c| c.name.as_str())
        .filter(|c| *c != "evaluation.aggregate" && !by_category.contains_key(c))
        .collect();
    assert!(missing.is_empty(), "no sample of {missing:?}");

    let units: Vec<serde_json::Value> = item_table()
        .iter()
        .filter_map(|r| {
            let unit = r.unit.as_deref()?;
            Some(json!({"item": r.code, "unit": unit, "code": ucum_code(unit)}))
        })
        .collect();
    assert!(units.len() > 50, "{} units", units.len());

    let Some(out) = std::env::var_os("RENKEI_FHIR_SAMPLES") else {
        return;
    };
    let out = PathBuf::from(out);
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for (category, payload) in &samples {
        let i = n.entry(category).or_default();
        *i += 1;
        let folder = out.join(category);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{i:04}.json")), payload).unwrap();
    }
    std::fs::write(
        out.join("item-units.json"),
        serde_json::to_vec_pretty(&units).unwrap(),
    )
    .unwrap();
}
