//! Canonical identity of a resident (DESIGN.md step 3): normalization of the
//! identifiers staff type, and the fixed byte encoding that subject tokens hash.
//!
//! # Normalization
//!
//! Every text field goes through the same steps:
//!
//! 1. Unicode NFKC, so full-width digits and letters (`１２３`, `ＡＢ`) and
//!    half-width katakana become their ordinary forms.
//! 2. Removal of all white space (including U+3000 ideographic space) and of
//!    every hyphen or dash: `-` U+002D, U+00AD, U+2010–U+2015, U+2043, U+2212,
//!    U+FE58, U+FE63, U+FF0D, and `ー` U+30FC (katakana prolonged sound mark,
//!    also what NFKC makes of half-width `ｰ`). A Japanese IME turns a typed `-`
//!    into `ー`, so in numbers and symbols it is a dash. It is removed even
//!    between kana: a symbol typed `アーク` or `アク` gives the same token,
//!    which only ever merges two symbols of one insurer that differ by that mark
//!    alone, while keeping it would split one resident into two subjects.
//! 3. ASCII letters are upper-cased (`ab` and `AB` are the same symbol).
//!
//! Then, per field: the insurer number (保険者番号) must be 6 or 8 ASCII digits
//! and is zero-padded on the left to 8; the symbol (記号) may be empty, since
//! some insurers issue none; the number (番号) must not be empty; the birth date
//! is `YYYY-MM-DD` or `YYYYMMDD` (also with `/`) and must be a real date; the
//! sex is `male`, `female`, `1`, `2`, `男` or `女`. Control characters and
//! fields longer than 64 characters are refused. Leading zeros of the symbol
//! and number are kept. The branch number (枝番) is normalized the same way to
//! two digits but is *not* part of the canonical identity.
//!
//! # Canonical bytes
//!
//! The tag `rid1`, then for each of insurer number (8 ASCII digits), symbol,
//! number, birth date (8 ASCII digits `YYYYMMDD`) and sex (`1` male, `2`
//! female): its UTF-8 length as one byte, then its UTF-8 bytes. A normalized
//! field is at most 64 characters and 255 bytes, so one length byte suffices
//! and no two identities share an encoding.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroize;

use crate::error::{Error, Result};

/// Longest normalized symbol or number, in characters.
const MAX_FIELD_CHARS: usize = 64;
/// Longest normalized field, in UTF-8 bytes (it must fit a one-byte length).
const MAX_FIELD_BYTES: usize = 255;

/// Sex as recorded on the insurance card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    /// Male (code `1`).
    Male,
    /// Female (code `2`).
    Female,
}

impl Sex {
    /// The one-character code used in canonical bytes: `1` or `2`.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "1",
            Sex::Female => "2",
        }
    }
}

impl fmt::Display for Sex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sex::Male => "male",
            Sex::Female => "female",
        })
    }
}

impl FromStr for Sex {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let normalized = normalize(s).to_ascii_lowercase();
        match normalized.as_str() {
            "male" | "1" | "男" | "男性" => Ok(Sex::Male),
            "female" | "2" | "女" | "女性" => Ok(Sex::Female),
            _ => Err(Error::Identity {
                field: "sex",
                value: crate::error::shorten(s),
                reason: "expected `male`, `female`, `1` or `2`",
            }),
        }
    }
}

impl serde::Serialize for Sex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A resident's identifiers as typed by staff or sent in an enrollment request.
///
/// `Debug` elides the identifiers so they cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// 保険者番号, 6 or 8 digits.
    pub insurer_number: String,
    /// 記号, may be empty.
    pub symbol: String,
    /// 番号.
    pub number: String,
    /// Birth date, `YYYY-MM-DD` or `YYYYMMDD`.
    pub birth_date: String,
    /// Sex.
    pub sex: Sex,
    /// 枝番, not part of the canonical identity; checked separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Identity([identifiers elided])")
    }
}

impl Identity {
    /// Normalizes the identifiers into the canonical identity (ignores the branch).
    pub fn canonical(&self) -> Result<CanonicalIdentity> {
        let insurer_number = insurer_number(&self.insurer_number)?;
        let symbol = text_field("symbol", &self.symbol, true)?;
        let number = text_field("number", &self.number, false)?;
        let birth_date = birth_date(&self.birth_date)?;
        Ok(CanonicalIdentity::new(
            insurer_number,
            symbol,
            number,
            birth_date,
            self.sex,
        ))
    }

