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
