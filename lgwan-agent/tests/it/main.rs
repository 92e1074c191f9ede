//! Integration tests of the agent library and binary over the synthetic fixtures
//! in `tests/fixtures/` (regenerate with `tests/fixtures/regen.sh`).

// Helpers outside `#[test]` functions count as non-test code for clippy; they
// are test code all the same and should fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers abort on failure like the tests that call them"
)]

#[path = "../../../tests/pki/issue.rs"]
mod issue;

mod archive;
mod cli;
mod counter;
mod daemon;
mod disk_full;
mod enroll;
mod fhir_samples;
mod outbox;
mod preview;
mod revocations;
mod synth;
mod tabular;
mod valid_checkups;

use std::path::PathBuf;

/// A file in the workspace's `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The main fixture archive: 5 persons, 6 checkups, 2007-namespace index.
pub const MAIN: &str = "1311234567_00138016_202407011_1.zip";
/// 3 persons, MHLW-namespace index.
pub const MHLW: &str = "1311234567_00138016_202407012_1.zip";
/// Two people with one canonical identity and different 枝番.
pub const TWINS: &str = "twins_1311234567_00138016_202407013_1.zip";

mod evaluate;
mod fuzz;
mod insurer_change;
mod vaccination;
