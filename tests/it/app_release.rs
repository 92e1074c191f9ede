//! Whoever runs the hub against an app releasing its own records under a consent
//! another participant signed: a counter consent, signed by the city's agent, names the
//! app's user among its aliases. The app releases only while the agent's signed
//! revocation list is fresh and does not name the statement, so the operator cannot
//! re-activate a revoked counter consent and replay its requests to the app.

use renkei_e2e::flow::{self, field};
use renkei_e2e::{APP, Backend, Basic};
use sqlx::{Connection, Row};

const ANALYST: &str = "analyst:hachioji";

/// Key grants the app stored for the analyst.
async fn app_grants(conn: &mut sqlx::AnyConnection) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) FROM hub_key_grants g JOIN hub_records r ON r.record_id = g.record_id \
         WHERE g.recipient = $1 AND r.source = $2",
    )
    .bind(ANALYST)
    .bind(APP)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
    .try_get::<i64, _>(0)
    .unwrap()
}

/// `renkei-client serve-grants --once` as the app; what it printed.
async fn serve_once(b: &Basic) -> String {
    let out = b
        .scene
        .client(APP, &["serve-grants", "--once"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    format!("{}{}", out.stdout, out.stderr)
}

async fn a_revoked_counter_consent_is_not_replayed_to_the_app(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, ANALYST], None).await.unwrap() else {
        return;
    };
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&b.scene.db_url).await.unwrap();

    // The app publishes the resident's vitals.
    let vitals = b.scene.member(APP).unwrap().dir.join("vitals.json");
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "valueQuantity": {"value": 61, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}}]});
    std::fs::write(&vitals, bundle.to_string()).unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    let v = vitals.display().to_string();
    let args = [
        "publish",
        "--subject",
        &b.pseudonym,
        "--category",
        "phr.vitals",
        "--date",
        &today,
        &v,
    ];
    b.scene.client(APP, &args).await.unwrap().ok().unwrap();

    // At the counter the resident consents to the analyst's evaluation, vitals included:
    // the consent names the app's user among its aliases. The app releases.
    let counter = flow::counter_consent(
        &b.scene,
        &b.person,
        ANALYST,
        "care-prevention-evaluation",
        "phr.vitals",
    )
    .await
    .unwrap();
    // The statement the hub relays to the app names neither the resident's token nor the
    // app's user digest: only commitments, which the app checks for its own user.
    let relayed: String =
        sqlx::query_scalar("SELECT statement FROM hub_consent_statements WHERE consent_id = $1")
            .bind(&counter)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        !relayed.contains(b.token.as_str())
            && !relayed.contains("st1_")
            && !relayed.contains("user:"),
        "the counter statement gives the app the token or a digest: {relayed}"
    );
    assert!(
        relayed.contains("stc1_") && relayed.contains("userc:"),
        "{relayed}"
    );
    let served = serve_once(&b).await;
    assert!(
        app_grants(&mut conn).await > 0,
        "nothing released: {served}"
    );

    // The city revokes at the counter; its revocation list names the statement at once.
    flow::counter_revoke(&b.scene, &counter).await.unwrap();
    // The operator hides the revocation: the consent active again, its grants gone, and
    // the requests for the app's records queued again.
    for sql in [
        "DELETE FROM hub_key_grants WHERE recipient = $1",
        "DELETE FROM hub_grant_requests WHERE recipient = $1",
    ] {
        sqlx::query(sql)
            .bind(ANALYST)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE consents SET status = 'active' WHERE id = $1")
        .bind(&counter)
        .execute(&mut conn)
        .await
        .unwrap();
    let queued = sqlx::query(
        "INSERT INTO hub_grant_requests (record_id, recipient, source, consent_id, created_at) \
         SELECT r.record_id, $1, r.source, $2, 0 FROM hub_records r WHERE r.source = $3",
    )
    .bind(ANALYST)
    .bind(&counter)
    .bind(APP)
    .execute(&mut conn)
    .await
    .unwrap()
    .rows_affected();
    assert!(queued > 0);
    let served = serve_once(&b).await;
    assert!(
        served.contains("revoked by `source:city-a`"),
        "the app did not name the city's revocation: {served}"
    );
    assert_eq!(
        app_grants(&mut conn).await,
        0,
        "released under a revoked counter consent: {served}"
    );
    assert!(
        b.preview
            .iter()
            .any(|l| field(l, "subject_token") == b.token.as_str()),
        "the resident's records were imported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_counter_consent_is_not_replayed_to_the_app_sqlite() {
    a_revoked_counter_consent_is_not_replayed_to_the_app(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_counter_consent_is_not_replayed_to_the_app_postgres() {
    a_revoked_counter_consent_is_not_replayed_to_the_app(Backend::Postgres).await;
}
