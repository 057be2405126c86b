//! What the route cache stores and under which key: the cache key (method, host, path and
//! query, plus the route's `key_headers`), whether a response may be stored and for how long
//! (RFC 9111 via pingora-cache's Cache-Control parser, with levee's `ttl` only for responses
//! that carry no freshness at all), and the variance a response's `Vary` asks for.

use crate::config::CacheSpec;
use http::header;
use pingora_cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora_cache::filters::calculate_expires_header_time;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, NoCacheReason, RespCacheable};
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// The cache key of a request. The store is the route's own, so no route name is needed.
/// The user tag holds the path and query: purging a page finds every copy of it by that.
pub fn key(spec: &CacheSpec, req: &RequestHeader) -> CacheKey {
    let host = req
        .uri
        .host()
        .map(str::as_bytes)
        .or_else(|| req.headers.get(header::HOST).map(|h| h.as_bytes()))
        .unwrap_or_default();
    let pq = req
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .as_bytes();
    let mut primary = Vec::with_capacity(8 + host.len() + pq.len());
    primary.extend_from_slice(req.method.as_str().as_bytes());
    primary.push(b' ');
    primary.extend(host.iter().map(u8::to_ascii_lowercase));
    primary.extend_from_slice(pq);
    for name in &spec.key_headers {
        primary.push(b'\n');
        primary.extend_from_slice(name.as_bytes());
        primary.push(b':');
        for v in req.headers.get_all(name.as_str()) {
            primary.extend_from_slice(v.as_bytes());
            primary.push(b',');
        }
    }
    let tag = std::str::from_utf8(pq).unwrap_or("/");
    CacheKey::new(primary, tag)
}

