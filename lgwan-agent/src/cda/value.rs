//! The `value` of a checkup observation, read as its `xsi:type` says (HL7 data
//! types in `spec/tokutei-kenshin/xsd/coreschemas`): numbers in every lexical form
//! XML Schema gives `real` and `int` (sign, leading or trailing point, exponent,
//! surrounding whitespace), normalized to `-?digits[.digits]`; codes with their
//! system, which defaults to the item table's result-code OID; text. A value with
//! a `nullFlavor`, or with no number or code in it, is no result.

use crate::domain::Value;
use crate::item_table;
use crate::quarantine::Reason;
use crate::xml::{self, Attrs};

/// Longest text (ST/ED) value accepted: the MHLW tables' longest free-text items are far
/// shorter; anything longer is not a result and is refused, not exported.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// An ST/ED value being read: the depth of its `value` element and its text so far.
#[derive(Debug)]
pub(super) struct OpenText {
    depth: usize,
    text: String,
}

/// Longest unit accepted, in bytes (the item table's longest is `ml/min/1.73m2`).
const MAX_UNIT: usize = 32;

impl OpenText {
    /// A text value whose `value` element is at `depth`.
    pub(super) fn at(depth: usize) -> Self {
        OpenText {
            depth,
            text: String::new(),
        }
    }

    /// Whether character data at `depth` is this value's own (not a child's).
    pub(super) fn wants(&self, depth: usize) -> bool {
        self.depth == depth
    }

    /// Appends character data at `depth` of item `item`; more than [`MAX_TEXT_BYTES`] in
    /// all is refused.
    pub(super) fn push(&mut self, depth: usize, more: &str, item: &str) -> Result<(), Reason> {
        if depth != self.depth {
            return Ok(());
        }
        if self.text.len() + more.len() > MAX_TEXT_BYTES {
            return Err(Reason::BadValue(format!(
                "`{item}` text value is longer than {MAX_TEXT_BYTES} bytes"
            )));
        }
        self.text.push_str(more);
        Ok(())
    }

    /// The value read, if it is not blank.
    pub(super) fn finish(self) -> Option<Value> {
        (!self.text.trim().is_empty()).then_some(Value::Text(self.text))
    }
}

/// Longest numeric (PQ/INT) value, in characters: more digits than any measurement.
const MAX_NUMBER_CHARS: usize = 20;

/// What the start tag of a `value` gives.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ValueStart {
    /// No result: a `nullFlavor` says why.
    Nothing,
    /// No result and no `nullFlavor`: a value that says nothing (a PQ without its
    /// number, a code without its code), counted with the items not exported.
    Empty,
    /// A number or a code.
    Value(Value),
    /// Text (ST, ED): the element's own character data is the value.
    Text,
}

/// Reads the start tag of the `value` of item `item` (its code, for messages and
/// for the item table's result-code system).
pub(super) fn start_value(item: &str, attrs: &Attrs<'_>) -> Result<ValueStart, Reason> {
    let Some(kind) = xml::xsi_type(attrs) else {
        return Err(Reason::BadValue(format!("`{item}` value has no xsi:type")));
    };
    if xml::token(attrs, "nullFlavor").is_some() {
        return Ok(ValueStart::Nothing);
    }
    match kind {
        "PQ" | "INT" => {
            let Some(raw) = xml::get(attrs, "value") else {
                return Ok(ValueStart::Empty);
            };
            let value = number(raw, kind == "INT").map_err(|e| {
                Reason::BadValue(match e {
                    NumberError::TooLong => {
                        format!("`{item}` {kind} value has more than {MAX_NUMBER_CHARS} characters")
                    }
                    NumberError::NotANumber => format!("`{item}` {kind} value is not a number"),
                })
            })?;
            let unit = xml::token(attrs, "unit").filter(|u| !u.is_empty() && *u != "1");
            // A unit is a UCUM code (the item table's XML units are): short and ASCII. Any
            // other text could carry what must stay inside LGWAN, so it is refused.
            if let Some(u) =
                unit.filter(|u| u.len() > MAX_UNIT || !u.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(Reason::BadValue(format!(
                    "`{item}` {kind} unit is not a UCUM code (1 to {MAX_UNIT} ASCII characters, no spaces): `{}`",
                    u.chars().take(MAX_UNIT).collect::<String>()
                )));
            }
            Ok(ValueStart::Value(Value::Quantity {
                value,
                unit: unit.map(str::to_owned),
            }))
        }
        "CD" | "CO" | "CE" | "CV" | "CS" => {
            let Some(code) = xml::token(attrs, "code").filter(|c| !c.is_empty()) else {
                return Ok(ValueStart::Empty);
            };
            // `CS` may not name a system; the others may leave it to the context,
            // which for a checkup item is its result-code OID in the item table.
            let system = xml::token(attrs, "codeSystem")
                .filter(|s| !s.is_empty() && kind != "CS")
                .or_else(|| item_table::result_oid(item))
                .or_else(|| item_table::guidance::item(item).and_then(|i| i.oid))
                .ok_or_else(|| {
                    Reason::BadValue(format!(
                        "`{item}` {kind} value has no codeSystem and the item table names none"
                    ))
                })?;
            // The document's `displayName` is free text and stays inside LGWAN, as for
            // guidance: the code and its system are the result.
            Ok(ValueStart::Value(Value::Coded {
                code: code.to_owned(),
                system: system.to_owned(),
                display: None,
            }))
        }
        "ST" => Ok(ValueStart::Text),
        "ED" => match xml::token(attrs, "representation") {
            None | Some("TXT") if xml::get(attrs, "compression").is_none() => Ok(ValueStart::Text),
            _ => Err(Reason::BadValue(format!(
                "`{item}` ED value is encoded (representation or compression): only text is read"
            ))),
        },
        other => Err(Reason::BadValue(format!(
            "`{item}` has unsupported value type `{other}`"
        ))),
    }
}

