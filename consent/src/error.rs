//! The crate's one error type.

use crate::ledger::ChainError;
use crate::model::Status;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the consent crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A subject token did not have the `st1_` + 32 base32 form.
    #[error("invalid subject token `{0}`: expected `st1_` and 32 lowercase base32 characters")]
    InvalidSubject(String),
    /// A participant id did not have the `kind:id` form.
    #[error("invalid participant `{0}`: expected `kind:id` with a known kind and a lowercase id")]
    InvalidParticipant(String),
    /// Consent terms were inconsistent (a field named in the message).
    #[error("invalid consent terms: {0}")]
    InvalidTerms(String),
    /// A database URL had an unknown scheme (the URL is not echoed: it may hold a password).
    #[error("invalid database url: expected `sqlite:PATH`, `sqlite::memory:` or `postgres://…`")]
    InvalidDatabaseUrl,
    /// No consent has this id.
    #[error("consent `{0}` not found")]
    NotFound(String),
    /// The consent cannot change because it is no longer active.
    #[error("consent `{id}` is {status}, not active")]
    NotActive {
        /// The consent id.
        id: String,
        /// Its effective status at the time of the request.
        status: Status,
    },
    /// A revocation code was not well formed (the code itself is never echoed).
    #[error("malformed revocation code: {0}")]
    MalformedCode(&'static str),
    /// No consent has this revocation code.
    #[error("revocation code not recognized")]
    UnknownCode,
    /// The revocation code was used before; codes are one-time.
    #[error("revocation code already used")]
    CodeUsed,
    /// A receipt has no signature to verify.
    #[error("receipt for consent `{0}` is not signed")]
    UnsignedReceipt(String),
    /// A receipt's signature did not verify.
    #[error("receipt signature for consent `{0}` does not verify")]
    BadSignature(String),
    /// A receipt's terms differ from the stored consent.
    #[error("receipt for consent `{0}` does not match the stored consent: {1}")]
    ReceiptMismatch(String, &'static str),
    /// The hash chain of the ledger is broken.
    #[error("consent ledger broken: {0}")]
    Chain(#[from] ChainError),
    /// A stored row could not be read back (the column is named).
    #[error("stored consent data is corrupt: {0}")]
    Corrupt(String),
    /// JSON encoding or decoding failed.
    #[error("consent json: {0}")]
    Json(#[from] serde_json::Error),
    /// The database failed.
    #[error("consent database: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("consent migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
