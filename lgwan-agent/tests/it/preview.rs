//! `preview` over the fixtures: the records are well formed, and nothing
//! identifying from the input appears in the output, in any normalization.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use lgwan_agent::agent::{Agent, init};
use lgwan_agent::archive::{ArchiveItem, Limits, scan_archive};
use lgwan_agent::preview::preview;
use lgwan_agent::quarantine::{Quarantine, Reason};
use serde_json::Value;

use crate::{MAIN, MHLW, TWINS, fixture};

pub(crate) fn agent(dir: &Path) -> Agent {
    let done = init(dir, &"source:city-mihon".parse().unwrap()).unwrap();
    Agent::load(&done.config).unwrap()
}

pub(crate) fn run_preview(agent: &Agent, inputs: &[PathBuf]) -> (Vec<Value>, Vec<Quarantine>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    preview(agent, inputs, &mut out, &mut |q| bad.push(q.clone())).unwrap();
    let lines = String::from_utf8(out).unwrap();
    let records = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (records, bad)
}

/// Full-width form of ASCII digits, letters and `-`.
fn to_full(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            ' ' => '\u{3000}',
            c => c,
        })
        .collect()
}

fn to_half(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap(),
            '\u{3000}' => ' ',
            c => c,
        })
        .collect()
}

/// Every written form of an identifying value we look for.
fn variants(value: &str) -> BTreeSet<String> {
    let half = to_half(value);
    let bare: String = half
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '/' | 'ー'))
        .collect();
    [
        value.to_owned(),
        half.clone(),
        to_full(&half),
        bare.clone(),
        to_full(&bare),
    ]
    .into_iter()
    .filter(|v| !v.is_empty())
    .collect()
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    text.split_once(open)?.1.split_once(close).map(|(v, _)| v)
}

/// Identifying values of the fixtures: from the parser (numbers, dates) and
/// from the raw XML/CSV (names, addresses, postal codes, which the parser drops).
fn identifying_values(archives: &[&str], csvs: &[PathBuf]) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    for name in archives {
        scan_archive(&fixture(name), &Limits::default(), &mut |item| {
            if let ArchiveItem::Checkup { document, .. } = item {
                let id = &document.identity;
                values.insert(id.insurer.clone());
                values.insert(format!("{:0>8}", id.insurer));
                values.insert(id.symbol.clone());
                values.insert(id.number.clone());
                values.extend(id.branch.clone());
                for fmt in ["%Y%m%d", "%Y-%m-%d", "%Y/%m/%d"] {
                    values.insert(id.birth.format(fmt).to_string());
                }
            }
        });
        let mut zip = zip::ZipArchive::new(std::fs::File::open(fixture(name)).unwrap()).unwrap();
        for i in 0..zip.len() {
            let mut text = String::new();
            zip.by_index(i).unwrap().read_to_string(&mut text).unwrap();
            // Only the resident's part: doctors' names are staff, not residents.
            let Some(target) = between(&text, "<recordTarget>", "</recordTarget>") else {
                continue;
            };
            for (open, close) in [
                ("<name>", "</name>"),
                ("<addr>", "<postalCode>"),
                ("<postalCode>", "</postalCode>"),
            ] {
                values.extend(between(target, open, close).map(str::to_owned));
            }
        }
    }
    for csv in csvs {
        let bytes = std::fs::read(csv).unwrap();
        let text = match String::from_utf8(bytes.clone()) {
            Ok(t) => t,
            Err(_) => encoding_rs::SHIFT_JIS.decode(&bytes).0.into_owned(),
        };
        let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        for row in reader.records() {
            let row = row.unwrap();
            for (col, cell) in header.iter().zip(row.iter()) {
                if [
                    "保険者番号",
                    "被保険者証記号",
                    "被保険者証番号",
                    "枝番",
                    "氏名",
                    "生年月日",
                ]
                .contains(&col.as_str())
                {
                    values.insert(cell.to_owned());
                    values.insert(cell.replace('/', ""));
                    values.insert(cell.replace('/', "-"));
                }
            }
        }
    }
    values.retain(|v| !v.is_empty());
    values
}

/// The visible text of the output: every string and number, except the opaque
/// ids, which are checked against their format instead.
fn visible_leaves(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => map.iter().for_each(|(k, v)| visible_leaves(v, k, out)),
        Value::Array(items) => items.iter().for_each(|v| visible_leaves(v, key, out)),
        Value::String(s) => {
            let opaque = |prefix: &str, len: usize| s.starts_with(prefix) && s.len() == len;
            match key {
                "record_id" => assert!(opaque("rec1_", 37), "{s}"),
                "subject_token" => assert!(opaque("st1_", 36), "{s}"),
                "fullUrl" | "reference" => assert!(opaque("urn:uuid:", 45), "{s}"),
                "source_document" if s.contains("/rec1_") => {
                    let (head, digest) = s.split_once("/rec1_").unwrap();
                    assert_eq!(digest.len(), 32);
                    out.push(head.to_owned());
                }
                _ => out.push(s.clone()),
            }
        }
        Value::Number(n) => out.push(n.to_string()),
        _ => {}
    }
}

