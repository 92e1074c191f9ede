//! The short CI run of the agent's fuzz targets: every committed seed of
//! `fuzz/corpus/{cda,index,csv,archive}/` replayed through the fuzz targets' own
//! property checks (`fuzz/src/agent.rs`), then a bounded number of seeded random
//! mutations of those seeds (a small deterministic mutator: this crate has no
//! proptest), and zips built around mutated documents and entry names.

use std::io::Write;
use std::path::PathBuf;

use lgwan_agent::cda::parse_checkup;
use lgwan_agent::quarantine::Reason;

// The fuzz targets' own checks; `pub` there because the fuzz crate exports them.
#[path = "../../../fuzz/src/agent.rs"]
#[allow(
    unreachable_pub,
    reason = "shared with the fuzz crate, where these are its API"
)]
mod checks;

/// Mutated inputs tried per target; each run takes well under a second per 100.
const CASES: usize = 256;

/// The committed seeds of one fuzz target, in name order.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// SplitMix64: a tiny seeded generator, so every CI run tries the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that matter to XML and CSV readers.
const TOKENS: &[&[u8]] = &[
    b"<!DOCTYPE ClinicalDocument [<!ENTITY a \"b\">]>",
    b"<!ENTITY x SYSTEM \"file:///etc/passwd\">",
    b"&a;",
    b"&amp;",
    b"&#0;",
    b"&#x10FFFF;",
    b"<![CDATA[",
    b"]]>",
    b"</",
    b"/>",
    b"<",
    b">",
    b"\"",
    b"'",
    b"=",
    b"xmlns=\"urn:other\"",
    b"xsi:type=\"PQ\"",
    b" value=\"-.5e3\"",
    b"<recordTarget>",
    b"<observation>",
    b"<entryRelationship typeCode=\"COMP\">",
    b"\xEF\xBB\xBF",
    b"\xFF",
    b"\xC3",
    b"\x00",
    b",",
    b"\"\"",
    b"\r\n",
    b"\n",
    b"\xEF\xBC\x91",
    b"99999999999999999999",
    b"2024/02/30",
];

/// One random edit of `bytes`: flip, delete, duplicate, insert a token, truncate or splice.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, others: &[(String, Vec<u8>)]) {
    let len = bytes.len();
    match rng.below(7) {
        0 if len > 0 => {
            let i = rng.below(len);
            bytes[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(64)).min(len);
            bytes.drain(at..end);
        }
        2 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(256)).min(len);
            let chunk = bytes[at..end].to_vec();
            let to = rng.below(len + 1);
            bytes.splice(to..to, chunk);
        }
        3 if len > 0 => bytes.truncate(rng.below(len)),
        4 => {
            let (_, other) = rng.pick(others);
            let from = rng.below(other.len());
            let end = (from + rng.below(512)).min(other.len());
            let to = rng.below(len + 1);
            bytes.splice(to..to, other[from..end].iter().copied());
        }
        _ => {
            let token = *rng.pick(TOKENS);
            let to = rng.below(len + 1);
            bytes.splice(to..to, token.iter().copied());
        }
    }
}

/// `CASES` inputs made by one to four edits of a random seed.
fn mutated(seeds: &[(String, Vec<u8>)], seed: u64, cases: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..cases)
        .map(|_| {
            let (_, base) = rng.pick(seeds);
            let mut bytes = base.clone();
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut bytes, seeds);
            }
            bytes
        })
        .collect()
}

#[test]
fn cda_corpus_and_mutations_are_clean() {
    let seeds = corpus("cda");
    assert!(seeds.len() >= 20, "the cda corpus is missing");
    let mut parsed = 0;
    for (name, bytes) in &seeds {
        eprintln!("replaying cda/{name}");
        checks::cda(bytes);
        parsed += usize::from(parse_checkup(bytes, checks::FALLBACK_ID).is_ok());
    }
    assert!(parsed >= 2, "the good seeds no longer parse");
    let mut accepted = 0;
    for bytes in mutated(&seeds, 0xCDA, CASES) {
        checks::cda(&bytes);
        accepted += usize::from(parse_checkup(&bytes, checks::FALLBACK_ID).is_ok());
    }
    // Mutations of valid documents must reach the accepting paths too.
    assert!(
        accepted > 0,
        "no mutated document parsed: the cases test only refusals"
    );
}

#[test]
fn entity_and_doctype_seeds_are_refused_as_doctype() {
    let seeds = corpus("cda");
    for name in [
        "billion_laughs.xml",
        "external_entity.xml",
        "bad_doctype.xml",
        "doctype_lowercase.xml",
    ] {
        let (_, bytes) = seeds.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(
            parse_checkup(bytes, checks::FALLBACK_ID).unwrap_err(),
            Reason::Doctype,
            "{name}"
        );
    }
    // A DOCTYPE inside a comment is not a DOCTYPE: that document still parses.
    let (_, commented) = seeds
        .iter()
        .find(|(n, _)| n == "cdata_and_comments.xml")
        .unwrap();
    let doc = parse_checkup(commented, checks::FALLBACK_ID);
    assert!(doc.is_ok(), "{doc:?}");
}

#[test]
fn index_corpus_and_mutations_are_clean() {
    let seeds = corpus("index");
    assert!(seeds.len() >= 4, "the index corpus is missing");
    for (name, bytes) in &seeds {
        eprintln!("replaying index/{name}");
        checks::index(bytes);
    }
    for bytes in mutated(&seeds, 0x1D8, CASES) {
        checks::index(&bytes);
    }
}

