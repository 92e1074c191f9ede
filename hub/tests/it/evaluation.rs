//! Evaluation reports through the hub (issue 19): a source delivers sealed statistics to
//! an analyst with no resident's consent; no other kind receives them, no other
//! participant can deliver them, and each analyst collects only its own.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::harness::{TestHub, both};

fn body(recipient: &str) -> Value {
    json!({"recipient": recipient, "purpose": "program-evaluation", "sealed": "c2VhbGVk"})
}

async fn audited(h: &TestHub, action: &str) -> Vec<String> {
    sqlx::query("SELECT decision FROM hub_audit WHERE action = $1 ORDER BY seq")
        .bind(action)
        .fetch_all(h.hub.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("decision"))
        .collect()
}

both!(
    a_source_delivers_statistics_only_to_an_analyst,
    |h: TestHub| async move {
        h.register_all().await;
        let post = |who: &'static str, b: Value| {
            let h = &h;
            async move {
                h.call(Some(who), "POST", "/v1/evaluation/reports", Some(b))
                    .await
            }
        };
        let (st, v) = post("source:city-a", body("analyst:hachioji")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("ev1_"));
        // The same bytes again: one report.
        let (st, again) = post("source:city-a", body("analyst:hachioji")).await;
        assert_eq!(
            (st, again["id"].as_str()),
            (StatusCode::OK, Some(id.as_str()))
        );

        // Not to a clinic, an app or a municipality; not from an app; not under another
        // purpose; not to someone unregistered.
        for recipient in ["clinic:mysos", "phr:asmile", "municipality:city-a"] {
            let (st, v) = post("source:city-a", body(recipient)).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{recipient}: {v}");
        }
        let (st, _) = post("phr:asmile", body("analyst:hachioji")).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let mut other = body("analyst:hachioji");
        other["purpose"] = json!("care-prevention-evaluation");
        let (st, _) = post("source:city-a", other).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        let (st, _) = post("source:city-a", body("analyst:nobody")).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        assert_eq!(
            audited(&h, "evaluation.deliver").await,
            ["allow", "allow", "deny", "deny", "deny", "deny"],
            "refusals to a recipient are audited; the app is refused before"
        );

        // The analyst collects it; a clinic finds nothing addressed to it.
        let (st, v) = h
            .call(
                Some("analyst:hachioji"),
                "GET",
                "/v1/evaluation/reports",
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["reports"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["reports"][0]["source"], "source:city-a");
        assert_eq!(v["reports"][0]["sealed"], "c2VhbGVk");
        let (st, v) = h
            .call(Some("clinic:mysos"), "GET", "/v1/evaluation/reports", None)
            .await;
        assert_eq!(
            (st, v["reports"].as_array().map(Vec::len)),
            (StatusCode::OK, Some(0))
        );
        let (st, _) = h
            .call(Some("source:city-a"), "GET", "/v1/evaluation/reports", None)
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "a source receives nothing");
    }
);

