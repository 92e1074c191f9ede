//! Web enrollment (DESIGN.md step 6), app side: seal the resident's identifiers and the
//! one-time enrollment code from their municipal notice to the source's enrollment key
//! with HPKE, submit, and wait for the source's answer. The HPKE `info` and the sealed
//! JSON are defined here once; the LGWAN agent opens with [`open_signed_claim`] and
//! [`SignedClaim::verify`].
//!
//! The sealed plaintext is `{"claim": "<claim JSON text>", "signature": {…}}`: the app
//! signs [`claim_bytes`] with its certificate key before sealing, so that the source
//! links a user of the app only on the app's own word (HPKE base mode does not say who
//! sealed, and the hub, which relays the request, could otherwise seal a claim "from"
//! the app). The hub never sees the claim or the signature.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use renkei_crypto::grant::{RecipientPublicKey, RecipientSecretKey, hpke_open, hpke_seal};
use renkei_crypto::identity::Identity;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::statement::Signed;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::api::{Enrollment, SubmitBody};
use crate::error::{Error, Result};
use crate::transport::HubClient;

pub use renkei_protocol::hpke::{ENROLLMENT_LABEL, enrollment_info};

/// Longest enrollment code an app passes on, in bytes (the agent decides what is valid).
pub const MAX_CODE_BYTES: usize = 64;

/// What an app seals for the source: the resident's claimed identifiers and the
/// one-time enrollment code the municipality issued them, if any.
///
/// `Debug` elides both; the code is zeroized on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The identifiers on the resident's insurance card, birth date and sex.
    pub identity: Identity,
    /// The code from the resident's result notice or from the counter, as typed.
    pub enrollment_code: Option<String>,
    /// The app's own reference for the user ([`submit`] fills it in): the source keeps
    /// its digest with the resident it links, and checks the app's consent statements,
    /// which name the user by that digest, against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<String>,
    /// When the app made the claim ([`submit`] fills it in): it is signed with the rest,
    /// and the source refuses a claim too old to be a request the app made now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Claim([identifiers and code elided])")
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(code) = &mut self.enrollment_code {
            code.zeroize();
        }
    }
}

impl Claim {
    /// A claim of `identity` with the typed `code`, if any. A code longer than
    /// [`MAX_CODE_BYTES`] or with control characters is refused here.
    pub fn new(identity: Identity, code: Option<&str>) -> Result<Claim> {
        if let Some(code) = code {
            if code.len() > MAX_CODE_BYTES || code.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "enrollment code",
                    format!("must be at most {MAX_CODE_BYTES} bytes without control characters"),
                ));
            }
        }
        Ok(Claim {
            identity,
            enrollment_code: code.map(str::to_owned),
            user_ref: None,
            issued_at: None,
        })
    }
}

/// Label opening the signed bytes of a claim.
pub const CLAIM_LABEL: &str = "renkei enrollment claim v1";

/// What the app signs: `renkei enrollment claim v1`, the requesting app, the source and
/// the lowercase hex SHA-256 of the claim's JSON text, each on a `\n`-terminated line.
pub fn claim_bytes(
    source: &ParticipantId,
    requester: &ParticipantId,
    claim_json: &[u8],
) -> Vec<u8> {
    let digest = data_encoding::HEXLOWER.encode(&Sha256::digest(claim_json));
    format!("{CLAIM_LABEL}\n{requester}\n{source}\n{digest}\n").into_bytes()
}

/// A claim as sealed: its JSON text and the requesting app's signature over
/// [`claim_bytes`]. The text is zeroized on drop; `Debug` elides it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedClaim {
    claim: String,
    signature: Signed,
}

impl fmt::Debug for SignedClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignedClaim([claim elided])")
    }
}

impl Drop for SignedClaim {
    fn drop(&mut self) {
        self.claim.zeroize();
    }
}

impl SignedClaim {
    /// The claim, once the signature is `requester`'s, by a certificate chaining to the CA
    /// in `ca` and valid at `now`, over exactly this claim for `source`
    /// ([`SignedClaim::check_signer`], then [`SignedClaim::claim`]).
    pub fn verify(
        &self,
        source: &ParticipantId,
        requester: &ParticipantId,
        ca: &Path,
        now: DateTime<Utc>,
    ) -> Result<Claim> {
        self.check_signer(source, requester, ca, now)?;
        self.claim()
    }

    /// Checks that `requester` signed this claim for `source` (see [`SignedClaim::verify`]).
    pub fn check_signer(
        &self,
        source: &ParticipantId,
        requester: &ParticipantId,
        ca: &Path,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let bytes = claim_bytes(source, requester, self.claim.as_bytes());
        let signer = self
            .signature
            .verify("enrollment claim", &bytes, ca, now)
            .map_err(Error::crypto(format!(
                "enrollment claim from `{requester}`"
            )))?;
        if &signer != requester {
            return Err(Error::invalid(
                format!("enrollment claim from `{requester}`"),
                format!("signed by `{signer}`"),
            ));
        }
        Ok(())
    }

