//! The MHLW item codes a synthetic checkup carries and how each value is invented,
//! resolved against the embedded item table (`XMLhc18tab.utf8.csv`).

use std::io;

/// The MHLW checkup item table (UTF-8 copy), in the repository's `spec/tokutei-kenshin/`.
const ITEM_TABLE: &str = include_str!("../../../spec/tokutei-kenshin/XMLhc18tab.utf8.csv");
pub(super) const ITEM_OID: &str = "1.2.392.200119.6.1005";

/// How an item's value is invented.
#[derive(Clone, Copy, Debug)]
pub(super) enum Gen {
    /// A decimal in `[lo, hi)` with this many decimals (PQ).
    Pq(f64, f64, usize),
    /// One of these codes (CD/CO).
    Code(&'static [&'static str]),
    /// One of these texts (ST).
    Text(&'static [&'static str]),
}

/// An item code and how its value is invented.
type Spec = (&'static str, Gen);
/// A resolved item and how its value is invented.
pub(super) type Entry = (Item, Gen);
/// A series group: its head (the group id) and its members.
pub(super) type Group = (Entry, Vec<Entry>);

const YES_NO: Gen = Gen::Code(&["1", "2"]);
const ONE_TO_THREE: Gen = Gen::Code(&["1", "2", "3"]);

/// Items every synthetic checkup carries.
const BASE_ITEMS: &[Spec] = &[
    ("9N001000000000001", Gen::Pq(145.0, 185.0, 1)), // 身長 cm
    ("9N006000000000001", Gen::Pq(42.0, 95.0, 1)),   // 体重 kg
    ("9N011000000000001", Gen::Pq(17.0, 32.0, 1)),   // BMI
    ("9N016160100000001", Gen::Pq(65.0, 105.0, 1)),  // 腹囲(実測)
    ("9A751000000000001", Gen::Pq(100.0, 160.0, 0)), // 収縮期血圧(1回目)
    ("9A761000000000001", Gen::Pq(60.0, 100.0, 0)),  // 拡張期血圧(1回目)
    ("9N121000000000001", Gen::Pq(55.0, 95.0, 0)),   // 心拍数
    ("9N141000000000011", YES_NO),                   // 採血時間 CD
    ("3F015000002327101", Gen::Pq(50.0, 300.0, 0)),  // 中性脂肪
    ("3F070000002327101", Gen::Pq(35.0, 90.0, 0)),   // HDL
    ("3F077000002327101", Gen::Pq(70.0, 180.0, 0)),  // LDL
    ("3B035000002327201", Gen::Pq(12.0, 45.0, 0)),   // AST
    ("3B045000002327201", Gen::Pq(8.0, 50.0, 0)),    // ALT
    ("3B090000002327101", Gen::Pq(10.0, 120.0, 0)),  // γ-GT
    ("3D010000001926101", Gen::Pq(75.0, 140.0, 0)),  // 空腹時血糖
    ("3D046000001906202", Gen::Pq(4.8, 7.5, 1)),     // HbA1c %
    ("1A020000000191111", Gen::Code(&["1", "1", "2"])), // 尿糖 CO
    ("1A010000000191111", ONE_TO_THREE),             // 尿蛋白 CO
    (
        "9N051000000000049",
        Gen::Text(&["事務職", "製造業", "農業", "無職"]),
    ), // 業務歴 ST
    ("9N701000000000011", YES_NO),                   // 服薬1(血圧)
    ("9N736000000000011", YES_NO),                   // 喫煙
    ("9N791000000000011", ONE_TO_THREE),             // 飲酒量 CO
    ("9N501000000000011", ONE_TO_THREE),             // メタボリックシンドローム判定
    ("9N506000000000011", ONE_TO_THREE),             // 保健指導レベル
];
/// The second blood-pressure reading, on every other document.
const SECOND_BP: &[Spec] = &[
    ("9A752000000000001", Gen::Pq(100.0, 160.0, 0)),
    ("9A762000000000001", Gen::Pq(60.0, 100.0, 0)),
];
/// Series groups: the group-id item is the parent observation, the members hang
/// under it through `entryRelationship` with the relation code from the table.
const GROUPS: &[(Spec, &[Spec])] = &[
    (
        ("3C015161002399949", Gen::Text(&["腎機能確認のため"])),
        &[
            ("3C015000002327101", Gen::Pq(0.5, 1.3, 2)),
            ("8A065000002391901", Gen::Pq(45.0, 110.0, 1)),
            ("3C015161602399911", YES_NO),
        ],
    ),
    (
        ("2A020161001930149", Gen::Text(&["貧血の既往あり"])),
        &[
            ("2A040000001930102", Gen::Pq(35.0, 48.0, 1)),
            ("2A030000001930101", Gen::Pq(11.0, 16.0, 1)),
            ("2A020000001930101", Gen::Pq(380.0, 520.0, 0)),
        ],
    ),
];
const DOCTOR_JUDGEMENT: &str = "9N511000000000049";

/// One row of the item table, borrowed from the embedded CSV.
#[derive(Clone, Copy, Debug)]
pub(super) struct Item {
    pub(super) code: &'static str,
    pub(super) name: &'static str,
    pub(super) kind: &'static str,
    pub(super) ucum: &'static str,
    pub(super) relation: &'static str,
    pub(super) oid: &'static str,
}

/// The items a synthetic checkup uses, resolved against the item table.
#[derive(Debug)]
pub(super) struct Catalog {
    pub(super) base: Vec<Entry>,
    pub(super) second_bp: Vec<Entry>,
    pub(super) groups: Vec<Group>,
    pub(super) doctor: Item,
}

impl Catalog {
    pub(super) fn load() -> io::Result<Catalog> {
        let resolve = |list: &[Spec]| -> io::Result<Vec<Entry>> {
            list.iter()
                .map(|&(code, g)| Ok((item(code, g)?, g)))
                .collect()
        };
        let groups = GROUPS
            .iter()
            .map(|&((code, g), members)| Ok(((item(code, g)?, g), resolve(members)?)))
            .collect::<io::Result<_>>()?;
        Ok(Catalog {
            base: resolve(BASE_ITEMS)?,
            second_bp: resolve(SECOND_BP)?,
            groups,
            doctor: item(DOCTOR_JUDGEMENT, Gen::Text(&[]))?,
        })
    }
}

/// Looks `code` up in the item table and checks its type fits `gen`.
fn item(code: &str, gen_: Gen) -> io::Result<Item> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
    let row = ITEM_TABLE
        .lines()
        .skip(1)
        .map(|line| line.trim_end_matches('\r').split(',').collect::<Vec<_>>())
        .find(|cols| cols.get(3).map(|c| c.trim()) == Some(code))
        .ok_or_else(|| invalid(format!("item code `{code}` is not in the item table")))?;
    let col = |i: usize| row.get(i).map_or("", |c| c.trim());
    let found = Item {
        code: col(3),
        name: col(4),
        kind: col(6),
        ucum: col(10),
        relation: col(13),
        oid: col(18),
    };
    let fits = match gen_ {
        Gen::Pq(..) => found.kind == "PQ",
        Gen::Code(_) => matches!(found.kind, "CD" | "CO"),
        Gen::Text(_) => found.kind == "ST",
    };
    if !fits {
        return Err(invalid(format!("item `{code}` has type `{}`", found.kind)));
    }
    Ok(found)
}

