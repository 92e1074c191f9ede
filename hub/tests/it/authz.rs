//! `docs/authorization.md`, row by row, on both databases: each participant acts only
//! within its own relationship to the resident. Each test names the attack it stops.

use axum::http::StatusCode;
use renkei_consent::ConsentStore;
use renkei_crypto::envelope::SealedRecord;
use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::participant::ParticipantId;
use serde_json::{Value, json};
use sqlx::Row;

use crate::harness::{Doc, OTHER_SUBJECT, SUBJECT, TestHub, both, d, seal_as};

/// Registers `source:city-b`, a second municipality with its own record key.
async fn city_b(h: &TestHub) -> RecordKey {
    let pid: ParticipantId = "source:city-b".parse().unwrap();
    let key = RecipientSecretKey::generate(KeyVersion::V1);
    renkei_hub::registry::add(
        &h.hub.db,
        &pid,
        "City B",
        Some(&key.public_key().to_base64()),
        Some(&key.public_key().to_base64()),
        crate::harness::t0(),
    )
    .await
    .unwrap();
    RecordKey::from_bytes([2u8; 32], KeyVersion::V1)
}

/// A `checkup.body` document of 2026-05-01.
fn body_doc(id: &str) -> Doc<'_> {
    Doc {
        id,
        category: "checkup.body",
        date: d(2026, 5, 1),
    }
}

fn grant_body(subject: &str, recipient: &str, purpose: &str, method: &str) -> Value {
    let mut b = json!({
        "subject": subject, "recipient": recipient, "purpose": purpose,
        "categories": ["checkup.body"], "method": method, "granted_by": "resident"
    });
    if purpose == "online-consultation" {
        // The policy allows at most 72 hours.
        b["valid_until"] = json!((crate::harness::t0() + chrono::Duration::hours(48)).to_rfc3339());
    }
    b
}

/// Audit denials by `actor` with `action`.
async fn denials(h: &TestHub, actor: &str, action: &str) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM hub_audit WHERE actor = $1 AND action = $2 AND decision = 'deny'",
    )
    .bind(actor)
    .bind(action)
    .fetch_one(h.hub.db.pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap()
}

/// City A's resident with one checkup record, linked to Asmile; Asmile's pseudonym.
async fn city_a_resident(h: &TestHub) -> String {
    let r = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.body",
        d(2026, 5, 1),
        b"{\"bmi\":22}",
    );
    let (st, v) = h.upload(&[&r]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    h.enroll("phr:asmile", SUBJECT).await
}

both!(
    no_participant_but_the_owner_receives_the_subject_token,
    |h: TestHub| async move {
        h.register_all().await;
        let p = city_a_resident(&h).await;
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                "/v1/consents",
                Some(grant_body(&p, "clinic:mysos", "online-consultation", "app")),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let text = v.to_string();
        assert!(
            !text.contains("st1_"),
            "the app received a subject token: {text}"
        );
        assert_eq!(
            v["consent"]["subject"],
            p.as_str(),
            "the app's own pseudonym"
        );
        assert_eq!(v["receipt"]["terms"]["subject"], p.as_str());
        let id = v["consent"]["id"].as_str().unwrap().to_owned();
        // The clinic revokes its own consent: the answer names the resident by the
        // clinic's pseudonym, not the app's and not the token.
        let (st, v) = h
            .call(
                Some("clinic:mysos"),
                "POST",
                &format!("/v1/consents/{id}/revoke"),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let subject = v["subject"].as_str().unwrap();
        assert!(subject.starts_with("rp1_") && subject != p, "{v}");
        // The owning source at the counter sees its own token.
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(grant_body(SUBJECT, "phr:asmile", "phr-display", "counter")),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["consent"]["subject"], SUBJECT);
    }
);

