//! The tagged values: a tag (`st1_`, `rp1_`, `rec1_`, `sb1_`, `ec1_`, `ur1_`) then 32
//! lowercase base32 characters (RFC 4648 alphabet `a–z2–7`, no padding), 160 bits.
//! `renkei-crypto` makes them from keyed HMACs (`renkei_crypto::token`); here they are
//! only parsed, printed and turned into their 20 bytes and back.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;

use crate::{Error, Result};

/// Number of base32 characters after the tag (160 bits).
const BODY_CHARS: usize = 32;
/// Number of bytes those characters encode.
pub const BODY_BYTES: usize = 20;

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

fn validate(s: &str, tag: &str, kind: &'static str) -> Result<()> {
    let error = |reason| Error::Token {
        kind,
        value: crate::shorten(s),
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

    #[test]
    fn values_are_checked_by_tag_length_and_alphabet() {
        assert!(SubjectToken::parse("st1_abcdefghijklmnopqrstuvwxyz234567").is_ok());
        for bad in [
            "st1_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
            "st1_abcdefghijklmnopqrstuvwxyz23456",
            "st1_abcdefghijklmnopqrstuvwxyz234561",
            "st2_abcdefghijklmnopqrstuvwxyz234567",
            "rp1_abcdefghijklmnopqrstuvwxyz234567",
        ] {
            assert!(SubjectToken::parse(bad).is_err(), "{bad}");
        }
        assert!(RecipientPseudonym::parse("rp1_abcdefghijklmnopqrstuvwxyz234567").is_ok());
        assert!(serde_json::from_str::<RecordId>("\"rec1_x\"").is_err());
    }
}
