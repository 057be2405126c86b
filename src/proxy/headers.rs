//! Header hygiene between client and upstream: request ids, `X-Forwarded-*`, and hop-by-hop
//! fields on responses. (Pingora's standard upstream request policy already strips
//! hop-by-hop request fields, including those nominated by `Connection`.)

use http::header::{HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};
use pingora_http::{RequestHeader, ResponseHeader};
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
/// The value owns its 32 bytes in one allocation shared by every clone (request, upstream
/// copy, response), rather than a copy plus a shared header on first clone.
pub fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 32];
    hex16(prefix, &mut buf[..16]);
    hex16(n, &mut buf[16..]);
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .expect("hex digits are a valid header value")
}

/// `v` as 16 lower-case hex digits into `out` (16 bytes).
fn hex16(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// The request id as text (for logs and JSON bodies); ids are plain ASCII by construction.
pub fn id_str(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("")
}

/// What levee adds to the request it sends upstream: `X-Forwarded-For` with the client's
/// address appended (what the client sent is kept as data, never trusted), `X-Forwarded-Proto`
/// for this hop's scheme, the request id, and the `traceparent` of a trace levee started.
pub fn forwarded(
    req: &mut RequestHeader,
    client: Option<IpAddr>,
    request_id: &HeaderValue,
    traceparent: Option<&HeaderValue>,
) {
    let xff = client.and_then(|ip| forwarded_for(req, ip));
    set_request_fields(
        req,
        [
            (&X_FORWARDED_FOR, xff),
            (&X_FORWARDED_PROTO, Some(HeaderValue::from_static("http"))),
            (&X_REQUEST_ID, Some(request_id.clone())),
            (&TRACEPARENT, traceparent.cloned()),
        ],
    );
}

/// The `X-Forwarded-For` value with `ip` appended to what earlier hops wrote.
fn forwarded_for(req: &RequestHeader, ip: IpAddr) -> Option<HeaderValue> {
    // Built on the stack in the usual case (one or two hops): the header value is then the
    // only allocation.
    let mut joined = smallvec::SmallVec::<[u8; 64]>::new();
    for v in req.headers.get_all(&X_FORWARDED_FOR) {
        joined.extend_from_slice(v.as_bytes());
        joined.extend_from_slice(b", ");
    }
    push_ip(&mut joined, ip);
    HeaderValue::from_bytes(&joined).ok()
}

/// `ip` in its usual text form; IPv4 (the common case) without the formatting machinery.
fn push_ip(out: &mut smallvec::SmallVec<[u8; 64]>, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        out.extend_from_slice(ip.to_string().as_bytes());
        return;
    };
    for (i, &o) in v4.octets().iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if o >= 100 {
            out.push(b'0' + o / 100);
        }
        if o >= 10 {
            out.push(b'0' + o / 10 % 10);
        }
        out.push(b'0' + o % 10);
    }
}

/// Set fields on the upstream request in one step. Pingora's `insert_header` re-parses each
/// name, copies it into a second, case-preserving map, and may regrow both maps on every
/// call: about 4,000 instructions a field in the load bench (benches/RESULTS.md). Here the
/// request is taken apart around its own header map, which grows once and takes the names
/// as they are. The cost: header names go upstream in lower case (a few standard ones
/// Title-Case), as Envoy and HAProxy send them; field names are case-insensitive (RFC 9110
/// §5.1). A request-target the URI does not reproduce (absolute-form, CONNECT, non-UTF-8),
/// and an HTTP/2 request (whose end-of-stream flag rebuilding would reset), keep Pingora's
/// own per-field inserts.
fn set_request_fields<const N: usize>(
    req: &mut RequestHeader,
    fields: [(&'static HeaderName, Option<HeaderValue>); N],
) {
    let plain_target = req.raw_path_is_utf8()
        && req.uri.path_and_query().map(|p| p.as_str().as_bytes()) == Some(req.raw_path());
    if !plain_target || req.version == http::Version::HTTP_2 {
        for (name, value) in fields {
            if let Some(value) = value {
                let _ = req.insert_header(name, value);
            }
        }
        return;
    }
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, empty));
    parts.headers.reserve(N);
    for (name, value) in fields {
        if let Some(value) = value {
            parts.headers.insert(name.clone(), value);
        }
    }
    *req = RequestHeader::from(parts);
}

