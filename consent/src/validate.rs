//! Validation of the identifiers a consent names: subject tokens and participant ids.

use crate::{Error, Result};

/// Checks a subject token: `st1_` followed by 32 lowercase base32 characters
/// ([`renkei_ids::SubjectToken`]).
pub fn validate_subject_token(token: &str) -> Result<()> {
    renkei_ids::SubjectToken::parse(token)
        .map(|_| ())
        .map_err(|_| Error::InvalidSubject(token.to_owned()))
}

/// Checks a participant id: `kind:id`, a known kind, and an id of 1 to 63 characters
/// from `a-z0-9._-` starting with a letter or digit ([`renkei_ids::ParticipantId`]).
pub fn validate_participant(participant: &str) -> Result<()> {
    participant
        .parse::<renkei_ids::ParticipantId>()
        .map(|_| ())
        .map_err(|_| Error::InvalidParticipant(participant.to_owned()))
}

/// Most categories one consent may name: more than any catalog holds, few enough that
/// checking them costs nothing.
pub const MAX_CATEGORIES: usize = 64;
/// Longest `granted_by` or `evidence`, in characters (a name or a staff id; a digest).
pub const MAX_TEXT: usize = 256;

/// Checks the sizes of a consent's caller-chosen lists and texts, before anything else
/// looks at them: at most [`MAX_CATEGORIES`] distinct categories, `granted_by` and
/// `evidence` non-empty and at most [`MAX_TEXT`] characters.
pub fn validate_sizes(
    categories: &[String],
    granted_by: &str,
    evidence: Option<&str>,
) -> Result<()> {
    if categories.len() > MAX_CATEGORIES {
        return Err(Error::InvalidTerms(format!(
            "{} categories, more than {MAX_CATEGORIES}",
            categories.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(categories.len());
    for c in categories {
        validate_code("category", c)?;
        if !seen.insert(c.as_str()) {
            return Err(Error::InvalidTerms(format!(
                "category `{c}` is listed twice"
            )));
        }
    }
    for (field, text) in [("granted_by", Some(granted_by)), ("evidence", evidence)] {
        match text {
            Some(t) if t.trim().is_empty() => {
                return Err(Error::InvalidTerms(format!("{field} must not be empty")));
            }
            Some(t) if t.chars().count() > MAX_TEXT => {
                return Err(Error::InvalidTerms(format!(
                    "{field} is longer than {MAX_TEXT} characters"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a catalog code (purpose or category): 1 to 64 characters from `a-z0-9.-`.
pub(crate) fn validate_code(field: &str, code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'));
    if ok {
        Ok(())
    } else {
        let shown: String = code.chars().take(64).collect();
        let cut = if shown.len() < code.len() { "…" } else { "" };
        Err(Error::InvalidTerms(format!(
            "{field} `{}{cut}` must be 1-64 characters of a-z, 0-9, `.` and `-`",
            shown.escape_debug()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens() {
        assert!(validate_subject_token("st1_abcdefghijklmnopqrstuvwxyz234567").is_ok());
        assert!(validate_subject_token("st1_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567").is_err());
        assert!(validate_subject_token("st1_abcdefghijklmnopqrstuvwxyz23456").is_err());
        assert!(validate_subject_token("st1_abcdefghijklmnopqrstuvwxyz234561").is_err());
        assert!(validate_subject_token("st2_abcdefghijklmnopqrstuvwxyz234567").is_err());
        assert!(validate_subject_token("").is_err());
    }

    #[test]
    fn participants() {
        assert!(validate_participant("phr:asmile").is_ok());
        assert!(validate_participant("clinic:tokyo-01").is_ok());
        assert!(validate_participant("phr:").is_err());
        assert!(validate_participant("phr:Asmile").is_err());
        assert!(validate_participant("vendor:asmile").is_err());
        assert!(validate_participant("phr").is_err());
        assert!(validate_participant("phr:-x").is_err());
        assert!(validate_participant("phr:a:b").is_err());
    }

    #[test]
    fn codes() {
        assert!(validate_code("category", "checkup.body").is_ok());
        assert!(validate_code("category", "").is_err());
        assert!(validate_code("category", "Checkup").is_err());
    }
}
