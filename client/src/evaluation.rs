//! `evaluation combine`: an evaluator checks the signed evaluation reports of several
//! sources (cities), and combines them into one table (JSON and CSV) and a chart of the
//! programme's measures by city and year (SVG). Nothing is un-suppressed: a pooled cell
//! is published only where every city published its part, and the pooled table is put
//! through the same disclosure control again ([`suppress`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use renkei_crypto::grant::{RecipientPublicKey, RecipientSecretKey};
use renkei_crypto::participant::ParticipantId;
use renkei_protocol::evaluation::suppress::suppress;
use renkei_protocol::evaluation::{
    Cell, DeliverBody, Delivered, PURPOSE, SignedReport, Summary, open_report, round4, seal_report,
    t975,
};
use serde::Serialize;
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::transport::HubClient;

/// Seals `signed` to the evaluator it names, whose key-grant key is taken from its key
/// statement checked against the pinned CA (never the hub's word), and delivers it.
pub async fn deliver(client: &HubClient, signed: &SignedReport) -> Result<Delivered> {
    let evaluator = &signed.report.evaluator;
    let recipient: ParticipantId = evaluator.parse().map_err(Error::crypto(format!(
        "evaluator `{}`",
        crate::error::shorten(evaluator)
    )))?;
    let keys = client.participant_keys(&recipient).await?;
    let grant_key = client
        .verify_statement(&recipient, keys.statement.as_ref())?
        .grant_key
        .ok_or_else(|| Error::invalid(format!("keys of `{recipient}`"), "no grant key"))?;
    let key = RecipientPublicKey::from_base64(&grant_key)
        .map_err(Error::crypto(format!("keys of `{recipient}`")))?;
    let sealed = seal_report(signed, evaluator, &key)
        .map_err(|e| Error::invalid("evaluation report", e.to_string()))?;
    client
        .deliver_evaluation(&DeliverBody {
            recipient: evaluator.clone(),
            purpose: PURPOSE.to_owned(),
            sealed: data_encoding::BASE64.encode(&sealed),
        })
        .await
}

/// Collects the reports delivered to this participant (`me`, holding `key`): each is
/// opened, its signature checked (a source's, under the CA `ca`, naming the source that
/// delivered it, for `me`), and written to `out/<id>.json`. Returns the files written.
pub async fn collect(
    client: &HubClient,
    key: &RecipientSecretKey,
    me: &ParticipantId,
    ca: &Path,
    out: &Path,
    now: DateTime<Utc>,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)
        .map_err(|e| Error::invalid(format!("`{}`", out.display()), e.to_string()))?;
    let mut written = Vec::new();
    walk_reports(
        |after: Option<String>| async move { client.evaluation_reports(after.as_deref()).await },
        |r| {
            written.push(write_report(r, key, me, ca, out, now)?);
            Ok(())
        },
    )
    .await?;
    Ok(written)
}

/// Walks the pages of delivered reports from the first, handing each report not seen
/// before to `each`. What the hub says is not trusted to end the walk: a page larger than
/// [`PAGE_REPORTS`](renkei_protocol::evaluation::PAGE_REPORTS) is refused, and a page
/// that brings no report not seen before (by its sealed bytes) or whose `next` does not
/// move ends it, so a hub replaying reports under new ids or cursors cannot keep the
/// client fetching and writing for ever.
async fn walk_reports<F, Fut>(
    mut fetch: F,
    mut each: impl FnMut(renkei_protocol::evaluation::DeliveredReport) -> Result<()>,
) -> Result<()>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<renkei_protocol::evaluation::DeliveredList>>,
{
    let mut seen = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = fetch(after.clone()).await?;
        if page.reports.len() > renkei_protocol::evaluation::PAGE_REPORTS {
            return Err(Error::invalid(
                "the hub's page of evaluation reports",
                format!("{} reports, more than a page holds", page.reports.len()),
            ));
        }
        let mut new = false;
        for r in page.reports {
            let digest: [u8; 32] = sha2::Sha256::digest(r.sealed.as_bytes()).into();
            if seen.insert(digest) {
                new = true;
                each(r)?;
            }
        }
        match page.next {
            Some(next) if new && Some(&next) != after.as_ref() => after = Some(next),
            _ => return Ok(()),
        }
    }
}

