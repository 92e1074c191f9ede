//! The audit log as witnesses see it: checkpoints as C2SP signed notes, the hub's
//! verifier key, the cosignatures witnesses return, and the check `audit verify` runs
//! over tree, notes and cosignatures.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use renkei_crypto::sign::{SigningKey, VerifyingKey};
use renkei_crypto::tlog::note::{self, Checkpoint as Body, LedgerHead, NoteSigner, NoteVerifier};
use renkei_crypto::tlog::{self, Frontier, Hash};
use serde::Serialize;
use sqlx::Row;

use super::{Broken, tree};
use crate::db::{self, Db};
use crate::error::{Error, Result};

/// The log's origin (and key name) unless `[audit] origin` says otherwise.
pub const DEFAULT_ORIGIN: &str = "renkei.hub/audit";

fn log_err(e: renkei_crypto::Error) -> Error {
    Error::internal_from("audit log signature", e)
}

/// The verifier key of the log `origin` signed with `key` (C2SP signed-note format).
pub fn vkey(origin: &str, key: &SigningKey) -> Result<String> {
    Ok(NoteSigner::log(origin, key).map_err(log_err)?.vkey())
}

/// The verifier of a trusted public key as the log `origin`.
pub fn verifier(origin: &str, key: &VerifyingKey) -> Result<NoteVerifier> {
    NoteVerifier::log(origin, key).map_err(log_err)
}

/// Signs the checkpoint of the tree of `size` entries with root `root`, naming the
/// consent ledger's head `ledger` (its last entry in the same snapshot).
pub fn sign(
    origin: &str,
    key: &SigningKey,
    size: u64,
    root: Hash,
    ledger: Option<LedgerHead>,
) -> Result<String> {
    let body = Body {
        origin: origin.to_owned(),
        size,
        root,
        ledger,
    };
    note::sign_checkpoint(&body, &NoteSigner::log(origin, key).map_err(log_err)?).map_err(log_err)
}

/// The consent ledger's last entry, read in the caller's transaction (the checkpoint's).
pub async fn ledger_head(conn: &mut sqlx::AnyConnection) -> Result<Option<LedgerHead>> {
    let row = sqlx::query("SELECT seq, hash FROM consent_ledger ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        Ok(LedgerHead {
            seq: r.try_get::<i64, _>("seq")?.unsigned_abs(),
            hash: r.try_get("hash")?,
        })
    })
    .transpose()
}

