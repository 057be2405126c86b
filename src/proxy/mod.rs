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
pub mod headers;

use crate::reason::Reason;
use crate::respond;
use crate::routing::RequestView;
use crate::runtime::Shared;
use async_trait::async_trait;
pub use ctx::Ctx;
use errors::Outcome;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

pub struct LeveeProxy {
    pub shared: Arc<Shared>,
}

impl LeveeProxy {
    /// Record a levee-made answer: rejection metric and a rate-limited log line.
    fn note(&self, ctx: &Ctx, reason: Reason, detail: &str) {
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
        let req = session.req_header();
        ctx.request_id =
            Some(headers::incoming_request_id(req).unwrap_or_else(headers::new_request_id));

        let found = ctx.rt.router.find(&RequestView::from_parts(
            &req.method,
            &req.uri,
            &req.headers,
        ));
        let Some(i) = found else {
            ctx.reason = Some(Reason::NoRoute);
            self.note(ctx, Reason::NoRoute, "no route matches");
            respond::send(session, Reason::NoRoute, ctx.route_name(), ctx.request_id()).await;
            return Ok(true);
        };
        let route = ctx.rt.routes[i].clone();
        ctx.route = Some(route.clone());

        match route.pool.bulkhead.acquire().await {
            Ok(permit) => {
                ctx.permit = Some(permit);
                Ok(false)
            }
            Err(reason) => {
                ctx.reason = Some(reason);
                self.note(ctx, reason, "pool bulkhead full: request shed");
                respond::send(session, reason, ctx.route_name(), ctx.request_id()).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(route) = &ctx.route else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
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
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_attempts += 1;
        // Nothing reached the upstream: try the next endpoint, once per other endpoint.
        let endpoints = ctx.route.as_ref().map_or(1, |r| r.spec_endpoints());
        if errors::is_connect_failure(&e) && ctx.connect_attempts < endpoints.min(3) {
            e.set_retry(true);
            if let Some(suppressed) = self.shared.log.admit() {
                tracing::warn!(
                    route = ctx.route_name(),
                    suppressed,
                    "connect failed, trying the next endpoint: {e}"
                );
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(id) = &ctx.request_id {
            headers::forwarded(req, client, id);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        headers::strip_response_hop_by_hop(resp);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(id) = &ctx.request_id {
            resp.insert_header(headers::REQUEST_ID, id.clone())?;
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
                self.note(ctx, reason, &format!("upstream failure: {e}"));
                if !already_sent {
                    respond::send(session, reason, ctx.route_name(), ctx.request_id()).await;
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
        // Free the slot before anything else: the response is done.
        ctx.permit.take();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if status == 0 {
            return; // nothing was sent: the client went away before an answer
        }
        let secs = ctx.start.elapsed().as_secs_f64();
        match &ctx.route {
            Some(r) => r.metrics.observe(status, secs),
            None => ctx.rt.unrouted.observe(status, secs),
        }
    }
}
