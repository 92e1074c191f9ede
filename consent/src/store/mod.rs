//! The consent store: one trait, a SQLite and a PostgreSQL implementation sharing
//! migrations and SQL, and an enum over both for callers that pick at run time.
//!
//! Migrations: [`migrator`] returns the crate's migrator (versions in
//! [`MIGRATION_VERSIONS`]) with `ignore_missing` set, so it can share sqlx's
//! `_sqlx_migrations` table with the hub's own migrator, provided the hub's
//! migrator also sets `ignore_missing` and uses versions outside that range.
//! [`SqliteStore`] and [`PgStore`] run it when they open a pool.

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};

use crate::ledger::{ChainHead, ChainReport, LedgerEntry};
use crate::model::{Consent, ConsentTerms, RevocationRequest};
use crate::receipt::Receipt;
use crate::{Error, Result};

mod ops;
pub mod postgres;
pub mod shared;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Migration versions reserved for this crate; the hub must use others.
pub const MIGRATION_VERSIONS: std::ops::RangeInclusive<i64> = 10_001..=10_999;

/// The crate's migrations (`consent/migrations/`), with `ignore_missing` set so that
/// other migrators' rows in `_sqlx_migrations` are tolerated.
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations");
    m.set_ignore_missing(true);
    m
}

/// A change in a recipient's consents: one ledger entry (one consent version).
pub type ConsentChange = LedgerEntry;

/// The question "may `recipient` receive this record?", asked of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverQuery<'a> {
    /// Subject token of the record.
    pub subject: &'a str,
    /// Participant asking.
    pub recipient: &'a str,
    /// The record's data category.
    pub category: &'a str,
    /// The record's effective date.
    pub effective_date: NaiveDate,
}

/// Consent storage. Every change appends to the hash-chained ledger in the same
/// transaction as the projection it updates.
pub trait ConsentStore {
    /// Grants a consent; returns version 1 and the receipt with its one-time code.
    /// Only a hash of the code (keyed with `pepper` when non-empty) is stored.
    fn grant(
        &self,
        terms: ConsentTerms,
        pepper: &[u8],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Consent, Receipt)>> + Send;

    /// The current version of consent `id`.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Consent>>> + Send;

    /// Every version of consent `id`, oldest first.
    fn history(&self, id: &str) -> impl Future<Output = Result<Vec<Consent>>> + Send;

    /// Current versions of all consents of `subject`.
    fn list_by_subject(&self, subject: &str) -> impl Future<Output = Result<Vec<Consent>>> + Send;

    /// Active consents covering the query at `now` (one indexed query).
    fn active_covering(
        &self,
        query: &CoverQuery<'_>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Consent>>> + Send;

    /// Revokes consent `id`; returns the new (revoked) version.
    fn revoke(
        &self,
        id: &str,
        request: &RevocationRequest,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Consent>> + Send;

    /// Revokes the consent whose receipt carries `code`; a code works only once.
    fn revoke_by_code(
        &self,
        code: &str,
        pepper: &[u8],
        request: &RevocationRequest,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Consent>> + Send;

    /// Replaces consent `old_id` by a new one (same subject and recipient); the old
    /// one gets a `superseded` version, the new one names it in `supersedes`.
    fn supersede(
        &self,
        old_id: &str,
        terms: ConsentTerms,
        pepper: &[u8],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Consent, Receipt)>> + Send;

    /// Changes to `recipient`'s consents after ledger seq `cursor`, at most `limit`,
    /// and the cursor to pass next time (unchanged when there is nothing new).
    fn changed_since(
        &self,
        recipient: &str,
        cursor: i64,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<ConsentChange>, i64)>> + Send;

    /// The ledger's newest entry; record it to detect truncation later.
    fn head(&self) -> impl Future<Output = Result<Option<ChainHead>>> + Send;

    /// Verifies the chain; [`Error::Chain`] names the first bad entry. With `expected`
    /// (a head recorded earlier), also detects truncation and rewritten history.
    fn verify_chain(
        &self,
        expected: Option<&ChainHead>,
    ) -> impl Future<Output = Result<ChainReport>> + Send;
}

/// Either backend, chosen at run time (e.g. from a database URL).
#[derive(Debug, Clone)]
pub enum AnyConsentStore {
    /// Embedded SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl AnyConsentStore {
    /// Opens `sqlite:PATH` / `sqlite::memory:` or connects to `postgres://…`.
    pub async fn connect(url: &str) -> Result<AnyConsentStore> {
        if url == "sqlite::memory:" {
            Ok(AnyConsentStore::Sqlite(SqliteStore::memory().await?))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Ok(AnyConsentStore::Sqlite(
                SqliteStore::open(std::path::Path::new(path)).await?,
            ))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyConsentStore::Postgres(PgStore::connect(url).await?))
        } else {
            Err(Error::InvalidDatabaseUrl)
        }
    }
}

/// Forwards a trait call to whichever backend is inside.
macro_rules! forward {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match $self {
            AnyConsentStore::Sqlite(s) => s.$method($($arg),*).await,
            AnyConsentStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl ConsentStore for AnyConsentStore {
    async fn grant(
        &self,
        terms: ConsentTerms,
        pepper: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Consent, Receipt)> {
        forward!(self, grant(terms, pepper, now))
    }

    async fn get(&self, id: &str) -> Result<Option<Consent>> {
        forward!(self, get(id))
    }

    async fn history(&self, id: &str) -> Result<Vec<Consent>> {
        forward!(self, history(id))
    }

    async fn list_by_subject(&self, subject: &str) -> Result<Vec<Consent>> {
        forward!(self, list_by_subject(subject))
    }

    async fn active_covering(
        &self,
        query: &CoverQuery<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Consent>> {
        forward!(self, active_covering(query, now))
    }

    async fn revoke(
        &self,
        id: &str,
        request: &RevocationRequest,
        now: DateTime<Utc>,
    ) -> Result<Consent> {
        forward!(self, revoke(id, request, now))
    }

    async fn revoke_by_code(
        &self,
        code: &str,
        pepper: &[u8],
        request: &RevocationRequest,
        now: DateTime<Utc>,
    ) -> Result<Consent> {
        forward!(self, revoke_by_code(code, pepper, request, now))
    }

    async fn supersede(
        &self,
        old_id: &str,
        terms: ConsentTerms,
        pepper: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(Consent, Receipt)> {
        forward!(self, supersede(old_id, terms, pepper, now))
    }

    async fn changed_since(
        &self,
        recipient: &str,
        cursor: i64,
        limit: u32,
    ) -> Result<(Vec<ConsentChange>, i64)> {
        forward!(self, changed_since(recipient, cursor, limit))
    }

    async fn head(&self) -> Result<Option<ChainHead>> {
        forward!(self, head())
    }

    async fn verify_chain(&self, expected: Option<&ChainHead>) -> Result<ChainReport> {
        forward!(self, verify_chain(expected))
    }
}