/// Checks the consent ledger against the heads the signed checkpoints name (each must
/// still be the stored entry at its position: a rewrite or a truncation of the ledger up
/// to a witnessed head is found) and the consent table against the ledger (each consent's
/// row is the version and status of its last ledger entry: a status changed behind the
/// ledger, such as a revoked consent set active again, is found). The chain itself is
/// checked by `renkei_consent`'s `verify_chain` against the newest head returned here.
async fn check_ledger(
    db: &Db,
    heads: &BTreeMap<u64, LedgerHead>,
) -> Result<std::result::Result<Option<LedgerHead>, Broken>> {
    for (&size, head) in heads {
        let seq = i64::try_from(size).unwrap_or(i64::MAX);
        let stored: Option<String> =
            sqlx::query_scalar("SELECT hash FROM consent_ledger WHERE seq = $1")
                .bind(
                    i64::try_from(head.seq)
                        .map_err(|e| Error::internal_from("checkpoint seq", e))?,
                )
                .fetch_optional(db.pool())
                .await?;
        let reason = match stored {
            Some(h) if h == head.hash => continue,
            Some(_) => format!(
                "consent ledger entry {} differs from the one the signed checkpoint of size \
                 {size} names: the ledger was rewritten",
                head.seq
            ),
            None => format!(
                "consent ledger entry {} is gone although the signed checkpoint of size \
                 {size} names it: the ledger was truncated",
                head.seq
            ),
        };
        return Ok(Err(Broken { seq, reason }));
    }
    let rows = sqlx::query(
        "SELECT c.id AS id, c.status AS status, c.consent_json AS json, l.entry_json AS entry \
         FROM consents c LEFT JOIN consent_ledger l ON l.consent_id = c.id AND l.version = c.version \
         AND NOT EXISTS (SELECT 1 FROM consent_ledger n WHERE n.consent_id = c.id AND n.version > c.version)",
    )
    .fetch_all(db.pool())
    .await?;
    let behind = |what: String| {
        Ok(Err(Broken {
            seq: 0,
            reason: format!("{what}: the consent tables were changed behind the ledger"),
        }))
    };
    // Each consent as its last ledger entry says it is.
    let mut ledger: std::collections::HashMap<String, renkei_consent::Consent> =
        std::collections::HashMap::new();
    for r in rows {
        let id: String = r.try_get("id")?;
        let status: String = r.try_get("status")?;
        let json: String = r.try_get("json")?;
        let entry: Option<String> = r.try_get("entry")?;
        let Some(last) = entry
            .as_deref()
            .and_then(|e| serde_json::from_str::<renkei_consent::LedgerEntry>(e).ok())
            .map(|e| e.consent)
        else {
            return behind(format!(
                "consent {id} has no ledger entry of the version in the consent table"
            ));
        };
        let row: Option<renkei_consent::Consent> = serde_json::from_str(&json).ok();
        if last.status.as_str() != status || row.as_ref() != Some(&last) {
            return behind(format!(
                "consent {id} is `{status}` in the consent table, but its last ledger entry \
                 says `{}`",
                last.status.as_str()
            ));
        }
        ledger.insert(id, last);
    }
    // What reads and grants are decided on: one row per category, as the ledger says.
    let day = |d: Option<chrono::NaiveDate>| d.map(renkei_consent::coverage::day);
    let mut per_consent: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    for r in sqlx::query(
        "SELECT consent_id, category, subject, recipient, status, valid_from_us, valid_until_us, \
         data_from_day, data_until_day FROM consent_categories",
    )
    .fetch_all(db.pool())
    .await?
    {
        let id: String = r.try_get("consent_id")?;
        let category: String = r.try_get("category")?;
        let Some(c) = ledger.get(&id) else {
            return behind(format!(
                "a category row names consent {id}, which has no consent"
            ));
        };
        let same = c.terms.categories.contains(&category)
            && r.try_get::<String, _>("subject")? == c.terms.subject
            && r.try_get::<String, _>("recipient")? == c.terms.recipient
            && r.try_get::<String, _>("status")? == c.status.as_str()
            && r.try_get::<i64, _>("valid_from_us")? == c.terms.valid_from.timestamp_micros()
            && r.try_get::<Option<i64>, _>("valid_until_us")?
                == c.terms.valid_until.map(|t| t.timestamp_micros())
            && r.try_get::<Option<i64>, _>("data_from_day")? == day(c.terms.data_period.from)
            && r.try_get::<Option<i64>, _>("data_until_day")? == day(c.terms.data_period.until);
        if !same {
            return behind(format!(
                "the `{category}` row of consent {id} differs from its last ledger entry"
            ));
        }
        *per_consent.entry(id).or_default() += 1;
    }
    for (id, c) in &ledger {
        if per_consent.get(id).copied().unwrap_or(0) != c.terms.categories.len() {
            return behind(format!(
                "consent {id} has not one category row per category of its ledger entry"
            ));
        }
    }
    Ok(Ok(heads.values().next_back().cloned()))
}

/// The latest checkpoint that has a signed note: `(size, note)`.
pub async fn latest_note(db: &Db) -> Result<Option<(u64, String)>> {
    let row = sqlx::query(
        "SELECT seq, note FROM hub_checkpoints WHERE note <> '' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok((
            r.try_get::<i64, _>("seq")?.unsigned_abs(),
            r.try_get("note")?,
        ))
    })
    .transpose()
}

