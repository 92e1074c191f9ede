//! `import` into the outbox: the records are exactly what `preview` prints, sealed
//! so they open with the derived DEK; a re-import is a no-op; and the outbox
//! survives the `lgwan-agent import` process being killed at any point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lgwan_agent::agent::Agent;
use lgwan_agent::import::import;
use lgwan_agent::outbox::Outbox;
use renkei_crypto::envelope::{SealedRecord, derive_dek, open};
use renkei_crypto::payload;
use renkei_crypto::token::subject_binding;
use serde_json::Value;

use crate::preview::{agent, run_preview};
use crate::{MAIN, MHLW, TWINS, fixture};

const BIN: &str = env!("CARGO_BIN_EXE_lgwan-agent");

/// The fixture inputs: three archives (one with twins) and every CSV.
pub(crate) fn inputs() -> Vec<PathBuf> {
    vec![fixture(MAIN), fixture(MHLW), fixture(TWINS), fixture("csv")]
}

/// Every record in the outbox (all pending: nothing was uploaded), id → bytes.
async fn contents(outbox: &Outbox) -> BTreeMap<String, (String, Vec<u8>)> {
    outbox
        .pending(usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.record_id, (i.subject, i.sealed)))
        .collect()
}

/// Opens every spooled record and checks it against the preview line of its id:
/// same header facts, same payload, subject binding of the same token.
fn check_sealed(
    agent: &Agent,
    expected: &BTreeMap<String, Value>,
    got: &BTreeMap<String, (String, Vec<u8>)>,
) {
    for (id, (subject, bytes)) in got {
        let want = expected
            .get(id)
            .unwrap_or_else(|| panic!("unexpected record `{id}`"));
        let sealed = SealedRecord::from_bytes(bytes).unwrap();
        let h = sealed.header();
        assert_eq!(h.record_id.as_str(), id);
        assert_eq!(h.category, want["category"]);
        assert_eq!(h.effective_date.to_string(), want["effective_date"]);
        assert_eq!(h.source, "source:city-mihon");
        assert_eq!(subject, &want["subject_token"]);
        assert_eq!(
            h.subject_binding,
            subject_binding(agent.record_key(), &h.record_id, subject)
        );
        assert_eq!(
            h.schema_version,
            payload::JSON_LZ4,
            "compressed before padding"
        );
        let plain = open(&derive_dek(agent.record_key(), &h.record_id), &sealed).unwrap();
        let json = payload::unpack(h.schema_version, &plain).unwrap();
        let payload: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(payload, want["payload"], "payload of `{id}`");
    }
}

fn by_id(records: Vec<Value>) -> BTreeMap<String, Value> {
    records
        .into_iter()
        .map(|r| (r["record_id"].as_str().unwrap().to_owned(), r))
        .collect()
}

#[tokio::test]
async fn import_spools_exactly_the_preview_and_reimport_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let (records, bad) = run_preview(&agent, &inputs());
    let lines = records.len();
    let expected = by_id(records);
    // The CP932 and UTF-8 medical-cost exports hold the same rows: same ids.
    assert!(expected.len() < lines);
    let outbox = Outbox::open(&agent.config.outbox).await.unwrap();

    let mut reports = Vec::new();
    let first = import(&agent, &outbox, &inputs(), &mut |p| reports.push(p))
        .await
        .unwrap();
    assert_eq!(first.records, lines);
    assert_eq!(first.new_records, expected.len());
    assert_eq!(first.quarantined, bad, "same quarantine reports as preview");
    assert!(first.conflicts >= 1, "the twins are refused");
    let last = reports.last().unwrap();
    assert_eq!((last.records, last.inputs_done), (lines, last.inputs_total));
    assert!(reports.windows(2).all(|w| w[0].records <= w[1].records));

    let got = contents(&outbox).await;
    assert_eq!(got.len(), expected.len());
    check_sealed(&agent, &expected, &got);
    assert_eq!(outbox.depth().await.unwrap(), expected.len() as u64);

    let again = import(&agent, &outbox, &inputs(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!((again.records, again.new_records), (lines, 0));
    assert_eq!(contents(&outbox).await, got, "first sealed bytes are kept");
}

#[tokio::test]
async fn a_later_import_with_another_branch_is_refused_as_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
    let csv_dir = dir.path().join("in");
    std::fs::create_dir_all(&csv_dir).unwrap();
    let header =
        "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,認定日,要介護度,介護給付費\n";
    let first = csv_dir.join("a.csv");
    std::fs::write(
        &first,
        format!("{header}138016,試験1,100,01,1950/01/01,女,20240101,要支援1,1000\n"),
    )
    .unwrap();
    let s = import(&agent, &outbox, &[first], &mut |_| {})
        .await
        .unwrap();
    assert_eq!((s.records, s.conflicts), (1, 0));
    // Another person, same canonical identity, another 枝番, in a later file.
    let second = csv_dir.join("b.csv");
    std::fs::write(
        &second,
        format!("{header}138016,試験1,100,02,1950/01/01,女,20240201,要支援2,2000\n"),
    )
    .unwrap();
    let s = import(&agent, &outbox, &[second], &mut |_| {})
        .await
        .unwrap();
    assert_eq!((s.records, s.conflicts), (0, 1));
    assert_eq!(s.quarantined.len(), 1);
    assert_eq!(s.quarantined[0].reason.kind(), "identity-conflict");
    assert_eq!(outbox.depth().await.unwrap(), 1);
    let status = outbox.status().await.unwrap();
    assert_eq!(status.conflicting_subjects, 1);
}

