//! Property tests of identity normalization: the forms staff may type for
//! the same person give the same token, different people different tokens.

use proptest::prelude::*;
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::keys::{KeyVersion, TokenKey};
use renkei_crypto::token::{SubjectToken, subject_token};

/// Full-width form of ASCII digits and letters (U+FF10.., U+FF21..).
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' | 'A'..='Z' | 'a'..='z' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap(),
            '-' => '－',
            other => other,
        })
        .collect()
}

/// Inserts separators staff commonly type: spaces, ideographic spaces, dashes.
fn with_separators(s: &str, seps: &[usize]) -> String {
    const SEPARATORS: [&str; 6] = [" ", "\u{3000}", "-", "ー", "‐", "−"];
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if let Some(&k) = seps.get(i) {
            if k < SEPARATORS.len() {
                out.push_str(SEPARATORS[k]);
            }
        }
        out.push(c);
    }
    out
}

fn token(key: &TokenKey, id: &Identity) -> SubjectToken {
    subject_token(key, &id.canonical().unwrap())
}

#[derive(Debug, Clone)]
struct Person {
    insurer: String,
    symbol: String,
    number: String,
    birth: (i32, u32, u32),
    male: bool,
}

fn person() -> impl Strategy<Value = Person> {
    (
        prop_oneof!["[0-9]{6}", "[0-9]{8}"],
        "[0-9A-Z]{0,6}",
        "[0-9]{1,10}",
        (1900i32..2024, 1u32..=12, 1u32..=28),
        any::<bool>(),
    )
        .prop_map(|(insurer, symbol, number, birth, male)| Person {
            insurer,
            symbol,
            number,
            birth,
            male,
        })
}

fn typed(p: &Person, transform: impl Fn(&str) -> String) -> Identity {
    let (y, m, d) = p.birth;
    Identity {
        insurer_number: transform(&p.insurer),
        symbol: transform(&p.symbol),
        number: transform(&p.number),
        birth_date: transform(&format!("{y:04}-{m:02}-{d:02}")),
        sex: if p.male { Sex::Male } else { Sex::Female },
        branch: None,
    }
}

fn key() -> TokenKey {
    TokenKey::from_bytes([0x42; 32], KeyVersion::V1)
}

proptest! {
    #[test]
    fn typed_variants_give_the_same_token(
        p in person(),
        seps in proptest::collection::vec(0usize..12, 0..12),
    ) {
        let key = key();
        let plain = token(&key, &typed(&p, |s| s.to_owned()));
        prop_assert_eq!(&token(&key, &typed(&p, full_width)), &plain);
        prop_assert_eq!(&token(&key, &typed(&p, |s| with_separators(s, &seps))), &plain);
        prop_assert_eq!(&token(&key, &typed(&p, |s| full_width(&with_separators(s, &seps)))), &plain);
        let lower = typed(&p, |s| s.to_ascii_lowercase());
        prop_assert_eq!(&token(&key, &lower), &plain);
    }

    #[test]
    fn different_people_get_different_tokens(a in person(), b in person()) {
        let (ia, ib) = (typed(&a, |s| s.to_owned()), typed(&b, |s| s.to_owned()));
        let (ca, cb) = (ia.canonical().unwrap(), ib.canonical().unwrap());
        let key = key();
        prop_assert_eq!(ca == cb, subject_token(&key, &ca) == subject_token(&key, &cb));
    }

    #[test]
    fn each_field_matters(p in person(), which in 0usize..5) {
        let key = key();
        let base = typed(&p, |s| s.to_owned());
        let mut other = base.clone();
        match which {
            0 => other.insurer_number = format!("{:08}", (p.insurer.parse::<u64>().unwrap() + 1) % 100_000_000),
            1 => other.symbol.push('9'),
            2 => other.number.push('0'),
            3 => other.birth_date = format!("{:04}-{:02}-{:02}", p.birth.0 + 1, p.birth.1, p.birth.2),
            _ => other.sex = if p.male { Sex::Female } else { Sex::Male },
        }
        prop_assert_ne!(token(&key, &base), token(&key, &other));
    }
}