fn leaks(records: &[Value], values: &BTreeSet<String>) -> Vec<String> {
    let mut leaves = Vec::new();
    for r in records {
        visible_leaves(r, "", &mut leaves);
    }
    let text = leaves.join("\n");
    let mut found = Vec::new();
    for value in values {
        for v in variants(value) {
            let hit = if v.chars().count() >= 4 {
                text.contains(&v)
            } else {
                leaves.contains(&v)
            };
            if hit {
                found.push(v);
            }
        }
    }
    found
}

fn csv_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture("csv"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn preview_contains_no_identifying_value() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    let mut inputs = vec![fixture(MAIN), fixture(MHLW)];
    inputs.extend(csv_fixtures());
    let (records, bad) = run_preview(&agent, &inputs);
    assert!(bad.is_empty(), "{bad:?}");
    let values = identifying_values(&[MAIN, MHLW], &csv_fixtures());
    assert!(
        values.len() > 40,
        "the check must look for something: {values:?}"
    );
    assert!(
        values.iter().any(|v| v.contains('見')),
        "names are collected"
    );
    assert_eq!(leaks(&records, &values), Vec::<String>::new());
    // The check can fail: the raw input itself is full of these values.
    let raw: Vec<Value> = values
        .iter()
        .map(|v| serde_json::json!({"note": v}))
        .collect();
    assert!(!leaks(&raw, &values).is_empty());
}

#[test]
fn preview_lines_have_exactly_the_issue_fields() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    let (records, _) = run_preview(&agent, &[fixture(MAIN)]);
    let mut keys: Vec<&str> = records[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut expected = [
        "record_id",
        "subject_token",
        "category",
        "effective_date",
        "source_document",
        "payload",
    ];
    expected.sort();
    assert_eq!(keys, expected);
    let ids: BTreeSet<&str> = records
        .iter()
        .map(|r| r["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), records.len(), "record ids are unique");
    // 6 documents → 6 attendance records; FY of the 2024-03-15 visit is 2023.
    let attendance: Vec<&Value> = records
        .iter()
        .filter(|r| r["category"] == "checkup.attendance")
        .collect();
    assert_eq!(attendance.len(), 6);
    assert!(
        attendance
            .iter()
            .any(|r| r["effective_date"] == "2023-04-01")
    );
    for r in &records {
        let text = r["payload"].to_string();
        assert!(!text.contains("\"subject\"") && !text.contains("\"identifier\""));
    }
    // A second preview is byte-identical: ids and payloads are deterministic.
    let (again, _) = run_preview(&agent, &[fixture(MAIN)]);
    assert_eq!(records, again);
}

#[test]
fn full_and_half_width_card_give_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    let (records, _) = run_preview(&agent, &[fixture(MAIN)]);
    // Person 0 visited twice (serial 1 and 6), once with full-width 記号・番号.
    let token_of = |serial: &str| {
        records
            .iter()
            .find(|r| r["source_document"].as_str().unwrap().ends_with(serial))
            .map(|r| r["subject_token"].clone())
            .unwrap()
    };
    assert_eq!(token_of("-00001"), token_of("-00006"));
    assert_ne!(token_of("-00001"), token_of("-00002"));
    let subjects: BTreeSet<String> = records
        .iter()
        .map(|r| r["subject_token"].to_string())
        .collect();
    assert_eq!(subjects.len(), 5);
}

#[test]
fn same_identity_different_branch_is_refused_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    let (records, bad) = run_preview(&agent, &[fixture(TWINS)]);
    let conflicts: Vec<&Quarantine> = bad
        .iter()
        .filter(|q| matches!(q.reason, Reason::IdentityConflict(_)))
        .collect();
    // Person 0 (two visits) and the twin: three documents refused.
    assert_eq!(conflicts.len(), 3, "{bad:?}");
    let refused: BTreeSet<String> = conflicts
        .iter()
        .map(|q| match &q.reason {
            Reason::IdentityConflict(m) => m.split('`').nth(1).unwrap().to_owned(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(refused.len(), 1);
    let token = refused.into_iter().next().unwrap();
    assert!(records.iter().all(|r| r["subject_token"] != token.as_str()));
    // The other person's records still go out.
    let by_token: BTreeMap<String, usize> = records.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["subject_token"].to_string()).or_default() += 1;
        m
    });
    assert_eq!(by_token.len(), 1);
}

/// The twins' archive with the body of the twin's document (枝番 03) broken.
fn twins_with_broken_twin(dir: &Path) -> PathBuf {
    twins_with(dir, |text| {
        let broken = text.replacen("</structuredBody>", "</structuredBodyX>", 1);
        assert_ne!(broken, text);
        broken
    })
}

