//! `levee demo`: simulated shop backends on loopback and levee in front of them with
//! `conf/demo.toml`, so a newcomer sees routing, isolation and shedding work on a fresh
//! machine. The backends: pdp (fast, cacheable product pages), search (serves 8 at a time;
//! broad category terms are slow, and it slows down further as its queue grows — the
//! collapse levee is there to prevent), checkout, and web (everything else).

pub mod origin;

use origin::{handler, serve, OriginRequest, OriginResponse};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The demo config, built into the binary so `levee demo` works from any folder.
pub const DEMO_CONFIG: &str = include_str!("../../conf/demo.toml");

const BROAD: &[&str] = &[
    "women's clothing",
    "men's clothing",
    "shoes",
    "electronics",
    "sale",
];

fn ok_health(r: &OriginRequest) -> Option<OriginResponse> {
    (r.path() == "/healthz").then(|| OriginResponse::new(200, "ok\n"))
}

/// Start the four backends on the ports `conf/demo.toml` names.
pub async fn start_backends() -> std::io::Result<()> {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    serve(
        at(18081),
        handler(|r: OriginRequest| async move {
            if let Some(h) = ok_health(&r) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            let id = r.path().trim_start_matches("/p/").to_string();
            OriginResponse::json(
                200,
                format!("{{\"product\":\"{id}\",\"price\":1999,\"stock\":42}}\n"),
            )
            .header("cache-control", "max-age=5")
        }),
    )
    .await?;

    // Search: 8 workers; waiting requests queue inside the backend and everyone slows down.
    let workers = Arc::new(Semaphore::new(8));
    serve(
        at(18082),
        handler(move |r: OriginRequest| {
            let workers = workers.clone();
            async move {
                if let Some(h) = ok_health(&r) {
                    return h;
                }
                let q = r
                    .query()
                    .get("q")
                    .cloned()
                    .unwrap_or_default()
                    .to_lowercase();
                let queued = 8usize.saturating_sub(workers.available_permits());
                let Ok(_w) = workers.acquire().await else {
                    return OriginResponse::new(503, "closed\n");
                };
                let base = if BROAD.contains(&q.as_str()) { 300 } else { 20 };
                // Contention: each busy worker adds 10% (a crude model of a search cluster's queue).
                let ms = base + base * queued as u64 / 10;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                OriginResponse::json(
                    200,
                    format!("{{\"q\":\"{q}\",\"hits\":[],\"took_ms\":{ms}}}\n"),
                )
            }
        }),
    )
    .await?;

    serve(
        at(18083),
        handler(|r: OriginRequest| async move {
            if let Some(h) = ok_health(&r) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            OriginResponse::json(200, "{\"order\":\"accepted\"}\n")
        }),
    )
    .await?;

    serve(
        at(18084),
        handler(|r: OriginRequest| async move {
            if let Some(h) = ok_health(&r) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            OriginResponse::new(200, format!("web page {}\n", r.path()))
                .header("content-type", "text/html")
        }),
    )
    .await?;
    Ok(())
}

/// What `levee demo` prints before serving.
pub fn banner(listen: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "levee demo: simulated shop backends on 127.0.0.1:18081-18084, levee on http://{listen}

Try:
  curl -i http://{listen}/p/123                          # product page -> pdp pool (cached 5 s: see Age)
  curl -i -X DELETE 'http://{admin}/admin/cache?route=pdp&path=/p/123'  # purge that page
  curl -i 'http://{listen}/search?q=socks'               # narrow search -> search pool
  curl -i 'http://{listen}/search?q=women%27s+clothing'  # broad search (route search-broad)
  curl -i -X POST http://{listen}/checkout               # checkout pool (critical)
  curl -i http://{listen}/                               # everything else -> web pool
  seq 12 | xargs -P12 -I{{}} curl -s -o /dev/null -w '%{{http_code}} ' 'http://{listen}/search?q=shoes'; echo
                                                         # 12 broad searches at once: burst 5, then 429 rate_limited
  for i in $(seq 8); do curl -s -o /dev/null -w '%{{http_code}} ' -X POST http://{listen}/checkout; done; echo
                                                         # one client: burst 4, then 429 client_rate_limited
  curl -s http://{admin}/admin/status                    # routes (breaker state) and pools, JSON
  curl -s http://{admin}/metrics | grep ^levee_          # Prometheus metrics
Overload search and watch it shed while product pages stay fast:
  wrk -t2 -c64 -d10s 'http://{listen}/search?q=shoes' & wrk -t1 -c8 -d10s http://{listen}/p/1

Ctrl-C stops it.
"
    )
}
