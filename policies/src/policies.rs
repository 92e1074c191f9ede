//! The loaded policy set: loading from a directory or the embedded copy, and the two authorization questions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cedar_policy::RestrictedExpression;

use crate::catalog::{Catalog, EMBEDDED_CATALOG, EMBEDDED_CATALOG_NAME};
use crate::decision::{Decision, GrantRequest, ReadRequest, Validity, validity};
use crate::engine::{Action, Engine, Principal, SourceFile};
use crate::error::{Error, Result};

/// The participant kinds of DESIGN.md ([`renkei_ids::ParticipantKind::NAMES`]).
pub const PARTICIPANT_KINDS: [&str; 7] = renkei_ids::ParticipantKind::NAMES;

/// The catalog file name inside a policy directory.
pub const CATALOG_FILE: &str = "catalog.toml";

/// The Cedar schema file name inside a policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

const EMBEDDED_SCHEMA: &str = include_str!("../schema.cedarschema");

/// The policy files shipped with the crate, by file name.
pub(crate) const EMBEDDED_POLICIES: [(&str, &str); 9] = [
    ("analyst.cedar", include_str!("../analyst.cedar")),
    ("base.cedar", include_str!("../base.cedar")),
    ("clinic.cedar", include_str!("../clinic.cedar")),
    (
        "health-points.cedar",
        include_str!("../health-points.cedar"),
    ),
    ("insurer.cedar", include_str!("../insurer.cedar")),
    ("municipality.cedar", include_str!("../municipality.cedar")),
    ("phr.cedar", include_str!("../phr.cedar")),
    ("research.cedar", include_str!("../research.cedar")),
    ("validity.cedar", include_str!("../validity.cedar")),
];

/// The directory of the policy files in the source tree (the default for the hub's config).
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Read decisions kept per loaded policy set; past this many the memo starts over.
const READ_MEMO_MAX: usize = 16_384;

/// Catalog, schema and Cedar policies, validated together; answers authorization questions.
#[derive(Debug)]
pub struct Policies {
    catalog: Catalog,
    engine: Engine,
    /// Read decisions already made, keyed by every field of the request. A decision is
    /// a function of the request and these (immutable) policies alone, so the memo is
    /// exact; reloading the policies builds a new `Policies`, with an empty memo.
    reads: Mutex<HashMap<ReadKey, Decision>>,
}

/// Every field of a [`ReadRequest`], owned.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ReadKey {
    participant: String,
    kind: String,
    suspended: bool,
    purpose: String,
    category: String,
}

