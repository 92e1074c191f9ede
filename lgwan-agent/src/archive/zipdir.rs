//! The zip container, read without ever holding its central directory: the end
//! records say where the directory is, [`Walk`] reads it one header at a time
//! through a small buffer, and [`open_entry`] inflates one entry from its local
//! header. Memory does not depend on the number of entries.
//!
//! Handles ZIP64 (end records and per-entry sizes and offsets), data
//! descriptors (sizes and CRC come from the central directory, as with the
//! `zip` crate), stored and deflated entries, bytes prepended to the archive,
//! and names decoded as the `zip` crate decodes them: UTF-8 when flagged or
//! given in an Info-ZIP Unicode path field, else CP437. Encrypted entries,
//! other compression methods and multi-disk archives are refused. Every
//! central directory header is an entry, in directory order (where the `zip`
//! crate's map kept only the last of two entries with the same name).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

const EOCD_SIG: u32 = 0x0605_4b50;
const LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// Fixed part of the end of central directory record.
const EOCD_LEN: usize = 22;
/// The ZIP64 end locator.
const LOCATOR_LEN: u64 = 20;
/// Fixed part of the ZIP64 end record.
const EOCD64_LEN: usize = 56;
/// Fixed part of a central directory header.
const CENTRAL_LEN: usize = 46;
/// Fixed part of a local header.
const LOCAL_LEN: usize = 30;
/// Longest archive comment: the end record is within this much of the file's end.
const MAX_COMMENT: u64 = 0xFFFF;

const STORED: u16 = 0;
const DEFLATED: u16 = 8;
const FLAG_ENCRYPTED: u16 = 1;
const FLAG_UTF8: u16 = 1 << 11;
const ZIP64_EXTRA: u16 = 0x0001;
const UNICODE_PATH_EXTRA: u16 = 0x7075;

/// Buffer of the directory reader.
const WALK_BUFFER: usize = 64 * 1024;

/// A problem with the container; the message says what, never echoes content.
pub(super) type ZipResult<T> = Result<T, String>;

fn io_error(what: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        format!("{what} is truncated")
    } else {
        format!("{what}: {e}")
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn read_at<const N: usize>(file: &mut File, at: u64) -> io::Result<[u8; N]> {
    let mut block = [0u8; N];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut block)?;
    Ok(block)
}

/// Where the central directory is, from the end records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Directory {
    /// Entries the end record declares.
    pub(super) entries: u64,
    /// Where the first central directory header is in the file.
    start: u64,
    /// Bytes before the archive proper (a prepended stub), added to every
    /// offset the archive records.
    shift: u64,
}

/// Finds the central directory of `file`: the last end record within the
/// comment's reach of the file's end whose directory is where it says.
pub(super) fn locate(file: &mut File) -> ZipResult<Directory> {
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| io_error("archive", &e))?;
    let tail_len = len.min(EOCD_LEN as u64 + MAX_COMMENT);
    let tail_start = len - tail_len;
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(tail_start))
        .and_then(|_| file.by_ref().take(tail_len).read_to_end(&mut tail))
        .map_err(|e| io_error("archive", &e))?;
    let mut error = "no end of central directory record".to_owned();
    let last = tail.len().saturating_sub(EOCD_LEN);
    for at in (0..=last).rev() {
        let Some(record) = tail.get(at..at + EOCD_LEN) else {
            continue;
        };
        if le32(record, 0) != EOCD_SIG {
            continue;
        }
        match directory_at(file, record, tail_start + at as u64, len) {
            Ok(dir) => return Ok(dir),
            Err(e) => error = e,
        }
    }
    Err(error)
}

/// The directory an end record at `pos` describes.
fn directory_at(file: &mut File, record: &[u8], pos: u64, len: u64) -> ZipResult<Directory> {
    let comment = u64::from(le16(record, 20));
    if pos + EOCD_LEN as u64 + comment > len {
        return Err("invalid end of central directory comment length".into());
    }
    let (disk, cd_disk) = (le16(record, 4), le16(record, 6));
    let (on_disk, total) = (le16(record, 8), le16(record, 10));
    let (size, offset) = (le32(record, 12), le32(record, 16));
    let may_be_zip64 =
        [disk, cd_disk, on_disk, total].contains(&u16::MAX) || [size, offset].contains(&u32::MAX);
    if may_be_zip64 {
        if let Some(dir) = zip64_directory(file, pos)? {
            return Ok(dir);
        }
    }
    if disk != cd_disk {
        return Err("multi-disk archives are not supported".into());
    }
    let (size, offset) = (u64::from(size), u64::from(offset));
    // Bytes prepended to the archive move the directory up from where it says.
    let shifted = pos.checked_sub(size).and_then(|s| s.checked_sub(offset));
    find_start(file, u64::from(total), offset, shifted, pos)
}

