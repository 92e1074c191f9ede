//! A hub instance killed with SIGKILL during batch ingest and during key-grant upload, and
//! restarted on the same database: the clients retry (the client library's backoff, the
//! agent's own rounds), and the effect is exactly once: every record stored once with one
//! `ingest` audit entry, one key grant per (record, recipient) with one `key_grant` entry,
//! no request left behind, and `internet-hub audit verify` passes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use renkei_client::api::Upload;
use renkei_e2e::faults::{
    Seeded, audit_allows, env_number, hub_grant_requests, hub_key_grants, hub_records, kdb_person,
    outbox_digests, outbox_uploads, write_kdb_costs,
};
use renkei_e2e::flow::{field, preview};
use renkei_e2e::proc::wait_until;
use renkei_e2e::scene::{SOURCE, edit_toml};
use renkei_e2e::{Backend, HubProcess, Scene, SceneOptions};

/// The recipient of the key grants: KDB data under a care-prevention evaluation.
const ANALYST: &str = "analyst:ebpm";
/// Persons with a counter consent to the analyst, and their monthly rows (ten years): 1440
/// key grants, answered 500 a call.
const CONSENTED: usize = 12;
const CONSENTED_MONTHS: usize = 120;
/// Other persons, with a year each.
const OTHERS: usize = 40;
const OTHER_MONTHS: usize = 12;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What one phase's kills did.
#[derive(Debug, Default)]
struct Kills {
    /// SIGKILLs sent.
    sent: usize,
    /// Of those, how many found the work under way (some done, some not).
    mid_work: usize,
}

/// Kills the hub up to `times` times while `progress` (a count read from the database) is
/// short of `total`, restarting it after a random pause. Each kill waits until the work
/// moves (the count grows), then a random few milliseconds more, so that it falls while
/// the clients are in the middle of their batches; a kill that sees no progress within
/// two seconds happens anyway, wherever the clients are.
async fn kill_hub_repeatedly<F, Fut>(
    scene: &Scene,
    hub: &mut Option<HubProcess>,
    rng: &mut Seeded,
    times: usize,
    total: usize,
    progress: F,
) -> Kills
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut kills = Kills::default();
    for _ in 0..times {
        let before = progress().await;
        if before >= total {
            break;
        }
        let t = Instant::now();
        while progress().await == before && t.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(ms(10)).await;
        }
        tokio::time::sleep(rng.between(ms(0), ms(60))).await;
        if let Some(h) = hub.take() {
            h.process.stop(); // SIGKILL
        }
        kills.sent += 1;
        let done = progress().await;
        if done > 0 && done < total {
            kills.mid_work += 1;
        }
        tokio::time::sleep(rng.between(ms(0), ms(400))).await;
        *hub = Some(scene.start_hub().await.unwrap());
    }
    kills
}

