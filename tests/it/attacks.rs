//! The attacks of issue 13, tried from outside against the real binaries by participants
//! holding valid, properly issued certificates (`docs/authorization.md`). Each check fails
//! if the hub check it is named after were removed. One scene on SQLite carries them all
//! in turn; the second source's attacks (4, and 9 with its certificate) also run on
//! PostgreSQL. Attack 5 (guessable web enrollment) is not here.

mod limits;
mod portal;
mod relations;
mod world;

use renkei_e2e::flow::field;
use renkei_e2e::{APP, Backend};

use world::{CLINIC, World};

/// The record id the first pulled line names (the recipient's copy).
fn first_record(lines: &[serde_json::Value]) -> String {
    field(&lines[0], "record_id").as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_sqlite() {
    let w = World::new(Backend::Sqlite, &[APP, CLINIC, limits::BROKEN])
        .await
        .unwrap();
    let n = w.originals.len();
    let app_lines = w.pull_lines(APP, n).await;
    let clinic_lines = w.pull_lines(CLINIC, n).await;
    let (app_record, clinic_record) = (first_record(&app_lines), first_record(&clinic_lines));

    relations::no_subject_token_in_grant_answers(&w);
    relations::no_shared_identifiers(&w, &app_lines, &clinic_lines).await;
    relations::a_clinic_cannot_revoke_the_apps_consent(&w, &app_record).await;
    let (city_b, serial) = relations::register_city_b(&w).await;
    relations::a_second_source_acts_on_no_one_elses_resident(&w, &city_b, &app_record).await;
    limits::identical_consents_are_one(&w).await;
    limits::a_long_id_is_refused_without_echo_or_audit_growth(&w).await;
    limits::unreadable_records_reach_their_source(&w, &clinic_record).await;
    portal::the_portal_pages_history_and_scopes_receipts(&w, &app_record).await;
    relations::no_subject_token_in_revoke_answers(&w).await;
    limits::a_revoked_certificate_stops_working_on_an_open_connection(
        &w,
        &city_b,
        &serial,
        &app_record,
    )
    .await;

    let audit = w.scene.audit_verify().await.unwrap();
    assert!(audit.status.success(), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_source_postgres() {
    let Some(w) = World::new(Backend::Postgres, &[APP, CLINIC]).await else {
        return;
    };
    let app_lines = w.pull_lines(APP, w.originals.len()).await;
    let app_record = first_record(&app_lines);
    let (city_b, serial) = relations::register_city_b(&w).await;
    relations::a_second_source_acts_on_no_one_elses_resident(&w, &city_b, &app_record).await;
    limits::a_revoked_certificate_stops_working_on_an_open_connection(
        &w,
        &city_b,
        &serial,
        &app_record,
    )
    .await;
    let audit = w.scene.audit_verify().await.unwrap();
    assert!(audit.status.success(), "{audit}");
}
