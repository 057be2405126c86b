//! Validation of `routes.cache` (the route's in-proxy HTTP cache): sizes, windows, the
//! headers added to the cache key, and how long a request waits on another's fill.

use super::diag::Diags;
use super::model::CacheSpec;
use super::schema::RawCache;
use super::validate::{duration_in, size_in};
use std::time::Duration;

/// Default budget of a route's cache.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;
/// Default largest stored response: a product page with its images inlined stays well under.
pub const DEFAULT_MAX_OBJECT: u64 = 8 << 20;
/// `stale_if_error` when `degrade.mode = "stale"` and the key is left out.
pub const STALE_DEGRADE_DEFAULT: Duration = Duration::from_secs(600);

const DAY: Duration = Duration::from_secs(86_400);

/// `stale_default`: the `stale_if_error` used when the key is absent.
pub(super) fn validate_cache(
    raw: &RawCache,
    base: &str,
    stale_default: Duration,
    d: &mut Diags,
) -> Option<CacheSpec> {
    let p = |k: &str| format!("{base}.{k}");
    let max_size = size_in(
        raw.max_size.as_deref(),
        DEFAULT_MAX_SIZE,
        64 << 10,
        1 << 40,
        &p("max_size"),
        d,
    );
    let max_object_size = size_in(
        raw.max_object_size.as_deref(),
        DEFAULT_MAX_OBJECT.min(max_size.unwrap_or(DEFAULT_MAX_SIZE) / 4),
        1,
        1 << 32,
        &p("max_object_size"),
        d,
    );
    if let (Some(m), Some(o)) = (max_size, max_object_size) {
        if o > m {
            d.error(
                p("max_object_size"),
                format!("{o} bytes is more than the cache's max_size ({m} bytes)"),
            );
        }
    }
    let ttl = match raw.ttl.as_deref() {
        None => Some(None),
        Some(s) => duration_in(
            Some(s),
            Duration::ZERO,
            Duration::from_secs(1),
            DAY * 365,
            &p("ttl"),
            d,
        )
        .map(Some),
    };
    let swr = duration_in(
        raw.stale_while_revalidate.as_deref(),
        Duration::ZERO,
        Duration::ZERO,
        DAY * 30,
        &p("stale_while_revalidate"),
        d,
    );
    let sie = duration_in(
        raw.stale_if_error.as_deref(),
        stale_default,
        Duration::ZERO,
        DAY * 30,
        &p("stale_if_error"),
        d,
    );
    let lock_timeout = duration_in(
        raw.lock_timeout.as_deref(),
        Duration::from_secs(3),
        Duration::from_millis(10),
        Duration::from_secs(60),
        &p("lock_timeout"),
        d,
    );
    let mut key_headers = Vec::new();
    let mut ok = true;
    for (i, h) in raw.key_headers.iter().flatten().enumerate() {
        let lower = h.to_ascii_lowercase();
        if !super::protection::valid_token(h) {
            d.error(
                format!("{}[{i}]", p("key_headers")),
                format!("bad header name {h:?}"),
            );
            ok = false;
        } else if key_headers.contains(&lower) {
            d.error(
                format!("{}[{i}]", p("key_headers")),
                format!("{h:?} is listed twice"),
            );
            ok = false;
        } else {
            key_headers.push(lower);
        }
    }
    let spec = CacheSpec {
        max_size: max_size?,
        max_object_size: max_object_size?,
        ttl: ttl?,
        stale_while_revalidate: swr?,
        stale_if_error: sie?,
        key_headers,
        lock_timeout: lock_timeout?,
    };
    (ok && spec.max_object_size <= spec.max_size).then_some(spec)
}
