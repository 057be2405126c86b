//! Hot reload: re-read the config file, validate it fully, and swap the new snapshot in
//! atomically. Triggered by SIGHUP, `POST /admin/reload`, or a change of the file (watched by
//! the supervisor, debounced). Requests in flight finish under the snapshot they started with.
//! An invalid config is refused with every error (logged, and returned to the admin caller),
//! and the running config stays. So is a config with no routes replacing one that has some
//! (an emptied or truncated file would otherwise answer every request 404). `levee_config_reloads_total{result}` counts both.
//!
//! What survives (see `Runtime::rebuild`): pools whose settings are unchanged keep their
//! bulkhead (in-flight slots, queue), adaptive limit, health state and upstream connections;
//! routes whose name and protections are unchanged keep their breaker state, rate-limit
//! buckets, client table and learned costs; switches are kept whatever changes. What resets:
//! the state of a pool or route whose settings changed; the metric series of routes, pools,
//! groups and endpoints the new config no longer has are removed. `[server]` changes (listen
//! addresses, threads, tokens, `state_file`) need a restart: they are reported and not
//! applied.

use crate::config::{load_file, Severity};
use crate::runtime::{Runtime, Shared};
use std::sync::Arc;

/// The result of a reload, for the log and the admin caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    /// Errors (when refused) or warnings (when applied), one per line.
    pub messages: Vec<String>,
    pub routes: usize,
    pub pools: usize,
    /// Pools that kept their state / were built anew.
    pub pools_kept: usize,
}

pub fn reload(shared: &Arc<Shared>, trigger: &str) -> Outcome {
    let _one_at_a_time = shared.reloading.lock().unwrap_or_else(|e| e.into_inner());
    let old = shared.current.load_full();
    let Some(path) = old.config.source.clone() else {
        return refused(
            shared,
            trigger,
            vec!["the running config was not read from a file".into()],
        );
    };
    let loaded = match load_file(&path) {
        Ok(l) => l,
        Err(diags) => {
            let errors = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| format!("{}: {d}", path.display()))
                .collect();
            return refused(shared, trigger, errors);
        }
    };
    if loaded.config.routes.is_empty() && !old.config.routes.is_empty() {
        // Valid at start (with a warning), but as a change it would answer every request
        // 404: an emptied or truncated file is the usual cause, not an intent.
        return refused(
            shared,
            trigger,
            vec![format!(
                "{}: routes: the new config has no routes, so every request would get 404 no_route; the running {} routes stay (to run without routes, restart with that file)",
                path.display(),
                old.config.routes.len()
            )],
        );
    }
    let mut messages: Vec<String> = loaded
        .warnings
        .iter()
        .map(|d| format!("{}: {d}", path.display()))
        .collect();
    let mut config = loaded.config;
    if config.log != old.config.log {
        messages
            .push("[log] changed: the access log settings take effect only after a restart".into());
        config.log = old.config.log.clone();
    }
    if config.server != old.config.server {
        messages.push(
            "[server] changed: listen addresses, threads and admin tokens take effect only after a restart; the running values are kept".into(),
        );
        config.server = old.config.server.clone();
    }
    let rt = match Runtime::rebuild(config, &shared.metrics, Some(&old)) {
        Ok(rt) => rt,
        Err(e) => return refused(shared, trigger, vec![e]),
    };
    let kept = rt
        .pools
        .iter()
        .filter(|p| old.pools.iter().any(|o| Arc::ptr_eq(o, p)))
        .count();
    let new_pools: Vec<_> = rt
        .pools
        .iter()
        .filter(|p| !old.pools.iter().any(|o| Arc::ptr_eq(o, p)))
        .cloned()
        .collect();
    let out = Outcome {
        ok: true,
        routes: rt.routes.len(),
        pools: rt.pools.len(),
        pools_kept: kept,
        messages,
    };
    shared.current.store(Arc::new(rt));
    // Series of what the new config dropped would otherwise stand at their last values.
    let pruned = shared.metrics.prune(&shared.current.load().in_use());
    for pool in new_pools {
        if pool.spec.health_check.is_some() {
            tokio::spawn(crate::pools::health::run(Arc::downgrade(&pool)));
        }
    }
    shared
        .metrics
        .config_reloads
        .with_label_values(&["success"])
        .inc();
    for m in &out.messages {
        tracing::warn!(trigger, "reload: {m}");
    }
    tracing::info!(
        trigger,
        routes = out.routes,
        pools = out.pools,
        pools_kept = out.pools_kept,
        metric_series_removed = pruned,
        "config reloaded"
    );
    out
}

fn refused(shared: &Shared, trigger: &str, errors: Vec<String>) -> Outcome {
    shared
        .metrics
        .config_reloads
        .with_label_values(&["failure"])
        .inc();
    for e in &errors {
        tracing::error!(trigger, "reload refused: {e}");
    }
    tracing::error!(
        trigger,
        errors = errors.len(),
        "reload refused: the running config stays"
    );
    Outcome {
        ok: false,
        messages: errors,
        routes: 0,
        pools: 0,
        pools_kept: 0,
    }
}
