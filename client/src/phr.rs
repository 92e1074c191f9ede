//! The FHIR R4 payloads of a PHR app's own records: `phr.vitals` (vital-sign
//! Observations, LOINC-coded, UCUM units), `phr.medication` (MedicationStatements), and a
//! consultation service's `consult.child-health` note (one Observation).
//! Like every Renkei payload they are `collection` Bundles that name no resident: the
//! subject travels beside the envelope (DESIGN.md step 2). Where R4 requires a subject
//! (`MedicationStatement.subject` 1..1) it is a Reference with only a `type` and a
//! `display`, which identifies no one (docs/fhir.md).

use chrono::NaiveDate;
use serde_json::{Value as Json, json};

/// FHIR system URI of LOINC.
pub const LOINC: &str = "http://loinc.org";
/// FHIR system URI of UCUM units.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// FHIR's observation category code system.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// The display of the subject-less subject Reference: the resident is whoever the
/// record is released for, known to the recipient by its own pseudonym, outside the payload.
pub const SUBJECT_DISPLAY: &str =
    "本人 (the resident this record is released for; not identified in the payload)";

/// One vital sign a resident records in the app.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VitalSign {
    /// Heart rate, beats per minute.
    HeartRate(f64),
    /// Body weight, kilograms.
    BodyWeight(f64),
    /// Body temperature, degrees Celsius.
    BodyTemperature(f64),
    /// Blood pressure, systolic and diastolic, mm Hg (one panel Observation).
    BloodPressure {
        /// Systolic, mm Hg.
        systolic: f64,
        /// Diastolic, mm Hg.
        diastolic: f64,
    },
}

/// One medicine a resident says they take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Medication {
    /// The medicine as the resident names it, e.g. `amlodipine 5 mg`.
    pub name: String,
    /// How it is taken, as free text (`1日1回 朝食後`), if the app asks.
    pub dosage: Option<String>,
}

/// What a child-health consultation service (Kids Public × 府中市) passes to the city for
/// follow-up: whether the family needs a visit, why, and the district (for planning the
/// round, not an address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildHealthNote {
    /// Whether the consultation saw a need for follow-up (要フォロー).
    pub follow_up: bool,
    /// Why, as the consultant wrote it (e.g. `育児不安`).
    pub reason: String,
    /// The district (地区), e.g. `府中第三地区`.
    pub district: String,
}

/// FHIR system URI of the catalog's own codes (categories, and their parts).
pub const CATALOG_SYSTEM: &str = "urn:renkei:catalog";

/// The `consult.child-health` payload: one Observation of `date`, coded with the
/// category, the follow-up flag as its value and the reason and district as components.
pub fn child_health_bundle(date: NaiveDate, note: &ChildHealthNote) -> Vec<u8> {
    let code = |code: &str, display: &str| json!({"coding": [{"system": CATALOG_SYSTEM, "code": code, "display": display}], "text": display});
    let o = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": code("consult.child-health", "子どもの健康相談: フォローの要否 (follow-up needed)"),
        "effectiveDateTime": date.to_string(),
        "valueBoolean": note.follow_up,
        "component": [
            {"code": code("consult.child-health.reason", "理由 (reason)"), "valueString": note.reason},
            {"code": code("consult.child-health.district", "地区 (district)"), "valueString": note.district},
        ],
    });
    to_bytes(&bundle(vec![o]))
}

/// The `phr.vitals` payload: one Observation per reading, all taken on `date`.
pub fn vitals_bundle(date: NaiveDate, readings: &[VitalSign]) -> Vec<u8> {
    let date = date.to_string();
    let entries = readings
        .iter()
        .map(|r| vital_observation(&date, r))
        .collect();
    to_bytes(&bundle(entries))
}