/// Opens one delivered report, checks its signature and writes it to `out/<id>.json`.
fn write_report(
    r: renkei_protocol::evaluation::DeliveredReport,
    key: &RecipientSecretKey,
    me: &ParticipantId,
    ca: &Path,
    out: &Path,
    now: DateTime<Utc>,
) -> Result<PathBuf> {
    let what = format!("evaluation report `{}` from `{}`", r.id, r.source);
    let sealed = data_encoding::BASE64
        .decode(r.sealed.as_bytes())
        .map_err(|e| Error::invalid(what.clone(), e.to_string()))?;
    let signed = open_report(&sealed, &r.source, &me.to_string(), key)
        .map_err(|e| Error::invalid(what.clone(), e.to_string()))?;
    let signer = signed
        .verify(ca, now)
        .map_err(|e| Error::invalid(what.clone(), e.to_string()))?;
    if signer.to_string() != r.source || signed.report.evaluator != me.to_string() {
        return Err(Error::invalid(
            what,
            format!(
                "signed by `{signer}` for `{}`: not what the hub says",
                signed.report.evaluator
            ),
        ));
    }
    let id: String = r.id.chars().filter(char::is_ascii_alphanumeric).collect();
    let path = out.join(format!("{id}.json"));
    let json = serde_json::to_vec_pretty(&signed)
        .map_err(|e| Error::invalid(what.clone(), e.to_string()))?;
    write(&path, &json)?;
    Ok(path)
}

/// The city (source) a pooled row stands for.
pub const ALL: &str = "all";

/// One row of the combined table: a city's cell, or the pooled cell of all cities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The source (`source:…`), or `all`.
    pub source: String,
    /// The cell.
    #[serde(flatten)]
    pub cell: Cell,
}

/// The combined table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Combined {
    /// The programme.
    pub program: String,
    /// The evaluator (this participant).
    pub evaluator: String,
    /// The threshold of the reports (the highest, if they differ).
    pub threshold: usize,
    /// The sources whose signed reports were combined.
    pub sources: Vec<String>,
    /// Every city's cells, then the pooled ones.
    pub rows: Vec<Row>,
}

/// What `combine` wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The combined JSON.
    pub json: PathBuf,
    /// The combined CSV.
    pub csv: PathBuf,
    /// The chart.
    pub svg: PathBuf,
    /// Pooled cells suppressed.
    pub suppressed: usize,
}

/// Reads and verifies the signed reports in `files` (each for `me`, signed by its
/// source under the CA `ca`), combines them and writes `combined.json`,
/// `combined.csv` and `kpi.svg` into `out`.
pub fn combine(
    files: &[PathBuf],
    me: &ParticipantId,
    ca: &Path,
    out: &Path,
    now: DateTime<Utc>,
) -> Result<Written> {
    let mut reports = Vec::new();
    for file in files {
        let what = format!("report `{}`", file.display());
        let bytes = std::fs::read(file).map_err(|e| Error::invalid(what.clone(), e.to_string()))?;
        let signed: SignedReport = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(what.clone(), e.to_string()))?;
        let source = signed
            .verify(ca, now)
            .map_err(|e| Error::invalid(what.clone(), e.to_string()))?;
        if signed.report.evaluator != me.to_string() {
            return Err(Error::invalid(
                what,
                format!("it is for `{}`, not for `{me}`", signed.report.evaluator),
            ));
        }
        reports.push((source.to_string(), signed.report));
    }
    let Some((_, first)) = reports.first() else {
        return Err(Error::invalid("reports", "none given"));
    };
    let program = first.program.clone();
    let mut sources = BTreeSet::new();
    for (source, report) in &reports {
        if report.program != program {
            return Err(Error::invalid(
                format!("report of `{source}`"),
                format!("programme `{}`, not `{program}`", report.program),
            ));
        }
        if !sources.insert(source.clone()) {
            return Err(Error::invalid(
                format!("report of `{source}`"),
                "given twice",
            ));
        }
    }
    let threshold = reports
        .iter()
        .map(|(_, r)| r.threshold)
        .max()
        .unwrap_or_default();
    let mut rows: Vec<Row> = reports
        .iter()
        .flat_map(|(source, r)| {
            r.cells.iter().map(|cell| Row {
                source: source.clone(),
                cell: cell.clone(),
            })
        })
        .collect();
    let (pooled, suppressed) = pool(&reports, threshold);
    rows.extend(pooled);
    let combined = Combined {
        program,
        evaluator: me.to_string(),
        threshold,
        sources: sources.into_iter().collect(),
        rows,
    };
    std::fs::create_dir_all(out)
        .map_err(|e| Error::invalid(format!("`{}`", out.display()), e.to_string()))?;
    let written = Written {
        json: out.join("combined.json"),
        csv: out.join("combined.csv"),
        svg: out.join("kpi.svg"),
        suppressed,
    };
    let json = serde_json::to_vec_pretty(&combined)
        .map_err(|e| Error::invalid("combined table", e.to_string()))?;
    write(&written.json, &json)?;
    write(&written.csv, csv(&combined).as_bytes())?;
    write(&written.svg, chart(&combined).as_bytes())?;
    Ok(written)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::invalid(format!("`{}`", path.display()), e.to_string()))
}

