//! Enrollment at the hub on both databases: the app's `user_ref` is stored only as a
//! keyed hash bound to the app, also for rows an older hub stored in plain text.

use axum::http::StatusCode;
use renkei_crypto::token::{UserRefHash, user_ref_hash};
use serde_json::json;
use sqlx::Row;

use crate::harness::{TestHub, both};

const USER_REF: &str = "asmile-user-0001@example.jp";

/// Every text value of the hub's enrollment and audit tables, joined.
async fn stored_text(h: &TestHub) -> String {
    let mut all = String::new();
    for sql in [
        "SELECT id, requester, source, user_ref, status, \
         COALESCE(pseudonym, '') AS pseudonym, COALESCE(reason, '') AS reason \
         FROM hub_enrollments",
        "SELECT actor, action, object, subject, consent, category, decision, reason \
         FROM hub_audit",
    ] {
        let rows = sqlx::query(sql).fetch_all(h.hub.db.pool()).await.unwrap();
        for r in rows {
            for i in 0..r.len() {
                all.push_str(&r.try_get::<String, _>(i).unwrap());
                all.push('\n');
            }
        }
    }
    all
}

both!(
    user_refs_are_stored_only_as_keyed_hashes,
    |h: TestHub| async move {
        h.register_all().await;
        let sealed = data_encoding::BASE64.encode(b"sealed-bytes");
        let submit = |app: &'static str| {
            let body = json!({"source": "source:city-a", "user_ref": USER_REF, "sealed": sealed});
            let h = &h;
            async move {
                h.call(Some(app), "POST", "/v1/enrollments", Some(body))
                    .await
            }
        };
        let (st, v) = submit("phr:asmile").await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            v["user_ref"], USER_REF,
            "the answer echoes what the app sent"
        );
        let id = v["id"].as_str().unwrap().to_owned();

        let (st, v) = h
            .call(
                Some("phr:asmile"),
                "GET",
                &format!("/v1/enrollments/{id}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let hash = v["user_ref"].as_str().unwrap().to_owned();
        UserRefHash::parse(&hash).unwrap();
        assert_eq!(
            hash,
            user_ref_hash(&h.hub.receipt_pepper, "phr:asmile", USER_REF).as_str()
        );
        let (_, v) = h
            .call(Some("source:city-a"), "GET", "/v1/source/enrollments", None)
            .await;
        assert_eq!(v["enrollments"][0]["user_ref"], hash.as_str());

        // Another app's equal reference is another hash: no join across apps.
        let (st, _) = submit("phr:other").await;
        assert_eq!(st, StatusCode::OK);
        let stored: Vec<String> = sqlx::query_scalar("SELECT user_ref FROM hub_enrollments")
            .fetch_all(h.hub.db.pool())
            .await
            .unwrap();
        assert_eq!(stored.len(), 2);
        assert_ne!(stored[0], stored[1]);
        let text = stored_text(&h).await;
        assert!(!text.contains(USER_REF), "plain user_ref stored: {text}");
        assert!(!text.contains("asmile-user"), "{text}");

        // A row an older hub stored in plain text is hashed when a hub starts on it.
        sqlx::query("UPDATE hub_enrollments SET user_ref = $1 WHERE id = $2")
            .bind(USER_REF)
            .bind(&id)
            .execute(h.hub.db.pool())
            .await
            .unwrap();
        assert!(stored_text(&h).await.contains(USER_REF));
        let restarted = h.second_instance().await;
        assert!(!stored_text(&restarted).await.contains(USER_REF));
        let (_, v) = restarted
            .call(
                Some("phr:asmile"),
                "GET",
                &format!("/v1/enrollments/{id}"),
                None,
            )
            .await;
        assert_eq!(v["user_ref"], hash.as_str(), "hashed as a new row would be");
    }
);

// One app cannot queue more than `MAX_PENDING_PER_APP` enrollments for a source: the
// next is refused (429) until the source answers or they expire; another app is not
// held back.
both!(
    an_app_cannot_flood_a_sources_enrollment_queue,
    |h: TestHub| async move {
        h.register_all().await;
        let sealed = data_encoding::BASE64.encode(b"sealed-bytes");
        let max = renkei_hub::broker::enroll::MAX_PENDING_PER_APP;
        // The queue filled to one below the bound directly, then through the API.
        let mut tx = h.hub.db.pool().begin().await.unwrap();
        for i in 0..max - 1 {
            sqlx::query(
                "INSERT INTO hub_enrollments (id, requester, source, user_ref, sealed, status, created_at, expires_at) \
                 VALUES ($1, 'phr:asmile', 'source:city-a', 'ur1_x', $2, 'pending', 0, $3)",
            )
            .bind(format!("flood-{i}"))
            .bind(b"x".as_slice())
            .bind(i64::MAX)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let submit = |app: &'static str| {
            let body = json!({"source": "source:city-a", "user_ref": USER_REF, "sealed": sealed});
            let h = &h;
            async move {
                h.call(Some(app), "POST", "/v1/enrollments", Some(body))
                    .await
            }
        };
        let (st, v) = submit("phr:asmile").await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = submit("phr:asmile").await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
        let (st, v) = submit("phr:other").await;
        assert_eq!(st, StatusCode::OK, "another app is not held back: {v}");
    }
);
