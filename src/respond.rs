//! Answers levee writes itself (no route, rejections, upstream failures): status from the
//! reason, `x-levee-reason`, a jittered `Retry-After` on 429/503 (so shed clients do not return
//! in lockstep; from the limiter's own wait when it knows one), `x-request-id`,
//! `cache-control: no-store`, and a short JSON body. For a rejection on a route with a
//! `degrade` block, its status, body, content type and `retry_after` stand in.

use crate::config::DegradeSpec;
use crate::reason::Reason;
use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::time::Duration;

pub const REASON_HEADER: &str = "x-levee-reason";

/// `Retry-After` seconds: the base plus up to half again (at least one second of spread).
pub fn jittered(base_secs: u64) -> u64 {
    let spread = (base_secs / 2).max(1);
    base_secs + rand::random_range(0..=spread)
}

/// Retry-After seconds for a wait: rounded up, at least 1, then jittered.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    jittered(secs.max(1))
}

/// One answer levee gives itself.
pub struct Answer<'a> {
    pub reason: Reason,
    pub route: &'a str,
    pub request_id: Option<&'a str>,
    /// How long until retrying can succeed, when levee knows (rate limits, open breaker).
    pub retry_after: Option<Duration>,
    /// The route's degrade response, used for rejections (`Reason::degradable`).
    pub degrade: Option<&'a DegradeSpec>,
}

impl<'a> Answer<'a> {
    pub fn new(reason: Reason, route: &'a str, request_id: Option<&'a str>) -> Self {
        Answer {
            reason,
            route,
            request_id,
            retry_after: None,
            degrade: None,
        }
    }
}

/// Build the response head and body.
pub fn build(a: &Answer<'_>) -> Option<(ResponseHeader, Bytes)> {
    let reason = a.reason;
    let degrade = a.degrade.filter(|_| reason.degradable());
    let status = degrade.map_or(reason.status(), |d| d.status);
    let (body, content_type) =
        match degrade.and_then(|d| d.body.clone().map(|b| (b, &d.content_type))) {
            Some((b, ct)) => (b, ct.as_str()),
            None => (
                Bytes::from(format!(
                    "{{\"error\":\"{}\",\"route\":\"{}\",\"request_id\":\"{}\"}}\n",
                    reason.as_str(),
                    a.route,
                    a.request_id.unwrap_or("")
                )),
                "application/json",
            ),
        };
    // Status and header values here are static or validated, so building does not fail;
    // if it somehow did, the caller closes the connection instead of panicking.
    let mut h = ResponseHeader::build(status, Some(6)).ok()?;
    let _ = h.insert_header(REASON_HEADER, reason.as_str());
    let _ = h.insert_header("content-type", content_type);
    let _ = h.insert_header("content-length", body.len().to_string());
    let _ = h.insert_header("cache-control", "no-store");
    let retry = match (degrade.and_then(|d| d.retry_after), a.retry_after) {
        (Some(configured), _) => Some(retry_after_secs(configured)),
        (None, _) if !matches!(status, 429 | 503) => None,
        (None, Some(wait)) => Some(retry_after_secs(wait)),
        (None, None) => reason.retry_after_secs().map(jittered),
    };
    if let Some(secs) = retry {
        let _ = h.insert_header("retry-after", secs.to_string());
    }
    if let Some(id) = a.request_id {
        let _ = h.insert_header("x-request-id", id);
    }
    Some((h, body))
}

/// Write levee's own answer to the client. Errors mean the client is gone; nothing to do.
pub async fn send(session: &mut Session, answer: &Answer<'_>) {
    let Some((head, body)) = build(answer) else {
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
        let (h, body) = build(&Answer::new(Reason::QueueTimeout, "search", Some("abc"))).unwrap();
        assert_eq!(h.status.as_u16(), 503);
        assert_eq!(h.headers.get(REASON_HEADER).unwrap(), "queue_timeout");
        assert!(h.headers.get("retry-after").is_some());
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("\"queue_timeout\""));
        let (h, _) = build(&Answer::new(Reason::UpstreamTimeout, "search", None)).unwrap();
        assert_eq!(h.status.as_u16(), 504);
        assert!(h.headers.get("retry-after").is_none());
    }

    #[test]
    fn waits_round_up_and_degrade_replaces_the_body() {
        let mut a = Answer::new(Reason::RateLimited, "search", Some("id"));
        a.retry_after = Some(Duration::from_millis(2100));
        let (h, _) = build(&a).unwrap();
        assert_eq!(h.status.as_u16(), 429);
        let secs: u64 = h.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((3..=4).contains(&secs), "{secs}");

        let d = DegradeSpec {
            status: 200,
            retry_after: Some(Duration::from_secs(30)),
            body: Some(Bytes::from_static(b"<p>busy</p>")),
            content_type: "text/html".into(),
            body_file: None,
            mode: Default::default(),
        };
        a.degrade = Some(&d);
        let (h, body) = build(&a).unwrap();
        assert_eq!(h.status.as_u16(), 200);
        assert_eq!(&body[..], b"<p>busy</p>");
        assert_eq!(h.headers["content-type"], "text/html");
        assert_eq!(h.headers[REASON_HEADER], "rate_limited");
        let secs: u64 = h.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((30..=45).contains(&secs));
        // Upstream failures are not rejections: the degrade body does not apply.
        a.reason = Reason::UpstreamTimeout;
        let (h, _) = build(&a).unwrap();
        assert_eq!(h.status.as_u16(), 504);
    }
}
