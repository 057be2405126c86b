//! The route cache end to end (issue #6), against the real proxy and real origins that count
//! what reaches them: a herd of misses makes one origin request; `private`/`no-store` are
//! never stored; `Vary` is honoured; stale-if-error stands in for a failing origin only within
//! its bound; a flood on one route cannot evict another route's pages; purge drops a page;
//! `degrade.mode = "stale"` answers a rejected request with the cached copy.

mod common;
use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "ops-oncall:0123456789abcdef0123";
const BEARER: &str = "Bearer 0123456789abcdef0123";

/// An origin that counts requests per path and answers with `respond(path, request)`.
async fn counting_origin(
    respond: fn(&OriginRequest, usize) -> OriginResponse,
    delay: Duration,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |r| {
            let k = n2.fetch_add(1, Ordering::SeqCst) + 1;
            let resp = respond(&r, k);
            async move {
                tokio::time::sleep(delay).await;
                resp
            }
        }),
    )
    .await
    .unwrap();
    (addr, n)
}

fn cached_route(origin: SocketAddr, cache: &str, extra: &str) -> String {
    format!(
        "[pools.pdp]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nname = \"pdp\"\npool = \"pdp\"\nmatch = {{ path_prefix = \"/p/\" }}\n{extra}\n\
         [routes.cache]\n{cache}\n"
    )
}

