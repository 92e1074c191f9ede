//! Issue 20, research with the real binaries (MySOS 疫学調査, a university's analysis of
//! アスマイル data): a `research` consent rests on a study an ethics committee approved,
//! registered at the hub with its one research institution and its period
//! (`internet-hub studies add`). Without one, for another institution's study, or reaching
//! past the study's end, the grant is refused; within it, the institution receives the
//! resident's records under its own pseudonym and nothing else.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Days, FixedOffset, Utc};
use renkei_e2e::flow::{self, field};
use renkei_e2e::proc::Output;
use renkei_e2e::{APP, Backend, Basic};
use serde_json::Value;

/// The research institution.
const UNIV: &str = "analyst:univ-research";

/// Another institution, registered at the hub only.
const OTHER: &str = "analyst:other-univ";

async fn hub_admin(b: &Basic, args: &[&str]) -> renkei_e2e::proc::Output {
    let mut cmd = b.scene.hub_admin(&[args[0]]).unwrap();
    cmd.args(&args[1..]);
    renkei_e2e::proc::run(&mut cmd, Duration::from_secs(60))
        .await
        .unwrap()
}

/// Registers `id` for `recipient` from `from_days` to `until_days` days from today
/// (Japan time).
async fn study(b: &Basic, id: &str, recipient: &str, from_days: i64, until_days: i64) {
    let today = Utc::now()
        .with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap())
        .date_naive();
    let day = |n: i64| {
        if n >= 0 {
            today.checked_add_days(Days::new(n.unsigned_abs()))
        } else {
            today.checked_sub_days(Days::new(n.unsigned_abs()))
        }
        .unwrap()
        .to_string()
    };
    let (from, until) = (day(from_days), day(until_days));
    let out = hub_admin(
        b,
        &[
            "studies",
            "add",
            id,
            "--recipient",
            recipient,
            "--committee",
            "大学医学部 倫理審査委員会",
            "--approval",
            "R-2026-0042",
            "--from",
            &from,
            "--until",
            &until,
        ],
    )
    .await;
    assert!(out.status.success(), "{out}");
}

/// `consent grant` for research by the app, with `extra` arguments; the output.
async fn grant(b: &Basic, categories: &[&str], extra: &[&str]) -> Output {
    flow::try_grant(
        &b.scene,
        APP,
        &b.pseudonym,
        UNIV,
        "research",
        categories,
        extra,
    )
    .await
    .unwrap()
}

async fn research(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, UNIV], None).await.unwrap() else {
        return;
    };
    let add_other = hub_admin(&b, &["participants", "add", OTHER]).await;
    assert!(add_other.status.success(), "{add_other}");
    let lines: Vec<&Value> = b
        .preview
        .iter()
        .filter(|l| field(l, "subject_token") == b.token.as_str())
        .filter(|l| field(l, "category") == "checkup.glucose")
        .collect();
    assert!(!lines.is_empty(), "resident #1 has no glucose record");
    let glucose = ["checkup.glucose"];
    const POLICY: &str = "research-needs-an-approved-study";

    // No study named, an unregistered one, or open-ended: refused by the policies.
    flow::assert_refused(
        &grant(&b, &glucose, &["--valid-hours", "240"]).await,
        POLICY,
    );
    flow::assert_refused(
        &grant(
            &b,
            &glucose,
            &["--valid-hours", "240", "--evidence", "study:nothing"],
        )
        .await,
        POLICY,
    );
    study(&b, "diabetes-2026", UNIV, -1, 20).await;
    flow::assert_refused(
        &grant(&b, &glucose, &["--evidence", "study:diabetes-2026"]).await,
        POLICY,
    );
    // Past the study's end (60 days for a study that ends in 20).
    flow::assert_refused(
        &grant(
            &b,
            &glucose,
            &["--valid-hours", "1440", "--evidence", "study:diabetes-2026"],
        )
        .await,
        POLICY,
    );
    // Another institution's study, or a study that has ended.
    study(&b, "other-2026", OTHER, -1, 200).await;
    flow::assert_refused(
        &grant(
            &b,
            &glucose,
            &["--valid-hours", "240", "--evidence", "study:other-2026"],
        )
        .await,
        POLICY,
    );
    study(&b, "ended-2025", UNIV, -400, -30).await;
    flow::assert_refused(
        &grant(
            &b,
            &glucose,
            &["--valid-hours", "240", "--evidence", "study:ended-2025"],
        )
        .await,
        POLICY,
    );
    // A study has one recipient: registering it again, for another, is refused.
    let again = hub_admin(
        &b,
        &[
            "studies",
            "add",
            "diabetes-2026",
            "--recipient",
            OTHER,
            "--committee",
            "x",
            "--approval",
            "y",
            "--from",
            "2026-01-01",
            "--until",
            "2027-01-01",
        ],
    )
    .await;
    assert!(!again.status.success(), "{again}");
    assert!(again.stderr.contains("already registered"), "{again}");

    // Nothing reached the institution so far; within the study, the records do.
    let out_dir = b.scene.member(UNIV).unwrap().dir.join("data");
    let ok = grant(
        &b,
        &glucose,
        &["--valid-hours", "240", "--evidence", "study:diabetes-2026"],
    )
    .await;
    assert!(ok.status.success(), "{ok}");
    let want: BTreeSet<String> = lines
        .iter()
        .map(|l| flow::copy_id(&b.scene, UNIV, field(l, "record_id").as_str().unwrap()).unwrap())
        .collect();
    let pulled = flow::pull_until(&b.scene, UNIV, &out_dir, &want)
        .await
        .unwrap();
    assert_eq!(pulled.keys().cloned().collect::<BTreeSet<_>>(), want);
    let listed = hub_admin(&b, &["studies", "list"]).await;
    assert!(
        listed.stdout.contains("diabetes-2026") && listed.stdout.contains(UNIV),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn research_sqlite() {
    research(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn research_postgres() {
    research(Backend::Postgres).await;
}
