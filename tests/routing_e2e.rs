//! Every match kind, end to end: the real levee binary routes to real origins, one pool per
//! route, and each origin answers with its name.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_match_kind_routes_to_its_pool() {
    let names = [
        "exact",
        "prefix",
        "regex",
        "host",
        "wildhost",
        "methods",
        "header",
        "q_equals",
        "q_one_of",
        "q_file",
        "q_regex",
        "q_present",
        "fallback",
    ];
    let mut body = String::new();
    for n in names {
        let addr = named_origin(n).await;
        body.push_str(&format!("[pools.{n}]\nendpoints = [\"{addr}\"]\n\n"));
    }
    body.push_str(
        r#"
[[routes]]
name = "exact"
pool = "exact"
match = { path = "/exact" }

[[routes]]
name = "q_equals"
pool = "q_equals"
match = { path_prefix = "/search", query = { q = { equals = "Red Shoes" } } }

[[routes]]
name = "q_one_of"
pool = "q_one_of"
match = { path_prefix = "/search", query = { q = { one_of = ["women's clothing", "men's clothing"] } } }

[[routes]]
name = "q_file"
pool = "q_file"
match = { path_prefix = "/search", query = { q = { one_of_file = "broad.txt" } } }

[[routes]]
name = "q_regex"
pool = "q_regex"
match = { path_prefix = "/search", query = { q = { regex = "sku-[0-9]+" } } }

[[routes]]
name = "q_present"
pool = "q_present"
match = { path_prefix = "/search", query = { debug = { present = true } } }

[[routes]]
name = "prefix"
pool = "prefix"
match = { path_prefix = "/search" }

[[routes]]
name = "regex"
pool = "regex"
match = { path_regex = "^/p/[0-9]+$" }

[[routes]]
name = "host"
pool = "host"
match = { host = "api.shop.test" }

[[routes]]
name = "wildhost"
pool = "wildhost"
match = { host = "*.cdn.test" }

[[routes]]
name = "methods"
pool = "methods"
match = { path_prefix = "/cart", methods = ["POST", "DELETE"] }

[[routes]]
name = "header"
pool = "header"
match = { headers = { x-tier = { one_of = ["gold", "platinum"] } } }

[[routes]]
name = "fallback"
pool = "fallback"
match = { path_prefix = "/" }
"#,
    );
    let levee = Levee::start_with_files(
        &body,
        &[("broad.txt", "# broad terms\nelectronics\nShoes\n\n")],
    )
    .await;
    let p = levee.proxy;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("GET", "/exact", &[], "exact"),
        ("GET", "/exact/more", &[], "fallback"),
        ("GET", "/search?q=Red+Shoes", &[], "q_equals"),
        ("GET", "/search?q=Red%20Shoes", &[], "q_equals"),
        ("GET", "/search?q=red+shoes", &[], "prefix"), // equals is case-sensitive
        ("GET", "/search?q=Red+Shoes+2", &[], "prefix"), // whole value only
        ("GET", "/search?q=WOMEN%27S+CLOTHING", &[], "q_one_of"), // decoded, case-insensitive
        (
            "GET",
            "/search?page=2&q=men%27s%20clothing",
            &[],
            "q_one_of",
        ),
        ("GET", "/search?q=women", &[], "prefix"),
        ("GET", "/search?q=shoes", &[], "q_file"),
        ("GET", "/search?q=ELECTRONICS", &[], "q_file"),
        ("GET", "/search?q=%23+broad+terms", &[], "prefix"), // comment lines are not values
        ("GET", "/search?q=sku-123", &[], "q_regex"),
        ("GET", "/search?q=sku-123x", &[], "prefix"), // regex anchored to the whole value
        ("GET", "/search?debug", &[], "q_present"),
        ("GET", "/searching", &[], "prefix"), // plain string prefix
        ("GET", "/p/42", &[], "regex"),
        ("GET", "/p/42/reviews", &[], "fallback"),
        (
            "GET",
            "/anything",
            &[("Host", "API.shop.test:8443")],
            "host",
        ),
        ("GET", "/anything", &[("Host", "img.cdn.test")], "wildhost"),
        ("GET", "/anything", &[("Host", "cdn.test")], "fallback"),
        ("POST", "/cart/items", &[], "methods"),
        ("GET", "/cart/items", &[], "fallback"),
        ("GET", "/x", &[("X-Tier", "Gold")], "header"),
        ("GET", "/x", &[("X-Tier", "bronze")], "fallback"),
    ];
    let mut failures = Vec::new();
    for (method, target, headers, want) in cases {
        let r = request(p, method, target, headers).await.unwrap();
        if r.status != 200 || r.header("x-origin") != Some(want) {
            failures.push(format!(
                "{method} {target} {headers:?}: got {} from {:?}, want {want}",
                r.status,
                r.header("x-origin")
            ));
        }
    }
    assert!(failures.is_empty(), "misrouted:\n{}", failures.join("\n"));

    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="q_file",status_class="2xx"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="fallback",status_class="2xx"}"#
        ),
        Some(5.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_with_reason() {
    let a = named_origin("a").await;
    let levee = Levee::start(&format!(
        "[pools.a]\nendpoints = [\"{a}\"]\n\n[[routes]]\nname = \"a\"\npool = \"a\"\nmatch = {{ path_prefix = \"/a\" }}\n"
    ))
    .await;
    let r = get(levee.proxy, "/b", &[]).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-levee-reason"), Some("no_route"));
    assert!(r.header("x-request-id").is_some());
    assert!(r.text().contains("\"no_route\""));
    let m = levee.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"levee_rejections_total{reason="no_route",route="none"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"levee_requests_total{route="none",status_class="4xx"}"#
        ),
        Some(1.0)
    );
}
