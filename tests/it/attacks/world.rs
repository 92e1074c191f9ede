//! The deployment the attacks run against, set up as an operator, a city and a vendor
//! would: city A's resident #1 imported, linked to the app by enrollment, with a consent
//! to the app's own display and one to the clinic's consultation. And the attackers'
//! tools: the CLI as a vendor runs it, a participant's own mTLS connection for what the
//! client library will not send, and a look at the hub's database.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use renkei_crypto::tls::{ClientTlsPaths, client_config};
use renkei_e2e::flow::{self, checkup_categories, field};
use renkei_e2e::http::{Request, Response, exchange_kept};
use renkei_e2e::proc::{Background, Output};
use renkei_e2e::scene::Member;
use renkei_e2e::{APP, Backend, HubProcess, Scene, SceneOptions};
use serde_json::Value;
use sqlx::Connection;

/// The clinic of every scene.
pub const CLINIC: &str = "clinic:mysos";

/// A consent as `renkei-client consent grant` answered it.
#[derive(Debug)]
pub struct Grant {
    /// The consent id.
    pub id: String,
    /// The receipt's revocation code, when the answer carried one.
    pub code: Option<String>,
    /// Standard output as printed.
    pub stdout: String,
    /// Standard output parsed.
    pub json: Value,
}

/// The deployment (fields drop in order: the agent and the hub before the folder).
#[derive(Debug)]
pub struct World {
    /// `lgwan-agent run` (enrollments, key grants).
    pub _agent: Background,
    /// `internet-hub serve`.
    pub hub: HubProcess,
    /// The folders, configs and database.
    pub scene: Scene,
    /// Resident #1's subject token (`lgwan-agent token`), which only city A may see.
    pub token: String,
    /// The app's pseudonym for resident #1.
    pub pseudonym: String,
    /// Resident #1's checkup categories (both consents cover them).
    pub categories: Vec<String>,
    /// City A's own records of resident #1 in those categories (preview lines), by id.
    pub originals: BTreeMap<String, Value>,
    /// The app's `phr-display` consent for itself.
    pub app_consent: Grant,
    /// The app's `online-consultation` consent for the clinic (48 hours).
    pub clinic_consent: Grant,
}

impl World {
    /// Hub, synthetic archive, `preview`, `import`, agent, `enroll`, both consents;
    /// `None` when the database is not available.
    pub async fn new(backend: Backend, members: &[&str]) -> Option<World> {
        let scene = Scene::new(&SceneOptions::new(backend, members), None)
            .await
            .unwrap()?;
        let hub = scene.start_hub().await.unwrap();
        let (archive, persons) = flow::synth_archive(&scene.root().join("input"), 2).unwrap();
        let preview = flow::preview(&scene, &[&archive]).await.unwrap();
        let archive = archive.display().to_string();
        scene
            .agent(&["import"], &[&archive])
            .await
            .unwrap()
            .ok()
            .unwrap();
        let agent = scene.start_agent().unwrap();
        let token = flow::token(&scene, &persons[0]).await.unwrap();
        let pseudonym = flow::enroll(&scene, APP, &persons[0], "user-0001")
            .await
            .unwrap();
        let categories = checkup_categories(&preview, &token);
        assert!(!categories.is_empty(), "resident #1 has no checkup records");
        let originals: BTreeMap<String, Value> = preview
            .into_iter()
            .filter(|l| field(l, "subject_token") == token.as_str())
            .filter(|l| {
                categories
                    .iter()
                    .any(|c| field(l, "category") == c.as_str())
            })
            .map(|l| (field(&l, "record_id").as_str().unwrap().to_owned(), l))
            .collect();
        let app_consent = grant(&scene, &pseudonym, APP, "phr-display", &categories, None)
            .await
            .unwrap();
        let clinic_consent = grant(
            &scene,
            &pseudonym,
            CLINIC,
            "online-consultation",
            &categories,
            Some(48),
        )
        .await
        .unwrap();
        Some(World {
            _agent: agent,
            hub,
            scene,
            token,
            pseudonym,
            categories,
            originals,
            app_consent,
            clinic_consent,
        })
    }

    /// A participant's library client (one attempt per request).
    pub fn client(&self, who: &str) -> renkei_client::HubClient {
        self.scene
            .hub_client(who, &self.scene.hub_url(), 1)
            .unwrap()
    }

