//! The live, immutable snapshot of a config: router, pools (with their load balancers,
//! bulkheads and health checks) and per-route metric handles. Requests take the current
//! snapshot once (`new_ctx`) and use it to the end, so a later swap never changes a request
//! in flight. `Shared` holds the snapshot behind `ArcSwap` plus process-wide state.

use crate::config::{Config, RouteSpec, NO_ROUTE};
use crate::metrics::{InUse, Metrics, RouteMetrics};
use crate::pools::group::Group;
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
    /// Shared with the previous snapshot when a reload left this route's protections as
    /// they were, so breaker state, buckets and learned costs carry over.
    pub protection: Arc<Protection>,
    /// `[routes.cache]`: the route's cache (its store outlives snapshots).
    pub cache: Option<crate::cache::RouteCache>,
    /// The route as a class for the adaptive limits (a hash of its name: stable across
    /// reloads).
    pub class: u64,
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
    pub groups: Vec<Arc<Group>>,
    /// Metrics of requests that matched no route (`route="none"`).
    pub unrouted: RouteMetrics,
}

/// Whether two route specs have the same protections (state can carry over).
fn same_protections(a: &RouteSpec, b: &RouteSpec) -> bool {
    a.shadow == b.shadow
        && a.degrade_under_pressure == b.degrade_under_pressure
        && a.rate_limit == b.rate_limit
        && a.client_rate_limit == b.client_rate_limit
        && a.circuit_breaker == b.circuit_breaker
        && a.cost_key == b.cost_key
}

impl Runtime {
    pub fn build(config: Config, metrics: &Metrics) -> Result<Runtime, String> {
        Self::rebuild(config, metrics, None)
    }

