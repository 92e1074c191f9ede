//! The broker's behaviour through the router, on SQLite and PostgreSQL.

use axum::http::StatusCode;
use chrono::Duration;
use serde_json::json;

use crate::harness::{Backend, OTHER_SUBJECT, SUBJECT, TestHub, both, d, t0};

both!(
    upload_is_idempotent_and_conflicts_are_409,
    |h: TestHub| async move {
        h.register_all().await;
        let a = h.sealed(
            "doc-1",
            SUBJECT,
            "checkup.lipids",
            d(2026, 5, 1),
            b"{\"a\":1}",
        );
        let (st, v) = h.upload(&[&a]).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["accepted"], 1);
        let (st, v) = h.upload(&[&a]).await;
        assert_eq!((st, v["duplicates"].as_u64()), (StatusCode::OK, Some(1)));
        // Same id (same document and category), different content: a conflict, nothing stored.
        let b = h.sealed(
            "doc-1",
            SUBJECT,
            "checkup.lipids",
            d(2026, 5, 1),
            b"{\"a\":2}",
        );
        let (st, v) = h.upload(&[&b]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "conflict");
        // Garbage is a 400 naming the record.
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/records",
                Some(json!({ "records": [{"sealed": "AAAA", "subject": SUBJECT}] })),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("records[0]"),
            "{v}"
        );
    }
);

both!(
    consent_enables_pull_and_revocation_stops_it,
    |h: TestHub| async move {
        let ps = h.register_all().await;
        let (asmile, other, clinic) = (&ps[1], &ps[2], &ps[3]);
        let lipids = h.sealed(
            "doc-1",
            SUBJECT,
            "checkup.lipids",
            d(2026, 5, 1),
            b"{\"ldl\":120}",
        );
        let body = h.sealed(
            "doc-1",
            SUBJECT,
            "checkup.body",
            d(2026, 5, 1),
            b"{\"bmi\":22}",
        );
        let someone_else = h.sealed(
            "doc-2",
            OTHER_SUBJECT,
            "checkup.lipids",
            d(2026, 5, 1),
            b"{\"ldl\":99}",
        );
        assert_eq!(
            h.upload(&[&lipids, &body, &someone_else]).await.0,
            StatusCode::OK
        );

        let pseudonym = h.enroll("phr:asmile", SUBJECT).await;
        assert!(pseudonym.starts_with("rp1_"));
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
        let consent_id = v["consent"]["id"].as_str().unwrap().to_owned();
        assert!(v["receipt"]["revocation_code"].as_str().unwrap().len() >= 32);
        assert!(
            v["receipt"]["signature"].is_string(),
            "the hub signs the receipt"
        );
        assert_eq!(
            h.answer_grants().await,
            1,
            "one record of one category is covered"
        );

        let got = h.pull(asmile).await;
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0],
            (
                pseudonym.clone(),
                "checkup.lipids".to_owned(),
                b"{\"ldl\":120}".to_vec()
            )
        );
        // Nobody else sees it, by feed or by id.
        assert!(h.pull(other).await.is_empty());
        assert!(h.pull(clinic).await.is_empty());
        let rid = lipids.0.header().record_id.as_str().to_owned();
        let (st, _) = h
            .call(
                Some("clinic:mysos"),
                "GET",
                &format!("/v1/records/{}", h.alias("clinic:mysos", &rid)),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, _) = h
            .call(
                Some("phr:asmile"),
                "GET",
                &format!("/v1/records/{}", h.alias("phr:asmile", &rid)),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK);

        // A record that arrives later for a consented subject is queued at once.
        let later = h.sealed(
            "doc-9",
            SUBJECT,
            "checkup.lipids",
            d(2026, 5, 20),
            b"{\"ldl\":110}",
        );
        let (_, v) = h.upload(&[&later]).await;
        assert_eq!(v["grant_requests"], 1, "{v}");
        assert_eq!(h.answer_grants().await, 1);

        // Another app cannot revoke it; the app that linked the resident can.
        let (st, _) = h
            .call(
                Some("phr:other"),
                "POST",
                &format!("/v1/consents/{consent_id}/revoke"),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                &format!("/v1/consents/{consent_id}/revoke"),
                Some(json!({"reason": "changed my mind"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "revoked");
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "GET",
                &format!("/v1/records/{}", h.alias("phr:asmile", &rid)),
                None,
            )
            .await;
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
            "{st} {v}"
        );
        assert!(
            h.pull(asmile).await.is_empty(),
            "nothing is served after the revoke returned"
        );

        // The revocation event is redelivered until acknowledged.
        for _ in 0..2 {
            let (st, v) = h.call(Some("phr:asmile"), "GET", "/v1/events", None).await;
            assert_eq!(st, StatusCode::OK);
            assert_eq!(v["events"][0]["kind"], "consent.revoked");
            assert_eq!(v["events"][0]["consent_id"], consent_id.as_str());
        }
        let (_, v) = h.call(Some("phr:asmile"), "GET", "/v1/events", None).await;
        let eid = v["events"][0]["id"].as_i64().unwrap();
        let (st, _) = h
            .call(
                Some("phr:other"),
                "POST",
                &format!("/v1/events/{eid}/ack"),
                Some(json!({"deleted": true})),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "another recipient cannot acknowledge it"
        );
        let (st, _) = h
            .call(
                Some("phr:asmile"),
                "POST",
                &format!("/v1/events/{eid}/ack"),
                Some(json!({"deleted": true})),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (_, v) = h.call(Some("phr:asmile"), "GET", "/v1/events", None).await;
        assert!(v["events"].as_array().unwrap().is_empty());
    }
);