/// (year, measure, sex, band, group).
type Key = (i32, String, String, String, String);

fn key(c: &Cell) -> Key {
    (
        c.year,
        c.measure.clone(),
        c.sex.clone(),
        c.age_band.clone(),
        c.group.clone(),
    )
}

/// The pooled cells: where every city that has the cell published it with its
/// statistics, their pooled count, mean, standard deviation and interval (no median:
/// it cannot be pooled); otherwise suppressed. Then the disclosure control of the
/// pooled tables. Returns the rows and how many are suppressed.
fn pool(
    reports: &[(String, renkei_protocol::evaluation::Report)],
    threshold: usize,
) -> (Vec<Row>, usize) {
    let mut parts: BTreeMap<Key, Vec<&Cell>> = BTreeMap::new();
    for (_, r) in reports {
        for c in &r.cells {
            parts.entry(key(c)).or_default().push(c);
        }
    }
    let mut pooled: BTreeMap<Key, Option<(usize, Summary)>> = parts
        .iter()
        .map(|(k, cells)| (k.clone(), pooled_summary(cells)))
        .collect();
    // The disclosure control again, per year, measure and group: the strata against the
    // group's total ("all", "all").
    let mut tables: BTreeMap<(i32, String), Vec<String>> = BTreeMap::new();
    for (year, measure, sex, band, _) in pooled.keys() {
        if sex != ALL {
            let strata = tables.entry((*year, measure.clone())).or_default();
            let stratum = format!("{sex}\u{1f}{band}");
            if !strata.contains(&stratum) {
                strata.push(stratum);
            }
        }
    }
    let groups = ["participants", "others"];
    for ((year, measure), strata) in &tables {
        let k = |stratum: &str, group: &str| {
            let (sex, band) = stratum.split_once('\u{1f}').unwrap_or((ALL, ALL));
            (
                *year,
                measure.clone(),
                sex.to_owned(),
                band.to_owned(),
                group.to_owned(),
            )
        };
        let n_of = |key: &Key| -> usize {
            // A suppressed pooled cell counts as below the threshold.
            pooled
                .get(key)
                .and_then(|p| p.as_ref())
                .map_or(0, |(n, _)| *n)
        };
        let counts: Vec<[usize; 2]> = strata
            .iter()
            .map(|s| groups.map(|g| n_of(&k(s, g))))
            .collect();
        let totals = groups.map(|g| n_of(&k("", g)));
        let hidden = suppress(&counts, totals, threshold);
        for (s, row) in strata.iter().zip(&hidden.cells) {
            for (g, off) in groups.iter().zip(row) {
                if *off {
                    pooled.insert(k(s, g), None);
                }
            }
        }
        for (g, off) in groups.iter().zip(hidden.totals) {
            if off {
                pooled.insert(k("", g), None);
            }
        }
    }
    let mut suppressed = 0;
    let rows = pooled
        .into_iter()
        .map(|((year, measure, sex, age_band, group), p)| {
            suppressed += usize::from(p.is_none());
            Row {
                source: ALL.into(),
                cell: Cell {
                    year,
                    measure,
                    sex,
                    age_band,
                    group,
                    n: p.as_ref().map(|(n, _)| *n),
                    suppressed: p.is_none(),
                    stats: p.map(|(_, s)| s),
                },
            }
        })
        .collect();
    (rows, suppressed)
}

