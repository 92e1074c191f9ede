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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_listener_requires_a_good_certificate() {
    let h = TestHub::new(Backend::Sqlite).await.unwrap();
    h.register_all().await;
    let pki = TestPki::new();
    let cfg = crate::harness::write_config(h.dir.path(), &h.config.file.database_url, pki.dir());
    let running = internet_hub::app::start(&cfg, h.clock.clone())
        .await
        .unwrap();
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
    running.shutdown().await;
}
