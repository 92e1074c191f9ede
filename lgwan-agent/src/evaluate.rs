//! `evaluate`: a programme's outcome statistics, computed inside LGWAN from the files
//! the agent reads (KDB CSV, checkup archives), exporting no person (issue 19).
//!
//! The population is everyone the inputs show in the baseline fiscal year, stratified
//! by sex and age band at the baseline year's April 1 (so each person stays in one
//! stratum across the years: the groups are matched on the baseline year). The
//! participants are the residents of a roster kept inside LGWAN; everyone else is the
//! comparison group. For each fiscal year, measure, stratum (and all strata) and group
//! the report gives the number of persons, the mean, the median and a 95% confidence
//! interval of the mean, and per stratum the difference between the groups.
//!
//! Disclosure control ([`suppress`]): a cell of fewer persons than the programme's
//! threshold (default 10) publishes no statistic (`"n": null`, `"suppressed": true`),
//! and further cells are suppressed so that no suppressed cell can be recovered from
//! the totals; a difference is published only where both of its cells are.

pub mod stats;

pub use renkei_protocol::evaluation::suppress;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::domain::{DocumentKind, PersonIdentity, Sex, Value};
use crate::error::{Error, Result};
use crate::minimize::fiscal_year;
use crate::pipeline::{Evaluated, expand_inputs};
pub use renkei_protocol::evaluation::{Cell, Difference, FORMAT, PURPOSE, Report, SignedReport};

/// The default least number of persons a published cell describes.
pub const DEFAULT_THRESHOLD: usize = 10;

/// A programme file (`PROGRAM.toml`), as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// The programme's name, e.g. `hachioji-walking`.
    pub name: String,
    /// The evaluator the report is for, an `analyst:<id>` participant.
    pub evaluator: String,
    /// Cells of fewer persons publish nothing (at least 2; default 10).
    #[serde(default = "default_threshold")]
    pub threshold: usize,
    /// The fiscal year the population and strata are taken from.
    pub baseline_year: i32,
    /// The fiscal years reported (the baseline year among them, usually).
    pub years: Vec<i32>,
    /// Lower bounds of the age bands, ascending (`[40, 65, 75]`: 40–64, 65–74, 75+);
    /// younger persons are outside the evaluation.
    pub age_bands: Vec<u32>,
    /// The participants: a CSV kept inside LGWAN (relative to the programme file) with
    /// the columns 保険者番号, 被保険者証記号, 被保険者証番号, 枝番, 生年月日, 性別.
    pub roster: PathBuf,
    /// What is measured.
    pub measures: Vec<Measure>,
}

fn default_threshold() -> usize {
    DEFAULT_THRESHOLD
}

/// One measure: exactly one of `table` (with `code`), `item` or `attendance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// The name in the report, e.g. `medical_cost`.
    pub name: String,
    /// A CSV mapping of the agent config (`kdb-medical-cost`): the person's cells of
    /// value `code` are summed per fiscal year; a person without a row has 0.
    #[serde(default)]
    pub table: Option<String>,
    /// The value code of `table`, e.g. `total-cost`.
    #[serde(default)]
    pub code: Option<String>,
    /// A checkup item code (`9N011000000000001`, BMI): the mean of the person's values
    /// in the fiscal year; a person without one is not counted.
    #[serde(default)]
    pub item: Option<String>,
    /// 1 if the person had a checkup in the fiscal year, else 0 (a rate).
    #[serde(default)]
    pub attendance: bool,
}

/// How a measure reads a person's data.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Table { mapping: String, code: String },
    Item(String),
    Attendance,
}

impl Program {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Program> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| Error::Config {
            path: path.to_path_buf(),
            reason,
        };
        let mut program: Program = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if program.threshold < 2 {
            return Err(bad(format!(
                "field `threshold`: {} is below 2 (one person's cell would be published)",
                program.threshold
            )));
        }
        match program.evaluator.split_once(':') {
            Some(("analyst", id)) if !id.is_empty() => {}
            _ => {
                return Err(bad(format!(
                    "field `evaluator`: `{}` is not an `analyst:<id>` participant",
                    program.evaluator
                )));
            }
        }
        if program.years.is_empty() {
            return Err(bad("field `years`: names no fiscal year".into()));
        }
        if program.age_bands.is_empty()
            || !program
                .age_bands
                .windows(2)
                .all(|w| matches!(w, [a, b] if a < b))
        {
            return Err(bad(
                "field `age_bands`: give ascending lower bounds, e.g. [40, 65, 75]".into(),
            ));
        }
        if program.measures.is_empty() {
            return Err(bad("field `measures`: names no measure".into()));
        }
        let mut names = BTreeSet::new();
        for m in &program.measures {
            if !names.insert(m.name.as_str()) {
                return Err(bad(format!("measure `{}` is named twice", m.name)));
            }
            m.source()
                .map_err(|why| bad(format!("measure `{}`: {why}", m.name)))?;
        }
        if program.roster.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            program.roster = base.join(&program.roster);
        }
        Ok(program)
    }

    /// The age band (its lower bound) of someone born on `birth`, on April 1 of
    /// fiscal year `year`; `None` below the first band.
    fn band(&self, birth: NaiveDate, year: i32) -> Option<u32> {
        let april = NaiveDate::from_ymd_opt(year, 4, 1)?;
        let mut age = april.year() - birth.year();
        if (april.month(), april.day()) < (birth.month(), birth.day()) {
            age -= 1;
        }
        let age = u32::try_from(age).ok()?;
        self.age_bands.iter().rev().find(|b| **b <= age).copied()
    }

    /// The label of the band starting at `lower`: `40-64`, or `75+` for the last.
    fn band_label(&self, lower: u32) -> String {
        match self.age_bands.iter().find(|b| **b > lower) {
            Some(next) => format!("{lower}-{}", next - 1),
            None => format!("{lower}+"),
        }
    }
}