/// The pooled count and statistics of the cities' cells, if every one is published
/// with its statistics.
fn pooled_summary(cells: &[&Cell]) -> Option<(usize, Summary)> {
    let mut parts = Vec::with_capacity(cells.len());
    for c in cells {
        match (c.suppressed, c.n, &c.stats) {
            (false, Some(n), Some(s)) if n >= 2 => parts.push((n as f64, s.mean, s.sd)),
            _ => return None,
        }
    }
    let n: f64 = parts.iter().map(|(n, _, _)| n).sum();
    let mean = parts.iter().map(|(k, m, _)| k * m).sum::<f64>() / n;
    // Within-city and between-city sums of squares.
    let ss: f64 = parts
        .iter()
        .map(|(k, m, sd)| (k - 1.0) * sd * sd + k * (m - mean) * (m - mean))
        .sum();
    let sd = (ss / (n - 1.0)).sqrt();
    let half = t975(n - 1.0) * sd / n.sqrt();
    if !(mean.is_finite() && sd.is_finite() && half.is_finite()) {
        return None;
    }
    Some((
        n as usize,
        Summary {
            mean: round4(mean),
            median: None,
            sd: round4(sd),
            ci95: [round4(mean - half), round4(mean + half)],
        },
    ))
}

fn csv(combined: &Combined) -> String {
    let mut out = String::from(
        "source,year,measure,sex,age_band,group,n,suppressed,mean,median,sd,ci95_low,ci95_high\n",
    );
    for r in &combined.rows {
        let c = &r.cell;
        let num = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let s = c.stats.as_ref();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            field(&r.source),
            c.year,
            field(&c.measure),
            field(&c.sex),
            field(&c.age_band),
            field(&c.group),
            c.n.map(|n| n.to_string()).unwrap_or_default(),
            c.suppressed,
            num(s.map(|s| s.mean)),
            num(s.and_then(|s| s.median)),
            num(s.map(|s| s.sd)),
            num(s.map(|s| s.ci95[0])),
            num(s.map(|s| s.ci95[1])),
        );
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line end.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart: per measure, the participants' and the others' mean (all strata) for
/// each city and the pooled cities, by year, as bars; suppressed cells are marked.
fn chart(combined: &Combined) -> String {
    let totals: Vec<&Row> = combined
        .rows
        .iter()
        .filter(|r| r.cell.sex == ALL && r.cell.age_band == ALL)
        .collect();
    let measures: BTreeSet<&str> = totals.iter().map(|r| r.cell.measure.as_str()).collect();
    let (bar, gap, panel) = (14.0, 10.0, 220.0);
    let columns: Vec<(String, i32, String)> = {
        let mut c: BTreeSet<(String, i32, String)> = BTreeSet::new();
        for r in &totals {
            c.insert((r.source.clone(), r.cell.year, r.cell.group.clone()));
        }
        c.into_iter().collect()
    };
    let width = 80.0 + columns.len() as f64 * (bar + gap);
    let height = 40.0 + measures.len() as f64 * (panel + 60.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"10\">\n<title>{}</title>\n",
        xml(&combined.program)
    );
    for (i, measure) in measures.iter().enumerate() {
        let top = 30.0 + i as f64 * (panel + 60.0);
        let values: Vec<Option<f64>> = columns
            .iter()
            .map(|(source, year, group)| {
                totals
                    .iter()
                    .find(|r| {
                        r.cell.measure == *measure
                            && r.source == *source
                            && r.cell.year == *year
                            && r.cell.group == *group
                    })
                    .and_then(|r| r.cell.stats.as_ref())
                    .map(|s| s.mean)
            })
            .collect();
        let max = values.iter().flatten().fold(0.0_f64, |a, b| a.max(b.abs()));
        let scale = if max > 0.0 { panel / max } else { 0.0 };
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"{}\" font-size=\"12\">{} (mean, all strata)</text>",
            top - 8.0,
            xml(measure)
        );
        for (j, ((source, year, group), value)) in columns.iter().zip(&values).enumerate() {
            let x = 60.0 + j as f64 * (bar + gap);
            let base = top + panel;
            let fill = if group == "participants" {
                "#2b6cb0"
            } else {
                "#a0aec0"
            };
            match value {
                Some(v) => {
                    let h = v.abs() * scale;
                    let _ = writeln!(
                        svg,
                        "<rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{h}\" fill=\"{fill}\"><title>{} {year} {}: {v}</title></rect>",
                        base - h,
                        xml(source),
                        xml(group)
                    );
                }
                None => {
                    let _ = writeln!(svg, "<text x=\"{x}\" y=\"{}\">×</text>", base - 2.0);
                }
            }
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" transform=\"rotate(60 {} {})\">{} {year}</text>",
                x + 2.0,
                base + 10.0,
                x + 2.0,
                base + 10.0,
                xml(source.rsplit(':').next().unwrap_or(source))
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use renkei_protocol::evaluation::{DeliveredList, DeliveredReport, PAGE_REPORTS};

    use super::*;

    fn report(n: usize) -> DeliveredReport {
        DeliveredReport {
            id: format!("ev1_{n}"),
            source: "renkei:source/131016".into(),
            sealed: format!("sealed-{n}"),
            delivered_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    /// Walks what `hub` serves (page number → page), failing the test if the walk asks
    /// for more than 20 pages: a walk that does not end is the bug these tests look for.
    async fn walk(hub: impl Fn(usize) -> DeliveredList) -> (Result<()>, Vec<String>) {
        let calls = Cell::new(0);
        let mut got = Vec::new();
        let result = walk_reports(
            |_after| {
                let n = calls.get();
                calls.set(n + 1);
                assert!(n < 20, "the walk did not end");
                std::future::ready(Ok(hub(n)))
            },
            |r| {
                got.push(r.id);
                Ok(())
            },
        )
        .await;
        (result, got)
    }

    #[tokio::test]
    async fn an_honest_hub_is_walked_to_its_last_page() {
        let (result, got) = walk(|n| DeliveredList {
            reports: (n * PAGE_REPORTS..((n + 1) * PAGE_REPORTS).min(20))
                .map(report)
                .collect(),
            next: (n < 2).then(|| format!("cursor-{n}")),
        })
        .await;
        result.unwrap();
        assert_eq!(got.len(), 20);
    }

    #[tokio::test]
    async fn a_hub_replaying_reports_under_new_ids_and_cursors_cannot_keep_the_walk_going() {
        let (result, got) = walk(|n| DeliveredList {
            reports: vec![DeliveredReport {
                id: format!("ev1_replayed_{n}"),
                ..report(1)
            }],
            next: Some(format!("cursor-{n}")),
        })
        .await;
        result.unwrap();
        assert_eq!(got, ["ev1_replayed_0"], "a replay is not collected twice");
    }

    #[tokio::test]
    async fn a_hub_whose_cursor_does_not_move_cannot_keep_the_walk_going() {
        let (result, got) = walk(|n| DeliveredList {
            reports: vec![report(n)],
            next: Some("cursor".into()),
        })
        .await;
        result.unwrap();
        assert_eq!(got.len(), 2, "the second page repeats the cursor: {got:?}");
    }

    #[tokio::test]
    async fn a_page_larger_than_a_page_holds_is_refused() {
        let (result, got) = walk(|_| DeliveredList {
            reports: (0..=PAGE_REPORTS).map(report).collect(),
            next: None,
        })
        .await;
        let e = result.unwrap_err().to_string();
        assert!(e.contains("more than a page holds"), "{e}");
        assert!(got.is_empty());
    }
}
