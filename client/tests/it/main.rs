//! Integration tests of the client transport against a small canned mTLS server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers abort on failure like the tests that call them"
)]

#[path = "../../../tests/pki/fixture.rs"]
#[allow(dead_code, unreachable_pub)]
mod fixture;

mod consent;
mod enroll;
mod openapi;
mod transport;
