//! The data catalog: categories, purposes, checkup item codes and the checkup header fields that may leave.

mod parse;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The catalog shipped with the crate (`policies/catalog.toml`).
pub(crate) const EMBEDDED_CATALOG: &str = include_str!("../catalog.toml");

/// The file name reported for errors in the embedded catalog.
pub(crate) const EMBEDDED_CATALOG_NAME: &str = "policies/catalog.toml";

/// A data category: the unit of consent and of encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryInfo {
    /// The category name, e.g. `checkup.lipids`.
    pub name: String,
    /// The group before the first dot, e.g. `checkup`.
    pub group: String,
    /// Japanese description shown to residents.
    pub ja: String,
    /// English description.
    pub en: String,
    /// True when the category has no item codes and the agent derives it.
    pub derived: bool,
}

/// A purpose of use a consent can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeInfo {
    /// The purpose name, e.g. `online-consultation`.
    pub name: String,
    /// Japanese description shown to residents.
    pub ja: String,
    /// English description.
    pub en: String,
    /// HL7 v3 PurposeOfUse code for FHIR Consent, if one fits.
    pub fhir: Option<String>,
}

/// One MHLW checkup item code and where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
    /// The 17-character item code (OID 1.2.392.200119.6.1005).
    pub code: String,
    /// The display name from the MHLW table.
    pub name: String,
    /// The category the item's value travels in.
    pub category: String,
    /// False when the value never leaves the LGWAN segment (names of people, film numbers).
    pub export: bool,
}

/// Which fields of a checkup record's header may leave the LGWAN segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckupContext {
    /// The fiscal year of the checkup (年度).
    pub fiscal_year: bool,
    /// The date of the checkup (健診実施日).
    pub exam_date: bool,
    /// The age at the checkup, computed inside the LGWAN segment.
    pub age_at_exam: bool,
    /// Sex (性別).
    pub sex: bool,
    /// Year and month of birth (生年月).
    pub birth_year_month: bool,
    /// Birth date (生年月日); always false.
    pub birth_date: bool,
    /// Name (氏名); always false.
    pub name: bool,
    /// Name in kana (カナ氏名); always false.
    pub name_kana: bool,
    /// Address (住所); always false.
    pub address: bool,
    /// Postal code (郵便番号); always false.
    pub postal_code: bool,
    /// Insurer number (保険者番号); always false.
    pub insurer_number: bool,
    /// Insurance card symbol (記号); always false.
    pub insurance_symbol: bool,
    /// Insurance card number (番号); always false.
    pub insurance_number: bool,
    /// Insurance card branch number (枝番); always false.
    pub insurance_branch: bool,
    /// Checkup facility number and name (健診実施機関).
    pub exam_facility: bool,
}

impl CheckupContext {
    /// The direct identifiers that must never leave, with their current setting.
    pub(crate) fn identifiers(&self) -> [(&'static str, bool); 9] {
        [
            ("birth_date", self.birth_date),
            ("name", self.name),
            ("name_kana", self.name_kana),
            ("address", self.address),
            ("postal_code", self.postal_code),
            ("insurer_number", self.insurer_number),
            ("insurance_symbol", self.insurance_symbol),
            ("insurance_number", self.insurance_number),
            ("insurance_branch", self.insurance_branch),
        ]
    }
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    source: String,
    attendance: Option<String>,
    context: CheckupContext,
    categories: BTreeMap<String, CategoryInfo>,
    purposes: BTreeMap<String, PurposeInfo>,
    items: BTreeMap<String, ItemInfo>,
}

impl Catalog {
    /// Reads and validates a catalog file; errors name the file and line.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&path.display().to_string(), &text)
    }

    /// Parses and validates catalog text; `name` is the file name used in errors.
    pub fn from_toml_str(name: &str, text: &str) -> Result<Self> {
        parse::parse(name, text)
    }

    /// The catalog embedded in the crate (`policies/catalog.toml`).
    pub fn embedded() -> Result<Self> {
        Self::from_toml_str(EMBEDDED_CATALOG_NAME, EMBEDDED_CATALOG)
    }

    /// The file name the catalog was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The category of a checkup item code, if the catalog knows the code.
    pub fn category_of(&self, item_code: &str) -> Option<&str> {
        self.items.get(item_code).map(|item| item.category.as_str())
    }

    /// One item code's entry.
    pub fn item(&self, code: &str) -> Option<&ItemInfo> {
        self.items.get(code)
    }

