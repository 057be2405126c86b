//! Per-request state carried through the Pingora phases. Dropping it releases everything the
//! request holds (its pool slot), whatever path the request took.

use crate::pools::bulkhead::Permit;
use crate::reason::Reason;
use crate::runtime::{Route, Runtime};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub struct Ctx {
    /// The config snapshot this request runs under, start to end.
    pub rt: Arc<Runtime>,
    pub route: Option<Arc<Route>>,
    /// The pool slot; `None` until admitted.
    pub permit: Option<Permit>,
    pub request_id: Option<http::HeaderValue>,
    /// Set when levee answered (or will answer) the request itself.
    pub reason: Option<Reason>,
    pub start: Instant,
    pub connect_attempts: usize,
    pub upstream: Option<SocketAddr>,
}

impl Ctx {
    pub fn new(rt: Arc<Runtime>) -> Ctx {
        Ctx {
            rt,
            route: None,
            permit: None,
            request_id: None,
            reason: None,
            start: Instant::now(),
            connect_attempts: 0,
            upstream: None,
        }
    }

    /// The request id as text (`None` before one is assigned).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().map(super::headers::id_str)
    }

    pub fn route_name(&self) -> &str {
        self.route
            .as_ref()
            .map(|r| r.spec.name.as_str())
            .unwrap_or(crate::config::NO_ROUTE)
    }
}
