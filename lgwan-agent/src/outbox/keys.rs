//! Finding a record by its id: a 64-bit key of the id (its FNV-1a hash) indexed in three
//! levels, so spooling costs about the same per record whatever the outbox holds.
//!
//! Record ids are keyed hashes, so an index of them takes every insert at a random
//! place: with a million records a batch of 4,000 rewrites some 3,500 index pages, each
//! written to the WAL and again at the checkpoint (docs/benchmarks.md). Here a batch's
//! keys go into a small `record_keys_recent` tree, whose few pages a batch shares. A level
//! that holds its limit moves, in key order, into the next one in one sweep: the recent
//! level every [`RECENT_MAX`] keys, the middle one every [`GROWTH`] times that. So the
//! main tree, which holds nearly every key, is swept once per 800,000 records rather than
//! once per 50,000. Every lookup checks every level and confirms the id on the outbox row,
//! so two ids with one key are never confused.

use std::collections::{HashMap, HashSet};

use sqlx::{Sqlite, Transaction};

/// Keys in the recent level before they move to the middle one.
pub(super) const RECENT_MAX: i64 = 50_000;

/// How many times more keys each level holds before it moves than the one before.
pub(super) const GROWTH: i64 = 16;

/// The levels, smallest first; the last one has no limit.
pub(super) const LEVELS: [&str; 3] = ["record_keys_recent", "record_keys_mid", "record_keys"];

