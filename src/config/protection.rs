//! Validation of a route's protections (DESIGN.md §1): `rate_limit`, `client_rate_limit`,
//! `circuit_breaker`, `degrade` and `shadow`. Each block is checked key by key so every
//! mistake is reported with its path; the degrade body is read here, at load, so a missing
//! file is a config error rather than a failure in the middle of an incident.

use super::diag::Diags;
use super::model::*;
use super::schema::*;
use super::validate::{duration_in, int_in};
use std::path::Path;
use std::time::Duration;

/// Largest degrade body levee loads (it is held in memory and sent on every rejection).
const MAX_DEGRADE_BODY: u64 = 1 << 20;
/// Highest rate a limit accepts: beyond this a limit protects nothing.
const MAX_RPS: f64 = 10_000_000.0;

/// The protections of one route, or `None` after reporting what is wrong.
pub(super) struct Protections {
    pub cost_key: Option<CostKey>,
    pub max_body: Option<u64>,
    pub rate_limit: Option<RateLimitSpec>,
    pub client_rate_limit: Option<ClientRateLimitSpec>,
    pub circuit_breaker: Option<BreakerSpec>,
    pub degrade: Option<DegradeSpec>,
    pub cache: Option<CacheSpec>,
}

pub(super) fn validate_protections(
    r: &RawRoute,
    base: &str,
    base_dir: &Path,
    d: &mut Diags,
) -> Option<Protections> {
    let p = |k: &str| format!("{base}.{k}");
    let mut ok = true;
    let rate_limit = r.rate_limit.as_ref().and_then(|raw| {
        let v = rate_limit(raw, &p("rate_limit"), d);
        ok &= v.is_some();
        v
    });
    let client_rate_limit = r.client_rate_limit.as_ref().and_then(|raw| {
        let v = client_rate_limit(raw, &p("client_rate_limit"), d);
        ok &= v.is_some();
        v
    });
    let circuit_breaker = r.circuit_breaker.as_ref().and_then(|raw| {
        let v = breaker(raw, &p("circuit_breaker"), d);
        ok &= v.is_some();
        v
    });
    let degrade = r.degrade.as_ref().and_then(|raw| {
        let v = degrade(raw, &p("degrade"), base_dir, d);
        ok &= v.is_some();
        v
    });
    let stale_mode = degrade
        .as_ref()
        .is_some_and(|g| g.mode == DegradeMode::Stale);
    if stale_mode && r.cache.is_none() {
        d.error(
            p("degrade.mode"),
            "\"stale\" needs a cache on the route: add `[routes.cache]`",
        );
        ok = false;
    }
    let cache = r.cache.as_ref().and_then(|raw| {
        let stale_default = if stale_mode {
            super::cache::STALE_DEGRADE_DEFAULT
        } else {
            Duration::ZERO
        };
        let v = super::cache::validate_cache(raw, &p("cache"), stale_default, d);
        ok &= v.is_some();
        v
    });
    let cost_key = match r.cost_key.as_deref() {
        None => None,
        Some("path") => Some(CostKey::Path),
        Some(k) => {
            match k.split_once(':') {
                Some(("query", name)) if !name.is_empty() && name.len() <= 128 => {
                    Some(CostKey::Query(name.to_string()))
                }
                Some(("header", name)) if valid_token(name) => {
                    Some(CostKey::Header(name.to_ascii_lowercase()))
                }
                _ => {
                    d.error(
                    p("cost_key"),
                    format!("bad cost key {k:?}: expected \"query:NAME\", \"header:NAME\" or \"path\""),
                );
                    ok = false;
                    None
                }
            }
        }
    };
    let max_body = match r.max_body.as_deref() {
        None => None,
        Some(v) => {
            let n = super::validate::size_in(Some(v), 0, 0, 1 << 40, &p("max_body"), d);
            ok &= n.is_some();
            n
        }
    };
    ok.then_some(Protections {
        cost_key,
        max_body,
        rate_limit,
        client_rate_limit,
        circuit_breaker,
        degrade,
        cache,
    })
}

/// A rate: required, positive, finite, at most `MAX_RPS`.
fn rps(v: Option<f64>, path: &str, d: &mut Diags) -> Option<f64> {
    match v {
        None => {
            d.error(path, "missing: requests per second, e.g. `rps = 50`");
            None
        }
        Some(x) if !(x.is_finite() && x > 0.0 && x <= MAX_RPS) => {
            d.error(
                path,
                format!("{x} is out of range: expected more than 0, up to {MAX_RPS}"),
            );
            None
        }
        Some(x) if 1.0 / x > 86_400.0 => {
            d.error(path, format!("{x} is below one request a day"));
            None
        }
        Some(x) => Some(x),
    }
}

/// Burst: how many requests may arrive at once; defaults to one second's worth (at least 1).
fn burst(v: Option<i64>, rps: Option<f64>, path: &str, d: &mut Diags) -> Option<u32> {
    let default = rps.map_or(1, |r| r.ceil().clamp(1.0, 1_000_000.0) as i64);
    int_in(v, default, 1, 1_000_000, path, d).map(|b| b as u32)
}

fn rate_limit(raw: &RawRateLimit, base: &str, d: &mut Diags) -> Option<RateLimitSpec> {
    let p = |k: &str| format!("{base}.{k}");
    let rps = rps(raw.rps, &p("rps"), d);
    let burst = burst(raw.burst, rps, &p("burst"), d);
    Some(RateLimitSpec {
        rps: rps?,
        burst: burst?,
        shadow: raw.shadow.unwrap_or(false),
    })
}

