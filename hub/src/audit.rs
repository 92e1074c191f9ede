//! The tamper-evident audit log: every decision is appended to a hash chain in the
//! same transaction as the decision, and checkpoints (sequence, head hash) are signed
//! with the hub's Ed25519 key. [`verify`] names the first bad entry.
//!
//! When the signing key changes, the first checkpoint under the new key covers an
//! `audit.key_change` entry naming the previous key's fingerprint, so the chain across
//! keys is explicit; [`rotation`] writes new key versions and keeps the trusted old keys.
//!
//! The entries are also the leaves of a Merkle tree ([`tree`], RFC 6962 hashing), and
//! each checkpoint is also a C2SP signed note over that tree, which witnesses check and
//! cosign ([`log`], docs/transparency-log.md).

pub mod log;
pub mod rotation;
pub mod tree;

use chrono::{DateTime, Utc};
use renkei_crypto::sign::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::db::{self, Db};
use crate::error::{Error, Result, retry};
pub use renkei_protocol::Checkpoint;

/// One decision to record. Empty strings mean "not applicable".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Who acted: `kind:id`, `resident`, `admin` or `hub`.
    pub actor: String,
    /// What was decided: `ingest`, `consent.grant`, `consent.revoke`, `read`, `key_grant`, ...
    pub action: String,
    /// What it was about (record id, consent id, enrollment id).
    pub object: String,
    /// The subject token concerned, if any (lets the portal show a resident their history).
    pub subject: String,
    /// The consent the decision relied on, if any.
    pub consent: String,
    /// The data category concerned, if any.
    pub category: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why (for denials: the reasons).
    pub reason: String,
}

impl Entry {
    /// An allowed action.
    pub fn allow(actor: &str, action: &str, object: &str) -> Self {
        Entry {
            actor: bounded(actor),
            action: bounded(action),
            object: bounded(object),
            decision: "allow".to_owned(),
            ..Entry::default()
        }
    }

    /// A denied action with its reason.
    pub fn deny(actor: &str, action: &str, object: &str, reason: &str) -> Self {
        Entry {
            decision: "deny".to_owned(),
            reason: crate::broker::bounded::text(reason, MAX_REASON),
            ..Entry::allow(actor, action, object)
        }
    }

    /// Sets the subject, consent and category.
    pub fn about(mut self, subject: &str, consent: &str, category: &str) -> Self {
        self.subject = bounded(subject);
        self.consent = bounded(consent);
        self.category = bounded(category);
        self
    }
}

/// Longest audited field (ids, categories), in characters. Caller input is stored only
/// in this bounded, escaped form.
const MAX_FIELD: usize = 512;
/// Longest audited reason, in characters.
const MAX_REASON: usize = 500;

fn bounded(s: &str) -> String {
    crate::broker::bounded::text(s, MAX_FIELD)
}

/// The bytes an entry's hash covers: the previous hash, the sequence, the time and
/// every field, length-prefixed so no two entries share an encoding
/// ([`renkei_crypto::tlog::audit_entry_hash`], which residents' proof files use too).
/// With a `salt` (every entry about a resident since the salts came in), the subject
/// and the object are covered by their [`commitment`]s: a proof file shows those, so it
/// carries neither the shared subject token nor the hub's record id.
fn entry_hash(prev_hash: &str, seq: i64, at: i64, e: &Entry, salt: Option<&str>) -> String {
    let (object, subject) = proved_fields(e, salt);
    renkei_crypto::tlog::audit_entry_hash(
        prev_hash,
        seq,
        at,
        [
            &e.actor,
            &e.action,
            &object,
            &subject,
            &e.consent,
            &e.category,
            &e.decision,
            &e.reason,
        ],
    )
}

/// The object and subject as the chain hash covers them (and a proof file shows them):
/// their commitments under `salt`, or themselves for entries written without one.
pub(crate) fn proved_fields(e: &Entry, salt: Option<&str>) -> (String, String) {
    match salt {
        Some(salt) => (commitment(salt, &e.object), commitment(salt, &e.subject)),
        None => (e.object.clone(), e.subject.clone()),
    }
}

/// `ac1_` and the hex SHA-256 of the salt and `value`, length-prefixed; an empty value
/// stays empty. Without the salt (kept by the hub only) the commitment cannot be tested
/// against a guessed token or record id, and two entries about one resident share none.
pub fn commitment(salt: &str, value: &str) -> String {
    use sha2::{Digest, Sha256};
    if value.is_empty() {
        return String::new();
    }
    let mut h = Sha256::new();
    for part in ["renkei audit commitment v1", salt, value] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("ac1_{}", hex::encode(h.finalize()))
}

