//! The MHLW checkup item table (`XMLhc18tab`, the UTF-8 copy in the repository's
//! `spec/tokutei-kenshin/`), embedded at build time: for each 17-digit item code its
//! XML data type, UCUM unit, series group (一連検査グループ) and relation in it,
//! identity name, and the OID of its result codes. The CDA reader takes group ids and
//! default result-code systems from here, the FHIR writer group names; the synthetic
//! archives take names and units.

pub(crate) mod guidance;

use std::collections::HashMap;
use std::sync::LazyLock;

/// The table as shipped (UTF-8, one header line, 21 columns, no quoted cells).
const ITEM_TABLE: &str = include_str!("../../spec/tokutei-kenshin/XMLhc18tab.utf8.csv");

/// One row of the item table; absent cells are `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ItemRow {
    /// The 17-digit item code (column 4).
    pub(crate) code: &'static str,
    /// The XML display name (column 5).
    pub(crate) name: &'static str,
    /// The XML data type: `PQ`, `CD`, `CO` or `ST` (column 7).
    pub(crate) kind: &'static str,
    /// The UCUM unit of a `PQ` item (column 11).
    pub(crate) ucum: Option<&'static str>,
    /// The item code of the series group the item belongs to (column 13). The
    /// group id is itself an item of the group (its 実施理由, 撮影年月日, …).
    pub(crate) group: Option<&'static str>,
    /// How the item hangs in its group: `COMP` or `RSON` (column 14).
    pub(crate) relation: Option<&'static str>,
    /// The name of the item's identity code (同一性項目名称, column 16): the examination
    /// the item is a result of (`血清クレアチニン`, `貧血検査`, `眼底検査`, …).
    pub(crate) identity_name: Option<&'static str>,
    /// The OID of the item's result codes, for `CD`/`CO` items (column 19).
    pub(crate) result_oid: Option<&'static str>,
}

static ROWS: LazyLock<HashMap<&'static str, ItemRow>> = LazyLock::new(|| {
    ITEM_TABLE
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&'static str> = line.trim_end_matches('\r').split(',').collect();
            let cell = |i: usize| cols.get(i).map(|c| c.trim()).filter(|c| !c.is_empty());
            let row = ItemRow {
                code: cell(3)?,
                name: cell(4).unwrap_or_default(),
                kind: cell(6).unwrap_or_default(),
                ucum: cell(10),
                group: cell(12),
                relation: cell(13),
                identity_name: cell(15),
                result_oid: cell(18),
            };
            Some((row.code, row))
        })
        .collect()
});

/// The row of `code`, if the table has it.
pub(crate) fn row(code: &str) -> Option<&'static ItemRow> {
    ROWS.get(code)
}

/// The series group of `code`, if the table puts it in one.
pub(crate) fn group_of(code: &str) -> Option<&'static str> {
    row(code).and_then(|r| r.group)
}

/// Whether `code` is a series group's id (the table puts its own item in its group).
pub(crate) fn is_group(code: &str) -> bool {
    row(code).is_some_and(|r| r.group == Some(r.code))
}

/// The name of the series group `group` (an item code the table names as a group id):
/// the identity name (同一性項目名称) of the group's own item, e.g. `血清クレアチニン` for
/// `3C015161002399949` (血清クレアチニン（実施理由）). The table has no column naming groups.
pub(crate) fn group_name(group: &str) -> Option<&'static str> {
    row(group)
        .filter(|r| r.group == Some(r.code))
        .and_then(|r| r.identity_name)
}

/// The OID of the result codes of `code`, if the table gives one.
pub(crate) fn result_oid(code: &str) -> Option<&'static str> {
    row(code).and_then(|r| r.result_oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_groups_and_result_systems() {
        assert_eq!(ROWS.len(), 299);
        let egfr = row("8A065000002391901").unwrap();
        assert_eq!(egfr.kind, "PQ");
        assert_eq!(egfr.ucum, Some("ml/min/1.73m2"));
        assert_eq!(egfr.group, Some("3C015161002399949"));
        assert_eq!(egfr.relation, Some("COMP"));
        // The group id is an item of its own group, hanging by RSON.
        let reason = row("3C015161002399949").unwrap();
        assert_eq!(
            (reason.group, reason.relation),
            (Some(reason.code), Some("RSON"))
        );
        assert_eq!(group_of("9N001000000000001"), None);
        assert_eq!(group_name("3C015161002399949"), Some("血清クレアチニン"));
        assert_eq!(group_name("2A020161001930149"), Some("貧血検査"));
        assert_eq!(group_name("9N001000000000001"), None, "no group id");
        assert_eq!(
            group_name("8A065000002391901"),
            None,
            "a member, not the group id"
        );
        // Every group id of the table is an item of its own group, and has a name.
        assert!(
            ROWS.values()
                .filter_map(|r| r.group)
                .all(|g| group_name(g).is_some())
        );
        assert_eq!(
            result_oid("3C015161602399911"),
            Some("1.2.392.200119.6.18110")
        );
        assert_eq!(result_oid("9N001000000000001"), None);
        assert!(row("0000000000000000X").is_none());
        // Every coded item names the system of its result codes.
        assert!(
            ROWS.values()
                .filter(|r| matches!(r.kind, "CD" | "CO"))
                .all(|r| r.result_oid.is_some())
        );
    }
}
