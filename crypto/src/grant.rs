//! Key grants and enrollment sealing with HPKE (RFC 9180, DESIGN.md steps 6 and 8).
//!
//! Suite: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
//!
//! A key grant carries a record's 32-byte DEK to one recipient, bound to the record id
//! and the recipient id (docs/envelope.md). Two formats open:
//!
//! - **v2** (what sources seal, 92 bytes): `enc ‖ nonce ‖ AES-256-GCM(batch key, DEK) ‖ tag`.
//!   A [`GrantSealer`] sets up one HPKE context to a recipient and takes its batch key
//!   from the context's exporter; every grant of the batch shares that `enc`. So one
//!   X25519 serves a whole batch, for the source and, through [`GrantOpener`]'s cache,
//!   for the recipient.
//! - **v1** (80 bytes, grants sealed before batches): `enc ‖ HPKE-sealed DEK ‖ tag`, one
//!   HPKE seal a record; still opened, no longer sealed.
//!
//! [`hpke_seal`]/[`hpke_open`] are the general single-shot functions, used for
//! enrollment requests sealed to a source's enrollment key (the same X25519
//! key types).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use data_encoding::BASE64;
use hpke::aead::{AeadTag, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::envelope::{Dek, NONCE_LEN, aead};
use crate::error::{Error, Result};
use crate::keys::{KeyVersion, Secret32, load_key_file, save_key_file};
use crate::token::RecordId;

type Kem = X25519HkdfSha256;
type Kdf = HkdfSha256;
type Aead = AesGcm256;

/// Length of the encapsulated key `enc`.
const ENC_LEN: usize = 32;
/// Length of the AES-GCM tag.
const TAG_LEN: usize = 16;

/// An X25519 secret key for opening key grants or enrollment requests.
pub struct RecipientSecretKey {
    secret: Secret32,
    version: KeyVersion,
}

impl RecipientSecretKey {
    /// The kind written in this key's files.
    pub const KIND: &'static str = "x25519";

    /// A fresh random key.
    pub fn generate(version: KeyVersion) -> Self {
        RecipientSecretKey {
            secret: Secret32::random(),
            version,
        }
    }

    /// The key's version.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The matching public key.
    pub fn public_key(&self) -> RecipientPublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.secret.0);
        RecipientPublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }

    /// Saves the key to a new file with mode 0600; fails if the file exists.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_key_file(path, Self::KIND, self.version, &self.secret.0)
    }

    /// Loads a key saved by [`Self::save`], checking permissions and kind.
    pub fn load(path: &Path) -> Result<Self> {
        let (version, bytes) = load_key_file(path, Self::KIND)?;
        Ok(RecipientSecretKey {
            secret: Secret32::from_loaded(path, &bytes)?,
            version,
        })
    }

    fn hpke_key(&self) -> Result<<Kem as hpke::Kem>::PrivateKey> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&self.secret.0)
            .map_err(|err| Error::Key(format!("x25519 secret key: {err}")))
    }
}

impl fmt::Debug for RecipientSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientSecretKey")
            .field("version", &self.version)
            .field("key", &format_args!("[secret elided]"))
            .finish()
    }
}

/// An X25519 public key of a recipient (or a source's enrollment key); base64 in text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecipientPublicKey([u8; 32]);

impl RecipientPublicKey {
    /// A public key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RecipientPublicKey(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64 with padding (44 characters).
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }

    /// Parses [`Self::to_base64`] output.
    pub fn from_base64(text: &str) -> Result<Self> {
        decode_fixed::<32>("x25519 public key", text).map(RecipientPublicKey)
    }

    fn hpke_key(&self) -> Result<<Kem as hpke::Kem>::PublicKey> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0)
            .map_err(|err| Error::Key(format!("x25519 public key: {err}")))
    }
}

impl fmt::Display for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for RecipientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientPublicKey({})", self.to_base64())
    }
}

impl FromStr for RecipientPublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_base64(s)
    }
}

/// A DEK sealed to one recipient for one record: 92 bytes (v2) or 80 (v1), see the
/// module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyGrant(Vec<u8>);

impl KeyGrant {
    /// Length of a v1 grant: `enc ‖ sealed DEK ‖ tag`.
    pub const LEN_V1: usize = ENC_LEN + 32 + TAG_LEN;
    /// Length of a v2 grant: `enc ‖ nonce ‖ wrapped DEK ‖ tag`.
    pub const LEN_V2: usize = ENC_LEN + NONCE_LEN + 32 + TAG_LEN;

