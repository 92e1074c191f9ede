//! A hub on a fresh database (SQLite file or a new PostgreSQL database), registered
//! participants with their keys, and helpers to call the API as any of them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use http_body_util::BodyExt;
use renkei_crypto::envelope::{EnvelopeHeader, SealedRecord, open, seal};
use renkei_crypto::grant::{KeyGrant, RecipientSecretKey, open_grant};
use renkei_crypto::keys::{KeyVersion, PseudonymKey, RecordKey, write_secret_file};
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::sign::SigningKey;
use renkei_crypto::token::{RecordId, recipient_record_id, record_id, subject_binding};
use renkei_hub::api::{self, limits::RateLimiter};
use renkei_hub::broker::{Clock, Hub};
use renkei_hub::config::HubConfig;
use renkei_hub::server::PeerIdentity;
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "../../../tests/pki/fixture.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod fixture;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database URL for a fresh test database, or None to skip (PostgreSQL not configured locally).
pub async fn fresh_db(backend: Backend, dir: &Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("hub.db").display())),
        Backend::Postgres => {
            let Ok(base) = std::env::var("RENKEI_TEST_PG_URL") else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI must set RENKEI_TEST_PG_URL: PostgreSQL tests may not skip"
                );
                eprintln!("NOTE: RENKEI_TEST_PG_URL is not set; skipping the PostgreSQL variant");
                return None;
            };
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to RENKEI_TEST_PG_URL");
            let name = format!("renkei_hub_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            Some(format!("{prefix}/{name}"))
        }
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).unwrap()
}

pub struct Participant {
    pub id: ParticipantId,
    pub grant_key: RecipientSecretKey,
}

pub struct TestHub {
    pub hub: Arc<Hub>,
    pub router: axum::Router,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
    pub config: HubConfig,
    pub source_key: RecordKey,
    pub enrollment_key: RecipientSecretKey,
}

pub const SUBJECT: &str = "st1_abcdefghijklmnopqrstuvwxyz234567";
pub const OTHER_SUBJECT: &str = "st1_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";

pub fn write_config(dir: &Path, db_url: &str, pki: &Path) -> HubConfig {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    if !keys.join("pseudonym.key").exists() {
        PseudonymKey::generate(KeyVersion::V1)
            .save(&keys.join("pseudonym.key"))
            .unwrap();
        SigningKey::generate(KeyVersion::V1)
            .save(&keys.join("signing.key"))
            .unwrap();
        write_secret_file(&keys.join("pepper.key"), &[7u8; 32]).unwrap();
    }
    let text = format!(
        "database_url = \"{db_url}\"\n[listen]\nparticipant = \"127.0.0.1:0\"\nportal = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [tls]\ncert = \"{p}/server.pem\"\nkey = \"{p}/server.key\"\nclient_ca = \"{p}/ca.pem\"\ncrls = [\"{p}/crl.pem\"]\n\
         [keys]\npseudonym = \"keys/pseudonym.key\"\nsigning = \"keys/signing.key\"\nreceipt_pepper = \"keys/pepper.key\"\n\
         [limits]\nmax_body_bytes = 1048576\nrate_per_second = 100000\nrate_burst = 100000\nportal_max_failures = 3\n",
        p = pki.display()
    );
    let path = dir.join("hub.toml");
    std::fs::write(&path, &text).unwrap();
    HubConfig::load(&path).unwrap()
}

impl TestHub {
    pub async fn new(backend: Backend) -> Option<TestHub> {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_db(backend, dir.path()).await?;
        let pki = fixture::source_dir();
        let config = write_config(dir.path(), &url, &pki);
        Some(Self::on(config, dir).await)
    }

