//! The Pingora `ProxyHttp` implementation. It only orchestrates: each phase calls one module.
//!
//! One request, one pass:
//! `new_ctx` takes the current runtime snapshot → `request_filter` gives the request its id,
//! matches its route (`routing`), then admits it to the route's pool (`pools::bulkhead`,
//! the slot held as an RAII permit in the ctx); a request levee answers itself goes out via
//! `respond` → `upstream_peer` picks the next endpoint in rotation → header filters apply
//! `headers` hygiene → `fail_to_proxy` maps failures to 502/504 (`errors`) → `logging`
//! records metrics, and dropping the ctx releases the slot.

mod ctx;
pub mod errors;
pub mod framing;
pub mod headers;

use crate::access_log;
use crate::cache;
use crate::config::DegradeMode;
use crate::config::NO_ROUTE;
use crate::protection::{self, breaker::Transition, retry_budget, Verdict};
use crate::reason::Reason;
use crate::respond::{self, Answer};
use crate::routing::RequestView;
use crate::runtime::Route;
use crate::runtime::Shared;
use crate::switches::SwitchState;
use async_trait::async_trait;
pub use ctx::{active_requests, Ctx};
use errors::Outcome;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, CachePhase, NoCacheReason, RespCacheable};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Duration;

/// Admission said no: why, and when a retry can succeed (when the limiter knows).
struct Refused {
    reason: Reason,
    retry_after: Option<Duration>,
}

impl From<Reason> for Refused {
    fn from(reason: Reason) -> Self {
        Refused {
            reason,
            retry_after: None,
        }
    }
}

/// The log wording of a levee-made answer.
fn detail(reason: Reason) -> &'static str {
    match reason {
        Reason::NoRoute => "no route matches",
        Reason::BadRequest => "bad request framing",
        Reason::HeadersTooLarge => "request head over the edge limits",
        Reason::UriTooLong => "request line over max_request_line",
        Reason::BodyTooLarge => "request body over max_body",
        Reason::BodyTimeout => "request body not received within request_body_timeout",
        Reason::Overloaded => "pool bulkhead and queue full: request shed",
        Reason::QueueTimeout => "no pool slot within the queue timeout: request shed",
        Reason::RateLimited => "route rate limit spent",
        Reason::ClientRateLimited => "client rate limit spent",
        Reason::CircuitOpen => "circuit breaker open",
        Reason::Degraded => "degraded: route switched to degrade or pool under pressure",
        Reason::SwitchedOff => "route switched off",
        _ => "rejected",
    }
}

/// The access log's status and reason for a request whose client went away before any
/// answer (nginx's 499 "client closed request"; no response carries them).
const CLIENT_GONE_STATUS: u16 = 499;
const CLIENT_GONE: &str = "client_gone";

pub struct LeveeProxy {
    pub shared: Arc<Shared>,
}

fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

impl LeveeProxy {
    /// Answer a request levee rejects: metric, rate-limited log line, the route's degrade
    /// response or levee's own.
    async fn reject(&self, session: &mut Session, ctx: &mut Ctx, a: Answer<'_>) {
        self.reject_because(session, ctx, a, None).await
    }

    /// `reject`, with the log line's detail given (`None`: the reason's own wording).
    async fn reject_because(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        mut a: Answer<'_>,
        why: Option<&str>,
    ) {
        ctx.reason = Some(a.reason);
        let detail = why.unwrap_or(detail(a.reason));
        self.note(ctx, a.reason, format_args!("{detail}"));
        a.request_id = ctx.request_id();
        a.degrade = ctx.route.as_ref().and_then(|r| r.spec.degrade.as_ref());
        respond::send(session, &a).await;
    }

