//! The hub's one error type. Each variant maps to an HTTP status and a stable,
//! machine-readable code; internal detail is logged, never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Result with the hub's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An underlying error kept as the [`std::error::Error::source`] of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the hub.
///
/// The kinds that can stem from another error (`BadRequest`, `Unavailable`,
/// `Transient`, `Config`, `Internal`) hold a `context` (what the hub was doing,
/// naming the input, file or field) and, when there is one, the underlying error as
/// their `source()`; build them with the constructors ([`Error::internal`],
/// [`Error::internal_from`], …). Internal detail reaches the log through [`report`],
/// never the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (names the input and the problem). The message,
    /// cause included, is what the client sees: the cause says what is wrong with
    /// its input.
    #[error("{}", with_cause(.context, .source))]
    BadRequest {
        /// The input and the problem.
        context: String,
        /// The parse error behind it, if any.
        #[source]
        source: Option<BoxError>,
    },
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
    #[error("{context}")]
    Unavailable {
        /// What the hub was doing.
        context: String,
        /// The failure of the dependency, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The database aborted the transaction to resolve a conflict (deadlock,
    /// serialization, busy); the operation can be retried as a whole.
    #[error("{context}")]
    Transient {
        /// What the hub was doing.
        context: String,
        /// The database error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Configuration is invalid (names the file and field). Operators read it, so
    /// the message includes the cause as well as keeping it as the source.
    #[error("{}", with_cause(.context, .source))]
    Config {
        /// The file and the field.
        context: String,
        /// The I/O or parse error behind it, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A bug or an unexpected state; detail is logged only.
    #[error("{context}")]
    Internal {
        /// What the hub was doing.
        context: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// `context: cause` for the kinds whose message includes their cause (the cause
/// alone when there is no context, see [`Error::bad_input`]).
fn with_cause(context: &str, source: &Option<BoxError>) -> String {
    match source {
        Some(s) if context.is_empty() => s.to_string(),
        Some(s) => format!("{context}: {s}"),
        None => context.to_owned(),
    }
}

/// An error and each of its sources, `: `-separated, for the log and the command
/// line. A source whose text the message already ends with (the kinds that include
/// their cause) is not repeated.
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

macro_rules! constructors {
    ($($variant:ident: $plain:ident, $from:ident, $what:literal;)*) => {
        impl Error {
            $(
                #[doc = concat!("A ", $what, " with no underlying error.")]
                pub fn $plain(context: impl Into<String>) -> Error {
                    Error::$variant { context: context.into(), source: None }
                }

                #[doc = concat!("A ", $what, " caused by `source`, kept as its `source()`.")]
                pub fn $from(context: impl Into<String>, source: impl Into<BoxError>) -> Error {
                    Error::$variant { context: context.into(), source: Some(source.into()) }
                }
            )*
        }
    };
}

impl Error {
    /// A malformed request whose cause says it all (a signature, note or revocation
    /// list that does not verify): the client's message is the cause's.
    pub fn bad_input(source: impl Into<BoxError>) -> Error {
        Error::BadRequest {
            context: String::new(),
            source: Some(source.into()),
        }
    }
}

constructors! {
    BadRequest: bad_request, bad_request_from, "malformed request";
    Unavailable: unavailable, unavailable_from, "dependency failure";
    Transient: transient, transient_from, "lost transaction race";
    Config: config, config_from, "configuration error";
    Internal: internal, internal_from, "bug or unexpected state";
}

impl Error {
    /// The HTTP status and stable error code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Refused(code, _) => (StatusCode::FORBIDDEN, code),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::Unavailable { .. } | Error::Transient { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Error::Config { .. } | Error::Internal { .. } => {
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
            | sqlx::Error::WorkerCrashed => Error::unavailable_from("database", e),
            sqlx::Error::Database(ref d) if is_conflict(d.code().as_deref()) => {
                Error::transient_from("database", e)
            }
            sqlx::Error::Database(ref d) if is_transient(d.code().as_deref()) => {
                Error::unavailable_from("database", e)
            }
            other => Error::internal_from("database", other),
        }
    }
}

impl From<rusqlite::Error> for Error {
    /// The synchronous SQLite readers ([`crate::db::Db::try_read`]): a lock held too
    /// long or a failing disk makes the database unavailable; anything else (a statement
    /// that does not prepare, a stored value of the wrong type) is a bug.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, SystemIoFailure};
        match e {
            rusqlite::Error::SqliteFailure(ref f, _)
                if matches!(
                    f.code,
                    DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen
                ) =>
            {
                Error::unavailable_from("database", e)
            }
            other => Error::internal_from("database read", other),
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
            Err(e @ Error::Transient { .. }) if attempt < 4 => {
                attempt += 1;
                let reason = report(&e);
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
            Error::Internal { .. } | Error::Config { .. } => {
                tracing::error!(error = %report(&self), "internal error");
                "internal error".to_owned()
            }
            Error::Unavailable { .. } | Error::Transient { .. } => {
                tracing::warn!(error = %report(&self), "service unavailable");
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
            Error::Unavailable { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;

    async fn body(e: Error) -> (StatusCode, String) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_database_error_is_the_source_and_stays_out_of_the_body() {
        let io = io::Error::new(io::ErrorKind::ConnectionRefused, "db.internal:5432 refused");
        let e = Error::from(sqlx::Error::Io(io));
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        let source = e.source().unwrap();
        assert!(source.downcast_ref::<sqlx::Error>().is_some(), "{source:?}");
        let chain = report(&e);
        assert!(
            chain.starts_with("database: ") && chain.contains("db.internal:5432 refused"),
            "{chain}"
        );
        let (status, text) = body(e).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("service temporarily unavailable"), "{text}");
        assert!(
            !text.contains("db.internal") && !text.contains("database"),
            "{text}"
        );

        let e = Error::from(sqlx::Error::Protocol("unexpected row shape".into()));
        assert!(matches!(e, Error::Internal { .. }), "{e:?}");
        assert!(e.source().unwrap().downcast_ref::<sqlx::Error>().is_some());
        let (status, text) = body(e).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            text.contains("\"internal error\"") && !text.contains("row shape"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_io_error_is_the_source_and_stays_out_of_the_body() {
        let io = io::Error::new(io::ErrorKind::PermissionDenied, "/var/lib/renkei denied");
        let e = Error::internal_from("backup `/var/lib/renkei/x`", io);
        assert_eq!(e.to_string(), "backup `/var/lib/renkei/x`");
        let source = e.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            report(&e),
            "backup `/var/lib/renkei/x`: /var/lib/renkei denied"
        );
        let (status, text) = body(e).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!text.contains("renkei"), "{text}");
    }

    #[test]
    fn a_config_error_names_its_cause_once() {
        let io = io::Error::new(io::ErrorKind::NotFound, "no such file");
        let e = Error::config_from("config `hub.toml`", io);
        assert_eq!(e.to_string(), "config `hub.toml`: no such file");
        assert!(e.source().unwrap().downcast_ref::<io::Error>().is_some());
        assert_eq!(report(&e), "config `hub.toml`: no such file");
        assert_eq!(
            status_of(&Error::config("x")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn a_bad_request_keeps_its_message_for_the_client() {
        let parse = serde_json::from_str::<u8>("300").unwrap_err();
        let expected = format!("records[0]: {parse}");
        let e = Error::bad_request_from("records[0]", parse);
        assert!(
            e.source()
                .unwrap()
                .downcast_ref::<serde_json::Error>()
                .is_some()
        );
        assert_eq!(e.to_string(), expected);
        let (status, text) = body(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["message"], expected.as_str());
        assert_eq!(v["error"]["code"], "bad_request");
    }

    #[tokio::test]
    async fn retry_runs_a_transient_failure_again() {
        let mut runs = 0;
        let out: Result<u8> = retry(|| {
            runs += 1;
            let n = runs;
            async move {
                if n < 3 {
                    Err(Error::transient("lost a race"))
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(runs, 3);
    }

    fn status_of(e: &Error) -> StatusCode {
        e.status_and_code().0
    }
}