/// Whether `value` has the form of a [`commitment`]: no stored subject or object has it,
/// so an unsalted entry holding one had its salt removed and its values replaced by
/// their commitments, which would otherwise hash as the salted entry did.
fn looks_committed(value: &str) -> bool {
    value
        .strip_prefix("ac1_")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// A fresh salt for an entry about a resident (128 random bits, hex); none otherwise.
fn salt_for(e: &Entry) -> Option<String> {
    use rand::RngCore;
    if e.subject.is_empty() {
        return None;
    }
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    Some(hex::encode(salt))
}

/// Appends an entry inside the caller's transaction. Appenders are serialized by the
/// lock on the `audit` sequence row, so the chain never forks.
pub async fn append(conn: &mut AnyConnection, now: DateTime<Utc>, e: &Entry) -> Result<i64> {
    append_batch(conn, &[(now, e.clone())]).await
}

/// Rows per multi-row `INSERT` (13 parameters each, well under both databases' limits).
const ROWS_PER_INSERT: usize = 256;

/// Appends entries, in order, inside the caller's transaction, taking the chain's lock
/// once for all of them. Returns the sequence number of the last one.
pub async fn append_batch(
    conn: &mut AnyConnection,
    items: &[(DateTime<Utc>, Entry)],
) -> Result<i64> {
    let (first, mut prev) = db::reserve_in_sequence(conn, "audit", items.len()).await?;
    let mut seq = first;
    let mut leaves = Vec::with_capacity(items.len());
    for chunk in items.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO hub_audit (seq, at, actor, action, object, subject, consent, category, \
             decision, reason, prev_hash, hash, salt) VALUES {}",
            db::values_rows(conn, chunk.len(), 13)
        );
        let mut rows = Vec::with_capacity(chunk.len());
        for (at, e) in chunk {
            let at = db::micros(*at);
            let salt = salt_for(e);
            let hash = entry_hash(&prev, seq, at, e, salt.as_deref());
            leaves.push(tree::leaf_hash(&hash)?);
            let prev_hash = std::mem::replace(&mut prev, hash.clone());
            rows.push((seq, at, e, prev_hash, hash, salt));
            seq += 1;
        }
        let mut q = sqlx::query(&sql);
        for (seq, at, e, prev_hash, hash, salt) in rows {
            q = q
                .bind(seq)
                .bind(at)
                .bind(e.actor.as_str())
                .bind(e.action.as_str())
                .bind(e.object.as_str())
                .bind(e.subject.as_str())
                .bind(e.consent.as_str())
                .bind(e.category.as_str())
                .bind(e.decision.as_str())
                .bind(e.reason.as_str())
                .bind(prev_hash)
                .bind(hash)
                .bind(salt);
        }
        q.execute(&mut *conn).await?;
    }
    db::set_sequence_head(conn, "audit", &prev).await?;
    tree::append(conn, (first - 1).unsigned_abs(), &leaves).await?;
    Ok(seq - 1)
}

/// Appends one entry in a transaction of its own.
pub async fn append_now(db: &Db, now: DateTime<Utc>, e: &Entry) -> Result<i64> {
    let mut tx = db.begin().await?;
    let seq = append(&mut tx, now, e).await?;
    tx.commit().await?;
    Ok(seq)
}

/// Most entries one group commit writes.
const GROUP_MAX: usize = 4096;

/// Appends for decisions that change nothing else (reads, feed pages): callers hand
/// their entries over and wait until they are committed, and one task writes whatever
/// has queued meanwhile in one transaction. The chain's lock is then taken once per
/// group instead of once per request, so reads do not queue behind each other's
/// commits; a caller releases nothing until its entries are durable.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

#[derive(Debug)]
struct Job {
    entries: Vec<(DateTime<Utc>, Entry)>,
    done: oneshot::Sender<std::result::Result<(), std::sync::Arc<Error>>>,
}

impl Writer {
    /// Starts the writing task on the current runtime; it ends when the last handle is
    /// dropped.
    pub fn spawn(db: Db) -> Writer {
        let (queue, jobs) = mpsc::channel(GROUP_MAX);
        tokio::spawn(write_groups(db, jobs));
        Writer { queue }
    }

    /// Appends `entries` (all decided at `now`), returning once they are committed.
    pub async fn record(&self, now: DateTime<Utc>, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        let job = Job {
            entries: entries.into_iter().map(|e| (now, e)).collect(),
            done,
        };
        let stopped = || Error::unavailable("audit log writer has stopped");
        self.queue.send(job).await.map_err(|_| stopped())?;
        committed
            .await
            .map_err(|_| stopped())?
            .map_err(|cause| Error::unavailable_from("audit log", cause))
    }
}