both!(
    reports_are_collected_a_page_at_a_time,
    |h: TestHub| async move {
        h.register_all().await;
        // Eleven distinct reports, delivered one after another.
        for n in 0..11u8 {
            let sealed = data_encoding::BASE64.encode(&[n; 16]);
            let b = json!({"recipient": "analyst:hachioji", "purpose": "program-evaluation", "sealed": sealed});
            let (st, v) = h
                .call(
                    Some("source:city-a"),
                    "POST",
                    "/v1/evaluation/reports",
                    Some(b),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        let get = |path: String| {
            let h = &h;
            async move { h.call(Some("analyst:hachioji"), "GET", &path, None).await }
        };
        let (st, first) = get("/v1/evaluation/reports".into()).await;
        assert_eq!(st, StatusCode::OK, "{first}");
        assert_eq!(first["reports"].as_array().unwrap().len(), 8, "{first}");
        let next = first["next"].as_str().unwrap().to_owned();
        let (st, second) = get(format!("/v1/evaluation/reports?after={next}")).await;
        assert_eq!(st, StatusCode::OK, "{second}");
        assert_eq!(second["reports"].as_array().unwrap().len(), 3, "{second}");
        assert!(second.get("next").is_none(), "{second}");
        let mut ids: Vec<&str> = first["reports"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["reports"].as_array().unwrap())
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 11, "every report once");
        for bad in [
            "x",
            "1.ev1_zz",
            "1.ev1_",
            "abc.ev1_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let (st, v) = get(format!("/v1/evaluation/reports?after={bad}")).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        }
    }
);

/// A clinic publishes a vaccination it gave, for a patient it knows as a recipient, by its
/// own pseudonym; nothing else, for no one else. The key-grant requests for it name the
/// patient by the clinic's pseudonym, never by a token.
mod clinic_sources {
    use super::*;
    use crate::harness::{Doc, SUBJECT, d, seal_as};
    use renkei_crypto::keys::{KeyVersion, RecordKey};

    fn clinic_record(subject: &str, category: &str) -> String {
        let key = RecordKey::from_bytes([0x0c; 32], KeyVersion::V1);
        let sealed = seal_as(
            "clinic:mysos",
            &key,
            &Doc {
                id: &format!("vaccination-{category}"),
                category,
                date: d(2026, 6, 20),
            },
            subject,
            b"{\"resourceType\":\"Bundle\"}",
        );
        data_encoding::BASE64.encode(&sealed.to_bytes())
    }

    both!(
        a_clinic_publishes_vaccinations_only_for_its_own_patients,
        |h: TestHub| async move {
            h.register_all().await;
            let rec = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
            assert_eq!(h.upload(&[&rec]).await.0, StatusCode::OK);
            // The clinic learns a pseudonym of the resident by a consent naming it.
            let app_pseudonym = h.enroll("phr:asmile", SUBJECT).await;
            let until = crate::harness::t0() + chrono::Duration::hours(24);
            h.app_consent(
                &app_pseudonym,
                "clinic:mysos",
                "online-consultation",
                &["checkup.body"],
                json!({"valid_until": until.to_rfc3339()}),
            )
            .await;
            let patient = renkei_crypto::token::recipient_pseudonym(
                &h.hub.pseudonym_key,
                "clinic:mysos",
                &renkei_crypto::token::SubjectToken::parse(SUBJECT).unwrap(),
            )
            .to_string();
            let upload = |subject: &str, category: &str| json!({"records": [{"sealed": clinic_record(subject, category), "subject": subject}]});
            // Its own patient, a vaccination: stored.
            let (st, v) = h
                .call(
                    Some("clinic:mysos"),
                    "POST",
                    "/v1/records",
                    Some(upload(&patient, "immunization.record")),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            // Not a checkup result; not for a pseudonym the hub never gave it; not by token.
            let (st, _) = h
                .call(
                    Some("clinic:mysos"),
                    "POST",
                    "/v1/records",
                    Some(upload(&patient, "checkup.body")),
                )
                .await;
            assert_eq!(st, StatusCode::FORBIDDEN);
            let (st, _) = h
                .call(
                    Some("clinic:mysos"),
                    "POST",
                    "/v1/records",
                    Some(upload(&app_pseudonym, "immunization.record")),
                )
                .await;
            assert_eq!(
                st,
                StatusCode::FORBIDDEN,
                "the app's pseudonym is not the clinic's"
            );
            let (st, _) = h
                .call(
                    Some("clinic:mysos"),
                    "POST",
                    "/v1/records",
                    Some(upload(SUBJECT, "immunization.record")),
                )
                .await;
            assert_eq!(
                st,
                StatusCode::FORBIDDEN,
                "a token names no one to a clinic"
            );
            let stored: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM hub_records WHERE source = 'clinic:mysos' AND subject_token = $1",
            )
            .bind(SUBJECT)
            .fetch_one(h.hub.db.pool())
            .await
            .unwrap()
            .get("n");
            assert_eq!(stored, 1);

            // The app's display consent over vaccinations queues a request to the clinic,
            // naming the patient by the clinic's pseudonym.
            h.app_consent(
                &app_pseudonym,
                "phr:asmile",
                "phr-display",
                &["immunization.record"],
                json!({}),
            )
            .await;
            let (st, v) = h
                .call(
                    Some("clinic:mysos"),
                    "GET",
                    "/v1/source/key-grant-requests",
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            let requests = v["requests"].as_array().unwrap();
            assert_eq!(requests.len(), 1, "{v}");
            assert_eq!(requests[0]["subject"], patient.as_str());
            assert!(
                !v.to_string().contains("st1_"),
                "a token reached the clinic: {v}"
            );
            // Once the consent naming the clinic has ended, the resident is no longer its
            // patient here: nothing more is published for them.
            h.set_now(until);
            let (st, v) = h
                .call(
                    Some("clinic:mysos"),
                    "POST",
                    "/v1/records",
                    Some(upload(&patient, "immunization.record")),
                )
                .await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        }
    );
}
