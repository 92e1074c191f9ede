//! Web enrollment is not guessable (issue 13, attack 5), with the real binaries: a PHR
//! app that knows a resident's card fields submits 90 birth-date guesses in a burst and
//! links no one; every refusal (unknown identity, no code, wrong code, an identity two
//! people share, a used code, a locked resident, a throttled app) reads the same to the
//! app; the one-time code staff issue with `lgwan-agent enrollment-code issue` links
//! once; `lgwan-agent status` tells staff what happened; the hub's database holds no
//! plain `user_ref`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use lgwan_agent::synth::{SynthOptions, SynthPerson, write_archive};
use renkei_client::api::Enrollment;
use renkei_client::enroll::{self, Claim};
use renkei_client::transport::HubClient;
use renkei_crypto::identity::{Identity, Sex};
use renkei_crypto::participant::ParticipantId;
use renkei_e2e::flow::issue_code;
use renkei_e2e::scene::SOURCE;
use renkei_e2e::{APP, Backend, Scene, SceneOptions};

const KENKO: &str = "phr:kenko";
const OTHER: &str = "phr:other";

fn identity(p: &SynthPerson) -> Identity {
    Identity {
        insurer_number: p.insurer_number.clone(),
        symbol: p.symbol.clone(),
        number: p.number.clone(),
        birth_date: p.birth_date.clone(),
        sex: if p.sex == lgwan_agent::domain::Sex::Female {
            Sex::Female
        } else {
            Sex::Male
        },
        branch: p.branch.clone(),
    }
}

/// An app of the scene, submitting through the client library.
struct App {
    id: ParticipantId,
    client: HubClient,
}

impl App {
    fn new(scene: &Scene, id: &str) -> App {
        App {
            id: id.parse().unwrap(),
            client: scene.hub_client(id, &scene.hub_url(), 5).unwrap(),
        }
    }

    async fn submit(&self, user_ref: &str, id: &Identity, code: Option<&str>) -> String {
        let claim = Claim::new(id.clone(), code).unwrap();
        let source: ParticipantId = SOURCE.parse().unwrap();
        enroll::submit(&self.client, &self.id, &source, user_ref, &claim)
            .await
            .unwrap()
            .id
    }

    /// Waits (at most 60 s) until the agent answered every one of `ids`.
    async fn answers(&self, ids: &[String]) -> Vec<Enrollment> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            loop {
                let e = self.client.get_enrollment(id).await.unwrap();
                if e.status != "pending" {
                    out.push(e);
                    break;
                }
                assert!(Instant::now() < deadline, "enrollment {id} still pending");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        out
    }

    async fn enroll(&self, user_ref: &str, id: &Identity, code: Option<&str>) -> Enrollment {
        let e = self.submit(user_ref, id, code).await;
        self.answers(&[e]).await.remove(0)
    }
}

/// What an app sees of an answer, without what differs per request by design (its id,
/// its `user_ref`, the app that asked, its expiry).
fn seen(e: &Enrollment) -> String {
    let mut v = serde_json::to_value(e).unwrap();
    let o = v.as_object_mut().unwrap();
    for per_request in ["id", "user_ref", "requester", "expires_at"] {
        o.remove(per_request);
    }
    v.to_string()
}