/// The twins' archive with the twin's document (枝番 03) changed by `edit`.
fn twins_with(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let source = std::fs::File::open(fixture(TWINS)).unwrap();
    let mut archive = zip::ZipArchive::new(source).unwrap();
    let out = dir.join(TWINS);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&out).unwrap());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        if text.contains(r#"root="1.2.392.200119.6.211" extension="03""#) {
            text = edit(text);
        }
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    out
}

/// The survey reads each document's header: a second person sharing the token is a
/// conflict even when the body of their document is refused, so nothing of the first
/// person goes out under a token known to be shared.
#[test]
fn a_twin_whose_body_is_refused_still_makes_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let archive = twins_with_broken_twin(dir.path());
    let (records, bad) = run_preview(&agent, &[archive]);
    let kinds: Vec<&str> = bad.iter().map(|q| q.reason.kind()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "identity-conflict").count(),
        2,
        "person 0's two visits are refused: {bad:?}"
    );
    assert_eq!(kinds.len(), 3, "and the twin's broken document: {bad:?}");
    let refused: BTreeSet<String> = bad
        .iter()
        .filter_map(|q| match &q.reason {
            Reason::IdentityConflict(m) => Some(m.split('`').nth(1).unwrap().to_owned()),
            _ => None,
        })
        .collect();
    let token = refused.into_iter().next().unwrap();
    assert!(records.iter().all(|r| r["subject_token"] != token.as_str()));
    assert!(
        !records.is_empty(),
        "the other person's records still go out"
    );
}

/// Pass two exports a person only as the survey read them: with a book that did not see
/// them (as if the two passes had read the input differently) every input is refused.
#[test]
fn pass_two_refuses_a_person_the_survey_did_not_read() {
    use lgwan_agent::pipeline::{BranchBook, Prepared};
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    let files = vec![fixture(MAIN)];
    let run = |book: &BranchBook| {
        let (mut records, mut refused) = (0, Vec::new());
        agent.prepare(&files, book, &mut |p| match p {
            Prepared::Record(_) => records += 1,
            Prepared::Quarantined(q) => refused.push(q.reason.kind()),
        });
        (records, refused)
    };
    let (records, refused) = run(&agent.survey(&files));
    assert!(records > 0 && refused.is_empty(), "{refused:?}");
    let (records, refused) = run(&BranchBook::default());
    assert_eq!(records, 0);
    assert_eq!(refused.len(), 6, "every checkup of the fixture");
    assert!(
        refused.iter().all(|k| *k == "identity-conflict"),
        "{refused:?}"
    );
}

/// A record too large to seal sets its input aside; any other sealing failure stops.
#[test]
fn a_record_too_large_to_seal_is_quarantined_not_fatal() {
    use lgwan_agent::pipeline::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(dir.path());
    let files = vec![fixture(MAIN)];
    let book = agent.survey(&files);
    let outcomes = |fail: &(dyn Fn() -> lgwan_agent::Error + Sync)| {
        let mut kinds = Vec::new();
        agent.prepare_with(
            &files,
            &book,
            &|_raw| -> lgwan_agent::Result<()> { Err(fail()) },
            &mut |o| {
                kinds.push(match o {
                    Outcome::Records(_) => "records".to_owned(),
                    Outcome::Quarantined(q) => q.reason.to_string(),
                    Outcome::Failed(_) => "failed".to_owned(),
                })
            },
        );
        kinds
    };
    let too_large = outcomes(&|| {
        renkei_crypto::Error::Payload {
            schema: 2,
            reason: "too large".into(),
        }
        .into()
    });
    assert_eq!(too_large.len(), 6, "{too_large:?}");
    assert!(
        too_large.iter().all(|k| k.contains("too large")),
        "{too_large:?}"
    );
    let other = outcomes(&|| renkei_crypto::Error::Seal("broken".into()).into());
    assert!(other.contains(&"failed".to_owned()), "{other:?}");
}

/// The survey reads a header from a document's first bytes when they hold it, else from
/// the whole document: a twin whose header is longer than that is still found.
#[test]
fn a_twin_with_a_long_header_still_makes_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let archive = twins_with(dir.path(), |text| {
        let comment = format!("<!-- {} -->", "x".repeat(8000));
        text.replacen("<recordTarget>", &format!("{comment}<recordTarget>"), 1)
    });
    let (records, bad) = run_preview(&agent, &[archive]);
    let conflicts = bad
        .iter()
        .filter(|q| matches!(q.reason, Reason::IdentityConflict(_)))
        .count();
    assert_eq!(conflicts, 3, "person 0's two visits and the twin: {bad:?}");
    assert!(
        !records.is_empty(),
        "the other person's records still go out"
    );
}