impl Measure {
    fn source(&self) -> std::result::Result<Source, String> {
        match (&self.table, &self.code, &self.item, self.attendance) {
            (Some(mapping), Some(code), None, false) => Ok(Source::Table {
                mapping: mapping.clone(),
                code: code.clone(),
            }),
            (None, None, Some(item), false) => Ok(Source::Item(item.clone())),
            (None, None, None, true) => Ok(Source::Attendance),
            _ => Err(
                "give exactly one of `table` with `code`, `item`, or `attendance = true`".into(),
            ),
        }
    }
}

/// One person of the population: sex, baseline age band, and the measured values per
/// fiscal year (by measure index). Never written anywhere.
#[derive(Debug, Default)]
struct Person {
    sex: Option<Sex>,
    birth: Option<NaiveDate>,
    seen_in: BTreeSet<i32>,
    /// (measure, year) → values.
    values: HashMap<(usize, i32), Vec<f64>>,
    attended: BTreeSet<i32>,
}

/// What `evaluate` saw, for the operator (never in the report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvaluateSummary {
    /// Persons in the population.
    pub population: usize,
    /// Of them, on the roster.
    pub participants: usize,
    /// Roster entries not in the population.
    pub roster_unmatched: usize,
    /// Cells suppressed (below the threshold, or to protect another).
    pub suppressed: usize,
}

const GROUPS: [&str; 2] = ["participants", "others"];

