//! What this hub instance counts for Prometheus (the admin listener's `/metrics` adds the
//! database gauges every instance shares): requests by listener, route, method, caller
//! kind and status class with a latency histogram per route and kind, TLS handshakes
//! refused by reason, idle connections parked, and the process (memory, CPU, file descriptors, start time, build).
//!
//! Counters live in one mutex-guarded map per kind of series: a request takes the lock
//! once, after its answer is ready.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::PeerIdentity;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Series key of a request: listener, route template, method, caller kind.
type RouteKey = (&'static str, String, String, &'static str);

#[derive(Debug, Default)]
struct RouteStats {
    /// Answers by status class (`1xx` … `5xx`).
    by_class: [u64; 5],
    /// Cumulative bucket counts, then the count and sum of all.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// This instance's counters.
#[derive(Debug)]
pub struct Metrics {
    routes: Mutex<BTreeMap<RouteKey, RouteStats>>,
    handshakes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Connections parked now (crate::park), by listener.
    parked: Mutex<BTreeMap<&'static str, u64>>,
    started: std::time::SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: Mutex::default(),
            handshakes: Mutex::default(),
            parked: Mutex::default(),
            #[expect(
                clippy::disallowed_methods,
                reason = "the process start time for process_start_time_seconds"
            )]
            started: std::time::SystemTime::now(),
        }
    }
}

/// The state of [`track`] on one listener.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// `participant`, `portal` or `admin`.
    pub listener: &'static str,
    /// Where to count.
    pub metrics: Arc<Metrics>,
}

/// Middleware counting each routed request and its latency (use with `route_layer`, so
/// that the route template is known and ids in paths never become labels).
pub async fn track(State(t): State<Tracked>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A fixed set: any token is a valid HTTP method, and each label value is a series.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "other",
    }
    .to_owned();
    let kind = match req.extensions().get::<PeerIdentity>() {
        Some(PeerIdentity::Participant(p)) => p.kind().as_str(),
        Some(PeerIdentity::Invalid(_)) => "invalid",
        None => "none",
    };
    let resp = next.run(req).await;
    let class = usize::from(resp.status().as_u16() / 100).clamp(1, 5) - 1;
    t.metrics.observe(
        (t.listener, route, method, kind),
        class,
        started.elapsed().as_secs_f64(),
    );
    resp
}

impl Metrics {
    fn observe(&self, key: RouteKey, class: usize, secs: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let s = routes.entry(key).or_default();
        if let Some(c) = s.by_class.get_mut(class) {
            *c += 1;
        }
        for (bound, n) in BUCKETS.iter().zip(s.buckets.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
    }

    /// Counts a TLS handshake `listener` refused, by [`handshake_reason`].
    pub fn handshake_failed(&self, listener: &'static str, reason: &'static str) {
        *self
            .handshakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((listener, reason))
            .or_default() += 1;
    }

    /// One more (`true`) or one fewer connection of `listener` parked.
    pub fn parked(&self, listener: &'static str, more: bool) {
        let mut parked = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        let n = parked.entry(listener).or_default();
        *n = if more { *n + 1 } else { n.saturating_sub(1) };
    }

    /// The Prometheus text of these counters and of the process.
    pub fn render(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP renkei_http_requests_total Requests answered, by listener, route, method, caller kind and status class\n\
             # TYPE renkei_http_requests_total counter"
        );
        for ((listener, route, method, kind), s) in routes.iter() {
            for (i, n) in s.by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(
                    out,
                    "renkei_http_requests_total{{listener=\"{listener}\",route=\"{}\",method=\"{method}\",kind=\"{kind}\",code_class=\"{}xx\"}} {n}",
                    label(route),
                    i + 1
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP renkei_http_request_errors_total Requests answered with a 4xx or 5xx status\n\
             # TYPE renkei_http_request_errors_total counter"
        );
        for ((listener, route, method, kind), s) in routes.iter() {
            let errors =
                s.by_class.get(3).copied().unwrap_or(0) + s.by_class.get(4).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "renkei_http_request_errors_total{{listener=\"{listener}\",route=\"{}\",method=\"{method}\",kind=\"{kind}\"}} {errors}",
                label(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP renkei_http_request_duration_seconds Time from the request to its answer\n\
             # TYPE renkei_http_request_duration_seconds histogram"
        );
        for ((listener, route, method, kind), s) in routes.iter() {
            let labels = format!(
                "listener=\"{listener}\",route=\"{}\",method=\"{method}\",kind=\"{kind}\"",
                label(route)
            );
            for (bound, n) in BUCKETS.iter().zip(s.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "renkei_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "renkei_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 renkei_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 renkei_http_request_duration_seconds_count{{{labels}}} {}",
                s.count, s.sum, s.count
            );
        }
        drop(routes);
        let _ = writeln!(
            out,
            "# HELP renkei_tls_handshake_failures_total TLS handshakes refused, by listener and reason\n\
             # TYPE renkei_tls_handshake_failures_total counter"
        );
        for ((listener, reason), n) in self
            .handshakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "renkei_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP renkei_connections_parked Idle keep-alive connections waiting without HTTP buffers, by listener\n\
             # TYPE renkei_connections_parked gauge"
        );
        for (listener, n) in self
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "renkei_connections_parked{{listener=\"{listener}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP renkei_build_info The running build\n# TYPE renkei_build_info gauge\n\
             renkei_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.render_process(out);
    }

    /// `process_*` as Prometheus' client libraries name them, from `/proc/self`.
    fn render_process(&self, out: &mut String) {
        let start = self
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Start time of the process since the epoch\n\
             # TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {start}"
        );
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let _ = writeln!(
                out,
                "# HELP process_open_fds Open file descriptors\n# TYPE process_open_fds gauge\n\
                 process_open_fds {}",
                fds.count()
            );
        }
        // /proc/self/stat: utime and stime (fields 14, 15) in clock ticks, rss (24) in pages.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split(' ').collect())
            .unwrap_or_default();
        let field = |n: usize| {
            fields
                .get(n - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // The kernel's USER_HZ and page size on Linux targets this runs on.
        let (ticks, page) = (100.0, 4096.0);
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n\
             # HELP process_resident_memory_bytes Resident memory\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            (field(14) + field(15)) / ticks,
            field(24) * page
        );
    }
}

/// A label value with `\` and `"` escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Why a TLS handshake was refused, as a short label (`timeout` for one that took too
/// long): a client without a certificate, a certificate the CA or CRL refuses, a
/// protocol or version mismatch, the peer's own alert, or the connection dropping.
pub fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return "io";
    };
    match tls {
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::Revoked => "certificate_revoked",
            CertificateError::UnknownIssuer => "certificate_unknown_issuer",
            CertificateError::BadSignature => "certificate_bad_signature",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate_not_yet_valid"
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "certificate_wrong_purpose"
            }
            _ => "certificate_invalid",
        },
        E::PeerIncompatible(_) => "incompatible",
        E::AlertReceived(_) => "alert_from_client",
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => "protocol",
        E::PeerMisbehaved(_) | E::InvalidMessage(_) => "protocol",
        _ => "other",
    }
}
