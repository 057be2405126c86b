//! The retry budget of a pool: levee retries a request on another endpoint only when the
//! connect failed (nothing reached the upstream), only for idempotent methods, and only while
//! retries stay under `RATIO` of the pool's requests over the last `WINDOW_SECS` seconds
//! (with a floor of `MIN_PER_SEC` a second, so a quiet pool can still retry). During an
//! outage retries can therefore add at most a fifth to the load, never multiply it
//! (Finagle's and Linkerd's retry budgets work the same way).

use std::sync::Mutex;

pub const RATIO: f64 = 0.2;
pub const MIN_PER_SEC: u64 = 3;
pub const WINDOW_SECS: u64 = 10;

const NS: u64 = 1_000_000_000;

#[derive(Default)]
pub struct RetryBudget {
    /// Per second of the window: (which second, requests, retries).
    ring: Mutex<[(u64, u64, u64); WINDOW_SECS as usize]>,
}

impl RetryBudget {
    fn slot(ring: &mut [(u64, u64, u64); WINDOW_SECS as usize], now: u64) -> &mut (u64, u64, u64) {
        let sec = now / NS;
        let s = &mut ring[(sec % WINDOW_SECS) as usize];
        if s.0 != sec {
            *s = (sec, 0, 0);
        }
        s
    }

    /// Count one request to the pool at `now` (ns).
    pub fn request(&self, now: u64) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        Self::slot(&mut ring, now).1 += 1;
    }

    /// May a retry be made at `now`? If so it is counted.
    pub fn try_retry(&self, now: u64) -> bool {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let sec = now / NS;
        let (requests, retries) = ring
            .iter()
            .filter(|s| s.0 + WINDOW_SECS > sec && s.0 <= sec)
            .fold((0, 0), |(q, r), s| (q + s.1, r + s.2));
        let allowed = ((requests as f64 * RATIO) as u64).max(MIN_PER_SEC * WINDOW_SECS);
        if retries >= allowed {
            return false;
        }
        Self::slot(&mut ring, now).2 += 1;
        true
    }
}

/// Methods that are safe to send twice (RFC 9110 §9.2.2).
pub fn idempotent(m: &http::Method) -> bool {
    use http::Method;
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_a_fifth_of_requests() {
        let b = RetryBudget::default();
        // 1000 requests a second for 10 s, every one wanting a retry (an outage).
        let mut retried = 0;
        for ms in 0..10_000u64 {
            let now = 100 * NS + ms * 1_000_000;
            b.request(now);
            retried += b.try_retry(now) as u64;
        }
        // Never more than 20 % of the requests seen (plus the floor while the window fills).
        assert!(retried <= 2_000 + MIN_PER_SEC * WINDOW_SECS, "{retried}");
        assert!(
            retried >= 1_500,
            "{retried}: the budget should be used, not starved"
        );
    }

    #[test]
    fn a_quiet_pool_keeps_a_floor_and_it_refills() {
        let b = RetryBudget::default();
        let now = 50 * NS;
        let ok = (0..100).filter(|_| b.try_retry(now)).count() as u64;
        assert_eq!(ok, MIN_PER_SEC * WINDOW_SECS);
        assert!(!b.try_retry(now + NS));
        // Once those retries have left the window, the floor is back.
        assert!(b.try_retry(now + WINDOW_SECS * NS));
    }

    #[test]
    fn only_idempotent_methods() {
        assert!(idempotent(&http::Method::GET));
        assert!(idempotent(&http::Method::PUT));
        assert!(!idempotent(&http::Method::POST));
        assert!(!idempotent(&http::Method::PATCH));
    }
}
