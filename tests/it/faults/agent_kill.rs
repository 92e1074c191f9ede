//! `lgwan-agent import` and `lgwan-agent run` killed with SIGKILL at random instants and
//! restarted, run after run against one real hub: whatever was committed stays whole, the
//! hub never holds a record the agent did not spool, and after each restart the hub holds
//! exactly the records `lgwan-agent preview` shows, each with the SHA-256 of the bytes the
//! outbox kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use renkei_e2e::faults::{
    Seeded, env_number, hub_records, outbox_count, outbox_digests, write_kdb_costs,
};
use renkei_e2e::flow::{field, preview};
use renkei_e2e::proc::{Background, wait_until};
use renkei_e2e::scene::edit_toml;
use renkei_e2e::{Backend, Scene, SceneOptions};

/// Persons per run's KDB export, and monthly rows each: one record per row, 4,500 in all,
/// more than one import batch (`lgwan_agent::import::BATCH`), so a kill can fall between
/// two commits.
const PERSONS: usize = 90;
const MONTHS: usize = 50;
const _: () = assert!(PERSONS * MONTHS > lgwan_agent::import::BATCH);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The hub's records are a subset of the outbox's, each with the digest of the outbox bytes.
fn check_hub_against_outbox(
    hub: &BTreeMap<String, String>,
    outbox: &BTreeMap<String, String>,
    when: &str,
) {
    for (id, digest) in hub {
        match outbox.get(id) {
            Some(d) => assert_eq!(d, digest, "{when}: `{id}` differs between hub and outbox"),
            None => panic!("{when}: the hub holds `{id}`, which the outbox never spooled"),
        }
    }
}

fn check_outbox_against_expected(
    outbox: &BTreeMap<String, String>,
    expected: &BTreeSet<String>,
    when: &str,
) {
    let foreign: Vec<&String> = outbox.keys().filter(|k| !expected.contains(*k)).collect();
    assert!(
        foreign.is_empty(),
        "{when}: the outbox holds records `preview` never showed: {foreign:?}"
    );
}

