//! The durable outbox: sealed records waiting for upload, the subjects the agent
//! exported (for enrollment checks), what web enrollment needs (issued codes as keyed
//! hashes, failed attempts, answered requests: [`enrollment`]), and a little state (last
//! upload, last error, the hub's latest audit checkpoint), in one SQLite file.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so a committed transaction
//! survives a crash or power loss: a record is in the outbox or it is not. A record
//! id is written once; a re-import keeps the bytes first sealed (those the hub may
//! already hold), so uploads stay idempotent at the hub. The bookkeeping timestamps
//! (`created_at`, `sent_at`, meta `at`) come from SQLite's clock: they decide nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use renkei_crypto::token::{RecordId, SubjectToken};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{Error, Result};

mod consents;
pub mod enrollment;
mod links;
mod meta;
mod residents;

pub use residents::ResidentLinks;
mod space;
mod witness;

pub use enrollment::EnrollmentStatus;
pub use links::LinkCounts;
pub use meta::{Note, OutboxStatus, check_successor};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    record_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    category TEXT NOT NULL,
    sealed BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'conflict', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state);
CREATE TABLE IF NOT EXISTS subjects (
    subject_token TEXT PRIMARY KEY,
    branch TEXT,
    conflict INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witnessed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    root TEXT NOT NULL,
    note TEXT NOT NULL,
    at TEXT NOT NULL,
    cosigned INTEGER NOT NULL
);
";

/// SQLite's clock, as an RFC 3339 UTC timestamp.
pub(crate) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// Rows per multi-row `INSERT` in [`Outbox::put`] (4 parameters a row, far below
/// SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 250;

/// `INSERT … VALUES (…), (…) … ON CONFLICT DO NOTHING` for `rows` outbox rows.
fn insert_records_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * 60);
    sql.push_str("INSERT INTO outbox (record_id, subject, category, sealed, created_at) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?, ?, ?, ?, ");
        sql.push_str(NOW);
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (record_id) DO NOTHING");
    sql
}

/// The subjects upsert for `rows` distinct subjects: a known subject keeps its 枝番
/// and takes the new one only when it had none.
fn upsert_subjects_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO subjects (subject_token, branch) VALUES ");
    for i in 0..rows {
        sql.push_str(if i > 0 { ",(?, ?)" } else { "(?, ?)" });
    }
    sql.push_str(
        " ON CONFLICT (subject_token) DO UPDATE \
         SET branch = COALESCE(subjects.branch, excluded.branch)",
    );
    sql
}

/// Each distinct subject of `records` once, in first-seen order, with the first
/// 枝番 the batch gives it (what upserting record by record would leave).
fn batch_subjects(records: &[NewRecord]) -> Vec<(&SubjectToken, Option<&str>)> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<(&SubjectToken, Option<&str>)> = Vec::new();
    for r in records {
        match index.get(r.subject.as_str()).and_then(|&i| out.get_mut(i)) {
            Some((_, branch)) => {
                if branch.is_none() {
                    *branch = r.branch.as_deref();
                }
            }
            None => {
                index.insert(r.subject.as_str(), out.len());
                out.push((&r.subject, r.branch.as_deref()));
            }
        }
    }
    out
}

/// An [`Error::Outbox`] for a database failure of the outbox at `path`; a full disk
/// gets its own clear reason.
fn db_error(path: &Path, e: sqlx::Error) -> Error {
    if space::is_disk_full(&e) {
        Error::outbox(path, space::NO_SPACE)
    } else {
        Error::outbox(path, e)
    }
}

/// A sealed record to spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// Its id (from the envelope header).
    pub record_id: RecordId,
    /// The subject token, sent beside the envelope.
    pub subject: SubjectToken,
    /// The subject's normalized 枝番, kept for enrollment checks (never uploaded).
    pub branch: Option<String>,
    /// Catalog category.
    pub category: String,
    /// `SealedRecord::to_bytes`.
    pub sealed: Vec<u8>,
}

/// What [`Outbox::put`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Records new to the outbox.
    pub inserted: usize,
    /// Records already there (kept as first sealed).
    pub existing: usize,
}

/// A record waiting for upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    /// Record id.
    pub record_id: String,
    /// Subject token, the upload's `subject` field.
    pub subject: String,
    /// Sealed record bytes.
    pub sealed: Vec<u8>,
}

