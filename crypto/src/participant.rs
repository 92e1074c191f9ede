//! Participant identity: the kind and id of an organization, and how they are
//! read from the URI SAN `urn:renkei:participant:<kind>:<id>` of its client
//! certificate.
//!
//! This module is pure: it never touches the network or the clock. Chain and
//! revocation checks are done by the TLS verifier (`crate::tls`); here we only
//! decide *who* a certificate that already passed those checks names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};

/// The prefix every participant URI starts with.
pub const URI_PREFIX: &str = "urn:renkei:participant:";

/// Maximum length of a participant id.
const ID_MAX_LEN: usize = 63;

/// What a participant is, which decides what the policies let it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantKind {
    /// A municipality's LGWAN agent or an insurer's agent that uploads records.
    Source,
    /// A PHR vendor backend.
    Phr,
    /// A clinic (for example doing online consultation).
    Clinic,
    /// A municipality as a recipient (for example child-health follow-up).
    Municipality,
    /// An analyst doing EBPM evaluation under a municipality's contract.
    Analyst,
    /// A hub operator.
    Admin,
}

impl ParticipantKind {
    /// Every kind, in declaration order.
    pub const ALL: [ParticipantKind; 6] = [
        ParticipantKind::Source,
        ParticipantKind::Phr,
        ParticipantKind::Clinic,
        ParticipantKind::Municipality,
        ParticipantKind::Analyst,
        ParticipantKind::Admin,
    ];

    /// The lowercase name used in URIs, configs and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Source => "source",
            ParticipantKind::Phr => "phr",
            ParticipantKind::Clinic => "clinic",
            ParticipantKind::Municipality => "municipality",
            ParticipantKind::Analyst => "analyst",
            ParticipantKind::Admin => "admin",
        }
    }
}

impl fmt::Display for ParticipantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParticipantKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ParticipantKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                Error::Certificate(format!(
                    "unknown participant kind `{s}`: expected one of source, phr, clinic, municipality, analyst, admin"
                ))
            })
    }
}

/// A participant: its kind and its id, written `kind:id` (for example `phr:asmile`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParticipantId {
    kind: ParticipantKind,
    id: String,
}

impl ParticipantId {
    /// Makes a participant id, checking that `id` matches `[a-z0-9][a-z0-9._-]{0,62}`.
    pub fn new(kind: ParticipantKind, id: &str) -> Result<Self> {
        check_id(id)?;
        Ok(ParticipantId {
            kind,
            id: id.to_owned(),
        })
    }

    /// The participant's kind.
    pub fn kind(&self) -> ParticipantKind {
        self.kind
    }

    /// The participant's id within its kind.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The URI SAN that names this participant in its certificate.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}:{}", self.kind, self.id)
    }

    /// Parses `urn:renkei:participant:<kind>:<id>`.
    pub fn from_uri(uri: &str) -> Result<Self> {
        let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(|| {
            Error::Certificate(format!(
                "participant uri `{uri}` does not start with `{URI_PREFIX}`"
            ))
        })?;
        rest.parse()
    }

    /// Reads the participant named by a DER certificate's single renkei URI SAN.
    ///
    /// Fails when the certificate does not parse, has no SAN extension, has no
    /// renkei URI, has more than one, or names an unknown kind or a bad id.
    pub fn from_cert_der(der: &[u8]) -> Result<Self> {
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
        ParticipantId::from_uri(uri)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

impl FromStr for ParticipantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, id) = s.split_once(':').ok_or_else(|| {
            Error::Certificate(format!("participant `{s}` is not of the form `kind:id`"))
        })?;
        ParticipantId::new(kind.parse()?, id)
    }
}

impl TryFrom<String> for ParticipantId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ParticipantId> for String {
    fn from(p: ParticipantId) -> String {
        p.to_string()
    }
}

