//! `GET /admin/status`: a JSON view of every route and pool of the running config, for
//! people and scripts during an incident. Built on demand from the snapshot and metric
//! handles; never on the request path.

use crate::config::ClientKey;
use crate::runtime::Shared;
use crate::switches::Source;

fn switch_json(shared: &Shared, route: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
    let (state, source) = shared.switches.state(route, now);
    match source {
        Source::Default => json!({ "state": state.as_str(), "source": "default" }),
        Source::Schedule(name) => {
            json!({ "state": state.as_str(), "source": "schedule", "schedule": name })
        }
        Source::Manual(sw) => json!({
            "state": state.as_str(),
            "source": "manual",
            "by": sw.by,
            "reason": sw.reason,
            "set_at": sw.set_at.to_rfc3339(),
            "until": sw.until.map(|u| u.to_rfc3339()),
        }),
    }
}
use serde_json::{json, Value};

pub fn status(shared: &Shared) -> Value {
    let rt = shared.current.load_full();
    let now = chrono::Utc::now();
    let routes: Vec<Value> = rt
        .routes
        .iter()
        .map(|r| {
            let rejections: serde_json::Map<String, Value> = r
                .metrics
                .rejection_counts()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({
                "name": r.spec.name,
                "pool": r.spec.pool,
                "priority": r.spec.priority.as_str(),
                "cost": r.spec.cost,
                "switch": switch_json(shared, &r.spec.name, now),
                "requests_total": r.metrics.total_requests(),
                "rejections_total": rejections,
                "shadow": r.spec.shadow,
                "breaker": r.protection.breaker_state().map(|s| s.as_str()),
                "rate_limit": r.spec.rate_limit.as_ref().map(|l| json!({
                    "rps": l.rps, "burst": l.burst, "shadow": l.shadow || r.spec.shadow,
                })),
                "client_rate_limit": r.spec.client_rate_limit.as_ref().map(|l| json!({
                    "key": match &l.key {
                        ClientKey::Ip => "ip".to_string(),
                        ClientKey::Header(h) => format!("header:{h}"),
                        ClientKey::Cookie(c) => format!("cookie:{c}"),
                    },
                    "rps": l.rps, "burst": l.burst, "max_keys": l.max_keys,
                    "keys_tracked": r.protection.client_keys(),
                    "shadow": l.shadow || r.spec.shadow,
                })),
                "costly": r.protection.learned.as_ref().map(|l| l.top(10).into_iter().map(|c| json!({
                    "value": c.value,
                    "requests": c.count,
                    "mean_latency_ms": c.mean_latency.as_secs_f64() * 1000.0,
                    "times_median": c.ratio,
                })).collect::<Vec<_>>()),
                "degrade": r.spec.degrade.as_ref().map(|d| json!({
                    "status": d.status,
                    "body_file": d.body_file.as_ref().map(|p| p.display().to_string()),
                    "mode": match d.mode {
                        crate::config::DegradeMode::Body => "body",
                        crate::config::DegradeMode::Stale => "stale",
                    },
                })),
                "cache": r.cache.as_ref().map(|c| {
                    use pingora_cache::eviction::EvictionManager;
                    let lookups: serde_json::Map<String, Value> = crate::cache::Lookup::ALL
                        .iter()
                        .map(|l| (l.as_str().to_string(), json!(c.metrics.lookups[*l as usize].get())))
                        .collect();
                    json!({
                        "max_size": c.spec.max_size,
                        "bytes": c.store.budget.total_size(),
                        "entries": c.store.budget.total_items(),
                        "evicted": c.store.budget.evicted_items(),
                        "lookups": lookups,
                    })
                }),
            })
        })
        .collect();
    let pools: Vec<Value> = rt
        .pools
        .iter()
        .map(|p| {
            let endpoints: Vec<Value> = p
                .endpoints
                .iter()
                .map(|e| json!({ "endpoint": e.label, "up": e.is_up() }))
                .collect();
            json!({
                "name": p.name(),
                "limit": p.bulkhead.limit(),
                "cutoff": p.bulkhead.cutoff().as_str(),
                "pressure": p.bulkhead.pressure(),
                "max_inflight": p.bulkhead.max_inflight(),
                "inflight": p.bulkhead.inflight(),
                "request_limit": p.bulkhead.request_limit(),
                "requests_inflight": p.bulkhead.requests(),
                "queue": { "depth": p.bulkhead.queued(), "max": p.bulkhead.queue_max(),
                           "timeout_ms": p.spec.queue_timeout.as_millis() as u64 },
                "health_check": p.spec.health_check.as_ref().map(|h| json!({
                    "path": h.path, "interval_ms": h.interval.as_millis() as u64 })),
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({
        // Which process answers: tells an SRE whether a restart happened and which build runs.
        "process": {
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": shared.started.elapsed().as_secs(),
        },
        "config": rt.config.source.as_ref().map(|p| p.display().to_string()),
        "routes": routes,
        "pools": pools,
        "unrouted": { "requests_total": rt.unrouted.total_requests() },
        "groups": rt.groups.iter().map(|g| json!({
            "name": g.spec.name,
            "limit": g.bulkhead.limit(),
            "max_inflight": g.bulkhead.max_inflight(),
            "inflight": g.bulkhead.inflight(),
            "request_limit": g.bulkhead.request_limit(),
            "requests_inflight": g.bulkhead.requests(),
            "queue": { "depth": g.bulkhead.queued(), "max": g.bulkhead.queue_max() },
            "cutoff": g.bulkhead.cutoff().as_str(),
            "pressure": g.bulkhead.pressure(),
            "pools": rt.pools.iter().filter(|p| p.spec.group.as_deref() == Some(g.spec.name.as_str()))
                .map(|p| p.name()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "schedules": rt.config.schedules.iter().map(|sc| json!({
            "name": sc.name,
            "from": sc.from.to_rfc3339(),
            "until": sc.until.to_rfc3339(),
            "status": if sc.applies(now) { "active" } else if now < sc.from { "upcoming" } else { "past" },
            "switches": sc.switches.iter().map(|(r, st)| (r.clone(), json!(st.as_str())))
                .collect::<serde_json::Map<String, Value>>(),
        })).collect::<Vec<_>>(),
    })
}
