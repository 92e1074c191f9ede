//! Reading catalog TOML and checking the catalog rules, with file and line in every error.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Catalog, CategoryInfo, CheckupContext, ItemInfo, PurposeInfo};
use crate::error::{Error, Result, line_of};

/// The only catalog format this crate reads.
const FORMAT: u32 = 1;

/// The catalog file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    format: Spanned<u32>,
    attendance_category: Option<Spanned<String>>,
    checkup_context: Spanned<CheckupContext>,
    categories: BTreeMap<String, Spanned<RawCategory>>,
    purposes: BTreeMap<String, Spanned<RawPurpose>>,
    #[serde(default)]
    items: BTreeMap<String, Spanned<RawItem>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    ja: String,
    en: String,
    #[serde(default)]
    derived: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    ja: String,
    en: String,
    fhir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    category: String,
    name: String,
    #[serde(default = "default_export")]
    export: bool,
}

fn default_export() -> bool {
    true
}

/// Builds errors that name the catalog file and the line of a span.
struct Reporter<'a> {
    file: &'a str,
    text: &'a str,
}

impl Reporter<'_> {
    fn at<T>(&self, spanned: &Spanned<T>, message: String) -> Error {
        self.at_offset(spanned.span().start, message)
    }

    fn at_offset(&self, offset: usize, message: String) -> Error {
        Error::Catalog {
            file: self.file.to_owned(),
            line: line_of(self.text, offset),
            message,
        }
    }

    /// The line of the first occurrence of `"key"` or `key =` in the text, for keys
    /// whose value span is not a good place to point at.
    fn at_key(&self, key: &str, message: String) -> Error {
        let quoted = format!("\"{key}\"");
        let offset = self
            .text
            .find(&quoted)
            .or_else(|| self.text.find(&format!("{key} =")))
            .unwrap_or(0);
        self.at_offset(offset, message)
    }
}

/// Parses and validates catalog `text` read from `file`.
pub(super) fn parse(file: &str, text: &str) -> Result<Catalog> {
    let report = Reporter { file, text };
    let raw: RawCatalog = toml::from_str(text).map_err(|err| {
        let offset = err.span().map_or(0, |span| span.start);
        report.at_offset(offset, err.message().trim().to_owned())
    })?;

    if *raw.format.get_ref() != FORMAT {
        return Err(report.at(
            &raw.format,
            format!(
                "unsupported format `{}`, expected `{FORMAT}`",
                raw.format.get_ref()
            ),
        ));
    }

    for (field, exported) in raw.checkup_context.get_ref().identifiers() {
        if exported {
            return Err(report.at_key(
                field,
                format!("checkup context field `{field}` is a direct identifier and must be false"),
            ));
        }
    }

    let mut categories = BTreeMap::new();
    for (name, raw_category) in raw.categories {
        let Some(group) = category_group(&name) else {
            return Err(report.at_key(
                &name,
                format!("category name `{name}` is not of the form `group.name` (a-z, 0-9, -)"),
            ));
        };
        let RawCategory { ja, en, derived } = raw_category.get_ref();
        if ja.trim().is_empty() || en.trim().is_empty() {
            return Err(report.at(
                &raw_category,
                format!("category `{name}` needs both a `ja` and an `en` description"),
            ));
        }
        let info = CategoryInfo {
            group: group.to_owned(),
            ja: ja.clone(),
            en: en.clone(),
            derived: *derived,
            name: name.clone(),
        };
        categories.insert(name, info);
    }

    let mut purposes = BTreeMap::new();
    for (name, raw_purpose) in raw.purposes {
        if !is_name(&name) {
            return Err(report.at_key(
                &name,
                format!("purpose name `{name}` may only hold a-z, 0-9 and `-`"),
            ));
        }
        let RawPurpose { ja, en, fhir } = raw_purpose.get_ref();
        if ja.trim().is_empty() || en.trim().is_empty() {
            return Err(report.at(
                &raw_purpose,
                format!("purpose `{name}` needs both a `ja` and an `en` description"),
            ));
        }
        let info = PurposeInfo {
            ja: ja.clone(),
            en: en.clone(),
            fhir: fhir.clone(),
            name: name.clone(),
        };
        purposes.insert(name, info);
    }

    let attendance = match raw.attendance_category {
        None => None,
        Some(spanned) => {
            let name = spanned.get_ref();
            match categories.get(name) {
                None => {
                    return Err(report.at(
                        &spanned,
                        format!("attendance category `{name}` is not a category of the catalog"),
                    ));
                }
                Some(info) if !info.derived => {
                    return Err(report.at(
                        &spanned,
                        format!("attendance category `{name}` must be marked `derived = true`"),
                    ));
                }
                Some(_) => Some(name.clone()),
            }
        }
    };

    let mut items = BTreeMap::new();
    for (code, raw_item) in raw.items {
        let RawItem {
            category,
            name,
            export,
        } = raw_item.get_ref();
        // A checkup item (XMLhc18tab) has 17 letters and digits; a guidance item
        // (XMLhg18tab) 10 digits, and only a guidance category may hold it.
        let checkup = code.len() == 17 && code.bytes().all(|b| b.is_ascii_alphanumeric());
        let guidance = code.len() == 10 && code.bytes().all(|b| b.is_ascii_digit());
        if !checkup && !guidance {
            return Err(report.at(
                &raw_item,
                format!(
                    "item code `{code}` is neither a checkup code (17 ASCII letters and digits) \
                     nor a guidance code (10 digits)"
                ),
            ));
        }
        if guidance != category.starts_with("guidance.") {
            return Err(report.at(
                &raw_item,
                format!(
                    "item `{code}` is in `{category}`: guidance codes (10 digits) belong in \
                     `guidance.*` categories and only they do"
                ),
            ));
        }
        match categories.get(category) {
            None => {
                return Err(report.at(
                    &raw_item,
                    format!("item `{code}` names unknown category `{category}`"),
                ));
            }
            Some(info) if info.derived => {
                return Err(report.at(
                    &raw_item,
                    format!(
                        "item `{code}` names derived category `{category}`, which has no items"
                    ),
                ));
            }
            Some(_) => {}
        }
        if name.trim().is_empty() {
            return Err(report.at(&raw_item, format!("item `{code}` has an empty name")));
        }
        let info = ItemInfo {
            category: category.clone(),
            name: name.clone(),
            export: *export,
            code: code.clone(),
        };
        items.insert(code, info);
    }

    Ok(Catalog {
        source: file.to_owned(),
        attendance,
        context: raw.checkup_context.into_inner(),
        categories,
        purposes,
        items,
    })
}

