//! Granting consents under the shipped policies: who may hold what, for how long.

use chrono::TimeDelta;
use renkei_policies::{GrantRequest, PARTICIPANT_KINDS};

use crate::common::{assert_denied_mentioning, categories, grant, policies, start};

/// What the shipped policies are meant to say, written independently of the Cedar.
fn expected(kind: &str, purpose: &str, category: &str) -> bool {
    let group = category.split('.').next().unwrap();
    match (kind, purpose) {
        ("phr", "phr-display") => {
            matches!(
                group,
                "checkup" | "guidance" | "immunization" | "insurer" | "phr"
            )
        }
        ("phr", "health-points") => category == "checkup.attendance",
        ("clinic", "online-consultation") => matches!(group, "checkup" | "immunization" | "phr"),
        ("municipality", "child-health-followup") => {
            group == "checkup" || category == "consult.child-health"
        }
        ("analyst", "care-prevention-evaluation") => {
            matches!(group, "checkup" | "guidance" | "kdb" | "phr")
        }
        // With a study registered for the analyst (the helper says so, as the hub does).
        ("analyst", "research") => matches!(group, "checkup" | "kdb" | "phr"),
        ("insurer" | "clinic", "health-guidance") => {
            group == "guidance"
                || matches!(
                    category,
                    "checkup.judgement" | "checkup.body" | "checkup.questionnaire"
                )
        }
        _ => false,
    }
}

#[test]
fn every_kind_purpose_and_category_matches_the_table() {
    let policies = policies();
    let catalog = policies.catalog();
    let mut allowed = 0;
    for kind in PARTICIPANT_KINDS {
        for purpose in catalog.purposes() {
            for category in catalog.categories() {
                let decision = grant(
                    &policies,
                    kind,
                    &purpose.name,
                    &[&category.name],
                    Some(TimeDelta::hours(24)),
                );
                assert_eq!(
                    decision.allowed,
                    expected(kind, &purpose.name, &category.name),
                    "{kind} / {} / {}: {:?}",
                    purpose.name,
                    category.name,
                    decision.reasons
                );
                assert!(!decision.reasons.is_empty());
                allowed += usize::from(decision.allowed);
            }
        }
    }
    // 17 checkup + 3 guidance + 1 vaccination + 2 insurer + 2 phr for display, 1 for
    // points, 17 + 1 vaccination + 2 phr for the clinic, 17 + 1 consultation note for the
    // municipality, 17 + 3 guidance + 2 kdb + 2 phr for the analyst's evaluation and
    // 17 + 2 + 2 for its research, 3 checkup + 3 guidance each for the insurer's and a
    // clinic's 特定保健指導.
    assert_eq!(allowed, 25 + 1 + 20 + 18 + 24 + 21 + 6 + 6);
}

#[test]
fn an_allow_names_the_permitting_policy_per_category() {
    let decision = grant(
        &policies(),
        "clinic",
        "online-consultation",
        &["checkup.glucose", "phr.vitals"],
        Some(TimeDelta::hours(1)),
    );
    assert!(decision.allowed, "{:?}", decision.reasons);
    assert_eq!(decision.reasons.len(), 2);
    assert!(decision.reasons[0].contains("`checkup.glucose`"));
    assert!(decision.reasons[1].contains("`clinic/clinic-online-consultation`"));
}

#[test]
fn online_consultation_is_at_most_72_hours() {
    let policies = policies();
    let cats = ["checkup.lipids"];
    let at = grant(
        &policies,
        "clinic",
        "online-consultation",
        &cats,
        Some(TimeDelta::hours(72)),
    );
    assert!(at.allowed, "{:?}", at.reasons);
    let over = TimeDelta::hours(72) + TimeDelta::seconds(1);
    let denied = grant(
        &policies,
        "clinic",
        "online-consultation",
        &cats,
        Some(over),
    );
    assert_denied_mentioning(&denied, "72 hours");
    let just_over = TimeDelta::hours(72) + TimeDelta::milliseconds(1);
    assert!(
        !grant(
            &policies,
            "clinic",
            "online-consultation",
            &cats,
            Some(just_over)
        )
        .allowed
    );
    let open = grant(&policies, "clinic", "online-consultation", &cats, None);
    assert_denied_mentioning(&open, "72 hours");
}

#[test]
fn phr_display_and_health_points_may_be_open_ended() {
    let policies = policies();
    let display = grant(
        &policies,
        "phr",
        "phr-display",
        &["checkup.body", "phr.vitals"],
        None,
    );
    assert!(display.allowed, "{:?}", display.reasons);
    let points = grant(
        &policies,
        "phr",
        "health-points",
        &["checkup.attendance"],
        None,
    );
    assert!(points.allowed, "{:?}", points.reasons);
    let years = grant(
        &policies,
        "phr",
        "phr-display",
        &["checkup.body"],
        Some(TimeDelta::days(3650)),
    );
    assert!(years.allowed, "{:?}", years.reasons);
}

#[test]
fn other_purposes_are_at_most_366_days() {
    let policies = policies();
    for (kind, purpose) in [
        ("analyst", "care-prevention-evaluation"),
        ("municipality", "child-health-followup"),
    ] {
        let year = Some(TimeDelta::days(366));
        assert!(grant(&policies, kind, purpose, &["checkup.body"], year).allowed);
        let over = Some(TimeDelta::days(366) + TimeDelta::seconds(1));
        assert_denied_mentioning(
            &grant(&policies, kind, purpose, &["checkup.body"], over),
            "366 days",
        );
        assert_denied_mentioning(
            &grant(&policies, kind, purpose, &["checkup.body"], None),
            "366 days",
        );
    }
}

