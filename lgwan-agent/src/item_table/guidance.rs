//! The MHLW guidance item table (`XMLhg18tab`, the UTF-8 copy in the repository's
//! `spec/tokutei-kenshin/`), embedded at build time. The guidance document
//! (`hg08_V08.xsd`) records each session of 特定保健指導 as an `act`: its `code` is the
//! session's form (支援形態) in the code system the table gives the form item, its
//! `effectiveTime` the session's date, its `performer` who held it, and its results
//! hang under it as observations with 10-digit item codes (OID 1.2.392.200119.6.1006).
//! The table groups a session's items under one entry name (初回面接実施情報,
//! 中間評価情報, …); this module reads those groups so that an act can be matched to
//! its form, date and performer items.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The table as shipped (UTF-8; a header spread over several lines, then one line per
/// item, 12 columns, no quoted cells in item lines).
const TABLE: &str = include_str!("../../../spec/tokutei-kenshin/XMLhg18tab.utf8.csv");

/// The OID of the guidance item codes (the XSD's default `codeSystem` of an
/// observation's `code`).
pub(crate) const GUIDANCE_ITEM_OID: &str = "1.2.392.200119.6.1006";

/// The OID of the table that codes who held a session (医師, 保健師, …).
pub(crate) const PERFORMER_OID: &str = "1.2.392.200119.6.3020";

/// One item of the guidance table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuidanceItem {
    /// The 10-digit item code (column 3).
    pub(crate) code: &'static str,
    /// The item name (column 4).
    pub(crate) name: &'static str,
    /// The data type (column 5): 数字, コード, 漢字 or 年月日.
    pub(crate) kind: &'static str,
    /// The UCUM unit of a number item (column 10), if the table gives one.
    pub(crate) ucum: Option<&'static str>,
    /// The OID of the item's codes (column 11), for coded items.
    pub(crate) oid: Option<&'static str>,
}

/// A session form: the act whose `code` is in `system` and one of `codes` is a session
/// of the entry group that holds these items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// The item the act's `code` is the value of (…の支援形態).
    pub(crate) form: &'static str,
    /// The code system of the act's `code`.
    pub(crate) system: &'static str,
    /// The codes the table's remarks list for the form (`1：個別支援Ａ、3：…`).
    pub(crate) codes: Vec<String>,
    /// The item the act's `effectiveTime` is the value of (…の実施日付), if any.
    pub(crate) date: Option<&'static str>,
    /// The item the act's performer's `code` is the value of (…の実施者), if any.
    pub(crate) performer: Option<&'static str>,
}

struct Table {
    items: HashMap<&'static str, GuidanceItem>,
    sessions: Vec<Session>,
}

static TABLE_ROWS: LazyLock<Table> = LazyLock::new(|| {
    let mut items = HashMap::new();
    let mut sessions = Vec::new();
    // The rows of the current entry group: (item, data type, observation class, remarks).
    let mut group: Vec<(GuidanceItem, &'static str, &'static str, &'static str)> = Vec::new();
    for line in TABLE.lines() {
        let cols: Vec<&'static str> = line.trim_end_matches('\r').split(',').collect();
        let cell = |i: usize| cols.get(i).map(|c| c.trim()).unwrap_or_default();
        let code = cell(2);
        if code.len() != 10 || !code.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A new entry name opens a group, as does a repeated one (支援A then 支援Ｂ).
        if !cell(0).is_empty() {
            sessions.extend(session_of(&group));
            group.clear();
        }
        let item = GuidanceItem {
            code,
            name: cell(3),
            kind: cell(4),
            ucum: Some(cell(9)).filter(|u| !u.is_empty()),
            oid: Some(cell(10)).filter(|o| !o.is_empty()),
        };
        items.insert(code, item);
        group.push((item, cell(4), cell(7), cell(11)));
    }
    sessions.extend(session_of(&group));
    Table { items, sessions }
});

/// The session form of an entry group: its coded item that is not an observation
/// (the act's own `code`) and is not the performer, with the group's date and
/// performer items.
fn session_of(
    group: &[(GuidanceItem, &'static str, &'static str, &'static str)],
) -> Option<Session> {
    let not_observation = |class: &str| class != "OBS";
    let (form, _, _, remarks) = group.iter().find(|(item, kind, class, _)| {
        *kind == "コード" && not_observation(class) && item.oid != Some(PERFORMER_OID)
    })?;
    let date = group
        .iter()
        .find(|(_, kind, class, _)| *kind == "年月日" && not_observation(class))
        .map(|(item, ..)| item.code);
    let performer = group
        .iter()
        .find(|(item, _, class, _)| item.oid == Some(PERFORMER_OID) && not_observation(class))
        .map(|(item, ..)| item.code);
    Some(Session {
        form: form.code,
        system: form.oid?,
        codes: listed_codes(remarks),
        date,
        performer,
    })
}

/// The codes a remark lists, as in `1：個別支援Ａ、3：グループ支援` (full- or half-width
/// digits and colons): `["1", "3"]`.
fn listed_codes(remarks: &str) -> Vec<String> {
    remarks
        .split(['、', ','])
        .filter_map(|part| {
            let folded: String = part.trim().chars().map(crate::domain::fold_width).collect();
            let (code, _) = folded.split_once(':')?;
            let code = code.trim();
            (!code.is_empty() && code.bytes().all(|b| b.is_ascii_digit())).then(|| code.to_owned())
        })
        .collect()
}

/// The item of `code`, if the table has it.
pub(crate) fn item(code: &str) -> Option<&'static GuidanceItem> {
    TABLE_ROWS.items.get(code)
}

/// The session an act coded `code` in `system` is, if the table has such a form.
pub(crate) fn session(system: &str, code: &str) -> Option<&'static Session> {
    TABLE_ROWS
        .sessions
        .iter()
        .find(|s| s.system == system && s.codes.iter().any(|c| c == code))
}

/// Whether `system` is the code system of some session form.
pub(crate) fn is_session_system(system: &str) -> bool {
    TABLE_ROWS.sessions.iter().any(|s| s.system == system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_sessions_of_the_table() {
        assert_eq!(TABLE_ROWS.items.len(), 91);
        let waist = item("1042001031").unwrap();
        assert_eq!(
            (waist.name, waist.ucum),
            ("3か月後の評価時の腹囲", Some("cm"))
        );
        let first = session("1.2.392.200119.6.18140", "1").unwrap();
        assert_eq!(first.form, "1022000012");
        assert_eq!(first.date, Some("1022000011"));
        assert_eq!(first.performer, Some("1022000015"));
        let last = session("1.2.392.200119.6.3005", "3").unwrap();
        assert_eq!(
            (last.form, last.date, last.performer),
            ("1042000012", Some("1042000011"), Some("1042000015"))
        );
        // 支援A and 支援B share a code system; their codes tell them apart.
        assert_eq!(
            session("1.2.392.200119.6.1113", "1").unwrap().form,
            "1032100012"
        );
        assert_eq!(
            session("1.2.392.200119.6.1113", "2").unwrap().form,
            "1032200012"
        );
        assert_eq!(session("1.2.392.200119.6.1113", "9"), None);
        assert_eq!(
            session("1.2.392.200119.6.3001", "1"),
            None,
            "保健指導区分 is an observation"
        );
        assert!(is_session_system("1.2.392.200119.6.3004"));
        assert!(!is_session_system(PERFORMER_OID));
    }
}