/// The `phr.medication` payload: one MedicationStatement per medicine, as the resident
/// stated it on `date` (`dateAsserted`, and `effectiveDateTime`: taken on that date).
pub fn medication_bundle(date: NaiveDate, medicines: &[Medication]) -> Vec<u8> {
    let date = date.to_string();
    let entries = medicines
        .iter()
        .map(|m| {
            let mut s = json!({
                "resourceType": "MedicationStatement",
                "status": "active",
                "medicationCodeableConcept": {"text": m.name},
                "subject": {"type": "Patient", "display": SUBJECT_DISPLAY},
                "effectiveDateTime": date,
                "dateAsserted": date,
                "informationSource": {"type": "Patient", "display": SUBJECT_DISPLAY},
            });
            if let (Some(dosage), Some(map)) = (&m.dosage, s.as_object_mut()) {
                map.insert("dosage".into(), json!([{"text": dosage}]));
            }
            s
        })
        .collect();
    to_bytes(&bundle(entries))
}

fn vital_observation(date: &str, reading: &VitalSign) -> Json {
    let quantity = |value: f64, unit: &str| json!({"value": value, "unit": unit, "system": UCUM, "code": unit});
    let code = |code: &str, display: &str| json!({"coding": [{"system": LOINC, "code": code, "display": display}], "text": display});
    let mut o = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]}],
        "effectiveDateTime": date,
    });
    let (c, value) = match *reading {
        VitalSign::HeartRate(v) => (code("8867-4", "Heart rate"), quantity(v, "/min")),
        VitalSign::BodyWeight(v) => (code("29463-7", "Body weight"), quantity(v, "kg")),
        VitalSign::BodyTemperature(v) => (code("8310-5", "Body temperature"), quantity(v, "Cel")),
        VitalSign::BloodPressure {
            systolic,
            diastolic,
        } => (
            code("85354-9", "Blood pressure panel with all children optional"),
            json!([
                {"code": code("8480-6", "Systolic blood pressure"), "valueQuantity": quantity(systolic, "mm[Hg]")},
                {"code": code("8462-4", "Diastolic blood pressure"), "valueQuantity": quantity(diastolic, "mm[Hg]")},
            ]),
        ),
    };
    if let Some(map) = o.as_object_mut() {
        map.insert("code".into(), c);
        // A panel carries its readings as components, a single reading as its value.
        let key = if value.is_array() {
            "component"
        } else {
            "valueQuantity"
        };
        map.insert(key.into(), value);
    }
    o
}

fn bundle(resources: Vec<Json>) -> Json {
    let entries: Vec<Json> = resources
        .into_iter()
        .map(|r| json!({"resource": r}))
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

fn to_bytes(doc: &Json) -> Vec<u8> {
    // Serializing a `Value` with string keys cannot fail.
    serde_json::to_vec(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
    }

    #[test]
    fn vitals_are_loinc_coded_with_ucum_units_and_a_date() {
        let b: Json = serde_json::from_slice(&vitals_bundle(
            day(),
            &[
                VitalSign::HeartRate(64.0),
                VitalSign::BloodPressure {
                    systolic: 128.0,
                    diastolic: 82.0,
                },
            ],
        ))
        .unwrap();
        let hr = &b["entry"][0]["resource"];
        assert_eq!(hr["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(hr["valueQuantity"]["code"], "/min");
        assert_eq!(hr["effectiveDateTime"], "2025-06-01");
        let bp = &b["entry"][1]["resource"];
        assert_eq!(bp["component"][1]["valueQuantity"]["value"], 82.0);
        assert!(bp.get("valueQuantity").is_none());
        assert!(!b.to_string().contains("\"reference\""));
    }

    #[test]
    fn medication_statements_have_a_subject_that_names_no_one() {
        let b: Json = serde_json::from_slice(&medication_bundle(
            day(),
            &[Medication {
                name: "amlodipine 5 mg".into(),
                dosage: Some("1日1回 朝食後".into()),
            }],
        ))
        .unwrap();
        let s = &b["entry"][0]["resource"];
        assert_eq!(s["resourceType"], "MedicationStatement");
        assert_eq!(s["subject"]["display"], SUBJECT_DISPLAY);
        assert!(
            s["subject"].get("reference").is_none() && s["subject"].get("identifier").is_none()
        );
        assert_eq!(s["effectiveDateTime"], "2025-06-01");
        assert_eq!(s["dosage"][0]["text"], "1日1回 朝食後");
    }
}
