//! Retry policy of the hub transport: bounded attempts, exponential backoff with
//! jitter, and the hub's `Retry-After` honoured (within a ceiling).

use std::time::Duration;

use rand::Rng;

use crate::error::Error;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry, before jitter.
    pub base_delay: Duration,
    /// Largest delay between two attempts, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The exponential ceiling for retry number `retry` (0 = first retry):
    /// `base * 2^retry`, capped at `max_delay`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay before retry number `retry`, given `unit` drawn uniformly from
    /// `[0, 1)`: "equal jitter", between half the ceiling and the ceiling. A
    /// `Retry-After` from the hub is a floor (capped at `max_delay`).
    pub fn delay_with(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = ceiling / 2 + (ceiling / 2).mul_f64(unit);
        match retry_after {
            Some(after) => jittered.max(after.min(self.max_delay)),
            None => jittered,
        }
    }

    /// The delay before retry number `retry` with fresh randomness.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let unit: f64 = rand::thread_rng().r#gen();
        self.delay_with(retry, retry_after, unit)
    }

    /// Whether `error`, after `attempt` attempts (1-based), is retried. A request
    /// that is not idempotent is retried only when it surely did not reach the hub
    /// or the hub said "not now" before acting (429, 503).
    pub fn should_retry(&self, error: &Error, attempt: u32, idempotent: bool) -> bool {
        if attempt >= self.max_attempts.max(1) || !error.is_retryable() {
            return false;
        }
        match error {
            Error::Transport { maybe_sent, .. } => idempotent || !maybe_sent,
            Error::Hub { status, .. } => idempotent || matches!(status, 429 | 503),
            _ => false,
        }
    }
}

/// The `Retry-After` header value in seconds (the hub never sends an HTTP date).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }

    #[test]
    fn ceiling_doubles_and_caps() {
        let p = policy();
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_secs(2));
        assert_eq!(p.ceiling(100), Duration::from_secs(2), "no overflow");
    }

    #[test]
    fn jitter_stays_within_half_ceiling_and_ceiling() {
        let p = policy();
        for retry in 0..8 {
            let c = p.ceiling(retry);
            assert_eq!(p.delay_with(retry, None, 0.0), c / 2);
            assert!(p.delay_with(retry, None, 0.999_999) <= c);
            for _ in 0..50 {
                let d = p.delay(retry, None);
                assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
            }
        }
        assert_eq!(p.delay_with(0, None, f64::NAN), Duration::from_millis(50));
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_the_maximum() {
        let p = policy();
        let d = p.delay_with(0, Some(Duration::from_secs(1)), 0.0);
        assert_eq!(d, Duration::from_secs(1));
        let d = p.delay_with(0, Some(Duration::from_secs(3600)), 0.5);
        assert_eq!(d, Duration::from_secs(2));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn attempts_are_bounded_and_non_idempotent_calls_careful() {
        let p = policy();
        let sent = Error::Transport {
            hub: "h".into(),
            reason: "reset".into(),
            maybe_sent: true,
        };
        let unsent = Error::Transport {
            hub: "h".into(),
            reason: "refused".into(),
            maybe_sent: false,
        };
        let busy = Error::Hub {
            status: 503,
            code: "unavailable".into(),
            message: String::new(),
            retry_after: None,
        };
        let gateway = Error::Hub {
            status: 502,
            code: "unknown".into(),
            message: String::new(),
            retry_after: None,
        };
        assert!(p.should_retry(&sent, 1, true));
        assert!(p.should_retry(&sent, 3, true));
        assert!(!p.should_retry(&sent, 4, true), "bounded");
        assert!(!p.should_retry(&sent, 1, false));
        assert!(p.should_retry(&unsent, 1, false));
        assert!(p.should_retry(&busy, 1, false));
        assert!(!p.should_retry(&gateway, 1, false));
        assert!(p.should_retry(&gateway, 1, true));
        assert!(!RetryPolicy::NONE.should_retry(&unsent, 1, true));
    }
}