both!(
    clinic_consent_is_bounded_and_expires_at_its_instant,
    |h: TestHub| async move {
        let ps = h.register_all().await;
        let clinic = &ps[3];
        let rec = h.sealed(
            "doc-1",
            SUBJECT,
            "checkup.glucose",
            d(2026, 5, 1),
            b"{\"hba1c\":5.6}",
        );
        h.upload(&[&rec]).await;
        let grant = |hours: i64| {
            json!({
                "subject": SUBJECT, "recipient": "clinic:mysos", "purpose": "online-consultation",
                "categories": ["checkup.glucose"], "method": "counter", "granted_by": "staff-17",
                "valid_until": (t0() + Duration::hours(hours)).to_rfc3339()
            })
        };
        let mut too_long = grant(72);
        too_long["valid_until"] =
            json!((t0() + Duration::hours(72) + Duration::seconds(1)).to_rfc3339());
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(too_long),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::FORBIDDEN,
            "72 h + 1 s exceeds the policy: {v}"
        );
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(grant(24)),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(h.answer_grants().await, 1);
        h.set_now(t0() + Duration::hours(24) - Duration::microseconds(1));
        assert_eq!(h.pull(clinic).await.len(), 1);
        h.set_now(t0() + Duration::hours(24));
        assert!(
            h.pull(clinic).await.is_empty(),
            "at the exact expiry instant nothing is released"
        );
        let (_, v) = h
            .call(Some("clinic:mysos"), "GET", "/v1/events", None)
            .await;
        assert_eq!(v["events"][0]["kind"], "consent.expired", "{v}");
    }
);