    /// Admission steps 2–6 (see `protection`): breaker gate, route and client limits,
    /// brownout, then cost units of the pool's (and its group's) bulkhead. On success the
    /// permits are in the ctx.
    async fn admit(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        route: &Arc<Route>,
    ) -> Result<(), Refused> {
        if !route.protection.is_empty() {
            let client = headers::client_address(
                client_ip(session),
                session.req_header(),
                &ctx.rt.config.server.trusted_proxies,
            );
            let verdict = route.protection.admit(
                &session.req_header().headers,
                client,
                protection::now_nanos(),
                |reason| self.shadowed(route, reason),
                |t| self.transition(route, t),
            );
            match verdict {
                Verdict::Admit { probe } => ctx.probe = probe,
                Verdict::Reject {
                    reason,
                    retry_after,
                } => {
                    return Err(Refused {
                        reason,
                        retry_after: Some(retry_after),
                    })
                }
            }
        }

        // Step 5: brownout while the pool is under pressure.
        let (brownout, changed) = route.protection.brownout(route.pool.pressure());
        // The log slot is asked for only on a change: asking on every request would spend the
        // rate-limited budget (and count every request as a suppressed line).
        if let Some((on, suppressed)) =
            changed.and_then(|on| self.shared.log.admit().map(|s| (on, s)))
        {
            tracing::warn!(
                route = %route.spec.name,
                pool = route.pool.name(),
                suppressed,
                "brownout {}: pool pressure {:.2}",
                if on { "on" } else { "off" },
                route.pool.pressure()
            );
        }
        if brownout {
            return Err(Refused::from(Reason::Degraded));
        }

        // Step 6: cost units of the pool's limit.
        let req = session.req_header();
        let (cost, priority, learned) =
            route
                .protection
                .admission(&route.spec, &req.uri, &req.headers);
        ctx.learned = learned;
        let permit = route
            .pool
            .bulkhead
            .acquire(cost, priority)
            .await
            .map_err(Refused::from)?;
        // Then the same units of the shared backend, if the pool is in a group. A request
        // shed here gives its pool slot back at once (the permit drops).
        if let Some(group) = &route.pool.group {
            let g = group
                .bulkhead
                .acquire(cost, priority)
                .await
                .map_err(Refused::from)?;
            ctx.group_inflight_at_admit = group.bulkhead.inflight() as u32;
            ctx.group_reqs_at_admit = group.bulkhead.requests();
            ctx.group_cost_at_admit = g.cost();
            ctx.group_permit = Some(g);
        }
        ctx.cost_at_admit = permit.cost();
        ctx.permit = Some(permit);
        let now = std::time::Instant::now();
        ctx.admitted_at = Some(now);
        ctx.inflight_at_admit = route.pool.bulkhead.inflight() as u32;
        ctx.reqs_at_admit = route.pool.bulkhead.requests();
        route.pool.retries.request(protection::nanos_at(now));
        Ok(())
    }

    /// A shadow protection would have rejected this request: count it, log at a bounded rate.
    fn shadowed(&self, route: &Route, reason: Reason) {
        route.metrics.shadow_reject(reason);
        if let Some(suppressed) = self.shared.log.admit() {
            tracing::info!(
                route = %route.spec.name,
                reason = reason.as_str(),
                suppressed,
                "shadow: would have rejected, let through"
            );
        }
    }

    /// A breaker changed state: the gauge and a log line (transitions are rare by design).
    fn transition(&self, route: &Route, t: Transition) {
        if let Some(g) = &route.metrics.breaker {
            g.set(t.to as i64);
        }
        tracing::warn!(
            route = %route.spec.name,
            from = t.from.as_str(),
            to = t.to.as_str(),
            "circuit breaker: {}",
            t.why
        );
    }

    /// Record a levee-made answer: rejection metric and a rate-limited log line.
    /// `detail` is formatted only when the line is actually written (a flood of rejections
    /// costs no string per request).
    fn note(&self, ctx: &Ctx, reason: Reason, detail: std::fmt::Arguments<'_>) {
        match &ctx.route {
            Some(r) => {
                r.metrics.reject(reason);
                r.pool.metrics.upstream_error(reason);
            }
            None => ctx.rt.unrouted.reject(reason),
        }
        if let Some(suppressed) = self.shared.log.admit() {
            tracing::warn!(
                route = ctx.route_name(),
                reason = reason.as_str(),
                request_id = ctx.request_id().unwrap_or(""),
                suppressed,
                "{detail}"
            );
        }
    }
}

