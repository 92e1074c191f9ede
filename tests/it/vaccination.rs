//! Issue 20, vaccination records with the real binaries: the municipality's vaccination
//! register (予防接種台帳 of the 健康管理システム) names residents by 宛名番号 alone. The
//! agent files each row under the token of the insurance identity it saw with that
//! 宛名番号 in a KDB file, so the child's record reaches the parent's app, under a
//! guardian's `phr-display` consent, beside the rest of the child's data; a row whose
//! 宛名番号 the agent never saw stays inside LGWAN.

use std::collections::BTreeSet;

use renkei_e2e::flow::{self, field};
use renkei_e2e::{APP, Backend, Basic};

const KDB_HEAD: &str = "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,宛名番号,診療年月,\
                        入院医療費,入院外医療費,歯科医療費,調剤医療費,医療費総額";

/// The parent, in the app, consents for the child (resident #1) to see their vaccinations.
async fn parent_consents_for_the_child(b: &Basic) {
    let out = flow::try_grant(
        &b.scene,
        APP,
        &b.pseudonym,
        APP,
        "phr-display",
        &["immunization.record"],
        &["--guardian", "parent"],
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{out}");
}

async fn vaccination(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP], None).await.unwrap() else {
        return;
    };
    let p = &b.person;
    let birth = p.birth_date.replace('-', "");
    let sex = if p.sex == lgwan_agent::domain::Sex::Female {
        "2"
    } else {
        "1"
    };
    let input = b.scene.root().join("input");
    let kdb = input.join("kdb_residents.csv");
    std::fs::write(
        &kdb,
        format!(
            "{KDB_HEAD}\n{},{},{},{},{birth},{sex},0004711,202604,,2000,,,2000\n",
            p.insurer_number,
            p.symbol,
            p.number,
            p.branch.clone().unwrap_or_default()
        ),
    )
    .unwrap();
    let register = input.join("yobou_sesshu.csv");
    std::fs::write(
        &register,
        format!(
            "宛名番号,氏名,生年月日,性別,接種日,ワクチン名,接種回数\n\
             0004711,{},{birth},{sex},20260610,日本脳炎,2\n\
             0009999,見本　三郎,20240101,1,20260610,MR,1\n",
            p.name
        ),
    )
    .unwrap();
    let kdb_s = kdb.display().to_string();
    b.scene
        .agent(&["import"], &[&kdb_s])
        .await
        .unwrap()
        .ok()
        .unwrap();
    // The register's second row names a 宛名番号 the agent never saw: set aside, said so,
    // and the import exits 2 (something was quarantined); the first row is imported.
    let out = b
        .scene
        .agent(&["import"], &[&register.display().to_string()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("record 3") && out.stderr.contains("has not been seen"),
        "{out}"
    );
    assert!(out.stderr.contains("1 records (1 new)"), "{out}");
    // What left the building: `preview` (exit 2 too, for the same row).
    let shown = b
        .scene
        .agent(&["preview"], &[&kdb_s, &register.display().to_string()])
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = shown
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let records: Vec<_> = lines
        .iter()
        .filter(|l| field(l, "category") == "immunization.record")
        .collect();
    assert_eq!(
        records.len(),
        1,
        "only the row whose 宛名番号 the agent saw"
    );
    assert_eq!(field(records[0], "subject_token"), b.token.as_str());

    // The parent consents, in the app, for the child (the subject) to see the record.
    parent_consents_for_the_child(&b).await;
    let id = field(records[0], "record_id").as_str().unwrap();
    let want: BTreeSet<String> = [flow::copy_id(&b.scene, APP, id).unwrap()].into();
    let dir = b.scene.root().join("vaccinations");
    let pulled = flow::pull_until(&b.scene, APP, &dir, &want).await.unwrap();
    let record = pulled.values().next().unwrap();
    assert_eq!(record.pseudonym, b.pseudonym, "the child's own pseudonym");
    let text = record.payload.to_string();
    assert!(
        text.contains("\"Immunization\"") && text.contains("日本脳炎"),
        "{text}"
    );
    assert!(
        !text.contains("0004711") && !text.contains(&p.name),
        "{text}"
    );
}

