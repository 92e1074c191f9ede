//! KDB CSV exports and insurer notices (医療費通知, ジェネリック差額通知): the
//! column mapping from config, header matching, row parsing, and the FHIR
//! bundle of one row. Files stream row by row; CP932 or UTF-8 is detected. A row
//! holding bytes that are not valid in the file's encoding is set aside on its
//! own, named by line; only a bad header sets the whole file aside.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::decode::{DecodingReader, Malformed, detect};
use crate::domain::{PersonIdentity, Sex, fold_width, is_decimal, parse_date};
use crate::minimize::{UCUM, bundle};
use crate::quarantine::{Quarantine, Reason};

/// How the columns of one kind of CSV map to a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// Name of the mapping, e.g. `kdb-medical-cost`; part of each row's document id.
    pub name: String,
    /// Catalog category of the records, e.g. `kdb.medical-cost`.
    pub category: String,
    /// Code system of the value codes; default `urn:renkei:table:<name>`.
    #[serde(default)]
    pub code_system: Option<String>,
    /// The identity columns.
    pub identity: IdentityColumns,
    /// The column with the date the row refers to.
    pub date_column: String,
    /// Its chrono format, e.g. `%Y%m` (day 1 is implied) or `%Y/%m/%d`.
    pub date_format: String,
    /// The value columns; a row's empty cells are left out.
    #[serde(default)]
    pub values: Vec<ValueColumn>,
    /// For an attendance list (がん検診, 歯科健診 受診者一覧): the name of the examination,
    /// e.g. `がん検診受診年度`. Each row then becomes only an "attended in fiscal year N"
    /// record of the catalog's attendance category, coded also `<code_system>#<name>`;
    /// the exam date and any other column stay inside LGWAN. Such a mapping has no
    /// `values`.
    #[serde(default)]
    pub attendance: Option<String>,
    /// The FHIR resource a row becomes: `observation` (the default, one per value cell)
    /// or `immunization` (one `Immunization` per row, from the value columns coded
    /// `vaccine`, text, and `dose-number`, a whole number from 1).
    #[serde(default)]
    pub resource: RowResource,
}

/// What a row of a mapping becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowResource {
    /// One `Observation` per non-empty value cell.
    #[default]
    Observation,
    /// One `Immunization`: a vaccination record (予防接種台帳).
    Immunization,
}

/// Names of the identity columns (the values never leave the agent). Either the
/// insurance identity (`insurer`, `number`, with `symbol` and `branch` when the file has
/// them), or, for the municipality's own systems (健康管理システム), the 宛名番号 alone
/// (`resident`); `birth` and `sex` always.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityColumns {
    /// 保険者番号 (absent for a file keyed by 宛名番号 alone).
    #[serde(default)]
    pub insurer: Option<String>,
    /// 記号 (absent when the insurer issues none).
    #[serde(default)]
    pub symbol: Option<String>,
    /// 番号 (absent for a file keyed by 宛名番号 alone).
    #[serde(default)]
    pub number: Option<String>,
    /// 枝番.
    #[serde(default)]
    pub branch: Option<String>,
    /// 生年月日 (`YYYYMMDD`, `YYYY-MM-DD` or `YYYY/MM/DD`).
    pub birth: String,
    /// 性別 (`1`/`2`, `男`/`女`, `M`/`F`).
    pub sex: String,
    /// 宛名番号, the municipality's own number of the resident. Beside an insurance
    /// identity it is an optional column (a file without it still uses the mapping):
    /// it links a resident's tokens across insurer numbers (国保 → 後期高齢者医療 at 75)
    /// inside LGWAN, so recipients keep one pseudonym. Alone, it is the identity: the
    /// agent files the row under the token of the insurance identity it saw with this
    /// 宛名番号, birth date and sex. It never leaves the agent.
    #[serde(default)]
    pub resident: Option<String>,
}

