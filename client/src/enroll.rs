//! Web enrollment (DESIGN.md step 6), app side: seal the resident's identifiers and the
//! one-time enrollment code from their municipal notice to the source's enrollment key
//! with HPKE, submit, and wait for the source's answer. The HPKE `info` and the sealed
//! JSON are defined here once; the LGWAN agent opens with [`open_claim`].
//!
//! The sealed plaintext is the [`Identity`] JSON object when there is no code (as before
//! enrollment codes, so an older agent still reads it), and
//! `{"identity": {…}, "enrollment_code": "…"}` with one. The hub never sees either.

use std::fmt;
use std::time::Duration;

use renkei_crypto::grant::{RecipientPublicKey, RecipientSecretKey, hpke_open, hpke_seal};
use renkei_crypto::identity::Identity;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::api::{Enrollment, SubmitBody};
use crate::error::{Error, Result};
use crate::transport::HubClient;

/// Label opening the enrollment HPKE `info`.
pub const ENROLLMENT_LABEL: &[u8] = b"renkei enrollment v1";

/// The HPKE `info` of an enrollment request: `len ‖ "renkei enrollment v1" ‖ len ‖
/// source ‖ len ‖ requester`, each `len` a u16 big-endian byte count (participant ids
/// are at most 76 bytes). The AAD is empty.
pub fn enrollment_info(source: &ParticipantId, requester: &ParticipantId) -> Vec<u8> {
    let source = source.to_string();
    let requester = requester.to_string();
    let mut info = Vec::new();
    for part in [ENROLLMENT_LABEL, source.as_bytes(), requester.as_bytes()] {
        let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
        info.extend_from_slice(&len.to_be_bytes());
        info.extend_from_slice(part);
    }
    info
}

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
        })
    }
}

/// The sealed plaintext as the agent reads it: a claim, or bare identifiers from an
/// app that sends no code.
#[derive(Deserialize)]
#[serde(untagged)]
enum SealedJson {
    Claim(Claim),
    Identity(Identity),
}

/// Seals `claim` to a source's enrollment key for `requester` (the bare identity JSON
/// when it has no code).
pub fn seal_claim(
    enrollment_key: &RecipientPublicKey,
    source: &ParticipantId,
    requester: &ParticipantId,
    claim: &Claim,
) -> Result<Vec<u8>> {
    let json = match (&claim.enrollment_code, &claim.user_ref) {
        (None, None) => serde_json::to_vec(&claim.identity),
        _ => serde_json::to_vec(claim),
    };
    let json = Zeroizing::new(json.map_err(|e| Error::invalid("identifiers", e.to_string()))?);
    hpke_seal(
        enrollment_key,
        &enrollment_info(source, requester),
        &[],
        &json,
    )
    .map_err(Error::crypto("sealing the identifiers"))
}

/// Seals `identity` without an enrollment code (see [`seal_claim`]).
pub fn seal_identifiers(
    enrollment_key: &RecipientPublicKey,
    source: &ParticipantId,
    requester: &ParticipantId,
    identity: &Identity,
) -> Result<Vec<u8>> {
    let claim = Claim::new(identity.clone(), None)?;
    seal_claim(enrollment_key, source, requester, &claim)
}

