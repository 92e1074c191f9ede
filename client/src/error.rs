//! The one error type of the participant client, and which of its errors are worth retrying.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with the client's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the participant client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hub answered with an error (`{"error":{"code","message"}}`).
    #[error("hub refused with {status} `{code}`: {message}")]
    Hub {
        /// HTTP status.
        status: u16,
        /// The hub's stable error code, e.g. `forbidden`.
        code: String,
        /// The hub's message.
        message: String,
        /// The `Retry-After` the hub asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The hub could not be reached or the exchange broke off (retryable).
    #[error("transport to `{hub}`: {reason}")]
    Transport {
        /// The hub URL.
        hub: String,
        /// What failed.
        reason: String,
        /// Whether the request may have reached the hub (then a non-idempotent call is not retried).
        maybe_sent: bool,
    },
    /// A configuration file or value is invalid; names the file and field.
    #[error("config `{file}`: field `{field}`: {reason}")]
    Config {
        /// The file (or `<command line>`).
        file: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A crypto operation failed (key files, envelopes, grants).
    #[error("{what}: {source}")]
    Crypto {
        /// What was being done, naming the input.
        what: String,
        /// The crypto error.
        #[source]
        source: renkei_crypto::Error,
    },
    /// A response or a record does not have the expected form or content.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was being read, naming the input.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Whether the same request may succeed later: transport failures, 429 and 5xx
    /// refusals that mean "not now" (502, 503, 504).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Hub { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The hub's error code, when the hub refused.
    pub fn hub_code(&self) -> Option<&str> {
        match self {
            Error::Hub { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn crypto<E: Into<renkei_crypto::Error>>(
        what: impl Into<String>,
    ) -> impl FnOnce(E) -> Error {
        let what = what.into();
        move |source| Error::Crypto {
            what,
            source: source.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// `text` with its control characters escaped, for a terminal or a log line that may
/// hold words from outside (an ANSI sequence must not hide what follows it).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().collect(),
                false => c.to_string(),
            })
            .collect(),
    )
}

/// Text from outside (a response body, an id the hub sent) made fit for an error
/// message or a terminal: at most 200 characters, control characters escaped (an ANSI
/// sequence from a hostile hub must not hide or rewrite what is printed after it).
pub fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", printable(text.get(..cut).unwrap_or(text))),
        None => printable(text).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_bounded_and_cannot_drive_the_terminal() {
        assert_eq!(shorten("plain 日本語"), "plain 日本語");
        assert_eq!(shorten("a\u{1b}[8mhidden\r\n"), "a\\u{1b}[8mhidden\\r\\n");
        assert_eq!(printable("ok"), "ok");
        assert_eq!(printable("\u{1b}[2J"), "\\u{1b}[2J");
        let long = "x".repeat(500);
        assert_eq!(shorten(&long).chars().count(), 201);
    }

    fn hub(status: u16) -> Error {
        Error::Hub {
            status,
            code: "x".into(),
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn retryable_only_for_not_now_answers() {
        assert!(hub(429).is_retryable());
        assert!(hub(503).is_retryable());
        for status in [400, 401, 403, 404, 409, 413, 500] {
            assert!(!hub(status).is_retryable(), "{status}");
        }
        let t = Error::Transport {
            hub: "h".into(),
            reason: "r".into(),
            maybe_sent: true,
        };
        assert!(t.is_retryable());
        assert!(!Error::invalid("a", "b").is_retryable());
    }

    #[test]
    fn shorten_cuts_long_text_on_a_char_boundary() {
        let long = "あ".repeat(300);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), 201);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("ok"), "ok");
    }
}
