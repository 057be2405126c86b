//! The one vocabulary for answers levee gives itself (DESIGN.md §4): each reason maps to a
//! status code, the `x-levee-reason` header value, whether it is counted as a rejection in
//! `levee_rejections_total` or as an upstream failure in `levee_upstream_errors_total`, and
//! whether the answer carries `Retry-After`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No route matched (404).
    NoRoute,
    /// Ambiguous request framing (RFC 9112 §6): refused before routing (400).
    BadRequest,
    /// More request headers, or a larger request head, than `[server]` allows (431).
    HeadersTooLarge,
    /// A request line longer than `[server] max_request_line` (414).
    UriTooLong,
    /// A request body over the route's `max_body` (413).
    BodyTooLarge,
    /// A request body still arriving `[server] request_body_timeout` after its head (408).
    BodyTimeout,
    /// The pool's bulkhead and its queue are full (503).
    Overloaded,
    /// Waited in the pool's queue for `queue.timeout` without a slot (503).
    QueueTimeout,
    /// The route's rate limit is spent (429).
    RateLimited,
    /// This client's share of the route is spent (429).
    ClientRateLimited,
    /// The route's circuit breaker is open (503).
    CircuitOpen,
    /// An SRE (or a schedule) switched the route off (503).
    SwitchedOff,
    /// Brownout, or a route switched to `degrade`: the route answers with its degrade response while its pool is under
    /// pressure (`degrade_under_pressure`) (503).
    Degraded,
    /// Could not connect to any endpoint of the pool (502).
    UpstreamConnectFailed,
    /// The upstream did not answer within `request_timeout` (504).
    UpstreamTimeout,
    /// The upstream broke the exchange (reset, malformed response) (502).
    UpstreamError,
    /// Every endpoint of the pool is marked down by health checks (503).
    NoHealthyUpstream,
}

impl Reason {
    /// Rejections, in `levee_rejections_total{reason}` label order.
    pub const REJECTIONS: [Reason; 13] = [
        Reason::NoRoute,
        Reason::Overloaded,
        Reason::QueueTimeout,
        Reason::RateLimited,
        Reason::ClientRateLimited,
        Reason::CircuitOpen,
        Reason::Degraded,
        Reason::SwitchedOff,
        Reason::BadRequest,
        Reason::HeadersTooLarge,
        Reason::UriTooLong,
        Reason::BodyTooLarge,
        Reason::BodyTimeout,
    ];
    /// Upstream failures, in `levee_upstream_errors_total{reason}` label order.
    pub const UPSTREAM: [Reason; 4] = [
        Reason::UpstreamConnectFailed,
        Reason::UpstreamTimeout,
        Reason::UpstreamError,
        Reason::NoHealthyUpstream,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoRoute => "no_route",
            Reason::BadRequest => "bad_request",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::UriTooLong => "uri_too_long",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyTimeout => "body_timeout",
            Reason::Overloaded => "overloaded",
            Reason::QueueTimeout => "queue_timeout",
            Reason::RateLimited => "rate_limited",
            Reason::ClientRateLimited => "client_rate_limited",
            Reason::CircuitOpen => "circuit_open",
            Reason::Degraded => "degraded",
            Reason::SwitchedOff => "switched_off",
            Reason::UpstreamConnectFailed => "upstream_connect_failed",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::UpstreamError => "upstream_error",
            Reason::NoHealthyUpstream => "no_healthy_upstream",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Reason::NoRoute => 404,
            Reason::BadRequest => 400,
            Reason::HeadersTooLarge => 431,
            Reason::UriTooLong => 414,
            Reason::BodyTooLarge => 413,
            Reason::BodyTimeout => 408,
            Reason::RateLimited | Reason::ClientRateLimited => 429,
            Reason::Overloaded
            | Reason::QueueTimeout
            | Reason::CircuitOpen
            | Reason::Degraded
            | Reason::SwitchedOff
            | Reason::NoHealthyUpstream => 503,
            Reason::UpstreamConnectFailed | Reason::UpstreamError => 502,
            Reason::UpstreamTimeout => 504,
        }
    }

    /// Whether a route's `degrade` response stands in for levee's own answer: every rejection
    /// of a routed request (not `no_route`, which has no route, and not upstream failures,
    /// which are the upstream's answer).
    pub fn degradable(self) -> bool {
        !matches!(
            self,
            Reason::NoRoute
                | Reason::BadRequest
                | Reason::HeadersTooLarge
                | Reason::UriTooLong
                | Reason::BodyTooLarge
                | Reason::BodyTimeout
        ) && self.rejection_index().is_some()
    }

    /// Index into the per-route rejection counters, or `None` for upstream failures.
    pub fn rejection_index(self) -> Option<usize> {
        Self::REJECTIONS.iter().position(|r| *r == self)
    }

    /// Index into the per-pool upstream error counters, or `None` for rejections.
    pub fn upstream_index(self) -> Option<usize> {
        Self::UPSTREAM.iter().position(|r| *r == self)
    }

    /// Base `Retry-After` in seconds for 429/503 answers, before jitter.
    pub fn retry_after_secs(self) -> Option<u64> {
        match self.status() {
            429 | 503 => Some(1),
            _ => None,
        }
    }
}
