//! The route rate limit (`routes.rate_limit`): one GCRA over the whole route, on `governor`.
//! Admission step 3 (after the switch and the breaker gate): a request spends one token or is
//! answered 429 `rate_limited` with `Retry-After` from the limiter's own "not until".
//!
//! GCRA keeps one timestamp (the theoretical arrival time), so a check is one atomic
//! compare-and-swap: no lock, no background refill, and bursts are exact.

use crate::config::RateLimitSpec;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

pub struct RouteLimit<C: Clock + Clone = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

/// The quota for `rps` with `burst`: one token every `1/rps`, `burst` at once.
pub fn quota(rps: f64, burst: u32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rps).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("period is at least 1ns")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("burst is at least 1"))
}

impl RouteLimit<DefaultClock> {
    pub fn new(spec: &RateLimitSpec) -> Self {
        Self::with_clock(spec, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RouteLimit<C> {
    pub fn with_clock(spec: &RateLimitSpec, clock: C) -> Self {
        RouteLimit {
            limiter: RateLimiter::direct_with_clock(quota(spec.rps, spec.burst), clock.clone()),
            clock,
        }
    }

    /// Spend one token: `Ok` to go on, or `Err(wait)` until the next token.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limit(rps: f64, burst: u32) -> (RouteLimit<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let spec = RateLimitSpec {
            rps,
            burst,
            shadow: false,
        };
        (RouteLimit::with_clock(&spec, clock.clone()), clock)
    }

    #[test]
    fn burst_then_steady_rate() {
        let (l, clock) = limit(50.0, 20);
        // The burst is exact: 20 at once, the 21st waits one period (20ms).
        assert!((0..20).all(|_| l.check().is_ok()));
        assert_eq!(l.check(), Err(Duration::from_millis(20)));
        // Steady state: over 10 simulated seconds, offering 200/s, exactly 50/s pass.
        let mut passed = 0;
        for _ in 0..2000 {
            clock.advance(Duration::from_millis(5));
            passed += l.check().is_ok() as u32;
        }
        assert_eq!(passed, 500);
    }

    #[test]
    fn fractional_rates() {
        let (l, clock) = limit(0.5, 1);
        assert!(l.check().is_ok());
        assert_eq!(l.check(), Err(Duration::from_secs(2)));
        clock.advance(Duration::from_millis(1999));
        assert!(l.check().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(l.check().is_ok());
    }
}
