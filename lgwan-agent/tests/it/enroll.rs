//! Enrollment answers without a hub: identifiers (and the one-time code staff issued)
//! sealed as a PHR app seals them, opened by the agent, checked against the subjects
//! its imports exported and the codes it issued. Every refusal is the same answer.

use chrono::{DateTime, Duration, TimeZone, Utc};
use lgwan_agent::agent::Agent;
use lgwan_agent::archive::{ArchiveItem, Limits, scan_archive};
use lgwan_agent::domain::PersonIdentity;
use lgwan_agent::enroll::code::{EnrollmentCode, IssuedCode, issue};
use lgwan_agent::enroll::{Answered, REFUSED, answer, refused};
use lgwan_agent::import::import;
use lgwan_agent::outbox::Outbox;
use renkei_client::api::{Enrollment, EnrollmentResult};
use renkei_client::enroll::{Claim, seal_claim};
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::statement::Signed;

use crate::outbox::inputs;
use crate::preview::agent;
use crate::{TWINS, fixture};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap()
}

fn request(id: &str, sealed: &[u8], requester: &str) -> Enrollment {
    Enrollment {
        id: id.into(),
        user_ref: "user-1".into(),
        source: "source:city-mihon".into(),
        status: "pending".into(),
        pseudonym: None,
        reason: None,
        sealed: Some(data_encoding::BASE64.encode(sealed)),
        requester: requester.into(),
        expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
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

/// A person of the KDB care export (枝番 02), typed in full width by the resident.
fn person() -> Identity {
    Identity {
        insurer_number: "06131186".into(),
        symbol: "１０６－４７".into(),
        number: "９７８７５６０".into(),
        birth_date: "1963-01-03".into(),
        sex: Sex::Female,
        branch: Some("02".into()),
    }
}

/// An agent with the fixtures imported, pinning the test CA (`[hub] ca`), against which
/// it checks the apps' signatures on their claims.
async fn imported(dir: &std::path::Path) -> (Agent, Outbox) {
    let plain = agent(&dir.join("agent"));
    let config = plain.config.path.clone();
    let (cert, key) = crate::issue::issue_client(dir, "source:city-mihon");
    let hub = format!(
        "\n[hub]\nurl = \"https://127.0.0.1:9\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        crate::daemon::pki("ca.pem").display(),
        cert.display(),
        key.display()
    );
    let text = std::fs::read_to_string(&config).unwrap() + &hub;
    std::fs::write(&config, text).unwrap();
    let agent = Agent::load(&config).unwrap();
    let outbox = Outbox::open(&agent.config.outbox).await.unwrap();
    import(&agent, &outbox, &inputs(), &mut |_| {})
        .await
        .unwrap();
    (agent, outbox)
}

/// A PHR app asking the agent: seals `id` (and `code`) as `app` would.
struct App<'a> {
    agent: &'a Agent,
    outbox: &'a Outbox,
    app: &'a str,
    n: std::cell::Cell<u32>,
}

impl App<'_> {
    fn new<'a>(agent: &'a Agent, outbox: &'a Outbox, app: &'a str) -> App<'a> {
        App {
            agent,
            outbox,
            app,
            n: std::cell::Cell::new(0),
        }
    }

    fn sealed(&self, id: &Identity, code: Option<&str>) -> Vec<u8> {
        self.sealed_at(self.app, id, code, Some(t0()))
    }

    /// Sealed for this app, signed with a certificate of `signer`.
    fn sealed_by(&self, signer: &str, id: &Identity, code: Option<&str>) -> Vec<u8> {
        self.sealed_at(signer, id, code, Some(t0()))
    }

    /// Sealed for this app by `signer`, the claim made at `at`.
    fn sealed_at(
        &self,
        signer: &str,
        id: &Identity,
        code: Option<&str>,
        at: Option<DateTime<Utc>>,
    ) -> Vec<u8> {
        let me: ParticipantId = self.app.parse().unwrap();
        let key = self.agent.enrollment_key().public_key();
        let mut claim = Claim::new(id.clone(), code).unwrap();
        claim.issued_at = at;
        let dir = tempfile::tempdir().unwrap();
        let (cert, cert_key) = crate::issue::issue_client(dir.path(), signer);
        seal_claim(&key, &self.agent.config.source, &me, &claim, |bytes| {
            Ok(Signed::make(&cert, &cert_key, |_| bytes.to_vec()).unwrap())
        })
        .unwrap()
    }

    async fn ask_at(&self, id: &Identity, code: Option<&str>, now: DateTime<Utc>) -> Answered {
        self.n.set(self.n.get() + 1);
        let rid = format!("{}-{}", self.app, self.n.get());
        let r = request(
            &rid,
            &self.sealed_at(self.app, id, code, Some(now)),
            self.app,
        );
        answer(self.agent, self.outbox, &r, now).await.unwrap()
    }

    async fn ask(&self, id: &Identity, code: Option<&str>) -> Answered {
        self.ask_at(id, code, t0()).await
    }
}