    /// A second hub instance on the same database (same keys).
    pub async fn second_instance(&self) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let mut th = Self::on(self.config.clone(), dir).await;
        th.clock = self.clock.clone();
        th.source_key = RecordKey::from_bytes([1u8; 32], KeyVersion::V1);
        th
    }

    /// A hub on an explicit config.
    pub async fn on_config(config: HubConfig, dir: tempfile::TempDir) -> TestHub {
        Self::on(config, dir).await
    }

    async fn on(config: HubConfig, dir: tempfile::TempDir) -> TestHub {
        let clock = Clock::Fixed(Arc::new(Mutex::new(t0())));
        let hub = renkei_hub::app::build_hub(&config, clock.clone())
            .await
            .unwrap();
        let router = api::router(
            hub.clone(),
            1 << 20,
            Arc::new(RateLimiter::new(100_000, 100_000)),
        );
        TestHub {
            hub,
            router,
            clock,
            dir,
            config,
            source_key: RecordKey::from_bytes([1u8; 32], KeyVersion::V1),
            enrollment_key: RecipientSecretKey::generate(KeyVersion::V1),
        }
    }

    /// Registers the usual participants; returns their grant keys by id.
    pub async fn register_all(&self) -> Vec<Participant> {
        let mut out = Vec::new();
        for id in [
            "source:city-a",
            "phr:asmile",
            "phr:other",
            "clinic:mysos",
            "analyst:hachioji",
            "municipality:city-a",
        ] {
            let pid: ParticipantId = id.parse().unwrap();
            let key = RecipientSecretKey::generate(KeyVersion::V1);
            let enroll =
                (id == "source:city-a").then(|| self.enrollment_key.public_key().to_base64());
            renkei_hub::registry::add(
                &self.hub.db,
                &pid,
                id,
                Some(&key.public_key().to_base64()),
                enroll.as_deref(),
                t0(),
            )
            .await
            .unwrap();
            out.push(Participant {
                id: pid,
                grant_key: key,
            });
        }
        out
    }

    /// `phr:asmile` grants `recipient` a consent for `purpose` over `categories` for its
    /// user `pseudonym`, with the fields of `extra` (an object) added; returns its id.
    pub async fn app_consent(
        &self,
        pseudonym: &str,
        recipient: &str,
        purpose: &str,
        categories: &[&str],
        extra: Value,
    ) -> String {
        let mut body = json!({
            "subject": pseudonym, "recipient": recipient, "purpose": purpose,
            "categories": categories, "method": "app", "granted_by": "resident"
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (st, v) = self
            .call(Some("phr:asmile"), "POST", "/v1/consents", Some(body))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["consent"]["id"].as_str().unwrap().to_owned()
    }

    pub fn set_now(&self, t: DateTime<Utc>) {
        self.clock.set(t);
    }

    /// Calls the API as `who` (None: no client identity).
    pub async fn call(
        &self,
        who: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        if let Some(w) = who {
            req.extensions_mut()
                .insert(PeerIdentity::Participant(w.parse().unwrap()));
        }
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    /// Calls the API as `who`, returning the body's bytes as they came.
    pub async fn call_raw(
        &self,
        who: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        if let Some(w) = who {
            req.extensions_mut()
                .insert(PeerIdentity::Participant(w.parse().unwrap()));
        }
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, bytes.to_vec())
    }

    /// A sealed checkup record of `subject` from `source:city-a`.
    pub fn sealed(
        &self,
        doc: &str,
        subject: &str,
        category: &str,
        date: NaiveDate,
        payload: &[u8],
    ) -> (SealedRecord, String) {
        let sealed = seal_as(
            "source:city-a",
            &self.source_key,
            &Doc {
                id: doc,
                category,
                date,
            },
            subject,
            payload,
        );
        (sealed, subject.to_owned())
    }

    /// Uploads one record as `who`, naming its subject `subject`.
    pub async fn upload_as(
        &self,
        who: &str,
        r: &SealedRecord,
        subject: &str,
    ) -> (StatusCode, Value) {
        let body = json!({ "records": [{ "sealed": data_encoding::BASE64.encode(&r.to_bytes()), "subject": subject }] });
        self.call(Some(who), "POST", "/v1/records", Some(body))
            .await
    }

    /// The id under which `who` knows record `rid`: its own copy's id.
    pub fn alias(&self, who: &str, rid: &str) -> String {
        recipient_record_id(&self.source_key, &RecordId::parse(rid).unwrap(), who).to_string()
    }

    /// Uploads records; the subject of each is looked up from what `sealed` recorded.
    pub async fn upload(&self, records: &[&(SealedRecord, String)]) -> (StatusCode, Value) {
        let items: Vec<Value> = records
            .iter()
            .map(|(r, subject)| json!({ "sealed": data_encoding::BASE64.encode(&r.to_bytes()), "subject": subject }))
            .collect();
        self.call(
            Some("source:city-a"),
            "POST",
            "/v1/records",
            Some(json!({ "records": items })),
        )
        .await
    }

    /// Acts as the source agent: the grants (with copies) answering every pending
    /// key-grant request, not yet uploaded.
    pub async fn pending_grants(&self) -> Vec<renkei_client::api::GrantUpload> {
        let (st, v) = self
            .call(
                Some("source:city-a"),
                "GET",
                "/v1/source/key-grant-requests?limit=1000",
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let mut sealers = renkei_client::source::Sealers::default();
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                // As the agent does: check the record is ours, seal the recipient's copy.
                let request: renkei_client::api::GrantRequest =
                    serde_json::from_value(r.clone()).unwrap();
                // This stands for a source that trusts the hub's key listing (the hub's
                // own checks are under test here; the agent's checks are tested end to end).
                renkei_client::source::grant_for(
                    |_| Some(&self.source_key),
                    "source:city-a",
                    &request,
                    &request.recipient_key,
                    &mut sealers,
                )
                .unwrap()
            })
            .collect()
    }

    /// Acts as the source agent: answers every pending key-grant request.
    pub async fn answer_grants(&self) -> usize {
        let grants = self.pending_grants().await;
        if grants.is_empty() {
            return 0;
        }
        let (st, v) = self
            .call(
                Some("source:city-a"),
                "POST",
                "/v1/source/key-grants",
                Some(json!({ "grants": grants })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["stored"].as_u64().unwrap() as usize
    }

    /// Links `subject` to a PHR app through the enrollment path; returns the app's pseudonym.
    pub async fn enroll(&self, app: &str, subject: &str) -> String {
        let sealed = renkei_crypto::grant::hpke_seal(
            &self.enrollment_key.public_key(),
            b"test",
            b"",
            b"{\"synthetic\":true}",
        )
        .unwrap();
        let (st, v) = self
            .call(Some(app), "POST", "/v1/enrollments", Some(json!({ "source": "source:city-a", "user_ref": "user-1", "sealed": data_encoding::BASE64.encode(&sealed) })))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (st, v) = self
            .call(Some("source:city-a"), "GET", "/v1/source/enrollments", None)
            .await;
        assert_eq!(st, StatusCode::OK);
        assert!(
            v["enrollments"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == id.as_str())
        );
        let (st, v) = self
            .call(
                Some("source:city-a"),
                "POST",
                &format!("/v1/source/enrollments/{id}/result"),
                Some(json!({ "outcome": "linked", "subject_token": subject })),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, v) = self
            .call(Some(app), "GET", &format!("/v1/enrollments/{id}"), None)
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["status"], "linked");
        v["pseudonym"].as_str().unwrap().to_owned()
    }

    /// Drains the feed of `who` and decrypts every item with its key.
    pub async fn pull(&self, who: &Participant) -> Vec<(String, String, Vec<u8>)> {
        let me = who.id.to_string();
        let (st, v) = self
            .call(Some(&me), "GET", "/v1/feed?cursor=0&limit=1000", None)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| decrypt(who, it))
            .collect()
    }
}

