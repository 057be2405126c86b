//! The supervisor: levee's background duties, off the request path. It starts the pools'
//! health checks and marks levee ready once the proxy listener accepts (exiting if it never
//! does), then every second applies `[[schedules]]` (logging each switch a schedule turns
//! on or off) and expires manual switches whose TTL passed (an audit line each, and a save
//! to `state_file`); reloads on SIGHUP and when the config file changes (debounced: the file
//! must be unchanged for a second, and differ from the version running, before it is read);
//! and every 10 s tidies idle keys of the per-client rate-limit tables. On shutdown it exits
//! as soon as the pools are idle.

use crate::config::{scheduled_switches, FileStamp};
use crate::pools::health;
use crate::runtime::Shared;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

pub struct Supervisor {
    pub shared: Arc<Shared>,
}

/// The config file's stamp now.
fn file_stamp(shared: &Shared) -> Option<FileStamp> {
    let rt = shared.current.load();
    crate::config::file_stamp(rt.config.source.as_ref()?)
}

/// The stamp of the file the running config was read from (taken before the read, so any
/// later save differs from it; an admin reload updates it too).
fn running_stamp(shared: &Shared) -> Option<FileStamp> {
    shared.current.load().config.stamp
}

/// Apply schedules and expire TTLs at `now`.
pub fn tick_switches(shared: &Shared, now: chrono::DateTime<chrono::Utc>) {
    let map = scheduled_switches(&shared.current.load().config.schedules, now);
    let old = shared.switches.scheduled();
    if shared.switches.set_scheduled(map.clone()) {
        for (route, (state, schedule)) in &map {
            if old.get(route) != Some(&(*state, schedule.clone())) {
                tracing::warn!(route = %route, state = state.as_str(), schedule = %schedule, "audit: schedule applies");
            }
        }
        for (route, (state, schedule)) in &old {
            if !map.contains_key(route) {
                tracing::warn!(route = %route, was = state.as_str(), schedule = %schedule, "audit: schedule over, switch reverted");
            }
        }
    }
    let expired = shared.switches.expire(now);
    if !expired.is_empty() {
        let _ = shared.save_switches(); // a failure is logged
    }
    for (route, sw) in expired {
        tracing::warn!(
            route = %route,
            state = sw.state.as_str(),
            by = %sw.by,
            reason = %sw.reason,
            "audit: switch TTL passed, reverted"
        );
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let shared = &self.shared;
        let rt = shared.current.load_full();
        for pool in &rt.pools {
            if pool.spec.health_check.is_some() {
                tokio::spawn(health::run(Arc::downgrade(pool)));
            }
        }
        let listen = rt.config.server.listen;
        drop(rt);
        // Before anything waits: SIGHUP's default action would kill the process, and an edit
        // made while levee starts must still count as a change.
        let mut hup = signal(SignalKind::hangup()).ok();
        // The last file version acted on (or refused); starts as the one read at start, so
        // an edit saved while levee was starting is still a change.
        let mut seen = running_stamp(shared);
        tick_switches(shared, chrono::Utc::now());
        // Ready means the proxy accepts: Pingora binds it on its own thread, after this starts.
        tokio::select! {
            _ = shutdown.changed() => {
                drain(shared).await;
                return;
            }
            up = accepting(listen) => if !up {
                tracing::error!(%listen, "the proxy listener did not come up in 35 s; exiting");
                std::process::exit(1);
            }
        }
        shared.ready.store(true, Ordering::Release);

        let mut second = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        let mut pending: Option<FileStamp> = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    // The stamp is taken before the reload reads the file: a change saved
                    // while (or just after) it reads is then seen as a change at the next
                    // tick, not taken for the one just applied.
                    let before = file_stamp(shared);
                    crate::reload::reload(shared, "SIGHUP");
                    seen = before;
                }
                _ = second.tick() => {
                    ticks += 1;
                    tick_switches(shared, chrono::Utc::now());
                    // File watch, debounced: act once the new mtime held for a full tick.
                    let now = file_stamp(shared);
                    // A missing file (mid-save, or deleted) is not a change to act on; nor is
                    // the version running (an admin reload already applied it).
                    if now.is_some() && now != seen && now != running_stamp(shared) {
                        if pending == now {
                            // `now` was read before the reload reads the file (see SIGHUP).
                            crate::reload::reload(shared, "file changed");
                            seen = now;
                            pending = None;
                        } else {
                            pending = now;
                        }
                    }
                    if ticks.is_multiple_of(10) {
                        let rt = shared.current.load_full();
                        let now = crate::protection::now_nanos();
                        for route in &rt.routes {
                            route.protection.sweep(now);
                        }
                    }
                }
            }
        }
        shared.ready.store(false, Ordering::Release);
        drain(shared).await;
    }
}

/// Whether a connection to `listen` succeeds within 35 s (Pingora retries a busy port for
/// 30). The port was free a moment earlier (`server::check_free`), so what accepts is almost
/// certainly ours (in an upgrade it is the socket the old process hands over). A wildcard
/// address is probed on loopback (`[::]` on both `::1` and 127.0.0.1: a dual-stack bind
/// serves IPv4 even where `::1` is missing); each attempt gives up after a second, so a
/// dropped SYN cannot outlast the deadline.
async fn accepting(listen: std::net::SocketAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let port = listen.port();
    let targets: Vec<SocketAddr> = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => vec![(Ipv4Addr::LOCALHOST, port).into()],
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            (Ipv6Addr::LOCALHOST, port).into(),
            (Ipv4Addr::LOCALHOST, port).into(),
        ],
        _ => vec![listen],
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(35);
    while tokio::time::Instant::now() < deadline {
        for &t in &targets {
            let attempt =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(t));
            if matches!(attempt.await, Ok(Ok(_))) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// After the shutdown signal the listeners are closed and Pingora waits `drain_timeout`
/// before stopping; exit as soon as no request has been alive for 500 ms,
/// counting every request from its head to its end under any config snapshot, instead of
/// always waiting the whole period.
async fn drain(_shared: &Shared) {
    let started = std::time::Instant::now();
    let mut quiet = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let busy = crate::proxy::active_requests();
        quiet = if busy == 0 { quiet + 1 } else { 0 };
        // Half a second with nothing alive: also covers connections accepted just before the
        // listeners closed whose request head is still on its way.
        if quiet >= 10 {
            tracing::info!(after = ?started.elapsed(), "drained: nothing in flight, exiting");
            std::process::exit(0);
        }
    }
}
