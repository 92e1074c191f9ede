//! The Renkei LGWAN agent as a library: it parses municipal files (特定健診
//! archives, KDB and insurer-notice CSVs), minimizes them into per-category
//! FHIR records, tokenizes the subject, seals and spools them ([`import`],
//! [`outbox`]), uploads them and answers the hub's key-grant and enrollment
//! requests ([`sync`], [`enroll`], [`daemon`]), and takes consents at the
//! counter ([`counter`]). Outbound connections only. The `lgwan-agent` binary
//! is thin glue over this crate.
//!
//! Bad input never stops an import: it becomes a [`quarantine::Quarantine`]
//! report and the rest of the input is still processed.

pub mod agent;
pub mod archive;
pub mod cda;
pub mod config;
pub mod counter;
pub mod daemon;
pub mod decode;
pub mod domain;
pub mod enroll;
pub mod error;
pub mod evaluate;
pub mod import;
pub mod index;
mod item_table;
pub mod minimize;
pub mod outbox;
mod parallel;
pub mod pipeline;
pub mod preview;
pub mod quarantine;
pub mod sync;
pub mod synth;
pub mod tabular;
pub mod witness;
mod xml;

pub use error::{Error, Result};
