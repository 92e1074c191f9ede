//! The hub transport: JSON over HTTP/1.1 over mTLS, one kept-alive connection per
//! [`HubClient`], reconnected on error, with a request timeout and bounded retries.
//! The LGWAN agent uses the same type for its uploads and polls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::tls::{ClientTlsPaths, client_config};
use rustls_pki_types::ServerName;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result, shorten};
use crate::retry::{RetryPolicy, parse_retry_after};

mod address;

pub use address::HubAddress;

/// Largest response body accepted, in bytes (a full feed page of large records fits).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// What a [`HubClient`] needs: where the hub is and the participant's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://host:port` (an IP address is fine as host).
    pub hub_url: String,
    /// PEM CA the hub's server certificate chains to.
    pub ca: PathBuf,
    /// PEM client certificate chain of the participant.
    pub cert: PathBuf,
    /// PEM private key of the client certificate (mode 0600).
    pub key: PathBuf,
    /// Time allowed for one attempt (connect, send, full response).
    pub timeout: Duration,
    /// Retries of transport failures, 429 and 503.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// A configuration with the default timeout (30 s) and retry policy.
    pub fn new(hub_url: &str, ca: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        ClientConfig {
            hub_url: hub_url.to_owned(),
            ca,
            cert,
            key,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// A participant's connection to the hub. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct HubClient {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    /// The participant named by the client certificate, if it names one.
    participant: Option<ParticipantId>,
    /// This participant's own TLS files: the pinned participant CA (what key statements
    /// are checked against) and its certificate and key (what signs its statements).
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    address: HubAddress,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
    retry: RetryPolicy,
    connection: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// Loads the TLS material and prepares the client; does not connect yet.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let address = HubAddress::parse(&config.hub_url)?;
        let tls = client_config(&ClientTlsPaths {
            ca: config.ca.clone(),
            cert_chain: config.cert.clone(),
            key: config.key.clone(),
        })
        .map_err(Error::crypto("client tls configuration"))?;
        let server_name = ServerName::try_from(address.host.clone())
            .map_err(|e| Error::invalid("hub url host", e.to_string()))?;
        let participant = renkei_crypto::tls::load_certs(&config.cert)
            .ok()
            .and_then(|chain| chain.first().cloned())
            .and_then(|leaf| renkei_crypto::participant::from_cert_der(leaf.as_ref()).ok());
        Ok(HubClient {
            inner: Arc::new(Inner {
                url: config.hub_url.trim_end_matches('/').to_owned(),
                participant,
                ca: config.ca.clone(),
                cert: config.cert.clone(),
                key: config.key.clone(),
                address,
                server_name,
                connector: TlsConnector::from(tls),
                timeout: config.timeout,
                retry: config.retry,
                connection: Mutex::new(None),
            }),
        })
    }

    /// The participant this client's certificate names.
    pub fn participant(&self) -> Result<&ParticipantId> {
        self.inner.participant.as_ref().ok_or_else(|| {
            Error::invalid(
                "client certificate",
                "names no participant (`urn:renkei:participant:…` URI SAN)",
            )
        })
    }

    /// The participant CA this client pinned in its own configuration.
    pub fn pinned_ca(&self) -> &std::path::Path {
        &self.inner.ca
    }

    /// The current time, for the validity of certificates in key statements (as the
    /// TLS handshake reads it).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        #[expect(
            clippy::disallowed_methods,
            reason = "certificate validity is checked against the wall clock, as in the TLS handshake"
        )]
        chrono::Utc::now()
    }

    /// Checks a participant's key statement against the pinned CA and that it is
    /// `who`'s; the keys it returns are the only ones this client seals to.
    pub fn verify_statement(
        &self,
        who: &ParticipantId,
        statement: Option<&renkei_crypto::statement::KeyStatement>,
    ) -> Result<renkei_crypto::statement::VerifiedKeys> {
        let st = statement.ok_or_else(|| {
            Error::invalid(
                format!("keys of `{who}`"),
                "no signed key statement: refusing keys the hub alone vouches for",
            )
        })?;
        let keys = st
            .verify(&self.inner.ca, self.now())
            .map_err(Error::crypto(format!("keys of `{who}`")))?;
        if &keys.participant != who {
            return Err(Error::invalid(
                format!("keys of `{who}`"),
                format!("the statement is `{}`'s", keys.participant),
            ));
        }
        Ok(keys)
    }

    /// Publishes this participant's keys with a statement signed by its certificate key.
    pub async fn publish_signed_keys(
        &self,
        grant_key: Option<&str>,
        enrollment_key: Option<&str>,
    ) -> Result<crate::api::Keys> {
        let me = self.participant()?.clone();
        let statement = renkei_crypto::statement::KeyStatement::sign(
            &self.inner.cert,
            &self.inner.key,
            grant_key,
            enrollment_key,
            self.now(),
        )
        .map_err(Error::crypto("signing the key statement"))?;
        let keys = crate::api::Keys {
            grant_key: grant_key.map(str::to_owned),
            enrollment_key: enrollment_key.map(str::to_owned),
            statement: Some(statement),
        };
        self.publish_keys(&me, &keys).await
    }

    /// Signs consent terms with this participant's certificate key.
    pub fn sign_consent(
        &self,
        terms: renkei_crypto::consent_statement::ConsentTerms,
    ) -> Result<renkei_crypto::consent_statement::ConsentStatement> {
        renkei_crypto::consent_statement::ConsentStatement::sign(
            &self.inner.cert,
            &self.inner.key,
            terms,
            self.now(),
        )
        .map_err(Error::crypto("signing the consent"))
    }

    /// Signs the list of every consent statement this participant revoked.
    pub fn sign_revocation_list(
        &self,
        revoked: Vec<String>,
    ) -> Result<renkei_crypto::consent_statement::RevocationList> {
        renkei_crypto::consent_statement::RevocationList::sign(
            &self.inner.cert,
            &self.inner.key,
            revoked,
            self.now(),
        )
        .map_err(Error::crypto("signing the revocation list"))
    }

    /// Signs `bytes` with this participant's certificate key (an enrollment claim).
    pub fn sign_bytes(&self, bytes: &[u8]) -> Result<renkei_crypto::statement::Signed> {
        renkei_crypto::statement::Signed::make(&self.inner.cert, &self.inner.key, |_| {
            bytes.to_vec()
        })
        .map_err(Error::crypto("signing"))
    }

    /// The hub URL this client talks to.
    pub fn hub_url(&self) -> &str {
        &self.inner.url
    }

    /// `GET path` and decode the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None, true).await
    }

    /// `POST path` with a JSON body, retried as an idempotent request.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::POST, path, Some(encode(body)?), true)
            .await
    }

    /// `POST path` for an operation that must not run twice (consent grant,
    /// enrollment): retried only when the hub surely did not act.
    pub async fn post_json_once<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::POST, path, Some(encode(body)?), false)
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::PUT, path, Some(encode(body)?), true)
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotent: bool,
    ) -> Result<T> {
        let bytes = self
            .call_bytes(method.clone(), path, body, idempotent)
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("response to {method} `{path}`"), e.to_string()))
    }

    /// `GET path` and return the body as it came (tiles, signed notes).
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes> {
        self.call_bytes(Method::GET, path, None, true).await
    }

    async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotent: bool,
    ) -> Result<Bytes> {
        let retry = self.inner.retry;
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(method.clone(), path, body.clone()).await;
            let error = match outcome {
                Ok(bytes) => return Ok(bytes),
                Err(e) => e,
            };
            if !retry.should_retry(&error, attempt, idempotent) {
                return Err(error);
            }
            let after = match &error {
                Error::Hub { retry_after, .. } => *retry_after,
                _ => None,
            };
            tokio::time::sleep(retry.delay(attempt - 1, after)).await;
            attempt += 1;
        }
    }

    /// One attempt within the timeout; returns the body of a 2xx answer.
    async fn attempt(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Bytes> {
        let mut slot = self.inner.connection.lock().await;
        let exchange = self.exchange(&mut slot, method, path, body);
        match tokio::time::timeout(self.inner.timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                *slot = None;
                Err(e)
            }
            Err(_) => {
                *slot = None;
                Err(self.transport(
                    format!("no answer within {} s", self.inner.timeout.as_secs_f32()),
                    true,
                ))
            }
        }
    }

    /// Sends one request on the kept connection (opening it if needed). The outer
    /// `Err` is a transport failure; the inner result is the hub's answer.
    async fn exchange(
        &self,
        slot: &mut Option<SendRequest<Full<Bytes>>>,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Result<Bytes>> {
        if let Some(sender) = slot.as_mut() {
            if sender.ready().await.is_err() {
                *slot = None;
            }
        }
        let sender = match slot {
            Some(sender) => sender,
            None => slot.insert(self.connect().await?),
        };
        let has_body = body.is_some();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.inner.address.authority())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("renkei-client/", env!("CARGO_PKG_VERSION")),
            );
        if has_body {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| {
                Error::invalid(format!("request path `{}`", shorten(path)), e.to_string())
            })?;
        let response = sender.send_request(request).await.map_err(|e| {
            // A canceled request was never written to the connection.
            // hyper's own words ("connection error") hide why: a revoked or expired
            // certificate is a TLS alert further down the chain of causes.
            self.transport(
                format!("sending request: {}", with_causes(&e)),
                !e.is_canceled(),
            )
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let keep = !response
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| self.transport(format!("reading response: {e}"), true))?
            .to_bytes();
        if !keep {
            *slot = None;
        }
        Ok(if status.is_success() {
            Ok(bytes)
        } else {
            Err(hub_error(status, &bytes, retry_after))
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let a = &self.inner.address;
        let tcp = TcpStream::connect((a.host.as_str(), a.port))
            .await
            .map_err(|e| self.transport(format!("connecting: {e}"), false))?;
        // Best effort: Nagle only delays small JSON requests.
        let _ = tcp.set_nodelay(true);
        let tls = self
            .inner
            .connector
            .connect(self.inner.server_name.clone(), tcp)
            .await
            .map_err(|e| self.transport(format!("tls handshake: {e}"), false))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.transport(format!("http handshake: {e}"), false))?;
        tokio::spawn(async move {
            // The connection ends when the hub closes it or the sender is dropped;
            // the next request then reconnects, so its error is not needed here.
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn transport(&self, reason: String, maybe_sent: bool) -> Error {
        Error::Transport {
            hub: self.inner.url.clone(),
            reason,
            maybe_sent,
        }
    }
}

fn encode<B: Serialize + ?Sized>(body: &B) -> Result<Bytes> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| Error::invalid("request body", e.to_string()))
}

/// Maps a non-2xx answer onto [`Error::Hub`], reading the hub's error JSON when present.
pub(crate) fn hub_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> Error {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    let (code, message) = match serde_json::from_slice::<Envelope>(body) {
        // The hub's words reach terminals and logs: bounded, control characters escaped.
        Ok(e) => (shorten(&e.error.code), shorten(&e.error.message)),
        Err(_) => (
            format!("http_{}", status.as_u16()),
            shorten(String::from_utf8_lossy(body).trim()),
        ),
    };
    Error::Hub {
        status: status.as_u16(),
        code,
        message,
        retry_after,
    }
}

/// `e` and each error that caused it, `: `-separated.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_error_names_its_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connection error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other(
            "received fatal alert: CertificateRevoked",
        ));
        assert_eq!(
            with_causes(&e),
            "connection error: received fatal alert: CertificateRevoked"
        );
    }

    #[test]
    fn hub_error_json_maps_to_typed_error() {
        let body =
            br#"{"error":{"code":"forbidden","message":"participant `phr:x` is suspended"}}"#;
        match hub_error(StatusCode::FORBIDDEN, body, None) {
            Error::Hub {
                status,
                code,
                message,
                retry_after,
            } => {
                assert_eq!(status, 403);
                assert_eq!(code, "forbidden");
                assert_eq!(message, "participant `phr:x` is suspended");
                assert_eq!(retry_after, None);
            }
            other => panic!("{other:?}"),
        }
        let e = hub_error(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error":{"code":"rate_limited","message":"rate limit exceeded"}}"#,
            Some(Duration::from_secs(2)),
        );
        assert!(e.is_retryable());
        assert!(
            matches!(e, Error::Hub { retry_after: Some(d), .. } if d == Duration::from_secs(2))
        );
    }

    #[test]
    fn non_json_errors_keep_status_and_text() {
        let e = hub_error(StatusCode::BAD_GATEWAY, b"  upstream down \n", None);
        assert_eq!(e.hub_code(), Some("http_502"));
        assert!(e.to_string().contains("upstream down"), "{e}");
        assert!(e.is_retryable());
    }

    #[tokio::test]
    async fn unreachable_hub_is_a_transport_error_after_bounded_attempts() {
        // A port nothing listens on: bind, note the port, drop the listener.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pki = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pki");
        // Git does not keep the 0600 mode the key loader insists on: use a private copy.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("phr.key");
        std::fs::write(&key, std::fs::read(pki.join("phr-asmile.key")).unwrap()).unwrap();
        let mut perms = std::fs::metadata(&key).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&key, perms).unwrap();
        let mut config = ClientConfig::new(
            &format!("https://127.0.0.1:{port}"),
            pki.join("ca.pem"),
            pki.join("phr-asmile.pem"),
            key,
        );
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        };
        let client = HubClient::new(config).unwrap();
        let err = client
            .get_json::<serde_json::Value>("/v1/feed")
            .await
            .unwrap_err();
        match err {
            Error::Transport {
                maybe_sent, reason, ..
            } => {
                assert!(!maybe_sent);
                assert!(reason.contains("connecting"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