fn linked(agent: &Agent, id: &Identity) -> EnrollmentResult {
    EnrollmentResult::Linked {
        subject_token: agent.tokenize_identity(id).unwrap().0.as_str().into(),
    }
}

async fn issued(agent: &Agent, outbox: &Outbox, id: &Identity, now: DateTime<Utc>) -> String {
    let IssuedCode { code, .. } = issue(agent, outbox, id, now).await.unwrap();
    code.grouped().to_string()
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
async fn a_code_links_a_known_resident_once_and_every_refusal_looks_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let app = App::new(&agent, &outbox, "phr:asmile");
    let code = issued(&agent, &outbox, &person, t0()).await;

    // What an app may send wrong; each refused, each for its own reason (kept inside).
    let mut seen = Vec::new();
    let mut expect_refused = |a: Answered, why: &str| {
        assert_eq!(a.result, refused(), "{why}");
        assert_eq!(a.refusal, Some(why));
        seen.push(why.to_owned());
    };
    expect_refused(app.ask(&person, None).await, "no-code");
    let other = EnrollmentCode::generate().grouped().to_string();
    expect_refused(app.ask(&person, Some(other.as_str())).await, "wrong-code");
    expect_refused(app.ask(&person, Some("not a code")).await, "wrong-code");
    let wrong_branch = Identity {
        branch: Some("03".into()),
        ..person.clone()
    };
    expect_refused(
        app.ask(&wrong_branch, Some(code.as_str())).await,
        "wrong-branch",
    );
    let stranger = Identity {
        number: "9787561".into(),
        ..person.clone()
    };
    expect_refused(
        app.ask(&stranger, Some(code.as_str())).await,
        "unknown-identity",
    );
    let malformed = Identity {
        insurer_number: "12".into(),
        ..person.clone()
    };
    expect_refused(app.ask(&malformed, Some(code.as_str())).await, "unreadable");
    let twins = twins(&agent);
    assert!(twins.len() >= 2);
    for twin in &twins {
        let e = issue(&agent, &outbox, &identity(twin), t0())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("counter"), "{e}");
        expect_refused(
            app.ask(&identity(twin), Some(code.as_str())).await,
            "shared-identity",
        );
    }

    // The right code, typed loosely, with or without the 枝番: linked, once.
    let typed = code.to_lowercase().replace('-', " ");
    let no_branch = Identity {
        branch: None,
        ..person.clone()
    };
    let first = app.ask(&no_branch, Some(typed.as_str())).await;
    assert_eq!(first.result, linked(&agent, &person));
    assert_eq!(first.refusal, None);
    expect_refused(app.ask(&person, Some(code.as_str())).await, "used-code");
    let other_app = App::new(&agent, &outbox, "phr:kenko");
    let again = other_app.ask(&person, Some(code.as_str())).await;
    assert_eq!(again.result, refused());

    // Sealed for another app, or garbage: the same refusal.
    let sealed = App::new(&agent, &outbox, "phr:other").sealed(&person, Some(code.as_str()));
    let r = answer(
        &agent,
        &outbox,
        &request("x-1", &sealed, "phr:asmile"),
        t0(),
    )
    .await
    .unwrap();
    expect_refused(r, "unreadable");
    let r = answer(
        &agent,
        &outbox,
        &request("x-2", b"not hpke", "phr:asmile"),
        t0(),
    )
    .await
    .unwrap();
    expect_refused(r, "unreadable");

    // The app sees one reason only; the agent knows each.
    let EnrollmentResult::Rejected { reason } = refused() else {
        unreachable!()
    };
    assert_eq!(reason, REFUSED);
    let status = outbox
        .enrollment_status(t0().timestamp(), 20)
        .await
        .unwrap();
    assert_eq!(status.linked, 1);
    assert_eq!((status.codes_active, status.codes_used), (0, 1));
    for why in &seen {
        assert!(status.refused.iter().any(|(w, _)| w == why), "{why}");
    }
    outbox.close().await;
}

