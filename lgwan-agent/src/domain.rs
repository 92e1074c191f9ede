//! The parsed, not yet minimized inputs: checkup documents, tabular rows, and
//! the identifying fields they carry (which never leave the agent).

use std::fmt;

use chrono::NaiveDate;
use serde::Serialize;

/// OID of the MHLW checkup item codes (17 digits).
pub const ITEM_CODE_OID: &str = "1.2.392.200119.6.1005";

/// Administrative sex as recorded on the insurance card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    /// Code 1.
    Male,
    /// Code 2.
    Female,
}

impl Sex {
    /// Parses the forms found in CDA and CSV inputs: `1`/`2`, `男`/`女`,
    /// `M`/`F`, `male`/`female` (any width, any case).
    pub fn parse(raw: &str) -> Option<Sex> {
        let folded: String = raw
            .trim()
            .chars()
            .map(fold_width)
            .collect::<String>()
            .to_ascii_lowercase();
        match folded.as_str() {
            "1" | "m" | "male" | "男" | "男性" => Some(Sex::Male),
            "2" | "f" | "female" | "女" | "女性" => Some(Sex::Female),
            _ => None,
        }
    }

    /// The lowercase English name, as the CLI takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
}

impl fmt::Display for Sex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Full-width ASCII (U+FF01..U+FF5E) to ASCII; other characters unchanged.
pub(crate) fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

/// The identifying fields of one insured person, exactly as the input gave
/// them (before normalization). They stay inside the agent: only the subject
/// token made from them leaves. `Debug` elides them.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonIdentity {
    /// Insurer number (保険者番号), 6 or 8 digits.
    pub insurer: String,
    /// Card symbol (記号); empty when the card has none.
    pub symbol: String,
    /// Card number (番号).
    pub number: String,
    /// Branch number (枝番), when given.
    pub branch: Option<String>,
    /// Birth date.
    pub birth: NaiveDate,
    /// Sex.
    pub sex: Sex,
}

impl fmt::Debug for PersonIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonIdentity([identifiers elided])")
    }
}

/// One result value, typed as the CDA `xsi:type` (or the CSV mapping) says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Value {
    /// PQ (or INT): a decimal number, checked, kept as written, with its unit.
    Quantity {
        /// The number as written (`-?digits[.digits]`).
        value: String,
        /// The unit (UCUM for checkups), if any.
        unit: Option<String>,
    },
    /// CD/CO: a code from a code system (the item's result-code OID).
    Coded {
        /// The code.
        code: String,
        /// The code system, an OID or a URI.
        system: String,
        /// The display name, if given.
        display: Option<String>,
    },
    /// ST: free text.
    Text(String),
    /// A date (a guidance session's 実施日付).
    Date {
        /// The date.
        date: NaiveDate,
    },
}

/// One observation of a checkup document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// The 17-digit MHLW item code.
    pub item_code: String,
    /// The item name given in the document (`displayName`), if any.
    pub display: Option<String>,
    /// The value.
    pub value: Value,
    /// The item code of the series group (一連検査グループ) this observation
    /// belongs to, through `entryRelationship`; the group's own observation
    /// carries its own code here too.
    pub group: Option<String>,
    /// How it hangs under its group (`COMP`, `RSON`), for members only.
    pub relation: Option<String>,
    /// When it was recorded, if not on the document's date (a guidance session's date).
    pub effective: Option<NaiveDate>,
}

/// Which MHLW document a CDA file is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DocumentKind {
    /// A 特定健診 checkup (`hc08`, `DATA/h….xml`), items of OID 1.2.392.200119.6.1005.
    #[default]
    Checkup,
    /// A 特定保健指導 guidance record (`hg08`, `DATA/g….xml`), items of OID
    /// 1.2.392.200119.6.1006.
    Guidance,
}

/// One parsed 特定健診 or 特定保健指導 document (HL7 CDA R2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckupDocument {
    /// Which document it is.
    pub kind: DocumentKind,
    /// The document id (`root^extension` of `ClinicalDocument/id`), or
    /// `<archive>/<entry>` when the document has none.
    pub document_id: String,
    /// Who was examined (never leaves the agent).
    pub identity: PersonIdentity,
    /// The exam date (`documentationOf/serviceEvent/effectiveTime`).
    pub exam_date: NaiveDate,
    /// Every result, in document order.
    pub observations: Vec<Observation>,
    /// Values read past, counted with the items not exported: results coded in another
    /// code system than the MHLW item codes, and values that say nothing (no number, no
    /// code, blank text) without a `nullFlavor` saying why.
    pub unread_values: usize,
}

/// Checks that `raw` is a plain decimal number (`-?digits[.digits]`).
pub(crate) fn is_decimal(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let mut parts = digits.splitn(2, '.');
    let int_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let frac_ok = parts
        .next()
        .is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    int_ok && frac_ok
}

