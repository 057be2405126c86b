//! Header hygiene between client and upstream: request ids, `X-Forwarded-*`, and hop-by-hop
//! fields on responses. (Pingora's standard upstream request policy already strips
//! hop-by-hop request fields, including those nominated by `Connection`.)

use pingora_http::{RequestHeader, ResponseHeader};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub const REQUEST_ID: &str = "x-request-id";

/// A client-sent request id is kept when it is short and plain (so it is safe to echo in
/// logs, headers and JSON); otherwise levee makes one.
pub fn incoming_request_id(req: &RequestHeader) -> Option<String> {
    let v = req.headers.get(REQUEST_ID)?.as_bytes();
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
    ok.then(|| String::from_utf8_lossy(v).into_owned())
}

/// A new request id: a random per-process prefix and a counter (unique, cheap, no syscalls).
pub fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

/// Append the client's address to `X-Forwarded-For` (what the client sent is kept as data,
/// never trusted), set `X-Forwarded-Proto` to this hop's scheme, and pass the request id.
pub fn forwarded(req: &mut RequestHeader, client: Option<IpAddr>, request_id: &str) {
    if let Some(ip) = client {
        let prior: Vec<String> = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let value = if prior.is_empty() {
            ip.to_string()
        } else {
            format!("{}, {ip}", prior.join(", "))
        };
        let _ = req.insert_header("x-forwarded-for", value);
    }
    let _ = req.insert_header("x-forwarded-proto", "http");
    let _ = req.insert_header(REQUEST_ID, request_id);
}

/// Fields that describe one connection and must not cross the proxy (RFC 9110 §7.6.1).
/// `transfer-encoding` and `content-length` are left to Pingora, which re-frames the body.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

/// Strip hop-by-hop fields, including those the upstream named in `Connection`.
pub fn strip_response_hop_by_hop(resp: &mut ResponseHeader) {
    let nominated: Vec<String> = resp
        .headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| {
            !t.is_empty()
                && !matches!(
                    t.as_str(),
                    "close" | "keep-alive" | "content-length" | "transfer-encoding"
                )
        })
        .collect();
    for name in nominated {
        resp.remove_header(name.as_str());
    }
    // A 101 keeps its Upgrade/Connection pair: the switch needs it.
    if resp.status.as_u16() == 101 {
        return;
    }
    for name in HOP_BY_HOP {
        resp.remove_header(*name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(incoming_request_id(&req), None);
        req.insert_header(REQUEST_ID, "abc-123").unwrap();
        assert_eq!(incoming_request_id(&req).as_deref(), Some("abc-123"));
        req.insert_header(REQUEST_ID, "bad\"id").unwrap();
        assert_eq!(incoming_request_id(&req), None);
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn forwarded_appends() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "10.0.0.1").unwrap();
        req.insert_header("x-forwarded-proto", "https").unwrap();
        forwarded(&mut req, Some("127.0.0.9".parse().unwrap()), "id1");
        assert_eq!(
            req.headers.get("x-forwarded-for").unwrap(),
            "10.0.0.1, 127.0.0.9"
        );
        assert_eq!(req.headers.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(req.headers.get(REQUEST_ID).unwrap(), "id1");
    }

    #[test]
    fn strips_hop_by_hop() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("connection", "x-secret, keep-alive")
            .unwrap();
        r.insert_header("x-secret", "1").unwrap();
        r.insert_header("keep-alive", "timeout=5").unwrap();
        r.insert_header("x-fine", "1").unwrap();
        strip_response_hop_by_hop(&mut r);
        assert!(r.headers.get("x-secret").is_none());
        assert!(r.headers.get("connection").is_none());
        assert!(r.headers.get("keep-alive").is_none());
        assert!(r.headers.get("x-fine").is_some());
    }
}
