//! Ed25519 signatures for hub audit checkpoints and consent receipts.
//!
//! [`SigningKey`] is secret (zeroized, `Debug` elided, key file kind
//! `ed25519` holding the 32-byte seed, mode 0600) and versioned;
//! [`VerifyingKey`] and [`Signature`] are public and written as base64.
//! Verification is strict (RFC 8032 with ed25519-dalek's `verify_strict`:
//! no small-order keys, canonical `S`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use data_encoding::BASE64;
use ed25519_dalek::Signer as _;
use rand::rngs::OsRng;

use crate::error::{Error, Result};
use crate::keys::{KeyVersion, Secret32, load_key_file, save_key_file};

/// An Ed25519 secret signing key with a version.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    version: KeyVersion,
}

impl SigningKey {
    /// The kind written in this key's files.
    pub const KIND: &'static str = "ed25519";

    /// A fresh random key.
    pub fn generate(version: KeyVersion) -> Self {
        SigningKey {
            inner: ed25519_dalek::SigningKey::generate(&mut OsRng),
            version,
        }
    }

    /// The key's version.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.inner.verifying_key())
    }

    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.inner.sign(message).to_bytes())
    }

    /// A key from a known seed (known-answer tests).
    #[cfg(test)]
    pub(crate) fn from_seed(seed: [u8; 32], version: KeyVersion) -> Self {
        SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(&seed),
            version,
        }
    }

    /// Saves the seed to a new file with mode 0600; fails if the file exists.
    pub fn save(&self, path: &Path) -> Result<()> {
        let seed = Secret32(self.inner.to_bytes());
        save_key_file(path, Self::KIND, self.version, &seed.0)
    }

    /// Loads a key saved by [`Self::save`], checking permissions and kind.
    pub fn load(path: &Path) -> Result<Self> {
        let (version, bytes) = load_key_file(path, Self::KIND)?;
        let seed = Secret32::from_loaded(path, &bytes)?;
        Ok(SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(&seed.0),
            version,
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("version", &self.version)
            .field("key", &format_args!("[secret elided]"))
            .finish()
    }
}

/// An Ed25519 public key; base64 (standard, padded) in text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// A key from its 32 bytes; fails if they are not a valid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(VerifyingKey)
            .map_err(|_| Error::Key("ed25519 public key is not a valid curve point".to_owned()))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }

    /// Parses [`Self::to_base64`] output.
    pub fn from_base64(text: &str) -> Result<Self> {
        Self::from_bytes(&decode_fixed::<32>("ed25519 public key", text)?)
    }

    /// Checks `signature` over `message`; any failure is [`Error::Signature`].
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<()> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| Error::Signature)
    }
}

/// An Ed25519 signature, 64 bytes; base64 in text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// A signature from its 64 bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// Standard base64 with padding.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }

    /// Parses [`Self::to_base64`] output.
    pub fn from_base64(text: &str) -> Result<Self> {
        decode_fixed::<64>("ed25519 signature", text).map(Signature)
    }
}

macro_rules! text_forms {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_base64())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_base64())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                Self::from_base64(s)
            }
        }

        serde_as_base64!($name);
    };
}

text_forms!(VerifyingKey);
text_forms!(Signature);

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

    #[test]
    fn sign_and_verify_round_trip() {
        let key = SigningKey::generate(KeyVersion::new(2));
        let public = key.verifying_key();
        let sig = key.sign(b"checkpoint 42");
        public.verify(b"checkpoint 42", &sig).unwrap();
        assert!(matches!(
            public.verify(b"checkpoint 43", &sig),
            Err(Error::Signature)
        ));
        let mut bent = sig.to_bytes();
        bent[5] ^= 1;
        assert!(
            public
                .verify(b"checkpoint 42", &Signature::from_bytes(bent))
                .is_err()
        );
        let other = SigningKey::generate(KeyVersion::V1).verifying_key();
        assert!(other.verify(b"checkpoint 42", &sig).is_err());
    }

    #[test]
    fn text_forms_round_trip() {
        let key = SigningKey::generate(KeyVersion::V1);
        let public = key.verifying_key();
        let sig = key.sign(b"m");
        assert_eq!(public.to_string().parse::<VerifyingKey>().unwrap(), public);
        assert_eq!(sig.to_string().parse::<Signature>().unwrap(), sig);
        let json = serde_json::to_string(&public).unwrap();
        assert_eq!(serde_json::from_str::<VerifyingKey>(&json).unwrap(), public);
        assert!(VerifyingKey::from_base64("AAAA").is_err());
        assert!(format!("{key:?}").contains("[secret elided]"));
    }
}
