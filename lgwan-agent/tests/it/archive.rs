//! Archive and CDA parsing over the fixture archives, good and bad.

use lgwan_agent::archive::{ArchiveItem, Limits, scan_archive};
use lgwan_agent::domain::{CheckupDocument, Sex, Value};
use lgwan_agent::index::IndexNamespace;
use lgwan_agent::quarantine::{Quarantine, Reason};

use crate::{MAIN, MHLW, fixture};

fn scan(
    name: &str,
    limits: &Limits,
) -> (
    Vec<CheckupDocument>,
    Vec<Quarantine>,
    lgwan_agent::archive::ArchiveSummary,
) {
    let mut docs = Vec::new();
    let mut bad = Vec::new();
    let summary = scan_archive(&fixture(name), limits, &mut |item| match item {
        ArchiveItem::Checkup { document, .. } => docs.push(*document),
        ArchiveItem::Quarantined(q) => bad.push(q),
    });
    (docs, bad, summary)
}

#[test]
fn main_fixture_parses_every_observation_type() {
    let (docs, bad, summary) = scan(MAIN, &Limits::default());
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(docs.len(), 6);
    assert_eq!(summary.documents, 6);
    assert_eq!(
        summary.index.map(|i| i.namespace),
        Some(IndexNamespace::Y2007)
    );
    let first = &docs[0];
    assert_eq!(
        first.document_id,
        "1.2.392.200119.6.102^1311234567-20240524-00001"
    );
    assert_eq!(first.exam_date.to_string(), "2024-05-24");
    assert_eq!(first.identity.insurer, "06131186");
    assert_eq!(first.identity.branch.as_deref(), Some("02"));
    assert_eq!(first.identity.sex, Sex::Female);
    let find = |code: &str| {
        first
            .observations
            .iter()
            .find(|o| o.item_code == code)
            .unwrap()
    };
    // PQ with its UCUM unit, codeSystem omitted in the document.
    assert_eq!(
        find("9N001000000000001").value,
        Value::Quantity {
            value: "163.1".into(),
            unit: Some("cm".into())
        }
    );
    // The second blood-pressure reading.
    assert!(matches!(
        find("9A752000000000001").value,
        Value::Quantity { .. }
    ));
    // CO with its result-code OID.
    assert!(matches!(
        &find("1A020000000191111").value,
        Value::Coded { system, .. } if system == "1.2.392.200119.6.2102"
    ));
    // ST text.
    assert_eq!(find("9N051000000000049").value, Value::Text("農業".into()));
    // Series group through entryRelationship: header and members share the group.
    let egfr = find("8A065000002391901");
    assert_eq!(egfr.group.as_deref(), Some("3C015161002399949"));
    assert_eq!(egfr.relation.as_deref(), Some("COMP"));
    let reason = find("3C015161602399911");
    assert_eq!(reason.relation.as_deref(), Some("RSON"));
    assert_eq!(
        find("3C015161002399949").group.as_deref(),
        Some("3C015161002399949")
    );
    assert_eq!(find("9N001000000000001").group, None);
    // Full-width 記号・番号 are kept as written (normalized later, when tokenizing).
    assert!(docs.iter().any(|d| d.identity.symbol.contains('－')));
}

#[test]
fn mhlw_namespace_index_accepted() {
    let (docs, bad, summary) = scan(MHLW, &Limits::default());
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(docs.len(), 4);
    assert_eq!(
        summary.index.map(|i| i.namespace),
        Some(IndexNamespace::Mhlw)
    );
}

