//! The identity vocabulary every Renkei crate speaks (issue 16): what a participant, a
//! subject token, a recipient pseudonym, a record id and the other tagged values look
//! like, parsed in one place. No TLS, X.509 or key material here: `renkei-crypto` makes
//! tokens from keys and reads participants from certificates, on top of these types.

mod participant;
mod token;

pub use participant::{ParticipantId, ParticipantKind, URI_PREFIX};
pub use token::{
    BODY_BYTES, EnrollmentCodeHash, RecipientPseudonym, RecordId, SubjectBinding, SubjectToken,
    UserRefHash,
};

/// A string that is not a valid identifier of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a participant kind or id (`kind:id`, `urn:renkei:participant:kind:id`).
    #[error("{0}")]
    Participant(String),
    /// Not a tagged value of this kind.
    #[error("invalid {kind} `{value}`: {reason}")]
    Token {
        /// The kind, e.g. `subject token`.
        kind: &'static str,
        /// The string given (shortened).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value as it may appear in an error: at most 80 characters, then `…`.
pub fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let mut short: String = value.chars().take(MAX).collect();
        short.push('…');
        short
    }
}
