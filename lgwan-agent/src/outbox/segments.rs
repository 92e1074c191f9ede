//! Sealed bytes in append-only segment files beside the outbox database: written once,
//! never rewritten, and indexed by the `outbox` table (segment, offset, length).
//!
//! Keeping the bytes out of SQLite writes them once (not once to the WAL and again at the
//! checkpoint) and keeps the database small, so spooling costs the same per record
//! whatever the outbox holds (docs/benchmarks.md).
//!
//! Each record is framed with its id (`u16` length, the id, `u32` length, the sealed
//! bytes, big-endian), so a read checks that the bytes it finds are the record it asked
//! for: a misplaced or cut segment is an error, never another record uploaded.
//!
//! Crash safety: a batch's bytes are appended at the segment's committed size and
//! synced *before* the transaction that indexes them commits, and that transaction
//! also records the segment's new committed size. Bytes past the committed size are
//! the leftovers of a batch that never committed; nothing points at them and the next
//! batch writes over them. Appends happen only inside a write transaction
//! (`BEGIN IMMEDIATE`), so two processes never append to one segment at once.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A segment is closed and the next one started once it holds this many bytes.
pub(super) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The committed size of every segment.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL
);
";

/// Where a record is: its frame's first byte, and the length of its sealed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub segment: i64,
    pub offset: u64,
    pub len: u64,
}

/// The frame of record `id` with `len` sealed bytes: its length and its head.
fn frame_head(id: &str, len: usize) -> Option<(usize, Vec<u8>)> {
    let id_len = u16::try_from(id.len()).ok()?;
    let body = u32::try_from(len).ok()?;
    let mut head = Vec::with_capacity(6 + id.len());
    head.extend_from_slice(&id_len.to_be_bytes());
    head.extend_from_slice(id.as_bytes());
    head.extend_from_slice(&body.to_be_bytes());
    Some((head.len() + len, head))
}

/// The folder of the segments of the outbox at `outbox`: `<file name>-segments`.
pub(crate) fn folder(outbox: &Path) -> PathBuf {
    let mut name = outbox.file_name().unwrap_or_default().to_os_string();
    name.push("-segments");
    outbox.with_file_name(name)
}

/// The file of segment `id`.
fn file_of(folder: &Path, id: i64) -> PathBuf {
    folder.join(format!("{id:08}.seg"))
}

/// The frames of `records` (id, sealed bytes) appended in order to segment `id` at
/// `at`, and where each lands; `None` if an id or a record is too long to frame. The
/// buffer is sized once: a batch is megabytes, and growing it copied them again.
pub(crate) fn layout<'a>(
    id: i64,
    at: u64,
    records: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Option<(Vec<u8>, Vec<Place>)> {
    let (count, total) = records.clone().fold((0, 0), |(n, sum), (record, bytes)| {
        (n + 1, sum + 6 + record.len() + bytes.len())
    });
    let mut buf = Vec::with_capacity(total);
    let mut places = Vec::with_capacity(count);
    for (record, bytes) in records {
        let (_, head) = frame_head(record, bytes.len())?;
        places.push(Place {
            segment: id,
            offset: at + buf.len() as u64,
            len: bytes.len() as u64,
        });
        buf.extend_from_slice(&head);
        buf.extend_from_slice(bytes);
    }
    Some((buf, places))
}

/// Writes `buf` into segment `id` at its committed size `at` and syncs it: the bytes are
/// on disk before the transaction that points at them commits. Blocking.
pub(crate) fn append(folder: &Path, id: i64, at: u64, buf: &[u8]) -> std::io::Result<()> {
    let path = file_of(folder, id);
    let created = !path.exists();
    if created {
        std::fs::create_dir_all(folder)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    file.write_all_at(buf, at)?;
    let end = at + buf.len() as u64;
    // A batch that never committed may have left more bytes than this one wrote.
    if file.metadata()?.len() > end {
        file.set_len(end)?;
    }
    file.sync_data()?;
    if created {
        // The new file's name must survive a crash too.
        File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Reads each record's sealed bytes, checking that its frame is that record's: a
/// damaged or misplaced segment is an error, never a wrong upload. Blocking.
pub(crate) fn read(folder: &Path, wanted: &[(String, Place)]) -> Result<Vec<Vec<u8>>, String> {
    let mut open: Option<(i64, File)> = None;
    let mut out = Vec::with_capacity(wanted.len());
    for (id, place) in wanted {
        let path = file_of(folder, place.segment);
        let damaged = |why: &str| {
            format!(
                "segment `{}`, record `{id}` at byte {}: {why}",
                path.display(),
                place.offset
            )
        };
        let file = match &open {
            Some((segment, file)) if *segment == place.segment => file,
            _ => {
                let file =
                    File::open(&path).map_err(|e| format!("segment `{}`: {e}", path.display()))?;
                &open.insert((place.segment, file)).1
            }
        };
        let len = usize::try_from(place.len).map_err(|e| damaged(&e.to_string()))?;
        let (frame_len, head) =
            frame_head(id, len).ok_or_else(|| damaged("the record is too long to frame"))?;
        let mut frame = vec![0u8; frame_len];
        file.read_exact_at(&mut frame, place.offset)
            .map_err(|e| damaged(&e.to_string()))?;
        match frame.get(..head.len()) {
            Some(found) if found == head.as_slice() => {}
            _ => return Err(damaged("the frame there is not this record's")),
        }
        frame.drain(..head.len());
        out.push(frame);
    }
    Ok(out)
}
