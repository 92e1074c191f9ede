//! The three listeners: the participant API (mTLS required), the resident portal
//! (HTTPS, no client certificate) and the admin endpoints (plain HTTP, loopback by
//! default). Connection limits, handshake and header timeouts, graceful shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use renkei_crypto::participant::ParticipantId;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::error::{Error, Result};
use crate::park::{self, Activity, Answer};

/// The identity of the peer on a participant connection, from its client certificate.
/// Handlers receive it as a request extension set per connection, never from a header.
#[derive(Debug, Clone)]
pub enum PeerIdentity {
    /// The certificate carries a valid participant URI SAN.
    Participant(ParticipantId),
    /// The certificate verified against the CA but carries no usable identity.
    Invalid(String),
}

/// The client address of a connection (for per-client portal lockout).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Limits applied to every connection of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Most connections open at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Most connections open at once from one client address ([`address_key`]); further
    /// ones are closed at once, so that one address cannot hold every slot.
    pub max_per_address: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to send the request headers (slow clients are dropped).
    pub header_timeout: Duration,
}

/// The client-certificate verifier in force (swapped on reload with the CRLs).
pub type SharedVerifier =
    Arc<std::sync::RwLock<Arc<dyn rustls::server::danger::ClientCertVerifier>>>;

/// How a listener wraps its connections.
#[derive(Clone)]
pub enum Transport {
    /// TLS; with a verifier, the peer certificate names the participant and is checked
    /// again on each request after a reload (a revoked certificate stops working on
    /// connections that are already open).
    Tls {
        /// The server config in force (swapped on reload; it decides whether client
        /// certificates are required).
        config: Arc<std::sync::RwLock<Arc<rustls::ServerConfig>>>,
        /// The participant listener's client verifier; `None` on the portal.
        participant: Option<SharedVerifier>,
        /// Where refused handshakes are counted, and as which listener.
        tracked: crate::metrics::Tracked,
    },
    /// Plain TCP (the admin listener on loopback).
    Plain,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Tls { participant, .. } => {
                write!(f, "Tls {{ participant: {} }}", participant.is_some())
            }
            Transport::Plain => write!(f, "Plain"),
        }
    }
}

/// Binds a listener, reporting the address in the error.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config_from(format!("cannot listen on `{addr}`"), e))
}

/// Serves `router` on `listener` until `shutdown` turns true, then waits (up to
/// `drain`) for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    router: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let log_budget = Arc::new(LogBudget::default());
    let started = tokio::time::Instant::now();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(slot) = per_address.enter(remote.ip(), limits.max_per_address) else {
            if let Transport::Tls { tracked, .. } = &transport {
                tracked
                    .metrics
                    .handshake_failed(tracked.listener, "address_limit");
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let transport = transport.clone();
        let router = router.clone();
        let log_budget = log_budget.clone();
        let header_timeout = limits.header_timeout;
        let shutdown = shutdown.clone();
        let task = async move {
            let _permit = permit;
            let _slot = slot;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .max_buf_size(64 * 1024);
            match transport {
                Transport::Plain => {
                    let service = |activity| with_extensions(router, None, remote, activity);
                    park::serve(tcp, builder, service, header_timeout, None, shutdown).await;
                }
                Transport::Tls {
                    config,
                    participant,
                    tracked,
                } => {
                    // On the heap while it lasts: the task keeps only what a connection
                    // needs once its handshake is done.
                    let handshake = handshake(&config, tcp, limits.handshake_timeout);
                    let tls = match Box::pin(handshake).await {
                        Ok(tls) => tls,
                        Err(refused) => {
                            let reason = refused.reason();
                            tracked.metrics.handshake_failed(tracked.listener, reason);
                            if let Some(left_out) = log_budget.take(started.elapsed().as_secs()) {
                                match refused {
                                    Refused::Error(e) => {
                                        tracing::info!(peer = %remote, error = %e, reason, left_out, "tls handshake refused")
                                    }
                                    Refused::Timeout => {
                                        tracing::info!(peer = %remote, left_out, "tls handshake timed out")
                                    }
                                }
                            }
                            return;
                        }
                    };
                    let peer = participant.map(|verifier| Peer {
                        identity: peer_identity(tls.get_ref().1),
                        check: CertCheck::new(verifier, tls.get_ref().1),
                    });
                    let service = |activity| with_extensions(router, peer, remote, activity);
                    let fut = park::serve(
                        tls,
                        builder,
                        service,
                        header_timeout,
                        Some(&tracked),
                        shutdown,
                    );
                    fut.await;
                }
            }
        };
        tokio::spawn(task);
    }
    drop(listener);
    // Each connection holds a permit until it ends: all of them back means all ended.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some connections did not finish in time");
    }
}

/// Why a TLS handshake did not complete.
enum Refused {
    Error(std::io::Error),
    Timeout,
}

impl Refused {
    /// The `reason` label of `renkei_tls_handshake_failures_total`.
    fn reason(&self) -> &'static str {
        match self {
            Refused::Error(e) => crate::metrics::handshake_reason(e),
            Refused::Timeout => "timeout",
        }
    }
}

/// The TLS handshake of `tcp` with the listener's current configuration.
async fn handshake(
    config: &Arc<std::sync::RwLock<Arc<rustls::ServerConfig>>>,
    tcp: tokio::net::TcpStream,
    timeout: Duration,
) -> std::result::Result<Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>, Refused> {
    let current = config
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match tokio::time::timeout(timeout, TlsAcceptor::from(current).accept(tcp)).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => Err(Refused::Error(e)),
        Err(_) => Err(Refused::Timeout),
    }
}