async fn hub_killed_during_ingest_and_key_grant_upload(backend: Backend) {
    let seed = env_number("RENKEI_FAULT_SEED", 20_260_701).unwrap();
    let times = env_number("RENKEI_FAULT_HUB_KILLS", 3).unwrap() as usize;
    let mut rng = Seeded::new(seed ^ 0x0048_5542);
    let Some(scene) = Scene::new(&SceneOptions::new(backend, &[ANALYST]), None)
        .await
        .unwrap()
    else {
        return;
    };
    edit_toml(&scene.source.config(), |t| {
        t.insert("upload_batch".into(), toml::Value::Integer(100));
        Ok(())
    })
    .unwrap();
    let started = Instant::now();
    let db = scene.db_url.clone();
    let outbox = scene.source.dir.join("outbox.sqlite");
    let input = scene.root().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let (a, b) = (
        input.join("kdb-consented.csv"),
        input.join("kdb-others.csv"),
    );
    write_kdb_costs(&a, 0, CONSENTED, CONSENTED_MONTHS).unwrap();
    write_kdb_costs(&b, CONSENTED, OTHERS, OTHER_MONTHS).unwrap();
    let lines = preview(&scene, &[&a, &b]).await.unwrap();
    let expected: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| field(l, "record_id").as_str().map(str::to_owned))
        .collect();
    let total = CONSENTED * CONSENTED_MONTHS + OTHERS * OTHER_MONTHS;
    assert_eq!(expected.len(), total);
    let files = [a.display().to_string(), b.display().to_string()];
    scene
        .agent(&["import"], &[&files[0], &files[1]])
        .await
        .unwrap()
        .ok()
        .unwrap();

    // Batch ingest: the agent uploads 100 records a call while the hub is killed.
    let mut hub = Some(scene.start_hub().await.unwrap());
    let agent = scene.start_agent().unwrap();
    let count = || async { hub_records(&db).await.map(|r| r.len()).unwrap_or(0) };
    let ingest = kill_hub_repeatedly(&scene, &mut hub, &mut rng, times, total, count).await;

    // The client library alone rides out a restart: a call made while the hub is down
    // succeeds once it is back (transport errors retried with backoff).
    let h = hub.take().unwrap();
    let url = h.url();
    h.process.stop();
    let uploads: Vec<Upload> = outbox_uploads(&outbox, 20)
        .await
        .unwrap()
        .into_iter()
        .map(|(subject, sealed)| Upload { sealed, subject })
        .collect();
    let client = scene.hub_client(SOURCE, &url, 10).unwrap();
    let call = tokio::spawn(async move { client.upload_records(&uploads).await });
    tokio::time::sleep(rng.between(ms(300), ms(1200))).await;
    hub = Some(scene.start_hub().await.unwrap());
    let report = call
        .await
        .unwrap()
        .expect("the library call across a restart");
    assert_eq!(report.accepted + report.duplicates, 20, "{report:?}");

    let held = wait_until(
        &format!("the hub to hold {total} records"),
        Duration::from_secs(90),
        || async {
            let held = hub_records(&db).await?;
            Ok((held.len() >= total).then_some(held))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        held.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the hub's record set after the kills"
    );
    let spooled = outbox_digests(&outbox).await.unwrap();
    for (id, digest) in &held {
        assert_eq!(
            spooled.get(id),
            Some(digest),
            "`{id}`: hub and outbox differ"
        );
    }

    // Key grants: counter consents for the first persons queue a request per record. The
    // agent is stopped meanwhile, so that the grants are all answered under the kills.
    agent.stop();
    let mut tokens = BTreeSet::new();
    for n in 0..CONSENTED {
        let p = kdb_person(n);
        let out = scene
            .agent(
                &["consent", "grant"],
                &[
                    "--insurer",
                    &p.insurer,
                    "--symbol",
                    &p.symbol,
                    "--number",
                    &p.number,
                    "--branch",
                    &p.branch,
                    "--birth",
                    &p.birth,
                    "--sex",
                    p.sex,
                    "--recipient",
                    ANALYST,
                    "--purpose",
                    "care-prevention-evaluation",
                    "--categories",
                    "kdb.medical-cost",
                    "--hours",
                    "720",
                    "--staff",
                    "staff-0001",
                ],
            )
            .await
            .unwrap()
            .ok()
            .unwrap();
        let token = scene
            .agent(
                &["token"],
                &[
                    "--insurer",
                    &p.insurer,
                    "--symbol",
                    &p.symbol,
                    "--number",
                    &p.number,
                    "--birth",
                    &p.birth,
                    "--sex",
                    p.sex,
                ],
            )
            .await
            .unwrap()
            .ok()
            .unwrap();
        assert!(!out.stdout.is_empty(), "no receipt printed: {out}");
        tokens.insert(token.stdout.trim().to_owned());
    }
    let want: BTreeSet<(String, String)> = lines
        .iter()
        .filter(|l| {
            field(l, "subject_token")
                .as_str()
                .is_some_and(|t| tokens.contains(t))
        })
        .filter_map(|l| field(l, "record_id").as_str())
        .map(|id| (id.to_owned(), ANALYST.to_owned()))
        .collect();
    assert_eq!(want.len(), CONSENTED * CONSENTED_MONTHS);
    let grants = want.len();
    assert!(
        hub_key_grants(&db).await.unwrap().is_empty(),
        "grants answered while the agent was stopped"
    );
    let agent = scene.start_agent().unwrap();
    let count = || async { hub_key_grants(&db).await.map(|g| g.len()).unwrap_or(0) };
    let granting = kill_hub_repeatedly(&scene, &mut hub, &mut rng, times, grants, count).await;
    wait_until(
        &format!("the hub to hold {grants} key grants and no request"),
        Duration::from_secs(90),
        || async {
            let stored = hub_key_grants(&db).await?.len();
            let left = hub_grant_requests(&db).await?.len();
            Ok((stored >= grants && left == 0).then_some(()))
        },
    )
    .await
    .unwrap();
    agent.stop();

    // Exactly once, as the database and the audit log show it.
    let stored = hub_key_grants(&db).await.unwrap();
    let distinct: BTreeSet<(String, String)> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), distinct.len(), "a key grant stored twice");
    assert_eq!(distinct, want, "the stored key grants");
    let once = |audit: &BTreeMap<String, usize>, ids: &BTreeSet<String>, what: &str| {
        let extra: Vec<&String> = audit.keys().filter(|k| !ids.contains(*k)).collect();
        assert!(
            extra.is_empty(),
            "{what} audited for unknown ids: {extra:?}"
        );
        let wrong: Vec<(&String, usize)> = ids
            .iter()
            .map(|id| (id, audit.get(id).copied().unwrap_or(0)))
            .filter(|(_, n)| *n != 1)
            .collect();
        assert!(
            wrong.is_empty(),
            "{what} audited other than once: {wrong:?}"
        );
    };
    once(
        &audit_allows(&db, "ingest").await.unwrap(),
        &expected,
        "ingest",
    );
    let granted_ids: BTreeSet<String> = want.iter().map(|(id, _)| id.clone()).collect();
    once(
        &audit_allows(&db, "key_grant").await.unwrap(),
        &granted_ids,
        "key_grant",
    );
    let audit = scene.audit_verify().await.unwrap();
    assert!(audit.status.success(), "{audit}");
    eprintln!(
        "FAULTS hub ({}): seed {seed}, {} SIGKILLs during ingest ({} mid-ingest), {} during \
         key-grant upload ({} mid-upload), 1 library call across a restart; {total} records and \
         {grants} key grants, each once; audit verified; {:.1} s",
        backend.name(),
        ingest.sent,
        ingest.mid_work,
        granting.sent,
        granting.mid_work,
        started.elapsed().as_secs_f64()
    );
    assert!(
        ingest.mid_work >= 1,
        "no kill found the ingest under way: {ingest:?}"
    );
    assert!(
        granting.mid_work >= 1,
        "no kill found the key-grant upload under way: {granting:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_during_ingest_and_key_grant_upload_sqlite() {
    hub_killed_during_ingest_and_key_grant_upload(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_during_ingest_and_key_grant_upload_postgres() {
    hub_killed_during_ingest_and_key_grant_upload(Backend::Postgres).await;
}
