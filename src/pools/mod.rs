//! Upstream pools: each pool is an isolated set of endpoints with its own round-robin
//! selection (skipping endpoints marked down), health checks, timeouts, bulkhead and
//! upstream connection pool (Pingora keys reusable connections by peer `group_key`, which is
//! per pool, so two pools never share a connection even when they share an address).
//!
//! Selection is levee's own: an atomic counter over the pool's endpoints, each with its
//! `HttpPeer` built once per config and an "in rotation" flag that the health checks flip.
//! Pingora's `LoadBalancer` is kept only to run the health checks.

pub mod bulkhead;
pub mod group;
pub mod health;

use crate::config::{AdaptiveSpec, PoolSpec};
use crate::metrics::{Metrics, PoolMetrics};
use crate::protection::adaptive::{limit::LimitConfig, Adaptive, Sample};
use crate::protection::retry_budget::RetryBudget;
use bulkhead::Bulkhead;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One endpoint of a pool.
pub struct Endpoint {
    /// As written in the config (`levee_endpoint_up`'s `endpoint` label).
    pub label: String,
    pub addr: SocketAddr,
    /// Whether the endpoint is in rotation; health checks flip it.
    pub up: AtomicBool,
    pub gauge: prometheus::IntGauge,
    /// When it last came back into rotation (`now_nanos`), while it is in slow start; 0 after.
    pub up_since: std::sync::atomic::AtomicU64,
    /// The peer for a request to this endpoint: this pool's timeouts and connection group.
    peer: HttpPeer,
}

impl Endpoint {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Put the endpoint in or out of rotation; returns whether that changed anything. One
    /// coming back starts its slow start now.
    pub fn set_up(&self, up: bool) -> bool {
        self.gauge.set(up as i64);
        let changed = self.up.swap(up, Ordering::Relaxed) != up;
        if changed && up {
            self.up_since
                .store(crate::protection::now_nanos().max(1), Ordering::Relaxed);
        }
        changed
    }

    /// The endpoint's share of its turns during slow start (1.0 once ramped): grows
    /// linearly from 10% (Envoy's minimum weight) over `window` since it came back.
    pub fn ramp(&self, now: u64, window: Duration) -> f64 {
        let since = self.up_since.load(Ordering::Relaxed);
        if since == 0 {
            return 1.0;
        }
        let elapsed = now.saturating_sub(since);
        if window.is_zero() || elapsed >= window.as_nanos() as u64 {
            self.up_since.store(0, Ordering::Relaxed); // ramped: skip the clock from now on
            return 1.0;
        }
        (elapsed as f64 / window.as_nanos() as f64).max(0.1)
    }
}

pub struct Pool {
    pub spec: PoolSpec,
    /// Runs the health checks (its own backend set); not used to select.
    pub lb: LoadBalancer<RoundRobin>,
    pub bulkhead: Bulkhead,
    pub metrics: PoolMetrics,
    pub endpoints: Arc<[Endpoint]>,
    next: AtomicUsize,
    /// The adaptive limit (`adaptive = true`), fed by finished requests.
    pub adaptive: Option<Adaptive>,
    pub retries: RetryBudget,
    /// The shared backend this pool belongs to, if any.
    pub group: Option<Arc<group::Group>>,
}

/// How long an idle upstream connection is kept for reuse.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

