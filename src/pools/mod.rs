//! Upstream pools: each pool is an isolated set of endpoints with its own round-robin
//! selection (skipping endpoints marked down), health checks, timeouts, bulkhead and
//! upstream connection pool (Pingora keys reusable connections by peer `group_key`, which is
//! per pool, so two pools never share a connection even when they share an address).

pub mod bulkhead;
pub mod health;

use crate::config::PoolSpec;
use crate::metrics::{Metrics, PoolMetrics};
use bulkhead::Bulkhead;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::{selection::RoundRobin, Backend, LoadBalancer};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct Pool {
    pub spec: PoolSpec,
    pub lb: LoadBalancer<RoundRobin>,
    pub bulkhead: Bulkhead,
    pub metrics: PoolMetrics,
    /// Written label and address of each endpoint, with its `levee_endpoint_up` gauge.
    pub endpoints: Vec<(String, SocketAddr, prometheus::IntGauge)>,
    group_key: u64,
}

/// How long an idle upstream connection is kept for reuse.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

impl Pool {
    pub fn new(spec: &PoolSpec, metrics: &Metrics) -> Result<Arc<Pool>, String> {
        let addrs: Vec<SocketAddr> = spec.endpoints.iter().map(|(_, a)| *a).collect();
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter())
            .map_err(|e| format!("pool {}: {e}", spec.name))?;
        let endpoints: Vec<_> = spec
            .endpoints
            .iter()
            .map(|(label, addr)| {
                let g = metrics.endpoint_up(&spec.name, label);
                g.set(1);
                (label.clone(), *addr, g)
            })
            .collect();
        if let Some(hc) = &spec.health_check {
            let observer = health::Observer {
                pool: spec.name.clone(),
                gauges: endpoints
                    .iter()
                    .map(|(l, a, g)| (*a, l.clone(), g.clone()))
                    .collect(),
            };
            lb.set_health_check(Box::new(health::http_check(hc, observer)));
        }
        let pm = metrics.pool(&spec.name);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ("levee-pool", &spec.name).hash(&mut h);
        Ok(Arc::new(Pool {
            bulkhead: Bulkhead::new(
                spec.max_inflight,
                spec.queue_max,
                spec.queue_timeout,
                pm.clone(),
            ),
            metrics: pm,
            spec: spec.clone(),
            lb,
            endpoints,
            group_key: h.finish(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Next endpoint in round-robin order that is in rotation.
    pub fn select(&self) -> Option<Backend> {
        self.lb.select(b"", self.spec.endpoints.len().max(1) * 2)
    }

    /// Whether the endpoint at `addr` is in rotation.
    pub fn endpoint_up(&self, addr: &SocketAddr) -> bool {
        self.lb
            .backends()
            .get_backend()
            .iter()
            .find(|b| b.addr.as_inet() == Some(addr))
            .is_some_and(|b| self.lb.backends().ready(b))
    }

    /// The peer for one request to `backend`, with this pool's timeouts and connection group.
    pub fn peer(&self, backend: &Backend) -> HttpPeer {
        let mut peer = HttpPeer::new(backend.addr.clone(), false, String::new());
        peer.group_key = self.group_key;
        let o = &mut peer.options;
        o.connection_timeout = Some(self.spec.connect_timeout);
        o.total_connection_timeout = Some(self.spec.connect_timeout);
        o.read_timeout = Some(self.spec.request_timeout);
        o.write_timeout = Some(self.spec.request_timeout);
        o.idle_timeout = Some(UPSTREAM_IDLE);
        peer
    }
}