#[test]
fn bad_inputs_are_quarantined_and_the_rest_processed() {
    let limits = Limits {
        max_entry_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let (docs, bad, summary) = scan("bad_inputs.zip", &limits);
    assert_eq!(docs.len(), 2, "both good documents survive");
    let reason_of = |suffix: &str| {
        bad.iter()
            .find(|q| q.entry.as_deref().is_some_and(|e| e.ends_with(suffix)))
            .unwrap_or_else(|| panic!("no quarantine for {suffix}: {bad:#?}"))
            .reason
            .clone()
    };
    assert!(matches!(
        reason_of("_malformed.xml"),
        Reason::MalformedXml(_)
    ));
    assert_eq!(reason_of("_doctype.xml"), Reason::Doctype);
    assert!(matches!(
        reason_of("_wrong_ns.xml"),
        Reason::WrongNamespace(_)
    ));
    assert!(matches!(
        reason_of("_no_target.xml"),
        Reason::RecordTarget(_)
    ));
    assert!(
        matches!(reason_of("_not_number.xml"), Reason::BadValue(m) if m.contains("9N001000000000001"))
    );
    assert!(matches!(reason_of("_sjis.xml"), Reason::Encoding(_)));
    assert_eq!(
        reason_of("_bomb.xml"),
        Reason::EntryTooLarge { limit: 1024 * 1024 }
    );
    assert_eq!(reason_of("../evil.xml"), Reason::PathEscapesRoot);
    assert_eq!(reason_of("/tmp/absolute.xml"), Reason::PathEscapesRoot);
    assert_eq!(bad.len(), 9);
    assert_eq!(summary.quarantined, 9);
    assert!(bad.iter().all(|q| q.archive.ends_with("bad_inputs.zip")));
}

#[test]
fn archive_over_the_size_limit_is_quarantined_whole() {
    let limits = Limits {
        max_archive_bytes: 1000,
        ..Limits::default()
    };
    let (docs, bad, _) = scan(MAIN, &limits);
    assert!(docs.is_empty());
    assert!(
        matches!(bad.as_slice(), [q] if q.entry.is_none() && matches!(q.reason, Reason::ArchiveTooLarge { limit: 1000, .. }))
    );
}

#[test]
fn too_many_entries_and_not_a_zip() {
    let limits = Limits {
        max_entries: 3,
        ..Limits::default()
    };
    let (_, bad, _) = scan(MAIN, &limits);
    assert!(matches!(
        bad[0].reason,
        Reason::TooManyEntries { count: 8, limit: 3 }
    ));
    let (_, bad, _) = scan("gen_checkups.py", &Limits::default());
    assert!(matches!(bad[0].reason, Reason::Unreadable(_)));
}

/// Fixture `name` rewritten into `dir`: each entry's bytes changed and the entry renamed
/// by `edit` (`None` drops it), then `extra` entries added.
pub(crate) fn rewritten(
    dir: &std::path::Path,
    name: &str,
    edit: impl Fn(&str, &mut Vec<u8>) -> Option<String>,
    extra: &[(&str, &[u8])],
) -> std::path::PathBuf {
    use std::io::{Read, Write};
    let mut archive = zip::ZipArchive::new(std::fs::File::open(fixture(name)).unwrap()).unwrap();
    let out = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&out).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let Some(new_name) = edit(entry.name(), &mut bytes) else {
            continue;
        };
        zip.start_file(new_name, options).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    for (name, bytes) in extra {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    out
}

fn scan_path(path: &std::path::Path) -> (Vec<CheckupDocument>, Vec<Quarantine>) {
    let (mut docs, mut bad) = (Vec::new(), Vec::new());
    scan_archive(path, &Limits::default(), &mut |item| match item {
        ArchiveItem::Checkup { document, .. } => docs.push(*document),
        ArchiveItem::Quarantined(q) => bad.push(q),
    });
    (docs, bad)
}

/// The layout's names are read in any case; claims and schemas are not ours and are
/// passed over; anything else is set aside loudly, never skipped in silence.
#[test]
fn the_layout_is_read_in_any_case_and_strays_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let root = MAIN.trim_end_matches(".zip");
    let (expected, _, _) = scan(MAIN, &Limits::default());
    let lower = rewritten(
        dir.path(),
        MAIN,
        |n, bytes| {
            if n.ends_with("ix08_V08.xml") {
                // The claims file below is one more record of the archive.
                let text = String::from_utf8(bytes.clone()).unwrap();
                *bytes = text
                    .replace(
                        r#"totalRecordCount value="6""#,
                        r#"totalRecordCount value="7""#,
                    )
                    .into_bytes();
            }
            Some(
                n.replace("/DATA/", "/data/")
                    .replace("ix08_V08", "IX08_v08"),
            )
        },
        &[
            (&format!("{root}/CLAIMS/c0000001.xml"), b"<claims/>"),
            (&format!("{root}/XSD/hc08_V08.xsd"), b"<xs:schema/>"),
        ],
    );
    let (docs, bad) = scan_path(&lower);
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(docs.len(), expected.len());

    let strays = rewritten(
        dir.path(),
        MAIN,
        |n, _| Some(n.to_owned()),
        &[
            (&format!("{root}/DATA/sub/h0000099.xml"), b"<x/>"),
            (&format!("{root}/Data/notes.txt"), b"x"),
            (&format!("{root}/readme.txt"), b"x"),
        ],
    );
    let (docs, bad) = scan_path(&strays);
    assert_eq!(docs.len(), expected.len());
    let stray: Vec<&str> = bad
        .iter()
        .filter(|q| matches!(q.reason, Reason::Layout(_)))
        .filter_map(|q| q.entry.as_deref())
        .collect();
    assert_eq!(stray.len(), 3, "{bad:#?}");
    assert_eq!(bad.len(), 3, "{bad:#?}");
}

