//! Real TLS handshakes over loopback against the checked-in test PKI: who gets
//! in, who is refused, and which participant the hub sees.

#[allow(
    dead_code,
    reason = "shared helper; not every test binary uses every function"
)]
#[path = "../../../tests/pki/fixture.rs"]
mod fixture;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub(crate) use fixture::TestPki;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::tls::{
    ClientTlsPaths, ServerTlsPaths, client_config, load_crls, load_private_key, peer_participant,
    server_config,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What the server side of one connection saw.
#[derive(Debug)]
struct Served {
    /// The handshake result (error text on failure).
    handshake: Result<(), String>,
    /// The participant extracted after a successful handshake.
    participant: Option<Result<ParticipantId, String>>,
    /// The negotiated ALPN protocol.
    alpn: Option<Vec<u8>>,
}

/// Accepts one connection with `config`; after a handshake, sends the participant (or
/// the identity error) to the client and closes cleanly.
fn serve_once(config: Arc<ServerConfig>) -> (u16, thread::JoinHandle<Served>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        let mut handshake = Ok(());
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                handshake = Err(e.to_string());
                break;
            }
        }
        let mut served = Served {
            handshake,
            participant: None,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        if served.handshake.is_ok() {
            let who = peer_participant(conn.peer_certificates()).map_err(|e| e.to_string());
            let line = match &who {
                Ok(p) => p.to_string(),
                Err(e) => format!("error: {e}"),
            };
            conn.writer().write_all(line.as_bytes()).unwrap();
            conn.send_close_notify();
            while conn.wants_write() {
                if conn.complete_io(&mut sock).is_err() {
                    break;
                }
            }
            served.participant = Some(who);
        }
        served
    });
    (port, handle)
}

/// Connects with a rustls client and returns what the server sent, or the client's error.
fn rustls_client(port: u16, config: Arc<ClientConfig>) -> Result<String, String> {
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, sock);
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| e.to_string())?;
    Ok(reply)
}

fn hub_paths(pki: &TestPki, crls: bool) -> ServerTlsPaths {
    ServerTlsPaths {
        cert_chain: pki.pem("server"),
        key: pki.key("server"),
        client_ca: Some(pki.pem("ca")),
        crls: if crls { vec![pki.pem("crl")] } else { vec![] },
    }
}

fn participant_paths(pki: &TestPki, name: &str) -> ClientTlsPaths {
    ClientTlsPaths {
        ca: pki.pem("ca"),
        cert_chain: pki.pem(name),
        key: pki.key(name),
    }
}

/// One handshake between the hub (with the CRL) and the named test client.
fn connect_as(pki: &TestPki, name: &str) -> (Served, Result<String, String>) {
    let (port, server) = serve_once(server_config(&hub_paths(pki, true)).unwrap());
    let client = rustls_client(port, client_config(&participant_paths(pki, name)).unwrap());
    (server.join().unwrap(), client)
}

fn assert_refused(served: &Served, client: &Result<String, String>, why: &str) {
    let err = served.handshake.as_ref().unwrap_err();
    assert!(err.contains(why), "server error `{err}` lacks `{why}`");
    assert!(served.participant.is_none());
    assert!(client.is_err(), "client got {client:?}");
}

