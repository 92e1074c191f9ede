//! Renkei's internet hub: the blind broker between sources and recipients.
//!
//! It stores ciphertext, tokens, consents, policies and a hash-chained audit
//! log, and releases a record only under an active consent that the policies
//! allow (DESIGN.md steps 5–11). The `internet-hub` package is the command line over
//! this library, and holds the demo: the broker links no agent code.

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod backup;
pub mod broker;
pub mod config;
pub mod db;
pub mod error;
pub mod init;
pub mod logging;
pub mod metrics;
pub mod park;
pub mod pki;
pub mod portal;
pub mod registry;
pub mod report;
pub mod server;
pub mod studies;
