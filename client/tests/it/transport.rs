//! The hub transport over real mTLS on loopback: retries with Retry-After, error mapping,
//! reconnection after the hub closes, timeouts, and the client's certificate identity.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use renkei_client::api::FeedPage;
use renkei_client::{ClientConfig, Error, HubClient, RetryPolicy};
use renkei_crypto::tls::{ServerTlsPaths, peer_participant, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::fixture::TestPki;

/// One canned answer: status line and headers after `HTTP/1.1 `, and a body.
#[derive(Clone)]
struct Canned {
    head: &'static str,
    body: &'static str,
    close: bool,
    delay: Duration,
}

fn answer(head: &'static str, body: &'static str) -> Canned {
    Canned {
        head,
        body,
        close: false,
        delay: Duration::ZERO,
    }
}

/// What the server saw: (participant, request head, body) per request, and connections.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, String, String)>,
    connections: usize,
}

async fn serve(pki: &TestPki, answers: Vec<Canned>) -> (String, Arc<Mutex<Seen>>) {
    let tls = server_config(&ServerTlsPaths {
        cert_chain: pki.pem("server"),
        key: pki.key("server"),
        client_ca: Some(pki.pem("ca")),
        crls: vec![],
    })
    .unwrap();
    let acceptor = TlsAcceptor::from(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let queue = Arc::new(Mutex::new(answers.into_iter()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            log.lock().unwrap().connections += 1;
            let who = peer_participant(tls.get_ref().1.peer_certificates())
                .unwrap()
                .to_string();
            let (log, queue) = (log.clone(), queue.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        let n = tls.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                    buf.drain(..head_end + len);
                    log.lock().unwrap().requests.push((who.clone(), head, body));
                    let Some(a) = queue.lock().unwrap().next() else {
                        return;
                    };
                    tokio::time::sleep(a.delay).await;
                    let conn = if a.close { "Connection: close\r\n" } else { "" };
                    let text = format!(
                        "HTTP/1.1 {}\r\nContent-Type: application/json\r\n{conn}Content-Length: {}\r\n\r\n{}",
                        a.head,
                        a.body.len(),
                        a.body
                    );
                    if tls.write_all(text.as_bytes()).await.is_err() || a.close {
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn client(pki: &TestPki, url: &str, attempts: u32, timeout: Duration) -> HubClient {
    let mut config = ClientConfig::new(
        url,
        pki.pem("ca"),
        pki.pem("phr-asmile"),
        pki.key("phr-asmile"),
    );
    config.timeout = timeout;
    config.retry = RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(2),
    };
    HubClient::new(config).unwrap()
}

const PAGE: &str = r#"{"items":[],"next_cursor":5}"#;

#[tokio::test]
async fn retries_503_honouring_retry_after_then_succeeds() {
    let pki = TestPki::new();
    let busy = answer(
        "503 Service Unavailable\r\nRetry-After: 1",
        r#"{"error":{"code":"unavailable","message":"service temporarily unavailable"}}"#,
    );
    let (url, seen) = serve(&pki, vec![busy, answer("200 OK", PAGE)]).await;
    let c = client(&pki, &url, 3, Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    let page = c.feed(4, 10).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(
        page,
        FeedPage {
            items: vec![],
            next_cursor: 5
        }
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 2);
    assert_eq!(seen.connections, 1, "the connection was kept alive");
    let (who, head, _) = &seen.requests[0];
    assert_eq!(who, "phr:asmile");
    assert!(
        head.starts_with("GET /v1/feed?cursor=4&limit=10 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: {}", url.trim_start_matches("https://"))),
        "{head}"
    );
}

#[tokio::test]
async fn hub_errors_are_typed_and_not_retried() {
    let pki = TestPki::new();
    let denied = answer(
        "403 Forbidden",
        r#"{"error":{"code":"forbidden","message":"participant `phr:asmile` is suspended"}}"#,
    );
    let (url, seen) = serve(&pki, vec![denied, answer("200 OK", PAGE)]).await;
    let c = client(&pki, &url, 5, Duration::from_secs(5));
    match c.feed(0, 10).await.unwrap_err() {
        Error::Hub {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!((status, code.as_str()), (403, "forbidden"));
            assert!(message.contains("suspended"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().requests.len(), 1);
}

#[tokio::test]
async fn reconnects_after_the_hub_closes_and_sends_json_bodies() {
    let pki = TestPki::new();
    let closing = Canned {
        close: true,
        ..answer("200 OK", r#"{"acknowledged":9}"#)
    };
    let (url, seen) = serve(
        &pki,
        vec![closing, answer("200 OK", r#"{"acknowledged":10}"#)],
    )
    .await;
    let c = client(&pki, &url, 3, Duration::from_secs(5));
    c.ack_event(9, true).await.unwrap();
    c.ack_event(10, true).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.connections, 2);
    let (_, head, body) = &seen.requests[0];
    assert!(head.starts_with("POST /v1/events/9/ack HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert_eq!(body, r#"{"deleted":true}"#);
}

#[tokio::test]
async fn a_slow_hub_times_out_and_a_non_idempotent_call_is_not_repeated() {
    let pki = TestPki::new();
    let slow = Canned {
        delay: Duration::from_secs(3),
        ..answer("200 OK", PAGE)
    };
    let (url, seen) = serve(&pki, vec![slow.clone(), slow]).await;
    let c = client(&pki, &url, 3, Duration::from_millis(300));
    let body = renkei_client::api::SubmitBody {
        source: "source:city-a".into(),
        user_ref: "u1".into(),
        sealed: "AAAA".into(),
    };
    match c.submit_enrollment(&body).await.unwrap_err() {
        Error::Transport {
            reason, maybe_sent, ..
        } => {
            assert!(maybe_sent);
            assert!(reason.contains("no answer"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seen.lock().unwrap().requests.len(),
        1,
        "an enrollment is never submitted twice"
    );
}