/// Fewer documents than the index declares: the archive lost some on the way, and
/// says so.
#[test]
fn fewer_documents_than_the_index_declares_is_a_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let dropped = std::cell::Cell::new(false);
    let short = rewritten(
        dir.path(),
        MAIN,
        |n, _| {
            if n.contains("/DATA/") && !dropped.replace(true) {
                None
            } else {
                Some(n.to_owned())
            }
        },
        &[],
    );
    let (_, bad) = scan_path(&short);
    assert!(
        matches!(bad.as_slice(), [q] if matches!(&q.reason, Reason::Layout(m) if m.contains("declares"))
            && q.entry.as_deref().is_some_and(|e| e.ends_with("ix08_V08.xml"))),
        "{bad:#?}"
    );
}

/// More documents than the index declares: files were added after the index was made,
/// and the archive says so (the documents are still read, each on its own merits).
#[test]
fn more_documents_than_the_index_declares_is_a_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let root = MAIN.trim_end_matches(".zip");
    let (expected, _, _) = scan(MAIN, &Limits::default());
    let copy = {
        use std::io::Read;
        let file = std::fs::File::open(fixture(MAIN)).unwrap();
        let mut archive = zip::ZipArchive::new(file).unwrap();
        let name = archive
            .file_names()
            .find(|n| n.contains("/DATA/"))
            .unwrap()
            .to_owned();
        let mut bytes = Vec::new();
        archive
            .by_name(&name)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    };
    let extra = format!("{root}/DATA/h99999999999999999999.xml");
    let long = rewritten(
        dir.path(),
        MAIN,
        |n, _| Some(n.to_owned()),
        &[(&extra, &copy)],
    );
    let (docs, bad) = scan_path(&long);
    assert_eq!(docs.len(), expected.len() + 1);
    assert!(
        bad.iter().any(|q| matches!(&q.reason, Reason::Layout(m) if m.contains("declares 6 records, the archive holds 7"))
            && q.entry.as_deref().is_some_and(|e| e.ends_with("ix08_V08.xml"))),
        "{bad:#?}"
    );
}

/// Entry names that begin with `./` (some zip tools write them) name the same root
/// folder: the archive is read as if they did not.
#[test]
fn entries_named_from_dot_slash_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, _, _) = scan(MAIN, &Limits::default());
    let dotted = rewritten(dir.path(), MAIN, |n, _| Some(format!("./{n}")), &[]);
    let (docs, bad) = scan_path(&dotted);
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(docs.len(), expected.len());
}
