//! Consent statements at the hub (`docs/authorization.md`, "Signed consents"): a grant
//! carries only the caller's own signed terms, equal to the body's; the hub keeps the
//! statement and sends it with every key-grant request for the consent.

use axum::http::StatusCode;
use chrono::{Duration, Timelike};
use renkei_crypto::consent_statement::{
    ConsentStatement, ConsentTerms, RevocationList, commit_resident, user_resident,
};
use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::keys::KeyVersion;
use renkei_crypto::statement::KeyStatement;
use serde_json::{Value, json};

use crate::harness::fixture::TestPki;
use crate::harness::{SUBJECT, TestHub, both, d, t0};

fn terms(resident: &str, recipient: &str) -> ConsentTerms {
    ConsentTerms {
        resident: resident.into(),
        recipient: recipient.into(),
        purpose: "online-consultation".into(),
        categories: vec!["checkup.body".into()],
        data_from: None,
        data_until: None,
        valid_from: t0().with_nanosecond(0).unwrap(),
        valid_until: Some(t0() + Duration::hours(48)),
        aliases: Vec::new(),
        guardian: None,
    }
}

/// The grant body for `t` naming the resident `subject`, with `statement`.
fn body(subject: &str, t: &ConsentTerms, statement: &ConsentStatement) -> Value {
    json!({
        "subject": subject, "recipient": t.recipient, "purpose": t.purpose,
        "categories": t.categories, "valid_from": t.valid_from.to_rfc3339(),
        "valid_until": t.valid_until.map(|u| u.to_rfc3339()),
        "method": "app", "granted_by": "resident",
        "statement": serde_json::to_value(statement).unwrap(),
    })
}

fn sign(pki: &TestPki, who: &str, t: ConsentTerms) -> ConsentStatement {
    ConsentStatement::sign(&pki.pem(who), &pki.key(who), t, t0()).unwrap()
}

both!(
    a_grant_carries_only_the_callers_own_signed_terms,
    |h: TestHub| async move {
        h.register_all().await;
        let pki = TestPki::new();
        let r = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
        assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
        let p = h.enroll("phr:asmile", SUBJECT).await;
        let user = user_resident("phr:asmile", "u-1");
        let good = terms(&user, "clinic:mysos");
        let grant = |v: Value| h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(v));

        // Signed by another participant than the caller.
        let (st, v) = grant(body(&p, &good, &sign(&pki, "clinic-mysos", good.clone()))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        // Signed terms that differ from the body's (a wider category list).
        let mut wider = good.clone();
        wider.categories.push("checkup.lipids".into());
        let (st, v) = grant(body(&p, &good, &sign(&pki, "phr-asmile", wider))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        // An app naming the resident by subject token.
        let by_token = terms(SUBJECT, "clinic:mysos");
        let (st, v) = grant(body(
            &p,
            &by_token,
            &sign(&pki, "phr-asmile", by_token.clone()),
        ))
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        // A statement whose signature no longer matches.
        let mut forged = sign(&pki, "phr-asmile", good.clone());
        forged.terms.purpose = "research".into();
        let mut b = body(&p, &good, &forged);
        b["purpose"] = json!("research");
        let (st, v) = grant(b).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        // The body says a parent consented for a child, the signed terms do not (or the
        // other way round).
        let mut b = body(&p, &good, &sign(&pki, "phr-asmile", good.clone()));
        b["guardian"] = json!("parent");
        let (st, v) = grant(b).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains("guardian"), "{v}");
        let parent = ConsentTerms {
            guardian: Some("parent".into()),
            ..good.clone()
        };
        let (st, v) = grant(body(&p, &good, &sign(&pki, "phr-asmile", parent))).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

        // The app's own terms: kept, and sent with the key-grant request.
        let statement = sign(&pki, "phr-asmile", good.clone());
        let (st, v) = grant(body(&p, &good, &statement)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["statement_id"], json!(statement.id()));
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "GET",
                "/v1/source/key-grant-requests?limit=10",
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let requests = v["requests"].as_array().unwrap();
        assert_eq!(requests.len(), 1, "{v}");
        let relayed: ConsentStatement =
            serde_json::from_value(requests[0]["consent_statement"].clone()).unwrap();
        assert_eq!(relayed, statement);
    }
);

