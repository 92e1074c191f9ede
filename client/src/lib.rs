//! Renkei participant client: the library a PHR vendor, clinic, municipality or analyst
//! embeds to talk to the hub (mTLS), and the `renkei-client` CLI on top of it.
//!
//! - [`transport::HubClient`]: JSON over mTLS with retries; typed calls in [`api`].
//! - [`pull`]: follow the feed, open key grants and envelopes, write FHIR JSON.
//! - [`events`]: delete local copies on revocation or expiry and acknowledge.
//! - [`enroll`]: seal a resident's identifiers to a source and submit.
//! - [`source`]: a PHR app publishing its own records and answering key grants.
//! - [`phr`]: the FHIR payloads of a PHR app's own records (vitals, medication).

pub mod api;
pub mod cli;
pub mod config;
pub mod consent;
pub mod copy;
pub mod enroll;
pub mod error;
pub mod evaluation;
pub mod events;
pub mod phr;
pub mod proof;
pub mod pull;
pub mod retry;
pub mod setup;
pub mod source;
pub mod state;
pub mod transport;
pub mod witness;

pub use config::Settings;
pub use error::{Error, Result};
pub use retry::RetryPolicy;
pub use transport::{ClientConfig, HubClient};
