//! One-time enrollment codes, the second factor of web enrollment: staff issue one
//! inside LGWAN for the resident whose card they checked (`lgwan-agent
//! enrollment-code issue`, printed on the result notice or handed over at the
//! counter); the resident types it into the PHR app, which seals it with the
//! identifiers. The agent keeps only its keyed hash (`ec1_…`, see
//! [`renkei_crypto::token::enrollment_code_hash`]); a code links once, before it
//! expires, and a new code replaces the resident's earlier unused ones and unlocks
//! their web enrollment.
//!
//! A code is 12 Crockford base32 characters (60 random bits), printed in three groups
//! of four: `K7QM-3XWA-9PZD`. Typing is forgiving: case, spaces, hyphens and the dashes
//! a Japanese IME makes, full-width characters, and the look-alikes O (0), I and L (1)
//! are accepted. Guessing is not: the agent locks a resident's web enrollment after a
//! few failures and throttles each app.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use renkei_crypto::identity::Identity;
use renkei_crypto::keys::RecordKey;
use renkei_crypto::token::{EnrollmentCodeHash, SubjectToken, enrollment_code_hash};
use zeroize::Zeroizing;

use super::resident;
use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::outbox::Outbox;

/// Characters in a code.
pub const CODE_CHARS: usize = 12;
/// Characters per printed group.
const GROUP: usize = 4;
/// Crockford base32 (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A one-time enrollment code: zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentCode(Zeroizing<String>);

impl fmt::Debug for EnrollmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentCode([secret elided])")
    }
}

/// Hyphens and dashes a resident may type between the groups.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{00AD}' | '\u{2010}'
            ..='\u{2015}' | '\u{2212}' | '\u{30FC}' | '\u{FE58}' | '\u{FE63}' | '\u{FF70}'
    )
}

