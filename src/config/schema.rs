//! The config file exactly as SREs write it (DESIGN.md §1): serde types, nothing more.
//! Every field is optional here so that one missing or mistyped key does not hide the others;
//! `validate.rs` turns these into checked values and reports what is missing or wrong.
//! Durations and sizes stay strings until validation, so their errors carry a path.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub threads: Option<i64>,
    pub admin_token_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub state_file: Option<String>,
    pub drain_timeout: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_request_headers: Option<i64>,
    pub max_request_head: Option<String>,
    pub max_request_line: Option<String>,
    pub max_body: Option<String>,
    pub max_requests_per_connection: Option<i64>,
    pub max_connections: Option<i64>,
    pub request_head_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub request_body_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub max_response_headers: Option<i64>,
    pub max_response_head: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub endpoints: Option<Vec<String>>,
    pub max_inflight: Option<i64>,
    pub queue: Option<RawQueue>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub health_check: Option<RawHealthCheck>,
    /// `true`/`false` or a table of tuning keys: checked in `adaptive.rs`.
    pub adaptive: Option<toml::Value>,
    pub group: Option<String>,
    pub slow_start: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max: Option<i64>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub host: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub pool: Option<String>,
    pub priority: Option<String>,
    pub cost: Option<i64>,
    #[serde(rename = "match")]
    pub match_: Option<RawMatch>,
    pub shadow: Option<bool>,
    pub degrade_under_pressure: Option<bool>,
    pub cost_key: Option<String>,
    pub max_body: Option<String>,
    pub rate_limit: Option<RawRateLimit>,
    pub client_rate_limit: Option<RawClientRateLimit>,
    pub circuit_breaker: Option<RawBreaker>,
    pub degrade: Option<RawDegrade>,
    pub cache: Option<RawCache>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_size: Option<String>,
    pub max_object_size: Option<String>,
    pub ttl: Option<String>,
    pub stale_while_revalidate: Option<String>,
    pub stale_if_error: Option<String>,
    pub key_headers: Option<Vec<String>>,
    pub lock_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rps: Option<f64>,
    pub burst: Option<i64>,
    pub shadow: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientRateLimit {
    pub key: Option<String>,
    pub rps: Option<f64>,
    pub burst: Option<i64>,
    pub max_keys: Option<i64>,
    pub shadow: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub window: Option<String>,
    pub min_requests: Option<i64>,
    pub error_ratio: Option<f64>,
    pub slow_call: Option<String>,
    pub slow_ratio: Option<f64>,
    pub open_for: Option<String>,
    pub probes: Option<i64>,
    pub shadow: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDegrade {
    pub status: Option<i64>,
    pub retry_after: Option<String>,
    pub body_file: Option<String>,
    pub content_type: Option<String>,
    pub mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, RawValueMatch>>,
    pub query: Option<BTreeMap<String, RawValueMatch>>,
}

/// How a header or query value is compared. Exactly one of the keys is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValueMatch {
    pub equals: Option<String>,
    pub one_of: Option<Vec<String>>,
    pub one_of_file: Option<String>,
    pub regex: Option<String>,
    pub present: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub sample: Option<f64>,
    pub file: Option<String>,
    pub max_size: Option<String>,
    pub max_files: Option<i64>,
    pub errors_per_second: Option<i64>,
    pub buffer: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub start: Option<bool>,
}