fn max_age_60(r: &OriginRequest, n: usize) -> OriginResponse {
    OriginResponse::new(200, format!("page {} #{n}", r.path()))
        .header("cache-control", "max-age=60")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_misses_reaches_the_origin_once() {
    let (origin, count) = counting_origin(max_age_60, Duration::from_millis(300)).await;
    let levee = Levee::start(&cached_route(origin, "max_size = \"1MiB\"", "")).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let addr = levee.proxy;
        tasks.push(tokio::spawn(async move { get(addr, "/p/cold", &[]).await }));
    }
    let mut bodies = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap().expect("answered");
        assert_eq!(r.status, 200);
        bodies.insert(r.text());
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the herd made one origin request"
    );
    assert_eq!(bodies.len(), 1, "everyone got the one fill: {bodies:?}");
    let m = levee.metrics().await;
    let s = |res: &str| {
        sample(
            &m,
            &format!("levee_cache_lookups_total{{result=\"{res}\",route=\"pdp\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(s("miss"), 1.0, "{m}");
    assert_eq!(s("hit"), 199.0);
    let coalesced = sample(&m, "levee_cache_coalesced_total{route=\"pdp\"}").unwrap();
    assert!(coalesced >= 100.0, "most waited on the fill: {coalesced}");
    assert!(sample(&m, "levee_cache_bytes{route=\"pdp\"}").unwrap() > 0.0);
    // Hits took no pool slot: nothing left in flight either way.
    assert_eq!(
        sample(&m, "levee_upstream_inflight{pool=\"pdp\"}"),
        Some(0.0)
    );
    // A hit says how old it is.
    let r = get(levee.proxy, "/p/cold", &[]).await.unwrap();
    assert!(r.header("age").is_some(), "{:?}", r.headers);
}

fn by_path_policy(r: &OriginRequest, n: usize) -> OriginResponse {
    let cc = match r.path() {
        "/p/private" => "private, max-age=60",
        "/p/no-store" => "no-store",
        "/p/cookie" => "max-age=60",
        _ => "max-age=60",
    };
    let resp = OriginResponse::new(200, format!("#{n}")).header("cache-control", cc);
    match r.path() {
        "/p/cookie" => resp.header("set-cookie", "session=abc"),
        "/p/vary" => OriginResponse::new(
            200,
            r.header("accept-language").unwrap_or("none").to_string(),
        )
        .header("cache-control", "max-age=60")
        .header("vary", "Accept-Language"),
        _ => resp,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_no_store_and_cookies_are_never_stored_and_vary_is_honoured() {
    let (origin, count) = counting_origin(by_path_policy, Duration::ZERO).await;
    let levee = Levee::start(&cached_route(
        origin,
        "max_size = \"1MiB\"\nttl = \"60s\"",
        "",
    ))
    .await;
    for path in ["/p/private", "/p/no-store", "/p/cookie"] {
        let before = count.load(Ordering::SeqCst);
        let a = get(levee.proxy, path, &[]).await.unwrap();
        let b = get(levee.proxy, path, &[]).await.unwrap();
        assert_eq!(
            count.load(Ordering::SeqCst) - before,
            2,
            "{path} went to the origin twice"
        );
        assert_ne!(a.text(), b.text(), "{path}");
    }
    let ko = [("accept-language", "ko")];
    let en = [("accept-language", "en")];
    let before = count.load(Ordering::SeqCst);
    assert_eq!(get(levee.proxy, "/p/vary", &ko).await.unwrap().text(), "ko");
    assert_eq!(get(levee.proxy, "/p/vary", &en).await.unwrap().text(), "en");
    assert_eq!(get(levee.proxy, "/p/vary", &ko).await.unwrap().text(), "ko");
    assert_eq!(get(levee.proxy, "/p/vary", &en).await.unwrap().text(), "en");
    assert_eq!(
        count.load(Ordering::SeqCst) - before,
        2,
        "one fill per variant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_old_page_within_its_bound_only() {
    static FAIL: AtomicBool = AtomicBool::new(false);
    fn flaky(_r: &OriginRequest, n: usize) -> OriginResponse {
        if FAIL.load(Ordering::SeqCst) {
            OriginResponse::new(503, "origin down")
        } else {
            OriginResponse::new(200, format!("v{n}")).header("cache-control", "max-age=1")
        }
    }
    let (origin, _count) = counting_origin(flaky, Duration::ZERO).await;
    let levee = Levee::start(&cached_route(
        origin,
        "max_size = \"1MiB\"\nstale_if_error = \"2s\"",
        "",
    ))
    .await;
    let first = get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!((first.status, first.text().as_str()), (200, "v1"));
    FAIL.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1600)).await; // expired, within stale_if_error
    let stale = get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(
        (stale.status, stale.text().as_str()),
        (200, "v1"),
        "{:?}",
        stale.headers
    );
    assert!(stale
        .header("warning")
        .is_some_and(|w| w.starts_with("110")));
    tokio::time::sleep(Duration::from_millis(2600)).await; // past the bound
    let after = get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(
        after.status,
        503,
        "no stale copy past stale_if_error: {}",
        after.text()
    );
    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            "levee_cache_lookups_total{result=\"stale\",route=\"pdp\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_one_route_cannot_evict_another_routes_pages() {
    fn big(r: &OriginRequest, n: usize) -> OriginResponse {
        let body = format!("{} #{n} ", r.path()).repeat(200); // about 2 KiB
        OriginResponse::new(200, body).header("cache-control", "max-age=60")
    }
    let (origin, count) = counting_origin(big, Duration::ZERO).await;
    let levee = Levee::start(&format!(
        "[pools.web]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nname = \"pdp\"\npool = \"web\"\nmatch = {{ path_prefix = \"/p/\" }}\n\
         [routes.cache]\nmax_size = \"64KiB\"\n\n\
         [[routes]]\nname = \"list\"\npool = \"web\"\nmatch = {{ path_prefix = \"/list/\" }}\n\
         [routes.cache]\nmax_size = \"64KiB\"\n"
    ))
    .await;
    let page = get(levee.proxy, "/p/hot", &[]).await.unwrap().text();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    for i in 0..300 {
        let r = get(levee.proxy, &format!("/list/{i}"), &[]).await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(count.load(Ordering::SeqCst), 301);
    let again = get(levee.proxy, "/p/hot", &[]).await.unwrap();
    assert_eq!(again.text(), page, "still the cached copy");
    assert_eq!(
        count.load(Ordering::SeqCst),
        301,
        "the PDP page stayed cached"
    );
    let m = levee.metrics().await;
    let list = sample(&m, "levee_cache_bytes{route=\"list\"}").unwrap();
    assert!(
        list <= 65536.0 && list > 30000.0,
        "list cache within its budget: {list}"
    );
    // The flood evicted the list route's own early pages.
    let before = count.load(Ordering::SeqCst);
    get(levee.proxy, "/list/0", &[]).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_a_page_or_the_whole_route_behind_the_token() {
    let (origin, count) = counting_origin(max_age_60, Duration::ZERO).await;
    let levee = Levee::start_full(
        "admin_token_file = \"admin.token\"",
        &cached_route(origin, "max_size = \"1MiB\"", ""),
        &[("admin.token", TOKEN)],
    )
    .await;
    for t in ["/p/1?color=red", "/p/1?color=red", "/p/2", "/p/2"] {
        assert_eq!(get(levee.proxy, t, &[]).await.unwrap().status, 200);
    }
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let purge = |q: &'static str, auth: Option<&'static str>| {
        let admin = levee.admin;
        async move {
            let h: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
            send(admin, "DELETE", &format!("/admin/cache?{q}"), &h, "")
                .await
                .unwrap()
        }
    };
    assert_eq!(
        purge("route=pdp&path=%2Fp%2F1%3Fcolor%3Dred", None)
            .await
            .status,
        401
    );
    let r = purge("route=pdp&path=%2Fp%2F1%3Fcolor%3Dred", Some(BEARER)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["purged"], 1);
    get(levee.proxy, "/p/1?color=red", &[]).await.unwrap();
    get(levee.proxy, "/p/2", &[]).await.unwrap();
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "only the purged page was fetched again"
    );
    let r = purge("route=pdp", Some(BEARER)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    get(levee.proxy, "/p/2", &[]).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert_eq!(purge("route=nope", Some(BEARER)).await.status, 404);
    assert_eq!(purge("path=/p/2", Some(BEARER)).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degrade_mode_stale_answers_rejections_with_the_cached_copy() {
    fn short(r: &OriginRequest, n: usize) -> OriginResponse {
        OriginResponse::new(200, format!("{} v{n}", r.path())).header("cache-control", "max-age=1")
    }
    let (origin, count) = counting_origin(short, Duration::ZERO).await;
    let levee = Levee::start(&cached_route(
        origin,
        "max_size = \"1MiB\"",
        "[routes.degrade]\nmode = \"stale\"\nstatus = 503\n",
    ))
    .await;
    assert_eq!(
        get(levee.proxy, "/p/1", &[]).await.unwrap().text(),
        "/p/1 v1"
    );
    let r = send(
        levee.admin,
        "PUT",
        "/admin/routes/pdp/switch",
        &[],
        r#"{"state":"degrade"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Fresh: the copy is the normal answer.
    let fresh = get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!((fresh.status, fresh.header("x-levee-reason")), (200, None));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Expired: the copy stands in for the rejection, marked as such.
    let stale = get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.text(), "/p/1 v1");
    assert_eq!(stale.header("x-levee-reason"), Some("degraded"));
    assert!(stale
        .header("warning")
        .is_some_and(|w| w.starts_with("110")));
    assert!(stale.header("age").is_some());
    // Nothing cached: the degrade answer.
    let none = get(levee.proxy, "/p/2", &[]).await.unwrap();
    assert_eq!(
        (none.status, none.header("x-levee-reason")),
        (503, Some("degraded"))
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "nothing reached the origin while degraded"
    );
    assert_eq!(levee.rejections("pdp", "degraded").await, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_shed_at_the_bulkhead_gets_the_stale_copy() {
    // /p/slow holds the pool's only slot for a while; /p/1 expires after a second.
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(|r| async move {
            if r.path() == "/p/slow" {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                OriginResponse::new(200, "slow").header("cache-control", "no-store")
            } else {
                OriginResponse::new(200, "page one").header("cache-control", "max-age=1")
            }
        }),
    )
    .await
    .unwrap();
    let levee = Levee::start(&format!(
        "[pools.pdp]\nendpoints = [\"{addr}\"]\nmax_inflight = 1\nqueue = {{ max = 1, timeout = \"50ms\" }}\n\n\
         [[routes]]\nname = \"pdp\"\npool = \"pdp\"\nmatch = {{ path_prefix = \"/p/\" }}\n\
         [routes.degrade]\nmode = \"stale\"\n[routes.cache]\nmax_size = \"1MiB\"\n"
    ))
    .await;
    assert_eq!(
        get(levee.proxy, "/p/1", &[]).await.unwrap().text(),
        "page one"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await; // expired
    let proxy = levee.proxy;
    let slow = tokio::spawn(async move { get(proxy, "/p/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await; // the slot is taken
    let r = get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "page one"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-levee-reason"), Some("degraded"));
    // An uncached page shed the same way gets the degrade answer, with the cause.
    let r = get(levee.proxy, "/p/2", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-levee-reason")),
        (503, Some("queue_timeout"))
    );
    assert_eq!(slow.await.unwrap().unwrap().text(), "slow");
    let st = levee.status().await;
    let cache = &st["routes"][0]["cache"];
    assert_eq!(cache["lookups"]["stale"], 1, "{st:#}");
    assert!(cache["bytes"].as_u64().unwrap() > 0);
    assert_eq!(st["routes"][0]["degrade"]["mode"], "stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_pages_and_dropping_the_cache_frees_them() {
    let (origin, count) = counting_origin(max_age_60, Duration::ZERO).await;
    let levee = Levee::start(&cached_route(origin, "max_size = \"1MiB\"", "")).await;
    get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // A new budget and window: same store, pages kept.
    levee.rewrite(&cached_route(
        origin,
        "max_size = \"2MiB\"\nstale_if_error = \"1m\"",
        "",
    ));
    let r = send(levee.admin, "POST", "/admin/reload", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "still cached after the reload"
    );
    // The cache taken off the route: its pages go, requests reach the origin.
    levee.rewrite(&format!(
        "[pools.pdp]\nendpoints = [\"{origin}\"]\n\n\
         [[routes]]\nname = \"pdp\"\npool = \"pdp\"\nmatch = {{ path_prefix = \"/p/\" }}\n"
    ));
    let r = send(levee.admin, "POST", "/admin/reload", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // And back on: an empty cache (the old pages were freed, not revived).
    levee.rewrite(&cached_route(origin, "max_size = \"1MiB\"", ""));
    let r = send(levee.admin, "POST", "/admin/reload", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    get(levee.proxy, "/p/1", &[]).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
}
