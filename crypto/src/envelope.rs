//! Record envelopes (DESIGN.md step 4): per-record DEKs derived from `K_rec`,
//! AES-256-GCM sealing with a header bound as AAD, and the sealed-record
//! binary and JSON formats. The byte layout is specified in `docs/envelope.md`.
//!
//! - `DEK = HKDF-SHA256(ikm = K_rec, salt = none, info = "renkei dek v1" ‖ record_id)`.
//! - Nonce: 96 random bits from the operating system per seal.
//! - AAD: the canonical header encoding ([`EnvelopeHeader::encode`]): the label
//!   `renkei envelope v1`, then record id, subject binding, category, source,
//!   effective date (`YYYY-MM-DD`), schema version (u16 BE) and key version
//!   (u32 BE), each preceded by its length as a u16 BE.

use chrono::{Datelike, NaiveDate};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::keys::{KeyVersion, RecordKey, Secret32, hkdf_expand32};
use crate::token::{RecordId, SubjectBinding};

/// Magic bytes opening a binary sealed record.
pub const MAGIC: &[u8; 4] = b"RKSR";
/// Binary format version written after the magic.
pub const FORMAT_VERSION: u8 = 1;
/// Label opening the header encoding, separating it from every other use of the key.
const AAD_LABEL: &[u8] = b"renkei envelope v1";
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length, included at the end of the ciphertext.
pub const TAG_LEN: usize = 16;
/// Longest category or source, in bytes.
const MAX_NAME_BYTES: usize = 255;

/// A per-record data-encryption key; derived on demand, never stored.
pub struct Dek(Secret32);

impl Dek {
    /// The key bytes, for the AEAD and for sealing into a key grant.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0.0
    }

    /// A DEK from bytes opened out of a key grant; the array is zeroized.
    pub(crate) fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let dek = Dek(Secret32(bytes));
        bytes.zeroize();
        dek
    }
}

impl std::fmt::Debug for Dek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dek([secret elided])")
    }
}

/// Derives the DEK of a record from the record master key.
pub fn derive_dek(key: &RecordKey, record_id: &RecordId) -> Dek {
    Dek(hkdf_expand32(
        &key.state().kdf,
        &[b"renkei dek v1", record_id.as_str().as_bytes()],
    ))
}

/// The clear header of a sealed record; every field is bound to the ciphertext as AAD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeHeader {
    /// Deterministic id of the record.
    pub record_id: RecordId,
    /// Per-record commitment to the subject ([`crate::token::subject_binding`]); the
    /// subject token itself travels beside the envelope to the hub only.
    pub subject_binding: SubjectBinding,
    /// Catalog data category, e.g. `checkup.lipids`.
    pub category: String,
    /// Participant id of the source that sealed the record.
    pub source: String,
    /// Date the data refers to (checkup date, billing month start).
    pub effective_date: NaiveDate,
    /// Version of the payload schema.
    pub schema_version: u16,
    /// Version of the record key the DEK derives from.
    pub key_version: KeyVersion,
}

