//! Process wiring for `levee run`: build the runtime from a validated config and start the
//! Pingora server with three services — the data-plane proxy on `listen`, the admin app on
//! `admin_listen`, and a background service that runs pool health checks.

use crate::admin::AdminApp;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::LeveeProxy;
use crate::runtime::{Runtime, Shared};
use crate::supervisor::Supervisor;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use std::sync::Arc;

/// Build everything and serve until a signal stops the process. Never returns.
/// With `upgrade`, the listening sockets are taken over from the levee running with the same
/// `upgrade_sock` (which hands them over on SIGQUIT and drains).
pub fn run(config: Config, upgrade: bool) -> Result<(), String> {
    if !upgrade {
        // Pingora retries a busy port for 30 s while the rest of the process runs; refuse
        // at once instead, naming the address (an upgrade inherits the old process's sockets).
        check_free(&[
            ("listen", config.server.listen),
            ("admin_listen", config.server.admin_listen),
        ])?;
    }
    let metrics = Arc::new(Metrics::new());
    let server_spec = config.server.clone();
    let rt = Runtime::build(config, &metrics)?;
    let log_spec = rt.config.log.clone();
    let shared = Shared::new(rt, metrics);
    if let Some(spec) = log_spec {
        let log = crate::access_log::AccessLog::start(&spec, &shared.metrics.access_log_dropped)
            .map_err(|e| format!("access log: {e}"))?;
        let _ = shared.access_log.set(log);
    }

    let conf = ServerConf {
        threads: server_spec.threads,
        // On SIGTERM listeners stop at once; in-flight requests get `drain_timeout` (the
        // supervisor exits sooner, as soon as nothing is in flight).
        grace_period_seconds: Some(server_spec.drain_timeout.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: server_spec.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora_core::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    // After bootstrap: in an upgrade that is when the old process has handed its sockets
    // over (on SIGQUIT), so what it saved up to then is read here.
    shared.restore_switches();

    let mut app = pingora_proxy::http_proxy(
        &server.configuration,
        LeveeProxy {
            shared: shared.clone(),
        },
    );
    // Close a client connection after this many requests (nginx `keepalive_requests`).
    let mut opts = pingora_core::apps::HttpServerOptions::default();
    opts.keepalive_request_limit = Some(server_spec.limits.max_requests_per_connection);
    app.server_options = Some(opts);
    // The connection cap and the request-head deadline sit in front of the proxy (`edge`).
    let limits_of = shared.clone();
    let edge = crate::edge::Edge::new(
        move || {
            let l = &limits_of.current.load().config.server.limits;
            crate::edge::EdgeLimits {
                max_connections: l.max_connections,
                head_timeout: l.request_head_timeout,
                keepalive_timeout: l.keepalive_timeout,
            }
        },
        &shared.metrics,
        Arc::new(crate::ratelog::RateLog::new(20)),
    );
    let mut proxy = Service::new(
        "levee proxy".to_string(),
        crate::edge::EdgeApp {
            inner: Arc::new(app),
            edge,
        },
    );
    proxy.add_tcp(&server_spec.listen.to_string());

    let mut admin = Service::new(
        "levee admin".to_string(),
        pingora_core::apps::http_app::HttpServer::new_app(AdminApp {
            shared: shared.clone(),
        }),
    );
    admin.add_tcp(&server_spec.admin_listen.to_string());
    admin.threads = Some(1);

    let supervisor = background_service("levee supervisor", Supervisor { shared });

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(supervisor);
    tracing::info!(listen = %server_spec.listen, admin = %server_spec.admin_listen, "levee starting");
    server.run_forever()
}

/// Bind each address and release them all at the end: a port another process holds (or two
/// keys on one port, such as `0.0.0.0:8080` and `127.0.0.1:8080`) is an error now, with its
/// config key, rather than a listener that never comes up.
fn check_free(addrs: &[(&str, std::net::SocketAddr)]) -> Result<(), String> {
    let mut held = Vec::new();
    let mut errors = Vec::new();
    for (key, addr) in addrs {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => held.push(l),
            Err(e) => errors.push(format!("server.{key}: cannot listen on {addr}: {e}")),
        }
    }
    drop(held);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_busy_port_is_refused_with_its_key() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap();
        let free = "127.0.0.1:0".parse().unwrap();
        assert_eq!(super::check_free(&[("admin_listen", free)]), Ok(()));
        let e = super::check_free(&[("listen", busy), ("admin_listen", free)]).unwrap_err();
        assert!(
            e.starts_with(&format!("server.listen: cannot listen on {busy}: ")),
            "{e}"
        );
        // Two keys on one port: the second is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let any = format!("0.0.0.0:{port}").parse().unwrap();
        let lo = format!("127.0.0.1:{port}").parse().unwrap();
        let e = super::check_free(&[("listen", any), ("admin_listen", lo)]).unwrap_err();
        assert!(
            e.starts_with("server.admin_listen: cannot listen on"),
            "{e}"
        );
    }
}
