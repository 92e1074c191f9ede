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