// A source's counter statement reaches the apps and clinics whose own records it
// releases: it must name the resident by a commitment to the token, never the token,
// and the commitment must be to the body's subject.
both!(
    a_source_statement_names_the_resident_by_commitment_only,
    |h: TestHub| async move {
        h.register_all().await;
        let pki = TestPki::new();
        let r = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
        assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
        let grant = |t: &ConsentTerms| {
            let mut b = body(SUBJECT, t, &sign(&pki, "source-city-a", t.clone()));
            b["method"] = json!("counter");
            b["granted_by"] = json!("staff-1");
            h.call(Some("source:city-a"), "POST", "/v1/consents", Some(b))
        };
        let plain = terms(SUBJECT, "clinic:mysos");
        let (st, v) = grant(&plain).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert!(v.to_string().contains("stc1_"), "{v}");
        let (other, _) = commit_resident("st1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &[]);
        let (st, v) = grant(&terms(&other, "clinic:mysos")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        let (committed, _) = commit_resident(SUBJECT, &[]);
        let (st, v) = grant(&terms(&committed, "clinic:mysos")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
);

both!(
    a_participant_publishes_only_its_own_newer_revocation_list,
    |h: TestHub| async move {
        h.register_all().await;
        let pki = TestPki::new();
        let list = |who: &str, ids: Vec<String>, at| {
            serde_json::to_value(
                RevocationList::sign(&pki.pem(who), &pki.key(who), ids, at).unwrap(),
            )
            .unwrap()
        };
        let path = "/v1/participants/phr/asmile/revocations";
        let put = |caller: &'static str, path: &'static str, v: Value| {
            h.call(Some(caller), "PUT", path, Some(v))
        };
        let (st, v) = h.call(Some("source:city-a"), "GET", path, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

        let first = list("phr-asmile", vec!["a".repeat(64)], t0());
        let (st, v) = put("phr:asmile", path, first.clone()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, got) = h.call(Some("source:city-a"), "GET", path, None).await;
        assert_eq!((st, &got), (StatusCode::OK, &first));

        // Another participant's path, or the app's path with another's signature.
        let (st, _) = put("clinic:mysos", path, list("clinic-mysos", Vec::new(), t0())).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let later = t0() + Duration::minutes(2);
        let (st, _) = put("phr:asmile", path, list("clinic-mysos", Vec::new(), later)).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        // A list whose ids were altered after signing.
        let mut altered = list("phr-asmile", vec!["a".repeat(64)], later);
        altered["revoked"] = json!([]);
        let (st, _) = put("phr:asmile", path, altered).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        // An older or equally old list does not replace the kept one.
        let (st, _) = put("phr:asmile", path, first.clone()).await;
        assert_eq!(st, StatusCode::CONFLICT);
        let older = list("phr-asmile", Vec::new(), t0() - Duration::minutes(5));
        let (st, _) = put("phr:asmile", path, older).await;
        assert_eq!(st, StatusCode::CONFLICT);
        let (_, got) = h.call(Some("clinic:mysos"), "GET", path, None).await;
        assert_eq!(got, first);
        let newer = list("phr-asmile", vec!["a".repeat(64), "b".repeat(64)], later);
        let (st, _) = put("phr:asmile", path, newer.clone()).await;
        assert_eq!(st, StatusCode::OK);
        let (_, got) = h.call(Some("source:city-a"), "GET", path, None).await;
        assert_eq!(got, newer);
    }
);

both!(
    a_participant_publishes_only_its_own_keys_under_its_own_statement,
    |h: TestHub| async move {
        h.register_all().await;
        let pki = TestPki::new();
        let new_key = || {
            RecipientSecretKey::generate(KeyVersion::V1)
                .public_key()
                .to_base64()
        };
        let keys_of = |path: &'static str| {
            let h = &h;
            async move {
                let (st, v) = h.call(Some("clinic:mysos"), "GET", path, None).await;
                assert_eq!(st, StatusCode::OK, "{v}");
                v
            }
        };
        let city_a = "/v1/participants/source/city-a/keys";
        let asmile = "/v1/participants/phr/asmile/keys";
        let city_a_before = keys_of(city_a).await;

        // An app replacing a source's keys (the keys agents seal record keys to).
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "PUT",
                city_a,
                Some(json!({"grant_key": new_key()})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(keys_of(city_a).await, city_a_before);

        // An app publishing an enrollment key (only a source receives enrollments).
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "PUT",
                asmile,
                Some(json!({"grant_key": new_key(), "enrollment_key": new_key()})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

        // A statement signed by someone else, or for other keys than the request's.
        let grant_key = new_key();
        let by_clinic = KeyStatement::sign(
            &pki.pem("clinic-mysos"),
            &pki.key("clinic-mysos"),
            Some(&grant_key),
            None,
            t0(),
        )
        .unwrap();
        let other_keys = KeyStatement::sign(
            &pki.pem("phr-asmile"),
            &pki.key("phr-asmile"),
            Some(&new_key()),
            None,
            t0(),
        )
        .unwrap();
        // Its own statement with the signature broken, or padded to megabytes (it goes
        // out with every key-grant request for the app; 16 KiB, under the body limit).
        let own_for = |key: &str| {
            KeyStatement::sign(
                &pki.pem("phr-asmile"),
                &pki.key("phr-asmile"),
                Some(key),
                None,
                t0(),
            )
            .unwrap()
        };
        let mut broken = own_for(&grant_key);
        broken.issued_at += Duration::seconds(1);
        let mut padded = own_for(&grant_key);
        padded.certificate.push_str(&"A".repeat(16 * 1024));
        for statement in [&by_clinic, &other_keys, &broken, &padded] {
            let body = json!({"grant_key": grant_key, "statement": statement});
            let (st, v) = h.call(Some("phr:asmile"), "PUT", asmile, Some(body)).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        }
        // The padded one is refused for its size, before its certificate is parsed.
        let body = json!({"grant_key": grant_key, "statement": padded});
        let (_, v) = h.call(Some("phr:asmile"), "PUT", asmile, Some(body)).await;
        assert!(v.to_string().contains("longer than 8192 bytes"), "{v}");
        assert_ne!(keys_of(asmile).await["grant_key"], json!(grant_key));

        // Its own keys under its own statement: kept and served as published.
        let own = KeyStatement::sign(
            &pki.pem("phr-asmile"),
            &pki.key("phr-asmile"),
            Some(&grant_key),
            None,
            t0(),
        )
        .unwrap();
        let body = json!({"grant_key": grant_key, "statement": own});
        let (st, v) = h.call(Some("phr:asmile"), "PUT", asmile, Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let served = keys_of(asmile).await;
        assert_eq!(served["grant_key"], json!(grant_key));
        assert_eq!(served["statement"], serde_json::to_value(&own).unwrap());
    }
);
