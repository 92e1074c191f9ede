//! The synthetic archive generator: schema validity (xmllint against the MHLW
//! XSDs), determinism, and identities that match the documents.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use lgwan_agent::archive::{ArchiveItem, Limits, scan_archive};
use lgwan_agent::domain::CheckupDocument;
use lgwan_agent::index::{IndexNamespace, NS_2007, NS_MHLW};
use lgwan_agent::synth::{SynthOptions, SynthSummary, write_archive};

pub(crate) fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/tokutei-kenshin")
}

fn generate(dir: &Path, opts: &SynthOptions) -> SynthSummary {
    let path = dir.join(opts.archive_name());
    let summary = write_archive(&path, opts).unwrap();
    assert_eq!(summary.path, path);
    summary
}

/// Every entry of the archive: (name, bytes).
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut file = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).unwrap();
            (file.name().to_owned(), bytes)
        })
        .collect()
}

pub(crate) fn xmllint_available() -> bool {
    let found = Command::new("xmllint").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "xmllint is required in CI (apt-get install libxml2-utils)"
        );
        eprintln!("note: xmllint not found, schema validation skipped");
    }
    found
}

/// A copy of the XSDs with the index/summary namespace swapped to the MHLW one.
fn mhlw_schemas(tmp: &Path) -> PathBuf {
    let src = spec_dir().join("xsd");
    let dst = tmp.join("xsd-mhlw");
    copy_dir(&src, &dst);
    for name in ["ix08_V08.xsd", "su08_V08.xsd", "co08_V08.xsd"] {
        let text = std::fs::read_to_string(dst.join(name)).unwrap();
        std::fs::write(dst.join(name), text.replace(NS_2007, NS_MHLW)).unwrap();
    }
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let target = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Validates every XML entry of `zip_path`; returns how many were checked.
fn validate(zip_path: &Path, schemas: &Path, tmp: &Path) -> usize {
    let mut checked = 0;
    for (name, bytes) in entries(zip_path) {
        let base = name.rsplit('/').next().unwrap();
        let schema = if base.starts_with('h') && base.ends_with(".xml") {
            "hc08_V08.xsd"
        } else if base.starts_with('g') && base.ends_with(".xml") {
            "hg08_V08.xsd"
        } else if base == "ix08_V08.xml" {
            "ix08_V08.xsd"
        } else if base == "su08_V08.xml" {
            "su08_V08.xsd"
        } else {
            panic!("unexpected entry `{name}`");
        };
        let doc = tmp.join("doc.xml");
        std::fs::write(&doc, &bytes).unwrap();
        let out = Command::new("xmllint")
            .args(["--noout", "--nonet", "--schema"])
            .arg(schemas.join(schema))
            .arg(&doc)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} is invalid: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    checked
}

#[test]
fn five_persons_validate_against_the_xsds() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        twins: true,
        ..SynthOptions::default()
    };
    let summary = generate(tmp.path(), &opts);
    // 5 persons, the repeat visit of person 0, and the twin.
    assert_eq!(summary.documents, 7);
    let names: Vec<String> = entries(&summary.path).into_iter().map(|e| e.0).collect();
    let root = "1311234567_00138016_202407011_1";
    assert_eq!(names[0], format!("{root}/ix08_V08.xml"));
    assert_eq!(names[1], format!("{root}/su08_V08.xml"));
    assert_eq!(names.len(), 2 + 7);
    assert!(
        names[2..]
            .iter()
            .all(|n| n.starts_with(&format!("{root}/DATA/h1311234567")))
    );
    if xmllint_available() {
        assert_eq!(
            validate(&summary.path, &spec_dir().join("xsd"), tmp.path()),
            9
        );
    }
    // The MHLW namespace, without su08.
    let opts = SynthOptions {
        persons: 2,
        seed: 11,
        split: 2,
        namespace: IndexNamespace::Mhlw,
        summary: false,
        ..SynthOptions::default()
    };
    let summary = generate(tmp.path(), &opts);
    assert_eq!(entries(&summary.path).len(), 1 + 3);
    if xmllint_available() {
        assert_eq!(
            validate(&summary.path, &mhlw_schemas(tmp.path()), tmp.path()),
            4
        );
    }
}

#[test]
fn same_seed_same_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = SynthOptions {
        persons: 20,
        seed: 42,
        ..SynthOptions::default()
    };
    let first = std::fs::read(generate(a.path(), &opts).path).unwrap();
    let again = std::fs::read(generate(b.path(), &opts).path).unwrap();
    assert_eq!(first, again);
    let other = SynthOptions { seed: 43, ..opts };
    let different = std::fs::read(generate(b.path(), &other).path).unwrap();
    assert_ne!(first, different);
}

/// Every checkup of the archive, parsed by the agent's own reader.
fn parsed(path: &Path) -> Vec<CheckupDocument> {
    let mut docs = Vec::new();
    let summary = scan_archive(path, &Limits::default(), &mut |item| match item {
        ArchiveItem::Checkup { document, .. } => docs.push(*document),
        ArchiveItem::Quarantined(q) => panic!("quarantined: {q:?}"),
    });
    assert_eq!(summary.documents, docs.len());
    docs
}

fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap(),
            _ => c,
        })
        .collect()
}