    /// The metric label values this snapshot uses (what `Metrics::prune` keeps).
    pub fn in_use(&self) -> InUse<'_> {
        let mut u = InUse::default();
        u.routes.insert(NO_ROUTE);
        for r in &self.routes {
            let name = r.spec.name.as_str();
            u.routes.insert(name);
            if r.spec.circuit_breaker.is_some() {
                u.breakers.insert(name);
            }
            if r.cache.is_some() {
                u.caches.insert(name);
            }
        }
        for p in &self.pools {
            let name = p.spec.name.as_str();
            u.pools.insert(name);
            if p.adaptive.is_some() {
                u.adaptive.insert(name);
            }
            for e in p.endpoints.iter() {
                u.endpoints.insert((name, e.label.as_str()));
            }
        }
        for g in &self.groups {
            let name = g.spec.name.as_str();
            u.pools.insert(name);
            if g.adaptive.is_some() {
                u.adaptive.insert(name);
            }
        }
        u
    }

    /// Build a snapshot, keeping from `prev` every pool whose spec is unchanged (its
    /// bulkhead, in-flight count, adaptive limit, health state, connections) and the
    /// protections of every route whose name and protections are unchanged.
    pub fn rebuild(
        config: Config,
        metrics: &Metrics,
        prev: Option<&Runtime>,
    ) -> Result<Runtime, String> {
        let groups: Vec<Arc<Group>> = config
            .groups
            .iter()
            .map(|g| {
                prev.and_then(|r| r.groups.iter().find(|o| o.spec == *g))
                    .cloned()
                    .unwrap_or_else(|| Group::new(g, metrics))
            })
            .collect();
        let pools = config
            .pools
            .iter()
            .map(|p| {
                let group = match &p.group {
                    None => None,
                    Some(name) => Some(
                        groups
                            .iter()
                            .find(|g| &g.spec.name == name)
                            .cloned()
                            .ok_or_else(|| format!("pool {}: unknown group {name}", p.name))?,
                    ),
                };
                // Keep a pool only if its settings and its group are the same as before.
                let kept = prev.and_then(|r| {
                    r.pools.iter().find(|o| {
                        o.spec == *p
                            && match (&o.group, &group) {
                                (None, None) => true,
                                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                                _ => false,
                            }
                    })
                });
                match kept {
                    Some(pool) => Ok(pool.clone()),
                    None => Pool::new(p, metrics, group),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let pool = pools
                    .iter()
                    .find(|p| p.name() == r.pool)
                    .cloned()
                    .ok_or_else(|| format!("route {}: unknown pool {}", r.name, r.pool))?;
                let kept = prev
                    .and_then(|rt| rt.routes.iter().find(|o| o.spec.name == r.name))
                    .filter(|o| same_protections(&o.spec, r))
                    .map(|o| o.protection.clone());
                let class = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    r.name.hash(&mut h);
                    h.finish()
                };
                let cache = r
                    .cache
                    .as_ref()
                    .map(|c| crate::cache::RouteCache::new(&r.name, c, metrics.cache(&r.name)));
                Ok(Arc::new(Route {
                    class,
                    cache,
                    metrics: metrics.route(&r.name, r.circuit_breaker.is_some()),
                    protection: kept.unwrap_or_else(|| Arc::new(Protection::new(r))),
                    spec: r.clone(),
                    pool,
                }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let router = Router::new(config.routes.iter().map(|r| r.matcher.clone()).collect())?;
        // A route whose cache is gone (route removed or cache turned off): free its pages.
        for old in prev.iter().flat_map(|p| p.routes.iter()) {
            let kept = routes
                .iter()
                .any(|r| r.spec.name == old.spec.name && r.cache.is_some());
            if old.cache.is_some() && !kept {
                crate::cache::retire(&old.spec.name);
            }
        }
        Ok(Runtime {
            config: Arc::new(config),
            router,
            routes,
            pools,
            groups,
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
    /// Route switches (manual and scheduled): outlive every snapshot.
    pub switches: crate::switches::Switches,
    /// Serialises reloads (SIGHUP, admin call and file watch may race).
    pub reloading: std::sync::Mutex<()>,
    /// Serialises writes of `[server] state_file`.
    saving: std::sync::Mutex<()>,
    /// The access log, when `[log]` is configured (set once at start).
    pub access_log: std::sync::OnceLock<crate::access_log::AccessLog>,
    /// When this process started (uptime in `/admin/status`).
    pub started: std::time::Instant,
}

impl Shared {
    /// Write the manual switches to `[server] state_file`, if there is one: whether they were
    /// saved (`None` without a `state_file`). A failure is logged here; the switch still
    /// applies, in memory.
    pub fn save_switches(&self) -> Option<bool> {
        let path = self.current.load().config.server.state_file.clone()?;
        // One save at a time (the admin call and the supervisor's TTL expiry may race): the
        // file then always holds the latest snapshot.
        let _one = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        match self.switches.save(&path) {
            Ok(()) => Some(true),
            Err(e) => {
                tracing::error!(
                    path = %path.display(),
                    "could not save route switches to server.state_file ({e}): they apply, but a restart would lose them"
                );
                Some(false)
            }
        }
    }

    /// Set the manual switches `[server] state_file` kept (at start), with an audit line each.
    pub fn restore_switches(&self) {
        let rt = self.current.load();
        let Some(path) = rt.config.server.state_file.as_deref() else {
            return;
        };
        let known = |r: &str| rt.routes.iter().any(|x| x.spec.name == r);
        match self.switches.restore(path, chrono::Utc::now(), known) {
            Ok((restored, skipped)) => {
                for (route, sw) in restored {
                    tracing::warn!(
                        route = %route,
                        state = sw.state.as_str(),
                        by = %sw.by,
                        reason = %sw.reason,
                        until = %sw.until.map_or("no expiry".to_string(), |u| u.to_rfc3339()),
                        "audit: route switch restored from server.state_file"
                    );
                }
                for route in skipped {
                    tracing::warn!(route = %route, "server.state_file: a saved switch names a route the config no longer has; dropped");
                }
            }
            Err(e) => tracing::error!(
                "server.state_file: {e}: starting WITHOUT the saved route switches; set them again"
            ),
        }
    }

    pub fn new(rt: Runtime, metrics: Arc<Metrics>) -> Arc<Shared> {
        Arc::new(Shared {
            current: ArcSwap::from_pointee(rt),
            metrics,
            ready: AtomicBool::new(false),
            log: crate::ratelog::RateLog::new(20),
            switches: crate::switches::Switches::default(),
            reloading: std::sync::Mutex::new(()),
            saving: std::sync::Mutex::new(()),
            access_log: std::sync::OnceLock::new(),
            started: std::time::Instant::now(),
        })
    }
}
