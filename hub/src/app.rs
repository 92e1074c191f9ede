//! Assembles a running hub from a validated config: keys, database, policies, TLS,
//! the three listeners and the checkpoint timer. Used by `serve`, the demo and tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use renkei_consent::AnyConsentStore;
use renkei_crypto::keys::{PseudonymKey, read_secret_file};
use renkei_crypto::sign::SigningKey;
use renkei_crypto::tls::{ServerTlsPaths, server_config, server_config_and_verifier};
use renkei_policies::Policies;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, limits::RateLimiter};
use crate::broker::{BrokerLimits, Clock, Hub};
use crate::config::HubConfig;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::metrics::Tracked;
use crate::portal::{self, PortalLimits};
use crate::server::{self, ConnLimits, Transport};

/// Builds the broker (keys, database, policies) from the config.
pub async fn build_hub(cfg: &HubConfig, clock: Clock) -> Result<Arc<Hub>> {
    let f = cfg;
    let key_err = |field: &'static str| {
        move |e: renkei_crypto::Error| Error::config_from(format!("`{field}`"), e)
    };
    let pseudonym_key = PseudonymKey::load(&f.keys.pseudonym).map_err(key_err("keys.pseudonym"))?;
    let signing_key = SigningKey::load(&f.keys.signing).map_err(key_err("keys.signing"))?;
    let receipt_pepper =
        read_secret_file(&f.keys.receipt_pepper).map_err(key_err("keys.receipt_pepper"))?;
    let policies = load_policies(cfg)?;
    let db = Db::connect(&f.database_url, f.limits.db_connections).await?;
    let hashed = crate::broker::enroll::hash_stored_user_refs(&db, &receipt_pepper).await?;
    let added = crate::audit::tree::backfill(&db).await?;
    if added > 0 {
        tracing::info!(
            added,
            "audit entries from before the transparency log are now leaves of its tree"
        );
    }
    if hashed > 0 {
        tracing::info!(
            hashed,
            "enrollment user references stored in plain text are now hashed"
        );
    }
    let consents = AnyConsentStore::connect(&f.database_url)
        .await
        .map_err(|e| Error::unavailable_from("consent store", e))?;
    Ok(Arc::new(Hub {
        audit: crate::audit::Writer::spawn(db.clone()),
        db,
        consents,
        policies: std::sync::RwLock::new(Arc::new(policies)),
        pseudonym_key,
        signing_key,
        log_origin: f.audit.origin.clone(),
        receipt_pepper,
        limits: BrokerLimits {
            max_batch: f.limits.max_batch,
            max_page: f.limits.max_page,
            enrollment_ttl: f.limits.enrollment_ttl,
        },
        clock,
        participant_ca: f.tls.client_ca.clone(),
        metrics: Arc::default(),
        fail_at: std::sync::Mutex::new(None),
    }))
}

/// The configured policies, or the bundled ones.
fn load_policies(cfg: &HubConfig) -> Result<Policies> {
    match &cfg.policies_dir {
        Some(dir) => Policies::load(dir).map_err(|e| Error::config_from("`policies_dir`", e)),
        None => Policies::embedded().map_err(|e| Error::config_from("bundled policies", e)),
    }
}

/// The participant (mTLS) TLS config with its client verifier, and the portal
/// (server-only) TLS config, from the config's files (`check-config` loads them as
/// `serve` does).
pub fn tls_configs(
    cfg: &HubConfig,
) -> Result<(
    Arc<rustls::ServerConfig>,
    Verifier,
    Arc<rustls::ServerConfig>,
)> {
    let f = cfg;
    let tls_err = |e: renkei_crypto::Error| Error::config_from("`tls`", e);
    let (participant, verifier) = server_config_and_verifier(&ServerTlsPaths {
        cert_chain: f.tls.cert.clone(),
        key: f.tls.key.clone(),
        client_ca: Some(f.tls.client_ca.clone()),
        crls: f.tls.crls.clone(),
    })
    .map_err(tls_err)?;
    let (portal_cert, portal_key) = f.tls.portal_pair();
    let portal = server_config(&ServerTlsPaths {
        cert_chain: portal_cert,
        key: portal_key,
        client_ca: None,
        crls: Vec::new(),
    })
    .map_err(tls_err)?;
    let verifier = verifier
        .ok_or_else(|| Error::internal("the participant listener has no client verifier"))?;
    Ok((participant, verifier, portal))
}

/// A hub serving on its listeners.
#[derive(Debug)]
pub struct Running {
    /// The broker.
    pub hub: Arc<Hub>,
    /// Bound participant API address.
    pub participant_addr: SocketAddr,
    /// Bound portal address.
    pub portal_addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    participant_tls: SharedTls,
    participant_verifier: server::SharedVerifier,
    portal_tls: SharedTls,
}

type SharedTls = Arc<std::sync::RwLock<Arc<rustls::ServerConfig>>>;
/// The participant listener's client-certificate verifier.
pub type Verifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

