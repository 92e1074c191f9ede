//! Issue 19 with the real binaries: two cities' agents compute the same programme's
//! statistics inside LGWAN (`lgwan-agent evaluate`), each report signed with the city's
//! certificate; city A delivers its report through the hub sealed to the evaluator
//! (`--deliver`, only with the evaluator on its release list), the evaluator collects it
//! (`renkei-client evaluation pull`), checks both signatures and combines them into one
//! table and a chart (`evaluation combine`). City A has a stratum of fewer than 10
//! participants: neither its report nor the combined table publishes a statistic of it,
//! or a way to work it out. A changed report, or one for another evaluator, is refused.

use std::path::{Path, PathBuf};

use lgwan_agent::synth::{SynthStratum, write_evaluation_inputs};
use renkei_e2e::proc::{command, run};
use renkei_e2e::scene::CLI_TIMEOUT;
use renkei_e2e::{Backend, Scene, SceneOptions};
use serde_json::Value;

const ANALYST: &str = "analyst:tsukuba";
const CITY_B: &str = "source:city-b";

/// Writes a city's KDB file and roster: per (sex, birth year, persons, participants).
fn city(dir: &Path, insurer: &str, strata: &[(u8, i32, usize, usize)]) -> (PathBuf, PathBuf) {
    let strata: Vec<SynthStratum> = strata
        .iter()
        .map(|&(sex, birth_year, persons, participants)| SynthStratum {
            sex,
            birth_year,
            persons,
            participants,
        })
        .collect();
    write_evaluation_inputs(dir, insurer, &strata).unwrap()
}

fn program(dir: &Path, evaluator: &str) -> PathBuf {
    let path = dir.join("program.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "five-city-sib"
evaluator = "{evaluator}"
baseline_year = 2024
years = [2024, 2025]
age_bands = [40, 65, 75]
roster = "participants.csv"

[[measures]]
name = "medical_cost"
table = "kdb-medical-cost"
code = "total-cost"
"#
        ),
    )
    .unwrap();
    path
}

/// City B: its certificate from the scene's PKI, and an agent of its own.
async fn city_b_agent(scene: &Scene) -> PathBuf {
    let dir = scene.root().join("source-city-b");
    let tls = dir.join("tls");
    let mut issue = command("internet-hub").unwrap();
    issue
        .args(["pki", "issue", "--dir"])
        .arg(scene.root().join("pki"))
        .args(["--participant", CITY_B, "--days", "30", "--out"])
        .arg(&tls);
    run(&mut issue, CLI_TIMEOUT).await.unwrap().ok().unwrap();
    let agent = dir.join("agent");
    let mut init = command("lgwan-agent").unwrap();
    init.args(["init", "--source", CITY_B, "--dir"]).arg(&agent);
    run(&mut init, CLI_TIMEOUT).await.unwrap().ok().unwrap();
    let config = agent.join("agent.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[hub]\nurl = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        scene.hub_url(),
        tls.join("ca.pem").display(),
        tls.join("source-city-b.pem").display(),
        tls.join("source-city-b.key").display()
    ));
    std::fs::write(&config, text).unwrap();
    config
}

fn cells<'a>(
    rows: &'a [Value],
    source: &str,
    sex: &str,
    band: &str,
    group: &str,
) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| {
            r["source"] == source && r["sex"] == sex && r["age_band"] == band && r["group"] == group
        })
        .collect()
}