/// Why a number attribute was refused.
#[derive(Debug, PartialEq, Eq)]
enum NumberError {
    /// Longer than [`MAX_NUMBER_CHARS`], as written or once the exponent is applied.
    TooLong,
    /// Not in the lexical space of `xs:decimal`/`xs:double` (`int`: `xs:integer`),
    /// or not finite (`INF`, `NaN`).
    NotANumber,
}

/// `raw` (an `xs:integer` when `integer`, else HL7 `real`: `xs:decimal` or
/// `xs:double`) as `-?digits[.digits]`: whitespace collapsed, a `+` dropped, a bare
/// leading or trailing point completed or dropped, an exponent applied.
fn number(raw: &str, integer: bool) -> Result<String, NumberError> {
    let t = xml::collapse(raw);
    if t.chars().count() > MAX_NUMBER_CHARS {
        return Err(NumberError::TooLong);
    }
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some(_) if integer => return Err(NumberError::NotANumber),
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (integer && mantissa.contains('.'))
        || !digits(int)
        || !digits(frac)
        || int.len() + frac.len() == 0
    {
        return Err(NumberError::NotANumber);
    }
    let sign = if negative { "-" } else { "" };
    let Some(exponent) = exponent else {
        let int = if int.is_empty() { "0" } else { int };
        return Ok(match frac {
            "" => format!("{sign}{int}"),
            _ => format!("{sign}{int}.{frac}"),
        });
    };
    // `i64` parsing takes an optional sign and digits only, as `xs:double` does.
    let exponent: i64 = exponent.parse().map_err(|_| NumberError::NotANumber)?;
    if exponent.unsigned_abs() > MAX_NUMBER_CHARS as u64 {
        return Err(NumberError::TooLong);
    }
    let all = format!("{int}{frac}");
    let point = int.len() as i64 + exponent;
    let len = all.len() as i64;
    let zeros = |n: i64| "0".repeat(usize::try_from(n).unwrap_or_default());
    let shifted = if point <= 0 {
        format!("0.{}{all}", zeros(-point))
    } else if point >= len {
        format!("{all}{}", zeros(point - len))
    } else {
        let (i, f) = all.split_at(usize::try_from(point).unwrap_or_default());
        format!("{i}.{f}")
    };
    let shifted = match shifted.trim_start_matches('0') {
        rest if rest.is_empty() || rest.starts_with('.') => format!("0{rest}"),
        rest => rest.to_owned(),
    };
    if shifted.len() + sign.len() > MAX_NUMBER_CHARS {
        return Err(NumberError::TooLong);
    }
    Ok(format!("{sign}{shifted}"))
}

