//! Connection-level edge limits, between Pingora's listener and the HTTP proxy (Pingora has
//! no hook for either): a cap on open client connections, over which a new connection gets a
//! fixed `503` (`x-levee-reason: too_many_connections`) and is closed at once; and an overall
//! deadline to receive each request head, so a client that trickles its headers (slowloris)
//! cannot hold a connection open; and the idle limit of a kept-alive connection between
//! requests (`keepalive_timeout`). `EdgeApp` wraps the proxy's `ServerApp`: the first time it
//! sees a connection it wraps the stream in `Guarded`, which holds the connection's slot
//! (released when the connection closes) and times the head and the idle wait. Pingora hands
//! the same (wrapped) stream back for each kept-alive request, so the wrapping happens once.
//!
//! Both deadlines share one timer per connection, which is moved only when it must fire
//! sooner. Pingora's own keepalive timeout registers a timer for every request; here the
//! timer, set for an earlier wait, fires early at most once per `keepalive_timeout` and is
//! then moved on (the load bench's CPU per request, benches/RESULTS.md).

use crate::metrics::Metrics;
use crate::ratelog::RateLog;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::{self, ProxyDigest};
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The answer to a connection over the cap: written once, then the connection is closed.
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nx-levee-reason: too_many_connections\r\n\
retry-after: 1\r\ncontent-length: 0\r\ncache-control: no-store\r\nconnection: close\r\n\r\n";

/// The limits a new connection gets (a reload applies to connections opened after it).
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub keepalive_timeout: Duration,
}

/// The connection limits and their counters, shared by every connection.
pub struct Edge {
    /// Read from the current config on each new connection (a reload changes it).
    limits: Box<dyn Fn() -> EdgeLimits + Send + Sync>,
    open: AtomicUsize,
    open_gauge: IntGauge,
    refused: IntCounter,
    head_timeouts: IntCounter,
    log: Arc<RateLog>,
}

impl Edge {
    pub fn new(
        limits: impl Fn() -> EdgeLimits + Send + Sync + 'static,
        metrics: &Metrics,
        log: Arc<RateLog>,
    ) -> Arc<Edge> {
        let (open_gauge, refused, head_timeouts) = metrics.edge();
        Arc::new(Edge {
            limits: Box::new(limits),
            open: AtomicUsize::new(0),
            open_gauge,
            refused,
            head_timeouts,
            log,
        })
    }

    /// Open client connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot for a new connection, or `None` at the cap.
    fn admit(self: &Arc<Self>, max: usize) -> Option<Slot> {
        let n = self.open.fetch_add(1, Ordering::AcqRel);
        if n >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.open_gauge.inc();
        Some(Slot(self.clone()))
    }
}

/// One open connection's place under `max_connections`; dropping it frees the place.
struct Slot(Arc<Edge>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.open_gauge.dec();
    }
}