    /// The claim's text read as a claim. The error names no field value (the text holds
    /// the resident's identifiers).
    pub fn claim(&self) -> Result<Claim> {
        serde_json::from_str(&self.claim)
            .map_err(|_| Error::invalid("sealed identifiers", "not a well-formed claim"))
    }
}

/// Seals `claim` to a source's enrollment key for `requester`, signed by `sign` (the
/// requester's certificate key, [`HubClient::sign_bytes`]).
pub fn seal_claim(
    enrollment_key: &RecipientPublicKey,
    source: &ParticipantId,
    requester: &ParticipantId,
    claim: &Claim,
    sign: impl FnOnce(&[u8]) -> Result<Signed>,
) -> Result<Vec<u8>> {
    let text = Zeroizing::new(
        serde_json::to_string(claim).map_err(|e| Error::invalid("identifiers", e.to_string()))?,
    );
    let signature = sign(&claim_bytes(source, requester, text.as_bytes()))?;
    let signed = SignedClaim {
        claim: text.to_string(),
        signature,
    };
    let json = Zeroizing::new(
        serde_json::to_vec(&signed).map_err(|e| Error::invalid("identifiers", e.to_string()))?,
    );
    hpke_seal(
        enrollment_key,
        &enrollment_info(source, requester),
        &[],
        &json,
    )
    .map_err(Error::crypto("sealing the identifiers"))
}

/// Opens a claim sealed by [`seal_claim`] (the source's side); its signature is checked
/// by [`SignedClaim::verify`]. Anything but a signed claim is refused.
pub fn open_signed_claim(
    enrollment_secret: &RecipientSecretKey,
    source: &ParticipantId,
    requester: &ParticipantId,
    sealed: &[u8],
) -> Result<SignedClaim> {
    let json = hpke_open(
        enrollment_secret,
        &enrollment_info(source, requester),
        &[],
        sealed,
    )
    .map_err(Error::crypto("opening the identifiers"))?;
    let json = Zeroizing::new(json);
    serde_json::from_slice(&json).map_err(|e| {
        Error::invalid(
            "sealed identifiers",
            format!("not a signed enrollment claim: {e}"),
        )
    })
}

/// Fetches the source's enrollment key, seals `claim` with `user_ref` to it and submits
/// the request.
pub async fn submit(
    client: &HubClient,
    me: &ParticipantId,
    source: &ParticipantId,
    user_ref: &str,
    claim: &Claim,
) -> Result<Enrollment> {
    if source.kind() != ParticipantKind::Source {
        return Err(Error::invalid(
            format!("source `{source}`"),
            "is not a `source` participant",
        ));
    }
    // Only an enrollment key the source itself signed (checked against our pinned CA).
    let keys = client.participant_keys(source).await?;
    let keys = client.verify_statement(source, keys.statement.as_ref())?;
    let text = keys.enrollment_key.ok_or_else(|| {
        Error::invalid(
            format!("source `{source}`"),
            "has published no enrollment key",
        )
    })?;
    let key = RecipientPublicKey::from_base64(&text)
        .map_err(Error::crypto(format!("enrollment key of `{source}`")))?;
    let mut claim = claim.clone();
    claim.user_ref = Some(user_ref.to_owned());
    claim.issued_at = Some(client.now());
    let sealed = seal_claim(&key, source, me, &claim, |b| client.sign_bytes(b))?;
    client
        .submit_enrollment(&SubmitBody {
            source: source.to_string(),
            user_ref: user_ref.to_owned(),
            sealed: data_encoding::BASE64.encode(&sealed),
        })
        .await
}

/// Polls an enrollment every `interval` until it is no longer `pending` or `max_wait`
/// has passed; returns the last state seen either way.
pub async fn wait(
    client: &HubClient,
    id: &str,
    interval: Duration,
    max_wait: Duration,
) -> Result<Enrollment> {
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let enrollment = client.get_enrollment(id).await?;
        if enrollment.status != "pending" || tokio::time::Instant::now() + interval > deadline {
            return Ok(enrollment);
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_length_prefixed_and_unambiguous() {
        let a = enrollment_info(&"source:ab".parse().unwrap(), &"phr:c".parse().unwrap());
        assert!(a.starts_with(&[0, 20]));
        assert_eq!(a.get(2..22), Some(ENROLLMENT_LABEL));
        let b = enrollment_info(&"source:a".parse().unwrap(), &"phr:bc".parse().unwrap());
        assert_ne!(a, b);
    }
}
