//! The hub's database handle: one `sqlx::AnyPool` over SQLite (embedded default) or
//! PostgreSQL, the shared migrations, and time conversions.
//!
//! Every query is portable SQL with `$n` placeholders, so one code path serves both
//! databases and both are tested. Serialized appends (audit chain, feed sequence) lock
//! a row of `hub_sequences` first: a row lock on PostgreSQL, the write lock on SQLite.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Row};

use crate::error::{Error, Result};

mod readers;

pub use readers::{Columns, Param, required};

/// The hub's connection pool and what kind of database is behind it.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// SQLite file only: connections for the hot one-statement reads ([`Db::try_read`]).
    readers: Option<Arc<readers::Readers>>,
}

/// Synchronous reader connections on SQLite: one per runtime thread, at most eight.
fn reader_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (WAL mode).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`) and runs migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::config(format!(
                "database_url `{}` must start with `sqlite:` or `postgres://`",
                redact_url(url)
            )));
        };
        let options = AnyConnectOptions::from_str(&with_sqlite_pragmas(url, backend))
            .map_err(|e| Error::config_from(format!("database_url `{}`", redact_url(url)), e))?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            // A request cancelled mid-transaction (a client that disconnects) can leave a
            // pooled connection inside its transaction (sqlx#3932); on SQLite that would
            // hold the write lock forever. Such a connection is closed, never handed out.
            .before_acquire(|conn, _meta| {
                Box::pin(async move {
                    use sqlx::TransactionManager;
                    let depth =
                        <sqlx::Any as sqlx::Database>::TransactionManager::get_transaction_depth(
                            conn,
                        );
                    if depth > 0 {
                        tracing::warn!(
                            depth,
                            "closing a pooled connection left inside a transaction"
                        );
                    }
                    Ok(depth == 0)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in SQLITE_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(|e| Error::unavailable_from(format!("database `{}`", redact_url(url)), e))?;
        let mut db = Db {
            pool,
            backend,
            readers: None,
        };
        db.migrate().await?;
        if backend == Backend::Sqlite {
            let file =
                sqlx::sqlite::SqliteConnectOptions::from_str(&with_sqlite_pragmas(url, backend))
                    .map_err(|e| {
                        Error::config_from(format!("database_url `{}`", redact_url(url)), e)
                    })?
                    .get_filename()
                    .to_owned();
            if file != std::path::Path::new(":memory:") {
                db.readers = Some(Arc::new(readers::Readers::open(&file, reader_count())?));
            }
        }
        Ok(db)
    }

    /// Runs one read statement outside any transaction and parses its rows: on a SQLite
    /// file synchronously on this thread ([`readers`]), on the pool when every reader is
    /// in use, on an in-memory SQLite and on PostgreSQL.
    pub async fn read_rows<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        parse: impl Fn(&dyn Columns) -> Result<T>,
    ) -> Result<Vec<T>> {
        if let Some(rows) = self
            .readers
            .as_deref()
            .and_then(|r| r.try_read(|conn| readers::rows_on(conn, sql, params, &parse)))
        {
            return rows;
        }
        let mut query = sqlx::query(sql);
        for param in params {
            query = match *param {
                Param::Text(v) => query.bind(v),
                Param::Int(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(|r| parse(r)).collect()
    }

    async fn migrate(&self) -> Result<()> {
        let mut consent = renkei_consent::migrator();
        consent.set_ignore_missing(true);
        consent
            .run(&self.pool)
            .await
            .map_err(|e| Error::unavailable_from("consent migrations", e))?;
        let mut hub = sqlx::migrate!("./migrations");
        hub.set_ignore_missing(true);
        hub.run(&self.pool)
            .await
            .map_err(|e| Error::unavailable_from("hub migrations", e))?;
        Ok(())
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting up to the busy timeout): every hub transaction appends to the
    /// audit log, and upgrading a read transaction later would fail with `SQLITE_BUSY`.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Begins a transaction that only reads. On SQLite it takes no lock (in WAL mode its
    /// first read fixes a snapshot), so reads run beside the writer and each other.
    pub async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN DEFERRED").await?,
            Backend::Postgres => self.pool.begin_with("BEGIN READ ONLY").await?,
        })
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// SQLite: one file in WAL mode, foreign keys on, and a busy timeout so writers queue.
fn with_sqlite_pragmas(url: &str, backend: Backend) -> String {
    if backend != Backend::Sqlite {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut out = url.to_owned();
    if !url.contains("mode=") {
        out.push(sep);
        out.push_str("mode=rwc");
    }
    out
}

/// Per-connection SQLite settings: WAL (one file plus its log), writers queue for up
/// to 10 s instead of failing, and a commit is durable once it returns. (A memory map
/// for reads was tried and measured slower under read load: page faults, remapping
/// and TLB shootdowns cost more than the `pread`s it saves.)
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
];

/// The file of a SQLite `database_url` (`None` for PostgreSQL or an in-memory database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// Removes a password from a database URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = url.get(scheme_end + 3..at).unwrap_or_default();
            let user = creds.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:***{}",
                url.get(..scheme_end + 3).unwrap_or_default(),
                url.get(at..).unwrap_or_default()
            )
        }
        _ => url.to_owned(),
    }
}

