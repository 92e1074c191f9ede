//! Web enrollment, source side (DESIGN.md step 6): open the identifiers a PHR app
//! sealed to the agent's enrollment key, tokenize them, and link only when the
//! outbox knows that subject (and the 枝番 matches when both sides have one).
//!
//! During a token key rotation the request's token pairs are spooled for the hub, and
//! a resident exported under an older token key version is still found.
//!
//! A refusal never says anything about a person: the same reason is given for "no
//! such subject" and "wrong 枝番", and identities shared by two people (twins on a
//! family card) are never linked online.

use renkei_client::HubClient;
use renkei_client::api::{Enrollment, EnrollmentResult};
use renkei_client::enroll::open_identifiers;
use renkei_crypto::participant::ParticipantId;
use renkei_crypto::token::SubjectToken;

use crate::agent::Agent;
use crate::error::Result;
use crate::outbox::{KnownSubject, Outbox};

/// The reason given when no exported subject matches.
pub const NO_MATCH: &str = "no checkup record matches these identifiers";
/// The reason given when the identifiers are shared by more than one person.
pub const NOT_ONLINE: &str =
    "these identifiers cannot be linked online; please enroll at the municipal counter";
/// The reason given when the request cannot be opened or its identifiers are malformed.
pub const UNREADABLE: &str = "the identifiers could not be read; check them and try again";

/// Enrollment requests read per call to the hub.
const PAGE: u32 = 100;

/// The answer for a tokenized request, given what the outbox knows of the token.
pub fn decide(
    token: &SubjectToken,
    given_branch: Option<&str>,
    known: Option<&KnownSubject>,
) -> EnrollmentResult {
    let rejected = |reason: &str| EnrollmentResult::Rejected {
        reason: reason.to_owned(),
    };
    let Some(known) = known else {
        return rejected(NO_MATCH);
    };
    if known.conflict {
        return rejected(NOT_ONLINE);
    }
    if let (Some(ours), Some(theirs)) = (known.branch.as_deref(), given_branch) {
        if ours != theirs {
            return rejected(NO_MATCH);
        }
    }
    EnrollmentResult::Linked {
        subject_token: token.as_str().to_owned(),
    }
}

/// The answer to one enrollment request (no network: opens, tokenizes, looks up).
pub async fn answer(
    agent: &Agent,
    outbox: &Outbox,
    request: &Enrollment,
) -> Result<EnrollmentResult> {
    let unreadable = || EnrollmentResult::Rejected {
        reason: UNREADABLE.to_owned(),
    };
    let Some(sealed) = request
        .sealed
        .as_deref()
        .and_then(|s| data_encoding::BASE64.decode(s.as_bytes()).ok())
    else {
        return Ok(unreadable());
    };
    let Ok(requester) = request.requester.parse::<ParticipantId>() else {
        return Ok(unreadable());
    };
    let Ok(identity) = open_identifiers(
        agent.enrollment_key(),
        &agent.config.source,
        &requester,
        &sealed,
    ) else {
        return Ok(unreadable());
    };
    let Ok((token, branch)) = agent.tokenize_identity(&identity) else {
        return Ok(unreadable());
    };
    if !agent.is_linking() {
        let known = outbox.knows_subject(&token).await?;
        return Ok(decide(&token, branch.as_deref(), known.as_ref()));
    }
    // Token key rotation: spool this resident's token pairs, and answer with the
    // oldest token the outbox knows them by (the hub resolves a newer one to it).
    outbox.put_links(&agent.take_links()).await?;
    let Ok(versions) = agent.tokenize_all(&identity) else {
        return Ok(unreadable());
    };
    for (_, t) in versions {
        if let Some(known) = outbox.knows_subject(&t).await? {
            return Ok(decide(&t, branch.as_deref(), Some(&known)));
        }
    }
    Ok(decide(&token, branch.as_deref(), None))
}

/// Answers the pending enrollment requests for this source; returns how many were
/// answered. A request the hub will not take an answer for any more (expired,
/// answered by another agent instance) is skipped and noted as the last error.
pub async fn answer_enrollments_once(
    agent: &Agent,
    outbox: &Outbox,
    client: &HubClient,
) -> Result<usize> {
    let mut answered = 0;
    loop {
        let requests = client.source_enrollments(PAGE).await?;
        let mut progressed = false;
        for request in &requests {
            let result = answer(agent, outbox, request).await?;
            match client.enrollment_result(&request.id, &result).await {
                Ok(_) => {
                    answered += 1;
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
            return Ok(answered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SubjectToken {
        SubjectToken::parse(&format!("st1_{}", "a".repeat(32))).unwrap()
    }

    fn known(branch: Option<&str>, conflict: bool) -> KnownSubject {
        KnownSubject {
            branch: branch.map(str::to_owned),
            conflict,
        }
    }

    fn reason(r: EnrollmentResult) -> String {
        match r {
            EnrollmentResult::Rejected { reason } => reason,
            EnrollmentResult::Linked { .. } => panic!("linked"),
        }
    }

    #[test]
    fn links_a_known_subject_with_a_matching_or_absent_branch() {
        let linked = EnrollmentResult::Linked {
            subject_token: token().as_str().into(),
        };
        let k = known(Some("01"), false);
        assert_eq!(decide(&token(), Some("01"), Some(&k)), linked);
        assert_eq!(decide(&token(), None, Some(&k)), linked);
        assert_eq!(
            decide(&token(), Some("02"), Some(&known(None, false))),
            linked
        );
    }

    #[test]
    fn refuses_unknown_wrong_branch_and_twins_without_saying_who() {
        assert_eq!(reason(decide(&token(), None, None)), NO_MATCH);
        let k = known(Some("01"), false);
        assert_eq!(reason(decide(&token(), Some("02"), Some(&k))), NO_MATCH);
        let twins = known(None, true);
        assert_eq!(
            reason(decide(&token(), Some("01"), Some(&twins))),
            NOT_ONLINE
        );
        for r in [NO_MATCH, NOT_ONLINE, UNREADABLE] {
            assert!(!r.contains("st1_") && !r.chars().any(|c| c.is_ascii_digit()));
        }
    }
}
