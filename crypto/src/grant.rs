//! Key grants and enrollment sealing with HPKE (RFC 9180, DESIGN.md steps 6 and 8).
//!
//! Suite: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
//!
//! A key grant seals a record's 32-byte DEK to one recipient's X25519 key with
//!
//! ```text
//! info = len ‖ "renkei key-grant v1" ‖ len ‖ record_id ‖ len ‖ recipient_id
//! ```
//!
//! (each `len` a u16 big-endian byte count) and an empty AAD, so a grant opens
//! only for that record and that recipient. A [`KeyGrant`] is `enc` (32 bytes)
//! followed by the sealed DEK and its tag (48 bytes): 80 bytes, or base64.
//!
//! [`hpke_seal`]/[`hpke_open`] are the general single-shot functions, used for
//! enrollment requests sealed to a source's enrollment key (the same X25519
//! key types).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use data_encoding::BASE64;
use hpke::aead::{AeadTag, AesGcm256};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::envelope::Dek;
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

/// A DEK sealed to one recipient for one record: `enc ‖ ciphertext ‖ tag`, 80 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyGrant([u8; KeyGrant::LEN]);

impl KeyGrant {
    /// Length of a key grant in bytes.
    pub const LEN: usize = ENC_LEN + 32 + TAG_LEN;

    /// The 80 bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        self.0
    }

    /// A key grant from its bytes, which must be exactly 80.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        <[u8; Self::LEN]>::try_from(bytes)
            .map(KeyGrant)
            .map_err(|_| Error::Hpke {
                operation: "open",
                reason: format!("a key grant is {} bytes, got {}", Self::LEN, bytes.len()),
            })
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }

    /// Parses [`Self::to_base64`] output.
    pub fn from_base64(text: &str) -> Result<Self> {
        decode_fixed::<{ Self::LEN }>("key grant", text).map(KeyGrant)
    }
}

impl fmt::Debug for KeyGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyGrant({})", self.to_base64())
    }
}

serde_as_base64!(RecipientPublicKey);
serde_as_base64!(KeyGrant);

/// The HPKE `info` of a key grant (see the module docs).
pub fn grant_info(record_id: &RecordId, recipient_id: &str) -> Result<Vec<u8>> {
    let parts: [&[u8]; 3] = [
        b"renkei key-grant v1",
        record_id.as_str().as_bytes(),
        recipient_id.as_bytes(),
    ];
    let mut info = Vec::with_capacity(parts.iter().map(|p| 2 + p.len()).sum());
    for part in parts {
        let len = u16::try_from(part.len()).map_err(|_| Error::Hpke {
            operation: "seal",
            reason: "recipient id longer than 65535 bytes".to_owned(),
        })?;
        info.extend_from_slice(&len.to_be_bytes());
        info.extend_from_slice(part);
    }
    Ok(info)
}

/// Seals a record's DEK to a recipient, bound to the record and recipient ids.
pub fn seal_grant(
    recipient_key: &RecipientPublicKey,
    record_id: &RecordId,
    recipient_id: &str,
    dek: &Dek,
) -> Result<KeyGrant> {
    let info = grant_info(record_id, recipient_id)?;
    let mut sealed = Zeroizing::new(*dek.as_bytes());
    let (enc, tag) = hpke::single_shot_seal_in_place_detached::<Aead, Kdf, Kem, _>(
        &OpModeS::Base,
        &recipient_key.hpke_key()?,
        &info,
        sealed.as_mut_slice(),
        &[],
        &mut OsRng,
    )
    .map_err(|err| hpke_error("seal", err))?;
    let mut grant = [0u8; KeyGrant::LEN];
    let (enc_part, rest) = grant.split_at_mut(ENC_LEN);
    let (body, tag_part) = rest.split_at_mut(32);
    enc_part.copy_from_slice(&enc.to_bytes());
    body.copy_from_slice(sealed.as_slice());
    tag_part.copy_from_slice(&tag.to_bytes());
    Ok(KeyGrant(grant))
}

/// Opens a key grant; fails for another record, another recipient id, or another key.
pub fn open_grant(
    secret_key: &RecipientSecretKey,
    record_id: &RecordId,
    recipient_id: &str,
    grant: &KeyGrant,
) -> Result<Dek> {
    let info = grant_info(record_id, recipient_id)?;
    let (enc, rest) = grant.0.split_at(ENC_LEN);
    let (body, tag) = rest.split_at(32);
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|e| hpke_error("open", e))?;
    let tag = AeadTag::<Aead>::from_bytes(tag).map_err(|e| hpke_error("open", e))?;
    let mut dek = Zeroizing::new([0u8; 32]);
    dek.copy_from_slice(body);
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
