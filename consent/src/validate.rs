//! Validation of the identifiers a consent names: subject tokens and participant ids.

use crate::{Error, Result};

/// Participant kinds known to the hub (see DESIGN.md, "Participants and identity").
const PARTICIPANT_KINDS: [&str; 6] = [
    "source",
    "phr",
    "clinic",
    "municipality",
    "analyst",
    "admin",
];

/// Lowercase RFC 4648 base32 alphabet used by subject tokens.
fn is_base32_lower(c: char) -> bool {
    matches!(c, 'a'..='z' | '2'..='7')
}

/// Checks a subject token: `st1_` followed by 32 lowercase base32 characters.
pub fn validate_subject_token(token: &str) -> Result<()> {
    let ok = token
        .strip_prefix("st1_")
        .is_some_and(|rest| rest.len() == 32 && rest.chars().all(is_base32_lower));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSubject(token.to_owned()))
    }
}

/// Checks a participant id: `kind:id`, a known kind, and an id of 1 to 63 characters
/// from `a-z0-9._-` starting with a letter or digit.
pub fn validate_participant(participant: &str) -> Result<()> {
    let bad = || Error::InvalidParticipant(participant.to_owned());
    let (kind, id) = participant.split_once(':').ok_or_else(bad)?;
    if !PARTICIPANT_KINDS.contains(&kind) {
        return Err(bad());
    }
    let first_ok = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && id.len() <= 63 {
        Ok(())
    } else {
        Err(bad())
    }
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
        Err(Error::InvalidTerms(format!(
            "{field} `{code}` must be 1-64 characters of a-z, 0-9, `.` and `-`"
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
