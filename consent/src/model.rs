//! The consent record: its terms, versions, lifecycle and the coverage decision.

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::validate::{
    validate_code, validate_participant, validate_sizes, validate_subject_token,
};
use crate::{Error, Result};

/// How a consent was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// In person at the municipal counter (対面), staff checked the card.
    Counter,
    /// On the hub's web portal.
    Web,
    /// In a participant's app.
    App,
}

impl Method {
    /// The wire name (`counter`, `web`, `app`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Counter => "counter",
            Method::Web => "web",
            Method::App => "app",
        }
    }
}

/// Lifecycle state: `active` → `revoked` | `expired` | `superseded`.
///
/// `Expired` is never stored; it is computed from `valid_until` at decision time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In force (possibly not yet started: see `valid_from`).
    Active,
    /// Withdrawn; see the consent's `revocation`.
    Revoked,
    /// Past its `valid_until`.
    Expired,
    /// Replaced by a newer consent that names this one in `supersedes`.
    Superseded,
}

impl Status {
    /// The wire name (`active`, `revoked`, `expired`, `superseded`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
            Status::Superseded => "superseded",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Active,
            Status::Revoked,
            Status::Expired,
            Status::Superseded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who revoked a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokedBy {
    /// The resident, e.g. on the portal with the receipt code.
    Resident,
    /// The recipient's or another participant's app on the resident's behalf.
    App,
    /// Municipal counter staff.
    Counter,
    /// A hub administrator.
    Admin,
}

impl RevokedBy {
    /// The wire name (`resident`, `app`, `counter`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            RevokedBy::Resident => "resident",
            RevokedBy::App => "app",
            RevokedBy::Counter => "counter",
            RevokedBy::Admin => "admin",
        }
    }
}

/// A revocation request: who, which actor, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRequest {
    /// The kind of revoker.
    pub by: RevokedBy,
    /// The acting party (participant id, staff id, `portal`, ...).
    pub actor: String,
    /// Free-text reason, as given.
    pub reason: String,
}

/// A recorded revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The kind of revoker.
    pub by: RevokedBy,
    /// The acting party.
    pub actor: String,
    /// When it took effect.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

/// Which records a consent covers, by their effective date (both ends inclusive, open when `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPeriod {
    /// First effective date covered.
    pub from: Option<NaiveDate>,
    /// Last effective date covered.
    pub until: Option<NaiveDate>,
}

impl DataPeriod {
    /// Whether a record with this effective date falls in the period.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from.is_none_or(|f| f <= date) && self.until.is_none_or(|u| date <= u)
    }
}

/// What a resident agreed to: one declaration of a consent's terms, as granted,
/// stored in every version, recorded in the ledger and on the receipt, and returned by
/// the hub (flattened into [`Consent`] and the receipt, so their JSON is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentTerms {
    /// Subject token (`st1_…`).
    pub subject: String,
    /// Recipient participant (`kind:id`).
    pub recipient: String,
    /// Purpose code from the catalog.
    pub purpose: String,
    /// Data categories from the catalog.
    pub categories: Vec<String>,
    /// Which records, by effective date.
    pub data_period: DataPeriod,
    /// Start of validity (inclusive).
    pub valid_from: DateTime<Utc>,
    /// End of validity (exclusive): at this exact instant the consent is expired; `None`
    /// means until revoked.
    pub valid_until: Option<DateTime<Utc>>,
    /// How the consent was taken.
    pub method: Method,
    /// Evidence, e.g. the SHA-256 of a signed paper form.
    pub evidence: Option<String>,
    /// Who granted it (the resident, or the staff member acting at the counter).
    pub granted_by: String,
    /// Set when a guardian consented for the resident (a child): how the guardian is
    /// related to them. The resident, the subject, is the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<Guardian>,
}

/// How the person who consented for a child is related to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guardian {
    /// A parent with parental authority (親権者).
    Parent,
    /// A guardian appointed for a minor (未成年後見人).
    LegalGuardian,
}

