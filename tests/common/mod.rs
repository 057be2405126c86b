//! Shared helpers for the end-to-end tests: start the real `levee` binary on loopback with a
//! generated config, real HTTP origins (levee's own small origin server) on port 0, and a
//! raw HTTP/1.1 client that shows exactly what came over the wire.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[allow(unused_imports)]
pub use levee::demo::origin::{handler, serve, OriginRequest, OriginResponse};

/// A free loopback port (bound then released; levee binds it right after). Never the same
/// port twice in one test process, so two levees started side by side cannot both get it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct Levee {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    pub dir: PathBuf,
    /// The generated `[server]` block, kept so `rewrite` can change only the rest.
    server: String,
}

impl Drop for Levee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Levee {
    /// Start levee with `body` (pools and routes); the `[server]` block is generated.
    pub async fn start(body: &str) -> Levee {
        Self::start_with_files(body, &[]).await
    }

    /// Same, with extra files written beside the config (for `one_of_file`).
    pub async fn start_with_files(body: &str, files: &[(&str, &str)]) -> Levee {
        Self::start_full("", body, files).await
    }

    /// Same, with extra `[server]` keys (e.g. `admin_token_file`).
    pub async fn start_full(server_extra: &str, body: &str, files: &[(&str, &str)]) -> Levee {
        let dir = std::env::temp_dir().join(format!(
            "levee-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        for _attempt in 0..3 {
            let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let server = format!(
                "[server]\nlisten = \"{proxy}\"\nadmin_listen = \"{admin}\"\nthreads = 2\n{server_extra}\n\n"
            );
            let conf = format!("{server}{body}");
            let path = dir.join("levee.toml");
            std::fs::write(&path, conf).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_levee"))
                .args(["run", "-c"])
                .arg(&path)
                .env("LEVEE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn levee");
            let mut l = Levee {
                proxy,
                admin,
                child,
                dir: dir.clone(),
                server,
            };
            if l.wait_ready().await {
                return l;
            }
            // Port raced with another test: try new ports.
            let _ = l.child.kill();
            std::mem::forget(l);
        }
        panic!("levee did not become ready");
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // Ready (levee waits for its proxy listener to accept before saying so), and the
            // admin port is this child's: another process could have taken a released port.
            if let Ok(r) = get(self.admin, "/readyz", &[]).await {
                if r.status == 200 {
                    if let Ok(st) = get(self.admin, "/admin/status", &[]).await {
                        let pid = serde_json::from_slice::<serde_json::Value>(&st.body)
                            .ok()
                            .and_then(|v| v["process"]["pid"].as_u64());
                        return pid == Some(u64::from(self.child.id()));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Kill levee as a crash would (SIGKILL: nothing saved on the way out), then start it
    /// again on the same config file and ports. False if it did not come back ready.
    pub async fn crash_and_restart(&mut self) -> bool {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Command::new(env!("CARGO_BIN_EXE_levee"))
            .args(["run", "-c"])
            .arg(self.dir.join("levee.toml"))
            .env("LEVEE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn levee");
        self.wait_ready().await
    }

    /// Replace the config file's pools, routes and schedules (the `[server]` block stays).
    pub fn rewrite(&self, body: &str) {
        let path = self.dir.join("levee.toml");
        let tmp = self.dir.join("levee.toml.tmp");
        std::fs::write(&tmp, format!("{}{body}", self.server)).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("levee.toml")
    }

    /// Wait up to `within` for the process to exit; its exit status if it did.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub async fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[]).await.unwrap().text()
    }

    /// `levee_rejections_total{route,reason}` now.
    pub async fn rejections(&self, route: &str, reason: &str) -> Option<f64> {
        let series = format!(r#"levee_rejections_total{{reason="{reason}",route="{route}"}}"#);
        sample(&self.metrics().await, &series)
    }

    /// The `x-levee-reason` of a GET through the proxy (`None` for a proxied answer).
    pub async fn reason(&self, target: &str) -> Option<String> {
        get(self.proxy, target, &[])
            .await
            .unwrap()
            .header("x-levee-reason")
            .map(str::to_string)
    }

    pub async fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&get(self.admin, "/admin/status", &[]).await.unwrap().body).unwrap()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1_000_003
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to EOF.
pub async fn get(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    request(addr, "GET", target, headers).await
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: shop.test\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes()).await
}

/// A request with a body (for the admin API).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Resp> {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(addr, req.as_bytes()).await
}

/// Send raw bytes, read until the server closes, parse one response.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("response timed out"))??;
    parse(&buf)
}

fn parse(buf: &[u8]) -> std::io::Result<Resp> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => {
            return Err(std::io::Error::other(format!(
                "bad response: {:?}",
                String::from_utf8_lossy(buf)
            )))
        }
    };
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut body = buf[n..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Resp {
        status: r.code.unwrap_or(0),
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// An origin answering every request with `name` in the body and `x-origin: name`.
pub async fn named_origin(name: &'static str) -> SocketAddr {
    serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |_r| async move { OriginResponse::new(200, name).header("x-origin", name) }),
    )
    .await
    .unwrap()
}

/// An origin answering 200 "ok" that records `what` of every request it receives.
pub async fn recording_origin<T: Send + 'static>(
    what: fn(&OriginRequest) -> T,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<T>>>) {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<T>>> = Default::default();
    let s2 = seen.clone();
    let addr = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(move |r| {
            s2.lock().unwrap().push(what(&r));
            async { OriginResponse::new(200, "ok") }
        }),
    )
    .await
    .unwrap();
    (addr, seen)
}

/// Value of one sample in Prometheus text, e.g. `levee_requests_total{route="a",status_class="2xx"}`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
