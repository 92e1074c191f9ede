//! Batched ingest: many subjects in one batch, duplicates and conflicts inside a batch
//! and against stored records, and key-grant requests only where a consent's data
//! period covers the record.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::Row;

use crate::harness::{TestHub, both, d};

/// A well-formed subject token for resident `n`.
fn subject(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut tail = [b'a'; 32];
    let mut v = n;
    for c in tail.iter_mut().rev() {
        *c = ALPHABET[v % 32];
        v /= 32;
    }
    format!("st1_{}", String::from_utf8(tail.to_vec()).unwrap())
}

async fn stored(h: &TestHub) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM hub_records")
        .fetch_one(h.hub.db.pool())
        .await
        .unwrap()
        .get("n")
}

async fn counter_consent(h: &TestHub, subject: &str, period: serde_json::Value) -> usize {
    counter_consent_for(h, "phr:asmile", subject, period).await
}

/// A consent taken at the counter; returns the key-grant requests it queued.
async fn counter_consent_for(
    h: &TestHub,
    recipient: &str,
    subject: &str,
    period: serde_json::Value,
) -> usize {
    let (st, v) = h
        .call(
            Some("source:city-a"),
            "POST",
            "/v1/consents",
            Some(json!({
                "subject": subject, "recipient": recipient, "purpose": "phr-display",
                "categories": ["checkup.lipids"], "method": "counter", "granted_by": "staff-7",
                "data_period": period
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    usize::try_from(v["grant_requests"].as_u64().unwrap()).unwrap()
}

both!(
    a_large_batch_is_stored_whole_and_queues_only_covered_records,
    |h: TestHub| async move {
        h.register_all().await;
        counter_consent(&h, &subject(5), json!({})).await;
        counter_consent(&h, &subject(290), json!({"from": "2026-06-01"})).await;

        let mut batch = Vec::new();
        for n in 0..300 {
            for category in ["checkup.lipids", "checkup.body"] {
                batch.push(h.sealed(
                    &format!("doc-{n}"),
                    &subject(n),
                    category,
                    d(2026, 5, 1),
                    format!("{{\"n\":{n}}}").as_bytes(),
                ));
            }
        }
        batch.push(batch[0].clone());
        let refs: Vec<_> = batch.iter().collect();
        let (st, v) = h.upload(&refs).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            (&v["accepted"], &v["duplicates"], &v["grant_requests"]),
            (&json!(600), &json!(1), &json!(1)),
            "only subject 5's lipids are covered (subject 290's consent starts in June): {v}"
        );
        assert_eq!(stored(&h).await, 600);
        let audited: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM hub_audit WHERE action = 'ingest'")
                .fetch_one(h.hub.db.pool())
                .await
                .unwrap()
                .get("n");
        assert_eq!(audited, 600, "one audit entry per stored record");
        let chain = renkei_hub::audit::verify(&h.hub.db, &[], None)
            .await
            .unwrap();
        assert!(chain.is_ok(), "{chain:?}");

        // Uploading it all again stores nothing new.
        let (st, v) = h.upload(&refs).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!((&v["accepted"], &v["duplicates"]), (&json!(0), &json!(601)));
    }
);

both!(
    a_conflict_anywhere_in_a_batch_stores_none_of_it,
    |h: TestHub| async move {
        h.register_all().await;
        let first = h.sealed("doc-1", &subject(1), "checkup.lipids", d(2026, 5, 1), b"1");
        assert_eq!(h.upload(&[&first]).await.0, StatusCode::OK);

        let new = h.sealed("doc-2", &subject(2), "checkup.lipids", d(2026, 5, 1), b"2");
        let changed = h.sealed(
            "doc-1",
            &subject(1),
            "checkup.lipids",
            d(2026, 5, 1),
            b"{\"x\":1}",
        );
        let (st, v) = h.upload(&[&new, &changed]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("records[1]: a different record"),
            "{v}"
        );
        assert_eq!(stored(&h).await, 1, "the new record was not stored either");

        // The same id twice with different bytes inside one batch.
        let other = h.sealed("doc-3", &subject(3), "checkup.lipids", d(2026, 5, 1), b"3");
        let other_changed = h.sealed("doc-3", &subject(3), "checkup.lipids", d(2026, 5, 1), b"4");
        let (st, v) = h.upload(&[&other, &other_changed]).await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("records[1]"),
            "{v}"
        );
        assert_eq!(stored(&h).await, 1);

        let (st, v) = h.upload(&[&new]).await;
        assert_eq!((st, &v["accepted"]), (StatusCode::OK, &json!(1)), "{v}");
    }
);

both!(
    a_new_consent_queues_grants_only_for_recipients_without_one,
    |h: TestHub| async move {
        h.register_all().await;
        let s = subject(7);
        let a = h.sealed("doc-1", &s, "checkup.lipids", d(2026, 5, 1), b"1");
        let b = h.sealed("doc-2", &s, "checkup.lipids", d(2026, 6, 1), b"2");
        assert_eq!(h.upload(&[&a, &b]).await.0, StatusCode::OK);
        assert_eq!(counter_consent(&h, &s, json!({})).await, 2);
        assert_eq!(h.answer_grants().await, 2);
        // Another recipient's consent asks the source for that recipient's grants only,
        // not again for the grants the first one already holds.
        assert_eq!(counter_consent_for(&h, "phr:other", &s, json!({})).await, 2);
        assert_eq!(h.answer_grants().await, 2);
        // A second consent for the same recipient needs no new grants at all.
        assert_eq!(
            counter_consent(&h, &s, json!({"from": "2026-01-01"})).await,
            0
        );
        assert_eq!(h.answer_grants().await, 0);
    }
);

both!(
    revoking_one_of_two_covering_consents_keeps_the_record_readable,
    |h: TestHub| async move {
        h.register_all().await;
        let s = subject(9);
        let rec = h.sealed("doc-1", &s, "checkup.lipids", d(2026, 5, 1), b"1");
        assert_eq!(h.upload(&[&rec]).await.0, StatusCode::OK);
        let rid = rec.0.header().record_id.as_str().to_owned();
        counter_consent(&h, &s, json!({})).await;
        counter_consent(&h, &s, json!({"from": "2026-01-01"})).await;
        assert_eq!(h.answer_grants().await, 1);
        let under: String =
            sqlx::query("SELECT consent_id FROM hub_key_grants WHERE record_id = $1")
                .bind(&rid)
                .fetch_one(h.hub.db.pool())
                .await
                .unwrap()
                .get("consent_id");
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                &format!("/v1/consents/{under}/revoke"),
                Some(json!({"reason": "counter"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        // The grant went with its consent; the source is asked again under the other one.
        assert_eq!(h.answer_grants().await, 1);
        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "GET",
                &format!("/v1/records/{}", h.alias("phr:asmile", &rid)),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_ne!(v["consent_id"], under.as_str());
    }
);
