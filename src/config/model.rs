//! Validated config: every value checked, parsed and compiled (durations, regexes, value
//! lists read from files). These types never derive `Deserialize`; they are only built by
//! `validate.rs`, so holding one means the config is sound. `runtime.rs` turns them into the
//! live snapshot (router, pools with connections and health checks, metric handles).

use regex::Regex;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config was read from (reload re-reads it).
    pub source: Option<PathBuf>,
    /// `source`'s stamp, taken just before it was read (the file watch compares against it).
    pub stamp: Option<super::FileStamp>,
    pub server: ServerSpec,
    pub pools: Vec<PoolSpec>,
    pub groups: Vec<GroupSpec>,
    pub routes: Vec<RouteSpec>,
    pub schedules: Vec<ScheduleSpec>,
    /// `[log]`: the access log; `None` when the table is absent (no access log).
    pub log: Option<LogSpec>,
    /// `[tracing] start`: begin a W3C trace for requests that arrive without `traceparent`.
    pub start_traces: bool,
}

/// `[log]`: the bounded access log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSpec {
    pub sample: f64,
    /// `None`: stdout.
    pub file: Option<PathBuf>,
    pub max_size: u64,
    pub max_files: usize,
    pub errors_per_second: u32,
    pub buffer: usize,
}

/// `[groups.NAME]`: a backend shared by several pools, with a limit of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub max_inflight: usize,
    pub queue_max: usize,
    pub queue_timeout: Duration,
    pub adaptive: Option<AdaptiveSpec>,
}

/// `[[schedules]]`: switches that apply from `from` until `until` by themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub from: chrono::DateTime<chrono::FixedOffset>,
    pub until: chrono::DateTime<chrono::FixedOffset>,
    pub switches: Vec<(String, crate::switches::SwitchState)>,
}

impl ScheduleSpec {
    pub fn applies(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.from <= now && now < self.until
    }
}

