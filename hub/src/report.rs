//! `internet-hub report`: how the exchange is used (Osaka's 会員数推移 and PHR実績 per insurer
//! and programme), from the audit log: the residents who enrolled, who granted and revoked
//! consents, and whose records were read, counted per recipient, purpose and month (any
//! of them, or none), with the evaluation reports' disclosure control: a count of fewer
//! residents than the threshold is published as suppressed, with no number. Counts are of
//! distinct residents, never of events (ten reads may be one person's). One report
//! publishes no total across its rows; reports of other `--by` choices are totals of
//! these rows, so publish one choice of `--by` per period (docs/evaluation.md).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::db::Db;
use crate::error::{Error, Result};

/// What the rows are counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    /// The recipient (the app, for an enrollment).
    Recipient,
    /// The consent's purpose (`-` for an enrollment, which has none).
    Purpose,
    /// The month of the event (UTC), `YYYY-MM`.
    Month,
}

impl std::str::FromStr for Dimension {
    type Err = Error;

    fn from_str(s: &str) -> Result<Dimension> {
        match s.trim() {
            "recipient" => Ok(Dimension::Recipient),
            "purpose" => Ok(Dimension::Purpose),
            "month" => Ok(Dimension::Month),
            other => Err(Error::bad_input(format!(
                "--by: `{other}` is not one of recipient, purpose, month"
            ))),
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// `enrollments`, `consents_granted`, `consents_revoked` or `reads`.
    pub measure: String,
    /// The recipient, or `all` when not counted by it.
    pub recipient: String,
    /// The purpose, or `all`.
    pub purpose: String,
    /// The month, or `all`.
    pub month: String,
    /// Distinct residents; `None` when suppressed.
    pub count: Option<u64>,
    /// Whether the count is withheld (fewer residents than the threshold).
    pub suppressed: bool,
}

/// The audit actions counted, each with what names its recipient and purpose.
const QUERIES: [(&str, &str); 4] = [
    (
        "enrollments",
        "SELECT e.requester AS recipient, '-' AS purpose, a.subject AS subject, a.at AS at FROM hub_audit a \
         JOIN hub_enrollments e ON e.id = a.object \
         WHERE a.action = 'enrollment.link' AND a.decision = 'allow'",
    ),
    (
        "consents_granted",
        "SELECT c.recipient AS recipient, c.purpose AS purpose, c.subject AS subject, a.at AS at FROM hub_audit a \
         JOIN consents c ON c.id = a.object \
         WHERE a.action = 'consent.grant' AND a.decision = 'allow'",
    ),
    (
        "consents_revoked",
        "SELECT c.recipient AS recipient, c.purpose AS purpose, c.subject AS subject, a.at AS at FROM hub_audit a \
         JOIN consents c ON c.id = a.object \
         WHERE a.action = 'consent.revoke' AND a.decision = 'allow'",
    ),
    (
        "reads",
        "SELECT a.actor AS recipient, c.purpose AS purpose, a.subject AS subject, a.at AS at FROM hub_audit a \
         JOIN consents c ON c.id = a.consent \
         WHERE a.action = 'read' AND a.decision = 'allow'",
    ),
];

/// The usage report counted by `by`, with counts below `threshold` suppressed.
pub async fn usage(db: &Db, by: &[Dimension], threshold: u64) -> Result<Vec<UsageRow>> {
    if threshold < 2 {
        return Err(Error::bad_input(format!(
            "--threshold: {threshold} is below 2 (one person's event would be published)"
        )));
    }
    let mut counts: BTreeMap<(String, String, String, String), HashSet<String>> = BTreeMap::new();
    let mut tx = db.begin_read().await?;
    for (measure, sql) in QUERIES {
        let rows = sqlx::query(sql).fetch_all(&mut *tx).await?;
        for r in rows {
            let recipient: String = r.try_get("recipient")?;
            let purpose: String = r.try_get("purpose")?;
            let subject: String = r.try_get("subject")?;
            let at: i64 = r.try_get("at")?;
            let month = DateTime::<Utc>::from_timestamp_micros(at)
                .map_or_else(|| "unknown".to_owned(), |t| t.format("%Y-%m").to_string());
            let pick = |d: Dimension, v: String| if by.contains(&d) { v } else { "all".into() };
            let key = (
                measure.to_owned(),
                pick(Dimension::Recipient, recipient),
                pick(Dimension::Purpose, purpose),
                pick(Dimension::Month, month),
            );
            counts.entry(key).or_default().insert(subject);
        }
    }
    tx.commit().await?;
    Ok(counts
        .into_iter()
        .map(|((measure, recipient, purpose, month), residents)| {
            let n = residents.len() as u64;
            UsageRow {
                measure,
                recipient,
                purpose,
                month,
                count: (n >= threshold).then_some(n),
                suppressed: n < threshold,
            }
        })
        .collect())
}

/// The rows as CSV (header first).
pub fn to_csv(rows: &[UsageRow]) -> String {
    let mut out = String::from("measure,recipient,purpose,month,count,suppressed\n");
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            r.measure,
            r.recipient,
            r.purpose,
            r.month,
            r.count.map(|n| n.to_string()).unwrap_or_default(),
            r.suppressed
        ));
    }
    out
}