#[async_trait]
impl ProxyHttp for LeveeProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.shared.current.load_full())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Connections are kept alive; the edge closes them after `keepalive_timeout` idle
        // (edge.rs: one timer per connection, not Pingora's one per request). A request body
        // may not fall silent longer than `body_read_timeout`.
        let limits = &ctx.rt.config.server.limits;
        session.set_keepalive(Some(0));
        session.set_read_timeout(Some(limits.body_read_timeout));
        let req = session.req_header();
        ctx.request_id =
            Some(headers::incoming_request_id(req).unwrap_or_else(headers::new_request_id));
        // Framing first: a request two parsers could read differently goes nowhere, and its
        // connection is closed (what follows on it cannot be trusted to be a new request).
        if let Err(why) = framing::check(req) {
            session.set_keepalive(None);
            let a = Answer::new(Reason::BadRequest, NO_ROUTE, None);
            self.reject_because(session, ctx, a, Some(why)).await;
            return Ok(true);
        }
        if let Err(reason) = framing::check_limits(req, &ctx.rt.config.server.limits) {
            session.set_keepalive(None);
            self.reject(session, ctx, Answer::new(reason, NO_ROUTE, None))
                .await;
            return Ok(true);
        }
        ctx.trace_id = headers::trace_id(req);
        if ctx.trace_id.is_none() && ctx.rt.config.start_traces {
            let (v, id) = headers::new_trace();
            ctx.trace_id = Some(id);
            ctx.new_traceparent = Some(v);
        }

        let found = ctx.rt.router.find(&RequestView::from_parts(
            &req.method,
            &req.uri,
            &req.headers,
        ));
        let Some(i) = found else {
            self.reject(session, ctx, Answer::new(Reason::NoRoute, NO_ROUTE, None))
                .await;
            return Ok(true);
        };
        let route = ctx.rt.routes[i].clone();
        ctx.route = Some(route.clone());
        ctx.max_body = route
            .spec
            .max_body
            .unwrap_or(ctx.rt.config.server.limits.max_body);
        if framing::content_length(session.req_header()).is_some_and(|n| n > ctx.max_body) {
            session.set_keepalive(None);
            self.reject(
                session,
                ctx,
                Answer::new(Reason::BodyTooLarge, &route.spec.name, None),
            )
            .await;
            return Ok(true);
        }

        // Step 1: the route's switch (manual or scheduled).
        let switches = &self.shared.switches;
        let state = if switches.any() {
            switches.current(&route.spec.name, chrono::Utc::now())
        } else {
            SwitchState::On
        };
        let stale_mode = route
            .spec
            .degrade
            .as_ref()
            .is_some_and(|d| d.mode == DegradeMode::Stale);
        let reason = match state {
            SwitchState::On => None,
            SwitchState::Off => Some(Reason::SwitchedOff),
            // A cached copy may still answer: decided after the cache lookup.
            SwitchState::Degrade if stale_mode => {
                ctx.refused = true;
                ctx.reason = Some(Reason::Degraded);
                None
            }
            SwitchState::Degrade => Some(Reason::Degraded),
        };
        if let Some(reason) = reason {
            self.reject(session, ctx, Answer::new(reason, &route.spec.name, None))
                .await;
            return Ok(true);
        }

        // A cached route admits in `upstream_peer`: only requests the cache cannot answer
        // reach the pool's protections.
        if route.cache.is_some() {
            ctx.deferred = true;
            return Ok(false);
        }
        match self.admit(session, ctx, &route).await {
            Ok(()) => Ok(false),
            Err(refused) => {
                let mut a = Answer::new(refused.reason, &route.spec.name, None);
                a.retry_after = refused.retry_after;
                self.reject(session, ctx, a).await;
                Ok(true)
            }
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        if let Some(cache) = ctx.route.as_ref().and_then(|r| r.cache.as_ref()) {
            if pingora_cache::filters::request_cacheable(session.req_header()) {
                cache.enable(&mut session.cache);
            }
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        match ctx.route.as_ref().and_then(|r| r.cache.as_ref()) {
            Some(c) => Ok(cache::policy::key(&c.spec, session.req_header())),
            None => Error::e_explain(ErrorType::InternalError, "cache key for an uncached route"),
        }
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        let Some(c) = ctx.route.as_ref().and_then(|r| r.cache.as_ref()) else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(
                "no cache",
            )));
        };
        let auth = session
            .req_header()
            .headers
            .contains_key(http::header::AUTHORIZATION);
        // After a 304, Pingora hands over the stored header with only a few fields updated:
        // levee applies all of the 304's fields (RFC 9111 §3.2).
        match ctx.revalidated.take() {
            Some(fresh) => {
                // The stored header as it was (Pingora's `resp` already took some fields
                // from the 304, the stored ETag among them).
                let stored = session
                    .cache
                    .maybe_cache_meta()
                    .map_or(resp, |m| m.response_header());
                let merged = cache::policy::merge_304(stored, &fresh);
                Ok(cache::policy::cacheable(&c.spec, &merged, auth))
            }
            None => Ok(cache::policy::cacheable(&c.spec, resp, auth)),
        }
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cache::policy::variance(meta, req)
    }

    /// Whether a stored copy past its freshness may answer: while revalidating (the
    /// response's or the route's `stale_while_revalidate` allowed it), on an origin failure
    /// (`stale_if_error`), and, with `degrade.mode = "stale"`, instead of levee's own rejection.
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        match error {
            None => true,
            Some(_) if ctx.refused => ctx
                .route
                .as_ref()
                .and_then(|r| r.spec.degrade.as_ref())
                .is_some_and(|d| d.mode == DegradeMode::Stale),
            Some(e) => e.esource() == &pingora_error::ErrorSource::Upstream,
        }
    }

    /// Count a streamed (chunked) body against the route's `max_body`, and hold the whole
    /// body to `request_body_timeout` from the head (a trickle that never falls silent long
    /// enough for `body_read_timeout` still ends here).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > ctx.max_body {
                ctx.reason = Some(Reason::BodyTooLarge);
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over max_body");
            }
        }
        if !end_of_stream && ctx.start.elapsed() > ctx.rt.config.server.limits.request_body_timeout
        {
            ctx.reason = Some(Reason::BodyTimeout);
            return Error::e_explain(
                ErrorType::HTTPStatus(408),
                "request body not received within request_body_timeout",
            );
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        // A cached route's admission, once (this hook runs again for each retry). A refusal
        // is an error the cache may still answer with a stale copy (`should_serve_stale`);
        // if it does not, `fail_to_proxy` answers with the reason.
        if ctx.deferred {
            ctx.deferred = false;
            let refused = match ctx.reason.filter(|_| ctx.refused) {
                Some(reason) => Some(Refused::from(reason)),
                None => self.admit(session, ctx, &route).await.err(),
            };
            if let Some(r) = refused {
                ctx.refused = true;
                ctx.reason = Some(r.reason);
                ctx.retry_after = r.retry_after;
                return Error::e_explain(
                    ErrorType::HTTPStatus(r.reason.status()),
                    "admission refused",
                );
            }
        }
        match route.pool.select() {
            Some(endpoint) => {
                ctx.upstream = Some(endpoint.addr);
                Ok(route.pool.peer(endpoint))
            }
            None => {
                ctx.reason = Some(Reason::NoHealthyUpstream);
                Error::e_explain(
                    ErrorType::HTTPStatus(503),
                    "no endpoint of the pool is in rotation",
                )
            }
        }
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_attempts += 1;
        // Nothing reached the upstream: try the next endpoint, once per other endpoint, for
        // idempotent requests, within the pool's retry budget.
        // Pingora marks some connect errors retryable by itself: levee decides, always.
        e.set_retry(false);
        let Some(route) = ctx.route.as_ref() else {
            return e;
        };
        let endpoints = route.spec_endpoints();
        if !errors::is_connect_failure(&e) || ctx.connect_attempts >= endpoints.min(3) {
            return e;
        }
        let idempotent = retry_budget::idempotent(&session.req_header().method);
        let budget = idempotent && route.pool.retries.try_retry(protection::now_nanos());
        e.set_retry(budget);
        if let Some(suppressed) = self.shared.log.admit() {
            let what = if budget {
                "trying the next endpoint"
            } else if idempotent {
                "not retried: the pool's retry budget is spent"
            } else {
                "not retried: the method is not idempotent"
            };
            tracing::warn!(
                route = ctx.route_name(),
                suppressed,
                "connect failed, {what}: {e}"
            );
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let client = client_ip(session);
        if let Some(id) = &ctx.request_id {
            headers::forwarded(req, client, id, ctx.new_traceparent.as_ref());
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        ctx.upstream_head_at = Some(std::time::Instant::now());
        if let Err(why) = framing::check_response(resp, &ctx.rt.config.server.limits) {
            // Not passed on (nor cached): a 502, and the failure counts for the breaker.
            ctx.reason = Some(Reason::UpstreamError);
            return Error::e_explain(ErrorType::HTTPStatus(502), why);
        }
        headers::strip_response_hop_by_hop(resp);
        if let Some(c) = ctx.route.as_ref().and_then(|r| r.cache.as_ref()) {
            let status = resp.status.as_u16();
            if status == 304 && session.cache.phase() == CachePhase::Stale {
                ctx.revalidated = Some(resp.headers.clone());
            }
            let req = session.req_header();
            if (200..400).contains(&status) && cache::policy::invalidates(&req.method) {
                c.invalidate(req, resp);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(id) = &ctx.request_id {
            headers::set_response_id(resp, id);
        }
        if ctx.route.as_ref().is_some_and(|r| r.cache.is_some()) {
            // Meant for levee, the surrogate: not for clients.
            resp.remove_header("surrogate-control");
        }
        if matches!(
            session.cache.phase(),
            CachePhase::Stale | CachePhase::StaleUpdating
        ) {
            // RFC 9111 obsoletes Warning, but clients and CDNs still read it.
            resp.insert_header("warning", "110 - \"Response is Stale\"")?;
            if ctx.refused {
                // A copy stood in for levee's own rejection: say so, count it, log it.
                let cause = ctx.reason.map_or("rejected", Reason::as_str);
                ctx.reason = Some(Reason::Degraded);
                resp.insert_header(respond::REASON_HEADER, Reason::Degraded.as_str())?;
                self.note(
                    ctx,
                    Reason::Degraded,
                    format_args!("served a stale cached copy instead of rejecting ({cause})"),
                );
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let outcome = match ctx.reason {
            Some(r) => Outcome::Answer(r),
            None => errors::classify(e),
        };
        let already_sent = session.response_written().is_some();
        let code = match outcome {
            Outcome::Answer(reason) => {
                ctx.reason = Some(reason);
                if ctx.refused || reason.rejection_index().is_some() {
                    self.note(ctx, reason, format_args!("{}", detail(reason)));
                } else {
                    self.note(ctx, reason, format_args!("upstream failure: {e}"));
                }
                if !already_sent {
                    let mut a = Answer::new(reason, ctx.route_name(), ctx.request_id());
                    if ctx.refused {
                        a.retry_after = ctx.retry_after;
                        a.degrade = ctx.route.as_ref().and_then(|r| r.spec.degrade.as_ref());
                    }
                    respond::send(session, &a).await;
                }
                reason.status()
            }
            Outcome::Status(code) => {
                if let Some(suppressed) = self.shared.log.admit() {
                    tracing::info!(
                        route = ctx.route_name(),
                        status = code,
                        suppressed,
                        "request failed: {e}"
                    );
                }
                if !already_sent {
                    let _ = session.respond_error(code).await;
                }
                code
            }
            Outcome::ClientGone => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Pingora would log every failed request at error level: a flood of failures would flood
    /// the disk. levee logs them itself, rate-limited (`note`), so Pingora's lines are off.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        true
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &Ctx,
        _error: &Error,
        _context: pingora_proxy::ProxyWarnLogContext,
    ) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        // Free the slots before anything else: the response is done.
        ctx.permit.take();
        ctx.group_permit.take();
        if let (Some(route), Some(sample)) = (&ctx.route, ctx.limit_sample()) {
            route.pool.observe(sample);
            if let Some(group) = &route.pool.group {
                group.observe(protection::adaptive::Sample {
                    inflight: ctx.group_inflight_at_admit,
                    reqs: ctx.group_reqs_at_admit,
                    cost: ctx.group_cost_at_admit,
                    ..sample
                });
            }
        }
        if let (Some(route), Some(hash), Some(at)) = (&ctx.route, ctx.learned, ctx.admitted_at) {
            if let Some(l) = &route.protection.learned {
                if ctx.upstream_status.is_some() {
                    l.observe(hash, at.elapsed());
                }
            }
        }
        if let Some(route) = ctx
            .route
            .as_ref()
            .filter(|r| r.protection.breaker.is_some())
        {
            let elapsed = ctx.admitted_at.map_or(Duration::ZERO, |t| t.elapsed());
            let now = protection::now_nanos();
            if let Some(t) = route
                .protection
                .finish(now, ctx.outcome(), elapsed, ctx.probe)
            {
                self.transition(route, t);
            }
        }
        if let Some(c) = ctx.route.as_ref().and_then(|r| r.cache.as_ref()) {
            c.finished(&session.cache);
        }
        let metrics = ctx.route.as_ref().map_or(&ctx.rt.unrouted, |r| &r.metrics);
        let secs = ctx.start.elapsed().as_secs_f64();
        // Nothing sent: the client went away before an answer. Counted and logged as nginx
        // does (499), not as a response: a wave of clients giving up on a slow pool is what
        // an SRE needs to see, and it would otherwise leave no trace.
        // (A `100 Continue` alone is no answer either.) An answer of levee's own that could
        // not be written keeps its reason in the log.
        let written = session.response_written().map(|r| r.status.as_u16());
        let (status, reason) = match written.filter(|&s| s >= 200 || s == 101) {
            Some(status) => {
                metrics.observe(status, secs);
                (status, ctx.reason.map(Reason::as_str))
            }
            None => {
                metrics.client_gone();
                let why = ctx.reason.map_or(CLIENT_GONE, Reason::as_str);
                (CLIENT_GONE_STATUS, Some(why))
            }
        };
        if let Some(log) = self.shared.access_log.get() {
            let req = session.req_header();
            log.log(&access_log::Entry {
                request_id: ctx.request_id().unwrap_or(""),
                trace_id: ctx.trace_id.as_deref(),
                route: ctx.route_name(),
                pool: ctx.route.as_ref().map(|r| r.pool.name()),
                method: req.method.as_str(),
                path: req.uri.path(),
                status,
                reason,
                upstream: ctx.upstream,
                upstream_ms: ctx
                    .upstream_head_at
                    .zip(ctx.admitted_at)
                    .map(|(h, a)| h.duration_since(a).as_secs_f64() * 1000.0),
                total_ms: secs * 1000.0,
                bytes: session.body_bytes_sent(),
                client: headers::client_address(
                    client_ip(session),
                    req,
                    &ctx.rt.config.server.trusted_proxies,
                ),
            });
        }
    }
}