/// Statuses RFC 9110 §15.1 calls heuristically cacheable: only these get `ttl` when the
/// response has no freshness information of its own.
fn heuristic(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses levee understands for `must-understand` (RFC 9111 §5.2.2.3).
fn understood(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 304 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The response's `Age` in seconds: `Ok(0)` when absent, `Err` when not a plain non-negative
/// integer (such a response is treated as stale, as RFC 9111 §5.1 suggests).
fn age_header(resp: &ResponseHeader) -> Result<u64, ()> {
    let mut all = resp.headers.get_all(header::AGE).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(0),
        // Two Age fields: no telling which is right.
        (Some(_), Some(_)) => Err(()),
        (Some(v), None) => {
            // Age is a singleton: a list (`0, 0`) is as invalid as `abc`.
            let t = v.to_str().map_err(|_| ())?.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            Ok(t.parse::<u64>().unwrap_or(u64::MAX))
        }
    }
}

fn date_header(resp: &ResponseHeader) -> Option<SystemTime> {
    let v = resp.headers.get(header::DATE)?.to_str().ok()?;
    v.parse::<httpdate::HttpDate>().ok().map(SystemTime::from)
}

/// The directives that govern this cache: `Surrogate-Control` when the origin sent one (levee
/// is the surrogate in front of it), else `Cache-Control`.
fn directives(resp: &ResponseHeader) -> Option<CacheControl> {
    if resp.headers.contains_key("surrogate-control") {
        CacheControl::from_resp_headers_named("surrogate-control", resp)
    } else {
        CacheControl::from_resp_headers(resp)
    }
}

/// Whether (and how long) to keep a response. `authorization`: the request carried one.
///
/// Freshness follows RFC 9111 §4.2: the lifetime from `s-maxage`/`max-age`, else `Expires`
/// minus `Date`, else the route's `ttl` (heuristic statuses only); the age the response
/// already had (`Age`, or how far its `Date` lies behind) counts against it, and is what the
/// `Age` header of a hit starts from.
pub fn cacheable(spec: &CacheSpec, resp: &ResponseHeader, authorization: bool) -> RespCacheable {
    // levee differs from RFC 9111 here on purpose: a response that sets a cookie is never
    // stored, since a shared copy of it would hand one customer's session to the next.
    if resp.headers.contains_key(header::SET_COOKIE) {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("set-cookie"));
    }
    if vary_names(resp).any(|n| n == "*") {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("vary: *"));
    }
    let status = resp.status.as_u16();
    if status == 206 {
        // Partial content is not stored (ranges are served from full copies only).
        return RespCacheable::Uncacheable(NoCacheReason::Custom("partial content"));
    }
    let cc = directives(resp);
    if cc.as_ref().is_some_and(|c| c.has_key("must-understand")) && !understood(status) {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let forbidden = cc
        .as_ref()
        .is_some_and(|c| c.is_cacheable() == Cacheable::No)
        || (authorization
            && cc
                .as_ref()
                .is_none_or(|c| !c.allow_caching_authorized_req()));
    if forbidden {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let now = SystemTime::now();
    let date = date_header(resp).unwrap_or(now);
    let lifetime = match cc.as_ref().and_then(|c| c.fresh_duration()) {
        Some(d) => d,
        None if resp.headers.contains_key(header::EXPIRES) => calculate_expires_header_time(resp)
            .and_then(|e| e.duration_since(date).ok())
            .unwrap_or(Duration::ZERO),
        None => match spec.ttl.filter(|_| heuristic(status)) {
            Some(t) => t,
            None => return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache),
        },
    };
    let age = age_header(resp);
    let apparent = now.duration_since(date).unwrap_or(Duration::ZERO);
    let initial = apparent.max(Duration::from_secs(*age.as_ref().unwrap_or(&0)));
    let created = now.checked_sub(initial).unwrap_or(SystemTime::UNIX_EPOCH);
    let fresh_until = match age {
        Ok(_) => created.checked_add(lifetime).unwrap_or(now),
        Err(()) => created,
    };
    // Already stale at arrival: stored to revalidate, and never fresh.
    let fresh_until = if fresh_until <= now {
        now.checked_sub(Duration::from_secs(1))
            .unwrap_or(fresh_until)
    } else {
        fresh_until
    };
    let secs = |d: Option<Duration>, default: Duration| {
        u32::try_from(d.unwrap_or(default).as_secs()).unwrap_or(u32::MAX)
    };
    let swr = secs(
        cc.as_ref()
            .and_then(|c| c.serve_stale_while_revalidate_duration()),
        spec.stale_while_revalidate,
    );
    let sie = secs(
        cc.as_ref().and_then(|c| c.serve_stale_if_error_duration()),
        spec.stale_if_error,
    );
    let mut header = resp.clone();
    if let Some(c) = &cc {
        c.strip_private_headers(&mut header);
    }
    RespCacheable::Cacheable(CacheMeta::new(fresh_until, created, swr, sie, header))
}

/// Fields of a stored response that describe its stored body: a 304 cannot change them.
const BODY_FIELDS: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "content-range",
    "content-md5",
    "etag",
];

/// The stored header after a 304 (RFC 9111 §3.2): every field of the 304 replaces the
/// stored one, except those describing the stored body (`BODY_FIELDS`).
pub fn merge_304(stored: &ResponseHeader, fresh: &http::HeaderMap) -> ResponseHeader {
    let mut out = stored.clone();
    for name in fresh.keys() {
        if BODY_FIELDS.contains(&name.as_str()) {
            continue;
        }
        let _ = out.remove_header(name);
        for v in fresh.get_all(name) {
            let _ = out.append_header(name.clone(), v.clone());
        }
    }
    out
}

/// Whether a request with this method invalidates stored copies of its target when it
/// succeeds (RFC 9111 §4.4: any method not known to be safe).
pub fn invalidates(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE
    )
}

/// Header names listed in the response's `Vary` (lower-case, trimmed).
fn vary_names(resp: &ResponseHeader) -> impl Iterator<Item = String> + '_ {
    resp.headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

