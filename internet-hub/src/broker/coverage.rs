//! Consent coverage inside the caller's transaction: the one indexed query over the
//! consent crate's `consent_categories` projection (see consent/migrations), so that
//! a read and the consent decision it depends on see the same committed state.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::{AnyConnection, Row};

use crate::db;
use crate::error::Result;

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

const COVER_SQL: &str = "SELECT c.consent_id, c.recipient, k.purpose \
     FROM consent_categories c JOIN consents k ON k.id = c.consent_id \
     WHERE c.subject = $1 AND c.category = $2 AND c.status = 'active' \
       AND c.valid_from_us <= $3 AND (c.valid_until_us IS NULL OR c.valid_until_us > $3) \
       AND (c.data_from_day IS NULL OR c.data_from_day <= $4) \
       AND (c.data_until_day IS NULL OR c.data_until_day >= $4)";

/// A date as the consent projection stores it: days from the common era.
fn day(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce())
}

/// Whether a consent's data period (stored days, open ends `None`) includes `effective`.
pub(crate) fn in_period(
    from_day: Option<i64>,
    until_day: Option<i64>,
    effective: NaiveDate,
) -> bool {
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
    let sql = format!("{COVER_SQL} AND c.recipient = $5 ORDER BY c.consent_id");
    let rows = sqlx::query(&sql)
        .bind(subject)
        .bind(category)
        .bind(db::micros(now))
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
             WHERE c.status = 'active' AND c.valid_from_us <= $1 \
               AND (c.valid_until_us IS NULL OR c.valid_until_us > $1) AND c.subject IN ({}) \
             ORDER BY c.consent_id",
            db::placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(db::micros(now));
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
