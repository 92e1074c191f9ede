//! FHIR R4 Consent export: the key fields a FHIR consumer reads.

use renkei_consent::fhir::to_fhir_r4;
use renkei_consent::{ConsentStore, RevocationRequest, RevokedBy, SqliteStore};

use crate::support::{PEPPER, RECIPIENT, SUBJECT, t, terms};

#[tokio::test]
async fn export_has_the_key_fields() {
    let s = SqliteStore::memory().await.unwrap();
    let (c, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let f = to_fhir_r4(&c, t(9));
    assert_eq!(f["resourceType"], "Consent");
    assert_eq!(f["id"], c.id.as_str());
    assert_eq!(f["status"], "active");
    assert_eq!(f["scope"]["coding"][0]["code"], "patient-privacy");
    assert_eq!(f["category"][0]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(f["category"][0]["coding"][0]["code"], "59284-0");
    assert_eq!(
        f["patient"]["identifier"]["system"],
        "urn:renkei:subject-token"
    );
    assert_eq!(f["patient"]["identifier"]["value"], SUBJECT);
    assert_eq!(f["dateTime"], "2025-04-01T07:00:00Z");
    assert_eq!(f["policyRule"]["coding"][0]["code"], "OPTIN");
    let p = &f["provision"];
    assert_eq!(p["type"], "permit");
    assert_eq!(p["period"]["start"], "2025-04-01T08:00:00Z");
    assert_eq!(p["period"]["end"], "2025-04-01T20:00:00Z");
    assert_eq!(p["actor"][0]["role"]["coding"][0]["code"], "IRCP");
    assert_eq!(p["actor"][0]["reference"]["identifier"]["value"], RECIPIENT);
    assert_eq!(p["purpose"][0]["system"], "urn:renkei:purpose");
    assert_eq!(p["purpose"][0]["code"], "phr-display");
    let classes: Vec<_> = p["class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["checkup.body", "checkup.lipids"]);
    assert_eq!(p["class"][0]["system"], "urn:renkei:category");
    assert_eq!(p["dataPeriod"]["start"], "2024-04-01");
    assert_eq!(p["dataPeriod"]["end"], "2025-03-31");
    assert_eq!(
        f["sourceReference"]["identifier"]["value"],
        terms().evidence.unwrap()
    );
    assert!(
        f["extension"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["valueCode"] == "app")
    );
}

#[tokio::test]
async fn revoked_and_expired_export_inactive() {
    let s = SqliteStore::memory().await.unwrap();
    let (c, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    assert_eq!(
        to_fhir_r4(&c, t(20))["status"],
        "inactive",
        "expired at valid_until"
    );
    let req = RevocationRequest {
        by: RevokedBy::Counter,
        actor: "staff-17".into(),
        reason: "asked".into(),
    };
    let r = s.revoke(&c.id, &req, t(9)).await.unwrap();
    let f = to_fhir_r4(&r, t(9));
    assert_eq!(f["status"], "inactive");
    assert_eq!(f["meta"]["versionId"], "2");
    let rev = f["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:renkei:fhir:consent-revocation");
    assert_eq!(rev.unwrap()["extension"][0]["valueCode"], "counter");
}