impl Running {
    /// Reloads certificates, CRLs and policies from the config's files (SIGHUP). New
    /// connections use them; open connections are not dropped. On any error nothing is
    /// replaced and the error names the bad file. The participant registry needs no
    /// reload: it is read on every request.
    pub fn reload(&self, cfg: &HubConfig) -> Result<()> {
        let (participant, verifier, portal) = tls_configs(cfg)?;
        let policies = load_policies(cfg)?;
        *self
            .participant_tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = participant;
        // Open connections check their certificate again on their next request.
        *self
            .participant_verifier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = verifier;
        *self
            .portal_tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = portal;
        self.hub.set_policies(policies);
        tracing::info!("reloaded certificates, CRLs and policies");
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the listeners.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the three listeners and the checkpoint timer.
pub async fn start(cfg: &HubConfig, clock: Clock) -> Result<Running> {
    let hub = build_hub(cfg, clock).await?;
    let f = cfg;
    let (participant_tls, participant_verifier, portal_tls) = tls_configs(cfg)?;
    let participant_tls = Arc::new(std::sync::RwLock::new(participant_tls));
    let participant_verifier = Arc::new(std::sync::RwLock::new(participant_verifier));
    let portal_tls = Arc::new(std::sync::RwLock::new(portal_tls));
    let limits = ConnLimits {
        max_connections: f.limits.max_connections,
        max_per_address: f.limits.max_connections_per_address,
        handshake_timeout: f.limits.handshake_timeout,
        header_timeout: f.limits.header_timeout,
    };
    let request_timeout = f.limits.request_timeout;
    let rate = Arc::new(RateLimiter::new(
        f.limits.rate_per_second,
        f.limits.rate_burst,
    ));
    let api_router = api::router(hub.clone(), f.limits.max_body_bytes, rate).layer(
        axum::middleware::from_fn_with_state(request_timeout, timeout_layer),
    );
    let portal_router = portal::router(
        hub.clone(),
        PortalLimits {
            max_failures: f.limits.portal_max_failures,
            lockout_secs: f.limits.portal_lockout.as_secs(),
        },
    )
    .layer(axum::middleware::from_fn_with_state(
        request_timeout,
        timeout_layer,
    ));
    let admin_router = crate::admin::router(hub.clone());

    let participant = server::bind(&f.listen.participant).await?;
    let portal = server::bind(&f.listen.portal).await?;
    let admin = server::bind(&f.listen.admin).await?;
    let addr = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_err(|e| Error::internal_from("listener address", e))
    };
    let (participant_addr, portal_addr, admin_addr) =
        (addr(&participant)?, addr(&portal)?, addr(&admin)?);
    let (tx, rx) = watch::channel(false);
    let drain = Duration::from_secs(10);
    let tasks = vec![
        tokio::spawn(server::serve(
            participant,
            Transport::Tls {
                config: participant_tls.clone(),
                participant: Some(participant_verifier.clone()),
                tracked: Tracked {
                    listener: "participant",
                    metrics: hub.metrics.clone(),
                },
            },
            api_router,
            limits,
            rx.clone(),
            drain,
        )),
        tokio::spawn(server::serve(
            portal,
            Transport::Tls {
                config: portal_tls.clone(),
                participant: None,
                tracked: Tracked {
                    listener: "portal",
                    metrics: hub.metrics.clone(),
                },
            },
            portal_router,
            limits,
            rx.clone(),
            drain,
        )),
        tokio::spawn(server::serve(
            admin,
            Transport::Plain,
            admin_router,
            limits,
            rx.clone(),
            drain,
        )),
        tokio::spawn(checkpoint_timer(hub.clone(), f.audit.clone(), rx)),
    ];
    tracing::info!(%participant_addr, %portal_addr, %admin_addr, "hub listening");
    Ok(Running {
        participant_tls,
        participant_verifier,
        portal_tls,
        hub,
        participant_addr,
        portal_addr,
        admin_addr,
        shutdown: tx,
        tasks,
    })
}

/// Whole-request timeout: a client that trickles its body is answered 408 and dropped.
async fn timeout_layer(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => (axum::http::StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
    }
}

/// Signs a checkpoint when `checkpoint_every` entries accumulated or
/// `checkpoint_interval` passed with new entries, whichever comes first (checked once a second).
async fn checkpoint_timer(
    hub: Arc<Hub>,
    audit: crate::config::AuditConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let due_by_time = since.elapsed() >= audit.checkpoint_interval;
                let due = match crate::audit::pending_entries(&hub.db).await {
                    Ok(n) => n > 0 && (due_by_time || n >= audit.checkpoint_every),
                    Err(e) => {
                        tracing::warn!(error = %crate::error::report(&e), "audit checkpoint check failed");
                        false
                    }
                };
                if due {
                    match crate::audit::checkpoint_as(&hub.db, &hub.signing_key, &hub.log_origin, hub.now()).await {
                        Ok(_) => since = tokio::time::Instant::now(),
                        Err(e) => tracing::warn!(error = %crate::error::report(&e), "audit checkpoint failed"),
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
}
