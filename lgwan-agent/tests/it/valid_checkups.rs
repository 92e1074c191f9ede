//! Every XSD-valid checkup document is read (issue 15). Random 特定健診 documents
//! ([`doc`], [`write`]) built from the MHLW item table's items and series groups, in every
//! layout and serialization the schema allows for results, are first checked
//! against `spec/tokutei-kenshin/xsd/hc08_V08.xsd` by `xmllint` (several per run);
//! then the agent must read each without quarantining it, and extract exactly the
//! results a deliberately simple DOM reader ([`simple`]) finds; and the FHIR records
//! minimized from it must carry every exported result with its value, each series group
//! under one head without a value ([`checked_records`]).

mod doc;
mod simple;
mod write;

use std::cell::Cell;
use std::process::Command;
use std::sync::LazyLock;

use lgwan_agent::cda::parse_checkup;
use lgwan_agent::domain::{Observation, Value};
use proptest::collection::vec;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use renkei_policies::Catalog;

use crate::fhir_samples::checked_records;
use crate::synth::{spec_dir, xmllint_available};
use simple::{Found, Table, Val};

/// The item table, read by the test itself.
static TABLE: LazyLock<Table> = LazyLock::new(Table::load);
/// The catalog the records are minimized with.
static CATALOG: LazyLock<Catalog> = LazyLock::new(|| Catalog::embedded().unwrap());

/// Documents per `xmllint` run, and runs: 32 × 4 documents in a few seconds.
const BATCH: usize = 4;
const CASES: u32 = 32;

/// Validates `docs` with one `xmllint` run; the error names each invalid one.
fn validate(docs: &[(Vec<u8>, usize)]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..docs.len())
        .map(|i| dir.path().join(format!("h{i}.xml")))
        .collect();
    for (path, (bytes, _)) in paths.iter().zip(docs) {
        std::fs::write(path, bytes).unwrap();
    }
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(spec_dir().join("xsd/hc08_V08.xsd"))
        .args(&paths)
        .output()
        .unwrap();
    if out.status.success() {
        return Ok(());
    }
    let report = String::from_utf8_lossy(&out.stderr);
    let invalid: Vec<String> = paths
        .iter()
        .zip(docs)
        .filter(|(p, _)| report.contains(&format!("{} fails to validate", p.display())))
        .map(|(_, (bytes, _))| String::from_utf8_lossy(bytes).into_owned())
        .collect();
    Err(TestCaseError::fail(format!(
        "the generator wrote an invalid document:\n{report}\n{}",
        invalid.join("\n----\n")
    )))
}

/// The agent's observation in the simple reader's terms; its number must be
/// written `-?digits[.digits]`.
fn as_found(o: &Observation) -> Found {
    let value = match &o.value {
        Value::Quantity { value, unit } => {
            let unsigned = value.strip_prefix('-').unwrap_or(value);
            let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            assert!(
                digits(int) && digits(frac),
                "quantity `{value}` is not -?digits[.digits]"
            );
            Val::Number(value.parse().unwrap(), unit.clone())
        }
        Value::Coded {
            code,
            system,
            display,
        } => Val::Code {
            code: code.clone(),
            system: system.clone(),
            display: display.clone(),
        },
        Value::Text(t) => Val::Text(t.clone()),
        Value::Date { .. } => panic!("a checkup item is never a date: {o:?}"),
    };
    Found {
        code: o.item_code.clone(),
        display: o.display.clone(),
        value,
        group: o.group.clone(),
        relation: o.relation.clone(),
    }
}

fn check(bytes: &[u8], written: usize) -> Result<(), TestCaseError> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    let doc = parse_checkup(bytes, "prop/DATA/h1.xml")
        .map_err(|r| TestCaseError::fail(format!("quarantined: {r}\n{}", text())))?;
    let want = simple::read(bytes, &TABLE);
    proptest::prop_assert_eq!(
        want.len(),
        written,
        "the simple reader missed results the generator wrote"
    );
    let got: Vec<Found> = doc.observations.iter().map(as_found).collect();
    proptest::prop_assert_eq!(got, want, "{}", text());
    // And the FHIR records carry every exported result with its value, each series
    // group under one head without a value (JP-CLINS eCheckup).
    checked_records(&doc, &CATALOG).map_err(|e| TestCaseError::fail(format!("{e}\n{}", text())))?;
    Ok(())
}

#[test]
fn every_valid_document_is_read_as_a_simple_reader_reads_it() {
    if !xmllint_available() {
        return;
    }
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let (documents, results, grouped) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let outcome = runner.run(&vec(doc::doc(), BATCH), |docs| {
        let docs: Vec<(Vec<u8>, usize)> = docs.iter().map(doc::Doc::xml).collect();
        validate(&docs)?;
        for (bytes, written) in &docs {
            check(bytes, *written)?;
            let found = simple::read(bytes, &TABLE);
            documents.set(documents.get() + 1);
            results.set(results.get() + found.len());
            grouped.set(grouped.get() + found.iter().filter(|f| f.group.is_some()).count());
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let (documents, results, grouped) = (documents.get(), results.get(), grouped.get());
    // The cases reach what they are for: results, and results in groups.
    assert!(documents >= CASES as usize * BATCH, "{documents} documents");
    assert!(
        results > documents && grouped > 0,
        "{results} results, {grouped} grouped"
    );
}