impl Pool {
    pub fn new(
        spec: &PoolSpec,
        metrics: &Metrics,
        group: Option<Arc<group::Group>>,
    ) -> Result<Arc<Pool>, String> {
        let addrs: Vec<SocketAddr> = spec.endpoints.iter().map(|(_, a)| *a).collect();
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter())
            .map_err(|e| format!("pool {}: {e}", spec.name))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ("levee-pool", &spec.name).hash(&mut h);
        let group_key = h.finish();
        let endpoints: Arc<[Endpoint]> = spec
            .endpoints
            .iter()
            .map(|(label, addr)| {
                let gauge = metrics.endpoint_up(&spec.name, label);
                gauge.set(1);
                Endpoint {
                    label: label.clone(),
                    addr: *addr,
                    up: AtomicBool::new(true),
                    up_since: std::sync::atomic::AtomicU64::new(0),
                    gauge,
                    peer: peer(spec, *addr, group_key),
                }
            })
            .collect();
        if let Some(hc) = &spec.health_check {
            let observer = health::Observer {
                pool: spec.name.clone(),
                endpoints: endpoints.clone(),
            };
            lb.set_health_check(Box::new(health::http_check(hc, observer)));
        }
        let (pm, bulkhead, adaptive) = limiter(
            &spec.name,
            spec.max_inflight,
            spec.queue_max,
            spec.queue_timeout,
            spec.adaptive.as_ref(),
            metrics,
        );
        Ok(Arc::new(Pool {
            bulkhead,
            adaptive,
            retries: RetryBudget::default(),
            group,
            metrics: pm,
            spec: spec.clone(),
            lb,
            endpoints,
            next: AtomicUsize::new(0),
        }))
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Demand over capacity of this pool or of its shared backend, whichever is higher.
    pub fn pressure(&self) -> f64 {
        let own = self.bulkhead.pressure();
        self.group
            .as_ref()
            .map_or(own, |g| own.max(g.bulkhead.pressure()))
    }

    /// Feed one finished request to the adaptive limit, if the pool has one.
    pub fn observe(&self, sample: Sample) {
        feed(self.adaptive.as_ref(), &self.bulkhead, sample);
    }

    /// Next endpoint in round-robin order that is in rotation. An endpoint in slow start takes
    /// its turn with probability equal to its ramp (else the turn passes on); if no endpoint
    /// in rotation takes it, the first one in rotation does.
    pub fn select(&self) -> Option<&Endpoint> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut first_up = None;
        let mut now = None;
        for k in 0..n {
            let e = &self.endpoints[(start + k) % n];
            if !e.is_up() {
                continue;
            }
            first_up.get_or_insert(e);
            if e.up_since.load(Ordering::Relaxed) == 0 {
                return Some(e);
            }
            let t = *now.get_or_insert_with(crate::protection::now_nanos);
            let ramp = e.ramp(t, self.spec.slow_start);
            if ramp >= 1.0 || rand::random::<f64>() < ramp {
                return Some(e);
            }
        }
        first_up
    }

    /// The peer for one request to `endpoint`.
    pub fn peer(&self, endpoint: &Endpoint) -> Box<HttpPeer> {
        Box::new(endpoint.peer.clone())
    }
}

/// The metric handles, bulkhead and (if `adaptive`) adaptive limit of a pool or a group.
pub(crate) fn limiter(
    name: &str,
    max_inflight: usize,
    queue_max: usize,
    queue_timeout: Duration,
    adaptive: Option<&AdaptiveSpec>,
    metrics: &Metrics,
) -> (PoolMetrics, Bulkhead, Option<Adaptive>) {
    let mut pm = metrics.pool(name);
    // (A pool a reload turns static loses the request-limit series in `Metrics::prune`.)
    if adaptive.is_some() {
        pm.request_limit = Some(metrics.request_limit(name));
    }
    let bulkhead = Bulkhead::new(max_inflight, queue_max, queue_timeout, pm.clone());
    let adaptive = adaptive.map(|a| adaptive_for(a, max_inflight, &bulkhead));
    (pm, bulkhead, adaptive)
}

/// The adaptive limit for a bulkhead of `max_inflight` (a pool's or a group's), starting the
/// bulkhead at its initial limit.
fn adaptive_for(a: &AdaptiveSpec, max_inflight: usize, b: &Bulkhead) -> Adaptive {
    let cfg = LimitConfig {
        min_limit: a.min_limit,
        max_limit: max_inflight as u32,
        initial_limit: a.initial_limit,
        tolerance: a.tolerance,
        backoff: a.backoff,
        smoothing: a.smoothing,
    };
    let adaptive = Adaptive::new(cfg, a.window);
    b.set_limit(adaptive.initial_limit());
    b.set_request_limit(adaptive.request_limit());
    adaptive
}

/// Feed a finished request to an adaptive limit and apply a new limit to its bulkhead.
pub(crate) fn feed(adaptive: Option<&Adaptive>, b: &Bulkhead, sample: Sample) {
    if let Some(a) = adaptive {
        if let Some(limit) = a.sample(sample, crate::protection::now_nanos()) {
            b.set_limit(limit);
            b.set_request_limit(a.request_limit());
        }
    }
}