impl Policies {
    /// Loads `catalog.toml`, `schema.cedarschema` and every `*.cedar` file of `dir`.
    ///
    /// Any problem is an error naming the file and line; nothing is loaded half-way.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path)
                .map(|text| (path.display().to_string(), text))
                .map_err(|source| Error::Read { path, source })
        };
        let catalog = read(dir.join(CATALOG_FILE))?;
        let schema = read(dir.join(SCHEMA_FILE))?;
        let listing = std::fs::read_dir(dir).map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|source| Error::Read {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "cedar") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(Error::NoPolicies {
                dir: dir.to_path_buf(),
            });
        }
        let files = paths.into_iter().map(read).collect::<Result<Vec<_>>>()?;
        let sources: Vec<SourceFile<'_>> = files
            .iter()
            .map(|(name, text)| SourceFile { name, text })
            .collect();
        Self::from_parts(
            SourceFile {
                name: &catalog.0,
                text: &catalog.1,
            },
            SourceFile {
                name: &schema.0,
                text: &schema.1,
            },
            &sources,
        )
    }

    /// The catalog, schema and policies compiled into the crate.
    pub fn embedded() -> Result<Self> {
        let names: Vec<String> = EMBEDDED_POLICIES
            .iter()
            .map(|(name, _)| format!("policies/{name}"))
            .collect();
        let sources: Vec<SourceFile<'_>> = names
            .iter()
            .zip(EMBEDDED_POLICIES)
            .map(|(name, (_, text))| SourceFile { name, text })
            .collect();
        Self::from_parts(
            SourceFile {
                name: EMBEDDED_CATALOG_NAME,
                text: EMBEDDED_CATALOG,
            },
            SourceFile {
                name: "policies/schema.cedarschema",
                text: EMBEDDED_SCHEMA,
            },
            &sources,
        )
    }

    /// Builds a policy set from texts: `(name, text)` of the catalog, the schema and each policy file.
    pub fn from_sources(
        catalog: (&str, &str),
        schema: (&str, &str),
        policy_files: &[(&str, &str)],
    ) -> Result<Self> {
        let sources: Vec<SourceFile<'_>> = policy_files
            .iter()
            .map(|&(name, text)| SourceFile { name, text })
            .collect();
        Self::from_parts(
            SourceFile {
                name: catalog.0,
                text: catalog.1,
            },
            SourceFile {
                name: schema.0,
                text: schema.1,
            },
            &sources,
        )
    }

    fn from_parts(
        catalog: SourceFile<'_>,
        schema: SourceFile<'_>,
        files: &[SourceFile<'_>],
    ) -> Result<Self> {
        let catalog = Catalog::from_toml_str(catalog.name, catalog.text)?;
        let engine = Engine::new(&catalog, schema, files)?;
        Ok(Self {
            catalog,
            engine,
            reads: Mutex::new(HashMap::new()),
        })
    }

    /// The catalog the policies were validated against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The number of Cedar policies loaded.
    pub fn policy_count(&self) -> usize {
        self.engine.len()
    }

    /// May this participant hold a consent for `purpose` over all these categories,
    /// for this validity period? Each category is evaluated on its own; one denied
    /// category denies the whole grant.
    pub fn authorize_grant(&self, request: &GrantRequest<'_>) -> Decision {
        let principal = match self.check_principal(request.participant, request.kind) {
            Ok(()) => Principal {
                id: request.participant,
                kind: request.kind,
                suspended: request.suspended,
            },
            Err(reason) => return Decision::deny(reason),
        };
        if let Err(reason) = self.check_purpose(request.purpose) {
            return Decision::deny(reason);
        }
        if request.categories.is_empty() {
            return Decision::deny("a grant must name at least one category");
        }
        let validity = match validity(request.valid_from, request.valid_until) {
            Ok(validity) => validity,
            Err(reason) => return Decision::deny(reason),
        };
        let (open_ended, seconds) = match validity {
            Validity::OpenEnded => (true, i64::MAX),
            Validity::Seconds(seconds) => (false, seconds),
        };
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(request.categories.len());
        for category in request.categories {
            if !seen.insert(category.as_str()) {
                denied.push(format!("category `{category}` is listed twice"));
                continue;
            }
            if !self.catalog.is_category(category) {
                denied.push(format!("unknown category `{category}`"));
                continue;
            }
            let context = vec![
                purpose_pair(request.purpose),
                (
                    "open_ended".to_owned(),
                    RestrictedExpression::new_bool(open_ended),
                ),
                (
                    "validity_seconds".to_owned(),
                    RestrictedExpression::new_long(seconds),
                ),
                (
                    "approved_study".to_owned(),
                    RestrictedExpression::new_bool(request.approved_study),
                ),
            ];
            match self
                .engine
                .evaluate(principal, Action::Grant, category, context)
            {
                Ok(reasons) => allowed.extend(label(category, reasons)),
                Err(reasons) => denied.extend(label(category, reasons)),
            }
        }
        if denied.is_empty() {
            Decision::allow(allowed)
        } else {
            Decision::deny_all(denied)
        }
    }

    /// May this participant read `category` under a consent for `purpose`?
    pub fn authorize_read(&self, request: &ReadRequest<'_>) -> Decision {
        let key = ReadKey {
            participant: request.participant.to_owned(),
            kind: request.kind.to_owned(),
            suspended: request.suspended,
            purpose: request.purpose.to_owned(),
            category: request.category.to_owned(),
        };
        let memo = || self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = memo().get(&key) {
            return known.clone();
        }
        let decision = self.decide_read(request);
        let mut reads = memo();
        if reads.len() >= READ_MEMO_MAX {
            reads.clear();
        }
        reads.insert(key, decision.clone());
        decision
    }

    fn decide_read(&self, request: &ReadRequest<'_>) -> Decision {
        if let Err(reason) = self.check_principal(request.participant, request.kind) {
            return Decision::deny(reason);
        }
        if let Err(reason) = self.check_purpose(request.purpose) {
            return Decision::deny(reason);
        }
        if !self.catalog.is_category(request.category) {
            return Decision::deny(format!("unknown category `{}`", request.category));
        }
        let principal = Principal {
            id: request.participant,
            kind: request.kind,
            suspended: request.suspended,
        };
        let context = vec![purpose_pair(request.purpose)];
        match self
            .engine
            .evaluate(principal, Action::Read, request.category, context)
        {
            Ok(reasons) => Decision::allow(label(request.category, reasons).collect()),
            Err(reasons) => Decision::deny_all(label(request.category, reasons).collect()),
        }
    }

    fn check_principal(&self, participant: &str, kind: &str) -> Result<(), String> {
        if !PARTICIPANT_KINDS.contains(&kind) {
            return Err(format!("unknown participant kind `{kind}`"));
        }
        match participant.split_once(':') {
            Some((prefix, id)) if prefix == kind && !id.is_empty() => Ok(()),
            _ => Err(format!(
                "participant `{participant}` is not of the form `{kind}:<id>`"
            )),
        }
    }

    fn check_purpose(&self, purpose: &str) -> Result<(), String> {
        if self.catalog.is_purpose(purpose) {
            Ok(())
        } else {
            Err(format!("unknown purpose `{purpose}`"))
        }
    }
}

fn purpose_pair(purpose: &str) -> (String, RestrictedExpression) {
    (
        "purpose".to_owned(),
        RestrictedExpression::new_string(purpose.to_owned()),
    )
}

fn label(category: &str, reasons: Vec<String>) -> impl Iterator<Item = String> + '_ {
    reasons
        .into_iter()
        .map(move |reason| format!("category `{category}`: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_policies_are_exactly_the_directory_files() {
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(default_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "cedar"))
            .map(|path| {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                (name, std::fs::read_to_string(path).unwrap())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(String, String)> = EMBEDDED_POLICIES
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect();
        assert_eq!(
            on_disk, embedded,
            "add new .cedar files to EMBEDDED_POLICIES"
        );
    }

    #[test]
    fn errors_read_well() {
        let schema = ("s.cedarschema", EMBEDDED_SCHEMA);
        let catalog = (EMBEDDED_CATALOG_NAME, EMBEDDED_CATALOG);
        let bad = "@id(\"x\")\npermit (principal, action, resource)\nwhen { principal.kind == };\n";
        let err = Policies::from_sources(catalog, schema, &[("p/bad.cedar", bad)]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid policy file `p/bad.cedar` at line 3: "),
            "{text}"
        );
    }
}
