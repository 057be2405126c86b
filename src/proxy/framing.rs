//! Request framing (RFC 9112 §6): the first check on every request, before routing. A request
//! that two parsers could read differently is refused with 400 and its connection closed, so
//! nothing can be smuggled past levee's rules to the upstream: several differing
//! Content-Lengths, a Content-Length that is not a plain number, a Transfer-Encoding other than
//! a single `chunked` (the only coding levee, like the upstreams behind it, decodes).
//!
//! Pingora's parser does part of this before levee sees the request: it refuses malformed
//! header names, obsolete line folding, differing Content-Lengths and a non-chunked final
//! Transfer-Encoding; and when both Content-Length and Transfer-Encoding arrive it drops the
//! Content-Length, reads the body as chunked and closes the connection after the answer
//! (RFC 9112 §6.1), so a request hidden behind the body is never read. Control characters in
//! the request target are percent-encoded by Pingora (a NUL arrives as `%00`), so upstreams
//! see one unambiguous target. The checks here are the same rules again, for what Pingora
//! lets through (`gzip, chunked`).

use crate::config::EdgeLimits;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora_http::{RequestHeader, ResponseHeader};

/// Why a request's framing is refused (for the log line).
pub fn check(req: &RequestHeader) -> Result<(), &'static str> {
    let h = &req.headers;
    let te: Vec<&[u8]> = h
        .get_all(TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let mut cl = h.get_all(CONTENT_LENGTH).iter().peekable();
    if !te.is_empty() && cl.peek().is_some() {
        return Err("both Content-Length and Transfer-Encoding");
    }
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(|b| *b == b','))
            .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        if codings != ["chunked"] {
            return Err("Transfer-Encoding other than a single chunked");
        }
    }
    let mut length: Option<&[u8]> = None;
    for v in cl {
        for part in v.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err("Content-Length is not a number");
            }
            match length {
                Some(l) if l != part => return Err("differing Content-Lengths"),
                _ => length = Some(part),
            }
        }
    }
    Ok(())
}

/// Edge limits on the request head: too many headers or too large a head (431), too long a
/// request line (414). Pingora's parser already caps a head at 256 headers and 1 MiB; these
/// are the tighter limits an edge proxy keeps (nginx: 8 KiB lines; Envoy: 60 KiB heads).
pub fn check_limits(
    req: &RequestHeader,
    l: &crate::config::EdgeLimits,
) -> Result<(), crate::reason::Reason> {
    use crate::reason::Reason;
    // "METHOD SP target SP HTTP/1.1"
    let line = req.method.as_str().len() + req.raw_path().len() + 10;
    if line > l.max_request_line {
        return Err(Reason::UriTooLong);
    }
    if req.headers.len() > l.max_request_headers {
        return Err(Reason::HeadersTooLarge);
    }
    let head: usize = line
        + req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head as u64 > l.max_request_head {
        return Err(Reason::HeadersTooLarge);
    }
    Ok(())
}

/// The declared body length, if any (after `check`, it is one plain number).
pub fn content_length(req: &RequestHeader) -> Option<u64> {
    let v = req.headers.get(CONTENT_LENGTH)?.to_str().ok()?;
    v.split(',').next()?.trim().parse().ok()
}

/// An upstream response head over `[server] max_response_headers` / `max_response_head`:
/// what it broke, for the log line. (Pingora's own parser stops at 256 fields or 1 MiB.)
pub fn check_response(resp: &ResponseHeader, l: &EdgeLimits) -> Result<(), &'static str> {
    if resp.headers.len() > l.max_response_headers {
        return Err("upstream response has more header fields than max_response_headers");
    }
    let size: usize = resp
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size as u64 > l.max_response_head {
        return Err("upstream response head is larger than max_response_head");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn edge_limits() {
        use crate::reason::Reason;
        let l = crate::config::EdgeLimits {
            max_request_headers: 3,
            max_request_head: 200,
            max_request_line: 40,
            max_body: 10,
            max_requests_per_connection: 10,
            max_connections: 10,
            request_head_timeout: std::time::Duration::from_secs(1),
            body_read_timeout: std::time::Duration::from_secs(1),
            request_body_timeout: std::time::Duration::from_secs(1),
            keepalive_timeout: std::time::Duration::from_secs(1),
            max_response_headers: 2,
            max_response_head: 100,
        };
        assert!(check_limits(&req(&[("a", "1")]), &l).is_ok());
        let mut ok = ResponseHeader::build(200, None).unwrap();
        ok.insert_header("a", "1").unwrap();
        assert!(check_response(&ok, &l).is_ok());
        let mut many = ok.clone();
        many.insert_header("b", "2").unwrap();
        many.insert_header("c", "3").unwrap();
        assert!(check_response(&many, &l).is_err());
        let mut big = ResponseHeader::build(200, None).unwrap();
        big.insert_header("a", "x".repeat(100)).unwrap();
        assert!(check_response(&big, &l).is_err());
        let long =
            RequestHeader::build("GET", format!("/{}", "x".repeat(40)).as_bytes(), None).unwrap();
        assert_eq!(check_limits(&long, &l), Err(Reason::UriTooLong));
        let many = req(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]);
        assert_eq!(check_limits(&many, &l), Err(Reason::HeadersTooLarge));
        let big = req(&[("a", &"v".repeat(300))]);
        assert_eq!(check_limits(&big, &l), Err(Reason::HeadersTooLarge));
        assert_eq!(content_length(&req(&[("content-length", "12")])), Some(12));
    }

    #[test]
    fn refuses_ambiguous_framing() {
        assert!(check(&req(&[])).is_ok());
        assert!(check(&req(&[("content-length", "5")])).is_ok());
        assert!(check(&req(&[("content-length", "5"), ("content-length", "5")])).is_ok());
        assert!(check(&req(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check(&req(&[("transfer-encoding", "Chunked")])).is_ok());
        for bad in [
            vec![("content-length", "5"), ("transfer-encoding", "chunked")],
            vec![("content-length", "5"), ("content-length", "6")],
            vec![("content-length", "5, 6")],
            vec![("content-length", "-1")],
            vec![("content-length", "0x10")],
            vec![("content-length", "")],
            vec![("transfer-encoding", "gzip, chunked")],
            vec![("transfer-encoding", "chunked, gzip")],
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("transfer-encoding", "identity")],
        ] {
            assert!(check(&req(&bad)).is_err(), "{bad:?}");
        }
    }
}
