//! Issue 20, health points with the real binaries: a health-point programme (a PHR
//! vendor's point service, like アスマイル's) receives a resident's checkup attendance
//! and nothing else (one Observation: the fiscal year), and a `health-points` consent
//! that asks for more is refused by the policies.

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

    // A health-points consent that asks for the body measurements too is refused.
    let refused = b
        .scene
        .client(
            APP,
            &[
                "consent",
                "grant",
                "--subject",
                &b.pseudonym,
                "--recipient",
                POINTS,
                "--purpose",
                "health-points",
                "--granted-by",
                "resident",
                "--category",
                "checkup.attendance",
                "--category",
                "checkup.body",
            ],
        )
        .await
        .unwrap();
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("health-points-attendance-only"), "{text}");
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
