//! Fault injection (issue #8, part): real origins that misbehave on purpose. For each, the
//! client gets a clean 502/504 (or a cut response when the head was already sent), another
//! pool keeps serving, and afterwards no pool slot is left held (`levee_upstream_inflight` 0).

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Sends the head and half the body, then closes.
    DiesMidResponse,
    /// Reads the request, then closes without a byte.
    ResetBeforeHeaders,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// A head, then a body that never ends.
    EndlessBody,
    /// A head, then one body byte a second.
    SlowBody,
    /// A 200 with 200 KiB of headers (over Pingora's 256 fields).
    HugeHeaders,
    /// A 200 with 90 KiB of headers in 90 fields: Pingora parses it, levee's
    /// `max_response_head` (64 KiB) refuses it.
    BigHeaders,
    /// Accepts, reads, never answers.
    Silent,
}

async fn misbehaving(f: Fault) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = match f {
                    Fault::DiesMidResponse => {
                        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf of it")
                            .await
                    }
                    Fault::ResetBeforeHeaders => Ok(()),
                    Fault::Garbage => s.write_all(b"\x00\x01 this is not http \xff\r\n\r\n").await,
                    Fault::EndlessBody => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .await;
                        loop {
                            if s.write_all(b"400\r\n").await.is_err()
                                || s.write_all(&[b'x'; 1024]).await.is_err()
                                || s.write_all(b"\r\n").await.is_err()
                            {
                                break;
                            }
                        }
                        Ok(())
                    }
                    Fault::SlowBody => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
                            .await;
                        for _ in 0..50 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if s.write_all(b"x").await.is_err() {
                                break;
                            }
                        }
                        Ok(())
                    }
                    Fault::HugeHeaders => {
                        let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
                        for i in 0..2000 {
                            r.extend_from_slice(
                                format!("X-Big-{i}: {}\r\n", "v".repeat(100)).as_bytes(),
                            );
                        }
                        r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                        s.write_all(&r).await
                    }
                    Fault::BigHeaders => {
                        let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
                        for i in 0..90 {
                            r.extend_from_slice(
                                format!("X-Big-{i}: {}\r\n", "v".repeat(1000)).as_bytes(),
                            );
                        }
                        r.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
                        s.write_all(&r).await
                    }
                    Fault::Silent => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(())
                    }
                };
                // Dropping `s` closes the connection.
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_origins_get_clean_answers_and_leak_nothing() {
    let good = named_origin("good").await;
    let mut pools = String::new();
    let faults = [
        Fault::DiesMidResponse,
        Fault::ResetBeforeHeaders,
        Fault::Garbage,
        Fault::EndlessBody,
        Fault::SlowBody,
        Fault::HugeHeaders,
        Fault::BigHeaders,
        Fault::Silent,
    ];
    for (i, f) in faults.iter().enumerate() {
        let a = misbehaving(*f).await;
        pools += &format!(
            "[pools.f{i}]\nendpoints = [\"{a}\"]\nrequest_timeout = \"500ms\"\n\n[[routes]]\nname = \"f{i}\"\npool = \"f{i}\"\nmatch = {{ path_prefix = \"/f{i}\" }}\n\n"
        );
    }
    let levee = Levee::start(&format!(
        "{pools}[pools.good]\nendpoints = [\"{good}\"]\n\n[[routes]]\nname = \"good\"\npool = \"good\"\n"
    ))
    .await;
    let mut outcomes = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let p = levee.proxy;
        let path = format!("/f{i}");
        let t = Instant::now();
        // The faulty request and a healthy one to another pool, at the same time.
        // An endless body streams for as long as the client reads: this client gives up at 2 s.
        let limit = Duration::from_secs(if matches!(f, Fault::EndlessBody) {
            2
        } else {
            10
        });
        let faulty =
            tokio::spawn(async move { tokio::time::timeout(limit, get(p, &path, &[])).await });
        let healthy = get(levee.proxy, "/", &[]).await.unwrap();
        assert_eq!(
            healthy.status, 200,
            "{f:?}: the other pool must keep serving"
        );
        let r = faulty.await.unwrap();
        let took = t.elapsed();
        let outcome = match &r {
            Ok(Ok(resp)) => format!(
                "{} {}",
                resp.status,
                resp.header("x-levee-reason").unwrap_or("")
            ),
            Ok(Err(e)) => format!("cut: {e}"),
            Err(_) => format!("still streaming when the client gave up at {limit:?}"),
        };
        eprintln!("{f:?}: {outcome} after {took:?}");
        match f {
            Fault::ResetBeforeHeaders | Fault::Garbage | Fault::HugeHeaders | Fault::BigHeaders => {
                let resp = r.unwrap().unwrap();
                assert_eq!(resp.status, 502, "{f:?}");
                assert!(
                    resp.header("x-levee-reason")
                        .is_some_and(|x| x.starts_with("upstream_")),
                    "{f:?}"
                );
            }
            Fault::Silent => {
                let resp = r.unwrap().unwrap();
                assert_eq!(
                    (resp.status, resp.header("x-levee-reason")),
                    (504, Some("upstream_timeout"))
                );
            }
            // The head was sent: the client sees a cut body (or a short one), never a hang.
            Fault::DiesMidResponse | Fault::SlowBody => {
                assert!(r.is_ok(), "{f:?} hung");
                if let Ok(Ok(resp)) = &r {
                    assert!(
                        resp.body.len() < 100,
                        "{f:?}: a complete body cannot have arrived"
                    );
                }
            }
            Fault::EndlessBody => {} // checked below: the client gives up, the slot comes back
        }
        outcomes.push((format!("{f:?}"), outcome));
    }
    // Every slot is back: wait for the endless and slow bodies to be cut off.
    let t = Instant::now();
    loop {
        let m = levee.metrics().await;
        let held: f64 = m
            .lines()
            .filter(|l| l.starts_with("levee_upstream_inflight{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if held == 0.0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "slots still held: {held}\n{outcomes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
