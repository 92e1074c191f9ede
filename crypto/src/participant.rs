//! Participant identity from certificates: the types are `renkei-ids`'s (re-exported
//! here); this module reads *who* a certificate names from its URI SAN
//! `urn:renkei:participant:<kind>:<id>`.
//!
//! This module is pure: it never touches the network or the clock. Chain and
//! revocation checks are done by the TLS verifier (`crate::tls`); here we only
//! decide *who* a certificate that already passed those checks names.

pub use renkei_ids::Error as IdError;
pub use renkei_ids::{ParticipantId, ParticipantKind, URI_PREFIX};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};

/// Reads the participant named by a DER certificate's single renkei URI SAN.
///
/// Fails when the certificate does not parse, has no SAN extension, has no
/// renkei URI, has more than one, or names an unknown kind or a bad id.
pub fn from_cert_der(der: &[u8]) -> Result<ParticipantId> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::Certificate(format!("certificate does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Certificate(
            "certificate has trailing bytes after its DER encoding".to_owned(),
        ));
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Certificate(format!("certificate subjectAltName is invalid: {e}")))?
        .ok_or_else(|| {
            Error::Certificate("certificate has no subjectAltName extension".to_owned())
        })?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(URI_PREFIX) => Some(*uri),
            _ => None,
        });
    let uri = uris.next().ok_or_else(|| {
        Error::Certificate(format!(
            "certificate subjectAltName has no `{URI_PREFIX}` uri"
        ))
    })?;
    if let Some(second) = uris.next() {
        return Err(Error::Certificate(format!(
            "certificate subjectAltName has more than one participant uri: `{uri}` and `{second}`"
        )));
    }
    Ok(ParticipantId::from_uri(uri)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};

    /// A self-signed certificate with the given URI SANs (no SAN extension when `None`).
    fn cert_with_uris(uris: Option<&[&str]>) -> Vec<u8> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "test").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(1_800_000_000).unwrap())
            .unwrap();
        if let Some(uris) = uris {
            let mut san = SubjectAlternativeName::new();
            san.dns("example.test");
            for uri in uris {
                san.uri(uri);
            }
            let ext = san.build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    fn err_text(r: Result<ParticipantId>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn cert_with_one_renkei_uri_matches() {
        let der = cert_with_uris(Some(&[
            "https://example.test/",
            "urn:renkei:participant:clinic:mysos",
        ]));
        let p = crate::participant::from_cert_der(&der).unwrap();
        assert_eq!(p, "clinic:mysos".parse().unwrap());
        assert_ne!(p, "clinic:other".parse().unwrap());
        assert_ne!(p, "phr:mysos".parse().unwrap());
    }

    #[test]
    fn cert_without_san_is_rejected() {
        let der = cert_with_uris(None);
        let err = err_text(crate::participant::from_cert_der(&der));
        assert!(err.contains("no subjectAltName"), "{err}");
    }

    #[test]
    fn cert_without_renkei_uri_is_rejected() {
        let der = cert_with_uris(Some(&["urn:other:phr:asmile"]));
        let err = err_text(crate::participant::from_cert_der(&der));
        assert!(
            err.contains("has no `urn:renkei:participant:` uri"),
            "{err}"
        );
    }

    #[test]
    fn cert_with_two_renkei_uris_is_rejected() {
        let der = cert_with_uris(Some(&[
            "urn:renkei:participant:phr:asmile",
            "urn:renkei:participant:clinic:mysos",
        ]));
        let err = err_text(crate::participant::from_cert_der(&der));
        assert!(err.contains("more than one"), "{err}");
    }

    #[test]
    fn cert_with_unknown_kind_or_bad_id_is_rejected() {
        let der = cert_with_uris(Some(&["urn:renkei:participant:vendor:asmile"]));
        let err = err_text(crate::participant::from_cert_der(&der));
        assert!(err.contains("unknown participant kind `vendor`"), "{err}");
        let der = cert_with_uris(Some(&["urn:renkei:participant:phr:ASMILE"]));
        let err = err_text(crate::participant::from_cert_der(&der));
        assert!(err.contains("participant id `ASMILE`"), "{err}");
    }

    #[test]
    fn garbage_is_rejected() {
        let err = err_text(crate::participant::from_cert_der(b"not a certificate"));
        assert!(err.contains("does not parse"), "{err}");
        let mut der = cert_with_uris(Some(&["urn:renkei:participant:phr:asmile"]));
        der.push(0);
        let err = err_text(crate::participant::from_cert_der(&der));
        assert!(err.contains("trailing"), "{err}");
    }
}