/// The levels' tables.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS record_keys_recent (
    key INTEGER NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (key, row)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_keys_mid (
    key INTEGER NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (key, row)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_keys (
    key INTEGER NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (key, row)
) WITHOUT ROWID;
";

/// The outbox rowid of record `?2` whose key is `?1` (an empty set if there is none).
pub(super) const ROW_OF: &str = "(SELECT k.row FROM record_keys_recent k \
    JOIN outbox o ON o.rowid = k.row WHERE k.key = ?1 AND o.record_id = ?2 \
    UNION ALL SELECT k.row FROM record_keys_mid k \
    JOIN outbox o ON o.rowid = k.row WHERE k.key = ?1 AND o.record_id = ?2 \
    UNION ALL SELECT k.row FROM record_keys k \
    JOIN outbox o ON o.rowid = k.row WHERE k.key = ?1 AND o.record_id = ?2)";

/// The key of a record id: its 64-bit FNV-1a hash.
pub(super) fn key_of(record_id: &str) -> i64 {
    let hash = record_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Outbox rows read at a time while an old outbox's keys are built.
const BUILD_ROWS: i64 = 100_000;

/// Indexes every outbox row not yet indexed (an outbox from before the keys), once.
pub(super) async fn build(tx: &mut Transaction<'_, Sqlite>) -> Result<(), sqlx::Error> {
    build_reading(tx, BUILD_ROWS).await
}

/// [`build`], reading the outbox `rows` rows at a time in rowid order, so that memory
/// stays bounded however many records the outbox holds.
async fn build_reading(tx: &mut Transaction<'_, Sqlite>, rows: i64) -> Result<(), sqlx::Error> {
    let built: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'record_keys'")
            .fetch_optional(&mut **tx)
            .await?;
    if built.is_some() {
        return Ok(());
    }
    let mut from = i64::MIN;
    loop {
        let read: Vec<(i64, String)> = sqlx::query_as(
            "SELECT rowid, record_id FROM outbox WHERE rowid >= ? ORDER BY rowid LIMIT ?",
        )
        .bind(from)
        .bind(rows)
        .fetch_all(&mut **tx)
        .await?;
        let mut keys: Vec<(i64, i64)> = read.iter().map(|(row, id)| (key_of(id), *row)).collect();
        keys.sort_unstable();
        insert_into(tx, "record_keys", &keys).await?;
        match read.last().map(|(row, _)| row.checked_add(1)) {
            Some(Some(next)) if read.len() as i64 == rows => from = next,
            _ => break,
        }
    }
    let mark = format!(
        "INSERT INTO meta (key, value, at) VALUES ('record_keys', 'built', {})",
        super::NOW
    );
    sqlx::query(&mark).execute(&mut **tx).await?;
    Ok(())
}

/// Rows a multi-row statement takes (2 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts `keys` (key, rowid) into `table`.
async fn insert_into(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    keys: &[(i64, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let marks = vec!["(?, ?)"; chunk.len()].join(",");
        let sql = format!("INSERT INTO {table} (key, row) VALUES {marks}");
        let mut query = sqlx::query(&sql);
        for (key, row) in chunk {
            query = query.bind(*key).bind(*row);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Indexes new outbox rows (rowid, record id) in the recent level, then moves each full
/// level into the next; the recent level is full at `recent_max` keys ([`RECENT_MAX`] but
/// in tests).
pub(super) async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[(i64, &str)],
    recent_max: i64,
) -> Result<(), sqlx::Error> {
    let keys: Vec<(i64, i64)> = rows.iter().map(|(row, id)| (key_of(id), *row)).collect();
    insert_into(tx, LEVELS[0], &keys).await?;
    let mut limit = recent_max;
    for pair in LEVELS.windows(2) {
        let [from, to] = pair else { break };
        let count = format!("SELECT COUNT(*) FROM {from}");
        let held: i64 = sqlx::query_scalar(&count).fetch_one(&mut **tx).await?;
        if held < limit {
            break;
        }
        let sweep =
            format!("INSERT INTO {to} (key, row) SELECT key, row FROM {from} ORDER BY key, row");
        sqlx::query(&sweep).execute(&mut **tx).await?;
        let empty = format!("DELETE FROM {from}");
        sqlx::query(&empty).execute(&mut **tx).await?;
        limit = limit.saturating_mul(GROWTH);
    }
    Ok(())
}

/// Those of `ids` the outbox already holds.
pub(super) async fn existing(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[&str],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let wanted: HashSet<&str> = ids.iter().copied().collect();
    let mut found = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = LEVELS
            .map(|level| {
                format!(
                    "SELECT o.record_id, o.subject FROM {level} k JOIN outbox o ON o.rowid = k.row \
                     WHERE k.key IN ({marks})"
                )
            })
            .join(" UNION ALL ");
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for _level in LEVELS {
            for id in chunk {
                query = query.bind(key_of(id));
            }
        }
        for (id, subject) in query.fetch_all(&mut **tx).await? {
            if wanted.contains(id.as_str()) {
                found.insert(id, subject);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fnv1a() {
        // The FNV-1a test vectors, as signed 64-bit integers.
        assert_eq!(key_of(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(key_of("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
        assert_eq!(key_of("foobar"), 0x8594_4171_f739_67e8_u64 as i64);
    }

    #[tokio::test]
    async fn an_old_outbox_gets_every_key_read_a_few_rows_at_a_time() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE outbox (record_id TEXT NOT NULL); \
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, at TEXT NOT NULL);",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::raw_sql(SCHEMA).execute(&pool).await.unwrap();
        // Seven rows, one at a rowid below zero, read three at a time.
        let ids: Vec<String> = (0..7).map(|i| format!("id-{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            sqlx::query("INSERT INTO outbox (rowid, record_id) VALUES (?, ?)")
                .bind(i as i64 * 10 - 5)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
        for _ in 0..2 {
            let mut tx = pool.begin().await.unwrap();
            build_reading(&mut tx, 3).await.unwrap();
            tx.commit().await.unwrap();
        }
        let mut found: Vec<(i64, i64)> = sqlx::query_as("SELECT key, row FROM record_keys")
            .fetch_all(&pool)
            .await
            .unwrap();
        found.sort_unstable();
        let mut wanted: Vec<(i64, i64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (key_of(id), i as i64 * 10 - 5))
            .collect();
        wanted.sort_unstable();
        assert_eq!(found, wanted, "every row once, built once");
    }
}
