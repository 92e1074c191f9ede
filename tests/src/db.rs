//! The hub's database for one test: a SQLite file in the test's folder, or a new
//! PostgreSQL database made on the server named by `RENKEI_TEST_PG_URL`.

use std::path::Path;

use anyhow::{Context, bail};
use sqlx::Connection;

/// Which database a test runs the hub on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (a file, WAL).
    Sqlite,
    /// PostgreSQL from `RENKEI_TEST_PG_URL`.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Whether the tests run under CI (`CI` set), where nothing may skip silently.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The URL of a fresh database for one test, or `None` to skip: PostgreSQL without
/// `RENKEI_TEST_PG_URL` outside CI (a note is printed). Under CI that is an error.
pub async fn fresh_db(backend: Backend, dir: &Path) -> anyhow::Result<Option<String>> {
    match backend {
        Backend::Sqlite => Ok(Some(format!("sqlite://{}", dir.join("hub.db").display()))),
        Backend::Postgres => {
            let Ok(base) = std::env::var("RENKEI_TEST_PG_URL") else {
                if under_ci() {
                    bail!(
                        "CI must set RENKEI_TEST_PG_URL: the PostgreSQL end-to-end tests may not skip"
                    );
                }
                eprintln!("NOTE: RENKEI_TEST_PG_URL is not set; skipping the PostgreSQL variant");
                return Ok(None);
            };
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .with_context(|| "connecting to RENKEI_TEST_PG_URL".to_owned())?;
            let name = format!("renkei_e2e_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .with_context(|| format!("creating the database `{name}`"))?;
            let _ = conn.close().await;
            let (prefix, _) = base
                .rsplit_once('/')
                .context("RENKEI_TEST_PG_URL has no database name")?;
            Ok(Some(format!("{prefix}/{name}")))
        }
    }
}