impl EnvelopeHeader {
    /// Checks the free-text fields: 1 to 255 bytes, no white space or control characters.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [("category", &self.category), ("source", &self.source)] {
            let reason = if value.is_empty() {
                "must not be empty".to_owned()
            } else if value.len() > MAX_NAME_BYTES {
                format!("is longer than {MAX_NAME_BYTES} bytes")
            } else if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
                format!(
                    "`{}` contains white space or control characters",
                    crate::error::shorten(value)
                )
            } else {
                continue;
            };
            return Err(Error::Header { field, reason });
        }
        Ok(())
    }

    /// The canonical encoding of the header: the AAD, and the header part of the binary form.
    ///
    /// Call on a validated header; every field then fits its u16 length.
    pub fn encode(&self) -> Vec<u8> {
        let date = iso_date(self.effective_date);
        let fields: [&[u8]; 8] = [
            AAD_LABEL,
            self.record_id.as_str().as_bytes(),
            self.subject_binding.as_str().as_bytes(),
            self.category.as_bytes(),
            self.source.as_bytes(),
            date.as_bytes(),
            &self.schema_version.to_be_bytes(),
            &self.key_version.get().to_be_bytes(),
        ];
        let mut out = Vec::with_capacity(fields.iter().map(|f| 2 + f.len()).sum());
        for field in fields {
            let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Parses [`Self::encode`] output, refusing anything that is not its canonical form.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        if r.field("label")? != AAD_LABEL {
            return Err(malformed("header does not start with `renkei envelope v1`"));
        }
        let record_id =
            RecordId::parse(r.text("record id")?).map_err(|e| malformed(&e.to_string()))?;
        let subject_binding = SubjectBinding::parse(r.text("subject binding")?)
            .map_err(|e| malformed(&e.to_string()))?;
        let category = r.text("category")?.to_owned();
        let source = r.text("source")?.to_owned();
        let effective_date = NaiveDate::parse_from_str(r.text("effective date")?, "%Y-%m-%d")
            .map_err(|e| malformed(&format!("effective date: {e}")))?;
        let schema = <[u8; 2]>::try_from(r.field("schema version")?)
            .map_err(|_| malformed("schema version is not 2 bytes"))?;
        let key = <[u8; 4]>::try_from(r.field("key version")?)
            .map_err(|_| malformed("key version is not 4 bytes"))?;
        r.finish("header")?;
        let header = EnvelopeHeader {
            record_id,
            subject_binding,
            category,
            source,
            effective_date,
            schema_version: u16::from_be_bytes(schema),
            key_version: KeyVersion::new(u32::from_be_bytes(key)),
        };
        header.validate()?;
        if header.encode() != bytes {
            return Err(malformed("header is not in canonical form"));
        }
        Ok(header)
    }
}

