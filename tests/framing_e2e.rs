//! Request framing end to end (issue #8, part): raw bytes over TCP to levee; requests whose
//! length two parsers could read differently are answered 400 and their connection closed,
//! and nothing of them (nor a request smuggled behind them) reaches the origin.

mod common;
use common::*;

fn method_and_target(r: &OriginRequest) -> String {
    format!("{} {}", r.method, r.target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_and_nothing_is_smuggled() {
    let (o, seen) = recording_origin(method_and_target).await;
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{o}\"]\n\n[[routes]]\nname = \"web\"\npool = \"p\"\n"
    ))
    .await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = [
        format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello{smuggled}"),
        format!("POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 40\r\n\r\nhello{smuggled}"),
        format!("POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        format!("POST /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n{smuggled}"),
    ];
    for (i, c) in cases.iter().enumerate() {
        // `raw` reads until the server closes: every case must end with the connection closed.
        let r = raw(levee.proxy, c.as_bytes()).await;
        match (i, r) {
            // Content-Length with Transfer-Encoding: Pingora drops the Content-Length, reads
            // the body as chunked, answers, and closes (RFC 9112 §6.1): the request behind
            // the body is never read.
            (0 | 1, Ok(r)) => assert!(matches!(r.status, 200 | 400), "case {i}: {}", r.status),
            (_, Ok(r)) => {
                assert_eq!(r.status, 400, "case {i}: {}", r.text());
            }
            // Refused by Pingora's own parser, connection closed without an answer.
            (_, Err(e)) => assert!(!e.to_string().contains("timed out"), "case {i}: {e}"),
        }
    }
    // A well-framed request still works, and the origin saw only it.
    let ok = raw(
        levee.proxy,
        b"POST /fine HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.iter().any(|s| s.contains("smuggled")), "{seen:?}");
    assert!(seen.contains(&"POST /fine".to_string()), "{seen:?}");
    let m = levee.metrics().await;
    // levee's own check refused at least `gzip, chunked`.
    assert!(
        sample(
            &m,
            r#"levee_rejections_total{reason="bad_request",route="none"}"#
        )
        .unwrap()
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_not_a_crash() {
    let (o, seen) = recording_origin(method_and_target).await;
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{o}\"]\n\n[[routes]]\nname = \"web\"\npool = \"p\"\n"
    ))
    .await;
    let junk: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    ];
    for (i, j) in junk.iter().enumerate() {
        match raw(levee.proxy, j).await {
            Ok(r) => assert!((400..500).contains(&r.status), "case {i}: {}", r.status),
            // Closed without an answer by the parser: fine, as long as it closed.
            Err(e) => assert!(!e.to_string().contains("timed out"), "case {i}: {e}"),
        }
    }
    // A NUL in the path is percent-encoded by Pingora's parser: the origin sees one
    // unambiguous target.
    let r = raw(
        levee.proxy,
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.is_ok_and(|r| r.status == 200 || (400..500).contains(&r.status)));
    // Still alive and serving.
    assert_eq!(get(levee.proxy, "/after", &[]).await.unwrap().status, 200);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| !s.as_bytes().contains(&0)), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("GET /after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_limits_answer_431_414_413() {
    let (o, seen) = recording_origin(method_and_target).await;
    let levee = Levee::start_full(
        "max_request_headers = 8\nmax_request_head = \"1KiB\"\nmax_request_line = \"512B\"\nmax_body = \"1KiB\"",
        &format!(
            "[pools.p]\nendpoints = [\"{o}\"]\n\n\
             [[routes]]\nname = \"upload\"\npool = \"p\"\nmax_body = \"4KiB\"\nmatch = {{ path_prefix = \"/upload\" }}\n\n\
             [[routes]]\nname = \"web\"\npool = \"p\"\n"
        ),
        &[],
    )
    .await;
    let p = levee.proxy;
    let many: Vec<(String, String)> = (0..10).map(|i| (format!("x-h{i}"), "1".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = get(p, "/", &many).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-levee-reason")),
        (431, Some("headers_too_large"))
    );
    let big = "v".repeat(2000);
    let r = get(p, "/", &[("x-big", big.as_str())]).await.unwrap();
    assert_eq!(r.status, 431);
    let r = get(p, &format!("/{}", "a".repeat(600)), &[]).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-levee-reason")),
        (414, Some("uri_too_long"))
    );
    // Body limits: declared length over the server default, and over the route's own.
    let body = "b".repeat(2048);
    let r = send(p, "POST", "/", &[], &body).await.unwrap();
    assert_eq!(
        (r.status, r.header("x-levee-reason")),
        (413, Some("body_too_large"))
    );
    assert_eq!(
        send(p, "POST", "/upload", &[], &body).await.unwrap().status,
        200
    );
    let huge = "b".repeat(5000);
    assert_eq!(
        send(p, "POST", "/upload", &[], &huge).await.unwrap().status,
        413
    );
    // A chunked body is counted as it streams.
    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'c'; 512]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    match raw(p, &chunked).await {
        Ok(r) => assert!(r.status == 413 || r.status >= 500, "{}", r.status),
        Err(e) => assert!(!e.to_string().contains("timed out"), "{e}"),
    }
    // Requests refused on their head never reached the origin. The chunked one is cut while
    // it streams, so the origin may have seen its head and the start of its body.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "POST /upload", "{seen:?}");
    assert!(
        seen.len() <= 2 && seen[1..].iter().all(|s| s == "POST /"),
        "{seen:?}"
    );
}

/// RFC 9110 §7.8: a proxy switches protocols only on the upstream's 101. Here the upstream
/// answers 200 to an `Upgrade` request, so what the client sends after it is HTTP again, read
/// and routed by levee: a request for a path no route serves never reaches the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tunnel_without_the_upstreams_101() {
    let (o, seen) = recording_origin(method_and_target).await;
    let levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{o}\"]\n\n[[routes]]\nname = \"ws\"\npool = \"p\"\nmatch = {{ path = \"/ws\" }}\n"
    ))
    .await;
    let r = raw(
        levee.proxy,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
          GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    // Whatever the client gets back, it is not a protocol switch.
    if let Ok(r) = &r {
        assert_ne!(r.status, 101);
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&"GET /ws".to_string()), "{seen:?}");
    assert!(!seen.iter().any(|s| s.contains("secret")), "{seen:?}");
    assert_eq!(get(levee.proxy, "/ws", &[]).await.unwrap().status, 200);
}