/// What the agent knows of an exported subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownSubject {
    /// The 枝番 its records came with, if any.
    pub branch: Option<String>,
    /// Two people share this canonical identity: never link it.
    pub conflict: bool,
}

/// Why the hub refused one record for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 409: a different record is stored under the same id.
    Conflict,
    /// 400: the hub cannot accept this record.
    Rejected,
}

impl Refusal {
    fn state(self) -> &'static str {
        match self {
            Refusal::Conflict => "conflict",
            Refusal::Rejected => "rejected",
        }
    }
}

/// The outbox database.
#[derive(Debug, Clone)]
pub struct Outbox {
    path: PathBuf,
    pool: SqlitePool,
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path`.
    pub async fn open(path: &Path) -> Result<Outbox> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| db_error(path, e))?;
        let outbox = Outbox {
            path: path.to_path_buf(),
            pool,
        };
        sqlx::raw_sql(SCHEMA)
            .execute(&outbox.pool)
            .await
            .map_err(|e| outbox.err(e))?;
        for schema in [
            links::SCHEMA,
            enrollment::SCHEMA,
            consents::SCHEMA,
            residents::SCHEMA,
        ] {
            sqlx::raw_sql(schema)
                .execute(&outbox.pool)
                .await
                .map_err(|e| outbox.err(e))?;
        }
        Ok(outbox)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::outbox(&self.path, e)
    }

    /// A database failure, with a full disk told apart (see [`space`]).
    fn db(&self, e: sqlx::Error) -> Error {
        db_error(&self.path, e)
    }

    /// Spools `records` in one transaction; ids already present keep their bytes.
    /// Their subjects are remembered (with the 枝番) for enrollment checks.
    ///
    /// Rows go in multi-row statements (`ROWS_PER_INSERT` a statement) and each
    /// distinct subject of the batch is upserted once, with the first 枝番 the batch
    /// gives it: the same end state as one statement per record, in far fewer round
    /// trips to SQLite.
    pub async fn put(&self, records: &[NewRecord]) -> Result<PutReport> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let mut inserted = 0usize;
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let sql = insert_records_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(r.record_id.as_str())
                    .bind(r.subject.as_str())
                    .bind(r.category.as_str())
                    .bind(r.sealed.as_slice());
            }
            let done = query.execute(&mut *tx).await.map_err(|e| self.db(e))?;
            inserted += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        let subjects = batch_subjects(records);
        for chunk in subjects.chunks(ROWS_PER_INSERT) {
            let sql = upsert_subjects_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for (subject, branch) in chunk {
                query = query.bind(subject.as_str()).bind(*branch);
            }
            query.execute(&mut *tx).await.map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(PutReport {
            inserted,
            existing: records.len().saturating_sub(inserted),
        })
    }

    /// Marks `tokens` as shared by two people: their enrollment is always refused.
    pub async fn mark_conflicts(&self, tokens: &[SubjectToken]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        for t in tokens {
            sqlx::query(
                "INSERT INTO subjects (subject_token, conflict) VALUES (?, 1) \
                 ON CONFLICT (subject_token) DO UPDATE SET conflict = 1",
            )
            .bind(t.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// What the outbox knows of `token`, if it ever exported or refused it.
    pub async fn knows_subject(&self, token: &SubjectToken) -> Result<Option<KnownSubject>> {
        let row = sqlx::query("SELECT branch, conflict FROM subjects WHERE subject_token = ?")
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| {
            Ok(KnownSubject {
                branch: r.try_get("branch").map_err(|e| self.db(e))?,
                conflict: r.try_get::<i64, _>("conflict").map_err(|e| self.db(e))? != 0,
            })
        })
        .transpose()
    }

    /// What the outbox knows of each of `tokens` that it knows at all.
    pub async fn known_subjects(
        &self,
        tokens: &[SubjectToken],
    ) -> Result<Vec<(SubjectToken, KnownSubject)>> {
        let mut out = Vec::new();
        for chunk in tokens.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT subject_token, branch, conflict FROM subjects \
                 WHERE subject_token IN ({marks})"
            );
            let mut query = sqlx::query(&sql);
            for t in chunk {
                query = query.bind(t.as_str());
            }
            for r in query.fetch_all(&self.pool).await.map_err(|e| self.db(e))? {
                let token: String = r.try_get("subject_token").map_err(|e| self.db(e))?;
                let token = SubjectToken::parse(&token).map_err(|e| self.err(e))?;
                let known = KnownSubject {
                    branch: r.try_get("branch").map_err(|e| self.db(e))?,
                    conflict: r.try_get::<i64, _>("conflict").map_err(|e| self.db(e))? != 0,
                };
                out.push((token, known));
            }
        }
        Ok(out)
    }

    /// Up to `limit` records waiting for upload, oldest first.
    pub async fn pending(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT record_id, subject, sealed FROM outbox WHERE state = 'pending' \
             ORDER BY rowid LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| {
                Ok(OutboxItem {
                    record_id: r.try_get("record_id").map_err(|e| self.db(e))?,
                    subject: r.try_get("subject").map_err(|e| self.db(e))?,
                    sealed: r.try_get("sealed").map_err(|e| self.db(e))?,
                })
            })
            .collect()
    }

    /// The state and sealed bytes of one record.
    pub async fn record(&self, record_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query("SELECT state, sealed FROM outbox WHERE record_id = ?")
            .bind(record_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| {
            Ok((
                r.try_get("state").map_err(|e| self.db(e))?,
                r.try_get("sealed").map_err(|e| self.db(e))?,
            ))
        })
        .transpose()
    }

    /// Marks the pending records `ids` as accepted by the hub; returns how many changed.
    pub async fn mark_sent(&self, ids: &[String]) -> Result<usize> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let mut changed = 0;
        for id in ids {
            let done = sqlx::query(&format!(
                "UPDATE outbox SET state = 'sent', sent_at = {NOW}, attempts = attempts + 1, \
                 last_error = NULL WHERE record_id = ? AND state = 'pending'"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            changed += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        sqlx::query(&format!(
            "INSERT INTO meta (key, value, at) VALUES ('last_upload', ?, {NOW}) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, at = excluded.at"
        ))
        .bind(format!("{changed} records accepted"))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(changed)
    }

    /// Records a failed upload attempt of `ids` (they stay pending).
    pub async fn mark_failed(&self, ids: &[String], error: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? \
                 WHERE record_id = ? AND state = 'pending'",
            )
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// Takes one record out of the upload queue for good, keeping the hub's reason.
    pub async fn mark_refused(&self, id: &str, refusal: Refusal, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ? \
             WHERE record_id = ? AND state = 'pending'",
        )
        .bind(refusal.state())
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Records waiting for upload.
    pub async fn depth(&self) -> Result<u64> {
        self.count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
            .await
    }

    async fn count(&self, sql: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(c: char) -> SubjectToken {
        SubjectToken::parse(&format!("st1_{}", c.to_string().repeat(32))).unwrap()
    }

    fn rid(c: char) -> RecordId {
        RecordId::parse(&format!("rec1_{}", c.to_string().repeat(32))).unwrap()
    }

    /// A distinct record id per `n` (base 32, like real ids).
    fn numbered(n: usize) -> RecordId {
        let digits: String = (0..32)
            .rev()
            .map(|place| {
                let d = (n >> (5 * place.min(6))) & 31;
                let d = if place > 6 { 0 } else { d };
                char::from(b"abcdefghijklmnopqrstuvwxyz234567"[d])
            })
            .collect();
        RecordId::parse(&format!("rec1_{digits}")).unwrap()
    }

    fn rec(id: char, subject: char, sealed: &[u8]) -> NewRecord {
        NewRecord {
            record_id: rid(id),
            subject: token(subject),
            branch: Some("01".into()),
            category: "checkup.body".into(),
            sealed: sealed.to_vec(),
        }
    }

    #[tokio::test]
    async fn put_is_idempotent_and_keeps_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite")).await.unwrap();
        let first = outbox
            .put(&[rec('a', 'x', b"one"), rec('b', 'x', b"two")])
            .await
            .unwrap();
        assert_eq!(first.inserted, 2);
        let again = outbox.put(&[rec('a', 'x', b"other")]).await.unwrap();
        assert_eq!((again.inserted, again.existing), (0, 1));
        let (state, bytes) = outbox.record(rid('a').as_str()).await.unwrap().unwrap();
        assert_eq!((state.as_str(), bytes.as_slice()), ("pending", &b"one"[..]));
        assert_eq!(outbox.depth().await.unwrap(), 2);
        let known = outbox.knows_subject(&token('x')).await.unwrap().unwrap();
        assert_eq!(known.branch.as_deref(), Some("01"));
        assert!(!known.conflict);
        assert!(outbox.knows_subject(&token('y')).await.unwrap().is_none());
        outbox.mark_conflicts(&[token('x')]).await.unwrap();
        assert!(
            outbox
                .knows_subject(&token('x'))
                .await
                .unwrap()
                .unwrap()
                .conflict
        );
    }

    #[tokio::test]
    async fn batched_put_matches_record_by_record() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite")).await.unwrap();
        // More rows than one statement takes, a duplicate id inside the batch, and
        // subjects whose 枝番 comes late, early, or never.
        let mut batch: Vec<NewRecord> = (0..ROWS_PER_INSERT + 7)
            .map(|i| NewRecord {
                record_id: numbered(i),
                subject: token('p'),
                branch: None,
                category: "checkup.body".into(),
                sealed: i.to_string().into_bytes(),
            })
            .collect();
        batch[3].branch = Some("02".into());
        batch[5].branch = Some("03".into());
        batch.push(rec('q', 'q', b"no branch"));
        let mut q = rec('r', 'q', b"later");
        q.branch = None;
        batch.push(q);
        batch.push(rec('s', 's', b"first"));
        let mut dup = rec('s', 's', b"second");
        dup.branch = Some("09".into());
        batch.push(dup);
        let report = outbox.put(&batch).await.unwrap();
        assert_eq!(
            (report.inserted, report.existing),
            (ROWS_PER_INSERT + 10, 1)
        );
        let branch = |c| {
            let outbox = outbox.clone();
            async move {
                outbox
                    .knows_subject(&token(c))
                    .await
                    .unwrap()
                    .unwrap()
                    .branch
            }
        };
        assert_eq!(branch('p').await.as_deref(), Some("02"), "first 枝番 given");
        assert_eq!(branch('q').await.as_deref(), Some("01"));
        assert_eq!(branch('s').await.as_deref(), Some("01"));
        let (_, bytes) = outbox.record(rid('s').as_str()).await.unwrap().unwrap();
        assert_eq!(
            bytes, b"first",
            "the first row of an id wins inside a batch too"
        );
        // A later batch never replaces a known 枝番, only fills a missing one.
        let mut none = rec('t', 'u', b"x");
        none.branch = None;
        outbox.put(&[none]).await.unwrap();
        assert_eq!(branch('u').await, None);
        let mut late = rec('v', 'u', b"y");
        late.branch = Some("04".into());
        outbox.put(&[late, rec('w', 'p', b"z")]).await.unwrap();
        assert_eq!(branch('u').await.as_deref(), Some("04"));
        assert_eq!(branch('p').await.as_deref(), Some("02"));
        assert_eq!(outbox.depth().await.unwrap(), (ROWS_PER_INSERT + 13) as u64);
    }

    #[tokio::test]
    async fn sent_and_refused_leave_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        let outbox = Outbox::open(&path).await.unwrap();
        outbox
            .put(&[
                rec('a', 'x', b"1"),
                rec('b', 'x', b"2"),
                rec('c', 'x', b"3"),
            ])
            .await
            .unwrap();
        let pending = outbox.pending(10).await.unwrap();
        assert_eq!(pending.len(), 3);
        assert_eq!(pending[0].record_id, rid('a').as_str(), "oldest first");
        assert_eq!(
            outbox
                .mark_sent(&[rid('a').to_string(), rid('a').to_string()])
                .await
                .unwrap(),
            1
        );
        outbox
            .mark_refused(rid('b').as_str(), Refusal::Conflict, "409")
            .await
            .unwrap();
        outbox.set_last_error("hub down").await.unwrap();
        outbox.close().await;
        let outbox = Outbox::open(&path).await.unwrap();
        let status = outbox.status().await.unwrap();
        assert_eq!((status.pending, status.sent, status.refused), (1, 1, 1));
        assert_eq!(status.subjects, 1);
        assert_eq!(status.last_upload.unwrap().value, "1 records accepted");
        assert_eq!(status.last_error.unwrap().value, "hub down");
        let pending = outbox.pending(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].sealed, b"3");
    }
}
