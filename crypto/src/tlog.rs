//! The audit log as a transparency log: RFC 6962 / RFC 9162 hashing in the storage
//! order of Go's `sumdb/tlog` (crate `tlog_tiles`), C2SP tlog-tiles paths, and inclusion
//! and consistency proofs. Checkpoints and cosignatures (signed notes) are in [`note`].
//!
//! The computations are synchronous and read stored hashes through [`Hashes`]; an async
//! caller runs one with [`Hashes::compute`], fetches what it reports missing (from its
//! database, or as tiles with [`Tiles`]) and runs it again.

pub mod note;

use std::cell::RefCell;
use std::collections::HashMap;

pub use tlog_tiles::{HASH_SIZE, Hash, Tile};
use tlog_tiles::{HashReader, TileHashReader, TileReader};

use crate::error::{Error, Result};

/// Height of the tiles (C2SP tlog-tiles: 8, so a full tile has 256 hashes or entries).
pub const TILE_HEIGHT: u8 = 8;

/// Entries (or hashes) in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// Proofs and tiles are computed from at most this many rounds of fetching.
pub const MAX_ROUNDS: usize = 8;

fn log_error(e: impl std::fmt::Display) -> Error {
    Error::Log(e.to_string())
}

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    tlog_tiles::record_hash(data)
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: Hash, right: Hash) -> Hash {
    tlog_tiles::node_hash(left, right)
}

/// The storage index of the hash at `level` and offset `n` (Go's `StoredHashIndex`):
/// every leaf and every completed interior node has one, in order of completion.
pub fn stored_index(level: u8, n: u64) -> u64 {
    tlog_tiles::stored_hash_index(level, n)
}

/// How many hashes a tree of `n` leaves stores.
pub fn stored_count(n: u64) -> u64 {
    tlog_tiles::stored_hash_count(n)
}

/// The right edge of a tree: the roots of its maximal complete subtrees, left to right.
/// Enough to append leaves (producing the hashes to store, in storage order) and to
/// compute the root, without the rest of the tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// The storage indexes of the frontier of a tree of `size` leaves, left to right.
    pub fn indexes(size: u64) -> Vec<u64> {
        (0..64u8)
            .rev()
            .filter(|l| size >> l & 1 == 1)
            .map(|l| stored_index(l, (size >> l) - 1))
            .collect()
    }

    /// The frontier of a tree of `size` leaves from the hashes at [`Frontier::indexes`].
    pub fn from_hashes(size: u64, roots: Vec<Hash>) -> Result<Self> {
        if roots.len() != size.count_ones() as usize {
            return Err(Error::Log(format!(
                "a tree of {size} has {} frontier hashes, not {}",
                size.count_ones(),
                roots.len()
            )));
        }
        Ok(Frontier { size, roots })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; returns the hashes to store from [`stored_index`]`(0, old size)`:
    /// the leaf hash, then every interior node it completes.
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut out = vec![leaf];
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            let Some(left) = self.roots.pop() else { break };
            h = node_hash(left, h);
            out.push(h);
            n >>= 1;
        }
        self.roots.push(h);
        self.size += 1;
        out
    }

    /// The root hash (RFC 6962's MTH; SHA-256 of nothing for the empty tree).
    pub fn root(&self) -> Hash {
        let mut it = self.roots.iter().rev();
        let Some(last) = it.next() else {
            return tlog_tiles::EMPTY_HASH;
        };
        it.fold(*last, |right, left| node_hash(*left, right))
    }
}

/// The result of one run of a computation over [`Hashes`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step<T> {
    /// It finished.
    Done(T),
    /// It needs these stored hashes first.
    Need(Vec<u64>),
}

