//! The broker's decisions, independent of HTTP: ingest, key-grant brokering,
//! enrollment, consents, the recipient feed and events. Each operation runs in one
//! database transaction that re-checks consent and policy and appends to the audit log.

pub mod bounded;
pub mod consents;
pub mod coverage;
pub mod enroll;
pub mod evaluation;
pub mod events;
pub mod grants;
pub mod ingest;
pub mod links;
pub mod records;
pub mod resolve;
pub mod revocations;
pub mod statements;
pub mod subjects;
pub mod unreadable;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use renkei_consent::AnyConsentStore;
use renkei_crypto::keys::PseudonymKey;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::sign::SigningKey;
use renkei_policies::Policies;
use sqlx::AnyConnection;
use zeroize::Zeroizing;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::registry::{self, Participant};

/// Where the hub reads the time. Library code never reads the clock itself.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A settable clock for tests.
    Fixed(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            #[expect(
                clippy::disallowed_methods,
                reason = "the hub's one reading of the wall clock"
            )]
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Moves a fixed clock (no effect on the system clock).
    pub fn set(&self, to: DateTime<Utc>) {
        if let Clock::Fixed(t) = self {
            *t.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = to;
        }
    }
}

/// Broker limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct BrokerLimits {
    /// Most records in one upload batch.
    pub max_batch: usize,
    /// Most items in one feed page.
    pub max_page: i64,
    /// How long an enrollment request waits for its source.
    pub enrollment_ttl: Duration,
}

/// Everything the broker needs; shared by all handlers.
#[derive(Debug)]
pub struct Hub {
    /// The hub database.
    pub db: Db,
    /// Group-committed audit appends for reads.
    pub audit: crate::audit::Writer,
    /// The consent store (same database).
    pub consents: AnyConsentStore,
    /// Catalog and Cedar policies; replaced as a whole on reload.
    pub policies: std::sync::RwLock<Arc<Policies>>,
    /// K_hub_pseudonym for per-recipient pseudonyms.
    pub pseudonym_key: PseudonymKey,
    /// The hub's Ed25519 key for checkpoints and receipts.
    pub signing_key: SigningKey,
    /// The transparency log's origin (`[audit] origin`).
    pub log_origin: String,
    /// Secret pepper for receipt-code hashes.
    pub receipt_pepper: Zeroizing<Vec<u8>>,
    /// Limits.
    pub limits: BrokerLimits,
    /// The clock.
    pub clock: Clock,
    /// The participant CA (PEM) that consent statements are checked against.
    pub participant_ca: std::path::PathBuf,
    /// This instance's request, handshake and process counters (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Crash tests only: the named point where the next transaction fails
    /// ([`Hub::fail_point`]); none in service.
    pub fail_at: std::sync::Mutex<Option<&'static str>>,
}

impl Hub {
    /// Fails with an internal error at `point` when a crash test armed it
    /// ([`Hub::fail_at`]); the caller's transaction then rolls back, as after a crash.
    pub fn fail_point(&self, point: &'static str) -> crate::error::Result<()> {
        let armed = *self
            .fail_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if armed == Some(point) {
            return Err(crate::error::Error::internal(format!(
                "fail point `{point}`"
            )));
        }
        Ok(())
    }

    /// The policies in force now (a reload swaps them between requests).
    pub fn policies(&self) -> Arc<Policies> {
        self.policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the policies (after they loaded and validated).
    pub fn set_policies(&self, policies: Policies) {
        *self
            .policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policies);
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// Checks the caller against the registry inside the request's transaction: it must be
/// registered, active, and of one of `kinds`. Suspension is effective immediately.
pub async fn authorize_caller(
    conn: &mut AnyConnection,
    who: &ParticipantId,
    kinds: &[ParticipantKind],
) -> Result<Participant> {
    let Some(p) = registry::get(conn, who).await? else {
        return Err(Error::Forbidden(format!(
            "participant `{who}` is not registered"
        )));
    };
    if p.suspended() {
        return Err(Error::Forbidden(format!(
            "participant `{who}` is suspended"
        )));
    }
    if !kinds.contains(&who.kind()) {
        return Err(Error::Forbidden(format!(
            "a `{}` participant may not use this endpoint",
            who.kind().as_str()
        )));
    }
    Ok(p)
}

/// Kinds that publish records and answer key-grant requests for them: LGWAN sources,
/// PHR apps (their residents' own records) and clinics (vaccinations they gave).
pub const PUBLISHERS: &[ParticipantKind] = &[
    ParticipantKind::Source,
    ParticipantKind::Phr,
    ParticipantKind::Clinic,
];

/// Kinds that receive records.
pub const RECIPIENTS: &[ParticipantKind] = &[
    ParticipantKind::Phr,
    ParticipantKind::Clinic,
    ParticipantKind::Municipality,
    ParticipantKind::Analyst,
    ParticipantKind::Insurer,
];

/// Every kind that uses the participant API (the admin works through the CLI).
pub const ANY_PARTICIPANT: &[ParticipantKind] = &[
    ParticipantKind::Source,
    ParticipantKind::Phr,
    ParticipantKind::Clinic,
    ParticipantKind::Municipality,
    ParticipantKind::Analyst,
    ParticipantKind::Insurer,
];
