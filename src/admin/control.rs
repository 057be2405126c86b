//! Mutating admin calls (DESIGN.md §2): `PUT /admin/routes/{name}/switch`,
//! `POST /admin/reload`, and levee's addition `DELETE /admin/cache` (purge). All need
//! `Authorization: Bearer TOKEN` whenever `admin_token_file` is configured (levee refuses a
//! non-loopback `admin_listen` without one). Every switch change and purge is logged as an
//! audit line: who (the token's name), what, why, until when.

use crate::runtime::Shared;
use crate::switches::{Switch, SwitchState};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Largest admin request body read.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest TTL a switch may have.
const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// A mutating call without a valid bearer token.
#[derive(Debug)]
pub struct Unauthorized;

/// Who is calling: the token's name, or `anonymous` when no token is configured.
/// `Err` when a token is configured and the request does not carry a valid one.
pub fn caller(shared: &Shared, authorization: Option<&str>) -> Result<String, Unauthorized> {
    let rt = shared.current.load();
    let tokens = &rt.config.server.admin_tokens;
    if tokens.is_empty() {
        return Ok("anonymous".into());
    }
    let given = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(Unauthorized)?;
    tokens
        .iter()
        .find(|(_, t)| constant_time_eq(t.as_bytes(), given.as_bytes()))
        .map(|(n, _)| n.clone())
        .ok_or(Unauthorized)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    state: String,
    ttl: Option<String>,
    reason: Option<String>,
}

/// Apply a switch request; `Err((status, message))` for a bad request.
pub fn switch(shared: &Shared, route: &str, body: &[u8], by: &str) -> Result<Value, (u16, String)> {
    if !shared
        .current
        .load()
        .routes
        .iter()
        .any(|r| r.spec.name == route)
    {
        return Err((404, format!("no route named {route:?}")));
    }
    let b: SwitchBody = serde_json::from_slice(body)
        .map_err(|e| (400, format!("bad body: {e}; expected {{\"state\":\"off\"|\"degrade\"|\"on\",\"ttl\":\"30m\",\"reason\":\"...\"}}")))?;
    let state = SwitchState::parse(&b.state).ok_or_else(|| {
        (
            400,
            format!("bad state {:?}: expected on, off or degrade", b.state),
        )
    })?;
    let now = Utc::now();
    let until = match b.ttl.as_deref() {
        None => None,
        Some(t) => {
            let d = crate::config::units::parse_duration(t)
                .map_err(|e| (400, format!("bad ttl: {e}")))?;
            if d.is_zero() || d > MAX_TTL {
                return Err((
                    400,
                    format!("bad ttl {t:?}: expected more than 0 and at most 7 days"),
                ));
            }
            Some(now + chrono::Duration::from_std(d).map_err(|e| (400, e.to_string()))?)
        }
    };
    let reason: String = b.reason.unwrap_or_default().chars().take(200).collect();
    let sw = Switch {
        state,
        until,
        reason: reason.clone(),
        by: by.to_string(),
        set_at: now,
    };
    shared.switches.set(route, sw);
    let saved = shared.save_switches();
    tracing::warn!(
        route,
        state = state.as_str(),
        by,
        reason = %reason,
        until = %until.map_or("no expiry".to_string(), |u| u.to_rfc3339()),
        "audit: route switch set"
    );
    Ok(json!({
        "route": route,
        "state": state.as_str(),
        "until": until.map(|u| u.to_rfc3339()),
        "reason": reason,
        "by": by,
        // With `[server] state_file`: whether the switch will survive a restart (false: the
        // file could not be written; the switch applies all the same). Null without one.
        "saved": saved,
    }))
}

pub fn reload(shared: &Arc<Shared>) -> (u16, Value) {
    let o = crate::reload::reload(shared, "admin");
    let body = json!({
        "ok": o.ok,
        "messages": o.messages,
        "routes": o.routes,
        "pools": o.pools,
        "pools_kept": o.pools_kept,
    });
    (if o.ok { 200 } else { 422 }, body)
}

/// `DELETE /admin/cache?route=NAME[&path=/p/123%3Fcolor%3Dred]`: drop every stored copy of
/// one page of a route's cache (all methods, key-header values and `Vary` variants), or the
/// whole route's cache when `path` is left out. `path` is the path and query as clients
/// request it, percent-encoded as a query value.
pub fn purge(shared: &Shared, query: Option<&str>, by: &str) -> Result<Value, (u16, String)> {
    let mut route = None;
    let mut path = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::routing::matchers::decode(v).into_owned();
        match k {
            "route" => route = Some(v),
            "path" => path = Some(v),
            _ => {
                return Err((
                    400,
                    format!("unknown parameter {k:?}: expected route and path"),
                ))
            }
        }
    }
    let route = route.ok_or((
        400,
        "missing route: DELETE /admin/cache?route=NAME[&path=/p/1]".to_string(),
    ))?;
    if let Some(p) = &path {
        if !p.starts_with('/') {
            return Err((
                400,
                format!("bad path {p:?}: expected the request path, starting with /"),
            ));
        }
    }
    let rt = shared.current.load();
    let r = rt
        .routes
        .iter()
        .find(|r| r.spec.name == route)
        .ok_or_else(|| (404, format!("no route named {route:?}")))?;
    let cache = r
        .cache
        .as_ref()
        .ok_or_else(|| (404, format!("route {route:?} has no cache")))?;
    let purged = cache.purge(path.as_deref());
    tracing::warn!(
        route,
        path = path.as_deref().unwrap_or("(all)"),
        purged,
        by,
        "audit: cache purged"
    );
    Ok(json!({ "route": route, "path": path, "purged": purged, "by": by }))
}
