//! Process lifecycle (issue #5): SIGTERM drains (in-flight requests finish, then exit), and a
//! zero-downtime upgrade (a new levee started with `--upgrade` takes the listening sockets
//! over when the old one gets SIGQUIT) drops no request under load; a busy port stops levee
//! at once; `levee demo` serves every pool from its own backends.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let slow = serve(
        "127.0.0.1:0".parse().unwrap(),
        handler(|_r| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            OriginResponse::new(200, "done")
        }),
    )
    .await
    .unwrap();
    let mut levee = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{slow}\"]\n\n[[routes]]\nname = \"r\"\npool = \"p\"\n"
    ))
    .await;
    let p = levee.proxy;
    let inflight = tokio::spawn(async move { get(p, "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    signal(levee.pid(), "TERM");
    let r = inflight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!((r.status, r.text().as_str()), (200, "done"));
    let exit = levee.wait_exit(Duration::from_secs(12)).await;
    assert!(exit.is_some(), "levee should exit after draining");
    eprintln!("drained and exited {:?} after SIGTERM", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_load_drops_no_request() {
    let o = named_origin("origin").await;
    let mut old = Levee::start(&format!(
        "[pools.p]\nendpoints = [\"{o}\"]\n\n[[routes]]\nname = \"r\"\npool = \"p\"\n"
    ))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (stop, sent, failed, p) = (stop.clone(), sent.clone(), failed.clone(), old.proxy);
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match get(p, "/", &[]).await {
                    Ok(r) if r.status == 200 => {}
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "failed at {:?}: {:?}",
                            t0.elapsed(),
                            other.map(|r| r.status)
                        );
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new process waits for the sockets; then the old one hands them over and drains.
    let mut new = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(["run", "--upgrade", "-c"])
        .arg(old.config_path())
        .env("LEVEE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the new levee");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sent.load(Ordering::Relaxed);
    eprintln!("SIGQUIT at {:?}", t0.elapsed());
    signal(old.pid(), "QUIT");
    let exit = old.wait_exit(Duration::from_secs(20)).await;
    assert!(
        exit.is_some(),
        "the old levee should exit after handing over"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "upgrade under load: {sent} requests sent ({} during the hand-over), {failed} failed",
        sent - before
    );
    // The new process serves on the same addresses.
    let r = get(old.admin, "/readyz", &[]).await.unwrap();
    let still = get(old.proxy, "/", &[]).await.unwrap();
    let _ = new.kill();
    let _ = new.wait();
    // Pingora drops connections still waiting for their request head when a process shuts
    // down (pingora-proxy `handle_new_request` selects on shutdown). The old process stops
    // accepting 5 s after the hand-over, and a connection it accepted in that instant, whose
    // request has not been read yet, is closed without an answer: measured 1 in about 16,500
    // requests in 2 of 9 runs, under CPU contention. Every other request is answered.
    assert!(failed <= 1, "{failed} failed");
    assert!(sent - before > 100, "load continued through the hand-over");
    assert_eq!((r.status, still.status), (200, 200));
}

#[test]
fn a_port_another_process_holds_stops_levee_at_once_naming_it() {
    // Held for the whole test: levee must not wait for it (Pingora alone retries for 30 s,
    // while /readyz would say ready and another process answers on the port).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap();
    let dir = std::env::temp_dir().join(format!("levee-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("levee.toml");
    std::fs::write(
        &conf,
        format!(
            "[server]\nlisten = \"{busy}\"\nadmin_listen = \"127.0.0.1:{}\"\n\n\
             [pools.p]\nendpoints = [\"127.0.0.1:9\"]\n\n[[routes]]\nname = \"web\"\npool = \"p\"\n",
            free_port()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(["run", "-c"])
        .arg(&conf)
        .env("LEVEE_LOG", "warn")
        .output()
        .expect("run levee");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("levee: server.listen: cannot listen on {busy}: ")),
        "{stderr}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_every_pool_from_its_own_backends() {
    // The README's first command: `levee demo` brings its backends (18081-18084) and serves
    // conf/demo.toml's routes on 8080, admin on 9901. Fixed ports: if something else holds
    // them, levee exits naming the port, and this test fails saying so.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_levee"))
        .arg("demo")
        .env("LEVEE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start levee demo");
    let (proxy, admin): (std::net::SocketAddr, std::net::SocketAddr) = (
        "127.0.0.1:8080".parse().unwrap(),
        "127.0.0.1:9901".parse().unwrap(),
    );
    let t = Instant::now();
    let mut ready = false;
    while !ready && t.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(status)) = demo.try_wait() {
            let out = demo.wait_with_output().unwrap();
            panic!(
                "levee demo exited ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ready = get(admin, "/readyz", &[])
            .await
            .is_ok_and(|r| r.status == 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ready {
        let _ = demo.kill();
        let out = demo.wait_with_output().unwrap();
        panic!(
            "levee demo did not become ready in 20 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let st: serde_json::Value =
        serde_json::from_slice(&get(admin, "/admin/status", &[]).await.unwrap().body).unwrap();
    assert_eq!(
        st["process"]["pid"],
        u64::from(demo.id()),
        "another process on 9901"
    );
    let reason = |r: &Resp| r.header("x-levee-reason").map(str::to_string);
    let pdp = get(proxy, "/p/123", &[]).await.unwrap();
    let narrow = get(proxy, "/search?q=socks", &[]).await.unwrap();
    let web = get(proxy, "/", &[]).await.unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    assert_eq!(
        [pdp.status, narrow.status, web.status],
        [200, 200, 200],
        "{:?}",
        [reason(&pdp), reason(&narrow), reason(&web)]
    );
    let pools: Vec<&str> = st["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in ["pdp", "search", "checkout", "web"] {
        assert!(pools.contains(&p), "pool {p} missing: {pools:?}");
    }
}
