//! Subject tokens, per-recipient pseudonyms, record ids and the keyed hashes kept
//! instead of secrets: keyed HMAC-SHA256 values written as a tag plus 32 lowercase
//! base32 characters.
//!
//! All are `<tag>` followed by the first 32 characters of the RFC 4648
//! base32 encoding (alphabet `a–z2–7`, lower case, no padding) of an
//! HMAC-SHA256 output, that is its first 160 bits:
//!
//! | type | tag | HMAC key | HMAC message |
//! |---|---|---|---|
//! | [`SubjectToken`] | `st1_` | `K_tok` | [`CanonicalIdentity::canonical_bytes`] |
//! | [`RecipientPseudonym`] | `rp1_` | `K_hub_pseudonym` | `len(recipient) ‖ recipient ‖ subject token (36 ASCII bytes)` |
//! | [`RecordId`] | `rec1_` | `HKDF-SHA256(K_rec, info = "renkei record-id v1")` | `len(doc id) ‖ doc id ‖ len(category) ‖ category` |
//! | [`EnrollmentCodeHash`] | `ec1_` | `HKDF-SHA256(K_rec, info = "renkei enrollment-code v1")` | `len(code) ‖ normalized code` |
//! | [`UserRefHash`] | `ur1_` | `HMAC-SHA256(pepper, "renkei user-ref v1")` | `len(app) ‖ app ‖ len(user_ref) ‖ user_ref` |
//!
//! Lengths are 8-byte big-endian byte counts; strings are UTF-8. The keys keep
//! a pre-keyed HMAC state that is cloned per value, so a token costs two
//! SHA-256 compressions and one allocation.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::identity::CanonicalIdentity;
use crate::keys::{PseudonymKey, RecordKey, TokenKey, hkdf_expand32, hmac_sha256};

/// Number of base32 characters after the tag (160 bits).
const BODY_CHARS: usize = 32;
/// Number of HMAC output bytes those characters encode.
const BODY_BYTES: usize = 20;

macro_rules! tagged_id {
    ($(#[$doc:meta])* $name:ident, $tag:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The tag every value starts with.
            pub const TAG: &'static str = $tag;
            /// Length of every value in bytes.
            pub const LEN: usize = $tag.len() + BODY_CHARS;

            /// Parses and validates a value: the tag, then 32 characters `a–z2–7`.
            pub fn parse(s: &str) -> Result<Self> {
                validate(s, $tag, $kind)?;
                Ok($name(s.to_owned()))
            }

            /// The value as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            fn from_mac(mac: Hmac<Sha256>) -> Self {
                $name(encode($tag, mac))
            }

            /// The 20 bytes the value's 32 base32 characters encode (a compact map key).
            pub fn to_bytes(&self) -> [u8; BODY_BYTES] {
                decode_body(self.0.as_bytes().get($tag.len()..).unwrap_or_default())
            }

            /// The value whose characters encode `bytes` ([`Self::to_bytes`] undone).
            pub fn from_bytes(bytes: &[u8; BODY_BYTES]) -> Self {
                let mut out = String::with_capacity(Self::LEN);
                out.push_str($tag);
                BASE32_NOPAD.encode_append(bytes, &mut out);
                out.make_ascii_lowercase();
                $name(out)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                validate(&text, $tag, $kind).map_err(serde::de::Error::custom)?;
                Ok($name(text))
            }
        }
    };
}

tagged_id!(
    /// A resident's subject token, `st1_…`: the only name of a resident outside the LGWAN segment.
    SubjectToken, "st1_", "subject token"
);

tagged_id!(
    /// A per-recipient pseudonym of a subject, `rp1_…`: what a recipient sees instead of the token.
    RecipientPseudonym, "rp1_", "recipient pseudonym"
);

tagged_id!(
    /// A deterministic record id, `rec1_…`, so that re-importing a document is idempotent.
    RecordId, "rec1_", "record id"
);

tagged_id!(
    /// A per-record commitment to the subject, `sb1_…`: what the envelope's AAD binds
    /// instead of the subject token, so that a recipient who opens records learns no key
    /// it could join on with another recipient (DESIGN.md step 9).
    SubjectBinding, "sb1_", "subject binding"
);

