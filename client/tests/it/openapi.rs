//! The client's request bodies against the hub's OpenAPI document
//! (`hub/src/api/openapi.json`): every field the client sends is documented, and
//! every field the document requires is sent, recursively through nested objects. A
//! field renamed or added on one side only fails here.

use chrono::{TimeZone, Utc};
use renkei_client::api::{DataPeriod, GrantBody, GrantUpload, Keys, Method, SubmitBody};
use renkei_crypto::consent_statement::{ConsentStatement, ConsentTerms, RevocationList};
use renkei_crypto::statement::KeyStatement;
use serde_json::{Value, json};

use crate::fixture::TestPki;

const OPENAPI: &str = include_str!("../../../hub/src/api/openapi.json");

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        if all.len() == 1 {
            return resolve(doc, &all[0]);
        }
    }
    schema
}

/// Checks `value` against `schema`'s property names, required fields and nesting.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    match value {
        Value::Object(fields) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (key, v) in fields {
                let prop = props.get(key).unwrap_or_else(|| {
                    panic!("{at}: the client sends `{key}`, which openapi.json does not document")
                });
                check(doc, prop, v, &format!("{at}.{key}"));
            }
            for req in schema["required"].as_array().into_iter().flatten() {
                let req = req.as_str().unwrap();
                assert!(
                    fields.contains_key(req),
                    "{at}: openapi.json requires `{req}`, which the client does not send"
                );
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(doc, item, v, &format!("{at}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

fn body_schema<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
}

#[test]
fn the_clients_request_bodies_are_the_documented_ones() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let pki = TestPki::new();
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let terms = ConsentTerms {
        resident: "st1_abcdefghijklmnopqrstuvwxyz234567".into(),
        recipient: "clinic:mysos".into(),
        purpose: "online-consultation".into(),
        categories: vec!["checkup.body".into()],
        data_from: None,
        data_until: None,
        valid_from: now,
        valid_until: Some(now + chrono::Duration::hours(24)),
        aliases: Vec::new(),
        guardian: None,
    };
    let statement = ConsentStatement::sign(
        &pki.pem("source-city-a"),
        &pki.key("source-city-a"),
        terms,
        now,
    )
    .unwrap();
    let grant = GrantBody {
        subject: "st1_abcdefghijklmnopqrstuvwxyz234567".into(),
        recipient: "clinic:mysos".into(),
        purpose: "online-consultation".into(),
        categories: vec!["checkup.body".into()],
        data_period: DataPeriod {
            from: Some(chrono::NaiveDate::from_ymd_opt(2025, 4, 1).unwrap()),
            until: Some(chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap()),
        },
        valid_from: Some(now),
        valid_until: Some(now + chrono::Duration::hours(24)),
        method: Method::Counter,
        evidence: Some("form-0001".into()),
        granted_by: "staff-0042".into(),
        statement: Some(statement),
        guardian: None,
    };
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let keys = Keys {
        grant_key: Some(key.into()),
        enrollment_key: Some(key.into()),
        statement: Some(
            KeyStatement::sign(
                &pki.pem("source-city-a"),
                &pki.key("source-city-a"),
                Some(key),
                Some(key),
                now,
            )
            .unwrap(),
        ),
    };
    let list = RevocationList::sign(
        &pki.pem("phr-asmile"),
        &pki.key("phr-asmile"),
        vec!["a".repeat(64)],
        now,
    )
    .unwrap();
    let submit = SubmitBody {
        source: "source:city-a".into(),
        user_ref: "u-1".into(),
        sealed: "c2VhbGVk".into(),
    };
    let upload = GrantUpload {
        record_id: "rec1_abcdefghijklmnopqrstuvwxyz234567".into(),
        recipient: "clinic:mysos".into(),
        grant: "Z3JhbnQ=".into(),
        sealed: "c2VhbGVk".into(),
    };
    let sent = [
        (
            "/v1/consents",
            "post",
            serde_json::to_value(&grant).unwrap(),
        ),
        (
            "/v1/participants/{kind}/{id}/keys",
            "put",
            serde_json::to_value(&keys).unwrap(),
        ),
        (
            "/v1/participants/{kind}/{id}/revocations",
            "put",
            serde_json::to_value(&list).unwrap(),
        ),
        (
            "/v1/enrollments",
            "post",
            serde_json::to_value(&submit).unwrap(),
        ),
        (
            "/v1/source/key-grants",
            "post",
            json!({ "grants": [serde_json::to_value(&upload).unwrap()] }),
        ),
        (
            "/v1/evaluation/reports",
            "post",
            serde_json::to_value(renkei_protocol::evaluation::DeliverBody {
                recipient: "analyst:tsukuba".into(),
                purpose: renkei_protocol::evaluation::PURPOSE.into(),
                sealed: "c2VhbGVk".into(),
            })
            .unwrap(),
        ),
    ];
    for (path, method, body) in sent {
        let schema = body_schema(&doc, path, method);
        assert!(
            !schema.is_null(),
            "{method} {path}: no request body in openapi.json"
        );
        check(&doc, schema, &body, &format!("{method} {path}"));
    }
}
