//! Prometheus metrics (DESIGN.md §3). The registry is owned by `Metrics` and passed in, never
//! a global. Label sets are resolved into handles once per config (`RouteMetrics`,
//! `PoolMetrics`), so the request path only increments atomics: no hashing, no allocation.

use crate::reason::Reason;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{HashMap, HashSet};

/// Latency buckets (seconds): 1ms to 10s, dense where proxies and PDP caches live.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    rejections: IntCounterVec,
    duration: HistogramVec,
    inflight: IntGaugeVec,
    limit: IntGaugeVec,
    requests_inflight: IntGaugeVec,
    request_limit: IntGaugeVec,
    queued: IntGaugeVec,
    endpoint_up: IntGaugeVec,
    upstream_errors: IntCounterVec,
    shadow: IntCounterVec,
    client_aborts: IntCounterVec,
    breaker: IntGaugeVec,
    cache_lookups: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_coalesced: IntCounterVec,
    client_connections: IntGauge,
    connection_rejections: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub access_log_dropped: IntCounterVec,
}

/// Handles for one route, resolved once per config.
#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [IntCounter; 5],
    duration: Histogram,
    rejections: [IntCounter; Reason::REJECTIONS.len()],
    shadow: [IntCounter; Reason::REJECTIONS.len()],
    aborted: IntCounter,
    /// `levee_breaker_state`; only routes with a breaker have the series.
    pub breaker: Option<IntGauge>,
}

/// Handles for one pool, resolved once per config.
#[derive(Clone)]
pub struct PoolMetrics {
    pub inflight: IntGauge,
    pub limit: IntGauge,
    pub queued: IntGauge,
    /// `levee_upstream_requests_inflight`: requests, whatever their cost.
    pub requests: IntGauge,
    /// `levee_concurrency_limit_requests`; only adaptive pools and groups have the series.
    pub request_limit: Option<IntGauge>,
    upstream_errors: [IntCounter; Reason::UPSTREAM.len()],
}

/// The route, pool and endpoint label values a config uses (`Runtime::in_use`): after a
/// reload, every route- or pool-labelled series outside them is removed (`Metrics::prune`).
#[derive(Default, Debug)]
pub struct InUse<'a> {
    /// Every route name, and `none` (requests that matched no route).
    pub routes: HashSet<&'a str>,
    pub breakers: HashSet<&'a str>,
    pub caches: HashSet<&'a str>,
    /// Pools and groups (groups have the pool series).
    pub pools: HashSet<&'a str>,
    pub adaptive: HashSet<&'a str>,
    /// (pool, endpoint as written).
    pub endpoints: HashSet<(&'a str, &'a str)>,
}

/// Label values of one series, by label name.
type Labels<'a> = HashMap<&'a str, &'a str>;

/// The value of label `name` ("" if the series has no such label).
fn label<'a>(l: &Labels<'a>, name: &str) -> &'a str {
    l.get(name).copied().unwrap_or("")
}

