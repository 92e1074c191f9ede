//! Web enrollment, source side (DESIGN.md step 6): open what a PHR app sealed to the
//! agent's enrollment key (the resident's identifiers and the one-time enrollment code
//! staff issued them, [`code`]), tokenize, and link only a resident the outbox knows,
//! with the right 枝番 when both sides have one and, by default, a valid unused code.
//!
//! Guessing gets nowhere and learns nothing:
//!
//! - every refusal is the same answer with the same reason ([`REFUSED`]): unknown
//!   identifiers, wrong or missing code, used or expired code, wrong 枝番, an identity
//!   two people share (twins on a family card, never linked online), a locked resident,
//!   a throttled app, an unreadable request. Why is kept inside the agent for staff
//!   (`lgwan-agent status`);
//! - a resident's web enrollment is locked after `[enrollment] max_failures` failed
//!   attempts (logged for staff; a new code unlocks it);
//! - an app with `app_failures_per_hour` failures within the hour has its requests
//!   refused unread until the hour has passed.
//!
//! A request asked again (the answer did not reach the hub) gets the same answer; it
//! counts once. During a token key rotation the request's token pairs are spooled for
//! the hub, and a resident exported under an older token key version is still found.

pub mod code;

use chrono::{DateTime, Utc};
use renkei_client::HubClient;
use renkei_client::api::{Enrollment, EnrollmentResult};
use renkei_client::enroll::open_signed_claim;
use renkei_crypto::consent_statement::user_resident;
use renkei_crypto::identity::Identity;
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::token::{EnrollmentCodeHash, SubjectToken};
use sha2::{Digest, Sha256};

use self::code::EnrollmentCode;
use crate::agent::Agent;
use crate::error::Result;
use crate::outbox::enrollment::{APP_THROTTLED, Attempt};
use crate::outbox::{KnownSubject, Outbox};

/// The one reason given to the app for every refusal.
pub const REFUSED: &str = "the enrollment was not accepted: check the identifiers and the \
                           enrollment code on the municipality's notice, or ask the municipality";

/// Enrollment requests read per call to the hub.
const PAGE: u32 = 100;

/// Why a request was refused: kept inside the agent (status, log), never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The app is over its hourly limit of failures: not opened.
    AppThrottled,
    /// The request does not open for this agent and app, or is malformed.
    Unreadable,
    /// No exported subject has these identifiers.
    Unknown,
    /// The resident's web enrollment is locked.
    Locked,
    /// Two people share these identifiers.
    SharedIdentity,
    /// The 枝番 differs from the one on record.
    WrongBranch,
    /// A code is required and none came.
    NoCode,
    /// No code of this resident matches.
    WrongCode,
    /// The code was used by another request.
    UsedCode,
    /// The code expired.
    ExpiredCode,
    /// The claim opened but is not signed by the requesting app's certificate (the hub,
    /// or whoever sealed it, is not that app): an alarm, kept for `lgwan-agent status`.
    Unsigned,
    /// The signed claim carries no time, or one older than [`CLAIM_MAX_AGE_SECS`] or in
    /// the future: not a request the app made now (a replay).
    StaleClaim,
}

/// The oldest a signed claim may be when the agent answers it: twice the hub's default
/// enrollment lifetime (a day), so an agent that was offline for a day still answers.
pub const CLAIM_MAX_AGE_SECS: i64 = 2 * 86_400;

impl Refusal {
    /// The name staff see.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AppThrottled => APP_THROTTLED,
            Refusal::Unreadable => "unreadable",
            Refusal::Unknown => "unknown-identity",
            Refusal::Locked => "locked",
            Refusal::SharedIdentity => "shared-identity",
            Refusal::WrongBranch => "wrong-branch",
            Refusal::NoCode => "no-code",
            Refusal::WrongCode => "wrong-code",
            Refusal::UsedCode => "used-code",
            Refusal::ExpiredCode => "expired-code",
            Refusal::Unsigned => "unsigned-claim",
            Refusal::StaleClaim => "stale-claim",
        }
    }
}

/// The answer to one request, and what staff should hear of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answered {
    /// What goes to the hub: a link, or [`REFUSED`].
    pub result: EnrollmentResult,
    /// Why it was refused (`None` when linked), by [`Refusal::as_str`].
    pub refusal: Option<&'static str>,
    /// The resident this request locked, if it did.
    pub locked: Option<SubjectToken>,
}

