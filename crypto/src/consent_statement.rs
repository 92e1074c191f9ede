//! Consent and revocation statements (issue 14, `docs/threat-model.md`): the terms of a
//! consent, signed with the certificate key of the participant that took it (the source
//! at its counter, or the PHR app the resident used), and a revocation signed the same
//! way. The hub stores and relays them but cannot make or alter one, so a source checks
//! a consent for itself before it seals a record key under it.
//!
//! The resident is named so that only the source can resolve it: by a salted commitment
//! to the source's own subject token (`stc1_…`, counter consents: [`commit_resident`]),
//! or by a digest of the app's own reference for its user ([`user_resident`]), which the
//! app also sealed into its enrollment claim; the source alone knows which resident that
//! enrollment linked. A counter consent's statement reaches the apps and clinics whose
//! own records it releases, so it carries no token and no other app's digest: the hub,
//! which knows the token, and the source check the commitment; an app checks that its
//! own user's digest is among the committed aliases ([`ConsentTerms::names_alias`]).
//! (Statements signed before commitments name the token itself and still verify.)
//!
//! Signed bytes (UTF-8, one field per `\n`-terminated line; no field holds a control
//! character, no category a comma):
//!
//! ```text
//! renkei consent statement v1
//! <signer kind:id>
//! <resident>
//! <recipient kind:id>
//! <purpose>
//! <categories, sorted, comma-separated>
//! <data period from, YYYY-MM-DD or empty>
//! <data period until, YYYY-MM-DD or empty>
//! <valid from, RFC 3339 UTC, seconds>
//! <valid until, RFC 3339 UTC, seconds, or empty>
//! <aliases, sorted, comma-separated (`userc:` commitments, or `user:` digests in
//!  statements from before commitments), or empty>
//! <issued at, RFC 3339 UTC, microseconds>
//! ```
//!
//! When a guardian consented for a child, the first line reads `renkei consent statement
//! v2` and a line with the relationship (`parent` or `legal-guardian`) follows the
//! aliases; a statement without one keeps the v1 bytes, so statements signed before still
//! verify and keep their ids.
//!
//! A revocation list signs `renkei revocation list v1`, the signer, its time and the
//! sorted, comma-separated ids ([`ConsentStatement::id`]) of every statement the signer
//! revoked, in the same way.

use std::path::Path;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::participant::ParticipantId;
use crate::statement::{Signed, bad, check_signature};

/// Prefix of a resident named by an app's own user reference.
pub const USER_PREFIX: &str = "user:";

/// How an app's user is named in a statement: `user:` and the lowercase hex SHA-256 of
/// `renkei user v1`, the app's `kind:id` and its user reference, each on its own line.
/// The app and the source compute it; neither the hub nor a statement carries the
/// reference itself.
pub fn user_resident(app: &str, user_ref: &str) -> String {
    let digest = Sha256::digest(format!("renkei user v1\n{app}\n{user_ref}\n"));
    format!("{USER_PREFIX}{}", data_encoding::HEXLOWER.encode(&digest))
}

/// Whether `resident` is a [`user_resident`] (64 lowercase hex digits after `user:`).
fn is_user_resident(resident: &str) -> bool {
    resident
        .strip_prefix(USER_PREFIX)
        .is_some_and(|h| is_hex(h, 64))
}

/// Whether `s` is `len` lowercase hex digits.
fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Prefix of a resident named by a salted commitment to a subject token.
pub const COMMITTED_PREFIX: &str = "stc1_";

/// Prefix of an alias committed with the resident's salt.
pub const COMMITTED_ALIAS_PREFIX: &str = "userc:";

/// The salt and digest of a committed resident (`stc1_<salt, 32 hex>_<digest, 64 hex>`).
fn committed_parts(resident: &str) -> Option<(&str, &str)> {
    let (salt, digest) = resident.strip_prefix(COMMITTED_PREFIX)?.split_once('_')?;
    (is_hex(salt, 32) && is_hex(digest, 64)).then_some((salt, digest))
}

fn salted(label: &str, salt: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("renkei {label} v1\n{salt}\n{value}\n"));
    data_encoding::HEXLOWER.encode(&digest)
}