/// Starts `lgwan-agent <sub>` in the background, its output appended to `agent.log`.
fn spawn_agent(scene: &Scene, sub: &str, file: Option<&Path>) -> Background {
    let mut c = scene.agent_cmd(&[sub]).unwrap();
    if let Some(f) = file {
        c.arg(f);
    }
    Background::spawn(
        &format!("lgwan-agent {sub}"),
        &mut c,
        &scene.root().join("agent.log"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_during_import_and_upload() {
    let runs = env_number("RENKEI_FAULT_AGENT_RUNS", 10).unwrap() as usize;
    let seed = env_number("RENKEI_FAULT_SEED", 20_260_701).unwrap();
    let mut rng = Seeded::new(seed);
    let scene = Scene::new(&SceneOptions::new(Backend::Sqlite, &[]), None)
        .await
        .unwrap()
        .unwrap();
    // Small batches: more commits on both sides, so more instants fall between two of them.
    edit_toml(&scene.source.config(), |t| {
        t.insert("upload_batch".into(), toml::Value::Integer(50));
        Ok(())
    })
    .unwrap();
    let _hub = scene.start_hub().await.unwrap();
    let db = scene.db_url.clone();
    let outbox = scene.source.dir.join("outbox.sqlite");
    let input = scene.root().join("input");
    std::fs::create_dir_all(&input).unwrap();

    let mut expected = BTreeSet::new();
    // Windows for the kill instants, adapted to what the last complete runs took.
    let (mut import_window, mut upload_window) = (ms(1500), ms(2500));
    let (mut mid_import, mut mid_upload) = (0, 0);
    let started = Instant::now();
    for run in 0..runs {
        let file = input.join(format!("kdb-{run:03}.csv"));
        write_kdb_costs(&file, run * PERSONS, PERSONS, MONTHS).unwrap();
        let lines = preview(&scene, &[&file]).await.unwrap();
        let new: BTreeSet<String> = lines
            .iter()
            .filter_map(|l| field(l, "record_id").as_str().map(str::to_owned))
            .collect();
        assert_eq!(new.len(), PERSONS * MONTHS, "run {run}: preview");
        assert!(new.is_disjoint(&expected), "run {run}: ids reused");
        expected.extend(new.iter().cloned());

        // 1. `import` killed at a random instant: on even runs anywhere in the import's
        // time; on odd runs a few milliseconds after its first batch (4,000 records) was
        // committed, so that the kill falls between two commits.
        let before = outbox_digests(&outbox).await.unwrap().len();
        let mut import = spawn_agent(&scene, "import", Some(&file));
        let at = if run % 2 == 0 {
            let at = rng.between(ms(20), import_window);
            tokio::time::sleep(at).await;
            at
        } else {
            let t = Instant::now();
            while import.check_running().is_ok()
                && outbox_count(&outbox).await.unwrap() == before
                && t.elapsed() < Duration::from_secs(30)
            {
                tokio::time::sleep(ms(5)).await;
            }
            tokio::time::sleep(rng.between(ms(0), ms(15))).await;
            t.elapsed()
        };
        let finished = import.check_running().is_err();
        import.stop();
        let spooled = outbox_digests(&outbox).await.unwrap();
        let when = format!("run {run}, import killed at {at:?}");
        check_outbox_against_expected(&spooled, &expected, &when);
        if !finished && spooled.len() > before && spooled.len() < before + new.len() {
            mid_import += 1;
        }

        // 2. The import restarted to completion: the outbox holds every expected record.
        let t = Instant::now();
        let done = scene
            .agent(&["import"], &[&file.display().to_string()])
            .await
            .unwrap()
            .ok()
            .unwrap();
        // A restarted import seals every record again (keeping those already spooled), so
        // it takes as long as a whole one.
        import_window = (t.elapsed() * 6 / 5).max(ms(200));
        let spooled = outbox_digests(&outbox).await.unwrap();
        assert_eq!(
            spooled.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "run {run}: outbox after the restarted import\n{done}"
        );

        // 3. `run` killed at a random instant of its upload.
        let hub_before = hub_records(&db).await.unwrap().len();
        let at = rng.between(ms(20), upload_window);
        let agent = spawn_agent(&scene, "run", None);
        tokio::time::sleep(at).await;
        agent.stop();
        let held = hub_records(&db).await.unwrap();
        let when = format!("run {run}, upload killed at {at:?}");
        check_hub_against_outbox(&held, &spooled, &when);
        if held.len() > hub_before && held.len() < expected.len() {
            mid_upload += 1;
        }

        // 4. `run` restarted: the hub ends with exactly the expected set, byte for byte.
        let t = Instant::now();
        let agent = spawn_agent(&scene, "run", None);
        let want = expected.len();
        let held = wait_until(
            &format!("run {run}: the hub to hold {want} records"),
            Duration::from_secs(60),
            || {
                let db = db.clone();
                async move {
                    let held = hub_records(&db).await?;
                    Ok((held.len() >= want).then_some(held))
                }
            },
        )
        .await
        .unwrap();
        upload_window = (at + t.elapsed()).max(ms(300));
        agent.stop();
        assert_eq!(
            held.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "run {run}: the hub's record set after the restart"
        );
        check_hub_against_outbox(&held, &spooled, &format!("run {run}, after restart"));
        let pending = renkei_e2e::faults::outbox_records(&outbox)
            .await
            .unwrap()
            .values()
            .filter(|(state, _)| state != "sent")
            .count();
        assert_eq!(pending, 0, "run {run}: records left unsent");
    }
    eprintln!(
        "FAULTS agent: seed {seed}, {runs} runs, {} SIGKILLs ({mid_import} mid-import, \
         {mid_upload} mid-upload), {} records expected and held, 0 lost, 0 doubled, {:.1} s",
        2 * runs,
        expected.len(),
        started.elapsed().as_secs_f64()
    );
    if runs >= 5 {
        assert!(
            mid_import >= 1,
            "no kill landed in the middle of an import ({runs} runs)"
        );
        assert!(
            mid_upload >= 1,
            "no kill landed in the middle of an upload ({runs} runs)"
        );
    }
}
