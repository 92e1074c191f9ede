//! KDB and insurer-notice CSVs: encoding detection, mapping by header, row errors.

use std::path::Path;

use lgwan_agent::config::Config;
use lgwan_agent::quarantine::Reason;
use lgwan_agent::tabular::{RowIdentity, TableItem, TableRow, read_table, row_bundle};

use crate::fixture;
use crate::preview::{agent, run_preview};

fn mappings() -> Config {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path());
    a.config.clone()
}

/// Rows (with their mapping), quarantine reasons, and the entries they name.
type Read = (Vec<(usize, TableRow)>, Vec<Reason>, Vec<Option<String>>);

fn read(path: &Path, config: &Config) -> Read {
    let (mut rows, mut reasons, mut entries) = (Vec::new(), Vec::new(), Vec::new());
    read_table(path, &config.tables, 1 << 20, &mut |item| match item {
        TableItem::Row(m, r) => rows.push((m, r)),
        TableItem::Quarantined(q) => {
            reasons.push(q.reason);
            entries.push(q.entry);
        }
    });
    (rows, reasons, entries)
}

#[test]
fn cp932_and_utf8_exports_read_the_same() {
    let config = mappings();
    let (sjis, bad1, _) = read(&fixture("csv/kdb_medical_cost_cp932.csv"), &config);
    let (utf8, bad2, _) = read(&fixture("csv/kdb_medical_cost_utf8.csv"), &config);
    assert!(bad1.is_empty() && bad2.is_empty(), "{bad1:?} {bad2:?}");
    assert_eq!(sjis.len(), 10);
    assert_eq!(sjis, utf8);
    assert_eq!(config.tables[sjis[0].0].name, "kdb-medical-cost");
    assert_eq!(sjis[0].1.effective_date.to_string(), "2024-04-01");
    // The record keeps the precision of the source: a month (`%Y%m`), not a day.
    let (m, row) = &sjis[0];
    let bundle = row_bundle(&config.tables[*m], row);
    assert_eq!(
        bundle["entry"][0]["resource"]["effectiveDateTime"],
        "2024-04"
    );
    let (care, _, _) = read(&fixture("csv/kdb_care_utf8.csv"), &config);
    let (m, row) = &care[0];
    let bundle = row_bundle(&config.tables[*m], row);
    let day = bundle["entry"][0]["resource"]["effectiveDateTime"]
        .as_str()
        .unwrap();
    assert_eq!(day, row.effective_date.to_string());
    // Full-width 記号・番号 in the generic-drug notice are kept as written.
    let (generic, _, _) = read(&fixture("csv/notice_generic_utf8.csv"), &config);
    assert_eq!(
        config.tables[generic[0].0].category,
        "insurer.generic-drug-notice"
    );
    assert!(
        generic
            .iter()
            .any(|(_, r)| number(r).chars().any(|c| c > '\u{ff00}'))
    );
}

#[test]
fn same_rows_in_either_encoding_give_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    let (a, _) = run_preview(&agent, &[fixture("csv/kdb_medical_cost_cp932.csv")]);
    let (b, _) = run_preview(&agent, &[fixture("csv/kdb_medical_cost_utf8.csv")]);
    assert_eq!(a, b);
    let entry = &a[0]["payload"]["entry"][0]["resource"];
    assert_eq!(entry["valueQuantity"]["code"], "JPY");
    assert_eq!(a[0]["category"], "kdb.medical-cost");
}

