//! Seeing the sale (issue #7): the access log stays within its bounds under a flood, W3C trace
//! context reaches the upstream (passed through, or started), and a real Prometheus scrapes
//! levee and sees the series the dashboard uses move.

mod common;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn flood(p: SocketAddr, path: &'static str, n: usize, clients: usize) {
    let left = Arc::new(AtomicUsize::new(n));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let left = left.clone();
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(1))
                .is_ok()
            {
                let _ = get(p, path, &[]).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_stays_within_its_bounds_under_a_flood() {
    let o = named_origin("origin").await;
    let levee = Levee::start(&format!(
        "[log]\nfile = \"access.log\"\nsample = 0.01\nmax_size = \"8KiB\"\nmax_files = 2\nerrors_per_second = 50\n\n\
         [pools.p]\nendpoints = [\"{o}\"]\n\n[[routes]]\nname = \"web\"\npool = \"p\"\nmatch = {{ path_prefix = \"/web\" }}\n"
    ))
    .await;
    let t = Instant::now();
    // 4,000 successes (sampled at 1%) and 4,000 unrouted requests (404 no_route: always
    // candidates, capped at 50 a second).
    let (a, b) = tokio::join!(
        flood(levee.proxy, "/web", 4000, 8),
        flood(levee.proxy, "/nope", 4000, 8)
    );
    let _ = (a, b);
    let secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(600)).await; // the writer flushes when idle

    let mut files = Vec::new();
    for e in std::fs::read_dir(&levee.dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("access.log") {
            files.push((name, std::fs::read_to_string(e.path()).unwrap()));
        }
    }
    let bytes: usize = files.iter().map(|(_, c)| c.len()).sum();
    let lines: Vec<Value> = files
        .iter()
        .flat_map(|(_, c)| c.lines())
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let ok = lines.iter().filter(|l| l["status"] == 200).count();
    let rejected = lines.iter().filter(|l| l["reason"] == "no_route").count();
    let dropped: u64 = lines.iter().filter_map(|l| l["dropped"].as_u64()).sum();
    eprintln!(
        "access log flood: 8000 requests in {secs:.2}s; {} files, {bytes} bytes, {} lines ({ok} sampled 2xx, {rejected} rejections, {dropped} reported dropped)",
        files.len(),
        lines.len()
    );
    // Bounds: at most max_files + 1 files of at most max_size each.
    assert!(
        files.len() <= 3,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, c) in &files {
        assert!(c.len() <= 8 * 1024, "{name}: {} bytes", c.len());
    }
    // Sampling: 1% of 4,000 is 40; allow the binomial spread (±4 sigma ≈ ±25). Some may
    // have rotated away, so only the upper bound is checked across kept files.
    assert!(ok <= 65, "{ok} sampled lines");
    // The cap: no more than 50 a second (plus one partial second).
    assert!(
        (rejected as f64) <= 50.0 * (secs + 1.0),
        "{rejected} rejection lines in {secs:.2}s"
    );
    let m = levee.metrics().await;
    let capped = sample(&m, r#"levee_access_log_dropped_total{why="rate_cap"}"#).unwrap();
    assert!(
        capped >= 4000.0 - 50.0 * (secs + 1.0),
        "{capped} dropped by the cap"
    );
    let l = lines.iter().find(|l| l["status"] == 200);
    if let Some(l) = l {
        for k in [
            "time",
            "request_id",
            "route",
            "pool",
            "upstream",
            "total_ms",
            "bytes",
            "client",
        ] {
            assert!(!l[k].is_null(), "field {k} missing in {l}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_the_upstream() {
    let (o, seen) = recording_origin(|r| r.header("traceparent").map(str::to_string)).await;
    let levee = Levee::start(&format!(
        "[log]\nfile = \"access.log\"\nsample = 1.0\n\n[tracing]\nstart = true\n\n\
         [pools.p]\nendpoints = [\"{o}\"]\n\n[[routes]]\nname = \"web\"\npool = \"p\"\n"
    ))
    .await;
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    get(
        levee.proxy,
        "/a",
        &[("traceparent", given), ("tracestate", "shop=1")],
    )
    .await
    .unwrap();
    get(levee.proxy, "/b", &[]).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].as_deref(), Some(given), "passed through unchanged");
    let started = seen[1].clone().expect("levee started a trace");
    let parts: Vec<&str> = started.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[1].len(), parts[3]),
        (4, "00", 32, "01")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let log = std::fs::read_to_string(levee.dir.join("access.log")).unwrap();
    let ids: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["trace_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["4bf92f3577b34da6a3ce929d0e0e4736", parts[1]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_is_counted_and_logged_as_499() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let a2 = arrived.clone();
    let o = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |_r| {
            let a2 = a2.clone();
            async move {
                a2.notify_one();
                tokio::time::sleep(Duration::from_secs(3)).await;
                OriginResponse::new(200, "too late")
            }
        }),
    )
    .await
    .unwrap();
    let levee = Levee::start(&format!(
        "[log]\nfile = \"access.log\"\nsample = 1.0\n\n\
         [pools.p]\nendpoints = [\"{o}\"]\n\n[[routes]]\nname = \"slow\"\npool = \"p\"\n"
    ))
    .await;
    let series = r#"levee_client_aborts_total{route="slow"}"#;
    assert_eq!(sample(&levee.metrics().await, series), Some(0.0));
    let mut client = tokio::net::TcpStream::connect(levee.proxy).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /wait HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    arrived.notified().await;
    drop(client); // gone while the origin is still working
    let t = Instant::now();
    let m = loop {
        let m = levee.metrics().await;
        if sample(&m, series) == Some(1.0) {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "no abort counted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="slow",status_class="2xx"}"#
        ),
        Some(0.0),
        "an abort is not a response"
    );
    let line = loop {
        let log = std::fs::read_to_string(levee.dir.join("access.log")).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains("/wait")) {
            break serde_json::from_str::<Value>(l).unwrap();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no access log line: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["reason"], "client_gone", "{line}");
    assert_eq!(line["route"], "slow", "{line}");
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

async fn prometheus(target: SocketAddr) -> Prometheus {
    let dir =
        std::env::temp_dir().join(format!("levee-prom-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: levee\n    static_configs:\n      - targets: [\"{target}\"]\n"
    );
    std::fs::write(dir.join("prometheus.yml"), conf).unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package `prometheus`; scripts/test.sh installs it)");
    Prometheus {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        _dir: dir,
    }
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

/// Instant query; the result vector.
async fn query(p: &Prometheus, q: &str) -> Vec<Value> {
    match get(p.addr, &format!("/api/v1/query?query={}", enc(q)), &[]).await {
        Ok(r) => serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn first_value(v: &[Value]) -> Option<f64> {
    v.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_the_dashboard_series_move() {
    let o = named_origin("origin").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{o}\"]\nadaptive = true\n\n[pools.dead]\nendpoints = [\"{dead}\"]\n\n\
         [[routes]]\nname = \"limited\"\npool = \"p\"\nmatch = {{ path_prefix = \"/limited\" }}\n[routes.rate_limit]\nrps = 1\nburst = 1\n\n\
         [[routes]]\nname = \"trial\"\npool = \"p\"\nmatch = {{ path_prefix = \"/trial\" }}\n[routes.rate_limit]\nrps = 1\nburst = 1\nshadow = true\n\n\
         [[routes]]\nname = \"dead\"\npool = \"dead\"\nmatch = {{ path_prefix = \"/dead\" }}\n\n\
         [[routes]]\nname = \"pdp\"\npool = \"p\"\nmatch = {{ path_prefix = \"/p/\" }}\n[routes.cache]\nttl = \"60s\"\n\n\
         [[routes]]\nname = \"web\"\npool = \"p\"\n[routes.circuit_breaker]\nmin_requests = 100\n"
    ))
    .await;
    let prom = prometheus(levee.admin).await;
    flood(levee.proxy, "/", 200, 4).await;
    // Wait for a scrape that has the traffic.
    let t = Instant::now();
    let mut first = None;
    while t.elapsed() < Duration::from_secs(30) {
        first = first_value(
            &query(
                &prom,
                r#"levee_requests_total{route="web",status_class="2xx"}"#,
            )
            .await,
        );
        if first.is_some_and(|v| v >= 200.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let first = first.expect("Prometheus scraped levee");
    // Every series the dashboard and the alerts use exists.
    for q in [
        "levee_rejections_total",
        r#"levee_request_duration_seconds_bucket{route="web"}"#,
        r#"levee_upstream_inflight{pool="p"}"#,
        r#"levee_concurrency_limit{pool="p"}"#,
        r#"levee_concurrency_limit_requests{pool="p"}"#,
        r#"levee_upstream_requests_inflight{pool="p"}"#,
        r#"levee_pool_queue_depth{pool="p"}"#,
        r#"levee_breaker_state{route="web"}"#,
        r#"levee_endpoint_up{pool="p"}"#,
        r#"levee_config_reloads_total{result="failure"}"#,
        r#"levee_cache_bytes{route="pdp"}"#,
        r#"process_open_fds{job="levee"}"#,
        r#"process_max_fds{job="levee"}"#,
        r#"levee_build_info{job="levee"}"#,
        r#"up{job="levee"}"#,
    ] {
        assert!(!query(&prom, q).await.is_empty(), "no series for {q}");
    }
    // And it moves: more traffic (rejections, shadow rejections and upstream errors too, so
    // every panel has something to rate), a higher count at a later scrape.
    flood(levee.proxy, "/", 100, 4).await;
    flood(levee.proxy, "/limited", 20, 2).await;
    flood(levee.proxy, "/trial", 20, 2).await;
    flood(levee.proxy, "/dead", 5, 1).await;
    flood(levee.proxy, "/p/1", 20, 2).await;
    let t = Instant::now();
    let mut later = first;
    while t.elapsed() < Duration::from_secs(15) && later < first + 100.0 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        later = first_value(
            &query(
                &prom,
                r#"levee_requests_total{route="web",status_class="2xx"}"#,
            )
            .await,
        )
        .unwrap_or(first);
    }
    assert!(later >= first + 100.0, "{first} -> {later}");
    // Every query of the Grafana dashboard runs and returns data.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/grafana/levee.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "{} queries in the dashboard",
        exprs.len()
    );
    let mut empty = Vec::new();
    for e in &exprs {
        let q = e
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$route", ".*")
            .replace("$pool", ".*");
        let r = get(prom.addr, &format!("/api/v1/query?query={}", enc(&q)), &[])
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], "success", "dashboard query failed: {q}\n{v}");
        if v["data"]["result"].as_array().is_some_and(|a| a.is_empty()) {
            empty.push(q);
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
    let p99 = query(
        &prom,
        r#"histogram_quantile(0.99, sum by (le) (rate(levee_request_duration_seconds_bucket{route="web"}[1m])))"#,
    )
    .await;
    assert!(
        first_value(&p99).is_some_and(|v| v > 0.0 && v < 1.0),
        "{p99:?}"
    );
}