impl IdentityColumns {
    /// Whether the file is keyed by 宛名番号 alone (no insurance identity).
    pub fn by_resident(&self) -> bool {
        self.insurer.is_none() && self.number.is_none()
    }
}

/// Who a row is about (never leaves the agent; `Debug` prints no identifier).
#[derive(Clone, PartialEq, Eq)]
pub enum RowIdentity {
    /// The insurance identity.
    Insured(PersonIdentity),
    /// Only the 宛名番号 (in [`TableRow::resident`]), with the birth date and sex.
    Resident {
        /// 生年月日.
        birth: NaiveDate,
        /// 性別.
        sex: Sex,
    },
}

/// One value column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueColumn {
    /// The header of the column.
    pub column: String,
    /// The code of the observation, e.g. `total-cost`.
    pub code: String,
    /// The display of the code; default the column name.
    #[serde(default)]
    pub display: Option<String>,
    /// How to read the cell.
    pub kind: ValueKind,
    /// UCUM unit of a `quantity`.
    #[serde(default)]
    pub unit: Option<String>,
}

/// How a value cell is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Yen, an integer (`1,234` and `¥` accepted): `valueQuantity` in JPY.
    Money,
    /// A decimal number with the column's UCUM unit.
    Quantity,
    /// Free text: `valueString`.
    Text,
}

impl std::fmt::Debug for RowIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowIdentity::Insured(p) => write!(f, "Insured({p:?})"),
            RowIdentity::Resident { .. } => f.write_str("Resident([identifiers elided])"),
        }
    }
}

/// One parsed row (`Debug` prints no identifier).
#[derive(Clone, PartialEq, Eq)]
pub struct TableRow {
    /// The 1-based record number in the file (the header is record 1).
    pub line: u64,
    /// Who the row is about (never leaves the agent).
    pub identity: RowIdentity,
    /// The date the row refers to.
    pub effective_date: NaiveDate,
    /// The 宛名番号 (half-width), when the mapping names the column and the cell is not
    /// empty (never leaves the agent).
    pub resident: Option<String>,
    /// (index into the mapping's `values`, normalized cell), non-empty cells only.
    pub cells: Vec<(usize, String)>,
}

impl std::fmt::Debug for TableRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRow")
            .field("line", &self.line)
            .field("identity", &self.identity)
            .field("effective_date", &self.effective_date)
            .field("resident", &self.resident.as_ref().map(|_| "[elided]"))
            .field("cells", &self.cells)
            .finish()
    }
}

/// What reading a table yields, row by row.
#[derive(Debug)]
pub enum TableItem {
    /// A row that parsed, with the index of its mapping.
    Row(usize, TableRow),
    /// A row, or the whole file, set aside.
    Quarantined(Quarantine),
}