const CLINIC: &str = "clinic:mysos";

/// A clinic as a source: it vaccinates the child, the parent's app introduces the child
/// to it (outside the hub), the clinic publishes the record bound to that app's user, and
/// its key is released only under that app's own consent naming the user.
async fn clinic_vaccination(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, CLINIC], None).await.unwrap() else {
        return;
    };
    // The consultation: the family lets the clinic see the checkup.
    let out = flow::try_grant(
        &b.scene,
        APP,
        &b.pseudonym,
        CLINIC,
        "online-consultation",
        &["checkup.body"],
        &["--valid-hours", "24"],
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{out}");
    let seen = b.scene.root().join("clinic-pulled");
    let want: BTreeSet<String> = b
        .preview
        .iter()
        .filter(|l| field(l, "subject_token") == b.token.as_str())
        .filter(|l| field(l, "category") == "checkup.body")
        .map(|l| flow::copy_id(&b.scene, CLINIC, field(l, "record_id").as_str().unwrap()).unwrap())
        .collect();
    let pulled = flow::pull_until(&b.scene, CLINIC, &seen, &want)
        .await
        .unwrap();
    let patient = pulled.values().next().unwrap().pseudonym.clone();
    assert_ne!(patient, b.pseudonym, "the clinic's own pseudonym");

    // The app introduces its user to the clinic; the clinic publishes the vaccination.
    let intro = b.scene.root().join("introduction.json");
    let out = b
        .scene
        .client(
            APP,
            &[
                "introduce",
                "--subject",
                &b.pseudonym,
                "--clinic",
                CLINIC,
                "--out",
                &intro.display().to_string(),
            ],
        )
        .await
        .unwrap();
    assert!(out.status.success(), "{out}");
    let record = b.scene.root().join("bcg.json");
    let bundle = lgwan_agent::tabular::immunization_bundle(
        chrono::NaiveDate::from_ymd_opt(2026, 6, 20).unwrap(),
        "BCG",
        Some(1),
        "urn:renkei:clinic:mysos",
    );
    std::fs::write(&record, bundle.to_string()).unwrap();
    let publish = |with_intro: bool| {
        let mut args = vec![
            "publish".to_owned(),
            "--subject".to_owned(),
            patient.clone(),
            "--category".to_owned(),
            "immunization.record".to_owned(),
            "--date".to_owned(),
            "2026-06-20".to_owned(),
        ];
        if with_intro {
            args.extend(["--introduction".to_owned(), intro.display().to_string()]);
        }
        args.push(record.display().to_string());
        let scene = &b.scene;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            scene.client(CLINIC, &args).await.unwrap()
        }
    };
    let out = publish(false).await;
    assert!(
        !out.status.success() && out.stderr.contains("introduced"),
        "{out}"
    );
    let out = publish(true).await;
    assert!(out.status.success(), "{out}");

    // The parent consents in the app; the clinic releases; the app receives it.
    parent_consents_for_the_child(&b).await;
    let out = b
        .scene
        .client(CLINIC, &["serve-grants", "--once"])
        .await
        .unwrap();
    assert!(out.status.success(), "{out}");
    let dir = b.scene.root().join("app-vaccinations");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        b.scene
            .client(APP, &["pull", "--out", &dir.display().to_string()])
            .await
            .unwrap()
            .ok()
            .unwrap();
        let got = flow::pulled(&dir).unwrap();
        if let Some(p) = got.values().find(|p| p.payload.to_string().contains("BCG")) {
            assert_eq!(p.pseudonym, b.pseudonym, "under the app's own pseudonym");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the app never received the clinic's record"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinic_vaccination_sqlite() {
    clinic_vaccination(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinic_vaccination_postgres() {
    clinic_vaccination(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaccination_sqlite() {
    vaccination(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaccination_postgres() {
    vaccination(Backend::Postgres).await;
}