#[test]
fn bad_rows_are_quarantined_by_column_and_the_rest_read() {
    let config = mappings();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kdb.csv");
    let header = "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";
    let body = [
        "138016,見本1,12345,01,見本　太郎,1970/01/02,男,202404,0,100,0,0,100",
        "138016,見本1,12345,01,見本　太郎,1970/13/02,男,202404,0,100,0,0,100",
        "138016,見本1,12345,01,見本　太郎,1970/01/02,男,202404,0,abc,0,0,100",
        "138016,見本1,12345,01,見本　太郎,1970/01/02,男,2024-04,0,100,0,0,100",
    ];
    std::fs::write(&path, format!("{header}\n{}\n", body.join("\n"))).unwrap();
    let (rows, reasons, entries) = read(&path, &config);
    assert_eq!(rows.len(), 1);
    let messages: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert!(
        messages[0].contains("`生年月日`") && !messages[0].contains("1970"),
        "{messages:?}"
    );
    assert!(messages[1].contains("`入院外医療費`") && messages[1].contains("`abc`"));
    assert!(messages[2].contains("`診療年月`"));
    assert_eq!(entries[0].as_deref(), Some("record 3"));
}

/// An amount of yen is one optional minus sign and at least one digit: a cell of signs
/// alone is not a number, and must never reach a record as `"value": "--"`.
#[test]
fn an_amount_of_signs_alone_is_refused() {
    let config = mappings();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kdb.csv");
    let header = "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";
    let rows: Vec<String> = ["-", "--", "--5", "-5-", "－１,２００", "-1,200", "0"]
        .iter()
        .map(|amount| {
            format!("138016,見本1,12345,01,見本　太郎,1970/01/02,男,202404,0,\"{amount}\",0,0,100")
        })
        .collect();
    std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let (rows, reasons, _) = read(&path, &config);
    let messages: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    for (message, amount) in messages.iter().zip(["-", "--", "--5", "-5-"]) {
        assert!(
            message.contains("`入院外医療費`") && message.contains(&format!("`{amount}`")),
            "{message}"
        );
    }
    let amounts: Vec<&str> = rows
        .iter()
        .filter_map(|(_, r)| r.cells.iter().find(|(i, _)| *i == 1))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(amounts, ["-1200", "-1200", "0"]);
}

/// A quote left open swallows the rows after it into one record: the quarantine names
/// every line that record took, so the persons on them are not lost without a word.
#[test]
fn an_unclosed_quote_names_every_line_it_swallowed() {
    let config = mappings();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kdb.csv");
    let header = "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";
    let row = |n: u32, name: &str| {
        format!("138016,見本1,{n},01,{name},1970/01/02,男,202404,0,100,0,0,100")
    };
    let body = [
        row(1, "見本　一郎"),
        row(2, "\"見本　二郎"),
        row(3, "見本　三郎"),
        row(4, "見本　四郎"),
    ];
    std::fs::write(&path, format!("{header}\n{}\n", body.join("\n"))).unwrap();
    let (rows, reasons, entries) = read(&path, &config);
    assert_eq!(rows.len(), 1);
    let messages: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert_eq!(
        entries,
        [Some("record 3, lines 3–5".to_owned())],
        "{messages:?}"
    );
    assert!(messages[0].contains("quote"), "{messages:?}");
}

#[test]
fn unknown_header_and_bad_bytes() {
    let config = mappings();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.csv");
    std::fs::write(&path, "a,b\n1,2\n").unwrap();
    let (rows, reasons, _) = read(&path, &config);
    assert!(rows.is_empty());
    assert!(matches!(&reasons[..], [Reason::Csv(m)] if m.contains("no column mapping")));
    // Neither UTF-8 nor CP932: a lone lead byte at the end.
    let header = "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,認定日,要介護度,介護給付費\n";
    let mut bytes = encoding_rs::SHIFT_JIS.encode(header).0.into_owned();
    bytes.extend_from_slice(b"138016,,1,,x,1970/01/02,1,20240401,1,100\n");
    bytes.push(0x82);
    let path = dir.path().join("care.csv");
    std::fs::write(&path, bytes).unwrap();
    let (rows, reasons, _) = read(&path, &config);
    assert_eq!(rows.len(), 1);
    assert!(
        matches!(&reasons[..], [Reason::Encoding(m)] if m.contains("Shift_JIS")),
        "{reasons:?}"
    );
}

