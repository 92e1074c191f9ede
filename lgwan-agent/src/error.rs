//! The one error type of the agent library.
//!
//! Bad *input* (a malformed document, a zip entry leaving the root) is not an
//! error: it becomes a [`crate::quarantine::Quarantine`] report and the import
//! goes on. Errors are for the agent's own environment: its config, keys,
//! outbox and output.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that stops an agent command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file the agent needs could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown or invalid field.
    #[error("config `{path}`: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A value given on the command line or in config is invalid.
    #[error("invalid {field} `{value}`: {reason}")]
    Invalid {
        /// The field, e.g. `birth date`.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data catalog could not be loaded.
    #[error(transparent)]
    Catalog(#[from] renkei_policies::Error),
    /// A key or crypto operation failed.
    #[error(transparent)]
    Crypto(#[from] renkei_crypto::Error),
    /// The outbox database failed.
    #[error("outbox `{path}`: {reason}")]
    Outbox {
        /// The outbox file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A call to the hub failed (transport, refusal, or an unexpected answer).
    #[error(transparent)]
    Hub(#[from] renkei_client::Error),
    /// The hub's audit checkpoint is not acceptable (bad signature, rollback, fork).
    #[error("hub audit checkpoint: {0}")]
    Checkpoint(String),

    /// The agent refused to release a record key (release list, policies, an unbound key
    /// or a record that is not its own); the hub's request is not answered.
    #[error("refused: {0}")]
    Refused(String),

    /// An enrollment code cannot be issued for these identifiers (said to staff only).
    #[error("no enrollment code issued: {0}")]
    EnrollmentCode(String),
    /// A worker thread of the agent failed.
    #[error("worker: {0}")]
    Worker(String),
    /// Writing the output (preview lines, reports) failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

impl From<renkei_crypto::participant::IdError> for Error {
    fn from(e: renkei_crypto::participant::IdError) -> Self {
        Error::Crypto(e.into())
    }
}

impl Error {
    /// An [`Error::Outbox`] for the outbox at `path`.
    pub(crate) fn outbox(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::Outbox {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// Whether trying again later may succeed: the hub is down, busy or unreachable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Hub(e) if e.is_retryable())
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
