//! The audit chain after a mixed workload, under direct edits of the database, and
//! revocation seen across two hub instances sharing one database.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::Row;

use crate::harness::{Backend, SUBJECT, TestHub, d, t0};
use renkei_hub::audit;

async fn workload(h: &TestHub) {
    h.register_all().await;
    let r = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"x\":1}",
    );
    h.upload(&[&r]).await;
    let p = h.enroll("phr:asmile", SUBJECT).await;
    let (st, _) = h.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}))).await;
    assert_eq!(st, StatusCode::OK);
    h.answer_grants().await;
    h.call(Some("phr:asmile"), "GET", "/v1/feed", None).await;
    h.call(
        Some("clinic:mysos"),
        "GET",
        "/v1/records/rec1_nothing",
        None,
    )
    .await;
}

async fn run(backend: Backend) {
    let Some(h) = TestHub::new(backend).await else {
        return;
    };
    workload(&h).await;
    let trusted = [h.hub.signing_key.verifying_key()];
    let cp = audit::checkpoint(&h.hub.db, &h.hub.signing_key, t0())
        .await
        .unwrap()
        .unwrap();
    let report = audit::verify(&h.hub.db, &trusted, None)
        .await
        .unwrap()
        .unwrap();
    assert!(report.entries >= 8, "{report:?}");
    assert_eq!(report.entries, cp.seq);
    let pool = h.hub.db.pool();

    // A salted entry whose salt is removed and whose subject and object are replaced by
    // their commitments would hash as before: named all the same.
    let row = sqlx::query(
        "SELECT seq, subject, object, salt FROM hub_audit WHERE salt IS NOT NULL ORDER BY seq LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let (seq, subject, object, salt): (i64, String, String, String) = (
        row.get("seq"),
        row.get("subject"),
        row.get("object"),
        row.get("salt"),
    );
    sqlx::query("UPDATE hub_audit SET salt = NULL, subject = $1, object = $2 WHERE seq = $3")
        .bind(audit::commitment(&salt, &subject))
        .bind(audit::commitment(&salt, &object))
        .bind(seq)
        .execute(pool)
        .await
        .unwrap();
    let broken = audit::verify(&h.hub.db, &trusted, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, seq, "{broken}");
    assert!(broken.reason.contains("unsalted"), "{broken}");
    sqlx::query("UPDATE hub_audit SET salt = $1, subject = $2, object = $3 WHERE seq = $4")
        .bind(&salt)
        .bind(&subject)
        .bind(&object)
        .bind(seq)
        .execute(pool)
        .await
        .unwrap();

    // Edit one entry: named.
    sqlx::query("UPDATE hub_audit SET reason = 'nothing to see' WHERE seq = 3")
        .execute(pool)
        .await
        .unwrap();
    let broken = audit::verify(&h.hub.db, &trusted, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
    sqlx::query("UPDATE hub_audit SET reason = '' WHERE seq = 3")
        .execute(pool)
        .await
        .unwrap();
    assert!(
        audit::verify(&h.hub.db, &trusted, None)
            .await
            .unwrap()
            .is_ok(),
        "restoring the row restores the chain"
    );

    // Delete one in the middle: named.
    sqlx::query("DELETE FROM hub_audit WHERE seq = 5")
        .execute(pool)
        .await
        .unwrap();
    let broken = audit::verify(&h.hub.db, &trusted, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, 5, "{broken}");

    // Truncate the tail and even rewind the head: the signed checkpoint names the gap.
    sqlx::query("DELETE FROM hub_audit WHERE seq >= 4")
        .execute(pool)
        .await
        .unwrap();
    let head: String = sqlx::query_scalar("SELECT hash FROM hub_audit WHERE seq = 3")
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE hub_sequences SET value = 3, head = $1 WHERE name = 'audit'")
        .bind(&head)
        .execute(pool)
        .await
        .unwrap();
    let broken = audit::verify(&h.hub.db, &trusted, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, 4, "{broken}");
    // Even with the hub's checkpoints deleted, a witness's copy still catches it.
    sqlx::query("DELETE FROM hub_checkpoints")
        .execute(pool)
        .await
        .unwrap();
    assert!(
        audit::verify(&h.hub.db, &trusted, None)
            .await
            .unwrap()
            .is_ok(),
        "without a witness a rewound log looks whole"
    );
    let broken = audit::verify(&h.hub.db, &trusted, Some(&cp))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, 4, "{broken}");
    // A forged checkpoint (wrong key) is refused.
    let other = renkei_crypto::sign::SigningKey::generate(renkei_crypto::keys::KeyVersion::V1);
    assert!(
        audit::verify(&h.hub.db, &[other.verifying_key()], Some(&cp))
            .await
            .unwrap()
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tamper_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tamper_postgres() {
    run(Backend::Postgres).await;
}

async fn two_instances(backend: Backend) {
    let Some(a) = TestHub::new(backend).await else {
        return;
    };
    let ps = a.register_all().await;
    let b = a.second_instance().await;
    let r = a.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"x\":1}",
    );
    a.upload(&[&r]).await;
    let p = a.enroll("phr:asmile", SUBJECT).await;
    let (_, v) = a.call(Some("phr:asmile"), "POST", "/v1/consents", Some(json!({"subject": p, "recipient": "phr:asmile", "purpose": "phr-display", "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}))).await;
    let id = v["consent"]["id"].as_str().unwrap().to_owned();
    a.answer_grants().await;
    assert_eq!(
        b.pull(&ps[1]).await.len(),
        1,
        "instance B serves what A brokered"
    );
    let (st, _) = a
        .call(
            Some("phr:asmile"),
            "POST",
            &format!("/v1/consents/{id}/revoke"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        b.pull(&ps[1]).await.is_empty(),
        "B denies on the very next request"
    );
    let rid = r.0.header().record_id.as_str().to_owned();
    let (st, _) = b
        .call(
            Some("phr:asmile"),
            "GET",
            &format!("/v1/records/{}", b.alias("phr:asmile", &rid)),
            None,
        )
        .await;
    assert_ne!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_one_instance_is_seen_by_another_sqlite() {
    two_instances(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_one_instance_is_seen_by_another_postgres() {
    two_instances(Backend::Postgres).await;
}
