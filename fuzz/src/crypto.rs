//! Properties of `renkei-crypto`'s parsers on arbitrary input: the sealed-record
//! binary form, the envelope header, key grants, tagged ids and identities. None may
//! panic; whatever one accepts is in canonical form; every error is a short message.
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/`) and `crypto/tests/it/fuzz.rs`.

use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord};
use renkei_crypto::grant::{GrantOpener, KeyGrant, RecipientPublicKey, RecipientSecretKey};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::KeyVersion;
use renkei_crypto::payload;
use renkei_crypto::token::{RecipientPseudonym, RecordId, SubjectBinding, SubjectToken};

/// Longest error message accepted: errors quote at most 80 characters of input.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Length of the binary form's prefix: magic, format version, header length.
const PREFIX_LEN: usize = 4 + 1 + 4;

/// An error is a clean value: a non-empty message of bounded size.
pub fn clean_error(what: &str, error: &renkei_crypto::Error) {
    let message = error.to_string();
    assert!(!message.is_empty(), "{what}: empty error message");
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{what}: error message of {} bytes echoes its input",
        message.len()
    );
}

/// `SealedRecord::from_bytes` and `EnvelopeHeader::decode` on arbitrary bytes: what
/// parses re-encodes to exactly its input, with a valid header and a full tag.
pub fn envelope(data: &[u8]) {
    match SealedRecord::from_bytes(data) {
        Ok(record) => {
            assert_eq!(
                record.to_bytes(),
                data,
                "a parsed sealed record is not in canonical form"
            );
            assert!(
                record.ciphertext().len() >= 16,
                "ciphertext shorter than the tag"
            );
            if let Err(e) = record.header().validate() {
                panic!("a parsed sealed record has an invalid header: {e}");
            }
        }
        Err(e) => clean_error("sealed record", &e),
    }
    // The header parser alone, on the whole input and on what follows the prefix.
    for bytes in [data, data.get(PREFIX_LEN..).unwrap_or_default()] {
        header(bytes);
    }
}

/// `EnvelopeHeader::decode`: accepted headers are valid and canonical.
pub fn header(bytes: &[u8]) {
    match EnvelopeHeader::decode(bytes) {
        Ok(header) => {
            assert_eq!(header.encode(), bytes, "a decoded header is not canonical");
            if let Err(e) = header.validate() {
                panic!("a decoded header does not validate: {e}");
            }
        }
        Err(e) => clean_error("envelope header", &e),
    }
}

/// Whether `s` is `tag` followed by exactly 32 characters `a–z2–7`.
fn is_tagged_id(s: &str, tag: &str) -> bool {
    s.strip_prefix(tag).is_some_and(|body| {
        body.len() == 32 && body.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
    })
}

macro_rules! check_tagged {
    ($ty:ty, $s:expr) => {{
        let s: &str = $s;
        match <$ty>::parse(s) {
            Ok(v) => {
                assert_eq!(v.as_str(), s, "{} changed its input", stringify!($ty));
                assert!(
                    is_tagged_id(s, <$ty>::TAG),
                    "{} accepted `{s}`",
                    stringify!($ty)
                );
            }
            Err(e) => {
                assert!(
                    !is_tagged_id(s, <$ty>::TAG),
                    "{} refused a well-formed value: {e}",
                    stringify!($ty)
                );
                clean_error(stringify!($ty), &renkei_crypto::Error::from(e));
            }
        }
    }};
}

/// `payload::unpack` of every schema on arbitrary bytes (an opened payload a source
/// sealed): an error or JSON within the limit, never a panic; what schema 2 accepts
/// packs and unpacks again to the same JSON.
pub fn payload(data: &[u8]) {
    for schema in [payload::JSON, payload::JSON_LZ4, 3] {
        match payload::unpack(schema, data) {
            Ok(json) => {
                assert!(json.len() <= payload::MAX_JSON, "payload over the limit");
                assert_ne!(schema, 3, "an unknown schema was read");
                let again = payload::pack(schema, &json).map(|p| payload::unpack(schema, &p));
                match again {
                    Ok(Ok(back)) => assert_eq!(back, json, "schema {schema} does not round-trip"),
                    _ => panic!("schema {schema}: accepted JSON does not pack again"),
                }
            }
            Err(e) => clean_error("payload", &e),
        }
    }
}

/// Tagged ids, key grants, public keys and identities from one input: the bytes as a
/// key grant, the (lossy UTF-8) text as a whole and line by line as ids and base64,
/// and the first six lines as an identity (insurer, symbol, number, birth, sex, branch).
pub fn crypto_text(data: &[u8]) {
    payload(data);
    match KeyGrant::from_bytes(data) {
        Ok(grant) => {
            assert_eq!(grant.to_bytes().as_slice(), data, "key grant bytes changed");
            // Opening arbitrary bytes is an error, never a panic (and no key is kept).
            let key = RecipientSecretKey::generate(KeyVersion::V1);
            let id = RecordId::parse("rec1_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").ok();
            if let Some(id) = id {
                match GrantOpener::new(&key, "phr:fuzz").open(&id, &grant) {
                    Ok(_) => panic!("a made-up key grant opened"),
                    Err(e) => clean_error("key grant open", &e),
                }
            }
        }
        Err(e) => {
            assert!(
                data.len() != KeyGrant::LEN_V2 && data.len() != KeyGrant::LEN_V1,
                "a key grant of a valid length was refused"
            );
            clean_error("key grant", &e);
        }
    }
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    for s in std::iter::once(text.as_ref()).chain(lines.iter().copied()) {
        check_tagged!(SubjectToken, s);
        check_tagged!(RecordId, s);
        check_tagged!(RecipientPseudonym, s);
        check_tagged!(SubjectBinding, s);
        match KeyGrant::from_base64(s) {
            Ok(grant) => assert_eq!(grant.to_base64(), s, "non-canonical base64 key grant"),
            Err(e) => clean_error("base64 key grant", &e),
        }
        match RecipientPublicKey::from_base64(s) {
            Ok(key) => assert_eq!(key.to_base64(), s, "non-canonical base64 public key"),
            Err(e) => clean_error("base64 public key", &e),
        }
    }
    let field = |i: usize| lines.get(i).copied().unwrap_or_default().to_owned();
    let sex = field(4).parse().unwrap_or(if data.len() % 2 == 0 {
        Sex::Male
    } else {
        Sex::Female
    });
    identity(&Identity {
        insurer_number: field(0),
        symbol: field(1),
        number: field(2),
        birth_date: field(3),
        sex,
        branch: lines.get(5).map(|s| (*s).to_owned()),
    });
}

/// `Identity::canonical` and `branch`: never panic, and normalizing a canonical
/// identity again gives the same canonical bytes.
pub fn identity(id: &Identity) {
    match id.canonical() {
        Ok(canonical) => {
            let again = Identity {
                insurer_number: canonical.insurer_number().to_owned(),
                symbol: canonical.symbol().to_owned(),
                number: canonical.number().to_owned(),
                birth_date: canonical.birth_date().format("%Y-%m-%d").to_string(),
                sex: canonical.sex(),
                branch: None,
            };
            match again.canonical() {
                Ok(c2) => assert_eq!(
                    c2.canonical_bytes(),
                    canonical.canonical_bytes(),
                    "normalization is not idempotent"
                ),
                Err(e) => panic!("a canonical identity does not normalize again: {e}"),
            }
        }
        Err(e) => clean_error("identity", &e),
    }
    match id.branch() {
        Ok(Some(b)) => assert!(
            b.len() == 2 && b.bytes().all(|c| c.is_ascii_digit()),
            "branch `{b}` is not two digits"
        ),
        Ok(None) => {}
        Err(e) => clean_error("branch", &e),
    }
}
