//! Secret key types of the LGWAN agent and the hub, and the key-file format.
//!
//! Three symmetric keys, each 32 random bytes with a [`KeyVersion`]:
//! [`TokenKey`] (`K_tok`, makes subject tokens), [`RecordKey`] (`K_rec`, makes
//! record ids and DEKs) and [`PseudonymKey`] (`K_hub_pseudonym`, makes
//! per-recipient pseudonyms on the hub). Key bytes live in private fields, are
//! zeroized on drop, and `Debug` prints `[secret elided]`.
//!
//! # Key file format
//!
//! One line of ASCII text, fields separated by one space:
//!
//! ```text
//! renkei-key <kind> v<version> <base64 key bytes, RFC 4648 with padding>
//! ```
//!
//! for example `renkei-key token v1 q0Zr…=`. Kinds are `token`, `record`,
//! `pseudonym`, `x25519` ([`crate::grant`]) and `ed25519` ([`crate::sign`]).
//! [`save_key_file`] creates the file with mode 0600 and refuses to overwrite;
//! [`load_key_file`] refuses a file that is group- or world-accessible
//! (`mode & 0o077 != 0`), malformed, or of another kind, naming the file.
//! [`write_secret_file`] and [`read_secret_file`] do the same for any secret.
//!
//! Each key also keeps the pre-keyed HMAC/HKDF state it is used with, so that
//! tokenizing does not re-key HMAC every time. The `hmac` and `hkdf` crates do
//! not zeroize that state on drop; only the raw key bytes are zeroized.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use data_encoding::BASE64;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Largest secret file [`read_secret_file`] accepts, in bytes.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Version of a key, carried in everything the key produces; displays as `v1`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct KeyVersion(u32);

impl KeyVersion {
    /// Version 1, the first version of every key.
    pub const V1: KeyVersion = KeyVersion(1);

    /// A key version from its number.
    pub const fn new(number: u32) -> Self {
        KeyVersion(number)
    }

    /// The version number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for KeyVersion {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let digits = s
            .strip_prefix('v')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Error::KeyVersion(crate::error::shorten(s)))?;
        digits
            .parse()
            .map(KeyVersion)
            .map_err(|_| Error::KeyVersion(crate::error::shorten(s)))
    }
}

/// Writes `contents` to a new file at `path` with mode 0600; fails if the file exists.
///
/// A partly written file is removed. Use it for every secret the project stores.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |source| Error::KeyFileIo {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        // Best effort: the write error is what the caller needs to see.
        let _ = std::fs::remove_file(path);
        return Err(io(source));
    }
    Ok(())
}

/// Reads a secret file, refusing it unless it is a regular file that only its owner can access.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let io = |source| Error::KeyFileIo {
        path: path.to_owned(),
        source,
    };
    let bad = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(io)?;
    // Check the opened file itself, so the file checked is the file read.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(bad("is not a regular file".to_owned()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "is accessible by group or others (mode {mode:04o}); run `chmod 600` on it"
        )));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(bad(format!("is larger than {MAX_SECRET_FILE} bytes")));
    }
    let mut contents = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut contents)
        .map_err(io)?;
    Ok(contents)
}

/// Saves key bytes in the key file format (see the module docs) with mode 0600.
pub fn save_key_file(path: &Path, kind: &str, version: KeyVersion, key: &[u8]) -> Result<()> {
    let encoded = Zeroizing::new(BASE64.encode(key));
    let line = Zeroizing::new(format!(
        "renkei-key {kind} {version} {}\n",
        encoded.as_str()
    ));
    write_secret_file(path, line.as_bytes())
}

/// Loads a key file of the given kind, returning its version and key bytes.
pub fn load_key_file(path: &Path, kind: &str) -> Result<(KeyVersion, Zeroizing<Vec<u8>>)> {
    let bad = |reason: String| Error::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let contents = read_secret_file(path)?;
    let text = std::str::from_utf8(&contents).map_err(|_| bad("is not UTF-8 text".to_owned()))?;
    let mut fields = text.split_ascii_whitespace();
    let (Some(magic), Some(found_kind), Some(version), Some(key), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(bad(
            "is malformed: expected one line `renkei-key <kind> v<version> <base64>`".to_owned(),
        ));
    };
    if magic != "renkei-key" {
        return Err(bad(
            "is not a renkei key file (no `renkei-key` prefix)".to_owned()
        ));
    }
    if found_kind != kind {
        return Err(bad(format!(
            "holds a `{}` key, expected a `{kind}` key",
            crate::error::shorten(found_kind)
        )));
    }
    let version = version
        .parse::<KeyVersion>()
        .map_err(|err| bad(err.to_string()))?;
    let key = BASE64
        .decode(key.as_bytes())
        .map(Zeroizing::new)
        .map_err(|err| bad(format!("has an invalid base64 key: {err}")))?;
    Ok((version, key))
}

/// 32 secret bytes, zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct Secret32(pub(crate) [u8; 32]);

impl Secret32 {
    /// Fresh random bytes from the operating system.
    pub(crate) fn random() -> Self {
        let mut secret = Secret32([0; 32]);
        OsRng.fill_bytes(&mut secret.0);
        secret
    }

    /// Takes key bytes loaded from `path`, which must be exactly 32.
    pub(crate) fn from_loaded(path: &Path, bytes: &[u8]) -> Result<Self> {
        let array = <[u8; 32]>::try_from(bytes).map_err(|_| Error::KeyFile {
            path: path.to_owned(),
            reason: format!("holds a key of {} bytes, expected 32", bytes.len()),
        })?;
        Ok(Secret32(array))
    }
}