/// Put the request id on the response to the client, by the same one-step route as
/// [`set_request_fields`] (the name goes out in lower case).
pub fn set_response_id(resp: &mut ResponseHeader, id: &HeaderValue) {
    // Only a non-standard phrase needs keeping: without one Pingora writes the standard one.
    let phrase = resp
        .get_reason_phrase()
        .filter(|p| Some(*p) != resp.status.canonical_reason())
        .map(str::to_owned);
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, empty));
    parts.headers.insert(X_REQUEST_ID.clone(), id.clone());
    *resp = ResponseHeader::from(parts);
    if phrase.is_some() {
        let _ = resp.set_reason_phrase(phrase.as_deref());
    }
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

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Strip hop-by-hop fields (RFC 9110 §7.6.1), including those the upstream named in
/// `Connection`. `transfer-encoding` and `content-length` are left to Pingora, which re-frames
/// the body. One pass over the names finds which are there; only those are removed (most
/// upstreams send just `Connection: keep-alive`).
pub fn strip_response_hop_by_hop(resp: &mut ResponseHeader) {
    let (mut connection, mut others) = (false, false);
    for k in resp.headers.keys() {
        if *k == CONNECTION {
            connection = true;
        } else if *k == TE || *k == UPGRADE || *k == KEEP_ALIVE || *k == PROXY_CONNECTION {
            others = true;
        }
    }
    // A 101 keeps its `Connection: upgrade` / `Upgrade` pair: the protocol switch needs it.
    if !(connection || others) || resp.status.as_u16() == 101 {
        return;
    }
    if connection {
        let mut nominated: Vec<HeaderName> = Vec::new();
        for v in resp.headers.get_all(CONNECTION) {
            let Ok(v) = v.to_str() else { continue };
            for t in v.split(',').map(str::trim) {
                let plain = [
                    "",
                    "close",
                    "keep-alive",
                    "content-length",
                    "transfer-encoding",
                ]
                .iter()
                .any(|p| t.eq_ignore_ascii_case(p));
                if !plain {
                    if let Ok(name) = HeaderName::from_bytes(t.as_bytes()) {
                        nominated.push(name);
                    }
                }
            }
        }
        for name in &nominated {
            resp.remove_header(name);
        }
        resp.remove_header(&CONNECTION);
    }
    if others {
        for name in [&TE, &UPGRADE, &KEEP_ALIVE, &PROXY_CONNECTION] {
            resp.remove_header(name);
        }
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
        forwarded(&mut req, Some("127.0.0.9".parse().unwrap()), &id, None);
        assert_eq!(
            req.headers.get("x-forwarded-for").unwrap(),
            "10.0.0.1, 127.0.0.9"
        );
        assert_eq!(req.headers.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(req.headers.get(REQUEST_ID).unwrap(), "id1");
    }

    #[test]
    fn the_response_id_keeps_a_non_standard_reason_phrase() {
        let id = HeaderValue::from_static("id1");
        // (A standard one is not copied: Pingora gives the status's own phrase back.)
        for phrase in ["Fine Thanks", "OK"] {
            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.set_reason_phrase(Some(phrase)).unwrap();
            set_response_id(&mut resp, &id);
            assert_eq!(resp.get_reason_phrase(), Some(phrase));
            assert_eq!(resp.headers.get(REQUEST_ID).unwrap(), "id1");
        }
    }

    #[test]
    fn addresses_are_written_as_text() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.255",
            "8.80.108.9",
            "::1",
        ] {
            let mut out = smallvec::SmallVec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(std::str::from_utf8(&out).unwrap(), ip);
        }
    }

    #[test]
    fn forwarded_first_hop_and_repeated_lines() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let id = new_request_id();
        forwarded(&mut req, Some("2001:db8::1".parse().unwrap()), &id, None);
        assert_eq!(req.headers.get("x-forwarded-for").unwrap(), "2001:db8::1");
        assert_eq!(req.headers.get(REQUEST_ID).unwrap(), &id);

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("x-forwarded-for", "10.0.0.1").unwrap();
        req.append_header("x-forwarded-for", "10.0.0.2, 10.0.0.3")
            .unwrap();
        forwarded(&mut req, Some("127.0.0.9".parse().unwrap()), &id, None);
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
        forwarded(&mut up, None, &new_request_id(), Some(&v));
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