/// Stores a witness's cosignature of the checkpoint of `size` entries, after checking
/// it against the stored note and the key the witness first cosigned with. A second
/// cosignature of the same checkpoint by the same witness replaces nothing.
pub async fn add_cosignature(
    db: &Db,
    witness: &str,
    vkey: &str,
    size: u64,
    line: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let verifier = NoteVerifier::parse(vkey).map_err(Error::bad_input)?;
    if !verifier.is_cosignature() {
        return Err(Error::bad_request(
            "`vkey` is not a cosignature/v1 key (type 0x04)",
        ));
    }
    // Proof files and `audit verify` name cosigners by their key name: a participant
    // cosigns under its own name only, so no one can appear as another's witness.
    let own = format!("renkei-witness/{witness}");
    if verifier.name() != own {
        return Err(Error::bad_request(format!(
            "`vkey` is named `{}`; {witness} cosigns as `{own}`",
            crate::broker::bounded::echo(verifier.name())
        )));
    }
    let seq = i64::try_from(size).map_err(|_| Error::bad_request("`size` is too large"))?;
    let mut tx = db.begin().await?;
    let note: Option<String> =
        sqlx::query("SELECT note FROM hub_checkpoints WHERE seq = $1 AND note <> ''")
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("note"))
            .transpose()?;
    let note = note.ok_or_else(|| Error::NotFound(format!("no checkpoint of size {size}")))?;
    let time = note::check_cosignature(&note, line, &verifier).map_err(Error::bad_input)?;
    let known: Option<String> =
        sqlx::query("SELECT vkey FROM hub_log_witnesses WHERE witness = $1")
            .bind(witness)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("vkey"))
            .transpose()?;
    match known {
        Some(k) if k != verifier.vkey() => {
            return Err(Error::Conflict(format!(
                "witness `{witness}` cosigns with another key than before"
            )));
        }
        Some(_) => {}
        None => {
            sqlx::query(
                "INSERT INTO hub_log_witnesses (witness, vkey, first_seen) VALUES ($1, $2, $3)",
            )
            .bind(witness)
            .bind(verifier.vkey())
            .bind(db::micros(now))
            .execute(&mut *tx)
            .await?;
        }
    }
    let time_i64 = i64::try_from(time).map_err(|_| Error::bad_request("bad time"))?;
    sqlx::query(
        "INSERT INTO hub_log_cosignatures (seq, witness, line, cosigned_at, received_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq, witness) DO NOTHING",
    )
    .bind(seq)
    .bind(witness)
    .bind(line.trim_end_matches('\n'))
    .bind(time_i64)
    .bind(db::micros(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(time)
}

/// What the check of the tree, the notes and the cosignatures found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogReport {
    /// Leaves checked.
    pub leaves: u64,
    /// Signed notes whose signature and root matched.
    pub notes: usize,
    /// Cosignatures that verified.
    pub cosignatures: usize,
    /// Distinct witnesses among them.
    pub witnesses: usize,
    /// Checkpoints (sizes) that fewer than the required number of witnesses cosigned,
    /// on them or on a later checkpoint (which, consistency checked, vouches for them).
    pub unwitnessed: Vec<u64>,
    /// The time of the newest cosignature (seconds since the epoch).
    pub newest_cosignature: Option<u64>,
    /// The consent ledger head the newest signed checkpoint names, if any: the ledger's
    /// chain must verify up to it.
    pub ledger_head: Option<LedgerHead>,
}