impl Answered {
    fn refused(refusal: &'static str) -> Answered {
        Answered {
            result: refused(),
            refusal: Some(refusal),
            locked: None,
        }
    }
}

/// The refusal every app gets.
pub fn refused() -> EnrollmentResult {
    EnrollmentResult::Rejected {
        reason: REFUSED.to_owned(),
    }
}

/// A resident as the agent finds them from typed or sealed identifiers.
#[derive(Debug)]
pub(crate) struct Resident {
    /// The token the outbox knows them by (oldest token key version first), else the
    /// token under the active version.
    pub(crate) token: SubjectToken,
    /// What the outbox knows of them.
    pub(crate) known: Option<KnownSubject>,
    /// Their token under every token key version held.
    pub(crate) versions: Vec<SubjectToken>,
    /// The normalized 枝番 given.
    pub(crate) branch: Option<String>,
}

/// Finds the resident `identity` names. During a token key rotation their token
/// pairs are spooled for the hub, and the oldest token the outbox knows wins (the hub
/// resolves a newer one to it).
pub(crate) async fn resident(
    agent: &Agent,
    outbox: &Outbox,
    identity: &Identity,
) -> Result<Resident> {
    let (active, branch) = agent.tokenize_identity(identity)?;
    let versions: Vec<SubjectToken> = agent
        .tokenize_all(identity)?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    if agent.is_linking() {
        outbox.put_links(&agent.take_links()).await?;
        for t in &versions {
            if let Some(known) = outbox.knows_subject(t).await? {
                return Ok(Resident {
                    token: t.clone(),
                    known: Some(known),
                    versions,
                    branch,
                });
            }
        }
    }
    let known = outbox.knows_subject(&active).await?;
    Ok(Resident {
        token: active,
        known,
        versions,
        branch,
    })
}

/// What a request names, before anything is recorded.
enum Verdict {
    Link {
        token: SubjectToken,
        code: Option<EnrollmentCodeHash>,
        /// The app's user digest, kept with the link for its consent statements.
        user: Option<String>,
    },
    Refuse {
        why: Refusal,
        /// The known resident concerned (their failures count).
        subject: Option<SubjectToken>,
    },
}

/// The decision for a known resident, given what came with the request.
async fn check_known(
    agent: &Agent,
    outbox: &Outbox,
    r: Resident,
    code: Option<Option<EnrollmentCode>>,
    now: DateTime<Utc>,
) -> Result<Verdict> {
    let refuse = |why: Refusal, token: &SubjectToken| Verdict::Refuse {
        why,
        subject: Some(token.clone()),
    };
    let Some(known) = &r.known else {
        return Ok(Verdict::Refuse {
            why: Refusal::Unknown,
            subject: None,
        });
    };
    if outbox.enrollment_locked(&r.token).await? {
        return Ok(refuse(Refusal::Locked, &r.token));
    }
    if known.conflict {
        return Ok(refuse(Refusal::SharedIdentity, &r.token));
    }
    if let (Some(ours), Some(given)) = (known.branch.as_deref(), r.branch.as_deref()) {
        if ours != given {
            return Ok(refuse(Refusal::WrongBranch, &r.token));
        }
    }
    let hash = match code {
        None if agent.config.enrollment.require_code => {
            return Ok(refuse(Refusal::NoCode, &r.token));
        }
        None => None,
        Some(None) => return Ok(refuse(Refusal::WrongCode, &r.token)),
        Some(Some(code)) => {
            let hash = code.hash(agent.record_id_key());
            let Some(stored) = outbox.enrollment_code(&hash).await? else {
                return Ok(refuse(Refusal::WrongCode, &r.token));
            };
            if !r.versions.iter().any(|t| t.as_str() == stored.subject) {
                return Ok(refuse(Refusal::WrongCode, &r.token));
            }
            if stored.used_by.is_some() {
                return Ok(refuse(Refusal::UsedCode, &r.token));
            }
            if now.timestamp() >= stored.expires_at {
                return Ok(refuse(Refusal::ExpiredCode, &r.token));
            }
            Some(hash)
        }
    };
    Ok(Verdict::Link {
        token: r.token,
        code: hash,
        user: None,
    })
}

