//! `evaluate` (issue 19): a programme's statistics computed inside LGWAN, with
//! disclosure control. One stratum has fewer than 10 participants: the report publishes
//! no statistic of it, and no way to work it out from what it does publish.

use std::collections::BTreeMap;
use std::path::Path;

use lgwan_agent::evaluate::{Program, Report, evaluate};
use serde_json::Value;

use crate::preview::agent;

const KDB: &str = "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";
const ROSTER: &str = "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別";

/// (sex code, birth year, persons, of them on the roster): ages at 2024-04-01 of
/// 40–64, 65–74 and 75+. Women of 65–74 have only 4 participants.
const STRATA: [(u8, i32, usize, usize); 6] = [
    (1, 1970, 30, 15),
    (2, 1970, 30, 15),
    (1, 1955, 24, 12),
    (2, 1955, 24, 4),
    (1, 1940, 20, 11),
    (2, 1940, 20, 10),
];

fn write_inputs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut kdb = format!("{KDB}\n");
    let mut roster = format!("{ROSTER}\n");
    let mut number = 0;
    for (sex, year, persons, enrolled) in STRATA {
        for i in 0..persons {
            number += 1;
            let id = format!("01130012,12,{number},01,{year}0615,{sex}");
            // Participants spend less in the second year.
            let (first, second) = if i < enrolled {
                (10_000 + 100 * i, 8_000 + 100 * i)
            } else {
                (10_000 + 100 * i, 11_000 + 100 * i)
            };
            kdb.push_str(&format!("{id},202406,,{first},,,{first}\n"));
            kdb.push_str(&format!("{id},202506,,{second},,,{second}\n"));
            if i < enrolled {
                roster.push_str(&format!("{id}\n"));
            }
        }
    }
    let (k, r) = (dir.join("kdb.csv"), dir.join("participants.csv"));
    std::fs::write(&k, kdb).unwrap();
    std::fs::write(&r, roster).unwrap();
    (k, r)
}

fn program(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("program.toml");
    std::fs::write(
        &path,
        r#"name = "walking-sib"
evaluator = "analyst:tsukuba"
baseline_year = 2024
years = [2024, 2025]
age_bands = [40, 65, 75]
roster = "participants.csv"

[[measures]]
name = "medical_cost"
table = "kdb-medical-cost"
code = "total-cost"
"#,
    )
    .unwrap();
    path
}

#[test]
fn a_small_stratum_publishes_nothing_and_cannot_be_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path());
    let (kdb, _) = write_inputs(dir.path());
    let program = Program::load(&program(dir.path())).unwrap();
    let (report, summary) = evaluate(&a, &program, &[kdb]).unwrap();
    assert_eq!((summary.population, summary.participants), (148, 67));
    assert_eq!(summary.roster_unmatched, 0);
    let text = serde_json::to_string(&report).unwrap();
    assert!(
        !text.contains("st1_") && !text.contains("01130012"),
        "{text}"
    );
    // Nothing suppressed can be worked out from the totals.
    assert_eq!(recover(&report), BTreeMap::new());

    let cell = |year: i32, sex: &str, band: &str, group: &str| {
        report
            .cells
            .iter()
            .find(|c| c.year == year && c.sex == sex && c.age_band == band && c.group == group)
            .unwrap()
    };
    for year in [2024, 2025] {
        // The small stratum: no count, no statistic.
        let small = cell(year, "female", "65-74", "participants");
        assert!(small.suppressed && small.n.is_none() && small.stats.is_none());
        // Its complement: the first published participants' cell in stratum order (men
        // of 40-64), chosen by its place, not its size; the others stay published.
        assert!(cell(year, "male", "40-64", "participants").suppressed);
        assert!(!cell(year, "female", "75+", "participants").suppressed);
        // The others of the same strata, and the totals, are published.
        assert_eq!(cell(year, "female", "65-74", "others").n, Some(20));
        assert_eq!(cell(year, "all", "all", "participants").n, Some(67));
        let diff = report
            .differences
            .iter()
            .find(|d| d.year == year && d.sex == "female" && d.age_band == "65-74")
            .unwrap();
        assert!(diff.suppressed && diff.difference.is_none());
    }
    // The programme worked: participants' cost fell against the others'.
    let men = report
        .differences
        .iter()
        .find(|d| d.year == 2025 && d.sex == "female" && d.age_band == "40-64")
        .unwrap();
    assert!(
        men.difference.unwrap() < 0.0 && men.ci95.unwrap()[1] < 0.0,
        "{men:?}"
    );
}

/// An attacker's try: for each year, measure and group, the total's persons and sum
/// minus the published cells' leave the suppressed cells' together; a lone suppressed
/// cell would be recovered. Returns what it recovered: `(year, group, stratum) → n`.
pub(crate) fn recover(report: &Report) -> BTreeMap<(i32, String, String), i64> {
    let mut out = BTreeMap::new();
    let json: Value = serde_json::to_value(report).unwrap();
    let cells = json["cells"].as_array().unwrap();
    let mut keys: Vec<(i64, String, String)> = cells
        .iter()
        .map(|c| {
            (
                c["year"].as_i64().unwrap(),
                c["measure"].as_str().unwrap().to_owned(),
                c["group"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    for (year, measure, group) in keys {
        let of: Vec<&Value> = cells
            .iter()
            .filter(|c| c["year"] == year && c["measure"] == measure && c["group"] == group)
            .collect();
        let Some(total) = of.iter().find(|c| c["sex"] == "all") else {
            continue;
        };
        if total["suppressed"] == true {
            continue;
        }
        let strata: Vec<&&Value> = of.iter().filter(|c| c["sex"] != "all").collect();
        let hidden: Vec<&&&Value> = strata.iter().filter(|c| c["suppressed"] == true).collect();
        if let [only] = hidden.as_slice() {
            let published: i64 = strata.iter().filter_map(|c| c["n"].as_i64()).sum();
            out.insert(
                (
                    year as i32,
                    group.clone(),
                    format!("{} {}", only["sex"], only["age_band"]),
                ),
                total["n"].as_i64().unwrap() - published,
            );
        }
    }
    out
}

#[test]
fn programme_files_that_would_publish_too_much_or_name_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let base = program(dir.path());
    let good = std::fs::read_to_string(&base).unwrap();
    for (text, needle) in [
        (
            good.replace("baseline_year", "threshold = 1\nbaseline_year"),
            "threshold",
        ),
        (good.replace("analyst:tsukuba", "clinic:mysos"), "evaluator"),
        (good.replace("[40, 65, 75]", "[65, 40]"), "age_bands"),
        (
            good.replace("code = \"total-cost\"\n", ""),
            "measure `medical_cost`",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = Program::load(&path).unwrap_err().to_string();
        assert!(err.contains("p.toml") && err.contains(needle), "{err}");
    }
}
