//! Shared helpers: the embedded policies and request builders.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use renkei_policies::{Decision, GrantRequest, Policies, ReadRequest};

pub(crate) fn policies() -> Policies {
    Policies::embedded().unwrap()
}

pub(crate) fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 4, 1, 9, 0, 0).unwrap()
}

pub(crate) fn categories(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// Grants `purpose` over `names` to a non-suspended `kind:test` for `validity` (naming a
/// study registered for it, which only `research` looks at).
pub(crate) fn grant(
    policies: &Policies,
    kind: &str,
    purpose: &str,
    names: &[&str],
    validity: Option<TimeDelta>,
) -> Decision {
    let categories = categories(names);
    let participant = format!("{kind}:test");
    policies.authorize_grant(&GrantRequest {
        participant: &participant,
        kind,
        suspended: false,
        purpose,
        categories: &categories,
        valid_from: start(),
        valid_until: validity.map(|length| start() + length),
        approved_study: true,
    })
}

pub(crate) fn read(policies: &Policies, kind: &str, purpose: &str, category: &str) -> Decision {
    let participant = format!("{kind}:test");
    policies.authorize_read(&ReadRequest {
        participant: &participant,
        kind,
        suspended: false,
        purpose,
        category,
    })
}

pub(crate) fn assert_denied_mentioning(decision: &Decision, needle: &str) {
    assert!(
        !decision.allowed,
        "unexpectedly allowed: {:?}",
        decision.reasons
    );
    assert!(
        decision
            .reasons
            .iter()
            .any(|reason| reason.contains(needle)),
        "no reason mentions {needle}: {:?}",
        decision.reasons
    );
}