/// For each source (and the pooled rows), year, measure and group with a published
/// total: a lone suppressed stratum would be recovered as the total minus the rest.
fn recoverable(rows: &[Value]) -> Vec<String> {
    let mut keys: Vec<(String, i64, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_owned(),
                r["year"].as_i64().unwrap(),
                r["measure"].as_str().unwrap().to_owned(),
                r["group"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut found = Vec::new();
    for (source, year, measure, group) in keys {
        let of: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                r["source"] == source.as_str()
                    && r["year"] == year
                    && r["measure"] == measure.as_str()
                    && r["group"] == group.as_str()
            })
            .collect();
        let total_published = of
            .iter()
            .any(|r| r["sex"] == "all" && r["suppressed"] == false);
        let hidden = of
            .iter()
            .filter(|r| r["sex"] != "all" && r["suppressed"] == true)
            .count();
        if total_published && hidden == 1 {
            found.push(format!("{source} {year} {measure} {group}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_sqlite() {
    two_cities_reports_combine_without_revealing_a_small_stratum(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_postgres() {
    two_cities_reports_combine_without_revealing_a_small_stratum(Backend::Postgres).await;
}

async fn two_cities_reports_combine_without_revealing_a_small_stratum(backend: Backend) {
    let Some(scene) = Scene::new(&SceneOptions::new(backend, &[ANALYST]), None)
        .await
        .unwrap()
    else {
        return;
    };
    let _hub = scene.start_hub().await.unwrap();
    let a_dir = scene.root().join("eval-a");
    let b_dir = scene.root().join("eval-b");
    // City A: women of 65–74 have 4 participants.
    let (kdb_a, _) = city(
        &a_dir,
        "01130012",
        &[
            (1, 1970, 30, 15),
            (2, 1970, 30, 15),
            (1, 1955, 24, 12),
            (2, 1955, 24, 4),
        ],
    );
    let (kdb_b, _) = city(
        &b_dir,
        "01131234",
        &[
            (1, 1970, 25, 12),
            (2, 1970, 28, 14),
            (1, 1955, 22, 11),
            (2, 1955, 26, 13),
        ],
    );
    let (report_a, report_b) = (a_dir.join("report.json"), b_dir.join("report.json"));
    let p = program(&a_dir, ANALYST).display().to_string();
    let evaluate_a = |deliver: bool| {
        let mut args = vec![
            "--program".to_owned(),
            p.clone(),
            "--out".to_owned(),
            report_a.display().to_string(),
        ];
        if deliver {
            args.push("--deliver".to_owned());
        }
        args.push(kdb_a.display().to_string());
        let scene = &scene;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            scene.agent(&["evaluate"], &args).await.unwrap()
        }
    };
    // The scene's release list names every member (the analyst among them).
    let out = evaluate_a(true).await;
    assert!(out.status.success(), "{out}");
    assert!(
        out.stderr.contains("suppressed") && out.stderr.contains("delivered to"),
        "{out}"
    );
    let config_b = city_b_agent(&scene).await;
    let mut eval_b = command("lgwan-agent").unwrap();
    eval_b
        .args(["evaluate", "--config"])
        .arg(&config_b)
        .arg("--program")
        .arg(program(&b_dir, ANALYST))
        .arg("--out")
        .arg(&report_b)
        .arg(&kdb_b);
    run(&mut eval_b, CLI_TIMEOUT).await.unwrap().ok().unwrap();

    // City A's own report: no statistic of the small stratum, and nothing recoverable.
    let signed: Value = serde_json::from_slice(&std::fs::read(&report_a).unwrap()).unwrap();
    assert_eq!(signed["signature"]["signer"], "source:city-a");
    let small = signed["report"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["sex"] == "female" && c["age_band"] == "65-74" && c["group"] == "participants")
        .unwrap();
    assert!(
        small["n"].is_null() && small.get("stats").is_none(),
        "{small}"
    );
    let text = signed.to_string();
    assert!(!text.contains("st1_") && !text.contains("01130012"));

    // The evaluator combines both.
    let combined_dir = scene.root().join("combined");
    let combine = |reports: Vec<String>| {
        let scene = &scene;
        let out_dir = combined_dir.display().to_string();
        async move {
            let mut args = vec!["evaluation", "combine", "--out", out_dir.as_str()];
            args.extend(reports.iter().map(String::as_str));
            scene.client(ANALYST, &args).await.unwrap()
        }
    };
    // City A's report as the evaluator collects it from the hub: opened and checked.
    let inbox = scene.root().join("inbox");
    let out = scene
        .client(
            ANALYST,
            &["evaluation", "pull", "--out", &inbox.display().to_string()],
        )
        .await
        .unwrap();
    assert!(out.status.success(), "{out}");
    let pulled: Vec<String> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(pulled.len(), 1, "{out}");
    let collected: Value = serde_json::from_slice(&std::fs::read(&pulled[0]).unwrap()).unwrap();
    assert_eq!(collected["report"]["source"], "source:city-a");
    let (a_s, b_s) = (pulled[0].clone(), report_b.display().to_string());
    let out = combine(vec![a_s.clone(), b_s.clone()]).await;
    assert!(out.status.success(), "{out}");
    let combined: Value =
        serde_json::from_slice(&std::fs::read(combined_dir.join("combined.json")).unwrap())
            .unwrap();
    let rows = combined["rows"].as_array().unwrap();
    assert_eq!(
        combined["sources"],
        serde_json::json!(["source:city-a", CITY_B])
    );
    for source in ["source:city-a", "all"] {
        for cell in cells(rows, source, "female", "65-74", "participants") {
            assert!(
                cell["suppressed"] == true && cell["n"].is_null(),
                "{source}: {cell}"
            );
        }
    }
    // City B published the stratum; the pooled totals are published, with no median.
    assert!(
        cells(rows, CITY_B, "female", "65-74", "participants")
            .iter()
            .all(|c| c["n"] == 13)
    );
    let total = cells(rows, "all", "all", "all", "participants");
    assert!(
        total
            .iter()
            .all(|c| c["n"] == 46 + 50 && c["stats"]["median"].is_null()),
        "{total:?}"
    );
    assert_eq!(recoverable(rows), Vec::<String>::new());
    let csv = std::fs::read_to_string(combined_dir.join("combined.csv")).unwrap();
    assert!(csv.starts_with("source,year,measure,sex,age_band,group,n,suppressed"));
    assert_eq!(csv.lines().count(), 1 + rows.len());
    let svg = std::fs::read_to_string(combined_dir.join("kpi.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("medical_cost"),
        "{svg}"
    );

    // A changed report (a count made up) no longer verifies.
    let forged = a_dir.join("forged.json");
    std::fs::write(
        &forged,
        std::fs::read_to_string(&report_a)
            .unwrap()
            .replacen("\"n\": 15", "\"n\": 16", 1),
    )
    .unwrap();
    let out = combine(vec![forged.display().to_string(), b_s.clone()]).await;
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr.contains("forged.json") && out.stderr.contains("evaluation report"),
        "{out}"
    );
    // A report made for another evaluator is refused too.
    let other = scene.root().join("eval-other");
    city(&other, "01130012", &[(1, 1970, 30, 15)]);
    let other_report = other.join("report.json");
    let other_program = program(&other, "analyst:somebody-else")
        .display()
        .to_string();
    let other_args = |deliver: bool| {
        let mut args = vec![
            "--program".to_owned(),
            other_program.clone(),
            "--out".to_owned(),
            other_report.display().to_string(),
            other.join("kdb.csv").display().to_string(),
        ];
        if deliver {
            args.insert(4, "--deliver".to_owned());
        }
        args
    };
    // Delivery to an evaluator the city's release list does not name: refused by the
    // agent itself, whatever the hub would say; the report is only written.
    let args = other_args(true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scene.agent(&["evaluate"], &args).await.unwrap();
    assert!(
        !out.status.success() && out.stderr.contains("release list"),
        "{out}"
    );
    let out = combine(vec![other_report.display().to_string()]).await;
    assert!(
        !out.status.success() && out.stderr.contains("analyst:somebody-else"),
        "{out}"
    );
}