/// A counter consent's resident and aliases, committed under a fresh random salt: the
/// resident as `stc1_<salt>_<SHA-256 of the salt and the token>`, each alias (a
/// [`user_resident`]) as `userc:<SHA-256 of the salt and the digest>`, sorted. Nobody
/// without the token learns it from the statement, and two statements for one resident
/// share no value an app or clinic could join on.
pub fn commit_resident(token: &str, aliases: &[String]) -> (String, Vec<String>) {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let salt = data_encoding::HEXLOWER.encode(&salt);
    let resident = format!(
        "{COMMITTED_PREFIX}{salt}_{}",
        salted("resident", &salt, token)
    );
    let mut committed: Vec<String> = aliases
        .iter()
        .map(|a| format!("{COMMITTED_ALIAS_PREFIX}{}", salted("alias", &salt, a)))
        .collect();
    committed.sort_unstable();
    committed.dedup();
    (resident, committed)
}

/// Longest purpose or category code, in bytes.
const MAX_CODE: usize = 64;

/// At most this many categories in one consent.
const MAX_CATEGORIES: usize = 64;

/// At most this many aliases in one consent.
const MAX_ALIASES: usize = 16;

/// How far in the future a statement's issue time may be (clock skew), in seconds.
const MAX_SKEW_SECS: i64 = 300;

/// The terms a resident agreed to, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentTerms {
    /// The resident: a commitment to the signing source's own token (`stc1_…`,
    /// [`commit_resident`]; `st1_…` itself in statements from before commitments) or an
    /// app's [`user_resident`].
    pub resident: String,
    /// Recipient `kind:id`.
    pub recipient: String,
    /// Purpose code.
    pub purpose: String,
    /// Catalog categories, sorted and without repeats.
    pub categories: Vec<String>,
    /// First effective date covered, if bounded.
    pub data_from: Option<NaiveDate>,
    /// Last effective date covered, if bounded.
    pub data_until: Option<NaiveDate>,
    /// Start of validity (whole seconds).
    pub valid_from: DateTime<Utc>,
    /// End of validity (exclusive, whole seconds); none until revoked.
    pub valid_until: Option<DateTime<Utc>>,
    /// For a source's counter consent: the resident's user digests at the apps the source
    /// linked them to ([`user_resident`]), committed under the resident's salt
    /// (`userc:…`, [`commit_resident`]) and sorted, so that an app holding the resident's
    /// own records recognises its user ([`ConsentTerms::names_alias`]). Empty otherwise.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// When a guardian consented for the resident, a child: `parent` or `legal-guardian`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<String>,
}

/// The relationships a guardian may state.
pub const GUARDIANS: [&str; 2] = ["parent", "legal-guardian"];

/// A consent's terms signed by the participant that took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentStatement {
    /// The participant (`kind:id`) that took the consent and signed it.
    pub signer: String,
    /// What the resident agreed to.
    pub terms: ConsentTerms,
    /// When it was signed.
    pub issued_at: DateTime<Utc>,
    /// The signer's certificate (base64 DER).
    pub certificate: String,
    /// The TLS signature scheme code (RFC 8446 §4.2.3).
    pub scheme: u16,
    /// The signature (base64).
    pub signature: String,
}

/// Every consent statement a participant has revoked, signed by it: a consent's
/// certificate revocation list. The participant publishes a fresh one through the hub
/// after each revocation and on every contact; a source releases under that
/// participant's statements only with a list it verified, no older than the source
/// allows and no older than the newest it has seen, that does not name the statement.
/// The hub can withhold a new list only until the old one is too old: then the source
/// releases nothing under that participant's statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// The participant (`kind:id`) that revoked and signed.
    pub signer: String,
    /// The ids ([`ConsentStatement::id`]) of the statements it revoked, sorted, no repeats.
    pub revoked: Vec<String>,
    /// When it was signed.
    pub issued_at: DateTime<Utc>,
    /// The signer's certificate (base64 DER).
    pub certificate: String,
    /// The TLS signature scheme code.
    pub scheme: u16,
    /// The signature (base64).
    pub signature: String,
}

/// At most this many statement ids in one revocation list.
pub const MAX_REVOKED: usize = 10_000;

fn seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn plain(field: &str, value: &str, max: usize) -> std::result::Result<(), String> {
    if value.is_empty() || value.len() > max {
        return Err(format!("{field} must be 1 to {max} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} holds a control character"));
    }
    Ok(())
}

