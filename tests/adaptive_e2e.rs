//! Adaptive overload control end to end (issue #4): the adaptive limit falls when the origin
//! slows down and rises when it recovers; sheddable traffic is shed before critical traffic
//! queues; brownout answers with the degrade response while the pool is under pressure;
//! connect retries stay within the pool's retry budget.

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An origin that serves `cap` requests at once in `base_ms`; beyond that each request takes
/// proportionally longer (a backend whose queue makes everyone slower). Also returns the most
/// requests it ever had at once.
async fn queueing_origin(base_ms: u64, cap: Arc<AtomicU64>) -> (SocketAddr, Arc<AtomicU64>) {
    let inflight = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let seen = most.clone();
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |_r| {
            let (inflight, cap, most) = (inflight.clone(), cap.clone(), seen.clone());
            async move {
                let n = inflight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                let c = cap.load(Ordering::SeqCst).max(1);
                let ms = base_ms * n.max(c) / c;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                inflight.fetch_sub(1, Ordering::SeqCst);
                OriginResponse::new(200, "ok")
            }
        }),
    )
    .await
    .unwrap();
    (addr, most)
}

/// `n` clients, each sending requests back to back until `stop`.
fn load(proxy: SocketAddr, path: &'static str, n: usize, stop: Arc<AtomicBool>) {
    for _ in 0..n {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = get(proxy, path, &[]).await;
            }
        });
    }
}

async fn limit_of(levee: &Levee) -> f64 {
    sample(
        &levee.metrics().await,
        r#"levee_concurrency_limit{pool="p"}"#,
    )
    .unwrap()
}