#[test]
fn csv_corpus_and_mutations_are_clean() {
    let seeds = corpus("csv");
    assert!(seeds.len() >= 10, "the csv corpus is missing");
    let files = checks::Files::new();
    for (name, bytes) in &seeds {
        eprintln!("replaying csv/{name}");
        files.csv(bytes);
    }
    for bytes in mutated(&seeds, 0xC5F, CASES) {
        files.csv(&bytes);
    }
}

#[test]
fn archive_corpus_and_mutations_are_clean() {
    let seeds = corpus("archive");
    assert!(seeds.len() >= 4, "the archive corpus is missing");
    let files = checks::Files::new();
    for (name, bytes) in &seeds {
        eprintln!("replaying archive/{name}");
        files.archive(bytes);
    }
    // Byte-level edits of whole zips mostly exercise the zip reader.
    for bytes in mutated(&seeds, 0x219, CASES / 4) {
        files.archive(&bytes);
    }
}

/// Zips that are well formed around mutated documents and odd entry names, so the
/// entries reach the path checks and the parsers.
#[test]
fn zips_of_mutated_entries_are_clean() {
    let cda = corpus("cda");
    let index = corpus("index");
    let files = checks::Files::new();
    let names = [
        "fuzz/DATA/h0000000001.xml",
        "fuzz/DATA/H0000000002.XML",
        "fuzz/ix08_V08.xml",
        "fuzz/su08_V08.xml",
        "fuzz/../fuzz/DATA/h1.xml",
        "fuzz\\DATA\\h2.xml",
        "/fuzz/DATA/h3.xml",
        "fuzz/DATA/./h4.xml",
        "fuzz/DATA/c:h5.xml",
        "other/DATA/h6.xml",
        "fuzz/DATA/",
        "fuzz/DATA/h\u{0}7.xml",
    ];
    let documents = mutated(&cda, 0x21F, CASES / 4);
    let indexes = mutated(&index, 0x21E, CASES / 4);
    let mut rng = Rng(0x2122);
    for (doc, ix) in documents.iter().zip(&indexes) {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for _ in 0..=rng.below(4) {
            let name = *rng.pick(&names);
            let method = if rng.below(2) == 0 {
                zip::CompressionMethod::Stored
            } else {
                zip::CompressionMethod::Deflated
            };
            let options = zip::write::SimpleFileOptions::default().compression_method(method);
            // Duplicate names are refused by the writer; that case is not this test's.
            if zip.start_file(name, options).is_ok() {
                let body = if name.contains("08_V08") { ix } else { doc };
                zip.write_all(body).unwrap();
            }
        }
        let bytes = zip.finish().unwrap().into_inner();
        files.archive(&bytes);
    }
}

/// Fuzzing finding 1: quarantine reasons quoted values unshortened (item code, exam
/// date, CSV cell, index count, element names), so a 64 KiB attribute or cell made a
/// 64 KiB report line. Fixed: reasons are cut to a bounded length.
#[test]
fn reasons_do_not_echo_huge_values() {
    let mut reasons = Vec::new();
    let cda = corpus("cda");
    let artifact = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/artifacts/cda/long-reason-malformed-xml.xml");
    let malformed = (
        "long-reason-malformed-xml.xml".to_owned(),
        std::fs::read(artifact).unwrap(),
    );
    for (name, bytes) in cda
        .iter()
        .filter(|(n, _)| n == "huge_attribute.xml" || n == "huge_date.xml")
        .chain([&malformed])
    {
        reasons.push((
            name.clone(),
            parse_checkup(bytes, checks::FALLBACK_ID).unwrap_err(),
        ));
    }
    // A 64 KiB money cell.
    let (_, care) = corpus("csv")
        .into_iter()
        .find(|(n, _)| n == "kdb_care_utf8.csv")
        .unwrap();
    let text = String::from_utf8(care).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let row = rest.lines().next().unwrap();
    let (cells, _) = row.rsplit_once(',').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.csv");
    std::fs::write(
        &path,
        format!("{header}\n{cells},{}x\n", "9".repeat(65_536)),
    )
    .unwrap();
    lgwan_agent::tabular::read_table(&path, &checks::initial_mappings(), 1 << 20, &mut |item| {
        if let lgwan_agent::tabular::TableItem::Quarantined(q) = item {
            reasons.push(("huge money cell".to_owned(), q.reason));
        }
    });
    assert_eq!(reasons.len(), 4, "every case is refused");
    let long: Vec<String> = reasons
        .iter()
        .filter(|(_, r)| r.to_string().len() > checks::MAX_MESSAGE_BYTES)
        .map(|(name, r)| format!("{name}: `{}` of {} bytes", r.kind(), r.to_string().len()))
        .collect();
    assert!(long.is_empty(), "reasons echo their input: {long:?}");
    for (name, reason) in &reasons {
        checks::bounded_reason(name, reason);
    }
}

/// Fuzzing finding 2: a CSV that matches a mapping and whose last record ends at the
/// end of the file (no final line break, or an open quote) panicked in
/// `DecodingReader::read` ("Must not use a decoder that has finished"): after
/// returning end of file once, the reader decoded again with a finished decoder. Fixed.
#[test]
fn csv_without_final_line_break() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/artifacts/csv");
    let reproducer = std::fs::read(dir.join("crash-no-final-line-break.csv")).unwrap();
    let (_, care) = corpus("csv")
        .into_iter()
        .find(|(n, _)| n == "kdb_care_utf8.csv")
        .unwrap();
    let trimmed = care.trim_ascii_end().to_vec();
    let open_quote = [care.as_slice(), b"\"06131186,106-47"].concat();
    let files = checks::Files::new();
    for bytes in [reproducer, trimmed, open_quote] {
        files.csv(&bytes);
    }
}
