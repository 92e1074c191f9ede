//! Which consents cover a record: the one definition of coverage over the consent
//! projection (`consent_categories`, see `migrations/`). The store's
//! `active_covering`, and the hub's reads, feed and key-grant queue (inside their own
//! transactions, so that a read and the decision it depends on see one committed state)
//! all use these predicates and queries.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::{AnyConnection, Row};

use crate::error::Result;

/// `$first, $first+1, …`: `n` numbered placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|k| format!("${k}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An active consent that covers a record for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    /// Consent id.
    pub consent_id: String,
    /// The recipient it names.
    pub recipient: String,
    /// Its purpose.
    pub purpose: String,
}

/// SQL: the `consent_categories` row `c` is in force at the time (microseconds) bound as
/// `now` (a placeholder such as `$3`): active, started, not ended.
pub fn in_force(c: &str, now: &str) -> String {
    format!(
        "{c}.status = 'active' AND {c}.valid_from_us <= {now} \
         AND ({c}.valid_until_us IS NULL OR {c}.valid_until_us > {now})"
    )
}

/// SQL: the data period of the `consent_categories` row `c` includes the day ([`day`])
/// bound as `day`.
pub fn in_data_period(c: &str, day: &str) -> String {
    format!(
        "({c}.data_from_day IS NULL OR {c}.data_from_day <= {day}) \
         AND ({c}.data_until_day IS NULL OR {c}.data_until_day >= {day})"
    )
}

/// A date as the consent projection stores it: days from the common era.
pub fn day(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce())
}

/// Whether a consent's data period (stored days, open ends `None`) includes `effective`:
/// [`in_data_period`] for rows already read.
pub fn in_period(from_day: Option<i64>, until_day: Option<i64>, effective: NaiveDate) -> bool {
    let d = day(effective);
    from_day.is_none_or(|f| f <= d) && until_day.is_none_or(|u| u >= d)
}

/// The consents in force at `now` covering the record for this one recipient.
pub async fn covering_for(
    conn: &mut AnyConnection,
    subject: &str,
    recipient: &str,
    category: &str,
    effective: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<Cover>> {
    let sql = format!(
        "SELECT c.consent_id, c.recipient, k.purpose \
         FROM consent_categories c JOIN consents k ON k.id = c.consent_id \
         WHERE c.subject = $1 AND c.category = $2 AND {} AND {} AND c.recipient = $5 \
         ORDER BY c.consent_id",
        in_force("c", "$3"),
        in_data_period("c", "$4")
    );
    let rows = sqlx::query(&sql)
        .bind(subject)
        .bind(category)
        .bind(now.timestamp_micros())
        .bind(day(effective))
        .bind(recipient)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Cover {
                consent_id: r.try_get("consent_id")?,
                recipient: r.try_get("recipient")?,
                purpose: r.try_get("purpose")?,
            })
        })
        .collect()
}

/// A consent in force covering one (subject, category), with its data period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectCover {
    /// The subject token.
    pub subject: String,
    /// The category.
    pub category: String,
    /// The consent.
    pub cover: Cover,
    data_from_day: Option<i64>,
    data_until_day: Option<i64>,
}

impl SubjectCover {
    /// Whether the consent's data period includes a record of this effective date.
    pub fn covers(&self, effective: NaiveDate) -> bool {
        in_period(self.data_from_day, self.data_until_day, effective)
    }
}

/// Every consent in force at `now` for any of `subjects`, any category and recipient:
/// one indexed query per 256 subjects (for a whole upload batch).
pub async fn covering_subjects(
    conn: &mut AnyConnection,
    subjects: &[&str],
    now: DateTime<Utc>,
) -> Result<Vec<SubjectCover>> {
    let mut out = Vec::new();
    for chunk in subjects.chunks(256) {
        let sql = format!(
            "SELECT c.subject, c.category, c.consent_id, c.recipient, k.purpose, \
             c.data_from_day, c.data_until_day \
             FROM consent_categories c JOIN consents k ON k.id = c.consent_id \
             WHERE {} AND c.subject IN ({}) \
             ORDER BY c.consent_id",
            in_force("c", "$1"),
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(now.timestamp_micros());
        for s in chunk {
            q = q.bind(*s);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.push(SubjectCover {
                subject: r.try_get("subject")?,
                category: r.try_get("category")?,
                cover: Cover {
                    consent_id: r.try_get("consent_id")?,
                    recipient: r.try_get("recipient")?,
                    purpose: r.try_get("purpose")?,
                },
                data_from_day: r.try_get("data_from_day")?,
                data_until_day: r.try_get("data_until_day")?,
            });
        }
    }
    Ok(out)
}
