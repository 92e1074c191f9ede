//! Issue 16: a grant and a revocation are each one transaction. With the hub failing at
//! a point between two of their statements (as a crash there would), nothing of the
//! decision is left: no consent without its ledger entry, queue and audit entry, no
//! revoked consent without its `consent.revoked` event; the retry then does it whole.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::harness::{SUBJECT, TestHub, both, d};

async fn count(h: &TestHub, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(h.hub.db.pool())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

fn arm(h: &TestHub, point: Option<&'static str>) {
    *h.hub.fail_at.lock().unwrap() = point;
}

/// Consents, ledger entries, queued key-grant requests and allowed grant audit entries.
async fn grant_traces(h: &TestHub) -> [i64; 4] {
    [
        count(h, "SELECT COUNT(*) FROM consents").await,
        count(h, "SELECT COUNT(*) FROM consent_ledger").await,
        count(h, "SELECT COUNT(*) FROM hub_grant_requests").await,
        count(
            h,
            "SELECT COUNT(*) FROM hub_audit WHERE action = 'consent.grant' AND decision = 'allow'",
        )
        .await,
    ]
}

async fn resident(h: &TestHub) -> Value {
    h.register_all().await;
    let r = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
    assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
    let p = h.enroll("phr:asmile", SUBJECT).await;
    json!({
        "subject": p, "recipient": "phr:asmile", "purpose": "phr-display",
        "categories": ["checkup.body"], "method": "app", "granted_by": "resident"
    })
}

both!(
    a_grant_is_committed_whole_or_not_at_all,
    |h: TestHub| async move {
        let body = resident(&h).await;
        for point in [
            "consent.grant.stored",
            "consent.grant.queued",
            "consent.grant.audited",
        ] {
            arm(&h, Some(point));
            let (st, v) = h
                .call(
                    Some("phr:asmile"),
                    "POST",
                    "/v1/consents",
                    Some(body.clone()),
                )
                .await;
            assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{point}: {v}");
            assert_eq!(grant_traces(&h).await, [0; 4], "left behind at {point}");
        }
        arm(&h, None);
        let (st, v) = h
            .call(Some("phr:asmile"), "POST", "/v1/consents", Some(body))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert!(v["receipt"]["revocation_code"].is_string(), "{v}");
        assert_eq!(grant_traces(&h).await, [1, 1, 1, 1]);
    }
);

both!(
    a_revocation_is_committed_whole_or_not_at_all,
    |h: TestHub| async move {
        let body = resident(&h).await;
        let (st, v) = h
            .call(Some("phr:asmile"), "POST", "/v1/consents", Some(body))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let id = v["consent"]["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/consents/{id}/revoke");
        let status =
            format!("SELECT COUNT(*) FROM consents WHERE status = 'active' AND id = '{id}'");
        let events = "SELECT COUNT(*) FROM hub_events WHERE kind = 'consent.revoked'";
        for point in [
            "consent.revoke.stored",
            "consent.revoke.audited",
            "consent.revoke.dropped",
        ] {
            arm(&h, Some(point));
            let (st, v) = h
                .call(
                    Some("phr:asmile"),
                    "POST",
                    &path,
                    Some(json!({"reason": "r"})),
                )
                .await;
            assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{point}: {v}");
            assert_eq!(
                count(&h, &status).await,
                1,
                "revoked without the rest at {point}"
            );
            assert_eq!(count(&h, events).await, 0, "{point}");
            assert_eq!(count(&h, "SELECT COUNT(*) FROM consent_ledger").await, 1);
        }
        arm(&h, None);
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "POST",
                &path,
                Some(json!({"reason": "r"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(count(&h, &status).await, 0);
        assert_eq!(count(&h, events).await, 1);
        assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM hub_audit WHERE action = 'consent.revoke' AND decision = 'allow'"
        )
        .await,
        1
    );
    }
);