both!(
    a_recipient_revokes_only_consents_naming_it,
    |h: TestHub| async move {
        h.register_all().await;
        let p = city_a_resident(&h).await;
        let (_, app) = h
            .call(
                Some("phr:asmile"),
                "POST",
                "/v1/consents",
                Some(grant_body(&p, "phr:asmile", "phr-display", "app")),
            )
            .await;
        let app_consent = app["consent"]["id"].as_str().unwrap().to_owned();
        let (_, clinic) = h
            .call(
                Some("phr:asmile"),
                "POST",
                "/v1/consents",
                Some(grant_body(&p, "clinic:mysos", "online-consultation", "app")),
            )
            .await;
        let clinic_consent = clinic["consent"]["id"].as_str().unwrap().to_owned();
        let before = denials(&h, "clinic:mysos", "consent.revoke").await;
        let (st, v) = h
            .call(
                Some("clinic:mysos"),
                "POST",
                &format!("/v1/consents/{app_consent}/revoke"),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "a clinic revoked the app's consent: {v}"
        );
        assert!(!v.to_string().contains("phr-display"), "no terms leak: {v}");
        assert_eq!(
            denials(&h, "clinic:mysos", "consent.revoke").await,
            before + 1
        );
        // The app's consent is still in force; the clinic's own one it may revoke.
        let c = h.hub.consents.get(&app_consent).await.unwrap().unwrap();
        assert_eq!(c.status.as_str(), "active");
        let (st, _) = h
            .call(
                Some("clinic:mysos"),
                "POST",
                &format!("/v1/consents/{clinic_consent}/revoke"),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
);

both!(
    a_linked_app_revokes_the_residents_consents,
    |h: TestHub| async move {
        h.register_all().await;
        let p = city_a_resident(&h).await;
        let (_, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(grant_body(
                    SUBJECT,
                    "clinic:mysos",
                    "online-consultation",
                    "counter",
                )),
            )
            .await;
        let id = v["consent"]["id"].as_str().unwrap().to_owned();
        // An app the resident did not link may not; the linked one may.
        let (st, _) = h
            .call(
                Some("phr:other"),
                "POST",
                &format!("/v1/consents/{id}/revoke"),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                &format!("/v1/consents/{id}/revoke"),
                Some(json!({"reason": "resident asked in the app"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["subject"], p.as_str());
    }
);

both!(
    a_recipient_app_cannot_grant_for_a_resident_it_did_not_enroll,
    |h: TestHub| async move {
        h.register_all().await;
        city_a_resident(&h).await;
        // phr:other receives under a counter consent, so it knows a pseudonym...
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(grant_body(SUBJECT, "phr:other", "phr-display", "counter")),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        h.answer_grants().await;
        let (_, feed) = h.call(Some("phr:other"), "GET", "/v1/feed", None).await;
        let p_other = feed["items"][0]["pseudonym"].as_str().unwrap().to_owned();
        // ...but acts for no one: no consent for others, no records in their name.
        let (st, v) = h
            .call(
                Some("phr:other"),
                "POST",
                "/v1/consents",
                Some(grant_body(
                    &p_other,
                    "analyst:hachioji",
                    "care-prevention-evaluation",
                    "app",
                )),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "not_acting_for_resident");
        assert!(denials(&h, "phr:other", "consent.grant").await >= 1);
    }
);

both!(
    an_app_publishes_only_for_residents_it_enrolled,
    |h: TestHub| async move {
        h.register_all().await;
        city_a_resident(&h).await;
        let (_, _) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(grant_body(SUBJECT, "phr:other", "phr-display", "counter")),
            )
            .await;
        h.answer_grants().await;
        let (_, feed) = h.call(Some("phr:other"), "GET", "/v1/feed", None).await;
        let p_other = feed["items"][0]["pseudonym"].as_str().unwrap().to_owned();
        let key = RecordKey::from_bytes([3u8; 32], KeyVersion::V1);
        let vitals = Doc {
            id: "vitals-1",
            category: "phr.vitals",
            date: d(2026, 5, 2),
        };
        let r = seal_as("phr:other", &key, &vitals, &p_other, b"{\"weight\":199.9}");
        let (st, v) = h.upload_as("phr:other", &r, &p_other).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "not_acting_for_resident");
        assert!(denials(&h, "phr:other", "ingest").await >= 1);
    }
);

both!(
    a_second_source_cannot_act_on_another_sources_resident,
    |h: TestHub| async move {
        h.register_all().await;
        city_a_resident(&h).await;
        let (_, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(grant_body(
                    SUBJECT,
                    "clinic:mysos",
                    "online-consultation",
                    "counter",
                )),
            )
            .await;
        let consent = v["consent"]["id"].as_str().unwrap().to_owned();
        let b_key = city_b(&h).await;

        // Upload under city A's resident: refused, audited, nothing stored.
        let planted = seal_as(
            "source:city-b",
            &b_key,
            &body_doc("planted"),
            SUBJECT,
            b"{\"weight\":199.9}",
        );
        let (st, v) = h.upload_as("source:city-b", &planted, SUBJECT).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "subject_not_owned");
        assert_eq!(denials(&h, "source:city-b", "ingest").await, 1);
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM hub_records WHERE source = 'source:city-b'")
                .fetch_one(h.hub.db.pool())
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
        assert_eq!(n, 0);

        // A counter consent for city A's resident: refused.
        let (st, v) = h
            .call(
                Some("source:city-b"),
                "POST",
                "/v1/consents",
                Some(grant_body(
                    SUBJECT,
                    "clinic:mysos",
                    "online-consultation",
                    "counter",
                )),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "subject_not_owned");
        assert_eq!(denials(&h, "source:city-b", "consent.grant").await, 1);

        // Revoking city A's resident's consent: not found, still in force.
        let (st, _) = h
            .call(
                Some("source:city-b"),
                "POST",
                &format!("/v1/consents/{consent}/revoke"),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(
            h.hub
                .consents
                .get(&consent)
                .await
                .unwrap()
                .unwrap()
                .status
                .as_str(),
            "active"
        );

        // Linking city A's token as its own old or new token: refused.
        let fresh = "st1_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        for pair in [
            json!({"old": SUBJECT, "new": fresh}),
            json!({"old": fresh, "new": SUBJECT}),
        ] {
            let (st, v) = h
                .call(
                    Some("source:city-b"),
                    "POST",
                    "/v1/subjects/links",
                    Some(json!({"links": [pair]})),
                )
                .await;
            assert_eq!(st, StatusCode::CONFLICT, "{v}");
        }

        // City B's own residents work as before.
        let own = "st1_cccccccccccccccccccccccccccccccc";
        let mine = seal_as(
            "source:city-b",
            &b_key,
            &body_doc("own"),
            own,
            b"{\"bmi\":20}",
        );
        let (st, v) = h.upload_as("source:city-b", &mine, own).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        // And city A can no longer upload under city B's resident.
        let r = h.sealed("doc-9", own, "checkup.body", d(2026, 5, 1), b"{}");
        let (st, v) = h.upload(&[&r]).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    }
);

both!(
    a_second_source_cannot_answer_an_enrollment_for_another_sources_resident,
    |h: TestHub| async move {
        h.register_all().await;
        city_a_resident(&h).await;
        city_b(&h).await;
        let (st, v) = h
            .call(
                Some("phr:other"),
                "POST",
                "/v1/enrollments",
                Some(json!({"source": "source:city-b", "user_ref": "u-2", "sealed": "AAAA"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (st, v) = h
            .call(
                Some("source:city-b"),
                "POST",
                &format!("/v1/source/enrollments/{id}/result"),
                Some(json!({"outcome": "linked", "subject_token": SUBJECT})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "subject_not_owned");
        let (_, v) = h
            .call(
                Some("phr:other"),
                "GET",
                &format!("/v1/enrollments/{id}"),
                None,
            )
            .await;
        assert_eq!(v["status"], "pending", "nothing was linked: {v}");
    }
);

both!(
    identical_consents_are_one_and_consents_are_capped,
    |h: TestHub| async move {
        h.register_all().await;
        let p = city_a_resident(&h).await;
        let body = grant_body(&p, "phr:asmile", "phr-display", "app");
        let (st, first) = h
            .call(
                Some("phr:asmile"),
                "POST",
                "/v1/consents",
                Some(body.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{first}");
        assert!(first["receipt"]["revocation_code"].is_string());
        for _ in 0..5 {
            let (st, again) = h
                .call(
                    Some("phr:asmile"),
                    "POST",
                    "/v1/consents",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{again}");
            assert_eq!(again["consent"]["id"], first["consent"]["id"]);
            assert!(
                again["receipt"].get("revocation_code").is_none(),
                "no second code"
            );
        }
        // Different terms are new consents, up to the cap.
        let mut ids = vec![first["consent"]["id"].clone()];
        for days in 1..4 {
            let mut b = body.clone();
            b["valid_until"] =
                json!((crate::harness::t0() + chrono::Duration::days(days)).to_rfc3339());
            let (st, v) = h
                .call(Some("phr:asmile"), "POST", "/v1/consents", Some(b))
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            ids.push(v["consent"]["id"].clone());
        }
        let mut b = body.clone();
        b["valid_until"] = json!((crate::harness::t0() + chrono::Duration::days(9)).to_rfc3339());
        let (st, v) = h
            .call(Some("phr:asmile"), "POST", "/v1/consents", Some(b))
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM consents")
            .fetch_one(h.hub.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(n, 4, "{ids:?}");
    }
);

both!(
    a_grant_with_too_many_categories_or_long_texts_is_refused_before_its_checks,
    |h: TestHub| async move {
        h.register_all().await;
        let p = city_a_resident(&h).await;
        let body = grant_body(&p, "phr:asmile", "phr-display", "app");
        let refused = |change: &dyn Fn(&mut serde_json::Value), says: &'static str| {
            let mut b = body.clone();
            change(&mut b);
            let h = &h;
            async move {
                let (st, v) = h
                    .call(Some("phr:asmile"), "POST", "/v1/consents", Some(b))
                    .await;
                assert_eq!(st, StatusCode::BAD_REQUEST, "{says}: {v}");
                assert!(v.to_string().contains(says), "{says}: {v}");
                assert!(
                    v.to_string().len() < 600,
                    "echoed: {} bytes",
                    v.to_string().len()
                );
            }
        };
        // 50,000 distinct categories (what a 1 MiB body holds): refused for their number,
        // not checked one by one while a write transaction waits.
        let many: Vec<String> = (0..50_000).map(|n| format!("c{n}")).collect();
        refused(&|b| b["categories"] = json!(many), "more than 64").await;
        let just_over: Vec<String> = (0..65).map(|n| format!("checkup.x{n}")).collect();
        refused(&|b| b["categories"] = json!(just_over), "more than 64").await;
        refused(
            &|b| b["categories"] = json!(["checkup.lipids", "checkup.lipids"]),
            "listed twice",
        )
        .await;
        refused(
            &|b| b["categories"] = json!(["x".repeat(5000)]),
            "1-64 characters",
        )
        .await;
        refused(
            &|b| b["granted_by"] = json!("r".repeat(257)),
            "granted_by is longer",
        )
        .await;
        refused(
            &|b| b["evidence"] = json!("e".repeat(257)),
            "evidence is longer",
        )
        .await;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM consents")
            .fetch_one(h.hub.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(n, 0);
        // At the limits the grant goes on to the policy and is taken.
        let mut b = body.clone();
        b["granted_by"] = json!("r".repeat(256));
        let (st, v) = h
            .call(Some("phr:asmile"), "POST", "/v1/consents", Some(b))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
);

both!(
    a_long_path_is_refused_without_echo_or_audit_growth,
    |h: TestHub| async move {
        h.register_all().await;
        let audit_len = || async {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM hub_audit")
                .fetch_one(h.hub.db.pool())
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
            n
        };
        let before = audit_len().await;
        let long = format!("/v1/records/rec1_{}", "a".repeat(60_000));
        let (st, v) = h.call(Some("clinic:mysos"), "GET", &long, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(
            v.to_string().len() < 600,
            "the path was echoed: {} bytes",
            v.to_string().len()
        );
        let (st, v) = h
            .call(
                Some("clinic:mysos"),
                "GET",
                "/v1/records/rec1_%0a%1b%5b31m",
                None,
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(!v.to_string().contains('\u{1b}'), "{v}");
        let (st, _) = h
            .call(
                Some("clinic:mysos"),
                "POST",
                &format!("/v1/consents/{}/revoke", "x".repeat(5000)),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(audit_len().await, before, "refused shapes are not audited");
        // A well-formed id that is not there is audited, in bounded form.
        let (st, _) = h
            .call(
                Some("clinic:mysos"),
                "GET",
                &format!("/v1/records/rec1_{}", "b".repeat(32)),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(audit_len().await, before + 1);
    }
);

both!(
    unreadable_records_are_reported_to_their_source,
    |h: TestHub| async move {
        h.register_all().await;
        city_a_resident(&h).await;
        h.call(
            Some("source:city-a"),
            "POST",
            "/v1/consents",
            Some(grant_body(
                SUBJECT,
                "clinic:mysos",
                "online-consultation",
                "counter",
            )),
        )
        .await;
        h.answer_grants().await;
        let (_, feed) = h.call(Some("clinic:mysos"), "GET", "/v1/feed", None).await;
        let rid = feed["items"][0]["record_id"].as_str().unwrap().to_owned();
        // Only a holder of the record's grant may report it.
        let (st, _) = h
            .call(
                Some("analyst:hachioji"),
                "POST",
                &format!("/v1/records/{rid}/unreadable"),
                Some(json!({"reason": "x"})),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        for _ in 0..2 {
            let (st, v) = h
                .call(
                    Some("clinic:mysos"),
                    "POST",
                    &format!("/v1/records/{rid}/unreadable"),
                    Some(json!({"reason": "aead tag mismatch\n"})),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        let (st, v) = h
            .call(Some("source:city-a"), "GET", "/v1/source/unreadable", None)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let reports = v["reports"].as_array().unwrap();
        assert_eq!(reports.len(), 1, "reported once: {v}");
        // The source hears of its own record id, not the clinic's copy.
        let own: String = sqlx::query("SELECT record_id FROM hub_records")
            .fetch_one(h.hub.db.pool())
            .await
            .unwrap()
            .try_get("record_id")
            .unwrap();
        assert_ne!(own, rid);
        assert_eq!(reports[0]["record_id"], own.as_str());
        assert_eq!(reports[0]["recipient"], "clinic:mysos");
        assert!(!reports[0]["reason"].as_str().unwrap().contains('\n'));
        // Another source sees nothing of it.
        city_b(&h).await;
        let (_, v) = h
            .call(Some("source:city-b"), "GET", "/v1/source/unreadable", None)
            .await;
        assert!(v["reports"].as_array().unwrap().is_empty());
    }
);

/// Every string value in a JSON document, recursively.
fn strings(v: &Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Everything one recipient receives about a record: the feed item's values, the
/// envelope header's fields, every string inside the opened payload, and the raw bytes.
fn received(
    h: &TestHub,
    who: &crate::harness::Participant,
    item: &Value,
) -> (std::collections::BTreeSet<String>, Vec<u8>) {
    let mut out = std::collections::BTreeSet::new();
    strings(item, &mut out);
    let raw = data_encoding::BASE64
        .decode(item["sealed"].as_str().unwrap().as_bytes())
        .unwrap();
    let sealed = SealedRecord::from_bytes(&raw).unwrap();
    let hd = sealed.header();
    out.insert(hd.record_id.to_string());
    out.insert(hd.subject_binding.to_string());
    let (_, _, plain) = crate::harness::decrypt(who, item);
    strings(&serde_json::from_slice(&plain).unwrap(), &mut out);
    let _ = h;
    (out, raw)
}

both!(
    two_recipients_of_one_record_share_no_identifier,
    |h: TestHub| async move {
        let ps = h.register_all().await;
        let payload = br#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:6f1c2f3e-0000-4000-8000-00000000000a","resource":{"resourceType":"Observation","status":"final","code":{"text":"BMI"},"valueQuantity":{"value":22.1}}}]}"#;
        let r = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), payload);
        h.upload(&[&r]).await;
        let p = h.enroll("phr:asmile", SUBJECT).await;
        h.call(
            Some("phr:asmile"),
            "POST",
            "/v1/consents",
            Some(grant_body(&p, "phr:asmile", "phr-display", "app")),
        )
        .await;
        h.call(
            Some("phr:asmile"),
            "POST",
            "/v1/consents",
            Some(grant_body(&p, "clinic:mysos", "online-consultation", "app")),
        )
        .await;
        assert_eq!(h.answer_grants().await, 2);
        let (_, app_feed) = h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await;
        let (_, clinic_feed) = h.call(Some("clinic:mysos"), "GET", "/v1/feed", None).await;
        let (app_item, clinic_item) = (
            app_feed["items"][0].clone(),
            clinic_feed["items"][0].clone(),
        );
        let (app, app_raw) = received(&h, &ps[1], &app_item);
        let (clinic, clinic_raw) = received(&h, &ps[3], &clinic_item);
        // Only what describes the data itself may coincide: its category, date, source
        // and clinical content (anyone holding the same record can match it by content).
        let allowed: std::collections::BTreeSet<String> = [
            "checkup.body",
            "2026-05-01",
            "source:city-a",
            "Bundle",
            "collection",
            "Observation",
            "final",
            "BMI",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let common: Vec<&String> = app
            .intersection(&clinic)
            .filter(|s| !allowed.contains(*s))
            .collect();
        assert!(common.is_empty(), "shared identifiers: {common:?}");
        assert!(
            !app.contains("urn:uuid:6f1c2f3e-0000-4000-8000-00000000000a"),
            "the source's own ids stay home"
        );
        assert!(!app.iter().chain(&clinic).any(|s| s.starts_with("st1_")));
        // Raw bytes: the ciphertexts share no 16-byte window (the headers share only the
        // category, date and source fields).
        let ct = |raw: &[u8]| SealedRecord::from_bytes(raw).unwrap().ciphertext().to_vec();
        let (a, b) = (ct(&app_raw), ct(&clinic_raw));
        let windows: std::collections::HashSet<&[u8]> = a.windows(16).collect();
        assert!(
            !b.windows(16).any(|w| windows.contains(w)),
            "ciphertexts share bytes"
        );
        assert_eq!(a.len(), b.len(), "padded to the same bucket");
    }
);

/// City A's counter consent to `municipality`'s child-health follow-up for [`SUBJECT`], for
/// 30 days; the pseudonym the hub gives that municipality for the resident.
async fn follow_up_by(h: &TestHub, municipality: &str) -> String {
    follow_up_at(h, "source:city-a", SUBJECT, municipality).await
}

/// `source`'s counter consent to `municipality`'s child-health follow-up for `subject`,
/// for 30 days; the pseudonym the hub gives that municipality for the resident.
async fn follow_up_at(h: &TestHub, source: &str, subject: &str, municipality: &str) -> String {
    let mut body = grant_body(subject, municipality, "child-health-followup", "counter");
    body["valid_until"] = json!((crate::harness::t0() + chrono::Duration::days(30)).to_rfc3339());
    let (st, v) = h
        .call(Some(source), "POST", "/v1/consents", Some(body))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    sqlx::query("SELECT pseudonym FROM hub_pseudonyms WHERE recipient = $1")
        .bind(municipality)
        .fetch_one(h.hub.db.pool())
        .await
        .unwrap()
        .try_get("pseudonym")
        .unwrap()
}

both!(
    only_the_citys_own_agent_resolves_its_municipalitys_pseudonym,
    |h: TestHub| async move {
        h.register_all().await;
        city_b(&h).await;
        let r = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
        assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
        let pseudonym = follow_up_by(&h, "municipality:city-a").await;
        let ask = |who: &'static str, recipient: &'static str| {
            let body = json!({"recipient": recipient, "pseudonym": pseudonym});
            let h = &h;
            async move {
                h.call(Some(who), "POST", "/v1/source/resolve", Some(body))
                    .await
            }
        };
        let (st, v) = ask("source:city-a", "municipality:city-a").await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["subject_token"], SUBJECT);
        // Another city's agent, for either municipality; city A's agent for another
        // municipality: 404 alike, and audited.
        for (who, recipient) in [
            ("source:city-b", "municipality:city-a"),
            ("source:city-b", "municipality:city-b"),
            ("source:city-a", "municipality:city-b"),
        ] {
            let (st, v) = ask(who, recipient).await;
            assert_eq!(st, StatusCode::NOT_FOUND, "{who} for {recipient}: {v}");
            assert!(v.get("subject_token").is_none());
        }
        assert_eq!(denials(&h, "source:city-b", "pseudonym.resolve").await, 2);
        assert_eq!(denials(&h, "source:city-a", "pseudonym.resolve").await, 1);
        // Recipients never resolve.
        let (st, v) = ask("municipality:city-a", "municipality:city-a").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        // The resident also consents to another municipality's follow-up: city A's agent
        // still cannot resolve that municipality's pseudonym (only its own city's).
        let other: ParticipantId = "municipality:city-b".parse().unwrap();
        let key = RecipientSecretKey::generate(KeyVersion::V1);
        let pk = key.public_key().to_base64();
        renkei_hub::registry::add(
            &h.hub.db,
            &other,
            "City B",
            Some(&pk),
            None,
            crate::harness::t0(),
        )
        .await
        .unwrap();
        let theirs = follow_up_by(&h, "municipality:city-b").await;
        let body = json!({"recipient": "municipality:city-b", "pseudonym": theirs});
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/source/resolve",
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    }
);

both!(
    a_source_cannot_upload_records_sealed_in_another_sources_name,
    |h: TestHub| async move {
        h.register_all().await;
        city_b(&h).await;
        // A record whose sealed header names city A (a copy of one, or a forgery),
        // uploaded by city B: refused before anything is claimed or stored.
        let r = h.sealed("doc-1", OTHER_SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
        let (st, v) = h.upload_as("source:city-b", &r.0, OTHER_SUBJECT).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is not the uploader"),
            "{v}"
        );
        let count = |table: &'static str| {
            let h = &h;
            async move {
                sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                    .fetch_one(h.hub.db.pool())
                    .await
                    .unwrap()
                    .try_get::<i64, _>("n")
                    .unwrap()
            }
        };
        assert_eq!(count("hub_records").await, 0);
        assert_eq!(
            count("hub_subjects").await,
            0,
            "city B claimed the resident"
        );
        // City A uploads the same record: its own, accepted.
        let (st, v) = h.upload_as("source:city-a", &r.0, OTHER_SUBJECT).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(count("hub_records").await, 1);
    }
);

both!(
    a_citys_agent_never_resolves_another_sources_resident,
    |h: TestHub| async move {
        h.register_all().await;
        let b_key = city_b(&h).await;
        // City B's resident, whose counter consent (at city B) lets municipality A follow
        // the child up: municipality A knows them by its pseudonym, but city A's agent
        // may not learn city B's token for them.
        let r = seal_as(
            "source:city-b",
            &b_key,
            &body_doc("b-1"),
            OTHER_SUBJECT,
            b"{}",
        );
        let (st, v) = h.upload_as("source:city-b", &r, OTHER_SUBJECT).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let pseudonym =
            follow_up_at(&h, "source:city-b", OTHER_SUBJECT, "municipality:city-a").await;
        let body = json!({"recipient": "municipality:city-a", "pseudonym": pseudonym});
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/source/resolve",
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
        assert!(v.get("subject_token").is_none(), "{v}");
        assert!(!v.to_string().contains(OTHER_SUBJECT), "{v}");
        assert_eq!(denials(&h, "source:city-a", "pseudonym.resolve").await, 1);
    }
);