    /// The grant's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.clone()
    }

    /// A key grant from its bytes, which must be 92 (v2) or 80 (v1).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() == Self::LEN_V2 || bytes.len() == Self::LEN_V1 {
            Ok(KeyGrant(bytes.to_vec()))
        } else {
            Err(Error::Hpke {
                operation: "open",
                reason: format!(
                    "a key grant is {} bytes (or {} before batched grants), got {}",
                    Self::LEN_V2,
                    Self::LEN_V1,
                    bytes.len()
                ),
            })
        }
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }

    /// Parses [`Self::to_base64`] output.
    pub fn from_base64(text: &str) -> Result<Self> {
        let error = |reason: String| Error::Encoding {
            what: "key grant",
            value: crate::error::shorten(text),
            reason,
        };
        let bytes = BASE64
            .decode(text.as_bytes())
            .map_err(|err| error(err.to_string()))?;
        Self::from_bytes(&bytes).map_err(|err| match err {
            Error::Hpke { reason, .. } => error(reason),
            other => other,
        })
    }
}

impl fmt::Debug for KeyGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyGrant({})", self.to_base64())
    }
}

serde_as_base64!(RecipientPublicKey);
serde_as_base64!(KeyGrant);

/// `lp16(part)` for each part, concatenated (docs/envelope.md).
fn length_prefixed(parts: &[&[u8]]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| 2 + p.len()).sum());
    for part in parts {
        let len = u16::try_from(part.len()).map_err(|_| Error::Hpke {
            operation: "seal",
            reason: "recipient id longer than 65535 bytes".to_owned(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// The HPKE `info` of a v1 key grant (see the module docs).
pub fn grant_info(record_id: &RecordId, recipient_id: &str) -> Result<Vec<u8>> {
    length_prefixed(&[
        b"renkei key-grant v1",
        record_id.as_str().as_bytes(),
        recipient_id.as_bytes(),
    ])
}

/// The HPKE `info` of a v2 batch: the recipient id only; each grant's AAD names the record.
fn batch_info(recipient_id: &str) -> Result<Vec<u8>> {
    length_prefixed(&[b"renkei key-grant v2", recipient_id.as_bytes()])
}

/// The HPKE exporter context a v2 batch key is exported under.
const BATCH_KEY_CONTEXT: &[u8] = b"renkei key-grant v2 batch key";

/// The AAD of a v2 grant's wrapped DEK: the record (the recipient is bound by the
/// batch's HPKE `info`, hence by the batch key).
fn wrap_aad(record_id: &RecordId) -> Result<Vec<u8>> {
    length_prefixed(&[b"renkei key-grant v2", record_id.as_str().as_bytes()])
}

/// Seals the DEKs of many records to one recipient with one HPKE setup (v2 grants): a
/// source answering a round of requests makes one sealer per recipient.
pub struct GrantSealer {
    enc: [u8; ENC_LEN],
    batch_key: Zeroizing<[u8; 32]>,
    recipient_id: String,
}

impl GrantSealer {
    /// A new batch to `recipient_key`, for the recipient named `recipient_id`.
    pub fn new(recipient_key: &RecipientPublicKey, recipient_id: &str) -> Result<Self> {
        let info = batch_info(recipient_id)?;
        let (enc, context) = hpke::setup_sender::<Aead, Kdf, Kem, _>(
            &OpModeS::Base,
            &recipient_key.hpke_key()?,
            &info,
            &mut OsRng,
        )
        .map_err(|err| hpke_error("seal", err))?;
        let mut batch_key = Zeroizing::new([0u8; 32]);
        context
            .export(BATCH_KEY_CONTEXT, batch_key.as_mut_slice())
            .map_err(|err| hpke_error("seal", err))?;
        let enc =
            <[u8; ENC_LEN]>::try_from(enc.to_bytes().as_slice()).map_err(|_| Error::Hpke {
                operation: "seal",
                reason: "the encapsulated key is not 32 bytes".to_owned(),
            })?;
        Ok(GrantSealer {
            enc,
            batch_key,
            recipient_id: recipient_id.to_owned(),
        })
    }

    /// The recipient this batch seals to.
    pub fn recipient_id(&self) -> &str {
        &self.recipient_id
    }

    /// The grant of `dek` for `record_id`.
    pub fn seal(&self, record_id: &RecordId, dek: &Dek) -> Result<KeyGrant> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut wrapped = Zeroizing::new(dek.as_bytes().to_vec());
        aead::seal_in_place(&self.batch_key, &nonce, &wrap_aad(record_id)?, &mut wrapped)?;
        let mut grant = Vec::with_capacity(KeyGrant::LEN_V2);
        grant.extend_from_slice(&self.enc);
        grant.extend_from_slice(&nonce);
        grant.extend_from_slice(&wrapped);
        Ok(KeyGrant(grant))
    }
}

impl fmt::Debug for GrantSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantSealer")
            .field("recipient_id", &self.recipient_id)
            .field("batch_key", &format_args!("[secret elided]"))
            .finish()
    }
}

/// Seals one record's DEK to a recipient (a batch of one; see [`GrantSealer`]).
pub fn seal_grant(
    recipient_key: &RecipientPublicKey,
    record_id: &RecordId,
    recipient_id: &str,
    dek: &Dek,
) -> Result<KeyGrant> {
    GrantSealer::new(recipient_key, recipient_id)?.seal(record_id, dek)
}

/// Batch keys a [`GrantOpener`] keeps; past that, one is dropped for each new one.
const OPENED_BATCHES: usize = 4096;

type Batches = HashMap<[u8; ENC_LEN], Box<Zeroizing<[u8; 32]>>>;

/// Opens the key grants of one recipient, keeping each v2 batch's key once derived, so
/// a feed page of one batch costs one X25519 (safe to share between threads).
pub struct GrantOpener<'k> {
    secret_key: &'k RecipientSecretKey,
    recipient_id: String,
    /// Batch keys by `enc`, boxed so that a growing map moves pointers, not keys.
    batches: Mutex<Batches>,
}

