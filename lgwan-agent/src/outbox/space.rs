//! A full disk under the outbox, told apart from other database failures: SQLite's
//! `SQLITE_FULL` and the system's "no space left on device" both become one message
//! that says what happened to the data and what to do.

/// SQLite's primary result code for "database or disk is full".
const SQLITE_FULL: &str = "13";

/// The reason given when the outbox's disk is full. A failed write is rolled back by
/// SQLite (WAL, one transaction per batch), so what was committed before stays whole.
pub(crate) const NO_SPACE: &str = "no space left on the device holding the outbox \
    (database or disk is full): the write in progress was rolled back and the records \
    spooled before are intact; free space and run the command again";

/// Whether `e` means the outbox's file system is full.
pub(crate) fn is_disk_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c == SQLITE_FULL || c.parse::<i64>().is_ok_and(|n| n & 0xff == 13)),
        sqlx::Error::Io(io) => is_storage_full(io),
        _ => false,
    }
}

/// Whether an I/O error is the system's "no space left on device" (or over quota).
pub(crate) fn is_storage_full(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_full_io_errors_are_recognized() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(is_disk_full(&sqlx::Error::Io(full)));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!is_disk_full(&sqlx::Error::Io(other)));
        assert!(!is_disk_full(&sqlx::Error::RowNotFound));
        assert!(NO_SPACE.starts_with("no space left"));
    }

    #[tokio::test]
    async fn sqlite_full_is_recognized() {
        // `max_page_count` makes SQLite answer SQLITE_FULL without filling a disk.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        let outbox = super::super::Outbox::open(&path).await.unwrap();
        let mut conn = outbox.pool.acquire().await.unwrap();
        sqlx::query("PRAGMA max_page_count = 8")
            .execute(&mut *conn)
            .await
            .unwrap();
        let e = sqlx::query("INSERT INTO meta (key, value, at) VALUES ('x', ?, 'now')")
            .bind("x".repeat(64 * 1024))
            .execute(&mut *conn)
            .await
            .unwrap_err();
        assert!(is_disk_full(&e), "{e}");
        let reason = super::super::db_error(&path, e).to_string();
        assert!(
            reason.contains("no space left") && reason.contains("o.sqlite"),
            "{reason}"
        );
    }
}