/// Parses a date written `YYYYMMDD`, `YYYY-MM-DD` or `YYYY/MM/DD` (any width);
/// a CDA timestamp with a time part (`YYYYMMDDhhmmss…`) keeps its date.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let folded: String = raw.trim().chars().map(fold_width).collect();
    let digits: String = folded.chars().filter(|c| !matches!(c, '-' | '/')).collect();
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if folded.contains(['-', '/']) && digits.len() != 8 {
        return None;
    }
    ymd(digits.get(..8)?)
}

/// The date of eight ASCII digits `YYYYMMDD` (what chrono's `%Y%m%d` reads from them).
fn ymd(digits: &str) -> Option<NaiveDate> {
    let number = |at: std::ops::Range<usize>| digits.get(at)?.parse::<u32>().ok();
    let year = i32::try_from(number(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(4..6)?, number(6..8)?)
}

/// The date of an HL7 `ts` value (`datatypes-base_hcgv08.xsd`: `[0-9]{1,8}`, or
/// `[0-9]{9,14}` or 14 digits with a fraction of a second, then an optional UTC offset
/// `[+-][0-9]{1,4}`): the first eight digits, the date as written. Values without a time
/// are read as [`parse_date`] reads them.
pub fn parse_ts_date(raw: &str) -> Option<NaiveDate> {
    let folded: String = raw.trim().chars().map(fold_width).collect();
    let time_len = folded.bytes().take_while(u8::is_ascii_digit).count();
    if time_len < 9 {
        return parse_date(&folded);
    }
    let (time, mut rest) = folded.split_at(time_len);
    if time.len() > 14 {
        return None;
    }
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if time.len() != 14 || digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset_ok = rest.is_empty()
        || rest
            .strip_prefix(['+', '-'])
            .is_some_and(|o| (1..=4).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_digit()));
    if !offset_ok {
        return None;
    }
    ymd(time.get(..8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form the XSD's `ts` pattern allows with a date keeps its date; what the
    /// pattern refuses is refused.
    #[test]
    fn timestamps_in_every_form_the_xsd_allows() {
        let d = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for raw in [
            "19700101",
            "197001011",
            "197001011230",
            "19700101123000",
            "19700101123000+0900",
            "19700101123000.123-0500",
            "1970010112+9",
            "１９７００１０１",
            "1970-01-01",
        ] {
            assert_eq!(parse_ts_date(raw), Some(d), "{raw}");
        }
        for bad in [
            "197001011230000",
            "197001011230.5",
            "19700101123000.",
            "19700101123000+09000",
            "19700101123000+",
            "19700101123000Z",
            "1970010",
            "19701301",
        ] {
            assert_eq!(parse_ts_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals() {
        for ok in ["0", "165.2", "-3.5", "007"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", "165.O", "1.", ".5", "1e3", "+1", "1,5", " 1"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn dates_in_every_form() {
        let d = NaiveDate::from_ymd_opt(1963, 1, 3).unwrap();
        for raw in [
            "19630103",
            "1963-01-03",
            "1963/01/03",
            "１９６３／０１／０３",
            "19630103093000",
        ] {
            assert_eq!(parse_date(raw), Some(d), "{raw}");
        }
        for bad in ["1963013", "19631303", "1963-1-3x", "abcdefgh"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn eight_digits_read_as_chrono_reads_them() {
        let mut cases = vec![
            "00000101", "00010229", "19000229", "20000229", "20230229", "20240229", "20231231",
            "20240001", "20241301", "20240100", "20240132", "20240431", "99991231", "00000000",
        ];
        let all: Vec<String> = (0..=9999)
            .step_by(37)
            .map(|y| format!("{y:04}0615"))
            .collect();
        cases.extend(all.iter().map(String::as_str));
        for raw in cases {
            let chrono = NaiveDate::parse_from_str(raw, "%Y%m%d").ok();
            assert_eq!(ymd(raw), chrono, "{raw}");
        }
    }

    #[test]
    fn sex_forms() {
        assert_eq!(Sex::parse("１"), Some(Sex::Male));
        assert_eq!(Sex::parse("女"), Some(Sex::Female));
        assert_eq!(Sex::parse("Female"), Some(Sex::Female));
        assert_eq!(Sex::parse("3"), None);
    }

    #[test]
    fn identity_debug_elides() {
        let id = PersonIdentity {
            insurer: "06131186".into(),
            symbol: "106-47".into(),
            number: "9787560".into(),
            branch: None,
            birth: NaiveDate::from_ymd_opt(1963, 1, 3).unwrap(),
            sex: Sex::Female,
        };
        let shown = format!("{id:?}");
        assert!(!shown.contains("06131186") && !shown.contains("1963"));
    }
}