/// Display names of result codes, where the code table is well known.
pub(super) fn code_display(oid: &str, code: &str) -> Option<&'static str> {
    Some(match (oid, code) {
        ("1.2.392.200119.6.2003", "1") => "はい",
        ("1.2.392.200119.6.2003", "2") => "いいえ",
        ("1.2.392.200119.6.1008", "1") => "基準該当",
        ("1.2.392.200119.6.1008", "2") => "予備群該当",
        ("1.2.392.200119.6.1008", "3") => "非該当",
        ("1.2.392.200119.6.3001", "1") => "積極的支援",
        ("1.2.392.200119.6.3001", "2") => "動機付け支援",
        ("1.2.392.200119.6.3001", "3") => "なし",
        ("1.2.392.200119.6.2102", "1") => "－",
        ("1.2.392.200119.6.2102", "2") => "±",
        ("1.2.392.200119.6.2102", "3") => "＋",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_resolves_with_its_table_row() {
        let cat = Catalog::load().unwrap();
        assert_eq!(cat.base.len(), BASE_ITEMS.len());
        let (bp, _) = cat.second_bp[0];
        assert_eq!((bp.name, bp.ucum), ("収縮期血圧(2回目)", "mm[Hg]"));
        let (_, members) = &cat.groups[0];
        assert_eq!(members[1].0.relation, "COMP");
        assert_eq!(members[2].0.oid, "1.2.392.200119.6.18110");
        assert!(item("0000000000000000", Gen::Text(&[])).is_err());
        // A PQ item cannot take a text generator.
        assert!(item("9N001000000000001", Gen::Text(&["x"])).is_err());
    }
}
