//! The live, immutable snapshot of a config: router, pools (with their load balancers,
//! bulkheads and health checks) and per-route metric handles. Requests take the current
//! snapshot once (`new_ctx`) and use it to the end, so a later swap never changes a request
//! in flight. `Shared` holds the snapshot behind `ArcSwap` plus process-wide state.

use crate::config::{Config, RouteSpec, NO_ROUTE};
use crate::metrics::{Metrics, RouteMetrics};
use crate::pools::Pool;
use crate::protection::Protection;
use crate::routing::Router;
use arc_swap::ArcSwap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct Route {
    pub spec: RouteSpec,
    pub pool: Arc<Pool>,
    pub metrics: RouteMetrics,
    pub protection: Protection,
}

impl Route {
    /// Number of endpoints of this route's pool (bounds connect retries).
    pub fn spec_endpoints(&self) -> usize {
        self.pool.spec.endpoints.len()
    }
}

pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    /// Same order as `config.routes` and the router's indexes.
    pub routes: Vec<Arc<Route>>,
    pub pools: Vec<Arc<Pool>>,
    /// Metrics of requests that matched no route (`route="none"`).
    pub unrouted: RouteMetrics,
}

impl Runtime {
    pub fn build(config: Config, metrics: &Metrics) -> Result<Runtime, String> {
        let pools = config
            .pools
            .iter()
            .map(|p| Pool::new(p, metrics))
            .collect::<Result<Vec<_>, _>>()?;
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let pool = pools
                    .iter()
                    .find(|p| p.name() == r.pool)
                    .cloned()
                    .ok_or_else(|| format!("route {}: unknown pool {}", r.name, r.pool))?;
                Ok(Arc::new(Route {
                    metrics: metrics.route(&r.name, r.circuit_breaker.is_some()),
                    protection: Protection::new(r),
                    spec: r.clone(),
                    pool,
                }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let router = Router::new(config.routes.iter().map(|r| r.matcher.clone()).collect())?;
        Ok(Runtime {
            config: Arc::new(config),
            router,
            routes,
            pools,
            unrouted: metrics.route(NO_ROUTE, false),
        })
    }
}

/// Process-wide state shared by the proxy, the admin listener and background tasks.
pub struct Shared {
    pub current: ArcSwap<Runtime>,
    pub metrics: Arc<Metrics>,
    /// Set once the listeners are up (served by `/readyz`).
    pub ready: AtomicBool,
    pub log: crate::ratelog::RateLog,
}

impl Shared {
    pub fn new(rt: Runtime, metrics: Arc<Metrics>) -> Arc<Shared> {
        Arc::new(Shared {
            current: ArcSwap::from_pointee(rt),
            metrics,
            ready: AtomicBool::new(false),
            log: crate::ratelog::RateLog::new(20),
        })
    }
}
