//! Key statements (DESIGN.md step 8, `docs/threat-model.md`): a participant's X25519
//! key-grant key (and, for a source, its enrollment key), signed with the private key of
//! the participant's own mTLS certificate and carrying that certificate. Whoever seals to
//! a key checks the statement against the participant CA it pinned in its own
//! configuration: the hub, which only relays statements, can neither make one nor change
//! the keys inside one.
//!
//! Signed bytes (UTF-8, `\n`-terminated lines):
//!
//! ```text
//! renkei key statement v1
//! <participant kind:id>
//! <grant key base64 or empty>
//! <enrollment key base64 or empty>
//! <issued_at, RFC 3339 with microseconds, UTC>
//! ```

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rustls::SignatureScheme;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::participant::ParticipantId;
use crate::tls::{crypto_provider, load_certs, load_private_key, root_store};

/// Schemes a statement may be signed with (the participant certificates' key types).
const SCHEMES: [SignatureScheme; 4] = [
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

/// A signed key statement as it travels (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStatement {
    /// The participant (`kind:id`) the keys belong to.
    pub participant: String,
    /// X25519 key-grant public key (base64), if any.
    pub grant_key: Option<String>,
    /// X25519 enrollment public key (base64), sources only.
    pub enrollment_key: Option<String>,
    /// When the participant made the statement (a later one replaces it).
    pub issued_at: DateTime<Utc>,
    /// The participant's certificate (base64 DER) whose key signed the statement.
    pub certificate: String,
    /// The TLS signature scheme code (RFC 8446 §4.2.3).
    pub scheme: u16,
    /// The signature (base64).
    pub signature: String,
}

/// What a verified statement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKeys {
    /// The participant, as its certificate names it.
    pub participant: ParticipantId,
    /// Its key-grant key (base64), if any.
    pub grant_key: Option<String>,
    /// Its enrollment key (base64), if any.
    pub enrollment_key: Option<String>,
}