/// Which document, category and date a test record stands for.
pub struct Doc<'a> {
    pub id: &'a str,
    pub category: &'a str,
    pub date: NaiveDate,
}

/// A record of `doc` about `subject`, sealed by `source` under its own record `key`.
pub fn seal_as(
    source: &str,
    key: &RecordKey,
    doc: &Doc<'_>,
    subject: &str,
    payload: &[u8],
) -> SealedRecord {
    let rid = record_id(key, doc.id, doc.category);
    let header = EnvelopeHeader {
        subject_binding: subject_binding(key, &rid, subject),
        record_id: rid,
        category: doc.category.into(),
        source: source.into(),
        effective_date: doc.date,
        schema_version: 1,
        key_version: KeyVersion::V1,
    };
    seal(key, header, payload).unwrap()
}

/// Opens a feed item: (pseudonym, category, plaintext).
pub fn decrypt(who: &Participant, it: &Value) -> (String, String, Vec<u8>) {
    let sealed = SealedRecord::from_bytes(
        &data_encoding::BASE64
            .decode(it["sealed"].as_str().unwrap().as_bytes())
            .unwrap(),
    )
    .unwrap();
    let grant = KeyGrant::from_base64(it["grant"].as_str().unwrap()).unwrap();
    let dek = open_grant(
        &who.grant_key,
        &sealed.header().record_id,
        &who.id.to_string(),
        &grant,
    )
    .unwrap();
    let mut plain = open(&dek, &sealed).unwrap();
    // The source pads each copy's JSON with trailing spaces to a size bucket.
    while plain.last() == Some(&b' ') {
        plain.pop();
    }
    (
        it["pseudonym"].as_str().unwrap().to_owned(),
        it["category"].as_str().unwrap().to_owned(),
        plain,
    )
}

pub fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// Runs an async test body against both databases.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(h) =
                    $crate::harness::TestHub::new($crate::harness::Backend::Sqlite).await
                {
                    ($body)(h).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(h) =
                    $crate::harness::TestHub::new($crate::harness::Backend::Postgres).await
                {
                    ($body)(h).await;
                }
            }
        }
    };
}

pub(crate) use both;

/// The built `internet-hub` command (its own package since the demo moved out of this
/// library): next to the test executable's `deps/`, as `cargo test --workspace` builds it.
pub fn hub_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("internet-hub");
    assert!(
        bin.is_file(),
        "`{}` is not built: run `cargo build -p internet-hub` (or `cargo test --workspace`)",
        bin.display()
    );
    bin
}
