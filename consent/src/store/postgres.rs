//! The PostgreSQL backend: writes are serialized with a transaction-scoped advisory
//! lock, so concurrent hub instances can never fork the ledger's chain.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
pub use sqlx::{PgConnection, PgPool};

use crate::Result;
use crate::ledger::{ChainHead, ChainReport};
use crate::model::{Consent, ConsentTerms, RevocationRequest};
use crate::receipt::Receipt;
use crate::store::{ConsentChange, ConsentStore, CoverQuery, migrator};

mod ops {
    crate::store::ops::consent_ops!(sqlx::PgConnection);
}

pub use ops::active_covering;

/// The advisory-lock key guarding ledger appends ("renkei" in ASCII, then 0x01).
pub const LEDGER_LOCK_KEY: i64 = 0x0072_656e_6b65_6901;

/// Consent store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and runs the migrations.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await?;
        PgStore::from_pool(pool).await
    }

    /// Uses an existing pool (shared with the hub's own tables); runs the migrations.
    pub async fn from_pool(pool: PgPool) -> Result<PgStore> {
        migrator().run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// The pool, to share with other tables of the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction holding the ledger's lock (an advisory lock).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        lock_ledger(&mut tx).await?;
        Ok(tx)
    }

    /// One snapshot for a whole walk, so concurrent appends do not interleave.
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }
}

/// Takes the ledger's append lock for the rest of the caller's transaction. Call it
/// first in any transaction of yours that writes consents through this crate's SQL.
pub async fn lock_ledger(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LEDGER_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

crate::store::ops::consent_store!(PgStore);
