//! Property tests of the lifecycle: the store's indexed coverage query agrees with the
//! model's `covers`, revoked consents never cover, expiry is exclusive, category A
//! never covers B, and data-period bounds are respected.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use proptest::prelude::*;
use renkei_consent::{
    ConsentStore, ConsentTerms, CoverQuery, DataPeriod, RevocationRequest, RevokedBy, SqliteStore,
    Status,
};

use crate::support::{PEPPER, RECIPIENT, SUBJECT, d, t, terms};

const CATEGORIES: [&str; 4] = [
    "checkup.body",
    "checkup.lipids",
    "checkup.liver",
    "kdb.care",
];

#[derive(Debug, Clone)]
struct Case {
    cats: Vec<usize>,
    from_h: i64,
    len_h: Option<i64>,
    data_from: Option<i64>,
    data_len: Option<i64>,
    query_cat: usize,
    query_day: i64,
    query_us: i64,
    revoke_at_us: Option<i64>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=3),
        0i64..48,
        proptest::option::of(1i64..48),
        proptest::option::of(0i64..400),
        proptest::option::of(0i64..400),
        0usize..4,
        -50i64..900,
        0i64..(120 * 3_600_000_000),
        proptest::option::of(0i64..(120 * 3_600_000_000)),
    )
        .prop_map(
            |(
                cats,
                from_h,
                len_h,
                data_from,
                data_len,
                query_cat,
                query_day,
                query_us,
                revoke_at_us,
            )| Case {
                cats,
                from_h,
                len_h,
                data_from,
                data_len,
                query_cat,
                query_day,
                query_us,
                revoke_at_us,
            },
        )
}

fn base() -> DateTime<Utc> {
    t(0)
}

fn day0() -> NaiveDate {
    d(2024, 1, 1)
}

fn build(c: &Case) -> ConsentTerms {
    let valid_from = base() + Duration::hours(c.from_h);
    let data_from = c.data_from.map(|n| day0() + Duration::days(n));
    let data_until = match (data_from, c.data_len) {
        (Some(f), Some(n)) => Some(f + Duration::days(n)),
        (None, Some(n)) => Some(day0() + Duration::days(n)),
        _ => None,
    };
    ConsentTerms {
        categories: c.cats.iter().map(|i| CATEGORIES[*i].to_owned()).collect(),
        valid_from,
        valid_until: c.len_h.map(|h| valid_from + Duration::hours(h)),
        data_period: DataPeriod {
            from: data_from,
            until: data_until,
        },
        ..terms()
    }
}

async fn check(c: Case) -> Result<(), TestCaseError> {
    let store = SqliteStore::memory().await.unwrap();
    let (mut consent, _) = store.grant(build(&c), PEPPER, base()).await.unwrap();
    if let Some(at) = c.revoke_at_us {
        let req = RevocationRequest {
            by: RevokedBy::Resident,
            actor: "p".into(),
            reason: "p".into(),
        };
        match store
            .revoke(&consent.id, &req, base() + Duration::microseconds(at))
            .await
        {
            Ok(revoked) => consent = revoked,
            Err(e) => prop_assert_eq!(
                consent.effective_status(base() + Duration::microseconds(at)),
                Status::Expired,
                "{}",
                e
            ),
        }
    }
    let category = CATEGORIES[c.query_cat];
    let date = day0() + Duration::days(c.query_day);
    let now = base() + Duration::microseconds(c.query_us);
    let query = CoverQuery {
        subject: SUBJECT,
        recipient: RECIPIENT,
        category,
        effective_date: date,
    };
    let found = store.active_covering(&query, now).await.unwrap();
    let model = consent.covers(category, date, now);
    prop_assert_eq!(found.len(), usize::from(model), "store and model disagree");
    if consent.status == Status::Revoked {
        prop_assert!(!model, "a revoked consent covers");
    }
    if let Some(until) = consent.terms.valid_until {
        prop_assert!(
            !consent.covers(category, date, until),
            "covers at the exact expiry instant"
        );
        let at_expiry = store.active_covering(&query, until).await.unwrap();
        prop_assert!(at_expiry.is_empty());
    }
    if !consent.terms.categories.iter().any(|k| k == category) {
        prop_assert!(
            !model,
            "category {} covered by {:?}",
            category,
            consent.terms.categories
        );
    }
    if consent.terms.data_period.from.is_some_and(|f| date < f)
        || consent.terms.data_period.until.is_some_and(|u| date > u)
    {
        prop_assert!(
            !model,
            "date {} outside {:?} covered",
            date,
            consent.terms.data_period
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_coverage_matches_the_model(c in case()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(c))?;
    }
}