#[test]
fn every_valid_participant_gets_in_with_its_identity() {
    let pki = TestPki::new();
    let cases = [
        ("source-city-a", ParticipantKind::Source, "city-a"),
        ("phr-asmile", ParticipantKind::Phr, "asmile"),
        ("clinic-mysos", ParticipantKind::Clinic, "mysos"),
        ("analyst-hachioji", ParticipantKind::Analyst, "hachioji"),
        (
            "municipality-city-a",
            ParticipantKind::Municipality,
            "city-a",
        ),
        ("admin-ops", ParticipantKind::Admin, "ops"),
    ];
    for (name, kind, id) in cases {
        let (served, client) = connect_as(&pki, name);
        assert_eq!(served.handshake, Ok(()), "{name}");
        let expected = ParticipantId::new(kind, id).unwrap();
        assert_eq!(served.participant, Some(Ok(expected.clone())), "{name}");
        assert_eq!(served.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(client, Ok(expected.to_string()), "{name}");
    }
}

#[test]
fn client_without_certificate_is_refused() {
    let pki = TestPki::new();
    let (port, server) = serve_once(server_config(&hub_paths(&pki, true)).unwrap());
    let mut roots = rustls::RootCertStore::empty();
    for cert in renkei_crypto::tls::load_certs(&pki.pem("ca")).unwrap() {
        roots.add(cert).unwrap();
    }
    let anonymous = ClientConfig::builder_with_provider(renkei_crypto::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = rustls_client(port, Arc::new(anonymous));
    assert_refused(
        &server.join().unwrap(),
        &client,
        "peer sent no certificates",
    );
}

#[test]
fn client_from_another_ca_is_refused() {
    let pki = TestPki::new();
    let (served, client) = connect_as(&pki, "wrong-ca");
    assert_refused(&served, &client, "UnknownIssuer");
}

#[test]
fn expired_client_is_refused() {
    let pki = TestPki::new();
    let (served, client) = connect_as(&pki, "expired");
    assert_refused(&served, &client, "certificate expired");
}

#[test]
fn revoked_client_is_refused_by_the_crl_only() {
    let pki = TestPki::new();
    let (served, client) = connect_as(&pki, "revoked");
    assert_refused(&served, &client, "Revoked");

    // Control: without the CRL the same certificate gets in, so the CRL is what refused it.
    let (port, server) = serve_once(server_config(&hub_paths(&pki, false)).unwrap());
    let client = rustls_client(
        port,
        client_config(&participant_paths(&pki, "revoked")).unwrap(),
    );
    let served = server.join().unwrap();
    assert_eq!(served.handshake, Ok(()));
    assert_eq!(client, Ok("phr:revoked".to_owned()));
}

#[test]
fn certificates_without_one_valid_identity_connect_but_name_no_one() {
    let pki = TestPki::new();
    let cases = [
        ("no-san", "no subjectAltName"),
        ("two-san", "more than one participant uri"),
        ("unknown-kind", "unknown participant kind `vendor`"),
    ];
    for (name, why) in cases {
        let (served, client) = connect_as(&pki, name);
        assert_eq!(served.handshake, Ok(()), "{name}");
        let err = served.participant.unwrap().unwrap_err();
        assert!(err.contains(why), "{name}: `{err}` lacks `{why}`");
        assert!(client.unwrap().starts_with("error: "), "{name}");
    }
}

#[test]
fn participant_refuses_a_hub_from_another_ca() {
    let pki = TestPki::new();
    let (port, server) = serve_once(server_config(&hub_paths(&pki, true)).unwrap());
    let mut paths = participant_paths(&pki, "phr-asmile");
    paths.ca = pki.pem("other-ca");
    let client = rustls_client(port, client_config(&paths).unwrap());
    let err = client.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(server.join().unwrap().handshake.is_err());
}

#[test]
fn portal_config_serves_anonymous_clients() {
    let pki = TestPki::new();
    let mut paths = hub_paths(&pki, false);
    paths.client_ca = None;
    let (port, server) = serve_once(server_config(&paths).unwrap());
    let mut roots = rustls::RootCertStore::empty();
    for cert in renkei_crypto::tls::load_certs(&pki.pem("ca")).unwrap() {
        roots.add(cert).unwrap();
    }
    let anonymous = ClientConfig::builder_with_provider(renkei_crypto::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = rustls_client(port, Arc::new(anonymous));
    let served = server.join().unwrap();
    assert_eq!(served.handshake, Ok(()));
    assert!(client.unwrap().contains("no client certificate"));
}

/// Connects with an OpenSSL client limited to TLS 1.2 (or 1.3) and the given suites.
fn openssl_client(pki: &TestPki, port: u16, tls13: bool, suites: &str) -> Result<(), String> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVersion};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(pki.pem("ca")).unwrap();
    b.set_certificate_file(pki.pem("phr-asmile"), SslFiletype::PEM)
        .unwrap();
    b.set_private_key_file(pki.key("phr-asmile"), SslFiletype::PEM)
        .unwrap();
    if tls13 {
        b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
        b.set_ciphersuites(suites).unwrap();
    } else {
        b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
        b.set_cipher_list(suites).unwrap();
    }
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut stream = b
        .build()
        .connect("localhost", sock)
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| e.to_string())?;
    if reply == "phr:asmile" {
        Ok(())
    } else {
        Err(format!("unexpected reply `{reply}`"))
    }
}