fn signed_bytes(
    participant: &str,
    grant_key: Option<&str>,
    enrollment_key: Option<&str>,
    issued_at: DateTime<Utc>,
) -> Vec<u8> {
    format!(
        "renkei key statement v1\n{participant}\n{}\n{}\n{}\n",
        grant_key.unwrap_or(""),
        enrollment_key.unwrap_or(""),
        issued_at.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
    .into_bytes()
}

pub(crate) fn bad(why: impl Into<String>) -> Error {
    Error::Statement(why.into())
}

impl KeyStatement {
    /// Signs a statement with the participant's certificate key (`cert_chain` and `key`
    /// are the PEM files of its mTLS identity).
    pub fn sign(
        cert_chain: &Path,
        key: &Path,
        grant_key: Option<&str>,
        enrollment_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<KeyStatement> {
        let signed = Signed::make(cert_chain, key, |participant| {
            signed_bytes(participant, grant_key, enrollment_key, now)
        })?;
        Ok(KeyStatement {
            participant: signed.signer,
            grant_key: grant_key.map(str::to_owned),
            enrollment_key: enrollment_key.map(str::to_owned),
            issued_at: now,
            certificate: signed.certificate,
            scheme: signed.scheme,
            signature: signed.signature,
        })
    }

    /// Checks the statement against the participant CA in `ca` (a PEM file the verifier
    /// installed itself): the certificate chains to it, is valid at `now` for client
    /// authentication and names the statement's participant, and its key signed exactly
    /// these keys. Every failure is an error naming the participant and the reason.
    pub fn verify(&self, ca: &Path, now: DateTime<Utc>) -> Result<VerifiedKeys> {
        let bytes = signed_bytes(
            &self.participant,
            self.grant_key.as_deref(),
            self.enrollment_key.as_deref(),
            self.issued_at,
        );
        let participant = check_signature(
            "key statement",
            &self.participant,
            &self.certificate,
            self.scheme,
            &self.signature,
            &bytes,
            ca,
            now,
        )?;
        Ok(VerifiedKeys {
            participant,
            grant_key: self.grant_key.clone(),
            enrollment_key: self.enrollment_key.clone(),
        })
    }
}

/// A signature made with a participant's certificate key over bytes its maker defines (a
/// statement's lines, or a sealed enrollment claim), with the certificate to check it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// The participant (`kind:id`) the certificate names.
    pub signer: String,
    /// The certificate (base64 DER).
    pub certificate: String,
    /// The TLS signature scheme code.
    pub scheme: u16,
    /// The signature (base64).
    pub signature: String,
}

impl Signed {
    /// Signs the bytes `bytes_for(signer)` with the key of the mTLS identity in
    /// `cert_chain` and `key` (PEM files); `signer` is the participant its certificate names.
    pub fn make(
        cert_chain: &Path,
        key: &Path,
        bytes_for: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<Signed> {
        let chain = load_certs(cert_chain)?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad(format!("`{}` holds no certificate", cert_chain.display())))?;
        let signer = crate::participant::from_cert_der(leaf.as_ref())?.to_string();
        let private = load_private_key(key)?;
        let signing = any_supported_type(&private)
            .map_err(|e| bad(format!("`{}`: unusable key: {e}", key.display())))?;
        let scheme_signer = signing.choose_scheme(&SCHEMES).ok_or_else(|| {
            bad(format!(
                "`{}`: no supported signature scheme",
                key.display()
            ))
        })?;
        let signature = scheme_signer
            .sign(&bytes_for(&signer))
            .map_err(|e| bad(format!("signing failed: {e}")))?;
        Ok(Signed {
            signer,
            certificate: data_encoding::BASE64.encode(leaf.as_ref()),
            scheme: u16::from(scheme_signer.scheme()),
            signature: data_encoding::BASE64.encode(&signature),
        })
    }
}

impl Signed {
    /// Checks that the signature over `bytes` is `signer`'s, by a certificate chaining to
    /// the CA in `ca` and valid at `now` ([`check_signature`]); errors name `what`.
    pub fn verify(
        &self,
        what: &str,
        bytes: &[u8],
        ca: &Path,
        now: DateTime<Utc>,
    ) -> Result<ParticipantId> {
        check_signature(
            what,
            &self.signer,
            &self.certificate,
            self.scheme,
            &self.signature,
            bytes,
            ca,
            now,
        )
    }
}

/// Checks that `signature` (scheme `scheme`) over `bytes` was made with the key of
/// `certificate`, which chains to the CA in `ca`, is valid at `now` for client
/// authentication and names `claimed`. Returns the participant. Errors name `what`
/// and the claimed signer.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one signed statement"
)]
pub(crate) fn check_signature(
    what: &str,
    claimed: &str,
    certificate: &str,
    scheme: u16,
    signature: &str,
    bytes: &[u8],
    ca: &Path,
    now: DateTime<Utc>,
) -> Result<ParticipantId> {
    let who = crate::error::shorten(claimed);
    let fail = |why: String| bad(format!("{what} of `{who}`: {why}"));
    let der = data_encoding::BASE64
        .decode(certificate.as_bytes())
        .map_err(|e| fail(format!("certificate is not base64: {e}")))?;
    let cert = CertificateDer::from(der);
    let provider = crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider.clone())
            .build()
            .map_err(|e| fail(format!("verifier for `{}`: {e}", ca.display())))?;
    let secs = u64::try_from(now.timestamp()).map_err(|_| fail("time before 1970".into()))?;
    verifier
        .verify_client_cert(
            &cert,
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
        )
        .map_err(|e| {
            fail(format!(
                "certificate not issued by the pinned CA or not valid: {e}"
            ))
        })?;
    let participant = crate::participant::from_cert_der(cert.as_ref())?;
    if participant.to_string() != claimed {
        return Err(fail(format!("the certificate names `{participant}`")));
    }
    let signature = data_encoding::BASE64
        .decode(signature.as_bytes())
        .map_err(|e| fail(format!("signature is not base64: {e}")))?;
    let scheme_code = scheme;
    let scheme = SignatureScheme::from(scheme);
    let algorithms = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme && SCHEMES.contains(s))
        .map(|(_, algs)| *algs)
        .ok_or_else(|| fail(format!("unsupported signature scheme {scheme_code:#06x}")))?;
    let end_entity =
        webpki::EndEntityCert::try_from(&cert).map_err(|e| fail(format!("certificate: {e}")))?;
    let valid = algorithms
        .iter()
        .any(|alg| end_entity.verify_signature(*alg, bytes, &signature).is_ok());
    if !valid {
        return Err(fail("the signature does not verify".into()));
    }
    Ok(participant)
}
