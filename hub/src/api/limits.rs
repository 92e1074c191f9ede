//! Per-participant rate limiting: a token bucket per caller, 429 with Retry-After.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::server::PeerIdentity;

/// Token buckets keyed by participant.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` sustained requests with bursts up to `burst`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; on refusal, the seconds to wait.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 60);
        }
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Middleware: refuses a participant over its rate with 429.
pub async fn per_participant(
    State(limiter): State<Arc<RateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(PeerIdentity::Participant(id)) = req.extensions().get::<PeerIdentity>() {
        if let Err(wait) = limiter.check(&id.to_string(), Instant::now()) {
            return Error::RateLimited(wait).into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refuses_then_refills() {
        let rl = RateLimiter::new(10, 2);
        let t0 = Instant::now();
        assert!(rl.check("phr:a", t0).is_ok());
        assert!(rl.check("phr:a", t0).is_ok());
        assert_eq!(rl.check("phr:a", t0), Err(1));
        assert!(rl.check("phr:b", t0).is_ok(), "buckets are per participant");
        assert!(rl.check("phr:a", t0 + Duration::from_millis(150)).is_ok());
    }
}
