//! Reading under a consent: the same kind/purpose/category rules, no validity.

use renkei_policies::ReadRequest;

use crate::common::{assert_denied_mentioning, policies, read};

#[test]
fn reads_follow_the_kind_purpose_category_rules() {
    let policies = policies();
    assert!(
        read(
            &policies,
            "clinic",
            "online-consultation",
            "checkup.glucose"
        )
        .allowed
    );
    assert!(read(&policies, "clinic", "online-consultation", "phr.medication").allowed);
    assert!(
        !read(
            &policies,
            "clinic",
            "online-consultation",
            "kdb.medical-cost"
        )
        .allowed
    );
    assert!(!read(&policies, "clinic", "phr-display", "checkup.glucose").allowed);
    assert!(
        read(
            &policies,
            "analyst",
            "care-prevention-evaluation",
            "kdb.care"
        )
        .allowed
    );
    assert!(read(&policies, "phr", "phr-display", "insurer.cost-notice").allowed);
    assert!(!read(&policies, "phr", "phr-display", "kdb.care").allowed);
    assert!(read(&policies, "phr", "health-points", "checkup.attendance").allowed);
    assert_denied_mentioning(
        &read(&policies, "phr", "health-points", "checkup.body"),
        "health-points-attendance-only",
    );
    assert!(
        read(
            &policies,
            "municipality",
            "child-health-followup",
            "checkup.body"
        )
        .allowed
    );
    assert!(
        !read(
            &policies,
            "municipality",
            "child-health-followup",
            "phr.vitals"
        )
        .allowed
    );
}

#[test]
fn a_denied_read_without_a_forbid_says_no_policy_permits() {
    let decision = read(
        &policies(),
        "municipality",
        "online-consultation",
        "checkup.body",
    );
    assert_denied_mentioning(&decision, "no policy lets a `municipality` participant");
}

#[test]
fn a_suspended_reader_is_denied() {
    let decision = policies().authorize_read(&ReadRequest {
        participant: "clinic:tokyo",
        kind: "clinic",
        suspended: true,
        purpose: "online-consultation",
        category: "checkup.glucose",
    });
    assert_denied_mentioning(&decision, "base/suspended-gets-nothing");
}

#[test]
fn unknown_names_are_denied() {
    let policies = policies();
    assert_denied_mentioning(
        &read(&policies, "clinic", "advertising", "checkup.body"),
        "unknown purpose `advertising`",
    );
    assert_denied_mentioning(
        &read(&policies, "clinic", "online-consultation", "genome"),
        "unknown category `genome`",
    );
    let decision = policies.authorize_read(&ReadRequest {
        participant: "clinic:",
        kind: "clinic",
        suspended: false,
        purpose: "online-consultation",
        category: "checkup.body",
    });
    assert_denied_mentioning(&decision, "`clinic:`");
}

#[test]
fn only_an_analyst_receives_evaluation_statistics_and_no_consent_is_granted_for_them() {
    use renkei_policies::PARTICIPANT_KINDS;
    let policies = policies();
    for kind in PARTICIPANT_KINDS {
        for category in policies.catalog().categories() {
            let allowed = read(&policies, kind, "program-evaluation", &category.name).allowed;
            assert_eq!(
                allowed,
                kind == "analyst" && category.name == "evaluation.aggregate",
                "{kind} / {}",
                category.name
            );
        }
        // The statistics under any other purpose: no.
        assert!(
            !read(
                &policies,
                kind,
                "care-prevention-evaluation",
                "evaluation.aggregate"
            )
            .allowed
        );
    }
    // No one can take a consent for it (the grant matrix in grant.rs covers every kind).
    let granted = crate::common::grant(
        &policies,
        "analyst",
        "program-evaluation",
        &["evaluation.aggregate"],
        Some(chrono::TimeDelta::hours(24)),
    );
    assert!(!granted.allowed, "{:?}", granted.reasons);
}

/// Read decisions are remembered per policy set. Two sets asked every question (each
/// kind, suspension, purpose and category, and another participant of the same kind) in
/// opposite orders give the same answers: a memo whose key left out a field would give
/// each set the answer of a different question first asked under the shared key.
#[test]
fn remembered_read_decisions_answer_the_question_asked() {
    let forward = policies();
    let backward = policies();
    let catalog = forward.catalog().clone();
    let kinds = [
        "phr",
        "clinic",
        "municipality",
        "analyst",
        "insurer",
        "source",
    ];
    let mut asked = Vec::new();
    for category in catalog.categories() {
        for purpose in catalog.purposes() {
            for kind in kinds {
                for (participant, suspended) in [("x", false), ("x", true), ("y", false)] {
                    let participant = if participant == "y" {
                        format!("clinic:{participant}")
                    } else {
                        format!("{kind}:{participant}")
                    };
                    asked.push((
                        participant,
                        kind,
                        suspended,
                        purpose.name.clone(),
                        category.name.clone(),
                    ));
                }
            }
        }
    }
    let request = |q: &(String, &'static str, bool, String, String)| {
        let (participant, kind, suspended, purpose, category) = q;
        (
            participant.clone(),
            *kind,
            *suspended,
            purpose.clone(),
            category.clone(),
        )
    };
    let answers =
        |policies: &renkei_policies::Policies,
         order: &mut dyn Iterator<Item = &(String, &'static str, bool, String, String)>| {
            order
                .map(|q| {
                    let (participant, kind, suspended, purpose, category) = request(q);
                    let decision = policies.authorize_read(&ReadRequest {
                        participant: &participant,
                        kind,
                        suspended,
                        purpose: &purpose,
                        category: &category,
                    });
                    ((participant, kind, suspended, purpose, category), decision)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        };
    let first = answers(&forward, &mut asked.iter());
    let second = answers(&backward, &mut asked.iter().rev());
    // Asked again, the remembered answers are the same.
    let again = answers(&forward, &mut asked.iter().rev());
    assert_eq!(first.len(), asked.len());
    assert!(first.values().any(|d| d.allowed) && first.values().any(|d| !d.allowed));
    for (question, decision) in &first {
        assert_eq!(Some(decision), second.get(question), "{question:?}");
        assert_eq!(Some(decision), again.get(question), "{question:?}");
    }
}
