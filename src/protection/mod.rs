//! Per-route admission, in one documented order (DESIGN.md §6):
//!
//! 1. route switch (`switches`, checked in the proxy): `off` or `degrade` answer at once
//! 2. breaker gate (`breaker`): read-only while closed or open; never spends a token
//! 3. route rate limit (`rate_limit`): spends one of the route's tokens
//! 4. client rate limit (`client_limit`): spends one of the client's tokens
//! 5. brownout (`degrade_under_pressure`): while the pool is under pressure the route answers
//!    with its degrade response (reason `degraded`) without taking a slot
//! 6. pool admission (`pools::bulkhead`, in the proxy): takes cost units of the pool's
//!    (adaptive) limit, by priority
//!
//! A request rejected at any step never reaches the later ones: an open breaker spends no
//! token and a rate-limited request never holds a pool slot. A protection in shadow mode
//! (`shadow = true` on the route or on its block) is evaluated and counted in
//! `levee_shadow_rejections_total`, and the request goes on. After the response, `finish`
//! feeds the outcome to the breaker.

pub mod adaptive;
pub mod breaker;
pub mod client_limit;
pub mod learned_cost;
pub mod rate_limit;
pub mod retry_budget;

use crate::config::RouteSpec;
use crate::reason::Reason;
use breaker::{Breaker, Gate, Transition};
use client_limit::{ClientId, ClientLimit};
use rate_limit::RouteLimit;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What became of a request, as the breaker (and later the adaptive limiter) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with a non-5xx status.
    Success,
    /// 5xx from the upstream, a timeout or a connect failure.
    Failure,
    /// Finished but says nothing about the upstream (the client went away mid-way).
    Ignored,
    /// Never reached the upstream (rejected by a later step).
    Dropped,
}

/// Nanoseconds on levee's monotonic clock (since the first call in this process).
pub fn now_nanos() -> u64 {
    nanos_at(Instant::now())
}

/// `at` on levee's monotonic clock (for a caller that already read the clock).
pub fn nanos_at(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Start at 1s so that "0" never means a real instant.
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_nanos() as u64 + 1_000_000_000
}

/// Brownout with hysteresis: on when the pool's pressure (demand over limit) goes above
/// `BROWNOUT_ON`, off again only when it falls below `BROWNOUT_OFF`.
pub const BROWNOUT_ON: f64 = 1.0;
pub const BROWNOUT_OFF: f64 = 0.8;

/// A route's protections, built once per config.
pub struct Protection {
    /// Learned cost per value of `cost_key`.
    pub learned: Option<learned_cost::LearnedCost>,
    brownout: Option<std::sync::atomic::AtomicBool>,
    rate: Option<(RouteLimit, bool)>,
    client: Option<(ClientLimit, crate::config::ClientKey, bool)>,
    pub breaker: Option<(Breaker, bool)>,
}

/// The result of admission steps 2 to 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on to the pool; `probe` if the breaker let this one through to test the upstream.
    Admit { probe: bool },
    Reject {
        reason: Reason,
        retry_after: Duration,
    },
}

impl Protection {
    pub fn new(spec: &RouteSpec) -> Protection {
        let shadow = spec.shadow;
        Protection {
            learned: spec.cost_key.clone().map(learned_cost::LearnedCost::new),
            brownout: spec
                .degrade_under_pressure
                .then(|| std::sync::atomic::AtomicBool::new(false)),
            rate: spec
                .rate_limit
                .as_ref()
                .map(|s| (RouteLimit::new(s), shadow || s.shadow)),
            client: spec
                .client_rate_limit
                .as_ref()
                .map(|s| (ClientLimit::new(s), s.key.clone(), shadow || s.shadow)),
            breaker: spec
                .circuit_breaker
                .as_ref()
                .map(|s| (Breaker::new(s), shadow || s.shadow)),
        }
    }

