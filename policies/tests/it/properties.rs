//! Properties over random requests: what no request can ever be allowed.

use chrono::TimeDelta;
use proptest::prelude::*;
use renkei_policies::{GrantRequest, PARTICIPANT_KINDS, Policies, ReadRequest};

use crate::common::start;

fn kinds() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(PARTICIPANT_KINDS.to_vec()).prop_map(str::to_owned),
        "[a-z]{1,8}",
    ]
}

fn purposes() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "phr-display",
            "online-consultation",
            "health-points",
            "care-prevention-evaluation",
            "child-health-followup",
        ])
        .prop_map(str::to_owned),
        "[a-z-]{1,12}",
    ]
}

fn category_names() -> Vec<String> {
    Policies::embedded()
        .unwrap()
        .catalog()
        .categories()
        .map(|c| c.name.clone())
        .collect()
}

fn categories() -> impl Strategy<Value = Vec<String>> {
    let known = proptest::sample::select(category_names());
    proptest::collection::vec(prop_oneof![4 => known, 1 => "[a-z.]{1,10}"], 0..5)
}

fn validity() -> impl Strategy<Value = Option<i64>> {
    proptest::option::of(-10_i64..100_000_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn suspended_is_never_allowed(
        kind in kinds(),
        purpose in purposes(),
        cats in categories(),
        seconds in validity(),
    ) {
        let policies = Policies::embedded().unwrap();
        let participant = format!("{kind}:p");
        let grant = policies.authorize_grant(&GrantRequest {
            participant: &participant,
            kind: &kind,
            suspended: true,
            purpose: &purpose,
            categories: &cats,
            valid_from: start(),
            valid_until: seconds.map(|s| start() + TimeDelta::seconds(s)),
            approved_study: true,
        });
        prop_assert!(!grant.allowed);
        prop_assert!(!grant.reasons.is_empty());
        for category in &cats {
            let read = policies.authorize_read(&ReadRequest {
                participant: &participant,
                kind: &kind,
                suspended: true,
                purpose: &purpose,
                category,
            });
            prop_assert!(!read.allowed);
        }
    }

    #[test]
    fn health_points_never_holds_anything_but_attendance(
        kind in kinds(),
        cats in categories(),
        seconds in validity(),
    ) {
        let policies = Policies::embedded().unwrap();
        let participant = format!("{kind}:p");
        let decision = policies.authorize_grant(&GrantRequest {
            participant: &participant,
            kind: &kind,
            suspended: false,
            purpose: "health-points",
            categories: &cats,
            valid_from: start(),
            valid_until: seconds.map(|s| start() + TimeDelta::seconds(s)),
            approved_study: true,
        });
        if cats.iter().any(|c| c != "checkup.attendance") {
            prop_assert!(!decision.allowed, "{:?} {:?}", cats, decision.reasons);
        }
        for category in cats.iter().filter(|c| *c != "checkup.attendance") {
            let read = policies.authorize_read(&ReadRequest {
                participant: &participant,
                kind: &kind,
                suspended: false,
                purpose: "health-points",
                category,
            });
            prop_assert!(!read.allowed);
        }
    }

    #[test]
    fn a_denial_always_says_why(
        kind in kinds(),
        purpose in purposes(),
        cats in categories(),
        seconds in validity(),
        suspended in any::<bool>(),
    ) {
        let policies = Policies::embedded().unwrap();
        let participant = format!("{kind}:p");
        let decision = policies.authorize_grant(&GrantRequest {
            participant: &participant,
            kind: &kind,
            suspended,
            purpose: &purpose,
            categories: &cats,
            valid_from: start(),
            valid_until: seconds.map(|s| start() + TimeDelta::seconds(s)),
            approved_study: true,
        });
        prop_assert!(!decision.reasons.is_empty());
        if decision.allowed {
            prop_assert_eq!(decision.reasons.len(), cats.len());
        }
    }
}
