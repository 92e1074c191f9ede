//! Limits that keep one participant from hurting the others (attacks 7, 8, 9, 11):
//! identical consents are one, a 60 KB id is refused before it is echoed or audited, a
//! revoked certificate stops working on an open connection, unreadable records reach
//! their source.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use renkei_e2e::proc::{command, run, wait_until};
use renkei_e2e::scene::{CLI_TIMEOUT, Member, SOURCE, edit_toml};
use renkei_e2e::{APP, http};
use serde_json::json;

use super::world::{CLINIC, Raw, World, count, grant, hub_db};

/// The clinic whose local grant key is not the one registered: nothing it receives opens.
pub const BROKEN: &str = "clinic:broken";

/// Attack 7: the app grants the same terms 20 times (categories in any order) and a 21st
/// over its own connection: one consent, the same id back, no second revocation code.
pub async fn identical_consents_are_one(w: &World) {
    let mut categories = w.categories.clone();
    for _ in 0..20 {
        categories.rotate_left(1);
        let g = grant(
            &w.scene,
            &w.pseudonym,
            APP,
            "phr-display",
            &categories,
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            g.id, w.app_consent.id,
            "a second consent for the same terms"
        );
        assert_eq!(
            g.code, None,
            "a second revocation code for the same consent"
        );
    }
    categories.reverse();
    let body = json!({"subject": w.pseudonym, "recipient": APP, "purpose": "phr-display",
                      "categories": categories, "method": "app", "granted_by": "resident"});
    let mut conn = Raw::open(&w.member(APP), w.hub.addrs.participant).unwrap();
    let r = conn.call("POST", "/v1/consents", Some(&body)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !r.text().contains("st1_"),
        "the app received a subject token: {}",
        r.text()
    );
    assert_eq!(
        r.json().unwrap()["consent"]["id"],
        w.app_consent.id.as_str()
    );
    let sql = "SELECT COUNT(*) FROM consents WHERE recipient = $1 AND purpose = $2";
    assert_eq!(count(w, sql, &[APP, "phr-display"]).await, 1);
}

/// The audit rows after `seq`: (seq, every text field joined).
async fn audit_since(w: &World, seq: i64) -> Vec<(i64, String)> {
    let mut db = hub_db(w).await;
    let rows: Vec<(i64, String, String, String, String, String)> = sqlx::query_as(
        "SELECT seq, actor, action, object, subject, reason FROM hub_audit WHERE seq > $1 ORDER BY seq",
    )
    .bind(seq)
    .fetch_all(&mut db)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(s, a, b, c, d, e)| (s, [a, b, c, d, e].join("|")))
        .collect()
}

/// Attack 8: reads of `rec1_` followed by 60 KB, and of an id with control characters, are
/// refused with a short 400 that echoes neither; the audit log grows by bounded rows and
/// still verifies.
pub async fn a_long_id_is_refused_without_echo_or_audit_growth(w: &World) {
    let mut db = hub_db(w).await;
    let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM hub_audit")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let long = format!("/v1/records/rec1_{}", "a".repeat(60_000));
    for path in [long.as_str(), "/v1/records/rec1_%0a%1b%5b31m"] {
        for _ in 0..5 {
            let mut conn = Raw::open(&w.member(CLINIC), w.hub.addrs.participant).unwrap();
            let r = conn.call("GET", path, None).unwrap();
            assert_eq!(r.status, 400, "{}", r.text());
            assert_eq!(r.json().unwrap()["error"]["code"], "bad_request");
            assert!(
                r.body.len() < 600,
                "a {} byte answer: the id was echoed",
                r.body.len()
            );
            assert!(!r.text().contains(&"a".repeat(100)), "the id was echoed");
            assert!(!r.body.contains(&0x1b), "a control character was echoed");
        }
    }
    let added = audit_since(w, before).await;
    let total: usize = added.iter().map(|(_, t)| t.len()).sum();
    for (seq, text) in &added {
        assert!(
            text.len() < 2048,
            "audit row {seq} holds {} bytes",
            text.len()
        );
        assert!(
            !text.contains(&"a".repeat(100)) && !text.contains('\u{1b}'),
            "audit row {seq}: {text}"
        );
    }
    // Ten refusals of 60 KB each would be 300 KB stored; the agent's own traffic meanwhile
    // adds a few short rows.
    assert!(
        total < 8 * 1024,
        "the audit grew by {total} bytes in {} rows",
        added.len()
    );
    let audit = w.scene.audit_verify().await.unwrap();
    assert!(audit.status.success(), "{audit}");
}

/// How many times the hub said it reloaded.
fn reloads(w: &World) -> usize {
    w.hub
        .process
        .log()
        .matches("reloaded certificates, CRLs and policies")
        .count()
}