#[tokio::test]
async fn the_same_request_asked_again_gets_the_same_answer_and_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let app = App::new(&agent, &outbox, "phr:asmile");
    let code = issued(&agent, &outbox, &person, t0()).await;
    let r = request(
        "e-1",
        &app.sealed(&person, Some(code.as_str())),
        "phr:asmile",
    );
    let first = answer(&agent, &outbox, &r, t0()).await.unwrap();
    assert_eq!(first.result, linked(&agent, &person));
    // The answer did not reach the hub: asked again, the code is not "used" for it.
    let second = answer(&agent, &outbox, &r, t0()).await.unwrap();
    assert_eq!(second.result, first.result);
    // Another request under the same id is not taken for the first.
    let other = request("e-1", &app.sealed(&person, None), "phr:asmile");
    assert_eq!(
        answer(&agent, &outbox, &other, t0()).await.unwrap().result,
        refused()
    );

    let bad = request("e-2", &app.sealed(&person, None), "phr:asmile");
    for _ in 0..3 {
        assert_eq!(
            answer(&agent, &outbox, &bad, t0()).await.unwrap().result,
            refused()
        );
    }
    let status = outbox
        .enrollment_status(t0().timestamp(), 20)
        .await
        .unwrap();
    assert_eq!(status.refused, vec![("no-code".to_owned(), 1)]);
    outbox.close().await;
}

/// A hub replaying one failed claim under new ids cannot lock the resident out: the
/// same sealed claim is judged once.
#[tokio::test]
async fn a_claim_replayed_under_new_ids_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    issued(&agent, &outbox, &person, t0()).await;
    let app = App::new(&agent, &outbox, "phr:asmile");
    let wrong = app.sealed(&person, Some(EnrollmentCode::generate().grouped().as_str()));
    for i in 0..agent.config.enrollment.max_failures + 2 {
        let r = request(&format!("e-{i}"), &wrong, "phr:asmile");
        let a = answer(&agent, &outbox, &r, t0()).await.unwrap();
        assert_eq!(a.result, refused());
        assert!(a.locked.is_none(), "locked by replay {i}");
    }
    let status = outbox
        .enrollment_status(t0().timestamp(), 20)
        .await
        .unwrap();
    assert!(status.locked.is_empty());
    outbox.close().await;
}

#[tokio::test]
async fn codes_expire_and_a_new_code_replaces_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let app = App::new(&agent, &outbox, "phr:asmile");
    let old = issued(&agent, &outbox, &person, t0()).await;
    let days = i64::from(agent.config.enrollment.code_valid_days);
    assert_eq!(days, 90);
    let late = t0() + Duration::days(days);
    let a = app.ask_at(&person, Some(old.as_str()), late).await;
    assert_eq!((a.result, a.refusal), (refused(), Some("expired-code")));

    let issued_code = issue(&agent, &outbox, &person, late).await.unwrap();
    assert_eq!(issued_code.expires_at, late + Duration::days(90));
    assert!(issued_code.subject_known);
    let new = issued_code.code.grouped().to_string();
    let replaced = issued(&agent, &outbox, &person, late).await;
    let a = app.ask_at(&person, Some(new.as_str()), late).await;
    assert_eq!(a.refusal, Some("wrong-code"), "replaced by the next code");
    let a = app
        .ask_at(
            &person,
            Some(replaced.as_str()),
            late + Duration::days(days) - Duration::seconds(1),
        )
        .await;
    assert_eq!(a.result, linked(&agent, &person));
    outbox.close().await;
}