/// The address a client is counted under: an IPv4 address (also when written as an
/// IPv4-mapped IPv6 address), or an IPv6 address's /64 network: the smallest network a
/// subscriber is given, so changing addresses within it changes nothing (a subscriber
/// given a /56 or /48 still has many).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// Log lines for refused handshakes: at most [`LogBudget::PER_SECOND`] a second, so that a
/// flood of them (anyone can open connections) cannot fill the log. The metric counts every
/// refusal; the next line written says how many were left out before it.
#[derive(Debug, Default)]
struct LogBudget {
    /// The second being counted, lines written in it, and lines left out since the last one.
    state: Mutex<(u64, u32, u64)>,
}

impl LogBudget {
    const PER_SECOND: u32 = 10;

    /// `Some(left out before this one)` when a line may be written in second `now`.
    fn take(&self, now: u64) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (second, written, left_out) = &mut *state;
        if *second != now {
            *second = now;
            *written = 0;
        }
        if *written >= Self::PER_SECOND {
            *left_out += 1;
            return None;
        }
        *written += 1;
        Some(std::mem::take(left_out))
    }
}

/// Connections open now per client address.
#[derive(Debug, Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A slot for one more connection from `ip`, or `None` when it holds `max` already.
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

/// One open connection of an address, given back when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

fn peer_identity(conn: &rustls::ServerConnection) -> PeerIdentity {
    let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) else {
        return PeerIdentity::Invalid("no client certificate".into());
    };
    match renkei_crypto::participant::from_cert_der(cert.as_ref()) {
        Ok(id) => PeerIdentity::Participant(id),
        Err(e) => PeerIdentity::Invalid(e.to_string()),
    }
}

/// A participant connection's identity and the check that its certificate still passes.
struct Peer {
    identity: PeerIdentity,
    check: CertCheck,
}

/// Checks a connection's client certificate again when the verifier changed (a reload
/// with new CRLs or a new CA) since the last check; the answer is kept until the next
/// reload, so a request pays a clock read (against the chain's expiry), one lock and
/// one pointer comparison.
struct CertCheck {
    verifiers: SharedVerifier,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// When the chain's first certificate expires (Unix seconds): from then on the
    /// connection is refused, as a new handshake would be.
    expires: u64,
    last: std::sync::Mutex<(Arc<dyn rustls::server::danger::ClientCertVerifier>, bool)>,
}

impl CertCheck {
    fn new(verifiers: SharedVerifier, conn: &rustls::ServerConnection) -> CertCheck {
        let current = verifiers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let chain: Vec<_> = conn
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default();
        // The handshake just verified the chain with the verifier of its config.
        let ok = !chain.is_empty();
        let expires = renkei_crypto::tls::chain_expiry(&chain).unwrap_or(0);
        CertCheck {
            verifiers,
            chain,
            expires,
            last: std::sync::Mutex::new((current, ok)),
        }
    }

    fn still_valid(&self) -> bool {
        if rustls_pki_types::UnixTime::now().as_secs() >= self.expires {
            return false;
        }
        let current = self
            .verifiers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if Arc::ptr_eq(&last.0, &current) {
            return last.1;
        }
        // Certificate validity is checked against the wall clock, as in the handshake.
        let now = rustls_pki_types::UnixTime::now();
        let ok = match self.chain.split_first() {
            Some((leaf, intermediates)) => {
                current.verify_client_cert(leaf, intermediates, now).is_ok()
            }
            None => false,
        };
        *last = (current, ok);
        ok
    }
}

/// Wraps the router so each request carries the connection's identity and address.
/// A participant connection whose certificate no longer passes (revoked and the CRLs
/// reloaded) carries an invalid identity, which every participant endpoint refuses.
fn with_extensions(
    router: Router,
    peer: Option<Peer>,
    remote: SocketAddr,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    axum::http::Request<hyper::body::Incoming>,
    Response = axum::http::Response<Answer>,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> {
    let peer = peer.map(Arc::new);
    hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        let busy = activity.enter();
        let activity = activity.clone();
        if let Some(p) = &peer {
            let identity = if p.check.still_valid() {
                p.identity.clone()
            } else {
                PeerIdentity::Invalid("the client certificate is no longer valid (revoked)".into())
            };
            req.extensions_mut().insert(identity);
        }
        req.extensions_mut().insert(ClientAddr(remote));
        let answer = router.clone().oneshot(req);
        async move {
            let mut response = answer.await?;
            if activity.closing() {
                // Shutting down: the client must not send another request on this connection.
                let close = axum::http::HeaderValue::from_static("close");
                response
                    .headers_mut()
                    .insert(axum::http::header::CONNECTION, close);
            }
            Ok(response.map(|body| Answer::new(body, busy)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_as_its_64_network() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn refused_handshakes_are_logged_at_most_ten_a_second() {
        let budget = LogBudget::default();
        let first: Vec<_> = (0..15).map(|_| budget.take(7)).collect();
        assert_eq!(first.iter().filter(|t| t.is_some()).count(), 10);
        assert_eq!(first.first(), Some(&Some(0)));
        assert_eq!(
            budget.take(8),
            Some(5),
            "the next second's first line counts the rest"
        );
        assert_eq!(budget.take(8), Some(0));
    }

    #[test]
    fn an_address_holds_at_most_its_share() {
        let table = Arc::new(PerAddress::default());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8::2".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let one = table.enter(a, 2).unwrap();
        let _two = table.enter(same_net, 2).unwrap();
        assert!(table.enter(a, 2).is_none(), "a third slot for one /64");
        assert!(table.enter(other, 2).is_some(), "another address held back");
        drop(one);
        assert!(table.enter(a, 2).is_some(), "a freed slot not given back");
    }
}
