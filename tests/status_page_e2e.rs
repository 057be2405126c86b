//! The status page in a real browser (issue #5): headless Chromium driven over WebDriver
//! (chromedriver, Debian package `chromium-driver`) loads `GET /` from the admin listener,
//! and the test checks that it renders every route and pool, that it updates live as traffic
//! flows, that it fits a phone's width, and that pressing a route's "off" button (with the
//! token typed in) changes what the proxy answers.

mod common;
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver {
    addr: SocketAddr,
    child: Child,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver call; returns the `value` of the answer.
async fn wd(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        addr.port(),
        body.len()
    );
    let Ok(Ok(body)) =
        tokio::time::timeout(Duration::from_secs(30), exchange(addr, req.as_bytes())).await
    else {
        return Value::Null; // not listening yet
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    v["value"].clone()
}

/// chromedriver says `Connection: close` but keeps the socket open: read by Content-Length.
async fn exchange(addr: SocketAddr, req: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(req).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before a full response"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Ok(buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

fn chromedriver() -> Option<String> {
    [
        "chromedriver",
        "/usr/bin/chromedriver",
        "/usr/lib/chromium/chromedriver",
    ]
    .iter()
    .find(|p| Command::new(p).arg("--version").output().is_ok())
    .map(|p| p.to_string())
}

impl Driver {
    async fn start() -> Driver {
        let bin = chromedriver().expect(
            "chromedriver not found: install the Debian packages chromium and chromium-driver (scripts/test.sh does)",
        );
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let t = Instant::now();
        while wd(addr, "GET", "/status", None).await.get("ready") != Some(&Value::Bool(true)) {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }}}});
        let v = wd(addr, "POST", "/session", Some(caps)).await;
        let session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Driver {
            addr,
            child,
            session,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        wd(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
        .await
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Poll a script until it returns something truthy (at most 10 s).
    async fn until(&self, script: &str) -> Value {
        let t = Instant::now();
        loop {
            let v = self.js(script).await;
            if !(v.is_null() || v == Value::Bool(false) || v == json!("")) {
                return v;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "timed out waiting for: {script}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_updates_and_switches_routes() {
    let origin = named_origin("origin").await;
    let levee = Levee::start_full(
        "admin_token_file = \"admin.token\"",
        &format!(
            "[pools.search]\nendpoints = [\"{origin}\"]\nadaptive = {{ initial_limit = 20 }}\n\n[pools.web]\nendpoints = [\"{origin}\"]\n\n\
             [[routes]]\nname = \"search\"\npool = \"search\"\nmatch = {{ path_prefix = \"/search\" }}\n\n\
             [[routes]]\nname = \"web\"\npool = \"web\"\n"
        ),
        &[("admin.token", "oncall:page-test-token-0123456789\n")],
    )
    .await;
    let d = Driver::start().await;
    d.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{}/", levee.admin)})),
    )
    .await;

    // Renders: both routes and both pools, live.
    let names = d
        .until("const r=[...document.querySelectorAll('#routes tbody tr')].map(t=>t.dataset.route); return r.length==2 && r.join(',')")
        .await;
    assert_eq!(names, "search,web");
    let pools = d
        .js("return document.querySelectorAll('#pools tbody tr').length")
        .await;
    assert_eq!(pools, 2);
    // The adaptive pool shows its limit in units and in requests; the static one only units.
    let limits = d
        .js("return [...document.querySelectorAll('#pools tbody tr td:nth-child(2)')].map(t=>t.textContent).join(',')")
        .await;
    assert_eq!(limits, "20 · 20 req,64");
    assert_eq!(
        d.until("return document.querySelector('#conn').textContent=='live' && 'ok'")
            .await,
        "ok"
    );

    // Updates without a page reload: traffic on `web` shows as a rate above zero.
    let mut rate = Value::Null;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) {
        for _ in 0..20 {
            get(levee.proxy, "/", &[]).await.unwrap();
        }
        rate = d
            .js("return document.querySelector('tr[data-route=web] td:nth-child(6)').textContent")
            .await;
        if rate
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(|r| r > 0.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        rate.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(|r| r > 0.0),
        "rate never rose: {rate}"
    );

    // Without the token the switch is refused, and the page says so.
    assert_eq!(get(levee.proxy, "/search", &[]).await.unwrap().status, 200);
    d.js(
        "document.querySelector('tr[data-route=search] button[data-state=off]').click(); return 1",
    )
    .await;
    let msg = d
        .until(
            "const t=document.querySelector('#result').textContent; return t.includes('401') && t",
        )
        .await;
    assert!(msg.as_str().unwrap().contains("bearer token"), "{msg}");
    assert_eq!(get(levee.proxy, "/search", &[]).await.unwrap().status, 200);

    // With the token: the proxy answers differently at once, and the page shows it.
    d.js("const t=document.querySelector('#token'); t.value='page-test-token-0123456789'; t.dispatchEvent(new Event('change')); document.querySelector('#reason').value='browser test'; document.querySelector('tr[data-route=search] button[data-state=off]').click(); return 1").await;
    d.until("return document.querySelector('#result').textContent.includes('by oncall') && 1")
        .await;
    let r = get(levee.proxy, "/search", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-levee-reason")),
        (503, Some("switched_off"))
    );
    let shown = d.until("const c=document.querySelector('tr[data-route=search] td.switch'); return c && c.textContent.startsWith('off') && c.textContent").await;
    assert!(shown.as_str().unwrap().contains("oncall"), "{shown}");

    // A phone: 390 px wide, and the page does not overflow sideways (tables scroll inside).
    d.call(
        "POST",
        "/window/rect",
        Some(json!({"width": 390, "height": 844})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fits = d
        .js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(fits, true);
    d.call("DELETE", "", None).await;
}