/// Attack 9: city B keeps a connection open; its certificate is revoked (`internet-hub pki
/// revoke`, the CRL where `hub.toml` points, SIGHUP to the hub). Its next request on that
/// very connection is refused (401), a new connection does not get through, and the
/// others are still served.
pub async fn a_revoked_certificate_stops_working_on_an_open_connection(
    w: &World,
    b: &Member,
    serial: &str,
    app_record: &str,
) {
    let addr = w.hub.addrs.participant;
    let mut conn = Raw::open(b, addr).unwrap();
    for _ in 0..2 {
        let r = conn.call("GET", "/v1/source/unreadable", None).unwrap();
        assert_eq!(r.status, 200, "before the revocation: {}", r.text());
    }

    let pki = w.scene.root().join("pki");
    let mut revoke = command("internet-hub").unwrap();
    revoke
        .args(["pki", "revoke", "--dir"])
        .arg(&pki)
        .args(["--serial", serial]);
    run(&mut revoke, CLI_TIMEOUT).await.unwrap().ok().unwrap();
    let text = std::fs::read_to_string(&w.scene.hub_config).unwrap();
    let cfg: toml::Table = text.parse().unwrap();
    let crl = w.scene.root().join(cfg["tls"]["crls"][0].as_str().unwrap());
    if crl != pki.join("crl.pem") {
        std::fs::copy(pki.join("crl.pem"), &crl).unwrap();
    }
    let seen = reloads(w);
    let hup = Command::new("kill")
        .args(["-HUP", &w.hub.process.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("the hub to reload", Duration::from_secs(15), || async {
        Ok((reloads(w) > seen).then_some(()))
    })
    .await
    .unwrap();

    let r = conn
        .call("GET", "/v1/source/unreadable", None)
        .expect("the hub closed the open connection instead of refusing on it");
    assert_eq!(
        r.status,
        401,
        "a revoked certificate still works: {}",
        r.text()
    );
    assert_eq!(r.json().unwrap()["error"]["code"], "unauthenticated");
    // A new connection is refused in the handshake (or, at the latest, on its request).
    let fresh = Raw::open(b, addr).and_then(|mut c| c.call("GET", "/v1/source/unreadable", None));
    if let Ok(r) = fresh {
        assert_eq!(
            r.status,
            401,
            "a new connection with the revoked certificate: {}",
            r.text()
        );
    }
    w.get(APP, app_record).await.ok().unwrap();
}

/// Attack 11: a clinic whose local key is not the registered one receives records it
/// cannot open; its `pull` reports them, city A reads the reports (under its own record
/// ids) and the admin `/metrics` counts them. A participant without the record's grant
/// cannot report it.
pub async fn unreadable_records_reach_their_source(w: &World, clinic_record: &str) {
    let broken = w.member(BROKEN);
    let mut keys = command("renkei-client").unwrap();
    keys.arg("init-keys")
        .arg("--dir")
        .arg(broken.dir.join("keys-lost"));
    run(&mut keys, CLI_TIMEOUT).await.unwrap().ok().unwrap();
    edit_toml(&broken.config(), |t| {
        t.insert(
            "grant_key".into(),
            toml::Value::String("keys-lost/grant.key".into()),
        );
        Ok(())
    })
    .unwrap();
    grant(
        &w.scene,
        &w.pseudonym,
        BROKEN,
        "online-consultation",
        &w.categories,
        Some(48),
    )
    .await
    .unwrap();

    let source = w.client(SOURCE);
    let want: BTreeSet<&String> = w.originals.keys().collect();
    let reports = wait_until(
        "city A to hear of every unreadable record",
        Duration::from_secs(45),
        || async {
            // Refused items make `pull` fail; what counts is what it reported.
            w.scene.client(BROKEN, &["pull", "--out", "-"]).await?;
            let reports = source.unreadable_reports(100).await?;
            let ids: BTreeSet<&String> = reports.iter().map(|r| &r.record_id).collect();
            Ok((ids == want).then_some(reports))
        },
    )
    .await
    .unwrap();
    assert!(
        reports
            .iter()
            .all(|r| r.recipient == BROKEN && !r.reason.is_empty()),
        "{reports:?}"
    );

    let admin = w.hub.addrs.admin;
    let metrics =
        tokio::task::spawn_blocking(move || http::get(admin, "/metrics", Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
    let line = format!(
        "renkei_unreadable_reports{{source=\"{SOURCE}\"}} {}",
        want.len()
    );
    assert!(
        metrics.text().lines().any(|l| l == line),
        "no `{line}` in\n{}",
        metrics.text()
    );

    // The city's agent sees them too (`lgwan-agent status`, on its next round).
    let expect = format!("unreadable:        {} reported", want.len());
    renkei_e2e::proc::wait_until(
        "the agent to see the reports",
        Duration::from_secs(30),
        || async {
            let out = w.scene.agent(&["status"], &[]).await?;
            Ok(out.stdout.contains(&expect).then_some(()))
        },
    )
    .await
    .unwrap();

    // The app holds no grant for the clinic's copy.
    let e = w
        .client(APP)
        .report_unreadable(clinic_record, "not mine")
        .await
        .unwrap_err();
    assert_eq!(super::world::refusal(&e).0, 404, "{e}");
}
