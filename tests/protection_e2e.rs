//! Per-route protections end to end (issue #3): route and client rate limits, the circuit
//! breaker on errors and on slow calls (open, stay open, half-open probes closing or
//! reopening it), shadow mode and degrade responses, against the real proxy and real origins.
//!
//! Rates are checked against bounds computed from the measured elapsed time: GCRA hands out
//! exactly one token per `1/rps`, so after the burst is spent the passes in `T` seconds are
//! `T * rps` give or take one token at each end of the window.

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An origin whose status and delay the test sets; counts the requests it saw.
struct Controlled {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicUsize>,
}

async fn controlled() -> Controlled {
    let status = Arc::new(AtomicU16::new(200));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let (s, d, h) = (status.clone(), delay_ms.clone(), hits.clone());
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |_r| {
            let (s, d, h) = (s.clone(), d.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let delay = d.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                OriginResponse::new(s.load(Ordering::SeqCst), "origin")
            }
        }),
    )
    .await
    .unwrap();
    Controlled {
        addr,
        status,
        delay_ms,
        hits,
    }
}

fn config(addr: SocketAddr, route_extra: &str) -> String {
    format!(
        "[pools.p]\nendpoints = [\"{addr}\"]\n\n[[routes]]\nname = \"r\"\npool = \"p\"\n{route_extra}\n"
    )
}