impl ConsentTerms {
    /// Checks the terms are well formed: ids parse, codes are short and plain, the
    /// categories are sorted without repeats, periods and validity are in order, and
    /// times are whole seconds (they are signed as such).
    pub fn check(&self) -> std::result::Result<(), String> {
        let committed = committed_parts(&self.resident).is_some();
        if !committed
            && !is_user_resident(&self.resident)
            && crate::token::SubjectToken::parse(&self.resident).is_err()
        {
            return Err("the resident is neither `stc1_…`, `st1_…` nor a `user:` digest".into());
        }
        self.recipient
            .parse::<ParticipantId>()
            .map_err(|e| format!("recipient: {e}"))?;
        plain("the purpose", &self.purpose, MAX_CODE)?;
        if self.categories.is_empty() || self.categories.len() > MAX_CATEGORIES {
            return Err(format!("name 1 to {MAX_CATEGORIES} categories"));
        }
        for c in &self.categories {
            plain("a category", c, MAX_CODE)?;
            if c.contains(',') {
                return Err("a category holds a comma".into());
            }
        }
        if self.categories.windows(2).any(|w| w.first() >= w.get(1)) {
            return Err("categories must be sorted, without repeats".into());
        }
        // Aliases are committed exactly when the resident is.
        let alias_ok = |a: &String| match committed {
            true => a
                .strip_prefix(COMMITTED_ALIAS_PREFIX)
                .is_some_and(|h| is_hex(h, 64)),
            false => is_user_resident(a),
        };
        if self.aliases.len() > MAX_ALIASES
            || !self.aliases.iter().all(alias_ok)
            || self.aliases.windows(2).any(|w| w.first() >= w.get(1))
        {
            return Err(format!(
                "aliases must be at most {MAX_ALIASES} sorted digests without repeats \
                 (`userc:` when the resident is `stc1_…`, `user:` otherwise)"
            ));
        }
        if let (Some(from), Some(until)) = (self.data_from, self.data_until) {
            if from > until {
                return Err("the data period ends before it starts".into());
            }
        }
        let whole = |t: DateTime<Utc>| t.timestamp_subsec_nanos() == 0;
        if !whole(self.valid_from) || !self.valid_until.is_none_or(whole) {
            return Err("validity times must be whole seconds".into());
        }
        if self
            .guardian
            .as_deref()
            .is_some_and(|g| !GUARDIANS.contains(&g))
        {
            return Err(format!(
                "the guardian must be one of {}",
                GUARDIANS.join(", ")
            ));
        }
        if self.valid_until.is_some_and(|u| u <= self.valid_from) {
            return Err("validity ends before it starts".into());
        }
        Ok(())
    }

    /// Whether these terms name the resident whose subject token is `token`: the token
    /// itself, or a commitment to it.
    pub fn names_token(&self, token: &str) -> bool {
        match committed_parts(&self.resident) {
            Some((salt, digest)) => salted("resident", salt, token) == digest,
            None => self.resident == token,
        }
    }

    /// Whether the aliases name the app user `user` (a [`user_resident`]): the digest
    /// itself, or its commitment under the resident's salt.
    pub fn names_alias(&self, user: &str) -> bool {
        match committed_parts(&self.resident) {
            Some((salt, _)) => {
                let mine = format!("{COMMITTED_ALIAS_PREFIX}{}", salted("alias", salt, user));
                self.aliases.contains(&mine)
            }
            None => self.aliases.iter().any(|a| a == user),
        }
    }