impl<'k> GrantOpener<'k> {
    /// An opener for the recipient named `recipient_id` holding `secret_key`.
    pub fn new(secret_key: &'k RecipientSecretKey, recipient_id: &str) -> Self {
        GrantOpener {
            secret_key,
            recipient_id: recipient_id.to_owned(),
            batches: Mutex::new(HashMap::new()),
        }
    }

    /// Opens `grant` for `record_id`; fails for another record, another recipient id,
    /// another key, or any altered byte.
    pub fn open(&self, record_id: &RecordId, grant: &KeyGrant) -> Result<Dek> {
        if grant.0.len() == KeyGrant::LEN_V1 {
            return open_v1(self.secret_key, record_id, &self.recipient_id, &grant.0);
        }
        let refused = || Error::Hpke {
            operation: "open",
            reason: "the key grant does not open for this record and recipient".to_owned(),
        };
        let (enc, rest) = grant.0.split_first_chunk::<ENC_LEN>().ok_or_else(refused)?;
        let (nonce, wrapped) = rest.split_first_chunk::<NONCE_LEN>().ok_or_else(refused)?;
        let kept = self.lock().get(enc).map(|key| Zeroizing::new(***key));
        let is_new = kept.is_none();
        let batch_key = match kept {
            Some(key) => key,
            None => self.derive_batch_key(enc)?,
        };
        let mut dek = Zeroizing::new(wrapped.to_vec());
        aead::open_in_place(&batch_key, nonce, &wrap_aad(record_id)?, &mut dek)
            .map_err(|_| refused())?;
        let bytes = Zeroizing::new(<[u8; 32]>::try_from(dek.as_slice()).map_err(|_| refused())?);
        if is_new {
            // Kept only once a grant of the batch opened: made-up `enc` values cannot
            // push out the batches in use.
            let mut batches = self.lock();
            if batches.len() >= OPENED_BATCHES {
                let old = batches.keys().next().copied();
                old.and_then(|old| batches.remove(&old));
            }
            batches.insert(*enc, Box::new(Zeroizing::new(*batch_key)));
        }
        Ok(Dek::from_bytes(*bytes))
    }

    /// The batch key of `enc` (one X25519).
    fn derive_batch_key(&self, enc: &[u8; ENC_LEN]) -> Result<Zeroizing<[u8; 32]>> {
        let encapped =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|e| hpke_error("open", e))?;
        let context = hpke::setup_receiver::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &self.secret_key.hpke_key()?,
            &encapped,
            &batch_info(&self.recipient_id)?,
        )
        .map_err(|err| hpke_error("open", err))?;
        let mut key = Zeroizing::new([0u8; 32]);
        context
            .export(BATCH_KEY_CONTEXT, key.as_mut_slice())
            .map_err(|err| hpke_error("open", err))?;
        Ok(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batches> {
        // A panic elsewhere cannot leave the map half-written: every value is complete.
        self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for GrantOpener<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantOpener")
            .field("recipient_id", &self.recipient_id)
            .finish_non_exhaustive()
    }
}

/// Opens a key grant of either version; fails for another record, another recipient
/// id, or another key. (A recipient opening many uses one [`GrantOpener`].)
pub fn open_grant(
    secret_key: &RecipientSecretKey,
    record_id: &RecordId,
    recipient_id: &str,
    grant: &KeyGrant,
) -> Result<Dek> {
    GrantOpener::new(secret_key, recipient_id).open(record_id, grant)
}

