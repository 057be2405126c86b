//! Per-request state carried through the Pingora phases. Dropping it releases everything the
//! request holds (its pool slot), whatever path the request took.

use crate::pools::bulkhead::Permit;
use crate::protection::adaptive::Sample;
use crate::protection::Outcome;
use crate::reason::Reason;
use crate::runtime::{Route, Runtime};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub struct Ctx {
    /// The config snapshot this request runs under, start to end.
    pub rt: Arc<Runtime>,
    pub route: Option<Arc<Route>>,
    /// The pool slot; `None` until admitted.
    pub permit: Option<Permit>,
    /// The units of the pool's group (shared backend), if it has one.
    pub group_permit: Option<Permit>,
    pub group_inflight_at_admit: u32,
    pub group_reqs_at_admit: u32,
    pub group_cost_at_admit: u32,
    pub request_id: Option<http::HeaderValue>,
    /// Set when levee answered (or will answer) the request itself.
    pub reason: Option<Reason>,
    pub start: Instant,
    pub connect_attempts: usize,
    pub upstream: Option<SocketAddr>,
    /// When the request got its pool slot (the breaker's slow-call clock starts here).
    pub admitted_at: Option<Instant>,
    /// The breaker let this request through as a half-open probe.
    pub probe: bool,
    /// Status of the upstream's response, once its head arrived.
    pub upstream_status: Option<u16>,
    /// When the upstream's response head arrived.
    pub upstream_head_at: Option<Instant>,
    /// Units in flight in the pool just after this request was admitted.
    pub inflight_at_admit: u32,
    pub reqs_at_admit: u32,
    /// Units the request took in its pool.
    pub cost_at_admit: u32,
    /// The learned-cost entry this request counts toward (routes with `cost_key`).
    pub learned: Option<u64>,
    /// The W3C trace id (from the client's `traceparent`, or started by levee).
    pub trace_id: Option<String>,
    /// A `traceparent` levee started, to send upstream.
    pub new_traceparent: Option<http::HeaderValue>,
    /// The route's body limit, and the body bytes seen so far.
    pub max_body: u64,
    pub body_bytes: u64,
    /// Cached route: admission waits for `upstream_peer` (hits never take a pool slot).
    pub deferred: bool,
    /// Admission was refused where the cache could still answer (a stale copy in
    /// `degrade.mode = "stale"`); `reason` says why.
    pub refused: bool,
    /// The fields of a 304 that revalidated a stored copy, to merge into it.
    pub revalidated: Option<http::HeaderMap>,
    /// The limiter's Retry-After for a refused request.
    pub retry_after: Option<std::time::Duration>,
}

/// Requests alive in this process (a context exists from the request head to the end of
/// logging), whatever config snapshot they run under: shutdown waits for this to reach 0.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

pub fn active_requests() -> usize {
    ACTIVE.load(Ordering::Acquire)
}

impl Drop for Ctx {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ctx {
    pub fn new(rt: Arc<Runtime>) -> Ctx {
        ACTIVE.fetch_add(1, Ordering::AcqRel);
        Ctx {
            rt,
            route: None,
            permit: None,
            group_permit: None,
            group_inflight_at_admit: 0,
            group_reqs_at_admit: 0,
            group_cost_at_admit: 0,
            request_id: None,
            reason: None,
            start: Instant::now(),
            connect_attempts: 0,
            upstream: None,
            admitted_at: None,
            probe: false,
            upstream_status: None,
            upstream_head_at: None,
            inflight_at_admit: 0,
            reqs_at_admit: 0,
            cost_at_admit: 0,
            learned: None,
            trace_id: None,
            new_traceparent: None,
            max_body: u64::MAX,
            body_bytes: 0,
            deferred: false,
            refused: false,
            retry_after: None,
            revalidated: None,
        }
    }

    /// The request id as text (`None` before one is assigned).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().map(super::headers::id_str)
    }

    /// What became of the request, for the breaker: 5xx, timeouts and connect failures are
    /// failures; other upstream answers (4xx included) are successes.
    pub fn outcome(&self) -> Outcome {
        if self.admitted_at.is_none() {
            return Outcome::Dropped;
        }
        if self.reason.is_some_and(|r| r.upstream_index().is_some()) {
            return Outcome::Failure;
        }
        match self.upstream_status {
            Some(s) if s >= 500 => Outcome::Failure,
            Some(_) => Outcome::Success,
            None => Outcome::Ignored,
        }
    }

    /// The request as the adaptive limit sees it; `None` if it never reached the upstream.
    pub fn limit_sample(&self) -> Option<Sample> {
        let admitted = self.admitted_at?;
        let overload = matches!(
            self.reason,
            Some(Reason::UpstreamTimeout | Reason::UpstreamConnectFailed)
        ) || matches!(self.upstream_status, Some(503 | 429));
        let rtt = self.upstream_head_at.map(|t| t.duration_since(admitted));
        if rtt.is_none() && !overload {
            return None; // the client left, or the exchange broke: says nothing of load
        }
        Some(Sample {
            rtt,
            inflight: self.inflight_at_admit,
            reqs: self.reqs_at_admit,
            cost: self.cost_at_admit,
            dropped: overload,
            class: self.route.as_ref().map_or(0, |r| r.class),
        })
    }

    pub fn route_name(&self) -> &str {
        self.route
            .as_ref()
            .map(|r| r.spec.name.as_str())
            .unwrap_or(crate::config::NO_ROUTE)
    }
}