#[test]
fn research_needs_a_study_approved_for_the_recipient() {
    let cats = categories(&["checkup.glucose", "kdb.medical-cost"]);
    let request = |approved_study| GrantRequest {
        participant: "analyst:univ",
        kind: "analyst",
        suspended: false,
        purpose: "research",
        categories: &cats,
        valid_from: start(),
        valid_until: Some(start() + TimeDelta::days(30)),
        approved_study,
    };
    let policies = policies();
    assert!(policies.authorize_grant(&request(true)).allowed);
    let refused = policies.authorize_grant(&request(false));
    assert_denied_mentioning(&refused, "research-needs-an-approved-study");
    // Other purposes do not look at it.
    let cats = categories(&["checkup.glucose"]);
    let evaluation = GrantRequest {
        purpose: "care-prevention-evaluation",
        categories: &cats,
        ..request(false)
    };
    assert!(policies.authorize_grant(&evaluation).allowed);
    // And an approved study is no way in for another kind.
    let clinic = GrantRequest {
        participant: "clinic:a",
        kind: "clinic",
        ..request(true)
    };
    assert!(!policies.authorize_grant(&clinic).allowed);
}

#[test]
fn health_points_with_another_category_is_denied_as_a_whole() {
    let decision = grant(
        &policies(),
        "phr",
        "health-points",
        &["checkup.attendance", "checkup.glucose"],
        None,
    );
    assert_denied_mentioning(&decision, "`checkup.glucose`");
    assert_denied_mentioning(&decision, "health-points-attendance-only");
    // Only the offending category is listed; attendance itself was fine.
    assert!(
        decision
            .reasons
            .iter()
            .all(|r| !r.starts_with("category `checkup.attendance`")),
        "{:?}",
        decision.reasons
    );
}

#[test]
fn a_suspended_participant_gets_nothing() {
    let policies = policies();
    let catalog = policies.catalog();
    let all: Vec<String> = catalog.categories().map(|c| c.name.clone()).collect();
    for kind in PARTICIPANT_KINDS {
        let participant = format!("{kind}:test");
        for purpose in catalog.purposes() {
            for category in &all {
                let one = [category.clone()];
                let decision = policies.authorize_grant(&GrantRequest {
                    participant: &participant,
                    kind,
                    suspended: true,
                    purpose: &purpose.name,
                    categories: &one,
                    valid_from: start(),
                    valid_until: Some(start() + TimeDelta::hours(1)),
                    approved_study: true,
                });
                assert!(!decision.allowed, "{kind} {} {category}", purpose.name);
            }
        }
    }
    let decision = grant_suspended_clinic();
    assert_denied_mentioning(&decision, "suspended");
}

fn grant_suspended_clinic() -> renkei_policies::Decision {
    let cats = categories(&["checkup.body"]);
    policies().authorize_grant(&GrantRequest {
        participant: "clinic:a",
        kind: "clinic",
        suspended: true,
        purpose: "online-consultation",
        categories: &cats,
        valid_from: start(),
        valid_until: Some(start() + TimeDelta::hours(1)),
        approved_study: true,
    })
}

#[test]
fn unknown_names_and_malformed_requests_are_denied_with_a_reason() {
    let policies = policies();
    let hour = Some(TimeDelta::hours(1));
    assert_denied_mentioning(
        &grant(&policies, "clinic", "marketing", &["checkup.body"], hour),
        "unknown purpose `marketing`",
    );
    assert_denied_mentioning(
        &grant(
            &policies,
            "clinic",
            "online-consultation",
            &["checkup.dna"],
            hour,
        ),
        "unknown category `checkup.dna`",
    );
    assert_denied_mentioning(
        &grant(
            &policies,
            "pharmacy",
            "phr-display",
            &["checkup.body"],
            hour,
        ),
        "unknown participant kind `pharmacy`",
    );
    assert_denied_mentioning(
        &grant(&policies, "clinic", "online-consultation", &[], hour),
        "at least one category",
    );
    assert_denied_mentioning(
        &grant(
            &policies,
            "clinic",
            "online-consultation",
            &["checkup.body", "checkup.body"],
            hour,
        ),
        "listed twice",
    );
    assert_denied_mentioning(
        &grant(
            &policies,
            "clinic",
            "online-consultation",
            &["checkup.body"],
            Some(TimeDelta::zero()),
        ),
        "before or when it starts",
    );
    let cats = categories(&["checkup.body"]);
    let mismatch = policies.authorize_grant(&GrantRequest {
        participant: "phr:asmile",
        kind: "clinic",
        suspended: false,
        purpose: "online-consultation",
        categories: &cats,
        valid_from: start(),
        valid_until: Some(start() + TimeDelta::hours(1)),
        approved_study: true,
    });
    assert_denied_mentioning(&mismatch, "`phr:asmile`");
}

#[test]
fn sources_and_admins_are_refused_by_an_explicit_forbid() {
    let policies = policies();
    for kind in ["source", "admin"] {
        let decision = grant(&policies, kind, "phr-display", &["checkup.body"], None);
        assert_denied_mentioning(&decision, "sources-and-admins-receive-nothing");
    }
}
