//! Proxy hygiene end to end: forwarded headers, request ids, hop-by-hop removal both ways,
//! upstream failures mapped to 502/504 with reasons, and the /metrics exposition.

mod common;
use common::*;
use std::time::Duration;

/// An origin that echoes the request headers it received, one `name: value` a line, and
/// answers with hop-by-hop headers of its own.
async fn echo_origin() -> std::net::SocketAddr {
    serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(|r: OriginRequest| async move {
            let body: String = r
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect();
            OriginResponse::new(200, body)
                .header("connection", "x-hop-secret")
                .header("x-hop-secret", "must not reach the client")
                .header("keep-alive", "timeout=5")
                .header("x-end-to-end", "kept")
        }),
    )
    .await
    .unwrap()
}

fn one_pool(addr: std::net::SocketAddr, extra: &str) -> String {
    format!("[pools.web]\nendpoints = [\"{addr}\"]\n{extra}\n\n[[routes]]\nname = \"web\"\npool = \"web\"\n")
}

fn received<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_request_id_and_hop_by_hop() {
    let levee = Levee::start(&one_pool(echo_origin().await, "")).await;
    let r = get(
        levee.proxy,
        "/page",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Request-Id", "client-id-42"),
            ("Connection", "close, x-client-hop"),
            ("X-Client-Hop", "secret"),
            ("Keep-Alive", "timeout=9"),
            ("Proxy-Connection", "keep-alive"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.text();
    // The client's X-Forwarded-For is kept as data and the TCP peer appended.
    assert_eq!(
        received(&seen, "x-forwarded-for"),
        vec!["203.0.113.7, 127.0.0.1"]
    );
    // This hop is plain HTTP whatever the client claims.
    assert_eq!(received(&seen, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(received(&seen, "x-request-id"), vec!["client-id-42"]);
    for hop in ["x-client-hop", "keep-alive", "proxy-connection"] {
        assert!(
            received(&seen, hop).is_empty(),
            "{hop} reached the origin:\n{seen}"
        );
    }
    // Back to the client: request id kept, the origin's hop-by-hop fields removed.
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
    assert_eq!(r.header("x-hop-secret"), None);
    assert_eq!(r.header("keep-alive"), None);

    // Without a client id levee makes one, the same on both sides.
    let r = get(levee.proxy, "/page", &[]).await.unwrap();
    let id = r.header("x-request-id").expect("generated id").to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(received(&r.text(), "x-request-id"), vec![id.as_str()]);
    assert_eq!(received(&r.text(), "x-forwarded-for"), vec!["127.0.0.1"]);
    // An unsafe client id (quotes) is replaced, not echoed.
    let r = get(levee.proxy, "/page", &[("X-Request-Id", "bad\"id")])
        .await
        .unwrap();
    assert_ne!(r.header("x-request-id"), Some("bad\"id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_502_and_timeout_is_504() {
    // A port nobody listens on.
    let closed: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let slow = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(|_r| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            OriginResponse::new(200, "late")
        }),
    )
    .await
    .unwrap();
    let levee = Levee::start(&format!(
        r#"[pools.dead]
endpoints = ["{closed}"]
connect_timeout = "200ms"

[pools.slow]
endpoints = ["{slow}"]
request_timeout = "300ms"

[[routes]]
name = "dead"
pool = "dead"
match = {{ path_prefix = "/dead" }}

[[routes]]
name = "slow"
pool = "slow"
match = {{ path_prefix = "/slow" }}
"#
    ))
    .await;
    let r = get(levee.proxy, "/dead", &[]).await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-levee-reason"), Some("upstream_connect_failed"));
    assert!(r.header("x-request-id").is_some());

    let t = std::time::Instant::now();
    let r = get(levee.proxy, "/slow", &[]).await.unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-levee-reason"), Some("upstream_timeout"));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "timed out late: {:?}",
        t.elapsed()
    );

    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"levee_upstream_errors_total{pool="dead",reason="upstream_connect_failed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"levee_upstream_errors_total{pool="slow",reason="upstream_timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="dead",status_class="5xx"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"levee_upstream_inflight{pool="dead"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, r#"levee_upstream_inflight{pool="slow"}"#),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposition_is_complete_and_promtool_clean() {
    let levee = Levee::start(&one_pool(named_origin("web").await, "max_inflight = 7")).await;
    for _ in 0..5 {
        assert_eq!(get(levee.proxy, "/", &[]).await.unwrap().status, 200);
    }
    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="web",status_class="2xx"}"#
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(&m, r#"levee_request_duration_seconds_count{route="web"}"#),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"levee_rejections_total{reason="overloaded",route="web"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, r#"levee_upstream_inflight{pool="web"}"#),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, r#"levee_concurrency_limit{pool="web"}"#),
        Some(7.0)
    );
    assert!(m.contains("levee_endpoint_up{endpoint=\"127.0.0.1:"));
    for family in [
        "levee_requests_total",
        "levee_rejections_total",
        "levee_request_duration_seconds",
        "levee_upstream_inflight",
        "levee_endpoint_up",
    ] {
        assert!(m.contains(&format!("# TYPE {family} ")), "{family} missing");
    }

    // promtool (Debian package `prometheus`, installed by the test command) must find nothing.
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: run the README's test command, which installs it");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let levee = Levee::start(&one_pool(named_origin("web").await, "")).await;
    assert_eq!(get(levee.admin, "/healthz", &[]).await.unwrap().status, 200);
    assert_eq!(get(levee.admin, "/readyz", &[]).await.unwrap().status, 200);
    assert_eq!(get(levee.admin, "/nope", &[]).await.unwrap().status, 404);
    assert_eq!(
        request(levee.admin, "POST", "/metrics", &[("Content-Length", "0")])
            .await
            .unwrap()
            .status,
        405
    );
    let s = levee.status().await;
    assert_eq!(s["routes"][0]["name"], "web");
    assert_eq!(s["routes"][0]["pool"], "web");
    assert_eq!(s["pools"][0]["max_inflight"], 64);
    assert_eq!(s["pools"][0]["endpoints"][0]["up"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_retries_the_next_endpoint() {
    let closed: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let good = named_origin("good").await;
    let levee = Levee::start(&one_pool_two(closed, good)).await;
    // No health check: the dead endpoint stays in rotation, so every other request tries it
    // first and must be retried on the good one.
    for _ in 0..6 {
        let r = get(levee.proxy, "/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-origin"), Some("good"));
    }
    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="web",status_class="2xx"}"#
        ),
        Some(6.0)
    );
}

fn one_pool_two(a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    format!("[pools.web]\nendpoints = [\"{a}\", \"{b}\"]\nconnect_timeout = \"200ms\"\n\n[[routes]]\nname = \"web\"\npool = \"web\"\n")
}
