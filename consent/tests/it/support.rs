//! Test databases (a fresh SQLite file or a fresh PostgreSQL database per test) and
//! fixtures.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use renkei_consent::{AnyConsentStore, ConsentTerms, DataPeriod, Method, PgStore, SqliteStore};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;

/// Environment variable naming the PostgreSQL server for tests.
pub(crate) const PG_ENV: &str = "RENKEI_TEST_PG_URL";

/// A store on a throw-away database, cleaned up by [`TestDb::finish`].
pub(crate) struct TestDb {
    pub(crate) store: AnyConsentStore,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// Drops the PostgreSQL database (SQLite files go with the temp dir).
    pub(crate) async fn finish(self) {
        if let AnyConsentStore::Postgres(s) = &self.store {
            s.pool().close().await;
        }
        if let Some((admin_url, name)) = &self.pg {
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(admin_url)
                .await
                .unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

/// A fresh SQLite file store in a temp dir.
pub(crate) async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("consent.db"))
        .await
        .unwrap();
    TestDb {
        store: AnyConsentStore::Sqlite(store),
        _dir: Some(dir),
        pg: None,
    }
}

/// A fresh PostgreSQL database, or `None` (with a loud note) when no server is
/// configured outside CI. In CI a missing server fails the test.
pub(crate) async fn postgres() -> Option<TestDb> {
    let Ok(admin_url) = std::env::var(PG_ENV) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{PG_ENV} is not set in CI: the PostgreSQL suite must run"
        );
        // Written straight to stderr, past the test harness's capture, so it is seen.
        let note = format!("!!! {PG_ENV} not set: SKIPPING a PostgreSQL consent store test !!!\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
        return None;
    };
    let name = format!("renkei_t_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let options = PgConnectOptions::from_str(&admin_url)
        .unwrap()
        .database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(12)
        .connect_with(options)
        .await
        .unwrap();
    let store = PgStore::from_pool(pool).await.unwrap();
    Some(TestDb {
        store: AnyConsentStore::Postgres(store),
        _dir: None,
        pg: Some((admin_url, name)),
    })
}

/// Runs raw SQL against the store's database (to tamper with it).
pub(crate) async fn exec(store: &AnyConsentStore, sql: &str) -> u64 {
    match store {
        AnyConsentStore::Sqlite(s) => sqlx::query(sql)
            .execute(s.pool())
            .await
            .unwrap()
            .rows_affected(),
        AnyConsentStore::Postgres(s) => sqlx::query(sql)
            .execute(s.pool())
            .await
            .unwrap()
            .rows_affected(),
    }
}

/// Defines, for each named `async fn NAME(&AnyConsentStore)`, a module `NAME` with a
/// `sqlite` and a `postgres` test running it.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::support::sqlite().await;
                super::$name(&db.store).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::support::postgres().await else { return };
                super::$name(&db.store).await;
                db.finish().await;
            }
        }
    )*};
}

pub(crate) const SUBJECT: &str = "st1_abcdefghijklmnopqrstuvwxyz234567";
pub(crate) const OTHER_SUBJECT: &str = "st1_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
pub(crate) const RECIPIENT: &str = "phr:asmile";
pub(crate) const PEPPER: &[u8] = b"test receipt pepper";

/// 2025-04-01 at `h`:00 UTC.
pub(crate) fn t(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 4, 1, h, 0, 0).single().unwrap()
}

pub(crate) fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

pub(crate) fn micro() -> Duration {
    Duration::microseconds(1)
}

/// Terms: checkup.body + lipids for FY2024 records, valid 08:00 to 20:00.
pub(crate) fn terms() -> ConsentTerms {
    ConsentTerms {
        subject: SUBJECT.into(),
        recipient: RECIPIENT.into(),
        purpose: "phr-display".into(),
        categories: vec!["checkup.body".into(), "checkup.lipids".into()],
        data_period: DataPeriod {
            from: Some(d(2024, 4, 1)),
            until: Some(d(2025, 3, 31)),
        },
        valid_from: t(8),
        valid_until: Some(t(20)),
        method: Method::App,
        evidence: Some(
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        granted_by: "resident".into(),
        guardian: None,
    }
}