impl Guardian {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Guardian::Parent => "parent",
            Guardian::LegalGuardian => "legal-guardian",
        }
    }
}

impl ConsentTerms {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        validate_subject_token(&self.subject)?;
        validate_participant(&self.recipient)?;
        validate_code("purpose", &self.purpose)?;
        if self.categories.is_empty() {
            return Err(Error::InvalidTerms("categories must not be empty".into()));
        }
        validate_sizes(&self.categories, &self.granted_by, self.evidence.as_deref())?;
        if let (Some(f), Some(u)) = (self.data_period.from, self.data_period.until) {
            if f > u {
                return Err(Error::InvalidTerms(format!(
                    "data period from `{f}` is after until `{u}`"
                )));
            }
        }
        if let Some(u) = self.valid_until.filter(|u| *u <= self.valid_from) {
            return Err(Error::InvalidTerms(format!(
                "valid_until `{u}` is not after valid_from `{}`",
                self.valid_from
            )));
        }
        Ok(())
    }
}

/// One version of a consent. Versions are never edited: a change appends a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Consent id (UUID v4, hyphenated lowercase).
    pub id: String,
    /// Version, from 1; each change appends the next.
    pub version: u32,
    /// What the resident agreed to (the same in every version).
    #[serde(flatten)]
    pub terms: ConsentTerms,
    /// When it was granted (version 1's time; kept across versions).
    pub granted_at: DateTime<Utc>,
    /// Stored status (`active`, `revoked` or `superseded`; expiry is computed).
    pub status: Status,
    /// Set when revoked.
    pub revocation: Option<Revocation>,
    /// The consent this one replaces, if any.
    pub supersedes: Option<String>,
}