/// A sealed record: clear header, nonce, and AES-256-GCM ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SealedRecordJson", into = "SealedRecordJson")]
pub struct SealedRecord {
    header: EnvelopeHeader,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl SealedRecord {
    /// Assembles a sealed record from stored parts, validating the header and length.
    pub fn from_parts(
        header: EnvelopeHeader,
        nonce: [u8; NONCE_LEN],
        ciphertext: Vec<u8>,
    ) -> Result<Self> {
        header.validate()?;
        if ciphertext.len() < TAG_LEN {
            return Err(malformed("ciphertext is shorter than the 16-byte tag"));
        }
        Ok(SealedRecord {
            header,
            nonce,
            ciphertext,
        })
    }

    /// The clear header.
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// The 96-bit nonce.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The ciphertext followed by the 16-byte tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The binary form (see `docs/envelope.md`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = self.header.encode();
        let mut out =
            Vec::with_capacity(4 + 1 + 4 + header.len() + NONCE_LEN + 4 + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&len32(header.len()).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&len32(self.ciphertext.len()).to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the binary form; truncated, overlong or non-canonical input is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        if r.take(4, "magic")? != MAGIC {
            return Err(malformed("does not start with the magic `RKSR`"));
        }
        let version = r.take(1, "format version")?;
        if version != [FORMAT_VERSION] {
            return Err(malformed(&format!(
                "unsupported format version {version:?}"
            )));
        }
        let header_len = r.u32("header length")?;
        let header = EnvelopeHeader::decode(r.take(header_len, "header")?)?;
        let nonce = <[u8; NONCE_LEN]>::try_from(r.take(NONCE_LEN, "nonce")?)
            .map_err(|_| malformed("nonce is not 12 bytes"))?;
        let ct_len = r.u32("ciphertext length")?;
        let ciphertext = r.take(ct_len, "ciphertext")?.to_vec();
        r.finish("sealed record")?;
        SealedRecord::from_parts(header, nonce, ciphertext)
    }
}

/// Nonces taken from the OS at a time.
const NONCES_PER_CALL: usize = 32;

thread_local! {
    /// Nonces from the OS not yet used, and how many of them are used.
    static NONCES: std::cell::RefCell<(usize, [u8; NONCE_LEN * NONCES_PER_CALL])> =
        const { std::cell::RefCell::new((NONCES_PER_CALL, [0; NONCE_LEN * NONCES_PER_CALL])) };
}

/// 96 random bits from the OS (`getrandom`), fetched 32 nonces a system call: one call a
/// record was a third of the agent's system calls. Unlike a user-space generator, whose
/// state a cloned virtual machine repeats for up to its reseed interval, at most the 31
/// nonces still in this thread's buffer could repeat.
fn fresh_nonce() -> [u8; NONCE_LEN] {
    NONCES.with(|cell| {
        let mut guard = cell.borrow_mut();
        let (used, buffer) = &mut *guard;
        if *used >= NONCES_PER_CALL {
            OsRng.fill_bytes(buffer);
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        if let Some(chunk) = buffer.chunks_exact_mut(NONCE_LEN).nth(*used) {
            nonce.copy_from_slice(chunk);
            chunk.fill(0); // a nonce is handed out once
        }
        *used += 1;
        nonce
    })
}

/// Seals `payload` under the DEK of `header.record_id`, binding the whole header as AAD.
pub fn seal(key: &RecordKey, header: EnvelopeHeader, payload: &[u8]) -> Result<SealedRecord> {
    header.validate()?;
    if header.key_version != key.version() {
        return Err(Error::KeyVersionMismatch {
            header: header.key_version.to_string(),
            key: key.version().to_string(),
        });
    }
    let dek = derive_dek(key, &header.record_id);
    let aad = header.encode();
    let nonce = fresh_nonce();
    let mut buffer = Vec::with_capacity(payload.len() + TAG_LEN);
    buffer.extend_from_slice(payload);
    aead::seal_in_place(dek.as_bytes(), &nonce, &aad, &mut buffer)?;
    Ok(SealedRecord {
        header,
        nonce,
        ciphertext: buffer,
    })
}

/// Opens a sealed record with its DEK; fails if the key is wrong or anything was altered.
pub fn open(dek: &Dek, sealed: &SealedRecord) -> Result<Vec<u8>> {
    let aad = sealed.header.encode();
    let mut buffer = sealed.ciphertext.clone();
    aead::open_in_place(dek.as_bytes(), &sealed.nonce, &aad, &mut buffer)?;
    Ok(buffer)
}

/// The AEAD of the envelope, AES-256-GCM from `ring`, behind two in-place functions.
///
/// `ring` is used here only for speed (see `docs/benchmarks.md`); it does not
/// zeroize its expanded key schedule, which lives only for one call.
pub(crate) mod aead {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    use super::{NONCE_LEN, TAG_LEN};
    use crate::error::{Error, Result};

    fn key(bytes: &[u8; 32]) -> Result<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, bytes)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Key("aes-256-gcm key is not 32 bytes".to_owned()))
    }

    /// Encrypts `buffer` in place and appends the tag.
    pub(crate) fn seal_in_place(
        key_bytes: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<()> {
        let tag = key(key_bytes)?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                buffer.as_mut_slice(),
            )
            .map_err(|_| Error::Seal("payload too large for aes-gcm".to_owned()))?;
        buffer.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Checks the tag at the end of `buffer`, decrypts in place and drops the tag.
    pub(crate) fn open_in_place(
        key_bytes: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<()> {
        let body_len = buffer.len().checked_sub(TAG_LEN).ok_or(Error::Open)?;
        key(key_bytes)?
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                buffer.as_mut_slice(),
            )
            .map_err(|_| Error::Open)?;
        buffer.truncate(body_len);
        Ok(())
    }
}

