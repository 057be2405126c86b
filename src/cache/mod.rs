//! The route cache (`[routes.cache]`): pingora-cache switched on per route, each route with a
//! store and a memory budget of its own (`budget`), so a flood of distinct URLs on one route
//! can only evict that route's pages. In the request flow: `request_cache_filter` calls
//! `RouteCache::enable` for GET/HEAD requests of a cached route; Pingora then looks the key
//! up (`policy::key`), coalesces concurrent misses behind one fill (its cache lock, bounded by
//! `lock_timeout`), asks `policy::cacheable` whether to store the response, and serves stale
//! copies where `proxy::should_serve_stale` allows. Admission to the pool (breaker, limits,
//! bulkhead) runs only for requests that go upstream; hits never take a pool slot.
//!
//! Stores live as long as the process, one per route name, reused across reloads: a reload
//! that keeps the route keeps its pages (a new `max_size` evicts down to fit), and one that
//! drops the route or its cache empties the store.

pub mod budget;
pub mod policy;

use crate::config::CacheSpec;
use budget::Budget;
use pingora_cache::eviction::{CacheEntryKey, EvictionManager};
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::storage::{PurgeOutcome, PurgeTarget, PurgeType, Storage};
use pingora_cache::trace::Span;
use pingora_cache::{CacheOptionOverrides, HttpCache, MemCache};
use prometheus::{IntCounter, IntGauge};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// One route's store: Pingora's in-memory storage plus the budget that bounds it.
pub struct Store {
    pub storage: MemCache,
    pub budget: Budget,
}

/// Stores by route name. Pingora needs `'static` storage, so each is leaked once per route
/// name ever configured (an empty store is a few hundred bytes) and reused after.
static STORES: LazyLock<Mutex<HashMap<String, &'static Store>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The lock that coalesces concurrent misses. Its age bound frees waiters if a filling
/// request dies without releasing it; each request waits at most its route's `lock_timeout`.
static LOCK: LazyLock<Box<CacheKeyLockImpl>> =
    LazyLock::new(|| CacheLock::new_boxed(Duration::from_secs(30)));

/// Run a store call that never waits (MemCache's calls take a lock and return): one poll.
fn now<F: Future>(f: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

impl Store {
    /// Remove these entries from the store; returns how many were there.
    fn purge(&'static self, entries: &[CacheEntryKey]) -> usize {
        let span = Span::inactive().handle();
        let mut n = 0;
        for e in entries {
            let target = PurgeTarget::Active(e.key());
            if let Some(Ok(out)) = now(self.storage.purge(target, PurgeType::Invalidation, &span)) {
                n += usize::from(matches!(out, PurgeOutcome::Purged(_)));
            }
            self.budget.remove(e.into());
        }
        n
    }

    /// Empty the store (route removed, or its cache turned off).
    pub fn clear(&'static self) -> usize {
        let all = self.budget.drain();
        self.purge(&all)
    }
}

/// The store of this route name, created on first use; `limit` applied (evicting to fit).
fn store(route: &str, limit: usize) -> &'static Store {
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    let s: &'static Store = stores.entry(route.to_string()).or_insert_with(|| {
        Box::leak(Box::new(Store {
            storage: MemCache::new(),
            budget: Budget::new(limit),
        }))
    });
    if s.budget.limit() != limit {
        let out = s.budget.set_limit(limit);
        s.purge(&out);
    }
    s
}

/// Empty the store of a route name, if it has one (its cache went away on reload).
pub fn retire(route: &str) {
    let found = STORES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(route)
        .copied();
    if let Some(s) = found {
        s.clear();
    }
}

/// What a finished request's cache lookup came to (`levee_cache_lookups_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Served fresh from the cache.
    Hit,
    /// Not in the cache (or not usable): fetched from the origin.
    Miss,
    /// Served an expired copy: while revalidating, on an origin error, or instead of a
    /// rejection (`degrade.mode = "stale"`).
    Stale,
    /// Found expired and fetched again in full.
    Expired,
    /// Found expired and the origin confirmed it (304): served from the cache.
    Revalidated,
    /// Not looked up: the method or the request could not be cached.
    Bypass,
}

impl Lookup {
    pub const ALL: [Lookup; 6] = [
        Lookup::Hit,
        Lookup::Miss,
        Lookup::Stale,
        Lookup::Expired,
        Lookup::Revalidated,
        Lookup::Bypass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Stale => "stale",
            Lookup::Expired => "expired",
            Lookup::Revalidated => "revalidated",
            Lookup::Bypass => "bypass",
        }
    }

    /// Classify by the cache phase a request ended in.
    pub fn of(cache: &HttpCache) -> Lookup {
        use pingora_cache::CachePhase as P;
        match cache.phase() {
            P::Hit => Lookup::Hit,
            P::Stale | P::StaleUpdating => Lookup::Stale,
            P::Expired => Lookup::Expired,
            P::Revalidated | P::RevalidatedNoCache(_) => Lookup::Revalidated,
            P::Miss => Lookup::Miss,
            P::Disabled(_) | P::Uninit | P::Bypass | P::CacheKey => {
                if cache.upstream_used() {
                    Lookup::Miss
                } else {
                    Lookup::Bypass
                }
            }
        }
    }
}

