//! Renkei's wire protocol, one declaration shared by the hub (`renkei-hub`) and every
//! client (`renkei-client`, the agent through it):
//!
//! - [`types`]: the participant API's request and response JSON (`hub/src/api/openapi.json`
//!   documents it; a client test checks the request bodies against that document);
//! - [`Checkpoint::signed_bytes`]: what an audit checkpoint signs;
//! - [`proof`]: a resident's audit proof file;
//! - [`hpke`]: the HPKE `info` strings;
//! - [`evaluation`]: a source's signed evaluation report;
//! - [`introduction`]: an app's signed introduction of its user to a clinic.

pub mod evaluation;
pub mod hpke;
pub mod introduction;
pub mod proof;
pub mod types;

pub use types::*;