fn client_rate_limit(
    raw: &RawClientRateLimit,
    base: &str,
    d: &mut Diags,
) -> Option<ClientRateLimitSpec> {
    let p = |k: &str| format!("{base}.{k}");
    let key = match raw.key.as_deref() {
        None | Some("ip") => Some(ClientKey::Ip),
        Some(k) => {
            match k.split_once(':') {
                Some(("header", name)) if valid_token(name) => {
                    Some(ClientKey::Header(name.to_ascii_lowercase()))
                }
                Some(("cookie", name)) if valid_token(name) => Some(ClientKey::Cookie(name.into())),
                _ => {
                    d.error(
                    p("key"),
                    format!("bad client key {k:?}: expected \"ip\", \"header:NAME\" or \"cookie:NAME\""),
                );
                    None
                }
            }
        }
    };
    let rps = rps(raw.rps, &p("rps"), d);
    let burst = burst(raw.burst, rps, &p("burst"), d);
    let max_keys = int_in(raw.max_keys, 100_000, 16, 10_000_000, &p("max_keys"), d);
    Some(ClientRateLimitSpec {
        key: key?,
        rps: rps?,
        burst: burst?,
        max_keys: max_keys? as usize,
        shadow: raw.shadow.unwrap_or(false),
    })
}

/// An HTTP token (header or cookie name).
pub(super) fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn ratio(v: Option<f64>, default: f64, path: &str, d: &mut Diags) -> Option<f64> {
    let x = v.unwrap_or(default);
    if !(x > 0.0 && x <= 1.0) {
        d.error(
            path,
            format!("{x} is out of range: expected a share above 0 and at most 1"),
        );
        return None;
    }
    Some(x)
}

fn breaker(raw: &RawBreaker, base: &str, d: &mut Diags) -> Option<BreakerSpec> {
    let p = |k: &str| format!("{base}.{k}");
    let sec = Duration::from_secs(1);
    let window = duration_in(
        raw.window.as_deref(),
        10 * sec,
        sec,
        3600 * sec,
        &p("window"),
        d,
    );
    let min_requests = int_in(raw.min_requests, 20, 1, 1_000_000, &p("min_requests"), d);
    let error_ratio = ratio(raw.error_ratio, 0.5, &p("error_ratio"), d);
    let slow_call = match raw.slow_call.as_deref() {
        None => Some(None),
        Some(s) => duration_in(
            Some(s),
            sec,
            Duration::from_millis(1),
            3600 * sec,
            &p("slow_call"),
            d,
        )
        .map(Some),
    };
    if raw.slow_ratio.is_some() && raw.slow_call.is_none() {
        d.error(
            p("slow_ratio"),
            "has no effect without `slow_call` (the duration above which a call counts as slow)",
        );
    }
    let slow_ratio = ratio(raw.slow_ratio, 0.5, &p("slow_ratio"), d);
    let open_for = duration_in(
        raw.open_for.as_deref(),
        5 * sec,
        Duration::from_millis(10),
        3600 * sec,
        &p("open_for"),
        d,
    );
    let probes = int_in(raw.probes, 3, 1, 1000, &p("probes"), d);
    if raw.slow_ratio.is_some() && raw.slow_call.is_none() {
        return None;
    }
    Some(BreakerSpec {
        window: window?,
        min_requests: min_requests? as u32,
        error_ratio: error_ratio?,
        slow_call: slow_call?,
        slow_ratio: slow_ratio?,
        open_for: open_for?,
        probes: probes? as u32,
        shadow: raw.shadow.unwrap_or(false),
    })
}

fn degrade(raw: &RawDegrade, base: &str, base_dir: &Path, d: &mut Diags) -> Option<DegradeSpec> {
    let p = |k: &str| format!("{base}.{k}");
    let status = int_in(raw.status, 503, 200, 599, &p("status"), d);
    let retry_after = match raw.retry_after.as_deref() {
        None => Some(None),
        Some(s) => duration_in(
            Some(s),
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
            &p("retry_after"),
            d,
        )
        .map(Some),
    };
    let content_type = match raw.content_type.as_deref() {
        None => Some("application/json".to_string()),
        Some(c)
            if !c.is_empty() && c.len() <= 256 && c.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            Some(c.to_string())
        }
        Some(c) => {
            d.error(p("content_type"), format!("bad content type {c:?}"));
            None
        }
    };
    if raw.content_type.is_some() && raw.body_file.is_none() {
        d.error(
            p("content_type"),
            "has no effect without `body_file` (levee's own body is JSON)",
        );
    }
    let (body, body_file) = match &raw.body_file {
        None => (Some(None), None),
        Some(f) => {
            let path = base_dir.join(f);
            let read = std::fs::metadata(&path).and_then(|m| {
                if m.len() > MAX_DEGRADE_BODY {
                    Err(std::io::Error::other(format!(
                        "{} bytes, more than the {MAX_DEGRADE_BODY} levee loads",
                        m.len()
                    )))
                } else {
                    std::fs::read(&path)
                }
            });
            match read {
                Ok(b) => (Some(Some(bytes::Bytes::from(b))), Some(path)),
                Err(e) => {
                    d.error(
                        p("body_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    (None, None)
                }
            }
        }
    };
    let mode = match raw.mode.as_deref() {
        None | Some("body") => Some(DegradeMode::Body),
        Some("stale") => Some(DegradeMode::Stale),
        Some(m) => {
            d.error(
                p("mode"),
                format!("unknown mode {m:?}: expected \"body\" or \"stale\""),
            );
            None
        }
    };
    if raw.content_type.is_some() && raw.body_file.is_none() {
        return None;
    }
    Some(DegradeSpec {
        status: status? as u16,
        retry_after: retry_after?,
        body: body?,
        content_type: content_type?,
        body_file,
        mode: mode?,
    })
}
