//! Issue 14, against the real binaries: whoever can write the hub's database tries to
//! make the city's agent or the PHR app release a record key or a resident's identifiers.
//! The agent and the app check for themselves (key statements against the CA they pinned,
//! the city's release list, the agent's own copy of the policies, a consent statement
//! signed by the app the agent linked or by the agent itself, its own revocations, the
//! record is its own) and refuse; the refusal is counted in `lgwan-agent status`; honest
//! traffic carries on.

use std::time::Duration;

use renkei_crypto::grant::RecipientSecretKey;
use renkei_crypto::keys::KeyVersion;
use renkei_e2e::flow::{self, field};
use renkei_e2e::{APP, Backend, Basic};
use serde_json::Value;
use sqlx::{Connection, Row};

const CLINIC: &str = "clinic:mysos";

async fn db(b: &Basic) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&b.scene.db_url).await.unwrap()
}

/// The operator makes every request to `recipient` due at once (the hub makes a request
/// its source did not answer wait before serving it again).
async fn due_now(conn: &mut sqlx::AnyConnection, recipient: &str) {
    sqlx::query("UPDATE hub_grant_requests SET due_at = 0 WHERE recipient = $1")
        .bind(recipient)
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn count(conn: &mut sqlx::AnyConnection, sql: &str, bind: &str) -> i64 {
    sqlx::query(sql)
        .bind(bind)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

/// `lgwan-agent status`'s count of refused key-grant requests.
async fn refusals(b: &Basic) -> u64 {
    let out = b.scene.agent(&["status"], &[]).await.unwrap();
    let text = format!("{}{}", out.stdout, out.stderr);
    text.lines()
        .find_map(|l| l.strip_prefix("grant refusals:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no refusal count in status: {text}"))
}

/// Waits (bounded) until the agent daemon refused more requests than `before`.
async fn wait_refused(b: &Basic, before: u64) -> u64 {
    for _ in 0..40 {
        let now = refusals(b).await;
        if now > before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the agent refused nothing new (still {before})");
}

/// A statement as stored, with its key swapped for the attacker's (the signature is
/// the participant's and no longer matches).
fn swapped(statement: &str, field_name: &str, key: &str) -> String {
    let mut v: Value = serde_json::from_str(statement).unwrap();
    v[field_name] = Value::String(key.to_owned());
    v.to_string()
}

async fn malicious_hub(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, CLINIC], None).await.unwrap() else {
        return;
    };
    let mut conn = db(&b).await;
    let attacker = RecipientSecretKey::generate(KeyVersion::V1);
    let attacker_pk = attacker.public_key().to_base64();

    // (a) The operator swaps the clinic's grant key, in the key column and in its statement.
    let statement: String =
        sqlx::query("SELECT key_statement FROM hub_participants WHERE participant = $1")
            .bind(CLINIC)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .try_get::<Option<String>, _>(0)
            .unwrap()
            .expect("the clinic published a signed statement");
    sqlx::query(
        "UPDATE hub_participants SET grant_pk = $1, key_statement = $2 WHERE participant = $3",
    )
    .bind(&attacker_pk)
    .bind(swapped(&statement, "grant_key", &attacker_pk))
    .bind(CLINIC)
    .execute(&mut conn)
    .await
    .unwrap();
    let before = refusals(&b).await;
    let categories = flow::checkup_categories(&b.preview, &b.token);
    let mut args = vec![
        "consent",
        "grant",
        "--subject",
        &b.pseudonym,
        "--recipient",
        CLINIC,
        "--purpose",
        "online-consultation",
        "--granted-by",
        "resident",
        "--valid-hours",
        "24",
    ];
    for c in &categories {
        args.extend(["--category", c.as_str()]);
    }
    b.scene.client(APP, &args).await.unwrap().ok().unwrap();
    let after_a = wait_refused(&b, before).await;
    let sql = "SELECT COUNT(*) FROM hub_key_grants WHERE recipient = $1";
    assert_eq!(
        count(&mut conn, sql, CLINIC).await,
        0,
        "a key was sealed to the swapped key"
    );

    // The clinic publishes its statement again (honest state): its grants now flow.
    b.scene
        .client(CLINIC, &["publish-keys"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    for _ in 0..40 {
        if count(&mut conn, sql, CLINIC).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        count(&mut conn, sql, CLINIC).await > 0,
        "honest grants did not resume"
    );

    // (b) The operator registers a participant of its own (a certificate from the CA
    // it runs, a statement signed with it) and queues requests for the resident's records
    // under the app's consent: the city's release list does not name it.
    let evil = "clinic:evil";
    let pki = b.scene.root().join("pki");
    let evil_dir = b.scene.root().join("evil");
    let mut issue = renkei_e2e::proc::command("internet-hub").unwrap();
    issue
        .args(["pki", "issue", "--participant", evil, "--days", "30"])
        .arg("--dir")
        .arg(&pki)
        .arg("--out")
        .arg(&evil_dir);
    renkei_e2e::proc::run(&mut issue, Duration::from_secs(60))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let mut add = b.scene.hub_admin(&["participants"]).unwrap();
    add.args(["add", evil, "--name", "evil", "--grant-key", &attacker_pk]);
    renkei_e2e::proc::run(&mut add, Duration::from_secs(60))
        .await
        .unwrap()
        .ok()
        .unwrap();
    let evil_client = renkei_client::HubClient::new(renkei_client::ClientConfig::new(
        &b.hub.url(),
        pki.join("ca.pem"),
        evil_dir.join("clinic-evil.pem"),
        evil_dir.join("clinic-evil.key"),
    ))
    .unwrap();
    evil_client
        .publish_signed_keys(Some(&attacker_pk), None)
        .await
        .unwrap();
    // Under the clinic's online-consultation consent, so that the policies (a clinic may
    // read for that purpose) allow it: only the release list stands in the way.
    let clinic_consent: String = sqlx::query(
        "SELECT id FROM consents WHERE recipient = $1 AND purpose = 'online-consultation'",
    )
    .bind(CLINIC)
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    let queued = sqlx::query(
        "INSERT INTO hub_grant_requests (record_id, recipient, source, consent_id, created_at) \
         SELECT r.record_id, $1, r.source, $2, 0 FROM hub_records r WHERE r.subject_token = $3 \
         AND r.category LIKE 'checkup.%'",
    )
    .bind(evil)
    .bind(&clinic_consent)
    .bind(&b.token)
    .execute(&mut conn)
    .await
    .unwrap()
    .rows_affected();
    assert!(queued > 0);
    let after_b = wait_refused(&b, after_a).await;
    assert!(after_b > after_a);
    assert_eq!(
        count(&mut conn, sql, evil).await,
        0,
        "a key was sealed to the operator's participant"
    );

    // (e) The operator swaps the city's enrollment key: the app refuses to seal a
    // resident's identifiers to it, and nothing is submitted.
    let source_statement: String =
        sqlx::query("SELECT key_statement FROM hub_participants WHERE participant = $1")
            .bind("source:city-a")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .try_get::<Option<String>, _>(0)
            .unwrap()
            .expect("the agent published a signed statement");
    sqlx::query(
        "UPDATE hub_participants SET enrollment_pk = $1, key_statement = $2 WHERE participant = $3",
    )
    .bind(&attacker_pk)
    .bind(swapped(&source_statement, "enrollment_key", &attacker_pk))
    .bind("source:city-a")
    .execute(&mut conn)
    .await
    .unwrap();
    let enrollments = "SELECT COUNT(*) FROM hub_enrollments WHERE requester = $1";
    let before_e = count(&mut conn, enrollments, APP).await;
    let refused = flow::enroll(&b.scene, APP, &b.person, "user-0002").await;
    assert!(
        refused.is_err(),
        "the app sealed identifiers to a swapped enrollment key"
    );
    assert_eq!(
        count(&mut conn, enrollments, APP).await,
        before_e,
        "an enrollment reached the hub"
    );
    // Without any statement at all, the same.
    sqlx::query("UPDATE hub_participants SET key_statement = NULL WHERE participant = $1")
        .bind("source:city-a")
        .execute(&mut conn)
        .await
        .unwrap();
    let identity = b
        .scene
        .member(APP)
        .unwrap()
        .dir
        .join("identity-user-0002.json");
    let identity = identity.display().to_string();
    let out = b
        .scene
        .client(
            APP,
            &[
                "enroll",
                "--source",
                "source:city-a",
                "--user-ref",
                "user-0003",
                "--identity",
                &identity,
            ],
        )
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "enrolled without a signed enrollment key: {out}"
    );
    assert!(out.stderr.contains("no signed key statement"), "{out}");
    assert_eq!(count(&mut conn, enrollments, APP).await, before_e);

    // The operator's participant is gone from the queue; what follows is refused or not
    // on its own account (the `last:` reason of `lgwan-agent status` says which check).
    sqlx::query("DELETE FROM hub_grant_requests WHERE recipient = $1")
        .bind(evil)
        .execute(&mut conn)
        .await
        .unwrap();
    consents_the_agent_checks(&b, &mut conn, &clinic_consent).await;

    // The app's honest records were unaffected throughout.
    assert!(!b.pulled.is_empty());
    let status = b.scene.agent(&["status"], &[]).await.unwrap();
    assert!(
        format!("{}{}", status.stdout, status.stderr).contains("grant refusals"),
        "{status}"
    );
    let _ = field;
}

/// Waits (bounded) until `lgwan-agent status` names a refusal containing `why`.
async fn wait_refusal(b: &Basic, why: &str) {
    let mut text = String::new();
    for _ in 0..60 {
        let out = b.scene.agent(&["status"], &[]).await.unwrap();
        text = format!("{}{}", out.stdout, out.stderr);
        let last = text
            .lines()
            .find(|l| l.starts_with("grant refusals:"))
            .unwrap_or("");
        if last.contains(why) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the agent refused nothing for `{why}`: {text}");
}

/// Queues key-grant requests to `recipient` under `consent` for the city's records that
/// `filter` (SQL on `r`, one bind: `$3`) selects; returns how many.
async fn queue(
    conn: &mut sqlx::AnyConnection,
    recipient: &str,
    consent: &str,
    filter: &str,
    bind: &str,
) -> u64 {
    sqlx::query(&format!(
        "INSERT INTO hub_grant_requests (record_id, recipient, source, consent_id, created_at) \
         SELECT r.record_id, $1, r.source, $2, 0 FROM hub_records r \
         WHERE r.source = 'source:city-a' AND {filter}"
    ))
    .bind(recipient)
    .bind(consent)
    .bind(bind)
    .execute(&mut *conn)
    .await
    .unwrap()
    .rows_affected()
}

/// Key grants to `recipient` for records of resident `token` (`=`) or of everyone else (`<>`).
async fn grants_for(conn: &mut sqlx::AnyConnection, recipient: &str, op: &str, token: &str) -> i64 {
    sqlx::query(&format!(
        "SELECT COUNT(*) FROM hub_key_grants g JOIN hub_records r ON r.record_id = g.record_id \
         WHERE g.recipient = $1 AND r.subject_token {op} $2"
    ))
    .bind(recipient)
    .bind(token)
    .fetch_one(&mut *conn)
    .await
    .unwrap()
    .try_get::<i64, _>(0)
    .unwrap()
}

/// Waits (bounded) until the clinic holds a key grant for a record of resident `token`.
async fn resident_grants_arrive(conn: &mut sqlx::AnyConnection, token: &str) -> bool {
    for _ in 0..40 {
        if grants_for(conn, CLINIC, "=", token).await > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// (c), (d) and (f): the agent releases only under a consent statement it verifies
/// itself, for the resident it names, never under one it revoked at its counter, and
/// never under an app's consent that the app's own signed revocation list names (or
/// without a list it can check).
async fn consents_the_agent_checks(b: &Basic, conn: &mut sqlx::AnyConnection, consent: &str) {
    let statement: String =
        sqlx::query("SELECT statement FROM hub_consent_statements WHERE consent_id = $1")
            .bind(consent)
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
    let wipe = "DELETE FROM hub_key_grants WHERE recipient = $1";
    sqlx::query(wipe)
        .bind(CLINIC)
        .execute(&mut *conn)
        .await
        .unwrap();
    // Only records of the categories the consent names (the archive also holds the
    // residents' guidance records, which it does not): each attack below is refused on
    // its own account, not for a category.
    let mine = "r.subject_token = $3 AND r.category LIKE 'checkup.%'";
    let others = "r.subject_token <> $3 AND r.category LIKE 'checkup.%'";

    // (c) A consent no one signed: the statement is gone (the hub alone vouches for
    // the consent), then it is forged (the app's statement, one more category).
    sqlx::query("DELETE FROM hub_consent_statements WHERE consent_id = $1")
        .bind(consent)
        .execute(&mut *conn)
        .await
        .unwrap();
    assert!(queue(conn, CLINIC, consent, mine, &b.token).await > 0);
    wait_refusal(b, "no signed consent statement").await;
    let mut forged: Value = serde_json::from_str(&statement).unwrap();
    forged["terms"]["categories"]
        .as_array_mut()
        .unwrap()
        .push("kdb.medical".into());
    sqlx::query(
        "INSERT INTO hub_consent_statements (consent_id, statement_id, statement) \
         VALUES ($1, 'forged', $2)",
    )
    .bind(consent)
    .bind(forged.to_string())
    .execute(&mut *conn)
    .await
    .unwrap();
    // The operator serves the requests again at once (a refused request waits otherwise).
    due_now(conn, CLINIC).await;
    wait_refusal(b, "does not verify").await;
    assert_eq!(
        grants_for(conn, CLINIC, "=", &b.token).await,
        0,
        "(c) released"
    );

    // The real statement back: the resident's own records flow to the clinic again.
    sqlx::query("UPDATE hub_consent_statements SET statement = $1 WHERE consent_id = $2")
        .bind(&statement)
        .bind(consent)
        .execute(&mut *conn)
        .await
        .unwrap();
    due_now(conn, CLINIC).await;
    assert!(
        resident_grants_arrive(conn, &b.token).await,
        "honest grants under the signed consent did not resume"
    );

    // (d) Records no consent covers: every other resident's records, under the
    // resident's real, signed consent.
    assert!(queue(conn, CLINIC, consent, others, &b.token).await > 0);
    wait_refusal(b, "for another resident").await;
    assert_eq!(
        grants_for(conn, CLINIC, "<>", &b.token).await,
        0,
        "(d) another resident's record was released"
    );
    sqlx::query("DELETE FROM hub_grant_requests WHERE recipient = $1")
        .bind(CLINIC)
        .execute(&mut *conn)
        .await
        .unwrap();

    // (f) Hidden revocations. The app revokes its clinic consent: its signed revocation
    // list names the statement. The operator re-activates the consent and re-queues its
    // grants, then shows the agent the app's older list, then none: each is refused.
    let list_of_app = "SELECT list FROM hub_revocation_lists WHERE signer = $1";
    let before: String = sqlx::query(list_of_app)
        .bind(APP)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    b.scene
        .client(APP, &["consent", "revoke", consent, "--reason", "test"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let requeue = async |conn: &mut sqlx::AnyConnection, id: &str| {
        for sql in [
            "DELETE FROM hub_grant_requests WHERE recipient = $1",
            "DELETE FROM hub_key_grants WHERE recipient = $1",
        ] {
            sqlx::query(sql)
                .bind(CLINIC)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        sqlx::query("UPDATE consents SET status = 'active' WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .unwrap();
        assert!(queue(conn, CLINIC, id, mine, &b.token).await > 0);
    };
    requeue(conn, consent).await;
    wait_refusal(b, "revoked by `phr:asmile`").await;
    // The app's list from before the revocation, after the agent saw the newer one.
    sqlx::query("UPDATE hub_revocation_lists SET list = $1 WHERE signer = $2")
        .bind(&before)
        .bind(APP)
        .execute(&mut *conn)
        .await
        .unwrap();
    requeue(conn, consent).await;
    wait_refusal(b, "older than the one").await;
    // No list at all.
    sqlx::query("DELETE FROM hub_revocation_lists WHERE signer = $1")
        .bind(APP)
        .execute(&mut *conn)
        .await
        .unwrap();
    requeue(conn, consent).await;
    wait_refusal(b, "no revocation list of `phr:asmile`").await;
    assert_eq!(
        grants_for(conn, CLINIC, "=", &b.token).await,
        0,
        "(f) released under the app's revoked consent"
    );
    sqlx::query("UPDATE consents SET status = 'revoked' WHERE id = $1")
        .bind(consent)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM hub_grant_requests WHERE recipient = $1")
        .bind(CLINIC)
        .execute(&mut *conn)
        .await
        .unwrap();

    // At the counter the resident consents to the clinic for one category, then revokes.
    // The operator re-queues the grants under the revoked consent: the agent knows its
    // own revocation.
    let category = flow::checkup_categories(&b.preview, &b.token)
        .into_iter()
        .next()
        .unwrap();
    let counter = flow::counter_consent(
        &b.scene,
        &b.person,
        CLINIC,
        "online-consultation",
        &category,
    )
    .await
    .unwrap();
    sqlx::query(wipe)
        .bind(CLINIC)
        .execute(&mut *conn)
        .await
        .unwrap();
    assert!(
        resident_grants_arrive(conn, &b.token).await,
        "the counter consent released nothing"
    );
    flow::counter_revoke(&b.scene, &counter).await.unwrap();
    sqlx::query(wipe)
        .bind(CLINIC)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE consents SET status = 'active' WHERE id = $1")
        .bind(&counter)
        .execute(&mut *conn)
        .await
        .unwrap();
    let its_category = format!("{mine} AND r.category = '{category}'");
    assert!(queue(conn, CLINIC, &counter, &its_category, &b.token).await > 0);
    wait_refusal(b, "revoked at this agent's counter").await;
    assert_eq!(
        grants_for(conn, CLINIC, "=", &b.token).await,
        0,
        "(f) released under a revoked consent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_hub_sqlite() {
    malicious_hub(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_hub_postgres() {
    malicious_hub(Backend::Postgres).await;
}
