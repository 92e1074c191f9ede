//! Subject links after a token key rotation at a source (`POST /v1/subjects/links`),
//! on SQLite and PostgreSQL: records, counter consents and enrollment answers under
//! the new token join the resident's history with the same `rp1_` pseudonyms; a
//! source cannot link another source's residents or split a history; bad batches
//! are a 400 naming the pair.

use axum::http::StatusCode;
use chrono::NaiveDate;
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::token::{SubjectToken, recipient_pseudonym};
use serde_json::{Value, json};

use crate::harness::{Doc, OTHER_SUBJECT, SUBJECT, TestHub, both, d, seal_as, t0};

/// The resident's token under the agent's token key v1 (the canonical one).
const T1: &str = SUBJECT;
/// The same resident under v2.
const T2: &str = "st1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// The same resident under v3.
const T3: &str = "st1_cccccccccccccccccccccccccccccccc";

fn tok(c: char) -> String {
    format!("st1_{}", c.to_string().repeat(32))
}

async fn link(h: &TestHub, who: &str, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
    let links: Vec<Value> = pairs
        .iter()
        .map(|(old, new)| json!({ "old": old, "new": new }))
        .collect();
    h.call(
        Some(who),
        "POST",
        "/v1/subjects/links",
        Some(json!({ "links": links })),
    )
    .await
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A `checkup.lipids` document.
fn lipids(id: &str, date: NaiveDate) -> Doc<'_> {
    Doc {
        id,
        category: "checkup.lipids",
        date,
    }
}

async fn links_of(h: &TestHub) -> Vec<(String, String, String)> {
    use sqlx::Row;
    let mut tx = h.hub.db.begin().await.unwrap();
    let rows = sqlx::query(
        "SELECT new_token, canonical_token, source FROM hub_subject_links ORDER BY new_token",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get("new_token").unwrap(),
                r.try_get("canonical_token").unwrap(),
                r.try_get("source").unwrap(),
            )
        })
        .collect()
}