impl EnrollmentCode {
    /// A fresh code from the operating system's generator.
    pub fn generate() -> EnrollmentCode {
        let mut bytes = Zeroizing::new([0u8; CODE_CHARS]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
        let mut code = Zeroizing::new(String::with_capacity(CODE_CHARS));
        for b in bytes.iter() {
            let symbol = ALPHABET.get(usize::from(b & 31)).copied().unwrap_or(b'0');
            code.push(char::from(symbol));
        }
        EnrollmentCode(code)
    }

    /// Reads a typed code (see the module documentation); `None` unless it is exactly
    /// [`CODE_CHARS`] symbols once normalized.
    pub fn parse(typed: &str) -> Option<EnrollmentCode> {
        let mut code = Zeroizing::new(String::with_capacity(CODE_CHARS));
        for c in typed.chars() {
            // Full-width ASCII (what NFKC makes ordinary) typed with a Japanese IME.
            let c = match u32::from(c) {
                0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
                _ => c,
            };
            if c.is_whitespace() || is_dash(c) {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            let known = u8::try_from(c).is_ok_and(|b| ALPHABET.contains(&b));
            if !known || code.len() == CODE_CHARS {
                return None;
            }
            code.push(c);
        }
        (code.len() == CODE_CHARS).then_some(EnrollmentCode(code))
    }

    /// The code as printed: three groups of four joined by `-`.
    pub fn grouped(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP));
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    /// Its keyed hash, what the outbox keeps.
    pub fn hash(&self, key: &RecordKey) -> EnrollmentCodeHash {
        enrollment_code_hash(key, &self.0)
    }
}

/// A code just issued, to print once.
#[derive(Debug)]
pub struct IssuedCode {
    /// The code.
    pub code: EnrollmentCode,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// The resident's token (the one the outbox knows them by, else the active one).
    pub subject: SubjectToken,
    /// Whether the agent exported records of this resident yet (a web enrollment
    /// links only then).
    pub subject_known: bool,
    /// Earlier unused codes of the resident that no longer work.
    pub replaced: u64,
    /// Whether the resident's web enrollment was locked and is now open again.
    pub unlocked: bool,
}

/// Issues a code for the resident `identity` (typed by staff from the card), valid for
/// the configured days from `now`. Refused for an identity two people share (twins on a
/// family card: they enroll at the counter) and for a 枝番 that differs from the one on
/// record.
pub async fn issue(
    agent: &Agent,
    outbox: &Outbox,
    identity: &Identity,
    now: DateTime<Utc>,
) -> Result<IssuedCode> {
    let r = resident(agent, outbox, identity).await?;
    if let Some(known) = &r.known {
        if known.conflict {
            return Err(Error::EnrollmentCode(
                "these identifiers are shared by two people (same-sex twins on one family \
                 card): they cannot enroll on the web; link them at the counter \
                 (`lgwan-agent consent grant`)"
                    .into(),
            ));
        }
        if let (Some(ours), Some(given)) = (known.branch.as_deref(), r.branch.as_deref()) {
            if ours != given {
                return Err(Error::EnrollmentCode(format!(
                    "the 枝番 `{given}` is not the one this resident's records carry; check the card"
                )));
            }
        }
    }
    let days = agent.config.enrollment.code_valid_days;
    let expires_at = now + Duration::days(i64::from(days));
    // 60 random bits: a collision with a stored code is all but impossible, but a new
    // code must never match an old one.
    let mut fresh = None;
    for _ in 0..4 {
        let code = EnrollmentCode::generate();
        if !outbox
            .has_enrollment_code(&code.hash(agent.record_id_key()))
            .await?
        {
            fresh = Some(code);
            break;
        }
    }
    let code = fresh.ok_or_else(|| {
        Error::EnrollmentCode("could not draw a code unlike the stored ones".into())
    })?;
    let done = outbox
        .put_enrollment_code(
            &code.hash(agent.record_id_key()),
            &r.token,
            &r.versions,
            now.timestamp(),
            expires_at.timestamp(),
        )
        .await?;
    Ok(IssuedCode {
        code,
        expires_at,
        subject: r.token,
        subject_known: r.known.is_some(),
        replaced: done.replaced,
        unlocked: done.unlocked,
    })
}

/// The text `enrollment-code issue` prints for staff: the code for the notice or the
/// resident, and what changed.
pub fn issued_text(issued: &IssuedCode) -> String {
    let mut out = format!(
        "enrollment code: {}\nvalid until:     {} (UTC)\nresident:        {}\n",
        issued.code.grouped().as_str(),
        issued.expires_at.format("%Y-%m-%d %H:%M"),
        issued.subject
    );
    if !issued.subject_known {
        out.push_str(
            "note: no records of these identifiers were exported yet; the code links once \
             they are\n",
        );
    }
    if issued.replaced > 0 {
        out.push_str(&format!(
            "note: {} earlier unused code(s) of this resident no longer work\n",
            issued.replaced
        ));
    }
    if issued.unlocked {
        out.push_str("note: this resident's web enrollment was locked; it is open again\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_twelve_crockford_symbols_and_print_in_groups() {
        let a = EnrollmentCode::generate();
        let b = EnrollmentCode::generate();
        assert_ne!(a, b);
        let printed = a.grouped();
        assert_eq!(printed.len(), 14);
        assert_eq!(printed.matches('-').count(), 2);
        assert!(
            printed
                .chars()
                .all(|c| c == '-' || ALPHABET.contains(&(c as u8)))
        );
        assert_eq!(EnrollmentCode::parse(&printed), Some(a.clone()));
        assert!(!format!("{a:?}").contains(&printed[..4]));
    }

    #[test]
    fn typing_is_forgiving_but_exact() {
        let code = EnrollmentCode::parse("K7QM-3XWA-9PZD").unwrap();
        for typed in [
            "k7qm3xwa9pzd",
            " K7QM 3XWA 9PZD ",
            "K7QM－3XWA－9PZD",
            "Ｋ７ＱＭ　３ＸＷＡ　９ＰＺＤ",
            "K7QMー3XWAー9PZD",
            "K7QM‐3XWA−9PZD",
        ] {
            assert_eq!(EnrollmentCode::parse(typed), Some(code.clone()), "{typed}");
        }
        let zero = EnrollmentCode::parse("0011-0000-1111").unwrap();
        assert_eq!(EnrollmentCode::parse("OOIL-oooo-iIlL"), Some(zero));
        for bad in [
            "",
            "K7QM-3XWA-9PZ",
            "K7QM-3XWA-9PZDX",
            "K7QM-3XWA-9PZU",
            "K7QM-3XWA-9PZ!",
            "K7QM/3XWA/9PZD",
            "K7QM-3XWA-9PZé",
        ] {
            assert_eq!(EnrollmentCode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_hash_is_keyed_and_follows_the_normalized_code() {
        let key = RecordKey::from_bytes([5; 32], renkei_crypto::keys::KeyVersion::V1);
        let other = RecordKey::from_bytes([6; 32], renkei_crypto::keys::KeyVersion::V1);
        let code = EnrollmentCode::parse("K7QM-3XWA-9PZD").unwrap();
        let typed = EnrollmentCode::parse("k7qm 3xwa 9pzd").unwrap();
        assert_eq!(code.hash(&key), typed.hash(&key));
        assert_ne!(code.hash(&key), code.hash(&other));
        assert!(!code.hash(&key).as_str().to_uppercase().contains("K7QM"));
    }
}
