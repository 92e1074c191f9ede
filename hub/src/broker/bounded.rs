//! Bounded input: ids in paths and bodies are checked for shape and length before
//! anything is echoed or audited, and free text is cut and escaped. An error never
//! carries more than a short, escaped form of what the caller sent.

use renkei_crypto::participant::ParticipantId;
use renkei_crypto::token::RecordId;

use crate::error::{Error, Result};

/// Longest echo of caller input in an error message or an audit field, in characters.
pub const ECHO_CHARS: usize = 64;

/// `s` cut to `max` characters (an ellipsis marks the cut) with every control character
/// and every line, paragraph or text-direction mark written as `\u{…}`, so that what is
/// stored or echoed is bounded and cannot forge lines, terminal sequences or reorder text.
pub fn text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The short, escaped form of caller input used in messages.
pub fn echo(s: &str) -> String {
    text(s, ECHO_CHARS)
}

/// A record id (`rec1_…`) from a path or body.
pub fn record_id(s: &str) -> Result<RecordId> {
    RecordId::parse(s).map_err(|e| Error::bad_request_from(format!("record id `{}`", echo(s)), e))
}

/// A consent id (a UUID) from a path or body.
pub fn consent_id(s: &str) -> Result<()> {
    uuid("consent id", s)
}

/// An id the hub made (consents, enrollments): a lower-case hyphenated UUID.
pub fn uuid(what: &str, s: &str) -> Result<()> {
    match uuid::Uuid::try_parse(s) {
        Ok(u) if u.hyphenated().to_string() == s => Ok(()),
        _ => Err(Error::bad_request(format!(
            "{what} `{}`: expected a lower-case hyphenated UUID",
            echo(s)
        ))),
    }
}

/// A participant (`kind:id`) named in a body.
pub fn participant(field: &str, s: &str) -> Result<ParticipantId> {
    if s.len() > 128 {
        return Err(Error::bad_request(format!(
            "{field}: `{}` is longer than 128 bytes",
            echo(s)
        )));
    }
    s.parse()
        .map_err(|e| Error::bad_request_from(format!("{field}: `{}`", echo(s)), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_and_escaped() {
        assert_eq!(text("abc", 5), "abc");
        assert_eq!(text("abcdef", 3), "abc…");
        assert_eq!(text("a\nb\u{1b}[31m", 10), "a\\u{a}b\\u{1b}[31m");
        assert_eq!(text("\u{202e}x", 10), "\\u{202e}x");
        assert_eq!(text("\u{2067}x\u{2069}", 10), "\\u{2067}x\\u{2069}");
        let long = "x".repeat(60_000);
        assert!(echo(&long).chars().count() <= ECHO_CHARS + 1);
    }

    #[test]
    fn ids_are_checked_before_echo() {
        let long = format!("rec1_{}", "a".repeat(60_000));
        let e = record_id(&long).unwrap_err().to_string();
        assert!(e.len() < 400, "{e}");
        assert!(consent_id("00000000-0000-4000-8000-000000000000").is_ok());
        assert!(consent_id("00000000-0000-4000-8000-00000000000G").is_err());
        assert!(consent_id("00000000000040008000000000000000").is_err());
        let e = consent_id(&"\n".repeat(1000)).unwrap_err().to_string();
        assert!(!e.contains('\n') && e.len() < 600, "{e}");
        assert!(participant("recipient", "clinic:mysos").is_ok());
        assert!(participant("recipient", &"a".repeat(200)).is_err());
    }
}