both!(
    wrong_kinds_suspension_and_identity,
    |h: TestHub| async move {
        h.register_all().await;
        let cases = [
            (
                "analyst:hachioji",
                "POST",
                "/v1/records",
                Some(json!({"records": []})),
            ),
            (
                "analyst:hachioji",
                "GET",
                "/v1/source/key-grant-requests",
                None,
            ),
            ("phr:asmile", "GET", "/v1/source/enrollments", None),
            ("source:city-a", "GET", "/v1/feed", None),
            ("source:city-a", "GET", "/v1/events", None),
            (
                "clinic:mysos",
                "POST",
                "/v1/enrollments",
                Some(json!({"source": "source:city-a", "user_ref": "u", "sealed": "AAAA"})),
            ),
            (
                "analyst:hachioji",
                "POST",
                "/v1/consents",
                Some(
                    json!({"subject": SUBJECT, "recipient": "analyst:hachioji", "purpose": "care-prevention-evaluation", "categories": ["kdb.care"], "method": "web", "granted_by": "x"}),
                ),
            ),
            (
                "municipality:city-a",
                "POST",
                "/v1/source/key-grants",
                Some(json!({"grants": []})),
            ),
        ];
        for (who, method, path, body) in cases {
            let (st, v) = h.call(Some(who), method, path, body).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{who} {method} {path}: {v}");
        }
        let (st, v) = h.call(None, "GET", "/v1/feed", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
        let (st, _) = h
            .call(Some("phr:unregistered"), "GET", "/v1/feed", None)
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        // Suspension is effective on the very next request, and resuming restores access.
        let asmile = "phr:asmile".parse().unwrap();
        assert_eq!(
            h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await.0,
            StatusCode::OK
        );
        renkei_hub::registry::set_status(&h.hub.db, &asmile, true, t0())
            .await
            .unwrap();
        assert_eq!(
            h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await.0,
            StatusCode::FORBIDDEN
        );
        renkei_hub::registry::set_status(&h.hub.db, &asmile, false, t0())
            .await
            .unwrap();
        assert_eq!(
            h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await.0,
            StatusCode::OK
        );
        // SQL metacharacters in parameters are data, not code.
        let (st, _) = h
            .call(
                Some("phr:asmile"),
                "GET",
                "/v1/records/x'%20OR%20'1'='1",
                None,
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "not a record id");
        // An enrollment of one app is invisible to another.
        let sealed = data_encoding::BASE64.encode(b"sealed-bytes");
        let (_, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                "/v1/enrollments",
                Some(json!({"source": "source:city-a", "user_ref": "u1", "sealed": sealed})),
            )
            .await;
        let id = v["id"].as_str().unwrap();
        assert_eq!(
            h.call(
                Some("phr:other"),
                "GET",
                &format!("/v1/enrollments/{id}"),
                None
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
    }
);

both!(
    analyst_joins_one_person_vendors_cannot,
    |h: TestHub| async move {
        let ps = h.register_all().await;
        let (asmile, other, analyst) = (&ps[1], &ps[2], &ps[4]);
        let a = h.sealed("doc-1", SUBJECT, "checkup.lipids", d(2026, 5, 1), b"1");
        let b = h.sealed("kdb-7", SUBJECT, "kdb.care", d(2026, 4, 1), b"2");
        h.upload(&[&a, &b]).await;
        for app in ["phr:asmile", "phr:other"] {
            let p = h.enroll(app, SUBJECT).await;
            let (st, v) = h.call(Some(app), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": app, "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}))).await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        let (st, v) = h.call(Some("source:city-a"), "POST", "/v1/consents", Some(json!({"subject": SUBJECT, "recipient": "analyst:hachioji", "purpose": "care-prevention-evaluation", "categories": ["checkup.lipids", "kdb.care"], "method": "counter", "granted_by": "staff-1", "valid_until": (t0() + Duration::days(300)).to_rfc3339()}))).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        h.answer_grants().await;
        let an = h.pull(analyst).await;
        assert_eq!(an.len(), 2);
        assert_eq!(
            an[0].0, an[1].0,
            "the analyst sees both records under one pseudonym"
        );
        let (pa, po) = (h.pull(asmile).await, h.pull(other).await);
        assert_ne!(pa[0].0, po[0].0, "two vendors see different pseudonyms");
        assert_ne!(pa[0].0, an[0].0);
    }
);

/// Every participant endpoint: (method, path, body, the participants whose kind it serves).
fn endpoints() -> Vec<(
    &'static str,
    &'static str,
    Option<serde_json::Value>,
    Vec<&'static str>,
)> {
    let recipients = [
        "phr:asmile",
        "clinic:mysos",
        "analyst:hachioji",
        "municipality:city-a",
    ];
    vec![
        (
            "POST",
            "/v1/records",
            Some(json!({"records": []})),
            vec!["source:city-a", "phr:asmile", "clinic:mysos"],
        ),
        ("GET", "/v1/feed", None, recipients.to_vec()),
        (
            "GET",
            "/v1/records/rec1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            None,
            recipients.to_vec(),
        ),
        ("GET", "/v1/events", None, recipients.to_vec()),
        (
            "POST",
            "/v1/events/1/ack",
            Some(json!({"deleted": true})),
            recipients.to_vec(),
        ),
        (
            "POST",
            "/v1/consents",
            Some(
                json!({"subject": SUBJECT, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.body"], "method": "app", "granted_by": "r"}),
            ),
            vec!["phr:asmile", "source:city-a"],
        ),
        (
            "POST",
            "/v1/consents/00000000-0000-0000-0000-000000000000/revoke",
            Some(json!({})),
            vec![
                "phr:asmile",
                "source:city-a",
                "clinic:mysos",
                "analyst:hachioji",
                "municipality:city-a",
            ],
        ),
        (
            "POST",
            "/v1/enrollments",
            Some(json!({"source": "source:city-a", "user_ref": "u", "sealed": "AAAA"})),
            vec!["phr:asmile"],
        ),
        (
            "GET",
            "/v1/enrollments/00000000-0000-4000-8000-000000000000",
            None,
            vec!["phr:asmile"],
        ),
        (
            "GET",
            "/v1/source/key-grant-requests",
            None,
            vec!["source:city-a", "phr:asmile", "clinic:mysos"],
        ),
        (
            "POST",
            "/v1/source/key-grants",
            Some(json!({"grants": []})),
            vec!["source:city-a", "phr:asmile", "clinic:mysos"],
        ),
        ("GET", "/v1/source/enrollments", None, vec!["source:city-a"]),
        (
            "POST",
            "/v1/source/enrollments/00000000-0000-4000-8000-000000000000/result",
            Some(json!({"outcome": "rejected", "reason": "r"})),
            vec!["source:city-a"],
        ),
        (
            "GET",
            "/v1/participants/source/city-a/keys",
            None,
            vec![
                "source:city-a",
                "phr:asmile",
                "clinic:mysos",
                "analyst:hachioji",
                "municipality:city-a",
            ],
        ),
        (
            "GET",
            "/v1/audit/checkpoint",
            None,
            vec![
                "source:city-a",
                "phr:asmile",
                "clinic:mysos",
                "analyst:hachioji",
                "municipality:city-a",
            ],
        ),
    ]
}

/// Every endpoint refuses a suspended participant of a kind it serves, whatever it asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_participant_is_refused_by_every_endpoint() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    for p in h.register_all().await {
        renkei_hub::registry::set_status(&h.hub.db, &p.id, true, t0())
            .await
            .unwrap();
    }
    for (method, path, body, allowed) in endpoints() {
        for who in allowed {
            let (st, v) = h.call(Some(who), method, path, body.clone()).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{who} {method} {path}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("suspended")),
                "{who} {method} {path}: {v}"
            );
        }
    }
}

