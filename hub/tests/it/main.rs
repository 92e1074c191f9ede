//! Hub tests: handlers through the router with a mocked connection identity on both
//! databases, the audit chain under tampering, and real mTLS on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub,
    missing_docs,
    reason = "test helpers abort on failure like the tests that call them"
)]

mod authz;
mod ca_renewal;
mod crash;
mod enroll;
mod evaluation;
mod flow;
mod fuzz_bodies;
mod harness;
mod ingest;
mod links;
mod mtls;
mod ops;
mod pg_outage;
mod portal;
mod reads;
mod report;
mod statements;
mod tamper;
mod tlog;
