//! The store behaviour suite, run against both backends.

use renkei_consent::store::{postgres, sqlite};
use renkei_consent::{
    AnyConsentStore, ConsentStore, CoverQuery, Error, LedgerAction, Method, RevocationRequest,
    RevokedBy, Status,
};

use crate::support::{OTHER_SUBJECT, PEPPER, RECIPIENT, SUBJECT, d, micro, t, terms};

crate::both_backends!(
    grant_get_and_list,
    covering_query_boundaries,
    covering_inside_callers_transaction,
    revoke_appends_a_version,
    revoke_by_code_is_one_time,
    supersede_replaces_terms,
    changed_since_pages_by_recipient,
    invalid_terms_write_nothing,
);

fn req(by: RevokedBy) -> RevocationRequest {
    RevocationRequest {
        by,
        actor: "tester".into(),
        reason: "test".into(),
    }
}

fn q(category: &str) -> CoverQuery<'_> {
    CoverQuery {
        subject: SUBJECT,
        recipient: RECIPIENT,
        category,
        effective_date: d(2024, 6, 1),
    }
}

async fn grant_get_and_list(s: &AnyConsentStore) {
    let (c, receipt) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    assert_eq!(
        (c.version, c.status, c.granted_at),
        (1, Status::Active, t(7))
    );
    assert_eq!(c.terms.valid_from, t(8));
    assert_eq!(s.get(&c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(s.get("no-such-id").await.unwrap(), None);
    assert_eq!(receipt.consent_id, c.id);
    assert!(receipt.revocation_code.is_some());
    receipt.verify_against(&c).unwrap();
    let (c2, _) = s.grant(terms(), PEPPER, t(9)).await.unwrap();
    let mut other = terms();
    other.subject = OTHER_SUBJECT.into();
    s.grant(other, PEPPER, t(9)).await.unwrap();
    let listed = s.list_by_subject(SUBJECT).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [c.id.as_str(), c2.id.as_str()]
    );
    assert_eq!(s.history(&c.id).await.unwrap(), vec![c]);
    let report = s.verify_chain(None).await.unwrap();
    assert_eq!(report.entries, 3);
    assert_eq!(report.head, s.head().await.unwrap());
}

async fn covering_query_boundaries(s: &AnyConsentStore) {
    let (c, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let ids = |v: Vec<renkei_consent::Consent>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let one = vec![c.id.clone()];
    assert!(
        s.active_covering(&q("checkup.body"), t(8) - micro())
            .await
            .unwrap()
            .is_empty(),
        "before start"
    );
    assert_eq!(
        ids(s.active_covering(&q("checkup.body"), t(8)).await.unwrap()),
        one,
        "at start"
    );
    assert_eq!(
        ids(s
            .active_covering(&q("checkup.lipids"), t(20) - micro())
            .await
            .unwrap()),
        one
    );
    assert!(
        s.active_covering(&q("checkup.body"), t(20))
            .await
            .unwrap()
            .is_empty(),
        "at the expiry instant"
    );
    assert!(
        s.active_covering(&q("checkup.liver"), t(12))
            .await
            .unwrap()
            .is_empty(),
        "other category"
    );
    for (date, covered) in [
        (d(2024, 4, 1), true),
        (d(2025, 3, 31), true),
        (d(2024, 3, 31), false),
        (d(2025, 4, 1), false),
    ] {
        let query = CoverQuery {
            effective_date: date,
            ..q("checkup.body")
        };
        assert_eq!(
            s.active_covering(&query, t(12)).await.unwrap().len(),
            usize::from(covered),
            "date {date}"
        );
    }
    let other_recipient = CoverQuery {
        recipient: "clinic:tokyo-01",
        ..q("checkup.body")
    };
    assert!(
        s.active_covering(&other_recipient, t(12))
            .await
            .unwrap()
            .is_empty()
    );
    let other_subject = CoverQuery {
        subject: OTHER_SUBJECT,
        ..q("checkup.body")
    };
    assert!(
        s.active_covering(&other_subject, t(12))
            .await
            .unwrap()
            .is_empty()
    );
    // Expired consents can no longer be revoked.
    let err = s
        .revoke(&c.id, &req(RevokedBy::App), t(21))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotActive {
                status: Status::Expired,
                ..
            }
        ),
        "{err}"
    );
}