fn peer(spec: &PoolSpec, addr: SocketAddr, group_key: u64) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.group_key = group_key;
    let o = &mut peer.options;
    o.connection_timeout = Some(spec.connect_timeout);
    o.total_connection_timeout = Some(spec.connect_timeout);
    o.read_timeout = Some(spec.request_timeout);
    o.write_timeout = Some(spec.request_timeout);
    o.idle_timeout = Some(UPSTREAM_IDLE);
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(slow_start: Duration) -> Arc<Pool> {
        let spec = PoolSpec {
            name: "p".into(),
            endpoints: vec![
                ("a".into(), "127.0.0.1:1".parse().unwrap()),
                ("b".into(), "127.0.0.1:2".parse().unwrap()),
            ],
            max_inflight: 10,
            queue_max: 0,
            queue_timeout: Duration::from_millis(10),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            health_check: None,
            adaptive: None,
            group: None,
            slow_start,
        };
        Pool::new(&spec, &Metrics::new(), None).unwrap()
    }

    #[test]
    fn the_request_limit_series_exists_only_while_the_pool_is_adaptive() {
        let m = Metrics::new();
        let spec = AdaptiveSpec {
            min_limit: 4,
            initial_limit: 20,
            tolerance: 1.5,
            backoff: 0.9,
            smoothing: 0.2,
            window: Duration::from_millis(100),
        };
        let series = "levee_concurrency_limit_requests{pool=\"p\"} 20";
        let text = |m: &Metrics| String::from_utf8(m.encode()).unwrap();
        let (_pm, b, a) = limiter("p", 64, 8, Duration::from_secs(1), Some(&spec), &m);
        assert!(a.is_some());
        assert_eq!(b.request_limit(), Some(20));
        assert!(text(&m).contains(series), "{}", text(&m));
        // Static: no request limit, and no series made for it.
        let m = Metrics::new();
        let (_pm, b, _) = limiter("p", 64, 8, Duration::from_secs(1), None, &m);
        assert_eq!(b.request_limit(), None);
        assert!(!text(&m).contains("levee_concurrency_limit_requests{"));
    }

    #[test]
    fn a_returning_endpoint_ramps_from_ten_percent_to_full() {
        let p = pool(Duration::from_secs(10));
        let b = &p.endpoints[1];
        assert!(b.set_up(false));
        assert!(b.set_up(true));
        let back = b.up_since.load(Ordering::Relaxed);
        assert!(back > 0);
        let s = |secs: f64| back + (secs * 1e9) as u64;
        assert_eq!(b.ramp(s(0.0), Duration::from_secs(10)), 0.1);
        assert!((b.ramp(s(5.0), Duration::from_secs(10)) - 0.5).abs() < 1e-9);
        assert_eq!(b.ramp(s(10.0), Duration::from_secs(10)), 1.0);
        // Ramped: the clock is no longer consulted.
        assert_eq!(b.up_since.load(Ordering::Relaxed), 0);
        assert_eq!(b.ramp(s(0.0), Duration::from_secs(10)), 1.0);
    }

    #[test]
    fn selection_gives_a_ramping_endpoint_a_small_share_and_never_none() {
        let p = pool(Duration::from_secs(600));
        let b = &p.endpoints[1];
        b.set_up(false);
        b.set_up(true); // just back: about 10% of its turns
        let picks_b = (0..10_000)
            .filter(|_| p.select().unwrap().label == "b")
            .count();
        // Half the turns are b's, and it takes about a tenth of those.
        assert!((300..800).contains(&picks_b), "{picks_b}");
        // Alone in rotation, a ramping endpoint still gets every request.
        p.endpoints[0].set_up(false);
        assert!((0..100).all(|_| p.select().unwrap().label == "b"));
        // No slow start: an even split at once.
        let p = pool(Duration::ZERO);
        p.endpoints[1].set_up(false);
        p.endpoints[1].set_up(true);
        let picks_b = (0..10_000)
            .filter(|_| p.select().unwrap().label == "b")
            .count();
        assert!((4_900..5_100).contains(&picks_b), "{picks_b}");
    }
}
