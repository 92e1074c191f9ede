//! Ledger tampering: edited, deleted, unlinked and truncated entries are found, and
//! the first bad seq is named. Runs against both backends.

use renkei_consent::{
    AnyConsentStore, ChainHead, ConsentStore, Error, RevocationRequest, RevokedBy,
};

use crate::support::{PEPPER, exec, t, terms};

crate::both_backends!(
    clean_chain_verifies,
    edited_entry_is_named,
    deleted_entry_is_named,
    relinked_entry_is_named,
    column_tampering_is_caught,
    truncation_needs_the_recorded_head,
    rewritten_history_differs_from_head,
);

/// Five entries: grants at seq 1, 2, 3, a revocation at 4, a grant at 5.
async fn five_entries(s: &AnyConsentStore) -> ChainHead {
    let mut first = None;
    for _ in 0..3 {
        let (c, _) = s.grant(terms(), PEPPER, t(7)).await.unwrap();
        first.get_or_insert(c.id);
    }
    let req = RevocationRequest {
        by: RevokedBy::Admin,
        actor: "admin:ops".into(),
        reason: "test".into(),
    };
    s.revoke(&first.unwrap(), &req, t(9)).await.unwrap();
    s.grant(terms(), PEPPER, t(10)).await.unwrap();
    let head = s.head().await.unwrap().unwrap();
    assert_eq!(head.seq, 5);
    head
}

fn first_bad(result: renkei_consent::Result<renkei_consent::ChainReport>) -> (i64, String) {
    match result {
        Err(Error::Chain(e)) => (e.first_bad_seq, e.reason),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

async fn clean_chain_verifies(s: &AnyConsentStore) {
    let head = five_entries(s).await;
    let report = s.verify_chain(Some(&head)).await.unwrap();
    assert_eq!((report.entries, report.head), (5, Some(head)));
}

async fn edited_entry_is_named(s: &AnyConsentStore) {
    five_entries(s).await;
    let n = exec(s, "UPDATE consent_ledger SET entry_json = REPLACE(entry_json, 'phr-display', 'health-points') WHERE seq = 2").await;
    assert_eq!(n, 1);
    let (seq, reason) = first_bad(s.verify_chain(None).await);
    assert_eq!(seq, 2);
    assert!(reason.contains("hash does not match"), "{reason}");
}

async fn deleted_entry_is_named(s: &AnyConsentStore) {
    five_entries(s).await;
    assert_eq!(exec(s, "DELETE FROM consent_ledger WHERE seq = 3").await, 1);
    let (seq, reason) = first_bad(s.verify_chain(None).await);
    assert_eq!(seq, 3);
    assert!(reason.contains("missing"), "{reason}");
}

async fn relinked_entry_is_named(s: &AnyConsentStore) {
    five_entries(s).await;
    // A forged hash, then a row copied from elsewhere: both are named at seq 2. (The
    // forged hash differs in its first byte whatever the hash was: a plain `'ff'` left a
    // hash that starts with ff unchanged, one run in 256.)
    exec(
        s,
        "UPDATE consent_ledger SET hash = CASE WHEN SUBSTR(hash, 1, 2) = 'ff' THEN '00' \
         ELSE 'ff' END || SUBSTR(hash, 3) WHERE seq = 2",
    )
    .await;
    let (seq, reason) = first_bad(s.verify_chain(None).await);
    assert_eq!(seq, 2, "{reason}");
    exec(s, "UPDATE consent_ledger SET hash = (SELECT hash FROM consent_ledger WHERE seq = 1) WHERE seq = 2").await;
    exec(s, "UPDATE consent_ledger SET entry_json = (SELECT entry_json FROM consent_ledger WHERE seq = 1), prev_hash = (SELECT prev_hash FROM consent_ledger WHERE seq = 1) WHERE seq = 2").await;
    let (seq, reason) = first_bad(s.verify_chain(None).await);
    assert_eq!(seq, 2, "{reason}");
    assert!(reason.contains("prev_hash"), "{reason}");
}

async fn column_tampering_is_caught(s: &AnyConsentStore) {
    five_entries(s).await;
    exec(s, "UPDATE consent_ledger SET version = 7 WHERE seq = 4").await;
    let (seq, reason) = first_bad(s.verify_chain(None).await);
    assert_eq!(seq, 4);
    assert!(reason.contains("columns"), "{reason}");
}

async fn truncation_needs_the_recorded_head(s: &AnyConsentStore) {
    let head = five_entries(s).await;
    assert_eq!(
        exec(s, "DELETE FROM consent_ledger WHERE seq >= 4").await,
        2
    );
    assert_eq!(
        s.verify_chain(None).await.unwrap().entries,
        3,
        "a truncated chain is self-consistent"
    );
    let (seq, reason) = first_bad(s.verify_chain(Some(&head)).await);
    assert_eq!(seq, 4);
    assert!(reason.contains("truncated"), "{reason}");
}

async fn rewritten_history_differs_from_head(s: &AnyConsentStore) {
    let mut head = five_entries(s).await;
    head.hash = "00".repeat(32);
    let (seq, reason) = first_bad(s.verify_chain(Some(&head)).await);
    assert_eq!(seq, 5);
    assert!(reason.contains("rewritten"), "{reason}");
}