/// Stored hashes known so far (by storage index); a computation that asks for others
/// fails and leaves their indexes in [`Step::Need`].
#[derive(Debug, Default)]
pub struct Hashes {
    known: HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl Hashes {
    /// No hashes known yet.
    pub fn new() -> Self {
        Hashes::default()
    }

    /// Adds a stored hash.
    pub fn insert(&mut self, index: u64, hash: Hash) {
        self.known.insert(index, hash);
    }

    /// Runs `f`; when it failed for want of hashes, says which.
    pub fn compute<T>(
        &self,
        f: impl FnOnce(&Hashes) -> std::result::Result<T, tlog_tiles::Error>,
    ) -> Result<Step<T>> {
        self.missing.borrow_mut().clear();
        let outcome = f(self);
        let mut missing = self.missing.take();
        match outcome {
            Ok(v) => Ok(Step::Done(v)),
            Err(_) if !missing.is_empty() => {
                missing.sort_unstable();
                missing.dedup();
                Ok(Step::Need(missing))
            }
            Err(e) => Err(log_error(e)),
        }
    }

    /// The hashes to store for leaf `n` (0-based) with leaf hash `leaf`, from storage
    /// index [`stored_index`]`(0, n)` on.
    pub fn append(&self, n: u64, leaf: Hash) -> Result<Step<Vec<Hash>>> {
        self.compute(|h| tlog_tiles::stored_hashes_for_record_hash(n, leaf, h))
    }

    /// The root of the tree of `size` leaves.
    pub fn root(&self, size: u64) -> Result<Step<Hash>> {
        self.compute(|h| tlog_tiles::tree_hash(size, h))
    }

    /// The proof that leaf `index` is in the tree of `size` leaves (RFC 9162 2.1.3).
    pub fn inclusion(&self, size: u64, index: u64) -> Result<Step<Vec<Hash>>> {
        if index >= size {
            return Err(Error::Log(format!(
                "entry {index} is not in a tree of {size}"
            )));
        }
        self.compute(|h| tlog_tiles::prove_record(size, index, h))
    }

    /// The proof that the tree of `old` leaves is a prefix of the tree of `new` leaves
    /// (RFC 9162 2.1.4).
    pub fn consistency(&self, new: u64, old: u64) -> Result<Step<Vec<Hash>>> {
        if old == 0 || old > new {
            return Err(Error::Log(format!(
                "no consistency proof from size {old} to {new}"
            )));
        }
        self.compute(|h| tlog_tiles::prove_tree(new, old, h))
    }

    /// The hashes of a hash tile (not an entries tile), concatenated.
    pub fn tile(&self, tile: &Tile) -> Result<Step<Vec<u8>>> {
        if tile.is_data() || tile.height() != TILE_HEIGHT {
            return Err(Error::Log("not a hash tile".into()));
        }
        self.compute(|h| tile.read_data(h))
    }
}

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut missing = self.missing.borrow_mut();
        for i in indexes {
            match self.known.get(i) {
                Some(h) => out.push(*h),
                None => missing.push(*i),
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(tlog_tiles::Error::IndexesNotInTree)
        }
    }
}

/// Checks an inclusion proof: leaf `index` with leaf hash `leaf` is in the tree of
/// `size` leaves with root `root`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<()> {
    if index >= size {
        return Err(Error::Log(format!(
            "entry {index} is not in a tree of {size}"
        )));
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf).map_err(|_| {
        Error::Log(format!(
            "inclusion proof of entry {index} in tree {size} does not verify"
        ))
    })
}

/// Checks a consistency proof: the tree of `old` leaves with root `old_root` is a prefix
/// of the tree of `new` leaves with root `new_root`. An empty old tree is a prefix of
/// every tree; a smaller new tree never is.
pub fn check_consistency(
    proof: &[Hash],
    new: u64,
    new_root: Hash,
    old: u64,
    old_root: Hash,
) -> Result<()> {
    if old == 0 {
        return Ok(());
    }
    if new < old {
        return Err(Error::Log(format!(
            "the log shrank from {old} to {new} entries"
        )));
    }
    tlog_tiles::check_tree(&proof.to_vec(), new, new_root, old, old_root).map_err(|_| {
        Error::Log(format!(
            "the tree of {new} entries is not an extension of the tree of {old} seen before"
        ))
    })
}

/// Parses a C2SP tlog-tiles path below the log's prefix: `tile/<L>/<N>[.p/<W>]` or
/// `tile/entries/<N>[.p/<W>]` (N in the 3-digit `x001/234` groups).
pub fn tile_from_path(path: &str) -> Result<Tile> {
    let bad = || {
        Error::Log(format!(
            "`{}` is not a tile path",
            crate::error::shorten(path)
        ))
    };
    // Parsed here rather than by `Tile::from_path`, which panics on some inputs (width 0,
    // level 64 and over); the round trip through `tile_path` then refuses non-canonical forms.
    let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
    let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
    let (level, is_data) = match level {
        "entries" => (0, true),
        l if !l.is_empty() && l.len() <= 2 && l.bytes().all(|b| b.is_ascii_digit()) => {
            (l.parse::<u8>().map_err(|_| bad())?, false)
        }
        _ => return Err(bad()),
    };
    let (index, width) = match rest.split_once(".p/") {
        Some((index, w))
            if !w.is_empty() && w.len() <= 3 && w.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (index, w.parse::<u32>().map_err(|_| bad())?)
        }
        Some(_) => return Err(bad()),
        None => (rest, 1 << TILE_HEIGHT),
    };
    if level >= 64 / TILE_HEIGHT || !(1..=1 << TILE_HEIGHT).contains(&width) || index.len() > 32 {
        return Err(bad());
    }
    let mut n = 0u64;
    for group in index.split('/') {
        let digits = group.strip_prefix('x').unwrap_or(group);
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let g = digits.parse::<u64>().map_err(|_| bad())?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(g))
            .ok_or_else(bad)?;
    }
    // Logs of up to 2^40 entries: keeps every storage index far from overflowing.
    if n >= (1u64 << 32) >> (u32::from(TILE_HEIGHT) * u32::from(level)) {
        return Err(bad());
    }
    let tile = Tile::new(TILE_HEIGHT, level, n, width, is_data);
    if tile_path(&tile) != path {
        return Err(bad());
    }
    Ok(tile)
}