/// Every endpoint, called by every participant kind it does not serve: 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_every_wrong_kind() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    renkei_hub::registry::add(
        &h.hub.db,
        &"admin:ops".parse().unwrap(),
        "ops",
        None,
        None,
        t0(),
    )
    .await
    .unwrap();
    let all = [
        "source:city-a",
        "phr:asmile",
        "clinic:mysos",
        "analyst:hachioji",
        "municipality:city-a",
        "admin:ops",
    ];
    let endpoints = endpoints();
    for (method, path, body, allowed) in &endpoints {
        for who in all {
            let (st, v) = h.call(Some(who), method, path, body.clone()).await;
            if allowed.contains(&who) {
                // An allowed kind may still be refused for this resident (403 with
                // another code, docs/authorization.md), never for its kind.
                assert!(
                    st != StatusCode::FORBIDDEN || v["error"]["code"] != "forbidden",
                    "{who} {method} {path} is allowed: {v}"
                );
            } else {
                assert_eq!(st, StatusCode::FORBIDDEN, "{who} {method} {path}: {v}");
                assert_eq!(v["error"]["code"], "forbidden");
            }
        }
        let (st, _) = h.call(None, method, path, body.clone()).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without identity"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_and_bad_json_is_400() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let big = "A".repeat(2 << 20);
    let (st, v) = h
        .call(
            Some("source:city-a"),
            "POST",
            "/v1/records",
            Some(json!({"records": [{"sealed": big, "subject": SUBJECT}]})),
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    let (st, v) = h
        .call(
            Some("source:city-a"),
            "POST",
            "/v1/records",
            Some(json!({"records": "nope"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = h
        .call(Some("phr:asmile"), "GET", "/v1/feed?cursor=abc", None)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request")),
        "{v}"
    );
}

/// SQL metacharacters in every parameter are data: no 5xx, nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_strings_in_every_parameter_are_inert() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let evil = [
        "' OR '1'='1",
        "'; DROP TABLE hub_records; --",
        "\" OR 1=1 --",
        "%27%20OR%201%3D1",
        "rec1_' UNION SELECT sealed FROM hub_records --",
    ];
    for e in evil {
        let enc: String = e.bytes().map(|b| format!("%{b:02X}")).collect();
        let calls: Vec<(&str, &str, String, Option<serde_json::Value>)> = vec![
            ("phr:asmile", "GET", format!("/v1/records/{enc}"), None),
            ("phr:asmile", "GET", format!("/v1/enrollments/{enc}"), None),
            ("phr:asmile", "GET", format!("/v1/feed?cursor={enc}"), None),
            (
                "phr:asmile",
                "POST",
                format!("/v1/consents/{enc}/revoke"),
                Some(json!({"reason": e})),
            ),
            (
                "phr:asmile",
                "POST",
                "/v1/consents".into(),
                Some(
                    json!({"subject": e, "recipient": e, "purpose": e, "categories": [e], "method": "app", "granted_by": e}),
                ),
            ),
            (
                "phr:asmile",
                "POST",
                "/v1/enrollments".into(),
                Some(json!({"source": e, "user_ref": e, "sealed": "AAAA"})),
            ),
            (
                "source:city-a",
                "POST",
                format!("/v1/source/enrollments/{enc}/result"),
                Some(json!({"outcome": "rejected", "reason": e})),
            ),
            (
                "source:city-a",
                "POST",
                "/v1/source/key-grants".into(),
                Some(
                    json!({"grants": [{"record_id": e, "recipient": e, "grant": "AAAA", "sealed": "AAAA"}]}),
                ),
            ),
            (
                "source:city-a",
                "POST",
                "/v1/records".into(),
                Some(json!({"records": [{"sealed": "AAAA", "subject": e}]})),
            ),
            (
                "phr:asmile",
                "GET",
                format!("/v1/participants/source/{enc}/keys"),
                None,
            ),
        ];
        for (who, method, path, body) in calls {
            let (st, v) = h.call(Some(who), method, &path, body).await;
            assert!(st.is_client_error(), "{who} {method} {path}: {st} {v}");
        }
    }
    let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hub_participants")
        .fetch_one(h.hub.db.pool())
        .await
        .unwrap();
    assert_eq!(tables, 6, "the registry is intact");
    let broken = renkei_hub::audit::verify(&h.hub.db, &[h.hub.signing_key.verifying_key()], None)
        .await
        .unwrap();
    assert!(broken.is_ok(), "{broken:?}");
}

both!(
    a_copy_id_used_twice_is_reported_not_counted,
    |h: TestHub| async move {
        h.register_all().await;
        let first = h.sealed(
            "d-1",
            SUBJECT,
            "checkup.lipids",
            d(2026, 6, 1),
            b"{\"ldl\":120}",
        );
        let second = h.sealed(
            "d-2",
            SUBJECT,
            "checkup.lipids",
            d(2026, 6, 1),
            b"{\"ldl\":99}",
        );
        assert_eq!(h.upload(&[&first, &second]).await.0, StatusCode::OK);
        let pseudonym = h.enroll("phr:asmile", SUBJECT).await;
        h.app_consent(
            &pseudonym,
            "phr:asmile",
            "phr-display",
            &["checkup.lipids"],
            json!({}),
        )
        .await;
        let mut grants = h.pending_grants().await;
        assert_eq!(grants.len(), 2);
        // The second record's grant carries the first one's copy: same copy id.
        grants[1].sealed = grants[0].sealed.clone();
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/source/key-grants",
                Some(json!({ "grants": grants })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["stored"], 1, "{v}");
        let dropped = v["dropped"].as_array().unwrap();
        assert_eq!(dropped.len(), 1, "{v}");
        assert!(
            dropped[0].as_str().unwrap().contains("already holds"),
            "{v}"
        );
    }
);

// Requests the source does not answer (it refused them) wait before they are served
// again, longer each time: they cannot hold the head of the queue and keep the requests
// behind them from ever being answered.
both!(
    unanswered_requests_do_not_hold_the_queue,
    |h: TestHub| async move {
        h.register_all().await;
        for (doc, day) in [("doc-1", 1), ("doc-2", 2), ("doc-3", 3)] {
            let rec = h.sealed(doc, SUBJECT, "checkup.glucose", d(2026, 5, day), b"{}");
            assert_eq!(h.upload(&[&rec]).await.0, StatusCode::OK);
        }
        let consent = json!({
            "subject": SUBJECT, "recipient": "clinic:mysos", "purpose": "online-consultation",
            "categories": ["checkup.glucose"], "method": "counter", "granted_by": "staff-17",
            "valid_until": (t0() + Duration::hours(24)).to_rfc3339()
        });
        let (st, v) = h
            .call(Some("source:city-a"), "POST", "/v1/consents", Some(consent))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let page = |limit: u32| {
            let h = &h;
            async move {
                let path = format!("/v1/source/key-grant-requests?limit={limit}");
                let (st, v) = h.call(Some("source:city-a"), "GET", &path, None).await;
                assert_eq!(st, StatusCode::OK, "{v}");
                let mut ids: Vec<String> = v["requests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["record_id"].as_str().unwrap().to_owned())
                    .collect();
                ids.sort();
                ids
            }
        };
        // The source refuses the first two (it does not answer): the third comes next.
        let first = page(2).await;
        assert_eq!(first.len(), 2);
        let second = page(2).await;
        assert_eq!(second.len(), 1, "the refused requests came back first");
        assert!(!first.contains(&second[0]));
        assert!(page(10).await.is_empty());
        // Due again after 30 s, then after 60 s more.
        h.set_now(t0() + Duration::seconds(30));
        assert_eq!(page(10).await.len(), 3);
        h.set_now(t0() + Duration::seconds(89));
        assert!(page(10).await.is_empty());
        h.set_now(t0() + Duration::seconds(90));
        assert_eq!(page(10).await.len(), 3);
        // Answered, they are gone.
        h.set_now(t0() + Duration::seconds(300));
        assert_eq!(h.answer_grants().await, 3);
        h.set_now(t0() + Duration::seconds(3600 * 3));
        assert!(page(10).await.is_empty());
    }
);
