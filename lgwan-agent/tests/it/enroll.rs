//! Enrollment answers without a hub: identifiers sealed as a PHR app seals them,
//! opened by the agent, and checked against the subjects its imports exported.

use chrono::TimeZone;
use lgwan_agent::agent::Agent;
use lgwan_agent::archive::{ArchiveItem, Limits, scan_archive};
use lgwan_agent::domain::PersonIdentity;
use lgwan_agent::enroll::{NO_MATCH, NOT_ONLINE, UNREADABLE, answer};
use lgwan_agent::import::import;
use lgwan_agent::outbox::Outbox;
use renkei_client::api::{Enrollment, EnrollmentResult};
use renkei_client::enroll::seal_identifiers;
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::participant::ParticipantId;

use crate::outbox::inputs;
use crate::preview::agent;
use crate::{TWINS, fixture};

fn request(sealed: &[u8], requester: &str) -> Enrollment {
    Enrollment {
        id: "e1".into(),
        user_ref: "user-1".into(),
        source: "source:city-mihon".into(),
        status: "pending".into(),
        pseudonym: None,
        reason: None,
        sealed: Some(data_encoding::BASE64.encode(sealed)),
        requester: requester.into(),
        expires_at: chrono::Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
    }
}

fn identity(person: &PersonIdentity) -> Identity {
    Identity {
        insurer_number: person.insurer.clone(),
        symbol: person.symbol.clone(),
        number: person.number.clone(),
        birth_date: person.birth.format("%Y-%m-%d").to_string(),
        sex: match person.sex {
            lgwan_agent::domain::Sex::Male => Sex::Male,
            lgwan_agent::domain::Sex::Female => Sex::Female,
        },
        branch: person.branch.clone(),
    }
}

/// Seals `id` as the app `phr:asmile` would, and asks the agent.
async fn ask(agent: &Agent, outbox: &Outbox, id: &Identity) -> EnrollmentResult {
    let me: ParticipantId = "phr:asmile".parse().unwrap();
    let key = agent.enrollment_key().public_key();
    let sealed = seal_identifiers(&key, &agent.config.source, &me, id).unwrap();
    answer(agent, outbox, &request(&sealed, "phr:asmile"))
        .await
        .unwrap()
}

fn rejected(reason: &str) -> EnrollmentResult {
    EnrollmentResult::Rejected {
        reason: reason.into(),
    }
}

/// The people of the twins archive who share a canonical identity with another
/// person of a different 枝番.
fn twins(agent: &Agent) -> Vec<PersonIdentity> {
    let mut all = Vec::new();
    scan_archive(&fixture(TWINS), &Limits::default(), &mut |item| {
        if let ArchiveItem::Checkup { document, .. } = item {
            all.push(document.identity.clone());
        }
    });
    let token = |p: &PersonIdentity| agent.tokenize(p).unwrap();
    all.iter()
        .filter(|p| {
            let (t, b) = token(p);
            all.iter().any(|q| {
                let (u, c) = token(q);
                t == u && b != c
            })
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn enrollment_links_only_known_unambiguous_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
    import(&agent, &outbox, &inputs(), &mut |_| {})
        .await
        .unwrap();

    // A person of the KDB care export (枝番 02), typed in full width by the resident.
    let person = Identity {
        insurer_number: "06131186".into(),
        symbol: "１０６－４７".into(),
        number: "９７８７５６０".into(),
        birth_date: "1963-01-03".into(),
        sex: Sex::Female,
        branch: Some("02".into()),
    };
    let (token, _) = agent.tokenize_identity(&person).unwrap();
    let linked = EnrollmentResult::Linked {
        subject_token: token.as_str().into(),
    };
    assert_eq!(ask(&agent, &outbox, &person).await, linked);
    let no_branch = Identity {
        branch: None,
        ..person.clone()
    };
    assert_eq!(ask(&agent, &outbox, &no_branch).await, linked);

    let wrong_branch = Identity {
        branch: Some("03".into()),
        ..person.clone()
    };
    assert_eq!(
        ask(&agent, &outbox, &wrong_branch).await,
        rejected(NO_MATCH)
    );
    let stranger = Identity {
        number: "9787561".into(),
        ..person.clone()
    };
    assert_eq!(ask(&agent, &outbox, &stranger).await, rejected(NO_MATCH));
    let malformed = Identity {
        insurer_number: "12".into(),
        ..person.clone()
    };
    assert_eq!(ask(&agent, &outbox, &malformed).await, rejected(UNREADABLE));

    // Twins: one canonical identity, two 枝番; never linked, whichever 枝番 is given.
    let twins = twins(&agent);
    assert!(twins.len() >= 2);
    for twin in &twins {
        assert_eq!(
            ask(&agent, &outbox, &identity(twin)).await,
            rejected(NOT_ONLINE)
        );
    }

    // Sealed for another app, or garbage: unreadable, nothing else said.
    let key = agent.enrollment_key().public_key();
    let other: ParticipantId = "phr:other".parse().unwrap();
    let sealed = seal_identifiers(&key, &agent.config.source, &other, &person).unwrap();
    let r = answer(&agent, &outbox, &request(&sealed, "phr:asmile"))
        .await
        .unwrap();
    assert_eq!(r, rejected(UNREADABLE));
    let r = answer(&agent, &outbox, &request(b"not hpke", "phr:asmile"))
        .await
        .unwrap();
    assert_eq!(r, rejected(UNREADABLE));
}

#[test]
fn the_daemon_future_can_be_spawned() {
    fn is_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&dir.path().join("agent"));
    let mut log = |_: String| {};
    let future = lgwan_agent::sync::run(&agent, std::future::pending(), &mut log);
    is_send(&future);
    let importing = async {
        let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
        import(&agent, &outbox, &[], &mut |_| {}).await.unwrap()
    };
    is_send(&importing);
}
