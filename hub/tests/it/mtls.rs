//! Real mTLS on loopback: the participant listener accepts only certificates of the
//! participant CA that are valid, unrevoked and name a participant.

use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use renkei_crypto::tls::{ClientTlsPaths, client_config};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{Backend, TestHub, fixture::TestPki};

async fn get(
    addr: std::net::SocketAddr,
    pki: &TestPki,
    client: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let cfg = client_config(&ClientTlsPaths {
        ca: pki.pem("ca"),
        cert_chain: pki.pem(client),
        key: pki.key(client),
    })
    .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(Arc::clone(&cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A TLS connection to `addr` with `client`'s certificate of `pki`.
async fn tls_to(
    addr: std::net::SocketAddr,
    pki: &TestPki,
    client: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let cfg = client_config(&ClientTlsPaths {
        ca: pki.pem("ca"),
        cert_chain: pki.pem(client),
        key: pki.key(client),
    })
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    TlsConnector::from(cfg).connect(name, tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_listener_requires_a_good_certificate() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let pki = TestPki::new();
    let cfg = crate::harness::write_config(h.dir.path(), &h.config.database_url, pki.dir());
    let running = renkei_hub::app::start(&cfg, h.clock.clone()).await.unwrap();
    let addr = running.participant_addr;

    let (st, body) = get(addr, &pki, "phr-asmile", "/v1/feed").await.unwrap();
    assert_eq!(st, 200, "{body}");
    let (st, _) = get(addr, &pki, "phr-asmile", "/v1/openapi.json")
        .await
        .unwrap();
    assert_eq!(st, 200);
    for bad in ["expired", "revoked", "wrong-ca"] {
        let r = get(addr, &pki, bad, "/v1/feed").await;
        assert!(
            r.is_err() || r.as_ref().is_ok_and(|(s, _)| *s != 200),
            "{bad}: {r:?}"
        );
        if let Ok((s, _)) = r {
            panic!("{bad} got an HTTP answer {s}; the handshake must fail");
        }
    }
    for no_identity in ["no-san", "two-san", "unknown-kind"] {
        let (st, body) = get(addr, &pki, no_identity, "/v1/feed").await.unwrap();
        assert_eq!(st, 401, "{no_identity}: {body}");
    }
    // The admin listener answers health and readiness.
    let admin = running.admin_addr;
    let mut tcp = TcpStream::connect(admin).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // The metrics count what happened: requests by route, kind and status class with
    // their latency, and the refused handshakes by reason.
    let mut tcp = TcpStream::connect(admin).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    tcp.read_to_string(&mut metrics).await.unwrap();
    for want in [
        "renkei_http_requests_total{listener=\"participant\",route=\"/v1/feed\",method=\"GET\",kind=\"phr\",code_class=\"2xx\"} 1",
        "renkei_http_requests_total{listener=\"participant\",route=\"/v1/feed\",method=\"GET\",kind=\"invalid\",code_class=\"4xx\"} 3",
        "renkei_http_request_errors_total{listener=\"participant\",route=\"/v1/feed\",method=\"GET\",kind=\"invalid\"} 3",
        "renkei_http_request_duration_seconds_count{listener=\"participant\",route=\"/v1/feed\",method=\"GET\",kind=\"phr\"} 1",
        "renkei_tls_handshake_failures_total{listener=\"participant\",reason=\"certificate_expired\"} 1",
        "renkei_tls_handshake_failures_total{listener=\"participant\",reason=\"certificate_revoked\"} 1",
        "renkei_tls_handshake_failures_total{listener=\"participant\",reason=\"certificate_unknown_issuer\"} 1",
        "renkei_build_info{version=",
        "process_resident_memory_bytes ",
        "renkei_portal_locked_clients 0",
    ] {
        assert!(metrics.contains(want), "no `{want}` in:\n{metrics}");
    }
    // Prometheus' text format: no line starts with blanks.
    assert!(
        metrics.lines().all(|l| !l.starts_with(' ')),
        "an indented line in:\n{metrics}"
    );
    running.shutdown().await;
}

/// Hot reload: a renewed server certificate and a new CRL take effect for new
/// connections on `reload`, an open connection keeps working, and an open connection
/// of the revoked participant is refused on its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rotates_server_certificate_and_crl_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let now = renkei_hub::broker::Clock::System.now();
    let lo = [std::net::IpAddr::from([127, 0, 0, 1])];
    renkei_hub::pki::init(&pki_dir, &["localhost".into()], &lo, 397, now).unwrap();
    let phr: renkei_crypto::participant::ParticipantId = "phr:asmile".parse().unwrap();
    let clinic: renkei_crypto::participant::ParticipantId = "clinic:mysos".parse().unwrap();
    let certs = dir.path().join("certs");
    renkei_hub::pki::issue(&pki_dir, &phr, &certs, 30, now).unwrap();
    let clinic_serial = renkei_hub::pki::issue(&pki_dir, &clinic, &certs, 30, now).unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let cfg = crate::harness::write_config(dir.path(), &url, &pki_dir);
    let running = renkei_hub::app::start(&cfg, renkei_hub::broker::Clock::System)
        .await
        .unwrap();
    for p in [&phr, &clinic] {
        renkei_hub::registry::add(&running.hub.db, p, "x", None, None, now)
            .await
            .unwrap();
    }
    let addr = running.participant_addr;
    let client_cfg = |name: &str| {
        client_config(&ClientTlsPaths {
            ca: pki_dir.join("ca.pem"),
            cert_chain: certs.join(format!("{name}.pem")),
            key: certs.join(format!("{name}.key")),
        })
        .unwrap()
    };
    let connect = |cfg: Arc<rustls::ClientConfig>| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(cfg).connect(name, tcp).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Ok::<_, std::io::Error>(send)
    };
    let get = |mut send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>| async move {
        let req = hyper::Request::get("/v1/feed")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        // Read the body so the connection is ready for its next request.
        let _ = resp.into_body().collect().await;
        (status, send)
    };
    let (status, open_conn) = get(connect(client_cfg("phr-asmile")).await.unwrap()).await;
    assert_eq!(status, 200);
    let (status, clinic_conn) = get(connect(client_cfg("clinic-mysos")).await.unwrap()).await;
    assert_eq!(status, 200);
    let old_server = std::fs::read(pki_dir.join("server.pem")).unwrap();

    renkei_hub::pki::revoke(&pki_dir, &clinic_serial, now).unwrap();
    renkei_hub::pki::renew_server(&pki_dir, &["localhost".into()], &lo, now).unwrap();
    assert_ne!(
        std::fs::read(pki_dir.join("server.pem")).unwrap(),
        old_server
    );
    assert!(
        connect(client_cfg("clinic-mysos")).await.is_ok(),
        "before reload the old CRL is in force"
    );
    running.reload(&cfg).unwrap();

    // The open connection still works; new ones see the new CRL and the new certificate.
    let (status, _) = get(open_conn).await;
    assert_eq!(status, 200, "an open connection is not dropped by a reload");
    // The revoked clinic's keep-alive connection, open since before the revocation, is
    // refused on its next request.
    let (status, clinic_conn) = get(clinic_conn).await;
    assert_eq!(
        status, 401,
        "a revoked certificate kept working on an open connection"
    );
    let (status, _) = get(clinic_conn).await;
    assert_eq!(status, 401);
    match connect(client_cfg("clinic-mysos")).await {
        Err(_) => {}
        Ok(send) => {
            let req = hyper::Request::get("/v1/feed")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let mut send = send;
            assert!(
                send.send_request(req).await.is_err(),
                "the revoked clinic must be refused after reload"
            );
        }
    }
    let (status, _) = get(connect(client_cfg("phr-asmile")).await.unwrap()).await;
    assert_eq!(status, 200);

    // A broken policy folder is refused and the running set-up stays.
    let mut bad = cfg.clone();
    bad.policies_dir = Some(dir.path().join("no-such-policies"));
    assert!(running.reload(&bad).is_err());
    let (status, _) = get(connect(client_cfg("phr-asmile")).await.unwrap()).await;
    assert_eq!(status, 200);
    running.shutdown().await;
}

/// A client that trickles its headers is dropped after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_dropped_within_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let pki = TestPki::new();
    let mut cfg = crate::harness::write_config(h.dir.path(), &h.config.database_url, pki.dir());
    cfg.limits.header_timeout = std::time::Duration::from_secs(1);
    let running = renkei_hub::app::start(&cfg, h.clock.clone()).await.unwrap();
    let mut tls = tls_to(running.participant_addr, &pki, "phr-asmile").await;
    tls.write_all(b"GET /v1/feed HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // Keep trickling one header byte every 300 ms; the server must close anyway.
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if tls.write_all(b"x").await.is_err() {
                return;
            }
            match tokio::time::timeout(
                std::time::Duration::from_millis(300),
                tls.read_buf(&mut buf),
            )
            .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "the slow client was not dropped within 10 s"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "dropped after {:?}",
        started.elapsed()
    );
    running.shutdown().await;
}

/// A certificate that expires while its connection is open stops working on that
/// connection, as it would at a new handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_expires_stops_working_on_an_open_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let now = renkei_hub::broker::Clock::System.now();
    let lo = [std::net::IpAddr::from([127, 0, 0, 1])];
    renkei_hub::pki::init(
        &pki_dir,
        &["localhost".into()],
        &lo,
        397,
        now - chrono::Duration::days(31),
    )
    .unwrap();
    let phr: renkei_crypto::participant::ParticipantId = "phr:asmile".parse().unwrap();
    let certs = dir.path().join("certs");
    // Issued 30 days ago for 30 days, less 3 seconds: it expires 3 seconds from now.
    let issued = now - chrono::Duration::days(30) + chrono::Duration::seconds(3);
    renkei_hub::pki::issue(&pki_dir, &phr, &certs, 30, issued).unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let cfg = crate::harness::write_config(dir.path(), &url, &pki_dir);
    let running = renkei_hub::app::start(&cfg, renkei_hub::broker::Clock::System)
        .await
        .unwrap();
    renkei_hub::registry::add(&running.hub.db, &phr, "x", None, None, now)
        .await
        .unwrap();
    let client = client_config(&ClientTlsPaths {
        ca: pki_dir.join("ca.pem"),
        cert_chain: certs.join("phr-asmile.pem"),
        key: certs.join("phr-asmile.key"),
    })
    .unwrap();
    let tcp = TcpStream::connect(running.participant_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(client).connect(name, tcp).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    async fn status(send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> u16 {
        let req = hyper::Request::get("/v1/feed")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        status
    }
    assert_eq!(status(&mut send).await, 200);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        status(&mut send).await,
        401,
        "an expired certificate kept working on an open connection"
    );
    running.shutdown().await;
}

/// One client address cannot take every connection of a listener: past its share, its
/// connections are closed at once, while another address is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let pki = TestPki::new();
    let mut cfg = crate::harness::write_config(h.dir.path(), &h.config.database_url, pki.dir());
    cfg.limits.max_connections_per_address = 2;
    let running = renkei_hub::app::start(&cfg, h.clock.clone()).await.unwrap();
    let portal = running.portal_addr;
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(std::net::SocketAddr::new(ip, 0)).unwrap();
            socket.connect(portal).await.unwrap()
        }
    };
    // Closed by the hub within the wait (end of stream or reset), or still open.
    async fn closed(tcp: &mut TcpStream, wait: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(wait, tcp.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
    // Two silent connections (a slow handshake each) hold this address's share.
    let mut first = from("127.0.0.1").await;
    let second = from("127.0.0.1").await;
    let mut third = from("127.0.0.1").await;
    assert!(
        closed(&mut third, Duration::from_secs(3)).await,
        "a third connection was kept"
    );
    let mut other = from("127.0.0.2").await;
    assert!(
        !closed(&mut other, Duration::from_millis(500)).await,
        "another address was refused"
    );
    assert!(!closed(&mut first, Duration::from_millis(100)).await);
    // A closed connection gives its place back.
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = from("127.0.0.1").await;
    assert!(
        !closed(&mut again, Duration::from_millis(500)).await,
        "the freed place was not given back"
    );
    running.shutdown().await;
}

/// A keep-alive connection idle for a second gives its HTTP buffers back (it is counted as
/// parked) and answers its next request as before; parked and silent, it is still closed
/// at the header timeout after its last answer, and at once at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_parked_and_still_answers_and_times_out() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let pki = TestPki::new();
    let mut cfg = crate::harness::write_config(h.dir.path(), &h.config.database_url, pki.dir());
    cfg.limits.header_timeout = Duration::from_secs(4);
    let running = renkei_hub::app::start(&cfg, h.clock.clone()).await.unwrap();
    let admin = running.admin_addr;
    let parked = || async move {
        let mut tcp = TcpStream::connect(admin).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut metrics = String::new();
        tcp.read_to_string(&mut metrics).await.unwrap();
        let line = "renkei_connections_parked{listener=\"participant\"} ";
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    let connect = || async {
        let tls = tls_to(running.participant_addr, &pki, "phr-asmile").await;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        (send, conn)
    };
    let get = |mut send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>| async move {
        let req = hyper::Request::get("/v1/feed")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        Ok::<_, String>((status, send))
    };

    let (send, _conn) = connect().await;
    let (status, send) = get(send).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(parked().await, 0, "parked while still in use");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(parked().await, 1, "an idle connection was not parked");
    let (status, send) = get(send).await.unwrap();
    assert_eq!(status, 200, "a parked connection did not answer again");
    assert_eq!(parked().await, 0);
    let (status, send) = get(send).await.unwrap();
    assert_eq!(status, 200);

    // Silent: still open (parked) well within the header timeout (4 s) after its last
    // answer, closed past it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(parked().await, 1, "closed before the header timeout");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(parked().await, 0, "a silent parked connection was kept");
    assert!(
        get(send).await.is_err(),
        "a silent connection was kept open"
    );

    // At shutdown a parked connection is closed at once, well before its timeout.
    let (send, conn) = connect().await;
    let (status, _send) = get(send).await.unwrap();
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(parked().await, 1);
    tokio::time::timeout(Duration::from_millis(1500), running.shutdown())
        .await
        .expect("shutdown waited on a parked connection");
    let ended = tokio::time::timeout(Duration::from_millis(500), conn).await;
    assert!(
        ended.is_ok(),
        "the parked connection stayed open after shutdown"
    );
}

/// An answer the hub gives while it shuts down tells the client not to send another
/// request on that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_during_shutdown_says_connection_close() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let pki = TestPki::new();
    let cfg = crate::harness::write_config(h.dir.path(), &h.config.database_url, pki.dir());
    let running = renkei_hub::app::start(&cfg, h.clock.clone()).await.unwrap();
    let mut tls = tls_to(running.participant_addr, &pki, "phr-asmile").await;
    // Half a request before the shutdown, the rest after it.
    tls.write_all(b"GET /v1/feed HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    tls.write_all(b"\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stayed open after its answer");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    assert!(head.contains("\r\nconnection: close"), "{head}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown did not finish")
        .unwrap();
}