    /// The normalized branch number (two digits), or `None` when absent or empty.
    pub fn branch(&self) -> Result<Option<String>> {
        let Some(typed) = &self.branch else {
            return Ok(None);
        };
        let normalized = normalize(typed);
        let error = |reason| Error::Identity {
            field: "branch number",
            value: crate::error::shorten(typed),
            reason,
        };
        match normalized.len() {
            0 => Ok(None),
            1 | 2 if normalized.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Some(format!("{normalized:0>2}")))
            }
            _ => Err(error("must be 1 or 2 digits")),
        }
    }
}

/// A normalized identity and its canonical bytes; what subject tokens are made of.
///
/// Identifiers are zeroized on drop and `Debug` elides them.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalIdentity {
    insurer_number: String,
    symbol: String,
    number: String,
    birth_date: NaiveDate,
    sex: Sex,
    bytes: Vec<u8>,
}

impl CanonicalIdentity {
    fn new(
        insurer_number: String,
        symbol: String,
        number: String,
        birth_date: NaiveDate,
        sex: Sex,
    ) -> Self {
        let date = birth_date.format("%Y%m%d").to_string();
        let fields = [
            insurer_number.as_str(),
            symbol.as_str(),
            number.as_str(),
            date.as_str(),
            sex.code(),
        ];
        let mut bytes = Vec::with_capacity(4 + fields.iter().map(|f| 1 + f.len()).sum::<usize>());
        bytes.extend_from_slice(b"rid1");
        for field in fields {
            // Every field was checked to be at most MAX_FIELD_BYTES (255) long.
            bytes.push(u8::try_from(field.len()).unwrap_or(u8::MAX));
            bytes.extend_from_slice(field.as_bytes());
        }
        CanonicalIdentity {
            insurer_number,
            symbol,
            number,
            birth_date,
            sex,
            bytes,
        }
    }

    /// The insurer number, 8 ASCII digits.
    pub fn insurer_number(&self) -> &str {
        &self.insurer_number
    }

    /// The normalized symbol (possibly empty).
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    /// The normalized number.
    pub fn number(&self) -> &str {
        &self.number
    }

    /// The birth date.
    pub fn birth_date(&self) -> NaiveDate {
        self.birth_date
    }

    /// The sex.
    pub fn sex(&self) -> Sex {
        self.sex
    }

    /// The canonical bytes (see the module docs); the input of the subject token.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for CanonicalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CanonicalIdentity([identifiers elided])")
    }
}

impl Drop for CanonicalIdentity {
    fn drop(&mut self) {
        self.insurer_number.zeroize();
        self.symbol.zeroize();
        self.number.zeroize();
        self.bytes.zeroize();
    }
}

/// Whether `c` is a hyphen or dash that normalization removes.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{00AD}' | '\u{2010}'
            ..='\u{2015}'
                | '\u{2043}'
                | '\u{2212}'
                | '\u{FE58}'
                | '\u{FE63}'
                | '\u{FF0D}'
                | '\u{30FC}'
                | '\u{FF70}'
    )
}