/// The plain-text files of a SQLite hub database (main file and WAL), or none.
fn sqlite_files(db_url: &str) -> Vec<Vec<u8>> {
    let Some(path) = db_url.strip_prefix("sqlite://") else {
        return Vec::new();
    };
    [path.to_owned(), format!("{path}-wal")]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

async fn guessing(backend: Backend) {
    let Some(scene) = Scene::new(&SceneOptions::new(backend, &[APP, KENKO, OTHER]), None)
        .await
        .unwrap()
    else {
        return;
    };
    let _hub = scene.start_hub().await.unwrap();
    let opts = SynthOptions {
        persons: 4,
        seed: 2026,
        exam_year: 2026,
        creation_date: "20260701".into(),
        twins: true,
        ..Default::default()
    };
    let input = scene.root().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let archive = input.join(opts.archive_name());
    let persons = write_archive(&archive, &opts).unwrap().identities;
    // Exit 2: the twins' records are refused (quarantined), the others imported.
    let import = scene
        .agent(&["import"], &[&archive.display().to_string()])
        .await
        .unwrap();
    assert_eq!(import.status.code(), Some(2), "{import}");
    assert!(import.stderr.contains("identity conflict"), "{import}");
    let _agent = scene.start_agent().unwrap();
    // Apps enroll only against the agent's signed enrollment key, published on its first round.
    scene.wait_source_keys().await.unwrap();
    // Person 0 has a twin (same card, birth date and sex; another 枝番); person 1 is the target.
    let twin = identity(&persons[0]);
    let target = &persons[1];
    let resident = identity(target);
    let birth = NaiveDate::parse_from_str(&target.birth_date, "%Y-%m-%d").unwrap();

    // 1. The attack: card fields known, 90 birth dates guessed in a burst, the right one
    //    third (before any limit could stop it).
    let attacker = App::new(&scene, APP);
    let started = Instant::now();
    let mut ids = Vec::new();
    for d in -2..88 {
        let guess = Identity {
            birth_date: (birth + chrono::Duration::days(d)).to_string(),
            branch: None,
            ..resident.clone()
        };
        ids.push(attacker.submit(&format!("guess-{d}"), &guess, None).await);
    }
    let burst = started.elapsed();
    let answers = attacker.answers(&ids).await;
    let mut views = BTreeSet::new();
    for e in &answers {
        assert_eq!(e.status, "rejected", "{e:?}");
        assert!(e.pseudonym.is_none());
        views.insert(seen(e));
    }
    eprintln!("90 guesses submitted in {burst:?}; none linked");

    // 2. Other refusals, from an app under its limit: each reads the same.
    let kenko = App::new(&scene, KENKO);
    let wrong = "AAAA-BBBB-CCCC";
    for (user_ref, id, code) in [
        ("k-no-code", &resident, None),
        ("k-wrong-code", &resident, Some(wrong)),
        ("k-not-a-code", &resident, Some("12345")),
        ("k-twin", &twin, None),
    ] {
        let e = kenko.enroll(user_ref, id, code).await;
        assert_eq!(e.status, "rejected", "{user_ref}: {e:?}");
        views.insert(seen(&e));
    }

    // 3. Staff issue a code (`lgwan-agent enrollment-code issue`): it links once.
    let code = issue_code(&scene, target).await.unwrap();
    let linked = kenko
        .enroll("k-resident", &resident, Some(code.as_str()))
        .await;
    assert_eq!(linked.status, "linked", "{linked:?}");
    assert!(linked.pseudonym.is_some());
    let again = App::new(&scene, OTHER)
        .enroll("o-reuse", &resident, Some(code.as_str()))
        .await;
    assert_eq!(again.status, "rejected");
    views.insert(seen(&again));

    // 4. Repeated failures lock the resident's web enrollment, even against the right
    //    code; staff see it in `status` and the agent's log.
    let fresh = issue_code(&scene, target).await.unwrap();
    let other = App::new(&scene, OTHER);
    for i in 0..5 {
        let e = other
            .enroll(&format!("o-{i}"), &resident, Some(wrong))
            .await;
        views.insert(seen(&e));
    }
    let locked = other
        .enroll("o-locked", &resident, Some(fresh.as_str()))
        .await;
    assert_eq!(locked.status, "rejected", "locked: even the right code");
    views.insert(seen(&locked));
    let status = scene.agent(&["status"], &[]).await.unwrap().ok().unwrap();
    let token = renkei_e2e::flow::token(&scene, target).await.unwrap();
    assert!(
        status.stdout.contains("locked:          1 residents"),
        "{status}"
    );
    assert!(status.stdout.contains(&token), "{status}");
    for why in [
        "no-code",
        "unknown-identity",
        "wrong-code",
        "shared-identity",
        "used-code",
        "locked",
        "app-throttled",
    ] {
        assert!(status.stdout.contains(why), "{why}: {status}");
    }
    assert!(status.stdout.contains(&format!("throttled apps:  {APP}")));
    let log_path = scene.root().join("agent.log");
    let wanted = format!("web enrollment of resident `{token}` is locked");
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains(&wanted) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(log.contains(&wanted), "{log}");
    assert!(
        !log.contains(&fresh) && !log.contains(&code),
        "a code in the log"
    );

    // 5. A new code reopens the resident. The throttled app's own user, with that valid
    //    code: refused unread too.
    let reopened = issue_code(&scene, target).await.unwrap();
    let status = scene.agent(&["status"], &[]).await.unwrap().ok().unwrap();
    assert!(
        status.stdout.contains("locked:          0 residents"),
        "{status}"
    );
    let throttled = attacker
        .enroll("a-resident", &resident, Some(reopened.as_str()))
        .await;
    assert_eq!(throttled.status, "rejected");
    views.insert(seen(&throttled));
    // ... while an app under its limit links with that code.
    let ok = kenko
        .enroll("k-again", &resident, Some(reopened.as_str()))
        .await;
    assert_eq!(ok.status, "linked", "{ok:?}");

    // Every refusal looked the same to the apps.
    assert_eq!(views.len(), 1, "refusals differ: {views:#?}");

    // 6. The hub keeps no plain user_ref (only keyed hashes; the answer to the
    //    submission echoes it, later views do not).
    assert!(linked.user_ref.starts_with("ur1_"), "{linked:?}");
    let rows = renkei_e2e::faults::hub_enrollment_user_refs(&scene.db_url)
        .await
        .unwrap();
    assert!(rows.len() >= 100);
    for (_, stored) in &rows {
        assert!(stored.starts_with("ur1_") && stored.len() == 36, "{stored}");
    }
    for file in sqlite_files(&scene.db_url) {
        let text = String::from_utf8_lossy(&file);
        for plain in ["guess-", "k-resident", "o-reuse", "a-resident"] {
            assert!(
                !text.contains(plain),
                "`{plain}` in the hub's database file"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_links_no_one_sqlite() {
    guessing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_links_no_one_postgres() {
    guessing(Backend::Postgres).await;
}
