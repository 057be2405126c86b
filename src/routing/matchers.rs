//! Match conditions evaluated per request: host, method, header and query conditions.
//! Query values are percent- and plus-decoded before comparing and are compared whole;
//! when a parameter or header appears several times, any occurrence may satisfy the
//! condition (a request that *could* be the costly kind is treated as the costly kind).

use crate::config::{HostMatch, MatchSpec, ValueMatch};
use std::borrow::Cow;

/// What the router needs to know of a request. Borrowed from the request head; nothing is
/// copied unless a query value must be decoded.
pub struct RequestView<'a> {
    pub method: &'a str,
    /// Host without port, as sent (compared case-insensitively).
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

impl<'a> RequestView<'a> {
    /// Build a view of a request head: host from the URI authority or the Host header.
    pub fn of(req: &'a http::request::Parts) -> Self {
        Self::from_parts(&req.method, &req.uri, &req.headers)
    }

    pub fn from_parts(
        method: &'a http::Method,
        uri: &'a http::Uri,
        headers: &'a http::HeaderMap,
    ) -> Self {
        let host = uri
            .host()
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .map(strip_port);
        RequestView {
            method: method.as_str(),
            host,
            path: uri.path(),
            query: uri.query(),
            headers,
        }
    }
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map(|s| &h[..s.len() + 1]).unwrap_or(h);
    }
    h.rsplit_once(':').map(|(host, _)| host).unwrap_or(h)
}

/// Check every non-path condition of `m` (the path index already vouched for path and
/// path_prefix; `check_regex` says whether the path regex still needs testing).
pub fn matches_rest(m: &MatchSpec, req: &RequestView<'_>, check_regex: bool) -> bool {
    if let Some(p) = &m.path {
        if req.path != p {
            return false;
        }
    }
    if let Some(p) = &m.path_prefix {
        if !req.path.starts_with(p.as_str()) {
            return false;
        }
    }
    if check_regex {
        if let Some(re) = &m.path_regex {
            if !re.is_match(req.path) {
                return false;
            }
        }
    }
    if let Some(h) = &m.host {
        let Some(host) = req.host else { return false };
        let ok = match h {
            HostMatch::Exact(e) => host.eq_ignore_ascii_case(e),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host.as_bytes()[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        };
        if !ok {
            return false;
        }
    }
    if !m.methods.is_empty() && !m.methods.iter().any(|x| x == req.method) {
        return false;
    }
    for (name, vm) in &m.headers {
        let ok = req
            .headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().map(|s| value_matches(vm, s)).unwrap_or(false));
        if !ok {
            return false;
        }
    }
    for (name, vm) in &m.query {
        let Some(q) = req.query else { return false };
        if !query_values(q, name).any(|v| value_matches(vm, &v)) {
            return false;
        }
    }
    true
}

pub fn value_matches(vm: &ValueMatch, v: &str) -> bool {
    match vm {
        ValueMatch::Equals(e) => v == e,
        ValueMatch::OneOf { values, .. } => {
            if v.bytes().any(|b| b.is_ascii_uppercase()) || !v.is_ascii() {
                values.contains(&v.to_lowercase())
            } else {
                values.contains(v)
            }
        }
        ValueMatch::Regex(re) => re.is_match(v),
        ValueMatch::Present => true,
    }
}

/// Decoded values of parameter `name` in a raw query string.
pub fn query_values<'q>(query: &'q str, name: &'q str) -> impl Iterator<Item = Cow<'q, str>> + 'q {
    query.split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

/// Percent- and plus-decode a query component (application/x-www-form-urlencoded).
/// Invalid UTF-8 after decoding is replaced, so a malformed value simply fails to match.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let plus_free: Cow<'_, str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    let decoded = percent_encoding::percent_decode_str(&plus_free).decode_utf8_lossy();
    Cow::Owned(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query() {
        assert_eq!(decode("women%27s+clothing"), "women's clothing");
        assert_eq!(decode("a%2Bb"), "a+b");
        assert_eq!(decode("plain"), "plain");
        let vals: Vec<_> = query_values("x=1&q=a+b&q=c%20d&qq=z", "q").collect();
        assert_eq!(vals, vec!["a b", "c d"]);
        let vals: Vec<_> = query_values("q", "q").collect();
        assert_eq!(vals, vec![""]);
        let vals: Vec<_> = query_values("%71=1", "q").collect();
        assert_eq!(vals, vec!["1"]);
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("shop.example:8080"), "shop.example");
        assert_eq!(strip_port("shop.example"), "shop.example");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
