//! The transparency log through the participant API: the signed note, tiles and
//! cosignatures, and witnesses (the client library's) that catch a truncation, a
//! rewrite, a reordering and a fork on their next contact, while `audit verify` catches
//! what the stored cosignatures contradict.

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use renkei_client::witness::{LogSource, Outcome, Seen, Witness};
use renkei_crypto::keys::KeyVersion;
use renkei_crypto::sign::SigningKey;
use renkei_crypto::tlog::{self, note::NoteVerifier};
use serde_json::json;

use crate::harness::{Backend, SUBJECT, TestHub, d, t0};
use renkei_hub::audit::{self, Entry};

/// The log as a participant sees it through the router.
struct Via<'a>(&'a TestHub, &'a str);

impl LogSource for Via<'_> {
    async fn checkpoint(&self) -> renkei_client::Result<String> {
        let (st, body) = self
            .0
            .call_raw(Some(self.1), "GET", "/v1/log/checkpoint", None)
            .await;
        assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        Ok(String::from_utf8(body).unwrap())
    }

    async fn tile(&self, path: &str) -> renkei_client::Result<Vec<u8>> {
        let (st, body) = self
            .0
            .call_raw(Some(self.1), "GET", &format!("/v1/log/{path}"), None)
            .await;
        assert_eq!(
            st,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }

    async fn cosign(&self, size: u64, vkey: &str, line: &str) -> renkei_client::Result<()> {
        let (st, body) = self
            .0
            .call(
                Some(self.1),
                "POST",
                "/v1/log/cosignature",
                Some(json!({"size": size, "vkey": vkey, "cosignature": line})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        Ok(())
    }
}

async fn append(h: &TestHub, n: usize, tag: &str, at: DateTime<Utc>) {
    let items: Vec<_> = (0..n)
        .map(|i| (at, Entry::allow("hub", tag, &format!("{tag}-{i}"))))
        .collect();
    let mut tx = h.hub.db.begin().await.unwrap();
    audit::append_batch(&mut tx, &items).await.unwrap();
    tx.commit().await.unwrap();
}

async fn sign(h: &TestHub) {
    audit::checkpoint_as(
        &h.hub.db,
        &h.hub.signing_key,
        &h.hub.log_origin,
        h.hub.now(),
    )
    .await
    .unwrap();
}

/// A database writer cuts the log back to `k` entries (entries, tree, checkpoints
/// after it, and the chain head), as if they had never been appended.
async fn truncate_to(h: &TestHub, k: i64) {
    let pool = h.hub.db.pool();
    let idx = i64::try_from(tlog::stored_index(0, k as u64)).unwrap();
    for (sql, v) in [
        ("DELETE FROM hub_audit WHERE seq > $1", k),
        ("DELETE FROM hub_log_hashes WHERE idx >= $1", idx),
        ("DELETE FROM hub_checkpoints WHERE seq > $1", k),
        ("DELETE FROM hub_log_cosignatures WHERE seq > $1", k),
    ] {
        sqlx::query(sql).bind(v).execute(pool).await.unwrap();
    }
    let head: String = sqlx::query_scalar("SELECT hash FROM hub_audit WHERE seq = $1")
        .bind(k)
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE hub_sequences SET value = $1, head = $2 WHERE name = 'audit'")
        .bind(k)
        .bind(head)
        .execute(pool)
        .await
        .unwrap();
}

struct Setup {
    h: TestHub,
    log: NoteVerifier,
    key_a: SigningKey,
    key_b: SigningKey,
}

impl Setup {
    async fn new(backend: Backend) -> Option<Setup> {
        let h = TestHub::new(backend).await?;
        h.register_all().await;
        let log =
            NoteVerifier::parse(&audit::log::vkey(&h.hub.log_origin, &h.hub.signing_key).unwrap())
                .unwrap();
        Some(Setup {
            h,
            log,
            key_a: SigningKey::generate(KeyVersion::V1),
            key_b: SigningKey::generate(KeyVersion::V1),
        })
    }

    fn witness<'a>(&'a self, name: &'a str, key: &'a SigningKey) -> Witness<'a> {
        Witness {
            log: &self.log,
            name,
            key,
        }
    }

    /// A contact by `who` (a participant) with the witness named after it.
    async fn contact(&self, who: &str, key: &SigningKey, last: Option<&Seen>) -> Outcome {
        let name = format!("renkei-witness/{who}");
        self.witness(&name, key)
            .contact(&Via(&self.h, who), last, self.h.hub.now())
            .await
            .unwrap()
    }
}