/// A column the mapping reads, named twice in the header (legal CSV): which one holds
/// the birth date cannot be told, so the file is set aside rather than read from either.
#[test]
fn a_mapped_column_named_twice_sets_the_file_aside() {
    let config = mappings();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("care.csv");
    let header = "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,認定日,要介護度,介護給付費";
    std::fs::write(
        &path,
        format!("{header}\n138016,,1,,x,1970/01/02,1,20240401,1,100\n"),
    )
    .unwrap();
    assert_eq!(read(&path, &config).0.len(), 1);
    std::fs::write(
        &path,
        format!("{header},生年月日\n138016,,1,,x,1970/01/02,1,20240401,1,100,1999/09/09\n"),
    )
    .unwrap();
    let (rows, reasons, _) = read(&path, &config);
    assert!(rows.is_empty());
    assert!(
        matches!(&reasons[..], [Reason::Csv(m)] if m.contains("`生年月日` more than once")),
        "{reasons:?}"
    );
    // The optional 宛名番号 too: it links a resident's tokens.
    std::fs::write(
        &path,
        format!("{header},宛名番号,宛名番号\n138016,,1,,x,1970/01/02,1,20240401,1,100,7,8\n"),
    )
    .unwrap();
    let (rows, reasons, _) = read(&path, &config);
    assert!(rows.is_empty());
    assert!(
        matches!(&reasons[..], [Reason::Csv(m)] if m.contains("`宛名番号` more than once")),
        "{reasons:?}"
    );
    // A column no mapping reads may repeat.
    std::fs::write(
        &path,
        format!("{header},備考,備考\n138016,,1,,x,1970/01/02,1,20240401,1,100,a,b\n"),
    )
    .unwrap();
    assert_eq!(read(&path, &config).0.len(), 1);
}

/// One bad CP932 byte sets aside its row, named by file and line, not the file.
#[test]
fn a_bad_byte_sets_aside_only_its_row() {
    let config = mappings();
    let dir = tempfile::tempdir().unwrap();
    let header = "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";
    let row =
        |n: u32| format!("138016,見本{n},{n},01,見本　太郎,1970/01/02,男,202404,0,100,0,0,100");
    let text = format!(
        "{header}\n{}\n{}\n\"{}\n\",x\n{}\n",
        row(1),
        row(2),
        "見本",
        row(4)
    );
    let mut bytes = encoding_rs::SHIFT_JIS.encode(&text).0.into_owned();
    // A lead byte followed by a space on line 3 (the second row), as in a broken export.
    let second = bytes
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == &encoding_rs::SHIFT_JIS.encode("見").0.as_ref())
        .map(|(i, _)| i)
        .nth(2)
        .unwrap();
    bytes[second] = 0x81;
    bytes[second + 1] = b' ';
    let path = dir.path().join("kdb_bad_byte.csv");
    std::fs::write(&path, &bytes).unwrap();
    let (rows, reasons, entries) = read(&path, &config);
    let numbers: Vec<&str> = rows.iter().map(|(_, r)| number(r)).collect();
    assert_eq!(numbers, ["1", "4"], "{reasons:?}");
    // The bad row, then the ragged record spanning lines 4 and 5.
    assert_eq!(entries[0].as_deref(), Some("line 3"));
    assert!(
        matches!(&reasons[0], Reason::Encoding(m) if m.contains("not valid Shift_JIS near byte")),
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let q = lgwan_agent::quarantine::Quarantine::new(
        path.display().to_string(),
        entries[0].clone(),
        reasons[0].clone(),
    );
    assert!(
        q.to_string().contains("kdb_bad_byte.csv` entry `line 3`"),
        "{q}"
    );
}