/// Remove the series of `vec` whose labels `keep` refuses; the count removed.
fn prune_vec<T: MetricVecBuilder>(vec: &MetricVec<T>, keep: impl Fn(&Labels<'_>) -> bool) -> usize {
    let families = vec.collect();
    let mut gone = 0;
    for family in &families {
        for m in family.get_metric() {
            let labels: Labels<'_> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if !keep(&labels) && vec.remove(&labels).is_ok() {
                gone += 1;
            }
        }
    }
    gone
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric names and label sets below are static and valid; registration of a name twice
    // is the only failure, and `Metrics::new` registers each once.
    r.unwrap_or_else(|e| panic!("metric definition is invalid: {e}"))
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let duration = must(HistogramVec::new(
            HistogramOpts::new(
                "levee_request_duration_seconds",
                "Time from request head received to response finished, per route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        ));
        must(registry.register(Box::new(duration.clone())));
        let m = Metrics {
            requests: counter(
                "levee_requests_total",
                "Responses levee sent, per route and status class.",
                &["route", "status_class"],
            ),
            rejections: counter(
                "levee_rejections_total",
                "Requests levee answered itself instead of proxying, per route and reason.",
                &["route", "reason"],
            ),
            duration,
            inflight: gauge(
                "levee_upstream_inflight",
                "Cost units held by requests in flight to the pool (levee_upstream_requests_inflight counts the requests).",
                &["pool"],
            ),
            limit: gauge(
                "levee_concurrency_limit",
                "Current concurrency limit of the pool (max_inflight while the limit is static).",
                &["pool"],
            ),
            requests_inflight: gauge(
                "levee_upstream_requests_inflight",
                "Requests in flight to the pool, whatever their cost (levee_upstream_inflight counts cost units).",
                &["pool"],
            ),
            request_limit: gauge(
                "levee_concurrency_limit_requests",
                "Adaptive limit on requests in flight to the pool, whatever their cost (adaptive pools and groups only).",
                &["pool"],
            ),
            queued: gauge(
                "levee_pool_queue_depth",
                "Requests waiting for a slot of the pool's bulkhead.",
                &["pool"],
            ),
            endpoint_up: gauge(
                "levee_endpoint_up",
                "1 when the endpoint passes health checks (or has none), else 0.",
                &["pool", "endpoint"],
            ),
            upstream_errors: counter(
                "levee_upstream_errors_total",
                "Upstream failures answered with 502/503/504, per pool and reason.",
                &["pool", "reason"],
            ),
            shadow: counter(
                "levee_shadow_rejections_total",
                "Requests a protection in shadow mode would have rejected (they were let through), per route and reason.",
                &["route", "reason"],
            ),
            client_aborts: counter(
                "levee_client_aborts_total",
                "Requests whose client closed the connection before levee sent any answer (nginx logs them as 499); not in levee_requests_total, which counts responses sent.",
                &["route"],
            ),
            breaker: gauge(
                "levee_breaker_state",
                "Circuit breaker state per route: 0 closed, 1 open, 2 half-open.",
                &["route"],
            ),
            cache_lookups: counter(
                "levee_cache_lookups_total",
                "Requests of cached routes by what the cache did: hit, miss, stale (an expired copy served), expired (fetched again), revalidated (304 from the origin), bypass (not cacheable).",
                &["route", "result"],
            ),
            cache_bytes: gauge(
                "levee_cache_bytes",
                "Response body bytes held by the route's cache budget (max_size bounds it; heads are not counted).",
                &["route"],
            ),
            cache_coalesced: counter(
                "levee_cache_coalesced_total",
                "Requests that waited for another request's fill of the same page instead of going to the origin.",
                &["route"],
            ),
            client_connections: {
                let g = must(IntGauge::new(
                    "levee_client_connections",
                    "Client connections open on the proxy listener (max_connections bounds it).",
                ));
                must(registry.register(Box::new(g.clone())));
                g
            },
            connection_rejections: counter(
                "levee_connection_rejections_total",
                "Client connections levee closed at the edge: over max_connections (answered 503 too_many_connections), or no full request head within request_head_timeout.",
                &["reason"],
            ),
            config_reloads: counter(
                "levee_config_reloads_total",
                "Config reloads, per result.",
                &["result"],
            ),
            access_log_dropped: counter(
                "levee_access_log_dropped_total",
                "Access log lines not written: over the per-second cap for errors and rejections, or the writer's queue full.",
                &["why"],
            ),
            registry,
        };
        must(m.registry.register(Box::new(must(
            crate::process_metrics::ProcessCollector::new(),
        ))));
        m.precreate();
        m
    }

    /// Series that should exist from the start, at 0 (dashboards and alerts can then tell
    /// "none yet" from "not scraped").
    fn precreate(&self) {
        for r in ["success", "failure"] {
            self.config_reloads.with_label_values(&[r]);
        }
        for w in ["rate_cap", "queue_full"] {
            self.access_log_dropped.with_label_values(&[w]);
        }
    }

    pub fn route(&self, route: &str, has_breaker: bool) -> RouteMetrics {
        RouteMetrics {
            shadow: Reason::REJECTIONS.map(|r| self.shadow.with_label_values(&[route, r.as_str()])),
            breaker: has_breaker.then(|| self.breaker.with_label_values(&[route])),
            by_class: STATUS_CLASSES.map(|c| self.requests.with_label_values(&[route, c])),
            aborted: self.client_aborts.with_label_values(&[route]),
            duration: self.duration.with_label_values(&[route]),
            rejections: Reason::REJECTIONS
                .map(|r| self.rejections.with_label_values(&[route, r.as_str()])),
        }
    }

    pub fn cache(&self, route: &str) -> crate::cache::CacheMetrics {
        crate::cache::CacheMetrics {
            lookups: crate::cache::Lookup::ALL
                .map(|l| self.cache_lookups.with_label_values(&[route, l.as_str()])),
            bytes: self.cache_bytes.with_label_values(&[route]),
            coalesced: self.cache_coalesced.with_label_values(&[route]),
        }
    }

    /// `levee_client_connections`, and the connection rejection counters
    /// (`too_many_connections`, `head_timeout`).
    pub fn edge(&self) -> (IntGauge, IntCounter, IntCounter) {
        (
            self.client_connections.clone(),
            self.connection_rejections
                .with_label_values(&["too_many_connections"]),
            self.connection_rejections
                .with_label_values(&["head_timeout"]),
        )
    }

    pub fn pool(&self, pool: &str) -> PoolMetrics {
        PoolMetrics {
            inflight: self.inflight.with_label_values(&[pool]),
            limit: self.limit.with_label_values(&[pool]),
            queued: self.queued.with_label_values(&[pool]),
            requests: self.requests_inflight.with_label_values(&[pool]),
            request_limit: None,
            upstream_errors: Reason::UPSTREAM
                .map(|r| self.upstream_errors.with_label_values(&[pool, r.as_str()])),
        }
    }

    /// The request-limit gauge of an adaptive pool or group.
    pub fn request_limit(&self, pool: &str) -> IntGauge {
        self.request_limit.with_label_values(&[pool])
    }

    /// After a reload: remove the series of routes, pools, groups and endpoints the new
    /// config no longer has (and the breaker, cache and request-limit series of those that
    /// lost the feature), so none stands at its last value: a removed pool whose endpoints
    /// were all down would otherwise keep `LeveeNoEndpointUp` firing until a restart.
    /// Requests still finishing under the old config update handles no longer exported.
    /// Returns how many series were removed.
    pub fn prune(&self, used: &InUse<'_>) -> usize {
        let route = |l: &Labels<'_>| used.routes.contains(label(l, "route"));
        let pool = |l: &Labels<'_>| used.pools.contains(label(l, "pool"));
        let cache = |l: &Labels<'_>| used.caches.contains(label(l, "route"));
        prune_vec(&self.requests, route)
            + prune_vec(&self.rejections, route)
            + prune_vec(&self.shadow, route)
            + prune_vec(&self.client_aborts, route)
            + prune_vec(&self.duration, route)
            + prune_vec(&self.breaker, |l| used.breakers.contains(label(l, "route")))
            + prune_vec(&self.cache_lookups, cache)
            + prune_vec(&self.cache_bytes, cache)
            + prune_vec(&self.cache_coalesced, cache)
            + prune_vec(&self.inflight, pool)
            + prune_vec(&self.limit, pool)
            + prune_vec(&self.queued, pool)
            + prune_vec(&self.requests_inflight, pool)
            + prune_vec(&self.upstream_errors, pool)
            + prune_vec(&self.request_limit, |l| {
                used.adaptive.contains(label(l, "pool"))
            })
            + prune_vec(&self.endpoint_up, |l| {
                used.endpoints
                    .contains(&(label(l, "pool"), label(l, "endpoint")))
            })
    }

    pub fn endpoint_up(&self, pool: &str, endpoint: &str) -> IntGauge {
        self.endpoint_up.with_label_values(&[pool, endpoint])
    }

    /// Prometheus text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteMetrics {
    /// Count one finished response: its status class and its duration.
    pub fn observe(&self, status: u16, secs: f64) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.by_class[class].inc();
        self.duration.observe(secs);
    }

    /// Count a request whose client went away before any answer was sent.
    pub fn client_gone(&self) {
        self.aborted.inc();
    }

    pub fn reject(&self, reason: Reason) {
        if let Some(i) = reason.rejection_index() {
            self.rejections[i].inc();
        }
    }

    /// Count a rejection a shadow protection would have made.
    pub fn shadow_reject(&self, reason: Reason) {
        if let Some(i) = reason.rejection_index() {
            self.shadow[i].inc();
        }
    }

    /// Rejections so far, per reason (for /admin/status).
    pub fn rejection_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reason::REJECTIONS
            .iter()
            .zip(self.rejections.iter())
            .map(|(r, c)| (r.as_str(), c.get()))
    }

    pub fn total_requests(&self) -> u64 {
        self.by_class.iter().map(|c| c.get()).sum()
    }
}