/// Metric handles of one route's cache, resolved once per config.
#[derive(Clone)]
pub struct CacheMetrics {
    pub lookups: [IntCounter; Lookup::ALL.len()],
    /// `levee_cache_bytes{route}`: body bytes the route's budget holds.
    pub bytes: IntGauge,
    /// `levee_cache_coalesced_total{route}`: requests that waited for another's fill.
    pub coalesced: IntCounter,
}

/// A route's cache as one config snapshot sees it.
pub struct RouteCache {
    pub spec: CacheSpec,
    pub store: &'static Store,
    pub metrics: CacheMetrics,
}

/// Stored response heads are compressed against this (Pingora warns once without one):
/// the fields and values most responses share.
const HEADER_DICT: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Sun, 22 Nov 2026 00:00:00 GMT\r\n\
Content-Type: text/html; charset=utf-8\r\nContent-Type: application/json\r\n\
Cache-Control: public, max-age=60, s-maxage=60, stale-while-revalidate=30, stale-if-error=600\r\n\
Content-Length: 0\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding, Accept-Language\r\n\
ETag: \"0\"\r\nLast-Modified: Sun, 22 Nov 2026 00:00:00 GMT\r\nExpires: Sun, 22 Nov 2026 00:00:00 GMT\r\n\
Server: nginx\r\nX-Request-Id: 0\r\nAccess-Control-Allow-Origin: *\r\n";

impl RouteCache {
    pub fn new(route: &str, spec: &CacheSpec, metrics: CacheMetrics) -> RouteCache {
        // Fails only when already set: once per process is all it needs.
        pingora_cache::set_compression_dict_content(std::borrow::Cow::Borrowed(HEADER_DICT));
        let store = store(route, spec.max_size as usize);
        metrics.bytes.set(store.budget.total_size() as i64);
        RouteCache {
            spec: spec.clone(),
            store,
            metrics,
        }
    }

    /// Turn Pingora's cache on for this request.
    pub fn enable(&self, cache: &mut HttpCache) {
        let mut o = CacheOptionOverrides::default();
        o.wait_timeout = Some(self.spec.lock_timeout);
        cache.enable(
            &self.store.storage,
            Some(&self.store.budget),
            None,
            Some(LOCK.as_ref()),
            Some(o),
        );
        cache.set_max_file_size_bytes(self.spec.max_object_size as usize);
    }

    /// Count a finished request's lookup and refresh the memory gauge.
    pub fn finished(&self, cache: &HttpCache) {
        let l = Lookup::of(cache);
        self.metrics.lookups[l as usize].inc();
        if cache.lock_duration().is_some() {
            self.metrics.coalesced.inc();
        }
        self.metrics
            .bytes
            .set(self.store.budget.total_size() as i64);
    }

    /// A request with an unsafe method succeeded (RFC 9111 §4.4): drop the stored copies of
    /// its target and of the `Location` / `Content-Location` it names on the same host. The
    /// GET and HEAD entries are purged by key (their `Vary` variants hang off that slot and
    /// become unreachable), so this costs two lookups per URI, never a scan.
    pub fn invalidate(
        &self,
        req: &pingora_http::RequestHeader,
        resp: &pingora_http::ResponseHeader,
    ) {
        let mut targets: Vec<http::Uri> = vec![req.uri.clone()];
        let host = req
            .uri
            .host()
            .or_else(|| {
                req.headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
        for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            let Some(uri) = resp
                .headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<http::Uri>().ok())
            else {
                continue;
            };
            let same_host = uri
                .host()
                .is_none_or(|h| Some(h.to_ascii_lowercase()) == host);
            if same_host && uri.path().starts_with('/') {
                targets.push(uri);
            }
        }
        let mut probe = req.clone();
        let mut entries = Vec::new();
        for uri in targets {
            let pq = uri.path_and_query().map_or("/", |p| p.as_str());
            let Ok(target) = pq.parse::<http::Uri>() else {
                continue;
            };
            probe.set_uri(target);
            for m in [http::Method::GET, http::Method::HEAD] {
                probe.set_method(m);
                let key = policy::key(&self.spec, &probe).to_compact();
                entries.push(CacheEntryKey::key_only(key));
            }
        }
        self.store.purge(&entries);
        self.metrics
            .bytes
            .set(self.store.budget.total_size() as i64);
    }

    /// Drop every stored copy of a page (all methods, key-header values and variants).
    /// `page`: path and query as requested, e.g. `/p/123?color=red`; `None`: the whole cache.
    pub fn purge(&self, page: Option<&str>) -> usize {
        let n = match page {
            None => self.store.clear(),
            Some(p) => {
                let entries = self.store.budget.entries_tagged(p);
                self.store.purge(&entries)
            }
        };
        self.metrics
            .bytes
            .set(self.store.budget.total_size() as i64);
        n
    }
}
