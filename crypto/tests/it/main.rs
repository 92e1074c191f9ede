//! Integration tests of `renkei-crypto`: known-answer vectors, envelopes, key
//! grants, key files and identity properties.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers abort on failure like the tests that call them"
)]

mod envelope;
mod fuzz;
mod grant;
mod identity_props;
mod kat;
mod key_files;
mod statement;
mod tls;
