//! Synthetic 特定健診 archives in the MHLW standard format (V08), streamed to disk:
//! the Rust port of `tests/fixtures/gen_checkups.py` for the demo and benchmarks.
//!
//! Every person is invented: names come from obviously fictional word lists,
//! numbers from a seeded generator, so the same options always give the same
//! bytes. Item codes, names, types, UCUM units, series-group relations and
//! result-code OIDs come from the MHLW item table (`XMLhc18tab.utf8.csv`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Months, NaiveDate};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::domain::Sex;
use crate::index::{IndexNamespace, NS_2007, NS_MHLW};
use cda::{Visit, checkup_xml, guidance_xml};
use items::Catalog;
use person::Person;

mod cda;
mod items;
mod person;

/// [`SynthSummary::identities`] is filled only up to this many persons.
pub const IDENTITY_LIMIT: usize = 1000;

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Number of invented persons (one checkup each).
    pub persons: usize,
    /// Seed: the same options always give the same bytes.
    pub seed: u64,
    /// Sender (the checkup provider), 10 digits; also the documents' provider id.
    pub sender: String,
    /// Receiver (the insurer), 8 digits.
    pub receiver: String,
    /// Year of the exams (April to December) and the base of the birth years.
    pub exam_year: i32,
    /// Creation date of the archive, `YYYYMMDD` (index, archive name, zip times).
    pub creation_date: String,
    /// Split number of the archive name, 1 to 9.
    pub split: u8,
    /// Namespace of `ix08_V08.xml` and `su08_V08.xml`.
    pub namespace: IndexNamespace,
    /// Whether to write `su08_V08.xml`.
    pub summary: bool,
    /// Adds an earlier visit of person 0 (on March 15) with the other width of 記号・番号.
    pub repeat_visit: bool,
    /// Adds a person sharing person 0's canonical identity except the 枝番.
    pub twins: bool,
    /// Gives every person a 特定保健指導 record too (`DATA/g….xml`, `hg08`): the first
    /// interview on the checkup's date and the evaluation three months later.
    pub guidance: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            persons: 5,
            seed: 1,
            sender: "1311234567".into(),
            receiver: "00138016".into(),
            exam_year: 2024,
            creation_date: "20240701".into(),
            split: 1,
            namespace: IndexNamespace::Y2007,
            summary: true,
            repeat_visit: true,
            twins: false,
            guidance: false,
        }
    }
}

impl SynthOptions {
    /// The archive file name by the naming rule:
    /// `{sender}_{receiver}_{creation_date}{split}_1.zip`.
    pub fn archive_name(&self) -> String {
        format!("{}.zip", self.root())
    }

    /// Number of checkup and guidance documents the archive will hold.
    pub fn documents(&self) -> usize {
        let extra = usize::from(self.persons > 0 && self.repeat_visit)
            + usize::from(self.persons > 0 && self.twins);
        self.persons * (1 + usize::from(self.guidance)) + extra
    }

    fn root(&self) -> String {
        format!(
            "{}_{}_{}{}_1",
            self.sender, self.receiver, self.creation_date, self.split
        )
    }

    fn check(&self) -> io::Result<()> {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let bad = |what: &str, value: &str, rule: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} `{value}` is not {rule}"),
            ))
        };
        if !digits(&self.sender, 10) {
            return bad("sender", &self.sender, "10 digits");
        }
        if !digits(&self.receiver, 8) {
            return bad("receiver", &self.receiver, "8 digits");
        }
        if !digits(&self.creation_date, 8) {
            return bad("creation date", &self.creation_date, "8 digits (YYYYMMDD)");
        }
        if !(1..=9).contains(&self.split) {
            return bad("split", &self.split.to_string(), "a digit from 1 to 9");
        }
        if !(1900..=9000).contains(&self.exam_year) {
            return bad("exam year", &self.exam_year.to_string(), "a plausible year");
        }
        Ok(())
    }
}

/// The identifiers of one invented person, as their first checkup carries them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthPerson {
    /// `root^extension` of the checkup's `ClinicalDocument/id`, as the parser reports it.
    pub document_id: String,
    /// Insurer number (保険者番号), 6 or 8 digits.
    pub insurer_number: String,
    /// Card symbol (記号), half-width (may hold kanji and half-width kana).
    pub symbol: String,
    /// Card number (番号), half-width digits.
    pub number: String,
    /// Branch number (枝番), when the document carries one.
    pub branch: Option<String>,
    /// Whether the document writes symbol and number in full width.
    pub full_width: bool,
    /// Birth date, `YYYY-MM-DD`.
    pub birth_date: String,
    /// Sex.
    pub sex: Sex,
    /// Invented name (family, ideographic space, given).
    pub name: String,
}

