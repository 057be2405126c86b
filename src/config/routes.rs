//! Route validation: names, pool references, priorities, costs and match conditions
//! (regexes compiled, value files read), plus the warning for a route that can never match
//! because an earlier route catches everything it would.

use super::diag::{key_seg, Diags};
use super::model::*;
use super::protection::validate_protections;
use super::schema::*;
use super::validate::{check_name, int_in};
use regex::Regex;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Reserved: the route label of requests that match no route.
pub const NO_ROUTE: &str = "none";

/// Largest regex levee compiles (bytes of compiled program); keeps a typo such as `.{1000}{1000}`
/// from eating memory at load.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(super) fn validate_routes(
    raw: &[RawRoute],
    pools: &[&str],
    base_dir: &Path,
    d: &mut Diags,
) -> Vec<RouteSpec> {
    let mut out: Vec<RouteSpec> = Vec::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut ok_all = true;
    for (i, r) in raw.iter().enumerate() {
        let base = format!("routes[{i}]");
        let p = |k: &str| format!("{base}.{k}");
        let mut ok = true;

        let name = match &r.name {
            None => {
                d.error(p("name"), "missing: every route needs a unique name");
                ok = false;
                String::new()
            }
            Some(n) => {
                if !check_name(n, &p("name"), d) {
                    ok = false;
                } else if n == NO_ROUTE {
                    d.error(
                        p("name"),
                        "\"none\" is reserved for requests that match no route",
                    );
                    ok = false;
                } else if let Some((_, j)) = seen.iter().find(|(s, _)| s == n) {
                    d.error(
                        p("name"),
                        format!("duplicate route name {n:?} (also routes[{j}])"),
                    );
                    ok = false;
                }
                seen.push((n.clone(), i));
                n.clone()
            }
        };

        let pool = match &r.pool {
            None => {
                d.error(p("pool"), "missing: every route needs a pool");
                ok = false;
                String::new()
            }
            Some(pn) if !pools.contains(&pn.as_str()) => {
                let known = if pools.is_empty() {
                    "none defined".to_string()
                } else {
                    pools.join(", ")
                };
                d.error(p("pool"), format!("unknown pool {pn:?} (known: {known})"));
                ok = false;
                String::new()
            }
            Some(pn) => pn.clone(),
        };

        let priority = match r.priority.as_deref() {
            None => Priority::Normal,
            Some(s) => Priority::parse(s).unwrap_or_else(|| {
                d.error(
                    p("priority"),
                    format!(
                        "unknown priority {s:?}: expected critical, high, normal, low or sheddable"
                    ),
                );
                ok = false;
                Priority::Normal
            }),
        };
        let cost = int_in(r.cost, 1, 1, 10_000, &p("cost"), d);
        ok &= cost.is_some();

        let matcher = match &r.match_ {
            None => Some(MatchSpec::default()),
            Some(m) => validate_match(m, &p("match"), base_dir, d),
        };
        ok &= matcher.is_some();
        let protections = validate_protections(r, &base, base_dir, d);
        ok &= protections.is_some();

        if let (true, Some(pr)) = (ok, protections) {
            out.push(RouteSpec {
                name,
                pool,
                priority,
                cost: cost.unwrap_or(1) as u32,
                matcher: matcher.unwrap_or_default(),
                shadow: r.shadow.unwrap_or(false),
                degrade_under_pressure: r.degrade_under_pressure.unwrap_or(false),
                cost_key: pr.cost_key,
                max_body: pr.max_body,
                rate_limit: pr.rate_limit,
                client_rate_limit: pr.client_rate_limit,
                circuit_breaker: pr.circuit_breaker,
                degrade: pr.degrade,
                cache: pr.cache,
            });
        } else {
            ok_all = false;
        }
    }

    // Only meaningful when every route compiled: indexes would be off otherwise.
    if ok_all {
        for (j, later) in out.iter().enumerate() {
            if let Some(i) = (0..j).find(|&i| shadows(&out[i].matcher, &later.matcher)) {
                d.warning(
                    format!("routes[{j}]"),
                    format!(
                        "route {:?} can never match: routes[{i}] ({:?}) comes first and catches every request it would",
                        later.name, out[i].name
                    ),
                );
            }
        }
    }
    out
}

