//! Hubs under test: a throw-away PKI, a hub folder (keys, `hub.toml` with benchmark
//! limits), `internet-hub serve` as a child process, participant registration, and
//! the PostgreSQL database a run creates and drops.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use renkei_client::retry::RetryPolicy;
use renkei_client::transport::{ClientConfig, HubClient};
use renkei_crypto::participant::ParticipantId;
use renkei_hub::config::{HubConfig, Listen};
use renkei_hub::db::Db;
use sqlx::Connection;

/// Limits of the benchmark hub: the product defaults, except that the per-participant
/// rate limit is lifted (one load generator speaks for hundreds of clients), idle
/// keep-alive connections are allowed a minute between requests, and a listener takes
/// up to 20,000 connections, all from the load generator's one address (the defaults,
/// 4,096 and 256 from one address, would hold the idle-memory phase's 10,000 back).
pub const BENCH_LIMITS: &str = "\n[limits]\nrate_per_second = 10000000\nrate_burst = 10000000\n\
    header_timeout_secs = 60\nmax_connections = 20000\nmax_connections_per_address = 20000\n";

/// One participant's TLS files.
#[derive(Debug, Clone)]
pub struct Member {
    /// Who it is.
    pub id: ParticipantId,
    /// Its folder.
    pub dir: PathBuf,
}

impl Member {
    /// PEM client certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir
            .join(format!("{}-{}.pem", self.id.kind(), self.id.id()))
    }

    /// PEM private key.
    pub fn key(&self) -> PathBuf {
        self.dir
            .join(format!("{}-{}.key", self.id.kind(), self.id.id()))
    }

    /// The participant CA (which also signed the hub's server certificate).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A client of the hub at `addr` speaking as this member (default retries).
    pub fn client(&self, addr: SocketAddr) -> Result<HubClient> {
        self.client_with(addr, RetryPolicy::default())
    }

    /// A client of the hub at `addr` with the given retry policy.
    pub fn client_with(&self, addr: SocketAddr, retry: RetryPolicy) -> Result<HubClient> {
        let mut cfg = ClientConfig::new(
            &format!("https://{addr}"),
            self.ca(),
            self.cert(),
            self.key(),
        );
        cfg.timeout = Duration::from_secs(120);
        cfg.retry = retry;
        Ok(HubClient::new(cfg)?)
    }
}

/// Makes the CA and server certificate (for 127.0.0.1 and localhost) in `root/pki`, and
/// one client certificate per participant; returns the PKI folder and the members.
pub fn pki(root: &Path, ids: &[&str], now: DateTime<Utc>) -> Result<(PathBuf, Vec<Member>)> {
    let dir = root.join("pki");
    renkei_hub::pki::init(
        &dir,
        &["localhost".to_owned()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        397,
        now,
    )?;
    let mut members = Vec::new();
    for id in ids {
        let id: ParticipantId = id.parse()?;
        let out = root
            .join("certs")
            .join(format!("{}-{}", id.kind(), id.id()));
        renkei_hub::pki::issue(&dir, &id, &out, 30, now)?;
        members.push(Member { id, dir: out });
    }
    Ok((dir, members))
}

/// A free loopback port (bound, read and released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn free_listen() -> Result<Listen> {
    Ok(Listen {
        participant: format!("127.0.0.1:{}", free_port()?),
        portal: format!("127.0.0.1:{}", free_port()?),
        admin: format!("127.0.0.1:{}", free_port()?),
    })
}

/// Creates a hub folder (keys, `hub.toml`) on `database_url` with [`BENCH_LIMITS`].
pub fn hub_dir(dir: &Path, pki: &Path, database_url: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    renkei_hub::init::init_with(dir, pki, &free_listen()?)?;
    let path = dir.join("hub.toml");
    let text = std::fs::read_to_string(&path)?;
    let text = text.replace(
        "database_url = \"sqlite://hub.db\"",
        &format!("database_url = \"{database_url}\""),
    ) + BENCH_LIMITS;
    std::fs::write(&path, text)?;
    HubConfig::load(&path)?;
    Ok(path)
}

/// A second config beside `config`: same keys and database, other listen ports (a
/// second instance of the same hub).
pub fn second_instance(config: &Path, name: &str) -> Result<PathBuf> {
    let cfg = HubConfig::load(config)?;
    let text = std::fs::read_to_string(config)?;
    let new = free_listen()?;
    let l = &cfg.listen;
    let text = text
        .replace(&l.participant, &new.participant)
        .replace(&l.portal, &new.portal)
        .replace(&l.admin, &new.admin);
    let path = config.with_file_name(name);
    std::fs::write(&path, text)?;
    HubConfig::load(&path)?;
    Ok(path)
}

/// Registers participants (with their key-grant public keys) in the hub's database.
pub async fn register(
    database_url: &str,
    members: &[(&ParticipantId, Option<String>)],
    now: DateTime<Utc>,
) -> Result<()> {
    let db = Db::connect(database_url, 2).await?;
    for (id, grant_pk) in members {
        renkei_hub::registry::add(&db, id, &id.to_string(), grant_pk.as_deref(), None, now).await?;
    }
    db.pool().close().await;
    Ok(())
}

/// `internet-hub serve` running as a child process.
#[derive(Debug)]
pub struct HubProcess {
    child: tokio::process::Child,
    /// Its participant (mTLS) address.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
}

impl HubProcess {
    /// Starts `bin serve --config config` (log level warn, stderr to `config`'s folder)
    /// and waits until the participant port accepts connections.
    pub async fn start(bin: &Path, config: &Path) -> Result<HubProcess> {
        let cfg = HubConfig::load(config)?;
        let addr: SocketAddr = cfg.listen.participant.parse()?;
        let log_name = format!(
            "{}.log",
            config.file_stem().and_then(|s| s.to_str()).unwrap_or("hub")
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_file_name(log_name))?;
        let mut child = tokio::process::Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting `{}`", bin.display()))?;
        let pid = child.id().context("the hub exited at once")?;
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(HubProcess { child, addr, pid });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the hub exited with {status}; see the log beside `{}`",
                    config.display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the hub did not listen on {addr} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the hub and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// A fresh PostgreSQL database `name` on the server of `admin_url` (dropped first if a
/// previous run left it); returns its URL.
pub async fn create_pg_database(admin_url: &str, name: &str) -> Result<String> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to `{admin_url}`"))?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// Drops the database a run created.
pub async fn drop_pg_database(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = sqlx::AnyConnection::connect(admin_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