/// Takes the next value of a named sequence, locking its row until the transaction ends.
/// Returns the new value and the stored head (for hash chains).
pub async fn next_in_sequence(conn: &mut AnyConnection, name: &str) -> Result<(i64, String)> {
    reserve_in_sequence(conn, name, 1).await
}

/// Takes the next `n` values of a named sequence, locking its row until the transaction
/// ends. Returns the first of them and the stored head (for hash chains).
pub async fn reserve_in_sequence(
    conn: &mut AnyConnection,
    name: &str,
    n: usize,
) -> Result<(i64, String)> {
    let n = i64::try_from(n)
        .map_err(|e| Error::internal_from(format!("sequence `{name}`: {n} values"), e))?;
    sqlx::query("UPDATE hub_sequences SET value = value + $1 WHERE name = $2")
        .bind(n)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query("SELECT value, head FROM hub_sequences WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    let last: i64 = row.try_get("value")?;
    Ok((last - n + 1, row.try_get("head")?))
}

/// `$first, $first+1, …` for `n` parameters, comma-separated.
pub fn placeholders(first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    for k in first..first + n {
        if k > first {
            out.push(',');
        }
        out.push('$');
        out.push_str(&k.to_string());
    }
    out
}

/// `VALUES` rows for a multi-row `INSERT` of `rows` × `columns` parameters, for a
/// statement with no other parameters. SQLite gets anonymous `?`: sqlx looks every
/// named parameter up with `sqlite3_bind_parameter_name`, a linear scan, which makes
/// binding a large statement quadratic (seen at 2% of a read-heavy profile).
pub fn values_rows(conn: &AnyConnection, rows: usize, columns: usize) -> String {
    let anonymous = conn.backend_name().eq_ignore_ascii_case("sqlite");
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        if anonymous {
            out.push_str(&vec!["?"; columns].join(","));
        } else {
            out.push_str(&placeholders(r * columns + 1, columns));
        }
        out.push(')');
    }
    out
}

/// Stores the head of a hash-chained sequence after an append.
pub async fn set_sequence_head(conn: &mut AnyConnection, name: &str, head: &str) -> Result<()> {
    sqlx::query("UPDATE hub_sequences SET head = $1 WHERE name = $2")
        .bind(head)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A UTC time as stored: microseconds since the epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A stored time back to UTC; out-of-range values are an error, not a panic.
pub fn from_micros(v: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_micros(v)
        .single()
        .ok_or_else(|| Error::internal(format!("stored time {v} is out of range")))
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    #[tokio::test]
    async fn multi_row_placeholders_are_anonymous_only_on_sqlite() {
        sqlx::any::install_default_drivers();
        let conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
        assert_eq!(values_rows(&conn, 2, 3), "(?,?,?),(?,?,?)");
        assert_eq!(placeholders(4, 3), "$4,$5,$6");
        if let Ok(url) = std::env::var("RENKEI_TEST_PG_URL") {
            let conn = AnyConnection::connect(&url).await.unwrap();
            assert_eq!(values_rows(&conn, 2, 2), "($1,$2),($3,$4)");
        }
    }
}