/// Checks that `value` is of the type its item table gives (`fits`), naming the item
/// (`code`, `name`) and the table's type (`kind`) when it is not: free text never passes
/// under a numeric or coded item.
pub(crate) fn of_table_type(code: &str, name: &str, kind: &str, fits: bool) -> Result<(), Reason> {
    if fits {
        Ok(())
    } else {
        Err(Reason::BadValue(format!(
            "`{code}` ({name}) has a value of another type than the item table's {kind}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(pairs: &[(&'a str, &'a str)]) -> Attrs<'a> {
        pairs
            .iter()
            .map(|(k, v)| {
                let (ns, local) = match k.strip_prefix("xsi:") {
                    Some(local) => (xml::AttrNs::Xsi, local),
                    None => (xml::AttrNs::None, *k),
                };
                xml::Attr {
                    ns,
                    local: local.as_bytes(),
                    value: (*v).into(),
                }
            })
            .collect()
    }

    #[test]
    fn every_lexical_form_of_a_number() {
        for (raw, want) in [
            ("160.5", "160.5"),
            (" 160.5\n", "160.5"),
            ("+160", "160"),
            ("007", "007"),
            (".5", "0.5"),
            ("-.5", "-0.5"),
            ("5.", "5"),
            ("1.605E2", "160.5"),
            ("1605e-1", "160.5"),
            ("0.5E1", "5"),
            ("1.50E1", "15.0"),
            ("5E-3", "0.005"),
            ("-1E+2", "-100"),
            ("0E0", "0"),
        ] {
            assert_eq!(number(raw, false).as_deref(), Ok(want), "{raw}");
        }
        assert_eq!(number("+042", true).as_deref(), Ok("042"));
        for bad in [
            "", ".", "1.5.1", "1e", "e5", "INF", "NaN", "1,5", "0x10", "1 5", "--1",
        ] {
            assert_eq!(number(bad, false), Err(NumberError::NotANumber), "{bad}");
        }
        for bad in ["1.5", "1E2"] {
            assert_eq!(number(bad, true), Err(NumberError::NotANumber), "{bad}");
        }
        assert_eq!(number(&"9".repeat(21), false), Err(NumberError::TooLong));
        assert_eq!(number("1E400", false), Err(NumberError::TooLong));
        assert_eq!(number("1E20", false), Err(NumberError::TooLong));
    }

    #[test]
    fn codes_default_to_the_item_tables_result_system() {
        // 3C015161602399911 (血清クレアチニン対象者) has result codes 1.2.392.200119.6.18110.
        for kind in ["CD", "CS"] {
            let start = start_value(
                "3C015161602399911",
                &attrs(&[("xsi:type", kind), ("code", " 1 ")]),
            );
            assert_eq!(
                start,
                Ok(ValueStart::Value(Value::Coded {
                    code: "1".into(),
                    system: "1.2.392.200119.6.18110".into(),
                    display: None,
                }))
            );
        }
        // No system written and none in the table (a PQ item): refused.
        let r = start_value(
            "9N001000000000001",
            &attrs(&[("xsi:type", "CD"), ("code", "1")]),
        );
        assert!(matches!(r, Err(Reason::BadValue(m)) if m.contains("no codeSystem")));
    }

    #[test]
    fn null_and_empty_values_are_no_result() {
        for pairs in [
            &[("xsi:type", "PQ"), ("nullFlavor", "NI"), ("value", "1")][..],
            &[("xsi:type", "ST"), ("nullFlavor", "UNK")],
            &[("xsi:type", "BL"), ("nullFlavor", "NI")],
        ] {
            let start = start_value("9N001000000000001", &attrs(pairs));
            assert_eq!(start, Ok(ValueStart::Nothing), "{pairs:?}");
        }
        for pairs in [
            &[("xsi:type", "PQ"), ("unit", "cm")][..],
            &[("xsi:type", "INT")],
            &[("xsi:type", "CD"), ("codeSystem", "1.2.3")],
            &[("xsi:type", "CO"), ("code", "")],
        ] {
            let start = start_value("9N001000000000001", &attrs(pairs));
            assert_eq!(start, Ok(ValueStart::Empty), "{pairs:?}");
        }
        let b64 = attrs(&[("xsi:type", "ED"), ("representation", "B64")]);
        assert!(start_value("9N051000000000049", &b64).is_err());
        let txt = attrs(&[("xsi:type", "v3:ED"), ("representation", "TXT")]);
        assert_eq!(start_value("9N051000000000049", &txt), Ok(ValueStart::Text));
    }
}