/// What [`write_archive`] wrote.
#[derive(Clone, Debug)]
pub struct SynthSummary {
    /// Persons invented (the twin, when asked for, not counted).
    pub persons: usize,
    /// Checkup documents written.
    pub documents: usize,
    /// The archive written.
    pub path: PathBuf,
    /// Every person (and the twin), only when `persons <= IDENTITY_LIMIT`.
    pub identities: Vec<SynthPerson>,
}

/// Writes a synthetic archive to `path`, one document at a time (memory stays
/// flat). The root folder inside is named by [`SynthOptions::archive_name`].
pub fn write_archive(path: &Path, opts: &SynthOptions) -> io::Result<SynthSummary> {
    opts.check()?;
    let catalog = Catalog::load()?;
    let root = opts.root();
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut zip = ZipWriter::new(file);
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(zip_time(&opts.creation_date))
        .unix_permissions(0o644);
    let documents = opts.documents();
    let ns = match opts.namespace {
        IndexNamespace::Y2007 => NS_2007,
        IndexNamespace::Mhlw => NS_MHLW,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    index_xml(&mut buf, ns, opts, documents)?;
    zip.start_file(format!("{root}/ix08_V08.xml"), options)?;
    zip.write_all(&buf)?;
    if opts.summary {
        buf.clear();
        summary_xml(&mut buf, ns, documents)?;
        zip.start_file(format!("{root}/su08_V08.xml"), options)?;
        zip.write_all(&buf)?;
    }

    let keep = opts.persons <= IDENTITY_LIMIT;
    let mut identities = Vec::new();
    let mut person_rng = Rng(opts.seed);
    let mut doc_rng = Rng(opts.seed.wrapping_mul(7919).wrapping_add(1));
    let mut first: Option<Person> = None;
    let mut serial = 0usize;
    let year = opts.exam_year;
    // Writes a checkup, and when `guidance`, the guidance record that followed it.
    let mut emit = |person: &Person, date: &str, full_width: bool, rng: &mut Rng, guidance| {
        serial += 1;
        let ctx = Visit {
            provider: &opts.sender,
            date,
            serial,
            full_width,
        };
        buf.clear();
        checkup_xml(&mut buf, rng, &catalog, person, &ctx)?;
        let name = format!("{root}/DATA/h{}{date}{serial:05}.xml", opts.sender);
        zip.start_file(name, options)?;
        zip.write_all(&buf)?;
        let document_id = format!("1.2.392.200119.6.102^{}", ctx.document_id());
        if guidance {
            serial += 1;
            let visit = Visit { serial, ..ctx };
            let later = |months| {
                NaiveDate::parse_from_str(date, "%Y%m%d")
                    .ok()
                    .and_then(|d| d.checked_add_months(Months::new(months)))
                    .map_or_else(|| date.to_owned(), |d| d.format("%Y%m%d").to_string())
            };
            buf.clear();
            guidance_xml(&mut buf, rng, person, &visit, &later(1), &later(3))?;
            let name = format!("{root}/DATA/g{}{date}{serial:05}.xml", opts.sender);
            zip.start_file(name, options)?;
            zip.write_all(&buf)?;
        }
        io::Result::Ok(document_id)
    };
    for index in 0..opts.persons {
        let mut person = Person::invent(&mut person_rng, index, year);
        if index == 0 && opts.twins && person.branch.is_none() {
            person.branch = Some("01".into());
        }
        let date = format!(
            "{year}{:02}{:02}",
            doc_rng.range(4, 13),
            doc_rng.range(1, 29)
        );
        let document_id = emit(
            &person,
            &date,
            person.full_width,
            &mut doc_rng,
            opts.guidance,
        )?;
        if keep {
            identities.push(person.identity(document_id));
        }
        if index == 0 {
            first = Some(person);
        }
    }
    if let Some(person) = first.as_ref().filter(|_| opts.repeat_visit) {
        emit(
            person,
            &format!("{year}0315"),
            !person.full_width,
            &mut doc_rng,
            false,
        )?;
    }
    if let Some(person) = first.as_ref().filter(|_| opts.twins) {
        let twin = person.twin(&mut Rng(opts.seed.wrapping_add(99)));
        let document_id = emit(&twin, &format!("{year}0920"), false, &mut doc_rng, false)?;
        if keep {
            identities.push(twin.identity(document_id));
        }
    }
    zip.finish()?.flush()?;
    Ok(SynthSummary {
        persons: opts.persons,
        documents,
        path: path.to_path_buf(),
        identities,
    })
}

/// 09:00 on the creation date (1980-01-01 if out of the zip range).
fn zip_time(date: &str) -> DateTime {
    let part = |r: std::ops::Range<usize>| date.get(r).and_then(|s| s.parse().ok()).unwrap_or(1);
    DateTime::from_date_and_time(part(0..4), part(4..6) as u8, part(6..8) as u8, 9, 0, 0)
        .unwrap_or_default()
}

/// splitmix64: small, fast, and good enough for invented data.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`; `lo` when the range is empty.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.saturating_sub(lo).max(1) as u64;
        lo + ((u128::from(self.next()) * u128::from(span)) >> 64) as i64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick(&mut self, xs: &[&'static str]) -> &'static str {
        let i = self.range(0, xs.len() as i64) as usize;
        xs.get(i).copied().unwrap_or_default()
    }
}

/// The archive index, `ix08_V08.xml`.
fn index_xml(buf: &mut Vec<u8>, ns: &str, opts: &SynthOptions, count: usize) -> io::Result<()> {
    write!(
        buf,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<index xmlns="{ns}">
  <interactionType code="1"/>
  <creationTime value="{}"/>
  <sender><id root="1.2.392.200119.6.102" extension="{}"/></sender>
  <receiver><id root="1.2.392.200119.6.101" extension="{}"/></receiver>
  <serviceEventType code="1"/>
  <totalRecordCount value="{count}"/>
</index>
"#,
        opts.creation_date, opts.sender, opts.receiver
    )
}

/// The archive summary, `su08_V08.xml`.
fn summary_xml(buf: &mut Vec<u8>, ns: &str, count: usize) -> io::Result<()> {
    let count = count as u64;
    write!(
        buf,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<summary xmlns="{ns}">
  <serviceEventType code="1"/>
  <totalSubjectCount value="{count}"/>
  <totalCostAmount value="{}"/>
  <totalPaymentAmount value="{}"/>
  <totalClaimAmount value="{}"/>
</summary>
"#,
        count * 8000,
        count * 1000,
        count * 7000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        for _ in 0..1000 {
            let x = a.range(3, 9);
            assert_eq!(x, b.range(3, 9));
            assert!((3..9).contains(&x));
            let u = a.unit();
            assert_eq!(u, b.unit());
            assert!((0.0..1.0).contains(&u));
        }
        assert_ne!(Rng(7).next(), Rng(8).next());
    }

    #[test]
    fn bad_options_are_refused() {
        let dir = std::env::temp_dir().join("synth-never-written.zip");
        for opts in [
            SynthOptions {
                sender: "131123456".into(),
                ..Default::default()
            },
            SynthOptions {
                receiver: "0013801x".into(),
                ..Default::default()
            },
            SynthOptions {
                split: 0,
                ..Default::default()
            },
        ] {
            let err = write_archive(&dir, &opts).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        assert_eq!(
            SynthOptions::default().archive_name(),
            "1311234567_00138016_202407011_1.zip"
        );
    }
}

/// One stratum of synthetic programme data ([`write_evaluation_inputs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthStratum {
    /// Sex code (1 male, 2 female).
    pub sex: u8,
    /// Birth year (everyone born on June 15).
    pub birth_year: i32,
    /// Persons.
    pub persons: usize,
    /// Of them, on the programme's roster.
    pub participants: usize,
}

/// Writes a synthetic KDB medical-cost CSV (fiscal years 2024 and 2025, one month each)
/// and a programme roster into `dir` (`kdb.csv`, `participants.csv`), for `evaluate`:
/// participants' cost falls in the second year, the others' rises. Returns their paths.
pub fn write_evaluation_inputs(
    dir: &Path,
    insurer: &str,
    strata: &[SynthStratum],
) -> io::Result<(PathBuf, PathBuf)> {
    let mut kdb = String::from(
        "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,診療年月,入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額\n",
    );
    let mut roster = String::from("保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別\n");
    let mut number = 0;
    for s in strata {
        for i in 0..s.persons {
            number += 1;
            let id = format!("{insurer},7,{number},01,{}0615,{}", s.birth_year, s.sex);
            let enrolled = i < s.participants;
            let first = 9_000 + 97 * i;
            let second = if enrolled { 7_000 } else { 10_000 } + 89 * i;
            kdb.push_str(&format!(
                "{id},202406,,{first},,,{first}\n{id},202506,,{second},,,{second}\n"
            ));
            if enrolled {
                roster.push_str(&format!("{id}\n"));
            }
        }
    }
    std::fs::create_dir_all(dir)?;
    let (k, r) = (dir.join("kdb.csv"), dir.join("participants.csv"));
    std::fs::write(&k, kdb)?;
    std::fs::write(&r, roster)?;
    Ok((k, r))
}
