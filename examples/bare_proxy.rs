//! The smallest useful Pingora reverse proxy: every request goes to one fixed upstream.
//!
//! It is the baseline for `benches/load/run.sh`: the cost levee cannot go below, because
//! levee is this plus routing, bulkheads, header hygiene and metrics. By default: no
//! filters, no context, no logging — `upstream_peer` is the only phase implemented.
//!
//! With `--hygiene` it is the *floor*: bare plus only the per-request work issue #2 requires
//! of every proxied request, done with levee's own functions: a request id (kept or made),
//! `X-Forwarded-For`/`-Proto` and the id upstream, hop-by-hop fields stripped from the
//! response and the id on it, and the same upstream timeouts as a levee pool. No routing,
//! bulkhead, metrics, edge limits or admission: what levee costs above the floor is its own
//! architecture; what the floor costs above bare is the required work on Pingora's API.
//!
//! Usage: `bare_proxy LISTEN UPSTREAM [THREADS] [--hygiene]`, e.g.
//! `cargo run --release --example bare_proxy -- 127.0.0.1:18100 127.0.0.1:18000 1`

use async_trait::async_trait;
use http::HeaderValue;
use levee::proxy::headers;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};
use std::net::SocketAddr;
use std::process::exit;
use std::time::Duration;

/// The allocator levee's binary uses (src/main.rs): bare and floor compare like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Bare plus the required header hygiene and upstream timeouts (`--hygiene`).
struct Hygiene {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Hygiene {
    type CTX = Option<HeaderValue>;

    fn new_ctx(&self) -> Self::CTX {
        None
    }

    async fn request_filter(&self, session: &mut Session, id: &mut Self::CTX) -> Result<bool> {
        let req = session.req_header();
        *id = Some(headers::incoming_request_id(req).unwrap_or_else(headers::new_request_id));
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _id: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        id: &mut Self::CTX,
    ) -> Result<()> {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(id) = id {
            headers::forwarded(req, client, id, None);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        _id: &mut Self::CTX,
    ) -> Result<()> {
        headers::strip_response_hop_by_hop(resp);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        id: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(id) = id {
            headers::set_response_id(resp, id);
        }
        Ok(())
    }
}

/// Serve `proxy` on `listen` as the server's one proxy service.
fn add_proxy<P>(server: &mut Server, proxy: P, name: &str, listen: SocketAddr)
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    let mut service =
        pingora_proxy::http_proxy_service_with_name(&server.configuration, proxy, name);
    service.add_tcp(&listen.to_string());
    server.add_service(service);
}

fn usage() -> ! {
    eprintln!("usage: bare_proxy LISTEN UPSTREAM [THREADS] [--hygiene]   (addresses as IP:PORT)");
    exit(2);
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let hygiene = args.iter().any(|a| a == "--hygiene");
    args.retain(|a| a != "--hygiene");
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
    let mut peer = HttpPeer::new(upstream, false, String::new());
    if hygiene {
        // As a levee pool sets them (src/pools/mod.rs), with the load bench's timeouts.
        let o = &mut peer.options;
        o.connection_timeout = Some(Duration::from_secs(1));
        o.total_connection_timeout = Some(Duration::from_secs(1));
        o.read_timeout = Some(Duration::from_secs(10));
        o.write_timeout = Some(Duration::from_secs(10));
        o.idle_timeout = Some(Duration::from_secs(60));
        add_proxy(&mut server, Hygiene { peer }, "floor", listen);
    } else {
        add_proxy(&mut server, Bare { peer }, "bare", listen);
    }

    let mode = if hygiene { " (floor: --hygiene)" } else { "" };
    eprintln!("bare_proxy{mode}: {listen} -> {upstream}, {threads} worker thread(s)");
    server.run_forever()
}
