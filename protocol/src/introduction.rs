//! An app's introduction of its user to a clinic (issue 20: clinics as sources of
//! vaccination records). During a consultation the resident's app hands the clinic, outside
//! the hub, a statement signed with the app's certificate key: "my user `user:…` is the
//! patient you see". The clinic binds the records it publishes about that patient to the
//! app's user digest, and releases their keys only under a consent that app signed
//! naming that digest. The hub names patients to the clinic only by the clinic's own
//! pseudonym, which the clinic cannot check; the introduction is what it can check.
//!
//! Signed bytes: `renkei introduction v1`, the app, the user digest, the clinic and the
//! signing time (RFC 3339, microseconds, UTC), each on its own line.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use renkei_crypto::participant::{ParticipantId, ParticipantKind};
use renkei_crypto::statement::Signed;
use serde::{Deserialize, Serialize};

/// An app's signed introduction of its user to a clinic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Introduction {
    /// The user digest (`user:…`) the app's consent statements name the resident by.
    pub resident: String,
    /// The clinic it introduces the user to.
    pub clinic: String,
    /// When it was signed.
    pub issued_at: DateTime<Utc>,
    /// The app's signature, with its certificate.
    pub signature: Signed,
}

fn signed_bytes(app: &str, resident: &str, clinic: &str, at: DateTime<Utc>) -> Vec<u8> {
    format!(
        "renkei introduction v1\n{app}\n{resident}\n{clinic}\n{}\n",
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
    .into_bytes()
}

/// What a verified introduction says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Introduced {
    /// The app that signed it.
    pub app: ParticipantId,
    /// Its user digest.
    pub resident: String,
}

impl Introduction {
    /// Signs an introduction of `resident` to `clinic` with the app's mTLS identity.
    pub fn sign(
        cert_chain: &Path,
        key: &Path,
        resident: &str,
        clinic: &str,
        now: DateTime<Utc>,
    ) -> renkei_crypto::Result<Introduction> {
        let signature = Signed::make(cert_chain, key, |app| {
            signed_bytes(app, resident, clinic, now)
        })?;
        Ok(Introduction {
            resident: resident.to_owned(),
            clinic: clinic.to_owned(),
            issued_at: now,
            signature,
        })
    }

    /// Checks the introduction for `clinic` against the participant CA in `ca`: signed by
    /// a `phr` app whose certificate chains to it and is valid at `now`, naming a user
    /// digest and this clinic.
    pub fn verify(
        &self,
        clinic: &ParticipantId,
        ca: &Path,
        now: DateTime<Utc>,
    ) -> Result<Introduced, String> {
        if self.clinic != clinic.to_string() {
            return Err(format!(
                "it introduces the user to `{}`, not to `{clinic}`",
                self.clinic
            ));
        }
        let digest = self.resident.strip_prefix("user:").unwrap_or_default();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("it names no app user digest (`user:` and 64 hex digits)".into());
        }
        let bytes = signed_bytes(
            &self.signature.signer,
            &self.resident,
            &self.clinic,
            self.issued_at,
        );
        let app = self
            .signature
            .verify("introduction", &bytes, ca, now)
            .map_err(|e| e.to_string())?;
        if app.kind() != ParticipantKind::Phr {
            return Err(format!("signed by `{app}`, which is not a PHR app"));
        }
        Ok(Introduced {
            app,
            resident: self.resident.clone(),
        })
    }
}