/// NFKC, then white space and dashes removed, then ASCII letters upper-cased.
pub fn normalize(typed: &str) -> String {
    typed
        .nfkc()
        .filter(|&c| !c.is_whitespace() && !is_dash(c))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn insurer_number(typed: &str) -> Result<String> {
    let normalized = normalize(typed);
    let digits = normalized.bytes().all(|b| b.is_ascii_digit());
    match normalized.len() {
        6 | 8 if digits => Ok(format!("{normalized:0>8}")),
        _ => Err(Error::Identity {
            field: "insurer number",
            value: crate::error::shorten(typed),
            reason: "must be 6 or 8 digits",
        }),
    }
}

fn text_field(field: &'static str, typed: &str, may_be_empty: bool) -> Result<String> {
    let normalized = normalize(typed);
    let error = |reason| Error::Identity {
        field,
        value: crate::error::shorten(typed),
        reason,
    };
    if normalized.is_empty() && !may_be_empty {
        return Err(error("must not be empty"));
    }
    if normalized.chars().any(char::is_control) {
        return Err(error("must not contain control characters"));
    }
    if normalized.chars().count() > MAX_FIELD_CHARS || normalized.len() > MAX_FIELD_BYTES {
        return Err(error("is longer than 64 characters"));
    }
    Ok(normalized)
}

fn birth_date(typed: &str) -> Result<NaiveDate> {
    let error = |reason| Error::Identity {
        field: "birth date",
        value: crate::error::shorten(typed),
        reason,
    };
    let digits: String = normalize(typed).chars().filter(|&c| c != '/').collect();
    let (Some(year), Some(month), Some(day), true) = (
        digits.get(0..4).and_then(|y| y.parse::<i32>().ok()),
        digits.get(4..6).and_then(|m| m.parse::<u32>().ok()),
        digits.get(6..8).and_then(|d| d.parse::<u32>().ok()),
        digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()),
    ) else {
        return Err(error("expected `YYYY-MM-DD` or `YYYYMMDD`"));
    };
    NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| error("is not a calendar date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(insurer: &str, symbol: &str, number: &str, birth: &str) -> Identity {
        Identity {
            insurer_number: insurer.into(),
            symbol: symbol.into(),
            number: number.into(),
            birth_date: birth.into(),
            sex: Sex::Female,
            branch: None,
        }
    }

    #[test]
    fn full_width_and_dashes_normalize_to_ascii() {
        let a = identity(
            "０１３８００５７",
            "　記号ー１",
            "１２３－４５",
            "１９８０－０４－０１",
        )
        .canonical()
        .unwrap();
        let b = identity("01380057", "記号1", "12345", "19800401")
            .canonical()
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.symbol(), "記号1");
        assert_eq!(a.number(), "12345");
        assert_eq!(a.birth_date(), NaiveDate::from_ymd_opt(1980, 4, 1).unwrap());
    }

    #[test]
    fn six_digit_insurer_numbers_are_zero_padded() {
        let c = identity("138057", "", "7", "2001-12-31")
            .canonical()
            .unwrap();
        assert_eq!(c.insurer_number(), "00138057");
        for bad in ["1234567", "12345", "12345a", "", "123456789"] {
            let err = identity(bad, "", "7", "2001-12-31")
                .canonical()
                .unwrap_err();
            assert!(
                err.to_string().starts_with("invalid insurer number `"),
                "{err}"
            );
        }
    }

    #[test]
    fn canonical_bytes_are_length_prefixed() {
        let mut id = identity("01380057", "ab", "1-2", "1980/04/01");
        id.sex = Sex::Male;
        let c = id.canonical().unwrap();
        assert_eq!(
            c.canonical_bytes(),
            b"rid1\x0801380057\x02AB\x0212\x0819800401\x011"
        );
        // Moving a character from symbol to number changes the bytes.
        let d = identity("01380057", "A", "B12", "19800401")
            .canonical()
            .unwrap();
        assert_ne!(c.canonical_bytes(), d.canonical_bytes());
    }

    #[test]
    fn impossible_dates_and_empty_numbers_are_refused() {
        for bad in [
            "2023-02-29",
            "1980-13-01",
            "1980-4-1",
            "19800",
            "S55.4.1",
            "",
        ] {
            let err = identity("01380057", "", "1", bad).canonical().unwrap_err();
            assert!(
                err.to_string().starts_with("invalid birth date `"),
                "{bad}: {err}"
            );
        }
        assert!(
            identity("01380057", "", "1", "2024-02-29")
                .canonical()
                .is_ok()
        );
        let err = identity("01380057", "", " ー ", "2000-01-01")
            .canonical()
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid number ` ー `: must not be empty");
        let long = "1".repeat(65);
        assert!(
            identity("01380057", "", &long, "2000-01-01")
                .canonical()
                .is_err()
        );
    }

    #[test]
    fn sex_parses_the_documented_forms() {
        for male in ["male", "Male", "1", "１", "男"] {
            assert_eq!(male.parse::<Sex>().unwrap(), Sex::Male, "{male}");
        }
        for female in ["female", "2", "２", "女"] {
            assert_eq!(female.parse::<Sex>().unwrap(), Sex::Female, "{female}");
        }
        assert!("3".parse::<Sex>().is_err());
        assert!("m".parse::<Sex>().is_err());
    }

    #[test]
    fn branch_is_two_digits_and_separate() {
        let mut id = identity("01380057", "", "1", "2000-01-01");
        assert_eq!(id.branch().unwrap(), None);
        id.branch = Some("１".into());
        assert_eq!(id.branch().unwrap().as_deref(), Some("01"));
        let with_branch = id.canonical().unwrap();
        id.branch = Some("02".into());
        assert_eq!(id.canonical().unwrap(), with_branch);
        id.branch = Some("123".into());
        assert!(id.branch().is_err());
    }

    #[test]
    fn debug_elides_identifiers() {
        let id = identity("01380057", "", "98765", "2000-01-01");
        assert!(!format!("{id:?}").contains("98765"));
        assert!(!format!("{:?}", id.canonical().unwrap()).contains("98765"));
    }

    #[test]
    fn identity_round_trips_through_json() {
        let mut id = identity("01380057", "", "98765", "2000-01-01");
        id.branch = Some("01".into());
        let json = serde_json::to_string(&id).unwrap();
        assert!(json.contains(r#""sex":"female""#), "{json}");
        assert_eq!(serde_json::from_str::<Identity>(&json).unwrap(), id);
    }
}
