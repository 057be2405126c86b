//! Route lookup cost as the route table grows: 10, 100 and 1000 routes. The table is what a
//! large shop might write: mostly `path_prefix` routes (some with a method or query
//! condition), some exact `path` routes, and a fixed handful of regex routes — regexes do not
//! grow with the table, because the router's index is by path and routes with a prefix never
//! run a regex scan. Lookups: a route near the start, one near the end, a query-conditioned
//! route, a regex route, and a miss that falls through to the catch-all.
//! Results: benches/ROUTING.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use levee::config::{MatchSpec, ValueMatch};
use levee::routing::{RequestView, Router};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

fn table(n: usize) -> Vec<MatchSpec> {
    let broad: HashSet<String> = ["shoes", "women's clothing", "electronics"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let broad = Arc::new(broad);
    let mut v = Vec::new();
    // A fixed handful of regex routes, whatever the table size.
    for i in 0..5 {
        v.push(MatchSpec {
            path_regex: Some(regex::Regex::new(&format!(r"^/r{i}/[0-9]+$")).unwrap()),
            ..Default::default()
        });
    }
    for i in 0..n.saturating_sub(6) {
        let m = match i % 10 {
            0 => MatchSpec {
                path: Some(format!("/svc{i}/exact")),
                ..Default::default()
            },
            1 => MatchSpec {
                path_prefix: Some(format!("/svc{i}/")),
                methods: vec!["POST".into()],
                ..Default::default()
            },
            2 => MatchSpec {
                path_prefix: Some(format!("/svc{i}/search")),
                query: vec![(
                    "q".into(),
                    ValueMatch::OneOf {
                        values: broad.clone(),
                        source: None,
                    },
                )],
                ..Default::default()
            },
            _ => MatchSpec {
                path_prefix: Some(format!("/svc{i}/")),
                ..Default::default()
            },
        };
        v.push(m);
    }
    v.push(MatchSpec::default()); // catch-all
    v
}

fn bench(c: &mut Criterion) {
    let headers = http::HeaderMap::new();
    let mut g = c.benchmark_group("route_lookup");
    for n in [10usize, 100, 1000] {
        let router = Router::new(table(n)).unwrap();
        let last = n.saturating_sub(6) - 1;
        let last = last - last % 10 + 3; // a plain prefix route near the end
        let cases = [
            ("first_prefix", "/svc3/items/1".to_string(), None),
            ("last_prefix", format!("/svc{last}/items/1"), None),
            (
                "query_broad",
                "/svc2/search".to_string(),
                Some("q=Women%27s+Clothing&page=2"),
            ),
            ("regex", "/r3/12345".to_string(), None),
            ("miss_to_catch_all", "/nothing/here".to_string(), None),
        ];
        for (name, path, query) in &cases {
            let view = RequestView {
                method: "GET",
                host: Some("shop.test"),
                path,
                query: *query,
                headers: &headers,
            };
            assert!(router.find(&view).is_some(), "{name} must match");
            g.bench_with_input(BenchmarkId::new(*name, n), &view, |b, v| {
                b.iter(|| router.find(black_box(v)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