/// Opens, tokenizes and checks one request (nothing recorded yet).
async fn evaluate(
    agent: &Agent,
    outbox: &Outbox,
    request: &Enrollment,
    now: DateTime<Utc>,
) -> Result<Verdict> {
    let unreadable = Verdict::Refuse {
        why: Refusal::Unreadable,
        subject: None,
    };
    let settings = agent.config.enrollment;
    let hour_ago = now.timestamp().saturating_sub(3600);
    let failures = outbox
        .app_failures_since(&request.requester, hour_ago)
        .await?;
    if failures >= u64::from(settings.app_failures_per_hour) {
        return Ok(Verdict::Refuse {
            why: Refusal::AppThrottled,
            subject: None,
        });
    }
    let Some(sealed) = request
        .sealed
        .as_deref()
        .and_then(|s| data_encoding::BASE64.decode(s.as_bytes()).ok())
    else {
        return Ok(unreadable);
    };
    let Ok(requester) = request.requester.parse::<ParticipantId>() else {
        return Ok(unreadable);
    };
    let Ok(signed) = open_signed_claim(
        agent.enrollment_key(),
        &agent.config.source,
        &requester,
        &sealed,
    ) else {
        return Ok(unreadable);
    };
    // Only the app's own word links one of its users: the claim must be signed by the
    // requester's certificate, checked against the CA this agent pinned itself.
    let checked = match &agent.config.hub {
        Some(hub) => signed.check_signer(&agent.config.source, &requester, &hub.ca, now),
        None => Err(renkei_client::Error::Invalid {
            what: "enrollment claim".into(),
            reason: "no `[hub] ca` is configured to check its signature".into(),
        }),
    };
    if let Err(e) = checked {
        // Hub-supplied text (the request id, a claimed signer) is escaped for the log.
        let why = format!("enrollment claim `{}` refused: {e}", request.id)
            .escape_debug()
            .to_string();
        eprintln!("lgwan-agent: {why}");
        outbox.note_refusals(&[why]).await?;
        return Ok(Verdict::Refuse {
            why: Refusal::Unsigned,
            subject: None,
        });
    }
    let Ok(claim) = signed.claim() else {
        return Ok(unreadable);
    };
    let fresh = claim.issued_at.is_some_and(|at| {
        let age = (now - at).num_seconds();
        (-300..=CLAIM_MAX_AGE_SECS).contains(&age)
    });
    if !fresh {
        return Ok(Verdict::Refuse {
            why: Refusal::StaleClaim,
            subject: None,
        });
    }
    if claim.identity.canonical().is_err() || claim.identity.branch().is_err() {
        return Ok(unreadable);
    }
    let r = resident(agent, outbox, &claim.identity).await?;
    // A code that does not parse is a wrong code, not an unreadable request.
    let code = claim.enrollment_code.as_deref().map(EnrollmentCode::parse);
    let user = claim
        .user_ref
        .as_deref()
        .map(|u| user_resident(&request.requester, u));
    Ok(match check_known(agent, outbox, r, code, now).await? {
        Verdict::Link { token, code, .. } => Verdict::Link { token, code, user },
        refused => refused,
    })
}

/// A digest of the request as asked: the same id asked again must be the same request.
fn digest(request: &Enrollment) -> String {
    let mut h = Sha256::new();
    h.update(request.requester.as_bytes());
    h.update([0]);
    h.update(request.sealed.as_deref().unwrap_or("").as_bytes());
    data_encoding::HEXLOWER.encode(&h.finalize())
}

/// The answer to one enrollment request at `now`, recorded in the outbox (no network).
/// The same request asked again gets the answer recorded the first time; another
/// request under a known id is refused.
pub async fn answer(
    agent: &Agent,
    outbox: &Outbox,
    request: &Enrollment,
    now: DateTime<Utc>,
) -> Result<Answered> {
    let digest = digest(request);
    if let Some(prev) = outbox.enrollment_attempt(&request.id).await? {
        if prev.digest != digest {
            return Ok(Answered::refused("replayed-id"));
        }
        let token = prev
            .subject
            .as_deref()
            .and_then(|t| SubjectToken::parse(t).ok());
        return Ok(match (prev.outcome.as_str(), token) {
            ("linked", Some(t)) => Answered {
                result: EnrollmentResult::Linked {
                    subject_token: t.as_str().to_owned(),
                },
                refusal: None,
                locked: None,
            },
            _ => Answered::refused("asked-again"),
        });
    }
    // The same sealed claim under a new id is the hub replaying it (an app's retry seals
    // afresh): not judged again, so replays cannot lock the resident out of enrollment.
    if outbox.enrollment_digest_seen(&digest).await? {
        return Ok(Answered::refused("replayed-claim"));
    }
    let (subject, refusal, code, user) = match evaluate(agent, outbox, request, now).await? {
        Verdict::Link { token, code, user } => (Some(token), None, code, user),
        Verdict::Refuse { why, subject } => (subject, Some(why.as_str()), None, None),
    };
    let attempt = Attempt {
        request_id: request.id.clone(),
        requester: request.requester.clone(),
        digest,
        subject,
        refusal,
        code,
        user,
    };
    let recorded = outbox
        .record_attempt(
            &attempt,
            agent.config.enrollment.max_failures,
            now.timestamp(),
        )
        .await?;
    Ok(match (recorded.refusal, attempt.subject) {
        (None, Some(token)) => Answered {
            result: EnrollmentResult::Linked {
                subject_token: token.as_str().to_owned(),
            },
            refusal: None,
            locked: None,
        },
        (why, _) => Answered {
            result: refused(),
            refusal: Some(why.unwrap_or("unreadable")),
            locked: recorded.locked,
        },
    })
}

