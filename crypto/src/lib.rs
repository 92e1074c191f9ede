//! Renkei's crypto core: everything that turns identities into tokens and
//! health records into ciphertext, and the mTLS identity of participants.
//!
//! See `../shared/DESIGN.md` steps 3, 4, 8 and 9 and `docs/envelope.md`.

pub mod envelope;
pub mod error;
pub mod grant;
pub mod identity;
pub mod keys;
pub mod participant;
pub mod sign;
pub mod tls;
pub mod token;

pub use error::{Error, Result};
