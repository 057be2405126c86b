//! Property tests (issue #8): the config loader, the route matcher, query decoding and the
//! unit parsers never panic on any input, and where an inverse exists they round-trip. The
//! router's indexed lookup always agrees with a plain first-match scan of the same routes.

use levee::config::{self, units};
use levee::routing::{matchers, RequestView, Router};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use std::path::Path;
use std::time::Duration;

/// Lines of TOML built from the keys levee knows (and some it does not), with values of every
/// shape: the validator's deep paths get exercised, not just the parser's first error.
fn config_text() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "[server]",
        "[pools.p]",
        "[pools.q]",
        "[pools.p.adaptive]",
        "[pools.p.health_check]",
        "[groups.g]",
        "[[routes]]",
        "[routes.match]",
        "[routes.match.query]",
        "[routes.match.headers]",
        "[routes.rate_limit]",
        "[routes.client_rate_limit]",
        "[routes.circuit_breaker]",
        "[routes.degrade]",
        "[routes.cache]",
        "[[schedules]]",
        "[log]",
        "[tracing]",
        "[nonsense]",
    ]);
    let key = prop::sample::select(vec![
        "listen",
        "admin_listen",
        "threads",
        "endpoints",
        "max_inflight",
        "queue",
        "adaptive",
        "min_limit",
        "connect_timeout",
        "request_timeout",
        "group",
        "name",
        "pool",
        "priority",
        "cost",
        "cost_key",
        "path",
        "path_prefix",
        "path_regex",
        "host",
        "methods",
        "q",
        "x-a",
        "rps",
        "burst",
        "key",
        "max_keys",
        "window",
        "min_requests",
        "error_ratio",
        "open_for",
        "probes",
        "status",
        "mode",
        "max_size",
        "ttl",
        "stale_if_error",
        "key_headers",
        "lock_timeout",
        "max_body",
        "from",
        "until",
        "switches",
        "shadow",
        "interval",
        "bogus",
    ]);
    let value = prop::sample::select(vec![
        "\"250ms\"",
        "\"5s\"",
        "\"10\"",
        "0",
        "-1",
        "1",
        "99999999999",
        "1.5",
        "true",
        "\"x\"",
        "\"\"",
        "\"/p/\"",
        "\"^/p/[0-9]+$\"",
        "\"(\"",
        "[]",
        "[\"GET\", \"HEAD\"]",
        "[\"127.0.0.1:9\"]",
        "[\"nope\"]",
        "{ max = 4, timeout = \"1s\" }",
        "{ equals = \"a\" }",
        "{ one_of = [\"a\", \"B\"] }",
        "{ regex = \"[\" }",
        "\"64KiB\"",
        "\"1GiB\"",
        "\"stale\"",
        "\"query:q\"",
        "\"header:x\"",
        "\"ip\"",
        "\"high\"",
        "\"p\"",
        "\"q\"",
        "\"2026-11-11T00:00:00+09:00\"",
        "{ r = \"off\" }",
        "nan",
        "inf",
        "\"\\u0000\"",
    ]);
    let line = prop_oneof![
        1 => header.prop_map(str::to_string),
        4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,40}",
    ];
    prop::collection::vec(line, 0..40).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_loader_never_panics_on_text(src in "\\PC{0,400}") {
        let _ = config::load_str(&src, Path::new("."));
    }

    #[test]
    fn the_validator_never_panics_and_every_error_has_a_message(src in config_text()) {
        match config::load_str(&src, Path::new(".")) {
            Ok(loaded) => {
                // What it accepts, it can route with.
                let specs = loaded.config.routes.iter().map(|r| r.matcher.clone()).collect();
                prop_assert!(Router::new(specs).is_ok());
            }
            Err(diags) => {
                prop_assert!(!diags.is_empty());
                for d in diags {
                    prop_assert!(!d.message.is_empty(), "{d:?}");
                }
            }
        }
    }

    #[test]
    fn durations_and_sizes_round_trip(ms in 0u64..(365 * 86_400_000), n in 0u64..(1 << 30)) {
        prop_assert_eq!(units::parse_duration(&format!("{ms}ms")).unwrap(), Duration::from_millis(ms));
        prop_assert_eq!(units::parse_size(&format!("{n}KiB")).unwrap(), n * 1024);
        prop_assert_eq!(units::parse_size(&format!("{n}")).unwrap(), n);
    }

    #[test]
    fn unit_parsers_never_panic(s in "\\PC{0,30}") {
        let _ = units::parse_duration(&s);
        let _ = units::parse_size(&s);
    }

    #[test]
    fn query_decoding_inverts_encoding(s in "\\PC{0,60}") {
        let encoded = utf8_percent_encode(&s, NON_ALPHANUMERIC).to_string();
        prop_assert_eq!(matchers::decode(&encoded), s.as_str());
        // Form encoding: spaces as '+'.
        if !s.contains('+') && !s.contains('%') {
            let form = s.replace(' ', "+");
            prop_assert_eq!(matchers::decode(&form), s.as_str());
        }
    }

    #[test]
    fn query_decoding_never_panics(s in "[%+0-9a-fA-F\\PC]{0,60}") {
        let _ = matchers::decode(&s);
        let _ = matchers::query_values(&s, "q").count();
    }

    /// Routes built from a small alphabet (so prefixes and regexes overlap often), requests
    /// from the same alphabet: the router's answer is the first route a plain scan finds.
    #[test]
    fn the_router_agrees_with_a_first_match_scan(
        routes in prop::collection::vec(
            (0u8..5, "/[ab/]{0,4}", prop::sample::subsequence(vec!["GET", "POST", "HEAD"], 0..=3), any::<bool>()),
            1..12,
        ),
        paths in prop::collection::vec(("/[ab/]{0,6}", prop::sample::select(vec!["GET", "POST", "HEAD"]), prop::option::of("q=[ab]{0,2}")), 1..20),
    ) {
        let mut src = String::from("[pools.p]\nendpoints = [\"127.0.0.1:9\"]\n");
        for (i, (kind, p, methods, with_query)) in routes.iter().enumerate() {
            src.push_str(&format!("\n[[routes]]\nname = \"r{i}\"\npool = \"p\"\n[routes.match]\n"));
            match kind {
                0 => src.push_str(&format!("path = \"{p}\"\n")),
                1 => src.push_str(&format!("path_prefix = \"{p}\"\n")),
                2 => src.push_str(&format!("path_regex = \"^{p}.*b$\"\n")),
                3 => src.push_str(&format!("path_regex = \"{}\"\n", p.replace('/', "a"))),
                _ => {}
            }
            if !methods.is_empty() {
                let m: Vec<String> = methods.iter().map(|m| format!("\"{m}\"")).collect();
                src.push_str(&format!("methods = [{}]\n", m.join(", ")));
            }
            if *with_query {
                src.push_str("query = { q = { one_of = [\"a\", \"ab\"] } }\n");
            }
        }
        let loaded = match config::load_str(&src, Path::new(".")) {
            Ok(l) => l,
            Err(d) => return Err(TestCaseError::fail(format!("{src}\n{d:?}"))),
        };
        let specs: Vec<_> = loaded.config.routes.iter().map(|r| r.matcher.clone()).collect();
        let router = Router::new(specs.clone()).unwrap();
        let headers = http::HeaderMap::new();
        for (path, method, query) in &paths {
            let req = RequestView { method, host: Some("shop.test"), path, query: query.as_deref(), headers: &headers };
            let scan = specs.iter().position(|m| matchers::matches_rest(m, &req, true));
            prop_assert_eq!(router.find(&req), scan, "{} {}?{:?}\n{}", method, path, query, src);
        }
    }
}
