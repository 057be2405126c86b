//! The admin listener (DESIGN.md §2): `/metrics`, `/healthz`, `/readyz`, `/admin/status`,
//! the status page for people at `GET /` (files in `ui/`, built into the binary), and the
//! mutating calls of `control` (switches, reload).
//! Served by a separate Pingora service on `admin_listen`, so a flood on the data plane does
//! not starve the SRE's view of it.

pub mod control;
pub mod status;

use crate::runtime::Shared;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct AdminApp {
    pub shared: Arc<Shared>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// A file of the status page, locked to levee's own origin.
fn page(body: &str, content_type: &str) -> Response<Vec<u8>> {
    let mut r = reply(StatusCode::OK, content_type, body.as_bytes().to_vec());
    r.headers_mut().insert(
        "content-security-policy",
        http::HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_reply(status: u16, v: &serde_json::Value) -> Response<Vec<u8>> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    reply(code, "application/json", body)
}

fn error_reply(status: u16, msg: &str) -> Response<Vec<u8>> {
    json_reply(status, &serde_json::json!({ "error": msg }))
}

impl AdminApp {
    async fn control(
        &self,
        session: &mut ServerSession,
        method: &http::Method,
        path: &str,
    ) -> Response<Vec<u8>> {
        let auth = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Ok(by) = control::caller(&self.shared, auth.as_deref()) else {
            tracing::warn!(
                path,
                "audit: admin call refused: missing or wrong bearer token"
            );
            let mut r = error_reply(
                401,
                "a bearer token is required: Authorization: Bearer TOKEN",
            );
            r.headers_mut()
                .insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
            return r;
        };
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > control::MAX_BODY {
                        return error_reply(413, "body too large");
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return error_reply(400, "could not read the request body"),
            }
        }
        let route = path
            .strip_prefix("/admin/routes/")
            .and_then(|r| r.strip_suffix("/switch"));
        match (method, route, path) {
            (&http::Method::PUT, Some(route), _) => {
                match control::switch(&self.shared, route, &body, &by) {
                    Ok(v) => json_reply(200, &v),
                    Err((code, msg)) => error_reply(code, &msg),
                }
            }
            (&http::Method::POST, None, "/admin/reload") => {
                let (code, v) = control::reload(&self.shared);
                json_reply(code, &v)
            }
            (&http::Method::DELETE, None, "/admin/cache") => {
                let q = session.req_header().uri.query().map(str::to_string);
                match control::purge(&self.shared, q.as_deref(), &by) {
                    Ok(v) => json_reply(200, &v),
                    Err((code, msg)) => error_reply(code, &msg),
                }
            }
            _ => error_reply(
                404,
                "not found: PUT /admin/routes/{name}/switch, POST /admin/reload or DELETE /admin/cache",
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let method = req.method.clone();
        let control_path = path == "/admin/reload"
            || path == "/admin/cache"
            || (path.starts_with("/admin/routes/") && path.ends_with("/switch"));
        let mutating = method == http::Method::PUT
            || method == http::Method::POST
            || method == http::Method::DELETE;
        if mutating && control_path {
            return self.control(session, &method, &path).await;
        }
        if method != http::Method::GET && method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            );
        }
        match path.as_str() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.shared.metrics.encode(),
            ),
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            // The status page: its files are inside the binary (it must work air-gapped).
            "/" => page(include_str!("ui/index.html"), "text/html; charset=utf-8"),
            "/ui/app.js" => page(include_str!("ui/app.js"), "text/javascript; charset=utf-8"),
            "/ui/style.css" => page(include_str!("ui/style.css"), "text/css; charset=utf-8"),
            "/readyz" => {
                if self.shared.ready.load(Ordering::Acquire) {
                    reply(StatusCode::OK, "text/plain", b"ready\n".to_vec())
                } else {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"starting\n".to_vec(),
                    )
                }
            }
            "/admin/status" => {
                let body = status::status(&self.shared);
                reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_vec_pretty(&body).unwrap_or_default(),
                )
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