/// The directory the ZIP64 end record names, when a ZIP64 end locator sits
/// before the end record at `pos`.
fn zip64_directory(file: &mut File, pos: u64) -> ZipResult<Option<Directory>> {
    let Some(locator_pos) = pos.checked_sub(LOCATOR_LEN) else {
        return Ok(None);
    };
    let Ok(locator) = read_at::<20>(file, locator_pos) else {
        return Ok(None);
    };
    if le32(&locator, 0) != LOCATOR_SIG {
        return Ok(None);
    }
    let recorded = le64(&locator, 8);
    if recorded >= locator_pos {
        return Err("invalid ZIP64 end of central directory locator".into());
    }
    if le32(&locator, 16) > 1 {
        return Err("multi-disk archives are not supported".into());
    }
    // Where the locator says, else right before the locator (prepended bytes).
    let guesses = [Some(recorded), locator_pos.checked_sub(EOCD64_LEN as u64)];
    for at in guesses.into_iter().flatten() {
        let Ok(block) = read_at::<EOCD64_LEN>(file, at) else {
            continue;
        };
        if le32(&block, 0) != EOCD64_SIG || at < recorded {
            continue;
        }
        if le32(&block, 16) != le32(&block, 20) {
            return Err("multi-disk archives are not supported".into());
        }
        let (total, offset) = (le64(&block, 32), le64(&block, 48));
        let dir = find_start(file, total, offset, Some(at - recorded), at)?;
        return Ok(Some(dir));
    }
    Err("no ZIP64 end of central directory record where the locator says".into())
}

/// The directory of `entries` headers recorded at `offset`, found there or
/// `shift` bytes further (when given), ending before `end`.
fn find_start(
    file: &mut File,
    entries: u64,
    offset: u64,
    shift: Option<u64>,
    end: u64,
) -> ZipResult<Directory> {
    let shifts = [Some(0), shift.filter(|s| *s > 0)];
    if entries == 0 {
        let shift = shift.unwrap_or(0);
        return Ok(Directory {
            entries,
            start: offset.saturating_add(shift),
            shift,
        });
    }
    for shift in shifts.into_iter().flatten() {
        let Some(start) = offset.checked_add(shift).filter(|s| *s < end) else {
            continue;
        };
        // Every header takes at least its fixed part: a count the directory
        // cannot hold is a lie, not a reason to read on.
        let room = (end - start) / CENTRAL_LEN as u64;
        if read_at::<4>(file, start).is_ok_and(|s| u32::from_le_bytes(s) == CENTRAL_SIG) {
            if entries > room {
                return Err(format!(
                    "the end record declares {entries} entries, more than the central directory holds"
                ));
            }
            return Ok(Directory {
                entries,
                start,
                shift,
            });
        }
    }
    Err("no central directory where the end record says".into())
}

/// One central directory entry: what is needed to find, check and inflate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// The name, decoded.
    pub(super) name: String,
    /// Inflated size, as declared.
    pub(super) size: u64,
    compressed: u64,
    /// Where the local header is in the file.
    header: u64,
    flags: u16,
    method: u16,
    crc32: u32,
}

impl Entry {
    /// Stored (compressed) size, as declared.
    pub(super) fn compressed(&self) -> u64 {
        self.compressed
    }
}

/// The central directory, one header at a time.
#[derive(Debug)]
pub(super) struct Walk {
    reader: BufReader<File>,
    /// Entries the end record declares, and how many of them are still to read.
    declared: u64,
    left: u64,
    /// Set once the walk is over (read to its end, or stopped by an error).
    ended: bool,
    shift: u64,
    name: Vec<u8>,
    extra: Vec<u8>,
}

