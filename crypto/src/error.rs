//! The one error type of `renkei-crypto`, shared by every module of the crate.
//!
//! Messages are lowercase, without a final period, and name the input (in
//! backticks) and the problem. Variants are grouped by module; add new ones
//! next to their group. Errors about identities can carry the value as typed
//! by staff: they must stay inside the LGWAN segment like the identity itself.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the crypto core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- key files (keys.rs, and the secret keys of grant.rs and sign.rs) ---
    /// A key or secret file could not be read or written.
    #[error("key file `{path}`: {source}")]
    KeyFileIo {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key or secret file is unsafe (permissions) or malformed.
    #[error("key file `{path}`: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Key material given in memory is invalid (wrong length, bad encoding).
    #[error("invalid key: {0}")]
    Key(String),
    /// A key version string is not `v<number>`.
    #[error("invalid key version `{0}`: expected `v` followed by a number, e.g. `v1`")]
    KeyVersion(String),

    // --- identities (identity.rs) ---
    /// A field of a typed identity is invalid after normalization.
    #[error("invalid {field} `{value}`: {reason}")]
    Identity {
        /// The field, e.g. `insurer number`.
        field: &'static str,
        /// The value as typed.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    // --- tokens and identifiers (renkei-ids) ---
    /// A string is not a well-formed participant, token or identifier of its kind.
    #[error(transparent)]
    Id(#[from] renkei_ids::Error),

    // --- envelopes (envelope.rs) ---
    /// A header field is invalid (empty, too long, control characters).
    #[error("invalid envelope header field `{field}`: {reason}")]
    Header {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The header's key version is not the version of the key used to seal.
    #[error("header key version `{header}` differs from the record key version `{key}`")]
    KeyVersionMismatch {
        /// Version in the header.
        header: String,
        /// Version of the key.
        key: String,
    },
    /// Sealed bytes or JSON do not follow the sealed-record format.
    #[error("malformed sealed record: {0}")]
    Malformed(String),
    /// Authenticated decryption failed: wrong key, or ciphertext or header altered.
    #[error("cannot open sealed record: wrong key or altered ciphertext or header")]
    Open,
    /// Encryption failed (only possible for absurdly large inputs).
    #[error("cannot seal: {0}")]
    Seal(String),
    /// An opened payload does not follow its schema (payload.rs).
    #[error("payload of schema {schema}: {reason}")]
    Payload {
        /// The header's schema version.
        schema: u16,
        /// What is wrong with it.
        reason: String,
    },

    // --- key grants and HPKE (grant.rs) ---
    /// HPKE sealing or opening failed.
    #[error("hpke {operation} failed: {reason}")]
    Hpke {
        /// `seal` or `open`.
        operation: &'static str,
        /// The reason reported by the HPKE layer.
        reason: String,
    },

    // --- signatures (sign.rs) ---
    /// A signature does not verify under the given key.
    #[error("signature verification failed")]
    Signature,

    // --- the transparency log (tlog.rs) ---
    /// A checkpoint, cosignature, proof or tile of the audit transparency log is malformed
    /// or does not verify.
    #[error("transparency log: {0}")]
    Log(String),

    // --- encodings shared by several modules ---
    /// A base64 or other text encoding is invalid.
    #[error("invalid {what} encoding `{value}`: {reason}")]
    Encoding {
        /// What was being decoded, e.g. `public key`.
        what: &'static str,
        /// The (possibly shortened) input.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    // --- TLS and certificates (tls.rs, participant.rs) ---
    /// TLS configuration or handshake set-up failed.
    #[error("tls: {0}")]
    Tls(String),

    /// A key statement is malformed, not signed by its participant's certificate, or that
    /// certificate is not one of the pinned participant CA.
    #[error("{0}")]
    Statement(String),
    /// A certificate is missing, malformed, or does not carry a valid identity.
    #[error("certificate: {0}")]
    Certificate(String),
}

/// Shortens user input for an error message: at most 80 characters.
pub(crate) fn shorten(value: &str) -> String {
    renkei_ids::shorten(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_input() {
        let err = Error::Identity {
            field: "insurer number",
            value: "12a".to_owned(),
            reason: "must be 6 or 8 digits",
        };
        assert_eq!(
            err.to_string(),
            "invalid insurer number `12a`: must be 6 or 8 digits"
        );
        assert_eq!(
            Error::KeyVersion("x".into()).to_string(),
            "invalid key version `x`: expected `v` followed by a number, e.g. `v1`"
        );
    }

    #[test]
    fn shorten_cuts_long_input() {
        assert_eq!(shorten("abc"), "abc");
        let long = "x".repeat(200);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), 81);
        assert!(short.ends_with('…'));
    }
}