/// HMAC-SHA256 keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac takes any key length")
}

/// HKDF-SHA256 expand of 32 bytes with `info` given as concatenated parts.
pub(crate) fn hkdf_expand32(kdf: &Hkdf<Sha256>, info: &[&[u8]]) -> Secret32 {
    let mut out = Secret32([0; 32]);
    #[expect(clippy::expect_used, reason = "HKDF-SHA256 expands up to 8160 bytes")]
    kdf.expand_multi_info(info, &mut out.0)
        .expect("32 bytes is a valid hkdf-sha256 length");
    out
}

macro_rules! symmetric_key {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $state:ty, $derive:path) => {
        $(#[$doc])*
        pub struct $name {
            secret: Secret32,
            version: KeyVersion,
            state: $state,
        }

        impl $name {
            /// The kind written in this key's files.
            pub const KIND: &'static str = $kind;

            /// A fresh random key from the operating system's generator.
            pub fn generate(version: KeyVersion) -> Self {
                Self::from_secret(Secret32::random(), version)
            }

            /// A key from known bytes (tests, key ceremonies); the array is zeroized.
            pub fn from_bytes(mut bytes: [u8; 32], version: KeyVersion) -> Self {
                let secret = Secret32(bytes);
                bytes.zeroize();
                Self::from_secret(secret, version)
            }

            fn from_secret(secret: Secret32, version: KeyVersion) -> Self {
                let state = $derive(&secret.0);
                Self { secret, version, state }
            }

            /// The key's version.
            pub fn version(&self) -> KeyVersion {
                self.version
            }

            /// Saves the key to a new file with mode 0600; fails if the file exists.
            pub fn save(&self, path: &Path) -> Result<()> {
                save_key_file(path, $kind, self.version, &self.secret.0)
            }

            /// Loads a key saved by [`Self::save`], checking permissions and kind.
            pub fn load(path: &Path) -> Result<Self> {
                let (version, bytes) = load_key_file(path, $kind)?;
                Ok(Self::from_secret(Secret32::from_loaded(path, &bytes)?, version))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("version", &self.version)
                    .field("key", &format_args!("[secret elided]"))
                    .finish()
            }
        }
    };
}

symmetric_key!(
    /// `K_tok`: makes subject tokens from canonical identities; never leaves the LGWAN segment.
    TokenKey, "token", Hmac<Sha256>, hmac_sha256
);

symmetric_key!(
    /// `K_hub_pseudonym`: makes per-recipient pseudonyms on the hub.
    PseudonymKey, "pseudonym", Hmac<Sha256>, hmac_sha256
);

symmetric_key!(
    /// `K_rec`: the record master key; makes record ids and per-record DEKs.
    RecordKey, "record", RecordKeyState, RecordKeyState::derive
);

/// What a [`RecordKey`] derives once: the HKDF state, the record-id and subject-binding HMACs.
pub(crate) struct RecordKeyState {
    /// HKDF-SHA256 with `ikm = K_rec` and no salt; DEKs are expanded from it.
    pub(crate) kdf: Hkdf<Sha256>,
    /// HMAC keyed with `HKDF-Expand(…, "renkei record-id v1", 32)`.
    pub(crate) record_id_mac: Hmac<Sha256>,
    /// HMAC keyed with `HKDF-Expand(…, "renkei subject-binding v1", 32)`.
    pub(crate) subject_binding_mac: Hmac<Sha256>,
}

impl RecordKeyState {
    fn derive(key: &[u8; 32]) -> Self {
        let kdf = Hkdf::<Sha256>::new(None, key);
        let record_id_key = hkdf_expand32(&kdf, &[b"renkei record-id v1"]);
        let record_id_mac = hmac_sha256(&record_id_key.0);
        let binding_key = hkdf_expand32(&kdf, &[b"renkei subject-binding v1"]);
        let subject_binding_mac = hmac_sha256(&binding_key.0);
        RecordKeyState {
            kdf,
            record_id_mac,
            subject_binding_mac,
        }
    }
}

impl TokenKey {
    /// HMAC-SHA256 keyed with `K_tok`, to be cloned per token.
    pub(crate) fn mac(&self) -> &Hmac<Sha256> {
        &self.state
    }
}

impl PseudonymKey {
    /// HMAC-SHA256 keyed with `K_hub_pseudonym`, to be cloned per pseudonym.
    pub(crate) fn mac(&self) -> &Hmac<Sha256> {
        &self.state
    }
}

impl RecordKey {
    /// The HKDF and record-id state derived from `K_rec`.
    pub(crate) fn state(&self) -> &RecordKeyState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_version_displays_and_parses() {
        assert_eq!(KeyVersion::new(7).to_string(), "v7");
        assert_eq!("v12".parse::<KeyVersion>().unwrap(), KeyVersion::new(12));
        for bad in ["", "v", "1", "v-1", "v1.0", "V1", "v99999999999"] {
            assert!(bad.parse::<KeyVersion>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn debug_elides_the_secret() {
        let key = TokenKey::from_bytes([0x41; 32], KeyVersion::V1);
        let debug = format!("{key:?}");
        assert!(debug.contains("[secret elided]"), "{debug}");
        assert!(debug.contains("v1"), "{debug}");
        assert!(!debug.contains("65") && !debug.contains("41"), "{debug}");
    }

    #[test]
    fn hmac_helper_matches_a_fresh_hmac() {
        let mut a = hmac_sha256(b"key");
        a.update(b"data");
        let mut b = <Hmac<Sha256> as Mac>::new_from_slice(b"key").unwrap();
        b.update(b"data");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
    }
}
