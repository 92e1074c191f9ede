//! Issue 20, insurers with the real binaries: an insurer (here a 国保 as recipient) that
//! must provide 特定保健指導 receives, under a `health-guidance` consent, the checkup's
//! judgement, body measurements and questionnaire and the guidance record the agent read
//! from the archive's `hg08` documents (plan, progress, outcome), and nothing else; a
//! `health-guidance` consent that asks for lipids, and any other purpose for the
//! insurer, is refused by the policies.

use std::collections::BTreeSet;

use renkei_e2e::flow::{self, field};
use renkei_e2e::{APP, Backend, Basic};

/// The insurer.
const INSURER: &str = "insurer:osaka-kokuho";

/// What 特定保健指導 needs of a checkup, and the guidance record itself.
const GUIDANCE: [&str; 6] = [
    "checkup.judgement",
    "checkup.body",
    "checkup.questionnaire",
    "guidance.plan",
    "guidance.progress",
    "guidance.outcome",
];

async fn refused(b: &Basic, purpose: &str, categories: &[&str], policy: &str) {
    let out = flow::try_grant(
        &b.scene,
        APP,
        &b.pseudonym,
        INSURER,
        purpose,
        categories,
        &["--valid-hours", "720"],
    )
    .await
    .unwrap();
    flow::assert_refused(&out, policy);
}

async fn insurers(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, INSURER], None).await.unwrap() else {
        return;
    };
    // Resident #1's records of the three categories, which the insurer should get.
    let lines: Vec<_> = b
        .preview
        .iter()
        .filter(|l| field(l, "subject_token") == b.token.as_str())
        .filter(|l| {
            field(l, "category")
                .as_str()
                .is_some_and(|c| GUIDANCE.contains(&c))
        })
        .collect();
    let present: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| field(l, "category").as_str())
        .collect();
    assert!(
        present.contains("checkup.body")
            && present.contains("checkup.judgement")
            && present.contains("guidance.plan")
            && present.contains("guidance.outcome"),
        "resident #1 lacks guidance records: {present:?}"
    );

    refused(
        &b,
        "health-guidance",
        &["checkup.body", "checkup.lipids"],
        "no policy lets",
    )
    .await;
    refused(&b, "phr-display", &["checkup.body"], "no policy lets").await;

    let ok = flow::try_grant(
        &b.scene,
        APP,
        &b.pseudonym,
        INSURER,
        "health-guidance",
        &GUIDANCE,
        &["--valid-hours", "720"],
    )
    .await
    .unwrap();
    assert!(ok.status.success(), "{ok}");
    let want: BTreeSet<String> = lines
        .iter()
        .map(|l| flow::copy_id(&b.scene, INSURER, field(l, "record_id").as_str().unwrap()).unwrap())
        .collect();
    let out = b.scene.member(INSURER).unwrap().dir.join("data");
    let pulled = flow::pull_until(&b.scene, INSURER, &out, &want)
        .await
        .unwrap();
    // Exactly those records: no lipids, glucose or any other result of the checkup.
    assert_eq!(pulled.keys().cloned().collect::<BTreeSet<_>>(), want);
    // The 3-month evaluation arrived with its guidance item code; the course name (free
    // text, which may name the resident) stayed inside LGWAN.
    let all: String = pulled.values().map(|p| p.payload.to_string()).collect();
    assert!(all.contains("urn:oid:1.2.392.200119.6.1006"), "{all}");
    assert!(all.contains("\"1042001032\""), "no 3か月後の体重");
    assert!(!all.contains("1020000003") && !all.contains("生活改善コース"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insurers_sqlite() {
    insurers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insurers_postgres() {
    insurers(Backend::Postgres).await;
}