/// Checks `id` against `[a-z0-9][a-z0-9._-]{0,62}`.
fn check_id(id: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Certificate(format!("participant id `{id}` {why}")));
    let Some(first) = id.bytes().next() else {
        return bad("is empty");
    };
    if id.len() > ID_MAX_LEN {
        return bad("is longer than 63 characters");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return bad("must start with a lowercase letter or a digit");
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    if !id.bytes().all(allowed) {
        return bad("may only contain a-z, 0-9, `.`, `_` and `-`");
    }
    Ok(())
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
    fn kind_round_trips_through_str_and_serde() {
        for kind in ParticipantKind::ALL {
            assert_eq!(kind.as_str().parse::<ParticipantKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(
                serde_json::from_str::<ParticipantKind>(&json).unwrap(),
                kind
            );
        }
        assert!("Phr".parse::<ParticipantKind>().is_err());
        assert!("vendor".parse::<ParticipantKind>().is_err());
    }

    #[test]
    fn id_display_parse_and_uri() {
        let p: ParticipantId = "phr:asmile".parse().unwrap();
        assert_eq!(p.kind(), ParticipantKind::Phr);
        assert_eq!(p.id(), "asmile");
        assert_eq!(p.to_string(), "phr:asmile");
        assert_eq!(p.uri(), "urn:renkei:participant:phr:asmile");
        assert_eq!(ParticipantId::from_uri(&p.uri()).unwrap(), p);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"phr:asmile\"");
        assert_eq!(serde_json::from_str::<ParticipantId>(&json).unwrap(), p);
        assert!(serde_json::from_str::<ParticipantId>("\"phr:Asmile\"").is_err());
    }

    #[test]
    fn id_charset_is_enforced() {
        for good in ["a", "0", "city-a", "a.b_c-d", &"x".repeat(63)] {
            assert!(
                ParticipantId::new(ParticipantKind::Source, good).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "A",
            "a b",
            "a:b",
            "a/b",
            "é",
            &"x".repeat(64),
        ] {
            let err = ParticipantId::new(ParticipantKind::Source, bad).unwrap_err();
            assert!(err.to_string().contains("participant id"), "{bad}: {err}");
        }
        assert!(err_text("phr".parse()).contains("kind:id"));
        assert!(err_text("phr:a:b".parse()).contains("`a:b`"));
        assert!(err_text(ParticipantId::from_uri("urn:other:phr:a")).contains("does not start"));
    }

    #[test]
    fn cert_with_one_renkei_uri_matches() {
        let der = cert_with_uris(Some(&[
            "https://example.test/",
            "urn:renkei:participant:clinic:mysos",
        ]));
        let p = ParticipantId::from_cert_der(&der).unwrap();
        assert_eq!(p, "clinic:mysos".parse().unwrap());
        assert_ne!(p, "clinic:other".parse().unwrap());
        assert_ne!(p, "phr:mysos".parse().unwrap());
    }

    #[test]
    fn cert_without_san_is_rejected() {
        let der = cert_with_uris(None);
        let err = err_text(ParticipantId::from_cert_der(&der));
        assert!(err.contains("no subjectAltName"), "{err}");
    }

    #[test]
    fn cert_without_renkei_uri_is_rejected() {
        let der = cert_with_uris(Some(&["urn:other:phr:asmile"]));
        let err = err_text(ParticipantId::from_cert_der(&der));
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
        let err = err_text(ParticipantId::from_cert_der(&der));
        assert!(err.contains("more than one"), "{err}");
    }

    #[test]
    fn cert_with_unknown_kind_or_bad_id_is_rejected() {
        let der = cert_with_uris(Some(&["urn:renkei:participant:vendor:asmile"]));
        let err = err_text(ParticipantId::from_cert_der(&der));
        assert!(err.contains("unknown participant kind `vendor`"), "{err}");
        let der = cert_with_uris(Some(&["urn:renkei:participant:phr:ASMILE"]));
        let err = err_text(ParticipantId::from_cert_der(&der));
        assert!(err.contains("participant id `ASMILE`"), "{err}");
    }

    #[test]
    fn garbage_is_rejected() {
        let err = err_text(ParticipantId::from_cert_der(b"not a certificate"));
        assert!(err.contains("does not parse"), "{err}");
        let mut der = cert_with_uris(Some(&["urn:renkei:participant:phr:asmile"]));
        der.push(0);
        let err = err_text(ParticipantId::from_cert_der(&der));
        assert!(err.contains("trailing"), "{err}");
    }
}