async fn covering_inside_callers_transaction(s: &AnyConsentStore) {
    let (c, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let found = match s {
        AnyConsentStore::Sqlite(st) => {
            let mut tx = st.pool().begin().await.unwrap();
            let v = sqlite::active_covering(&mut tx, &q("checkup.body"), t(12))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            v
        }
        AnyConsentStore::Postgres(st) => {
            let mut tx = st.pool().begin().await.unwrap();
            let v = postgres::active_covering(&mut tx, &q("checkup.body"), t(12))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            v
        }
    };
    assert_eq!(found, vec![c]);
}

async fn revoke_appends_a_version(s: &AnyConsentStore) {
    let (c, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let revoked = s
        .revoke(&c.id, &req(RevokedBy::Counter), t(10))
        .await
        .unwrap();
    assert_eq!((revoked.version, revoked.status), (2, Status::Revoked));
    let rev = revoked.revocation.clone().unwrap();
    assert_eq!(
        (rev.by, rev.actor.as_str(), rev.at, rev.reason.as_str()),
        (RevokedBy::Counter, "tester", t(10), "test")
    );
    assert!(
        s.active_covering(&q("checkup.body"), t(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.get(&c.id).await.unwrap(), Some(revoked.clone()));
    let history = s.history(&c.id).await.unwrap();
    assert_eq!(history, vec![c.clone(), revoked]);
    let again = s
        .revoke(&c.id, &req(RevokedBy::Admin), t(11))
        .await
        .unwrap_err();
    assert!(
        matches!(
            again,
            Error::NotActive {
                status: Status::Revoked,
                ..
            }
        ),
        "{again}"
    );
    assert!(matches!(
        s.revoke("missing", &req(RevokedBy::Admin), t(11)).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(s.verify_chain(None).await.unwrap().entries, 2);
}

async fn revoke_by_code_is_one_time(s: &AnyConsentStore) {
    let (c, receipt) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let code = receipt.revocation_code.unwrap().grouped().unwrap();
    let typed = code.replace('-', " ").to_lowercase();
    let wrong_pepper = s
        .revoke_by_code(&typed, b"other pepper", &req(RevokedBy::Resident), t(9))
        .await;
    assert!(matches!(wrong_pepper, Err(Error::UnknownCode)));
    assert!(matches!(
        s.revoke_by_code("not a code", PEPPER, &req(RevokedBy::Resident), t(9))
            .await,
        Err(Error::MalformedCode(_))
    ));
    let revoked = s
        .revoke_by_code(&typed, PEPPER, &req(RevokedBy::Resident), t(9))
        .await
        .unwrap();
    assert_eq!(
        (revoked.id.as_str(), revoked.status),
        (c.id.as_str(), Status::Revoked)
    );
    assert_eq!(revoked.revocation.map(|r| r.by), Some(RevokedBy::Resident));
    let reuse = s
        .revoke_by_code(&code, PEPPER, &req(RevokedBy::Resident), t(9))
        .await;
    assert!(matches!(reuse, Err(Error::CodeUsed)), "{reuse:?}");
    // A code whose consent was revoked by other means does not work either.
    let (c2, r2) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    s.revoke(&c2.id, &req(RevokedBy::App), t(9)).await.unwrap();
    let code2 = r2.revocation_code.unwrap().grouped().unwrap();
    assert!(matches!(
        s.revoke_by_code(&code2, PEPPER, &req(RevokedBy::Resident), t(10))
            .await,
        Err(Error::NotActive { .. })
    ));
}

async fn supersede_replaces_terms(s: &AnyConsentStore) {
    let (old, old_receipt) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let mut new_terms = terms();
    new_terms.categories = vec!["checkup.liver".into()];
    new_terms.method = Method::Counter;
    let (new, receipt) = s.supersede(&old.id, new_terms, PEPPER, t(9)).await.unwrap();
    assert_eq!(new.supersedes.as_deref(), Some(old.id.as_str()));
    assert_eq!(receipt.terms.supersedes.as_deref(), Some(old.id.as_str()));
    let old_now = s.get(&old.id).await.unwrap().unwrap();
    assert_eq!((old_now.version, old_now.status), (2, Status::Superseded));
    assert!(
        s.active_covering(&q("checkup.body"), t(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.active_covering(&q("checkup.liver"), t(10)).await.unwrap(),
        vec![new.clone()]
    );
    let old_code = old_receipt.revocation_code.unwrap().grouped().unwrap();
    assert!(matches!(
        s.revoke_by_code(&old_code, PEPPER, &req(RevokedBy::Resident), t(10))
            .await,
        Err(Error::NotActive {
            status: Status::Superseded,
            ..
        })
    ));
    let mut foreign = terms();
    foreign.recipient = "clinic:tokyo-01".into();
    assert!(matches!(
        s.supersede(&new.id, foreign, PEPPER, t(10)).await,
        Err(Error::InvalidTerms(_))
    ));
    assert!(matches!(
        s.supersede(&old.id, terms(), PEPPER, t(10)).await,
        Err(Error::NotActive { .. })
    ));
    assert_eq!(s.verify_chain(None).await.unwrap().entries, 3);
}

async fn changed_since_pages_by_recipient(s: &AnyConsentStore) {
    let (a, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    let mut clinic = terms();
    clinic.recipient = "clinic:tokyo-01".into();
    s.grant(clinic, PEPPER, t(7)).await.unwrap();
    let (b, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    s.revoke(&a.id, &req(RevokedBy::App), t(8)).await.unwrap();

    let (page, cursor) = s.changed_since(RECIPIENT, 0, 2).await.unwrap();
    let seen: Vec<_> = page
        .iter()
        .map(|e| (e.consent.id.clone(), e.action, e.seq))
        .collect();
    assert_eq!(
        seen,
        vec![
            (a.id.clone(), LedgerAction::Grant, 1),
            (b.id.clone(), LedgerAction::Grant, 3)
        ]
    );
    assert_eq!(cursor, 3);
    let (page, cursor) = s.changed_since(RECIPIENT, cursor, 2).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        (page[0].action, page[0].consent.status, page[0].seq),
        (LedgerAction::Revoke, Status::Revoked, 4)
    );
    let (page, same) = s.changed_since(RECIPIENT, cursor, 2).await.unwrap();
    assert!(page.is_empty());
    assert_eq!(same, cursor);
    let (clinic_page, _) = s.changed_since("clinic:tokyo-01", 0, 10).await.unwrap();
    assert_eq!(clinic_page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
}

async fn invalid_terms_write_nothing(s: &AnyConsentStore) {
    let mut bad = terms();
    bad.subject = "st1_TOO_SHORT".into();
    assert!(matches!(
        s.grant(bad, PEPPER, t(7)).await,
        Err(Error::InvalidSubject(_))
    ));
    let mut bad = terms();
    bad.recipient = "vendor:x".into();
    assert!(matches!(
        s.grant(bad, PEPPER, t(7)).await,
        Err(Error::InvalidParticipant(_))
    ));
    let mut bad = terms();
    bad.valid_until = Some(t(8));
    assert!(matches!(
        s.grant(bad, PEPPER, t(7)).await,
        Err(Error::InvalidTerms(_))
    ));
    assert_eq!(s.head().await.unwrap(), None);
    assert_eq!(s.verify_chain(None).await.unwrap().entries, 0);
}

#[tokio::test]
async fn any_store_connects_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let url = format!("sqlite:{}", path.display());
    let s = AnyConsentStore::connect(&url).await.unwrap();
    assert!(matches!(s, AnyConsentStore::Sqlite(_)));
    let (c, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
    drop(s);
    // Reopening the same file finds the consent (the migrations are idempotent).
    let again = AnyConsentStore::connect(&url).await.unwrap();
    assert_eq!(again.get(&c.id).await.unwrap().map(|c| c.id), Some(c.id));
    assert!(AnyConsentStore::connect("sqlite::memory:").await.is_ok());
    let err = AnyConsentStore::connect("mysql://user:secret@host/db")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidDatabaseUrl));
    assert!(!err.to_string().contains("secret"));
}
