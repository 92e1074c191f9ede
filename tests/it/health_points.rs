//! Issue 20, health points with the real binaries: a health-point programme (a PHR
//! vendor's point service, like アスマイル's) receives a resident's checkup attendance
//! and nothing else (one Observation: the fiscal year), also from the municipality's
//! がん検診 attendance list, and a `health-points` consent that asks for more is refused
//! by the policies.

use std::collections::BTreeSet;

use renkei_e2e::flow::{self, field};
use renkei_e2e::{APP, Backend, Basic};
use serde_json::Value;

/// The point programme, a PHR participant of its own.
const POINTS: &str = "phr:kenko-points";

async fn health_points(backend: Backend) {
    let Some(b) = Basic::run(backend, &[APP, POINTS], None).await.unwrap() else {
        return;
    };
    let attendance: Vec<&Value> = b
        .preview
        .iter()
        .filter(|l| field(l, "subject_token") == b.token.as_str())
        .filter(|l| field(l, "category") == "checkup.attendance")
        .collect();
    assert!(
        !attendance.is_empty(),
        "resident #1 has no attendance record"
    );

    // The resident lets the point programme confirm attendance, in the app.
    flow::grant(
        &b.scene,
        APP,
        &b.pseudonym,
        POINTS,
        "health-points",
        &["checkup.attendance".to_owned()],
    )
    .await
    .unwrap();
    let want: BTreeSet<String> = attendance
        .iter()
        .map(|l| flow::copy_id(&b.scene, POINTS, field(l, "record_id").as_str().unwrap()).unwrap())
        .collect();
    let out = b.scene.member(POINTS).unwrap().dir.join("data");
    let pulled = flow::pull_until(&b.scene, POINTS, &out, &want)
        .await
        .unwrap();
    // Exactly the attendance records: none of the results the app itself may show.
    assert_eq!(pulled.keys().cloned().collect::<BTreeSet<_>>(), want);
    for p in pulled.values() {
        let entries = p.payload["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{}", p.payload);
        let obs = &entries[0]["resource"];
        assert!(obs["valueInteger"].is_i64(), "{obs}");
        assert!(obs["effectivePeriod"]["start"].is_string(), "{obs}");
        for leak in [
            "valueQuantity",
            "valueString",
            "valueCodeableConcept",
            "effectiveDateTime",
            "subject",
            "hasMember",
        ] {
            assert!(
                obs.get(leak).is_none(),
                "`{leak}` reached the point programme: {obs}"
            );
        }
    }

    // The city imports its がん検診 attendance list; the resident's screening reaches the
    // programme under the same consent, as the fiscal year only.
    let p = &b.person;
    let list = b.scene.root().join("input").join("gan_kenshin.csv");
    std::fs::write(
        &list,
        format!(
            "保険者番号,被保険者証記号,被保険者証番号,枝番,生年月日,性別,がん検診受診日,検診種別,結果\n\
             {},{},{},{},{},{},20250910,胃がん,要精密検査\n",
            p.insurer_number,
            p.symbol,
            p.number,
            p.branch.clone().unwrap_or_default(),
            p.birth_date.replace('-', ""),
            if p.sex == lgwan_agent::domain::Sex::Female { "2" } else { "1" },
        ),
    )
    .unwrap();
    let screening = b
        .scene
        .agent(&["preview"], &[&list.display().to_string()])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let line: Value = serde_json::from_str(screening.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(field(&line, "category"), "checkup.attendance", "{line}");
    b.scene
        .agent(&["import"], &[&list.display().to_string()])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let mut want = want;
    want.insert(
        flow::copy_id(
            &b.scene,
            POINTS,
            field(&line, "record_id").as_str().unwrap(),
        )
        .unwrap(),
    );
    let pulled = flow::pull_until(&b.scene, POINTS, &out, &want)
        .await
        .unwrap();
    assert_eq!(pulled.keys().cloned().collect::<BTreeSet<_>>(), want);
    let text =
        serde_json::to_string(&pulled.values().map(|p| &p.payload).collect::<Vec<_>>()).unwrap();
    for leak in ["20250910", "2025-09-10", "胃がん", "要精密検査"] {
        assert!(!text.contains(leak), "`{leak}` reached the point programme");
    }
    assert!(text.contains("がん検診受診年度"), "{text}");

    // A health-points consent that asks for the body measurements too is refused.
    let refused = flow::try_grant(
        &b.scene,
        APP,
        &b.pseudonym,
        POINTS,
        "health-points",
        &["checkup.attendance", "checkup.body"],
        &[],
    )
    .await
    .unwrap();
    flow::assert_refused(&refused, "health-points-attendance-only");
    // And nothing more reached the programme.
    let again = flow::pull_until(&b.scene, POINTS, &out, &want)
        .await
        .unwrap();
    assert_eq!(again.keys().cloned().collect::<BTreeSet<_>>(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_points_sqlite() {
    health_points(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_points_postgres() {
    health_points(Backend::Postgres).await;
}