async fn write_groups(db: Db, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut n = first.entries.len();
        let mut group = vec![first];
        while n < GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => {
                    n += job.entries.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let items: Vec<_> = group.iter_mut().flat_map(|j| j.entries.drain(..)).collect();
        let outcome = retry(|| async {
            let mut tx = db.begin().await?;
            append_batch(&mut tx, &items).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
        .map_err(|e| {
            let error = crate::error::report(&e);
            tracing::error!(%error, entries = items.len(), "audit group commit failed");
            std::sync::Arc::new(e)
        });
        for job in group {
            let _ = job.done.send(outcome.clone());
        }
    }
}

/// Signs a checkpoint over the current head if the chain grew since the last one, as
/// the log [`log::DEFAULT_ORIGIN`].
pub async fn checkpoint(
    db: &Db,
    key: &SigningKey,
    now: DateTime<Utc>,
) -> Result<Option<Checkpoint>> {
    checkpoint_as(db, key, log::DEFAULT_ORIGIN, now).await
}

/// Signs a checkpoint over the current head if the chain grew since the last one: the
/// chain head, and a signed note (log `origin`) over the tree's root.
pub async fn checkpoint_as(
    db: &Db,
    key: &SigningKey,
    origin: &str,
    now: DateTime<Utc>,
) -> Result<Option<Checkpoint>> {
    let mut tx = db.begin().await?;
    // Lock the audit row so the head cannot move while we sign it.
    sqlx::query("UPDATE hub_sequences SET value = value WHERE name = 'audit'")
        .execute(&mut *tx)
        .await?;
    let latest =
        sqlx::query("SELECT seq, public_key FROM hub_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let (last, previous_key): (Option<i64>, Option<String>) = match latest {
        Some(r) => (Some(r.try_get("seq")?), Some(r.try_get("public_key")?)),
        None => (None, None),
    };
    let public_key = key.verifying_key().to_base64();
    if let Some(previous) = previous_key.filter(|p| *p != public_key) {
        // The first checkpoint under a new key signs a head that names the old key.
        append(
            &mut tx,
            now,
            &rotation::key_change_entry(&public_key, &previous),
        )
        .await?;
    }
    let row = sqlx::query("SELECT value, head FROM hub_sequences WHERE name = 'audit'")
        .fetch_one(&mut *tx)
        .await?;
    let (seq, head): (i64, String) = (row.try_get("value")?, row.try_get("head")?);
    if seq == 0 || last.is_some_and(|l| l >= seq) {
        tx.commit().await?;
        return Ok(None);
    }
    let signature = key
        .sign(&renkei_protocol::checkpoint_bytes(seq, &head, now))
        .to_base64();
    let size = seq.unsigned_abs();
    let ledger = log::ledger_head(&mut tx).await?;
    let note = log::sign(origin, key, size, tree::root(&mut tx, size).await?, ledger)?;
    let cp = Checkpoint {
        seq,
        head_hash: head,
        at: now,
        key_version: key.version().to_string(),
        public_key,
        signature,
        note,
    };
    sqlx::query(
        "INSERT INTO hub_checkpoints (seq, head_hash, at, key_version, public_key, signature, \
         note) VALUES ($1,$2,$3,$4,$5,$6,$7)",
    )
    .bind(cp.seq)
    .bind(&cp.head_hash)
    .bind(db::micros(cp.at))
    .bind(&cp.key_version)
    .bind(&cp.public_key)
    .bind(&cp.signature)
    .bind(&cp.note)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(cp))
}

/// How many entries were appended since the latest checkpoint.
pub async fn pending_entries(db: &Db) -> Result<i64> {
    let head: i64 = sqlx::query("SELECT value FROM hub_sequences WHERE name = 'audit'")
        .fetch_one(db.pool())
        .await?
        .try_get("value")?;
    let last: Option<i64> = sqlx::query("SELECT MAX(seq) AS s FROM hub_checkpoints")
        .fetch_one(db.pool())
        .await?
        .try_get("s")?;
    Ok(head - last.unwrap_or(0))
}

/// The latest signed checkpoint, if any.
pub async fn latest_checkpoint(db: &Db) -> Result<Option<Checkpoint>> {
    let row = sqlx::query(
        "SELECT seq, head_hash, at, key_version, public_key, signature, note FROM \
         hub_checkpoints ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| checkpoint_from_row(&r)).transpose()
}

fn checkpoint_from_row(r: &sqlx::any::AnyRow) -> Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.try_get("seq")?,
        head_hash: r.try_get("head_hash")?,
        at: db::from_micros(r.try_get("at")?)?,
        key_version: r.try_get("key_version")?,
        public_key: r.try_get("public_key")?,
        signature: r.try_get("signature")?,
        note: r.try_get("note")?,
    })
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Entries checked.
    pub entries: i64,
    /// Checkpoints whose signature and head matched.
    pub checkpoints: usize,
    /// The head hash of the chain.
    pub head: String,
}