/// Opens a claim sealed by [`seal_claim`] (the source's side); bare identifiers come
/// back as a claim without a code.
pub fn open_claim(
    enrollment_secret: &RecipientSecretKey,
    source: &ParticipantId,
    requester: &ParticipantId,
    sealed: &[u8],
) -> Result<Claim> {
    let json = hpke_open(
        enrollment_secret,
        &enrollment_info(source, requester),
        &[],
        sealed,
    )
    .map_err(Error::crypto("opening the identifiers"))?;
    let json = Zeroizing::new(json);
    match serde_json::from_slice(&json) {
        Ok(SealedJson::Claim(claim)) => Ok(claim),
        Ok(SealedJson::Identity(identity)) => Ok(Claim {
            identity,
            enrollment_code: None,
            user_ref: None,
        }),
        Err(e) => Err(Error::invalid("sealed identifiers", e.to_string())),
    }
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
    let sealed = seal_claim(&key, source, me, &claim)?;
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
    use renkei_crypto::identity::Sex;
    use renkei_crypto::keys::KeyVersion;

    fn identity() -> Identity {
        Identity {
            insurer_number: "138123".into(),
            symbol: "アイ".into(),
            number: "１２３".into(),
            birth_date: "1980-04-01".into(),
            sex: Sex::Female,
            branch: Some("01".into()),
        }
    }

    #[test]
    fn identifiers_open_only_for_the_same_source_and_requester() {
        let sk = RecipientSecretKey::generate(KeyVersion::V1);
        let source: ParticipantId = "source:city-a".parse().unwrap();
        let app: ParticipantId = "phr:asmile".parse().unwrap();
        let claim = Claim::new(identity(), Some("k7qm-3xwa-9pzd")).unwrap();
        let sealed = seal_claim(&sk.public_key(), &source, &app, &claim).unwrap();
        let opened = open_claim(&sk, &source, &app, &sealed).unwrap();
        assert!(opened == claim);
        let other_app: ParticipantId = "phr:other".parse().unwrap();
        assert!(open_claim(&sk, &source, &other_app, &sealed).is_err());
        let other_source: ParticipantId = "source:city-b".parse().unwrap();
        assert!(open_claim(&sk, &other_source, &app, &sealed).is_err());
    }

    #[test]
    fn a_claim_without_a_code_is_sealed_as_bare_identifiers() {
        let sk = RecipientSecretKey::generate(KeyVersion::V1);
        let source: ParticipantId = "source:city-a".parse().unwrap();
        let app: ParticipantId = "phr:asmile".parse().unwrap();
        let sealed = seal_identifiers(&sk.public_key(), &source, &app, &identity()).unwrap();
        let plain = hpke_open(&sk, &enrollment_info(&source, &app), &[], &sealed).unwrap();
        let bare: Identity = serde_json::from_slice(&plain).unwrap();
        assert!(
            bare == identity(),
            "what agents before enrollment codes read"
        );
        let opened = open_claim(&sk, &source, &app, &sealed).unwrap();
        assert!(opened.identity == identity() && opened.enrollment_code.is_none());

        let coded = Claim::new(identity(), Some("K7QM-3XWA-9PZD")).unwrap();
        let sealed = seal_claim(&sk.public_key(), &source, &app, &coded).unwrap();
        let plain = hpke_open(&sk, &enrollment_info(&source, &app), &[], &sealed).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["enrollment_code"], "K7QM-3XWA-9PZD");
        assert_eq!(v["identity"]["birth_date"], "1980-04-01");
        assert!(!format!("{coded:?}").contains("K7QM"));

        // Anything else is refused, not read as a partial claim.
        for bad in [
            serde_json::json!({"identity": {"insurer_number": "1"}, "enrollment_code": "x"}),
            serde_json::json!({"identity": serde_json::to_value(identity()).unwrap(), "extra": 1}),
        ] {
            let sealed = hpke_seal(
                &sk.public_key(),
                &enrollment_info(&source, &app),
                &[],
                bad.to_string().as_bytes(),
            )
            .unwrap();
            assert!(open_claim(&sk, &source, &app, &sealed).is_err(), "{bad}");
        }
        assert!(Claim::new(identity(), Some(&"A".repeat(65))).is_err());
        assert!(Claim::new(identity(), Some("AB\u{7}C")).is_err());
    }

    #[test]
    fn info_is_length_prefixed_and_unambiguous() {
        let a = enrollment_info(&"source:ab".parse().unwrap(), &"phr:c".parse().unwrap());
        assert!(a.starts_with(&[0, 20]));
        assert_eq!(a.get(2..22), Some(ENROLLMENT_LABEL));
        let b = enrollment_info(&"source:a".parse().unwrap(), &"phr:bc".parse().unwrap());
        assert_ne!(a, b);
    }
}