impl Walk {
    /// Starts reading `dir` from `file` (a handle of its own: it is read in sequence).
    pub(super) fn new(mut file: File, dir: &Directory) -> ZipResult<Walk> {
        file.seek(SeekFrom::Start(dir.start))
            .map_err(|e| io_error("central directory", &e))?;
        Ok(Walk {
            reader: BufReader::with_capacity(WALK_BUFFER, file),
            declared: dir.entries,
            left: dir.entries,
            ended: false,
            shift: dir.shift,
            name: Vec::new(),
            extra: Vec::new(),
        })
    }

    fn read_header(&mut self) -> ZipResult<Entry> {
        let mut block = [0u8; CENTRAL_LEN];
        self.reader
            .read_exact(&mut block)
            .map_err(|e| io_error("central directory", &e))?;
        if le32(&block, 0) != CENTRAL_SIG {
            return Err("invalid central directory header".into());
        }
        let (name_len, extra_len) = (le16(&block, 28), le16(&block, 30));
        let comment_len = u64::from(le16(&block, 32));
        read_field(&mut self.reader, &mut self.name, name_len)?;
        read_field(&mut self.reader, &mut self.extra, extra_len)?;
        let skipped = io::copy(&mut self.reader.by_ref().take(comment_len), &mut io::sink())
            .map_err(|e| io_error("central directory", &e))?;
        if skipped != comment_len {
            return Err("central directory is truncated".into());
        }
        let flags = le16(&block, 8);
        let mut entry = Entry {
            name: String::new(),
            size: u64::from(le32(&block, 24)),
            compressed: u64::from(le32(&block, 20)),
            header: u64::from(le32(&block, 42)),
            flags,
            method: le16(&block, 10),
            crc32: le32(&block, 16),
        };
        let unicode = apply_extra(&mut entry, &self.extra, &self.name)?;
        entry.name = match unicode {
            Some(name) => name,
            None if flags & FLAG_UTF8 != 0 => String::from_utf8_lossy(&self.name).into_owned(),
            None => from_cp437(&self.name),
        };
        entry.header = entry
            .header
            .checked_add(self.shift)
            .ok_or_else(|| "entry offset out of range".to_owned())?;
        Ok(entry)
    }
}

impl Walk {
    /// Refuses a directory that goes on after the declared entries: an end record whose
    /// 16-bit count wrapped (65,536 entries or more without ZIP64, which APPNOTE 4.4.1.4
    /// forbids) would otherwise hide every entry past the count.
    fn more_than_declared(&mut self) -> ZipResult<()> {
        let mut sig = [0u8; 4];
        if self.reader.read_exact(&mut sig).is_ok() && u32::from_le_bytes(sig) == CENTRAL_SIG {
            return Err(format!(
                "the end record declares {} entries, but the central directory holds more",
                self.declared
            ));
        }
        Ok(())
    }
}

impl Iterator for Walk {
    type Item = ZipResult<Entry>;

    fn next(&mut self) -> Option<ZipResult<Entry>> {
        if self.ended {
            return None;
        }
        if self.left == 0 {
            self.ended = true;
            return self.more_than_declared().err().map(Err);
        }
        self.left -= 1;
        let entry = self.read_header();
        if entry.is_err() {
            self.ended = true;
        }
        Some(entry)
    }
}

fn read_field(reader: &mut impl Read, buf: &mut Vec<u8>, len: u16) -> ZipResult<()> {
    buf.clear();
    buf.resize(usize::from(len), 0);
    reader
        .read_exact(buf)
        .map_err(|e| io_error("central directory", &e))
}

/// Applies the ZIP64 field to `entry`'s sizes and offset; returns the name a
/// valid Unicode path field gives. A field cut short ends the parsing, as
/// with the `zip` crate; other fields are skipped.
fn apply_extra(entry: &mut Entry, extra: &[u8], raw_name: &[u8]) -> ZipResult<Option<String>> {
    let mut name = None;
    let mut rest = extra;
    while let (Some(kind), Some(len)) = (rest.get(0..2), rest.get(2..4)) {
        let (kind, len) = (le16(kind, 0), usize::from(le16(len, 0)));
        let Some(body) = rest.get(4..4 + len) else {
            break;
        };
        rest = rest.get(4 + len..).unwrap_or_default();
        match kind {
            ZIP64_EXTRA => {
                // Each value is there when its 32-bit field is saturated (or
                // all three are, in a field of 24 bytes or more).
                let mut values = body.chunks_exact(8).map(|v| le64(v, 0));
                let max = u64::from(u32::MAX);
                for value in [&mut entry.size, &mut entry.compressed, &mut entry.header] {
                    if len >= 24 || *value == max {
                        *value = values
                            .next()
                            .ok_or_else(|| "ZIP64 extra field is the wrong length".to_owned())?;
                    }
                }
            }
            UNICODE_PATH_EXTRA => {
                // Version byte, CRC-32 of the raw name, the UTF-8 name.
                let Some(text) = body.get(5..) else {
                    return Err("Unicode path extra field is too small".into());
                };
                if le32(body, 1) != crc32fast::hash(raw_name) {
                    return Err("CRC32 checksum failed on Unicode path extra field".into());
                }
                let text = std::str::from_utf8(text)
                    .map_err(|_| "Unicode path extra field is not UTF-8".to_owned())?;
                name = Some(text.to_owned());
            }
            _ => {}
        }
    }
    Ok(name)
}

