//! The catalog against the MHLW checkup and guidance item-code tables: every code
//! mapped exactly once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use renkei_policies::Catalog;

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/tokutei-kenshin")
}

/// Item codes (column 4) of the original CP932 table. The codes are ASCII, and CP932
/// trail bytes are never `,` or a line end, so the bytes can be split as they are.
fn table_codes() -> Vec<String> {
    let bytes = std::fs::read(spec_dir().join("XMLhc18tab.csv")).unwrap();
    bytes
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| line.split(|&b| b == b',').nth(3))
        .map(|field| String::from_utf8(field.to_vec()).unwrap().trim().to_owned())
        .filter(|code| !code.is_empty())
        .collect()
}

/// Item codes (column 3) of the guidance table (XMLhg18tab, UTF-8 copy): its header
/// spans several lines, so only lines whose third cell is a 10-digit code count.
fn guidance_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(spec_dir().join("XMLhg18tab.utf8.csv")).unwrap();
    text.lines()
        .map(|line| line.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > 3 && f[2].len() == 10 && f[2].bytes().all(|b| b.is_ascii_digit()))
        .map(|f| {
            (
                f[2].to_owned(),
                f[3].split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

#[test]
fn every_guidance_code_is_mapped_once_with_its_name_to_a_guidance_category() {
    let catalog = Catalog::embedded().unwrap();
    let rows = guidance_rows();
    assert_eq!(rows.len(), 91);
    let text =
        std::fs::read_to_string(renkei_policies::default_dir().join("catalog.toml")).unwrap();
    for (code, name) in &rows {
        let item = catalog
            .item(code)
            .unwrap_or_else(|| panic!("{code} is not mapped"));
        assert_eq!(&item.name, name, "code {code}");
        assert!(
            item.category.starts_with("guidance."),
            "{code}: {}",
            item.category
        );
        let keys = text
            .lines()
            .filter(|line| line.starts_with(&format!("\"{code}\" =")))
            .count();
        assert_eq!(keys, 1, "code {code}");
    }
    // Free text and the guidance facility never leave the LGWAN segment.
    for code in [
        "1020000003",
        "1022000090",
        "1042001090",
        "1042000081",
        "1042000082",
    ] {
        assert!(!catalog.item(code).unwrap().export, "{code}");
    }
    assert!(catalog.item("1042001032").unwrap().export, "3か月後の体重");
}

#[test]
fn the_table_has_the_expected_shape() {
    let codes = table_codes();
    assert_eq!(codes.len(), 299);
    assert!(codes.iter().all(|code| code.len() == 17), "{codes:?}");
}

#[test]
fn every_table_code_is_mapped_exactly_once() {
    let catalog = Catalog::embedded().unwrap();
    let codes = table_codes();
    let mut seen = BTreeMap::<&str, usize>::new();
    for code in &codes {
        *seen.entry(code.as_str()).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "codes twice in the table: {doubled:?}");
    let unmapped: Vec<_> = seen
        .keys()
        .filter(|code| catalog.category_of(code).is_none())
        .collect();
    assert!(
        unmapped.is_empty(),
        "codes without a category: {unmapped:?}"
    );
    // The catalog text itself: each code appears as a key on exactly one line.
    let text =
        std::fs::read_to_string(renkei_policies::default_dir().join("catalog.toml")).unwrap();
    for code in seen.keys() {
        let keys = text
            .lines()
            .filter(|line| line.trim_start().starts_with(&format!("\"{code}\" =")))
            .count();
        assert_eq!(
            keys, 1,
            "code {code} is a key on {keys} lines of catalog.toml"
        );
    }
}

#[test]
fn every_catalog_code_is_in_the_table() {
    let catalog = Catalog::embedded().unwrap();
    let mut codes = table_codes();
    codes.extend(guidance_rows().into_iter().map(|(code, _)| code));
    let extra: Vec<_> = catalog
        .items()
        .filter(|item| !codes.contains(&item.code))
        .map(|item| item.code.clone())
        .collect();
    assert!(
        extra.is_empty(),
        "catalog codes not in the table: {extra:?}"
    );
    assert_eq!(catalog.items().count(), codes.len());
}

#[test]
fn item_names_match_the_utf8_table() {
    let catalog = Catalog::embedded().unwrap();
    let text = std::fs::read_to_string(spec_dir().join("XMLhc18tab.utf8.csv")).unwrap();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (code, name) = (fields[3].trim(), fields[4]);
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(catalog.item(code).unwrap().name, name, "code {code}");
    }
}

#[test]
fn every_category_has_descriptions_and_checkup_items_land_in_checkup_categories() {
    let catalog = Catalog::embedded().unwrap();
    for category in catalog.categories() {
        assert!(
            !category.ja.is_empty() && !category.en.is_empty(),
            "{}",
            category.name
        );
    }
    for purpose in catalog.purposes() {
        assert!(
            !purpose.ja.is_empty() && !purpose.en.is_empty(),
            "{}",
            purpose.name
        );
    }
    assert!(catalog.items().all(|item| {
        let prefix = match item.code.len() {
            10 => "guidance.",
            _ => "checkup.",
        };
        item.category.starts_with(prefix)
    }));
    // Every non-derived checkup category is used by some item.
    for category in catalog
        .categories()
        .filter(|c| c.group == "checkup" && !c.derived)
    {
        assert!(
            catalog.items().any(|item| item.category == category.name),
            "checkup category {} has no item",
            category.name
        );
    }
}

#[test]
fn spot_checks_of_the_mapping() {
    let catalog = Catalog::embedded().unwrap();
    let expect = [
        ("9N016160100000001", "checkup.body"),             // 腹囲(実測)
        ("9A751000000000001", "checkup.blood-pressure"),   // 収縮期血圧(1回目)
        ("9N141000000000011", "checkup.lipids"),           // 採血時間(食後)
        ("3B090000002327101", "checkup.liver"),            // γ-GT
        ("3D010129901926101", "checkup.glucose"),          // 随時血糖
        ("8A065000002391901", "checkup.urine-kidney"),     // eGFR
        ("9N701000000000011", "checkup.questionnaire"),    // 服薬1(血圧)
        ("9N741000000000011", "checkup.questionnaire"),    // 20歳からの体重変化
        ("9N501000000000011", "checkup.judgement"),        // メタボリックシンドローム判定
        ("9N056000000000011", "checkup.history"),          // 既往歴
        ("9A110160700000011", "checkup.ecg"),              // 心電図(所見の有無)
        ("9E100166000000011", "checkup.eye"),              // 眼底検査(キースワグナー分類)
        ("1B030000001599811", "checkup.cancer-screening"), // 便潜血
        ("9N581161300000011", "checkup.cancer-screening"), // 医師の診断(肺がん検診)
        ("5F016141002399811", "checkup.infection"),        // HBs抗原
        ("9N811000000000011", "checkup.life-function"),    // 生活機能問診1
        ("9N576000000000049", "checkup.life-function"),    // its doctor's name
        ("2A030000001930101", "checkup.blood-count"),      // 血色素量
    ];
    for (code, category) in expect {
        assert_eq!(catalog.category_of(code), Some(category), "code {code}");
    }
}
