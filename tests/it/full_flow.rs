//! The whole flow with the real binaries: what the PHR app decrypts is exactly what
//! `lgwan-agent preview` showed; the resident revokes on the portal; the app is denied,
//! acknowledges the event (its copies deleted); the audit chain verifies.

use renkei_e2e::portal::{PortalClient, table_rows};
use renkei_e2e::{APP, Backend, Basic};

async fn full_flow(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP], None).await.unwrap() else {
        return;
    };
    // Every consented record of resident #1 arrived, decrypted to exactly the preview's payload.
    assert!(!b.expected.is_empty());
    assert_eq!(
        b.pulled.keys().collect::<Vec<_>>(),
        b.expected.keys().collect::<Vec<_>>(),
        "the app pulled other records than resident #1's consented ones"
    );
    for (id, want) in &b.expected {
        assert_eq!(
            &b.pulled[id].payload, want,
            "record {id}: decrypted payload differs from the preview"
        );
        assert_eq!(
            b.pulled[id].pseudonym, b.pseudonym,
            "record {id} filed under another pseudonym"
        );
    }
    // No identifier of the resident reached the app, in any form the archive used.
    let everything: String = b.pulled.values().map(|p| p.payload.to_string()).collect();
    for secret in [&b.person.name, &b.person.number, &b.person.birth_date] {
        assert!(
            !everything.contains(secret.as_str()),
            "a pulled record shows an identifier"
        );
    }
    assert!(
        !everything.contains(&b.token),
        "a pulled record shows the subject token"
    );

    // The resident revokes on the portal with the receipt code (HTTPS form, CSRF token).
    let ca = b.scene.member(APP).unwrap().ca();
    let addr = b.hub.addrs.portal;
    let code = b.consent.code.clone();
    let (view, revoked) = tokio::task::spawn_blocking(move || {
        let mut portal = PortalClient::new(addr, "localhost", &ca).unwrap();
        assert!(
            portal.open(None).unwrap().contains("撤回コード"),
            "the start page is not Japanese"
        );
        let view = portal.view(&code).unwrap();
        let revoked = portal.revoke(&code, "e2e").unwrap();
        (view, revoked)
    })
    .await
    .unwrap();
    assert_eq!(view.0, 200, "{}", view.1);
    let history = table_rows(&view.1, "history");
    assert!(
        history.len() >= b.expected.len(),
        "history shows {} reads of {} pulled",
        history.len(),
        b.expected.len()
    );
    assert!(
        history.iter().all(|r| r.contains(APP)),
        "history rows: {history:?}"
    );
    assert_eq!(revoked.0, 200, "{}", revoked.1);
    assert!(revoked.1.contains("id=\"revoked\""), "{}", revoked.1);

    // The app's next read is denied.
    let record = b.expected.keys().next().unwrap();
    let get = b.scene.client(APP, &["get", record]).await.unwrap();
    assert!(
        !get.status.success(),
        "read after revocation succeeded: {get}"
    );
    assert!(
        get.stderr.contains("403") || get.stderr.contains("404"),
        "not a denial: {get}"
    );

    // It receives consent.revoked, deletes its copies and acknowledges.
    let events = b
        .scene
        .client(APP, &["events"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        events.stderr.contains("consent.revoked") && events.stderr.contains("acknowledged"),
        "{events}"
    );
    assert!(
        b.pulled.values().all(|p| !p.path.exists()),
        "pulled files left after the event"
    );
    let again = b
        .scene
        .client(APP, &["events"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        again.stderr.contains("0 event(s) handled"),
        "event redelivered after ack: {again}"
    );

    // The audit chain verifies with the hub still running.
    let audit = b.scene.audit_verify().await.unwrap();
    assert!(audit.status.success(), "{audit}");
    let mut hub = b.hub;
    hub.process.check_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_sqlite() {
    full_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_postgres() {
    full_flow(Backend::Postgres).await;
}
