//! Resident receipts: the consent's terms, a one-time revocation code, and a signature hook.
//!
//! The code is 160 random bits in Crockford base32, printed as eight groups of four
//! (`K7QM-3XWA-…`). Only a keyed hash of it (HMAC-SHA256 with the caller's "receipt
//! pepper", or plain SHA-256 when the pepper is empty) is stored.

use chrono::{DateTime, Utc};
use data_encoding::{Encoding, Specification};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::model::{Consent, ConsentTerms};
use crate::{Error, Result};

/// Crockford base32 alphabet (no I, L, O, U).
const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Bytes of entropy in a code (160 bits).
const CODE_BYTES: usize = 20;
/// Characters in a normalized code.
const CODE_CHARS: usize = 32;
/// Characters per printed group.
const GROUP: usize = 4;

fn crockford() -> Result<Encoding> {
    let mut spec = Specification::new();
    spec.symbols.push_str(CROCKFORD);
    spec.encoding()
        .map_err(|_| Error::MalformedCode("encoding table"))
}

/// A one-time revocation code. The secret is zeroized on drop and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct RevocationCode {
    bytes: [u8; CODE_BYTES],
}

impl std::fmt::Debug for RevocationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevocationCode([secret elided])")
    }
}

impl RevocationCode {
    /// A fresh code of 160 bits from the operating system's RNG.
    pub fn generate() -> RevocationCode {
        let mut bytes = [0u8; CODE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        RevocationCode { bytes }
    }

    /// Parses a typed code: case-insensitive, hyphens and spaces anywhere are ignored,
    /// and the Crockford confusables O→0, I and L→1 are accepted.
    pub fn parse(typed: &str) -> Result<RevocationCode> {
        let mut normal = Zeroizing::new(String::with_capacity(CODE_CHARS));
        for c in typed.chars() {
            match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' | '\u{3000}' => {}
                'O' => normal.push('0'),
                'I' | 'L' => normal.push('1'),
                u if CROCKFORD.contains(u) => normal.push(u),
                _ => return Err(Error::MalformedCode("unexpected character")),
            }
        }
        if normal.len() != CODE_CHARS {
            return Err(Error::MalformedCode("expected 32 characters"));
        }
        let decoded = Zeroizing::new(
            crockford()?
                .decode(normal.as_bytes())
                .map_err(|_| Error::MalformedCode("not crockford base32"))?,
        );
        let mut bytes = [0u8; CODE_BYTES];
        if decoded.len() != CODE_BYTES {
            return Err(Error::MalformedCode("wrong length"));
        }
        bytes.copy_from_slice(&decoded);
        Ok(RevocationCode { bytes })
    }

    /// The code as a person types it: eight groups of four joined by `-`.
    pub fn grouped(&self) -> Result<Zeroizing<String>> {
        let plain = Zeroizing::new(crockford()?.encode(&self.bytes));
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            out.push(c);
        }
        Ok(out)
    }

    /// The stored form: hex HMAC-SHA256(pepper, normalized code), or hex SHA-256 when
    /// `pepper` is empty. The normalized code is the 32 upper-case characters.
    pub fn hash(&self, pepper: &[u8]) -> Result<String> {
        let normal = Zeroizing::new(crockford()?.encode(&self.bytes));
        if pepper.is_empty() {
            return Ok(hex::encode(Sha256::digest(normal.as_bytes())));
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pepper)
            .map_err(|_| Error::MalformedCode("pepper rejected"))?;
        mac.update(normal.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }
}

impl Serialize for RevocationCode {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let g = self.grouped().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&g)
    }
}

impl<'de> Deserialize<'de> for RevocationCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        RevocationCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Signs a receipt's canonical bytes (the hub's key lives with the caller).
pub trait ReceiptSigner {
    /// Returns the signature, in whatever text form the verifier expects.
    fn sign(&self, bytes: &[u8]) -> String;
}

/// Verifies a signature made by a [`ReceiptSigner`].
pub trait ReceiptVerifier {
    /// Whether `signature` is valid over `bytes`.
    fn verify(&self, bytes: &[u8], signature: &str) -> bool;
}

/// The terms a receipt records: the consent's terms at the version it was issued for,
/// and the consent it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptTerms {
    /// What the resident agreed to.
    #[serde(flatten)]
    pub terms: ConsentTerms,
    /// The consent this one replaces, if any.
    pub supersedes: Option<String>,
}

impl ReceiptTerms {
    fn of(c: &Consent) -> ReceiptTerms {
        ReceiptTerms {
            terms: c.terms.clone(),
            supersedes: c.supersedes.clone(),
        }
    }
}