#[test]
fn only_aead_suites_are_accepted() {
    let pki = TestPki::new();
    let config = server_config(&hub_paths(&pki, true)).unwrap();
    let cases = [
        (false, "ECDHE-ECDSA-AES128-GCM-SHA256", true),
        (false, "ECDHE-ECDSA-AES256-GCM-SHA384", true),
        (
            false,
            "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA",
            false,
        ),
        (false, "ECDHE-ECDSA-CHACHA20-POLY1305", false),
        (true, "TLS_AES_256_GCM_SHA384", true),
        (true, "TLS_CHACHA20_POLY1305_SHA256", false),
    ];
    for (tls13, suites, accepted) in cases {
        let (port, server) = serve_once(config.clone());
        let client = openssl_client(&pki, port, tls13, suites);
        let served = server.join().unwrap();
        assert_eq!(served.handshake.is_ok(), accepted, "{suites}: {served:?}");
        assert_eq!(client.is_ok(), accepted, "{suites}: {client:?}");
        if !accepted {
            let err = served.handshake.unwrap_err();
            assert!(err.contains("NoCipherSuitesInCommon"), "{suites}: {err}");
        }
    }
}

#[test]
fn weak_or_mismatched_keys_are_refused() {
    let pki = TestPki::new();
    let mut paths = hub_paths(&pki, true);
    paths.cert_chain = pki.pem("weak-rsa");
    paths.key = pki.key("weak-rsa");
    let err = server_config(&paths).unwrap_err().to_string();
    assert!(
        err.contains("weak-rsa.pem") && err.contains("1024 bits"),
        "{err}"
    );

    let mut paths = hub_paths(&pki, true);
    paths.key = pki.key("phr-asmile");
    let err = server_config(&paths).unwrap_err().to_string();
    assert!(err.contains("do not form a usable pair"), "{err}");
}

#[cfg(unix)]
#[test]
fn readable_key_files_are_refused_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let pki = TestPki::new();
    let key = pki.key("server");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = load_private_key(&key).unwrap_err().to_string();
    assert!(err.contains("server.key") && err.contains("640"), "{err}");
    let err = server_config(&hub_paths(&pki, true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.key"), "{err}");
}

#[test]
fn loader_errors_name_the_file() {
    let pki = TestPki::new();
    let missing = pki.dir().join("missing.pem");
    let mut paths = hub_paths(&pki, true);
    paths.client_ca = Some(missing.clone());
    let err = server_config(&paths).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");

    let err = load_crls(&[pki.pem("ca")]).unwrap_err().to_string();
    assert!(err.contains("ca.pem") && err.contains("no crl"), "{err}");
    let err = load_private_key(&pki.pem("ca")).unwrap_err().to_string();
    assert!(err.contains("ca.pem") && err.contains("mode"), "{err}");

    let not_a_key: PathBuf = pki.key("ca").with_file_name("cert-as-key.key");
    std::fs::copy(pki.pem("ca"), &not_a_key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&not_a_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let err = load_private_key(&not_a_key).unwrap_err().to_string();
    assert!(
        err.contains("cert-as-key.key") && err.contains("no private key"),
        "{err}"
    );
}