    /// Whether a record of `category` with `effective_date` may be released under these
    /// terms at `now`; `Err` says why not.
    pub fn covers(
        &self,
        category: &str,
        effective_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> std::result::Result<(), String> {
        if !self.categories.iter().any(|c| c == category) {
            return Err(format!("the consent does not cover `{category}`"));
        }
        if self.data_from.is_some_and(|f| effective_date < f)
            || self.data_until.is_some_and(|u| effective_date > u)
        {
            return Err(format!(
                "the record's date {effective_date} is outside the consent's data period"
            ));
        }
        if now < self.valid_from {
            return Err("the consent is not valid yet".into());
        }
        if self.valid_until.is_some_and(|u| now >= u) {
            return Err("the consent has expired".into());
        }
        Ok(())
    }
}

fn statement_bytes(signer: &str, t: &ConsentTerms, issued_at: DateTime<Utc>) -> Vec<u8> {
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    // v2 only with a guardian: statements without one keep their v1 bytes and ids.
    let (version, guardian) = match &t.guardian {
        Some(g) => ("v2", format!("{g}\n")),
        None => ("v1", String::new()),
    };
    format!(
        "renkei consent statement {version}\n{signer}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{guardian}{}\n",
        t.resident,
        t.recipient,
        t.purpose,
        t.categories.join(","),
        date(t.data_from),
        date(t.data_until),
        seconds(t.valid_from),
        t.valid_until.map(seconds).unwrap_or_default(),
        t.aliases.join(","),
        issued_at.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
    .into_bytes()
}

fn list_bytes(signer: &str, revoked: &[String], issued_at: DateTime<Utc>) -> Vec<u8> {
    format!(
        "renkei revocation list v1\n{signer}\n{}\n{}\n",
        issued_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        revoked.join(",")
    )
    .into_bytes()
}

/// Whether `id` looks like a statement id (64 lowercase hex digits).
fn is_statement_id(id: &str) -> bool {
    is_hex(id, 64)
}

/// A statement may not claim to be made later than `now` (plus clock skew).
fn not_from_the_future(what: &str, issued_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
    if (issued_at - now).num_seconds() > MAX_SKEW_SECS {
        return Err(bad(format!("{what}: issued in the future ({issued_at})")));
    }
    Ok(())
}

impl ConsentStatement {
    /// Signs `terms` with the key of the mTLS identity in `cert_chain` and `key`.
    pub fn sign(
        cert_chain: &Path,
        key: &Path,
        terms: ConsentTerms,
        now: DateTime<Utc>,
    ) -> Result<ConsentStatement> {
        terms
            .check()
            .map_err(|why| bad(format!("consent terms: {why}")))?;
        let signed = Signed::make(cert_chain, key, |signer| {
            statement_bytes(signer, &terms, now)
        })?;
        Ok(ConsentStatement {
            signer: signed.signer,
            terms,
            issued_at: now,
            certificate: signed.certificate,
            scheme: signed.scheme,
            signature: signed.signature,
        })
    }

    /// The statement's id: lowercase hex SHA-256 of the signed bytes.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(statement_bytes(&self.signer, &self.terms, self.issued_at));
        data_encoding::HEXLOWER.encode(&digest)
    }

    /// Checks the terms and that the signer's certificate, valid when the statement was
    /// issued and chaining to the CA in `ca`, signed exactly them (a consent outlives the
    /// certificate it was signed with). Returns the signer.
    pub fn verify(&self, ca: &Path, now: DateTime<Utc>) -> Result<ParticipantId> {
        let who = crate::error::shorten(&self.signer);
        self.terms
            .check()
            .map_err(|why| bad(format!("consent statement of `{who}`: {why}")))?;
        not_from_the_future("consent statement", self.issued_at, now)?;
        check_signature(
            "consent statement",
            &self.signer,
            &self.certificate,
            self.scheme,
            &self.signature,
            &statement_bytes(&self.signer, &self.terms, self.issued_at),
            ca,
            self.issued_at,
        )
    }
}

impl RevocationList {
    /// Signs the list of `revoked` statement ids (sorted and deduplicated here).
    pub fn sign(
        cert_chain: &Path,
        key: &Path,
        mut revoked: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<RevocationList> {
        revoked.sort_unstable();
        revoked.dedup();
        let signed = Signed::make(cert_chain, key, |signer| list_bytes(signer, &revoked, now))?;
        Ok(RevocationList {
            signer: signed.signer,
            revoked,
            issued_at: now,
            certificate: signed.certificate,
            scheme: signed.scheme,
            signature: signed.signature,
        })
    }

    /// Checks the ids are statement ids, sorted, without repeats and at most
    /// [`MAX_REVOKED`], the list is not from the future, and the signer's certificate,
    /// chaining to the CA in `ca` and valid at `now`, signed exactly it. Returns the signer.
    pub fn verify(&self, ca: &Path, now: DateTime<Utc>) -> Result<ParticipantId> {
        let who = crate::error::shorten(&self.signer);
        let well_formed = self.revoked.len() <= MAX_REVOKED
            && self.revoked.iter().all(|id| is_statement_id(id))
            && self.revoked.windows(2).all(|w| w.first() < w.get(1));
        if !well_formed {
            return Err(bad(format!(
                "revocation list of `{who}`: ids must be at most {MAX_REVOKED} sorted \
                 statement ids without repeats"
            )));
        }
        not_from_the_future("revocation list", self.issued_at, now)?;
        check_signature(
            "revocation list",
            &self.signer,
            &self.certificate,
            self.scheme,
            &self.signature,
            &list_bytes(&self.signer, &self.revoked, self.issued_at),
            ca,
            now,
        )
    }

    /// Whether the list names the statement `id`.
    pub fn names(&self, id: &str) -> bool {
        self.revoked
            .binary_search_by(|r| r.as_str().cmp(id))
            .is_ok()
    }
}
