//! Renkei consent ledger: consent records, their lifecycle, the hash-chained ledger,
//! resident receipts with one-time revocation codes, and the sqlx store (SQLite and
//! PostgreSQL) with the indexed queries the hub needs.
//!
//! Time is always a parameter (`now`); nothing in this crate reads the wall clock.
//! Expiry is computed at decision time from `valid_until`.

pub mod coverage;
mod error;
pub mod fhir;
pub mod ledger;
pub mod model;
pub mod receipt;
pub mod store;
mod validate;

pub use error::{Error, Result};
pub use ledger::{ChainError, ChainHead, ChainReport, LedgerAction, LedgerEntry};
pub use model::{
    Consent, ConsentTerms, DataPeriod, Guardian, Method, Revocation, RevocationRequest, RevokedBy,
    Status,
};
pub use receipt::{Receipt, ReceiptSigner, ReceiptVerifier, RevocationCode};
pub use store::{
    AnyConsentStore, ConsentChange, ConsentStore, CoverQuery, MIGRATION_VERSIONS, migrator,
    postgres::PgStore, sqlite::SqliteStore,
};
pub use validate::{
    MAX_CATEGORIES, MAX_TEXT, validate_participant, validate_sizes, validate_subject_token,
};
