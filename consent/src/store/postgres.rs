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

/// Runs `$body` (an `ops::…_locked` call on `$conn`) in a locked write transaction.
macro_rules! write_tx {
    ($self:ident, |$conn:ident| $body:expr) => {{
        let mut tx = $self.pool.begin().await?;
        lock_ledger(&mut tx).await?;
        let $conn: &mut PgConnection = &mut tx;
        let out = $body.await?;
        tx.commit().await?;
        Ok(out)
    }};
}

impl ConsentStore for PgStore {
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
        // One snapshot for the whole walk, so concurrent appends do not interleave.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let report = ops::verify_chain(&mut tx, expected).await;
        tx.rollback().await?;
        report
    }
}