impl PoolMetrics {
    pub fn upstream_error(&self, reason: Reason) {
        if let Some(i) = reason.upstream_index() {
            self.upstream_errors[i].inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_exactly_the_label_values_in_use() {
        let m = Metrics::new();
        for name in ["kept", "dropped"] {
            m.route(name, true).observe(200, 0.01);
            m.pool(name).inflight.set(3);
            m.request_limit(name).set(20);
            m.endpoint_up(name, "10.0.0.1:80").set(0);
        }
        let mut used = InUse::default();
        used.routes.insert("kept");
        used.pools.insert("kept");
        used.endpoints.insert(("kept", "10.0.0.1:80"));
        // "kept" lost its breaker and its adaptive limit: those series go too.
        let removed = m.prune(&used);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("\"dropped\""), "{text}");
        assert!(!text.contains("levee_breaker_state{"), "{text}");
        assert!(
            !text.contains("levee_concurrency_limit_requests{"),
            "{text}"
        );
        assert!(text.contains("levee_requests_total{route=\"kept\",status_class=\"2xx\"} 1"));
        assert!(text.contains("levee_upstream_inflight{pool=\"kept\"} 3"));
        assert!(text.contains("levee_endpoint_up{endpoint=\"10.0.0.1:80\",pool=\"kept\"} 0"));
        assert!(removed > 20, "{removed}");
        assert_eq!(m.prune(&used), 0, "a second prune finds nothing to remove");
    }
}
