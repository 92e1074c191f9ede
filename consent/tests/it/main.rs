//! Integration tests of the consent crate. The store suite runs against SQLite and
//! PostgreSQL (`RENKEI_TEST_PG_URL`; required when `CI` is set).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers abort on failure like the tests that call them"
)]

mod chain;
mod concurrency;
mod fhir;
mod props;
mod receipts;
mod suite;
mod support;