/// The switches schedules set at `now`: route → (state, schedule). Where applying schedules
/// disagree, the one that started later wins.
pub fn scheduled_switches(
    schedules: &[ScheduleSpec],
    now: chrono::DateTime<chrono::Utc>,
) -> std::collections::HashMap<String, (crate::switches::SwitchState, String)> {
    let mut applying: Vec<&ScheduleSpec> = schedules.iter().filter(|s| s.applies(now)).collect();
    applying.sort_by_key(|s| s.from);
    let mut out = std::collections::HashMap::new();
    for s in applying {
        for (route, state) in &s.switches {
            out.insert(route.clone(), (*state, s.name.clone()));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    /// `(name, token)` pairs from `admin_token_file`; empty: mutating admin calls are open
    /// (only allowed on a loopback `admin_listen`).
    pub admin_tokens: Vec<(String, String)>,
    /// Unix socket through which a new levee takes the listening sockets over (`--upgrade`).
    pub upgrade_sock: PathBuf,
    /// Where manual route switches are kept across restarts and upgrades (`None`: in memory
    /// only).
    pub state_file: Option<PathBuf>,
    /// On SIGTERM (or after handing sockets over), how long in-flight requests may take.
    pub drain_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed (load balancers in front of levee).
    pub trusted_proxies: Vec<Cidr>,
    pub limits: EdgeLimits,
}

/// `[server]` edge limits on what clients may send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeLimits {
    pub max_request_headers: usize,
    pub max_request_head: u64,
    pub max_request_line: usize,
    /// Default for routes without `max_body`.
    pub max_body: u64,
    pub max_requests_per_connection: u32,
    /// Open client connections beyond which new ones are refused at once (`edge`).
    pub max_connections: usize,
    /// A request head must arrive in full within this (from accept, or from its first byte
    /// on a kept-alive connection): slowloris.
    pub request_head_timeout: Duration,
    /// Longest silence while reading a request body (a floor on the body's rate).
    pub body_read_timeout: Duration,
    /// A request body must have arrived in full this long after its head (408 after).
    pub request_body_timeout: Duration,
    /// How long an idle kept-alive client connection stays open.
    pub keepalive_timeout: Duration,
    /// Largest upstream response head levee passes on (fields and bytes); larger is a 502.
    pub max_response_headers: usize,
    pub max_response_head: u64,
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("bad address {a:?} in {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = if l.is_empty() {
            max
        } else {
            l.trim()
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("bad prefix length {l:?} in {s:?}: expected 0 to {max}"))?
        };
        Ok(Cidr { addr, len })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::*;
        let (a, b, bits) = match (self.addr, ip.to_canonical()) {
            (V4(a), V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
            (V6(a), V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.len);
        self.len == 0 || (a >> shift) == (b >> shift)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    pub name: String,
    /// As written (for metrics labels and status) and as resolved at load time.
    pub endpoints: Vec<(String, SocketAddr)>,
    pub max_inflight: usize,
    pub queue_max: usize,
    pub queue_timeout: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub health_check: Option<HealthCheckSpec>,
    /// Adaptive concurrency limit below `max_inflight`; `None` keeps the limit static.
    pub adaptive: Option<AdaptiveSpec>,
    /// The `[groups.NAME]` this pool's backend belongs to.
    pub group: Option<String>,
    /// An endpoint back in rotation gets a share of requests that grows over this window.
    pub slow_start: Duration,
}

/// `[pools.NAME] adaptive`: tuning of the adaptive limit.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveSpec {
    pub min_limit: u32,
    pub initial_limit: u32,
    pub tolerance: f64,
    pub backoff: f64,
    pub smoothing: f64,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub host: Option<String>,
    pub healthy_threshold: usize,
    pub unhealthy_threshold: usize,
}

/// Request priority: who is shed first when a pool is under pressure (the adaptive limiter
/// uses it; see README for what is implemented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Sheddable = 0,
    Low = 1,
    Normal = 2,
    High = 3,
    Critical = 4,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Priority> {
        Some(match s {
            "critical" => Priority::Critical,
            "high" => Priority::High,
            "normal" => Priority::Normal,
            "low" => Priority::Low,
            "sheddable" => Priority::Sheddable,
            _ => return None,
        })
    }

    /// The priority at `i` (0 = sheddable … 4 = critical); out of range is critical.
    pub fn from_index(i: usize) -> Priority {
        match i {
            0 => Priority::Sheddable,
            1 => Priority::Low,
            2 => Priority::Normal,
            3 => Priority::High,
            _ => Priority::Critical,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Sheddable => "sheddable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub pool: String,
    pub priority: Priority,
    pub cost: u32,
    pub matcher: MatchSpec,
    /// `shadow = true` on the route: every protection of the route only counts.
    pub shadow: bool,
    /// Brownout: answer with the degrade response while the pool is under pressure.
    pub degrade_under_pressure: bool,
    /// Learn the cost of requests per value of this key.
    pub cost_key: Option<CostKey>,
    /// Largest request body (bytes); `None`: `[server] max_body`.
    pub max_body: Option<u64>,
    pub rate_limit: Option<RateLimitSpec>,
    pub client_rate_limit: Option<ClientRateLimitSpec>,
    pub circuit_breaker: Option<BreakerSpec>,
    pub degrade: Option<DegradeSpec>,
    /// `routes.cache`: the route's own in-proxy cache.
    pub cache: Option<CacheSpec>,
}

/// `routes.cache`: an HTTP cache (RFC 9111) with its own memory budget.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSpec {
    /// Bytes of bodies and headers the route's cache may hold.
    pub max_size: u64,
    /// Largest single response stored (bytes).
    pub max_object_size: u64,
    /// Freshness for cacheable responses that carry none; `None`: such responses are not stored.
    pub ttl: Option<Duration>,
    /// Default serve-while-revalidating window past expiry (the response's own directive wins).
    pub stale_while_revalidate: Duration,
    /// Default window past expiry in which a stored copy stands in for an origin error or a
    /// request levee sheds (the response's own directive wins).
    pub stale_if_error: Duration,
    /// Request headers added to the cache key (lower-case names).
    pub key_headers: Vec<String>,
    /// Longest a request waits for another request's fill of the same key.
    pub lock_timeout: Duration,
}

/// `routes.degrade.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DegradeMode {
    /// The degrade body (or levee's own JSON).
    #[default]
    Body,
    /// The route's cached copy, even expired within `cache.stale_if_error`; else the body.
    Stale,
}

/// `routes.cost_key`: what levee learns cost by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostKey {
    /// A query parameter (decoded, compared case-insensitively).
    Query(String),
    /// A header (lower-case name).
    Header(String),
    Path,
}

/// `routes.rate_limit`: GCRA over the whole route.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSpec {
    pub rps: f64,
    pub burst: u32,
    pub shadow: bool,
}