tagged_id!(
    /// What an LGWAN agent keeps of a one-time enrollment code, `ec1_…`: the code itself
    /// is printed once for the resident and never stored.
    EnrollmentCodeHash, "ec1_", "enrollment code hash"
);

tagged_id!(
    /// What the hub keeps of a PHR app's reference for its user, `ur1_…`.
    UserRefHash, "ur1_", "user reference hash"
);

/// The keyed hash of a normalized enrollment code under a key derived from the
/// source's first record key (which the agent keeps for as long as it runs: record
/// ids depend on it). Without `K_rec` a stolen outbox says nothing about the codes.
pub fn enrollment_code_hash(key: &RecordKey, normalized_code: &str) -> EnrollmentCodeHash {
    let code_key = hkdf_expand32(&key.state().kdf, &[b"renkei enrollment-code v1"]);
    let mut mac = hmac_sha256(&code_key.0);
    update_prefixed(&mut mac, normalized_code.as_bytes());
    EnrollmentCodeHash::from_mac(mac)
}

/// The keyed hash of a PHR app's user reference, under a key derived from the hub's
/// secret `pepper` (the receipt pepper: the derivation keeps the two uses apart).
/// Bound to the app, so two apps' equal references do not match.
pub fn user_ref_hash(pepper: &[u8], app: &str, user_ref: &str) -> UserRefHash {
    let mut derive = hmac_sha256(pepper);
    derive.update(b"renkei user-ref v1");
    let key = zeroize::Zeroizing::new(<[u8; 32]>::from(derive.finalize().into_bytes()));
    let mut mac = hmac_sha256(key.as_slice());
    update_prefixed(&mut mac, app.as_bytes());
    update_prefixed(&mut mac, user_ref.as_bytes());
    UserRefHash::from_mac(mac)
}

/// The subject binding of one record: HMAC under a key derived from `K_rec` over the
/// record id and the name the source knows the subject by (`st1_…`, or a PHR app's
/// own `rp1_…`). Unlinkable across records without `K_rec`.
pub fn subject_binding(key: &RecordKey, record_id: &RecordId, subject: &str) -> SubjectBinding {
    let mut mac = key.state().subject_binding_mac.clone();
    update_prefixed(&mut mac, record_id.as_str().as_bytes());
    update_prefixed(&mut mac, subject.as_bytes());
    SubjectBinding::from_mac(mac)
}

/// The subject token of a canonical identity: `st1_` + base32(HMAC-SHA256(K_tok, identity)).
pub fn subject_token(key: &TokenKey, identity: &CanonicalIdentity) -> SubjectToken {
    let mut mac = key.mac().clone();
    mac.update(identity.canonical_bytes());
    SubjectToken::from_mac(mac)
}

/// The pseudonym under which `recipient` (a participant id) sees `subject`.
pub fn recipient_pseudonym(
    key: &PseudonymKey,
    recipient: &str,
    subject: &SubjectToken,
) -> RecipientPseudonym {
    let mut mac = key.mac().clone();
    update_prefixed(&mut mac, recipient.as_bytes());
    mac.update(subject.as_str().as_bytes());
    RecipientPseudonym::from_mac(mac)
}

/// The record id of one category of one source document.
pub fn record_id(key: &RecordKey, source_document_id: &str, category: &str) -> RecordId {
    let mut mac = key.state().record_id_mac.clone();
    update_prefixed(&mut mac, source_document_id.as_bytes());
    update_prefixed(&mut mac, category.as_bytes());
    RecordId::from_mac(mac)
}

/// The id under which `recipient` receives its own copy of a record
/// (docs/authorization.md): the record-id MAC over the original id and a "category"
/// `for <recipient>`, which no catalog category can equal (categories have no space).
/// Deterministic, so answering the same grant again names the same copy; unlinkable to
/// the original id and to other recipients' copies without `K_rec`.
pub fn recipient_record_id(key: &RecordKey, record: &RecordId, recipient: &str) -> RecordId {
    record_id(key, record.as_str(), &format!("for {recipient}"))
}

