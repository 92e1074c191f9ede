//! The audit log's Merkle tree in the database (`hub_log_hashes`): leaf and node hashes
//! appended in the transaction of their entries, roots, inclusion and consistency
//! proofs, and C2SP tiles, all read from the stored hashes.
//!
//! Leaf `i` is the entry with `seq = i + 1`; its leaf data is that entry's 32-byte chain
//! hash, so tiles and proofs carry no entry content (subject tokens, record ids stay in
//! the hub); whoever holds an entry recomputes its chain hash and so its leaf.

use renkei_crypto::tlog::{self, Frontier, Hash, Hashes, Step, Tile};
use sqlx::{AnyConnection, Row};

use crate::db::{self, Db};
use crate::error::{Error, Result};

/// Hashes read per query.
const READ_CHUNK: usize = 500;
/// Rows per multi-row `INSERT` of hashes.
const ROWS_PER_INSERT: usize = 400;

fn log_err(e: renkei_crypto::Error) -> Error {
    Error::internal_from("audit log tree", e)
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::bad_request(format!("{v} is out of range")))
}

/// The leaf data of an entry: its chain hash (hex in `hub_audit.hash`) as 32 bytes.
pub fn leaf_data(chain_hash: &str) -> Result<[u8; 32]> {
    hex::decode(chain_hash)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::internal(format!("audit chain hash `{chain_hash}` is not 32 bytes")))
}

/// The leaf hash of an entry with this chain hash.
pub fn leaf_hash(chain_hash: &str) -> Result<Hash> {
    Ok(tlog::leaf_hash(&leaf_data(chain_hash)?))
}

