//! Token key rotation with the real binaries: records imported during the transition
//! and after activation reach the app under the consent it held before the rotation,
//! under the same `rp1_` pseudonym; a new enrollment after activation finds the
//! resident exported before it and links the same history; `keys link` links the
//! residents of files already imported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use lgwan_agent::synth::{SynthOptions, write_archive};
use renkei_e2e::flow::{checkup_categories, copy_id, enroll, field, preview, pull_until};
use renkei_e2e::{APP, Backend, Basic};
use serde_json::Value;

/// The same residents as the basic archive (same seed and year), examined by another
/// provider: new documents, so new records.
fn archive_from(dir: &Path, sender: &str) -> anyhow::Result<PathBuf> {
    let opts = SynthOptions {
        persons: 4,
        seed: 2026,
        exam_year: 2026,
        creation_date: "20260701".into(),
        sender: sender.into(),
        ..Default::default()
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(opts.archive_name());
    write_archive(&path, &opts).context("writing the synthetic archive")?;
    Ok(path)
}

/// The ids under which the app receives `token`'s records in `categories` (its copies'
/// ids), from a preview.
fn records_of(b: &Basic, lines: &[Value], token: &str, categories: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| field(l, "subject_token") == token)
        .filter(|l| {
            field(l, "category")
                .as_str()
                .is_some_and(|c| categories.iter().any(|x| x == c))
        })
        .filter_map(|l| field(l, "record_id").as_str())
        .map(|id| copy_id(&b.scene, APP, id).unwrap())
        .collect()
}

/// `lgwan-agent token --all` for resident #1: `vN TOKEN` lines.
async fn tokens(b: &Basic) -> anyhow::Result<BTreeMap<String, String>> {
    let p = &b.person;
    let sex = if p.sex == lgwan_agent::domain::Sex::Female {
        "female"
    } else {
        "male"
    };
    let out = b
        .scene
        .agent(
            &["token"],
            &[
                "--insurer",
                &p.insurer_number,
                "--symbol",
                &p.symbol,
                "--number",
                &p.number,
                "--birth",
                &p.birth_date,
                "--sex",
                sex,
                "--all",
            ],
        )
        .await?
        .ok()?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect())
}

async fn rotation(backend: Backend) {
    let Some(mut b) = Basic::run(backend, &[APP], None).await.unwrap() else {
        return;
    };
    let categories = checkup_categories(&b.preview, &b.token);
    let mut want: BTreeSet<String> = b.expected.keys().cloned().collect();
    let input = b.scene.root().join("input");

    // A new token key; the agent restarts with it (still tokenizing with v1).
    let agent = std::mem::replace(&mut b.agent, b.scene.start_agent().unwrap());
    agent.stop();
    b.scene
        .agent(&["keys", "rotate-token"], &[])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let all = tokens(&b).await.unwrap();
    assert_eq!(all.get("v1"), Some(&b.token), "{all:?}");
    let new_token = all.get("v2").cloned().unwrap();
    assert_ne!(new_token, b.token);
    let stale = std::mem::replace(&mut b.agent, b.scene.start_agent().unwrap());
    stale.stop();

    // Residents read before the rotation are linked from the files at hand.
    let out = b
        .scene
        .agent(
            &["keys", "link"],
            &["--upload", &input.display().to_string()],
        )
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        out.stdout.contains(": 4 token pairs (4 new)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("; 0 pending, 4 sent, 0 refused"),
        "{}",
        out.stdout
    );

    // Transition: an import under v1 spools the pairs; the daemon uploads both.
    let second = archive_from(&input, "1311234568").unwrap();
    let lines = preview(&b.scene, &[&second]).await.unwrap();
    let during = records_of(&b, &lines, &b.token, &categories);
    assert!(
        !during.is_empty(),
        "resident #1 has records in the second archive"
    );
    b.scene
        .agent(&["import"], &[&second.display().to_string()])
        .await
        .unwrap()
        .ok()
        .unwrap();
    want.extend(during);
    pull_until(&b.scene, APP, &b.out, &want).await.unwrap();

    // Activation: records imported now carry the v2 token.
    let old = std::mem::replace(&mut b.agent, b.scene.start_agent().unwrap());
    old.stop();
    let out = b
        .scene
        .agent(&["keys", "list"], &[])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(out.stdout.contains("links  0 pending"), "{}", out.stdout);
    assert!(!out.stdout.contains(" 0 sent"), "{}", out.stdout);
    b.scene
        .agent(&["keys", "rotate-token", "--activate"], &[])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let third = archive_from(&input, "1311234569").unwrap();
    let lines = preview(&b.scene, &[&third]).await.unwrap();
    let after = records_of(&b, &lines, &new_token, &categories);
    assert!(
        !after.is_empty(),
        "the third archive's records carry the v2 token"
    );
    assert!(records_of(&b, &lines, &b.token, &categories).is_empty());
    b.scene
        .agent(&["import"], &[&third.display().to_string()])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let restarted = std::mem::replace(&mut b.agent, b.scene.start_agent().unwrap());
    restarted.stop();
    want.extend(after);
    let pulled = pull_until(&b.scene, APP, &b.out, &want).await.unwrap();
    for id in &want {
        assert_eq!(
            pulled[id].pseudonym, b.pseudonym,
            "record {id} filed under another pseudonym"
        );
    }

    // A second enrollment of the same resident after activation: the agent finds them
    // (exported under v1) and the hub links the same history: same pseudonym.
    let again = enroll(&b.scene, APP, &b.person, "user-0002").await.unwrap();
    assert_eq!(again, b.pseudonym);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_sqlite() {
    rotation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_postgres() {
    rotation(Backend::Postgres).await;
}