/// The proxy app with the connection limits in front.
pub struct EdgeApp<A> {
    pub inner: Arc<A>,
    pub edge: Arc<Edge>,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for EdgeApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.as_any().is::<Guarded>() {
            // A kept-alive connection coming back for its next request.
            return self.inner.process_new(stream, shutdown).await;
        }
        let limits = (self.edge.limits)();
        let max = limits.max_connections;
        let Some(slot) = self.edge.admit(max) else {
            self.edge.refused.inc();
            if let Some(suppressed) = self.edge.log.admit() {
                tracing::warn!(
                    max_connections = max,
                    suppressed,
                    "connection refused: max_connections open (too_many_connections)"
                );
            }
            refuse(stream).await;
            return None;
        };
        let guarded = Guarded::new(stream, slot, limits);
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Answer a connection over the cap and close it. The answer goes first, then our side of
/// the connection is shut, then what the client already sent is read and dropped (briefly,
/// bounded): closing with unread data would reset the connection and could destroy the
/// answer before the client reads it.
async fn refuse(mut stream: Stream) {
    let quick = Duration::from_millis(500);
    if tokio::time::timeout(quick, stream.write_all(REFUSED))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(quick, AsyncWriteExt::shutdown(&mut stream)).await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        for _ in 0..4 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Where a connection is in its request/response cycle, as far as the head deadline goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head; `seen` counts the line ends matched so far
    /// toward the blank line that ends it.
    Head { seen: u8 },
    /// The head is in: body and response follow, no deadline from here.
    Request,
    /// The (final) response has started: the next byte read starts the next request's
    /// head. A `100 Continue` does not count: the body it invites is not a head.
    Idle,
}

/// A client connection's stream under the edge limits.
pub struct Guarded {
    inner: Stream,
    _slot: Slot,
    head_timeout: Duration,
    keepalive_timeout: Duration,
    phase: Phase,
    /// When the head being read is due: from the accept for the first head, from the first
    /// read that has to wait for the later ones (set then: a head that arrives whole in one
    /// read never reads the clock).
    due: Option<Instant>,
    /// When the idle wait for the next request ends; set when that wait first blocks.
    idle_due: Option<Instant>,
    /// The one timer: never later than the deadline of the wait in progress, possibly earlier
    /// (left from an earlier wait), and then moved on when it fires. Heads that arrive in one
    /// read never touch it.
    deadline: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl Guarded {
    fn new(inner: Stream, slot: Slot, limits: EdgeLimits) -> Guarded {
        // The first head is timed from the accept.
        let due = Instant::now() + limits.head_timeout;
        Guarded {
            inner,
            _slot: slot,
            head_timeout: limits.head_timeout,
            keepalive_timeout: limits.keepalive_timeout,
            phase: Phase::Head { seen: 0 },
            due: Some(due),
            idle_due: None,
            deadline: Box::pin(tokio::time::sleep_until(due)),
        }
    }

    /// Follow the bytes of a request head: `\r\n\r\n` (or `\n\n`) ends it.
    fn scan(&mut self, bytes: &[u8]) {
        if let Phase::Head { seen } = self.phase {
            self.phase = match head_scan(seen, bytes) {
                Some(seen) => Phase::Head { seen },
                None => Phase::Request,
            };
        }
    }
}

/// One step of finding where a request head ends, over the bytes of one read: `seen` is 1
/// when the bytes so far end in a line feed (and any carriage returns after it). `None`:
/// the head ended in these bytes; `Some(seen)`: it goes on. Jumps from line feed to line
/// feed (`memchr`), so a browser's kilobyte of headers costs a few steps, not a branch per
/// byte.
fn head_scan(mut seen: u8, bytes: &[u8]) -> Option<u8> {
    debug_assert!(seen <= 1, "seen is 0 or 1");
    let mut i = 0;
    loop {
        if seen == 1 {
            while bytes.get(i) == Some(&b'\r') {
                i += 1;
            }
            match bytes.get(i) {
                None => return Some(1),
                Some(b'\n') => return None,
                Some(_) => {} // a new line begins: on to the next line feed
            }
        }
        match memchr::memchr(b'\n', &bytes[i..]) {
            Some(at) => {
                i += at + 1;
                seen = 1;
            }
            None => return Some(0),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if this.phase == Phase::Idle && !new.is_empty() {
                    // The first byte of the next request: its head has the same deadline.
                    this.phase = Phase::Head { seen: 0 };
                    this.due = None;
                    this.idle_due = None;
                }
                this.scan(new);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let due = match this.phase {
                    Phase::Head { .. } => *this
                        .due
                        .get_or_insert_with(|| Instant::now() + this.head_timeout),
                    Phase::Idle => *this
                        .idle_due
                        .get_or_insert_with(|| Instant::now() + this.keepalive_timeout),
                    // Body and response: Pingora's own timeouts.
                    Phase::Request => return Poll::Pending,
                };
                if this.deadline.deadline() > due {
                    this.deadline.as_mut().reset(due);
                }
                while this.deadline.as_mut().poll(cx).is_ready() {
                    if Instant::now() < due {
                        // Set for an earlier wait: move it on to this one's deadline.
                        this.deadline.as_mut().reset(due);
                        continue;
                    }
                    if this.phase == Phase::Idle {
                        // Idle past keepalive_timeout: the connection ends as if the client had
                        // closed it (nothing to answer, nothing to log).
                        return Poll::Ready(Ok(()));
                    }
                    let edge = &this._slot.0;
                    edge.head_timeouts.inc();
                    if let Some(suppressed) = edge.log.admit() {
                        tracing::warn!(
                            timeout_ms = this.head_timeout.as_millis() as u64,
                            suppressed,
                            "connection closed: request head not received within request_head_timeout (slowloris?)"
                        );
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not received within request_head_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

/// A `1xx` head (`100 Continue`): the request is still being read, its body follows.
fn informational(data: &[u8]) -> bool {
    data.starts_with(b"HTTP/1.1 1") || data.starts_with(b"HTTP/1.0 1")
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && !informational(data) {
            this.phase = Phase::Idle;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && !informational(first) {
            this.phase = Phase::Idle;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, d: SocketDigest) {
        self.inner.set_socket_digest(d)
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: EdgeLimits = EdgeLimits {
        max_connections: 10,
        head_timeout: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(2),
    };

    fn guarded() -> Guarded {
        let m = Metrics::new();
        let edge = Edge::new(|| LIMITS, &m, Arc::new(RateLog::new(1)));
        let slot = edge.admit(10).unwrap();
        let io: Stream = Box::new(tokio_test_io());
        Guarded::new(io, slot, LIMITS)
    }

    /// A stream that is never read in these tests (only `scan` is exercised).
    fn tokio_test_io() -> std::io::Cursor<Vec<u8>> {
        std::io::Cursor::new(Vec::new())
    }

    #[tokio::test]
    async fn the_head_ends_at_a_blank_line_split_anywhere() {
        let mut g = guarded();
        g.scan(b"GET / HTTP/1.1\r\nHost: a\r");
        assert_eq!(g.phase, Phase::Head { seen: 0 });
        g.scan(b"\n");
        assert_eq!(g.phase, Phase::Head { seen: 1 });
        g.scan(b"\r");
        assert_eq!(g.phase, Phase::Head { seen: 1 });
        g.scan(b"\nbody");
        assert_eq!(g.phase, Phase::Request);
        let mut g = guarded();
        g.scan(b"GET / HTTP/1.0\n\n");
        assert_eq!(g.phase, Phase::Request);
        let mut g = guarded();
        g.scan(b"GET / HTTP/1.1\r\nA: b\r\nC: d\r\n");
        assert_eq!(g.phase, Phase::Head { seen: 1 });
    }

    /// The byte-at-a-time definition `head_scan` must agree with.
    fn head_scan_bytewise(mut seen: u8, bytes: &[u8]) -> Option<u8> {
        for &b in bytes {
            seen = match (b, seen) {
                (b'\n', 0) => 1,
                (b'\n', _) => return None,
                (b'\r', s) => s,
                _ => 0,
            };
        }
        Some(seen)
    }

    #[test]
    fn head_scan_agrees_with_the_bytewise_definition_at_every_split() {
        let heads: [&[u8]; 7] = [
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nbody",
            b"GET / HTTP/1.0\n\n",
            b"GET / HTTP/1.1\r\nA: b\r\n\r\r\r\n",
            b"GET / HTTP/1.1\r\nA: \rb\r\nC: d\r\n",
            b"\r\n\r\n",
            b"\n\r",
            b"GET /x\r\nA: b\r\r\nB: c\n\r\nrest",
        ];
        for head in heads {
            let whole = head_scan_bytewise(0, head);
            assert_eq!(head_scan(0, head), whole, "{head:?}");
            for cut in 0..=head.len() {
                let (a, b) = head.split_at(cut);
                let fast = head_scan(0, a).and_then(|s| head_scan(s, b));
                let slow = head_scan_bytewise(0, a).and_then(|s| head_scan_bytewise(s, b));
                assert_eq!(fast, slow, "{head:?} cut at {cut}");
                assert_eq!(fast, whole, "{head:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn only_a_final_response_ends_the_request() {
        assert!(informational(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!informational(b"HTTP/1.1 200 OK\r\n"));
        assert!(!informational(b""));
    }

    #[tokio::test]
    async fn slots_are_capped_and_freed() {
        let m = Metrics::new();
        let edge = Edge::new(|| LIMITS, &m, Arc::new(RateLog::new(1)));
        let a = edge.admit(2).unwrap();
        let _b = edge.admit(2).unwrap();
        assert!(edge.admit(2).is_none());
        assert_eq!(edge.open(), 2);
        drop(a);
        assert_eq!(edge.open(), 1);
        assert!(edge.admit(2).is_some());
    }
}
