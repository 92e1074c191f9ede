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

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::CanonicalIdentity;
use crate::keys::{PseudonymKey, RecordKey, TokenKey, hkdf_expand32, hmac_sha256};

use renkei_ids::BODY_BYTES;

pub use renkei_ids::{
    EnrollmentCodeHash, RecipientPseudonym, RecordId, SubjectBinding, SubjectToken, UserRefHash,
};

/// The keyed hash of a normalized enrollment code under a key derived from the
/// source's first record key (which the agent keeps for as long as it runs: record
/// ids depend on it). Without `K_rec` a stolen outbox says nothing about the codes.
pub fn enrollment_code_hash(key: &RecordKey, normalized_code: &str) -> EnrollmentCodeHash {
    let code_key = hkdf_expand32(&key.state().kdf, &[b"renkei enrollment-code v1"]);
    let mut mac = hmac_sha256(&code_key.0);
    update_prefixed(&mut mac, normalized_code.as_bytes());
    EnrollmentCodeHash::from_bytes(&head(mac))
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
    UserRefHash::from_bytes(&head(mac))
}

/// The subject binding of one record: HMAC under a key derived from `K_rec` over the
/// record id and the name the source knows the subject by (`st1_…`, or a PHR app's
/// own `rp1_…`). Unlinkable across records without `K_rec`.
pub fn subject_binding(key: &RecordKey, record_id: &RecordId, subject: &str) -> SubjectBinding {
    let mut mac = key.state().subject_binding_mac.clone();
    update_prefixed(&mut mac, record_id.as_str().as_bytes());
    update_prefixed(&mut mac, subject.as_bytes());
    SubjectBinding::from_bytes(&head(mac))
}

/// The subject token of a canonical identity: `st1_` + base32(HMAC-SHA256(K_tok, identity)).
pub fn subject_token(key: &TokenKey, identity: &CanonicalIdentity) -> SubjectToken {
    let mut mac = key.mac().clone();
    mac.update(identity.canonical_bytes());
    SubjectToken::from_bytes(&head(mac))
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
    RecipientPseudonym::from_bytes(&head(mac))
}

/// The record id of one category of one source document.
pub fn record_id(key: &RecordKey, source_document_id: &str, category: &str) -> RecordId {
    let mut mac = key.state().record_id_mac.clone();
    update_prefixed(&mut mac, source_document_id.as_bytes());
    update_prefixed(&mut mac, category.as_bytes());
    RecordId::from_bytes(&head(mac))
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

/// The value of the first 160 bits of the MAC ([`renkei_ids`] writes them as base32).
fn head(mac: Hmac<Sha256>) -> [u8; BODY_BYTES] {
    let digest: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = [0u8; BODY_BYTES];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = d;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, Sex};
    use crate::keys::KeyVersion;
    use data_encoding::BASE32_NOPAD;

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