/// Poll the limit for up to `within`, until `ok` holds; return the last value.
async fn limit_until(levee: &Levee, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let t = Instant::now();
    loop {
        let l = limit_of(levee).await;
        if ok(l) || t.elapsed() > within {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_falls_when_the_origin_slows_and_rises_when_it_recovers() {
    let cap = Arc::new(AtomicU64::new(1000));
    let (origin, _) = queueing_origin(5, cap.clone()).await;
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{origin}\"]\nmax_inflight = 200\nqueue = {{ max = 200, timeout = \"2s\" }}\n\
         adaptive = {{ min_limit = 2, initial_limit = 10, window = \"50ms\" }}\n\n\
         [[routes]]\nname = \"r\"\npool = \"p\"\n"
    ))
    .await;
    assert_eq!(limit_of(&levee).await, 10.0);
    let stop = Arc::new(AtomicBool::new(false));
    load(levee.proxy, "/x", 40, stop.clone());

    // A fast origin with room: the limit grows to carry the 40 clients.
    let grown = limit_until(&levee, Duration::from_secs(5), |l| l >= 30.0).await;
    assert!(grown >= 30.0, "limit only {grown} with a fast origin");

    // The origin loses most of its capacity: latency inflates, the limit falls to half or
    // less (its equilibrium is near 4 x tolerance plus the √limit allowance: about 10).
    cap.store(4, Ordering::SeqCst);
    let fallen = limit_until(&levee, Duration::from_secs(8), |l| l <= 15.0).await;
    assert!(
        fallen <= 15.0,
        "limit still {fallen} with an origin serving 4 at once"
    );

    // Recovered: back up within seconds.
    cap.store(1000, Ordering::SeqCst);
    let t = Instant::now();
    let back = limit_until(&levee, Duration::from_secs(5), |l| l >= 30.0).await;
    assert!(back >= 30.0, "limit only {back} after recovery");
    eprintln!(
        "grown {grown}, fallen {fallen}, back to {back} in {:?}",
        t.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
}

async fn slow_origin(ms: u64, hits: Arc<AtomicUsize>) -> SocketAddr {
    serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |_r| {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                OriginResponse::new(200, "ok")
            }
        }),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheddable_is_shed_before_critical_queues() {
    let origin = slow_origin(300, Arc::default()).await;
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{origin}\"]\nmax_inflight = 2\nqueue = {{ max = 4, timeout = \"5s\" }}\n\n\
         [[routes]]\nname = \"crit\"\npool = \"p\"\npriority = \"critical\"\nmatch = {{ path_prefix = \"/crit\" }}\n\n\
         [[routes]]\nname = \"shed\"\npool = \"p\"\npriority = \"sheddable\"\nmatch = {{ path_prefix = \"/shed\" }}\n"
    ))
    .await;
    let p = levee.proxy;
    // Sheddable traffic fills the pool (2 in flight) and its queue (4 waiting).
    let mut shed = Vec::new();
    for _ in 0..6 {
        shed.push(tokio::spawn(
            async move { get(p, "/shed", &[]).await.unwrap() },
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Four checkout requests arrive: each takes the place of a queued sheddable request.
    let mut crit = Vec::new();
    for _ in 0..4 {
        crit.push(tokio::spawn(async move {
            let t = Instant::now();
            (get(p, "/crit", &[]).await.unwrap(), t.elapsed())
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in crit {
        let (r, took) = c.await.unwrap();
        assert_eq!(
            r.status,
            200,
            "critical must not be shed: {:?}",
            r.header("x-levee-reason")
        );
        // Served in the first two rounds after the two sheddable requests in flight.
        assert!(
            took < Duration::from_millis(1000),
            "critical waited {took:?}"
        );
    }
    let mut outcomes = Vec::new();
    for s in shed {
        let r = s.await.unwrap();
        outcomes.push((r.status, r.header("x-levee-reason").map(str::to_string)));
    }
    let served = outcomes.iter().filter(|(s, _)| *s == 200).count();
    let overloaded = outcomes
        .iter()
        .filter(|(s, r)| *s == 503 && r.as_deref() == Some("overloaded"))
        .count();
    assert_eq!((served, overloaded), (2, 4), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brownout_degrades_under_pressure_and_recovers() {
    let origin = slow_origin(400, Arc::default()).await;
    let levee = Levee::start_with_files(
        &format!(
            "[pools.p]\nendpoints = [\"{origin}\"]\nmax_inflight = 2\nqueue = {{ max = 10, timeout = \"5s\" }}\n\n\
             [[routes]]\nname = \"recs\"\npool = \"p\"\npriority = \"sheddable\"\ndegrade_under_pressure = true\nmatch = {{ path_prefix = \"/recs\" }}\n\
             [routes.degrade]\nstatus = 200\nbody_file = \"empty.json\"\n\n\
             [[routes]]\nname = \"pdp\"\npool = \"p\"\npriority = \"high\"\n"
        ),
        &[("empty.json", "{\"items\":[]}")],
    )
    .await;
    let p = levee.proxy;
    // No pressure: recommendations go to the origin.
    assert_eq!(get(p, "/recs", &[]).await.unwrap().text(), "ok");
    // 4 product pages: 2 in flight, 2 queued: pressure 2.0.
    let mut pdp = Vec::new();
    for _ in 0..4 {
        pdp.push(tokio::spawn(async move {
            get(p, "/p/1", &[]).await.unwrap().status
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = get(p, "/recs", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "{\"items\":[]}");
    assert_eq!(r.header("x-levee-reason"), Some("degraded"));
    for h in pdp {
        assert_eq!(h.await.unwrap(), 200);
    }
    // Pressure gone: back to the origin.
    assert_eq!(get(p, "/recs", &[]).await.unwrap().text(), "ok");
    assert_eq!(levee.rejections("recs", "degraded").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retries_stay_within_the_budget() {
    let hits = Arc::new(AtomicUsize::new(0));
    let good = slow_origin(0, hits.clone()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{closed}\", \"{good}\"]\nconnect_timeout = \"200ms\"\n\n[[routes]]\nname = \"r\"\npool = \"p\"\n"
    ))
    .await;
    // POST is not idempotent: never retried, whatever the budget.
    let mut post_502 = 0;
    for _ in 0..4 {
        let r = request(levee.proxy, "POST", "/x", &[("content-length", "0")])
            .await
            .unwrap();
        post_502 += (r.status == 502) as usize;
    }
    assert_eq!(
        post_502, 2,
        "round robin: every other POST hits the closed endpoint"
    );
    // 200 GETs within a second. Round robin: while the budget lasts, every GET tries the
    // closed endpoint, is retried on the good one, and the next GET starts at the closed one
    // again; once it is spent, GETs alternate (closed: 502, good: 200). The budget allows
    // max(20% of requests, 3/s x 10 s) = at most 40 retries in the window, so about
    // (200 - 40) / 2 = 80 fail. Without a budget none would fail; without retries, 100.
    let before = hits.load(Ordering::SeqCst);
    let mut failed = 0;
    for _ in 0..200 {
        failed += (get(levee.proxy, "/x", &[]).await.unwrap().status == 502) as usize;
    }
    let served = hits.load(Ordering::SeqCst) - before;
    assert_eq!(served + failed, 200);
    let retried = 200 - 2 * failed;
    assert!(
        (36..=44).contains(&retried),
        "{failed} failed, so {retried} retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_cost_singles_out_the_slow_values() {
    // A search backend where two broad terms are slow; nobody listed them in the config.
    let origin = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(|r| async move {
            let q = r.query().get("q").cloned().unwrap_or_default();
            let ms = if q == "shoes" || q == "women's clothing" {
                150
            } else {
                5
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            OriginResponse::new(200, "ok")
        }),
    )
    .await
    .unwrap();
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{origin}\"]\nmax_inflight = 10\nqueue = {{ max = 0 }}\n\n\
         [[routes]]\nname = \"search\"\npool = \"p\"\ncost_key = \"query:q\"\n"
    ))
    .await;
    let p = levee.proxy;
    for i in 0..60 {
        let q = match i % 6 {
            0 => "shoes",
            1 => "women%27s+clothing",
            n => ["socks", "usb+cable", "lego", "mug"][n % 4],
        };
        assert_eq!(
            get(p, &format!("/search?q={q}"), &[]).await.unwrap().status,
            200
        );
    }
    let status = levee.status().await;
    let costly = &status["routes"][0]["costly"];
    let top: Vec<&str> = costly.as_array().unwrap()[..2]
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert!(
        top.contains(&"shoes") && top.contains(&"women's clothing"),
        "{costly}"
    );
    assert!(
        costly[0]["times_median"].as_f64().unwrap() > 10.0,
        "{costly}"
    );

    // Learned: a broad search now costs the whole pool (about 30x, capped at the limit of
    // 10), so a second one at the same time is shed, while narrow searches still run side
    // by side.
    let a = tokio::spawn(async move { get(p, "/search?q=shoes", &[]).await.unwrap().status });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let b = get(p, "/search?q=SHOES", &[]).await.unwrap();
    assert_eq!(b.status, 503);
    assert_eq!(b.header("x-levee-reason"), Some("overloaded"));
    assert_eq!(a.await.unwrap(), 200);
    let narrow: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { get(p, "/search?q=socks", &[]).await.unwrap().status }))
        .collect();
    for n in narrow {
        assert_eq!(n.await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_backend_sheds_another_pools_low_priority_first() {
    // Two pools on one backend (a group of 2 units with a queue of 2): search's sheddable
    // traffic fills it; checkout, in another pool, still gets through, and search's waiters
    // are the ones shed.
    let origin = slow_origin(300, Arc::default()).await;
    let levee = Levee::start(&format!(
        "[groups.app]\nmax_inflight = 2\nqueue = {{ max = 2, timeout = \"5s\" }}\n\n\
         [pools.search]\nendpoints = [\"{origin}\"]\ngroup = \"app\"\n\n\
         [pools.checkout]\nendpoints = [\"{origin}\"]\ngroup = \"app\"\n\n\
         [[routes]]\nname = \"checkout\"\npool = \"checkout\"\npriority = \"critical\"\nmatch = {{ path_prefix = \"/checkout\" }}\n\n\
         [[routes]]\nname = \"search\"\npool = \"search\"\npriority = \"sheddable\"\n"
    ))
    .await;
    let p = levee.proxy;
    let mut search = Vec::new();
    for _ in 0..4 {
        search.push(tokio::spawn(async move {
            get(p, "/search", &[]).await.unwrap()
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut checkout = Vec::new();
    for _ in 0..2 {
        checkout.push(tokio::spawn(async move {
            get(p, "/checkout", &[]).await.unwrap().status
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in checkout {
        assert_eq!(c.await.unwrap(), 200);
    }
    let mut reasons = Vec::new();
    for s in search {
        let r = s.await.unwrap();
        reasons.push((r.status, r.header("x-levee-reason").map(str::to_string)));
    }
    let shed = reasons
        .iter()
        .filter(|(s, r)| *s == 503 && r.as_deref() == Some("overloaded"))
        .count();
    assert_eq!(shed, 2, "{reasons:?}");
    let st = levee.status().await;
    assert_eq!(st["groups"][0]["name"], "app");
    assert_eq!(
        st["groups"][0]["pools"],
        serde_json::json!(["checkout", "search"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_requests_cannot_flood_a_unit_budget_that_costly_ones_earned() {
    // A backend of 16 workers. Costly searches (cost 8) with a few pages earn a limit of many
    // units with ~12 requests in flight. When the searches stop and 64 clients ask for cheap
    // pages (cost 1), the unit budget alone admits all 64 at once: four times the workers.
    // The request limit, learned from the requests actually in flight, admits about what
    // the backend served, then grows only while its latency stays clean.
    let (origin, most) = queueing_origin(20, Arc::new(AtomicU64::new(16))).await;
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{origin}\"]\nmax_inflight = 400\nqueue = {{ max = 400, timeout = \"5s\" }}\n\
         adaptive = {{ initial_limit = 8, window = \"50ms\" }}\n\n\
         [[routes]]\nname = \"search\"\npool = \"p\"\ncost = 8\nmatch = {{ path_prefix = \"/search\" }}\n\n\
         [[routes]]\nname = \"pdp\"\npool = \"p\"\n"
    ))
    .await;
    let st = levee.status().await;
    assert_eq!(
        (&st["pools"][0]["limit"], &st["pools"][0]["request_limit"]),
        (&serde_json::json!(8), &serde_json::json!(8))
    );
    let stop = Arc::new(AtomicBool::new(false));
    load(levee.proxy, "/search", 8, stop.clone());
    load(levee.proxy, "/p", 4, stop.clone());
    let units = limit_until(&levee, Duration::from_secs(10), |l| l >= 64.0).await;
    stop.store(true, Ordering::Relaxed);
    assert!(units >= 64.0, "the unit limit only reached {units}");
    let m = levee.metrics().await;
    let rlimit = sample(&m, r#"levee_concurrency_limit_requests{pool="p"}"#).unwrap();
    assert!(
        rlimit <= 24.0,
        "request limit {rlimit} with ~12 requests in flight"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = most.swap(0, Ordering::SeqCst);

    // The first 200 ms of the flood (four windows).
    let stop = Arc::new(AtomicBool::new(false));
    load(levee.proxy, "/p", 64, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let flood = most.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "unit limit {units}, request limit {rlimit}; most at the origin at once: {before}, then {flood} in the flood"
    );
    assert!(
        flood <= 40,
        "{flood} requests at once at a backend of 16 workers (request limit {rlimit}, unit limit {units})"
    );
    let m = levee.metrics().await;
    assert!(sample(&m, r#"levee_upstream_requests_inflight{pool="p"}"#).is_some());
}
