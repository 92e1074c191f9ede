//! Web enrollment (DESIGN.md step 6), app side: seal the resident's identifiers to the
//! source's enrollment key with HPKE, submit, and wait for the source's answer. The
//! HPKE `info` is defined here once; the LGWAN agent opens with [`open_identifiers`].

use std::time::Duration;

use renkei_crypto::grant::{RecipientPublicKey, RecipientSecretKey, hpke_open, hpke_seal};
use renkei_crypto::identity::Identity;
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use zeroize::Zeroizing;

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

/// Seals `identity` (as its JSON) to a source's enrollment key for `requester`.
pub fn seal_identifiers(
    enrollment_key: &RecipientPublicKey,
    source: &ParticipantId,
    requester: &ParticipantId,
    identity: &Identity,
) -> Result<Vec<u8>> {
    let json = Zeroizing::new(
        serde_json::to_vec(identity).map_err(|e| Error::invalid("identifiers", e.to_string()))?,
    );
    hpke_seal(
        enrollment_key,
        &enrollment_info(source, requester),
        &[],
        &json,
    )
    .map_err(Error::crypto("sealing the identifiers"))
}

/// Opens identifiers sealed by [`seal_identifiers`] (the source's side).
pub fn open_identifiers(
    enrollment_secret: &RecipientSecretKey,
    source: &ParticipantId,
    requester: &ParticipantId,
    sealed: &[u8],
) -> Result<Identity> {
    let json = hpke_open(
        enrollment_secret,
        &enrollment_info(source, requester),
        &[],
        sealed,
    )
    .map_err(Error::crypto("opening the identifiers"))?;
    serde_json::from_slice(&json).map_err(|e| Error::invalid("sealed identifiers", e.to_string()))
}

/// Fetches the source's enrollment key, seals `identity` to it and submits the request.
pub async fn submit(
    client: &HubClient,
    me: &ParticipantId,
    source: &ParticipantId,
    user_ref: &str,
    identity: &Identity,
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
    let sealed = seal_identifiers(&key, source, me, identity)?;
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
        let sealed = seal_identifiers(&sk.public_key(), &source, &app, &identity()).unwrap();
        let opened = open_identifiers(&sk, &source, &app, &sealed).unwrap();
        assert!(opened == identity());
        let other_app: ParticipantId = "phr:other".parse().unwrap();
        assert!(open_identifiers(&sk, &source, &other_app, &sealed).is_err());
        let other_source: ParticipantId = "source:city-b".parse().unwrap();
        assert!(open_identifiers(&sk, &other_source, &app, &sealed).is_err());
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