/// The C2SP tlog-tiles path of a tile (the inverse of [`tile_from_path`]).
pub fn tile_path(tile: &Tile) -> String {
    let go = tile.path();
    let prefix = format!("tile/{TILE_HEIGHT}/");
    let rest = go.strip_prefix(&prefix).unwrap_or(&go);
    match rest.strip_prefix("data/") {
        Some(n) => format!("tile/entries/{n}"),
        None => format!("tile/{rest}"),
    }
}

/// The first leaf an entries tile (or level-0 hash tile) holds, and how many.
pub fn tile_leaves(tile: &Tile) -> (u64, u64) {
    (tile.level_index() * TILE_WIDTH, u64::from(tile.width()))
}

/// An entries tile's data: each entry as a big-endian `u16` length and its bytes.
pub fn entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let len =
            u16::try_from(e.len()).map_err(|_| Error::Log("entry over 65535 bytes".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entries tile's data into its entries.
pub fn split_entry_bundle(mut data: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let bad = || Error::Log("truncated entry bundle".into());
        let (len, rest) = data.split_first_chunk::<2>().ok_or_else(bad)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let entry = rest.get(..len).ok_or_else(bad)?;
        out.push(entry.to_vec());
        data = rest.get(len..).ok_or_else(bad)?;
    }
    Ok(out)
}

/// Hash tiles fetched so far (by path), for a client that computes proofs from a log's
/// tiles: every tile read through it is authenticated against the tree it was asked
/// about before its hashes are used (`tlog_tiles::TileHashReader`).
#[derive(Debug, Default)]
pub struct Tiles {
    data: HashMap<String, Vec<u8>>,
    missing: RefCell<Vec<Tile>>,
}

impl Tiles {
    /// No tiles yet.
    pub fn new() -> Self {
        Tiles::default()
    }

    /// Adds a fetched tile.
    pub fn insert(&mut self, tile: &Tile, data: Vec<u8>) {
        self.data.insert(tile_path(tile), data);
    }

    /// The consistency proof from `old` to `new` leaves, computed from the tiles of the
    /// tree of `new` leaves with root `new_root`; [`Step::Need`] lists storage indexes
    /// as a hint only: fetch [`Tiles::take_missing`].
    pub fn consistency(&self, new: u64, new_root: Hash, old: u64) -> Result<Step<Vec<Hash>>> {
        if old == 0 || old > new {
            return Err(Error::Log(format!(
                "no consistency proof from size {old} to {new}"
            )));
        }
        self.missing.borrow_mut().clear();
        let reader = TileHashReader::new(new, new_root, self);
        match tlog_tiles::prove_tree(new, old, &reader) {
            Ok(p) => Ok(Step::Done(p)),
            Err(_) if !self.missing.borrow().is_empty() => Ok(Step::Need(Vec::new())),
            Err(e) => Err(log_error(e)),
        }
    }

    /// The tiles the last computation asked for and did not have.
    pub fn take_missing(&self) -> Vec<Tile> {
        let mut m = self.missing.take();
        m.dedup();
        m
    }
}

impl TileReader for Tiles {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> std::result::Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(tiles.len());
        let mut missing = self.missing.borrow_mut();
        for t in tiles {
            match self.data.get(&tile_path(t)) {
                Some(d) => out.push(d.clone()),
                None => missing.push(*t),
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(tlog_tiles::Error::InvalidTile)
        }
    }

    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

/// The chain hash of an audit entry (hex): SHA-256 over `renkei-audit v1`, then the
/// previous entry's hash, the sequence number, the time (microseconds) and the eight
/// fields (actor, action, object, subject, consent, category, decision, reason), each
/// prefixed with its length as a big-endian `u64`. Its 32 bytes are the entry's leaf
/// data in the transparency log.
pub fn audit_entry_hash(prev_hash: &str, seq: i64, at: i64, fields: [&str; 8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"renkei-audit v1");
    let (seq, at) = (seq.to_string(), at.to_string());
    for field in [prev_hash, &seq, &at].into_iter().chain(fields) {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    data_encoding::HEXLOWER.encode(&h.finalize())
}

/// Base64 of a hash, as in checkpoints and proof files.
pub fn hash_to_base64(h: &Hash) -> String {
    data_encoding::BASE64.encode(&h.0)
}

/// Parses [`hash_to_base64`] output.
pub fn hash_from_base64(text: &str) -> Result<Hash> {
    let bytes = data_encoding::BASE64
        .decode(text.as_bytes())
        .map_err(|e| Error::Log(format!("hash `{}`: {e}", crate::error::shorten(text))))?;
    <[u8; HASH_SIZE]>::try_from(bytes).map(Hash).map_err(|_| {
        Error::Log(format!(
            "hash `{}` is not 32 bytes",
            crate::error::shorten(text)
        ))
    })
}

#[cfg(test)]
mod tests;
