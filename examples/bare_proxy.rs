//! The smallest useful Pingora reverse proxy: every request goes to one fixed upstream.
//!
//! It is the baseline for `benches/load/run.sh`: the cost levee cannot go below, because
//! levee is this plus routing, bulkheads, header hygiene and metrics. No filters, no
//! context, no logging — `upstream_peer` is the only phase that is implemented.
//!
//! Usage: `bare_proxy LISTEN UPSTREAM [THREADS]`, e.g.
//! `cargo run --release --example bare_proxy -- 127.0.0.1:18100 127.0.0.1:18000 1`

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};
use std::net::SocketAddr;
use std::process::exit;

/// Holds the one peer every request is sent to; each request gets its own copy.
struct Bare {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn usage() -> ! {
    eprintln!("usage: bare_proxy LISTEN UPSTREAM [THREADS]   (addresses as IP:PORT)");
    exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 {
        usage();
    }
    let listen: SocketAddr = args[0].parse().unwrap_or_else(|_| usage());
    let upstream: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
    let threads: usize = match args.get(2) {
        Some(t) => t.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| usage()),
        None => 1,
    };

    // Same server settings as levee (src/server.rs) apart from what levee adds on top, so
    // the comparison measures the proxy logic, not a different runtime setup.
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(10),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Plain HTTP to the upstream, no SNI.
    let peer = HttpPeer::new(upstream, false, String::new());
    let mut proxy =
        pingora_proxy::http_proxy_service_with_name(&server.configuration, Bare { peer }, "bare");
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);

    eprintln!("bare_proxy: {listen} -> {upstream}, {threads} worker thread(s)");
    server.run_forever()
}
