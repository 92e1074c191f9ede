//! Operations: backup and restore of the hub database on both backends, signing-key
//! rotation with checkpoints chained across keys, and certificate expiry listings.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::StatusCode;
use internet_hub::audit;
use internet_hub::broker::{Clock, Hub};
use renkei_consent::{ChainReport, ConsentStore};
use serde_json::json;

use crate::harness::{Backend, SUBJECT, TestHub, d, fixture, fresh_db, write_config};

/// Uploads, enrolls, grants a consent, answers key grants and pulls: every kind of
/// audit entry and a consent ledger entry.
async fn workload(h: &TestHub) {
    let ps = h.register_all().await;
    let r = h.sealed(
        "doc-1",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 1),
        b"{\"ldl\":1}",
    );
    assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
    let p = h.enroll("phr:asmile", SUBJECT).await;
    let (st, v) = h
        .call(
            Some("phr:asmile"),
            "POST",
            "/v1/consents",
            Some(
                json!({"subject": p, "recipient": "phr:asmile", "purpose": "phr-display",
                "categories": ["checkup.lipids"], "method": "app", "granted_by": "resident"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(h.answer_grants().await, 1);
    assert_eq!(h.pull(&ps[1]).await.len(), 1);
}

/// The audit report (every checkpoint must verify under `trusted`) and consent ledger report.
async fn verified(
    hub: &Hub,
    trusted: &[renkei_crypto::sign::VerifyingKey],
) -> (audit::Report, ChainReport) {
    let report = audit::verify(&hub.db, trusted, None)
        .await
        .unwrap()
        .expect("audit chain verifies");
    let ledger = ConsentStore::verify_chain(&hub.consents, None)
        .await
        .expect("consent ledger verifies");
    (report, ledger)
}

/// A hub on `db_url` with the keys of `from` (copied, modes kept).
async fn reopen(from: &TestHub, db_url: &str) -> (tempfile::TempDir, std::sync::Arc<Hub>) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    for entry in std::fs::read_dir(from.dir.path().join("keys")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), keys.join(entry.file_name())).unwrap();
    }
    let cfg = write_config(dir.path(), db_url, &fixture::source_dir());
    let hub = internet_hub::app::build_hub(&cfg, Clock::System)
        .await
        .unwrap();
    (dir, hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_restores_with_a_verified_audit_chain() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    workload(&h).await;
    audit::checkpoint(&h.hub.db, &h.hub.signing_key, h.hub.now())
        .await
        .unwrap()
        .unwrap();
    let trusted = [h.hub.signing_key.verifying_key()];
    let (before, ledger_before) = verified(&h.hub, &trusted).await;
    assert!(before.entries > 5 && before.checkpoints == 1, "{before:?}");
    assert!(ledger_before.entries >= 1);

    let out = h.dir.path().join("backup.db");
    let written = internet_hub::backup::sqlite_backup(&h.hub.db, &out)
        .await
        .unwrap();
    assert!(written.bytes > 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = internet_hub::backup::sqlite_backup(&h.hub.db, &out)
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("exists"), "{again}");

    // The hub goes on after the backup; the copy keeps the state at the backup.
    workload_more(&h).await;
    let (after, _) = verified(&h.hub, &trusted).await;
    assert!(after.entries > before.entries);

    let (_dir, copy) = reopen(&h, &format!("sqlite://{}", out.display())).await;
    let (restored, ledger_restored) = verified(&copy, &trusted).await;
    assert_eq!(
        restored, before,
        "the copy holds the chain as it was at the backup"
    );
    assert_eq!(ledger_restored, ledger_before);
    // A key the hub never used is not trusted on the copy either.
    let stranger = renkei_crypto::sign::SigningKey::generate(renkei_crypto::keys::KeyVersion::V1);
    let broken = audit::verify(&copy.db, &[stranger.verifying_key()], None)
        .await
        .unwrap()
        .unwrap_err();
    assert!(broken.reason.contains("trusted key"), "{broken:?}");
}

async fn workload_more(h: &TestHub) {
    let r = h.sealed(
        "doc-2",
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 2),
        b"{\"ldl\":2}",
    );
    assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
}

/// `pg_dump`/`pg_restore` of the newest installed PostgreSQL, else from PATH.
fn pg_tool(name: &str) -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin").join(name);
            bin.exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run_tool(tool: &Path, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{}`: {e}", tool.display());
    });
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dump_restores_with_a_verified_audit_chain() {
    let Some(h) = TestHub::new(Backend::Postgres).await else {
        return;
    };
    workload(&h).await;
    audit::checkpoint(&h.hub.db, &h.hub.signing_key, h.hub.now())
        .await
        .unwrap()
        .unwrap();
    let trusted = [h.hub.signing_key.verifying_key()];
    let (before, ledger_before) = verified(&h.hub, &trusted).await;

    let url = h.config.file.database_url.clone();
    let cmd = internet_hub::backup::pg_dump_command(&url, Path::new("x.dump")).unwrap();
    assert!(
        cmd.starts_with("pg_dump --format=custom") && cmd.contains("--dbname=renkei_hub_"),
        "{cmd}"
    );

    let dump = h.dir.path().join("hub.dump");
    let dump_s = dump.to_str().unwrap();
    run_tool(
        &pg_tool("pg_dump"),
        &["--format=custom", "--file", dump_s, "--dbname", &url],
    );
    let scratch = tempfile::tempdir().unwrap();
    let target = fresh_db(Backend::Postgres, scratch.path()).await.unwrap();
    run_tool(
        &pg_tool("pg_restore"),
        &["--no-owner", "--exit-on-error", "--dbname", &target, dump_s],
    );

    let (_dir, copy) = reopen(&h, &target).await;
    let (restored, ledger_restored) = verified(&copy, &trusted).await;
    assert_eq!(restored, before);
    assert_eq!(ledger_restored, ledger_before);
    // The restored copy is a working hub: it appends and still verifies.
    audit::append_now(
        &copy.db,
        copy.now(),
        &audit::Entry::allow("admin", "restore.check", "x"),
    )
    .await
    .unwrap();
    let (grown, _) = verified(&copy, &trusted).await;
    assert_eq!(grown.entries, before.entries + 1);
}
