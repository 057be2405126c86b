//! The admission path of one request (issue #3): route lookup, breaker gate, route rate limit
//! and per-client rate limit, as `request_filter` runs them (the pool bulkhead is measured by
//! the load benchmark). Two cases: every request from one client, and requests from 1,000,000
//! distinct clients (the per-client table full and evicting). Limits are set high so every
//! request is admitted and the full path runs. A counting allocator reports the memory the
//! per-client table holds. Results: benches/ADMISSION.md.

use criterion::{criterion_group, criterion_main, Criterion};
use levee::config::*;
use levee::protection::{now_nanos, Protection, Verdict};
use levee::routing::{RequestView, Router};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn route(max_keys: usize, client_rps: f64) -> RouteSpec {
    RouteSpec {
        name: "search".into(),
        pool: "search".into(),
        priority: Priority::Normal,
        cost: 1,
        matcher: MatchSpec {
            path_prefix: Some("/search".into()),
            ..Default::default()
        },
        shadow: false,
        degrade_under_pressure: false,
        cost_key: None,
        max_body: None,
        rate_limit: Some(RateLimitSpec {
            rps: 1e9,
            burst: 1_000_000,
            shadow: false,
        }),
        client_rate_limit: Some(ClientRateLimitSpec {
            key: ClientKey::Ip,
            rps: client_rps,
            burst: 1_000_000,
            max_keys,
            shadow: false,
        }),
        circuit_breaker: Some(BreakerSpec {
            window: Duration::from_secs(10),
            min_requests: 20,
            error_ratio: 0.5,
            slow_call: Some(Duration::from_secs(1)),
            slow_ratio: 0.5,
            open_for: Duration::from_secs(5),
            probes: 3,
            shadow: false,
        }),
        degrade: None,
        cache: None,
    }
}

fn router() -> Router {
    let mut specs: Vec<MatchSpec> = (0..9)
        .map(|i| MatchSpec {
            path_prefix: Some(format!("/other{i}")),
            ..Default::default()
        })
        .collect();
    specs.insert(5, route(16, 1.0).matcher);
    Router::new(specs).unwrap()
}

fn ip(i: u32) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
}

fn admission(c: &mut Criterion) {
    let router = router();
    let method = http::Method::GET;
    let uri: http::Uri = "/search?q=socks".parse().unwrap();
    let headers = http::HeaderMap::new();

    let one = Protection::new(&route(100_000, 1e9));
    c.bench_function("admission/one_client", |b| {
        b.iter(|| {
            let i = router.find(&RequestView::from_parts(&method, &uri, &headers));
            let v = one.admit(&headers, ip(1), now_nanos(), |_| {}, |_| {});
            assert!(matches!(v, Verdict::Admit { .. }));
            black_box((i, v))
        })
    });

    for (label, max_keys) in [
        ("1m_clients_cap_1m", 1_000_000),
        ("1m_clients_cap_100k", 100_000),
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        // One token per hour but a burst of a million: every client stays tracked (active)
        // for the whole run and is never limited, the worst case for the table.
        let p = Protection::new(&route(max_keys, 1.0 / 3600.0));
        // Fill: every one of the 1M clients seen once.
        for i in 0..1_000_000 {
            p.admit(&headers, ip(i), now_nanos(), |_| {}, |_| {});
        }
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        eprintln!(
            "memory {label}: {} keys tracked, {:.1} MiB held by the route's protections ({:.1} bytes per tracked key)",
            p.client_keys().unwrap(),
            bytes as f64 / (1 << 20) as f64,
            bytes as f64 / p.client_keys().unwrap() as f64
        );
        let mut n = 0u32;
        c.bench_function(&format!("admission/{label}"), |b| {
            b.iter(|| {
                n = (n + 7919) % 1_000_000;
                let i = router.find(&RequestView::from_parts(&method, &uri, &headers));
                let v = p.admit(&headers, ip(n), now_nanos(), |_| {}, |_| {});
                black_box((i, v))
            })
        });
    }
}

/// Learned cost (`cost_key`) on the request path: 50 recurring values, and a flood of
/// one-off values (each one evicts the least frequent of the 128 tracked).
fn learned_cost(c: &mut Criterion) {
    let mut spec = route(16, 1e9);
    spec.rate_limit = None;
    spec.client_rate_limit = None;
    spec.circuit_breaker = None;
    spec.cost_key = Some(CostKey::Query("q".into()));
    let p = Protection::new(&spec);
    let headers = http::HeaderMap::new();
    let recurring: Vec<http::Uri> = (0..50)
        .map(|i| format!("/search?q=term{i}").parse().unwrap())
        .collect();
    let oneoff: Vec<http::Uri> = (0..100_000)
        .map(|i| format!("/search?q=rare{i}").parse().unwrap())
        .collect();
    let mut n = 0usize;
    c.bench_function("learned_cost/50_recurring_values", |b| {
        b.iter(|| {
            n += 1;
            black_box(p.admission(&spec, &recurring[n % 50], &headers))
        })
    });
    c.bench_function("learned_cost/flood_of_new_values", |b| {
        b.iter(|| {
            n += 1;
            black_box(p.admission(&spec, &oneoff[n % oneoff.len()], &headers))
        })
    });
}

criterion_group!(benches, admission, learned_cost);
criterion_main!(benches);