impl Consent {
    /// Version 1 of a consent from validated terms. Times are kept to the microsecond,
    /// the precision of the store, so that stored and computed decisions agree.
    pub(crate) fn first_version(
        id: String,
        terms: ConsentTerms,
        supersedes: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Consent> {
        let now = now.trunc_subsecs(6);
        let terms = ConsentTerms {
            valid_from: terms.valid_from.trunc_subsecs(6),
            valid_until: terms.valid_until.map(|t| t.trunc_subsecs(6)),
            ..terms
        };
        terms.validate()?;
        Ok(Consent {
            id,
            version: 1,
            terms,
            granted_at: now,
            status: Status::Active,
            revocation: None,
            supersedes,
        })
    }

    /// The status in force at `now`: an active consent whose `valid_until <= now` is expired.
    pub fn effective_status(&self, now: DateTime<Utc>) -> Status {
        match self.status {
            Status::Active if self.terms.valid_until.is_some_and(|u| now >= u) => Status::Expired,
            other => other,
        }
    }

    /// Whether the consent is in force at `now`: effectively active and started.
    pub fn is_in_force(&self, now: DateTime<Utc>) -> bool {
        self.effective_status(now) == Status::Active && self.terms.valid_from <= now
    }

    /// Whether this consent lets its recipient receive a record of `category`
    /// with `effective_date`, decided at `now`.
    pub fn covers(&self, category: &str, effective_date: NaiveDate, now: DateTime<Utc>) -> bool {
        self.is_in_force(now)
            && self.terms.categories.iter().any(|c| c == category)
            && self.terms.data_period.contains(effective_date)
    }

    /// The next version, revoked by `request` at `now`; fails unless in force or not yet started.
    pub(crate) fn revoked(
        &self,
        request: &RevocationRequest,
        now: DateTime<Utc>,
    ) -> Result<Consent> {
        self.require_active(now)?;
        let mut next = self.next_version()?;
        next.status = Status::Revoked;
        next.revocation = Some(Revocation {
            by: request.by,
            actor: request.actor.clone(),
            at: now.trunc_subsecs(6),
            reason: request.reason.clone(),
        });
        Ok(next)
    }

    /// The next version, marked superseded; fails unless active at `now`.
    pub(crate) fn superseded(&self, now: DateTime<Utc>) -> Result<Consent> {
        self.require_active(now)?;
        let mut next = self.next_version()?;
        next.status = Status::Superseded;
        Ok(next)
    }

    fn require_active(&self, now: DateTime<Utc>) -> Result<()> {
        match self.effective_status(now) {
            Status::Active => Ok(()),
            status => Err(Error::NotActive {
                id: self.id.clone(),
                status,
            }),
        }
    }

    fn next_version(&self) -> Result<Consent> {
        let version = self
            .version
            .checked_add(1)
            .ok_or_else(|| Error::Corrupt(format!("version overflow for consent `{}`", self.id)))?;
        Ok(Consent {
            version,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 4, 1, h, 0, 0).single().unwrap()
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    pub(crate) fn terms() -> ConsentTerms {
        ConsentTerms {
            subject: "st1_abcdefghijklmnopqrstuvwxyz234567".into(),
            recipient: "phr:asmile".into(),
            purpose: "phr-display".into(),
            categories: vec!["checkup.body".into(), "checkup.lipids".into()],
            data_period: DataPeriod {
                from: Some(d(2024, 4, 1)),
                until: Some(d(2025, 3, 31)),
            },
            valid_from: t(8),
            valid_until: Some(t(10)),
            method: Method::App,
            evidence: None,
            granted_by: "resident".into(),
            guardian: None,
        }
    }

    #[test]
    fn expiry_at_exact_instant() {
        let c = Consent::first_version("id".into(), terms(), None, t(8)).unwrap();
        assert_eq!(c.effective_status(t(9)), Status::Active);
        assert_eq!(c.effective_status(t(10)), Status::Expired);
        assert!(c.covers("checkup.body", d(2024, 5, 1), t(9)));
        assert!(!c.covers("checkup.body", d(2024, 5, 1), t(10)));
    }

    #[test]
    fn coverage_bounds() {
        let c = Consent::first_version("id".into(), terms(), None, t(8)).unwrap();
        assert!(c.covers("checkup.lipids", d(2024, 4, 1), t(8)));
        assert!(c.covers("checkup.lipids", d(2025, 3, 31), t(8)));
        assert!(!c.covers("checkup.lipids", d(2024, 3, 31), t(8)));
        assert!(!c.covers("checkup.lipids", d(2025, 4, 1), t(8)));
        assert!(!c.covers("checkup.liver", d(2024, 5, 1), t(8)));
        assert!(
            !c.covers("checkup.body", d(2024, 5, 1), t(7)),
            "not before valid_from"
        );
    }

    #[test]
    fn revoke_appends_a_version() {
        let c = Consent::first_version("id".into(), terms(), None, t(8)).unwrap();
        let req = RevocationRequest {
            by: RevokedBy::Resident,
            actor: "portal".into(),
            reason: "moved".into(),
        };
        let r = c.revoked(&req, t(9)).unwrap();
        assert_eq!((r.version, r.status), (2, Status::Revoked));
        assert_eq!(r.revocation.as_ref().map(|x| x.at), Some(t(9)));
        assert!(!r.covers("checkup.body", d(2024, 5, 1), t(9)));
        assert!(matches!(
            r.revoked(&req, t(9)),
            Err(Error::NotActive {
                status: Status::Revoked,
                ..
            })
        ));
        assert!(matches!(
            c.revoked(&req, t(11)),
            Err(Error::NotActive {
                status: Status::Expired,
                ..
            })
        ));
    }

    #[test]
    fn terms_validation_names_the_field() {
        let mut bad = terms();
        bad.categories.push("checkup.body".into());
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("`checkup.body` is listed twice")
        );
        let mut bad = terms();
        bad.valid_from = t(10);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("valid_until")
        );
        let mut bad = terms();
        bad.data_period = DataPeriod {
            from: Some(d(2025, 1, 1)),
            until: Some(d(2024, 1, 1)),
        };
        assert!(bad.validate().is_err());
        let mut bad = terms();
        bad.categories.clear();
        assert!(bad.validate().is_err());
    }
}
