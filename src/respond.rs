//! Answers levee writes itself (no route, shed, upstream failures): status from the reason,
//! `x-levee-reason`, a jittered `Retry-After` on 429/503 (so shed clients do not return in
//! lockstep), `x-request-id`, `cache-control: no-store`, and a short JSON body.

use crate::reason::Reason;
use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

pub const REASON_HEADER: &str = "x-levee-reason";

/// `Retry-After` seconds: the base plus up to half again (at least one second of spread).
pub fn jittered(base_secs: u64) -> u64 {
    let spread = (base_secs / 2).max(1);
    base_secs + rand::random_range(0..=spread)
}

/// Build the response head and body for `reason`.
pub fn build(
    reason: Reason,
    route: &str,
    request_id: Option<&str>,
) -> Option<(ResponseHeader, Bytes)> {
    let status = reason.status();
    let body = format!(
        "{{\"error\":\"{}\",\"route\":\"{}\",\"request_id\":\"{}\"}}\n",
        reason.as_str(),
        route,
        request_id.unwrap_or("")
    );
    // Status and header values here are static or validated, so building does not fail;
    // if it somehow did, the caller closes the connection instead of panicking.
    let mut h = ResponseHeader::build(status, Some(6)).ok()?;
    let _ = h.insert_header(REASON_HEADER, reason.as_str());
    let _ = h.insert_header("content-type", "application/json");
    let _ = h.insert_header("content-length", body.len().to_string());
    let _ = h.insert_header("cache-control", "no-store");
    if let Some(base) = reason.retry_after_secs() {
        let _ = h.insert_header("retry-after", jittered(base).to_string());
    }
    if let Some(id) = request_id {
        let _ = h.insert_header("x-request-id", id);
    }
    Some((h, Bytes::from(body)))
}

/// Write levee's own answer to the client. Errors mean the client is gone; nothing to do.
pub async fn send(session: &mut Session, reason: Reason, route: &str, request_id: Option<&str>) {
    let Some((head, body)) = build(reason, route, request_id) else {
        return;
    };
    let head_only = session.req_header().method == http::Method::HEAD;
    if session
        .write_response_header(Box::new(head), head_only)
        .await
        .is_ok()
        && !head_only
    {
        let _ = session.write_response_body(Some(body), true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_jittered_within_bounds() {
        let seen: std::collections::HashSet<u64> = (0..200).map(|_| jittered(1)).collect();
        assert!(seen.iter().all(|s| (1..=2).contains(s)));
        assert_eq!(seen.len(), 2, "both values should appear in 200 draws");
        assert!((0..200)
            .map(|_| jittered(30))
            .all(|s| (30..=45).contains(&s)));
    }

    #[test]
    fn head_carries_reason_and_retry_after() {
        let (h, body) = build(Reason::QueueTimeout, "search", Some("abc")).unwrap();
        assert_eq!(h.status.as_u16(), 503);
        assert_eq!(h.headers.get(REASON_HEADER).unwrap(), "queue_timeout");
        assert!(h.headers.get("retry-after").is_some());
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("\"queue_timeout\""));
        let (h, _) = build(Reason::UpstreamTimeout, "search", None).unwrap();
        assert_eq!(h.status.as_u16(), 504);
        assert!(h.headers.get("retry-after").is_none());
    }
}
