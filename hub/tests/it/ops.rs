//! Operations: backup and restore of the hub database on both backends, signing-key
//! rotation with checkpoints chained across keys, and certificate expiry listings.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::StatusCode;
use renkei_consent::{ChainReport, ConsentStore};
use renkei_hub::audit;
use renkei_hub::broker::{Clock, Hub};
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
    let hub = renkei_hub::app::build_hub(&cfg, Clock::System)
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
    let written = renkei_hub::backup::sqlite_backup(&h.hub.db, &out)
        .await
        .unwrap();
    assert!(written.bytes > 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = renkei_hub::backup::sqlite_backup(&h.hub.db, &out)
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

    let url = h.config.database_url.clone();
    let cmd = renkei_hub::backup::pg_dump_command(&url, Path::new("x.dump")).unwrap();
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

/// A config like `h`'s whose `keys.signing` names `file`, in the same folder.
fn config_with_signing(h: &TestHub, file: &str) -> renkei_hub::config::HubConfig {
    let text = std::fs::read_to_string(&h.config.path)
        .unwrap()
        .replace("keys/signing.key", &format!("keys/{file}"));
    let path = h.dir.path().join(format!("hub-{file}.toml"));
    std::fs::write(&path, text).unwrap();
    renkei_hub::config::HubConfig::load(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotation_chains_checkpoints_across_keys() {
    use audit::rotation;
    use renkei_crypto::sign::SigningKey;

    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    workload(&h).await;
    let old = h.hub.signing_key.verifying_key();
    audit::checkpoint(&h.hub.db, &h.hub.signing_key, h.hub.now())
        .await
        .unwrap()
        .unwrap();
    let signing = h.config.keys.signing.clone();

    let r = rotation::rotate(&h.hub.db, &h.hub.signing_key, &signing, h.hub.now())
        .await
        .unwrap();
    assert_eq!(r.version.to_string(), "v2");
    assert!(r.path.ends_with("keys/signing-v2.key"), "{:?}", r.path);
    assert_eq!(
        r.endorsement.public_key,
        old.to_base64(),
        "the old key endorses"
    );
    let listed = rotation::read_trusted(&rotation::trusted_path(&signing)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1, old);

    // A hub on the new key: more work, then checkpoints under the new key.
    let cfg = config_with_signing(&h, "signing-v2.key");
    let dir = tempfile::tempdir().unwrap();
    let h2 = TestHub::on_config(cfg.clone(), dir).await;
    assert_eq!(h2.hub.signing_key.verifying_key(), r.public_key);
    workload_more(&h2).await;
    let first_new = audit::checkpoint(&h2.hub.db, &h2.hub.signing_key, h2.hub.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_new.public_key, r.public_key.to_base64());
    let (st, _) = h2.call(Some("phr:asmile"), "GET", "/v1/feed", None).await;
    assert_eq!(st, StatusCode::OK);
    let second_new = audit::checkpoint(&h2.hub.db, &h2.hub.signing_key, h2.hub.now())
        .await
        .unwrap()
        .unwrap();
    assert!(second_new.seq > first_new.seq);

    // The first checkpoint under the new key covers the entry naming the old key.
    let row = sqlx::query("SELECT action, object, reason FROM hub_audit WHERE seq = $1")
        .bind(first_new.seq)
        .fetch_one(h2.hub.db.pool())
        .await
        .unwrap();
    use sqlx::Row;
    assert_eq!(row.get::<String, _>("action"), "audit.key_change");
    assert_eq!(
        row.get::<String, _>("object"),
        rotation::fingerprint(&r.public_key)
    );
    assert_eq!(
        row.get::<String, _>("reason"),
        format!("previous key {}", rotation::fingerprint(&old))
    );

    // `audit verify` trusts the current key and the listed old one ...
    let trusted = rotation::trusted_keys(&cfg.keys.signing, &r.public_key).unwrap();
    assert_eq!(trusted.len(), 2);
    let report = audit::verify(&h2.hub.db, &trusted, None)
        .await
        .unwrap()
        .expect("chain verifies across keys");
    assert_eq!(report.checkpoints, 4, "{report:?}");
    // ... and nothing less: without the old key its checkpoints are untrusted.
    let broken = audit::verify(&h2.hub.db, &[r.public_key], None)
        .await
        .unwrap()
        .unwrap_err();
    assert!(broken.reason.contains("trusted key"), "{broken:?}");

    // A checkpoint by a key nobody listed is rejected even though it is well signed.
    let stranger = SigningKey::generate(renkei_crypto::keys::KeyVersion::new(9));
    workload_more_at(&h2, "doc-3").await;
    let forged = audit::checkpoint(&h2.hub.db, &stranger, h2.hub.now())
        .await
        .unwrap()
        .unwrap();
    let broken = audit::verify(&h2.hub.db, &trusted, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, forged.seq);
    assert!(broken.reason.contains("trusted key"), "{broken:?}");
    sqlx::query("DELETE FROM hub_checkpoints WHERE seq = $1")
        .bind(forged.seq)
        .execute(h2.hub.db.pool())
        .await
        .unwrap();
    assert!(
        audit::verify(&h2.hub.db, &trusted, None)
            .await
            .unwrap()
            .is_ok()
    );

    // A key change that does not name the previous key is rejected: the old key signs
    // a checkpoint directly, without the `audit.key_change` entry.
    workload_more_at(&h2, "doc-4").await;
    let old_key = SigningKey::load(&signing).unwrap();
    let head = sqlx::query("SELECT value, head FROM hub_sequences WHERE name = 'audit'")
        .fetch_one(h2.hub.db.pool())
        .await
        .unwrap();
    let (seq, head_hash): (i64, String) = (head.get("value"), head.get("head"));
    let at = h2.hub.now();
    let sig = old_key.sign(&renkei_protocol::checkpoint_bytes(seq, &head_hash, at));
    sqlx::query(
        "INSERT INTO hub_checkpoints (seq, head_hash, at, key_version, public_key, signature) \
         VALUES ($1,$2,$3,$4,$5,$6)",
    )
    .bind(seq)
    .bind(&head_hash)
    .bind(at.timestamp_micros())
    .bind("v1")
    .bind(old.to_base64())
    .bind(sig.to_base64())
    .execute(h2.hub.db.pool())
    .await
    .unwrap();
    let broken = audit::verify(&h2.hub.db, &trusted, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, seq);
    assert!(broken.reason.contains("previous key"), "{broken:?}");
}

async fn workload_more_at(h: &TestHub, doc: &str) {
    let r = h.sealed(
        doc,
        SUBJECT,
        "checkup.lipids",
        d(2026, 5, 3),
        b"{\"ldl\":3}",
    );
    assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
}

#[test]
fn certificates_expiring_soon_are_flagged() {
    use renkei_hub::pki;
    use renkei_hub::registry::{CertState, certificate_status};

    let dir = tempfile::tempdir().unwrap();
    let (pki_dir, out) = (dir.path().join("pki"), dir.path().join("certs"));
    let t = crate::harness::t0();
    pki::init(&pki_dir, &["localhost".into()], &[], 397, t).unwrap();
    let issue = |who: &str, days: u32, sub: &str| {
        pki::issue(&pki_dir, &who.parse().unwrap(), &out.join(sub), days, t).unwrap()
    };
    let short = issue("phr:short", 10, "a");
    let long = issue("phr:long", 200, "a");
    let old = issue("clinic:renewed", 5, "a");
    let new = issue("clinic:renewed", 300, "b");
    let revoked = issue("analyst:gone", 3, "a");
    pki::revoke(&pki_dir, &revoked, t).unwrap();

    let index = pki::Index::load(&pki_dir).unwrap();
    let state = |all: &[renkei_hub::registry::CertStatus], serial: &str| {
        all.iter().find(|c| c.serial == serial).map(|c| c.state)
    };
    let all = certificate_status(&index, t, chrono::Duration::days(30));
    assert_eq!(state(&all, &short), Some(CertState::Expiring));
    assert_eq!(state(&all, &long), Some(CertState::Valid));
    assert_eq!(
        state(&all, &old),
        Some(CertState::Renewed),
        "a newer one exists"
    );
    assert_eq!(state(&all, &new), Some(CertState::Valid));
    assert_eq!(
        state(&all, &revoked),
        None,
        "revoked certificates are not listed"
    );
    assert_eq!(all.first().unwrap().serial, old, "soonest first");
    assert_eq!(
        all.iter().filter(|c| c.state.needs_renewal()).count(),
        1,
        "{all:#?}"
    );
    // Later: the short one has expired, and the CA and server enter a 400-day window.
    let later = certificate_status(
        &index,
        t + chrono::Duration::days(11),
        chrono::Duration::days(400),
    );
    assert_eq!(state(&later, &short), Some(CertState::Expired));
    assert!(
        later
            .iter()
            .any(|c| c.participant.is_none() && c.state == CertState::Expiring)
    );
    assert_eq!(
        later.iter().find(|c| c.serial == short).unwrap().days_left,
        -1
    );
}

#[test]
fn expiry_commands_name_what_to_renew() {
    use renkei_hub::pki;

    let bin = crate::harness::hub_bin();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let now = Clock::System.now();
    pki::init(&pki_dir, &["localhost".into()], &[], 397, now).unwrap();
    let short = pki::issue(
        &pki_dir,
        &"phr:short".parse().unwrap(),
        &dir.path().join("c"),
        7,
        now,
    )
    .unwrap();
    let long = pki::issue(
        &pki_dir,
        &"clinic:long".parse().unwrap(),
        &dir.path().join("c"),
        300,
        now,
    )
    .unwrap();
    // A participant of the PKI that this hub does not register.
    pki::issue(
        &pki_dir,
        &"phr:elsewhere".parse().unwrap(),
        &dir.path().join("c"),
        7,
        now,
    )
    .unwrap();

    let run = |args: &[&str]| {
        let out = Command::new(&bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let p = pki_dir.to_str().unwrap();
    let text = run(&["pki", "expiring", "--dir", p, "--days", "30"]);
    assert!(
        text.contains(&short) && text.contains("EXPIRING") && text.contains("phr:short"),
        "{text}"
    );
    assert!(!text.contains(&long), "{text}");
    let text = run(&["pki", "expiring", "--dir", p, "--days", "3"]);
    assert!(
        text.contains("no certificate expires within 3 days"),
        "{text}"
    );

    let cfg = write_config(
        dir.path(),
        &format!("sqlite://{}", dir.path().join("hub.db").display()),
        &fixture::source_dir(),
    );
    let c = cfg.path.to_str().unwrap();
    for who in ["phr:short", "clinic:long", "analyst:none"] {
        run(&["participants", "--config", c, "add", who]);
    }
    let text = run(&["participants", "--config", c, "list", "--pki", p]);
    let block = |who: &str| {
        text.split_once(who)
            .map(|(_, rest)| rest.lines().take(2).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    };
    assert!(
        block("phr:short").contains(&format!("serial {short}"))
            && block("phr:short").contains("EXPIRING"),
        "{text}"
    );
    assert!(block("clinic:long").contains("valid"), "{text}");
    assert!(
        block("analyst:none").contains("no live certificate"),
        "{text}"
    );
    // Counted as listed: the unregistered participant's certificate is told apart.
    assert!(
        text.contains("1 certificate(s) expire within 30 days")
            && text.contains("1 more of participants not registered here"),
        "{text}"
    );
    let text = run(&[
        "participants",
        "--config",
        c,
        "list",
        "--pki",
        p,
        "--expiring-within",
        "5",
    ]);
    assert!(
        text.contains("0 certificate(s) expire within 5 days"),
        "{text}"
    );
}