both!(
    rotation_keeps_consents_enrollments_and_pseudonyms,
    |h: TestHub| async move {
        let ps = h.register_all().await;
        let (asmile, other, clinic) = (&ps[1], &ps[2], &ps[3]);
        // Before the rotation: records under v1, an app enrollment with its consent, and
        // a counter consent for the clinic.
        let first = h.sealed(
            "doc-1",
            T1,
            "checkup.lipids",
            d(2026, 4, 1),
            b"{\"ldl\":130}",
        );
        assert_eq!(h.upload(&[&first]).await.0, StatusCode::OK);
        let pseudonym = h.enroll("phr:asmile", T1).await;
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                "/v1/consents",
                Some(json!({
                    "subject": pseudonym, "recipient": "phr:asmile", "purpose": "phr-display",
                    "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"
                })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(json!({
                    "subject": T1, "recipient": "clinic:mysos", "purpose": "online-consultation",
                    "categories": ["checkup.lipids"], "method": "counter", "granted_by": "staff-1",
                    "valid_until": (t0() + chrono::Duration::hours(48)).to_rfc3339()
                })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(h.answer_grants().await, 2);
        let clinic_pseudonym = h.pull(clinic).await[0].0.clone();

        // Transition (v2 made, v1 still tokenizes): records under v1, pairs uploaded.
        let during = h.sealed(
            "doc-2",
            T1,
            "checkup.lipids",
            d(2026, 5, 1),
            b"{\"ldl\":120}",
        );
        assert_eq!(h.upload(&[&during]).await.0, StatusCode::OK);
        let (st, v) = link(&h, "source:city-a", &[(T1, T2)]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            (v["linked"].as_u64(), v["duplicates"].as_u64()),
            (Some(1), Some(0))
        );
        let (st, v) = link(&h, "source:city-a", &[(T1, T2)]).await;
        assert_eq!(
            (st, v["duplicates"].as_u64()),
            (StatusCode::OK, Some(1)),
            "{v}"
        );

        // After activation: records under v2 join the resident's consents.
        let after = h.sealed(
            "doc-3",
            T2,
            "checkup.lipids",
            d(2026, 6, 1),
            b"{\"ldl\":110}",
        );
        let (st, v) = h.upload(&[&after]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["grant_requests"], 2, "both consents cover it: {v}");
        assert_eq!(
            h.answer_grants().await,
            4,
            "the transition's record and this one"
        );
        let got = h.pull(asmile).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|(p, _, _)| *p == pseudonym), "one pseudonym");
        assert!(got.iter().any(|(_, _, plain)| plain == b"{\"ldl\":110}"));
        let got = h.pull(clinic).await;
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|(p, _, _)| *p == clinic_pseudonym));

        // A counter consent and an enrollment answer naming v2 land on the history too.
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(json!({
                    "subject": T2, "recipient": "phr:other", "purpose": "phr-display",
                    "categories": ["checkup.lipids"], "method": "counter", "granted_by": "staff-2"
                })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["consent"]["subject"], T1, "{v}");
        // (A grant queues requests for every covering consent of those records, the
        // other recipients' included; only phr:other's three are new.)
        assert!(v["grant_requests"].as_u64() >= Some(3), "{v}");
        let enrolled = h.enroll("phr:other", T2).await;
        let canonical = SubjectToken::parse(T1).unwrap();
        assert_eq!(
            enrolled,
            recipient_pseudonym(&h.hub.pseudonym_key, "phr:other", &canonical).to_string()
        );
        assert!(h.answer_grants().await >= 3);
        let got = h.pull(other).await;
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|(p, _, _)| *p == enrolled));

        // A second rotation: v3 links through v2 to the same history, also when the
        // later pair arrives first.
        let (st, v) = link(&h, "source:city-a", &[(T3, &tok('d'))]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = link(&h, "source:city-a", &[(T2, T3)]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let links = links_of(&h).await;
        for new in [T2, T3, tok('d').as_str()] {
            assert!(
                links
                    .iter()
                    .any(|(n, c, s)| n == new && c == T1 && s == "source:city-a"),
                "{new} → {T1}: {links:?}"
            );
        }
        let v4 = h.sealed(
            "doc-4",
            &tok('d'),
            "checkup.lipids",
            d(2026, 7, 1),
            b"{\"ldl\":100}",
        );
        let (_, v) = h.upload(&[&v4]).await;
        assert_eq!(v["grant_requests"], 3, "{v}");
        // A pair that would close a loop is refused.
        let (st, v) = link(&h, "source:city-a", &[(T3, T1)]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
    }
);

both!(
    a_source_cannot_link_what_it_does_not_own,
    |h: TestHub| async move {
        h.register_all().await;
        let city_b: renkei_crypto::participant::ParticipantId = "source:city-b".parse().unwrap();
        renkei_hub::registry::add(&h.hub.db, &city_b, "city b", None, None, t0())
            .await
            .unwrap();
        let b_key = RecordKey::from_bytes([2u8; 32], KeyVersion::V1);
        // city-a's resident (T1, with a consent) and city-b's resident (OTHER_SUBJECT).
        let a = h.sealed("doc-1", T1, "checkup.lipids", d(2026, 4, 1), b"{}");
        assert_eq!(h.upload(&[&a]).await.0, StatusCode::OK);
        let (st, _) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(json!({
                    "subject": T1, "recipient": "phr:asmile", "purpose": "phr-display",
                    "categories": ["checkup.lipids"], "method": "counter", "granted_by": "staff-1"
                })),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let b = seal_as(
            "source:city-b",
            &b_key,
            &lipids("b-1", d(2026, 4, 1)),
            OTHER_SUBJECT,
            b"{\"ldl\":1}",
        );
        assert_eq!(
            h.upload_as("source:city-b", &b, OTHER_SUBJECT).await.0,
            StatusCode::OK
        );

        // city-b cannot make its new token resolve into city-a's resident ...
        let (st, v) = link(&h, "source:city-b", &[(T1, &tok('q'))]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(
            message(&v).contains("links[0]: old token") && message(&v).contains("another source"),
            "{v}"
        );
        // ... nor redirect city-a's resident (a token with a history) into its own ...
        let (st, v) = link(&h, "source:city-b", &[(OTHER_SUBJECT, T1)]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(message(&v).contains("belongs to another source"), "{v}");
        // ... and city-a cannot either (merging two histories is never done).
        let (st, v) = link(&h, "source:city-a", &[(&tok('e'), T1)]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        // A new token that only has a consent or a recipient link is a history too.
        let (st, _) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(json!({
                    "subject": tok('f'), "recipient": "phr:asmile", "purpose": "phr-display",
                    "categories": ["checkup.lipids"], "method": "counter", "granted_by": "staff-1"
                })),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (st, v) = link(&h, "source:city-a", &[(T1, &tok('f'))]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(message(&v).contains("has consents already"), "{v}");
        // A city-a resident known only by a counter consent (no records yet) is city-a's
        // too: city-b cannot link its token to a new one of its own.
        let (st, v) = link(&h, "source:city-b", &[(&tok('f'), &tok('j'))]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(
            message(&v).contains("old token") && message(&v).contains("belongs to another source"),
            "{v}"
        );

        // city-a links its own; city-b cannot take that new token, and city-b naming
        // it is not redirected (a link resolves only its source's names).
        let (st, v) = link(&h, "source:city-a", &[(T1, T2)]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = link(&h, "source:city-b", &[(OTHER_SUBJECT, T2)]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(
            message(&v).contains("already linked to another subject"),
            "{v}"
        );
        // T2 is city-a's token now: city-b naming it is refused outright
        // (docs/authorization.md), not stored beside city-a's resident.
        let b2 = seal_as(
            "source:city-b",
            &b_key,
            &lipids("b-2", d(2026, 5, 1)),
            T2,
            b"{\"ldl\":1}",
        );
        let (st, v) = h.upload_as("source:city-b", &b2, T2).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "subject_not_owned");
        // city-b's own old token cannot be linked by city-a.
        let (st, v) = link(&h, "source:city-a", &[(OTHER_SUBJECT, &tok('g'))]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");

        // All or nothing: a refused pair leaves the good one in the batch unlinked.
        let (st, v) = link(
            &h,
            "source:city-a",
            &[(&tok('h'), &tok('i')), (T1, &tok('f'))],
        )
        .await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(message(&v).starts_with("links[1]:"), "{v}");
        assert!(!links_of(&h).await.iter().any(|(n, _, _)| *n == tok('i')));
        // Refusals are audited as denials.
        use sqlx::Row;
        let mut tx = h.hub.db.begin().await.unwrap();
        let denied: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM hub_audit WHERE action = 'subject.link' AND decision = 'deny'",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(denied, 8, "one per refused request");
        let report =
            renkei_hub::audit::verify(&h.hub.db, &[h.hub.signing_key.verifying_key()], None)
                .await
                .unwrap();
        assert!(report.is_ok(), "{report:?}");
    }
);

both!(
    bad_batches_are_400_naming_the_pair,
    |h: TestHub| async move {
        h.register_all().await;
        let cases: Vec<(Value, &str)> = vec![
            (json!({"links": []}), "at least one pair"),
            (
                json!({"links": [{"old": T1, "new": T2}, {"old": "st1_short", "new": T3}]}),
                "links[1].old `st1_short`",
            ),
            (
                json!({"links": [{"old": T1, "new": T1}]}),
                "links[0]: old and new are the same token",
            ),
            (
                json!({"links": [{"old": T1, "new": T2}, {"old": T3, "new": T2}]}),
                "links[1]: new token",
            ),
            (json!({"links": [{"old": T1}]}), "request body"),
            (
                json!({"links": [{"old": T1, "new": T2, "extra": 1}]}),
                "request body",
            ),
        ];
        for (body, want) in cases {
            let (st, v) = h
                .call(
                    Some("source:city-a"),
                    "POST",
                    "/v1/subjects/links",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
            assert!(message(&v).contains(want), "{body}: {v}");
        }
        let many = vec![json!({"old": T1, "new": T2}); 1001];
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/subjects/links",
                Some(json!({"links": many})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            message(&v).contains("1001 pairs exceed the limit of 1000"),
            "{v}"
        );
        for who in [
            "phr:asmile",
            "clinic:mysos",
            "analyst:hachioji",
            "municipality:city-a",
        ] {
            let (st, v) = link(&h, who, &[(T1, T2)]).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{who}: {v}");
        }
        let (st, _) = h
            .call(
                None,
                "POST",
                "/v1/subjects/links",
                Some(json!({"links": [{"old": T1, "new": T2}]})),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert!(links_of(&h).await.is_empty());
    }
);

/// Every route the router serves is in the OpenAPI document, and the reverse.
#[test]
fn openapi_lists_every_route() {
    let doc: Value = serde_json::from_str(renkei_hub::api::OPENAPI).unwrap();
    let mut documented: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    documented.sort();
    let source = include_str!("../../src/api/mod.rs");
    let mut routed: Vec<String> = source
        .split(".route(")
        .skip(1)
        .filter_map(|s| s.trim_start().strip_prefix('"'))
        .filter_map(|s| s.split('"').next())
        // A catch-all `{*rest}` is the path parameter `{rest}` in OpenAPI.
        .map(|s| s.replace("{*", "{"))
        .collect();
    routed.sort();
    assert_eq!(routed, documented);
    assert!(routed.iter().any(|r| r == "/v1/subjects/links"));
}
