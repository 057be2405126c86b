//! A small HTTP/1.1 origin server on tokio, for `levee demo`'s simulated shop backends and
//! for the end-to-end tests' real origins. Keep-alive, Content-Length request bodies (read
//! and discarded), any handler as an async closure. Not a production server: it exists so
//! levee can be shown and tested against real sockets without outside software.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct OriginRequest {
    pub method: String,
    /// Path with query, as sent.
    pub target: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl OriginRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> HashMap<String, String> {
        self.target
            .split_once('?')
            .map(|(_, q)| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            crate::routing::matchers::decode(v).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct OriginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OriginResponse {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        OriginResponse {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        let mut r = Self::new(status, body);
        r.headers[0].1 = "application/json".into();
        r
    }

    /// Set a header, replacing any earlier value of the same name.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        self.headers.push((k.into(), v.into()));
        self
    }
}

pub type Handler = Arc<
    dyn Fn(OriginRequest) -> Pin<Box<dyn Future<Output = OriginResponse> + Send>> + Send + Sync,
>;

/// Wrap an async closure as a handler.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(OriginRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OriginResponse> + Send + 'static,
{
    Arc::new(move |r| Box::pin(f(r)))
}

/// Bind `addr` (port 0 for any) and serve `h` on the current tokio runtime.
pub async fn serve(addr: SocketAddr, h: Handler) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let _ = connection(sock, h).await;
            });
        }
    });
    Ok(local)
}

async fn connection(mut sock: TcpStream, h: Handler) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Read until a full head is buffered.
        let (req, head_len, body_len, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let hs: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let find = |k: &str| hs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let body_len: usize = find("content-length")
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
                        || parsed.version == Some(0);
                    let req = OriginRequest {
                        method: parsed.method.unwrap_or("GET").to_string(),
                        target: parsed.path.unwrap_or("/").to_string(),
                        headers: hs,
                        body_len,
                    };
                    break (req, n, body_len, close);
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > 64 * 1024 {
                        return Ok(());
                    }
                    let mut chunk = [0u8; 4096];
                    let n = sock.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(_) => {
                    sock.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
                    return Ok(());
                }
            }
        };
        // Discard the body.
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_len + body_len);

        let head_only = req.method == "HEAD";
        let resp = h(req).await;
        let mut out = format!(
            "HTTP/1.1 {} {}\r\n",
            resp.status,
            reason_phrase(resp.status)
        );
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n", resp.body.len()));
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&resp.body);
        }
        sock.write_all(&bytes).await?;
        if close {
            return Ok(());
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
