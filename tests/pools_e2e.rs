//! Pools end to end: bulkhead limits, queue answers, isolation between pools, and endpoints
//! leaving and rejoining rotation through active health checks.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An origin that holds each request for `delay` and records the highest concurrency seen.
async fn slow_origin(
    delay: Duration,
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (n2, m2) = (now.clone(), max.clone());
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |_r| {
            let (now, max) = (n2.clone(), m2.clone());
            async move {
                let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                now.fetch_sub(1, Ordering::SeqCst);
                OriginResponse::new(200, "slow")
            }
        }),
    )
    .await
    .unwrap();
    (addr, now, max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_never_sees_more_than_max_inflight() {
    let (addr, _now, max) = slow_origin(Duration::from_millis(50)).await;
    let levee = Levee::start(&format!(
        "[pools.s]\nendpoints = [\"{addr}\"]\nmax_inflight = 3\nqueue = {{ max = 100, timeout = \"10s\" }}\n\n[[routes]]\nname = \"s\"\npool = \"s\"\n"
    ))
    .await;
    let p = levee.proxy;
    let tasks: Vec<_> = (0..40)
        .map(|_| tokio::spawn(async move { get(p, "/x", &[]).await.unwrap().status }))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        max.load(Ordering::SeqCst),
        3,
        "origin concurrency must reach but never pass max_inflight"
    );
    let m = levee.metrics().await;
    assert_eq!(
        sample(&m, r#"levee_upstream_inflight{pool="s"}"#),
        Some(0.0)
    );
    assert_eq!(sample(&m, r#"levee_pool_queue_depth{pool="s"}"#), Some(0.0));
    assert_eq!(
        sample(&m, r#"levee_requests_total{route="s",status_class="2xx"}"#),
        Some(40.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_and_queue_full_answers() {
    let (addr, now, _max) = slow_origin(Duration::from_millis(1500)).await;
    let levee = Levee::start(&format!(
        "[pools.s]\nendpoints = [\"{addr}\"]\nmax_inflight = 1\nqueue = {{ max = 1, timeout = \"300ms\" }}\n\n[[routes]]\nname = \"s\"\npool = \"s\"\n"
    ))
    .await;
    let p = levee.proxy;
    let holder = tokio::spawn(async move { get(p, "/hold", &[]).await.unwrap() });
    // Wait until the origin holds the slot.
    while now.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let queued = tokio::spawn(async move { get(p, "/queued", &[]).await.unwrap() });
    // Wait until levee reports the request as queued, then overflow the queue.
    loop {
        let s = levee.status().await;
        if s["pools"][0]["queue"]["depth"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let full = get(p, "/full", &[]).await.unwrap();
    assert_eq!(full.status, 503);
    assert_eq!(full.header("x-levee-reason"), Some("overloaded"));
    let ra: u64 = full.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&ra));

    let q = queued.await.unwrap();
    let waited = started.elapsed();
    assert_eq!(q.status, 503);
    assert_eq!(q.header("x-levee-reason"), Some("queue_timeout"));
    assert!(q.header("retry-after").is_some());
    assert!(
        waited >= Duration::from_millis(300),
        "shed before the queue timeout: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1400),
        "queued request waited for the slot instead of timing out: {waited:?}"
    );
    assert_eq!(holder.await.unwrap().status, 200);

    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"levee_rejections_total{reason="overloaded",route="s"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"levee_rejections_total{reason="queue_timeout",route="s"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"levee_upstream_inflight{pool="s"}"#),
        Some(0.0)
    );
}

/// While the search pool's origin hangs and its bulkhead is full, the pdp pool answers at its
/// normal latency. Bound: 250ms p99. A loopback request through a debug build takes ~1-5ms,
/// so 250ms leaves room for a loaded CI machine, while any coupling to the hung pool would
/// show as the hang itself (seconds) or as 503s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_pool_does_not_slow_another() {
    let (hang, now, _) = slow_origin(Duration::from_secs(8)).await;
    let pdp = named_origin("pdp").await;
    let levee = Levee::start(&format!(
        r#"[pools.search]
endpoints = ["{hang}"]
max_inflight = 8
queue = {{ max = 8, timeout = "200ms" }}
request_timeout = "10s"

[pools.pdp]
endpoints = ["{pdp}"]
max_inflight = 64

[[routes]]
name = "search"
pool = "search"
match = {{ path_prefix = "/search" }}

[[routes]]
name = "pdp"
pool = "pdp"
match = {{ path_prefix = "/p/" }}
"#
    ))
    .await;
    let p = levee.proxy;
    // Fill the search bulkhead and its queue, and keep more arriving.
    let mut hung = Vec::new();
    for _ in 0..24 {
        hung.push(tokio::spawn(async move {
            get(p, "/search?q=shoes", &[]).await.map(|r| r.status)
        }));
    }
    while now.load(Ordering::SeqCst) < 8 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let r = get(p, &format!("/p/{i}"), &[]).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-origin"), Some("pdp"));
    }
    lat.sort();
    let p99 = lat[lat.len() * 99 / 100 - 1];
    assert!(
        p99 < Duration::from_millis(250),
        "pdp p99 {p99:?} while search hangs"
    );
    // The search pool really was saturated: its origin held exactly 8, the rest were shed.
    assert_eq!(now.load(Ordering::SeqCst), 8);
    let s = levee.status().await;
    assert_eq!(
        s["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "search")
            .unwrap()["inflight"],
        8
    );
    // Once the queued ones time out: 24 requests, 8 slots, so 16 shed (8 queue full, 8 timed out).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = levee.metrics().await;
        let full = sample(
            &m,
            r#"levee_rejections_total{reason="overloaded",route="search"}"#,
        )
        .unwrap_or(0.0);
        let timed_out = sample(
            &m,
            r#"levee_rejections_total{reason="queue_timeout",route="search"}"#,
        )
        .unwrap_or(0.0);
        if full + timed_out == 16.0 {
            assert_eq!((full, timed_out), (8.0, 8.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shed {full} + {timed_out}, want 16"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(levee); // the hung requests end with the proxy
    for h in hung {
        let _ = h.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_leaves_rotation_and_comes_back() {
    let a = named_origin("a").await;
    let b_healthy = Arc::new(AtomicBool::new(true));
    let flag = b_healthy.clone();
    let b = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |r: OriginRequest| {
            let ok = flag.load(Ordering::SeqCst);
            async move {
                if r.path() == "/healthz" {
                    return OriginResponse::new(if ok { 200 } else { 500 }, "hc");
                }
                OriginResponse::new(200, "b").header("x-origin", "b")
            }
        }),
    )
    .await
    .unwrap();
    let levee = Levee::start(&format!(
        r#"[pools.web]
endpoints = ["{a}", "{b}"]
health_check = {{ path = "/healthz", interval = "50ms", timeout = "500ms", healthy_threshold = 2, unhealthy_threshold = 2 }}
slow_start = "1s"

[[routes]]
name = "web"
pool = "web"
"#
    ))
    .await;
    let endpoint_up = |m: &str| {
        sample(
            m,
            &format!(r#"levee_endpoint_up{{endpoint="{b}",pool="web"}}"#),
        )
    };
    let p = levee.proxy;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(
            get(p, "/", &[])
                .await
                .unwrap()
                .header("x-origin")
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "round robin over both endpoints");

    b_healthy.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while endpoint_up(&levee.metrics().await) != Some(0.0) {
        assert!(Instant::now() < deadline, "endpoint b never marked down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        assert_eq!(
            get(p, "/", &[]).await.unwrap().header("x-origin"),
            Some("a")
        );
    }
    let st = levee.status().await;
    let eps = st["pools"][0]["endpoints"].as_array().unwrap().clone();
    assert!(eps
        .iter()
        .any(|e| e["endpoint"] == b.to_string() && e["up"] == false));

    b_healthy.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while endpoint_up(&levee.metrics().await) != Some(1.0) {
        assert!(Instant::now() < deadline, "endpoint b never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Slow start: just back, b takes a small share of its turns (10% rising to 100% over
    // `slow_start`), then its full half.
    let mut early = 0;
    for _ in 0..20 {
        early += usize::from(get(p, "/", &[]).await.unwrap().header("x-origin") == Some("b"));
    }
    assert!(early < 10, "b took {early} of 20 at once: no slow start");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut later = 0;
    for _ in 0..20 {
        later += usize::from(get(p, "/", &[]).await.unwrap().header("x-origin") == Some("b"));
    }
    assert!(
        (9..=11).contains(&later),
        "b took {later} of 20 once ramped"
    );
}
