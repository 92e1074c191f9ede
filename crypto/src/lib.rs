//! Renkei's crypto core: everything that turns identities into tokens and
//! health records into ciphertext, and the mTLS identity of participants.
//!
//! See `../shared/DESIGN.md` steps 3, 4, 8 and 9 and `docs/envelope.md`.

/// (De)serializes a type as its base64 text (`to_base64` / `from_base64`).
macro_rules! serde_as_base64 {
    ($name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_base64())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::from_base64(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod consent_statement;
pub mod envelope;
pub mod error;
pub mod grant;
pub mod identity;
pub mod keys;
pub mod participant;
pub mod payload;
pub mod sign;
pub mod statement;
pub mod tlog;
pub mod tls;
pub mod token;

pub use error::{Error, Result};