/// A KDB medical-cost export of `persons` synthetic people over twelve months.
fn big_csv(path: &Path, persons: usize) {
    let mut text = String::from(
        "保険者番号,被保険者証記号,被保険者証番号,枝番,氏名,生年月日,性別,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額\n",
    );
    for p in 0..persons {
        for month in 1..=12 {
            let cost = (p * 37 + month * 11) % 50_000;
            text.push_str(&format!(
                "138016,試験{},{},01,試験　人{p},19{:02}/{:02}/{:02},{},2024{month:02},0,{cost},0,{},{}\n",
                p % 97,
                100_000 + p,
                40 + p % 50,
                1 + p % 12,
                1 + p % 28,
                if p % 2 == 0 { "男" } else { "女" },
                cost / 2,
                cost + cost / 2,
            ));
        }
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn outbox_survives_the_import_being_killed_at_any_point() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let big = dir.path().join("kdb_big.csv");
    big_csv(&big, 1500);
    let mut inputs = inputs();
    inputs.push(big);
    let (records, _) = run_preview(&agent, &inputs);
    let expected = by_id(records);
    assert!(expected.len() > 18_000, "{}", expected.len());
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut kept: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    let mut partial_seen = false;
    for ms in [10u64, 50, 200, 400, 700, 1000, 1500, 2500] {
        let mut child = Command::new(BIN)
            .args(["import", "--config"])
            .arg(&agent.config.path)
            .args(&inputs)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(ms)).await });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = rt.block_on(async {
            let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
            let got = contents(&outbox).await;
            outbox.close().await;
            got
        });
        // Whatever was committed is whole, opens, and was never rewritten.
        check_sealed(&agent, &expected, &got);
        for (id, bytes) in &kept {
            assert_eq!(
                got.get(id),
                Some(bytes),
                "`{id}` changed after a crash ({ms} ms)"
            );
        }
        partial_seen |= !got.is_empty() && got.len() < expected.len();
        kept = got;
    }
    assert!(partial_seen, "no kill landed in the middle of the import");

    let done = Command::new(BIN)
        .args(["import", "--config"])
        .arg(&agent.config.path)
        .args(&inputs)
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(2), "the twins are quarantined");
    let got = rt.block_on(async {
        let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
        contents(&outbox).await
    });
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "exactly the expected record set"
    );
    check_sealed(&agent, &expected, &got);
    for (id, bytes) in &kept {
        assert_eq!(
            got.get(id),
            Some(bytes),
            "`{id}` changed on the final import"
        );
    }
}

/// Two people's documents with one document id make the same record ids: the first
/// person's records stay and the second's are reported, never dropped in silence.
#[tokio::test]
async fn a_document_id_two_people_share_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
    let one_id = r#"<id root="1.2.392.200119.6.102" extension="same-serial"/>"#;
    let archive = crate::archive::rewritten(
        dir.path(),
        MAIN,
        |name, bytes| {
            if name.contains("/DATA/") {
                // Every document's own id becomes the same serial.
                let mut text = String::from_utf8(std::mem::take(bytes)).unwrap();
                let start = text.find("<id ").unwrap();
                let end = start + text[start..].find("/>").unwrap() + 2;
                text.replace_range(start..end, one_id);
                *bytes = text.into_bytes();
            }
            Some(name.to_owned())
        },
        &[],
    );
    let summary = import(&agent, &outbox, &[archive], &mut |_| {})
        .await
        .unwrap();
    let reused: Vec<_> = summary
        .quarantined
        .iter()
        .filter(|q| {
            q.reason
                .to_string()
                .contains("already spooled for another person")
        })
        .collect();
    assert!(!reused.is_empty(), "{:#?}", summary.quarantined);
    assert!(
        reused
            .iter()
            .all(|q| q.entry.as_deref().is_some_and(|e| e.starts_with("rec1_")))
    );
    assert_eq!(outbox.depth().await.unwrap(), summary.new_records as u64);
}
