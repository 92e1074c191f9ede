//! What the agent keeps about web enrollment, beside the records: the one-time
//! enrollment codes it issued (only their keyed hashes, `ec1_…`), the failed attempts
//! per resident (locked after too many) and every request it answered (per-app
//! throttling, and the same answer again when a request is asked twice).
//!
//! Times are Unix seconds passed in by the caller (`now`), since they decide: a code
//! expires, an app's hour of failures passes. Answered requests and long-expired
//! codes are pruned after [`KEEP_SECS`].

use renkei_crypto::token::{EnrollmentCodeHash, SubjectToken};
use sqlx::Row;

use super::Outbox;
use crate::error::Result;

/// The enrollment tables (created with the outbox; new in the enrollment-code release).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enrollment_codes (
    code_hash TEXT PRIMARY KEY,
    subject_token TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    used_by TEXT
);
CREATE INDEX IF NOT EXISTS enrollment_codes_subject ON enrollment_codes (subject_token);
CREATE TABLE IF NOT EXISTS enrollment_guard (
    subject_token TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    locked_at INTEGER,
    last_app TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollment_attempts (
    request_id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    digest TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('linked', 'refused')),
    why TEXT NOT NULL,
    subject_token TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS enrollment_attempts_app ON enrollment_attempts (requester, at);
CREATE INDEX IF NOT EXISTS enrollment_attempts_at ON enrollment_attempts (at);
CREATE INDEX IF NOT EXISTS enrollment_attempts_digest ON enrollment_attempts (digest);
";

/// How long answered requests and expired codes are kept (30 days).
pub const KEEP_SECS: i64 = 30 * 86_400;

/// The refusal reason of a throttled app: not counted again towards its own limit.
pub const APP_THROTTLED: &str = "app-throttled";

/// A stored enrollment code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCode {
    /// The resident it was issued for (the token the outbox knew them by then).
    pub subject: String,
    /// When it stops being accepted (Unix seconds).
    pub expires_at: i64,
    /// The enrollment request that used it, if any.
    pub used_by: Option<String>,
}

/// What [`Outbox::put_enrollment_code`] replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Issued {
    /// Earlier unused, unexpired codes of the resident, no longer valid.
    pub replaced: u64,
    /// Whether the resident's web enrollment was locked (it is not any more).
    pub unlocked: bool,
}

/// A request the agent answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The hub's request id.
    pub request_id: String,
    /// The requesting app.
    pub requester: String,
    /// A digest of the request as asked (requester and sealed bytes).
    pub digest: String,
    /// The subject linked, or the resident concerned by a refusal when known.
    pub subject: Option<SubjectToken>,
    /// `None` when linked; the internal reason of a refusal otherwise.
    pub refusal: Option<&'static str>,
    /// The code the link used up.
    pub code: Option<EnrollmentCodeHash>,
    /// How the app's consent statements name this user
    /// (`renkei_crypto::consent_statement::user_resident`), when the app sent its reference.
    pub user: Option<String>,
}

/// The stored answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAttempt {
    /// The digest of the request as first asked.
    pub digest: String,
    /// `linked` or `refused`.
    pub outcome: String,
    /// The reason of a refusal (`linked` for a link).
    pub why: String,
    /// The subject linked (or concerned).
    pub subject: Option<String>,
}

/// What [`Outbox::record_attempt`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The refusal finally recorded (a link whose code was used meanwhile is refused).
    pub refusal: Option<&'static str>,
    /// Set when this attempt locked the resident's web enrollment.
    pub locked: Option<SubjectToken>,
    /// The resident's failed attempts now.
    pub failures: u32,
}

/// A resident whose web enrollment is locked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// Their token (`lgwan-agent token` finds it from the card).
    pub subject: String,
    /// Failed attempts.
    pub failures: u32,
    /// Since when (Unix seconds).
    pub since: i64,
    /// The app of the last failed attempt.
    pub last_app: String,
}

