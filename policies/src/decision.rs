//! Authorization requests (grant a consent, read under one) and the decision with its reasons.

use chrono::{DateTime, Utc};

/// The answer to an authorization request: allowed or not, and why.
///
/// A denial always carries at least one reason; an allow lists the policies that
/// permitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Decision {
    /// True only if every part of the request was permitted and nothing failed.
    pub allowed: bool,
    /// Why, one line per reason, naming categories and policies in backticks.
    pub reasons: Vec<String>,
}

impl Decision {
    /// An allow with the reasons that permitted it.
    pub fn allow(reasons: Vec<String>) -> Self {
        Self {
            allowed: true,
            reasons,
        }
    }

    /// A denial with one reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reasons: vec![reason.into()],
        }
    }

    /// A denial with several reasons (an empty list gets a generic reason, never none).
    pub fn deny_all(reasons: Vec<String>) -> Self {
        let reasons = if reasons.is_empty() {
            vec!["denied".to_owned()]
        } else {
            reasons
        };
        Self {
            allowed: false,
            reasons,
        }
    }

    /// True if the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
}

/// A participant asking to hold a consent for `purpose` over `categories`.
#[derive(Debug, Clone, Copy)]
pub struct GrantRequest<'a> {
    /// The participant as `kind:id`, e.g. `clinic:tokyo-naika`.
    pub participant: &'a str,
    /// The participant's kind from the registry; must match the `kind:` prefix.
    pub kind: &'a str,
    /// Whether the registry marks the participant suspended.
    pub suspended: bool,
    /// The purpose of use, a purpose of the catalog.
    pub purpose: &'a str,
    /// The categories the consent would cover; each is evaluated on its own.
    pub categories: &'a [String],
    /// Start of the validity period.
    pub valid_from: DateTime<Utc>,
    /// End of the validity period; `None` for an open-ended consent.
    pub valid_until: Option<DateTime<Utc>>,
    /// Whether the grant names a study registered at the hub for this participant, with
    /// the validity inside the study's period (the `research` purpose requires it).
    pub approved_study: bool,
}

/// A participant reading one category under a consent for `purpose`.
#[derive(Debug, Clone, Copy)]
pub struct ReadRequest<'a> {
    /// The participant as `kind:id`.
    pub participant: &'a str,
    /// The participant's kind from the registry; must match the `kind:` prefix.
    pub kind: &'a str,
    /// Whether the registry marks the participant suspended.
    pub suspended: bool,
    /// The purpose of the consent the read happens under.
    pub purpose: &'a str,
    /// The category being read.
    pub category: &'a str,
}

/// The validity of a grant for the policies: open-ended, or its length in whole
/// seconds rounded up (so 72 h plus a millisecond is more than 72 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validity {
    /// No end date.
    OpenEnded,
    /// A bounded period of this many seconds (at least 1).
    Seconds(i64),
}

/// The validity of `from..until`, or the reason it is unacceptable.
pub(crate) fn validity(
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<Validity, String> {
    let Some(until) = until else {
        return Ok(Validity::OpenEnded);
    };
    if until <= from {
        return Err(format!(
            "validity period ends (`{}`) before or when it starts (`{}`)",
            until.to_rfc3339(),
            from.to_rfc3339()
        ));
    }
    let length = until - from;
    let whole = length.num_seconds();
    let rounded = if length > chrono::TimeDelta::seconds(whole) {
        whole.saturating_add(1)
    } else {
        whole
    };
    Ok(Validity::Seconds(rounded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn a_denial_always_has_a_reason() {
        let decision = Decision::deny_all(Vec::new());
        assert!(!decision.allowed);
        assert_eq!(decision.reasons.len(), 1);
        assert!(Decision::allow(vec!["ok".into()]).is_allowed());
        assert!(!Decision::deny("no").is_allowed());
    }

    #[test]
    fn validity_rounds_up_to_whole_seconds() {
        let from = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(validity(from, None), Ok(Validity::OpenEnded));
        let exact = from + TimeDelta::hours(72);
        assert_eq!(validity(from, Some(exact)), Ok(Validity::Seconds(259_200)));
        let over = exact + TimeDelta::milliseconds(1);
        assert_eq!(validity(from, Some(over)), Ok(Validity::Seconds(259_201)));
    }

    #[test]
    fn an_empty_or_reversed_period_is_refused() {
        let from = DateTime::<Utc>::UNIX_EPOCH;
        assert!(validity(from, Some(from)).is_err());
        assert!(validity(from, Some(from - TimeDelta::seconds(1))).is_err());
    }
}
