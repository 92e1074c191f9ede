//! Export of a consent version to a FHIR R4 `Consent` resource (JSON).
//!
//! Mapping: subject token → `patient.identifier` (`urn:renkei:subject-token`), recipient →
//! `provision.actor` with role IRCP (`urn:renkei:participant`), purpose →
//! `provision.purpose` (`urn:renkei:purpose`), categories → `provision.class`
//! (`urn:renkei:category`), data period → `provision.dataPeriod`, validity →
//! `provision.period`, evidence → `sourceReference.identifier`. Method, granter,
//! supersession and revocation have no R4 element and go into extensions.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::model::{Consent, Status};

/// Base of this crate's FHIR extension URLs.
const EXT: &str = "urn:renkei:fhir:consent";

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The FHIR `consent-state-codes` value for a status: only `active` stays active;
/// revoked, expired and superseded consents are `inactive`.
pub fn fhir_status(status: Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Revoked | Status::Expired | Status::Superseded => "inactive",
    }
}

/// The consent as a FHIR R4 `Consent` resource, with the status in force at `now`.
pub fn to_fhir_r4(consent: &Consent, now: DateTime<Utc>) -> Value {
    let status = consent.effective_status(now);
    let mut period = serde_json::Map::new();
    period.insert("start".into(), json!(instant(consent.terms.valid_from)));
    if let Some(u) = consent.terms.valid_until {
        period.insert("end".into(), json!(instant(u)));
    }
    let mut data_period = serde_json::Map::new();
    if let Some(f) = consent.terms.data_period.from {
        data_period.insert("start".into(), json!(f.to_string()));
    }
    if let Some(u) = consent.terms.data_period.until {
        data_period.insert("end".into(), json!(u.to_string()));
    }
    let mut provision = json!({
        "type": "permit",
        "period": period,
        "actor": [{
            "role": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP",
                "display": "information recipient"
            }]},
            "reference": { "identifier": { "system": "urn:renkei:participant", "value": consent.terms.recipient } }
        }],
        "purpose": [{ "system": "urn:renkei:purpose", "code": consent.terms.purpose }],
        "class": consent.terms.categories.iter()
            .map(|c| json!({ "system": "urn:renkei:category", "code": c }))
            .collect::<Vec<_>>(),
    });
    if !data_period.is_empty() {
        if let Some(p) = provision.as_object_mut() {
            p.insert("dataPeriod".into(), Value::Object(data_period));
        }
    }
    let mut extension = vec![
        json!({ "url": format!("{EXT}-method"), "valueCode": consent.terms.method.as_str() }),
        json!({ "url": format!("{EXT}-granted-by"), "valueString": consent.terms.granted_by }),
        json!({ "url": format!("{EXT}-status"), "valueCode": status.as_str() }),
    ];
    if let Some(s) = &consent.supersedes {
        extension.push(json!({ "url": format!("{EXT}-supersedes"), "valueString": s }));
    }
    if let Some(r) = &consent.revocation {
        extension.push(json!({
            "url": format!("{EXT}-revocation"),
            "extension": [
                { "url": "by", "valueCode": r.by.as_str() },
                { "url": "actor", "valueString": r.actor },
                { "url": "at", "valueDateTime": instant(r.at) },
                { "url": "reason", "valueString": r.reason },
            ]
        }));
    }
    let mut resource = json!({
        "resourceType": "Consent",
        "id": consent.id,
        "meta": { "versionId": consent.version.to_string() },
        "extension": extension,
        "identifier": [{ "system": "urn:renkei:consent", "value": consent.id }],
        "status": fhir_status(status),
        "scope": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"
        }]},
        "category": [{ "coding": [{
            "system": "http://loinc.org",
            "code": "59284-0",
            "display": "Patient Consent"
        }]}],
        "patient": { "identifier": { "system": "urn:renkei:subject-token", "value": consent.terms.subject } },
        "dateTime": instant(consent.granted_at),
        "performer": [{ "identifier": { "system": "urn:renkei:subject-token", "value": consent.terms.subject } }],
        "policyRule": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN"
        }]},
        "provision": provision,
    });
    if let (Some(e), Some(obj)) = (&consent.terms.evidence, resource.as_object_mut()) {
        obj.insert(
            "sourceReference".into(),
            json!({ "identifier": { "system": "urn:renkei:evidence", "value": e }, "display": "consent evidence" }),
        );
    }
    resource
}
