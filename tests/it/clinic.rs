//! A clinic's consent ends at its instant; an analyst joins KDB and PHR data of one
//! person under one pseudonym, while two PHR vendors (and the clinic) each know that
//! person under a different one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use renkei_client::api::{GrantBody, Method};
use renkei_e2e::flow::{self, checkup_categories, field};
use renkei_e2e::proc::{Background, command};
use renkei_e2e::{APP, Backend, Scene, SceneOptions};
use serde_json::Value;

const KENKO: &str = "phr:kenko";
const CLINIC: &str = "clinic:mysos";
const ANALYST: &str = "analyst:hachioji";
/// How long the clinic's consent lasts from its grant.
const CLINIC_VALIDITY: chrono::Duration = chrono::Duration::seconds(20);

/// `pull --out -` until the lines seen so far hold every category in `want` (prefixes).
async fn pull_lines(scene: &Scene, who: &str, want: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let out = scene
            .client(who, &["pull", "--out", "-"])
            .await
            .unwrap()
            .ok()
            .unwrap();
        for l in out.stdout.lines() {
            seen.push(serde_json::from_str(l).unwrap());
        }
        let cats: BTreeSet<&str> = seen
            .iter()
            .filter_map(|l| field(l, "category").as_str())
            .collect();
        if want.iter().all(|w| cats.iter().any(|c| c.starts_with(w))) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{who} did not receive {want:?} in 45 s; got {cats:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn pseudonyms(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| field(l, "pseudonym").as_str().map(str::to_owned))
        .collect()
}

fn write_vitals(path: &Path) {
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "valueQuantity": {"value": 61, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}}]});
    std::fs::write(path, bundle.to_string()).unwrap();
}

