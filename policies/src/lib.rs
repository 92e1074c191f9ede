//! Renkei's data catalog and Cedar policies: load and validate them at start-up, then
//! answer "may this participant hold this consent?" and "may it read this category?".
//!
//! The policy files live beside this crate (`catalog.toml`, `schema.cedarschema`,
//! `*.cedar`); [`Policies::load`] reads them from a directory given in configuration
//! and [`Policies::embedded`] uses the copy compiled into the crate. Loading fails
//! with an error naming the file and line. Authorization fails closed: every error,
//! unknown name or malformed request is a denial with a reason, never a panic.
//!
//! ```
//! use chrono::{TimeDelta, TimeZone, Utc};
//! use renkei_policies::{GrantRequest, Policies};
//!
//! let policies = Policies::embedded()?;
//! let from = Utc.with_ymd_and_hms(2025, 4, 1, 9, 0, 0).unwrap();
//! let categories = ["checkup.glucose".to_owned(), "phr.vitals".to_owned()];
//! let decision = policies.authorize_grant(&GrantRequest {
//!     participant: "clinic:tokyo-naika",
//!     kind: "clinic",
//!     suspended: false,
//!     purpose: "online-consultation",
//!     categories: &categories,
//!     valid_from: from,
//!     valid_until: Some(from + TimeDelta::hours(72)),
//!     approved_study: false,
//! });
//! assert!(decision.allowed, "{:?}", decision.reasons);
//! # Ok::<(), renkei_policies::Error>(())
//! ```

mod catalog;
mod decision;
mod engine;
mod error;
mod policies;

pub use catalog::{Catalog, CategoryInfo, CheckupContext, ItemInfo, PurposeInfo};
pub use decision::{Decision, GrantRequest, ReadRequest};
pub use error::{Error, Result};
pub use policies::{CATALOG_FILE, PARTICIPANT_KINDS, Policies, SCHEMA_FILE, default_dir};
