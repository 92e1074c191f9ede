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

    /// A transaction holding SQLite's write lock from its first statement.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with(BEGIN_WRITE).await?)
    }

    /// A read transaction: its first read fixes one snapshot (WAL).
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin().await?)
    }
}

crate::store::ops::consent_store!(SqliteStore);