/// Web enrollment in numbers, for `lgwan-agent status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrollmentStatus {
    /// Codes issued, unused and unexpired.
    pub codes_active: u64,
    /// Codes used to link.
    pub codes_used: u64,
    /// Links in the last 30 days.
    pub linked: u64,
    /// Refusals in the last 30 days, by reason.
    pub refused: Vec<(String, u64)>,
    /// Residents locked for web enrollment.
    pub locked: Vec<Locked>,
    /// Apps over their hourly limit of failures now.
    pub throttled_apps: Vec<String>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Outbox {
    /// Stores a new code's hash for `subject`, valid until `expires_at`. The resident's
    /// earlier unused codes (under any of `versions`, their tokens under every token key)
    /// stop being valid, and their web enrollment is unlocked.
    pub async fn put_enrollment_code(
        &self,
        hash: &EnrollmentCodeHash,
        subject: &SubjectToken,
        versions: &[SubjectToken],
        now: i64,
        expires_at: i64,
    ) -> Result<Issued> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let mut issued = Issued::default();
        for t in versions {
            let dropped: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM enrollment_codes WHERE subject_token = ? AND used_at IS NULL \
                 RETURNING expires_at",
            )
            .bind(t.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            issued.replaced += dropped.iter().filter(|&&e| e > now).count() as u64;
            let locks: Vec<Option<i64>> = sqlx::query_scalar(
                "DELETE FROM enrollment_guard WHERE subject_token = ? RETURNING locked_at",
            )
            .bind(t.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
            issued.unlocked |= locks.iter().any(Option::is_some);
        }
        sqlx::query(
            "INSERT INTO enrollment_codes (code_hash, subject_token, issued_at, expires_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(hash.as_str())
        .bind(subject.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(issued)
    }

    /// Whether a code with this hash was ever stored (a fresh code must not collide).
    pub async fn has_enrollment_code(&self, hash: &EnrollmentCodeHash) -> Result<bool> {
        Ok(self.enrollment_code(hash).await?.is_some())
    }

    /// The code stored under `hash`, if any.
    pub async fn enrollment_code(&self, hash: &EnrollmentCodeHash) -> Result<Option<StoredCode>> {
        let row = sqlx::query(
            "SELECT subject_token, expires_at, used_by FROM enrollment_codes WHERE code_hash = ?",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        row.map(|r| {
            Ok(StoredCode {
                subject: r.try_get("subject_token").map_err(|e| self.db(e))?,
                expires_at: r.try_get("expires_at").map_err(|e| self.db(e))?,
                used_by: r.try_get("used_by").map_err(|e| self.db(e))?,
            })
        })
        .transpose()
    }

    /// Whether web enrollment of `subject` is locked.
    pub async fn enrollment_locked(&self, subject: &SubjectToken) -> Result<bool> {
        let locked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT locked_at FROM enrollment_guard WHERE subject_token = ?")
                .bind(subject.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
        Ok(matches!(locked, Some(Some(_))))
    }

    /// Failed requests of `app` since `since` (Unix seconds), not counting those
    /// refused unread because the app was over its limit.
    pub async fn app_failures_since(&self, app: &str, since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM enrollment_attempts WHERE requester = ? AND at >= ? \
             AND outcome = 'refused' AND why <> ?",
        )
        .bind(app)
        .bind(since)
        .bind(APP_THROTTLED)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        Ok(count(n))
    }

    /// The answer stored for `request_id`, if the agent answered it before.
    pub async fn enrollment_attempt(&self, request_id: &str) -> Result<Option<StoredAttempt>> {
        let row = sqlx::query(
            "SELECT digest, outcome, why, subject_token FROM enrollment_attempts \
             WHERE request_id = ?",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        row.map(|r| {
            Ok(StoredAttempt {
                digest: r.try_get("digest").map_err(|e| self.db(e))?,
                outcome: r.try_get("outcome").map_err(|e| self.db(e))?,
                why: r.try_get("why").map_err(|e| self.db(e))?,
                subject: r.try_get("subject_token").map_err(|e| self.db(e))?,
            })
        })
        .transpose()
    }

    /// Whether a request with this digest (the same sealed claim) was answered before,
    /// under any id.
    pub async fn enrollment_digest_seen(&self, digest: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM enrollment_attempts WHERE digest = ? LIMIT 1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }

    /// Records the answer to one request in one transaction: a link uses up its code
    /// (refused instead when another request used it first) and clears the resident's
    /// failures; a refusal concerning a known resident counts towards their lock, which
    /// closes at `max_failures`. Prunes what is older than [`KEEP_SECS`].
    pub async fn record_attempt(
        &self,
        attempt: &Attempt,
        max_failures: u32,
        now: i64,
    ) -> Result<Recorded> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        let mut refusal = attempt.refusal;
        if refusal.is_none() {
            if let Some(code) = &attempt.code {
                let done = sqlx::query(
                    "UPDATE enrollment_codes SET used_at = ?, used_by = ? \
                     WHERE code_hash = ? AND used_at IS NULL",
                )
                .bind(now)
                .bind(&attempt.request_id)
                .bind(code.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
                if done.rows_affected() == 0 {
                    refusal = Some("used-code");
                }
            }
        }
        let subject = attempt.subject.as_ref().map(SubjectToken::as_str);
        sqlx::query(
            "INSERT INTO enrollment_attempts \
             (request_id, requester, digest, outcome, why, subject_token, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&attempt.request_id)
        .bind(&attempt.requester)
        .bind(&attempt.digest)
        .bind(if refusal.is_some() {
            "refused"
        } else {
            "linked"
        })
        .bind(refusal.unwrap_or("linked"))
        .bind(subject)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db(e))?;
        let mut recorded = Recorded {
            refusal,
            ..Recorded::default()
        };
        match (subject, refusal) {
            (Some(s), None) => {
                sqlx::query("DELETE FROM enrollment_guard WHERE subject_token = ?")
                    .bind(s)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
                if let Some(user) = &attempt.user {
                    super::consents::link_app_user(&mut tx, &attempt.requester, user, s, now)
                        .await
                        .map_err(|e| self.db(e))?;
                }
            }
            (Some(s), Some(_)) => {
                let row = sqlx::query(
                    "INSERT INTO enrollment_guard (subject_token, failures, last_app, updated_at) \
                     VALUES (?, 1, ?, ?) ON CONFLICT (subject_token) DO UPDATE \
                     SET failures = enrollment_guard.failures + 1, last_app = excluded.last_app, \
                         updated_at = excluded.updated_at \
                     RETURNING failures, locked_at",
                )
                .bind(s)
                .bind(&attempt.requester)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.db(e))?;
                let failures: i64 = row.try_get("failures").map_err(|e| self.db(e))?;
                let locked_at: Option<i64> = row.try_get("locked_at").map_err(|e| self.db(e))?;
                recorded.failures = u32::try_from(failures).unwrap_or(u32::MAX);
                if locked_at.is_none() && recorded.failures >= max_failures {
                    sqlx::query(
                        "UPDATE enrollment_guard SET locked_at = ? WHERE subject_token = ?",
                    )
                    .bind(now)
                    .bind(s)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db(e))?;
                    recorded.locked = attempt.subject.clone();
                }
            }
            (None, _) => {}
        }
        let old = now.saturating_sub(KEEP_SECS);
        sqlx::query("DELETE FROM enrollment_attempts WHERE at < ?")
            .bind(old)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        sqlx::query("DELETE FROM enrollment_codes WHERE expires_at < ?")
            .bind(old)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        tx.commit().await.map_err(|e| self.db(e))?;
        Ok(recorded)
    }

    /// Web enrollment in numbers at `now`; an app is throttled at `app_limit` failures
    /// within the last hour.
    pub async fn enrollment_status(&self, now: i64, app_limit: u32) -> Result<EnrollmentStatus> {
        let codes_active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM enrollment_codes WHERE used_at IS NULL AND expires_at > ?",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        let codes_used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM enrollment_codes WHERE used_at IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| self.db(e))?;
        let since = now.saturating_sub(KEEP_SECS);
        let rows = sqlx::query(
            "SELECT outcome, why, COUNT(*) AS n FROM enrollment_attempts WHERE at >= ? \
             GROUP BY outcome, why ORDER BY why",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        let mut status = EnrollmentStatus {
            codes_active: count(codes_active),
            codes_used: count(codes_used),
            ..EnrollmentStatus::default()
        };
        for r in rows {
            let outcome: String = r.try_get("outcome").map_err(|e| self.db(e))?;
            let n = count(r.try_get("n").map_err(|e| self.db(e))?);
            if outcome == "linked" {
                status.linked += n;
            } else {
                status
                    .refused
                    .push((r.try_get("why").map_err(|e| self.db(e))?, n));
            }
        }
        let rows = sqlx::query(
            "SELECT subject_token, failures, locked_at, last_app FROM enrollment_guard \
             WHERE locked_at IS NOT NULL ORDER BY locked_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        for r in rows {
            status.locked.push(Locked {
                subject: r.try_get("subject_token").map_err(|e| self.db(e))?,
                failures: u32::try_from(r.try_get::<i64, _>("failures").map_err(|e| self.db(e))?)
                    .unwrap_or(u32::MAX),
                since: r.try_get("locked_at").map_err(|e| self.db(e))?,
                last_app: r.try_get("last_app").map_err(|e| self.db(e))?,
            });
        }
        let rows = sqlx::query(
            "SELECT requester FROM enrollment_attempts WHERE at >= ? AND outcome = 'refused' \
             AND why <> ? GROUP BY requester HAVING COUNT(*) >= ? ORDER BY requester",
        )
        .bind(now.saturating_sub(3600))
        .bind(APP_THROTTLED)
        .bind(i64::from(app_limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        for r in rows {
            status
                .throttled_apps
                .push(r.try_get("requester").map_err(|e| self.db(e))?);
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use renkei_crypto::keys::{KeyVersion, RecordKey};
    use renkei_crypto::token::enrollment_code_hash;

    fn token(c: char) -> SubjectToken {
        SubjectToken::parse(&format!("st1_{}", c.to_string().repeat(32))).unwrap()
    }

    fn attempt(id: &str, subject: Option<char>, refusal: Option<&'static str>) -> Attempt {
        Attempt {
            request_id: id.into(),
            requester: "phr:asmile".into(),
            digest: format!("d-{id}"),
            subject: subject.map(token),
            refusal,
            code: None,
            user: None,
        }
    }

    #[tokio::test]
    async fn a_code_is_used_once_even_when_two_links_race() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite")).await.unwrap();
        let key = RecordKey::from_bytes([1; 32], KeyVersion::V1);
        let hash = enrollment_code_hash(&key, "K7QM3XWA9PZD");
        let issued = outbox
            .put_enrollment_code(&hash, &token('a'), &[token('a')], 100, 1000)
            .await
            .unwrap();
        assert_eq!(issued, Issued::default());
        // Both requests found the code unused; the second to record is refused.
        let first = Attempt {
            code: Some(hash.clone()),
            ..attempt("e1", Some('a'), None)
        };
        let second = Attempt {
            code: Some(hash.clone()),
            ..attempt("e2", Some('a'), None)
        };
        assert_eq!(
            outbox.record_attempt(&first, 5, 200).await.unwrap().refusal,
            None
        );
        let r = outbox.record_attempt(&second, 5, 201).await.unwrap();
        assert_eq!((r.refusal, r.failures), (Some("used-code"), 1));
        let stored = outbox.enrollment_code(&hash).await.unwrap().unwrap();
        assert_eq!(stored.used_by.as_deref(), Some("e1"));
        let e2 = outbox.enrollment_attempt("e2").await.unwrap().unwrap();
        assert_eq!(
            (e2.outcome.as_str(), e2.why.as_str()),
            ("refused", "used-code")
        );
        outbox.close().await;
    }

    #[tokio::test]
    async fn failures_lock_at_the_limit_a_new_code_unlocks_and_old_rows_go() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.sqlite")).await.unwrap();
        let now = 10 * KEEP_SECS;
        let r = outbox
            .record_attempt(&attempt("e1", Some('a'), Some("wrong-code")), 2, now)
            .await
            .unwrap();
        assert_eq!((r.failures, r.locked.is_some()), (1, false));
        // Unknown identities count only against the app.
        outbox
            .record_attempt(&attempt("e2", None, Some("unknown-identity")), 2, now)
            .await
            .unwrap();
        let r = outbox
            .record_attempt(&attempt("e3", Some('a'), Some("no-code")), 2, now)
            .await
            .unwrap();
        assert_eq!(r.locked, Some(token('a')));
        assert!(outbox.enrollment_locked(&token('a')).await.unwrap());
        assert_eq!(
            outbox.app_failures_since("phr:asmile", now).await.unwrap(),
            3
        );
        assert_eq!(
            outbox.app_failures_since("phr:other", now).await.unwrap(),
            0
        );
        let status = outbox.enrollment_status(now, 3).await.unwrap();
        assert_eq!(status.locked.len(), 1);
        assert_eq!(status.throttled_apps, vec!["phr:asmile".to_owned()]);

        let key = RecordKey::from_bytes([1; 32], KeyVersion::V1);
        let hash = enrollment_code_hash(&key, "0000AAAA1111");
        let issued = outbox
            .put_enrollment_code(&hash, &token('a'), &[token('a')], now, now + 10)
            .await
            .unwrap();
        assert!(issued.unlocked);
        assert!(!outbox.enrollment_locked(&token('a')).await.unwrap());

        // Thirty days on, the answered requests and the long-expired code are pruned.
        let later = now + 10 + KEEP_SECS + 1;
        outbox
            .record_attempt(&attempt("e4", None, Some("unreadable")), 2, later)
            .await
            .unwrap();
        assert!(outbox.enrollment_attempt("e1").await.unwrap().is_none());
        assert!(outbox.enrollment_attempt("e4").await.unwrap().is_some());
        assert!(!outbox.has_enrollment_code(&hash).await.unwrap());
        outbox.close().await;
    }
}
