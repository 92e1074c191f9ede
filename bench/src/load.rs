//! The load generator: N kept-alive HTTP/1.1 connections over mTLS (tokio-rustls and
//! hyper's client connection), each sending its next request when the last answered,
//! for a fixed time; full-handshake loops; and idle connections held open. The same
//! code drives the hub and nginx, so their figures compare.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use renkei_crypto::tls::{ClientTlsPaths, client_config};
use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::stats::{Latency, latency};

/// Where to connect and how to authenticate.
#[derive(Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("addr", &self.addr).finish()
    }
}

impl Target {
    /// A target at `addr` (certificate for 127.0.0.1) with a participant's TLS files.
    /// TLS session resumption is off: every new connection is a full handshake.
    pub fn new(
        addr: SocketAddr,
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Target> {
        let base = client_config(&ClientTlsPaths {
            ca: ca.to_path_buf(),
            cert_chain: cert.to_path_buf(),
            key: key.to_path_buf(),
        })?;
        let mut config = (*base).clone();
        config.resumption = rustls::client::Resumption::disabled();
        config.enable_sni = false;
        let server_name = ServerName::try_from(addr.ip().to_string())?;
        Ok(Target {
            addr,
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Another server, same client identity.
    pub fn at(&self, addr: SocketAddr) -> Target {
        Target {
            addr,
            ..self.clone()
        }
    }
}

/// An open HTTP/1.1 connection over mTLS.
pub type Conn = SendRequest<Empty<Bytes>>;

/// Connects, completes the TLS handshake (TLS 1.3 where offered) and the HTTP/1.1 set-up.
pub async fn connect(t: &Target) -> Result<Conn> {
    let tcp = TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = t.connector.connect(t.server_name.clone(), tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One GET on an open connection; the status and the whole body.
pub async fn get(conn: &mut Conn, path: &str, close: bool) -> Result<(StatusCode, Bytes)> {
    conn.ready().await?;
    let mut req = Request::get(path).header(header::HOST, "127.0.0.1");
    if close {
        req = req.header(header::CONNECTION, "close");
    }
    let resp = conn.send_request(req.body(Empty::new())?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// What a load phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Connections that served the phase.
    pub connections: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// 2xx answers.
    pub ok: usize,
    /// Non-2xx answers and transport errors.
    pub errors: usize,
    /// 2xx answers per second.
    pub rps: f64,
    /// Latency of 2xx answers.
    pub latency: Latency,
    /// Non-2xx answers by status code (0: transport error).
    pub failures: BTreeMap<u16, usize>,
}

/// Keeps `conns` connections busy for `duration`, each sending `GET paths[random]` as
/// soon as the previous answer is read. All connections are open before the clock
/// starts; a connection that fails is reopened (its time counts).
pub async fn keepalive(
    t: &Target,
    conns: usize,
    duration: Duration,
    paths: Arc<Vec<String>>,
) -> Result<LoadResult> {
    if paths.is_empty() {
        return Err(anyhow!("no paths to request"));
    }
    let ready = Arc::new(AtomicUsize::new(0));
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(conns);
    let open_limit = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..conns {
        let (t, paths, ready, mut start_rx, open_limit) = (
            t.clone(),
            paths.clone(),
            ready.clone(),
            start_rx.clone(),
            open_limit.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            let mut conn = {
                let _p = open_limit.acquire().await;
                connect(&t).await
            };
            ready.fetch_add(1, Ordering::SeqCst);
            let deadline = loop {
                if let Some(s) = *start_rx.borrow_and_update() {
                    break s + duration;
                }
                if start_rx.changed().await.is_err() {
                    return (Vec::new(), BTreeMap::new());
                }
            };
            let mut samples = Vec::with_capacity(4096);
            let mut errors = BTreeMap::<u16, usize>::new();
            while Instant::now() < deadline {
                let c = match &mut conn {
                    Ok(c) => c,
                    Err(_) => {
                        *errors.entry(0).or_default() += 1;
                        conn = connect(&t).await;
                        continue;
                    }
                };
                let path = paths
                    .get(rng.gen_range(0..paths.len()))
                    .map_or("/", String::as_str);
                let t0 = Instant::now();
                match get(c, path, false).await {
                    Ok((s, _)) if s.is_success() => {
                        samples.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok((s, _)) => *errors.entry(s.as_u16()).or_default() += 1,
                    Err(_) => {
                        *errors.entry(0).or_default() += 1;
                        conn = connect(&t).await;
                    }
                }
            }
            (samples, errors)
        }));
    }
    let waited = Instant::now();
    while ready.load(Ordering::SeqCst) < conns && waited.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    start_tx.send(Some(started)).context("starting the load")?;
    let mut all = Vec::new();
    let mut failures = BTreeMap::new();
    for task in tasks {
        let (samples, e) = task.await?;
        all.extend(samples);
        for (k, v) in e {
            *failures.entry(k).or_default() += v;
        }
    }
    let errors = failures.values().sum();
    let seconds = duration.as_secs_f64().max(
        started
            .elapsed()
            .as_secs_f64()
            .min(duration.as_secs_f64() + 1.0),
    );
    let ok = all.len();
    Ok(LoadResult {
        connections: conns,
        seconds,
        ok,
        errors,
        rps: ok as f64 / seconds,
        latency: latency(all),
        failures,
    })
}

/// New connections per second: `concurrency` loops, each opening a connection (full
/// mTLS handshake, no resumption), sending one `GET path` with `Connection: close`,
/// reading the answer (any status) and closing, for `duration`.
pub async fn handshakes(
    t: &Target,
    concurrency: usize,
    duration: Duration,
    path: &str,
) -> Result<LoadResult> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (t, path) = (t.clone(), path.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let done = async {
                    let mut c = connect(&t).await?;
                    get(&mut c, &path, true).await
                }
                .await;
                match done {
                    Ok(_) => {
                        samples.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX))
                    }
                    Err(_) => errors += 1,
                }
            }
            (samples, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (samples, e) = task.await?;
        all.extend(samples);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let ok = all.len();
    Ok(LoadResult {
        connections: concurrency,
        seconds,
        ok,
        errors,
        rps: ok as f64 / seconds,
        latency: latency(all),
        failures: BTreeMap::from([(0, errors)]),
    })
}

/// Opens `n` connections and sends one `GET path` on each (so the server has finished
/// the handshake and set the connection up); returns them open and idle.
pub async fn hold_idle(t: &Target, n: usize, path: &str) -> Result<Vec<Conn>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (t, path, limit) = (t.clone(), path.to_owned(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _p = limit.acquire().await;
            let mut c = connect(&t).await?;
            get(&mut c, &path, false).await?;
            Ok::<_, anyhow::Error>(c)
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for task in tasks {
        conns.push(task.await??);
    }
    Ok(conns)
}