    /// How to admit this request to the pool: `(cost, priority, learned hash)`, raised and
    /// lowered for a value learned to be costly.
    pub fn admission(
        &self,
        spec: &RouteSpec,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> (u32, crate::config::Priority, Option<u64>) {
        let Some(l) = &self.learned else {
            return (spec.cost, spec.priority, None);
        };
        match l.value(uri.path(), uri.query(), headers) {
            Some(v) => {
                let (c, p, h) = l.admit(&v, spec.cost, spec.priority);
                (c, p, Some(h))
            }
            None => (spec.cost, spec.priority, None),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.client.is_none() && self.breaker.is_none()
    }

    /// Brownout check against the pool's pressure now: `true` means answer with the degrade
    /// response. Returns the state change, if any, as the second value (for the log).
    pub fn brownout(&self, pressure: f64) -> (bool, Option<bool>) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(on) = &self.brownout else {
            return (false, None);
        };
        let was = on.load(Relaxed);
        let now = if was {
            pressure >= BROWNOUT_OFF
        } else {
            pressure > BROWNOUT_ON
        };
        if now != was && on.compare_exchange(was, now, Relaxed, Relaxed).is_ok() {
            return (now, Some(now));
        }
        (now, None)
    }

    /// Steps 2–4 for one request. `shadowed` is told of each rejection a shadow protection
    /// would have made; `transition` of each breaker state change.
    pub fn admit(
        &self,
        headers: &http::HeaderMap,
        client_ip: Option<IpAddr>,
        now: u64,
        mut shadowed: impl FnMut(Reason),
        mut transition: impl FnMut(Transition),
    ) -> Verdict {
        let mut probe = false;
        if let Some((b, shadow)) = &self.breaker {
            let (gate, t) = b.gate(now);
            if let Some(t) = t {
                transition(t);
            }
            match gate {
                Gate::Pass => {}
                Gate::Probe => probe = true,
                Gate::Reject(_) if *shadow => shadowed(Reason::CircuitOpen),
                Gate::Reject(wait) => {
                    return Verdict::Reject {
                        reason: Reason::CircuitOpen,
                        retry_after: wait,
                    }
                }
            }
        }
        if let Some((l, shadow)) = &self.rate {
            if let Err(wait) = l.check() {
                if *shadow {
                    shadowed(Reason::RateLimited);
                } else {
                    return self.reject(Reason::RateLimited, wait, probe, now);
                }
            }
        }
        if let Some((l, key, shadow)) = &self.client {
            let id: ClientId<'_> = client_limit::client_id(key, headers, client_ip);
            if let Err(wait) = l.check(id, now) {
                if *shadow {
                    shadowed(Reason::ClientRateLimited);
                } else {
                    return self.reject(Reason::ClientRateLimited, wait, probe, now);
                }
            }
        }
        Verdict::Admit { probe }
    }

    /// A later step rejected a request the breaker had made a probe: give the probe back.
    fn reject(&self, reason: Reason, retry_after: Duration, probe: bool, now: u64) -> Verdict {
        if probe {
            self.finish(now, Outcome::Dropped, Duration::ZERO, true);
        }
        Verdict::Reject {
            reason,
            retry_after,
        }
    }

    /// Feed a finished request's outcome to the breaker.
    pub fn finish(
        &self,
        now: u64,
        outcome: Outcome,
        elapsed: Duration,
        probe: bool,
    ) -> Option<Transition> {
        let (b, _) = self.breaker.as_ref()?;
        b.record(now, outcome, elapsed, probe)
    }

    /// Breaker state for status and the gauge.
    pub fn breaker_state(&self) -> Option<breaker::State> {
        self.breaker.as_ref().map(|(b, _)| b.state())
    }

    /// Drop idle clients from the client limit's table (a periodic tidy).
    pub fn sweep(&self, now: u64) {
        if let Some((l, _, _)) = &self.client {
            l.sweep(now);
        }
    }

    /// Client keys tracked by the client limit (for status).
    pub fn client_keys(&self) -> Option<usize> {
        self.client.as_ref().map(|(l, _, _)| l.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        BreakerSpec, ClientKey, ClientRateLimitSpec, MatchSpec, Priority, RateLimitSpec,
    };

    fn route() -> RouteSpec {
        RouteSpec {
            name: "r".into(),
            pool: "p".into(),
            priority: Priority::Normal,
            cost: 1,
            matcher: MatchSpec::default(),
            shadow: false,
            degrade_under_pressure: false,
            cost_key: None,
            max_body: None,
            // One token per hour: a spent token never comes back during the test.
            rate_limit: Some(RateLimitSpec {
                rps: 1.0 / 3600.0,
                burst: 2,
                shadow: false,
            }),
            client_rate_limit: Some(ClientRateLimitSpec {
                key: ClientKey::Header("x-client".into()),
                rps: 1.0,
                burst: 5,
                max_keys: 100,
                shadow: false,
            }),
            circuit_breaker: Some(BreakerSpec {
                window: Duration::from_secs(10),
                min_requests: 1,
                error_ratio: 0.5,
                slow_call: None,
                slow_ratio: 0.5,
                open_for: Duration::from_secs(5),
                probes: 1,
                shadow: false,
            }),
            degrade: None,
            cache: None,
        }
    }

    fn admit(p: &Protection, client: &str, now: u64) -> Verdict {
        let mut h = http::HeaderMap::new();
        h.insert("x-client", client.parse().unwrap());
        p.admit(&h, None, now, |_| {}, |_| {})
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn an_open_breaker_spends_no_token_and_a_limited_request_no_client_token() {
        let p = Protection::new(&route());
        assert_eq!(admit(&p, "a", 10 * S), Verdict::Admit { probe: false });
        p.finish(10 * S, Outcome::Failure, Duration::ZERO, false);
        assert_eq!(p.breaker_state(), Some(breaker::State::Open));
        // While open, 10 requests are turned away before the rate limit and the client limit.
        for _ in 0..10 {
            let v = admit(&p, "b", 11 * S);
            assert!(
                matches!(
                    v,
                    Verdict::Reject {
                        reason: Reason::CircuitOpen,
                        ..
                    }
                ),
                "{v:?}"
            );
        }
        assert_eq!(
            p.client_keys(),
            Some(1),
            "client b never reached the client limit"
        );
        // After open_for the probe finds the route's second token still there.
        assert_eq!(admit(&p, "b", 16 * S), Verdict::Admit { probe: true });
        p.finish(16 * S, Outcome::Success, Duration::ZERO, true);
        assert_eq!(p.breaker_state(), Some(breaker::State::Closed));
        // Now the route limit is spent: the request stops there, client c is never counted.
        let v = admit(&p, "c", 17 * S);
        assert!(
            matches!(
                v,
                Verdict::Reject {
                    reason: Reason::RateLimited,
                    ..
                }
            ),
            "{v:?}"
        );
        assert_eq!(p.client_keys(), Some(2));
    }

    #[test]
    fn a_probe_rejected_by_a_later_step_is_given_back() {
        let mut spec = route();
        spec.rate_limit = None;
        if let Some(c) = spec.client_rate_limit.as_mut() {
            c.burst = 1;
            c.rps = 1.0 / 3600.0;
        }
        let p = Protection::new(&spec);
        assert_eq!(admit(&p, "a", 10 * S), Verdict::Admit { probe: false });
        p.finish(10 * S, Outcome::Failure, Duration::ZERO, false);
        // Half-open: the only probe goes to client a, whose share is spent: it is rejected,
        // and the probe slot is free again for client b.
        let v = admit(&p, "a", 16 * S);
        assert!(
            matches!(
                v,
                Verdict::Reject {
                    reason: Reason::ClientRateLimited,
                    ..
                }
            ),
            "{v:?}"
        );
        assert_eq!(admit(&p, "b", 16 * S), Verdict::Admit { probe: true });
    }

    #[test]
    fn shadow_protections_count_and_admit() {
        let mut spec = route();
        spec.shadow = true;
        let p = Protection::new(&spec);
        let mut seen = Vec::new();
        let h = http::HeaderMap::new();
        for _ in 0..3 {
            let v = p.admit(&h, None, 10 * S, |r| seen.push(r), |_| {});
            assert!(matches!(v, Verdict::Admit { .. }));
        }
        assert_eq!(seen, [Reason::RateLimited]);
    }
}
