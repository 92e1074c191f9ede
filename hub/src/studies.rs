//! Research studies (issue 20): what the hub knows of an ethics committee's approval, so
//! that a `research` consent rests on one. The operator registers each study once, with its
//! committee, approval id, period and its one recipient (the research institution's analyst
//! participant). A `research` grant names the study as its evidence, `study:<id>`; the
//! policies allow it only when [`approved`] says the study exists for that recipient and the
//! consent's validity lies within the study's period (`research.cedar`).
//!
//! A study's period is in Japan time: from `starts_on` 00:00 JST to the end of `ends_on`.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use sqlx::{AnyConnection, Row};

use crate::db::{self, Db};
use crate::error::{Error, Result};
use crate::registry;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};

/// The evidence prefix of a `research` consent.
pub const EVIDENCE_PREFIX: &str = "study:";

/// Longest committee name or approval id, in characters.
const MAX_TEXT: usize = 200;

/// A registered study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Study {
    /// The study's id (what `study:<id>` names).
    pub id: String,
    /// Its one recipient, an analyst participant.
    pub recipient: ParticipantId,
    /// The ethics committee that approved it.
    pub committee: String,
    /// The committee's approval id.
    pub approval_id: String,
    /// First day of the study (Japan time).
    pub starts_on: NaiveDate,
    /// Last day of the study (Japan time).
    pub ends_on: NaiveDate,
}

impl Study {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(Error::bad_request(format!(
                "study id `{}`: 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
                self.id
            )));
        }
        if self.recipient.kind() != ParticipantKind::Analyst {
            return Err(Error::bad_request(format!(
                "study `{}`: the recipient `{}` is not an analyst",
                self.id, self.recipient
            )));
        }
        for (field, text) in [
            ("committee", &self.committee),
            ("approval id", &self.approval_id),
        ] {
            let count = text.trim().chars().count();
            if count == 0 || count > MAX_TEXT || text.chars().any(char::is_control) {
                return Err(Error::bad_request(format!(
                    "study `{}`: the {field} must be 1 to {MAX_TEXT} characters without control characters",
                    self.id
                )));
            }
        }
        if self.ends_on < self.starts_on {
            return Err(Error::bad_request(format!(
                "study `{}`: it ends ({}) before it starts ({})",
                self.id, self.ends_on, self.starts_on
            )));
        }
        Ok(())
    }

    /// The study's period as instants: `starts_on` 00:00 JST up to (not including) the day
    /// after `ends_on`, 00:00 JST.
    pub fn period(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let jst = FixedOffset::east_opt(9 * 3600)?;
        let start = jst
            .from_local_datetime(&self.starts_on.and_hms_opt(0, 0, 0)?)
            .single()?;
        let end = jst
            .from_local_datetime(&self.ends_on.succ_opt()?.and_hms_opt(0, 0, 0)?)
            .single()?;
        Some((start.with_timezone(&Utc), end.with_timezone(&Utc)))
    }
}

/// Registers `study` (refused if its id is taken or its recipient is not a registered
/// analyst), audited as `study.register`.
pub async fn add(db: &Db, study: &Study, now: DateTime<Utc>) -> Result<()> {
    study.validate()?;
    let mut tx = db.begin().await?;
    let recipient = study.recipient.to_string();
    if registry::get_by_str(&mut tx, &recipient).await?.is_none() {
        return Err(Error::bad_request(format!(
            "study `{}`: the recipient `{recipient}` is not registered (`internet-hub participants add` first)",
            study.id
        )));
    }
    let inserted = sqlx::query(
        "INSERT INTO hub_studies (study_id, recipient, committee, approval_id, starts_on, \
         ends_on, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
    )
    .bind(&study.id)
    .bind(&recipient)
    .bind(study.committee.trim())
    .bind(study.approval_id.trim())
    .bind(study.starts_on.to_string())
    .bind(study.ends_on.to_string())
    .bind(db::micros(now))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(Error::Conflict(format!(
            "study `{}` is already registered (a study has one recipient and one period)",
            study.id
        )));
    }
    crate::audit::append(
        &mut tx,
        now,
        &crate::audit::Entry::allow("admin", "study.register", &study.id),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every registered study, by id.
pub async fn list(db: &Db) -> Result<Vec<Study>> {
    let mut tx = db.begin_read().await?;
    let rows = sqlx::query(
        "SELECT study_id, recipient, committee, approval_id, starts_on, ends_on \
         FROM hub_studies ORDER BY study_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(from_row).collect()
}

/// The study `id`, if registered.
async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Study>> {
    let row = sqlx::query(
        "SELECT study_id, recipient, committee, approval_id, starts_on, ends_on \
         FROM hub_studies WHERE study_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Study> {
    let date = |column: &str| -> Result<NaiveDate> {
        let text: String = r.try_get(column)?;
        text.parse()
            .map_err(|e| Error::internal_from(format!("stored study {column} `{text}`"), e))
    };
    let recipient: String = r.try_get("recipient")?;
    Ok(Study {
        id: r.try_get("study_id")?,
        recipient: recipient.parse().map_err(|e| {
            Error::internal_from(format!("stored study recipient `{recipient}`"), e)
        })?,
        committee: r.try_get("committee")?,
        approval_id: r.try_get("approval_id")?,
        starts_on: date("starts_on")?,
        ends_on: date("ends_on")?,
    })
}

/// Whether a grant to `recipient` with this `evidence` and validity rests on an approved
/// study: the evidence is `study:<id>` of a study registered for `recipient`, the consent
/// has an end, and its validity lies within the study's period.
pub async fn approved(
    conn: &mut AnyConnection,
    evidence: Option<&str>,
    recipient: &str,
    valid_from: DateTime<Utc>,
    valid_until: Option<DateTime<Utc>>,
) -> Result<bool> {
    let (Some(id), Some(until)) = (
        evidence.and_then(|e| e.strip_prefix(EVIDENCE_PREFIX)),
        valid_until,
    ) else {
        return Ok(false);
    };
    let Some(study) = get(conn, id).await? else {
        return Ok(false);
    };
    let Some((start, end)) = study.period() else {
        return Ok(false);
    };
    Ok(study.recipient.to_string() == recipient && start <= valid_from && until <= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study() -> Study {
        Study {
            id: "mysos-2026-01".into(),
            recipient: "analyst:univ".parse().unwrap(),
            committee: "大学 倫理審査委員会".into(),
            approval_id: "R-2026-123".into(),
            starts_on: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            ends_on: NaiveDate::from_ymd_opt(2027, 3, 31).unwrap(),
        }
    }

    #[test]
    fn the_period_is_whole_days_in_japan_time() {
        let (start, end) = study().period().unwrap();
        assert_eq!(start.to_rfc3339(), "2026-03-31T15:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2027-03-31T15:00:00+00:00");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut s = study();
        s.recipient = "clinic:a".parse().unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("not an analyst")
        );
        let mut s = study();
        s.ends_on = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("before it starts")
        );
        let mut s = study();
        s.committee = " ".into();
        assert!(s.validate().unwrap_err().to_string().contains("committee"));
        let mut s = study();
        s.id = "a/b".into();
        assert!(s.validate().unwrap_err().to_string().contains("study id"));
        assert!(study().validate().is_ok());
    }
}
