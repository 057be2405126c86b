//! Active HTTP health checks per pool, on Pingora's load-balancing `HttpHealthCheck`: every
//! `interval` each endpoint gets `GET path`; `unhealthy_threshold` failures in a row take it
//! out of rotation, `healthy_threshold` successes bring it back. Changes update
//! `levee_endpoint_up` and are logged. The check loop holds only a weak reference to its
//! pool, so a pool dropped by a reload stops being checked.

use super::{Endpoint, Pool};
use async_trait::async_trait;
use pingora_load_balancing::health_check::{HealthObserve, HttpHealthCheck};
use pingora_load_balancing::Backend;
use std::sync::{Arc, Weak};

use crate::config::HealthCheckSpec;

/// Build the pingora health check for a pool.
pub(super) fn http_check(spec: &HealthCheckSpec, observer: Observer) -> HttpHealthCheck {
    let host = spec.host.as_deref().unwrap_or("localhost");
    let mut hc = HttpHealthCheck::new(host, false);
    if let Ok(mut req) = pingora_http::RequestHeader::build("GET", spec.path.as_bytes(), None) {
        let _ = req.append_header("Host", host);
        let _ = req.append_header("User-Agent", "levee-health-check");
        hc.req = req;
    }
    hc.peer_template.options.connection_timeout = Some(spec.timeout);
    hc.peer_template.options.total_connection_timeout = Some(spec.timeout);
    hc.peer_template.options.read_timeout = Some(spec.timeout);
    hc.consecutive_success = spec.healthy_threshold;
    hc.consecutive_failure = spec.unhealthy_threshold;
    hc.health_changed_callback = Some(Box::new(observer));
    hc
}

/// Puts endpoints in and out of rotation as health flips, with the gauge and a log line.
pub(super) struct Observer {
    pub pool: String,
    pub endpoints: Arc<[Endpoint]>,
}

#[async_trait]
impl HealthObserve for Observer {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let addr = target.addr.as_inet().copied();
        for e in self.endpoints.iter().filter(|e| Some(e.addr) == addr) {
            if !e.set_up(healthy) {
                continue;
            }
            if healthy {
                tracing::info!(pool = %self.pool, endpoint = %e.label, "endpoint back in rotation: health checks pass");
            } else {
                tracing::warn!(pool = %self.pool, endpoint = %e.label, "endpoint out of rotation: health checks fail");
            }
        }
    }
}

/// Run the pool's health checks until the pool is dropped.
pub async fn run(pool: Weak<Pool>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        let Some(interval) = p.spec.health_check.as_ref().map(|h| h.interval) else {
            return;
        };
        p.lb.backends().run_health_check(true).await;
        drop(p);
        tokio::time::sleep(interval).await;
    }
}