    /// All item codes, in code order.
    pub fn items(&self) -> impl Iterator<Item = &ItemInfo> {
        self.items.values()
    }

    /// All categories, in name order.
    pub fn categories(&self) -> impl Iterator<Item = &CategoryInfo> {
        self.categories.values()
    }

    /// One category's entry.
    pub fn category(&self, name: &str) -> Option<&CategoryInfo> {
        self.categories.get(name)
    }

    /// All purposes, in name order.
    pub fn purposes(&self) -> impl Iterator<Item = &PurposeInfo> {
        self.purposes.values()
    }

    /// One purpose's entry.
    pub fn purpose(&self, name: &str) -> Option<&PurposeInfo> {
        self.purposes.get(name)
    }

    /// True if `name` is a category of this catalog.
    pub fn is_category(&self, name: &str) -> bool {
        self.categories.contains_key(name)
    }

    /// True if `name` is a purpose of this catalog.
    pub fn is_purpose(&self, name: &str) -> bool {
        self.purposes.contains_key(name)
    }

    /// The derived category that stands for "attended a checkup in fiscal year N".
    pub fn attendance_category(&self) -> Option<&str> {
        self.attendance.as_deref()
    }

    /// Which checkup header fields may leave the LGWAN segment.
    pub fn checkup_context(&self) -> &CheckupContext {
        &self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_loads_and_has_the_design_categories() {
        let catalog = Catalog::embedded().unwrap();
        for name in [
            "checkup.body",
            "checkup.blood-pressure",
            "checkup.lipids",
            "checkup.liver",
            "checkup.glucose",
            "checkup.urine-kidney",
            "checkup.questionnaire",
            "checkup.judgement",
            "checkup.attendance",
            "kdb.medical-cost",
            "kdb.care",
            "insurer.cost-notice",
            "insurer.generic-drug-notice",
            "phr.vitals",
            "phr.medication",
        ] {
            assert!(catalog.is_category(name), "missing category {name}");
        }
        for name in [
            "phr-display",
            "online-consultation",
            "health-points",
            "care-prevention-evaluation",
            "child-health-followup",
        ] {
            assert!(catalog.is_purpose(name), "missing purpose {name}");
        }
        assert!(!catalog.is_category("checkup"));
        assert!(!catalog.is_purpose("marketing"));
    }

    #[test]
    fn items_resolve_to_their_category() {
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(
            catalog.category_of("3F015000002327101"),
            Some("checkup.lipids")
        );
        assert_eq!(
            catalog.category_of("9N001000000000001"),
            Some("checkup.body")
        );
        assert_eq!(
            catalog.category_of("3D046000001906202"),
            Some("checkup.glucose")
        );
        assert_eq!(
            catalog.category_of("9N701000000000011"),
            Some("checkup.questionnaire")
        );
        assert_eq!(catalog.category_of("0000000000000000X"), None);
        let item = catalog.item("9N506000000000011").unwrap();
        assert_eq!(item.name, "保健指導レベル");
        assert_eq!(item.category, "checkup.judgement");
        assert!(item.export);
    }

    #[test]
    fn names_of_doctors_do_not_leave() {
        let catalog = Catalog::embedded().unwrap();
        let item = catalog.item("9N516000000000049").unwrap();
        assert_eq!(item.name, "健康診断を実施した医師の氏名");
        assert!(!item.export);
        // Of the checkup items; the guidance items withheld (free text, the facility)
        // are checked against the guidance table in tests/it/catalog_table.rs.
        assert!(
            catalog
                .items()
                .filter(|i| !i.export && i.code.len() == 17)
                .all(|i| i.name.contains("氏名") || i.name.contains("フィルム番号"))
        );
    }

    #[test]
    fn attendance_is_derived_and_has_no_items() {
        let catalog = Catalog::embedded().unwrap();
        let attendance = catalog.attendance_category().unwrap();
        assert_eq!(attendance, "checkup.attendance");
        assert!(catalog.category(attendance).unwrap().derived);
        assert!(catalog.items().all(|item| item.category != attendance));
    }

    #[test]
    fn the_checkup_context_keeps_identifiers_in() {
        let context = *Catalog::embedded().unwrap().checkup_context();
        assert!(context.age_at_exam && context.fiscal_year);
        assert!(!context.birth_year_month && !context.birth_date && !context.name);
    }
}
