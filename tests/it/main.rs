//! End-to-end tests: the real binaries over real mTLS on loopback, on both databases.
//! The harness (processes, ports, PKI, databases, portal, browser, namespaces) is the
//! `renkei_e2e` library in `tests/src`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub,
    missing_docs,
    reason = "tests abort on failure"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "real processes run on the wall clock: expiry and revocation instants are real times"
)]

mod admin_cli;
mod app_release;
mod attacks;
mod browser;
mod child_health;
mod clinic;
mod enrollment;
mod evaluation;
mod faults;
mod full_flow;
mod health_points;
mod insurer_change;
mod insurers;
mod load;
mod malicious_hub;
mod research;
mod rotation;
mod self_contained;
mod separation;
mod vaccination;