/// The variance of a stored response for this request: the request's values of the
/// headers its `Vary` names. `None`: the response does not vary.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
    let names: Vec<String> = vary_names(meta.response_header()).collect();
    if names.is_empty() {
        return None;
    }
    let mut b = pingora_cache::VarianceBuilder::new();
    for n in &names {
        let mut value = Vec::new();
        for (i, v) in req.headers.get_all(n.as_str()).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(b", ");
            }
            value.extend_from_slice(v.as_bytes());
        }
        b.add_owned_name_value(n.clone(), value);
    }
    b.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ttl: Option<Duration>) -> CacheSpec {
        CacheSpec {
            max_size: 1 << 20,
            max_object_size: 1 << 16,
            ttl,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::from_secs(60),
            key_headers: vec!["x-country".into()],
            lock_timeout: Duration::from_secs(1),
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn stored(c: RespCacheable) -> Option<CacheMeta> {
        match c {
            RespCacheable::Cacheable(m) => Some(m),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn key_covers_method_host_path_query_and_key_headers() {
        let s = spec(None);
        let mut a = RequestHeader::build("GET", b"/p/1?color=red", None).unwrap();
        a.insert_header("host", "Shop.example").unwrap();
        let mut b = a.clone();
        b.insert_header("host", "shop.example").unwrap();
        assert_eq!(key(&s, &a).primary_key(), key(&s, &b).primary_key());
        let mut c = a.clone();
        c.set_uri("/p/1?color=blue".parse().unwrap());
        assert_ne!(key(&s, &a).primary_key(), key(&s, &c).primary_key());
        let mut d = a.clone();
        d.insert_header("x-country", "kr").unwrap();
        assert_ne!(key(&s, &a).primary_key(), key(&s, &d).primary_key());
        let mut e = a.clone();
        e.set_method(http::Method::HEAD);
        assert_ne!(key(&s, &a).primary_key(), key(&s, &e).primary_key());
    }

    #[test]
    fn freshness_follows_the_response() {
        let s = spec(Some(Duration::from_secs(5)));
        assert!(stored(cacheable(
            &s,
            &resp(200, &[("cache-control", "max-age=60")]),
            false
        ))
        .is_some());
        for cc in ["private", "no-store", "private, max-age=60"] {
            assert!(
                stored(cacheable(&s, &resp(200, &[("cache-control", cc)]), false)).is_none(),
                "{cc}"
            );
        }
        let m = stored(cacheable(&s, &resp(200, &[]), false)).expect("ttl applies");
        assert!(m.is_fresh(SystemTime::now()));
        // ttl never applies to a status that is not heuristically cacheable.
        assert!(stored(cacheable(&s, &resp(500, &[]), false)).is_none());
        assert!(stored(cacheable(&spec(None), &resp(200, &[]), false)).is_none());
    }

    #[test]
    fn age_and_date_count_against_the_lifetime() {
        let s = spec(None);
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let old = stored(cacheable(
            &s,
            &resp(
                200,
                &[
                    ("cache-control", "max-age=3600"),
                    ("age", "7200"),
                    ("date", &date),
                ],
            ),
            false,
        ))
        .unwrap();
        assert!(!old.is_fresh(now), "older than its lifetime");
        let young = stored(cacheable(
            &s,
            &resp(200, &[("cache-control", "max-age=3600"), ("age", "30")]),
            false,
        ))
        .unwrap();
        assert!(young.is_fresh(now));
        assert!(young.age() >= Duration::from_secs(30), "{:?}", young.age());
        let twice = resp(
            200,
            &[
                ("cache-control", "max-age=3600"),
                ("age", "0"),
                ("age", "0"),
            ],
        );
        assert!(!stored(cacheable(&s, &twice, false)).unwrap().is_fresh(now));
        for bad in ["abc", "-7200", "1.5", "0, 0"] {
            let m = stored(cacheable(
                &s,
                &resp(200, &[("cache-control", "max-age=3600"), ("age", bad)]),
                false,
            ))
            .unwrap();
            assert!(!m.is_fresh(now), "Age {bad} is treated as stale");
        }
        // Expires counts from Date, not from now.
        let d = httpdate::fmt_http_date(now - Duration::from_secs(400));
        let e = httpdate::fmt_http_date(now - Duration::from_secs(300));
        let m = stored(cacheable(
            &s,
            &resp(200, &[("expires", &e), ("date", &d)]),
            false,
        ))
        .unwrap();
        assert!(!m.is_fresh(now), "100 s of life, 400 s old");
        let m = stored(cacheable(&s, &resp(200, &[("expires", "0")]), false)).unwrap();
        assert!(!m.is_fresh(now), "an invalid Expires is in the past");
    }

    #[test]
    fn surrogate_control_wins_and_must_understand_needs_a_known_status() {
        let s = spec(None);
        let both = [
            ("surrogate-control", "no-store"),
            ("cache-control", "max-age=60"),
        ];
        assert!(stored(cacheable(&s, &resp(200, &both), false)).is_none());
        let both = [
            ("surrogate-control", "max-age=60"),
            ("cache-control", "no-store"),
        ];
        assert!(stored(cacheable(&s, &resp(200, &both), false)).is_some());
        let mu = [("cache-control", "max-age=60, must-understand")];
        assert!(stored(cacheable(&s, &resp(599, &mu), false)).is_none());
        assert!(stored(cacheable(&s, &resp(200, &mu), false)).is_some());
    }

    #[test]
    fn a_304_updates_the_stored_fields_but_not_the_framing() {
        let stored_h = resp(
            200,
            &[
                ("etag", "\"a\""),
                ("x-test", "old"),
                ("content-length", "10"),
            ],
        );
        let mut fresh = http::HeaderMap::new();
        fresh.insert("etag", "\"b\"".parse().unwrap());
        fresh.insert("x-test", "new".parse().unwrap());
        fresh.insert("content-length", "0".parse().unwrap());
        let m = merge_304(&stored_h, &fresh);
        assert_eq!(
            m.headers["etag"], "\"a\"",
            "the validator of the stored body stays"
        );
        assert_eq!(m.headers["x-test"], "new");
        assert_eq!(m.headers["content-length"], "10");
        assert!(invalidates(&http::Method::POST));
        assert!(invalidates(&http::Method::from_bytes(b"M-SEARCH").unwrap()));
        assert!(!invalidates(&http::Method::GET));
    }

    #[test]
    fn cookies_vary_star_and_authorization_are_not_stored() {
        let s = spec(Some(Duration::from_secs(5)));
        let cc = ("cache-control", "max-age=60");
        assert!(stored(cacheable(
            &s,
            &resp(200, &[cc, ("set-cookie", "s=1")]),
            false
        ))
        .is_none());
        assert!(stored(cacheable(
            &s,
            &resp(200, &[cc, ("vary", "Accept, *")]),
            false
        ))
        .is_none());
        assert!(stored(cacheable(&s, &resp(200, &[cc]), true)).is_none());
        let public = ("cache-control", "public, max-age=60");
        assert!(stored(cacheable(&s, &resp(200, &[public]), true)).is_some());
    }

    #[test]
    fn stale_windows_default_to_the_route_and_yield_to_the_response() {
        let s = spec(None);
        let m = stored(cacheable(
            &s,
            &resp(200, &[("cache-control", "max-age=0")]),
            false,
        ))
        .unwrap();
        assert!(m.serve_stale_if_error(SystemTime::now()));
        let m = stored(cacheable(
            &s,
            &resp(200, &[("cache-control", "max-age=0, must-revalidate")]),
            false,
        ))
        .unwrap();
        assert!(!m.serve_stale_if_error(SystemTime::now()));
    }

    #[test]
    fn variance_uses_the_request_values_of_vary_headers() {
        let s = spec(None);
        let m = stored(cacheable(
            &s,
            &resp(
                200,
                &[("cache-control", "max-age=9"), ("vary", "Accept-Language")],
            ),
            false,
        ))
        .unwrap();
        let mut ko = RequestHeader::build("GET", b"/", None).unwrap();
        ko.insert_header("accept-language", "ko").unwrap();
        let mut en = ko.clone();
        en.insert_header("accept-language", "en").unwrap();
        assert!(variance(&m, &ko).is_some());
        assert_ne!(variance(&m, &ko), variance(&m, &en));
        let plain = stored(cacheable(
            &s,
            &resp(200, &[("cache-control", "max-age=9")]),
            false,
        ))
        .unwrap();
        assert_eq!(variance(&plain, &ko), None);
    }
}