/// Reads `path`, choosing the mapping whose columns all appear in the header
/// (the one naming most columns when several do).
pub fn read_table(
    path: &Path,
    mappings: &[TableMapping],
    max_bytes: u64,
    sink: &mut dyn FnMut(TableItem),
) {
    let label = path.display().to_string();
    let quarantine = |entry: Option<String>, reason| {
        TableItem::Quarantined(Quarantine::new(label.clone(), entry, reason))
    };
    let size = std::fs::metadata(path).map(|m| m.len());
    let encoding = match (size, detect(path)) {
        (Ok(size), _) if size > max_bytes => {
            let limit = max_bytes;
            return sink(quarantine(None, Reason::ArchiveTooLarge { size, limit }));
        }
        (Ok(_), Ok(enc)) => enc,
        (Err(e), _) | (_, Err(e)) => {
            return sink(quarantine(None, Reason::Unreadable(e.to_string())));
        }
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return sink(quarantine(None, Reason::Unreadable(e.to_string()))),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(DecodingReader::new(BufReader::new(file), encoding));
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_owned()).collect(),
        Err(e) => return sink(quarantine(None, Reason::Csv(format!("header: {e}")))),
    };
    let header_end = reader
        .headers()
        .ok()
        .map_or(1, |h| last_line(h.position(), h.iter()));
    let encoding = reader.get_ref().encoding_name();
    let not_valid =
        |m: Malformed| Reason::Encoding(format!("not valid {encoding} near byte {}", m.byte));
    if let Some(bad) = reader.get_mut().take_malformed(header_end).first() {
        let reason = Reason::Encoding(format!(
            "header: not valid {encoding} near byte {} (line {})",
            bad.byte, bad.line
        ));
        return sink(quarantine(None, reason));
    }
    let Some((index, columns)) = choose_mapping(&header, mappings) else {
        let reason = Reason::Csv(format!(
            "no column mapping matches the header ({} columns; mappings: {})",
            header.len(),
            mappings
                .iter()
                .map(|m| format!("`{}`", m.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return sink(quarantine(None, reason));
    };
    let Some(mapping) = mappings.get(index) else {
        return;
    };
    // Every column the mapping reads, the optional 宛名番号 too (it links tokens).
    let mut read = mapping.columns();
    read.extend(mapping.identity.resident.as_deref());
    read.sort_unstable();
    read.dedup();
    let twice: Vec<&str> = read
        .into_iter()
        .filter(|c| header.iter().filter(|h| h == c).count() > 1)
        .collect();
    if !twice.is_empty() {
        // Which of the two is the birth date (or the result) cannot be told.
        let reason = Reason::Csv(format!(
            "the header names column {} more than once (mapping `{}`)",
            twice
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            mapping.name
        ));
        return sink(quarantine(None, reason));
    }
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record);
        // Bad bytes on lines before this record (lines the CSV reader skipped as
        // empty) are reported by line; bad bytes in the record set it aside.
        let (start, end) = match &more {
            Ok(true) => (
                record.position().map_or(0, csv::Position::line),
                last_line(record.position(), record.iter()),
            ),
            _ => (u64::MAX, u64::MAX),
        };
        let mut spoiled = None;
        for bad in reader.get_mut().take_malformed(end) {
            if bad.line < start {
                sink(quarantine(
                    Some(format!("line {}", bad.line)),
                    not_valid(bad),
                ));
            } else {
                spoiled = spoiled.or(Some(bad));
            }
        }
        match more {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let line = e.position().map(|p| p.record() + 1);
                let entry = line.map(|l| format!("record {l}"));
                // An I/O error ends the file; a malformed row does not.
                let (reason, fatal) = match e.kind() {
                    csv::ErrorKind::Io(io) => (Reason::Unreadable(io.to_string()), true),
                    _ => (Reason::Csv(e.to_string()), false),
                };
                sink(quarantine(entry, reason));
                if fatal {
                    return;
                }
                continue;
            }
        }
        if let Some(bad) = spoiled {
            sink(quarantine(
                Some(format!("line {}", bad.line)),
                not_valid(bad),
            ));
            continue;
        }
        let line = record.position().map_or(0, |p| p.record() + 1);
        if record.len() != header.len() {
            let cells = format!(
                "row has {} cells, the header has {}",
                record.len(),
                header.len()
            );
            // Cells over several lines with the wrong count: most likely a quote left
            // open, which took the rows after it. Every line is named, so the persons
            // on them are not lost without a word.
            let open_end = record.iter().next_back().is_some_and(|c| c.ends_with('\n'));
            let last = end.saturating_sub(u64::from(open_end)).max(start);
            let (entry, reason) = if last > start {
                (
                    format!("record {line}, lines {start}–{last}"),
                    format!(
                        "{cells}; a quoted cell runs from line {start} to line {last}: a quote \
                         left open? The rows on those lines were not read"
                    ),
                )
            } else {
                (format!("record {line}"), cells)
            };
            sink(quarantine(Some(entry), Reason::Csv(reason)));
            continue;
        }
        let cells = Cells {
            record: &record,
            columns: &columns,
        };
        match parse_row(mapping, line, &cells) {
            Ok(row) => sink(TableItem::Row(index, row)),
            Err(reason) => sink(quarantine(Some(format!("record {line}")), reason)),
        }
    }
}