/// Checks the Merkle tree against the entries' chain hashes (every stored hash, every
/// note's root), every note's signature against `trusted` keys as the log `origin`, and
/// every stored cosignature against its witness's key (only witnesses in `pinned`, when
/// given, count). Run after [`super::verify`], which checks the entries themselves.
pub async fn verify(
    db: &Db,
    origin: &str,
    trusted: &[VerifyingKey],
    pinned: &[NoteVerifier],
    min_witnesses: usize,
) -> Result<std::result::Result<LogReport, Broken>> {
    let verifiers = trusted
        .iter()
        .map(|k| verifier(origin, k))
        .collect::<Result<Vec<_>>>()?;
    let mut notes = BTreeMap::new();
    let mut heads = BTreeMap::new();
    for r in sqlx::query("SELECT seq, note FROM hub_checkpoints WHERE note <> '' ORDER BY seq")
        .fetch_all(db.pool())
        .await?
    {
        let seq: i64 = r.try_get("seq")?;
        let text: String = r.try_get("note")?;
        let Some(body) = verifiers
            .iter()
            .find_map(|v| note::open_checkpoint(&text, v).ok())
        else {
            return Ok(Err(Broken {
                seq,
                reason: format!(
                    "checkpoint note at entry {seq} has no valid signature by a trusted log key"
                ),
            }));
        };
        if body.size != seq.unsigned_abs() {
            return Ok(Err(Broken {
                seq,
                reason: format!("checkpoint note at entry {seq} is for size {}", body.size),
            }));
        }
        if let Some(head) = body.ledger {
            heads.insert(body.size, head);
        }
        notes.insert(body.size, (text, body.root));
    }

    // Rebuild the tree from the chain hashes; compare each stored hash and each root.
    let mut tree = Frontier::new();
    let mut stored = StoredHashes::default();
    loop {
        let rows =
            sqlx::query("SELECT seq, hash FROM hub_audit WHERE seq > $1 ORDER BY seq LIMIT 5000")
                .bind(
                    i64::try_from(tree.size())
                        .map_err(|e| Error::internal_from("log tree size", e))?,
                )
                .fetch_all(db.pool())
                .await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let seq: i64 = r.try_get("seq")?;
            let start = tlog::stored_index(0, tree.size());
            for (k, h) in tree
                .push(tree::leaf_hash(&r.try_get::<String, _>("hash")?)?)
                .into_iter()
                .enumerate()
            {
                let idx = start + k as u64;
                if stored.get(db, idx).await? != Some(h) {
                    return Ok(Err(Broken {
                        seq,
                        reason: format!(
                            "stored log hash {idx} does not match the entries (tiles and proofs served from it are wrong)"
                        ),
                    }));
                }
            }
            if let Some((_, root)) = notes.get(&tree.size()) {
                if *root != tree.root() {
                    return Ok(Err(Broken {
                        seq,
                        reason: "entries differ from the tree root of the signed checkpoint note"
                            .into(),
                    }));
                }
            }
        }
    }
    if let Some((&size, _)) = notes.range(tree.size() + 1..).next() {
        return Ok(Err(Broken {
            seq: i64::try_from(tree.size() + 1).unwrap_or(i64::MAX),
            reason: format!("log is truncated: a signed checkpoint note covers {size} entries"),
        }));
    }

    let ledger_head = match check_ledger(db, &heads).await? {
        Ok(head) => head,
        Err(broken) => return Ok(Err(broken)),
    };

    // Cosignatures: each verifies over the note as stored now, by its witness's key.
    let mut keys = BTreeMap::new();
    for r in sqlx::query("SELECT witness, vkey FROM hub_log_witnesses")
        .fetch_all(db.pool())
        .await?
    {
        let witness: String = r.try_get("witness")?;
        let vkey: String = r.try_get("vkey")?;
        let v = NoteVerifier::parse(&vkey).map_err(log_err)?;
        if pinned.is_empty() || pinned.contains(&v) {
            keys.insert(witness, v);
        }
    }
    let mut by_size: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut count = 0;
    let mut newest = None;
    for r in sqlx::query("SELECT seq, witness, line FROM hub_log_cosignatures ORDER BY seq")
        .fetch_all(db.pool())
        .await?
    {
        let seq: i64 = r.try_get("seq")?;
        let witness: String = r.try_get("witness")?;
        let line: String = r.try_get("line")?;
        let Some(key) = keys.get(&witness) else {
            continue;
        };
        let Some((text, _)) = notes.get(&seq.unsigned_abs()) else {
            return Ok(Err(Broken {
                seq,
                reason: format!(
                    "`{witness}` cosigned a checkpoint of size {seq} that is no longer stored"
                ),
            }));
        };
        match note::check_cosignature(text, &line, key) {
            Ok(t) => {
                count += 1;
                newest = newest.max(Some(t));
                by_size
                    .entry(seq.unsigned_abs())
                    .or_default()
                    .insert(witness);
            }
            Err(_) => {
                return Ok(Err(Broken {
                    seq,
                    reason: format!(
                        "`{witness}`'s cosignature does not verify over the checkpoint stored for size {seq}: it was changed after the witness saw it"
                    ),
                }));
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut unwitnessed = Vec::new();
    for &size in notes.keys().rev() {
        if let Some(w) = by_size.get(&size) {
            seen.extend(w.iter().cloned());
        }
        if seen.len() < min_witnesses {
            unwitnessed.push(size);
        }
    }
    unwitnessed.reverse();
    let witnesses = by_size.values().flatten().collect::<BTreeSet<_>>().len();
    Ok(Ok(LogReport {
        leaves: tree.size(),
        notes: notes.len(),
        cosignatures: count,
        witnesses,
        unwitnessed,
        newest_cosignature: newest,
        ledger_head,
    }))
}

/// Stored hashes read in index order, a page at a time.
#[derive(Debug, Default)]
struct StoredHashes {
    page: BTreeMap<u64, Hash>,
    next: u64,
}

impl StoredHashes {
    async fn get(&mut self, db: &Db, idx: u64) -> Result<Option<Hash>> {
        if idx >= self.next {
            self.page.clear();
            let from = i64::try_from(idx).map_err(|e| Error::internal_from("log hash index", e))?;
            for r in sqlx::query(
                "SELECT idx, hash FROM hub_log_hashes WHERE idx >= $1 ORDER BY idx LIMIT 10000",
            )
            .bind(from)
            .fetch_all(db.pool())
            .await?
            {
                let i: i64 = r.try_get("idx")?;
                let b: Vec<u8> = r.try_get("hash")?;
                if let Ok(b) = <[u8; 32]>::try_from(b) {
                    self.page.insert(i.unsigned_abs(), Hash(b));
                }
            }
            self.next = idx + 10_000;
        }
        Ok(self.page.get(&idx).copied())
    }
}

/// A resident's proof file for entry `seq`: the entry, its inclusion proof, and the
/// latest checkpoint covering it that witnesses cosigned (with their cosignatures).
pub async fn entry_proof(db: &Db, seq: i64) -> Result<renkei_protocol::proof::EntryProof> {
    let mut conn = db.pool().acquire().await?;
    let cp = sqlx::query(
        "SELECT c.seq, c.note FROM hub_checkpoints c WHERE c.seq >= $1 AND c.note <> '' \
         AND EXISTS (SELECT 1 FROM hub_log_cosignatures s WHERE s.seq = c.seq) \
         ORDER BY c.seq DESC LIMIT 1",
    )
    .bind(seq)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        Error::NotFound(format!(
            "no checkpoint that witnesses cosigned covers entry {seq} yet"
        ))
    })?;
    let size: i64 = cp.try_get("seq")?;
    let mut checkpoint: String = cp.try_get("note")?;
    for r in sqlx::query("SELECT line FROM hub_log_cosignatures WHERE seq = $1 ORDER BY witness")
        .bind(size)
        .fetch_all(&mut *conn)
        .await?
    {
        checkpoint.push_str(&r.try_get::<String, _>("line")?);
        checkpoint.push('\n');
    }
    let e = sqlx::query(
        "SELECT seq, at, actor, action, object, subject, consent, category, decision, reason, \
         prev_hash, salt FROM hub_audit WHERE seq = $1",
    )
    .bind(seq)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no audit entry {seq}")))?;
    let stored = super::Entry {
        object: e.try_get("object")?,
        subject: e.try_get("subject")?,
        ..super::Entry::default()
    };
    let salt: Option<String> = e.try_get("salt")?;
    // Commitments, not the token and record id (entries written before the salts came
    // in show them as they are).
    let (object, subject) = super::proved_fields(&stored, salt.as_deref());
    let entry = renkei_protocol::proof::ProvedEntry {
        seq: e.try_get("seq")?,
        at: e.try_get("at")?,
        actor: e.try_get("actor")?,
        action: e.try_get("action")?,
        object,
        subject,
        consent: e.try_get("consent")?,
        category: e.try_get("category")?,
        decision: e.try_get("decision")?,
        reason: e.try_get("reason")?,
        prev_hash: e.try_get("prev_hash")?,
    };
    let index =
        u64::try_from(seq - 1).map_err(|_| Error::bad_request("`seq` must be 1 or more"))?;
    let proof = tree::inclusion(&mut conn, size.unsigned_abs(), index)
        .await?
        .iter()
        .map(tlog::hash_to_base64)
        .collect();
    Ok(renkei_protocol::proof::EntryProof {
        format: renkei_protocol::proof::FORMAT.to_owned(),
        entry,
        proof,
        checkpoint,
    })
}
