//! The SQLite backend: one file in WAL mode (or in memory for tests); writes are
//! serialized with `BEGIN IMMEDIATE`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
pub use sqlx::{SqliteConnection, SqlitePool};

use crate::Result;
use crate::ledger::{ChainHead, ChainReport};
use crate::model::{Consent, ConsentTerms, RevocationRequest};
use crate::receipt::Receipt;
use crate::store::{ConsentChange, ConsentStore, CoverQuery, migrator};

mod ops {
    crate::store::ops::consent_ops!(sqlx::SqliteConnection);
}

pub use ops::active_covering;

/// How long a writer waits for SQLite's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The statement that opens every write transaction: takes the write lock up front
/// so two writers can never read the same chain head.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Consent store on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`: WAL, foreign keys,
    /// busy timeout; runs the migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        SqliteStore::from_pool(pool).await
    }

    /// A private in-memory database (one connection kept open), for tests and demos.
    pub async fn memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        SqliteStore::from_pool(pool).await
    }

    /// Uses an existing pool (shared with the hub's own tables); runs the migrations.
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteStore> {
        migrator().run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The pool, to share with other tables of the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Runs `$body` (an `ops::…_locked` call on `$conn`) in a write transaction.
macro_rules! write_tx {
    ($self:ident, |$conn:ident| $body:expr) => {{
        let mut tx = $self.pool.begin_with(BEGIN_WRITE).await?;
        let $conn: &mut SqliteConnection = &mut tx;
        let out = $body.await?;
        tx.commit().await?;
        Ok(out)
    }};
}

impl ConsentStore for SqliteStore {
    async fn grant(
        &self,
        terms: ConsentTerms,
        pepper: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Consent, Receipt)> {
        write_tx!(self, |c| ops::grant_locked(c, terms, None, pepper, now))
    }

    async fn get(&self, id: &str) -> Result<Option<Consent>> {
        ops::get(&mut *self.pool.acquire().await?, id).await
    }

    async fn history(&self, id: &str) -> Result<Vec<Consent>> {
        ops::history(&mut *self.pool.acquire().await?, id).await
    }

    async fn list_by_subject(&self, subject: &str) -> Result<Vec<Consent>> {
        ops::list_by_subject(&mut *self.pool.acquire().await?, subject).await
    }

    async fn active_covering(
        &self,
        query: &CoverQuery<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Consent>> {
        ops::active_covering(&mut *self.pool.acquire().await?, query, now).await
    }

    async fn revoke(
        &self,
        id: &str,
        request: &RevocationRequest,
        now: DateTime<Utc>,
    ) -> Result<Consent> {
        write_tx!(self, |c| ops::revoke_locked(c, id, request, now))
    }

    async fn revoke_by_code(
        &self,
        code: &str,
        pepper: &[u8],
        request: &RevocationRequest,
        now: DateTime<Utc>,
    ) -> Result<Consent> {
        write_tx!(self, |c| ops::revoke_by_code_locked(
            c, code, pepper, request, now
        ))
    }

    async fn supersede(
        &self,
        old_id: &str,
        terms: ConsentTerms,
        pepper: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Consent, Receipt)> {
        write_tx!(self, |c| ops::supersede_locked(
            c, old_id, terms, pepper, now
        ))
    }

    async fn changed_since(
        &self,
        recipient: &str,
        cursor: i64,
        limit: u32,
    ) -> Result<(Vec<ConsentChange>, i64)> {
        ops::changed_since(&mut *self.pool.acquire().await?, recipient, cursor, limit).await
    }

    async fn head(&self) -> Result<Option<ChainHead>> {
        ops::head(&mut *self.pool.acquire().await?).await
    }

    async fn verify_chain(&self, expected: Option<&ChainHead>) -> Result<ChainReport> {
        let mut tx = self.pool.begin().await?;
        let report = ops::verify_chain(&mut tx, expected).await;
        tx.rollback().await?;
        report
    }
}