    /// A member's folder (the source's too).
    pub fn member(&self, who: &str) -> Member {
        if who == self.scene.source.id {
            self.scene.source.clone()
        } else {
            self.scene.member(who).unwrap().clone()
        }
    }

    /// `renkei-client pull --out -` by `who` until it has `n` records; the JSON lines.
    pub async fn pull_lines(&self, who: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut seen: Vec<Value> = Vec::new();
        loop {
            let out = self
                .scene
                .client(who, &["pull", "--out", "-"])
                .await
                .unwrap();
            let out = out.ok().unwrap();
            seen.extend(out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()));
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{who} pulled {} of {n} records in 45 s",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// `renkei-client get RECORD` by `who`.
    pub async fn get(&self, who: &str, record: &str) -> Output {
        self.scene.client(who, &["get", record]).await.unwrap()
    }
}

/// `renkei-client consent grant` by the app for the resident it linked: `recipient`,
/// `purpose`, `categories` in this order, open-ended or valid for `hours`.
pub async fn grant(
    scene: &Scene,
    pseudonym: &str,
    recipient: &str,
    purpose: &str,
    categories: &[String],
    hours: Option<u32>,
) -> anyhow::Result<Grant> {
    let hours = hours.map(|h| h.to_string());
    let mut args = vec![
        "consent",
        "grant",
        "--subject",
        pseudonym,
        "--recipient",
        recipient,
    ];
    args.extend(["--purpose", purpose, "--granted-by", "resident"]);
    for c in categories {
        args.extend(["--category", c.as_str()]);
    }
    if let Some(h) = &hours {
        args.extend(["--valid-hours", h.as_str()]);
    }
    let out = scene.client(APP, &args).await?.ok()?;
    let json = out.json()?;
    Ok(Grant {
        id: json
            .pointer("/consent/id")
            .and_then(Value::as_str)
            .unwrap()
            .to_owned(),
        code: json
            .pointer("/receipt/revocation_code")
            .and_then(Value::as_str)
            .map(str::to_owned),
        stdout: out.stdout,
        json,
    })
}

/// A participant's own mTLS connection to the participant API, kept open between
/// requests: for what the client library refuses to send (a 60 KB record id), to see
/// an answer's raw bytes, and to hold a connection open across a certificate revocation.
pub struct Raw {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    host: String,
}

impl Raw {
    /// Connects as `m` (its certificate, key and CA) and completes the TLS handshake.
    pub fn open(m: &Member, addr: SocketAddr) -> anyhow::Result<Raw> {
        let tls = client_config(&ClientTlsPaths {
            ca: m.ca(),
            cert_chain: m.cert(),
            key: m.key(),
        })?;
        let name = rustls::pki_types::ServerName::try_from(addr.ip().to_string())?;
        let conn = rustls::ClientConnection::new(tls, name)?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .context("tls handshake")?;
        }
        Ok(Raw {
            stream,
            host: addr.to_string(),
        })
    }

    /// One request on this connection; the answer as sent.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let mut req = Request::new(method, &self.host, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        // Loopback to another process, a few milliseconds: blocking is fine on this
        // multi-threaded runtime.
        tokio::task::block_in_place(|| exchange_kept(&mut self.stream, &req))
    }
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raw({})", self.host)
    }
}

/// A connection to the hub's database (SQLite file or PostgreSQL), as an auditor with a
/// copy of it would look.
pub async fn hub_db(w: &World) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&w.scene.db_url).await.unwrap()
}

/// `SELECT COUNT(*) …` with text parameters.
pub async fn count(w: &World, sql: &str, binds: &[&str]) -> i64 {
    let mut db = hub_db(w).await;
    let mut q = sqlx::query_scalar::<_, i64>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    let n = q.fetch_one(&mut db).await.unwrap();
    let _ = db.close().await;
    n
}

/// Every string in a JSON value, recursively.
pub fn strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The hub's refusal in a library error: (status, code).
pub fn refusal(e: &renkei_client::Error) -> (u16, String) {
    match e {
        renkei_client::Error::Hub { status, code, .. } => (*status, code.clone()),
        other => panic!("not a refusal by the hub: {other}"),
    }
}
