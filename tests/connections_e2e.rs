//! Connection-level edge limits (issue #8) over raw TCP: a slowloris client that trickles its
//! head and one that sends nothing are cut at `request_head_timeout`; connections over
//! `max_connections` get a 503 `too_many_connections` at once and the cap frees up as
//! connections close; an idle kept-alive connection closes after `keepalive_timeout`; a
//! request body that falls silent is cut at `body_read_timeout`.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn body(origin: std::net::SocketAddr) -> String {
    format!("[pools.p]\nendpoints = [\"{origin}\"]\n\n[[routes]]\nname = \"web\"\npool = \"p\"\n")
}

/// Read until the peer closes (or `limit` passes); returns what came and when it closed.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(t.elapsed())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_heads_are_cut_at_the_deadline() {
    let origin = named_origin("web").await;
    let levee = Levee::start_full("request_head_timeout = \"1s\"", &body(origin), &[]).await;
    // Silent: connects, sends nothing.
    let mut silent = TcpStream::connect(levee.proxy).await.unwrap();
    // Slowloris: a header byte every 150 ms, never the blank line.
    let mut slow = TcpStream::connect(levee.proxy).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        let t = Instant::now();
        for _ in 0..40 {
            if slow.write_all(b"X").await.is_err() {
                return Some(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let (_, closed) = until_closed(&mut slow, Duration::from_millis(10)).await;
        closed.map(|_| t.elapsed())
    });
    // A normal request is unaffected meanwhile.
    let r = get(levee.proxy, "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let (got, closed) = until_closed(&mut silent, Duration::from_secs(5)).await;
    let closed = closed.expect("the silent connection was closed");
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_millis(2500),
        "{closed:?}"
    );
    assert!(
        got.is_empty(),
        "nothing is answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    let slow_closed = trickle
        .await
        .unwrap()
        .expect("the slowloris connection was cut");
    assert!(slow_closed < Duration::from_secs(3), "{slow_closed:?}");
    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            "levee_connection_rejections_total{reason=\"head_timeout\"}"
        ),
        Some(2.0),
        "{m}"
    );
}

/// A kept-alive connection that has had one request answered.
async fn kept_alive(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    get_on(&mut s).await;
    s
}

/// One GET on an open connection; its answer must be a 200 (small: one read).
async fn get_on(s: &mut TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_until_one_closes() {
    let origin = named_origin("web").await;
    let levee = Levee::start_full("max_connections = 3", &body(origin), &[]).await;
    let a = kept_alive(levee.proxy).await;
    let _b = kept_alive(levee.proxy).await;
    let _c = kept_alive(levee.proxy).await;
    let r = get(levee.proxy, "/", &[]).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-levee-reason"), Some("too_many_connections"));
    assert!(r.header("retry-after").is_some());
    let m = levee.metrics().await;
    assert_eq!(sample(&m, "levee_client_connections"), Some(3.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "levee_connection_rejections_total{reason=\"too_many_connections\"}"
        ),
        Some(1.0)
    );
    drop(a);
    // The slot comes back once levee sees the close.
    let t = Instant::now();
    loop {
        let r = get(levee.proxy, "/", &[]).await.unwrap();
        if r.status == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "slot never freed: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_and_silent_bodies_are_closed() {
    let origin = named_origin("web").await;
    let levee = Levee::start_full(
        "keepalive_timeout = \"1s\"\nbody_read_timeout = \"1s\"",
        &body(origin),
        &[],
    )
    .await;
    let mut idle = kept_alive(levee.proxy).await;
    let (_, closed) = until_closed(&mut idle, Duration::from_secs(5)).await;
    let closed = closed.expect("the idle connection was closed");
    assert!(closed < Duration::from_millis(2500), "{closed:?}");

    // A connection in use is never idle for long: a request every 400 ms for 2.8 s (well past
    // the 1 s keepalive_timeout, so the one timer fires early and is moved on) keeps it open.
    let mut busy = kept_alive(levee.proxy).await;
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        get_on(&mut busy).await;
    }

    let mut s = TcpStream::connect(levee.proxy).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhalf")
        .await
        .unwrap();
    let (got, closed) = until_closed(&mut s, Duration::from_secs(6)).await;
    let closed = closed.expect("the stalled body was cut");
    assert!(closed < Duration::from_secs(4), "{closed:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_not_held_to_the_head_deadline() {
    let origin = named_origin("web").await;
    let levee = Levee::start_full(
        "request_head_timeout = \"1s\"\nbody_read_timeout = \"2s\"",
        &body(origin),
        &[],
    )
    .await;
    let mut s = TcpStream::connect(levee.proxy).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // 8 body bytes over 2.4 s: past the head deadline, each gap well inside the body's.
    for b in b"12345678" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(&[*b]).await.unwrap();
    }
    let (got, _) = until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_cut_at_the_body_deadline() {
    let origin = named_origin("web").await;
    let levee = Levee::start_full(
        "request_body_timeout = \"1s\"\nbody_read_timeout = \"2s\"",
        &body(origin),
        &[],
    )
    .await;
    let mut s = TcpStream::connect(levee.proxy).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    // A byte every 250 ms: never silent for long, but the whole body would take 10 s.
    let writer = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if s.write_all(b"x").await.is_err() {
                break;
            }
        }
        s
    });
    let mut s = writer.await.unwrap();
    let (got, _) = until_closed(&mut s, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("x-levee-reason: body_timeout"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(12));
    assert_eq!(levee.rejections("web", "body_timeout").await, Some(1.0));
}