/// What one round of answering did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Answers the hub took.
    pub answered: usize,
    /// Of which links.
    pub linked: usize,
    /// Residents locked for web enrollment in this round.
    pub locked: Vec<SubjectToken>,
    /// Apps whose requests were refused unread (over their hourly limit).
    pub throttled: Vec<String>,
}

/// Answers the pending enrollment requests for this source at `now`. A request the
/// hub will not take an answer for any more (expired, answered by another agent
/// instance) is skipped and noted as the last error.
pub async fn answer_enrollments_once(
    agent: &Agent,
    outbox: &Outbox,
    client: &HubClient,
    now: DateTime<Utc>,
) -> Result<Round> {
    let mut round = Round::default();
    // A hub that keeps pages full (fresh ids, one answer taken each) cannot keep the
    // round, and the agent's other work, going: the next round goes on.
    for _ in 0..PAGES_PER_ROUND {
        let requests = client.source_enrollments(PAGE).await?;
        if requests.len() > PAGE as usize {
            return Err(crate::Error::Refused(format!(
                "the hub's page of enrollment requests holds {}, more than the {PAGE} asked for",
                requests.len()
            )));
        }
        let mut progressed = false;
        for request in &requests {
            // The hub's ids are UUIDs; anything else is not kept in the outbox.
            if !is_uuid(&request.id) {
                outbox
                    .set_last_error(&format!(
                        "enrollment `{}`: not an enrollment id",
                        renkei_client::error::shorten(&request.id)
                    ))
                    .await?;
                continue;
            }
            let answered = answer(agent, outbox, request, now).await?;
            if let Some(t) = answered.locked {
                round.locked.push(t);
            }
            if answered.refusal == Some(APP_THROTTLED)
                && !round.throttled.contains(&request.requester)
            {
                round.throttled.push(request.requester.clone());
            }
            match client
                .enrollment_result(&request.id, &answered.result)
                .await
            {
                Ok(_) => {
                    round.answered += 1;
                    round.linked += usize::from(answered.refusal.is_none());
                    progressed = true;
                }
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => {
                    outbox
                        .set_last_error(&format!("enrollment `{}`: {e}", request.id))
                        .await?;
                }
            }
        }
        let full = u32::try_from(requests.len()).is_ok_and(|n| n >= PAGE);
        if !full || !progressed {
            return Ok(round);
        }
    }
    Ok(round)
}

/// Pages of enrollment requests answered in one round at most.
const PAGES_PER_ROUND: usize = 10;

/// Whether `id` has the form of the hub's enrollment ids (a hyphenated UUID).
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hubs_id_form_is_kept() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        for bad in [
            "",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165-70867728950e0",
            "0f8fad5bxd9cb-469f-a165-70867728950e",
            "../../0f8fad5b-d9cb-469f-a165-7086772",
            "0f8fad5b-d9cb-469f-a165-70867728950\u{1b}",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn the_one_refusal_names_nothing() {
        let EnrollmentResult::Rejected { reason } = refused() else {
            panic!("linked")
        };
        assert_eq!(reason, REFUSED);
        assert!(!reason.contains("st1_") && !reason.chars().any(|c| c.is_ascii_digit()));
        for why in [
            Refusal::AppThrottled,
            Refusal::Unreadable,
            Refusal::Unknown,
            Refusal::Locked,
            Refusal::SharedIdentity,
            Refusal::WrongBranch,
            Refusal::NoCode,
            Refusal::WrongCode,
            Refusal::UsedCode,
            Refusal::ExpiredCode,
        ] {
            assert_eq!(Answered::refused(why.as_str()).result, refused());
        }
    }
}