#[test]
fn identities_match_the_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        persons: 6,
        seed: 3,
        twins: true,
        ..SynthOptions::default()
    };
    let summary = generate(tmp.path(), &opts);
    assert_eq!(summary.persons, 6);
    // Six persons and the twin.
    assert_eq!(summary.identities.len(), 7);
    let docs = parsed(&summary.path);
    assert_eq!(docs.len(), summary.documents);
    for person in &summary.identities {
        let doc = docs
            .iter()
            .find(|d| d.document_id == person.document_id)
            .unwrap_or_else(|| panic!("no document `{}`", person.document_id));
        let id = &doc.identity;
        assert_eq!(id.insurer, person.insurer_number);
        assert_eq!(fold(&id.symbol), person.symbol);
        assert_eq!(fold(&id.number), person.number);
        assert_eq!(id.symbol != person.symbol, person.full_width);
        assert_eq!(id.branch, person.branch);
        assert_eq!(id.birth.to_string(), person.birth_date);
        assert_eq!(id.sex, person.sex);
        // 24 base items, 2 series groups of 1 + 3, the doctor's judgement, and on
        // odd serials the second blood pressure.
        let n = doc.observations.len();
        assert!(n == 33 || n == 35, "{n} observations");
    }
    // The repeat visit of person 0 writes the other width; the twin differs only in 枝番.
    let first = &summary.identities[0];
    let twin = &summary.identities[6];
    assert_eq!(
        (
            &twin.insurer_number,
            &twin.symbol,
            &twin.number,
            &twin.birth_date
        ),
        (
            &first.insurer_number,
            &first.symbol,
            &first.number,
            &first.birth_date
        )
    );
    assert!(first.branch.is_some() && twin.branch.is_some());
    assert_ne!(twin.branch, first.branch);
    let visits: Vec<_> = docs
        .iter()
        .filter(|d| {
            d.identity.insurer == first.insurer_number && fold(&d.identity.number) == first.number
        })
        .collect();
    assert_eq!(visits.len(), 3);
    assert_ne!(visits[0].identity.number, visits[1].identity.number);
}

#[test]
fn large_archives_keep_no_identities() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        persons: 1001,
        repeat_visit: false,
        ..SynthOptions::default()
    };
    let summary = generate(tmp.path(), &opts);
    assert!(summary.identities.is_empty());
    assert_eq!(summary.documents, 1001);
    assert_eq!(entries(&summary.path).len(), 2 + 1001);
}

#[test]
fn guidance_records_validate_against_hg08_and_read_as_sessions() {
    use lgwan_agent::domain::{DocumentKind, Value};
    let tmp = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        persons: 3,
        guidance: true,
        ..SynthOptions::default()
    };
    let summary = generate(tmp.path(), &opts);
    // Three checkups, three guidance records, the repeat visit.
    assert_eq!(summary.documents, 7);
    if xmllint_available() {
        assert_eq!(
            validate(&summary.path, &spec_dir().join("xsd"), tmp.path()),
            2 + 7
        );
    }
    let docs = parsed(&summary.path);
    let guidance: Vec<&CheckupDocument> = docs
        .iter()
        .filter(|d| d.kind == DocumentKind::Guidance)
        .collect();
    assert_eq!(guidance.len(), 3);
    for (g, person) in guidance.iter().zip(&summary.identities) {
        let checkup = docs
            .iter()
            .find(|d| d.kind == DocumentKind::Checkup && d.identity == g.identity)
            .expect("the person's checkup");
        assert_eq!(fold(&g.identity.number), person.number);
        assert_eq!(g.exam_date, checkup.exam_date, "the first interview");
        let got = |code: &str| {
            g.observations
                .iter()
                .filter(|o| o.item_code == code)
                .collect::<Vec<_>>()
        };
        // The first interview: its form, date and performer from the act, dated with it.
        let form = got("1022000012");
        assert_eq!(form.len(), 1);
        assert!(matches!(&form[0].value, Value::Coded { code, system, .. }
            if code == "1" && system == "1.2.392.200119.6.18140"));
        assert_eq!(form[0].effective, Some(g.exam_date));
        assert_eq!(
            got("1022000011")[0].value,
            Value::Date { date: g.exam_date }
        );
        assert!(matches!(&got("1022000015")[0].value, Value::Coded { code, .. } if code == "2"));
        assert!(
            matches!(&got("1022000013")[0].value, Value::Quantity { unit, .. }
            if unit.as_deref() == Some("min"))
        );
        // The goals (moodCode GOL under an INT act) and the evaluation three months on.
        assert_eq!(got("1021001031").len(), 1);
        let evaluated = got("1042001032");
        assert_eq!(evaluated.len(), 1);
        let three_months = g.exam_date.checked_add_months(chrono::Months::new(3));
        assert_eq!(evaluated[0].effective, three_months);
        assert_eq!(got("1042000012")[0].effective, three_months);
        // The telephone session (支援A, code 4) a month on, with its points.
        let support = got("1032100012");
        assert_eq!(support.len(), 1);
        assert_eq!(
            support[0].effective,
            g.exam_date.checked_add_months(chrono::Months::new(1))
        );
        assert_eq!(got("1032100014").len(), 1);
        // The course name is read (the catalog keeps it inside LGWAN).
        assert_eq!(got("1020000003").len(), 1);
    }
}
