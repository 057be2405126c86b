//! Header hygiene between client and upstream: request ids, `X-Forwarded-*`, and hop-by-hop
//! fields on responses. (Pingora's standard upstream request policy already strips
//! hop-by-hop request fields, including those nominated by `Connection`.)

use http::header::{HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};
use pingora_http::{RequestHeader, ResponseHeader};
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub const REQUEST_ID: &str = "x-request-id";
static X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID);
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// A client-sent request id is kept when it is short and plain (so it is safe to echo in
/// logs, headers and JSON); otherwise levee makes one. The value is shared, not copied.
pub fn incoming_request_id(req: &RequestHeader) -> Option<HeaderValue> {
    let v = req.headers.get(&X_REQUEST_ID)?;
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
    ok.then(|| v.clone())
}

/// A new request id: a random per-process prefix and a counter (unique, cheap, no syscalls).
pub fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 32];
    let _ = write!(&mut buf[..], "{prefix:016x}{n:016x}");
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

/// The request id as text (for logs and JSON bodies); ids are plain ASCII by construction.
pub fn id_str(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("")
}

/// Append the client's address to `X-Forwarded-For` (what the client sent is kept as data,
/// never trusted), set `X-Forwarded-Proto` to this hop's scheme, and pass the request id.
pub fn forwarded(req: &mut RequestHeader, client: Option<IpAddr>, request_id: &HeaderValue) {
    if let Some(ip) = client {
        let mut prior = req.headers.get_all(&X_FORWARDED_FOR).iter().peekable();
        let value = if prior.peek().is_none() {
            let mut buf = [0u8; 48];
            let mut w = &mut buf[..];
            let _ = write!(w, "{ip}");
            let len = 48 - w.len();
            HeaderValue::from_bytes(&buf[..len])
        } else {
            let mut joined = Vec::with_capacity(64);
            for v in prior {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            let _ = write!(joined, "{ip}");
            HeaderValue::from_maybe_shared(bytes::Bytes::from(joined))
        };
        if let Ok(value) = value {
            let _ = req.insert_header(&X_FORWARDED_FOR, value);
        }
    }
    let _ = req.insert_header(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    let _ = req.insert_header(&X_REQUEST_ID, request_id.clone());
}

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all
/// zero). `tracestate` and a valid `traceparent` go upstream untouched.
pub fn trace_id(req: &RequestHeader) -> Option<String> {
    let v = req.headers.get(&TRACEPARENT)?.to_str().ok()?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && nonzero(trace)
        && nonzero(span);
    ok.then(|| trace.to_string())
}

/// Start a trace: a new `traceparent` (sampled) and its trace id.
pub fn new_trace() -> (HeaderValue, String) {
    let trace: u128 = rand::random::<u128>() | 1;
    let span: u64 = rand::random::<u64>() | 1;
    let id = format!("{trace:032x}");
    let v = format!("00-{id}-{span:016x}-01");
    (
        HeaderValue::from_str(&v).expect("hex is a valid header value"),
        id,
    )
}

/// Send the trace levee started upstream.
pub fn set_traceparent(req: &mut RequestHeader, v: &HeaderValue) {
    let _ = req.insert_header(&TRACEPARENT, v.clone());
}

/// The client's address for limits and logs. The TCP peer, unless the peer is a trusted
/// proxy: then `X-Forwarded-For` is read from the right, skipping trusted proxies, and the
/// first address that is not one is the client. What a client writes into the header itself
/// is never believed: it is to the left of the first untrusted hop.
pub fn client_address(
    peer: Option<IpAddr>,
    req: &RequestHeader,
    trusted: &[crate::config::Cidr],
) -> Option<IpAddr> {
    let peer = peer?;
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(peer)) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in req.headers.get_all(&X_FORWARDED_FOR).iter() {
        for part in v.to_str().ok()?.split(',') {
            hops.push(part.trim().parse().ok()?);
        }
    }
    Some(
        hops.iter()
            .rev()
            .find(|ip| !trusted.iter().any(|c| c.contains(**ip)))
            .copied()
            .unwrap_or(peer),
    )
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
    // The common response carries none: one pass over the names, then done.
    if !resp
        .headers
        .keys()
        .any(|k| HOP_BY_HOP.contains(&k.as_str()))
    {
        return;
    }
    // A 101 keeps its `Connection: upgrade` / `Upgrade` pair: the protocol switch needs it.
    if resp.status.as_u16() == 101 {
        return;
    }
    let nominated: Vec<String> = resp
        .headers
        .get_all(CONNECTION)
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
    resp.remove_header(&CONNECTION);
    resp.remove_header(&TE);
    resp.remove_header(&UPGRADE);
    resp.remove_header("keep-alive");
    resp.remove_header("proxy-connection");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(incoming_request_id(&req), None);
        req.insert_header(REQUEST_ID, "abc-123").unwrap();
        assert_eq!(incoming_request_id(&req).unwrap(), "abc-123");
        req.insert_header(REQUEST_ID, "bad\"id").unwrap();
        assert_eq!(incoming_request_id(&req), None);
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(id_str(&a).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn forwarded_appends() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "10.0.0.1").unwrap();
        req.insert_header("x-forwarded-proto", "https").unwrap();
        let id = HeaderValue::from_static("id1");
        forwarded(&mut req, Some("127.0.0.9".parse().unwrap()), &id);
        assert_eq!(
            req.headers.get("x-forwarded-for").unwrap(),
            "10.0.0.1, 127.0.0.9"
        );
        assert_eq!(req.headers.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(req.headers.get(REQUEST_ID).unwrap(), "id1");
    }

    #[test]
    fn forwarded_first_hop_and_repeated_lines() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let id = new_request_id();
        forwarded(&mut req, Some("2001:db8::1".parse().unwrap()), &id);
        assert_eq!(req.headers.get("x-forwarded-for").unwrap(), "2001:db8::1");
        assert_eq!(req.headers.get(REQUEST_ID).unwrap(), &id);

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("x-forwarded-for", "10.0.0.1").unwrap();
        req.append_header("x-forwarded-for", "10.0.0.2, 10.0.0.3")
            .unwrap();
        forwarded(&mut req, Some("127.0.0.9".parse().unwrap()), &id);
        let all: Vec<_> = req.headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.9"]);
    }

    #[test]
    fn strip_keeps_plain_responses_and_upgrades() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-type", "text/plain").unwrap();
        strip_response_hop_by_hop(&mut r);
        assert_eq!(r.headers.len(), 1);

        let mut r = ResponseHeader::build(101, None).unwrap();
        r.insert_header("connection", "upgrade").unwrap();
        r.insert_header("upgrade", "websocket").unwrap();
        strip_response_hop_by_hop(&mut r);
        assert!(r.headers.get("upgrade").is_some());
        assert!(r.headers.get("connection").is_some());
    }

    #[test]
    fn traceparent_is_validated_and_started() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(trace_id(&req), None);
        req.insert_header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(
            trace_id(&req).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            req.insert_header("traceparent", bad).unwrap();
            assert_eq!(trace_id(&req), None, "{bad}");
        }
        let (v, id) = new_trace();
        let mut up = RequestHeader::build("GET", b"/", None).unwrap();
        set_traceparent(&mut up, &v);
        assert_eq!(trace_id(&up), Some(id));
    }

    #[test]
    fn client_address_trusts_only_configured_proxies() {
        use crate::config::Cidr;
        let lb: IpAddr = "10.0.0.5".parse().unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")
            .unwrap();
        // No trusted proxies: the peer, whatever the header says.
        assert_eq!(client_address(Some(lb), &req, &[]), Some(lb));
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        // From a trusted balancer: the first untrusted hop from the right (the spoofed
        // 6.6.6.6 the client wrote itself is left of it and ignored).
        let want: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(client_address(Some(lb), &req, &trusted), Some(want));
        // From an untrusted peer the header is not read.
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(Some(other), &req, &trusted), Some(other));
        // A malformed header from a trusted peer: fall back to nothing rather than guess.
        req.insert_header("x-forwarded-for", "not-an-ip").unwrap();
        assert_eq!(client_address(Some(lb), &req, &trusted), None);
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(lb));
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