/// The last line a record is on: its first line, plus the line feeds inside its
/// (quoted) cells.
fn last_line<'a>(position: Option<&csv::Position>, cells: impl Iterator<Item = &'a str>) -> u64 {
    let first = position.map_or(1, csv::Position::line);
    first + cells.map(|c| c.matches('\n').count() as u64).sum::<u64>()
}

type ColumnIndex = std::collections::HashMap<String, usize>;

fn choose_mapping(header: &[String], mappings: &[TableMapping]) -> Option<(usize, ColumnIndex)> {
    let index: ColumnIndex = header
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), i))
        .collect();
    mappings
        .iter()
        .enumerate()
        .filter(|(_, m)| m.columns().iter().all(|c| index.contains_key(*c)))
        .max_by_key(|(_, m)| m.columns().len())
        .map(|(i, _)| (i, index.clone()))
}

impl TableMapping {
    /// Every column the mapping names.
    pub fn columns(&self) -> Vec<&str> {
        let id = &self.identity;
        let mut out = vec![
            id.birth.as_str(),
            id.sex.as_str(),
            self.date_column.as_str(),
        ];
        out.extend(id.insurer.as_deref());
        out.extend(id.number.as_deref());
        out.extend(id.symbol.as_deref());
        out.extend(id.branch.as_deref());
        // The 宛名番号 is required only where it is the identity.
        if id.by_resident() {
            out.extend(id.resident.as_deref());
        }
        out.extend(self.values.iter().map(|v| v.column.as_str()));
        out
    }

    /// The code system of the value codes.
    pub fn code_system(&self) -> String {
        self.code_system
            .clone()
            .unwrap_or_else(|| format!("urn:renkei:table:{}", self.name))
    }
}

/// The cells of one record, looked up by column name.
struct Cells<'a> {
    record: &'a csv::StringRecord,
    columns: &'a ColumnIndex,
}

impl<'a> Cells<'a> {
    /// The trimmed cell of column `name`, empty when absent.
    fn get(&self, name: &str) -> &'a str {
        self.columns
            .get(name)
            .and_then(|&i| self.record.get(i))
            .map(str::trim)
            .unwrap_or_default()
    }
}