/// What identifies a client for `routes.client_rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    Ip,
    /// Lower-case header name.
    Header(String),
    Cookie(String),
}

/// `routes.client_rate_limit`: GCRA per client key, at most `max_keys` tracked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRateLimitSpec {
    pub key: ClientKey,
    pub rps: f64,
    pub burst: u32,
    pub max_keys: usize,
    pub shadow: bool,
}

/// `routes.circuit_breaker`.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSpec {
    pub window: Duration,
    pub min_requests: u32,
    pub error_ratio: f64,
    pub slow_call: Option<Duration>,
    pub slow_ratio: f64,
    pub open_for: Duration,
    /// Requests let through while half-open; all must succeed to close.
    pub probes: u32,
    pub shadow: bool,
}

/// `routes.degrade`: levee's answer in place of the upstream when it rejects a request.
#[derive(Debug, Clone, PartialEq)]
pub struct DegradeSpec {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// Read at config load; `None` means levee's short JSON body naming the reason.
    pub body: Option<bytes::Bytes>,
    pub content_type: String,
    pub body_file: Option<PathBuf>,
    pub mode: DegradeMode,
}

/// All given conditions must hold. An empty `MatchSpec` matches every request.
#[derive(Debug, Clone, Default)]
pub struct MatchSpec {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    /// Unanchored search on the path (write `^...$` to anchor), like nginx's `location ~`.
    pub path_regex: Option<Regex>,
    pub host: Option<HostMatch>,
    /// Upper-case method names; empty means any method.
    pub methods: Vec<String>,
    /// Header names, parsed once (lower-case).
    pub headers: Vec<(http::HeaderName, ValueMatch)>,
    /// Decoded query parameter names.
    pub query: Vec<(String, ValueMatch)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-case host without port.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches any host ending with it.
    Suffix(String),
}

#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Whole value, case-sensitive.
    Equals(String),
    /// Whole value, case-insensitive; values stored lower-case. `source` names the file
    /// for `one_of_file`, for status and diagnostics.
    OneOf {
        values: Arc<HashSet<String>>,
        source: Option<PathBuf>,
    },
    /// Anchored to the whole value.
    Regex(Regex),
    /// The header or parameter is present, whatever its value.
    Present,
}

impl ValueMatch {
    /// Same condition (used by the unreachable-route check). Regexes compare by source.
    pub fn same_as(&self, other: &ValueMatch) -> bool {
        match (self, other) {
            (ValueMatch::Equals(a), ValueMatch::Equals(b)) => a == b,
            (ValueMatch::OneOf { values: a, .. }, ValueMatch::OneOf { values: b, .. }) => a == b,
            (ValueMatch::Regex(a), ValueMatch::Regex(b)) => a.as_str() == b.as_str(),
            (ValueMatch::Present, ValueMatch::Present) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switches::SwitchState;
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sched(name: &str, from: &str, until: &str, state: SwitchState) -> ScheduleSpec {
        ScheduleSpec {
            name: name.into(),
            from: chrono::DateTime::parse_from_rfc3339(from).unwrap(),
            until: chrono::DateTime::parse_from_rfc3339(until).unwrap(),
            switches: vec![("search".into(), state)],
        }
    }

    #[test]
    fn schedules_apply_in_their_window_and_the_later_one_wins() {
        let s = vec![
            sched(
                "night",
                "2026-11-11T02:00:00+09:00",
                "2026-11-11T04:00:00+09:00",
                SwitchState::Degrade,
            ),
            sched(
                "sale-open",
                "2026-11-11T00:00:00+09:00",
                "2026-11-11T03:00:00+09:00",
                SwitchState::Off,
            ),
        ];
        assert!(scheduled_switches(&s, t("2026-11-10T14:59:59Z")).is_empty());
        let at = |x: &str| scheduled_switches(&s, t(x)).get("search").cloned();
        assert_eq!(
            at("2026-11-11T00:00:00+09:00"),
            Some((SwitchState::Off, "sale-open".into()))
        );
        // 02:30 both apply: "night" started later and wins.
        assert_eq!(
            at("2026-11-11T02:30:00+09:00"),
            Some((SwitchState::Degrade, "night".into()))
        );
        assert_eq!(
            at("2026-11-11T03:59:59+09:00"),
            Some((SwitchState::Degrade, "night".into()))
        );
        // `until` is exclusive.
        assert_eq!(at("2026-11-11T04:00:00+09:00"), None);
    }
}
