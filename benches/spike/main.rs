//! benches/spike: a flash-sale spike, open loop, against a simulated shop backend, with and
//! without levee in front. Run it with `benches/spike/run.sh` (results: benches/RESULTS.md).
//!
//! The backend: three services (pdp, checkout, search) on their own ports, sharing one app
//! tier of `WORKERS` workers (the database connections the incidents ran out of). A request
//! holds a worker for its service time; waiting requests queue without bound, and every
//! waiting request makes service slower (contention: service time x (1 + waiting/WORKERS)),
//! so an unprotected backend's goodput falls under overload. Work for clients that gave up is
//! not cancelled.
//!
//! The load: Poisson arrivals per class, fired on schedule whatever is outstanding (open
//! loop), each on a new connection; a client gives up after `GIVE_UP`. Phases: baseline,
//! a 7x spike, recovery. Goodput per class = 2xx answers within the class's latency
//! objective / requests sent.

use levee::demo::origin::{handler, serve, OriginResponse};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const WORKERS: usize = 32;
const BASE_RPS: f64 = 120.0;
const SPIKE_X: f64 = 7.0;
const BASELINE: Duration = Duration::from_secs(5);
const SPIKE: Duration = Duration::from_secs(10);
const RECOVERY: Duration = Duration::from_secs(10);
const GIVE_UP: Duration = Duration::from_secs(3);
const BIN: Duration = Duration::from_millis(500);

/// A class of request: share of traffic, path, backend service time, latency objective.
struct Class {
    name: &'static str,
    share: f64,
    paths: &'static [&'static str],
    slo: Duration,
}

const CLASSES: &[Class] = &[
    Class {
        name: "pdp",
        share: 0.60,
        paths: &["/p/1", "/p/2", "/p/3", "/p/42"],
        slo: Duration::from_millis(300),
    },
    Class {
        name: "checkout",
        share: 0.10,
        paths: &["/checkout"],
        slo: Duration::from_millis(1000),
    },
    Class {
        name: "search-narrow",
        share: 0.20,
        paths: &[
            "/search?q=socks",
            "/search?q=usb+cable",
            "/search?q=lego+42115",
            "/search?q=mug",
        ],
        slo: Duration::from_millis(500),
    },
    Class {
        name: "search-broad",
        share: 0.10,
        paths: &["/search?q=shoes", "/search?q=women%27s+clothing"],
        slo: Duration::from_millis(2000),
    },
];

const BROAD: &[&str] = &["shoes", "women's clothing"];

fn service_ms(path: &str, q: Option<&str>) -> u64 {
    if path.starts_with("/p/") {
        20
    } else if path.starts_with("/checkout") {
        40
    } else if q.is_some_and(|q| BROAD.contains(&q)) {
        300
    } else {
        40
    }
}

/// The shared app tier.
struct Tier {
    workers: Semaphore,
    waiting: AtomicUsize,
    max_waiting: AtomicUsize,
}

async fn backend() -> (Vec<SocketAddr>, Arc<Tier>) {
    let tier = Arc::new(Tier {
        workers: Semaphore::new(WORKERS),
        waiting: AtomicUsize::new(0),
        max_waiting: AtomicUsize::new(0),
    });
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let t = tier.clone();
        let a = serve(
            "127.0.0.1:0".parse().unwrap(),
            handler(move |r| {
                let t = t.clone();
                async move {
                    let q = r.query().get("q").cloned();
                    let base = service_ms(r.path(), q.as_deref());
                    let w = t.waiting.fetch_add(1, Ordering::SeqCst) + 1;
                    t.max_waiting.fetch_max(w, Ordering::SeqCst);
                    let _worker = t.workers.acquire().await.unwrap();
                    let waiting = t.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
                    let ms = base as f64 * (1.0 + waiting as f64 / WORKERS as f64);
                    tokio::time::sleep(Duration::from_micros((ms * 1000.0) as u64)).await;
                    OriginResponse::new(200, "ok")
                }
            }),
        )
        .await
        .unwrap();
        addrs.push(a);
    }
    (addrs, tier)
}

/// One result: class, send time since start, status (0: gave up or failed), latency.
type Rec = (usize, Duration, u16, Duration);