/// The first problem verification found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct Broken {
    /// The first bad entry (for a truncated log: the first missing one).
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Verifies the whole chain, every checkpoint against `trusted` keys, and (when given)
/// a checkpoint a witness kept. Names the first bad entry.
pub async fn verify(
    db: &Db,
    trusted: &[VerifyingKey],
    witness: Option<&Checkpoint>,
) -> Result<std::result::Result<Report, Broken>> {
    let mut checkpoints = Vec::new();
    for r in sqlx::query(
        "SELECT seq, head_hash, at, key_version, public_key, signature, note FROM \
         hub_checkpoints ORDER BY seq",
    )
    .fetch_all(db.pool())
    .await?
    {
        checkpoints.push(checkpoint_from_row(&r)?);
    }
    let key_changes = rotation::key_changes(&checkpoints);
    checkpoints.extend(witness.cloned());
    for cp in &checkpoints {
        if !trusted.iter().any(|k| cp.verify_signature(k)) {
            return Ok(Err(Broken {
                seq: cp.seq,
                reason: format!(
                    "checkpoint at entry {} has no valid signature by a trusted key",
                    cp.seq
                ),
            }));
        }
    }

    let mut prev = String::new();
    let mut expected_seq = 1_i64;
    let mut ok_checkpoints = 0;
    loop {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, object, subject, consent, category, decision, \
             reason, prev_hash, hash, salt FROM hub_audit WHERE seq >= $1 ORDER BY seq \
             LIMIT 5000",
        )
        .bind(expected_seq)
        .fetch_all(db.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let seq: i64 = r.try_get("seq")?;
            if seq != expected_seq {
                return Ok(Err(Broken {
                    seq: expected_seq,
                    reason: "entry is missing (deleted)".into(),
                }));
            }
            let e = Entry {
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                object: r.try_get("object")?,
                subject: r.try_get("subject")?,
                consent: r.try_get("consent")?,
                category: r.try_get("category")?,
                decision: r.try_get("decision")?,
                reason: r.try_get("reason")?,
            };
            let stored_prev: String = r.try_get("prev_hash")?;
            let stored_hash: String = r.try_get("hash")?;
            if stored_prev != prev {
                return Ok(Err(Broken {
                    seq,
                    reason: "previous-hash link does not match".into(),
                }));
            }
            let salt: Option<String> = r.try_get("salt")?;
            if salt.is_none() && (looks_committed(&e.subject) || looks_committed(&e.object)) {
                return Ok(Err(Broken {
                    seq,
                    reason: "unsalted entry holds a commitment (salt removed, values replaced)"
                        .into(),
                }));
            }
            if entry_hash(&prev, seq, r.try_get("at")?, &e, salt.as_deref()) != stored_hash {
                return Ok(Err(Broken {
                    seq,
                    reason: "content does not match its hash (edited)".into(),
                }));
            }
            if let Some(change) = key_changes.iter().find(|c| c.seq == seq) {
                if let Err(reason) = change.check(&e) {
                    return Ok(Err(Broken { seq, reason }));
                }
            }
            for cp in checkpoints.iter().filter(|c| c.seq == seq) {
                if cp.head_hash != stored_hash {
                    return Ok(Err(Broken {
                        seq,
                        reason: "entry differs from the signed checkpoint".into(),
                    }));
                }
                ok_checkpoints += 1;
            }
            prev = stored_hash;
            expected_seq += 1;
        }
    }
    let last = expected_seq - 1;
    if let Some(cp) = checkpoints.iter().find(|c| c.seq > last) {
        return Ok(Err(Broken {
            seq: last + 1,
            reason: format!(
                "log is truncated: a signed checkpoint covers entry {}",
                cp.seq
            ),
        }));
    }
    let row = sqlx::query("SELECT value, head FROM hub_sequences WHERE name = 'audit'")
        .fetch_one(db.pool())
        .await?;
    let (head_seq, head): (i64, String) = (row.try_get("value")?, row.try_get("head")?);
    if head_seq != last || head != prev {
        return Ok(Err(Broken {
            seq: last + 1,
            reason: format!(
                "log is truncated: the chain head says {head_seq} entries, {last} remain"
            ),
        }));
    }
    Ok(Ok(Report {
        entries: last,
        checkpoints: ok_checkpoints,
        head: prev,
    }))
}