/// Computes the report of `program` over `inputs`.
pub fn evaluate(
    agent: &Agent,
    program: &Program,
    inputs: &[PathBuf],
) -> Result<(Report, EvaluateSummary)> {
    let roster = read_roster(agent, &program.roster)?;
    let sources: Vec<Source> = program
        .measures
        .iter()
        .filter_map(|m| m.source().ok())
        .collect();
    let mut people: HashMap<String, Person> = HashMap::new();
    let files = expand_inputs(inputs);
    agent.for_each_person(&files, &mut |token, identity, seen| {
        let person = people.entry(token.as_str().to_owned()).or_default();
        person.sex.get_or_insert(identity.sex);
        person.birth.get_or_insert(identity.birth);
        observe(agent, &sources, person, seen);
    });
    let mut summary = EvaluateSummary::default();
    // (sex, band, group) → persons, for the population of the baseline year.
    let mut strata: BTreeMap<(Sex, u32), [Vec<&Person>; 2]> = BTreeMap::new();
    for (token, p) in &people {
        let (Some(sex), Some(birth)) = (p.sex, p.birth) else {
            continue;
        };
        if !p.seen_in.contains(&program.baseline_year) {
            continue;
        }
        let Some(band) = program.band(birth, program.baseline_year) else {
            continue;
        };
        let group = usize::from(!roster.contains(token));
        summary.population += 1;
        summary.participants += usize::from(group == 0);
        if let Some(cells) = strata.entry((sex, band)).or_default().get_mut(group) {
            cells.push(p);
        }
    }
    summary.roster_unmatched = roster
        .iter()
        .filter(|t| {
            people.get(*t).is_none_or(|p| {
                !p.seen_in.contains(&program.baseline_year)
                    || p.birth
                        .and_then(|b| program.band(b, program.baseline_year))
                        .is_none()
            })
        })
        .count();

    let labels: Vec<(String, String)> = strata
        .keys()
        .map(|(sex, band)| (sex.as_str().to_owned(), program.band_label(*band)))
        .collect();
    let mut cells = Vec::new();
    let mut differences = Vec::new();
    for &year in &program.years {
        // One table per measure (the strata, then all strata, per group), then one
        // suppression pattern for all of the year's measures: a cell withheld in one
        // measure is withheld in every other, so that no measure's counts or sums speak
        // for another's withheld cell.
        let mut tables = Vec::with_capacity(program.measures.len());
        let mut hidden = suppress::Hidden::default();
        for (m, source) in sources.iter().enumerate() {
            let table: Vec<[Vec<f64>; 2]> = strata
                .values()
                .map(|groups| {
                    groups.clone().map(|persons| {
                        persons
                            .iter()
                            .filter_map(|p| value_of(p, m, source, year))
                            .collect()
                    })
                })
                .collect();
            let total: [Vec<f64>; 2] = [0, 1].map(|g| {
                table
                    .iter()
                    .flat_map(|row| row.get(g).into_iter().flatten().copied())
                    .collect()
            });
            let counts: Vec<[usize; 2]> = table
                .iter()
                .map(|row| row.each_ref().map(|v| contributors(source, v)))
                .collect();
            let totals = total.each_ref().map(|v| contributors(source, v));
            let mine = suppress::suppress(&counts, totals, program.threshold);
            if m == 0 {
                hidden = mine;
            } else {
                hidden.union(&mine);
            }
            tables.push((table, total));
        }
        for (measure, (table, total)) in program.measures.iter().zip(&tables) {
            for (i, row) in table.iter().enumerate() {
                let (sex, band) = labels.get(i).cloned().unwrap_or_default();
                let mut pair = [None, None];
                for (g, slot) in pair.iter_mut().enumerate() {
                    let values = row.get(g).map(Vec::as_slice).unwrap_or_default();
                    let off = hidden
                        .cells
                        .get(i)
                        .and_then(|r| r.get(g))
                        .copied()
                        .unwrap_or(true);
                    if !off {
                        *slot = Some(values);
                    }
                    summary.suppressed += usize::from(off);
                    cells.push(cell(year, &measure.name, &sex, &band, g, values, off));
                }
                differences.push(difference(year, &measure.name, &sex, &band, pair));
            }
            let mut pair = [None, None];
            for (g, slot) in pair.iter_mut().enumerate() {
                let values = total.get(g).map(Vec::as_slice).unwrap_or_default();
                let off = hidden.totals.get(g).copied().unwrap_or(true);
                if !off {
                    *slot = Some(values);
                }
                summary.suppressed += usize::from(off);
                cells.push(cell(year, &measure.name, "all", "all", g, values, off));
            }
            differences.push(difference(year, &measure.name, "all", "all", pair));
        }
    }
    let report = Report {
        format: FORMAT.into(),
        program: program.name.clone(),
        source: agent.config.source.to_string(),
        evaluator: program.evaluator.clone(),
        threshold: program.threshold,
        baseline_year: program.baseline_year,
        cells,
        differences,
    };
    Ok((report, summary))
}

/// A person's value of measure `m` in fiscal year `year`, if the measure counts them.
fn value_of(p: &Person, m: usize, source: &Source, year: i32) -> Option<f64> {
    match source {
        Source::Table { .. } => Some(
            p.values
                .get(&(m, year))
                .map_or(0.0, |v| v.iter().sum::<f64>()),
        ),
        Source::Item(_) => p
            .values
            .get(&(m, year))
            .filter(|v| !v.is_empty())
            .map(|v| v.iter().sum::<f64>() / v.len() as f64),
        Source::Attendance => Some(f64::from(u8::from(p.attended.contains(&year)))),
    }
}

/// How many persons a cell's published statistics speak for, which the threshold is
/// held against: for a rate, the fewer of those with and without (its mean times its
/// count gives both); for a sum, the persons with a value other than 0 (a sum of one
/// person's cost is that person's cost); otherwise everyone counted.
fn contributors(source: &Source, values: &[f64]) -> usize {
    match source {
        Source::Attendance => {
            let ones = values.iter().filter(|v| **v != 0.0).count();
            ones.min(values.len() - ones)
        }
        Source::Table { .. } => values.iter().filter(|v| **v != 0.0).count(),
        Source::Item(_) => values.len(),
    }
}

fn cell(
    year: i32,
    measure: &str,
    sex: &str,
    band: &str,
    group: usize,
    values: &[f64],
    suppressed: bool,
) -> Cell {
    Cell {
        year,
        measure: measure.to_owned(),
        sex: sex.to_owned(),
        age_band: band.to_owned(),
        group: GROUPS.get(group).copied().unwrap_or_default().to_owned(),
        n: (!suppressed).then_some(values.len()),
        suppressed,
        stats: (!suppressed).then(|| stats::summarize(values)).flatten(),
    }
}