/// A receipt handed to the resident on grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The consent id.
    pub consent_id: String,
    /// The consent version the receipt is for.
    pub version: u32,
    /// When the receipt was issued.
    pub issued_at: DateTime<Utc>,
    /// The terms.
    pub terms: ReceiptTerms,
    /// The one-time revocation code; only in the copy handed to the resident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_code: Option<RevocationCode>,
    /// The hub's signature over [`Receipt::signing_bytes`], once signed.
    #[serde(default)]
    pub signature: Option<String>,
}

impl Receipt {
    /// A receipt for `consent` carrying `code`.
    pub fn new(consent: &Consent, code: RevocationCode, now: DateTime<Utc>) -> Receipt {
        Receipt {
            consent_id: consent.id.clone(),
            version: consent.version,
            issued_at: now,
            terms: ReceiptTerms::of(consent),
            revocation_code: Some(code),
            signature: None,
        }
    }

    /// The canonical bytes that are signed: the JSON of the receipt without the
    /// signature and without the code, so a copy with the code removed still verifies.
    pub fn signing_bytes(&self) -> Result<Vec<u8>> {
        let bare = Receipt {
            revocation_code: None,
            signature: None,
            ..self.clone()
        };
        Ok(serde_json::to_vec(&bare)?)
    }

    /// Signs the receipt with `signer`, replacing any previous signature.
    pub fn sign(&mut self, signer: &dyn ReceiptSigner) -> Result<()> {
        let bytes = self.signing_bytes()?;
        self.signature = Some(signer.sign(&bytes));
        Ok(())
    }

    /// Checks the signature with `verifier`.
    pub fn verify_signature(&self, verifier: &dyn ReceiptVerifier) -> Result<()> {
        let sig = self
            .signature
            .as_deref()
            .ok_or_else(|| Error::UnsignedReceipt(self.consent_id.clone()))?;
        if verifier.verify(&self.signing_bytes()?, sig) {
            Ok(())
        } else {
            Err(Error::BadSignature(self.consent_id.clone()))
        }
    }

    /// Checks that the receipt matches `consent` as stored (any version of the same id
    /// carries the same terms; status may have moved on).
    pub fn verify_against(&self, consent: &Consent) -> Result<()> {
        if consent.id != self.consent_id {
            return Err(Error::ReceiptMismatch(
                self.consent_id.clone(),
                "consent id",
            ));
        }
        if ReceiptTerms::of(consent) != self.terms {
            return Err(Error::ReceiptMismatch(self.consent_id.clone(), "terms"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_round_trips_through_typing_variants() {
        let code = RevocationCode::generate();
        let g = code.grouped().unwrap();
        assert_eq!(g.len(), 39);
        assert_eq!(g.split('-').count(), 8);
        assert!(g.split('-').all(|p| p.len() == 4));
        let lower = g.to_lowercase();
        assert_eq!(RevocationCode::parse(&lower).unwrap(), code);
        let spaced: String = g
            .chars()
            .filter(|c| *c != '-')
            .flat_map(|c| [c, ' '])
            .collect();
        assert_eq!(RevocationCode::parse(&spaced).unwrap(), code);
        let confused = g.replace('0', "o").replace('1', "l");
        assert_eq!(RevocationCode::parse(&confused).unwrap(), code);
        let extra = format!("--{}--", g.as_str());
        assert_eq!(RevocationCode::parse(&extra).unwrap(), code);
    }

    #[test]
    fn bad_codes_are_rejected_without_echo() {
        let err = RevocationCode::parse("ABCD-EFGH").unwrap_err().to_string();
        assert!(!err.contains("ABCD"));
        assert!(RevocationCode::parse(&"U".repeat(32)).is_err());
        assert!(RevocationCode::parse(&"0".repeat(33)).is_err());
    }

    #[test]
    fn codes_differ_and_hash_depends_on_pepper() {
        let a = RevocationCode::generate();
        let b = RevocationCode::generate();
        assert_ne!(a, b);
        assert_ne!(a.hash(b"").unwrap(), a.hash(b"pepper").unwrap());
        assert_ne!(a.hash(b"pepper").unwrap(), b.hash(b"pepper").unwrap());
        assert_eq!(
            a.hash(b"pepper").unwrap(),
            RevocationCode::parse(&a.grouped().unwrap())
                .unwrap()
                .hash(b"pepper")
                .unwrap()
        );
        assert_eq!(format!("{a:?}"), "RevocationCode([secret elided])");
    }

    #[test]
    fn known_answer_all_zero_code() {
        let zero = RevocationCode {
            bytes: [0; CODE_BYTES],
        };
        assert_eq!(
            zero.grouped().unwrap().as_str(),
            "0000-0000-0000-0000-0000-0000-0000-0000"
        );
        let ff = RevocationCode {
            bytes: [0xff; CODE_BYTES],
        };
        assert_eq!(
            ff.grouped().unwrap().as_str(),
            "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ"
        );
        // SHA-256 of 32 ASCII zeros.
        assert_eq!(
            zero.hash(b"").unwrap(),
            hex::encode(Sha256::digest([b'0'; 32]))
        );
    }
}
