//! Revocation under load: readers hammer a consented record on two hub instances sharing
//! one database while the resident revokes; no read that started after the revoke
//! response returned is served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use renkei_e2e::{APP, Backend, Basic};

/// Readers per hub instance.
const READERS_PER_INSTANCE: usize = 3;
/// Load before and after the revocation.
const PHASE: Duration = Duration::from_millis(2500);

#[derive(Debug)]
struct Read {
    started: Instant,
    instance: usize,
    outcome: Result<(), String>,
}

/// `instances` hubs on one database; `tolerate_busy` accepts 503 answers (SQLite under
/// concurrent readers answers some reads `database is locked`; that fails closed).
async fn revocation_under_load(backend: Backend, instances: usize, tolerate_busy: bool) {
    let Some(b) = Basic::run(backend, &[APP], None).await.unwrap() else {
        return;
    };
    let second = if instances > 1 {
        Some(b.scene.start_hub_instance(2).await.unwrap())
    } else {
        None
    };
    let urls: Vec<String> = std::iter::once(b.hub.url())
        .chain(second.as_ref().map(|h| h.url()))
        .collect();
    let record = b.expected.keys().next().unwrap().clone();

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (instance, url) in urls.iter().enumerate() {
        for _ in 0..READERS_PER_INSTANCE {
            // One client (one connection) per reader, as separate vendor workers would.
            // One attempt per read: each read is judged by when it started.
            let client = b.scene.hub_client(APP, url, 1).unwrap();
            let (stop, record) = (stop.clone(), record.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let outcome = match client.read_record(&record).await {
                        Ok(item) if item.record_id == record => Ok(()),
                        Ok(item) => Err(format!("served another record {}", item.record_id)),
                        Err(e) => Err(e.to_string()),
                    };
                    reads.push(Read {
                        started,
                        instance,
                        outcome,
                    });
                }
                reads
            }));
        }
    }

    tokio::time::sleep(PHASE).await;
    // The app retries a 503 as any vendor client would; the instant that counts is when
    // the successful answer returned.
    let app = b.scene.hub_client(APP, &urls[0], 5).unwrap();
    let revoked = app
        .revoke_consent(&b.consent.consent_id, "revoked under load")
        .await;
    let revoked_at = Instant::now();
    match revoked {
        Ok(c) => assert_eq!(c.id, b.consent.consent_id),
        // A 409 `is revoked` after a retried 503 means an earlier attempt revoked the consent
        // and then failed (its grant, event and audit clean-up run in a second transaction).
        Err(e) => panic!(
            "the revocation under load did not answer success: {e}\n(a 409 `is revoked` here \
             follows a 503 whose attempt did revoke: see `deadlock detected` in hub.log)"
        ),
    }
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::SeqCst);
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.unwrap());
    }

    let before: Vec<&Read> = reads.iter().filter(|r| r.started < revoked_at).collect();
    let after: Vec<&Read> = reads.iter().filter(|r| r.started >= revoked_at).collect();
    let served_before = before.iter().filter(|r| r.outcome.is_ok()).count();
    let stale: Vec<&&Read> = after.iter().filter(|r| r.outcome.is_ok()).collect();
    eprintln!(
        "{}: {} reads ({served_before} served before the revocation), {} after it, {} stale",
        backend.name(),
        reads.len(),
        after.len(),
        stale.len()
    );
    for instance in 0..urls.len() {
        assert!(
            before
                .iter()
                .any(|r| r.instance == instance && r.outcome.is_ok()),
            "instance {instance} served nothing before the revocation"
        );
        let denied = after
            .iter()
            .filter(|r| r.instance == instance && r.outcome.is_err())
            .count();
        assert!(
            denied >= 10,
            "instance {instance}: only {denied} reads after the revocation"
        );
    }
    assert!(
        stale.is_empty(),
        "{} stale reads after the revoke returned: {stale:?}",
        stale.len()
    );
    // What the readers got after the revocation were denials (or, where tolerated, the
    // hub failing closed with 503), never transport failures.
    let mut busy = 0;
    for r in &after {
        let e = r.outcome.as_ref().unwrap_err();
        if e.contains("503") && tolerate_busy {
            busy += 1;
        } else {
            assert!(
                e.contains("403") || e.contains("404"),
                "read after the revocation failed otherwise: {e}"
            );
        }
    }
    assert!(
        busy < after.len(),
        "every read after the revocation was a 503; none was a denial"
    );
    if busy > 0 {
        eprintln!(
            "NOTE: {busy} of {} reads after the revocation answered 503 (database busy)",
            after.len()
        );
    }
    // The recipient is told (consent.revoked), deletes its copies and acknowledges.
    let events = b
        .scene
        .client(APP, &["events"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        events.stderr.contains("consent.revoked"),
        "no consent.revoked event: {events}"
    );
    assert!(
        b.pulled.values().all(|p| !p.path.exists()),
        "pulled files left after the event"
    );
    let audit = b.scene.audit_verify().await.unwrap();
    assert!(audit.status.success(), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_under_load_postgres() {
    revocation_under_load(Backend::Postgres, 2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_under_load_sqlite() {
    // One instance: several hub processes on one SQLite file is not a supported deployment.
    revocation_under_load(Backend::Sqlite, 1, true).await;
}