fn difference(
    year: i32,
    measure: &str,
    sex: &str,
    band: &str,
    pair: [Option<&[f64]>; 2],
) -> Difference {
    let welch = match pair {
        [Some(a), Some(b)] => stats::welch(a, b),
        _ => None,
    };
    Difference {
        year,
        measure: measure.to_owned(),
        sex: sex.to_owned(),
        age_band: band.to_owned(),
        suppressed: pair.iter().any(Option::is_none),
        difference: welch.map(|(d, _)| d),
        ci95: welch.map(|(_, ci)| ci),
    }
}

/// Adds what one input says of a person to `person`.
fn observe(agent: &Agent, sources: &[Source], person: &mut Person, seen: Evaluated<'_>) {
    match seen {
        Evaluated::Checkup(doc) => {
            let year = fiscal_year(doc.exam_date);
            person.seen_in.insert(year);
            if doc.kind != DocumentKind::Checkup {
                return;
            }
            person.attended.insert(year);
            for (m, source) in sources.iter().enumerate() {
                let Source::Item(item) = source else {
                    continue;
                };
                for o in doc.observations.iter().filter(|o| &o.item_code == item) {
                    if let Value::Quantity { value, .. } = &o.value {
                        if let Ok(v) = value.parse::<f64>() {
                            person.values.entry((m, year)).or_default().push(v);
                        }
                    }
                }
            }
        }
        Evaluated::Row(mapping, row) => {
            let year = fiscal_year(row.effective_date);
            person.seen_in.insert(year);
            for (m, source) in sources.iter().enumerate() {
                let Source::Table {
                    mapping: name,
                    code,
                } = source
                else {
                    continue;
                };
                if *name != mapping {
                    continue;
                }
                let Some(table) = agent.config.tables.iter().find(|t| t.name == mapping) else {
                    continue;
                };
                for (i, raw) in &row.cells {
                    let is_code = table.values.get(*i).is_some_and(|v| &v.code == code);
                    if let (true, Ok(v)) = (is_code, raw.parse::<f64>()) {
                        person.values.entry((m, year)).or_default().push(v);
                    }
                }
            }
        }
    }
}

/// The tokens of the roster's residents.
fn read_roster(agent: &Agent, path: &Path) -> Result<BTreeSet<String>> {
    let bad = |reason: String| Error::Invalid {
        field: "roster",
        value: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(format!("header: {e}")))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no column `{name}`")))
    };
    let [insurer, symbol, number, branch, birth, sex] = [
        "保険者番号",
        "被保険者証記号",
        "被保険者証番号",
        "枝番",
        "生年月日",
        "性別",
    ]
    .map(column);
    let (insurer, symbol, number, branch, birth, sex) =
        (insurer?, symbol?, number?, branch?, birth?, sex?);
    let mut tokens = BTreeSet::new();
    for (i, record) in reader.records().enumerate() {
        // Line numbers count the header as line 1; identity cells are never quoted.
        let line = i + 2;
        let record = record.map_err(|e| bad(format!("line {line}: {e}")))?;
        let cell = |c: usize| record.get(c).map(str::trim).unwrap_or_default();
        let person = PersonIdentity {
            insurer: cell(insurer)
                .chars()
                .map(crate::domain::fold_width)
                .collect(),
            symbol: cell(symbol).to_owned(),
            number: cell(number).to_owned(),
            branch: Some(cell(branch).to_owned()).filter(|b| !b.is_empty()),
            birth: crate::domain::parse_date(cell(birth))
                .ok_or_else(|| bad(format!("line {line}: column `生年月日` is not a date")))?,
            sex: Sex::parse(cell(sex))
                .ok_or_else(|| bad(format!("line {line}: column `性別` is not 1/2 or 男/女")))?,
        };
        // The error names the field, never its value.
        let (token, _) = agent.tokenize(&person).map_err(|e| match e {
            Error::Crypto(renkei_crypto::Error::Identity { field, reason, .. }) => {
                bad(format!("line {line}: {field} {reason}"))
            }
            _ => bad(format!("line {line}: the identity cannot be tokenized")),
        })?;
        tokens.insert(token.as_str().to_owned());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_or_a_sum_speaks_for_fewer_persons_than_it_counts() {
        let attendance = Source::Attendance;
        // 1 of 12 attended: mean × n says so, so the cell speaks for 1 person.
        let mut rate = vec![0.0; 12];
        rate[0] = 1.0;
        assert_eq!(contributors(&attendance, &rate), 1);
        assert_eq!(
            contributors(&attendance, &[1.0; 12]),
            0,
            "everyone: the rest is 0"
        );
        let cost = Source::Table {
            mapping: "kdb-medical-cost".into(),
            code: "total-cost".into(),
        };
        assert_eq!(contributors(&cost, &[0.0, 5000.0, 0.0]), 1);
        assert_eq!(contributors(&Source::Item("x".into()), &[22.0, 23.5]), 2);
    }
}
