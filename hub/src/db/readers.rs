//! SQLite connections that run the hot one-statement reads on the request's own thread.
//!
//! sqlx runs every SQLite statement on a worker thread of its connection and hands the
//! rows back: two thread switches a statement, about a fifth of a read's CPU under load.
//! A read of a few indexed rows takes microseconds, so it is cheaper to run it where the
//! request already is. These connections are read-only and never hold a transaction
//! beyond one statement; in WAL mode a reader does not wait for the writer.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlx::Row;

use crate::error::{Error, Result};

/// A parameter of [`super::Db::read_rows`], bound as `$1`, `$2`, … in order.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// A text value.
    Text(&'a str),
    /// An integer value.
    Int(i64),
}

/// Typed columns, by name, of a row from either driver: what a row parser of
/// [`super::Db::read_rows`] reads.
pub trait Columns {
    /// A text column (`None` for NULL).
    fn text(&self, name: &str) -> Result<Option<String>>;
    /// An integer column.
    fn int(&self, name: &str) -> Result<Option<i64>>;
    /// A blob column.
    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>>;
}

/// `v`, or an error naming the column `name` that was NULL.
pub fn required<T>(name: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::internal(format!("stored `{name}` is NULL")))
}

impl Columns for sqlx::any::AnyRow {
    fn text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.try_get(name)?)
    }
    fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.try_get(name)?)
    }
    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.get(name)?)
    }
    fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.get(name)?)
    }
    fn bytes(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get(name)?)
    }
}

/// Runs `sql` with `params` on `conn` (its statement cached), parsing each row.
pub(crate) fn rows_on<T>(
    conn: &Connection,
    sql: &str,
    params: &[Param<'_>],
    parse: impl Fn(&dyn Columns) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (n, param) in (1..).zip(params) {
        // Named `$n` parameters are numbered by first appearance, not by `n`.
        let Some(at) = stmt.parameter_index(&format!("${n}"))? else {
            continue;
        };
        match *param {
            Param::Text(v) => stmt.raw_bind_parameter(at, v)?,
            Param::Int(v) => stmt.raw_bind_parameter(at, v)?,
        }
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(parse(r)?);
    }
    Ok(out)
}

/// A few read-only connections, each used by one thread at a time.
#[derive(Debug)]
pub(crate) struct Readers {
    conns: Vec<Mutex<Connection>>,
}

/// How long a reader waits for a lock SQLite holds only briefly in WAL mode (recovering
/// the WAL index after a crash). Short: the wait blocks a runtime thread.
const BUSY: Duration = Duration::from_millis(200);

impl Readers {
    /// Opens `count` read-only connections to the database file at `path`.
    pub(crate) fn open(path: &Path, count: usize) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let conn = Connection::open_with_flags(path, flags).map_err(|e| {
                Error::unavailable_from(format!("database file `{}`", path.display()), e)
            })?;
            conn.busy_timeout(BUSY)?;
            conns.push(Mutex::new(conn));
        }
        Ok(Readers { conns })
    }

    /// Runs `read` on a free connection, or returns `None` when every one is in use
    /// (the caller then uses the pool). Never waits for another thread.
    pub(crate) fn try_read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T>,
    ) -> Option<Result<T>> {
        let conn = self.conns.iter().find_map(|c| c.try_lock().ok())?;
        Some(read(&conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_committed_rows_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7);",
            )
            .unwrap();
        let readers = Readers::open(&path, 2).unwrap();
        let v: i64 = readers
            .try_read(|c| Ok(c.query_row("SELECT v FROM t", [], |r| r.get(0))?))
            .unwrap()
            .unwrap();
        assert_eq!(v, 7);
        let write = readers.try_read(|c| Ok(c.execute("INSERT INTO t VALUES (8)", [])?));
        assert!(matches!(write, Some(Err(_))), "a reader wrote: {write:?}");
    }

    #[test]
    fn every_connection_in_use_means_none_not_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (v INTEGER)")
            .unwrap();
        let readers = Readers::open(&path, 1).unwrap();
        let inner = readers.try_read(|_| Ok(readers.try_read(|_| Ok(())).is_none()));
        assert!(
            inner.unwrap().unwrap(),
            "a second read took the only connection"
        );
        assert!(readers.try_read(|_| Ok(())).is_some());
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.db");
        let err = Readers::open(&path, 1).unwrap_err().to_string();
        assert!(err.contains("absent.db"), "{err}");
    }
}
