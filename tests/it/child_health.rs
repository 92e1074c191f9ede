//! Issue 20, child-health follow-up with the real binaries (Kids Public × 府中市): the
//! consultation service's app publishes what it saw (`consult.child-health`: follow-up
//! flag, reason, district); the family consents in the app to the city's
//! `child-health-followup`; the city's municipality pulls the note and checkup data under
//! its own pseudonym; only the city's own LGWAN
//! agent can turn that pseudonym back into the resident (`lgwan-agent resolve`), audited
//! at the hub and noted beside the outbox. A pseudonym of another recipient, or one whose
//! consent was revoked, resolves to nothing.

use std::collections::BTreeSet;

use renkei_e2e::flow::{self, field};
use renkei_e2e::scene::SOURCE;
use renkei_e2e::{APP, Backend, Basic};

/// The city as a recipient: the same id as its agent, `source:city-a`.
const CITY: &str = "municipality:city-a";

async fn child_health(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, CITY], None).await.unwrap() else {
        return;
    };
    assert_eq!(
        SOURCE.split_once(':').unwrap().1,
        CITY.split_once(':').unwrap().1
    );
    // The consultation service publishes its note and answers key grants for it.
    let app_dir = b.scene.member(APP).unwrap().dir.clone();
    let note = app_dir.join("consult-0001.json");
    let today = chrono::Utc::now().date_naive();
    std::fs::write(
        &note,
        renkei_client::phr::child_health_bundle(
            today,
            &renkei_client::phr::ChildHealthNote {
                follow_up: true,
                reason: "育児不安".into(),
                district: "第三地区".into(),
            },
        ),
    )
    .unwrap();
    let published = b
        .scene
        .client(
            APP,
            &[
                "publish",
                "--subject",
                &b.pseudonym,
                "--category",
                "consult.child-health",
                "--date",
                &today.to_string(),
                &note.display().to_string(),
            ],
        )
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(published.stdout.contains("\"accepted\": 1"), "{published}");
    let mut serve = renkei_e2e::proc::command("renkei-client").unwrap();
    serve
        .arg("--config")
        .arg(b.scene.member(APP).unwrap().config())
        .args(["serve-grants", "--interval", "1"]);
    let _serve_grants = renkei_e2e::proc::Background::spawn(
        "renkei-client serve-grants",
        &mut serve,
        &b.scene.root().join("serve-grants.log"),
    )
    .unwrap();

    // The family consents in the app, for a year.
    let granted = flow::try_grant(
        &b.scene,
        APP,
        &b.pseudonym,
        CITY,
        "child-health-followup",
        &["checkup.body", "consult.child-health"],
        &[
            "--valid-hours",
            "8760",
            "--granted-by",
            "guardian",
            "--guardian",
            "parent",
        ],
    )
    .await
    .unwrap()
    .ok()
    .unwrap()
    .json()
    .unwrap();
    let consent_id = granted["consent"]["id"].as_str().unwrap().to_owned();
    // A parent consented for the child: recorded in the consent and on the signed receipt.
    assert_eq!(granted["consent"]["guardian"], "parent", "{granted}");
    assert_eq!(
        granted["receipt"]["terms"]["guardian"], "parent",
        "{granted}"
    );
    let want: BTreeSet<String> = b
        .preview
        .iter()
        .filter(|l| field(l, "subject_token") == b.token.as_str())
        .filter(|l| field(l, "category") == "checkup.body")
        .map(|l| flow::copy_id(&b.scene, CITY, field(l, "record_id").as_str().unwrap()).unwrap())
        .collect();
    assert!(!want.is_empty());
    let out = b.scene.member(CITY).unwrap().dir.join("data");
    // The checkup data and the consultation note, all under one pseudonym.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    let pulled = loop {
        let pulled = flow::pull_until(&b.scene, CITY, &out, &want).await.unwrap();
        if pulled
            .values()
            .any(|p| p.payload.to_string().contains("consult.child-health"))
        {
            break pulled;
        }
        assert!(std::time::Instant::now() < deadline, "no consultation note");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let note = pulled
        .values()
        .find(|p| p.payload.to_string().contains("consult.child-health"))
        .unwrap()
        .payload
        .to_string();
    assert!(
        note.contains("第三地区") && note.contains("育児不安"),
        "{note}"
    );
    let seen: BTreeSet<&str> = pulled.values().map(|p| p.pseudonym.as_str()).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let pseudonym = seen.into_iter().next().unwrap().to_owned();
    assert_ne!(pseudonym, b.pseudonym);

    let input = b.scene.root().join("input").display().to_string();
    let resolve = |p: String| {
        let scene = &b.scene;
        let input = input.clone();
        async move {
            scene
                .agent(&["resolve"], &["--staff", "hoken-07", "--in", &input, &p])
                .await
                .unwrap()
        }
    };
    let found = resolve(pseudonym.clone()).await;
    assert!(found.status.success(), "{found}");
    assert!(
        found.stdout.contains(&b.person.insurer_number)
            && found.stdout.contains(&b.person.number)
            && found.stdout.contains(&consent_id),
        "{found}"
    );
    // The app's pseudonym of the same resident is not the city's: nothing.
    let other = resolve(b.pseudonym.clone()).await;
    assert!(!other.status.success(), "{other}");
    assert!(
        other.stderr.contains("404") || other.stderr.contains("not found"),
        "{other}"
    );
    // Both lookups are noted inside LGWAN, without the identity.
    let notes = std::fs::read_to_string(b.scene.source.dir.join("resolutions.jsonl")).unwrap();
    assert_eq!(notes.lines().count(), 2, "{notes}");
    assert!(
        notes.contains("hoken-07")
            && notes.contains("\"found\"")
            && notes.contains("\"refused\"")
            && !notes.contains(&b.person.number),
        "{notes}"
    );

    // Once the family revokes, the city can no longer find them.
    b.scene
        .client(APP, &["consent", "revoke", &consent_id])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let after = resolve(pseudonym).await;
    assert!(!after.status.success(), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_health_sqlite() {
    child_health(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_health_postgres() {
    child_health(Backend::Postgres).await;
}
