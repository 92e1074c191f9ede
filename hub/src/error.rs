//! The hub's one error type. Each variant maps to an HTTP status and a stable,
//! machine-readable code; internal detail is logged, never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Result with the hub's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the hub.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (names the input and the problem).
    #[error("{0}")]
    BadRequest(String),
    /// No or unusable client identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The participant may not do this (policy, consent, kind or suspension).
    #[error("{0}")]
    Forbidden(String),
    /// The participant may not act for this resident; the first field is the stable
    /// machine-readable code (`subject_not_owned`, `not_acting_for_resident`, …).
    #[error("{1}")]
    Refused(&'static str, String),
    /// Not found, or not visible to this participant (the two are not distinguished).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with what is stored (e.g. a different record under an existing id).
    #[error("{0}")]
    Conflict(String),
    /// The body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// Too many requests; retry after the given seconds.
    #[error("rate limit exceeded")]
    RateLimited(u64),
    /// A dependency (the database) is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The database aborted the transaction to resolve a conflict (deadlock,
    /// serialization, busy); the operation can be retried as a whole.
    #[error("{0}")]
    Transient(String),
    /// Configuration is invalid (names the file and field).
    #[error("{0}")]
    Config(String),
    /// A bug or an unexpected state; detail is logged only.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status and stable error code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Refused(code, _) => (StatusCode::FORBIDDEN, code),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::Unavailable(_) | Error::Transient(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Error::Config(_) | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl From<renkei_consent::Error> for Error {
    fn from(e: renkei_consent::Error) -> Self {
        crate::broker::consents::consent_error(e)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(format!("database: {e}")),
            sqlx::Error::Database(ref d) if is_conflict(d.code().as_deref()) => {
                Error::Transient(format!("database: {e}"))
            }
            sqlx::Error::Database(ref d) if is_transient(d.code().as_deref()) => {
                Error::Unavailable(format!("database: {e}"))
            }
            other => Error::Internal(format!("database: {other}")),
        }
    }
}

/// SQLite busy/locked and PostgreSQL serialization failure and deadlock: the
/// transaction lost a race and can simply run again.
fn is_conflict(code: Option<&str>) -> bool {
    matches!(code, Some("5" | "6" | "517" | "261" | "40001" | "40P01"))
}

/// PostgreSQL shutting down or the connection failing.
fn is_transient(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("57P01" | "57P02" | "57P03" | "08006" | "08003" | "08001")
    )
}

/// Runs `op` again (up to 4 times, with a short growing pause) while it fails with
/// [`Error::Transient`]. `op` must be a whole transaction, safe to repeat.
pub async fn retry<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(Error::Transient(reason)) if attempt < 4 => {
                attempt += 1;
                tracing::debug!(%reason, attempt, "retrying a transaction that lost a race");
                let jitter = u64::from(rand::random::<u8>() % 20);
                tokio::time::sleep(std::time::Duration::from_millis(
                    10 * u64::from(attempt) + jitter,
                ))
                .await;
            }
            other => return other,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Error::Internal(detail) | Error::Config(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            Error::Unavailable(detail) | Error::Transient(detail) => {
                tracing::warn!(error = %detail, "service unavailable");
                "service temporarily unavailable".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response();
        match self {
            Error::RateLimited(secs) => {
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Error::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
