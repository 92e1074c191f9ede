//! The durable outbox: sealed records waiting for upload (their bytes in append-only
//! segment files beside the database, [`segments`]), the subjects the agent
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
mod keys;
mod links;
mod meta;
mod residents;

pub use residents::ResidentLinks;
mod segments;
mod space;
mod witness;

pub use enrollment::EnrollmentStatus;
pub use links::LinkCounts;
pub use meta::{Note, OutboxStatus, check_successor};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    record_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    category TEXT NOT NULL,
    sealed BLOB NOT NULL,
    segment INTEGER,
    seg_offset INTEGER,
    seg_len INTEGER,
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

/// The columns [`Outbox::stored`] reads: a record's id and where its bytes are.
const STORED: &str = "record_id, sealed, segment, seg_offset, seg_len";

/// Rows per multi-row statement in [`Outbox::put`] (at most 7 parameters a row, far
/// below SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 250;

/// `INSERT … VALUES (…), (…) …` for `rows` outbox rows whose bytes are in a segment
/// (`sealed` holds bytes only for records spooled before segments existed).
fn insert_records_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * 70);
    sql.push_str(
        "INSERT INTO outbox (rowid, record_id, subject, category, sealed, segment, seg_offset, \
         seg_len, created_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?, ?, ?, ?, X'', ?, ?, ?, ");
        sql.push_str(NOW);
        sql.push(')');
    }
    sql
}

/// Brings an outbox created by an earlier version up to date: the segment columns (its
/// records keep their bytes in `sealed`) and the record keys ([`keys::build`]). An
/// outbox that old keeps its unique index of record ids too (one more random write per
/// record, and the same answers).
async fn migrate(pool: &SqlitePool) -> std::result::Result<(), sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let has: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE name = 'segment'",
    )
    .fetch_one(&mut *tx)
    .await?;
    if has == 0 {
        for column in ["segment", "seg_offset", "seg_len"] {
            sqlx::query(&format!("ALTER TABLE outbox ADD COLUMN {column} INTEGER"))
                .execute(&mut *tx)
                .await?;
        }
    }
    keys::build(&mut tx).await?;
    tx.commit().await
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Records new to the outbox.
    pub inserted: usize,
    /// Records already there (kept as first sealed).
    pub existing: usize,
    /// Records not spooled because their id is already spooled for another person: two
    /// documents share a document id (the record id is derived from it). The first one
    /// stays; these are for the caller to report.
    pub reused: Vec<RecordId>,
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

