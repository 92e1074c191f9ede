//! The consent writes on a caller's own transaction (issue 16): the hub grants and revokes
//! a consent in the same transaction as the links, grant queue, events and audit entry
//! that go with it, so that a crash leaves either all of them or none.
//!
//! The caller's connection is a `sqlx::Any` one on the store's database. On SQLite the
//! caller's transaction must hold the write lock (`BEGIN IMMEDIATE`); on PostgreSQL these
//! functions take the ledger's advisory lock first.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::model::{Consent, ConsentTerms, RevocationRequest};
use crate::receipt::Receipt;
use crate::{Error, Result};

#[expect(
    dead_code,
    reason = "the shared SQL is stamped out whole; the hub uses its writes"
)]
mod ops {
    crate::store::ops::consent_ops!(sqlx::AnyConnection);
}

pub use ops::active_covering;

/// The database behind a caller's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (the transaction already holds the write lock).
    Sqlite,
    /// PostgreSQL (the ledger's advisory lock is taken here).
    Postgres,
}

async fn lock(conn: &mut AnyConnection, dialect: Dialect) -> Result<()> {
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(crate::store::postgres::LEDGER_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Grants a consent in the caller's transaction.
pub async fn grant(
    conn: &mut AnyConnection,
    dialect: Dialect,
    terms: ConsentTerms,
    pepper: &[u8],
    now: DateTime<Utc>,
) -> Result<(Consent, Receipt)> {
    lock(conn, dialect).await?;
    ops::grant_locked(conn, terms, None, pepper, now).await
}

/// Revokes consent `id` in the caller's transaction.
pub async fn revoke(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: &str,
    request: &RevocationRequest,
    now: DateTime<Utc>,
) -> Result<Consent> {
    lock(conn, dialect).await?;
    ops::revoke_locked(conn, id, request, now).await
}

/// Revokes the consent whose receipt carries `code` in the caller's transaction.
pub async fn revoke_by_code(
    conn: &mut AnyConnection,
    dialect: Dialect,
    code: &str,
    pepper: &[u8],
    request: &RevocationRequest,
    now: DateTime<Utc>,
) -> Result<Consent> {
    lock(conn, dialect).await?;
    ops::revoke_by_code_locked(conn, code, pepper, request, now).await
}

/// Consent `id` as the caller's transaction sees it.
pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Consent>> {
    ops::get(conn, id).await
}

/// Turns a missing consent into [`Error::NotFound`].
pub fn found(consent: Option<Consent>, id: &str) -> Result<Consent> {
    consent.ok_or_else(|| Error::NotFound(id.to_owned()))
}