async fn status_of(levee: &Levee, headers: &[(&str, &str)]) -> Resp {
    get(levee.proxy, "/x", headers).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rate_limit_burst_then_steady_rate() {
    let o = controlled().await;
    let levee = Levee::start(&config(o.addr, "[routes.rate_limit]\nrps = 10\nburst = 5")).await;

    // Burst: 20 requests back to back; 5 pass, plus whatever refilled meanwhile.
    let t0 = Instant::now();
    let mut passed = 0;
    let mut first_reject = None;
    for _ in 0..20 {
        let r = status_of(&levee, &[]).await;
        if r.status == 200 {
            passed += 1;
        } else if first_reject.is_none() {
            first_reject = Some(r);
        }
    }
    let refill = (t0.elapsed().as_secs_f64() * 10.0).floor() as i32;
    assert!(
        (5..=5 + refill + 1).contains(&passed),
        "burst: {passed} passed, refill {refill}"
    );
    let r = first_reject.expect("some requests are limited");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-levee-reason"), Some("rate_limited"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert!(r.text().contains("\"rate_limited\""));

    // Steady state: offer ~40/s for 1.5 s; 10/s pass.
    let t1 = Instant::now();
    let mut steady = 0;
    while t1.elapsed() < Duration::from_millis(1500) {
        steady += (status_of(&levee, &[]).await.status == 200) as i32;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let expect = t1.elapsed().as_secs_f64() * 10.0;
    assert!(
        (steady as f64 - expect).abs() <= 2.0,
        "steady: {steady} passed, expected {expect:.1}"
    );
    assert_eq!(o.hits.load(Ordering::SeqCst) as i32, passed + steady);
    let m = levee.metrics().await;
    let limited = sample(
        &m,
        r#"levee_rejections_total{reason="rate_limited",route="r"}"#,
    )
    .unwrap();
    assert!(limited >= (20 - passed) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rate_limit_holds_the_greedy_client_only() {
    let o = controlled().await;
    let levee = Levee::start(&config(
        o.addr,
        "[routes.client_rate_limit]\nkey = \"header:x-client\"\nrps = 0.5\nburst = 3",
    ))
    .await;
    let mut greedy = Vec::new();
    for _ in 0..10 {
        greedy.push(status_of(&levee, &[("x-client", "greedy")]).await);
    }
    assert_eq!(greedy.iter().filter(|r| r.status == 200).count(), 3);
    let limited = greedy.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(
        limited.header("x-levee-reason"),
        Some("client_rate_limited")
    );
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((2..=3).contains(&retry), "retry-after {retry}");
    // The polite client is not affected.
    for _ in 0..3 {
        assert_eq!(
            status_of(&levee, &[("x-client", "polite")]).await.status,
            200
        );
    }
    // Without the header the client IP is the key: its own fresh share.
    let no_key: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(status_of(&levee, &[]).await.status);
        }
        v
    };
    assert_eq!(no_key, [200, 200, 200, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_on_errors_probes_reopen_then_close() {
    let o = controlled().await;
    o.status.store(500, Ordering::SeqCst);
    let levee = Levee::start(&config(
        o.addr,
        "[routes.circuit_breaker]\nwindow = \"10s\"\nmin_requests = 5\nerror_ratio = 0.5\nopen_for = \"300ms\"\nprobes = 2",
    ))
    .await;
    let state = |m: &str| sample(m, r#"levee_breaker_state{route="r"}"#).unwrap();
    assert_eq!(state(&levee.metrics().await), 0.0);

    for _ in 0..5 {
        assert_eq!(status_of(&levee, &[]).await.status, 500);
    }
    // Open: answered at once, nothing reaches the origin.
    let opened = Instant::now();
    let r = status_of(&levee, &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-levee-reason"), Some("circuit_open"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(o.hits.load(Ordering::SeqCst), 5);
    assert_eq!(state(&levee.metrics().await), 1.0);

    // Stays open for open_for.
    while opened.elapsed() < Duration::from_millis(200) {
        assert_eq!(status_of(&levee, &[]).await.status, 503);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(o.hits.load(Ordering::SeqCst), 5);

    // Half-open with the origin still failing: the probe fails and it opens again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status_of(&levee, &[]).await.status, 500);
    assert_eq!(o.hits.load(Ordering::SeqCst), 6);
    let r = status_of(&levee, &[]).await;
    assert_eq!(r.header("x-levee-reason"), Some("circuit_open"));
    assert_eq!(state(&levee.metrics().await), 1.0);

    // The origin recovers: after open_for, two good probes close it.
    o.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status_of(&levee, &[]).await.status, 200);
    assert_eq!(
        state(&levee.metrics().await),
        2.0,
        "half-open after one probe"
    );
    assert_eq!(status_of(&levee, &[]).await.status, 200);
    assert_eq!(state(&levee.metrics().await), 0.0);
    for _ in 0..5 {
        assert_eq!(status_of(&levee, &[]).await.status, 200);
    }
    let m = levee.metrics().await;
    assert!(
        sample(
            &m,
            r#"levee_rejections_total{reason="circuit_open",route="r"}"#
        )
        .unwrap()
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_on_slow_calls_and_4xx_are_not_errors() {
    let o = controlled().await;
    let levee = Levee::start(&config(
        o.addr,
        "[routes.circuit_breaker]\nmin_requests = 4\nerror_ratio = 0.5\nslow_call = \"100ms\"\nslow_ratio = 0.5\nopen_for = \"10s\"",
    ))
    .await;
    // 4xx answers are the client's problem, not the upstream's: the breaker stays closed.
    o.status.store(404, Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(status_of(&levee, &[]).await.status, 404);
    }
    // Slow successes open it.
    o.status.store(200, Ordering::SeqCst);
    o.delay_ms.store(150, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(status_of(&levee, &[]).await.status);
    }
    // 6 fast 404s and 4 slow calls: 4 of 10 are slow, below 0.5. Two more slow calls tip it.
    assert_eq!(statuses, [200; 4]);
    statuses.clear();
    for _ in 0..3 {
        statuses.push(status_of(&levee, &[]).await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 503],
        "5 of 11 slow is below half; 6 of 12 opens it"
    );
    let r = status_of(&levee, &[]).await;
    assert_eq!(r.header("x-levee-reason"), Some("circuit_open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_lets_traffic_through_and_counts() {
    let o = controlled().await;
    let a = o.addr;
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{a}\"]\n\n\
         [[routes]]\nname = \"block\"\npool = \"p\"\nmatch = {{ path_prefix = \"/block\" }}\n\
         [routes.rate_limit]\nrps = 1\nburst = 1\nshadow = true\n\n\
         [[routes]]\nname = \"whole\"\npool = \"p\"\nshadow = true\nmatch = {{ path_prefix = \"/whole\" }}\n\
         [routes.client_rate_limit]\nrps = 1\nburst = 2\n"
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(get(levee.proxy, "/block", &[]).await.unwrap().status, 200);
        assert_eq!(get(levee.proxy, "/whole", &[]).await.unwrap().status, 200);
    }
    assert_eq!(o.hits.load(Ordering::SeqCst), 10);
    let m = levee.metrics().await;
    let shadow = |route: &str, reason: &str| {
        sample(
            &m,
            &format!(r#"levee_shadow_rejections_total{{reason="{reason}",route="{route}"}}"#),
        )
        .unwrap()
    };
    // Bounds: at most one token can refill during the run (well under a second).
    assert!((3.0..=4.0).contains(&shadow("block", "rate_limited")));
    assert!((2.0..=3.0).contains(&shadow("whole", "client_rate_limited")));
    let real = sample(
        &m,
        r#"levee_rejections_total{reason="rate_limited",route="block"}"#,
    );
    assert_eq!(real, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degrade_response_replaces_the_answer() {
    let o = controlled().await;
    let body = "{\"items\":[],\"note\":\"search is busy, showing nothing\"}\n";
    let levee = Levee::start_with_files(
        &config(
            o.addr,
            "[routes.rate_limit]\nrps = 0.1\nburst = 1\n\
             [routes.degrade]\nstatus = 200\nretry_after = \"30s\"\nbody_file = \"busy.json\"\ncontent_type = \"application/json; charset=utf-8\"",
        ),
        &[("busy.json", body)],
    )
    .await;
    assert_eq!(status_of(&levee, &[]).await.text(), "origin");
    let r = status_of(&levee, &[("x-request-id", "req-42")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), body);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("x-levee-reason"), Some("rate_limited"));
    assert_eq!(r.header("x-request-id"), Some("req-42"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((30..=45).contains(&retry), "retry-after {retry}");
    assert_eq!(o.hits.load(Ordering::SeqCst), 1);
}