fn malformed(reason: &str) -> Error {
    Error::Malformed(reason.to_owned())
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A bounds-checked reader over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(len);
        let slice = end
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| {
                malformed(&format!(
                    "truncated: {what} needs {len} bytes at offset {}, only {} left",
                    self.pos,
                    self.bytes.len().saturating_sub(self.pos)
                ))
            })?;
        self.pos += len;
        Ok(slice)
    }

    fn u32(&mut self, what: &str) -> Result<usize> {
        let bytes = <[u8; 4]>::try_from(self.take(4, what)?)
            .map_err(|_| malformed(&format!("{what} is not 4 bytes")))?;
        usize::try_from(u32::from_be_bytes(bytes))
            .map_err(|_| malformed(&format!("{what} too large")))
    }

    fn field(&mut self, what: &str) -> Result<&'a [u8]> {
        let len = <[u8; 2]>::try_from(self.take(2, what)?)
            .map_err(|_| malformed(&format!("{what} length is not 2 bytes")))?;
        self.take(usize::from(u16::from_be_bytes(len)), what)
    }

    fn text(&mut self, what: &str) -> Result<&'a str> {
        std::str::from_utf8(self.field(what)?)
            .map_err(|_| malformed(&format!("{what} is not UTF-8")))
    }

    fn finish(&self, what: &str) -> Result<()> {
        match self.bytes.len() - self.pos.min(self.bytes.len()) {
            0 => Ok(()),
            extra => Err(malformed(&format!(
                "{extra} unexpected bytes after the {what}"
            ))),
        }
    }
}

/// JSON form of a sealed record: header fields, then base64 nonce and ciphertext.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedRecordJson {
    header: EnvelopeHeader,
    nonce: String,
    ciphertext: String,
}

impl TryFrom<SealedRecordJson> for SealedRecord {
    type Error = Error;

    fn try_from(json: SealedRecordJson) -> Result<Self> {
        let decode = |what, text: &str| {
            data_encoding::BASE64
                .decode(text.as_bytes())
                .map_err(|err| Error::Encoding {
                    what,
                    value: crate::error::shorten(text),
                    reason: err.to_string(),
                })
        };
        let nonce = <[u8; NONCE_LEN]>::try_from(decode("nonce", &json.nonce)?)
            .map_err(|_| malformed("nonce is not 12 bytes"))?;
        SealedRecord::from_parts(json.header, nonce, decode("ciphertext", &json.ciphertext)?)
    }
}

impl From<SealedRecord> for SealedRecordJson {
    fn from(sealed: SealedRecord) -> Self {
        SealedRecordJson {
            nonce: data_encoding::BASE64.encode(&sealed.nonce),
            ciphertext: data_encoding::BASE64.encode(&sealed.ciphertext),
            header: sealed.header,
        }
    }
}

/// `YYYY-MM-DD`, as chrono's `%Y-%m-%d` writes it, without its format machinery for
/// the years 0–9999 (every date the agent seals); other years go through chrono.
fn iso_date(date: NaiveDate) -> String {
    let (year, month, day) = (date.year(), date.month(), date.day());
    let Ok(year) = u32::try_from(year) else {
        return date.format("%Y-%m-%d").to_string();
    };
    if year > 9999 {
        return date.format("%Y-%m-%d").to_string();
    }
    let mut out = String::with_capacity(10);
    for (value, digits) in [(year, 4), (month, 2), (day, 2)] {
        if !out.is_empty() {
            out.push('-');
        }
        for place in (0..digits).rev() {
            let digit = value / 10u32.pow(place) % 10;
            out.push(char::from_digit(digit, 10).unwrap_or('0'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_are_written_as_chrono_writes_them() {
        let days = [
            (0, 1, 1),
            (9, 2, 28),
            (99, 12, 31),
            (1999, 1, 9),
            (2024, 2, 29),
            (9999, 12, 31),
            (10000, 1, 1),
            (-1, 6, 15),
            (-44, 3, 15),
        ];
        for (y, m, d) in days {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(
                iso_date(date),
                date.format("%Y-%m-%d").to_string(),
                "{y}-{m}-{d}"
            );
        }
    }

    #[test]
    fn nonces_are_fresh_across_refills() {
        let nonces: std::collections::HashSet<[u8; NONCE_LEN]> = (0..NONCES_PER_CALL * 3 + 1)
            .map(|_| fresh_nonce())
            .collect();
        assert_eq!(nonces.len(), NONCES_PER_CALL * 3 + 1);
        assert!(!nonces.contains(&[0; NONCE_LEN]));
    }
}