/// An attendance list (がん検診 or 歯科健診) leaves LGWAN as "attended in fiscal year N"
/// only: one record per person, examination and fiscal year, no exam date, no other
/// column; the two lists find their own mappings.
#[test]
fn attendance_lists_export_the_fiscal_year_only() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path());
    let head = "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,";
    let cancer = dir.path().join("gan_kenshin.csv");
    std::fs::write(
        &cancer,
        format!(
            "{head}がん検診受診日,検診種別,結果\n\
             01130012,12,345,01,19600102,1,20260310,胃がん,要精密検査\n\
             01130012,12,345,01,19600102,1,20250420,大腸がん,異常なし\n\
             01130012,12,345,01,19600102,1,20251201,肺がん,異常なし\n"
        ),
    )
    .unwrap();
    let dental = dir.path().join("shika_kenshin.csv");
    std::fs::write(
        &dental,
        format!("{head}歯科健診受診日\n01130012,12,345,01,19600102,1,20250615\n"),
    )
    .unwrap();
    let (lines, bad) = run_preview(&a, &[cancer, dental]);
    assert!(bad.is_empty(), "{bad:?}");
    // 2026-03-10 and the two 2025 dates are all in fiscal 2025: one record per list
    // (the same record, byte for byte, from each row: the outbox keeps it once).
    let mut records: Vec<&serde_json::Value> = Vec::new();
    for l in &lines {
        match records.iter().find(|r| r["record_id"] == l["record_id"]) {
            Some(r) => assert_eq!(*r, l),
            None => records.push(l),
        }
    }
    assert_eq!(lines.len(), 4);
    assert_eq!(records.len(), 2, "{records:?}");
    let mut systems = Vec::new();
    for r in records {
        assert_eq!(r["category"], "checkup.attendance");
        assert_eq!(r["effective_date"], "2025-04-01");
        let text = r["payload"].to_string();
        for leak in [
            "20260310",
            "2026-03-10",
            "2025-04-20",
            "胃がん",
            "要精密検査",
            "01130012",
        ] {
            assert!(!text.contains(leak), "`{leak}` left LGWAN: {text}");
        }
        let entries = r["payload"]["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        let obs = &entries[0]["resource"];
        assert_eq!(obs["valueInteger"], 2025);
        assert_eq!(obs["effectivePeriod"]["start"], "2025-04-01");
        assert_eq!(obs["effectivePeriod"]["end"], "2026-03-31");
        assert_eq!(obs["code"]["coding"][0]["code"], "checkup.attendance");
        systems.push(
            obs["code"]["coding"][1]["code"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    systems.sort();
    assert_eq!(
        systems,
        ["cancer-screening-attendance", "dental-checkup-attendance"]
    );
}

/// An attendance mapping with value columns, or without the catalog's attendance
/// category, is refused at load, naming the mapping.
#[test]
fn an_attendance_mapping_has_no_values_and_the_attendance_category() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path());
    let config = std::fs::read_to_string(&a.config.path).unwrap();
    let with_values = config.replacen(
        "date_column = \"がん検診受診日\"",
        "date_column = \"がん検診受診日\"\nvalues = [{ column = \"結果\", code = \"result\", kind = \"text\" }]",
        1,
    );
    std::fs::write(&a.config.path, &with_values).unwrap();
    let err = lgwan_agent::agent::Agent::load(&a.config.path).unwrap_err();
    assert!(
        err.to_string().contains("cancer-screening-attendance")
            && err.to_string().contains("no `values`"),
        "{err}"
    );
    let wrong = config.replacen(
        "category = \"checkup.attendance\"\nattendance = \"がん検診",
        "category = \"checkup.body\"\nattendance = \"がん検診",
        1,
    );
    assert_ne!(wrong, config);
    std::fs::write(&a.config.path, &wrong).unwrap();
    let err = lgwan_agent::agent::Agent::load(&a.config.path).unwrap_err();
    assert!(err.to_string().contains("attendance category"), "{err}");
}

/// The card number of a row keyed by an insurance identity.
fn number(row: &TableRow) -> &str {
    match &row.identity {
        RowIdentity::Insured(p) => p.number.as_str(),
        RowIdentity::Resident { .. } => panic!("a row keyed by 宛名番号: {row:?}"),
    }
}
