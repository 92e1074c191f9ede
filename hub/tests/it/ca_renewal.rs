//! Participant CA renewal end to end: `internet-hub pki renew-ca` with the real
//! binary, then a running hub reloads the renewed `ca.pem` and participants issued
//! before and after the renewal get in, over real mTLS on loopback.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use http_body_util::Empty;
use hyper::body::Bytes;
use renkei_crypto::tls::{ClientTlsPaths, client_config};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Runs the binary; (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(crate::harness::hub_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GET /v1/feed` as the participant whose files are `<certs>/<base>.{pem,key}`,
/// trusting `ca`; the HTTP status, or the handshake/request error.
async fn feed_status(
    addr: std::net::SocketAddr,
    ca: &Path,
    certs: &Path,
    base: &str,
) -> Result<u16, String> {
    let cfg = client_config(&ClientTlsPaths {
        ca: ca.to_path_buf(),
        cert_chain: certs.join(format!("{base}.pem")),
        key: certs.join(format!("{base}.key")),
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
    let req = hyper::Request::get("/v1/feed")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    Ok(resp.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_ca_then_reload_keeps_every_participant_in() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let certs = dir.path().join("certs");
    let p = pki_dir.to_str().unwrap();
    let c = certs.to_str().unwrap();

    // A CA that ends in 3 days; a participant issued under it.
    let (ok, _, err) = run(&[
        "pki",
        "init",
        "--dir",
        p,
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--days",
        "3",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&[
        "pki",
        "issue",
        "--dir",
        p,
        "--participant",
        "phr:asmile",
        "--out",
        c,
        "--days",
        "2",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&[
        "pki",
        "issue",
        "--dir",
        p,
        "--participant",
        "clinic:mysos",
        "--out",
        c,
    ]);
    assert!(!ok, "397 days run past a 3-day CA");
    assert!(err.contains("runs past the CA"), "{err}");

    // Refusals name the folder or the option, and change nothing.
    let ca_before = std::fs::read(pki_dir.join("ca.pem")).unwrap();
    let empty = dir.path().join("empty");
    let (ok, _, err) = run(&["pki", "renew-ca", "--dir", empty.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("ca.pem` does not exist"), "{err}");
    for (days, wanted) in [("0", "at least 1 day"), ("99999", "`--days 99999`")] {
        let (ok, _, err) = run(&["pki", "renew-ca", "--dir", p, "--days", days]);
        assert!(!ok, "--days {days}");
        assert!(err.contains(wanted), "--days {days}: {err}");
    }
    assert_eq!(std::fs::read(pki_dir.join("ca.pem")).unwrap(), ca_before);

    // The hub runs with the first CA certificate.
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let cfg = crate::harness::write_config(dir.path(), &url, &pki_dir);
    assert_eq!(cfg.tls.client_ca, pki_dir.join("ca.pem"));
    let now = renkei_hub::broker::Clock::System.now();
    let running = renkei_hub::app::start(&cfg, renkei_hub::broker::Clock::System)
        .await
        .unwrap();
    for who in ["phr:asmile", "clinic:mysos"] {
        renkei_hub::registry::add(&running.hub.db, &who.parse().unwrap(), "x", None, None, now)
            .await
            .unwrap();
    }
    let addr = running.participant_addr;
    let old_copy = certs.join("ca.pem");
    assert_eq!(
        feed_status(addr, &old_copy, &certs, "phr-asmile").await,
        Ok(200)
    );

    let (ok, out, err) = run(&["pki", "renew-ca", "--dir", p]);
    assert!(ok, "{err}");
    assert!(out.contains("renewed the participant CA"), "{out}");
    assert!(out.contains("SIGHUP"), "{out}");
    let renewed = std::fs::read(pki_dir.join("ca.pem")).unwrap();
    assert_ne!(renewed, ca_before);
    let archived: Vec<_> = std::fs::read_dir(&pki_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ca-") && n.ends_with(".pem"))
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(
        std::fs::read(pki_dir.join(&archived[0])).unwrap(),
        ca_before
    );

    // Now a 397-day certificate fits; it goes into the old folder, whose CA copy is
    // brought up to date.
    let (ok, _, err) = run(&[
        "pki",
        "issue",
        "--dir",
        p,
        "--participant",
        "clinic:mysos",
        "--out",
        c,
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&old_copy).unwrap(), renewed);

    // SIGHUP's reload re-reads tls.client_ca: the participant issued before the renewal
    // and the one issued after it both get in, trusting either CA certificate.
    running.reload(&cfg).unwrap();
    let previous = pki_dir.join(&archived[0]);
    let new_ca = pki_dir.join("ca.pem");
    for (ca, base) in [
        (&new_ca, "phr-asmile"),
        (&previous, "phr-asmile"),
        (&new_ca, "clinic-mysos"),
        (&previous, "clinic-mysos"),
    ] {
        assert_eq!(
            feed_status(addr, ca, &certs, base).await,
            Ok(200),
            "{base} trusting {}",
            ca.display()
        );
    }

    // Control: with a CA file of another PKI the hub refuses everyone on reload.
    let other = dir.path().join("other");
    renkei_hub::pki::init(&other, &["localhost".into()], &[], 30, now).unwrap();
    std::fs::copy(other.join("ca.pem"), &new_ca).unwrap();
    running.reload(&cfg).unwrap();
    let refused = feed_status(addr, &previous, &certs, "phr-asmile").await;
    assert!(
        refused.is_err(),
        "a participant of another CA got {refused:?}"
    );
    running.shutdown().await;
}

/// `pki renew-server` without names keeps the names of the certificate it replaces
/// (it reissued for `localhost`, and the next reload locked every participant out).
#[test]
fn a_server_renewal_keeps_the_hubs_names() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let now = renkei_hub::broker::Clock::System.now();
    let ips: Vec<std::net::IpAddr> = vec![
        "203.0.113.10".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    renkei_hub::pki::init(&pki, &["hub.example.jp".into()], &ips, 3650, now).unwrap();
    let before = std::fs::read(pki.join("server.pem")).unwrap();
    let (ok, out, err) = run(&["pki", "renew-server", "--dir", pki.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_ne!(std::fs::read(pki.join("server.pem")).unwrap(), before);
    let (dns, kept) = renkei_hub::pki::server_names(&pki).unwrap();
    assert_eq!(dns, ["hub.example.jp"]);
    assert_eq!(kept, ips);
}

/// Output into a pipe closed early (`internet-hub … | head -1`) ends the command quietly,
/// as SIGPIPE would, not with a panic and its backtrace.
#[test]
fn a_closed_output_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let now = renkei_hub::broker::Clock::System.now();
    renkei_hub::pki::init(&pki, &["hub.example.jp".into()], &[], 3650, now).unwrap();
    let mut child = Command::new(crate::harness::hub_bin())
        .args([
            "pki",
            "expiring",
            "--dir",
            pki.to_str().unwrap(),
            "--days",
            "100000",
        ])
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}