#[tokio::test]
async fn a_resident_is_locked_after_repeated_failures_until_a_new_code() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let code = issued(&agent, &outbox, &person, t0()).await;
    let max = agent.config.enrollment.max_failures;
    assert_eq!(max, 5);
    // Failures from several apps (each under its own hourly limit) add up per resident.
    for i in 0..max {
        let app = format!("phr:app{i}");
        let a = App::new(&agent, &outbox, &app)
            .ask(&person, Some(EnrollmentCode::generate().grouped().as_str()))
            .await;
        assert_eq!(a.result, refused());
        assert_eq!(a.locked.is_some(), i + 1 == max, "attempt {i}");
    }
    let token = agent.tokenize_identity(&person).unwrap().0;
    let status = outbox
        .enrollment_status(t0().timestamp(), 20)
        .await
        .unwrap();
    assert_eq!(status.locked.len(), 1);
    assert_eq!(status.locked[0].subject, token.as_str());
    assert_eq!(status.locked[0].last_app, "phr:app4");
    // Locked: even the right code is refused, the same way.
    let app = App::new(&agent, &outbox, "phr:asmile");
    let a = app.ask(&person, Some(code.as_str())).await;
    assert_eq!((a.result, a.refusal), (refused(), Some("locked")));
    // Staff check with the resident and issue a new code: open again.
    let fresh = issue(&agent, &outbox, &person, t0()).await.unwrap();
    assert!(fresh.unlocked);
    assert_eq!(fresh.replaced, 1);
    let a = app.ask(&person, Some(fresh.code.grouped().as_str())).await;
    assert_eq!(a.result, linked(&agent, &person));
    let status = outbox
        .enrollment_status(t0().timestamp(), 20)
        .await
        .unwrap();
    assert!(status.locked.is_empty());
    outbox.close().await;
}

#[tokio::test]
async fn an_app_over_its_hourly_failures_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let limit = agent.config.enrollment.app_failures_per_hour;
    assert_eq!(limit, 20);
    let app = App::new(&agent, &outbox, "phr:asmile");
    for day in 0..limit {
        let guess = Identity {
            birth_date: format!("1963-02-{:02}", day + 1),
            ..person.clone()
        };
        let a = app.ask(&guess, None).await;
        assert_eq!(a.refusal, Some("unknown-identity"));
    }
    let code = issued(&agent, &outbox, &person, t0()).await;
    let a = app.ask(&person, Some(code.as_str())).await;
    assert_eq!((a.result, a.refusal), (refused(), Some("app-throttled")));
    let status = outbox
        .enrollment_status(t0().timestamp(), limit)
        .await
        .unwrap();
    assert_eq!(status.throttled_apps, vec!["phr:asmile".to_owned()]);
    // Another app is not affected, and the hour passes.
    let a = App::new(&agent, &outbox, "phr:kenko")
        .ask(
            &Identity {
                number: "1".into(),
                ..person.clone()
            },
            None,
        )
        .await;
    assert_eq!(a.refusal, Some("unknown-identity"));
    let later = t0() + Duration::minutes(61);
    let a = app.ask_at(&person, Some(code.as_str()), later).await;
    assert_eq!(a.result, linked(&agent, &person));
    outbox.close().await;
}

#[tokio::test]
async fn ninety_birth_date_guesses_link_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    // The card fields are known; the birth date is guessed, the right one among them.
    let birth = chrono::NaiveDate::from_ymd_opt(1963, 1, 3).unwrap();
    let app = App::new(&agent, &outbox, "phr:asmile");
    // The right date comes third: before the app's hourly limit, so only the missing
    // code stops it.
    for d in -2..88 {
        let guess = Identity {
            birth_date: (birth + Duration::days(d)).to_string(),
            branch: None,
            ..person.clone()
        };
        let a = app.ask(&guess, None).await;
        assert_eq!(a.result, refused(), "day {d}");
        if d == 0 {
            assert_eq!(a.refusal, Some("no-code"));
        }
    }
    let status = outbox
        .enrollment_status(t0().timestamp(), 20)
        .await
        .unwrap();
    assert_eq!(status.linked, 0);

    // Without the code requirement (a deployment that turned it off), the throttle
    // still stops a run of guesses after the hourly limit.
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, outbox) = imported(dir.path()).await;
    agent.config.enrollment.require_code = false;
    let app = App::new(&agent, &outbox, "phr:asmile");
    let mut links = 0;
    for d in (-45..45).rev() {
        let guess = Identity {
            birth_date: (birth + Duration::days(d)).to_string(),
            branch: None,
            ..person.clone()
        };
        if app.ask(&guess, None).await.refusal.is_none() {
            links += 1;
        }
    }
    assert_eq!(links, 0, "the right date came after the hourly limit");
    // With it off, the resident can still link without a code once the hour passed.
    let a = app
        .ask_at(&person, None, t0() + Duration::minutes(61))
        .await;
    assert_eq!(a.result, linked(&agent, &person));
    outbox.close().await;
}