/// Feeds an 8-byte big-endian length, then the bytes.
fn update_prefixed(mac: &mut Hmac<Sha256>, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

/// The bytes of a validated body (32 characters of `a–z2–7`, 5 bits each).
fn decode_body(body: &[u8]) -> [u8; BODY_BYTES] {
    let mut out = [0u8; BODY_BYTES];
    let (mut acc, mut bits, mut at) = (0u64, 0u32, 0usize);
    for &c in body {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => 0,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            if let Some(slot) = out.get_mut(at) {
                *slot = (acc >> bits) as u8;
            }
            at += 1;
        }
    }
    out
}

/// `tag` + the first 32 lowercase base32 characters of the MAC.
fn encode(tag: &str, mac: Hmac<Sha256>) -> String {
    let digest: [u8; 32] = mac.finalize().into_bytes().into();
    let (head, _) = digest.split_at(BODY_BYTES);
    let mut out = String::with_capacity(tag.len() + BODY_CHARS);
    out.push_str(tag);
    BASE32_NOPAD.encode_append(head, &mut out);
    out.make_ascii_lowercase();
    out
}

fn validate(s: &str, tag: &str, kind: &'static str) -> Result<()> {
    let error = |reason| Error::Token {
        kind,
        value: crate::error::shorten(s),
        reason,
    };
    let body = s.strip_prefix(tag).ok_or_else(|| error(tag_reason(tag)))?;
    if body.len() != BODY_CHARS {
        return Err(error("expected 32 base32 characters after the tag"));
    }
    if !body.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')) {
        return Err(error(
            "expected only the characters `a-z` and `2-7` after the tag",
        ));
    }
    Ok(())
}