/// Reads `record` as the clinic every 100 ms until `until`; (start instant, served?) per read.
async fn read_until(
    client: renkei_client::transport::HubClient,
    record: String,
    until: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, Result<(), String>)> {
    let mut reads = Vec::new();
    while Utc::now() < until {
        let started = Utc::now();
        let outcome = client
            .read_record(&record)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        reads.push((started, outcome));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinic_expiry_and_pseudonyms() {
    let opts = SceneOptions::new(Backend::Sqlite, &[APP, KENKO, CLINIC, ANALYST]);
    let scene = Scene::new(&opts, None).await.unwrap().unwrap();
    let _hub = scene.start_hub().await.unwrap();
    let input = scene.root().join("input");
    let (archive, persons) = flow::synth_archive(&input, 3).unwrap();
    let person = persons[0].clone();
    let kdb = input.join("kdb_care.csv");
    flow::write_kdb_care(&kdb, &person).unwrap();
    let preview = flow::preview(&scene, &[&archive, &kdb]).await.unwrap();
    let (a, k) = (archive.display().to_string(), kdb.display().to_string());
    scene
        .agent(&["import"], &[&a, &k])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let _agent = scene.start_agent().unwrap();
    let token = flow::token(&scene, &person).await.unwrap();
    assert!(
        preview
            .iter()
            .any(|l| field(l, "subject_token") == token.as_str()
                && field(l, "category") == "kdb.care")
    );

    // Two PHR vendors link the same resident; each gets its own pseudonym.
    let asmile = flow::enroll(&scene, APP, &person, "asmile-0001")
        .await
        .unwrap();
    let kenko = flow::enroll(&scene, KENKO, &person, "kenko-0001")
        .await
        .unwrap();
    let checkup = checkup_categories(&preview, &token);
    flow::grant(&scene, APP, &asmile, APP, "phr-display", &checkup)
        .await
        .unwrap();
    flow::grant(&scene, KENKO, &kenko, KENKO, "phr-display", &checkup)
        .await
        .unwrap();

    // The app publishes the resident's own vitals and answers key grants for them.
    let vitals = scene.member(APP).unwrap().dir.join("vitals-0001.json");
    write_vitals(&vitals);
    let today = Utc::now().date_naive().to_string();
    let v = vitals.display().to_string();
    let published = scene
        .client(
            APP,
            &[
                "publish",
                "--subject",
                &asmile,
                "--category",
                "phr.vitals",
                "--date",
                &today,
                &v,
            ],
        )
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(published.stdout.contains("\"accepted\": 1"), "{published}");
    let mut serve = command("renkei-client").unwrap();
    serve
        .arg("--config")
        .arg(scene.member(APP).unwrap().config())
        .args(["serve-grants", "--interval", "1"]);
    let _serve_grants = Background::spawn(
        "renkei-client serve-grants",
        &mut serve,
        &scene.root().join("serve-grants.log"),
    )
    .unwrap();

    // The clinic: a consent valid for a few seconds, checkup results and app records together.
    let app_client = scene.hub_client(APP, &scene.hub_url(), 3).unwrap();
    let mut clinic_categories = checkup.clone();
    clinic_categories.push("phr.vitals".into());
    let valid_until = Utc::now() + CLINIC_VALIDITY;
    let body = GrantBody {
        subject: asmile.clone(),
        recipient: CLINIC.into(),
        purpose: "online-consultation".into(),
        categories: clinic_categories,
        data_period: Default::default(),
        valid_from: None,
        valid_until: Some(valid_until),
        method: Method::App,
        evidence: None,
        granted_by: "resident".into(),
        statement: None,
        guardian: None,
    };
    let resident = renkei_crypto::consent_statement::user_resident(APP, "asmile-0001");
    let app_state =
        renkei_client::state::StateDir::open(&scene.member(APP).unwrap().dir.join("state"))
            .unwrap();
    renkei_client::consent::grant_kept(&app_client, &app_state, body, resident, Vec::new())
        .await
        .unwrap();
    let clinic_lines = pull_lines(&scene, CLINIC, &["checkup.", "phr.vitals"]).await;
    let record = clinic_lines
        .iter()
        .find(|l| {
            field(l, "category")
                .as_str()
                .is_some_and(|c| c.starts_with("checkup."))
        })
        .and_then(|l| field(l, "record_id").as_str())
        .unwrap()
        .to_owned();
    let clinic_client = scene.hub_client(CLINIC, &scene.hub_url(), 1).unwrap();
    let reads = tokio::spawn(read_until(
        clinic_client,
        record,
        valid_until + chrono::Duration::seconds(2),
    ));

    // Meanwhile, at the city counter, the resident consents to the analyst's evaluation.
    let sex = if person.sex == lgwan_agent::domain::Sex::Female {
        "female"
    } else {
        "male"
    };
    let mut args = vec![
        "--insurer",
        &person.insurer_number,
        "--symbol",
        &person.symbol,
        "--number",
        &person.number,
    ];
    args.extend([
        "--birth",
        &person.birth_date,
        "--sex",
        sex,
        "--recipient",
        ANALYST,
    ]);
    args.extend([
        "--purpose",
        "care-prevention-evaluation",
        "--categories",
        "kdb.care,phr.vitals,checkup.body",
    ]);
    args.extend(["--hours", "720", "--staff", "staff-0042"]);
    if let Some(branch) = &person.branch {
        args.extend(["--branch", branch.as_str()]);
    }
    let receipt = scene
        .agent(&["consent", "grant"], &args)
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(receipt.stdout.contains("consent / 同意番号"), "{receipt}");
    let analyst_lines = pull_lines(&scene, ANALYST, &["kdb.care", "phr.vitals"]).await;

    // Vendors' views.
    let asmile_lines = pull_lines(&scene, APP, &["checkup."]).await;
    let kenko_lines = pull_lines(&scene, KENKO, &["checkup."]).await;
    let by_who: BTreeMap<&str, BTreeSet<String>> = [
        (APP, pseudonyms(&asmile_lines)),
        (KENKO, pseudonyms(&kenko_lines)),
        (CLINIC, pseudonyms(&clinic_lines)),
        (ANALYST, pseudonyms(&analyst_lines)),
    ]
    .into_iter()
    .collect();
    for (who, names) in &by_who {
        assert_eq!(
            names.len(),
            1,
            "{who} sees the resident under several pseudonyms: {names:?}"
        );
    }
    let one = |who: &str| by_who[who].iter().next().unwrap().clone();
    assert_eq!(
        one(APP),
        asmile,
        "the app's feed pseudonym differs from its enrollment's"
    );
    assert_eq!(one(KENKO), kenko);
    let all: BTreeSet<String> = by_who.values().flatten().cloned().collect();
    assert_eq!(all.len(), 4, "two recipients share a pseudonym: {by_who:?}");
    // The analyst's join: KDB and PHR data of the same person, one pseudonym.
    let analyst_cats: BTreeSet<&str> = analyst_lines
        .iter()
        .filter_map(|l| field(l, "category").as_str())
        .collect();
    assert!(
        analyst_cats.contains("kdb.care") && analyst_cats.contains("phr.vitals"),
        "{analyst_cats:?}"
    );

    // The clinic's consent ended at its instant.
    let reads = reads.await.unwrap();
    let served_before = reads
        .iter()
        .filter(|(t, o)| *t < valid_until && o.is_ok())
        .count();
    let after: Vec<_> = reads.iter().filter(|(t, _)| *t >= valid_until).collect();
    let late: Vec<_> = after.iter().filter(|(_, o)| o.is_ok()).collect();
    eprintln!(
        "clinic: {} reads, {served_before} served before valid_until, {} after it, {} late; \
         pseudonyms {by_who:?}",
        reads.len(),
        after.len(),
        late.len()
    );
    assert!(
        served_before > 0,
        "the clinic read nothing before the consent ended: {reads:?}"
    );
    // Not early either: a read shortly before the instant was still served.
    let near = valid_until - chrono::Duration::milliseconds(1500);
    assert!(
        reads
            .iter()
            .any(|(t, o)| *t >= near && *t < valid_until && o.is_ok()),
        "the consent ended before its instant {valid_until}: {reads:?}"
    );
    assert!(
        after.len() >= 5,
        "too few reads after the end: {}",
        after.len()
    );
    assert!(
        late.is_empty(),
        "{} reads served after valid_until {valid_until}: {late:?}",
        late.len()
    );
    for (_, o) in &after {
        let e = o.as_ref().unwrap_err();
        assert!(e.contains("403") || e.contains("404"), "not a denial: {e}");
    }
    let events = scene
        .client(CLINIC, &["events"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        events.stderr.contains("consent.expired"),
        "no consent.expired event: {events}"
    );
}