/// The characters of CP437 bytes 0x80–0xFF (below that it is ASCII).
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn from_cp437(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b < 0x80 {
                char::from(b)
            } else {
                CP437_HIGH
                    .chars()
                    .nth(usize::from(b - 0x80))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            }
        })
        .collect()
}

/// Where `entry`'s data starts in `file`, after checking that it can be read.
fn data_start(file: &mut File, entry: &Entry) -> ZipResult<u64> {
    if entry.flags & FLAG_ENCRYPTED != 0 {
        return Err("encrypted entries are not supported".into());
    }
    if ![STORED, DEFLATED].contains(&entry.method) {
        return Err(format!(
            "compression method {} is not supported",
            entry.method
        ));
    }
    let local = read_at::<LOCAL_LEN>(file, entry.header).map_err(|e| io_error("entry", &e))?;
    if le32(&local, 0) != LOCAL_SIG {
        return Err("invalid local file header".into());
    }
    Ok(entry.header + LOCAL_LEN as u64 + u64::from(le16(&local, 26)) + u64::from(le16(&local, 28)))
}

/// An entry's data as stored (deflated or not), read in one go so that it can be
/// inflated on another thread: [`Packed::inflate`] checks the limit and the CRC-32.
#[derive(Debug)]
pub struct Packed {
    deflated: bool,
    data: Vec<u8>,
    crc32: u32,
    size: u64,
    limit: u64,
}

/// Reads `entry`'s stored bytes; `limit` is the most it may inflate to. The caller has
/// checked the declared sizes against the limit.
pub(super) fn read_packed(file: &mut File, entry: &Entry, limit: u64) -> ZipResult<Packed> {
    let start = data_start(file, entry)?;
    let len = usize::try_from(entry.compressed).map_err(|_| "entry too large".to_owned())?;
    let mut data = vec![0u8; len];
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.read_exact(&mut data))
        .map_err(|e| io_error("entry", &e))?;
    Ok(Packed {
        deflated: entry.method == DEFLATED,
        data,
        crc32: entry.crc32,
        size: entry.size,
        limit,
    })
}

impl Packed {
    /// The inflated bytes, at most one past the limit (more is the caller's to refuse);
    /// all of them only if they match the CRC-32.
    pub fn inflate(&self) -> io::Result<Vec<u8>> {
        // A first guess of the size (at most 1 MiB), so a document is not copied as its
        // buffer grows.
        let guess = self.size.saturating_add(1).min(1 << 20);
        let mut out = Vec::with_capacity(usize::try_from(guess).unwrap_or(0));
        let cap = usize::try_from(self.limit.saturating_add(1)).unwrap_or(usize::MAX);
        if self.deflated {
            inflate_into(&self.data, &mut out, cap)?;
        } else {
            out.extend_from_slice(self.data.get(..cap).unwrap_or(&self.data));
        }
        if out.len() as u64 <= self.limit && crc32fast::hash(&out) != self.crc32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "invalid checksum",
            ));
        }
        Ok(out)
    }

    /// The most the entry may inflate to.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The first `n` inflated bytes, or fewer where the data ends or breaks off; not
    /// checked against the CRC-32 (which covers the whole entry).
    pub fn prefix(&self, n: usize) -> Vec<u8> {
        let n = n.min(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let mut out = Vec::with_capacity(n);
        if self.deflated {
            // What was inflated before an error is still a prefix of the entry.
            let _ = inflate_into(&self.data, &mut out, n);
        } else {
            out.extend_from_slice(self.data.get(..n).unwrap_or(&self.data));
        }
        out
    }
}