fn tag_reason(tag: &str) -> &'static str {
    match tag {
        "st1_" => "expected the prefix `st1_`",
        "rp1_" => "expected the prefix `rp1_`",
        "sb1_" => "expected the prefix `sb1_`",
        "ec1_" => "expected the prefix `ec1_`",
        "ur1_" => "expected the prefix `ur1_`",
        _ => "expected the prefix `rec1_`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, Sex};
    use crate::keys::KeyVersion;

    #[test]
    fn a_token_round_trips_through_its_bytes() {
        for i in 0..200u32 {
            let mut bytes = [0u8; BODY_BYTES];
            for (k, b) in bytes.iter_mut().enumerate() {
                *b = (i.wrapping_mul(2_654_435_761) >> (k % 4 * 8)) as u8 ^ k as u8;
            }
            let t = SubjectToken::from_bytes(&bytes);
            assert_eq!(SubjectToken::parse(t.as_str()).unwrap(), t);
            assert_eq!(t.to_bytes(), bytes);
        }
        let t = SubjectToken::parse("st1_abcdefghijklmnopqrstuvwxyz234567").unwrap();
        assert_eq!(SubjectToken::from_bytes(&t.to_bytes()), t);
        assert_eq!(
            SubjectToken::from_bytes(&[0; BODY_BYTES]).as_str(),
            "st1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
    }

    fn canonical(number: &str) -> CanonicalIdentity {
        Identity {
            insurer_number: "01380057".into(),
            symbol: "12".into(),
            number: number.into(),
            birth_date: "1980-04-01".into(),
            sex: Sex::Male,
            branch: None,
        }
        .canonical()
        .unwrap()
    }

    #[test]
    fn subject_token_is_hmac_of_canonical_bytes() {
        let key = TokenKey::from_bytes([7; 32], KeyVersion::V1);
        let id = canonical("345");
        let token = subject_token(&key, &id);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(id.canonical_bytes());
        let digest = mac.finalize().into_bytes();
        let expected = format!("st1_{}", BASE32_NOPAD.encode(&digest).to_lowercase());
        assert_eq!(token.as_str(), &expected[..36]);
        assert_eq!(SubjectToken::parse(token.as_str()).unwrap(), token);
        assert_ne!(subject_token(&key, &canonical("346")), token);
        let other_key = TokenKey::from_bytes([8; 32], KeyVersion::V1);
        assert_ne!(subject_token(&other_key, &id), token);
    }

    #[test]
    fn enrollment_code_and_user_ref_hashes_are_the_documented_hmacs() {
        let key = RecordKey::from_bytes([9; 32], KeyVersion::V1);
        let code = "K7QM3XWA9PZD";
        let hash = enrollment_code_hash(&key, code);
        let mut code_key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, &[9; 32])
            .expand(b"renkei enrollment-code v1", &mut code_key)
            .unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&code_key).unwrap();
        mac.update(&12u64.to_be_bytes());
        mac.update(code.as_bytes());
        let expected = BASE32_NOPAD
            .encode(&mac.finalize().into_bytes())
            .to_lowercase();
        assert_eq!(hash.as_str(), format!("ec1_{}", &expected[..32]));
        assert_eq!(EnrollmentCodeHash::parse(hash.as_str()).unwrap(), hash);
        assert_ne!(enrollment_code_hash(&key, "K7QM3XWA9PZE"), hash);
        let other = RecordKey::from_bytes([8; 32], KeyVersion::V1);
        assert_ne!(enrollment_code_hash(&other, code), hash);

        let pepper = [3u8; 32];
        let r = user_ref_hash(&pepper, "phr:asmile", "user-1");
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&pepper).unwrap();
        derive.update(b"renkei user-ref v1");
        let k = derive.finalize().into_bytes();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&k).unwrap();
        mac.update(&10u64.to_be_bytes());
        mac.update(b"phr:asmile");
        mac.update(&6u64.to_be_bytes());
        mac.update(b"user-1");
        let expected = BASE32_NOPAD
            .encode(&mac.finalize().into_bytes())
            .to_lowercase();
        assert_eq!(r.as_str(), format!("ur1_{}", &expected[..32]));
        assert_ne!(user_ref_hash(&pepper, "phr:other", "user-1"), r);
        assert_ne!(user_ref_hash(&[4u8; 32], "phr:asmile", "user-1"), r);
        assert!(UserRefHash::parse(SubjectToken::TAG).is_err());
    }

    #[test]
    fn parse_rejects_malformed_values() {
        let good = format!("st1_{}", "a".repeat(32));
        assert!(SubjectToken::parse(&good).is_ok());
        let cases = [
            (
                format!("rp1_{}", "a".repeat(32)),
                "expected the prefix `st1_`",
            ),
            (format!("st1_{}", "a".repeat(31)), "expected 32 base32"),
            (format!("st1_{}", "a".repeat(33)), "expected 32 base32"),
            (format!("st1_{}1", "a".repeat(31)), "`a-z` and `2-7`"),
            (format!("st1_{}A", "a".repeat(31)), "`a-z` and `2-7`"),
            (format!("ST1_{}", "a".repeat(32)), "expected the prefix"),
        ];
        for (bad, reason) in cases {
            let err = SubjectToken::parse(&bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid subject token `"), "{err}");
            assert!(err.contains(reason), "{bad}: {err}");
        }
        assert!(RecordId::parse(&format!("rec1_{}", "7".repeat(32))).is_ok());
        assert!(RecipientPseudonym::parse(&good).is_err());
    }

    #[test]
    fn pseudonyms_differ_per_recipient_and_subject() {
        let key = PseudonymKey::generate(KeyVersion::V1);
        let tok = TokenKey::generate(KeyVersion::V1);
        let (a, b) = (
            subject_token(&tok, &canonical("1")),
            subject_token(&tok, &canonical("2")),
        );
        let p = recipient_pseudonym(&key, "phr:asmile", &a);
        assert_eq!(p, recipient_pseudonym(&key, "phr:asmile", &a));
        assert_ne!(p, recipient_pseudonym(&key, "clinic:kita", &a));
        assert_ne!(p, recipient_pseudonym(&key, "phr:asmile", &b));
        assert!(p.as_str().starts_with("rp1_") && p.as_str().len() == RecipientPseudonym::LEN);
    }

    #[test]
    fn record_ids_are_deterministic_and_unambiguous() {
        let key = RecordKey::from_bytes([3; 32], KeyVersion::V1);
        let id = record_id(&key, "doc-1", "checkup.body");
        assert_eq!(id, record_id(&key, "doc-1", "checkup.body"));
        assert_ne!(id, record_id(&key, "doc-1", "checkup.lipids"));
        // Length prefixes keep the boundary between the two strings.
        assert_ne!(record_id(&key, "ab", "c"), record_id(&key, "a", "bc"));
        assert_eq!(id.as_str().len(), RecordId::LEN);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RecordId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<RecordId>(r#""rec1_xyz""#).is_err());
    }
}