/// The group of a category name `group.name`, or `None` if the name is malformed.
fn category_group(name: &str) -> Option<&str> {
    let (group, rest) = name.split_once('.')?;
    (is_name(group) && is_name(rest)).then_some(group)
}

/// A lowercase ASCII name: starts with a letter, then letters, digits and `-`.
fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"format = 1
attendance_category = "checkup.attendance"

[checkup_context]
fiscal_year = true
exam_date = true
age_at_exam = true
sex = true
birth_year_month = false
birth_date = false
name = false
name_kana = false
address = false
postal_code = false
insurer_number = false
insurance_symbol = false
insurance_number = false
insurance_branch = false
exam_facility = false

[categories."checkup.attendance"]
ja = "受診"
en = "attendance"
derived = true

[categories."checkup.body"]
ja = "身体計測"
en = "body"

[purposes.phr-display]
ja = "表示"
en = "display"
"#;

    fn parse_with(tail: &str) -> Result<Catalog> {
        parse("test.toml", &format!("{HEAD}{tail}"))
    }

    fn line_of_error(err: &Error) -> (String, usize) {
        match err {
            Error::Catalog { file, line, .. } => (file.clone(), *line),
            other => panic!("not a catalog error: {other}"),
        }
    }

    #[test]
    fn a_small_catalog_parses() {
        let catalog = parse_with(
            "\n[items]\n\"9N001000000000001\" = { category = \"checkup.body\", name = \"身長\" }\n",
        )
        .unwrap();
        assert_eq!(
            catalog.category_of("9N001000000000001"),
            Some("checkup.body")
        );
        assert_eq!(catalog.category("checkup.body").unwrap().group, "checkup");
        assert_eq!(catalog.source(), "test.toml");
    }

    #[test]
    fn an_unknown_category_names_the_line() {
        let err = parse_with(
            "\n[items]\n\"9N001000000000001\" = { category = \"checkup.body\", name = \"身長\" }\n\
             \"9N006000000000001\" = { category = \"checkup.nope\", name = \"体重\" }\n",
        )
        .unwrap_err();
        let lines = HEAD.lines().count();
        assert_eq!(line_of_error(&err), ("test.toml".to_owned(), lines + 4));
        assert!(err.to_string().contains("`checkup.nope`"), "{err}");
        assert!(err.to_string().contains("`test.toml`"), "{err}");
    }

    #[test]
    fn a_duplicate_code_is_a_parse_error_with_its_line() {
        let err = parse_with(
            "\n[items]\n\"9N001000000000001\" = { category = \"checkup.body\", name = \"a\" }\n\
             \"9N001000000000001\" = { category = \"checkup.body\", name = \"b\" }\n",
        )
        .unwrap_err();
        let lines = HEAD.lines().count();
        assert_eq!(line_of_error(&err).1, lines + 4);
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn an_item_in_a_derived_category_is_refused() {
        let err = parse_with(
            "\n[items]\n\"9N001000000000001\" = { category = \"checkup.attendance\", name = \"a\" }\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("derived"), "{err}");
    }

    #[test]
    fn an_exported_identifier_is_refused() {
        let text = HEAD.replace("insurance_number = false", "insurance_number = true");
        let err = parse("test.toml", &text).unwrap_err();
        let line = text
            .lines()
            .position(|l| l.starts_with("insurance_number"))
            .unwrap()
            + 1;
        assert_eq!(line_of_error(&err).1, line);
        assert!(err.to_string().contains("`insurance_number`"), "{err}");
    }

    #[test]
    fn unknown_fields_and_bad_names_are_refused() {
        assert!(parse_with("\n[categories.\"Checkup\"]\nja = \"x\"\nen = \"y\"\n").is_err());
        assert!(parse_with("\n[purposes.Bad_Name]\nja = \"x\"\nen = \"y\"\n").is_err());
        assert!(parse_with("\n[purposes.x]\nja = \"x\"\nen = \"y\"\ncolour = \"red\"\n").is_err());
        let err =
            parse_with("\n[items]\n\"123\" = { category = \"checkup.body\", name = \"a\" }\n")
                .unwrap_err();
        assert!(err.to_string().contains("`123`"), "{err}");
    }

    #[test]
    fn the_attendance_category_must_be_derived() {
        let text = HEAD.replace(
            "attendance_category = \"checkup.attendance\"",
            "attendance_category = \"checkup.body\"",
        );
        let err = parse("test.toml", &text).unwrap_err();
        assert_eq!(line_of_error(&err).1, 2);
    }
}