/// Opens a v1 grant (80 bytes): one HPKE open.
fn open_v1(
    secret_key: &RecipientSecretKey,
    record_id: &RecordId,
    recipient_id: &str,
    grant: &[u8],
) -> Result<Dek> {
    let info = grant_info(record_id, recipient_id)?;
    let short = || Error::Hpke {
        operation: "open",
        reason: format!("a v1 key grant is {} bytes", KeyGrant::LEN_V1),
    };
    let (enc, rest) = grant.split_first_chunk::<ENC_LEN>().ok_or_else(short)?;
    let (body, tag) = rest.split_first_chunk::<32>().ok_or_else(short)?;
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|e| hpke_error("open", e))?;
    let tag = AeadTag::<Aead>::from_bytes(tag).map_err(|e| hpke_error("open", e))?;
    let mut dek = Zeroizing::new(*body);
    hpke::single_shot_open_in_place_detached::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &secret_key.hpke_key()?,
        &enc,
        &info,
        dek.as_mut_slice(),
        &[],
        &tag,
    )
    .map_err(|err| hpke_error("open", err))?;
    Ok(Dek::from_bytes(*dek))
}

/// Single-shot HPKE seal in the suite above; returns `enc (32 bytes) ‖ ciphertext ‖ tag`.
pub fn hpke_seal(
    recipient_key: &RecipientPublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let (enc, ciphertext) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
        &OpModeS::Base,
        &recipient_key.hpke_key()?,
        info,
        plaintext,
        aad,
        &mut OsRng,
    )
    .map_err(|err| hpke_error("seal", err))?;
    let mut out = Vec::with_capacity(ENC_LEN + ciphertext.len());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens [`hpke_seal`] output; the plaintext is zeroized when dropped.
pub fn hpke_open(
    secret_key: &RecipientSecretKey,
    info: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < ENC_LEN + TAG_LEN {
        return Err(Error::Hpke {
            operation: "open",
            reason: format!("sealed message of {} bytes is too short", sealed.len()),
        });
    }
    let (enc, ciphertext) = sealed.split_at(ENC_LEN);
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|e| hpke_error("open", e))?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &secret_key.hpke_key()?,
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|err| hpke_error("open", err))
}

fn hpke_error(operation: &'static str, err: hpke::HpkeError) -> Error {
    Error::Hpke {
        operation,
        reason: err.to_string(),
    }
}

fn decode_fixed<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N]> {
    let error = |reason: String| Error::Encoding {
        what,
        value: crate::error::shorten(text),
        reason,
    };
    let bytes = BASE64
        .decode(text.as_bytes())
        .map_err(|err| error(err.to_string()))?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| error(format!("expected {N} bytes, got {}", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::derive_dek;
    use crate::keys::RecordKey;
    use crate::token::record_id;

    /// Only a batch whose grant opened is kept: grants with made-up `enc` values (what
    /// a hostile hub could send) never enter the opener's map, so they cannot push out
    /// the batches in use.
    #[test]
    fn only_batches_that_opened_are_kept() {
        let record_key = RecordKey::generate(KeyVersion::V1);
        let id = record_id(&record_key, "doc-1", "checkup.body");
        let recipient = RecipientSecretKey::generate(KeyVersion::V1);
        let opener = GrantOpener::new(&recipient, "phr:asmile");
        for i in 1..=3u8 {
            let mut junk = vec![i; KeyGrant::LEN_V2];
            if let Some(first) = junk.first_mut() {
                *first = 9;
            }
            let junk = KeyGrant::from_bytes(&junk).unwrap();
            assert!(opener.open(&id, &junk).is_err());
        }
        assert_eq!(opener.lock().len(), 0, "no junk batch kept");
        let sealer = GrantSealer::new(&recipient.public_key(), "phr:asmile").unwrap();
        let grant = sealer.seal(&id, &derive_dek(&record_key, &id)).unwrap();
        opener.open(&id, &grant).unwrap();
        assert_eq!(opener.lock().len(), 1);
        // A valid batch with a wrong record does not open and adds nothing either.
        let other = GrantSealer::new(&recipient.public_key(), "phr:asmile").unwrap();
        let misfiled = other.seal(&id, &derive_dek(&record_key, &id)).unwrap();
        let other_id = record_id(&record_key, "doc-2", "checkup.body");
        assert!(opener.open(&other_id, &misfiled).is_err());
        assert_eq!(opener.lock().len(), 1);
        opener.open(&id, &misfiled).unwrap();
        assert_eq!(opener.lock().len(), 2);
    }
}
