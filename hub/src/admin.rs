//! Admin endpoints (plain HTTP on loopback by default): liveness, readiness (the
//! database answers) and Prometheus metrics.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::Row;

use crate::broker::Hub;

/// The admin router.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(hub)
}

async fn readyz(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    if hub.db.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}

/// Gauges read from the database, so every instance reports the shared state.
async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let queries = [
        (
            "renkei_records",
            "Sealed records stored",
            "SELECT COUNT(*) AS n FROM hub_records",
        ),
        (
            "renkei_key_grants",
            "Key grants stored",
            "SELECT COUNT(*) AS n FROM hub_key_grants",
        ),
        (
            "renkei_grant_requests_pending",
            "Key-grant requests waiting for a source",
            "SELECT COUNT(*) AS n FROM hub_grant_requests",
        ),
        (
            "renkei_enrollments_pending",
            "Enrollments waiting for a source",
            "SELECT COUNT(*) AS n FROM hub_enrollments WHERE status = 'pending'",
        ),
        (
            "renkei_events_unacked",
            "Events not yet acknowledged",
            "SELECT COUNT(*) AS n FROM hub_events WHERE acked_at IS NULL",
        ),
        (
            "renkei_audit_entries",
            "Audit log length",
            "SELECT value AS n FROM hub_sequences WHERE name = 'audit'",
        ),
        (
            "renkei_participants_suspended",
            "Suspended participants",
            "SELECT COUNT(*) AS n FROM hub_participants WHERE status <> 'active'",
        ),
    ];
    let mut out = String::new();
    let up = hub.db.ping().await;
    let _ = writeln!(
        out,
        "# HELP renkei_db_up Database reachable\n# TYPE renkei_db_up gauge\nrenkei_db_up {}",
        u8::from(up)
    );
    for (name, help, sql) in queries {
        let Ok(row) = sqlx::query(sql).fetch_one(hub.db.pool()).await else {
            continue;
        };
        let n: i64 = row.try_get("n").unwrap_or(0);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {n}");
    }
    if let Ok(rows) = sqlx::query(
        "SELECT source, COUNT(*) AS n FROM hub_unreadable GROUP BY source ORDER BY source",
    )
    .fetch_all(hub.db.pool())
    .await
    {
        let _ = writeln!(
            out,
            "# HELP renkei_unreadable_reports Records recipients reported they could not open, by source\n\
             # TYPE renkei_unreadable_reports gauge"
        );
        for r in rows {
            let source: String = r.try_get("source").unwrap_or_default();
            let n: i64 = r.try_get("n").unwrap_or(0);
            let _ = writeln!(out, "renkei_unreadable_reports{{source=\"{source}\"}} {n}");
        }
    }
    if let Ok(row) =
        sqlx::query("SELECT COUNT(*) AS n FROM hub_portal_attempts WHERE locked_until > $1")
            .bind(crate::db::micros(hub.now()))
            .fetch_one(hub.db.pool())
            .await
    {
        let n: i64 = row.try_get("n").unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP renkei_portal_locked_clients Portal clients locked out now after wrong receipt codes\n\
             # TYPE renkei_portal_locked_clients gauge\nrenkei_portal_locked_clients {n}"
        );
    }
    hub.metrics.render(&mut out);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}
