//! Harness of Renkei's end-to-end tests: the real `internet-hub`, `lgwan-agent` and
//! `renkei-client` binaries set up and run the way an operator, a municipality and a
//! vendor would, over real mTLS on loopback, on SQLite and PostgreSQL.
//!
//! The binaries are taken from the target folder as they are: `cargo test --workspace`
//! builds them first; after `cargo test -p renkei-e2e` alone, run
//! `cargo build --workspace --bins` so that they are not stale. A failed test keeps its
//! folder (`/tmp/renkei-e2e-*`) and prints the end of every log in it.
//!
//! Errors are `anyhow` reports: a test harness has no caller that matches on them, only a
//! person reading why a test failed, so every error carries the command and its output.

pub mod db;
pub mod faults;
pub mod flow;
pub mod http;
pub mod hub;
pub mod netns;
pub mod portal;
pub mod proc;
pub mod scene;
pub mod webdriver;

pub use db::{Backend, under_ci};
pub use flow::{APP, Basic};
pub use hub::{HubAddrs, HubProcess};
pub use scene::{Scene, SceneOptions};
