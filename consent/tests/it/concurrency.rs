//! Concurrent writers never fork the chain: several tasks grant and revoke at once.

use renkei_consent::{AnyConsentStore, ConsentStore, RevocationRequest, RevokedBy};

use crate::support::{PEPPER, t, terms};

crate::both_backends!(concurrent_writers_keep_one_chain);

const TASKS: usize = 6;
const PER_TASK: usize = 5;

async fn concurrent_writers_keep_one_chain(s: &AnyConsentStore) {
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = s.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let (c, _) = store.grant(terms(), PEPPER, t(7)).await.unwrap();
                if (task + i) % 2 == 0 {
                    let req = RevocationRequest {
                        by: RevokedBy::App,
                        actor: format!("task-{task}"),
                        reason: "x".into(),
                    };
                    store.revoke(&c.id, &req, t(8)).await.unwrap();
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let revokes = (0..TASKS)
        .flat_map(|t| (0..PER_TASK).map(move |i| (t + i) % 2 == 0))
        .filter(|r| *r)
        .count();
    let expected = (TASKS * PER_TASK + revokes) as u64;
    let report = s.verify_chain(None).await.unwrap();
    assert_eq!(report.entries, expected);
    assert_eq!(report.head.map(|h| h.seq), Some(expected as i64));
}
