//! Any request line and headers against a route table with every kind of matcher: the
//! router never panics and agrees with a first-match scan.
#![no_main]
use levee::routing::{matchers, RequestView, Router};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ROUTES: &str = r#"
[pools.p]
endpoints = ["127.0.0.1:9"]
[[routes]]
name = "exact"
pool = "p"
match = { path = "/checkout", methods = ["POST"] }
[[routes]]
name = "broad"
pool = "p"
match = { path_prefix = "/search", query = { q = { one_of = ["shoes", "women's clothing"] } } }
[[routes]]
name = "pdp"
pool = "p"
match = { path_regex = "^/p/[0-9]+$", host = "*.shop.example" }
[[routes]]
name = "bots"
pool = "p"
match = { headers = { user-agent = { regex = "(?i)bot" } } }
[[routes]]
name = "web"
pool = "p"
"#;

fn routes() -> &'static (Vec<levee::config::MatchSpec>, Router) {
    static R: OnceLock<(Vec<levee::config::MatchSpec>, Router)> = OnceLock::new();
    R.get_or_init(|| {
        let c = levee::config::load_str(ROUTES, std::path::Path::new(".")).expect("valid");
        let specs: Vec<_> = c.config.routes.iter().map(|r| r.matcher.clone()).collect();
        (specs.clone(), Router::new(specs).unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let mut parts = s.splitn(4, '\n');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let host = parts.next();
    let ua = parts.next().unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(ua) {
        headers.insert(http::header::USER_AGENT, v);
    }
    let req = RequestView {
        method,
        host,
        path,
        query,
        headers: &headers,
    };
    let (specs, router) = routes();
    let scan = specs
        .iter()
        .position(|m| matchers::matches_rest(m, &req, true));
    assert_eq!(router.find(&req), scan);
});