async fn fire(target: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(target).await else {
        return 0;
    };
    // No TIME_WAIT pile-up on the client side. (Deprecated because a non-zero linger blocks
    // on drop; a zero linger resets at once and does not.)
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    let req = format!("GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::with_capacity(512);
    if s.read_to_end(&mut buf).await.is_err() && buf.len() < 12 {
        return 0;
    }
    std::str::from_utf8(buf.get(9..12).unwrap_or(b"000"))
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// levee's metrics exposition (empty if it cannot be read).
async fn metrics(admin: SocketAddr) -> String {
    async {
        let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    }
    .await
    .unwrap_or_default()
}

/// Poll levee's metrics for one pool's limits and in flight (units and requests) and queue depth.
async fn trace_pool(admin: SocketAddr, pool: String) {
    let start = Instant::now();
    loop {
        let body = metrics(admin).await;
        let get = |name: &str| {
            let key = format!("{name}{{pool=\"{pool}\"}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .unwrap_or("?")
                .to_string()
        };
        eprintln!(
            "  t={:5.2}s limit={} inflight={} | requests: limit={} inflight={} | queued={}",
            start.elapsed().as_secs_f64(),
            get("levee_concurrency_limit"),
            get("levee_upstream_inflight"),
            get("levee_concurrency_limit_requests"),
            get("levee_upstream_requests_inflight"),
            get("levee_pool_queue_depth")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where each class goes: directly to its service, or all to levee.
fn targets(direct: &[SocketAddr], levee: Option<SocketAddr>) -> [SocketAddr; 4] {
    match levee {
        Some(l) => [l; 4],
        None => [direct[0], direct[1], direct[2], direct[2]],
    }
}

async fn run_load(targets: [SocketAddr; 4]) -> Vec<Rec> {
    let recs: Arc<Mutex<Vec<Rec>>> = Arc::default();
    let start = Instant::now();
    let total = BASELINE + SPIKE + RECOVERY;
    let mut tasks = Vec::new();
    for (ci, class) in CLASSES.iter().enumerate() {
        let recs = recs.clone();
        let target = targets[ci];
        tasks.push(tokio::spawn(async move {
            let mut next = Duration::ZERO;
            let mut i = 0usize;
            while next < total {
                let in_spike = next >= BASELINE && next < BASELINE + SPIKE;
                let rate = BASE_RPS * class.share * if in_spike { SPIKE_X } else { 1.0 };
                // Exponential inter-arrival times: Poisson arrivals.
                let u: f64 = rand::random_range(f64::EPSILON..1.0);
                next += Duration::from_secs_f64(-u.ln() / rate);
                tokio::time::sleep_until((start + next).into()).await;
                let path = class.paths[i % class.paths.len()];
                i += 1;
                let recs = recs.clone();
                let sent = start.elapsed();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let status = tokio::time::timeout(GIVE_UP, fire(target, path))
                        .await
                        .unwrap_or(0);
                    recs.lock().unwrap().push((ci, sent, status, t.elapsed()));
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(GIVE_UP + Duration::from_millis(200)).await;
    let v = recs.lock().unwrap().clone();
    v
}

fn good(r: &Rec) -> bool {
    r.2 / 100 == 2 && r.3 <= CLASSES[r.0].slo
}

struct Report {
    /// Per class: goodput % in baseline, spike, recovery.
    phases: Vec<[f64; 3]>,
    /// Time after the spike ends until every class is above 95% for good.
    recover: Option<Duration>,
    max_waiting: usize,
    sent: usize,
}

fn report(recs: &[Rec], max_waiting: usize) -> Report {
    let phase = |t: Duration| {
        if t < BASELINE {
            0
        } else if t < BASELINE + SPIKE {
            1
        } else {
            2
        }
    };
    let mut phases = vec![[0.0; 3]; CLASSES.len()];
    for (ci, row) in phases.iter_mut().enumerate() {
        for (p, cell) in row.iter_mut().enumerate() {
            let of: Vec<&Rec> = recs
                .iter()
                .filter(|r| r.0 == ci && phase(r.1) == p)
                .collect();
            *cell = 100.0 * of.iter().filter(|r| good(r)).count() as f64 / of.len().max(1) as f64;
        }
    }
    // Bins after the spike: the first from which every later bin has every class >= 95%.
    let end = BASELINE + SPIKE;
    let bins = (RECOVERY.as_millis() / BIN.as_millis()) as usize;
    let ok: Vec<bool> = (0..bins)
        .map(|b| {
            let lo = end + BIN * b as u32;
            (0..CLASSES.len()).all(|ci| {
                let of: Vec<&Rec> = recs
                    .iter()
                    .filter(|r| r.0 == ci && r.1 >= lo && r.1 < lo + BIN)
                    .collect();
                of.is_empty() || of.iter().filter(|r| good(r)).count() * 100 >= 95 * of.len()
            })
        })
        .collect();
    let recover = (0..bins)
        .find(|&b| ok[b..].iter().all(|x| *x))
        .map(|b| BIN * b as u32);
    Report {
        phases,
        recover,
        max_waiting,
        sent: recs.len(),
    }
}

struct Levee {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Levee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_levee(bin: &str, body: &str, dir: &std::path::Path) -> Levee {
    let (p, a) = (free_port(), free_port());
    let conf = format!(
        "[server]\nlisten = \"127.0.0.1:{p}\"\nadmin_listen = \"127.0.0.1:{a}\"\nthreads = 1\n\n{body}"
    );
    let file = dir.join("levee.toml");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new(bin)
        .args(["run", "-c"])
        .arg(&file)
        .env("LEVEE_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start levee");
    let admin: SocketAddr = format!("127.0.0.1:{a}").parse().unwrap();
    for _ in 0..200 {
        if fire(admin, "/readyz").await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Levee {
        child,
        addr: format!("127.0.0.1:{p}").parse().unwrap(),
        admin,
    }
}

/// A pool's `adaptive` setting: defaults, or `SPIKE_ADAPTIVE_<POOL>` (e.g.
/// `SPIKE_ADAPTIVE_SEARCH="{ tolerance = 2.0 }"`) to try tuning.
fn adaptive_line(pool: &str) -> String {
    let v = std::env::var(format!("SPIKE_ADAPTIVE_{}", pool.to_uppercase()))
        .unwrap_or_else(|_| "true".into());
    format!("adaptive = {v}\n")
}

fn config(setup: &str, direct: &[SocketAddr]) -> String {
    let (pdp, checkout, search) = (direct[0], direct[1], direct[2]);
    // "group" and "learned": the three pools declared as sharing one backend, which has the
    // adaptive limit; the pools themselves get generous static caps.
    let grouped = setup == "group" || setup == "learned";
    let pool = |name: &str, addr: SocketAddr, guess: usize| {
        let (max, extra) = match setup {
            "static" => (guess, String::new()),
            "adaptive" => (256, adaptive_line(name)),
            _ => (256, "group = \"app\"\n".to_string()),
        };
        format!(
            "[pools.{name}]\nendpoints = [\"{addr}\"]\nmax_inflight = {max}\nqueue = {{ max = 64, timeout = \"250ms\" }}\nrequest_timeout = \"5s\"\n{extra}\n"
        )
    };
    let mut c = String::new();
    if grouped {
        c += &format!(
            "[groups.app]\nmax_inflight = 512\nqueue = {{ max = 128, timeout = \"250ms\" }}\n{}\n",
            adaptive_line("group")
        );
    }
    // The static guesses an SRE might write weeks before: room for twice the normal peak.
    c += &pool("pdp", pdp, 16);
    c += &pool("checkout", checkout, 8);
    c += &pool("search", search, 16);
    c += "[[routes]]\nname = \"checkout\"\npool = \"checkout\"\npriority = \"critical\"\nmatch = { path_prefix = \"/checkout\" }\n\n";
    c += "[[routes]]\nname = \"pdp\"\npool = \"pdp\"\npriority = \"high\"\nmatch = { path_prefix = \"/p/\" }\n\n";
    if setup == "learned" {
        c += "[[routes]]\nname = \"search\"\npool = \"search\"\npriority = \"normal\"\ncost_key = \"query:q\"\nmatch = { path_prefix = \"/search\" }\n";
    } else {
        c += "[[routes]]\nname = \"search-broad\"\npool = \"search\"\npriority = \"sheddable\"\ncost = 8\nmatch = { path_prefix = \"/search\", query = { q = { one_of = [\"shoes\", \"women's clothing\"] } } }\n\n";
        c += "[[routes]]\nname = \"search\"\npool = \"search\"\npriority = \"normal\"\nmatch = { path_prefix = \"/search\" }\n";
    }
    c
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .iter()
        .position(|a| a == "--levee")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "target/release/levee".into());
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let dir = std::env::temp_dir().join(format!("levee-spike-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let setups = ["none", "static", "adaptive", "group", "learned"];
    let mut out = String::new();
    out += &format!(
        "Spike: {BASE_RPS} req/s baseline for {}s, {SPIKE_X}x for {}s, then {}s of recovery; \
         backend app tier of {WORKERS} workers; clients give up after {}s.\n\n",
        BASELINE.as_secs(),
        SPIKE.as_secs(),
        RECOVERY.as_secs(),
        GIVE_UP.as_secs()
    );
    out += "| setup | class | objective | baseline | spike | recovery |\n|---|---|---:|---:|---:|---:|\n";
    let mut summary = String::from(
        "\n| setup | requests sent | backend queue, max | time to recover (every class >= 95%) |\n|---|---:|---:|---|\n",
    );
    for setup in setups {
        if only.as_deref().is_some_and(|o| o != setup) {
            continue;
        }
        // A fresh backend per setup: nothing carries over.
        let (direct, tier) = backend().await;
        let levee = if setup == "none" {
            None
        } else {
            Some(start_levee(&bin, &config(setup, &direct), &dir).await)
        };
        eprintln!("running {setup} ...");
        // SPIKE_TRACE=POOL: print that pool's (or group's) limit, in-flight units and queue
        // every 250 ms while the load runs, to see how the controller moves; afterwards,
        // levee's rejections by route and reason and each class's misses per half second of
        // each phase.
        let trace = match (std::env::var("SPIKE_TRACE").ok(), levee.as_ref()) {
            (Some(pool), Some(l)) => Some(tokio::spawn(trace_pool(l.admin, pool))),
            _ => None,
        };
        let recs = run_load(targets(&direct, levee.as_ref().map(|l| l.addr))).await;
        if let Some(t) = trace {
            t.abort();
            // Why levee turned requests away, by route and reason (non-zero series only).
            if let Some(l) = levee.as_ref() {
                let body = metrics(l.admin).await;
                for line in body
                    .lines()
                    .filter(|l| l.starts_with("levee_rejections_total") && !l.ends_with(" 0"))
                {
                    eprintln!("  {line}");
                }
            }
        }
        drop(levee);
        let r = report(&recs, tier.max_waiting.load(Ordering::SeqCst));
        for (ci, c) in CLASSES.iter().enumerate() {
            let [b, s, rc] = r.phases[ci];
            out += &format!(
                "| {setup} | {} | {} ms | {b:.1}% | {s:.1}% | {rc:.1}% |\n",
                c.name,
                c.slo.as_millis()
            );
        }
        summary += &format!(
            "| {setup} | {} | {} | {} |\n",
            r.sent,
            r.max_waiting,
            r.recover
                .map_or("not within the recovery phase".into(), |d| format!(
                    "{:.1} s",
                    d.as_secs_f64()
                ))
        );
        for (ci, c) in CLASSES.iter().enumerate() {
            let mut by_status: BTreeMap<(u16, bool), usize> = BTreeMap::new();
            for rec in recs
                .iter()
                .filter(|r| r.0 == ci && r.1 >= BASELINE && r.1 < BASELINE + SPIKE)
            {
                *by_status.entry((rec.2, good(rec))).or_default() += 1;
            }
            eprintln!(
                "  {setup} {} during the spike, (status, within objective): {by_status:?}",
                c.name
            );
        }
        if std::env::var("SPIKE_TRACE").is_ok() {
            // Misses per class per half-second bin of each phase: where the losses are.
            let phases = [
                ("baseline", Duration::ZERO, BASELINE),
                ("spike", BASELINE, SPIKE),
                ("recovery", BASELINE + SPIKE, RECOVERY),
            ];
            for (ci, c) in CLASSES.iter().enumerate() {
                let misses: Vec<String> = phases
                    .iter()
                    .map(|&(name, from, len)| {
                        let bins = (len.as_millis() / BIN.as_millis()) as u32;
                        let m: Vec<usize> = (0..bins)
                            .map(|b| {
                                let lo = from + BIN * b;
                                recs.iter()
                                    .filter(|r| {
                                        r.0 == ci && r.1 >= lo && r.1 < lo + BIN && !good(r)
                                    })
                                    .count()
                            })
                            .collect();
                        format!("{name} {m:?}")
                    })
                    .collect();
                eprintln!(
                    "  {setup} {} misses per {BIN:?}: {}",
                    c.name,
                    misses.join(" | ")
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{out}{summary}");
}
