//! Participant identity: the kind and id of an organization, written `kind:id` and
//! named in its certificate by the URI `urn:renkei:participant:<kind>:<id>`
//! (`renkei-crypto` reads it from the certificate).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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
    /// A health insurer (国保, 健保組合, 協会けんぽ, 後期高齢者医療広域連合) as a recipient,
    /// for example for 特定保健指導.
    Insurer,
    /// A hub operator.
    Admin,
}

impl ParticipantKind {
    /// Every kind, in declaration order.
    pub const ALL: [ParticipantKind; 7] = [
        ParticipantKind::Source,
        ParticipantKind::Phr,
        ParticipantKind::Clinic,
        ParticipantKind::Municipality,
        ParticipantKind::Analyst,
        ParticipantKind::Insurer,
        ParticipantKind::Admin,
    ];

    /// The lowercase names of [`Self::ALL`], in the same order (for lists of allowed
    /// values: the policies' kinds, the consent store's checks).
    pub const NAMES: [&'static str; 7] = [
        "source",
        "phr",
        "clinic",
        "municipality",
        "analyst",
        "insurer",
        "admin",
    ];

    /// The lowercase name used in URIs, configs and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Source => "source",
            ParticipantKind::Phr => "phr",
            ParticipantKind::Clinic => "clinic",
            ParticipantKind::Municipality => "municipality",
            ParticipantKind::Analyst => "analyst",
            ParticipantKind::Insurer => "insurer",
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
                Error::Participant(format!(
                    "unknown participant kind `{s}`: expected one of {}",
                    ParticipantKind::NAMES.join(", ")
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
            Error::Participant(format!(
                "participant uri `{uri}` does not start with `{URI_PREFIX}`"
            ))
        })?;
        rest.parse()
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
            Error::Participant(format!("participant `{s}` is not of the form `kind:id`"))
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
    let bad = |why: &str| Err(Error::Participant(format!("participant id `{id}` {why}")));
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

    fn err_text(r: Result<ParticipantId>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn names_are_the_kinds_in_order() {
        let names: Vec<&str> = ParticipantKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ParticipantKind::NAMES);
    }
}