#[tokio::test]
async fn a_code_is_only_for_the_resident_it_was_issued_for() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let app = App::new(&agent, &outbox, "phr:asmile");
    // Another resident of the main archive, with a code of their own.
    let mut people = Vec::new();
    scan_archive(&fixture(crate::MAIN), &Limits::default(), &mut |item| {
        if let ArchiveItem::Checkup { document, .. } = item {
            people.push(identity(&document.identity));
        }
    });
    let token = |id: &Identity| agent.tokenize_identity(id).unwrap().0;
    let someone = people
        .into_iter()
        .find(|p| token(p) != token(&person))
        .unwrap();
    let theirs = issued(&agent, &outbox, &someone, t0()).await;
    let a = app.ask(&person, Some(theirs.as_str())).await;
    assert_eq!((a.result, a.refusal), (refused(), Some("wrong-code")));
    let a = app.ask(&someone, Some(theirs.as_str())).await;
    assert_eq!(a.result, linked(&agent, &someone), "{:?}", a.refusal);
    outbox.close().await;
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

/// Whoever relays a request (the hub) cannot link an app's user: a claim sealed "from" an
/// app but signed by anyone else is refused, counted for `lgwan-agent status`, and spends
/// no code; the app's own claim with the same code then links.
#[tokio::test]
async fn a_claim_the_app_did_not_sign_links_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let code = issued(&agent, &outbox, &person, t0()).await;
    let app = App::new(&agent, &outbox, "phr:asmile");
    for (i, forger) in ["clinic:mysos", "source:city-mihon", "phr:kenko"]
        .into_iter()
        .enumerate()
    {
        let sealed = app.sealed_by(forger, &person, Some(code.as_str()));
        let r = answer(
            &agent,
            &outbox,
            &request(&format!("forged-{i}"), &sealed, "phr:asmile"),
            t0(),
        )
        .await
        .unwrap();
        assert_eq!(r.result, refused());
        assert_eq!(r.refusal, Some("unsigned-claim"));
    }
    let status = outbox.status().await.unwrap();
    assert_eq!(status.grant_refusals, 3);
    let last = status.last_refusal.unwrap().value;
    assert!(
        last.contains("forged-2") && last.contains("signed by `phr:kenko`"),
        "{last}"
    );

    let genuine = app.ask(&person, Some(code.as_str())).await;
    assert_eq!(genuine.result, linked(&agent, &person));
}

/// A claim the hub kept and shows again later, or one without a time, links no one: the
/// app signs when it made the claim.
#[tokio::test]
async fn an_old_or_undated_claim_links_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, outbox) = imported(dir.path()).await;
    let person = person();
    let code = issued(&agent, &outbox, &person, t0()).await;
    let app = App::new(&agent, &outbox, "phr:asmile");
    let later = t0() + Duration::days(3);
    for (i, at) in [None, Some(t0()), Some(later + Duration::hours(1))]
        .into_iter()
        .enumerate()
    {
        let sealed = app.sealed_at("phr:asmile", &person, Some(code.as_str()), at);
        let r = answer(
            &agent,
            &outbox,
            &request(&format!("stale-{i}"), &sealed, "phr:asmile"),
            later,
        )
        .await
        .unwrap();
        assert_eq!(r.refusal, Some("stale-claim"), "claim made at {at:?}");
    }
    // The same claim made now links.
    let fresh = app.ask_at(&person, Some(code.as_str()), later).await;
    assert_eq!(fresh.refusal, None);
}