/// A spooled record, as [`Outbox::records`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Record id.
    pub record_id: String,
    /// Subject token.
    pub subject: String,
    /// `pending`, `sent`, `conflict` or `rejected`.
    pub state: String,
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
    /// The folder of the segment files ([`segments::folder`]).
    segments: PathBuf,
    /// A segment takes no more batches once it holds this many bytes.
    segment_bytes: u64,
    /// Record keys in the recent level before they move ([`keys::RECENT_MAX`]).
    recent_keys: i64,
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
            // Checkpoint every 64 MiB of WAL, not every 4 MiB: an index page rewritten by
            // several batches in between is copied into the database once.
            .pragma("wal_autocheckpoint", "16384")
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| db_error(path, e))?;
        let outbox = Outbox {
            path: path.to_path_buf(),
            segments: segments::folder(path),
            segment_bytes: segments::SEGMENT_BYTES,
            recent_keys: keys::RECENT_MAX,
            pool,
        };
        sqlx::raw_sql(SCHEMA)
            .execute(&outbox.pool)
            .await
            .map_err(|e| outbox.err(e))?;
        for schema in [segments::SCHEMA, keys::SCHEMA] {
            sqlx::raw_sql(schema)
                .execute(&outbox.pool)
                .await
                .map_err(|e| outbox.err(e))?;
        }
        migrate(&outbox.pool).await.map_err(|e| outbox.db(e))?;
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
        // Counter statements kept before their validity was (under the write lock: the
        // daemon and a counter command may open the outbox at the same moment).
        let mut tx = outbox
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| outbox.db(e))?;
        let has: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('counter_statements') \
             WHERE name = 'valid_until'",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| outbox.db(e))?;
        if has == 0 {
            sqlx::query("ALTER TABLE counter_statements ADD COLUMN valid_until INTEGER")
                .execute(&mut *tx)
                .await
                .map_err(|e| outbox.db(e))?;
        }
        tx.commit().await.map_err(|e| outbox.db(e))?;
        Ok(outbox)
    }

    /// Smaller segments, to test rolling over to the next one.
    #[cfg(test)]
    fn with_segment_bytes(mut self, bytes: u64) -> Outbox {
        self.segment_bytes = bytes;
        self
    }

    /// A smaller recent level of record keys, to test moving it.
    #[cfg(test)]
    fn with_recent_keys(mut self, keys: i64) -> Outbox {
        self.recent_keys = keys;
        self
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
    /// The new records' bytes are appended to the current segment and synced, then
    /// indexed in multi-row statements (`ROWS_PER_INSERT` a statement); each distinct
    /// subject of the batch is upserted once, with the first 枝番 the batch gives it:
    /// the same end state as one statement per record, in far fewer round trips.
    pub async fn put(&self, records: &[NewRecord]) -> Result<PutReport> {
        // The write lock first: appends to a segment happen under it, one writer at a time.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.db(e))?;
        let ids: Vec<&str> = records.iter().map(|r| r.record_id.as_str()).collect();
        let existing = keys::existing(&mut tx, &ids)
            .await
            .map_err(|e| self.db(e))?;
        // An id already spooled (or earlier in this batch) is the same record again,
        // unless it names another person, which is reported, never spooled in silence.
        let mut seen: HashMap<&str, &str> = HashMap::with_capacity(records.len());
        let mut fresh: Vec<&NewRecord> = Vec::with_capacity(records.len());
        let mut reused = Vec::new();
        for r in records {
            let (id, subject) = (r.record_id.as_str(), r.subject.as_str());
            let earlier = existing
                .get(id)
                .map(String::as_str)
                .or_else(|| seen.get(id).copied());
            match earlier {
                None => {
                    seen.insert(id, subject);
                    fresh.push(r);
                }
                Some(first) if first == subject => {}
                Some(first) => {
                    let same = links::same_person(&mut tx, first, subject)
                        .await
                        .map_err(|e| self.db(e))?;
                    if !same {
                        reused.push(r.record_id.clone());
                    }
                }
            }
        }
        if !fresh.is_empty() {
            self.append(&mut tx, &fresh).await?;
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
            inserted: fresh.len(),
            existing: records.len().saturating_sub(fresh.len() + reused.len()),
            reused,
        })
    }

    /// Appends `fresh` to the current segment (a new one once it is full), syncs it, and
    /// indexes the records and the segment's new size in `tx`.
    async fn append(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        fresh: &[&NewRecord],
    ) -> Result<()> {
        let last: Option<(i64, i64)> =
            sqlx::query_as("SELECT id, size FROM segments ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| self.db(e))?;
        let (segment, at) = match last {
            Some((id, size)) if u64::try_from(size).unwrap_or(0) < self.segment_bytes => {
                (id, u64::try_from(size).unwrap_or(0))
            }
            Some((id, _)) => (id + 1, 0),
            None => (1, 0),
        };
        let frames = fresh
            .iter()
            .map(|r| (r.record_id.as_str(), r.sealed.as_slice()));
        let (buf, places) = segments::layout(segment, at, frames)
            .ok_or_else(|| self.err("a record is too large for the outbox (over 4 GiB)"))?;
        let end = at + buf.len() as u64;
        let folder = self.segments.clone();
        tokio::task::spawn_blocking(move || segments::append(&folder, segment, at, &buf))
            .await
            .map_err(|e| Error::Worker(format!("outbox segment write: {e}")))?
            .map_err(|e| self.io(e))?;
        // Rows take the next rowids, in order (the upload order), so that the keys can
        // point at them; the write lock is held, nobody else inserts.
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(rowid), 0) FROM outbox")
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.db(e))?;
        let rows: Vec<(i64, &NewRecord, &segments::Place)> = fresh
            .iter()
            .zip(&places)
            .zip(last + 1..)
            .map(|((r, place), row)| (row, *r, place))
            .collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = insert_records_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for (row, r, place) in chunk {
                query = query
                    .bind(*row)
                    .bind(r.record_id.as_str())
                    .bind(r.subject.as_str())
                    .bind(r.category.as_str())
                    .bind(place.segment)
                    .bind(i64::try_from(place.offset).unwrap_or(i64::MAX))
                    .bind(i64::try_from(place.len).unwrap_or(i64::MAX));
            }
            query.execute(&mut **tx).await.map_err(|e| self.db(e))?;
        }
        let keyed: Vec<(i64, &str)> = rows
            .iter()
            .map(|(row, r, _)| (*row, r.record_id.as_str()))
            .collect();
        keys::insert(tx, &keyed, self.recent_keys)
            .await
            .map_err(|e| self.db(e))?;
        sqlx::query(
            "INSERT INTO segments (id, size) VALUES (?, ?) \
             ON CONFLICT (id) DO UPDATE SET size = excluded.size",
        )
        .bind(segment)
        .bind(i64::try_from(end).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// A failed segment write; a full disk gets the outbox's own reason.
    fn io(&self, e: std::io::Error) -> Error {
        if space::is_storage_full(&e) {
            Error::outbox(&self.path, space::NO_SPACE)
        } else {
            Error::outbox(
                &self.path,
                format!("segment `{}`: {e}", self.segments.display()),
            )
        }
    }

    /// The sealed bytes of `rows` (record id, inline bytes, segment place), in order.
    async fn load(
        &self,
        rows: Vec<(String, Vec<u8>, Option<segments::Place>)>,
    ) -> Result<Vec<Vec<u8>>> {
        let wanted: Vec<(String, segments::Place)> = rows
            .iter()
            .filter_map(|(id, _, place)| place.map(|p| (id.clone(), p)))
            .collect();
        let folder = self.segments.clone();
        let mut stored = tokio::task::spawn_blocking(move || segments::read(&folder, &wanted))
            .await
            .map_err(|e| Error::Worker(format!("outbox segment read: {e}")))?
            .map_err(|e| self.err(e))?
            .into_iter();
        let mut out = Vec::with_capacity(rows.len());
        for (id, inline, place) in rows {
            if place.is_some() {
                out.push(
                    stored
                        .next()
                        .ok_or_else(|| self.err(format!("record `{id}`: not read")))?,
                );
            } else {
                out.push(inline);
            }
        }
        Ok(out)
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
        let rows = sqlx::query(&format!(
            "SELECT state, subject, {STORED} FROM outbox WHERE state = 'pending' \
             ORDER BY rowid LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(self
            .with_bytes(&rows)
            .await?
            .into_iter()
            .map(|r| OutboxItem {
                record_id: r.record_id,
                subject: r.subject,
                sealed: r.sealed,
            })
            .collect())
    }

    /// The state and sealed bytes of one record.
    pub async fn record(&self, record_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let sql = format!(
            "SELECT state, subject, {STORED} FROM outbox WHERE rowid IN {}",
            keys::ROW_OF
        );
        let rows = sqlx::query(&sql)
            .bind(keys::key_of(record_id))
            .bind(record_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        let found = self.with_bytes(&rows).await?.into_iter().next();
        Ok(found.map(|r| (r.state, r.sealed)))
    }

    /// Every record, whatever its state, oldest first.
    pub async fn records(&self) -> Result<Vec<StoredRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT state, subject, {STORED} FROM outbox ORDER BY rowid"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        self.with_bytes(&rows).await
    }

    /// Outbox rows (`state`, `subject` and [`STORED`]) with their sealed bytes, in order.
    async fn with_bytes(&self, rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<StoredRecord>> {
        let mut facts = Vec::with_capacity(rows.len());
        let mut stored = Vec::with_capacity(rows.len());
        for r in rows {
            let state: String = r.try_get("state").map_err(|e| self.db(e))?;
            let subject: String = r.try_get("subject").map_err(|e| self.db(e))?;
            let place = self.stored(r)?;
            facts.push((place.0.clone(), subject, state));
            stored.push(place);
        }
        let sealed = self.load(stored).await?;
        Ok(facts
            .into_iter()
            .zip(sealed)
            .map(|((record_id, subject, state), sealed)| StoredRecord {
                record_id,
                subject,
                state,
                sealed,
            })
            .collect())
    }

    /// A row's record id and where its bytes are (selected with [`STORED`]).
    fn stored(
        &self,
        r: &sqlx::sqlite::SqliteRow,
    ) -> Result<(String, Vec<u8>, Option<segments::Place>)> {
        let id: String = r.try_get("record_id").map_err(|e| self.db(e))?;
        let segment: Option<i64> = r.try_get("segment").map_err(|e| self.db(e))?;
        let offset: Option<i64> = r.try_get("seg_offset").map_err(|e| self.db(e))?;
        let len: Option<i64> = r.try_get("seg_len").map_err(|e| self.db(e))?;
        let place = match (segment, offset, len) {
            (Some(segment), Some(offset), Some(len)) => Some(segments::Place {
                segment,
                offset: u64::try_from(offset).map_err(|e| self.err(e))?,
                len: u64::try_from(len).map_err(|e| self.err(e))?,
            }),
            (None, None, None) => None,
            _ => return Err(self.err(format!("record `{id}`: its segment place is incomplete"))),
        };
        let inline = if place.is_some() {
            Vec::new()
        } else {
            r.try_get("sealed").map_err(|e| self.db(e))?
        };
        Ok((id, inline, place))
    }

    /// Marks the pending records `ids` as accepted by the hub; returns how many changed.
    pub async fn mark_sent(&self, ids: &[String]) -> Result<usize> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let mut changed = 0;
        for id in ids {
            let done = sqlx::query(&format!(
                "UPDATE outbox SET state = 'sent', sent_at = {NOW}, attempts = attempts + 1, \
                 last_error = NULL WHERE rowid IN {} AND state = 'pending'",
                keys::ROW_OF
            ))
            .bind(keys::key_of(id))
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
            sqlx::query(&format!(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?3 \
                 WHERE rowid IN {} AND state = 'pending'",
                keys::ROW_OF
            ))
            .bind(keys::key_of(id))
            .bind(id)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))
    }

    /// Takes one record out of the upload queue for good, keeping the hub's reason.
    pub async fn mark_refused(&self, id: &str, refusal: Refusal, error: &str) -> Result<()> {
        let sql = format!(
            "UPDATE outbox SET state = ?3, attempts = attempts + 1, last_error = ?4 \
             WHERE rowid IN {} AND state = 'pending'",
            keys::ROW_OF
        );
        sqlx::query(&sql)
            .bind(keys::key_of(id))
            .bind(id)
            .bind(refusal.state())
            .bind(error)
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

    /// Records `numbered(i)` of subject `p`, without 枝番, whose bytes are `i` in decimal.
    /// A new outbox in a folder of its own, which lives as long as the returned guard.
    async fn fresh_outbox() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite")).await.unwrap();
        (dir, outbox)
    }

    fn numbered_records(range: std::ops::Range<usize>) -> Vec<NewRecord> {
        range
            .map(|i| NewRecord {
                record_id: numbered(i),
                subject: token('p'),
                branch: None,
                category: "checkup.body".into(),
                sealed: i.to_string().into_bytes(),
            })
            .collect()
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

    /// One record id for two people (two documents sharing a document id) is reported,
    /// not spooled, unless a token key rotation links the two tokens.
    #[tokio::test]
    async fn an_id_spooled_for_another_person_is_reported() {
        let (_dir, outbox) = fresh_outbox().await;
        outbox.put(&[rec('a', 'x', b"one")]).await.unwrap();
        let again = outbox
            .put(&[
                rec('a', 'y', b"two"),
                rec('b', 'x', b"b"),
                rec('b', 'z', b"c"),
            ])
            .await
            .unwrap();
        assert_eq!((again.inserted, again.existing), (1, 0));
        assert_eq!(again.reused, vec![rid('a'), rid('b')]);
        let (_, bytes) = outbox.record(rid('a').as_str()).await.unwrap().unwrap();
        assert_eq!(bytes, b"one", "the first stays");
        // x → y → w by two rotations: the same person under another token.
        outbox
            .put_links(&[(token('x'), token('y')), (token('y'), token('w'))])
            .await
            .unwrap();
        let rotated = outbox
            .put(&[rec('a', 'w', b"three"), rec('a', 'v', b"four")])
            .await
            .unwrap();
        assert_eq!((rotated.inserted, rotated.existing), (0, 1));
        assert_eq!(rotated.reused, vec![rid('a')]);
    }

    #[tokio::test]
    async fn put_is_idempotent_and_keeps_first_bytes() {
        let (_dir, outbox) = fresh_outbox().await;
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
        let (_dir, outbox) = fresh_outbox().await;
        // More rows than one statement takes, a duplicate id inside the batch, and
        // subjects whose 枝番 comes late, early, or never.
        let mut batch = numbered_records(0..ROWS_PER_INSERT + 7);
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

    /// The segment files, sorted, with their sizes.
    fn segment_files(outbox: &Outbox) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(&outbox.segments)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn bytes_go_to_segments_once_and_roll_over() {
        let (_dir, outbox) = fresh_outbox().await;
        let outbox = outbox.with_segment_bytes(100);
        // Frames of 2 + 37 + 4 + 40 = 83 bytes: the second batch still fits the first
        // segment's limit check (83 < 100), the third starts a new one.
        let batch = |c| vec![rec(c, 'x', &[c as u8; 40])];
        for c in ['a', 'b', 'c'] {
            outbox.put(&batch(c)).await.unwrap();
        }
        assert_eq!(
            segment_files(&outbox),
            [("00000001.seg".into(), 166), ("00000002.seg".into(), 83)]
        );
        // A re-import writes no bytes at all.
        let again = outbox.put(&batch('a')).await.unwrap();
        assert_eq!((again.inserted, again.existing), (0, 1));
        assert_eq!(segment_files(&outbox)[1].1, 83);
        let sealed: Vec<Vec<u8>> = outbox
            .pending(10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.sealed)
            .collect();
        assert_eq!(sealed, [[b'a'; 40], [b'b'; 40], [b'c'; 40]]);
        // Nothing of the bytes is in the database.
        let inline: i64 = sqlx::query_scalar("SELECT SUM(LENGTH(sealed)) FROM outbox")
            .fetch_one(&outbox.pool)
            .await
            .unwrap();
        assert_eq!(inline, 0);
    }

    #[tokio::test]
    async fn bytes_of_a_batch_that_never_committed_are_written_over() {
        let (_dir, outbox) = fresh_outbox().await;
        outbox.put(&[rec('a', 'x', b"first")]).await.unwrap();
        // A crash after the append and before the commit leaves a tail nothing points at.
        let file = outbox.segments.join("00000001.seg");
        let committed = std::fs::metadata(&file).unwrap().len();
        let mut tail = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        std::io::Write::write_all(&mut tail, &[0xee; 500]).unwrap();
        drop(tail);
        outbox.put(&[rec('b', 'x', b"second")]).await.unwrap();
        let got = outbox.records().await.unwrap();
        let got: Vec<(&str, &[u8])> = got
            .iter()
            .map(|r| (r.record_id.as_str(), r.sealed.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (rid('a').as_str(), &b"first"[..]),
                (rid('b').as_str(), &b"second"[..])
            ]
        );
        let frame_b = 2 + 37 + 4 + 6;
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            committed + frame_b,
            "the leftover tail is gone"
        );
    }

    #[tokio::test]
    async fn a_damaged_segment_is_an_error_never_other_bytes() {
        let (_dir, outbox) = fresh_outbox().await;
        outbox
            .put(&[rec('a', 'x', b"first"), rec('b', 'x', b"second")])
            .await
            .unwrap();
        let file = outbox.segments.join("00000001.seg");
        let bytes = std::fs::read(&file).unwrap();
        // Record b's frame now names record a.
        let b_frame = bytes.len() - (2 + 37 + 4 + 6);
        let mut damaged = bytes.clone();
        damaged[b_frame + 2..b_frame + 2 + 37].copy_from_slice(rid('a').as_str().as_bytes());
        std::fs::write(&file, &damaged).unwrap();
        let err = outbox.pending(10).await.unwrap_err().to_string();
        assert!(
            err.contains("00000001.seg") && err.contains(rid('b').as_str()),
            "{err}"
        );
        // A segment cut short is an error too.
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        let err = outbox
            .record(rid('b').as_str())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("00000001.seg"), "{err}");
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(outbox.pending(10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_outbox_from_before_segments_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE outbox (record_id TEXT PRIMARY KEY, subject TEXT NOT NULL, \
                 category TEXT NOT NULL, sealed BLOB NOT NULL, state TEXT NOT NULL DEFAULT \
                 'pending', attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, \
                 created_at TEXT NOT NULL, sent_at TEXT)",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO outbox (record_id, subject, category, sealed, created_at) \
                 VALUES (?, ?, 'checkup.body', ?, 'then')",
            )
            .bind(rid('a').as_str())
            .bind(token('x').as_str())
            .bind(&b"old inline bytes"[..])
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let outbox = Outbox::open(&path).await.unwrap();
        outbox
            .put(&[rec('a', 'x', b"resealed"), rec('b', 'x', b"new")])
            .await
            .unwrap();
        let pending = outbox.pending(10).await.unwrap();
        let sealed: Vec<&[u8]> = pending.iter().map(|i| i.sealed.as_slice()).collect();
        assert_eq!(sealed, [&b"old inline bytes"[..], &b"new"[..]]);
        outbox.close().await;
        // Opening again (the columns are there now) changes nothing.
        let outbox = Outbox::open(&path).await.unwrap();
        assert_eq!(outbox.pending(10).await.unwrap(), pending);
    }

    async fn key_levels(outbox: &Outbox) -> [i64; 3] {
        let mut held = [0; 3];
        for (n, table) in held.iter_mut().zip(keys::LEVELS) {
            *n = sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&outbox.pool)
                .await
                .unwrap();
        }
        held
    }

    #[tokio::test]
    async fn record_keys_move_down_the_levels_and_are_found_in_each() {
        // The recent level moves at 4 keys, the middle one at 4 * GROWTH = 64.
        let (_dir, outbox) = fresh_outbox().await;
        let outbox = outbox.with_recent_keys(4);
        let batch = |from, to| numbered_records(from..to);
        outbox.put(&batch(0, 3)).await.unwrap();
        assert_eq!(key_levels(&outbox).await, [3, 0, 0]);
        outbox.put(&batch(3, 6)).await.unwrap();
        assert_eq!(
            key_levels(&outbox).await,
            [0, 6, 0],
            "moved once 4 were recent"
        );
        outbox.put(&batch(6, 66)).await.unwrap();
        assert_eq!(key_levels(&outbox).await, [0, 0, 66], "both moved, in turn");
        outbox.put(&batch(66, 69)).await.unwrap();
        outbox.put(&batch(69, 74)).await.unwrap();
        outbox.put(&batch(74, 75)).await.unwrap();
        assert_eq!(key_levels(&outbox).await, [1, 8, 66]);
        // Every record is found wherever its key is, and spooling again adds nothing.
        let again = outbox.put(&batch(0, 76)).await.unwrap();
        assert_eq!((again.inserted, again.existing), (1, 75));
        assert_eq!(key_levels(&outbox).await, [2, 8, 66]);
        for i in [0, 65, 66, 73, 74, 75] {
            let (_, bytes) = outbox.record(numbered(i).as_str()).await.unwrap().unwrap();
            assert_eq!(bytes, i.to_string().into_bytes());
            assert_eq!(
                outbox.record_subject(numbered(i).as_str()).await.unwrap(),
                Some(token('p'))
            );
        }
        let sent = [0, 70, 75].map(|i| numbered(i).to_string());
        assert_eq!(outbox.mark_sent(&sent).await.unwrap(), 3);
        assert_eq!(outbox.depth().await.unwrap(), 73);
    }

    #[tokio::test]
    async fn a_key_shared_by_two_ids_never_confuses_them() {
        let (_dir, outbox) = fresh_outbox().await;
        outbox.put(&[rec('a', 'x', b"a's bytes")]).await.unwrap();
        // Record b's key, pointing at record a's row in every level: what a hash
        // collision between the two ids would look like.
        for table in keys::LEVELS {
            sqlx::query(&format!("INSERT INTO {table} (key, row) VALUES (?, 1)"))
                .bind(keys::key_of(rid('b').as_str()))
                .execute(&outbox.pool)
                .await
                .unwrap();
        }
        assert_eq!(outbox.record(rid('b').as_str()).await.unwrap(), None);
        assert_eq!(
            outbox.record_subject(rid('b').as_str()).await.unwrap(),
            None
        );
        outbox
            .mark_refused(rid('b').as_str(), Refusal::Rejected, "400")
            .await
            .unwrap();
        assert_eq!(outbox.mark_sent(&[rid('b').to_string()]).await.unwrap(), 0);
        let put = outbox.put(&[rec('b', 'y', b"b's bytes")]).await.unwrap();
        assert_eq!(put.inserted, 1, "b is not taken for a");
        let (state, bytes) = outbox.record(rid('a').as_str()).await.unwrap().unwrap();
        assert_eq!(
            (state.as_str(), bytes.as_slice()),
            ("pending", &b"a's bytes"[..])
        );
        let (_, bytes) = outbox.record(rid('b').as_str()).await.unwrap().unwrap();
        assert_eq!(bytes, b"b's bytes");
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