fn parse_row(mapping: &TableMapping, line: u64, cells: &Cells<'_>) -> Result<TableRow, Reason> {
    let cell = |name: &str| cells.get(name);
    let id = &mapping.identity;
    // Identity cells are named, never quoted: they must not reach a report.
    let named = |column: &str, what: &str| Reason::Csv(format!("column `{column}`: {what}"));
    let birth = parse_date(cell(&id.birth)).ok_or_else(|| named(&id.birth, "not a date"))?;
    let sex = Sex::parse(cell(&id.sex)).ok_or_else(|| named(&id.sex, "not a sex (1/2, 男/女)"))?;
    let resident: Option<String> = id
        .resident
        .as_deref()
        .map(|c| cell(c).chars().map(fold_width).collect::<String>())
        .filter(|r| !r.is_empty());
    if let (Some(column), Some(r)) = (id.resident.as_deref(), resident.as_deref()) {
        if r.len() > 20 || !r.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(named(column, "宛名番号 is not 1 to 20 letters and digits"));
        }
    }
    let identity = match (id.insurer.as_deref(), id.number.as_deref()) {
        (Some(insurer_column), Some(number_column)) => {
            let insurer: String = cell(insurer_column).chars().map(fold_width).collect();
            if insurer.is_empty()
                || insurer.len() > 8
                || !insurer.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(named(insurer_column, "insurer number is not 1 to 8 digits"));
            }
            let number = cell(number_column);
            if number.is_empty() {
                return Err(named(number_column, "card number is empty"));
            }
            RowIdentity::Insured(PersonIdentity {
                insurer,
                symbol: id
                    .symbol
                    .as_deref()
                    .map(|c| cell(c).to_owned())
                    .unwrap_or_default(),
                number: number.to_owned(),
                branch: id
                    .branch
                    .as_deref()
                    .map(|c| cell(c).to_owned())
                    .filter(|b| !b.is_empty()),
                birth,
                sex,
            })
        }
        _ => {
            let column = id.resident.as_deref().unwrap_or("宛名番号");
            if resident.is_none() {
                return Err(named(
                    column,
                    "宛名番号 is empty (it is this file's identity)",
                ));
            }
            RowIdentity::Resident { birth, sex }
        }
    };
    let raw_date = cell(&mapping.date_column);
    let effective_date = parse_with_format(raw_date, &mapping.date_format).ok_or_else(|| {
        named(
            &mapping.date_column,
            &format!("`{raw_date}` does not match `{}`", mapping.date_format),
        )
    })?;
    let mut cells = Vec::new();
    for (i, v) in mapping.values.iter().enumerate() {
        let raw = cell(&v.column);
        if raw.is_empty() {
            continue;
        }
        let folded: String = raw.chars().map(fold_width).collect();
        let value = match v.kind {
            ValueKind::Money => {
                let digits: String = folded
                    .chars()
                    .filter(|c| !matches!(c, ',' | '¥' | '\\' | '円'))
                    .collect();
                // One optional minus sign, then at least one digit.
                let unsigned = digits.strip_prefix('-').unwrap_or(&digits);
                if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    digits
                } else {
                    return Err(named(
                        &v.column,
                        &format!("`{raw}` is not an amount of yen"),
                    ));
                }
            }
            ValueKind::Quantity if is_decimal(&folded) => folded,
            ValueKind::Quantity => {
                return Err(named(&v.column, &format!("`{raw}` is not a number")));
            }
            ValueKind::Text => raw.to_owned(),
        };
        if mapping.resource == RowResource::Immunization
            && v.code == DOSE_NUMBER
            && value.parse::<u8>().map_or(true, |n| n == 0)
        {
            return Err(named(
                &v.column,
                &format!("`{raw}` is not a dose number (a whole number from 1)"),
            ));
        }
        cells.push((i, value));
    }
    if mapping.resource == RowResource::Immunization
        && !cells
            .iter()
            .any(|(i, _)| mapping.values.get(*i).is_some_and(|v| v.code == VACCINE))
    {
        let column = mapping
            .values
            .iter()
            .find(|v| v.code == VACCINE)
            .map_or("vaccine", |v| v.column.as_str());
        return Err(named(column, "the vaccine is empty"));
    }
    Ok(TableRow {
        line,
        identity,
        effective_date,
        resident,
        cells,
    })
}

/// Whether a chrono date format names the day.
fn has_day(format: &str) -> bool {
    ["%d", "%e", "%F", "%D", "%x", "%j"]
        .iter()
        .any(|f| format.contains(f))
}

/// Parses a date with a chrono format; a format without a day means day 1.
fn parse_with_format(raw: &str, format: &str) -> Option<NaiveDate> {
    let folded: String = raw.chars().map(fold_width).collect();
    if has_day(format) {
        NaiveDate::parse_from_str(&folded, format).ok()
    } else {
        NaiveDate::parse_from_str(&format!("{folded}|01"), &format!("{format}|%d")).ok()
    }
}

/// The value code of an immunization mapping's vaccine column.
pub const VACCINE: &str = "vaccine";
/// The value code of an immunization mapping's dose-number column.
pub const DOSE_NUMBER: &str = "dose-number";

