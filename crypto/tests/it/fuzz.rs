//! The short CI run of the crypto fuzz targets: every committed seed of
//! `fuzz/corpus/{envelope,crypto_text}/` replayed through the fuzz targets' own
//! property checks (`fuzz/src/crypto.rs`), plus bounded proptest cases (arbitrary
//! and mutated envelopes, arbitrary text as ids and identities).

use std::path::PathBuf;

use chrono::NaiveDate;
use proptest::prelude::*;
use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord, seal};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::{KeyVersion, RecordKey};
use renkei_crypto::token::{record_id, subject_binding};

// The fuzz targets' own checks; `pub` there because the fuzz crate exports them.
#[path = "../../../fuzz/src/crypto.rs"]
#[allow(
    unreachable_pub,
    reason = "shared with the fuzz crate, where these are its API"
)]
mod checks;

/// The committed seeds of one fuzz target.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn sealed(doc: &str, payload: &[u8]) -> SealedRecord {
    let key = RecordKey::from_bytes([3; 32], KeyVersion::V1);
    let rid = record_id(&key, doc, "checkup.lipids");
    let header = EnvelopeHeader {
        subject_binding: subject_binding(&key, &rid, "st1_abcdefghijklmnopqrstuvwxyz234567"),
        record_id: rid,
        category: "checkup.lipids".into(),
        source: "source:fuzz".into(),
        effective_date: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
        schema_version: 1,
        key_version: KeyVersion::V1,
    };
    seal(&key, header, payload).unwrap()
}

/// The seeds of the `envelope` target: sealed records with small, empty and larger payloads.
fn envelope_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("sealed_small.bin", sealed("doc-1", b"{}").to_bytes()),
        ("sealed_empty.bin", sealed("doc-2", b"").to_bytes()),
        (
            "sealed_bundle.bin",
            sealed("doc-3", &[b'x'; 600]).to_bytes(),
        ),
    ]
}

#[test]
fn envelope_corpus_replays_cleanly() {
    let seeds = corpus("envelope");
    assert!(seeds.len() >= 3, "the envelope corpus is missing");
    let mut parsed = 0;
    for (path, bytes) in &seeds {
        checks::envelope(bytes);
        parsed += usize::from(SealedRecord::from_bytes(bytes).is_ok());
        eprintln!("replayed {}", path.display());
    }
    // Seals use a random nonce, so the seeds are not byte-stable; that they still
    // parse is what shows the format has not drifted.
    assert!(
        parsed >= 3,
        "the sealed seeds no longer parse: rerun write_envelope_seeds"
    );
}

/// Rewrites the envelope seeds (run by hand after a format change).
#[test]
#[ignore = "writes fuzz/corpus/envelope/; run with RENKEI_WRITE_FUZZ_SEEDS=1 after a format change"]
fn write_envelope_seeds() {
    if std::env::var_os("RENKEI_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/envelope");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in envelope_seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn crypto_text_corpus_replays_cleanly() {
    let seeds = corpus("crypto_text");
    assert!(!seeds.is_empty(), "the crypto_text corpus is missing");
    for (path, bytes) in &seeds {
        eprintln!("replaying {}", path.display());
        checks::crypto_text(bytes);
    }
}

#[test]
fn the_checks_catch_what_they_claim_to() {
    // A non-canonical envelope (trailing byte) must be refused, else `envelope` would panic.
    let mut bytes = sealed("doc-1", b"{}").to_bytes();
    bytes.push(0);
    assert!(SealedRecord::from_bytes(&bytes).is_err());
    checks::envelope(&bytes);
    // An identity seed normalizes; its canonical form is idempotent.
    let id = Identity {
        insurer_number: "０６１３１１８６".into(),
        symbol: "１０６－４７".into(),
        number: "9787560".into(),
        birth_date: "19630103".into(),
        sex: Sex::Female,
        branch: Some("２".into()),
    };
    assert!(id.canonical().is_ok());
    checks::identity(&id);
}

/// One mutation of a valid envelope: flip, set, insert, delete, truncate or extend.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0xFF), Just(b' '), Just(b'-'), any::<u8>()]
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1..16usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Extend),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match m {
        Mutation::Flip(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x ^= b;
            }
        }
        Mutation::Set(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x = *b;
            }
        }
        Mutation::Insert(i, v) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i % len;
            let end = (at + n).min(bytes.len());
            if at < end {
                bytes.drain(at..end);
            }
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
        Mutation::Extend(v) => bytes.extend_from_slice(v),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_clean_envelope_errors(data in prop::collection::vec(any::<u8>(), 0..512)) {
        checks::envelope(&data);
        checks::header(&data);
        checks::crypto_text(&data);
    }

    #[test]
    fn mutated_envelopes_are_refused_or_canonical(
        seed in 0..3usize,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = envelope_seeds().swap_remove(seed).1;
        for m in &mutations {
            apply(&mut bytes, m);
        }
        checks::envelope(&bytes);
    }

    #[test]
    fn mutated_compressed_payloads_are_refused_or_read(
        json in prop::collection::vec(any::<u8>(), 0..3000),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = renkei_crypto::payload::pack(renkei_crypto::payload::JSON_LZ4, &json).unwrap();
        prop_assert_eq!(
            renkei_crypto::payload::unpack(renkei_crypto::payload::JSON_LZ4, &bytes).unwrap(),
            json
        );
        for m in &mutations {
            apply(&mut bytes, m);
        }
        checks::payload(&bytes);
    }

    #[test]
    fn tokens_and_base64_from_arbitrary_text(
        s in prop_oneof![
            any::<String>(),
            "(st1_|rec1_|rp1_|sb1_)[a-z2-7A-Z0-9]{30,34}",
            "[A-Za-z0-9+/]{40,112}={0,3}",
        ],
    ) {
        checks::crypto_text(s.as_bytes());
    }

    #[test]
    fn identities_from_arbitrary_text(
        insurer in prop_oneof![any::<String>(), "[0-9０-９ -]{0,10}"],
        symbol in prop_oneof![any::<String>(), "[0-9A-Zａ-ｚ－ー -]{0,8}"],
        number in prop_oneof![any::<String>(), "[0-9０-９]{0,12}"],
        birth in prop_oneof![any::<String>(), "[0-9]{4}[-/]?[0-9]{2}[-/]?[0-9]{2}"],
        branch in proptest::option::of(prop_oneof![any::<String>(), "[0-9０-９]{0,3}"]),
        male in any::<bool>(),
    ) {
        checks::identity(&Identity {
            insurer_number: insurer,
            symbol,
            number,
            birth_date: birth,
            sex: if male { Sex::Male } else { Sex::Female },
            branch,
        });
    }
}