/// The stored hashes at `indexes` that exist.
async fn read(conn: &mut AnyConnection, indexes: &[u64]) -> Result<Vec<(u64, Hash)>> {
    let mut out = Vec::with_capacity(indexes.len());
    for chunk in indexes.chunks(READ_CHUNK) {
        let sql = format!(
            "SELECT idx, hash FROM hub_log_hashes WHERE idx IN ({})",
            db::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for i in chunk {
            q = q.bind(to_i64(*i)?);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let idx: i64 = r.try_get("idx")?;
            let bytes: Vec<u8> = r.try_get("hash")?;
            let hash = <[u8; 32]>::try_from(bytes)
                .map_err(|_| Error::internal(format!("log hash {idx} is not 32 bytes")))?;
            out.push((idx.unsigned_abs(), Hash(hash)));
        }
    }
    Ok(out)
}

/// The frontier of the tree of `size` leaves, from the stored hashes.
pub async fn frontier(conn: &mut AnyConnection, size: u64) -> Result<Frontier> {
    let indexes = Frontier::indexes(size);
    let found = read(conn, &indexes).await?;
    let mut roots = Vec::with_capacity(indexes.len());
    for i in &indexes {
        let h = found
            .iter()
            .find(|(j, _)| j == i)
            .map(|(_, h)| *h)
            .ok_or_else(|| {
                Error::internal(format!("log hash {i} of the tree of {size} is missing"))
            })?;
        roots.push(h);
    }
    Frontier::from_hashes(size, roots).map_err(log_err)
}

/// Appends leaves `first..` (0-based) with these leaf hashes, inside the caller's
/// transaction, which must hold the audit chain's lock.
pub async fn append(conn: &mut AnyConnection, first: u64, leaves: &[Hash]) -> Result<()> {
    if leaves.is_empty() {
        return Ok(());
    }
    let mut tree = frontier(conn, first).await?;
    let mut rows = Vec::with_capacity(leaves.len() * 2);
    for leaf in leaves {
        let start = tlog::stored_index(0, tree.size());
        for (k, h) in tree.push(*leaf).into_iter().enumerate() {
            rows.push((to_i64(start + k as u64)?, h.0.to_vec()));
        }
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO hub_log_hashes (idx, hash) VALUES {}",
            db::values_rows(conn, chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (idx, hash) in chunk {
            q = q.bind(*idx).bind(hash.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Runs a computation over stored hashes, reading what it asks for until it is done.
/// Hashes that are not stored (beyond the tree) are [`Error::NotFound`].
async fn compute<T>(
    conn: &mut AnyConnection,
    f: impl Fn(&Hashes) -> renkei_crypto::Result<Step<T>>,
) -> Result<T> {
    let mut hashes = Hashes::new();
    for _ in 0..tlog::MAX_ROUNDS {
        match f(&hashes).map_err(Error::bad_input)? {
            Step::Done(v) => return Ok(v),
            Step::Need(indexes) => {
                let found = read(conn, &indexes).await?;
                if found.len() < indexes.len() {
                    return Err(Error::NotFound("beyond the log's tree".into()));
                }
                for (i, h) in found {
                    hashes.insert(i, h);
                }
            }
        }
    }
    Err(Error::internal("log proof needed too many reads"))
}

/// The root of the tree of `size` leaves.
pub async fn root(conn: &mut AnyConnection, size: u64) -> Result<Hash> {
    Ok(frontier(conn, size).await?.root())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub async fn inclusion(conn: &mut AnyConnection, size: u64, index: u64) -> Result<Vec<Hash>> {
    compute(conn, |h| h.inclusion(size, index)).await
}

/// The consistency proof from the tree of `old` leaves to the tree of `new` leaves.
pub async fn consistency(conn: &mut AnyConnection, new: u64, old: u64) -> Result<Vec<Hash>> {
    compute(conn, |h| h.consistency(new, old)).await
}

/// A hash tile's data, or an entries tile's entry bundle (each leaf's data, 32 bytes,
/// length-prefixed). Tiles beyond the stored tree are [`Error::NotFound`].
pub async fn tile(conn: &mut AnyConnection, tile: &Tile) -> Result<Vec<u8>> {
    if !tile.is_data() {
        return compute(conn, |h| h.tile(tile)).await;
    }
    let (first, n) = tlog::tile_leaves(tile);
    let rows = sqlx::query("SELECT hash FROM hub_audit WHERE seq > $1 AND seq <= $2 ORDER BY seq")
        .bind(to_i64(first)?)
        .bind(to_i64(first + n)?)
        .fetch_all(&mut *conn)
        .await?;
    if (rows.len() as u64) < n {
        return Err(Error::NotFound("beyond the log's tree".into()));
    }
    let mut data = Vec::with_capacity(rows.len());
    for r in rows {
        data.push(leaf_data(&r.try_get::<String, _>("hash")?)?);
    }
    tlog::entry_bundle(data.iter().map(|d| &d[..])).map_err(log_err)
}

/// Adds to the tree the entries appended before it existed (a database from before
/// the transparency log); returns how many. Holds the audit chain's lock meanwhile.
pub async fn backfill(db: &Db) -> Result<u64> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE hub_sequences SET value = value WHERE name = 'audit'")
        .execute(&mut *tx)
        .await?;
    let size: i64 = sqlx::query("SELECT value FROM hub_sequences WHERE name = 'audit'")
        .fetch_one(&mut *tx)
        .await?
        .try_get("value")?;
    let size = size.unsigned_abs();
    // Leaves are stored in order, so the first missing one is found by bisection.
    if size == 0 || has_leaf(&mut tx, size - 1).await? {
        tx.commit().await?;
        return Ok(0);
    }
    let (mut lo, mut hi) = (0u64, size - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if has_leaf(&mut tx, mid).await? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let first = lo;
    let mut next = first;
    while next < size {
        let rows = sqlx::query("SELECT hash FROM hub_audit WHERE seq > $1 ORDER BY seq LIMIT 5000")
            .bind(to_i64(next)?)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            break;
        }
        let mut leaves = Vec::with_capacity(rows.len());
        for r in &rows {
            leaves.push(leaf_hash(&r.try_get::<String, _>("hash")?)?);
        }
        append(&mut tx, next, &leaves).await?;
        next += leaves.len() as u64;
    }
    tx.commit().await?;
    Ok(next - first)
}

async fn has_leaf(conn: &mut AnyConnection, n: u64) -> Result<bool> {
    Ok(!read(conn, &[tlog::stored_index(0, n)]).await?.is_empty())
}
