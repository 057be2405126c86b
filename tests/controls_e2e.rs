//! The SRE's controls end to end (issue #5): route switches with TTLs behind a bearer token,
//! schedules, and hot reload (admin call, SIGHUP, file change): invalid configs refused with
//! the running one kept, state that survives, and no request lost across 20 reloads under load.

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "ops-oncall:0123456789abcdef0123";
const BEARER: &str = "Bearer 0123456789abcdef0123";

fn routes(a: SocketAddr, extra: &str) -> String {
    format!(
        "[pools.p]\nendpoints = [\"{a}\"]\n\n\
         [[routes]]\nname = \"search\"\npool = \"p\"\nmatch = {{ path_prefix = \"/search\" }}\n\
         [routes.circuit_breaker]\nmin_requests = 3\nopen_for = \"1h\"\n\n\
         [[routes]]\nname = \"web\"\npool = \"p\"\n{extra}"
    )
}

async fn switch(levee: &Levee, route: &str, body: &str, auth: Option<&str>) -> Resp {
    let h: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
    send(
        levee.admin,
        "PUT",
        &format!("/admin/routes/{route}/switch"),
        &h,
        body,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_need_the_token_take_effect_and_expire() {
    let o = named_origin("origin").await;
    let levee = Levee::start_full(
        "admin_token_file = \"admin.token\"",
        &routes(o, ""),
        &[("admin.token", &format!("# on-call\n{TOKEN}\n"))],
    )
    .await;
    let body = r#"{"state":"off","ttl":"800ms","reason":"search melting"}"#;
    assert_eq!(switch(&levee, "search", body, None).await.status, 401);
    assert_eq!(
        switch(&levee, "search", body, Some("Bearer wrong-token-0000000"))
            .await
            .status,
        401
    );
    let r = get(levee.proxy, "/search?q=a", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.header("x-levee-reason"));

    let r = switch(&levee, "search", body, Some(BEARER)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"by\": \"ops-oncall\""), "{}", r.text());
    let set = Instant::now();
    // The next request sees it.
    let r = get(levee.proxy, "/search?q=a", &[]).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-levee-reason"), Some("switched_off"));
    assert_eq!(
        get(levee.proxy, "/", &[]).await.unwrap().status,
        200,
        "other routes untouched"
    );
    let st = levee.status().await;
    assert_eq!(st["routes"][0]["switch"]["state"], "off");
    assert_eq!(st["routes"][0]["switch"]["by"], "ops-oncall");
    assert_eq!(st["routes"][0]["switch"]["reason"], "search melting");

    // Degrade, then the TTL reverts it by itself.
    while set.elapsed() < Duration::from_millis(900) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(levee.proxy, "/search?q=a", &[]).await.unwrap().status,
        200
    );
    let r = switch(&levee, "web", r#"{"state":"degrade"}"#, Some(BEARER)).await;
    assert_eq!(r.status, 200);
    let r = get(levee.proxy, "/", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-levee-reason")),
        (503, Some("degraded"))
    );
    assert_eq!(
        switch(&levee, "web", r#"{"state":"on"}"#, Some(BEARER))
            .await
            .status,
        200
    );
    assert_eq!(get(levee.proxy, "/", &[]).await.unwrap().status, 200);

    // Bad requests are explained.
    let r = switch(&levee, "nope", r#"{"state":"off"}"#, Some(BEARER)).await;
    assert_eq!(r.status, 404);
    let r = switch(&levee, "web", r#"{"state":"sideways"}"#, Some(BEARER)).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("expected on, off or degrade"));
    let r = switch(
        &levee,
        "web",
        r#"{"state":"off","ttl":"forever"}"#,
        Some(BEARER),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(levee.rejections("search", "switched_off").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_refuses_and_keeps_state() {
    let o = named_origin("origin").await;
    let bad_origin = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(|_r| async { OriginResponse::new(500, "boom") }),
    )
    .await
    .unwrap();
    // search goes to a failing origin: its breaker opens.
    let body = |extra: &str| {
        format!(
            "[pools.bad]\nendpoints = [\"{bad_origin}\"]\n\n{}",
            routes(o, extra).replace(
                "pool = \"p\"\nmatch = { path_prefix = \"/search\" }",
                "pool = \"bad\"\nmatch = { path_prefix = \"/search\" }"
            )
        )
    };
    let levee = Levee::start(&body("")).await;
    for _ in 0..3 {
        assert_eq!(get(levee.proxy, "/search", &[]).await.unwrap().status, 500);
    }
    assert_eq!(
        levee.reason("/search").await.as_deref(),
        Some("circuit_open")
    );
    let r = switch(&levee, "web", r#"{"state":"degrade"}"#, None).await;
    assert_eq!(r.status, 200);

    // A valid change: a new route. Applied; the breaker and the switch survive.
    let added = "\n[[routes]]\nname = \"new\"\npool = \"p\"\nmatch = { path_prefix = \"/new\" }\n";
    let with_new = body("").replace(
        "[[routes]]\nname = \"web\"",
        &format!("{added}\n[[routes]]\nname = \"web\""),
    );
    levee.rewrite(&with_new);
    let r = send(levee.admin, "POST", "/admin/reload", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"pools_kept\": 2"), "{}", r.text());
    assert_eq!(get(levee.proxy, "/new", &[]).await.unwrap().status, 200);
    assert_eq!(
        levee.reason("/search").await.as_deref(),
        Some("circuit_open")
    );
    assert_eq!(levee.reason("/").await.as_deref(), Some("degraded"));

    // An invalid config: refused with every error, the running one stays.
    levee.rewrite("[pools.p]\nendpoints = []\n\n[[routes]]\nname = \"x\"\npool = \"nope\"\n");
    let r = send(levee.admin, "POST", "/admin/reload", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 422);
    let t = r.text();
    assert!(
        t.contains("pools.p.endpoints") && t.contains("unknown pool"),
        "{t}"
    );
    assert_eq!(get(levee.proxy, "/new", &[]).await.unwrap().status, 200);
    let m = levee.metrics().await;
    assert_eq!(
        sample(&m, r#"levee_config_reloads_total{result="success"}"#),
        Some(1.0)
    );
    assert!(sample(&m, r#"levee_config_reloads_total{result="failure"}"#).unwrap() >= 1.0);

    // An emptied file (a truncated save, a bad deploy) is valid alone but would 404 every
    // request: refused too, the running routes stay.
    levee.rewrite("");
    let r = send(levee.admin, "POST", "/admin/reload", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("the new config has no routes"),
        "{}",
        r.text()
    );
    assert_eq!(get(levee.proxy, "/new", &[]).await.unwrap().status, 200);

    // SIGHUP reloads too; and so does a change of the file by itself (debounced).
    levee.rewrite(&body(""));
    assert_eq!(unsafe_kill(levee.pid(), "HUP"), 0);
    let gone = wait_for(
        || async { get(levee.proxy, "/new", &[]).await.unwrap().status == 200 },
        false,
    )
    .await;
    assert!(
        gone,
        "SIGHUP reload should have removed /new (now served by web: degraded)"
    );
    levee.rewrite(&with_new);
    let back = wait_for(
        || async { get(levee.proxy, "/new", &[]).await.unwrap().status == 200 },
        true,
    )
    .await;
    assert!(
        back,
        "the file watch should have reloaded within a few seconds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_removes_the_metric_series_of_what_it_dropped() {
    let (a, b) = (named_origin("a").await, named_origin("b").await);
    let before = format!(
        "[pools.p]\nendpoints = [\"{a}\", \"{b}\"]\n\n\
         [pools.q]\nendpoints = [\"{a}\"]\nadaptive = true\n\n\
         [[routes]]\nname = \"search\"\npool = \"q\"\nmatch = {{ path_prefix = \"/search\" }}\n\
         [routes.circuit_breaker]\nmin_requests = 3\n\n\
         [[routes]]\nname = \"gone\"\npool = \"q\"\nmatch = {{ path_prefix = \"/gone\" }}\n\n\
         [[routes]]\nname = \"web\"\npool = \"p\"\n"
    );
    let levee = Levee::start(&before).await;
    for path in ["/search", "/gone", "/", "/"] {
        assert_eq!(get(levee.proxy, path, &[]).await.unwrap().status, 200);
    }
    let m = levee.metrics().await;
    for series in [
        r#"levee_upstream_inflight{pool="q"}"#,
        r#"levee_concurrency_limit_requests{pool="q"}"#,
        r#"levee_breaker_state{route="search"}"#,
        r#"levee_requests_total{route="gone",status_class="2xx"}"#,
        &format!(r#"levee_endpoint_up{{endpoint="{b}",pool="p"}}"#),
    ] {
        assert!(
            sample(&m, series).is_some(),
            "{series} missing before:\n{m}"
        );
    }

    // Pool q, route gone, search's breaker and one endpoint of p are dropped.
    let after = format!(
        "[pools.p]\nendpoints = [\"{a}\"]\n\n\
         [[routes]]\nname = \"search\"\npool = \"p\"\nmatch = {{ path_prefix = \"/search\" }}\n\n\
         [[routes]]\nname = \"web\"\npool = \"p\"\n"
    );
    levee.rewrite(&after);
    let r = send(levee.admin, "POST", "/admin/reload", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let m = levee.metrics().await;
    assert!(!m.contains(r#"pool="q""#), "pool q's series stayed:\n{m}");
    assert!(
        !m.contains(r#"route="gone""#),
        "route gone's series stayed:\n{m}"
    );
    assert!(
        !m.contains("levee_breaker_state{"),
        "the breaker's series stayed:\n{m}"
    );
    assert!(
        !m.contains(&format!(r#"endpoint="{b}""#)),
        "{b}'s series stayed:\n{m}"
    );
    // What the new config still has keeps its series and its counts.
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="web",status_class="2xx"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="search",status_class="2xx"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"levee_endpoint_up{{endpoint="{a}",pool="p"}}"#)
        ),
        Some(1.0)
    );
    assert!(sample(&m, r#"levee_upstream_inflight{pool="p"}"#).is_some());
    assert_eq!(get(levee.proxy, "/search", &[]).await.unwrap().status, 200);

    // The file watch knows the admin call already applied this file: no second reload.
    // (Real time: the watch runs in the levee process, once a second; two ticks and a half.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        sample(
            &levee.metrics().await,
            r#"levee_config_reloads_total{result="success"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_survive_a_crash_with_a_state_file() {
    let o = named_origin("origin").await;
    let mut levee = Levee::start_full(
        "state_file = \"switches.json\"",
        &routes(o, "").replace(
            "[[routes]]\nname = \"web\"",
            "[[routes]]\nname = \"recs\"\npool = \"p\"\nmatch = { path_prefix = \"/recs\" }\n\n[[routes]]\nname = \"web\"",
        ),
        &[],
    )
    .await;
    // The runbook's move: search off during the incident; recs degraded for a minute.
    let r = switch(
        &levee,
        "search",
        r#"{"state":"off","reason":"ES at 95% CPU"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"saved\": true"), "{}", r.text());
    let r = switch(&levee, "recs", r#"{"state":"degrade","ttl":"1m"}"#, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let saved = std::fs::read_to_string(levee.dir.join("switches.json")).unwrap();
    assert!(saved.contains("ES at 95% CPU"), "{saved}");

    assert!(levee.crash_and_restart().await, "levee did not come back");
    assert_eq!(
        levee.reason("/search").await.as_deref(),
        Some("switched_off"),
        "a restart must not turn search back on"
    );
    assert_eq!(levee.reason("/recs").await.as_deref(), Some("degraded"));
    assert_eq!(get(levee.proxy, "/", &[]).await.unwrap().status, 200);
    let st = send(levee.admin, "GET", "/admin/status", &[], "")
        .await
        .unwrap();
    assert!(st.text().contains("ES at 95% CPU"), "{}", st.text());

    // Turned back on: saved too, so the next restart leaves it on.
    let r = switch(&levee, "search", r#"{"state":"on"}"#, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(levee.crash_and_restart().await, "levee did not come back");
    assert_eq!(get(levee.proxy, "/search", &[]).await.unwrap().status, 200);
    assert_eq!(levee.reason("/recs").await.as_deref(), Some("degraded"));
}

fn unsafe_kill(pid: u32, sig: &str) -> i32 {
    std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or(1)
}

/// Poll `f` for up to 5 s until it returns `want`.
async fn wait_for<F, Fut>(f: F, want: bool) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if f().await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_lose_no_request() {
    let o = named_origin("origin").await;
    let levee = Levee::start(&routes(o, "")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for i in 0..8 {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let p = levee.proxy;
        clients.push(tokio::spawn(async move {
            let path = if i % 2 == 0 { "/search?q=x" } else { "/" };
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match get(p, path, &[]).await {
                    Ok(r) if r.status == 200 => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for i in 0..20 {
        // Alternate between two configs that differ (a rate limit far above the load), so
        // every reload builds new route state.
        let extra = if i % 2 == 0 {
            "[routes.rate_limit]\nrps = 100000\n"
        } else {
            ""
        };
        levee.rewrite(&routes(o, extra));
        let r = send(levee.admin, "POST", "/admin/reload", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reload under load: {sent} requests sent, {failed} failed, 20 reloads");
    assert!(sent > 200, "the load should be sustained: {sent}");
    assert_eq!(failed, 0);
    let m = levee.metrics().await;
    assert_eq!(
        sample(&m, r#"levee_config_reloads_total{result="success"}"#),
        Some(20.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_switches_routes_while_it_applies() {
    let o = named_origin("origin").await;
    let now = chrono::Utc::now();
    let fmt = |d: chrono::Duration| (now + d).to_rfc3339();
    let sched = format!(
        "\n[[schedules]]\nname = \"sale-open\"\nfrom = \"{}\"\nuntil = \"{}\"\nswitches = {{ \"search\" = \"off\" }}\n\n\
         [[schedules]]\nname = \"later\"\nfrom = \"{}\"\nuntil = \"{}\"\nswitches = {{ \"web\" = \"degrade\" }}\n",
        fmt(chrono::Duration::hours(-1)),
        fmt(chrono::Duration::hours(1)),
        fmt(chrono::Duration::hours(2)),
        fmt(chrono::Duration::hours(3)),
    );
    let levee = Levee::start(&format!("{}{sched}", routes(o, ""))).await;
    let r = get(levee.proxy, "/search", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-levee-reason")),
        (503, Some("switched_off"))
    );
    assert_eq!(get(levee.proxy, "/", &[]).await.unwrap().status, 200);
    let st = levee.status().await;
    assert_eq!(st["routes"][0]["switch"]["source"], "schedule");
    assert_eq!(st["schedules"][0]["status"], "active");
    assert_eq!(st["schedules"][1]["status"], "upcoming");
    // A manual switch wins over the schedule.
    assert_eq!(
        switch(&levee, "search", r#"{"state":"on","ttl":"1h"}"#, None)
            .await
            .status,
        200
    );
    assert_eq!(get(levee.proxy, "/search", &[]).await.unwrap().status, 200);
}

/// Admin security (issue #8): the token appears in no admin answer, an oversized admin body
/// is refused with 413 before it is parsed, and a wrong token is as good as none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_answers_never_show_the_token_and_bodies_are_bounded() {
    let a = named_origin("a").await;
    let levee = Levee::start_full(
        "admin_token_file = \"admin.token\"",
        &routes(a, ""),
        &[("admin.token", TOKEN)],
    )
    .await;
    let secret = TOKEN.split_once(':').unwrap().1;
    for path in ["/admin/status", "/metrics", "/", "/ui/app.js"] {
        let r = get(levee.admin, path, &[]).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.text().contains(secret), "{path} shows the token");
    }
    let huge = format!(
        "{{\"state\":\"off\",\"reason\":\"{}\"}}",
        "x".repeat(100_000)
    );
    let r = switch(&levee, "web", &huge, Some(BEARER)).await;
    assert_eq!(r.status, 413, "{}", r.text());
    let r = switch(
        &levee,
        "web",
        r#"{"state":"off"}"#,
        Some("Bearer 0123456789abcdef012X"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains(secret));
    assert_eq!(
        get(levee.proxy, "/", &[]).await.unwrap().status,
        200,
        "nothing was switched"
    );
}
