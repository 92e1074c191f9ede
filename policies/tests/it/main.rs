//! Integration tests of renkei-policies: the catalog against the MHLW table, the
//! shipped policies, load errors, and properties of random requests.

// Helpers outside `#[test]` functions count as non-test code for clippy; here they are
// test code all the same and should fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

mod catalog_table;
mod common;
mod grant;
mod load_errors;
mod properties;
mod read;