/// Inflates the raw deflate stream `data` onto `out` until it ends, breaks off, or `out`
/// holds `cap` bytes (any past it are dropped). A stream cut short gives what it held;
/// a corrupt one is an error. Each thread keeps one decompressor: a new one is ~43 KiB
/// to allocate and zero, more than inflating a survey's header costs.
fn inflate_into(data: &[u8], out: &mut Vec<u8>, cap: usize) -> io::Result<()> {
    use flate2::{Decompress, FlushDecompress, Status};
    thread_local! {
        static INFLATER: std::cell::RefCell<Decompress> =
            std::cell::RefCell::new(Decompress::new(false));
    }
    INFLATER.with_borrow_mut(|inflater| {
        inflater.reset(false);
        while out.len() < cap {
            if out.len() == out.capacity() {
                out.reserve_exact(out.len().clamp(4096, 1 << 20).min(cap - out.len()));
            }
            let consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
            let input = data.get(consumed..).unwrap_or_default();
            let before = out.len();
            // Writes into the spare capacity only: at most max(first capacity, cap).
            let status = inflater.decompress_vec(input, out, FlushDecompress::None);
            let status = status.map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("corrupt deflate stream: {e}"),
                )
            })?;
            let progressed = out.len() > before
                || usize::try_from(inflater.total_in()).unwrap_or(usize::MAX) > consumed;
            if status == Status::StreamEnd || !progressed {
                break;
            }
        }
        out.truncate(cap);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// How [`build`] lays an archive out.
    #[derive(Clone, Copy, Default)]
    struct Layout {
        /// Sizes and CRC after the data (flag bit 3), zero in the local header.
        descriptor: bool,
        /// ZIP64 extra fields and end records, 32-bit fields saturated.
        zip64: bool,
        /// Bytes before the archive (a self-extracting stub).
        prefix: usize,
        /// Flag the names as UTF-8.
        utf8: bool,
    }

    /// A zip written by hand, so that every layout the reader handles is
    /// covered whatever the `zip` crate's writer produces.
    fn build(entries: &[(&[u8], &[u8], bool)], layout: Layout) -> Vec<u8> {
        let mut out = vec![b'#'; layout.prefix];
        let mut central = Vec::new();
        let flags =
            if layout.descriptor { 8u16 } else { 0 } | if layout.utf8 { FLAG_UTF8 } else { 0 };
        for (name, data, deflate) in entries {
            let body = if *deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let method = if *deflate { DEFLATED } else { STORED };
            let crc = crc32fast::hash(data);
            let offset = (out.len() - layout.prefix) as u64;
            let (csize, usize_) = (body.len() as u64, data.len() as u64);
            let small = |v: u64| if layout.zip64 { u32::MAX } else { v as u32 };
            let mut extra = Vec::new();
            if layout.zip64 {
                extra.extend_from_slice(&ZIP64_EXTRA.to_le_bytes());
                extra.extend_from_slice(&24u16.to_le_bytes());
                for v in [usize_, csize, offset] {
                    extra.extend_from_slice(&v.to_le_bytes());
                }
            }
            // Local header.
            out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
            out.extend_from_slice(&45u16.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            if layout.descriptor {
                out.extend_from_slice(&[0; 12]);
            } else {
                out.extend_from_slice(&crc.to_le_bytes());
                out.extend_from_slice(&(csize as u32).to_le_bytes());
                out.extend_from_slice(&(usize_ as u32).to_le_bytes());
            }
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&body);
            if layout.descriptor {
                out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
                out.extend_from_slice(&crc.to_le_bytes());
                out.extend_from_slice(&(csize as u32).to_le_bytes());
                out.extend_from_slice(&(usize_ as u32).to_le_bytes());
            }
            // Central header.
            central.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            central.extend_from_slice(&45u16.to_le_bytes());
            central.extend_from_slice(&45u16.to_le_bytes());
            central.extend_from_slice(&flags.to_le_bytes());
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 4]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&small(csize).to_le_bytes());
            central.extend_from_slice(&small(usize_).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 10]);
            central.extend_from_slice(&small(offset).to_le_bytes());
            central.extend_from_slice(name);
            central.extend_from_slice(&extra);
        }
        let cd_offset = (out.len() - layout.prefix) as u64;
        let (count, cd_size) = (entries.len() as u64, central.len() as u64);
        out.extend_from_slice(&central);
        if layout.zip64 {
            let eocd64 = (out.len() - layout.prefix) as u64;
            out.extend_from_slice(&EOCD64_SIG.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0]);
            out.extend_from_slice(&[0; 8]);
            for v in [count, count, cd_size, cd_offset] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&LOCATOR_SIG.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&eocd64.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let (c16, s32, o32) = if layout.zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (count as u16, cd_size as u32, cd_offset as u32)
        };
        out.extend_from_slice(&c16.to_le_bytes());
        out.extend_from_slice(&c16.to_le_bytes());
        out.extend_from_slice(&s32.to_le_bytes());
        out.extend_from_slice(&o32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    /// An end record counting fewer entries than the directory holds (a count that
    /// wrapped past 65,535) is refused, not read as the first entries alone.
    #[test]
    fn a_directory_longer_than_its_count_is_refused() {
        let entries: [(&[u8], &[u8], bool); 3] = [
            (b"a.xml", b"one", true),
            (b"b.xml", b"two", false),
            (b"c.xml", b"three", true),
        ];
        let mut bytes = build(&entries, Layout::default());
        let f = write(&bytes);
        assert_eq!(read_all(f.path()).unwrap().len(), 3);
        let eocd = bytes.len() - EOCD_LEN;
        for at in [eocd + 8, eocd + 10] {
            bytes[at..at + 2].copy_from_slice(&2u16.to_le_bytes());
        }
        let f = write(&bytes);
        let e = read_all(f.path()).unwrap_err();
        assert!(e.contains("declares 2 entries"), "{e}");
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    /// Every entry of the archive with its inflated bytes, as this reader reads it.
    fn read_all(path: &std::path::Path) -> ZipResult<Vec<(String, u64, Vec<u8>)>> {
        let mut file = File::open(path).unwrap();
        let dir = locate(&mut file)?;
        let mut out = Vec::new();
        for entry in Walk::new(File::open(path).unwrap(), &dir)? {
            let entry = entry?;
            let bytes = read_packed(&mut file, &entry, u64::MAX - 1)?
                .inflate()
                .map_err(|e| e.to_string())?;
            out.push((entry.name, entry.size, bytes));
        }
        Ok(out)
    }

    /// The same, as the `zip` crate reads it.
    fn read_all_zip(path: &std::path::Path) -> Vec<(String, u64, Vec<u8>)> {
        let mut zip = zip::ZipArchive::new(File::open(path).unwrap()).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut entry = zip.by_index(i).unwrap();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                (entry.name().to_owned(), entry.size(), bytes)
            })
            .collect()
    }

    const ENTRIES: &[(&[u8], &[u8], bool)] = &[
        (b"root/ix08_V08.xml", b"<index/>", false),
        (b"root/DATA/", b"", false),
        (
            b"root/DATA/h0001.xml",
            b"<ClinicalDocument>aaaaaaaaaaaaaaaaaaaaaaaa</ClinicalDocument>",
            true,
        ),
        // CP932 "表" (0x95 0x5C): read as CP437, like the `zip` crate.
        (b"root/DATA/\x95\x5c.xml", b"x", true),
        (b"root/DATA/empty.xml", b"", true),
    ];

    #[test]
    fn every_layout_reads_as_the_zip_crate_reads_it() {
        let layouts = [
            Layout::default(),
            Layout {
                descriptor: true,
                ..Layout::default()
            },
            Layout {
                zip64: true,
                ..Layout::default()
            },
            Layout {
                zip64: true,
                descriptor: true,
                prefix: 100,
                ..Layout::default()
            },
            Layout {
                prefix: 4096,
                ..Layout::default()
            },
        ];
        for (i, layout) in layouts.into_iter().enumerate() {
            let file = write(&build(ENTRIES, layout));
            let ours = read_all(file.path()).unwrap_or_else(|e| panic!("layout {i}: {e}"));
            assert_eq!(ours, read_all_zip(file.path()), "layout {i}");
            assert_eq!(ours.len(), ENTRIES.len());
            assert_eq!(ours[3].0, "root/DATA/ò\\.xml");
        }
        let utf8 = [("root/DATA/表.xml".as_bytes(), &b"y"[..], true)];
        let file = write(&build(
            &utf8,
            Layout {
                utf8: true,
                ..Layout::default()
            },
        ));
        let ours = read_all(file.path()).unwrap();
        assert_eq!(ours, read_all_zip(file.path()));
        assert_eq!(ours[0].0, "root/DATA/表.xml");
    }

    #[test]
    fn archives_of_the_zip_writer_read_alike() {
        use zip::write::SimpleFileOptions;
        for large in [false, true] {
            let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
            for (i, method) in [
                zip::CompressionMethod::Stored,
                zip::CompressionMethod::Deflated,
            ]
            .into_iter()
            .enumerate()
            {
                let options = SimpleFileOptions::default()
                    .compression_method(method)
                    .large_file(large);
                w.start_file(format!("r/DATA/h{i}.xml"), options).unwrap();
                w.write_all(&vec![b'a' + i as u8; 10_000]).unwrap();
            }
            let file = write(&w.finish().unwrap().into_inner());
            assert_eq!(read_all(file.path()).unwrap(), read_all_zip(file.path()));
        }
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// The per-thread decompressor: bounded output, streams that end early or break,
    /// and each stream read afresh after the one before.
    #[test]
    fn inflation_is_bounded_and_starts_afresh_each_time() {
        let zeros = deflated(&vec![0u8; 10 << 20]);
        let mut out = Vec::new();
        inflate_into(&zeros, &mut out, 4097).unwrap();
        assert_eq!(out.len(), 4097, "no more than the cap is kept");
        let text: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let packed = deflated(&text);
        for _ in 0..2 {
            let mut out = Vec::new();
            inflate_into(&packed, &mut out, usize::MAX).unwrap();
            assert!(out == text, "the whole stream, the second time too");
        }
        // Cut short: what the stream held so far, no error (the CRC check refuses it).
        let mut out = Vec::new();
        inflate_into(&packed[..packed.len() / 2], &mut out, usize::MAX).unwrap();
        assert!(!out.is_empty() && out.len() < text.len() && text.starts_with(&out));
        // A block of an undefined type (binary 11) is an error; the next stream reads.
        let mut out = Vec::new();
        let e = inflate_into(&[0xff, 0xff, 0xff], &mut out, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("corrupt deflate stream"), "{e}");
        let mut out = Vec::new();
        inflate_into(&packed, &mut out, 10).unwrap();
        assert_eq!(out, text[..10]);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let good = build(ENTRIES, Layout::default());
        // A flipped byte of stored data fails the CRC.
        let mut bad = good.clone();
        let at = good.windows(8).position(|w| w == b"<index/>").unwrap();
        bad[at] = b'(';
        let file = write(&bad);
        assert_eq!(read_all(file.path()).unwrap_err(), "invalid checksum");
        // Cut anywhere, the archive is refused or reads fewer good entries; never a panic.
        for cut in 0..good.len() {
            let file = write(&good[..cut]);
            let _ = read_all(file.path());
        }
        assert!(read_all(write(b"PK\x05\x06").path()).is_err());
        assert!(
            read_all(write(b"not a zip at all").path())
                .unwrap_err()
                .contains("no end")
        );
        // A count the directory cannot hold is refused before any header is read.
        let mut lying = good.clone();
        let n = lying.len();
        lying[n - 12..n - 10].copy_from_slice(&9999u16.to_le_bytes());
        lying[n - 14..n - 12].copy_from_slice(&9999u16.to_le_bytes());
        let e = read_all(write(&lying).path()).unwrap_err();
        assert!(e.contains("more than the central directory holds"), "{e}");
    }

    #[test]
    fn encrypted_and_unknown_methods_are_refused_per_entry() {
        for (flags, method, message) in [
            (
                FLAG_ENCRYPTED,
                STORED,
                "encrypted entries are not supported",
            ),
            (0, 12, "compression method 12 is not supported"),
        ] {
            let mut bytes = build(&ENTRIES[..1], Layout::default());
            let cd = bytes
                .windows(4)
                .position(|w| w == CENTRAL_SIG.to_le_bytes())
                .unwrap();
            bytes[cd + 8..cd + 10].copy_from_slice(&flags.to_le_bytes());
            bytes[cd + 10..cd + 12].copy_from_slice(&method.to_le_bytes());
            assert_eq!(read_all(write(&bytes).path()).unwrap_err(), message);
        }
    }
}