/// The FHIR R4 Bundle of one row: one Observation per non-empty value cell, or one
/// Immunization for an immunization mapping.
pub fn row_bundle(mapping: &TableMapping, row: &TableRow) -> Json {
    if mapping.resource == RowResource::Immunization {
        let cell = |code: &str| {
            row.cells
                .iter()
                .find(|(i, _)| mapping.values.get(*i).is_some_and(|v| v.code == code))
                .map(|(_, raw)| raw.as_str())
        };
        let dose = cell(DOSE_NUMBER).and_then(|d| d.parse::<u8>().ok());
        return immunization_bundle(
            row.effective_date,
            cell(VACCINE).unwrap_or_default(),
            dose,
            &mapping.code_system(),
        );
    }
    let system = mapping.code_system();
    // The date at the precision the source gives: a month (`%Y%m`) stays a month.
    let effective = if has_day(&mapping.date_format) {
        row.effective_date.format("%Y-%m-%d").to_string()
    } else {
        row.effective_date.format("%Y-%m").to_string()
    };
    let entries = row
        .cells
        .iter()
        .filter_map(|(i, raw)| mapping.values.get(*i).map(|v| (v, raw)))
        .map(|(v, raw)| {
            let mut o = Map::new();
            o.insert("resourceType".into(), json!("Observation"));
            o.insert("status".into(), json!("final"));
            let display = v.display.clone().unwrap_or_else(|| v.column.clone());
            o.insert(
                "code".into(),
                json!({"coding": [{"system": system, "code": v.code, "display": display}]}),
            );
            o.insert("effectiveDateTime".into(), json!(effective));
            let number = |s: &str| {
                s.parse::<i64>()
                    .map(Json::from)
                    .or_else(|_| s.parse::<f64>().map(Json::from))
                    .unwrap_or_else(|_| json!(s))
            };
            match v.kind {
                ValueKind::Money => o.insert(
                    "valueQuantity".into(),
                    json!({"value": number(raw), "unit": "JPY", "system": "urn:iso:std:iso:4217", "code": "JPY"}),
                ),
                ValueKind::Quantity => {
                    let mut q = Map::new();
                    q.insert("value".into(), number(raw));
                    if let Some(unit) = &v.unit {
                        q.insert("unit".into(), json!(unit));
                        q.insert("system".into(), json!(UCUM));
                        q.insert("code".into(), json!(unit));
                    }
                    o.insert("valueQuantity".into(), Json::Object(q))
                }
                ValueKind::Text => o.insert("valueString".into(), json!(raw)),
            };
            (None, Json::Object(o))
        })
        .collect();
    bundle(entries)
}

/// The Bundle of one vaccination: an `Immunization` (`completed`) with the vaccine as
/// the system's text (the 健康管理システム names vaccines in its own words; `system` is
/// the mapping's code system, kept as a coding of that text), the date given, and the
/// dose number when the list has it. `patient` names no one: a record carries no
/// identifier, and the recipient knows whom it holds by its pseudonym.
pub fn immunization_bundle(date: NaiveDate, vaccine: &str, dose: Option<u8>, system: &str) -> Json {
    let mut i = Map::new();
    i.insert("resourceType".into(), json!("Immunization"));
    i.insert("status".into(), json!("completed"));
    i.insert(
        "vaccineCode".into(),
        json!({"coding": [{"system": system, "code": vaccine, "display": vaccine}], "text": vaccine}),
    );
    i.insert(
        "patient".into(),
        json!({"display": "本人 (the record's subject, named by the recipient's pseudonym)"}),
    );
    i.insert(
        "occurrenceDateTime".into(),
        json!(date.format("%Y-%m-%d").to_string()),
    );
    i.insert("primarySource".into(), json!(false));
    if let Some(dose) = dose {
        i.insert(
            "protocolApplied".into(),
            json!([{"doseNumberPositiveInt": dose}]),
        );
    }
    bundle(vec![(None, Json::Object(i))])
}
