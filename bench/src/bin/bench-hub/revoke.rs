//! Revocation under read load on two hub instances sharing one database: readers on
//! both instances read consented records at random while consents are revoked at
//! random through either instance; a read that succeeds although it was sent after the
//! revocation of its consent returned is a stale read (the target is none).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng};
use renkei_bench::hub::Member;
use renkei_bench::load::{Target, connect, get};
use renkei_client::api::FeedItem;
use serde::Serialize;

/// What the revocation run saw.
#[derive(Debug, Default, Serialize)]
pub(crate) struct RevokeReport {
    /// Consents revoked during the load (the revocation call returned success).
    pub(crate) revoked: usize,
    /// Revocation calls that returned an error (not retried).
    pub(crate) revoke_errors: usize,
    /// The first such error.
    pub(crate) revoke_error_sample: String,
    /// Reads answered 200.
    pub(crate) reads_ok: usize,
    /// Reads refused (403/404) or failed.
    pub(crate) reads_refused: usize,
    /// Reads answered 200 for a consent whose revocation had returned before the read
    /// was sent.
    pub(crate) stale: usize,
    /// Reads refused after their consent's revocation returned (the check working).
    pub(crate) refused_after_revoke: usize,
    /// 200 answers per second over both instances.
    pub(crate) rps: f64,
}

struct Sample {
    sent: Instant,
    consent: Option<String>,
    record: usize,
}

/// The revocation workload.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Reading connections, spread over the instances.
    pub(crate) readers: usize,
    /// How long the reads run.
    pub(crate) duration: Duration,
    /// Record ids that may be read.
    pub(crate) records: Arc<Vec<String>>,
    /// For each record, the index of its consent in `consents`.
    pub(crate) owner: Arc<Vec<usize>>,
    /// Consent ids.
    pub(crate) consents: Vec<String>,
    /// How many consents to revoke, evenly over the time.
    pub(crate) revokes: usize,
}

/// Runs the workload against `targets` (one per instance), revoking through `source`
/// on each instance in turn.
pub(crate) async fn run(targets: &[Target], source: &Member, w: Workload) -> Result<RevokeReport> {
    let Workload {
        readers,
        duration,
        records,
        owner,
        consents,
        revokes,
    } = w;
    let revoked_at: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for r in 0..readers {
        let Some(t) = targets.get(r % targets.len().max(1)).cloned() else {
            break;
        };
        let records = records.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7_000 + r as u64);
            let mut samples = Vec::new();
            let mut conn = connect(&t).await;
            while Instant::now() < deadline {
                let c = match &mut conn {
                    Ok(c) => c,
                    Err(_) => {
                        conn = connect(&t).await;
                        continue;
                    }
                };
                let record = rng.gen_range(0..records.len());
                let Some(id) = records.get(record) else {
                    continue;
                };
                let sent = Instant::now();
                match get(c, &format!("/v1/records/{id}"), false).await {
                    Ok((s, body)) if s.is_success() => {
                        let consent = serde_json::from_slice::<FeedItem>(&body)
                            .ok()
                            .map(|i| i.consent_id);
                        samples.push(Sample {
                            sent,
                            consent,
                            record,
                        });
                    }
                    Ok(_) => samples.push(Sample {
                        sent,
                        consent: None,
                        record,
                    }),
                    Err(_) => {
                        samples.push(Sample {
                            sent,
                            consent: None,
                            record,
                        });
                        conn = connect(&t).await;
                    }
                }
            }
            samples
        }));
    }
    let clients = targets
        .iter()
        .map(|t| source.client_with(t.addr, renkei_client::retry::RetryPolicy::NONE))
        .collect::<Result<Vec<_>>>()?;
    let mut order: Vec<usize> = (0..consents.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let revokes = revokes.min(consents.len());
    let gap = duration.mul_f64(0.9) / u32::try_from(revokes.max(1)).unwrap_or(u32::MAX);
    let mut report = RevokeReport::default();
    for (n, which) in order.iter().take(revokes).enumerate() {
        tokio::time::sleep_until((started + gap * u32::try_from(n + 1).unwrap_or(u32::MAX)).into())
            .await;
        let Some(client) = clients.get(n % clients.len().max(1)) else {
            break;
        };
        let Some(id) = consents.get(*which) else {
            continue;
        };
        if let Err(e) = client.revoke_consent(id, "benchmark").await {
            if report.revoke_errors == 0 {
                report.revoke_error_sample = e.to_string();
            }
            report.revoke_errors += 1;
            continue;
        }
        revoked_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(*which, Instant::now());
        report.revoked += 1;
    }
    let revoked_at = revoked_at
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let by_id: HashMap<&str, usize> = consents
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    for t in tasks {
        for s in t.await? {
            let consent_of_record = owner.get(s.record).copied();
            let revoked_before = consent_of_record
                .and_then(|c| revoked_at.get(&c))
                .is_some_and(|at| *at < s.sent);
            match s.consent {
                Some(c) => {
                    report.reads_ok += 1;
                    let served_under = by_id.get(c.as_str()).copied();
                    let stale = served_under
                        .and_then(|i| revoked_at.get(&i))
                        .is_some_and(|at| *at < s.sent);
                    if stale || revoked_before {
                        report.stale += 1;
                    }
                }
                None => {
                    report.reads_refused += 1;
                    if revoked_before {
                        report.refused_after_revoke += 1;
                    }
                }
            }
        }
    }
    report.rps = report.reads_ok as f64 / duration.as_secs_f64();
    Ok(report)
}