fn accepted(o: Outcome) -> Seen {
    match o {
        Outcome::Accepted { seen, cosigned } => {
            cosigned.unwrap();
            seen
        }
        Outcome::Alarm(a) => panic!("alarm: {a}"),
    }
}

fn alarm(o: Outcome, want: &str) {
    match o {
        Outcome::Alarm(a) => assert!(a.contains(want), "{a}"),
        Outcome::Accepted { seen, .. } => panic!("accepted {seen:?}"),
    }
}

async fn verify_log(h: &TestHub, min: usize) -> Result<audit::log::LogReport, audit::Broken> {
    audit::verify(&h.hub.db, &[h.hub.signing_key.verifying_key()], None)
        .await
        .unwrap()?;
    audit::log::verify(
        &h.hub.db,
        &h.hub.log_origin,
        &[h.hub.signing_key.verifying_key()],
        &[],
        min,
    )
    .await
    .unwrap()
}

async fn served_and_witnessed(backend: Backend) {
    let Some(s) = Setup::new(backend).await else {
        return;
    };
    let h = &s.h;
    append(h, 300, "a", t0()).await;
    sign(h).await;

    // The note is a C2SP checkpoint signed by the key `audit key` prints.
    let (st, note) = h
        .call_raw(Some("phr:asmile"), "GET", "/v1/log/checkpoint", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let note = String::from_utf8(note).unwrap();
    let cp = tlog::note::open_checkpoint(&note, &s.log).unwrap();
    assert!(cp.size >= 300, "{note}");
    assert!(note.starts_with(&format!("{}\n{}\n", h.hub.log_origin, cp.size)));
    // Without a certificate: nothing.
    let (st, _) = h.call_raw(None, "GET", "/v1/log/checkpoint", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Tiles: entry bundles carry the chain hashes, hash tiles the leaf hashes.
    let (st, bundle) = h
        .call_raw(Some("phr:asmile"), "GET", "/v1/log/tile/entries/000", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let entries = tlog::split_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len(), 256);
    let first: String = sqlx::query_scalar("SELECT hash FROM hub_audit WHERE seq = 1")
        .fetch_one(h.hub.db.pool())
        .await
        .unwrap();
    assert_eq!(hex::encode(&entries[0]), first);
    let (st, tile) = h
        .call_raw(Some("phr:asmile"), "GET", "/v1/log/tile/0/001.p/5", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tile.len(), 5 * 32);
    for bad in [
        "/v1/log/tile/0/009",
        "/v1/log/tile/0/000.p/0",
        "/v1/log/tile/8/0/000",
        "/v1/log/tile/entries/005",
    ] {
        let (st, _) = h.call_raw(Some("phr:asmile"), "GET", bad, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{bad}");
    }

    // Two witnesses see it, the log grows, both see it extend what they saw.
    let a1 = accepted(s.contact("source:city-a", &s.key_a, None).await);
    let b1 = accepted(s.contact("phr:asmile", &s.key_b, None).await);
    append(h, 700, "b", t0() + Duration::minutes(1)).await;
    sign(h).await;
    let a2 = accepted(s.contact("source:city-a", &s.key_a, Some(&a1)).await);
    assert!(a2.size >= 1000);
    let b2 = accepted(s.contact("phr:asmile", &s.key_b, Some(&b1)).await);
    assert_eq!(a2.root, b2.root);
    // Unchanged: accepted again (same root).
    accepted(s.contact("source:city-a", &s.key_a, Some(&a2)).await);

    let r = verify_log(h, 1).await.unwrap();
    assert_eq!((r.notes, r.witnesses), (2, 2), "{r:?}");
    assert!(r.cosignatures >= 4 && r.unwitnessed.is_empty(), "{r:?}");
    let r = verify_log(h, 3).await.unwrap();
    assert_eq!(r.unwitnessed.len(), 2, "{r:?}");

    // A witness cannot switch keys, and a cosignature must verify.
    let other = SigningKey::generate(KeyVersion::V1);
    let w = s.witness("renkei-witness/source:city-a", &other);
    let line = tlog::note::cosign(
        &a2.note,
        &tlog::note::NoteSigner::witness("renkei-witness/source:city-a", &other, 1).unwrap(),
    )
    .unwrap();
    let (st, _) = h
        .call(
            Some("source:city-a"),
            "POST",
            "/v1/log/cosignature",
            Some(json!({"size": a2.size, "vkey": w.vkey().unwrap(), "cosignature": line})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = h
        .call(Some("clinic:mysos"), "POST", "/v1/log/cosignature", Some(json!({"size": a2.size, "vkey": w.vkey().unwrap(), "cosignature": line.replace('A', "B")})))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Nor can a participant cosign under another's name, with a valid signature.
    let posing = tlog::note::cosign(
        &a2.note,
        &tlog::note::NoteSigner::witness("renkei-witness/source:city-a", &other, 1).unwrap(),
    )
    .unwrap();
    let (st, v) = h
        .call(
            Some("clinic:mysos"),
            "POST",
            "/v1/log/cosignature",
            Some(json!({"size": a2.size, "vkey": w.vkey().unwrap(), "cosignature": posing})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v.to_string()
            .contains("cosigns as `renkei-witness/clinic:mysos`"),
        "{v}"
    );

    // Stored tree hashes that were edited (tiles and proofs served wrong): named.
    let idx = tlog::stored_index(8, 0);
    sqlx::query("UPDATE hub_log_hashes SET hash = $1 WHERE idx = $2")
        .bind(vec![0u8; 32])
        .bind(i64::try_from(idx).unwrap())
        .execute(h.hub.db.pool())
        .await
        .unwrap();
    let broken = verify_log(h, 1).await.unwrap_err();
    assert!(
        broken.reason.contains(&format!("stored log hash {idx}")),
        "{broken}"
    );
    // ... and a witness that needs them finds they do not match the signed root.
    append(h, 10, "c", t0() + Duration::minutes(2)).await;
    sign(h).await;
    alarm(
        s.contact("source:city-a", &s.key_a, Some(&a1)).await,
        "tiles do not match",
    );
}

/// Truncation, rewrite (same size), reordering and fork (two views) each raise the
/// alarm at the next contact of a witness that saw the log before.
async fn tampering_is_caught(backend: Backend) {
    for case in ["truncate", "rewrite", "reorder", "fork"] {
        let Some(s) = Setup::new(backend).await else {
            return;
        };
        let h = &s.h;
        append(h, 40, "a", t0()).await;
        sign(h).await;
        let a = accepted(s.contact("source:city-a", &s.key_a, None).await);
        let n = i64::try_from(a.size).unwrap();
        let k = n - 10;
        truncate_to(h, k).await;
        match case {
            "truncate" => {}
            // The same number of entries, other contents.
            "rewrite" => append(h, 10, "forged", t0()).await,
            // The same entries in another order (re-appended after the cut).
            "reorder" => {
                let items: Vec<_> = (30..40)
                    .rev()
                    .map(|i| (t0(), Entry::allow("hub", "a", &format!("a-{i}"))))
                    .collect();
                let mut tx = h.hub.db.begin().await.unwrap();
                audit::append_batch(&mut tx, &items).await.unwrap();
                tx.commit().await.unwrap();
            }
            // Another history, longer than the one witness A saw, shown to witness B.
            _ => append(h, 25, "other", t0()).await,
        }
        sign(h).await;
        // The hub's own checks pass: chain, tree and notes were all redone by the
        // writer and the running hub, and the cosignatures after the cut are gone.
        let r = verify_log(h, 1).await.unwrap();
        assert!(
            !r.unwitnessed.is_empty(),
            "{case}: the new head is unwitnessed: {r:?}"
        );
        if case == "fork" {
            // A fresh witness accepts the other view ...
            accepted(s.contact("phr:asmile", &s.key_b, None).await);
        }
        // ... the witness that saw the first one does not.
        let want = match case {
            "truncate" => "shrank",
            "rewrite" | "reorder" => "rewritten",
            _ => "does not extend",
        };
        alarm(s.contact("source:city-a", &s.key_a, Some(&a)).await, want);
    }
}

/// Checkpoints rewritten in place contradict the cosignatures stored for them.
async fn verify_checks_stored_cosignatures(backend: Backend) {
    let Some(s) = Setup::new(backend).await else {
        return;
    };
    let h = &s.h;
    append(h, 40, "a", t0()).await;
    sign(h).await;
    let a = accepted(s.contact("source:city-a", &s.key_a, None).await);
    let n = i64::try_from(a.size).unwrap();
    // Cut and re-append to the same size, keeping the cosignature rows.
    let pool = h.hub.db.pool();
    let idx = i64::try_from(tlog::stored_index(0, (n - 5) as u64)).unwrap();
    sqlx::query("DELETE FROM hub_audit WHERE seq > $1")
        .bind(n - 5)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM hub_log_hashes WHERE idx >= $1")
        .bind(idx)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM hub_checkpoints WHERE seq > $1")
        .bind(n - 5)
        .execute(pool)
        .await
        .unwrap();
    let head: String = sqlx::query_scalar("SELECT hash FROM hub_audit WHERE seq = $1")
        .bind(n - 5)
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE hub_sequences SET value = $1, head = $2 WHERE name = 'audit'")
        .bind(n - 5)
        .bind(head)
        .execute(pool)
        .await
        .unwrap();
    append(h, 5, "forged", t0()).await;
    sign(h).await;
    let broken = verify_log(h, 1).await.unwrap_err();
    assert!(
        broken.reason.contains("changed after the witness saw it"),
        "{broken}"
    );
}

#[tokio::test]
async fn served_and_witnessed_sqlite() {
    served_and_witnessed(Backend::Sqlite).await;
}

#[tokio::test]
async fn served_and_witnessed_postgres() {
    served_and_witnessed(Backend::Postgres).await;
}

#[tokio::test]
async fn tampering_is_caught_sqlite() {
    tampering_is_caught(Backend::Sqlite).await;
}

#[tokio::test]
async fn tampering_is_caught_postgres() {
    tampering_is_caught(Backend::Postgres).await;
}

#[tokio::test]
async fn verify_checks_stored_cosignatures_sqlite() {
    verify_checks_stored_cosignatures(Backend::Sqlite).await;
}

#[tokio::test]
async fn verify_checks_stored_cosignatures_postgres() {
    verify_checks_stored_cosignatures(Backend::Postgres).await;
}

/// Runs the interoperability check (pymerkle and pyca/cryptography) on `input`; `None`
/// when they are not installed here (CI installs them: `.ci/run`).
fn python_check(input: &std::path::Path) -> Option<std::process::Output> {
    let have = std::process::Command::new("python3")
        .args(["-c", "import pymerkle, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install pymerkle and cryptography (see .ci/run)"
        );
        eprintln!(
            "NOTE: python3 with pymerkle and cryptography is missing; skipping the interoperability test"
        );
        return None;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pymerkle_check.py");
    Some(
        std::process::Command::new("python3")
            .arg(script)
            .arg(input)
            .output()
            .unwrap(),
    )
}

/// An implementation not written for Renkei verifies the hub's checkpoints, inclusion
/// proofs and a consistency proof; an altered proof fails there too.
#[tokio::test]
async fn proofs_verify_with_pymerkle() {
    let Some(s) = Setup::new(Backend::Sqlite).await else {
        return;
    };
    let h = &s.h;
    append(h, 511, "a", t0()).await;
    sign(h).await;
    let (_, old_note) = h
        .call_raw(Some("phr:asmile"), "GET", "/v1/log/checkpoint", None)
        .await;
    append(h, 300, "b", t0()).await;
    sign(h).await;
    let (_, new_note) = h
        .call_raw(Some("phr:asmile"), "GET", "/v1/log/checkpoint", None)
        .await;
    let (old_note, new_note) = (
        String::from_utf8(old_note).unwrap(),
        String::from_utf8(new_note).unwrap(),
    );
    let old = tlog::note::open_checkpoint(&old_note, &s.log).unwrap().size;
    let new = tlog::note::open_checkpoint(&new_note, &s.log).unwrap().size;
    let leaves: Vec<String> =
        sqlx::query_scalar("SELECT hash FROM hub_audit WHERE seq <= $1 ORDER BY seq")
            .bind(i64::try_from(new).unwrap())
            .fetch_all(h.hub.db.pool())
            .await
            .unwrap();
    let mut conn = h.hub.db.pool().acquire().await.unwrap();
    let b64 = |p: Vec<tlog::Hash>| p.iter().map(tlog::hash_to_base64).collect::<Vec<_>>();
    let mut inclusion = Vec::new();
    for (index, size) in [(0, new), (5, new), (old - 1, new), (new - 1, new), (3, old)] {
        let proof = audit::tree::inclusion(&mut conn, size, index)
            .await
            .unwrap();
        inclusion.push(json!({"index": index, "size": size, "proof": b64(proof)}));
    }
    let consistency = b64(audit::tree::consistency(&mut conn, new, old).await.unwrap());
    let input = json!({
        "vkey": s.log.vkey(),
        "old_note": old_note,
        "new_note": new_note,
        "leaves": leaves,
        "inclusion": inclusion,
        "consistency": {"proof": consistency},
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interop.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let Some(out) = python_check(&file) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("interop OK"));

    // One hash of the consistency proof altered: refused there as well.
    let mut bad = input.clone();
    bad["consistency"]["proof"][0] = json!(tlog::hash_to_base64(&tlog::leaf_hash(b"x")));
    std::fs::write(&file, bad.to_string()).unwrap();
    let out = python_check(&file).unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("consistency proof"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An inclusion proof for another index: refused.
    let mut bad = input;
    bad["inclusion"][1]["index"] = json!(6);
    std::fs::write(&file, bad.to_string()).unwrap();
    assert!(!python_check(&file).unwrap().status.success());
}

/// A resident's proof file for one entry verifies offline against the log key, and
/// not once the entry, the proof or the key is different.
#[tokio::test]
async fn entry_proofs_verify_offline() {
    let Some(s) = Setup::new(Backend::Sqlite).await else {
        return;
    };
    let h = &s.h;
    append(h, 300, "a", t0()).await;
    sign(h).await;
    assert!(
        audit::log::entry_proof(&h.hub.db, 5).await.is_err(),
        "not witnessed yet"
    );
    accepted(s.contact("source:city-a", &s.key_a, None).await);
    accepted(s.contact("phr:asmile", &s.key_b, None).await);
    let p = audit::log::entry_proof(&h.hub.db, 123).await.unwrap();
    let file = serde_json::to_vec(&p).unwrap();
    let vkey = s.log.vkey();
    let ok = renkei_client::proof::verify(&file, &vkey).unwrap();
    assert_eq!(ok.seq, 123);
    assert_eq!(
        ok.cosigners,
        vec!["renkei-witness/phr:asmile", "renkei-witness/source:city-a"]
    );

    let mut edited = p.clone();
    edited.entry.actor = "clinic:other".into();
    assert!(renkei_client::proof::verify(&serde_json::to_vec(&edited).unwrap(), &vkey).is_err());
    let mut moved = p.clone();
    moved.entry.seq = 124;
    assert!(renkei_client::proof::verify(&serde_json::to_vec(&moved).unwrap(), &vkey).is_err());
    let mut wrong = p.clone();
    wrong.proof.swap(0, 1);
    assert!(renkei_client::proof::verify(&serde_json::to_vec(&wrong).unwrap(), &vkey).is_err());
    let other = SigningKey::generate(KeyVersion::V1);
    let other_key = audit::log::vkey(&h.hub.log_origin, &other).unwrap();
    assert!(renkei_client::proof::verify(&file, &other_key).is_err());
}

/// Each checkpoint names the consent ledger's head, witnesses cosign it: a ledger
/// rewritten up to a witnessed head, or a consent table changed behind the ledger (a
/// revoked consent set active again), is found by `audit verify` and by the next witness.
async fn the_consent_ledger_is_bound_to_the_checkpoints(backend: Backend) {
    let Some(s) = Setup::new(backend).await else {
        return;
    };
    let h = &s.h;
    let r = h.sealed("doc-1", SUBJECT, "checkup.body", d(2026, 5, 1), b"{}");
    assert_eq!(h.upload(&[&r]).await.0, StatusCode::OK);
    let mut ids = Vec::new();
    for recipient in ["phr:asmile", "analyst:hachioji"] {
        let purpose = if recipient == "phr:asmile" {
            "phr-display"
        } else {
            "care-prevention-evaluation"
        };
        let (st, v) = h
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/consents",
                Some(json!({
                    "subject": SUBJECT, "recipient": recipient, "purpose": purpose,
                    "categories": ["checkup.body"], "method": "counter", "granted_by": "resident",
                    "valid_until": (t0() + Duration::days(30)).to_rfc3339()
                })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        ids.push(v["consent"]["id"].as_str().unwrap().to_owned());
    }
    let revoked = &ids[0];
    let (st, v) = h
        .call(
            Some("source:city-a"),
            "POST",
            &format!("/v1/consents/{revoked}/revoke"),
            Some(json!({"reason": "asked"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    sign(h).await;
    let a = accepted(s.contact("source:city-a", &s.key_a, None).await);
    assert!(a.note.contains("\nrenkei-consent-ledger 3 "), "{}", a.note);
    let report = verify_log(h, 1).await.unwrap();
    let head = report.ledger_head.unwrap();
    assert_eq!(head.seq, 3);

    // The revoked consent set active again in the table: the ledger says otherwise.
    let pool = h.hub.db.pool();
    // `table` is `consents` (keyed by `id`) or `consent_categories` (by `consent_id`).
    let set_status = async |table: &str, key: &str, status: &str| {
        sqlx::query(&format!("UPDATE {table} SET status = $1 WHERE {key} = $2"))
            .bind(status)
            .bind(revoked)
            .execute(pool)
            .await
            .unwrap();
    };
    set_status("consents", "id", "active").await;
    let broken = verify_log(h, 1).await.unwrap_err();
    assert!(broken.reason.contains("behind the ledger"), "{broken:?}");
    set_status("consents", "id", "revoked").await;
    verify_log(h, 1).await.unwrap();
    // The same in the per-category rows that reads and grants are decided on.
    set_status("consent_categories", "consent_id", "active").await;
    let broken = verify_log(h, 1).await.unwrap_err();
    assert!(broken.reason.contains("behind the ledger"), "{broken:?}");
    set_status("consent_categories", "consent_id", "revoked").await;
    verify_log(h, 1).await.unwrap();

    // The witnessed head rewritten: `audit verify` and the witness's next contact.
    let forged = "f".repeat(64);
    sqlx::query("UPDATE consent_ledger SET hash = $1 WHERE seq = 3")
        .bind(&forged)
        .execute(pool)
        .await
        .unwrap();
    let broken = verify_log(h, 1).await.unwrap_err();
    assert!(broken.reason.contains("rewritten"), "{broken:?}");
    append(h, 1, "after", t0()).await;
    sign(h).await;
    alarm(
        s.contact("source:city-a", &s.key_a, Some(&a)).await,
        "consent ledger was rewritten",
    );
}

#[tokio::test]
async fn the_consent_ledger_is_bound_to_the_checkpoints_sqlite() {
    the_consent_ledger_is_bound_to_the_checkpoints(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_consent_ledger_is_bound_to_the_checkpoints_postgres() {
    the_consent_ledger_is_bound_to_the_checkpoints(Backend::Postgres).await;
}
