//! What a single read and a feed page decide from (caller status, every covering
//! consent and its data period), and that the audit entry exists once the answer does.

use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{Value, json};
use sqlx::Row;

use crate::harness::{SUBJECT, TestHub, both, d, t0};

/// Grants a consent for `asmile` over `checkup.lipids` with an optional data period
/// and end of validity.
async fn grant(h: &TestHub, pseudonym: &str, period: Value, until: Value) -> String {
    let (st, v) = h
        .call(
            Some("phr:asmile"),
            "POST",
            "/v1/consents",
            Some(json!({
                "subject": pseudonym, "recipient": "phr:asmile", "purpose": "phr-display",
                "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident",
                "data_period": period, "valid_until": until
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["consent"]["id"].as_str().unwrap().to_owned()
}

/// Registers everyone, uploads one May lipids record, and lets `asmile` read it under an
/// open-ended consent with its key grant answered; returns the record's id.
async fn lipids_readable_by_asmile(h: &TestHub) -> String {
    let (rid, pseudonym) = lipids_of_asmiles_user(h).await;
    grant(h, &pseudonym, json!({}), Value::Null).await;
    assert_eq!(h.answer_grants().await, 1);
    rid
}

/// Registers everyone, uploads one May lipids record and enrolls its resident with
/// `asmile`; returns the record's id and the resident's pseudonym at `asmile`.
async fn lipids_of_asmiles_user(h: &TestHub) -> (String, String) {
    h.register_all().await;
    let rec = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"ldl\":120}",
    );
    assert_eq!(h.upload(&[&rec]).await.0, StatusCode::OK);
    let rid = rec.0.header().record_id.as_str().to_owned();
    let pseudonym = h.enroll("phr:asmile", SUBJECT).await;
    (rid, pseudonym)
}

async fn read(h: &TestHub, who: &str, rid: &str) -> (StatusCode, Value) {
    h.call(
        Some(who),
        "GET",
        &format!("/v1/records/{}", h.alias(who, rid)),
        None,
    )
    .await
}

async fn audited_reads(h: &TestHub, rid: &str) -> Vec<(String, String)> {
    sqlx::query(
        "SELECT decision, reason FROM hub_audit WHERE action = 'read' AND object = $1 ORDER BY seq",
    )
    .bind(rid)
    .fetch_all(h.hub.db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("decision"), r.get("reason")))
    .collect()
}

both!(
    a_read_needs_a_consent_whose_data_period_covers_the_record,
    |h: TestHub| async move {
        let (rid, pseudonym) = lipids_of_asmiles_user(&h).await;
        let all_time = grant(
            &h,
            &pseudonym,
            json!({}),
            json!((t0() + Duration::days(30)).to_rfc3339()),
        )
        .await;
        // A second consent that covers only later exams.
        grant(&h, &pseudonym, json!({"from": "2026-06-01"}), Value::Null).await;
        assert_eq!(h.answer_grants().await, 1);

        let (st, v) = read(&h, "phr:asmile", &rid).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["consent_id"], all_time.as_str());
        assert_eq!(
            audited_reads(&h, &rid).await,
            [("allow".to_owned(), String::new())],
            "the read is in the audit log by the time it is answered"
        );

        // The first consent runs out; its key grant stays, the later consent is active
        // but does not cover a May exam.
        h.set_now(t0() + Duration::days(31));
        let (st, v) = h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["items"], json!([]), "{v}");
        assert_eq!(
            audited_reads(&h, &rid).await.last().unwrap(),
            &(
                "deny".to_owned(),
                "no consent in force covers this record".to_owned()
            )
        );
        // The refusal dropped the grant.
        let (st, v) = read(&h, "phr:asmile", &rid).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    }
);

both!(
    a_suspended_recipient_reads_nothing_and_a_resumed_one_reads_again,
    |h: TestHub| async move {
        let rid = lipids_readable_by_asmile(&h).await;
        let asmile = "phr:asmile".parse().unwrap();

        renkei_hub::registry::set_status(&h.hub.db, &asmile, true, t0())
            .await
            .unwrap();
        for path in [
            format!("/v1/records/{}", h.alias("phr:asmile", &rid)),
            "/v1/feed".to_owned(),
        ] {
            let (st, v) = h.call(Some("phr:asmile"), "GET", &path, None).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("suspended"),
                "{v}"
            );
        }
        // An unregistered caller of a recipient kind is refused the same way.
        let (st, v) = read(&h, "phr:unknown", &rid).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not registered"),
            "{v}"
        );

        renkei_hub::registry::set_status(&h.hub.db, &asmile, false, t0())
            .await
            .unwrap();
        let (st, v) = read(&h, "phr:asmile", &rid).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(
            audited_reads(&h, &rid)
                .await
                .iter()
                .filter(|(d, _)| d == "allow")
                .count(),
            2
        );
    }
);

both!(
    a_read_the_policies_in_force_now_deny_is_refused,
    |h: TestHub| async move {
        let rid = lipids_readable_by_asmile(&h).await;
        assert_eq!(read(&h, "phr:asmile", &rid).await.0, StatusCode::OK);

        // The operator narrows the policies (a reload): PHR apps may no longer read
        // lipids. The consent and the key grant are still there; the read is refused.
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for entry in std::fs::read_dir(&shipped).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::write(
            dir.path().join("narrowed.cedar"),
            "@id(\"no-lipids-for-apps\")\n@reason(\"PHR apps no longer read lipids\")\n\
             forbid (principal, action == Action::\"read\", resource == Category::\"checkup.lipids\")\n\
             when { principal.kind == \"phr\" };\n",
        )
        .unwrap();
        h.hub
            .set_policies(renkei_policies::Policies::load(dir.path()).unwrap());
        let (st, v) = read(&h, "phr:asmile", &rid).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        let (decision, reason) = audited_reads(&h, &rid).await.pop().unwrap();
        assert_eq!(decision, "deny");
        assert!(reason.starts_with("policy denies"), "{reason}");
    }
);