fn validate_match(m: &RawMatch, base: &str, base_dir: &Path, d: &mut Diags) -> Option<MatchSpec> {
    let p = |k: &str| format!("{base}.{k}");
    let mut ok = true;
    let mut spec = MatchSpec::default();

    for (key, val, slot) in [
        ("path", &m.path, &mut spec.path),
        ("path_prefix", &m.path_prefix, &mut spec.path_prefix),
    ] {
        if let Some(v) = val {
            if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?') {
                d.error(
                    p(key),
                    format!("bad {key} {v:?}: must start with '/' and hold no spaces or '?'"),
                );
                ok = false;
            } else {
                *slot = Some(v.clone());
            }
        }
    }
    if let Some(re) = &m.path_regex {
        match compile(re, re) {
            Ok(r) => spec.path_regex = Some(r),
            Err(e) => {
                d.error(p("path_regex"), e);
                ok = false;
            }
        }
    }
    if let Some(h) = &m.host {
        let h = h.to_ascii_lowercase();
        let valid = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.*_:[]".contains(&b));
        let has_port = h
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.contains(']'));
        if has_port {
            d.error(
                p("host"),
                format!(
                    "bad host {h:?}: leave the port out (levee compares hosts without their port)"
                ),
            );
            ok = false;
        } else if !valid || h[1..].contains('*') || (h.starts_with('*') && !h.starts_with("*.")) {
            d.error(
                p("host"),
                format!("bad host {h:?}: a host name, or \"*.example.com\" for any subdomain"),
            );
            ok = false;
        } else if let Some(suffix) = h.strip_prefix('*') {
            spec.host = Some(HostMatch::Suffix(suffix.to_string()));
        } else {
            spec.host = Some(HostMatch::Exact(h));
        }
    }
    if let Some(methods) = &m.methods {
        if methods.is_empty() {
            d.error(p("methods"), "empty: leave the key out to match any method");
            ok = false;
        }
        for (i, meth) in methods.iter().enumerate() {
            if meth.is_empty() || !meth.bytes().all(|b| b.is_ascii_alphabetic()) {
                d.error(
                    format!("{base}.methods[{i}]"),
                    format!("bad method {meth:?}"),
                );
                ok = false;
            } else {
                spec.methods.push(meth.to_ascii_uppercase());
            }
        }
    }
    if let Some(headers) = &m.headers {
        for (name, vm) in headers {
            let path = format!("{base}.headers.{}", key_seg(name));
            let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
                d.error(path, format!("bad header name {name:?}"));
                ok = false;
                continue;
            };
            match value_match(vm, &path, base_dir, d) {
                Some(v) => spec.headers.push((header, v)),
                None => ok = false,
            }
        }
    }
    if let Some(query) = &m.query {
        for (name, vm) in query {
            let path = format!("{base}.query.{}", key_seg(name));
            if name.is_empty() {
                d.error(path, "empty parameter name");
                ok = false;
                continue;
            }
            match value_match(vm, &path, base_dir, d) {
                Some(v) => spec.query.push((name.clone(), v)),
                None => ok = false,
            }
        }
    }
    ok.then_some(spec)
}

fn value_match(
    vm: &RawValueMatch,
    base: &str,
    base_dir: &Path,
    d: &mut Diags,
) -> Option<ValueMatch> {
    let given = [
        vm.equals.is_some(),
        vm.one_of.is_some(),
        vm.one_of_file.is_some(),
        vm.regex.is_some(),
        vm.present.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        d.error(
            base,
            "give exactly one of `equals`, `one_of`, `one_of_file`, `regex`, `present`",
        );
        return None;
    }
    let p = |k: &str| format!("{base}.{k}");
    if let Some(v) = &vm.equals {
        return Some(ValueMatch::Equals(v.clone()));
    }
    if let Some(list) = &vm.one_of {
        if list.is_empty() {
            d.error(p("one_of"), "empty list: this condition could never match");
            return None;
        }
        let values: HashSet<String> = list.iter().map(|v| v.to_lowercase()).collect();
        return Some(ValueMatch::OneOf {
            values: Arc::new(values),
            source: None,
        });
    }
    if let Some(file) = &vm.one_of_file {
        let path = base_dir.join(file);
        return match std::fs::read_to_string(&path) {
            Ok(text) => {
                let values: HashSet<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| l.to_lowercase())
                    .collect();
                if values.is_empty() {
                    d.warning(
                        p("one_of_file"),
                        format!(
                            "{} holds no values: this condition never matches",
                            path.display()
                        ),
                    );
                }
                Some(ValueMatch::OneOf {
                    values: Arc::new(values),
                    source: Some(path),
                })
            }
            Err(e) => {
                d.error(
                    p("one_of_file"),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        };
    }
    if let Some(re) = &vm.regex {
        return match compile(&format!("^(?:{re})$"), re) {
            Ok(r) => Some(ValueMatch::Regex(r)),
            Err(e) => {
                d.error(p("regex"), e);
                None
            }
        };
    }
    if vm.present == Some(false) {
        d.error(
            p("present"),
            "`present = false` is not supported; leave the condition out",
        );
        return None;
    }
    Some(ValueMatch::Present)
}

/// Compile `re`; errors name `shown` (what the user wrote) and the parser's last line, which
/// says what is wrong ("unclosed group"): its multi-line caret drawing does not fit one line.
fn compile(re: &str, shown: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let what = text
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ");
            format!("bad regex {shown:?}: {what}")
        })
}

/// Does `a` (earlier) match every request that `b` (later) matches? Conservative: true only
/// when each condition of `a` is implied by a condition of `b`.
pub fn shadows(a: &MatchSpec, b: &MatchSpec) -> bool {
    // Path: a's prefix must cover b's path or prefix; a's exact path must equal b's.
    if let Some(ap) = &a.path_prefix {
        let covered = match (&b.path, &b.path_prefix) {
            (Some(bp), _) => bp.starts_with(ap.as_str()),
            (None, Some(bpp)) => bpp.starts_with(ap.as_str()),
            _ => false,
        };
        if !covered {
            return false;
        }
    }
    if let Some(ap) = &a.path {
        if b.path.as_deref() != Some(ap.as_str()) {
            return false;
        }
    }
    if let Some(ar) = &a.path_regex {
        if b.path_regex.as_ref().map(|r| r.as_str()) != Some(ar.as_str()) {
            return false;
        }
    }
    if let Some(ah) = &a.host {
        let covered = match (ah, &b.host) {
            (x, Some(y)) if x == y => true,
            (HostMatch::Suffix(s), Some(HostMatch::Exact(h))) => h.ends_with(s.as_str()),
            _ => false,
        };
        if !covered {
            return false;
        }
    }
    if !a.methods.is_empty()
        && (b.methods.is_empty() || !b.methods.iter().all(|m| a.methods.contains(m)))
    {
        return false;
    }
    implied(&a.headers, &b.headers) && implied(&a.query, &b.query)
}

/// Every condition of `conds_a` is also in `conds_b`.
fn implied<K: PartialEq>(conds_a: &[(K, ValueMatch)], conds_b: &[(K, ValueMatch)]) -> bool {
    conds_a
        .iter()
        .all(|(k, v)| conds_b.iter().any(|(k2, v2)| k == k2 && v.same_as(v2)))
}
